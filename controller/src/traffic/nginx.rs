//! nginx as the traffic switch: the upstream file the controller owns (rendered, read
//! back, written atomically), `nginx -t`, a graceful `nginx -s reload`, and the confirm
//! server that says which slot answers. A switch that fails anywhere puts the old file
//! back, so nothing live changes, and carries nginx's own message.
//!
//! (Stub: owned by the nginx work; see the module's final version.)

use std::path::Path;
use std::time::Duration;

use shipshape_spec::app::Traffic;

use crate::ports::Commands;

/// Why a switch did not happen (the old file is back in place).
#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    /// Anything, with nginx's own message.
    #[error("{0}")]
    Failed(String),
}

/// What a switch took.
#[derive(Debug, Clone, Copy)]
pub struct Switched {
    /// From the reload to the confirm server naming the new slot.
    pub confirmed_after: Duration,
}

/// The upstream file's text with `live` as the only server.
pub fn render(_t: &Traffic, _app: &str, _live: u16) -> String {
    unimplemented!("nginx work")
}

/// The slot the upstream file at `file` names (`None`: no file, or not one we wrote).
pub fn live_slot(_file: &Path) -> Result<Option<u16>, String> {
    unimplemented!("nginx work")
}

/// Point the upstream at `to` with the file's new `text`: write, `nginx -t`, reload, confirm.
pub async fn switch(
    _t: &Traffic,
    _text: &str,
    _to: u16,
    _commands: &dyn Commands,
) -> Result<Switched, NginxError> {
    unimplemented!("nginx work")
}

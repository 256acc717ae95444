//! A pass's pin checks: before every step that changes live state (backup, migrate,
//! restore, switch, pm2, hooks) the run reads the requests recorded since it began
//! (`requests.json`, see [`crate::state::requests`]) and stops when the pin in force would
//! have it converge elsewhere ([`target::pin_change_stops`]); an install or build in
//! progress is cut short the same way (its process group is killed). One check, at the
//! step boundary, in [`super::execute`]; verification stops on any request already.

use std::sync::Arc;
use std::time::Duration;

use shipshape_spec::status::Pin;

use super::AppHandle;
use super::target;
use crate::state::{AppRecord, Store};

/// How often an install or build in progress looks for a request (only when one was
/// recorded since the last look: the API bumps the handle's generation).
const BUILD_POLL: Duration = Duration::from_millis(200);

/// What a run compares the recorded requests with.
#[derive(Debug, Clone)]
pub struct PinWatch {
    store: Store,
    app: String,
    handle: Arc<AppHandle>,
    /// The last request the pass's record absorbed.
    applied: u64,
    /// The pin the run began under.
    pin: Option<Pin>,
    /// The revision the run makes live.
    making_live: u64,
}

impl PinWatch {
    /// A watch for a run of `rec`'s app that makes `making_live` live.
    pub fn new(store: &Store, rec: &AppRecord, handle: &Arc<AppHandle>, making_live: u64) -> Self {
        PinWatch {
            store: store.clone(),
            app: rec.name.clone(),
            handle: handle.clone(),
            applied: rec.requests_applied,
            pin: rec.pin.clone(),
            making_live,
        }
    }

    /// Why the run must stop now, if it must. Requests that cannot be read stop it too:
    /// nothing live changes while a request might say not to.
    pub fn check(&self) -> Option<String> {
        match self.store.load_requests(&self.app) {
            Ok(file) => target::pin_change_stops(
                self.pin.as_ref(),
                &file.after(self.applied),
                self.making_live,
            ),
            Err(e) => Some(format!("its recorded requests cannot be read ({e})")),
        }
    }

    /// Resolves (with why) once a request recorded while waiting means the run must stop.
    pub async fn stopped(&self) -> String {
        let mut seen = None;
        loop {
            let generation = self.handle.generation();
            if seen != Some(generation) {
                seen = Some(generation);
                if let Some(why) = self.check() {
                    return why;
                }
            }
            tokio::time::sleep(BUILD_POLL).await;
        }
    }
}

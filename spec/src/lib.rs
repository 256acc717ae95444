//! # shipshape-spec: the contract
//!
//! The types a person writes (the `App` desired-state document) and the types the
//! controller reports (revisions, step records, conditions). No runtime lives here:
//! no tokio, git2, reqwest or notify. The only I/O is parsing the text it is given.
//!
//! # Layout
//! - [`duration`]: human durations (`500ms`, `5s`, `1m30s`) as a serde/schemars type.
//! - [`quantity`]: percentages (`80%`) and byte sizes (`800M`, `1.5G`) for resource limits.
//! - [`rollout`]: fleet rollouts in waves (`spec.rollout`).
//! - [`app`]: the `App` document (`apiVersion: shipshape/v1alpha1`, `kind: App`).
//! - [`load`]: YAML text to [`App`] with `file:line:column: field.path: message` errors.
//!   The only module that knows about the YAML crates.
//! - [`validate`]: semantic checks that report every problem at once.
//! - [`status`]: revisions, outcomes, step records and kstatus-style conditions.
//! - [`time`]: [`Timestamp`], the time type of the records (RFC 3339 text, parsed once).

pub mod app;
pub mod duration;
pub mod load;
pub mod quantity;
pub mod rollout;
pub mod status;
pub mod time;
pub mod validate;

pub use app::App;
pub use duration::Duration;
pub use load::{LoadError, Problem, load_str};
pub use time::Timestamp;

/// The JSON Schema of the [`App`] document, as checked in at `schemas/app.schema.json`.
pub fn app_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(App);
    serde_json::to_value(schema).expect("a JSON Schema always serializes")
}

/// [`app_schema`] rendered the way `schemas/app.schema.json` is written (pretty, trailing newline).
pub fn app_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&app_schema()).expect("schema serializes");
    text.push('\n');
    text
}

//! # shipshape: the controller
//!
//! A GitOps-style reconciler for plain servers that run Node.js apps under pm2: it reads
//! `App` documents from a config repo, diffs them against the server, converges by
//! running only the steps needed, verifies health, and goes back to the last healthy
//! revision by itself when a rollout breaks health.
//!
//! # Layout
//! - [`source`]: the config repo (documents at the branch tip, via git2) and app sources
//!   (a bare mirror per repository, checked out into release directories).
//! - [`confined`]: file operations beneath a release, cache or state directory, never
//!   through a symlink (a walk by descriptor, `openat(O_NOFOLLOW)` at each component).
//! - [`release`]: releases on disk, build markers, the atomic `current` switch, atomic writes.
//! - [`pm2`]: the real pm2 through its CLI, with an isolated `PM2_HOME` and a cleared env.
//! - [`clients`]: HTTP clients built on first use; TLS roots only for `https://`.
//! - [`exec`]: external commands with time limits, process-group kills and output tails.
//! - [`plan`]: the pure planner, `(desired, observed) -> Plan`.
//! - [`health`]: HTTP probes, pm2 facts, and the verdict over rounds.
//! - [`probes`]: the probe thread, where every HTTP and Prometheus check runs and is timed.
//! - [`migrate`]: migration levels, the advisory lock, up and down.
//! - [`envfile`]: the server-side secrets file and the redactor that keeps it out of output.
//! - [`redact`]: URL credentials masked wherever text is shown (API, CLI, logs); secret files.
//! - [`events`]: events broadcast to watchers, counted in metrics, posted to a webhook.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`retry`]: exponential back-off with jitter (the only user of the backoff crate).
//! - [`state`]: the controller's records (revisions, passes, quarantine), written atomically.
//! - [`reconcile`]: one pass per app: target, observe, plan, execute, decide, record (pure
//!   decisions in `target`, `decide`, `record`, `revert`).
//! - [`monitor`]: health rounds between passes; regressions and recoveries become records.
//! - [`daemon`]: the long-running loop, the monitors and the API, with graceful stop.
//! - [`api`]: the local HTTP API (status, watch, metrics; pin/unpin/retry with a token).
//! - [`trust`]: signed config commits (ssh-keygen, gpg).
//! - [`init`]: an App document from an existing pm2 ecosystem file.
//! - [`cli`]: the `shipshape` commands.

pub mod api;
pub mod cli;
pub mod clients;
pub mod confined;
pub mod daemon;
pub mod envfile;
pub mod events;
pub mod exec;
pub mod health;
pub mod init;
pub mod metrics;
pub mod migrate;
pub mod monitor;
pub mod plan;
pub mod pm2;
pub mod probes;
pub mod prometheus;
pub mod reconcile;
pub mod redact;
pub mod release;
pub mod retry;
pub mod source;
pub mod state;
pub mod trust;

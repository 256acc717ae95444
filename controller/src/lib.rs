//! # shipshape: the controller
//!
//! A GitOps-style reconciler for plain servers that run Node.js apps under pm2: it reads
//! `App` documents from a config repo, diffs them against the server, converges by
//! running only the steps needed, verifies health, and goes back to the last healthy
//! revision by itself when a rollout breaks health.
//!
//! # Layout
//! - [`source`]: the config repo (documents at the branch tip, via git2), the local watch
//!   and the remote poll that notice a change, the webhook intake, [`source::trust`]
//!   (signed config commits: ssh-keygen, gpg), and app sources (a bare mirror per
//!   repository, checked out into release directories).
//! - [`plan`]: the pure planner, `(desired, observed) -> Plan`.
//! - [`reconcile`]: one pass per app: target, observe, plan, execute, decide, record (pure
//!   decisions in `target`, `decide`, `record`, `revert`).
//! - [`gate`]: the wave gate of a fleet rollout (`spec.rollout`), pure, and what it asks
//!   the fleet's Prometheus.
//! - [`observe`]: the server as it is for one app; [`execute`]: the step runners (prepare,
//!   schema, switch, pm2 and a graceful replace, hooks, verify).
//! - [`ports`]: the narrow interfaces a pass reaches the world through (pm2, commands, the
//!   clock, the config and app sources, the health probes), and their real implementations.
//! - [`health`]: checks and the verdict over rounds; [`health::probes`] (the probe thread,
//!   where every HTTP and Prometheus check runs and is timed) and [`health::monitor`]
//!   (rounds between passes; regressions and recoveries become records).
//! - [`pm2`]: the real pm2 through its daemon socket, with the CLI as fallback, an isolated
//!   `PM2_HOME` and a cleared env.
//! - [`runtime`]: the daemon loop ([`runtime::daemon`]), the API's listeners
//!   ([`runtime::serve`]), the local HTTP API ([`runtime::api`]), [`runtime::events`] and
//!   [`runtime::metrics`].
//! - [`cli`]: the `shipshape` commands; [`init`]: an App document from a pm2 ecosystem file.
//! - Infrastructure, each owning its files and paths:
//!   - [`exec`]: external commands with time limits, process-group kills and output tails;
//!   - [`release`]: releases on disk, build markers, the atomic `current` switch;
//!   - [`confined`]: file operations beneath a release, cache or state directory, never
//!     through a symlink (a walk by descriptor, `openat(O_NOFOLLOW)` at each component);
//!   - [`migrate`]: migration levels, the advisory lock, up and down;
//!   - [`envfile`]: the server-side secrets file and the redactor that keeps it out of output;
//!   - [`redact`]: URL credentials masked wherever text is shown; secret files;
//!   - [`state`]: the controller's records (revisions, passes, quarantine), written atomically;
//!   - [`retry`]: exponential back-off with jitter (the only user of the backoff crate);
//!   - [`clients`]: HTTP clients built on first use; [`prometheus`]: the query client.

pub mod cli;
pub mod clients;
pub mod confined;
pub mod envfile;
pub mod exec;
pub mod execute;
pub mod gate;
pub mod health;
pub mod init;
pub mod migrate;
pub mod observe;
pub mod plan;
pub mod pm2;
pub mod ports;
pub mod prometheus;
pub mod reconcile;
pub mod redact;
pub mod release;
pub mod retry;
pub mod runtime;
pub mod source;
pub mod state;
pub mod traffic;

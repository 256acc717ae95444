//! The `App` desired-state document: one app's target commit, release layout, build,
//! migrations, pm2 processes, health checks, rollback policy and hooks.
//!
//! Field names are camelCase (kube-style), except inside `spec.processes`, whose entries
//! use pm2's own ecosystem field names so an `ecosystem.config.js` app can be pasted in.
//! Unknown fields are rejected everywhere.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::quantity::{ByteSize, Percent};

/// The only `apiVersion` this crate reads.
pub const API_VERSION: &str = "shipshape/v1alpha1";

/// One app's desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    title = "shipshape App",
    description = "The desired state of one Node.js app run under pm2."
)]
pub struct App {
    /// Always `shipshape/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `App`.
    pub kind: Kind,
    /// The app's identity.
    pub metadata: Metadata,
    /// What should run, and how to get it there safely.
    pub spec: AppSpec,
}

/// The document's schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    /// The first, still-changing version.
    #[serde(rename = "shipshape/v1alpha1")]
    V1Alpha1,
}

/// The document's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Kind {
    /// A Node.js app under pm2.
    App,
}

/// Identity of the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The app's name: lowercase letters, digits and `-`, at most 63 characters.
    /// It names the app's state, status and (by default) its pm2 processes.
    pub name: String,
    /// Free-form labels, shown in status.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The specification proper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    /// Where the app's source comes from, and which commit should run.
    pub source: Source,
    /// Where releases live on the server.
    pub releases: Releases,
    /// How a release is prepared.
    #[serde(default)]
    pub build: Build,
    /// The database migration level the release needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Migrations>,
    /// The pm2 processes, with pm2's own ecosystem field names.
    pub processes: Vec<Process>,
    /// How a rollout is judged healthy.
    pub health: Health,
    /// What happens when health regresses after a rollout.
    #[serde(default)]
    pub rollback: Rollback,
    /// Commands run around the switch.
    #[serde(default)]
    pub hooks: Hooks,
    /// Send users' traffic through nginx to one slot at a time: each release runs as its
    /// own slot on a port of its own, proven before nginx sends it a request, and the
    /// previous slot stays warm for an instant switch back. Omitted: the processes are
    /// reloaded in place (pm2's own reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
    /// Which servers run this app (each server's controller is told its name and labels).
    /// Omitted: every server that reads this repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Hosts>,
    /// Roll a new app commit out across the fleet in waves: the canary hosts first, the
    /// others only once the earlier waves run it, Ready, for the soak time, as the fleet's
    /// Prometheus sees them. Omitted: every host takes a new commit when it reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::Rollout>,
    /// Hold the app where it is, whatever else this document says (auditable in git).
    /// A pin set from the CLI wins over this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<DocumentPin>,
    /// An absolute path to a `KEY=VALUE` file on the server holding secrets (e.g.
    /// `DATABASE_URL`): a regular file of at most 1 MiB. Its variables reach install, build, migrations, hooks and the pm2
    /// processes; their values never appear in logs, plans or status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
}

/// A host selector: a server is selected when its name is in `names` (if given) and it
/// has every label in `labels` (if given).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hosts {
    /// Host names (as given to the controller with `--hostname`, by default the machine's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Labels the host must have (given to the controller with `--label key=value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Hosts {
    /// True when a host with `name` and `labels` is selected.
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| n == name))
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// A pin written in the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocumentPin {
    /// Why (shown in status and notifications).
    pub reason: String,
    /// Who pinned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Hold the newest healthy revision running this app commit; without it, the revision
    /// that is live and healthy when the pin is first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_commit: Option<String>,
}

/// The app's source repository and target commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// A git URL (`https://`, `ssh://`, `git@host:path`, `file://`) or an absolute local path.
    /// Never with credentials in it (`https://user:token@…` is refused): they would show in
    /// status, logs and the API. A private `https://` repository takes `tokenFile`.
    pub repository: String,
    /// The full 40-hex commit SHA to run: exact and reproducible.
    pub commit: String,
    /// For a private `https://` repository: an absolute path on the server to a file holding
    /// the access token (or password), readable by the controller only (not world-readable).
    /// The controller reads it at each fetch and hands it to git when the server asks for
    /// credentials; it is never put into the URL, a record or a log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// The user name sent with `tokenFile`'s token (default `x-access-token`; GitLab takes
    /// `oauth2`, Bitbucket `x-token-auth`, a password needs your user name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_user: Option<String>,
}

/// The release layout on the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Releases {
    /// Absolute directory holding `releases/<commit>` and the `current` symlink.
    pub root: String,
    /// How many prepared releases to keep (the live one and the last healthy one are always kept).
    #[serde(default = "default_keep")]
    pub keep: u32,
}

fn default_keep() -> u32 {
    5
}

/// How a release is prepared, inside its own directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Build {
    /// The dependency install command (e.g. `npm ci`); omit when the app has no dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<String>,
    /// Build commands run in order after install (e.g. `npx prisma generate`, `npm run build`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// Extra environment for install and build (not secrets: documents live in git).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Time limit for each install or build command.
    #[serde(default = "default_build_timeout")]
    pub timeout: Duration,
    /// Build cache directories (paths inside the release, e.g. `.next/cache`) carried from an
    /// earlier release into a new one before its build, so the build is incremental. Carried
    /// only from a sealed release of this app installed from the same dependencies (same
    /// lockfile, install command and build env: the rule `reuse-deps` follows), preferring
    /// the live one; always as the new release's own copy (reflinked or copied, never shared),
    /// so nothing the new build writes reaches the old release. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<String>,
}

fn default_build_timeout() -> Duration {
    Duration::from_secs(600)
}

impl Default for Build {
    fn default() -> Self {
        Build {
            install: None,
            steps: Vec::new(),
            env: BTreeMap::new(),
            timeout: default_build_timeout(),
            cache: Vec::new(),
        }
    }
}

/// The database migration level the release needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Migrations {
    /// Which tool owns the schema.
    pub driver: MigrationDriver,
    /// The migration the database must be at (the newest applied one's name or version).
    pub level: String,
    /// A command run before up-migrations; `$SHIPSHAPE_BACKUP_FILE` names where to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// A command that restores that backup (`onRevert: restore`); it gets the same
    /// `$SHIPSHAPE_BACKUP_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<String>,
    /// What an automatic revert does with the level.
    #[serde(default)]
    pub on_revert: OnRevert,
    /// The user's own commands, for `driver: command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandDriver>,
    /// Time limit for one migration command (and for waiting on another host's migration).
    #[serde(default = "default_migration_timeout")]
    pub timeout: Duration,
    /// The variable (from `envFile`) holding the PostgreSQL URL, used to read the level and
    /// to take the advisory lock that keeps two hosts from migrating at once.
    #[serde(default = "default_database_env")]
    pub database_env: String,
    /// dbmate's migrations directory, relative to the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

fn default_database_env() -> String {
    "DATABASE_URL".to_string()
}

fn default_migration_timeout() -> Duration {
    Duration::from_secs(600)
}

/// A migration tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MigrationDriver {
    /// `prisma migrate deploy`; level read from `_prisma_migrations`.
    Prisma,
    /// dbmate; level read from `schema_migrations`.
    Dbmate,
    /// The user's own status/up/down commands.
    Command,
}

/// What an automatic revert does with the migration level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnRevert {
    /// Leave the schema as it is (expand/contract migrations).
    #[default]
    Keep,
    /// Run down-migrations to the reverted revision's level.
    Down,
    /// Restore the backup taken before the up-migration.
    Restore,
}

/// Commands for `driver: command`. Each gets the target level in `SHIPSHAPE_TARGET_LEVEL`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandDriver {
    /// Prints the current level on its last line of standard output.
    pub status: String,
    /// Migrates up to `SHIPSHAPE_TARGET_LEVEL`.
    pub up: String,
    /// Migrates down to `SHIPSHAPE_TARGET_LEVEL`, if the schema allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
}

/// A scalar environment value. Numbers and booleans are accepted (as pm2 accepts them)
/// and passed on as their text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

impl EnvValue {
    /// The value as the process sees it.
    pub fn as_text(&self) -> String {
        match self {
            EnvValue::String(s) => s.clone(),
            EnvValue::Integer(n) => n.to_string(),
            EnvValue::Bool(b) => b.to_string(),
        }
    }
}

/// A string or a list of strings (pm2 accepts both for `args` and `node_args`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StringOrList {
    /// One string, split by pm2 on spaces.
    One(String),
    /// Already split.
    List(Vec<String>),
}

/// The most instances one process may ask for (a typo such as `4294967295` would otherwise
/// ask pm2 to fork until the machine falls over).
pub const MAX_INSTANCES: u32 = 1024;

/// pm2's `instances`: a count, or `max` (one per CPU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Instances {
    /// A fixed count (1 to 1024).
    Count(#[schemars(range(min = 1, max = 1024))] u32),
    /// `max`: as many as CPUs.
    Max(MaxInstances),
}

/// The literal `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MaxInstances {
    /// One instance per CPU.
    Max,
}

/// pm2's `exec_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// One OS process per instance; `reload` is a restart.
    #[default]
    Fork,
    /// Node cluster: graceful zero-downtime reloads.
    Cluster,
}

/// One pm2 app, with pm2's ecosystem field names. Paths are relative to the release
/// directory (`<root>/current`); pm2's `watch` is not accepted: the controller owns restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// The pm2 process name (unique on the server).
    pub name: String,
    /// The script to run, relative to the release (or a binary on PATH with `interpreter: none`).
    pub script: String,
    /// Arguments for the script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<StringOrList>,
    /// Working directory, relative to the release; defaults to the release itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The interpreter (`node` by default; `none` for binaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Arguments for the interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter_args: Option<StringOrList>,
    /// Arguments for node (alias kept by pm2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_args: Option<StringOrList>,
    /// How many instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Instances>,
    /// `fork` or `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_mode: Option<ExecMode>,
    /// Environment of the process. The controller's own environment is never passed on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Restart when memory passes this size (e.g. `300M`, `1G`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_restart: Option<String>,
    /// Wait for the app's `process.send('ready')`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ready: Option<bool>,
    /// Milliseconds pm2 waits for `listen`/`ready` before it considers the app up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_timeout: Option<u64>,
    /// Milliseconds between SIGINT and SIGKILL on stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_timeout: Option<u64>,
    /// Send a shutdown message instead of a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_with_message: Option<bool>,
    /// Restart when the process exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autorestart: Option<bool>,
    /// Unstable restarts allowed before pm2 gives up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Milliseconds a process must stay up to count as started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_uptime: Option<u64>,
    /// Milliseconds to wait before restarting a crashed process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay: Option<u64>,
    /// Exponential back-off restart delay start, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_backoff_restart_delay: Option<u64>,
    /// A cron pattern that restarts the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_restart: Option<String>,
    /// stdout log file: relative to the process's directory (no `..` or `~`), absolute
    /// under `spec.releases.root`, or `/dev/null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_file: Option<String>,
    /// stderr log file, with the same rules as `out_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_file: Option<String>,
    /// Log timestamp format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_date_format: Option<String>,
    /// Merge the logs of all instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_logs: Option<bool>,
    /// Prefix logs with time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<bool>,
    /// Source-map support for stack traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_map_support: Option<bool>,
}

/// How a rollout is judged healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    /// The probes run each round; pm2 facts (all instances online, no restarts) always count too.
    pub checks: Vec<Check>,
    /// Time between rounds.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Passing rounds in a row that make a rollout healthy.
    #[serde(default = "default_threshold")]
    pub success_threshold: u32,
    /// Failing rounds in a row that make a healthy revision regressed.
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    /// A rollout not healthy by then has failed ("never became healthy"). A rollout fails
    /// sooner, as soon as `failureThreshold` rounds in a row fail once its processes are up.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: Duration,
    /// How long after a rollout's processes were applied failing rounds count as "still
    /// starting" (pending, not failing); a restart counts at once. Default: the longest
    /// `listen_timeout` among the processes, else pm2's default of 3s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_grace: Option<Duration>,
}

fn default_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_threshold() -> u32 {
    3
}
fn default_progress_deadline() -> Duration {
    Duration::from_secs(300)
}

/// One named check: what it probes, written as exactly one of the keys `http`,
/// `prometheus` or `resources`, and its time limits.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Check {
    /// A short name, shown in status.
    pub name: String,
    /// What the check probes.
    #[serde(flatten)]
    pub kind: CheckKind,
    /// Time limit for one probe (not used by `resources`, which reads what pm2 reports).
    #[serde(default = "default_check_timeout")]
    pub timeout: Duration,
    /// A response slower than this fails the round (`http` checks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<Duration>,
}

/// What a check probes: exactly one of these keys in the check (read through [`Check`]'s
/// `Deserialize`, which refuses none or two).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CheckKind {
    /// An HTTP probe.
    Http(HttpCheck),
    /// A PromQL query whose value must stay within a threshold. A query that returns no
    /// data is inconclusive: that round neither passes nor fails.
    Prometheus(PrometheusCheck),
    /// Limits on the CPU and memory pm2 reports for the app's processes (`pm2 jlist`),
    /// read each round: nothing is probed and no Prometheus is needed.
    Resources(ResourcesCheck),
}

/// What a check with none or more than one kind is told (at the check's own line and path).
const CHECK_KIND_PROBLEM: &str = "needs exactly one of http, prometheus or resources";

impl Check {
    /// The HTTP probe, if this is an `http` check.
    pub fn http(&self) -> Option<&HttpCheck> {
        match &self.kind {
            CheckKind::Http(h) => Some(h),
            _ => None,
        }
    }

    /// The HTTP probe to edit, if this is an `http` check.
    pub fn http_mut(&mut self) -> Option<&mut HttpCheck> {
        match &mut self.kind {
            CheckKind::Http(h) => Some(h),
            _ => None,
        }
    }

    /// The PromQL query, if this is a `prometheus` check.
    pub fn prometheus(&self) -> Option<&PrometheusCheck> {
        match &self.kind {
            CheckKind::Prometheus(p) => Some(p),
            _ => None,
        }
    }

    /// The resource limits, if this is a `resources` check.
    pub fn resources(&self) -> Option<&ResourcesCheck> {
        match &self.kind {
            CheckKind::Resources(r) => Some(r),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Check {
    /// Read as written (each kind an optional key, so unknown keys and the kinds' own
    /// fields are reported as for any struct), then refuse none or two kinds.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let written = written::Check::deserialize(deserializer)?;
        let kind = match (written.http, written.prometheus, written.resources) {
            (Some(h), None, None) => CheckKind::Http(h),
            (None, Some(p), None) => CheckKind::Prometheus(p),
            (None, None, Some(r)) => CheckKind::Resources(r),
            _ => return Err(serde::de::Error::custom(CHECK_KIND_PROBLEM)),
        };
        Ok(Check {
            name: written.name,
            kind,
            timeout: written.timeout,
            max_latency: written.max_latency,
        })
    }
}

/// A check as written, before its kind is known to be exactly one.
mod written {
    use super::*;

    /// Same fields, names and order as [`super::Check`] (serde's messages list them).
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(super) struct Check {
        pub(super) name: String,
        #[serde(default)]
        pub(super) http: Option<HttpCheck>,
        #[serde(default)]
        pub(super) prometheus: Option<PrometheusCheck>,
        #[serde(default)]
        pub(super) resources: Option<ResourcesCheck>,
        #[serde(default = "super::default_check_timeout")]
        pub(super) timeout: Duration,
        #[serde(default)]
        pub(super) max_latency: Option<Duration>,
    }
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(2)
}

/// An HTTP GET probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheck {
    /// `http://` or `https://` URL.
    pub url: String,
    /// The status the response must have.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Text the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

fn default_expect_status() -> u16 {
    200
}

/// A PromQL check: the first sample of `query` must be below `below` and/or above `above`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusCheck {
    /// The Prometheus server, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// An instant query, e.g. `sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))`.
    pub query: String,
    /// The value must be lower than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// The value must be higher than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
}

/// Limits on what pm2 reports for the app's running instances (`pm2 jlist`: each
/// instance's `monit.cpu` and `monit.memory`), checked each round.
///
/// A round in which a figure is over its limit fails, like any failing check; it takes
/// `failureThreshold` failing rounds in a row to make a healthy revision regressed, and a
/// rollout fails only when it is not healthy by `progressDeadline`. So a spike that lasts
/// one round does not fail a rollout or revert a revision, while a memory that keeps
/// climbing past the limit fails every round from then on, and does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcesCheck {
    /// The CPU an instance (or the app) may use, in percent of one core as pm2 reports it
    /// (a process busy on two cores shows 200%), e.g. `80%`. Must be more than 0%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu: Option<Percent>,
    /// The memory (resident set size) an instance (or the app) may use, with binary units
    /// as pm2's `max_memory_restart` reads them: `800M` is 800 MiB; `512Mi`, `1G` and
    /// `1.5G` are accepted too. Must be more than 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<ByteSize>,
    /// Whether the limits hold for each instance, or for the sum over every instance of
    /// every process in `spec.processes`.
    #[serde(default)]
    pub per: ResourcesPer,
}

/// What a resource limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResourcesPer {
    /// Each online pm2 instance on its own.
    #[default]
    Instance,
    /// The sum over every online instance of every process the app declares.
    App,
}

/// What happens when health regresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollback {
    /// Go back to the last healthy revision by itself.
    #[serde(default = "default_true")]
    pub auto: bool,
    /// How long after being declared healthy a regression still reverts.
    #[serde(default = "default_window")]
    pub window: Duration,
}

fn default_true() -> bool {
    true
}
fn default_window() -> Duration {
    Duration::from_secs(1800)
}

impl Default for Rollback {
    fn default() -> Self {
        Rollback {
            auto: true,
            window: default_window(),
        }
    }
}

/// Traffic through nginx, one slot at a time (see `AppSpec::traffic`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Traffic {
    /// What switches the traffic: `nginx`.
    pub via: TrafficVia,
    /// The address nginx serves the app on (`http://127.0.0.1:8080`). Before the switch,
    /// the HTTP checks whose URL starts with it are run against the new slot's own port.
    pub public: String,
    /// The two ports slots take turns on; the serving process reads its port from `PORT`.
    pub ports: Vec<u16>,
    /// The declared process that serves HTTP (default: the first one). The other
    /// processes are applied in place, as without `traffic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The file the controller owns (absolute): the `upstream` block nginx's
    /// `proxy_pass` names and the confirm server, included from nginx's `http` block.
    pub upstream_file: String,
    /// The upstream's name in that file (default `shipshape_<app>`, `-` as `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// A loopback port for the confirm server the upstream file declares: a request there
    /// goes through the same upstream and says which slot answered, so the controller
    /// knows the switch took.
    pub confirm_port: u16,
    /// How long the previous slot keeps running after a switch: a revert inside it is a
    /// switch back with no boot. Costs the memory of one more copy of the serving
    /// process's instances for that long.
    #[serde(default = "default_warm_for")]
    pub warm_for: Duration,
    /// How long a slot leaving service may take to finish the requests nginx still has in
    /// flight to it before it is stopped anyway.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Duration,
    /// How to run nginx (`nginx -t`, `nginx -s reload`).
    #[serde(default)]
    pub nginx: NginxCommand,
}

/// What switches traffic between slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrafficVia {
    /// nginx, through an upstream file the controller owns.
    Nginx,
}

/// How the controller runs nginx.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NginxCommand {
    /// The nginx binary (a path, or a name on `PATH`).
    #[serde(default = "default_nginx")]
    pub binary: String,
    /// Arguments given before `-t` and `-s reload` (e.g. `[-c, /etc/nginx/nginx.conf]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Time limit for each nginx command, and for the switch to be confirmed.
    #[serde(default = "default_nginx_timeout")]
    pub timeout: Duration,
}

fn default_warm_for() -> Duration {
    Duration::from_secs(300)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_nginx() -> String {
    "nginx".into()
}
fn default_nginx_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for NginxCommand {
    fn default() -> Self {
        NginxCommand {
            binary: default_nginx(),
            args: Vec::new(),
            timeout: default_nginx_timeout(),
        }
    }
}

impl Traffic {
    /// The declared process that serves HTTP in slots.
    pub fn serving<'a>(&self, processes: &'a [Process]) -> Option<&'a Process> {
        match &self.process {
            Some(name) => processes.iter().find(|p| &p.name == name),
            None => processes.first(),
        }
    }

    /// The upstream's name for app `app`.
    pub fn upstream_name(&self, app: &str) -> String {
        self.upstream
            .clone()
            .unwrap_or_else(|| format!("shipshape_{}", app.replace('-', "_")))
    }
}

/// Commands run around the switch, in the release directory, each with a time limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hooks {
    /// Run after `current` moved and pm2 was applied (e.g. `sudo systemctl reload nginx`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_switch: Vec<String>,
    /// Time limit for each hook command.
    #[serde(default = "default_hook_timeout")]
    pub timeout: Duration,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(120)
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            after_switch: Vec::new(),
            timeout: default_hook_timeout(),
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, an integer or a boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::String(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue::Integer(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EnvValue, E> {
                i64::try_from(v)
                    .map(EnvValue::Integer)
                    .map_err(|_| E::custom("integer too large; quote it"))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue::Bool(v))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Instances {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Instances;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a positive integer or \"max\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Instances, E> {
                if v == "max" {
                    Ok(Instances::Max(MaxInstances::Max))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Instances, E> {
                u32::try_from(v)
                    .map(Instances::Count)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Instances, E> {
                Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
        }
        deserializer.deserialize_any(V)
    }
}

//! What the controller reports about each app: revisions and their outcomes, the steps
//! of each reconcile pass, and kstatus-style conditions. Times are [`Timestamp`]s (RFC 3339 text in UTC).

use serde::{Deserialize, Serialize};

pub use crate::time::Timestamp;

/// Where an app stands, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum Phase {
    /// Nothing applied yet.
    Pending,
    /// A rollout is being prepared or applied.
    Progressing,
    /// Live equals desired and the last verification passed.
    Ready,
    /// The desired revision failed; the server stays on what it had.
    Failed,
    /// The server is not healthy and the controller cannot fix it by itself.
    Degraded,
    /// The desired-state document does not load or validate.
    Invalid,
    /// The document was removed from the repo; what it deployed is left running.
    Orphaned,
    /// The document was removed and the controller was told to prune: its processes are gone.
    Pruned,
}

/// The outcome of one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum Outcome {
    /// Being applied or verified.
    Progressing,
    /// Passed verification.
    Healthy,
    /// Failed before or during verification.
    Failed,
    /// Failed, and the server went back to the last healthy revision.
    Reverted,
    /// A newer desired state replaced it before it finished.
    Superseded,
}

/// One applied desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// 1, 2, 3 … per app.
    pub number: u64,
    /// The config repo commit the document came from.
    pub config_commit: String,
    /// The app commit.
    pub app_commit: String,
    /// The migration level, when the document has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Hash of the process configuration (pm2 apps as applied).
    pub process_hash: String,
    /// When the rollout began.
    pub started_at: Timestamp,
    /// When it went live: the start of its first step that changed what is live (the
    /// switch, or a pm2 reload for a settings-only change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_at: Option<Timestamp>,
    /// When the outcome was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// What happened.
    pub outcome: Outcome,
    /// Why, in words (the failing step and its error, for failures).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The health rounds its verification counted (a superseded revision that passed
    /// rounds and failed none is a last known good revert target).
    #[serde(default, skip_serializing_if = "Rounds::is_empty")]
    pub rounds: Rounds,
}

/// Health rounds counted while a revision was verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rounds {
    /// Rounds that passed.
    pub passed: u32,
    /// Rounds that failed once the processes were up (rounds while they booted are not counted).
    pub failed: u32,
}

impl Rounds {
    /// True when no round was counted.
    pub fn is_empty(&self) -> bool {
        self.passed == 0 && self.failed == 0
    }
}

/// What kind of step ran (or failed): the planner's steps, and the stages around them
/// that can fail a pass (`load`, `env-file`, `plan`, `pin`, `observe`, `seal`).
/// Recorded in the records and the journal as its kebab-case name (`pm2-reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Write the app's source into a release.
    Fetch,
    /// `build.install`.
    Install,
    /// Carry `node_modules` over from a release installed from the same inputs.
    ReuseDeps,
    /// `build.steps`.
    Build,
    /// Seal a prepared release (write its build marker).
    Seal,
    /// `migrations.backup`.
    Backup,
    /// Migrate up or down.
    Migrate,
    /// Restore a backup (`onRevert: restore`).
    Restore,
    /// Start a release's slot beside the live one (traffic through nginx).
    SlotStart,
    /// Prove a slot on its own port before it gets traffic.
    SlotProve,
    /// Point `current` at a release.
    Switch,
    /// Point nginx's upstream at a slot (write, `nginx -t`, reload, confirm).
    TrafficSwitch,
    /// Drain a slot traffic left, then stop it.
    SlotRetire,
    /// Start a missing process.
    Pm2Start,
    /// Reload a running process.
    Pm2Reload,
    /// Delete and start a process again.
    Pm2Replace,
    /// Delete a process no longer declared.
    Pm2Delete,
    /// `pm2 save`.
    Pm2Save,
    /// Writing the pm2 ecosystem file.
    Pm2Apply,
    /// An after-switch hook.
    Hook,
    /// Health verification.
    Verify,
    /// Loading the document.
    Load,
    /// Reading the env file.
    EnvFile,
    /// Planning (a blocker).
    Plan,
    /// Resolving a pin.
    Pin,
    /// Observing the server.
    Observe,
    /// Watching the live revision's health between passes.
    Health,
}

impl StepKind {
    /// Every kind, in pipeline order.
    pub const ALL: [StepKind; 27] = [
        StepKind::Load,
        StepKind::Pin,
        StepKind::EnvFile,
        StepKind::Observe,
        StepKind::Plan,
        StepKind::Fetch,
        StepKind::Install,
        StepKind::ReuseDeps,
        StepKind::Build,
        StepKind::Seal,
        StepKind::Backup,
        StepKind::Migrate,
        StepKind::Restore,
        StepKind::SlotStart,
        StepKind::SlotProve,
        StepKind::Switch,
        StepKind::TrafficSwitch,
        StepKind::Pm2Apply,
        StepKind::Pm2Start,
        StepKind::Pm2Reload,
        StepKind::Pm2Replace,
        StepKind::Pm2Delete,
        StepKind::SlotRetire,
        StepKind::Pm2Save,
        StepKind::Hook,
        StepKind::Verify,
        StepKind::Health,
    ];

    /// The kebab-case name, as recorded and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Fetch => "fetch",
            StepKind::Install => "install",
            StepKind::ReuseDeps => "reuse-deps",
            StepKind::Build => "build",
            StepKind::Seal => "seal",
            StepKind::Backup => "backup",
            StepKind::Migrate => "migrate",
            StepKind::Restore => "restore",
            StepKind::SlotStart => "slot-start",
            StepKind::SlotProve => "slot-prove",
            StepKind::Switch => "switch",
            StepKind::TrafficSwitch => "traffic-switch",
            StepKind::SlotRetire => "slot-retire",
            StepKind::Pm2Start => "pm2-start",
            StepKind::Pm2Reload => "pm2-reload",
            StepKind::Pm2Replace => "pm2-replace",
            StepKind::Pm2Delete => "pm2-delete",
            StepKind::Pm2Save => "pm2-save",
            StepKind::Pm2Apply => "pm2-apply",
            StepKind::Hook => "hook",
            StepKind::Verify => "verify",
            StepKind::Load => "load",
            StepKind::EnvFile => "env-file",
            StepKind::Plan => "plan",
            StepKind::Pin => "pin",
            StepKind::Observe => "observe",
            StepKind::Health => "health",
        }
    }

    /// True for the steps that only prepare a release or back the database up: the live
    /// release and processes are as they were after them.
    pub fn leaves_live_alone(self) -> bool {
        matches!(
            self,
            StepKind::Fetch
                | StepKind::Install
                | StepKind::ReuseDeps
                | StepKind::Build
                | StepKind::Seal
                | StepKind::Backup
                | StepKind::SlotStart
                | StepKind::SlotProve
                | StepKind::SlotRetire
        )
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<&str> for StepKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for StepKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// How one step of a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum StepResult {
    /// Done.
    Succeeded,
    /// Failed; the pass stopped there.
    Failed,
}

/// One executed step, with the reason it was planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step's kind.
    pub step: StepKind,
    /// What it acted on (a commit, process names …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// Why the planner asked for it.
    pub reason: String,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub result: StepResult,
    /// The last lines of its output, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
}

/// One reconcile pass over one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassRecord {
    /// When the pass started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// The config commit it read.
    pub config_commit: String,
    /// The steps it ran, in order (empty when nothing differed).
    pub steps: Vec<StepRecord>,
    /// The result in words.
    pub result: String,
}

/// Whether a condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// It holds.
    True,
    /// It does not.
    False,
    /// Not known yet.
    Unknown,
}

/// Condition types, kstatus-style. `Ready` and `Healthy` are positive-polarity
/// (True is good); `Reconciling` and `Stalled` are abnormal-true (True needs attention or waiting).
pub mod condition_types {
    /// Live equals desired and is healthy.
    pub const READY: &str = "Ready";
    /// The controller is working towards desired.
    pub const RECONCILING: &str = "Reconciling";
    /// The controller cannot progress without a person (bad document, failed build, failed health).
    pub const STALLED: &str = "Stalled";
    /// The health checks pass.
    pub const HEALTHY: &str = "Healthy";
}

/// Condition reasons: the CamelCase word in a [`Condition`]'s `reason`, one constant per
/// cause (as Flux's `api/` packages define theirs), so the controller, `shipshape status`
/// and anything reading the records or the API's JSON agree on the spelling.
pub mod condition_reasons {
    // Where the app is where it should be.
    /// The last pass left live equal to desired (Ready, Reconciling and Stalled).
    pub const SUCCEEDED: &str = "Succeeded";
    /// The health checks pass (Healthy).
    pub const CHECKS_PASSING: &str = "ChecksPassing";

    // Working towards desired (Reconciling True).
    /// A pass is applying a new revision's steps.
    pub const PROGRESSING: &str = "Progressing";
    /// A pass resumes what a controller that stopped mid-pass left in its journal.
    pub const RESUMING: &str = "Resuming";
    /// A pass hit a transient error and is retried (Reconciling True).
    pub const RETRYING_AFTER_ERROR: &str = "RetryingAfterError";
    /// The transient error that keeps the app from being Ready (Ready False).
    pub const TRANSIENT_ERROR: &str = "TransientError";
    /// A pin or another request stopped a rollout or revert; the next pass converges.
    pub const SUPERSEDED: &str = "Superseded";

    // A step of a rollout failed (Stalled True), named by the step.
    /// Fetching the app's source failed.
    pub const FETCH_FAILED: &str = "FetchFailed";
    /// `build.install` (or carrying `node_modules` over) failed.
    pub const INSTALL_FAILED: &str = "InstallFailed";
    /// A build step failed.
    pub const BUILD_FAILED: &str = "BuildFailed";
    /// The database backup failed.
    pub const BACKUP_FAILED: &str = "BackupFailed";
    /// A migration failed.
    pub const MIGRATION_FAILED: &str = "MigrationFailed";
    /// The revision failed its health verification.
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    /// An after-switch hook failed.
    pub const HOOK_FAILED: &str = "HookFailed";
    /// Another step failed (a switch, a pm2 step …).
    pub const STEP_FAILED: &str = "StepFailed";

    // After a failure.
    /// The failed revision was reverted to the last healthy one (Ready False, Stalled True).
    pub const ROLLED_BACK: &str = "RolledBack";
    /// The revision reverted to is healthy (Healthy True).
    pub const REVERTED_HEALTHY: &str = "RevertedHealthy";
    /// The desired config commit is quarantined; the last good revision is held.
    pub const QUARANTINED: &str = "Quarantined";
    /// The live revision is unhealthy and the controller cannot fix it by itself.
    pub const DEGRADED: &str = "Degraded";

    // A pass could not go on (Stalled True).
    /// The document does not load or validate; nothing was applied.
    pub const INVALID_DOCUMENT: &str = "InvalidDocument";
    /// The env file cannot be read.
    pub const ENV_FILE_UNREADABLE: &str = "EnvFileUnreadable";
    /// The planner refused to go on (a blocker).
    pub const BLOCKED: &str = "Blocked";
    /// A pin names no revision that can be applied.
    pub const PIN_INVALID: &str = "PinInvalid";
    /// A pass could not finish (the records or the server could not be read, or a panic).
    pub const PASS_FAILED: &str = "PassFailed";

    // The document was removed from the config repo.
    /// What it deployed is left running (Orphaned).
    pub const DOCUMENT_REMOVED: &str = "DocumentRemoved";
    /// Its processes were removed, as told to prune (Pruned).
    pub const PRUNED: &str = "Pruned";
    /// Removing its processes failed.
    pub const PRUNE_FAILED: &str = "PruneFailed";

    // A fleet rollout in waves (`spec.rollout`).
    /// The wave gate holds the desired app commit back: the earlier waves do not run it,
    /// Ready, for the soak time yet, or it failed on one of them, or Prometheus cannot say.
    pub const WAVE_HELD: &str = "WaveHeld";

    /// Every reason, for checks and docs.
    pub const ALL: [&str; 28] = [
        SUCCEEDED,
        CHECKS_PASSING,
        PROGRESSING,
        RESUMING,
        RETRYING_AFTER_ERROR,
        TRANSIENT_ERROR,
        SUPERSEDED,
        FETCH_FAILED,
        INSTALL_FAILED,
        BUILD_FAILED,
        BACKUP_FAILED,
        MIGRATION_FAILED,
        HEALTH_CHECK_FAILED,
        HOOK_FAILED,
        STEP_FAILED,
        ROLLED_BACK,
        REVERTED_HEALTHY,
        QUARANTINED,
        DEGRADED,
        INVALID_DOCUMENT,
        ENV_FILE_UNREADABLE,
        BLOCKED,
        PIN_INVALID,
        PASS_FAILED,
        DOCUMENT_REMOVED,
        PRUNED,
        PRUNE_FAILED,
        WAVE_HELD,
    ];
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// One of [`condition_types`].
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// A CamelCase reason: one of [`condition_reasons`].
    pub reason: String,
    /// A sentence for people.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: Timestamp,
}

/// How one probe came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum ProbeState {
    /// It passed.
    Pass,
    /// It failed.
    Fail,
    /// It could not say (a Prometheus query with no data).
    Inconclusive,
}

/// One probe's result, as shown in status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The check's name (`pm2` for the pm2 facts).
    pub name: String,
    /// How it came out.
    pub state: ProbeState,
    /// What was seen ("200 in 3ms", "connection refused", "value 0.02 ≥ 0.01" …).
    pub detail: String,
    /// How long the probe took, in milliseconds.
    pub latency_ms: u64,
}

/// The latest health of the live revision, from the controller's own monitoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthRecord {
    /// When the last round ran.
    pub checked_at: Timestamp,
    /// The revision that was live.
    pub revision: u64,
    /// Whether the last conclusive round passed.
    pub passing: bool,
    /// Passing rounds in a row.
    pub consecutive_passes: u32,
    /// Failing rounds in a row.
    pub consecutive_failures: u32,
    /// When the current streak of failing rounds began (the first of them); none while
    /// the last conclusive round passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Timestamp>,
    /// The last round's results.
    pub results: Vec<CheckResult>,
}

/// A health regression of a revision that had passed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Regression {
    /// The revision that regressed.
    pub revision: u64,
    /// When `failureThreshold` failing rounds in a row were reached.
    pub at: Timestamp,
    /// The last failure.
    pub reason: String,
}

/// Who holds an app where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinSource {
    /// `shipshape pin` (kept in the controller's state).
    Cli,
    /// `spec.pin` in the document.
    Document,
}

/// A pin: the app is held at `revision`, whatever lands in git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    /// The revision held.
    pub revision: u64,
    /// Who pinned it.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Why.
    pub reason: String,
    /// Where the pin comes from.
    pub source: PinSource,
}

/// A config commit the controller refused to apply (untrusted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedCommit {
    /// The commit.
    pub commit: String,
    /// Why (unsigned, unknown signer, bad signature …).
    pub reason: String,
    /// When it was seen.
    pub at: Timestamp,
}

/// The config repo, as the controller sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// The repo (credentials masked).
    pub repo: String,
    /// The branch.
    pub branch: String,
    /// Fetched into a mirror (true) or read in place (false).
    pub remote: bool,
    /// The branch tip as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tip: Option<String>,
    /// When a fetch was last tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_at: Option<Timestamp>,
    /// When a fetch last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<Timestamp>,
    /// The last fetch error, until a fetch succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Failed fetches in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// When the next fetch is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_try_at: Option<Timestamp>,
    /// The newest commit whose signature was trusted (when signatures are required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trusted: Option<String>,
    /// The tip, when it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedCommit>,
    /// A tip that does not descend from the last trusted commit (a rewind, a force-push)
    /// that a person allowed with `shipshape retry --allow-rewind`: applied once, if trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_rewind: Option<String>,
    /// When a webhook last asked for a fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_webhook_at: Option<Timestamp>,
}

/// A failure kept for status: which step, what it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// The step that failed.
    pub step: StepKind,
    /// The error in words.
    pub message: String,
    /// The last lines of the step's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// Where a fleet rollout (`spec.rollout`) stands for this host: its wave, and whether the
/// wave gate lets the desired app commit in, as last checked against the fleet's Prometheus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveGate {
    /// This host's wave.
    pub wave: String,
    /// Its place, from 0 (the first wave).
    pub wave_index: usize,
    /// How many waves there are, "the rest" included when a host is in it.
    pub waves: usize,
    /// The app commit the gate is about.
    pub app_commit: String,
    /// The config commit that asks for it.
    pub config_commit: String,
    /// Open, or why it holds.
    pub state: GateState,
    /// The gate in words.
    pub message: String,
    /// The other hosts the gate waits for (or the one it is held by), each in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<GateHost>,
    /// Since when the gate has been in this state for this app commit.
    pub since: Timestamp,
    /// When the gate was last checked.
    pub checked_at: Timestamp,
    /// The app commit's failures seen on earlier-wave (or same-wave) hosts: the commit is
    /// bad for the fleet until a new config commit, or until that host tries it again
    /// (`shipshape retry` there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<FleetMark>,
    /// The hold has lasted past `spec.rollout.alertAfter` and was alerted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alerted: bool,
    /// `spec.rollout.alertAfter`, in seconds.
    #[serde(default)]
    pub alert_after_seconds: u64,
}

impl WaveGate {
    /// True when the gate holds the commit back.
    pub fn holds(&self) -> bool {
        self.state != GateState::Open
    }
}

/// Whether a wave gate lets a commit in, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GateState {
    /// The earlier waves run the commit, Ready, soaked: this host takes it.
    Open,
    /// An earlier wave does not run it yet, or has not run it for the soak time.
    Waiting,
    /// As many hosts of this wave as it lets at once are taking the commit.
    Busy,
    /// Prometheus cannot be asked, or an earlier-wave host's samples are missing or stale:
    /// a hold, never a go.
    NoData,
    /// The commit failed on an earlier-wave (or same-wave) host: reverted, Degraded,
    /// Failed or quarantined there.
    Failed,
}

impl GateState {
    /// The metric label and the word in status (`open`, `waiting`, `busy`, `noData`,
    /// `failed`).
    pub fn word(self) -> &'static str {
        match self {
            GateState::Open => "open",
            GateState::Waiting => "waiting",
            GateState::Busy => "busy",
            GateState::NoData => "noData",
            GateState::Failed => "failed",
        }
    }
}

/// Another host, as a wave gate sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateHost {
    /// Its name.
    pub host: String,
    /// Its wave.
    pub wave: String,
    /// Where it stands, in words ("Ready on 1a2b3c4d5e6f, soaked 40s of 5m").
    pub state: String,
    /// How long it has run the commit, Ready, without a gap in the samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soaked_seconds: Option<f64>,
}

/// A failure of the gated commit on another host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetMark {
    /// The host it failed on.
    pub host: String,
    /// How ("reverted", "Degraded", "Failed").
    pub reason: String,
    /// The time of the sample that showed it (Prometheus's, in seconds since the epoch).
    pub at: f64,
}

#[cfg(test)]
mod tests {
    use super::condition_reasons;

    #[test]
    fn every_condition_reason_is_distinct_camel_case_and_listed_in_the_status_page() {
        let page = include_str!("../../docs/status.md");
        for (i, r) in condition_reasons::ALL.iter().enumerate() {
            assert!(
                r.starts_with(|c: char| c.is_ascii_uppercase())
                    && r.chars().all(|c| c.is_ascii_alphanumeric()),
                "{r}"
            );
            assert!(!condition_reasons::ALL[..i].contains(r), "{r} twice");
            assert!(
                page.contains(&format!("`{r}`")),
                "docs/status.md does not list {r}"
            );
        }
    }
}

//! The reconcile pass for each app, as a pipeline of typed stages:
//! `target → observe → plan → execute → decide → record`.
//!
//! # Layout
//! - [`target`] (pure): what to converge to: the document, a pin, or the last good revision
//!   while the desired config commit is quarantined; the last-known-good rule; pins.
//! - [`decide`] (pure): what to do after the steps ended, or after a regression.
//! - [`record`] (pure): outcomes, quarantines and conditions, written in one place.
//! - [`revert`]: which revision to go back to and how (pure), then going back.
//! - [`journal`]: the typed in-flight journal a stopped controller leaves behind.
//! - [`execute`]: the step runners; [`verify`]: health rounds until the verdict;
//!   `replace`: a `pm2-replace`, graceful in cluster mode (moves decided by
//!   [`crate::plan::replace`]).
//! - [`desired`]: the config repo read for this host; [`publish`]: events and metrics.
//!
//! # Guarantees
//! - Level-triggered: a pass never asks what woke it. A regression the health monitor saw,
//!   a pin, a quarantine: all are facts in the records that the pass reads.
//! - A failure before the switch leaves the live release as it was.
//! - A rollout fails as soon as `failureThreshold` rounds in a row fail once its processes
//!   are up (rounds while they start are pending), and is then reverted under
//!   `rollback.auto`; `progressDeadline` bounds a rollout that never becomes healthy.
//! - A config commit whose rollout failed or was reverted is quarantined: it is not applied
//!   again until a new config commit or `shipshape retry`; the server is held on the last
//!   good revision (drift towards it is still corrected).
//! - If checks were already failing before a rollout — the live revision failed
//!   `failureThreshold` monitor rounds in a row, counted after its own last change settled
//!   ([`record::Evidence`]) — its revision is not blamed for them; one hiccup is not failing.
//! - A config commit that changes only `spec.health` re-verifies the live release and
//!   touches no process ([`recheck`]); a changed check that fails is the document's fault:
//!   Degraded, never reverted or quarantined.
//! - If the revision reverted to fails too, the app is Degraded and left alone: no loops.
//! - While a rollout is being verified, a newer document for the app, or a request (pin,
//!   unpin, retry), cancels the wait; steps that change live state always finish first.
//! - Pins first: a pin or unpin recorded while a pass runs (see [`crate::state::requests`])
//!   stops it before its next step that changes live state when the pin in force would have
//!   it converge elsewhere (an install or build in progress is cut short); the revision is
//!   recorded Superseded with why, and the next pass converges to the pin ([`pins`]).
//!
//! # Caveats
//! Revision numbers are per host: each controller keeps its own history.

mod conclude;
pub mod decide;
mod desired;
pub mod execute;
pub mod journal;
mod observe;
pub mod pins;
mod publish;
pub mod recheck;
pub mod record;
mod replace;
pub mod revert;
pub mod target;
mod verify;

#[cfg(test)]
pub(crate) mod fixtures;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use shipshape_spec::App;
use shipshape_spec::status::{
    ConditionStatus, Outcome, Phase, Pin, PinSource, Revision, Rounds, StepKind, StepRecord,
    StepResult, Timestamp, condition_reasons as cr, condition_types as ct,
};
use tracing::{info, warn};

use crate::plan::{self, Plan, PlannedStep, Step, short_sha};
use crate::pm2::Pm2;
use crate::runtime::events::{EventKind, Hub};
use crate::source::{self, ConfigRepo};
use crate::state::{self, AppRecord, RevisionEntry, Store};

pub use decide::{Decision, ErrorClass};
pub use desired::{Desired, DesiredDoc, HostIdentity};
pub use execute::{Secrets, StepError};
pub use record::{mark_ready, set_degraded};
pub use target::{Mode, Target};

use execute::Run;
use journal::{Journal, JournalFile};
use target::{DocumentPinChange, NoTarget, RevisionChoice};
use verify::Cancel;

/// Why a whole pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The config repo could not be read.
    #[error("reading the config repo: {0}")]
    Source(#[from] source::SourceError),
    /// The records could not be read or written.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// pm2 could not be observed.
    #[error("observing pm2: {0}")]
    Observe(#[from] crate::pm2::Pm2Error),
    /// The release directory could not be read.
    #[error("reading releases under {root}: {source}")]
    Releases {
        /// The releases root.
        root: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How one app's pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppResult {
    /// What should run runs and is healthy (the document, or the pinned revision);
    /// `steps` ran to get there (0 for a no-op).
    Ready {
        /// Steps run in this pass.
        steps: usize,
    },
    /// Not there: failed, reverted, quarantined, degraded or still progressing.
    NotReady {
        /// Phase.
        phase: Phase,
        /// Why.
        message: String,
    },
    /// A newer desired state (or a request) arrived while the rollout was verified; the
    /// next pass should run at once.
    Superseded {
        /// Why.
        message: String,
    },
    /// The document did not load.
    Invalid {
        /// Every problem, one per line.
        message: String,
    },
}

impl AppResult {
    /// True for [`AppResult::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, AppResult::Ready { .. })
    }
}

/// Per-app coordination between passes, the health monitor and API requests.
#[derive(Debug, Default)]
pub struct AppHandle {
    /// Held by whoever reads-modifies-writes the app's records.
    pub lock: tokio::sync::Mutex<()>,
    /// Held by whoever writes the app's `requests.json` (only the API, off the runtime
    /// thread): never across an await, never for longer than a small file's write. A
    /// request never waits for [`AppHandle::lock`].
    pub requests: std::sync::Mutex<()>,
    interrupts: AtomicU64,
    steps: AtomicU64,
}

impl AppHandle {
    /// Ask a rollout being verified to stop waiting, and a pass in flight to look at the
    /// requests (a request was recorded). Call it after the request is written: a pass's
    /// pin checks read `requests.json` again only when this changed ([`pins`]).
    pub fn interrupt(&self) {
        self.interrupts.fetch_add(1, Ordering::SeqCst);
    }

    /// How many interrupts so far.
    pub fn generation(&self) -> u64 {
        self.interrupts.load(Ordering::SeqCst)
    }

    /// True while a pass of the app runs steps (a rollout, a repair, a revert): a request
    /// that changes the pin takes effect at its next step boundary, and is answered 202. A
    /// pass with nothing to run never changes live state: a request is in force at once.
    pub fn running_steps(&self) -> bool {
        self.steps.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn begin_steps(self: &Arc<Self>) -> RunningSteps {
        self.steps.fetch_add(1, Ordering::SeqCst);
        RunningSteps(self.clone())
    }
}

/// A pass of the app runs steps while this lives.
pub(crate) struct RunningSteps(Arc<AppHandle>);

impl Drop for RunningSteps {
    fn drop(&mut self) {
        self.0.steps.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every app's [`AppHandle`], created on first use.
#[derive(Debug, Clone, Default)]
pub struct AppHandles(Arc<std::sync::Mutex<HashMap<String, Arc<AppHandle>>>>);

impl AppHandles {
    /// Interrupt every app's verification (a stop was asked for).
    pub fn interrupt_all(&self) {
        for h in self.0.lock().expect("handles lock").values() {
            h.interrupt();
        }
    }

    /// The handle for `app`.
    pub fn get(&self, app: &str) -> Arc<AppHandle> {
        let mut map = self.0.lock().expect("handles lock");
        map.entry(app.to_string()).or_default().clone()
    }
}

/// The controller: where things are and how to reach them.
#[derive(Debug, Clone)]
pub struct Controller {
    /// The config repo.
    pub config: ConfigRepo,
    /// The records.
    pub store: Store,
    /// pm2.
    pub pm2: Pm2,
    /// HTTP clients for notifications (built on first use).
    pub http: crate::clients::Http,
    /// The probe thread, where health checks run and are timed (started on first use).
    pub probes: crate::health::probes::Prober,
    /// Where app repositories are mirrored.
    pub sources_dir: PathBuf,
    /// Revisions kept per app.
    pub history: usize,
    /// CPUs (for `instances: max`).
    pub cpus: u32,
    /// dbmate, for releases that do not bring their own.
    pub dbmate: PathBuf,
    /// Events, metrics and notifications.
    pub hub: Hub,
    /// Per-app locks and interrupts.
    pub handles: AppHandles,
    /// At most this many apps reconcile at once.
    pub concurrency: usize,
    /// Which config commits to trust (none required by default).
    pub trust: crate::source::trust::Trust,
    /// This host, for `spec.hosts`.
    pub host: HostIdentity,
    /// Delete the processes of apps whose documents were removed.
    pub prune: bool,
}

/// One pass's result for every document.
#[derive(Debug, Clone)]
pub struct PassSummary {
    /// The config commit read.
    pub config_commit: String,
    /// Per app (or per file, for documents that did not load).
    pub apps: BTreeMap<String, AppResult>,
}

impl PassSummary {
    /// True when every app is Ready.
    pub fn all_ready(&self) -> bool {
        !self.apps.is_empty() && self.apps.values().all(AppResult::is_ready)
    }

    /// True when some app's rollout was superseded (the loop should go again at once).
    pub fn superseded(&self) -> bool {
        self.apps
            .values()
            .any(|r| matches!(r, AppResult::Superseded { .. }))
    }
}

/// A pass's fixed facts.
struct PassInfo<'a> {
    started_at: Timestamp,
    config_commit: &'a str,
    file: Option<&'a str>,
    text: Option<&'a str>,
}

/// What the steps of a pass left behind, for the decision.
struct Executed {
    number: u64,
    target: Target,
    release: String,
    records: Vec<StepRecord>,
    rounds: Rounds,
    switched: bool,
    failing_before: Option<record::Evidence>,
    /// The pass only re-verified the live release after a change of its `spec.health`.
    recheck: Option<recheck::HealthChange>,
    /// What failed in the verification's last failing round.
    failed_checks: Vec<String>,
}

impl Controller {
    /// One pass over every document, apps concurrently (bounded): for `run --once` and
    /// scripts. The daemon runs apps independently instead (see `daemon`).
    ///
    /// # Errors
    /// [`ReconcileError`] when the config repo cannot be read; per-app failures are in the summary.
    pub async fn reconcile_all(&self) -> Result<PassSummary, ReconcileError> {
        if self.config.is_remote() {
            self.fetch_source().await?;
        }
        let desired = self.load_desired().await?;
        let mut apps = self.record_unrunnable(&desired).await;
        let limit = Arc::new(tokio::sync::Semaphore::new(self.concurrency.max(1)));
        let mut work = Vec::new();
        for doc in &desired.docs {
            let limit = limit.clone();
            let commit = desired.commit.as_str();
            work.push(async move {
                let _permit = limit.acquire().await.expect("semaphore open");
                let result = self
                    .reconcile_app(&doc.app, commit, Some((&doc.path, &doc.text)))
                    .await;
                (doc.app.metadata.name.clone(), result)
            });
        }
        for (name, result) in futures::future::join_all(work).await {
            apps.insert(name, result?);
        }
        if let Some(r) = &desired.refused
            && apps.is_empty()
        {
            apps.insert("(source)".into(), AppResult::Invalid { message: r.clone() });
        }
        Ok(PassSummary {
            config_commit: desired.commit,
            apps,
        })
    }

    /// One pass over one app. `source` is the document's path and text in the config repo
    /// (it lets a verification notice a newer document).
    ///
    /// # Errors
    /// [`ReconcileError`] only when the records or the server cannot be read at all.
    pub async fn reconcile_app(
        &self,
        desired: &App,
        config_commit: &str,
        source: Option<(&str, &str)>,
    ) -> Result<AppResult, ReconcileError> {
        let name = desired.metadata.name.as_str();
        let handle = self.handles.get(name);
        let _guard = handle.lock.lock().await;
        // With the requests recorded since the last save applied: a pin is in force.
        let mut rec = self.store.load(name)?;
        let phase_before = rec.phase;
        let info = PassInfo {
            started_at: state::now(),
            config_commit,
            file: source.map(|s| s.0),
            text: source.map(|s| s.1),
        };
        rec.announced_phase = Some(phase_before);
        let result = self.pass(&mut rec, desired, &info, &handle).await;
        self.announce_phase(&mut rec);
        self.publish_app_metrics(&rec);
        result
    }

    /// The pass: target → observe → plan → execute → decide → record.
    async fn pass(
        &self,
        rec: &mut AppRecord,
        desired: &App,
        info: &PassInfo<'_>,
        handle: &Arc<AppHandle>,
    ) -> Result<AppResult, ReconcileError> {
        let stopped = self.begin_pass(rec, desired, info);
        // The monitor saw the live revision regress: act on it first.
        if let Some(reg) = rec.regression.take() {
            return self.on_regression(rec, reg, info, handle).await;
        }
        let target = match target::choose(rec, desired, info.config_commit) {
            Ok(t) => t,
            Err(no) => return self.no_target(rec, info, no),
        };
        // A revert the controller stopped in, to the revision held anyway: finish it as a
        // revert (the failed revision's `onRevert` treats the schema, from its release).
        if let Some(j) = &stopped
            && let Some(r) = &j.reverting
            && matches!(target.mode, Mode::Hold { .. })
            && target.held == Some(j.revision)
            && rec
                .revision(r.from)
                .is_some_and(|f| f.revision.outcome == Outcome::Failed)
        {
            return self.resume_revert(rec, j, info, handle).await;
        }
        let secrets = match Secrets::load(&target.document) {
            Ok(s) => s,
            Err(e) => {
                let m = e.to_string();
                return self.stop(rec, info, cr::ENV_FILE_UNREADABLE, StepKind::EnvFile, &m);
            }
        };
        let observed = self.observe(&target.document, rec, &secrets).await?;
        let mut the_plan = plan::plan(&target.document, &observed);
        let hash = plan::processes_hash(&target.document, &secrets.env);
        // What the stopped pass of this same revision did that the planner cannot see.
        let stopped = stopped.filter(|j| {
            j.reverting.is_none()
                && target::revision_for(rec, &target, info.config_commit, &the_plan.release, &hash)
                    == RevisionChoice::Existing(j.revision)
        });
        let mut amended = journal::Amended::default();
        if let Some(j) = &stopped {
            amended = j.amend(&mut the_plan);
            if amended.hooks_applied {
                rec.hooks_applied = Some(execute::hooks_record(&target.document, &the_plan));
            }
            if amended != journal::Amended::default() {
                info!(app = %rec.name, ?amended, "amended the plan with what the stopped pass did");
            }
        }
        let reverify = the_plan.steps.is_empty()
            && target::needs_reverify(rec, &target, info.config_commit, &the_plan.release, &hash);
        if reverify {
            the_plan.steps.push(PlannedStep {
                step: Step::Verify,
                reason: "the rollout's verification did not finish (the controller stopped, or a newer document came and went); verifying again".into(),
            });
        }
        // Live may have changed before this pass: by the stopped pass, or before a
        // verification that did not finish.
        let resumed = reverify
            || amended.verify
            || stopped
                .as_ref()
                .is_some_and(|j| j.done.iter().any(|d| !d.step.leaves_live_alone()));
        // A config commit that changed only spec.health: verify the live release with the
        // new checks, touching nothing else.
        let rechecked = if the_plan.steps.is_empty() {
            recheck::health_only(rec, &target, &the_plan.release, &hash)
        } else {
            None
        };
        if let Some(change) = &rechecked {
            the_plan.steps.push(PlannedStep {
                step: Step::Verify,
                reason: change.reason(),
            });
        }
        if !the_plan.blockers.is_empty() {
            let message = the_plan.blockers.join("; ");
            return self.stop(rec, info, cr::BLOCKED, StepKind::Plan, &message);
        }
        if the_plan.steps.is_empty() {
            self.adopt_settings(rec, &target, info.config_commit, &the_plan.release, &hash);
            return self.settle(rec, info, &target.mode, &the_plan.release, &hash);
        }
        let number = self.open_revision(rec, &target, info.config_commit, &the_plan, &hash);
        let steps = the_plan.steps.len();
        record::set_progressing(
            rec,
            cr::PROGRESSING,
            &format!("revision {number}: applying {steps} step(s)"),
        );
        self.store.save(rec)?;
        self.announce_phase(rec);
        info!(app = %rec.name, revision = number, release = %the_plan.release, "applying plan\n{the_plan}");
        // Were the checks already failing before this rollout? Then it is not to blame; the
        // evidence is the monitor's record of the live revision (never one fresh round).
        let failing_before = record::live_failing(rec);
        let watched = match (target.mode.follows(), info.file) {
            (true, Some(f)) => Some((f.to_string(), info.text.map(str::to_string))),
            _ => None,
        };
        let journal = JournalFile::new(&self.store.app_dir(&rec.name));
        let planned = the_plan.steps.iter().map(|s| s.step.kind()).collect();
        if let Err(e) = journal.start(&Journal::new(number, planned, stopped.as_ref(), None)) {
            warn!(app = %rec.name, journal = %journal.path().display(), "could not write the in-flight journal (a controller stopped during this pass would not say where it got to): {e}");
        }
        let mut run = Run {
            app: &target.document,
            plan: &the_plan,
            secrets: &secrets,
            log: self.log_path(&rec.name, number),
            cancel: Cancel::new(
                handle,
                &self.config,
                watched,
                self.trust.required().then(|| self.store.clone()),
            )
            .with_pins(pins::PinWatch::new(&self.store, rec, handle, number)),
            fail_fast: true,
            records: Vec::new(),
            rounds: Rounds::default(),
            failed_checks: Vec::new(),
            hooks_applied: None,
        };
        let outcome = self.execute(&mut run).await;
        let (records, rounds, failed_checks) = (run.records, run.rounds, run.failed_checks);
        if let Some(h) = run.hooks_applied {
            rec.hooks_applied = Some(h);
        }
        let switched = resumed
            || records
                .iter()
                .any(|r| r.result == StepResult::Succeeded && !r.step.leaves_live_alone());
        let done = Executed {
            number,
            release: the_plan.release.clone(),
            target,
            records,
            rounds,
            switched,
            failing_before,
            recheck: rechecked,
            failed_checks,
        };
        self.conclude_pass(rec, info, handle, done, outcome).await
    }

    /// The pass's bookkeeping before anything else: what is desired, a journal left by a
    /// controller that stopped mid-pass (returned), and the document's pin.
    fn begin_pass(
        &self,
        rec: &mut AppRecord,
        desired: &App,
        info: &PassInfo<'_>,
    ) -> Option<Journal> {
        rec.desired_config_commit = Some(info.config_commit.to_string());
        rec.desired_app_commit = Some(desired.spec.source.commit.clone());
        rec.passes += 1;
        let stopped = JournalFile::new(&self.store.app_dir(&rec.name)).take();
        if let Some(j) = &stopped {
            let what = j.describe();
            warn!(app = %rec.name, "resuming: {what}");
            rec.set_condition(
                ct::RECONCILING,
                ConditionStatus::True,
                cr::RESUMING,
                &what,
                &state::now(),
            );
        }
        match target::document_pin(rec, desired) {
            DocumentPinChange::Keep => {}
            DocumentPinChange::Remove => {
                if let Some(old) = rec.pin.take() {
                    let m = "the document's pin was removed".to_string();
                    self.emit(rec, EventKind::Unpinned, Some(old.revision), m);
                }
            }
            DocumentPinChange::Set(revision) => {
                let doc = desired.spec.pin.as_ref().expect("document pins");
                let pin = Pin {
                    revision,
                    by: doc.by.clone().unwrap_or_else(|| "the document".into()),
                    at: state::now(),
                    reason: doc.reason.clone(),
                    source: PinSource::Document,
                };
                let m = format!(
                    "pinned at revision {revision} by {}: {}",
                    pin.by, pin.reason
                );
                rec.pin = Some(pin);
                self.emit(rec, EventKind::Pinned, Some(revision), m);
            }
            DocumentPinChange::Refused(why) => {
                warn!(app = %rec.name, "spec.pin: {why}; not pinning");
            }
        }
        stopped
    }

    /// Nothing to converge to: a pin whose revision is gone, or a quarantine with nothing
    /// good to hold.
    fn no_target(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        no: NoTarget,
    ) -> Result<AppResult, ReconcileError> {
        match no {
            NoTarget::PinGone { revision } => {
                let message = format!(
                    "pinned to revision {revision}, which is no longer in the history; unpin or pin another revision"
                );
                self.stop(rec, info, cr::PIN_INVALID, StepKind::Pin, &message)
            }
            NoTarget::QuarantinedWithoutGood { why } => {
                let message = format!(
                    "config commit {} is quarantined ({why}) and there is no healthy revision to hold; commit a fix or run `shipshape retry {}`",
                    short_sha(info.config_commit),
                    rec.name
                );
                self.finish_pass(rec, info, Vec::new(), &message)?;
                Ok(AppResult::NotReady {
                    phase: rec.phase,
                    message,
                })
            }
        }
    }

    /// A document change that needs no step (health checks, rollback window …) becomes the
    /// live revision's settings, so monitoring and reverts use them.
    fn adopt_settings(
        &self,
        rec: &mut AppRecord,
        target: &Target,
        config_commit: &str,
        release: &str,
        hash: &str,
    ) {
        if !target.mode.follows() {
            return;
        }
        if let Some(live) = rec.live_revision
            && let Some(entry) = rec.revision_mut(live)
            && entry.release == release
            && entry.revision.process_hash == hash
            && entry.document != target.document
        {
            entry.document = target.document.clone();
            info!(app = %rec.name, revision = live, config_commit = %config_commit, "adopted settings that need no step");
        }
    }

    /// The revision the pass's steps are applied as: an existing one, or a new rollout.
    fn open_revision(
        &self,
        rec: &mut AppRecord,
        target: &Target,
        config_commit: &str,
        the_plan: &Plan,
        hash: &str,
    ) -> u64 {
        match target::revision_for(rec, target, config_commit, &the_plan.release, hash) {
            RevisionChoice::Existing(n) => n,
            RevisionChoice::New => {
                let n = rec.next_revision;
                rec.next_revision += 1;
                let doc = &target.document;
                let entry = RevisionEntry {
                    revision: Revision {
                        number: n,
                        config_commit: config_commit.to_string(),
                        app_commit: doc.spec.source.commit.clone(),
                        level: doc.spec.migrations.as_ref().map(|m| m.level.clone()),
                        process_hash: hash.to_string(),
                        started_at: state::now(),
                        live_at: None,
                        finished_at: None,
                        outcome: Outcome::Progressing,
                        message: String::new(),
                        rounds: Rounds::default(),
                    },
                    release: the_plan.release.clone(),
                    document: doc.clone(),
                    not_blamed: false,
                    suspect_checks: Vec::new(),
                    backup: None,
                };
                rec.push_revision(entry, self.history);
                let m = format!(
                    "revision {n}: app {} (config {}), {} step(s)",
                    short_sha(&doc.spec.source.commit),
                    short_sha(config_commit),
                    the_plan.steps.len()
                );
                self.emit(rec, EventKind::RolloutStarted, Some(n), m);
                n
            }
        }
    }

    /// `<state-dir>/apps/<app>/logs/revision-<n>.log`: every step's output for a revision.
    pub fn log_path(&self, app: &str, revision: u64) -> PathBuf {
        self.store
            .app_dir(app)
            .join("logs")
            .join(format!("revision-{revision}.log"))
    }
}

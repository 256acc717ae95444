//! The reconcile pass for each app, as a pipeline of typed stages:
//! `target → observe → plan → execute → decide → record`.
//!
//! # Layout
//! - [`target`] (pure): what to converge to: the document, a pin, or the last good revision
//!   while the desired config commit is quarantined, or the live revision while a wave gate
//!   holds a new app commit back; the last-known-good rule; pins.
//! - [`waves`]: asking a fleet rollout's wave gate ([`crate::gate`]) and keeping its answer.
//! - [`decide`] (pure): what to do after the steps ended, or after a regression.
//! - [`record`] (pure): outcomes, quarantines and conditions, written in one place.
//! - [`revert`]: which revision to go back to and how (pure), then going back.
//! - [`journal`]: the typed in-flight journal a stopped controller leaves behind.
//! - [`crate::execute`]: the step runners (health rounds until the verdict, a graceful
//!   `pm2-replace`); [`crate::observe`]: the server as it is; both reach the world through
//!   the controller's [`crate::ports::Ports`].
//! - [`desired`]: the config repo read for this host; [`publish`]: events and metrics;
//!   `prune`: releases no longer needed.
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
pub mod journal;
pub mod pins;
pub mod prepare;
mod prune;
mod publish;
pub mod recheck;
pub mod record;
pub mod revert;
pub mod target;
pub mod waves;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod scenarios;

// The step runners moved to `crate::execute`; these names keep the stages' paths.
pub use crate::execute;
use crate::execute::verify;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use shipshape_spec::App;
use shipshape_spec::status::{
    Outcome, Phase, Revision, Rounds, StepKind, StepRecord, StepResult, Timestamp,
    condition_reasons as cr,
};
use tracing::{info, warn};

use crate::plan::{Plan, short_sha};
use crate::runtime::events::{EventKind, Hub};
use crate::source::{self, ConfigRepo};
use crate::state::{self, AppRecord, RevisionEntry, Store};

pub use decide::{Decision, ErrorClass};
pub use desired::{Desired, DesiredDoc, HostIdentity};
pub use execute::{Secrets, StepError};
pub use record::{mark_ready, set_degraded};
pub use target::{Mode, Target};

use conclude::Ended;
use execute::{Run, Tools};
use journal::{Journal, JournalFile};
use prepare::{Next, Prepared};
use target::{NoTarget, RevisionChoice};
use verify::Cancel;

pub use prepare::Preparation;

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
    /// What a pass reaches the world through: pm2, commands, the clock, the config and
    /// app sources, the health probes.
    pub ports: crate::ports::Ports,
    /// HTTP clients for notifications (built on first use).
    pub http: crate::clients::Http,
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
    /// Change nothing (`shipshape plan`): the source status the trust rules keep is not saved.
    pub read_only: bool,
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
    /// The file the rollout's backup step wrote.
    backup: Option<PathBuf>,
    /// The pass only re-verified the live release after a change of its `spec.health`.
    recheck: Option<recheck::HealthChange>,
    /// What failed in the verification's last failing round.
    failed_checks: Vec<String>,
    /// How the steps ended.
    outcome: Result<(), StepError>,
}

impl Controller {
    /// One pass over every document, apps concurrently (bounded): for `run --once` and
    /// scripts. The daemon runs apps independently instead (see `daemon`).
    ///
    /// # Errors
    /// [`ReconcileError`] when the config repo cannot be read; per-app failures are in the summary.
    pub async fn reconcile_all(&self) -> Result<PassSummary, ReconcileError> {
        if self.ports.source.is_remote() {
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
            started_at: self.ports.clock.now(),
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

    /// The pass: target → observe → plan ([`Controller::prepare`], which `shipshape plan`
    /// calls too) → execute → decide → record, saved once at the end.
    async fn pass(
        &self,
        rec: &mut AppRecord,
        desired: &App,
        info: &PassInfo<'_>,
        handle: &Arc<AppHandle>,
    ) -> Result<AppResult, ReconcileError> {
        let stopped = JournalFile::new(&self.store.app_dir(&rec.name)).take();
        let notes = prepare::begin(rec, desired, info.config_commit, stopped.as_ref());
        self.publish(rec, notes);
        let preparation = self
            .prepare(rec, desired, info.config_commit, stopped)
            .await?;
        let notes = waves::record(
            rec,
            desired,
            info.config_commit,
            preparation.gate(),
            state::now(),
        );
        self.publish(rec, notes);
        let ended = match preparation {
            // The monitor saw the live revision regress: act on it first.
            Preparation::Regressed(reg) => {
                rec.regression = None;
                self.on_regression(rec, reg, handle).await
            }
            Preparation::NoTarget(no) => self.no_target(rec, no),
            Preparation::Gated(v) => self.gated_undeployed(rec, &v),
            Preparation::ResumeRevert(j) => self.resume_revert(rec, &j, handle).await,
            Preparation::EnvFileUnreadable(m) => {
                self.stop(rec, cr::ENV_FILE_UNREADABLE, StepKind::EnvFile, &m)
            }
            Preparation::Planned(p) => self.run_prepared(rec, info, handle, *p).await?,
        };
        self.finish_pass(rec, info, ended.records, &ended.message)?;
        Ok(ended.result)
    }

    /// Stop, settle or run a planned pass.
    async fn run_prepared(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        handle: &Arc<AppHandle>,
        p: Prepared,
    ) -> Result<Ended, ReconcileError> {
        // The hooks the stopped pass ran are applied, whatever this pass does next (but for
        // an env file that cannot be read: it stops before looking at the journal).
        let note_hooks = |rec: &mut AppRecord| {
            if let Some(h) = p.hooks_applied() {
                rec.hooks_applied = Some(h);
            }
        };
        match p.next() {
            Next::EnvFile(m) => {
                return Ok(self.stop(rec, cr::ENV_FILE_UNREADABLE, StepKind::EnvFile, &m));
            }
            Next::Blocked(m) => {
                note_hooks(rec);
                return Ok(self.stop(rec, cr::BLOCKED, StepKind::Plan, &m));
            }
            Next::Settle => {
                note_hooks(rec);
                let (release, hash) = (&p.plan.release, &p.hash);
                self.adopt_settings(rec, &p.target, info.config_commit, release, hash);
                return Ok(self.settle(rec, info, &p.target.mode, release, hash));
            }
            Next::Run => note_hooks(rec),
        }
        let number = self.open_revision(rec, &p.target, info.config_commit, &p.plan, &p.hash);
        let steps = p.plan.steps.len();
        record::set_progressing(
            rec,
            cr::PROGRESSING,
            &format!("revision {number}: applying {steps} step(s)"),
        );
        self.store.save(rec)?;
        self.announce_phase(rec);
        info!(app = %rec.name, revision = number, release = %p.plan.release, "applying plan\n{}", p.plan);
        let done = self.execute_prepared(rec, info, handle, number, p).await;
        Ok(self.conclude_pass(rec, info, handle, done).await)
    }

    /// Run a planned pass's steps as revision `number`, journaled.
    async fn execute_prepared(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        handle: &Arc<AppHandle>,
        number: u64,
        p: Prepared,
    ) -> Executed {
        // Were the checks already failing before this rollout? Then it is not to blame; the
        // evidence is the monitor's record of the live revision (never one fresh round).
        let failing_before = record::live_failing(rec);
        let watched = match (p.target.mode.follows(), info.file) {
            (true, Some(f)) => Some((f.to_string(), info.text.map(str::to_string))),
            _ => None,
        };
        let journal = JournalFile::new(&self.store.app_dir(&rec.name));
        let planned = p.plan.steps.iter().map(|s| s.step.kind()).collect();
        let begun = Journal::new(number, planned, p.stopped.as_ref(), None);
        if let Err(e) = journal.start(&begun) {
            warn!(app = %rec.name, journal = %journal.path().display(), "could not write the in-flight journal (a controller stopped during this pass would not say where it got to): {e}");
        }
        let cancel = Cancel::new(handle, &self.ports, watched).with_pins(pins::PinWatch::new(
            &self.store,
            rec,
            handle,
            number,
        ));
        let log = self.log_path(&rec.name, number);
        let mut run = Run::new(&p.target.document, &p.plan, &p.secrets, log, cancel, true);
        let outcome = execute::execute(&self.tools(&rec.name), &mut run).await;
        let (records, rounds, failed_checks) = (run.records, run.rounds, run.failed_checks);
        if let Some(h) = run.hooks_applied {
            rec.hooks_applied = Some(h);
        }
        let switched = p.resumed
            || records
                .iter()
                .any(|r| r.result == StepResult::Succeeded && !r.step.leaves_live_alone());
        Executed {
            number,
            backup: run.backup,
            release: p.plan.release.clone(),
            target: p.target,
            records,
            rounds,
            switched,
            failing_before,
            recheck: p.recheck,
            failed_checks,
            outcome,
        }
    }

    /// Nothing to converge to: a pin whose revision is gone, or a quarantine with nothing
    /// good to hold.
    fn no_target(&self, rec: &mut AppRecord, no: NoTarget) -> Ended {
        let message = no.to_string();
        match no {
            NoTarget::PinGone { .. } => self.stop(rec, cr::PIN_INVALID, StepKind::Pin, &message),
            NoTarget::QuarantinedWithoutGood { .. } => Ended::not_ready(rec.phase, message),
        }
    }

    /// A wave gate holds the desired app commit back and nothing is live yet: the app
    /// waits, undeployed (Pending, Reconciling with reason `WaveHeld`).
    fn gated_undeployed(&self, rec: &mut AppRecord, v: &crate::gate::Verdict) -> Ended {
        let message = format!(
            "wave {} ({} of {}) holds the first rollout: {}",
            v.wave,
            v.wave_index + 1,
            v.waves,
            v.message
        );
        rec.set_condition(
            shipshape_spec::status::condition_types::RECONCILING,
            shipshape_spec::status::ConditionStatus::True,
            cr::WAVE_HELD,
            &message,
            &state::now(),
        );
        // The result's words stay the same while the gate's reason does (the soak's seconds
        // tick in the condition), so the daemon warns of it once, not every check.
        Ended::not_ready(
            rec.phase,
            format!(
                "wave {} ({} of {}) holds the first rollout ({}); `shipshape status {}` says why",
                v.wave,
                v.wave_index + 1,
                v.waves,
                v.state.word(),
                rec.name
            ),
        )
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

    /// What the step runners of `app`'s passes reach the world through.
    pub(crate) fn tools(&self, app: &str) -> Tools<'_> {
        Tools {
            ports: &self.ports,
            app_dir: self.store.app_dir(app),
            cpus: self.cpus,
            dbmate: &self.dbmate,
            metrics: &self.hub.metrics,
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

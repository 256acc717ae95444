//! The reconcile pass for each app: read desired and observed state afresh, decide what
//! to converge to (the document, a pin, or the last healthy revision while the desired one
//! is quarantined), plan, execute step by step with records, verify health, and go back to
//! the last healthy revision by itself when a rollout breaks health.
//!
//! # Guarantees
//! - Level-triggered: a pass never asks what woke it. A regression the health monitor saw,
//!   a pin, a quarantine: all are facts in the records that the pass reads.
//! - A failure before the switch leaves the live release as it was.
//! - A config commit whose rollout failed or was reverted is quarantined: it is not applied
//!   again until a new config commit or `shipshape retry`; the server is held on the last
//!   healthy revision (drift towards it is still corrected).
//! - If checks were already failing before a rollout, its revision is not blamed for them.
//! - If the revision reverted to fails too, the app is Degraded and left alone: no loops.
//! - While a rollout is being verified, a newer document for the app, or a request (pin,
//!   unpin, retry), cancels the wait; steps that change live state always finish first.
//!
//! # Caveats
//! Revision numbers are per host: each controller keeps its own history.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shipshape_spec::App;
use shipshape_spec::app::OnRevert;
use shipshape_spec::status::{
    CheckResult, ConditionStatus, LastError, Outcome, PassRecord, Phase, Pin, PinSource,
    Regression, Revision, StepRecord, StepResult, condition_types as ct,
};
use tracing::{info, warn};

use crate::envfile::{EnvFile, Redactor};
use crate::events::{Event, EventKind, Hub};
use crate::exec::{self, Spec};
use crate::health::{self, Round, Tally, Verdict};
use crate::migrate;
use crate::plan::{self, MigrationState, Observed, Plan, PlannedStep, Step, short_sha};
use crate::pm2::Pm2;
use crate::release::{BuildMarker, Layout};
use crate::source::{self, ConfigRepo};
use crate::state::{self, AppRecord, Quarantine, RevisionEntry, Store};

/// What the loop should do about a failure (Flux's error classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Needs a person (a new commit or `retry`): build failed, health failed, bad document.
    Stalled,
    /// May pass on its own: network, pm2 hiccup. Retried on the next pass.
    Transient,
    /// A newer desired state or a request arrived while waiting; the next pass moves on.
    Superseded,
    /// Verification could not conclude (no failing round, too few conclusive passes):
    /// the revision stays, is not blamed, and becomes Healthy when its checks pass.
    Inconclusive,
}

/// A step that failed.
#[derive(Debug, Clone)]
pub struct StepError {
    /// The step's kind.
    pub step: &'static str,
    /// What went wrong (secrets masked).
    pub message: String,
    /// The output's tail (secrets masked).
    pub tail: Option<String>,
    /// What the loop does about it.
    pub class: ErrorClass,
}

impl StepError {
    fn new(step: &'static str, class: ErrorClass, message: impl Into<String>) -> StepError {
        StepError {
            step,
            message: message.into(),
            tail: None,
            class,
        }
    }
}

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
    interrupts: AtomicU64,
}

impl AppHandle {
    /// Ask a rollout being verified to stop waiting (a request is queued).
    pub fn interrupt(&self) {
        self.interrupts.fetch_add(1, Ordering::SeqCst);
    }

    /// How many interrupts so far.
    pub fn generation(&self) -> u64 {
        self.interrupts.load(Ordering::SeqCst)
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
    /// HTTP client for probes.
    pub http: reqwest::Client,
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
    pub trust: crate::trust::Trust,
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

/// One loaded document.
#[derive(Debug, Clone)]
pub struct DesiredDoc {
    /// Its path in the config repo.
    pub path: String,
    /// Its text.
    pub text: String,
    /// The document.
    pub app: App,
}

/// The desired state read from the config repo.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The config commit it was read at.
    pub commit: String,
    /// The documents that load and select this host.
    pub docs: Vec<DesiredDoc>,
    /// Documents that do not load: (path, text, every problem).
    pub invalid: Vec<(String, String, String)>,
    /// Apps whose documents select other hosts.
    pub skipped: Vec<String>,
    /// False when nothing trusted could be read (then no app counts as removed).
    pub complete: bool,
    /// Why the tip was refused, if it was.
    pub refused: Option<String>,
}

/// Who this controller is, for documents that select hosts.
#[derive(Debug, Clone, Default)]
pub struct HostIdentity {
    /// The host name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// What a pass converges to.
#[derive(Debug, Clone)]
enum Mode {
    /// The document at the branch tip.
    Follow,
    /// A pinned revision.
    Pinned(Pin),
    /// The last healthy revision, while the desired config commit is quarantined.
    Hold(String),
}

/// What can cancel a verification: a newer document for this app, or a request.
struct Cancel {
    handle: Arc<AppHandle>,
    generation: u64,
    config: ConfigRepo,
    file: Option<String>,
    text: Option<String>,
    follows_git: bool,
    last_check: Option<Instant>,
}

impl Cancel {
    /// Why waiting should stop, if it should.
    async fn check(&mut self) -> Option<String> {
        if self.handle.generation() != self.generation {
            return Some("superseded by a request (pin, unpin, retry or reconcile)".into());
        }
        if !self.follows_git {
            return None;
        }
        let file = self.file.clone()?;
        // A remote repo is fetched at most every 5 s while waiting; a local one is cheap.
        let every = if source::is_remote(&self.config.repo) {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        };
        if self.last_check.is_some_and(|t| t.elapsed() < every) {
            return None;
        }
        self.last_check = Some(Instant::now());
        let config = self.config.clone();
        let tip = tokio::task::spawn_blocking(move || config.document_at_tip(&file))
            .await
            .ok()?
            .ok()?;
        if tip.1 != self.text {
            Some(format!(
                "superseded by config commit {} (a newer desired state)",
                short_sha(&tip.0)
            ))
        } else {
            None
        }
    }
}

/// A pass's fixed facts.
struct PassInfo<'a> {
    started_at: String,
    config_commit: &'a str,
    file: Option<&'a str>,
    text: Option<&'a str>,
}

impl Controller {
    /// The source status as saved, with this controller's repo and branch filled in.
    pub fn source_status(&self) -> shipshape_spec::status::SourceStatus {
        let mut source = self.store.load_source();
        source.repo = source::redact_url(&self.config.repo);
        source.branch = self.config.branch.clone();
        source.remote = self.config.is_remote();
        source
    }

    /// Fetch the config repo if it is remote, recording the outcome in the source status.
    ///
    /// # Errors
    /// [`ReconcileError::Source`] when the fetch fails.
    pub async fn fetch_source(&self) -> Result<String, ReconcileError> {
        let config = self.config.clone();
        let result = tokio::task::spawn_blocking(move || config.fetch())
            .await
            .expect("fetch task panicked");
        let mut source = self.source_status();
        source.last_fetch_at = Some(state::now());
        match &result {
            Ok(tip) => {
                source.tip = Some(tip.clone());
                source.last_success_at = source.last_fetch_at.clone();
                source.last_error = None;
                source.consecutive_failures = 0;
            }
            Err(e) => {
                source.last_error = Some(e.to_string());
                source.consecutive_failures += 1;
            }
        }
        let _ = self.store.save_source(&source);
        self.publish_source_metrics(&source);
        Ok(result?)
    }

    /// The desired state at the branch tip as last fetched (or the last trusted commit when
    /// signatures are required and the tip is not trusted), parsed and filtered for this host.
    ///
    /// # Errors
    /// [`ReconcileError`] when the config repo cannot be read.
    pub async fn load_desired(&self) -> Result<Desired, ReconcileError> {
        let config = self.config.clone();
        let mut snapshot = tokio::task::spawn_blocking(move || config.snapshot())
            .await
            .expect("snapshot task panicked")?;
        let mut complete = true;
        let mut refused = None;
        if self.trust.required() {
            let mut source = self.source_status();
            let tip = snapshot.commit.clone();
            let verdict = if source.last_trusted.as_deref() == Some(tip.as_str()) {
                Ok(())
            } else if let Some(r) = source.refused.as_ref().filter(|r| r.commit == tip) {
                Err(r.reason.clone())
            } else {
                self.trust.verify(&self.config, &tip).await.map(|signer| {
                    info!(commit = %tip, signer = %signer, "trusted config commit");
                })
            };
            match verdict {
                Ok(()) => {
                    source.last_trusted = Some(tip);
                    source.refused = None;
                }
                Err(reason) => {
                    warn!(commit = %tip, "refusing an untrusted config commit: {reason}");
                    refused = Some(format!(
                        "config commit {} is not trusted: {reason}",
                        short_sha(&tip)
                    ));
                    if source.refused.as_ref().is_none_or(|r| r.commit != tip) {
                        source.refused = Some(shipshape_spec::status::RefusedCommit {
                            commit: tip.clone(),
                            reason,
                            at: state::now(),
                        });
                    }
                    match source.last_trusted.clone() {
                        Some(good) => {
                            let config = self.config.clone();
                            snapshot =
                                tokio::task::spawn_blocking(move || config.snapshot_at(&good))
                                    .await
                                    .expect("snapshot task panicked")?;
                        }
                        None => {
                            snapshot.files.clear();
                            complete = false;
                        }
                    }
                }
            }
            let _ = self.store.save_source(&source);
        }
        let mut docs = Vec::new();
        let mut invalid = Vec::new();
        let mut skipped = Vec::new();
        for file in snapshot.files {
            match shipshape_spec::load_str(&file.text, &file.path) {
                Ok(app) => {
                    let selected = app
                        .spec
                        .hosts
                        .as_ref()
                        .is_none_or(|h| h.selects(&self.host.name, &self.host.labels));
                    if selected {
                        docs.push(DesiredDoc {
                            path: file.path,
                            text: file.text,
                            app,
                        });
                    } else {
                        skipped.push(app.metadata.name.clone());
                    }
                }
                Err(e) => {
                    warn!(file = %file.path, config_commit = %snapshot.commit, "invalid document:\n{e}");
                    invalid.push((file.path, file.text, e.to_string()));
                }
            }
        }
        // One document per app name.
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut unique = Vec::new();
        for d in docs {
            if let Some(first) = seen.get(&d.app.metadata.name) {
                let message = format!(
                    "{}: metadata.name: {:?} is also declared in {first}",
                    d.path, d.app.metadata.name
                );
                invalid.push((d.path.clone(), d.text.clone(), message));
            } else {
                seen.insert(d.app.metadata.name.clone(), d.path.clone());
                unique.push(d);
            }
        }
        Ok(Desired {
            commit: snapshot.commit,
            docs: unique,
            invalid,
            skipped,
            complete,
            refused,
        })
    }

    /// Record what the desired state says about apps it cannot run: documents that do not
    /// load (on their app, when its name can be read) and apps whose document is gone
    /// (reported, or pruned with `--prune`). Returns results per file or app.
    pub async fn record_unrunnable(&self, desired: &Desired) -> BTreeMap<String, AppResult> {
        let mut out = BTreeMap::new();
        let mut named = std::collections::BTreeSet::new();
        for (path, text, message) in &desired.invalid {
            let name = shipshape_spec::load::peek_name(text)
                .filter(|n| shipshape_spec::validate::is_dns_label(n));
            let key = name.clone().unwrap_or_else(|| path.clone());
            if let Some(name) = name {
                named.insert(name.clone());
                let handle = self.handles.get(&name);
                if let Ok(_guard) = handle.lock.try_lock()
                    && let Ok(mut rec) = self.store.load(&name)
                {
                    let was = rec.phase;
                    rec.desired_config_commit = Some(desired.commit.clone());
                    rec.phase = Phase::Invalid;
                    rec.last_error = Some(LastError {
                        step: "load".into(),
                        message: message.clone(),
                        output_tail: None,
                        at: state::now(),
                    });
                    set_stalled(
                        &mut rec,
                        "InvalidDocument",
                        &format!("{message}\n(nothing was applied; the server keeps what it runs)"),
                    );
                    let _ = self.store.save(&rec);
                    if was != Phase::Invalid {
                        self.emit(
                            &rec,
                            EventKind::PhaseChanged,
                            rec.live_revision,
                            format!("{was:?} → Invalid"),
                        );
                    }
                    self.publish_app_metrics(&rec);
                }
            }
            out.insert(
                key,
                AppResult::Invalid {
                    message: message.clone(),
                },
            );
        }
        if !desired.complete {
            return out;
        }
        let present: std::collections::BTreeSet<&str> = desired
            .docs
            .iter()
            .map(|d| d.app.metadata.name.as_str())
            .chain(desired.skipped.iter().map(String::as_str))
            .collect();
        for name in self.store.apps() {
            if present.contains(name.as_str()) || named.contains(&name) {
                continue;
            }
            let handle = self.handles.get(&name);
            let Ok(_guard) = handle.lock.try_lock() else {
                continue;
            };
            let Ok(mut rec) = self.store.load(&name) else {
                continue;
            };
            if matches!(rec.phase, Phase::Pruned) || (!self.prune && rec.phase == Phase::Orphaned) {
                continue;
            }
            let was = rec.phase;
            let message = if self.prune {
                let mut deleted = Vec::new();
                if let Ok(list) = self.pm2.jlist().await {
                    let mut names: Vec<String> = list
                        .iter()
                        .filter(|i| i.app() == Some(name.as_str()))
                        .map(|i| i.name.clone())
                        .collect();
                    names.dedup();
                    for p in names {
                        match self.pm2.delete(&p).await {
                            Ok(()) => deleted.push(p),
                            Err(e) => warn!(app = %name, process = %p, "pruning failed: {e}"),
                        }
                    }
                    let _ = self.pm2.save().await;
                }
                rec.phase = Phase::Pruned;
                rec.live_revision = None;
                format!(
                    "the document was removed at config commit {}; pruned: deleted pm2 process(es) {} (releases stay on disk)",
                    short_sha(&desired.commit),
                    deleted.join(", ")
                )
            } else {
                rec.phase = Phase::Orphaned;
                format!(
                    "the document was removed at config commit {}; what it deployed keeps running (run with --prune to remove it)",
                    short_sha(&desired.commit)
                )
            };
            set_stalled(
                &mut rec,
                if self.prune {
                    "Pruned"
                } else {
                    "DocumentRemoved"
                },
                &message,
            );
            let _ = self.store.save(&rec);
            self.emit(
                &rec,
                EventKind::PhaseChanged,
                rec.live_revision,
                format!("{was:?} → {:?}: {message}", rec.phase),
            );
            self.publish_app_metrics(&rec);
            out.insert(
                name,
                AppResult::NotReady {
                    phase: rec.phase,
                    message,
                },
            );
        }
        out
    }

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

    /// What the server looks like for `app`.
    ///
    /// # Errors
    /// [`ReconcileError`] when releases or pm2 cannot be read.
    pub async fn observe(
        &self,
        app: &App,
        record: &AppRecord,
        secrets: &Secrets,
    ) -> Result<Observed, ReconcileError> {
        let layout = Layout::new(&app.spec.releases.root);
        let releases = layout.scan().map_err(|source| ReconcileError::Releases {
            root: layout.root.clone(),
            source,
        })?;
        let current = layout.current_release();
        let migration = match &app.spec.migrations {
            None => MigrationState::NotManaged,
            Some(_) => {
                let dir = current
                    .as_ref()
                    .map(|c| layout.release(c))
                    .filter(|d| d.is_dir())
                    .unwrap_or_else(|| layout.root.clone());
                let _ = std::fs::create_dir_all(&dir);
                let ctx = self.migrate_context(app, secrets, dir, None);
                match ctx.level().await {
                    Ok(level) => MigrationState::At(level),
                    Err(e) => MigrationState::Unreadable(
                        secrets
                            .redactor
                            .redact(&with_last_line(e.to_string(), e.tail())),
                    ),
                }
            }
        };
        let mut observed = Observed {
            current,
            releases,
            processes: self.pm2.jlist_cached().await?,
            hooks_applied: record.hooks_applied.clone(),
            cpus: self.cpus,
            desired_lockfile: None,
            migration,
            env_file: secrets.env.clone(),
        };
        // The desired commit's lockfile only matters when a release must be prepared: no git
        // work on passes that find one built from the same inputs.
        if !plan::choose_release(app, &observed).1 {
            observed.desired_lockfile = self.desired_lockfile(app).await;
        }
        Ok(observed)
    }

    /// The lockfile hash at the desired commit, read from the app's mirror (fetching the
    /// commit if it is not there yet). `None` when there is no lockfile or git cannot answer.
    async fn desired_lockfile(&self, app: &App) -> Option<String> {
        let mirror = source::mirror_path(&self.sources_dir, &app.spec.source.repository);
        let repository = app.spec.source.repository.clone();
        let commit = app.spec.source.commit.clone();
        tokio::task::spawn_blocking(move || {
            let repo = source::ensure_commit(&mirror, &repository, &commit).ok()?;
            source::lockfile_at(&repo, &commit)
        })
        .await
        .ok()
        .flatten()
    }

    fn migrate_context<'a>(
        &self,
        app: &'a App,
        secrets: &'a Secrets,
        dir: PathBuf,
        log: Option<PathBuf>,
    ) -> migrate::Context<'a> {
        migrate::Context {
            app,
            env: &secrets.env.vars,
            redactor: &secrets.redactor,
            dir,
            dbmate: self.dbmate.clone(),
            log,
        }
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

    async fn pass(
        &self,
        rec: &mut AppRecord,
        desired: &App,
        info: &PassInfo<'_>,
        handle: &Arc<AppHandle>,
    ) -> Result<AppResult, ReconcileError> {
        let name = desired.metadata.name.clone();
        let config_commit = info.config_commit;
        rec.desired_config_commit = Some(config_commit.to_string());
        rec.desired_app_commit = Some(desired.spec.source.commit.clone());
        rec.passes += 1;
        if let Some(what) = self.journal_take(&name) {
            warn!(app = %name, "resuming: {what}");
            rec.set_condition(
                ct::RECONCILING,
                ConditionStatus::True,
                "Resuming",
                &what,
                &state::now(),
            );
        }
        self.sync_document_pin(rec, desired);

        // The monitor saw the live revision regress: act on it first.
        if let Some(reg) = rec.regression.take() {
            return self.on_regression(rec, reg, info, handle).await;
        }

        let (target, mode) = if let Some(pin) = rec.pin.clone() {
            match rec.revision(pin.revision) {
                Some(r) => (r.document.clone(), Mode::Pinned(pin)),
                None => {
                    let message = format!(
                        "pinned to revision {}, which is no longer in the history; unpin or pin another revision",
                        pin.revision
                    );
                    return self.stop(rec, info, "PinInvalid", "pin", &message, Phase::Failed);
                }
            }
        } else if rec.is_quarantined(config_commit) {
            let why = rec
                .quarantined
                .iter()
                .find(|q| q.config_commit == config_commit)
                .map(|q| format!("revision {}: {}", q.revision, q.reason))
                .unwrap_or_default();
            match rec.last_healthy() {
                Some(h) => (h.document.clone(), Mode::Hold(why)),
                None => {
                    let message = format!(
                        "config commit {} is quarantined ({why}) and there is no healthy revision to hold; commit a fix or run `shipshape retry {name}`",
                        short_sha(config_commit)
                    );
                    self.finish_pass(rec, info, Vec::new(), &message)?;
                    return Ok(AppResult::NotReady {
                        phase: rec.phase,
                        message,
                    });
                }
            }
        } else {
            (desired.clone(), Mode::Follow)
        };

        let secrets = match Secrets::load(&target) {
            Ok(s) => s,
            Err(e) => {
                return self.stop(
                    rec,
                    info,
                    "EnvFileUnreadable",
                    "env-file",
                    &e.to_string(),
                    Phase::Failed,
                );
            }
        };
        let observed = self.observe(&target, rec, &secrets).await?;
        let mut the_plan = plan::plan(&target, &observed);
        let processes_hash = plan::processes_hash(&target, &secrets.env);
        // A rollout whose verification did not finish (the controller stopped) is verified
        // again: everything else is already in place.
        let resumed_verify = the_plan.steps.is_empty()
            && matches!(mode, Mode::Follow)
            && rec.last_attempted().is_some_and(|r| {
                matches!(
                    r.revision.outcome,
                    Outcome::Progressing | Outcome::Superseded
                ) && r.revision.config_commit == config_commit
                    && r.release == the_plan.release
                    && r.revision.process_hash == processes_hash
            });
        if resumed_verify {
            the_plan.steps.push(PlannedStep {
                step: Step::Verify,
                reason: "the rollout's verification did not finish (the controller stopped); verifying again".into(),
            });
        }
        if !the_plan.blockers.is_empty() {
            let message = the_plan.blockers.join("; ");
            return self.stop(rec, info, "Blocked", "plan", &message, Phase::Failed);
        }

        if the_plan.steps.is_empty() {
            // A document change that needs no step (health checks, rollback window …)
            // becomes the live revision's settings, so monitoring and reverts use them.
            if matches!(mode, Mode::Follow)
                && let Some(live) = rec.live_revision
                && let Some(entry) = rec.revision_mut(live)
                && entry.release == the_plan.release
                && entry.revision.process_hash == processes_hash
                && entry.document != target
            {
                entry.document = target.clone();
                info!(app = %name, revision = live, config_commit = %config_commit, "adopted settings that need no step");
            }
            return self.settle(rec, info, &mode, &the_plan.release, &processes_hash);
        }

        // Something to do: a rollout of a new revision, or a repair towards the target.
        let number = match &mode {
            Mode::Follow => {
                let same = rec.last_attempted().is_some_and(|r| {
                    r.revision.config_commit == config_commit
                        && r.release == the_plan.release
                        && r.revision.process_hash == processes_hash
                });
                let live_same = rec.live().is_some_and(|r| {
                    r.release == the_plan.release && r.revision.process_hash == processes_hash
                });
                if same {
                    rec.last_attempted().expect("checked").revision.number
                } else if live_same {
                    // Drift repair of what is live (a new config commit that changed nothing).
                    rec.live_revision.expect("checked")
                } else {
                    let n = self.begin_revision(
                        rec,
                        &target,
                        config_commit,
                        &the_plan.release,
                        &processes_hash,
                    );
                    self.emit(
                        rec,
                        EventKind::RolloutStarted,
                        Some(n),
                        format!(
                            "revision {n}: app {} (config {}), {} step(s)",
                            short_sha(&target.spec.source.commit),
                            short_sha(config_commit),
                            the_plan.steps.len()
                        ),
                    );
                    n
                }
            }
            Mode::Pinned(pin) => pin.revision,
            Mode::Hold(_) => rec
                .last_healthy()
                .map(|h| h.revision.number)
                .unwrap_or_default(),
        };
        rec.phase = Phase::Progressing;
        rec.set_condition(
            ct::RECONCILING,
            ConditionStatus::True,
            "Progressing",
            &format!(
                "revision {number}: applying {} step(s)",
                the_plan.steps.len()
            ),
            &state::now(),
        );
        self.store.save(rec)?;
        self.announce_phase(rec);
        info!(app = %name, revision = number, release = %the_plan.release, "applying plan\n{the_plan}");

        // Were the checks already failing before this rollout? Then it is not to blame.
        let pre_failing = if the_plan.steps.iter().any(|s| s.step == Step::Verify) {
            self.failing_before(rec, &observed).await
        } else {
            None
        };

        let mut cancel = Cancel {
            handle: handle.clone(),
            generation: handle.generation(),
            config: self.config.clone(),
            file: info.file.map(str::to_string),
            text: info.text.map(str::to_string),
            follows_git: matches!(mode, Mode::Follow),
            last_check: None,
        };
        let log = self.log_path(&name, number);
        self.journal_begin(&name, number, &the_plan);
        let mut records = Vec::new();
        let outcome = self
            .execute(
                &target,
                &the_plan,
                rec,
                &mut records,
                &secrets,
                &log,
                &mut cancel,
            )
            .await;
        if let Some(backup) = records
            .iter()
            .find(|r| r.step == "backup" && r.result == StepResult::Succeeded)
            && let Some(entry) = rec.revision_mut(number)
        {
            entry.backup = Some(backup.target.clone());
        }
        let switched = resumed_verify
            || records.iter().any(|r| {
                r.result == StepResult::Succeeded
                    && !matches!(
                        r.step.as_str(),
                        "fetch" | "install" | "reuse-deps" | "build" | "backup"
                    )
            });
        match outcome {
            Ok(()) => {
                rec.live_revision = Some(number);
                rec.health = None;
                let message = match &mode {
                    Mode::Follow => format!(
                        "revision {number} live and healthy (app {}, release {})",
                        short_sha(&target.spec.source.commit),
                        short_sha(&the_plan.release)
                    ),
                    Mode::Pinned(pin) => format!(
                        "pinned revision {} live and healthy (pinned by {}: {})",
                        pin.revision, pin.by, pin.reason
                    ),
                    Mode::Hold(why) => format!(
                        "repaired drift; holding the last healthy revision {number} while config commit {} is quarantined ({why})",
                        short_sha(config_commit)
                    ),
                };
                let was_new = rec
                    .revision(number)
                    .is_some_and(|r| r.revision.outcome != Outcome::Healthy);
                if let Some(entry) = rec.revision_mut(number) {
                    entry.revision.outcome = Outcome::Healthy;
                    entry.revision.finished_at = Some(state::now());
                    entry.revision.message = "healthy".into();
                    entry.not_blamed = false;
                }
                if was_new {
                    self.emit(
                        rec,
                        EventKind::RolloutHealthy,
                        Some(number),
                        message.clone(),
                    );
                    self.count_rollout(&name, "healthy");
                }
                self.prune_releases(&target, rec);
                let steps = records.len();
                let ready = !matches!(mode, Mode::Hold(_));
                if ready {
                    mark_ready(rec, &message);
                } else {
                    rec.phase = Phase::Failed;
                    set_stalled(rec, "Quarantined", &message);
                }
                self.finish_pass(rec, info, records, &message)?;
                Ok(if ready {
                    AppResult::Ready { steps }
                } else {
                    AppResult::NotReady {
                        phase: rec.phase,
                        message,
                    }
                })
            }
            Err(err) => {
                let message = format!("{} failed: {}", err.step, err.message);
                warn!(app = %name, revision = number, step = err.step, "{message}");
                rec.last_error = Some(LastError {
                    step: err.step.to_string(),
                    message: err.message.clone(),
                    output_tail: err.tail.clone(),
                    at: state::now(),
                });
                if switched {
                    rec.live_revision = Some(number);
                }
                match err.class {
                    ErrorClass::Transient => {
                        rec.phase = Phase::Progressing;
                        let now = state::now();
                        rec.set_condition(
                            ct::RECONCILING,
                            ConditionStatus::True,
                            "RetryingAfterError",
                            &message,
                            &now,
                        );
                        rec.set_condition(
                            ct::READY,
                            ConditionStatus::False,
                            "TransientError",
                            &message,
                            &now,
                        );
                        self.finish_pass(rec, info, records, &message)?;
                        Ok(AppResult::NotReady {
                            phase: Phase::Progressing,
                            message,
                        })
                    }
                    ErrorClass::Superseded => {
                        let message = format!("revision {number} {}", err.message);
                        if matches!(mode, Mode::Follow)
                            && let Some(entry) = rec.revision_mut(number)
                            && entry.revision.outcome == Outcome::Progressing
                        {
                            entry.revision.outcome = Outcome::Superseded;
                            entry.revision.finished_at = Some(state::now());
                            entry.revision.message = err.message.clone();
                            self.count_rollout(&name, "superseded");
                        }
                        rec.last_error = None;
                        rec.phase = Phase::Progressing;
                        self.emit(
                            rec,
                            EventKind::RolloutSuperseded,
                            Some(number),
                            message.clone(),
                        );
                        self.finish_pass(rec, info, records, &message)?;
                        Ok(AppResult::Superseded { message })
                    }
                    ErrorClass::Inconclusive => {
                        let m = format!(
                            "{message}; revision {number} stays live, is not reverted, and becomes Healthy once its checks pass (or pin/retry)"
                        );
                        if let Some(entry) = rec.revision_mut(number) {
                            entry.revision.outcome = Outcome::Failed;
                            entry.revision.finished_at = Some(state::now());
                            entry.revision.message = m.clone();
                            entry.not_blamed = true;
                        }
                        set_degraded(rec, &m);
                        self.emit(rec, EventKind::Degraded, Some(number), m.clone());
                        self.finish_pass(rec, info, records, &m)?;
                        Ok(AppResult::NotReady {
                            phase: Phase::Degraded,
                            message: m,
                        })
                    }
                    ErrorClass::Stalled => {
                        let (phase, final_message) = if !switched {
                            let m = format!("{message}; the live release was not touched");
                            set_stalled(rec, reason_for(err.step), &m);
                            rec.phase = Phase::Failed;
                            self.conclude(rec, number, &mode, Outcome::Failed, &m, config_commit);
                            (Phase::Failed, m)
                        } else if !matches!(mode, Mode::Follow) {
                            let m = format!(
                                "{message}; no automatic revert while {}",
                                mode_words(&mode)
                            );
                            set_degraded(rec, &m);
                            (Phase::Degraded, m)
                        } else if let (Some(before), "verify") = (&pre_failing, err.step) {
                            let m = format!(
                                "{message}; the checks were already failing before this rollout ({before}), so revision {number} is not blamed and not reverted"
                            );
                            if let Some(entry) = rec.revision_mut(number) {
                                entry.revision.outcome = Outcome::Failed;
                                entry.revision.finished_at = Some(state::now());
                                entry.revision.message = m.clone();
                                entry.not_blamed = true;
                            }
                            set_degraded(rec, &m);
                            (Phase::Degraded, m)
                        } else {
                            self.revert(rec, number, &message, &mut records, info, handle, false)
                                .await
                        };
                        if phase == Phase::Degraded {
                            self.emit(
                                rec,
                                EventKind::Degraded,
                                Some(number),
                                final_message.clone(),
                            );
                        }
                        self.emit(rec, EventKind::RolloutFailed, Some(number), message.clone());
                        rec.phase = phase;
                        self.finish_pass(rec, info, records, &final_message)?;
                        Ok(AppResult::NotReady {
                            phase,
                            message: final_message,
                        })
                    }
                }
            }
        }
    }

    /// Nothing to do: say where the app stands.
    fn settle(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        mode: &Mode,
        release: &str,
        processes_hash: &str,
    ) -> Result<AppResult, ReconcileError> {
        let live_matches = rec
            .live()
            .is_some_and(|r| r.release == release && r.revision.process_hash == processes_hash);
        let failing_now = rec.live().and_then(|live| {
            let h = rec.health.as_ref()?;
            let threshold = live.document.spec.health.failure_threshold;
            (h.revision == live.revision.number
                && !h.passing
                && h.consecutive_failures >= threshold)
                .then(|| {
                    h.results
                        .iter()
                        .find(|r| r.state == shipshape_spec::status::ProbeState::Fail)
                        .map(|r| format!("{}: {}", r.name, r.detail))
                        .unwrap_or_else(|| "pm2 facts".into())
                })
        });
        if let Some(why) = failing_now {
            let message = format!(
                "live revision {} is failing its checks ({why}); nothing to apply",
                rec.live_revision.unwrap_or_default()
            );
            set_degraded(rec, &message);
            self.finish_pass(rec, info, Vec::new(), &message)?;
            return Ok(AppResult::NotReady {
                phase: Phase::Degraded,
                message,
            });
        }
        let live_healthy = live_matches
            && rec
                .live()
                .is_some_and(|r| r.revision.outcome == Outcome::Healthy);
        let (ready, message) = match mode {
            Mode::Follow if live_healthy => (true, "up to date".to_string()),
            Mode::Follow if live_matches => {
                let why = rec
                    .live()
                    .map(|r| r.revision.message.clone())
                    .unwrap_or_default();
                (false, format!("live, but not healthy: {why}"))
            }
            Mode::Follow => {
                // First sight of a server that already runs what is desired (e.g. records lost).
                (
                    false,
                    "live equals desired, but no revision has verified it".to_string(),
                )
            }
            Mode::Pinned(pin) => (
                live_healthy,
                format!(
                    "pinned at revision {} by {} ({}); desired config commit {} is not applied",
                    pin.revision,
                    pin.by,
                    pin.reason,
                    short_sha(info.config_commit)
                ),
            ),
            Mode::Hold(why) => (
                false,
                format!(
                    "holding the last healthy revision; config commit {} is quarantined: {why}",
                    short_sha(info.config_commit)
                ),
            ),
        };
        if ready {
            mark_ready(rec, &message);
        } else if matches!(mode, Mode::Hold(_)) {
            rec.set_condition(
                ct::RECONCILING,
                ConditionStatus::False,
                "Quarantined",
                &message,
                &state::now(),
            );
        }
        self.finish_pass(rec, info, Vec::new(), &message)?;
        Ok(if ready {
            AppResult::Ready { steps: 0 }
        } else {
            AppResult::NotReady {
                phase: rec.phase,
                message,
            }
        })
    }

    /// Record an outcome for revision `number` and quarantine its config commit.
    fn conclude(
        &self,
        rec: &mut AppRecord,
        number: u64,
        mode: &Mode,
        outcome: Outcome,
        message: &str,
        config_commit: &str,
    ) {
        if !matches!(mode, Mode::Follow) {
            return;
        }
        if let Some(entry) = rec.revision_mut(number) {
            entry.revision.outcome = outcome;
            entry.revision.finished_at = Some(state::now());
            entry.revision.message = message.to_string();
        }
        self.count_rollout(
            &rec.name,
            if outcome == Outcome::Reverted {
                "reverted"
            } else {
                "failed"
            },
        );
        rec.quarantined.retain(|q| q.config_commit != config_commit);
        rec.quarantined.push(Quarantine {
            config_commit: config_commit.to_string(),
            revision: number,
            reason: message.to_string(),
            at: state::now(),
        });
    }

    /// Stop the pass: a person must act.
    fn stop(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        reason: &str,
        step: &str,
        message: &str,
        phase: Phase,
    ) -> Result<AppResult, ReconcileError> {
        rec.phase = phase;
        rec.last_error = Some(LastError {
            step: step.into(),
            message: message.to_string(),
            output_tail: None,
            at: state::now(),
        });
        set_stalled(rec, reason, message);
        self.finish_pass(rec, info, Vec::new(), message)?;
        Ok(AppResult::NotReady {
            phase,
            message: message.to_string(),
        })
    }

    fn begin_revision(
        &self,
        rec: &mut AppRecord,
        target: &App,
        config_commit: &str,
        release: &str,
        processes_hash: &str,
    ) -> u64 {
        let number = rec.next_revision;
        rec.next_revision += 1;
        let entry = RevisionEntry {
            revision: Revision {
                number,
                config_commit: config_commit.to_string(),
                app_commit: target.spec.source.commit.clone(),
                level: target.spec.migrations.as_ref().map(|m| m.level.clone()),
                process_hash: processes_hash.to_string(),
                started_at: state::now(),
                finished_at: None,
                outcome: Outcome::Progressing,
                message: String::new(),
            },
            release: release.to_string(),
            document: target.clone(),
            not_blamed: false,
            backup: None,
        };
        rec.push_revision(entry, self.history);
        number
    }

    /// The document's pin, resolved to a revision; a CLI pin wins and is left alone.
    fn sync_document_pin(&self, rec: &mut AppRecord, desired: &App) {
        if rec.pin.as_ref().is_some_and(|p| p.source == PinSource::Cli) {
            return;
        }
        match &desired.spec.pin {
            None => {
                if let Some(old) = rec.pin.take() {
                    self.emit(
                        rec,
                        EventKind::Unpinned,
                        Some(old.revision),
                        "the document's pin was removed".into(),
                    );
                }
            }
            Some(doc_pin) => {
                if rec.pin.is_some() {
                    return;
                }
                let revision = match &doc_pin.app_commit {
                    Some(c) => rec
                        .revisions
                        .iter()
                        .rev()
                        .find(|r| {
                            &r.revision.app_commit == c && r.revision.outcome == Outcome::Healthy
                        })
                        .map(|r| r.revision.number),
                    None => rec
                        .live()
                        .filter(|r| r.revision.outcome == Outcome::Healthy)
                        .or(rec.last_healthy())
                        .map(|r| r.revision.number),
                };
                if let Some(revision) = revision {
                    let pin = Pin {
                        revision,
                        by: doc_pin.by.clone().unwrap_or_else(|| "the document".into()),
                        at: state::now(),
                        reason: doc_pin.reason.clone(),
                        source: PinSource::Document,
                    };
                    self.emit(
                        rec,
                        EventKind::Pinned,
                        Some(revision),
                        format!(
                            "pinned at revision {revision} by {}: {}",
                            pin.by, pin.reason
                        ),
                    );
                    rec.pin = Some(pin);
                } else {
                    warn!(app = %rec.name, "spec.pin names no healthy revision on this host; not pinning");
                }
            }
        }
    }

    /// Were the live revision's checks failing just before a rollout? `Some(why)` if so.
    async fn failing_before(&self, rec: &AppRecord, observed: &Observed) -> Option<String> {
        let live = rec.live()?;
        observed.current.as_ref()?;
        if let Some(h) = &rec.health
            && h.revision == live.revision.number
            && !h.passing
            && h.consecutive_failures >= 1
        {
            return Some(
                h.results
                    .iter()
                    .find(|r| r.state == shipshape_spec::status::ProbeState::Fail)
                    .map(|r| format!("{}: {}", r.name, r.detail))
                    .unwrap_or_else(|| "pm2 facts".into()),
            );
        }
        let baseline: BTreeMap<u64, u64> = observed
            .processes
            .iter()
            .map(|i| (i.pm_id, i.restarts))
            .collect();
        match self.health_round(&live.document, &baseline).await.0 {
            Round::Fail(why) => Some(why),
            _ => None,
        }
    }

    /// The live revision regressed after it was declared healthy.
    async fn on_regression(
        &self,
        rec: &mut AppRecord,
        reg: Regression,
        info: &PassInfo<'_>,
        handle: &Arc<AppHandle>,
    ) -> Result<AppResult, ReconcileError> {
        let Some(live) = rec.revision(reg.revision).cloned() else {
            return self.stop(
                rec,
                info,
                "Degraded",
                "health",
                &format!("revision {} regressed: {}", reg.revision, reg.reason),
                Phase::Degraded,
            );
        };
        let why = format!("revision {} regressed: {}", reg.revision, reg.reason);
        self.emit(rec, EventKind::Regressed, Some(reg.revision), why.clone());
        let healthy_since = live
            .revision
            .finished_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let in_window = healthy_since.is_some_and(|t| {
            let age = chrono::Utc::now().signed_duration_since(t);
            age.to_std().unwrap_or_default() <= live.document.spec.rollback.window.std()
        });
        let refusal = if let Some(pin) = &rec.pin {
            Some(format!(
                "pinned by {} ({}): no automatic revert while pinned",
                pin.by, pin.reason
            ))
        } else if !live.document.spec.rollback.auto {
            Some("rollback.auto is off".to_string())
        } else if !in_window {
            Some(format!(
                "it regressed more than rollback.window ({}) after it was declared healthy, so it is not reverted",
                live.document.spec.rollback.window
            ))
        } else {
            None
        };
        let mut records = Vec::new();
        let (phase, message) = match refusal {
            Some(r) => {
                let m = format!("{why}; {r}");
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
            None => {
                self.revert(rec, reg.revision, &why, &mut records, info, handle, true)
                    .await
            }
        };
        if phase == Phase::Degraded {
            self.emit(
                rec,
                EventKind::Degraded,
                Some(reg.revision),
                message.clone(),
            );
        }
        rec.phase = phase;
        self.finish_pass(rec, info, records, &message)?;
        Ok(AppResult::NotReady { phase, message })
    }

    /// Go back to the last healthy revision before `failed`: switch back, apply its
    /// processes, treat the migration level by the failed revision's `onRevert`, verify.
    /// Returns the phase and message to report; records the outcome and quarantines.
    #[allow(clippy::too_many_arguments)]
    async fn revert(
        &self,
        rec: &mut AppRecord,
        failed: u64,
        why: &str,
        records: &mut Vec<StepRecord>,
        info: &PassInfo<'_>,
        handle: &Arc<AppHandle>,
        regression: bool,
    ) -> (Phase, String) {
        let failed_entry = rec.revision(failed).cloned();
        let failed_config = failed_entry
            .as_ref()
            .map(|f| f.revision.config_commit.clone())
            .unwrap_or_else(|| info.config_commit.to_string());
        // A failed rollout that cannot be reverted is still failed (and quarantined); a
        // regressed revision that cannot be reverted stays what it was, reported Degraded.
        let degrade = |this: &Self, rec: &mut AppRecord, m: String| {
            set_degraded(rec, &m);
            if !regression {
                this.conclude(
                    rec,
                    failed,
                    &Mode::Follow,
                    Outcome::Failed,
                    &m,
                    &failed_config,
                );
            }
            (Phase::Degraded, m)
        };
        let Some(failed_entry) = failed_entry else {
            return degrade(
                self,
                rec,
                format!("{why}; revision {failed} is no longer in the history"),
            );
        };
        let Some(healthy) = rec
            .revisions
            .iter()
            .rev()
            .find(|r| r.revision.number != failed && r.revision.outcome == Outcome::Healthy)
            .cloned()
        else {
            return degrade(
                self,
                rec,
                format!("{why}; there is no earlier healthy revision to go back to"),
            );
        };
        if !failed_entry.document.spec.rollback.auto {
            return degrade(
                self,
                rec,
                format!("{why}; rollback.auto is off, so the server was left as it is"),
            );
        }

        // The schema: may we cross back over the failed revision's migration?
        let mut migration_step: Option<(PlannedStep, App)> = None;
        if let Some(m) = &failed_entry.document.spec.migrations
            && failed_entry.revision.level != healthy.revision.level
        {
            let from = failed_entry.revision.level.clone().unwrap_or_default();
            let to = healthy.revision.level.clone();
            match (m.on_revert, &to) {
                (OnRevert::Keep, _) => {}
                (OnRevert::Down, Some(to)) if migrate::can_go_down(m) => {
                    let mut down_doc = failed_entry.document.clone();
                    if let Some(dm) = down_doc.spec.migrations.as_mut() {
                        dm.level = to.clone();
                    }
                    migration_step = Some((
                        PlannedStep {
                            step: Step::Migrate {
                                from: Some(from.clone()),
                                to: to.clone(),
                            },
                            reason: format!("onRevert: down, {from} → {to}"),
                        },
                        down_doc,
                    ));
                }
                (OnRevert::Restore, _) if failed_entry.backup.is_some() => {
                    let backup = failed_entry.backup.clone().expect("checked");
                    migration_step = Some((
                        PlannedStep {
                            step: Step::Restore { backup },
                            reason: format!("onRevert: restore the backup taken before {from}"),
                        },
                        failed_entry.document.clone(),
                    ));
                }
                (how, _) => {
                    let m = format!(
                        "{why}; REFUSING to revert to revision {} across migration {} → {}: onRevert is {how:?} and it cannot be undone here{}",
                        healthy.revision.number,
                        healthy.revision.level.as_deref().unwrap_or("(none)"),
                        from,
                        if how == OnRevert::Restore {
                            " (no backup was taken on this host)"
                        } else {
                            ""
                        }
                    );
                    return degrade(self, rec, m);
                }
            }
        }

        warn!(app = %rec.name, from = failed, to = healthy.revision.number, "reverting to the last healthy revision");
        // Quarantine first: a controller that stops mid-revert must not roll it out again.
        let note = format!("{why}; reverting to revision {}", healthy.revision.number);
        if let Some(entry) = rec.revision_mut(failed) {
            entry.revision.outcome = Outcome::Failed;
            entry.revision.message = note.clone();
        }
        rec.quarantined.retain(|q| q.config_commit != failed_config);
        rec.quarantined.push(Quarantine {
            config_commit: failed_config.clone(),
            revision: failed,
            reason: note,
            at: state::now(),
        });
        if let Err(e) = self.store.save(rec) {
            warn!(app = %rec.name, "could not record the revert before starting it: {e}");
        }
        let log = self.log_path(&rec.name, failed);
        let mut cancel = Cancel {
            handle: handle.clone(),
            generation: handle.generation(),
            config: self.config.clone(),
            file: None,
            text: None,
            follows_git: false,
            last_check: None,
        };
        let mut back_doc = healthy.document.clone();
        back_doc.spec.migrations = None;
        let result: Result<(), StepError> = async {
            let secrets = Secrets::load(&back_doc)
                .map_err(|e| StepError::new("env-file", ErrorClass::Stalled, e.to_string()))?;
            let observed = self
                .observe(&back_doc, rec, &secrets)
                .await
                .map_err(|e| StepError::new("observe", ErrorClass::Transient, e.to_string()))?;
            let mut back = plan::plan(&back_doc, &observed);
            if !back.blockers.is_empty() {
                return Err(StepError::new(
                    "plan",
                    ErrorClass::Stalled,
                    back.blockers.join("; "),
                ));
            }
            back.steps.retain(|s| s.step != Step::Verify);
            self.execute(&back_doc, &back, rec, records, &secrets, &log, &mut cancel)
                .await?;
            rec.live_revision = Some(healthy.revision.number);
            if let Some((step, doc)) = migration_step {
                let failed_secrets = Secrets::load(&doc)
                    .map_err(|e| StepError::new("env-file", ErrorClass::Stalled, e.to_string()))?;
                let mig = Plan {
                    release: failed_entry.release.clone(),
                    steps: vec![step],
                    blockers: vec![],
                    notes: vec![],
                };
                self.execute(&doc, &mig, rec, records, &failed_secrets, &log, &mut cancel)
                    .await?;
            }
            let verify = Plan {
                release: healthy.release.clone(),
                steps: vec![PlannedStep {
                    step: Step::Verify,
                    reason: format!(
                        "the reverted-to revision {} must be healthy too",
                        healthy.revision.number
                    ),
                }],
                blockers: vec![],
                notes: vec![],
            };
                        let healthy_secrets = Secrets::load(&healthy.document).map_err(|e| StepError::new("env-file", ErrorClass::Stalled, e.to_string()))?;
            match self.execute(&healthy.document, &verify, rec, records, &healthy_secrets, &log, &mut cancel).await {
                // The revision was healthy before; missing data (e.g. metrics not scraped yet
                // after the switch) does not prove it bad: the revert stands.
                Err(e) if e.class == ErrorClass::Inconclusive => {
                    warn!(app = %rec.name, "the reverted-to revision's verification was inconclusive: {}", e.message);
                    Ok(())
                }
                other => other,
            }
        }
        .await;
        match result {
            Ok(()) => {
                let m = format!(
                    "{why}; reverted to revision {} (app {}), which is healthy",
                    healthy.revision.number,
                    short_sha(&healthy.revision.app_commit)
                );
                rec.live_revision = Some(healthy.revision.number);
                rec.health = None;
                rec.set_condition(
                    ct::HEALTHY,
                    ConditionStatus::True,
                    "RevertedHealthy",
                    &m,
                    &state::now(),
                );
                set_stalled(rec, "RolledBack", &m);
                self.conclude(
                    rec,
                    failed,
                    &Mode::Follow,
                    Outcome::Reverted,
                    &m,
                    &failed_config,
                );
                self.hub.metrics.inc(
                    "shipshape_reverts_total",
                    vec![("app", rec.name.clone()), ("result", "healthy".into())],
                    1.0,
                );
                self.emit(
                    rec,
                    EventKind::Reverted,
                    Some(healthy.revision.number),
                    m.clone(),
                );
                (Phase::Failed, m)
            }
            Err(e) => {
                self.hub.metrics.inc(
                    "shipshape_reverts_total",
                    vec![("app", rec.name.clone()), ("result", "failed".into())],
                    1.0,
                );
                degrade(
                    self,
                    rec,
                    format!(
                        "{why}; reverting to revision {} failed too ({} failed: {}); stopped, a person must act",
                        healthy.revision.number, e.step, e.message
                    ),
                )
            }
        }
    }

    fn finish_pass(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        steps: Vec<StepRecord>,
        result: &str,
    ) -> Result<(), ReconcileError> {
        rec.steps_run += steps.len() as u64;
        let _ = std::fs::remove_file(self.store.app_dir(&rec.name).join("inflight.json"));
        rec.last_pass = Some(PassRecord {
            started_at: info.started_at.clone(),
            finished_at: state::now(),
            config_commit: info.config_commit.to_string(),
            steps,
            result: result.to_string(),
        });
        self.store.save(rec)?;
        Ok(())
    }

    /// `<state-dir>/apps/<app>/logs/revision-<n>.log`: every step's output for a revision.
    pub fn log_path(&self, app: &str, revision: u64) -> PathBuf {
        self.store
            .app_dir(app)
            .join("logs")
            .join(format!("revision-{revision}.log"))
    }

    /// Run `plan`'s steps in order for `app`, appending a record per step.
    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        app: &App,
        plan: &Plan,
        rec: &mut AppRecord,
        records: &mut Vec<StepRecord>,
        secrets: &Secrets,
        log: &Path,
        cancel: &mut Cancel,
    ) -> Result<(), StepError> {
        let layout = Layout::new(&app.spec.releases.root);
        let release_dir = layout.release(&plan.release);
        let eco_path = self
            .store
            .app_dir(&app.metadata.name)
            .join("ecosystem.json");
        let last_prepare = plan.steps.iter().rposition(|s| s.step.prepares());
        let installed = plan
            .steps
            .iter()
            .any(|s| matches!(s.step, Step::Install { .. } | Step::ReuseDeps { .. }));
        let prep = Prep {
            app,
            release: &plan.release,
            dir: &release_dir,
            log,
            secrets,
        };
        for (i, planned) in plan.steps.iter().enumerate() {
            let kind = planned.step.kind();
            let started_at = state::now();
            let t0 = Instant::now();
            let mut target = planned.step.target();
            fault_point("before", kind);
            info!(app = %app.metadata.name, step = kind, target = %target, reason = %planned.reason, "step");
            append_log_header(log, kind, &target, &planned.reason);
            let result: Result<(), StepError> = match &planned.step {
                Step::Fetch { commit, .. } => self.fetch(app, commit, &release_dir).await,
                Step::Install { .. } => prep.install().await,
                Step::ReuseDeps { from, .. } => {
                    let src = layout.release(from).join("node_modules");
                    let dst = release_dir.join("node_modules");
                    if src.is_dir() {
                        let _ = std::fs::remove_dir_all(&dst);
                        tokio::task::spawn_blocking(move || crate::release::link_tree(&src, &dst))
                            .await
                            .expect("link task panicked")
                            .map(|_| ())
                            .map_err(|e| {
                                StepError::new(
                                    "reuse-deps",
                                    ErrorClass::Transient,
                                    format!("linking node_modules from release {from}: {e}"),
                                )
                            })
                    } else {
                        warn!(app = %app.metadata.name, from = %from, "node_modules to reuse is gone; installing");
                        prep.install().await
                    }
                }
                Step::Build { .. } => {
                    let mut r = Ok(());
                    for cmd in &app.spec.build.steps {
                        r = prep.run("build", cmd).await;
                        if r.is_err() {
                            break;
                        }
                    }
                    r
                }
                Step::Backup { from } => {
                    let file =
                        self.store
                            .app_dir(&app.metadata.name)
                            .join("backups")
                            .join(format!(
                                "{}-{}.backup",
                                state::now().replace(':', ""),
                                from.as_deref().unwrap_or("empty")
                            ));
                    target = file.display().to_string();
                    self.migrate_context(app, secrets, release_dir.clone(), Some(log.to_path_buf()))
                        .backup(&file)
                        .await
                        .map_err(|e| migrate_error("backup", e))
                }
                Step::Migrate { .. } => {
                    match self
                        .migrate_context(app, secrets, release_dir.clone(), Some(log.to_path_buf()))
                        .migrate()
                        .await
                    {
                        Ok(what) => {
                            info!(app = %app.metadata.name, "migrated: {what}");
                            Ok(())
                        }
                        Err(e) => Err(migrate_error("migrate", e)),
                    }
                }
                Step::Restore { backup } => self
                    .migrate_context(app, secrets, release_dir.clone(), Some(log.to_path_buf()))
                    .restore(Path::new(backup))
                    .await
                    .map_err(|e| migrate_error("restore", e)),
                Step::Switch { release } => layout.switch(release).map_err(|e| {
                    StepError::new(
                        "switch",
                        ErrorClass::Transient,
                        format!("switching {} to {release}: {e}", layout.current().display()),
                    )
                }),
                Step::Pm2Start { process } | Step::Pm2Reload { process } => {
                    match write_ecosystem(app, &eco_path, &secrets.env) {
                        Ok(()) => self
                            .pm2
                            .start_or_reload(&eco_path, process)
                            .await
                            .map_err(|e| pm2_error(kind, e)),
                        Err(e) => Err(e),
                    }
                }
                Step::Pm2Replace { process } => match write_ecosystem(app, &eco_path, &secrets.env)
                {
                    Ok(()) => match self.pm2.delete(process).await {
                        Ok(()) => self
                            .pm2
                            .start_or_reload(&eco_path, process)
                            .await
                            .map_err(|e| pm2_error(kind, e)),
                        Err(e) => Err(pm2_error(kind, e)),
                    },
                    Err(e) => Err(e),
                },
                Step::Pm2Delete { process } => self
                    .pm2
                    .delete(process)
                    .await
                    .map_err(|e| pm2_error(kind, e)),
                Step::Pm2Save => self.pm2.save().await.map_err(|e| pm2_error(kind, e)),
                Step::Hook { command } => {
                    let spec =
                        Spec::shell(command, &layout.current(), app.spec.hooks.timeout.std())
                            .envs(secrets.env.vars.clone())
                            .envs(shipshape_env(app, &plan.release, &release_dir))
                            .redact(&secrets.redactor)
                            .log_to(log);
                    let r = exec::run(&spec)
                        .await
                        .map(|_| ())
                        .map_err(|e| exec_error("hook", e));
                    let is_last_hook = !plan.steps[i + 1..]
                        .iter()
                        .any(|s| matches!(s.step, Step::Hook { .. }));
                    if r.is_ok() && is_last_hook {
                        rec.hooks_applied = Some(plan::hooks_hash(app, &plan.release));
                    }
                    r
                }
                Step::Verify => self.verify(app, cancel).await,
            };
            // Seal the release once its last preparation step succeeded.
            let result = match result {
                Ok(()) if Some(i) == last_prepare => {
                    seal(&layout, app, &plan.release, &release_dir, installed)
                }
                Ok(()) => Ok(()),
                Err(mut e) => {
                    e.message = secrets.redactor.redact(&e.message);
                    e.tail = e.tail.map(|t| secrets.redactor.redact(&t));
                    Err(e)
                }
            };
            let failed = result.as_ref().err();
            if let Some(e) = failed {
                append_log_line(log, &format!("!! {kind} failed: {}", e.message));
            }
            records.push(StepRecord {
                step: kind.to_string(),
                target: target.clone(),
                reason: planned.reason.clone(),
                started_at,
                duration_ms: t0.elapsed().as_millis() as u64,
                result: if failed.is_some() {
                    StepResult::Failed
                } else {
                    StepResult::Succeeded
                },
                output_tail: failed.and_then(|e| e.tail.clone()),
            });
            result?;
            self.journal_step(&app.metadata.name, kind, &target);
            fault_point("after", kind);
        }
        Ok(())
    }

    /// Note in the app's journal that `kind` finished, so a controller that stops (or is
    /// killed) mid-rollout leaves a record of how far it got.
    fn journal_step(&self, app: &str, kind: &str, target: &str) {
        let path = self.store.app_dir(app).join("inflight.json");
        let mut journal: serde_json::Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({ "done": [] }));
        if let Some(done) = journal["done"].as_array_mut() {
            done.push(serde_json::json!({ "step": kind, "target": target, "at": state::now() }));
        }
        let _ = crate::release::write_atomic_mode(
            &path,
            &serde_json::to_vec_pretty(&journal).expect("json"),
            0o600,
        );
    }

    /// Start the journal of a pass that changes things.
    fn journal_begin(&self, app: &str, revision: u64, plan: &Plan) {
        let path = self.store.app_dir(app).join("inflight.json");
        let steps: Vec<&str> = plan.steps.iter().map(|s| s.step.kind()).collect();
        let journal = serde_json::json!({ "revision": revision, "startedAt": state::now(), "planned": steps, "done": [] });
        let _ = crate::release::write_atomic_mode(
            &path,
            &serde_json::to_vec_pretty(&journal).expect("json"),
            0o600,
        );
    }

    /// The journal a previous controller left behind, if it stopped mid-pass (and clear it).
    fn journal_take(&self, app: &str) -> Option<String> {
        let path = self.store.app_dir(app).join("inflight.json");
        let bytes = std::fs::read(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        let j: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let done: Vec<String> = j["done"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["step"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Some(format!(
            "the controller stopped during revision {} after [{}] of [{}]",
            j["revision"],
            done.join(", "),
            j["planned"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ))
    }

    async fn fetch(&self, app: &App, commit: &str, dest: &Path) -> Result<(), StepError> {
        if dest.exists() {
            std::fs::remove_dir_all(dest).map_err(|e| {
                StepError::new(
                    "fetch",
                    ErrorClass::Transient,
                    format!("removing the incomplete {}: {e}", dest.display()),
                )
            })?;
        }
        let mirror = source::mirror_path(&self.sources_dir, &app.spec.source.repository);
        let repository = app.spec.source.repository.clone();
        let commit = commit.to_string();
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let repo = source::ensure_commit(&mirror, &repository, &commit)?;
            source::checkout(&repo, &commit, &dest)
        })
        .await
        .expect("fetch task panicked")
        .map_err(|e| StepError {
            step: "fetch",
            class: match e {
                source::SourceError::NoCommit { .. } => ErrorClass::Stalled,
                _ => ErrorClass::Transient,
            },
            message: e.to_string(),
            tail: None,
        })
    }

    /// Probe until `successThreshold` passing rounds in a row, the progress deadline, or
    /// a cancellation (a newer document, a request).
    async fn verify(&self, app: &App, cancel: &mut Cancel) -> Result<(), StepError> {
        let h = &app.spec.health;
        let started = Instant::now();
        let baseline: BTreeMap<u64, u64> = match self.pm2.jlist().await {
            Ok(list) => list.iter().map(|i| (i.pm_id, i.restarts)).collect(),
            Err(e) => return Err(pm2_error("verify", e)),
        };
        let mut tally = Tally::new();
        loop {
            let round_start = Instant::now();
            let (round, results) = self.health_round(app, &baseline).await;
            self.publish_check_metrics(&app.metadata.name, &results);
            tally.record(&round);
            match tally.verdict(h, started.elapsed()) {
                Verdict::Healthy => return Ok(()),
                Verdict::Failed(message) => {
                    return Err(StepError::new("verify", ErrorClass::Stalled, message));
                }
                Verdict::Inconclusive(message) => {
                    return Err(StepError::new("verify", ErrorClass::Inconclusive, message));
                }
                Verdict::Pending => {
                    if let Some(why) = cancel.check().await {
                        return Err(StepError::new("verify", ErrorClass::Superseded, why));
                    }
                    let left = h.progress_deadline.std().saturating_sub(started.elapsed());
                    let wait = h
                        .interval
                        .std()
                        .saturating_sub(round_start.elapsed())
                        .min(left);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One round of `app`'s checks and pm2 facts (restarts counted against `baseline`).
    pub async fn health_round(
        &self,
        app: &App,
        baseline: &BTreeMap<u64, u64>,
    ) -> (Round, Vec<CheckResult>) {
        let probes = app
            .spec
            .health
            .checks
            .iter()
            .filter(|c| c.resources.is_none())
            .map(|c| health::probe(&self.http, c));
        let mut results = futures::future::join_all(probes).await;
        let pm2 = match self.pm2.jlist().await {
            Ok(list) => {
                let (checks, procs) = (&app.spec.health.checks, &app.spec.processes);
                results.extend(health::resources_results(checks, procs, &list));
                health::pm2_facts(&app.spec.processes, &list, baseline, self.cpus)
            }
            Err(e) => Err(format!("pm2: {e}")),
        };
        (health::combine(pm2, &results), results)
    }

    /// Delete releases beyond `releases.keep`, never the live, last healthy, pinned or
    /// any revision's that is still in the history as healthy.
    fn prune_releases(&self, app: &App, rec: &AppRecord) {
        let layout = Layout::new(&app.spec.releases.root);
        let Ok(scan) = layout.scan() else { return };
        let current = layout.current_release();
        let mut protected: Vec<String> = current.iter().cloned().collect();
        let keep_revisions = [
            rec.live_revision,
            rec.last_healthy().map(|h| h.revision.number),
            rec.pin.as_ref().map(|p| p.revision),
        ];
        for r in &rec.revisions {
            if keep_revisions.contains(&Some(r.revision.number)) {
                protected.push(r.release.clone());
            }
        }
        let mut sealed: Vec<(String, String)> = scan
            .iter()
            .filter_map(|(id, m)| m.as_ref().map(|m| (m.sealed_at.clone(), id.clone())))
            .collect();
        sealed.sort();
        sealed.reverse();
        let keep = app.spec.releases.keep as usize;
        for (i, (_, id)) in sealed.iter().enumerate() {
            if i < keep || protected.contains(id) {
                continue;
            }
            info!(app = %app.metadata.name, release = %id, "pruning release beyond releases.keep");
            if let Err(e) = std::fs::remove_dir_all(layout.release(id)) {
                warn!(app = %app.metadata.name, release = %id, "pruning failed: {e}");
            }
        }
    }

    /// Tell watchers when the phase differs from the one last announced.
    fn announce_phase(&self, rec: &mut AppRecord) {
        let before = rec.announced_phase.unwrap_or(rec.phase);
        if before != rec.phase {
            self.emit(
                rec,
                EventKind::PhaseChanged,
                rec.live_revision,
                format!("{before:?} → {:?}", rec.phase),
            );
        }
        rec.announced_phase = Some(rec.phase);
    }

    /// Publish an event about `rec`'s app (with its current phase).
    pub fn emit(&self, rec: &AppRecord, kind: EventKind, revision: Option<u64>, message: String) {
        self.hub.emit(Event {
            at: state::now(),
            app: rec.name.clone(),
            kind,
            revision,
            phase: Some(rec.phase),
            message,
        });
    }

    fn count_rollout(&self, app: &str, outcome: &str) {
        self.hub.metrics.inc(
            "shipshape_rollouts_total",
            vec![("app", app.to_string()), ("outcome", outcome.to_string())],
            1.0,
        );
    }

    /// Update the per-app info gauges from the records.
    pub fn publish_app_metrics(&self, rec: &AppRecord) {
        let m = &self.hub.metrics;
        m.clear_app("shipshape_app_info", &rec.name);
        m.set(
            "shipshape_app_info",
            vec![
                ("app", rec.name.clone()),
                ("phase", format!("{:?}", rec.phase)),
                ("pinned", rec.pin.is_some().to_string()),
                (
                    "live_revision",
                    rec.live_revision.map(|n| n.to_string()).unwrap_or_default(),
                ),
            ],
            1.0,
        );
        m.set(
            "shipshape_app_degraded",
            vec![("app", rec.name.clone())],
            if rec.phase == Phase::Degraded {
                1.0
            } else {
                0.0
            },
        );
        m.clear_app("shipshape_app_pinned_since_timestamp_seconds", &rec.name);
        if let Some(pin) = &rec.pin
            && let Ok(t) = chrono::DateTime::parse_from_rfc3339(&pin.at)
        {
            m.set(
                "shipshape_app_pinned_since_timestamp_seconds",
                vec![("app", rec.name.clone())],
                t.timestamp() as f64,
            );
        }
    }

    /// Update the config-repo gauges from its status.
    pub fn publish_source_metrics(&self, source: &shipshape_spec::status::SourceStatus) {
        let m = &self.hub.metrics;
        m.set(
            "shipshape_source_fetch_failures",
            vec![],
            source.consecutive_failures as f64,
        );
        if let Some(t) = source
            .last_success_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            m.set(
                "shipshape_source_last_success_timestamp_seconds",
                vec![],
                t.timestamp() as f64,
            );
        }
    }

    /// Update the per-check gauges from a round's results.
    pub fn publish_check_metrics(&self, app: &str, results: &[CheckResult]) {
        use shipshape_spec::status::ProbeState;
        let m = &self.hub.metrics;
        for r in results {
            let labels = vec![("app", app.to_string()), ("check", r.name.clone())];
            match r.state {
                ProbeState::Pass => m.set("shipshape_health_check_up", labels.clone(), 1.0),
                ProbeState::Fail => m.set("shipshape_health_check_up", labels.clone(), 0.0),
                ProbeState::Inconclusive => {}
            }
            m.set(
                "shipshape_health_check_latency_seconds",
                labels,
                r.latency_ms as f64 / 1000.0,
            );
        }
    }
}

fn mode_words(mode: &Mode) -> String {
    match mode {
        Mode::Follow => "following git".into(),
        Mode::Pinned(p) => format!("pinned by {} ({})", p.by, p.reason),
        Mode::Hold(_) => "holding the last healthy revision".into(),
    }
}

/// Fault injection for the crash tests: `SHIPSHAPE_FAULT=<before|after>:<step>[:<n>]`
/// makes the controller SIGKILL itself at the n-th (default first) such step boundary.
fn fault_point(when: &str, kind: &str) {
    use std::sync::atomic::AtomicU32;
    static SEEN: AtomicU32 = AtomicU32::new(0);
    let Ok(spec) = std::env::var("SHIPSHAPE_FAULT") else {
        return;
    };
    let mut parts = spec.split(':');
    let (Some(w), Some(k)) = (parts.next(), parts.next()) else {
        return;
    };
    let nth: u32 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    if w == when && k == kind && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        warn!(
            when,
            step = kind,
            "fault injection: the controller kills itself here"
        );
        // SAFETY: signalling our own process, as the fault being simulated would.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// What preparing one release needs: its app, id, directory, log and secrets.
struct Prep<'a> {
    app: &'a App,
    release: &'a str,
    dir: &'a Path,
    log: &'a Path,
    secrets: &'a Secrets,
}

impl Prep<'_> {
    /// Run one install or build command in the release, with the env file, `build.env`
    /// and the `SHIPSHAPE_*` variables, its output logged with secrets masked.
    async fn run(&self, step: &'static str, command: &str) -> Result<(), StepError> {
        let build = &self.app.spec.build;
        let env = build.env.iter().map(|(k, v)| (k.clone(), v.as_text()));
        let spec = Spec::shell(command, self.dir, build.timeout.std())
            .envs(self.secrets.env.vars.clone())
            .envs(env)
            .envs(shipshape_env(self.app, self.release, self.dir))
            .redact(&self.secrets.redactor)
            .log_to(self.log);
        exec::run(&spec)
            .await
            .map(|_| ())
            .map_err(|e| exec_error(step, e))
    }

    /// `build.install`, when there is one.
    async fn install(&self) -> Result<(), StepError> {
        match &self.app.spec.build.install {
            Some(cmd) => self.run("install", cmd).await,
            None => Ok(()),
        }
    }
}

fn append_log_header(log: &Path, kind: &str, target: &str, reason: &str) {
    append_log_line(
        log,
        &format!("== {} {kind} {target} ({reason})", state::now()),
    );
}

fn append_log_line(log: &Path, line: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// The variables the controller gives build commands and hooks (paths and commits via env,
/// never spliced into the command text).
fn shipshape_env(app: &App, release: &str, dir: &Path) -> Vec<(String, String)> {
    vec![
        ("SHIPSHAPE_APP".into(), app.metadata.name.clone()),
        ("SHIPSHAPE_COMMIT".into(), app.spec.source.commit.clone()),
        ("SHIPSHAPE_RELEASE".into(), release.to_string()),
        ("SHIPSHAPE_RELEASE_DIR".into(), dir.display().to_string()),
    ]
}

fn seal(
    layout: &Layout,
    app: &App,
    release: &str,
    dir: &Path,
    installed: bool,
) -> Result<(), StepError> {
    let lockfile = crate::release::lockfile_in_dir(dir);
    let deps = if installed {
        plan::deps_inputs(app, lockfile.as_deref())
    } else {
        None
    };
    let marker = BuildMarker {
        commit: app.spec.source.commit.clone(),
        inputs: plan::build_inputs(app),
        lockfile,
        deps,
        sealed_at: state::now(),
    };
    layout.seal(release, &marker).map_err(|e| {
        StepError::new(
            "seal",
            ErrorClass::Transient,
            format!("writing the release marker: {e}"),
        )
    })
}

fn write_ecosystem(app: &App, path: &Path, env: &EnvFile) -> Result<(), StepError> {
    let apps: Vec<_> = app
        .spec
        .processes
        .iter()
        .map(|p| plan::ecosystem_entry(app, p, env))
        .collect();
    let bytes = serde_json::to_vec_pretty(&serde_json::json!({ "apps": apps }))
        .expect("ecosystem serializes");
    crate::release::write_atomic_mode(path, &bytes, 0o600).map_err(|e| {
        StepError::new(
            "pm2-apply",
            ErrorClass::Transient,
            format!("writing {}: {e}", path.display()),
        )
    })
}

/// `message`, with the last line of a command's output when there is one.
fn with_last_line(message: String, tail: Option<&str>) -> String {
    match tail.and_then(|t| t.lines().rev().map(str::trim).find(|l| !l.is_empty())) {
        Some(line) => format!("{message}: {line}"),
        None => message,
    }
}

fn exec_error(step: &'static str, e: exec::ExecError) -> StepError {
    // A full disk is the server's trouble, not the revision's: retry once space is back.
    let disk_full = e
        .tail()
        .is_some_and(|t| t.contains("No space left on device") || t.contains("ENOSPC"));
    StepError {
        step,
        message: with_last_line(e.to_string(), e.tail()),
        tail: e.tail().map(str::to_string),
        class: match e {
            exec::ExecError::Spawn { .. } => ErrorClass::Transient,
            _ if disk_full => ErrorClass::Transient,
            _ => ErrorClass::Stalled,
        },
    }
}

fn migrate_error(step: &'static str, e: crate::migrate::MigrateError) -> StepError {
    use crate::migrate::MigrateError as M;
    StepError {
        step,
        message: with_last_line(e.to_string(), e.tail()),
        tail: e.tail().map(str::to_string),
        class: match &e {
            M::Connect(_) | M::LockTimeout(_) => ErrorClass::Transient,
            _ => ErrorClass::Stalled,
        },
    }
}

fn pm2_error(step: &'static str, e: crate::pm2::Pm2Error) -> StepError {
    let tail = match &e {
        crate::pm2::Pm2Error::Command { source, .. } => source.tail().map(str::to_string),
        crate::pm2::Pm2Error::Parse(_) => None,
    };
    StepError {
        step,
        message: e.to_string(),
        tail,
        class: ErrorClass::Transient,
    }
}

/// The env file's variables and the redactor for them.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The variables.
    pub env: EnvFile,
    /// Masks their values.
    pub redactor: Redactor,
}

impl Secrets {
    /// Read `app`'s env file (none declared: empty).
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn load(app: &App) -> Result<Secrets, crate::envfile::EnvFileError> {
        match &app.spec.env_file {
            None => Ok(Secrets::default()),
            Some(path) => {
                let env = EnvFile::read(Path::new(path))?;
                let redactor = env.redactor();
                Ok(Secrets { env, redactor })
            }
        }
    }
}

fn reason_for(step: &str) -> &'static str {
    match step {
        "fetch" => "FetchFailed",
        "install" | "reuse-deps" => "InstallFailed",
        "build" => "BuildFailed",
        "backup" => "BackupFailed",
        "migrate" => "MigrationFailed",
        "verify" => "HealthCheckFailed",
        "hook" => "HookFailed",
        _ => "StepFailed",
    }
}

/// Set the conditions of an app that is where it should be and healthy.
pub fn mark_ready(rec: &mut AppRecord, message: &str) {
    let now = state::now();
    rec.phase = Phase::Ready;
    rec.last_error = None;
    rec.set_condition(ct::READY, ConditionStatus::True, "Succeeded", message, &now);
    rec.set_condition(
        ct::RECONCILING,
        ConditionStatus::False,
        "Succeeded",
        message,
        &now,
    );
    rec.set_condition(ct::STALLED, ConditionStatus::False, "Succeeded", "", &now);
    rec.set_condition(
        ct::HEALTHY,
        ConditionStatus::True,
        "ChecksPassing",
        message,
        &now,
    );
}

fn set_stalled(rec: &mut AppRecord, reason: &str, message: &str) {
    let now = state::now();
    rec.set_condition(ct::READY, ConditionStatus::False, reason, message, &now);
    rec.set_condition(
        ct::RECONCILING,
        ConditionStatus::False,
        reason,
        message,
        &now,
    );
    rec.set_condition(ct::STALLED, ConditionStatus::True, reason, message, &now);
}

/// Set the conditions of an app that is unhealthy and cannot be fixed by the controller.
pub fn set_degraded(rec: &mut AppRecord, message: &str) {
    set_stalled(rec, "Degraded", message);
    rec.set_condition(
        ct::HEALTHY,
        ConditionStatus::False,
        "Degraded",
        message,
        &state::now(),
    );
    rec.phase = Phase::Degraded;
}

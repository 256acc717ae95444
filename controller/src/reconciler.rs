//! The reconcile loop for each app: read desired and observed state afresh, plan, execute
//! the plan step by step with records, verify health, and go back to the last healthy
//! revision by itself when a rollout fails after the switch.
//!
//! # Guarantees
//! - Level-triggered: a pass never asks what woke it.
//! - A failure before the switch leaves the live release as it was.
//! - A config commit whose rollout failed is quarantined: it is not applied again by itself;
//!   the server is held on the last healthy revision (drift towards it is still corrected).
//! - If the last healthy revision fails too, the app is reported Degraded and left alone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use shipshape_spec::App;
use shipshape_spec::app::OnRevert;
use shipshape_spec::status::{
    ConditionStatus, LastError, Outcome, PassRecord, Phase, Revision, StepRecord, StepResult,
    condition_types as ct,
};
use tracing::{info, warn};

use crate::envfile::{EnvFile, Redactor};
use crate::exec::{self, Spec};
use crate::health::{self, Tally, Verdict};
use crate::migrate;
use crate::plan::{self, MigrationState, Observed, Plan, Step};
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
}

/// A step that failed.
#[derive(Debug, Clone)]
pub struct StepError {
    /// The step's kind.
    pub step: &'static str,
    /// What went wrong.
    pub message: String,
    /// The output's tail.
    pub tail: Option<String>,
    /// What the loop does about it.
    pub class: ErrorClass,
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
    /// Live equals desired and is healthy; `steps` ran to get there (0 for a no-op).
    Ready {
        /// Steps run in this pass.
        steps: usize,
    },
    /// The desired revision is not live: failed, reverted, quarantined or waiting.
    NotReady {
        /// Phase.
        phase: Phase,
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
}

impl Controller {
    /// One pass over every document at the branch tip.
    ///
    /// # Errors
    /// [`ReconcileError`] when the config repo cannot be read; per-app failures are in the summary.
    pub async fn reconcile_all(&self) -> Result<PassSummary, ReconcileError> {
        let config = self.config.clone();
        let snapshot = tokio::task::spawn_blocking(move || config.snapshot())
            .await
            .expect("snapshot task panicked")?;
        let mut apps = BTreeMap::new();
        let mut docs: Vec<(String, App)> = Vec::new();
        for file in &snapshot.files {
            match shipshape_spec::load_str(&file.text, &file.path) {
                Ok(app) => docs.push((file.path.clone(), app)),
                Err(e) => {
                    warn!(file = %file.path, config_commit = %snapshot.commit, "invalid document:\n{e}");
                    apps.insert(
                        file.path.clone(),
                        AppResult::Invalid {
                            message: e.to_string(),
                        },
                    );
                }
            }
        }
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, app) in &docs {
            names
                .entry(app.metadata.name.clone())
                .or_default()
                .push(path.clone());
        }
        for (path, app) in docs {
            let files = &names[&app.metadata.name];
            if files.len() > 1 {
                let message = format!(
                    "{path}: metadata.name: {:?} is also declared in {}",
                    app.metadata.name,
                    files.join(", ")
                );
                apps.insert(path, AppResult::Invalid { message });
                continue;
            }
            let name = app.metadata.name.clone();
            let result = self.reconcile_app(&app, &snapshot.commit).await?;
            apps.insert(name, result);
        }
        Ok(PassSummary {
            config_commit: snapshot.commit,
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
        Ok(Observed {
            current,
            releases,
            processes: self.pm2.jlist().await?,
            hooks_applied: record.hooks_applied.clone(),
            cpus: self.cpus,
            desired_lockfile: self.desired_lockfile(app).await,
            migration,
            env_file: secrets.env.clone(),
        })
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

    /// One pass over one app.
    ///
    /// # Errors
    /// [`ReconcileError`] only when the records or the server cannot be read at all.
    pub async fn reconcile_app(
        &self,
        desired: &App,
        config_commit: &str,
    ) -> Result<AppResult, ReconcileError> {
        let name = desired.metadata.name.as_str();
        let mut rec = self.store.load(name)?;
        let started_at = state::now();
        rec.desired_config_commit = Some(config_commit.to_string());
        rec.desired_app_commit = Some(desired.spec.source.commit.clone());
        rec.passes += 1;

        // A quarantined config commit is not applied again; hold the last healthy revision.
        let quarantined = rec.is_quarantined(config_commit);
        let target: App = if quarantined {
            match rec.last_healthy() {
                Some(h) => h.document.clone(),
                None => {
                    let message = format!(
                        "config commit {} is quarantined and there is no healthy revision to hold; commit a fix or run `shipshape retry {name}`",
                        plan::short_sha(config_commit)
                    );
                    self.finish_pass(&mut rec, &started_at, config_commit, Vec::new(), &message)?;
                    return Ok(AppResult::NotReady {
                        phase: rec.phase,
                        message,
                    });
                }
            }
        } else {
            desired.clone()
        };

        let secrets = match Secrets::load(&target) {
            Ok(s) => s,
            Err(e) => {
                let message = e.to_string();
                rec.phase = Phase::Failed;
                rec.last_error = Some(LastError {
                    step: "env-file".into(),
                    message: message.clone(),
                    output_tail: None,
                    at: state::now(),
                });
                set_stalled(&mut rec, "EnvFileUnreadable", &message);
                self.finish_pass(&mut rec, &started_at, config_commit, Vec::new(), &message)?;
                return Ok(AppResult::NotReady {
                    phase: Phase::Failed,
                    message,
                });
            }
        };
        let observed = self.observe(&target, &rec, &secrets).await?;
        let the_plan = plan::plan(&target, &observed);
        if !the_plan.blockers.is_empty() {
            let message = the_plan.blockers.join("; ");
            rec.phase = Phase::Failed;
            rec.last_error = Some(LastError {
                step: "plan".into(),
                message: message.clone(),
                output_tail: None,
                at: state::now(),
            });
            set_stalled(&mut rec, "Blocked", &message);
            self.finish_pass(&mut rec, &started_at, config_commit, Vec::new(), &message)?;
            return Ok(AppResult::NotReady {
                phase: Phase::Failed,
                message,
            });
        }

        if the_plan.steps.is_empty() {
            let message = if quarantined {
                let q = rec
                    .quarantined
                    .iter()
                    .find(|q| q.config_commit == config_commit)
                    .cloned();
                format!(
                    "holding the last healthy revision; config commit {} is quarantined: {}",
                    plan::short_sha(config_commit),
                    q.map(|q| q.reason).unwrap_or_default()
                )
            } else {
                "up to date".to_string()
            };
            let healthy_here = !quarantined
                && rec.last_attempted().is_some_and(|r| {
                    r.revision.outcome == Outcome::Healthy
                        && same_content(r, &target, &the_plan.release, &secrets.env)
                });
            if healthy_here {
                mark_ready(&mut rec, &message);
            }
            self.finish_pass(&mut rec, &started_at, config_commit, Vec::new(), &message)?;
            return Ok(if healthy_here {
                AppResult::Ready { steps: 0 }
            } else {
                AppResult::NotReady {
                    phase: rec.phase,
                    message,
                }
            });
        }

        // A rollout (or a repair) is needed.
        let is_new_revision = !rec.last_attempted().is_some_and(|r| {
            same_revision(r, &target, config_commit, &the_plan.release, &secrets.env)
        });
        if is_new_revision && !quarantined {
            let number = rec.next_revision;
            rec.next_revision += 1;
            let entry = RevisionEntry {
                revision: Revision {
                    number,
                    config_commit: config_commit.to_string(),
                    app_commit: target.spec.source.commit.clone(),
                    level: target.spec.migrations.as_ref().map(|m| m.level.clone()),
                    process_hash: plan::processes_hash(&target, &secrets.env),
                    started_at: state::now(),
                    finished_at: None,
                    outcome: Outcome::Progressing,
                    message: String::new(),
                },
                release: the_plan.release.clone(),
                document: target.clone(),
            };
            rec.push_revision(entry, self.history);
        }
        rec.phase = Phase::Progressing;
        rec.set_condition(
            ct::RECONCILING,
            ConditionStatus::True,
            "Progressing",
            &format!("applying {} step(s)", the_plan.steps.len()),
            &state::now(),
        );
        self.store.save(&rec)?;
        info!(app = name, release = %the_plan.release, steps = the_plan.steps.len(), "applying plan\n{the_plan}");

        let mut records = Vec::new();
        let outcome = self
            .execute(&target, &the_plan, &mut rec, &mut records, &secrets)
            .await;
        match outcome {
            Ok(()) => {
                let message = format!(
                    "revision live and healthy: release {}",
                    plan::short_sha(&the_plan.release)
                );
                if let Some(last) = rec.revisions.last_mut()
                    && same_revision(
                        last,
                        &target,
                        config_commit,
                        &the_plan.release,
                        &secrets.env,
                    )
                {
                    last.revision.outcome = Outcome::Healthy;
                    last.revision.finished_at = Some(state::now());
                    last.revision.message = "healthy".into();
                }
                if quarantined {
                    // We repaired drift towards the last healthy revision; desired is still not live.
                    let msg = format!(
                        "repaired drift; holding the last healthy revision while {} is quarantined",
                        plan::short_sha(config_commit)
                    );
                    self.finish_pass(&mut rec, &started_at, config_commit, records, &msg)?;
                    return Ok(AppResult::NotReady {
                        phase: rec.phase,
                        message: msg,
                    });
                }
                mark_ready(&mut rec, &message);
                let n = records.len();
                self.finish_pass(&mut rec, &started_at, config_commit, records, &message)?;
                Ok(AppResult::Ready { steps: n })
            }
            Err(err) => {
                let switched = records.iter().any(|r| {
                    r.result == StepResult::Succeeded
                        && r.step != "fetch"
                        && r.step != "install"
                        && r.step != "build"
                });
                let message = format!("{} failed: {}", err.step, err.message);
                warn!(app = name, step = err.step, "{message}");
                rec.last_error = Some(LastError {
                    step: err.step.to_string(),
                    message: err.message.clone(),
                    output_tail: err.tail.clone(),
                    at: state::now(),
                });
                if err.class == ErrorClass::Transient {
                    rec.phase = Phase::Progressing;
                    rec.set_condition(
                        ct::RECONCILING,
                        ConditionStatus::True,
                        "RetryingAfterError",
                        &message,
                        &state::now(),
                    );
                    rec.set_condition(
                        ct::READY,
                        ConditionStatus::False,
                        "TransientError",
                        &message,
                        &state::now(),
                    );
                    self.finish_pass(&mut rec, &started_at, config_commit, records, &message)?;
                    return Ok(AppResult::NotReady {
                        phase: Phase::Progressing,
                        message,
                    });
                }
                let failed_number = rec.revisions.last().map(|r| r.revision.number).unwrap_or(0);
                let failed_is_current = rec.last_attempted().is_some_and(|r| {
                    same_revision(r, &target, config_commit, &the_plan.release, &secrets.env)
                });
                let (outcome, phase, final_message) = if quarantined || !failed_is_current {
                    // A drift repair towards the held revision failed: nothing healthy to fall back to.
                    set_degraded(&mut rec, &message);
                    (None, Phase::Degraded, message.clone())
                } else if !switched {
                    set_stalled(
                        &mut rec,
                        reason_for(err.step),
                        &format!("{message}; the live release was not touched"),
                    );
                    rec.phase = Phase::Failed;
                    (
                        Some(Outcome::Failed),
                        Phase::Failed,
                        format!("{message}; the live release was not touched"),
                    )
                } else {
                    self.revert(&mut rec, failed_number, &message, &mut records)
                        .await
                };
                if let Some(o) = outcome
                    && let Some(last) = rec
                        .revisions
                        .iter_mut()
                        .find(|r| r.revision.number == failed_number)
                {
                    last.revision.outcome = o;
                    last.revision.finished_at = Some(state::now());
                    last.revision.message = final_message.clone();
                }
                if !quarantined && failed_is_current {
                    rec.quarantined.retain(|q| q.config_commit != config_commit);
                    rec.quarantined.push(Quarantine {
                        config_commit: config_commit.to_string(),
                        revision: failed_number,
                        reason: message.clone(),
                        at: state::now(),
                    });
                }
                rec.phase = phase;
                self.finish_pass(
                    &mut rec,
                    &started_at,
                    config_commit,
                    records,
                    &final_message,
                )?;
                Ok(AppResult::NotReady {
                    phase,
                    message: final_message,
                })
            }
        }
    }

    /// Go back to the last healthy revision after revision `failed` broke health.
    async fn revert(
        &self,
        rec: &mut AppRecord,
        failed: u64,
        why: &str,
        records: &mut Vec<StepRecord>,
    ) -> (Option<Outcome>, Phase, String) {
        let Some(healthy) = rec
            .last_healthy()
            .filter(|h| h.revision.number != failed)
            .cloned()
        else {
            let msg = format!("{why}; no earlier healthy revision to go back to");
            set_degraded(rec, &msg);
            return (Some(Outcome::Failed), Phase::Degraded, msg);
        };
        if !healthy.document.spec.rollback.auto
            || !rec
                .revisions
                .iter()
                .any(|r| r.revision.number == failed && r.document.spec.rollback.auto)
        {
            let msg = format!("{why}; rollback.auto is off, so the server was left as it is");
            set_degraded(rec, &msg);
            return (Some(Outcome::Failed), Phase::Degraded, msg);
        }
        warn!(app = %rec.name, from = failed, to = healthy.revision.number, "reverting to the last healthy revision");
        // The migration level on the way back follows the failed revision's onRevert:
        // `keep` leaves the schema alone (expand/contract); `down` migrates to the old level.
        let on_revert = rec
            .revisions
            .iter()
            .find(|r| r.revision.number == failed)
            .and_then(|r| r.document.spec.migrations.as_ref())
            .map(|m| m.on_revert)
            .unwrap_or_default();
        let mut back_doc = healthy.document.clone();
        if on_revert != OnRevert::Down {
            back_doc.spec.migrations = None;
        }
        let result = async {
            let secrets = Secrets::load(&back_doc).map_err(|e| StepError {
                step: "env-file",
                message: e.to_string(),
                tail: None,
                class: ErrorClass::Stalled,
            })?;
            let observed = self
                .observe(&back_doc, rec, &secrets)
                .await
                .map_err(|e| StepError {
                    step: "observe",
                    message: e.to_string(),
                    tail: None,
                    class: ErrorClass::Transient,
                })?;
            let back = plan::plan(&back_doc, &observed);
            if !back.blockers.is_empty() {
                return Err(StepError {
                    step: "plan",
                    message: back.blockers.join("; "),
                    tail: None,
                    class: ErrorClass::Stalled,
                });
            }
            self.execute(&back_doc, &back, rec, records, &secrets).await
        }
        .await;
        match result {
            Ok(()) => {
                let msg = format!(
                    "{why}; reverted to revision {} (app {}), which is healthy",
                    healthy.revision.number,
                    plan::short_sha(&healthy.revision.app_commit)
                );
                rec.set_condition(
                    ct::HEALTHY,
                    ConditionStatus::True,
                    "RevertedHealthy",
                    &msg,
                    &state::now(),
                );
                set_stalled(rec, "RolledBack", &msg);
                (Some(Outcome::Reverted), Phase::Failed, msg)
            }
            Err(e) => {
                let msg = format!(
                    "{why}; reverting to revision {} failed too ({} failed: {}); stopped",
                    healthy.revision.number, e.step, e.message
                );
                set_degraded(rec, &msg);
                (Some(Outcome::Failed), Phase::Degraded, msg)
            }
        }
    }

    fn finish_pass(
        &self,
        rec: &mut AppRecord,
        started_at: &str,
        config_commit: &str,
        steps: Vec<StepRecord>,
        result: &str,
    ) -> Result<(), ReconcileError> {
        rec.steps_run += steps.len() as u64;
        rec.last_pass = Some(PassRecord {
            started_at: started_at.to_string(),
            finished_at: state::now(),
            config_commit: config_commit.to_string(),
            steps,
            result: result.to_string(),
        });
        self.store.save(rec)?;
        Ok(())
    }

    /// Run `plan`'s steps in order for `app`, appending a record per step.
    async fn execute(
        &self,
        app: &App,
        plan: &Plan,
        rec: &mut AppRecord,
        records: &mut Vec<StepRecord>,
        secrets: &Secrets,
    ) -> Result<(), StepError> {
        let layout = Layout::new(&app.spec.releases.root);
        let release_dir = layout.release(&plan.release);
        let log = self
            .store
            .app_dir(&app.metadata.name)
            .join("logs")
            .join(format!("{}.log", plan.release));
        let eco_path = self
            .store
            .app_dir(&app.metadata.name)
            .join("ecosystem.json");
        let last_prepare = plan.steps.iter().rposition(|s| s.step.prepares());
        let prep = Prep {
            app,
            release: &plan.release,
            dir: &release_dir,
            log: &log,
            secrets,
        };
        for (i, planned) in plan.steps.iter().enumerate() {
            let kind = planned.step.kind();
            let started_at = state::now();
            let t0 = Instant::now();
            info!(app = %app.metadata.name, step = kind, target = %planned.step.target(), reason = %planned.reason, "step");
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
                            .map_err(|e| StepError {
                                step: "reuse-deps",
                                message: format!("linking node_modules from release {from}: {e}"),
                                tail: None,
                                class: ErrorClass::Transient,
                            })
                    } else {
                        // The other release lost its node_modules: install after all.
                        warn!(app = %app.metadata.name, from = %from, "node_modules to reuse is gone; installing");
                        prep.install().await
                    }
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
                    self.migrate_context(app, secrets, release_dir.clone(), Some(log.clone()))
                        .backup(&file)
                        .await
                        .map_err(|e| migrate_error("backup", e))
                }
                Step::Migrate { .. } => {
                    match self
                        .migrate_context(app, secrets, release_dir.clone(), Some(log.clone()))
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
                Step::Switch { release } => layout.switch(release).map_err(|e| StepError {
                    step: "switch",
                    message: format!("switching {} to {release}: {e}", layout.current().display()),
                    tail: None,
                    class: ErrorClass::Transient,
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
                            .log_to(&log);
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
                Step::Verify => self.verify(app).await,
            };
            // Seal the release once its last preparation step succeeded.
            let installed = plan
                .steps
                .iter()
                .any(|s| matches!(s.step, Step::Install { .. } | Step::ReuseDeps { .. }));
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
            records.push(StepRecord {
                step: kind.to_string(),
                target: planned.step.target(),
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
        }
        Ok(())
    }

    async fn fetch(
        &self,
        app: &App,
        commit: &str,
        dest: &std::path::Path,
    ) -> Result<(), StepError> {
        if dest.exists() {
            std::fs::remove_dir_all(dest).map_err(|e| StepError {
                step: "fetch",
                message: format!("removing the incomplete {}: {e}", dest.display()),
                tail: None,
                class: ErrorClass::Transient,
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

    /// Probe until `successThreshold` passing rounds in a row, or the progress deadline.
    async fn verify(&self, app: &App) -> Result<(), StepError> {
        let h = &app.spec.health;
        let started = Instant::now();
        let baseline: BTreeMap<u64, u64> = match self.pm2.jlist().await {
            Ok(list) => list.iter().map(|i| (i.pm_id, i.restarts)).collect(),
            Err(e) => return Err(pm2_error("verify", e)),
        };
        let mut tally = Tally::new();
        loop {
            let round_start = Instant::now();
            let round = self.round(app, &baseline).await;
            tally.record(round);
            match tally.verdict(h, started.elapsed()) {
                Verdict::Healthy => return Ok(()),
                Verdict::Failed(message) => {
                    return Err(StepError {
                        step: "verify",
                        message,
                        tail: None,
                        class: ErrorClass::Stalled,
                    });
                }
                Verdict::Pending => {
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

    async fn round(&self, app: &App, baseline: &BTreeMap<u64, u64>) -> Result<(), String> {
        let probes = app
            .spec
            .health
            .checks
            .iter()
            .map(|c| health::probe(&self.http, c));
        let results = futures::future::join_all(probes).await;
        let list = self.pm2.jlist().await.map_err(|e| e.to_string())?;
        health::pm2_facts(&app.spec.processes, &list, baseline, self.cpus)?;
        for r in results {
            if !r.ok {
                return Err(format!("{}: {}", r.check, r.detail));
            }
        }
        Ok(())
    }
}

/// What preparing one release needs: its app, id, directory, log and secrets.
struct Prep<'a> {
    app: &'a App,
    release: &'a str,
    dir: &'a std::path::Path,
    log: &'a std::path::Path,
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

/// The variables the controller gives build commands and hooks (paths and commits via env,
/// never spliced into the command text).
fn shipshape_env(app: &App, release: &str, dir: &std::path::Path) -> Vec<(String, String)> {
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
    dir: &std::path::Path,
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
    layout.seal(release, &marker).map_err(|e| StepError {
        step: "seal",
        message: format!("writing the release marker: {e}"),
        tail: None,
        class: ErrorClass::Transient,
    })
}

fn write_ecosystem(app: &App, path: &std::path::Path, env: &EnvFile) -> Result<(), StepError> {
    let apps: Vec<_> = app
        .spec
        .processes
        .iter()
        .map(|p| plan::ecosystem_entry(app, p, env))
        .collect();
    let bytes = serde_json::to_vec_pretty(&serde_json::json!({ "apps": apps }))
        .expect("ecosystem serializes");
    crate::release::write_atomic_mode(path, &bytes, 0o600).map_err(|e| StepError {
        step: "pm2-apply",
        message: format!("writing {}: {e}", path.display()),
        tail: None,
        class: ErrorClass::Transient,
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
    StepError {
        step,
        message: with_last_line(e.to_string(), e.tail()),
        tail: e.tail().map(str::to_string),
        class: match e {
            exec::ExecError::Spawn { .. } => ErrorClass::Transient,
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
                let env = EnvFile::read(std::path::Path::new(path))?;
                let redactor = env.redactor();
                Ok(Secrets { env, redactor })
            }
        }
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

/// The same config commit and the same content: one revision.
fn same_revision(
    r: &RevisionEntry,
    target: &App,
    config_commit: &str,
    release: &str,
    env: &EnvFile,
) -> bool {
    r.revision.config_commit == config_commit && same_content(r, target, release, env)
}

/// The same release and processes, whatever config commit declared them.
fn same_content(r: &RevisionEntry, target: &App, release: &str, env: &EnvFile) -> bool {
    r.release == release && r.revision.process_hash == plan::processes_hash(target, env)
}

fn reason_for(step: &str) -> &'static str {
    match step {
        "fetch" => "FetchFailed",
        "install" => "InstallFailed",
        "build" => "BuildFailed",
        "verify" => "HealthCheckFailed",
        "hook" => "HookFailed",
        _ => "StepFailed",
    }
}

fn mark_ready(rec: &mut AppRecord, message: &str) {
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

fn set_degraded(rec: &mut AppRecord, message: &str) {
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

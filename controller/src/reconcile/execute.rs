//! Running a plan's steps in order: fetch, install or reuse dependencies, build, seal,
//! back up and migrate, switch, pm2, hooks, verify. Each step is logged to the revision's
//! log with secrets masked, recorded (kind, target, reason, time, result, output tail)
//! and journaled, and its failure classified ([`ErrorClass`]) for the decision that follows.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use shipshape_spec::App;
use shipshape_spec::status::{Rounds, StepKind, StepRecord, StepResult, Timestamp};
use tracing::{info, warn};

use super::Controller;
use super::decide::ErrorClass;
use super::journal::JournalFile;
use super::pins::PinWatch;
use super::verify::Cancel;
use crate::envfile::{EnvFile, Redactor};
use crate::exec::{self, Spec};
use crate::plan::{self, Plan, PlannedStep, Step};
use crate::release::{BuildMarker, Layout};
use crate::source;
use crate::state::{self, AppRecord};

/// A step that failed.
#[derive(Debug, Clone)]
pub struct StepError {
    /// The step's kind.
    pub step: StepKind,
    /// What went wrong (secrets masked).
    pub message: String,
    /// The output's tail (secrets masked).
    pub tail: Option<String>,
    /// What the loop does about it.
    pub class: ErrorClass,
}

impl StepError {
    /// A failure of `step` without output.
    pub fn new(step: StepKind, class: ErrorClass, message: impl Into<String>) -> StepError {
        StepError {
            step,
            message: message.into(),
            tail: None,
            class,
        }
    }
}

/// One execution of a plan: what it needs, and what it leaves behind.
pub struct Run<'a> {
    /// The document the steps apply.
    pub app: &'a App,
    /// The plan.
    pub plan: &'a Plan,
    /// The env file and its redactor.
    pub secrets: &'a Secrets,
    /// The revision's log.
    pub log: PathBuf,
    /// What cancels a verification.
    pub cancel: Cancel,
    /// Fail a verification as soon as `failureThreshold` rounds in a row fail (a rollout);
    /// without it only `progressDeadline` fails it (re-verifying a revision gone back to,
    /// whose windowed metrics still carry the failed revision's errors for a while).
    pub fail_fast: bool,
    /// A record per step run (appended).
    pub records: Vec<StepRecord>,
    /// The rounds a verification counted.
    pub rounds: Rounds,
    /// What failed in the last failing round a verification counted (check names; `pm2`).
    pub failed_checks: Vec<String>,
    /// Set when the plan's last hook ran: the hooks' inputs now applied.
    pub hooks_applied: Option<String>,
}

impl Controller {
    /// Run `run.plan`'s steps in order, appending a record per step; stop at the first
    /// failure. Each step's completion is journaled.
    pub(super) async fn execute(&self, run: &mut Run<'_>) -> Result<(), StepError> {
        let journal = JournalFile::new(&self.store.app_dir(&run.app.metadata.name));
        // Requests are answered 202 while this runs (see `AppHandle::running_steps`).
        let _running = run.cancel.handle().begin_steps();
        let last_prepare = run.plan.steps.iter().rposition(|s| s.step.prepares());
        for (i, planned) in run.plan.steps.iter().enumerate() {
            let kind = planned.step.kind();
            let started_at = state::now();
            let t0 = Instant::now();
            fault_point("before", kind.as_str());
            let mut target = planned.step.target();
            // The one pin check: before a step that changes live state (verification
            // stops on any request by itself; preparation is cut short in `Prep::run`).
            if !planned.step.prepares()
                && planned.step != Step::Verify
                && let Some(why) = run.cancel.pins.as_ref().and_then(|p| p.check())
            {
                let message = format!("stopped before {kind}: {why}");
                info!(app = %run.app.metadata.name, step = %kind, "{message}");
                append_log_line(&run.log, &format!("== {} {message}", state::now()));
                return Err(StepError::new(kind, ErrorClass::Superseded, message));
            }
            info!(app = %run.app.metadata.name, step = %kind, target = %target, reason = %planned.reason, "step");
            append_log_line(
                &run.log,
                &format!("== {} {kind} {target} ({})", state::now(), planned.reason),
            );
            let result = match self.run_step(run, i, planned, &mut target).await {
                // Seal the release once its last preparation step succeeded.
                Ok(()) if Some(i) == last_prepare => seal(run.app, run.plan),
                Ok(()) => Ok(()),
                Err(mut e) => {
                    e.message = run.secrets.redactor.redact(&e.message);
                    e.tail = e.tail.map(|t| run.secrets.redactor.redact(&t));
                    Err(e)
                }
            };
            if let Err(e) = &result {
                append_log_line(&run.log, &format!("!! {kind} failed: {}", e.message));
            }
            run.records.push(StepRecord {
                step: kind,
                target: target.clone(),
                reason: planned.reason.clone(),
                started_at,
                duration_ms: t0.elapsed().as_millis() as u64,
                result: if result.is_err() {
                    StepResult::Failed
                } else {
                    StepResult::Succeeded
                },
                output_tail: result.as_ref().err().and_then(|e| e.tail.clone()),
            });
            result?;
            if let Err(e) = journal.step_done(kind, &target) {
                warn!(app = %run.app.metadata.name, journal = %journal.path().display(), "could not journal step {kind}: {e}");
            }
            fault_point("after", kind.as_str());
        }
        Ok(())
    }

    /// Run one step; `target` may be refined (a backup names its file).
    async fn run_step(
        &self,
        run: &mut Run<'_>,
        index: usize,
        planned: &PlannedStep,
        target: &mut String,
    ) -> Result<(), StepError> {
        let app = run.app;
        let layout = Layout::new(&app.spec.releases.root);
        let release_dir = layout.release(&run.plan.release);
        let eco_path = self
            .store
            .app_dir(&app.metadata.name)
            .join("ecosystem.json");
        let kind = planned.step.kind();
        let prep = Prep {
            app,
            release: &run.plan.release,
            dir: &release_dir,
            log: &run.log,
            secrets: run.secrets,
            stop: run.cancel.pins.as_ref(),
        };
        let migrate =
            || self.migrate_context(app, run.secrets, release_dir.clone(), Some(run.log.clone()));
        match &planned.step {
            Step::Fetch { commit, .. } => self.fetch(app, commit, &release_dir).await,
            Step::Install { .. } => prep.install().await,
            Step::ReuseDeps { from, .. } => prep.reuse_deps(&layout, from).await,
            Step::Build { cache_from, .. } => {
                prep.check_build_cache_paths(&layout)?;
                if let Some(from) = cache_from {
                    prep.carry_build_cache(&layout, from).await?;
                }
                prep.build().await
            }
            Step::Backup { from } => {
                let file = self
                    .store
                    .app_dir(&app.metadata.name)
                    .join("backups")
                    .join(format!(
                        "{}-{}.backup",
                        state::now().to_string().replace(':', ""),
                        from.as_deref().unwrap_or("empty")
                    ));
                *target = file.display().to_string();
                let r = migrate().backup(&file).await;
                r.map_err(|e| migrate_error(kind, e))
            }
            Step::Migrate { .. } => match migrate().migrate().await {
                Ok(what) => {
                    info!(app = %app.metadata.name, "migrated: {what}");
                    Ok(())
                }
                Err(e) => Err(migrate_error(kind, e)),
            },
            Step::Restore { backup } => {
                let r = migrate().restore(Path::new(backup)).await;
                r.map_err(|e| migrate_error(kind, e))
            }
            Step::Switch { release } => layout.switch(release).map_err(|e| {
                StepError::new(
                    kind,
                    ErrorClass::Transient,
                    format!("switching {} to {release}: {e}", layout.current().display()),
                )
            }),
            Step::Pm2Start { process } | Step::Pm2Reload { process } => {
                write_ecosystem(app, &eco_path, &run.secrets.env)?;
                let r = self.pm2.start_or_reload(&eco_path, process).await;
                r.map_err(|e| pm2_error(kind, e))
            }
            Step::Pm2Replace { process } => {
                self.replace_process(app, process, &eco_path, &run.secrets.env)
                    .await
            }
            Step::Pm2Delete { process } => self
                .pm2
                .delete(process)
                .await
                .map_err(|e| pm2_error(kind, e)),
            Step::Pm2Save => self.pm2.save().await.map_err(|e| pm2_error(kind, e)),
            Step::Hook { command } => {
                prep.hook(command, &layout.current()).await?;
                let is_last_hook = !run.plan.steps[index + 1..]
                    .iter()
                    .any(|s| matches!(s.step, Step::Hook { .. }));
                if is_last_hook {
                    run.hooks_applied = Some(hooks_record(app, run.plan));
                }
                Ok(())
            }
            Step::Verify => {
                let mut rounds = Rounds::default();
                let mut failed = Vec::new();
                let r = self
                    .verify(
                        app,
                        &mut run.cancel,
                        &mut rounds,
                        &mut failed,
                        run.fail_fast,
                    )
                    .await;
                run.rounds = rounds;
                run.failed_checks = failed;
                r
            }
        }
    }

    async fn fetch(&self, app: &App, commit: &str, dest: &Path) -> Result<(), StepError> {
        if dest.exists() {
            std::fs::remove_dir_all(dest).map_err(|e| {
                StepError::new(
                    StepKind::Fetch,
                    ErrorClass::Transient,
                    format!("removing the incomplete {}: {e}", dest.display()),
                )
            })?;
        }
        let mirror = source::mirror_path(&self.sources_dir, &app.spec.source.repository);
        let repository = app.spec.source.repository.clone();
        let creds = source::Credentials::for_app(
            &app.spec.source,
            self.config.credentials.ssh_key.as_deref(),
        );
        let commit = commit.to_string();
        let dest_dir = dest.to_path_buf();
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let repo = source::ensure_commit(&mirror, &repository, &commit, &creds)?;
            source::checkout(&repo, &commit, &dest)
        })
        .await
        .expect("fetch task panicked")
        .map_err(|e| StepError {
            step: StepKind::Fetch,
            class: match e {
                source::SourceError::NoCommit { .. } => ErrorClass::Stalled,
                _ => ErrorClass::Transient,
            },
            message: crate::redact::credentials(&e.to_string()).into_owned(),
            tail: None,
        })?;
        // The marker is the controller's word that a release is complete: one committed
        // to the app repo (a file or a link) would seal an interrupted preparation.
        if std::fs::symlink_metadata(dest_dir.join(crate::release::MARKER)).is_ok() {
            return Err(StepError::new(
                StepKind::Fetch,
                ErrorClass::Stalled,
                format!(
                    "the app commit has a {} (the controller's own release marker); refusing",
                    crate::release::MARKER
                ),
            ));
        }
        Ok(())
    }

    /// Delete sealed releases beyond `releases.keep`, never the live, last good or pinned
    /// one, and every unsealed release directory that `current` does not point at, except
    /// `just_failed` (the release this pass failed to prepare, kept for a person to look
    /// at until the next pass that ends a rollout).
    pub(super) fn prune_releases(&self, app: &App, rec: &AppRecord, just_failed: Option<&str>) {
        let layout = Layout::new(&app.spec.releases.root);
        let Ok(scan) = layout.scan() else { return };
        let current = layout.current_release();
        let mut protected: Vec<String> = current.iter().cloned().collect();
        let keep_revisions = [
            rec.live_revision,
            super::target::good_revision(rec, None).map(|(h, _)| h.revision.number),
            rec.pin.as_ref().map(|p| p.revision),
        ];
        for r in &rec.revisions {
            if keep_revisions.contains(&Some(r.revision.number)) {
                protected.push(r.release.clone());
            }
        }
        let mut sealed: Vec<(Timestamp, String)> = scan
            .iter()
            .filter_map(|(id, m)| m.as_ref().map(|m| (m.sealed_at, id.clone())))
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
        // Unsealed directories (failed or interrupted preparations) are never live and
        // never reused as they are (a fetch starts them afresh): each goes unless `current`
        // points at it. Only this app's pass prepares releases under its root, and this
        // runs at the end of that pass, so none of them is in use.
        for (id, marker) in &scan {
            if marker.is_some() || protected.contains(id) || Some(id.as_str()) == just_failed {
                continue;
            }
            info!(app = %app.metadata.name, release = %id, "removing an unsealed release (a failed or interrupted preparation)");
            if let Err(e) = std::fs::remove_dir_all(layout.release(id)) {
                warn!(app = %app.metadata.name, release = %id, "removing the unsealed release failed: {e}");
            }
        }
    }
}

/// Fault injection for the crash tests: `SHIPSHAPE_FAULT=<before|after>:<step>[:<n>]`
/// makes the controller SIGKILL itself at the n-th (default first) such step boundary;
/// `panic:<step>[:<n>]` makes that pass panic before the step instead. Inside a step, a
/// point has its own name (`after:replace-move:<n>`: after the n-th move of a graceful replace).
pub(super) fn fault_point(when: &str, kind: &str) {
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
    if w == "panic"
        && when == "before"
        && kind == k
        && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == nth
    {
        panic!("fault injection: a panic before {kind}");
    }
    if w == when && kind == k && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        warn!(
            when,
            step = %kind,
            "fault injection: the controller kills itself here"
        );
        // SAFETY: signalling our own process, as the fault being simulated would.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// What preparing one release needs: its app, id, directory, log and secrets, and the
/// pass's pin checks (a request that stops the pass cuts an install or build short).
struct Prep<'a> {
    app: &'a App,
    release: &'a str,
    dir: &'a Path,
    log: &'a Path,
    secrets: &'a Secrets,
    stop: Option<&'a PinWatch>,
}

impl Prep<'_> {
    /// Run one install or build command in the release, with the env file, `build.env`
    /// and the `SHIPSHAPE_*` variables, its output logged with secrets masked. A pin that
    /// stops the pass kills it (its whole process group: dropping [`exec::run`] does).
    async fn run(&self, step: StepKind, command: &str) -> Result<(), StepError> {
        let build = &self.app.spec.build;
        let env = build.env.iter().map(|(k, v)| (k.clone(), v.as_text()));
        let spec = Spec::shell(command, self.dir, build.timeout.std())
            .envs(self.secrets.env.vars.clone())
            .envs(env)
            .envs(shipshape_env(self.app, self.release, self.dir))
            .redact(&self.secrets.redactor)
            .log_to(self.log);
        let stopped = async {
            match self.stop {
                Some(w) => w.stopped().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = exec::run(&spec) => r.map(|_| ()).map_err(|e| exec_error(step, e)),
            why = stopped => {
                let message = format!("stopped during {step} (its process group was killed): {why}");
                append_log_line(self.log, &format!("== {} {message}", state::now()));
                info!(app = %self.app.metadata.name, step = %step, "{message}");
                Err(StepError::new(step, ErrorClass::Superseded, message))
            }
        }
    }

    /// `build.install`, when there is one.
    async fn install(&self) -> Result<(), StepError> {
        match &self.app.spec.build.install {
            Some(cmd) => self.run(StepKind::Install, cmd).await,
            None => Ok(()),
        }
    }

    /// `build.steps`, in order.
    async fn build(&self) -> Result<(), StepError> {
        for cmd in &self.app.spec.build.steps {
            self.run(StepKind::Build, cmd).await?;
        }
        Ok(())
    }

    /// Carry `node_modules` over from release `from` (installed from the same inputs) as
    /// this release's own copy (reflinked where the filesystem can, copied otherwise), so
    /// nothing this release's build writes can reach `from`, which may be live. Both ends
    /// are resolved beneath their releases without following a symlink
    /// ([`crate::confined`]): a `node_modules` committed as a link is refused by name.
    async fn reuse_deps(&self, layout: &Layout, from: &str) -> Result<(), StepError> {
        let nm = Path::new("node_modules");
        let transient = |m: String| StepError::new(StepKind::ReuseDeps, ErrorClass::Transient, m);
        let src = match layout.open(from).and_then(|d| d.open_dir(nm)) {
            Ok(d) => d,
            // The plan saw it; it went away since. Installing here instead would run a step
            // the plan did not name: fail, and let the next pass plan an install.
            Err(e) if e.is_not_found() => {
                return Err(transient(format!(
                    "{} is gone since the plan: nothing to reuse (the next pass plans an install)",
                    layout.release(from).join(nm).display()
                )));
            }
            Err(e) => return Err(transient(format!("node_modules of release {from}: {e}"))),
        };
        let dst = crate::confined::Dir::open(self.dir, "the release")
            .map_err(|e| transient(e.to_string()))?;
        if let Err(e) = dst.remove_tree(nm) {
            return Err(confined_error(
                StepKind::ReuseDeps,
                format!("removing the incomplete {}", self.dir.join(nm).display()),
                e,
            ));
        }
        let t0 = Instant::now();
        let stats = tokio::task::spawn_blocking(move || dst.copy_tree(&src, nm))
            .await
            .expect("copy task panicked")
            .map_err(|e| {
                confined_error(
                    StepKind::ReuseDeps,
                    format!("copying node_modules from release {from}"),
                    e,
                )
            })?;
        let how = if stats.cloned == stats.files {
            "reflinked"
        } else if stats.cloned == 0 {
            "copied"
        } else {
            "partly reflinked, partly copied"
        };
        append_log_line(
            self.log,
            &format!(
                "node_modules from release {from}: {} files ({} MB) {how}, {} symlinks, in {:.1}s",
                stats.files,
                stats.bytes / 1_000_000,
                stats.symlinks,
                t0.elapsed().as_secs_f64()
            ),
        );
        info!(app = %self.app.metadata.name, from = %from, files = stats.files, cloned = stats.cloned, "node_modules {how}");
        Ok(())
    }

    /// Refuse a `build.cache` path of this release that runs through a symlink (committed
    /// to the app repo): the controller replaces those directories, so a link there would
    /// make it remove and write outside the release (`.next -> /some/dir`) or into another
    /// release (`.next -> ../<live>/.next`). Checked before every build, whether or not a
    /// cache is carried this time, so the same commit fails the same way.
    fn check_build_cache_paths(&self, layout: &Layout) -> Result<(), StepError> {
        let dst = layout
            .open(self.release)
            .map_err(|e| StepError::new(StepKind::Build, ErrorClass::Transient, e.to_string()))?;
        for dir in &self.app.spec.build.cache {
            if let Err(e) = dst.check_no_symlinks(Path::new(dir)) {
                return Err(confined_error(
                    StepKind::Build,
                    format!("build.cache {dir}"),
                    e,
                ));
            }
        }
        Ok(())
    }

    /// Give this release its own copy of release `from`'s `build.cache` directories (each
    /// reflinked or copied file by file, never shared), before its build runs. A directory
    /// `from` lacks is skipped; one already in this release (committed to git, or left by an
    /// interrupted preparation) is replaced. Every path is resolved beneath its release
    /// without following a symlink ([`crate::confined`]): a link on this release's side is
    /// an error naming it (the build fails, nothing outside is touched); any other failed
    /// copy is logged, the partial copy removed, and the build runs from scratch (a cache
    /// is an optimisation).
    async fn carry_build_cache(&self, layout: &Layout, from: &str) -> Result<(), StepError> {
        for dir in &self.app.spec.build.cache {
            let rel = Path::new(dir);
            let src = match layout.open(from).and_then(|d| d.open_dir(rel)) {
                Ok(src) => src,
                Err(e) => {
                    let why = if e.is_not_found() {
                        format!("release {from} has none")
                    } else {
                        e.to_string()
                    };
                    append_log_line(self.log, &format!("build cache {dir}: {why}; not carried"));
                    continue;
                }
            };
            let dst = layout.open(self.release).map_err(|e| {
                StepError::new(StepKind::Build, ErrorClass::Transient, e.to_string())
            })?;
            let t0 = Instant::now();
            let rel = rel.to_path_buf();
            let copied = tokio::task::spawn_blocking(move || {
                let rel = rel.as_path();
                dst.remove_tree(rel)?;
                let r = dst.copy_tree(&src, rel);
                if r.is_err() {
                    let _ = dst.remove_tree(rel);
                }
                r
            })
            .await
            .expect("copy task panicked");
            match copied {
                Ok(stats) => {
                    append_log_line(
                        self.log,
                        &format!(
                            "build cache {dir} from release {from}: {} files ({} MB, {} reflinked) in {:.1}s",
                            stats.files,
                            stats.bytes / 1_000_000,
                            stats.cloned,
                            t0.elapsed().as_secs_f64()
                        ),
                    );
                    info!(app = %self.app.metadata.name, from = %from, cache = %dir, files = stats.files, "build cache carried");
                }
                Err(e) if e.is_refusal() => {
                    return Err(confined_error(
                        StepKind::Build,
                        format!("build.cache {dir}"),
                        e,
                    ));
                }
                Err(e) => {
                    append_log_line(
                        self.log,
                        &format!(
                            "build cache {dir} from release {from} not carried: {e}; building from scratch"
                        ),
                    );
                    warn!(app = %self.app.metadata.name, from = %from, cache = %dir, "build cache not carried: {e}");
                }
            }
        }
        Ok(())
    }

    /// One after-switch hook, run in `current`.
    async fn hook(&self, command: &str, current: &Path) -> Result<(), StepError> {
        let spec = Spec::shell(command, current, self.app.spec.hooks.timeout.std())
            .envs(self.secrets.env.vars.clone())
            .envs(shipshape_env(self.app, self.release, self.dir))
            .redact(&self.secrets.redactor)
            .log_to(self.log);
        exec::run(&spec)
            .await
            .map(|_| ())
            .map_err(|e| exec_error(StepKind::Hook, e))
    }
}

/// Append a line to a revision's log (0600).
pub(super) fn append_log_line(log: &Path, line: &str) {
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

/// Write the release's build marker: it is prepared, from these inputs.
fn seal(app: &App, plan: &Plan) -> Result<(), StepError> {
    let layout = Layout::new(&app.spec.releases.root);
    let dir = layout.release(&plan.release);
    let lockfile = crate::release::lockfile_in_dir(&dir);
    let marker = build_marker(app, plan, lockfile, state::now());
    layout.seal(&plan.release, &marker).map_err(|e| {
        StepError::new(
            StepKind::Seal,
            ErrorClass::Transient,
            format!("writing the release marker: {e}"),
        )
    })
}

/// The marker sealing `plan`'s release once its preparation succeeded; `lockfile` is the
/// hash of the lockfile found in the release directory. (Pure: the planner's property test
/// seals its simulated releases with it.)
pub fn build_marker(
    app: &App,
    plan: &Plan,
    lockfile: Option<String>,
    sealed_at: Timestamp,
) -> BuildMarker {
    let installed = plan
        .steps
        .iter()
        .any(|s| matches!(s.step, Step::Install { .. } | Step::ReuseDeps { .. }));
    let deps = if installed {
        plan::deps_inputs(app, lockfile.as_deref())
    } else {
        None
    };
    BuildMarker {
        commit: app.spec.source.commit.clone(),
        inputs: plan::build_inputs(app),
        lockfile,
        deps,
        sealed_at,
    }
}

/// What the controller records once `plan`'s last hook ran (its `hooks_applied`).
pub fn hooks_record(app: &App, plan: &Plan) -> String {
    plan::hooks_hash(app, &plan.release)
}

/// The ecosystem file handed to pm2 for `app`: one entry per process, with its env.
/// (Pure: the planner's property test hands the same file to its simulated pm2.)
pub fn ecosystem_file(app: &App, env: &EnvFile) -> serde_json::Value {
    let apps: Vec<_> = app
        .spec
        .processes
        .iter()
        .map(|p| plan::ecosystem_entry(app, p, env))
        .collect();
    serde_json::json!({ "apps": apps })
}

/// [`ecosystem_file`] plus the entry a graceful replace of `process` starts under its
/// temporary name ([`plan::next_entry`]). (Pure: the simulated pm2 is handed the same file.)
pub fn ecosystem_file_with_next(
    app: &App,
    env: &EnvFile,
    process: &shipshape_spec::app::Process,
) -> serde_json::Value {
    let mut file = ecosystem_file(app, env);
    file["apps"]
        .as_array_mut()
        .expect("apps is a list")
        .push(plan::next_entry(app, process, env));
    file
}

/// Write [`ecosystem_file_with_next`] for a replace of `process` (0600: it holds env values).
pub(super) fn write_ecosystem_with_next(
    app: &App,
    path: &Path,
    env: &EnvFile,
    process: &shipshape_spec::app::Process,
) -> Result<(), StepError> {
    write_file(path, &ecosystem_file_with_next(app, env, process))
}

fn write_ecosystem(app: &App, path: &Path, env: &EnvFile) -> Result<(), StepError> {
    write_file(path, &ecosystem_file(app, env))
}

fn write_file(path: &Path, file: &serde_json::Value) -> Result<(), StepError> {
    let bytes = serde_json::to_vec_pretty(file).expect("ecosystem serializes");
    crate::release::write_atomic_mode(path, &bytes, 0o600).map_err(|e| {
        StepError::new(
            StepKind::Pm2Apply,
            ErrorClass::Transient,
            format!("writing {}: {e}", path.display()),
        )
    })
}

/// `message`, with the last line of a command's output when there is one.
pub(super) fn with_last_line(message: String, tail: Option<&str>) -> String {
    match tail.and_then(|t| t.lines().rev().map(str::trim).find(|l| !l.is_empty())) {
        Some(line) => format!("{message}: {line}"),
        None => message,
    }
}

/// A confined file operation that failed: refused (a symlink or `..` the commit put
/// there: the revision's fault, stalled) or an I/O error (transient).
fn confined_error(step: StepKind, what: String, e: crate::confined::ConfinedError) -> StepError {
    let class = if e.is_refusal() {
        ErrorClass::Stalled
    } else {
        ErrorClass::Transient
    };
    StepError::new(step, class, format!("{what}: {e}"))
}

fn exec_error(step: StepKind, e: exec::ExecError) -> StepError {
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

fn migrate_error(step: StepKind, e: crate::migrate::MigrateError) -> StepError {
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

/// A pm2 failure: transient (pm2 hiccups), with the command's output tail.
pub(super) fn pm2_error(step: StepKind, e: crate::pm2::Pm2Error) -> StepError {
    let tail = e.tail().map(str::to_string);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan chose reuse-deps from a release whose `node_modules` was there; it is gone
    /// by the time the step runs: the step fails as reuse-deps and installs nothing.
    #[tokio::test]
    async fn reuse_deps_fails_when_the_source_node_modules_vanished_and_never_installs() {
        let root = tempfile::tempdir().unwrap();
        let mut app = super::super::fixtures::app("2222222222222222222222222222222222222222");
        app.spec.releases.root = root.path().display().to_string();
        app.spec.build.install = Some("touch installed-anyway".into());
        let layout = Layout::new(root.path());
        for id in ["from", "to"] {
            std::fs::create_dir_all(layout.release(id)).unwrap();
        }
        let (dir, log) = (layout.release("to"), root.path().join("log"));
        let secrets = Secrets::default();
        let prep = Prep {
            app: &app,
            release: "to",
            dir: &dir,
            log: &log,
            secrets: &secrets,
            stop: None,
        };

        let e = prep.reuse_deps(&layout, "from").await.unwrap_err();
        assert_eq!(e.step, StepKind::ReuseDeps);
        assert_eq!(e.class, ErrorClass::Transient);
        assert!(
            e.message.contains("is gone since the plan"),
            "{}",
            e.message
        );
        assert!(!dir.join("installed-anyway").exists(), "it ran the install");
        assert!(!dir.join("node_modules").exists());

        // With the directory there, it is copied (and still nothing is installed).
        std::fs::create_dir_all(layout.release("from").join("node_modules/dep")).unwrap();
        std::fs::write(
            layout.release("from").join("node_modules/dep/index.js"),
            "x",
        )
        .unwrap();
        prep.reuse_deps(&layout, "from").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("node_modules/dep/index.js")).unwrap(),
            "x"
        );
        assert!(!dir.join("installed-anyway").exists(), "it ran the install");
    }
}

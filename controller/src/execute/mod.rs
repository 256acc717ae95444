//! The step runners: a plan's steps run in order — fetch, install or reuse dependencies,
//! build, seal, back up and migrate, switch, pm2, hooks, verify. Each step is logged to the
//! revision's log with secrets masked, recorded (kind, target, reason, time, result, output
//! tail) and journaled, and its failure classified ([`ErrorClass`]) for the decision that
//! follows. The runners reach the world only through the [`Ports`] they are handed
//! ([`Tools`]): never through the controller, its records or its events.
//!
//! # Layout
//! - this file: the loop over the steps, the dispatch of one step, the step's typed outputs
//!   (a backup's file), the ecosystem file handed to pm2, the env file's secrets;
//! - `prepare`: fetch, install, reuse-deps, build (and its cache), hooks;
//! - [`replace`]: a `pm2-replace`, graceful in cluster mode (moves decided by
//!   [`crate::plan::replace`]);
//! - [`verify`]: health rounds until the verdict, and what cancels the wait;
//! - `fault`: fault injection for the crash tests (the `fault-injection` feature only).

mod fault;
mod prepare;
pub mod replace;
mod slots;
pub mod verify;

use std::path::{Path, PathBuf};

use shipshape_spec::status::{Rounds, StepKind, StepRecord, StepResult};
use shipshape_spec::{App, Timestamp};
use tracing::{info, warn};

use crate::envfile::{EnvFile, Redactor};
use crate::exec;
use crate::plan::{self, Plan, PlannedStep, Step};
use crate::pm2::logs::Watch;
use crate::ports::Ports;
use crate::reconcile::decide::ErrorClass;
use crate::reconcile::journal::JournalFile;
use crate::release::{BuildMarker, Layout};
use crate::runtime::metrics::Metrics;

pub(crate) use fault::fault_point;
use prepare::Prep;
use verify::Cancel;

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

/// What the step runners reach the world through, and where the app's own files are.
pub struct Tools<'a> {
    /// The ports.
    pub ports: &'a Ports,
    /// The app's directory in the state directory: its journal, ecosystem file and backups.
    pub app_dir: PathBuf,
    /// CPUs (for `instances: max`).
    pub cpus: u32,
    /// dbmate, for releases that do not bring their own.
    pub dbmate: &'a Path,
    /// Where the checks' results are published.
    pub metrics: &'a Metrics,
}

impl Tools<'_> {
    fn ecosystem_path(&self) -> PathBuf {
        self.app_dir.join("ecosystem.json")
    }

    /// The file a backup step writes: `<app dir>/backups/<now>-<from level>.backup`.
    fn backup_file(&self, from: Option<&str>) -> PathBuf {
        self.app_dir.join("backups").join(format!(
            "{}-{}.backup",
            self.ports.clock.now().to_string().replace(':', ""),
            from.unwrap_or("empty")
        ))
    }

    fn health(&self) -> verify::Health<'_> {
        verify::Health {
            pm2: &*self.ports.pm2,
            probes: &*self.ports.probes,
            cpus: self.cpus,
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
    /// The file a backup step wrote, once it succeeded.
    pub backup: Option<PathBuf>,
    /// What the processes wrote since the first step that started or reloaded them (given
    /// by the caller for a verification of processes another run started): a failed
    /// verification shows it.
    pub output: Option<Watch>,
}

impl<'a> Run<'a> {
    /// A run of `plan` for `app`, nothing done yet.
    pub fn new(
        app: &'a App,
        plan: &'a Plan,
        secrets: &'a Secrets,
        log: PathBuf,
        cancel: Cancel,
        fail_fast: bool,
    ) -> Run<'a> {
        Run {
            app,
            plan,
            secrets,
            log,
            cancel,
            fail_fast,
            records: Vec::new(),
            rounds: Rounds::default(),
            failed_checks: Vec::new(),
            hooks_applied: None,
            backup: None,
            output: None,
        }
    }
}

/// Run `run.plan`'s steps in order, appending a record per step; stop at the first
/// failure. Each step's completion is journaled.
///
/// # Errors
/// The first step that failed, or a pin recorded since the pass began that stops it
/// before a step that changes live state.
pub async fn execute(tools: &Tools<'_>, run: &mut Run<'_>) -> Result<(), StepError> {
    let journal = JournalFile::new(&tools.app_dir);
    let clock = &*tools.ports.clock;
    // Requests are answered 202 while this runs (see `AppHandle::running_steps`).
    let _running = run.cancel.handle().begin_steps();
    let last_prepare = run.plan.steps.iter().rposition(|s| s.step.prepares());
    for (i, planned) in run.plan.steps.iter().enumerate() {
        let kind = planned.step.kind();
        let (started_at, t0) = (clock.now(), clock.elapsed());
        fault_point("before", kind.as_str());
        stop_for_pin(run, planned, clock)?;
        // A step's typed output, decided before it runs: the file a backup writes.
        let backup = match &planned.step {
            Step::Backup { from } => Some(tools.backup_file(from.as_deref())),
            _ => None,
        };
        let target = match &backup {
            Some(file) => file.display().to_string(),
            None => planned.step.target(),
        };
        // The log names the step as planned (a backup's file is in its record).
        let shown = planned.step.target();
        info!(app = %run.app.metadata.name, step = %kind, target = %shown, reason = %planned.reason, "step");
        let line = format!("== {} {kind} {shown} ({})", clock.now(), planned.reason);
        append_log_line(&run.log, &line);
        if run.output.is_none() && starts_processes(&planned.step) {
            run.output = Some(watch_output(tools, run.app).await);
        }
        let result = run_step(tools, run, i, planned, backup.as_deref()).await;
        // pm2's daemon may only be up now (a first start): listen to its bus from here.
        if let Some(w) = run.output.as_mut().filter(|w| w.bus.is_none())
            && starts_processes(&planned.step)
        {
            w.bus = verify::open_bus(&*tools.ports.pm2, run.app).await;
        }
        let result = match result {
            // Seal the release once its last preparation step succeeded.
            Ok(()) if Some(i) == last_prepare => seal(run.app, run.plan, clock.now()),
            Ok(()) => Ok(()),
            Err(mut e) => {
                let told =
                    starts_processes(&planned.step) && tell_app_words(tools, run, &mut e).await;
                e.message = run.secrets.redactor.redact(&e.message);
                e.tail = e.tail.map(|t| run.secrets.redactor.redact(&t));
                append_log_line(&run.log, &format!("!! {kind} failed: {}", e.message));
                let app_output = told || matches!(kind, StepKind::Verify | StepKind::SlotProve);
                if let (true, Some(t)) = (app_output, &e.tail) {
                    append_log_line(&run.log, &format!("-- the app's own output: {t}"));
                }
                Err(e)
            }
        };
        run.records.push(StepRecord {
            step: kind,
            target: target.clone(),
            reason: planned.reason.clone(),
            started_at,
            duration_ms: clock.elapsed().saturating_sub(t0).as_millis() as u64,
            result: match result {
                Ok(()) => StepResult::Succeeded,
                Err(_) => StepResult::Failed,
            },
            output_tail: result.as_ref().err().and_then(|e| e.tail.clone()),
        });
        result?;
        if backup.is_some() {
            run.backup = backup;
        }
        if let Err(e) = journal.step_done(kind, &target) {
            warn!(app = %run.app.metadata.name, journal = %journal.path().display(), "could not journal step {kind}: {e}");
        }
        fault_point("after", kind.as_str());
    }
    Ok(())
}

/// True for a step that starts or reloads pm2 processes (their output is what a failed
/// verification shows).
fn starts_processes(step: &Step) -> bool {
    matches!(
        step,
        Step::Pm2Start { .. }
            | Step::Pm2Reload { .. }
            | Step::Pm2Replace { .. }
            | Step::SlotStart { .. }
    )
}

/// A step that started processes failed (a replace's new processes crashed while
/// starting, say): add the app's own first error line to the message and its output to
/// the tail, when it wrote any since the step began and the failure carries no output of
/// its own (pm2's, for a failed command). True when it did.
async fn tell_app_words(tools: &Tools<'_>, run: &Run<'_>, e: &mut StepError) -> bool {
    let Some(watch) = &run.output else {
        return false;
    };
    if e.tail.is_some() {
        return false;
    }
    let Ok(list) = tools.ports.pm2.jlist().await else {
        return false;
    };
    let declared = |name: &str| run.app.spec.processes.iter().any(|p| p.name == name);
    let names: Vec<String> = run
        .app
        .spec
        .processes
        .iter()
        .flat_map(|p| [p.name.clone(), plan::replace::next_name(&p.name)])
        .chain(
            list.iter()
                .filter(|i| {
                    crate::traffic::parse_slot_name(&i.name).is_some_and(|(p, _)| declared(p))
                })
                .map(|i| i.name.clone()),
        )
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let said = watch.said(&names, &list);
    if let Some(line) = said
        .iter()
        .find_map(|s| crate::health::words::first_error_line(&s.err))
    {
        e.message = format!("{}; the app's error: {line}", e.message);
    }
    e.tail = crate::pm2::logs::tail(&said, None);
    e.tail.is_some()
}

/// Watch what `app`'s processes write from before they are started or reloaded: mark where
/// their log files stand (pm2 not readable: only its own log directory), listen to pm2's
/// bus when its daemon is up.
async fn watch_output(tools: &Tools<'_>, app: &App) -> Watch {
    let pm2 = &*tools.ports.pm2;
    let list = pm2.jlist_cached().await.unwrap_or_default();
    Watch {
        marks: verify::mark_logs(pm2, &list, app),
        bus: verify::open_bus(pm2, app).await,
    }
}

/// The one pin check: before a step that changes live state (verification stops on any
/// request by itself; preparation is cut short in `Prep::run`).
fn stop_for_pin(
    run: &Run<'_>,
    planned: &PlannedStep,
    clock: &dyn crate::ports::Clock,
) -> Result<(), StepError> {
    if planned.step.prepares() || planned.step == Step::Verify {
        return Ok(());
    }
    let Some(why) = run.cancel.pins.as_ref().and_then(|p| p.check()) else {
        return Ok(());
    };
    let kind = planned.step.kind();
    let message = format!("stopped before {kind}: {why}");
    info!(app = %run.app.metadata.name, step = %kind, "{message}");
    append_log_line(&run.log, &format!("== {} {message}", clock.now()));
    Err(StepError::new(kind, ErrorClass::Superseded, message))
}

/// Run one step (`backup`: the file a backup step writes).
async fn run_step(
    tools: &Tools<'_>,
    run: &mut Run<'_>,
    index: usize,
    planned: &PlannedStep,
    backup: Option<&Path>,
) -> Result<(), StepError> {
    let app = run.app;
    let layout = Layout::new(&app.spec.releases.root);
    let kind = planned.step.kind();
    match &planned.step {
        Step::Fetch { .. } | Step::Install { .. } | Step::ReuseDeps { .. } | Step::Build { .. } => {
            prepare_step(tools, run, &layout, &planned.step).await
        }
        Step::Backup { .. } | Step::Migrate { .. } | Step::Restore { .. } => {
            schema_step(tools, run, &layout, &planned.step, backup).await
        }
        Step::Switch { release } => {
            layout.switch(release).map_err(|e| {
                StepError::new(
                    kind,
                    ErrorClass::Transient,
                    format!("switching {} to {release}: {e}", layout.current().display()),
                )
            })?;
            run.hooks_applied = Some(switched_hooks_record(run.plan));
            Ok(())
        }
        Step::Pm2Start { .. }
        | Step::Pm2Reload { .. }
        | Step::Pm2Replace { .. }
        | Step::Pm2Delete { .. }
        | Step::Pm2Save => pm2_step(tools, run, &planned.step).await,
        Step::SlotStart { process, port } => slots::start(tools, run, process, *port).await,
        Step::SlotProve { port } => slots::prove(tools, run, *port).await,
        Step::TrafficSwitch { port, warm } => slots::switch(tools, run, *port, *warm).await,
        Step::SlotRetire { process, port } => slots::retire(tools, run, process, *port).await,
        Step::Hook { command } => {
            prep(tools, run, &layout.release(&run.plan.release))
                .hook(command, &layout.current())
                .await?;
            let is_last_hook = !run.plan.steps[index + 1..]
                .iter()
                .any(|s| matches!(s.step, Step::Hook { .. }));
            if is_last_hook {
                run.hooks_applied = Some(hooks_record(app, run.plan));
            }
            Ok(())
        }
        Step::Verify => {
            let (mut rounds, mut failed) = (Rounds::default(), Vec::new());
            let verifying = verify::Verifying {
                health: tools.health(),
                clock: &*tools.ports.clock,
                metrics: tools.metrics,
                fail_fast: run.fail_fast,
                output: run.output.as_ref(),
            };
            let r = verifying
                .run(app, &mut run.cancel, &mut rounds, &mut failed)
                .await;
            run.rounds = rounds;
            run.failed_checks = failed;
            r
        }
    }
}

fn prep<'a>(tools: &'a Tools<'_>, run: &'a Run<'_>, dir: &'a Path) -> Prep<'a> {
    Prep {
        commands: &*tools.ports.commands,
        app: run.app,
        release: &run.plan.release,
        dir,
        log: &run.log,
        secrets: run.secrets,
        stop: run.cancel.pins.as_ref(),
    }
}

/// Fetch, install, reuse-deps, build: in the release being prepared, never the live one.
async fn prepare_step(
    tools: &Tools<'_>,
    run: &Run<'_>,
    layout: &Layout,
    step: &Step,
) -> Result<(), StepError> {
    let dir = layout.release(&run.plan.release);
    let prep = prep(tools, run, &dir);
    match step {
        Step::Fetch { commit, .. } => {
            prepare::fetch(&*tools.ports.source, run.app, commit, &dir).await
        }
        Step::Install { .. } => prep.install().await,
        Step::ReuseDeps { from, .. } => prep.reuse_deps(layout, from).await,
        Step::Build { cache_from, .. } => {
            prep.check_build_cache_paths(layout)?;
            if let Some(from) = cache_from {
                prep.carry_build_cache(layout, from).await?;
            }
            prep.build().await
        }
        other => unreachable!("not a preparation step: {other:?}"),
    }
}

/// Backup (to `backup`), migrate, restore: the database, from the release being rolled out.
async fn schema_step(
    tools: &Tools<'_>,
    run: &Run<'_>,
    layout: &Layout,
    step: &Step,
    backup: Option<&Path>,
) -> Result<(), StepError> {
    let kind = step.kind();
    let dir = layout.release(&run.plan.release);
    let ctx = crate::observe::migrate_context(
        run.app,
        run.secrets,
        dir,
        Some(run.log.clone()),
        tools.dbmate,
        &*tools.ports.commands,
    );
    let result = match step {
        Step::Backup { .. } => ctx.backup(backup.expect("a backup's file")).await,
        Step::Migrate { .. } => ctx.migrate().await.map(|what| {
            info!(app = %run.app.metadata.name, "migrated: {what}");
        }),
        Step::Restore { backup } => ctx.restore(Path::new(backup)).await,
        other => unreachable!("not a schema step: {other:?}"),
    };
    result.map_err(|e| migrate_error(kind, e))
}

/// pm2 start, reload, replace, delete, save.
async fn pm2_step(tools: &Tools<'_>, run: &Run<'_>, step: &Step) -> Result<(), StepError> {
    let kind = step.kind();
    let pm2 = &*tools.ports.pm2;
    let eco_path = tools.ecosystem_path();
    let env = &run.secrets.env;
    match step {
        Step::Pm2Start { process } | Step::Pm2Reload { process } => {
            write_ecosystem(run.app, &eco_path, env)?;
            let r = pm2.start_or_reload(&eco_path, process).await;
            r.map_err(|e| pm2_error(kind, e))
        }
        Step::Pm2Replace { process } => {
            let replacer = replace::Replacer {
                pm2,
                clock: &*tools.ports.clock,
                cpus: tools.cpus,
            };
            replacer.replace(run.app, process, &eco_path, env).await
        }
        Step::Pm2Delete { process } => pm2.delete(process).await.map_err(|e| pm2_error(kind, e)),
        Step::Pm2Save => pm2.save().await.map_err(|e| pm2_error(kind, e)),
        other => unreachable!("not a pm2 step: {other:?}"),
    }
}

/// Append a line to a revision's log (0600).
pub(crate) fn append_log_line(log: &Path, line: &str) {
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
pub(super) fn shipshape_env(app: &App, release: &str, dir: &Path) -> Vec<(String, String)> {
    vec![
        ("SHIPSHAPE_APP".into(), app.metadata.name.clone()),
        ("SHIPSHAPE_COMMIT".into(), app.spec.source.commit.clone()),
        ("SHIPSHAPE_RELEASE".into(), release.to_string()),
        ("SHIPSHAPE_RELEASE_DIR".into(), dir.display().to_string()),
    ]
}

/// Write the release's build marker: it is prepared, from these inputs.
fn seal(app: &App, plan: &Plan, sealed_at: Timestamp) -> Result<(), StepError> {
    let layout = Layout::new(&app.spec.releases.root);
    let dir = layout.release(&plan.release);
    let lockfile = crate::release::lockfile_in_dir(&dir);
    let marker = build_marker(app, plan, lockfile, sealed_at);
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

/// What the controller records once `plan`'s switch moved `current`: no hook has run in the
/// newly live release yet. (Hooks that ran for the same release before it last went live —
/// `current` moved away by hand and back — do not count as run since: without this, a
/// switch back with no hooks declared left their record in place, and hooks declared again
/// afterwards never ran.)
pub fn switched_hooks_record(plan: &Plan) -> String {
    plan::hooks_hash_of(&[], &plan.release)
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
pub(crate) fn write_ecosystem_with_next(
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
pub(crate) fn with_last_line(message: String, tail: Option<&str>) -> String {
    match tail.and_then(|t| t.lines().rev().map(str::trim).find(|l| !l.is_empty())) {
        Some(line) => format!("{message}: {line}"),
        None => message,
    }
}

/// A confined file operation that failed: refused (a symlink or `..` the commit put
/// there: the revision's fault, stalled) or an I/O error (transient).
pub(super) fn confined_error(
    step: StepKind,
    what: String,
    e: crate::confined::ConfinedError,
) -> StepError {
    let class = if e.is_refusal() {
        ErrorClass::Stalled
    } else {
        ErrorClass::Transient
    };
    StepError::new(step, class, format!("{what}: {e}"))
}

pub(super) fn exec_error(step: StepKind, e: exec::ExecError) -> StepError {
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

pub(super) fn migrate_error(step: StepKind, e: crate::migrate::MigrateError) -> StepError {
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
pub(crate) fn pm2_error(step: StepKind, e: crate::pm2::Pm2Error) -> StepError {
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

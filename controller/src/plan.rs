//! The planner: a pure function from (desired, observed) to the ordered, minimal steps
//! that converge the server, each with the reason it is needed. No I/O happens here;
//! `shipshape plan` prints its output and the reconciler executes it.
//!
//! # Order
//! [`plan`] is an ordered list of sections (`SECTIONS`), each a small function that adds
//! its steps (and blockers or notes) to the plan in turn:
//!
//! 1. **prepare** (fetch, install or reuse-deps, build) never touches the live release;
//! 2. **migrations** (backup, migrate);
//! 3. **switch** `current`;
//! 4. **processes**: start, replace or reload each declared pm2 process;
//! 5. **stale**: delete the processes no longer declared;
//! 6. **save** pm2's dump when its list changed;
//! 7. **hooks**: run the after-switch hooks;
//! 8. **verify** health.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use shipshape_spec::app::{App, ExecMode, Instances, Process};
use shipshape_spec::status::StepKind;

use crate::envfile::EnvFile;
use crate::migrate::{can_go_down, level_key};
use crate::pm2::{ENV_APP, ENV_COMMIT, ENV_CONFIG, ENV_KEYS, ENV_SHAPE, Instance, Status};
use crate::release::BuildMarker;

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    /// Write the app's source at `commit` into the release directory.
    Fetch {
        /// Release id.
        release: String,
        /// App commit.
        commit: String,
    },
    /// Run `build.install` in the release.
    Install {
        /// Release id.
        release: String,
    },
    /// Give the release its own copy of `node_modules` (reflinked where the filesystem can,
    /// copied otherwise: never shared with the release it comes from) from a prepared release
    /// installed from the same lockfile.
    ReuseDeps {
        /// Release id.
        release: String,
        /// The release whose `node_modules` is reused.
        from: String,
    },
    /// Run `build.steps` in the release; first, when `cache_from` is set, give it its own
    /// copy of that release's `build.cache` directories (reflinked or copied, never shared).
    Build {
        /// Release id.
        release: String,
        /// The release whose build caches are carried over (same app, same dependencies).
        #[serde(rename = "cacheFrom", skip_serializing_if = "Option::is_none")]
        cache_from: Option<String>,
    },
    /// Run `migrations.backup` before migrating.
    Backup {
        /// The level being left.
        from: Option<String>,
    },
    /// Migrate the database to the document's level (under the advisory lock).
    Migrate {
        /// The level now (`None`: empty database).
        from: Option<String>,
        /// The desired level.
        to: String,
    },
    /// Restore the database backup a reverted revision took (`onRevert: restore`).
    /// Only a revert plans it.
    Restore {
        /// The backup file.
        backup: String,
    },
    /// Point `current` at the release.
    Switch {
        /// Release id.
        release: String,
    },
    /// `pm2 startOrReload` for a process that is missing or whose env/code changed.
    Pm2Start {
        /// Process name.
        process: String,
    },
    /// Graceful reload of a running process (env or code changed, or instances down).
    Pm2Reload {
        /// Process name.
        process: String,
    },
    /// New processes for what a reload cannot change (instances, exec_mode, script/args/pm2
    /// options, a removed env variable), or to finish a replace a crash interrupted. In
    /// cluster mode graceful (the new config starts as `NAME~next`, the old processes stop
    /// once it is ready, then `NAME` is started again: [`replace`]); in fork mode, or
    /// across a fork/cluster switch, delete and start again.
    Pm2Replace {
        /// Process name.
        process: String,
    },
    /// Delete a process the controller started that is no longer declared.
    Pm2Delete {
        /// Process name.
        process: String,
    },
    /// `pm2 save`.
    Pm2Save,
    /// Run one after-switch hook.
    Hook {
        /// The command.
        command: String,
    },
    /// Wait for the health checks to pass `successThreshold` rounds in a row.
    Verify,
}

impl Step {
    /// The step's kind as recorded and shown (`fetch`, `pm2-reload` …).
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Fetch { .. } => StepKind::Fetch,
            Step::Install { .. } => StepKind::Install,
            Step::ReuseDeps { .. } => StepKind::ReuseDeps,
            Step::Backup { .. } => StepKind::Backup,
            Step::Migrate { .. } => StepKind::Migrate,
            Step::Restore { .. } => StepKind::Restore,
            Step::Build { .. } => StepKind::Build,
            Step::Switch { .. } => StepKind::Switch,
            Step::Pm2Start { .. } => StepKind::Pm2Start,
            Step::Pm2Reload { .. } => StepKind::Pm2Reload,
            Step::Pm2Replace { .. } => StepKind::Pm2Replace,
            Step::Pm2Delete { .. } => StepKind::Pm2Delete,
            Step::Pm2Save => StepKind::Pm2Save,
            Step::Hook { .. } => StepKind::Hook,
            Step::Verify => StepKind::Verify,
        }
    }

    /// What the step acts on.
    pub fn target(&self) -> String {
        match self {
            Step::Fetch { release, .. }
            | Step::Install { release }
            | Step::Build {
                release,
                cache_from: None,
            }
            | Step::Switch { release } => release.clone(),
            Step::Build {
                release,
                cache_from: Some(from),
            } => format!("{} (cache ← {})", short_sha(release), short_sha(from)),
            Step::ReuseDeps { release, from } => {
                format!("{} ← {}", short_sha(release), short_sha(from))
            }
            Step::Backup { from } => from.clone().unwrap_or_else(|| "(empty)".into()),
            Step::Restore { backup } => backup.clone(),
            Step::Migrate { from, to } => {
                format!("{} → {to}", from.as_deref().unwrap_or("(empty)"))
            }
            Step::Pm2Start { process }
            | Step::Pm2Reload { process }
            | Step::Pm2Replace { process }
            | Step::Pm2Delete { process } => process.clone(),
            Step::Hook { command } => command.clone(),
            Step::Pm2Save | Step::Verify => String::new(),
        }
    }

    /// True for steps that change what is live (after them, health must be verified).
    pub fn changes_live(&self) -> bool {
        !matches!(
            self,
            Step::Fetch { .. }
                | Step::Install { .. }
                | Step::ReuseDeps { .. }
                | Step::Build { .. }
                | Step::Backup { .. }
                | Step::Verify
        )
    }

    /// True for the steps that prepare a release (before anything live changes).
    pub fn prepares(&self) -> bool {
        matches!(
            self,
            Step::Fetch { .. } | Step::Install { .. } | Step::ReuseDeps { .. } | Step::Build { .. }
        )
    }
}

/// A step and why it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStep {
    /// The step.
    #[serde(flatten)]
    pub step: Step,
    /// Why, in words.
    pub reason: String,
}

/// The ordered steps for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The release the plan makes live.
    pub release: String,
    /// The steps, in execution order. Empty when observed equals desired.
    pub steps: Vec<PlannedStep>,
    /// Conflicts that stop the plan from running (a person must act).
    pub blockers: Vec<String>,
    /// Things worth knowing that need no step (e.g. a database ahead of the document).
    pub notes: Vec<String>,
}

impl Plan {
    /// True when nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.blockers.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.blockers {
            writeln!(f, "  BLOCKED  {b}")?;
        }
        for n in &self.notes {
            writeln!(f, "  note     {n}")?;
        }
        if self.steps.is_empty() && self.blockers.is_empty() {
            return writeln!(f, "  (nothing to do: observed state matches desired)");
        }
        for (i, s) in self.steps.iter().enumerate() {
            let target = s.step.target();
            writeln!(
                f,
                "  {:>2}. {:<12} {:<44} {}",
                i + 1,
                s.step.kind(),
                short(&target, 44),
                s.reason
            )?;
        }
        Ok(())
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n - 1).collect();
        format!("{cut}…")
    }
}

/// What the server looks like, as far as planning is concerned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The release `current` points at.
    pub current: Option<String>,
    /// Release directories, with their marker when sealed.
    pub releases: BTreeMap<String, Option<BuildMarker>>,
    /// The sealed releases whose `node_modules` directory is on disk: the only ones
    /// `reuse-deps` may copy from (an install of a lockfile without dependencies leaves
    /// none, and a hand may have removed one).
    pub node_modules: BTreeSet<String>,
    /// The sealed releases that hold at least one of the document's `build.cache`
    /// directories: the only ones a build may carry its cache from.
    pub build_caches: BTreeSet<String>,
    /// Every pm2 instance (ours and others').
    pub processes: Vec<Instance>,
    /// Hash of the hooks (and the release they ran for) last run, from the records.
    pub hooks_applied: Option<String>,
    /// CPUs, for `instances: max`.
    pub cpus: u32,
    /// Hash of the lockfile at the desired commit (`None`: no lockfile, or not readable).
    pub desired_lockfile: Option<String>,
    /// The database's migration level.
    pub migration: MigrationState,
    /// The server's env file (its values feed process env; never printed).
    pub env_file: EnvFile,
}

/// What is known of the database's migration level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MigrationState {
    /// The document declares no migrations.
    #[default]
    NotManaged,
    /// The level read from the database (`None`: nothing applied yet).
    At(Option<String>),
    /// It could not be read (the reason, secrets masked).
    Unreadable(String),
}

/// A stable hex hash of a JSON value.
pub fn hash_json(v: &serde_json::Value) -> String {
    let digest = Sha256::digest(serde_json::to_vec(v).expect("json serializes"));
    hex::encode(&digest[..12])
}

/// The hash of everything a build depends on besides the lockfile.
pub fn build_inputs(app: &App) -> String {
    let b = &app.spec.build;
    hash_json(&serde_json::json!({
        "commit": app.spec.source.commit,
        "install": b.install,
        "steps": b.steps,
        "env": b.env,
    }))
}

/// The hash of what `node_modules` is installed from; `None` when it cannot be matched
/// (no install command, or no lockfile).
pub fn deps_inputs(app: &App, lockfile: Option<&str>) -> Option<String> {
    let install = app.spec.build.install.as_ref()?;
    let lockfile = lockfile?;
    Some(hash_json(&serde_json::json!({
        "lockfile": lockfile,
        "install": install,
        "env": app.spec.build.env,
    })))
}

/// The hash identifying the hooks to run for `release`.
pub fn hooks_hash(app: &App, release: &str) -> String {
    hooks_hash_of(&app.spec.hooks.after_switch, release)
}

/// The hash identifying `hooks` run for `release`.
pub fn hooks_hash_of(hooks: &[String], release: &str) -> String {
    hash_json(&serde_json::json!({ "hooks": hooks, "release": release }))
}

/// The pm2 ecosystem entry for `process`, with the controller's marker variables.
/// Paths resolve under `<root>/current`, so a reload picks up a switched release.
pub fn ecosystem_entry(app: &App, process: &Process, env_file: &EnvFile) -> serde_json::Value {
    let current = format!("{}/current", app.spec.releases.root.trim_end_matches('/'));
    let cwd = match &process.cwd {
        Some(sub) => format!("{current}/{}", sub.trim_start_matches("./")),
        None => current,
    };
    let mut entry = serde_json::to_value(process).expect("process serializes");
    {
        let obj = entry.as_object_mut().expect("process is an object");
        obj.remove("env");
        obj.insert("cwd".into(), cwd.into());
        obj.insert("vizion".into(), false.into());
        obj.entry("exec_mode").or_insert_with(|| "fork".into());
    }
    let shape = hash_json(&entry);
    // The env file first; what the document declares wins.
    let mut env: BTreeMap<String, String> = env_file.vars.clone();
    env.extend(process.env.iter().map(|(k, v)| (k.clone(), v.as_text())));
    let declared: Vec<String> = env.keys().cloned().collect();
    env.insert(ENV_KEYS.into(), declared.join(","));
    env.insert(ENV_APP.into(), app.metadata.name.clone());
    env.insert(ENV_COMMIT.into(), app.spec.source.commit.clone());
    env.insert(ENV_SHAPE.into(), shape);
    let config = hash_json(&serde_json::json!({ "entry": &entry, "env": &env }));
    env.insert(ENV_CONFIG.into(), config);
    entry.as_object_mut().expect("process is an object").insert(
        "env".into(),
        serde_json::to_value(env).expect("env serializes"),
    );
    entry
}

/// The ecosystem entry a graceful replace starts `process` from under its temporary name
/// ([`replace::next_name`]): the declared entry, renamed, with the same env and markers (so
/// it is recognised as this app's, running this config).
pub fn next_entry(app: &App, process: &Process, env_file: &EnvFile) -> serde_json::Value {
    let mut entry = ecosystem_entry(app, process, env_file);
    entry
        .as_object_mut()
        .expect("process is an object")
        .insert("name".into(), replace::next_name(&process.name).into());
    entry
}

/// The hash of all processes' config, for revision records.
pub fn processes_hash(app: &App, env_file: &EnvFile) -> String {
    let entries: Vec<_> = app
        .spec
        .processes
        .iter()
        .map(|p| ecosystem_entry(app, p, env_file))
        .collect();
    hash_json(&serde_json::Value::Array(entries))
}

/// The instance count pm2 runs for `p` on a machine with `cpus` CPUs.
pub fn expected_instances(p: &Process, cpus: u32) -> u32 {
    match p.instances {
        Some(Instances::Count(n)) => n,
        Some(Instances::Max(_)) => cpus.max(1),
        None => 1,
    }
}

/// The release id to prepare for `app`: a sealed release built from the same inputs if
/// one exists; else `<commit>` unless that name is taken by a live or differently-built
/// release, in which case `<commit>-<inputs>`.
pub fn choose_release(app: &App, observed: &Observed) -> (String, bool) {
    let commit = &app.spec.source.commit;
    let inputs = build_inputs(app);
    if let Some((id, _)) = observed.releases.iter().find(|(_, m)| {
        m.as_ref()
            .is_some_and(|m| &m.commit == commit && m.inputs == inputs)
    }) {
        return (id.clone(), true);
    }
    let plain = commit.clone();
    let taken = match observed.releases.get(&plain) {
        None => false,
        Some(None) => observed.current.as_deref() == Some(&plain),
        Some(Some(_)) => true,
    };
    if taken {
        (format!("{commit}-{}", &inputs[..8]), false)
    } else {
        (plain, false)
    }
}

/// A plan while its sections build it: the inputs, what the sections decided that later
/// ones read (the release, whether `current` moves, whether pm2's list changed) and the
/// plan so far.
struct Planner<'a> {
    desired: &'a App,
    observed: &'a Observed,
    /// The release the plan makes live, and whether it is already prepared (sealed).
    release: String,
    sealed: bool,
    /// `current` does not point at `release` yet.
    switching: bool,
    /// A pm2 step was planned: pm2's list must be saved.
    pm2_changed: bool,
    steps: Vec<PlannedStep>,
    blockers: Vec<String>,
    notes: Vec<String>,
}

impl Planner<'_> {
    fn push(&mut self, step: Step, reason: impl Into<String>) {
        self.steps.push(PlannedStep {
            step,
            reason: reason.into(),
        });
    }
}

/// The plan's sections, in the order their steps run (see the module's "Order").
const SECTIONS: [fn(&mut Planner); 8] = [
    prepare, migrations, switch, processes, stale, save, hooks, verify,
];

/// Compute the plan that takes `observed` to `desired`: each of the `SECTIONS` in turn.
///
/// 1. `prepare`: fetch, install or reuse-deps, build, unless a sealed release of the same
///    inputs exists;
/// 2. `migrations`: backup and migrate up, or down when the driver can (a blocker when the
///    level cannot be read, a note when the database is ahead and stays so);
/// 3. `switch`: point `current` at the release;
/// 4. `processes`: start, replace or reload each declared process (a blocker for a
///    process of that name someone else started);
/// 5. `stale`: delete this app's processes no longer declared;
/// 6. `save`: `pm2 save` when the list changed;
/// 7. `hooks`: the after-switch hooks, when the release switched or they have not run
///    for it;
/// 8. `verify`: the health checks, after anything that changed what is live.
pub fn plan(desired: &App, observed: &Observed) -> Plan {
    let (release, sealed) = choose_release(desired, observed);
    let switching = observed.current.as_deref() != Some(release.as_str());
    let mut planner = Planner {
        desired,
        observed,
        release,
        sealed,
        switching,
        pm2_changed: false,
        steps: Vec::new(),
        blockers: Vec::new(),
        notes: Vec::new(),
    };
    for section in SECTIONS {
        section(&mut planner);
    }
    Plan {
        release: planner.release,
        steps: planner.steps,
        blockers: planner.blockers,
        notes: planner.notes,
    }
}

/// Fetch, install (or reuse-deps) and build a release, unless it is sealed already.
fn prepare(pl: &mut Planner) {
    if pl.sealed {
        return;
    }
    let (desired, observed, release) = (pl.desired, pl.observed, pl.release.clone());
    let spec = &desired.spec;
    let why = match observed.releases.get(&release) {
        Some(None) => format!(
            "release {} is incomplete (interrupted preparation)",
            short_sha(&release)
        ),
        _ => format!(
            "no release of {} built from these inputs",
            short_sha(&spec.source.commit)
        ),
    };
    pl.push(
        Step::Fetch {
            release: release.clone(),
            commit: spec.source.commit.clone(),
        },
        why,
    );
    let mut deps_from = None;
    if spec.build.install.is_some() {
        let (step, why) = plan_dependencies(desired, observed, &release);
        if let Step::ReuseDeps { from, .. } = &step {
            deps_from = Some(from.clone());
        }
        pl.push(step, why);
    }
    if !spec.build.steps.is_empty() {
        let (cache_from, why) = plan_build_cache(desired, observed, &release, deps_from);
        pl.push(
            Step::Build {
                release,
                cache_from,
            },
            why,
        );
    }
}

/// Bring the database to the document's level.
fn migrations(pl: &mut Planner) {
    let Some(m) = &pl.desired.spec.migrations else {
        return;
    };
    let level = match &pl.observed.migration {
        MigrationState::Unreadable(e) => {
            pl.blockers
                .push(format!("cannot read the migration level: {e}"));
            return;
        }
        MigrationState::NotManaged => {
            pl.blockers
                .push("the migration level was not observed".into());
            return;
        }
        MigrationState::At(level) => level,
    };
    let want = level_key(m.driver, &m.level);
    let have = level.as_deref().map(|l| level_key(m.driver, l));
    let shown = level.clone().unwrap_or_else(|| "(empty)".into());
    let migrate = Step::Migrate {
        from: level.clone(),
        to: m.level.clone(),
    };
    if have.as_deref() == Some(want.as_str()) {
        // Already there.
    } else if have.as_ref().is_none_or(|h| *h < want) {
        if m.backup.is_some() {
            pl.push(
                Step::Backup {
                    from: level.clone(),
                },
                format!("before migrating up from {shown}"),
            );
        }
        pl.push(migrate, format!("level {shown} < {}", m.level));
    } else if can_go_down(m) {
        pl.push(
            migrate,
            format!(
                "level {shown} > {}: the document asks for a lower level",
                m.level
            ),
        );
    } else {
        pl.notes.push(format!(
            "the database is at {shown}, ahead of {}; this driver cannot migrate down, so it is left as it is",
            m.level
        ));
    }
}

/// Point `current` at the release.
fn switch(pl: &mut Planner) {
    if !pl.switching {
        return;
    }
    let reason = match &pl.observed.current {
        None => "nothing is live yet".to_string(),
        Some(cur) => format!(
            "current is {}, desired {}",
            short_sha(cur),
            short_sha(&pl.release)
        ),
    };
    pl.push(
        Step::Switch {
            release: pl.release.clone(),
        },
        reason,
    );
}

/// Start, replace or reload each declared process whose instances differ from the
/// document; a process of that name someone else started blocks the plan.
fn processes(pl: &mut Planner) {
    for p in &pl.desired.spec.processes {
        match process_step(pl, p) {
            Err(blocker) => pl.blockers.push(blocker),
            Ok(Some((step, why))) => {
                pl.push(step, why);
                pl.pm2_changed = true;
            }
            Ok(None) => {}
        }
    }
}

/// What pm2 runs of one declared process: its instances, and what an interrupted replace
/// left under the temporary name.
struct Running<'a> {
    instances: Vec<&'a Instance>,
    temps: Vec<&'a Instance>,
}

impl<'a> Running<'a> {
    fn of(observed: &'a Observed, p: &Process) -> Running<'a> {
        let named = |name: &str| -> Vec<&'a Instance> {
            observed
                .processes
                .iter()
                .filter(|i| i.name == name)
                .collect()
        };
        Running {
            instances: named(&p.name),
            // What a replace interrupted by a crash left under the temporary name.
            temps: named(&replace::next_name(&p.name)),
        }
    }
}

/// The one step process `p` needs, if any, and why; `Err` with the blocker when a process
/// of its name (or its temporary name) is someone else's.
fn process_step(pl: &Planner, p: &Process) -> Result<Option<(Step, String)>, String> {
    let app = pl.desired.metadata.name.as_str();
    let Running { instances, temps } = Running::of(pl.observed, p);
    if let Some(other) = instances
        .iter()
        .chain(&temps)
        .find(|i| i.app() != Some(app))
    {
        return Err(format!(
            "pm2 process {:?} exists but was not started by shipshape for app {:?}; delete or rename it",
            other.name, app
        ));
    }
    let name = p.name.clone();
    let next = replace::next_name(&p.name);
    let how = replace_how(p, &instances, &temps);
    if instances.is_empty() {
        return Ok(Some(if temps.is_empty() {
            (
                Step::Pm2Start { process: name },
                "not running in pm2".into(),
            )
        } else {
            (
                Step::Pm2Replace { process: name },
                format!("an interrupted replace left only {next} running{how}"),
            )
        }));
    }
    let entry = ecosystem_entry(pl.desired, p, &pl.observed.env_file);
    let env = &entry["env"];
    let replace_why = shape_change(p, &instances, env, pl.observed.cpus)
        .or_else(|| removed_env(&instances, env))
        .or_else(|| {
            (!temps.is_empty()).then(|| format!("an interrupted replace left {next} running"))
        });
    if let Some(why) = replace_why {
        return Ok(Some((
            Step::Pm2Replace { process: name },
            format!("{why}{how}"),
        )));
    }
    Ok(reload_reason(pl, &instances, env).map(|why| (Step::Pm2Reload { process: name }, why)))
}

/// Why `p`'s instances need a replace for what a reload cannot change (their count,
/// exec_mode, or script, args and pm2 options), if they do.
fn shape_change(
    p: &Process,
    instances: &[&Instance],
    env: &serde_json::Value,
    cpus: u32,
) -> Option<String> {
    let want_shape = env[ENV_SHAPE].as_str().unwrap_or_default();
    let want_count = expected_instances(p, cpus);
    let want_mode = replace::pm2_mode(p.exec_mode.unwrap_or_default());
    let shape_same = instances
        .iter()
        .all(|i| i.env.get(ENV_SHAPE).map(String::as_str) == Some(want_shape))
        && instances.len() as u32 == want_count
        && instances.iter().all(|i| i.exec_mode == want_mode);
    if shape_same {
        None
    } else if instances.len() as u32 != want_count {
        Some(format!("instances {} → {}", instances.len(), want_count))
    } else if instances[0].exec_mode != want_mode {
        Some(format!(
            "exec_mode {} → {}",
            instances[0].exec_mode, want_mode
        ))
    } else {
        Some("script, args or pm2 options changed (a reload cannot apply them)".to_string())
    }
}

/// Why the instances need a replace because the document dropped env variables, if it did:
/// pm2 merges env on reload, so a dropped variable would survive it. What we declared last
/// time is recorded in the process's own env.
fn removed_env(instances: &[&Instance], env: &serde_json::Value) -> Option<String> {
    let want_keys: BTreeSet<&str> = env[ENV_KEYS]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .collect();
    let removed: BTreeSet<&str> = instances
        .iter()
        .filter_map(|i| i.env.get(ENV_KEYS))
        .flat_map(|keys| keys.split(',').filter(|k| !k.is_empty()))
        .filter(|k| !want_keys.contains(k))
        .collect();
    if removed.is_empty() {
        return None;
    }
    let names: Vec<&str> = removed.into_iter().collect();
    Some(format!(
        "env {} removed (a pm2 reload would keep it)",
        names.join(", ")
    ))
}

/// Why the instances (of the right shape) need a reload, if they do: their code or env
/// changed, some are not online, or `current` was moved.
fn reload_reason(pl: &Planner, instances: &[&Instance], env: &serde_json::Value) -> Option<String> {
    let commit = &pl.desired.spec.source.commit;
    let want_config = env[ENV_CONFIG].as_str().unwrap_or_default();
    let config_same = instances
        .iter()
        .all(|i| i.env.get(ENV_CONFIG).map(String::as_str) == Some(want_config));
    let down: Vec<&&Instance> = instances
        .iter()
        .filter(|i| i.status != Status::Online)
        .collect();
    if !config_same {
        let old_commit = instances[0]
            .env
            .get(ENV_COMMIT)
            .cloned()
            .unwrap_or_default();
        Some(if &old_commit != commit {
            format!("code {} → {}", short_sha(&old_commit), short_sha(commit))
        } else {
            "env changed".to_string()
        })
    } else if !down.is_empty() {
        Some(format!(
            "{} of {} instances not online ({})",
            down.len(),
            instances.len(),
            down[0].status
        ))
    } else if pl.switching {
        // `current` was moved by hand: a process restarted meanwhile runs the other
        // release's code, so reload to be sure every instance runs this one.
        Some("current was moved; reload so every instance runs this release".into())
    } else {
        None
    }
}

/// Delete this app's processes the document no longer declares (a temporary `NAME~next`
/// of a declared process is the replace's to finish).
fn stale(pl: &mut Planner) {
    let declared: BTreeSet<&str> = pl
        .desired
        .spec
        .processes
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let app = pl.desired.metadata.name.as_str();
    let stale: BTreeSet<&str> = pl
        .observed
        .processes
        .iter()
        .filter(|i| {
            let replacing =
                replace::replaced_process(&i.name).is_some_and(|n| declared.contains(n));
            i.app() == Some(app) && !declared.contains(i.name.as_str()) && !replacing
        })
        .map(|i| i.name.as_str())
        .collect();
    for name in stale {
        pl.push(
            Step::Pm2Delete {
                process: name.to_string(),
            },
            "no longer declared",
        );
        pl.pm2_changed = true;
    }
}

/// `pm2 save` once the process list changed, so a reboot resurrects this one.
fn save(pl: &mut Planner) {
    if pl.pm2_changed {
        pl.push(Step::Pm2Save, "pm2 process list changed");
    }
}

/// The after-switch hooks, when the release switched or they have not run for it.
fn hooks(pl: &mut Planner) {
    let after_switch = &pl.desired.spec.hooks.after_switch;
    if after_switch.is_empty() {
        return;
    }
    let want = hooks_hash(pl.desired, &pl.release);
    if !pl.switching && pl.observed.hooks_applied.as_deref() == Some(want.as_str()) {
        return;
    }
    let why = if pl.switching {
        "release switched"
    } else {
        "hooks changed or never ran for this release"
    };
    for command in after_switch {
        pl.push(
            Step::Hook {
                command: command.clone(),
            },
            why,
        );
    }
}

/// Verify health after anything that changed what is live.
fn verify(pl: &mut Planner) {
    if pl.steps.iter().any(|s| s.step.changes_live()) {
        let health = &pl.desired.spec.health;
        pl.push(
            Step::Verify,
            format!(
                "{} passing rounds within {}",
                health.success_threshold, health.progress_deadline
            ),
        );
    }
}

/// How a replace of `p` will go, for its reason: graceful in cluster mode (the new
/// processes start under a temporary name beside the old ones), delete-then-start otherwise.
fn replace_how(p: &Process, instances: &[&Instance], temps: &[&Instance]) -> String {
    let mode = p.exec_mode.unwrap_or_default();
    if replace::graceful(mode, instances.iter().chain(temps).copied()) {
        format!(
            "; graceful: the new processes start as {} and take connections before the old ones stop",
            replace::next_name(&p.name)
        )
    } else if mode == ExecMode::Fork
        && instances
            .iter()
            .chain(temps)
            .all(|i| i.exec_mode == "fork_mode")
    {
        " (fork mode: not graceful, requests are dropped during the restart)".into()
    } else {
        " (fork and cluster mode cannot share the port: not graceful, requests are dropped during the restart)".into()
    }
}

/// Install, or reuse the `node_modules` of a prepared release installed from the same
/// inputs whose `node_modules` is on disk (a matching release without one gives nothing to
/// reuse: install, and say so).
fn plan_dependencies(desired: &App, observed: &Observed, release: &str) -> (Step, String) {
    let install = Step::Install {
        release: release.to_string(),
    };
    let Some(want) = deps_inputs(desired, observed.desired_lockfile.as_deref()) else {
        return (
            install,
            "no lockfile to match prepared releases against".into(),
        );
    };
    let sealed: Vec<(&String, &BuildMarker)> = observed
        .releases
        .iter()
        .filter_map(|(id, m)| m.as_ref().map(|m| (id, m)))
        .filter(|(id, _)| id.as_str() != release)
        .collect();
    let same: Vec<&String> = sealed
        .iter()
        .filter(|(_, m)| m.deps.as_deref() == Some(want.as_str()))
        .map(|(id, _)| *id)
        .collect();
    if let Some(from) = same.iter().find(|id| observed.node_modules.contains(**id)) {
        return (
            Step::ReuseDeps {
                release: release.to_string(),
                from: from.to_string(),
            },
            format!("lockfile unchanged since release {}", short_sha(from)),
        );
    }
    if let Some(from) = same.first() {
        return (
            install,
            format!(
                "release {} was installed from this lockfile, but it has no node_modules to reuse",
                short_sha(from)
            ),
        );
    }
    let live_lock = observed
        .current
        .as_ref()
        .and_then(|c| observed.releases.get(c))
        .and_then(|m| m.as_ref())
        .and_then(|m| m.lockfile.clone());
    let why = match (live_lock, observed.desired_lockfile.as_deref()) {
        (Some(old), Some(new)) if old != new => format!("lockfile changed ({old} → {new})"),
        _ if sealed.is_empty() => "new release needs its dependencies".to_string(),
        _ => "no prepared release was installed from this lockfile and install command".to_string(),
    };
    (install, why)
}

/// Where a new release's build may carry its `build.cache` directories from, and the build
/// step's reason.
///
/// # The rule
/// Only from a sealed release of this app installed from the same dependencies (the same
/// lockfile, install command and build env: what `reuse-deps` matches on), and only one
/// that holds a cache: the live release when it qualifies, else the release the
/// dependencies are reused from, else any other that qualifies. A dependency change
/// (or no lockfile to compare, or no install command) builds from scratch: a cache written
/// against other dependencies is not trusted.
fn plan_build_cache(
    desired: &App,
    observed: &Observed,
    release: &str,
    deps_from: Option<String>,
) -> (Option<String>, String) {
    let base = "new release needs its build";
    let cache = &desired.spec.build.cache;
    if cache.is_empty() {
        return (None, base.into());
    }
    let Some(want) = deps_inputs(desired, observed.desired_lockfile.as_deref()) else {
        return (
            None,
            format!("{base}; no build cache carried (no lockfile or install to match releases on)"),
        );
    };
    let same_deps = |id: &String| {
        id != release
            && observed.build_caches.contains(id)
            && observed
                .releases
                .get(id)
                .and_then(|m| m.as_ref())
                .is_some_and(|m| m.deps.as_deref() == Some(want.as_str()))
    };
    let from = observed
        .current
        .iter()
        .chain(deps_from.iter())
        .chain(observed.releases.keys())
        .find(|id| same_deps(id));
    match from {
        Some(from) => (
            Some(from.clone()),
            format!(
                "{base}; {} carried from release {} (same dependencies)",
                cache.join(", "),
                short_sha(from)
            ),
        ),
        None => (
            None,
            format!(
                "{base}; no build cache carried (no release with these dependencies has {})",
                cache.join(", ")
            ),
        ),
    }
}

/// The first 12 characters of a SHA-like id (whole when shorter): the one short form of a
/// commit everywhere (plans, records' messages, `shipshape status`, `history`, `fleet`).
pub fn short_sha(s: &str) -> String {
    s.chars().take(12).collect()
}

pub mod replace;

#[cfg(test)]
mod sim;

#[cfg(test)]
mod tests {
    use super::*;
    use shipshape_spec::app::{EnvValue, MigrationDriver};

    const C1: &str = "1111111111111111111111111111111111111111";
    const C2: &str = "2222222222222222222222222222222222222222";
    const C3: &str = "3333333333333333333333333333333333333333";
    const LOCK_A: &str = "aaaaaaaaaaaa";
    const LOCK_B: &str = "bbbbbbbbbbbb";

    /// The fixture: a cluster of 2, one hook, and (optionally) dbmate migrations at `level`.
    fn app(commit: &str) -> App {
        app_at(commit, None)
    }

    fn app_at(commit: &str, level: Option<&str>) -> App {
        let migrations = match level {
            Some(l) => format!(
                "  envFile: /etc/demo/env\n  migrations: {{ driver: dbmate, level: \"{l}\", backup: pg_dump -Fc -f \"$SHIPSHAPE_BACKUP_FILE\" }}\n"
            ),
            None => String::new(),
        };
        let text = format!(
            r#"
apiVersion: shipshape/v1alpha1
kind: App
metadata: {{ name: demo }}
spec:
  source: {{ repository: /srv/git/demo, commit: {commit} }}
  releases: {{ root: /srv/demo }}
  build: {{ install: npm ci, steps: [npm run build] }}
{migrations}  processes:
    - name: web
      script: server.js
      instances: 2
      exec_mode: cluster
      env: {{ PORT: 3000 }}
  health:
    checks:
      - name: api
        http: {{ url: "http://127.0.0.1:3000/api/health" }}
  hooks:
    afterSwitch: [echo switched]
"#
        );
        shipshape_spec::load_str(&text, "test.yaml").unwrap()
    }

    fn marker(desired: &App, lockfile: &str) -> BuildMarker {
        BuildMarker {
            commit: desired.spec.source.commit.clone(),
            inputs: build_inputs(desired),
            lockfile: Some(lockfile.into()),
            deps: deps_inputs(desired, Some(lockfile)),
            sealed_at: shipshape_spec::Timestamp::UNIX_EPOCH,
        }
    }

    fn instances_of(desired: &App, p: &Process, env_file: &EnvFile, cpus: u32) -> Vec<Instance> {
        let entry = ecosystem_entry(desired, p, env_file);
        let env: BTreeMap<String, String> = serde_json::from_value(entry["env"].clone()).unwrap();
        let mode = if p.exec_mode == Some(ExecMode::Cluster) {
            "cluster_mode"
        } else {
            "fork_mode"
        };
        (0..expected_instances(p, cpus))
            .map(|i| Instance {
                name: p.name.clone(),
                pm_id: i as u64,
                pid: 100 + i as u64,
                status: "online".into(),
                restarts: 0,
                exec_mode: mode.into(),
                env: env.clone(),
                cpu: 0.0,
                memory: 0,
            })
            .collect()
    }

    /// The observed state right after `desired` (built from lockfile A) was fully applied.
    fn converged(desired: &App) -> Observed {
        let mut obs = Observed {
            cpus: 2,
            desired_lockfile: Some(LOCK_A.into()),
            ..Default::default()
        };
        let (release, _) = choose_release(desired, &obs);
        obs.releases
            .insert(release.clone(), Some(marker(desired, LOCK_A)));
        obs.node_modules.insert(release.clone());
        obs.current = Some(release.clone());
        for p in &desired.spec.processes {
            obs.processes
                .extend(instances_of(desired, p, &obs.env_file, 2));
        }
        obs.hooks_applied = Some(hooks_hash(desired, &release));
        if let Some(m) = &desired.spec.migrations {
            obs.migration = MigrationState::At(Some(m.level.clone()));
        }
        obs
    }

    /// `app(commit)` declaring `.next/cache` as its build cache.
    fn cached(commit: &str) -> App {
        let mut a = app(commit);
        a.spec.build.cache = vec![".next/cache".into()];
        a
    }

    /// The build step of a plan: (cache_from, reason).
    fn build_of(p: &Plan) -> (Option<String>, String) {
        p.steps
            .iter()
            .find_map(|s| match &s.step {
                Step::Build { cache_from, .. } => Some((cache_from.clone(), s.reason.clone())),
                _ => None,
            })
            .expect("a build step")
    }

    #[test]
    fn a_build_cache_is_carried_only_from_a_release_with_the_same_dependencies_that_has_one() {
        // Live: C1, lockfile A, with a cache. A code-only change to C2 carries it.
        let mut obs = converged(&cached(C1));
        let live = obs.current.clone().unwrap();
        obs.build_caches.insert(live.clone());
        let (from, why) = build_of(&plan(&cached(C2), &obs));
        assert_eq!(from.as_deref(), Some(live.as_str()));
        assert!(
            why.contains(".next/cache carried from release 111111111111 (same dependencies)"),
            "{why}"
        );

        // Not declared: nothing carried, and the reason is the plain one.
        let (from, why) = build_of(&plan(&app(C2), &obs));
        assert_eq!((from, why.as_str()), (None, "new release needs its build"));

        // The live release has no cache on disk: nothing carried, and the reason says so.
        let mut bare = obs.clone();
        bare.build_caches.clear();
        let (from, why) = build_of(&plan(&cached(C2), &bare));
        assert_eq!(from, None);
        assert!(why.contains("no build cache carried"), "{why}");

        // The lockfile changed (a dependency change): built from scratch.
        let mut deps = obs.clone();
        deps.desired_lockfile = Some(LOCK_B.into());
        let p = plan(&cached(C2), &deps);
        assert!(kinds(&p).contains(&"install"), "{:?}", kinds(&p));
        let (from, why) = build_of(&p);
        assert_eq!(from, None);
        assert!(why.contains("no release with these dependencies"), "{why}");

        // No lockfile to compare: built from scratch.
        let mut unknown = obs.clone();
        unknown.desired_lockfile = None;
        assert_eq!(build_of(&plan(&cached(C2), &unknown)).0, None);

        // Live has other dependencies, but another sealed release has these and a cache:
        // carried from that one (it is also where the dependencies are reused from).
        let mut other = obs.clone();
        other.desired_lockfile = Some(LOCK_B.into());
        other
            .releases
            .insert(C3.into(), Some(marker(&cached(C3), LOCK_B)));
        other.node_modules.insert(C3.into());
        other.build_caches.insert(C3.into());
        let p = plan(&cached(C2), &other);
        assert!(kinds(&p).contains(&"reuse-deps"), "{:?}", kinds(&p));
        assert_eq!(build_of(&p).0.as_deref(), Some(C3));
    }

    fn kinds(p: &Plan) -> Vec<&'static str> {
        p.steps.iter().map(|s| s.step.kind().as_str()).collect()
    }

    struct Case {
        name: &'static str,
        /// The desired state, and the observed state it is planned against.
        setup: fn() -> (App, Observed),
        steps: &'static [&'static str],
        /// A fragment the reason of the first step of each listed kind must contain.
        reasons: &'static [(&'static str, &'static str)],
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "nothing changed",
                setup: || (app(C1), converged(&app(C1))),
                steps: &[],
                reasons: &[],
            },
            Case {
                name: "first deploy",
                setup: || {
                    (
                        app(C1),
                        Observed {
                            cpus: 2,
                            desired_lockfile: Some(LOCK_A.into()),
                            ..Default::default()
                        },
                    )
                },
                steps: &[
                    "fetch",
                    "install",
                    "build",
                    "switch",
                    "pm2-start",
                    "pm2-save",
                    "hook",
                    "verify",
                ],
                reasons: &[
                    ("install", "new release needs its dependencies"),
                    ("switch", "nothing is live yet"),
                ],
            },
            Case {
                name: "pm2 env change only",
                setup: || {
                    let mut d = app(C1);
                    d.spec.processes[0]
                        .env
                        .insert("GREETING".into(), EnvValue::String("hi".into()));
                    (d, converged(&app(C1)))
                },
                steps: &["pm2-reload", "pm2-save", "verify"],
                reasons: &[("pm2-reload", "env changed")],
            },
            Case {
                name: "code change with the same lockfile",
                setup: || (app(C2), converged(&app(C1))),
                steps: &[
                    "fetch",
                    "reuse-deps",
                    "build",
                    "switch",
                    "pm2-reload",
                    "pm2-save",
                    "hook",
                    "verify",
                ],
                reasons: &[
                    (
                        "reuse-deps",
                        "lockfile unchanged since release 111111111111",
                    ),
                    ("pm2-reload", "code 111111111111 → 222222222222"),
                ],
            },
            Case {
                name: "same lockfile, but the release's node_modules is missing",
                setup: || {
                    let mut obs = converged(&app(C1));
                    obs.node_modules.clear();
                    (app(C2), obs)
                },
                steps: &[
                    "fetch",
                    "install",
                    "build",
                    "switch",
                    "pm2-reload",
                    "pm2-save",
                    "hook",
                    "verify",
                ],
                reasons: &[(
                    "install",
                    "release 111111111111 was installed from this lockfile, but it has no node_modules to reuse",
                )],
            },
            Case {
                name: "same lockfile in two releases: reused from the one with node_modules",
                setup: || {
                    // C1 is live without node_modules; C3, not live, still has its own.
                    let mut obs = converged(&app(C1));
                    obs.node_modules.clear();
                    obs.releases
                        .insert(C3.into(), Some(marker(&app(C3), LOCK_A)));
                    obs.node_modules.insert(C3.into());
                    (app(C2), obs)
                },
                steps: &[
                    "fetch",
                    "reuse-deps",
                    "build",
                    "switch",
                    "pm2-reload",
                    "pm2-save",
                    "hook",
                    "verify",
                ],
                reasons: &[(
                    "reuse-deps",
                    "lockfile unchanged since release 333333333333",
                )],
            },
            Case {
                name: "lockfile change",
                setup: || {
                    let mut obs = converged(&app(C1));
                    obs.desired_lockfile = Some(LOCK_B.into());
                    (app(C2), obs)
                },
                steps: &[
                    "fetch",
                    "install",
                    "build",
                    "switch",
                    "pm2-reload",
                    "pm2-save",
                    "hook",
                    "verify",
                ],
                reasons: &[("install", "lockfile changed (aaaaaaaaaaaa → bbbbbbbbbbbb)")],
            },
            Case {
                name: "level bump only",
                setup: || {
                    (
                        app_at(C1, Some("0005")),
                        converged(&app_at(C1, Some("0004"))),
                    )
                },
                steps: &["backup", "migrate", "verify"],
                reasons: &[
                    ("migrate", "level 0004 < 0005"),
                    ("backup", "before migrating up from 0004"),
                ],
            },
            Case {
                name: "level bump with new code",
                setup: || {
                    (
                        app_at(C2, Some("0005")),
                        converged(&app_at(C1, Some("0004"))),
                    )
                },
                steps: &[
                    "fetch",
                    "reuse-deps",
                    "build",
                    "backup",
                    "migrate",
                    "switch",
                    "pm2-reload",
                    "pm2-save",
                    "hook",
                    "verify",
                ],
                reasons: &[("migrate", "level 0004 < 0005")],
            },
            Case {
                name: "an empty database",
                setup: || {
                    let mut obs = converged(&app_at(C1, Some("0001")));
                    obs.migration = MigrationState::At(None);
                    (app_at(C1, Some("0001")), obs)
                },
                steps: &["backup", "migrate", "verify"],
                reasons: &[("migrate", "level (empty) < 0001")],
            },
            Case {
                name: "a lower level with a driver that can go down",
                setup: || {
                    (
                        app_at(C1, Some("0003")),
                        converged(&app_at(C1, Some("0004"))),
                    )
                },
                steps: &["migrate", "verify"],
                reasons: &[(
                    "migrate",
                    "level 0004 > 0003: the document asks for a lower level",
                )],
            },
            Case {
                name: "drift: a process stopped by hand",
                setup: || {
                    let mut obs = converged(&app(C1));
                    obs.processes[1].status = "stopped".into();
                    (app(C1), obs)
                },
                steps: &["pm2-reload", "pm2-save", "verify"],
                reasons: &[("pm2-reload", "1 of 2 instances not online (stopped)")],
            },
            Case {
                name: "drift: current moved by hand",
                setup: || {
                    let mut obs = converged(&app(C1));
                    obs.releases.insert("elsewhere".into(), None);
                    obs.current = Some("elsewhere".into());
                    (app(C1), obs)
                },
                steps: &["switch", "pm2-reload", "pm2-save", "hook", "verify"],
                reasons: &[
                    ("switch", "current is elsewhere, desired 111111111111"),
                    ("pm2-reload", "current was moved"),
                ],
            },
            Case {
                name: "instances 2 → 4",
                setup: || {
                    let mut d = app(C1);
                    d.spec.processes[0].instances = Some(Instances::Count(4));
                    (d, converged(&app(C1)))
                },
                steps: &["pm2-replace", "pm2-save", "verify"],
                reasons: &[("pm2-replace", "instances 2 → 4")],
            },
            Case {
                name: "an env variable removed",
                setup: || {
                    let mut with = app(C1);
                    with.spec.processes[0]
                        .env
                        .insert("HEALTH_FAIL".into(), EnvValue::String("1".into()));
                    (app(C1), converged(&with))
                },
                steps: &["pm2-replace", "pm2-save", "verify"],
                reasons: &[("pm2-replace", "env HEALTH_FAIL removed")],
            },
            Case {
                name: "a process we started is no longer declared",
                setup: || {
                    let mut obs = converged(&app(C1));
                    let mut old = obs.processes[0].clone();
                    old.name = "worker".into();
                    obs.processes.push(old);
                    (app(C1), obs)
                },
                steps: &["pm2-delete", "pm2-save", "verify"],
                reasons: &[("pm2-delete", "no longer declared")],
            },
            Case {
                name: "a process someone else started is never touched",
                setup: || {
                    let mut obs = converged(&app(C1));
                    let mut foreign = obs.processes[0].clone();
                    foreign.name = "someone-elses".into();
                    foreign.env.clear();
                    obs.processes.push(foreign);
                    (app(C1), obs)
                },
                steps: &[],
                reasons: &[],
            },
            Case {
                name: "an interrupted preparation is redone",
                setup: || {
                    let mut obs = Observed {
                        cpus: 2,
                        ..Default::default()
                    };
                    obs.releases.insert(C1.into(), None);
                    (app(C1), obs)
                },
                steps: &[
                    "fetch",
                    "install",
                    "build",
                    "switch",
                    "pm2-start",
                    "pm2-save",
                    "hook",
                    "verify",
                ],
                reasons: &[("fetch", "release 111111111111 is incomplete")],
            },
            Case {
                name: "going back to a sealed release skips preparation",
                setup: || {
                    let mut obs = converged(&app(C2));
                    obs.releases
                        .insert(C1.into(), Some(marker(&app(C1), LOCK_A)));
                    (app(C1), obs)
                },
                steps: &["switch", "pm2-reload", "pm2-save", "hook", "verify"],
                reasons: &[],
            },
            Case {
                name: "hooks changed with nothing else",
                setup: || {
                    let mut d = app(C1);
                    d.spec.hooks.after_switch.push("echo again".into());
                    (d, converged(&app(C1)))
                },
                steps: &["hook", "hook", "verify"],
                reasons: &[("hook", "hooks changed")],
            },
        ]
    }

    #[test]
    fn each_kind_of_change_plans_exactly_its_steps_with_reasons() {
        for case in cases() {
            let (desired, observed) = (case.setup)();
            let p = plan(&desired, &observed);
            assert!(
                p.blockers.is_empty(),
                "{}: unexpected blockers {:?}",
                case.name,
                p.blockers
            );
            assert_eq!(kinds(&p), case.steps, "{}:\n{p}", case.name);
            for (kind, fragment) in case.reasons {
                let step = p.steps.iter().find(|s| s.step.kind() == *kind).unwrap();
                assert!(
                    step.reason.contains(fragment),
                    "{}: {kind} reason {:?} lacks {fragment:?}",
                    case.name,
                    step.reason
                );
            }
        }
    }

    /// The process's instances under its temporary name, as a replace interrupted after
    /// starting them leaves them.
    fn as_next(obs: &Observed) -> Vec<Instance> {
        obs.processes
            .iter()
            .map(|i| Instance {
                name: replace::next_name(&i.name),
                pm_id: i.pm_id + 10,
                ..i.clone()
            })
            .collect()
    }

    #[test]
    fn a_cluster_replace_says_it_is_graceful_and_a_fork_replace_says_it_is_not() {
        let mut four = app(C1);
        four.spec.processes[0].instances = Some(Instances::Count(4));
        let p = plan(&four, &converged(&app(C1)));
        assert!(
            p.steps[0]
                .reason
                .contains("graceful: the new processes start as web~next"),
            "{p}"
        );

        let fork = |n: u32| {
            let mut a = app(C1);
            a.spec.processes[0].exec_mode = Some(ExecMode::Fork);
            a.spec.processes[0].instances = Some(Instances::Count(n));
            a
        };
        let p = plan(&fork(2), &converged(&fork(1)));
        assert_eq!(kinds(&p), ["pm2-replace", "pm2-save", "verify"]);
        assert!(
            p.steps[0]
                .reason
                .ends_with("(fork mode: not graceful, requests are dropped during the restart)"),
            "{p}"
        );
        // Cluster → fork: the port is held by the other kind.
        let p = plan(&fork(2), &converged(&app(C1)));
        assert!(
            p.steps[0]
                .reason
                .contains("cannot share the port: not graceful"),
            "{p}"
        );
    }

    #[test]
    fn a_left_over_temporary_process_is_finished_by_a_replace_never_pruned() {
        let d = app(C1);
        // Crash after the new processes started: both names run.
        let mut obs = converged(&app(C2));
        obs.processes.extend(as_next(&converged(&d)));
        let p = plan(&d, &obs);
        assert!(kinds(&p).contains(&"pm2-replace"), "{p}");
        assert!(!kinds(&p).contains(&"pm2-delete"), "{p}");

        // Crash after the old processes were deleted: only the temporary name runs. A
        // plain start and a delete of web~next would leave nothing ready in between.
        let mut obs = converged(&d);
        obs.processes = as_next(&obs);
        let p = plan(&d, &obs);
        assert_eq!(kinds(&p), ["pm2-replace", "pm2-save", "verify"], "{p}");
        assert!(
            p.steps[0]
                .reason
                .contains("an interrupted replace left only web~next running"),
            "{p}"
        );

        // Crash before the temporary processes were deleted: the declared name is done.
        let mut obs = converged(&d);
        obs.processes.extend(as_next(&obs));
        let p = plan(&d, &obs);
        assert_eq!(kinds(&p), ["pm2-replace", "pm2-save", "verify"], "{p}");
        assert!(p.steps[0].reason.contains("left web~next running"), "{p}");

        // The temporary name of a process no longer declared is pruned with it.
        let mut obs = converged(&d);
        let mut gone = as_next(&obs);
        for i in &mut gone {
            i.name = replace::next_name("worker");
        }
        obs.processes.extend(gone);
        let p = plan(&d, &obs);
        assert_eq!(kinds(&p), ["pm2-delete", "pm2-save", "verify"], "{p}");
        assert_eq!(p.steps[0].step.target(), "worker~next");
    }

    #[test]
    fn prisma_cannot_go_down_so_a_lower_level_is_a_note_not_a_step() {
        let mut d = app_at(C1, Some("0003"));
        d.spec.migrations.as_mut().unwrap().driver = MigrationDriver::Prisma;
        let mut obs = converged(&d);
        obs.migration = MigrationState::At(Some("0004".into()));
        let p = plan(&d, &obs);
        assert!(p.steps.is_empty(), "{p}");
        assert!(p.notes[0].contains("cannot migrate down"), "{:?}", p.notes);
    }

    #[test]
    fn an_unreadable_level_blocks_the_plan() {
        let d = app_at(C1, Some("0003"));
        let mut obs = converged(&d);
        obs.migration = MigrationState::Unreadable("connection refused".into());
        let p = plan(&d, &obs);
        assert_eq!(
            p.blockers,
            ["cannot read the migration level: connection refused"]
        );
    }

    #[test]
    fn a_foreign_process_with_a_declared_name_blocks_instead_of_being_touched() {
        let d = app(C1);
        let mut obs = converged(&d);
        for i in &mut obs.processes {
            i.env.remove(ENV_APP);
        }
        let p = plan(&d, &obs);
        assert_eq!(p.blockers.len(), 1, "{p}");
        assert!(!kinds(&p).iter().any(|k| k.starts_with("pm2-")));
    }

    #[test]
    fn new_build_inputs_for_the_live_commit_get_a_new_directory() {
        let old = app(C1);
        let mut new = old.clone();
        new.spec.build.steps.push("npm test".into());
        let p = plan(&new, &converged(&old));
        assert_ne!(p.release, C1);
        assert!(p.release.starts_with(C1));
        assert_eq!(kinds(&p)[..4], ["fetch", "reuse-deps", "build", "switch"]);
    }

    #[test]
    fn env_file_changes_reload_and_values_never_reach_the_plan() {
        let d = app(C1);
        let mut obs = converged(&d);
        obs.env_file
            .vars
            .insert("DATABASE_URL".into(), "postgres://u:s3cret@db/app".into());
        let p = plan(&d, &obs);
        assert_eq!(kinds(&p), ["pm2-reload", "pm2-save", "verify"]);
        let shown = format!("{p}{}", serde_json::to_string(&p).unwrap());
        assert!(!shown.contains("s3cret"));
    }
}

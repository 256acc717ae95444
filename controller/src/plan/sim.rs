//! The planner's property test, against a simulated server.
//!
//! The simulation models what the planner's steps act on as those things behave, and is
//! written without the planner's helpers (`ecosystem_entry`, `expected_instances`,
//! `hooks_hash`, `build_inputs`, `deps_inputs`):
//!
//! - **pm2**: `startOrReload` starts a missing process from its ecosystem entry (instances —
//!   a count, `max` or 0 for one per CPU —, exec_mode, script and env exactly) and otherwise
//!   *reloads* it as pm2 does: the new env is merged into the old one (a variable no longer
//!   declared survives), a stopped instance is started again, and the instance count,
//!   exec_mode and script stay what they were at start. `delete` removes every instance of
//!   a name, `save` writes the dump, a reboot resurrects the dump. A process runs the code of
//!   the release `current` pointed at when it last (re)started.
//! - **releases**: fetch writes the commit's tree (with that commit's lockfile) into a fresh
//!   directory; install records what `node_modules` was installed from (a lockfile without
//!   dependencies leaves no `node_modules` at all, as npm does); reuse-deps copies another
//!   release's `node_modules`, and one from a release that has none is a fault (the executor
//!   fails the step); build records the steps it ran; a release is sealed after its last
//!   preparation step.
//! - **the database** (its level and the backups taken) and **the hooks** run since `current`
//!   last changed, with the release each ran in.
//!
//! Each planned step is applied as the executor applies it: the simulated pm2 is handed the
//! executor's ecosystem file, a release is sealed with the executor's marker, and the hooks
//! record is the executor's — those are the controller's own writes, which the planner reads
//! back. Convergence is judged against the document directly ([`Server::problems`]), and a
//! second plan must then be empty.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use proptest::prelude::*;
use shipshape_spec::App;
use shipshape_spec::app::{EnvValue, ExecMode, Instances};

use super::{MigrationState, Observed, Plan, Step, plan};
use crate::envfile::EnvFile;
use crate::pm2::Instance;
use crate::reconcile::execute;
use crate::release::BuildMarker;

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";
const C3: &str = "3333333333333333333333333333333333333333";
const ROOT: &str = "/srv/demo";
/// The hash of a lockfile that lists no dependencies: its install writes no `node_modules`.
const NO_DEPS: &str = "eeeeeeeeeeee";

/// One pm2 process instance, as pm2 keeps it.
#[derive(Debug, Clone, PartialEq)]
struct Proc {
    name: String,
    pm_id: u64,
    /// `online` or `stopped`.
    status: &'static str,
    restarts: u64,
    /// `fork_mode` or `cluster_mode`, fixed at start.
    exec_mode: String,
    /// The script, fixed at start.
    script: String,
    /// pm2's copy of the process env.
    env: BTreeMap<String, String>,
    /// The release whose code it runs: `current`'s target when it last (re)started.
    code: Option<String>,
}

/// What a release's `node_modules` was installed from.
#[derive(Debug, Clone, PartialEq)]
struct Deps {
    lockfile: Option<String>,
    install: String,
    env: BTreeMap<String, String>,
}

/// What a release's build ran.
#[derive(Debug, Clone, PartialEq)]
struct Built {
    steps: Vec<String>,
    env: BTreeMap<String, String>,
}

/// One directory under `releases/`.
#[derive(Debug, Clone)]
struct Release {
    commit: String,
    /// The lockfile hash in its tree (that of its commit).
    lockfile: Option<String>,
    node_modules: Option<Deps>,
    built: Option<Built>,
    marker: Option<BuildMarker>,
}

/// The simulated server.
#[derive(Debug, Clone)]
pub struct Server {
    cpus: u32,
    /// The app repository: each commit's lockfile hash (`None`: it has none).
    repo: BTreeMap<String, Option<String>>,
    /// The server's env file (used by documents that declare `envFile`).
    env_file: BTreeMap<String, String>,
    releases: BTreeMap<String, Release>,
    current: Option<String>,
    pm2: Vec<Proc>,
    next_pm_id: u64,
    /// pm2's dump (`pm2 save`), resurrected at boot.
    dump: Vec<Proc>,
    /// The database's migration level.
    level: Option<String>,
    /// The level each backup was taken at, in order.
    backups: Vec<Option<String>>,
    /// Hooks run since `current` last changed: (command, the release it ran in).
    hooks_run: Vec<(String, Option<String>)>,
    /// The controller's record of the hooks applied (`hooks_applied`).
    hooks_record: Option<String>,
    /// Processes someone else started (and saved), as they were.
    foreign: Vec<Proc>,
    /// What a real server would have refused while the steps were applied.
    faults: Vec<String>,
}

impl Server {
    fn new(cpus: u32, repo: BTreeMap<String, Option<String>>, env_file: Option<&str>) -> Server {
        Server {
            cpus,
            repo,
            env_file: env_file
                .map(|v| BTreeMap::from([("API_KEY".to_string(), v.to_string())]))
                .unwrap_or_default(),
            releases: BTreeMap::new(),
            current: None,
            pm2: Vec::new(),
            next_pm_id: 0,
            dump: Vec::new(),
            level: None,
            backups: Vec::new(),
            hooks_run: Vec::new(),
            hooks_record: None,
            foreign: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// The env file as the controller loads it for `app` (nothing without `envFile`).
    fn env_file_for(&self, app: &App) -> BTreeMap<String, String> {
        if app.spec.env_file.is_some() {
            self.env_file.clone()
        } else {
            BTreeMap::new()
        }
    }

    /// What the controller's observation reads from this server.
    fn observe(&self, app: &App) -> Observed {
        Observed {
            current: self.current.clone(),
            releases: self
                .releases
                .iter()
                .map(|(id, r)| (id.clone(), r.marker.clone()))
                .collect(),
            node_modules: self
                .releases
                .iter()
                .filter(|(_, r)| r.marker.is_some() && r.node_modules.is_some())
                .map(|(id, _)| id.clone())
                .collect(),
            processes: self
                .pm2
                .iter()
                .map(|p| Instance {
                    name: p.name.clone(),
                    pm_id: p.pm_id,
                    pid: if p.status == "online" {
                        1000 + p.pm_id
                    } else {
                        0
                    },
                    status: p.status.into(),
                    restarts: p.restarts,
                    exec_mode: p.exec_mode.clone(),
                    env: p.env.clone(),
                    cpu: 0.0,
                    memory: 0,
                })
                .collect(),
            hooks_applied: self.hooks_record.clone(),
            cpus: self.cpus,
            desired_lockfile: self.repo.get(&app.spec.source.commit).cloned().flatten(),
            migration: match app.spec.migrations {
                Some(_) => MigrationState::At(self.level.clone()),
                None => MigrationState::NotManaged,
            },
            env_file: EnvFile {
                vars: self.env_file_for(app),
            },
        }
    }

    // ---- pm2, as pm2 behaves ----

    /// `pm2 startOrReload <ecosystem> --only <name> --update-env`.
    fn pm2_start_or_reload(&mut self, ecosystem: &serde_json::Value, name: &str) {
        let Some(entry) = ecosystem["apps"]
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == name))
        else {
            self.faults
                .push(format!("pm2: no entry named {name} in the ecosystem file"));
            return;
        };
        let env: BTreeMap<String, String> = entry["env"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cwd = entry["cwd"].as_str().unwrap_or_default();
        // The process loads its code from its cwd: `<root>/current` follows the link now.
        let code =
            if cwd == format!("{ROOT}/current") || cwd.starts_with(&format!("{ROOT}/current/")) {
                self.current.clone()
            } else {
                None
            };
        if code.is_none() {
            self.faults.push(format!(
                "pm2: {name} started from {cwd:?}, which is no release (current: {:?})",
                self.current
            ));
        }
        if self.pm2.iter().any(|p| p.name == name) {
            // A reload: pm2 merges the env, keeps instances, exec_mode and script.
            for p in self.pm2.iter_mut().filter(|p| p.name == name) {
                p.env.extend(env.clone());
                p.status = "online";
                p.restarts += 1;
                p.code = code.clone();
            }
            return;
        }
        let count = match &entry["instances"] {
            serde_json::Value::Null => 1,
            serde_json::Value::String(s) if s == "max" => self.cpus,
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(0) => self.cpus,
                Some(n) if n < 0 => (self.cpus as i64 + n).max(1) as u32,
                Some(n) => n as u32,
                None => 1,
            },
            other => {
                self.faults.push(format!(
                    "pm2: {name} has instances {other}, which pm2 rejects"
                ));
                1
            }
        };
        let exec_mode = match entry["exec_mode"].as_str() {
            Some("cluster") | Some("cluster_mode") => "cluster_mode",
            _ => "fork_mode",
        };
        for _ in 0..count {
            self.pm2.push(Proc {
                name: name.to_string(),
                pm_id: self.next_pm_id,
                status: "online",
                restarts: 0,
                exec_mode: exec_mode.into(),
                script: entry["script"].as_str().unwrap_or_default().to_string(),
                env: env.clone(),
                code: code.clone(),
            });
            self.next_pm_id += 1;
        }
    }

    /// `pm2 delete <name>`.
    fn pm2_delete(&mut self, name: &str) {
        self.pm2.retain(|p| p.name != name);
    }

    /// `pm2 save`.
    fn pm2_save(&mut self) {
        self.dump = self.pm2.clone();
    }

    // ---- the executor ----

    /// Run `p`'s steps in order as the executor does.
    fn apply(&mut self, app: &App, p: &Plan) {
        let env = EnvFile {
            vars: self.env_file_for(app),
        };
        let last_prepare = p.steps.iter().rposition(|s| s.step.prepares());
        let mut backup_taken_at: Option<Option<String>> = None;
        for (i, planned) in p.steps.iter().enumerate() {
            match &planned.step {
                // Preparation acts on the plan's release directory.
                Step::Fetch { commit, .. } => match self.repo.get(commit) {
                    Some(lockfile) => {
                        let fresh = Release {
                            commit: commit.clone(),
                            lockfile: lockfile.clone(),
                            node_modules: None,
                            built: None,
                            marker: None,
                        };
                        self.releases.insert(p.release.clone(), fresh);
                    }
                    None => self.faults.push(format!("fetch: no commit {commit}")),
                },
                Step::Install { .. } => self.install(app, &p.release),
                Step::ReuseDeps { from, .. } => {
                    let theirs = self.releases.get(from).and_then(|r| r.node_modules.clone());
                    match (theirs, self.releases.get_mut(&p.release)) {
                        (Some(deps), Some(r)) => r.node_modules = Some(deps),
                        // Nothing to copy: the executor fails the step.
                        (None, Some(_)) => self.faults.push(format!(
                            "reuse-deps from release {from}, which has no node_modules"
                        )),
                        (_, None) => self
                            .faults
                            .push(format!("reuse-deps: no release {}", p.release)),
                    }
                }
                Step::Build { .. } => {
                    let built = Built {
                        steps: app.spec.build.steps.clone(),
                        env: text_env(&app.spec.build.env),
                    };
                    match self.releases.get_mut(&p.release) {
                        Some(r) => r.built = Some(built),
                        None => self.faults.push(format!("build: no release {}", p.release)),
                    }
                }
                Step::Backup { .. } => {
                    self.backups.push(self.level.clone());
                    backup_taken_at = Some(self.level.clone());
                }
                Step::Migrate { .. } => match &app.spec.migrations {
                    Some(m) => {
                        let up = self.level.as_deref().is_none_or(|l| l < m.level.as_str());
                        if up && m.backup.is_some() && backup_taken_at.as_ref() != Some(&self.level)
                        {
                            self.faults.push(format!(
                                "migrated up from {:?} without a backup at that level",
                                self.level
                            ));
                        }
                        self.level = Some(m.level.clone());
                    }
                    None => self.faults.push("migrate without migrations".into()),
                },
                Step::Restore { .. } => self.faults.push("plan() planned a restore".into()),
                Step::Switch { release } => {
                    if !self.releases.contains_key(release) {
                        self.faults
                            .push(format!("switch to {release}, which does not exist"));
                    }
                    self.current = Some(release.clone());
                    self.hooks_run.clear();
                }
                Step::Pm2Start { process } | Step::Pm2Reload { process } => {
                    let eco = execute::ecosystem_file(app, &env);
                    self.pm2_start_or_reload(&eco, process);
                }
                Step::Pm2Replace { process } => {
                    let eco = execute::ecosystem_file(app, &env);
                    self.pm2_delete(process);
                    self.pm2_start_or_reload(&eco, process);
                }
                Step::Pm2Delete { process } => self.pm2_delete(process),
                Step::Pm2Save => self.pm2_save(),
                Step::Hook { command } => {
                    if self.current.is_none() {
                        self.faults
                            .push(format!("hook {command:?} run with nothing live"));
                    }
                    self.hooks_run.push((command.clone(), self.current.clone()));
                    let last_hook = !p.steps[i + 1..]
                        .iter()
                        .any(|s| matches!(s.step, Step::Hook { .. }));
                    if last_hook {
                        self.hooks_record = Some(execute::hooks_record(app, p));
                    }
                }
                Step::Verify => {}
            }
            if Some(i) == last_prepare {
                match self.releases.get_mut(&p.release) {
                    Some(r) => {
                        r.marker = Some(execute::build_marker(
                            app,
                            p,
                            r.lockfile.clone(),
                            "t".into(),
                        ))
                    }
                    None => self.faults.push(format!("seal: no release {}", p.release)),
                }
            }
        }
    }

    fn install(&mut self, app: &App, release: &str) {
        let Some(r) = self.releases.get_mut(release) else {
            self.faults.push(format!("install: no release {release}"));
            return;
        };
        if let Some(cmd) = &app.spec.build.install
            && r.lockfile.as_deref() != Some(NO_DEPS)
        {
            r.node_modules = Some(Deps {
                lockfile: r.lockfile.clone(),
                install: cmd.clone(),
                env: text_env(&app.spec.build.env),
            });
        }
    }

    // ---- drift: what happens to a server between passes ----

    fn drift(&mut self, d: &Drift) {
        match *d {
            Drift::Stop(i) => {
                let n = self.pm2.len();
                if n > 0 {
                    self.pm2[i % n].status = "stopped";
                }
            }
            Drift::DeleteByHand(i) => {
                let n = self.pm2.len();
                if n > 0 {
                    let name = self.pm2[i % n].name.clone();
                    self.pm2_delete(&name);
                }
            }
            Drift::MoveCurrent => {
                self.releases.entry("elsewhere".into()).or_insert(Release {
                    commit: "elsewhere".into(),
                    lockfile: None,
                    node_modules: None,
                    built: None,
                    marker: None,
                });
                self.current = Some("elsewhere".into());
                self.hooks_run.clear();
            }
            Drift::RestartAll => {
                for p in &mut self.pm2 {
                    p.status = "online";
                    p.restarts += 1;
                    p.code = self.current.clone();
                }
            }
            Drift::Unseal(i) => {
                let n = self.releases.len();
                if let Some(id) = self.releases.keys().nth(i % n.max(1)).cloned() {
                    self.releases.get_mut(&id).unwrap().marker = None;
                }
            }
            Drift::Foreign => {
                if !self.pm2.iter().any(|p| p.name == "someone-elses") {
                    let p = Proc {
                        name: "someone-elses".into(),
                        pm_id: self.next_pm_id,
                        status: "online",
                        restarts: 0,
                        exec_mode: "fork_mode".into(),
                        script: "/opt/other/index.js".into(),
                        env: BTreeMap::from([("PORT".to_string(), "4000".to_string())]),
                        code: None,
                    };
                    self.next_pm_id += 1;
                    self.pm2.push(p.clone());
                    self.foreign.push(p);
                    // Its owner saves it, so a reboot keeps it.
                    self.pm2_save();
                }
            }
            Drift::Level(l) => self.level = l.map(str::to_string),
            Drift::EnvFile(v) => {
                self.env_file = v
                    .map(|v| BTreeMap::from([("API_KEY".to_string(), v.to_string())]))
                    .unwrap_or_default()
            }
            Drift::Reboot => {
                self.pm2 = self.dump.clone();
                for p in &mut self.pm2 {
                    p.status = "online";
                    p.pm_id = self.next_pm_id;
                    self.next_pm_id += 1;
                    p.code = self.current.clone();
                }
            }
        }
        // What others' processes look like now (a drift may have changed them too).
        let names: BTreeSet<String> = self.foreign.iter().map(|f| f.name.clone()).collect();
        self.foreign = self
            .pm2
            .iter()
            .filter(|p| names.contains(&p.name))
            .cloned()
            .collect();
    }

    // ---- the oracle ----

    /// How this server differs from what `app` declares (empty: converged). Judged from
    /// the document alone, never through the planner's helpers.
    pub fn problems(&self, app: &App) -> Vec<String> {
        let spec = &app.spec;
        let mut out = self.faults.clone();

        // The live release: sealed, from the document's commit, built from its inputs.
        match self.current.as_ref().map(|c| (c, self.releases.get(c))) {
            None => out.push("nothing is live".into()),
            Some((c, None)) => out.push(format!("current points at {c}, which does not exist")),
            Some((c, Some(r))) => {
                if r.marker.is_none() {
                    out.push(format!("the live release {c} is not sealed"));
                }
                if r.commit != spec.source.commit {
                    out.push(format!(
                        "the live release {c} holds commit {}, the document {}",
                        r.commit, spec.source.commit
                    ));
                }
                // npm writes no node_modules for a lockfile without dependencies.
                let want_deps = spec
                    .build
                    .install
                    .as_ref()
                    .filter(|_| r.lockfile.as_deref() != Some(NO_DEPS))
                    .map(|cmd| Deps {
                        lockfile: r.lockfile.clone(),
                        install: cmd.clone(),
                        env: text_env(&spec.build.env),
                    });
                if r.node_modules != want_deps {
                    out.push(format!(
                        "the live release's node_modules {:?}, the document's {want_deps:?}",
                        r.node_modules
                    ));
                }
                let want_build = (!spec.build.steps.is_empty()).then(|| Built {
                    steps: spec.build.steps.clone(),
                    env: text_env(&spec.build.env),
                });
                if r.built != want_build {
                    out.push(format!(
                        "the live release's build {:?}, the document's {want_build:?}",
                        r.built
                    ));
                }
            }
        }

        // Each declared process, as the document declares it.
        let env_file = self.env_file_for(app);
        for p in &spec.processes {
            let procs: Vec<&Proc> = self.pm2.iter().filter(|i| i.name == p.name).collect();
            let want_count = match &p.instances {
                None => 1,
                Some(Instances::Count(n)) => *n,
                Some(Instances::Max(_)) => self.cpus,
            };
            if procs.len() as u32 != want_count {
                out.push(format!(
                    "{}: {} instances, the document {want_count}",
                    p.name,
                    procs.len()
                ));
            }
            let want_mode = match p.exec_mode {
                Some(ExecMode::Cluster) => "cluster_mode",
                Some(ExecMode::Fork) | None => "fork_mode",
            };
            let mut want_env = env_file.clone();
            want_env.extend(text_env(&p.env));
            for i in procs {
                let id = format!("{}#{}", i.name, i.pm_id);
                if i.exec_mode != want_mode {
                    out.push(format!("{id}: {} , the document {want_mode}", i.exec_mode));
                }
                if i.script != p.script {
                    out.push(format!(
                        "{id}: runs {}, the document {}",
                        i.script, p.script
                    ));
                }
                if i.status != "online" {
                    out.push(format!("{id}: {}", i.status));
                }
                if i.code != self.current {
                    out.push(format!(
                        "{id}: runs release {:?}, current is {:?}",
                        i.code, self.current
                    ));
                }
                // The process's variables, without the controller's SHIPSHAPE_* markers.
                let env: BTreeMap<String, String> = i
                    .env
                    .iter()
                    .filter(|(k, _)| !k.starts_with("SHIPSHAPE_"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if env != want_env {
                    let extra: Vec<&String> =
                        env.keys().filter(|k| !want_env.contains_key(*k)).collect();
                    out.push(format!(
                        "{id}: env {env:?}, the document {want_env:?} (extra: {extra:?})"
                    ));
                }
            }
        }

        // Nothing else of ours runs; what others started is untouched.
        let declared: BTreeSet<&str> = spec.processes.iter().map(|p| p.name.as_str()).collect();
        for i in &self.pm2 {
            let foreign = self.foreign.iter().any(|f| f.name == i.name);
            if !declared.contains(i.name.as_str()) && !foreign {
                out.push(format!("{}#{} runs but is not declared", i.name, i.pm_id));
            }
        }
        for f in &self.foreign {
            if !self.pm2.contains(f) {
                out.push(format!("someone else's {} was touched", f.name));
            }
        }

        // pm2's dump resurrects what runs.
        let summary = |list: &[Proc]| {
            let mut v: Vec<(String, String, String, BTreeMap<String, String>)> = list
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.exec_mode.clone(),
                        p.script.clone(),
                        p.env.clone(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        if summary(&self.dump) != summary(&self.pm2) {
            out.push(
                "pm2's dump differs from what runs (a reboot would bring back another list)".into(),
            );
        }

        // The database.
        if let Some(m) = &spec.migrations
            && self.level.as_deref() != Some(m.level.as_str())
        {
            out.push(format!("level {:?}, the document {}", self.level, m.level));
        }

        // The hooks ran, in order, in the live release, since it went live.
        let hooks = &spec.hooks.after_switch;
        let ran = &self.hooks_run;
        let tail = &ran[ran.len().saturating_sub(hooks.len())..];
        let want: Vec<(String, Option<String>)> = hooks
            .iter()
            .map(|h| (h.clone(), self.current.clone()))
            .collect();
        if tail != want.as_slice() {
            out.push(format!(
                "hooks run since current last changed {ran:?}, the document's {hooks:?}"
            ));
        }
        out
    }
}

/// An env map's values as the process sees them (written here, not borrowed from spec).
fn text_env(env: &BTreeMap<String, EnvValue>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let text = match v {
                EnvValue::String(s) => s.clone(),
                EnvValue::Integer(n) => n.to_string(),
                EnvValue::Bool(b) => b.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// Something that happens to a server between two documents.
#[derive(Debug, Clone)]
enum Drift {
    /// `pm2 stop` of one instance.
    Stop(usize),
    /// `pm2 delete` of one process by hand.
    DeleteByHand(usize),
    /// `current` pointed by hand at another (unsealed) directory.
    MoveCurrent,
    /// pm2 restarts every process (they load whatever `current` is now).
    RestartAll,
    /// A release's marker is gone (an interrupted preparation, or a hand).
    Unseal(usize),
    /// Someone else starts (and saves) a process of their own.
    Foreign,
    /// The database was migrated or restored by hand.
    Level(Option<&'static str>),
    /// The env file was edited.
    EnvFile(Option<&'static str>),
    /// The machine rebooted: pm2 resurrects its dump.
    Reboot,
}

/// The knobs of one generated document.
#[derive(Debug, Clone)]
struct Doc {
    commit: &'static str,
    level: Option<&'static str>,
    env_file: bool,
    greeting: Option<&'static str>,
    /// `None`: no `instances`; `Some(None)`: `max`.
    instances: Option<Option<u32>>,
    /// `None`: no `exec_mode`.
    cluster: Option<bool>,
    script: &'static str,
    install: bool,
    build_steps: usize,
    hooks: usize,
    worker: bool,
}

impl Doc {
    fn app(&self) -> App {
        let mut y = String::new();
        let _ = writeln!(
            y,
            "apiVersion: shipshape/v1alpha1\nkind: App\nmetadata: {{ name: demo }}\nspec:"
        );
        let _ = writeln!(
            y,
            "  source: {{ repository: /srv/git/demo, commit: \"{}\" }}",
            self.commit
        );
        let _ = writeln!(y, "  releases: {{ root: {ROOT} }}");
        if self.env_file || self.level.is_some() {
            let _ = writeln!(y, "  envFile: /etc/demo/env");
        }
        let steps: Vec<&str> = ["npm run build", "npm test"][..self.build_steps].to_vec();
        let _ = writeln!(y, "  build:");
        if self.install {
            let _ = writeln!(y, "    install: npm ci");
        }
        let _ = writeln!(y, "    steps: {steps:?}");
        if let Some(l) = self.level {
            let _ = writeln!(
                y,
                "  migrations: {{ driver: dbmate, level: \"{l}\", backup: pg_dump -Fc -f \"$SHIPSHAPE_BACKUP_FILE\" }}"
            );
        }
        let _ = writeln!(y, "  processes:");
        let _ = writeln!(y, "    - name: web\n      script: {}", self.script);
        match self.instances {
            None => {}
            Some(None) => {
                let _ = writeln!(y, "      instances: max");
            }
            Some(Some(n)) => {
                let _ = writeln!(y, "      instances: {n}");
            }
        }
        if let Some(c) = self.cluster {
            let mode = if c { "cluster" } else { "fork" };
            let _ = writeln!(y, "      exec_mode: {mode}");
        }
        let _ = write!(y, "      env: {{ PORT: 3000");
        if let Some(g) = self.greeting {
            let _ = write!(y, ", GREETING: {g}");
        }
        let _ = writeln!(y, " }}");
        if self.worker {
            let _ = writeln!(
                y,
                "    - name: worker\n      script: worker.js\n      env: {{ QUEUE: jobs, DEBUG: true }}"
            );
        }
        let _ = writeln!(
            y,
            "  health:\n    checks:\n      - name: api\n        http: {{ url: \"http://127.0.0.1:3000/api/health\" }}"
        );
        let hooks: Vec<&str> = ["echo switched", "echo again"][..self.hooks].to_vec();
        let _ = writeln!(y, "  hooks:\n    afterSwitch: {hooks:?}");
        shipshape_spec::load_str(&y, "sim.yaml").unwrap_or_else(|e| panic!("{e}\n{y}"))
    }
}

fn any_doc() -> impl Strategy<Value = Doc> {
    (
        (
            prop::sample::select(vec![C1, C2, C3]),
            prop::option::of(prop::sample::select(vec!["0001", "0002", "0003"])),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["hi", "howdy"])),
            prop::option::of(prop::option::of(1u32..4)),
            prop::option::of(any::<bool>()),
        ),
        (
            prop::sample::select(vec!["server.js", "app.js"]),
            any::<bool>(),
            0usize..3,
            0usize..3,
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (commit, level, env_file, greeting, instances, cluster),
                (script, install, build_steps, hooks, worker),
            )| Doc {
                commit,
                level,
                env_file,
                greeting,
                instances,
                cluster,
                script,
                install,
                build_steps,
                hooks,
                worker,
            },
        )
}

fn any_drift() -> impl Strategy<Value = Drift> {
    prop_oneof![
        (0usize..8).prop_map(Drift::Stop),
        (0usize..8).prop_map(Drift::DeleteByHand),
        Just(Drift::MoveCurrent),
        Just(Drift::RestartAll),
        (0usize..4).prop_map(Drift::Unseal),
        Just(Drift::Foreign),
        prop::option::of(prop::sample::select(vec!["0001", "0002", "0003"])).prop_map(Drift::Level),
        prop::option::of(prop::sample::select(vec!["k1", "k2"])).prop_map(Drift::EnvFile),
        Just(Drift::Reboot),
    ]
}

/// A server's world and the documents it goes through, with drift before each.
#[derive(Debug, Clone)]
struct History {
    cpus: u32,
    /// The lockfile of C1, C2, C3.
    lockfiles: [Option<&'static str>; 3],
    env_file: Option<&'static str>,
    docs: Vec<(Vec<Drift>, Doc)>,
}

fn any_history() -> impl Strategy<Value = History> {
    let lock = || {
        prop::option::of(prop::sample::select(vec![
            "aaaaaaaaaaaa",
            "bbbbbbbbbbbb",
            NO_DEPS,
        ]))
    };
    (
        1u32..5,
        (lock(), lock(), lock()),
        prop::option::of(prop::sample::select(vec!["k1", "k2"])),
        prop::collection::vec((prop::collection::vec(any_drift(), 0..3), any_doc()), 1..5),
    )
        .prop_map(|(cpus, (l1, l2, l3), env_file, docs)| History {
            cpus,
            lockfiles: [l1, l2, l3],
            env_file,
            docs,
        })
}

fn server_for(h: &History) -> Server {
    let repo = [C1, C2, C3]
        .iter()
        .zip(h.lockfiles)
        .map(|(c, l)| (c.to_string(), l.map(str::to_string)))
        .collect();
    Server::new(h.cpus, repo, h.env_file)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Through a history of documents, with drift between them, each plan applied to the
    /// simulated server leaves it as the document declares, and nothing more to do.
    #[test]
    fn each_plan_converges_a_simulated_server_to_its_document(h in any_history()) {
        let mut server = server_for(&h);
        for (n, (drift, doc)) in h.docs.iter().enumerate() {
            for d in drift {
                server.drift(d);
            }
            let app = doc.app();
            let before = server.clone();
            let first = plan(&app, &server.observe(&app));
            prop_assert!(
                first.blockers.is_empty(),
                "document {n} {doc:?}: blockers {:?}\nserver: {before:#?}", first.blockers
            );
            server.apply(&app, &first);
            let problems = server.problems(&app);
            prop_assert!(
                problems.is_empty(),
                "document {n} {doc:?} not converged:\n  {}\nplan:\n{first}\nserver before: {before:#?}\nserver after: {server:#?}",
                problems.join("\n  ")
            );
            let second = plan(&app, &server.observe(&app));
            prop_assert!(
                second.steps.is_empty(),
                "document {n} {doc:?}: a second plan is not empty\nfirst plan:\n{first}\nsecond plan:\n{second}\nserver: {server:#?}"
            );
        }
    }

    /// Planning twice against the same server gives the same plan.
    #[test]
    fn planning_is_deterministic(h in any_history()) {
        let mut server = server_for(&h);
        for (drift, doc) in &h.docs {
            for d in drift {
                server.drift(d);
            }
            let app = doc.app();
            let obs = server.observe(&app);
            prop_assert_eq!(plan(&app, &obs), plan(&app, &obs));
            let p = plan(&app, &obs);
            server.apply(&app, &p);
        }
    }
}

/// The simulation itself behaves as pm2 does: a reload keeps a removed variable and the
/// instance count; only a replace drops them. (If this failed, the property above would
/// prove nothing about reload versus replace.)
#[test]
fn the_simulated_pm2_keeps_removed_env_and_instances_on_reload() {
    let doc = Doc {
        commit: C1,
        level: None,
        env_file: false,
        greeting: Some("hi"),
        instances: Some(Some(2)),
        cluster: Some(true),
        script: "server.js",
        install: true,
        build_steps: 1,
        hooks: 1,
        worker: false,
    };
    let repo = BTreeMap::from([(C1.to_string(), Some("aaaaaaaaaaaa".to_string()))]);
    let mut server = Server::new(2, repo, None);
    let with = doc.app();
    let p = plan(&with, &server.observe(&with));
    server.apply(&with, &p);
    assert_eq!(server.problems(&with), Vec::<String>::new());

    let without = Doc {
        greeting: None,
        instances: Some(Some(3)),
        ..doc
    }
    .app();
    let reload = Plan {
        release: p.release.clone(),
        steps: vec![super::PlannedStep {
            step: Step::Pm2Reload {
                process: "web".into(),
            },
            reason: "a reload where a replace is needed".into(),
        }],
        blockers: vec![],
        notes: vec![],
    };
    let mut reloaded = server.clone();
    reloaded.apply(&without, &reload);
    let problems = reloaded.problems(&without).join("\n");
    assert!(
        problems.contains("2 instances, the document 3"),
        "{problems}"
    );
    assert!(problems.contains("extra: [\"GREETING\"]"), "{problems}");

    let replace = Plan {
        steps: vec![
            super::PlannedStep {
                step: Step::Pm2Replace {
                    process: "web".into(),
                },
                reason: "replace".into(),
            },
            super::PlannedStep {
                step: Step::Pm2Save,
                reason: "save".into(),
            },
        ],
        ..reload
    };
    server.apply(&without, &replace);
    assert_eq!(server.problems(&without), Vec::<String>::new());
}

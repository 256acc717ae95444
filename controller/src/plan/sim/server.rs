//! The simulated server: its pm2, releases, database and hooks as the planner's steps
//! leave them, what it looks like to the planner, and the executor applying a plan to it.

use super::history::*;
use super::*;

/// One pm2 process instance, as pm2 keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Proc {
    pub(super) name: String,
    pub(super) pm_id: u64,
    /// [`Status::Online`] or [`Status::Stopped`].
    pub(super) status: Status,
    pub(super) restarts: u64,
    /// `fork_mode` or `cluster_mode`, fixed at start.
    pub(super) exec_mode: String,
    /// The script, fixed at start.
    pub(super) script: String,
    /// pm2's copy of the process env.
    pub(super) env: BTreeMap<String, String>,
    /// The release whose code it runs: `current`'s target when it last (re)started.
    pub(super) code: Option<String>,
}

/// What a release's `node_modules` was installed from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Deps {
    pub(super) lockfile: Option<String>,
    pub(super) install: String,
    pub(super) env: BTreeMap<String, String>,
}

/// What a release's build ran.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Built {
    pub(super) steps: Vec<String>,
    pub(super) env: BTreeMap<String, String>,
}

/// One directory under `releases/`.
#[derive(Debug, Clone)]
pub(super) struct Release {
    pub(super) commit: String,
    /// The lockfile hash in its tree (that of its commit).
    pub(super) lockfile: Option<String>,
    pub(super) node_modules: Option<Deps>,
    pub(super) built: Option<Built>,
    pub(super) marker: Option<BuildMarker>,
}

/// The simulated server.
#[derive(Debug, Clone)]
pub(super) struct Server {
    pub(super) cpus: u32,
    /// The app repository: each commit's lockfile hash (`None`: it has none).
    pub(super) repo: BTreeMap<String, Option<String>>,
    /// The server's env file (used by documents that declare `envFile`).
    pub(super) env_file: BTreeMap<String, String>,
    pub(super) releases: BTreeMap<String, Release>,
    pub(super) current: Option<String>,
    pub(super) pm2: Vec<Proc>,
    pub(super) next_pm_id: u64,
    /// pm2's dump (`pm2 save`), resurrected at boot.
    pub(super) dump: Vec<Proc>,
    /// The database's migration level.
    pub(super) level: Option<String>,
    /// The level each backup was taken at, in order.
    pub(super) backups: Vec<Option<String>>,
    /// Hooks run since `current` last changed: (command, the release it ran in).
    pub(super) hooks_run: Vec<(String, Option<String>)>,
    /// The controller's record of the hooks applied (`hooks_applied`).
    pub(super) hooks_record: Option<String>,
    /// Processes someone else started (and saved), as they were.
    pub(super) foreign: Vec<Proc>,
    /// The names of every process someone else ever started here: one deleted by hand stays
    /// someone else's, and comes back from their saved dump on a reboot.
    pub(super) foreign_names: BTreeSet<String>,
    /// Names deleted by hand since the last `pm2 save` (anyone's) or reboot:
    /// the hand did not save, so pm2's dump still lists them. The controller does not read
    /// the dump; the oracle does not hold it to this difference.
    pub(super) unsaved_hand_deletes: BTreeSet<String>,
    /// What a real server would have refused while the steps were applied.
    pub(super) faults: Vec<String>,
}

impl Server {
    pub(super) fn new(
        cpus: u32,
        repo: BTreeMap<String, Option<String>>,
        env_file: Option<&str>,
    ) -> Server {
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
            foreign_names: BTreeSet::new(),
            unsaved_hand_deletes: BTreeSet::new(),
            faults: Vec::new(),
        }
    }

    /// The env file as the controller loads it for `app` (nothing without `envFile`).
    pub(super) fn env_file_for(&self, app: &App) -> BTreeMap<String, String> {
        if app.spec.env_file.is_some() {
            self.env_file.clone()
        } else {
            BTreeMap::new()
        }
    }

    /// What the controller's observation reads from this server.
    pub(super) fn observe(&self, app: &App) -> Observed {
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
            // Build caches are not modelled: a carried cache changes no outcome.
            build_caches: Default::default(),
            processes: self
                .pm2
                .iter()
                .map(|p| Instance {
                    name: p.name.clone(),
                    pm_id: p.pm_id,
                    pid: if p.status == Status::Online {
                        1000 + p.pm_id
                    } else {
                        0
                    },
                    status: p.status.clone(),
                    restarts: p.restarts,
                    exec_mode: p.exec_mode.clone(),
                    env: p.env.clone(),
                    cpu: 0.0,
                    memory: 0,
                    logs: Default::default(),
                })
                .collect(),
            hooks_applied: self.hooks_record.clone(),
            cpus: self.cpus,
            desired_lockfile: self.repo.get(&app.spec.source.commit).cloned().flatten(),
            package_scripts: Default::default(),
            migration: match app.spec.migrations {
                Some(_) => MigrationState::At(self.level.clone()),
                None => MigrationState::NotManaged,
            },
            env_file: EnvFile {
                vars: self.env_file_for(app),
            },
            traffic: None,
        }
    }

    // ---- the executor ----

    /// Run `p`'s steps in order as the executor does.
    pub(super) fn apply(&mut self, app: &App, p: &Plan) {
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
                // The simulated documents have no `spec.traffic`.
                Step::SlotStart { .. }
                | Step::SlotProve { .. }
                | Step::TrafficSwitch { .. }
                | Step::SlotRetire { .. } => self.faults.push(format!(
                    "a traffic step without spec.traffic: {:?}",
                    planned.step
                )),
                Step::Switch { release } => {
                    if !self.releases.contains_key(release) {
                        self.faults
                            .push(format!("switch to {release}, which does not exist"));
                    }
                    self.current = Some(release.clone());
                    self.hooks_run.clear();
                    self.hooks_record = Some(execute::switched_hooks_record(p));
                }
                Step::Pm2Start { process } | Step::Pm2Reload { process } => {
                    let eco = execute::ecosystem_file(app, &env);
                    self.pm2_start_or_reload(&eco, process);
                }
                Step::Pm2Replace { process } => {
                    match app.spec.processes.iter().find(|d| &d.name == process) {
                        Some(d) => {
                            let eco = execute::ecosystem_file_with_next(app, &env, d);
                            let cluster = d.exec_mode == Some(ExecMode::Cluster);
                            self.pm2_replace(&eco, process, cluster);
                        }
                        None => self
                            .faults
                            .push(format!("replace of {process}, which is not declared")),
                    }
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
                            shipshape_spec::Timestamp::UNIX_EPOCH,
                        ))
                    }
                    None => self.faults.push(format!("seal: no release {}", p.release)),
                }
            }
        }
    }

    pub(super) fn install(&mut self, app: &App, release: &str) {
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

    pub(super) fn drift(&mut self, d: &Drift) {
        match *d {
            Drift::Stop(i) => {
                let n = self.pm2.len();
                if n > 0 {
                    self.pm2[i % n].status = Status::Stopped;
                }
            }
            Drift::DeleteByHand(i) => {
                let n = self.pm2.len();
                if n > 0 {
                    let name = self.pm2[i % n].name.clone();
                    self.pm2_delete(&name);
                    // `pm2 delete` by hand, no `pm2 save`: the dump still lists it.
                    self.unsaved_hand_deletes.insert(name);
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
                    p.status = Status::Online;
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
                        status: Status::Online,
                        restarts: 0,
                        exec_mode: "fork_mode".into(),
                        script: "/opt/other/index.js".into(),
                        env: BTreeMap::from([("PORT".to_string(), "4000".to_string())]),
                        code: None,
                    };
                    self.next_pm_id += 1;
                    self.pm2.push(p.clone());
                    self.foreign_names.insert(p.name.clone());
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
            Drift::InterruptedReplace(moves) => {
                // The first cluster-mode process of ours (none: nothing was being replaced).
                let Some(name) = self
                    .pm2
                    .iter()
                    .find(|p| {
                        p.exec_mode == "cluster_mode"
                            && p.env.contains_key("SHIPSHAPE_APP")
                            && !p.name.contains('~')
                    })
                    .map(|p| p.name.clone())
                else {
                    return;
                };
                let old: Vec<Proc> = self
                    .pm2
                    .iter()
                    .filter(|p| p.name == name)
                    .cloned()
                    .collect();
                let copies = |to: &str, server: &mut Server| {
                    for p in &old {
                        let mut c = p.clone();
                        c.name = to.to_string();
                        c.pm_id = server.next_pm_id;
                        c.restarts = 0;
                        c.status = Status::Online;
                        c.code = server.current.clone();
                        server.next_pm_id += 1;
                        server.pm2.push(c);
                    }
                };
                copies(&format!("{name}~next"), self);
                if moves >= 2 {
                    self.pm2_delete(&name);
                }
                if moves >= 3 {
                    copies(&name, self);
                }
            }
            Drift::Reboot => {
                self.pm2 = self.dump.clone();
                self.unsaved_hand_deletes.clear();
                for p in &mut self.pm2 {
                    p.status = Status::Online;
                    p.pm_id = self.next_pm_id;
                    self.next_pm_id += 1;
                    p.code = self.current.clone();
                }
            }
        }
        // What others' processes look like now (a drift may have changed them too).
        self.foreign = self
            .pm2
            .iter()
            .filter(|p| self.foreign_names.contains(&p.name))
            .cloned()
            .collect();
    }
}

/// An env map's values as the process sees them (written here, not borrowed from spec).
pub(super) fn text_env(env: &BTreeMap<String, EnvValue>) -> BTreeMap<String, String> {
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

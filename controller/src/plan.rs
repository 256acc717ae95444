//! The planner: a pure function from (desired, observed) to the ordered, minimal steps
//! that converge the server, each with the reason it is needed. No I/O happens here;
//! `shipshape plan` prints its output and the reconciler executes it.
//!
//! # Order
//! Prepare (fetch, install, build) never touches the live release; then switch
//! `current`, apply pm2 processes (start, reload, replace, delete), save pm2's dump,
//! run after-switch hooks, and verify health.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use shipshape_spec::app::{App, ExecMode, Instances, Process};

use crate::pm2::{ENV_APP, ENV_COMMIT, ENV_CONFIG, ENV_KEYS, ENV_SHAPE, Instance};
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
    /// Run `build.steps` in the release.
    Build {
        /// Release id.
        release: String,
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
    /// Delete and start again: a field a reload cannot change did change.
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
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Fetch { .. } => "fetch",
            Step::Install { .. } => "install",
            Step::Build { .. } => "build",
            Step::Switch { .. } => "switch",
            Step::Pm2Start { .. } => "pm2-start",
            Step::Pm2Reload { .. } => "pm2-reload",
            Step::Pm2Replace { .. } => "pm2-replace",
            Step::Pm2Delete { .. } => "pm2-delete",
            Step::Pm2Save => "pm2-save",
            Step::Hook { .. } => "hook",
            Step::Verify => "verify",
        }
    }

    /// What the step acts on.
    pub fn target(&self) -> String {
        match self {
            Step::Fetch { release, .. }
            | Step::Install { release }
            | Step::Build { release }
            | Step::Switch { release } => release.clone(),
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
            Step::Fetch { .. } | Step::Install { .. } | Step::Build { .. } | Step::Verify
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
    /// Every pm2 instance (ours and others').
    pub processes: Vec<Instance>,
    /// Hash of the hooks (and the release they ran for) last run, from the records.
    pub hooks_applied: Option<String>,
    /// CPUs, for `instances: max`.
    pub cpus: u32,
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

/// The hash identifying the hooks to run for `release`.
pub fn hooks_hash(app: &App, release: &str) -> String {
    hash_json(&serde_json::json!({ "hooks": app.spec.hooks.after_switch, "release": release }))
}

/// The pm2 ecosystem entry for `process`, with the controller's marker variables.
/// Paths resolve under `<root>/current`, so a reload picks up a switched release.
pub fn ecosystem_entry(app: &App, process: &Process) -> serde_json::Value {
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
    let mut env: BTreeMap<String, String> = process
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.as_text()))
        .collect();
    let declared: Vec<&str> = process.env.keys().map(String::as_str).collect();
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

/// The hash of all processes' config, for revision records.
pub fn processes_hash(app: &App) -> String {
    let entries: Vec<_> = app
        .spec
        .processes
        .iter()
        .map(|p| ecosystem_entry(app, p))
        .collect();
    hash_json(&serde_json::Value::Array(entries))
}

fn expected_instances(p: &Process, cpus: u32) -> u32 {
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

/// Compute the plan that takes `observed` to `desired`.
pub fn plan(desired: &App, observed: &Observed) -> Plan {
    let spec = &desired.spec;
    let commit = &spec.source.commit;
    let mut steps = Vec::new();
    let mut blockers = Vec::new();
    let mut push = |step: Step, reason: String| steps.push(PlannedStep { step, reason });

    let (release, sealed) = choose_release(desired, observed);
    if !sealed {
        let why = match observed.releases.get(&release) {
            Some(None) => format!(
                "release {} is incomplete (interrupted preparation)",
                short_sha(&release)
            ),
            _ => format!(
                "no release of {} built from these inputs",
                short_sha(commit)
            ),
        };
        push(
            Step::Fetch {
                release: release.clone(),
                commit: commit.clone(),
            },
            why,
        );
        if spec.build.install.is_some() {
            push(
                Step::Install {
                    release: release.clone(),
                },
                "new release needs its dependencies".into(),
            );
        }
        if !spec.build.steps.is_empty() {
            push(
                Step::Build {
                    release: release.clone(),
                },
                "new release needs its build".into(),
            );
        }
    }

    let switching = observed.current.as_deref() != Some(release.as_str());
    if switching {
        let reason = match &observed.current {
            None => "nothing is live yet".to_string(),
            Some(cur) => format!(
                "current is {} , desired {}",
                short_sha(cur),
                short_sha(&release)
            ),
        };
        push(
            Step::Switch {
                release: release.clone(),
            },
            reason.replace(" ,", ","),
        );
    }

    let mut pm2_changed = false;
    let declared: BTreeSet<&str> = spec.processes.iter().map(|p| p.name.as_str()).collect();
    for p in &spec.processes {
        let entry = ecosystem_entry(desired, p);
        let env = &entry["env"];
        let want_config = env[ENV_CONFIG].as_str().unwrap_or_default();
        let want_shape = env[ENV_SHAPE].as_str().unwrap_or_default();
        let instances: Vec<&Instance> = observed
            .processes
            .iter()
            .filter(|i| i.name == p.name)
            .collect();
        let name = p.name.clone();
        if instances.is_empty() {
            push(
                Step::Pm2Start { process: name },
                "not running in pm2".into(),
            );
            pm2_changed = true;
            continue;
        }
        if instances
            .iter()
            .any(|i| i.app() != Some(desired.metadata.name.as_str()))
        {
            blockers.push(format!(
                "pm2 process {:?} exists but was not started by shipshape for app {:?}; delete or rename it",
                p.name, desired.metadata.name
            ));
            continue;
        }
        let want_count = expected_instances(p, observed.cpus);
        let want_mode = match p.exec_mode.unwrap_or_default() {
            ExecMode::Fork => "fork_mode",
            ExecMode::Cluster => "cluster_mode",
        };
        let first = instances[0];
        let shape_same = instances
            .iter()
            .all(|i| i.env.get(ENV_SHAPE).map(String::as_str) == Some(want_shape))
            && instances.len() as u32 == want_count
            && instances.iter().all(|i| i.exec_mode == want_mode);
        if !shape_same {
            let why = if instances.len() as u32 != want_count {
                format!("instances {} → {}", instances.len(), want_count)
            } else if first.exec_mode != want_mode {
                format!("exec_mode {} → {}", first.exec_mode, want_mode)
            } else {
                "script, args or pm2 options changed (a reload cannot apply them)".to_string()
            };
            push(Step::Pm2Replace { process: name }, why);
            pm2_changed = true;
            continue;
        }
        // pm2 merges env on reload: a variable dropped from the document would survive it.
        // What we declared last time is recorded in the process's own env.
        let want_keys: BTreeSet<&str> = p.env.keys().map(String::as_str).collect();
        let removed: BTreeSet<&str> = instances
            .iter()
            .filter_map(|i| i.env.get(ENV_KEYS))
            .flat_map(|keys| keys.split(',').filter(|k| !k.is_empty()))
            .filter(|k| !want_keys.contains(k))
            .collect();
        if !removed.is_empty() {
            let names: Vec<&str> = removed.into_iter().collect();
            push(
                Step::Pm2Replace { process: name },
                format!(
                    "env {} removed (a pm2 reload would keep it)",
                    names.join(", ")
                ),
            );
            pm2_changed = true;
            continue;
        }
        let config_same = instances
            .iter()
            .all(|i| i.env.get(ENV_CONFIG).map(String::as_str) == Some(want_config));
        let down: Vec<&&Instance> = instances.iter().filter(|i| i.status != "online").collect();
        if !config_same {
            let old_commit = first.env.get(ENV_COMMIT).cloned().unwrap_or_default();
            let why = if &old_commit != commit {
                format!("code {} → {}", short_sha(&old_commit), short_sha(commit))
            } else {
                "env changed".to_string()
            };
            push(Step::Pm2Reload { process: name }, why);
            pm2_changed = true;
        } else if !down.is_empty() {
            push(
                Step::Pm2Reload { process: name },
                format!(
                    "{} of {} instances not online ({})",
                    down.len(),
                    instances.len(),
                    down[0].status
                ),
            );
            pm2_changed = true;
        }
    }
    let mut stale: BTreeSet<&str> = BTreeSet::new();
    for i in &observed.processes {
        if i.app() == Some(desired.metadata.name.as_str()) && !declared.contains(i.name.as_str()) {
            stale.insert(i.name.as_str());
        }
    }
    for name in stale {
        push(
            Step::Pm2Delete {
                process: name.to_string(),
            },
            "no longer declared".into(),
        );
        pm2_changed = true;
    }
    if pm2_changed {
        push(Step::Pm2Save, "pm2 process list changed".into());
    }

    if !spec.hooks.after_switch.is_empty() {
        let want = hooks_hash(desired, &release);
        if switching || observed.hooks_applied.as_deref() != Some(want.as_str()) {
            let why = if switching {
                "release switched"
            } else {
                "hooks changed or never ran for this release"
            };
            for command in &spec.hooks.after_switch {
                push(
                    Step::Hook {
                        command: command.clone(),
                    },
                    why.into(),
                );
            }
        }
    }

    if steps.iter().any(|s| s.step.changes_live()) {
        steps.push(PlannedStep {
            step: Step::Verify,
            reason: format!(
                "{} passing rounds within {}",
                spec.health.success_threshold, spec.health.progress_deadline
            ),
        });
    }
    Plan {
        release,
        steps,
        blockers,
    }
}

/// The first 12 characters of a SHA-like id (whole when shorter).
pub fn short_sha(s: &str) -> String {
    s.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: &str = "1111111111111111111111111111111111111111";
    const C2: &str = "2222222222222222222222222222222222222222";

    fn app(commit: &str) -> App {
        let text = format!(
            r#"
apiVersion: shipshape/v1alpha1
kind: App
metadata: {{ name: demo }}
spec:
  source: {{ repository: /srv/git/demo, commit: {commit} }}
  releases: {{ root: /srv/demo }}
  build: {{ install: npm ci, steps: [npm run build] }}
  processes:
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

    /// The observed state right after `desired` was fully applied.
    fn converged(desired: &App) -> Observed {
        let mut obs = Observed {
            cpus: 2,
            ..Default::default()
        };
        let (release, _) = choose_release(desired, &obs);
        obs.releases.insert(
            release.clone(),
            Some(BuildMarker {
                commit: desired.spec.source.commit.clone(),
                inputs: build_inputs(desired),
                lockfile: None,
                sealed_at: "t".into(),
            }),
        );
        obs.current = Some(release.clone());
        for p in &desired.spec.processes {
            let entry = ecosystem_entry(desired, p);
            let env: BTreeMap<String, String> =
                serde_json::from_value(entry["env"].clone()).unwrap();
            for i in 0..expected_instances(p, 2) {
                obs.processes.push(Instance {
                    name: p.name.clone(),
                    pm_id: i as u64,
                    pid: 100 + i as u64,
                    status: "online".into(),
                    restarts: 0,
                    exec_mode: if p.exec_mode == Some(ExecMode::Cluster) {
                        "cluster_mode"
                    } else {
                        "fork_mode"
                    }
                    .into(),
                    env: env.clone(),
                });
            }
        }
        obs.hooks_applied = Some(hooks_hash(desired, &release));
        obs
    }

    fn kinds(p: &Plan) -> Vec<&'static str> {
        p.steps.iter().map(|s| s.step.kind()).collect()
    }

    #[test]
    fn a_first_deploy_runs_every_step_in_safe_order() {
        let d = app(C1);
        let p = plan(
            &d,
            &Observed {
                cpus: 2,
                ..Default::default()
            },
        );
        assert_eq!(
            kinds(&p),
            [
                "fetch",
                "install",
                "build",
                "switch",
                "pm2-start",
                "pm2-save",
                "hook",
                "verify"
            ]
        );
        assert_eq!(p.release, C1);
    }

    #[test]
    fn nothing_changed_plans_nothing() {
        let d = app(C1);
        let p = plan(&d, &converged(&d));
        assert!(p.is_empty(), "{p}");
    }

    #[test]
    fn a_code_change_prepares_switches_and_reloads() {
        let old = app(C1);
        let new = app(C2);
        let p = plan(&new, &converged(&old));
        assert_eq!(
            kinds(&p),
            [
                "fetch",
                "install",
                "build",
                "switch",
                "pm2-reload",
                "pm2-save",
                "hook",
                "verify"
            ]
        );
        assert!(
            p.steps[4]
                .reason
                .contains("code 111111111111 → 222222222222"),
            "{}",
            p.steps[4].reason
        );
    }

    #[test]
    fn going_back_to_a_sealed_release_skips_preparation() {
        let old = app(C1);
        let new = app(C2);
        let mut obs = converged(&new);
        let back = converged(&old);
        obs.releases.extend(back.releases.clone());
        let p = plan(&old, &obs);
        assert_eq!(
            kinds(&p),
            ["switch", "pm2-reload", "pm2-save", "hook", "verify"]
        );
    }

    #[test]
    fn an_env_change_only_reloads() {
        let old = app(C1);
        let mut new = old.clone();
        new.spec.processes[0].env.insert(
            "GREETING".into(),
            shipshape_spec::app::EnvValue::String("hi".into()),
        );
        let p = plan(&new, &converged(&old));
        assert_eq!(kinds(&p), ["pm2-reload", "pm2-save", "verify"]);
        assert_eq!(p.steps[0].reason, "env changed");
    }

    #[test]
    fn removing_an_env_var_replaces_because_pm2_reload_keeps_it() {
        let old = app(C1);
        let mut with_flag = old.clone();
        with_flag.spec.processes[0].env.insert(
            "HEALTH_FAIL".into(),
            shipshape_spec::app::EnvValue::String("1".into()),
        );
        let p = plan(&old, &converged(&with_flag));
        assert_eq!(kinds(&p), ["pm2-replace", "pm2-save", "verify"]);
        assert!(
            p.steps[0].reason.contains("HEALTH_FAIL removed"),
            "{}",
            p.steps[0].reason
        );
    }

    #[test]
    fn an_instance_count_change_replaces() {
        let old = app(C1);
        let mut new = old.clone();
        new.spec.processes[0].instances = Some(Instances::Count(3));
        let p = plan(&new, &converged(&old));
        assert_eq!(kinds(&p), ["pm2-replace", "pm2-save", "verify"]);
        assert_eq!(p.steps[0].reason, "instances 2 → 3");
    }

    #[test]
    fn drift_is_repaired() {
        let d = app(C1);
        let mut obs = converged(&d);
        obs.processes[1].status = "stopped".into();
        assert_eq!(kinds(&plan(&d, &obs)), ["pm2-reload", "pm2-save", "verify"]);

        let mut obs = converged(&d);
        obs.releases.insert("elsewhere".into(), None);
        obs.current = Some("elsewhere".into());
        assert_eq!(kinds(&plan(&d, &obs)), ["switch", "hook", "verify"]);
    }

    #[test]
    fn processes_not_started_by_us_are_never_touched() {
        let d = app(C1);
        let mut obs = converged(&d);
        let mut foreign = obs.processes[0].clone();
        foreign.name = "someone-elses".into();
        foreign.env.clear();
        obs.processes.push(foreign.clone());
        assert!(plan(&d, &obs).is_empty());

        let mut obs = converged(&d);
        for i in &mut obs.processes {
            i.env.remove(ENV_APP);
        }
        let p = plan(&d, &obs);
        assert_eq!(p.blockers.len(), 1, "{p}");
        assert!(!kinds(&p).contains(&"pm2-reload"));
    }

    #[test]
    fn undeclared_processes_we_started_are_deleted() {
        let d = app(C1);
        let mut obs = converged(&d);
        let mut old = obs.processes[0].clone();
        old.name = "worker".into();
        obs.processes.push(old);
        assert_eq!(kinds(&plan(&d, &obs)), ["pm2-delete", "pm2-save", "verify"]);
    }

    #[test]
    fn an_interrupted_preparation_is_redone_not_reused() {
        let d = app(C1);
        let mut obs = Observed {
            cpus: 2,
            ..Default::default()
        };
        obs.releases.insert(C1.into(), None);
        let p = plan(&d, &obs);
        assert_eq!(p.release, C1);
        assert!(p.steps[0].reason.contains("incomplete"));
    }

    #[test]
    fn new_build_inputs_for_the_live_commit_get_a_new_directory() {
        let old = app(C1);
        let mut new = old.clone();
        new.spec.build.steps.push("npm test".into());
        let p = plan(&new, &converged(&old));
        assert_ne!(p.release, C1);
        assert!(p.release.starts_with(C1));
        assert_eq!(kinds(&p)[..4], ["fetch", "install", "build", "switch"]);
    }
}

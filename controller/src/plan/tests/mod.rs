//! The planner's tests: the fixtures (an app, the converged server it is planned against)
//! here, the tables and cases by responsibility in the submodules.

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
            logs: Default::default(),
        })
        .collect()
}

/// The observed state right after `desired` (built from lockfile A) was fully applied.
fn converged(desired: &App) -> Observed {
    let mut obs = Observed {
        cpus: 2,
        desired_lockfile: Some(LOCK_A.into()),
        package_scripts: Default::default(),
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

fn kinds(p: &Plan) -> Vec<&'static str> {
    p.steps.iter().map(|s| s.step.kind().as_str()).collect()
}

mod cases;
mod migrations;
mod prepare;
mod processes;
mod traffic;

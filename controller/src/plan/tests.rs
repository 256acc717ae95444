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

/// The traffic sections' table (`slots.rs`): which steps each state of the slots plans.
mod traffic_slots {
    use super::*;
    use crate::traffic::{Leaving, TrafficState, Warm, slot_name};

    const A: u16 = 3000;
    const B: u16 = 3001;

    fn t0() -> shipshape_spec::Timestamp {
        "2026-12-02T03:00:00Z".parse().unwrap()
    }

    /// `app(commit)` in traffic mode on slots 3000/3001 behind nginx on 8080.
    fn slotted(commit: &str) -> App {
        let mut a = app(commit);
        a.spec.processes[0].env.remove("PORT");
        a.spec.traffic = Some(
            serde_json::from_value(serde_json::json!({
                "via": "nginx", "public": "http://127.0.0.1:8080", "ports": [A, B],
                "upstreamFile": "/etc/nginx/shipshape/demo.conf", "confirmPort": 8099,
            }))
            .unwrap(),
        );
        a
    }

    /// `doc`'s serving process running in the slot on `port` (2 instances, online).
    fn slot(doc: &App, port: u16) -> Vec<Instance> {
        let p = &doc.spec.processes[0];
        let mut is = instances_of(doc, p, &EnvFile::default(), 2);
        for (k, i) in is.iter_mut().enumerate() {
            i.name = slot_name(&p.name, port);
            i.pm_id = u64::from(port) * 10 + k as u64;
        }
        is
    }

    /// Converged on `live_doc` in slot `live`, with `others` running too, `warm` as given.
    fn observed(live_doc: &App, live: u16, others: &[(&App, u16)], warm: Option<Warm>) -> Observed {
        let mut obs = converged(live_doc);
        obs.processes.clear();
        obs.processes.extend(slot(live_doc, live));
        for (doc, port) in others {
            obs.processes.extend(slot(doc, *port));
        }
        obs.traffic = Some(TrafficState {
            live: Some(live),
            warm,
            now: t0(),
            leaving: Leaving::Warm,
        });
        obs
    }

    fn kinds(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .map(|s| format!("{} {}", s.step.kind(), s.step.target()))
            .collect()
    }

    fn warm_at(port: u16, secs: i64) -> Option<Warm> {
        Some(Warm {
            port,
            until: t0() + chrono::TimeDelta::seconds(secs),
        })
    }

    #[test]
    fn the_live_slot_running_the_document_plans_nothing() {
        let doc = slotted(C1);
        let p = plan(&doc, &observed(&doc, A, &[], None));
        assert!(p.steps.is_empty(), "{p}");
    }

    #[test]
    fn a_new_commit_starts_and_proves_a_slot_beside_the_live_one_before_the_switch() {
        let (old, new) = (slotted(C1), slotted(C2));
        let p = plan(&new, &observed(&old, A, &[], None));
        let k = kinds(&p);
        let at = |what: &str| k.iter().position(|s| s.starts_with(what)).unwrap();
        assert_eq!(k[at("slot-start")], "slot-start web@3001", "{p}");
        assert!(at("slot-start") < at("slot-prove"), "{p}");
        assert!(
            at("slot-prove") < at("traffic-switch"),
            "nothing moves before the proof: {p}"
        );
        assert!(
            at("traffic-switch") < at("switch"),
            "current moves once nginx took the switch: {p}"
        );
        assert!(at("slot-prove") < at("pm2-save"), "saved once proven: {p}");
        assert!(at("switch") < at("verify"), "{p}");
        // The slot traffic leaves stays warm: nothing retires it.
        assert!(!k.iter().any(|s| s.starts_with("slot-retire")), "{p}");
        let warm = p.steps.iter().find_map(|s| match s.step {
            Step::TrafficSwitch { warm, .. } => Some(warm),
            _ => None,
        });
        assert_eq!(warm, Some(Some(A)), "{p}");
    }

    #[test]
    fn every_change_kind_of_the_serving_process_is_a_new_slot_never_a_reload() {
        let old = slotted(C1);
        type Edit = Box<dyn Fn(&mut App)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "env",
                Box::new(|a: &mut App| {
                    a.spec.processes[0]
                        .env
                        .insert("NEW".into(), EnvValue::String("1".into()));
                }),
            ),
            (
                "instances",
                Box::new(|a: &mut App| {
                    a.spec.processes[0].instances = Some(Instances::Count(3));
                }),
            ),
            (
                "exec_mode",
                Box::new(|a: &mut App| {
                    a.spec.processes[0].exec_mode = Some(ExecMode::Fork);
                }),
            ),
            (
                "script",
                Box::new(|a: &mut App| a.spec.processes[0].script = "other.js".into()),
            ),
        ];
        for (what, edit) in edits {
            let mut new = old.clone();
            edit(&mut new);
            let k = kinds(&plan(&new, &observed(&old, A, &[], None)));
            assert!(
                k.contains(&"slot-start web@3001".to_string()),
                "{what}: {k:?}"
            );
            assert!(
                k.contains(&"traffic-switch slot 3001".to_string()),
                "{what}: {k:?}"
            );
            assert!(
                !k.iter().any(|s| s.starts_with("pm2-re")),
                "{what}: no pm2 reload or replace in place: {k:?}"
            );
        }
    }

    #[test]
    fn a_live_slot_with_an_instance_pm2_is_restarting_keeps_its_traffic() {
        let doc = slotted(C1);
        let mut obs = observed(&doc, A, &[], None);
        obs.processes[0].status = Status::Launching;
        let p = plan(&doc, &obs);
        assert!(
            !p.steps
                .iter()
                .any(|s| matches!(s.step, Step::SlotStart { .. } | Step::TrafficSwitch { .. })),
            "a restart of one instance is the health checks' to judge, not a new slot: {p}"
        );
    }

    #[test]
    fn a_slot_is_proven_on_its_own_port_by_its_own_processes_only() {
        let mut doc = slotted(C1);
        let mut worker = doc.spec.processes[0].clone();
        worker.name = "worker".into();
        doc.spec.processes.push(worker);
        doc.spec.health.checks[0].http_mut().unwrap().url =
            "http://127.0.0.1:8080/api/health".into();
        let view = crate::traffic::slot_view(&doc, B);
        let names: Vec<&str> = view
            .spec
            .processes
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["web@3001"],
            "the worker is applied after the switch"
        );
        assert_eq!(
            view.spec.health.checks[0].http().unwrap().url,
            "http://127.0.0.1:3001/api/health"
        );
        assert!(view.spec.traffic.is_none(), "a view is judged as it is");
    }

    #[test]
    fn going_back_to_the_warm_slot_in_its_time_is_a_switch_with_no_boot_and_no_proof() {
        let (good, bad) = (slotted(C1), slotted(C2));
        // The bad revision is live on B; the good one is warm on A.
        let mut obs = observed(&bad, B, &[(&good, A)], warm_at(A, 60));
        obs.traffic.as_mut().unwrap().leaving = Leaving::Retire;
        let p = plan(&good, &obs);
        let k = kinds(&p);
        assert!(
            !k.iter()
                .any(|s| s.starts_with("slot-start") || s.starts_with("slot-prove")),
            "{p}"
        );
        assert!(k.contains(&"traffic-switch slot 3000".to_string()), "{p}");
        // The slot traffic leaves ran the reverted revision: retired, not warm.
        assert!(k.contains(&"slot-retire web@3001".to_string()), "{p}");
        let warm = p.steps.iter().find_map(|s| match s.step {
            Step::TrafficSwitch { warm, .. } => Some(warm),
            _ => None,
        });
        assert_eq!(warm, Some(None), "{p}");
    }

    #[test]
    fn a_warm_slot_whose_time_is_up_is_proven_again_before_it_gets_traffic_back() {
        let (good, bad) = (slotted(C1), slotted(C2));
        let obs = observed(&bad, B, &[(&good, A)], warm_at(A, -1));
        let k = kinds(&plan(&good, &obs));
        assert!(k.contains(&"slot-prove slot 3000".to_string()), "{k:?}");
        assert!(
            !k.iter().any(|s| s.starts_with("slot-start")),
            "it runs: no boot: {k:?}"
        );
    }

    #[test]
    fn a_warm_slot_is_kept_in_its_time_and_retired_after_it() {
        let (old, live) = (slotted(C1), slotted(C2));
        let kept = plan(&live, &observed(&live, B, &[(&old, A)], warm_at(A, 60)));
        assert!(kept.steps.is_empty(), "{kept}");
        assert!(
            kept.notes.iter().any(|n| n.contains("warm until")),
            "{kept}"
        );
        let after = plan(&live, &observed(&live, B, &[(&old, A)], warm_at(A, -1)));
        assert_eq!(
            kinds(&after),
            ["slot-retire web@3000", "pm2-save "],
            "{after}"
        );
        assert!(
            !after.steps.iter().any(|s| s.step == Step::Verify),
            "retiring a slot nothing reaches changes nothing live: {after}"
        );
    }

    #[test]
    fn a_new_rollout_retires_the_warm_slot_to_make_way() {
        let (old, live, new) = (slotted(C1), slotted(C2), slotted(C3));
        let k = kinds(&plan(
            &new,
            &observed(&live, B, &[(&old, A)], warm_at(A, 60)),
        ));
        let retire = k
            .iter()
            .position(|s| s == "slot-retire web@3000")
            .expect("retire");
        let start = k
            .iter()
            .position(|s| s == "slot-start web@3000")
            .expect("start");
        assert!(retire < start, "{k:?}");
    }

    #[test]
    fn a_slot_that_ran_but_was_never_proven_is_proven_before_the_switch_and_saved_after_it() {
        // A crash after slot-start: the new config runs on B, nginx still names A.
        let (old, new) = (slotted(C1), slotted(C2));
        let k = kinds(&plan(&new, &observed(&old, A, &[(&new, B)], None)));
        assert!(k.contains(&"slot-prove slot 3001".to_string()), "{k:?}");
        assert!(!k.iter().any(|s| s.starts_with("slot-start")), "{k:?}");
        // The pass that started it ended before its save: pm2's dump must name it now.
        assert!(k.iter().any(|s| s.starts_with("pm2-save")), "{k:?}");
    }

    #[test]
    fn the_serving_process_run_in_place_is_deleted_once_it_runs_in_slots() {
        let inplace = app(C1);
        let doc = slotted(C1);
        let mut obs = converged(&inplace);
        obs.traffic = Some(TrafficState {
            live: None,
            warm: None,
            now: t0(),
            leaving: Leaving::Warm,
        });
        let k = kinds(&plan(&doc, &obs));
        let sw = k
            .iter()
            .position(|s| s == "traffic-switch slot 3000")
            .expect("switch");
        let del = k
            .iter()
            .position(|s| s == "pm2-delete web")
            .expect("delete");
        assert!(
            sw < del,
            "the in-place process serves until the switch: {k:?}"
        );
    }
}

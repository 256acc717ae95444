//! Scenario tests of a pass through fake ports, in the style of controller-rs's fixtures:
//! each row is a short history of what happens to one app (rollouts, monitor rounds, pins,
//! a controller stopping mid-pass, a newer document) and what the last pass must do: the
//! steps it runs in order, how it ends, and the records it leaves (each revision's outcome,
//! what is live, what is quarantined). No pm2, git or network: pm2, commands, the clock, the
//! sources and the probes are fakes ([`World`]); the records ([`Store`]) and the release
//! directories are real, in a temporary directory. Rows drive [`Controller::reconcile_app`]
//! only, so they hold whatever the pass's insides become.

mod rows;
mod world;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shipshape_spec::status::{Outcome, Phase, Pin, PinSource};

use super::{AppResult, Controller};
use crate::ports::Ports;
use crate::source::ConfigRepo;
use crate::state::Store;
use crate::state::requests::Request;

use rows::{APP, Act, End, Row, commit, config_commit, document, rows};
use world::{FakeClock, World};

/// The controller on `world`'s fakes, its records in `state`.
fn controller(world: &World, state: &Path) -> Controller {
    let clock = FakeClock {
        start: chrono::Utc::now(),
        nanos: Arc::default(),
    };
    Controller {
        config: ConfigRepo {
            repo: "/nowhere".into(),
            branch: "main".into(),
            path: String::new(),
            mirror: state.join("config.git"),
            credentials: Default::default(),
        },
        store: Store::new(state),
        ports: Ports {
            pm2: Arc::new(world.clone()),
            commands: Arc::new(world.clone()),
            clock: Arc::new(clock),
            source: Arc::new(world.clone()),
            probes: Arc::new(world.clone()),
        },
        http: crate::clients::Http::new(),
        hub: Default::default(),
        trust: Default::default(),
        host: Default::default(),
        prune: false,
        read_only: false,
        handles: Default::default(),
        concurrency: 1,
        history: 20,
        dbmate: "dbmate".into(),
        cpus: 2,
    }
}

fn pin_request(revision: u64) -> Request {
    Request::Pin {
        pin: Pin {
            revision,
            by: "ana".into(),
            at: crate::state::now(),
            reason: "incident".into(),
            source: PinSource::Cli,
        },
    }
}

/// Run `row`; the last pass's result and the world after it.
async fn play(row: &Row) -> (AppResult, Controller, World) {
    // On tmpfs where there is one: the records are fsync'd, which costs nothing there.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let root = dir.path().join("releases");
    let world = World::default();
    {
        let mut w = world.lock();
        w.root = root.clone();
        w.failing = row
            .failing
            .iter()
            .map(|(name, cmd)| (commit(name), cmd.to_string()))
            .collect();
        for (name, first, then) in row.health {
            w.health.insert(commit(name), (first.to_vec(), *then));
        }
    }
    let ctl = Arc::new(controller(&world, &dir.path().join("state")));
    let mut last = None;
    for act in row.acts {
        if let Some(result) = act_on(row, *act, &ctl, &world, &root).await {
            last = Some(result);
        }
    }
    let ctl = Arc::try_unwrap(ctl).unwrap_or_else(|a| (*a).clone());
    // Keep the directory for the checks: leak it into the controller's lifetime.
    std::mem::forget(dir);
    (last.expect("a row ends with a pass"), ctl, world)
}

/// Do `act` to the row's world; a pass's result.
async fn act_on(
    row: &Row,
    act: Act,
    ctl: &Arc<Controller>,
    world: &World,
    root: &Path,
) -> Option<AppResult> {
    match act {
        Act::Roll(name) => {
            let doc = document(root, name, row.tweak);
            let text = format!("{name}\n");
            let source = Some(("apps/demo.yaml", text.as_str()));
            let r = ctl.reconcile_app(&doc, &config_commit(name), source).await;
            return Some(r.expect("the pass ran"));
        }
        Act::CrashAt(name, call, n) => {
            world.lock().crash_at = Some((call.to_string(), n));
            let doc = document(root, name, row.tweak);
            let cfg = config_commit(name);
            let pass = ctl.reconcile_app(&doc, &cfg, None);
            // The pass blocks for good at the crash point: drop it there, as a SIGKILL
            // would leave it (what was saved stays; nothing after runs).
            tokio::select! {
                r = pass => panic!("{}: the pass ended ({r:?}) before {call}", row.name),
                _ = world.1.notified() => {}
            }
            world.lock().crash_at = None;
        }
        Act::Monitor(n) => {
            let mut m = crate::health::monitor::Monitor::new(
                ctl.clone(),
                APP,
                Arc::new(tokio::sync::Notify::new()),
            );
            for _ in 0..n {
                m.round().await;
            }
        }
        Act::Pin(rev) => {
            ctl.store
                .add_request(APP, pin_request(rev))
                .unwrap()
                .unwrap();
            ctl.handles.get(APP).interrupt();
        }
        Act::PinMidPass(rev) => {
            let (store, handle) = (ctl.store.clone(), ctl.handles.get(APP));
            world.lock().on_start = Some(Box::new(move || {
                store.add_request(APP, pin_request(rev)).unwrap().unwrap();
                handle.interrupt();
            }));
        }
        Act::Unpin => {
            let unpin = Request::Unpin { by: "ana".into() };
            ctl.store.add_request(APP, unpin).unwrap().unwrap();
            ctl.handles.get(APP).interrupt();
        }
        Act::Retry => {
            let retry = Request::Retry {
                config_commit: None,
            };
            ctl.store.add_request(APP, retry).unwrap().unwrap();
            ctl.handles.get(APP).interrupt();
        }
        Act::AddCheck(name, check) => {
            let mut doc = document(root, name, row.tweak);
            let mut added = serde_json::to_value(&doc.spec.health.checks[0]).expect("json");
            added["name"] = check.into();
            let added = serde_json::from_value(added).expect("a check");
            doc.spec.health.checks.push(added);
            let (cfg, text) = (
                format!("{:e<40}", format!("c1{name}")),
                format!("{name}+{check}\n"),
            );
            let source = Some(("apps/demo.yaml", text.as_str()));
            let r = ctl.reconcile_app(&doc, &cfg, source).await;
            return Some(r.expect("the pass ran"));
        }
        Act::Older => world.lock().latest = None,
        Act::Drift => world.lock().procs.clear(),
        Act::Newer => {
            world.lock().latest = Some((config_commit("ee"), Some("a newer one\n".into())));
        }
    }
    None
}

fn check(row: &Row, result: &AppResult, ctl: &Controller, world: &World) -> Vec<String> {
    let rec = ctl.store.load(APP).expect("records");
    let mut wrong = Vec::new();
    let steps: Vec<&str> = rec
        .last_pass
        .as_ref()
        .map(|p| p.steps.iter().map(|s| s.step.as_str()).collect())
        .unwrap_or_default();
    if steps != row.steps {
        wrong.push(format!("steps {steps:?}, want {:?}", row.steps));
    }
    let end = match result {
        AppResult::Ready { .. } => End::Ready,
        AppResult::NotReady { phase, .. } => End::NotReady(*phase),
        AppResult::Superseded { .. } => End::Superseded,
        AppResult::Invalid { .. } => End::NotReady(Phase::Invalid),
    };
    if end != row.end {
        wrong.push(format!("ended {result:?}, want {:?}", row.end));
    }
    let outcomes: Vec<Outcome> = rec.revisions.iter().map(|r| r.revision.outcome).collect();
    if outcomes != row.outcomes {
        wrong.push(format!("outcomes {outcomes:?}, want {:?}", row.outcomes));
    }
    if rec.live_revision != row.live {
        wrong.push(format!("live {:?}, want {:?}", rec.live_revision, row.live));
    }
    let mut quarantined: Vec<String> = rec
        .quarantined
        .iter()
        .map(|q| q.config_commit.clone())
        .collect();
    quarantined.sort();
    let mut want: Vec<String> = row.quarantined.iter().map(|n| config_commit(n)).collect();
    want.sort();
    if quarantined != want {
        wrong.push(format!("quarantined {quarantined:?}, want {want:?}"));
    }
    if let Some(level) = row.level {
        let at = world.lock().level.clone();
        if at.as_deref() != Some(level) {
            wrong.push(format!("level {at:?}, want {level}"));
        }
    }
    wrong
}

/// Every row, concurrently (each has its own fakes, records and releases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_of_a_pass_runs_its_steps_in_order_and_leaves_its_records() {
    let t0 = std::time::Instant::now();
    let rows: Arc<Vec<Row>> = Arc::new(rows());
    let runs = (0..rows.len()).map(|i| {
        let rows = rows.clone();
        tokio::spawn(async move {
            let row = &rows[i];
            let t = std::time::Instant::now();
            let (result, ctl, world) = play(row).await;
            (check(row, &result, &ctl, &world), t.elapsed())
        })
    });
    let mut failures = Vec::new();
    for (row, run) in rows.iter().zip(futures::future::join_all(runs).await) {
        let (wrong, took) = run.expect("the row ran");
        if std::env::var_os("SCENARIO_TIMES").is_some() {
            println!("{took:?} {}", row.name);
        }
        if !wrong.is_empty() {
            failures.push(format!("{}:\n  {}", row.name, wrong.join("\n  ")));
        }
    }
    let took = t0.elapsed();
    println!("{} scenario rows in {took:?}", rows.len());
    assert!(
        failures.is_empty(),
        "{} of {} rows:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    // Under a second on an idle machine; the bound leaves room for a loaded one.
    assert!(took < Duration::from_secs(5), "the rows took {took:?}");
}

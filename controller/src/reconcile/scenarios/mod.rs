//! Scenario tests of a pass through fake ports, in the style of controller-rs's fixtures:
//! each row is a short history of what happens to one app (rollouts, monitor rounds, pins,
//! a controller stopping mid-pass, a newer document) and what the last pass must do: the
//! steps it runs in order, how it ends, and the records it leaves (each revision's outcome,
//! what is live, what is quarantined). No pm2, git or network: pm2, commands, the clock, the
//! sources and the probes are fakes ([`World`]); the records ([`Store`]) and the release
//! directories are real, in a temporary directory. Rows drive [`Controller::reconcile_app`]
//! only, so they hold whatever the pass's insides become.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use shipshape_spec::App;
use shipshape_spec::app::Check;
use shipshape_spec::status::{CheckResult, Outcome, Phase, Pin, PinSource, ProbeState};

use super::{AppResult, Controller};
use crate::exec::{ExecError, Output, Spec};
use crate::pm2::{Instance, Pm2Error};
use crate::ports::{Clock, Commands, Pm2Port, Ports, Probes, Source};
use crate::source::{ConfigRepo, Snapshot, SourceError};
use crate::state::Store;
use crate::state::requests::Request;

// ---------------------------------------------------------------------------------------
// The fake world behind the ports.

/// Where a fake call blocks forever, as a controller killed there would stop: (the call's
/// label, its n-th occurrence).
type CrashAt = Option<(String, usize)>;

/// Everything the fakes share: what pm2 runs, what was called, what the checks answer.
#[derive(Default)]
struct WorldState {
    procs: Vec<Instance>,
    next_pm_id: u64,
    next_pid: u64,
    /// Every call made through a port that changes something, in order ("pm2 start web",
    /// "cmd npm ci", "git checkout aaaa…").
    calls: Vec<String>,
    /// Commands that fail: (the app commit they run for, the command's text).
    failing: Vec<(String, String)>,
    /// Per app commit: the first rounds' answers (true: pass), then the answer after.
    health: HashMap<String, (Vec<bool>, bool)>,
    crash_at: CrashAt,
    /// Called at the first `pm2 start` (a request arriving mid-pass).
    on_start: Option<Box<dyn FnOnce() + Send>>,
    /// What the config repo's tip says about the watched document (a newer one).
    latest: Option<(String, Option<String>)>,
    /// Where the releases are: the probes read `current` to know what answers.
    root: PathBuf,
    /// The fake database's migration level (the `command` driver's `db-*` commands).
    level: Option<String>,
    /// The level saved by each backup file (`db-backup`), for `db-restore`.
    backups: HashMap<String, Option<String>>,
}

#[derive(Clone, Default)]
struct World(Arc<Mutex<WorldState>>, Arc<tokio::sync::Notify>);

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("World")
    }
}

impl World {
    fn lock(&self) -> std::sync::MutexGuard<'_, WorldState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Log `call`; true when the controller "dies" here.
    fn call(&self, call: String) -> bool {
        let mut w = self.lock();
        w.calls.push(call.clone());
        let seen = w.calls.iter().filter(|c| **c == call).count();
        let dies = matches!(&w.crash_at, Some((at, n)) if *at == call && *n == seen);
        if dies {
            self.1.notify_one();
        }
        dies
    }

    /// The app commit `current` points at (the fake checkout leaves it in `.commit`).
    fn live_commit(&self) -> Option<String> {
        let root = self.lock().root.clone();
        std::fs::read_to_string(root.join("current").join(".commit")).ok()
    }
}

impl World {
    /// The fake database behind the `command` migration driver: `db-status` prints the
    /// level, `db-up`/`db-down` move it to the target, `db-backup`/`db-restore` save and
    /// bring back the level in a backup file.
    fn database(&self, command: &str, env: &BTreeMap<String, String>) -> String {
        let mut w = self.lock();
        let var = |k: &str| env.get(k).cloned().unwrap_or_default();
        match command {
            "db-status" => return w.level.clone().unwrap_or_default(),
            "db-up" | "db-down" => w.level = Some(var("SHIPSHAPE_TARGET_LEVEL")),
            "db-backup" => {
                let level = w.level.clone();
                let _ = std::fs::write(var("SHIPSHAPE_BACKUP_FILE"), "dump");
                w.backups.insert(var("SHIPSHAPE_BACKUP_FILE"), level);
            }
            "db-restore" => {
                let saved = w.backups.get(&var("SHIPSHAPE_BACKUP_FILE")).cloned();
                w.level = saved.expect("restoring a backup that was taken");
            }
            _ => {}
        }
        String::new()
    }
}

/// Never resolves: the controller stopped here.
async fn dead<T>() -> T {
    std::future::pending().await
}

fn pm2_refused(action: &str, message: &str) -> Pm2Error {
    Pm2Error::Refused {
        action: action.into(),
        message: message.into(),
    }
}

impl Pm2Port for World {
    fn jlist(&self) -> BoxFuture<'_, Result<Vec<Instance>, Pm2Error>> {
        let list = self.lock().procs.clone();
        Box::pin(async move { Ok(list) })
    }

    fn start_or_reload<'a>(
        &'a self,
        ecosystem: &'a Path,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), Pm2Error>> {
        Box::pin(async move {
            if self.call(format!("pm2 start {name}")) {
                return dead().await;
            }
            let hook = self.lock().on_start.take();
            if let Some(hook) = hook {
                hook();
            }
            let text = std::fs::read_to_string(ecosystem)
                .map_err(|e| pm2_refused("start", &e.to_string()))?;
            let file: serde_json::Value = serde_json::from_str(&text).expect("ecosystem json");
            let entry = file["apps"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["name"] == name))
                .cloned()
                .ok_or_else(|| pm2_refused("start", "no such entry"))?;
            let env: BTreeMap<String, String> = entry["env"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_string)))
                        .collect()
                })
                .unwrap_or_default();
            let mut w = self.lock();
            let count = entry["instances"].as_u64().unwrap_or(1);
            let exec_mode = match entry["exec_mode"].as_str() {
                Some("cluster" | "cluster_mode") => "cluster_mode",
                _ => "fork_mode",
            };
            let running = w.procs.iter().any(|p| p.name == name);
            if running {
                // A reload: new pids, the new env.
                for i in 0..w.procs.len() {
                    if w.procs[i].name == name {
                        w.next_pid += 1;
                        let pid = w.next_pid;
                        let p = &mut w.procs[i];
                        p.env = env.clone();
                        p.pid = pid;
                        p.status = "online".into();
                    }
                }
                return Ok(());
            }
            for _ in 0..count {
                let (pm_id, pid) = (w.next_pm_id, w.next_pid + 1000);
                w.next_pm_id += 1;
                w.next_pid += 1;
                w.procs.push(Instance {
                    name: name.to_string(),
                    pm_id,
                    pid,
                    status: "online".into(),
                    restarts: 0,
                    exec_mode: exec_mode.into(),
                    env: env.clone(),
                    cpu: 1.0,
                    memory: 50_000_000,
                });
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), Pm2Error>> {
        Box::pin(async move {
            if self.call(format!("pm2 delete {name}")) {
                return dead().await;
            }
            self.lock().procs.retain(|p| p.name != name);
            Ok(())
        })
    }

    fn save(&self) -> BoxFuture<'_, Result<(), Pm2Error>> {
        Box::pin(async move {
            if self.call("pm2 save".into()) {
                return dead().await;
            }
            Ok(())
        })
    }
}

impl Commands for World {
    fn run<'a>(&'a self, spec: &'a Spec) -> BoxFuture<'a, Result<Output, ExecError>> {
        Box::pin(async move {
            let command = spec.args.last().cloned().unwrap_or_default();
            if self.call(format!("cmd {command}")) {
                return dead().await;
            }
            let for_commit = spec
                .env
                .get("SHIPSHAPE_COMMIT")
                .cloned()
                .unwrap_or_default();
            if self.lock().failing.contains(&(for_commit, command.clone())) {
                return Err(ExecError::Failed {
                    command: command.clone(),
                    code: Some(1),
                    tail: format!("{command}: it failed on purpose\n"),
                });
            }
            if command == "npm ci" {
                let _ = std::fs::create_dir_all(spec.cwd.join("node_modules"));
            }
            let stdout = self.database(&command, &spec.env);
            Ok(Output {
                code: Some(0),
                stdout,
                tail: String::new(),
                elapsed: Duration::ZERO,
            })
        })
    }
}

impl Probes for World {
    fn probe(&self, checks: Vec<Check>) -> BoxFuture<'_, Vec<CheckResult>> {
        if self.call("probe".into()) {
            return Box::pin(dead());
        }
        let commit = self.live_commit().unwrap_or_default();
        let pass = {
            let mut w = self.lock();
            match w.health.get_mut(&commit) {
                Some((first, _)) if !first.is_empty() => first.remove(0),
                Some((_, then)) => *then,
                None => true,
            }
        };
        let results = checks
            .into_iter()
            .map(|c| (c.name.clone(), pass && c.name != "strict"))
            .map(|(name, pass)| CheckResult {
                name,
                state: if pass {
                    ProbeState::Pass
                } else {
                    ProbeState::Fail
                },
                detail: if pass { "status 200" } else { "status 500" }.into(),
                latency_ms: 1,
            })
            .collect();
        Box::pin(async move { results })
    }
}

impl Source for World {
    fn is_remote(&self) -> bool {
        false
    }
    fn fetch(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async { Ok(String::new()) })
    }
    fn snapshot<'a>(&'a self, _: Option<&'a str>) -> BoxFuture<'a, Result<Snapshot, SourceError>> {
        Box::pin(async {
            Ok(Snapshot {
                commit: String::new(),
                files: Vec::new(),
            })
        })
    }
    fn latest_document<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Option<(String, Option<String>)>> {
        let latest = self.lock().latest.clone();
        Box::pin(async move { latest })
    }
    fn verify_trusted<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, crate::source::trust::Untrusted>> {
        Box::pin(async { Ok("fake".into()) })
    }
    fn descends<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }
    fn checkout<'a>(
        &'a self,
        _: &'a App,
        commit: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            if self.call(format!("git checkout {}", &commit[..2])) {
                return dead().await;
            }
            let io = |e| SourceError::Io {
                what: "fake checkout".into(),
                source: e,
            };
            std::fs::create_dir_all(dest).map_err(io)?;
            std::fs::write(dest.join(".commit"), commit).map_err(io)?;
            Ok(())
        })
    }
    fn lockfile<'a>(&'a self, _: &'a App) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// Time that passes only when someone sleeps: a verification's intervals and deadlines,
/// and a replace's settle times, cost nothing.
#[derive(Debug)]
struct FakeClock {
    start: chrono::DateTime<chrono::Utc>,
    nanos: Arc<AtomicU64>,
}

impl Clock for FakeClock {
    fn now(&self) -> shipshape_spec::Timestamp {
        let t =
            self.start + chrono::Duration::nanoseconds(self.nanos.load(Ordering::SeqCst) as i64);
        t.into()
    }
    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.nanos.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
        Box::pin(tokio::task::yield_now())
    }
}

// ---------------------------------------------------------------------------------------
// The app, the controller on fakes, and what a row does.

const APP: &str = "demo";

/// A 40-character app commit from a two-letter name ("aa" → "aaaa…").
fn commit(name: &str) -> String {
    name.repeat(20)
}

/// The config commit that declares app commit `name`.
fn config_commit(name: &str) -> String {
    format!("{:f<40}", format!("c0{name}"))
}

fn document(root: &Path, name: &str, tweak: fn(&mut App)) -> App {
    let mut app = super::fixtures::app(&commit(name));
    app.spec.releases.root = root.display().to_string();
    let health = &mut app.spec.health;
    health.interval = "2s".parse().expect("a duration");
    (health.success_threshold, health.failure_threshold) = (3, 3);
    health.progress_deadline = "1m".parse().expect("a duration");
    health.startup_grace = Some("0s".parse().expect("a duration"));
    app.spec.rollback.auto = true;
    app.spec.rollback.window = "30m".parse().expect("a duration");
    tweak(&mut app);
    app
}

/// One thing that happens to the app.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// A pass with the document at app commit `name`.
    Roll(&'static str),
    /// A pass with that document that stops (as a killed controller) at the n-th such call.
    CrashAt(&'static str, &'static str, usize),
    /// `n` rounds of the health monitor.
    Monitor(usize),
    /// A CLI pin of revision `n` (as the API records it), before the next pass.
    Pin(u64),
    /// A CLI pin of revision `n` recorded while the next pass runs (at its first pm2 start).
    PinMidPass(u64),
    /// `shipshape unpin`.
    Unpin,
    /// `shipshape retry` (every quarantined commit).
    Retry,
    /// A newer document lands in the config repo (a verification in progress sees it).
    Newer,
    /// ... and is reverted: the repo says again what the last pass read.
    Older,
    /// Someone deletes the app's pm2 processes by hand.
    Drift,
    /// A new config commit for app commit `name` that only adds a check named so (a check
    /// named `strict` always fails; any other answers as the release does).
    AddCheck(&'static str, &'static str),
}

/// How the last pass must end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Ready,
    NotReady(Phase),
    Superseded,
}

/// One scenario.
struct Row {
    name: &'static str,
    /// The document, changed for the row (modes, rollback settings, hooks …).
    tweak: fn(&mut App),
    /// Per app commit: its first rounds (true: passing), then every later round.
    health: &'static [(&'static str, &'static [bool], bool)],
    /// Commands that fail: (for the app commit, the command).
    failing: &'static [(&'static str, &'static str)],
    acts: &'static [Act],
    /// The kinds of the steps the last pass ran, in order.
    steps: &'static [&'static str],
    end: End,
    /// Each revision's outcome after the last pass, in order.
    outcomes: &'static [Outcome],
    /// The live revision after the last pass.
    live: Option<u64>,
    /// The app commits whose config commits are quarantined.
    quarantined: &'static [&'static str],
    /// The database's level after the last pass (rows with migrations).
    level: Option<&'static str>,
}

fn keep(_: &mut App) {}
fn auto_off(a: &mut App) {
    a.spec.rollback.auto = false;
}
fn window_zero(a: &mut App) {
    a.spec.rollback.window = "0s".parse().expect("a duration");
}
fn with_hooks(a: &mut App) {
    a.spec.hooks.after_switch = vec!["reload-nginx".into(), "warm-cache".into()];
}
fn fork_mode(a: &mut App) {
    a.spec.processes[0].exec_mode = Some(shipshape_spec::app::ExecMode::Fork);
    a.spec.processes[0].instances = Some(shipshape_spec::app::Instances::Count(1));
}
fn failure_threshold_one(a: &mut App) {
    a.spec.health.failure_threshold = 1;
}
fn success_threshold_one(a: &mut App) {
    a.spec.health.success_threshold = 1;
}
/// Migrations through the `command` driver; app commit "aa" is level 001, "bb" 002 …
fn migrations(a: &mut App, on_revert: &str, backup: bool) {
    let n = match &a.spec.source.commit[..2] {
        "aa" => 1,
        "bb" => 2,
        _ => 3,
    };
    let mut m = serde_json::json!({
        "driver": "command", "level": format!("{n:03}"), "onRevert": on_revert,
        "command": { "status": "db-status", "up": "db-up", "down": "db-down" },
        "restore": "db-restore",
    });
    if backup {
        m["backup"] = "db-backup".into();
    }
    a.spec.migrations = Some(serde_json::from_value(m).expect("migrations"));
}
fn migrate_down(a: &mut App) {
    migrations(a, "down", false);
}
fn migrate_keep(a: &mut App) {
    migrations(a, "keep", false);
}
fn migrate_restore(a: &mut App) {
    migrations(a, "restore", true);
}
fn migrate_restore_no_backup(a: &mut App) {
    migrations(a, "restore", false);
}

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

// ---------------------------------------------------------------------------------------
// The rows.

use Act::*;
use Outcome::{Failed, Healthy, Reverted, Superseded as Sup};

/// A first rollout's steps.
#[rustfmt::skip]
const FIRST: &[&str] = &["fetch", "install", "build", "switch", "pm2-start", "pm2-save", "verify"];
/// A new app commit's steps, the processes running.
#[rustfmt::skip]
const NEXT: &[&str] = &["fetch", "install", "build", "switch", "pm2-reload", "pm2-save", "verify"];

/// A rollout's steps, then a revert's (to the processes of the revision gone back to).
#[rustfmt::skip]
const NEXT_REVERTED: &[&str] = &["fetch", "install", "build", "switch", "pm2-reload", "pm2-save", "verify", "switch", "pm2-reload", "pm2-save", "verify"];
/// Going to a prepared release: the pin, a revert's retry.
#[rustfmt::skip]
const BACK: &[&str] = &["switch", "pm2-reload", "pm2-save", "verify"];
const NONE: &[&str] = &[];
const FAILS: &[bool] = &[];
const PASS_3: &[bool] = &[true, true, true];
const FAIL_2: &[bool] = &[false, false];

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use End::{NotReady, Ready, Superseded};
    use Phase::{Degraded, Failed as PFailed};
    let r = |name, tweak, health, failing, acts, steps, end, outcomes, live, quarantined| Row {
        name, tweak, health, failing, acts, steps, end, outcomes, live, quarantined, level: None,
    };
    let m = |level, row: Row| Row { level: Some(level), ..row };
    vec![
        // Rollouts that go well.
        r("a first rollout runs every step and is healthy",
          keep, &[], &[], &[Roll("aa")], FIRST, Ready, &[Healthy], Some(1), &[]),
        r("a second pass with nothing changed runs no step",
          keep, &[], &[], &[Roll("aa"), Roll("aa")], NONE, Ready, &[Healthy], Some(1), &[]),
        r("a new app commit is prepared beside the live release and reloaded",
          keep, &[], &[], &[Roll("aa"), Roll("bb")], NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("in fork mode a new app commit is reloaded too",
          fork_mode, &[], &[], &[Roll("aa"), Roll("bb")], NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("after-switch hooks run after pm2's list is saved, before verification",
          with_hooks, &[], &[], &[Roll("aa")],
          &["fetch", "install", "build", "switch", "pm2-start", "pm2-save", "hook", "hook", "verify"],
          Ready, &[Healthy], Some(1), &[]),
        r("hooks whose inputs did not change do not run again",
          with_hooks, &[], &[], &[Roll("aa"), Roll("aa")], NONE, Ready, &[Healthy], Some(1), &[]),
        r("checks failing fewer rounds in a row than failureThreshold do not fail the rollout",
          keep, &[("bb", FAIL_2, true)], &[], &[Roll("aa"), Roll("bb")], NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("processes deleted by hand are started again",
          keep, &[], &[], &[Roll("aa"), Drift, Roll("aa")], &["pm2-start", "pm2-save", "verify"], Ready, &[Healthy], Some(1), &[]),
        // Fail fast, and going back.
        r("checks failing failureThreshold rounds fail the rollout at once and it is reverted",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT_REVERTED, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("with failureThreshold 1 one failing round fails the rollout",
          failure_threshold_one, &[("bb", &[false], true)], &[], &[Roll("aa"), Roll("bb")],
          NEXT_REVERTED, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("passing rounds short of successThreshold, then failing rounds, fail the rollout",
          keep, &[("bb", &[true, true], false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT_REVERTED, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("with successThreshold 1 one passing round makes the rollout healthy",
          success_threshold_one, &[("bb", &[true], false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("a revert whose revision fails too stops Degraded",
          keep, &[("aa", PASS_3, false), ("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT_REVERTED, NotReady(Degraded), &[Healthy, Failed], Some(1), &["bb"]),
        r("a first rollout that fails has nothing to go back to: Degraded",
          keep, &[("aa", FAILS, false)], &[], &[Roll("aa")],
          FIRST, NotReady(Degraded), &[Failed], Some(1), &["aa"]),
        r("with rollback.auto off a failed rollout stays live, Degraded, not quarantined",
          auto_off, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT, NotReady(Degraded), &[Healthy, Failed], Some(2), &[]),
        r("a build that fails leaves the live release untouched",
          keep, &[], &[("bb", "npm run build")], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build"], NotReady(PFailed), &[Healthy, Failed], Some(1), &["bb"]),
        r("an install that fails leaves the live release untouched",
          keep, &[], &[("bb", "npm ci")], &[Roll("aa"), Roll("bb")],
          &["fetch", "install"], NotReady(PFailed), &[Healthy, Failed], Some(1), &["bb"]),
        r("a first build that fails leaves nothing live",
          keep, &[], &[("aa", "npm run build")], &[Roll("aa")],
          &["fetch", "install", "build"], NotReady(PFailed), &[Failed], None, &["aa"]),
        r("a hook that fails after the switch is reverted, the hooks run again after switching back",
          with_hooks, &[], &[("bb", "warm-cache")], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "switch", "pm2-reload", "pm2-save", "hook", "hook",
            "switch", "pm2-reload", "pm2-save", "hook", "hook", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        // Quarantine.
        r("a reverted config commit is not applied again",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb"), Roll("bb")],
          NONE, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("a failed build's config commit is not built again",
          keep, &[], &[("bb", "npm run build")], &[Roll("aa"), Roll("bb"), Roll("bb")],
          NONE, NotReady(PFailed), &[Healthy, Failed], Some(1), &["bb"]),
        r("while a commit is quarantined drift is repaired towards the last good revision",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb"), Drift, Roll("bb")],
          &["pm2-start", "pm2-save", "verify"], NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("a new config commit after a quarantine is applied",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb"), Roll("cc")],
          NEXT, Ready, &[Healthy, Reverted, Healthy], Some(3), &["bb"]),
        r("retry applies a quarantined commit again, as the same revision",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb"), Retry, Roll("bb")],
          &["switch", "pm2-reload", "pm2-save", "verify", "switch", "pm2-reload", "pm2-save", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        // Pins.
        r("a pin converges to the pinned revision",
          keep, &[], &[], &[Roll("aa"), Roll("bb"), Pin(1), Roll("bb")],
          BACK, Ready, &[Healthy, Healthy], Some(1), &[]),
        r("a pinned app does not follow a new config commit",
          keep, &[], &[], &[Roll("aa"), Pin(1), Roll("bb")],
          NONE, Ready, &[Healthy], Some(1), &[]),
        r("unpinning follows the document again",
          keep, &[], &[], &[Roll("aa"), Roll("bb"), Pin(1), Roll("bb"), Unpin, Roll("bb")],
          BACK, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("a pin of a revision no longer in the history stops the pass",
          keep, &[], &[], &[Roll("aa"), Pin(7), Roll("aa")],
          NONE, NotReady(PFailed), &[Healthy], Some(1), &[]),
        r("a pinned revision that fails is not reverted: Degraded",
          keep, &[("aa", PASS_3, false)], &[], &[Roll("aa"), Roll("bb"), Pin(1), Roll("bb")],
          BACK, NotReady(Degraded), &[Healthy, Healthy], Some(1), &[]),
        r("a pin recorded mid-pass stops it before its next live step",
          keep, &[], &[], &[Roll("aa"), PinMidPass(1), Roll("bb")],
          &["fetch", "install", "build", "switch", "pm2-reload"], Superseded, &[Healthy, Sup], Some(2), &[]),
        r("after a pin stopped a pass the next pass converges to the pin",
          keep, &[], &[], &[Roll("aa"), PinMidPass(1), Roll("bb"), Roll("bb")],
          BACK, Ready, &[Healthy, Sup], Some(1), &[]),
        r("a pin of the revision being rolled out does not stop its steps; its verification stops on the request",
          keep, &[], &[], &[Roll("aa"), PinMidPass(2), Roll("bb")],
          NEXT, Superseded, &[Healthy, Sup], Some(2), &[]),
        // A pinned revision whose verification the pin request stopped is verified again
        // while pinned (before, it stayed Progressing for as long as the pin held).
        r("a rollout pinned mid-pass to itself is verified again while pinned and becomes healthy",
          keep, &[], &[], &[Roll("aa"), PinMidPass(2), Roll("bb"), Roll("bb")],
          &["verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        // Newest wins.
        r("a newer document during verification supersedes the rollout",
          keep, &[], &[], &[Roll("aa"), Newer, Roll("bb")],
          NEXT, Superseded, &[Healthy, Sup], Some(2), &[]),
        r("a newer document during a first rollout supersedes it",
          keep, &[], &[], &[Newer, Roll("aa")],
          FIRST, Superseded, &[Sup], Some(1), &[]),
        r("a superseded rollout whose document came back is verified again",
          keep, &[], &[], &[Roll("aa"), Newer, Roll("bb"), Older, Roll("bb")],
          &["verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        // A controller that stopped mid-pass.
        r("resumed after a stop before pm2's list was saved: save and verify",
          keep, &[], &[], &[Roll("aa"), CrashAt("bb", "pm2 save", 2), Roll("bb")],
          &["pm2-save", "verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        r("resumed after a stop mid-build: prepared again from fetch",
          keep, &[], &[], &[Roll("aa"), CrashAt("bb", "cmd npm run build", 2), Roll("bb")],
          NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("resumed after a stop mid-reload: reload, save, verify",
          keep, &[], &[], &[Roll("aa"), CrashAt("bb", "pm2 start web", 2), Roll("bb")],
          &["pm2-reload", "pm2-save", "verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        r("resumed after a stop mid-verification: verified again",
          keep, &[], &[], &[Roll("aa"), CrashAt("bb", "probe", 4), Roll("bb")],
          &["verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        r("resumed after a stop mid-revert: the revert is finished, not the rollout",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), CrashAt("bb", "pm2 start web", 3), Roll("bb")],
          &["pm2-reload", "pm2-save", "verify"], NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        // The monitor's rounds before a rollout.
        r("one failing monitor round before a rollout is no evidence: the failing rollout is blamed",
          keep, &[("aa", &[true, true, true, false], true), ("bb", FAILS, false)], &[],
          &[Roll("aa"), Monitor(1), Roll("bb")],
          NEXT_REVERTED, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("checks failing failureThreshold monitor rounds before a rollout: it is not blamed",
          window_zero, &[("aa", PASS_3, false), ("bb", FAILS, false)], &[],
          &[Roll("aa"), Monitor(3), Roll("bb"), Roll("bb")],
          NEXT, NotReady(Degraded), &[Healthy, Failed], Some(2), &[]),
        r("a regression the monitor saw within rollback.window is reverted",
          keep, &[("bb", PASS_3, false)], &[], &[Roll("aa"), Roll("bb"), Monitor(3), Roll("bb")],
          BACK, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("a regression after rollback.window is not reverted: Degraded",
          window_zero, &[("bb", PASS_3, false)], &[], &[Roll("aa"), Roll("bb"), Monitor(3), Roll("bb")],
          NONE, NotReady(Degraded), &[Healthy, Healthy], Some(2), &[]),
        // A config commit that changes only spec.health.
        r("a commit that only adds a check re-verifies the live release and touches nothing else",
          keep, &[], &[], &[Roll("aa"), AddCheck("aa", "home")],
          &["verify"], Ready, &[Healthy], Some(1), &[]),
        r("a commit that only adds a failing check: the check is suspect, nothing reverted or quarantined",
          keep, &[], &[], &[Roll("aa"), AddCheck("aa", "strict")],
          &["verify"], NotReady(Degraded), &[Healthy], Some(1), &[]),
        r("a suspect check keeps the app Degraded on the next pass, with nothing to apply",
          keep, &[], &[], &[Roll("aa"), AddCheck("aa", "strict"), AddCheck("aa", "strict")],
          NONE, NotReady(Degraded), &[Healthy], Some(1), &[]),
        // Migrations (the command driver, on the fake database).
        m("001", r("a migration runs after the build, before the switch",
          migrate_down, &[], &[], &[Roll("aa")],
          &["fetch", "install", "build", "migrate", "switch", "pm2-start", "pm2-save", "verify"],
          Ready, &[Healthy], Some(1), &[])),
        m("002", r("a backup is taken before the migration",
          migrate_restore, &[], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "backup", "migrate", "switch", "pm2-reload", "pm2-save", "verify"],
          Ready, &[Healthy, Healthy], Some(2), &[])),
        m("001", r("onRevert down: a failed rollout is reverted and migrated down",
          migrate_down, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "migrate", "switch", "pm2-reload", "pm2-save", "verify",
            "switch", "pm2-reload", "pm2-save", "migrate", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"])),
        m("001", r("onRevert restore: the backup the rollout took is restored",
          migrate_restore, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "backup", "migrate", "switch", "pm2-reload", "pm2-save", "verify",
            "switch", "pm2-reload", "pm2-save", "restore", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"])),
        m("002", r("onRevert keep: reverted, the schema stays",
          migrate_keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "migrate", "switch", "pm2-reload", "pm2-save", "verify",
            "switch", "pm2-reload", "pm2-save", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"])),
        m("002", r("onRevert restore without a backup: the revert is refused, Degraded, not quarantined",
          migrate_restore_no_backup, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "migrate", "switch", "pm2-reload", "pm2-save", "verify"],
          NotReady(Degraded), &[Healthy, Failed], Some(2), &[])),
        m("002", r("resumed after a stop after the migration and the switch: not migrated again",
          migrate_down, &[], &[], &[Roll("aa"), CrashAt("bb", "pm2 start web", 2), Roll("bb")],
          &["pm2-reload", "pm2-save", "verify"], Ready, &[Healthy, Healthy], Some(2), &[])),
        r("a regression of a pinned revision is not reverted",
          keep, &[("bb", PASS_3, false)], &[], &[Roll("aa"), Roll("bb"), Pin(2), Roll("bb"), Monitor(3), Roll("bb")],
          NONE, NotReady(Degraded), &[Healthy, Healthy], Some(2), &[]),
    ]
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

//! The fake world behind the ports: one shared [`WorldState`] (what pm2 runs, every call
//! made, which commands fail, what the checks answer, the fake database's level) behind
//! [`World`], which implements [`Pm2Port`], [`Commands`], [`Probes`] and [`Source`]; a
//! [`FakeClock`] whose time passes only when someone sleeps; and the crash points ([`CrashAt`])
//! where a fake call blocks forever, as a controller killed there would stop.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use shipshape_spec::App;
use shipshape_spec::app::Check;
use shipshape_spec::status::{CheckResult, ProbeState};

use crate::exec::{ExecError, Output, Spec};
use crate::pm2::{Instance, Pm2Error};
use crate::ports::{Clock, Commands, Pm2Port, Probes, Source};
use crate::source::{Snapshot, SourceError};

/// Where a fake call blocks forever, as a controller killed there would stop: (the call's
/// label, its n-th occurrence).
type CrashAt = Option<(String, usize)>;

/// Everything the fakes share: what pm2 runs, what was called, what the checks answer.
#[derive(Default)]
pub(super) struct WorldState {
    pub(super) procs: Vec<Instance>,
    next_pm_id: u64,
    next_pid: u64,
    /// Every call made through a port that changes something, in order ("pm2 start web",
    /// "cmd npm ci", "git checkout aaaa…").
    calls: Vec<String>,
    /// Commands that fail: (the app commit they run for, the command's text).
    pub(super) failing: Vec<(String, String)>,
    /// Per app commit: the first rounds' answers (true: pass), then the answer after.
    pub(super) health: HashMap<String, (Vec<bool>, bool)>,
    pub(super) crash_at: CrashAt,
    /// Called at the first `pm2 start` (a request arriving mid-pass).
    pub(super) on_start: Option<Box<dyn FnOnce() + Send>>,
    /// What the config repo's tip says about the watched document (a newer one).
    pub(super) latest: Option<(String, Option<String>)>,
    /// Where the releases are: the probes read `current` to know what answers.
    pub(super) root: PathBuf,
    /// The fake database's migration level (the `command` driver's `db-*` commands).
    pub(super) level: Option<String>,
    /// The level saved by each backup file (`db-backup`), for `db-restore`.
    backups: HashMap<String, Option<String>>,
}

#[derive(Clone, Default)]
pub(super) struct World(Arc<Mutex<WorldState>>, pub(super) Arc<tokio::sync::Notify>);

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("World")
    }
}

impl World {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, WorldState> {
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
                    logs: Default::default(),
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
pub(super) struct FakeClock {
    pub(super) start: chrono::DateTime<chrono::Utc>,
    pub(super) nanos: Arc<AtomicU64>,
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

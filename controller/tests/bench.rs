//! The benchmark behind `hack/bench.sh` (ignored in `cargo test`): every number is
//! measured in the same run as its baseline, on the same machine, and reported as a ratio.
//!
//! The app is shaped like the seed's PromptHub (`examples/prompthub-next`): Next.js (app
//! router) built with `next build`, an `/api/health` route reading PostgreSQL, dbmate
//! migrations, two instances under pm2 cluster mode. Its dependencies come from the npm
//! registry (npm's cache is kept warm between runs).
//!
//! - converge time per kind of change (env only, code only, dependency, migration,
//!   instances), each under load, against the seed checklist's full procedure scripted on
//!   the same change, app and machine (git reset, npm install, dbmate migrate, npm run
//!   build, pm2 delete + start, curl /api/health until healthy), also under load;
//! - the revert from a broken commit (from the broken revision live to the old one
//!   verified again) against the checklist's manual rollback (which rebuilds);
//! - failed requests, p99 latency and the achieved request rate during each of those;
//! - detection latency: commit → pass start, local (inotify) and remote with a webhook,
//!   against the peers' default poll intervals (reference lines, not runs);
//! - the controller's idle CPU (with its children) and memory over 60 s, at the default
//!   health interval, and a no-op `run --once` with 1, 10 and 100 apps (whole process);
//! - the stock Next.js app (`examples/stock-next`: `next start`, no custom server, no
//!   shutdown code) in pm2 fork mode, in place and in traffic mode behind a real nginx
//!   (`spec.traffic`), under load on `/` through nginx's public port: converge time and
//!   failed requests for code, env, removed env and instances 1 → 2; a release whose health
//!   fails from its first request (how long it served users: every answer names its
//!   version); a release that passes on its slot and fails through nginx (verdict → the old
//!   release serving alone, from the record's failed `verify` to the last answer not from
//!   the old version). `SHIPSHAPE_BENCH_ONLY=stock-next` runs only that scenario;
//! - a fleet rollout in waves (`spec.rollout`): three controllers on this machine following
//!   one config repo, a real Prometheus scraping them every second, the example app: the
//!   time for a good commit to reach every host, and how many hosts served a broken commit
//!   (polled every 100 ms on each host's app, and pm2's processes), with waves (a canary,
//!   then the rest after a 5 s soak) against the same fleet without `spec.rollout`. It
//!   writes target/bench/fleet.json on its own; `SHIPSHAPE_BENCH_ONLY=fleet` runs only it.
//!
//! The measured controller is `SHIPSHAPE_TEST_BIN` when set (hack/bench.sh builds a release
//! binary), this build's otherwise; the context records which profile it was.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{World, free_port, git, pm2_bin, wait_for};
use shipshape_spec::status::{Outcome, Phase};

/// The request rate the load generator aims at during every rollout and revert.
const RATE: u32 = 220;
/// What the load generator requests: a dynamic route of the app that needs no database.
const LOAD_PATH: &str = "/api/ping";

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn ratio(base: f64, ours: f64) -> f64 {
    (base / ours * 10.0).round() / 10.0
}

/// One HTTP/1.0 GET on 127.0.0.1:`port`: (status, body), or None when nothing answers
/// within 5 s.
fn request(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.get(9..12)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn healthy(port: u16) -> bool {
    request(port, "/api/health").is_some_and(|(s, b)| s == 200 && b.contains("\"status\":\"ok\""))
}

/// Requests at a fixed rate from 64 workers, each paced on its own schedule (catching up
/// when a slow answer made it late), counting failures (no answer within 5 s, not 200, or
/// not the app's body) and latencies, until stopped. Closed loop: the rate holds while
/// answers take under 64 / rate seconds (290 ms at 220 req/s); an app slower than that
/// gets fewer requests, and the achieved rate recorded says so. (An open loop, a thread per
/// request on schedule, was tried: on this machine it piled requests onto a saturated app
/// until its health checks timed out.)
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Option<Duration>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
}

impl Load {
    fn start(port: u16, rate: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Option<Duration>>>> = Arc::default();
        let workers = 64;
        let period = Duration::from_secs_f64(workers as f64 / rate as f64);
        let started = Instant::now();
        let mut threads = Vec::new();
        for i in 0..workers {
            let (stop, samples) = (stop.clone(), samples.clone());
            threads.push(std::thread::spawn(move || {
                let mut next = started + period.mul_f64(i as f64 / workers as f64);
                while !stop.load(Ordering::Relaxed) {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let t0 = Instant::now();
                    let ok = request(port, LOAD_PATH)
                        .is_some_and(|(s, b)| s == 200 && b.contains(" from "));
                    samples.lock().unwrap().push(ok.then(|| t0.elapsed()));
                    next += period;
                }
            }));
        }
        Load {
            stop,
            samples,
            threads,
            started,
        }
    }

    /// {requests, failed, p99_ms, rate (achieved, requests per second)}
    fn finish(self) -> serde_json::Value {
        let elapsed = self.started.elapsed();
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let samples = self.samples.lock().unwrap();
        let failed = samples.iter().filter(|s| s.is_none()).count();
        let mut ok: Vec<Duration> = samples.iter().flatten().cloned().collect();
        ok.sort();
        let p99 = ok
            .get(ok.len().saturating_sub(1) * 99 / 100)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        serde_json::json!({
            "requests": samples.len(),
            "failed": failed,
            "p99_ms": (p99 * 10.0).round() / 10.0,
            "rate": (samples.len() as f64 / elapsed.as_secs_f64()).round(),
        })
    }
}

/// Run `cmd` in `dir` with a deadline, its output into `log`; panics with the log's tail
/// when it fails or times out (its process group is killed then).
fn run_logged(mut cmd: Command, what: &str, log: &Path, deadline: Duration) {
    use std::os::unix::process::CommandExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if t0.elapsed() > deadline {
            // SAFETY: signalling the process group of the child we started.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_none_or(|s| !s.success()) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{what}: {} after {:?}\n{}",
            match status {
                None => "timed out".to_string(),
                Some(s) => s.to_string(),
            },
            t0.elapsed(),
            tail.join("\n")
        );
    }
}

/// The seed checklist, scripted on a live checkout: git fetch + reset --hard, npm install,
/// dbmate migrate, npm run build, pm2 delete + start, pm2 save, then curl /api/health until
/// it answers healthy. Its manual rollback: pm2 stop, git reset --hard to the old commit,
/// npm install, npm run build, pm2 delete + start, curl. Every step is timed.
struct Seed {
    dir: PathBuf,
    pm2_home: PathBuf,
    eco: PathBuf,
    log: PathBuf,
    port: u16,
    db: String,
}

/// A timed run of the procedure: its wall time and each step's.
struct Timed {
    total: Duration,
    steps: Vec<(&'static str, f64)>,
}

impl Timed {
    fn steps_json(&self) -> serde_json::Value {
        self.steps
            .iter()
            .map(|(s, t)| serde_json::json!({"step": s, "s": t}))
            .collect()
    }
}

impl Seed {
    fn new(w: &World, db: String) -> Seed {
        let dir = w.root().join("seed-app");
        git(
            w.root(),
            &[
                "clone",
                "-q",
                w.app_repo().to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        );
        Seed {
            dir,
            pm2_home: w.root().join("seed-pm2"),
            eco: w.root().join("seed-ecosystem.json"),
            log: w.root().join("seed.log"),
            port: free_port(),
            db,
        }
    }

    /// The ecosystem file the procedure starts (the seed's `ecosystem.config.js`).
    fn write_ecosystem(&self, instances: u32, greeting: &str) {
        let eco = serde_json::json!({"apps": [{
            "name": "prompthub", "script": "server.js", "cwd": self.dir,
            "instances": instances, "exec_mode": "cluster",
            "listen_timeout": 15000, "kill_timeout": 5000,
            "env": {"PORT": self.port, "NODE_ENV": "production", "NEXT_TELEMETRY_DISABLED": "1",
                    "GREETING": greeting, "DATABASE_URL": self.db},
        }]});
        std::fs::write(&self.eco, eco.to_string()).unwrap();
    }

    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(&self.dir)
            .env("PM2_HOME", &self.pm2_home)
            .env("NEXT_TELEMETRY_DISABLED", "1")
            .env("DATABASE_URL", &self.db);
        c
    }

    fn step(&self, timed: &mut Timed, name: &'static str, cmds: Vec<Command>, deadline: u64) {
        let t0 = Instant::now();
        for c in cmds {
            run_logged(c, name, &self.log, Duration::from_secs(deadline));
        }
        timed.steps.push((name, secs(t0.elapsed())));
    }

    fn pm2(&self, args: &[&str]) -> Command {
        self.cmd(pm2_bin(), args)
    }

    /// `pm2 delete` when the process exists (the checklist's `|| true`).
    fn pm2_delete(&self) {
        let _ = self.pm2(&["delete", "prompthub"]).output();
    }

    fn install(&self, t: &mut Timed) {
        self.step(
            t,
            "npm install",
            vec![self.cmd(
                "npm",
                &["install", "--no-audit", "--no-fund", "--loglevel=error"],
            )],
            600,
        );
    }

    fn build(&self, t: &mut Timed) {
        self.step(
            t,
            "npm run build",
            vec![self.cmd("npm", &["run", "build"])],
            900,
        );
    }

    fn restart(&self, t: &mut Timed) {
        let t0 = Instant::now();
        self.pm2_delete();
        run_logged(
            self.pm2(&["start", self.eco.to_str().unwrap()]),
            "pm2 start",
            &self.log,
            Duration::from_secs(60),
        );
        run_logged(
            self.pm2(&["save"]),
            "pm2 save",
            &self.log,
            Duration::from_secs(60),
        );
        t.steps
            .push(("pm2 delete + start + save", secs(t0.elapsed())));
    }

    /// curl /api/health until healthy (or, for a broken commit, until it answers at all).
    fn curl(&self, t: &mut Timed, expect_healthy: bool) {
        let t0 = Instant::now();
        wait_for(
            "the seed app's health",
            Duration::from_secs(180),
            || match request(self.port, "/api/health") {
                Some((200, b)) if b.contains("\"status\":\"ok\"") => Some(()),
                Some(_) if !expect_healthy => Some(()),
                _ => None,
            },
        );
        t.steps.push(("curl /api/health", secs(t0.elapsed())));
    }

    /// The full procedure for `commit`.
    fn deploy(&self, commit: &str, instances: u32, greeting: &str, expect_healthy: bool) -> Timed {
        let t0 = Instant::now();
        let mut t = Timed {
            total: Duration::ZERO,
            steps: Vec::new(),
        };
        self.write_ecosystem(instances, greeting);
        self.step(
            &mut t,
            "git fetch + reset --hard",
            vec![
                self.cmd("git", &["fetch", "-q", "origin"]),
                self.cmd("git", &["reset", "-q", "--hard", commit]),
            ],
            120,
        );
        self.install(&mut t);
        self.step(
            &mut t,
            "dbmate migrate",
            vec![self.cmd(
                common::dbmate_bin(),
                &[
                    "--migrations-dir",
                    "db/migrations",
                    "--no-dump-schema",
                    "migrate",
                ],
            )],
            120,
        );
        self.build(&mut t);
        self.restart(&mut t);
        self.curl(&mut t, expect_healthy);
        t.total = t0.elapsed();
        t
    }

    /// The manual rollback to `commit` (checklist 6.2): pm2 stop, git reset --hard, npm
    /// install, npm run build, start again, curl.
    fn rollback(&self, commit: &str, instances: u32, greeting: &str) -> Timed {
        let t0 = Instant::now();
        let mut t = Timed {
            total: Duration::ZERO,
            steps: Vec::new(),
        };
        self.write_ecosystem(instances, greeting);
        self.step(
            &mut t,
            "pm2 stop",
            vec![self.pm2(&["stop", "prompthub"])],
            60,
        );
        self.step(
            &mut t,
            "git reset --hard",
            vec![self.cmd("git", &["reset", "-q", "--hard", commit])],
            120,
        );
        self.install(&mut t);
        self.build(&mut t);
        self.restart(&mut t);
        self.curl(&mut t, true);
        t.total = t0.elapsed();
        t
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        let _ = self.pm2(&["kill"]).output();
    }
}

fn once(w: &World, env: &[(&str, &str)]) -> Duration {
    let t0 = Instant::now();
    let out = w.shipshape(&["run", "--once"], env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t0.elapsed()
}

/// What one desired state of the bench app sets.
#[derive(Clone)]
struct Desired {
    commit: String,
    greeting: String,
    level: String,
    instances: u32,
    /// Health round interval (the bench's rollouts: 300ms; the idle measure: the default 2s).
    interval: &'static str,
}

/// The bench app's document (like examples/prompthub/prompthub-next.yaml, on this world's
/// paths and ports).
fn document(w: &World, env_file: &Path, d: &Desired) -> String {
    format!(
        r#"# yaml-language-server: $schema=../../schemas/app.schema.json
apiVersion: shipshape/v1alpha1
kind: App
metadata:
  name: {name}
spec:
  source:
    repository: {repo}
    commit: {commit}
  releases:
    root: {root}
  envFile: {env}
  build:
    install: npm ci --no-audit --no-fund --loglevel=error
    steps:
      - npm run build
    env:
      NEXT_TELEMETRY_DISABLED: "1"
    cache:
      - .next/cache
    timeout: 15m
  migrations:
    driver: dbmate
    level: "{level}"
  processes:
    - name: {name}-web
      script: server.js
      instances: {instances}
      exec_mode: cluster
      listen_timeout: 15000
      kill_timeout: 5000
      env:
        PORT: {port}
        NODE_ENV: production
        NEXT_TELEMETRY_DISABLED: "1"
        GREETING: {greeting}
  health:
    checks:
      - name: api
        http:
          url: http://127.0.0.1:{port}/api/health
          expectStatus: 200
          bodyContains: '"status":"ok"'
        # Under load on 2 shared cores a Next.js answer can take seconds: a round without
        # an answer in 5 s fails.
        timeout: 5s
    interval: {interval}
    # server.js listens only once Next is prepared, and pm2's cluster reload returns only
    # when each new worker listens: the processes are up when verification starts.
    startupGrace: 1s
    successThreshold: 2
    failureThreshold: 3
    progressDeadline: 3m
"#,
        name = w.name,
        repo = w.app_repo().display(),
        root = w.releases_root().display(),
        env = env_file.display(),
        commit = d.commit,
        level = d.level,
        instances = d.instances,
        port = w.port,
        greeting = d.greeting,
        interval = d.interval,
    )
}

/// Replace the world's app repo content with examples/prompthub-next; returns the commit.
fn use_next_app(w: &World) -> String {
    let app = w.app_repo();
    git(&app, &["rm", "-rqf", "."]);
    common::copy_dir(&common::workspace().join("examples/prompthub-next"), &app);
    let _ = std::fs::remove_dir_all(app.join(".next"));
    git(&app, &["add", "-A"]);
    git(&app, &["commit", "-qm", "the PromptHub-shaped Next.js app"]);
    w.app_head()
}

/// Edit `lib/release.js` (a code-only change): the release name, and whether it is broken.
fn commit_release(w: &World, name: &str, broken: bool) -> String {
    let path = w.app_repo().join("lib/release.js");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("export const RELEASE") {
            out.push_str(&format!("export const RELEASE = '{name}';\n"));
        } else if line.starts_with("export const BROKEN") {
            out.push_str(&format!("export const BROKEN = {broken};\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_ne!(out, text, "lib/release.js changed shape");
    std::fs::write(&path, out).unwrap();
    git(
        &w.app_repo(),
        &["commit", "-qam", &format!("release {name}")],
    );
    w.app_head()
}

/// CPU seconds (utime + stime, plus cutime + cstime when `children`) of `pid`.
fn cpu_secs(pid: u32, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let tick = |i: usize| fields[i].parse::<f64>().unwrap_or(0.0) / 100.0;
    Some(tick(11) + tick(12) + if children { tick(13) + tick(14) } else { 0.0 })
}

/// The live descendants of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        // Each thread lists the children it started.
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for c in text.split_whitespace().filter_map(|c| c.parse().ok()) {
                all.push(c);
                frontier.push(c);
            }
        }
    }
    all
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn pass_secs(w: &World, app: &str) -> f64 {
    let p = w.store().load(app).unwrap().last_pass.unwrap();
    let a = p.started_at.datetime();
    let b = p.finished_at.datetime();
    b.signed_duration_since(a).num_milliseconds() as f64 / 1000.0
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The build profile of the measured controller binary: `release` when it is a release
/// build (`SHIPSHAPE_TEST_BIN=target/release/shipshape`), else this test build's.
fn profile() -> &'static str {
    let bin = common::shipshape_bin();
    let dir = bin.parent().and_then(|p| p.file_name());
    match dir.and_then(|d| d.to_str()) {
        Some("release") => "release",
        Some("debug") => "dev",
        // `cargo test` builds with the dev profile's settings unless given --release.
        _ if cfg!(debug_assertions) => "dev",
        _ => "release",
    }
}

/// Where and on what this run was measured: when, the commit (and whether the tree had
/// uncommitted changes), the build profile, and the machine.
fn context(started_at: &str) -> serde_json::Value {
    let root = common::workspace();
    let commit = git(&root, &["rev-parse", "--short=7", "HEAD"]);
    let dirty = !git(&root, &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    serde_json::json!({
        "started_at": started_at,
        "finished_at": now(),
        "commit": commit,
        "dirty": dirty,
        "profile": profile(),
        "binary": common::shipshape_bin().display().to_string(),
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cpu": cpu,
            "memory_bytes": memory_kib * 1024,
        },
        "recorded_by": "controller/tests/bench.rs",
    })
}

/// The context a run records is read from this checkout and this machine (the bench itself
/// only runs from hack/bench.sh; this runs in CI).
#[test]
fn the_recorded_context_names_the_commit_profile_and_machine() {
    let started = now();
    let c = context(&started);
    let head = git(&common::workspace(), &["rev-parse", "HEAD"]);
    let commit = c["commit"].as_str().unwrap();
    assert!(commit.len() >= 7 && head.starts_with(commit), "{c}");
    assert!(c["dirty"].is_boolean(), "{c}");
    assert_eq!(c["started_at"], started.as_str());
    assert!(
        c["finished_at"].as_str().unwrap() >= started.as_str(),
        "{c}"
    );
    if std::env::var_os("SHIPSHAPE_TEST_BIN").is_none() {
        assert_eq!(c["profile"], "dev", "cargo test without --release");
    }
    let m = &c["machine"];
    assert!(m["cores"].as_u64().unwrap() >= 1, "{c}");
    assert!(m["memory_bytes"].as_u64().unwrap() > 1 << 20, "{c}");
    assert!(!m["cpu"].as_str().unwrap().is_empty(), "{c}");
    assert_ne!(m["cpu"], "unknown CPU", "{c}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore = "the benchmark: run hack/bench.sh"]
fn bench() {
    let mut report = serde_json::Map::new();
    let started_at = now();
    match std::env::var("SHIPSHAPE_BENCH_ONLY").as_deref() {
        Ok("stock-next") => {
            // One scenario alone (hack/bench.sh --only stock-next): its own file, never the
            // recorded run.
            report.insert("stock_next".into(), stock_next());
            return write_result("stock-next.json", report, &started_at);
        }
        Ok("fleet") => {
            // The fleet scenario alone (hack/bench.sh --only fleet): its own file, which
            // hack/bench.sh records (docs/bench/fleet.json).
            report.insert("fleet".into(), fleet());
            return write_result("fleet.json", report, &started_at);
        }
        Ok(other) => panic!("SHIPSHAPE_BENCH_ONLY={other}: no such scenario (stock-next, fleet)"),
        Err(_) => {}
    }
    let w = World::new("bench");
    assert!(
        std::env::var("SHIPSHAPE_TEST_DATABASE_URL").is_ok(),
        "the benchmark needs PostgreSQL (hack/bench.sh starts one)"
    );
    let v1 = use_next_app(&w);
    let db = common::fresh_database("bench-secret");
    let seed_db = common::fresh_database("seed-secret");
    let env_file = w.write_env_file(&format!("DATABASE_URL={db}\n"));
    let mut d = Desired {
        commit: v1.clone(),
        greeting: "hello".into(),
        level: "20260101000000".into(),
        instances: 2,
        interval: "300ms",
    };
    let commit_doc = |d: &Desired| w.commit_config(&document(&w, &env_file, d));
    let seed = Seed::new(&w, seed_db);

    // First deploy of both (not under load: nothing serves yet).
    commit_doc(&d);
    let ours_first = once(&w, &[]);
    assert!(healthy(w.port));
    let seed_first = seed.deploy(&d.commit, d.instances, &d.greeting, true);
    report.insert(
        "first_deploy".into(),
        serde_json::json!({"shipshape_s": secs(ours_first), "checklist_s": secs(seed_first.total),
            "checklist_steps": seed_first.steps_json()}),
    );

    // Converge per kind of change, each under load, against the full checklist on the same
    // change (also under load).
    let mut kinds = Vec::new();
    for kind in [
        "env only",
        "code only",
        "dependency",
        "migration",
        "instances",
    ] {
        match kind {
            "env only" => d.greeting = "hi".into(),
            "code only" => d.commit = commit_release(&w, "r2", false),
            "dependency" => {
                let out = Command::new("npm")
                    .args([
                        "install",
                        "--package-lock-only",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                        "--save-exact",
                        "ms@2.1.3",
                    ])
                    .current_dir(w.app_repo())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "npm install ms: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                d.commit = w.commit_app_files(&[], "a new dependency: ms");
            }
            "migration" => {
                let m = "-- migrate:up\nCREATE TABLE tags (id serial PRIMARY KEY, name text NOT NULL);\n\n-- migrate:down\nDROP TABLE tags;\n";
                d.commit = w.commit_app_files(
                    &[("db/migrations/20260102000000_create_tags.sql", m)],
                    "a migration: tags",
                );
                d.level = "20260102000000".into();
            }
            "instances" => d.instances = 3,
            _ => unreachable!(),
        }
        commit_doc(&d);
        let load = Load::start(w.port, RATE);
        let ours = once(&w, &[]);
        let ours_load = load.finish();
        let rec = w.record();
        assert!(
            rec.last_pass
                .as_ref()
                .is_some_and(|p| p.steps.iter().any(|s| s.step.as_str() == "verify")),
            "{kind}: the pass verified nothing"
        );
        let steps: Vec<serde_json::Value> = rec
            .last_pass
            .unwrap()
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({"step": s.step.as_str(), "s": s.duration_ms as f64 / 1000.0,
                    "reason": s.reason})
            })
            .collect();
        let load = Load::start(seed.port, RATE);
        let manual = seed.deploy(&d.commit, d.instances, &d.greeting, true);
        let manual_load = load.finish();
        eprintln!(
            "{kind}: shipshape {:.1}s, checklist {:.1}s",
            ours.as_secs_f64(),
            manual.total.as_secs_f64()
        );
        kinds.push(serde_json::json!({
            "kind": kind, "shipshape_s": secs(ours), "checklist_s": secs(manual.total),
            "speedup": ratio(manual.total.as_secs_f64(), ours.as_secs_f64()),
            "steps": steps, "checklist_steps": manual.steps_json(),
            "load": {"shipshape": ours_load, "checklist": manual_load},
        }));
    }
    report.insert("converge".into(), kinds.into());

    // Revert: a commit whose /api/health answers 500. shipshape: from the broken revision
    // live (its pm2 step done) to the old revision verified again, all in one pass, under
    // load; also from the broken commit landing (which includes building it). The
    // checklist: its deploy of the broken commit (not timed), then the manual rollback
    // (which rebuilds), under load.
    let good = d.clone();
    let mut bad = d.clone();
    bad.commit = commit_release(&w, "r3-broken", true);
    commit_doc(&bad);
    let load = Load::start(w.port, RATE);
    let t0 = Instant::now();
    let out = w.shipshape(&["run", "--once"], &[]);
    let ours_whole = t0.elapsed();
    let done = chrono::Utc::now();
    let revert_load = load.finish();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = w.record();
    let reverted = common::revision_of(&rec, &bad.commit);
    assert_eq!(reverted.revision.outcome, Outcome::Reverted);
    assert!(
        healthy(w.port),
        "the old revision is not serving after the revert"
    );
    let pass = rec.last_pass.as_ref().unwrap();
    let live_step = pass
        .steps
        .iter()
        .find(|s| s.step.as_str().starts_with("pm2-"))
        .expect("the broken rollout's pm2 step");
    let live_at = live_step.started_at.datetime()
        + chrono::Duration::milliseconds(live_step.duration_ms as i64);
    let ours_revert = done.signed_duration_since(live_at).num_milliseconds() as f64 / 1000.0;
    let revert_steps: Vec<serde_json::Value> = pass
        .steps
        .iter()
        .map(|s| serde_json::json!({"step": s.step.as_str(), "s": s.duration_ms as f64 / 1000.0}))
        .collect();
    let seed_broken = seed.deploy(&bad.commit, bad.instances, &bad.greeting, false);
    assert!(
        !healthy(seed.port),
        "the broken commit is healthy under the checklist"
    );
    let load = Load::start(seed.port, RATE);
    let manual = seed.rollback(&good.commit, good.instances, &good.greeting);
    let manual_load = load.finish();
    report.insert(
        "revert".into(),
        serde_json::json!({
            "shipshape_s": ours_revert,
            "shipshape_from_broken_commit_s": secs(ours_whole),
            "checklist_s": secs(manual.total),
            "checklist_broken_deploy_s": secs(seed_broken.total),
            "speedup": ratio(manual.total.as_secs_f64(), ours_revert),
            "rule": reverted.revision.message.split(';').next().unwrap_or_default(),
            "steps": revert_steps, "checklist_steps": manual.steps_json(),
            "load": {"shipshape": revert_load, "checklist": manual_load},
        }),
    );
    drop(seed);

    // Detection latency, local (inotify), with the daemon (from the good revision again:
    // the broken config commit stays quarantined until the next one).
    let mut det = good.clone();
    det.greeting = "back".into();
    commit_doc(&det);
    once(&w, &[]);
    let d = w.start(&["--interval", "10m"]);
    w.wait_record("converged", 300, &d, |r| r.phase == Phase::Ready);
    let mut local = Vec::new();
    for i in 0..5 {
        det.greeting = format!("detect{i}");
        let t = chrono::Utc::now();
        let c = commit_doc(&det);
        let rec = w.wait_record("the pass", 60, &d, |r| {
            r.last_pass.as_ref().is_some_and(|p| p.config_commit == c)
        });
        let started = rec.last_pass.unwrap().started_at.datetime();
        local.push(started.signed_duration_since(t).num_milliseconds() as f64 / 1000.0);
        w.wait_record("ready", 120, &d, |r| {
            r.phase == Phase::Ready && r.last_pass.as_ref().is_some_and(|p| p.config_commit == c)
        });
    }
    drop(d);

    // Idle CPU (the controller and every process it started, together) and resident memory,
    // over 60 s with nothing to do, one app, at the default health interval (2 s).
    det.interval = "2s";
    commit_doc(&det);
    // The controller's defaults: a pass every 10 s, info logging.
    let d = w.start_with_env(&["--interval", "10s"], &[("RUST_LOG", "info")]);
    w.wait_record("converged (2s interval)", 300, &d, |r| {
        r.phase == Phase::Ready
    });
    let pid: u32 = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(w.state_dir().join("api.json")).unwrap(),
    )
    .unwrap()["pid"]
        .as_u64()
        .unwrap() as u32;
    let pm2_daemon: Option<u32> = std::fs::read_to_string(w.pm2_home().join("pm2.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let total = |pid: u32| -> f64 {
        cpu_secs(pid, true).unwrap()
            + descendants(pid)
                .into_iter()
                .filter_map(|c| cpu_secs(c, true))
                .sum::<f64>()
    };
    // Let the first rounds after startup pass.
    let warm = Instant::now();
    wait_for("5 s after startup", Duration::from_secs(10), || {
        (warm.elapsed() >= Duration::from_secs(5)).then_some(())
    });
    let (c0, p0) = (total(pid), pm2_daemon.and_then(|p| cpu_secs(p, false)));
    let t0 = Instant::now();
    let mut rss_peak = 0;
    wait_for("60 idle seconds", Duration::from_secs(90), || {
        let rss = rss_kb(pid) + descendants(pid).into_iter().map(rss_kb).sum::<u64>();
        rss_peak = rss_peak.max(rss);
        (t0.elapsed() >= Duration::from_secs(60)).then_some(())
    });
    let window = t0.elapsed().as_secs_f64();
    let idle_cpu = (total(pid) - c0) / window * 100.0;
    let pm2_cpu = match (p0, pm2_daemon.and_then(|p| cpu_secs(p, false))) {
        (Some(a), Some(b)) => Some(((b - a) / window * 10000.0).round() / 100.0),
        _ => None,
    };
    let rss_now = rss_kb(pid);
    let idle_rec = w.record();
    assert_eq!(
        idle_rec.phase,
        Phase::Ready,
        "the app was not healthy while idle"
    );
    drop(d);
    report.insert(
        "idle".into(),
        serde_json::json!({
            "cpu_percent": (idle_cpu * 100.0).round() / 100.0,
            "rss_mb": (rss_now as f64 / 1024.0 * 10.0).round() / 10.0,
            "rss_peak_with_children_mb": (rss_peak as f64 / 1024.0 * 10.0).round() / 10.0,
            "window_s": (window * 10.0).round() / 10.0,
            "health_interval": det.interval,
            "pass_interval": "10s",
            "pm2_daemon_cpu_percent": pm2_cpu,
        }),
    );

    // Remote with a webhook.
    let bare = w.bare_remote();
    let secret_file = w.root().join("hook-secret");
    std::fs::write(&secret_file, "bench-secret").unwrap();
    let url = format!("file://{}", bare.display());
    let d = w.start(&[
        "--repo",
        &url,
        "--poll-interval",
        "1h",
        "--webhook-secret-file",
        secret_file.to_str().unwrap(),
        "--interval",
        "10m",
    ]);
    w.wait_record("converged (remote)", 300, &d, |r| r.phase == Phase::Ready);
    let mut hooked = Vec::new();
    for i in 0..5 {
        det.greeting = format!("hook{i}");
        let c = commit_doc(&det);
        let t = chrono::Utc::now();
        w.push();
        use hmac::Mac;
        let body = format!(r#"{{"ref":"refs/heads/main","after":"{c}"}}"#);
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"bench-secret").unwrap();
        mac.update(body.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let addr = d.url.trim_start_matches("http://").to_string();
        let answer = {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "POST /hooks/git HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Hub-Signature-256: {sig}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut o = String::new();
            let _ = s.read_to_string(&mut o);
            o
        };
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        let rec = w.wait_record("the hooked pass", 60, &d, |r| {
            r.last_pass.as_ref().is_some_and(|p| p.config_commit == c)
        });
        let started = rec.last_pass.unwrap().started_at.datetime();
        hooked.push(started.signed_duration_since(t).num_milliseconds() as f64 / 1000.0);
        w.wait_record("ready", 120, &d, |r| {
            r.phase == Phase::Ready && r.last_pass.as_ref().is_some_and(|p| p.config_commit == c)
        });
    }
    drop(d);
    report.insert(
        "detection".into(),
        serde_json::json!({
            "local_median_s": median(local.clone()), "local_s": local,
            "webhook_median_s": median(hooked.clone()), "webhook_s": hooked,
            "reference": {"argo_cd_poll_s": 180, "flux_poll_s": 60},
        }),
    );
    drop(w);

    // No-op passes: 1, 10 and 100 apps (light processes), with and without sharing jlist;
    // and a config repo of 10,000 commits.
    let n = World::new("noop");
    let mut noop = Vec::new();
    let light = |name: &str| {
        format!(
            "apiVersion: shipshape/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  source:\n    repository: {}\n    commit: {}\n  releases:\n    root: {}\n  processes:\n    - name: {name}\n      script: sleep\n      interpreter: none\n      args: \"100000\"\n  health:\n    checks: []\n    interval: 200ms\n    successThreshold: 1\n",
            n.app_repo().display(),
            n.app_head(),
            n.root().join("srv").join(name).display()
        )
    };
    let mut have = 0;
    for count in [1usize, 10, 100] {
        for i in have..count {
            std::fs::write(
                n.config_repo().join("apps").join(format!("a{i:03}.yaml")),
                light(&format!("a{i:03}")),
            )
            .unwrap();
        }
        have = count;
        git(&n.config_repo(), &["add", "-A"]);
        git(
            &n.config_repo(),
            &["commit", "-qm", "apps", "--allow-empty"],
        );
        let out = n.shipshape(&["run", "--once", "--concurrency", "8"], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shared = median(
            (0..3)
                .map(|_| secs(once(&n, &[("SHIPSHAPE_PM2_CACHE", "500ms")])))
                .collect(),
        );
        let separate = median(
            (0..3)
                .map(|_| secs(once(&n, &[("SHIPSHAPE_PM2_CACHE", "0s")])))
                .collect(),
        );
        noop.push(serde_json::json!({"apps": count, "shared_jlist_s": shared, "jlist_per_app_s": separate,
            "gain": (separate / shared * 10.0).round() / 10.0, "app_pass_s": pass_secs(&n, "a000")}));
    }
    report.insert("noop".into(), noop.into());

    // 10,000 config commits under one app's document.
    let h = World::new("history");
    let v = h.app_head();
    h.commit_config(&h.document(&v));
    assert!(h.run_once().0 == 0);
    let before = median((0..3).map(|_| secs(once(&h, &[]))).collect());
    let head = git(&h.config_repo(), &["rev-parse", "HEAD"]);
    let mut stream = String::new();
    for i in 0..10_000 {
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter bench <b@b> {} +0000\ndata 4\nc{:03}\n{}M 100644 inline notes.txt\ndata {}\n{}\n\n",
            1_700_000_000 + i,
            i % 1000,
            if i == 0 { format!("from {head}\n") } else { String::new() },
            format!("{i}").len(),
            i
        ));
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(h.config_repo())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let commits: usize = git(&h.config_repo(), &["rev-list", "--count", "main"])
        .parse()
        .unwrap();
    let after = median((0..3).map(|_| secs(once(&h, &[]))).collect());
    report.insert("history".into(), serde_json::json!({"commits": commits, "noop_pass_s_1_commit": before, "noop_pass_s_10k_commits": after}));

    // The stock Next.js app, in place and through nginx (its own worlds).
    report.insert("stock_next".into(), stock_next());

    write_result("bench.json", report, &started_at);

    // The fleet rollout in waves: its own file (target/bench/fleet.json), recorded and
    // rendered on its own, as `--only fleet` does.
    let started_at = now();
    let mut report = serde_json::Map::new();
    report.insert("fleet".into(), fleet());
    write_result("fleet.json", report, &started_at);
}

// ---------------------------------------------------------------------------------------
// The stock Next.js app (examples/stock-next: what create-next-app gives, `next start`, no
// custom server, no shutdown code) in pm2 fork mode, one process, under load on `/`: in
// place (today's default: the process is restarted) against traffic mode (each release in
// a slot of its own behind a real nginx, proven on its own port, then switched to).

/// One answer of the versioned load: when it was sent and answered, and the version the
/// page named (`hello from 0.2.0` → `0.2.0`); `None`: it failed (no answer within 5 s, not
/// 200, or no version in the page).
struct Answer {
    sent: Instant,
    done: Instant,
    version: Option<String>,
    /// Why it failed: `connect` (refused), `timeout`, `reset` (closed before a full
    /// answer), `status N`, `no version`.
    why: Option<String>,
}

/// One HTTP/1.0 GET of `/` on 127.0.0.1:`port` (5 s to connect, 5 s per read): the
/// version the page names, or why there is none.
fn get_version(port: u16) -> Result<String, String> {
    use std::io::{ErrorKind, Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let kind = |e: std::io::Error| match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timeout".to_string(),
        ErrorKind::ConnectionRefused => "connect".to_string(),
        _ => "reset".to_string(),
    };
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(kind)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(kind)?;
    write!(s, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(kind)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(kind)?;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "reset".to_string())?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    page_version(&text).ok_or_else(|| "no version".to_string())
}

/// The version a stock-next page names.
fn page_version(body: &str) -> Option<String> {
    let rest = &body[body.find("hello from ")? + "hello from ".len()..];
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    (!v.is_empty()).then_some(v)
}

/// GETs of `/` at a fixed rate from 64 workers (paced as [`Load`]), every answer kept with
/// its times and version.
struct VersionLoad {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
    wall: chrono::DateTime<chrono::Utc>,
}

/// What a [`VersionLoad`] saw.
struct Answers {
    answers: Vec<Answer>,
    started: Instant,
    wall: chrono::DateTime<chrono::Utc>,
    elapsed: Duration,
}

impl VersionLoad {
    fn start(port: u16, rate: u32) -> VersionLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let workers = 64;
        let period = Duration::from_secs_f64(workers as f64 / rate as f64);
        let (started, wall) = (Instant::now(), chrono::Utc::now());
        let mut threads = Vec::new();
        for i in 0..workers {
            let (stop, answers) = (stop.clone(), answers.clone());
            threads.push(std::thread::spawn(move || {
                let mut next = started + period.mul_f64(i as f64 / workers as f64);
                while !stop.load(Ordering::Relaxed) {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let sent = Instant::now();
                    let got = get_version(port);
                    let done = Instant::now();
                    answers.lock().unwrap().push(Answer {
                        sent,
                        done,
                        version: got.as_ref().ok().cloned(),
                        why: got.err(),
                    });
                    next += period;
                }
            }));
        }
        VersionLoad {
            stop,
            answers,
            threads,
            started,
            wall,
        }
    }

    fn finish(self) -> Answers {
        let elapsed = self.started.elapsed();
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let answers = std::mem::take(&mut *self.answers.lock().unwrap());
        Answers {
            answers,
            started: self.started,
            wall: self.wall,
            elapsed,
        }
    }
}

impl Answers {
    fn wall(&self, t: Instant) -> chrono::DateTime<chrono::Utc> {
        self.wall + chrono::Duration::from_std(t.duration_since(self.started)).unwrap()
    }

    /// {requests, failed, p99_ms, rate, versions: {version: answers}}
    fn summary(&self) -> serde_json::Value {
        let failed = self.answers.iter().filter(|a| a.version.is_none()).count();
        let mut ok: Vec<Duration> = self
            .answers
            .iter()
            .filter(|a| a.version.is_some())
            .map(|a| a.done - a.sent)
            .collect();
        ok.sort();
        let p99 = ok
            .get(ok.len().saturating_sub(1) * 99 / 100)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        let mut versions = serde_json::Map::new();
        let mut why = serde_json::Map::new();
        for a in &self.answers {
            let (map, key) = match (&a.version, &a.why) {
                (Some(v), _) => (&mut versions, v),
                (None, Some(w)) => (&mut why, w),
                (None, None) => continue,
            };
            let n = map.get(key).and_then(|n| n.as_u64()).unwrap_or(0);
            map.insert(key.clone(), (n + 1).into());
        }
        serde_json::json!({
            "requests": self.answers.len(),
            "failed": failed,
            "p99_ms": (p99 * 10.0).round() / 10.0,
            "rate": (self.answers.len() as f64 / self.elapsed.as_secs_f64()).round(),
            "versions": versions,
            "failures": why,
            // When the first failures were sent (UTC, ms), to set beside the steps' times.
            "failed_at": self
                .answers
                .iter()
                .filter(|a| a.version.is_none())
                .take(20)
                .map(|a| self.wall(a.sent).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .collect::<Vec<_>>(),
        })
    }

    /// The answers `version` gave, and for how long it served users: from the first of
    /// those requests sent to the last answered (0 s when it answered none).
    fn served_by(&self, version: &str) -> (usize, f64) {
        let by: Vec<&Answer> = self
            .answers
            .iter()
            .filter(|a| a.version.as_deref() == Some(version))
            .collect();
        let (Some(first), Some(last)) = (
            by.iter().map(|a| a.sent).min(),
            by.iter().map(|a| a.done).max(),
        ) else {
            return (0, 0.0);
        };
        (by.len(), secs(last - first))
    }

    /// From `verdict` to the first moment every answer comes from version `old`: the last
    /// answer after the verdict that came from another version or failed (0 s when there
    /// is none).
    fn alone_after(&self, verdict: chrono::DateTime<chrono::Utc>, old: &str) -> f64 {
        let last = self
            .answers
            .iter()
            .filter(|a| a.version.as_deref() != Some(old))
            .map(|a| self.wall(a.done))
            .filter(|t| *t > verdict)
            .max();
        match last {
            Some(t) => t.signed_duration_since(verdict).num_milliseconds() as f64 / 1000.0,
            None => 0.0,
        }
    }
}

/// When the last pass's failing `verify` step gave its verdict (its end), from the record.
fn verdict_at(rec: &shipshape::state::AppRecord) -> Option<chrono::DateTime<chrono::Utc>> {
    let pass = rec.last_pass.as_ref()?;
    let s = pass.steps.iter().rev().find(|s| {
        s.step.as_str() == "verify" && s.result == shipshape_spec::status::StepResult::Failed
    })?;
    Some(s.started_at.datetime() + chrono::Duration::milliseconds(s.duration_ms as i64))
}

/// What one desired state of the stock app sets.
#[derive(Clone)]
struct StockNext {
    commit: String,
    instances: u32,
    /// An env variable the app does not read (set, changed, then removed).
    extra_env: Option<String>,
}

/// The stock app's document: `npm ci`, `next build` (its cache carried), `next start` in
/// fork mode; health on `/api/health` every 300 ms (2 rounds to pass, 2 to fail), the
/// automatic revert. In place: `PORT` is this world's port and the checks go there. In
/// traffic mode (`traffic`: `spec.traffic` as JSON): no `PORT` (each slot gets its own),
/// the checks go to the public address (before the switch, to the slot's own port).
fn stock_next_document(w: &World, d: &StockNext, traffic: Option<&serde_json::Value>) -> String {
    let base = match traffic {
        Some(t) => t["public"].as_str().unwrap().to_string(),
        None => format!("http://127.0.0.1:{}", w.port),
    };
    let mut env = serde_json::json!({"NODE_ENV": "production", "NEXT_TELEMETRY_DISABLED": "1"});
    if traffic.is_none() {
        env["PORT"] = w.port.to_string().into();
    }
    if let Some(v) = &d.extra_env {
        env["GREETING"] = v.clone().into();
    }
    let mut doc = serde_json::json!({
        "apiVersion": "shipshape/v1alpha1",
        "kind": "App",
        "metadata": {"name": w.name},
        "spec": {
            "source": {"repository": w.app_repo().display().to_string(), "commit": d.commit},
            "releases": {"root": w.releases_root().display().to_string()},
            "build": {
                "install": "npm ci --no-audit --no-fund --loglevel=error",
                "steps": ["npm run build"],
                "env": {"NEXT_TELEMETRY_DISABLED": "1"},
                "cache": [".next/cache"],
                "timeout": "10m",
            },
            "processes": [{
                "name": "web",
                "script": "node_modules/next/dist/bin/next",
                "args": "start",
                "instances": d.instances,
                "exec_mode": "fork",
                "env": env,
            }],
            "health": {
                "checks": [{
                    "name": "api",
                    "http": {"url": format!("{base}/api/health"), "expectStatus": 200,
                             "bodyContains": "\"status\":\"ok\""},
                    "timeout": "5s",
                }],
                "interval": "300ms",
                "startupGrace": "1s",
                "successThreshold": 2,
                "failureThreshold": 2,
                "progressDeadline": "3m",
            },
            "rollback": {"auto": true, "window": "30m"},
        }
    });
    if let Some(t) = traffic {
        doc["spec"]["traffic"] = t.clone();
    }
    // JSON is YAML.
    let text = serde_json::to_string_pretty(&doc).unwrap();
    // More than one fork-mode instance in traffic mode is refused by validation (one PORT per
    // slot): that document is committed as it is, and what the controller does with it
    // (Invalid, the live release untouched) is what the bench records.
    let refused_by_design = traffic.is_some() && d.instances > 1;
    if let Err(e) = shipshape_spec::load_str(&text, "stock-next.yaml")
        && !refused_by_design
    {
        panic!("the stock-next document does not load:\n{e}\n{text}");
    }
    text
}

/// Commit a new version of the stock app: package.json's version (not the lockfile's, so
/// its dependencies are reused), and `/api/health`'s code when given.
fn commit_stock_next(w: &World, version: &str, health: Option<&str>) -> String {
    if let Some(code) = health {
        std::fs::write(w.app_repo().join("app/api/health/route.js"), code).unwrap();
        git(&w.app_repo(), &["add", "-A"]);
    }
    w.commit_app_version(version)
}

/// A health route that fails from its first request.
const HEALTH_BROKEN: &str = r#"export const dynamic = "force-dynamic";

export function GET() {
  return Response.json({ status: "broken" }, { status: 500 });
}
"#;

/// A health route that passes on the app's own port and fails once users reach it through
/// nginx: nginx's `proxy_pass` sends the upstream's name as `Host`
/// (`shipshape_...`), a request on the slot's own port sends `127.0.0.1:PORT`.
const HEALTH_REGRESSES: &str = r#"export const dynamic = "force-dynamic";

export function GET(request) {
  if ((request.headers.get("host") || "").startsWith("shipshape_")) {
    return Response.json({ status: "regressed" }, { status: 500 });
  }
  return Response.json({ status: "ok" });
}
"#;

/// The stock-next scenario in one mode: the first deploy, then under load (through nginx's
/// public port in traffic mode, on the app's port in place) code, env, removed env,
/// instances 1 → 2 and a broken release (in place: health fails from its first request,
/// reverted; in traffic mode: that one, refused on its slot, and one that regresses after
/// the switch, reverted by a switch back).
fn stock_next_scenario(traffic_mode: bool) -> serde_json::Value {
    let mode = if traffic_mode { "traffic" } else { "in-place" };
    let w = World::with_example(&format!("next-{mode}"), "examples/stock-next");
    let _ = std::fs::remove_dir_all(w.app_repo().join(".next"));
    let nginx_dir = w.root().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let upstream_name = format!("shipshape_{}", w.name.replace('-', "_"));
    let nginx = traffic_mode.then(|| {
        let n = common::nginx::TestNginx::new(
            "bench (stock-next, traffic)",
            free_port(),
            &nginx_dir.join("upstream.conf"),
            &upstream_name,
        )
        .expect("the benchmark needs nginx (hack/bench.sh installs it)");
        n.start();
        n
    });
    let traffic = nginx
        .as_ref()
        .map(|n| n.traffic_json([free_port(), free_port()], free_port(), "10s"));
    let load_port = nginx.as_ref().map(|n| n.public_port).unwrap_or(w.port);
    // GREETING is set from the start, changed, then removed: each a config no slot has
    // run before (a change back to the warm slot's config would be a switch back).
    let mut d = StockNext {
        commit: w.app_head(),
        instances: 1,
        extra_env: Some("hello".into()),
    };
    let commit_doc = |d: &StockNext| w.commit_config(&stock_next_document(&w, d, traffic.as_ref()));
    let run = || -> (Duration, Option<i32>, String) {
        let t0 = Instant::now();
        let out = w.shipshape(&["run", "--once"], &[]);
        (
            t0.elapsed(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let serving = || request(load_port, "/").and_then(|(_, b)| page_version(&b));
    let steps_of = |rec: &shipshape::state::AppRecord| -> Vec<serde_json::Value> {
        rec.last_pass
            .as_ref()
            .map(|p| {
                p.steps
                    .iter()
                    .map(|s| {
                        serde_json::json!({"step": s.step.as_str(),
                            "s": s.duration_ms as f64 / 1000.0, "reason": s.reason,
                            "started_at": s.started_at.datetime()
                                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)})
                    })
                    .collect()
            })
            .unwrap_or_default()
    };

    commit_doc(&d);
    let (first, code, err) = run();
    assert_eq!(code, Some(0), "{mode}: the first deploy failed: {err}");
    assert_eq!(
        serving().as_deref(),
        Some("0.1.0"),
        "{mode}: not serving 0.1.0"
    );

    let mut kinds = Vec::new();
    let mut version = "0.1.0".to_string();
    for (i, kind) in ["code", "env", "removed env", "instances 1 → 2"]
        .into_iter()
        .enumerate()
    {
        match kind {
            "code" => {
                version = "0.2.0".into();
                d.commit = commit_stock_next(&w, &version, None);
            }
            "env" => d.extra_env = Some("hi".into()),
            "removed env" => d.extra_env = None,
            _ => d.instances = 2,
        }
        commit_doc(&d);
        let load = VersionLoad::start(load_port, RATE);
        let (took, code, err) = run();
        let answers = load.finish();
        let rec = w.record();
        let outcome = rec.revisions.last().map(|r| r.revision.outcome);
        eprintln!(
            "stock-next {mode}, {kind}: {:.1}s, exit {code:?}, {:?}",
            took.as_secs_f64(),
            answers.summary()
        );
        let ok = code == Some(0) && outcome == Some(Outcome::Healthy);
        if i < 3 {
            // Code and env changes must converge; instances in fork mode is measured as it
            // comes out (two fork processes on one PORT: the second cannot listen).
            assert!(ok, "{mode}, {kind}: exit {code:?}, {outcome:?}: {err}");
            assert_eq!(
                serving().as_deref(),
                Some(version.as_str()),
                "{mode}, {kind}"
            );
        }
        kinds.push(serde_json::json!({
            "kind": kind, "converge_s": secs(took), "converged": ok,
            "outcome": outcome.map(|o| format!("{o:?}").to_lowercase()),
            "message": rec.revisions.last().map(|r| r.revision.message.clone()),
            "steps": steps_of(&rec), "load": answers.summary(),
        }));
        if !ok && kind.starts_with("instances") {
            // Back to one process (a new config commit: out of quarantine).
            d.instances = 1;
            commit_doc(&d);
            let (_, code, err) = run();
            assert_eq!(code, Some(0), "{mode}: back to 1 instance: {err}");
        }
    }

    // A release whose /api/health fails from its first request.
    let good = d.clone();
    let mut bad = d.clone();
    bad.commit = commit_stock_next(&w, "0.9.0-broken", Some(HEALTH_BROKEN));
    commit_doc(&bad);
    let load = VersionLoad::start(load_port, RATE);
    let (took, code, err) = run();
    let answers = load.finish();
    let rec = w.record();
    let outcome = common::revision_of(&rec, &bad.commit).revision.outcome;
    let (answered, served_s) = answers.served_by("0.9.0-broken");
    let verdict = verdict_at(&rec);
    eprintln!(
        "stock-next {mode}, broken from the start: exit {code:?}, {outcome:?}, served {answered} answers over {served_s}s; {err}"
    );
    assert_ne!(code, Some(0), "{mode}: the broken release converged");
    assert_eq!(
        serving().as_deref(),
        Some(version.as_str()),
        "{mode}: after the broken release"
    );
    let broken = serde_json::json!({
        "converge_s": secs(took),
        "outcome": format!("{outcome:?}").to_lowercase(),
        "served_answers": answered, "served_s": served_s,
        "verdict_to_old_alone_s": verdict.map(|v| answers.alone_after(v, &version)),
        "steps": steps_of(&rec), "load": answers.summary(),
    });

    // Traffic mode: a release that passes on its slot and regresses after the switch.
    let regress = traffic_mode.then(|| {
        let mut r = good.clone();
        r.commit = commit_stock_next(&w, "0.9.1-regresses", Some(HEALTH_REGRESSES));
        commit_doc(&r);
        let load = VersionLoad::start(load_port, RATE);
        let (took, code, err) = run();
        let answers = load.finish();
        let rec = w.record();
        let outcome = common::revision_of(&rec, &r.commit).revision.outcome;
        let verdict = verdict_at(&rec).unwrap_or_else(|| {
            panic!("traffic: no failed verify in the regressing release's pass: {err}")
        });
        let (answered, served_s) = answers.served_by("0.9.1-regresses");
        let alone = answers.alone_after(verdict, &version);
        eprintln!(
            "stock-next traffic, regresses after the switch: exit {code:?}, {outcome:?}, verdict → old alone {alone}s, {:?}",
            answers.summary()
        );
        assert_eq!(outcome, Outcome::Reverted, "traffic: {err}");
        assert_eq!(serving().as_deref(), Some(version.as_str()), "traffic: after the revert");
        serde_json::json!({
            "converge_s": secs(took), "outcome": format!("{outcome:?}").to_lowercase(),
            "served_answers": answered, "served_s": served_s,
            "verdict_to_old_alone_s": alone,
            "steps": steps_of(&rec), "load": answers.summary(),
        })
    });
    drop(nginx);
    drop(w);
    serde_json::json!({
        "mode": mode, "first_deploy_s": secs(first), "kinds": kinds,
        "broken": broken, "regresses": regress,
    })
}

/// Both modes of the stock-next scenario (in place first: its numbers are the baseline).
fn stock_next() -> serde_json::Value {
    let in_place = stock_next_scenario(false);
    let traffic = stock_next_scenario(true);
    serde_json::json!({
        "app": "examples/stock-next (Next.js 16, next start, no custom server), pm2 fork mode, 1 process",
        "load": format!("GET / at {RATE} req/s, 64 workers, a new connection each; traffic mode through nginx's public port"),
        "in_place": in_place, "traffic": traffic,
    })
}

/// The stock-next documents the bench commits load and pass validation in both modes: in
/// place with `PORT`, in traffic mode without it (a slot gets its own) and with the checks
/// on the public address (the bench itself only runs from hack/bench.sh; this runs in CI).
#[test]
fn the_stock_next_documents_load_in_place_and_in_traffic_mode() {
    let w = World::with_example("next-doc", "examples/stock-next");
    let mut d = StockNext {
        commit: w.app_head(),
        instances: 2,
        extra_env: Some("hello".into()),
    };
    let in_place = shipshape_spec::load_str(&stock_next_document(&w, &d, None), "a.yaml").unwrap();
    let p = &in_place.spec.processes[0];
    let env = |k: &str| p.env.get(k).map(|v| v.as_text());
    assert_eq!(env("PORT"), Some(w.port.to_string()));
    assert_eq!(env("GREETING"), Some("hello".to_string()));
    let traffic = serde_json::json!({
        "via": "nginx", "public": "http://127.0.0.1:18080", "ports": [18081, 18082],
        "upstreamFile": w.root().join("upstream.conf").display().to_string(),
        "confirmPort": 18083,
    });
    // Two fork-mode processes cannot share a slot's PORT: refused in traffic mode.
    let two = stock_next_document(&w, &d, Some(&traffic));
    let refused = shipshape_spec::load_str(&two, "b.yaml")
        .unwrap_err()
        .to_string();
    assert!(refused.contains("in fork mode each instance"), "{refused}");
    d.instances = 1;
    let slots =
        shipshape_spec::load_str(&stock_next_document(&w, &d, Some(&traffic)), "b.yaml").unwrap();
    assert!(!slots.spec.processes[0].env.contains_key("PORT"));
    assert!(slots.spec.traffic.is_some());
    let url = &slots.spec.health.checks[0].http().unwrap().url;
    assert_eq!(url, "http://127.0.0.1:18080/api/health");
}

// ---------------------------------------------------------------------------------------
// A fleet rollout in waves (spec.rollout): three controllers on this machine (each its own
// state dir, `--hostname`, pm2 home and app port) following one config repo, scraped by a
// real Prometheus every second, deploying the example app (examples/app). With waves (a
// canary, web-1, then the rest, after a soak) against the same fleet without
// `spec.rollout` (every host takes each commit at once: the pull model). Measured: how long a
// good commit takes to reach every host, and how many hosts ever served a broken one.

/// The soak of the scenario's waves: how long the canary must run a commit, Ready, in
/// Prometheus's samples before the rest take it.
const FLEET_SOAK_S: u64 = 5;
/// How often each host's app is asked which version it serves during the broken commit.
const FLEET_POLL: Duration = Duration::from_millis(100);
/// The fleet's host names; the first is the canary.
const FLEET_HOSTS: [&str; 3] = ["web-1", "web-2", "web-3"];

/// The scenario's rollout: the canary (web-1) first, then the rest (web-2 and web-3, both
/// at once) once the canary has run the commit, Ready, for [`FLEET_SOAK_S`].
fn fleet_rollout(prometheus: &str) -> shipshape_spec::rollout::Rollout {
    common::fleet::rollout(serde_json::json!({
        "prometheus": prometheus,
        "waves": [
            {"name": "canary", "hosts": {"names": [FLEET_HOSTS[0]]}, "maxParallel": 1},
            {"name": "rest", "maxParallel": 2},
        ],
        "soak": format!("{FLEET_SOAK_S}s"),
        // Three scrapes: samples older or further apart are not trusted.
        "fresh": "3s",
    }))
}

/// What one host's poller saw while the broken commit was in the config repo: answers by
/// version, and every (pid, working directory) of the host's pm2 processes.
#[derive(Default)]
struct Served {
    answers: std::collections::BTreeMap<String, u64>,
    processes: std::collections::BTreeSet<(u32, PathBuf)>,
}

/// The app's pm2 processes under `pm2_home` now: (pid, resolved working directory). Read
/// from pm2's pid files and /proc (no `pm2 jlist`: a node process every 100 ms per host
/// would load the machine being measured).
fn pm2_cwds(pm2_home: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(dir) = std::fs::read_dir(pm2_home.join("pids")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let text = std::fs::read_to_string(e.ok()?.path()).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        Some((pid, cwd))
    })
    .collect()
}

/// Ask `port`'s app which version it serves, and list `pm2_home`'s processes, every
/// [`FLEET_POLL`] until stopped.
fn poll_served(
    port: u16,
    pm2_home: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Served> {
    std::thread::spawn(move || {
        let mut seen = Served::default();
        while !stop.load(Ordering::Relaxed) {
            let next = Instant::now() + FLEET_POLL;
            if let Some(v) = request(port, "/").and_then(|(s, b)| (s == 200).then_some(b)) {
                let v = page_version(&v).unwrap_or_else(|| "?".into());
                *seen.answers.entry(v).or_default() += 1;
            }
            seen.processes.extend(pm2_cwds(&pm2_home));
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        seen
    })
}

/// Poll every host's record until `done` holds for each (`limit_s` seconds at most);
/// returns how long after `t0` each first held, in host order.
fn wait_fleet(
    what: &str,
    hosts: &[common::fleet::Host],
    daemons: &[common::Daemon],
    t0: Instant,
    limit_s: u64,
    done: impl Fn(&shipshape::state::AppRecord) -> bool,
) -> Vec<f64> {
    let mut at: Vec<Option<f64>> = vec![None; hosts.len()];
    loop {
        for (i, h) in hosts.iter().enumerate() {
            if at[i].is_none()
                && let Ok(rec) = h.world.store().load(&h.world.name)
                && done(&rec)
            {
                at[i] = Some(secs(t0.elapsed()));
            }
        }
        if at.iter().all(Option::is_some) {
            return at.into_iter().flatten().collect();
        }
        if t0.elapsed() > Duration::from_secs(limit_s) {
            let tails: Vec<String> = hosts
                .iter()
                .zip(daemons)
                .map(|(h, d)| format!("--- {} ---\n{}", h.name, d.log_tail(40)))
                .collect();
            panic!(
                "timed out after {limit_s}s waiting for {what} (done: {at:?})\n{}",
                tails.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `rec` is live and Ready on `commit`.
fn ready_on(rec: &shipshape::state::AppRecord, commit: &str) -> bool {
    rec.phase == Phase::Ready && rec.live().is_some_and(|l| l.revision.app_commit == commit)
}

/// The fleet scenario in one mode (`waves`: with [`fleet_rollout`], else without
/// `spec.rollout`): v1 everywhere, then a good commit (time until every host is live and
/// Ready on it), then a broken one (its health fails from the start; which hosts served it,
/// polled every [`FLEET_POLL`] on each host's app, and which ran pm2 processes from its
/// release).
fn fleet_scenario(waves: bool) -> serde_json::Value {
    let mode = if waves { "waves" } else { "no waves" };
    let prom = common::prometheus::Prometheus::start("shipshape", &[]);
    let rollout = waves.then(|| fleet_rollout(&prom.url));
    let fleet = common::fleet::Fleet::new("shop", &FLEET_HOSTS.map(|h| (h, &[][..])));
    let hosts = &fleet.hosts;
    let v1 = fleet.repos.app_head();
    fleet.commit(&v1, rollout.as_ref());
    let daemons = fleet.start_all(&[]);
    prom.scrape("shipshape", &common::fleet::targets(&daemons));
    let t = Instant::now();
    let first = wait_fleet("v1 on every host", hosts, &daemons, t, 180, |r| {
        ready_on(r, &v1)
    });
    println!("fleet {mode}: v1 on every host after {first:?}");

    // A good commit: from the config commit to every host live and Ready on it.
    let good = fleet.repos.commit_app_version("2.0.0");
    fleet.commit(&good, rollout.as_ref());
    let t0 = Instant::now();
    let good_at = wait_fleet(
        "the good commit on every host",
        hosts,
        &daemons,
        t0,
        180,
        |r| ready_on(r, &good),
    );
    let all_s = good_at.iter().cloned().fold(0.0, f64::max);
    println!("fleet {mode}: good commit on every host after {all_s}s ({good_at:?})");

    // A broken commit: its health check fails from its first request.
    let server = std::fs::read_to_string(fleet.app_repo().join("server.js")).unwrap();
    let broken_server = server.replacen("const ok = !failing() &&", "const ok = false &&", 1);
    assert_ne!(broken_server, server);
    fleet
        .repos
        .commit_app_files(&[("server.js", &broken_server)], "health always fails");
    let broken = fleet.repos.commit_app_version("3.0.0");
    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> = hosts
        .iter()
        .map(|h| poll_served(h.world.port, h.world.pm2_home(), stop.clone()))
        .collect();
    fleet.commit(&broken, rollout.as_ref());
    let t0 = Instant::now();
    // Settled: the host tried it and went back to the good commit, or its wave gate holds
    // it because an earlier wave failed it.
    let settled_at = wait_fleet("the broken commit settled", hosts, &daemons, t0, 180, |r| {
        // (A revert leaves the phase Failed: the desired commit is not live.)
        let on_good = r.live().is_some_and(|l| l.revision.app_commit == good);
        let reverted = r.revisions.iter().any(|e| {
            e.revision.app_commit == broken
                && matches!(e.revision.outcome, Outcome::Reverted | Outcome::Failed)
        });
        let held = r.wave_gate.as_ref().is_some_and(|g| {
            g.app_commit == broken && g.state == shipshape_spec::status::GateState::Failed
        });
        on_good && (reverted || held)
    });
    // Then a soak and more: a later wave that took it anyway would show by now.
    std::thread::sleep(Duration::from_secs(FLEET_SOAK_S + 3));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Served> = pollers.into_iter().map(|p| p.join().unwrap()).collect();
    let broken_version = "3.0.0";
    let mut per_host = Vec::new();
    let mut served_hosts = 0;
    for ((h, s), settled) in hosts.iter().zip(&seen).zip(&settled_at) {
        let rec = h.world.record();
        let release = rec
            .revisions
            .iter()
            .find(|e| e.revision.app_commit == broken)
            .map(|e| shipshape::release::Layout::new(h.world.releases_root()).release(&e.release))
            .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
        let processes = release.as_ref().map_or(0, |rel| {
            s.processes
                .iter()
                .filter(|(_, cwd)| cwd.starts_with(rel))
                .count()
        });
        let answers = s.answers.get(broken_version).copied().unwrap_or(0);
        let served = answers > 0 || processes > 0;
        served_hosts += served as usize;
        let outcome = rec
            .revisions
            .iter()
            .find(|e| e.revision.app_commit == broken)
            .map(|e| format!("{:?}", e.revision.outcome).to_lowercase())
            .unwrap_or_else(|| {
                rec.wave_gate
                    .as_ref()
                    .map(|g| format!("held ({})", g.state.word()))
                    .unwrap_or_else(|| "never taken".into())
            });
        println!(
            "fleet {mode}: {} broken commit: {answers} answers, {processes} pm2 processes from its release, {outcome}, settled after {settled}s; answers {:?}",
            h.name, s.answers
        );
        per_host.push(serde_json::json!({
            "host": h.name,
            "broken_answers": answers,
            "answers": s.answers,
            "pm2_processes_from_broken_release": processes,
            "served_broken": served,
            "outcome": outcome,
            "settled_s": settled,
            "good_live_s": good_at[per_host.len()],
        }));
    }
    drop(daemons);
    serde_json::json!({
        "good_all_live_s": all_s,
        "good_first_live_s": good_at.iter().cloned().fold(f64::MAX, f64::min),
        "broken_hosts_served": served_hosts,
        "broken_settled_s": settled_at.iter().cloned().fold(0.0, f64::max),
        "hosts": per_host,
    })
}

/// Both modes of the fleet scenario (without waves first: its numbers are the baseline).
fn fleet() -> serde_json::Value {
    let without = fleet_scenario(false);
    let with = fleet_scenario(true);
    serde_json::json!({
        "app": "examples/app (no dependencies), pm2 cluster mode, 2 instances per host",
        "hosts": FLEET_HOSTS.len(),
        "waves": [
            {"name": "canary", "hosts": [FLEET_HOSTS[0]], "max_parallel": 1},
            {"name": "rest", "hosts": &FLEET_HOSTS[1..], "max_parallel": 2},
        ],
        "soak_s": FLEET_SOAK_S,
        "scrape_interval_s": 1,
        "poll_ms": FLEET_POLL.as_millis() as u64,
        "health": "300ms interval, 2 passing rounds to succeed",
        "with_waves": with,
        "without_waves": without,
    })
}

/// Write `json` (with this run's context) to target/bench/`file`.
fn write_result(
    file: &str,
    mut report: serde_json::Map<String, serde_json::Value>,
    started_at: &str,
) {
    report.insert("context".into(), context(started_at));
    let json = serde_json::Value::Object(report);
    let out_dir = common::workspace().join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(
        out_dir.join(file),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    println!("BENCH-JSON {}", serde_json::to_string(&json).unwrap());
}

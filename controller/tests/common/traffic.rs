//! Helpers for the traffic tests (traffic.rs, traffic_faults.rs): the stock Express app
//! (no shutdown code) behind a real nginx of the test's own ([`Front`]), its document in
//! traffic mode (slots on two ports of their own, checks through the public address), a
//! load through nginx that keeps every answer with when it was sent ([`Samples`]), and
//! what pm2, its dump and the upstream file say about the slots.
//!
//! The checks: `/health` through the public address, `failureThreshold`
//! [`FAILURE_THRESHOLD`] (the stock app's `/health` fails a fifth of its answers at random:
//! 8 in a row is 2.6e-6 a round, so a failure seen here is the controller's or the
//! release's, not chance). The load asks for `/`, which never fails in a good release.

use std::collections::BTreeMap;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shipshape::pm2::{Instance, parse_jlist};
use shipshape_spec::app::{NginxCommand, Traffic, TrafficVia};

use super::nginx::TestNginx;
use super::stock::Mode;
use super::{AppEdit, World, free_port};

/// Failing rounds in a row that fail a release (see the module's note).
pub const FAILURE_THRESHOLD: u32 = 8;
/// The health round interval.
pub const INTERVAL: Duration = Duration::from_millis(300);
/// How long the previous slot stays warm in these tests.
pub const WARM_FOR: Duration = Duration::from_secs(3);

/// nginx in front of one app: its public port, the two slot ports, the confirm port and
/// the upstream file the controller owns (included from nginx's `http` block).
pub struct Front {
    /// The test's own nginx (stopped on drop).
    pub nginx: TestNginx,
    /// Where nginx serves the app.
    pub public: u16,
    /// The slots' ports.
    pub ports: [u16; 2],
    /// The confirm server's port.
    pub confirm: u16,
}

impl Front {
    /// A running nginx for `w`'s app on free loopback ports (its upstream file names a
    /// placeholder slot until the controller's first switch). `None`: no nginx here and
    /// not on CI (see [`super::nginx::nginx_bin`]).
    pub fn start(w: &World, test: &str) -> Option<Front> {
        let upstream = format!("shipshape_{}", w.name.replace('-', "_"));
        let public = free_port();
        let nginx = TestNginx::new(test, public, &w.root().join("upstream.conf"), &upstream)?;
        nginx.start();
        Some(Front {
            nginx,
            public,
            ports: [free_port(), free_port()],
            confirm: free_port(),
        })
    }

    /// The upstream file's path.
    pub fn upstream_file(&self) -> PathBuf {
        self.nginx.upstream_file.clone()
    }

    /// The port the upstream file's only `server` names (None: no file, or no server).
    pub fn live_port(&self) -> Option<u16> {
        let text = std::fs::read_to_string(self.upstream_file()).ok()?;
        let servers: Vec<u16> = text
            .split("server 127.0.0.1:")
            .skip(1)
            .filter_map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        assert!(
            servers.len() <= 1,
            "the upstream file names {servers:?}:\n{text}"
        );
        servers.first().copied()
    }

    /// The slot port that is not `port`.
    pub fn other(&self, port: u16) -> u16 {
        if self.ports[0] == port {
            self.ports[1]
        } else {
            self.ports[0]
        }
    }

    /// GET `/` through nginx: the version that answered, or why the request failed.
    pub fn version(&self) -> Result<String, String> {
        super::load::get(self.public)
    }
}

impl World {
    /// The stock app's document in traffic mode behind `f`: `server.js` in `mode` (no
    /// `PORT`: each slot gets its own), `/health` through the public address every
    /// [`INTERVAL`], successThreshold 2, [`FAILURE_THRESHOLD`], warm for [`WARM_FOR`],
    /// drained within 10 s, automatic revert.
    pub fn traffic_app(&self, f: &Front, commit: &str, mode: Mode) -> shipshape_spec::App {
        let mut app = self.stock_app(commit, mode, INTERVAL, FAILURE_THRESHOLD);
        app.spec.processes[0].env.remove("PORT");
        let check = &mut app.spec.health.checks[0];
        let http = check.http_mut().expect("the stock check is HTTP");
        http.url = format!("http://127.0.0.1:{}/health", f.public);
        app.progress_deadline(Duration::from_secs(30));
        app.spec.traffic = Some(Traffic {
            via: TrafficVia::Nginx,
            public: format!("http://127.0.0.1:{}", f.public),
            ports: f.ports.to_vec(),
            process: None,
            upstream_file: f.upstream_file().display().to_string(),
            upstream: None,
            confirm_port: f.confirm,
            warm_for: shipshape_spec::Duration::from_millis(WARM_FOR.as_millis() as u64),
            drain_timeout: shipshape_spec::Duration::from_secs(10),
            nginx: NginxCommand {
                binary: f.nginx.bin().display().to_string(),
                args: f.nginx.args(),
                timeout: shipshape_spec::Duration::from_secs(10),
            },
        });
        app
    }

    /// The serving process's declared name.
    pub fn web(&self) -> String {
        format!("{}-web", self.name)
    }

    /// The processes pm2 runs, by its CLI.
    pub fn pm2_list(&self) -> Vec<Instance> {
        parse_jlist(&self.pm2_jlist_raw()).expect("pm2 jlist parses")
    }

    /// The names in pm2's dump (what `pm2 resurrect` brings back), one per instance, sorted.
    pub fn dump_names(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.pm2_home().join("dump.pm2")).unwrap_or_default();
        let dump: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        let mut names: Vec<String> = dump
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// The pids of the slot on `port`, sorted.
    pub fn slot_pids(&self, port: u16) -> Vec<u64> {
        let name = shipshape::traffic::slot_name(&self.web(), port);
        let mut pids: Vec<u64> = self
            .pm2_list()
            .into_iter()
            .filter(|i| i.name == name)
            .map(|i| i.pid)
            .collect();
        pids.sort();
        pids
    }

    /// The pm2 names running, sorted (one per instance).
    pub fn pm2_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.pm2_list().into_iter().map(|i| i.name).collect();
        names.sort();
        names
    }
}

/// What one slot must look like.
pub struct Expect<'a> {
    /// Instances.
    pub instances: usize,
    /// `fork_mode` or `cluster_mode`.
    pub exec_mode: &'a str,
    /// The version `/` answers.
    pub version: &'a str,
    /// Env variables its instances carry.
    pub present: &'a [&'a str],
    /// Env variables they must not carry.
    pub absent: &'a [&'a str],
}

/// Exactly one slot serves: the upstream file names one port, pm2 runs the serving
/// process only as `NAME@<that port>` (plus `NAME@<warm>` when `warm` is given), with
/// `e`'s instances, exec mode and env, all online with `PORT` and `SHIPSHAPE_SLOT` set to
/// the port; pm2's dump lists the same; `/` through nginx answers `e.version`. Returns the
/// live port.
pub fn assert_one_slot(w: &World, f: &Front, e: &Expect, warm: Option<u16>) -> u16 {
    let live = f
        .live_port()
        .unwrap_or_else(|| panic!("no upstream file naming a slot at {:?}", f.upstream_file()));
    assert!(
        f.ports.contains(&live),
        "the upstream names {live}, not a slot port"
    );
    let live_name = shipshape::traffic::slot_name(&w.web(), live);
    let list = w.pm2_list();
    let mut expected: Vec<String> = vec![live_name.clone(); e.instances];
    if let Some(port) = warm {
        let warm_name = shipshape::traffic::slot_name(&w.web(), port);
        let n = list.iter().filter(|i| i.name == warm_name).count();
        assert!(
            n > 0,
            "no warm slot {warm_name} in pm2: {:?}",
            w.pm2_names()
        );
        expected.extend(std::iter::repeat_n(warm_name, n));
    }
    expected.sort();
    assert_eq!(w.pm2_names(), expected, "pm2 runs");
    for i in list.iter().filter(|i| i.name == live_name) {
        assert_eq!(
            (i.status.as_str(), i.exec_mode.as_str()),
            ("online", e.exec_mode),
            "{} (pm_id {})",
            i.name,
            i.pm_id
        );
        for (k, want) in [
            ("PORT", live.to_string()),
            ("SHIPSHAPE_SLOT", live.to_string()),
        ] {
            let got = i.env.get(k).map(|v| v.to_string());
            assert_eq!(
                got.as_deref(),
                Some(want.as_str()),
                "{k} of pm_id {}",
                i.pm_id
            );
        }
        for k in e.present {
            assert!(i.env.contains_key(*k), "{k} missing from pm_id {}", i.pm_id);
        }
        for k in e.absent {
            assert!(!i.env.contains_key(*k), "{k} survived in pm_id {}", i.pm_id);
        }
    }
    assert_eq!(
        w.dump_names(),
        expected,
        "pm2's dump (what a reboot resurrects) is not what pm2 runs: no pm2-save after the last change? the last pass ran {:?}",
        super::steps(&w.record())
    );
    assert_eq!(f.version().as_deref(), Ok(e.version), "/ through nginx");
    live
}

/// The warm slot the upstream file records (its port), and when its time is up.
pub fn warm_until(f: &Front) -> Option<(u16, DateTime<Utc>)> {
    let w = shipshape::traffic::warm_of(&upstream_text(f))?;
    Some((w.port, w.until.datetime()))
}

/// Wait until the warm time the upstream file records for `warm` is up (it must record
/// that slot as warm).
pub fn wait_warm_time_up(f: &Front, warm: u16) {
    let (port, until) = warm_until(f).unwrap_or_else(|| {
        panic!(
            "the upstream file records no warm slot:\n{}",
            upstream_text(f)
        )
    });
    assert_eq!(port, warm, "the upstream file records another warm slot");
    let left = (until - Utc::now()).to_std().unwrap_or_default();
    assert!(
        left <= WARM_FOR,
        "warm for {left:?} more, longer than warmFor ({WARM_FOR:?})"
    );
    super::wait_for("warmFor to pass", WARM_FOR + Duration::from_secs(5), || {
        (Utc::now() > until).then_some(())
    });
}

/// The last lines of the app's pm2 logs (out and error), for a failure's message.
pub fn pm2_logs(w: &World) -> String {
    let mut out = String::new();
    let dir = w.pm2_home().join("logs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!(
            "--- {}\n{}\n",
            p.display(),
            lines[lines.len().saturating_sub(15)..].join("\n")
        ));
    }
    out
}

/// Once the warm slot's time is up, one pass: it must retire the warm slot on `warm` (a
/// `slot-retire` step that drained it — its revision log says so — then deleted it),
/// leaving only the live one in pm2 and its dump.
pub fn retire_warm(w: &World, f: &Front, e: &Expect, warm: u16) {
    let warm_name = shipshape::traffic::slot_name(&w.web(), warm);
    wait_warm_time_up(f, warm);
    let (code, log) = w.run_once();
    assert_eq!(
        code,
        0,
        "the retiring pass:\n{log}\npm2's logs:\n{}",
        pm2_logs(w)
    );
    let steps = super::steps(&w.record())
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert!(
        steps.iter().any(|s| s == "slot-retire"),
        "no slot-retire after warmFor: {steps:?}\n{log}"
    );
    assert!(
        !w.pm2_names().contains(&warm_name),
        "{warm_name} still runs after warmFor and a pass: {:?}",
        w.pm2_names()
    );
    assert_one_slot(w, f, e, None);
    let drained = format!("== slot {warm} drained in ");
    assert!(
        revision_logs(w).contains(&drained),
        "no revision log says slot {warm} was drained before it was stopped"
    );
}

/// Every revision log of the app, concatenated.
pub fn revision_logs(w: &World) -> String {
    let dir = w.state_dir().join("apps").join(&w.name).join("logs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The load through nginx: every answer kept with when it was sent.

/// Requests per second, over all workers.
pub const RATE: u32 = 100;
const WORKERS: u32 = 4;
const MAX_PHASE: Duration = Duration::from_secs(180);

/// One request: when it was sent (wall clock, to compare with the record's timestamps) and
/// the version that answered, or why it failed.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent.
    pub sent: DateTime<Utc>,
    /// The version, or why it failed.
    pub answer: Result<String, String>,
}

/// What the load saw.
#[derive(Debug, Default)]
pub struct Samples {
    /// Every request, in the order they finished.
    pub all: Vec<Sample>,
    /// How long the load ran.
    pub window: Duration,
}

impl Samples {
    /// Answers per version.
    pub fn versions(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for s in &self.all {
            if let Ok(v) = &s.answer {
                *m.entry(v.clone()).or_default() += 1;
            }
        }
        m
    }

    /// The failed requests.
    pub fn failures(&self) -> Vec<&Sample> {
        self.all.iter().filter(|s| s.answer.is_err()).collect()
    }

    /// No request failed and the load really ran (at least half of [`RATE`]).
    pub fn assert_no_failures(&self, w: &World, what: &str) {
        let steps: Vec<(String, String, u64)> = w
            .record()
            .last_pass
            .map(|p| p.steps)
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.step.to_string(), s.started_at.to_string(), s.duration_ms))
            .collect();
        let failed = self.failures();
        assert!(
            failed.is_empty(),
            "{what}: {} of {} requests failed, e.g. {:?}\nthe pass's steps (kind, start, ms): {steps:?}",
            failed.len(),
            self.all.len(),
            failed.iter().take(5).collect::<Vec<_>>()
        );
        let min = (f64::from(RATE) * self.window.as_secs_f64() * 0.5) as usize;
        assert!(
            self.all.len() >= min,
            "{what}: only {} requests in {:.1}s (the load did not run at ~{RATE}/s)",
            self.all.len(),
            self.window.as_secs_f64()
        );
    }

    /// The earliest moment after which every answer came from `version` (and none
    /// failed): the send time of the first request of the final run of such answers.
    pub fn alone_from(&self, version: &str) -> Option<DateTime<Utc>> {
        let mut sorted: Vec<&Sample> = self.all.iter().collect();
        sorted.sort_by_key(|s| s.sent);
        let mut from = None;
        for s in sorted {
            match &s.answer {
                Ok(v) if v == version => {
                    from.get_or_insert(s.sent);
                }
                _ => from = None,
            }
        }
        from
    }
}

/// Run `phase` under ~[`RATE`] GETs of `/` a second through nginx (a new connection
/// each), from a second before it to a second after; prints and returns what was seen.
pub fn through_nginx<T>(f: &Front, what: &str, phase: impl FnOnce() -> T) -> (Samples, T) {
    let stop = Arc::new(AtomicBool::new(false));
    let all: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let t0 = Instant::now();
    let period = Duration::from_secs(1) * WORKERS / RATE;
    let port = f.public;
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let (stop, all) = (stop.clone(), all.clone());
            std::thread::spawn(move || {
                let mut next = t0 + period * i / WORKERS;
                while !stop.load(Ordering::Relaxed) && t0.elapsed() < MAX_PHASE {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next = (next + period).max(Instant::now());
                    let sent = Utc::now();
                    let answer = super::load::get(port);
                    all.lock().unwrap().push(Sample { sent, answer });
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let p0 = Instant::now();
    let out = phase();
    let took = p0.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for h in workers {
        h.join().unwrap();
    }
    let samples = Samples {
        all: std::mem::take(&mut *all.lock().unwrap()),
        window: t0.elapsed(),
    };
    println!(
        "{what}: {} requests through nginx in {:.1}s of {what} (+2 s around it), {} failed; answers by version {:?}",
        samples.all.len(),
        took.as_secs_f64(),
        samples.failures().len(),
        samples.versions()
    );
    (samples, out)
}

/// The release's code edits the tests make, as a developer would.
pub mod edits {
    /// A leak that only user traffic shows: every `GET /` takes a connection from a pool
    /// of `POOL_SIZE` (env; unset: no pool) and never gives it back; `/health` fails
    /// once the pool is empty. `/` itself keeps answering. Checks on the slot's own port
    /// (before any user request) pass; under ~100 req/s the health fails within a second.
    pub const LEAK_FROM: &str = "app.get('/', (req, res) => {\n";
    /// See [`LEAK_FROM`].
    pub const LEAK_TO: &str = "let poolLeft = Number(process.env.POOL_SIZE || Infinity);\nconst databaseAnswersInTimeBefore = databaseAnswersInTime;\ndatabaseAnswersInTime = () => poolLeft > 0 && databaseAnswersInTimeBefore();\napp.get('/', (req, res) => {\n  poolLeft -= 1;\n";
    /// A release that cannot reach its database at all: `/health` fails from its first
    /// answer (`/` still answers, so a user request that reached it would be counted by
    /// version).
    pub const DOWN_FROM: &str = "return Math.random() >= 0.2;";
    /// See [`DOWN_FROM`].
    pub const DOWN_TO: &str = "return false; // the new driver cannot reach the database";
}

/// A plain TCP listener on `port` (another process's, as far as the controller knows),
/// closed on drop.
pub fn squat(port: u16) -> std::net::TcpListener {
    std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot take port {port}: {e}"))
}

/// The upstream file's bytes (empty when missing).
pub fn upstream_text(f: &Front) -> String {
    std::fs::read_to_string(f.upstream_file()).unwrap_or_default()
}

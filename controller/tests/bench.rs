//! The benchmark behind `hack/bench.sh` (ignored in `cargo test`): every number is
//! measured in the same run as its baseline, on the same machine, and reported as a ratio.
//!
//! - detection latency: commit → pass start, local (inotify) and remote with a webhook,
//!   against the peers' default poll intervals (reference lines, not runs);
//! - converge time per kind of change against the seed checklist's full procedure;
//! - time to revert against the checklist's manual rollback;
//! - failed requests and p99 latency under 250 req/s during a rollout and a revert, against
//!   the checklist's `pm2 delete` + `pm2 start` under the same load;
//! - the controller's idle CPU and memory, and a no-op pass with 1, 10 and 100 apps, with
//!   and without sharing `pm2 jlist`, and against a config repo of 10,000 commits.
//!
//! The bench app has real dependencies (express, from the npm registry) and a build step.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{World, free_port, git, pm2_bin, wait_for};
use shipshape_spec::status::Phase;

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Requests at a fixed rate, counting failures and latencies, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Option<Duration>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, rate: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Option<Duration>>>> = Arc::default();
        let workers = 4;
        let period = Duration::from_secs_f64(workers as f64 / rate as f64);
        let mut threads = Vec::new();
        for _ in 0..workers {
            let (stop, samples) = (stop.clone(), samples.clone());
            threads.push(std::thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let ok = common::get_port(port, "/").is_some_and(|b| b.contains(" from "));
                    samples.lock().unwrap().push(ok.then(|| t0.elapsed()));
                    next += period;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            }));
        }
        Load {
            stop,
            samples,
            threads,
        }
    }

    /// (requests, failed, p99 ms, rate achieved)
    fn finish(self, elapsed: Duration) -> serde_json::Value {
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

/// The seed checklist, scripted: git reset, npm install, build, (migrate), pm2 delete + start,
/// pm2 save, then curl /api/health until it answers.
struct Seed {
    dir: std::path::PathBuf,
    pm2_home: std::path::PathBuf,
    port: u16,
}

impl Seed {
    fn new(w: &World) -> Seed {
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
        let port = free_port();
        std::fs::write(
            w.root().join("seed-ecosystem.json"),
            serde_json::json!({"apps": [{"name": "seed", "script": "server.js", "cwd": dir, "instances": 2, "exec_mode": "cluster", "env": {"PORT": port}}]}).to_string(),
        )
        .unwrap();
        Seed {
            dir,
            pm2_home: w.root().join("seed-pm2"),
            port,
        }
    }

    fn pm2(&self, args: &[&str]) -> std::process::Output {
        Command::new(pm2_bin())
            .args(args)
            .env("PM2_HOME", &self.pm2_home)
            .output()
            .unwrap()
    }

    /// The full procedure for `commit`; returns its wall time.
    fn deploy(&self, w: &World, commit: &str, migrate: Option<&str>) -> Duration {
        let t0 = Instant::now();
        git(&self.dir, &["fetch", "-q", "origin"]);
        git(&self.dir, &["reset", "-q", "--hard", commit]);
        let run = |cmd: &str| {
            let out = Command::new("sh")
                .args(["-c", cmd])
                .current_dir(&self.dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run("npm install --no-audit --no-fund --loglevel=error");
        run("npm run build --silent");
        if let Some(url) = migrate {
            let dbmate = common::dbmate_bin();
            let out = Command::new(dbmate)
                .args([
                    "--migrations-dir",
                    "db/migrations",
                    "--no-dump-schema",
                    "migrate",
                ])
                .env("DATABASE_URL", url)
                .current_dir(&self.dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.pm2(&["delete", "seed"]);
        let out = self.pm2(&[
            "start",
            w.root().join("seed-ecosystem.json").to_str().unwrap(),
        ]);
        assert!(out.status.success());
        self.pm2(&["save"]);
        wait_for("the seed app's health", Duration::from_secs(60), || {
            common::get_port(self.port, "/api/health").filter(|b| b.contains("ok"))
        });
        t0.elapsed()
    }

    /// The manual rollback: git reset to `commit`, npm install, build, pm2 restart, health.
    fn rollback(&self, commit: &str) -> Duration {
        let t0 = Instant::now();
        git(&self.dir, &["reset", "-q", "--hard", commit]);
        let run = |cmd: &str| {
            let out = Command::new("sh")
                .args(["-c", cmd])
                .current_dir(&self.dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{cmd}");
        };
        run("npm install --no-audit --no-fund --loglevel=error");
        run("npm run build --silent");
        self.pm2(&["restart", "seed"]);
        wait_for("the seed app's health", Duration::from_secs(60), || {
            common::get_port(self.port, "/api/health").filter(|b| b.contains("ok"))
        });
        t0.elapsed()
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        self.pm2(&["kill"]);
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

fn pass_secs(w: &World, app: &str) -> f64 {
    let p = w.store().load(app).unwrap().last_pass.unwrap();
    let a = chrono::DateTime::parse_from_rfc3339(&p.started_at).unwrap();
    let b = chrono::DateTime::parse_from_rfc3339(&p.finished_at).unwrap();
    b.signed_duration_since(a).num_milliseconds() as f64 / 1000.0
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
        // `cargo test` builds with the dev profile's settings unless given --release.
        "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
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
    assert_eq!(c["profile"], "dev", "cargo test without --release");
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
    let w = World::new("bench");
    // Real dependencies: express from the npm registry, locked.
    let out = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "express@4",
        ])
        .current_dir(w.app_repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "npm install express: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(w.app_repo().join(".gitignore"), "node_modules/\ndist/\n").unwrap();
    let db = std::env::var("SHIPSHAPE_TEST_DATABASE_URL")
        .ok()
        .map(|_| common::fresh_database("bench-secret"));
    let env_file = db
        .as_ref()
        .map(|url| w.write_env_file(&format!("DATABASE_URL={url}\n")));
    let m1 = "-- migrate:up\nCREATE TABLE t1 (id int);\n\n-- migrate:down\nDROP TABLE t1;\n";
    let mut commit = w.commit_app_files(&[("db/migrations/0001_t1.sql", m1)], "real dependencies");
    let doc = |commit: &str, greeting: &str, level: &str| {
        let d = match &env_file {
            Some(env) => w.document_with_migrations(
                commit,
                env,
                &format!("    driver: dbmate\n    level: \"{level}\"\n"),
            ),
            None => w.document(commit),
        };
        d.replace(
            "        PORT:",
            &format!("        GREETING: {greeting}\n        PORT:"),
        )
    };
    w.commit_config(&doc(&commit, "hello", "0001"));
    once(&w, &[]);
    let seed = Seed::new(&w);
    seed.deploy(&w, &commit, db.as_deref());

    // Converge time per kind of change, against the full checklist on the same change.
    let mut kinds = Vec::new();
    let mut level = "0001".to_string();
    for (i, kind) in ["pm2 env only", "code only", "dependencies", "migration"]
        .iter()
        .enumerate()
    {
        if *kind == "migration" && db.is_none() {
            continue;
        }
        let mut greeting = "hello".to_string();
        match *kind {
            "pm2 env only" => greeting = format!("hi{i}"),
            "code only" => commit = w.commit_app_version(&format!("1.{i}.0")),
            "dependencies" => {
                let out = Command::new("npm")
                    .args([
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                        "ms@2",
                    ])
                    .current_dir(w.app_repo())
                    .output()
                    .unwrap();
                assert!(out.status.success());
                commit = w.commit_app_files(&[], "a new dependency");
            }
            "migration" => {
                let m2 =
                    "-- migrate:up\nCREATE TABLE t2 (id int);\n\n-- migrate:down\nDROP TABLE t2;\n";
                commit = w.commit_app_files(&[("db/migrations/0002_t2.sql", m2)], "0002");
                level = "0002".into();
            }
            _ => {}
        }
        w.commit_config(&doc(&commit, &greeting, &level));
        let ours = once(&w, &[]);
        let steps: Vec<String> = w
            .record()
            .last_pass
            .unwrap()
            .steps
            .iter()
            .map(|s| s.step.to_string())
            .collect();
        let manual = seed.deploy(&w, &commit, db.as_deref());
        kinds.push(serde_json::json!({
            "kind": kind, "shipshape_s": secs(ours), "checklist_s": secs(manual),
            "speedup": (manual.as_secs_f64() / ours.as_secs_f64() * 10.0).round() / 10.0,
            "steps": steps,
        }));
    }
    report.insert("converge".into(), kinds.into());

    // Under load: a code rollout, against the checklist's delete + start.
    let v_load = w.commit_app_version("2.0.0");
    w.commit_config(&doc(&v_load, "hello", &level));
    let t0 = Instant::now();
    let load = Load::start(w.port, 250);
    once(&w, &[]);
    let ours_load = load.finish(t0.elapsed());
    let t0 = Instant::now();
    let load = Load::start(seed.port, 250);
    seed.deploy(&w, &v_load, db.as_deref());
    let seed_load = load.finish(t0.elapsed());

    // Revert: a revision whose health fails; the time from the broken commit to the old
    // revision live and verified again (the rollout, failing fast, the revert), against the
    // checklist's deploy of the same broken commit plus its manual rollback (which rebuilds).
    let good = v_load.clone();
    let bad = w.commit_app_version("3.0.0");
    let bad_doc = doc(&bad, "hello", &level)
        .replace("        PORT:", "        HEALTH_FAIL: \"1\"\n        PORT:");
    assert!(
        bad_doc.contains("HEALTH_FAIL"),
        "the bench document changed shape"
    );
    w.commit_config(&bad_doc);
    let t0 = Instant::now();
    let load = Load::start(w.port, 250);
    let out = w.shipshape(&["run", "--once"], &[]);
    let ours_revert = t0.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let revert_load = load.finish(t0.elapsed());
    let rec = w.record();
    let reverted = rec.revisions.last().expect("the broken revision");
    assert_eq!(
        reverted.revision.outcome,
        shipshape_spec::status::Outcome::Reverted
    );
    let t1 = Instant::now();
    seed.deploy(&w, &bad, db.as_deref());
    seed.rollback(&good);
    let manual_revert = t1.elapsed();
    report.insert(
        "revert".into(),
        serde_json::json!({
            "shipshape_s": secs(ours_revert), "checklist_s": secs(manual_revert),
            "speedup": (manual_revert.as_secs_f64() / ours_revert.as_secs_f64() * 10.0).round() / 10.0,
            "rule": reverted.revision.message.split(';').next().unwrap_or_default(),
        }),
    );
    report.insert(
        "load_rollout".into(),
        serde_json::json!({"shipshape": ours_load, "checklist": seed_load}),
    );
    report.insert(
        "load_revert".into(),
        serde_json::json!({"shipshape": revert_load}),
    );

    // Detection latency, local (inotify), with the daemon.
    let fixed = w.commit_app_version("4.0.0");
    w.commit_config(&doc(&fixed, "hello", &level));
    let d = w.start(&["--interval", "10m"]);
    w.wait_record("converged", 120, &d, |r| r.phase == Phase::Ready);
    let mut local = Vec::new();
    for i in 0..5 {
        let t = chrono::Utc::now();
        let c = w.commit_config(&doc(&fixed, &format!("detect{i}"), &level));
        let rec = w.wait_record("the pass", 60, &d, |r| {
            r.last_pass.as_ref().is_some_and(|p| p.config_commit == c)
        });
        let started =
            chrono::DateTime::parse_from_rfc3339(&rec.last_pass.unwrap().started_at).unwrap();
        local.push(started.signed_duration_since(t).num_milliseconds() as f64 / 1000.0);
        w.wait_record("ready", 60, &d, |r| {
            r.phase == Phase::Ready && r.last_pass.as_ref().is_some_and(|p| p.config_commit == c)
        });
    }
    // Idle CPU and memory of the controller, over 10 s with nothing to do.
    let pid = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(w.state_dir().join("api.json")).unwrap(),
    )
    .unwrap()["pid"]
        .as_u64()
        .unwrap();
    let cpu = |pid: u64| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    };
    let c0 = cpu(pid);
    let t0 = Instant::now();
    wait_for("10 idle seconds", Duration::from_secs(20), || {
        (t0.elapsed() >= Duration::from_secs(10)).then_some(())
    });
    let idle_cpu = (cpu(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap())
        })
        .unwrap();
    drop(d);

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
    w.wait_record("converged (remote)", 120, &d, |r| r.phase == Phase::Ready);
    let mut hooked = Vec::new();
    for i in 0..5 {
        let c = w.commit_config(&doc(&fixed, &format!("hook{i}"), &level));
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
        let started =
            chrono::DateTime::parse_from_rfc3339(&rec.last_pass.unwrap().started_at).unwrap();
        hooked.push(started.signed_duration_since(t).num_milliseconds() as f64 / 1000.0);
        w.wait_record("ready", 60, &d, |r| {
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
    report.insert("idle".into(), serde_json::json!({"cpu_percent": (idle_cpu * 100.0).round() / 100.0, "rss_mb": rss_kb / 1024}));

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

    report.insert("context".into(), context(&started_at));
    let json = serde_json::Value::Object(report);
    let out_dir = common::workspace().join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(
        out_dir.join("bench.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    println!("BENCH-JSON {}", serde_json::to_string(&json).unwrap());
}

//! `shipshape status` from real records: one controller, the real pm2 and the example app,
//! four apps left in the states an operator meets (healthy; reverted and quarantined; pinned
//! while git moved on; a failing build step). The records are rendered with a fixed "now"
//! and compared with golden files under `tests/golden/` (`UPDATE_GOLDEN=1` rewrites them);
//! what varies from run to run (commits, times, the temp dir, ports, latencies, how many
//! rounds the monitor counted) is normalised first. `status --watch` is run as a process,
//! piped (the event stream) and on a pseudo-terminal (the live view, through `script`).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{AppEdit, World, git, wait_for};
use shipshape::cli::view;
use shipshape::state::AppRecord;
use shipshape_spec::status::{Outcome, Phase};

/// The time every timestamp of the normalised records is set to, and the "now" they are
/// rendered at: every age reads 5m.
const RECORDED_AT: &str = "2026-01-01T12:00:00.000Z";
const NOW: &str = "2026-01-01T12:05:00Z";

/// The world and the port of each of its four apps.
struct Fleet {
    w: World,
    ports: HashMap<&'static str, u16>,
}

const APPS: [&str; 4] = ["web", "api", "jobs", "build"];

impl Fleet {
    fn doc(&self, name: &str, commit: &str) -> shipshape_spec::App {
        let text = if name == self.w.name {
            self.w.document(commit)
        } else {
            self.w.other_document(name, commit, self.ports[name])
        };
        let mut app = shipshape_spec::load_str(&text, "doc.yaml").unwrap();
        app.health(Duration::from_millis(300), 2, 3, Duration::from_secs(20));
        app
    }

    /// Write `apps/<name>.yaml` for each document, all in one config commit.
    fn commit(&self, docs: &[(&str, shipshape_spec::App)]) -> String {
        let config = self.w.config_repo();
        for (name, app) in docs {
            std::fs::write(
                config.join("apps").join(format!("{name}.yaml")),
                shipshape_spec::load::to_yaml(app),
            )
            .unwrap();
        }
        git(&config, &["add", "-A"]);
        git(&config, &["commit", "-qm", "desired state"]);
        git(&config, &["rev-parse", "HEAD"])
    }
}

fn load(w: &World, name: &str) -> AppRecord {
    w.store().load(name).unwrap()
}

/// Drive a real controller until the four apps are where the golden files show them;
/// returns the world with the controller stopped (its records no longer move).
fn four_apps() -> Fleet {
    let w = World::new("web");
    let mut ports = HashMap::new();
    ports.insert("web", w.port);
    for name in &APPS[1..] {
        ports.insert(*name, common::free_port());
    }
    let f = Fleet { w, ports };
    let v1 = f.w.app_head();
    let docs: Vec<(&str, shipshape_spec::App)> = APPS.iter().map(|n| (*n, f.doc(n, &v1))).collect();
    f.commit(&docs);
    let d = f.w.start(&[]);
    for name in APPS {
        wait_for(
            &format!("{name} at revision 1, Ready"),
            Duration::from_secs(120),
            || {
                let r = f.w.store().load(name).ok()?;
                (r.phase == Phase::Ready && r.live_revision == Some(1)).then_some(())
            },
        );
    }

    let out = f.w.shipshape(
        &[
            "pin",
            "jobs",
            "--reason",
            "incident 42: hold",
            "--by",
            "alice",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // v2: api's health fails (reverted), build's second step fails, jobs is pinned.
    let v2 = f.w.commit_app_version("2.0.0");
    let mut api = f.doc("api", &v2);
    api.env("HEALTH_FAIL", "1");
    let mut build = f.doc("build", &v2);
    build.spec.build.steps.push(
        "echo 'bundling 12 modules'; echo 'error: cannot resolve ./missing-module' >&2; exit 2"
            .into(),
    );
    let jobs = f.doc("jobs", &v2);
    f.commit(&[("api", api), ("build", build), ("jobs", jobs)]);

    f.w.wait_record("web still ready", 60, &d, |r| r.phase == Phase::Ready);
    wait_for("api reverted", Duration::from_secs(120), || {
        let r = load(&f.w, "api");
        (r.phase == Phase::Failed
            && r.live_revision == Some(1)
            && r.revision(2)
                .is_some_and(|e| e.revision.outcome == Outcome::Reverted)
            && r.health
                .as_ref()
                .is_some_and(|h| h.revision == 1 && h.passing))
        .then_some(())
    });
    wait_for("build failed", Duration::from_secs(120), || {
        let r = load(&f.w, "build");
        (r.phase == Phase::Failed && r.last_error.is_some()).then_some(())
    });
    wait_for("jobs sees v2 desired", Duration::from_secs(60), || {
        let r = load(&f.w, "jobs");
        (r.desired_app_commit.as_deref() == Some(v2.as_str())).then_some(())
    });
    // Settled: each app's last pass ran no step, and its live revision's checks pass.
    for name in APPS {
        wait_for(&format!("{name} settled"), Duration::from_secs(60), || {
            let r = load(&f.w, name);
            let quiet = r.last_pass.as_ref().is_some_and(|p| p.steps.is_empty());
            let healthy = r
                .health
                .as_ref()
                .is_some_and(|h| Some(h.revision) == r.live_revision && h.passing);
            (quiet && healthy).then_some(())
        });
    }
    drop(d);
    f
}

/// Rewrites what differs between runs in a JSON value: commits become `1111…`, `2222…` in
/// order of first appearance, every timestamp [`RECORDED_AT`], the temp dir `/tmp/world`,
/// ports `PORT`, latencies and durations 0, and round counts of the monitor (which kept
/// counting until the controller stopped) 1.
struct Normaliser {
    shas: Vec<String>,
    root: String,
    ports: Vec<String>,
}

impl Normaliser {
    /// Number the commits of `v` in order of first appearance (before any is rewritten, so
    /// a short form met before its commit maps to the same number).
    fn collect(&mut self, v: &serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) => {
                let b = s.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    let hex = b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
                    if hex == 40 && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                        let sha = s[i..i + 40].to_string();
                        if !self.shas.contains(&sha) {
                            self.shas.push(sha);
                        }
                    }
                    i += hex.max(1);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| self.collect(x)),
            Value::Object(o) => o
                .iter()
                .filter(|(k, _)| *k != "document")
                .for_each(|(_, x)| self.collect(x)),
            _ => {}
        }
    }

    fn value(&mut self, key: &str, v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) => *s = self.text(s),
            Value::Number(n) => {
                if matches!(key, "latencyMs" | "durationMs") {
                    *v = 0.into();
                } else if matches!(key, "consecutivePasses" | "consecutiveFailures")
                    && n.as_u64() > Some(0)
                {
                    *v = 1.into();
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(key, x)),
            Value::Object(o) => {
                // The applied document is not shown (and its durations must still parse).
                for (k, x) in o.iter_mut().filter(|(k, _)| *k != "document") {
                    self.value(k, x)
                }
            }
            _ => {}
        }
    }

    fn text(&mut self, s: &str) -> String {
        let mut s = normalise_pm_ids(&s.replace(&self.root, "/tmp/world"));
        for p in &self.ports {
            s = replace_word(&s, p, "PORT");
        }
        // Commits (40 hex digits) and timestamps (RFC 3339, UTC).
        let b: Vec<char> = s.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            let hex = b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
            let word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
            if word_start && (hex == 40 || hex == 12) {
                // A commit, or its 12-character short form.
                let token: String = b[i..i + hex].iter().collect();
                let n = match self.shas.iter().position(|x| x.starts_with(&token)) {
                    Some(n) => Some(n),
                    None if hex == 40 => {
                        self.shas.push(token);
                        Some(self.shas.len() - 1)
                    }
                    None => None,
                };
                if let Some(n) = n {
                    out.push_str(&format!("{:x}", n + 1).repeat(hex)[..hex]);
                    i += hex;
                    continue;
                }
            }
            if is_timestamp(&b[i..]) {
                let len = b[i..].iter().position(|c| *c == 'Z').unwrap() + 1;
                out.push_str(RECORDED_AT);
                i += len;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        normalise_millis(&out)
    }
}

/// `s` with each `word` that is not part of a longer word or number replaced by `with`.
fn replace_word(s: &str, word: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(word) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + word.len()..].chars().next();
        let bounded = !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric());
        out.push_str(&rest[..i]);
        out.push_str(if bounded { with } else { word });
        rest = &rest[i + word.len()..];
    }
    out.push_str(rest);
    out
}

/// `2026-…T…Z` at the start of `b`.
fn is_timestamp(b: &[char]) -> bool {
    b.len() >= 20
        && b[..4].iter().all(char::is_ascii_digit)
        && b[4] == '-'
        && b[10] == 'T'
        && b[11..].iter().take(30).any(|c| *c == 'Z')
        && b[11..]
            .iter()
            .take_while(|c| **c != 'Z')
            .all(|c| c.is_ascii_digit() || ":.".contains(*c))
}

/// `(id 6)` → `(id N)`: pm2 numbers the processes of all apps in the order it starts them.
fn normalise_pm_ids(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("(id ") {
        let after = &rest[i + 4..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..i]);
            out.push_str("(id N)");
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..i + 4]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `3ms`, `1.5ms` → `Nms`.
fn normalise_millis(s: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let mut rest = s.chars().peekable();
    while let Some(c) = rest.next() {
        if c.is_ascii_digit() || (c == '.' && !digits.is_empty()) {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            if c == 'm' && rest.peek() == Some(&'s') {
                out.push('N');
            } else {
                out.push_str(&digits);
            }
            digits.clear();
        }
        out.push(c);
    }
    out.push_str(&digits);
    out
}

fn normalised(f: &Fleet) -> Vec<AppRecord> {
    let mut n = Normaliser {
        shas: Vec::new(),
        root: std::fs::canonicalize(f.w.root())
            .unwrap()
            .display()
            .to_string(),
        ports: f.ports.values().map(|p| p.to_string()).collect(),
    };
    let mut names = f.w.store().apps();
    names.sort();
    let mut values: Vec<serde_json::Value> = names
        .iter()
        .map(|name| serde_json::to_value(load(&f.w, name)).unwrap())
        .collect();
    values.iter().for_each(|v| n.collect(v));
    values
        .iter_mut()
        .map(|v| {
            n.value("", v);
            serde_json::from_value(v.take()).unwrap()
        })
        .collect()
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compare `text` with the golden file `name` (or rewrite it with `UPDATE_GOLDEN=1`).
fn golden(name: &str, text: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        want == text,
        "{name} differs from the golden file (UPDATE_GOLDEN=1 rewrites it)\n--- want\n{want}\n--- got\n{text}"
    );
}

#[test]
fn real_records_of_a_healthy_a_reverted_a_pinned_and_a_failed_app_render_as_the_golden_files() {
    let f = four_apps();
    let records = normalised(&f);
    let now = NOW.parse().unwrap();
    let table = |wide| view::render_table(&view::list(&records, now, wide), wide).join("\n") + "\n";
    golden("status-list.txt", &table(false));
    golden("status-wide.txt", &table(true));
    for r in &records {
        golden(&format!("status-{}.txt", r.name), &view::detail(r, now));
    }

    // The command prints the same views of the same records (with the real clock).
    let out = f.w.shipshape(&["status"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let shown: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("NAME"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(shown, ["api", "build", "jobs", "web"], "{stdout}");
    let out = f.w.shipshape(&["status", "api"], &[]);
    let detail = String::from_utf8_lossy(&out.stdout);
    // What docs/status.md shows (`--nocapture` prints it).
    println!("$ shipshape status\n{stdout}\n$ shipshape status api\n{detail}");
    assert!(
        detail.contains("api  Failed  since")
            && detail.contains("  attempted   revision 2")
            && detail.contains("  quarantined config"),
        "{detail}"
    );
}

/// `shipshape status --watch` piped: the list, then each event as it happens.
#[test]
fn status_watch_piped_prints_the_list_then_the_event_stream() {
    let w = World::new("watched");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });
    let out_file = w.root().join("watch.out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["status", "--watch"])
        .env("SHIPSHAPE_STATE_DIR", w.state_dir())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for("the list", Duration::from_secs(10), || {
        let t = std::fs::read_to_string(&out_file).ok()?;
        t.contains("watched").then_some(())
    });
    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document(&v2));
    let text = wait_for("rollout events", Duration::from_secs(90), || {
        let t = std::fs::read_to_string(&out_file).ok()?;
        t.contains("rollout-healthy").then_some(t)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.lines().any(|l| l.starts_with("NAME ")), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no terminal codes when piped: {text:?}"
    );
    let started = text.find("rollout-started").expect(&text);
    assert!(started < text.find("rollout-healthy").unwrap(), "{text}");
}

/// `shipshape status --watch` on a terminal (a pseudo-terminal from `script`): the view is
/// redrawn in place, and the line of an app that changed is highlighted.
#[test]
fn status_watch_on_a_terminal_redraws_in_place_and_highlights_a_changed_line() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed for the pseudo-terminal");
    }
    let w = World::new("live");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });
    let typescript = w.root().join("typescript");
    let cmd = format!("{} status --watch", env!("CARGO_BIN_EXE_shipshape"));
    // `script` runs the command on a pty and copies what it writes to the file; the
    // command line is built from the test binary's path, which has no shell metacharacters.
    let mut child = Command::new("script")
        .args(["-qfec", &cmd])
        .arg(&typescript)
        .env("SHIPSHAPE_STATE_DIR", w.state_dir())
        .env_remove("NO_COLOR")
        .env("COLUMNS", "200")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first frame", Duration::from_secs(10), || {
        let t = std::fs::read_to_string(&typescript).ok()?;
        t.contains("live").then_some(())
    });
    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document(&v2));
    let text = wait_for("a highlighted line", Duration::from_secs(60), || {
        let t = std::fs::read_to_string(&typescript).ok()?;
        t.contains("\x1b[7mlive  ").then_some(t)
    });
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    assert!(text.contains("\r\x1b["), "redrawn in place: {text:?}");
    assert!(
        text.contains("\x1b[2K"),
        "lines cleared before redrawing: {text:?}"
    );
}

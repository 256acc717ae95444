//! Crash safety: the controller SIGKILLs itself (fault injection,
//! `SHIPSHAPE_FAULT=<before|after>:<step>[:<n>]`) at a step boundary of a rollout or of a
//! revert; one restart must finish the job. Each boundary is one killed run and one restart,
//! and after the restart each test checks:
//!
//! - **the steps that ran**: exactly what the in-flight journal said was left (its planned
//!   steps after the ones it recorded done), except where a step is re-run by design, each
//!   named in [`expected_after_restart`]; and the effects that leave a trace outside the
//!   records (hook runs, backup files, the migration level) happened once;
//! - **the release live**: `current`, `/version` and the record;
//! - **the migration level**, read from the database;
//! - **no failed request**: a load of ~50 GETs of `/` per second runs from before the killed
//!   run until the restart finished; every request must succeed (cluster-mode reloads are
//!   graceful, and a killed controller leaves pm2 and the app running), and every answer must
//!   come from the old or the new release — never an unbuilt one, and never the new one before
//!   its processes were reloaded.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{World, fresh_database, git, sql};
use shipshape::reconcile::journal::{Journal, JournalFile};
use shipshape_spec::status::{Outcome, Phase, StepKind};

// ---------------------------------------------------------------------------------------
// The load: GET / at ~50 requests per second.

/// One request's result: the version that answered, or why it failed.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    wall: chrono::DateTime<chrono::Utc>,
    took: Duration,
    answer: Result<String, String>,
}

struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let at = Instant::now();
                let wall = chrono::Utc::now();
                let answer = get_root(port);
                samples.push(Sample {
                    at,
                    wall,
                    took: at.elapsed(),
                    answer,
                });
                next += Duration::from_millis(20);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            samples
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// GET / (HTTP/1.0): the version in `hello from <version>`, or why the request failed.
fn get_root(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = buf
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete response: {buf:?}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("status: {}", head.lines().next().unwrap_or("")));
    }
    body.trim()
        .strip_prefix("hello from ")
        .map(str::to_string)
        .ok_or_else(|| format!("unexpected body {body:?}"))
}

/// What the load saw, checked: at least `min` requests, no failed one, every answer from
/// `old` or `new`, and only `old` before `new_from`.
fn check_load(
    what: &str,
    samples: &[Sample],
    old: &str,
    new: &str,
    old_only_until: Option<Instant>,
) -> (usize, usize) {
    let span = samples.last().unwrap().at - samples[0].at;
    // ~50/s; at least 20/s on a busy 2-core machine, or the load proves nothing.
    let min = (span.as_secs_f64() * 20.0) as usize;
    assert!(
        samples.len() >= min.max(20),
        "{what}: only {} requests in {span:?}",
        samples.len()
    );
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.answer.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed, e.g. {:?}",
        failed.len(),
        samples.len(),
        failed
            .iter()
            .take(3)
            .map(|s| (s.wall, s.took, &s.answer))
            .collect::<Vec<_>>()
    );
    for s in samples {
        if let Ok(v) = &s.answer {
            assert!(
                v == old || v == new,
                "{what}: served {v:?}, neither the old release ({old}) nor the new ({new})"
            );
            if let Some(t) = old_only_until
                && s.at < t
            {
                assert_eq!(
                    v, old,
                    "{what}: the new release answered before its processes were reloaded"
                );
            }
        }
    }
    (samples.len(), failed.len())
}

// ---------------------------------------------------------------------------------------
// The documents, typed (no text replacement that could silently match nothing).

#[derive(Debug, Clone)]
struct Doc {
    commit: String,
    /// A second process, `<name>-worker`, on this port.
    worker: Option<u16>,
    /// Extra env for the web process.
    env: Vec<(&'static str, String)>,
    /// The migration level (dbmate), with the env file holding `DATABASE_URL`.
    migrations: Option<(String, &'static str)>,
    progress_deadline: &'static str,
}

impl Doc {
    fn new(commit: &str) -> Doc {
        Doc {
            commit: commit.to_string(),
            worker: None,
            env: Vec::new(),
            migrations: None,
            progress_deadline: "20s",
        }
    }

    fn render(&self, w: &World) -> String {
        let root = w.root().display();
        let mut env = format!("        PORT: {}\n", w.port);
        for (k, v) in &self.env {
            env.push_str(&format!("        {k}: \"{v}\"\n"));
        }
        let worker = match self.worker {
            None => String::new(),
            Some(port) => format!(
                "    - name: {name}-worker\n      script: server.js\n      env:\n        PORT: {port}\n",
                name = w.name
            ),
        };
        let migrations = match &self.migrations {
            None => String::new(),
            Some((level, on_revert)) => format!(
                "  envFile: {root}/app.env\n  migrations:\n    driver: dbmate\n    level: \"{level}\"\n    backup: pg_dump --no-owner -f \"$SHIPSHAPE_BACKUP_FILE\" \"$DATABASE_URL\"\n    onRevert: {on_revert}\n    timeout: 30s\n"
            ),
        };
        format!(
            r#"apiVersion: shipshape/v1alpha1
kind: App
metadata:
  name: {name}
spec:
  source:
    repository: {repo}
    commit: {commit}
  releases:
    root: {releases}
  build:
    install: npm ci --no-audit --no-fund
    steps:
      - npm run build
    timeout: 60s
{migrations}  processes:
    - name: {name}-web
      script: server.js
      instances: 2
      exec_mode: cluster
      env:
{env}{worker}  hooks:
    afterSwitch:
      - echo "a $SHIPSHAPE_RELEASE" >> {root}/hooks.log
      - echo "b $SHIPSHAPE_RELEASE" >> {root}/hooks.log
  health:
    checks:
      - name: api
        http:
          url: http://127.0.0.1:{port}/api/health
          bodyContains: '"status":"ok"'
        timeout: 1s
    interval: 300ms
    successThreshold: 2
    failureThreshold: 2
    progressDeadline: {deadline}
"#,
            name = w.name,
            repo = w.app_repo().display(),
            commit = self.commit,
            releases = w.releases_root().display(),
            port = w.port,
            deadline = self.progress_deadline,
        )
    }
}

/// Commit app version `version` with migration `level` (a new table), and a new lockfile
/// when `new_lockfile` (so the plan installs instead of reusing `node_modules`).
fn commit_version(w: &World, version: &str, level: Option<&str>, new_lockfile: bool) -> String {
    let set_version = |file: &str, all: bool| {
        let p = w.app_repo().join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        let from = text
            .split("\"version\": \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();
        let old = format!("\"version\": \"{from}\"");
        let new = format!("\"version\": \"{version}\"");
        assert!(text.contains(&old));
        // The lockfile names the app's version twice (its top and its root package); a
        // dependency's own version comes after them and stays.
        let text = if all {
            text.replacen(&old, &new, 2)
        } else {
            text.replacen(&old, &new, 1)
        };
        std::fs::write(&p, text).unwrap();
    };
    set_version("package.json", false);
    if new_lockfile {
        set_version("package-lock.json", true);
    }
    if let Some(level) = level {
        let table = format!("t{level}");
        std::fs::write(
            w.app_repo().join(format!("db/migrations/{level}_{table}.sql")),
            format!(
                "-- migrate:up\nCREATE TABLE {table} (id int);\n\n-- migrate:down\nDROP TABLE {table};\n"
            ),
        )
        .unwrap();
    }
    git(&w.app_repo(), &["add", "-A"]);
    git(&w.app_repo(), &["commit", "-qm", &format!("v{version}")]);
    w.app_head()
}

// ---------------------------------------------------------------------------------------
// Killing and restarting.

fn kinds(steps: &[StepKind]) -> Vec<&'static str> {
    steps.iter().map(|s| s.as_str()).collect()
}

/// Run one pass with `fault`; it must die of SIGKILL there. Returns the journal it left.
fn killed_at(w: &World, fault: &str) -> Journal {
    let out = w.shipshape(&["run", "--once"], &[("SHIPSHAPE_FAULT", fault)]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{fault}: the controller was not killed there:\n{log}"
    );
    assert!(log.contains("fault injection"), "{fault}: {log}");
    let dir = w.state_dir().join("apps").join(&w.name);
    JournalFile::new(&dir)
        .read()
        .unwrap_or_else(|| panic!("{fault}: no journal of the interrupted pass:\n{log}"))
}

/// A step a revision's log names.
struct Logged {
    kind: StepKind,
    /// The log says it failed (`!! <kind> failed: …`).
    failed: bool,
}

/// The steps a revision's log names (`== <time> <kind> <target> (<reason>)`), in the order
/// they started: every step the killed run began, the revert's included.
fn logged_steps(w: &World, revision: u64) -> Vec<Logged> {
    let log = w
        .state_dir()
        .join(format!("apps/{}/logs/revision-{revision}.log", w.name));
    let mut steps: Vec<Logged> = Vec::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        if let Some(l) = line.strip_prefix("== ") {
            let mut f = l.split(' ').skip(1);
            steps.push(Logged {
                kind: serde_json::from_value(f.next().unwrap().into()).unwrap(),
                failed: false,
            });
        } else if line.starts_with("!! ")
            && let Some(last) = steps.last_mut()
        {
            last.failed = true;
        }
    }
    steps
}

/// The journal must say the killed run stopped exactly at `fault` (`<when>:<step>[:<n>]`:
/// at the n-th such step of the run), and agree with the revision's log: the journal's done
/// steps are the last steps the log names (the run's earlier steps, a rollout's before its
/// revert, are before them), and the steps done are the first planned ones, in order.
fn check_journal_at(w: &World, fault: &str, j: &Journal, revision: u64) {
    let mut parts = fault.split(':');
    let (when, step) = (parts.next().unwrap(), parts.next().unwrap());
    let nth: usize = parts.next().map_or(1, |n| n.parse().unwrap());
    let done: Vec<StepKind> = j.done.iter().map(|d| d.step).collect();
    let log = logged_steps(w, revision);
    let logged: Vec<StepKind> = log.iter().map(|l| l.kind).collect();
    assert!(
        logged.ends_with(&done),
        "{fault}: the journal's done steps {:?} are not the last the log names {:?}",
        kinds(&done),
        kinds(&logged)
    );
    // A step that failed has a `before` boundary, not an `after` one.
    let seen = log
        .iter()
        .filter(|l| l.kind == step && (when == "before" || !l.failed))
        .count();
    match when {
        "after" => {
            assert_eq!(
                done.last().map(|k| k.as_str()),
                Some(step),
                "{fault}: the journal's last done step: {:?}",
                kinds(&done)
            );
            assert_eq!(seen, nth, "{fault}: the run's steps: {:?}", kinds(&logged));
        }
        "before" => {
            assert_eq!(
                j.planned.get(done.len()).map(|k| k.as_str()),
                Some(step),
                "{fault}: the next planned step: planned {:?}, done {:?}",
                kinds(&j.planned),
                kinds(&done)
            );
            assert_eq!(
                seen + 1,
                nth,
                "{fault}: the run's steps: {:?}",
                kinds(&logged)
            );
        }
        _ => unreachable!(),
    }
    assert_eq!(
        done,
        j.planned[..done.len()],
        "{fault}: the steps done are not the planned ones in order"
    );
}

/// What the restart must run, from what the interrupted pass's journal says: its planned
/// steps after the ones done — except where a step is run again by design:
///
/// - **the preparation** (fetch, install/reuse-deps, build) is one unit: a release is sealed
///   only after its last preparation step, and an unsealed release is never trusted (an
///   install or build cut short could have left anything), so a restart before the seal
///   removes the directory and prepares it again from fetch;
/// - **a backup whose migration did not finish** is taken again: the kill may have come in
///   the middle of the migration, so the level may have moved, and the backup a revert
///   restores must be of the level the migration starts from;
/// - **a finished verification whose verdict was not recorded** (`after:verify`) runs again:
///   nothing else can say the revision is healthy.
fn expected_after_restart(j: &Journal) -> Vec<StepKind> {
    let done: Vec<StepKind> = j.done.iter().map(|d| d.step).collect();
    let prepares = |k: &StepKind| {
        matches!(
            k,
            StepKind::Fetch | StepKind::Install | StepKind::ReuseDeps | StepKind::Build
        )
    };
    let prep_planned = j.planned.iter().filter(|k| prepares(k)).count();
    let prep_done = done.iter().filter(|k| prepares(k)).count();
    let mut from = done.len();
    if prep_done > 0 && prep_done < prep_planned {
        from = 0; // the preparation again, from fetch
    }
    if done.last() == Some(&StepKind::Backup) {
        from -= 1; // the backup again
    }
    let mut rest = j.planned[from..].to_vec();
    if rest.is_empty() && done.last() == Some(&StepKind::Verify) {
        rest.push(StepKind::Verify); // the verdict again
    }
    rest
}

/// Lines `a <release>` and `b <release>` in the hooks' log.
fn hook_runs(w: &World, release: &str) -> (usize, usize) {
    let log = std::fs::read_to_string(w.root().join("hooks.log")).unwrap_or_default();
    let count = |h: &str| {
        log.lines()
            .filter(|l| *l == format!("{h} {release}"))
            .count()
    };
    (count("a"), count("b"))
}

/// The backup files in the app's state directory, by name. Counting new names (not files)
/// keeps the count right when pruning removes the backups of revisions that left the history.
fn backups(w: &World) -> std::collections::BTreeSet<std::ffi::OsString> {
    let dir = w.state_dir().join("apps").join(&w.name).join("backups");
    std::fs::read_dir(dir).map_or_else(
        |_| Default::default(),
        |d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect(),
    )
}

/// How many backups appeared since `before`.
fn backups_since(w: &World, before: &std::collections::BTreeSet<std::ffi::OsString>) -> usize {
    backups(w).difference(before).count()
}

fn level(url: &str) -> String {
    sql(
        url,
        "SELECT coalesce(max(version), '') FROM schema_migrations",
    )
    .pop()
    .unwrap()
}

fn last_pass_steps(w: &World) -> Vec<StepKind> {
    w.record()
        .last_pass
        .map(|p| p.steps.iter().map(|s| s.step).collect())
        .unwrap_or_default()
}

/// A world with migrations (its own database), at 1.0.0 and level 0001, live and healthy.
fn world_with_database(name: &str) -> (World, String) {
    let w = World::new(name);
    let url = fresh_database("not-a-real-secret");
    w.write_env_file(&format!("DATABASE_URL={url}\n"));
    std::fs::create_dir_all(w.app_repo().join("db/migrations")).unwrap();
    // A real dependency: each new release can reuse the live one's node_modules (without one
    // the plan installs instead, and the reuse-deps boundary would never be reached).
    w.add_local_dependency();
    let v1 = commit_version(&w, "1.0.0", Some("0001"), false);
    let mut doc = Doc::new(&v1);
    doc.migrations = Some(("0001".into(), "down"));
    w.commit_config(&doc.render(&w));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    (w, url)
}

// ---------------------------------------------------------------------------------------
// The rollout.

/// One boundary of a rollout: the fault, and what the rollout changes so that the plan
/// has the step killed at.
struct Boundary {
    fault: &'static str,
    /// A new lockfile: `install` rather than `reuse-deps`.
    new_lockfile: bool,
    /// Whether the worker process is declared (added: `pm2-start`; removed: `pm2-delete`).
    worker: bool,
}

#[test]
fn a_controller_killed_at_any_step_boundary_of_a_rollout_finishes_only_the_missing_steps() {
    if !common::faults::fault_injection_built(
        "a_controller_killed_at_any_step_boundary_of_a_rollout_finishes_only_the_missing_steps",
    ) {
        return;
    }
    let (w, url) = world_with_database("killed");
    let b = |fault, new_lockfile, worker| Boundary {
        fault,
        new_lockfile,
        worker,
    };
    let boundaries = [
        b("before:fetch", false, false),
        b("after:fetch", false, false),
        b("before:install", true, false),
        b("after:install", true, false),
        b("after:reuse-deps", false, false),
        b("after:build", false, false),
        b("after:backup", false, false),
        b("before:migrate", false, false),
        b("after:migrate", false, false),
        b("before:switch", false, false),
        b("after:switch", false, false),
        b("after:pm2-reload", false, false),
        b("before:pm2-start", false, true),
        b("before:pm2-delete", false, false),
        b("after:pm2-start", false, true),
        b("after:pm2-delete", false, false),
        b("after:pm2-save", false, false),
        b("after:hook", false, false),
        b("after:hook:2", false, false),
        b("before:verify", false, false),
        b("after:verify", false, false),
    ];
    let worker_port = common::free_port();
    let mut old = "1.0.0".to_string();
    let mut report = Vec::new();
    for (i, bd) in boundaries.iter().enumerate() {
        let fault = bd.fault;
        let t0 = Instant::now();
        let version = format!("1.{}.0", i + 1);
        let lvl = format!("{:04}", i + 2);
        let commit = commit_version(&w, &version, Some(&lvl), bd.new_lockfile);
        let mut doc = Doc::new(&commit);
        doc.migrations = Some((lvl.clone(), "down"));
        doc.worker = bd.worker.then_some(worker_port);
        w.commit_config(&doc.render(&w));
        let backups_before = backups(&w);

        let load = Load::start(w.port);
        let j = killed_at(&w, fault);
        let revision = w.record().last_attempted().unwrap().revision.number;
        assert_eq!(j.revision, revision, "{fault}: the journal's revision");
        assert!(j.reverting.is_none());
        check_journal_at(&w, fault, &j, revision);
        let done: Vec<StepKind> = j.done.iter().map(|d| d.step).collect();
        // Until the web process is reloaded, only the old release may answer.
        let old_only_until = (!done.contains(&StepKind::Pm2Reload)).then(Instant::now);
        let (code, log) = w.run_once();
        let samples = load.finish();
        assert_eq!(code, 0, "{fault}: the restart did not converge:\n{log}");
        // No request failed, and none was answered by anything but old or new.
        let (n, failed) = check_load(fault, &samples, &old, &version, old_only_until);
        assert!(
            log.contains(&format!("resuming: {}", j.describe())),
            "{fault}: the restart did not report the journal:\n{log}"
        );
        assert!(
            JournalFile::new(&w.state_dir().join("apps").join(&w.name))
                .read()
                .is_none(),
            "{fault}: the journal was not closed"
        );

        // Only the missing steps ran.
        let ran = last_pass_steps(&w);
        assert_eq!(
            kinds(&ran),
            kinds(&expected_after_restart(&j)),
            "{fault}: the steps after the restart (journal: done {:?} of {:?})",
            kinds(&done),
            kinds(&j.planned)
        );
        // The release live, the level, the record.
        let rec = w.record();
        let release = w.current().expect("a live release");
        assert_eq!(rec.live().unwrap().release, release, "{fault}");
        assert!(release.starts_with(&commit), "{fault}: live is {release}");
        assert_eq!(
            w.get("/version").as_deref(),
            Some(version.as_str()),
            "{fault}"
        );
        assert_eq!(level(&url), lvl, "{fault}: the migration level");
        assert_eq!(rec.phase, Phase::Ready, "{fault}");
        let last = rec.last_attempted().unwrap();
        assert_eq!(last.revision.outcome, Outcome::Healthy, "{fault}");
        assert_eq!(last.revision.app_commit, commit, "{fault}");
        // Effects outside the records happened once: each hook ran once in this release;
        // one backup (two when it is taken again, as above).
        assert_eq!(hook_runs(&w, &release), (1, 1), "{fault}: hook runs");
        let retaken = usize::from(done.last() == Some(&StepKind::Backup));
        assert_eq!(
            backups_since(&w, &backups_before),
            1 + retaken,
            "{fault}: backups taken"
        );
        // The worker runs exactly when declared.
        let jlist = w.pm2_jlist_raw();
        assert_eq!(
            jlist.contains(&format!("\"{}-worker\"", w.name)),
            bd.worker,
            "{fault}: the worker process"
        );
        report.push(format!(
            "{fault}: {n} requests, {failed} failed, {:.1}s",
            t0.elapsed().as_secs_f64()
        ));
        old = version;
    }
    eprintln!("{}", report.join("\n"));
}

// ---------------------------------------------------------------------------------------
// The revert.

#[test]
fn a_controller_killed_at_any_step_boundary_of_a_revert_finishes_the_revert_only() {
    if !common::faults::fault_injection_built(
        "a_controller_killed_at_any_step_boundary_of_a_revert_finishes_the_revert_only",
    ) {
        return;
    }
    let (w, url) = world_with_database("revkill");
    let failing = w.root().join("failing");
    std::fs::write(&failing, "").unwrap();
    // The good revision: level 0001, and health fails for the versions listed in `failing`.
    let v1 = w.app_head();
    let mut good = Doc::new(&v1);
    good.migrations = Some(("0001".into(), "down"));
    good.env = vec![("HEALTH_FAIL_FILE", failing.display().to_string())];
    w.commit_config(&good.render(&w));
    assert_eq!(w.run_once().0, 0);
    let good_release = w.current().unwrap();
    let good_revision = w.record().live_revision.unwrap();
    // Each bad revision: new code at level 0002 (`onRevert: down`), failing its checks; so
    // the killed run rolls it out (…, migrate, switch, pm2-reload, pm2-save, hook, hook,
    // verify: failed) and reverts: switch, pm2-reload (pm2-replace when the bad revision
    // added an env variable, which only a replace removes), pm2-save, hook, hook, migrate
    // (down, from the bad release), verify.
    let boundaries = [
        ("before:switch:2", false),
        ("after:switch:2", false),
        ("after:pm2-reload:2", false),
        ("after:pm2-replace", true),
        ("after:pm2-save:2", false),
        ("after:hook:3", false),
        ("after:hook:4", false),
        ("after:migrate:2", false),
        // The rollout's verification failed: a failed step has no `after` boundary.
        ("after:verify", false),
    ];
    let mut report = Vec::new();
    for (i, (fault, replace)) in boundaries.iter().enumerate() {
        let t0 = Instant::now();
        let bad_version = format!("9.{i}.0");
        std::fs::write(&failing, &bad_version).unwrap();
        let bad = commit_version(&w, &bad_version, Some("0002"), false);
        let mut doc = good.clone();
        doc.commit = bad.clone();
        doc.migrations = Some(("0002".into(), "down"));
        doc.progress_deadline = "10s";
        if *replace {
            doc.env.push(("HEALTH_FAIL", "1".into()));
        }
        let bad_config = w.commit_config(&doc.render(&w));
        let backups_before = backups(&w);
        let hooks_before = hook_runs(&w, &good_release);

        let load = Load::start(w.port);
        let j = killed_at(&w, fault);
        let rec = w.record();
        let bad_revision = rec.last_attempted().unwrap().revision.number;
        let r = j.reverting.as_ref().expect("the journal of a revert");
        assert_eq!(
            (r.from, j.revision),
            (bad_revision, good_revision),
            "{fault}: the journal's revert"
        );
        check_journal_at(&w, fault, &j, bad_revision);
        let done: Vec<StepKind> = j.done.iter().map(|d| d.step).collect();
        let (code, log) = w.run_once();
        let samples = load.finish();
        assert_eq!(
            code, 1,
            "{fault}: the desired revision is bad, so not Ready:\n{log}"
        );
        // Going back across a removed variable is a replace, graceful in cluster mode: no
        // request may fail there either.
        let (n, failed) = check_load(fault, &samples, "1.0.0", &bad_version, None);
        assert!(
            log.contains(&format!("resuming: {}", j.describe())),
            "{fault}: the restart did not report the journal:\n{log}"
        );
        assert!(log.contains("finishing the revert"), "{fault}: {log}");

        // Only the revert's missing steps ran.
        let ran = last_pass_steps(&w);
        assert_eq!(
            kinds(&ran),
            kinds(&expected_after_restart(&j)),
            "{fault}: the steps after the restart (journal: done {:?} of {:?})",
            kinds(&done),
            kinds(&j.planned)
        );
        // Back on the good release, at its level, the bad revision reverted and quarantined.
        assert_eq!(
            w.current().as_deref(),
            Some(good_release.as_str()),
            "{fault}"
        );
        assert_eq!(w.get("/version").as_deref(), Some("1.0.0"), "{fault}");
        assert_eq!(level(&url), "0001", "{fault}: the migration level");
        let rec = w.record();
        assert_eq!(rec.live_revision, Some(good_revision), "{fault}");
        assert!(rec.is_quarantined(&bad_config), "{fault}: not quarantined");
        let bad_rev = rec.revision(bad_revision).unwrap();
        assert_eq!(
            bad_rev.revision.outcome,
            Outcome::Reverted,
            "{fault}: {}",
            bad_rev.revision.message
        );
        // The revert's hooks ran once each in the good release; the rollout's one backup.
        let hooks = hook_runs(&w, &good_release);
        assert_eq!(
            (hooks.0 - hooks_before.0, hooks.1 - hooks_before.1),
            (1, 1),
            "{fault}: the revert's hook runs"
        );
        assert_eq!(
            backups_since(&w, &backups_before),
            1,
            "{fault}: backups taken"
        );
        report.push(format!(
            "{fault}: {n} requests, {failed} failed, {:.1}s",
            t0.elapsed().as_secs_f64()
        ));

        // Nothing loops: another pass runs no step and leaves the level.
        let (code, log) = w.run_once();
        assert_eq!(code, 1, "{log}");
        assert!(
            last_pass_steps(&w).is_empty(),
            "{fault}: the next pass ran {:?}",
            kinds(&last_pass_steps(&w))
        );
        assert_eq!(level(&url), "0001", "{fault}");
    }
    eprintln!("{}", report.join("\n"));
}

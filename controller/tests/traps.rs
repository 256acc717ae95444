//! Traps caught before a rollout, and `plan` changing nothing: a build step for an npm script
//! the release's package.json lacks is a plan-time blocker naming it and fails the pass before
//! npm runs; `plan` on a fresh machine leaves no state directory and no pm2 daemon behind;
//! `validate` and `plan` show the warnings of a document that loads.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::World;
use common::pm2::{NoDaemonLeft, god_daemons};
use shipshape_spec::status::Phase;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A package.json like the example app's, without its `build` script.
const NO_BUILD: &str = r#"{
  "name": "shipshape-example-app",
  "version": "1.0.0",
  "private": true,
  "scripts": {
    "start": "node server.js"
  }
}
"#;

#[test]
fn a_build_step_for_a_script_package_json_lacks_is_a_plan_error_and_fails_the_pass_before_npm() {
    let w = World::new("nobuild");
    let sha = w.commit_app_files(&[("package.json", NO_BUILD)], "no build script");
    w.commit_config(&w.document(&sha));
    let said = format!(
        "package.json at {} has no script \"build\" (spec.build.steps[0]: `npm run build`); its scripts: start",
        &sha[..12]
    );

    // plan: the blocker, exit 1, and nothing created (the package.json is read from the
    // local app repository through git, not from a mirror it would have to make).
    let out = w.shipshape(&["plan"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(&format!("BLOCKED  {said}")), "{stdout}");
    assert!(!w.state_dir().exists(), "plan created the state directory");

    // The pass fails the same way, before any npm command ran.
    let (code, log) = w.run_once();
    assert_ne!(code, 0, "{log}");
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Failed, "{log}");
    let err = rec.last_error.as_ref().expect("a last error");
    assert_eq!(err.message, said);
    assert!(!log.contains("_logs"), "npm ran: {log}");
    assert!(
        !w.releases_root().join("releases").join(&sha).exists(),
        "the release was fetched: the pass went past the plan"
    );
    let status = w.shipshape(&["status", "nobuild"], &[]);
    assert!(
        text(&status.stdout).contains("has no script \"build\""),
        "{}",
        text(&status.stdout)
    );

    // With the script back, the same app deploys.
    let good = w.commit_app_files(
        &[(
            "package.json",
            &NO_BUILD.replace("\"start\"", "\"build\": \"node build.js\",\n    \"start\""),
        )],
        "build script",
    );
    w.commit_config(&w.document(&good));
    let out = w.shipshape(&["plan"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        !text(&out.stdout).contains("BLOCKED"),
        "{}",
        text(&out.stdout)
    );
}

/// `shipshape plan --file` with nothing but `PATH`, `HOME` and `PM2_HOME` in its environment.
fn plan_fresh(doc: &Path, state: &Path, home: &Path, pm2_home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["plan", "--file"])
        .arg(doc)
        .arg("--state-dir")
        .arg(state)
        .arg("--pm2")
        .arg(common::pm2_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("PM2_HOME", pm2_home)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn plan_on_a_fresh_machine_leaves_no_state_directory_and_no_pm2_daemon_behind() {
    let w = World::new("fresh");
    let doc = w.root().join("fresh.yaml");
    std::fs::write(&doc, w.document(&w.app_head())).unwrap();
    let machine = w.root().join("machine");
    let (state, home, pm2_home) = (
        machine.join("state"),
        machine.join("home"),
        machine.join("home/.pm2"),
    );
    let _guard = NoDaemonLeft(pm2_home.clone());

    let out = plan_fresh(&doc, &state, &home, &pm2_home);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(2),
        "changes pending:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("fresh (config (files)"), "{stdout}");
    for step in ["fetch", "install", "build", "switch", "start", "verify"] {
        assert!(stdout.contains(step), "{step} planned:\n{stdout}");
    }
    assert!(
        stdout.contains(&format!(
            "  note     no pm2 daemon running in PM2_HOME {} (plan starts none): planned as if pm2 ran no processes",
            pm2_home.display()
        )),
        "{stdout}"
    );
    assert!(!stderr.contains("jlist"), "no pm2 CLI fallback: {stderr}");

    // Checked: nothing was created, no daemon runs for that PM2_HOME.
    assert!(!state.exists(), "the state directory was created");
    assert!(
        !pm2_home.join("pm2.pid").exists(),
        "a pm2 daemon was started"
    );
    assert!(!home.exists(), "HOME was written to");
    assert!(!w.releases_root().exists(), "the releases root was created");
    assert_eq!(
        god_daemons(&pm2_home),
        Vec::<u32>::new(),
        "a God Daemon runs"
    );

    // An existing state directory is read, and left as it was.
    std::fs::create_dir_all(&state).unwrap();
    let out = plan_fresh(&doc, &state, &home, &pm2_home);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        0,
        "written into"
    );
    assert_eq!(god_daemons(&pm2_home), Vec::<u32>::new());
}

#[test]
fn with_a_pm2_daemon_running_plan_reads_its_processes_and_starts_nothing_else() {
    let w = World::new("running");
    w.commit_config(&w.document(&w.app_head()));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    let daemons = god_daemons(&w.pm2_home());
    assert_eq!(daemons.len(), 1, "the pass's daemon");
    let before = tree(&w.state_dir());
    let out = w.shipshape(&["plan"], &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("nothing to do"),
        "the processes were seen: {stdout}"
    );
    assert!(!stdout.contains("no pm2 daemon"), "{stdout}");
    assert_eq!(
        god_daemons(&w.pm2_home()),
        daemons,
        "the same daemon, no other"
    );
    assert_eq!(
        tree(&w.state_dir()),
        before,
        "plan wrote into the state directory"
    );
}

/// Every file under `dir` with its size and modification time, sorted.
fn tree(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            out.push((
                e.path().display().to_string(),
                m.len(),
                m.modified().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn validate_and_plan_show_a_warning_and_still_pass() {
    let w = World::new("warned");
    let doc = w.root().join("warned.yaml");
    let other = common::free_port();
    let text_doc = w.document(&w.app_head()).replace(
        &format!("http://127.0.0.1:{}/api/health", w.port),
        &format!("http://127.0.0.1:{other}/api/health"),
    );
    std::fs::write(&doc, &text_doc).unwrap();
    let want = format!(
        "warning: {}:28:11: spec.health.checks[0].http.url: \"http://127.0.0.1:{other}/api/health\" probes port {other}, where no process of this app listens (the processes' PORTs: warned-web: PORT={}): the check would fail every round",
        doc.display(),
        w.port
    );
    let out = w.shipshape(&["validate", doc.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).trim_end(), want);
    assert!(text(&out.stdout).contains("ok (app warned)"));
    let out = w.shipshape(&["plan", "--file", doc.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));
    assert!(!w.state_dir().exists());
}

#[test]
fn plan_of_a_remote_config_repo_uses_a_temporary_mirror_and_says_when_scripts_are_not_checked() {
    let w = World::new("remote");
    let doc = w.document(&w.app_head()).replace(
        &format!("repository: {}", w.app_repo().display()),
        "repository: https://git.invalid/acme/remote.git",
    );
    w.commit_config(&doc);
    let tmp = w.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let config = format!("file://{}", w.config_repo().display());
    let tmp_env = tmp.to_str().unwrap();
    let out = w.shipshape(
        &["plan"],
        &[("SHIPSHAPE_REPO", config.as_str()), ("TMPDIR", tmp_env)],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "  note     the npm scripts the build runs are not checked: commit {} of https://git.invalid/acme/remote.git is not in the controller's mirror and the repository is not a local path (plan fetches nothing)",
            &w.app_head()[..12]
        )),
        "{stdout}"
    );
    assert!(stdout.contains("1. fetch"), "{stdout}");
    assert!(!w.state_dir().exists(), "the state directory was created");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the temporary mirror was left behind"
    );
}

//! The command line's defaults and messages, run as a process: the default state directory
//! shared by every command, "no such state directory", "no app named X (known: …)", who a
//! pin records, a missing pm2 naming `--pm2`, and no backtrace for an ordinary error
//! whatever `RUST_BACKTRACE` says. The busy API port's message is tested in
//! `startup.rs`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::World;
use shipshape_spec::status::Phase;

fn shipshape(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(args)
        .env_remove("SHIPSHAPE_STATE_DIR")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every command that reads the state directory (or talks to its controller).
const READERS: &[&[&str]] = &[
    &["status"],
    &["status", "demo"],
    &["status", "--watch"],
    &["history", "demo"],
    &["logs", "demo"],
    &["pin", "demo", "--reason", "r"],
    &["unpin", "demo"],
    &["retry", "demo"],
    &["reconcile"],
];

#[test]
fn every_command_given_a_state_directory_that_is_not_there_says_so_and_names_the_flag() {
    for args in READERS {
        let mut a = args.to_vec();
        a.extend(["--state-dir", "/nonexistent"]);
        let out = shipshape(&a, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{a:?}: {err}");
        assert!(
            err.contains("no such state directory /nonexistent") && err.contains("--state-dir"),
            "{a:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{a:?} printed to stdout");
    }
    // The environment variable is the same setting.
    let out = shipshape(&["status"], &[("SHIPSHAPE_STATE_DIR", "/nonexistent/env")]);
    assert!(
        stderr(&out).contains("no such state directory /nonexistent/env"),
        "{}",
        stderr(&out)
    );
}

/// Run the CLI as `nobody` (not root), with `XDG_STATE_HOME` set: every command's default is
/// `$XDG_STATE_HOME/shipshape`; as root it is `/var/lib/shipshape`.
#[test]
fn without_a_state_directory_every_command_uses_the_same_default() {
    let tmp = tempfile::tempdir().unwrap();
    // Open to `nobody`, so that what is missing is the state directory, not the way to it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let xdg = tmp.path().join("xdg");
    let want = format!("no such state directory {}/shipshape", xdg.display());
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    for args in READERS {
        let out = if root {
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(env!("CARGO_BIN_EXE_shipshape"))
                .args(*args)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", tmp.path())
                .env("XDG_STATE_HOME", &xdg)
                .output()
                .unwrap()
        } else {
            shipshape(args, &[("XDG_STATE_HOME", xdg.to_str().unwrap())])
        };
        let err = stderr(&out);
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    if root {
        // As root, the default is /var/lib/shipshape (read, never created, by `status`).
        let out = shipshape(&["status"], &[("XDG_STATE_HOME", xdg.to_str().unwrap())]);
        let err = stderr(&out);
        if !Path::new("/var/lib/shipshape").exists() {
            assert!(
                err.contains("no such state directory /var/lib/shipshape"),
                "{err}"
            );
        }
    }
    let help = String::from_utf8_lossy(&shipshape(&["status", "--help"], &[]).stdout).into_owned();
    assert!(help.contains("[default: "), "{help}");
}

#[test]
fn a_corrupt_record_is_named_and_the_other_apps_are_still_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = shipshape::state::Store::new(tmp.path());
    for name in ["alpha", "beta"] {
        store.save(&shipshape::state::AppRecord::new(name)).unwrap();
    }
    let torn = store.app_dir("beta").join("state.json");
    std::fs::write(&torn, "{\"version\": 1, \"na").unwrap();
    let out = shipshape(
        &["status", "--state-dir", tmp.path().to_str().unwrap()],
        &[],
    );
    let err = stderr(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("state file {} is corrupt", torn.display()))
            && err.contains("move it aside"),
        "{err}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("alpha ")),
        "the readable app is listed: {stdout}"
    );
}

#[test]
fn plan_of_files_without_pm2_on_the_path_names_the_pm2_flag() {
    let w = World::new("nopm2");
    let doc = w.root().join("doc.yaml");
    std::fs::write(&doc, w.document(&w.app_head())).unwrap();
    let state = w.root().join("plan-state");
    let out = Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["plan", "--file", doc.to_str().unwrap()])
        .arg("--state-dir")
        .arg(&state)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", w.root())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pm2 not found: no `pm2` on the PATH") && err.contains("--pm2"),
        "{err}"
    );
    assert!(!state.exists(), "nothing is created before pm2 is found");
    // A path that is not there is named too.
    let out = Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args([
            "plan",
            "--file",
            doc.to_str().unwrap(),
            "--pm2",
            "/opt/none/pm2",
        ])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("/opt/none/pm2 is not an executable file") && err.contains("--pm2"),
        "{err}"
    );
}

/// `RUST_BACKTRACE=1` (common among Rust users) changes nothing for an ordinary error: one
/// `error:` line, exit 1, no backtrace, for `plan`, `run` and `validate` alike.
#[test]
fn an_ordinary_error_prints_one_line_and_no_backtrace_whatever_rust_backtrace_says() {
    let w = World::new("trace");
    let doc = w.root().join("doc.yaml");
    std::fs::write(&doc, w.document(&w.app_head())).unwrap();
    let want = "error: pm2 not found: no `pm2` on the PATH (install pm2, or point --pm2 or SHIPSHAPE_PM2 at it)\n";
    for args in [
        vec!["plan", "--file", doc.to_str().unwrap()],
        vec!["run", "--once"],
    ] {
        for trace in ["1", "full"] {
            let out = Command::new(env!("CARGO_BIN_EXE_shipshape"))
                .args(&args)
                .arg("--state-dir")
                .arg(w.state_dir())
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", w.root())
                .env("SHIPSHAPE_REPO", w.config_repo())
                .env("RUST_BACKTRACE", trace)
                .env("RUST_LIB_BACKTRACE", trace)
                .env("RUST_LOG", "warn")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert_eq!(stderr(&out), want, "{args:?} RUST_BACKTRACE={trace}");
        }
    }
}

/// A real controller with two apps: an unknown app is named with the known ones by every
/// command (an unknown revision with the kept ones), and a pin records who: `--by`, else
/// `SUDO_USER`, else `USER`.
#[test]
fn an_unknown_app_is_named_with_the_known_ones_and_a_pin_records_who() {
    let w = World::new("alpha");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    w.commit_config_file(
        "beta.yaml",
        Some(&w.other_document("beta", &v1, common::free_port())),
    );
    let d = w.start(&[]);
    w.wait_record("alpha healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });
    common::wait_for("beta healthy", std::time::Duration::from_secs(60), || {
        let r = w.store().load("beta").ok()?;
        (r.phase == Phase::Ready).then_some(())
    });
    let state = w.store().dir;
    let known = format!(
        "no app named nosuchapp in {} (known: alpha, beta)",
        state.display()
    );
    for args in [
        &["history", "nosuchapp"][..],
        &["status", "nosuchapp"],
        &["logs", "nosuchapp"],
        &["pin", "nosuchapp", "--reason", "r"],
        &["unpin", "nosuchapp"],
        &["retry", "nosuchapp"],
    ] {
        let out = w.shipshape(args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&known), "{args:?}: {err}");
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "{args:?} printed a table anyway"
        );
    }

    let out = w.shipshape(&["logs", "alpha", "99"], &[]);
    let err = stderr(&out);
    assert!(
        err.contains("alpha has no revision 99 (kept: 1; see `shipshape history alpha`)"),
        "{err}"
    );

    let pin_as = |by: Option<&str>, env: &[(&str, &str)]| -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shipshape"));
        cmd.args(["pin", "alpha", "--reason", "who pinned"])
            .env("SHIPSHAPE_STATE_DIR", w.state_dir())
            .env_remove("SUDO_USER")
            .env_remove("USER")
            .env_remove("LOGNAME")
            .envs(env.iter().copied());
        if let Some(by) = by {
            cmd.args(["--by", by]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let by = w.record().pin.expect("pinned").by;
        let out = w.shipshape(&["unpin", "alpha", "--by", "ops"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        by
    };
    assert_eq!(
        pin_as(Some("alice"), &[("SUDO_USER", "bob"), ("USER", "carol")]),
        "alice"
    );
    assert_eq!(
        pin_as(None, &[("SUDO_USER", "bob"), ("USER", "root")]),
        "bob"
    );
    assert_eq!(pin_as(None, &[("USER", "carol")]), "carol");
    // Neither set: the account of the user running the command, never "unknown".
    let account = pin_as(None, &[]);
    assert!(!account.is_empty() && account != "unknown", "{account}");
}

//! Errors are reported, never swallowed into a wrong state: a failed `pm2 jlist` while
//! pruning does not mark the app Pruned (the next pass retries), and a step that times out
//! keeps the tail of what it printed. Real git, real pm2 (behind a wrapper that can fail),
//! the example app.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::World;
use shipshape_spec::status::Phase;

/// A pm2 wrapper that fails `pm2 jlist` while `<root>/jlist-fails` exists, and otherwise
/// runs the real pm2 (the controller is told to read through the CLI only, so the
/// failure is not bypassed by pm2's socket).
fn failing_jlist_pm2(w: &World) -> (PathBuf, PathBuf) {
    let flag = w.root().join("jlist-fails");
    let wrapper = w.root().join("pm2-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = jlist ] && [ -e '{flag}' ]; then\n  echo 'connect ECONNREFUSED {home}/rpc.sock' >&2\n  exit 1\nfi\nexec '{pm2}' \"$@\"\n",
            flag = flag.display(),
            home = w.pm2_home().display(),
            pm2 = common::pm2_bin().display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (wrapper, flag)
}

#[test]
fn a_failed_pm2_jlist_while_pruning_does_not_mark_the_app_pruned_and_the_next_pass_retries() {
    let w = World::new("prunefail");
    let (wrapper, flag) = failing_jlist_pm2(&w);
    let pm2 = wrapper.to_str().unwrap();
    w.commit_config(&w.document(&w.app_head()));
    let out = w.shipshape(
        &["run", "--once"],
        &[("SHIPSHAPE_PM2", pm2), ("SHIPSHAPE_PM2_NO_SOCKET", "true")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));

    // The document goes (a README keeps the directory); pm2 cannot be read while the app
    // is pruned.
    w.commit_config_file("README.md", Some("apps for this host\n"));
    w.commit_config_file("prunefail.yaml", None);
    std::fs::write(&flag, "").unwrap();
    let out = w.shipshape(
        &["run", "--once", "--prune"],
        &[("SHIPSHAPE_PM2", pm2), ("SHIPSHAPE_PM2_NO_SOCKET", "true")],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    let rec = w.record();
    assert_ne!(
        rec.phase,
        Phase::Pruned,
        "marked Pruned though nothing was deleted"
    );
    let err = rec.last_error.as_ref().unwrap_or_else(|| {
        panic!(
            "the failure is not recorded: {:?} {:?}\n{log}",
            rec.phase, rec.conditions
        )
    });
    assert!(
        err.message.contains("pm2 jlist") && err.message.contains("next pass"),
        "{}",
        err.message
    );
    assert!(
        log.contains("ECONNREFUSED"),
        "the error is not reported: {log}"
    );
    assert!(
        w.pm2_jlist_raw().contains("prunefail-web"),
        "the process should still be there"
    );
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));

    // pm2 answers again: the next pass prunes.
    std::fs::remove_file(&flag).unwrap();
    let out = w.shipshape(
        &["run", "--once", "--prune"],
        &[("SHIPSHAPE_PM2", pm2), ("SHIPSHAPE_PM2_NO_SOCKET", "true")],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Pruned, "{log}");
    assert!(
        !w.pm2_jlist_raw().contains("prunefail-web"),
        "the process was not deleted: {log}"
    );
}

#[test]
fn a_build_that_times_out_keeps_the_tail_of_what_it_printed_in_the_record() {
    let w = World::new("slowbuild");
    let v1 = w.app_head();
    let mut doc = w.app(&v1);
    doc.spec.build.steps = vec![
        "echo 'bundling 1200 modules'; echo 'waiting for the lock on .next/cache' >&2; sleep 30"
            .into(),
    ];
    doc.spec.build.timeout = shipshape_spec::Duration::from_secs(2);
    w.commit_app(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let rec = w.record();
    let err = rec.last_error.as_ref().unwrap();
    assert_eq!(err.step, "build");
    assert!(
        err.message.contains("timed out after 2s"),
        "{}",
        err.message
    );
    let tail = err.output_tail.as_deref().unwrap_or("");
    assert!(
        tail.contains("bundling 1200 modules") && tail.contains("waiting for the lock"),
        "the output before the time-out is lost: {tail:?}"
    );
    let step = rec
        .last_pass
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .find(|s| s.step.as_str() == "build")
        .unwrap();
    assert!(
        step.output_tail
            .as_deref()
            .is_some_and(|t| t.contains("bundling 1200 modules")),
        "{step:?}"
    );
}

//! End to end against real git, the real pm2 and the example Node app: first deploy,
//! a new version, a no-op pass, and secrets kept out of pm2.

mod common;

use common::World;
use shipshape_spec::status::{Outcome, Phase};

#[test]
fn v1_then_v2_serve_in_turn_v1_stays_on_disk_and_a_no_op_pass_runs_no_step() {
    let w = World::new("demo");
    let v1 = w.app_head();
    let c1 = w.commit_config(&w.document(&v1));

    let (code, log) = w.run_once();
    assert_eq!(code, 0, "first deploy failed:\n{log}");
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Ready);
    let pass = rec.last_pass.as_ref().unwrap();
    let steps: Vec<&str> = pass.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "fetch",
            "install",
            "build",
            "switch",
            "pm2-start",
            "pm2-save",
            "verify"
        ]
    );
    assert_eq!(pass.config_commit, c1);
    assert_eq!(rec.revisions.len(), 1);
    assert_eq!(rec.revisions[0].revision.outcome, Outcome::Healthy);

    // Nothing changed: the pass runs no step and stays Ready.
    let steps_before = rec.steps_run;
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    let rec = w.record();
    assert!(rec.last_pass.as_ref().unwrap().steps.is_empty());
    assert_eq!(rec.steps_run, steps_before, "a no-op pass ran steps");
    assert_eq!(rec.revisions.len(), 1, "a no-op pass made a revision");

    // A new app version: fetched, built, switched, reloaded; v1's release stays on disk.
    let v2 = w.commit_app_version("2.0.0");
    let c2 = w.commit_config(&w.document(&v2));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "v2 deploy failed:\n{log}");
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
    assert_eq!(w.current().as_deref(), Some(v2.as_str()));
    assert!(
        w.releases_root()
            .join("releases")
            .join(&v1)
            .join("dist/version.json")
            .exists()
    );
    let rec = w.record();
    let steps = common::steps(&rec);
    // The example app has no dependencies: v1's install left no node_modules, so there is
    // nothing to reuse and the plan installs (and says why).
    assert_eq!(
        steps,
        [
            "fetch",
            "install",
            "build",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify"
        ]
    );
    let install = &rec.last_pass.as_ref().unwrap().steps[1];
    assert!(
        install
            .reason
            .contains("was installed from this lockfile, but it has no node_modules to reuse"),
        "{}",
        install.reason
    );
    assert_eq!(rec.revisions.len(), 2);
    assert_eq!(rec.revisions[1].revision.config_commit, c2);
    assert_eq!(rec.revisions[1].revision.app_commit, v2);
    assert_eq!(rec.last_healthy().unwrap().revision.number, 2);

    // `shipshape plan` agrees that nothing is left to do (exit 0).
    let out = w.shipshape(&["plan"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn an_env_change_only_reloads_and_plan_exits_2_while_pending() {
    let w = World::new("envy");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    assert_eq!(w.run_once().0, 0);
    let doc = common::with_env(&w.document(&v1), "GREETING", "howdy");
    w.commit_config(&doc);
    let out = w.shipshape(&["plan", "-o", "json"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = plan[0]["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["pm2-reload", "pm2-save", "verify"]);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.get("/").as_deref(), Some("howdy from 1.0.0"));
    let rec = w.record();
    let steps = common::steps(&rec);
    assert_eq!(steps, ["pm2-reload", "pm2-save", "verify"]);
}

#[test]
fn secrets_in_the_controllers_environment_never_reach_pm2() {
    let w = World::new("secretive");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let secret = "hunter2-do-not-leak-7f3a";
    let out = w.shipshape(
        &["run", "--once"],
        &[
            ("DATABASE_PASSWORD", secret),
            ("AWS_SECRET_ACCESS_KEY", secret),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jlist = w.pm2_jlist_raw();
    assert!(
        jlist.contains("secretive-web"),
        "jlist should show the process: {jlist:.200}"
    );
    assert!(
        !jlist.contains(secret),
        "a secret from the controller's environment reached pm2 jlist"
    );
    assert!(!jlist.contains("DATABASE_PASSWORD"));
}

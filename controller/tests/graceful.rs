//! Zero downtime for every pm2 change kind: in cluster mode a `pm2-replace` (what a reload
//! cannot apply — instances, script/args/pm2 options, a removed env variable) starts the new
//! processes as `NAME~next` beside the old ones, waits until they are ready, and only then
//! stops the old ones. Under ~100 requests a second (the example app, a new connection per
//! request) no request may fail, through instances 2 → 3, 3 → 2 with a variable removed,
//! an args change, and a revert that goes back across a removed variable; the end state is
//! exactly the document, under one name, in pm2's dump too. New processes that crash at start
//! fail the step while the old ones keep serving. A `NAME` stopped by hand beside a
//! `NAME~next` that serves an old config (a replace interrupted, then a new document) goes
//! first, and `NAME~next` serves until `NAME` runs the new config. Fork mode says it is not
//! graceful.
//! Real git, real pm2, the example app, `shipshape run --once`.

mod common;

use shipshape::pm2::{Instance, parse_jlist};
use shipshape_spec::app::{EnvValue, ExecMode, Instances, StringOrList};
use shipshape_spec::status::Outcome;

use common::World;
use common::load::{Tally, assert_no_failures, under_load};

/// The processes pm2 runs, by the CLI (not through the controller).
fn pm2_list(w: &World) -> Vec<Instance> {
    parse_jlist(&w.pm2_jlist_raw()).expect("pm2 jlist parses")
}

/// The process names in pm2's dump (what a reboot resurrects), one per instance.
fn dump_names(w: &World) -> Vec<String> {
    let text = std::fs::read_to_string(w.pm2_home().join("dump.pm2")).unwrap_or_default();
    let dump: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    let mut names: Vec<String> = dump
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// pm2 runs exactly `count` online cluster instances of the app's process under its
/// declared name, nothing under `NAME~next`, with `present` set and `absent` unset in their
/// env; pm2's dump lists the same.
fn assert_runs(w: &World, count: usize, present: &[&str], absent: &[&str]) {
    let name = format!("{}-web", w.name);
    let list = pm2_list(w);
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec![name.as_str(); count], "pm2 runs {names:?}");
    for i in &list {
        assert_eq!(
            (i.status.as_str(), i.exec_mode.as_str()),
            ("online", "cluster_mode")
        );
        for k in present {
            assert!(i.env.contains_key(*k), "{k} missing from {}", i.pm_id);
        }
        for k in absent {
            assert!(!i.env.contains_key(*k), "{k} survived in {}", i.pm_id);
        }
    }
    assert_eq!(dump_names(w), vec![name; count], "pm2's dump");
}

/// The reason the last pass gave its `pm2-replace` step.
fn replace_reason(w: &World) -> String {
    let rec = w.record();
    let pass = rec.last_pass.expect("a pass ran");
    pass.steps
        .iter()
        .rev()
        .find(|s| s.step.as_str() == "pm2-replace")
        .map(|s| s.reason.clone())
        .unwrap_or_else(|| panic!("no pm2-replace in {:?}", common::steps(&w.record())))
}

/// Commit `app` and run one pass under load; the pass must exit with `code`.
fn rollout(w: &World, what: &str, app: &shipshape_spec::App, code: i32) -> Tally {
    w.commit_app(app);
    let tally = under_load(w, what, || {
        let (got, log) = w.run_once();
        assert_eq!(got, code, "{what}:\n{log}");
    });
    assert_no_failures(w, what, &tally);
    tally
}

#[test]
fn every_replace_kind_in_cluster_mode_fails_no_request_and_ends_as_the_document() {
    let w = World::new("graceful");
    let v1 = w.app_head();
    let base = {
        let mut app = w.app(&v1);
        app.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(30);
        app.spec.health.failure_threshold = 2;
        assert_eq!(app.spec.processes[0].exec_mode, Some(ExecMode::Cluster));
        // A slow boot: a new process listens a second after it is online, so deleting the
        // old ones before the new ones are ready refuses connections.
        app.spec.processes[0]
            .env
            .insert("BOOT_DELAY_MS".into(), EnvValue::String("1000".into()));
        app
    };
    let with = |f: &dyn Fn(&mut shipshape_spec::app::Process)| {
        let mut app = base.clone();
        f(&mut app.spec.processes[0]);
        app
    };
    let extra = |p: &mut shipshape_spec::app::Process| {
        p.env
            .insert("EXTRA".into(), EnvValue::String("removed-later".into()));
    };
    let a = with(&|p| extra(p));
    w.commit_app(&a);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_runs(&w, 2, &["EXTRA"], &[]);

    // 2 → 3 instances.
    let b = with(&|p| {
        extra(p);
        p.instances = Some(Instances::Count(3));
    });
    rollout(&w, "instances 2 → 3", &b, 0);
    assert_eq!(
        common::steps(&w.record()),
        ["pm2-replace", "pm2-save", "verify"]
    );
    assert!(replace_reason(&w).contains("instances 2 → 3; graceful"));
    assert_runs(&w, 3, &["EXTRA"], &[]);

    // 3 → 2 instances, and EXTRA removed (pm2's reload would keep it).
    rollout(&w, "instances 3 → 2, EXTRA removed", &base, 0);
    assert_runs(&w, 2, &[], &["EXTRA"]);

    // An args change, and pm2's wait_ready (only a replace applies them): from now on pm2's
    // start waits for each new process's 'ready' message (the example app sends it once
    // it listens).
    let graceful_args = |p: &mut shipshape_spec::app::Process| {
        p.args = Some(StringOrList::One("--graceful-test".into()));
        p.wait_ready = Some(true);
        p.listen_timeout = Some(8000);
    };
    let d = with(&graceful_args);
    rollout(&w, "args change", &d, 0);
    assert!(
        replace_reason(&w).contains("script, args or pm2 options changed"),
        "{}",
        replace_reason(&w)
    );
    assert_runs(&w, 2, &[], &["EXTRA"]);

    // A revision that adds HEALTH_FAIL (a reload) fails verification; going back to the
    // previous one removes the variable again: a replace, under load.
    let e = with(&|p| {
        graceful_args(p);
        p.env
            .insert("HEALTH_FAIL".into(), EnvValue::String("1".into()));
    });
    let config_e = w.commit_app(&e);
    let tally = under_load(&w, "revert across a removed variable", || {
        let (code, log) = w.run_once();
        assert_eq!(code, 1, "HEALTH_FAIL fails and is reverted:\n{log}");
    });
    assert_no_failures(&w, "revert", &tally);
    let rec = w.record();
    let reverted = rec
        .revisions
        .iter()
        .find(|r| r.revision.config_commit == config_e)
        .expect("a revision of the failing config");
    assert_eq!(reverted.revision.outcome, Outcome::Reverted);
    assert_eq!(
        common::steps(&rec),
        [
            "pm2-reload",
            "pm2-save",
            "verify",
            "pm2-replace",
            "pm2-save",
            "verify"
        ],
        "the revert must be a replace"
    );
    assert!(
        replace_reason(&w).contains("env HEALTH_FAIL removed"),
        "{}",
        replace_reason(&w)
    );
    assert_runs(&w, 2, &[], &["EXTRA", "HEALTH_FAIL"]);
}

#[test]
fn new_processes_that_crash_at_start_fail_the_replace_while_the_old_ones_keep_serving() {
    let w = World::new("crashing");
    let v1 = w.app_head();
    let mut base = w.app(&v1);
    base.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(30);
    w.commit_app(&base);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    let before: Vec<(u64, u64)> = pm2_list(&w).iter().map(|i| (i.pm_id, i.pid)).collect();

    // 3 instances (a replace) of a config whose processes exit at once.
    let mut broken = base.clone();
    broken.spec.processes[0].instances = Some(Instances::Count(3));
    broken.spec.processes[0]
        .env
        .insert("CRASH_AT_START".into(), EnvValue::String("1".into()));
    rollout(&w, "a replace whose new processes crash", &broken, 1);
    let rec = w.record();
    let pass = rec.last_pass.as_ref().unwrap();
    let failed = pass.steps.last().unwrap();
    assert_eq!(failed.step.as_str(), "pm2-replace");
    assert_eq!(
        failed.result,
        shipshape_spec::status::StepResult::Failed,
        "{failed:?}"
    );
    let error = rec.last_error.as_ref().expect("the failure is recorded");
    assert!(
        error.message.contains("crashing-web~next instance")
            && (error.message.contains("restarted while starting")
                || error.message.contains("after start")),
        "{error:?}"
    );
    // The app's own words, heard on pm2's bus (the temporary processes are deleted by now,
    // and pm2 loses a cluster worker's stderr when it exits at once).
    assert!(
        error
            .message
            .contains("; the app's error: CRASH_AT_START is set: exiting before listening"),
        "{error:?}"
    );
    assert!(
        error
            .output_tail
            .as_deref()
            .is_some_and(|t| t.contains("~next (id ") && t.contains("CRASH_AT_START is set")),
        "{error:?}"
    );
    // The old processes never stopped (same pids), the temporary ones are gone.
    let after: Vec<(u64, u64)> = pm2_list(&w).iter().map(|i| (i.pm_id, i.pid)).collect();
    assert_eq!(after, before, "the old processes were touched");
    assert_runs(&w, 2, &[], &["CRASH_AT_START"]);
}

#[test]
fn a_fork_mode_replace_says_it_is_not_graceful() {
    let w = World::new("forked");
    let v1 = w.app_head();
    let fork = |n: u32| {
        let mut app = w.app(&v1);
        app.spec.processes[0].exec_mode = Some(ExecMode::Fork);
        app.spec.processes[0].instances = Some(Instances::Count(n));
        app
    };
    w.commit_app(&fork(1));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");

    // An env variable removed is a replace; in fork mode it cannot be graceful.
    let mut with_extra = fork(1);
    with_extra.spec.processes[0]
        .env
        .insert("EXTRA".into(), EnvValue::String("1".into()));
    w.commit_app(&with_extra);
    assert_eq!(w.run_once().0, 0);
    w.commit_app(&fork(1));
    let out = w.shipshape(&["plan", "-o", "json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let step = &json[0]["plan"]["steps"][0];
    assert_eq!(step["kind"], "pm2-replace", "{json}");
    assert!(
        step["reason"]
            .as_str()
            .unwrap()
            .ends_with("(fork mode: not graceful, requests are dropped during the restart)"),
        "{step}"
    );
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    let list = pm2_list(&w);
    assert_eq!(list.len(), 1);
    assert!(!list[0].env.contains_key("EXTRA"));
    assert_eq!(list[0].exec_mode, "fork_mode");
}

/// The example app's document, started once, whose processes boot slowly: a process
/// listens a second after it is online, so one started without waiting for it refuses
/// connections a while.
fn slow_boot_running(w: &World) -> shipshape_spec::App {
    let v1 = w.app_head();
    let mut base = w.app(&v1);
    base.spec.processes[0]
        .env
        .insert("BOOT_DELAY_MS".into(), EnvValue::String("1000".into()));
    w.commit_app(&base);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    base
}

/// A pass killed (SIGKILL, by `SHIPSHAPE_FAULT`) after the `moves`-th move of its replace.
fn killed_after_replace_move(w: &World, moves: u32) {
    let fault = format!("after:replace-move:{moves}");
    let out = w.shipshape(&["run", "--once"], &[("SHIPSHAPE_FAULT", &fault)]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_replace_interrupted_by_a_controller_crash_is_finished_by_the_next_pass_with_no_failed_request()
{
    if !common::faults::fault_injection_built(
        "a_replace_interrupted_by_a_controller_crash_is_finished_by_the_next_pass_with_no_failed_request",
    ) {
        return;
    }
    let w = World::new("interrupted");
    let base = slow_boot_running(&w);
    let name = format!("{}-web", w.name);
    let next = format!("{name}~next");
    // Killed after the first move (the new processes run beside the old ones), then after
    // the second (the old ones are deleted: only the temporary name serves).
    for (moves, old, count) in [(1, 2, 3usize), (2, 3, 2)] {
        let mut app = base.clone();
        app.spec.processes[0].instances = Some(Instances::Count(count as u32));
        w.commit_app(&app);
        let what = format!("killed after {moves} move(s), then a pass");
        let tally = under_load(&w, &what, || {
            killed_after_replace_move(&w, moves);
            let names: Vec<String> = pm2_list(&w).into_iter().map(|i| i.name).collect();
            let on = |n: &str| names.iter().filter(|x| *x == n).count();
            let left = if moves == 1 { old } else { 0 };
            assert_eq!(
                (on(&name), on(&next)),
                (left, count),
                "left by the crash: {names:?}"
            );
            let (code, log) = w.run_once();
            assert_eq!(code, 0, "{log}");
        });
        assert_no_failures(&w, &what, &tally);
        assert!(
            common::steps(&w.record()).contains(&"pm2-replace"),
            "{:?}",
            common::steps(&w.record())
        );
        assert_runs(&w, count, &[], &[]);
    }
}

/// A replace interrupted after its first move leaves `NAME~next` (3 instances) serving
/// beside `NAME`; a hand then stops `NAME`, and the document changes again (2 instances,
/// new args): `NAME~next` now runs an old config and is the only thing serving. The
/// replace deletes the stopped `NAME` first without waiting for `NAME~next` (it has
/// nothing to become ready for: it is not the document's config, and its 3 instances
/// never match the document's 2), starts `NAME` with the new config beside it, and only
/// then deletes `NAME~next`: no request fails.
#[test]
fn a_stopped_name_beside_a_serving_name_next_of_an_old_config_is_replaced_with_no_failed_request() {
    if !common::faults::fault_injection_built(
        "a_stopped_name_beside_a_serving_name_next_of_an_old_config_is_replaced_with_no_failed_request",
    ) {
        return;
    }
    let w = World::new("stopped");
    let base = slow_boot_running(&w);
    let name = format!("{}-web", w.name);
    let next = format!("{name}~next");

    // 2 → 3 instances, killed after the first move: NAME~next (3, the new config) serves
    // beside NAME (2, the old one).
    let mut three = base.clone();
    three.spec.processes[0].instances = Some(Instances::Count(3));
    w.commit_app(&three);
    killed_after_replace_move(&w, 1);
    // A hand at the server: `pm2 stop NAME`.
    common::pm2::pm2_cli(&w.pm2_home(), "", &["stop", &name]);
    let status = |n: &str| -> Vec<String> {
        pm2_list(&w)
            .into_iter()
            .filter(|i| i.name == n)
            .map(|i| i.status.to_string())
            .collect()
    };
    assert_eq!(status(&name), ["stopped", "stopped"]);
    assert_eq!(status(&next), ["online", "online", "online"]);

    // A new config (2 instances, an args change, a marker in the env): NAME~next's is an
    // old one now.
    let mut two = base.clone();
    two.spec.processes[0].args = Some(StringOrList::One("--after-a-stop".into()));
    two.spec.processes[0]
        .env
        .insert("AFTER_STOP".into(), EnvValue::String("1".into()));
    rollout(
        &w,
        "a stopped NAME beside NAME~next of an old config",
        &two,
        0,
    );
    assert_runs(&w, 2, &["AFTER_STOP"], &[]);
}

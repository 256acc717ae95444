//! Traffic mode's crash safety and faults, on the stock Express app behind the test's own
//! nginx:
//! - the controller SIGKILLed (`SHIPSHAPE_FAULT`) before and after each new step —
//!   `slot-start`, `slot-prove`, `traffic-switch`, `slot-retire` — and restarted resumes
//!   with a ready slot serving (the new release through nginx) and the upstream file
//!   naming it; no request through nginx fails across the kill and the restart;
//! - `nginx -t` failing (a broken main config) fails the `traffic-switch` with nginx's own
//!   message in the record; nothing live changes (the upstream file, the old slot's
//!   processes, the old release through nginx);
//! - nginx not running: the same;
//! - a slot port already taken by another process (a plain listener): a clear error naming
//!   the port, nothing live changed.
//!
//! Real git, real npm, real pm2, real nginx, `shipshape run --once`.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::World;
use common::stock::Mode;
use common::traffic::{Expect, Front, assert_one_slot, squat, through_nginx, upstream_text};

/// One pass with `fault`: it must die of SIGKILL there.
fn killed_at(w: &World, fault: &str) {
    let out = w.shipshape(&["run", "--once"], &[("SHIPSHAPE_FAULT", fault)]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{fault}: the controller was not killed there:\n{log}"
    );
    assert!(log.contains("fault injection"), "{fault}: {log}");
}

/// The stock app at 1.0.0 live in fork mode behind a new nginx.
fn v1_live(name: &str) -> Option<(World, Front, shipshape_spec::App)> {
    let w = World::stock(name);
    let f = Front::start(&w, name)?;
    let v1 = w.app_head();
    let app = w.traffic_app(&f, &v1, Mode::Fork1);
    w.commit_app(&app);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "the first rollout:\n{log}");
    assert_eq!(f.version().as_deref(), Ok("1.0.0"));
    Some((w, f, app))
}

fn fork1<'a>(version: &'a str) -> Expect<'a> {
    Expect {
        instances: 1,
        exec_mode: "fork_mode",
        version,
        present: &[],
        absent: &[],
    }
}

#[test]
fn a_controller_killed_at_any_slot_boundary_resumes_with_a_ready_slot_serving_and_the_upstream_file_naming_it()
 {
    let test = "a_controller_killed_at_any_slot_boundary_resumes_with_a_ready_slot_serving_and_the_upstream_file_naming_it";
    if !common::faults::fault_injection_built(test) {
        return;
    }
    let Some((w, f, app)) = v1_live("tcrash") else {
        return;
    };
    // One rollout per boundary of a rollout's steps; the retire boundaries on the passes
    // that retire the warm slot of two of them.
    let rollout_faults = [
        "before:slot-start",
        "after:slot-start",
        "before:slot-prove",
        "after:slot-prove",
        "before:traffic-switch",
        // Inside the switch: the upstream file written, nginx not reloaded yet.
        "after:upstream-write",
        "after:traffic-switch",
    ];
    let retire_faults = ["before:slot-retire", "after:slot-retire"];
    for (i, fault) in rollout_faults.iter().enumerate() {
        let version = format!("1.{}.0", i + 1);
        let commit = w.commit_app_version(&version);
        let mut next = app.clone();
        next.spec.source.commit = commit;
        w.commit_app(&next);
        let old = f.live_port().unwrap();
        let what = format!("killed at {fault}, then a pass");
        let (samples, ()) = through_nginx(&f, &what, || {
            killed_at(&w, fault);
            let (code, log) = w.run_once();
            assert_eq!(code, 0, "{what}:\n{log}");
        });
        samples.assert_no_failures(&w, &what);
        let e = fork1(&version);
        // The old slot is warm unless the resumed pass outlived warmFor and retired it.
        let warm = (!w.slot_pids(old).is_empty()).then_some(old);
        let live = assert_one_slot(&w, &f, &e, warm);
        assert_ne!(
            live, old,
            "{what}: the new release is not on the other slot"
        );
        assert_eq!(
            common::nginx::answering_slot(f.confirm),
            Some(live),
            "{what}: the confirm server says another slot answers"
        );

        // The warm slot's retire, killed at a boundary for the first two.
        if let Some(port) = warm {
            common::traffic::wait_warm_time_up(&f, port);
        }
        if let Some(rf) = retire_faults.get(i) {
            let what = format!("killed at {rf}, then a pass");
            let (samples, ()) = through_nginx(&f, &what, || {
                killed_at(&w, rf);
                let (code, log) = w.run_once();
                assert_eq!(code, 0, "{what}:\n{log}");
            });
            samples.assert_no_failures(&w, &what);
        } else {
            let (code, log) = w.run_once();
            assert_eq!(code, 0, "the retiring pass:\n{log}");
        }
        assert_one_slot(&w, &f, &e, None);
    }
}

/// The stock app at 1.0.0 live, and a 2.0.0 committed: what a fault must leave untouched.
struct Before {
    live: u16,
    pids: Vec<u64>,
    upstream: String,
}

fn with_2_0_0_committed(w: &World, f: &Front, app: &shipshape_spec::App) -> Before {
    let live = f.live_port().unwrap();
    let before = Before {
        live,
        pids: w.slot_pids(live),
        upstream: upstream_text(f),
    };
    let commit = w.commit_app_version("2.0.0");
    let mut next = app.clone();
    next.spec.source.commit = commit;
    w.commit_app(&next);
    before
}

/// Nothing live changed: the upstream file's text, the live slot's pids, and `/`
/// answers 1.0.0 on the old slot's own port. (The new slot may still run, proven and not
/// live: the next pass switches to it once nginx is fixed, or retires it.)
fn assert_nothing_live_changed(w: &World, f: &Front, b: &Before) {
    // Its text: a switch writes the new file before `nginx -t` reads it, and puts the old
    // one back when anything fails.
    assert_eq!(upstream_text(f), b.upstream, "the upstream file changed");
    assert_eq!(w.slot_pids(b.live), b.pids, "the live slot was touched");
    assert_eq!(
        common::load::get(b.live).as_deref(),
        Ok("1.0.0"),
        "the old slot on its own port"
    );
}

/// The last pass failed at `kind`; the record's last error (its message and output) holds
/// `said`. Returns the error's words.
fn assert_failed_at(w: &World, kind: &str, said: &str, log: &str) -> String {
    let rec = w.record();
    let err = rec
        .last_error
        .as_ref()
        .unwrap_or_else(|| panic!("no error recorded:\n{log}"));
    let words = format!(
        "{} {}",
        err.message,
        err.output_tail.clone().unwrap_or_default()
    );
    assert_eq!(err.step.as_str(), kind, "{words}\n{log}");
    assert!(
        words.contains(said),
        "the recorded error does not carry {said:?}: {words}\n{log}"
    );
    println!("recorded: {kind}: {words}");
    words
}

#[test]
fn a_failing_nginx_t_fails_the_traffic_switch_with_nginxs_message_and_changes_nothing_live() {
    let Some((w, f, app)) = v1_live("tnginxt") else {
        return;
    };
    let b = with_2_0_0_committed(&w, &f, &app);
    f.nginx.break_config();
    let (samples, (code, log)) = through_nginx(&f, "nginx -t failing", || w.run_once());
    assert_eq!(code, 1, "{log}");
    samples.assert_no_failures(&w, "nginx -t failing");
    assert_eq!(
        samples.versions().keys().collect::<Vec<_>>(),
        ["1.0.0"],
        "2.0.0 answered through nginx"
    );
    assert_failed_at(
        &w,
        "traffic-switch",
        "unknown directive \"this_is_not_a_directive\"",
        &log,
    );
    assert_nothing_live_changed(&w, &f, &b);
    assert_eq!(f.version().as_deref(), Ok("1.0.0"));
    assert!(f.nginx.is_running());

    // nginx fixed: the next pass finishes the rollout.
    f.nginx.restore_config();
    finished_once_nginx_is_back(&w, &f, &b);
}

/// One pass: 2.0.0 goes live on the other slot, the old one warm.
fn finished_once_nginx_is_back(w: &World, f: &Front, b: &Before) {
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "nginx is back:\n{log}");
    println!("once nginx is back: {:?}", common::steps(&w.record()));
    let live = assert_one_slot(w, f, &fork1("2.0.0"), Some(b.live));
    assert_ne!(live, b.live);
}

#[test]
fn nginx_not_running_fails_the_traffic_switch_and_changes_nothing_live() {
    let Some((w, f, app)) = v1_live("tnginxdown") else {
        return;
    };
    let b = with_2_0_0_committed(&w, &f, &app);
    f.nginx.stop();
    assert!(!f.nginx.is_running());
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    // nginx's own words: its pid file is gone (`open() ".../nginx.pid" failed`).
    assert_failed_at(&w, "traffic-switch", "nginx.pid", &log);
    assert_nothing_live_changed(&w, &f, &b);

    f.nginx.start();
    assert_eq!(f.version().as_deref(), Ok("1.0.0"));
    finished_once_nginx_is_back(&w, &f, &b);
}

#[test]
fn a_slot_port_taken_by_another_process_is_a_clear_error_naming_the_port_and_changes_nothing_live()
{
    let Some((w, f, app)) = v1_live("tsquat") else {
        return;
    };
    let b = with_2_0_0_committed(&w, &f, &app);
    let taken = f.other(b.live);
    let _listener = squat(taken);
    let (samples, (code, log)) = through_nginx(&f, "a slot port taken", || w.run_once());
    assert_eq!(code, 1, "{log}");
    samples.assert_no_failures(&w, "a slot port taken");
    let words = assert_failed_at(&w, "slot-start", &taken.to_string(), &log);
    assert!(
        words.contains("in use") || words.contains("taken") || words.contains("listen"),
        "the error does not say the port is taken: {words}"
    );
    assert_nothing_live_changed(&w, &f, &b);
    assert_eq!(f.version().as_deref(), Ok("1.0.0"));
    let live_name = shipshape::traffic::slot_name(&w.web(), b.live);
    assert_eq!(w.pm2_names(), vec![live_name], "pm2 runs");
}

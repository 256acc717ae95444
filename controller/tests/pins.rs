//! Pins first (issue 18): a pin, unpin or retry sent while a pass runs is recorded at once
//! (the CLI answers within 2 s, 202), durably (it survives a controller restart), and the
//! pass in flight stops before its next step that changes live state (an install or build
//! is cut short); the next pass converges to the pin. Real git, pm2, npm and the example app.

mod common;

use std::time::Duration;

use common::pins::{Sampler, process_gone, wait_for_pidfile, wait_until_exists};
use common::{Daemon, World, wait_for};
use shipshape_spec::status::{Outcome, Phase};

/// The CLI must answer within this, whatever the pass in flight is doing.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// v1 live and healthy under a running controller; returns it and revision 1's release.
fn v1_live(w: &World) -> (Daemon, String) {
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let d = w.start(&[]);
    let rec = w.wait_record("v1 healthy", 90, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });
    (d, rec.revision(1).unwrap().release.clone())
}

/// Run `shipshape args` and assert it succeeded within [`ANSWER_WITHIN`]; its stdout.
fn answers_at_once(w: &World, args: &[&str]) -> String {
    let (out, took) = w.shipshape_timed(args, Duration::from_secs(15));
    eprintln!("`shipshape {}` answered in {took:?}", args.join(" "));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        took < ANSWER_WITHIN,
        "`shipshape {}` took {took:?} (it waited for the pass in flight)\nstdout: {stdout}\nstderr: {stderr}",
        args.join(" ")
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    stdout
}

/// Never, while it runs: `current` off revision 1's release, or the app serving other
/// than 1.0.0.
fn held_at_v1(w: &World, release: &str) -> Sampler {
    let (root, release, port) = (w.releases_root(), release.to_string(), w.port);
    Sampler::start(move || {
        let current = shipshape::release::Layout::new(&root).current_release();
        if current.as_deref() != Some(release.as_str()) {
            return Some(format!("current pointed at {current:?}"));
        }
        match common::get_port(port, "/version") {
            Some(v) if v != "1.0.0" => Some(format!("the app served {v}")),
            _ => None,
        }
    })
}

#[test]
fn a_pin_during_a_long_build_answers_at_once_cuts_the_build_short_and_nothing_goes_live() {
    let w = World::new("pinbuild");
    let (d, r1) = v1_live(&w);
    let pids = w.pm2_pids();
    let (pidfile, gate) = (w.file("build.pid"), w.file("go"));
    let v2 = w.commit_app_version("2.0.0");
    let mut doc = w.app(&v2);
    doc.spec.build.steps.insert(
        0,
        format!(
            "echo $$ > '{}'; {}",
            pidfile.display(),
            wait_until_exists(&gate)
        ),
    );
    w.commit_app(&doc);
    let watch = held_at_v1(&w, &r1);
    let build = wait_for_pidfile("the long build to start", &pidfile, Duration::from_secs(60));

    let said = answers_at_once(
        &w,
        &[
            "pin", "pinbuild", "1", "--reason", "incident", "--by", "ana",
        ],
    );
    assert!(
        said.contains("pinned at revision 1 by ana: incident; the pass in flight stops before its next live step"),
        "{said}"
    );
    // The pin is in force at once for every reader, before any pass absorbed it.
    assert_eq!(w.record().pin.map(|p| p.revision), Some(1));
    wait_for(
        "the build's process group to be killed",
        Duration::from_secs(10),
        || process_gone(build).then_some(()),
    );
    let rec = w.wait_record("revision 2 stopped by the pin", 60, &d, |r| {
        r.revision(2)
            .is_some_and(|e| e.revision.outcome == Outcome::Superseded)
    });
    let stopped = &rec.revision(2).unwrap().revision;
    assert_eq!(
        stopped.message,
        "stopped during build (its process group was killed): pinned at revision 1 by ana (incident)"
    );
    assert_eq!(stopped.live_at, None, "a step that changes live state ran");
    // The gate opens: nothing resumes the stopped rollout; the next passes hold the pin.
    std::fs::write(&gate, "").unwrap();
    let passes = rec.passes;
    let rec = w.wait_record("two passes under the pin", 60, &d, |r| {
        r.passes >= passes + 2 && r.phase == Phase::Ready
    });
    assert_eq!(rec.live_revision, Some(1));
    assert!(
        rec.last_pass.as_ref().is_some_and(|p| p
            .result
            .starts_with("pinned at revision 1 by ana (incident)")),
        "{:?}",
        rec.last_pass
    );
    assert_eq!(w.current().as_deref(), Some(r1.as_str()));
    assert_eq!(w.pm2_pids(), pids, "the processes were reloaded");
    let seen = watch.stop();
    assert!(seen.is_empty(), "while pinned: {seen:?}");
}

/// Commit v2 with two after-switch hooks: mark `h1` and wait for `go`; mark `h2`. Returns
/// the config commit and the app commit.
fn v2_with_a_waiting_hook(w: &World) -> (String, String) {
    let v2 = w.commit_app_version("2.0.0");
    let mut doc = w.app(&v2);
    doc.spec.hooks.after_switch = vec![
        format!(
            "touch '{}'; {}",
            w.file("h1").display(),
            wait_until_exists(&w.file("go"))
        ),
        format!("touch '{}'", w.file("h2").display()),
    ];
    (w.commit_app(&doc), v2)
}

#[test]
fn a_pin_during_a_hook_stops_the_pass_before_its_next_live_step_and_the_next_pass_goes_back() {
    let w = World::new("pinhook");
    let (d, r1) = v1_live(&w);
    v2_with_a_waiting_hook(&w);
    wait_for("the first hook to run", Duration::from_secs(90), || {
        w.file("h1").exists().then_some(())
    });

    let said = answers_at_once(
        &w,
        &["pin", "pinhook", "1", "--reason", "incident", "--by", "ana"],
    );
    assert!(said.contains("the pass in flight stops"), "{said}");
    std::fs::write(w.file("go"), "").unwrap();
    let rec = w.wait_record("back on the pinned revision 1", 90, &d, |r| {
        r.phase == Phase::Ready
            && r.live_revision == Some(1)
            && r.revision(2)
                .is_some_and(|e| e.revision.outcome == Outcome::Superseded)
    });
    assert_eq!(
        rec.revision(2).unwrap().revision.message,
        "stopped before hook: pinned at revision 1 by ana (incident)"
    );
    assert!(!w.file("h2").exists(), "the next hook ran after the pin");
    assert_eq!(w.current().as_deref(), Some(r1.as_str()));
    wait_for("v1 to serve", Duration::from_secs(30), || {
        (w.get("/version").as_deref() == Some("1.0.0")).then_some(())
    });
}

#[test]
fn a_pin_recorded_during_a_pass_survives_a_controller_restart_and_unpin_then_rolls_out() {
    let w = World::new("pinrestart");
    let (d, r1) = v1_live(&w);
    v2_with_a_waiting_hook(&w);
    wait_for("the first hook to run", Duration::from_secs(90), || {
        w.file("h1").exists().then_some(())
    });
    answers_at_once(
        &w,
        &[
            "pin",
            "pinrestart",
            "1",
            "--reason",
            "incident",
            "--by",
            "ana",
        ],
    );
    // Stopped while the pass still waits in its hook: it never got to absorb the pin.
    d.stop_twice(Duration::from_secs(30));
    drop(d);
    let v3 = w.commit_app_version("3.0.0");
    let c3 = w.commit_config(&w.document(&v3));

    let d = w.start(&[]);
    let rec = w.wait_record("the pin held after the restart", 90, &d, |r| {
        r.phase == Phase::Ready
            && r.live_revision == Some(1)
            && r.desired_config_commit.as_deref() == Some(c3.as_str())
    });
    assert_eq!(rec.pin.as_ref().map(|p| p.by.as_str()), Some("ana"));
    assert!(
        rec.revisions.iter().all(|r| r.revision.app_commit != v3),
        "the pinned app applied v3"
    );
    assert_eq!(w.current().as_deref(), Some(r1.as_str()));
    wait_for("v1 to serve", Duration::from_secs(30), || {
        (w.get("/version").as_deref() == Some("1.0.0")).then_some(())
    });
    let status = String::from_utf8_lossy(&w.shipshape(&["status"], &[]).stdout).into_owned();
    assert!(status.contains("pinned by ana: incident"), "{status}");

    let said = answers_at_once(&w, &["unpin", "pinrestart", "--by", "ana"]);
    assert!(said.contains("pinrestart unpinned"), "{said}");
    let rec = w.wait_record("v3 live after unpin", 90, &d, |r| {
        r.phase == Phase::Ready && r.live().is_some_and(|l| l.revision.app_commit == v3)
    });
    assert!(rec.pin.is_none());
    assert_eq!(w.get("/version").as_deref(), Some("3.0.0"));
    // Release any hook the stopped controller left behind.
    std::fs::write(w.file("go"), "").unwrap();
}

#[test]
fn a_pin_and_an_unpin_during_one_pass_are_both_kept_and_the_rollout_goes_on() {
    let w = World::new("pinunpin");
    let (d, _) = v1_live(&w);
    let (_, v2) = v2_with_a_waiting_hook(&w);
    wait_for("the first hook to run", Duration::from_secs(90), || {
        w.file("h1").exists().then_some(())
    });
    answers_at_once(
        &w,
        &[
            "pin", "pinunpin", "1", "--reason", "incident", "--by", "ana",
        ],
    );
    let said = answers_at_once(&w, &["unpin", "pinunpin", "--by", "bo"]);
    assert!(
        said.contains("pinunpin unpinned; the pass in flight stops"),
        "{said}"
    );
    assert!(
        w.record().pin.is_none(),
        "the unpin is not in force at once"
    );
    std::fs::write(w.file("go"), "").unwrap();
    let rec = w.wait_record("v2 healthy, unpinned", 90, &d, |r| {
        r.phase == Phase::Ready && r.live().is_some_and(|l| l.revision.app_commit == v2)
    });
    assert!(rec.pin.is_none());
    assert!(
        w.file("h2").exists(),
        "the rollout stopped for a lifted pin"
    );
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
}

#[test]
fn a_retry_during_a_pass_never_releases_the_failure_that_pass_records_and_a_later_retry_tries_once()
{
    let w = World::new("pinretry");
    let (d, _) = v1_live(&w);
    let (count, gate) = (w.file("builds"), w.file("go"));
    let v2 = w.commit_app_version("2.0.0");
    let mut doc = w.app(&v2);
    // Counts its runs, waits for the gate, fails.
    doc.spec.build.steps.insert(
        0,
        format!(
            "echo x >> '{}'; {}; exit 1",
            count.display(),
            wait_until_exists(&gate)
        ),
    );
    let c2 = w.commit_app(&doc);
    let builds = || {
        std::fs::read_to_string(&count)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    wait_for("the build to start", Duration::from_secs(60), || {
        (builds() == 1).then_some(())
    });

    // A retry while the build runs: nothing has failed yet, so it releases nothing, and
    // the failure this pass records afterwards stays quarantined (a retry is not a blank
    // cheque for failures still to come).
    let said = answers_at_once(&w, &["retry", "pinretry"]);
    assert!(said.contains("retry recorded"), "{said}");
    std::fs::write(&gate, "").unwrap();
    let rec = w.wait_record("c2 failed and quarantined", 90, &d, |r| {
        r.is_quarantined(&c2) && r.phase == Phase::Failed
    });
    let passes = rec.passes;
    let rec = w.wait_record("two more passes", 60, &d, |r| r.passes >= passes + 2);
    assert_eq!(
        builds(),
        1,
        "the retry asked before the failure released it"
    );
    assert!(rec.is_quarantined(&c2));

    // A retry asked after the failure releases it: built once more, quarantined again.
    let said = answers_at_once(&w, &["retry", "pinretry"]);
    assert!(said.contains("retry"), "{said}");
    let rec = w.wait_record("c2 retried, failed and quarantined again", 90, &d, |r| {
        builds() == 2 && r.is_quarantined(&c2) && r.phase == Phase::Failed
    });
    let passes = rec.passes;
    let rec = w.wait_record("two more passes", 60, &d, |r| r.passes >= passes + 2);
    assert_eq!(builds(), 2, "the retry was applied more than once");
    assert!(rec.is_quarantined(&c2));
    assert_eq!(rec.live_revision, Some(1));
}

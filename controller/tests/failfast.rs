//! Fail fast: a broken rollout is reverted after `failureThreshold` failing rounds in a
//! row, not at `progressDeadline`; a slow boot inside the startup grace is not reverted;
//! a revision superseded while live and passing is the last known good revert target; a
//! pass that panics is reported on its app and the app is reconciled again.
//! Real git, pm2 and the example app, with the controller running as a daemon.

mod common;

use std::time::{Duration, Instant};

use common::{AppEdit, Daemon, World, wait_for};
use shipshape_spec::Timestamp;
use shipshape_spec::status::{Outcome, Phase};

/// The default document with a 5-minute deadline, 2 failing rounds in a row and 500 ms
/// rounds: only failing fast can revert a broken release quickly.
fn doc(w: &World, commit: &str, success: u32) -> shipshape_spec::App {
    let mut app = w.app(commit);
    app.health(ms(500), success, 2, Duration::from_secs(300))
        .rollback(true, Duration::from_secs(600));
    app
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn outcome(rec: &shipshape::state::AppRecord, n: u64) -> Option<Outcome> {
    rec.revision(n).map(|r| r.revision.outcome)
}

/// A new app commit whose /api/health answers 500 (everything else works).
fn commit_broken_app(w: &World, version: &str) -> String {
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let broken = server.replacen("res.writeHead(ok ? 200 : 503", "res.writeHead(500", 1);
    assert_ne!(broken, server, "the example app changed shape");
    w.commit_app_version(version);
    w.commit_app_files(&[("server.js", &broken)], "health answers 500")
}

fn secs_between(a: &Timestamp, b: &Timestamp) -> f64 {
    (*b - *a).num_milliseconds() as f64 / 1000.0
}

fn deploy_v1(w: &World, success: u32) -> (String, Daemon) {
    let v1 = w.app_head();
    w.commit_app(&doc(w, &v1, success));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });
    (v1, d)
}

#[test]
fn a_release_answering_500_is_reverted_after_two_failing_rounds_not_at_the_deadline() {
    let w = World::new("fast");
    let (v1, d) = deploy_v1(&w, 2);
    let v2 = commit_broken_app(&w, "2.0.0");
    let committed = Instant::now();
    w.commit_app(&doc(&w, &v2, 2));
    let rec = w.wait_record("revision 2 reverted", 60, &d, |r| {
        outcome(r, 2) == Some(Outcome::Reverted)
    });
    wait_for("v1 serving again", Duration::from_secs(15), || {
        (w.get("/version").as_deref() == Some("1.0.0")).then_some(())
    });
    let from_commit = committed.elapsed();
    // When revision 2 went live (its switch), from its record: a later (holding) pass may
    // already have replaced `last_pass`.
    let live_at = rec
        .revision(2)
        .unwrap()
        .revision
        .live_at
        .expect("the rollout switched");
    let reverted_at = rec.revision(2).unwrap().revision.finished_at.unwrap();
    let from_switch = secs_between(&live_at, &reverted_at);
    eprintln!("reverted {from_switch:.1}s after the switch, {from_commit:?} after the commit");
    assert!(
        from_switch < 15.0,
        "reverted {from_switch}s after the switch"
    );
    assert!(from_commit < Duration::from_secs(30), "{from_commit:?}");
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    let r2 = rec.revision(2).unwrap();
    // What happened first, then the rule: "api: status 500, expected 200 (3ms), after 2
    // failing rounds in a row".
    let m = &r2.revision.message;
    assert!(
        m.contains("verify failed: api: status 500, expected 200")
            && m.contains(", after 2 failing rounds in a row"),
        "{m}"
    );
    assert!(!r2.revision.message.contains("progressDeadline"));
    assert_eq!(r2.revision.rounds.failed, 2, "{:?}", r2.revision.rounds);
    let history = w.shipshape(&["history", &w.name], &[]);
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains("failing rounds in a row"), "{history}");
}

#[test]
fn a_release_that_refuses_connections_while_it_boots_within_its_grace_is_not_reverted() {
    let w = World::new("slow");
    let (_v1, d) = deploy_v1(&w, 2);
    // One fork-mode process (a reload leaves nothing listening), 4 s of boot, and
    // listen_timeout 6 s: the startup grace the controller derives.
    let v1 = w.app_head();
    let mut slow = doc(&w, &v1, 2);
    slow.env("BOOT_DELAY_MS", "4000");
    let p = &mut slow.spec.processes[0];
    p.instances = Some(shipshape_spec::app::Instances::Count(1));
    p.exec_mode = Some(shipshape_spec::app::ExecMode::Fork);
    p.listen_timeout = Some(6000);
    w.commit_app(&slow);
    let rec = w.wait_record("revision 2 healthy", 60, &d, |r| {
        matches!(
            outcome(r, 2),
            Some(Outcome::Healthy | Outcome::Reverted | Outcome::Failed)
        )
    });
    assert_eq!(
        outcome(&rec, 2),
        Some(Outcome::Healthy),
        "{:?}",
        rec.revision(2)
    );
    assert_eq!(rec.live_revision, Some(2));
    let r2 = &rec.revision(2).unwrap().revision;
    assert_eq!(
        r2.rounds.failed, 0,
        "rounds while booting are not failures: {:?}",
        r2.rounds
    );
    // It really did refuse connections for a while: the verification took the boot time.
    // (From the revision's times: a later pass may already have replaced `last_pass`.)
    let live_at = r2.live_at.expect("went live");
    let healthy_at = r2.finished_at.expect("finished");
    let verified_ms = (secs_between(&live_at, &healthy_at) * 1000.0) as u64;
    assert!(
        verified_ms >= 3500,
        "healthy {} ms after going live",
        verified_ms
    );
}

#[test]
fn a_broken_commit_while_the_previous_one_is_still_verifying_goes_back_to_it() {
    let w = World::new("lkg");
    let v1 = w.app_head();
    // v1 needs 40 passing rounds (20 s): a broken v2 lands while v1 serves and passes.
    w.commit_app(&doc(&w, &v1, 40));
    let d = w.start(&[]);
    wait_for(
        "v1 serving and passing a round",
        Duration::from_secs(60),
        || {
            let (_, metrics) = d.get("/metrics");
            let up = format!(
                "shipshape_health_check_up{{app=\"{}\",check=\"api\"}} 1",
                w.name
            );
            (w.get("/version").as_deref() == Some("1.0.0") && metrics.contains(&up)).then_some(())
        },
    );
    let v2 = commit_broken_app(&w, "2.0.0");
    w.commit_app(&doc(&w, &v2, 2));
    // (A revert quarantines the revision as Failed first; it ends Reverted or Degraded.)
    let rec = w.wait_record("revision 2 reverted", 90, &d, |r| {
        outcome(r, 2) == Some(Outcome::Reverted) || r.phase == Phase::Degraded
    });
    let r1 = rec.revision(1).unwrap();
    assert_eq!(
        r1.revision.outcome,
        Outcome::Superseded,
        "{:?}",
        r1.revision
    );
    assert!(r1.revision.rounds.passed >= 1 && r1.revision.rounds.failed == 0);
    assert_eq!(
        outcome(&rec, 2),
        Some(Outcome::Reverted),
        "{:?}",
        rec.revision(2)
    );
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    wait_for("v1 serving", Duration::from_secs(10), || {
        (w.get("/version").as_deref() == Some("1.0.0")).then_some(())
    });
    let message = &rec.revision(2).unwrap().revision.message;
    assert!(message.contains("last known good"), "{message}");
}

#[test]
fn a_pass_that_panics_is_reported_on_its_app_and_the_app_is_reconciled_again() {
    if !common::faults::fault_injection_built(
        "a_pass_that_panics_is_reported_on_its_app_and_the_app_is_reconciled_again",
    ) {
        return;
    }
    let w = World::new("panic");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, 2));
    // The first build panics the pass.
    let d = w.start_with_env(&[], &[("SHIPSHAPE_FAULT", "panic:build:1")]);
    // Reported on its app: counted, logged, and (until the next pass) its phase and pass.
    let counted = format!(
        "shipshape_reconcile_total{{app=\"{}\",result=\"panic\"}} 1",
        w.name
    );
    wait_for(
        "the panic counted on the app",
        Duration::from_secs(60),
        || d.get("/metrics").1.contains(&counted).then_some(()),
    );
    let log = d.log_tail(400);
    assert!(
        log.contains("the pass panicked: fault injection: a panic before build"),
        "{log}"
    );
    // The app is not wedged: a trigger (the resync interval, 1 s) runs it again, and the
    // build goes through.
    let rec = w.wait_record("v1 healthy after the panic", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });
    assert_eq!(outcome(&rec, 1), Some(Outcome::Healthy));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
}

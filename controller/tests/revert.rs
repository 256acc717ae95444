//! Health regressions and automatic reverts with the controller running as a daemon:
//! a broken commit, a crash loop, regressions inside and outside the rollback window,
//! checks failing before a rollout, the last healthy revision failing too, and a newer
//! commit superseding a rollout being verified. Real git, pm2 and the example app.

mod common;

use std::time::{Duration, Instant};

use common::{AppEdit, World};
use shipshape_spec::status::{Outcome, Phase};

/// The document with a fail file (the app answers 503 while the file names its version)
/// and a rollback window.
fn doc(w: &World, commit: &str, window: Duration) -> shipshape_spec::App {
    let mut app = w.app(commit);
    app.env(
        "HEALTH_FAIL_FILE",
        &w.root().join("fail").display().to_string(),
    )
    .health(Duration::from_millis(300), 2, 3, Duration::from_secs(5))
    .rollback(true, window);
    app
}

const TEN_MINUTES: Duration = Duration::from_secs(600);

fn outcome(rec: &shipshape::state::AppRecord, n: u64) -> Option<Outcome> {
    rec.revision(n).map(|r| r.revision.outcome)
}

#[test]
fn a_commit_whose_app_answers_500_is_reverted_quarantined_and_not_reapplied() {
    let w = World::new("five");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, TEN_MINUTES));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });

    // v2's health endpoint answers 500.
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let broken = server.replacen("res.writeHead(ok ? 200 : 503", "res.writeHead(500", 1);
    assert_ne!(broken, server);
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(&[("server.js", &broken)], "v2 answers 500 on /api/health");
    let bad_config = w.commit_app(&doc(&w, &v2, TEN_MINUTES));
    let started = Instant::now();
    let rec = w.wait_record("revision 2 reverted", 60, &d, |r| {
        outcome(r, 2) == Some(Outcome::Reverted)
    });
    let took = started.elapsed();
    // progressDeadline 5s, plus detection, rollout and the revert itself.
    assert!(took < Duration::from_secs(30), "revert took {took:?}");
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    let q = rec
        .quarantined
        .iter()
        .find(|q| q.config_commit == bad_config)
        .expect("quarantined");
    assert!(q.reason.contains("api: status 500"), "{}", q.reason);
    let status = w.shipshape(&["status", "five"], &[]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("quarantined config") && status.contains("status 500"),
        "{status}"
    );

    // Passes keep coming (interval 1s) and never re-apply it.
    let passes = rec.passes;
    let rec = w.wait_record("three more passes", 30, &d, |r| r.passes >= passes + 3);
    assert_eq!(
        rec.revisions.len(),
        2,
        "the quarantined revision was applied again"
    );
    assert!(rec.last_pass.unwrap().steps.is_empty());

    // A new commit (the fix) is applied.
    w.commit_app_files(&[("server.js", &server)], "fix the health endpoint");
    let v3 = w.commit_app_version("3.0.0");
    w.commit_app(&doc(&w, &v3, TEN_MINUTES));
    let rec = w.wait_record("v3 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(3)
    });
    assert_eq!(outcome(&rec, 3), Some(Outcome::Healthy));
    assert_eq!(w.get("/version").as_deref(), Some("3.0.0"));

    // `shipshape logs` shows every step of the reverted rollout, the revert included.
    let logs = w.shipshape(&["logs", "five", "2"], &[]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("verify") && logs.contains("the reverted-to revision 1 must be healthy too"),
        "{logs}"
    );
}

#[test]
fn an_app_that_crash_loops_under_pm2_is_reverted() {
    let w = World::new("crashy");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, TEN_MINUTES));
    assert_eq!(w.run_once().0, 0);
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let crashing = server.replacen(
        "'use strict';\n",
        "'use strict';\nthrow new Error('boom at start');\n",
        1,
    );
    assert_ne!(crashing, server, "the example app changed shape");
    let v2 = w.commit_app_files(&[("server.js", &crashing)], "v2 crashes at start");
    w.commit_app(&doc(&w, &v2, TEN_MINUTES));
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let rec = w.record();
    assert_eq!(
        outcome(&rec, 2),
        Some(Outcome::Reverted),
        "{:#?}",
        rec.revision(2).map(|r| &r.revision)
    );
    let msg = &rec.revision(2).unwrap().revision.message;
    assert!(msg.contains("pm2 crashy-web"), "{msg}");
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
}

#[test]
fn a_regression_inside_the_window_is_reverted_and_outside_it_is_only_reported() {
    // Inside the window.
    let w = World::new("inside");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, TEN_MINUTES));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.live_revision == Some(1) && r.phase == Phase::Ready
    });
    let v2 = w.commit_app_version("2.0.0");
    w.commit_app(&doc(&w, &v2, TEN_MINUTES));
    w.wait_record("v2 healthy", 60, &d, |r| {
        r.live_revision == Some(2) && r.phase == Phase::Ready
    });
    std::fs::write(w.root().join("fail"), "2.0.0").unwrap();
    let rec = w.wait_record("v2 reverted after regressing", 60, &d, |r| {
        outcome(r, 2) == Some(Outcome::Reverted)
    });
    assert_eq!(rec.live_revision, Some(1));
    assert!(
        rec.revision(2)
            .unwrap()
            .revision
            .message
            .contains("regressed"),
        "{}",
        rec.revision(2).unwrap().revision.message
    );
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    drop(d);

    // Outside the window.
    let w = World::new("outside");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, Duration::from_secs(1)));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.live_revision == Some(1) && r.phase == Phase::Ready
    });
    let v2 = w.commit_app_version("2.0.0");
    w.commit_app(&doc(&w, &v2, Duration::from_secs(1)));
    let rec = w.wait_record("v2 healthy", 60, &d, |r| {
        r.live_revision == Some(2) && r.phase == Phase::Ready
    });
    // Past the window (polling the clock, not sleeping a fixed time).
    let healthy_at = rec
        .revision(2)
        .unwrap()
        .revision
        .finished_at
        .unwrap()
        .datetime();
    common::wait_for(
        "the rollback window to pass",
        Duration::from_secs(10),
        || {
            (chrono::Utc::now().signed_duration_since(healthy_at)
                > chrono::TimeDelta::milliseconds(1500))
            .then_some(())
        },
    );
    std::fs::write(w.root().join("fail"), "2.0.0").unwrap();
    let rec = w.wait_record("Degraded", 60, &d, |r| r.phase == Phase::Degraded);
    assert_eq!(rec.live_revision, Some(2), "reverted outside the window");
    assert_eq!(outcome(&rec, 2), Some(Outcome::Healthy));
    let ready = rec.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(
        ready.message.contains("outside") || ready.message.contains("rollback.window"),
        "{}",
        ready.message
    );
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
    // When the checks recover, so does the app.
    std::fs::write(w.root().join("fail"), "").unwrap();
    w.wait_record("Ready again", 60, &d, |r| r.phase == Phase::Ready);
}

#[test]
fn a_rollout_is_not_blamed_for_checks_that_were_failing_before_it() {
    let w = World::new("preexisting");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, TEN_MINUTES));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.live_revision == Some(1) && r.phase == Phase::Ready
    });
    // Something outside the app breaks it (both versions fail while the file names them).
    std::fs::write(w.root().join("fail"), "1.0.0 2.0.0").unwrap();
    w.wait_record("v1 failing", 60, &d, |r| r.phase == Phase::Degraded);
    let v2 = w.commit_app_version("2.0.0");
    w.commit_app(&doc(&w, &v2, TEN_MINUTES));
    let rec = w.wait_record("v2 rolled out and not blamed", 60, &d, |r| {
        r.revision(2).is_some_and(|e| e.not_blamed)
    });
    assert_eq!(
        rec.live_revision,
        Some(2),
        "a rollout not to blame was reverted"
    );
    assert_eq!(rec.phase, Phase::Degraded);
    assert!(
        rec.quarantined.is_empty(),
        "a revision not to blame was quarantined"
    );
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
    // The outside problem goes away: v2 is healthy, the app Ready.
    std::fs::write(w.root().join("fail"), "").unwrap();
    let rec = w.wait_record("v2 healthy after recovery", 60, &d, |r| {
        r.phase == Phase::Ready
    });
    assert_eq!(outcome(&rec, 2), Some(Outcome::Healthy));
}

#[test]
fn when_the_last_healthy_revision_fails_too_the_app_is_degraded_and_nothing_loops() {
    let w = World::new("bothbad");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, TEN_MINUTES));
    assert_eq!(w.run_once().0, 0);
    // v2's build breaks something v1 needs too (as a destructive migration would).
    let v2 = w.commit_app_version("2.0.0");
    let fail = w.root().join("fail");
    let mut d2 = doc(&w, &v2, TEN_MINUTES);
    d2.spec
        .build
        .steps
        .push(format!("echo '1.0.0 2.0.0' > {}", fail.display()));
    w.commit_app(&d2);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Degraded);
    let msg = &rec.revision(2).unwrap().revision.message;
    assert!(msg.contains("reverting to revision 1 failed too"), "{msg}");
    let switches = rec
        .last_pass
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .filter(|s| s.step == "switch")
        .count();
    assert_eq!(switches, 2, "one rollout and one revert");
    // No loop: further passes run nothing and make no revision.
    for _ in 0..3 {
        let (code, _) = w.run_once();
        assert_eq!(code, 1);
        let rec = w.record();
        assert!(rec.last_pass.unwrap().steps.is_empty());
        assert_eq!(rec.revisions.len(), 2);
    }
}

#[test]
fn a_newer_commit_supersedes_a_rollout_being_verified() {
    let w = World::new("newest");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, TEN_MINUTES));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.live_revision == Some(1) && r.phase == Phase::Ready
    });
    // v2 never gets healthy, with a long deadline.
    let v2 = w.commit_app_version("2.0.0");
    std::fs::write(w.root().join("fail"), "2.0.0").unwrap();
    let mut slow = doc(&w, &v2, TEN_MINUTES);
    slow.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(300);
    w.commit_app(&slow);
    w.wait_record("v2 switched and being verified", 60, &d, |r| {
        r.revision(2)
            .is_some_and(|e| e.revision.outcome == Outcome::Progressing)
            && w.current().as_deref() == Some(v2.as_str())
    });
    let started = Instant::now();
    let v3 = w.commit_app_version("3.0.0");
    w.commit_app(&doc(&w, &v3, TEN_MINUTES));
    let rec = w.wait_record("v3 healthy", 60, &d, |r| {
        r.live_revision == Some(3) && r.phase == Phase::Ready
    });
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "waited for v2's deadline"
    );
    assert_eq!(outcome(&rec, 2), Some(Outcome::Superseded));
    assert_eq!(w.get("/version").as_deref(), Some("3.0.0"));
}

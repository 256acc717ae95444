//! Documented claims that had no test of their own: `rollback.auto: false` leaves a failed
//! rollout live (Degraded, never moved back); `shipshape retry` releases a quarantined commit;
//! no automatic revert while pinned; a pin from the document (`spec.pin`) holds through
//! new commits and is lifted by removing it from git. Real git, pm2 and the example app,
//! the controller as a daemon.

mod common;

use std::time::Duration;

use common::{AppEdit, World};
use shipshape_spec::status::{Outcome, Phase, PinSource};

/// The default document with a fail file (the app answers 503 while the file names its
/// version), 2 failing rounds in a row, and `rollback.auto` as given.
fn doc(w: &World, commit: &str, auto: bool) -> shipshape_spec::App {
    let mut app = w.app(commit);
    app.env(
        "HEALTH_FAIL_FILE",
        &w.root().join("fail").display().to_string(),
    )
    .health(Duration::from_millis(300), 2, 2, Duration::from_secs(30))
    .rollback(auto, Duration::from_secs(600));
    app
}

fn outcome(rec: &shipshape::state::AppRecord, n: u64) -> Option<Outcome> {
    rec.revision(n).map(|r| r.revision.outcome)
}

fn fail(w: &World, versions: &str) {
    std::fs::write(w.root().join("fail"), versions).unwrap();
}

#[test]
fn with_rollback_auto_off_a_failed_rollout_stays_live_and_degraded_and_is_never_moved_back() {
    let w = World::new("noauto");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, false));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);
    fail(&w, "2.0.0");
    let v2 = w.commit_app_version("2.0.0");
    let c2 = w.commit_app(&doc(&w, &v2, false));
    let rec = w.wait_record("revision 2 failed", 60, &d, |r| {
        outcome(r, 2) == Some(Outcome::Failed) && r.phase == Phase::Degraded
    });
    assert_eq!(rec.live_revision, Some(2), "left live, not reverted");
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
    // Not quarantined: holding the last good revision would be a revert after all.
    assert!(!rec.is_quarantined(&c2));
    let m = &rec.revision(2).unwrap().revision.message;
    assert!(m.contains("rollback.auto is off"), "{m}");
    // Passes go on and never revert it by themselves.
    let passes = rec.passes;
    let rec = w.wait_record("three more passes", 30, &d, |r| r.passes >= passes + 3);
    assert_eq!(rec.live_revision, Some(2));
    assert_eq!(rec.revisions.len(), 2);
    assert_eq!(rec.phase, Phase::Degraded);
    assert_eq!(w.current().as_deref(), Some(v2.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
}

#[test]
fn retry_releases_a_quarantined_commit_and_the_controller_rolls_it_out_again() {
    let w = World::new("retry");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, true));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);
    fail(&w, "2.0.0");
    let v2 = w.commit_app_version("2.0.0");
    let c2 = w.commit_app(&doc(&w, &v2, true));
    let rec = w.wait_record("revision 2 reverted", 60, &d, |r| {
        outcome(r, 2) == Some(Outcome::Reverted)
    });
    assert!(rec.is_quarantined(&c2));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));

    // The cause was outside the commit (say, a dependency that is back): retry.
    fail(&w, "");
    let out = w.shipshape(&["retry", &w.name], &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("1 quarantined config commit(s) released"),
        "{said}"
    );
    let rec = w.wait_record("the same config commit rolled out again", 60, &d, |r| {
        r.phase == Phase::Ready
            && r.live().is_some_and(|l| {
                l.revision.config_commit == c2 && l.revision.outcome == Outcome::Healthy
            })
    });
    assert!(!rec.is_quarantined(&c2));
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
}

#[test]
fn a_pinned_revision_that_regresses_is_reported_and_not_reverted() {
    let w = World::new("pinreg");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, true));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);
    let v2 = w.commit_app_version("2.0.0");
    w.commit_app(&doc(&w, &v2, true));
    w.wait_record("v2 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(2)
    });
    let out = w.shipshape(
        &["pin", &w.name, "2", "--reason", "incident 7", "--by", "ana"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The pinned revision regresses: it would be reverted to revision 1 if not pinned.
    fail(&w, "2.0.0");
    let rec = w.wait_record("the regression reported", 60, &d, |r| {
        r.phase == Phase::Degraded
    });
    // The pass that saw it said why (later passes say "live revision 2 is failing its checks").
    common::wait_for("the reason logged", Duration::from_secs(10), || {
        d.log_tail(400)
            .contains("no automatic revert while pinned")
            .then_some(())
    });
    assert_eq!(rec.live_revision, Some(2));
    assert_eq!(
        outcome(&rec, 2),
        Some(Outcome::Healthy),
        "not marked reverted"
    );
    assert_eq!(w.current().as_deref(), Some(v2.as_str()));
}

#[test]
fn a_pin_in_the_document_holds_through_new_commits_until_it_is_removed_from_git() {
    let w = World::new("docpin");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, true));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);
    // v2 with a pin in the same commit: the pin is taken first, v2 is not applied.
    let v2 = w.commit_app_version("2.0.0");
    let mut pinned = doc(&w, &v2, true);
    pinned.spec.pin = Some(shipshape_spec::app::DocumentPin {
        reason: "change freeze".into(),
        by: Some("release-manager".into()),
        app_commit: None,
    });
    w.commit_app(&pinned);
    let rec = w.wait_record("the document pin taken", 60, &d, |r| r.pin.is_some());
    let pin = rec.pin.clone().unwrap();
    assert_eq!((pin.revision, pin.source), (1, PinSource::Document));
    assert_eq!(pin.by, "release-manager");
    let passes = rec.passes;
    let rec = w.wait_record("two more passes", 30, &d, |r| r.passes >= passes + 2);
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    // `shipshape unpin` cannot lift a pin that lives in git.
    let out = w.shipshape(&["unpin", &w.name], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("remove it in git"));
    // Removing it from the document does.
    w.commit_app(&doc(&w, &v2, true));
    let rec = w.wait_record("v2 applied once unpinned", 60, &d, |r| {
        r.pin.is_none()
            && r.phase == Phase::Ready
            && r.live().is_some_and(|l| l.revision.app_commit == v2)
    });
    assert_eq!(
        outcome(&rec, rec.live_revision.unwrap()),
        Some(Outcome::Healthy)
    );
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
}

#[test]
fn a_pin_from_the_cli_works_while_the_config_repo_is_unreachable() {
    let w = World::new("offline");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, true));
    let bare = w.bare_remote();
    let url = format!("file://{}", bare.display());
    let d = w.start(&["--repo", &url, "--poll-interval", "1s"]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);
    let v2 = w.commit_app_version("2.0.0");
    w.commit_app(&doc(&w, &v2, true));
    w.push();
    w.wait_record("v2 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(2)
    });
    // The git server goes away; then an incident: hold revision 1.
    std::fs::rename(&bare, w.root().join("remote.git.gone")).unwrap();
    common::wait_for("failing fetches", Duration::from_secs(60), || {
        (w.store().load_source().consecutive_failures >= 2).then_some(())
    });
    let out = w.shipshape(
        &["pin", &w.name, "1", "--reason", "incident, git is down"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = w.wait_record("revision 1 live again, pinned", 60, &d, |r| {
        r.pin.is_some() && r.live_revision == Some(1) && r.phase == Phase::Ready
    });
    assert_eq!(rec.pin.unwrap().source, PinSource::Cli);
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
}

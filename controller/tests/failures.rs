//! Bad input and failed rollouts: each ends with a clear error, and the live release
//! keeps serving. Real git, real pm2, the example app.

mod common;

use common::{AppEdit, World};
use shipshape_spec::status::{ConditionStatus, Outcome, Phase};

/// Deploy v1 and return its commit.
fn live_v1(w: &World) -> String {
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "v1 deploy failed:\n{log}");
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    v1
}

fn assert_v1_still_live(w: &World, v1: &str) {
    assert_eq!(w.current().as_deref(), Some(v1), "current moved");
    assert_eq!(
        w.get("/version").as_deref(),
        Some("1.0.0"),
        "v1 stopped serving"
    );
}

#[test]
fn malformed_yaml_a_wrong_type_and_an_unknown_field_are_located_and_change_nothing() {
    let w = World::new("bad");
    let v1 = live_v1(&w);
    let good = w.document(&v1);
    let cases = [
        (
            good.replace("  processes:\n", "  processes: [\n"),
            "apps/bad.yaml:",
            "",
        ),
        (
            good.replace("instances: 2", "instances: two"),
            "apps/bad.yaml:20:7: spec.processes[0].instances:",
            "expected a positive integer or \"max\"",
        ),
        (
            good.replace("    interval: 300ms", "    intervl: 300ms"),
            "apps/bad.yaml:",
            "spec.health.intervl: unknown field `intervl`",
        ),
        (
            good.replace("timeout: 1s", "timeout: 5 sec"),
            "apps/bad.yaml:",
            "spec.health.checks[0].timeout: invalid duration \"5 sec\"",
        ),
    ];
    for (doc, location, message) in cases {
        w.commit_config(&doc);
        let (code, log) = w.run_once();
        assert_eq!(code, 1, "a bad document must fail the pass:\n{log}");
        assert!(
            log.contains(location),
            "no location {location:?} in:\n{log}"
        );
        assert!(log.contains(message), "no message {message:?} in:\n{log}");
        assert_v1_still_live(&w, &v1);
    }
    // The next good commit recovers without a restart.
    let mut fixed = w.app(&v1);
    fixed.spec.health.interval = shipshape_spec::Duration::from_millis(250);
    w.commit_app(&fixed);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn an_app_commit_that_does_not_exist_fails_the_fetch_and_leaves_live_untouched() {
    let w = World::new("ghost");
    let v1 = live_v1(&w);
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let bad_config = w.commit_config(&w.document(missing));
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    assert_v1_still_live(&w, &v1);
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Failed);
    let err = rec.last_error.as_ref().unwrap();
    assert_eq!(err.step, "fetch");
    assert!(
        err.message.contains(missing) && err.message.contains("not found"),
        "{}",
        err.message
    );
    let last = rec.revisions.last().unwrap();
    assert_eq!(last.revision.outcome, Outcome::Failed);
    assert!(
        !w.releases_root()
            .join("releases")
            .join(missing)
            .join(".shipshape-release.json")
            .exists()
    );
    // Stalled, not transient: the config commit is quarantined, for this revision.
    let q: Vec<_> = rec
        .quarantined
        .iter()
        .map(|q| (q.config_commit.as_str(), q.revision))
        .collect();
    assert_eq!(q, [(bad_config.as_str(), last.revision.number)]);
    let stalled = rec
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .expect("a Stalled condition");
    assert_eq!(
        (stalled.status, stalled.reason.as_str()),
        (ConditionStatus::True, "FetchFailed")
    );
    // So the next pass does not fetch it again: it holds v1 and runs no step.
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let rec = w.record();
    assert!(
        rec.last_pass.as_ref().unwrap().steps.is_empty(),
        "the quarantined commit was tried again: {:?}",
        common::steps(&rec)
    );
    assert_eq!(rec.revisions.len(), 2, "no new revision for it");
    assert_v1_still_live(&w, &v1);
}

#[test]
fn a_failing_install_keeps_the_live_release_and_reports_the_output_tail() {
    let w = World::new("brokeninstall");
    let v1 = live_v1(&w);
    let v2 = w.commit_app_version("2.0.0");
    let mut doc = w.app(&v2);
    doc.spec.build.install = Some("echo lockfile-is-out-of-sync >&2; exit 7".into());
    w.commit_app(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    assert_v1_still_live(&w, &v1);
    let rec = w.record();
    let err = rec.last_error.as_ref().unwrap();
    assert_eq!(err.step, "install");
    assert!(err.message.contains("code 7"), "{}", err.message);
    assert!(
        err.output_tail
            .as_deref()
            .unwrap_or("")
            .contains("lockfile-is-out-of-sync")
    );
    let steps = common::steps(&rec);
    assert_eq!(
        steps,
        ["fetch", "install"],
        "nothing after the failed install may run"
    );
    // The unsealed release is not mistaken for a prepared one.
    assert!(
        !w.releases_root()
            .join("releases")
            .join(&v2)
            .join(".shipshape-release.json")
            .exists()
    );
    // Quarantined: the same config commit is not retried by itself.
    let (code, _) = w.run_once();
    assert_eq!(code, 1);
    let pass = w.record().last_pass.unwrap();
    assert!(
        pass.steps.is_empty(),
        "a failed config commit was re-applied: {:#?}",
        pass.steps
    );
}

#[test]
fn a_health_check_that_never_passes_reverts_to_the_last_healthy_revision_and_is_not_reapplied() {
    let w = World::new("regress");
    let v1 = live_v1(&w);
    let v2 = w.commit_app_version("2.0.0");
    let mut doc = w.app(&v2);
    doc.env("HEALTH_FAIL", "1");
    doc.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(3);
    let bad_config = w.commit_app(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    assert_v1_still_live(&w, &v1);
    let rec = w.record();
    assert_eq!(
        rec.phase,
        Phase::Failed,
        "{:#?}",
        rec.revisions.last().map(|r| &r.revision)
    );
    let failed = common::revision_of(&rec, &v2);
    assert_eq!(failed.revision.outcome, Outcome::Reverted);
    assert!(
        failed.revision.message.contains("reverted to revision 1"),
        "{}",
        failed.revision.message
    );
    assert!(
        failed.revision.message.contains("api: status 503"),
        "{}",
        failed.revision.message
    );
    assert!(rec.is_quarantined(&bad_config));
    let steps = common::steps(&rec);
    assert_eq!(
        steps,
        [
            "fetch",
            "install",
            "build",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify",
            "switch",
            "pm2-replace",
            "pm2-save",
            "verify"
        ]
    );
    // The next pass holds v1 and runs nothing: no flapping.
    let (code, _) = w.run_once();
    assert_eq!(code, 1);
    assert!(w.record().last_pass.unwrap().steps.is_empty());
    assert_v1_still_live(&w, &v1);
    // A new config commit (the fix) is applied.
    let v3 = w.commit_app_version("3.0.0");
    w.commit_config(&w.document(&v3));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.get("/version").as_deref(), Some("3.0.0"));
}

#[test]
fn a_first_deploy_that_never_gets_healthy_is_reported_and_not_retried() {
    let w = World::new("neverhealthy");
    let v1 = w.app_head();
    let mut doc = w.app(&v1);
    doc.spec.health.checks[0]
        .http_mut()
        .expect("the default check is http")
        .body_contains = Some("never-in-the-body".into());
    doc.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(2);
    w.commit_app(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Degraded);
    let err = rec.last_error.as_ref().unwrap();
    assert_eq!(err.step, "verify");
    assert!(
        err.message
            .contains("does not contain \"never-in-the-body\""),
        "{}",
        err.message
    );
    let (code, _) = w.run_once();
    assert_eq!(code, 1);
    assert!(
        w.record().last_pass.unwrap().steps.is_empty(),
        "retried a failed revision by itself"
    );
}

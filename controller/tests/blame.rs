//! Blame by evidence and health-only changes, with the controller running as a daemon
//! against real git, pm2 and the example app:
//! - one failed monitor round of a flaky-but-healthy live release does not turn off the
//!   revert of a broken commit landing right after it;
//! - a rollout that is not blamed says what evidence it was judged by, and says loudly that
//!   it failed every round of its own verification;
//! - a config commit that changes only a check re-verifies the live release without any
//!   pm2 step, is not reverted or quarantined when the changed check fails (Degraded, naming
//!   it), and the next config commit fixing the check clears Degraded.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{AppEdit, World};
use shipshape_spec::app::Instances;
use shipshape_spec::status::{Outcome, Phase, condition_types as ct};

fn outcome(rec: &shipshape::state::AppRecord, n: u64) -> Option<Outcome> {
    rec.revision(n).map(|r| r.revision.outcome)
}

/// Every pm2 process of the world: pm_id → (pid, restarts).
fn pm2_processes(w: &World) -> BTreeMap<u64, (u64, u64)> {
    let list: serde_json::Value = serde_json::from_str(&w.pm2_jlist_raw()).expect("pm2 jlist");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|p| {
            (
                p["pm_id"].as_u64().unwrap(),
                (
                    p["pid"].as_u64().unwrap_or(0),
                    p["pm2_env"]["restart_time"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

/// The message of the app's Healthy condition.
fn healthy_message(rec: &shipshape::state::AppRecord) -> String {
    rec.conditions
        .iter()
        .find(|c| c.type_ == ct::HEALTHY)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The world's document with one instance (so "every 4th answer" is every 4th round) and
/// the given health rules.
fn doc(w: &World, commit: &str, interval: Duration) -> shipshape_spec::App {
    let mut app = w.app(commit);
    app.spec.processes[0].instances = Some(Instances::Count(1));
    app.health(interval, 2, 3, Duration::from_secs(30))
        .rollback(true, Duration::from_secs(600));
    app
}

#[test]
fn a_broken_commit_right_after_one_failed_round_of_a_flaky_healthy_release_is_reverted() {
    let w = World::new("flaky");
    let v1 = w.app_head();
    // Every 4th answer of /api/health is a 503: a quarter of the rounds fail, one at a
    // time, below failureThreshold 3. Rounds every 3 s leave the rollout below ample time to
    // start before the monitor's next round.
    let mut healthy = doc(&w, &v1, Duration::from_secs(3));
    healthy.env("HEALTH_FLAKY_EVERY", "4");
    w.commit_app(&healthy);
    let d = w.start(&[]);
    w.wait_record("revision 1 healthy", 90, &d, |r| {
        r.phase == Phase::Ready && outcome(r, 1) == Some(Outcome::Healthy)
    });
    // Wait for one failed monitor round of the healthy release (its hiccup) …
    let rec = w.wait_record("one failed monitor round of revision 1", 90, &d, |r| {
        r.health
            .as_ref()
            .is_some_and(|h| h.revision == 1 && h.consecutive_failures == 1)
    });
    assert_eq!(rec.live_revision, Some(1));
    // … and land a broken commit right after it: every health answer is a 503.
    let mut broken = healthy.clone();
    broken.env("HEALTH_FAIL", "1");
    let bad_config = w.commit_app(&broken);
    let rec = w.wait_record("revision 2 reverted", 120, &d, |r| {
        outcome(r, 2).is_some_and(|o| o != Outcome::Progressing) && r.phase != Phase::Progressing
    });
    let two = rec.revision(2).unwrap();
    assert_eq!(
        two.revision.outcome,
        Outcome::Reverted,
        "one failed round of the live release turned off the revert: {}",
        two.revision.message
    );
    assert!(!two.not_blamed, "{}", two.revision.message);
    assert!(
        !two.revision.message.contains("not blamed"),
        "{}",
        two.revision.message
    );
    assert_eq!(rec.live_revision, Some(1));
    assert!(
        rec.quarantined
            .iter()
            .any(|q| q.config_commit == bad_config),
        "the broken config commit is quarantined"
    );
    // The flaky release serves again.
    common::wait_for("revision 1 serving", Duration::from_secs(30), || {
        w.get("/api/health")
            .filter(|b| b.contains("\"version\":\"1.0.0\""))
    });
}

#[test]
fn a_rollout_not_blamed_names_the_evidence_and_that_it_failed_every_round() {
    let w = World::new("evidence");
    let v1 = w.app_head();
    let fail = w.root().join("fail");
    let with_fail_file = |commit: &str| {
        let mut app = doc(&w, commit, Duration::from_millis(400));
        app.env("HEALTH_FAIL_FILE", &fail.display().to_string());
        app
    };
    w.commit_app(&with_fail_file(&v1));
    let d = w.start(&[]);
    w.wait_record("revision 1 healthy", 90, &d, |r| r.phase == Phase::Ready);
    // Something outside the app breaks every version, for good.
    std::fs::write(&fail, "1.0.0 2.0.0").unwrap();
    w.wait_record(
        "revision 1 failing failureThreshold rounds in a row",
        60,
        &d,
        |r| {
            r.phase == Phase::Degraded
                && r.health
                    .as_ref()
                    .is_some_and(|h| h.revision == 1 && h.consecutive_failures >= 3)
        },
    );
    let v2 = w.commit_app_version("2.0.0");
    w.commit_app(&with_fail_file(&v2));
    let rec = w.wait_record("revision 2 not blamed", 120, &d, |r| {
        r.revision(2).is_some_and(|e| e.not_blamed)
    });
    assert_eq!(rec.live_revision, Some(2));
    assert_eq!(rec.phase, Phase::Degraded);
    let m = &rec.revision(2).unwrap().revision.message;
    assert!(
        m.contains("the live revision 1 failed ")
            && m.contains(" rounds in a row since ")
            && m.contains("api: status 503"),
        "the evidence is named: {m}"
    );
    assert!(
        m.contains("revision 2 FAILED EVERY ROUND of its verification"),
        "{m}"
    );
    assert!(
        healthy_message(&rec).contains("FAILED EVERY ROUND"),
        "{rec:?}"
    );
}

#[test]
fn a_check_typo_re_verifies_without_touching_pm2_is_not_reverted_and_its_fix_clears_degraded() {
    let w = World::new("typo");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, Duration::from_millis(400)));
    let d = w.start(&[]);
    w.wait_record("revision 1 healthy", 90, &d, |r| r.phase == Phase::Ready);
    // A second healthy revision, so that a revert would have somewhere to go.
    let v2 = w.commit_app_version("2.0.0");
    let good = doc(&w, &v2, Duration::from_millis(400));
    w.commit_app(&good);
    let rec = w.wait_record("revision 2 healthy", 90, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(2)
    });
    let steps_run = rec.steps_run;
    let before = pm2_processes(&w);
    assert!(!before.is_empty());

    // A config commit that changes only the check's port (a typo).
    let mut typo = good.clone();
    let wrong = common::free_port();
    typo.spec.health.checks[0].http_mut().unwrap().url =
        format!("http://127.0.0.1:{wrong}/api/health");
    let log = w.store().app_dir("typo").join("logs/revision-2.log");
    let logged = std::fs::read_to_string(&log).unwrap().len();
    let typo_config = w.commit_app(&typo);
    let rec = w.wait_record("the typo re-verified and Degraded", 90, &d, |r| {
        r.desired_config_commit.as_deref() == Some(typo_config.as_str())
            && r.revision(2).is_some_and(|e| e.suspect_checks == ["api"])
            && r.phase == Phase::Degraded
    });
    // The revision's steps since: one verification, nothing else (passes since ran none).
    assert_eq!(rec.steps_run, steps_run + 1, "one step in all");
    let text = std::fs::read_to_string(&log).unwrap();
    let steps: Vec<&str> = text[logged..]
        .lines()
        .filter(|l| l.starts_with("== "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        steps,
        vec!["verify"],
        "only a verification:\n{}",
        &text[logged..]
    );
    assert_eq!(rec.revisions.len(), 2, "no new revision");
    assert_eq!(rec.live_revision, Some(2));
    assert!(rec.quarantined.is_empty(), "{:?}", rec.quarantined);
    // The live revision nothing touched stays Healthy (still the last good revision).
    assert_eq!(outcome(&rec, 2), Some(Outcome::Healthy), "{rec:?}");
    assert!(!rec.revision(2).unwrap().not_blamed);
    // Degraded, naming the suspect check (the re-verification's message, or a later
    // pass's that settles).
    let m = healthy_message(&rec);
    assert!(
        m.contains("check api") && m.contains("suspect") && !m.contains("reverted to"),
        "{m}"
    );
    assert!(
        rec.last_pass.as_ref().unwrap().result.contains("check api"),
        "{rec:?}"
    );
    // The monitor probes the new (wrong) check and shows it failing, but leaves the suspect
    // check out of its streak (never evidence, never a regression); no revert, no process
    // touched, however many rounds it fails.
    let api_fails = |r: &shipshape::state::AppRecord| {
        r.health.as_ref().is_some_and(|h| {
            h.results
                .iter()
                .any(|c| c.name == "api" && c.state == shipshape_spec::status::ProbeState::Fail)
        })
    };
    let rec = w.wait_record("rounds of the typo", 60, &d, |r| {
        api_fails(r)
            && r.health
                .as_ref()
                .is_some_and(|h| h.revision == 2 && h.consecutive_passes >= 6)
    });
    assert_eq!(rec.health.as_ref().unwrap().consecutive_failures, 0);
    assert_eq!(outcome(&rec, 2), Some(Outcome::Healthy));
    assert_eq!(rec.phase, Phase::Degraded);
    assert!(healthy_message(&rec).contains("suspect"), "{rec:?}");
    assert_eq!(rec.live_revision, Some(2));
    assert_eq!(rec.revisions.len(), 2);
    assert!(rec.regression.is_none());
    assert_eq!(outcome(&rec, 1), Some(Outcome::Healthy));
    assert_eq!(pm2_processes(&w), before, "a check typo touched pm2");
    let status = w.shipshape(&["status", "typo"], &[]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("Fail"), "{status}");

    // The fix: the next config commit puts the port back. Ready again within a few
    // rounds, with no new app commit and no process touched.
    let fix_config = w.commit_app(&good);
    let steps_run = rec.steps_run;
    let rec = w.wait_record("the fix re-verified and Ready", 30, &d, |r| {
        r.desired_config_commit.as_deref() == Some(fix_config.as_str()) && r.phase == Phase::Ready
    });
    assert_eq!(outcome(&rec, 2), Some(Outcome::Healthy));
    assert_eq!(rec.revisions.len(), 2);
    assert_eq!(
        rec.steps_run,
        steps_run + 1,
        "one verification, nothing else"
    );
    assert_eq!(pm2_processes(&w), before, "fixing a check touched pm2");
    // And it stays Ready, its rounds passing.
    let rec = w.wait_record("passing rounds after the fix", 30, &d, |r| {
        r.health
            .as_ref()
            .is_some_and(|h| h.passing && h.consecutive_passes >= 3)
    });
    assert_eq!(rec.phase, Phase::Ready);
}

#[test]
fn a_rollouts_own_reload_is_not_a_crash_for_the_monitors_next_round() {
    let w = World::new("reload");
    let v1 = w.app_head();
    // failureThreshold 1: a single failed monitor round would be a regression.
    let mut strict = w.app(&v1);
    strict
        .health(Duration::from_millis(300), 2, 1, Duration::from_secs(30))
        .rollback(true, Duration::from_secs(600));
    w.commit_app(&strict);
    let d = w.start(&[]);
    w.wait_record("revision 1 healthy", 90, &d, |r| r.phase == Phase::Ready);
    // Let the monitor take its restart baseline of revision 1's processes.
    w.wait_record("monitor rounds of revision 1", 30, &d, |r| {
        r.health
            .as_ref()
            .is_some_and(|h| h.revision == 1 && h.consecutive_passes >= 2)
    });
    // Revision 2 reloads them: pm2 counts a restart of every instance.
    let restarts = |w: &World| -> u64 { pm2_processes(w).values().map(|(_, r)| *r).sum() };
    let before = restarts(&w);
    let v2 = w.commit_app_version("2.0.0");
    let mut next = strict.clone();
    next.spec.source.commit = v2.clone();
    w.commit_app(&next);
    w.wait_record("revision 2 healthy", 90, &d, |r| {
        r.live_revision == Some(2) && outcome(r, 2) == Some(Outcome::Healthy)
    });
    assert!(restarts(&w) > before, "the reload counted no restart");
    // The monitor's rounds after the reload pass: the reload is not a crash.
    let rec = w.wait_record("passing monitor rounds of revision 2", 60, &d, |r| {
        r.health
            .as_ref()
            .is_some_and(|h| h.revision == 2 && h.consecutive_passes >= 5)
            || r.live_revision != Some(2)
    });
    assert_eq!(
        rec.live_revision,
        Some(2),
        "a reload was taken for a crash: {:?}",
        rec.revision(2).map(|r| &r.revision.message)
    );
    assert_eq!(outcome(&rec, 2), Some(Outcome::Healthy));
    assert!(rec.regression.is_none());
    assert_eq!(rec.phase, Phase::Ready);
}

#[test]
fn a_suspect_check_that_starts_passing_by_itself_is_cleared_and_the_app_is_ready_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let w = World::new("selfheal");
    let v1 = w.app_head();
    let good = doc(&w, &v1, Duration::from_millis(400));
    w.commit_app(&good);
    let d = w.start(&[]);
    w.wait_record("revision 1 healthy", 90, &d, |r| r.phase == Phase::Ready);
    let before = pm2_processes(&w);
    // The changed check points at another service, which is down (503) at first.
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let other = common::stub::Stub::start(move |_| {
        Some(if flag.load(Ordering::SeqCst) {
            common::stub::answer("200 OK", &[], r#"{"status":"ok"}"#)
        } else {
            common::stub::answer("503 Service Unavailable", &[], "down")
        })
    });
    let mut moved = good.clone();
    moved.spec.health.checks[0].http_mut().unwrap().url =
        format!("http://127.0.0.1:{}/api/health", other.port);
    let moved_config = w.commit_app(&moved);
    let rec = w.wait_record("the changed check suspect, Degraded", 90, &d, |r| {
        r.desired_config_commit.as_deref() == Some(moved_config.as_str())
            && r.revision(1).is_some_and(|e| e.suspect_checks == ["api"])
            && r.phase == Phase::Degraded
    });
    let steps_run = rec.steps_run;
    // The other service comes up; no config commit. The monitor sees the suspect check
    // pass, clears it, and the next pass makes the app Ready, touching nothing.
    up.store(true, Ordering::SeqCst);
    let rec = w.wait_record("the suspicion cleared and Ready", 60, &d, |r| {
        r.revision(1).is_some_and(|e| e.suspect_checks.is_empty()) && r.phase == Phase::Ready
    });
    assert_eq!(outcome(&rec, 1), Some(Outcome::Healthy));
    assert_eq!(rec.revisions.len(), 1, "no new revision");
    assert_eq!(rec.steps_run, steps_run, "a step ran");
    assert_eq!(pm2_processes(&w), before, "pm2 was touched");
    assert!(!other.seen().is_empty());
}

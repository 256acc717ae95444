//! `resources` checks with the controller running as a daemon: a rollout whose app leaks
//! memory past `maxMemory` fails on the check and is reverted, while a healthy app's
//! figures pass; and pm2's own facts (a process that restarted) still fail a rollout
//! beside a resources check that passes. Real git, pm2 and the example app.

mod common;

use common::{AppEdit, World};
use shipshape_spec::status::{Outcome, Phase, ProbeState};

/// The resources check: 120 MiB per instance (the example app holds ~50 MiB).
fn resources_check() -> shipshape_spec::app::Check {
    serde_json::from_value(serde_json::json!({
        "name": "resources",
        "resources": { "maxMemory": "120M" }
    }))
    .expect("a valid resources check")
}

/// The world's document with the resources check beside the `api` check.
fn doc(w: &World, commit: &str) -> shipshape_spec::App {
    let mut app = w.app(commit);
    app.spec.health.checks.push(resources_check());
    app
}

/// `doc` for a rollout that must not be declared healthy before its fault shows:
/// `successThreshold` passing rounds in a row take longer than the fault needs to appear,
/// and the deadline comes soon after.
fn slow_to_trust(
    mut app: shipshape_spec::App,
    success_threshold: u32,
    deadline_secs: u64,
) -> shipshape_spec::App {
    app.spec.health.success_threshold = success_threshold;
    app.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(deadline_secs);
    app
}

fn outcome(rec: &shipshape::state::AppRecord, n: u64) -> Option<Outcome> {
    rec.revision(n).map(|r| r.revision.outcome)
}

/// The monitor's last `resources` result for revision `n`, if it passed.
fn resources_passing(rec: &shipshape::state::AppRecord, n: u64) -> Option<String> {
    let h = rec.health.as_ref().filter(|h| h.revision == n)?;
    let r = h.results.iter().find(|r| r.name == "resources")?;
    (r.state == ProbeState::Pass).then(|| r.detail.clone())
}

#[test]
fn a_rollout_that_leaks_past_max_memory_fails_on_the_resources_check_and_is_reverted() {
    let w = World::new("leaky");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });
    // Between rollouts the monitor reads real figures from pm2 (zeros would be
    // inconclusive, and v1 would never have been healthy).
    let rec = w.wait_record("v1's resources check passing in the monitor", 30, &d, |r| {
        resources_passing(r, 1).is_some()
    });
    let detail = resources_passing(&rec, 1).unwrap();
    assert!(
        detail.contains("2 instance(s) within maxMemory 120 MiB"),
        "{detail}"
    );

    // v2: a new app commit that leaks 60 MiB per second per instance (past 120 MiB in
    // about a second). 20 passing rounds 300 ms apart would take 6 s: it cannot be trusted
    // before it leaks.
    let v2 = w.commit_app_version("2.0.0");
    let mut leaking = slow_to_trust(doc(&w, &v2), 20, 10);
    leaking
        .env("LEAK_MB_PER_SEC", "60")
        .env("LEAK_MAX_MB", "300");
    let bad_config = w.commit_app(&leaking);
    let rec = w.wait_record("revision 2 reverted", 90, &d, |r| {
        outcome(r, 2) == Some(Outcome::Reverted)
    });
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    let message = &rec.revision(2).unwrap().revision.message;
    assert!(
        message.contains("resources: pm2 leaky-web (id")
            && message.contains("over maxMemory 120 MiB"),
        "{message}"
    );
    let q = rec
        .quarantined
        .iter()
        .find(|q| q.config_commit == bad_config)
        .expect("quarantined");
    assert!(
        q.reason.contains("resources: pm2 leaky-web (id")
            && q.reason.contains("over maxMemory 120 MiB"),
        "{}",
        q.reason
    );
    let status = w.shipshape(&["status", "leaky"], &[]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("quarantined config") && status.contains("over maxMemory 120 MiB"),
        "{status}"
    );

    // v1's processes replaced v2's leaking ones: the check passes again.
    let rec = w.wait_record("v1's resources check passing again", 30, &d, |r| {
        r.live_revision == Some(1) && resources_passing(r, 1).is_some()
    });
    assert_eq!(rec.revisions.len(), 2, "the quarantined revision came back");
}

#[test]
fn a_process_that_restarts_fails_a_rollout_beside_a_passing_resources_check() {
    let w = World::new("crashonce");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });

    // v2: the first of its instances to answer its third health probe exits right after
    // answering it (pm2 restarts it; the marker file keeps the restarted one up). Probes
    // come from verification only, after it took its restart baseline: every round after
    // the crash fails on the restart, whatever the resources check says. By the fifth probe
    // one of the two instances has answered three, so 8 passing rounds in a row cannot come
    // first.
    let marker = w.root().join("crashed-once");
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let crashing = server
        .replace(
            "const server = http.createServer(",
            "let healthServed = 0;\nconst server = http.createServer(",
        )
        .replace(
            "  if (req.url === '/metrics') {",
            &format!(
                "  if (req.url === '/api/health' && ++healthServed === 3) {{\n    try {{\n      fs.writeFileSync({:?}, String(process.pid), {{ flag: 'wx' }});\n      res.on('finish', () => process.exit(1));\n    }} catch (e) {{}}\n  }}\n  if (req.url === '/metrics') {{",
                marker.display().to_string()
            ),
        );
    assert_eq!(crashing.matches("healthServed").count(), 2, "{crashing}");
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(
        &[("server.js", &crashing)],
        "v2 exits once, on an instance's third health probe",
    );
    w.commit_app(&slow_to_trust(doc(&w, &v2), 8, 6));
    let rec = w.wait_record("revision 2 reverted", 90, &d, |r| {
        outcome(r, 2) == Some(Outcome::Reverted)
    });
    assert!(marker.exists(), "v2 never ran its crash");
    let message = &rec.revision(2).unwrap().revision.message;
    assert!(
        message.contains("pm2 crashonce-web (id") && message.contains("restarted 1 time(s)"),
        "{message}"
    );
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
}

//! What a stream of failing commits leaves behind is bounded: 40 config commits whose
//! builds fail give the newest 20 quarantine entries (the rest counted and said), no more
//! revision logs than revisions in the history, and one unsealed release directory (the
//! newest failed build's, kept for a person to look at until the next rollout ends).
//!
//! Real parts: git repos, the controller binary (`run --once`), pm2, real (failing) builds.

mod common;

use common::World;
use shipshape::state::QUARANTINE_KEEP;

#[test]
fn forty_failing_commits_leave_bounded_quarantine_and_logs_and_only_the_newest_unsealed_release() {
    let w = World::new("prune");
    for n in 1..=40 {
        // A new app commit each time: each failed build has its own release directory.
        let head = w.commit_app_version(&format!("1.0.{n}"));
        let mut app = w.app(&head);
        app.spec.build.install = None;
        app.spec.build.steps = vec![format!("echo failing build {n}; exit 1")];
        w.commit_app(&app);
        let _ = w.run_once();
        let rec = w.record();
        assert!(
            rec.quarantined.len() <= QUARANTINE_KEEP,
            "after {n} failed commits: {} quarantine entries",
            rec.quarantined.len()
        );
    }
    let rec = w.record();
    assert_eq!(rec.quarantined.len(), QUARANTINE_KEEP);
    assert_eq!(rec.quarantine_dropped, 40 - QUARANTINE_KEEP as u64);
    let newest = rec.revisions.last().unwrap();
    assert!(
        rec.is_quarantined(&newest.revision.config_commit),
        "the newest failed commit is not quarantined"
    );

    let logs: Vec<String> = std::fs::read_dir(w.store().app_dir(&w.name).join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        logs.len() <= rec.revisions.len() && rec.revisions.len() <= 20,
        "{} logs for {} revisions: {logs:?}",
        logs.len(),
        rec.revisions.len()
    );
    for r in &rec.revisions {
        assert!(
            logs.contains(&format!("revision-{}.log", r.revision.number)),
            "revision {}'s log was removed while it is in the history",
            r.revision.number
        );
    }

    let releases = shipshape::release::Layout::new(w.releases_root())
        .scan()
        .unwrap();
    // Only the newest failed build's directory is left (for a person to look at); each
    // earlier one was removed by the pass after it.
    let unsealed: Vec<&String> = releases
        .iter()
        .filter(|(_, m)| m.is_none())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        unsealed,
        [&w.app_head()],
        "unsealed release directories left"
    );

    let out = w.shipshape(&["status", &w.name], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = text
        .lines()
        .filter(|l| l.trim_start().starts_with("quarantined"))
        .count();
    assert_eq!(lines, QUARANTINE_KEEP + 1, "{text}");
    assert!(
        text.contains("quarantined 20 older entries dropped (the newest 20 are kept)"),
        "{text}"
    );
}

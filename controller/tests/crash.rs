//! Crash safety: the controller SIGKILLs itself (fault injection, `SHIPSHAPE_FAULT`) at
//! every step boundary of a rollout and of a revert; a restart finishes the job, the
//! records say what happened, and the app never serves a half-built release.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::World;
use shipshape_spec::status::{Outcome, Phase};

/// Records every distinct answer of `/version` while it runs.
struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<String>>>,
}

impl Watcher {
    fn start(port: u16) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let (s, seen2) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(v) = common::get_port(port, "/version") {
                    seen2.lock().unwrap().insert(v);
                }
                std::thread::sleep(Duration::from_millis(15));
            }
        });
        Watcher { stop, seen }
    }
    fn seen(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn killed_at(w: &World, fault: &str) -> String {
    let out = w.shipshape(&["run", "--once"], &[("SHIPSHAPE_FAULT", fault)]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{fault}: the controller was not killed there:\n{log}"
    );
    assert!(log.contains("fault injection"), "{log}");
    log
}

#[test]
fn a_controller_killed_at_any_step_boundary_of_a_rollout_finishes_it_after_a_restart() {
    let w = World::new("killed");
    // A real dependency: each new release reuses the live one's node_modules (without one
    // the plan installs instead, and the reuse-deps boundary would never be reached).
    let v1 = w.add_local_dependency();
    w.commit_config(&w.document(&v1));
    assert_eq!(w.run_once().0, 0);
    let watcher = Watcher::start(w.port);
    let boundaries = [
        "before:fetch",
        "after:fetch",
        "after:reuse-deps",
        "after:build",
        "after:switch",
        "after:pm2-reload",
        "after:pm2-save",
        "before:verify",
    ];
    let mut built = BTreeSet::from(["1.0.0".to_string()]);
    for (i, fault) in boundaries.iter().enumerate() {
        let version = format!("1.{}.0", i + 1);
        let commit = w.commit_app_version(&version);
        w.commit_config(&w.document(&commit));
        killed_at(&w, fault);
        let journal = w.state_dir().join("apps/killed/inflight.json");
        assert!(
            journal.exists(),
            "{fault}: no journal of the interrupted pass"
        );
        let (code, log) = w.run_once();
        assert_eq!(code, 0, "{fault}: the restart did not converge:\n{log}");
        assert!(
            log.contains("resuming: the controller stopped during revision"),
            "{fault}: {log}"
        );
        assert!(!journal.exists(), "{fault}: the journal was not closed");
        assert_eq!(w.current().as_deref(), Some(commit.as_str()), "{fault}");
        assert_eq!(
            w.get("/version").as_deref(),
            Some(version.as_str()),
            "{fault}"
        );
        let rec = w.record();
        assert_eq!(rec.phase, Phase::Ready, "{fault}");
        assert_eq!(
            rec.last_attempted().unwrap().revision.outcome,
            Outcome::Healthy,
            "{fault}"
        );
        assert_eq!(
            rec.last_attempted().unwrap().revision.app_commit,
            commit,
            "{fault}"
        );
        built.insert(version);
    }
    let seen = watcher.seen();
    assert!(
        seen.is_subset(&built),
        "served something not fully built: {seen:?} vs {built:?}"
    );
    assert!(!seen.contains("unbuilt"));
}

#[test]
fn a_controller_killed_at_any_step_boundary_of_a_revert_finishes_it_after_a_restart() {
    let w = World::new("revkill");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    assert_eq!(w.run_once().0, 0);
    let watcher = Watcher::start(w.port);
    // The revert of a revision with HEALTH_FAIL set: switch back, replace (the variable must
    // go), save, verify. The first switch/save/verify belong to the rollout.
    let boundaries = [
        "before:switch:2",
        "after:switch:2",
        "after:pm2-replace",
        "after:pm2-save:2",
        "before:verify:2",
    ];
    for (i, fault) in boundaries.iter().enumerate() {
        let bad = w.commit_app_version(&format!("9.{i}.0"));
        let doc = w
            .document(&bad)
            .replace("        PORT:", "        HEALTH_FAIL: \"1\"\n        PORT:")
            .replace("progressDeadline: 20s", "progressDeadline: 2s");
        let bad_config = w.commit_config(&doc);
        killed_at(&w, fault);
        let (code, log) = w.run_once();
        assert_eq!(
            code, 1,
            "{fault}: the desired revision is bad, so not Ready:\n{log}"
        );
        let rec = w.record();
        assert!(
            rec.is_quarantined(&bad_config),
            "{fault}: the bad revision is not quarantined"
        );
        assert_eq!(
            w.current().as_deref(),
            Some(v1.as_str()),
            "{fault}: not back on v1"
        );
        assert_eq!(w.get("/version").as_deref(), Some("1.0.0"), "{fault}");
        let bad_rev = rec
            .revisions
            .iter()
            .find(|r| r.revision.config_commit == bad_config)
            .unwrap();
        assert!(
            matches!(
                bad_rev.revision.outcome,
                Outcome::Reverted | Outcome::Failed
            ),
            "{fault}: {:?}",
            bad_rev.revision
        );
        // Nothing loops: another pass runs no step.
        w.run_once();
        assert!(
            w.record().last_pass.unwrap().steps.is_empty(),
            "{fault}: the bad revision was re-applied"
        );
    }
    let seen = watcher.seen();
    assert!(!seen.contains("unbuilt"), "{seen:?}");
}

//! `shipshape plan` and a pass agree by construction (issue 19): both run the same
//! preparation (`Controller::prepare`), so on every state — a plain rollout, a no-op, a
//! verification to redo, a crash that left its in-flight journal, a change of only
//! `spec.health`, a pin from the document and its removal, a quarantine, and drift while
//! held — the steps `plan -o json` shows (kind and reason, in order) are exactly the steps
//! the next pass runs, and its exit code says whether there are any. Real git, real pm2,
//! the example app.

mod common;

use common::World;
use shipshape::reconcile::journal::JournalFile;
use shipshape_spec::app::DocumentPin;
use shipshape_spec::status::{Outcome, StepKind};

/// A step as `plan` shows it and as a pass records it: (kind, reason).
type Shown = Vec<(String, String)>;

/// `plan -o json` for the world's app: its exit code and steps.
fn planned(w: &World) -> (i32, Shown) {
    let out = w.shipshape(&["plan", "-o", "json"], &[]);
    let code = out.status.code().unwrap_or(-1);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plan -o json: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let steps = json[0]["plan"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("plan -o json has no steps: {json}"))
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (field("kind"), field("reason"))
        })
        .collect();
    (code, steps)
}

/// The steps the last pass ran.
fn executed(w: &World) -> Shown {
    let rec = w.record();
    let pass = rec.last_pass.expect("a pass was recorded");
    pass.steps
        .iter()
        .map(|s| (s.step.to_string(), s.reason.clone()))
        .collect()
}

/// Plan, then run one pass: the pass runs exactly the planned steps, `plan` exits 2 when
/// there are steps and 0 when there are none, and the pass succeeds (exit 0) when
/// `succeeds`. Returns the steps.
fn plan_then_pass(w: &World, what: &str, succeeds: bool) -> Shown {
    let (code, plan) = planned(w);
    let (run, log) = w.run_once();
    let ran = executed(w);
    assert_eq!(
        plan, ran,
        "{what}: plan showed one thing, the pass ran another\n{log}"
    );
    let want = if plan.is_empty() { 0 } else { 2 };
    assert_eq!(code, want, "{what}: plan's exit code for {plan:?}");
    assert_eq!(run == 0, succeeds, "{what}: the pass exited {run}\n{log}");
    plan
}

fn kinds(steps: &Shown) -> Vec<&str> {
    steps.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn plan_shows_exactly_the_steps_the_next_pass_runs_in_every_state() {
    let w = World::new("agree");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let first = plan_then_pass(&w, "first rollout", true);
    assert!(kinds(&first).contains(&"pm2-start"), "{first:?}");
    assert!(plan_then_pass(&w, "no-op", true).is_empty());

    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document(&v2));
    let rollout = plan_then_pass(&w, "plain rollout", true);
    assert!(kinds(&rollout).contains(&"switch"), "{rollout:?}");
    assert_eq!(w.record().live_revision, Some(2));

    // A verification that did not finish (a newer document came and went): verify again.
    let store = w.store();
    let mut rec = w.record();
    rec.revision_mut(2).unwrap().revision.outcome = Outcome::Superseded;
    store.save(&rec).unwrap();
    let redo = plan_then_pass(&w, "a verification to redo", true);
    assert_eq!(kinds(&redo), ["verify"]);
    assert_eq!(
        w.record().revision(2).unwrap().revision.outcome,
        Outcome::Healthy
    );

    // A controller killed after revision 2's reload: the records say Progressing (saved
    // before the steps ran), the journal what it did. The pass finishes what is missing.
    let mut rec = w.record();
    rec.revision_mut(2).unwrap().revision.outcome = Outcome::Progressing;
    store.save(&rec).unwrap();
    let journal = JournalFile::new(&store.app_dir(&w.name));
    let planned_steps = vec![
        StepKind::Switch,
        StepKind::Pm2Reload,
        StepKind::Pm2Save,
        StepKind::Verify,
    ];
    journal.begin(2, planned_steps).unwrap();
    let release = w.record().revision(2).unwrap().release.clone();
    journal.step_done(StepKind::Switch, &release).unwrap();
    let web = format!("{}-web", w.name);
    journal.step_done(StepKind::Pm2Reload, &web).unwrap();
    let resumed = plan_then_pass(&w, "after a crash with a journal", true);
    assert_eq!(kinds(&resumed), ["pm2-save", "verify"]);
    assert!(journal.read().is_none(), "the pass closed the journal");

    // A config commit that changes only spec.health: the live release is re-verified.
    let mut checks = w.app(&v2);
    checks.spec.health.success_threshold = 3;
    w.commit_app(&checks);
    let recheck = plan_then_pass(&w, "a change of only spec.health", true);
    assert_eq!(kinds(&recheck), ["verify"]);
    assert!(
        recheck[0].1.contains("only spec.health changed"),
        "{recheck:?}"
    );

    // The document pins v1's revision: both go back to it; unpinned, both go to v2 again.
    let mut pinned = checks.clone();
    pinned.spec.pin = Some(DocumentPin {
        reason: "change freeze".into(),
        by: Some("ana".into()),
        app_commit: Some(v1.clone()),
    });
    w.commit_app(&pinned);
    let to_pin = plan_then_pass(&w, "pinned by the document", true);
    assert!(kinds(&to_pin).contains(&"switch"), "{to_pin:?}");
    assert_eq!(w.record().live_revision, Some(1));
    assert!(plan_then_pass(&w, "pinned, nothing to do", true).is_empty());
    w.commit_app(&checks);
    let unpinned = plan_then_pass(&w, "unpinned", true);
    assert!(kinds(&unpinned).contains(&"switch"), "{unpinned:?}");
    assert_eq!(w.record().live().unwrap().revision.app_commit, v2);

    // A broken v3 fails and is reverted: its config commit is quarantined and held.
    let v3 = w.commit_app_files(&[("server.js", &broken_server(&w))], "v3 answers 500");
    let bad = w.commit_config(&w.document(&v3));
    assert_ne!(w.run_once().0, 0, "v3 fails");
    assert!(w.record().is_quarantined(&bad));
    assert!(plan_then_pass(&w, "quarantined, holding", false).is_empty());
    // Drift while held: a process stopped is repaired towards the held revision.
    common::pm2::pm2_cli(&w.pm2_home(), "", &["stop", &web]);
    let repair = plan_then_pass(&w, "drift while held", false);
    assert!(!repair.is_empty(), "the stopped process is repaired");
    assert!(
        !kinds(&repair).contains(&"fetch"),
        "no rollout of v3: {repair:?}"
    );
}

/// The example app's server.js answering 500 to everything.
fn broken_server(w: &World) -> String {
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let from = "res.writeHead(ok ? 200 : 503";
    assert!(server.contains(from), "server.js has no {from:?}");
    server.replacen(from, "res.writeHead(500", 1)
}

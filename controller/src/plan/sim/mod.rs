//! The planner's property test, against a simulated server.
//!
//! The simulation models what the planner's steps act on as those things behave, and is
//! written without the planner's helpers (`ecosystem_entry`, `expected_instances`,
//! `hooks_hash`, `build_inputs`, `deps_inputs`):
//!
//! - **pm2**: `startOrReload` starts a missing process from its ecosystem entry (instances —
//!   a count, `max` or 0 for one per CPU —, exec_mode, script and env exactly) and otherwise
//!   *reloads* it as pm2 does: the new env is merged into the old one (a variable no longer
//!   declared survives), a stopped instance is started again, and the instance count,
//!   exec_mode and script stay what they were at start. `delete` removes every instance of
//!   a name, `save` writes the dump, a reboot resurrects the dump. A process runs the code of
//!   the release `current` pointed at when it last (re)started.
//! - **releases**: fetch writes the commit's tree (with that commit's lockfile) into a fresh
//!   directory; install records what `node_modules` was installed from (a lockfile without
//!   dependencies leaves no `node_modules` at all, as npm does); reuse-deps copies another
//!   release's `node_modules`, and one from a release that has none is a fault (the executor
//!   fails the step); build records the steps it ran; a release is sealed after its last
//!   preparation step.
//! - **the database** (its level and the backups taken) and **the hooks** run since `current`
//!   last changed, with the release each ran in.
//!
//! Each planned step is applied as the executor applies it: the simulated pm2 is handed the
//! executor's ecosystem file, a release is sealed with the executor's marker, and the hooks
//! record is the executor's — those are the controller's own writes, which the planner reads
//! back. Convergence is judged against the document directly ([`Server::problems`]), and a
//! second plan must then be empty. pm2's dump must list what runs, except for what a hand
//! deleted without `pm2 save` and nothing started again since: the controller does not read
//! the dump, so that difference stays the hand's until the next save or reboot.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use proptest::prelude::*;
use shipshape_spec::App;
use shipshape_spec::app::{EnvValue, ExecMode, Instances};

use super::{MigrationState, Observed, Plan, Step, plan};
use crate::envfile::EnvFile;
use crate::execute;
use crate::pm2::{Instance, Status};
use crate::release::BuildMarker;

mod check;
mod history;
mod pm2;
mod server;

use history::{Doc, any_history, server_for};
use server::Server;

pub(super) const C1: &str = "1111111111111111111111111111111111111111";
pub(super) const C2: &str = "2222222222222222222222222222222222222222";
pub(super) const C3: &str = "3333333333333333333333333333333333333333";
pub(super) const ROOT: &str = "/srv/demo";
/// The hash of a lockfile that lists no dependencies: its install writes no `node_modules`.
pub(super) const NO_DEPS: &str = "eeeeeeeeeeee";

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Through a history of documents, with drift between them, each plan applied to the
    /// simulated server leaves it as the document declares, and nothing more to do.
    #[test]
    fn each_plan_converges_a_simulated_server_to_its_document(h in any_history()) {
        let mut server = server_for(&h);
        for (n, (drift, doc)) in h.docs.iter().enumerate() {
            for d in drift {
                server.drift(d);
            }
            let app = doc.app();
            let before = server.clone();
            let first = plan(&app, &server.observe(&app));
            prop_assert!(
                first.blockers.is_empty(),
                "document {n} {doc:?}: blockers {:?}\nserver: {before:#?}", first.blockers
            );
            server.apply(&app, &first);
            let problems = server.problems(&app);
            prop_assert!(
                problems.is_empty(),
                "document {n} {doc:?} not converged:\n  {}\nplan:\n{first}\nserver before: {before:#?}\nserver after: {server:#?}",
                problems.join("\n  ")
            );
            let second = plan(&app, &server.observe(&app));
            prop_assert!(
                second.steps.is_empty(),
                "document {n} {doc:?}: a second plan is not empty\nfirst plan:\n{first}\nsecond plan:\n{second}\nserver: {server:#?}"
            );
        }
    }

    /// Planning twice against the same server gives the same plan.
    #[test]
    fn planning_is_deterministic(h in any_history()) {
        let mut server = server_for(&h);
        for (drift, doc) in &h.docs {
            for d in drift {
                server.drift(d);
            }
            let app = doc.app();
            let obs = server.observe(&app);
            prop_assert_eq!(plan(&app, &obs), plan(&app, &obs));
            let p = plan(&app, &obs);
            server.apply(&app, &p);
        }
    }
}

/// The simulation itself behaves as pm2 does: a reload keeps a removed variable and the
/// instance count; only a replace drops them. (If this failed, the property above would
/// prove nothing about reload versus replace.)
#[test]
fn the_simulated_pm2_keeps_removed_env_and_instances_on_reload() {
    let doc = Doc {
        greeting: Some("hi"),
        instances: Some(Some(2)),
        cluster: Some(true),
        install: true,
        build_steps: 1,
        hooks: 1,
        ..plain(C1)
    };
    let repo = BTreeMap::from([(C1.to_string(), Some("aaaaaaaaaaaa".to_string()))]);
    let mut server = Server::new(2, repo, None);
    let with = doc.app();
    let p = plan(&with, &server.observe(&with));
    server.apply(&with, &p);
    assert_eq!(server.problems(&with), Vec::<String>::new());

    let without = Doc {
        greeting: None,
        instances: Some(Some(3)),
        ..doc
    }
    .app();
    let reload = Plan {
        release: p.release.clone(),
        steps: vec![super::PlannedStep {
            step: Step::Pm2Reload {
                process: "web".into(),
            },
            reason: "a reload where a replace is needed".into(),
        }],
        blockers: vec![],
        notes: vec![],
    };
    let mut reloaded = server.clone();
    reloaded.apply(&without, &reload);
    let problems = reloaded.problems(&without).join("\n");
    assert!(
        problems.contains("2 instances, the document 3"),
        "{problems}"
    );
    assert!(problems.contains("extra: [\"GREETING\"]"), "{problems}");

    let replace = Plan {
        steps: vec![
            super::PlannedStep {
                step: Step::Pm2Replace {
                    process: "web".into(),
                },
                reason: "replace".into(),
            },
            super::PlannedStep {
                step: Step::Pm2Save,
                reason: "save".into(),
            },
        ],
        ..reload
    };
    server.apply(&without, &replace);
    assert_eq!(server.problems(&without), Vec::<String>::new());
}

/// Someone else's process that was deleted by hand is still theirs when a reboot brings it
/// back from their saved dump: the oracle must not count it as ours (the shrunk case a
/// mutation run saved: foreign, deleted by hand, reboot).
#[test]
fn someone_elses_process_resurrected_by_a_reboot_is_still_theirs() {
    let doc = Doc {
        instances: Some(Some(1)),
        cluster: Some(false),
        ..plain(C1)
    };
    let repo = BTreeMap::from([(C1.to_string(), Some("aaaaaaaaaaaa".to_string()))]);
    let mut server = Server::new(2, repo, None);
    let app = doc.app();
    let p = plan(&app, &server.observe(&app));
    server.apply(&app, &p);
    server.drift(&history::Drift::Foreign);
    let theirs = server
        .pm2
        .iter()
        .position(|p| p.name == "someone-elses")
        .expect("the foreign process runs");
    server.drift(&history::Drift::DeleteByHand(theirs));
    assert!(server.pm2.iter().all(|p| p.name != "someone-elses"));
    server.drift(&history::Drift::Reboot);
    assert!(
        server.pm2.iter().any(|p| p.name == "someone-elses"),
        "their dump brings it back"
    );
    let p = plan(&app, &server.observe(&app));
    server.apply(&app, &p);
    assert_eq!(server.problems(&app), Vec::<String>::new());
}

/// Run `h` through the planner and the simulated server; each document's problems.
fn run(server: &mut Server, h: &history::History) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (drift, doc) in &h.docs {
        for d in drift {
            server.drift(d);
        }
        let app = doc.app();
        let p = plan(&app, &server.observe(&app));
        server.apply(&app, &p);
        out.push(server.problems(&app));
    }
    out
}

/// A document of `commit` with nothing optional: `web` from `server.js` (no `instances`, no
/// `exec_mode`), no env file, level, greeting, install, build steps, hooks or worker. A
/// test sets what it needs with `..plain(C)`.
fn plain(commit: &'static str) -> Doc {
    Doc {
        commit,
        level: None,
        env_file: false,
        greeting: None,
        instances: None,
        cluster: None,
        script: "server.js",
        install: false,
        build_steps: 0,
        hooks: 0,
        worker: false,
    }
}

/// A history of `docs` (each after its drift) on one CPU, no lockfiles, no env file.
fn one_cpu(docs: Vec<(Vec<history::Drift>, Doc)>) -> history::History {
    history::History {
        cpus: 1,
        lockfiles: [None, None, None],
        env_file: None,
        docs,
    }
}

/// A process of ours deleted by hand (`pm2 delete worker`, no `pm2 save`) and then dropped
/// from the document: nothing is left for the controller to do, and the dump still lists
/// it, as the hand left it; the controller does not read the dump. A reboot brings it back
/// and the next pass deletes and saves (the shrunk case proptest saved:
/// c76e6af8dbcb44b62fb662bf5e17b31d4f43847eecbe459303dcc3dcf4c81e22).
#[test]
fn a_process_deleted_by_hand_and_then_undeclared_is_the_hands_unsaved_change_until_a_reboot() {
    let with = Doc {
        install: true,
        build_steps: 1,
        worker: true,
        ..plain(C3)
    };
    let without = Doc {
        worker: false,
        ..with.clone()
    };
    let h = one_cpu(vec![
        (vec![], with),
        // pm_ids 0 (web) and 1 (worker): 5 picks the worker.
        (vec![history::Drift::DeleteByHand(5)], without.clone()),
    ]);
    let mut server = server_for(&h);
    assert_eq!(run(&mut server, &h), vec![Vec::<String>::new(); 2]);
    assert!(server.pm2.iter().all(|p| p.name != "worker"));
    assert!(server.dump.iter().any(|p| p.name == "worker"), "not saved");

    server.drift(&history::Drift::Reboot);
    assert!(server.pm2.iter().any(|p| p.name == "worker"), "resurrected");
    let app = without.app();
    let p = plan(&app, &server.observe(&app));
    let steps: Vec<&Step> = p.steps.iter().map(|s| &s.step).collect();
    assert_eq!(
        steps,
        [
            &Step::Pm2Delete {
                process: "worker".into()
            },
            &Step::Pm2Save,
            &Step::Verify
        ]
    );
    server.apply(&app, &p);
    assert_eq!(server.problems(&app), Vec::<String>::new());
    assert!(server.dump.iter().all(|p| p.name != "worker"));
}

/// Someone else's process deleted by hand without `pm2 save` stays in the dump: the
/// controller has nothing to do and must not be held to their unsaved change.
#[test]
fn someone_elses_process_deleted_by_hand_without_a_save_is_not_the_controllers_to_save() {
    let doc = plain(C1);
    let h = one_cpu(vec![
        // Theirs starts first: pm_id 0.
        (vec![history::Drift::Foreign], doc.clone()),
        (vec![history::Drift::DeleteByHand(0)], doc),
    ]);
    let mut server = server_for(&h);
    assert_eq!(run(&mut server, &h), vec![Vec::<String>::new(); 2]);
    assert!(server.pm2.iter().all(|p| p.name != "someone-elses"));
    assert!(server.dump.iter().any(|p| p.name == "someone-elses"));
}

/// The oracle still holds the controller to its own changes: a delete the executor made
/// and did not save leaves the dump out of step, even of a process a hand deleted before
/// (the controller started it again and saved since).
#[test]
fn a_delete_by_the_controller_without_a_save_is_still_a_problem() {
    let with = Doc {
        worker: true,
        ..plain(C1)
    };
    let repo = BTreeMap::from([(C1.to_string(), None)]);
    let mut server = Server::new(1, repo, None);
    let app = with.app();
    let p = plan(&app, &server.observe(&app));
    server.apply(&app, &p);
    let worker = server.pm2.iter().position(|p| p.name == "worker");
    server.drift(&history::Drift::DeleteByHand(worker.expect("worker runs")));
    let p = plan(&app, &server.observe(&app));
    server.apply(&app, &p);
    assert_eq!(server.problems(&app), Vec::<String>::new());
    let without = Doc {
        worker: false,
        ..with
    }
    .app();
    let mut p = plan(&without, &server.observe(&without));
    p.steps.retain(|s| s.step != Step::Pm2Save);
    server.apply(&without, &p);
    assert!(
        server
            .problems(&without)
            .iter()
            .any(|m| m.starts_with("pm2's dump differs")),
        "{:?}",
        server.problems(&without)
    );
}

/// `doc`'s plan applied to `server` leaves it as `doc` declares, and a second plan is empty.
fn converges(server: &mut Server, doc: &Doc) {
    let app = doc.app();
    let first = plan(&app, &server.observe(&app));
    server.apply(&app, &first);
    assert_eq!(server.problems(&app), Vec::<String>::new(), "{first}");
    let second = plan(&app, &server.observe(&app));
    assert!(second.steps.is_empty(), "{second}");
}

/// A cluster-mode `web` (and a worker), someone else's process started first; then a replace
/// interrupted after its third move (`web~next` and `web` both run) and `web` stopped by
/// hand; then `doc`. Returns the server just before `doc`'s plan, checked to be that state.
fn stopped_web_beside_a_serving_web_next(doc: &Doc) -> Server {
    let first = Doc {
        cluster: Some(true),
        worker: true,
        ..plain(C1)
    };
    let h = one_cpu(vec![(vec![history::Drift::Foreign], first)]);
    let mut server = server_for(&h);
    assert_eq!(run(&mut server, &h), vec![Vec::<String>::new()]);
    // pm2 lists someone-elses, worker, web~next, web: 3 picks web.
    server.drift(&history::Drift::InterruptedReplace(3));
    server.drift(&history::Drift::Stop(3));
    let status = |name: &str| -> Vec<&str> {
        server
            .pm2
            .iter()
            .filter(|p| p.name == name)
            .map(|p| p.status.as_str())
            .collect()
    };
    assert_eq!(status("web"), ["stopped"]);
    assert_eq!(status("web~next"), ["online"]);
    let app = doc.app();
    let p = plan(&app, &server.observe(&app));
    assert!(
        p.steps.iter().any(|s| s.step
            == Step::Pm2Replace {
                process: "web".into()
            }),
        "{p}"
    );
    server
}

/// `web` stopped beside a `web~next` that serves the document's config (the shrunk case
/// proptest saved: b18430e7…): the replace deletes the stopped `web`, starts it again and
/// only then deletes `web~next`, so something is online throughout. (The simulation once
/// played a fixed sequence that deleted `web~next` first, which the executor does not.)
#[test]
fn a_stopped_web_beside_a_web_next_of_the_same_config_is_replaced_with_something_online_throughout()
{
    let doc = Doc {
        cluster: Some(true),
        ..plain(C1)
    };
    let mut server = stopped_web_beside_a_serving_web_next(&doc);
    converges(&mut server, &doc);
    assert!(server.pm2.iter().all(|p| p.name != "web~next"));
}

/// `web` stopped beside a `web~next` that serves the old config, and the document changes
/// web's script (the unshrunk form of the same seed): the executor must not delete the
/// serving `web~next` first (it did: "other/other: a stale temporary, the declared one
/// serves", but the declared one served nothing and every request was refused until the
/// new config was up). It deletes the stopped `web`, starts `web` with the new config
/// beside the old `web~next`, then deletes `web~next`.
#[test]
fn a_stopped_web_beside_a_web_next_of_the_old_config_keeps_web_next_serving_until_web_runs_the_new()
{
    let doc = Doc {
        cluster: Some(true),
        script: "app.js",
        ..plain(C1)
    };
    let mut server = stopped_web_beside_a_serving_web_next(&doc);
    converges(&mut server, &doc);
    assert!(
        server
            .pm2
            .iter()
            .filter(|p| p.name == "web")
            .all(|p| p.script == "app.js")
    );
}

/// `current` moved away by hand, a document without hooks switches back to the release the
/// hook once ran for, then the hook is declared again: it runs, since it has not run since
/// that release last went live (the shrunk case proptest saved: e0175bd6…; the switch back
/// left the first run's record in place, so the hook was taken as run).
#[test]
fn a_hook_declared_again_after_a_switch_back_without_hooks_runs() {
    let with = Doc {
        hooks: 1,
        build_steps: 1,
        ..plain(C2)
    };
    let without = Doc {
        hooks: 0,
        ..with.clone()
    };
    let h = one_cpu(vec![
        (vec![], with.clone()),
        (vec![history::Drift::MoveCurrent], without),
    ]);
    let mut server = server_for(&h);
    assert_eq!(run(&mut server, &h), vec![Vec::<String>::new(); 2]);
    let app = with.app();
    let p = plan(&app, &server.observe(&app));
    assert!(
        p.steps.iter().any(|s| s.step
            == Step::Hook {
                command: "echo switched".into()
            }),
        "{p}"
    );
    server.apply(&app, &p);
    assert_eq!(server.problems(&app), Vec::<String>::new());
}

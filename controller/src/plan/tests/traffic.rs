//! The traffic sections' table (`slots.rs`): which steps each state of the slots plans.

use super::*;

use crate::traffic::{Leaving, TrafficState, Warm, slot_name};

const A: u16 = 3000;
const B: u16 = 3001;

fn t0() -> shipshape_spec::Timestamp {
    "2026-12-02T03:00:00Z".parse().unwrap()
}

/// `app(commit)` in traffic mode on slots 3000/3001 behind nginx on 8080.
fn slotted(commit: &str) -> App {
    let mut a = app(commit);
    a.spec.processes[0].env.remove("PORT");
    a.spec.traffic = Some(
        serde_json::from_value(serde_json::json!({
            "via": "nginx", "public": "http://127.0.0.1:8080", "ports": [A, B],
            "upstreamFile": "/etc/nginx/shipshape/demo.conf", "confirmPort": 8099,
        }))
        .unwrap(),
    );
    a
}

/// `doc`'s serving process running in the slot on `port` (2 instances, online).
fn slot(doc: &App, port: u16) -> Vec<Instance> {
    let p = &doc.spec.processes[0];
    let mut is = instances_of(doc, p, &EnvFile::default(), 2);
    for (k, i) in is.iter_mut().enumerate() {
        i.name = slot_name(&p.name, port);
        i.pm_id = u64::from(port) * 10 + k as u64;
    }
    is
}

/// Converged on `live_doc` in slot `live`, with `others` running too, `warm` as given.
fn observed(live_doc: &App, live: u16, others: &[(&App, u16)], warm: Option<Warm>) -> Observed {
    let mut obs = converged(live_doc);
    obs.processes.clear();
    obs.processes.extend(slot(live_doc, live));
    for (doc, port) in others {
        obs.processes.extend(slot(doc, *port));
    }
    obs.traffic = Some(TrafficState {
        live: Some(live),
        warm,
        now: t0(),
        leaving: Leaving::Warm,
    });
    obs
}

fn kinds(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| format!("{} {}", s.step.kind(), s.step.target()))
        .collect()
}

fn warm_at(port: u16, secs: i64) -> Option<Warm> {
    Some(Warm {
        port,
        until: t0() + chrono::TimeDelta::seconds(secs),
    })
}

#[test]
fn the_live_slot_running_the_document_plans_nothing() {
    let doc = slotted(C1);
    let p = plan(&doc, &observed(&doc, A, &[], None));
    assert!(p.steps.is_empty(), "{p}");
}

#[test]
fn a_new_commit_starts_and_proves_a_slot_beside_the_live_one_before_the_switch() {
    let (old, new) = (slotted(C1), slotted(C2));
    let p = plan(&new, &observed(&old, A, &[], None));
    let k = kinds(&p);
    let at = |what: &str| k.iter().position(|s| s.starts_with(what)).unwrap();
    assert_eq!(k[at("slot-start")], "slot-start web@3001", "{p}");
    assert!(at("slot-start") < at("slot-prove"), "{p}");
    assert!(
        at("slot-prove") < at("traffic-switch"),
        "nothing moves before the proof: {p}"
    );
    assert!(
        at("traffic-switch") < at("switch"),
        "current moves once nginx took the switch: {p}"
    );
    assert!(at("slot-prove") < at("pm2-save"), "saved once proven: {p}");
    assert!(at("switch") < at("verify"), "{p}");
    // The slot traffic leaves stays warm: nothing retires it.
    assert!(!k.iter().any(|s| s.starts_with("slot-retire")), "{p}");
    let warm = p.steps.iter().find_map(|s| match s.step {
        Step::TrafficSwitch { warm, .. } => Some(warm),
        _ => None,
    });
    assert_eq!(warm, Some(Some(A)), "{p}");
}

#[test]
fn every_change_kind_of_the_serving_process_is_a_new_slot_never_a_reload() {
    let old = slotted(C1);
    type Edit = Box<dyn Fn(&mut App)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "env",
            Box::new(|a: &mut App| {
                a.spec.processes[0]
                    .env
                    .insert("NEW".into(), EnvValue::String("1".into()));
            }),
        ),
        (
            "instances",
            Box::new(|a: &mut App| {
                a.spec.processes[0].instances = Some(Instances::Count(3));
            }),
        ),
        (
            "exec_mode",
            Box::new(|a: &mut App| {
                a.spec.processes[0].exec_mode = Some(ExecMode::Fork);
            }),
        ),
        (
            "script",
            Box::new(|a: &mut App| a.spec.processes[0].script = "other.js".into()),
        ),
    ];
    for (what, edit) in edits {
        let mut new = old.clone();
        edit(&mut new);
        let k = kinds(&plan(&new, &observed(&old, A, &[], None)));
        assert!(
            k.contains(&"slot-start web@3001".to_string()),
            "{what}: {k:?}"
        );
        assert!(
            k.contains(&"traffic-switch slot 3001".to_string()),
            "{what}: {k:?}"
        );
        assert!(
            !k.iter().any(|s| s.starts_with("pm2-re")),
            "{what}: no pm2 reload or replace in place: {k:?}"
        );
    }
}

#[test]
fn a_live_slot_with_an_instance_pm2_is_restarting_keeps_its_traffic() {
    let doc = slotted(C1);
    let mut obs = observed(&doc, A, &[], None);
    obs.processes[0].status = Status::Launching;
    let p = plan(&doc, &obs);
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s.step, Step::SlotStart { .. } | Step::TrafficSwitch { .. })),
        "a restart of one instance is the health checks' to judge, not a new slot: {p}"
    );
}

#[test]
fn a_slot_is_proven_on_its_own_port_by_its_own_processes_only() {
    let mut doc = slotted(C1);
    let mut worker = doc.spec.processes[0].clone();
    worker.name = "worker".into();
    doc.spec.processes.push(worker);
    doc.spec.health.checks[0].http_mut().unwrap().url = "http://127.0.0.1:8080/api/health".into();
    let view = crate::traffic::slot_view(&doc, B);
    let names: Vec<&str> = view
        .spec
        .processes
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["web@3001"],
        "the worker is applied after the switch"
    );
    assert_eq!(
        view.spec.health.checks[0].http().unwrap().url,
        "http://127.0.0.1:3001/api/health"
    );
    assert!(view.spec.traffic.is_none(), "a view is judged as it is");
}

#[test]
fn going_back_to_the_warm_slot_in_its_time_is_a_switch_with_no_boot_and_no_proof() {
    let (good, bad) = (slotted(C1), slotted(C2));
    // The bad revision is live on B; the good one is warm on A.
    let mut obs = observed(&bad, B, &[(&good, A)], warm_at(A, 60));
    obs.traffic.as_mut().unwrap().leaving = Leaving::Retire;
    let p = plan(&good, &obs);
    let k = kinds(&p);
    assert!(
        !k.iter()
            .any(|s| s.starts_with("slot-start") || s.starts_with("slot-prove")),
        "{p}"
    );
    assert!(k.contains(&"traffic-switch slot 3000".to_string()), "{p}");
    // The slot traffic leaves ran the reverted revision: retired, not warm.
    assert!(k.contains(&"slot-retire web@3001".to_string()), "{p}");
    let warm = p.steps.iter().find_map(|s| match s.step {
        Step::TrafficSwitch { warm, .. } => Some(warm),
        _ => None,
    });
    assert_eq!(warm, Some(None), "{p}");
}

#[test]
fn a_warm_slot_whose_time_is_up_is_proven_again_before_it_gets_traffic_back() {
    let (good, bad) = (slotted(C1), slotted(C2));
    let obs = observed(&bad, B, &[(&good, A)], warm_at(A, -1));
    let k = kinds(&plan(&good, &obs));
    assert!(k.contains(&"slot-prove slot 3000".to_string()), "{k:?}");
    assert!(
        !k.iter().any(|s| s.starts_with("slot-start")),
        "it runs: no boot: {k:?}"
    );
}

#[test]
fn a_warm_slot_is_kept_in_its_time_and_retired_after_it() {
    let (old, live) = (slotted(C1), slotted(C2));
    let kept = plan(&live, &observed(&live, B, &[(&old, A)], warm_at(A, 60)));
    assert!(kept.steps.is_empty(), "{kept}");
    assert!(
        kept.notes.iter().any(|n| n.contains("warm until")),
        "{kept}"
    );
    let after = plan(&live, &observed(&live, B, &[(&old, A)], warm_at(A, -1)));
    assert_eq!(
        kinds(&after),
        ["slot-retire web@3000", "pm2-save "],
        "{after}"
    );
    assert!(
        !after.steps.iter().any(|s| s.step == Step::Verify),
        "retiring a slot nothing reaches changes nothing live: {after}"
    );
}

#[test]
fn a_new_rollout_retires_the_warm_slot_to_make_way() {
    let (old, live, new) = (slotted(C1), slotted(C2), slotted(C3));
    let k = kinds(&plan(
        &new,
        &observed(&live, B, &[(&old, A)], warm_at(A, 60)),
    ));
    let retire = k
        .iter()
        .position(|s| s == "slot-retire web@3000")
        .expect("retire");
    let start = k
        .iter()
        .position(|s| s == "slot-start web@3000")
        .expect("start");
    assert!(retire < start, "{k:?}");
}

#[test]
fn a_slot_that_ran_but_was_never_proven_is_proven_before_the_switch_and_saved_after_it() {
    // A crash after slot-start: the new config runs on B, nginx still names A.
    let (old, new) = (slotted(C1), slotted(C2));
    let k = kinds(&plan(&new, &observed(&old, A, &[(&new, B)], None)));
    assert!(k.contains(&"slot-prove slot 3001".to_string()), "{k:?}");
    assert!(!k.iter().any(|s| s.starts_with("slot-start")), "{k:?}");
    // The pass that started it ended before its save: pm2's dump must name it now.
    assert!(k.iter().any(|s| s.starts_with("pm2-save")), "{k:?}");
}

#[test]
fn the_serving_process_run_in_place_is_deleted_once_it_runs_in_slots() {
    let inplace = app(C1);
    let doc = slotted(C1);
    let mut obs = converged(&inplace);
    obs.traffic = Some(TrafficState {
        live: None,
        warm: None,
        now: t0(),
        leaving: Leaving::Warm,
    });
    let k = kinds(&plan(&doc, &obs));
    let sw = k
        .iter()
        .position(|s| s == "traffic-switch slot 3000")
        .expect("switch");
    let del = k
        .iter()
        .position(|s| s == "pm2-delete web")
        .expect("delete");
    assert!(
        sw < del,
        "the in-place process serves until the switch: {k:?}"
    );
}

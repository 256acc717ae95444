//! Traffic through nginx (`spec.traffic`): the stock Express app (no shutdown code, exits at
//! once on SIGINT) in fork mode (1 process) and in cluster mode (2), behind the test's own
//! nginx, ~100 requests a second through nginx (a new connection each):
//! - every change kind — code, env, a removed env variable, instances (cluster 1 → 2 and
//!   2 → 3: in fork mode one HTTP process per port is all that can listen), exec_mode
//!   fork → cluster and cluster → fork — and a revert fail no request; after each, exactly
//!   one slot serves (the upstream file names its port, pm2 runs the serving process only
//!   under that slot's name, apart from the warm slot while it is warm, with the document's
//!   instances, exec mode and env), pm2's dump the same; once the warm time the upstream
//!   file records is up, a pass retires the warm slot (`slot-retire`: drained, then deleted);
//! - a release whose health fails from its first round never answers a request through
//!   nginx (every answer came from the old version), and its config commit is quarantined,
//!   the live slot untouched (same pids);
//! - a release that passes on its slot and then regresses under user traffic (a leak only
//!   requests to `/` show) is reverted by a switch back to the warm slot (same pids, no
//!   boot); the time from the verdict (the end of the failed verify step) to the first
//!   moment every answer comes from the old version is printed and held to 3 s;
//! - a request in flight to the slot leaving service finishes before the slot is stopped.
//!
//! Real git, real npm, real pm2, real nginx, `shipshape run --once`.

mod common;

use std::time::Duration;

use shipshape_spec::app::{EnvValue, ExecMode, Instances};
use shipshape_spec::status::Outcome;

use common::stock::Mode;
use common::traffic::{Expect, Front, assert_one_slot, edits, retire_warm, through_nginx};
use common::{AppEdit, World, git};

/// `pm2 jlist`'s exec mode of `mode`.
fn exec_mode_name(m: Option<ExecMode>) -> &'static str {
    match m {
        Some(ExecMode::Cluster) => "cluster_mode",
        _ => "fork_mode",
    }
}

fn instances(app: &shipshape_spec::App) -> usize {
    match app.spec.processes[0].instances {
        Some(Instances::Count(n)) => n as usize,
        _ => 1,
    }
}

/// The version in the app repo's package.json.
fn version(w: &World) -> String {
    let pkg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.app_repo().join("package.json")).unwrap())
            .unwrap();
    pkg["version"].as_str().unwrap().to_string()
}

/// Commit `app` and, under load through nginx: one pass (exit `code`), the new slot live
/// and the old one warm, then `warmFor` and a pass that retires the warm slot. No request
/// may fail. Returns the live port.
fn change(
    w: &World,
    f: &Front,
    what: &str,
    app: &shipshape_spec::App,
    present: &[&str],
    absent: &[&str],
    code: i32,
) -> u16 {
    let before = f.live_port().expect("a slot is live before the change");
    w.commit_app(app);
    let v = version(w);
    let e = Expect {
        instances: instances(app),
        exec_mode: exec_mode_name(app.spec.processes[0].exec_mode),
        version: &v,
        present,
        absent,
    };
    let (samples, live) = through_nginx(f, what, || {
        let (got, log) = w.run_once();
        assert_eq!(got, code, "{what}:\n{log}");
        let live = assert_one_slot(w, f, &e, Some(before));
        assert_ne!(
            live, before,
            "{what}: the new release did not get a slot of its own"
        );
        retire_warm(w, f, &e, before);
        live
    });
    samples.assert_no_failures(w, what);
    live
}

/// Every change kind and a revert in `mode`, each under load through nginx.
fn every_change_kind(mode: Mode, name: &str, test: &str) {
    let w = World::stock(name);
    let Some(f) = Front::start(&w, test) else {
        return;
    };
    let v1 = w.app_head();
    let base = w.traffic_app(&f, &v1, mode);
    w.commit_app(&base);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "the first rollout:\n{log}");
    let e = Expect {
        instances: instances(&base),
        exec_mode: exec_mode_name(base.spec.processes[0].exec_mode),
        version: "1.0.0",
        present: &[],
        absent: &[],
    };
    assert_one_slot(&w, &f, &e, None);

    // Code.
    let v2 = w.commit_app_version("1.1.0");
    let mut app = w.traffic_app(&f, &v2, mode);
    change(&w, &f, "code 1.0.0 → 1.1.0", &app, &[], &[], 0);

    // Env added, then removed (pm2's reload would keep it).
    app.env("FEATURE_X", "on");
    change(&w, &f, "env FEATURE_X added", &app, &["FEATURE_X"], &[], 0);
    app.spec.processes[0].env.remove("FEATURE_X");
    change(
        &w,
        &f,
        "env FEATURE_X removed",
        &app,
        &[],
        &["FEATURE_X"],
        0,
    );

    // Instances and exec_mode. An HTTP server in fork mode runs one instance per port (a
    // second one cannot listen: Express 5 only reports EADDRINUSE to its callback, and the
    // process exits, to be restarted by pm2 again and again), so fork mode goes to cluster
    // before it gets a second instance (fork 1 → cluster 1 → cluster 2), and cluster mode
    // grows first and goes to fork with one instance (cluster 2 → 3 → fork 1).
    let set = |app: &mut shipshape_spec::App, n: u32, m: ExecMode| {
        app.spec.processes[0].instances = Some(Instances::Count(n));
        app.spec.processes[0].exec_mode = Some(m);
    };
    let live = match mode {
        Mode::Fork1 => {
            set(&mut app, 1, ExecMode::Cluster);
            change(&w, &f, "exec_mode fork → cluster", &app, &[], &[], 0);
            set(&mut app, 2, ExecMode::Cluster);
            change(&w, &f, "instances 1 → 2", &app, &[], &[], 0)
        }
        Mode::Cluster2 => {
            set(&mut app, 3, ExecMode::Cluster);
            change(&w, &f, "instances 2 → 3", &app, &[], &[], 0);
            set(&mut app, 1, ExecMode::Fork);
            change(&w, &f, "exec_mode cluster → fork", &app, &[], &[], 0)
        }
    };
    let good_pids = w.slot_pids(live);

    // A revert: 1.2.0 leaks a pool connection per request (POOL_SIZE 10): it passes on its
    // slot, takes traffic, then its health fails; the pass switches back to the warm slot.
    let path = w.app_repo().join("server.js");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(edits::LEAK_FROM));
    std::fs::write(&path, text.replacen(edits::LEAK_FROM, edits::LEAK_TO, 1)).unwrap();
    git(&w.app_repo(), &["commit", "-qam", "a connection pool"]);
    let bad = w.commit_app_version("1.2.0");
    let mut broken = app.clone();
    broken.spec.source.commit = bad.clone();
    broken.spec.processes[0]
        .env
        .insert("POOL_SIZE".into(), EnvValue::String("10".into()));
    let config_bad = w.commit_app(&broken);
    let e = Expect {
        instances: instances(&app),
        exec_mode: exec_mode_name(app.spec.processes[0].exec_mode),
        version: "1.1.0",
        present: &[],
        absent: &["POOL_SIZE", "FEATURE_X"],
    };
    let (samples, ()) = through_nginx(&f, "revert of a leaking 1.2.0", || {
        let (got, log) = w.run_once();
        assert_eq!(got, 1, "the leaking release fails and is reverted:\n{log}");
        // Back on the warm slot, same processes; the failed slot goes (now or once warm).
        assert_eq!(f.live_port(), Some(live), "the revert switched back");
        assert_eq!(
            w.slot_pids(live),
            good_pids,
            "the revert booted the old release"
        );
        let failed_slot = f.other(live);
        if w.slot_pids(failed_slot).is_empty() {
            assert_one_slot(&w, &f, &e, None);
        } else {
            retire_warm(&w, &f, &e, failed_slot);
        }
    });
    samples.assert_no_failures(&w, "revert");
    assert!(
        samples.versions().contains_key("1.2.0"),
        "the leaking release never took traffic, so this was no revert after a switch: {:?}",
        samples.versions()
    );
    let rec = w.record();
    let r = rec
        .revisions
        .iter()
        .find(|r| r.revision.config_commit == config_bad)
        .expect("a revision of the leaking config");
    assert_eq!(
        r.revision.outcome,
        Outcome::Reverted,
        "{}",
        r.revision.message
    );
    assert!(
        rec.quarantined
            .iter()
            .any(|q| q.config_commit == config_bad),
        "the leaking config is not quarantined: {:?}",
        rec.quarantined
    );
    assert_eq!(w.slot_pids(live), good_pids);
}

#[test]
fn every_change_kind_in_fork_mode_behind_nginx_fails_no_request_and_leaves_one_slot_serving() {
    every_change_kind(Mode::Fork1, "tfork", "every_change_kind_in_fork_mode");
}

#[test]
fn every_change_kind_in_cluster_mode_behind_nginx_fails_no_request_and_leaves_one_slot_serving() {
    every_change_kind(
        Mode::Cluster2,
        "tcluster",
        "every_change_kind_in_cluster_mode",
    );
}

/// The stock app at 1.0.0 live in `mode` behind a new nginx.
fn v1_live(name: &str, mode: Mode) -> Option<(World, Front, shipshape_spec::App)> {
    let w = World::stock(name);
    let f = Front::start(&w, name)?;
    let v1 = w.app_head();
    let app = w.traffic_app(&f, &v1, mode);
    w.commit_app(&app);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "the first rollout:\n{log}");
    assert_eq!(f.version().as_deref(), Ok("1.0.0"));
    Some((w, f, app))
}

/// `app` at a new commit, 2.0.0, whose connection pool of `pool` leaks one per request to
/// `/` (its health fails once the pool is empty: only user traffic empties it).
fn leaking_release(w: &World, app: &shipshape_spec::App, pool: u32) -> shipshape_spec::App {
    let path = w.app_repo().join("server.js");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen(edits::LEAK_FROM, edits::LEAK_TO, 1)).unwrap();
    git(&w.app_repo(), &["commit", "-qam", "a connection pool"]);
    let mut broken = app.clone();
    broken.spec.source.commit = w.commit_app_version("2.0.0");
    broken.spec.processes[0]
        .env
        .insert("POOL_SIZE".into(), EnvValue::String(pool.to_string()));
    broken
}

#[test]
fn a_release_whose_health_fails_from_its_first_round_never_answers_through_nginx_and_is_quarantined()
 {
    let Some((w, f, app)) = v1_live("tdown", Mode::Fork1) else {
        return;
    };
    let live = f.live_port().unwrap();
    let pids = w.slot_pids(live);
    let upstream = common::traffic::upstream_text(&f);

    let path = w.app_repo().join("server.js");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen(edits::DOWN_FROM, edits::DOWN_TO, 1)).unwrap();
    git(&w.app_repo(), &["commit", "-qam", "a new database driver"]);
    let bad = w.commit_app_version("2.0.0");
    let mut broken = app.clone();
    broken.spec.source.commit = bad;
    broken.progress_deadline(Duration::from_secs(8));
    let config_bad = w.commit_app(&broken);

    let (samples, log) = through_nginx(&f, "a release down from its first round", || {
        let (code, log) = w.run_once();
        assert_eq!(code, 1, "the release fails on its slot:\n{log}");
        log
    });
    samples.assert_no_failures(&w, "a release down from its first round");
    let versions = samples.versions();
    assert_eq!(
        versions.keys().collect::<Vec<_>>(),
        ["1.0.0"],
        "a request through nginx reached the failing release"
    );
    let rec = w.record();
    let steps = common::steps(&rec);
    assert!(steps.contains(&"slot-prove"), "{steps:?}");
    assert!(
        !steps.contains(&"traffic-switch"),
        "a failing slot must never be switched to: {steps:?}\n{log}"
    );
    let failed = rec
        .last_pass
        .as_ref()
        .unwrap()
        .steps
        .last()
        .unwrap()
        .clone();
    println!(
        "the failed step: {} ({}): {:?}",
        failed.step, failed.reason, failed.output_tail
    );
    assert!(
        rec.quarantined
            .iter()
            .any(|q| q.config_commit == config_bad),
        "not quarantined: {:?}",
        rec.quarantined
    );
    assert_eq!(f.live_port(), Some(live));
    assert_eq!(
        common::traffic::upstream_text(&f),
        upstream,
        "the upstream file changed"
    );
    assert_eq!(w.slot_pids(live), pids, "the live slot was touched");
    assert!(
        w.slot_pids(f.other(live)).is_empty(),
        "the failed slot still runs: {:?}",
        w.pm2_names()
    );
    assert_eq!(
        w.dump_names(),
        vec![shipshape::traffic::slot_name(&w.web(), live)]
    );
}

#[test]
fn a_release_that_regresses_after_the_switch_is_reverted_by_a_switch_back_to_the_warm_slot_within_3_s()
 {
    let Some((w, f, app)) = v1_live("tregress", Mode::Cluster2) else {
        return;
    };
    let live = f.live_port().unwrap();
    let pids = w.slot_pids(live);

    // 10: the load (~100/s) empties the pool within ~0.1 s of the switch, before verify's
    // second round (successThreshold 2, 300 ms apart) could call the release healthy.
    let broken = leaking_release(&w, &app, 10);
    let config_bad = w.commit_app(&broken);

    let (samples, log) = through_nginx(&f, "a release that regresses under traffic", || {
        let (code, log) = w.run_once();
        assert_eq!(code, 1, "the release regresses and is reverted:\n{log}");
        log
    });
    samples.assert_no_failures(&w, "the revert");
    assert!(
        samples.versions().contains_key("2.0.0"),
        "the release never took traffic: {:?}\n{log}",
        samples.versions()
    );
    let rec = w.record();
    let r = rec
        .revisions
        .iter()
        .find(|r| r.revision.config_commit == config_bad)
        .expect("a revision of the leaking config");
    assert_eq!(
        r.revision.outcome,
        Outcome::Reverted,
        "{}",
        r.revision.message
    );
    // The verdict: the end of the verify step that failed.
    let pass = rec.last_pass.as_ref().unwrap();
    let verify = pass
        .steps
        .iter()
        .find(|s| {
            s.step.as_str() == "verify" && s.result == shipshape_spec::status::StepResult::Failed
        })
        .unwrap_or_else(|| panic!("no failed verify in {:?}", common::steps(&rec)));
    let verdict =
        verify.started_at.datetime() + chrono::Duration::milliseconds(verify.duration_ms as i64);
    let alone = samples
        .alone_from("1.0.0")
        .expect("1.0.0 never served alone again");
    let took = (alone - verdict).num_milliseconds();
    println!(
        "verdict {verdict} (revision finished {:?}) → 1.0.0 serving alone from {alone}: {took} ms",
        r.revision.finished_at.map(|t| t.to_string())
    );
    assert!(
        took <= 3000,
        "from the verdict to the old release serving alone took {took} ms (bound 3 s)"
    );
    // A switch back: the same processes (no boot), no slot started for the old release.
    assert_eq!(f.live_port(), Some(live));
    assert_eq!(w.slot_pids(live), pids, "the revert booted the old release");
    let kinds = common::steps(&rec);
    assert_eq!(
        kinds.iter().filter(|k| **k == "traffic-switch").count(),
        2,
        "a switch to the new slot and one back: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "slot-start").count(),
        1,
        "only the new release gets a slot started: {kinds:?}"
    );
}

/// A request that takes 12 s, in flight through nginx to the slot leaving service when its
/// warm time ends: the retire waits for it (drain), then deletes the slot.
#[test]
fn a_request_in_flight_to_the_slot_leaving_service_finishes_before_the_slot_is_stopped() {
    let w = World::stock("tdrain");
    // A slow route, as an export or an upload would be.
    let path = w.app_repo().join("server.js");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen(
            edits::LEAK_FROM,
            &format!(
                "app.get('/slow', (req, res) => {{ setTimeout(() => res.send(`slow from ${{version}}\\n`), 12000); }});\n{}",
                edits::LEAK_FROM
            ),
            1,
        ),
    )
    .unwrap();
    git(&w.app_repo(), &["commit", "-qam", "a slow export"]);
    let Some(f) = Front::start(&w, "tdrain") else {
        return;
    };
    let v1 = w.app_head();
    let app = w.traffic_app(&f, &v1, Mode::Fork1);
    w.commit_app(&app);
    assert_eq!(w.run_once().0, 0);
    let old = f.live_port().unwrap();
    let v2 = w.commit_app_version("2.0.0");
    let mut next = app.clone();
    next.spec.source.commit = v2;
    next.spec.traffic.as_mut().unwrap().drain_timeout = shipshape_spec::Duration::from_secs(20);
    w.commit_app(&next);

    let port = f.public;
    let slow = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET /slow HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut buf = String::new();
        let r = s.read_to_string(&mut buf);
        (r.map_err(|e| e.to_string()), buf)
    });
    // It is in flight to the old slot long before the pass switches (it fetches and
    // installs first); the pass must take less than its 12 s for this test to mean anything
    // (checked below: the request has not ended when the retire begins).
    assert_eq!(w.run_once().0, 0);
    assert_ne!(f.live_port(), Some(old));
    common::traffic::wait_warm_time_up(&f, old);
    assert!(
        !slow.is_finished(),
        "the slow request ended before the retire"
    );
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert!(common::steps(&w.record()).contains(&"slot-retire"));
    let (read, buf) = slow.join().unwrap();
    assert!(
        read.is_ok() && buf.starts_with("HTTP/1.1 200") && buf.contains("slow from 1.0.0"),
        "the request in flight to the retired slot was cut: {read:?} {buf:?}"
    );
    assert!(
        w.slot_pids(old).is_empty(),
        "the drained slot was not stopped"
    );
}

/// The daemon's monitor, not the rollout's verification, sees the regression: a release
/// that leaks only after it was declared healthy (its pool lasts a few seconds of user
/// traffic) is reverted inside `warmFor` by a switch back to the warm slot (same pids, no
/// boot, 0 failed requests), and its config commit is quarantined.
#[test]
fn a_release_that_regresses_after_it_was_declared_healthy_is_reverted_by_the_monitor_with_a_switch_back()
 {
    let Some((w, f, app)) = v1_live("tmonitor", Mode::Fork1) else {
        return;
    };
    let live = f.live_port().unwrap();
    let pids = w.slot_pids(live);
    // ~100 requests a second: 400 last ~4 s, well past verify's 2 passing rounds.
    let mut broken = leaking_release(&w, &app, 400);
    // Warm long enough for the monitor's failureThreshold rounds after the leak shows.
    broken.spec.traffic.as_mut().unwrap().warm_for = shipshape_spec::Duration::from_secs(120);
    let d = w.start(&[]);
    let (samples, rec) = through_nginx(&f, "a release that regresses once healthy", || {
        let config_bad = w.commit_app(&broken);
        let rec = w.wait_record("the regression reverted", 120, &d, |r| {
            r.revisions.iter().any(|e| {
                e.revision.config_commit == config_bad && e.revision.outcome == Outcome::Reverted
            })
        });
        (config_bad, rec)
    });
    let (config_bad, rec) = rec;
    samples.assert_no_failures(&w, "the regression's revert");
    assert!(
        samples.versions().contains_key("2.0.0"),
        "the release never took traffic: {:?}",
        samples.versions()
    );
    let r = rec
        .revisions
        .iter()
        .find(|e| e.revision.config_commit == config_bad)
        .unwrap();
    assert!(
        rec.quarantined
            .iter()
            .any(|q| q.config_commit == config_bad),
        "quarantined: {:?}",
        rec.quarantined
    );
    println!("revision {}: {}", r.revision.number, r.revision.message);
    assert_eq!(f.live_port(), Some(live), "traffic is back on the old slot");
    assert_eq!(w.slot_pids(live), pids, "the revert booted the old release");
    assert_eq!(f.version().as_deref(), Ok("1.0.0"));
    drop(d);
}

/// `shipshape plan` shows the slot steps of a rollout, each with its reason, in the order the
/// pass runs them; while the previous slot is warm, `plan` has nothing to do and says until
/// when it stays, and `shipshape status` shows the live slot and the warm one.
#[test]
fn plan_and_status_show_the_live_and_warm_slots_and_the_slot_steps_with_their_reasons() {
    let Some((w, f, app)) = v1_live("tplanview", Mode::Fork1) else {
        return;
    };
    let live = f.live_port().unwrap();
    let mut next = app.clone();
    next.spec.source.commit = w.commit_app_version("1.1.0");
    next.spec.traffic.as_mut().unwrap().warm_for = shipshape_spec::Duration::from_secs(300);
    w.commit_app(&next);
    let out = w.shipshape(&["plan", "-o", "json"], &[]);
    assert_eq!(out.status.code(), Some(2), "changes pending");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = json[0]["plan"]["steps"].as_array().unwrap().clone();
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    // nginx is switched before `current` moves (a switch nginx refuses leaves the live
    // release as it was); pm2's list is saved once the slot is proven, and at the end.
    let want = [
        "slot-start",
        "slot-prove",
        "pm2-save",
        "traffic-switch",
        "switch",
        "pm2-save",
        "verify",
    ];
    let slot_steps: Vec<&str> = kinds.iter().copied().filter(|k| want.contains(k)).collect();
    assert_eq!(slot_steps, want, "{kinds:?}");
    for s in &steps {
        assert!(
            !s["reason"].as_str().unwrap_or("").is_empty(),
            "a step without its reason: {s}"
        );
    }
    let switch = steps
        .iter()
        .find(|s| s["kind"] == "traffic-switch")
        .unwrap();
    assert_eq!(switch["warm"].as_u64(), Some(u64::from(live)), "{switch}");
    assert!(
        switch["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("from slot {live}, which stays warm")),
        "{switch}"
    );
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    let new_live = f.live_port().unwrap();
    assert_ne!(new_live, live);
    let out = w.shipshape(&["plan", "-o", "json"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing to do while the old slot is warm"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = json[0]["plan"]["notes"].to_string();
    assert!(
        notes.contains(&format!("slot {live} is warm until")),
        "{notes}"
    );
    let out = w.shipshape(&["status", &w.name], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("traffic"))
        .unwrap_or_else(|| panic!("no traffic line in status:\n{text}"));
    assert!(
        line.contains(&format!("nginx → slot {new_live} ({}@{new_live})", w.web()))
            && line.contains(&format!("warm slot {live} until")),
        "{line}"
    );
}

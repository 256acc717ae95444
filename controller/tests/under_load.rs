//! "Graceful reload, 0 dropped requests", in CI: the example app in cluster mode (2
//! instances) takes ~100 requests a second (plain HTTP/1.0 GETs of `/` on loopback, each a
//! new connection) while the controller rolls out a code change and then reverts a broken
//! one (a v3 whose `/api/health` answers 500 while its `/` works: a code-only change, so the
//! revert is a reload too). Every request must get a 200 from some version; the test prints
//! how many it sent. Real git, real pm2, the example app, `shipshape run --once`.

mod common;

use common::World;
use common::load::{assert_no_failures, under_load};
use shipshape_spec::status::Outcome;

#[test]
fn a_code_rollout_and_a_revert_in_cluster_mode_fail_no_request_at_100_per_second() {
    let w = World::new("load");
    let v1 = w.app_head();
    let doc = |commit: &str| {
        let mut app = w.app(commit);
        app.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(30);
        app.spec.health.failure_threshold = 2;
        assert_eq!(
            app.spec.processes[0].exec_mode,
            Some(shipshape_spec::app::ExecMode::Cluster),
            "a graceful reload needs cluster mode"
        );
        app
    };
    w.commit_app(&doc(&v1));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");

    // A code rollout: v2 is reloaded in place of v1.
    let v2 = w.commit_app_version("2.0.0");
    w.commit_app(&doc(&v2));
    let tally = under_load(&w, "code rollout", || {
        let (code, log) = w.run_once();
        assert_eq!(code, 0, "{log}");
    });
    assert_eq!(
        common::steps(&w.record()),
        [
            "fetch",
            "install",
            "build",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify"
        ]
    );
    assert_no_failures(&w, "code rollout", &tally);
    assert!(
        tally.versions.contains_key("1.0.0") && tally.versions.contains_key("2.0.0"),
        "the load did not span the rollout: {:?}",
        tally.versions
    );

    // A broken v3: `/` works, `/api/health` answers 500. Same env, so the revert to v2 is
    // a reload as well.
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let from = "res.writeHead(ok ? 200 : 503";
    assert!(server.contains(from));
    std::fs::write(
        w.app_repo().join("server.js"),
        server.replacen(from, "res.writeHead(500", 1),
    )
    .unwrap();
    let v3 = w.commit_app_version("3.0.0");
    w.commit_app(&doc(&v3));
    let tally = under_load(&w, "revert", || {
        let (code, log) = w.run_once();
        assert_eq!(code, 1, "v3 fails and is reverted:\n{log}");
    });
    let rec = w.record();
    assert_eq!(
        common::steps(&rec),
        [
            "fetch",
            "install",
            "build",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify"
        ],
        "the revert must be a reload"
    );
    assert_eq!(
        common::revision_of(&rec, &v3).revision.outcome,
        Outcome::Reverted
    );
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
    assert_no_failures(&w, "revert", &tally);
    assert!(
        tally.versions.contains_key("3.0.0") && tally.versions.contains_key("2.0.0"),
        "the load did not span the rollout and the revert: {:?}",
        tally.versions
    );
}

//! The `prometheus` check kind against a real Prometheus (Debian's package, installed by
//! hack/test.sh) scraping the example app: a query with no data is inconclusive, a value
//! within the threshold passes, outside it fails; and a rollout whose app starts answering
//! 500 on its pages (while /api/health stays fine) is reverted by the error-rate gate.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::prometheus::Prometheus;
use common::{World, free_port, wait_for};
use shipshape_spec::status::{Outcome, Phase, ProbeState};

/// The error ratio over the last 15 s; `or vector(0)` so no 5xx at all reads as 0, not as no data.
const ERROR_RATIO: &str = r#"(sum(increase(http_requests_total{job="app",code=~"5.."}[15s])) or vector(0)) / sum(increase(http_requests_total{job="app"}[15s]))"#;

/// Keep requesting `/` on the app until dropped.
struct Traffic(Arc<AtomicBool>);

impl Traffic {
    fn start(w: &World) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let port = w.port;
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = common::get_port(port, "/");
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Traffic(stop)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn doc_with_gate(w: &World, commit: &str, prom: &str) -> shipshape_spec::App {
    let mut app = w.app(commit);
    let gate = serde_json::json!({
        "name": "error-rate",
        "prometheus": { "url": prom, "query": ERROR_RATIO, "below": 0.01 }
    });
    app.spec
        .health
        .checks
        .push(serde_json::from_value(gate).expect("a valid prometheus check"));
    app.spec.health.interval = shipshape_spec::Duration::from_millis(500);
    app.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(30);
    app
}

#[test]
fn prometheus_checks_pass_fail_or_are_inconclusive_against_a_real_server() {
    let w = World::new("promcheck");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    assert_eq!(w.run_once().0, 0);
    let prom = Prometheus::start("app", &[format!("127.0.0.1:{}", w.port)]);
    let _traffic = Traffic::start(&w);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let check =
        |query: &str, below: Option<f64>, above: Option<f64>| -> shipshape_spec::app::Check {
            serde_json::from_value(serde_json::json!({
                "name": "q",
                "prometheus": { "url": prom.url, "query": query, "below": below, "above": above },
                "timeout": "2s"
            }))
            .unwrap()
        };
    // Wait until Prometheus has scraped enough for a rate.
    wait_for("the first rates", Duration::from_secs(30), || {
        let r = rt.block_on(shipshape::health::probe(
            &client,
            &check(ERROR_RATIO, Some(0.01), None),
        ));
        (r.state == ProbeState::Pass).then_some(())
    });
    let no_data = rt.block_on(shipshape::health::probe(
        &client,
        &check("no_such_metric_total", Some(1.0), None),
    ));
    assert_eq!(
        no_data.state,
        ProbeState::Inconclusive,
        "{}",
        no_data.detail
    );
    assert!(no_data.detail.contains("no data"));
    let too_much = rt.block_on(shipshape::health::probe(
        &client,
        &check("sum(process_resident_memory_bytes)", Some(1.0), None),
    ));
    assert_eq!(too_much.state, ProbeState::Fail, "{}", too_much.detail);
    assert!(
        too_much.detail.contains("is not below 1"),
        "{}",
        too_much.detail
    );
    let enough = rt.block_on(shipshape::health::probe(
        &client,
        &check("sum(process_resident_memory_bytes)", None, Some(1.0)),
    ));
    assert_eq!(enough.state, ProbeState::Pass, "{}", enough.detail);
    let bad_query = rt.block_on(shipshape::health::probe(
        &client,
        &check("sum(", Some(1.0), None),
    ));
    assert_eq!(bad_query.state, ProbeState::Fail, "{}", bad_query.detail);
    let down = rt.block_on(shipshape::health::probe(
        &client,
        &serde_json::from_value(serde_json::json!({"name":"q","prometheus":{"url": format!("http://127.0.0.1:{}", free_port()),"query":"up","below":1}})).unwrap(),
    ));
    assert_eq!(
        down.state,
        ProbeState::Inconclusive,
        "an unreachable Prometheus says nothing about the app"
    );
}

#[test]
fn an_error_rate_gate_reverts_a_rollout_whose_pages_fail_while_its_health_endpoint_is_fine() {
    let w = World::new("promgate");
    let prom = Prometheus::start("app", &[format!("127.0.0.1:{}", w.port)]);
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    assert_eq!(w.run_once().0, 0);
    let _traffic = Traffic::start(&w);
    w.commit_app(&doc_with_gate(&w, &v1, &prom.url));
    let d = w.start(&[]);
    w.wait_record("the gate adopted by the live revision", 90, &d, |r| {
        r.phase == Phase::Ready
            && r.live()
                .is_some_and(|l| l.document.spec.health.checks.len() == 2)
    });

    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let broken = server.replacen("    res.writeHead(200, { 'content-type': 'text/plain' });\n    res.end(`${process.env.GREETING", "    res.writeHead(500, { 'content-type': 'text/plain' });\n    res.end(`${process.env.GREETING", 1);
    assert_ne!(broken, server);
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(&[("server.js", &broken)], "v2 fails its pages");
    w.commit_app(&doc_with_gate(&w, &v2, &prom.url));
    let rec = w.wait_record("v2 reverted by the error-rate gate", 120, &d, |r| {
        r.revisions
            .iter()
            .any(|e| e.revision.app_commit == v2 && e.revision.outcome == Outcome::Reverted)
    });
    let v2rev = rec
        .revisions
        .iter()
        .find(|e| e.revision.app_commit == v2)
        .unwrap();
    assert!(
        v2rev.revision.message.contains("error-rate: value"),
        "{}",
        v2rev.revision.message
    );
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
}

/// The one Prometheus client (used by the `prometheus` check and `shipshape fleet`) against
/// the real server: a vector comes back as `data`; a query Prometheus cannot parse is
/// Rejected with its message; a port nobody listens on is Unreachable; an HTTP server that
/// is not Prometheus's query API (a 404 page) is Unreadable.
#[test]
fn an_instant_query_returns_data_or_says_rejected_unreachable_or_unreadable() {
    use shipshape::prometheus::{QueryError, instant_query};
    let prom = Prometheus::start("none", &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let ask =
        |base: &str, q: &str| rt.block_on(instant_query(&client, base, q, Duration::from_secs(5)));
    let data = ask(&prom.url, "vector(1)").expect("a vector");
    assert_eq!(data["resultType"], "vector", "{data}");
    assert_eq!(data["result"][0]["value"][1], "1", "{data}");
    match ask(&prom.url, "sum(") {
        Err(QueryError::Rejected { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("parse error"), "{message}");
        }
        other => panic!("not rejected: {other:?}"),
    }
    let nobody = format!("http://127.0.0.1:{}", free_port());
    assert!(
        matches!(ask(&nobody, "vector(1)"), Err(QueryError::Unreachable(_))),
        "a closed port is unreachable"
    );
    let elsewhere = format!("{}/not-the-api", prom.url);
    assert!(
        matches!(
            ask(&elsewhere, "vector(1)"),
            Err(QueryError::Unreadable { status: 404, .. })
        ),
        "an answer that is not Prometheus's JSON is unreadable"
    );
}

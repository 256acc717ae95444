//! The local API with the controller running: pins during an incident, tokens on every
//! mutating call, the watch stream, metrics, and notifications.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::World;
use shipshape_spec::status::{Phase, PinSource};

#[test]
fn a_pin_holds_through_two_commits_and_unpin_converges_to_the_newest() {
    let w = World::new("pinned");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });

    let out = w.shipshape(
        &[
            "pin",
            "pinned",
            "--reason",
            "incident 42: hold the stable version",
            "--by",
            "alice",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = w.record();
    let pin = rec.pin.as_ref().unwrap();
    assert_eq!(
        (pin.revision, pin.by.as_str(), pin.source),
        (1, "alice", PinSource::Cli)
    );

    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document(&v2));
    let v3 = w.commit_app_version("3.0.0");
    let c3 = w.commit_config(&w.document(&v3));
    let passes = w.record().passes;
    let rec = w.wait_record("passes that saw v3", 30, &d, |r| {
        r.passes >= passes + 3 && r.desired_config_commit.as_deref() == Some(c3.as_str())
    });
    assert_eq!(
        rec.desired_app_commit.as_deref(),
        Some(v3.as_str()),
        "the newest commit is shown as desired"
    );
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(rec.revisions.len(), 1, "a pinned app applied a commit");
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    let status = String::from_utf8_lossy(&w.shipshape(&["status"], &[]).stdout).into_owned();
    assert!(status.contains("pinned by alice: incident 42"), "{status}");

    // Drift is still corrected towards the pin.
    let out = std::process::Command::new(common::pm2_bin())
        .args(["stop", "pinned-web"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("PM2_HOME", w.pm2_home())
        .output()
        .unwrap();
    assert!(out.status.success());
    common::wait_for(
        "the stopped process to be restarted",
        Duration::from_secs(30),
        || (w.get("/version").as_deref() == Some("1.0.0")).then_some(()),
    );

    let out = w.shipshape(&["unpin", "pinned", "--by", "alice"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = w.wait_record("v3 healthy after unpin", 60, &d, |r| {
        r.phase == Phase::Ready && r.live().is_some_and(|l| l.revision.app_commit == v3)
    });
    assert!(rec.pin.is_none());
    assert_eq!(w.get("/version").as_deref(), Some("3.0.0"));
    assert!(
        !rec.revisions.iter().any(|r| r.revision.app_commit == v2),
        "the intermediate commit was applied"
    );
}

#[test]
fn mutating_calls_need_the_token_and_change_nothing_without_it() {
    let w = World::new("guarded");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);
    let token_file = w.state_dir().join("api-token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let body = r#"{"reason":"no token"}"#;
    for (path, token) in [
        ("/api/v1/apps/guarded/pin", None),
        ("/api/v1/apps/guarded/pin", Some("wrong-token")),
        (
            "/api/v1/apps/guarded/pin",
            Some(&d.token[..d.token.len() - 1]),
        ),
        ("/api/v1/apps/guarded/retry", None),
        ("/api/v1/apps/guarded/unpin", None),
        ("/api/v1/reconcile", None),
    ] {
        let (status, _) = d.post(path, body, token);
        assert_eq!(status, 401, "{path} with {token:?}");
    }
    assert!(
        w.record().pin.is_none(),
        "a call without the token changed state"
    );

    // Reads need no token.
    let (status, apps) = d.get("/api/v1/apps");
    assert_eq!(status, 200);
    assert!(apps.contains("\"name\":\"guarded\""), "{apps}");
    assert_eq!(d.get("/api/v1/apps/guarded/history").0, 200);
    assert_eq!(d.get("/api/v1/apps/nope").0, 404);

    let (status, pin) = d.post(
        "/api/v1/apps/guarded/pin",
        r#"{"reason":"with token","by":"bob"}"#,
        Some(&d.token),
    );
    assert_eq!(status, 200, "{pin}");
    assert_eq!(w.record().pin.unwrap().reason, "with token");
    let (status, _) = d.post(
        "/api/v1/apps/guarded/pin",
        r#"{"reason":""}"#,
        Some(&d.token),
    );
    assert_eq!(status, 400, "a pin needs a reason");
    let (status, _) = d.post("/api/v1/apps/guarded/unpin", "{}", Some(&d.token));
    assert_eq!(status, 200);
    assert!(w.record().pin.is_none());
}

#[test]
fn the_watch_stream_delivers_a_rollouts_events_in_order_and_metrics_and_notifications_follow() {
    // A webhook receiver standing in for Slack.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hook", hook.local_addr().unwrap());
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in hook.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut len = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });

    let w = World::new("watched");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let d = w.start(&["--notify-url", &hook_url]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);

    // Open the stream, then roll out v2.
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET /api/v1/watch HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document(&v2));

    let mut kinds: Vec<String> = Vec::new();
    let mut messages = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(data) = line.strip_prefix("data:") {
            let ev: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
            if ev["app"] != "watched" {
                continue;
            }
            kinds.push(ev["kind"].as_str().unwrap().to_string());
            messages.push(ev["message"].as_str().unwrap_or("").to_string());
            if kinds.last().map(String::as_str) == Some("phase-changed") && ev["phase"] == "Ready" {
                break;
            }
        }
    }
    assert_eq!(
        kinds,
        [
            "rollout-started",
            "phase-changed",
            "rollout-healthy",
            "phase-changed"
        ],
        "{messages:?}"
    );
    assert_eq!(messages[1], "Ready → Progressing");
    assert_eq!(messages[3], "Progressing → Ready");

    let (status, metrics) = d.get("/metrics");
    assert_eq!(status, 200);
    for needle in [
        "shipshape_rollouts_total{app=\"watched\",outcome=\"healthy\"} 2",
        "shipshape_reconcile_total{app=\"watched\",result=\"ready\"}",
        "shipshape_reconcile_duration_seconds_count{app=\"watched\"}",
        "shipshape_health_check_up{app=\"watched\",check=\"api\"} 1",
        "shipshape_app_info{app=\"watched\",config_commit=\"",
        "live_revision=\"2\",phase=\"Ready\",pinned=\"false\",reverted=\"false\"} 1",
        "# TYPE shipshape_rollouts_total counter",
    ] {
        assert!(metrics.contains(needle), "no {needle} in\n{metrics}");
    }

    common::wait_for("the notifications", Duration::from_secs(10), || {
        let got = received.lock().unwrap();
        (got.iter()
            .filter(|b| b.contains("\"app\":\"watched\""))
            .count()
            >= 4)
            .then_some(())
    });
    let got = received.lock().unwrap().join("\n");
    assert!(
        got.contains("\"text\":\"shipshape: watched rollout started"),
        "{got}"
    );
    assert!(
        got.contains("watched rollout healthy: revision 2 live and healthy"),
        "{got}"
    );
    assert!(
        !got.contains("phase-changed"),
        "phase changes are not notified"
    );
}

#[test]
fn the_api_refuses_a_non_loopback_address_unless_allowed() {
    let w = World::new("exposed");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let out = w.shipshape(&["run", "--listen", "0.0.0.0:0"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

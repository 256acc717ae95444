//! The API's edge against the real controller: held connections past the open-file limit,
//! Host and Origin (DNS rebinding), the token rotated at each start, the CLI over the Unix
//! socket and never sending the token to another listener, and a busy API port.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::apiedge::{self, Recorder, Start};
use common::{World, wait_for};
use shipshape_spec::status::Phase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The TCP listener's caps, as the controller sets them (controller/src/api/edge.rs).
const TCP_MAX_CONNECTIONS: usize = 256;
const TCP_MAX_SUBSCRIBERS: usize = 32;

/// What one event-stream client saw: the status of its answer, and whether the stream was
/// still open when the test let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subscriber {
    status: u16,
    held: bool,
}

/// Open an event stream on `addr` and hold it until `release`: its answer's status.
async fn subscribe(addr: String, release: Arc<AtomicBool>) -> Subscriber {
    let deadline = Duration::from_secs(150);
    let run = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
        s.write_all(format!("GET /api/v1/watch HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let status = String::from_utf8_lossy(&head)
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        // Hold the stream (reading its keep-alives) until released or closed.
        loop {
            if release.load(Ordering::SeqCst) {
                return Some(Subscriber { status, held: true });
            }
            match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Some(Subscriber {
                        status,
                        held: false,
                    });
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(deadline, run)
        .await
        .ok()
        .flatten()
        .unwrap_or(Subscriber {
            status: 0,
            held: false,
        })
}

/// A slowloris: send half a request head and wait; when the controller cuts it, again,
/// until `release`. Returns how long each held head lasted before it was cut.
async fn half_sent_heads(
    addr: String,
    release: Arc<AtomicBool>,
    cut_once: Arc<AtomicUsize>,
) -> Vec<Duration> {
    let mut cut = Vec::new();
    while !release.load(Ordering::SeqCst) {
        let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let head = format!("GET /api/v1/apps HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
        if s.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let sent = Instant::now();
        let mut buf = [0u8; 512];
        loop {
            if release.load(Ordering::SeqCst) {
                return cut;
            }
            match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    if cut.is_empty() {
                        cut_once.fetch_add(1, Ordering::SeqCst);
                    }
                    cut.push(sent.elapsed());
                    break;
                }
                _ => {}
            }
        }
    }
    cut
}

#[test]
fn eleven_hundred_held_connections_under_a_1024_file_limit_never_stop_reconciling_or_monitoring() {
    assert!(
        apiedge::raise_own_open_files() >= 4096,
        "this test holds 1,100 connections: it needs an open-file limit of 4096 or more"
    );
    let w = World::new("held");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    // systemd's default: 1024 open files (soft and hard, so the controller cannot raise it).
    let d = apiedge::start(
        &w,
        Start {
            nofile: Some((1024, 1024)),
            ..Default::default()
        },
    );
    w.wait_record("v1 healthy", 120, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });
    let pid = apiedge::pid(&w);
    let idle_fds = apiedge::open_fds(pid);
    let addr = d.url.trim_start_matches("http://").to_string();

    let done = Arc::new(AtomicBool::new(false));
    let most_fds = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, most) = (done.clone(), most_fds.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(apiedge::open_fds(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // 300 event-stream subscribers and 800 slowloris clients, all at once: 1,100.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let cut_once = Arc::new(AtomicUsize::new(0));
    let held_since = Instant::now();
    let subscribers: Vec<_> = (0..300)
        .map(|_| rt.spawn(subscribe(addr.clone(), release.clone())))
        .collect();
    let slow: Vec<_> = (0..800)
        .map(|_| {
            rt.spawn(half_sent_heads(
                addr.clone(),
                release.clone(),
                cut_once.clone(),
            ))
        })
        .collect();
    wait_for(
        "the controller to hold the connections",
        Duration::from_secs(30),
        || (apiedge::open_fds(pid) >= idle_fds + 200).then_some(()),
    );

    // Held: a new commit is seen, rolled out and verified; the CLI works.
    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document(&v2));
    let out = w.shipshape(&["reconcile"], &[]);
    assert!(
        out.status.success(),
        "the CLI failed while the API was flooded: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.wait_record("v2 rolled out and healthy while held", 180, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(2)
    });
    // ...and the monitor goes on checking (a round every 300 ms).
    let checked = |w: &World| w.record().health.map(|h| h.checked_at);
    let before = checked(&w);
    wait_for(
        "a monitor round while held",
        Duration::from_secs(20),
        || (checked(&w) != before).then_some(()),
    );
    assert_eq!(
        w.get("/version").as_deref(),
        Some("2.0.0"),
        "the app serves v2"
    );

    // Every slowloris client gets cut at least once (800 of them through 224 free places,
    // 5 s each), all the while the others hold on.
    wait_for(
        "every half-sent head to be cut once",
        Duration::from_secs(120),
        || (cut_once.load(Ordering::SeqCst) == 800).then_some(()),
    );
    let held_for = held_since.elapsed();
    assert!(
        checked(&w) != before || {
            let b = checked(&w);
            wait_for("a monitor round", Duration::from_secs(20), || {
                (checked(&w) != b).then_some(())
            });
            true
        }
    );
    release.store(true, Ordering::SeqCst);
    let subscribers: Vec<Subscriber> = rt.block_on(async {
        let mut out = Vec::new();
        for s in subscribers {
            out.push(s.await.unwrap());
        }
        out
    });
    let cuts: Vec<Vec<Duration>> = rt.block_on(async {
        let mut out = Vec::new();
        for s in slow {
            out.push(s.await.unwrap());
        }
        out
    });
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();

    let streams = subscribers.iter().filter(|s| s.status == 200).count();
    let refused = subscribers.iter().filter(|s| s.status == 503).count();
    assert_eq!(
        (streams, refused),
        (TCP_MAX_SUBSCRIBERS, 300 - TCP_MAX_SUBSCRIBERS),
        "subscribers past the cap get 503: {subscribers:?}"
    );
    assert!(
        subscribers
            .iter()
            .filter(|s| s.status == 200)
            .all(|s| s.held),
        "an accepted event stream was cut"
    );
    let all_cuts: Vec<Duration> = cuts.iter().flatten().copied().collect();
    assert!(
        cuts.iter().all(|c| !c.is_empty()),
        "{} of 800 half-sent heads were never cut",
        cuts.iter().filter(|c| c.is_empty()).count()
    );
    let shortest = all_cuts.iter().min().unwrap();
    assert!(
        *shortest >= Duration::from_secs(4),
        "a head was cut after {shortest:?}, before the 5 s header timeout"
    );
    let most = most_fds.load(Ordering::SeqCst);
    eprintln!(
        "open files: {idle_fds} idle, at most {most} while held for {held_for:?}; {} heads cut (first after {shortest:?}, longest held {:?})",
        all_cuts.len(),
        all_cuts.iter().max().unwrap()
    );
    assert!(
        most <= idle_fds + TCP_MAX_CONNECTIONS + 64 && most + 256 <= 1024,
        "the controller held {most} descriptors under a limit of 1024 ({idle_fds} when idle)"
    );
    let metrics = apiedge::socket_http(&apiedge::socket_path(&w), "GET", "/metrics", None, None).1;
    assert!(
        metrics.contains(&format!(
            "shipshape_api_refused_total{{listener=\"tcp\",reason=\"subscribers\"}} {}",
            300 - TCP_MAX_SUBSCRIBERS
        )),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(
        !log.contains("Too many open files") && !log.contains("os error 24"),
        "{}",
        d.log_tail(40)
    );
}

#[test]
fn a_foreign_host_or_a_foreign_origin_gets_nothing() {
    let w = World::new("rebind");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 120, &d, |r| r.phase == Phase::Ready);
    let addr = d.url.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();

    // What a page rebound to 127.0.0.1 would read: the records.
    let (status, body) = apiedge::tcp_http(&d.url, "GET", "/api/v1/apps", &addr, &[], "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&v1), "the records name the live commit");
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".to_string(),
        format!("127.0.0.1.nip.io:{port}"),
        format!("localhost.attacker.example:{port}"),
    ] {
        for path in [
            "/api/v1/apps",
            "/api/v1/apps/rebind",
            "/api/v1/apps/rebind/history",
            "/api/v1/source",
            "/api/v1/watch",
            "/metrics",
            "/healthz",
        ] {
            let (status, body) = apiedge::tcp_http(&d.url, "GET", path, &host, &[], "");
            assert_eq!(status, 421, "{path} with Host {host}: {body}");
            assert!(
                !body.contains(&v1) && !body.contains("rebind"),
                "{path} with Host {host} answered {body}"
            );
        }
    }
    // A browser page of another origin: refused on reads and writes, token or not.
    for origin in [
        format!("http://attacker.example:{port}"),
        "null".to_string(),
        "http://localhost:3000".to_string(),
    ] {
        let (status, body) = apiedge::tcp_http(
            &d.url,
            "GET",
            "/api/v1/apps",
            &addr,
            &[("Origin", &origin)],
            "",
        );
        assert_eq!(status, 403, "GET with Origin {origin}: {body}");
        assert!(!body.contains(&v1), "{body}");
        let auth = format!("Bearer {}", d.token);
        let (status, body) = apiedge::tcp_http(
            &d.url,
            "POST",
            "/api/v1/apps/rebind/pin",
            &addr,
            &[("Origin", &origin), ("Authorization", &auth)],
            r#"{"reason":"from a web page"}"#,
        );
        assert_eq!(status, 403, "pin with Origin {origin}: {body}");
        assert!(w.record().pin.is_none(), "a foreign origin pinned the app");
    }
    // The API's own origin, and each loopback name with the port, are served.
    let own = format!("http://{addr}");
    let (status, _) = apiedge::tcp_http(
        &d.url,
        "GET",
        "/api/v1/apps",
        &addr,
        &[("Origin", &own)],
        "",
    );
    assert_eq!(status, 200);
    let (status, _) = apiedge::tcp_http(
        &d.url,
        "GET",
        "/healthz",
        &format!("localhost:{port}"),
        &[],
        "",
    );
    assert_eq!(status, 200);
    let metrics = d.get("/metrics").1;
    assert!(
        metrics.contains(r#"shipshape_api_refused_total{listener="tcp",reason="host"} 28"#)
            && metrics.contains(r#"shipshape_api_refused_total{listener="tcp",reason="origin"} 6"#),
        "{metrics}"
    );
}

#[test]
fn the_token_is_new_at_each_start_and_the_old_one_is_refused() {
    let w = World::new("rotate");
    w.commit_config(&w.document(&w.app_head()));
    let d = w.start(&[]);
    let first = d.token.clone();
    assert_eq!(d.post("/api/v1/reconcile", "{}", Some(&first)).0, 202);
    drop(d);
    let d = w.start(&[]);
    assert_ne!(d.token, first, "the token was kept across a restart");
    assert_eq!(
        d.post("/api/v1/reconcile", "{}", Some(&first)).0,
        401,
        "the last start's token still works"
    );
    assert_eq!(d.post("/api/v1/reconcile", "{}", Some(&d.token)).0, 202);
    use std::os::unix::fs::PermissionsExt;
    let token_file = w.state_dir().join("api-token");
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(d.log_tail(400).contains("the previous one no longer works"));
}

#[test]
fn the_cli_goes_through_the_socket_and_never_sends_the_token_to_another_listener() {
    let w = World::new("cliway");
    w.commit_config(&w.document(&w.app_head()));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 120, &d, |r| r.phase == Phase::Ready);
    // A stale api.json naming a port where another process listens.
    let other = Recorder::start();
    let real_url = d.url.clone();
    apiedge::point_address_at(&w, &format!("http://{}", other.addr));
    let out = w.shipshape(
        &["pin", "cliway", "--reason", "incident 7", "--by", "alice"],
        &[],
    );
    // (A CLI that sent it anything would have waited for its answer: the listener reads
    // everything before it closes, so what it got is in by now.)
    assert_eq!(other.received(), "", "the CLI talked to the other listener");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(w.record().pin.is_some(), "the pin went nowhere");
    // It went through the socket: 0600, in the 0700 state directory.
    let sock = apiedge::socket_path(&w);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "api.sock");

    // Without the socket, the CLI checks the listener api.json names before any token.
    std::fs::remove_file(&sock).unwrap();
    let out = w.shipshape(&["unpin", "cliway", "--by", "alice"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "unpin went to the other listener");
    assert!(
        stderr.contains(&format!(
            "not sending the API token to http://{}",
            other.addr
        )) && stderr.contains("is not the controller"),
        "{stderr}"
    );
    assert!(w.record().pin.is_some());
    // The controller's own TCP listener passes the check.
    apiedge::point_address_at(&w, &real_url);
    let out = w.shipshape(&["unpin", "cliway", "--by", "alice"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(w.record().pin.is_none());

    // Once the controller stopped, a stale api.json left pointing at the other listener.
    let stale = apiedge::address(&w).unwrap();
    drop(d);
    let mut stale = stale;
    stale["url"] = serde_json::Value::String(format!("http://{}", other.addr));
    std::fs::write(w.state_dir().join("api.json"), stale.to_string()).unwrap();
    let out = w.shipshape(&["reconcile"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no controller holds the state directory"),
        "{stderr}"
    );
    assert_eq!(
        other.received(),
        "",
        "the other listener was sent something"
    );
}

#[test]
fn a_busy_api_port_never_stops_reconciling_and_status_and_metrics_say_the_api_is_not_listening() {
    let w = World::new("busyapi");
    w.commit_config(&w.document(&w.app_head()));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let d = apiedge::start(
        &w,
        Start {
            listen: Some(&addr),
            ..Default::default()
        },
    );
    w.wait_record("v1 healthy", 120, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });
    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document(&v2));
    w.wait_record("v2 healthy with the port busy", 120, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(2)
    });
    let status = String::from_utf8_lossy(&w.shipshape(&["status"], &[]).stdout).into_owned();
    assert!(
        status.contains(&format!("api NOT LISTENING on {addr}"))
            && status.contains("address already in use"),
        "{status}"
    );
    let sock = apiedge::socket_path(&w);
    let metric_on =
        |v: u8| format!("shipshape_api_listening{{address=\"{addr}\",listener=\"tcp\"}} {v}");
    let metrics = apiedge::socket_http(&sock, "GET", "/metrics", None, None).1;
    assert!(metrics.contains(&metric_on(0)), "{metrics}");
    let out = w.shipshape(&["reconcile"], &[]);
    assert!(
        out.status.success(),
        "the CLI: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The port freed: the controller binds it on its next try (back-off at most 30 s ±50 %).
    drop(taken);
    let url = format!("http://{addr}");
    wait_for("the API on its port", Duration::from_secs(90), || {
        (common::http(&url, "GET", "/healthz", None, None).0 == 200).then_some(())
    });
    let a = apiedge::address(&w).unwrap();
    assert_eq!(
        (a["listening"].as_bool(), a["url"].as_str()),
        (Some(true), Some(url.as_str()))
    );
    let metrics = apiedge::socket_http(&sock, "GET", "/metrics", None, None).1;
    assert!(metrics.contains(&metric_on(1)), "{metrics}");
    let status = String::from_utf8_lossy(&w.shipshape(&["status"], &[]).stdout).into_owned();
    assert!(!status.contains("NOT LISTENING"), "{status}");
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_at_start_and_the_unit_sets_one() {
    let w = World::new("nofile");
    w.commit_config(&w.document(&w.app_head()));
    let d = apiedge::start(
        &w,
        Start {
            nofile: Some((1024, 4096)),
            ..Default::default()
        },
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", apiedge::pid(&w))).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums, ["4096", "4096"], "{line}");
    assert!(
        d.log_tail(400)
            .contains("open-file limit raised from 1024 to 4096"),
        "{}",
        d.log_tail(40)
    );
    let unit =
        std::fs::read_to_string(common::workspace().join("examples/systemd/shipshape.service"))
            .unwrap();
    assert!(
        unit.lines().any(|l| l.trim() == "LimitNOFILE=65536"),
        "the systemd unit sets no LimitNOFILE"
    );
}

#[test]
fn bodies_too_large_or_too_slow_are_refused_and_requests_in_flight_are_capped() {
    use std::io::{Read, Write};
    const TCP_MAX_IN_FLIGHT: usize = 64;
    let w = World::new("bodies");
    w.commit_config(&w.document(&w.app_head()));
    let d = w.start(&[]);
    w.wait_record("v1 healthy", 120, &d, |r| r.phase == Phase::Ready);
    let addr = d.url.trim_start_matches("http://").to_string();

    // 100 KiB of reason: over the 64 KiB limit, refused before any handler sees it.
    let big = format!(r#"{{"reason":"{}"}}"#, "x".repeat(100 * 1024));
    let (status, body) = d.post("/api/v1/apps/bodies/pin", &big, Some(&d.token));
    assert_eq!(status, 413, "{body}");
    assert!(w.record().pin.is_none(), "an oversized pin was applied");

    // Bodies announced and never sent: each holds a place among the requests in flight
    // until the body deadline (10 s); past the cap, 503 at once.
    let slow: Vec<std::net::TcpStream> = (0..TCP_MAX_IN_FLIGHT)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "POST /api/v1/reconcile HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n",
                d.token
            )
            .unwrap();
            s
        })
        .collect();
    let busy = wait_for(
        "requests past the in-flight cap to be refused",
        Duration::from_secs(8),
        || {
            let (status, body) = d.get("/api/v1/apps");
            (status == 503).then_some(body)
        },
    );
    assert!(busy.contains("too many requests in flight"), "{busy}");
    let sent = Instant::now();
    let answers: Vec<String> = slow
        .into_iter()
        .map(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
        .collect();
    assert!(
        answers.iter().all(|a| a.starts_with("HTTP/1.1 408")),
        "{:?}",
        answers.first()
    );
    assert!(sent.elapsed() < Duration::from_secs(15));
    assert_eq!(d.get("/api/v1/apps").0, 200, "the places were given back");
}

#[test]
fn a_client_that_never_reads_its_answers_is_cut_after_the_write_timeout() {
    use std::io::Write;
    const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
    let w = World::new("unread");
    w.commit_config(&w.document(&w.app_head()));
    let d = w.start(&[]);
    let addr = d.url.trim_start_matches("http://").to_string();
    let sock = apiedge::socket_path(&w);
    let tcp_connections = || {
        let metrics = apiedge::socket_http(&sock, "GET", "/metrics", None, None).1;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("shipshape_api_connections{listener=\"tcp\"} "))
            .and_then(|n| n.trim().parse::<f64>().ok())
    };

    // Pipelined requests, their answers never read: the controller's writes stall once the
    // kernel's buffers are full, and then it stops reading too, so ours stall.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(64);
    let mut sent = 0usize;
    while s.write_all(request.as_bytes()).is_ok() {
        sent += request.len();
        assert!(
            sent < 256 << 20,
            "the controller answered 256 MiB of requests unread"
        );
    }
    let stalled = Instant::now();
    assert_eq!(
        tcp_connections(),
        Some(1.0),
        "the unread connection is held"
    );
    wait_for(
        "the unread connection to be cut",
        WRITE_TIMEOUT + Duration::from_secs(20),
        || (tcp_connections() == Some(0.0)).then_some(()),
    );
    eprintln!(
        "{sent} bytes of requests sent; cut {:?} after our writes stalled",
        stalled.elapsed()
    );
    assert_eq!(d.get("/healthz").0, 200, "the listener serves on");
    drop(s);
}

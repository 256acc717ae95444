//! Health latency is the app's, not the controller's: `maxLatency` fails a slow release and
//! passes a fast one (the example app's `HEALTH_DELAY_MS`), and a flood of read-only API
//! requests (256 concurrent connections on `/api/v1/apps`, `hey` when it is on PATH, else
//! 256 threads of kept-alive HTTP clients) while a `maxLatency: 100ms` check runs reverts
//! nothing: the live revision is never reported regressed, a good revision committed during
//! the flood becomes Healthy, the probe's median latency stays at most half `maxLatency`,
//! and the monitor keeps to its interval (any answer counts toward the flood, the API's 503s
//! past its in-flight cap too). Real git, real pm2, the example app, the real daemon.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::hey::spread;
use common::{AppEdit, World};
use shipshape_spec::status::{Outcome, Phase, ProbeState};

/// The default document with a `maxLatency` on its one HTTP check, the given health delay
/// of the app's `/api/health`, and rounds every `interval`.
fn doc(w: &World, commit: &str, delay_ms: u64, interval: Duration) -> shipshape_spec::App {
    let mut app = w.app(commit);
    app.health(interval, 2, 3, Duration::from_secs(60));
    let check = &mut app.spec.health.checks[0];
    check.max_latency = Some(shipshape_spec::Duration::from_millis(100));
    check.timeout = shipshape_spec::Duration::from_secs(2);
    app.env("HEALTH_DELAY_MS", &delay_ms.to_string());
    app
}

fn outcome(rec: &shipshape::state::AppRecord, n: u64) -> Option<Outcome> {
    rec.revision(n).map(|e| e.revision.outcome)
}

#[test]
fn a_release_whose_health_answers_in_400ms_fails_max_latency_100ms_and_is_reverted_and_one_at_5ms_is_healthy()
 {
    let w = World::new("slow");
    let v1 = w.app_head();
    w.commit_app(&doc(&w, &v1, 5, Duration::from_millis(300)));
    let (code, log) = w.run_once();
    assert_eq!(
        code, 0,
        "a 5 ms health answer is within maxLatency 100ms:\n{log}"
    );
    let rec = w.record();
    assert_eq!(outcome(&rec, 1), Some(Outcome::Healthy));

    w.commit_app(&doc(&w, &v1, 400, Duration::from_millis(300)));
    let (code, log) = w.run_once();
    assert_ne!(
        code, 0,
        "a 400 ms health answer passed maxLatency 100ms:\n{log}"
    );
    let rec = w.record();
    let two = &rec.revision(2).expect("revision 2 ran").revision;
    assert_eq!(two.outcome, Outcome::Reverted, "{two:#?}");
    assert!(
        two.message.contains("over maxLatency 100ms"),
        "the failure names maxLatency: {}",
        two.message
    );
    assert_eq!(rec.live_revision, Some(1), "{:#?}", rec.last_pass);
    // Revision 1 (5 ms) answers again.
    let body = common::wait_for("revision 1 answering", Duration::from_secs(20), || {
        w.get("/api/health")
    });
    assert!(body.contains("\"status\":\"ok\""), "{body}");
}

/// How the flood went: the load generator, what it sent, and how it ended.
struct Flood {
    tool: &'static str,
    responses: u64,
    summary: String,
}

/// 256 concurrent connections on `url` for `secs`: `hey` when it is on PATH, else 256
/// threads each sending requests on a kept-alive connection until the time is up.
fn flood(url: &str, secs: u64) -> Flood {
    if let Some((responses, summary)) = common::hey::hey(url, secs) {
        return Flood {
            tool: "hey",
            responses,
            summary,
        };
    }
    let hostport = url
        .trim_start_matches("http://")
        .split_once('/')
        .map(|(h, _)| h.to_string())
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..256)
        .map(|_| {
            let (hostport, count) = (hostport.clone(), count.clone());
            std::thread::spawn(move || {
                while Instant::now() < end {
                    // One kept-alive connection (as hey does), again after an error.
                    let Ok(mut s) = std::net::TcpStream::connect(&hostport) else {
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    while Instant::now() < end && keep_alive_get(&mut s, &hostport) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let responses = count.load(Ordering::Relaxed);
    Flood {
        tool: "256 threads",
        responses,
        summary: format!("{responses} responses"),
    }
}

/// One `GET /api/v1/apps` on a kept-alive connection, its whole answer read (by its
/// `Content-Length`); false when the connection failed or closed.
fn keep_alive_get(s: &mut std::net::TcpStream, hostport: &str) -> bool {
    use std::io::{Read, Write};
    let request = format!("GET /api/v1/apps HTTP/1.1\r\nHost: {hostport}\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return false;
    };
    std::io::copy(&mut s.take(len), &mut std::io::sink()).is_ok_and(|n| n == len)
}

/// GET /api/health on the app, timed by the test: (milliseconds, answered).
fn curl_ms(port: u16) -> (u64, bool) {
    let start = Instant::now();
    let ok = common::get_port(port, "/api/health").is_some_and(|b| b.contains("\"status\""));
    (start.elapsed().as_millis() as u64, ok)
}

#[test]
fn a_flood_of_256_connections_on_the_read_only_api_reverts_nothing_and_a_rollout_during_it_becomes_healthy()
 {
    const FLOOD_SECS: u64 = 18;
    let w = World::new("flood");
    let v1 = w.app_head();
    let interval = Duration::from_millis(400);
    w.commit_app(&doc(&w, &v1, 0, interval));
    // The monitor's rounds are counted in the log ("health round", at trace level).
    let d = w.start_with_env(
        &[],
        &[(
            "RUST_LOG",
            "info,shipshape=debug,shipshape::health::monitor=trace",
        )],
    );
    let monitor_rounds = || {
        std::fs::read_to_string(&d.log)
            .unwrap_or_default()
            .matches("health round")
            .count()
    };
    w.wait_record("revision 1 Healthy and monitored", 90, &d, |r| {
        r.phase == Phase::Ready
            && r.live_revision == Some(1)
            && r.health
                .as_ref()
                .is_some_and(|h| h.revision == 1 && h.consecutive_passes >= 2)
    });

    let url = format!("{}/api/v1/apps", d.url);
    let flooding = Arc::new(AtomicBool::new(true));
    let flood_started = Instant::now();
    let rounds_before = monitor_rounds();
    let load = {
        let (url, flooding) = (url.clone(), flooding.clone());
        std::thread::spawn(move || {
            let f = flood(&url, FLOOD_SECS);
            flooding.store(false, Ordering::SeqCst);
            f
        })
    };

    // While the flood runs: the app's latency as the test sees it, the controller's as it
    // records it, and anything regressed or reverted.
    let mut curl = Vec::new();
    let mut measured = Vec::new();
    let mut last_checked = None;
    let mut seen_bad: Vec<String> = Vec::new();
    let mut not_passing: Vec<String> = Vec::new();
    let mut committed_at = None;
    let mut healthy_during_flood = false;
    while flooding.load(Ordering::SeqCst) {
        let (ms, ok) = curl_ms(w.port);
        if ok {
            curl.push(ms);
        }
        if let Ok(rec) = w.store().load(&w.name) {
            if let Some(h) = &rec.health
                && Some(h.checked_at) != last_checked
            {
                last_checked = Some(h.checked_at);
                for r in h.results.iter().filter(|r| r.name == "api") {
                    measured.push(r.latency_ms);
                    if r.state != ProbeState::Pass || r.latency_ms > 100 {
                        not_passing.push(format!("{:?}: {}", r.state, r.detail));
                    }
                }
            }
            if let Some(r) = &rec.regression {
                seen_bad.push(format!(
                    "regression of revision {}: {}",
                    r.revision, r.reason
                ));
            }
            for e in &rec.revisions {
                if e.revision.outcome == Outcome::Reverted || e.revision.outcome == Outcome::Failed
                {
                    seen_bad.push(format!(
                        "revision {} {:?}: {}",
                        e.revision.number, e.revision.outcome, e.revision.message
                    ));
                }
            }
            if committed_at.is_some() && outcome(&rec, 2) == Some(Outcome::Healthy) {
                healthy_during_flood = true;
            }
        }
        // A good revision (a config-only change), committed 4 s into the flood.
        if committed_at.is_none() && flood_started.elapsed() > Duration::from_secs(4) {
            let mut two = doc(&w, &v1, 0, interval);
            two.env("FLOOD_ROLLOUT", "2");
            w.commit_app(&two);
            committed_at = Some(flood_started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let f = load.join().unwrap();
    let rounds = monitor_rounds() - rounds_before;
    let (c_min, c_med, c_max) = spread(&mut curl);
    let (m_min, m_med, m_max) = spread(&mut measured);
    eprintln!(
        "flood ({}, {FLOOD_SECS}s, 256 connections on /api/v1/apps): {}\n\
         the app's /api/health timed by the test: min {c_min} ms, median {c_med} ms, max {c_max} ms ({} samples)\n\
         the controller's measured latency (monitor rounds): min {m_min} ms, median {m_med} ms, max {m_max} ms ({} rounds seen; {rounds} in the log)\n\
         revision 2 committed {:?} into the flood; healthy before the flood ended: {healthy_during_flood}\n\
         monitor rounds not passing or over 100 ms: {not_passing:#?}",
        f.tool,
        f.summary,
        curl.len(),
        measured.len(),
        committed_at,
    );
    assert!(
        f.responses >= 500,
        "the flood did not really run: {} responses ({})",
        f.responses,
        f.summary
    );
    seen_bad.sort();
    seen_bad.dedup();
    assert!(
        seen_bad.is_empty(),
        "under the flood: {seen_bad:#?}\ncontroller log:\n{}",
        d.log_tail(40)
    );
    assert!(
        healthy_during_flood,
        "revision 2, committed {committed_at:?} into the flood, was not Healthy before it ended"
    );
    let rec = w.wait_record("revision 2 Healthy", 90, &d, |r| {
        outcome(r, 2).is_some_and(|o| o != Outcome::Progressing)
    });
    assert_eq!(
        outcome(&rec, 2),
        Some(Outcome::Healthy),
        "{:#?}\n{}",
        rec.revision(2),
        d.log_tail(40)
    );
    assert_eq!(rec.live_revision, Some(2));
    assert!(rec.regression.is_none(), "{:?}", rec.regression);
    assert!(rec.quarantined.is_empty(), "{:?}", rec.quarantined);
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(!log.contains("regressed"), "{}", d.log_tail(40));
    // The monitor keeps to its interval: at least a third of the rounds the flood's time
    // allows (24 to 38 of 45 here, under load from other builds; record reads on the
    // runtime thread left it 8, probes on the runtime thread 21).
    let allowed = (FLOOD_SECS * 1000 / interval.as_millis() as u64) as usize;
    assert!(
        rounds >= allowed / 3 && measured.len() >= 5,
        "the monitor took {rounds} rounds during the flood ({} seen by the test), of {allowed} its interval allows",
        measured.len()
    );
    // The probe times the app, not the flood: its median stays well under maxLatency.
    // (Probes run on the controller's runtime thread measured a median of 124 to 135 ms
    // under this flood: only the lateness excuse and failureThreshold kept the live
    // revision from a revert.)
    assert!(
        m_med <= 50,
        "the controller's median measured latency under the flood was {m_med} ms (the app's, timed by the test: {c_med} ms): {not_passing:#?}"
    );
}

//! Issue 18's promises on an app nobody wrote for shipshape, on a busy machine:
//! `examples/stock-express` (Express from npm, installed by `npm ci`; no shutdown code, no
//! readiness message, no switches; its `/health` answers 503 to a fifth of the requests at
//! random), with two CPU hogs (`sh -c 'while :; do :; done'`) running all through each
//! test. A broken version is made the way a developer breaks one: by editing `server.js`.
//! - blame by evidence: the flaky live release stays Healthy, never regressed, for 20 and
//!   more monitor rounds, and a broken commit landing right after one of its failed rounds
//!   is reverted and its config commit quarantined;
//! - a flood of 256 connections (`hey`) on the read-only API while a `maxLatency: 200ms`
//!   check runs reverts nothing, and a good commit during it becomes Healthy;
//! - a pin during a long build answers within 2 s and nothing of the new release goes live.
//!
//! Real git, real pm2 (fork mode with 1 process, cluster mode with 2), real npm, the real
//! daemon. The tests run one at a time (each has the hogs' load and no more).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::hey::{hey, spread};
use common::pins::{Sampler, process_gone, wait_for_pidfile, wait_until_exists};
use common::stock::{CpuHog, Mode, one_at_a_time};
use common::{Daemon, World, wait_for};
use shipshape::state::AppRecord;
use shipshape_spec::status::{Outcome, Phase, ProbeState};

/// Busy loops: one per core of the 2-core test machine.
const HOGS: usize = 2;

/// A fifth of the stock app's health answers fail at random. With failureThreshold 3 a
/// healthy release would fail 3 rounds in a row somewhere in 25 rounds 14% of the time (in
/// 50, 27%): by the rule, that is a regression, and a test that sees one is not seeing a
/// bug. failureThreshold 5 makes that 0.5% in 25 rounds (1.2% in 50), so a regression seen
/// here is the controller's doing. A failed round is still one in five.
const FAILURE_THRESHOLD: u32 = 5;

fn outcome(rec: &AppRecord, n: u64) -> Option<Outcome> {
    rec.revision(n).map(|e| e.revision.outcome)
}

/// The revisions reverted or failed, and the regression, if any: what must never be seen of
/// a healthy release.
fn bad_news(rec: &AppRecord) -> Vec<String> {
    let mut bad: Vec<String> = rec
        .revisions
        .iter()
        .filter(|e| matches!(e.revision.outcome, Outcome::Reverted | Outcome::Failed))
        .map(|e| {
            format!(
                "revision {} {:?}: {}",
                e.revision.number, e.revision.outcome, e.revision.message
            )
        })
        .collect();
    if let Some(r) = &rec.regression {
        bad.push(format!(
            "regression of revision {}: {}",
            r.revision, r.reason
        ));
    }
    bad
}

/// The body of `GET /` on the app ("hello from 1.0.0"), or None.
fn hello(w: &World) -> Option<String> {
    w.get("/")
}

/// Revision 1 of the stock app, from `doc`, live and Healthy under a running controller.
fn v1_live(w: &World, doc: &shipshape_spec::App) -> Daemon {
    w.commit_app(doc);
    let d = w.start(&[]);
    w.wait_record("revision 1 Healthy", 120, &d, |r| {
        r.phase == Phase::Ready && outcome(r, 1) == Some(Outcome::Healthy)
    });
    wait_for(
        "the stock app to serve 1.0.0",
        Duration::from_secs(30),
        || hello(w).filter(|b| b == "hello from 1.0.0"),
    );
    d
}

#[test]
fn the_flaky_stock_app_stays_healthy_for_20_rounds_under_a_cpu_hog_and_a_broken_commit_after_one_of_its_failed_rounds_is_reverted()
 {
    let _one = one_at_a_time();
    let mut hog = CpuHog::start(HOGS);
    let w = World::stock("stockblame");
    let v1 = w.app_head();
    let interval = Duration::from_millis(500);
    let d = v1_live(
        &w,
        &w.stock_app(&v1, Mode::Fork1, interval, FAILURE_THRESHOLD),
    );

    // At least 20 monitor rounds of revision 1: some fail (a fifth, at random), and it stays
    // Healthy, Ready, never regressed.
    let (mut rounds, mut failed, mut most_in_a_row) = (0u32, 0u32, 0u32);
    let mut last_checked = None;
    let started = Instant::now();
    while rounds < 20 || failed == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "only {rounds} monitor rounds ({failed} failed) of revision 1 in 90 s"
        );
        let rec = w.record();
        let bad = bad_news(&rec);
        assert!(
            bad.is_empty() && rec.phase == Phase::Ready && rec.live_revision == Some(1),
            "the flaky healthy release was blamed after {rounds} rounds ({failed} failed): {bad:#?} phase {:?}\n{}",
            rec.phase,
            d.log_tail(30)
        );
        if let Some(h) = rec.health.as_ref().filter(|h| h.revision == 1)
            && Some(h.checked_at) != last_checked
        {
            last_checked = Some(h.checked_at);
            rounds += 1;
            if h.results.iter().any(|r| r.state == ProbeState::Fail) {
                failed += 1;
            }
            most_in_a_row = most_in_a_row.max(h.consecutive_failures);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "revision 1: {rounds} monitor rounds seen in {:.1}s, {failed} failed, at most {most_in_a_row} in a row; Healthy throughout",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(outcome(&w.record(), 1), Some(Outcome::Healthy));

    // The next failed round of the healthy release (its hiccup) …
    let rec = w.wait_record("a failed monitor round of revision 1", 60, &d, |r| {
        r.health
            .as_ref()
            .is_some_and(|h| h.revision == 1 && h.consecutive_failures >= 1)
    });
    let hiccup = rec.health.as_ref().unwrap().clone();
    // … and, right after it, a broken commit: its /health always answers 500. Pushed with a
    // reconcile request (as a git hook would), so the pass starts before the next round.
    w.edit_server_js(
        "app.get('/health', (req, res) => {",
        "app.get('/health', (req, res) => {\n  return res.status(500).json({ status: 'broken' });",
        "health: report the new dependency",
    );
    let v2 = w.commit_app_version("2.0.0");
    let bad_config = w.commit_app(&w.stock_app(&v2, Mode::Fork1, interval, FAILURE_THRESHOLD));
    let (code, body) = d.post("/api/v1/apps/stockblame/reconcile", "{}", Some(&d.token));
    assert_eq!(code, 202, "{body}");
    let rec = w.wait_record("revision 2 concluded", 120, &d, |r| {
        outcome(r, 2).is_some_and(|o| o != Outcome::Progressing) && r.phase != Phase::Progressing
    });
    let two = rec.revision(2).unwrap();
    let ms = |t: &shipshape_spec::Timestamp| t.datetime().timestamp_millis();
    eprintln!(
        "revision 1's failed round at {} ({} in a row: {:?}); revision 2 started {} ms after it; {:?} at {:?}: {}",
        hiccup.checked_at,
        hiccup.consecutive_failures,
        hiccup
            .results
            .iter()
            .map(|r| r.detail.as_str())
            .collect::<Vec<_>>(),
        ms(&two.revision.started_at) - ms(&hiccup.checked_at),
        two.revision.outcome,
        two.revision.finished_at,
        two.revision.message
    );
    // The case under test: the rollout began before the monitor's next round could follow
    // the failed one (rounds are `interval` apart), so that failed round was the record's last.
    let gap = ms(&two.revision.started_at) - ms(&hiccup.checked_at);
    assert!(
        gap < interval.as_millis() as i64,
        "revision 2 started {gap} ms after revision 1's failed round: not right after it"
    );
    assert_eq!(
        two.revision.outcome,
        Outcome::Reverted,
        "the broken commit after one failed round of the flaky release was not reverted: {}\n{}",
        two.revision.message,
        d.log_tail(40)
    );
    assert!(!two.not_blamed, "{}", two.revision.message);
    assert!(
        !two.revision.message.contains("not blamed"),
        "{}",
        two.revision.message
    );
    assert_eq!(rec.live_revision, Some(1));
    assert!(
        rec.is_quarantined(&bad_config),
        "the broken config commit is not quarantined: {:?}",
        rec.quarantined
    );
    assert_eq!(outcome(&rec, 1), Some(Outcome::Healthy));
    // The flaky release serves again (the fork-mode restart brought 1.0.0 back).
    wait_for("1.0.0 serving again", Duration::from_secs(30), || {
        hello(&w).filter(|b| b == "hello from 1.0.0")
    });
    hog.assert_running();
}

#[test]
fn a_hey_flood_on_the_api_under_a_cpu_hog_reverts_nothing_of_the_stock_app_and_a_good_commit_during_it_becomes_healthy()
 {
    const FLOOD_SECS: u64 = 15;
    if Command::new("hey").arg("-h").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "hey is not on PATH (CI requires it: apt-get install hey)"
        );
        eprintln!("SKIPPED: hey is not on PATH");
        return;
    }
    let _one = one_at_a_time();
    let mut hog = CpuHog::start(HOGS);
    let w = World::stock("stockflood");
    let v1 = w.app_head();
    let interval = Duration::from_millis(400);
    let doc = |commit: &str| {
        let mut app = w.stock_app(commit, Mode::Cluster2, interval, FAILURE_THRESHOLD);
        app.spec.health.checks[0].max_latency = Some(shipshape_spec::Duration::from_millis(200));
        app
    };
    let d = v1_live(&w, &doc(&v1));
    let before = w.wait_record("monitor rounds of revision 1", 60, &d, |r| {
        r.health
            .as_ref()
            .is_some_and(|h| h.revision == 1 && h.consecutive_passes >= 2)
    });

    let url = format!("{}/api/v1/apps", d.url);
    let flooding = Arc::new(AtomicBool::new(true));
    let flood_started = Instant::now();
    let load = {
        let (url, flooding) = (url.clone(), flooding.clone());
        std::thread::spawn(move || {
            let f = hey(&url, FLOOD_SECS);
            flooding.store(false, Ordering::SeqCst);
            f
        })
    };
    // While it runs: the app's latency as the test sees it, the controller's as it records
    // it, and anything reverted or regressed.
    let (mut curl, mut measured, mut slow_rounds) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen_bad: Vec<String> = Vec::new();
    // Only rounds taken under the flood count.
    let mut last_checked = before.health.unwrap().checked_at;
    let mut committed_at = None;
    let mut v2 = String::new();
    let mut healthy_during_flood = None;
    while flooding.load(Ordering::SeqCst) {
        let t = Instant::now();
        if common::get_port(w.port, "/health").is_some() {
            curl.push(t.elapsed().as_millis() as u64);
        }
        if let Ok(rec) = w.store().load(&w.name) {
            if let Some(h) = &rec.health
                && h.checked_at != last_checked
            {
                last_checked = h.checked_at;
                for r in &h.results {
                    measured.push(r.latency_ms);
                    if r.detail.contains("maxLatency") {
                        slow_rounds.push(format!("{:?}: {}", r.state, r.detail));
                    }
                }
            }
            seen_bad.extend(bad_news(&rec));
            if healthy_during_flood.is_none() && outcome(&rec, 2) == Some(Outcome::Healthy) {
                healthy_during_flood = Some(flood_started.elapsed());
            }
        }
        // A good commit (2.0.0: npm ci, a cluster reload, a verification) once the monitor
        // took 6 rounds under the flood (it takes none while a pass holds the app).
        if committed_at.is_none()
            && measured.len() >= 6
            && flood_started.elapsed() > Duration::from_secs(2)
        {
            v2 = w.commit_app_version("2.0.0");
            w.commit_app(&doc(&v2));
            committed_at = Some(flood_started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let flood = load.join().unwrap();
    let (c_min, c_med, c_max) = spread(&mut curl);
    let (m_min, m_med, m_max) = spread(&mut measured);
    eprintln!(
        "hey -c 256 -z {FLOOD_SECS}s on /api/v1/apps under {HOGS} CPU hogs: {:?}\n\
         the stock app's /health timed by the test: min {c_min} ms, median {c_med} ms, max {c_max} ms ({} samples)\n\
         the controller's measured latency: min {m_min} ms, median {m_med} ms, max {m_max} ms ({} rounds)\n\
         revision 2 committed {committed_at:?} into the flood, Healthy {healthy_during_flood:?} into it\n\
         rounds over maxLatency: {slow_rounds:#?}",
        flood.as_ref().map(|f| &f.1),
        curl.len(),
        measured.len(),
    );
    let (responses, summary) = flood.expect("hey ran");
    assert!(
        responses >= 500,
        "the flood did not really run: {responses} responses ({summary})"
    );
    seen_bad.sort();
    seen_bad.dedup();
    assert!(
        seen_bad.is_empty(),
        "under the flood: {seen_bad:#?}\n{}",
        d.log_tail(40)
    );
    assert!(
        committed_at.is_some(),
        "only {} monitor rounds during the {FLOOD_SECS} s flood",
        measured.len()
    );
    // The controller's clock is the app's, not the flood's: the probes run apart from the
    // API, so the latency they measure stays near what the test sees (a median of a few ms
    // in our runs; probed on the runtime the API shares, it was 171 ms).
    assert!(
        m_med < 100,
        "the controller measured a median {m_med} ms (max {m_max} ms) for an app the test saw answer in {c_med} ms (max {c_max} ms): the flood reaches its probes"
    );
    let rec = w.wait_record("revision 2 concluded", 120, &d, |r| {
        outcome(r, 2).is_some_and(|o| o != Outcome::Progressing) && r.phase != Phase::Progressing
    });
    assert_eq!(
        outcome(&rec, 2),
        Some(Outcome::Healthy),
        "{:#?}\n{}",
        rec.revision(2),
        d.log_tail(40)
    );
    assert_eq!(rec.revision(2).unwrap().revision.app_commit, v2);
    assert_eq!(rec.live_revision, Some(2));
    assert!(bad_news(&rec).is_empty(), "{:?}", bad_news(&rec));
    assert!(rec.quarantined.is_empty(), "{:?}", rec.quarantined);
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(!log.contains("regressed"), "{}", d.log_tail(40));
    assert_eq!(hello(&w).as_deref(), Some("hello from 2.0.0"));
    hog.assert_running();
}

#[test]
fn a_pin_during_a_long_build_of_the_stock_app_under_a_cpu_hog_answers_within_2s_and_nothing_new_goes_live()
 {
    let _one = one_at_a_time();
    let mut hog = CpuHog::start(HOGS);
    let w = World::stock("stockpin");
    let v1 = w.app_head();
    let interval = Duration::from_millis(500);
    let d = v1_live(
        &w,
        &w.stock_app(&v1, Mode::Fork1, interval, FAILURE_THRESHOLD),
    );
    let r1 = w.record().revision(1).unwrap().release.clone();
    let pids = w.pm2_pids();

    // 2.0.0 with a build step that waits for a gate the test never opens before the pin.
    let (pidfile, gate) = (w.file("build.pid"), w.file("go"));
    let v2 = w.commit_app_version("2.0.0");
    let mut doc = w.stock_app(&v2, Mode::Fork1, interval, FAILURE_THRESHOLD);
    doc.spec.build.steps = vec![format!(
        "echo $$ > '{}'; {}",
        pidfile.display(),
        wait_until_exists(&gate)
    )];
    w.commit_app(&doc);
    // Never, all through: `current` off revision 1's release, or anything but 1.0.0 served.
    let watch = {
        let (root, release, port) = (w.releases_root(), r1.clone(), w.port);
        Sampler::start(move || {
            let current = shipshape::release::Layout::new(&root).current_release();
            if current.as_deref() != Some(release.as_str()) {
                return Some(format!("current pointed at {current:?}"));
            }
            match common::get_port(port, "/") {
                Some(b) if b != "hello from 1.0.0" => Some(format!("the app served {b:?}")),
                _ => None,
            }
        })
    };
    let build = wait_for_pidfile("the long build to start", &pidfile, Duration::from_secs(90));

    let args = [
        "pin", "stockpin", "1", "--reason", "incident", "--by", "ana",
    ];
    let (out, took) = w.shipshape_timed(&args, Duration::from_secs(15));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("`shipshape pin` during the stock app's long build answered in {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "the pin took {took:?}: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("pinned at revision 1 by ana: incident"),
        "{said}"
    );
    assert_eq!(w.record().pin.map(|p| p.revision), Some(1));
    wait_for(
        "the build's process group to be killed",
        Duration::from_secs(10),
        || process_gone(build).then_some(()),
    );
    let rec = w.wait_record("revision 2 stopped by the pin", 60, &d, |r| {
        outcome(r, 2) == Some(Outcome::Superseded)
    });
    let stopped = &rec.revision(2).unwrap().revision;
    eprintln!("revision 2: {}", stopped.message);
    assert!(
        stopped.message.starts_with("stopped during build")
            && stopped
                .message
                .ends_with("pinned at revision 1 by ana (incident)"),
        "{}",
        stopped.message
    );
    assert_eq!(stopped.live_at, None, "a step that changes live state ran");
    // The gate opens: nothing resumes the stopped rollout.
    std::fs::write(&gate, "").unwrap();
    let passes = rec.passes;
    let rec = w.wait_record("two passes under the pin", 60, &d, |r| {
        r.passes >= passes + 2 && r.phase == Phase::Ready
    });
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(w.current().as_deref(), Some(r1.as_str()));
    assert_eq!(w.pm2_pids(), pids, "the stock app's process was replaced");
    let seen = watch.stop();
    assert!(seen.is_empty(), "while pinned: {seen:?}");
    hog.assert_running();
}

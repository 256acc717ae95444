//! Fleet rollouts in waves (`spec.rollout`) against the real components: three controllers
//! on one machine (`--hostname web-N --label role=web`, each with its own state dir, pm2
//! home, app port and releases root) following one config repo, scraped every second by a
//! real Prometheus that their wave gates ask. web-1 is the canary; web-2 and web-3 are the
//! wave `web`, one host at a time (`maxParallel: 1`, in name order). The test shows, from the controllers' own records, pm2's
//! process lists and the release directories:
//! 1. a good commit (the first deploy, then another) reaches the canary first, and the
//!    others only once the canary has run it, Ready, for the soak;
//! 2. a broken commit is reverted on the canary and never reaches the others (no
//!    revision, no release directory, no pm2 process of it), whose gate shows `failed`
//!    naming web-1 in status, plan, metrics and the fleet view;
//! 3. Prometheus down is a hold, never a go: the canary takes a new commit (the first
//!    wave needs no data), the others hold on `noData` and keep running what they ran,
//!    and go on once Prometheus is back.
//!
//! Run with `--nocapture` for the timeline.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::fleet::{self, Fleet, Host, pm2_processes, resolved};
use common::prometheus::Prometheus;
use common::stub::{Stub, answer};
use common::{AppEdit, Daemon, revision_of};
use shipshape::state::AppRecord;
use shipshape_spec::Timestamp;
use shipshape_spec::rollout::Rollout;
use shipshape_spec::status::{GateState, Outcome, Phase};

/// `spec.rollout.soak`: how long the canary must run a commit, Ready, before wave `web`.
const SOAK: Duration = Duration::from_secs(7);

/// The rollout every host's document carries.
fn rollout(prometheus: &str) -> Rollout {
    fleet::rollout(serde_json::json!({
        "prometheus": prometheus,
        "waves": [
            { "name": "canary", "hosts": { "names": ["web-1"] } },
            { "name": "web", "hosts": { "labels": { "role": "web" } }, "maxParallel": 1 },
        ],
        "soak": format!("{}s", SOAK.as_secs()),
        "fresh": "3s",
        "timeout": "2s",
    }))
}

/// Each host's document: quick health rounds, a short progress deadline, automatic revert.
fn tuned(_: &Host, app: &mut shipshape_spec::App) {
    app.health(Duration::from_millis(300), 2, 3, Duration::from_secs(6))
        .rollback(true, Duration::from_secs(600));
}

/// Milliseconds since the epoch.
fn ms(t: Timestamp) -> i64 {
    t.datetime().timestamp_millis()
}

/// Seconds from `t0` to `t`, for the timeline.
fn rel(t0: Timestamp, t: Timestamp) -> f64 {
    (ms(t) - ms(t0)) as f64 / 1000.0
}

/// The gate states each host's record went through, as first seen (for the timeline).
#[derive(Default)]
struct GateLog {
    seen: Vec<(f64, String, String, &'static str, String)>,
    last: BTreeMap<String, (String, GateState)>,
}

impl GateLog {
    fn note(&mut self, t0: Timestamp, host: &str, rec: &AppRecord) {
        let Some(g) = &rec.wave_gate else { return };
        let key = (g.app_commit.clone(), g.state);
        if self.last.get(host) != Some(&key) {
            self.seen.push((
                rel(t0, g.checked_at),
                host.to_string(),
                g.app_commit[..8].to_string(),
                g.state.word(),
                g.message.clone(),
            ));
            self.last.insert(host.to_string(), key);
        }
    }
}

/// The three records, polled every 100 ms until `f` (which may assert what must hold all
/// along) returns Some; panics after `secs` with the records and the controllers' logs.
fn poll<T>(
    fleet: &Fleet,
    daemons: &[Daemon],
    what: &str,
    secs: u64,
    mut f: impl FnMut(&[AppRecord]) -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        let recs: Option<Vec<AppRecord>> = fleet
            .hosts
            .iter()
            .map(|h| h.world.store().load(&fleet.app).ok())
            .collect();
        if let Some(recs) = &recs
            && let Some(t) = f(recs)
        {
            return t;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let mut report = format!("timed out after {secs}s waiting for {what}\n");
            for (h, d) in fleet.hosts.iter().zip(daemons) {
                let rec = h.world.store().load(&fleet.app).ok();
                report.push_str(&format!(
                    "--- {}: {:#?}\n{}\n",
                    h.name,
                    rec.map(|r| (
                        r.phase,
                        r.live_revision,
                        r.revisions
                            .iter()
                            .map(|e| e.revision.clone())
                            .collect::<Vec<_>>(),
                        r.wave_gate
                    )),
                    d.log_tail(25)
                ));
            }
            panic!("{report}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ready, live on `commit`.
fn ready_on(r: &AppRecord, commit: &str) -> bool {
    r.phase == Phase::Ready && r.live().is_some_and(|l| l.revision.app_commit == commit)
}

/// Whether `rec` has a revision of `commit`.
fn has_revision(rec: &AppRecord, commit: &str) -> bool {
    rec.revisions
        .iter()
        .any(|e| e.revision.app_commit == commit)
}

/// Check that wave `web` took `commit` only after the canary ran it, Ready, for the soak:
/// each later host's revision started no earlier than the canary's went live + soak (the
/// soak counts Prometheus's samples of it Ready, which come after it went live and after
/// it became Ready). Returns the timeline's lines.
fn check_waited(recs: &[AppRecord], commit: &str, t0: Timestamp, what: &str) -> Vec<String> {
    let canary = &revision_of(&recs[0], commit).revision;
    let live = canary.live_at.expect("the canary's revision went live");
    let ready = canary.finished_at.expect("the canary's revision finished");
    let soak = SOAK.as_millis() as i64;
    let mut lines = vec![format!(
        "{what}: canary web-1 started {:.1}s, live {:.1}s, Ready {:.1}s; soak {}s → wave web may start from {:.1}s",
        rel(t0, canary.started_at),
        rel(t0, live),
        rel(t0, ready),
        SOAK.as_secs(),
        rel(t0, live) + SOAK.as_secs_f64(),
    )];
    for (i, rec) in recs.iter().enumerate().skip(1) {
        let r = &revision_of(rec, commit).revision;
        let after_live = (ms(r.started_at) - ms(live)) as f64 / 1000.0;
        let after_ready = (ms(r.started_at) - ms(ready)) as f64 / 1000.0;
        lines.push(format!(
            "{what}: web-{} started {:.1}s ({after_live:.1}s after the canary went live, {after_ready:.1}s after it was Ready), live {:.1}s",
            i + 1,
            rel(t0, r.started_at),
            rel(t0, r.live_at.unwrap_or(r.started_at)),
        ));
        assert!(
            ms(r.started_at) >= ms(live) + soak,
            "{what}: web-{} started {commit} {after_live:.3}s after the canary's revision went live, before the soak ({}s) was over",
            i + 1,
            SOAK.as_secs()
        );
        // Prometheus can only have seen it Ready after it became Ready (a scrape's
        // timestamp precedes its answer by at most the scrape's time: 1 s allowed).
        assert!(
            ms(r.started_at) + 1000 >= ms(ready) + soak,
            "{what}: web-{} started {commit} {after_ready:.3}s after the canary became Ready, before the soak ({}s) was over",
            i + 1,
            SOAK.as_secs()
        );
    }
    // Wave web takes it one host at a time, in name order: web-3 only once web-2 runs it,
    // Ready (Prometheus saw it so after it finished, at most a scrape later).
    let (web2, web3) = (
        &revision_of(&recs[1], commit).revision,
        &revision_of(&recs[2], commit).revision,
    );
    let web2_ready = web2.finished_at.expect("web-2's revision finished");
    lines.push(format!(
        "{what}: web-3 started {:.1}s after web-2 was Ready (maxParallel 1)",
        (ms(web3.started_at) - ms(web2_ready)) as f64 / 1000.0
    ));
    assert!(
        ms(web3.started_at) + 1000 >= ms(web2_ready),
        "{what}: web-3 started {commit} before web-2 ran it, Ready: wave web takes one host at a time"
    );
    lines
}

/// What the pm2 process lists of the hosts showed while polled: per host, each poll's
/// (processes' `SHIPSHAPE_COMMIT`s, their `pm_cwd`s, where `current` led).
type Pm2Seen = Vec<Vec<(Vec<String>, Vec<String>, Option<std::path::PathBuf>)>>;

/// Sets its flag when dropped: a scope's watcher thread ends even when the scope panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Poll every host's `pm2 jlist` (its own PM2_HOME) and its `current` symlink until `stop`.
fn watch_pm2(fleet: &Fleet, stop: &AtomicBool) -> Pm2Seen {
    let mut seen: Pm2Seen = vec![Vec::new(); fleet.hosts.len()];
    while !stop.load(Ordering::SeqCst) {
        for (i, h) in fleet.hosts.iter().enumerate() {
            let procs = pm2_processes(&h.world);
            seen[i].push((
                procs.iter().map(|p| p.1.clone()).collect(),
                procs.iter().map(|p| p.2.clone()).collect(),
                resolved(&h.world.releases_root().join("current")),
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    seen
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_commit_reaches_the_canary_first_a_broken_one_stops_there_and_no_data_is_a_hold() {
    let started = Instant::now();
    let t0 = Timestamp::now();
    let mut timeline: Vec<String> = Vec::new();
    let mut gates = GateLog::default();
    let mut prom = Prometheus::start("shipshape", &[]);
    let web: &[(&str, &str)] = &[("role", "web")];
    let fleet = Fleet::new("shop", &[("web-1", web), ("web-2", web), ("web-3", web)]);
    let plan = rollout(&prom.url);
    let repos = &fleet.repos;

    // 1. The first deploy: the canary first; web-2 and web-3, with nothing live, wait
    // undeployed until it has run v1, Ready, for the soak.
    let v1 = repos.app_head();
    fleet.commit_with(&v1, Some(&plan), tuned);
    // web-2 posts its notifications to a stand-in webhook (the wave-held one is checked in
    // the broken phase).
    let hook = Stub::start(|req| {
        req.line
            .starts_with("POST")
            .then(|| answer("200 OK", &["connection: close"], "ok"))
    });
    let notify_file = fleet.host("web-2").world.root().join("notify-url");
    std::fs::write(&notify_file, format!("{}/hooks/fleet\n", hook.url())).unwrap();
    std::fs::set_permissions(&notify_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemons: Vec<Daemon> = fleet
        .hosts
        .iter()
        .map(|h| match h.name.as_str() {
            "web-2" => fleet.start(h, &["--notify-url-file", notify_file.to_str().unwrap()]),
            _ => fleet.start(h, &[]),
        })
        .collect();
    prom.scrape("shipshape", &fleet::targets(&daemons));
    let mut held_undeployed = [false; 3];
    let recs = poll(&fleet, &daemons, "every host Ready on v1", 120, |recs| {
        for (i, rec) in recs.iter().enumerate() {
            gates.note(t0, &fleet.hosts[i].name, rec);
            if i > 0
                && let Some(g) = &rec.wave_gate
                && g.app_commit == v1
                && g.holds()
                && rec.revisions.is_empty()
            {
                assert_eq!(rec.live_revision, None, "{}", fleet.hosts[i].name);
                assert!(
                    fleet.hosts[i].releases_of(&v1).is_empty(),
                    "web-{} prepared v1 while its gate held",
                    i + 1
                );
                held_undeployed[i] = true;
            }
        }
        recs.iter().all(|r| ready_on(r, &v1)).then(|| recs.to_vec())
    });
    timeline.extend(check_waited(&recs, &v1, t0, "v1 (first deploy)"));
    assert_eq!(
        held_undeployed,
        [false, true, true],
        "web-2 and web-3 must have waited undeployed while the canary soaked"
    );

    // A second good commit: the same order, the others keep v1 meanwhile.
    let v2 = repos.commit_app_version("2.0.0");
    let config2 = fleet.commit_with(&v2, Some(&plan), tuned);
    timeline.push(format!("v2 committed at {:.1}s", rel(t0, Timestamp::now())));
    let recs = poll(&fleet, &daemons, "every host Ready on v2", 120, |recs| {
        for (i, rec) in recs.iter().enumerate().skip(1) {
            gates.note(t0, &fleet.hosts[i].name, rec);
            if !has_revision(rec, &v2) {
                assert!(
                    rec.live().is_some_and(|l| l.revision.app_commit == v1),
                    "web-{} does not hold v1 while waiting for v2",
                    i + 1
                );
            }
        }
        gates.note(t0, "web-1", &recs[0]);
        recs.iter().all(|r| ready_on(r, &v2)).then(|| recs.to_vec())
    });
    timeline.extend(check_waited(&recs, &v2, t0, "v2"));
    for rec in &recs {
        assert_eq!(rec.desired_config_commit.as_deref(), Some(config2.as_str()));
    }

    // 2. A broken commit: its health endpoint answers 500. The canary reverts it; web-2
    // and web-3 never run it, while their pm2 process lists are watched all along.
    let server = std::fs::read_to_string(fleet.app_repo().join("server.js")).unwrap();
    let broken = server.replacen("res.writeHead(ok ? 200 : 503", "res.writeHead(500", 1);
    assert_ne!(broken, server, "the example app changed shape");
    repos.commit_app_version("3.0.0");
    let v3 = repos.commit_app_files(&[("server.js", &broken)], "v3 answers 500 on /api/health");
    let stop = AtomicBool::new(false);
    let (pm2_seen, recs) = std::thread::scope(|s| {
        let watcher = s.spawn(|| watch_pm2(&fleet, &stop));
        // A failing assertion below must stop the watcher too, or the scope waits for it
        // forever (and the test hangs instead of failing).
        let _stop_on_panic = StopOnDrop(&stop);
        let t_commit = Timestamp::now();
        fleet.commit_with(&v3, Some(&plan), tuned);
        let recs = poll(
            &fleet,
            &daemons,
            "v3 reverted on web-1 and failed at web-2's and web-3's gates",
            120,
            |recs| {
                for (i, rec) in recs.iter().enumerate() {
                    gates.note(t0, &fleet.hosts[i].name, rec);
                }
                let reverted = recs[0].revisions.iter().any(|e| {
                    e.revision.app_commit == v3 && e.revision.outcome == Outcome::Reverted
                }) && recs[0].live().is_some_and(|l| l.revision.app_commit == v2);
                let failed = recs[1..].iter().all(|r| {
                    r.wave_gate
                        .as_ref()
                        .is_some_and(|g| g.app_commit == v3 && g.state == GateState::Failed)
                });
                (reverted && failed).then(|| recs.to_vec())
            },
        );
        let v3_rev = &revision_of(&recs[0], &v3).revision;
        timeline.push(format!(
            "v3 (broken) committed at {:.1}s; canary started {:.1}s, live {:.1}s, reverted {:.1}s",
            rel(t0, t_commit),
            rel(t0, v3_rev.started_at),
            rel(t0, v3_rev.live_at.unwrap_or(v3_rev.started_at)),
            rel(t0, v3_rev.finished_at.unwrap_or(v3_rev.started_at)),
        ));

        // What web-2 says about it: status, plan, metrics; and the fleet view.
        let h2 = fleet.host("web-2");
        let out = fleet.shipshape(h2, &["status", "shop", "-o", "json"], false);
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        let gate = &status[0]["waveGate"];
        assert_eq!(gate["state"], "failed", "{gate}");
        assert_eq!(gate["wave"], "web", "{gate}");
        assert_eq!(gate["appCommit"], v3.as_str(), "{gate}");
        let message = gate["message"].as_str().unwrap_or("");
        assert!(message.contains("failed on web-1 (reverted)"), "{gate}");
        assert_eq!(gate["hosts"][0]["host"], "web-1", "{gate}");
        assert!(
            gate["marks"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["host"] == "web-1")),
            "{gate}"
        );
        let out = fleet.shipshape(h2, &["status", "shop"], false);
        let shown = text(&out);
        assert!(
            shown
                .lines()
                .any(|l| l.trim_start().starts_with("wave") && l.contains("web (2 of 2): failed")),
            "{shown}"
        );
        let out = fleet.shipshape(h2, &["plan"], true);
        let planned = text(&out);
        println!("web-2's plan during the broken phase:\n{planned}");
        let hold = planned
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["HOLD", "wave"]))
            .unwrap_or_else(|| panic!("no HOLD wave line in web-2's plan:\n{planned}"));
        assert!(
            hold.contains("wave web (2 of 2) holds revision") && hold.contains("failed on web-1"),
            "{hold}"
        );
        // … and told its webhook, once.
        let held = common::wait_for(
            "web-2's wave-held notification",
            Duration::from_secs(30),
            || {
                let posts: Vec<String> = hook
                    .seen()
                    .into_iter()
                    .filter(|r| r.body.contains("wave HELD") && r.body.contains(&v3[..12]))
                    .map(|r| r.body)
                    .collect();
                (!posts.is_empty()).then_some(posts)
            },
        );
        assert_eq!(held.len(), 1, "one notification of the hold: {held:?}");
        assert!(
            held[0].contains("failed on web-1 (reverted)") && held[0].contains("\"wave-held\""),
            "{}",
            held[0]
        );
        let (code, metrics) = daemons[1].get("/metrics");
        assert_eq!(code, 200);
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("shipshape_app_wave_held_seconds{")
                    && l.contains("app=\"shop\"")
                    && l.contains("wave=\"web\"")
                    && l.contains("cause=\"failed\"")),
            "{}",
            metrics
                .lines()
                .filter(|l| l.contains("wave"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // The fleet view, once Prometheus has scraped the revert.
        let table = common::wait_for(
            "the fleet view to show the revert",
            Duration::from_secs(30),
            || {
                let out = repos.shipshape(&["fleet", "--prometheus", &prom.url], &[]);
                let t = String::from_utf8_lossy(&out.stdout).into_owned();
                t.lines()
                    .any(|l| l.contains("web-1") && l.contains("reverted"))
                    .then_some(t)
            },
        );
        println!("{table}");
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(&header[..3], ["APP", "HOST", "WAVE"], "{table}");
        for (host, wave) in [("web-1", "canary"), ("web-2", "web"), ("web-3", "web")] {
            assert!(
                table
                    .lines()
                    .any(|l| l.split_whitespace().take(3).eq(["shop", host, wave])),
                "{host} in wave {wave}:\n{table}"
            );
        }

        // The gate keeps holding while passes go on (a few more gate checks).
        let checked = recs[1].wave_gate.as_ref().unwrap().checked_at;
        poll(&fleet, &daemons, "web-2's gate checked again", 30, |recs| {
            recs[1]
                .wave_gate
                .as_ref()
                .is_some_and(|g| ms(g.checked_at) >= ms(checked) + 3000)
                .then_some(())
        });
        stop.store(true, Ordering::SeqCst);
        let recs = poll(&fleet, &daemons, "the records", 10, |r| Some(r.to_vec()));
        (watcher.join().unwrap(), recs)
    });
    for (i, rec) in recs.iter().enumerate().skip(1) {
        let name = &fleet.hosts[i].name;
        assert!(
            !has_revision(rec, &v3),
            "{name} has a revision of the broken commit"
        );
        assert!(
            fleet.hosts[i].releases_of(&v3).is_empty() && !fleet.hosts[i].release_dir(&v3).exists(),
            "{name} prepared a release of the broken commit"
        );
        assert!(ready_on(rec, &v2), "{name} left v2");
        let polls = &pm2_seen[i];
        assert!(polls.len() >= 3, "{name}: only {} pm2 polls", polls.len());
        let current = fleet.hosts[i].world.releases_root().join("current");
        let v2_release = resolved(&fleet.hosts[i].release_dir(&v2));
        for (commits, cwds, led) in polls {
            assert!(!commits.is_empty(), "{name}: no pm2 process listed");
            assert!(
                commits.iter().all(|c| *c == v2),
                "{name}'s pm2 ran {commits:?}, not only v2 ({v2}); v3 is {v3}"
            );
            assert!(
                cwds.iter().all(|c| std::path::Path::new(c) == current),
                "{name}'s processes run in {cwds:?}"
            );
            assert_eq!(*led, v2_release, "{name}'s current led elsewhere");
        }
    }
    // The same watch saw the canary run it: it would have seen it on the others.
    assert!(
        pm2_seen[0]
            .iter()
            .any(|(commits, _, _)| commits.contains(&v3)),
        "the pm2 watch never saw v3 on the canary either"
    );
    timeline.push(format!(
        "broken phase: {} / {} / {} pm2 polls of web-1 / web-2 / web-3; v3 seen on web-1 only",
        pm2_seen[0].len(),
        pm2_seen[1].len(),
        pm2_seen[2].len()
    ));

    // 3. No data is a hold: Prometheus stops; a good commit reaches the canary (the first
    // wave needs no data) while web-2 and web-3 hold on noData and keep running v2.
    prom.stop();
    let t_stop = Timestamp::now();
    repos.commit_app_files(&[("server.js", &server)], "v4 fixes the health endpoint");
    let v4 = repos.commit_app_version("4.0.0");
    fleet.commit_with(&v4, Some(&plan), tuned);
    let before: Vec<(Option<u64>, usize)> = recs
        .iter()
        .map(|r| (r.live_revision, r.revisions.len()))
        .collect();
    let pids: Vec<Vec<u64>> = fleet.hosts.iter().map(|h| h.world.pm2_pids()).collect();
    let held_long = SOAK * 2;
    let mut canary_ready: Option<Timestamp> = None;
    let recs = poll(
        &fleet,
        &daemons,
        "web-1 on v4 while web-2 and web-3 hold on noData for twice the soak",
        120,
        |recs| {
            for (i, rec) in recs.iter().enumerate() {
                gates.note(t0, &fleet.hosts[i].name, rec);
            }
            if canary_ready.is_none() && ready_on(&recs[0], &v4) {
                canary_ready = Some(Timestamp::now());
            }
            let mut held = true;
            for (i, rec) in recs.iter().enumerate().skip(1) {
                let name = &fleet.hosts[i].name;
                assert!(!has_revision(rec, &v4), "{name} took v4 without data");
                assert_eq!(
                    (rec.live_revision, rec.revisions.len()),
                    before[i],
                    "{name} changed its revisions while Prometheus was down"
                );
                assert!(
                    ready_on(rec, &v2),
                    "{name} left v2 while Prometheus was down"
                );
                match &rec.wave_gate {
                    Some(g) if g.app_commit == v4 => {
                        assert_eq!(g.state, GateState::NoData, "{name}: {}", g.message);
                        assert!(
                            g.message.contains("Prometheus cannot say")
                                && g.message.contains("cannot reach Prometheus")
                                // The earlier waves' rule holds it, not only this wave's
                                // parallel count (which also needs Prometheus).
                                && g.message.starts_with("waiting for the earlier waves to prove"),
                            "{name}: {}",
                            g.message
                        );
                        held &= ms(g.checked_at) - ms(g.since) >= held_long.as_millis() as i64;
                    }
                    _ => held = false,
                }
            }
            let soaked_long = canary_ready
                .is_some_and(|t| ms(Timestamp::now()) - ms(t) >= held_long.as_millis() as i64);
            (held && soaked_long).then(|| recs.to_vec())
        },
    );
    for (i, h) in fleet.hosts.iter().enumerate().skip(1) {
        assert_eq!(
            h.world.pm2_pids(),
            pids[i],
            "{}'s processes were restarted during the hold",
            h.name
        );
        assert_eq!(
            h.world.get("/version").as_deref(),
            Some("2.0.0"),
            "{}",
            h.name
        );
        let procs = pm2_processes(&h.world);
        assert!(
            !procs.is_empty() && procs.iter().all(|p| p.1 == v2 && p.3 == "online"),
            "{}: {procs:?}",
            h.name
        );
    }
    let v4_canary = &revision_of(&recs[0], &v4).revision;
    let g2 = recs[1].wave_gate.clone().unwrap();
    timeline.push(format!(
        "Prometheus stopped at {:.1}s; v4: canary started {:.1}s, Ready {:.1}s; web-2/web-3 held noData from {:.1}s to {:.1}s ({:.1}s, soak {}s): {}",
        rel(t0, t_stop),
        rel(t0, v4_canary.started_at),
        rel(t0, canary_ready.unwrap()),
        rel(t0, g2.since),
        rel(t0, g2.checked_at),
        (ms(g2.checked_at) - ms(g2.since)) as f64 / 1000.0,
        SOAK.as_secs(),
        g2.message
    ));

    // Prometheus back (same port, same data): they go on, once it has seen the canary
    // Ready on v4 for the soak (its samples start again now).
    let t_back = Timestamp::now();
    prom.start_again();
    let recs = poll(&fleet, &daemons, "every host Ready on v4", 120, |recs| {
        for (i, rec) in recs.iter().enumerate() {
            gates.note(t0, &fleet.hosts[i].name, rec);
        }
        recs.iter().all(|r| ready_on(r, &v4)).then(|| recs.to_vec())
    });
    timeline.push(format!(
        "Prometheus started again at {:.1}s",
        rel(t0, t_back)
    ));
    timeline.extend(check_waited(&recs, &v4, t0, "v4"));
    for (i, rec) in recs.iter().enumerate().skip(1) {
        let r = &revision_of(rec, &v4).revision;
        assert!(
            ms(r.started_at) >= ms(t_back) + SOAK.as_millis() as i64,
            "web-{} started v4 {:.1}s after Prometheus came back, before a soak of its samples",
            i + 1,
            (ms(r.started_at) - ms(t_back)) as f64 / 1000.0
        );
        assert_eq!(
            fleet.hosts[i].world.get("/version").as_deref(),
            Some("4.0.0")
        );
        timeline.push(format!(
            "v4: web-{} started {:.1}s after Prometheus came back (soak {}s)",
            i + 1,
            (ms(r.started_at) - ms(t_back)) as f64 / 1000.0,
            SOAK.as_secs()
        ));
    }

    println!("--- timeline (seconds from the start) ---");
    for l in &timeline {
        println!("{l}");
    }
    println!("--- gate states as recorded (checked at, host, app commit, state) ---");
    for (t, host, commit, state, message) in &gates.seen {
        println!("{t:>6.1}s {host} {commit} {state:<8} {message}");
    }
    println!("waves test took {:?}", started.elapsed());
}

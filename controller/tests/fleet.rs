//! `shipshape fleet` against a real fleet on one machine: three controllers (own state dirs,
//! `--hostname`s, pm2 homes, API ports, the app on its own port and releases root) following
//! one config repo, scraped by a real Prometheus (Debian's package). v2 of the app needs a
//! setting (`CACHE_URL`) from the host's env file, which web-3's lacks: web-1 goes to v2,
//! web-2 is pinned during an incident and stays on v1, web-3 tries v2 and reverts. The fleet
//! view must show each as it is, the dashboard's fleet table must read the same series, and
//! a controller that stops answering must show as unreachable rather than as its last state.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::{AppEdit, Daemon, World, free_port, git, wait_for};
use shipshape_spec::status::{Outcome, Phase};

/// One host: its own world (state dir, pm2 home, app port, releases root, env file).
struct Host {
    name: &'static str,
    world: World,
    env_file: PathBuf,
}

/// The document `host` reads at app commit `commit`: the same app from the fleet's app
/// repo, selected for this host only (on one machine each host needs its own port and
/// releases root, so each has its own file; a real fleet would share one), with the host's
/// env file.
fn document(fleet: &World, host: &Host, commit: &str) -> String {
    common::edited(&host.world.document(commit), |app| {
        app.repository(&fleet.app_repo().display().to_string())
            .hosts(&[host.name], &[])
            .env_file(&host.env_file);
    })
}

/// Commit every host's document at `commit` in one config commit; returns it.
fn commit_fleet(fleet: &World, hosts: &[Host], commit: &str) -> String {
    let config = fleet.config_repo();
    for h in hosts {
        std::fs::write(
            config.join("apps").join(format!("shop-{}.yaml", h.name)),
            document(fleet, h, commit),
        )
        .unwrap();
    }
    git(&config, &["add", "-A"]);
    git(&config, &["commit", "-qm", &format!("shop at {commit}")]);
    git(&config, &["rev-parse", "HEAD"])
}

fn fleet_cmd(w: &World, args: &[&str]) -> Output {
    w.shipshape(&[&["fleet"], args].concat(), &[])
}

/// `shipshape fleet -o json`'s hosts for `shop`, by host name.
fn fleet_json(w: &World, prom: &str) -> Option<Vec<serde_json::Value>> {
    let out = fleet_cmd(w, &["--prometheus", prom, "-o", "json", "shop"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["apps"][0]["hosts"].as_array()?.clone())
}

/// A fleet JSON row as one comparable line.
fn summary(r: &serde_json::Value) -> String {
    format!(
        "{} {} {} live={} desired={} pinned={} reverted={} differsFromDesired={} differsFromMajority={}",
        r["host"],
        r["reach"],
        r["phase"],
        r["liveCommit"],
        r["desiredCommit"],
        r["pinned"],
        r["reverted"],
        r["differsFromDesired"],
        r["differsFromMajority"]
    )
}

/// The [`summary`] of the row expected.
#[allow(clippy::too_many_arguments)]
fn row(
    host: &str,
    reach: &str,
    phase: &str,
    live: &str,
    desired: &str,
    pinned: bool,
    reverted: bool,
    differs_from_desired: bool,
    differs_from_majority: bool,
) -> String {
    summary(&serde_json::json!({
        "host": host, "reach": reach, "phase": phase, "liveCommit": live,
        "desiredCommit": desired, "pinned": pinned, "reverted": reverted,
        "differsFromDesired": differs_from_desired, "differsFromMajority": differs_from_majority,
    }))
}

#[test]
fn the_fleet_view_shows_each_host_live_pinned_reverted_and_unreachable() {
    let started = Instant::now();
    let prom = Prometheus::start("shipshape", &[]);
    // The fleet's repos: one app repo, one config repo.
    let fleet = World::new("shop");
    let hosts: Vec<Host> = ["web-1", "web-2", "web-3"]
        .into_iter()
        .map(|name| {
            let world = World::new("shop");
            let env = if name == "web-3" {
                "# web-3 was provisioned before the cache existed\n"
            } else {
                "CACHE_URL=redis://127.0.0.1:6379/0\n"
            };
            let env_file = world.write_env_file(env);
            Host {
                name,
                world,
                env_file,
            }
        })
        .collect();

    // Prometheus scraping nothing yet: a clear error, exit 1.
    let out = fleet_cmd(&fleet, &["--prometheus", &prom.url]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "no shipshape metrics at {} — is it scraping the controllers' /metrics?",
            prom.url
        )),
        "{stderr}"
    );
    // No Prometheus there at all: another clear error.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let out = fleet_cmd(&fleet, &["--prometheus", &nowhere, "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach Prometheus at {nowhere}")),
        "{stderr}"
    );

    let v1 = fleet.app_head();
    commit_fleet(&fleet, &hosts, &v1);
    let daemons: Vec<Daemon> = hosts
        .iter()
        .map(|h| {
            h.world.start_with_env(
                &["--hostname", h.name],
                &[("SHIPSHAPE_REPO", fleet.config_repo().to_str().unwrap())],
            )
        })
        .collect();
    prom.scrape(
        "shipshape",
        &daemons
            .iter()
            .map(|d| d.url.trim_start_matches("http://").to_string())
            .collect::<Vec<_>>(),
    );
    for (h, d) in hosts.iter().zip(&daemons) {
        h.world.wait_record("v1 live", 60, d, |r| {
            r.phase == Phase::Ready && r.live().is_some_and(|l| l.revision.app_commit == v1)
        });
    }

    // An incident on web-2: pinned where it is.
    let out = hosts[1]
        .world
        .shipshape(&["pin", "shop", "--reason", "incident 4711"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // v2 needs CACHE_URL: its health check fails where the env file lacks it.
    let server = std::fs::read_to_string(fleet.app_repo().join("server.js")).unwrap();
    let needs_cache = server.replacen(
        "const ok = !failing() &&",
        "const ok = !failing() && Boolean(process.env.CACHE_URL) &&",
        1,
    );
    assert_ne!(needs_cache, server);
    fleet.commit_app_files(&[("server.js", &needs_cache)], "v2 needs the cache");
    let v2 = fleet.commit_app_version("2.0.0");
    let config2 = commit_fleet(&fleet, &hosts, &v2);

    hosts[0]
        .world
        .wait_record("web-1 on v2", 60, &daemons[0], |r| {
            r.phase == Phase::Ready && r.live().is_some_and(|l| l.revision.app_commit == v2)
        });
    hosts[1]
        .world
        .wait_record("web-2 sees v2 while pinned", 30, &daemons[1], |r| {
            r.desired_app_commit.as_deref() == Some(v2.as_str())
        });
    hosts[2]
        .world
        .wait_record("web-3 reverted v2", 60, &daemons[2], |r| {
            r.revisions
                .iter()
                .any(|e| e.revision.app_commit == v2 && e.revision.outcome == Outcome::Reverted)
                && r.live().is_some_and(|l| l.revision.app_commit == v1)
        });

    // The fleet as Prometheus sees it, once it has scraped all of that (polled until it
    // matches, then compared, so a wrong row fails with the rows it got).
    let expected = [
        row("web-1", "up", "Ready", &v2, &v2, false, false, false, true),
        row("web-2", "up", "Ready", &v1, &v2, true, false, true, false),
        row("web-3", "up", "Failed", &v1, &v2, false, true, true, false),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = fleet_json(&fleet, &prom.url).unwrap_or_default();
        if rows.iter().map(summary).eq(expected.iter().cloned()) || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(rows.iter().map(summary).collect::<Vec<_>>(), expected);
    for r in &rows {
        assert_eq!(r["configCommit"], config2.as_str(), "{r}");
    }

    // The table, as an operator reads it; exit 2: hosts off their desired commit.
    let out = fleet_cmd(&fleet, &["--prometheus", &prom.url]);
    assert_eq!(out.status.code(), Some(2));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{table}");
    let cells: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (s1, s2) = (&v1[..12], &v2[..12]);
    assert_eq!(
        cells,
        [
            vec![
                "shop",
                "web-1",
                "Ready",
                s2,
                "2",
                s2,
                &config2[..12],
                "-",
                "-",
                "majority"
            ],
            vec![
                "shop",
                "web-2",
                "Ready",
                s1,
                "1",
                s2,
                &config2[..12],
                "pinned",
                "-",
                "desired"
            ],
            vec![
                "shop",
                "web-3",
                "Failed",
                s1,
                "1",
                s2,
                &config2[..12],
                "-",
                "reverted",
                "desired"
            ],
        ]
        .map(|r| r.iter().map(|c| c.to_string()).collect::<Vec<_>>()),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "shop: 1 of 3 hosts live on the desired commit {s2}; majority live {s1} (2 of 3)"
        )),
        "{table}"
    );

    // The dashboard's fleet table reads the same series, one row per host.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::workspace().join("examples/monitoring/grafana-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let panel = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Fleet: apps × hosts")
        .expect("the dashboard has the fleet table");
    assert_eq!(panel["type"], "table");
    let expr = panel["targets"][0]["expr"].as_str().unwrap();
    let mut got: Vec<(String, String, String)> = prom
        .query(expr)
        .iter()
        .map(|s| {
            let m = &s["metric"];
            (
                m["host"].as_str().unwrap().to_string(),
                m["live_commit"].as_str().unwrap().to_string(),
                m["pinned"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("web-1".to_string(), v2.clone(), "false".to_string()),
            ("web-2".to_string(), v1.clone(), "true".to_string()),
            ("web-3".to_string(), v1.clone(), "false".to_string()),
        ]
    );

    // An unknown app: exit 1, naming the apps there are.
    let out = fleet_cmd(&fleet, &["--prometheus", &prom.url, "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no app \"nope\" in the shipshape metrics"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // web-1's controller stops: it is unreachable, not "Ready on v2" from its last scrape.
    let mut daemons = daemons;
    drop(daemons.remove(0));
    let rows = wait_for("web-1 unreachable", Duration::from_secs(20), || {
        let rows = fleet_json(&fleet, &prom.url)?;
        (rows.len() == 3 && rows[0]["reach"] == "unreachable").then_some(rows)
    });
    assert_eq!(rows[0]["host"], "web-1");
    assert!(
        rows[0]["phase"].is_null() && rows[0]["liveCommit"].is_null(),
        "{}",
        rows[0]
    );
    assert_eq!(rows[1]["reach"], "up");
    assert_eq!(rows[2]["reach"], "up");
    let table = String::from_utf8_lossy(&fleet_cmd(&fleet, &["--prometheus", &prom.url]).stdout)
        .into_owned();
    println!("{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("shop  web-1  Unreachable")),
        "{table}"
    );
    assert!(table.contains("; 1 unreachable"), "{table}");

    // The dashboard counts it too.
    let stat = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Unreachable controllers")
        .expect("the dashboard counts unreachable controllers");
    let counted = prom.query(stat["targets"][0]["expr"].as_str().unwrap());
    assert_eq!(counted.len(), 1);
    assert_eq!(counted[0]["value"][1], "1", "{counted:?}");

    println!("fleet test took {:?}", started.elapsed());
}

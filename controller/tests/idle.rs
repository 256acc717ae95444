//! What watching costs: a controller with nothing to do reads almost nothing and starts no
//! process, and a pass with nothing to change starts none either (pm2 is read and written
//! through its daemon's socket). Real git, real pm2 (behind a wrapper that counts its
//! runs), the example app.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{World, wait_for};
use shipshape_spec::status::{Outcome, Phase};

/// A pm2 wrapper that appends its arguments to `<root>/pm2-runs`, then runs the real pm2.
fn counting_pm2(w: &World) -> (PathBuf, PathBuf) {
    let runs = w.root().join("pm2-runs");
    let wrapper = w.root().join("pm2-counting");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{runs}'\nexec '{pm2}' \"$@\"\n",
            runs = runs.display(),
            pm2 = common::pm2_bin().display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (wrapper, runs)
}

fn pm2_runs(runs: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// (read syscalls, CPU ticks of reaped children) of `pid`.
fn reads_and_children(pid: u64) -> (u64, u64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let syscr = io
        .lines()
        .find_map(|l| l.strip_prefix("syscr: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<u64> = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .skip(13)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    (syscr, fields[0] + fields[1])
}

#[test]
fn an_idle_controller_reads_almost_nothing_and_starts_no_process() {
    let w = World::new("idle");
    let (pm2, runs) = counting_pm2(&w);
    w.commit_config(&w.document(&w.app_head()));
    let d = w.start_with_env(
        &["--interval", "10s"],
        &[("SHIPSHAPE_PM2", pm2.to_str().unwrap())],
    );
    w.wait_record("the first rollout healthy", 120, &d, |r| {
        r.phase == Phase::Ready
            && r.live()
                .is_some_and(|l| l.revision.outcome == Outcome::Healthy)
    });
    let pid = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(w.state_dir().join("api.json")).unwrap(),
    )
    .unwrap()["pid"]
        .as_u64()
        .unwrap();
    // Health rounds go on (every 300 ms here) and a resync pass runs in the window.
    let checked = |w: &World| w.record().health.map(|h| h.checked_at);
    let before = checked(&w);
    let runs_before = pm2_runs(&runs);
    let (r0, c0) = reads_and_children(pid);
    let t0 = Instant::now();
    wait_for("12 idle seconds", Duration::from_secs(30), || {
        (t0.elapsed() >= Duration::from_secs(12)).then_some(())
    });
    let (r1, c1) = reads_and_children(pid);
    let per_sec = (r1 - r0) as f64 / t0.elapsed().as_secs_f64();
    assert_ne!(checked(&w), before, "the monitor stopped checking");
    assert_eq!(
        pm2_runs(&runs),
        runs_before,
        "pm2's CLI was started while idle"
    );
    assert_eq!(c1, c0, "a child process ran while idle");
    // A round reads the records, pm2's socket and the probe's answer: ~10 reads a second
    // at this interval. Re-reading the config repo on every inotify event it caused itself
    // made ~150.
    assert!(
        per_sec < 60.0,
        "{per_sec:.0} read calls a second while idle\n{}",
        d.log_tail(30)
    );
}

#[test]
fn a_pass_with_nothing_to_change_starts_no_process() {
    let w = World::new("noop");
    let (pm2, runs) = counting_pm2(&w);
    let pm2 = pm2.to_str().unwrap();
    w.commit_config(&w.document(&w.app_head()));
    let env = [("SHIPSHAPE_PM2", pm2)];
    let out = w.shipshape(&["run", "--once"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    let after_rollout = pm2_runs(&runs);
    assert!(
        after_rollout.iter().any(|r| r.starts_with("startOrReload")),
        "{after_rollout:?}"
    );
    // The rollout's save went through the socket: pm2's CLI only started the processes.
    assert!(
        !after_rollout.iter().any(|r| r.starts_with("save")),
        "{after_rollout:?}"
    );
    let dump = w.pm2_home().join("dump.pm2");
    assert!(dump.exists(), "the rollout saved no dump");
    assert_eq!(
        std::fs::metadata(&dump).unwrap().permissions().mode() & 0o777,
        0o600
    );

    for _ in 0..2 {
        let out = w.shipshape(&["run", "--once"], &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        pm2_runs(&runs),
        after_rollout,
        "a pass with nothing to change ran pm2's CLI"
    );
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Ready);
    assert_eq!(rec.last_pass.map(|p| p.steps.len()), Some(0));
}

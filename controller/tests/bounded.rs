//! Memory stays bounded whatever a build prints or a health endpoint answers: a build step
//! printing 1 GiB and a health reply of 1.5 GiB (the example app's `HEALTH_BODY_MB=1536`)
//! leave the controller's peak resident memory (its `VmHWM`, read from /proc while it
//! runs) under 200 MB, and the step's log is capped at 8 MiB plus one line saying how much
//! more was not logged.
//!
//! Real parts: the controller binary as a daemon, pm2, the example app, a real build.

mod common;

use common::World;
use shipshape_spec::status::Phase;

/// The controller's peak resident memory in MB, from /proc/<pid>/status (its pid is in
/// the state directory's lock file).
fn controller_peak_mb(w: &World) -> u64 {
    let lock = std::fs::read_to_string(w.state_dir().join("controller.lock")).unwrap();
    let pid: u32 = lock
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the lock file: {lock:?}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    kb / 1024
}

const PEAK_MB: u64 = 200;

#[test]
fn a_build_printing_a_gigabyte_keeps_the_controller_under_200_mb_and_its_log_capped() {
    let w = World::new("loud");
    let mut app = w.app(&w.app_head());
    app.spec
        .build
        .steps
        .push("head -c 1073741824 /dev/zero | tr '\\0' x; echo; echo the build is done".into());
    app.spec.build.timeout = "300s".parse().unwrap();
    w.commit_app(&app);
    let d = w.start(&[]);
    let rec = w.wait_record("the loud build to go live", 400, &d, |r| {
        r.phase == Phase::Ready
    });
    let peak = controller_peak_mb(&w);
    let n = rec.live_revision.unwrap();
    let log = w
        .store()
        .app_dir(&w.name)
        .join("logs")
        .join(format!("revision-{n}.log"));
    let size = std::fs::metadata(&log).unwrap().len();
    let text = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&text);
    eprintln!("controller peak {peak} MB; log {size} bytes");
    assert!(peak < PEAK_MB, "the controller peaked at {peak} MB");
    assert!(size < 9 * 1024 * 1024, "the revision log is {size} bytes");
    assert!(
        text.contains("bytes more not logged (a command's log keeps its first 8 MiB"),
        "the log does not say it was cut"
    );
}

#[test]
fn a_health_reply_of_one_and_a_half_gigabytes_keeps_the_controller_under_200_mb() {
    let w = World::new("huge-reply");
    let mut app = w.app(&w.app_head());
    app.spec.processes[0].env.insert(
        "HEALTH_BODY_MB".into(),
        shipshape_spec::app::EnvValue::Integer(1536),
    );
    // Time enough to download the whole reply, were the probe to read it all.
    app.spec.health.checks[0].timeout = "20s".parse().unwrap();
    w.commit_app(&app);
    let d = w.start(&[]);
    let rec = w.wait_record("the revision to pass its checks", 120, &d, |r| {
        r.phase == Phase::Ready
    });
    // A few more rounds of the monitor, each against the huge reply.
    let passed = rec.health.as_ref().map_or(0, |h| h.consecutive_passes);
    w.wait_record("three more monitor rounds", 60, &d, |r| {
        r.health
            .as_ref()
            .is_some_and(|h| h.consecutive_passes >= passed + 3)
    });
    let peak = controller_peak_mb(&w);
    eprintln!("controller peak {peak} MB");
    assert!(peak < PEAK_MB, "the controller peaked at {peak} MB");
}

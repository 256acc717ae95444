//! Faults, one test each: a build that never ends, a health endpoint that hangs, the pm2
//! daemon killed during a rollout's verification, PostgreSQL down when a migration is due, a full disk while
//! preparing a release, a read-only state directory, a second controller on the same
//! state directory, and SIGTERM during a rollout. For each: the live release keeps serving
//! (or is restored), nothing is lost, status explains, and the controller recovers.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{AppEdit, World, fresh_database, wait_for};
use shipshape_spec::status::{Outcome, Phase};

fn live_v1(w: &World) -> String {
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    v1
}

#[test]
fn a_build_that_never_ends_is_killed_with_its_children_and_changes_nothing() {
    let w = World::new("endless");
    let v1 = live_v1(&w);
    let v2 = w.commit_app_version("2.0.0");
    let pidfile = w.root().join("build-child.pid");
    let mut doc = w.app(&v2);
    doc.spec.build.steps = vec![format!("sleep 300 & echo $! > {}; wait", pidfile.display())];
    doc.spec.build.timeout = shipshape_spec::Duration::from_secs(2);
    w.commit_app(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let err = w.record().last_error.unwrap();
    assert_eq!(err.step, "build");
    assert!(
        err.message.contains("timed out after 2s"),
        "{}",
        err.message
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(
        "the build's child to be gone",
        Duration::from_secs(5),
        || {
            // SAFETY: signal 0 only asks whether the pid exists.
            (unsafe { libc::kill(pid, 0) } != 0).then_some(())
        },
    );
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
}

#[test]
fn a_health_endpoint_that_hangs_fails_the_rollout_within_its_timeout_and_is_reverted() {
    let w = World::new("hangs");
    let v1 = live_v1(&w);
    let v2 = w.commit_app_version("2.0.0");
    let mut doc = w.app(&v2);
    doc.env("HEALTH_HANG", "1");
    doc.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(3);
    w.commit_app(&doc);
    let started = std::time::Instant::now();
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a hanging probe held the pass"
    );
    let rec = w.record();
    let rev = common::revision_of(&rec, &v2);
    assert_eq!(rev.revision.outcome, Outcome::Reverted);
    assert!(
        rev.revision.message.contains("no answer within 1s"),
        "{}",
        rev.revision.message
    );
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
}

#[test]
fn the_pm2_daemon_killed_during_verification_fails_the_rollout_which_is_reverted() {
    let w = World::new("pm2dies");
    let v1 = live_v1(&w);
    let d = w.start(&[]);
    w.wait_record("v1 healthy under the daemon", 60, &d, |r| {
        r.phase == Phase::Ready
    });
    let v2 = w.commit_app_version("2.0.0");
    // A slow verification leaves time to kill pm2 under it.
    let mut slow = w.app(&v2);
    slow.spec.health.success_threshold = 15;
    let c2 = w.commit_app(&slow);
    // Not as soon as `current` moved: a kill during the pm2-reload step is undone by that
    // very `pm2 startOrReload` (it spawns a new daemon and starts the processes), and the
    // rollout passes. Kill it under the verification.
    wait_for("the verify step to start", Duration::from_secs(60), || {
        d.log_tail(200)
            .contains("step app=pm2dies step=verify")
            .then_some(())
    });
    let pm2_pid = || -> i32 {
        std::fs::read_to_string(w.pm2_home().join("pm2.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let pid = pm2_pid();
    // SAFETY: killing the test's own pm2 daemon.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    // The cluster's workers die with their daemon; the next round's `pm2 jlist` starts an
    // empty one: the rounds fail on the pm2 facts, the rollout fails and is reverted.
    let rec = w.wait_record("the rollout to settle after pm2 died", 90, &d, |r| {
        r.revisions
            .iter()
            .any(|e| e.revision.app_commit == v2 && e.revision.outcome != Outcome::Progressing)
            && matches!(r.phase, Phase::Ready | Phase::Failed)
    });
    let rev = common::revision_of(&rec, &v2);
    assert_eq!(
        rev.revision.outcome,
        Outcome::Reverted,
        "{:?}",
        rev.revision
    );
    let m = &rev.revision.message;
    assert!(
        m.contains("pm2 pm2dies-web: 0 of 2 instances online")
            && m.contains(", after ")
            && m.contains(" failing rounds in a row"),
        "{m}"
    );
    assert!(m.contains("reverted to revision 1"), "{m}");
    // Going back starts the processes again in the new daemon (pm2 lost its list). Read
    // from the revision's log: later passes (holding) may already have replaced `last_pass`.
    let number = rev.revision.number.to_string();
    let log = w.shipshape(&["logs", &w.name, &number], &[]);
    let log = String::from_utf8_lossy(&log.stdout).into_owned();
    let steps: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("== "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(steps.len() >= 4, "{log}");
    assert_eq!(
        steps[steps.len() - 4..],
        ["switch", "pm2-start", "pm2-save", "verify"],
        "{steps:?}"
    );
    assert_eq!(rec.phase, Phase::Failed);
    assert_eq!(rec.live_revision, Some(1));
    assert!(rec.is_quarantined(&c2));
    assert_ne!(pm2_pid(), pid, "a new pm2 daemon runs");
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
}

/// A TCP proxy to PostgreSQL that can be switched off (connections refused) and on.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                conns2.lock().unwrap().push(client.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 8192];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, up, conns }
    }
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[test]
fn postgresql_down_when_a_migration_is_due_stops_before_the_switch_and_recovers() {
    let w = World::new("pgdown");
    let direct = fresh_database("not-a-real-secret-7");
    let target = direct
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let proxy = Proxy::start(target.clone());
    let url = direct.replace(&target, &format!("127.0.0.1:{}", proxy.port));
    let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
    let m1 = "-- migrate:up\nCREATE TABLE a (id int);\n\n-- migrate:down\nDROP TABLE a;\n";
    let m2 = "-- migrate:up\nCREATE TABLE b (id int);\n\n-- migrate:down\nDROP TABLE b;\n";
    let block = |l: &str| format!("    driver: dbmate\n    level: \"{l}\"\n    timeout: 10s\n");
    let v1 = w.commit_app_files(&[("db/migrations/0001_a.sql", m1)], "0001");
    w.commit_config(&w.document_with_migrations(&v1, &env, &block("0001")));
    assert_eq!(w.run_once().0, 0);

    proxy.down();
    w.commit_app_files(&[("db/migrations/0002_b.sql", m2)], "0002");
    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document_with_migrations(&v2, &env, &block("0002")));
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let rec = w.record();
    let err = rec.last_error.unwrap();
    assert!(
        err.message.contains("cannot read the migration level")
            && err.message.contains("connecting"),
        "{}",
        err.message
    );
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    assert!(
        !log.contains("not-a-real-secret-7"),
        "the password reached the log"
    );

    proxy.up();
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
    assert_eq!(
        common::sql(
            &direct,
            "SELECT version FROM schema_migrations ORDER BY version"
        ),
        ["0001", "0002"]
    );
}

fn mount(args: &[&str]) {
    let out = Command::new("mount").args(args).output().expect("mount");
    assert!(
        out.status.success(),
        "mount {args:?}: {} (these tests need root and mount)",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn umount(path: &std::path::Path) {
    // Lazily: processes started from the mount may still be running when the test ends.
    let _ = Command::new("umount").arg("-l").arg(path).output();
}

#[test]
fn a_full_disk_while_preparing_a_release_changes_nothing_and_recovers_when_space_returns() {
    let w = World::new("diskfull");
    let root = w.releases_root();
    std::fs::create_dir_all(&root).unwrap();
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=4m",
        "tmpfs",
        root.to_str().unwrap(),
    ]);
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            umount(&self.0);
        }
    }
    let _guard = Unmount(root.clone());
    let v1 = live_v1(&w);
    let v2 = w.commit_app_version("2.0.0");
    // v2's build writes more than the disk holds.
    let mut doc = w.app(&v2);
    doc.spec
        .build
        .steps
        .push("head -c 6000000 /dev/zero > dist/assets.bin".into());
    w.commit_app(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let rec = w.record();
    let err = rec.last_error.clone().unwrap();
    assert_eq!(err.step, "build");
    assert!(
        err.output_tail
            .unwrap_or_default()
            .contains("No space left on device"),
        "{}",
        err.message
    );
    assert!(
        rec.quarantined.is_empty(),
        "a full disk is not the revision's fault"
    );
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));

    // Space comes back: the same config commit goes through.
    mount(&["-o", "remount,size=64m", root.to_str().unwrap()]);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
}

#[test]
fn a_read_only_state_directory_stops_the_pass_before_any_change_and_recovers() {
    let w = World::new("readonly");
    let v1 = live_v1(&w);
    let state = std::fs::canonicalize(w.state_dir()).unwrap();
    let apps = state.join("apps");
    mount(&["--bind", apps.to_str().unwrap(), apps.to_str().unwrap()]);
    mount(&["-o", "remount,bind,ro", apps.to_str().unwrap()]);
    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document(&v2));
    let (code, log) = w.run_once();
    umount(&apps);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("Read-only file system"), "{log}");
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    assert_eq!(
        w.record().revisions.len(),
        1,
        "records were lost or half-written"
    );
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.get("/version").as_deref(), Some("2.0.0"));
}

#[test]
fn a_second_controller_on_the_same_state_directory_refuses_to_start() {
    let w = World::new("twice");
    live_v1(&w);
    let d = w.start(&[]);
    let out = w.shipshape(&["run", "--once"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another shipshape controller holds") && err.contains("pid "),
        "{err}"
    );
    drop(d);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "the lock outlived its holder: {log}");
}

#[test]
fn sigterm_during_a_rollout_stops_cleanly_and_the_next_start_resumes() {
    let w = World::new("termed");
    live_v1(&w);
    let d = w.start(&[]);
    w.wait_record("v1 under the daemon", 60, &d, |r| r.phase == Phase::Ready);
    let v2 = w.commit_app_version("2.0.0");
    // 50 rounds take 15 s on an idle machine: room to stop it, and a deadline a busy
    // machine does not reach first when it is verified again.
    let mut slow = w.app(&v2);
    slow.spec.health.success_threshold = 50;
    slow.spec.health.progress_deadline = shipshape_spec::Duration::from_secs(60);
    w.commit_app(&slow);
    w.wait_record("v2 verifying", 60, &d, |r| {
        r.phase == Phase::Progressing && w.current().as_deref() == Some(v2.as_str())
    });
    let started = std::time::Instant::now();
    drop(d); // SIGTERM, then waits for the exit
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the stop waited for the whole verification"
    );
    let rec = w.record();
    let rev = common::revision_of(&rec, &v2);
    assert_eq!(
        rev.revision.outcome,
        Outcome::Superseded,
        "{:?}",
        rev.revision
    );
    // The next start verifies it again and finishes.
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    let rec = w.record();
    assert_eq!(
        common::revision_of(&rec, &v2).revision.outcome,
        Outcome::Healthy
    );
}

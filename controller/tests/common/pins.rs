//! Helpers for the pin tests: the CLI timed (killed past a limit, so a request that waits
//! for a pass fails the test instead of hanging it), the daemon stopped by signal, a
//! watcher that samples what is live all through a test, and files a build or hook waits on.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Daemon, World, wait_for};

impl World {
    /// `shipshape <args>` as [`World::shipshape`], killed after `limit`: its output and
    /// how long it ran.
    pub fn shipshape_timed(&self, args: &[&str], limit: Duration) -> (Output, Duration) {
        let started = Instant::now();
        let mut child = self
            .shipshape_command(args, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("shipshape runs");
        while started.elapsed() < limit {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        (out, started.elapsed())
    }

    /// A file under the test's root (a gate a build or hook waits on, a marker it writes).
    pub fn file(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }
}

/// A shell loop that waits until `gate` exists (polling every 100 ms), at most 90 s: a
/// test that fails, or a controller killed outright, leaves no loop behind for long.
pub fn wait_until_exists(gate: &Path) -> String {
    format!(
        "i=0; while [ ! -e '{}' ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done",
        gate.display()
    )
}

/// The pid a build step wrote into `pidfile` (`echo $$ > pidfile`), waited for up to
/// `within` as `what`.
pub fn wait_for_pidfile(what: &str, pidfile: &Path, within: Duration) -> u32 {
    wait_for(what, within, || {
        std::fs::read_to_string(pidfile)
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    })
}

impl Daemon {
    /// The controller's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop it as systemd does: SIGTERM; once it says it waits for the passes in flight,
    /// SIGTERM again (stop at once). Returns when it exited (panics after `deadline`).
    pub fn stop_twice(&self, deadline: Duration) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let log = self.log.clone();
        wait_for("the controller to wait for its passes", deadline, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("waiting for passes in flight").then_some(())
        });
        // SAFETY: as above.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        // Not reaped here (a zombie counts as gone): the drop reaps it, so its SIGTERM can
        // never reach a process that reused the pid.
        let pid = self.child.id();
        wait_for("the controller to exit", deadline, || {
            process_gone(pid).then_some(())
        });
    }
}

/// True when process `pid` is gone (or a zombie waiting to be reaped).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Samples `probe` every 50 ms on its own thread until [`Sampler::stop`]: each `Some` it
/// returns is something that must never be seen.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Sampler {
    /// Start sampling.
    pub fn start(mut probe: impl FnMut() -> Option<String> + Send + 'static) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Some(bad) = probe() {
                    seen.push(bad);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        Sampler { stop, thread }
    }

    /// Stop and return what it saw that it must not have (with when, first ones first).
    pub fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

//! Helpers for the stock-app tests: a world whose app repo holds `examples/stock-express`
//! (an ordinary Express app nobody wrote for shipshape: no shutdown code, no readiness
//! message, no switches, a `/health` that fails a fifth of its answers at random), its
//! document, a CPU hog that keeps both cores busy (killed on drop), and a lock that runs
//! the stock tests one at a time, so each has the hog's load and no more.

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use shipshape_spec::app::{ExecMode, Instances};

use super::{AppEdit, World, git};

/// How the stock app runs under pm2.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// One process in fork mode (a restart replaces it).
    Fork1,
    /// Two cluster workers (a reload replaces them one by one).
    Cluster2,
}

impl World {
    /// A new world whose app repo holds `examples/stock-express` at 1.0.0 (one commit).
    pub fn stock(name: &str) -> World {
        World::with_example(name, "examples/stock-express")
    }

    /// The stock app's document for `commit`: `npm ci` and no build step, `server.js` on
    /// this world's port in `mode`, one check of `/health` (its JSON saying ok) every
    /// `interval`, successThreshold 2, `failure` failing rounds in a row a failure,
    /// automatic revert.
    pub fn stock_app(
        &self,
        commit: &str,
        mode: Mode,
        interval: Duration,
        failure: u32,
    ) -> shipshape_spec::App {
        let mut app = self.app(commit);
        app.spec.build.install = Some("npm ci --no-audit --no-fund".into());
        app.spec.build.steps.clear();
        app.spec.build.timeout = shipshape_spec::Duration::from_secs(120);
        let p = &mut app.spec.processes[0];
        p.script = "server.js".into();
        let (instances, exec_mode) = match mode {
            Mode::Fork1 => (1, ExecMode::Fork),
            Mode::Cluster2 => (2, ExecMode::Cluster),
        };
        p.instances = Some(Instances::Count(instances));
        p.exec_mode = Some(exec_mode);
        let check = &mut app.spec.health.checks[0];
        let http = check.http_mut().expect("the default check is HTTP");
        http.url = format!("http://127.0.0.1:{}/health", self.port);
        http.body_contains = Some("\"status\":\"ok\"".into());
        check.timeout = shipshape_spec::Duration::from_secs(2);
        app.health(interval, 2, failure, Duration::from_secs(60))
            .rollback(true, Duration::from_secs(600));
        app
    }

    /// Replace `from` with `to` in the app repo's `server.js` (it must be there) and commit;
    /// returns the commit. How a test makes a broken version: by editing the code.
    pub fn edit_server_js(&self, from: &str, to: &str, message: &str) -> String {
        let path = self.app_repo().join("server.js");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "server.js has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        git(&self.app_repo(), &["commit", "-qam", message]);
        self.app_head()
    }
}

/// Two busy loops (`sh -c 'while :; do :; done'`), one per core of the test machine,
/// killed and reaped on drop.
pub struct CpuHog {
    children: Vec<Child>,
}

impl CpuHog {
    /// Start `n` busy loops.
    pub fn start(n: usize) -> CpuHog {
        let children = (0..n)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("sh runs")
            })
            .collect();
        CpuHog { children }
    }

    /// Each loop is still running (a hog that died would leave the machine idle).
    pub fn assert_running(&mut self) {
        for c in &mut self.children {
            assert!(
                matches!(c.try_wait(), Ok(None)),
                "a CPU hog (pid {}) stopped",
                c.id()
            );
        }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Held for the whole of a stock test: they run one at a time.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

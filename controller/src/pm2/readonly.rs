//! pm2 for `shipshape plan`, which changes nothing: the process list is read from a pm2
//! daemon that is already running in `PM2_HOME` (its `pm2.pid` names a live process and its
//! `rpc.sock` is there), and never by a command that would start one (pm2's CLI starts a
//! daemon on its first call, even `pm2 jlist`). With no daemon running there are no pm2
//! processes, which is what is observed, and said ([`ReadOnlyPm2::no_daemon`]). Every change
//! is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;

use super::{Instance, Pm2, Pm2Error};
use crate::ports::Pm2Port;

/// pm2, read only (see the module's doc).
#[derive(Debug, Clone)]
pub struct ReadOnlyPm2 {
    /// The pm2 it reads, when its daemon runs.
    pub pm2: Pm2,
    /// Set when a read found no daemon running (and observed no processes).
    pub found_no_daemon: Arc<AtomicBool>,
}

impl ReadOnlyPm2 {
    /// `pm2`, read only.
    pub fn new(pm2: Pm2) -> ReadOnlyPm2 {
        ReadOnlyPm2 {
            pm2,
            found_no_daemon: Default::default(),
        }
    }

    /// When a read found no pm2 daemon running: the words for it, naming `PM2_HOME`.
    pub fn no_daemon(&self) -> Option<String> {
        self.found_no_daemon.load(Ordering::SeqCst).then(|| {
            format!(
                "no pm2 daemon running in PM2_HOME {} (plan starts none): planned as if pm2 ran no processes",
                self.pm2.home.display()
            )
        })
    }

    fn refused(&self, action: &str) -> Pm2Error {
        Pm2Error::Refused {
            action: action.to_string(),
            message: "refused: this pm2 client is read only (shipshape plan)".into(),
        }
    }

    /// The daemon's list through its socket alone (a daemon that dies between the pid check
    /// and the read is an error, never a CLI call that would start a new one).
    async fn list(&self) -> Result<Vec<Instance>, Pm2Error> {
        if daemon_pid(&self.pm2.home).is_none() {
            self.found_no_daemon.store(true, Ordering::SeqCst);
            return Ok(Vec::new());
        }
        self.pm2.socket_jlist().await
    }
}

/// The pid of the pm2 daemon running in `home`: its `pm2.pid` names a live process and its
/// RPC socket exists. `None`: no daemon (never started, or a stale pid file).
pub fn daemon_pid(home: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(home.join("pm2.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if pid <= 0 || !rpc_socket(home).exists() {
        return None;
    }
    // SAFETY: kill(2) with signal 0 sends nothing; it only says whether `pid` exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(pid)
}

fn rpc_socket(home: &Path) -> PathBuf {
    home.join("rpc.sock")
}

impl Pm2Port for ReadOnlyPm2 {
    fn jlist(&self) -> BoxFuture<'_, Result<Vec<Instance>, Pm2Error>> {
        Box::pin(self.list())
    }
    fn jlist_cached(&self) -> BoxFuture<'_, Result<Vec<Instance>, Pm2Error>> {
        Box::pin(self.list())
    }
    fn start_or_reload<'a>(
        &'a self,
        _ecosystem: &'a Path,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), Pm2Error>> {
        Box::pin(async move { Err(self.refused(&format!("startOrReload {name}"))) })
    }
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), Pm2Error>> {
        Box::pin(async move { Err(self.refused(&format!("delete {name}"))) })
    }
    fn save(&self) -> BoxFuture<'_, Result<(), Pm2Error>> {
        Box::pin(async move { Err(self.refused("save")) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_runs_only_with_a_live_pid_and_its_socket() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(daemon_pid(home.path()), None, "nothing there");
        let me = std::process::id() as i32;
        std::fs::write(home.path().join("pm2.pid"), me.to_string()).unwrap();
        assert_eq!(daemon_pid(home.path()), None, "no socket");
        std::fs::write(home.path().join("rpc.sock"), "").unwrap();
        assert_eq!(daemon_pid(home.path()), Some(me));
        // A pid that no longer runs: a stale file.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id() as i32;
        child.wait().unwrap();
        std::fs::write(home.path().join("pm2.pid"), gone.to_string()).unwrap();
        assert_eq!(daemon_pid(home.path()), None, "stale pid file");
        std::fs::write(home.path().join("pm2.pid"), "garbage").unwrap();
        assert_eq!(daemon_pid(home.path()), None);
    }
}

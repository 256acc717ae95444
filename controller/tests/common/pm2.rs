//! Helpers for the tests that talk to pm2's daemon directly (pm2_socket.rs, pm2_writes.rs):
//! the pinned pm2's CLI with a known secret in its environment, a script that idles, and a
//! controller-side pm2 client with no cache.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use shipshape::pm2::{Pm2, SocketReads};
use shipshape::runtime::metrics::Metrics;

use super::{World, pm2_bin};

/// Run the pinned pm2 under `home` with `SECRET_TOKEN=secret` in its environment (so the
/// processes it starts carry it); panics unless it succeeds; returns its stdout.
pub fn pm2_cli(home: &Path, secret: &str, args: &[&str]) -> String {
    let out = Command::new(pm2_bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("PM2_HOME", home)
        .env("SECRET_TOKEN", secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pm2 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A script that runs until it is stopped, doing nothing.
pub fn idle_script(w: &World) -> String {
    let p = w.root().join("idle.js");
    std::fs::write(&p, "setInterval(() => {}, 1000);\n").unwrap();
    p.display().to_string()
}

/// The controller's pm2 client for `w`'s pm2 home: socket reads counted in `metrics`, no
/// cache, a 60 s limit on each command.
pub fn client(w: &World, metrics: &Arc<Metrics>) -> Pm2 {
    Pm2 {
        bin: pm2_bin(),
        home: w.pm2_home(),
        timeout: Duration::from_secs(60),
        turn: Default::default(),
        cache: Default::default(),
        cache_for: Duration::ZERO,
        daemon_up: Default::default(),
        socket: SocketReads {
            metrics: Some(metrics.clone()),
            ..Default::default()
        },
    }
}

/// A stand-in for pm2's daemon at `path`: each connection's first request frame (pm2-axon's
/// framing, decoded) is handed to `answer`, whose bytes are written back; `None` keeps the
/// connection open and silent. Runs on the calling test's tokio runtime.
pub fn serve<F>(path: &Path, answer: impl Fn(Vec<Vec<u8>>) -> F + Send + Sync + 'static)
where
    F: std::future::Future<Output = Option<Vec<u8>>> + Send + 'static,
{
    use shipshape::pm2::socket;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let frame = loop {
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some((f, _)) = socket::decode(&buf).unwrap() {
                        break f;
                    }
                };
                match answer(frame).await {
                    Some(bytes) => {
                        let _ = s.write_all(&bytes).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
}

/// The pids of pm2 daemons running for `home` (pm2 titles its daemon
/// `PM2 vX.Y.Z: God Daemon (<PM2_HOME>)`), from `/proc`.
pub fn god_daemons(home: &Path) -> Vec<u32> {
    let title = format!("God Daemon ({})", home.display());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(&title)
            .then_some(pid)
    })
    .collect()
}

/// Kills the pm2 daemons of `PM2_HOME` `.0` when dropped: for a test that checks none was
/// started, so that a broken build's daemon does not outlive the failed test.
pub struct NoDaemonLeft(pub std::path::PathBuf);

impl Drop for NoDaemonLeft {
    fn drop(&mut self) {
        for pid in god_daemons(&self.0) {
            // SAFETY: kill(2) on a pid read from /proc a moment ago.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }
}

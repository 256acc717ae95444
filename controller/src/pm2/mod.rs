//! The real pm2 with an isolated `PM2_HOME`: the process list is read through its
//! daemon's RPC socket ([`socket`]), falling back to `pm2 jlist` when the socket is
//! missing or answers unexpectedly. Deleting and saving the dump go through the socket
//! too ([`writes`], the CLI as their fallback); applying a generated ecosystem file
//! (`startOrReload --only NAME --update-env`) and `kill` run its CLI with a cleared
//! environment. The dump holds env-file values in clear text: `PM2_HOME` is created 0700
//! and the dump kept 0600.
//!
//! pm2 copies the environment of whoever launches it into every process and into
//! `pm2 jlist`; the controller therefore launches it with nothing but `PATH`, `HOME`
//! and `PM2_HOME`, and each process gets only what its document declares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::exec::{self, ExecError, Spec};

pub mod bus;
pub mod logs;
pub mod readonly;
pub mod socket;
pub mod writes;

/// Env key carrying the app a process belongs to (its absence means: not ours).
pub const ENV_APP: &str = "SHIPSHAPE_APP";
/// Env key carrying the hash of the full process config as applied (env and code included).
pub const ENV_CONFIG: &str = "SHIPSHAPE_CONFIG";
/// Env key carrying the hash of the fields a reload cannot change (script, mode, instances …).
pub const ENV_SHAPE: &str = "SHIPSHAPE_SHAPE";
/// Env key listing the variables the document declared (pm2 keeps removed ones on reload).
pub const ENV_KEYS: &str = "SHIPSHAPE_ENV_KEYS";
/// Env key carrying the app commit the process runs.
pub const ENV_COMMIT: &str = "SHIPSHAPE_COMMIT";

/// A `pm2 jlist` result and when it was taken.
pub type Observation = (std::time::Instant, Vec<Instance>);

/// How to reach pm2.
#[derive(Debug, Clone)]
pub struct Pm2 {
    /// The `pm2` executable (e.g. `.tools/node_modules/.bin/pm2`).
    pub bin: PathBuf,
    /// `PM2_HOME`.
    pub home: PathBuf,
    /// Time limit for one pm2 command.
    pub timeout: Duration,
    /// pm2's CLI is not safe to run concurrently (two first calls race to spawn the
    /// daemon and one hangs): calls take turns.
    pub turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The last `pm2 jlist`, shared by observations within [`Pm2::cache_for`]; any change
    /// made through this client drops it.
    pub cache: std::sync::Arc<std::sync::Mutex<Option<Observation>>>,
    /// How long an observation may reuse the last `pm2 jlist` (zero: never).
    pub cache_for: Duration,
    /// Set once a call succeeded (pm2's daemon is up), cleared when one fails: from then
    /// on, reading the process list does not wait for the turn, so one app's health
    /// rounds never wait behind another app's reload.
    pub daemon_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Reading the process list through pm2's daemon socket.
    pub socket: SocketReads,
}

/// How [`Pm2::jlist`] reads, and [`Pm2::delete`] and [`Pm2::save`] change, through pm2's
/// daemon socket, and report falling back to the CLI.
#[derive(Debug, Clone)]
pub struct SocketReads {
    /// Use the socket at all (else always the CLI: `pm2 jlist`, `pm2 delete`, `pm2 save`).
    pub enabled: bool,
    /// The socket; `None`: `PM2_HOME/rpc.sock`.
    pub path: Option<PathBuf>,
    /// Time limit for connecting and for one call.
    pub timeout: Duration,
    /// Where fallbacks are counted (`shipshape_pm2_socket_fallbacks_total`).
    pub metrics: Option<std::sync::Arc<crate::runtime::metrics::Metrics>>,
    /// Set when a fallback was warned about; cleared when the socket answers again, so a
    /// fallback streak is warned about once.
    pub warned: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Changes made through this client; a socket read (which does not take the turn)
    /// that overlapped one does not fill the cache.
    pub changes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for SocketReads {
    fn default() -> Self {
        SocketReads {
            enabled: true,
            path: None,
            timeout: Duration::from_secs(5),
            metrics: None,
            warned: Default::default(),
            changes: Default::default(),
        }
    }
}

/// Which way pm2 was reached: a process list read, or a change made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadVia {
    /// Through pm2's daemon socket.
    Socket,
    /// Through pm2's CLI (`pm2 jlist`, `pm2 delete` …), after the socket failed for this
    /// reason (`None`: the socket was not tried: disabled, or a name pm2's CLI interprets).
    Cli(Option<String>),
}

/// One pm2 process instance, as `pm2 jlist` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// pm2's name.
    pub name: String,
    /// pm2's id.
    pub pm_id: u64,
    /// OS pid (0 when not running).
    pub pid: u64,
    /// What pm2 says of it, parsed where pm2's answer is read.
    pub status: Status,
    /// pm2's restart counter.
    pub restarts: u64,
    /// `fork_mode` or `cluster_mode`.
    pub exec_mode: String,
    /// The process's environment as pm2 recorded it.
    pub env: BTreeMap<String, String>,
    /// CPU use in percent of one core (`monit.cpu`; a process busy on two cores shows
    /// 200), measured by pm2 since its previous measurement. 0 when pm2 reports none.
    pub cpu: f64,
    /// Resident memory in bytes (`monit.memory`). 0 when pm2 reports none (a process that
    /// is not running, or pm2 failing to measure).
    pub memory: u64,
    /// Where pm2 writes its output (each cluster instance has its own files).
    pub logs: LogPaths,
}

/// The files pm2 writes an instance's stdout and stderr to (`pm2_env.pm_out_log_path`,
/// `pm2_env.pm_err_log_path`); `None` when pm2 reports none, or `/dev/null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPaths {
    /// stdout.
    pub out: Option<PathBuf>,
    /// stderr.
    pub err: Option<PathBuf>,
}

/// A process's status as pm2 reports it (`pm2_env.status`), parsed once where pm2's
/// answer is read; shown as pm2 spells it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// `online`: running.
    Online,
    /// `launching`: being started (cluster mode until the worker listens).
    Launching,
    /// `stopping`: being stopped.
    Stopping,
    /// `stopped`: not running (stopped, or pm2 gave up restarting it).
    Stopped,
    /// `errored`: crashed and not restarted.
    Errored,
    /// `waiting restart`: crashed, restart pending (`restart_delay`).
    WaitingRestart,
    /// `one-launch-status`: a process started with `autorestart: false` that exited.
    OneLaunch,
    /// Any other text (a later pm2 may add statuses; none reported is the empty text).
    Other(String),
}

impl Status {
    /// Parse pm2's text; an unknown one is kept as [`Status::Other`].
    pub fn parse(text: &str) -> Status {
        match text {
            "online" => Status::Online,
            "launching" => Status::Launching,
            "stopping" => Status::Stopping,
            "stopped" => Status::Stopped,
            "errored" => Status::Errored,
            "waiting restart" => Status::WaitingRestart,
            "one-launch-status" => Status::OneLaunch,
            other => Status::Other(other.to_string()),
        }
    }

    /// pm2's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Status::Online => "online",
            Status::Launching => "launching",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Errored => "errored",
            Status::WaitingRestart => "waiting restart",
            Status::OneLaunch => "one-launch-status",
            Status::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<&str> for Status {
    fn from(text: &str) -> Status {
        Status::parse(text)
    }
}

impl Instance {
    /// The app this instance was started for, if the controller started it.
    pub fn app(&self) -> Option<&str> {
        self.env.get(ENV_APP).map(String::as_str)
    }
}

/// Why a pm2 call failed.
#[derive(Debug, thiserror::Error)]
pub enum Pm2Error {
    /// The command failed or timed out.
    #[error("pm2 {action}: {source}")]
    Command {
        /// What was asked of pm2.
        action: String,
        /// The underlying failure.
        #[source]
        source: ExecError,
    },
    /// pm2 refused the change (e.g. no process of that name), as its CLI would have.
    #[error("pm2 {action}: {message}")]
    Refused {
        /// What was asked of pm2.
        action: String,
        /// pm2's reason (never a payload).
        message: String,
    },
    /// `pm2 jlist` printed something that is not its JSON.
    #[error("pm2 jlist printed unreadable output: {0}")]
    Parse(String),
    /// `PM2_HOME` or pm2's dump could not be created or made private.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and to which path.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Pm2Error {
    /// The failed command's output tail, when there was one.
    pub fn tail(&self) -> Option<&str> {
        match self {
            Pm2Error::Command { source, .. } => source.tail(),
            Pm2Error::Parse(_) | Pm2Error::Io { .. } | Pm2Error::Refused { .. } => None,
        }
    }
}

/// pm2's dump files (written by `pm2 save`): every process's environment, env-file values
/// included, in clear text. pm2 writes them with the umask's mode (0644); the controller
/// makes them 0600 after each save and at start, and pm2 keeps the mode when it rewrites them.
pub const DUMP_FILES: &[&str] = &["dump.pm2", "dump.pm2.bak"];

#[derive(Deserialize)]
struct RawProc {
    name: String,
    #[serde(default)]
    pm_id: u64,
    #[serde(default)]
    pid: u64,
    pm2_env: RawEnv,
    /// Read leniently (a null or odd figure is 0), so resource figures never make the
    /// whole list unreadable.
    #[serde(default)]
    monit: serde_json::Value,
}

#[derive(Deserialize)]
struct RawEnv {
    #[serde(default)]
    status: String,
    #[serde(default)]
    restart_time: u64,
    #[serde(default)]
    exec_mode: String,
    #[serde(default)]
    env: BTreeMap<String, serde_json::Value>,
    /// Read leniently: an odd value is no path.
    #[serde(default)]
    pm_out_log_path: serde_json::Value,
    #[serde(default)]
    pm_err_log_path: serde_json::Value,
}

/// A log path as pm2 reports it: none for a missing or odd value, or pm2's "no log".
fn log_path(v: &serde_json::Value) -> Option<PathBuf> {
    let s = v.as_str()?;
    (!s.is_empty() && s != "/dev/null" && s != "NULL").then(|| PathBuf::from(s))
}

/// Parse `pm2 jlist` output (tolerating noise printed before the JSON).
pub fn parse_jlist(text: &str) -> Result<Vec<Instance>, Pm2Error> {
    // pm2 prints its JSON on the last line; a daemon spawn prints coloured lines before it.
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("[{") || *l == "[]")
        .ok_or_else(|| Pm2Error::Parse(exec::tail_of(text.as_bytes())))?;
    let raw: Vec<RawProc> =
        serde_json::from_str(line).map_err(|e| Pm2Error::Parse(format!("{e}")))?;
    Ok(instances(raw))
}

/// The instances in pm2's process list as JSON (`getMonitorData`'s answer, which is what
/// `pm2 jlist` prints).
///
/// # Errors
/// [`Pm2Error::Parse`] when it is not such a list (the message names no value).
pub fn parse_list(list: serde_json::Value) -> Result<Vec<Instance>, Pm2Error> {
    let raw: Vec<RawProc> =
        serde_json::from_value(list).map_err(|e| Pm2Error::Parse(format!("{e}")))?;
    Ok(instances(raw))
}

fn instances(raw: Vec<RawProc>) -> Vec<Instance> {
    raw.into_iter()
        .map(|p| Instance {
            cpu: p.monit["cpu"]
                .as_f64()
                .filter(|c| c.is_finite())
                .unwrap_or(0.0),
            memory: p.monit["memory"]
                .as_u64()
                .or_else(|| p.monit["memory"].as_f64().map(|m| m.max(0.0) as u64))
                .unwrap_or(0),
            name: p.name,
            pm_id: p.pm_id,
            pid: p.pid,
            status: Status::parse(&p.pm2_env.status),
            restarts: p.pm2_env.restart_time,
            logs: LogPaths {
                out: log_path(&p.pm2_env.pm_out_log_path),
                err: log_path(&p.pm2_env.pm_err_log_path),
            },
            exec_mode: p.pm2_env.exec_mode,
            env: p
                .pm2_env
                .env
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        })
        .collect()
}

impl Pm2 {
    fn spec(&self, args: &[&str]) -> Spec {
        let cwd = self.home.parent().unwrap_or(Path::new("/")).to_path_buf();
        Spec::program(&self.bin, args, &cwd, self.timeout)
            .envs([("PM2_HOME", self.home.display().to_string())])
    }

    async fn call(&self, action: &str, args: &[&str]) -> Result<exec::Output, Pm2Error> {
        let _turn = self.turn.lock().await;
        self.call_in_turn(action, args).await
    }

    /// [`Pm2::call`] for a caller that already holds the turn.
    async fn call_in_turn(&self, action: &str, args: &[&str]) -> Result<exec::Output, Pm2Error> {
        let _changing = (action != "jlist").then(|| self.changing());
        crate::state::ensure_dir(&self.home).map_err(|source| Pm2Error::Io {
            what: format!("creating PM2_HOME {}", self.home.display()),
            source,
        })?;
        let result = exec::run(&self.spec(args)).await;
        self.daemon_up.store(
            result.is_ok() && action != "kill",
            std::sync::atomic::Ordering::SeqCst,
        );
        result.map_err(|source| Pm2Error::Command {
            action: action.into(),
            source,
        })
    }

    /// Where pm2 writes processes' output unless told otherwise (`PM2_HOME/logs`).
    pub fn log_dir(&self) -> PathBuf {
        self.home.join("logs")
    }

    /// The daemon's event bus (`PM2_HOME/pub.sock`), beside its RPC socket.
    pub fn bus_path(&self) -> PathBuf {
        self.socket_path().with_file_name("pub.sock")
    }

    /// The daemon's socket.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .path
            .clone()
            .unwrap_or_else(|| self.home.join("rpc.sock"))
    }

    /// The process list through the daemon's socket; `Err` carries why not (for the
    /// fallback's report), never a payload.
    async fn socket_list(&self) -> Result<Vec<Instance>, socket::SocketError> {
        let counted = |e: socket::SocketError| {
            self.count_fallback(e.kind());
            e
        };
        let list = socket::monitor_data(&self.socket_path(), self.socket.timeout)
            .await
            .map_err(counted)?;
        // serde's message may quote a value (an env value of the wrong type): not shown.
        let list = parse_list(list).map_err(|_| counted(socket::SocketError::UnreadableList))?;
        self.daemon_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if self
            .socket
            .warned
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            tracing::info!("reading pm2's process list through its daemon socket again");
        }
        Ok(list)
    }

    fn count_fallback(&self, reason: &'static str) {
        if let Some(m) = &self.socket.metrics {
            m.inc(
                "shipshape_pm2_socket_fallbacks_total",
                vec![("reason", reason.to_string())],
                1.0,
            );
        }
    }

    /// Warn about falling back to the CLI, once per streak. No socket at all before the
    /// socket ever answered is a daemon not started yet (a first start): said at info level.
    fn report_fallback(&self, reason: &socket::SocketError) {
        if self
            .socket
            .warned
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let first_start = matches!(reason, socket::SocketError::Missing(_))
            && !self.daemon_up.load(std::sync::atomic::Ordering::SeqCst);
        if first_start {
            tracing::info!("no pm2 daemon runs yet ({reason}): `pm2 jlist` starts one");
        } else {
            tracing::warn!(
                "reading pm2's process list with `pm2 jlist` instead of its daemon socket: {reason}"
            );
        }
    }

    /// `pm2 jlist` through the CLI.
    async fn cli_list(&self) -> Result<Vec<Instance>, Pm2Error> {
        // Reading is safe beside another call once the daemon runs (only two calls that
        // both have to spawn it race).
        let out = if self.daemon_up.load(std::sync::atomic::Ordering::SeqCst) {
            self.call_in_turn("jlist", &["jlist"]).await?
        } else {
            self.call("jlist", &["jlist"]).await?
        };
        parse_jlist(&out.stdout)
    }

    /// Every process pm2 knows, asked of its daemon's socket only: never pm2's CLI, which
    /// starts a daemon when none runs (what `shipshape plan` must not do).
    ///
    /// # Errors
    /// [`Pm2Error::Refused`] with the socket's reason when the daemon does not answer.
    pub async fn socket_jlist(&self) -> Result<Vec<Instance>, Pm2Error> {
        self.socket_list().await.map_err(|reason| Pm2Error::Refused {
            action: "jlist".into(),
            message: format!(
                "its daemon's socket did not answer ({reason}); pm2's CLI is not asked instead, as it would start a daemon"
            ),
        })
    }

    /// Every process pm2 knows, ours or not.
    ///
    /// # Errors
    /// [`Pm2Error`] when pm2 cannot be run or its output is unreadable.
    pub async fn jlist(&self) -> Result<Vec<Instance>, Pm2Error> {
        self.jlist_via().await.map(|(list, _)| list)
    }

    /// [`Pm2::jlist`], saying which way it read: through the daemon's socket (without
    /// waiting for the turn), else `pm2 jlist` (the fallback is warned about once per
    /// streak and counted in `shipshape_pm2_socket_fallbacks_total`).
    ///
    /// # Errors
    /// [`Pm2Error`] when both the socket and pm2's CLI fail.
    pub async fn jlist_via(&self) -> Result<(Vec<Instance>, ReadVia), Pm2Error> {
        if !self.socket.enabled {
            return Ok((self.cli_list().await?, ReadVia::Cli(None)));
        }
        match self.socket_list().await {
            Ok(list) => Ok((list, ReadVia::Socket)),
            Err(reason) => {
                self.report_fallback(&reason);
                let reason = reason.to_string();
                Ok((self.cli_list().await?, ReadVia::Cli(Some(reason))))
            }
        }
    }

    /// The process list, or its reading from less than [`Pm2::cache_for`] ago. Through
    /// the socket a read costs little; through the CLI a Node start (~0.14 s of CPU), and
    /// a pass over many apps observes once.
    ///
    /// # Errors
    /// [`Pm2Error`] when pm2 cannot be run or its output is unreadable.
    pub async fn jlist_cached(&self) -> Result<Vec<Instance>, Pm2Error> {
        if self.cache_for.is_zero() {
            return self.jlist().await;
        }
        let fresh = || {
            self.cache
                .lock()
                .expect("pm2 cache")
                .as_ref()
                .filter(|(at, _)| at.elapsed() < self.cache_for)
                .map(|(_, list)| list.clone())
        };
        if let Some(list) = fresh() {
            return Ok(list);
        }
        let started = std::time::Instant::now();
        if self.socket.enabled {
            let changes = self
                .socket
                .changes
                .load(std::sync::atomic::Ordering::SeqCst);
            match self.socket_list().await {
                Ok(list) => {
                    let mut cache = self.cache.lock().expect("pm2 cache");
                    // A change made while reading may not show in this list.
                    if self
                        .socket
                        .changes
                        .load(std::sync::atomic::Ordering::SeqCst)
                        == changes
                    {
                        *cache = Some((started, list.clone()));
                    }
                    return Ok(list);
                }
                Err(reason) => self.report_fallback(&reason),
            }
        }
        // Wait for our turn first: an observation queued behind another one reuses its result.
        let _turn = self.turn.lock().await;
        if let Some(list) = fresh() {
            return Ok(list);
        }
        let started = std::time::Instant::now();
        let out = self.call_in_turn("jlist", &["jlist"]).await?;
        let list = parse_jlist(&out.stdout)?;
        *self.cache.lock().expect("pm2 cache") = Some((started, list.clone()));
        Ok(list)
    }

    /// Start `name` from `ecosystem` if missing, else reload it gracefully with the file's env.
    ///
    /// # Errors
    /// [`Pm2Error`] when pm2 fails.
    pub async fn start_or_reload(&self, ecosystem: &Path, name: &str) -> Result<(), Pm2Error> {
        let eco = ecosystem.display().to_string();
        self.call(
            &format!("startOrReload {name}"),
            &["startOrReload", &eco, "--only", name, "--update-env"],
        )
        .await
        .map(|_| ())
    }

    /// Delete `name` (all its instances), as `pm2 delete NAME` does: through the daemon's
    /// socket, else its CLI ([`writes`]).
    ///
    /// # Errors
    /// [`Pm2Error`] when pm2 fails, or has no such process.
    pub async fn delete(&self, name: &str) -> Result<(), Pm2Error> {
        self.delete_via(name).await.map(|_| ())
    }

    /// Save the process list, so pm2's own startup resurrects what runs now, as
    /// `pm2 save --force` does: through the daemon's socket (the dump written 0600 from
    /// the start), else its CLI ([`writes`]).
    ///
    /// # Errors
    /// [`Pm2Error`] when pm2 fails or the dump cannot be written.
    pub async fn save(&self) -> Result<(), Pm2Error> {
        self.save_via().await.map(|_| ())
    }

    /// Make pm2's dump files ([`DUMP_FILES`]) 0600 where others could read them; returns
    /// what was changed.
    ///
    /// # Errors
    /// [`Pm2Error::Io`] when a mode cannot be changed.
    pub fn secure_dump(&self) -> Result<Vec<crate::state::Tightened>, Pm2Error> {
        let mut out = Vec::new();
        for name in DUMP_FILES {
            let path = self.home.join(name);
            match crate::state::tighten(&path, 0o600) {
                Ok(t) => out.extend(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Pm2Error::Io {
                        what: format!("making {} private", path.display()),
                        source,
                    });
                }
            }
        }
        Ok(out)
    }

    /// At start: create `PM2_HOME` 0700 when missing, and make the dump files 0600.
    /// Returns what was tightened (for a warning), and a note when an existing
    /// `PM2_HOME` is open to others (it is the operator's; it is left as it is).
    ///
    /// # Errors
    /// [`Pm2Error::Io`] when `PM2_HOME` cannot be created or a mode cannot be changed.
    pub fn secure(&self) -> Result<(Vec<crate::state::Tightened>, Option<String>), Pm2Error> {
        use std::os::unix::fs::PermissionsExt;
        crate::state::ensure_dir(&self.home).map_err(|source| Pm2Error::Io {
            what: format!("creating PM2_HOME {}", self.home.display()),
            source,
        })?;
        let open = std::fs::metadata(&self.home)
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
            .filter(|m| m & 0o077 != 0)
            .map(|m| {
                format!(
                    "PM2_HOME {} is open to others (mode {m:04o}); the controller keeps pm2's dump files 0600, but `chmod 700` it unless others need pm2's logs",
                    self.home.display()
                )
            });
        Ok((self.secure_dump()?, open))
    }

    /// Stop the pm2 daemon and every process it runs.
    ///
    /// # Errors
    /// [`Pm2Error`] when pm2 fails.
    pub async fn kill(&self) -> Result<(), Pm2Error> {
        self.call("kill", &["kill"]).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jlist_is_parsed_and_env_values_become_text() {
        let text = r#"[PM2] Spawning PM2 daemon with pm2_home=/x
[{"pid":7,"name":"web","pm_id":0,"pm2_env":{"status":"online","restart_time":2,"exec_mode":"cluster_mode","env":{"PORT":3000,"SHIPSHAPE_APP":"demo"}}}]"#;
        let list = parse_jlist(text).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, Status::Online);
        assert_eq!(list[0].restarts, 2);
        assert_eq!(list[0].env["PORT"], "3000");
        assert_eq!(list[0].app(), Some("demo"));
        assert_eq!((list[0].cpu, list[0].memory), (0.0, 0), "no monit: zeros");
    }

    #[test]
    fn monit_figures_are_read_and_odd_ones_are_zero() {
        let text = r#"[{"pid":7,"name":"web","pm_id":0,"monit":{"memory":52428800,"cpu":12.5},"pm2_env":{"status":"online"}},{"pid":8,"name":"web","pm_id":1,"monit":{"memory":1.5e6,"cpu":null},"pm2_env":{"status":"online"}},{"pid":0,"name":"web","pm_id":2,"monit":null,"pm2_env":{"status":"stopped"}},{"pid":9,"name":"web","pm_id":3,"monit":{"memory":"lots","cpu":"hot"},"pm2_env":{"status":"online"}}]"#;
        let list = parse_jlist(text).unwrap();
        let figures: Vec<(f64, u64)> = list.iter().map(|i| (i.cpu, i.memory)).collect();
        assert_eq!(
            figures,
            [(12.5, 52_428_800), (0.0, 1_500_000), (0.0, 0), (0.0, 0)]
        );
    }

    #[test]
    fn statuses_are_parsed_once_and_shown_as_pm2_spells_them() {
        let text = r#"[{"name":"a","pm2_env":{"status":"online"}},{"name":"b","pm2_env":{"status":"waiting restart"}},{"name":"c","pm2_env":{"status":"sleeping"}},{"name":"d","pm2_env":{}}]"#;
        let list = parse_jlist(text).unwrap();
        let statuses: Vec<&Status> = list.iter().map(|i| &i.status).collect();
        assert_eq!(
            statuses,
            [
                &Status::Online,
                &Status::WaitingRestart,
                &Status::Other("sleeping".into()),
                &Status::Other(String::new()),
            ]
        );
        for text in [
            "online",
            "launching",
            "stopping",
            "stopped",
            "errored",
            "waiting restart",
            "one-launch-status",
            "sleeping",
        ] {
            assert_eq!(Status::parse(text).to_string(), text);
        }
    }

    #[test]
    fn unreadable_jlist_is_an_error() {
        assert!(parse_jlist("pm2 exploded").is_err());
    }
}

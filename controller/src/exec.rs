//! Running external commands: a cleared environment plus what is declared, a time limit,
//! the whole process group killed on timeout, and the output's tail kept for status.
//!
//! Values the controller passes (commits, paths, levels) go through argv or env, never
//! into a shell string. Documents' own commands (install, build, hooks) are the user's
//! shell text and run through `sh -c` with those values available as `$SHIPSHAPE_*`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::envfile::Redactor;

/// How many bytes of output are kept for status and errors.
pub const TAIL_BYTES: usize = 8 * 1024;

/// Variables passed through from the controller's own environment to every command.
/// Nothing else leaks: secrets in the controller's environment stay there.
pub const PASSTHROUGH_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME"];

/// A command to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Program.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The whole environment (on top of [`PASSTHROUGH_ENV`]).
    pub env: BTreeMap<String, String>,
    /// Time limit.
    pub timeout: Duration,
    /// Where to append the full output, if anywhere.
    pub log: Option<PathBuf>,
    /// Masks secrets in the log, the tail and error messages.
    pub redactor: Redactor,
}

impl Spec {
    /// `sh -c <script>` in `cwd`.
    pub fn shell(script: &str, cwd: &Path, timeout: Duration) -> Spec {
        Spec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: cwd.to_path_buf(),
            env: BTreeMap::new(),
            timeout,
            log: None,
            redactor: Redactor::default(),
        }
    }

    /// `program args...` in `cwd`.
    pub fn program(
        program: impl Into<PathBuf>,
        args: &[&str],
        cwd: &Path,
        timeout: Duration,
    ) -> Spec {
        Spec {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.to_path_buf(),
            env: BTreeMap::new(),
            timeout,
            log: None,
            redactor: Redactor::default(),
        }
    }

    /// Mask these secrets in everything this command's output reaches.
    pub fn redact(mut self, redactor: &Redactor) -> Spec {
        self.redactor = redactor.clone();
        self
    }

    /// Add environment variables.
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Spec {
        for (k, v) in vars {
            self.env.insert(k.into(), v.into());
        }
        self
    }

    /// Append the full output to `path`.
    pub fn log_to(mut self, path: impl Into<PathBuf>) -> Spec {
        self.log = Some(path.into());
        self
    }

    fn describe(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output (whole; commands whose output we parse are small).
    pub stdout: String,
    /// The tail of standard error and standard output, interleaved by stream.
    pub tail: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program could not be started.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It ran past its time limit; its process group was killed.
    #[error("`{command}` timed out after {timeout:?}; its process group was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
        /// Output so far.
        tail: String,
    },
    /// It exited non-zero (or by a signal).
    #[error("`{command}` exited with {}", code.map(|c| format!("code {c}")).unwrap_or_else(|| "a signal".into()))]
    Failed {
        /// The command line.
        command: String,
        /// The exit code.
        code: Option<i32>,
        /// The output's tail.
        tail: String,
    },
}

impl ExecError {
    /// The output's tail, when there was output.
    pub fn tail(&self) -> Option<&str> {
        match self {
            ExecError::Spawn { .. } => None,
            ExecError::Timeout { tail, .. } | ExecError::Failed { tail, .. } => Some(tail),
        }
    }
}

/// Run `spec` to completion or its timeout.
///
/// # Guarantees
/// The child runs in its own process group; on timeout (or if this future is dropped)
/// the whole group gets SIGKILL, so `npm`'s children do not survive it.
///
/// # Errors
/// [`ExecError`] when it cannot start, times out or exits non-zero.
pub async fn run(spec: &Spec) -> Result<Output, ExecError> {
    let command_line = spec.redactor.redact(&spec.describe());
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for key in PASSTHROUGH_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(&spec.env);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
        command: command_line.clone(),
        source,
    })?;
    let pgid = child.id().map(|p| p as i32);
    let guard = GroupGuard(pgid);
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // Read into buffers that outlive the time limit: what a command printed before it was
    // killed is what tells why it hung.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let io = async {
        tokio::join!(read_into(stdout, &mut out), read_into(stderr, &mut err));
        child.wait().await
    };
    let result = tokio::time::timeout(spec.timeout, io).await;
    let elapsed = started.elapsed();
    // The leader exited or timed out; either way its whole group goes.
    drop(guard);
    let mut combined = out.clone();
    combined.extend_from_slice(&err);
    let combined = spec
        .redactor
        .redact(&String::from_utf8_lossy(&combined))
        .into_bytes();
    let tail = tail_of(&combined);
    match result {
        Err(_) => {
            if let Some(log) = &spec.log {
                let mut logged = combined;
                logged.extend_from_slice(
                    format!(
                        "\n(timed out after {:?}; its process group was killed)",
                        spec.timeout
                    )
                    .as_bytes(),
                );
                append_log(log, &command_line, &logged);
            }
            Err(ExecError::Timeout {
                command: command_line,
                timeout: spec.timeout,
                tail,
            })
        }
        Ok(status) => {
            if let Some(log) = &spec.log {
                append_log(log, &command_line, &combined);
            }
            let stdout = String::from_utf8_lossy(&out).into_owned();
            let status = status.map_err(|source| ExecError::Spawn {
                command: command_line.clone(),
                source,
            })?;
            if status.success() {
                Ok(Output {
                    code: status.code(),
                    stdout,
                    tail,
                    elapsed,
                })
            } else {
                Err(ExecError::Failed {
                    command: command_line,
                    code: status.code(),
                    tail,
                })
            }
        }
    }
}

/// Kills a process group when dropped.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Append everything `r` yields to `buf`, chunk by chunk, so that what was read stays in
/// `buf` when this future is dropped (at a time limit).
async fn read_into<R: AsyncRead + Unpin>(mut r: R, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The last [`TAIL_BYTES`] of `bytes`, cut at a line start where possible.
pub fn tail_of(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    let mut slice = &bytes[start..];
    if start > 0
        && let Some(nl) = slice.iter().position(|b| *b == b'\n')
    {
        slice = &slice[nl + 1..];
    }
    String::from_utf8_lossy(slice).trim_end().to_string()
}

fn append_log(path: &Path, command: &str, output: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
    {
        let _ = writeln!(f, "$ {command}");
        let _ = f.write_all(output);
        let _ = writeln!(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let spec = Spec::shell(&script, dir.path(), Duration::from_millis(500));
        let err = run(&spec).await.unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: signal 0 only checks whether the pid exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(
                Instant::now() < deadline,
                "the background child {pid} survived the timeout"
            );
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn the_environment_is_cleared_except_declared_and_passthrough() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("SHIPSHAPE_TEST_LEAK", "secret") };
        let dir = tempfile::tempdir().unwrap();
        let spec =
            Spec::shell("env", dir.path(), Duration::from_secs(5)).envs([("DECLARED", "yes")]);
        let out = run(&spec).await.unwrap();
        assert!(out.stdout.contains("DECLARED=yes"));
        assert!(out.stdout.contains("PATH="));
        assert!(!out.stdout.contains("SHIPSHAPE_TEST_LEAK"));
    }

    #[tokio::test]
    async fn secrets_are_masked_in_the_tail_and_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let r = Redactor::new(["pa55w0rd-xyz".to_string()]);
        let spec = Spec::shell(
            "echo url=postgres://u:$PW@h/db; exit 1",
            dir.path(),
            Duration::from_secs(5),
        )
        .envs([("PW", "pa55w0rd-xyz")])
        .redact(&r)
        .log_to(&log);
        let err = run(&spec).await.unwrap_err();
        let tail = err.tail().unwrap();
        assert!(tail.contains("postgres://u:***@h/db"), "{tail}");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            !logged.contains("pa55w0rd-xyz") && logged.contains("***"),
            "{logged}"
        );
    }

    #[tokio::test]
    async fn a_failure_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec::shell(
            "echo one; echo two >&2; exit 3",
            dir.path(),
            Duration::from_secs(5),
        );
        match run(&spec).await.unwrap_err() {
            ExecError::Failed { code, tail, .. } => {
                assert_eq!(code, Some(3));
                assert!(tail.contains("one") && tail.contains("two"), "{tail}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn tails_are_bounded_and_start_on_a_line() {
        let mut big = Vec::new();
        for i in 0..5000 {
            big.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let t = tail_of(&big);
        assert!(t.len() <= TAIL_BYTES);
        assert!(t.starts_with("line "));
        assert!(t.ends_with("line 4999"));
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    #[tokio::test]
    async fn a_timeout_keeps_the_tail_of_what_was_printed_before_it_and_logs_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let spec = Spec::shell(
            "echo compiled 41 modules; echo warning: slow >&2; sleep 30",
            dir.path(),
            Duration::from_millis(700),
        )
        .log_to(&log);
        let err = run(&spec).await.unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        let tail = err.tail().unwrap();
        assert!(
            tail.contains("compiled 41 modules") && tail.contains("warning: slow"),
            "{tail:?}"
        );
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("compiled 41 modules"), "{logged}");
    }
}

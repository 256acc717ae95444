//! Running external commands: a cleared environment plus what is declared, a time limit,
//! the whole process group killed on timeout, and the output's tail kept for status.
//!
//! Output is streamed, never held whole: each line is masked and appended to the
//! command's log as it arrives, up to [`LOG_CAP`] bytes per command (then one line says
//! how many more were not logged); memory keeps only the tail ([`TAIL_BYTES`]) and, for
//! commands whose output is parsed (no log), standard output up to [`STDOUT_CAP`]. A build
//! that prints a gigabyte costs the controller a few hundred KiB.
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

/// How many bytes of one command's output its log keeps (8 MiB): the start of a build's
/// output says what it did, its tail (in the status) why it stopped; a build that prints
/// more is cut here, with a line saying how many bytes were not logged.
pub const LOG_CAP: u64 = 8 * 1024 * 1024;

/// How much standard output of a command without a log is kept (32 MiB): those are the
/// commands whose output the controller parses (`pm2 jlist`, a status command, gpg),
/// whose answers are far smaller; what is beyond it is read and dropped.
pub const STDOUT_CAP: usize = 32 * 1024 * 1024;

/// The longest stretch without a line end held back before it is masked and passed on.
const LINE_MAX: usize = 64 * 1024;

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
    /// Standard output: up to [`STDOUT_CAP`] bytes for a command without a log (commands
    /// whose output we parse), the last [`TAIL_BYTES`] for one with a log.
    pub stdout: String,
    /// The tail of standard output, then of standard error (each masked).
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
    // The sink outlives the time limit: what a command printed before it was killed is
    // what tells why it hung.
    let sink = std::sync::Mutex::new(Sink::new(spec, &command_line));
    let io = async {
        tokio::join!(read_into(stdout, 0, &sink), read_into(stderr, 1, &sink));
        child.wait().await
    };
    let result = tokio::time::timeout(spec.timeout, io).await;
    let elapsed = started.elapsed();
    // The leader exited or timed out; either way its whole group goes.
    drop(guard);
    let mut sink = sink.into_inner().unwrap_or_else(|p| p.into_inner());
    let timed_out = result.is_err();
    let (tail, stdout) = sink.finish(timed_out.then_some(spec.timeout));
    match result {
        Err(_) => Err(ExecError::Timeout {
            command: command_line,
            timeout: spec.timeout,
            tail,
        }),
        Ok(status) => {
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

/// Where a command's output goes as it arrives: masked, to the log (up to [`LOG_CAP`])
/// and the tail; standard output also kept raw (bounded) for the caller.
struct Sink {
    redactor: Redactor,
    log: Option<std::fs::File>,
    logged: u64,
    not_logged: u64,
    log_at_line_start: bool,
    /// Masked output per stream, each bounded to a few [`TAIL_BYTES`].
    tail: [Vec<u8>; 2],
    /// Raw standard output: its head up to `stdout_cap`, or (with a log) its tail.
    stdout: Vec<u8>,
    stdout_head: Option<usize>,
    /// Per stream, what arrived after its last line end.
    pending: [Vec<u8>; 2],
}

impl Sink {
    fn new(spec: &Spec, command_line: &str) -> Sink {
        let log = spec.log.as_deref().and_then(|path| {
            use std::io::Write;
            let mut f = open_log(path)?;
            let _ = writeln!(f, "$ {command_line}");
            Some(f)
        });
        Sink {
            redactor: spec.redactor.clone(),
            stdout_head: spec.log.is_none().then_some(STDOUT_CAP),
            log,
            logged: 0,
            not_logged: 0,
            log_at_line_start: true,
            tail: [Vec::new(), Vec::new()],
            stdout: Vec::new(),
            pending: [Vec::new(), Vec::new()],
        }
    }

    /// Take `bytes` read from stream `i` (0 stdout, 1 stderr).
    fn feed(&mut self, i: usize, bytes: &[u8]) {
        if i == 0 {
            match self.stdout_head {
                Some(cap) => {
                    let room = cap.saturating_sub(self.stdout.len());
                    self.stdout
                        .extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                None => keep_tail(&mut self.stdout, bytes),
            }
        }
        self.pending[i].extend_from_slice(bytes);
        if let Some(nl) = self.pending[i].iter().rposition(|b| *b == b'\n') {
            let rest = self.pending[i].split_off(nl + 1);
            let lines = std::mem::replace(&mut self.pending[i], rest);
            let text = self.redactor.redact(&String::from_utf8_lossy(&lines));
            self.emit(i, text.as_bytes());
        } else if self.pending[i].len() > LINE_MAX {
            // A very long line: mask what is there and pass it on, holding back only what
            // could be the start of a secret still arriving, and a character the read cut.
            let whole = match std::str::from_utf8(&self.pending[i]) {
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                _ => self.pending[i].len(),
            };
            let cut_char = self.pending[i].split_off(whole);
            let text = self
                .redactor
                .redact(&String::from_utf8_lossy(&self.pending[i]));
            let mut cut = text.len().saturating_sub(self.redactor.longest());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.pending[i] = text.as_bytes()[cut..].to_vec();
            self.pending[i].extend_from_slice(&cut_char);
            self.emit(i, &text.as_bytes()[..cut]);
        }
    }

    fn emit(&mut self, i: usize, text: &[u8]) {
        if let Some(f) = &mut self.log {
            use std::io::Write;
            let room = LOG_CAP.saturating_sub(self.logged) as usize;
            let n = text.len().min(room);
            if n > 0 {
                let _ = f.write_all(&text[..n]);
                self.logged += n as u64;
                self.log_at_line_start = text[n - 1] == b'\n';
            }
            self.not_logged += (text.len() - n) as u64;
        }
        keep_tail(&mut self.tail[i], text);
    }

    /// Flush what is pending, close the log (saying what was cut and whether it timed
    /// out); returns the tail and the standard output kept.
    fn finish(&mut self, timed_out: Option<Duration>) -> (String, String) {
        for i in 0..2 {
            let rest = std::mem::take(&mut self.pending[i]);
            if !rest.is_empty() {
                let mut text = self.redactor.redact(&String::from_utf8_lossy(&rest));
                text.push('\n');
                self.emit(i, text.as_bytes());
            }
        }
        if let Some(f) = &mut self.log {
            use std::io::Write;
            if self.not_logged > 0 {
                if !self.log_at_line_start {
                    let _ = writeln!(f);
                }
                let _ = writeln!(
                    f,
                    "… {} bytes more not logged (a command's log keeps its first {} MiB; the last {} KiB are in the status)",
                    self.not_logged,
                    LOG_CAP / (1024 * 1024),
                    TAIL_BYTES / 1024
                );
            }
            if let Some(t) = timed_out {
                let _ = writeln!(f, "(timed out after {t:?}; its process group was killed)");
            }
        }
        let stdout = if self.stdout_head.is_some() {
            String::from_utf8_lossy(&self.stdout).into_owned()
        } else {
            tail_of(&self.stdout)
        };
        // Standard output's tail, then standard error's: an error is usually the last.
        let mut tail = std::mem::take(&mut self.tail[0]);
        tail.extend_from_slice(&self.tail[1]);
        (tail_of(&tail), stdout)
    }
}

/// Append `bytes` to `buf`, keeping no more than a few [`TAIL_BYTES`] (at least two once
/// trimmed, so [`tail_of`] still finds a line start).
fn keep_tail(buf: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[bytes.len().saturating_sub(2 * TAIL_BYTES)..];
    buf.extend_from_slice(bytes);
    if buf.len() > 4 * TAIL_BYTES {
        buf.drain(..buf.len() - 2 * TAIL_BYTES);
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

/// Pass everything `r` yields to the sink, chunk by chunk, so that what was read is there
/// when this future is dropped (at a time limit).
async fn read_into<R: AsyncRead + Unpin>(mut r: R, i: usize, sink: &std::sync::Mutex<Sink>) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => sink
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .feed(i, &chunk[..n]),
        }
    }
}

/// The last [`TAIL_BYTES`] of `bytes`, cut at a line start where possible.
pub fn tail_of(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    let mut slice = &bytes[start..];
    // (Not when the only line end is the last byte: one long line keeps its end.)
    if start > 0
        && let Some(nl) = slice.iter().position(|b| *b == b'\n')
        && slice[nl + 1..].iter().any(|b| !b.is_ascii_whitespace())
    {
        slice = &slice[nl + 1..];
    }
    String::from_utf8_lossy(slice).trim_end().to_string()
}

fn open_log(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()
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

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[tokio::test]
    async fn the_log_keeps_the_first_log_cap_bytes_and_says_how_many_more_were_not_logged() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        // 20 MiB of lines, then a last line the tail must end with.
        let spec = Spec::shell(
            "yes 0123456789abcdef | head -c 20971520; echo; echo the-last-line; exit 2",
            dir.path(),
            Duration::from_secs(60),
        )
        .log_to(&log);
        let err = run(&spec).await.unwrap_err();
        let tail = err.tail().unwrap();
        assert!(
            tail.ends_with("the-last-line"),
            "{:?}",
            &tail[tail.len() - 40..]
        );
        assert!(tail.len() <= TAIL_BYTES);
        let size = std::fs::metadata(&log).unwrap().len();
        assert!(
            size > LOG_CAP && size < LOG_CAP + 4096,
            "the log is {size} bytes"
        );
        let logged = std::fs::read_to_string(&log).unwrap();
        let last = logged.lines().last().unwrap();
        let more = 20971520 + 1 + "the-last-line\n".len() as u64 - LOG_CAP;
        assert!(
            last.starts_with(&format!("… {more} bytes more not logged")),
            "{last}"
        );
    }

    #[tokio::test]
    async fn a_secret_split_across_reads_or_inside_a_very_long_line_is_still_masked() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let r = Redactor::new(["pa55w0rd-xyz".to_string()]);
        // Half the secret, a pause (a separate read), the other half; then one line of
        // 200 KiB with the secret in the middle of it (past the longest held-back stretch).
        let spec = Spec::shell(
            "printf 'url=pa55w0'; sleep 0.3; printf 'rd-xyz done\\n'; \
             head -c 100000 /dev/zero | tr '\\0' x; printf 'pa55w0rd-xyz'; head -c 100000 /dev/zero | tr '\\0' y; echo",
            dir.path(),
            Duration::from_secs(10),
        )
        .redact(&r)
        .log_to(&log);
        let out = run(&spec).await.unwrap();
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(!logged.contains("pa55w0rd-xyz"), "a secret reached the log");
        assert!(logged.contains("url=*** done"), "{}", &logged[..80]);
        assert!(logged.contains("x***y"));
        assert!(!out.tail.contains("pa55w0rd"));
    }

    #[test]
    fn a_secret_cut_by_the_long_line_limit_is_held_back_until_it_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let r = Redactor::new(["pa55w0rd-xyz".to_string()]);
        let spec = Spec::shell("true", dir.path(), Duration::from_secs(1))
            .redact(&r)
            .log_to(&log);
        let mut sink = Sink::new(&spec, "true");
        // Past LINE_MAX without a line end, ending in the first half of the secret.
        let mut first = vec![b'x'; LINE_MAX + 10];
        first.extend_from_slice(b"pa55w0");
        sink.feed(1, &first);
        sink.feed(1, b"rd-xyz and more\n");
        let (tail, _) = sink.finish(None);
        drop(sink);
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            !logged.contains("pa55w0"),
            "a secret's first half reached the log"
        );
        assert!(logged.contains("x*** and more"));
        assert!(
            tail.ends_with("x*** and more"),
            "{}",
            &tail[tail.len() - 20..]
        );
    }

    #[test]
    fn a_character_cut_by_a_read_inside_a_very_long_line_reaches_the_log_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let spec = Spec::shell("true", dir.path(), Duration::from_secs(1)).log_to(&log);
        let mut sink = Sink::new(&spec, "true");
        // Past LINE_MAX without a line end, ending in the first byte of "é".
        let mut first = vec![b'x'; LINE_MAX + 10];
        first.push(0xC3);
        sink.feed(0, &first);
        sink.feed(0, b"\xA9t\n");
        let (tail, _) = sink.finish(None);
        drop(sink);
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.contains("xxé"),
            "the character was cut: {:?}",
            &logged[logged.len() - 12..]
        );
        assert!(tail.ends_with("xét"), "{:?}", &tail[tail.len() - 12..]);
    }

    #[tokio::test]
    async fn a_command_without_a_log_keeps_its_whole_stdout_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec::shell(
            "head -c 3000000 /dev/zero | tr '\\0' a",
            dir.path(),
            Duration::from_secs(10),
        );
        let out = run(&spec).await.unwrap();
        assert_eq!(out.stdout.len(), 3_000_000);
    }

    #[tokio::test]
    async fn a_command_without_a_log_printing_past_the_cap_keeps_the_cap_and_finishes() {
        let dir = tempfile::tempdir().unwrap();
        // 8 MiB past the cap, then the end: read and dropped, never blocking the command.
        let spec = Spec::shell(
            &format!(
                "head -c {} /dev/zero | tr '\\0' a; echo the-end",
                STDOUT_CAP + 8 * 1024 * 1024
            ),
            dir.path(),
            Duration::from_secs(30),
        );
        let out = run(&spec).await.unwrap();
        assert_eq!(out.stdout.len(), STDOUT_CAP);
        assert!(
            out.tail.ends_with("the-end"),
            "{:?}",
            &out.tail[out.tail.len() - 20..]
        );
    }
}

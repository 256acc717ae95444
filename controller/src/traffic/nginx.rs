//! nginx as the traffic switch: the upstream file the controller owns (rendered, read
//! back, written atomically), `nginx -t`, a graceful `nginx -s reload`, and the confirm
//! server that says which slot answers. A switch that fails anywhere puts the old file
//! back and carries nginx's own message; it says "nothing live changed" only when nginx
//! never read the new file.
//!
//! # The file
//! ```text
//! # managed by shipshape: app prompthub, live slot 3001 (do not edit)
//! upstream shipshape_prompthub {
//!     server 127.0.0.1:3001 max_fails=0;
//!     keepalive 16;
//! }
//! server {
//!     listen 127.0.0.1:<confirmPort>;
//!     location / {
//!         proxy_pass http://shipshape_prompthub; proxy_http_version 1.1;
//!         proxy_set_header Connection "";
//!         add_header X-Shipshape-Slot 3001 always;
//!         add_header X-Shipshape-Upstream $upstream_addr always;
//!     }
//! }
//! ```
//! The first line is the marker [`live_slot`] reads back. `max_fails=0`: the only server
//! is never marked down (a slot that fails is the health checks' business, not nginx's).
//! `keepalive 16` with HTTP/1.1 and an empty `Connection` header: nginx keeps idle
//! connections to the slot, and a request that finds one closed by the slot is retried by
//! nginx on a new connection (nginx's default `proxy_next_upstream error timeout`), which is
//! what makes a slot's exit invisible to users.
//!
//! # A switch
//! [`switch`]: (1) keep the old text; (2) write the new one atomically (a temporary file in
//! the same directory, fsync, mode 0644, rename, fsync of the directory); (3) `nginx <args>
//! -t`, on failure the old file is put back: nothing live changed; (4) `nginx <args> -s
//! reload` (nginx not running: its message about the pid file), on failure likewise;
//! (5) confirm: GET `http://127.0.0.1:<confirmPort>/` until its `X-Shipshape-Upstream` is
//! `127.0.0.1:<to>` (any status: the answer came through the new config), within
//! `nginx.timeout`. A confirm that fails puts the old file back and reloads again.
//! Every nginx command runs through [`Commands`] with argv only and `nginx.timeout`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shipshape_spec::app::Traffic;

use crate::exec::{ExecError, Spec};
use crate::ports::Commands;

/// The marker's start: the first line of every upstream file the controller writes.
pub const MARKER: &str = "# managed by shipshape: app ";

/// The confirm server's path that answers, from nginx's loaded configuration and without
/// asking the app, the slot that configuration routes to ([`loaded_slot`]).
pub const LOADED_PATH: &str = "/shipshape/slot";

/// The header the confirm server adds: the address of the slot that answered.
pub const UPSTREAM_HEADER: &str = "X-Shipshape-Upstream";

/// The longest a single confirm request may take (the whole confirm is bounded by
/// `nginx.timeout`).
const CONFIRM_REQUEST_MAX: Duration = Duration::from_secs(2);

/// Why a switch did not happen.
#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    /// Anything, with nginx's own message and what is live now.
    #[error("{0}")]
    Failed(String),
}

/// What a switch took.
#[derive(Debug, Clone, Copy)]
pub struct Switched {
    /// From the reload to the confirm server naming the new slot.
    pub confirmed_after: Duration,
}

/// The upstream file's text for app `app` with `live` as the only server.
pub fn render(t: &Traffic, app: &str, live: u16) -> String {
    let name = t.upstream_name(app);
    let confirm = t.confirm_port;
    format!(
        "{MARKER}{app}, live slot {live} (do not edit)\n\
         upstream {name} {{\n    \
             server 127.0.0.1:{live} max_fails=0;\n    \
             keepalive 16;\n\
         }}\n\
         server {{\n    \
             listen 127.0.0.1:{confirm};\n    \
             location = {LOADED_PATH} {{\n        \
                 return 200 \"{live}\\n\";\n    \
             }}\n    \
             location / {{\n        \
                 proxy_pass http://{name};\n        \
                 proxy_http_version 1.1;\n        \
                 proxy_set_header Connection \"\";\n        \
                 add_header X-Shipshape-Slot {live} always;\n        \
                 add_header {UPSTREAM_HEADER} $upstream_addr always;\n    \
             }}\n\
         }}\n"
    )
}

/// The slot nginx's loaded configuration routes to, asked of the confirm server on
/// `confirm_port` ([`LOADED_PATH`]; answered by nginx itself, not the app), within 1 s.
/// `None`: nginx does not answer there, or with something else (a configuration from before
/// this path existed). The upstream file says what was last written; this says what nginx
/// read: they differ after a controller stopped between writing the file and the reload.
pub async fn loaded_slot(confirm_port: u16) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", confirm_port))
            .await
            .ok()?;
        let head = format!("GET {LOADED_PATH} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(head.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.take(4096).read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?;
        (status == "200").then_some(())?;
        body.trim().parse::<u16>().ok().filter(|p| *p > 0)
    };
    tokio::time::timeout(Duration::from_secs(1), ask)
        .await
        .ok()
        .flatten()
}

/// The slot named by the marker of `text` (the first line), if it is one we wrote.
pub fn parse_marker(text: &str) -> Option<u16> {
    let first = text.lines().next()?;
    let rest = first.strip_prefix(MARKER)?;
    let (_, after) = rest.rsplit_once(", live slot ")?;
    let port = after.strip_suffix(" (do not edit)")?;
    port.parse::<u16>().ok().filter(|p| *p > 0)
}

/// The confirm server's port in an upstream file's text (its `listen 127.0.0.1:N;`).
fn confirm_port_of(text: &str) -> Option<u16> {
    let rest = text.split_once("listen 127.0.0.1:")?.1;
    rest.split(';').next()?.trim().parse().ok()
}

/// The slot the upstream file at `file` names (`None`: no file, or not one we wrote).
///
/// # Errors
/// When the file exists but cannot be read.
pub fn live_slot(file: &Path) -> Result<Option<u16>, String> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(parse_marker(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read the upstream file {}: {e}",
            file.display()
        )),
    }
}

/// Write `text` to `file` atomically: a temporary file in the same directory, fsync,
/// mode 0644, rename over `file`, fsync of the directory.
///
/// # Errors
/// What failed, with the path.
pub fn write_atomically(file: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upstream".into());
    let tmp = dir.join(format!(".{base}.shipshape-{}.tmp", std::process::id()));
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", tmp.display());
    let result = (|| {
        // A temporary file left by a stopped controller goes first; then a new one is created
        // exclusively (O_CREAT|O_EXCL never follows a symlink planted at that name).
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| fail("cannot create", e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| fail("cannot write", e))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| fail("cannot chmod", e))?;
        f.sync_all().map_err(|e| fail("cannot fsync", e))?;
        std::fs::rename(&tmp, file)
            .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), file.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Put `old` back at `file` (`None`: there was no file; remove it).
fn restore(file: &Path, old: &Option<String>) -> Result<(), String> {
    match old {
        Some(text) => write_atomically(file, text),
        None => match std::fs::remove_file(file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", file.display())),
        },
    }
}

/// The nginx command `<binary> <args> <extra>` with `nginx.timeout`.
pub(super) fn nginx_spec(t: &Traffic, extra: &[&str]) -> Spec {
    let mut args: Vec<&str> = t.nginx.args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Spec::program(&t.nginx.binary, &args, Path::new("/"), t.nginx.timeout.0)
}

/// What nginx said when a command failed: its own output (nginx writes to stderr), else
/// the command's error.
fn nginx_said(e: &ExecError) -> String {
    let tail = e.tail().map(str::trim).unwrap_or("");
    if tail.is_empty() {
        e.to_string()
    } else {
        // nginx -t prints "syntax is ok" / "test failed" lines around the error: keep the
        // lines that say what is wrong first.
        let mut lines: Vec<&str> = tail
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines.sort_by_key(|l| {
            !(l.contains("[emerg]") || l.contains("[error]") || l.contains("[alert]"))
        });
        lines.join("; ")
    }
}

/// Run `<binary> <args> <extra>`: Ok, or what nginx said (and whether it timed out).
async fn run_nginx(
    t: &Traffic,
    extra: &[&str],
    commands: &dyn Commands,
) -> Result<(), (String, bool)> {
    let spec = nginx_spec(t, extra);
    match commands.run(&spec).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let timed_out = matches!(e, ExecError::Timeout { .. });
            Err((nginx_said(&e), timed_out))
        }
    }
}

/// What the confirm server said on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmAnswer {
    /// It answered: the HTTP status and its `X-Shipshape-Upstream` (if any).
    Answered {
        /// The status code.
        status: u16,
        /// The header's value.
        upstream: Option<String>,
    },
    /// No answer (connection refused, reset, timed out, not HTTP).
    Nothing(String),
}

impl std::fmt::Display for ConfirmAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfirmAnswer::Answered {
                status,
                upstream: Some(u),
            } => write!(f, "HTTP {status} from upstream {u}"),
            ConfirmAnswer::Answered {
                status,
                upstream: None,
            } => write!(f, "HTTP {status} without {UPSTREAM_HEADER}"),
            ConfirmAnswer::Nothing(why) => write!(f, "no answer ({why})"),
        }
    }
}

/// One `GET /` (HTTP/1.0) to `127.0.0.1:<port>`, within `limit`.
pub async fn ask_confirm(port: u16, limit: Duration) -> ConfirmAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(
            format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: shipshape-confirm\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        // The head is all we need: read until the blank line (or 64 KiB).
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 64 * 1024 {
                break;
            }
        }
        Ok::<Vec<u8>, String>(buf)
    };
    let buf = match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(buf)) => buf,
        Ok(Err(e)) => return ConfirmAnswer::Nothing(e),
        Err(_) => return ConfirmAnswer::Nothing(format!("no answer within {limit:?}")),
    };
    parse_head(&String::from_utf8_lossy(&buf))
}

/// The status and `X-Shipshape-Upstream` of an HTTP response head.
fn parse_head(head: &str) -> ConfirmAnswer {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return ConfirmAnswer::Nothing("not an HTTP answer".into());
    };
    let upstream = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(UPSTREAM_HEADER))
        .map(|(_, v)| v.trim().to_string());
    ConfirmAnswer::Answered { status, upstream }
}

/// True when the confirm server's `upstream` names port `to` (nginx lists every address
/// it tried, comma-separated, when it retried: the last one answered).
fn names_port(upstream: &Option<String>, to: u16) -> bool {
    let want = format!("127.0.0.1:{to}");
    upstream
        .as_deref()
        .and_then(|u| u.rsplit(',').next())
        .is_some_and(|last| last.trim() == want)
}

/// How many answers in a row, each on a new connection, must name the new slot. During a
/// reload nginx's old workers keep accepting until they handle the master's quit signal
/// (milliseconds): one answer through a new worker does not yet mean every new connection
/// gets the new config (seen in `nginx_switch.rs` when the confirm stopped at one).
pub const CONFIRM_IN_A_ROW: usize = 3;

/// Ask the confirm server until it names port `to` [`CONFIRM_IN_A_ROW`] times in a row
/// with an answer of the slot's own (not nginx's 502 or 504 for a slot that does not
/// answer), within `within`: how long it took, or the last thing it said.
pub async fn confirm(confirm_port: u16, to: u16, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(10);
    let mut in_a_row = 0;
    loop {
        let left = within.saturating_sub(start.elapsed());
        let answer = ask_confirm(confirm_port, left.min(CONFIRM_REQUEST_MAX)).await;
        // nginx's own 502 or 504 names the slot it tried too: a slot that does not answer
        // is no switch that took.
        if let ConfirmAnswer::Answered { upstream, status } = &answer
            && names_port(upstream, to)
            && !matches!(status, 502 | 504)
        {
            in_a_row += 1;
            if in_a_row >= CONFIRM_IN_A_ROW {
                return Ok(start.elapsed());
            }
            delay = Duration::from_millis(5);
            continue;
        }
        in_a_row = 0;
        if start.elapsed() + delay >= within {
            return Err(format!(
                "the confirm server 127.0.0.1:{confirm_port} did not name 127.0.0.1:{to} within {within:?}; it last said: {answer}"
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// Wait until none of `old_workers` holds a listening socket on `port` any more (an old
/// worker closes them when it handles the master's quit signal, then finishes what it has
/// in flight): from then on every new connection gets the new config.
async fn old_gone(port: u16, old_workers: &[u32], within: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let now = super::net::listening_children(port);
        let left: Vec<u32> = old_workers
            .iter()
            .copied()
            .filter(|p| now.contains(p))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= within {
            return Err(format!(
                "nginx's old workers (pids {left:?}) still accept connections {within:?} after the reload"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Point the upstream at `to` with the file's new `text` ([`crate::traffic::upstream_text`]):
/// write, `nginx -t`, reload, confirm.
///
/// # Errors
/// [`NginxError::Failed`] with nginx's own message; the old file is back in place. The
/// message says "nothing live changed" when nginx never read the new file (`-t` or the
/// reload command failed); after a failed confirm nginx was reloaded twice (new file,
/// then the old one again) and the message says so.
pub async fn switch(
    t: &Traffic,
    text: &str,
    to: u16,
    commands: &dyn Commands,
) -> Result<Switched, NginxError> {
    let file = PathBuf::from(&t.upstream_file);
    let fail = |m: String| Err(NginxError::Failed(m));
    // (1) The old text.
    let old = match std::fs::read_to_string(&file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return fail(format!(
                "cannot read the upstream file {}: {e}; nothing live changed",
                file.display()
            ));
        }
    };
    let from = old.as_deref().and_then(parse_marker);
    // (2) The new text, atomically.
    if let Err(e) = write_atomically(&file, text) {
        return fail(format!("{e}; nothing live changed"));
    }
    // The crash tests stop here: the file names the new slot, nginx still routes to the old.
    crate::execute::fault_point("after", "upstream-write");
    let put_back = |why: String| -> String {
        match restore(&file, &old) {
            Ok(()) => why,
            Err(e) => format!(
                "{why}; and the old upstream file could not be put back ({e}): {} names slot {to}",
                file.display()
            ),
        }
    };
    // (3) nginx -t.
    if let Err((said, timed_out)) = run_nginx(t, &["-t"], commands).await {
        let m = put_back(format!("nginx -t failed: {said}"));
        return fail(if timed_out {
            format!("{m}; nothing live changed (a config test does not reload)")
        } else {
            format!("{m}; the old upstream file is back, nothing live changed")
        });
    }
    // (4) nginx -s reload. nginx's workers now (they keep accepting until they handle the
    // master's quit signal; the confirm waits until they stopped).
    let old_confirm = old
        .as_deref()
        .and_then(confirm_port_of)
        .unwrap_or(t.confirm_port);
    let old_workers = super::net::listening_children(old_confirm);
    let reloaded_at = Instant::now();
    if let Err((said, timed_out)) = run_nginx(t, &["-s", "reload"], commands).await {
        let m = put_back(format!("nginx -s reload failed: {said}"));
        if !timed_out {
            return fail(format!(
                "{m}; the old upstream file is back, nothing live changed"
            ));
        }
        // It may have signalled nginx before it hung: reload the old file too.
        let again = match run_nginx(t, &["-s", "reload"], commands).await {
            Ok(()) => "nginx was reloaded with the old file".to_string(),
            Err((s, _)) => format!("reloading the old file failed too: {s}"),
        };
        return fail(format!(
            "{m}; nginx may have read the new file before it timed out; the old upstream file is back and {again}"
        ));
    }
    // (5) Confirm.
    let confirmed = match confirm(t.confirm_port, to, t.nginx.timeout.0).await {
        Ok(_) => {
            old_gone(
                old_confirm,
                &old_workers,
                t.nginx.timeout.0.saturating_sub(reloaded_at.elapsed()),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match confirmed {
        Ok(()) => Ok(Switched {
            confirmed_after: reloaded_at.elapsed(),
        }),
        Err(why) => {
            let m = put_back(format!("the switch to slot {to} was not confirmed: {why}"));
            let again = match run_nginx(t, &["-s", "reload"], commands).await {
                Err((s, _)) => format!("reloading the old file failed: {s}; nginx runs the new file or its previous config"),
                Ok(()) => match (old.is_some(), from) {
                    (true, Some(port)) => match confirm(old.as_deref().and_then(confirm_port_of).unwrap_or(t.confirm_port), port, t.nginx.timeout.0).await {
                        Ok(_) => format!("the old upstream file is back and nginx was reloaded with it; the confirm server names slot {port} again"),
                        Err(e) => format!("the old upstream file is back and nginx was reloaded with it, but {e}"),
                    },
                    (true, None) => "the old upstream file is back and nginx was reloaded with it".to_string(),
                    (false, _) => "there was no upstream file before: it is removed again and nginx was reloaded".to_string(),
                },
            };
            fail(format!(
                "{m}; nginx had been reloaded with the new file (if it took it, requests may have reached slot {to}); {again}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(file: &str) -> Traffic {
        serde_json::from_value(serde_json::json!({
            "via": "nginx",
            "public": "http://127.0.0.1:8080",
            "ports": [3001, 3002],
            "upstreamFile": file,
            "confirmPort": 8099,
        }))
        .unwrap()
    }

    #[test]
    fn the_rendered_file_names_its_slot_in_the_marker_and_the_upstream() {
        let t = traffic("/etc/nginx/shipshape/prompthub.conf");
        let text = render(&t, "prompt-hub", 3001);
        assert!(
            text.starts_with(
                "# managed by shipshape: app prompt-hub, live slot 3001 (do not edit)\n"
            ),
            "{text}"
        );
        assert!(text.contains("upstream shipshape_prompt_hub {"), "{text}");
        assert!(
            text.contains("server 127.0.0.1:3001 max_fails=0;"),
            "{text}"
        );
        assert!(text.contains("keepalive 16;"), "{text}");
        assert!(text.contains("listen 127.0.0.1:8099;"), "{text}");
        assert!(
            text.contains("proxy_pass http://shipshape_prompt_hub;"),
            "{text}"
        );
        assert!(
            text.contains("add_header X-Shipshape-Upstream $upstream_addr always;"),
            "{text}"
        );
        assert_eq!(parse_marker(&text), Some(3001));
        assert_eq!(parse_marker(&render(&t, "x", 3002)), Some(3002));
    }

    #[test]
    fn a_file_without_the_marker_names_no_slot() {
        assert_eq!(parse_marker(""), None);
        assert_eq!(
            parse_marker("upstream x { server 127.0.0.1:3001; }\n"),
            None
        );
        assert_eq!(
            parse_marker("# managed by shipshape: app x, live slot 0 (do not edit)\n"),
            None
        );
        assert_eq!(
            parse_marker("# managed by shipshape: app x, live slot 3001\n"),
            None
        );
    }

    #[test]
    fn live_slot_reads_the_file_back_and_an_absent_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("up.conf");
        assert_eq!(live_slot(&file), Ok(None));
        let t = traffic(file.to_str().unwrap());
        write_atomically(&file, &render(&t, "web", 3002)).unwrap();
        assert_eq!(live_slot(&file), Ok(Some(3002)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // Nothing is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A directory in its place cannot be read.
        let d = dir.path().join("dir.conf");
        std::fs::create_dir(&d).unwrap();
        assert!(live_slot(&d).is_err());
    }

    #[test]
    fn the_confirm_header_is_read_case_blind_and_a_retry_names_the_last_address() {
        let a = parse_head(
            "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\nx-shipshape-upstream: 127.0.0.1:3001\r\n\r\n",
        );
        assert_eq!(
            a,
            ConfirmAnswer::Answered {
                status: 502,
                upstream: Some("127.0.0.1:3001".into())
            }
        );
        assert!(names_port(&Some("127.0.0.1:3001".into()), 3001));
        assert!(names_port(
            &Some("127.0.0.1:3002, 127.0.0.1:3001".into()),
            3001
        ));
        assert!(!names_port(&Some("127.0.0.1:30011".into()), 3001));
        assert!(!names_port(&None, 3001));
        assert!(matches!(parse_head("garbage"), ConfirmAnswer::Nothing(_)));
    }
}

//! Helpers for the API-edge tests: a controller started under a given open-file limit or
//! on a given (busy) port, raw HTTP over TCP and over the controller's Unix socket, a
//! stand-in listener that records what it is sent, and the controller's descriptor count.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Daemon, World, dbmate_bin, pm2_bin, shipshape_bin, wait_for};

/// How a controller is started.
#[derive(Debug, Clone, Default)]
pub struct Start<'a> {
    /// `--listen` (default `127.0.0.1:0`).
    pub listen: Option<&'a str>,
    /// Soft and hard `RLIMIT_NOFILE` for the controller (as systemd's `LimitNOFILE=`).
    pub nofile: Option<(u64, u64)>,
    /// Extra flags.
    pub extra: &'a [&'a str],
}

/// Start `shipshape run` as `how` says, and wait until its Unix socket answers (or, with
/// no socket, its TCP API; the TCP API may not be listening). The [`Daemon`]'s `url` is the TCP one when
/// `api.json` has it, else empty.
pub fn start(w: &World, how: Start<'_>) -> Daemon {
    use std::os::unix::process::CommandExt;
    let log = w.root().join("controller.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(shipshape_bin());
    cmd.args(["run", "--listen", how.listen.unwrap_or("127.0.0.1:0")])
        .args(["--interval", "1s"])
        .args(how.extra)
        .env("SHIPSHAPE_REPO", w.config_repo())
        .env("SHIPSHAPE_PATH", "apps")
        .env("SHIPSHAPE_STATE_DIR", w.state_dir())
        .env("SHIPSHAPE_PM2", pm2_bin())
        .env("SHIPSHAPE_PM2_HOME", w.pm2_home())
        .env("SHIPSHAPE_DBMATE", dbmate_bin())
        .env("RUST_LOG", "info,shipshape=debug")
        .env("NO_COLOR", "1")
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    if let Some((soft, hard)) = how.nofile {
        // SAFETY: setrlimit is async-signal-safe; it only sets this child's limit.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().unwrap();
    let mut d = Daemon {
        child,
        url: String::new(),
        token: String::new(),
        log,
    };
    // The socket, or (a controller without one) the TCP API.
    let sock = w.state_dir().join("api.sock");
    wait_for("the controller's API", Duration::from_secs(30), || {
        if socket_http(&sock, "GET", "/healthz", None, None).0 == 200 {
            return Some(());
        }
        let url = address(w)?["url"].as_str()?.to_string();
        (http(&url, "GET", "/healthz", None, None).0 == 200).then_some(())
    });
    d.token = std::fs::read_to_string(w.state_dir().join("api-token"))
        .unwrap()
        .trim()
        .to_string();
    d.url = address(w)
        .and_then(|a| a["url"].as_str().map(str::to_string))
        .unwrap_or_default();
    d
}

/// `<state-dir>/api.json`, parsed.
pub fn address(w: &World) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(w.state_dir().join("api.json")).ok()?).ok()
}

/// The controller's pid (from `api.json`).
pub fn pid(w: &World) -> u32 {
    address(w).expect("api.json")["pid"].as_u64().unwrap() as u32
}

/// How many file descriptors `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Raise this test process's soft open-file limit to its hard one (the tests hold over a
/// thousand connections); returns the limit.
pub fn raise_own_open_files() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on structs we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// How long a request waits for its whole answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(130);

/// Send one request (`Connection: close`, with `host`, the token if any and extra
/// `headers`) on `s` and read the whole answer: (status, body); (0, "") when it cannot be
/// sent or nothing answers.
fn exchange<S: Read + Write>(
    mut s: S,
    (method, path, host): (&str, &str, &str),
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// One request over TCP to `base` (`http://ADDR`) with `host` as its Host header and extra
/// `headers`: (status, body); (0, "") when nothing answers.
pub fn tcp_http(
    base: &str,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    over_tcp(base, (method, path, host), None, headers, body)
}

/// One request over TCP to `base` (`http://ADDR`, also its Host), with the token if any:
/// (status, body); (0, "") when nothing answers.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    over_tcp(base, (method, path, host), token, &[], body.unwrap_or(""))
}

/// [`exchange`] on a new connection to `base` (`http://ADDR`).
fn over_tcp(
    base: &str,
    line: (&str, &str, &str),
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let Ok(s) = std::net::TcpStream::connect(base.trim_start_matches("http://")) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    exchange(s, line, token, headers, body)
}

/// One request over the controller's Unix socket `sock`: (status, body); (0, "") when it
/// does not answer.
pub fn socket_http(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let Ok(s) = std::os::unix::net::UnixStream::connect(sock) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    exchange(
        s,
        (method, path, "localhost"),
        token,
        &[],
        body.unwrap_or(""),
    )
}

/// A stand-in for "another process on the port": accepts on 127.0.0.1, records every
/// byte it is sent, answers nothing, and closes after a moment.
pub struct Recorder {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    got: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    /// Listen on a free loopback port.
    pub fn start() -> Recorder {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let got: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Recorder { addr, got }
    }

    /// Everything received so far.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.got.lock().unwrap()).into_owned()
    }
}

/// Point `<state-dir>/api.json` at `url` (what a stale file would say), keeping the rest.
pub fn point_address_at(w: &World, url: &str) {
    let mut a = address(w).expect("api.json");
    a["url"] = serde_json::Value::String(url.to_string());
    std::fs::write(w.state_dir().join("api.json"), a.to_string()).unwrap();
}

/// The socket's path.
pub fn socket_path(w: &World) -> PathBuf {
    w.state_dir().join("api.sock")
}

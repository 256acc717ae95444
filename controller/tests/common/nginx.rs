//! A real nginx for tests (Debian's `nginx-light`, installed by hack/test.sh; never the
//! system service): its own prefix in a temp dir holding its config, pid file, error and
//! access logs and every temp path; listening on 127.0.0.1 only; stopped on drop.
//!
//! The config, and why (what zero downtime relies on):
//! - `daemon on; master_process on; worker_processes 2`: as in production, so a reload is
//!   the real graceful one (new workers start, old ones finish their requests and exit).
//! - `worker_shutdown_timeout 30s`: an old worker holding a long-lived connection
//!   (a websocket, a slow download) is closed after 30 s instead of living forever; it
//!   bounds how long a retired slot can still see traffic after a switch.
//! - `user root` when the tests run as root: workers then own the temp paths in the
//!   (root-only) temp dir; as anyone else, no `user` line (nginx would ignore it).
//! - The public server proxies to the upstream with HTTP/1.1 and an empty `Connection`
//!   header, so the upstream's `keepalive` pool is used. `proxy_next_upstream` is left at
//!   nginx's default (`error timeout`): with one server in the upstream it has no other
//!   server to send a request to, so it cannot hide a dead slot (a refused connection is a
//!   502 the tests see); what it does do is retry, on a fresh connection, a request that
//!   found an idle keepalive connection closed by the slot — the race every keepalive
//!   proxy has, which production nginx handles the same way. `non_idempotent` is not
//!   added: a POST is never sent twice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, wait_for};

/// The nginx binary: `$SHIPSHAPE_TEST_NGINX`, else /usr/sbin/nginx. `None` (with a note)
/// when it is missing and `CI` is not set; with `CI=true` a missing nginx fails the test.
pub fn nginx_bin(test: &str) -> Option<PathBuf> {
    let bin = std::env::var_os("SHIPSHAPE_TEST_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    if bin.exists() {
        return Some(bin);
    }
    let how = format!(
        "nginx not found at {} (hack/test.sh installs Debian's nginx-light; or set SHIPSHAPE_TEST_NGINX)",
        bin.display()
    );
    let ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
    assert!(!ci, "{test}: {how}");
    eprintln!("skipping {test}: {how}");
    None
}

/// An nginx of the test's own.
pub struct TestNginx {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The port it serves the app on (127.0.0.1).
    pub public_port: u16,
    /// The upstream file its `http` block includes.
    pub upstream_file: PathBuf,
    /// The upstream's name the public server proxies to.
    pub upstream_name: String,
}

impl TestNginx {
    /// An nginx (not started) serving 127.0.0.1:`public_port` through upstream
    /// `upstream_name` from `upstream_file`. When that file does not exist, one is written
    /// (by `shipshape::traffic::nginx::render`) naming a placeholder slot on a free port
    /// with its confirm server on another free port: nginx needs the upstream to exist to
    /// start; the controller's first switch replaces it. `None`: nginx is missing (see
    /// [`nginx_bin`]).
    pub fn new(
        test: &str,
        public_port: u16,
        upstream_file: &Path,
        upstream_name: &str,
    ) -> Option<TestNginx> {
        let bin = nginx_bin(test)?;
        if !upstream_file.exists() {
            let t = traffic(public_port, upstream_file, upstream_name, free_port());
            let placeholder = free_port();
            std::fs::write(
                upstream_file,
                shipshape::traffic::nginx::render(&t, "placeholder", placeholder),
            )
            .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let n = TestNginx {
            bin,
            dir,
            public_port,
            upstream_file: upstream_file.to_path_buf(),
            upstream_name: upstream_name.to_string(),
        };
        std::fs::write(n.conf(), n.config_text()).unwrap();
        Some(n)
    }

    /// Its prefix directory.
    pub fn prefix(&self) -> &Path {
        self.dir.path()
    }

    /// Its main config file.
    pub fn conf(&self) -> PathBuf {
        self.prefix().join("nginx.conf")
    }

    /// Its pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.prefix().join("nginx.pid")
    }

    /// The nginx binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `http://127.0.0.1:<public port>`.
    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.public_port)
    }

    /// The arguments `spec.traffic.nginx.args` carries: `[-p, PREFIX, -c, CONF]`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "-p".into(),
            format!("{}/", self.prefix().display()),
            "-c".into(),
            self.conf().display().to_string(),
        ]
    }

    fn config_text(&self) -> String {
        let p = self.prefix().display().to_string();
        let root = unsafe { libc::geteuid() } == 0;
        let user = if root { "user root;\n" } else { "" };
        format!(
            "# A test's own nginx (controller/tests/common/nginx.rs).\n\
             {user}daemon on;\n\
             master_process on;\n\
             worker_processes 2;\n\
             worker_shutdown_timeout 30s;\n\
             pid {p}/nginx.pid;\n\
             error_log {p}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n    \
                 access_log {p}/access.log;\n    \
                 client_body_temp_path {p}/client_body;\n    \
                 proxy_temp_path {p}/proxy;\n    \
                 fastcgi_temp_path {p}/fastcgi;\n    \
                 uwsgi_temp_path {p}/uwsgi;\n    \
                 scgi_temp_path {p}/scgi;\n    \
                 include {upstream};\n    \
                 server {{\n        \
                     listen 127.0.0.1:{port};\n        \
                     location / {{\n            \
                         proxy_pass http://{name};\n            \
                         proxy_http_version 1.1;\n            \
                         proxy_set_header Connection \"\";\n        \
                     }}\n    \
                 }}\n\
             }}\n",
            upstream = self.upstream_file.display(),
            port = self.public_port,
            name = self.upstream_name,
        )
    }

    /// `nginx <args> <extra>`: (success, stderr+stdout).
    pub fn command(&self, extra: &[&str]) -> (bool, String) {
        let out = Command::new(&self.bin)
            .args(self.args())
            .args(extra)
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        (out.status.success(), text)
    }

    /// Start it and wait until the public port accepts.
    pub fn start(&self) {
        let (ok, said) = self.command(&[]);
        assert!(ok, "nginx did not start: {said}\n{}", self.error_log());
        let addr = ("127.0.0.1", self.public_port);
        wait_for("nginx's public port", Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).ok().map(|_| ())
        });
    }

    /// The master's pid, from its pid file.
    pub fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// True while its master process is alive.
    pub fn is_running(&self) -> bool {
        self.master_pid()
            .is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0)
    }

    /// Stop it (`nginx -s quit`, then SIGTERM, then SIGKILL to the master) and wait until
    /// the master is gone.
    pub fn stop(&self) {
        let Some(pid) = self.master_pid() else { return };
        let alive = || unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid);
        if !alive() {
            return;
        }
        let _ = self.command(&["-s", "quit"]);
        for (signal, wait) in [
            (None, Duration::from_secs(5)),
            (Some(libc::SIGTERM), Duration::from_secs(5)),
            (Some(libc::SIGKILL), Duration::from_secs(5)),
        ] {
            if let Some(s) = signal {
                unsafe { libc::kill(pid, s) };
            }
            let start = Instant::now();
            while alive() && start.elapsed() < wait {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !alive() {
                break;
            }
        }
        // A SIGKILLed master leaves its pid file and maybe workers.
        let _ = std::fs::remove_file(self.pid_file());
    }

    /// Its error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix().join("error.log")).unwrap_or_default()
    }

    /// Its access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix().join("access.log")).unwrap_or_default()
    }

    /// Put a syntax error into its main config (so `nginx -t` fails); the running nginx
    /// keeps serving its loaded config.
    pub fn break_config(&self) {
        let mut text = self.config_text();
        text.push_str("this_is_not_a_directive;\n");
        std::fs::write(self.conf(), text).unwrap();
    }

    /// Undo [`Self::break_config`].
    pub fn restore_config(&self) {
        std::fs::write(self.conf(), self.config_text()).unwrap();
    }

    /// `spec.traffic` for this nginx (as JSON, for a document): `ports`, confirm port and
    /// the app's upstream name as given, nginx's binary and [`Self::args`], `timeout`.
    pub fn traffic_json(
        &self,
        ports: [u16; 2],
        confirm_port: u16,
        timeout: &str,
    ) -> serde_json::Value {
        serde_json::json!({
            "via": "nginx",
            "public": self.public_url(),
            "ports": ports,
            "upstreamFile": self.upstream_file.display().to_string(),
            "upstream": self.upstream_name,
            "confirmPort": confirm_port,
            "nginx": {
                "binary": self.bin.display().to_string(),
                "args": self.args(),
                "timeout": timeout,
            }
        })
    }
}

impl Drop for TestNginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// A `Traffic` for rendering a placeholder upstream file.
fn traffic(
    public_port: u16,
    upstream_file: &Path,
    upstream_name: &str,
    confirm_port: u16,
) -> shipshape_spec::app::Traffic {
    serde_json::from_value(serde_json::json!({
        "via": "nginx",
        "public": format!("http://127.0.0.1:{public_port}"),
        "ports": [1, 2],
        "upstreamFile": upstream_file.display().to_string(),
        "upstream": upstream_name,
        "confirmPort": confirm_port,
    }))
    .unwrap()
}

/// One `GET path` to `127.0.0.1:port` (HTTP/1.0): (status, `X-Shipshape-Upstream` if any,
/// body); `None` when nothing answers within 5 s.
pub fn get(port: u16, path: &str) -> Option<(u16, Option<String>, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let upstream = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("x-shipshape-upstream"))
        .map(|(_, v)| v.trim().to_string());
    Some((status, upstream, body.to_string()))
}

/// Which slot port the confirm server on `confirm_port` says answered (the last address
/// in `X-Shipshape-Upstream`).
pub fn answering_slot(confirm_port: u16) -> Option<u16> {
    let (_, upstream, _) = get(confirm_port, "/")?;
    upstream?
        .rsplit(',')
        .next()?
        .trim()
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
}

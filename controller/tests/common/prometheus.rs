//! A real Prometheus for tests (Debian's package, installed by hack/test.sh): started on a
//! free loopback port with its own data directory and a 1 s scrape interval, its lifecycle
//! API on so a test can change what it scrapes; killed on drop. It can be stopped and
//! started again on the same port with the same data directory (an outage of the
//! fleet's Prometheus that keeps what it had scraped).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use super::{free_port, http, wait_for};

/// A running Prometheus.
pub struct Prometheus {
    /// The running process; `None` while stopped.
    child: Option<Child>,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start one scraping `targets` (`127.0.0.1:PORT`) as job `job` (none: scrape nothing),
    /// and wait until it is ready.
    pub fn start(job: &str, targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, Self::config(job, targets)).unwrap();
        let port = free_port();
        let mut p = Prometheus {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            config,
            _dir: dir,
        };
        p.spawn();
        p
    }

    /// Start the process on `self.port` with the data directory, and wait until it is
    /// ready.
    fn spawn(&mut self) {
        let bin = which("prometheus")
            .expect("prometheus is needed (hack/test.sh installs Debian's package)");
        let dir = self._dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("prometheus.log"))
            .unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-lifecycle")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = self.url.clone();
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            (http(&url, "GET", "/-/ready", None, None).0 == 200).then_some(())
        });
    }

    /// Stop it (SIGTERM, so it closes its data directory as in a real outage; SIGKILL
    /// after 15 s), and wait until its port no longer answers. Nothing happens while it
    /// is stopped already.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let port = self.port;
        wait_for(
            "prometheus's port to close",
            Duration::from_secs(10),
            || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .is_err()
                    .then_some(())
            },
        );
    }

    /// Start it again after [`Prometheus::stop`]: the same port, config and data
    /// directory; returns once it is ready.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "prometheus is running already");
        self.spawn();
    }

    /// Whether it runs (not [`Prometheus::stop`]ped).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Its log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The scrape config: `targets` as job `job`, every second.
    fn config(job: &str, targets: &[String]) -> String {
        let mut text = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n".to_string();
        if !targets.is_empty() {
            let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            text.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        text
    }

    /// Scrape `targets` as job `job` from now on (the config is reloaded).
    pub fn scrape(&self, job: &str, targets: &[String]) {
        std::fs::write(&self.config, Self::config(job, targets)).unwrap();
        let (status, body) = http(&self.url, "POST", "/-/reload", None, None);
        assert_eq!(status, 200, "reload: {body}");
    }

    /// An instant query's result (the vector's entries); panics unless it succeeds.
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-G"])
            .arg(format!("{}/api/v1/query", self.url))
            .arg("--data-urlencode")
            .arg(format!("query={promql}"))
            .output()
            .expect("curl runs");
        let body: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"].as_array().unwrap().clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

//! A real Prometheus for tests (Debian's package, installed by hack/test.sh): started on a
//! free loopback port with its own data directory and a 1 s scrape interval, its lifecycle
//! API on so a test can change what it scrapes; killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use super::{free_port, http, wait_for};

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start one scraping `targets` (`127.0.0.1:PORT`) as job `job` (none: scrape nothing),
    /// and wait until it is ready.
    pub fn start(job: &str, targets: &[String]) -> Prometheus {
        let bin = which("prometheus")
            .expect("prometheus is needed (hack/test.sh installs Debian's package)");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, Self::config(job, targets)).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            (http(&url, "GET", "/-/ready", None, None).0 == 200).then_some(())
        });
        Prometheus {
            child,
            url,
            config,
            _dir: dir,
        }
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

//! Test harness: real git repos in a temp dir, the real pm2 under an isolated
//! `PM2_HOME` (its daemon killed on drop), the example Node app on a free loopback port,
//! and the real `shipshape` binary. Waits poll with deadlines; nothing sleeps a fixed time.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use shipshape::state::{AppRecord, Store};

pub mod apiedge;
pub mod faults;
pub mod fleet;
pub mod hey;
pub mod load;
pub mod nginx;
pub mod pins;
pub mod pm2;
pub mod prometheus;
pub mod stock;
pub mod stub;
pub mod traffic;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The pm2 executable: `$SHIPSHAPE_TEST_PM2`, else the project-local install by hack/test.sh.
/// The controller binary the tests run: this build's, unless `SHIPSHAPE_TEST_BIN` names
/// another (the benchmark measures a release build).
pub fn shipshape_bin() -> PathBuf {
    std::env::var_os("SHIPSHAPE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_shipshape")))
}

pub fn pm2_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHIPSHAPE_TEST_PM2") {
        return PathBuf::from(p);
    }
    let local = workspace().join(".tools/node_modules/.bin/pm2");
    assert!(
        local.exists(),
        "pm2 not found at {}: run hack/test.sh (it installs pm2 into .tools/) or set SHIPSHAPE_TEST_PM2",
        local.display()
    );
    local
}

/// dbmate's binary: `$SHIPSHAPE_TEST_DBMATE`, else the project-local install.
pub fn dbmate_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHIPSHAPE_TEST_DBMATE") {
        return PathBuf::from(p);
    }
    workspace().join(".tools/node_modules/@dbmate/linux-x64/bin/dbmate")
}

/// The PostgreSQL server hack/test.sh starts (as `SHIPSHAPE_TEST_DATABASE_URL`).
pub fn pg_admin_url() -> String {
    std::env::var("SHIPSHAPE_TEST_DATABASE_URL").expect(
        "SHIPSHAPE_TEST_DATABASE_URL is not set: run hack/test.sh, which starts a private PostgreSQL",
    )
}

/// Run SQL against `url`, returning each row's first column as text.
pub fn sql(url: &str, query: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = shipshape::migrate::connect(url, &Default::default())
            .await
            .unwrap();
        let rows = client
            .simple_query(query)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("").to_string())
                }
                _ => None,
            })
            .collect()
    })
}

/// A fresh database on the test server; returns its URL with `password` in it
/// (the test server trusts local connections, so any password works: it stands in for a secret).
pub fn fresh_database(password: &str) -> String {
    let admin = pg_admin_url();
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    sql(&admin, &format!("CREATE DATABASE {name}"));
    let rest = admin.strip_prefix("postgres://postgres@").unwrap();
    let host = rest.split('/').next().unwrap();
    // dbmate (lib/pq) asks for TLS unless told; the test server has none.
    format!("postgres://postgres:{password}@{host}/{name}?sslmode=disable")
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range (32768+): a port taken
/// from that range could be handed to another process's `bind(:0)` (a controller's API, say)
/// before the app gets to listen on it. Each call in this process gets a different port.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = 20_000 + (std::process::id() * 7919) % 10_000;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = (base + n * 13) % 12_000 + 20_000;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
}

/// Run `git` in `dir`, panicking with its output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=shipshape-test",
            "-c",
            "user.email=test@shipshape.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One isolated world: app repo, config repo, releases root, state dir, pm2 home.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub port: u16,
    pub name: String,
}

impl World {
    /// A new world whose app repo holds `examples/app` at version 1.0.0 (one commit).
    pub fn new(name: &str) -> World {
        World::with_example(name, "examples/app")
    }

    /// A new world whose app repo holds the workspace's `example` directory (one commit,
    /// "v1.0.0") and whose config repo is empty.
    pub fn with_example(name: &str, example: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let w = World {
            tmp,
            port: free_port(),
            name: name.to_string(),
        };
        let app = w.app_repo();
        copy_dir(&workspace().join(example), &app);
        git(&app, &["init", "-q", "-b", "main"]);
        git(&app, &["add", "-A"]);
        git(&app, &["commit", "-qm", "v1.0.0"]);
        let config = w.config_repo();
        std::fs::create_dir_all(config.join("apps")).unwrap();
        git(&config, &["init", "-q", "-b", "main"]);
        w
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }
    pub fn app_repo(&self) -> PathBuf {
        self.root().join("app")
    }
    pub fn config_repo(&self) -> PathBuf {
        self.root().join("config")
    }
    pub fn releases_root(&self) -> PathBuf {
        self.root().join("srv")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root().join("state")
    }
    pub fn pm2_home(&self) -> PathBuf {
        self.root().join("pm2")
    }
    pub fn store(&self) -> Store {
        Store::new(std::fs::canonicalize(self.state_dir()).unwrap_or(self.state_dir()))
    }
    pub fn record(&self) -> AppRecord {
        self.store().load(&self.name).unwrap()
    }

    /// The app repo's HEAD.
    pub fn app_head(&self) -> String {
        git(&self.app_repo(), &["rev-parse", "HEAD"])
    }

    /// Commit a new app version (package.json's version) and return its SHA.
    pub fn commit_app_version(&self, version: &str) -> String {
        let pkg = self.app_repo().join("package.json");
        let text = std::fs::read_to_string(&pkg).unwrap();
        let start = text.find("\"version\": \"").unwrap() + 12;
        let end = start + text[start..].find('"').unwrap();
        let new = format!("{}{}{}", &text[..start], version, &text[end..]);
        std::fs::write(&pkg, new).unwrap();
        git(
            &self.app_repo(),
            &["commit", "-qam", &format!("v{version}")],
        );
        self.app_head()
    }

    /// Write `files` (path, content) into the app repo and commit them; returns the SHA.
    pub fn commit_app_files(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let p = self.app_repo().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(&self.app_repo(), &["add", "-A"]);
        git(&self.app_repo(), &["commit", "-qm", message]);
        self.app_head()
    }

    /// Write the env file (mode 0600) and return its path.
    pub fn write_env_file(&self, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.root().join("app.env");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// `document(commit)` with an env file and a migrations block (YAML lines, indented 4).
    pub fn document_with_migrations(
        &self,
        commit: &str,
        env_file: &Path,
        migrations: &str,
    ) -> String {
        self.document(commit).replace(
            "  processes:\n",
            &format!(
                "  envFile: {}\n  migrations:\n{migrations}  processes:\n",
                env_file.display()
            ),
        )
    }

    /// The default document for `commit`, before `edit`s (plain text replacements).
    pub fn document(&self, commit: &str) -> String {
        format!(
            r#"# yaml-language-server: $schema=../../schemas/app.schema.json
apiVersion: shipshape/v1alpha1
kind: App
metadata:
  name: {name}
spec:
  source:
    repository: {repo}
    commit: {commit}
  releases:
    root: {root}
  build:
    install: npm ci --no-audit --no-fund
    steps:
      - npm run build
    timeout: 60s
  processes:
    - name: {name}-web
      script: server.js
      instances: 2
      exec_mode: cluster
      env:
        PORT: {port}
  health:
    checks:
      - name: api
        http:
          url: http://127.0.0.1:{port}/api/health
          bodyContains: '"status":"ok"'
        timeout: 1s
    interval: 300ms
    successThreshold: 2
    progressDeadline: 20s
"#,
            name = self.name,
            repo = self.app_repo().display(),
            root = self.releases_root().display(),
            port = self.port,
        )
    }

    /// The default document for `commit`, typed: change its fields (a typo is a compile
    /// error, an edit cannot silently match nothing), then commit it with
    /// [`World::commit_app`].
    pub fn app(&self, commit: &str) -> shipshape_spec::App {
        shipshape_spec::load_str(&self.document(commit), "default.yaml")
            .expect("the default document loads")
    }

    /// Commit `app` as this app's document (checked to load first); returns the config commit.
    pub fn commit_app(&self, app: &shipshape_spec::App) -> String {
        let text = shipshape_spec::load::to_yaml(app);
        if let Err(e) = shipshape_spec::load_str(&text, "edited.yaml") {
            panic!("the edited document does not load:\n{e}\n{text}");
        }
        self.commit_config(&text)
    }

    /// Write `apps/<name>.yaml` with `text` and commit it; returns the config commit.
    pub fn commit_config(&self, text: &str) -> String {
        let path = self
            .config_repo()
            .join("apps")
            .join(format!("{}.yaml", self.name));
        std::fs::write(path, text).unwrap();
        git(&self.config_repo(), &["add", "-A"]);
        git(
            &self.config_repo(),
            &["commit", "-qm", "desired state", "--allow-empty"],
        );
        git(&self.config_repo(), &["rev-parse", "HEAD"])
    }

    /// `shipshape <args>` with this world's paths, plus extra environment.
    pub fn shipshape(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.shipshape_command(args, env)
            .output()
            .expect("shipshape runs")
    }

    /// The command [`World::shipshape`] runs, not started.
    pub fn shipshape_command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(shipshape_bin());
        cmd.args(args)
            .env("SHIPSHAPE_REPO", self.config_repo())
            .env("SHIPSHAPE_PATH", "apps")
            .env("SHIPSHAPE_STATE_DIR", self.state_dir())
            .env("SHIPSHAPE_PM2", pm2_bin())
            .env("SHIPSHAPE_PM2_HOME", self.pm2_home())
            .env("SHIPSHAPE_DBMATE", dbmate_bin())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// One `shipshape run --once`; returns (exit code, stderr).
    pub fn run_once(&self) -> (i32, String) {
        let out = self.shipshape(&["run", "--once"], &[]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// GET `path` on the app; None when nothing answers.
    pub fn get(&self, path: &str) -> Option<String> {
        get_port(self.port, path)
    }
}

/// GET `path` on 127.0.0.1:`port` with HTTP/1.0 (no chunking); None when nothing answers.
pub fn get_port(port: u16, path: &str) -> Option<String> {
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        buf.split_once("\r\n\r\n")
            .map(|(_, body)| body.trim().to_string())
    }
}

impl World {
    /// The release `current` points at.
    pub fn current(&self) -> Option<String> {
        shipshape::release::Layout::new(self.releases_root()).current_release()
    }

    /// The pids of the app's pm2 processes, sorted (a restart or reload replaces them).
    pub fn pm2_pids(&self) -> Vec<u64> {
        let list: serde_json::Value = serde_json::from_str(&self.pm2_jlist_raw()).unwrap();
        let mut pids: Vec<u64> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["pid"].as_u64())
            .collect();
        pids.sort();
        pids
    }

    /// `pm2 jlist` output, raw.
    pub fn pm2_jlist_raw(&self) -> String {
        let out = Command::new(pm2_bin())
            .arg("jlist")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("PM2_HOME", self.pm2_home())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if self.pm2_home().exists() {
            let _ = Command::new(pm2_bin())
                .arg("kill")
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("PM2_HOME", self.pm2_home())
                .output();
        }
    }
}

/// Poll `f` until it returns Some, or panic after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// Copy a directory tree (files and dirs only), skipping node_modules and dist.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" || name == "dist" {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A running `shipshape run` (the daemon), stopped with SIGTERM (then SIGKILL) on drop.
pub struct Daemon {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bearer token.
    pub token: String,
    /// Its log.
    pub log: PathBuf,
}

impl World {
    /// Start the controller in the background with a 1 s interval and its API on a free
    /// loopback port; returns once the API answers.
    pub fn start(&self, extra: &[&str]) -> Daemon {
        self.start_with_env(extra, &[])
    }

    /// [`World::start`] with extra environment variables for the controller.
    pub fn start_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = self.root().join("controller.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(shipshape_bin());
        cmd.args(["run", "--listen", "127.0.0.1:0"]);
        if !extra.contains(&"--interval") {
            cmd.args(["--interval", "1s"]);
        }
        cmd.args(extra)
            .env("SHIPSHAPE_REPO", self.config_repo())
            .env("SHIPSHAPE_PATH", "apps")
            .env("SHIPSHAPE_STATE_DIR", self.state_dir())
            .env("SHIPSHAPE_PM2", pm2_bin())
            .env("SHIPSHAPE_PM2_HOME", self.pm2_home())
            .env("SHIPSHAPE_DBMATE", dbmate_bin())
            .env("RUST_LOG", "info,shipshape=debug")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().unwrap();
        let state = self.state_dir();
        let (url, token) = wait_for("the controller's API", Duration::from_secs(30), || {
            let addr: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(state.join("api.json")).ok()?)
                    .ok()?;
            let token = std::fs::read_to_string(state.join("api-token")).ok()?;
            Some((addr["url"].as_str()?.to_string(), token.trim().to_string()))
        });
        let d = Daemon {
            child,
            url,
            token,
            log,
        };
        wait_for("/healthz", Duration::from_secs(10), || {
            (d.get("/healthz").0 == 200).then_some(())
        });
        d
    }

    /// Poll the records until `pred` holds (panics with the controller's log tail otherwise).
    pub fn wait_record(
        &self,
        what: &str,
        secs: u64,
        d: &Daemon,
        mut pred: impl FnMut(&AppRecord) -> bool,
    ) -> AppRecord {
        let start = Instant::now();
        loop {
            if let Ok(rec) = self.store().load(&self.name)
                && pred(&rec)
            {
                return rec;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let rec = self.store().load(&self.name).ok();
                panic!(
                    "timed out after {secs}s waiting for {what}\nrecord: {:#?}\ncontroller log tail:\n{}",
                    rec.map(|r| (
                        r.phase,
                        r.live_revision,
                        r.revisions
                            .iter()
                            .map(|e| e.revision.clone())
                            .collect::<Vec<_>>(),
                        r.last_pass,
                        r.health
                    )),
                    d.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Daemon {
    /// The last `n` lines of the controller's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http(&self.url, "GET", path, None, None)
    }

    /// POST JSON to `path` with `token` (or none): (status, body).
    pub fn post(&self, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
        http(&self.url, "POST", path, Some(body), token)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use apiedge::http;

impl World {
    /// Write `apps/<file>` with `text` (or delete it with `None`) and commit; returns the commit.
    pub fn commit_config_file(&self, file: &str, text: Option<&str>) -> String {
        let path = self.config_repo().join("apps").join(file);
        match text {
            Some(t) => std::fs::write(&path, t).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        git(&self.config_repo(), &["add", "-A"]);
        git(
            &self.config_repo(),
            &["commit", "-qm", "desired state", "--allow-empty"],
        );
        git(&self.config_repo(), &["rev-parse", "HEAD"])
    }

    /// A document for a second app `name` from the same app repo, on its own port and root.
    pub fn other_document(&self, name: &str, commit: &str, port: u16) -> String {
        self.document(commit)
            .replace(
                &format!("name: {}\n", self.name),
                &format!("name: {name}\n"),
            )
            .replace(
                &format!("name: {}-web", self.name),
                &format!("name: {name}-web"),
            )
            .replace(&self.port.to_string(), &port.to_string())
            .replace(
                &self.releases_root().display().to_string(),
                &self
                    .root()
                    .join(format!("srv-{name}"))
                    .display()
                    .to_string(),
            )
    }

    /// A bare clone of the config repo standing in for a remote; returns its path.
    pub fn bare_remote(&self) -> PathBuf {
        let bare = self.root().join("remote.git");
        git(
            self.root(),
            &[
                "clone",
                "-q",
                "--bare",
                self.config_repo().to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        git(
            &self.config_repo(),
            &["remote", "add", "origin", bare.to_str().unwrap()],
        );
        bare
    }

    /// Push the config repo's main to its bare remote.
    pub fn push(&self) {
        git(&self.config_repo(), &["push", "-q", "origin", "main"]);
    }
}

/// The kinds of the steps the last pass ran, in order.
pub fn steps(rec: &AppRecord) -> Vec<&str> {
    rec.last_pass
        .as_ref()
        .map(|p| p.steps.iter().map(|s| s.step.as_str()).collect())
        .unwrap_or_default()
}

/// The revision that ran `app_commit`.
pub fn revision_of<'a>(
    rec: &'a AppRecord,
    app_commit: &str,
) -> &'a shipshape::state::RevisionEntry {
    rec.revisions
        .iter()
        .find(|r| r.revision.app_commit == app_commit)
        .unwrap_or_else(|| panic!("no revision ran {app_commit}"))
}

/// Typed edits of an App document for tests.
pub trait AppEdit {
    /// Set an environment variable of every process.
    fn env(&mut self, key: &str, value: &str) -> &mut Self;
    /// Set the health round interval, thresholds and deadline.
    fn health(
        &mut self,
        interval: Duration,
        success: u32,
        failure: u32,
        deadline: Duration,
    ) -> &mut Self;
    /// Set `rollback.auto` and `rollback.window`.
    fn rollback(&mut self, auto: bool, window: Duration) -> &mut Self;
    /// Set `health.progressDeadline`.
    fn progress_deadline(&mut self, deadline: Duration) -> &mut Self;
    /// Set `source.repository`.
    fn repository(&mut self, url: &str) -> &mut Self;
    /// Set `source.tokenFile` (and `source.tokenUser`).
    fn token_file(&mut self, file: &Path, user: Option<&str>) -> &mut Self;
    /// Set `build.steps`.
    fn build_steps(&mut self, steps: &[&str]) -> &mut Self;
    /// Set `spec.hosts`: these host names and labels.
    fn hosts(&mut self, names: &[&str], labels: &[(&str, &str)]) -> &mut Self;
    /// Set `spec.envFile`.
    fn env_file(&mut self, file: &Path) -> &mut Self;
}

impl AppEdit for shipshape_spec::App {
    fn env(&mut self, key: &str, value: &str) -> &mut Self {
        for p in &mut self.spec.processes {
            p.env.insert(
                key.to_string(),
                shipshape_spec::app::EnvValue::String(value.to_string()),
            );
        }
        self
    }

    fn health(
        &mut self,
        interval: Duration,
        success: u32,
        failure: u32,
        deadline: Duration,
    ) -> &mut Self {
        let d = |t: Duration| shipshape_spec::Duration::from_millis(t.as_millis() as u64);
        let h = &mut self.spec.health;
        h.interval = d(interval);
        h.success_threshold = success;
        h.failure_threshold = failure;
        h.progress_deadline = d(deadline);
        self
    }

    fn rollback(&mut self, auto: bool, window: Duration) -> &mut Self {
        self.spec.rollback.auto = auto;
        self.spec.rollback.window =
            shipshape_spec::Duration::from_millis(window.as_millis() as u64);
        self
    }

    fn progress_deadline(&mut self, deadline: Duration) -> &mut Self {
        self.spec.health.progress_deadline =
            shipshape_spec::Duration::from_millis(deadline.as_millis() as u64);
        self
    }

    fn repository(&mut self, url: &str) -> &mut Self {
        self.spec.source.repository = url.to_string();
        self
    }

    fn token_file(&mut self, file: &Path, user: Option<&str>) -> &mut Self {
        self.spec.source.token_file = Some(file.display().to_string());
        self.spec.source.token_user = user.map(str::to_string);
        self
    }

    fn build_steps(&mut self, steps: &[&str]) -> &mut Self {
        self.spec.build.steps = steps.iter().map(|s| s.to_string()).collect();
        self
    }

    fn hosts(&mut self, names: &[&str], labels: &[(&str, &str)]) -> &mut Self {
        self.spec.hosts = Some(shipshape_spec::app::Hosts {
            names: names.iter().map(|n| n.to_string()).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
        self
    }

    fn env_file(&mut self, file: &Path) -> &mut Self {
        self.spec.env_file = Some(file.display().to_string());
        self
    }
}

/// `text` (an App document) edited as a typed document by `edit` (a document that does not
/// load fails the test), written back as YAML.
pub fn edited(text: &str, edit: impl FnOnce(&mut shipshape_spec::App)) -> String {
    let mut app = shipshape_spec::load_str(text, "edited.yaml").expect("the document loads");
    edit(&mut app);
    shipshape_spec::load::to_yaml(&app)
}

/// `text` (an App document) with `key=value` in every process's env, edited as a typed
/// document (a document that does not load fails the test).
pub fn with_env(text: &str, key: &str, value: &str) -> String {
    let mut app = shipshape_spec::load_str(text, "edited.yaml").expect("the document loads");
    app.env(key, value);
    shipshape_spec::load::to_yaml(&app)
}
/// The example app's local dependency's main file, relative to a release.
pub const DEP_FILE: &str = "node_modules/dep/index.js";
/// Its bytes as installed.
pub const DEP_INDEX_JS: &str = "module.exports = 'dep 1.0.0';\n";

/// Run `npm args` in `dir` offline, panicking with its output on failure.
pub fn npm(dir: &Path, args: &[&str]) {
    let out = Command::new("npm")
        .args(args)
        .args(["--offline", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .expect("npm runs");
    assert!(
        out.status.success(),
        "npm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl World {
    /// Give the app repo a dependency that `npm ci` installs without the network, as real
    /// files (so a release gets a `node_modules` that `reuse-deps` can copy): a tiny package
    /// packed into `deps/dep-1.0.0.tgz` (a `file:` directory would be a symlink) with a bin
    /// link, locked in `package-lock.json`. Commits it; returns the commit.
    pub fn add_local_dependency(&self) -> String {
        let app = self.app_repo();
        let src = self.root().join("dep-src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("package.json"),
            r#"{ "name": "dep", "version": "1.0.0", "main": "index.js", "bin": { "dep": "bin.js" } }"#,
        )
        .unwrap();
        std::fs::write(src.join("index.js"), DEP_INDEX_JS).unwrap();
        std::fs::write(
            src.join("bin.js"),
            "#!/usr/bin/env node\nconsole.log('dep');\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.join("bin.js"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::create_dir_all(app.join("deps")).unwrap();
        npm(
            &src,
            &[
                "pack",
                "--pack-destination",
                app.join("deps").to_str().unwrap(),
            ],
        );
        let pkg_path = app.join("package.json");
        let mut pkg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&pkg_path).unwrap()).unwrap();
        pkg["dependencies"] = serde_json::json!({ "dep": "file:./deps/dep-1.0.0.tgz" });
        std::fs::write(
            &pkg_path,
            serde_json::to_string_pretty(&pkg).unwrap() + "\n",
        )
        .unwrap();
        npm(&app, &["install", "--package-lock-only"]);
        git(&app, &["add", "-A"]);
        git(&app, &["commit", "-qm", "a local dependency"]);
        self.app_head()
    }
}

//! The ports: the narrow interfaces through which a pass reaches the world — pm2, external
//! commands, the clock, the config and app sources, and the health probes — with the real
//! implementations over today's code ([`Ports::real`]). The [`crate::reconcile::Controller`]
//! holds one [`Ports`], built in one place ([`crate::cli::controller`]) for the daemon,
//! `run --once` and `shipshape plan`; the step runners ([`crate::execute`]) get only the
//! ports they use. The scenario tests of a pass put fakes behind them.
//!
//! Not behind a port: the records ([`crate::state::Store`], fast local files; a test gives
//! it a temporary directory) and the release directories (likewise real, in a temporary
//! directory).

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use shipshape_spec::App;
use shipshape_spec::app::Check;
use shipshape_spec::status::CheckResult;

use crate::exec::{ExecError, Output, Spec};
use crate::pm2::{Instance, Pm2, Pm2Error};
use crate::source::{self, ConfigRepo, Snapshot, SourceError};
use crate::state::Store;

/// pm2, as a pass uses it.
pub trait Pm2Port: Send + Sync + Debug {
    /// Every process pm2 runs, read now.
    fn jlist(&self) -> BoxFuture<'_, Result<Vec<Instance>, Pm2Error>>;
    /// Every process pm2 runs, possibly as read a moment ago (a shared read per short window).
    fn jlist_cached(&self) -> BoxFuture<'_, Result<Vec<Instance>, Pm2Error>> {
        self.jlist()
    }
    /// Start `name` from the ecosystem file, or reload it when it runs.
    fn start_or_reload<'a>(
        &'a self,
        ecosystem: &'a Path,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), Pm2Error>>;
    /// Delete `name`.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), Pm2Error>>;
    /// Save pm2's process list (what a reboot resurrects).
    fn save(&self) -> BoxFuture<'_, Result<(), Pm2Error>>;
    /// Make `PM2_HOME` and pm2's dump private (at startup); what was tightened, and a note.
    ///
    /// # Errors
    /// When they cannot be created or made private.
    fn secure(&self) -> Result<(Vec<crate::state::Tightened>, Option<String>), Pm2Error> {
        Ok((Vec::new(), None))
    }
    /// Where pm2 writes processes' output unless told otherwise (`None`: not known).
    fn log_dir(&self) -> Option<PathBuf> {
        None
    }
    /// pm2's event bus, which relays what processes write (`None`: none).
    fn bus_path(&self) -> Option<PathBuf> {
        None
    }
}

impl Pm2Port for Pm2 {
    fn jlist(&self) -> BoxFuture<'_, Result<Vec<Instance>, Pm2Error>> {
        Box::pin(Pm2::jlist(self))
    }
    fn jlist_cached(&self) -> BoxFuture<'_, Result<Vec<Instance>, Pm2Error>> {
        Box::pin(Pm2::jlist_cached(self))
    }
    fn start_or_reload<'a>(
        &'a self,
        ecosystem: &'a Path,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), Pm2Error>> {
        Box::pin(Pm2::start_or_reload(self, ecosystem, name))
    }
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), Pm2Error>> {
        Box::pin(Pm2::delete(self, name))
    }
    fn save(&self) -> BoxFuture<'_, Result<(), Pm2Error>> {
        Box::pin(Pm2::save(self))
    }
    fn secure(&self) -> Result<(Vec<crate::state::Tightened>, Option<String>), Pm2Error> {
        Pm2::secure(self)
    }
    fn log_dir(&self) -> Option<PathBuf> {
        Some(Pm2::log_dir(self))
    }
    fn bus_path(&self) -> Option<PathBuf> {
        Some(Pm2::bus_path(self))
    }
}

/// External commands (install, build, migrations, hooks), as [`crate::exec::run`] runs them.
pub trait Commands: Send + Sync + Debug {
    /// Run `spec` to its end or its timeout.
    fn run<'a>(&'a self, spec: &'a Spec) -> BoxFuture<'a, Result<Output, ExecError>>;
}

/// The real commands: [`crate::exec::run`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemCommands;

impl Commands for SystemCommands {
    fn run<'a>(&'a self, spec: &'a Spec) -> BoxFuture<'a, Result<Output, ExecError>> {
        Box::pin(crate::exec::run(spec))
    }
}

/// Time: wall-clock timestamps for the records, and a monotonic clock with sleeps for
/// deadlines and intervals.
pub trait Clock: Send + Sync + Debug {
    /// Now, to the millisecond (as [`crate::state::now`]).
    fn now(&self) -> shipshape_spec::Timestamp;
    /// Monotonic time since some fixed start (only differences mean anything).
    fn elapsed(&self) -> Duration;
    /// Wait `d` of this clock's time.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// The system's clocks: [`crate::state::now`], [`Instant`], [`tokio::time::sleep`].
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> shipshape_spec::Timestamp {
        crate::state::now()
    }
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The HTTP and Prometheus checks, run and timed ([`crate::health::probes::Prober`]).
pub trait Probes: Send + Sync + Debug {
    /// Run `checks` (a `resources` check is answered from pm2's list, not here).
    fn probe(&self, checks: Vec<Check>) -> BoxFuture<'_, Vec<CheckResult>>;
}

impl Probes for crate::health::probes::Prober {
    fn probe(&self, checks: Vec<Check>) -> BoxFuture<'_, Vec<CheckResult>> {
        Box::pin(crate::health::probes::Prober::probe(self, checks))
    }
}

/// The config repo (its documents at a commit, newer documents, trust) and the app
/// sources (an app commit checked out into a release, its lockfile).
pub trait Source: Send + Sync + Debug {
    /// True when the config repo is remote (fetched, and polled sparingly).
    fn is_remote(&self) -> bool;
    /// Fetch the config repo; its branch tip.
    fn fetch(&self) -> BoxFuture<'_, Result<String, SourceError>>;
    /// Every document at `commit` (`None`: the branch tip as last fetched).
    fn snapshot<'a>(
        &'a self,
        commit: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Snapshot, SourceError>>;
    /// The document `file` as the next pass would read it: at the branch tip, or at the last
    /// trusted commit when signatures are required (`None`: nothing trusted yet, or it cannot
    /// be read). The commit, and the text (`None` when the file is gone).
    fn latest_document<'a>(
        &'a self,
        file: &'a str,
    ) -> BoxFuture<'a, Option<(String, Option<String>)>>;
    /// Verify `commit`'s signature: the signer, or why it is not trusted.
    fn verify_trusted<'a>(
        &'a self,
        commit: &'a str,
    ) -> BoxFuture<'a, Result<String, crate::source::trust::Untrusted>>;
    /// True when `descendant` descends from `ancestor` in the config repo.
    fn descends<'a>(&'a self, ancestor: &'a str, descendant: &'a str) -> BoxFuture<'a, bool>;
    /// Check `app`'s `commit` out into `dest` (fetching it into the mirror when needed).
    fn checkout<'a>(
        &'a self,
        app: &'a App,
        commit: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), SourceError>>;
    /// The lockfile hash at `app`'s desired commit (`None`: none, or git cannot answer).
    fn lockfile<'a>(&'a self, app: &'a App) -> BoxFuture<'a, Option<String>>;
    /// The text of `package.json` at `app`'s desired commit (`Ok(None)`: the commit has
    /// none; `Err`: why it cannot be read, so the npm scripts are not checked).
    fn package_json<'a>(&'a self, app: &'a App) -> BoxFuture<'a, Result<Option<String>, String>> {
        let _ = app;
        Box::pin(async { Err("this source cannot read package.json".to_string()) })
    }
}

/// The real sources: the config repo through git2, the trust rules, app mirrors under
/// `sources_dir`.
#[derive(Debug, Clone)]
pub struct GitSource {
    /// The config repo.
    pub config: ConfigRepo,
    /// Which config commits to trust.
    pub trust: crate::source::trust::Trust,
    /// Where the last trusted commit is recorded.
    pub store: Store,
    /// Where app repositories are mirrored.
    pub sources_dir: PathBuf,
    /// Read app sources without changing anything (`shipshape plan`): from an existing
    /// mirror, or from the repository itself when it is a local path; never fetched.
    pub read_only: bool,
}

impl GitSource {
    fn app_repo(&self, app: &App) -> (PathBuf, String, source::Credentials) {
        let mirror = source::mirror_path(&self.sources_dir, &app.spec.source.repository);
        let creds = source::Credentials::for_app(
            &app.spec.source,
            self.config.credentials.ssh_key.as_deref(),
        );
        (mirror, app.spec.source.repository.clone(), creds)
    }
}

/// Run `f` on the blocking pool (git2 blocks).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("git task panicked")
}

impl Source for GitSource {
    fn is_remote(&self) -> bool {
        self.config.is_remote()
    }
    fn fetch(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        let config = self.config.clone();
        Box::pin(blocking(move || config.fetch()))
    }
    fn snapshot<'a>(
        &'a self,
        commit: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Snapshot, SourceError>> {
        let (config, commit) = (self.config.clone(), commit.map(str::to_string));
        Box::pin(blocking(move || match commit {
            Some(c) => config.snapshot_at(&c),
            None => config.snapshot(),
        }))
    }
    fn latest_document<'a>(
        &'a self,
        file: &'a str,
    ) -> BoxFuture<'a, Option<(String, Option<String>)>> {
        Box::pin(async move {
            let trusted = match self.trust.required() {
                // Signatures required: the newest commit the controller trusted, if any.
                true => Some(self.store.load_source().last_trusted?),
                false => None,
            };
            let (config, file) = (self.config.clone(), file.to_string());
            blocking(move || match trusted {
                Some(commit) => config.document_at(&commit, &file),
                None => config.document_at_tip(&file),
            })
            .await
            .ok()
        })
    }
    fn verify_trusted<'a>(
        &'a self,
        commit: &'a str,
    ) -> BoxFuture<'a, Result<String, crate::source::trust::Untrusted>> {
        Box::pin(self.trust.verify(&self.config, commit))
    }
    fn descends<'a>(&'a self, ancestor: &'a str, descendant: &'a str) -> BoxFuture<'a, bool> {
        let config = self.config.clone();
        let (a, d) = (ancestor.to_string(), descendant.to_string());
        Box::pin(blocking(move || config.is_ancestor(&a, &d)))
    }
    fn checkout<'a>(
        &'a self,
        app: &'a App,
        commit: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        let (mirror, repository, creds) = self.app_repo(app);
        let (commit, dest) = (commit.to_string(), dest.to_path_buf());
        Box::pin(blocking(move || {
            let repo = source::ensure_commit(&mirror, &repository, &commit, &creds)?;
            source::checkout(&repo, &commit, &dest)
        }))
    }
    fn lockfile<'a>(&'a self, app: &'a App) -> BoxFuture<'a, Option<String>> {
        let this = self.clone();
        let commit = app.spec.source.commit.clone();
        let app = app.clone();
        Box::pin(blocking(move || {
            let repo = this.repo_with(&app, &commit).ok()?;
            source::lockfile_at(&repo, &commit)
        }))
    }
    fn package_json<'a>(&'a self, app: &'a App) -> BoxFuture<'a, Result<Option<String>, String>> {
        let this = self.clone();
        let commit = app.spec.source.commit.clone();
        let app = app.clone();
        Box::pin(blocking(move || {
            let repo = this.repo_with(&app, &commit)?;
            Ok(source::mirror::file_at(&repo, &commit, "package.json"))
        }))
    }
}

impl GitSource {
    /// A repository holding `commit` of `app`'s source: the mirror, fetched into when it
    /// lacks the commit; read only ([`GitSource::read_only`]), the mirror as it is or the
    /// repository itself when local. `Err`: why there is none, in words.
    fn repo_with(&self, app: &App, commit: &str) -> Result<git2::Repository, String> {
        let (mirror, repository, creds) = self.app_repo(app);
        if self.read_only {
            return source::mirror::existing_commit(&mirror, &repository, commit).ok_or_else(|| {
                format!(
                    "commit {} of {} is not in the controller's mirror and the repository is not a local path (plan fetches nothing)",
                    crate::plan::short_sha(commit),
                    source::redact_url(&repository)
                )
            });
        }
        source::ensure_commit(&mirror, &repository, commit, &creds).map_err(|e| e.to_string())
    }
}

/// Every port a pass reaches the world through.
#[derive(Debug, Clone)]
pub struct Ports {
    /// pm2.
    pub pm2: Arc<dyn Pm2Port>,
    /// External commands.
    pub commands: Arc<dyn Commands>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The config repo and app sources.
    pub source: Arc<dyn Source>,
    /// The health probes.
    pub probes: Arc<dyn Probes>,
}

impl Ports {
    /// The real ports: this pm2, [`crate::exec`], the system clock, git, the probe thread.
    pub fn real(pm2: Arc<dyn Pm2Port>, source: GitSource) -> Ports {
        Ports {
            pm2,
            commands: Arc::new(SystemCommands),
            clock: Arc::new(SystemClock::default()),
            source: Arc::new(source),
            probes: Arc::new(crate::health::probes::Prober::new()),
        }
    }
}

//! The long-running controller: it follows the source (a watch on a local repo's refs, or a
//! poll of a remote one, fetched at once on a webhook; see [`crate::source`]), starts the
//! API ([`crate::runtime::serve`]), and runs a `Scheduler` that starts each app's pass
//! independently (a slow or failing app never holds up another) and a health monitor per
//! app; graceful stop on SIGTERM or Ctrl-C.
//!
//! # What the scheduler does per tick
//! A tick comes at start, then after the resync interval or sooner when something triggers
//! (a moved branch, a fetched commit, a webhook, a CLI request, a monitor, a pass that ended
//! with a trigger missed or superseded). A tick never asks what woke it: each reads afresh
//! and acts on what it finds. Each duty is one method:
//! 1. `Scheduler::read_desired`: read the desired state afresh (a failure is logged; the
//!    tick goes on to 5);
//! 2. `Scheduler::record_unrunnable`: record the apps the desired state cannot run (a
//!    document that does not load, an app whose document is gone) as results;
//! 3. `Scheduler::ensure_monitor`: start the health monitor of an app that has none;
//! 4. `Scheduler::start_pass`: start the app's pass, unless one is running: then the app
//!    is marked missed and goes again as soon as that pass ends (`Queue`, `Running`);
//! 5. `Scheduler::reap`: collect the passes that have finished;
//! 6. `Scheduler::wait`: wait for the next tick, or a stop (at most [`GATE_RECHECK`] while
//!    a fleet rollout's new commit waits for its wave gate here, so the gate is asked again).
//!
//! On stop: the monitors end, the poller ends, verifications are interrupted, and passes in
//! flight get `stop_timeout` to finish their step (`Scheduler::drain`); then the API stops.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

use crate::health::monitor::Monitor;
use crate::reconcile::{AppResult, Controller, Desired, DesiredDoc, PassSummary};
use crate::runtime::serve::Api;
use crate::source::{poll, watch};

pub use crate::runtime::serve::listen_error;
pub use crate::source::watch::DEBOUNCE;
pub use crate::source::webhook::read_webhook_secret;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time between passes when nothing asks for one sooner (the resync interval).
    pub interval: Duration,
    /// Time between fetches of a remote config repo.
    pub poll_interval: Duration,
    /// Where the API listens (`None`: no API).
    pub listen: Option<SocketAddr>,
    /// A file holding the webhook secret (GitHub HMAC or GitLab token).
    pub webhook_secret_file: Option<PathBuf>,
    /// How long a stop waits for passes in flight.
    pub stop_timeout: Duration,
    /// Host names the TCP API answers to besides loopback ones (`--public-host`).
    pub public_hosts: Vec<String>,
    /// The open-file limit the process runs with (it sizes the API's connection caps).
    pub open_files: u64,
}

/// How each app's last pass ended, as last logged: a pass that ends the same way as the one
/// before (an app held on its last good revision, or an invalid document, passed again at
/// every resync) is logged at debug level instead of warned of every interval. One
/// controller runs per process (its state directory's lock), so one table serves.
static LAST_SAID: std::sync::LazyLock<Said> = std::sync::LazyLock::new(Said::default);

/// The last message logged per app (see [`LAST_SAID`]).
#[derive(Debug, Default)]
struct Said(std::sync::Mutex<HashMap<String, String>>);

impl Said {
    /// True when `message` is new for `app` (and remember it); `None` forgets `app` (a pass
    /// that ended well), so the same failure later is warned of again.
    fn is_news(&self, app: &str, message: Option<&str>) -> bool {
        let mut said = self.0.lock().expect("said");
        match message {
            None => said.remove(app).is_some(),
            Some(m) if said.get(app).is_some_and(|s| s == m) => false,
            Some(m) => {
                said.insert(app.to_string(), m.to_string());
                true
            }
        }
    }
}

fn record_result(ctl: &Controller, app: &str, r: &AppResult, secs: f64, commit: &str) {
    let result = match r {
        AppResult::Ready { steps } => {
            LAST_SAID.is_news(app, None);
            info!(app, steps, config_commit = %commit, "ready");
            "ready"
        }
        AppResult::NotReady { phase, message } => {
            if LAST_SAID.is_news(app, Some(message)) {
                warn!(app, ?phase, "{message}");
            } else {
                debug!(app, ?phase, "as before: {message}");
            }
            "not_ready"
        }
        AppResult::Superseded { message } => {
            info!(app, "{message}");
            "superseded"
        }
        AppResult::Invalid { message } => {
            if LAST_SAID.is_news(app, Some(message)) {
                error!(file = app, "invalid document: {message}");
            } else {
                debug!(file = app, "as before, invalid document: {message}");
            }
            "invalid"
        }
    };
    let m = &ctl.hub.metrics;
    m.inc(
        "shipshape_reconcile_total",
        vec![("app", app.to_string()), ("result", result.into())],
        1.0,
    );
    m.inc(
        "shipshape_reconcile_duration_seconds_sum",
        vec![("app", app.to_string())],
        secs,
    );
    m.inc(
        "shipshape_reconcile_duration_seconds_count",
        vec![("app", app.to_string())],
        1.0,
    );
}

/// The per-app queue: which apps have a pass running, and which were asked for again
/// meanwhile (they go again as soon as their pass ends, so no trigger is lost and no app
/// runs two passes at once).
#[derive(Clone, Default)]
struct Queue {
    /// Apps whose pass is running.
    running: Arc<Mutex<HashSet<String>>>,
    /// Apps skipped while their pass was running: they go again as soon as it ends.
    missed: Arc<Mutex<HashSet<String>>>,
    /// Wakes the loop.
    trigger: Arc<Notify>,
}

impl Queue {
    /// A queue whose missed apps wake the loop through `trigger`.
    fn new(trigger: Arc<Notify>) -> Queue {
        Queue {
            trigger,
            ..Queue::default()
        }
    }

    /// `app` entered in the running set, or `None` (and `app` marked missed) when its pass
    /// is running already.
    fn claim(&self, app: &str) -> Option<Running> {
        if !self
            .running
            .lock()
            .expect("running lock")
            .insert(app.to_string())
        {
            self.missed
                .lock()
                .expect("missed lock")
                .insert(app.to_string());
            return None;
        }
        Some(Running {
            app: app.to_string(),
            queue: self.clone(),
        })
    }
}

/// An app whose pass is running; dropped (however the pass ended, a panic included), it
/// leaves the running set, and the app goes again at once if a trigger came meanwhile.
struct Running {
    app: String,
    queue: Queue,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut r) = self.queue.running.lock() {
            r.remove(&self.app);
        }
        if self
            .queue
            .missed
            .lock()
            .is_ok_and(|mut m| m.remove(&self.app))
        {
            self.queue.trigger.notify_one();
        }
    }
}

/// Count a pass that did not finish (`error` or `panic`) in `shipshape_reconcile_total`.
fn count_pass(ctl: &Controller, app: &str, result: &str) {
    ctl.hub.metrics.inc(
        "shipshape_reconcile_total",
        vec![("app", app.to_string()), ("result", result.to_string())],
        1.0,
    );
}

/// What a task that did not finish says about why.
fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(e) => e.to_string(),
    }
}

/// One pass over everything (for `run --once`), logged and counted.
pub async fn pass(ctl: &Controller) -> Option<PassSummary> {
    let started = Instant::now();
    match ctl.reconcile_all().await {
        Ok(summary) => {
            let secs = started.elapsed().as_secs_f64();
            for (app, r) in &summary.apps {
                record_result(ctl, app, r, secs, &summary.config_commit);
            }
            if summary.apps.is_empty() {
                error!(config_commit = %summary.config_commit, "no App documents found");
            }
            Some(summary)
        }
        Err(e) => {
            error!("pass failed: {e}");
            ctl.hub.metrics.inc(
                "shipshape_reconcile_total",
                vec![("app", "*".into()), ("result", "error".into())],
                1.0,
            );
            None
        }
    }
}

/// How the daemon follows the config repo: a watch on a local repo's refs (it lasts as
/// long as this value), or the poller's task for a remote one.
enum Follow {
    Watch {
        /// Watching while it lives.
        _watcher: notify::RecommendedWatcher,
    },
    Poll(JoinHandle<()>),
}

impl Follow {
    /// Start following: a remote repo is fetched once first, so the first pass reads what
    /// is there (the poller keeps it fresh afterwards).
    ///
    /// # Errors
    /// When a local repo cannot be watched.
    async fn start(
        ctl: &Arc<Controller>,
        trigger: &Arc<Notify>,
        fetch_now: &Arc<Notify>,
        poll_interval: Duration,
    ) -> anyhow::Result<Follow> {
        if !ctl.config.is_remote() {
            let watcher = watch::watch_local(ctl.clone(), trigger.clone())?;
            return Ok(Follow::Watch { _watcher: watcher });
        }
        poll::first_fetch(ctl).await;
        Ok(Follow::Poll(tokio::spawn(poll::poll_remote(
            ctl.clone(),
            trigger.clone(),
            fetch_now.clone(),
            poll_interval,
        ))))
    }

    /// A local repo is read in place: it is as fresh as it gets; record its tip now.
    fn record_local_tip(&self, ctl: &Controller) {
        if let Follow::Watch { .. } = self {
            watch::record_tip(ctl, ctl.config.tip().ok(), "tip");
        }
    }

    /// Stop polling (a watch ends when this value is dropped).
    fn stop_polling(&self) {
        if let Follow::Poll(task) = self {
            task.abort();
        }
    }
}

/// What ends a wait between ticks.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// The resync interval passed, or something triggered: tick again.
    Tick,
    /// SIGTERM or Ctrl-C: stop.
    Stop,
}

/// How long until the first warm slot of the documents in `desired` has had its time.
fn warm_ends_in(desired: &Desired) -> Option<Duration> {
    let now = shipshape_spec::Timestamp::now();
    desired
        .docs
        .iter()
        .filter_map(|d| d.app.spec.traffic.as_ref())
        .filter_map(|t| crate::traffic::read_state(t, now).ok()?.warm)
        // One whose time is already up waits for the resync interval (no busy ticks when
        // retiring it fails).
        .filter_map(|w| now.until(w.until).to_std().ok())
        .min()
}

/// How often a host ticks while a fleet rollout's new app commit is not live on it yet: its
/// wave gate is asked again this often (three instant queries to Prometheus).
pub const GATE_RECHECK: Duration = Duration::from_secs(3);

/// True when an app under `spec.rollout` is not live on its desired app commit yet, and
/// neither pinned nor quarantined here: its wave gate may open at any moment.
fn rollout_pending(ctl: &Controller, desired: &Desired) -> bool {
    desired
        .docs
        .iter()
        .filter(|d| d.app.spec.rollout.is_some())
        .any(|d| {
            let Ok(rec) = ctl.store.load(&d.app.metadata.name) else {
                return false;
            };
            let live = rec.live().map(|r| r.revision.app_commit.as_str());
            live != Some(d.app.spec.source.commit.as_str())
                && rec.pin.is_none()
                && crate::reconcile::target::quarantine_of(&rec, &desired.commit).is_none()
        })
}

/// The reconcile loop's state: which apps have a pass running or missed a trigger, the
/// monitors started, the passes in flight. See the module's doc for its duties per tick.
struct Scheduler {
    ctl: Arc<Controller>,
    /// The resync interval.
    interval: Duration,
    /// How long a stop waits for passes in flight.
    stop_timeout: Duration,
    /// Wakes the loop (a new tick).
    trigger: Arc<Notify>,
    /// Which apps have a pass running or missed a trigger.
    queue: Queue,
    /// At most the controller's concurrency passes at once.
    limit: Arc<Semaphore>,
    /// Apps whose monitor is started.
    monitored: HashSet<String>,
    /// The monitors' tasks.
    monitors: Vec<JoinHandle<()>>,
    /// The passes in flight.
    passes: JoinSet<()>,
    /// SIGTERM.
    sigterm: tokio::signal::unix::Signal,
    /// How long until the first warm slot's time is up (traffic through nginx): the next
    /// tick comes then at the latest, so the slot is retired on time.
    warm_ends_in: Option<Duration>,
    /// A fleet rollout's new commit is not live here yet: tick every [`GATE_RECHECK`].
    rollout_pending: bool,
}

impl Scheduler {
    /// A scheduler with nothing running yet.
    ///
    /// # Errors
    /// When SIGTERM cannot be listened for.
    fn new(ctl: Arc<Controller>, opts: &Options, trigger: Arc<Notify>) -> std::io::Result<Self> {
        let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let limit = Arc::new(Semaphore::new(ctl.concurrency.max(1)));
        Ok(Scheduler {
            ctl,
            interval: opts.interval,
            stop_timeout: opts.stop_timeout,
            queue: Queue::new(trigger.clone()),
            trigger,
            limit,
            monitored: HashSet::new(),
            monitors: Vec::new(),
            passes: JoinSet::new(),
            sigterm,
            warm_ends_in: None,
            rollout_pending: false,
        })
    }

    /// Tick until a stop signal.
    async fn run(&mut self) {
        loop {
            self.tick().await;
            if self.wait().await == Next::Stop {
                break;
            }
        }
    }

    /// One tick: duties 1 to 5 of the module's list.
    async fn tick(&mut self) {
        if let Some(desired) = self.read_desired().await {
            self.record_unrunnable(&desired).await;
            self.warm_ends_in = warm_ends_in(&desired);
            self.rollout_pending = rollout_pending(&self.ctl, &desired);
            let commit = desired.commit;
            for doc in desired.docs {
                self.ensure_monitor(&doc.app.metadata.name);
                self.start_pass(doc, &commit);
            }
        }
        self.reap();
    }

    /// Duty 1: the desired state, read afresh; `None` (logged) when it cannot be read.
    async fn read_desired(&self) -> Option<Desired> {
        match self.ctl.load_desired().await {
            Ok(desired) => Some(desired),
            Err(e) => {
                error!("reading the desired state failed: {e}");
                None
            }
        }
    }

    /// Duty 2: record the documents that cannot run as results.
    async fn record_unrunnable(&self, desired: &Desired) {
        for (key, r) in self.ctl.record_unrunnable(desired).await {
            record_result(&self.ctl, &key, &r, 0.0, &desired.commit);
        }
    }

    /// Duty 3: start `app`'s health monitor unless it has one.
    fn ensure_monitor(&mut self, app: &str) {
        if self.monitored.insert(app.to_string()) {
            self.monitors.push(tokio::spawn(
                Monitor::new(self.ctl.clone(), app, self.trigger.clone()).run(),
            ));
        }
    }

    /// Duty 4: start the pass of `doc` at `commit`. An app whose pass is still running
    /// sees the newer state itself (verification stops for a newer document): it is marked
    /// missed and goes again when that pass ends; the others go now.
    fn start_pass(&mut self, doc: DesiredDoc, commit: &str) {
        let Some(guard) = self.queue.claim(&doc.app.metadata.name) else {
            return;
        };
        let (ctl, limit) = (self.ctl.clone(), self.limit.clone());
        self.passes
            .spawn(run_pass(ctl, limit, guard, doc, commit.to_string()));
    }

    /// Duty 5: collect the passes that have finished.
    fn reap(&mut self) {
        while self.passes.try_join_next().is_some() {}
    }

    /// Duty 6: wait for the resync interval, a trigger, or a stop signal.
    async fn wait(&mut self) -> Next {
        // A warm slot whose time is up is retired by the tick after (a little slack, so the
        // pass sees the time passed).
        let mut sleep = match self.warm_ends_in {
            Some(d) => self.interval.min(d + Duration::from_millis(50)),
            None => self.interval,
        };
        if self.rollout_pending {
            sleep = sleep.min(GATE_RECHECK);
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => Next::Tick,
            _ = self.trigger.notified() => Next::Tick,
            _ = self.sigterm.recv() => { info!("SIGTERM; stopping"); Next::Stop }
            _ = tokio::signal::ctrl_c() => { info!("interrupted; stopping"); Next::Stop }
        }
    }

    /// At a stop: end the monitors.
    fn stop_monitors(&mut self) {
        for m in self.monitors.drain(..) {
            m.abort();
        }
    }

    /// At a stop: let passes in flight finish their step, within `stop_timeout` (a second
    /// SIGTERM stops at once); the next start resumes them. Verifications stop waiting at
    /// once (nothing live changes while they wait).
    async fn drain(&mut self) {
        self.ctl.handles.interrupt_all();
        if self.passes.is_empty() {
            return;
        }
        info!(
            passes = self.passes.len(),
            "waiting for passes in flight (at most {:?})", self.stop_timeout
        );
        let passes = &mut self.passes;
        let drain = async { while passes.join_next().await.is_some() {} };
        tokio::select! {
            _ = drain => {}
            _ = tokio::time::sleep(self.stop_timeout) => { warn!("passes still running at the stop deadline; stopping anyway"); }
            _ = self.sigterm.recv() => { warn!("second SIGTERM; stopping at once"); }
        }
    }
}

/// One app's pass, run in a task of its own so that a panic is caught and recorded: it
/// waits for a permit, runs, and records its result; `guard` takes the app out of the
/// running set when it ends, however it ends.
async fn run_pass(
    ctl: Arc<Controller>,
    limit: Arc<Semaphore>,
    guard: Running,
    doc: DesiredDoc,
    commit: String,
) {
    let _permit = limit.acquire().await.expect("semaphore open");
    // Whatever happens to the pass, the app leaves the running set.
    let _guard = guard;
    let name = doc.app.metadata.name.clone();
    let started = Instant::now();
    let inner = {
        let (ctl, commit) = (ctl.clone(), commit.clone());
        tokio::spawn(async move {
            ctl.reconcile_app(&doc.app, &commit, Some((&doc.path, &doc.text)))
                .await
        })
    };
    let outcome = inner.await;
    let secs = started.elapsed().as_secs_f64();
    record_outcome(&ctl, &name, &commit, secs, &_guard.queue.trigger, outcome).await;
}

/// Log, count and record how a pass ended: its result (a superseded pass triggers a new
/// tick), an error, or a panic (recorded as the app's failure; it runs again on the next
/// trigger).
async fn record_outcome<E: std::fmt::Display>(
    ctl: &Controller,
    name: &str,
    commit: &str,
    secs: f64,
    trigger: &Notify,
    outcome: Result<Result<AppResult, E>, JoinError>,
) {
    match outcome {
        Ok(Ok(r)) => {
            record_result(ctl, name, &r, secs, commit);
            if matches!(&r, AppResult::Superseded { .. }) {
                trigger.notify_one();
            }
        }
        Ok(Err(e)) => {
            error!(app = %name, "pass failed: {e}");
            count_pass(ctl, name, "error");
            ctl.record_pass_failure(name, commit, &format!("the pass failed: {e}"))
                .await;
        }
        Err(e) => {
            let what = panic_message(e);
            error!(app = %name, "the pass panicked: {what}");
            count_pass(ctl, name, "panic");
            ctl.record_pass_failure(
                name,
                commit,
                &format!("the pass panicked: {what}; it runs again on the next trigger"),
            )
            .await;
        }
    }
}

/// Run until stopped; returns the exit code.
///
/// # Errors
/// When the webhook secret file cannot be read or is empty, the API token cannot be
/// written, the source cannot be watched, or files cannot be written. A busy API port is
/// not one: the controller runs without its TCP listener, retrying it.
pub async fn run(ctl: Arc<Controller>, opts: Options) -> anyhow::Result<i32> {
    ctl.hub.metrics.identify(&ctl.host.name);
    ctl.hub.metrics.label_host(&ctl.host.name, &ctl.host.labels);
    // Refuse a bad secret before anything starts.
    let webhook_secret = match &opts.webhook_secret_file {
        Some(f) => Some(Arc::new(read_webhook_secret(f)?)),
        None => None,
    };
    let trigger = Arc::new(Notify::new());
    let fetch_now = Arc::new(Notify::new());
    let source = Follow::start(&ctl, &trigger, &fetch_now, opts.poll_interval).await?;
    let api = Api::start(&ctl, &opts, webhook_secret, &trigger, &fetch_now)?;
    source.record_local_tip(&ctl);
    let mut scheduler = Scheduler::new(ctl, &opts, trigger)?;
    scheduler.run().await;
    scheduler.stop_monitors();
    source.stop_polling();
    scheduler.drain().await;
    api.stop().await;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_ending_as_the_one_before_is_not_news_and_a_good_pass_in_between_makes_it_news_again()
    {
        let said = Said::default();
        let held = "holding the last good revision; config commit abc is quarantined";
        assert!(said.is_news("web", Some(held)), "the first time");
        assert!(!said.is_news("web", Some(held)), "every resync after it");
        assert!(said.is_news("api", Some(held)), "another app's is its own");
        assert!(
            said.is_news("web", Some("verify failed: …")),
            "a new message"
        );
        assert!(
            said.is_news("web", None),
            "a pass that ended well forgets it"
        );
        assert!(
            said.is_news("web", Some("verify failed: …")),
            "so the same failure later is news"
        );
    }

    #[test]
    fn an_app_runs_one_pass_at_a_time_and_a_trigger_missed_meanwhile_runs_it_again() {
        let trigger = Arc::new(Notify::new());
        let queue = Queue::new(trigger.clone());
        let first = queue.claim("web").expect("nothing runs yet");
        assert!(queue.claim("web").is_none(), "a second pass while one runs");
        let other = queue.claim("api").expect("another app is not held up");
        drop(other);
        drop(first);
        // The missed trigger was kept: the loop wakes, and the app can run again.
        let woken = holds_a_wake_up(&trigger);
        assert!(woken, "the app that missed a trigger wakes the loop");
        let again = queue.claim("web").expect("free once its pass ended");
        drop(again);
        assert!(!holds_a_wake_up(&trigger), "nothing missed: no wake-up");
    }

    /// Whether `n` holds a wake-up (taken).
    fn holds_a_wake_up(n: &Notify) -> bool {
        use std::future::Future;
        let notified = n.notified();
        let mut notified = std::pin::pin!(notified);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        notified.as_mut().poll(&mut cx).is_ready()
    }
}

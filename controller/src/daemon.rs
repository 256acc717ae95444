//! The long-running controller: a source watcher (notify on a local repo's refs; polling a
//! remote one with back-off, or at once on a webhook), a reconcile loop that runs each
//! app's pass independently (a slow or failing app never holds up another), a health
//! monitor per app, and the local API; graceful stop on SIGTERM or Ctrl-C.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::api::{self, ApiState};
use crate::monitor::Monitor;
use crate::reconcile::{AppResult, Controller, PassSummary};
use crate::retry::Backoff;
use crate::state;

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
}

/// How long a burst of ref changes is collected before the tip is read.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

fn record_result(ctl: &Controller, app: &str, r: &AppResult, secs: f64, commit: &str) {
    let result = match r {
        AppResult::Ready { steps } => {
            info!(app, steps, config_commit = %commit, "ready");
            "ready"
        }
        AppResult::NotReady { phase, message } => {
            warn!(app, ?phase, "{message}");
            "not_ready"
        }
        AppResult::Superseded { message } => {
            info!(app, "{message}");
            "superseded"
        }
        AppResult::Invalid { message } => {
            error!(file = app, "invalid document: {message}");
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

/// An app whose pass is running; dropped (however the pass ended, a panic included), it
/// leaves the running set, and the app goes again at once if a trigger came meanwhile.
struct Running {
    app: String,
    running: Arc<Mutex<HashSet<String>>>,
    missed: Arc<Mutex<HashSet<String>>>,
    trigger: Arc<Notify>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(&self.app);
        }
        if self.missed.lock().is_ok_and(|mut m| m.remove(&self.app)) {
            self.trigger.notify_one();
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

/// Whether a change in the watched git directories can move a ref. Opening, reading and
/// closing a file read cannot: reading the tip opens `.git/config` (and `HEAD`,
/// `packed-refs`), which inotify reports; taken as a change, each read of the tip caused
/// the next, and the controller re-read the repository every [`DEBOUNCE`] while idle. A
/// file closed after writing still counts (a ref written in place).
fn moves_a_ref(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

/// Watch a local repo's refs: a moved branch triggers a pass within [`DEBOUNCE`].
fn watch_local(
    ctl: Arc<Controller>,
    trigger: Arc<Notify>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let git_dir = ctl.config.git_dir()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| moves_a_ref(&e.kind)) {
            let _ = tx.send(());
        }
    })?;
    let heads = git_dir.join("refs").join("heads");
    watcher.watch(&heads, notify::RecursiveMode::Recursive)?;
    // packed-refs and HEAD live directly in the git directory.
    watcher.watch(&git_dir, notify::RecursiveMode::NonRecursive)?;
    info!(dir = %git_dir.display(), "watching the config repo's refs");
    tokio::spawn(async move {
        let mut last = None;
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let config = ctl.config.clone();
            let tip = tokio::task::spawn_blocking(move || config.tip())
                .await
                .ok()
                .and_then(Result::ok);
            if tip.is_some() && tip != last {
                debug!(tip = ?tip, "the branch moved");
                last = tip.clone();
                let mut source = ctl.source_status();
                source.tip = tip;
                source.last_success_at = Some(state::now());
                if let Err(e) = ctl.store.save_source(&source) {
                    warn!("could not record the config repo's new tip: {e}");
                }
                ctl.publish_source_metrics(&source);
                trigger.notify_one();
            }
        }
    });
    Ok(watcher)
}

/// Poll a remote repo: fetch every `poll_interval` (or at once when `fetch_now` fires);
/// on failure back off exponentially with jitter, capped, reset after a success.
async fn poll_remote(
    ctl: Arc<Controller>,
    trigger: Arc<Notify>,
    fetch_now: Arc<Notify>,
    poll_interval: Duration,
) {
    let mut backoff = Backoff::new(
        Duration::from_secs(1),
        poll_interval.max(Duration::from_secs(60)) * 5,
    );
    let mut last: Option<String> = None;
    loop {
        let wait = match ctl.fetch_source().await {
            Ok(tip) => {
                backoff.reset();
                if last.as_ref() != Some(&tip) {
                    info!(tip = %tip, "fetched a new config commit");
                    last = Some(tip);
                    trigger.notify_one();
                }
                poll_interval
            }
            Err(e) => {
                let wait = backoff.next_delay();
                warn!("fetching the config repo failed; next try in {wait:?}: {e}");
                wait
            }
        };
        let mut source = ctl.store.load_source();
        source.next_try_at = Some(
            (chrono::Utc::now() + chrono::TimeDelta::from_std(wait).unwrap_or_default())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        if let Err(e) = ctl.store.save_source(&source) {
            warn!("could not record the next fetch time: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = fetch_now.notified() => { debug!("fetch requested"); }
        }
    }
}

/// Read the webhook secret from `path` (surrounding whitespace trimmed).
///
/// # Errors
/// When the file cannot be read, or holds nothing: an empty secret would authenticate
/// anyone (an empty GitLab token, an HMAC keyed with nothing), so the controller refuses
/// to start rather than serve webhooks with it.
pub fn read_webhook_secret(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "webhook secret file {} (--webhook-secret-file): {e}",
            path.display()
        )
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        anyhow::bail!(
            "webhook secret file {} (--webhook-secret-file) is empty: an empty secret would authenticate anyone; write the secret into it, or start without --webhook-secret-file",
            path.display()
        );
    }
    Ok(secret.to_string())
}

/// What a failed bind of the API says: the address, the flag, and the likely cause.
pub fn listen_error(addr: SocketAddr, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use (another controller?)".into(),
        std::io::ErrorKind::AddrNotAvailable => "no such address on this host".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".into()
        }
        _ => e.to_string(),
    };
    format!("cannot listen on {addr} (--listen): {why}")
}

/// Run until stopped; returns the exit code.
///
/// # Errors
/// When the webhook secret file cannot be read or is empty, the API cannot listen, the
/// source cannot be watched, or files cannot be written.
pub async fn run(ctl: Arc<Controller>, opts: Options) -> anyhow::Result<i32> {
    ctl.hub.metrics.identify(&ctl.host.name);
    // Refuse a bad secret before anything starts.
    let webhook_secret = match &opts.webhook_secret_file {
        Some(f) => Some(Arc::new(read_webhook_secret(f)?)),
        None => None,
    };
    let trigger = Arc::new(Notify::new());
    let fetch_now = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let mut _watcher = None;
    let mut source_task = None;
    if ctl.config.is_remote() {
        // Read what is there before the first pass (the poller keeps it fresh afterwards).
        if let Err(e) = ctl.fetch_source().await {
            warn!("the first fetch of the config repo failed (retrying with back-off): {e}");
        }
        source_task = Some(tokio::spawn(poll_remote(
            ctl.clone(),
            trigger.clone(),
            fetch_now.clone(),
            opts.poll_interval,
        )));
    } else {
        _watcher = Some(watch_local(ctl.clone(), trigger.clone())?);
    }

    let mut api_task = None;
    if let Some(listen) = opts.listen {
        let token = api::ensure_token(&ctl.store.dir)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!(listen_error(listen, &e)))?;
        let addr = listener.local_addr()?;
        api::write_address(&ctl.store.dir, addr)?;
        info!(%addr, "API listening");
        let app = api::router(ApiState {
            ctl: ctl.clone(),
            token: Arc::new(token),
            trigger: trigger.clone(),
            fetch_now: fetch_now.clone(),
            webhook_secret,
        });
        let mut stop = stop_rx.clone();
        api_task = Some(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                error!("API stopped: {e}");
            }
        }));
    }

    // A local repo is read in place: it is as fresh as it gets.
    if !ctl.config.is_remote() {
        let mut source = ctl.source_status();
        source.tip = ctl.config.tip().ok();
        source.last_success_at = Some(state::now());
        if let Err(e) = ctl.store.save_source(&source) {
            warn!("could not record the config repo's tip: {e}");
        }
        ctl.publish_source_metrics(&source);
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    // Apps skipped while their pass was running: they go again as soon as it ends.
    let missed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let limit = Arc::new(tokio::sync::Semaphore::new(ctl.concurrency.max(1)));
    let mut monitored: HashSet<String> = HashSet::new();
    let mut monitors = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        match ctl.load_desired().await {
            Err(e) => error!("reading the desired state failed: {e}"),
            Ok(desired) => {
                for (key, r) in ctl.record_unrunnable(&desired).await {
                    record_result(&ctl, &key, &r, 0.0, &desired.commit);
                }
                for doc in desired.docs {
                    let name = doc.app.metadata.name.clone();
                    if monitored.insert(name.clone()) {
                        monitors.push(tokio::spawn(
                            Monitor::new(ctl.clone(), &name, trigger.clone()).run(),
                        ));
                    }
                    // An app whose pass is still running sees the newer state itself
                    // (verification stops for a newer document); the others go now.
                    if !running.lock().expect("running lock").insert(name.clone()) {
                        missed.lock().expect("missed lock").insert(name.clone());
                        continue;
                    }
                    let (ctl, limit) = (ctl.clone(), limit.clone());
                    let guard = Running {
                        app: name.clone(),
                        running: running.clone(),
                        missed: missed.clone(),
                        trigger: trigger.clone(),
                    };
                    let commit = desired.commit.clone();
                    tasks.spawn(async move {
                        let _permit = limit.acquire().await.expect("semaphore open");
                        // Whatever happens to the pass, the app leaves the running set.
                        let _guard = guard;
                        let started = Instant::now();
                        let inner = {
                            let (ctl, commit) = (ctl.clone(), commit.clone());
                            tokio::spawn(async move {
                                ctl.reconcile_app(&doc.app, &commit, Some((&doc.path, &doc.text)))
                                    .await
                            })
                        };
                        match inner.await {
                            Ok(Ok(r)) => {
                                record_result(
                                    &ctl,
                                    &name,
                                    &r,
                                    started.elapsed().as_secs_f64(),
                                    &commit,
                                );
                                if matches!(&r, AppResult::Superseded { .. }) {
                                    _guard.trigger.notify_one();
                                }
                            }
                            Ok(Err(e)) => {
                                error!(app = %name, "pass failed: {e}");
                                count_pass(&ctl, &name, "error");
                                ctl.record_pass_failure(&name, &commit, &format!("the pass failed: {e}"))
                                    .await;
                            }
                            Err(e) => {
                                let what = panic_message(e);
                                error!(app = %name, "the pass panicked: {what}");
                                count_pass(&ctl, &name, "panic");
                                ctl.record_pass_failure(
                                    &name,
                                    &commit,
                                    &format!("the pass panicked: {what}; it runs again on the next trigger"),
                                )
                                .await;
                            }
                        }
                    });
                }
            }
        }
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(opts.interval) => {}
            _ = trigger.notified() => {}
            _ = sigterm.recv() => { info!("SIGTERM; stopping"); break; }
            _ = tokio::signal::ctrl_c() => { info!("interrupted; stopping"); break; }
        }
    }
    for m in monitors {
        m.abort();
    }
    if let Some(t) = source_task {
        t.abort();
    }
    // Let passes in flight finish their step, within a bound; the next start resumes.
    // Verifications stop waiting at once (nothing live changes while they wait).
    ctl.handles.interrupt_all();
    if !tasks.is_empty() {
        info!(
            passes = tasks.len(),
            "waiting for passes in flight (at most {:?})", opts.stop_timeout
        );
        let drain = async { while tasks.join_next().await.is_some() {} };
        tokio::select! {
            _ = drain => {}
            _ = tokio::time::sleep(opts.stop_timeout) => { warn!("passes still running at the stop deadline; stopping anyway"); }
            _ = sigterm.recv() => { warn!("second SIGTERM; stopping at once"); }
        }
    }
    let _ = stop_tx.send(true);
    if let Some(t) = api_task
        && tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .is_err()
    {
        warn!("API did not stop within 5s");
    }
    let _ = std::fs::remove_file(ctl.store.dir.join(api::ADDRESS_FILE));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn only_changes_that_can_move_a_ref_wake_the_watcher() {
        for read in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(!moves_a_ref(&read), "{read:?}");
        }
        for change in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Remove(RemoveKind::File),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Any,
        ] {
            assert!(moves_a_ref(&change), "{change:?}");
        }
    }
}

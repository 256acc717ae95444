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

use crate::health::monitor::Monitor;
use crate::reconcile::{AppResult, Controller, PassSummary};
use crate::retry::Backoff;
use crate::runtime::api::{self, ApiState};
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
    /// Host names the TCP API answers to besides loopback ones (`--public-host`).
    pub public_hosts: Vec<String>,
    /// The open-file limit the process runs with (it sizes the API's connection caps).
    pub open_files: u64,
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
        source.next_try_at =
            Some(state::now() + chrono::TimeDelta::from_std(wait).unwrap_or_default());
        if let Err(e) = ctl.store.save_source(&source) {
            warn!("could not record the next fetch time: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = fetch_now.notified() => { debug!("fetch requested"); }
        }
    }
}

/// Read the webhook secret from `path` (see [`crate::redact::read_secret_file`]; a file
/// others can read is taken, as it always was).
///
/// # Errors
/// When the file cannot be read, or holds nothing: an empty secret would authenticate
/// anyone (an empty GitLab token, an HMAC keyed with nothing), so the controller refuses
/// to start rather than serve webhooks with it.
pub fn read_webhook_secret(path: &std::path::Path) -> anyhow::Result<String> {
    crate::redact::read_secret_file(path, "webhook secret file (--webhook-secret-file)", false)
        .map_err(|e| match matches!(e, crate::redact::SecretFileError::Empty { .. }) {
            true => anyhow::anyhow!(
                "{e}: an empty secret would authenticate anyone; write the secret into it, or start without --webhook-secret-file"
            ),
            false => anyhow::anyhow!(e),
        })
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

/// Publish whether the TCP API listens (`shipshape_api_listening`) and record it, with
/// the socket, in `api.json` for the CLI and `shipshape status`.
fn record_api(
    ctl: &Controller,
    listen: Option<SocketAddr>,
    url: Option<String>,
    socket: Option<PathBuf>,
    error: Option<String>,
) {
    if let Some(l) = listen {
        ctl.hub.metrics.set(
            "shipshape_api_listening",
            vec![("listener", "tcp".into()), ("address", l.to_string())],
            if url.is_some() { 1.0 } else { 0.0 },
        );
    }
    let a = api::Address::this_process(listen, url, socket, error);
    if let Err(e) = a.write(&ctl.store.dir) {
        error!(
            "could not write {}: {e}",
            ctl.store.dir.join(api::ADDRESS_FILE).display()
        );
    }
}

/// Start the API: a new token, the Unix socket, the TCP listener (retried with back-off
/// while its port is busy: the controller goes on without it); returns the serving tasks.
///
/// # Errors
/// When the token cannot be written.
async fn start_api(
    ctl: &Arc<Controller>,
    opts: &Options,
    webhook_secret: Option<Arc<String>>,
    trigger: &Arc<Notify>,
    fetch_now: &Arc<Notify>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use api::edge::{self, Edge, HostPolicy, Limits, Listener};
    let dir = ctl.store.dir.clone();
    let token = edge::rotate_token(&dir).map_err(|e| {
        anyhow::anyhow!(
            "writing the API token {}: {e}",
            dir.join(api::TOKEN_FILE).display()
        )
    })?;
    info!(
        "a new API token is in {} (the previous one no longer works)",
        dir.join(api::TOKEN_FILE).display()
    );
    let app = api::router(ApiState {
        ctl: ctl.clone(),
        token: Arc::new(token),
        trigger: trigger.clone(),
        fetch_now: fetch_now.clone(),
        webhook_secret,
    });
    let (tcp_limits, socket_limits) = Limits::for_open_files(opts.open_files);
    let metrics = ctl.hub.metrics.clone();
    let mut tasks = Vec::new();
    let socket_path = dir.join(api::SOCKET_FILE);
    let socket = match edge::bind_socket(&socket_path) {
        Ok(l) => {
            info!(socket = %socket_path.display(), "API listening on the Unix socket");
            let e = Edge::new(
                "socket",
                HostPolicy::default(),
                socket_limits,
                metrics.clone(),
            );
            tasks.push(tokio::spawn(edge::serve(
                Listener::Unix(l),
                app.clone(),
                e,
                stop.clone(),
            )));
            Some(socket_path.clone())
        }
        Err(e) => {
            error!(socket = %socket_path.display(), "the API cannot listen on its Unix socket (the CLI falls back to TCP): {e}");
            None
        }
    };
    let Some(listen) = opts.listen else {
        record_api(ctl, None, None, socket, None);
        return Ok(tasks);
    };
    info!(
        "API limits: {} connections, {} requests in flight, {} event-stream subscribers on TCP; {} connections on the socket; {:?} to send a request head; {} open files",
        tcp_limits.max_connections,
        tcp_limits.max_in_flight,
        tcp_limits.max_subscribers,
        socket_limits.max_connections,
        edge::HEADER_TIMEOUT,
        opts.open_files
    );
    let mut public = opts.public_hosts.clone();
    if !listen.ip().is_loopback() && !listen.ip().is_unspecified() {
        public.push(listen.ip().to_string());
    }
    let first = edge::bind_tcp(listen);
    let (ctl, stop) = (ctl.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut attempt = first;
        let mut stop_wait = stop.clone();
        let listener = loop {
            match attempt {
                Ok(l) => break l,
                Err(e) => {
                    let wait = backoff.next_delay();
                    let why = listen_error(listen, &e);
                    error!(
                        "{why}; the API is not listening on TCP (the controller goes on reconciling and monitoring; the CLI uses {}); next try in {wait:?}",
                        socket.as_ref().map_or("nothing".into(), |s| s.display().to_string())
                    );
                    record_api(&ctl, Some(listen), None, socket.clone(), Some(why));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop_wait.wait_for(|s| *s) => return,
                    }
                    attempt = edge::bind_tcp(listen);
                }
            }
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                error!("the API's TCP listener has no address: {e}");
                return;
            }
        };
        record_api(&ctl, Some(listen), Some(format!("http://{}", reachable(addr))), socket, None);
        info!(%addr, "API listening");
        let policy = HostPolicy {
            port: Some(addr.port()),
            public,
        };
        let e = Edge::new("tcp", policy, tcp_limits, ctl.hub.metrics.clone());
        edge::serve(Listener::Tcp(listener), app, e, stop).await;
    }));
    Ok(tasks)
}

/// The address a local client reaches a listener on: an unspecified bind (`0.0.0.0`,
/// `[::]`) is reached on loopback, which is also a Host the API answers to.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
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

    let api_tasks = start_api(&ctl, &opts, webhook_secret, &trigger, &fetch_now, &stop_rx).await?;

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
    for t in api_tasks {
        if tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .is_err()
        {
            warn!("API did not stop within 5s");
        }
    }
    let _ = std::fs::remove_file(ctl.store.dir.join(api::ADDRESS_FILE));
    let _ = std::fs::remove_file(ctl.store.dir.join(api::SOCKET_FILE));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn an_unspecified_bind_is_reached_on_loopback() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(reachable(at("0.0.0.0:7300")), at("127.0.0.1:7300"));
        assert_eq!(reachable(at("[::]:7300")), at("[::1]:7300"));
        assert_eq!(reachable(at("10.0.0.5:7300")), at("10.0.0.5:7300"));
    }

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

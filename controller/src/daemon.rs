//! The long-running controller: the reconcile loop (every `--interval`, at once when
//! something asks), a health monitor per app, and the local API; graceful stop on SIGTERM
//! or Ctrl-C.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::api::{self, ApiState};
use crate::monitor::Monitor;
use crate::reconciler::{AppResult, Controller, PassSummary};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time between passes when nothing asks for one sooner.
    pub interval: Duration,
    /// Where the API listens (`None`: no API).
    pub listen: Option<SocketAddr>,
}

/// One pass, logged and counted.
pub async fn pass(ctl: &Controller) -> Option<PassSummary> {
    let started = Instant::now();
    let result = ctl.reconcile_all().await;
    let secs = started.elapsed().as_secs_f64();
    let m = &ctl.hub.metrics;
    match result {
        Ok(summary) => {
            for (app, r) in &summary.apps {
                let result = match r {
                    AppResult::Ready { steps } => {
                        info!(app, steps, config_commit = %summary.config_commit, "ready");
                        "ready"
                    }
                    AppResult::NotReady { phase, message } => {
                        error!(app, ?phase, "{message}");
                        "not_ready"
                    }
                    AppResult::Invalid { message } => {
                        error!(file = app, "invalid document: {message}");
                        "invalid"
                    }
                };
                m.inc(
                    "shipshape_reconcile_total",
                    vec![("app", app.clone()), ("result", result.into())],
                    1.0,
                );
                m.inc(
                    "shipshape_reconcile_duration_seconds_sum",
                    vec![("app", app.clone())],
                    secs,
                );
                m.inc(
                    "shipshape_reconcile_duration_seconds_count",
                    vec![("app", app.clone())],
                    1.0,
                );
            }
            if summary.apps.is_empty() {
                error!(config_commit = %summary.config_commit, "no App documents found");
            }
            Some(summary)
        }
        Err(e) => {
            error!("pass failed: {e}");
            m.inc(
                "shipshape_reconcile_total",
                vec![("app", "*".into()), ("result", "error".into())],
                1.0,
            );
            None
        }
    }
}

/// Run until stopped; returns the exit code.
///
/// # Errors
/// When the API cannot listen or its files cannot be written.
pub async fn run(ctl: Arc<Controller>, opts: Options) -> anyhow::Result<i32> {
    let trigger = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut api_task = None;
    if let Some(listen) = opts.listen {
        let token = api::ensure_token(&ctl.store.dir)?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        api::write_address(&ctl.store.dir, addr)?;
        info!(%addr, "API listening");
        let app = api::router(ApiState {
            ctl: ctl.clone(),
            token: Arc::new(token),
            trigger: trigger.clone(),
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
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut monitored: HashSet<String> = HashSet::new();
    let mut monitors = Vec::new();
    loop {
        let summary = tokio::select! {
            s = pass(&ctl) => s,
            _ = sigterm.recv() => { info!("SIGTERM during a pass; stopping (the next start resumes)"); break; }
            _ = tokio::signal::ctrl_c() => { info!("interrupted during a pass; stopping"); break; }
        };
        if let Some(s) = &summary {
            for app in s.apps.keys() {
                if !app.ends_with(".yaml")
                    && !app.ends_with(".yml")
                    && monitored.insert(app.clone())
                {
                    let m = Monitor::new(ctl.clone(), app, trigger.clone());
                    monitors.push(tokio::spawn(m.run()));
                }
            }
        }
        let again_now = summary.as_ref().is_some_and(PassSummary::superseded);
        if again_now {
            continue;
        }
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

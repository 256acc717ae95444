//! The remote poll: a remote config repo is fetched into its mirror every poll interval, or
//! at once when asked (a webhook); a failed fetch backs off exponentially with jitter,
//! capped, and a success resets it. A new tip wakes a pass; each wait's end is recorded as
//! the source status's `nextTryAt`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::reconcile::Controller;
use crate::retry::Backoff;

/// The first fetch, before the first pass reads what is there (the poller keeps it fresh
/// afterwards); a failure is logged, and the poller retries it with back-off.
pub async fn first_fetch(ctl: &Controller) {
    if let Err(e) = ctl.fetch_source().await {
        warn!("the first fetch of the config repo failed (retrying with back-off): {e}");
    }
}

/// Poll a remote repo: fetch every `poll_interval` (or at once when `fetch_now` fires);
/// on failure back off exponentially with jitter, capped, reset after a success. Runs
/// until its task is aborted.
pub async fn poll_remote(
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
        record_next_try(&ctl, wait);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = fetch_now.notified() => { debug!("fetch requested"); }
        }
    }
}

/// Record in the source status when the next fetch is due (`wait` from now).
fn record_next_try(ctl: &Controller, wait: Duration) {
    let mut source = ctl.store.load_source();
    source.next_try_at =
        Some(crate::state::now() + chrono::TimeDelta::from_std(wait).unwrap_or_default());
    if let Err(e) = ctl.store.save_source(&source) {
        warn!("could not record the next fetch time: {e}");
    }
}

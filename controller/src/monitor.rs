//! Health monitoring between passes: every `health.interval`, one round of the live
//! revision's checks and pm2 facts. It records the results in the app's status, and turns
//! what it sees into facts the next pass acts on:
//! - `failureThreshold` failing rounds in a row after the revision had passed verification
//!   is a **regression** (the pass reverts within `rollback.window`, else reports Degraded);
//! - a revision that was not blamed for failing checks becomes Healthy once they recover.
//!
//! A round is skipped while a pass holds the app (a rollout verifies health itself).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shipshape_spec::status::{HealthRecord, Outcome, Regression};
use tokio::sync::Notify;
use tracing::warn;

use crate::health::Round;
use crate::reconcile::Controller;
use crate::state;

/// One app's monitor.
pub struct Monitor {
    ctl: Arc<Controller>,
    app: String,
    restarts: BTreeMap<u64, u64>,
    trigger: Arc<Notify>,
    /// The live revision's health interval, as the last round read it.
    interval: Option<Duration>,
}

/// What a round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundOutcome {
    /// A pass held the app, or there is nothing live to watch.
    Skipped,
    /// Recorded; nothing for a pass to do.
    Recorded,
    /// A pass should run now (a regression, or a recovery).
    Triggered,
}

impl Monitor {
    /// A monitor for `app` that wakes the reconcile loop through `trigger`.
    pub fn new(ctl: Arc<Controller>, app: &str, trigger: Arc<Notify>) -> Monitor {
        Monitor {
            ctl,
            app: app.to_string(),
            restarts: BTreeMap::new(),
            trigger,
            interval: None,
        }
    }

    /// Watch until the task is dropped.
    pub async fn run(mut self) {
        loop {
            // The interval the last round read with the records, else read now.
            let wait = self
                .interval
                .take()
                .or_else(|| self.interval())
                .unwrap_or(Duration::from_secs(2));
            tokio::time::sleep(wait).await;
            if let RoundOutcome::Triggered = self.round().await {
                self.trigger.notify_one();
            }
        }
    }

    fn interval(&self) -> Option<Duration> {
        let rec = self.ctl.store.load(&self.app).ok()?;
        Some(rec.live()?.document.spec.health.interval.std())
    }

    /// One round.
    pub async fn round(&mut self) -> RoundOutcome {
        let handle = self.ctl.handles.get(&self.app);
        let Ok(_guard) = handle.lock.try_lock() else {
            return RoundOutcome::Skipped;
        };
        let mut rec = match self.ctl.store.load(&self.app) {
            Ok(r) => r,
            Err(e) => {
                warn!(app = %self.app, "monitor cannot read the records: {e}");
                return RoundOutcome::Skipped;
            }
        };
        if rec.regression.is_some() {
            return RoundOutcome::Triggered;
        }
        let Some(live) = rec.live().cloned() else {
            return RoundOutcome::Skipped;
        };
        let doc = &live.document;
        self.interval = Some(doc.spec.health.interval.std());
        let first = self.restarts.is_empty();
        let (round, results, list) = self.ctl.health_round_and_list(doc, &self.restarts).await;
        if let Some(list) = list {
            self.restarts = list.iter().map(|i| (i.pm_id, i.restarts)).collect();
        }
        self.ctl.publish_check_metrics(&self.app, &results);
        let prev = rec
            .health
            .clone()
            .filter(|h| h.revision == live.revision.number);
        let (mut passes, mut failures, mut passing) = prev
            .as_ref()
            .map(|h| (h.consecutive_passes, h.consecutive_failures, h.passing))
            .unwrap_or((0, 0, true));
        // A restart seen on the very first round has no baseline yet: it is not counted;
        // an instance still launching is neither passing nor failing.
        let round = match round {
            Round::Crashed(why) if first => Round::Inconclusive(why),
            Round::Starting(why) => Round::Inconclusive(why),
            other => other,
        };
        let mut outcome = RoundOutcome::Recorded;
        match &round {
            Round::Pass => {
                passes += 1;
                failures = 0;
                passing = true;
            }
            Round::Fail(_) | Round::Crashed(_) => {
                failures += 1;
                passes = 0;
                passing = false;
            }
            Round::Inconclusive(_) | Round::Starting(_) => {}
        }
        tracing::trace!(app = %self.app, ?round, passes, failures, "health round");
        let h = &doc.spec.health;
        if let Round::Fail(why) | Round::Crashed(why) = &round
            && failures == h.failure_threshold
            && live.revision.outcome == Outcome::Healthy
        {
            rec.regression = Some(Regression {
                revision: live.revision.number,
                at: state::now(),
                reason: why.clone(),
            });
            outcome = RoundOutcome::Triggered;
        }
        if round == Round::Pass && passes == h.success_threshold {
            if live.not_blamed
                && let Some(entry) = rec.revision_mut(live.revision.number)
            {
                entry.revision.outcome = Outcome::Healthy;
                entry.revision.finished_at = Some(state::now());
                entry.revision.message = "healthy: the checks recovered".into();
                entry.not_blamed = false;
            }
            if rec.phase == shipshape_spec::status::Phase::Degraded || live.not_blamed {
                outcome = RoundOutcome::Triggered;
            }
        }
        rec.health = Some(HealthRecord {
            checked_at: state::now(),
            revision: live.revision.number,
            passing,
            consecutive_passes: passes,
            consecutive_failures: failures,
            results,
        });
        if let Err(e) = self.ctl.store.save(&rec) {
            warn!(app = %self.app, "monitor cannot write the records: {e}");
        }
        self.ctl.publish_app_metrics(&rec);
        outcome
    }
}

//! Verification: health rounds after a rollout's live steps until the verdict (healthy
//! after `successThreshold` passes in a row; failed at once after `failureThreshold`
//! failing rounds in a row once the processes are up; the progress deadline as the bound),
//! or until a newer desired state or a request cancels the wait. Also one round of checks
//! for the monitor, and "were the checks failing before this rollout?".

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shipshape_spec::App;
use shipshape_spec::status::{CheckResult, Rounds, StepKind};

use super::decide::ErrorClass;
use super::execute::{StepError, pm2_error};
use super::{AppHandle, Controller};
use crate::health::{self, Pm2Fault, Round, Tally, Verdict};
use crate::plan::{Observed, short_sha};
use crate::source::{self, ConfigRepo};
use crate::state::{AppRecord, Store};

/// What can cancel a verification: a newer document for this app, or a request.
pub struct Cancel {
    handle: Arc<AppHandle>,
    generation: u64,
    config: ConfigRepo,
    /// The document's path and text, when a newer one should cancel (following git).
    watched: Option<(String, Option<String>)>,
    /// When signatures are required: where the last trusted commit is recorded. Only a
    /// newer *trusted* document cancels; an untrusted push never does.
    trusted_only: Option<Store>,
    last_check: Option<Instant>,
}

impl Cancel {
    /// A cancel for a pass of the app behind `handle`; `watched` is the document's path and
    /// text when a newer document should cancel the wait.
    pub fn new(
        handle: &Arc<AppHandle>,
        config: &ConfigRepo,
        watched: Option<(String, Option<String>)>,
        trusted_only: Option<Store>,
    ) -> Cancel {
        Cancel {
            handle: handle.clone(),
            generation: handle.generation(),
            config: config.clone(),
            watched,
            trusted_only,
            last_check: None,
        }
    }

    /// Why waiting should stop, if it should.
    pub async fn check(&mut self) -> Option<String> {
        if self.handle.generation() != self.generation {
            return Some("superseded by a request (pin, unpin, retry or reconcile)".into());
        }
        let (file, text) = self.watched.clone()?;
        // A remote repo is fetched at most every 5 s while waiting; a local one is cheap.
        let every = if source::is_remote(&self.config.repo) {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        };
        if self.last_check.is_some_and(|t| t.elapsed() < every) {
            return None;
        }
        self.last_check = Some(Instant::now());
        let config = self.config.clone();
        let trusted = match &self.trusted_only {
            // Signatures required: the newest commit the controller trusted, if any.
            Some(store) => Some(store.load_source().last_trusted?),
            None => None,
        };
        let tip = tokio::task::spawn_blocking(move || match trusted {
            Some(commit) => config.document_at(&commit, &file),
            None => config.document_at_tip(&file),
        })
        .await
        .ok()?
        .ok()?;
        (tip.1 != text).then(|| {
            format!(
                "superseded by config commit {} (a newer desired state)",
                short_sha(&tip.0)
            )
        })
    }
}

impl Controller {
    /// Probe until the verdict, or a cancellation (a newer document, a request). The rounds
    /// counted are written to `rounds` whatever the outcome. Without `fail_fast`, failing
    /// rounds in a row do not end it: only the progress deadline does.
    pub(super) async fn verify(
        &self,
        app: &App,
        cancel: &mut Cancel,
        rounds: &mut Rounds,
        fail_fast: bool,
    ) -> Result<(), StepError> {
        let mut health = app.spec.health.clone();
        if !fail_fast {
            health.failure_threshold = u32::MAX;
        }
        let h = &health;
        let grace = health::startup_grace(app);
        let started = Instant::now();
        let baseline: BTreeMap<u64, u64> = match self.pm2.jlist().await {
            Ok(list) => list.iter().map(|i| (i.pm_id, i.restarts)).collect(),
            Err(e) => return Err(pm2_error(StepKind::Verify, e)),
        };
        let mut tally = Tally::new();
        loop {
            let round_start = Instant::now();
            let starting = started.elapsed() < grace;
            let (round, results) = self.health_round(app, &baseline).await;
            self.publish_check_metrics(&app.metadata.name, &results);
            tally.record(&round, starting);
            *rounds = tally.rounds();
            let fail = |class, message| StepError::new(StepKind::Verify, class, message);
            match tally.verdict(h, started.elapsed()) {
                Verdict::Healthy => return Ok(()),
                Verdict::Failed(m) => return Err(fail(ErrorClass::Stalled, m)),
                Verdict::Inconclusive(m) => return Err(fail(ErrorClass::Inconclusive, m)),
                Verdict::Pending => {
                    if let Some(why) = cancel.check().await {
                        return Err(fail(ErrorClass::Superseded, why));
                    }
                    let left = h.progress_deadline.std().saturating_sub(started.elapsed());
                    let wait = h
                        .interval
                        .std()
                        .saturating_sub(round_start.elapsed())
                        .min(left);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One round of `app`'s checks and pm2 facts (restarts counted against `baseline`).
    pub async fn health_round(
        &self,
        app: &App,
        baseline: &BTreeMap<u64, u64>,
    ) -> (Round, Vec<CheckResult>) {
        let (round, results, _) = self.health_round_and_list(app, baseline).await;
        (round, results)
    }

    /// [`Controller::health_round`], and the process list it read (`None` when pm2 could
    /// not be read), so a caller needs no second read.
    pub async fn health_round_and_list(
        &self,
        app: &App,
        baseline: &BTreeMap<u64, u64>,
    ) -> (Round, Vec<CheckResult>, Option<Vec<crate::pm2::Instance>>) {
        // HTTP and Prometheus checks run and are timed on the probe thread.
        let probed: Vec<_> = app
            .spec
            .health
            .checks
            .iter()
            .filter(|c| c.resources.is_none())
            .cloned()
            .collect();
        let mut results = self.probes.probe(probed).await;
        let (pm2, list) = match self.pm2.jlist().await {
            Ok(list) => {
                // Resource checks read the same process list as the pm2 facts.
                let (checks, procs) = (&app.spec.health.checks, &app.spec.processes);
                results.extend(health::resources_results(checks, procs, &list));
                (
                    health::pm2_facts(procs, &list, baseline, self.cpus),
                    Some(list),
                )
            }
            Err(e) => (Err(Pm2Fault::Down(format!("pm2: {e}"))), None),
        };
        (health::combine(pm2, &results), results, list)
    }

    /// Were the live revision's checks failing just before a rollout? `Some(why)` if so.
    pub(super) async fn failing_before(
        &self,
        rec: &AppRecord,
        observed: &Observed,
    ) -> Option<String> {
        let live = rec.live()?;
        observed.current.as_ref()?;
        if let Some(why) = super::record::live_failing(rec, true) {
            return Some(why);
        }
        let baseline: BTreeMap<u64, u64> = observed
            .processes
            .iter()
            .map(|i| (i.pm_id, i.restarts))
            .collect();
        match self.health_round(&live.document, &baseline).await.0 {
            Round::Fail(why) | Round::Crashed(why) => Some(why),
            _ => None,
        }
    }
}

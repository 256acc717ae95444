//! Verification: health rounds after a rollout's live steps until the verdict (healthy
//! after `successThreshold` passes in a row; failed at once after `failureThreshold`
//! failing rounds in a row once the processes are up; the progress deadline as the bound),
//! or until a newer desired state or a request cancels the wait; and what failed in the
//! last failing round it counted. Also one round of checks for the monitor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shipshape_spec::App;
use shipshape_spec::status::{CheckResult, Rounds, StepKind};

use super::decide::ErrorClass;
use super::execute::{StepError, pm2_error};
use super::pins::PinWatch;
use super::{AppHandle, Controller};
use crate::health::{self, Pm2Fault, Round, Tally, Verdict};
use crate::plan::short_sha;
use crate::source::{self, ConfigRepo};
use crate::state::Store;

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
    /// The pass's pin checks, before live steps (see [`super::pins`]).
    pub pins: Option<PinWatch>,
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
            pins: None,
        }
    }

    /// The app's handle.
    pub fn handle(&self) -> &Arc<AppHandle> {
        &self.handle
    }

    /// Also stop before live steps when a request changes the pin (see [`super::pins`]).
    pub fn with_pins(mut self, pins: PinWatch) -> Cancel {
        self.pins = Some(pins);
        self
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
    /// counted are written to `rounds` whatever the outcome, and the names of what failed in
    /// the last counted failing round (checks; `pm2` for the pm2 facts) to `failed`.
    /// Without `fail_fast`, failing rounds in a row do not end it: only the progress
    /// deadline does.
    pub(super) async fn verify(
        &self,
        app: &App,
        cancel: &mut Cancel,
        rounds: &mut Rounds,
        failed: &mut Vec<String>,
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
            let failed_before = tally.failed_rounds;
            tally.record(&round, starting);
            *rounds = tally.rounds();
            if tally.failed_rounds > failed_before {
                *failed = failing_names(&round, &results);
            }
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
        let (round, results, _) = self.health_round_and_list(app, baseline, &[]).await;
        (round, results)
    }

    /// [`Controller::health_round`], and the process list it read (`None` when pm2 could
    /// not be read), so a caller needs no second read. The checks named in `ignore` (the
    /// suspect checks of a health-only change) are probed and returned, but left out of
    /// the round.
    pub async fn health_round_and_list(
        &self,
        app: &App,
        baseline: &BTreeMap<u64, u64>,
        ignore: &[String],
    ) -> (Round, Vec<CheckResult>, Option<Vec<crate::pm2::Instance>>) {
        // HTTP and Prometheus checks run and are timed on the probe thread.
        let probed: Vec<_> = app
            .spec
            .health
            .checks
            .iter()
            .filter(|c| c.resources().is_none())
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
        let counted: Vec<CheckResult> = results
            .iter()
            .filter(|r| !ignore.contains(&r.name))
            .cloned()
            .collect();
        (health::combine(pm2, &counted), results, list)
    }
}

/// What failed in a failing round: the checks that failed, and `pm2` when the pm2 facts did
/// (a restart, or pm2 down or a process missing, beside failed checks or not).
pub(super) fn failing_names(round: &Round, results: &[CheckResult]) -> Vec<String> {
    let failed = |r: &&CheckResult| r.state == shipshape_spec::status::ProbeState::Fail;
    let mut names: Vec<String> = results
        .iter()
        .filter(failed)
        .map(|r| r.name.clone())
        .collect();
    // `health::combine` reads the pm2 facts first: a failing round whose reason is not its
    // first failed check's is pm2's.
    let pm2 = match round {
        Round::Crashed(_) => true,
        Round::Fail(why) => results
            .iter()
            .find(failed)
            .is_none_or(|f| format!("{}: {}", f.name, f.detail) != *why),
        _ => false,
    };
    if pm2 || names.is_empty() {
        names.push("pm2".into());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipshape_spec::status::ProbeState;

    /// (the round, the checks' results) → what failed: `pm2` whenever the pm2 facts did,
    /// beside failed checks or not.
    #[test]
    fn a_round_failed_by_pm2_names_pm2_even_when_checks_failed_too() {
        let result = |name: &str, state| CheckResult {
            name: name.into(),
            state,
            detail: "status 500".into(),
            latency_ms: 1,
        };
        let api_fails = vec![
            result("api", ProbeState::Fail),
            result("home", ProbeState::Pass),
        ];
        let passing = vec![result("api", ProbeState::Pass)];
        #[rustfmt::skip]
        let rows: Vec<(&str, Round, Vec<CheckResult>, Vec<&str>)> = vec![
            ("a check failed", Round::Fail("api: status 500".into()), api_fails.clone(), vec!["api"]),
            ("pm2 down, a check failed too", Round::Fail("pm2: web: 1 of 2 online".into()), api_fails.clone(), vec!["api", "pm2"]),
            ("pm2 down, checks pass", Round::Fail("pm2: web: 1 of 2 online".into()), passing.clone(), vec!["pm2"]),
            ("a restart, a check failed too", Round::Crashed("pm2: web restarted".into()), api_fails, vec!["api", "pm2"]),
            ("a restart, checks pass", Round::Crashed("pm2: web restarted".into()), passing, vec!["pm2"]),
        ];
        for (what, round, results, want) in rows {
            assert_eq!(failing_names(&round, &results), want, "{what}");
        }
    }
}

//! Verification: health rounds after a rollout's live steps until the verdict (healthy
//! after `successThreshold` passes in a row; failed at once after `failureThreshold`
//! failing rounds in a row once the processes are up; the progress deadline as the bound),
//! or until a newer desired state or a request cancels the wait; and what failed in the
//! last failing round it counted. Also one round of checks for the monitor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shipshape_spec::App;
use shipshape_spec::status::{CheckResult, Rounds, StepKind};

use super::{StepError, pm2_error};
use crate::health::{self, Failure, Pm2Fault, Round, Tally, Verdict, words};
use crate::plan::short_sha;
use crate::pm2::logs::{self, Marks, Watch};
use crate::ports::{Clock, Pm2Port, Ports, Probes, Source};
use crate::reconcile::decide::ErrorClass;
use crate::reconcile::pins::PinWatch;
use crate::reconcile::{AppHandle, Controller};
use crate::runtime::metrics::Metrics;

/// What can cancel a verification: a newer document for this app, or a request.
pub struct Cancel {
    handle: Arc<AppHandle>,
    generation: u64,
    source: Arc<dyn Source>,
    clock: Arc<dyn Clock>,
    /// The document's path and text, when a newer one should cancel (following git). Only
    /// a newer *trusted* document cancels when signatures are required
    /// ([`Source::latest_document`]); an untrusted push never does.
    watched: Option<(String, Option<String>)>,
    /// When the source was last asked (the clock's time).
    last_check: Option<Duration>,
    /// The pass's pin checks, before live steps (see [`crate::reconcile::pins`]).
    pub pins: Option<PinWatch>,
}

impl Cancel {
    /// A cancel for a pass of the app behind `handle`; `watched` is the document's path and
    /// text when a newer document should cancel the wait.
    pub fn new(
        handle: &Arc<AppHandle>,
        ports: &Ports,
        watched: Option<(String, Option<String>)>,
    ) -> Cancel {
        Cancel {
            handle: handle.clone(),
            generation: handle.generation(),
            source: ports.source.clone(),
            clock: ports.clock.clone(),
            watched,
            last_check: None,
            pins: None,
        }
    }

    /// The app's handle.
    pub fn handle(&self) -> &Arc<AppHandle> {
        &self.handle
    }

    /// Also stop before live steps when a request changes the pin (see
    /// [`crate::reconcile::pins`]).
    pub fn with_pins(mut self, pins: PinWatch) -> Cancel {
        self.pins = Some(pins);
        self
    }

    /// Why waiting should stop, if it should.
    pub async fn check(&mut self) -> Option<String> {
        if self.handle.generation() != self.generation {
            return Some("superseded by a request (pin, unpin, retry or reconcile)".into());
        }
        let (file, text) = self.watched.as_ref()?;
        // A remote repo is fetched at most every 5 s while waiting; a local one is cheap.
        let every = if self.source.is_remote() {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        };
        let now = self.clock.elapsed();
        if self
            .last_check
            .is_some_and(|t| now.saturating_sub(t) < every)
        {
            return None;
        }
        self.last_check = Some(now);
        let (commit, latest) = self.source.latest_document(file).await?;
        (&latest != text).then(|| {
            format!(
                "superseded by config commit {} (a newer desired state)",
                short_sha(&commit)
            )
        })
    }
}

/// What a round of health reads: pm2's list, the probes, the CPUs (for CPU limits).
#[derive(Clone, Copy)]
pub struct Health<'a> {
    /// pm2.
    pub pm2: &'a dyn Pm2Port,
    /// The HTTP and Prometheus checks.
    pub probes: &'a dyn Probes,
    /// CPUs.
    pub cpus: u32,
}

impl Health<'_> {
    /// One round of `app`'s checks and pm2 facts (restarts counted against `baseline`),
    /// and the process list it read (`None` when pm2 could not be read), so a caller needs
    /// no second read. The checks named in `ignore` (the suspect checks of a health-only
    /// change) are probed and returned, but left out of the round.
    pub async fn round(
        &self,
        app: &App,
        baseline: &BTreeMap<u64, u64>,
        ignore: &[String],
    ) -> (Round, Vec<CheckResult>, Option<Vec<crate::pm2::Instance>>) {
        // Traffic through nginx: the live slot's processes are the ones judged.
        let app = &*crate::traffic::judged(app);
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

/// A verification: the health it reads, the clock it waits on, where it publishes.
pub struct Verifying<'a> {
    /// What a round reads.
    pub health: Health<'a>,
    /// Deadlines and intervals.
    pub clock: &'a dyn Clock,
    /// The checks' gauges.
    pub metrics: &'a Metrics,
    /// Fail as soon as `failureThreshold` rounds in a row fail; without it, only the
    /// progress deadline ends it.
    pub fail_fast: bool,
    /// What the processes being verified wrote since they started (their log files' marks,
    /// pm2's bus): a failure tells it (`None`: from when the verification starts).
    pub output: Option<&'a Watch>,
}

impl Verifying<'_> {
    /// Probe until the verdict, or a cancellation (a newer document, a request). The rounds
    /// counted are written to `rounds` whatever the outcome, and the names of what failed in
    /// the last counted failing round (checks; `pm2` for the pm2 facts) to `failed`.
    ///
    /// # Errors
    /// The verdict failed (stalled) or inconclusive, a cancellation (superseded), or pm2
    /// unreadable before the first round (transient).
    pub async fn run(
        &self,
        app: &App,
        cancel: &mut Cancel,
        rounds: &mut Rounds,
        failed: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let mut health = app.spec.health.clone();
        if !self.fail_fast {
            health.failure_threshold = u32::MAX;
        }
        let h = &health;
        let grace = health::startup_grace(app);
        let clock = self.clock;
        let started = clock.elapsed();
        let since = |t: Duration| clock.elapsed().saturating_sub(t);
        let first = match self.health.pm2.jlist().await {
            Ok(list) => list,
            Err(e) => return Err(pm2_error(StepKind::Verify, e)),
        };
        let baseline: BTreeMap<u64, u64> = first.iter().map(|i| (i.pm_id, i.restarts)).collect();
        // Not watched since the processes started: the app's words from now on.
        let own;
        let output = match self.output {
            Some(w) => w,
            None => {
                own = Watch {
                    marks: mark_logs(self.health.pm2, &first, app),
                    bus: open_bus(self.health.pm2, app).await,
                };
                &own
            }
        };
        let mut tally = Tally::new();
        // The last round that did not pass, and the process list it read.
        let mut last_bad: Option<BadRound> = None;
        loop {
            let round_start = clock.elapsed();
            let starting = since(started) < grace;
            let (round, results, list) = self.health.round(app, &baseline, &[]).await;
            publish_check_metrics(self.metrics, &app.metadata.name, &results);
            let failed_before = tally.failed_rounds;
            tally.record(&round, starting);
            *rounds = tally.rounds();
            if tally.failed_rounds > failed_before {
                *failed = failing_names(&round, &results);
            }
            if !matches!(round, Round::Pass | Round::Inconclusive(_)) {
                last_bad = Some((round, results, list));
            }
            let fail = |class, message| StepError::new(StepKind::Verify, class, message);
            match tally.verdict(h, since(started)) {
                Verdict::Healthy => return Ok(()),
                Verdict::Failed(f) => {
                    let told = Told {
                        app,
                        baseline: &baseline,
                        output,
                        ever_passed: tally.passed_rounds > 0,
                    };
                    let (message, tail) = told.failure(f, last_bad.as_ref());
                    let mut e = fail(ErrorClass::Stalled, message);
                    e.tail = tail;
                    return Err(e);
                }
                Verdict::Inconclusive(m) => return Err(fail(ErrorClass::Inconclusive, m)),
                Verdict::Pending => {
                    if let Some(why) = cancel.check().await {
                        return Err(fail(ErrorClass::Superseded, why));
                    }
                    let left = h.progress_deadline.std().saturating_sub(since(started));
                    let wait = h
                        .interval
                        .std()
                        .saturating_sub(since(round_start))
                        .min(left);
                    clock.sleep(wait).await;
                }
            }
        }
    }
}

/// A round that did not pass, its checks' results, and the process list it read.
type BadRound = (Round, Vec<CheckResult>, Option<Vec<crate::pm2::Instance>>);

/// Where pm2's log files stand now, for `app`'s processes (`list`: pm2's processes now).
pub(crate) fn mark_logs(pm2: &dyn Pm2Port, list: &[crate::pm2::Instance], app: &App) -> Marks {
    let declared: Vec<&str> = app
        .spec
        .processes
        .iter()
        .flat_map(|p| [p.out_file.as_deref(), p.error_file.as_deref()])
        .flatten()
        .collect();
    Marks::take(logs::dirs_to_mark(pm2.log_dir(), list, &declared))
}

/// Listen to pm2's bus for what `app`'s processes write (under their own names, a slot's
/// `NAME@PORT` and a replace's temporary name); `None` when pm2's daemon is not up.
pub(crate) async fn open_bus(pm2: &dyn Pm2Port, app: &App) -> Option<crate::pm2::bus::Tap> {
    let path = pm2.bus_path()?;
    let declared: Vec<String> = app.spec.processes.iter().map(|p| p.name.clone()).collect();
    let ours = move |name: &str| {
        declared.iter().any(|d| {
            name.strip_prefix(d.as_str()).is_some_and(|rest| {
                rest.is_empty()
                    || rest.starts_with(crate::traffic::SLOT_SEPARATOR)
                    || rest == crate::plan::replace::NEXT_SUFFIX
            })
        })
    };
    crate::pm2::bus::Tap::open(&path, Box::new(ours)).await
}

/// What a failed verification tells: the headline from pm2's facts and the app's own output
/// since its processes started, and that output's tail.
struct Told<'a> {
    app: &'a App,
    baseline: &'a BTreeMap<u64, u64>,
    output: &'a Watch,
    ever_passed: bool,
}

impl Told<'_> {
    /// The message (`what happened, rule`) and the app's output tail for `failure`, given
    /// the last round that did not pass (`last_bad`, with the process list it read).
    fn failure(&self, failure: Failure, last_bad: Option<&BadRound>) -> (String, Option<String>) {
        let judged = crate::traffic::judged(self.app);
        let names: Vec<&str> = judged
            .spec
            .processes
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let Some((round, results, Some(list))) = last_bad else {
            return (failure.to_string(), None);
        };
        let said = self.output.said(&names, list);
        let pm2_failed = failing_names(round, results).iter().any(|n| n == "pm2");
        let down = pm2_failed
            .then(|| words::down(&names, list, self.baseline))
            .flatten();
        let who = down.as_ref().map(|d| d.who());
        let tail = logs::tail(&said, who);
        let what = words::headline(down.as_ref(), &said, self.ever_passed).or_else(|| {
            if self.ever_passed {
                return None;
            }
            words::never_listened(&names, &said, &failure.what)
        });
        let failure = Failure {
            what: what.unwrap_or(failure.what),
            rule: failure.rule,
        };
        (failure.to_string(), tail)
    }
}

/// Set the checks' gauges (`shipshape_health_check_up`, `…_latency_seconds`) from a round.
pub fn publish_check_metrics(m: &Metrics, app: &str, results: &[CheckResult]) {
    use shipshape_spec::status::ProbeState;
    for r in results {
        let labels = vec![("app", app.to_string()), ("check", r.name.clone())];
        match r.state {
            ProbeState::Pass => m.set("shipshape_health_check_up", labels.clone(), 1.0),
            ProbeState::Fail => m.set("shipshape_health_check_up", labels.clone(), 0.0),
            ProbeState::Inconclusive => {}
        }
        m.set(
            "shipshape_health_check_latency_seconds",
            labels,
            r.latency_ms as f64 / 1000.0,
        );
    }
}

impl Controller {
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
    /// not be read); the checks named in `ignore` are probed but left out of the round
    /// (see [`Health::round`]).
    pub async fn health_round_and_list(
        &self,
        app: &App,
        baseline: &BTreeMap<u64, u64>,
        ignore: &[String],
    ) -> (Round, Vec<CheckResult>, Option<Vec<crate::pm2::Instance>>) {
        let health = Health {
            pm2: &*self.ports.pm2,
            probes: &*self.ports.probes,
            cpus: self.cpus,
        };
        health.round(app, baseline, ignore).await
    }
}

/// What failed in a failing round: the checks that failed, and `pm2` when the pm2 facts did
/// (a restart, or pm2 down or a process missing, beside failed checks or not).
pub(crate) fn failing_names(round: &Round, results: &[CheckResult]) -> Vec<String> {
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

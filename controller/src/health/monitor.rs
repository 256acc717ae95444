//! Health monitoring between passes: every `health.interval`, one round of the live
//! revision's checks and pm2 facts. It records the results in the app's status, and turns
//! what it sees into facts the next pass acts on:
//! - `failureThreshold` failing rounds in a row after the revision had passed verification
//!   is a **regression** (the pass reverts within `rollback.window`, else reports Degraded);
//! - a revision that was not blamed for failing checks becomes Healthy once they recover;
//! - its streak of failing rounds is the evidence a later rollout is judged by
//!   ([`crate::reconcile::record::live_failing`]), so it counts only rounds after the
//!   revision's own last change settled: after every pass whose steps changed live state
//!   (a switch, a migration, a pm2 process step, a hook: [`changes_live`]; not a pass that
//!   failed at fetch, install or build) or a new live revision the streak starts again with
//!   a new restart baseline (a reload's restarts are not a crash), and failing rounds within
//!   the startup grace are not counted ([`count`]);
//! - the suspect checks of a health-only change ([`crate::state::RevisionEntry::suspect_checks`])
//!   are probed and shown but left out of the streak; once they pass they are cleared.
//!
//! A round is skipped while a pass holds the app (a rollout verifies health itself).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shipshape_spec::status::{
    CheckResult, HealthRecord, Outcome, Phase, ProbeState, Regression, StepKind, StepRecord,
    Timestamp,
};
use tokio::sync::Notify;
use tracing::warn;

use crate::health::{Round, Tally};
use crate::reconcile::Controller;
use crate::reconcile::record::{self, Fact};
use crate::state::{self, AppRecord, RevisionEntry};

/// One app's monitor.
pub struct Monitor {
    ctl: Arc<Controller>,
    app: String,
    restarts: BTreeMap<u64, u64>,
    trigger: Arc<Notify>,
    /// The live revision's health interval, as the last round read it.
    interval: Option<Duration>,
    /// What the restart baseline and the streak are counted since: the live revision and
    /// the steps that changed live state so far ([`changes_live`]).
    since: Option<(u64, u64)>,
    /// When the monitor saw that change, for the startup grace.
    changed_at: Option<Instant>,
}

/// The monitor's streak of rounds for the live revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Streak {
    /// Passing rounds in a row.
    pub passes: u32,
    /// Failing rounds in a row (none: the last conclusive round passed, or there was none).
    pub failures: u32,
    /// When the first of the failing rounds in a row ran.
    pub failing_since: Option<Timestamp>,
}

/// Where a round stands against the live revision's last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    /// The restart baseline was taken after the last change (else a restart seen is the
    /// change's own reload, not a crash).
    pub baseline: bool,
    /// Within the startup grace after the last change (a failing round is the processes
    /// still settling).
    pub settling: bool,
}

/// Count `round` (taken at `now`) into `prev`: returns the new streak and the round as
/// counted. A restart without a baseline, an instance still launching, and a failing round
/// while settling are inconclusive: no streak changes.
pub fn count(prev: &Streak, round: Round, since: Since, now: &Timestamp) -> (Streak, Round) {
    let round = match round {
        Round::Crashed(why) if !since.baseline => {
            Round::Inconclusive(format!("no restart baseline yet: {why}"))
        }
        Round::Starting(why) => Round::Inconclusive(why),
        Round::Fail(why) if since.settling => Round::Inconclusive(format!("settling: {why}")),
        other => other,
    };
    // The shared tally counts the streak (as a rollout's verification does); the rounds
    // still starting are already inconclusive here, so none is pending.
    let mut tally = Tally {
        passes: prev.passes,
        failures: prev.failures,
        ..Tally::new()
    };
    tally.record(&round, false);
    let failing_since = match &round {
        Round::Pass => None,
        Round::Fail(_) | Round::Crashed(_) => match (&prev.failing_since, prev.failures) {
            (Some(t), 1..) => Some(*t),
            _ => Some(*now),
        },
        Round::Inconclusive(_) | Round::Starting(_) => prev.failing_since,
    };
    let next = Streak {
        passes: tally.passes,
        failures: tally.failures,
        failing_since,
    };
    (next, round)
}

/// How many of a pass's steps changed live state (ran, successfully or not): a switch, a
/// migration or restore, a pm2 process step, a hook. Preparing a release (fetch, install,
/// build, seal), a backup, `pm2 save`, writing the ecosystem file and verifying leave the
/// live processes as they were.
pub fn changes_live(steps: &[StepRecord]) -> u64 {
    let live = |k: StepKind| {
        matches!(
            k,
            StepKind::Migrate
                | StepKind::Restore
                | StepKind::Switch
                | StepKind::TrafficSwitch
                | StepKind::Pm2Start
                | StepKind::Pm2Reload
                | StepKind::Pm2Replace
                | StepKind::Pm2Delete
                | StepKind::Hook
        )
    };
    steps.iter().filter(|s| live(s.step)).count() as u64
}

/// True when the suspect checks `suspects` passed in `results` (or are no longer probed):
/// their suspicion ends.
pub fn suspects_recovered(suspects: &[String], results: &[CheckResult]) -> bool {
    results
        .iter()
        .filter(|r| suspects.contains(&r.name))
        .all(|r| r.state == ProbeState::Pass)
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
            since: None,
            changed_at: None,
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
        let (since, changed) = self.since(&live, rec.live_changes);
        let suspects = &live.suspect_checks;
        let (round, results, list) = self
            .ctl
            .health_round_and_list(doc, &self.restarts, suspects)
            .await;
        if let Some(list) = list {
            self.restarts = list.iter().map(|i| (i.pm_id, i.restarts)).collect();
        }
        self.ctl.publish_check_metrics(&self.app, &results);
        let prev = rec
            .health
            .clone()
            .filter(|h| h.revision == live.revision.number && !changed)
            .map(|h| Streak {
                passes: h.consecutive_passes,
                failures: h.consecutive_failures,
                failing_since: h.failing_since,
            })
            .unwrap_or_default();
        let now = state::now();
        let (streak, round) = count(&prev, round, since, &now);
        tracing::trace!(app = %self.app, ?round, passes = streak.passes, failures = streak.failures, "health round");
        let (outcome, facts) = judge(&rec, &live, (&round, &streak, &now), &results);
        for fact in facts {
            let effects = record::apply(&mut rec, fact);
            self.ctl.publish_effects(&rec, effects);
        }
        rec.health = Some(HealthRecord {
            checked_at: now,
            revision: live.revision.number,
            passing: streak.failures == 0,
            consecutive_passes: streak.passes,
            consecutive_failures: streak.failures,
            failing_since: streak.failing_since,
            results,
        });
        if let Err(e) = self.ctl.store.save(&rec) {
            warn!(app = %self.app, "monitor cannot write the records: {e}");
        }
        self.ctl.publish_app_metrics(&rec);
        outcome
    }

    /// Where this round stands against the live revision's last change, and whether that
    /// changed since the last round. A pass that changed live state (a rollout, a repair,
    /// a revert) or a new live revision: a new restart baseline, and a new streak, counted
    /// once the change settled. A pass that failed before touching live (fetch, build)
    /// changes nothing.
    fn since(&mut self, live: &RevisionEntry, live_changes: u64) -> (Since, bool) {
        let key = (live.revision.number, live_changes);
        let changed = self.since.is_some_and(|k| k != key);
        if changed {
            self.restarts.clear();
            self.changed_at = Some(Instant::now());
        }
        self.since = Some(key);
        let since = Since {
            baseline: !self.restarts.is_empty(),
            settling: self
                .changed_at
                .is_some_and(|t| t.elapsed() < crate::health::startup_grace(&live.document)),
        };
        (since, changed)
    }
}

/// What a counted round (the round, the streak after it, when it ran) means for the live
/// revision `live` of `rec`, pure: whether a pass should run, and what to record
/// ([`record::apply`]): `failureThreshold` failing rounds
/// in a row of a Healthy revision are a regression; `successThreshold` passing rounds in a
/// row make a revision left live without blame Healthy; suspect checks that pass are
/// cleared.
pub fn judge<'a>(
    rec: &AppRecord,
    live: &RevisionEntry,
    (round, streak, now): (&Round, &Streak, &Timestamp),
    results: &[CheckResult],
) -> (RoundOutcome, Vec<Fact<'a>>) {
    let h = &live.document.spec.health;
    let revision = live.revision.number;
    let mut outcome = RoundOutcome::Recorded;
    let mut facts = Vec::new();
    if let Round::Fail(why) | Round::Crashed(why) = round
        && streak.failures == h.failure_threshold
        && live.revision.outcome == Outcome::Healthy
    {
        facts.push(Fact::Regressed(Regression {
            revision,
            at: *now,
            reason: why.clone(),
        }));
        outcome = RoundOutcome::Triggered;
    }
    if *round == Round::Pass && streak.passes == h.success_threshold {
        if live.not_blamed {
            facts.push(Fact::Recovered { revision });
        }
        if rec.phase == Phase::Degraded || live.not_blamed {
            outcome = RoundOutcome::Triggered;
        }
    }
    if !live.suspect_checks.is_empty() && suspects_recovered(&live.suspect_checks, results) {
        facts.push(Fact::SuspectsCleared { revision });
        outcome = RoundOutcome::Triggered;
    }
    (outcome, facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which rounds count towards the evidence: (the streak before, the round, baseline
    /// taken after the last change, settling) → (passes, failures, failing since).
    #[test]
    fn only_rounds_after_the_last_change_settled_count_and_a_reload_is_not_a_crash() {
        let fail = || Round::Fail("api: status 503".into());
        let crash = || Round::Crashed("pm2: web restarted".into());
        let settled = Since {
            baseline: true,
            settling: false,
        };
        let no_baseline = Since {
            baseline: false,
            settling: false,
        };
        let settling = Since {
            baseline: true,
            settling: true,
        };
        // Round times: `t(n)` is n seconds after a fixed start.
        let t = |n: i64| Timestamp::UNIX_EPOCH + chrono::TimeDelta::seconds(n);
        let streak = |passes, failures, since: Option<i64>| Streak {
            passes,
            failures,
            failing_since: since.map(t),
        };
        #[rustfmt::skip]
        let rows: Vec<(&str, Streak, Round, Since, Streak)> = vec![
            ("a pass counts", streak(1, 0, None), Round::Pass, settled, streak(2, 0, None)),
            ("a failing round starts a streak", streak(5, 0, None), fail(), settled, streak(0, 1, Some(2))),
            ("and keeps its start", streak(0, 1, Some(1)), fail(), settled, streak(0, 2, Some(1))),
            ("a pass ends it", streak(0, 2, Some(1)), Round::Pass, settled, streak(1, 0, None)),
            ("a crash counts once there is a baseline", streak(3, 0, None), crash(), settled, streak(0, 1, Some(2))),
            // The previous reload's restarts, seen without a baseline: not a crash.
            ("a restart without a baseline does not", streak(3, 0, None), crash(), no_baseline, streak(3, 0, None)),
            // Right after a change, failing rounds are the processes settling.
            ("a failure while settling does not", streak(0, 0, None), fail(), settling, streak(0, 0, None)),
            ("a crash while settling does", streak(0, 0, None), crash(), settling, streak(0, 1, Some(2))),
            ("launching is not failing", streak(0, 1, Some(1)), Round::Starting("launching".into()), settled, streak(0, 1, Some(1))),
            ("inconclusive changes nothing", streak(0, 1, Some(1)), Round::Inconclusive("no data".into()), settled, streak(0, 1, Some(1))),
        ];
        for (what, prev, round, since, want) in rows {
            let (got, _) = count(&prev, round, since, &t(2));
            assert_eq!(got, want, "{what}");
        }
        // A flaky release (every 4th round fails) never gets past one failing round.
        let mut s = Streak::default();
        let mut worst = 0;
        for i in 1..=40 {
            let round = if i % 4 == 0 { fail() } else { Round::Pass };
            s = count(&s, round, settled, &t(i)).0;
            worst = worst.max(s.failures);
        }
        assert_eq!(worst, 1);
    }

    /// What a counted round means, row by row: (the live revision's outcome, left live
    /// without blame, the app's phase, the round, the streak after it, suspect checks and
    /// whether they passed) → (what the round does, the facts recorded). The live revision
    /// has `failureThreshold` 3 and `successThreshold` 2.
    #[test]
    fn a_round_triggers_a_pass_only_on_a_regression_a_recovery_or_cleared_suspects() {
        use crate::reconcile::fixtures::{entry, record};
        use shipshape_spec::status::Phase;
        let fail = || Round::Fail("api: status 500".into());
        let streak = |passes, failures| Streak {
            passes,
            failures,
            failing_since: None,
        };
        let result = |state| CheckResult {
            name: "api".into(),
            state,
            detail: String::new(),
            latency_ms: 1,
        };
        type Row = (
            &'static str,
            Outcome,
            bool,
            Phase,
            Round,
            Streak,
            bool,
            RoundOutcome,
            Vec<&'static str>,
        );
        use RoundOutcome::{Recorded, Triggered};
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("a pass that keeps it healthy", Outcome::Healthy, false, Phase::Ready, Round::Pass, streak(5, 0), false, Recorded, vec![]),
            ("two failing rounds: not yet", Outcome::Healthy, false, Phase::Ready, fail(), streak(0, 2), false, Recorded, vec![]),
            ("the third: a regression", Outcome::Healthy, false, Phase::Ready, fail(), streak(0, 3), false, Triggered, vec!["regressed"]),
            ("a crash counts as failing", Outcome::Healthy, false, Phase::Ready, Round::Crashed("restarted".into()), streak(0, 3), false, Triggered, vec!["regressed"]),
            ("the fourth: already reported", Outcome::Healthy, false, Phase::Ready, fail(), streak(0, 4), false, Recorded, vec![]),
            ("a revision never healthy does not regress", Outcome::Failed, true, Phase::Degraded, fail(), streak(0, 3), false, Recorded, vec![]),
            ("not blamed, passing again: Healthy", Outcome::Failed, true, Phase::Degraded, Round::Pass, streak(2, 0), false, Triggered, vec!["recovered"]),
            ("not blamed, one pass: not yet", Outcome::Failed, true, Phase::Degraded, Round::Pass, streak(1, 0), false, Recorded, vec![]),
            ("degraded and passing: a pass says so", Outcome::Healthy, false, Phase::Degraded, Round::Pass, streak(2, 0), false, Triggered, vec![]),
            ("suspect checks that pass are cleared", Outcome::Healthy, false, Phase::Degraded, Round::Pass, streak(1, 0), true, Triggered, vec!["cleared"]),
        ];
        for (what, outcome, not_blamed, phase, round, after, suspects_pass, want, want_facts) in
            rows
        {
            let mut rec = record();
            rec.revisions = vec![entry(1, outcome)];
            rec.revisions[0].not_blamed = not_blamed;
            rec.revisions[0].document.spec.health.failure_threshold = 3;
            rec.revisions[0].document.spec.health.success_threshold = 2;
            if suspects_pass {
                rec.revisions[0].suspect_checks = vec!["api".into()];
            }
            rec.live_revision = Some(1);
            rec.phase = phase;
            let live = rec.revisions[0].clone();
            let results = vec![result(ProbeState::Pass)];
            let (got, facts) = judge(
                &rec,
                &live,
                (&round, &after, &Timestamp::UNIX_EPOCH),
                &results,
            );
            assert_eq!(got, want, "{what}");
            let names: Vec<&str> = facts
                .iter()
                .map(|f| match f {
                    Fact::Regressed(_) => "regressed",
                    Fact::Recovered { .. } => "recovered",
                    Fact::SuspectsCleared { .. } => "cleared",
                    _ => "other",
                })
                .collect();
            assert_eq!(names, want_facts, "{what}");
        }
    }

    /// Which passes move the monitor's baseline: (a pass's steps) → steps that changed
    /// live state. A pass that failed at fetch, install or build touched nothing live.
    #[test]
    fn only_steps_that_change_live_state_start_a_new_streak() {
        use shipshape_spec::status::StepResult;
        let steps = |kinds: &[(StepKind, StepResult)]| -> Vec<StepRecord> {
            kinds
                .iter()
                .map(|&(step, result)| StepRecord {
                    step,
                    target: String::new(),
                    reason: String::new(),
                    started_at: shipshape_spec::Timestamp::UNIX_EPOCH,
                    duration_ms: 0,
                    result,
                    output_tail: None,
                })
                .collect()
        };
        use StepKind as K;
        use StepResult::{Failed as F, Succeeded as S};
        type Pass = Vec<(StepKind, StepResult)>;
        #[rustfmt::skip]
        let rows: Vec<(&str, Pass, u64)> = vec![
            ("a build that failed", vec![(K::Fetch, S), (K::Install, S), (K::Build, F)], 0),
            ("a fetch that failed", vec![(K::Fetch, F)], 0),
            ("a release prepared and backed up", vec![(K::Fetch, S), (K::Build, S), (K::Seal, S), (K::Backup, S)], 0),
            ("a re-verification only", vec![(K::Verify, F)], 0),
            ("pm2 save and the ecosystem file", vec![(K::Pm2Apply, S), (K::Pm2Save, S)], 0),
            ("a rollout", vec![(K::Build, S), (K::Switch, S), (K::Pm2Reload, S), (K::Verify, S)], 2),
            ("a failed reload still touched processes", vec![(K::Switch, S), (K::Pm2Reload, F)], 2),
            ("a repair", vec![(K::Pm2Start, S)], 1),
            ("a migration and a hook", vec![(K::Migrate, S), (K::Hook, S)], 2),
            ("a revert", vec![(K::Restore, S), (K::Switch, S), (K::Pm2Replace, S), (K::Pm2Delete, S)], 4),
        ];
        for (what, kinds, want) in rows {
            assert_eq!(changes_live(&steps(&kinds)), want, "{what}");
        }
    }

    /// (the suspect checks, this round's results) → their suspicion ends?
    #[test]
    fn a_suspect_check_is_cleared_only_once_it_passes() {
        let result = |name: &str, state| CheckResult {
            name: name.into(),
            state,
            detail: String::new(),
            latency_ms: 1,
        };
        let api = vec!["api".to_string()];
        #[rustfmt::skip]
        let rows: Vec<(&str, Vec<CheckResult>, bool)> = vec![
            ("it still fails", vec![result("api", ProbeState::Fail), result("home", ProbeState::Pass)], false),
            ("it did not conclude", vec![result("api", ProbeState::Inconclusive)], false),
            ("it passes, another fails", vec![result("api", ProbeState::Pass), result("home", ProbeState::Fail)], true),
            ("it is no longer probed", vec![result("home", ProbeState::Pass)], true),
        ];
        for (what, results, want) in rows {
            assert_eq!(suspects_recovered(&api, &results), want, "{what}");
        }
    }
}

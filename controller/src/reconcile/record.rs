//! The bookkeeping of a pass, written in one place: a revision's outcome (with when and
//! why), quarantines, and the kstatus-style conditions of each phase. Pure functions over
//! the record; the caller saves it.

use shipshape_spec::status::{
    ConditionStatus, LastError, Outcome, Phase, ProbeState, Rounds, StepKind, Timestamp,
    condition_reasons as cr, condition_types as ct,
};

use crate::state::{self, AppRecord, Quarantine};

/// Record revision `number`'s outcome: the outcome, when it was reached, why, and the
/// rounds its verification counted (when it verified). Nothing happens for a revision
/// that left the history.
pub fn conclude(
    rec: &mut AppRecord,
    number: u64,
    outcome: Outcome,
    message: &str,
    rounds: Option<Rounds>,
) {
    if let Some(entry) = rec.revision_mut(number) {
        entry.revision.outcome = outcome;
        entry.revision.finished_at = Some(state::now());
        entry.revision.message = message.to_string();
        if let Some(r) = rounds {
            entry.revision.rounds = r;
        }
        entry.not_blamed = false;
    }
}

/// Record revision `number` as failed but not blamed: it stays live, is neither reverted
/// nor quarantined, and becomes Healthy when its checks pass.
pub fn not_blamed(rec: &mut AppRecord, number: u64, message: &str, rounds: Option<Rounds>) {
    conclude(rec, number, Outcome::Failed, message, rounds);
    if let Some(entry) = rec.revision_mut(number) {
        entry.not_blamed = true;
    }
}

/// Record `checks` as suspect on revision `number` (a health-only change's checks that
/// failed against it): its outcome stays as it was (a Healthy live revision stays Healthy,
/// still the last good one), and the monitor leaves these checks out of its streak.
pub fn suspect(rec: &mut AppRecord, number: u64, checks: Vec<String>) {
    if let Some(entry) = rec.revision_mut(number) {
        entry.suspect_checks = checks;
    }
}

/// Quarantine `config_commit` (its revision `number` failed or was reverted): it is not
/// applied again until a new config commit or `shipshape retry`.
pub fn quarantine(rec: &mut AppRecord, number: u64, config_commit: &str, reason: &str) {
    rec.quarantined.retain(|q| q.config_commit != config_commit);
    rec.quarantined.push(Quarantine {
        config_commit: config_commit.to_string(),
        revision: number,
        reason: reason.to_string(),
        at: state::now(),
    });
    rec.prune_quarantine(state::QUARANTINE_KEEP);
}

/// Record the failing step.
pub fn last_error(rec: &mut AppRecord, step: StepKind, message: &str, tail: Option<String>) {
    rec.last_error = Some(LastError {
        step,
        message: message.to_string(),
        output_tail: tail,
        at: state::now(),
    });
}

/// The condition reason for a step that failed.
pub fn reason_for(step: StepKind) -> &'static str {
    match step {
        StepKind::Fetch => cr::FETCH_FAILED,
        StepKind::Install | StepKind::ReuseDeps => cr::INSTALL_FAILED,
        StepKind::Build => cr::BUILD_FAILED,
        StepKind::Backup => cr::BACKUP_FAILED,
        StepKind::Migrate => cr::MIGRATION_FAILED,
        StepKind::Verify => cr::HEALTH_CHECK_FAILED,
        StepKind::Hook => cr::HOOK_FAILED,
        _ => cr::STEP_FAILED,
    }
}

/// Set the conditions of an app that is where it should be and healthy.
pub fn mark_ready(rec: &mut AppRecord, message: &str) {
    let now = state::now();
    rec.phase = Phase::Ready;
    rec.last_error = None;
    rec.set_condition(
        ct::READY,
        ConditionStatus::True,
        cr::SUCCEEDED,
        message,
        &now,
    );
    rec.set_condition(
        ct::RECONCILING,
        ConditionStatus::False,
        cr::SUCCEEDED,
        message,
        &now,
    );
    rec.set_condition(ct::STALLED, ConditionStatus::False, cr::SUCCEEDED, "", &now);
    rec.set_condition(
        ct::HEALTHY,
        ConditionStatus::True,
        cr::CHECKS_PASSING,
        message,
        &now,
    );
}

/// Set the conditions of an app that needs a person: not ready, not reconciling, stalled.
pub fn set_stalled(rec: &mut AppRecord, reason: &str, message: &str) {
    let now = state::now();
    rec.set_condition(ct::READY, ConditionStatus::False, reason, message, &now);
    rec.set_condition(
        ct::RECONCILING,
        ConditionStatus::False,
        reason,
        message,
        &now,
    );
    rec.set_condition(ct::STALLED, ConditionStatus::True, reason, message, &now);
}

/// Set the conditions of an app that is unhealthy and cannot be fixed by the controller.
pub fn set_degraded(rec: &mut AppRecord, message: &str) {
    set_stalled(rec, cr::DEGRADED, message);
    rec.set_condition(
        ct::HEALTHY,
        ConditionStatus::False,
        cr::DEGRADED,
        message,
        &state::now(),
    );
    rec.phase = Phase::Degraded;
}

/// Set the conditions of an app whose steps are running (`reason`: why).
pub fn set_progressing(rec: &mut AppRecord, reason: &str, message: &str) {
    rec.phase = Phase::Progressing;
    rec.set_condition(
        ct::RECONCILING,
        ConditionStatus::True,
        reason,
        message,
        &state::now(),
    );
}

/// Set the conditions of an app whose pass hit a transient error: retried next pass.
pub fn set_retrying(rec: &mut AppRecord, message: &str) {
    let now = state::now();
    rec.phase = Phase::Progressing;
    rec.set_condition(
        ct::RECONCILING,
        ConditionStatus::True,
        cr::RETRYING_AFTER_ERROR,
        message,
        &now,
    );
    rec.set_condition(
        ct::READY,
        ConditionStatus::False,
        cr::TRANSIENT_ERROR,
        message,
        &now,
    );
}

/// What shows that the live revision was failing before a rollout, so that the rollout is
/// not to blame: its own monitor rounds (the record's health is for that revision), counted
/// after its own last change settled (the monitor starts a new streak, with a new restart
/// baseline, after every pass that ran steps, and does not count failing rounds within the
/// startup grace), `failureThreshold` of them failing in a row. One failed round is a
/// hiccup, not evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The live revision.
    pub revision: u64,
    /// Its failing rounds in a row.
    pub rounds: u32,
    /// When the first of them ran, when recorded.
    pub since: Option<Timestamp>,
    /// What failed in the last of them ("api: status 500", or "pm2 facts").
    pub why: String,
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the live revision {} failed {} rounds in a row",
            self.revision, self.rounds
        )?;
        if let Some(t) = self.since {
            write!(f, " since {}", t.datetime().format("%H:%M:%S"))?;
        }
        write!(f, ": {}", self.why)
    }
}

/// The evidence that the live revision is failing: the monitor counted at least
/// `failureThreshold` (the live revision's own) failing rounds in a row for it. `None` for
/// fewer, for another revision's rounds, or when the last conclusive round passed.
pub fn live_failing(rec: &AppRecord) -> Option<Evidence> {
    let live = rec.live()?;
    let h = rec.health.as_ref()?;
    let threshold = live.document.spec.health.failure_threshold.max(1);
    (h.revision == live.revision.number && !h.passing && h.consecutive_failures >= threshold).then(
        || Evidence {
            revision: live.revision.number,
            rounds: h.consecutive_failures,
            since: h.failing_since,
            why: h
                .results
                .iter()
                .find(|r| r.state == ProbeState::Fail && !live.suspect_checks.contains(&r.name))
                .map(|r| format!("{}: {}", r.name, r.detail))
                .unwrap_or_else(|| "pm2 facts".into()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::{entry, record};
    use shipshape_spec::status::{CheckResult, HealthRecord};

    #[test]
    fn concluding_writes_outcome_time_message_and_rounds_once() {
        let mut rec = record();
        rec.revisions = vec![entry(1, Outcome::Progressing)];
        rec.revisions[0].not_blamed = true;
        conclude(
            &mut rec,
            1,
            Outcome::Reverted,
            "2 failing rounds in a row",
            Some(Rounds {
                passed: 0,
                failed: 2,
            }),
        );
        let r = &rec.revisions[0];
        assert_eq!(r.revision.outcome, Outcome::Reverted);
        assert!(r.revision.finished_at.is_some());
        assert_eq!(r.revision.message, "2 failing rounds in a row");
        assert_eq!(r.revision.rounds.failed, 2);
        assert!(!r.not_blamed);
        // Without rounds, the ones counted before stay.
        conclude(&mut rec, 1, Outcome::Failed, "m", None);
        assert_eq!(rec.revisions[0].revision.rounds.failed, 2);
        // A revision gone from the history is ignored.
        conclude(&mut rec, 9, Outcome::Failed, "m", None);
        not_blamed(&mut rec, 1, "before", None);
        assert!(rec.revisions[0].not_blamed);
    }

    #[test]
    fn a_quarantine_replaces_an_older_one_for_the_same_commit() {
        let mut rec = record();
        quarantine(&mut rec, 2, "cfg", "first");
        quarantine(&mut rec, 3, "cfg", "second");
        quarantine(&mut rec, 4, "other", "third");
        assert_eq!(rec.quarantined.len(), 2);
        assert_eq!(rec.quarantined[0].revision, 3);
        assert!(rec.is_quarantined("cfg") && rec.is_quarantined("other"));
    }

    #[test]
    fn phases_set_their_conditions() {
        let status = |rec: &AppRecord, t: &str| {
            rec.conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.status)
        };
        let mut rec = record();
        set_degraded(&mut rec, "broken");
        assert_eq!(rec.phase, Phase::Degraded);
        assert_eq!(status(&rec, ct::STALLED), Some(ConditionStatus::True));
        assert_eq!(status(&rec, ct::HEALTHY), Some(ConditionStatus::False));
        last_error(&mut rec, StepKind::Verify, "x", None);
        mark_ready(&mut rec, "ok");
        assert_eq!(rec.phase, Phase::Ready);
        assert!(rec.last_error.is_none());
        assert_eq!(status(&rec, ct::STALLED), Some(ConditionStatus::False));
        set_retrying(&mut rec, "pm2 hiccup");
        assert_eq!(rec.phase, Phase::Progressing);
        assert_eq!(status(&rec, ct::READY), Some(ConditionStatus::False));
        assert_eq!(reason_for(StepKind::Verify), "HealthCheckFailed");
        assert_eq!(reason_for(StepKind::ReuseDeps), "InstallFailed");
    }

    /// The evidence rule, row by row: (the health record's revision, failing rounds in a
    /// row, last conclusive round passed, the live revision's failureThreshold) → evidence?
    #[test]
    fn only_failure_threshold_failing_rounds_of_the_live_revision_itself_are_evidence() {
        let health = |revision, failures, passing| HealthRecord {
            checked_at: "2024-05-01T19:36:14.000Z".parse().unwrap(),
            revision,
            passing,
            consecutive_passes: 0,
            consecutive_failures: failures,
            failing_since: (failures > 0).then(|| "2024-05-01T19:36:12.730Z".parse().unwrap()),
            results: vec![CheckResult {
                name: "api".into(),
                state: ProbeState::Fail,
                detail: "status 500".into(),
                latency_ms: 1,
            }],
        };
        #[rustfmt::skip]
        // (revision, failing rounds in a row, passing)
        type Streak = Option<(u64, u32, bool)>;
        let rows: Vec<(Streak, u32, bool, &str)> = vec![
            // No monitor round yet (a rollout right after the previous one): no evidence.
            (None, 3, false, "no rounds"),
            // One hiccup of a healthy release is not evidence, whatever its threshold.
            (Some((1, 1, false)), 3, false, "one failed round"),
            (
                Some((1, 2, false)),
                3,
                false,
                "two failed rounds, threshold 3",
            ),
            // failureThreshold failing rounds in a row of the live revision are.
            (Some((1, 3, false)), 3, true, "threshold reached"),
            (Some((1, 7, false)), 3, true, "past the threshold"),
            (
                Some((1, 1, false)),
                1,
                true,
                "threshold 1: one round is the rule",
            ),
            // Another revision's rounds (the previous live one) are not.
            (Some((2, 9, false)), 3, false, "another revision"),
            // A streak ended by a passing round is not.
            (Some((1, 0, true)), 3, false, "passing again"),
        ];
        for (h, threshold, want, what) in rows {
            let mut rec = record();
            rec.revisions = vec![entry(1, Outcome::Healthy)];
            rec.revisions[0].document.spec.health.failure_threshold = threshold;
            rec.live_revision = Some(1);
            rec.health = h.map(|(revision, failures, passing)| health(revision, failures, passing));
            let got = live_failing(&rec);
            assert_eq!(got.is_some(), want, "{what}: {got:?}");
            if let Some(e) = got {
                assert_eq!(
                    e.to_string(),
                    format!(
                        "the live revision 1 failed {} rounds in a row since 19:36:12: api: status 500",
                        e.rounds
                    ),
                    "{what}"
                );
            }
        }
        // No live revision: nothing to be failing.
        let mut rec = record();
        rec.health = Some(health(1, 5, false));
        assert_eq!(live_failing(&rec), None);
    }
}

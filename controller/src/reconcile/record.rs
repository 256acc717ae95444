//! The bookkeeping of a pass, written in one place: a revision's outcome (with when and
//! why), quarantines, and the kstatus-style conditions of each phase. Pure functions over
//! the record; the caller saves it.

use shipshape_spec::status::{
    ConditionStatus, LastError, Outcome, Phase, ProbeState, Rounds, StepKind, condition_types as ct,
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
        StepKind::Fetch => "FetchFailed",
        StepKind::Install | StepKind::ReuseDeps => "InstallFailed",
        StepKind::Build => "BuildFailed",
        StepKind::Backup => "BackupFailed",
        StepKind::Migrate => "MigrationFailed",
        StepKind::Verify => "HealthCheckFailed",
        StepKind::Hook => "HookFailed",
        _ => "StepFailed",
    }
}

/// Set the conditions of an app that is where it should be and healthy.
pub fn mark_ready(rec: &mut AppRecord, message: &str) {
    let now = state::now();
    rec.phase = Phase::Ready;
    rec.last_error = None;
    rec.set_condition(ct::READY, ConditionStatus::True, "Succeeded", message, &now);
    rec.set_condition(
        ct::RECONCILING,
        ConditionStatus::False,
        "Succeeded",
        message,
        &now,
    );
    rec.set_condition(ct::STALLED, ConditionStatus::False, "Succeeded", "", &now);
    rec.set_condition(
        ct::HEALTHY,
        ConditionStatus::True,
        "ChecksPassing",
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
    set_stalled(rec, "Degraded", message);
    rec.set_condition(
        ct::HEALTHY,
        ConditionStatus::False,
        "Degraded",
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
        "RetryingAfterError",
        message,
        &now,
    );
    rec.set_condition(
        ct::READY,
        ConditionStatus::False,
        "TransientError",
        message,
        &now,
    );
}

/// The failing check of the live revision, when the monitor counted `failureThreshold`
/// failing rounds in a row (or, with `at_least_one`, any failing round) for it.
pub fn live_failing(rec: &AppRecord, at_least_one: bool) -> Option<String> {
    let live = rec.live()?;
    let h = rec.health.as_ref()?;
    let threshold = if at_least_one {
        1
    } else {
        live.document.spec.health.failure_threshold
    };
    (h.revision == live.revision.number && !h.passing && h.consecutive_failures >= threshold).then(
        || {
            h.results
                .iter()
                .find(|r| r.state == ProbeState::Fail)
                .map(|r| format!("{}: {}", r.name, r.detail))
                .unwrap_or_else(|| "pm2 facts".into())
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

    #[test]
    fn the_live_revision_is_failing_after_threshold_rounds_of_its_own() {
        let mut rec = record();
        rec.revisions = vec![entry(1, Outcome::Healthy)];
        rec.live_revision = Some(1);
        let health = |revision, failures| HealthRecord {
            checked_at: "t".into(),
            revision,
            passing: failures == 0,
            consecutive_passes: 0,
            consecutive_failures: failures,
            results: vec![CheckResult {
                name: "api".into(),
                state: ProbeState::Fail,
                detail: "status 500".into(),
                latency_ms: 1,
            }],
        };
        assert_eq!(live_failing(&rec, false), None);
        rec.health = Some(health(1, 1));
        assert_eq!(live_failing(&rec, false), None);
        assert_eq!(live_failing(&rec, true).as_deref(), Some("api: status 500"));
        rec.health = Some(health(1, 3));
        assert_eq!(
            live_failing(&rec, false).as_deref(),
            Some("api: status 500")
        );
        rec.health = Some(health(2, 3));
        assert_eq!(live_failing(&rec, false), None, "another revision's rounds");
    }
}

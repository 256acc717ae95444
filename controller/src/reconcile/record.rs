//! The bookkeeping of a pass, written in one place: a revision's outcome (with when and
//! why), quarantines, and the kstatus-style conditions of each phase. Pure functions over
//! the record; the caller saves it. What the pass, the health monitor and the API decide
//! about a revision, a pin or a regression is applied by [`apply`], which returns what to
//! publish ([`Effects`]).

use shipshape_spec::status::{
    ConditionStatus, LastError, Outcome, Phase, ProbeState, Regression, Rounds, StepKind,
    Timestamp, condition_reasons as cr, condition_types as ct,
};

use super::pins;
use super::publish::Note;
use crate::runtime::events::EventKind;
use crate::state::requests::{self, Entry, Request};
use crate::state::{self, AppRecord, Quarantine};

/// A decision about the app, as [`apply`] writes it into the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact<'a> {
    /// Revision `revision`'s rollout is live and healthy (`message`: the pass's words).
    /// Concluded (and announced) once: a revision already Healthy stays as it was.
    Healthy {
        /// The revision.
        revision: u64,
        /// In words, for the event.
        message: &'a str,
    },
    /// A newer desired state or a request stopped revision `revision`'s rollout: recorded
    /// Superseded (`why`) when `conclude` and it is still Progressing; announced always.
    Superseded {
        /// The revision.
        revision: u64,
        /// Why it stopped (the revision's message).
        why: &'a str,
        /// In words, for the event.
        message: &'a str,
        /// Record the outcome (the pass followed git).
        conclude: bool,
    },
    /// Revision `revision` failed; its config commit is quarantined when given.
    Failed {
        /// The revision.
        revision: u64,
        /// Why.
        message: &'a str,
        /// The config commit to quarantine.
        quarantine: Option<&'a str>,
    },
    /// Revision `from` failed and is being reverted (recorded before the revert starts,
    /// so that a controller stopped mid-revert does not roll it out again).
    Reverting {
        /// The failed revision.
        from: u64,
        /// Its config commit, quarantined.
        config_commit: &'a str,
        /// Why, in words.
        message: &'a str,
    },
    /// Revision `from` was reverted to revision `to`; `from`'s config commit is
    /// quarantined.
    Reverted {
        /// The failed revision.
        from: u64,
        /// The revision gone back to.
        to: u64,
        /// The failed revision's config commit.
        config_commit: &'a str,
        /// Why, in words.
        message: &'a str,
    },
    /// The monitor saw the live revision regress: the next pass acts on it.
    Regressed(Regression),
    /// The checks of revision `revision`, live without blame, passed again: Healthy.
    Recovered {
        /// The revision.
        revision: u64,
    },
    /// The suspect checks of revision `revision` passed: the suspicion ends.
    SuspectsCleared {
        /// The revision.
        revision: u64,
    },
    /// A request (pin, unpin, retry) was recorded.
    Request(&'a Entry),
}

/// What [`apply`] says to publish: events, and rollouts to count by outcome
/// (`shipshape_rollouts_total`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Events, in order.
    pub notes: Vec<Note>,
    /// Rollout outcomes to count.
    pub rollouts: Vec<&'static str>,
}

/// Apply `fact` to `rec`: the one place a revision's outcome, a quarantine, the pin and a
/// regression are written for a decision. Pure; returns what to publish.
pub fn apply(rec: &mut AppRecord, fact: Fact<'_>) -> Effects {
    let mut out = Effects::default();
    let note = |kind, revision: u64, m: &str| Note::new(kind, Some(revision), m.to_string());
    match fact {
        Fact::Healthy { revision, message } => healthy(rec, revision, message, &mut out),
        Fact::Superseded {
            revision,
            why,
            message,
            conclude: record,
        } => {
            let progressing = rec
                .revision(revision)
                .is_some_and(|r| r.revision.outcome == Outcome::Progressing);
            if record && progressing {
                conclude(rec, revision, Outcome::Superseded, why, None);
                out.rollouts.push("superseded");
            }
            out.notes
                .push(note(EventKind::RolloutSuperseded, revision, message));
        }
        Fact::Failed {
            revision,
            message,
            quarantine: commit,
        } => {
            conclude(rec, revision, Outcome::Failed, message, None);
            if let Some(c) = commit {
                quarantine(rec, revision, c, message);
            }
            out.rollouts.push("failed");
        }
        Fact::Reverting {
            from,
            config_commit,
            message,
        } => {
            conclude(rec, from, Outcome::Failed, message, None);
            quarantine(rec, from, config_commit, message);
        }
        Fact::Reverted {
            from,
            to,
            config_commit,
            message,
        } => {
            conclude(rec, from, Outcome::Reverted, message, None);
            quarantine(rec, from, config_commit, message);
            out.rollouts.push("reverted");
            out.notes.push(note(EventKind::Reverted, to, message));
        }
        Fact::Regressed(reg) => rec.regression = Some(reg),
        Fact::Recovered { revision } => {
            conclude(
                rec,
                revision,
                Outcome::Healthy,
                "healthy: the checks recovered",
                None,
            );
        }
        Fact::SuspectsCleared { revision } => {
            if let Some(entry) = rec.revision_mut(revision) {
                entry.suspect_checks.clear();
            }
        }
        Fact::Request(entry) => out.notes.extend(apply_request(rec, entry)),
    }
    out
}

/// A rollout healthy: concluded and announced once (a revision already Healthy stays).
fn healthy(rec: &mut AppRecord, revision: u64, message: &str, out: &mut Effects) {
    if rec
        .revision(revision)
        .is_some_and(|r| r.revision.outcome != Outcome::Healthy)
    {
        conclude(rec, revision, Outcome::Healthy, "healthy", None);
        let m = message.to_string();
        out.notes
            .push(Note::new(EventKind::RolloutHealthy, Some(revision), m));
        out.rollouts.push("healthy");
    }
}

/// Absorb one recorded request; the event of a pin or an unpin.
fn apply_request(rec: &mut AppRecord, entry: &Entry) -> Option<Note> {
    let before = rec.pin.clone();
    requests::apply(rec, std::slice::from_ref(entry));
    match &entry.request {
        Request::Pin { pin } => Some(Note::new(
            EventKind::Pinned,
            Some(pin.revision),
            pins::pinned_words(pin),
        )),
        Request::Unpin { by } => before.map(|p| {
            let m = format!(
                "unpinned by {by} (was revision {}: {})",
                p.revision, p.reason
            );
            Note::new(EventKind::Unpinned, Some(p.revision), m)
        }),
        Request::Retry { .. } => None,
    }
}

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

    /// Each decision, applied to a record with revision 1 Healthy (live) and revision 2
    /// as the row says: (what, revision 2's outcome before, the fact) → (revision 2's
    /// outcome after, config commits quarantined, events published, rollouts counted).
    #[test]
    fn applying_a_decision_writes_the_record_once_and_says_what_to_publish() {
        use crate::state::requests::{Entry, Request};
        use EventKind as E;
        use Outcome as O;
        use shipshape_spec::status::PinSource;
        let pin = pins::new_pin(1, "ana", "incident", PinSource::Cli);
        let request = |seq, request| Entry {
            seq,
            at: Timestamp::parse("2999-01-01T00:00:00Z").expect("a time"),
            request,
        };
        let pin_it = request(1, Request::Pin { pin: pin.clone() });
        let unpin = request(2, Request::Unpin { by: "bo".into() });
        let retry = request(
            3,
            Request::Retry {
                config_commit: None,
            },
        );
        let reg = Regression {
            revision: 2,
            at: Timestamp::UNIX_EPOCH,
            reason: "api: status 500".into(),
        };
        type Row<'a> = (&'a str, O, Fact<'a>, O, Vec<&'a str>, Vec<E>, Vec<&'a str>);
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("a rollout healthy", O::Progressing, Fact::Healthy { revision: 2, message: "live" },
                O::Healthy, vec![], vec![E::RolloutHealthy], vec!["healthy"]),
            ("healthy again is not announced again", O::Healthy, Fact::Healthy { revision: 2, message: "live" },
                O::Healthy, vec![], vec![], vec![]),
            ("superseded while progressing", O::Progressing,
                Fact::Superseded { revision: 2, why: "newer", message: "m", conclude: true },
                O::Superseded, vec![], vec![E::RolloutSuperseded], vec!["superseded"]),
            ("superseded while held: announced, not concluded", O::Progressing,
                Fact::Superseded { revision: 2, why: "newer", message: "m", conclude: false },
                O::Progressing, vec![], vec![E::RolloutSuperseded], vec![]),
            ("failed and quarantined", O::Progressing,
                Fact::Failed { revision: 2, message: "m", quarantine: Some("cfg2") },
                O::Failed, vec!["cfg2"], vec![], vec!["failed"]),
            ("failed, not quarantined", O::Progressing,
                Fact::Failed { revision: 2, message: "m", quarantine: None },
                O::Failed, vec![], vec![], vec!["failed"]),
            ("reverting: failed and quarantined, not counted", O::Progressing,
                Fact::Reverting { from: 2, config_commit: "cfg2", message: "m" },
                O::Failed, vec!["cfg2"], vec![], vec![]),
            ("reverted", O::Failed,
                Fact::Reverted { from: 2, to: 1, config_commit: "cfg2", message: "m" },
                O::Reverted, vec!["cfg2"], vec![E::Reverted], vec!["reverted"]),
            ("a regression is recorded for the next pass", O::Healthy, Fact::Regressed(reg.clone()),
                O::Healthy, vec![], vec![], vec![]),
            ("recovered checks", O::Failed, Fact::Recovered { revision: 2 },
                O::Healthy, vec![], vec![], vec![]),
            ("a pin request", O::Healthy, Fact::Request(&pin_it),
                O::Healthy, vec![], vec![E::Pinned], vec![]),
            ("a retry request", O::Healthy, Fact::Request(&retry),
                O::Healthy, vec![], vec![], vec![]),
        ];
        for (what, before, fact, after, quarantined, events, rollouts) in rows {
            let mut rec = record();
            rec.revisions = vec![entry(1, Outcome::Healthy), entry(2, before)];
            rec.live_revision = Some(1);
            let regressed = matches!(fact, Fact::Regressed(_));
            let effects = apply(&mut rec, fact);
            let r2 = rec.revision(2).unwrap();
            assert_eq!(r2.revision.outcome, after, "{what}");
            let q: Vec<&str> = rec
                .quarantined
                .iter()
                .map(|q| q.config_commit.as_str())
                .collect();
            assert_eq!(q, quarantined, "{what}");
            let kinds: Vec<E> = effects.notes.iter().map(|n| n.kind).collect();
            assert_eq!(kinds, events, "{what}");
            assert_eq!(effects.rollouts, rollouts, "{what}");
            assert_eq!(rec.regression.is_some(), regressed, "{what}");
        }
        // Requests: a pin is in force at once and announced with who and why; an unpin
        // lifts it and names the pin it lifted; a retry releases the quarantine.
        let mut rec = record();
        rec.revisions = vec![entry(1, Outcome::Healthy)];
        let pinned = apply(&mut rec, Fact::Request(&pin_it));
        assert_eq!(rec.pin.as_ref().map(|p| p.revision), Some(1));
        assert_eq!(
            pinned.notes[0].message,
            "pinned at revision 1 by ana: incident"
        );
        let unpinned = apply(&mut rec, Fact::Request(&unpin));
        assert_eq!(rec.pin, None);
        assert_eq!(
            unpinned.notes,
            vec![Note::new(
                E::Unpinned,
                Some(1),
                "unpinned by bo (was revision 1: incident)".into()
            )]
        );
        quarantine(&mut rec, 1, "cfg1", "failed");
        apply(&mut rec, Fact::Request(&retry));
        assert!(rec.quarantined.is_empty());
        // Suspect checks that passed are cleared; recovering clears the blame.
        rec.revisions[0].suspect_checks = vec!["api".into()];
        rec.revisions[0].not_blamed = true;
        apply(&mut rec, Fact::SuspectsCleared { revision: 1 });
        apply(&mut rec, Fact::Recovered { revision: 1 });
        assert!(rec.revisions[0].suspect_checks.is_empty());
        assert!(!rec.revisions[0].not_blamed);
        assert_eq!(
            rec.revisions[0].revision.message,
            "healthy: the checks recovered"
        );
    }

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

//! What to do after a pass's steps ended, and after the monitor saw a regression: pure
//! functions over typed facts (the mode, how the steps ended, whether anything live
//! changed, whether the checks were failing before, whether the pass only re-verified the
//! live release after a change of its checks), table-tested below. No message text
//! is read: errors carry a class ([`ErrorClass`]) and the failing step's [`StepKind`].

use shipshape_spec::status::StepKind;

use super::target::Mode;

/// What the loop should do about a failure (Flux's error classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Needs a person (a new commit or `retry`): build failed, health failed, bad document.
    Stalled,
    /// May pass on its own: network, pm2 hiccup, a full disk. Retried on the next pass.
    Transient,
    /// A newer desired state or a request arrived while waiting; the next pass moves on.
    Superseded,
    /// Verification could not conclude (no failing round, too few conclusive passes):
    /// the revision stays, is not blamed, and becomes Healthy when its checks pass.
    Inconclusive,
}

/// How a pass's steps ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every step succeeded (verification included, when planned).
    Ok,
    /// A step failed, with this class.
    Failed {
        /// The step that failed.
        step: StepKind,
        /// What the loop does about it.
        class: ErrorClass,
    },
}

/// The mode without its data, for tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeKind {
    /// Following git.
    Follow,
    /// Pinned.
    Pinned,
    /// Holding the last good revision (the desired commit is quarantined).
    Hold,
    /// Holding the live revision while a wave gate keeps the desired app commit back.
    Gated,
}

impl From<&Mode> for ModeKind {
    fn from(m: &Mode) -> ModeKind {
        match m {
            Mode::Follow => ModeKind::Follow,
            Mode::Pinned(_) => ModeKind::Pinned,
            Mode::Hold { .. } => ModeKind::Hold,
            Mode::Gated(_) => ModeKind::Gated,
        }
    }
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// How the pass converged.
    pub mode: ModeKind,
    /// How its steps ended.
    pub ended: Ended,
    /// Did anything live change (switch, migration, pm2, hook), or was an unfinished
    /// verification resumed?
    pub switched: bool,
    /// Were the live revision's checks already failing before this rollout?
    pub failing_before: bool,
    /// The document's `rollback.auto`.
    pub auto_revert: bool,
    /// Did the pass only re-verify the live release because the config commit changed
    /// nothing but `spec.health`? Then what failed.
    pub recheck: Recheck,
}

/// A pass that only re-verified the live release (the config commit changed nothing but
/// `spec.health`: no switch, no pm2 step), and what failed in its last failing round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// Not such a pass: a rollout, a repair, a revert.
    No,
    /// Only checks the config commit added or changed failed: the document's check is
    /// suspect, not the release, which nothing touched. (A change of the rules alone —
    /// thresholds, interval, grace, deadline — judges no check anew: see
    /// [`super::recheck::HealthChange::judges_anew`].)
    ChangedCheckFailed,
    /// A check the config commit left as it was (or the pm2 facts) failed: the live
    /// release is failing on its own, which the monitor judges as for any live revision.
    UnchangedFailed,
}

/// Why a broken rollout is not reverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRevert {
    /// The app is pinned or held: the controller never moves it by itself.
    Held,
    /// `rollback.auto` is off.
    AutoOff,
}

/// What to do after the steps ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// The rollout is live and healthy: record it Healthy, Ready.
    Healthy,
    /// The pinned revision is live and healthy: Ready, pinned.
    PinnedReady,
    /// Drift towards the held revision was repaired; the desired commit stays quarantined.
    HoldRepaired,
    /// The live revision, held by a wave gate, is live and healthy: Ready, the desired app
    /// commit still held back.
    GatedReady,
    /// A step failed: what to do about it.
    Failed(OnFailure),
}

/// What to do after a step failed: only the decisions a failure can lead to (a failure
/// never reads as a success), for the end of a pass whose steps did not all succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum OnFailure {
    /// A transient error: nothing is concluded, the next pass retries.
    Retry,
    /// A newer desired state or a request: record Superseded, run the next pass at once.
    Superseded,
    /// The revision stays live, is not reverted and not quarantined (its verification was
    /// inconclusive, or the checks were failing before it): Degraded until they pass.
    NotBlamed,
    /// Failed before anything live changed: the live release is untouched; quarantine.
    FailUntouched,
    /// Failed after the switch, and no automatic revert: Degraded, left live. Not
    /// quarantined (a quarantine would hold the last good revision: a revert after all).
    FailNoRevert(NoRevert),
    /// Failed after the switch: go back to the last good revision.
    Revert,
    /// A re-verification after a change of only the checks failed on a changed check: the
    /// document's check is suspect. Nothing is reverted (that would restart processes the
    /// config commit never touched) or quarantined (that would hold back the fix); the
    /// revision stays live and keeps its outcome (the failed checks are recorded suspect),
    /// Degraded until its checks pass.
    CheckSuspect,
    /// A re-verification after a change of only the checks failed on checks that did not
    /// change: the live release is failing by itself. Degraded; nothing is reverted or
    /// quarantined by this pass; the revision keeps its outcome, so the monitor's own
    /// rounds decide whether it regressed (and is reverted within `rollback.window`).
    LiveFailing,
}

/// The decision after a pass's steps ended.
pub fn decide(f: Facts) -> Decision {
    match f.ended {
        Ended::Ok => match f.mode {
            ModeKind::Follow => Decision::Healthy,
            ModeKind::Pinned => Decision::PinnedReady,
            ModeKind::Hold => Decision::HoldRepaired,
            ModeKind::Gated => Decision::GatedReady,
        },
        Ended::Failed { step, class } => Decision::Failed(decide_failure(f, step, class)),
    }
}

/// The decision after step `step` failed with `class` (`f.ended` is not read).
pub fn decide_failure(f: Facts, step: StepKind, class: ErrorClass) -> OnFailure {
    let rechecked = f.mode == ModeKind::Follow && step == StepKind::Verify;
    match class {
        ErrorClass::Transient => OnFailure::Retry,
        ErrorClass::Stalled if rechecked && f.recheck == Recheck::ChangedCheckFailed => {
            OnFailure::CheckSuspect
        }
        ErrorClass::Stalled if rechecked && f.recheck == Recheck::UnchangedFailed => {
            OnFailure::LiveFailing
        }
        ErrorClass::Superseded => OnFailure::Superseded,
        ErrorClass::Inconclusive if f.mode == ModeKind::Follow => OnFailure::NotBlamed,
        ErrorClass::Inconclusive => OnFailure::FailNoRevert(NoRevert::Held),
        ErrorClass::Stalled if !f.switched => OnFailure::FailUntouched,
        ErrorClass::Stalled if f.mode != ModeKind::Follow => {
            OnFailure::FailNoRevert(NoRevert::Held)
        }
        ErrorClass::Stalled if f.failing_before && step == StepKind::Verify => OnFailure::NotBlamed,
        ErrorClass::Stalled if !f.auto_revert => OnFailure::FailNoRevert(NoRevert::AutoOff),
        ErrorClass::Stalled => OnFailure::Revert,
    }
}

/// Why a regression is not reverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegressionDecision {
    /// Go back to the last good revision.
    Revert,
    /// Pinned: no automatic revert.
    KeepPinned,
    /// `rollback.auto` is off.
    KeepAutoOff,
    /// The regression came after `rollback.window`: report, do not revert.
    KeepOutsideWindow,
}

/// The decision after the monitor saw the live revision regress (failing after passing).
pub fn decide_regression(pinned: bool, auto_revert: bool, in_window: bool) -> RegressionDecision {
    if pinned {
        RegressionDecision::KeepPinned
    } else if !auto_revert {
        RegressionDecision::KeepAutoOff
    } else if !in_window {
        RegressionDecision::KeepOutsideWindow
    } else {
        RegressionDecision::Revert
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision as D;
    use ErrorClass as C;
    use ModeKind as M;
    use OnFailure as F;

    fn failed(step: StepKind, class: ErrorClass) -> Ended {
        Ended::Failed { step, class }
    }

    /// Every mode × outcome class × switched × failing-before × rollback.auto, with the
    /// decision each must give.
    #[test]
    fn every_combination_of_mode_outcome_switch_and_prior_failure_has_one_decision() {
        let verify = StepKind::Verify;
        let build = StepKind::Build;
        // (mode, ended, switched, failing_before, auto) → decision
        #[rustfmt::skip]
        let rows: Vec<(M, Ended, bool, bool, bool, D)> = vec![
            // Success.
            (M::Follow, Ended::Ok, true, false, true, D::Healthy),
            (M::Follow, Ended::Ok, false, false, true, D::Healthy),
            (M::Follow, Ended::Ok, true, true, true, D::Healthy),
            (M::Pinned, Ended::Ok, true, false, true, D::PinnedReady),
            (M::Pinned, Ended::Ok, false, true, false, D::PinnedReady),
            (M::Hold, Ended::Ok, true, false, true, D::HoldRepaired),
            (M::Hold, Ended::Ok, false, false, false, D::HoldRepaired),
            (M::Gated, Ended::Ok, true, false, true, D::GatedReady),
            (M::Gated, Ended::Ok, false, false, true, D::GatedReady),
            // Transient errors are retried, whatever else holds.
            (M::Follow, failed(build, C::Transient), false, false, true, D::Failed(F::Retry)),
            (M::Follow, failed(StepKind::Switch, C::Transient), true, false, true, D::Failed(F::Retry)),
            (M::Follow, failed(verify, C::Transient), true, true, true, D::Failed(F::Retry)),
            (M::Pinned, failed(StepKind::Pm2Reload, C::Transient), true, false, true, D::Failed(F::Retry)),
            (M::Hold, failed(StepKind::Fetch, C::Transient), false, false, false, D::Failed(F::Retry)),
            // Superseded: the next pass runs at once.
            (M::Follow, failed(verify, C::Superseded), true, false, true, D::Failed(F::Superseded)),
            (M::Follow, failed(verify, C::Superseded), true, true, false, D::Failed(F::Superseded)),
            (M::Pinned, failed(verify, C::Superseded), true, false, true, D::Failed(F::Superseded)),
            (M::Hold, failed(verify, C::Superseded), true, false, true, D::Failed(F::Superseded)),
            // Inconclusive: never blamed; a held app is only reported.
            (M::Follow, failed(verify, C::Inconclusive), true, false, true, D::Failed(F::NotBlamed)),
            (M::Follow, failed(verify, C::Inconclusive), true, true, false, D::Failed(F::NotBlamed)),
            (M::Pinned, failed(verify, C::Inconclusive), true, false, true, D::Failed(F::FailNoRevert(NoRevert::Held))),
            (M::Hold, failed(verify, C::Inconclusive), true, false, true, D::Failed(F::FailNoRevert(NoRevert::Held))),
            // Stalled before anything live changed: the live release is untouched.
            (M::Follow, failed(build, C::Stalled), false, false, true, D::Failed(F::FailUntouched)),
            (M::Follow, failed(build, C::Stalled), false, true, true, D::Failed(F::FailUntouched)),
            (M::Follow, failed(StepKind::Fetch, C::Stalled), false, false, false, D::Failed(F::FailUntouched)),
            (M::Follow, failed(StepKind::Migrate, C::Stalled), false, false, true, D::Failed(F::FailUntouched)),
            (M::Pinned, failed(build, C::Stalled), false, false, true, D::Failed(F::FailUntouched)),
            (M::Hold, failed(build, C::Stalled), false, false, true, D::Failed(F::FailUntouched)),
            // Stalled after the switch, pinned or held: never moved by the controller.
            (M::Pinned, failed(verify, C::Stalled), true, false, true, D::Failed(F::FailNoRevert(NoRevert::Held))),
            (M::Pinned, failed(verify, C::Stalled), true, true, true, D::Failed(F::FailNoRevert(NoRevert::Held))),
            (M::Hold, failed(verify, C::Stalled), true, false, true, D::Failed(F::FailNoRevert(NoRevert::Held))),
            (M::Hold, failed(StepKind::Hook, C::Stalled), true, false, false, D::Failed(F::FailNoRevert(NoRevert::Held))),
            // Held by a wave gate: a drift repair or re-verification of the live revision
            // that fails is reported, not reverted by the pass (its revert would quarantine
            // the config commit the gate holds back); the monitor's regressions still are.
            (M::Gated, failed(verify, C::Stalled), true, false, true, D::Failed(F::FailNoRevert(NoRevert::Held))),
            (M::Gated, failed(build, C::Stalled), false, false, true, D::Failed(F::FailUntouched)),
            // Following: checks failing before the rollout are not its fault …
            (M::Follow, failed(verify, C::Stalled), true, true, true, D::Failed(F::NotBlamed)),
            (M::Follow, failed(verify, C::Stalled), true, true, false, D::Failed(F::NotBlamed)),
            // … but a failing hook or pm2 step is, whatever the checks did before.
            (M::Follow, failed(StepKind::Hook, C::Stalled), true, true, true, D::Failed(F::Revert)),
            (M::Follow, failed(StepKind::Pm2Start, C::Stalled), true, true, true, D::Failed(F::Revert)),
            // rollback.auto off: failed, reported, left live.
            (M::Follow, failed(verify, C::Stalled), true, false, false, D::Failed(F::FailNoRevert(NoRevert::AutoOff))),
            (M::Follow, failed(StepKind::Hook, C::Stalled), true, true, false, D::Failed(F::FailNoRevert(NoRevert::AutoOff))),
            // Otherwise: revert.
            (M::Follow, failed(verify, C::Stalled), true, false, true, D::Failed(F::Revert)),
            (M::Follow, failed(StepKind::Migrate, C::Stalled), true, false, true, D::Failed(F::Revert)),
            (M::Follow, failed(StepKind::Pm2Reload, C::Stalled), true, false, true, D::Failed(F::Revert)),
        ];
        for (mode, ended, switched, failing_before, auto_revert, want) in rows {
            let facts = Facts {
                mode,
                ended,
                switched,
                failing_before,
                auto_revert,
                recheck: Recheck::No,
            };
            assert_eq!(decide(facts), want, "{facts:?}");
        }
    }

    /// A pass that only re-verified the live release after a change of its checks:
    /// (mode, ended, failing_before, auto, what failed) → decision. Never a revert, never
    /// a quarantine (FailUntouched), whatever the other facts say.
    #[test]
    fn a_failed_re_verification_after_a_change_of_only_the_checks_is_never_reverted() {
        let verify = StepKind::Verify;
        use Recheck as R;
        #[rustfmt::skip]
        let rows: Vec<(M, Ended, bool, bool, R, D)> = vec![
            // A changed check failed: the document's check is suspect.
            (M::Follow, failed(verify, C::Stalled), false, true, R::ChangedCheckFailed, D::Failed(F::CheckSuspect)),
            (M::Follow, failed(verify, C::Stalled), true, true, R::ChangedCheckFailed, D::Failed(F::CheckSuspect)),
            (M::Follow, failed(verify, C::Stalled), false, false, R::ChangedCheckFailed, D::Failed(F::CheckSuspect)),
            // Only unchanged checks failed: the release is failing by itself.
            (M::Follow, failed(verify, C::Stalled), false, true, R::UnchangedFailed, D::Failed(F::LiveFailing)),
            (M::Follow, failed(verify, C::Stalled), true, false, R::UnchangedFailed, D::Failed(F::LiveFailing)),
            // Passing, transient, superseded, inconclusive: as for any pass.
            (M::Follow, Ended::Ok, false, true, R::ChangedCheckFailed, D::Healthy),
            (M::Follow, failed(verify, C::Transient), false, true, R::ChangedCheckFailed, D::Failed(F::Retry)),
            (M::Follow, failed(verify, C::Superseded), false, true, R::UnchangedFailed, D::Failed(F::Superseded)),
            (M::Follow, failed(verify, C::Inconclusive), false, true, R::ChangedCheckFailed, D::Failed(F::NotBlamed)),
        ];
        for (mode, ended, failing_before, auto_revert, recheck, want) in rows {
            let facts = Facts {
                mode,
                ended,
                switched: false,
                failing_before,
                auto_revert,
                recheck,
            };
            assert_eq!(decide(facts), want, "{facts:?}");
        }
        // The same failure of a rollout (not a re-verification) after its switch is reverted.
        let rollout = Facts {
            mode: M::Follow,
            ended: failed(verify, C::Stalled),
            switched: true,
            failing_before: false,
            auto_revert: true,
            recheck: R::No,
        };
        assert_eq!(decide(rollout), D::Failed(F::Revert));
    }

    #[test]
    fn a_regression_is_reverted_only_unpinned_with_auto_on_inside_the_window() {
        use RegressionDecision as R;
        let rows = [
            (false, true, true, R::Revert),
            (true, true, true, R::KeepPinned),
            (true, false, false, R::KeepPinned),
            (false, false, true, R::KeepAutoOff),
            (false, false, false, R::KeepAutoOff),
            (false, true, false, R::KeepOutsideWindow),
        ];
        for (pinned, auto, in_window, want) in rows {
            assert_eq!(
                decide_regression(pinned, auto, in_window),
                want,
                "pinned {pinned}, auto {auto}, in window {in_window}"
            );
        }
    }
}

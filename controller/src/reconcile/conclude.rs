//! The end of a pass: what the steps' outcome means ([`decide::decide`]) and its
//! bookkeeping: success, retry, supersede, not blamed, failed with the live release
//! untouched, no revert (held, or `rollback.auto` off), revert, or a re-verification after
//! a change of only the checks that failed (the check suspect, or the release failing by
//! itself); and settling a pass that had nothing to do.

use std::sync::Arc;

use shipshape_spec::status::{
    ConditionStatus, Outcome, PassRecord, Phase, StepKind, StepRecord, StepResult,
    condition_reasons as cr, condition_types as ct,
};
use tracing::warn;

use super::decide::{self, ErrorClass, Facts, NoRevert, OnFailure, Recheck};
use super::execute::StepError;
use super::journal::JournalFile;
use super::record::{self, Fact, mark_ready, set_degraded, set_stalled};
use super::target::Mode;
use super::{AppHandle, AppResult, Controller, Executed, PassInfo, ReconcileError};
use crate::plan::short_sha;
use crate::runtime::events::EventKind;
use crate::state::{self, AppRecord};

/// How a pass ended, for its one save at the end ([`Controller::finish_pass`]): the steps
/// it ran, the result in words, and the result.
#[derive(Debug)]
pub(super) struct Ended {
    /// Every step run, in order.
    pub records: Vec<StepRecord>,
    /// The pass's result in words.
    pub message: String,
    /// The result.
    pub result: AppResult,
}

impl Ended {
    /// Not ready, in `phase`, with no step run.
    pub fn not_ready(phase: Phase, message: String) -> Ended {
        Ended::with_steps(Vec::new(), phase, message)
    }

    /// Not ready, in `phase`, after `records`.
    pub fn with_steps(records: Vec<StepRecord>, phase: Phase, message: String) -> Ended {
        Ended {
            records,
            result: AppResult::NotReady {
                phase,
                message: message.clone(),
            },
            message,
        }
    }

    /// Ready (or not, in `phase`, when `ready` is false) after `records`.
    fn ready_or(ready: bool, records: Vec<StepRecord>, phase: Phase, message: String) -> Ended {
        if !ready {
            return Ended::with_steps(records, phase, message);
        }
        Ended {
            result: AppResult::Ready {
                steps: records.len(),
            },
            records,
            message,
        }
    }
}

impl Controller {
    /// Decide what the steps' outcome means and record it.
    pub(super) async fn conclude_pass(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        handle: &Arc<AppHandle>,
        mut done: Executed,
    ) -> Ended {
        let number = done.number;
        note_execution(rec, &done);
        let err = match std::mem::replace(&mut done.outcome, Ok(())) {
            Ok(()) => {
                if done.recheck.is_some() {
                    adopt_checks(rec, number, &done);
                }
                return self.on_success(rec, info, done);
            }
            Err(e) => e,
        };
        let (decision, recheck) = read_failure(rec, &done, &err);
        let message = format!("{} failed: {}", err.step, err.message);
        let config_commit = info.config_commit;
        let mut records = std::mem::take(&mut done.records);
        let (phase, message) = match decision {
            OnFailure::Superseded => return self.on_superseded(rec, &done, &err, records),
            OnFailure::Revert => {
                self.revert(rec, number, &message, &mut records, handle, false, None)
                    .await
            }
            OnFailure::Retry => {
                record::set_retrying(rec, &message);
                (Phase::Progressing, message)
            }
            OnFailure::FailUntouched => {
                let m = format!("{message}; the live release was not touched");
                set_stalled(rec, record::reason_for(err.step), &m);
                if done.target.mode.follows() {
                    self.fail_revision(rec, number, config_commit, &m);
                }
                (Phase::Failed, m)
            }
            OnFailure::FailNoRevert(how) => self.fail_no_revert(rec, &done, how, &message),
            OnFailure::NotBlamed => {
                let m = not_blamed_message(&done, &err, config_commit, &message);
                if done.recheck.is_none() {
                    record::not_blamed(rec, number, &m, None);
                }
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
            OnFailure::CheckSuspect => {
                let (m, suspect) = check_suspect_message(&done, config_commit, &message);
                record::suspect(rec, number, suspect);
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
            OnFailure::LiveFailing => {
                let m = live_failing_message(&done, config_commit, &message);
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
        };
        if phase == Phase::Degraded {
            self.emit(rec, EventKind::Degraded, Some(number), message.clone());
        }
        if err.class == ErrorClass::Stalled && recheck == Recheck::No {
            let m = format!("{} failed: {}", err.step, err.message);
            self.emit(rec, EventKind::RolloutFailed, Some(number), m);
        }
        rec.phase = phase;
        // Prune after a failure too, not only after the next success: the unsealed
        // releases of earlier failed builds go; this pass's own stays for a person to look
        // at until the next pass that ends a rollout.
        self.prune_releases(&done.target.document, rec, Some(&done.release));
        Ended::with_steps(records, phase, message)
    }

    /// A newer desired state or a request stopped the rollout: Superseded, the next pass
    /// runs at once.
    fn on_superseded(
        &self,
        rec: &mut AppRecord,
        done: &Executed,
        err: &StepError,
        records: Vec<StepRecord>,
    ) -> Ended {
        let number = done.number;
        let m = format!("revision {number} {}", err.message);
        let fact = Fact::Superseded {
            revision: number,
            why: &err.message,
            message: &m,
            conclude: done.target.mode.follows(),
        };
        let effects = record::apply(rec, fact);
        rec.last_error = None;
        rec.phase = Phase::Progressing;
        self.publish_effects(rec, effects);
        Ended {
            records,
            message: m.clone(),
            result: AppResult::Superseded { message: m },
        }
    }

    /// Failed after the switch, and not reverted: held (pinned or holding), or
    /// `rollback.auto` off. Degraded, left live.
    fn fail_no_revert(
        &self,
        rec: &mut AppRecord,
        done: &Executed,
        how: NoRevert,
        message: &str,
    ) -> (Phase, String) {
        let m = match how {
            NoRevert::Held => format!(
                "{message}; no automatic revert while {}",
                done.target.mode.words()
            ),
            NoRevert::AutoOff => {
                format!("{message}; rollback.auto is off, so the server was left as it is")
            }
        };
        set_degraded(rec, &m);
        if how == NoRevert::AutoOff {
            // Not quarantined: a quarantine holds the last good revision, which would
            // move the server back on the next pass — the revert that is turned off.
            let fact = Fact::Failed {
                revision: done.number,
                message: &m,
                quarantine: None,
            };
            let effects = record::apply(rec, fact);
            self.publish_effects(rec, effects);
        }
        (Phase::Degraded, m)
    }

    /// Record revision `number` failed and quarantine its config commit.
    pub(super) fn fail_revision(
        &self,
        rec: &mut AppRecord,
        number: u64,
        config_commit: &str,
        m: &str,
    ) {
        let fact = Fact::Failed {
            revision: number,
            message: m,
            quarantine: Some(config_commit),
        };
        let effects = record::apply(rec, fact);
        self.publish_effects(rec, effects);
    }

    /// Every step succeeded: the target is live and healthy.
    pub(super) fn on_success(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        done: Executed,
    ) -> Ended {
        let number = done.number;
        let doc = &done.target.document;
        rec.live_revision = Some(number);
        rec.health = None;
        let message = match &done.target.mode {
            Mode::Follow if done.recheck.is_some() => format!(
                "revision {number} re-verified and healthy with the changed checks ({}); no process was touched",
                done.recheck.as_ref().map(|c| c.words()).unwrap_or_default()
            ),
            Mode::Follow => format!(
                "revision {number} live and healthy (app {}, release {})",
                short_sha(&doc.spec.source.commit),
                short_sha(&done.release)
            ),
            Mode::Pinned(pin) => format!(
                "pinned revision {} live and healthy (pinned by {}: {})",
                pin.revision, pin.by, pin.reason
            ),
            Mode::Hold { why } => format!(
                "repaired drift; holding the last good revision {number} while config commit {} is quarantined ({why})",
                short_sha(info.config_commit)
            ),
            Mode::Gated(v) => format!(
                "repaired drift; holding revision {number} while wave {}'s gate holds app {} back: {}",
                v.wave,
                short_sha(&done_commit(rec)),
                v.message
            ),
        };
        let fact = Fact::Healthy {
            revision: number,
            message: &message,
        };
        let effects = record::apply(rec, fact);
        self.publish_effects(rec, effects);
        self.prune_releases(doc, rec, None);
        let ready = !matches!(done.target.mode, Mode::Hold { .. });
        if ready {
            mark_ready(rec, &message);
            if matches!(done.target.mode, Mode::Gated(_)) {
                set_wave_held(rec, &message);
            }
        } else {
            rec.phase = Phase::Failed;
            set_stalled(rec, cr::QUARANTINED, &message);
        }
        Ended::ready_or(ready, done.records, rec.phase, message)
    }

    /// Nothing to do: say where the app stands.
    pub(super) fn settle(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        mode: &Mode,
        release: &str,
        processes_hash: &str,
    ) -> Ended {
        if let Some(message) = live_degraded(rec) {
            set_degraded(rec, &message);
            return Ended::not_ready(Phase::Degraded, message);
        }
        let live_matches = rec
            .live()
            .is_some_and(|r| r.release == release && r.revision.process_hash == processes_hash);
        let (ready, message) = standing(rec, mode, live_matches, info.config_commit);
        if ready {
            mark_ready(rec, &message);
            if matches!(mode, Mode::Gated(_)) {
                set_wave_held(rec, &message);
            }
        } else if matches!(mode, Mode::Hold { .. }) {
            rec.set_condition(
                ct::RECONCILING,
                ConditionStatus::False,
                cr::QUARANTINED,
                &message,
                &state::now(),
            );
        }
        Ended::ready_or(ready, Vec::new(), rec.phase, message)
    }

    /// Stop the pass: a person must act.
    pub(super) fn stop(
        &self,
        rec: &mut AppRecord,
        reason: &str,
        step: StepKind,
        message: &str,
    ) -> Ended {
        let phase = if step == StepKind::Health {
            Phase::Degraded
        } else {
            Phase::Failed
        };
        rec.phase = phase;
        record::last_error(rec, step, message, None);
        set_stalled(rec, reason, message);
        Ended::not_ready(phase, message.to_string())
    }

    pub(super) fn finish_pass(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        steps: Vec<StepRecord>,
        result: &str,
    ) -> Result<(), ReconcileError> {
        let ran_steps = !steps.is_empty();
        rec.steps_run += steps.len() as u64;
        rec.live_changes += crate::health::monitor::changes_live(&steps);
        JournalFile::new(&self.store.app_dir(&rec.name)).clear();
        rec.last_pass = Some(PassRecord {
            started_at: info.started_at,
            finished_at: state::now(),
            config_commit: info.config_commit.to_string(),
            steps,
            result: result.to_string(),
        });
        self.store.save(rec)?;
        // With the records saved, the files of revisions that left the history go. Only a
        // pass that runs steps opens a revision (the one way another leaves the history), so
        // a pass with nothing to do (every interval) does not read the two directories.
        if ran_steps {
            let pruned = self.store.prune_files(rec);
            if !pruned.logs.is_empty() || !pruned.backups.is_empty() {
                tracing::info!(app = %rec.name, logs = pruned.logs.len(), backups = pruned.backups.len(), "pruned the logs and backups of revisions no longer in the history");
            }
        }
        // The requests this record absorbed stay in requests.json until the next request is
        // recorded, which drops them ([`crate::state::requests::RequestFile::push`]); every
        // reader skips them meanwhile.
        Ok(())
    }

    /// Report on `app` a pass that could not finish (an error reading the records or the
    /// server, or a panic): Failed, with why; the next trigger runs a pass again.
    pub async fn record_pass_failure(&self, app: &str, config_commit: &str, message: &str) {
        let handle = self.handles.get(app);
        let _guard = handle.lock.lock().await;
        let mut rec = match self.store.load(app) {
            Ok(rec) => rec,
            Err(e) => {
                warn!(app, "could not record the failed pass ({message}): {e}");
                return;
            }
        };
        let was = rec.phase;
        rec.phase = Phase::Failed;
        set_stalled(&mut rec, cr::PASS_FAILED, message);
        let info = PassInfo {
            started_at: state::now(),
            config_commit,
            file: None,
            text: None,
        };
        if let Err(e) = self.finish_pass(&mut rec, &info, Vec::new(), message) {
            warn!(app, "could not record the failed pass: {e}");
        }
        if was != rec.phase {
            self.emit(
                &rec,
                EventKind::PhaseChanged,
                rec.live_revision,
                format!("{was:?} → Failed: {message}"),
            );
        }
        self.publish_app_metrics(&rec);
    }
}

/// A live revision that fails (the monitor's evidence), or whose health-only change's
/// check is suspect: Degraded with why, though there is nothing to apply.
fn live_degraded(rec: &AppRecord) -> Option<String> {
    if let Some(evidence) = record::live_failing(rec) {
        // A revision left live without blame keeps saying why (a suspect check, a
        // rollout that failed every round) while it fails.
        return Some(match rec.live().filter(|l| l.not_blamed) {
            Some(l) => format!("{evidence}; nothing to apply ({})", l.revision.message),
            None => format!("{evidence}; nothing to apply"),
        });
    }
    rec.live().filter(|l| !l.suspect_checks.is_empty()).map(|live| {
        format!(
            "the check {} of the last health-only config commit fails against live revision {}, whose release is not blamed: the document's check is suspect (fix it in a new config commit); nothing to apply",
            live.suspect_checks.join(", "),
            live.revision.number
        )
    })
}

/// Where an app with nothing to apply stands under `mode`: ready, and why.
fn standing(
    rec: &AppRecord,
    mode: &Mode,
    live_matches: bool,
    config_commit: &str,
) -> (bool, String) {
    let live_healthy = live_matches
        && rec
            .live()
            .is_some_and(|r| r.revision.outcome == Outcome::Healthy);
    match mode {
        Mode::Follow if live_healthy => (true, "up to date".to_string()),
        Mode::Follow if live_matches => {
            let why = rec
                .live()
                .map(|r| r.revision.message.clone())
                .unwrap_or_default();
            (false, format!("live, but not healthy: {why}"))
        }
        // First sight of a server that already runs what is desired (e.g. records lost).
        Mode::Follow => (
            false,
            "live equals desired, but no revision has verified it".to_string(),
        ),
        Mode::Pinned(pin) => (
            live_healthy,
            format!(
                "pinned at revision {} by {} ({}); desired config commit {} is not applied",
                pin.revision,
                pin.by,
                pin.reason,
                short_sha(config_commit)
            ),
        ),
        Mode::Hold { why } => (
            false,
            format!(
                "holding the last good revision; config commit {} is quarantined: {why}",
                short_sha(config_commit)
            ),
        ),
        Mode::Gated(v) => (
            live_healthy,
            format!(
                "wave {} ({} of {}): {}; desired config commit {} is not applied yet",
                v.wave,
                v.wave_index + 1,
                v.waves,
                v.message,
                short_sha(config_commit)
            ),
        ),
    }
}

/// The app commit a pass was asked for (the desired one), for messages.
fn done_commit(rec: &AppRecord) -> String {
    rec.desired_app_commit.clone().unwrap_or_default()
}

/// A wave gate holds the desired app commit back: the app is Ready on what it runs, and
/// reconciling towards the commit (Reconciling, reason `WaveHeld`).
fn set_wave_held(rec: &mut AppRecord, message: &str) {
    rec.set_condition(
        ct::RECONCILING,
        ConditionStatus::True,
        cr::WAVE_HELD,
        message,
        &state::now(),
    );
}

/// What a failure means ([`decide::decide_failure`]) and how a re-verification's failure
/// reads. A re-verification's checks become the live revision's (the monitor probes them
/// from now on), unless the pass is retried or superseded (the next pass re-verifies).
fn read_failure(rec: &mut AppRecord, done: &Executed, err: &StepError) -> (OnFailure, Recheck) {
    let recheck = match &done.recheck {
        Some(change) if err.step == StepKind::Verify && err.class == ErrorClass::Stalled => {
            change.read_failure(&done.failed_checks)
        }
        _ => Recheck::No,
    };
    let facts = Facts {
        mode: (&done.target.mode).into(),
        ended: decide::Ended::Failed {
            step: err.step,
            class: err.class,
        },
        switched: done.switched,
        failing_before: done.failing_before.is_some(),
        auto_revert: done.target.document.spec.rollback.auto,
        recheck,
    };
    let decision = decide::decide_failure(facts, err.step, err.class);
    if done.recheck.is_some() && !matches!(decision, OnFailure::Retry | OnFailure::Superseded) {
        adopt_checks(rec, done.number, done);
    }
    let message = format!("{} failed: {}", err.step, err.message);
    warn!(app = %rec.name, revision = done.number, step = %err.step, ?decision, "{message}");
    record::last_error(rec, err.step, &err.message, err.tail.clone());
    if done.switched {
        rec.live_revision = Some(done.number);
    }
    (decision, recheck)
}

/// Why a revision that failed stays live without blame.
fn not_blamed_message(
    done: &Executed,
    err: &StepError,
    config_commit: &str,
    message: &str,
) -> String {
    let number = done.number;
    if let Some(change) = &done.recheck {
        // An inconclusive re-verification after a change of only the checks: nothing
        // was touched, so the live revision keeps its outcome (a Healthy one stays the
        // last good revision); Degraded until its checks pass.
        return format!(
            "{message}; config commit {} changed only spec.health ({}) and its checks did not conclude against revision {number}, whose release and processes it did not touch: revision {number} keeps its outcome; Degraded until the checks pass",
            short_sha(config_commit),
            change.words(),
        );
    }
    let rounds = done.rounds;
    match (&done.failing_before, err.class) {
        // It failed every round of its own verification: say so, loudly. It stays (the
        // evidence says the live release was failing the same way), Degraded until its
        // checks pass or a person pins, retries or commits a fix.
        (Some(before), ErrorClass::Stalled) if rounds.passed == 0 => format!(
            "{message}; revision {number} FAILED EVERY ROUND of its verification ({} failed, none passed) and stays live only because {before} before this rollout: not blamed, not reverted; Degraded until its checks pass — pin a good revision, retry, or commit a fix",
            rounds.failed
        ),
        (Some(before), ErrorClass::Stalled) => format!(
            "{message}; the checks were already failing before this rollout ({before}), so revision {number} is not blamed and not reverted"
        ),
        _ => format!(
            "{message}; revision {number} stays live, is not reverted, and becomes Healthy once its checks pass (or pin/retry)"
        ),
    }
}

/// A health-only change's changed check failed: the check is suspect. Returns the message
/// and the suspect checks.
fn check_suspect_message(
    done: &Executed,
    config_commit: &str,
    message: &str,
) -> (String, Vec<String>) {
    let number = done.number;
    let change = done.recheck.as_ref().expect("a re-verification");
    let suspect: Vec<String> = done
        .failed_checks
        .iter()
        .filter(|c| change.judges_anew(c))
        .cloned()
        .collect();
    let m = format!(
        "{message}; config commit {} changed only spec.health ({}) and the changed check {} fails against revision {number}, whose release and processes it did not touch: the document's check is suspect, not the release. Revision {number} keeps its outcome; not reverted, not quarantined; Degraded until the checks pass (fix the check in a new config commit)",
        short_sha(config_commit),
        change.words(),
        suspect.join(", "),
    );
    (m, suspect)
}

/// A health-only change's unchanged checks failed: the live release fails by itself.
fn live_failing_message(done: &Executed, config_commit: &str, message: &str) -> String {
    let change = done.recheck.as_ref().expect("a re-verification");
    format!(
        "{message}; config commit {} changed only spec.health ({}), but what fails ({}) did not change: live revision {} is failing by itself. Nothing was touched or quarantined; the monitor judges it (a regression within rollback.window is reverted)",
        short_sha(config_commit),
        change.words(),
        done.failed_checks.join(", "),
        done.number,
    )
}

/// A re-verification's document (its new `spec.health`) becomes revision `number`'s, and
/// the monitor's record of the old checks is dropped: it starts counting the new ones.
fn adopt_checks(rec: &mut AppRecord, number: u64, done: &Executed) {
    if let Some(entry) = rec.revision_mut(number) {
        entry.document = done.target.document.clone();
        // New checks: the old ones' suspicion goes (a failure sets it again).
        entry.suspect_checks.clear();
    }
    rec.health = None;
}

/// What the steps tell about the revision, whatever the outcome: the rounds its
/// verification counted, when it went live, the backup it took.
fn note_execution(rec: &mut AppRecord, done: &Executed) {
    let Some(entry) = rec.revision_mut(done.number) else {
        return;
    };
    let succeeded = |r: &&StepRecord| r.result == StepResult::Succeeded;
    if !done.rounds.is_empty() && entry.revision.outcome == Outcome::Progressing {
        entry.revision.rounds = done.rounds;
    }
    if entry.revision.live_at.is_none()
        && let Some(first) = done
            .records
            .iter()
            .filter(succeeded)
            .find(|r| !r.step.leaves_live_alone())
    {
        entry.revision.live_at = Some(first.started_at);
    }
    if let Some(file) = &done.backup {
        entry.backup = Some(file.display().to_string());
    }
}

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

use super::decide::{self, Decision, Ended, ErrorClass, Facts, NoRevert, Recheck};
use super::execute::StepError;
use super::journal::JournalFile;
use super::record::{self, conclude, mark_ready, quarantine, set_degraded, set_stalled};
use super::target::Mode;
use super::{AppHandle, AppResult, Controller, Executed, PassInfo, ReconcileError};
use crate::plan::short_sha;
use crate::runtime::events::EventKind;
use crate::state::{self, AppRecord};

impl Controller {
    /// Decide what the steps' outcome means and record it.
    pub(super) async fn conclude_pass(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        handle: &Arc<AppHandle>,
        done: Executed,
        outcome: Result<(), StepError>,
    ) -> Result<AppResult, ReconcileError> {
        let number = done.number;
        note_execution(rec, &done);
        let err = match outcome {
            Ok(()) => {
                if done.recheck.is_some() {
                    adopt_checks(rec, number, &done);
                }
                return self.on_success(rec, info, done);
            }
            Err(e) => e,
        };
        let recheck = match &done.recheck {
            Some(change) if err.step == StepKind::Verify && err.class == ErrorClass::Stalled => {
                change.read_failure(&done.failed_checks)
            }
            _ => Recheck::No,
        };
        let decision = decide::decide(Facts {
            mode: (&done.target.mode).into(),
            ended: Ended::Failed {
                step: err.step,
                class: err.class,
            },
            switched: done.switched,
            failing_before: done.failing_before.is_some(),
            auto_revert: done.target.document.spec.rollback.auto,
            recheck,
        });
        // A re-verification's checks become the live revision's (the monitor probes them
        // from now on), unless the pass is retried or superseded (the next pass re-verifies).
        if done.recheck.is_some() && !matches!(decision, Decision::Retry | Decision::Superseded) {
            adopt_checks(rec, number, &done);
        }
        let message = format!("{} failed: {}", err.step, err.message);
        warn!(app = %rec.name, revision = number, step = %err.step, ?decision, "{message}");
        record::last_error(rec, err.step, &err.message, err.tail.clone());
        if done.switched {
            rec.live_revision = Some(number);
        }
        let follows = done.target.mode.follows();
        let config_commit = info.config_commit;
        let mut records = done.records;
        let (phase, message) = match decision {
            // `decide` gives the success decisions only when every step succeeded; were a
            // failure ever to map to one, retrying is the safe reading.
            Decision::Retry
            | Decision::Healthy
            | Decision::PinnedReady
            | Decision::HoldRepaired => {
                record::set_retrying(rec, &message);
                (Phase::Progressing, message)
            }
            Decision::Superseded => {
                let m = format!("revision {number} {}", err.message);
                if follows
                    && rec
                        .revision(number)
                        .is_some_and(|r| r.revision.outcome == Outcome::Progressing)
                {
                    conclude(rec, number, Outcome::Superseded, &err.message, None);
                    self.count_rollout(&rec.name, "superseded");
                }
                rec.last_error = None;
                rec.phase = Phase::Progressing;
                self.emit(rec, EventKind::RolloutSuperseded, Some(number), m.clone());
                self.finish_pass(rec, info, records, &m)?;
                return Ok(AppResult::Superseded { message: m });
            }
            // An inconclusive re-verification after a change of only the checks: nothing
            // was touched, so the live revision keeps its outcome (a Healthy one stays the
            // last good revision); Degraded until its checks pass.
            Decision::NotBlamed if done.recheck.is_some() => {
                let change = done.recheck.as_ref().expect("a re-verification");
                let m = format!(
                    "{message}; config commit {} changed only spec.health ({}) and its checks did not conclude against revision {number}, whose release and processes it did not touch: revision {number} keeps its outcome; Degraded until the checks pass",
                    short_sha(config_commit),
                    change.words(),
                );
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
            Decision::NotBlamed => {
                let rounds = done.rounds;
                let m = match (&done.failing_before, err.class) {
                    // It failed every round of its own verification: say so, loudly. It stays
                    // (the evidence says the live release was failing the same way), Degraded
                    // until its checks pass or a person pins, retries or commits a fix.
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
                };
                record::not_blamed(rec, number, &m, None);
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
            Decision::FailUntouched => {
                let m = format!("{message}; the live release was not touched");
                set_stalled(rec, record::reason_for(err.step), &m);
                if follows {
                    self.fail_revision(rec, number, config_commit, &m);
                }
                (Phase::Failed, m)
            }
            Decision::FailNoRevert(NoRevert::Held) => {
                let m = format!(
                    "{message}; no automatic revert while {}",
                    done.target.mode.words()
                );
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
            Decision::FailNoRevert(NoRevert::AutoOff) => {
                let m = format!("{message}; rollback.auto is off, so the server was left as it is");
                set_degraded(rec, &m);
                // Not quarantined: a quarantine holds the last good revision, which would
                // move the server back on the next pass — the revert that is turned off.
                conclude(rec, number, Outcome::Failed, &m, None);
                self.count_rollout(&rec.name, "failed");
                (Phase::Degraded, m)
            }
            Decision::Revert => {
                self.revert(rec, number, &message, &mut records, handle, false, None)
                    .await
            }
            Decision::CheckSuspect => {
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
                record::suspect(rec, number, suspect);
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
            Decision::LiveFailing => {
                let change = done.recheck.as_ref().expect("a re-verification");
                let m = format!(
                    "{message}; config commit {} changed only spec.health ({}), but what fails ({}) did not change: live revision {number} is failing by itself. Nothing was touched or quarantined; the monitor judges it (a regression within rollback.window is reverted)",
                    short_sha(config_commit),
                    change.words(),
                    done.failed_checks.join(", "),
                );
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
        };
        if phase == Phase::Degraded {
            self.emit(rec, EventKind::Degraded, Some(number), message.clone());
        }
        if err.class == ErrorClass::Stalled && recheck == Recheck::No {
            self.emit(
                rec,
                EventKind::RolloutFailed,
                Some(number),
                format!("{} failed: {}", err.step, err.message),
            );
        }
        rec.phase = phase;
        // Prune after a failure too, not only after the next success: the unsealed
        // releases of earlier failed builds go; this pass's own stays for a person to look
        // at until the next pass that ends a rollout.
        self.prune_releases(&done.target.document, rec, Some(&done.release));
        self.finish_pass(rec, info, records, &message)?;
        Ok(AppResult::NotReady { phase, message })
    }

    /// Record revision `number` failed and quarantine its config commit.
    pub(super) fn fail_revision(
        &self,
        rec: &mut AppRecord,
        number: u64,
        config_commit: &str,
        m: &str,
    ) {
        conclude(rec, number, Outcome::Failed, m, None);
        quarantine(rec, number, config_commit, m);
        self.count_rollout(&rec.name, "failed");
    }

    /// Every step succeeded: the target is live and healthy.
    pub(super) fn on_success(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        done: Executed,
    ) -> Result<AppResult, ReconcileError> {
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
        };
        if rec
            .revision(number)
            .is_some_and(|r| r.revision.outcome != Outcome::Healthy)
        {
            conclude(rec, number, Outcome::Healthy, "healthy", None);
            self.emit(
                rec,
                EventKind::RolloutHealthy,
                Some(number),
                message.clone(),
            );
            self.count_rollout(&rec.name, "healthy");
        }
        self.prune_releases(doc, rec, None);
        let steps = done.records.len();
        let ready = !matches!(done.target.mode, Mode::Hold { .. });
        if ready {
            mark_ready(rec, &message);
        } else {
            rec.phase = Phase::Failed;
            set_stalled(rec, cr::QUARANTINED, &message);
        }
        self.finish_pass(rec, info, done.records, &message)?;
        Ok(if ready {
            AppResult::Ready { steps }
        } else {
            AppResult::NotReady {
                phase: rec.phase,
                message,
            }
        })
    }

    /// Nothing to do: say where the app stands.
    pub(super) fn settle(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        mode: &Mode,
        release: &str,
        processes_hash: &str,
    ) -> Result<AppResult, ReconcileError> {
        let live_matches = rec
            .live()
            .is_some_and(|r| r.release == release && r.revision.process_hash == processes_hash);
        if let Some(evidence) = record::live_failing(rec) {
            // A revision left live without blame keeps saying why (a suspect check, a
            // rollout that failed every round) while it fails.
            let message = match rec.live().filter(|l| l.not_blamed) {
                Some(l) => format!("{evidence}; nothing to apply ({})", l.revision.message),
                None => format!("{evidence}; nothing to apply"),
            };
            set_degraded(rec, &message);
            self.finish_pass(rec, info, Vec::new(), &message)?;
            return Ok(AppResult::NotReady {
                phase: Phase::Degraded,
                message,
            });
        }
        if let Some(live) = rec.live().filter(|l| !l.suspect_checks.is_empty()) {
            let message = format!(
                "the check {} of the last health-only config commit fails against live revision {}, whose release is not blamed: the document's check is suspect (fix it in a new config commit); nothing to apply",
                live.suspect_checks.join(", "),
                live.revision.number
            );
            set_degraded(rec, &message);
            self.finish_pass(rec, info, Vec::new(), &message)?;
            return Ok(AppResult::NotReady {
                phase: Phase::Degraded,
                message,
            });
        }
        let live_healthy = live_matches
            && rec
                .live()
                .is_some_and(|r| r.revision.outcome == Outcome::Healthy);
        let (ready, message) = match mode {
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
                    short_sha(info.config_commit)
                ),
            ),
            Mode::Hold { why } => (
                false,
                format!(
                    "holding the last good revision; config commit {} is quarantined: {why}",
                    short_sha(info.config_commit)
                ),
            ),
        };
        if ready {
            mark_ready(rec, &message);
        } else if matches!(mode, Mode::Hold { .. }) {
            rec.set_condition(
                ct::RECONCILING,
                ConditionStatus::False,
                cr::QUARANTINED,
                &message,
                &state::now(),
            );
        }
        self.finish_pass(rec, info, Vec::new(), &message)?;
        Ok(if ready {
            AppResult::Ready { steps: 0 }
        } else {
            AppResult::NotReady {
                phase: rec.phase,
                message,
            }
        })
    }

    /// Stop the pass: a person must act.
    pub(super) fn stop(
        &self,
        rec: &mut AppRecord,
        info: &PassInfo<'_>,
        reason: &str,
        step: StepKind,
        message: &str,
    ) -> Result<AppResult, ReconcileError> {
        let phase = if step == StepKind::Health {
            Phase::Degraded
        } else {
            Phase::Failed
        };
        rec.phase = phase;
        record::last_error(rec, step, message, None);
        set_stalled(rec, reason, message);
        self.finish_pass(rec, info, Vec::new(), message)?;
        Ok(AppResult::NotReady {
            phase,
            message: message.to_string(),
        })
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
    if let Some(b) = done
        .records
        .iter()
        .filter(succeeded)
        .find(|r| r.step == StepKind::Backup)
    {
        entry.backup = Some(b.target.clone());
    }
}

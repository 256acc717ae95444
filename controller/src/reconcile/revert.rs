//! Going back: which revision (the last good one, see [`target::good_revision`]), what
//! the failed revision's `onRevert` means for the database (keep; down-migrate; restore
//! the backup), and when to refuse (nothing good; a migration that cannot be undone) —
//! decided by the pure [`plan_revert`]; then executed: switch back, apply the good
//! revision's processes, treat the schema, verify the good revision again.

use std::sync::Arc;

use shipshape_spec::App;
use shipshape_spec::app::OnRevert;
use shipshape_spec::status::{
    ConditionStatus, Phase, Regression, StepKind, StepRecord, condition_reasons as cr,
    condition_types as ct,
};
use tracing::warn;

use super::conclude::Ended;
use super::decide::{self, ErrorClass, RegressionDecision};
use super::execute::{self, Run, Secrets, StepError};
use super::journal::{Journal, JournalFile, Reverting};
use super::record::{self, Fact, set_degraded, set_stalled};
use super::target::{self, Good};
use super::verify::Cancel;
use super::{AppHandle, Controller};
use crate::migrate;
use crate::plan::{self, Plan, PlannedStep, Step, short_sha};
use crate::runtime::events::EventKind;
use crate::state::{self, AppRecord, RevisionEntry};

/// How to go back from a failed revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RevertPlan {
    /// The revision to go back to.
    pub to: RevisionEntry,
    /// Why it is good.
    pub good: Good,
    /// The schema step (down-migration or restore) and the document to run it with.
    pub migration: Option<(PlannedStep, App)>,
}

/// The revert under way: from which revision, why, and whether the monitor saw it regress.
struct RevertOf<'a> {
    failed: u64,
    why: &'a str,
    regression: bool,
    /// The failed revision's config commit.
    config_commit: String,
}

/// Why the controller does not go back by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertRefusal {
    /// The failed revision left the history.
    Gone(u64),
    /// No revision is good to go back to.
    NothingGood,
    /// Going back would cross a migration that cannot be undone here.
    Irreversible {
        /// The good revision.
        to: u64,
        /// Its level.
        to_level: Option<String>,
        /// The failed revision's level.
        from_level: String,
        /// The failed revision's `onRevert`.
        how: OnRevert,
        /// `restore` was asked for, but no backup was taken on this host.
        no_backup: bool,
    },
}

impl std::fmt::Display for RevertRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevertRefusal::Gone(n) => write!(f, "revision {n} is no longer in the history"),
            RevertRefusal::NothingGood => write!(
                f,
                "there is no earlier healthy (or last known good) revision to go back to"
            ),
            RevertRefusal::Irreversible {
                to,
                to_level,
                from_level,
                how,
                no_backup,
            } => write!(
                f,
                "REFUSING to revert to revision {to} across migration {} → {from_level}: onRevert is {how:?} and it cannot be undone here{}",
                to_level.as_deref().unwrap_or("(none)"),
                if *no_backup {
                    " (no backup was taken on this host)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// Plan going back from revision `failed`.
///
/// # Errors
/// [`RevertRefusal`] when the controller must not go back by itself.
pub fn plan_revert(rec: &AppRecord, failed: u64) -> Result<RevertPlan, RevertRefusal> {
    let failed_entry = rec.revision(failed).ok_or(RevertRefusal::Gone(failed))?;
    let (good, kind) =
        target::good_revision(rec, Some(failed)).ok_or(RevertRefusal::NothingGood)?;
    let mut migration = None;
    if let Some(m) = &failed_entry.document.spec.migrations
        && failed_entry.revision.level != good.revision.level
    {
        let from = failed_entry.revision.level.clone().unwrap_or_default();
        let to = good.revision.level.clone();
        match (m.on_revert, &to) {
            (OnRevert::Keep, _) => {}
            (OnRevert::Down, Some(to)) if migrate::can_go_down(m) => {
                let mut down_doc = failed_entry.document.clone();
                if let Some(dm) = down_doc.spec.migrations.as_mut() {
                    dm.level = to.clone();
                }
                let step = PlannedStep {
                    step: Step::Migrate {
                        from: Some(from.clone()),
                        to: to.clone(),
                    },
                    reason: format!("onRevert: down, {from} → {to}"),
                };
                migration = Some((step, down_doc));
            }
            (OnRevert::Restore, _) if failed_entry.backup.is_some() => {
                let backup = failed_entry.backup.clone().expect("checked");
                let step = PlannedStep {
                    step: Step::Restore { backup },
                    reason: format!("onRevert: restore the backup taken before {from}"),
                };
                migration = Some((step, failed_entry.document.clone()));
            }
            (how, _) => {
                return Err(RevertRefusal::Irreversible {
                    to: good.revision.number,
                    to_level: good.revision.level.clone(),
                    from_level: from,
                    how,
                    no_backup: how == OnRevert::Restore,
                });
            }
        }
    }
    Ok(RevertPlan {
        to: good.clone(),
        good: kind,
        migration,
    })
}

impl Controller {
    /// The live revision regressed after it was declared healthy.
    pub(super) async fn on_regression(
        &self,
        rec: &mut AppRecord,
        reg: Regression,
        handle: &Arc<AppHandle>,
    ) -> Ended {
        let why = format!("revision {} regressed: {}", reg.revision, reg.reason);
        let Some(live) = rec.revision(reg.revision).cloned() else {
            return self.stop(rec, cr::DEGRADED, StepKind::Health, &why);
        };
        self.emit(rec, EventKind::Regressed, Some(reg.revision), why.clone());
        let mut records = Vec::new();
        let (phase, message) = match regression_kept(rec, &live) {
            Some(r) => {
                let m = format!("{why}; {r}");
                set_degraded(rec, &m);
                (Phase::Degraded, m)
            }
            None => {
                self.revert(rec, reg.revision, &why, &mut records, handle, true, None)
                    .await
            }
        };
        self.end_revert(rec, reg.revision, records, phase, message)
    }

    /// Finish the revert a stopped controller's journal `stopped` was in: the same revert,
    /// run again from what is observed, amended with what the journal says was done.
    pub(super) async fn resume_revert(
        &self,
        rec: &mut AppRecord,
        stopped: &Journal,
        handle: &Arc<AppHandle>,
    ) -> Ended {
        let r = stopped.reverting.as_ref().expect("a revert's journal");
        warn!(app = %rec.name, from = r.from, to = stopped.revision, "finishing the revert the controller stopped in");
        let mut records = Vec::new();
        let (phase, message) = self
            .revert(
                rec,
                r.from,
                &r.why,
                &mut records,
                handle,
                r.regression,
                Some(stopped),
            )
            .await;
        self.end_revert(rec, r.from, records, phase, message)
    }

    /// The end of a pass that went back (or refused to) from revision `from`.
    fn end_revert(
        &self,
        rec: &mut AppRecord,
        from: u64,
        records: Vec<StepRecord>,
        phase: Phase,
        message: String,
    ) -> Ended {
        if phase == Phase::Degraded {
            self.emit(rec, EventKind::Degraded, Some(from), message.clone());
        }
        rec.phase = phase;
        Ended::with_steps(records, phase, message)
    }

    /// Go back from revision `failed` to the last good revision. A failed rollout that
    /// cannot be reverted is still failed (and quarantined); a regressed revision that
    /// cannot be reverted stays what it was, reported Degraded. Returns the phase and the
    /// message to report. `stopped`: the journal of this same revert, which a controller
    /// stopped in.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn revert(
        &self,
        rec: &mut AppRecord,
        failed: u64,
        why: &str,
        records: &mut Vec<StepRecord>,
        handle: &Arc<AppHandle>,
        regression: bool,
        stopped: Option<&Journal>,
    ) -> (Phase, String) {
        let of = RevertOf {
            failed,
            why,
            regression,
            config_commit: rec
                .revision(failed)
                .map(|f| f.revision.config_commit.clone())
                .unwrap_or_default(),
        };
        let plan = match plan_revert(rec, failed) {
            Ok(p) => p,
            // Going back would cross a migration that cannot be undone here: the failed
            // revision stays live. Not quarantined: a quarantine holds the last good
            // revision, so the next pass would move the server back to it across that very
            // migration — the revert just refused.
            Err(refusal @ RevertRefusal::Irreversible { .. }) => {
                let m = format!("{why}; {refusal}");
                set_degraded(rec, &m);
                if !regression {
                    let fact = Fact::Failed {
                        revision: failed,
                        message: &m,
                        quarantine: None,
                    };
                    let effects = record::apply(rec, fact);
                    self.publish_effects(rec, effects);
                }
                return (Phase::Degraded, m);
            }
            Err(refusal) => return self.revert_failed(rec, &of, format!("{why}; {refusal}")),
        };
        let stopped = stopped.filter(|j| j.revision == plan.to.revision.number);
        let begun = self.begin_revert(rec, &of, &plan, stopped);
        let result = self
            .run_revert(rec, &plan, records, handle, &begun, stopped.is_some())
            .await;
        self.after_revert(rec, &of, &plan, result)
    }

    /// Journal, then quarantine: a controller that stops mid-revert must not roll it out
    /// again, and finishes the revert. Returns the journal begun.
    fn begin_revert(
        &self,
        rec: &mut AppRecord,
        of: &RevertOf<'_>,
        plan: &RevertPlan,
        stopped: Option<&Journal>,
    ) -> Journal {
        let to = plan.to.revision.number;
        let reverting = Reverting {
            from: of.failed,
            why: of.why.to_string(),
            regression: of.regression,
        };
        let journal = JournalFile::new(&self.store.app_dir(&rec.name));
        let begun = Journal::new(to, Vec::new(), stopped, Some(reverting));
        if let Err(e) = journal.start(&begun) {
            warn!(app = %rec.name, journal = %journal.path().display(), "could not write the in-flight journal of the revert: {e}");
        }
        let note = format!("{}; reverting to revision {to}", of.why);
        let fact = Fact::Reverting {
            from: of.failed,
            config_commit: &of.config_commit,
            message: &note,
        };
        let effects = record::apply(rec, fact);
        self.publish_effects(rec, effects);
        if let Err(e) = self.store.save(rec) {
            warn!(app = %rec.name, "could not record the revert before starting it: {e}");
        }
        begun
    }

    /// Record how the revert's steps ended: the phase and the message to report.
    fn after_revert(
        &self,
        rec: &mut AppRecord,
        of: &RevertOf<'_>,
        plan: &RevertPlan,
        result: Result<(), StepError>,
    ) -> (Phase, String) {
        let (why, to) = (of.why, plan.to.revision.number);
        let labels = |r: &str| vec![("app", rec.name.clone()), ("result", r.to_string())];
        match result {
            Ok(()) => {
                let m = reverted_message(why, plan);
                self.hub
                    .metrics
                    .inc("shipshape_reverts_total", labels("healthy"), 1.0);
                rec.live_revision = Some(to);
                rec.health = None;
                rec.set_condition(
                    ct::HEALTHY,
                    ConditionStatus::True,
                    cr::REVERTED_HEALTHY,
                    &m,
                    &state::now(),
                );
                set_stalled(rec, cr::ROLLED_BACK, &m);
                let fact = Fact::Reverted {
                    from: of.failed,
                    to,
                    config_commit: &of.config_commit,
                    message: &m,
                };
                let effects = record::apply(rec, fact);
                self.publish_effects(rec, effects);
                (Phase::Failed, m)
            }
            // A request stopped it (a pin elsewhere before a live step, or any request
            // during its verification): not a failure; the next pass converges.
            Err(e) if e.class == ErrorClass::Superseded => {
                let m = format!(
                    "{why}; reverting to revision {to} was stopped: {}",
                    e.message
                );
                warn!(app = %rec.name, "{m}");
                record::set_progressing(rec, cr::SUPERSEDED, &m);
                (Phase::Progressing, m)
            }
            Err(e) => {
                self.hub
                    .metrics
                    .inc("shipshape_reverts_total", labels("failed"), 1.0);
                let m = format!(
                    "{why}; reverting to revision {to} failed too ({} failed: {}); stopped, a person must act",
                    e.step, e.message
                );
                self.revert_failed(rec, of, m)
            }
        }
    }

    /// The revert did not happen, or failed: Degraded; a failed rollout (not a
    /// regression) is failed and quarantined.
    fn revert_failed(&self, rec: &mut AppRecord, of: &RevertOf<'_>, m: String) -> (Phase, String) {
        set_degraded(rec, &m);
        if !of.regression {
            self.fail_revision(rec, of.failed, &of.config_commit, &m);
        }
        (Phase::Degraded, m)
    }

    /// Carry out `plan` (from revision `journal.reverting.from`): switch back and apply the
    /// good revision's processes, treat the schema, verify the good revision. `records`
    /// gets every step. `resuming`: `journal` carries what a stopped controller did of this
    /// revert (hooks run, pm2's list unsaved, the schema treated).
    pub(super) async fn run_revert(
        &self,
        rec: &mut AppRecord,
        plan: &RevertPlan,
        records: &mut Vec<StepRecord>,
        handle: &std::sync::Arc<AppHandle>,
        journal: &Journal,
        resuming: bool,
    ) -> Result<(), StepError> {
        let failed = journal.reverting.as_ref().map_or(0, |r| r.from);
        warn!(app = %rec.name, from = failed, to = plan.to.revision.number, "reverting to the last good revision");
        let log = self.log_path(&rec.name, failed);
        let pins = super::pins::PinWatch::new(&self.store, rec, handle, plan.to.revision.number);
        let cancel = || Cancel::new(handle, &self.ports, None).with_pins(pins.clone());
        let (back_doc, secrets, back) = self.plan_back(rec, plan, journal, resuming).await?;
        // The schema step, unless the stopped revert did it.
        let migration = plan
            .migration
            .as_ref()
            .filter(|(s, _)| !(resuming && journal.did(s.step.kind())));
        let planned = back
            .steps
            .iter()
            .map(|s| s.step.kind())
            .chain(migration.map(|(s, _)| s.step.kind()))
            .chain([StepKind::Verify])
            .collect();
        let file = JournalFile::new(&self.store.app_dir(&rec.name));
        let started = Journal::new(
            journal.revision,
            planned,
            Some(journal),
            journal.reverting.clone(),
        );
        if let Err(e) = file.start(&started) {
            warn!(app = %rec.name, journal = %file.path().display(), "could not write the in-flight journal of the revert: {e}");
        }
        // Where pm2's log files stood before the good revision's processes came back: its
        // verification tells what they wrote since.
        let mut output = None;
        let result = self
            .run_into(
                &back_doc,
                &back,
                &secrets,
                &log,
                cancel(),
                rec,
                records,
                &mut output,
            )
            .await;
        result?;
        rec.live_revision = Some(plan.to.revision.number);
        if let Some((step, doc)) = migration {
            let release = rec
                .revision(failed)
                .map(|f| f.release.clone())
                .unwrap_or_default();
            let failed_secrets = Secrets::load(doc).map_err(env_error)?;
            let mig = one_step(release, step.clone());
            let result = self
                .run_into(
                    doc,
                    &mig,
                    &failed_secrets,
                    &log,
                    cancel(),
                    rec,
                    records,
                    &mut None,
                )
                .await;
            result?;
        }
        self.verify_reverted(rec, plan, &log, cancel(), records, &mut output)
            .await
    }

    /// Verify the revision gone back to. It was good before: missing data (e.g. metrics
    /// not scraped yet after the switch) does not prove it bad, and the revert stands.
    async fn verify_reverted(
        &self,
        rec: &mut AppRecord,
        plan: &RevertPlan,
        log: &std::path::Path,
        cancel: Cancel,
        records: &mut Vec<StepRecord>,
        output: &mut Option<crate::pm2::logs::Watch>,
    ) -> Result<(), StepError> {
        let to = &plan.to;
        let reason = format!(
            "the reverted-to revision {} must be healthy too",
            to.revision.number
        );
        let step = PlannedStep {
            step: Step::Verify,
            reason,
        };
        let verify = one_step(to.release.clone(), step);
        let good_secrets = Secrets::load(&to.document).map_err(env_error)?;
        let result = self
            .run_into(
                &to.document,
                &verify,
                &good_secrets,
                log,
                cancel,
                rec,
                records,
                output,
            )
            .await;
        match result {
            Err(e) if e.class == ErrorClass::Inconclusive => {
                warn!(app = %rec.name, "the reverted-to revision's verification was inconclusive: {}", e.message);
                Ok(())
            }
            other => other,
        }
    }

    /// The plan back to the good revision's release and processes (without its migration
    /// step, and without verifying: the revert verifies last), amended with what the
    /// stopped revert did when `resuming`.
    async fn plan_back(
        &self,
        rec: &mut AppRecord,
        plan: &RevertPlan,
        journal: &Journal,
        resuming: bool,
    ) -> Result<(App, Secrets, Plan), StepError> {
        let mut back_doc = plan.to.document.clone();
        back_doc.spec.migrations = None;
        let secrets = Secrets::load(&back_doc).map_err(env_error)?;
        let mut observed = self
            .observe(&back_doc, rec, &secrets)
            .await
            .map_err(|e| StepError::new(StepKind::Observe, ErrorClass::Transient, e.to_string()))?;
        // The slot traffic leaves ran the failed revision: drained and stopped, not warm.
        if let Some(t) = observed.traffic.as_mut() {
            t.leaving = crate::traffic::Leaving::Retire;
        }
        let mut back = plan::plan(&back_doc, &observed);
        if !back.blockers.is_empty() {
            let message = back.blockers.join("; ");
            return Err(StepError::new(StepKind::Plan, ErrorClass::Stalled, message));
        }
        if resuming {
            let amended = journal.amend(&mut back);
            if amended.hooks_applied {
                rec.hooks_applied = Some(execute::hooks_record(&back_doc, &back));
            }
        }
        back.steps.retain(|s| s.step != Step::Verify);
        Ok((back_doc, secrets, back))
    }

    /// Execute `plan` for `app`, moving its step records into `records` and the hooks'
    /// inputs into the record; `output` (what processes wrote since they were started) is
    /// handed to the run and taken back from it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_into(
        &self,
        app: &App,
        plan: &Plan,
        secrets: &Secrets,
        log: &std::path::Path,
        cancel: Cancel,
        rec: &mut AppRecord,
        records: &mut Vec<StepRecord>,
        output: &mut Option<crate::pm2::logs::Watch>,
    ) -> Result<(), StepError> {
        // Going back to a revision that was good: its windowed metrics may still carry the
        // failed revision's errors, so only the deadline can fail it (no fail fast).
        let mut run = Run::new(app, plan, secrets, log.to_path_buf(), cancel, false);
        run.output = output.take();
        let result = execute::execute(&self.tools(&app.metadata.name), &mut run).await;
        *output = run.output.take();
        records.append(&mut run.records);
        if let Some(h) = run.hooks_applied {
            rec.hooks_applied = Some(h);
        }
        result
    }
}

/// Why a regression of `live` is not reverted (pinned, `rollback.auto` off, outside
/// `rollback.window`), or `None`: revert it.
fn regression_kept(rec: &AppRecord, live: &RevisionEntry) -> Option<String> {
    let spec = &live.document.spec;
    let in_window = live.revision.finished_at.is_some_and(|t| {
        let age = t.until(state::now());
        age.to_std().unwrap_or_default() <= spec.rollback.window.std()
    });
    let decision = decide::decide_regression(rec.pin.is_some(), spec.rollback.auto, in_window);
    match (decision, &rec.pin) {
        (RegressionDecision::Revert, _) => None,
        (RegressionDecision::KeepPinned, Some(pin)) => Some(format!(
            "pinned by {} ({}): no automatic revert while pinned",
            pin.by, pin.reason
        )),
        (RegressionDecision::KeepAutoOff, _) => Some("rollback.auto is off".to_string()),
        (RegressionDecision::KeepOutsideWindow, _) | (RegressionDecision::KeepPinned, None) => {
            Some(format!(
                "it regressed more than rollback.window ({}) after it was declared healthy, so it is not reverted",
                spec.rollback.window
            ))
        }
    }
}

/// An env file that cannot be read, as the step error of a revert.
fn env_error(e: crate::envfile::EnvFileError) -> StepError {
    StepError::new(StepKind::EnvFile, ErrorClass::Stalled, e.to_string())
}

/// A plan of one step, for `release`.
fn one_step(release: String, step: PlannedStep) -> Plan {
    Plan {
        release,
        steps: vec![step],
        blockers: vec![],
        notes: vec![],
    }
}

/// The message of a finished revert.
pub fn reverted_message(why: &str, plan: &RevertPlan) -> String {
    let to = &plan.to.revision;
    match plan.good {
        Good::Healthy => format!(
            "{why}; reverted to revision {} (app {}), which is healthy",
            to.number,
            short_sha(&to.app_commit)
        ),
        Good::LastKnownGood => format!(
            "{why}; reverted to revision {} (app {}), {}",
            to.number,
            short_sha(&to.app_commit),
            plan.good.words()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::{entry, record};
    use shipshape_spec::app::Migrations;
    use shipshape_spec::status::{Outcome, Rounds};

    pub(super) fn with_migrations(
        mut e: RevisionEntry,
        level: &str,
        on_revert: &str,
    ) -> RevisionEntry {
        let m: Migrations = serde_json::from_value(serde_json::json!({
            "driver": "dbmate", "level": level, "onRevert": on_revert
        }))
        .unwrap();
        e.document.spec.migrations = Some(m);
        e.revision.level = Some(level.into());
        e
    }

    #[test]
    pub(super) fn a_revert_goes_to_the_last_good_revision_and_treats_the_schema_by_on_revert() {
        // (name, good level, failed level, onRevert, backup taken, expected)
        type Row = (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            bool,
            Result<Option<&'static str>, &'static str>,
        );
        let rows: Vec<Row> = vec![
            (
                "same level: nothing to undo",
                "001",
                "001",
                "keep",
                false,
                Ok(None),
            ),
            (
                "keep: the schema stays",
                "001",
                "002",
                "keep",
                false,
                Ok(None),
            ),
            (
                "down: migrate down",
                "001",
                "002",
                "down",
                false,
                Ok(Some("migrate")),
            ),
            (
                "restore with a backup",
                "001",
                "002",
                "restore",
                true,
                Ok(Some("restore")),
            ),
            (
                "restore without a backup",
                "001",
                "002",
                "restore",
                false,
                Err("no backup"),
            ),
        ];
        for (name, good_level, failed_level, how, backup, want) in rows {
            let mut rec = record();
            rec.revisions = vec![
                with_migrations(entry(1, Outcome::Healthy), good_level, how),
                with_migrations(entry(2, Outcome::Progressing), failed_level, how),
            ];
            if backup {
                rec.revisions[1].backup = Some("/b".into());
            }
            let got = plan_revert(&rec, 2);
            match (got, want) {
                (Ok(p), Ok(step)) => {
                    assert_eq!(p.to.revision.number, 1, "{name}");
                    assert_eq!(
                        p.migration.map(|(s, _)| s.step.kind().as_str()),
                        step,
                        "{name}"
                    );
                }
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "{name}: {e}")
                }
                (got, want) => panic!("{name}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    pub(super) fn a_revert_without_a_good_revision_is_refused_and_a_last_known_good_is_taken() {
        let mut rec = record();
        rec.revisions = vec![
            entry(1, Outcome::Superseded),
            entry(2, Outcome::Progressing),
        ];
        assert_eq!(plan_revert(&rec, 2), Err(RevertRefusal::NothingGood));
        assert_eq!(plan_revert(&rec, 7), Err(RevertRefusal::Gone(7)));
        rec.revisions[0].revision.rounds = Rounds {
            passed: 1,
            failed: 0,
        };
        let p = plan_revert(&rec, 2).unwrap();
        assert_eq!((p.to.revision.number, p.good), (1, Good::LastKnownGood));
        assert!(reverted_message("2 failing rounds in a row", &p).contains("last known good"));
    }
}

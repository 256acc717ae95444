//! The part of a pass before anything changes, written once: [`Controller::prepare`]
//! reads the records, the in-flight journal, the server and the releases, chooses what to
//! converge to ([`target::choose`]), plans, amends the plan with what a stopped pass did
//! ([`Journal::amend`]) and adds a verification to redo or a health-only recheck. It
//! changes nothing (neither the records nor anything live): the daemon's pass then
//! executes what it returns, and `shipshape plan` ([`Controller::preview`]) prints the
//! very same steps.

use shipshape_spec::App;
use shipshape_spec::status::{
    ConditionStatus, Regression, condition_reasons as cr, condition_types as ct,
};

use super::execute::{self, Secrets};
use super::journal::{self, Journal, JournalFile};
use super::publish::Note;
use super::recheck::{self, HealthChange};
use super::target::{self, Mode, NoTarget, RevisionChoice, Target};
use super::{Controller, ReconcileError, pins};
use crate::plan::{self, Plan, PlannedStep, Step};
use crate::state::{self, AppRecord};

/// The step reason of a verification that did not finish and is run again.
pub const REVERIFY_REASON: &str = "the rollout's verification did not finish (the controller stopped, a newer document came and went, or a pin stopped it); verifying again";

/// What a pass is about to do, decided before anything changes.
#[derive(Debug)]
pub enum Preparation {
    /// The monitor saw the live revision regress: the pass acts on that first (a revert,
    /// or Degraded).
    Regressed(Regression),
    /// Nothing to converge to: the pass stops and says why.
    NoTarget(NoTarget),
    /// A revert the controller stopped in, to the revision held anyway: the pass finishes
    /// it as a revert (see [`Controller::resume_revert`]).
    ResumeRevert(Journal),
    /// The env file cannot be read, nor the server observed: the pass stops.
    EnvFileUnreadable(String),
    /// A wave gate holds the desired app commit back and nothing is live here yet: the
    /// app waits, undeployed.
    Gated(Box<crate::gate::Verdict>),
    /// What to converge to and the steps to get there (see [`Prepared::next`]).
    Planned(Box<Prepared>),
}

/// A planned pass: the target, the final plan with every added step, and why it is so.
#[derive(Debug)]
pub struct Prepared {
    /// What the pass converges to.
    pub target: Target,
    /// The target's env file (empty when it cannot be read: see `env_problem`).
    pub secrets: Secrets,
    /// The plan with every step the pass runs, in order.
    pub plan: Plan,
    /// The processes' hash the plan converges to.
    pub hash: String,
    /// Why the env file cannot be read: the pass stops before any step.
    pub env_problem: Option<String>,
    /// The stopped pass of this same revision, whose journal amended the plan.
    pub stopped: Option<Journal>,
    /// What the journal changed in the plan.
    pub amended: journal::Amended,
    /// A verification that did not finish is run again.
    pub reverify: bool,
    /// Live may have changed before this pass (by the stopped pass, or before a
    /// verification that did not finish).
    pub resumed: bool,
    /// The pass only re-verifies the live release after a change of its `spec.health`.
    pub recheck: Option<HealthChange>,
    /// The wave gate's answer, when it was asked (a new app commit under `spec.rollout`).
    pub gate: Option<crate::gate::Verdict>,
}

/// What a planned pass does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Stop: the env file cannot be read.
    EnvFile(String),
    /// Stop: the plan has blockers (a person must act).
    Blocked(String),
    /// Nothing to run: say where the app stands.
    Settle,
    /// Run the plan's steps.
    Run,
}

impl Preparation {
    /// The wave gate's answer, when the pass asked it.
    pub fn gate(&self) -> Option<&crate::gate::Verdict> {
        match self {
            Preparation::Gated(v) => Some(v),
            Preparation::Planned(p) => p.gate.as_ref(),
            _ => None,
        }
    }
}

impl Prepared {
    /// What the pass does with this plan.
    pub fn next(&self) -> Next {
        if let Some(e) = &self.env_problem {
            Next::EnvFile(e.clone())
        } else if !self.plan.blockers.is_empty() {
            Next::Blocked(self.plan.blockers.join("; "))
        } else if self.plan.steps.is_empty() {
            Next::Settle
        } else {
            Next::Run
        }
    }

    /// The hooks the journal says are applied (every hook of the plan had run), to record.
    pub fn hooks_applied(&self) -> Option<String> {
        self.amended
            .hooks_applied
            .then(|| execute::hooks_record(&self.target.document, &self.plan))
    }
}

/// The pass's first bookkeeping, pure: what is desired, the stopped pass's journal as a
/// condition, and the document's pin (`spec.pin`) applied to the record's. Returns the
/// events to publish. `shipshape plan` applies it to a copy of the record, so it plans
/// against the pin the pass would set.
pub fn begin(
    rec: &mut AppRecord,
    desired: &App,
    config_commit: &str,
    stopped: Option<&Journal>,
) -> Vec<Note> {
    rec.desired_config_commit = Some(config_commit.to_string());
    rec.desired_app_commit = Some(desired.spec.source.commit.clone());
    rec.passes += 1;
    if let Some(j) = stopped {
        let what = j.describe();
        tracing::warn!(app = %rec.name, "resuming: {what}");
        rec.set_condition(
            ct::RECONCILING,
            ConditionStatus::True,
            cr::RESUMING,
            &what,
            &state::now(),
        );
    }
    pins::apply_document_pin(rec, desired).into_iter().collect()
}

impl Controller {
    /// Prepare a pass of `rec`'s app towards `desired` at `config_commit`, with the journal
    /// `stopped` a controller that stopped mid-pass left behind. Reads the server and the
    /// releases; changes nothing.
    ///
    /// # Errors
    /// [`ReconcileError`] when the server or the releases cannot be read.
    pub async fn prepare(
        &self,
        rec: &AppRecord,
        desired: &App,
        config_commit: &str,
        stopped: Option<Journal>,
    ) -> Result<Preparation, ReconcileError> {
        if let Some(reg) = &rec.regression {
            return Ok(Preparation::Regressed(reg.clone()));
        }
        let target = match target::choose(rec, desired, config_commit) {
            Ok(t) => t,
            Err(no) => return Ok(Preparation::NoTarget(no)),
        };
        // A new app commit under `spec.rollout` waits for its wave's gate.
        let gate = self.check_gate(rec, &target, config_commit).await;
        let target = match &gate {
            Some(v) if !v.open() => match target::gate_hold(rec, v.clone()) {
                Some(held) => held,
                None => return Ok(Preparation::Gated(Box::new(v.clone()))),
            },
            _ => target,
        };
        if let Some(j) = stopped.as_ref()
            && resumes_revert(rec, &target, j)
        {
            return Ok(Preparation::ResumeRevert(j.clone()));
        }
        // An unreadable env file stops the pass, but the rest is still worth showing.
        let (secrets, env_problem) = match Secrets::load(&target.document) {
            Ok(s) => (s, None),
            Err(e) => (Secrets::default(), Some(e.to_string())),
        };
        let observed = match self.observe(&target.document, rec, &secrets).await {
            Ok(o) => o,
            Err(_) if env_problem.is_some() => {
                return Ok(Preparation::EnvFileUnreadable(
                    env_problem.unwrap_or_default(),
                ));
            }
            Err(e) => return Err(e),
        };
        let the_plan = plan::plan(&target.document, &observed);
        let hash = plan::processes_hash(&target.document, &secrets.env);
        let mut prepared = Prepared {
            target,
            secrets,
            plan: the_plan,
            hash,
            env_problem,
            stopped: None,
            amended: journal::Amended::default(),
            reverify: false,
            resumed: false,
            recheck: None,
            gate,
        };
        amend(&mut prepared, rec, config_commit, stopped);
        add_verifications(&mut prepared, rec, config_commit);
        Ok(Preparation::Planned(Box::new(prepared)))
    }

    /// What a pass of `desired` would do now, for `shipshape plan`: [`Controller::prepare`]
    /// on a copy of the records as the pass would begin them, with the journal left behind
    /// read (not taken). Returns the copy too (for the hold's words). Changes nothing.
    ///
    /// # Errors
    /// [`ReconcileError`] when the records, the server or the releases cannot be read.
    pub async fn preview(
        &self,
        desired: &App,
        config_commit: &str,
    ) -> Result<(AppRecord, Preparation), ReconcileError> {
        let mut view = self.store.load(&desired.metadata.name)?;
        let stopped = JournalFile::new(&self.store.app_dir(&view.name)).read();
        let _ = begin(&mut view, desired, config_commit, stopped.as_ref());
        let prepared = self.prepare(&view, desired, config_commit, stopped).await?;
        Ok((view, prepared))
    }
}

/// A revert the controller stopped in, to the revision held anyway: finish it as a revert
/// (the failed revision's `onRevert` treats the schema, from its release).
fn resumes_revert(rec: &AppRecord, target: &Target, j: &Journal) -> bool {
    j.reverting.as_ref().is_some_and(|r| {
        matches!(target.mode, Mode::Hold { .. })
            && target.held == Some(j.revision)
            && rec
                .revision(r.from)
                .is_some_and(|f| f.revision.outcome == shipshape_spec::status::Outcome::Failed)
    })
}

/// What the stopped pass of this same revision did that the planner cannot see.
fn amend(p: &mut Prepared, rec: &AppRecord, config_commit: &str, stopped: Option<Journal>) {
    let same = |j: &Journal| {
        j.reverting.is_none()
            && target::revision_for(rec, &p.target, config_commit, &p.plan.release, &p.hash)
                == RevisionChoice::Existing(j.revision)
    };
    p.stopped = stopped.filter(same);
    if let Some(j) = &p.stopped {
        p.amended = j.amend(&mut p.plan);
        if p.amended != journal::Amended::default() {
            tracing::info!(app = %rec.name, amended = ?p.amended, "amended the plan with what the stopped pass did");
        }
    }
}

/// A verification to redo, or a health-only recheck, when the plan has no step.
fn add_verifications(p: &mut Prepared, rec: &AppRecord, config_commit: &str) {
    let (release, hash) = (&p.plan.release, &p.hash);
    p.reverify = p.plan.steps.is_empty()
        && target::needs_reverify(rec, &p.target, config_commit, release, hash);
    if p.reverify {
        p.plan.steps.push(PlannedStep {
            step: Step::Verify,
            reason: REVERIFY_REASON.into(),
        });
    }
    p.resumed = p.reverify
        || p.amended.verify
        || p.stopped
            .as_ref()
            .is_some_and(|j| j.done.iter().any(|d| !d.step.leaves_live_alone()));
    // A config commit that changed only spec.health: verify the live release with the
    // new checks, touching nothing else.
    if p.plan.steps.is_empty() {
        p.recheck = recheck::health_only(rec, &p.target, &p.plan.release, &p.hash);
    }
    if let Some(change) = &p.recheck {
        p.plan.steps.push(PlannedStep {
            step: Step::Verify,
            reason: change.reason(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::{app, entry, record};
    use shipshape_spec::app::DocumentPin;
    use shipshape_spec::status::Outcome;

    /// (env file unreadable, blockers, steps) → what the pass does next: the env file
    /// first, then the blockers, then nothing to run, else run.
    #[test]
    fn a_planned_pass_stops_on_the_env_file_then_on_blockers_else_settles_or_runs() {
        let verify = || PlannedStep {
            step: Step::Verify,
            reason: "r".into(),
        };
        #[rustfmt::skip]
        let rows: Vec<(Option<&str>, Vec<&str>, usize, Next)> = vec![
            (Some("env"), vec!["b"], 1, Next::EnvFile("env".into())),
            (None, vec!["a", "b"], 1, Next::Blocked("a; b".into())),
            (None, vec![], 0, Next::Settle),
            (None, vec![], 1, Next::Run),
        ];
        for (env, blockers, steps, want) in rows {
            let p = Prepared {
                target: Target {
                    document: app("c"),
                    mode: Mode::Follow,
                    held: None,
                },
                secrets: Secrets::default(),
                plan: Plan {
                    release: "r1".into(),
                    steps: (0..steps).map(|_| verify()).collect(),
                    blockers: blockers.iter().map(|b| b.to_string()).collect(),
                    notes: vec![],
                },
                hash: "h".into(),
                env_problem: env.map(str::to_string),
                stopped: None,
                amended: journal::Amended::default(),
                reverify: false,
                resumed: false,
                recheck: None,
                gate: None,
            };
            assert_eq!(p.next(), want);
        }
    }

    /// The pass's first bookkeeping, as `shipshape plan` applies it to its copy: what is
    /// desired, and the document's pin set (announced) or removed (announced).
    #[test]
    fn beginning_a_pass_records_what_is_desired_and_applies_the_documents_pin() {
        let mut rec = record();
        rec.revisions = vec![entry(1, Outcome::Healthy)];
        rec.live_revision = Some(1);
        let mut desired = app("c0ffee");
        desired.spec.pin = Some(DocumentPin {
            reason: "freeze".into(),
            by: None,
            app_commit: None,
        });
        let notes = begin(&mut rec, &desired, "cfg", None);
        assert_eq!(rec.desired_config_commit.as_deref(), Some("cfg"));
        assert_eq!(rec.desired_app_commit.as_deref(), Some("c0ffee"));
        assert_eq!(rec.passes, 1);
        let pin = rec.pin.clone().expect("pinned by the document");
        assert_eq!((pin.revision, pin.by.as_str()), (1, "the document"));
        assert_eq!(notes.len(), 1);
        assert_eq!(
            notes[0].message,
            "pinned at revision 1 by the document: freeze"
        );
        desired.spec.pin = None;
        let notes = begin(&mut rec, &desired, "cfg", None);
        assert_eq!(rec.pin, None);
        assert_eq!(notes[0].kind, crate::runtime::events::EventKind::Unpinned);
    }
}

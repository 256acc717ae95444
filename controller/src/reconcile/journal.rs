//! The in-flight journal (`<state-dir>/apps/<app>/inflight.json`): which revision a pass
//! is applying (or reverting to), the steps it planned and the ones done, so a controller
//! that stops (or is killed) mid-pass leaves a record of how far it got. Typed; written
//! atomically, 0600.
//!
//! The next pass re-plans from what it observes, which covers what leaves a trace on the
//! server (releases, `current`, pm2's processes, the level). [`Journal::amend`] adds what
//! leaves none the planner reads: hooks already run, pm2's list changed but not saved, a
//! verification not finished. An interrupted revert is finished as a revert
//! ([`Journal::reverting`]), so the failed revision's `onRevert` still treats the schema.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shipshape_spec::status::{StepKind, Timestamp};

use crate::plan::{Plan, PlannedStep, Step};
use crate::state;

/// One step done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The step.
    pub step: StepKind,
    /// What it acted on.
    #[serde(default)]
    pub target: String,
    /// When it finished.
    pub at: Timestamp,
}

/// A pass in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    /// The revision being applied.
    pub revision: u64,
    /// When the pass began applying it.
    pub started_at: Timestamp,
    /// The planned steps, in order.
    pub planned: Vec<StepKind>,
    /// The steps done, in order.
    #[serde(default)]
    pub done: Vec<Done>,
    /// Set when the pass is reverting to `revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverting: Option<Reverting>,
}

/// A revert in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reverting {
    /// The revision being reverted.
    pub from: u64,
    /// Why, as the revert's messages say it.
    pub why: String,
    /// It regressed after it was declared healthy (rather than failing its rollout).
    #[serde(default)]
    pub regression: bool,
}

/// What [`Journal::amend`] changed in a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amended {
    /// Hooks left out: the stopped pass ran them (for this release, since its last switch).
    pub hooks_left_out: usize,
    /// Every hook of the plan had run: the hooks are applied.
    pub hooks_applied: bool,
    /// `pm2 save` added: the stopped pass changed pm2's processes and did not save them.
    pub saved: bool,
    /// A verification added: the stopped pass planned one and did not finish it.
    pub verify: bool,
}

impl Journal {
    /// A journal for `revision` and its `planned` steps; a journal `prior` of the same
    /// revision (a stopped pass being finished) is carried over: its done steps come first,
    /// so a second stop still knows what the first pass did.
    pub fn new(
        revision: u64,
        planned: Vec<StepKind>,
        prior: Option<&Journal>,
        reverting: Option<Reverting>,
    ) -> Journal {
        let done = prior
            .filter(|p| p.revision == revision)
            .map(|p| p.done.clone())
            .unwrap_or_default();
        Journal {
            revision,
            started_at: state::now(),
            planned: done.iter().map(|d| d.step).chain(planned).collect(),
            done,
            reverting,
        }
    }

    /// What the journal says about where a stopped pass got to.
    pub fn describe(&self) -> String {
        let list = |v: Vec<&str>| v.join(", ");
        let during = match &self.reverting {
            None => format!("during revision {}", self.revision),
            Some(r) => format!(
                "while reverting revision {} to revision {}",
                r.from, self.revision
            ),
        };
        format!(
            "the controller stopped {during} after [{}] of [{}]",
            list(self.done.iter().map(|d| d.step.as_str()).collect()),
            list(self.planned.iter().map(|s| s.as_str()).collect()),
        )
    }

    /// True when the stopped pass finished a step of `kind`.
    pub fn did(&self, kind: StepKind) -> bool {
        self.done.iter().any(|d| d.step == kind)
    }

    /// Amend `plan`, made for this journal's revision after the pass that wrote it stopped,
    /// with what that pass did that the planner cannot observe:
    ///
    /// - **hooks** it ran (in this release: since its last switch) are left out, unless the
    ///   plan switches again: the records say which hooks were applied only once a pass ends;
    /// - **`pm2 save`** is added when it started, reloaded, replaced or deleted a process
    ///   after its last save: pm2's dump is not observed, and a reboot would bring back the
    ///   old process list;
    /// - **verify** is added when it planned a verification and did not finish one.
    pub fn amend(&self, plan: &mut Plan) -> Amended {
        let mut amended = Amended::default();
        let switches = plan
            .steps
            .iter()
            .any(|s| matches!(s.step, Step::Switch { .. }));
        let since_switch = self
            .done
            .iter()
            .rposition(|d| d.step == StepKind::Switch)
            .map_or(0, |i| i + 1);
        let hooks_ran: Vec<&str> = self.done[since_switch..]
            .iter()
            .filter(|d| d.step == StepKind::Hook)
            .map(|d| d.target.as_str())
            .collect();
        let planned_hooks: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|s| match &s.step {
                Step::Hook { command } => Some(command.clone()),
                _ => None,
            })
            .collect();
        if !switches
            && !hooks_ran.is_empty()
            && planned_hooks.len() >= hooks_ran.len()
            && planned_hooks.iter().zip(&hooks_ran).all(|(p, r)| p == r)
        {
            let mut left = hooks_ran.len();
            plan.steps.retain(|s| {
                let ran = left > 0 && matches!(s.step, Step::Hook { .. });
                if ran {
                    left -= 1;
                }
                !ran
            });
            amended.hooks_left_out = hooks_ran.len();
            amended.hooks_applied = planned_hooks.len() == hooks_ran.len();
        }
        let applies = |k: StepKind| {
            matches!(
                k,
                StepKind::Pm2Start
                    | StepKind::Pm2Reload
                    | StepKind::Pm2Replace
                    | StepKind::Pm2Delete
                    | StepKind::SlotStart
                    | StepKind::SlotRetire
            )
        };
        let last_apply = self.done.iter().rposition(|d| applies(d.step));
        let last_save = self.done.iter().rposition(|d| d.step == StepKind::Pm2Save);
        let unsaved = last_apply.is_some() && last_save < last_apply;
        if unsaved && !plan.steps.iter().any(|s| s.step == Step::Pm2Save) {
            let at = plan
                .steps
                .iter()
                .position(|s| matches!(s.step, Step::Hook { .. } | Step::Verify))
                .unwrap_or(plan.steps.len());
            plan.steps.insert(
                at,
                PlannedStep {
                    step: Step::Pm2Save,
                    reason: "the stopped pass changed pm2's processes and did not save them".into(),
                },
            );
            amended.saved = true;
        }
        let verify_pending =
            self.planned.contains(&StepKind::Verify) && !self.did(StepKind::Verify);
        if verify_pending && !plan.steps.iter().any(|s| s.step == Step::Verify) {
            plan.steps.push(PlannedStep {
                step: Step::Verify,
                reason: "the stopped pass did not finish its verification".into(),
            });
            amended.verify = true;
        }
        amended
    }
}

/// The journal file of one app.
#[derive(Debug, Clone)]
pub struct JournalFile {
    path: PathBuf,
}

impl JournalFile {
    /// The journal in `app_dir`.
    pub fn new(app_dir: &Path) -> JournalFile {
        JournalFile {
            path: app_dir.join("inflight.json"),
        }
    }

    /// Start the journal of a pass that changes things.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn begin(&self, revision: u64, planned: Vec<StepKind>) -> std::io::Result<()> {
        self.write(&Journal::new(revision, planned, None, None))
    }

    /// Start (or replace) the journal with `j`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn start(&self, j: &Journal) -> std::io::Result<()> {
        self.write(j)
    }

    /// Note that `step` finished.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn step_done(&self, step: StepKind, target: &str) -> std::io::Result<()> {
        let Some(mut j) = self.read() else {
            return Ok(());
        };
        j.done.push(Done {
            step,
            target: target.to_string(),
            at: state::now(),
        });
        self.write(&j)
    }

    /// The journal a previous controller left behind, if any (unreadable: `None`).
    pub fn read(&self) -> Option<Journal> {
        let bytes = std::fs::read(&self.path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Read and remove the journal a previous controller left behind.
    pub fn take(&self) -> Option<Journal> {
        let j = self.read();
        self.clear();
        j
    }

    /// The pass ended: remove the journal (a failure is logged: a journal left behind
    /// makes the next pass report a resumption that is not one).
    pub fn clear(&self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(
                "could not remove the in-flight journal {}: {e}",
                self.path.display()
            );
        }
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, j: &Journal) -> std::io::Result<()> {
        crate::release::write_atomic_mode(
            &self.path,
            &serde_json::to_vec_pretty(j).expect("journal serializes"),
            0o600,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_records_its_steps_and_reads_back_typed() {
        let dir = tempfile::tempdir().unwrap();
        let f = JournalFile::new(dir.path());
        assert!(f.read().is_none());
        f.begin(3, vec![StepKind::Fetch, StepKind::Build, StepKind::Switch])
            .unwrap();
        f.step_done(StepKind::Fetch, "abc").unwrap();
        let j = f.take().unwrap();
        assert_eq!(j.revision, 3);
        assert_eq!(j.done[0].step, StepKind::Fetch);
        assert_eq!(
            j.describe(),
            "the controller stopped during revision 3 after [fetch] of [fetch, build, switch]"
        );
        assert!(f.read().is_none(), "taken");
    }

    fn plan_of(steps: &[Step]) -> Plan {
        Plan {
            release: "r".into(),
            steps: steps
                .iter()
                .map(|s| PlannedStep {
                    step: s.clone(),
                    reason: String::new(),
                })
                .collect(),
            blockers: vec![],
            notes: vec![],
        }
    }

    fn journal_of(planned: &[StepKind], done: &[(StepKind, &str)]) -> Journal {
        let mut j = Journal::new(1, planned.to_vec(), None, None);
        j.done = done
            .iter()
            .map(|(step, target)| Done {
                step: *step,
                target: target.to_string(),
                at: shipshape_spec::Timestamp::UNIX_EPOCH,
            })
            .collect();
        j
    }

    #[test]
    fn amending_adds_the_unsaved_pm2_list_and_the_verification_and_leaves_out_hooks_run() {
        use StepKind as K;
        let hook = |c: &str| Step::Hook { command: c.into() };
        let reload = Step::Pm2Reload {
            process: "web".into(),
        };
        let switch = Step::Switch {
            release: "r".into(),
        };
        let planned = [
            K::Switch,
            K::Pm2Reload,
            K::Pm2Save,
            K::Hook,
            K::Hook,
            K::Verify,
        ];
        // (name, done, the plan made after the restart, the amended plan)
        type Row = (&'static str, Vec<(K, &'static str)>, Vec<Step>, Vec<K>);
        let rows: Vec<Row> = vec![
            (
                "reloaded, not saved: save",
                vec![(K::Switch, "r"), (K::Pm2Reload, "web")],
                vec![hook("a"), hook("b"), Step::Verify],
                vec![K::Pm2Save, K::Hook, K::Hook, K::Verify],
            ),
            (
                "a slot retired, not saved (traffic): save",
                vec![(K::SlotRetire, "web@3000")],
                vec![],
                vec![K::Pm2Save, K::Verify],
            ),
            (
                "saved: nothing to add",
                vec![(K::Switch, "r"), (K::Pm2Reload, "web"), (K::Pm2Save, "")],
                vec![hook("a"), hook("b"), Step::Verify],
                vec![K::Hook, K::Hook, K::Verify],
            ),
            (
                "the plan saves anyway: one save",
                vec![(K::Switch, "r"), (K::Pm2Reload, "web")],
                vec![reload.clone(), Step::Pm2Save, Step::Verify],
                vec![K::Pm2Reload, K::Pm2Save, K::Verify],
            ),
            (
                "one hook ran: the other and verify",
                vec![
                    (K::Switch, "r"),
                    (K::Pm2Reload, "web"),
                    (K::Pm2Save, ""),
                    (K::Hook, "a"),
                ],
                vec![hook("a"), hook("b"), Step::Verify],
                vec![K::Hook, K::Verify],
            ),
            (
                "both hooks ran: verify",
                vec![
                    (K::Switch, "r"),
                    (K::Pm2Reload, "web"),
                    (K::Pm2Save, ""),
                    (K::Hook, "a"),
                    (K::Hook, "b"),
                ],
                vec![hook("a"), hook("b"), Step::Verify],
                vec![K::Verify],
            ),
            (
                "the plan switches again: the hooks run again",
                vec![(K::Switch, "r"), (K::Hook, "a")],
                vec![switch.clone(), hook("a"), hook("b"), Step::Verify],
                vec![K::Switch, K::Hook, K::Hook, K::Verify],
            ),
            (
                "other hooks than those run: all of them",
                vec![(K::Switch, "r"), (K::Hook, "x")],
                vec![hook("a"), hook("b"), Step::Verify],
                vec![K::Hook, K::Hook, K::Verify],
            ),
            (
                "everything done but the verification: verify",
                vec![
                    (K::Switch, "r"),
                    (K::Pm2Reload, "web"),
                    (K::Pm2Save, ""),
                    (K::Hook, "a"),
                    (K::Hook, "b"),
                ],
                vec![],
                vec![K::Verify],
            ),
            (
                "verified: nothing",
                vec![
                    (K::Switch, "r"),
                    (K::Pm2Reload, "web"),
                    (K::Pm2Save, ""),
                    (K::Hook, "a"),
                    (K::Hook, "b"),
                    (K::Verify, ""),
                ],
                vec![],
                vec![],
            ),
        ];
        for (name, done, plan, want) in rows {
            let j = journal_of(&planned, &done);
            let mut p = plan_of(&plan);
            let amended = j.amend(&mut p);
            let got: Vec<K> = p.steps.iter().map(|s| s.step.kind()).collect();
            assert_eq!(got, want, "{name}: {amended:?}");
        }
        let j = journal_of(&planned, &[(K::Hook, "a"), (K::Hook, "b")]);
        let mut p = plan_of(&[hook("a"), hook("b"), Step::Verify]);
        let amended = j.amend(&mut p);
        assert!(amended.hooks_applied && amended.hooks_left_out == 2);
    }

    #[test]
    fn a_journal_carries_the_done_steps_of_the_same_revision() {
        let prior = journal_of(
            &[StepKind::Switch, StepKind::Hook],
            &[(StepKind::Switch, "r")],
        );
        let next = Journal::new(1, vec![StepKind::Hook], Some(&prior), None);
        assert_eq!(next.done, prior.done);
        assert_eq!(next.planned, vec![StepKind::Switch, StepKind::Hook]);
        let other = Journal::new(2, vec![StepKind::Hook], Some(&prior), None);
        assert!(other.done.is_empty());
        let reverting = Journal::new(
            1,
            vec![],
            None,
            Some(Reverting {
                from: 3,
                why: "w".into(),
                regression: false,
            }),
        );
        assert_eq!(
            reverting.describe(),
            "the controller stopped while reverting revision 3 to revision 1 after [] of []"
        );
    }

    #[test]
    fn a_journal_from_before_the_typed_steps_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("inflight.json"),
            r#"{"revision":2,"startedAt":"2026-11-20T10:00:00.000Z","planned":["fetch","pm2-reload"],"done":[{"step":"fetch","target":"x","at":"2026-11-20T10:00:01.250Z"}]}"#,
        )
        .unwrap();
        let j = JournalFile::new(dir.path()).read().unwrap();
        assert_eq!(j.planned, vec![StepKind::Fetch, StepKind::Pm2Reload]);
    }
}

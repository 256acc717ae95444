//! The in-flight journal (`<state-dir>/apps/<app>/inflight.json`): which revision a pass
//! is applying, the steps it planned and the ones done, so a controller that stops (or is
//! killed) mid-pass leaves a record of how far it got. Typed; written atomically, 0600.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shipshape_spec::status::StepKind;

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
    pub at: String,
}

/// A pass in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    /// The revision being applied.
    pub revision: u64,
    /// When the pass began applying it.
    pub started_at: String,
    /// The planned steps, in order.
    pub planned: Vec<StepKind>,
    /// The steps done, in order.
    #[serde(default)]
    pub done: Vec<Done>,
}

impl Journal {
    /// What the journal says about where a stopped pass got to.
    pub fn describe(&self) -> String {
        let list = |v: Vec<&str>| v.join(", ");
        format!(
            "the controller stopped during revision {} after [{}] of [{}]",
            self.revision,
            list(self.done.iter().map(|d| d.step.as_str()).collect()),
            list(self.planned.iter().map(|s| s.as_str()).collect()),
        )
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
        self.write(&Journal {
            revision,
            started_at: state::now(),
            planned,
            done: Vec::new(),
        })
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

    #[test]
    fn a_journal_from_before_the_typed_steps_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("inflight.json"),
            r#"{"revision":2,"startedAt":"t","planned":["fetch","pm2-reload"],"done":[{"step":"fetch","target":"x","at":"t"}]}"#,
        )
        .unwrap();
        let j = JournalFile::new(dir.path()).read().unwrap();
        assert_eq!(j.planned, vec![StepKind::Fetch, StepKind::Pm2Reload]);
    }
}

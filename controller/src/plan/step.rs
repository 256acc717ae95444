//! A plan's vocabulary: the [`Step`]s, a [`PlannedStep`] with its reason, the [`Plan`]
//! (steps, blockers, notes) and how it prints.

use super::*;

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    /// Write the app's source at `commit` into the release directory.
    Fetch {
        /// Release id.
        release: String,
        /// App commit.
        commit: String,
    },
    /// Run `build.install` in the release.
    Install {
        /// Release id.
        release: String,
    },
    /// Give the release its own copy of `node_modules` (reflinked where the filesystem can,
    /// copied otherwise: never shared with the release it comes from) from a prepared release
    /// installed from the same lockfile.
    ReuseDeps {
        /// Release id.
        release: String,
        /// The release whose `node_modules` is reused.
        from: String,
    },
    /// Run `build.steps` in the release; first, when `cache_from` is set, give it its own
    /// copy of that release's `build.cache` directories (reflinked or copied, never shared).
    Build {
        /// Release id.
        release: String,
        /// The release whose build caches are carried over (same app, same dependencies).
        #[serde(rename = "cacheFrom", skip_serializing_if = "Option::is_none")]
        cache_from: Option<String>,
    },
    /// Run `migrations.backup` before migrating.
    Backup {
        /// The level being left.
        from: Option<String>,
    },
    /// Migrate the database to the document's level (under the advisory lock).
    Migrate {
        /// The level now (`None`: empty database).
        from: Option<String>,
        /// The desired level.
        to: String,
    },
    /// Restore the database backup a reverted revision took (`onRevert: restore`).
    /// Only a revert plans it.
    Restore {
        /// The backup file.
        backup: String,
    },
    /// Start the release's slot: the serving process under `NAME@PORT` on a port of its
    /// own, beside the live slot (traffic through nginx).
    SlotStart {
        /// The serving process.
        process: String,
        /// The slot's port.
        port: u16,
    },
    /// Run the health checks against the slot's own port until `successThreshold` rounds
    /// pass; nginx sends it nothing before. A slot that fails is deleted.
    SlotProve {
        /// The slot's port.
        port: u16,
    },
    /// Point nginx's upstream at the slot: write the upstream file, `nginx -t`, graceful
    /// reload, confirm that a request through nginx is answered by the slot.
    TrafficSwitch {
        /// The slot's port.
        port: u16,
        /// The slot traffic leaves, kept warm for `warmFor` (`None`: none, or a revert's).
        #[serde(skip_serializing_if = "Option::is_none")]
        warm: Option<u16>,
    },
    /// Drain a slot traffic left (no connection left to its port, bounded by
    /// `drainTimeout`), then delete its processes.
    SlotRetire {
        /// The serving process.
        process: String,
        /// The slot's port.
        port: u16,
    },
    /// Point `current` at the release.
    Switch {
        /// Release id.
        release: String,
    },
    /// `pm2 startOrReload` for a process that is missing or whose env/code changed.
    Pm2Start {
        /// Process name.
        process: String,
    },
    /// Graceful reload of a running process (env or code changed, or instances down).
    Pm2Reload {
        /// Process name.
        process: String,
    },
    /// New processes for what a reload cannot change (instances, exec_mode, script/args/pm2
    /// options, a removed env variable), or to finish a replace a crash interrupted. In
    /// cluster mode graceful (the new config starts as `NAME~next`, the old processes stop
    /// once it is ready, then `NAME` is started again: [`replace`]); in fork mode, or
    /// across a fork/cluster switch, delete and start again.
    Pm2Replace {
        /// Process name.
        process: String,
    },
    /// Delete a process the controller started that is no longer declared.
    Pm2Delete {
        /// Process name.
        process: String,
    },
    /// `pm2 save`.
    Pm2Save,
    /// Run one after-switch hook.
    Hook {
        /// The command.
        command: String,
    },
    /// Wait for the health checks to pass `successThreshold` rounds in a row.
    Verify,
}

impl Step {
    /// The step's kind as recorded and shown (`fetch`, `pm2-reload` …).
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Fetch { .. } => StepKind::Fetch,
            Step::Install { .. } => StepKind::Install,
            Step::ReuseDeps { .. } => StepKind::ReuseDeps,
            Step::Backup { .. } => StepKind::Backup,
            Step::Migrate { .. } => StepKind::Migrate,
            Step::Restore { .. } => StepKind::Restore,
            Step::Build { .. } => StepKind::Build,
            Step::Switch { .. } => StepKind::Switch,
            Step::SlotStart { .. } => StepKind::SlotStart,
            Step::SlotProve { .. } => StepKind::SlotProve,
            Step::TrafficSwitch { .. } => StepKind::TrafficSwitch,
            Step::SlotRetire { .. } => StepKind::SlotRetire,
            Step::Pm2Start { .. } => StepKind::Pm2Start,
            Step::Pm2Reload { .. } => StepKind::Pm2Reload,
            Step::Pm2Replace { .. } => StepKind::Pm2Replace,
            Step::Pm2Delete { .. } => StepKind::Pm2Delete,
            Step::Pm2Save => StepKind::Pm2Save,
            Step::Hook { .. } => StepKind::Hook,
            Step::Verify => StepKind::Verify,
        }
    }

    /// What the step acts on.
    pub fn target(&self) -> String {
        match self {
            Step::Fetch { release, .. }
            | Step::Install { release }
            | Step::Build {
                release,
                cache_from: None,
            }
            | Step::Switch { release } => release.clone(),
            Step::Build {
                release,
                cache_from: Some(from),
            } => format!("{} (cache ← {})", short_sha(release), short_sha(from)),
            Step::ReuseDeps { release, from } => {
                format!("{} ← {}", short_sha(release), short_sha(from))
            }
            Step::Backup { from } => from.clone().unwrap_or_else(|| "(empty)".into()),
            Step::Restore { backup } => backup.clone(),
            Step::Migrate { from, to } => {
                format!("{} → {to}", from.as_deref().unwrap_or("(empty)"))
            }
            Step::Pm2Start { process }
            | Step::Pm2Reload { process }
            | Step::Pm2Replace { process }
            | Step::Pm2Delete { process } => process.clone(),
            Step::Hook { command } => command.clone(),
            Step::SlotStart { process, port } | Step::SlotRetire { process, port } => {
                crate::traffic::slot_name(process, *port)
            }
            Step::SlotProve { port } | Step::TrafficSwitch { port, .. } => {
                format!("slot {port}")
            }
            Step::Pm2Save | Step::Verify => String::new(),
        }
    }

    /// True for steps that change what is live (after them, health must be verified).
    pub fn changes_live(&self) -> bool {
        !matches!(
            self,
            Step::Fetch { .. }
                | Step::Install { .. }
                | Step::ReuseDeps { .. }
                | Step::Build { .. }
                | Step::Backup { .. }
                | Step::SlotStart { .. }
                | Step::SlotProve { .. }
                | Step::SlotRetire { .. }
                | Step::Verify
        )
    }

    /// True for the steps that prepare a release (before anything live changes).
    pub fn prepares(&self) -> bool {
        matches!(
            self,
            Step::Fetch { .. } | Step::Install { .. } | Step::ReuseDeps { .. } | Step::Build { .. }
        )
    }
}

/// A step and why it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStep {
    /// The step.
    #[serde(flatten)]
    pub step: Step,
    /// Why, in words.
    pub reason: String,
}

/// The ordered steps for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The release the plan makes live.
    pub release: String,
    /// The steps, in execution order. Empty when observed equals desired.
    pub steps: Vec<PlannedStep>,
    /// Conflicts that stop the plan from running (a person must act).
    pub blockers: Vec<String>,
    /// Things worth knowing that need no step (e.g. a database ahead of the document).
    pub notes: Vec<String>,
}

impl Plan {
    /// True when nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.blockers.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.blockers {
            writeln!(f, "  BLOCKED  {b}")?;
        }
        for n in &self.notes {
            writeln!(f, "  note     {n}")?;
        }
        if self.steps.is_empty() && self.blockers.is_empty() {
            return writeln!(f, "  (nothing to do: observed state matches desired)");
        }
        for (i, s) in self.steps.iter().enumerate() {
            let target = s.step.target();
            writeln!(
                f,
                "  {:>2}. {:<12} {:<44} {}",
                i + 1,
                s.step.kind(),
                short(&target, 44),
                s.reason
            )?;
        }
        Ok(())
    }
}

pub(super) fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n - 1).collect();
        format!("{cut}…")
    }
}

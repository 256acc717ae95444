//! The planner: a pure function from (desired, observed) to the ordered, minimal steps
//! that converge the server, each with the reason it is needed. No I/O happens here;
//! `shipshape plan` prints its output and the reconciler executes it.
//!
//! # Order
//! [`plan`] is an ordered list of sections (`SECTIONS`), each a small function that adds
//! its steps (and blockers or notes) to the plan in turn:
//!
//! 1. **prepare** (fetch, install or reuse-deps, build) never touches the live release;
//! 2. **migrations** (backup, migrate);
//! 3. **slots** (traffic through nginx): start and prove the release's slot ([`slots`]);
//! 4. **traffic**: point nginx's upstream at the slot (before `current` moves: a switch
//!    nginx refuses leaves the live release as it was);
//! 5. **switch** `current`;
//! 6. **processes**: start, replace or reload each declared pm2 process (in traffic mode,
//!    every one but the serving process);
//! 7. **stale**: delete the processes no longer declared;
//! 8. **retire**: drain and stop the slots traffic left (the warm one keeps its time);
//! 9. **save** pm2's dump when its list changed;
//! 10. **hooks**: run the after-switch hooks;
//! 11. **verify** health.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use shipshape_spec::app::{App, ExecMode, Instances, Process};
use shipshape_spec::status::StepKind;

use crate::envfile::EnvFile;
use crate::migrate::{can_go_down, level_key};
use crate::pm2::{ENV_APP, ENV_COMMIT, ENV_CONFIG, ENV_KEYS, ENV_SHAPE, Instance, Status};
use crate::release::BuildMarker;

mod inputs;
mod observed;
mod prepare;
mod processes;
pub mod replace;
pub mod scripts;
mod slots;
mod step;

pub use inputs::*;
pub use observed::*;
use prepare::prepare;
use processes::{processes, save, stale};
use slots::{SlotPlan, retire, slots, traffic};
pub use step::*;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

/// A plan while its sections build it: the inputs, what the sections decided that later
/// ones read (the release, whether `current` moves, whether pm2's list changed) and the
/// plan so far.
struct Planner<'a> {
    desired: &'a App,
    observed: &'a Observed,
    /// The release the plan makes live, and whether it is already prepared (sealed).
    release: String,
    sealed: bool,
    /// `current` does not point at `release` yet.
    switching: bool,
    /// A pm2 step was planned: pm2's list must be saved.
    pm2_changed: bool,
    /// Traffic through nginx: the slot the plan makes live, and the one it leaves.
    slot: Option<SlotPlan>,
    steps: Vec<PlannedStep>,
    blockers: Vec<String>,
    notes: Vec<String>,
}

impl Planner<'_> {
    fn push(&mut self, step: Step, reason: impl Into<String>) {
        self.steps.push(PlannedStep {
            step,
            reason: reason.into(),
        });
    }
}

/// The plan's sections, in the order their steps run (see the module's "Order").
const SECTIONS: [fn(&mut Planner); 11] = [
    prepare, migrations, slots, traffic, switch, processes, stale, retire, save, hooks, verify,
];

/// Compute the plan that takes `observed` to `desired`: each of the `SECTIONS` in turn.
///
/// 1. `prepare`: fetch, install or reuse-deps, build, unless a sealed release of the same
///    inputs exists;
/// 2. `migrations`: backup and migrate up, or down when the driver can (a blocker when the
///    level cannot be read, a note when the database is ahead and stays so);
/// 3. `switch`: point `current` at the release;
/// 4. `processes`: start, replace or reload each declared process (a blocker for a
///    process of that name someone else started);
/// 5. `stale`: delete this app's processes no longer declared;
/// 6. `save`: `pm2 save` when the list changed;
/// 7. `hooks`: the after-switch hooks, when the release switched or they have not run
///    for it;
/// 8. `verify`: the health checks, after anything that changed what is live.
pub fn plan(desired: &App, observed: &Observed) -> Plan {
    let (release, sealed) = choose_release(desired, observed);
    let switching = observed.current.as_deref() != Some(release.as_str());
    let mut planner = Planner {
        desired,
        observed,
        release,
        sealed,
        switching,
        pm2_changed: false,
        slot: None,
        steps: Vec::new(),
        blockers: Vec::new(),
        notes: Vec::new(),
    };
    for section in SECTIONS {
        section(&mut planner);
    }
    Plan {
        release: planner.release,
        steps: planner.steps,
        blockers: planner.blockers,
        notes: planner.notes,
    }
}

/// Bring the database to the document's level.
fn migrations(pl: &mut Planner) {
    let Some(m) = &pl.desired.spec.migrations else {
        return;
    };
    let level = match &pl.observed.migration {
        MigrationState::Unreadable(e) => {
            pl.blockers
                .push(format!("cannot read the migration level: {e}"));
            return;
        }
        MigrationState::NotManaged => {
            pl.blockers
                .push("the migration level was not observed".into());
            return;
        }
        MigrationState::At(level) => level,
    };
    let want = level_key(m.driver, &m.level);
    let have = level.as_deref().map(|l| level_key(m.driver, l));
    let shown = level.clone().unwrap_or_else(|| "(empty)".into());
    let migrate = Step::Migrate {
        from: level.clone(),
        to: m.level.clone(),
    };
    if have.as_deref() == Some(want.as_str()) {
        // Already there.
    } else if have.as_ref().is_none_or(|h| *h < want) {
        if m.backup.is_some() {
            pl.push(
                Step::Backup {
                    from: level.clone(),
                },
                format!("before migrating up from {shown}"),
            );
        }
        pl.push(migrate, format!("level {shown} < {}", m.level));
    } else if can_go_down(m) {
        pl.push(
            migrate,
            format!(
                "level {shown} > {}: the document asks for a lower level",
                m.level
            ),
        );
    } else {
        pl.notes.push(format!(
            "the database is at {shown}, ahead of {}; this driver cannot migrate down, so it is left as it is",
            m.level
        ));
    }
}

/// Point `current` at the release.
fn switch(pl: &mut Planner) {
    if !pl.switching {
        return;
    }
    let reason = match &pl.observed.current {
        None => "nothing is live yet".to_string(),
        Some(cur) => format!(
            "current is {}, desired {}",
            short_sha(cur),
            short_sha(&pl.release)
        ),
    };
    pl.push(
        Step::Switch {
            release: pl.release.clone(),
        },
        reason,
    );
}

/// The after-switch hooks, when the release switched or they have not run for it.
fn hooks(pl: &mut Planner) {
    let after_switch = &pl.desired.spec.hooks.after_switch;
    if after_switch.is_empty() {
        return;
    }
    let want = hooks_hash(pl.desired, &pl.release);
    if !pl.switching && pl.observed.hooks_applied.as_deref() == Some(want.as_str()) {
        return;
    }
    let why = if pl.switching {
        "release switched"
    } else {
        "hooks changed or never ran for this release"
    };
    for command in after_switch {
        pl.push(
            Step::Hook {
                command: command.clone(),
            },
            why,
        );
    }
}

/// Verify health after anything that changed what is live (saving pm2's list after
/// retiring a slot nothing reaches changes nothing users see).
fn verify(pl: &mut Planner) {
    if pl
        .steps
        .iter()
        .any(|s| s.step.changes_live() && s.step != Step::Pm2Save)
    {
        let health = &pl.desired.spec.health;
        pl.push(
            Step::Verify,
            format!(
                "{} passing rounds within {}",
                health.success_threshold, health.progress_deadline
            ),
        );
    }
}

/// The first 12 characters of a SHA-like id (whole when shorter): the one short form of a
/// commit everywhere (plans, records' messages, `shipshape status`, `history`, `fleet`).
pub fn short_sha(s: &str) -> String {
    s.chars().take(12).collect()
}

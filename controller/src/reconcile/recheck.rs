//! A config commit that changes nothing but `spec.health` (checks, thresholds, interval):
//! it re-verifies the live release with the new checks and touches no process (no switch,
//! no pm2 step). Here, pure and table-tested: whether a pass is such a re-verification,
//! what changed (for the step's reason and the messages), and how its failure is read —
//! a check the same config commit added or changed is the document's fault, not the
//! release's ([`Recheck`]).

use shipshape_spec::app::Health;

use super::decide::Recheck;
use super::target::Target;
use crate::state::AppRecord;

/// What a config commit changed in the live revision's `spec.health`, when that is all it
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    /// The live revision, re-verified.
    pub revision: u64,
    /// Checks added or changed, by name.
    pub changed: Vec<String>,
    /// Checks removed, by name.
    pub removed: Vec<String>,
    /// The rules that judge every check that changed (`interval`, `failureThreshold` …).
    pub rules: Vec<&'static str>,
}

impl HealthChange {
    /// True when `check` (a check's name; `pm2` for the pm2 facts never is) is one the
    /// config commit added or changed. A change of the rules alone (thresholds, interval,
    /// grace, deadline) judges no check anew: the checks are the ones the release passed,
    /// so a release failing them is failing by itself.
    pub fn judges_anew(&self, check: &str) -> bool {
        self.changed.iter().any(|c| c == check)
    }

    /// The change in words: "checks api changed; failureThreshold changed".
    pub fn words(&self) -> String {
        let mut parts = Vec::new();
        if !self.changed.is_empty() {
            parts.push(format!(
                "check {} added or changed",
                self.changed.join(", ")
            ));
        }
        if !self.removed.is_empty() {
            parts.push(format!("check {} removed", self.removed.join(", ")));
        }
        if !self.rules.is_empty() {
            parts.push(format!("{} changed", self.rules.join(", ")));
        }
        if parts.is_empty() {
            "spec.health changed".into()
        } else {
            parts.join("; ")
        }
    }

    /// The verify step's reason.
    pub fn reason(&self) -> String {
        format!(
            "only spec.health changed ({}): re-verifying the live revision {} with the new checks; no process is touched",
            self.words(),
            self.revision
        )
    }

    /// How a failed re-verification is read, from the checks (and `pm2`) that failed in
    /// its last failing round: only checks the commit added or changed failed → the
    /// document's checks are suspect; the pm2 facts or any unchanged check failed too (or
    /// only the rules changed) → the release is failing by itself.
    pub fn read_failure(&self, failed: &[String]) -> Recheck {
        if !failed.is_empty() && failed.iter().all(|c| self.judges_anew(c)) {
            Recheck::ChangedCheckFailed
        } else {
            Recheck::UnchangedFailed
        }
    }
}

/// The re-verification a pass with nothing else to do must run: following git, the live
/// revision runs `release` with `process_hash` (so no switch or pm2 step is due), and the
/// document's `spec.health` differs from the live revision's. `None` otherwise.
pub fn health_only(
    rec: &AppRecord,
    target: &Target,
    release: &str,
    process_hash: &str,
) -> Option<HealthChange> {
    if !target.mode.follows() {
        return None;
    }
    let live = rec.live()?;
    if live.release != release || live.revision.process_hash != process_hash {
        return None;
    }
    let (old, new) = (&live.document.spec.health, &target.document.spec.health);
    (old != new).then(|| HealthChange {
        revision: live.revision.number,
        ..diff(old, new)
    })
}

/// What differs between two `spec.health` blocks.
pub fn diff(old: &Health, new: &Health) -> HealthChange {
    let changed = new
        .checks
        .iter()
        .filter(|c| !old.checks.contains(c))
        .map(|c| c.name.clone())
        .collect();
    let removed = old
        .checks
        .iter()
        .filter(|c| !new.checks.iter().any(|n| n.name == c.name))
        .map(|c| c.name.clone())
        .collect();
    let mut rules = Vec::new();
    if old.interval != new.interval {
        rules.push("interval");
    }
    if old.success_threshold != new.success_threshold {
        rules.push("successThreshold");
    }
    if old.failure_threshold != new.failure_threshold {
        rules.push("failureThreshold");
    }
    if old.progress_deadline != new.progress_deadline {
        rules.push("progressDeadline");
    }
    if old.startup_grace != new.startup_grace {
        rules.push("startupGrace");
    }
    HealthChange {
        revision: 0,
        changed,
        removed,
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::{entry, record};
    use crate::reconcile::target::Mode;
    use shipshape_spec::Duration as D;
    use shipshape_spec::status::{Outcome, Pin, PinSource};

    fn target(rec: &AppRecord, edit: impl FnOnce(&mut Health)) -> Target {
        let mut document = rec.live().unwrap().document.clone();
        edit(&mut document.spec.health);
        Target {
            document,
            mode: Mode::Follow,
            held: None,
        }
    }

    fn live() -> AppRecord {
        let mut rec = record();
        rec.revisions = vec![entry(1, Outcome::Healthy), entry(2, Outcome::Healthy)];
        rec.live_revision = Some(2);
        rec
    }

    #[test]
    fn only_a_change_of_spec_health_on_the_live_release_is_a_re_verification() {
        let rec = live();
        let port_typo = |h: &mut Health| {
            h.checks[0].http_mut().unwrap().url = "http://127.0.0.1:3001/api/health".into()
        };
        // The check's port changed, nothing else: re-verify revision 2.
        let t = target(&rec, port_typo);
        let change = health_only(&rec, &t, "r2", "h").expect("a re-verification");
        assert_eq!(change.revision, 2);
        assert_eq!(change.changed, vec!["api".to_string()]);
        assert!(change.rules.is_empty() && change.removed.is_empty());
        assert!(
            change.reason().contains("no process is touched"),
            "{}",
            change.reason()
        );
        // Nothing in spec.health changed: nothing to re-verify (settings are adopted).
        assert_eq!(health_only(&rec, &target(&rec, |_| {}), "r2", "h"), None);
        // Another release or other processes: a rollout, not a re-verification.
        assert_eq!(health_only(&rec, &t, "r3", "h"), None);
        assert_eq!(health_only(&rec, &t, "r2", "other"), None);
        // Pinned or held: the target is a recorded revision's document, never re-verified.
        let pinned = Target {
            mode: Mode::Pinned(Pin {
                revision: 2,
                by: "ana".into(),
                at: shipshape_spec::Timestamp::UNIX_EPOCH,
                reason: "incident".into(),
                source: PinSource::Cli,
            }),
            held: Some(2),
            ..t.clone()
        };
        assert_eq!(health_only(&rec, &pinned, "r2", "h"), None);
        // Nothing live: nothing to re-verify.
        let mut none = live();
        none.live_revision = None;
        assert_eq!(health_only(&none, &t, "r2", "h"), None);
    }

    /// (what changed, what failed in the last failing round) → how the failure is read.
    #[test]
    fn a_failure_of_a_check_the_commit_changed_is_the_documents_a_failure_of_another_the_releases()
    {
        let rec = live();
        let mut with_second = rec.live().unwrap().document.spec.health.clone();
        let mut second = with_second.checks[0].clone();
        second.name = "home".into();
        with_second.checks.push(second);
        let port = |h: &mut Health| {
            h.checks[0].http_mut().unwrap().url = "http://127.0.0.1:3001/api/health".into()
        };
        let threshold = |h: &mut Health| h.failure_threshold = 1;
        let interval = |h: &mut Health| h.interval = D::from_secs(9);
        let failed = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        #[rustfmt::skip]
        type Edit = Box<dyn Fn(&mut Health)>;
        let rows: Vec<(&str, Edit, Vec<String>, Recheck)> = vec![
            (
                "port typo, it fails",
                Box::new(port),
                failed(&["api"]),
                Recheck::ChangedCheckFailed,
            ),
            (
                "port typo, pm2 fails",
                Box::new(port),
                failed(&["pm2"]),
                Recheck::UnchangedFailed,
            ),
            (
                "new check fails",
                Box::new(move |h: &mut Health| *h = with_second.clone()),
                failed(&["home"]),
                Recheck::ChangedCheckFailed,
            ),
            // Only the rules changed: the checks are those the release passed, so what
            // fails is the release's.
            (
                "threshold only: the unchanged check is the release's",
                Box::new(threshold),
                failed(&["api"]),
                Recheck::UnchangedFailed,
            ),
            (
                "interval only: pm2 is the release's",
                Box::new(interval),
                failed(&["pm2"]),
                Recheck::UnchangedFailed,
            ),
            // The changed check fails, but so does pm2: the release is failing.
            (
                "port typo, it fails and pm2 too",
                Box::new(port),
                failed(&["api", "pm2"]),
                Recheck::UnchangedFailed,
            ),
            // A changed check beside a rules change: that check is still the document's.
            (
                "port typo and threshold, the typo fails",
                Box::new(move |h: &mut Health| {
                    port(h);
                    threshold(h);
                }),
                failed(&["api"]),
                Recheck::ChangedCheckFailed,
            ),
        ];
        for (what, edit, failed, want) in rows {
            let t = target(&rec, edit);
            let change = health_only(&rec, &t, "r2", "h").expect(what);
            assert_eq!(change.read_failure(&failed), want, "{what}: {change:?}");
        }
        // A new check that fails beside an unchanged one that fails: the release's (the
        // unchanged check fails against it, whatever the new one says).
        let mut two = rec.live().unwrap().document.spec.health.clone();
        let mut home = two.checks[0].clone();
        home.name = "home".into();
        two.checks.push(home);
        let change = diff(&rec.live().unwrap().document.spec.health, &two);
        assert_eq!(
            change.read_failure(&failed(&["api", "home"])),
            Recheck::UnchangedFailed
        );
        assert_eq!(
            change.read_failure(&failed(&["home"])),
            Recheck::ChangedCheckFailed
        );
        // Nothing named (never expected): not the document's fault.
        assert_eq!(change.read_failure(&[]), Recheck::UnchangedFailed);
        assert_eq!(change.words(), "check home added or changed");
        let removed = diff(&two, &rec.live().unwrap().document.spec.health);
        assert_eq!(removed.words(), "check home removed");
        assert_eq!(
            removed.read_failure(&failed(&["api"])),
            Recheck::UnchangedFailed
        );
    }
}

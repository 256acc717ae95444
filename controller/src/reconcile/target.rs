//! What a pass converges to, decided from the records alone: the document at the branch
//! tip, a pinned revision, or the last good revision while the desired config commit is
//! quarantined. Also which revision is "good" to go back to, which revision number a
//! pass works under, and whether an interrupted verification must run again. Pure: no
//! pm2, git or network; table-tested below. `shipshape plan` uses the same functions, so
//! it shows the hold the daemon would keep.

use shipshape_spec::App;
use shipshape_spec::status::{Outcome, Pin, PinSource};

use crate::plan::short_sha;
use crate::state::{AppRecord, RevisionEntry};

/// How a pass converges.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The document at the branch tip.
    Follow,
    /// A pinned revision (from the CLI or `spec.pin`).
    Pinned(Pin),
    /// The last good revision, held while the desired config commit is quarantined.
    Hold {
        /// The quarantine, in words.
        why: String,
    },
    /// The live revision, held while a fleet rollout's wave gate keeps the desired app
    /// commit back (`spec.rollout`): drift towards it is repaired, and its health watched.
    Gated(Box<crate::gate::Verdict>),
}

impl Mode {
    /// True when following git.
    pub fn follows(&self) -> bool {
        matches!(self, Mode::Follow)
    }

    /// The mode in words, for messages ("pinned by ana (incident 42)").
    pub fn words(&self) -> String {
        match self {
            Mode::Follow => "following git".into(),
            Mode::Pinned(p) => format!("pinned by {} ({})", p.by, p.reason),
            Mode::Hold { .. } => "holding the last good revision".into(),
            Mode::Gated(v) => format!("held by wave {}'s gate", v.wave),
        }
    }
}

/// What a pass converges to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The document to converge to.
    pub document: App,
    /// Why this one.
    pub mode: Mode,
    /// The revision held (pinned or held), `None` when following git.
    pub held: Option<u64>,
}

/// Why a pass has nothing to converge to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoTarget {
    /// The pinned revision fell out of the history.
    PinGone {
        /// The pinned revision.
        revision: u64,
    },
    /// The desired config commit is quarantined and no revision is good to hold.
    QuarantinedWithoutGood {
        /// The quarantine, in words.
        why: String,
        /// The quarantined config commit.
        config_commit: String,
        /// The app.
        app: String,
    },
}

impl std::fmt::Display for NoTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoTarget::PinGone { revision } => write!(
                f,
                "pinned to revision {revision}, which is no longer in the history; unpin or pin another revision"
            ),
            NoTarget::QuarantinedWithoutGood {
                why,
                config_commit,
                app,
            } => write!(
                f,
                "config commit {} is quarantined ({why}) and there is no healthy revision to hold; commit a fix or run `shipshape retry {app}`",
                short_sha(config_commit)
            ),
        }
    }
}

/// Why a pass holds an app instead of following the document, for `shipshape plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HoldKind {
    /// A pin holds it.
    Pinned,
    /// The desired config commit is quarantined: the last good revision is held.
    Quarantined,
    /// A fleet rollout's wave gate holds the desired app commit back: the live revision
    /// is held.
    Wave,
}

/// A hold, with what it keeps from being applied: its words are [`Hold`]'s `Display`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hold {
    /// Pinned or quarantined.
    pub kind: HoldKind,
    /// The revision held.
    pub revision: u64,
    /// The hold in words.
    pub message: String,
}

impl Hold {
    /// The hold `target` keeps instead of `desired` at `config_commit`, if it holds.
    pub fn of(target: &Target, desired: &App, config_commit: &str) -> Option<Hold> {
        let app = &desired.metadata.name;
        let not_applied = format!(
            "desired config {} (app {}) is not applied",
            short_sha(config_commit),
            short_sha(&desired.spec.source.commit)
        );
        let (kind, revision, message) = match (&target.mode, target.held) {
            (Mode::Pinned(pin), Some(n)) => (
                HoldKind::Pinned,
                n,
                format!(
                    "pinned at revision {n} by {} ({}); {not_applied}; only drift towards the pin is corrected",
                    pin.by, pin.reason
                ),
            ),
            (Mode::Hold { why }, Some(n)) => (
                HoldKind::Quarantined,
                n,
                format!(
                    "config commit {} is quarantined ({why}); holding revision {n}; {not_applied} until a new config commit or `shipshape retry {app}`",
                    short_sha(config_commit)
                ),
            ),
            (Mode::Gated(v), Some(n)) => (
                HoldKind::Wave,
                n,
                format!(
                    "wave {} ({} of {}) holds revision {n}: {}; {not_applied}",
                    v.wave,
                    v.wave_index + 1,
                    v.waves,
                    v.message
                ),
            ),
            _ => return None,
        };
        Some(Hold {
            kind,
            revision,
            message,
        })
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a revision is a good one to go back to (or hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Good {
    /// It passed verification.
    Healthy,
    /// It was live and passing (at least one passing round, none failing) when a newer
    /// revision superseded its verification: the last known good.
    LastKnownGood,
}

impl Good {
    /// In words, for messages.
    pub fn words(self) -> &'static str {
        match self {
            Good::Healthy => "healthy",
            Good::LastKnownGood => {
                "the last known good: it was live and passing when a newer revision superseded it"
            }
        }
    }
}

/// The revision to go back to, or to hold, other than `except`: the newest Healthy one;
/// when none is, the newest that was superseded while live and passing (at least one
/// passing round, no failing round). A revision never probed is never good.
pub fn good_revision(rec: &AppRecord, except: Option<u64>) -> Option<(&RevisionEntry, Good)> {
    let others = || {
        rec.revisions
            .iter()
            .rev()
            .filter(move |r| Some(r.revision.number) != except)
    };
    if let Some(h) = others().find(|r| r.revision.outcome == Outcome::Healthy) {
        return Some((h, Good::Healthy));
    }
    others()
        .find(|r| {
            r.revision.outcome == Outcome::Superseded
                && r.revision.rounds.passed >= 1
                && r.revision.rounds.failed == 0
        })
        .map(|r| (r, Good::LastKnownGood))
}

/// The quarantine of `config_commit`, in words, if it is quarantined.
pub fn quarantine_of(rec: &AppRecord, config_commit: &str) -> Option<String> {
    rec.quarantined
        .iter()
        .find(|q| q.config_commit == config_commit)
        .map(|q| format!("revision {}: {}", q.revision, q.reason))
}

/// What to converge to: a pin wins; a quarantined desired config commit holds the last
/// good revision; otherwise the document.
///
/// # Errors
/// [`NoTarget`] when the pin or the hold has no revision to converge to.
pub fn choose(rec: &AppRecord, desired: &App, config_commit: &str) -> Result<Target, NoTarget> {
    if let Some(pin) = &rec.pin {
        return match rec.revision(pin.revision) {
            Some(r) => Ok(Target {
                document: r.document.clone(),
                mode: Mode::Pinned(pin.clone()),
                held: Some(pin.revision),
            }),
            None => Err(NoTarget::PinGone {
                revision: pin.revision,
            }),
        };
    }
    if let Some(why) = quarantine_of(rec, config_commit) {
        return match good_revision(rec, None) {
            Some((r, _)) => Ok(Target {
                document: held_document(rec, config_commit, r),
                mode: Mode::Hold { why },
                held: Some(r.revision.number),
            }),
            None => Err(NoTarget::QuarantinedWithoutGood {
                why,
                config_commit: config_commit.to_string(),
                app: rec.name.clone(),
            }),
        };
    }
    Ok(Target {
        document: desired.clone(),
        mode: Mode::Follow,
        held: None,
    })
}

/// The app commit a wave gate must let in before `target` is followed, if any: the
/// document has a rollout in waves, the pass follows it, and its app commit is neither
/// live here nor already being rolled out here for `config_commit` (a rollout the
/// controller stopped in, or one a request superseded, goes on without asking again).
pub fn gated_commit<'a>(
    rec: &AppRecord,
    target: &'a Target,
    config_commit: &str,
) -> Option<&'a str> {
    target.document.spec.rollout.as_ref()?;
    if !target.mode.follows() {
        return None;
    }
    let commit = target.document.spec.source.commit.as_str();
    let live = rec.live().map(|r| r.revision.app_commit.as_str());
    // Under way for this very config commit: the gate let it in (a later config commit
    // asking for the commit again is a new decision, asked again).
    let started = rec.last_attempted().is_some_and(|r| {
        r.revision.app_commit == commit
            && r.revision.config_commit == config_commit
            && matches!(
                r.revision.outcome,
                Outcome::Progressing | Outcome::Superseded
            )
    });
    (live != Some(commit) && !started).then_some(commit)
}

/// What a pass holds while the wave gate keeps `verdict`'s commit back: the live revision
/// as it is; `None` when nothing is live yet (the app waits, undeployed).
pub fn gate_hold(rec: &AppRecord, verdict: crate::gate::Verdict) -> Option<Target> {
    let live = rec.live()?;
    Some(Target {
        document: live.document.clone(),
        mode: Mode::Gated(Box::new(verdict)),
        held: Some(live.revision.number),
    })
}

/// The good revision's document as a quarantine holds it. When the revert away from the
/// quarantined revision kept its schema (`onRevert: keep`, expand/contract), the database
/// stays at that revision's level: holding the good revision must not migrate it down, so
/// its migrations are left unmanaged while the hold lasts.
fn held_document(rec: &AppRecord, config_commit: &str, good: &RevisionEntry) -> App {
    let mut document = good.document.clone();
    let kept = rec
        .quarantined
        .iter()
        .find(|q| q.config_commit == config_commit)
        .and_then(|q| rec.revision(q.revision))
        .is_some_and(|failed| {
            failed.revision.level != good.revision.level
                && failed
                    .document
                    .spec
                    .migrations
                    .as_ref()
                    .is_some_and(|m| m.on_revert == shipshape_spec::app::OnRevert::Keep)
        });
    if kept {
        document.spec.migrations = None;
    }
    document
}

/// What a pass's steps would be applied as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionChoice {
    /// An existing revision: a retried or resumed rollout, a drift repair, a pin or a hold.
    Existing(u64),
    /// A new revision (a rollout).
    New,
}

/// The revision a pass with steps to run works under. `release` and `process_hash` are
/// what the plan converges to.
pub fn revision_for(
    rec: &AppRecord,
    target: &Target,
    config_commit: &str,
    release: &str,
    process_hash: &str,
) -> RevisionChoice {
    if let Some(n) = target.held {
        return RevisionChoice::Existing(n);
    }
    let same = |r: &RevisionEntry| r.release == release && r.revision.process_hash == process_hash;
    if let Some(r) = rec
        .last_attempted()
        .filter(|r| r.revision.config_commit == config_commit && same(r))
    {
        return RevisionChoice::Existing(r.revision.number);
    }
    // Drift repair of what is live (e.g. a new config commit that changed nothing).
    match rec.live().filter(|r| same(r)) {
        Some(r) => RevisionChoice::Existing(r.revision.number),
        None => RevisionChoice::New,
    }
}

/// True when everything is in place but the rollout's verification never finished (the
/// controller stopped, or a newer document, or a request, stopped it): verify again. That
/// is the document's revision when following it, and the pinned (or wave-held) revision
/// when it is the live one left unverified (a pin to the revision being verified stops the
/// wait, or a newer app commit came that its wave gate holds back, and the revision would
/// otherwise stay Progressing for as long as the hold lasts).
pub fn needs_reverify(
    rec: &AppRecord,
    target: &Target,
    config_commit: &str,
    release: &str,
    process_hash: &str,
) -> bool {
    rec.last_attempted().is_some_and(|r| {
        let ours = match &target.mode {
            Mode::Follow => r.revision.config_commit == config_commit,
            // A pin, or a wave gate, holding the live revision its verification left
            // unfinished: it is verified (else it would stay Progressing while held).
            Mode::Pinned(_) | Mode::Gated(_) => {
                target.held == Some(r.revision.number)
                    && rec.live_revision == Some(r.revision.number)
            }
            Mode::Hold { .. } => false,
        };
        ours && matches!(
            r.revision.outcome,
            Outcome::Progressing | Outcome::Superseded
        ) && r.release == release
            && r.revision.process_hash == process_hash
    })
}

/// What to pin: a revision by number, the newest healthy one running an app commit, or
/// (neither) the live revision when it is healthy, else the last good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinSelector<'a> {
    /// This revision.
    Revision(u64),
    /// The newest healthy revision running this app commit.
    AppCommit(&'a str),
    /// The live revision when healthy, else the last good one.
    Default,
}

/// Why a pin cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinRefusal {
    /// The revision is not in the history.
    #[error("revision {0} is not in the history")]
    NotInHistory(u64),
    /// The revision is neither healthy nor live.
    #[error("revision {0} is {1:?}; pin a healthy or the live revision")]
    NotHealthy(u64, Outcome),
    /// No healthy revision runs that app commit.
    #[error("no healthy revision on this host runs app commit {0}")]
    NoSuchCommit(String),
    /// Nothing good to pin.
    #[error("no healthy revision to pin")]
    NothingGood,
}

/// The one rule for pins, from the CLI (through the API) and from `spec.pin`: only a
/// healthy (or the live) revision can be held.
///
/// # Errors
/// [`PinRefusal`] when the selector names nothing that may be pinned.
pub fn pin_revision(rec: &AppRecord, selector: PinSelector<'_>) -> Result<u64, PinRefusal> {
    match selector {
        PinSelector::Revision(n) => {
            let r = rec.revision(n).ok_or(PinRefusal::NotInHistory(n))?;
            if r.revision.outcome != Outcome::Healthy && Some(n) != rec.live_revision {
                return Err(PinRefusal::NotHealthy(n, r.revision.outcome));
            }
            Ok(n)
        }
        PinSelector::AppCommit(c) => rec
            .revisions
            .iter()
            .rev()
            .find(|r| r.revision.app_commit == c && r.revision.outcome == Outcome::Healthy)
            .map(|r| r.revision.number)
            .ok_or_else(|| PinRefusal::NoSuchCommit(c.to_string())),
        PinSelector::Default => rec
            .live()
            .filter(|r| r.revision.outcome == Outcome::Healthy)
            .map(|r| r.revision.number)
            .or_else(|| good_revision(rec, None).map(|(r, _)| r.revision.number))
            .ok_or(PinRefusal::NothingGood),
    }
}

/// Must a run that makes revision `making_live` live, begun under `pin`, stop before its
/// next live step, given the requests recorded since it began (`pending`)? `Some(why)`
/// when the pin in force now would have the pass converge elsewhere: a new pin to another
/// revision, or the pin it converges to lifted. A pin to the very revision it makes live,
/// or a retry, lets it go on.
pub fn pin_change_stops(
    pin: Option<&Pin>,
    pending: &[crate::state::requests::Entry],
    making_live: u64,
) -> Option<String> {
    use crate::state::requests::{Request, pin_after};
    let now = pin_after(pin.cloned(), pending);
    match (pin, &now) {
        (_, Some(p)) if Some(p.revision) == pin.map(|o| o.revision) => None,
        (_, Some(p)) if p.revision == making_live => None,
        (_, Some(p)) => Some(format!(
            "pinned at revision {} by {} ({})",
            p.revision, p.by, p.reason
        )),
        (None, None) => None,
        (Some(old), None) => {
            let by = pending.iter().rev().find_map(|e| match &e.request {
                Request::Unpin { by } => Some(by.as_str()),
                _ => None,
            });
            Some(format!(
                "unpinned by {} (was revision {}); the app follows git again",
                by.unwrap_or("unknown"),
                old.revision
            ))
        }
    }
}

/// How the document's `spec.pin` changes the record's pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentPinChange {
    /// Nothing to change (a CLI pin wins; the same document pin holds).
    Keep,
    /// The document's pin was removed: unpin.
    Remove,
    /// Pin this revision.
    Set(u64),
    /// The document pins, but nothing on this host may be pinned.
    Refused(PinRefusal),
}

/// What `spec.pin` asks of the record's pin. A CLI pin is left alone.
pub fn document_pin(rec: &AppRecord, desired: &App) -> DocumentPinChange {
    let current = rec.pin.as_ref().map(|p| p.source);
    match (&desired.spec.pin, current) {
        (_, Some(PinSource::Cli)) => DocumentPinChange::Keep,
        (None, Some(PinSource::Document)) => DocumentPinChange::Remove,
        (None, None) | (Some(_), Some(PinSource::Document)) => DocumentPinChange::Keep,
        (Some(doc), None) => {
            let selector = match &doc.app_commit {
                Some(c) => PinSelector::AppCommit(c),
                None => PinSelector::Default,
            };
            match pin_revision(rec, selector) {
                Ok(n) => DocumentPinChange::Set(n),
                Err(e) => DocumentPinChange::Refused(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::{app, entry, record};
    use crate::state::Quarantine;
    use shipshape_spec::app::DocumentPin;
    use shipshape_spec::status::Rounds;

    fn pin(revision: u64, source: PinSource) -> Pin {
        Pin {
            revision,
            by: "ana".into(),
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
            reason: "incident".into(),
            source,
        }
    }

    fn quarantine(rec: &mut AppRecord, config: &str, revision: u64) {
        rec.quarantined.push(Quarantine {
            config_commit: config.into(),
            revision,
            reason: "api: status 500".into(),
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
        });
    }

    fn superseded(n: u64, passed: u32, failed: u32) -> RevisionEntry {
        let mut e = entry(n, Outcome::Superseded);
        e.revision.rounds = Rounds { passed, failed };
        e
    }

    /// (name, record, expected good revision and kind, excluding)
    #[test]
    fn the_good_revision_prefers_healthy_then_last_known_good_and_never_an_unprobed_one() {
        type Case = (
            &'static str,
            Vec<RevisionEntry>,
            Option<u64>,
            Option<(u64, Good)>,
        );
        let cases: Vec<Case> = vec![
            ("empty history", vec![], None, None),
            (
                "one healthy",
                vec![entry(1, Outcome::Healthy)],
                None,
                Some((1, Good::Healthy)),
            ),
            (
                "the newest healthy",
                vec![entry(1, Outcome::Healthy), entry(2, Outcome::Healthy)],
                None,
                Some((2, Good::Healthy)),
            ),
            (
                "healthy wins over a newer last known good",
                vec![entry(1, Outcome::Healthy), superseded(2, 2, 0)],
                None,
                Some((1, Good::Healthy)),
            ),
            (
                "superseded while passing is the last known good",
                vec![superseded(1, 1, 0), entry(2, Outcome::Failed)],
                Some(2),
                Some((1, Good::LastKnownGood)),
            ),
            (
                "superseded before any round is not good",
                vec![superseded(1, 0, 0), entry(2, Outcome::Failed)],
                Some(2),
                None,
            ),
            (
                "superseded after a failing round is not good",
                vec![superseded(1, 3, 1), entry(2, Outcome::Failed)],
                Some(2),
                None,
            ),
            (
                "the excluded revision is never its own target",
                vec![entry(1, Outcome::Healthy)],
                Some(1),
                None,
            ),
            (
                "failed, reverted and progressing revisions are not good",
                vec![
                    entry(1, Outcome::Failed),
                    entry(2, Outcome::Reverted),
                    entry(3, Outcome::Progressing),
                ],
                None,
                None,
            ),
            (
                "the newest last known good",
                vec![
                    superseded(1, 1, 0),
                    superseded(2, 4, 0),
                    entry(3, Outcome::Failed),
                ],
                Some(3),
                Some((2, Good::LastKnownGood)),
            ),
        ];
        for (name, revisions, except, want) in cases {
            let mut rec = record();
            rec.revisions = revisions;
            let got = good_revision(&rec, except).map(|(r, g)| (r.revision.number, g));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn the_target_is_the_pin_then_the_hold_then_the_document() {
        let desired = app("c0ffee");
        struct Case {
            name: &'static str,
            setup: fn(&mut AppRecord),
            want: Result<(&'static str, Option<u64>), NoTarget>,
        }
        let cases = [
            Case {
                name: "no pin, no quarantine: follow the document",
                setup: |_| {},
                want: Ok(("follow", None)),
            },
            Case {
                name: "a CLI pin holds its revision",
                setup: |r| r.pin = Some(pin(1, PinSource::Cli)),
                want: Ok(("pinned", Some(1))),
            },
            Case {
                name: "a document pin holds its revision",
                setup: |r| r.pin = Some(pin(1, PinSource::Document)),
                want: Ok(("pinned", Some(1))),
            },
            Case {
                name: "a pin wins over a quarantine",
                setup: |r| {
                    r.pin = Some(pin(1, PinSource::Cli));
                    quarantine(r, "cfg", 2);
                },
                want: Ok(("pinned", Some(1))),
            },
            Case {
                name: "a pin whose revision left the history",
                setup: |r| r.pin = Some(pin(9, PinSource::Cli)),
                want: Err(NoTarget::PinGone { revision: 9 }),
            },
            Case {
                name: "a quarantined desired commit holds the last healthy revision",
                setup: |r| quarantine(r, "cfg", 2),
                want: Ok(("hold", Some(1))),
            },
            Case {
                name: "a quarantined desired commit holds the last known good",
                setup: |r| {
                    r.revisions[0] = superseded(1, 2, 0);
                    quarantine(r, "cfg", 2);
                },
                want: Ok(("hold", Some(1))),
            },
            Case {
                name: "a quarantined desired commit and nothing good",
                setup: |r| {
                    r.revisions[0].revision.outcome = Outcome::Failed;
                    quarantine(r, "cfg", 2);
                },
                want: Err(NoTarget::QuarantinedWithoutGood {
                    why: "revision 2: api: status 500".into(),
                    config_commit: "cfg".into(),
                    app: "demo".into(),
                }),
            },
            Case {
                name: "another commit's quarantine does not hold this one",
                setup: |r| quarantine(r, "older", 2),
                want: Ok(("follow", None)),
            },
        ];
        for case in cases {
            let mut rec = record();
            rec.revisions = vec![entry(1, Outcome::Healthy), entry(2, Outcome::Reverted)];
            rec.live_revision = Some(1);
            (case.setup)(&mut rec);
            let got = choose(&rec, &desired, "cfg").map(|t| {
                let mode = match t.mode {
                    Mode::Follow => "follow",
                    Mode::Pinned(_) => "pinned",
                    Mode::Hold { .. } => "hold",
                    Mode::Gated(_) => "gated",
                };
                (mode, t.held)
            });
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn a_hold_after_a_revert_that_kept_the_schema_does_not_migrate_down() {
        let migrations = |level: &str, on_revert: &str| {
            serde_json::from_value::<shipshape_spec::app::Migrations>(serde_json::json!({
                "driver": "dbmate", "level": level, "onRevert": on_revert
            }))
            .unwrap()
        };
        // (onRevert of the failed revision, its level, whether the hold manages migrations)
        let rows = [
            ("keep", "002", false),
            ("keep", "001", true),
            ("down", "002", true),
            ("restore", "002", true),
        ];
        for (how, failed_level, managed) in rows {
            let mut rec = record();
            rec.revisions = vec![entry(1, Outcome::Healthy), entry(2, Outcome::Reverted)];
            rec.revisions[0].document.spec.migrations = Some(migrations("001", how));
            rec.revisions[0].revision.level = Some("001".into());
            rec.revisions[1].document.spec.migrations = Some(migrations(failed_level, how));
            rec.revisions[1].revision.level = Some(failed_level.into());
            quarantine(&mut rec, "cfg", 2);
            let t = choose(&rec, &app("x"), "cfg").unwrap();
            assert_eq!(t.held, Some(1));
            assert_eq!(
                t.document.spec.migrations.is_some(),
                managed,
                "onRevert {how}, failed level {failed_level}"
            );
        }
    }

    #[test]
    fn a_pass_reuses_a_revision_for_retries_repairs_and_holds_and_opens_one_for_a_rollout() {
        let mut rec = record();
        rec.revisions = vec![entry(1, Outcome::Healthy), entry(2, Outcome::Failed)];
        rec.revisions[1].revision.config_commit = "cfg2".into();
        rec.revisions[1].release = "r2".into();
        rec.live_revision = Some(1);
        let follow = Target {
            document: app("a"),
            mode: Mode::Follow,
            held: None,
        };
        let held = Target {
            held: Some(1),
            mode: Mode::Pinned(pin(1, PinSource::Cli)),
            ..follow.clone()
        };
        let cases = [
            (
                "held",
                &held,
                "cfg9",
                "r9",
                "h",
                RevisionChoice::Existing(1),
            ),
            (
                "retry of the last attempt",
                &follow,
                "cfg2",
                "r2",
                "h",
                RevisionChoice::Existing(2),
            ),
            (
                "drift of the live one",
                &follow,
                "cfg9",
                "r1",
                "h",
                RevisionChoice::Existing(1),
            ),
            (
                "a new rollout",
                &follow,
                "cfg9",
                "r9",
                "h",
                RevisionChoice::New,
            ),
            (
                "same commit, other processes",
                &follow,
                "cfg2",
                "r2",
                "x",
                RevisionChoice::New,
            ),
        ];
        for (name, target, config, release, hash, want) in cases {
            assert_eq!(
                revision_for(&rec, target, config, release, hash),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn an_unfinished_verification_is_run_again_only_for_the_same_rollout() {
        let follow = Target {
            document: app("a"),
            mode: Mode::Follow,
            held: None,
        };
        let pinned = Target {
            held: Some(1),
            mode: Mode::Pinned(pin(1, PinSource::Cli)),
            ..follow.clone()
        };
        let cases = [
            ("progressing", Outcome::Progressing, &follow, "cfg1", true),
            ("superseded", Outcome::Superseded, &follow, "cfg1", true),
            ("healthy", Outcome::Healthy, &follow, "cfg1", false),
            ("failed", Outcome::Failed, &follow, "cfg1", false),
            (
                "another config commit",
                Outcome::Progressing,
                &follow,
                "cfg9",
                false,
            ),
            ("pinned", Outcome::Progressing, &pinned, "cfg1", false),
        ];
        for (name, outcome, target, config, want) in cases {
            let mut rec = record();
            rec.revisions = vec![entry(1, outcome)];
            assert_eq!(
                needs_reverify(&rec, target, config, "r1", "h"),
                want,
                "{name}"
            );
        }
        // Held live and unverified, by a pin or a wave gate: verified while held.
        let gated = Target {
            held: Some(1),
            mode: Mode::Gated(Box::new(crate::gate::Verdict {
                wave: "web".into(),
                wave_index: 1,
                waves: 2,
                state: shipshape_spec::status::GateState::Waiting,
                message: String::new(),
                hosts: vec![],
                marks: vec![],
            })),
            ..follow.clone()
        };
        let mut rec = record();
        rec.revisions = vec![entry(1, Outcome::Progressing)];
        rec.live_revision = Some(1);
        assert!(needs_reverify(&rec, &pinned, "cfg2", "r1", "h"));
        assert!(needs_reverify(&rec, &gated, "cfg2", "r1", "h"));
        rec.revisions[0].revision.outcome = Outcome::Healthy;
        assert!(!needs_reverify(&rec, &gated, "cfg2", "r1", "h"));
    }

    #[test]
    fn pins_follow_one_rule_for_the_cli_and_the_document() {
        let mut rec = record();
        rec.revisions = vec![
            entry(1, Outcome::Healthy),
            entry(2, Outcome::Failed),
            entry(3, Outcome::Progressing),
        ];
        rec.revisions[1].revision.app_commit = "bad".into();
        rec.live_revision = Some(3);
        let cases: Vec<(&str, PinSelector, Result<u64, PinRefusal>)> = vec![
            ("a healthy revision", PinSelector::Revision(1), Ok(1)),
            (
                "the live revision, even unverified",
                PinSelector::Revision(3),
                Ok(3),
            ),
            (
                "a failed revision",
                PinSelector::Revision(2),
                Err(PinRefusal::NotHealthy(2, Outcome::Failed)),
            ),
            (
                "not in history",
                PinSelector::Revision(7),
                Err(PinRefusal::NotInHistory(7)),
            ),
            ("by app commit", PinSelector::AppCommit("app1"), Ok(1)),
            (
                "an app commit that never was healthy",
                PinSelector::AppCommit("bad"),
                Err(PinRefusal::NoSuchCommit("bad".into())),
            ),
            (
                "default: the last good when live is not healthy",
                PinSelector::Default,
                Ok(1),
            ),
        ];
        for (name, selector, want) in cases {
            assert_eq!(pin_revision(&rec, selector), want, "{name}");
        }
        rec.revisions[0].revision.outcome = Outcome::Failed;
        assert_eq!(
            pin_revision(&rec, PinSelector::Default),
            Err(PinRefusal::NothingGood)
        );
    }

    #[test]
    fn the_document_pin_never_overrides_a_cli_pin() {
        let doc_pin = DocumentPin {
            reason: "freeze".into(),
            by: None,
            app_commit: None,
        };
        let mut pinned_doc = app("a");
        pinned_doc.spec.pin = Some(doc_pin);
        let plain = app("a");
        let cases: Vec<(&str, Option<PinSource>, &App, DocumentPinChange)> = vec![
            (
                "cli pin, doc pins",
                Some(PinSource::Cli),
                &pinned_doc,
                DocumentPinChange::Keep,
            ),
            (
                "cli pin, doc does not",
                Some(PinSource::Cli),
                &plain,
                DocumentPinChange::Keep,
            ),
            (
                "doc pin kept",
                Some(PinSource::Document),
                &pinned_doc,
                DocumentPinChange::Keep,
            ),
            (
                "doc pin removed",
                Some(PinSource::Document),
                &plain,
                DocumentPinChange::Remove,
            ),
            ("no pin either way", None, &plain, DocumentPinChange::Keep),
            (
                "doc pins the live healthy",
                None,
                &pinned_doc,
                DocumentPinChange::Set(1),
            ),
        ];
        for (name, source, doc, want) in cases {
            let mut rec = record();
            rec.revisions = vec![entry(1, Outcome::Healthy)];
            rec.live_revision = Some(1);
            rec.pin = source.map(|s| pin(1, s));
            assert_eq!(document_pin(&rec, doc), want, "{name}");
        }
        let mut rec = record();
        rec.revisions = vec![entry(1, Outcome::Failed)];
        assert_eq!(
            document_pin(&rec, &pinned_doc),
            DocumentPinChange::Refused(PinRefusal::NothingGood)
        );
    }

    #[test]
    fn a_run_stops_for_a_pin_elsewhere_or_a_lifted_pin_and_goes_on_for_its_own_revision() {
        use crate::state::requests::{Entry, Request};
        let e = |seq, request| Entry {
            seq,
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
            request,
        };
        let pin_to = |n| Request::Pin {
            pin: pin(n, PinSource::Cli),
        };
        let unpin = Request::Unpin { by: "bo".into() };
        let retry = Request::Retry {
            config_commit: None,
        };
        let cli1 = pin(1, PinSource::Cli);
        // (name, pin the run began under, requests since, revision it makes live, stops?)
        type Row<'a> = (&'a str, Option<&'a Pin>, Vec<Entry>, u64, Option<&'a str>);
        let rows: Vec<Row> = vec![
            ("nothing asked", None, vec![], 2, None),
            ("a retry", None, vec![e(1, retry.clone())], 2, None),
            (
                "a pin during a rollout",
                None,
                vec![e(1, pin_to(1))],
                2,
                Some("pinned at revision 1 by ana (incident)"),
            ),
            (
                "a pin to the revision a revert goes back to",
                None,
                vec![e(1, pin_to(1))],
                1,
                None,
            ),
            (
                "the same pin again",
                Some(&cli1),
                vec![e(1, pin_to(1))],
                1,
                None,
            ),
            (
                "unpinned while converging to the pin",
                Some(&cli1),
                vec![e(1, unpin.clone())],
                1,
                Some("unpinned by bo (was revision 1)"),
            ),
            (
                "pinned and unpinned again",
                None,
                vec![e(1, pin_to(1)), e(2, unpin)],
                2,
                None,
            ),
            (
                "pinned elsewhere while pinned",
                Some(&cli1),
                vec![e(1, pin_to(3))],
                1,
                Some("pinned at revision 3"),
            ),
        ];
        for (name, began, pending, making_live, want) in rows {
            let got = pin_change_stops(began, &pending, making_live);
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!(g.starts_with(w), "{name}: {g}"),
                (g, w) => panic!("{name}: {g:?}, want {w:?}"),
            }
        }
    }

    /// When the wave gate is asked: a document with a rollout, followed, whose app commit
    /// is neither live nor being rolled out here; and what a hold then converges to.
    #[test]
    fn the_gate_is_asked_for_a_new_app_commit_only_and_a_hold_keeps_the_live_revision() {
        let rollout: shipshape_spec::rollout::Rollout = serde_json::from_value(serde_json::json!({
            "prometheus": "http://p:9090",
            "waves": [{ "name": "canary", "hosts": { "names": ["web-1"] } }]
        }))
        .unwrap();
        let follow = |commit: &str, with_rollout: bool| {
            let mut document = app(commit);
            if with_rollout {
                document.spec.rollout = Some(rollout.clone());
            }
            Target {
                document,
                mode: Mode::Follow,
                held: None,
            }
        };
        // Revision 1 (app1) live and healthy.
        let mut rec = record();
        rec.revisions = vec![entry(1, Outcome::Healthy)];
        rec.live_revision = Some(1);
        assert_eq!(
            gated_commit(&rec, &follow("app2", true), "cfg2"),
            Some("app2")
        );
        assert_eq!(
            gated_commit(&rec, &follow("app2", false), "cfg2"),
            None,
            "no rollout"
        );
        assert_eq!(
            gated_commit(&rec, &follow("app1", true), "cfg2"),
            None,
            "live already"
        );
        let mut pinned = follow("app2", true);
        pinned.mode = Mode::Pinned(shipshape_spec::status::Pin {
            revision: 1,
            by: "ana".into(),
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
            reason: "incident".into(),
            source: PinSource::Cli,
        });
        assert_eq!(gated_commit(&rec, &pinned, "cfg2"), None, "a pin wins");
        // A rollout of app2 under way here (the controller stopped, or it was superseded).
        let mut under_way = rec.clone();
        under_way.revisions.push(entry(2, Outcome::Progressing));
        assert_eq!(
            gated_commit(&under_way, &follow("app2", true), "cfg2"),
            None
        );
        under_way.revisions[1].revision.outcome = Outcome::Superseded;
        assert_eq!(
            gated_commit(&under_way, &follow("app2", true), "cfg2"),
            None
        );
        // … but a later config commit asking for it again asks the gate again.
        assert_eq!(
            gated_commit(&under_way, &follow("app2", true), "cfg3"),
            Some("app2")
        );
        // One that failed here is quarantined (a hold before the gate); one that was
        // reverted long ago and is asked for again by a new config commit is gated.
        under_way.revisions[1].revision.outcome = Outcome::Reverted;
        assert_eq!(
            gated_commit(&under_way, &follow("app2", true), "cfg2"),
            Some("app2")
        );
        // Nothing live: the gate is asked, and a hold has nothing to keep.
        let fresh = record();
        assert_eq!(
            gated_commit(&fresh, &follow("app1", true), "cfg1"),
            Some("app1")
        );
        let verdict = crate::gate::Verdict {
            wave: "web".into(),
            wave_index: 1,
            waves: 2,
            state: shipshape_spec::status::GateState::Waiting,
            message: "waiting".into(),
            hosts: vec![],
            marks: vec![],
        };
        assert_eq!(gate_hold(&fresh, verdict.clone()), None);
        let held = gate_hold(&rec, verdict).expect("the live revision is held");
        assert_eq!(held.held, Some(1));
        assert_eq!(held.document, rec.revisions[0].document);
        let hold = Hold::of(&held, &app("app2"), "cfg2").expect("a hold");
        assert_eq!(hold.kind, HoldKind::Wave);
        assert!(
            hold.message.starts_with("wave web (2 of 2) holds revision 1: waiting; desired config cfg2 (app app2) is not applied"),
            "{}",
            hold.message
        );
    }
}

//! The scenario table: what happens to the app ([`Act`]), how the last pass must end
//! ([`End`]), one scenario ([`Row`]); the document every row starts from and the tweaks
//! rows apply to it (rollback settings, hooks, modes, thresholds, migrations); the step
//! lists rows expect; and [`rows`], the table itself.

use std::path::Path;

use shipshape_spec::App;
use shipshape_spec::status::{Outcome, Phase};

pub(super) const APP: &str = "demo";

/// A 40-character app commit from a two-letter name ("aa" → "aaaa…").
pub(super) fn commit(name: &str) -> String {
    name.repeat(20)
}

/// The config commit that declares app commit `name`.
pub(super) fn config_commit(name: &str) -> String {
    format!("{:f<40}", format!("c0{name}"))
}

pub(super) fn document(root: &Path, name: &str, tweak: fn(&mut App)) -> App {
    let mut app = super::super::fixtures::app(&commit(name));
    app.spec.releases.root = root.display().to_string();
    let health = &mut app.spec.health;
    health.interval = "2s".parse().expect("a duration");
    (health.success_threshold, health.failure_threshold) = (3, 3);
    health.progress_deadline = "1m".parse().expect("a duration");
    health.startup_grace = Some("0s".parse().expect("a duration"));
    app.spec.rollback.auto = true;
    app.spec.rollback.window = "30m".parse().expect("a duration");
    tweak(&mut app);
    app
}

/// One thing that happens to the app.
#[derive(Debug, Clone, Copy)]
pub(super) enum Act {
    /// A pass with the document at app commit `name`.
    Roll(&'static str),
    /// A pass with that document that stops (as a killed controller) at the n-th such call.
    CrashAt(&'static str, &'static str, usize),
    /// `n` rounds of the health monitor.
    Monitor(usize),
    /// A CLI pin of revision `n` (as the API records it), before the next pass.
    Pin(u64),
    /// A CLI pin of revision `n` recorded while the next pass runs (at its first pm2 start).
    PinMidPass(u64),
    /// `shipshape unpin`.
    Unpin,
    /// `shipshape retry` (every quarantined commit).
    Retry,
    /// A newer document lands in the config repo (a verification in progress sees it).
    Newer,
    /// ... and is reverted: the repo says again what the last pass read.
    Older,
    /// Someone deletes the app's pm2 processes by hand.
    Drift,
    /// A new config commit for app commit `name` that only adds a check named so (a check
    /// named `strict` always fails; any other answers as the release does).
    AddCheck(&'static str, &'static str),
}

/// How the last pass must end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum End {
    Ready,
    NotReady(Phase),
    Superseded,
}

/// One scenario.
pub(super) struct Row {
    pub(super) name: &'static str,
    /// The document, changed for the row (modes, rollback settings, hooks …).
    pub(super) tweak: fn(&mut App),
    /// Per app commit: its first rounds (true: passing), then every later round.
    pub(super) health: &'static [(&'static str, &'static [bool], bool)],
    /// Commands that fail: (for the app commit, the command).
    pub(super) failing: &'static [(&'static str, &'static str)],
    pub(super) acts: &'static [Act],
    /// The kinds of the steps the last pass ran, in order.
    pub(super) steps: &'static [&'static str],
    pub(super) end: End,
    /// Each revision's outcome after the last pass, in order.
    pub(super) outcomes: &'static [Outcome],
    /// The live revision after the last pass.
    pub(super) live: Option<u64>,
    /// The app commits whose config commits are quarantined.
    pub(super) quarantined: &'static [&'static str],
    /// The database's level after the last pass (rows with migrations).
    pub(super) level: Option<&'static str>,
}

fn keep(_: &mut App) {}
fn auto_off(a: &mut App) {
    a.spec.rollback.auto = false;
}
fn window_zero(a: &mut App) {
    a.spec.rollback.window = "0s".parse().expect("a duration");
}
fn with_hooks(a: &mut App) {
    a.spec.hooks.after_switch = vec!["reload-nginx".into(), "warm-cache".into()];
}
fn fork_mode(a: &mut App) {
    a.spec.processes[0].exec_mode = Some(shipshape_spec::app::ExecMode::Fork);
    a.spec.processes[0].instances = Some(shipshape_spec::app::Instances::Count(1));
}
fn failure_threshold_one(a: &mut App) {
    a.spec.health.failure_threshold = 1;
}
fn success_threshold_one(a: &mut App) {
    a.spec.health.success_threshold = 1;
}
/// Migrations through the `command` driver; app commit "aa" is level 001, "bb" 002 …
fn migrations(a: &mut App, on_revert: &str, backup: bool) {
    let n = match &a.spec.source.commit[..2] {
        "aa" => 1,
        "bb" => 2,
        _ => 3,
    };
    let mut m = serde_json::json!({
        "driver": "command", "level": format!("{n:03}"), "onRevert": on_revert,
        "command": { "status": "db-status", "up": "db-up", "down": "db-down" },
        "restore": "db-restore",
    });
    if backup {
        m["backup"] = "db-backup".into();
    }
    a.spec.migrations = Some(serde_json::from_value(m).expect("migrations"));
}
fn migrate_down(a: &mut App) {
    migrations(a, "down", false);
}
fn migrate_keep(a: &mut App) {
    migrations(a, "keep", false);
}
fn migrate_restore(a: &mut App) {
    migrations(a, "restore", true);
}
fn migrate_restore_no_backup(a: &mut App) {
    migrations(a, "restore", false);
}

use Act::*;
use Outcome::{Failed, Healthy, Reverted, Superseded as Sup};

/// A first rollout's steps.
#[rustfmt::skip]
const FIRST: &[&str] = &["fetch", "install", "build", "switch", "pm2-start", "pm2-save", "verify"];
/// A new app commit's steps, the processes running.
#[rustfmt::skip]
const NEXT: &[&str] = &["fetch", "install", "build", "switch", "pm2-reload", "pm2-save", "verify"];

/// A rollout's steps, then a revert's (to the processes of the revision gone back to).
#[rustfmt::skip]
const NEXT_REVERTED: &[&str] = &["fetch", "install", "build", "switch", "pm2-reload", "pm2-save", "verify", "switch", "pm2-reload", "pm2-save", "verify"];
/// Going to a prepared release: the pin, a revert's retry.
#[rustfmt::skip]
const BACK: &[&str] = &["switch", "pm2-reload", "pm2-save", "verify"];
const NONE: &[&str] = &[];
const FAILS: &[bool] = &[];
const PASS_3: &[bool] = &[true, true, true];
const FAIL_2: &[bool] = &[false, false];

#[rustfmt::skip]
pub(super) fn rows() -> Vec<Row> {
    use End::{NotReady, Ready, Superseded};
    use Phase::{Degraded, Failed as PFailed};
    let r = |name, tweak, health, failing, acts, steps, end, outcomes, live, quarantined| Row {
        name, tweak, health, failing, acts, steps, end, outcomes, live, quarantined, level: None,
    };
    let m = |level, row: Row| Row { level: Some(level), ..row };
    vec![
        // Rollouts that go well.
        r("a first rollout runs every step and is healthy",
          keep, &[], &[], &[Roll("aa")], FIRST, Ready, &[Healthy], Some(1), &[]),
        r("a second pass with nothing changed runs no step",
          keep, &[], &[], &[Roll("aa"), Roll("aa")], NONE, Ready, &[Healthy], Some(1), &[]),
        r("a new app commit is prepared beside the live release and reloaded",
          keep, &[], &[], &[Roll("aa"), Roll("bb")], NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("in fork mode a new app commit is reloaded too",
          fork_mode, &[], &[], &[Roll("aa"), Roll("bb")], NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("after-switch hooks run after pm2's list is saved, before verification",
          with_hooks, &[], &[], &[Roll("aa")],
          &["fetch", "install", "build", "switch", "pm2-start", "pm2-save", "hook", "hook", "verify"],
          Ready, &[Healthy], Some(1), &[]),
        r("hooks whose inputs did not change do not run again",
          with_hooks, &[], &[], &[Roll("aa"), Roll("aa")], NONE, Ready, &[Healthy], Some(1), &[]),
        r("checks failing fewer rounds in a row than failureThreshold do not fail the rollout",
          keep, &[("bb", FAIL_2, true)], &[], &[Roll("aa"), Roll("bb")], NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("processes deleted by hand are started again",
          keep, &[], &[], &[Roll("aa"), Drift, Roll("aa")], &["pm2-start", "pm2-save", "verify"], Ready, &[Healthy], Some(1), &[]),
        // Fail fast, and going back.
        r("checks failing failureThreshold rounds fail the rollout at once and it is reverted",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT_REVERTED, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("with failureThreshold 1 one failing round fails the rollout",
          failure_threshold_one, &[("bb", &[false], true)], &[], &[Roll("aa"), Roll("bb")],
          NEXT_REVERTED, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("passing rounds short of successThreshold, then failing rounds, fail the rollout",
          keep, &[("bb", &[true, true], false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT_REVERTED, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("with successThreshold 1 one passing round makes the rollout healthy",
          success_threshold_one, &[("bb", &[true], false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("a revert whose revision fails too stops Degraded",
          keep, &[("aa", PASS_3, false), ("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT_REVERTED, NotReady(Degraded), &[Healthy, Failed], Some(1), &["bb"]),
        r("a first rollout that fails has nothing to go back to: Degraded",
          keep, &[("aa", FAILS, false)], &[], &[Roll("aa")],
          FIRST, NotReady(Degraded), &[Failed], Some(1), &["aa"]),
        r("with rollback.auto off a failed rollout stays live, Degraded, not quarantined",
          auto_off, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          NEXT, NotReady(Degraded), &[Healthy, Failed], Some(2), &[]),
        r("a build that fails leaves the live release untouched",
          keep, &[], &[("bb", "npm run build")], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build"], NotReady(PFailed), &[Healthy, Failed], Some(1), &["bb"]),
        r("an install that fails leaves the live release untouched",
          keep, &[], &[("bb", "npm ci")], &[Roll("aa"), Roll("bb")],
          &["fetch", "install"], NotReady(PFailed), &[Healthy, Failed], Some(1), &["bb"]),
        r("a first build that fails leaves nothing live",
          keep, &[], &[("aa", "npm run build")], &[Roll("aa")],
          &["fetch", "install", "build"], NotReady(PFailed), &[Failed], None, &["aa"]),
        r("a hook that fails after the switch is reverted, the hooks run again after switching back",
          with_hooks, &[], &[("bb", "warm-cache")], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "switch", "pm2-reload", "pm2-save", "hook", "hook",
            "switch", "pm2-reload", "pm2-save", "hook", "hook", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        // Quarantine.
        r("a reverted config commit is not applied again",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb"), Roll("bb")],
          NONE, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("a failed build's config commit is not built again",
          keep, &[], &[("bb", "npm run build")], &[Roll("aa"), Roll("bb"), Roll("bb")],
          NONE, NotReady(PFailed), &[Healthy, Failed], Some(1), &["bb"]),
        r("while a commit is quarantined drift is repaired towards the last good revision",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb"), Drift, Roll("bb")],
          &["pm2-start", "pm2-save", "verify"], NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("a new config commit after a quarantine is applied",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb"), Roll("cc")],
          NEXT, Ready, &[Healthy, Reverted, Healthy], Some(3), &["bb"]),
        r("retry applies a quarantined commit again, as the same revision",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb"), Retry, Roll("bb")],
          &["switch", "pm2-reload", "pm2-save", "verify", "switch", "pm2-reload", "pm2-save", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        // Pins.
        r("a pin converges to the pinned revision",
          keep, &[], &[], &[Roll("aa"), Roll("bb"), Pin(1), Roll("bb")],
          BACK, Ready, &[Healthy, Healthy], Some(1), &[]),
        r("a pinned app does not follow a new config commit",
          keep, &[], &[], &[Roll("aa"), Pin(1), Roll("bb")],
          NONE, Ready, &[Healthy], Some(1), &[]),
        r("unpinning follows the document again",
          keep, &[], &[], &[Roll("aa"), Roll("bb"), Pin(1), Roll("bb"), Unpin, Roll("bb")],
          BACK, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("a pin of a revision no longer in the history stops the pass",
          keep, &[], &[], &[Roll("aa"), Pin(7), Roll("aa")],
          NONE, NotReady(PFailed), &[Healthy], Some(1), &[]),
        r("a pinned revision that fails is not reverted: Degraded",
          keep, &[("aa", PASS_3, false)], &[], &[Roll("aa"), Roll("bb"), Pin(1), Roll("bb")],
          BACK, NotReady(Degraded), &[Healthy, Healthy], Some(1), &[]),
        r("a pin recorded mid-pass stops it before its next live step",
          keep, &[], &[], &[Roll("aa"), PinMidPass(1), Roll("bb")],
          &["fetch", "install", "build", "switch", "pm2-reload"], Superseded, &[Healthy, Sup], Some(2), &[]),
        r("after a pin stopped a pass the next pass converges to the pin",
          keep, &[], &[], &[Roll("aa"), PinMidPass(1), Roll("bb"), Roll("bb")],
          BACK, Ready, &[Healthy, Sup], Some(1), &[]),
        r("a pin of the revision being rolled out does not stop its steps; its verification stops on the request",
          keep, &[], &[], &[Roll("aa"), PinMidPass(2), Roll("bb")],
          NEXT, Superseded, &[Healthy, Sup], Some(2), &[]),
        // A pinned revision whose verification the pin request stopped is verified again
        // while pinned (before, it stayed Progressing for as long as the pin held).
        r("a rollout pinned mid-pass to itself is verified again while pinned and becomes healthy",
          keep, &[], &[], &[Roll("aa"), PinMidPass(2), Roll("bb"), Roll("bb")],
          &["verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        // Newest wins.
        r("a newer document during verification supersedes the rollout",
          keep, &[], &[], &[Roll("aa"), Newer, Roll("bb")],
          NEXT, Superseded, &[Healthy, Sup], Some(2), &[]),
        r("a newer document during a first rollout supersedes it",
          keep, &[], &[], &[Newer, Roll("aa")],
          FIRST, Superseded, &[Sup], Some(1), &[]),
        r("a superseded rollout whose document came back is verified again",
          keep, &[], &[], &[Roll("aa"), Newer, Roll("bb"), Older, Roll("bb")],
          &["verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        // A controller that stopped mid-pass.
        r("resumed after a stop before pm2's list was saved: save and verify",
          keep, &[], &[], &[Roll("aa"), CrashAt("bb", "pm2 save", 2), Roll("bb")],
          &["pm2-save", "verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        r("resumed after a stop mid-build: prepared again from fetch",
          keep, &[], &[], &[Roll("aa"), CrashAt("bb", "cmd npm run build", 2), Roll("bb")],
          NEXT, Ready, &[Healthy, Healthy], Some(2), &[]),
        r("resumed after a stop mid-reload: reload, save, verify",
          keep, &[], &[], &[Roll("aa"), CrashAt("bb", "pm2 start web", 2), Roll("bb")],
          &["pm2-reload", "pm2-save", "verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        r("resumed after a stop mid-verification: verified again",
          keep, &[], &[], &[Roll("aa"), CrashAt("bb", "probe", 4), Roll("bb")],
          &["verify"], Ready, &[Healthy, Healthy], Some(2), &[]),
        r("resumed after a stop mid-revert: the revert is finished, not the rollout",
          keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), CrashAt("bb", "pm2 start web", 3), Roll("bb")],
          &["pm2-reload", "pm2-save", "verify"], NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        // The monitor's rounds before a rollout.
        r("one failing monitor round before a rollout is no evidence: the failing rollout is blamed",
          keep, &[("aa", &[true, true, true, false], true), ("bb", FAILS, false)], &[],
          &[Roll("aa"), Monitor(1), Roll("bb")],
          NEXT_REVERTED, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("checks failing failureThreshold monitor rounds before a rollout: it is not blamed",
          window_zero, &[("aa", PASS_3, false), ("bb", FAILS, false)], &[],
          &[Roll("aa"), Monitor(3), Roll("bb"), Roll("bb")],
          NEXT, NotReady(Degraded), &[Healthy, Failed], Some(2), &[]),
        r("a regression the monitor saw within rollback.window is reverted",
          keep, &[("bb", PASS_3, false)], &[], &[Roll("aa"), Roll("bb"), Monitor(3), Roll("bb")],
          BACK, NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"]),
        r("a regression after rollback.window is not reverted: Degraded",
          window_zero, &[("bb", PASS_3, false)], &[], &[Roll("aa"), Roll("bb"), Monitor(3), Roll("bb")],
          NONE, NotReady(Degraded), &[Healthy, Healthy], Some(2), &[]),
        // A config commit that changes only spec.health.
        r("a commit that only adds a check re-verifies the live release and touches nothing else",
          keep, &[], &[], &[Roll("aa"), AddCheck("aa", "home")],
          &["verify"], Ready, &[Healthy], Some(1), &[]),
        r("a commit that only adds a failing check: the check is suspect, nothing reverted or quarantined",
          keep, &[], &[], &[Roll("aa"), AddCheck("aa", "strict")],
          &["verify"], NotReady(Degraded), &[Healthy], Some(1), &[]),
        r("a suspect check keeps the app Degraded on the next pass, with nothing to apply",
          keep, &[], &[], &[Roll("aa"), AddCheck("aa", "strict"), AddCheck("aa", "strict")],
          NONE, NotReady(Degraded), &[Healthy], Some(1), &[]),
        // Migrations (the command driver, on the fake database).
        m("001", r("a migration runs after the build, before the switch",
          migrate_down, &[], &[], &[Roll("aa")],
          &["fetch", "install", "build", "migrate", "switch", "pm2-start", "pm2-save", "verify"],
          Ready, &[Healthy], Some(1), &[])),
        m("002", r("a backup is taken before the migration",
          migrate_restore, &[], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "backup", "migrate", "switch", "pm2-reload", "pm2-save", "verify"],
          Ready, &[Healthy, Healthy], Some(2), &[])),
        m("001", r("onRevert down: a failed rollout is reverted and migrated down",
          migrate_down, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "migrate", "switch", "pm2-reload", "pm2-save", "verify",
            "switch", "pm2-reload", "pm2-save", "migrate", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"])),
        m("001", r("onRevert restore: the backup the rollout took is restored",
          migrate_restore, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "backup", "migrate", "switch", "pm2-reload", "pm2-save", "verify",
            "switch", "pm2-reload", "pm2-save", "restore", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"])),
        m("002", r("onRevert keep: reverted, the schema stays",
          migrate_keep, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "migrate", "switch", "pm2-reload", "pm2-save", "verify",
            "switch", "pm2-reload", "pm2-save", "verify"],
          NotReady(PFailed), &[Healthy, Reverted], Some(1), &["bb"])),
        m("002", r("onRevert restore without a backup: the revert is refused, Degraded, not quarantined",
          migrate_restore_no_backup, &[("bb", FAILS, false)], &[], &[Roll("aa"), Roll("bb")],
          &["fetch", "install", "build", "migrate", "switch", "pm2-reload", "pm2-save", "verify"],
          NotReady(Degraded), &[Healthy, Failed], Some(2), &[])),
        m("002", r("resumed after a stop after the migration and the switch: not migrated again",
          migrate_down, &[], &[], &[Roll("aa"), CrashAt("bb", "pm2 start web", 2), Roll("bb")],
          &["pm2-reload", "pm2-save", "verify"], Ready, &[Healthy, Healthy], Some(2), &[])),
        r("a regression of a pinned revision is not reverted",
          keep, &[("bb", PASS_3, false)], &[], &[Roll("aa"), Roll("bb"), Pin(2), Roll("bb"), Monitor(3), Roll("bb")],
          NONE, NotReady(Degraded), &[Healthy, Healthy], Some(2), &[]),
    ]
}

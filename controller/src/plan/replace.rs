//! The graceful replace, as pure decisions: the temporary name a replacement runs under,
//! whether a replace can be graceful at all, and — given what pm2 runs under the declared
//! name and under the temporary one — the next move towards "the declared name runs the
//! document's config, the temporary name runs nothing".
//!
//! # Why a second name
//! pm2's reload cannot change instances, exec_mode, script/args/pm2 options, nor remove an
//! env variable (it merges env). Those need new processes. In cluster mode every worker of
//! every cluster-mode app is a child of the same pm2 daemon, which is the Node cluster
//! primary and holds one round-robin listening handle per address and port: workers of two
//! apps listening on the same port share it. So new processes started under a second name
//! take connections beside the old ones, and the old ones can then be deleted gracefully
//! (pm2 sends SIGINT and waits `kill_timeout`). The process ends under its declared name
//! again — started anew beside the temporary one, which is then deleted — so health checks,
//! status, pruning, markers and pm2's dump only ever know one name.
//!
//! # Moves
//! [`next_move`] is level-triggered: it reads the two slots afresh each time, so a replace
//! interrupted anywhere (a controller crash) continues from what pm2 runs. It never deletes
//! the only slot that serves: a slot with an instance online is deleted only while the other
//! one runs the document's config, or (a stale temporary) while the declared one still has
//! an instance online; a slot with none online ([`Slot::Down`]) can go any time.
//!
//! | declared name | temporary name | move |
//! |---|---|---|
//! | desired | absent | done |
//! | desired | present | delete the temporary (once the declared one is ready) |
//! | other | absent | start the temporary with the new config, wait until ready |
//! | other | other or down | delete the temporary (a stale one; the declared one serves) |
//! | other or down | desired | delete the declared (once the temporary is ready) |
//! | down | absent | start the temporary with the new config, wait until ready |
//! | down | other or down | delete the declared (it serves nothing; the temporary may) |
//! | absent | any | start the declared name with the new config, wait until ready |
//!
//! "Other" always has an instance online; "down" has instances and none online (stopped by
//! hand, errored): deleting a down declared name while a stale temporary serves the old
//! config keeps that one serving until the declared name runs the new config.

use shipshape_spec::app::ExecMode;

use crate::pm2::{ENV_CONFIG, Instance, Status};

/// What the temporary name adds to the declared one. `~` is not allowed in a declared
/// process name (letters, digits, `-`, `_`, `.`), so `NAME~next` never collides with a
/// declared process, and pm2 reads it as a plain name (not a number, `all`, a namespace or
/// an ecosystem file).
pub const NEXT_SUFFIX: &str = "~next";

/// The temporary name a replacement of `process` runs under.
pub fn next_name(process: &str) -> String {
    format!("{process}{NEXT_SUFFIX}")
}

/// The declared process a temporary name stands in for (`web~next` → `web`).
pub fn replaced_process(name: &str) -> Option<&str> {
    name.strip_suffix(NEXT_SUFFIX).filter(|n| !n.is_empty())
}

/// pm2's name for an exec mode in its process list.
pub fn pm2_mode(mode: ExecMode) -> &'static str {
    match mode {
        ExecMode::Fork => "fork_mode",
        ExecMode::Cluster => "cluster_mode",
    }
}

/// True when a replace can keep serving: the document asks for cluster mode and every
/// running instance (under either name) is in cluster mode. Two fork-mode processes cannot
/// listen on one port, and a fork-mode process holds its port alone, so a replace from,
/// to or in fork mode deletes first and then starts (requests are dropped meanwhile).
pub fn graceful<'a>(desired: ExecMode, running: impl IntoIterator<Item = &'a Instance>) -> bool {
    desired == ExecMode::Cluster && running.into_iter().all(|i| i.exec_mode == "cluster_mode")
}

/// What runs under one of the two names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Nothing.
    Absent,
    /// Instances, at least one online, that are not the document's config or not all online.
    Other,
    /// Instances, none of them online (stopped, errored, launching): nothing serves here.
    Down,
    /// Exactly the document's config: its instance count and exec mode, its config marker,
    /// every instance online.
    Desired,
}

/// What the document wants of one process, as [`slot`] compares it.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The config marker ([`ENV_CONFIG`]) of the ecosystem entry.
    pub config: &'a str,
    /// The instance count.
    pub count: u32,
    /// pm2's exec mode (`cluster_mode`, `fork_mode`).
    pub mode: &'a str,
}

/// How the instances running under one name compare with what the document wants.
pub fn slot<'a>(instances: impl IntoIterator<Item = &'a Instance>, want: Want<'_>) -> Slot {
    let instances: Vec<&Instance> = instances.into_iter().collect();
    if instances.is_empty() {
        return Slot::Absent;
    }
    let desired = instances.len() as u32 == want.count
        && instances.iter().all(|i| {
            i.exec_mode == want.mode
                && i.status == Status::Online
                && i.env.get(ENV_CONFIG).map(String::as_str) == Some(want.config)
        });
    if desired {
        Slot::Desired
    } else if instances.iter().any(|i| i.status == Status::Online) {
        Slot::Other
    } else {
        Slot::Down
    }
}

/// The next step of a graceful replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// The declared name runs the document's config and nothing runs under the temporary one.
    Done,
    /// Start the new config under the temporary name and wait until every instance is ready;
    /// on failure delete it again (the declared name never stopped serving).
    StartNext,
    /// Delete what runs under the temporary name (first waiting until the declared name is
    /// ready, when it runs the document's config).
    DeleteNext,
    /// Delete the old processes under the declared name (first waiting until the temporary
    /// ones are ready, when they run the document's config).
    DeleteDeclared,
    /// Start the new config under the declared name and wait until every instance is ready.
    StartDeclared,
}

/// The next move, from what runs under the declared and under the temporary name.
pub fn next_move(declared: Slot, next: Slot) -> Move {
    match (declared, next) {
        (Slot::Desired, Slot::Absent) => Move::Done,
        (Slot::Desired, _) => Move::DeleteNext,
        (Slot::Other | Slot::Down, Slot::Desired) => Move::DeleteDeclared,
        (Slot::Other, Slot::Absent) => Move::StartNext,
        (Slot::Other, Slot::Other | Slot::Down) => Move::DeleteNext,
        (Slot::Down, Slot::Absent) => Move::StartNext,
        // The declared name serves nothing: deleting it loses nothing, and the temporary one
        // (if it serves the old config) keeps serving until the declared name runs the new.
        (Slot::Down, Slot::Other | Slot::Down) => Move::DeleteDeclared,
        (Slot::Absent, _) => Move::StartDeclared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn inst(name: &str, mode: &str, status: &str, config: &str) -> Instance {
        Instance {
            name: name.into(),
            pm_id: 0,
            pid: 1,
            status: status.into(),
            restarts: 0,
            exec_mode: mode.into(),
            env: BTreeMap::from([(ENV_CONFIG.to_string(), config.to_string())]),
            cpu: 0.0,
            memory: 0,
            logs: Default::default(),
        }
    }

    #[test]
    fn the_temporary_name_is_never_a_declarable_name_and_maps_back() {
        for name in ["web", "a", "my-app.v2", "x_y"] {
            let next = next_name(name);
            assert!(!shipshape_spec::validate::is_process_name(&next), "{next}");
            assert_eq!(
                shipshape_spec::validate::pm2_reserved(&next),
                None,
                "{next}"
            );
            assert_eq!(replaced_process(&next), Some(name));
        }
        assert_eq!(replaced_process("web"), None);
        assert_eq!(replaced_process("~next"), None);
    }

    #[test]
    fn only_cluster_to_cluster_is_graceful() {
        let c = inst("web", "cluster_mode", "online", "a");
        let f = inst("web", "fork_mode", "online", "a");
        assert!(graceful(ExecMode::Cluster, [&c, &c]));
        assert!(graceful(ExecMode::Cluster, []));
        assert!(!graceful(ExecMode::Cluster, [&c, &f]), "fork → cluster");
        assert!(!graceful(ExecMode::Fork, [&c]), "cluster → fork");
        assert!(!graceful(ExecMode::Fork, [&f]), "fork → fork");
    }

    #[test]
    fn a_slot_is_desired_only_with_the_config_count_mode_and_every_instance_online() {
        let want = Want {
            config: "a",
            count: 2,
            mode: "cluster_mode",
        };
        let ok = inst("web", "cluster_mode", "online", "a");
        assert_eq!(slot([], want), Slot::Absent);
        assert_eq!(slot([&ok, &ok], want), Slot::Desired);
        assert_eq!(slot([&ok], want), Slot::Other, "count");
        let old = inst("web", "cluster_mode", "online", "b");
        assert_eq!(slot([&ok, &old], want), Slot::Other, "config");
        let down = inst("web", "cluster_mode", "errored", "a");
        assert_eq!(slot([&ok, &down], want), Slot::Other, "status");
        let fork = inst("web", "fork_mode", "online", "a");
        assert_eq!(slot([&ok, &fork], want), Slot::Other, "mode");
        let stopped = inst("web", "cluster_mode", "stopped", "a");
        assert_eq!(slot([&stopped, &down], want), Slot::Down, "none online");
        let old_stopped = inst("web", "cluster_mode", "stopped", "b");
        assert_eq!(slot([&old_stopped], want), Slot::Down, "old, none online");
    }

    /// Every state a replace (or a crash in the middle of one, or a hand stopping a name)
    /// can leave: the moves reach Done in at most five, while something served before a
    /// move something serves after it, and a slot running the document's config is deleted
    /// only while the other one runs it too.
    #[test]
    fn from_every_pair_of_slots_the_moves_converge_and_keep_a_slot_serving() {
        use Slot::*;
        let serves = |s: Slot| matches!(s, Other | Desired);
        for start in [Absent, Down, Other, Desired] {
            for next_start in [Absent, Down, Other, Desired] {
                let (mut declared, mut next) = (start, next_start);
                let mut moves = Vec::new();
                loop {
                    let m = next_move(declared, next);
                    moves.push(m);
                    // Five moves at most (a stale temporary first), then Done.
                    assert!(moves.len() <= 6, "{start:?}/{next_start:?}: {moves:?}");
                    let serving = serves(declared) || serves(next);
                    match m {
                        Move::Done => break,
                        Move::StartNext => next = Desired,
                        Move::StartDeclared => declared = Desired,
                        Move::DeleteNext => {
                            if next == Desired {
                                assert_eq!(
                                    declared, Desired,
                                    "{start:?}/{next_start:?}: {moves:?}"
                                );
                            }
                            next = Absent;
                        }
                        Move::DeleteDeclared => {
                            assert_ne!(declared, Desired, "{start:?}/{next_start:?}: {moves:?}");
                            declared = Absent;
                        }
                    }
                    assert!(
                        !serving || serves(declared) || serves(next),
                        "{start:?}/{next_start:?}: nothing serves after {moves:?}"
                    );
                }
                assert_eq!((declared, next), (Desired, Absent));
            }
        }
        // The whole replace from a running old config: four moves.
        assert_eq!(next_move(Other, Absent), Move::StartNext);
        assert_eq!(next_move(Other, Desired), Move::DeleteDeclared);
        assert_eq!(next_move(Absent, Desired), Move::StartDeclared);
        assert_eq!(next_move(Desired, Desired), Move::DeleteNext);
    }

    /// The declared name stopped by hand while a stale temporary one serves the old config
    /// (a crash after the declared name was started again, then `pm2 stop`): the stopped
    /// one goes first, and the temporary one serves until the declared one runs the new
    /// config. (Deleting the temporary first refused every request meanwhile.)
    #[test]
    fn a_stopped_declared_name_goes_before_the_temporary_one_that_still_serves() {
        assert_eq!(next_move(Slot::Down, Slot::Other), Move::DeleteDeclared);
        assert_eq!(next_move(Slot::Absent, Slot::Other), Move::StartDeclared);
        assert_eq!(next_move(Slot::Desired, Slot::Other), Move::DeleteNext);
    }
}

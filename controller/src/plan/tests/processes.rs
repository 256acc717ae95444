//! pm2 processes: graceful and not-graceful replaces, a temporary process left by an
//! interrupted replace, and a foreign process with a declared name.

use super::*;

/// The process's instances under its temporary name, as a replace interrupted after
/// starting them leaves them.
fn as_next(obs: &Observed) -> Vec<Instance> {
    obs.processes
        .iter()
        .map(|i| Instance {
            name: replace::next_name(&i.name),
            pm_id: i.pm_id + 10,
            ..i.clone()
        })
        .collect()
}

#[test]
fn a_cluster_replace_says_it_is_graceful_and_a_fork_replace_says_it_is_not() {
    let mut four = app(C1);
    four.spec.processes[0].instances = Some(Instances::Count(4));
    let p = plan(&four, &converged(&app(C1)));
    assert!(
        p.steps[0]
            .reason
            .contains("graceful: the new processes start as web~next"),
        "{p}"
    );

    let fork = |n: u32| {
        let mut a = app(C1);
        a.spec.processes[0].exec_mode = Some(ExecMode::Fork);
        a.spec.processes[0].instances = Some(Instances::Count(n));
        a
    };
    let p = plan(&fork(2), &converged(&fork(1)));
    assert_eq!(kinds(&p), ["pm2-replace", "pm2-save", "verify"]);
    assert!(
        p.steps[0]
            .reason
            .ends_with("(fork mode: not graceful, requests are dropped during the restart)"),
        "{p}"
    );
    // Cluster → fork: the port is held by the other kind.
    let p = plan(&fork(2), &converged(&app(C1)));
    assert!(
        p.steps[0]
            .reason
            .contains("cannot share the port: not graceful"),
        "{p}"
    );
}

#[test]
fn a_left_over_temporary_process_is_finished_by_a_replace_never_pruned() {
    let d = app(C1);
    // Crash after the new processes started: both names run.
    let mut obs = converged(&app(C2));
    obs.processes.extend(as_next(&converged(&d)));
    let p = plan(&d, &obs);
    assert!(kinds(&p).contains(&"pm2-replace"), "{p}");
    assert!(!kinds(&p).contains(&"pm2-delete"), "{p}");

    // Crash after the old processes were deleted: only the temporary name runs. A
    // plain start and a delete of web~next would leave nothing ready in between.
    let mut obs = converged(&d);
    obs.processes = as_next(&obs);
    let p = plan(&d, &obs);
    assert_eq!(kinds(&p), ["pm2-replace", "pm2-save", "verify"], "{p}");
    assert!(
        p.steps[0]
            .reason
            .contains("an interrupted replace left only web~next running"),
        "{p}"
    );

    // Crash before the temporary processes were deleted: the declared name is done.
    let mut obs = converged(&d);
    obs.processes.extend(as_next(&obs));
    let p = plan(&d, &obs);
    assert_eq!(kinds(&p), ["pm2-replace", "pm2-save", "verify"], "{p}");
    assert!(p.steps[0].reason.contains("left web~next running"), "{p}");

    // The temporary name of a process no longer declared is pruned with it.
    let mut obs = converged(&d);
    let mut gone = as_next(&obs);
    for i in &mut gone {
        i.name = replace::next_name("worker");
    }
    obs.processes.extend(gone);
    let p = plan(&d, &obs);
    assert_eq!(kinds(&p), ["pm2-delete", "pm2-save", "verify"], "{p}");
    assert_eq!(p.steps[0].step.target(), "worker~next");
}

#[test]
fn a_foreign_process_with_a_declared_name_blocks_instead_of_being_touched() {
    let d = app(C1);
    let mut obs = converged(&d);
    for i in &mut obs.processes {
        i.env.remove(ENV_APP);
    }
    let p = plan(&d, &obs);
    assert_eq!(p.blockers.len(), 1, "{p}");
    assert!(!kinds(&p).iter().any(|k| k.starts_with("pm2-")));
}

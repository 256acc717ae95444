//! The plan's pm2 sections: start, replace or reload each declared process (and why),
//! delete the ones no longer declared, and save pm2's list when it changed.

use super::*;

/// Start, replace or reload each declared process whose instances differ from the
/// document; a process of that name someone else started blocks the plan.
pub(super) fn processes(pl: &mut Planner) {
    let serving = crate::traffic::serving(pl.desired).map(|(_, p)| p.name.as_str());
    for p in &pl.desired.spec.processes {
        if Some(p.name.as_str()) == serving {
            continue; // runs in slots (`slots`, `retire`)
        }
        match process_step(pl, p) {
            Err(blocker) => pl.blockers.push(blocker),
            Ok(Some((step, why))) => {
                pl.push(step, why);
                pl.pm2_changed = true;
            }
            Ok(None) => {}
        }
    }
}

/// What pm2 runs of one declared process: its instances, and what an interrupted replace
/// left under the temporary name.
pub(super) struct Running<'a> {
    instances: Vec<&'a Instance>,
    temps: Vec<&'a Instance>,
}

impl<'a> Running<'a> {
    fn of(observed: &'a Observed, p: &Process) -> Running<'a> {
        let named = |name: &str| -> Vec<&'a Instance> {
            observed
                .processes
                .iter()
                .filter(|i| i.name == name)
                .collect()
        };
        Running {
            instances: named(&p.name),
            // What a replace interrupted by a crash left under the temporary name.
            temps: named(&replace::next_name(&p.name)),
        }
    }
}

/// The one step process `p` needs, if any, and why; `Err` with the blocker when a process
/// of its name (or its temporary name) is someone else's.
pub(super) fn process_step(pl: &Planner, p: &Process) -> Result<Option<(Step, String)>, String> {
    let app = pl.desired.metadata.name.as_str();
    let Running { instances, temps } = Running::of(pl.observed, p);
    if let Some(other) = instances
        .iter()
        .chain(&temps)
        .find(|i| i.app() != Some(app))
    {
        return Err(format!(
            "pm2 process {:?} exists but was not started by shipshape for app {:?}; delete or rename it",
            other.name, app
        ));
    }
    let name = p.name.clone();
    let next = replace::next_name(&p.name);
    let how = replace_how(p, &instances, &temps);
    if instances.is_empty() {
        return Ok(Some(if temps.is_empty() {
            (
                Step::Pm2Start { process: name },
                "not running in pm2".into(),
            )
        } else {
            (
                Step::Pm2Replace { process: name },
                format!("an interrupted replace left only {next} running{how}"),
            )
        }));
    }
    let entry = ecosystem_entry(pl.desired, p, &pl.observed.env_file);
    let env = &entry["env"];
    let replace_why = shape_change(p, &instances, env, pl.observed.cpus)
        .or_else(|| removed_env(&instances, env))
        .or_else(|| {
            (!temps.is_empty()).then(|| format!("an interrupted replace left {next} running"))
        });
    if let Some(why) = replace_why {
        return Ok(Some((
            Step::Pm2Replace { process: name },
            format!("{why}{how}"),
        )));
    }
    Ok(reload_reason(pl, &instances, env).map(|why| (Step::Pm2Reload { process: name }, why)))
}

/// Why `p`'s instances need a replace for what a reload cannot change (their count,
/// exec_mode, or script, args and pm2 options), if they do.
pub(super) fn shape_change(
    p: &Process,
    instances: &[&Instance],
    env: &serde_json::Value,
    cpus: u32,
) -> Option<String> {
    let want_shape = env[ENV_SHAPE].as_str().unwrap_or_default();
    let want_count = expected_instances(p, cpus);
    let want_mode = replace::pm2_mode(p.exec_mode.unwrap_or_default());
    let shape_same = instances
        .iter()
        .all(|i| i.env.get(ENV_SHAPE).map(String::as_str) == Some(want_shape))
        && instances.len() as u32 == want_count
        && instances.iter().all(|i| i.exec_mode == want_mode);
    if shape_same {
        None
    } else if instances.len() as u32 != want_count {
        Some(format!("instances {} → {}", instances.len(), want_count))
    } else if instances[0].exec_mode != want_mode {
        Some(format!(
            "exec_mode {} → {}",
            instances[0].exec_mode, want_mode
        ))
    } else {
        Some("script, args or pm2 options changed (a reload cannot apply them)".to_string())
    }
}

/// Why the instances need a replace because the document dropped env variables, if it did:
/// pm2 merges env on reload, so a dropped variable would survive it. What we declared last
/// time is recorded in the process's own env.
pub(super) fn removed_env(instances: &[&Instance], env: &serde_json::Value) -> Option<String> {
    let want_keys: BTreeSet<&str> = env[ENV_KEYS]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .collect();
    let removed: BTreeSet<&str> = instances
        .iter()
        .filter_map(|i| i.env.get(ENV_KEYS))
        .flat_map(|keys| keys.split(',').filter(|k| !k.is_empty()))
        .filter(|k| !want_keys.contains(k))
        .collect();
    if removed.is_empty() {
        return None;
    }
    let names: Vec<&str> = removed.into_iter().collect();
    Some(format!(
        "env {} removed (a pm2 reload would keep it)",
        names.join(", ")
    ))
}

/// Why the instances (of the right shape) need a reload, if they do: their code or env
/// changed, some are not online, or `current` was moved.
pub(super) fn reload_reason(
    pl: &Planner,
    instances: &[&Instance],
    env: &serde_json::Value,
) -> Option<String> {
    let commit = &pl.desired.spec.source.commit;
    let want_config = env[ENV_CONFIG].as_str().unwrap_or_default();
    let config_same = instances
        .iter()
        .all(|i| i.env.get(ENV_CONFIG).map(String::as_str) == Some(want_config));
    let down: Vec<&&Instance> = instances
        .iter()
        .filter(|i| i.status != Status::Online)
        .collect();
    if !config_same {
        let old_commit = instances[0]
            .env
            .get(ENV_COMMIT)
            .cloned()
            .unwrap_or_default();
        Some(if &old_commit != commit {
            format!("code {} → {}", short_sha(&old_commit), short_sha(commit))
        } else {
            "env changed".to_string()
        })
    } else if !down.is_empty() {
        Some(format!(
            "{} of {} instances not online ({})",
            down.len(),
            instances.len(),
            down[0].status
        ))
    } else if pl.switching {
        // `current` was moved by hand: a process restarted meanwhile runs the other
        // release's code, so reload to be sure every instance runs this one.
        Some("current was moved; reload so every instance runs this release".into())
    } else {
        None
    }
}

/// Delete this app's processes the document no longer declares (a temporary `NAME~next`
/// of a declared process is the replace's to finish).
pub(super) fn stale(pl: &mut Planner) {
    let declared: BTreeSet<&str> = pl
        .desired
        .spec
        .processes
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let app = pl.desired.metadata.name.as_str();
    let serving = crate::traffic::serving(pl.desired).map(|(_, p)| p.name.as_str());
    let stale: BTreeSet<&str> = pl
        .observed
        .processes
        .iter()
        .filter(|i| {
            let replacing =
                replace::replaced_process(&i.name).is_some_and(|n| declared.contains(n));
            // A slot of the serving process is the `retire` section's.
            let slot =
                crate::traffic::parse_slot_name(&i.name).is_some_and(|(n, _)| Some(n) == serving);
            i.app() == Some(app) && !declared.contains(i.name.as_str()) && !replacing && !slot
        })
        .map(|i| i.name.as_str())
        .collect();
    for name in stale {
        pl.push(
            Step::Pm2Delete {
                process: name.to_string(),
            },
            "no longer declared",
        );
        pl.pm2_changed = true;
    }
}

/// `pm2 save` once the process list changed, so a reboot resurrects this one.
pub(super) fn save(pl: &mut Planner) {
    if pl.pm2_changed {
        pl.push(Step::Pm2Save, "pm2 process list changed");
    }
}

/// How a replace of `p` will go, for its reason: graceful in cluster mode (the new
/// processes start under a temporary name beside the old ones), delete-then-start otherwise.
pub(super) fn replace_how(p: &Process, instances: &[&Instance], temps: &[&Instance]) -> String {
    let mode = p.exec_mode.unwrap_or_default();
    if replace::graceful(mode, instances.iter().chain(temps).copied()) {
        format!(
            "; graceful: the new processes start as {} and take connections before the old ones stop",
            replace::next_name(&p.name)
        )
    } else if mode == ExecMode::Fork
        && instances
            .iter()
            .chain(temps)
            .all(|i| i.exec_mode == "fork_mode")
    {
        " (fork mode: not graceful, requests are dropped during the restart)".into()
    } else {
        " (fork and cluster mode cannot share the port: not graceful, requests are dropped during the restart)".into()
    }
}

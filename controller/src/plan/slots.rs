//! The plan's traffic sections (`spec.traffic`): which slot the release runs in and
//! whether it must be started and proven first (`slots`), the switch of nginx's upstream
//! (`traffic`), and what becomes of the slots traffic does not reach (`retire`): the one a
//! rollout leaves stays warm for `warmFor`, the one a revert leaves is drained and stopped,
//! any other (a warm slot whose time is up, a slot on a port no longer declared) too.
//!
//! # The slot the plan makes live
//! | live slot runs the document | another slot runs it | steps |
//! |---|---|---|
//! | yes | – | none |
//! | no | yes, the warm one, in its time | traffic-switch (no boot: a switch back) |
//! | no | yes, not warm (or its time is up) | slot-prove, traffic-switch |
//! | no | no | (slot-retire of what holds the port,) slot-start, slot-prove, traffic-switch |
//!
//! "Runs the document" is [`replace::slot`]'s `Desired`: the instance count, exec mode and
//! config marker of the declared process, every instance online.

use super::*;
use crate::traffic::{self, Leaving, TrafficState};
use shipshape_spec::app::Traffic;

/// What the traffic sections decided: the slot the plan makes live and the one it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlotPlan {
    /// The slot traffic goes to.
    pub target: u16,
    /// The slot traffic leaves (`None`: no switch, or nothing was live).
    pub leaving: Option<u16>,
    /// A traffic switch is planned.
    pub switch: bool,
}

/// The slots of the serving process, by port: every instance of this app named
/// `NAME@PORT` (on a declared port or not).
fn slot_instances<'a>(pl: &Planner<'a>, process: &str) -> BTreeMap<u16, Vec<&'a Instance>> {
    let mut by_port: BTreeMap<u16, Vec<&'a Instance>> = BTreeMap::new();
    for i in &pl.observed.processes {
        if let Some((p, port)) = traffic::parse_slot_name(&i.name)
            && p == process
        {
            by_port.entry(port).or_default().push(i);
        }
    }
    by_port
}

fn state<'a>(pl: &Planner<'a>) -> Option<(&'a Traffic, &'a Process, &'a TrafficState)> {
    let (t, p) = traffic::serving(pl.desired)?;
    Some((t, p, pl.observed.traffic.as_ref()?))
}

fn warm_in_time(st: &TrafficState, port: u16) -> bool {
    st.warm.is_some_and(|w| w.port == port && st.now < w.until)
}

/// Start and prove the release's slot, unless a slot already runs it.
pub(super) fn slots(pl: &mut Planner) {
    let Some((t, p, st)) = state(pl) else {
        if pl.desired.spec.traffic.is_some() {
            pl.blockers
                .push("the traffic state (the upstream file) was not observed".into());
        }
        return;
    };
    let app = pl.desired.metadata.name.as_str();
    let by_port = slot_instances(pl, &p.name);
    if let Some(other) = by_port.values().flatten().find(|i| i.app() != Some(app)) {
        pl.blockers.push(format!(
            "pm2 process {:?} exists but was not started by shipshape for app {app:?}; delete or rename it",
            other.name
        ));
        return;
    }
    let entry = ecosystem_entry(pl.desired, p, &pl.observed.env_file);
    let config = entry["env"][ENV_CONFIG].as_str().unwrap_or_default();
    let want = replace::Want {
        config,
        count: expected_instances(p, pl.observed.cpus),
        mode: replace::pm2_mode(p.exec_mode.unwrap_or_default()),
    };
    let runs = |port: u16| {
        by_port
            .get(&port)
            .is_some_and(|is| replace::slot(is.iter().copied(), want) == replace::Slot::Desired)
    };
    // The live slot keeps its traffic while it runs this config, even with an instance pm2
    // is restarting (a crash, max_memory_restart): the health checks judge that, and a new
    // slot for the same config would only throw the warm one away.
    let live_runs = |port: u16| {
        by_port.get(&port).is_some_and(|is| {
            is.len() as u32 == want.count
                && is.iter().all(|i| {
                    i.exec_mode == want.mode
                        && i.env.get(ENV_CONFIG).map(String::as_str) == Some(want.config)
                })
        })
    };
    if let Some(live) = st.live
        && live_runs(live)
    {
        pl.slot = Some(SlotPlan {
            target: live,
            leaving: None,
            switch: false,
        });
        return;
    }
    let others: Vec<u16> = t
        .ports
        .iter()
        .copied()
        .filter(|&q| Some(q) != st.live)
        .collect();
    let Some(&first) = others.first() else {
        pl.blockers
            .push("spec.traffic.ports has no port beside the live slot's".into());
        return;
    };
    let target = others.iter().copied().find(|&q| runs(q)).unwrap_or(first);
    let leaving = st.live.filter(|l| by_port.contains_key(l));
    pl.slot = Some(SlotPlan {
        target,
        leaving,
        switch: true,
    });
    // pm2's dump must name the slot nginx will: a reboot resurrects what it names (the pass
    // that started this slot may have ended before its own save).
    pl.pm2_changed = true;
    let live_words = match st.live {
        Some(l) if by_port.contains_key(&l) => format!("the live slot {l} runs another config"),
        Some(l) => format!("nothing of this app runs on slot {l}, which nginx names"),
        None => "nothing is live yet".to_string(),
    };
    if runs(target) {
        if warm_in_time(st, target) {
            return; // a switch back to the warm slot: proven already, no boot
        }
        pl.push(
            Step::SlotProve { port: target },
            format!("slot {target} runs this config but has not been proven since it started"),
        );
        return;
    }
    if by_port.contains_key(&target) {
        let what = if st.warm.is_some_and(|w| w.port == target) {
            "the warm slot makes way for the new release"
        } else {
            "what runs there is not this config"
        };
        pl.push(
            Step::SlotRetire {
                process: p.name.clone(),
                port: target,
            },
            what,
        );
    }
    pl.push(
        Step::SlotStart {
            process: p.name.clone(),
            port: target,
        },
        format!(
            "{live_words}: start {} beside it",
            traffic::slot_name(&p.name, target)
        ),
    );
    pl.push(
        Step::SlotProve { port: target },
        format!(
            "{} passing rounds on port {target} before nginx sends it a request",
            pl.desired.spec.health.success_threshold
        ),
    );
    // Saved once proven: a reboot from here on resurrects the slot nginx is switched to.
    pl.push(Step::Pm2Save, "a slot was started and proven");
    pl.pm2_changed = true;
}

/// Point nginx at the slot the plan makes live.
pub(super) fn traffic(pl: &mut Planner) {
    let Some(sp) = pl.slot.filter(|s| s.switch) else {
        return;
    };
    let Some((t, _, st)) = state(pl) else { return };
    let warm = match (sp.leaving, st.leaving) {
        (Some(l), Leaving::Warm) => Some(l),
        _ => None,
    };
    let reason = match (st.live, warm) {
        (None, _) => "nothing is live yet".to_string(),
        (Some(l), Some(_)) => format!("from slot {l}, which stays warm for {}", t.warm_for),
        (Some(l), None) => format!("from slot {l}"),
    };
    pl.push(
        Step::TrafficSwitch {
            port: sp.target,
            warm,
        },
        reason,
    );
}

/// Drain and stop the slots traffic does not reach (the warm one keeps its time), and the
/// serving process's in-place instances (it runs in slots now).
pub(super) fn retire(pl: &mut Planner) {
    let Some((t, p, st)) = state(pl) else { return };
    let Some(sp) = pl.slot else { return };
    let app = pl.desired.metadata.name.as_str();
    let by_port = slot_instances(pl, &p.name);
    for (&port, _) in by_port.iter().filter(|(q, _)| **q != sp.target) {
        let planned_away = pl
            .steps
            .iter()
            .any(|s| matches!(&s.step, Step::SlotRetire { port: q, .. } if *q == port));
        if planned_away {
            continue;
        }
        let reason = if Some(port) == sp.leaving {
            match st.leaving {
                Leaving::Warm => {
                    pl.notes.push(format!(
                        "slot {port} stays warm for {} after the switch",
                        t.warm_for
                    ));
                    continue;
                }
                Leaving::Retire => "it served the revision being reverted".to_string(),
            }
        } else if warm_in_time(st, port) {
            let until = st.warm.map(|w| w.until.to_string()).unwrap_or_default();
            pl.notes.push(format!("slot {port} is warm until {until}"));
            continue;
        } else if let Some(w) = st.warm.filter(|w| w.port == port) {
            format!("warm until {}: its time is up", w.until)
        } else if !t.ports.contains(&port) {
            "its port is no longer one of spec.traffic.ports".to_string()
        } else {
            "not live and not warm".to_string()
        };
        pl.push(
            Step::SlotRetire {
                process: p.name.clone(),
                port,
            },
            reason,
        );
        pl.pm2_changed = true;
    }
    let in_place = pl
        .observed
        .processes
        .iter()
        .any(|i| i.name == p.name && i.app() == Some(app));
    if in_place {
        pl.push(
            Step::Pm2Delete {
                process: p.name.clone(),
            },
            "it runs in slots behind nginx now (spec.traffic)",
        );
        pl.pm2_changed = true;
    }
}

//! The simulated pm2: start-or-reload as pm2 behaves (a reload merges env and keeps the
//! instance count, exec_mode and script), delete and save; and the executor's replace as
//! the pm2 calls it makes (graceful in cluster mode: never without a process serving).

use super::server::*;
use super::*;
use crate::plan::replace::{Move, Slot, next_move};

impl Server {
    // ---- pm2, as pm2 behaves ----

    /// `pm2 startOrReload <ecosystem> --only <name> --update-env`.
    pub(super) fn pm2_start_or_reload(&mut self, ecosystem: &serde_json::Value, name: &str) {
        let Some(entry) = ecosystem["apps"]
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == name))
        else {
            self.faults
                .push(format!("pm2: no entry named {name} in the ecosystem file"));
            return;
        };
        let env: BTreeMap<String, String> = entry["env"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cwd = entry["cwd"].as_str().unwrap_or_default();
        // The process loads its code from its cwd: `<root>/current` follows the link now.
        let code =
            if cwd == format!("{ROOT}/current") || cwd.starts_with(&format!("{ROOT}/current/")) {
                self.current.clone()
            } else {
                None
            };
        if code.is_none() {
            self.faults.push(format!(
                "pm2: {name} started from {cwd:?}, which is no release (current: {:?})",
                self.current
            ));
        }
        if self.pm2.iter().any(|p| p.name == name) {
            // A reload: pm2 merges the env, keeps instances, exec_mode and script.
            for p in self.pm2.iter_mut().filter(|p| p.name == name) {
                p.env.extend(env.clone());
                p.status = Status::Online;
                p.restarts += 1;
                p.code = code.clone();
            }
            return;
        }
        let count = match pm2_instances(entry, self.cpus) {
            Ok(n) => n,
            Err(e) => {
                self.faults.push(format!("pm2: {name} {e}"));
                1
            }
        };
        let exec_mode = match entry["exec_mode"].as_str() {
            Some("cluster") | Some("cluster_mode") => "cluster_mode",
            _ => "fork_mode",
        };
        for _ in 0..count {
            self.pm2.push(Proc {
                name: name.to_string(),
                pm_id: self.next_pm_id,
                status: Status::Online,
                restarts: 0,
                exec_mode: exec_mode.into(),
                script: entry["script"].as_str().unwrap_or_default().to_string(),
                env: env.clone(),
                code: code.clone(),
            });
            self.next_pm_id += 1;
        }
    }

    /// A `pm2-replace` step as the executor drives pm2. In cluster mode (every instance
    /// under the declared and the temporary name in cluster mode, and the document's too)
    /// it goes move by move, as `execute/replace.rs` does: before each move it reads what
    /// runs under `NAME` and under `NAME~next` afresh, judges each group here (absent; down:
    /// none online; desired: the ecosystem entry's instance count and exec_mode, its config
    /// marker, every instance online; else other), takes the move from the planner's
    /// `replace::next_move`, waits where the executor waits (a group not ready fails the
    /// step: a fault) and makes the move's pm2 call. Whenever some instance was online
    /// before, one must be online after each call (else a fault: requests would be refused),
    /// and the replace must end within eight moves. In fork mode, or across a fork/cluster
    /// switch: delete both names, start `NAME`.
    ///
    /// Why `next_move` itself: it is the decision under test here, as `plan` is for the
    /// steps. A second copy of its table in the simulation would only check that the copy
    /// is correct, and a wrong move in the real table (deleting the only name that serves)
    /// would pass unseen. What judges it stays independent: the groups are judged from the
    /// simulated processes and the executor's ecosystem file (not with `replace::slot`), and
    /// "something online after every call" and the oracle's convergence are the
    /// simulation's own.
    pub(super) fn pm2_replace(&mut self, ecosystem: &serde_json::Value, name: &str, cluster: bool) {
        let next = format!("{name}~next");
        let graceful = cluster
            && self
                .pm2
                .iter()
                .filter(|p| p.name == name || p.name == next)
                .all(|p| p.exec_mode == "cluster_mode");
        if !graceful {
            self.pm2_delete(&next);
            self.pm2_delete(name);
            self.pm2_start_or_reload(ecosystem, name);
            return;
        }
        let Some(entry) = ecosystem["apps"]
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == name))
        else {
            self.faults
                .push(format!("replace of {name}: no entry in the ecosystem file"));
            return;
        };
        let want = match pm2_instances(entry, self.cpus) {
            Ok(count) => Group {
                count,
                mode: match entry["exec_mode"].as_str() {
                    Some("cluster") | Some("cluster_mode") => "cluster_mode",
                    _ => "fork_mode",
                },
                config: entry["env"]["SHIPSHAPE_CONFIG"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            },
            Err(e) => {
                self.faults.push(format!("replace of {name}: {e}"));
                return;
            }
        };
        let serving = |s: &Server| {
            s.pm2
                .iter()
                .any(|p| (p.name == name || p.name == next) && p.status == Status::Online)
        };
        let was_serving = serving(self);
        for _ in 0..8 {
            let declared = self.group(name, &want);
            let temp = self.group(&next, &want);
            // Where the executor first waits until a group is ready, then the pm2 call.
            let (wait, call, target) = match next_move(declared, temp) {
                Move::Done => return,
                Move::StartNext => (None, "start", next.as_str()),
                Move::DeleteNext => (
                    (declared == Slot::Desired).then_some(name),
                    "delete",
                    next.as_str(),
                ),
                Move::DeleteDeclared => (
                    (temp == Slot::Desired).then_some(next.as_str()),
                    "delete",
                    name,
                ),
                Move::StartDeclared => (None, "start", name),
            };
            if let Some(w) = wait
                && !self.ready(w, want.count)
            {
                self.faults.push(format!(
                    "replace of {name}: {w} not ready before {call} {target}"
                ));
                return;
            }
            if call == "start" {
                self.pm2_start_or_reload(ecosystem, target);
                // The executor waits for what it started; new processes that are not
                // ready fail the step (a started temporary is deleted again).
                if !self.ready(target, want.count) {
                    self.faults
                        .push(format!("replace of {name}: {target} not ready after start"));
                    if target == next {
                        self.pm2_delete(&next);
                    }
                    return;
                }
            } else {
                self.pm2_delete(target);
            }
            if was_serving && !serving(self) {
                self.faults.push(format!(
                    "replace of {name}: nothing online after {call} {target} (requests refused)"
                ));
            }
        }
        self.faults
            .push(format!("replace of {name}: not done after 8 moves"));
    }

    /// How the instances under `name` compare with the ecosystem entry, as the executor
    /// reads pm2's list before a move.
    fn group(&self, name: &str, want: &Group) -> Slot {
        let procs: Vec<&Proc> = self.pm2.iter().filter(|p| p.name == name).collect();
        if procs.is_empty() {
            Slot::Absent
        } else if procs.iter().all(|p| p.status != Status::Online) {
            Slot::Down
        } else if procs.len() as u32 == want.count
            && procs.iter().all(|p| {
                p.status == Status::Online
                    && p.exec_mode == want.mode
                    && p.env.get("SHIPSHAPE_CONFIG") == Some(&want.config)
            })
        {
            Slot::Desired
        } else {
            Slot::Other
        }
    }

    /// The executor's readiness, with no time in the simulation: `count` instances, all
    /// online.
    fn ready(&self, name: &str, count: u32) -> bool {
        let procs: Vec<&Proc> = self.pm2.iter().filter(|p| p.name == name).collect();
        procs.len() as u32 == count && procs.iter().all(|p| p.status == Status::Online)
    }

    /// `pm2 delete <name>`.
    pub(super) fn pm2_delete(&mut self, name: &str) {
        self.pm2.retain(|p| p.name != name);
    }

    /// `pm2 save`.
    pub(super) fn pm2_save(&mut self) {
        self.dump = self.pm2.clone();
        // Whatever a hand changed is in the dump now.
        self.unsaved_hand_deletes.clear();
    }
}

/// What a replace wants under a name: from the ecosystem entry.
struct Group {
    count: u32,
    mode: &'static str,
    config: String,
}

/// An `instances` value pm2 rejects.
#[derive(Debug, thiserror::Error)]
#[error("has instances {0}, which pm2 rejects")]
struct RejectedInstances(serde_json::Value);

/// How many instances pm2 starts for an ecosystem entry (`instances`: a count, `max`, 0 for
/// one per CPU, -n for all CPUs but n), or why pm2 rejects it.
fn pm2_instances(entry: &serde_json::Value, cpus: u32) -> Result<u32, RejectedInstances> {
    match &entry["instances"] {
        serde_json::Value::Null => Ok(1),
        serde_json::Value::String(s) if s == "max" => Ok(cpus),
        serde_json::Value::Number(n) => Ok(match n.as_i64() {
            Some(0) => cpus,
            Some(n) if n < 0 => (cpus as i64 + n).max(1) as u32,
            Some(n) => n as u32,
            None => 1,
        }),
        other => Err(RejectedInstances(other.clone())),
    }
}

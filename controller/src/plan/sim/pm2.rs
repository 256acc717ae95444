//! The simulated pm2: start-or-reload as pm2 behaves (a reload merges env and keeps the
//! instance count, exec_mode and script), delete and save; and the executor's replace as
//! the pm2 calls it makes (graceful in cluster mode: never without a process serving).

use super::server::*;
use super::*;

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
                p.status = "online";
                p.restarts += 1;
                p.code = code.clone();
            }
            return;
        }
        let count = match &entry["instances"] {
            serde_json::Value::Null => 1,
            serde_json::Value::String(s) if s == "max" => self.cpus,
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(0) => self.cpus,
                Some(n) if n < 0 => (self.cpus as i64 + n).max(1) as u32,
                Some(n) => n as u32,
                None => 1,
            },
            other => {
                self.faults.push(format!(
                    "pm2: {name} has instances {other}, which pm2 rejects"
                ));
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
                status: "online",
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
    /// under the declared and the temporary name in cluster mode, and the document's too):
    /// a stale `NAME~next` is deleted while `NAME` serves, the new config starts as
    /// `NAME~next`, then `NAME` is deleted, started again with the new config, and
    /// `NAME~next` deleted; with only `NAME~next` left (an interrupted replace) `NAME` is
    /// started and then `NAME~next` deleted. Whenever some instance was online before, one
    /// must be online after each call (else a fault: requests would be refused). In fork
    /// mode, or across a fork/cluster switch: delete both names, start `NAME`.
    pub(super) fn pm2_replace(&mut self, ecosystem: &serde_json::Value, name: &str, cluster: bool) {
        let next = format!("{name}~next");
        let ours = |s: &Server, n: &str| s.pm2.iter().any(|p| p.name == n);
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
        let serving = |s: &Server| {
            s.pm2
                .iter()
                .any(|p| (p.name == name || p.name == next) && p.status == "online")
        };
        let was_serving = serving(self);
        let mut calls: Vec<(&str, String)> = Vec::new();
        if ours(self, name) {
            if ours(self, &next) {
                calls.push(("delete", next.clone()));
            }
            calls.push(("start", next.clone()));
            calls.push(("delete", name.to_string()));
        }
        calls.push(("start", name.to_string()));
        calls.push(("delete", next.clone()));
        for (call, target) in calls {
            match call {
                "start" => self.pm2_start_or_reload(ecosystem, &target),
                _ => self.pm2_delete(&target),
            }
            if was_serving && !serving(self) {
                self.faults.push(format!(
                    "replace of {name}: nothing online after {call} {target} (requests refused)"
                ));
            }
        }
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

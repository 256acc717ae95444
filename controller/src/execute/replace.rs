//! Executing a `pm2-replace` step: graceful in cluster mode (the new processes start under
//! a temporary name beside the old ones and are waited for until ready; only then do the old
//! ones stop, and the process ends under its declared name again), delete-then-start in fork
//! mode or across a fork/cluster switch. The moves are [`crate::plan::replace`]'s pure
//! decisions, re-read from pm2's process list before each one, so an interrupted replace
//! continues from whatever pm2 runs.
//!
//! # Readiness
//! pm2 deems a new cluster worker ready when it emits `listening` (with `wait_ready`: when
//! it sends `'ready'`), or when `listen_timeout` (default 3 s) passes without either; only its
//! reload listens for those, and it publishes neither. From the process list, a group is
//! ready when every instance is online with the same pid and no restart for a settle time:
//! `listen_timeout` (pm2's own cap), or 1 s with `wait_ready` (pm2's start already waited for
//! each instance's `'ready'`). An instance that restarts, is errored or stopped, or a group
//! that is not ready within the settle time plus [`READY_SLACK`], fails the step.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use shipshape_spec::App;
use shipshape_spec::app::Process;
use shipshape_spec::status::StepKind;
use tracing::{info, warn};

use super::{StepError, pm2_error};
use crate::envfile::EnvFile;
use crate::plan;
use crate::plan::replace::{self, Move, Slot, Want};
use crate::pm2::{ENV_CONFIG, Status};
use crate::ports::{Clock, Pm2Port};
use crate::reconcile::decide::ErrorClass;

/// How long past its settle time a new group may take to be ready.
pub const READY_SLACK: Duration = Duration::from_secs(30);
/// How often readiness is polled (pm2's process list over its socket costs little).
const POLL: Duration = Duration::from_millis(100);
/// More moves than any path through [`replace::next_move`] needs (five).
const MAX_MOVES: usize = 8;

/// How long every instance of a new group must stay online, unrestarted, to be ready.
pub fn settle_time(p: &Process) -> Duration {
    if p.wait_ready == Some(true) {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(p.listen_timeout.unwrap_or(3000))
    }
}

fn failed(message: String) -> StepError {
    StepError::new(StepKind::Pm2Replace, ErrorClass::Stalled, message)
}

/// A replace's reach: pm2, the clock it waits on, the CPUs (for `instances: max`).
pub struct Replacer<'a> {
    /// pm2.
    pub pm2: &'a dyn Pm2Port,
    /// Settle times and polls.
    pub clock: &'a dyn Clock,
    /// CPUs.
    pub cpus: u32,
}

/// One graceful replace in progress: the names, the config wanted, and which names' current
/// instances were seen ready in this step.
struct Graceful<'a> {
    app: &'a App,
    process: &'a str,
    next: String,
    eco_path: &'a Path,
    want: Want<'a>,
    settle: Duration,
    ready: Vec<String>,
}

impl Replacer<'_> {
    /// Replace `process` with the document's config: gracefully when [`replace::graceful`],
    /// else delete (the temporary name too, if a graceful replace left one) and start.
    ///
    /// # Guarantees
    /// In the graceful path the old processes are deleted only once the new ones are ready;
    /// when the new ones fail to become ready they are deleted and the old ones keep serving.
    ///
    /// # Errors
    /// A pm2 command failing ([`ErrorClass::Transient`]); new processes crash-looping,
    /// errored, or not ready in time ([`ErrorClass::Stalled`]: the revision's fault).
    pub async fn replace(
        &self,
        app: &App,
        process: &str,
        eco_path: &Path,
        env: &EnvFile,
    ) -> Result<(), StepError> {
        let kind = StepKind::Pm2Replace;
        let p = app
            .spec
            .processes
            .iter()
            .find(|p| p.name == process)
            .ok_or_else(|| failed(format!("{process} is not declared")))?;
        let next = replace::next_name(process);
        let entry = plan::ecosystem_entry(app, p, env);
        let config = entry["env"][ENV_CONFIG]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mode = p.exec_mode.unwrap_or_default();
        let want = Want {
            config: &config,
            count: plan::expected_instances(p, self.cpus),
            mode: replace::pm2_mode(mode),
        };
        super::write_ecosystem_with_next(app, eco_path, env, p)?;
        let list = self.pm2.jlist().await.map_err(|e| pm2_error(kind, e))?;
        let running = list.iter().filter(|i| i.name == process || i.name == next);
        if !replace::graceful(mode, running) {
            let names: Vec<&str> = [next.as_str(), process]
                .into_iter()
                .filter(|name| list.iter().any(|i| i.name == *name))
                .collect();
            return self.restart(&names, eco_path, process).await;
        }
        let mut g = Graceful {
            app,
            process,
            next,
            eco_path,
            want,
            settle: settle_time(p),
            ready: Vec::new(),
        };
        for moves in 0..MAX_MOVES {
            let list = self.pm2.jlist().await.map_err(|e| pm2_error(kind, e))?;
            let declared = replace::slot(list.iter().filter(|i| i.name == process), g.want);
            let temp = replace::slot(list.iter().filter(|i| i.name == g.next), g.want);
            let m = replace::next_move(declared, temp);
            info!(app = %app.metadata.name, process, ?declared, next = ?temp, ?m, "replace move");
            if moves > 0 {
                super::fault_point("after", "replace-move");
            }
            if m == Move::Done {
                return Ok(());
            }
            self.apply(&mut g, m, declared, temp).await?;
        }
        Err(failed(format!(
            "replacing {process} did not settle in {MAX_MOVES} moves"
        )))
    }

    /// Not graceful: delete `names` (those of the process that run), then start `process`.
    async fn restart(
        &self,
        names: &[&str],
        eco_path: &Path,
        process: &str,
    ) -> Result<(), StepError> {
        let kind = StepKind::Pm2Replace;
        for name in names {
            self.pm2
                .delete(name)
                .await
                .map_err(|e| pm2_error(kind, e))?;
        }
        self.pm2
            .start_or_reload(eco_path, process)
            .await
            .map_err(|e| pm2_error(kind, e))
    }

    /// Make one move of a graceful replace (`declared`, `temp`: the slots it was chosen from).
    async fn apply(
        &self,
        g: &mut Graceful<'_>,
        m: Move,
        declared: Slot,
        temp: Slot,
    ) -> Result<(), StepError> {
        let kind = StepKind::Pm2Replace;
        let (process, next, count) = (g.process, g.next.clone(), g.want.count);
        match m {
            Move::Done => {}
            Move::StartNext => {
                self.pm2
                    .start_or_reload(g.eco_path, &next)
                    .await
                    .map_err(|e| pm2_error(kind, e))?;
                if let Err(e) = self.wait_ready(&next, count, g.settle).await {
                    // The old processes never stopped: take the new ones away again.
                    if let Err(d) = self.pm2.delete(&next).await {
                        warn!(app = %g.app.metadata.name, "could not delete {next} after it failed: {d}");
                    }
                    return Err(e);
                }
                g.ready.push(next);
            }
            Move::DeleteNext => {
                if declared == Slot::Desired && !g.ready.iter().any(|n| n == process) {
                    self.wait_ready(process, count, g.settle).await?;
                    g.ready.push(process.to_string());
                }
                self.pm2
                    .delete(&next)
                    .await
                    .map_err(|e| pm2_error(kind, e))?;
                g.ready.retain(|n| n != &next);
            }
            Move::DeleteDeclared => {
                // Wait for the temporary name only when it runs the document's config:
                // beside a declared name that is down, one of an old config has nothing
                // to become ready for (and its instance count may never match).
                if temp == Slot::Desired && !g.ready.contains(&next) {
                    self.wait_ready(&next, count, g.settle).await?;
                    g.ready.push(next);
                }
                self.pm2
                    .delete(process)
                    .await
                    .map_err(|e| pm2_error(kind, e))?;
                g.ready.retain(|n| n != process);
            }
            Move::StartDeclared => {
                self.pm2
                    .start_or_reload(g.eco_path, process)
                    .await
                    .map_err(|e| pm2_error(kind, e))?;
                // On failure the temporary processes (if any) keep serving; the next
                // pass sees them and finishes the replace.
                self.wait_ready(process, count, g.settle).await?;
                g.ready.push(process.to_string());
            }
        }
        Ok(())
    }

    /// Wait until `count` instances of `name` are online, each with the same pid and no
    /// restart for `settle`.
    ///
    /// # Errors
    /// An instance restarts, is errored or stopped, or the group is not ready within
    /// `settle` + [`READY_SLACK`].
    async fn wait_ready(&self, name: &str, count: u32, settle: Duration) -> Result<(), StepError> {
        let kind = StepKind::Pm2Replace;
        let clock = self.clock;
        let t0 = clock.elapsed();
        let deadline = t0 + settle + READY_SLACK;
        // pm_id → (pid, restarts, online since), in the clock's time.
        let mut seen: BTreeMap<u64, (u64, u64, Option<Duration>)> = BTreeMap::new();
        loop {
            let list = self.pm2.jlist().await.map_err(|e| pm2_error(kind, e))?;
            let now = clock.elapsed();
            let mine: Vec<_> = list.iter().filter(|i| i.name == name).collect();
            for i in &mine {
                if matches!(i.status, Status::Errored | Status::Stopped) {
                    return Err(failed(format!(
                        "{name} instance {} is {} after start (it crashed; see its pm2 log)",
                        i.pm_id, i.status
                    )));
                }
                let entry = seen.entry(i.pm_id).or_insert((i.pid, i.restarts, None));
                if i.restarts > entry.1 || (entry.0 != 0 && i.pid != 0 && i.pid != entry.0) {
                    return Err(failed(format!(
                        "{name} instance {} restarted while starting (a crash loop; see its pm2 log)",
                        i.pm_id
                    )));
                }
                entry.0 = i.pid;
                if i.status == Status::Online {
                    entry.2.get_or_insert(now);
                } else {
                    entry.2 = None;
                }
            }
            let settled = mine.len() as u32 == count
                && mine.iter().all(|i| {
                    seen.get(&i.pm_id)
                        .and_then(|s| s.2)
                        .is_some_and(|since| now.saturating_sub(since) >= settle)
                });
            if settled {
                info!(
                    process = name,
                    took_ms = now.saturating_sub(t0).as_millis() as u64,
                    "ready"
                );
                return Ok(());
            }
            if now >= deadline {
                let online = mine.iter().filter(|i| i.status == Status::Online).count();
                return Err(failed(format!(
                    "{name} not ready within {:.0}s ({online} of {count} instances online)",
                    (settle + READY_SLACK).as_secs_f64()
                )));
            }
            clock.sleep(POLL).await;
        }
    }
}

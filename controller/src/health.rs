//! Health: HTTP probes (status, body, latency) and pm2 facts (every declared instance
//! online, restart counts not climbing), combined into rounds, and rounds into a verdict:
//! healthy after `successThreshold` passing rounds in a row within `progressDeadline`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shipshape_spec::app::{Check, Health, Instances, Process};

use crate::pm2::Instance;

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The check's name.
    pub check: String,
    /// Passed?
    pub ok: bool,
    /// What was seen ("200 in 3ms", "connection refused" …).
    pub detail: String,
}

/// Run one HTTP check.
pub async fn probe(client: &reqwest::Client, check: &Check) -> ProbeResult {
    let started = Instant::now();
    let result = client
        .get(&check.http.url)
        .timeout(check.timeout.std())
        .send()
        .await;
    let fail = |detail: String| ProbeResult {
        check: check.name.clone(),
        ok: false,
        detail,
    };
    let response = match result {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return fail(format!("no answer within {}", check.timeout)),
        Err(e) => return fail(format!("request failed: {}", error_chain(&e))),
    };
    let status = response.status().as_u16();
    let body = match tokio::time::timeout(check.timeout.std(), response.text()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return fail(format!("reading body failed: {e}")),
        Err(_) => return fail(format!("body not complete within {}", check.timeout)),
    };
    let latency = started.elapsed();
    let ms = latency.as_millis();
    if status != check.http.expect_status {
        return fail(format!(
            "status {status}, expected {} ({ms}ms)",
            check.http.expect_status
        ));
    }
    if let Some(needle) = &check.http.body_contains
        && !body.contains(needle.as_str())
    {
        return fail(format!("body does not contain {needle:?} ({ms}ms)"));
    }
    if let Some(max) = check.max_latency
        && latency > max.std()
    {
        return fail(format!("{ms}ms is over maxLatency {max}"));
    }
    ProbeResult {
        check: check.name.clone(),
        ok: true,
        detail: format!("{status} in {ms}ms"),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The pm2 part of a round: all declared instances online and none restarted since `baseline`.
pub fn pm2_facts(
    processes: &[Process],
    instances: &[Instance],
    baseline: &BTreeMap<u64, u64>,
    cpus: u32,
) -> Result<(), String> {
    for p in processes {
        let mine: Vec<&Instance> = instances.iter().filter(|i| i.name == p.name).collect();
        let want = match p.instances {
            Some(Instances::Count(n)) => n,
            Some(Instances::Max(_)) => cpus.max(1),
            None => 1,
        } as usize;
        let online = mine.iter().filter(|i| i.status == "online").count();
        if online < want {
            let status = mine
                .iter()
                .find(|i| i.status != "online")
                .map(|i| i.status.as_str())
                .unwrap_or("missing");
            return Err(format!(
                "pm2 {}: {online} of {want} instances online ({status})",
                p.name
            ));
        }
        for i in &mine {
            if let Some(before) = baseline.get(&i.pm_id)
                && i.restarts > *before
            {
                return Err(format!(
                    "pm2 {} (id {}) restarted {} time(s) during verification",
                    p.name,
                    i.pm_id,
                    i.restarts - before
                ));
            }
        }
    }
    Ok(())
}

/// The rounds seen so far, and what they add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Passing rounds in a row.
    pub passes: u32,
    /// Failing rounds in a row.
    pub failures: u32,
    /// Rounds in all.
    pub rounds: u32,
    /// Why the last failing round failed.
    pub last_failure: Option<String>,
}

/// Where verification stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep probing.
    Pending,
    /// `successThreshold` passing rounds in a row.
    Healthy,
    /// The progress deadline passed first.
    Failed(String),
}

impl Tally {
    /// A fresh tally.
    pub fn new() -> Tally {
        Tally {
            passes: 0,
            failures: 0,
            rounds: 0,
            last_failure: None,
        }
    }

    /// Count one round: `Ok` for a pass, `Err(why)` for a failure.
    pub fn record(&mut self, round: Result<(), String>) {
        self.rounds += 1;
        match round {
            Ok(()) => {
                self.passes += 1;
                self.failures = 0;
            }
            Err(why) => {
                self.failures += 1;
                self.passes = 0;
                self.last_failure = Some(why);
            }
        }
    }

    /// The verdict after the rounds so far, given the time spent.
    pub fn verdict(&self, health: &Health, elapsed: Duration) -> Verdict {
        if self.passes >= health.success_threshold {
            Verdict::Healthy
        } else if elapsed >= health.progress_deadline.std() {
            Verdict::Failed(format!(
                "not healthy within progressDeadline {} ({} rounds; last failure: {})",
                health.progress_deadline,
                self.rounds,
                self.last_failure
                    .as_deref()
                    .unwrap_or("none: not enough passing rounds yet")
            ))
        } else {
            Verdict::Pending
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipshape_spec::Duration as D;

    fn health() -> Health {
        Health {
            checks: vec![],
            interval: D::from_secs(1),
            success_threshold: 3,
            failure_threshold: 3,
            progress_deadline: D::from_secs(10),
        }
    }

    #[test]
    fn healthy_needs_consecutive_passes() {
        let h = health();
        let mut t = Tally::new();
        t.record(Ok(()));
        t.record(Ok(()));
        t.record(Err("503".into()));
        t.record(Ok(()));
        t.record(Ok(()));
        assert_eq!(t.verdict(&h, Duration::from_secs(5)), Verdict::Pending);
        t.record(Ok(()));
        assert_eq!(t.verdict(&h, Duration::from_secs(6)), Verdict::Healthy);
    }

    #[test]
    fn the_deadline_fails_with_the_last_reason() {
        let h = health();
        let mut t = Tally::new();
        t.record(Err("status 503".into()));
        match t.verdict(&h, Duration::from_secs(10)) {
            Verdict::Failed(msg) => assert!(msg.contains("status 503"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pm2_facts_catch_down_and_restarting_instances() {
        let p: Process =
            serde_json::from_value(serde_json::json!({"name":"web","script":"s.js","instances":2}))
                .unwrap();
        let inst = |id: u64, status: &str, restarts: u64| Instance {
            name: "web".into(),
            pm_id: id,
            pid: 1,
            status: status.into(),
            restarts,
            exec_mode: "cluster_mode".into(),
            env: BTreeMap::new(),
        };
        let base: BTreeMap<u64, u64> = [(0, 1), (1, 1)].into();
        assert!(
            pm2_facts(
                std::slice::from_ref(&p),
                &[inst(0, "online", 1), inst(1, "online", 1)],
                &base,
                2
            )
            .is_ok()
        );
        let err = pm2_facts(
            std::slice::from_ref(&p),
            &[inst(0, "online", 1), inst(1, "errored", 1)],
            &base,
            2,
        )
        .unwrap_err();
        assert!(err.contains("1 of 2"), "{err}");
        let err = pm2_facts(
            std::slice::from_ref(&p),
            &[inst(0, "online", 3), inst(1, "online", 1)],
            &base,
            2,
        )
        .unwrap_err();
        assert!(err.contains("restarted 2"), "{err}");
    }
}

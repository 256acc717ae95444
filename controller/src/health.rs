//! Health: HTTP probes (status, body, latency), Prometheus queries (a value within a
//! threshold; no data is inconclusive) and pm2 facts (every declared instance online,
//! restart counts not climbing), combined into rounds, and rounds into a verdict: healthy
//! after `successThreshold` passing rounds in a row within `progressDeadline`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shipshape_spec::App;
use shipshape_spec::app::{Check, Health, HttpCheck, Instances, Process, PrometheusCheck};
use shipshape_spec::status::{CheckResult, ProbeState};

use crate::pm2::Instance;

/// Run one check.
pub async fn probe(client: &reqwest::Client, check: &Check) -> CheckResult {
    let started = Instant::now();
    let (state, detail) = match (&check.http, &check.prometheus) {
        (Some(http), _) => probe_http(client, check, http, started).await,
        (None, Some(prom)) => probe_prometheus(client, check, prom).await,
        (None, None) => (ProbeState::Fail, "no probe configured".to_string()),
    };
    CheckResult {
        name: check.name.clone(),
        state,
        detail,
        latency_ms: started.elapsed().as_millis() as u64,
    }
}

async fn probe_http(
    client: &reqwest::Client,
    check: &Check,
    http: &HttpCheck,
    started: Instant,
) -> (ProbeState, String) {
    let fail = |d: String| (ProbeState::Fail, d);
    let response = match client
        .get(&http.url)
        .timeout(check.timeout.std())
        .send()
        .await
    {
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
    let ms = started.elapsed().as_millis();
    if status != http.expect_status {
        return fail(format!(
            "status {status}, expected {} ({ms}ms)",
            http.expect_status
        ));
    }
    if let Some(needle) = &http.body_contains
        && !body.contains(needle.as_str())
    {
        return fail(format!("body does not contain {needle:?} ({ms}ms)"));
    }
    if let Some(max) = check.max_latency
        && started.elapsed() > max.std()
    {
        return fail(format!("{ms}ms is over maxLatency {max}"));
    }
    (ProbeState::Pass, format!("{status} in {ms}ms"))
}

async fn probe_prometheus(
    client: &reqwest::Client,
    check: &Check,
    prom: &PrometheusCheck,
) -> (ProbeState, String) {
    let url = format!("{}/api/v1/query", prom.url.trim_end_matches('/'));
    let sent = client
        .get(&url)
        .query(&[("query", prom.query.as_str())])
        .timeout(check.timeout.std())
        .send()
        .await;
    // Prometheus being unreachable says nothing about the app: inconclusive, not failing.
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            return (
                ProbeState::Inconclusive,
                format!("prometheus unreachable: {}", error_chain(&e)),
            );
        }
    };
    let body: serde_json::Value = match response.json().await {
        Ok(v) => v,
        Err(e) => {
            return (
                ProbeState::Inconclusive,
                format!("prometheus answered unreadably: {e}"),
            );
        }
    };
    if body["status"] != "success" {
        return (
            ProbeState::Fail,
            format!(
                "query rejected: {}",
                body["error"].as_str().unwrap_or("unknown error")
            ),
        );
    }
    let Some(value) = first_sample(&body["data"]) else {
        return (
            ProbeState::Inconclusive,
            "query returned no data".to_string(),
        );
    };
    if value.is_nan() {
        return (ProbeState::Inconclusive, "query returned NaN".to_string());
    }
    if let Some(below) = prom.below
        && value >= below
    {
        return (
            ProbeState::Fail,
            format!("value {value} is not below {below}"),
        );
    }
    if let Some(above) = prom.above
        && value <= above
    {
        return (
            ProbeState::Fail,
            format!("value {value} is not above {above}"),
        );
    }
    (ProbeState::Pass, format!("value {value}"))
}

/// The first sample of an instant-query result (vector or scalar).
fn first_sample(data: &serde_json::Value) -> Option<f64> {
    let value = match data["resultType"].as_str()? {
        "vector" => data["result"].as_array()?.first()?["value"][1].clone(),
        "scalar" => data["result"][1].clone(),
        _ => return None,
    };
    value.as_str()?.parse().ok()
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

/// Why the pm2 part of a round did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pm2Fault {
    /// An instance is still launching (pm2 has not marked it online yet): pending.
    Starting(String),
    /// Instances are missing, stopped or errored (or pm2 could not be asked).
    Down(String),
    /// An instance restarted since the baseline: a crash, whatever the boot time.
    Restarted(String),
}

/// The pm2 part of a round: all declared instances online and none restarted since `baseline`.
///
/// # Errors
/// [`Pm2Fault`] saying what is wrong, first the first process's.
pub fn pm2_facts(
    processes: &[Process],
    instances: &[Instance],
    baseline: &BTreeMap<u64, u64>,
    cpus: u32,
) -> Result<(), Pm2Fault> {
    for p in processes {
        let mine: Vec<&Instance> = instances.iter().filter(|i| i.name == p.name).collect();
        for i in &mine {
            if let Some(before) = baseline.get(&i.pm_id)
                && i.restarts > *before
            {
                return Err(Pm2Fault::Restarted(format!(
                    "pm2 {} (id {}) restarted {} time(s)",
                    p.name,
                    i.pm_id,
                    i.restarts - before
                )));
            }
        }
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
            let why = format!(
                "pm2 {}: {online} of {want} instances online ({status})",
                p.name
            );
            return Err(if status == "launching" {
                Pm2Fault::Starting(why)
            } else {
                Pm2Fault::Down(why)
            });
        }
    }
    Ok(())
}

/// How a round came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Every check passed (inconclusive ones aside, as long as one passed or pm2 counted).
    Pass,
    /// Something failed; why. Within the startup grace this counts as starting.
    Fail(String),
    /// An instance restarted: failing even within the startup grace.
    Crashed(String),
    /// The processes are still starting (pm2 says launching): pending, not failing.
    Starting(String),
    /// Nothing conclusive: neither a pass nor a failure.
    Inconclusive(String),
}

/// Combine pm2 facts and check results into a round.
pub fn combine(pm2: Result<(), Pm2Fault>, results: &[CheckResult]) -> Round {
    match pm2 {
        Err(Pm2Fault::Restarted(why)) => return Round::Crashed(why),
        Err(Pm2Fault::Starting(why)) => return Round::Starting(why),
        Err(Pm2Fault::Down(why)) => return Round::Fail(why),
        Ok(()) => {}
    }
    if let Some(f) = results.iter().find(|r| r.state == ProbeState::Fail) {
        return Round::Fail(format!("{}: {}", f.name, f.detail));
    }
    if let Some(i) = results.iter().find(|r| r.state == ProbeState::Inconclusive) {
        return Round::Inconclusive(format!("{}: {}", i.name, i.detail));
    }
    Round::Pass
}

/// pm2's own `listen_timeout` default: how long pm2 gives a process to start listening.
pub const PM2_LISTEN_TIMEOUT: Duration = Duration::from_millis(3000);

/// How long after a rollout's processes were applied failing rounds count as "still
/// starting": `health.startupGrace` when set, else the longest `listen_timeout` among the
/// processes, else pm2's default (3 s).
pub fn startup_grace(app: &App) -> Duration {
    if let Some(g) = app.spec.health.startup_grace {
        return g.std();
    }
    app.spec
        .processes
        .iter()
        .filter_map(|p| p.listen_timeout)
        .max()
        .map(Duration::from_millis)
        .unwrap_or(PM2_LISTEN_TIMEOUT)
}

/// The rounds seen so far, and what they add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Passing rounds in a row.
    pub passes: u32,
    /// Failing rounds in a row (rounds while starting are not counted).
    pub failures: u32,
    /// Rounds in all.
    pub rounds: u32,
    /// Passing rounds in all.
    pub passed_rounds: u32,
    /// Failing rounds in all.
    pub failed_rounds: u32,
    /// Rounds that failed while the processes were still starting.
    pub starting_rounds: u32,
    /// Why the last failing (or inconclusive, or starting) round was not a pass.
    pub last_failure: Option<String>,
}

/// Where verification stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep probing.
    Pending,
    /// `successThreshold` passing rounds in a row.
    Healthy,
    /// Failed, by the rule the message names: `failureThreshold` failing rounds in a row
    /// once the processes were up ("… failing rounds in a row: …"), or the progress
    /// deadline passed without the revision becoming healthy ("… progressDeadline …").
    Failed(String),
    /// The progress deadline passed without a single failing round, but too few conclusive
    /// passes (e.g. a Prometheus query with no data): nobody can say the revision is bad.
    Inconclusive(String),
}

impl Tally {
    /// A fresh tally.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Count one round. `starting`: the processes are within their startup grace, so a
    /// failing round is pending (a crash is not). Inconclusive rounds change no streak.
    pub fn record(&mut self, round: &Round, starting: bool) {
        self.rounds += 1;
        let pending =
            matches!(round, Round::Starting(_)) || (starting && matches!(round, Round::Fail(_)));
        match round {
            Round::Pass => {
                self.passes += 1;
                self.passed_rounds += 1;
                self.failures = 0;
            }
            Round::Fail(why) | Round::Crashed(why) | Round::Starting(why) if pending => {
                self.passes = 0;
                self.starting_rounds += 1;
                self.last_failure = Some(format!("starting: {why}"));
            }
            Round::Fail(why) | Round::Crashed(why) | Round::Starting(why) => {
                self.failures += 1;
                self.failed_rounds += 1;
                self.passes = 0;
                self.last_failure = Some(why.clone());
            }
            Round::Inconclusive(why) => self.last_failure = Some(format!("inconclusive: {why}")),
        }
    }

    /// The rounds as recorded on the revision.
    pub fn rounds(&self) -> shipshape_spec::status::Rounds {
        shipshape_spec::status::Rounds {
            passed: self.passed_rounds,
            failed: self.failed_rounds,
        }
    }

    /// The verdict after the rounds so far, given the time spent: healthy after
    /// `successThreshold` passes in a row; failed as soon as `failureThreshold` failing
    /// rounds in a row were counted; at the deadline, failed, or inconclusive when no
    /// round failed (or was still starting).
    pub fn verdict(&self, health: &Health, elapsed: Duration) -> Verdict {
        let last = || self.last_failure.as_deref().unwrap_or("none");
        if self.passes >= health.success_threshold {
            Verdict::Healthy
        } else if self.failures >= health.failure_threshold {
            Verdict::Failed(format!(
                "{} failing rounds in a row: {}",
                self.failures,
                last()
            ))
        } else if elapsed < health.progress_deadline.std() {
            Verdict::Pending
        } else if self.failed_rounds == 0 && self.starting_rounds == 0 && self.rounds > 0 {
            Verdict::Inconclusive(format!(
                "verification inconclusive within progressDeadline {} ({} rounds, none failing; {})",
                health.progress_deadline,
                self.rounds,
                self.last_failure
                    .as_deref()
                    .unwrap_or("not enough passing rounds")
            ))
        } else {
            Verdict::Failed(format!(
                "not healthy within progressDeadline {} ({} rounds; last failure: {})",
                health.progress_deadline,
                self.rounds,
                self.last_failure
                    .as_deref()
                    .unwrap_or("none: not enough passing rounds yet")
            ))
        }
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
            startup_grace: None,
        }
    }

    #[test]
    fn healthy_needs_consecutive_passes() {
        let h = health();
        let mut t = Tally::new();
        t.record(&Round::Pass, false);
        t.record(&Round::Pass, false);
        t.record(&Round::Fail("503".into()), false);
        t.record(&Round::Pass, false);
        t.record(&Round::Pass, false);
        assert_eq!(t.verdict(&h, Duration::from_secs(5)), Verdict::Pending);
        t.record(&Round::Pass, false);
        assert_eq!(t.verdict(&h, Duration::from_secs(6)), Verdict::Healthy);
    }

    #[test]
    fn inconclusive_rounds_are_neither_passes_nor_failures() {
        let h = health();
        let mut t = Tally::new();
        t.record(&Round::Pass, false);
        t.record(&Round::Pass, false);
        t.record(&Round::Inconclusive("no data".into()), false);
        assert_eq!((t.passes, t.failures), (2, 0));
        t.record(&Round::Pass, false);
        assert_eq!(t.verdict(&h, Duration::from_secs(4)), Verdict::Healthy);
        let mut only = Tally::new();
        for _ in 0..10 {
            only.record(&Round::Inconclusive("no data".into()), false);
        }
        match only.verdict(&h, Duration::from_secs(10)) {
            Verdict::Inconclusive(m) => assert!(m.contains("inconclusive: no data"), "{m}"),
            v => panic!("{v:?}"),
        }
        only.record(&Round::Fail("503".into()), false);
        assert!(matches!(
            only.verdict(&h, Duration::from_secs(10)),
            Verdict::Failed(_)
        ));
    }

    /// Rounds in order (P pass, F fail, C crash, S pm2 launching, I inconclusive; lower
    /// case: within the startup grace), the time spent, and the verdict.
    #[test]
    fn failing_rounds_in_a_row_fail_at_once_and_rounds_while_starting_do_not() {
        let h = Health {
            success_threshold: 2,
            failure_threshold: 2,
            ..health()
        };
        let rows: &[(&str, u64, &str)] = &[
            ("FF", 1, "failed: 2 failing rounds in a row: why"),
            ("F", 1, "pending"),
            ("FPF", 2, "pending"),
            ("FIF", 2, "failed: 2 failing rounds in a row: why"),
            ("ffffff", 3, "pending"),
            ("ffffPP", 3, "healthy"),
            ("ffffF", 3, "pending"),
            ("ffffFF", 4, "failed: 2 failing rounds in a row: why"),
            ("cc", 1, "failed: 2 failing rounds in a row: why"),
            ("SSSS", 3, "pending"),
            (
                "ssss",
                10,
                "failed: not healthy within progressDeadline 10s",
            ),
            (
                "ffff",
                10,
                "failed: not healthy within progressDeadline 10s",
            ),
            ("IIII", 10, "inconclusive"),
            ("PIP", 2, "healthy"),
            ("PFP", 2, "pending"),
            ("F", 10, "failed: not healthy within progressDeadline 10s"),
            ("P", 10, "inconclusive"),
        ];
        for (rounds, secs, want) in rows {
            let mut t = Tally::new();
            for c in rounds.chars() {
                let (round, starting) = match c {
                    'P' => (Round::Pass, false),
                    'F' => (Round::Fail("why".into()), false),
                    'f' => (Round::Fail("why".into()), true),
                    'c' => (Round::Crashed("why".into()), true),
                    'S' | 's' => (Round::Starting("why".into()), c == 's'),
                    'I' => (Round::Inconclusive("why".into()), false),
                    _ => unreachable!(),
                };
                t.record(&round, starting);
            }
            let got = match t.verdict(&h, Duration::from_secs(*secs)) {
                Verdict::Pending => "pending".to_string(),
                Verdict::Healthy => "healthy".to_string(),
                Verdict::Inconclusive(_) => "inconclusive".to_string(),
                Verdict::Failed(m) => format!("failed: {m}"),
            };
            assert!(got.starts_with(want), "{rounds} after {secs}s: {got}");
        }
    }

    #[test]
    fn the_passed_and_failed_rounds_are_kept_for_the_revision() {
        let mut t = Tally::new();
        t.record(&Round::Fail("boot".into()), true);
        t.record(&Round::Pass, false);
        t.record(&Round::Pass, false);
        assert_eq!(
            t.rounds(),
            shipshape_spec::status::Rounds {
                passed: 2,
                failed: 0
            }
        );
        t.record(&Round::Fail("500".into()), false);
        assert_eq!(t.rounds().failed, 1);
    }

    #[test]
    fn the_startup_grace_comes_from_the_document_then_listen_timeout_then_pm2s_default() {
        let text = |grace: &str, listen: &str| {
            format!(
                "apiVersion: shipshape/v1alpha1\nkind: App\nmetadata: {{ name: demo }}\nspec:\n  source: {{ repository: /srv/git/demo, commit: 1111111111111111111111111111111111111111 }}\n  releases: {{ root: /srv/demo }}\n  processes:\n    - name: web\n      script: server.js\n{listen}  health:\n{grace}    checks: []\n"
            )
        };
        let load = |t: String| shipshape_spec::load_str(&t, "t.yaml").unwrap();
        assert_eq!(startup_grace(&load(text("", ""))), PM2_LISTEN_TIMEOUT);
        assert_eq!(
            startup_grace(&load(text("", "      listen_timeout: 8000\n"))),
            Duration::from_secs(8)
        );
        assert_eq!(
            startup_grace(&load(text(
                "    startupGrace: 1s\n",
                "      listen_timeout: 8000\n"
            ))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_deadline_fails_with_the_last_reason() {
        let h = health();
        let mut t = Tally::new();
        t.record(&Round::Fail("status 503".into()), false);
        match t.verdict(&h, Duration::from_secs(10)) {
            Verdict::Failed(msg) => assert!(msg.contains("status 503"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_round_fails_on_any_failure_and_is_inconclusive_only_without_one() {
        let r = |name: &str, state| CheckResult {
            name: name.into(),
            state,
            detail: "d".into(),
            latency_ms: 1,
        };
        assert_eq!(combine(Ok(()), &[r("a", ProbeState::Pass)]), Round::Pass);
        assert!(matches!(
            combine(
                Ok(()),
                &[r("a", ProbeState::Pass), r("p", ProbeState::Inconclusive)]
            ),
            Round::Inconclusive(_)
        ));
        assert!(matches!(
            combine(
                Ok(()),
                &[r("p", ProbeState::Inconclusive), r("a", ProbeState::Fail)]
            ),
            Round::Fail(_)
        ));
        assert!(matches!(
            combine(
                Err(Pm2Fault::Down("pm2 web: 0 of 2".into())),
                &[r("a", ProbeState::Pass)]
            ),
            Round::Fail(_)
        ));
        assert!(matches!(
            combine(
                Err(Pm2Fault::Starting("launching".into())),
                &[r("a", ProbeState::Fail)]
            ),
            Round::Starting(_)
        ));
        assert!(matches!(
            combine(
                Err(Pm2Fault::Restarted("restarted".into())),
                &[r("a", ProbeState::Pass)]
            ),
            Round::Crashed(_)
        ));
    }

    #[test]
    fn prometheus_samples_are_read_from_vectors_and_scalars() {
        let v = serde_json::json!({"resultType":"vector","result":[{"metric":{},"value":[1.0,"0.25"]}]});
        assert_eq!(first_sample(&v), Some(0.25));
        let s = serde_json::json!({"resultType":"scalar","result":[1.0,"3"]});
        assert_eq!(first_sample(&s), Some(3.0));
        let empty = serde_json::json!({"resultType":"vector","result":[]});
        assert_eq!(first_sample(&empty), None);
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
        let ps = std::slice::from_ref(&p);
        assert!(pm2_facts(ps, &[inst(0, "online", 1), inst(1, "online", 1)], &base, 2).is_ok());
        let err =
            pm2_facts(ps, &[inst(0, "online", 1), inst(1, "errored", 1)], &base, 2).unwrap_err();
        assert!(
            matches!(&err, Pm2Fault::Down(m) if m.contains("1 of 2")),
            "{err:?}"
        );
        let err = pm2_facts(
            ps,
            &[inst(0, "online", 1), inst(1, "launching", 1)],
            &base,
            2,
        )
        .unwrap_err();
        assert!(matches!(err, Pm2Fault::Starting(_)), "{err:?}");
        let err =
            pm2_facts(ps, &[inst(0, "online", 3), inst(1, "online", 1)], &base, 2).unwrap_err();
        assert!(
            matches!(&err, Pm2Fault::Restarted(m) if m.contains("restarted 2")),
            "{err:?}"
        );
    }
}

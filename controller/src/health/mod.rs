//! Health: HTTP probes (status, body, latency), Prometheus queries (a value within a
//! threshold; no data is inconclusive), resource limits on what pm2 reports (CPU and
//! memory per instance or per app) and pm2 facts (every declared instance online, restart
//! counts not climbing), combined into rounds, and rounds into a verdict: healthy after
//! `successThreshold` passing rounds in a row within `progressDeadline`.
//!
//! Every check counts the same way: a round fails when any check fails, and it takes
//! `failureThreshold` failing rounds in a row to make a healthy revision regressed (a
//! rollout fails when it is not healthy by `progressDeadline`). That is how a resources
//! check tells a spike from a leak: a figure over its limit for one round fails that round
//! only, and the next passing round resets the streak; a memory that keeps climbing past
//! its limit fails every round from then on.

pub mod monitor;
pub mod probes;
pub mod words;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shipshape_spec::App;
use shipshape_spec::app::{
    Check, CheckKind, Health, HttpCheck, Instances, Process, PrometheusCheck, ResourcesCheck,
    ResourcesPer,
};
use shipshape_spec::status::{CheckResult, ProbeState};

use crate::prometheus::{QueryError, error_chain, instant_query};

use crate::pm2::{Instance, Status};

/// Run one `http` or `prometheus` check. `resources` checks are not probed: their results
/// come from [`resources_results`] on the round's `pm2 jlist` (given one anyway, this says
/// so, inconclusively).
///
/// The latency is the probe's own clock around the request and the body, on the thread
/// that runs the probe (the probe thread, see [`crate::health::probes`]). A failure on time (over
/// `maxLatency`, or no answer within `timeout`) that the controller's own lateness explains
/// is inconclusive, not failing: see [`late_excuses`].
pub async fn probe(client: &reqwest::Client, check: &Check) -> CheckResult {
    let clock = ProbeClock::start();
    let (state, detail) = match &check.kind {
        CheckKind::Http(http) => probe_http(client, check, http, &clock).await,
        CheckKind::Prometheus(prom) => probe_prometheus(client, check, prom).await,
        CheckKind::Resources(_) => (
            ProbeState::Inconclusive,
            "a resources check is read from pm2, not probed".to_string(),
        ),
    };
    CheckResult {
        name: check.name.clone(),
        state,
        detail,
        latency_ms: clock.started.elapsed().as_millis() as u64,
    }
}

/// The URL a check probes (which client it needs); none for a resources check.
pub fn check_url(check: &Check) -> &str {
    match &check.kind {
        CheckKind::Http(h) => &h.url,
        CheckKind::Prometheus(p) => &p.url,
        CheckKind::Resources(_) => "",
    }
}

/// Below this, the probe thread's wait for a CPU is scheduling noise, not lateness: the
/// controller counts as late during a probe only when its probe thread, runnable, waited
/// longer than this for a CPU while the request was in flight.
pub const LATE_AFTER: Duration = Duration::from_millis(20);

/// Whether a probe that took `measured` against a `limit` (`maxLatency`, or the check's
/// `timeout`) is excused because the controller was late: its probe thread waited `late`
/// for a CPU during the probe (`None`: not known, never an excuse). Excused when `late` is
/// over [`LATE_AFTER`] and the answer's time less `late` is within the limit; when even
/// that is over the limit the app was slow by itself, and the probe fails.
pub fn late_excuses(measured: Duration, limit: Duration, late: Option<Duration>) -> bool {
    late.is_some_and(|late| late > LATE_AFTER && measured.saturating_sub(late) <= limit)
}

/// Whether a probe cut at its time limit (`limit`, no answer by then) is excused because the
/// controller was late. Its measured time is the limit itself, so "less the lateness, within
/// the limit" would hold for any lateness at all and a hung endpoint on a busy host would
/// never fail: a timeout is excused only when the probe thread waited for a CPU for at least
/// half of the limit (then the app had less than half its time to answer, as far as the
/// controller could tell), and never below [`LATE_AFTER`].
pub fn late_excuses_timeout(limit: Duration, late: Option<Duration>) -> bool {
    late.is_some_and(|late| late > LATE_AFTER && late >= limit / 2)
}

/// The probe's own clock: when it started, and how long its thread had waited for a CPU by
/// then (the kernel's run-queue delay for this thread, `/proc/thread-self/schedstat`).
struct ProbeClock {
    started: Instant,
    waited: Option<Duration>,
}

impl ProbeClock {
    fn start() -> ProbeClock {
        ProbeClock {
            waited: run_queue_wait(),
            started: Instant::now(),
        }
    }

    /// A failure on time (`why`, against `limit`): failing, or inconclusive when the
    /// controller's lateness since the start explains it.
    fn timing_failure(&self, limit: Duration, why: String) -> (ProbeState, String) {
        let late = self.late();
        self.judge_timing(limit, late, why)
    }

    /// How late the probe thread was since the start (`None`: not known).
    fn late(&self) -> Option<Duration> {
        self.waited
            .zip(run_queue_wait())
            .map(|(before, now)| now.saturating_sub(before))
    }

    /// A probe cut at its time limit: failing, unless [`late_excuses_timeout`] says the
    /// controller's own lateness ate most of that time.
    fn timeout_failure(&self, limit: Duration, why: String) -> (ProbeState, String) {
        let late = self.late();
        excused_if(late_excuses_timeout(limit, late), late, why)
    }

    /// [`ProbeClock::timing_failure`] given how late the probe thread was since the start.
    fn judge_timing(
        &self,
        limit: Duration,
        late: Option<Duration>,
        why: String,
    ) -> (ProbeState, String) {
        let measured = self.started.elapsed();
        excused_if(late_excuses(measured, limit, late), late, why)
    }
}

/// A failure on time (`why`): inconclusive, saying how late the controller was, when
/// `excused`; else failing.
fn excused_if(excused: bool, late: Option<Duration>, why: String) -> (ProbeState, String) {
    if !excused {
        return (ProbeState::Fail, why);
    }
    let late = late.unwrap_or_default().as_millis();
    (
        ProbeState::Inconclusive,
        format!(
            "{why}, but the controller was late (its probe thread waited {late}ms for a CPU meanwhile): not counted"
        ),
    )
}

/// How long the calling thread has waited, runnable, for a CPU since it started (the
/// second field of `/proc/thread-self/schedstat`, in nanoseconds); `None` where the kernel
/// does not say. The file is opened once per thread and read again in place (one `pread`).
pub(crate) fn run_queue_wait() -> Option<Duration> {
    use std::os::unix::fs::FileExt;
    thread_local! {
        static SCHEDSTAT: Option<std::fs::File> =
            std::fs::File::open("/proc/thread-self/schedstat").ok();
    }
    let mut buf = [0u8; 128];
    let n = SCHEDSTAT.with(|f| f.as_ref()?.read_at(&mut buf, 0).ok())?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let ns: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

async fn probe_http(
    client: &reqwest::Client,
    check: &Check,
    http: &HttpCheck,
    clock: &ProbeClock,
) -> (ProbeState, String) {
    let fail = |d: String| (ProbeState::Fail, d);
    let timeout = check.timeout.std();
    let response = match client.get(&http.url).timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return clock.timeout_failure(timeout, format!("no answer within {}", check.timeout));
        }
        Err(e) => {
            // The whole chain for whoever debugs; what happened, for status.
            let chain = error_chain(&e);
            tracing::debug!(check = %check.name, url = %crate::redact::credentials(&http.url), "request failed: {}", crate::redact::credentials(&chain));
            return fail(words::cut_chain(&http.url, &chain));
        }
    };
    let status = response.status().as_u16();
    // The request's timeout covers the body too: reqwest's deadline usually cuts a body
    // that stalls (an error of the read) before this one does; either way it is a timeout.
    let (body, cut) = match tokio::time::timeout(timeout, read_body(response)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if !e.is_timeout() => return fail(format!("reading body failed: {e}")),
        Ok(Err(_)) | Err(_) => {
            return clock.timeout_failure(
                timeout,
                format!("body not complete within {}", check.timeout),
            );
        }
    };
    let ms = clock.started.elapsed().as_millis();
    if status != http.expect_status {
        return fail(format!(
            "status {status}, expected {} ({ms}ms)",
            http.expect_status
        ));
    }
    if let Some(needle) = &http.body_contains
        && !body.contains(needle.as_str())
    {
        let read = if cut {
            format!(
                " in its first {} MiB (the rest was not read)",
                BODY_LIMIT / (1024 * 1024)
            )
        } else {
            String::new()
        };
        return fail(format!("body does not contain {needle:?}{read} ({ms}ms)"));
    }
    if let Some(max) = check.max_latency
        && clock.started.elapsed() > max.std()
    {
        return clock.timing_failure(max.std(), format!("{ms}ms is over maxLatency {max}"));
    }
    (ProbeState::Pass, format!("{status} in {ms}ms"))
}

/// How much of a health reply is read (1 MiB): `bodyContains` looks in it; the rest is
/// never downloaded (the connection is dropped), so a huge or endless reply costs the
/// controller this much, not the reply's size.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The reply's body, up to [`BODY_LIMIT`] bytes (as text), and whether it was cut there.
async fn read_body(mut response: reqwest::Response) -> Result<(String, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = BODY_LIMIT - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            let cut = chunk.len() > room || response.chunk().await?.is_some();
            return Ok((String::from_utf8_lossy(&body).into_owned(), cut));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((String::from_utf8_lossy(&body).into_owned(), false))
}

async fn probe_prometheus(
    client: &reqwest::Client,
    check: &Check,
    prom: &PrometheusCheck,
) -> (ProbeState, String) {
    let data = match instant_query(client, &prom.url, &prom.query, check.timeout.std()).await {
        Ok(data) => data,
        // Prometheus being unreachable says nothing about the app: inconclusive, not failing.
        Err(QueryError::Unreachable(chain)) => {
            tracing::debug!(check = %check.name, url = %crate::redact::credentials(&prom.url), "prometheus unreachable: {}", crate::redact::credentials(&chain));
            return (
                ProbeState::Inconclusive,
                format!(
                    "prometheus unreachable: {}",
                    words::cut_chain(&prom.url, &chain)
                ),
            );
        }
        Err(QueryError::Unreadable { status, detail }) => {
            return (
                ProbeState::Inconclusive,
                format!("prometheus answered unreadably ({status}): {detail}"),
            );
        }
        Err(QueryError::Rejected { message, .. }) => {
            return (ProbeState::Fail, format!("query rejected: {message}"));
        }
    };
    let Some(value) = first_sample(&data) else {
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

/// One result per `resources` check in `checks` (in order; other kinds are skipped), from
/// one `pm2 jlist` (`instances`): the CPU and memory pm2 reports for the online instances
/// of `processes`, each instance against the limits (`per: instance`) or their sum
/// (`per: app`).
///
/// - **Fail** when a figure is over its limit (strictly), naming every instance (or the
///   sum) that is, e.g. `pm2 web (id 3): memory 912 MiB over maxMemory 800 MiB`.
/// - **Pass** otherwise, with the figures (the highest instance's, or the sums).
/// - **Inconclusive** when no instance of the processes is online, or pm2 reports no
///   figures for any of them (pm2 reports zeros when it fails to measure): nothing to judge.
///   pm2 facts fail the round anyway when declared instances are not online.
///
/// A failing result fails its round like any check; only `failureThreshold` failing
/// rounds in a row regress a revision, and a rollout fails at `progressDeadline`: a spike
/// over the limit for one round is not a failure, a memory that keeps climbing past it is.
pub fn resources_results(
    checks: &[Check],
    processes: &[Process],
    instances: &[Instance],
) -> Vec<CheckResult> {
    checks
        .iter()
        .filter_map(|c| c.resources().map(|r| (c, r)))
        .map(|(check, limits)| {
            let (state, detail) = judge_resources(limits, processes, instances);
            CheckResult {
                name: check.name.clone(),
                state,
                detail,
                latency_ms: 0,
            }
        })
        .collect()
}

fn judge_resources(
    limits: &ResourcesCheck,
    processes: &[Process],
    instances: &[Instance],
) -> (ProbeState, String) {
    let online: Vec<&Instance> = instances
        .iter()
        .filter(|i| i.status == Status::Online && processes.iter().any(|p| p.name == i.name))
        .collect();
    let names = || {
        processes
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if online.is_empty() {
        return (
            ProbeState::Inconclusive,
            format!("no online pm2 instance of {}", names()),
        );
    }
    // A running process always has resident memory: zero means pm2 did not measure it.
    let measured: Vec<&Instance> = online.into_iter().filter(|i| i.memory > 0).collect();
    if measured.is_empty() {
        return (
            ProbeState::Inconclusive,
            format!("pm2 reports no cpu or memory figures for {}", names()),
        );
    }
    match limits.per {
        ResourcesPer::Instance => judge_each_instance(limits, &measured),
        ResourcesPer::App => judge_app_total(limits, &measured),
    }
}

/// `per: instance`: every measured instance within the limits (`measured` is not empty).
fn judge_each_instance(limits: &ResourcesCheck, measured: &[&Instance]) -> (ProbeState, String) {
    let mut over = Vec::new();
    for i in measured {
        let who = format!("pm2 {} (id {})", i.name, i.pm_id);
        over.extend(overages(limits, i.cpu, i.memory).map(|o| format!("{who}: {o}")));
    }
    if !over.is_empty() {
        return (ProbeState::Fail, over.join("; "));
    }
    let top_cpu = measured
        .iter()
        .max_by(|a, b| a.cpu.total_cmp(&b.cpu))
        .expect("measured is not empty");
    let top_mem = measured
        .iter()
        .max_by_key(|i| i.memory)
        .expect("measured is not empty");
    (
        ProbeState::Pass,
        format!(
            "{} instance(s) within {}; highest cpu {} ({} id {}), memory {} ({} id {})",
            measured.len(),
            limits_text(limits),
            percent(top_cpu.cpu),
            top_cpu.name,
            top_cpu.pm_id,
            mib(top_mem.memory),
            top_mem.name,
            top_mem.pm_id,
        ),
    )
}

/// `per: app`: the sum over the measured instances within the limits.
fn judge_app_total(limits: &ResourcesCheck, measured: &[&Instance]) -> (ProbeState, String) {
    let cpu: f64 = measured.iter().map(|i| i.cpu).sum();
    let memory: u64 = measured.iter().map(|i| i.memory).sum();
    let who = format!("app total over {} instance(s)", measured.len());
    let over: Vec<String> = overages(limits, cpu, memory).collect();
    if over.is_empty() {
        (
            ProbeState::Pass,
            format!(
                "{who}: cpu {}, memory {}; within {}",
                percent(cpu),
                mib(memory),
                limits_text(limits)
            ),
        )
    } else {
        (ProbeState::Fail, format!("{who}: {}", over.join(", ")))
    }
}

/// What of `cpu` and `memory` is over `limits`, in words.
fn overages(limits: &ResourcesCheck, cpu: f64, memory: u64) -> impl Iterator<Item = String> {
    let cpu_over = limits
        .max_cpu
        .filter(|max| cpu > max.value())
        .map(|max| format!("cpu {} over maxCpu {}", percent(cpu), percent(max.value())));
    let mem_over = limits
        .max_memory
        .filter(|max| memory > max.bytes())
        .map(|max| format!("memory {} over maxMemory {}", mib(memory), mib(max.bytes())));
    cpu_over.into_iter().chain(mem_over)
}

fn limits_text(limits: &ResourcesCheck) -> String {
    let cpu = limits
        .max_cpu
        .map(|m| format!("maxCpu {}", percent(m.value())));
    let mem = limits
        .max_memory
        .map(|m| format!("maxMemory {}", mib(m.bytes())));
    cpu.into_iter().chain(mem).collect::<Vec<_>>().join(", ")
}

/// `12.5%`, `80%` (one decimal, as pm2 reports CPU).
fn percent(v: f64) -> String {
    format!("{}%", one_decimal(v))
}

/// Bytes in MiB (GiB from 1 GiB), one decimal: `912.4 MiB`, `800 MiB`, `1.5 GiB`.
fn mib(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let m = bytes as f64 / MIB;
    if m >= 1024.0 {
        format!("{} GiB", one_decimal(m / 1024.0))
    } else {
        format!("{} MiB", one_decimal(m))
    }
}

fn one_decimal(v: f64) -> String {
    let text = format!("{v:.1}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
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
        let online = mine.iter().filter(|i| i.status == Status::Online).count();
        if online < want {
            let status = mine
                .iter()
                .find(|i| i.status != Status::Online)
                .map(|i| &i.status);
            let why = format!(
                "pm2 {}: {online} of {want} instances online ({})",
                p.name,
                status.map_or("missing", Status::as_str)
            );
            return Err(if status == Some(&Status::Launching) {
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

/// Why a verification failed: what happened (the last failing round's reason, or a better
/// account of it, see [`words::headline`]) and by which rule. Shown as `what, rule`:
/// `api: status 500, expected 200 (3ms), after 2 failing rounds in a row`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What happened, in a line.
    pub what: String,
    /// The rule that made it a failure (`after 2 failing rounds in a row`, `not healthy
    /// within progressDeadline 20s (41 rounds)`).
    pub rule: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {}", self.what, self.rule)
    }
}

/// Where verification stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep probing.
    Pending,
    /// `successThreshold` passing rounds in a row.
    Healthy,
    /// Failed, by the rule the failure names: `failureThreshold` failing rounds in a row
    /// once the processes were up, or the progress deadline passed without the revision
    /// becoming healthy.
    Failed(Failure),
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
            Verdict::Failed(Failure {
                what: last().to_string(),
                rule: format!("after {} failing rounds in a row", self.failures),
            })
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
            Verdict::Failed(Failure {
                what: self
                    .last_failure
                    .clone()
                    .unwrap_or_else(|| "not enough passing rounds yet".to_string()),
                rule: format!(
                    "not healthy within progressDeadline {} ({} rounds)",
                    health.progress_deadline, self.rounds
                ),
            })
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

    /// A round whose one probe took 400 ms against maxLatency 100ms while the probe thread
    /// waited 350 ms for a CPU: what the probe makes of it, combined like any round.
    fn late_round() -> Round {
        let clock = ProbeClock {
            started: Instant::now() - Duration::from_millis(400),
            waited: Some(Duration::ZERO),
        };
        let (state, detail) = clock.judge_timing(
            Duration::from_millis(100),
            Some(Duration::from_millis(350)),
            "400ms is over maxLatency 100ms".into(),
        );
        assert_eq!(state, ProbeState::Inconclusive, "{detail}");
        let result = CheckResult {
            name: "api".into(),
            state,
            detail,
            latency_ms: 400,
        };
        let round = combine(Ok(()), &[result]);
        assert!(
            matches!(&round, Round::Inconclusive(why) if why.contains("the controller was late")),
            "{round:?}"
        );
        round
    }

    #[test]
    fn a_probe_over_its_limit_is_excused_only_when_the_controllers_own_lateness_explains_it() {
        let ms = Duration::from_millis;
        // (measured, limit, the probe thread's wait for a CPU, excused)
        let rows: &[(u64, u64, Option<u64>, bool)] = &[
            (400, 100, None, false),      // lateness not known: no excuse
            (400, 100, Some(0), false),   // on time: the app was slow
            (130, 100, Some(20), false),  // 20 ms is scheduling noise, not lateness
            (130, 100, Some(30), true),   // 30 ms late explains a 30 ms overage
            (400, 100, Some(290), false), // 110 ms left is still over: the app was slow
            (400, 100, Some(300), true),
            (458, 100, Some(440), true),
        ];
        for &(measured, limit, late, excused) in rows {
            assert_eq!(
                late_excuses(ms(measured), ms(limit), late.map(ms)),
                excused,
                "{measured} ms against {limit} ms, late {late:?}"
            );
        }
    }

    #[test]
    fn a_probe_cut_at_its_timeout_is_excused_only_when_lateness_ate_half_of_it() {
        let ms = Duration::from_millis;
        // (timeout, the probe thread's wait for a CPU, excused)
        let rows: &[(u64, Option<u64>, bool)] = &[
            (2000, None, false),      // lateness not known: no excuse
            (2000, Some(5), false),   // the app did not answer
            (2000, Some(25), false),  // a hung endpoint on a busy host still fails
            (2000, Some(999), false), // the app had more than half its time
            (2000, Some(1000), true), // the controller ate half the time
            (2000, Some(1900), true),
            (30, Some(20), false), // never below scheduling noise
            (30, Some(21), true),
        ];
        for &(limit, late, excused) in rows {
            assert_eq!(
                late_excuses_timeout(ms(limit), late.map(ms)),
                excused,
                "a {limit} ms timeout, late {late:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_that_stalls_past_the_timeout_fails_as_a_timeout_not_a_read_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/health", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req).await;
            // The head and 3 of 100 bytes, then nothing.
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc";
            let _ = s.write_all(head).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let check: Check = serde_json::from_value(serde_json::json!({
            "name": "api", "http": {"url": url}, "timeout": "1s",
        }))
        .unwrap();
        let r = probe(&reqwest::Client::new(), &check).await;
        // On time (this test's thread is not starved for half a second): failing.
        assert_eq!(r.state, ProbeState::Fail, "{}", r.detail);
        assert_eq!(r.detail, "body not complete within 1s");
        assert!(r.latency_ms < 5000, "{} ms", r.latency_ms);
    }

    #[test]
    fn the_probe_threads_wait_for_a_cpu_is_read_from_the_kernel_and_grows_with_contention() {
        let before = run_queue_wait().expect("/proc/thread-self/schedstat");
        // Busy work on more threads than CPUs: this thread has to queue for a CPU.
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let end = Instant::now() + Duration::from_millis(300);
        let spin = move || {
            let mut x = 0u64;
            while Instant::now() < end {
                x = x.wrapping_add(1);
            }
            x
        };
        let others: Vec<_> = (0..cpus * 2).map(|_| std::thread::spawn(spin)).collect();
        spin();
        for t in others {
            t.join().unwrap();
        }
        let after = run_queue_wait().unwrap();
        assert!(after > before, "{before:?} then {after:?}");
    }

    /// Rounds in order (P pass, F fail, C crash, S pm2 launching, I inconclusive, L late;
    /// lower case: within the startup grace), the time spent, and the verdict.
    #[test]
    fn failing_rounds_in_a_row_fail_at_once_and_rounds_while_starting_do_not() {
        let h = Health {
            success_threshold: 2,
            failure_threshold: 2,
            ..health()
        };
        let rows: &[(&str, u64, &str)] = &[
            ("FF", 1, "failed: why, after 2 failing rounds in a row"),
            ("F", 1, "pending"),
            ("FPF", 2, "pending"),
            ("FIF", 2, "failed: why, after 2 failing rounds in a row"),
            ("ffffff", 3, "pending"),
            ("ffffPP", 3, "healthy"),
            ("ffffF", 3, "pending"),
            ("ffffFF", 4, "failed: why, after 2 failing rounds in a row"),
            ("cc", 1, "failed: why, after 2 failing rounds in a row"),
            ("SSSS", 3, "pending"),
            (
                "ssss",
                10,
                "failed: starting: why, not healthy within progressDeadline 10s",
            ),
            (
                "ffff",
                10,
                "failed: starting: why, not healthy within progressDeadline 10s",
            ),
            ("IIII", 10, "inconclusive"),
            ("PIP", 2, "healthy"),
            ("PFP", 2, "pending"),
            (
                "F",
                10,
                "failed: why, not healthy within progressDeadline 10s",
            ),
            ("P", 10, "inconclusive"),
            // L: a round the controller was late for (a probe over maxLatency that its
            // own lateness explains): inconclusive, it neither extends nor resets a
            // streak, failing or passing, and only late rounds to the deadline are
            // inconclusive, never failed.
            ("FLF", 2, "failed: why, after 2 failing rounds in a row"),
            ("FLLLF", 3, "failed: why, after 2 failing rounds in a row"),
            ("FL", 2, "pending"),
            ("LLLL", 3, "pending"),
            ("PLP", 2, "healthy"),
            ("LLLL", 10, "inconclusive"),
            ("LLLLP", 10, "inconclusive"),
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
                    'L' => (late_round(), false),
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
            Verdict::Failed(msg) => assert!(msg.to_string().contains("status 503"), "{msg}"),
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
            cpu: 0.0,
            memory: 0,
            logs: Default::default(),
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

    const MIB: u64 = 1024 * 1024;

    fn resources_check(name: &str, limits: serde_json::Value) -> Check {
        serde_json::from_value(serde_json::json!({"name": name, "resources": limits})).unwrap()
    }

    fn measured(name: &str, id: u64, status: &str, cpu: f64, memory: u64) -> Instance {
        Instance {
            name: name.into(),
            pm_id: id,
            pid: 100 + id,
            status: status.into(),
            restarts: 0,
            exec_mode: "cluster_mode".into(),
            env: BTreeMap::new(),
            cpu,
            memory,
            logs: Default::default(),
        }
    }

    #[test]
    fn resources_results_judge_each_instance_or_the_app_total() {
        let processes: Vec<Process> = ["web", "worker"]
            .iter()
            .map(|n| {
                serde_json::from_value(serde_json::json!({"name": n, "script": "s.js"})).unwrap()
            })
            .collect();
        let web = |id, cpu, mem_mib: u64| measured("web", id, "online", cpu, mem_mib * MIB);
        let cases: Vec<(&str, serde_json::Value, Vec<Instance>, ProbeState, &str)> = vec![
            (
                "all instances under both limits",
                serde_json::json!({"maxCpu": "80%", "maxMemory": "800M"}),
                vec![web(0, 12.5, 100), web(1, 3.0, 300)],
                ProbeState::Pass,
                "2 instance(s) within maxCpu 80%, maxMemory 800 MiB; highest cpu 12.5% (web id 0), memory 300 MiB (web id 1)",
            ),
            (
                "one instance over maxMemory is named",
                serde_json::json!({"maxCpu": "80%", "maxMemory": "800M"}),
                vec![web(2, 5.0, 100), web(3, 5.0, 912)],
                ProbeState::Fail,
                "pm2 web (id 3): memory 912 MiB over maxMemory 800 MiB",
            ),
            (
                "exactly at the limit is not over it",
                serde_json::json!({"maxCpu": "80%", "maxMemory": "800M"}),
                vec![web(0, 80.0, 800)],
                ProbeState::Pass,
                "1 instance(s) within",
            ),
            (
                "every overage of every instance is listed",
                serde_json::json!({"maxCpu": "50%", "maxMemory": "1G"}),
                vec![
                    web(0, 97.3, 1536),
                    measured("worker", 1, "online", 60.0, 10 * MIB),
                ],
                ProbeState::Fail,
                "pm2 web (id 0): cpu 97.3% over maxCpu 50%; pm2 web (id 0): memory 1.5 GiB over maxMemory 1 GiB; pm2 worker (id 1): cpu 60% over maxCpu 50%",
            ),
            (
                "only the limits given are checked",
                serde_json::json!({"maxMemory": "800M"}),
                vec![web(0, 390.0, 100)],
                ProbeState::Pass,
                "1 instance(s) within maxMemory 800 MiB;",
            ),
            (
                "per app: instances under the limit can sum over it",
                serde_json::json!({"maxMemory": "800M", "per": "app"}),
                vec![
                    web(0, 1.0, 500),
                    measured("worker", 1, "online", 2.0, 400 * MIB),
                ],
                ProbeState::Fail,
                "app total over 2 instance(s): memory 900 MiB over maxMemory 800 MiB",
            ),
            (
                "per app: the sums, within the limits",
                serde_json::json!({"maxCpu": "80%", "maxMemory": "1G", "per": "app"}),
                vec![web(0, 10.5, 300), web(1, 20.0, 300)],
                ProbeState::Pass,
                "app total over 2 instance(s): cpu 30.5%, memory 600 MiB; within maxCpu 80%, maxMemory 1 GiB",
            ),
            (
                "per app: cpu summed over the limit",
                serde_json::json!({"maxCpu": "80%", "per": "app"}),
                vec![web(0, 50.0, 300), web(1, 40.0, 300)],
                ProbeState::Fail,
                "app total over 2 instance(s): cpu 90% over maxCpu 80%",
            ),
            (
                "stopped instances and other apps' processes do not count",
                serde_json::json!({"maxMemory": "800M"}),
                vec![
                    web(0, 1.0, 100),
                    measured("web", 1, "stopped", 0.0, 0),
                    measured("errored-one", 2, "errored", 0.0, 0),
                    measured("someone-else", 3, "online", 99.0, 4096 * MIB),
                ],
                ProbeState::Pass,
                "1 instance(s) within",
            ),
            (
                "nothing online is inconclusive",
                serde_json::json!({"maxMemory": "800M"}),
                vec![
                    measured("web", 0, "errored", 0.0, 0),
                    measured("someone-else", 3, "online", 1.0, MIB),
                ],
                ProbeState::Inconclusive,
                "no online pm2 instance of web, worker",
            ),
            (
                "no instance at all is inconclusive",
                serde_json::json!({"maxCpu": "80%", "per": "app"}),
                vec![],
                ProbeState::Inconclusive,
                "no online pm2 instance of web, worker",
            ),
            (
                "pm2 reporting zeros (it could not measure) is inconclusive, not a pass",
                serde_json::json!({"maxCpu": "80%"}),
                vec![measured("web", 0, "online", 0.0, 0)],
                ProbeState::Inconclusive,
                "pm2 reports no cpu or memory figures for web, worker",
            ),
        ];
        for (what, limits, instances, state, detail) in cases {
            let checks = [resources_check("resources", limits)];
            let results = resources_results(&checks, &processes, &instances);
            assert_eq!(results.len(), 1, "{what}");
            let r = &results[0];
            assert_eq!(r.name, "resources", "{what}");
            assert_eq!(r.state, state, "{what}: {}", r.detail);
            assert!(
                r.detail.starts_with(detail),
                "{what}: {:?} does not start with {detail:?}",
                r.detail
            );
        }
    }

    #[test]
    fn resources_results_skip_other_kinds_and_keep_the_checks_order() {
        let processes: Vec<Process> = vec![
            serde_json::from_value(serde_json::json!({"name": "web", "script": "s.js"})).unwrap(),
        ];
        let http: Check = serde_json::from_value(
            serde_json::json!({"name": "api", "http": {"url": "http://127.0.0.1:1/"}}),
        )
        .unwrap();
        let checks = [
            resources_check("memory", serde_json::json!({"maxMemory": "100M"})),
            http,
            resources_check("cpu", serde_json::json!({"maxCpu": "50%"})),
        ];
        let instances = [measured("web", 0, "online", 75.0, 50 * MIB)];
        let results = resources_results(&checks, &processes, &instances);
        let got: Vec<(&str, ProbeState)> =
            results.iter().map(|r| (r.name.as_str(), r.state)).collect();
        assert_eq!(
            got,
            [("memory", ProbeState::Pass), ("cpu", ProbeState::Fail)]
        );
        assert!(resources_results(&checks[1..2], &processes, &instances).is_empty());
    }

    #[test]
    fn a_spike_of_one_round_is_not_a_regression_but_a_climb_is() {
        // What the monitor does between rollouts: failureThreshold failing rounds in a row.
        let h = health();
        let processes: Vec<Process> = vec![
            serde_json::from_value(serde_json::json!({"name": "web", "script": "s.js"})).unwrap(),
        ];
        let checks = [resources_check(
            "resources",
            serde_json::json!({"maxMemory": "800M"}),
        )];
        let round = |mem_mib: u64| {
            let results = resources_results(
                &checks,
                &processes,
                &[measured("web", 0, "online", 1.0, mem_mib * MIB)],
            );
            combine(Ok(()), &results)
        };
        let regressed = |memory: &[u64]| {
            let mut t = Tally::new();
            memory.iter().any(|m| {
                t.record(&round(*m), false);
                t.failures >= h.failure_threshold
            })
        };
        assert!(!regressed(&[300, 900, 300, 900, 350, 310]), "spikes");
        assert!(regressed(&[300, 500, 700, 850, 900, 950]), "a climb");
    }
}

#[cfg(test)]
mod body_limit_tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server whose reply is `head`, then `mib` MiB of spaces, then `end`; counts the
    /// bytes it managed to send before the client went away (its task ends then).
    async fn serve(
        head: &'static str,
        mib: usize,
        end: &'static str,
    ) -> (String, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/health", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req).await;
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{head}"
            )
            .into_bytes();
            let pad = vec![b' '; 1024 * 1024];
            for i in 0..=mib {
                if s.write_all(&out).await.is_err() {
                    return;
                }
                counter.fetch_add(out.len() as u64, Ordering::SeqCst);
                out = if i + 1 < mib {
                    pad.clone()
                } else {
                    end.as_bytes().to_vec()
                };
            }
        });
        (url, sent, server)
    }

    fn check(url: &str, needle: &str) -> Check {
        serde_json::from_value(serde_json::json!({
            "name": "api",
            "http": {"url": url, "bodyContains": needle},
            "timeout": "20s",
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_huge_reply_is_read_only_up_to_the_limit_and_passes_on_what_it_needs() {
        let (url, sent, server) = serve(r#"{"status":"ok"}"#, 512, "").await;
        let r = probe(&reqwest::Client::new(), &check(&url, r#""status":"ok""#)).await;
        assert_eq!(r.state, ProbeState::Pass, "{}", r.detail);
        // The server stops once the probe has dropped the connection (or sent it all).
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the probe kept the connection open after its answer")
            .unwrap();
        let sent = sent.load(Ordering::SeqCst);
        assert!(
            sent < 64 * 1024 * 1024,
            "the probe downloaded {sent} bytes of a 512 MiB reply"
        );
    }

    #[tokio::test]
    async fn text_past_the_limit_is_not_found_and_the_detail_says_the_reply_was_cut() {
        let (url, _, _) = serve("{", 2, r#""status":"ok"}"#).await;
        let r = probe(&reqwest::Client::new(), &check(&url, r#""status":"ok""#)).await;
        assert_eq!(r.state, ProbeState::Fail);
        assert!(
            r.detail.starts_with(r#"body does not contain "\"status\":\"ok\"" in its first 1 MiB (the rest was not read)"#),
            "{}",
            r.detail
        );
    }
}

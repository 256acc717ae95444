//! The `health` sections: each check's name, kind and time limits, and the rounds
//! (interval, thresholds, deadlines) they must fit in.

use super::*;

pub(super) fn health_checks(c: &mut Checker, app: &App) {
    let mut names = HashSet::new();
    for (i, check) in app.spec.health.checks.iter().enumerate() {
        let at = format!("spec.health.checks[{i}]");
        if !is_dns_label(&check.name) {
            c.fail(
                format!("{at}.name"),
                format!("{:?} must be a short lowercase name", check.name),
            );
        } else if !names.insert(check.name.as_str()) {
            c.fail(
                format!("{at}.name"),
                format!("{:?} is declared twice", check.name),
            );
        }
        check_kind(c, &at, check);
        c.positive(&format!("{at}.timeout"), check.timeout);
        if let Some(max) = check.max_latency {
            c.positive(&format!("{at}.maxLatency"), max);
            if max > check.timeout {
                c.fail(
                    format!("{at}.maxLatency"),
                    format!("{max} is longer than the check's timeout {}", check.timeout),
                );
            }
        }
    }
}

/// What a check probes, by its kind (that it has exactly one is said when it is parsed).
fn check_kind(c: &mut Checker, at: &str, check: &Check) {
    match &check.kind {
        CheckKind::Http(http) => http_check(c, at, http),
        CheckKind::Prometheus(prom) => prometheus_check(c, at, prom),
        CheckKind::Resources(res) => {
            resources_check(c, at, res);
            if check.max_latency.is_some() {
                c.fail(
                    format!("{at}.maxLatency"),
                    "a resources check reads what pm2 reports: it has no latency",
                );
            }
        }
    }
}

fn http_check(c: &mut Checker, at: &str, http: &HttpCheck) {
    c.probe_url(&format!("{at}.http.url"), &http.url);
    if !(100..=599).contains(&http.expect_status) {
        c.fail(
            format!("{at}.http.expectStatus"),
            "must be an HTTP status (100-599)",
        );
    }
}

fn prometheus_check(c: &mut Checker, at: &str, prom: &PrometheusCheck) {
    c.probe_url(&format!("{at}.prometheus.url"), &prom.url);
    if prom.query.trim().is_empty() {
        c.fail(format!("{at}.prometheus.query"), "must not be empty");
    }
    if prom.below.is_none() && prom.above.is_none() {
        c.fail(
            format!("{at}.prometheus"),
            "needs a threshold: below, above or both",
        );
    }
}

fn resources_check(c: &mut Checker, at: &str, res: &ResourcesCheck) {
    if res.max_cpu.is_none() && res.max_memory.is_none() {
        c.fail(
            format!("{at}.resources"),
            "needs a limit: maxCpu, maxMemory or both",
        );
    }
    if let Some(cpu) = res.max_cpu
        && cpu.value() <= 0.0
    {
        c.fail(format!("{at}.resources.maxCpu"), "must be more than 0%");
    }
    if let Some(mem) = res.max_memory
        && mem.bytes() == 0
    {
        c.fail(
            format!("{at}.resources.maxMemory"),
            "must be more than 0 (at least 1K)",
        );
    }
}

/// The rounds: interval, thresholds, and the deadlines they must fit in.
pub(super) fn health_rounds(c: &mut Checker, app: &App) {
    let h = &app.spec.health;
    c.positive("spec.health.interval", h.interval);
    if h.success_threshold < 1 {
        c.fail("spec.health.successThreshold", "must be at least 1");
    }
    if h.failure_threshold < 1 {
        c.fail("spec.health.failureThreshold", "must be at least 1");
    }
    let least = h
        .interval
        .std()
        .saturating_mul(h.success_threshold.saturating_sub(1));
    if h.progress_deadline.std() <= least {
        c.fail(
            "spec.health.progressDeadline",
            format!(
                "{} leaves no time for {} passing rounds {} apart",
                h.progress_deadline, h.success_threshold, h.interval
            ),
        );
    }
    if let Some(grace) = h.startup_grace
        && grace.std() >= h.progress_deadline.std()
    {
        c.fail(
            "spec.health.startupGrace",
            format!(
                "{grace} is not shorter than progressDeadline {}: no round could ever fail",
                h.progress_deadline
            ),
        );
    }
}

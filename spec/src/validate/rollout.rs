//! The `rollout` section: the Prometheus URL (no credentials in it), at least one wave,
//! wave names that are unique labels, counts and percentages of at least one host, only the
//! last wave selecting every host, and time limits above zero.

use super::*;
use crate::rollout::MaxParallel;

/// The most waves a rollout has (a fleet is a canary and a few steps, not one wave a host).
pub const MAX_WAVES: usize = 32;

/// The longest soak: the gate reads every sample of the soak window at each check.
pub const MAX_SOAK: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

pub(super) fn rollout(c: &mut Checker, app: &App) {
    let Some(r) = &app.spec.rollout else { return };
    c.probe_url("spec.rollout.prometheus", &r.prometheus);
    if url_userinfo(&r.prometheus).is_some() {
        c.fail(
            "spec.rollout.prometheus",
            "must not hold credentials (they would show in status and logs); put the controllers and Prometheus on a private network",
        );
    }
    if r.waves.is_empty() {
        c.fail(
            "spec.rollout.waves",
            "needs at least one wave (the canary); hosts no wave selects go after the last one",
        );
    }
    if r.waves.len() > MAX_WAVES {
        c.fail(
            "spec.rollout.waves",
            format!(
                "{} waves are more than {MAX_WAVES}, the most a rollout has",
                r.waves.len()
            ),
        );
    }
    if r.soak.std() > MAX_SOAK {
        c.fail(
            "spec.rollout.soak",
            format!("{} is longer than 6h, the longest soak (the gate reads every sample of the soak at each check)", r.soak),
        );
    }
    if r.fresh.std() > r.soak.std() && !r.soak.std().is_zero() {
        c.fail(
            "spec.rollout.fresh",
            format!(
                "{} (the default is 60s) is longer than the soak ({}): a gap in the samples that long would fit inside it; set fresh to a few scrape intervals, below the soak",
                r.fresh, r.soak
            ),
        );
    }
    let mut names = HashSet::new();
    for (i, w) in r.waves.iter().enumerate() {
        let at = format!("spec.rollout.waves[{i}]");
        if !is_dns_label(&w.name) {
            c.fail(
                format!("{at}.name"),
                format!("{:?} must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric", w.name),
            );
        } else if !names.insert(w.name.as_str()) {
            c.fail(
                format!("{at}.name"),
                format!("{:?} names two waves", w.name),
            );
        }
        let every = w.hosts.names.is_empty() && w.hosts.labels.is_empty();
        if every && i + 1 < r.waves.len() {
            c.fail(
                format!("{at}.hosts"),
                "selects every host, so the waves after it would have none; give it names or labels, or make it the last wave",
            );
        }
        match w.max_parallel {
            MaxParallel::Count(0) => c.fail(format!("{at}.maxParallel"), "must be 1 or more"),
            MaxParallel::Percent(p) if p.value() <= 0.0 || p.value() > 100.0 => c.fail(
                format!("{at}.maxParallel"),
                format!("{p} must be above 0% and at most 100%"),
            ),
            _ => {}
        }
    }
    c.positive("spec.rollout.fresh", r.fresh);
    c.positive("spec.rollout.alertAfter", r.alert_after);
    c.positive("spec.rollout.timeout", r.timeout);
}

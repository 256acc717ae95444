//! Prometheus metrics the controller exports on `/metrics`: a small registry of counters
//! and gauges keyed by name and labels, rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Family {
    help: &'static str,
    kind: &'static str,
    series: BTreeMap<Labels, f64>,
}

/// Every metric, with its help text; the names are the contract dashboards and alert
/// rules rely on.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "shipshape_build_info",
        "gauge",
        "Always 1; the version label says which shipshape runs, the host label on which host (--hostname).",
    ),
    (
        "shipshape_reconcile_total",
        "counter",
        "Reconcile passes per app, by result (ready, not_ready, invalid, error).",
    ),
    (
        "shipshape_reconcile_duration_seconds_sum",
        "counter",
        "Total time spent in reconcile passes per app.",
    ),
    (
        "shipshape_reconcile_duration_seconds_count",
        "counter",
        "Reconcile passes per app (pairs with _sum).",
    ),
    (
        "shipshape_rollouts_total",
        "counter",
        "Rollouts per app, by outcome (healthy, failed, reverted, superseded).",
    ),
    (
        "shipshape_reverts_total",
        "counter",
        "Automatic reverts per app, by result (healthy, failed).",
    ),
    (
        "shipshape_health_check_up",
        "gauge",
        "1 when the check passed in the last round, 0 when it failed; absent when inconclusive.",
    ),
    (
        "shipshape_health_check_latency_seconds",
        "gauge",
        "How long the check took in the last round.",
    ),
    (
        "shipshape_app_info",
        "gauge",
        "Always 1 per app, one series replaced as the app changes: host, phase, live_revision, live_commit (the live app commit), desired_commit (the app commit at config_commit, the config commit last read), pinned, reverted (the desired config commit was rolled back on this host), wave (the host's wave, only under spec.rollout).",
    ),
    (
        "shipshape_host_label",
        "gauge",
        "Always 1, one series per label the controller was given (--label key=value): host, key, value. Waves select hosts by them.",
    ),
    (
        "shipshape_app_wave_held_seconds",
        "gauge",
        "How long the wave gate has held the desired app commit back, while it does: wave, cause (waiting, busy, noData, failed).",
    ),
    (
        "shipshape_app_wave_hold_bound_seconds",
        "gauge",
        "The app's spec.rollout.alertAfter: a wave held longer is alerted.",
    ),
    (
        "shipshape_app_pinned_since_timestamp_seconds",
        "gauge",
        "When the app was pinned (absent when not pinned).",
    ),
    (
        "shipshape_app_degraded",
        "gauge",
        "1 when the app is Degraded.",
    ),
    (
        "shipshape_source_fetch_failures",
        "gauge",
        "Failed fetches of the config repo in a row (0 after a success).",
    ),
    (
        "shipshape_source_last_success_timestamp_seconds",
        "gauge",
        "When the config repo was last read successfully.",
    ),
    (
        "shipshape_api_listening",
        "gauge",
        "1 while the API's TCP listener is up on the address label, 0 while its bind fails (the controller retries it with back-off and keeps reconciling).",
    ),
    (
        "shipshape_api_connections",
        "gauge",
        "Connections the API holds now, by listener (tcp, socket).",
    ),
    (
        "shipshape_api_refused_total",
        "counter",
        "API requests refused at the edge, by listener and reason (host, origin, busy, subscribers, body_too_large, body_timeout, body_unreadable).",
    ),
    (
        "shipshape_pm2_socket_fallbacks_total",
        "counter",
        "Process-list reads that fell back from pm2's daemon socket to `pm2 jlist`, by reason (missing, refused, timeout, io, unexpected, remote).",
    ),
];

/// The registry.
#[derive(Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn meta(name: &'static str) -> (&'static str, &'static str) {
    METRICS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, help)| (*kind, *help))
        .unwrap_or(("untyped", ""))
}

impl Metrics {
    /// A registry with `shipshape_build_info` set.
    pub fn new() -> Metrics {
        let m = Metrics::default();
        m.set(
            "shipshape_build_info",
            vec![("version", env!("CARGO_PKG_VERSION").to_string())],
            1.0,
        );
        m
    }

    /// Say which host this registry describes: `shipshape_build_info` gains a `host`
    /// label, so a fleet view can name a controller whose scrapes fail (its other series
    /// are gone then; the last `build_info` seen still says whose they were).
    pub fn identify(&self, host: &str) {
        self.with("shipshape_build_info", |f| f.series.clear());
        self.set(
            "shipshape_build_info",
            vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("host", host.to_string()),
            ],
            1.0,
        );
    }

    /// Say which labels this host has (`--label`): one `shipshape_host_label` series each,
    /// so the waves of another host's gate can select this one.
    pub fn label_host(&self, host: &str, labels: &std::collections::BTreeMap<String, String>) {
        self.with("shipshape_host_label", |f| f.series.clear());
        for (k, v) in labels {
            self.set(
                "shipshape_host_label",
                vec![
                    ("host", host.to_string()),
                    ("key", k.clone()),
                    ("value", v.clone()),
                ],
                1.0,
            );
        }
    }

    fn with<F: FnOnce(&mut Family)>(&self, name: &'static str, f: F) {
        // Callers pass labels in any order; series are keyed with them sorted.
        let mut families = self.families.lock().expect("metrics lock");
        let fam = families.entry(name).or_insert_with(|| {
            let (kind, help) = meta(name);
            Family {
                help,
                kind,
                series: BTreeMap::new(),
            }
        });
        f(fam);
    }

    /// Add `by` to a counter.
    pub fn inc(&self, name: &'static str, mut labels: Labels, by: f64) {
        labels.sort();
        self.with(name, |f| *f.series.entry(labels).or_insert(0.0) += by);
    }

    /// Set a gauge.
    pub fn set(&self, name: &'static str, mut labels: Labels, value: f64) {
        labels.sort();
        self.with(name, |f| {
            f.series.insert(labels, value);
        });
    }

    /// Remove every series of `name` whose `app` label is `app`.
    pub fn clear_app(&self, name: &'static str, app: &str) {
        self.with(name, |f| {
            f.series
                .retain(|labels, _| !labels.iter().any(|(k, v)| *k == "app" && v == app))
        });
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let families = self.families.lock().expect("metrics lock");
        let mut out = String::new();
        for (name, fam) in families.iter() {
            if fam.series.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
            for (labels, value) in &fam.series {
                let rendered: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                if rendered.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{}}} {value}", rendered.join(","));
                }
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_escaping_render_in_text_format() {
        let m = Metrics::new();
        m.inc(
            "shipshape_reconcile_total",
            vec![("app", "demo".into()), ("result", "ready".into())],
            1.0,
        );
        m.inc(
            "shipshape_reconcile_total",
            vec![("app", "demo".into()), ("result", "ready".into())],
            1.0,
        );
        m.set(
            "shipshape_app_info",
            vec![("app", "demo".into()), ("phase", "Ready".into())],
            1.0,
        );
        m.set(
            "shipshape_app_info",
            vec![("app", "x\"y".into()), ("phase", "Ready".into())],
            1.0,
        );
        m.clear_app("shipshape_app_info", "demo");
        let text = m.render();
        assert!(text.contains("# TYPE shipshape_reconcile_total counter"));
        assert!(text.contains("shipshape_reconcile_total{app=\"demo\",result=\"ready\"} 2"));
        assert!(!text.contains("shipshape_app_info{app=\"demo\""));
        assert!(text.contains("shipshape_app_info{app=\"x\\\"y\",phase=\"Ready\"} 1"));
        assert!(text.contains("shipshape_build_info{version="));
        m.identify("web-1");
        let text = m.render();
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("shipshape_build_info{"))
                .collect::<Vec<_>>(),
            [format!(
                "shipshape_build_info{{host=\"web-1\",version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )]
        );
    }
}

//! `shipshape fleet`: app × host across every controller, read from the Prometheus that
//! scrapes their `/metrics` (no server of our own). It owns the instant queries it sends
//! (`/api/v1/query`, each with a timeout), the pure assembly of their samples into one row
//! per (app, host) — live commit, phase, pin, revert, and whether the host differs from its
//! desired commit and from the fleet's majority — and the table and JSON renderings.
//!
//! What it reads: `shipshape_app_info` (one series per app and controller, labels `host`,
//! `phase`, `live_commit`, `desired_commit`, `config_commit`, `live_revision`, `pinned`,
//! `reverted`), `shipshape_build_info{host}` over the look-back window (which targets are
//! controllers, and their names once their series are gone), and Prometheus's own `up`
//! (a controller whose scrapes fail is shown as unreachable, not as its last state).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::Format;
use crate::plan::short_sha;
use crate::prometheus::{QueryError, error_chain, instant_query};

/// What `shipshape fleet` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Prometheus base URL (`http://prometheus:9090`).
    pub prometheus: String,
    /// Only this app.
    pub app: Option<String>,
    /// Table or JSON.
    pub output: Format,
    /// How far back a controller counts as part of the fleet (its `build_info` last seen).
    pub lookback: Duration,
    /// Time limit for each query.
    pub timeout: Duration,
}

/// Why the fleet could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The query did not get an answer (connection refused, timeout, DNS).
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable {
        /// The Prometheus URL.
        url: String,
        /// What happened (the transport error cut to it; the whole chain is logged at
        /// debug level).
        reason: String,
    },
    /// Prometheus answered, but not with a result.
    #[error("Prometheus at {url} answered {status} to `{query}`: {message}")]
    Rejected {
        /// The Prometheus URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The query.
        query: String,
        /// Its error message, or the body's start.
        message: String,
    },
    /// Prometheus has never seen a controller.
    #[error(
        "no shipshape metrics at {url} — is it scraping the controllers' /metrics? (looked back {lookback})"
    )]
    NoMetrics {
        /// The Prometheus URL.
        url: String,
        /// The look-back window, as given.
        lookback: String,
    },
    /// The app asked for is on no controller.
    #[error("no app {app:?} in the shipshape metrics at {url} (apps: {known})")]
    NoSuchApp {
        /// The app asked for.
        app: String,
        /// The Prometheus URL.
        url: String,
        /// The apps there are.
        known: String,
    },
}

/// One series of an instant query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels (`__name__` included when Prometheus sends it).
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> &str {
        self.labels.get(key).map(String::as_str).unwrap_or("")
    }
    fn target(&self) -> (String, String) {
        (
            self.label("job").to_string(),
            self.label("instance").to_string(),
        )
    }
}

/// Whether a controller's latest scrape worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// Its last scrape succeeded: the row is its current state.
    Up,
    /// Its scrapes fail (`up` = 0): its state is unknown, not shown.
    Unreachable,
}

/// One app on one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRow {
    /// The host (`--hostname` of its controller; the scrape instance if it has none).
    pub host: String,
    /// The scrape target (`job`/`instance`).
    pub instance: String,
    /// The host's wave under `spec.rollout` (None without one, or unreachable).
    pub wave: Option<String>,
    /// Reachable or not.
    pub reach: Reach,
    /// Its phase (None when unreachable).
    pub phase: Option<String>,
    /// The live app commit (None when nothing is live, or unreachable).
    pub live_commit: Option<String>,
    /// The live revision number (per host).
    pub live_revision: Option<u64>,
    /// The app commit the host is asked to run.
    pub desired_commit: Option<String>,
    /// The config commit the host last read.
    pub config_commit: Option<String>,
    /// Held by a pin.
    pub pinned: bool,
    /// Went back from its desired config commit.
    pub reverted: bool,
    /// Reachable and its live commit is not its desired one.
    pub differs_from_desired: bool,
    /// Reachable and its live commit is not the one most reachable hosts run (false when
    /// no commit is live on more than half of them).
    pub differs_from_majority: bool,
    /// Reachable and the config commit it last read is not the one more than half of the
    /// reachable hosts read (a host lagging behind the config repo, or ahead of it).
    pub differs_from_majority_config: bool,
}

/// One app across the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    /// The app.
    pub app: String,
    /// The desired app commit most reachable hosts report.
    pub desired_commit: Option<String>,
    /// The live commit of more than half of the reachable hosts, if one is.
    pub majority_commit: Option<String>,
    /// One row per host, by host name.
    pub hosts: Vec<HostRow>,
}

impl AppView {
    /// Whether every host is reachable, has read the config commit most hosts read, and
    /// runs its desired commit.
    pub fn converged(&self) -> bool {
        self.hosts.iter().all(|h| {
            h.reach == Reach::Up && !h.differs_from_desired && !h.differs_from_majority_config
        })
    }
}

/// The controllers Prometheus knows: (job, instance) → (host name, up).
pub type Targets = BTreeMap<(String, String), (String, bool)>;

/// Which targets are controllers and whether they are up: `build` is
/// `max by (job, instance, host) (last_over_time(shipshape_build_info[…]))`, `up` is
/// Prometheus's `up` for them. A target with no `up` sample (no longer scraped) is left out.
pub fn targets(build: &[Sample], up: &[Sample]) -> Targets {
    let mut out = Targets::new();
    for b in build {
        let Some(u) = up.iter().find(|u| u.target() == b.target()) else {
            continue;
        };
        let host = match b.label("host") {
            "" => b.label("instance").to_string(),
            h => h.to_string(),
        };
        // A controller renamed within the window has two: keep one name, deterministically.
        let entry = out
            .entry(b.target())
            .or_insert((host.clone(), u.value >= 1.0));
        if host > entry.0 {
            entry.0 = host;
        }
    }
    out
}

/// Assemble the fleet: `info` is the instant `shipshape_app_info` (the state of the apps on
/// reachable controllers), `seen` is `count by (job, instance, app)` of it over the window
/// (which apps an unreachable controller had). Rows of a target whose `up` is 0 are shown
/// as unreachable whatever `info` holds.
pub fn assemble(info: &[Sample], targets: &Targets, seen: &[Sample]) -> Vec<AppView> {
    let mut apps: BTreeMap<String, Vec<HostRow>> = BTreeMap::new();
    for s in info {
        if targets.get(&s.target()).is_some_and(|(_, up)| !up) {
            continue;
        }
        apps.entry(s.label("app").to_string())
            .or_default()
            .push(HostRow::reported(s));
    }
    for s in seen {
        let target = s.target();
        let Some((host, false)) = targets.get(&target) else {
            continue;
        };
        let rows = apps.entry(s.label("app").to_string()).or_default();
        let instance = format!("{}/{}", target.0, target.1);
        if rows.iter().any(|r| r.instance == instance) {
            continue;
        }
        rows.push(HostRow::unreachable(host.clone(), instance));
    }
    apps.into_iter()
        .map(|(app, hosts)| AppView::compare(app, hosts))
        .collect()
}

impl HostRow {
    /// The row a reachable controller reports in its `shipshape_app_info` sample `s` (not
    /// yet compared with the other hosts).
    fn reported(s: &Sample) -> HostRow {
        let none_if_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let target = s.target();
        let host = match s.label("host") {
            "" => target.1.clone(),
            h => h.to_string(),
        };
        HostRow {
            host,
            instance: format!("{}/{}", target.0, target.1),
            wave: none_if_empty(s.label("wave")),
            reach: Reach::Up,
            phase: none_if_empty(s.label("phase")),
            live_commit: none_if_empty(s.label("live_commit")),
            live_revision: s.label("live_revision").parse().ok(),
            desired_commit: none_if_empty(s.label("desired_commit")),
            config_commit: none_if_empty(s.label("config_commit")),
            pinned: s.label("pinned") == "true",
            reverted: s.label("reverted") == "true",
            differs_from_desired: false,
            differs_from_majority: false,
            differs_from_majority_config: false,
        }
    }

    /// The row of a controller whose scrapes fail: its state unknown.
    fn unreachable(host: String, instance: String) -> HostRow {
        HostRow {
            host,
            instance,
            wave: None,
            reach: Reach::Unreachable,
            phase: None,
            live_commit: None,
            live_revision: None,
            desired_commit: None,
            config_commit: None,
            pinned: false,
            reverted: false,
            differs_from_desired: false,
            differs_from_majority: false,
            differs_from_majority_config: false,
        }
    }
}

impl AppView {
    /// `app` across `hosts`, sorted by host: the majorities and the desired commit among
    /// the reachable ones, and how each reachable host differs from them.
    fn compare(app: String, mut hosts: Vec<HostRow>) -> AppView {
        hosts.sort_by(|a, b| (&a.host, &a.instance).cmp(&(&b.host, &b.instance)));
        let up: Vec<&HostRow> = hosts.iter().filter(|h| h.reach == Reach::Up).collect();
        let majority_commit = majority(up.iter().map(|h| h.live_commit.clone()), up.len());
        let majority_config = majority(up.iter().map(|h| h.config_commit.clone()), up.len());
        let desired_commit = most_common(up.iter().map(|h| h.desired_commit.clone()));
        for h in hosts.iter_mut().filter(|h| h.reach == Reach::Up) {
            h.differs_from_desired = h.live_commit != h.desired_commit;
            h.differs_from_majority = majority_commit
                .as_ref()
                .is_some_and(|m| h.live_commit.as_ref() != Some(m));
            h.differs_from_majority_config = majority_config
                .as_ref()
                .is_some_and(|m| h.config_commit.as_ref() != Some(m));
        }
        AppView {
            app,
            desired_commit,
            majority_commit,
            hosts,
        }
    }
}

/// The value more than half of `of` share, if one does.
fn majority(values: impl Iterator<Item = Option<String>>, of: usize) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in values.flatten() {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .into_iter()
        .find(|(_, n)| *n * 2 > of)
        .map(|(v, _)| v)
}

/// The most frequent value (ties: the smallest, so the answer is stable).
fn most_common(values: impl Iterator<Item = Option<String>>) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in values.flatten() {
        *counts.entry(v).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(v, _)| v)
}

/// The table's columns.
const COLUMNS: [&str; 10] = [
    "APP", "HOST", "PHASE", "LIVE", "REV", "DESIRED", "CONFIG", "PINNED", "REVERTED", "DIFFERS",
];

/// The table: one line per (app, host), then one summary line per app.
pub fn render_table(apps: &[AppView]) -> String {
    let mut rows: Vec<Vec<String>> = vec![COLUMNS.map(str::to_string).to_vec()];
    for a in apps {
        rows.extend(a.hosts.iter().map(|h| host_cells(&a.app, h).to_vec()));
    }
    // A WAVE column after HOST when some host rolls out in waves (`spec.rollout`).
    let waves: Vec<Option<String>> = apps
        .iter()
        .flat_map(|a| a.hosts.iter().map(|h| h.wave.clone()))
        .collect();
    if waves.iter().any(Option::is_some) {
        rows[0].insert(2, "WAVE".into());
        for (r, w) in rows.iter_mut().skip(1).zip(&waves) {
            r.insert(2, w.clone().unwrap_or_else(|| "-".into()));
        }
    }
    let mut out = aligned(&rows);
    for a in apps {
        out.push_str(&summary_line(a));
        out.push('\n');
    }
    out
}

/// A commit, shortened, or `-`.
fn short_or_dash(c: &Option<String>) -> String {
    c.as_deref().map(short_sha).unwrap_or_else(|| "-".into())
}

/// The cells of `h`'s line (one per [`COLUMNS`]).
fn host_cells(app: &str, h: &HostRow) -> [String; 10] {
    [
        app.to_string(),
        h.host.clone(),
        match h.reach {
            Reach::Up => h.phase.clone().unwrap_or_else(|| "-".into()),
            Reach::Unreachable => "Unreachable".into(),
        },
        short_or_dash(&h.live_commit),
        h.live_revision
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into()),
        short_or_dash(&h.desired_commit),
        short_or_dash(&h.config_commit),
        if h.pinned { "pinned" } else { "-" }.into(),
        if h.reverted { "reverted" } else { "-" }.into(),
        differs(h),
    ]
}

/// The DIFFERS cell: what a reachable host differs from (desired, majority, config), `-`
/// for nothing; unknown for an unreachable one.
fn differs(h: &HostRow) -> String {
    match h.reach {
        Reach::Unreachable => "unknown: scrapes failing".to_string(),
        Reach::Up => {
            let mut d = Vec::new();
            if h.differs_from_desired {
                d.push("desired");
            }
            if h.differs_from_majority {
                d.push("majority");
            }
            if h.differs_from_majority_config {
                d.push("config");
            }
            if d.is_empty() {
                "-".into()
            } else {
                d.join(", ")
            }
        }
    }
}

/// `rows` as lines, each column as wide as its widest cell, two spaces apart.
fn aligned(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The summary of one app: how many hosts run the desired commit, the majority live
/// commit, and how many hosts are unreachable.
fn summary_line(a: &AppView) -> String {
    let up = a.hosts.iter().filter(|h| h.reach == Reach::Up).count();
    let on_desired = a
        .hosts
        .iter()
        .filter(|h| h.reach == Reach::Up && !h.differs_from_desired)
        .count();
    let mut line = format!(
        "{}: {on_desired} of {} hosts live on the desired commit {}",
        a.app,
        a.hosts.len(),
        short_or_dash(&a.desired_commit)
    );
    match &a.majority_commit {
        Some(m) => {
            let n = a
                .hosts
                .iter()
                .filter(|h| h.live_commit.as_ref() == Some(m))
                .count();
            line.push_str(&format!("; majority live {} ({n} of {up})", short_sha(m)));
        }
        None => line.push_str("; no majority live commit"),
    }
    let unreachable = a.hosts.len() - up;
    if unreachable > 0 {
        line.push_str(&format!("; {unreachable} unreachable"));
    }
    line
}

/// One instant query: the vector's samples.
///
/// # Errors
/// [`FleetError::Unreachable`] without an answer, [`FleetError::Rejected`] for an error
/// status, an error result or a body that is not a vector.
pub async fn query(
    client: &reqwest::Client,
    base: &str,
    promql: &str,
    timeout: Duration,
) -> Result<Vec<Sample>, FleetError> {
    let rejected = |status: u16, message: String| FleetError::Rejected {
        url: base.to_string(),
        status,
        query: promql.to_string(),
        message,
    };
    let data = instant_query(client, base, promql, timeout)
        .await
        .map_err(|e| match e {
            QueryError::Unreachable(chain) => {
                tracing::debug!(url = %crate::redact::credentials(base), "prometheus unreachable: {chain}");
                FleetError::Unreachable {
                    url: base.to_string(),
                    reason: crate::health::words::cut_chain(base, &chain),
                }
            }
            QueryError::Unreadable { status, detail } => rejected(status, detail),
            QueryError::Rejected { status, message } => rejected(status, message),
        })?;
    if data["resultType"] != "vector" {
        return Err(rejected(
            200,
            format!("expected a vector, got {}", data["resultType"]),
        ));
    }
    let mut out = Vec::new();
    for r in data["result"].as_array().into_iter().flatten() {
        let labels = r["metric"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let value = r["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// Ask Prometheus and assemble the fleet (only `opts.app`'s rows when given).
///
/// # Errors
/// See [`FleetError`]: Prometheus unreachable or refusing, no controller ever scraped, no
/// such app.
pub async fn read(opts: &Options) -> Result<Vec<AppView>, FleetError> {
    let client = reqwest::Client::builder()
        .timeout(opts.timeout)
        .build()
        .map_err(|e| FleetError::Unreachable {
            url: opts.prometheus.clone(),
            reason: error_chain(&e),
        })?;
    let base = opts.prometheus.as_str();
    let window = format!("{}s", opts.lookback.as_secs().max(1));
    let build_q =
        format!("max by (job, instance, host) (last_over_time(shipshape_build_info[{window}]))");
    let up_q = format!("up and on (job, instance) ({build_q})");
    let (info, build, up) = tokio::try_join!(
        query(&client, base, "shipshape_app_info", opts.timeout),
        query(&client, base, &build_q, opts.timeout),
        query(&client, base, &up_q, opts.timeout),
    )?;
    if info.is_empty() && build.is_empty() {
        return Err(FleetError::NoMetrics {
            url: base.to_string(),
            lookback: window,
        });
    }
    let targets = targets(&build, &up);
    // Which apps the unreachable controllers had: only asked when one is.
    let seen = if targets.values().any(|(_, up)| !up) {
        let q =
            format!("count by (job, instance, app) (last_over_time(shipshape_app_info[{window}]))");
        query(&client, base, &q, opts.timeout).await?
    } else {
        Vec::new()
    };
    let mut apps = assemble(&info, &targets, &seen);
    if let Some(only) = &opts.app {
        let known: Vec<String> = apps.iter().map(|a| a.app.clone()).collect();
        apps.retain(|a| &a.app == only);
        if apps.is_empty() {
            return Err(FleetError::NoSuchApp {
                app: only.clone(),
                url: base.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        }
    }
    Ok(apps)
}

/// `shipshape fleet`: print the fleet and return the exit code: 0 when every app is
/// [converged](AppView::converged), 2 when one is not, 1 on an error.
///
/// # Errors
/// When the runtime cannot start.
pub fn fleet(opts: &Options) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let apps = match rt.block_on(read(opts)) {
        Ok(apps) => apps,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    match opts.output {
        Format::Table => print!("{}", render_table(&apps)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "apps": apps })).expect("json")
        ),
    }
    Ok(if apps.iter().all(AppView::converged) {
        0
    } else {
        2
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn info(
        instance: &str,
        host: &str,
        live: &str,
        desired: &str,
        extra: &[(&str, &str)],
    ) -> Sample {
        let mut labels = vec![
            ("job", "shipshape"),
            ("instance", instance),
            ("app", "shop"),
            ("host", host),
            ("phase", "Ready"),
            ("live_commit", live),
            ("live_revision", "1"),
            ("desired_commit", desired),
            ("config_commit", "c1"),
            ("pinned", "false"),
            ("reverted", "false"),
        ];
        for (k, v) in extra {
            labels.retain(|(key, _)| key != k);
            labels.push((k, v));
        }
        sample(&labels, 1.0)
    }

    fn target(instance: &str, host: &str, up: f64) -> (Sample, Sample) {
        (
            sample(
                &[("job", "shipshape"), ("instance", instance), ("host", host)],
                1.0,
            ),
            sample(&[("job", "shipshape"), ("instance", instance)], up),
        )
    }

    fn fleet_of(
        targets_up: &[(&str, &str, f64)],
        info: &[Sample],
        seen: &[Sample],
    ) -> Vec<AppView> {
        let (build, up): (Vec<_>, Vec<_>) =
            targets_up.iter().map(|(i, h, u)| target(i, h, *u)).unzip();
        assemble(info, &targets(&build, &up), seen)
    }

    #[test]
    fn hosts_off_their_desired_commit_and_off_the_majority_are_marked() {
        let apps = fleet_of(
            &[
                ("a:1", "web-1", 1.0),
                ("a:2", "web-2", 1.0),
                ("a:3", "web-3", 1.0),
            ],
            &[
                info("a:1", "web-1", "new", "new", &[]),
                info("a:2", "web-2", "old", "new", &[("pinned", "true")]),
                info(
                    "a:3",
                    "web-3",
                    "old",
                    "new",
                    &[("reverted", "true"), ("phase", "Failed")],
                ),
            ],
            &[],
        );
        assert_eq!(apps.len(), 1);
        let a = &apps[0];
        assert_eq!(a.desired_commit.as_deref(), Some("new"));
        assert_eq!(a.majority_commit.as_deref(), Some("old"));
        let marks: Vec<(&str, bool, bool, bool, bool)> = a
            .hosts
            .iter()
            .map(|h| {
                (
                    h.host.as_str(),
                    h.differs_from_desired,
                    h.differs_from_majority,
                    h.pinned,
                    h.reverted,
                )
            })
            .collect();
        assert_eq!(
            marks,
            [
                ("web-1", false, true, false, false),
                ("web-2", true, false, true, false),
                ("web-3", true, false, false, true),
            ]
        );
        assert!(!a.converged());
        let table = render_table(&apps);
        assert!(
            table.contains(
                "shop: 1 of 3 hosts live on the desired commit new; majority live old (2 of 3)"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_controller_whose_scrapes_fail_is_unreachable_not_its_last_state() {
        // web-2's last series are still in `info` (as if not yet stale): `up` = 0 wins.
        let apps = fleet_of(
            &[("a:1", "web-1", 1.0), ("a:2", "web-2", 0.0)],
            &[
                info("a:1", "web-1", "new", "new", &[]),
                info("a:2", "web-2", "old", "new", &[]),
            ],
            &[
                sample(
                    &[("job", "shipshape"), ("instance", "a:2"), ("app", "shop")],
                    1.0,
                ),
                sample(
                    &[("job", "shipshape"), ("instance", "a:1"), ("app", "shop")],
                    1.0,
                ),
            ],
        );
        let hosts = &apps[0].hosts;
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[1].host, "web-2");
        assert_eq!(hosts[1].reach, Reach::Unreachable);
        assert_eq!(hosts[1].live_commit, None);
        assert_eq!(hosts[0].reach, Reach::Up);
        // One reachable host of one: it is the majority, on its desired commit.
        assert_eq!(apps[0].majority_commit.as_deref(), Some("new"));
        assert!(!apps[0].converged(), "an unreachable host is not converged");
        let table = render_table(&apps);
        assert!(table.contains("Unreachable"), "{table}");
        assert!(table.contains("; 1 unreachable"), "{table}");
    }

    #[test]
    fn no_majority_among_an_even_split_and_a_converged_fleet() {
        let split = fleet_of(
            &[("a:1", "web-1", 1.0), ("a:2", "web-2", 1.0)],
            &[
                info("a:1", "web-1", "x", "x", &[]),
                info("a:2", "web-2", "y", "y", &[]),
            ],
            &[],
        );
        assert_eq!(split[0].majority_commit, None);
        assert!(split[0].hosts.iter().all(|h| !h.differs_from_majority));
        assert!(split[0].converged());
        assert!(render_table(&split).contains("no majority live commit"));
    }

    #[test]
    fn a_host_that_has_not_read_the_fleets_config_commit_is_marked_though_live_on_its_desired() {
        let apps = fleet_of(
            &[
                ("a:1", "web-1", 1.0),
                ("a:2", "web-2", 1.0),
                ("a:3", "web-3", 1.0),
            ],
            &[
                info("a:1", "web-1", "new", "new", &[("config_commit", "c2")]),
                info("a:2", "web-2", "new", "new", &[("config_commit", "c2")]),
                info("a:3", "web-3", "old", "old", &[("config_commit", "c1")]),
            ],
            &[],
        );
        let web3 = &apps[0].hosts[2];
        assert!(!web3.differs_from_desired);
        assert!(web3.differs_from_majority && web3.differs_from_majority_config);
        assert!(!apps[0].hosts[0].differs_from_majority_config);
        assert!(
            !apps[0].converged(),
            "a host on another config commit is not converged"
        );
        let table = render_table(&apps);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("shop  web-3") && l.ends_with("majority, config")),
            "{table}"
        );
    }

    #[test]
    fn nothing_live_differs_from_a_desired_commit() {
        let apps = fleet_of(
            &[("a:1", "web-1", 1.0)],
            &[info("a:1", "web-1", "", "new", &[("phase", "Progressing")])],
            &[],
        );
        assert_eq!(apps[0].hosts[0].live_commit, None);
        assert!(apps[0].hosts[0].differs_from_desired);
    }
}

//! What the wave gate asks the fleet's Prometheus: which hosts ran the app in the last
//! [`LOOKBACK`] and their labels (`shipshape_host_label`), and every raw
//! `shipshape_app_info` sample of the app over the soak window; and Prometheus's own now
//! (the evaluation time of its answer), so samples are judged on its clock. Any error is
//! [`Seen::Unreachable`]: the gate then holds.

use std::collections::BTreeMap;
use std::time::Duration;

use shipshape_spec::rollout::Rollout;

use super::{HostSeen, Sample, Seen};
use crate::prometheus::{QueryError, instant_query};

/// How long ago a host may last have reported the app and still count as one of its
/// wave's hosts (so a host that stopped answering holds the later waves, and one retired
/// for longer drops out).
pub const LOOKBACK: Duration = Duration::from_secs(3600);

/// `chain` without reqwest's ` for url (…)`: the URL is said once, without its query.
fn without_url(chain: &str) -> String {
    match chain.find(" for url (") {
        Some(start) => match chain[start..].find("): ") {
            Some(end) => format!("{}{}", &chain[..start], &chain[start + end + 1..]),
            None => chain[..start].to_string(),
        },
        None => chain.to_string(),
    }
}

/// A query's error in words.
fn words(base: &str, e: QueryError) -> String {
    match e {
        QueryError::Unreachable(chain) => {
            format!("cannot reach Prometheus at {base}: {}", without_url(&chain))
        }
        QueryError::Unreadable { status, detail } => {
            format!("Prometheus at {base} answered {status}, not with a result: {detail}")
        }
        QueryError::Rejected { status, message } => {
            format!("Prometheus at {base} refused the query ({status}): {message}")
        }
    }
}

/// The `result` array of a query's `data`.
fn results(data: &serde_json::Value) -> &[serde_json::Value] {
    data["result"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A label of a result's metric.
fn label<'a>(r: &'a serde_json::Value, name: &str) -> &'a str {
    r["metric"][name].as_str().unwrap_or("")
}

/// A label value as PromQL's string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// What Prometheus said, and the instant it said it at (its own clock: the evaluation time
/// of its answer; this host's clock when the answer has no sample to tell it by).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The hosts, or why there are none.
    pub seen: Seen,
    /// Now, on Prometheus's time line (seconds since the epoch).
    pub now: f64,
}

/// Ask `rollout.prometheus` about `app`; `local_now` is this host's clock, used only when
/// Prometheus's answer does not say its own.
pub async fn observe(
    client: &reqwest::Client,
    rollout: &Rollout,
    app: &str,
    local_now: f64,
) -> Observed {
    let base = rollout.prometheus.as_str();
    let timeout = rollout.timeout.std();
    let lookback = format!("{}s", LOOKBACK.as_secs());
    let window = (rollout.soak.std() + rollout.fresh.std()).as_secs().max(1);
    let app = quoted(app);
    let hosts_q =
        format!("max by (host) (last_over_time(shipshape_app_info{{app={app}}}[{lookback}]))");
    let labels_q =
        format!("max by (host, key, value) (last_over_time(shipshape_host_label[{lookback}]))");
    let samples_q = format!("shipshape_app_info{{app={app}}}[{window}s]");
    let ask = |q: String| async move { instant_query(client, base, &q, timeout).await };
    let (hosts, labels, samples) =
        match tokio::try_join!(ask(hosts_q), ask(labels_q), ask(samples_q)) {
            Ok(x) => x,
            Err(e) => {
                return Observed {
                    seen: Seen::Unreachable(words(base, e)),
                    now: local_now,
                };
            }
        };
    // An instant vector's samples carry the instant it was evaluated at.
    let now = results(&hosts)
        .first()
        .and_then(|r| r["value"][0].as_f64())
        .unwrap_or(local_now);
    Observed {
        seen: Seen::Hosts(assemble(&hosts, &labels, &samples)),
        now,
    }
}

/// The hosts of the answers, each with its labels and its samples oldest first. Pure.
pub fn assemble(
    hosts: &serde_json::Value,
    labels: &serde_json::Value,
    samples: &serde_json::Value,
) -> Vec<HostSeen> {
    let mut out: BTreeMap<String, HostSeen> = BTreeMap::new();
    for r in results(hosts) {
        let name = label(r, "host");
        if !name.is_empty() {
            out.insert(
                name.to_string(),
                HostSeen {
                    name: name.to_string(),
                    ..HostSeen::default()
                },
            );
        }
    }
    for r in results(labels) {
        if let Some(h) = out.get_mut(label(r, "host")) {
            h.labels
                .insert(label(r, "key").to_string(), label(r, "value").to_string());
        }
    }
    for r in results(samples) {
        let Some(h) = out.get_mut(label(r, "host")) else {
            continue;
        };
        let values = r["values"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for v in values {
            let Some(at) = v[0].as_f64() else { continue };
            h.samples.push(Sample {
                at,
                phase: label(r, "phase").to_string(),
                live: label(r, "live_commit").to_string(),
                desired: label(r, "desired_commit").to_string(),
                reverted: label(r, "reverted") == "true",
                pinned: label(r, "pinned") == "true",
            });
        }
    }
    for h in out.values_mut() {
        h.samples.sort_by(|a, b| a.at.total_cmp(&b.at));
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answers_become_hosts_with_labels_and_samples_oldest_first() {
        let hosts = serde_json::json!({"result": [
            {"metric": {"host": "web-1"}, "value": [10.0, "1"]},
            {"metric": {"host": "web-2"}, "value": [10.0, "1"]},
            {"metric": {"host": "web-3"}, "value": [10.0, "1"]},
        ]});
        let labels = serde_json::json!({"result": [
            {"metric": {"host": "web-1", "key": "role", "value": "canary"}, "value": [10.0, "1"]},
            {"metric": {"host": "db-1", "key": "role", "value": "db"}, "value": [10.0, "1"]},
        ]});
        let samples = serde_json::json!({"result": [
            {"metric": {"host": "web-1", "phase": "Ready", "live_commit": "b", "desired_commit": "b", "reverted": "false", "pinned": "false"},
             "values": [[8.0, "1"], [9.0, "1"]]},
            {"metric": {"host": "web-1", "phase": "Progressing", "live_commit": "a", "desired_commit": "b", "reverted": "false", "pinned": "false"},
             "values": [[7.0, "1"]]},
            {"metric": {"host": "web-2", "phase": "Ready", "live_commit": "a", "desired_commit": "b", "reverted": "true", "pinned": "true"},
             "values": [[9.5, "1"]]},
        ]});
        let seen = assemble(&hosts, &labels, &samples);
        assert_eq!(
            seen.len(),
            3,
            "this host too: the gate needs to know Prometheus has it"
        );
        assert!(seen[2].samples.is_empty());
        assert_eq!(seen[0].name, "web-1");
        assert_eq!(
            seen[0].labels.get("role").map(String::as_str),
            Some("canary")
        );
        let at: Vec<f64> = seen[0].samples.iter().map(|s| s.at).collect();
        assert_eq!(at, vec![7.0, 8.0, 9.0]);
        assert_eq!(seen[0].samples[0].phase, "Progressing");
        assert!(seen[1].samples[0].reverted && seen[1].samples[0].pinned);
    }

    #[test]
    fn a_transport_error_names_the_url_once_without_its_query() {
        let chain = "error sending request for url (http://127.0.0.1:9/api/v1/query?query=up&timeout=2000ms): client error (Connect): tcp connect error: Connection refused (os error 111)";
        assert_eq!(
            words("http://127.0.0.1:9", QueryError::Unreachable(chain.into())),
            "cannot reach Prometheus at http://127.0.0.1:9: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        assert_eq!(without_url("timed out"), "timed out");
    }

    #[test]
    fn label_values_are_quoted_as_promql_strings() {
        assert_eq!(quoted("shop"), "\"shop\"");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
    }
}

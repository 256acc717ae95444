//! `spec.rollout`: fleet rollouts in waves. Each host's controller reads the same document
//! from git; the waves say which hosts take a new app commit first (the canary) and which
//! wait until the earlier waves run it, Ready, for the soak time, as the fleet's
//! Prometheus sees them. The types only: the gate that applies them is the controller's.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::app::Hosts;
use crate::duration::Duration;
use crate::quantity::{PERCENT_PATTERN, Percent};

/// The name of the wave a host no listed wave selects: it goes after the last one.
pub const REST_WAVE: &str = "the rest";

/// How a new app commit reaches the fleet: wave after wave, each proven before the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// The Prometheus that scrapes every controller's `/metrics` (e.g.
    /// `http://prometheus:9090`): the gate reads the earlier waves' `shipshape_app_info`
    /// there.
    pub prometheus: String,
    /// The waves, in order. A host belongs to the first wave that selects it; a host no
    /// wave selects goes after the last one (in "the rest").
    pub waves: Vec<Wave>,
    /// How long every host of the earlier waves must run the new commit, Ready, in
    /// Prometheus's samples without a gap, before a later wave takes it. Long enough for a
    /// crash loop, a leak or a slow regression to show, and for several scrapes.
    #[serde(default = "default_soak")]
    pub soak: Duration,
    /// The largest age of a host's newest sample, and the largest gap between two of its
    /// samples during the soak, that the gate trusts (a few scrape intervals). Older: the
    /// host counts as unseen, and the later wave holds.
    #[serde(default = "default_fresh")]
    pub fresh: Duration,
    /// How long a wave may hold before the controller alerts (a notification, and
    /// `shipshape_app_wave_held_seconds` above `shipshape_app_wave_hold_bound_seconds`
    /// for the alert rule).
    #[serde(default = "default_alert_after")]
    pub alert_after: Duration,
    /// Time limit for each query to Prometheus.
    #[serde(default = "default_query_timeout")]
    pub timeout: Duration,
}

fn default_soak() -> Duration {
    Duration::from_secs(300)
}

fn default_fresh() -> Duration {
    Duration::from_secs(60)
}

fn default_alert_after() -> Duration {
    Duration::from_secs(1800)
}

fn default_query_timeout() -> Duration {
    Duration::from_secs(5)
}

/// One wave: which hosts, and how many of them may take a new commit at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Wave {
    /// The wave's name (1-63 lowercase letters, digits or `-`), shown in status, plan,
    /// fleet and metrics.
    pub name: String,
    /// The hosts of this wave, as `spec.hosts` selects them (names and/or labels). Empty:
    /// every host not in an earlier wave.
    #[serde(default)]
    pub hosts: Hosts,
    /// How many of the wave's hosts may be taking a new commit at once: a count (`1`) or
    /// a percentage of the wave's hosts (`25%`, rounded down, at least 1).
    #[serde(default)]
    pub max_parallel: MaxParallel,
}

/// A count or a percentage of a wave's hosts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxParallel {
    /// At most this many hosts.
    Count(u32),
    /// At most this share of the wave's hosts, rounded down, at least 1.
    Percent(Percent),
}

impl Default for MaxParallel {
    /// One host at a time (Nomad's `max_parallel` default).
    fn default() -> Self {
        MaxParallel::Count(1)
    }
}

impl MaxParallel {
    /// How many of `hosts` hosts may take a commit at once (at least 1).
    pub fn of(self, hosts: usize) -> usize {
        let n = match self {
            MaxParallel::Count(n) => n as usize,
            MaxParallel::Percent(p) => (hosts as f64 * p.value() / 100.0).floor() as usize,
        };
        n.max(1)
    }
}

impl fmt::Display for MaxParallel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxParallel::Count(n) => write!(f, "{n}"),
            MaxParallel::Percent(p) => write!(f, "{p}"),
        }
    }
}

impl Serialize for MaxParallel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxParallel::Count(n) => serializer.serialize_u32(*n),
            MaxParallel::Percent(p) => p.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for MaxParallel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MaxParallel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count of hosts (e.g. 1) or a percentage of the wave (e.g. 25%)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MaxParallel, E> {
                u32::try_from(v)
                    .map(MaxParallel::Count)
                    .map_err(|_| E::custom(format!("{v} hosts is more than any fleet")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MaxParallel, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} must be 1 or more")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MaxParallel, E> {
                v.parse::<Percent>()
                    .map(MaxParallel::Percent)
                    .map_err(|_| {
                        E::custom(format!(
                            "{v:?} must be a count of hosts (e.g. 1) or a percentage of the wave (e.g. 25%)"
                        ))
                    })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for MaxParallel {
    fn schema_name() -> Cow<'static, str> {
        "MaxParallel".into()
    }
    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A count of hosts (e.g. 1) or a percentage of the wave's hosts (e.g. 25%, rounded down, at least 1).",
            "oneOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": PERCENT_PATTERN }
            ]
        })
    }
}

impl Rollout {
    /// The index and name of the wave a host with `name` and `labels` belongs to: the
    /// first wave that selects it, or "the rest" (index `waves.len()`).
    pub fn wave_of(
        &self,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> (usize, &str) {
        self.waves
            .iter()
            .position(|w| w.hosts.selects(name, labels))
            .map(|i| (i, self.waves[i].name.as_str()))
            .unwrap_or((self.waves.len(), REST_WAVE))
    }

    /// The wave at `index` (`None` for "the rest").
    pub fn wave(&self, index: usize) -> Option<&Wave> {
        self.waves.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_percentage_of_a_wave_rounds_down_and_is_at_least_one() {
        let p = |s: &str| MaxParallel::Percent(s.parse().unwrap());
        #[rustfmt::skip]
        let rows: Vec<(MaxParallel, usize, usize)> = vec![
            (MaxParallel::Count(1), 10, 1),
            (MaxParallel::Count(3), 2, 3),
            (p("25%"), 10, 2),
            (p("25%"), 3, 1),
            (p("50%"), 5, 2),
            (p("100%"), 7, 7),
            (p("1%"), 7, 1),
        ];
        for (max, hosts, want) in rows {
            assert_eq!(max.of(hosts), want, "{max} of {hosts}");
        }
    }

    #[test]
    fn a_host_is_in_the_first_wave_that_selects_it_else_in_the_rest() {
        let rollout: Rollout = serde_json::from_value(serde_json::json!({
            "prometheus": "http://p:9090",
            "waves": [
                { "name": "canary", "hosts": { "names": ["web-1"] } },
                { "name": "zone-a", "hosts": { "labels": { "zone": "a" } }, "maxParallel": "50%" },
            ]
        }))
        .unwrap();
        let labels = |z: &str| BTreeMap::from([("zone".to_string(), z.to_string())]);
        assert_eq!(rollout.wave_of("web-1", &labels("a")), (0, "canary"));
        assert_eq!(rollout.wave_of("web-2", &labels("a")), (1, "zone-a"));
        assert_eq!(rollout.wave_of("web-3", &labels("b")), (2, REST_WAVE));
        assert_eq!(rollout.soak.std().as_secs(), 300);
        assert_eq!(
            rollout.waves[1].max_parallel,
            MaxParallel::Percent(Percent(50.0))
        );
        assert_eq!(rollout.waves[0].max_parallel, MaxParallel::Count(1));
    }
}

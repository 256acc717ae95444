//! Human-readable durations: `250ms`, `5s`, `2m`, `1h`, and sums such as `1m30s`.
//!
//! Serialized as the canonical string, so documents and status stay readable.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern every duration string matches (also placed in the JSON Schema).
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

/// A non-negative span of time written as `<number><unit>` groups (`ms`, `s`, `m`, `h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
    /// The standard-library duration.
    pub fn std(self) -> std::time::Duration {
        self.0
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: expected groups like 500ms, 5s, 2m, 1h or 1m30s")]
pub struct ParseDurationError {
    /// The text that was given.
    pub input: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError {
            input: s.to_string(),
        };
        if s.is_empty() {
            return Err(err());
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut total: u128 = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i || i - start > 12 {
                return Err(err());
            }
            let n: u128 = s[start..i].parse().map_err(|_| err())?;
            let unit_ms: u128 = if s[i..].starts_with("ms") {
                i += 2;
                1
            } else if s[i..].starts_with('s') {
                i += 1;
                1_000
            } else if s[i..].starts_with('m') {
                i += 1;
                60_000
            } else if s[i..].starts_with('h') {
                i += 1;
                3_600_000
            } else {
                return Err(err());
            };
            total = total.checked_add(n * unit_ms).ok_or_else(err)?;
        }
        let ms = u64::try_from(total).map_err(|_| err())?;
        Ok(Duration::from_millis(ms))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{}", ms / size, unit)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: groups of <number><unit> with unit ms, s, m or h, e.g. 500ms, 5s, 1m30s."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_sums() {
        assert_eq!(
            "500ms".parse::<Duration>().unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!("5s".parse::<Duration>().unwrap(), Duration::from_secs(5));
        assert_eq!("2m".parse::<Duration>().unwrap(), Duration::from_secs(120));
        assert_eq!("1h".parse::<Duration>().unwrap(), Duration::from_secs(3600));
        assert_eq!(
            "1m30s".parse::<Duration>().unwrap(),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn refuses_what_a_person_might_mistype() {
        for bad in [
            "",
            "5",
            "5 sec",
            "s",
            "-1s",
            "1.5s",
            "5S",
            "1m 30s",
            "99999999999999h",
        ] {
            let err = bad.parse::<Duration>().unwrap_err();
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "250ms", "5s", "1m30s", "2h5m", "1h0m1s500ms"] {
            let d: Duration = text.parse().unwrap();
            let again: Duration = d.to_string().parse().unwrap();
            assert_eq!(d, again);
        }
        assert_eq!(Duration::from_millis(90_500).to_string(), "1m30s500ms");
    }

    proptest::proptest! {
        #[test]
        fn any_millis_round_trip_through_text(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
    }
}

//! [`Timestamp`]: the one time type of the records, the API and the CLI. A moment in UTC
//! held as a [`chrono::DateTime<Utc>`] and written as RFC 3339 with milliseconds and `Z`
//! (`2026-12-01T23:59:01.123Z`), the text the records have always had: it is parsed
//! once, where a record, a request or an event is read, and durations are computed with
//! the type.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A moment in UTC, to the millisecond.
///
/// Serialises as RFC 3339 with milliseconds and `Z`; reads any RFC 3339 time (another
/// offset is converted to UTC, finer fractions are kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

/// An RFC 3339 time that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 time: {text:?} ({source})")]
pub struct TimeError {
    /// What was read.
    pub text: String,
    /// chrono's reason.
    #[source]
    pub source: chrono::ParseError,
}

impl Timestamp {
    /// 1970-01-01T00:00:00.000Z (a fixed time for tests and placeholders).
    pub const UNIX_EPOCH: Timestamp = Timestamp(DateTime::<Utc>::UNIX_EPOCH);

    /// Now, to the millisecond (what is held is what is written).
    pub fn now() -> Timestamp {
        Timestamp::from_datetime(Utc::now())
    }

    /// `at`, cut to the millisecond.
    pub fn from_datetime(at: DateTime<Utc>) -> Timestamp {
        let millis = at.timestamp_millis();
        Timestamp(DateTime::from_timestamp_millis(millis).unwrap_or(at))
    }

    /// Parse an RFC 3339 time.
    ///
    /// # Errors
    /// [`TimeError`] when `text` is not one.
    pub fn parse(text: &str) -> Result<Timestamp, TimeError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Timestamp(t.with_timezone(&Utc)))
            .map_err(|source| TimeError {
                text: text.to_string(),
                source,
            })
    }

    /// The moment as chrono's type.
    pub fn datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// How long before `later` this was (negative when it is after).
    pub fn until(self, later: Timestamp) -> TimeDelta {
        later.0 - self.0
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(text: &str) -> Result<Timestamp, TimeError> {
        Timestamp::parse(text)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Timestamp {
        Timestamp::from_datetime(at)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(at: Timestamp) -> DateTime<Utc> {
        at.0
    }
}

impl From<Timestamp> for std::time::SystemTime {
    fn from(at: Timestamp) -> std::time::SystemTime {
        at.0.into()
    }
}

impl std::ops::Sub for Timestamp {
    type Output = TimeDelta;
    fn sub(self, earlier: Timestamp) -> TimeDelta {
        self.0 - earlier.0
    }
}

impl std::ops::Add<TimeDelta> for Timestamp {
    type Output = Timestamp;
    fn add(self, by: TimeDelta) -> Timestamp {
        Timestamp::from_datetime(self.0 + by)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_text_reads_and_writes_back_unchanged() {
        for text in ["2026-12-01T23:59:01.123Z", "2026-01-01T00:00:00.000Z"] {
            let t: Timestamp = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{text}\""));
            assert_eq!(t.to_string(), text);
        }
    }

    #[test]
    fn other_offsets_and_precisions_read_as_the_same_moment_in_utc() {
        let a = Timestamp::parse("2026-12-02T01:59:01.123456+02:00").unwrap();
        assert_eq!(a.to_string(), "2026-12-01T23:59:01.123Z");
        let b = Timestamp::parse("2026-12-01T23:59:01Z").unwrap();
        assert_eq!(a - b, TimeDelta::microseconds(123_456));
    }

    #[test]
    fn a_text_that_is_not_a_time_is_an_error_naming_it() {
        let e = Timestamp::parse("yesterday").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("not an RFC 3339 time: \"yesterday\""),
            "{e}"
        );
        assert!(serde_json::from_str::<Timestamp>("\"t1\"").is_err());
    }

    #[test]
    fn now_is_held_to_the_millisecond_so_it_reads_back_equal() {
        let t = Timestamp::now();
        let back: Timestamp = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}

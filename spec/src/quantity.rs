//! Quantities a person writes for resource limits: percentages (`80%`, `12.5%`) and byte
//! sizes (`800M`, `1G`, `512Mi`, `1.5G`).
//!
//! Both are serialized as their canonical string, so documents and status stay readable,
//! and both refuse bare numbers: `maxCpu: 80` could mean 80 % or 0.8, `maxMemory: 800`
//! could mean bytes or megabytes; the unit is required.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern every percentage string matches (also placed in the JSON Schema).
pub const PERCENT_PATTERN: &str = r"^[0-9]{1,6}(\.[0-9]{1,3})?%$";

/// The pattern every byte-size string matches (also placed in the JSON Schema).
pub const BYTE_SIZE_PATTERN: &str = r"^[0-9]{1,12}(\.[0-9]{1,6})?[KMGT]i?$";

/// A percentage, written `<number>%` with at most 3 decimals (`80%`, `12.5%`).
///
/// The value is in percent (`80%` is `80.0`). Zero is a valid value here; the document
/// validation decides where it is meaningless.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl Percent {
    /// The value in percent (`80%` → `80.0`).
    pub fn value(self) -> f64 {
        self.0
    }
}

/// Why a percentage string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid percentage {input:?}: expected a number and a % sign, e.g. 80% or 12.5%")]
pub struct ParsePercentError {
    /// The text that was given.
    pub input: String,
}

/// Split `s` into its integer digits, fraction digits (possibly empty) and what follows,
/// refusing anything but `<digits>[.<digits>]<rest>` within the given digit limits.
fn split_number(s: &str, max_int: usize, max_frac: usize) -> Option<(&str, &str, &str)> {
    let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let int = &s[..int_end];
    if int.is_empty() || int.len() > max_int {
        return None;
    }
    let rest = &s[int_end..];
    let Some(after_dot) = rest.strip_prefix('.') else {
        return Some((int, "", rest));
    };
    let frac_end = after_dot
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after_dot.len());
    let frac = &after_dot[..frac_end];
    if frac.is_empty() || frac.len() > max_frac {
        return None;
    }
    Some((int, frac, &after_dot[frac_end..]))
}

impl FromStr for Percent {
    type Err = ParsePercentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePercentError {
            input: s.to_string(),
        };
        let (int, frac, rest) = split_number(s, 6, 3).ok_or_else(err)?;
        if rest != "%" {
            return Err(err());
        }
        let number = if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        };
        number.parse::<f64>().map(Percent).map_err(|_| err())
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // f64's Display prints 80.0 as `80` and 12.5 as `12.5`: the shortest text that
        // reads back as the same value.
        write!(f, "{}%", self.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor::<Percent>::new(
            "a percentage such as 80%",
            "a percentage needs its % sign, e.g. 80%",
        ))
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PERCENT_PATTERN,
            "description": "A percentage: a number (at most 3 decimals) and a % sign, e.g. 80% or 12.5%."
        })
    }
}

/// A size in bytes, written as a number and a binary unit: `K`, `M`, `G` or `T` (as pm2's
/// `max_memory_restart` reads them: `800M` is 800 × 1024² bytes), or the explicit `Ki`,
/// `Mi`, `Gi`, `Ti`, which mean the same. A fraction (`1.5G`) is rounded down to a whole
/// `K`. A bare number, decimal units (`MB`, `GB`) and lowercase units are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1024;

impl ByteSize {
    /// A size of `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        ByteSize(bytes)
    }
    /// A size of `mib` MiB.
    pub const fn from_mib(mib: u64) -> Self {
        ByteSize(mib * KIB * KIB)
    }
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Why a byte-size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size {input:?}: expected a number and a binary unit K, M, G or T (or Ki, Mi, Gi, Ti), e.g. 800M, 1.5G or 512Mi"
)]
pub struct ParseByteSizeError {
    /// The text that was given.
    pub input: String,
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseByteSizeError {
            input: s.to_string(),
        };
        let (int, frac, unit) = split_number(s, 12, 6).ok_or_else(err)?;
        let power = match unit.strip_suffix('i').unwrap_or(unit) {
            "K" => 1,
            "M" => 2,
            "G" => 3,
            "T" => 4,
            _ => return Err(err()),
        };
        let unit_bytes: u128 = 1024u128.pow(power);
        let int: u128 = int.parse().map_err(|_| err())?;
        let mut bytes = int * unit_bytes;
        if !frac.is_empty() {
            let scale = 10u128.pow(frac.len() as u32);
            let frac: u128 = frac.parse().map_err(|_| err())?;
            bytes += frac * unit_bytes / scale;
        }
        let bytes = bytes / u128::from(KIB) * u128::from(KIB);
        u64::try_from(bytes).map(ByteSize).map_err(|_| err())
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly, so the text reads back the same
    /// (`1.5G` is shown as `1536M`). Sizes below 1K (only built in code) show as a
    /// fraction of a K.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b == 0 {
            return f.write_str("0K");
        }
        for (unit, size) in [
            ("T", KIB.pow(4)),
            ("G", KIB.pow(3)),
            ("M", KIB.pow(2)),
            ("K", KIB),
        ] {
            if b % size == 0 {
                return write!(f, "{}{unit}", b / size);
            }
        }
        write!(f, "{}K", b as f64 / KIB as f64)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor::<ByteSize>::new(
            "a size such as 800M",
            "a size needs a unit, e.g. 800M or 1G",
        ))
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": BYTE_SIZE_PATTERN,
            "description": "A size: a number and a binary unit K, M, G or T (or Ki, Mi, Gi, Ti; 800M is 800 × 1024² bytes, as pm2 reads max_memory_restart), e.g. 800M, 1.5G, 512Mi."
        })
    }
}

/// Reads a quantity from a string; a number gets an error saying the unit is missing
/// (rather than serde's "invalid type: integer, expected a string").
struct QuantityVisitor<T> {
    expecting: &'static str,
    no_unit: &'static str,
    _t: std::marker::PhantomData<T>,
}

impl<T> QuantityVisitor<T> {
    fn new(expecting: &'static str, no_unit: &'static str) -> Self {
        QuantityVisitor {
            expecting,
            no_unit,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T> serde::de::Visitor<'_> for QuantityVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        Err(E::custom(format!("{v}: {}", self.no_unit)))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        Err(E::custom(format!("{v}: {}", self.no_unit)))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<T, E> {
        Err(E::custom(format!("{v}: {}", self.no_unit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1024 * 1024;

    #[test]
    fn percentages_parse_and_print_back() {
        for (text, value) in [("80%", 80.0), ("12.5%", 12.5), ("0%", 0.0), ("250%", 250.0)] {
            let p: Percent = text.parse().unwrap();
            assert_eq!(p.value(), value, "{text}");
            assert_eq!(p.to_string(), text);
        }
        assert_eq!("0.125%".parse::<Percent>().unwrap().to_string(), "0.125%");
    }

    #[test]
    fn percentages_refuse_what_a_person_might_mistype() {
        for bad in [
            "",
            "80",
            "%",
            "80 %",
            "-5%",
            "+5%",
            "80%%",
            "0.8",
            ".5%",
            "5.%",
            "1e2%",
            "80 percent",
            "0.1234%",
            "1234567%",
            "eighty%",
        ] {
            let err = bad.parse::<Percent>().unwrap_err();
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn sizes_use_binary_units_as_pm2_does() {
        for (text, bytes) in [
            ("800M", 800 * MI),
            ("800Mi", 800 * MI),
            ("1G", 1024 * MI),
            ("1Gi", 1024 * MI),
            ("512K", 512 * 1024),
            ("1.5G", 1536 * MI),
            ("0.5M", 512 * 1024),
            ("2T", 2 * 1024 * 1024 * MI),
        ] {
            assert_eq!(text.parse::<ByteSize>().unwrap().bytes(), bytes, "{text}");
        }
        // Fractions round down to a whole K.
        assert_eq!("1.3G".parse::<ByteSize>().unwrap().bytes() % 1024, 0);
        assert_eq!(
            "0.0001K".parse::<ByteSize>().unwrap(),
            ByteSize::from_bytes(0)
        );
    }

    #[test]
    fn sizes_refuse_what_a_person_might_mistype() {
        for bad in [
            "",
            "800",
            "M",
            "800MB",
            "800mb",
            "800m",
            "1g",
            "800 M",
            "-1G",
            "1,5G",
            "1.G",
            ".5G",
            "1e3M",
            "800B",
            "800Kib",
            "1P",
            "99999999999999T",
            "1.1234567G",
        ] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn sizes_print_with_the_largest_exact_unit_and_read_back() {
        for (text, shown) in [
            ("800M", "800M"),
            ("1024M", "1G"),
            ("1.5G", "1536M"),
            ("512Mi", "512M"),
            ("1.3G", "1363148K"),
        ] {
            let s: ByteSize = text.parse().unwrap();
            assert_eq!(s.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<ByteSize>().unwrap(), s);
        }
    }

    #[test]
    fn numbers_are_refused_with_a_hint_about_the_unit() {
        let err = serde_json::from_str::<ByteSize>("800").unwrap_err();
        assert!(err.to_string().contains("a size needs a unit"), "{err}");
        let err = serde_json::from_str::<Percent>("80").unwrap_err();
        assert!(err.to_string().contains("needs its % sign"), "{err}");
        let ok: Percent = serde_json::from_str("\"80%\"").unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"80%\"");
    }

    proptest::proptest! {
        #[test]
        fn any_whole_k_size_round_trips_through_text(k in 0u64..1_000_000_000_000) {
            let s = ByteSize::from_bytes(k * 1024);
            proptest::prop_assert_eq!(s.to_string().parse::<ByteSize>().unwrap(), s);
        }
    }
}

//! pm2's readings of the values it takes loosely (`instances: '3'`, `-1`, `'max'`;
//! `"true"`; `min_uptime: 10s`; `max_memory_restart` in bytes), written as the document
//! takes them or refused with the reason.

use serde_json::Value;

/// pm2's `instances`, read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Instances {
    /// A count the document takes.
    Count(u32),
    /// One per CPU, with a note when it was written another way.
    Max(Option<String>),
}

/// pm2's reading of `instances` (Common.js and God.js): `'max'` and `0` are one per CPU,
/// a negative number is that many fewer than the CPUs, a string is `parseInt`ed.
pub(super) fn instances_of(v: &Value) -> Result<Instances, String> {
    let n: i64 = match v {
        Value::String(s) if s == "max" => return Ok(Instances::Max(None)),
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                return Err(format!(
                    "{v} is not a number or max (pm2 would read it as 0: one per CPU): write a count or max"
                ));
            }
        },
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{v} is not a whole number: write a count or max"))?,
        _ => return Err(format!("{v} is not a number or max")),
    };
    match n {
        0 => Ok(Instances::Max(Some(format!(
            "{v} means one per CPU to pm2: written as max"
        )))),
        n if n < 0 => Err(format!(
            "{v} means {} fewer than the CPUs to pm2, which the document cannot say (it takes a count or max): write the count for the server (its CPUs minus {}: `nproc` says how many)",
            -n, -n
        )),
        n if n > i64::from(shipshape_spec::app::MAX_INSTANCES) => Err(format!(
            "{v} is more than {}, the most instances of one process",
            shipshape_spec::app::MAX_INSTANCES
        )),
        n => Ok(Instances::Count(n as u32)),
    }
}

/// A boolean as pm2 takes it (`true`, or the text `"true"`).
pub(super) fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// Milliseconds as pm2 takes them: a whole number, its text, or (for `min_uptime`) `10s`,
/// `5m`, `1h`.
pub(super) fn millis(v: &Value, units: bool) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            let (digits, factor) = match s.chars().last()? {
                'h' if units => (&s[..s.len() - 1], 3_600_000),
                'm' if units => (&s[..s.len() - 1], 60_000),
                's' if units => (&s[..s.len() - 1], 1000),
                _ => (s, 1),
            };
            digits.parse::<u64>().ok()?.checked_mul(factor)
        }
        _ => None,
    }
}

/// `max_memory_restart` as the document writes it: pm2's `^\d+(G|M|K)?$` text, or a byte
/// count as a number, written in the largest unit that divides it.
pub(super) fn memory(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let digits = s.trim_end_matches(['K', 'M', 'G']);
            (!digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && s.len() - digits.len() <= 1)
                .then(|| s.clone())
        }
        Value::Number(n) => {
            let b = n.as_u64()?;
            Some(
                [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)]
                    .iter()
                    .find(|(_, unit)| b >= *unit && b % unit == 0)
                    .map_or(b.to_string(), |(u, unit)| format!("{}{u}", b / unit)),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instances_are_read_as_pm2_reads_them() {
        assert_eq!(instances_of(&json!(3)), Ok(Instances::Count(3)));
        assert_eq!(instances_of(&json!("3")), Ok(Instances::Count(3)));
        assert_eq!(instances_of(&json!("max")), Ok(Instances::Max(None)));
        assert!(matches!(
            instances_of(&json!(0)),
            Ok(Instances::Max(Some(_)))
        ));
        assert!(
            instances_of(&json!(-1))
                .unwrap_err()
                .contains("1 fewer than the CPUs")
        );
        assert!(instances_of(&json!("many")).is_err());
        assert!(instances_of(&json!(2.5)).is_err());
        assert!(instances_of(&json!(5000)).is_err());
    }

    #[test]
    fn sizes_and_times_are_written_as_the_document_takes_them() {
        assert_eq!(memory(&json!("300M")).as_deref(), Some("300M"));
        assert_eq!(memory(&json!(314572800)).as_deref(), Some("300M"));
        assert_eq!(memory(&json!(1000)).as_deref(), Some("1000"));
        assert_eq!(memory(&json!("1.5G")), None);
        assert_eq!(memory(&json!("300m")), None);
        assert_eq!(millis(&json!("10s"), true), Some(10_000));
        assert_eq!(millis(&json!("10s"), false), None);
        assert_eq!(millis(&json!("3000"), false), Some(3000));
        assert_eq!(millis(&json!(-1), false), None);
    }
}

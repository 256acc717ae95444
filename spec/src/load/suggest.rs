//! The unknown-field message: the nearest known field by edit distance ("did you mean
//! `instances`?") when one is close, instead of serde's list of every field.

/// The most known fields an unknown-field message lists when none is close to the typo.
const MAX_LISTED_FIELDS: usize = 6;

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or `b`", or
/// "there are no fields"): the field written and the ones that exist.
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let known = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), known))
}

/// serde's unknown-field message `serde_said` made useful: "did you mean `instances`?" when
/// one known field is close to the one written; serde's own list when it is short; else a
/// pointer to the schema rather than a list of 28 names. `None`: not an unknown-field
/// message.
pub(super) fn unknown_field_message(serde_said: &str) -> Option<String> {
    let (field, known) = unknown_field(serde_said)?;
    Some(message(&field, &known, serde_said))
}

fn message(field: &str, known: &[String], serde_said: &str) -> String {
    if let Some(near) = nearest_field(field, known) {
        return format!("unknown field `{field}`: did you mean `{near}`?");
    }
    if known.len() <= MAX_LISTED_FIELDS {
        return serde_said.to_string();
    }
    format!(
        "unknown field `{field}` (none of the {} fields here is close; `shipshape schema` lists them)",
        known.len()
    )
}

/// The known field nearest to `field`, when it is close: the same but for case, `-` or
/// `_`, or within an edit distance of a third of its length (at least 1, at most 3).
pub fn nearest_field<'a>(field: &str, known: &'a [String]) -> Option<&'a str> {
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let folded = fold(field);
    if let Some(same) = known.iter().find(|k| fold(k) == folded) {
        return Some(same);
    }
    let limit = (field.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(&folded, &fold(k)), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbours (`intsances`) each count 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_field_name_is_suggested_and_a_far_one_is_not() {
        let known: Vec<String> = [
            "name",
            "script",
            "instances",
            "exec_mode",
            "max_memory_restart",
        ]
        .map(String::from)
        .to_vec();
        for (typo, want) in [
            ("instaces", Some("instances")),
            ("intsances", Some("instances")),
            ("Instances", Some("instances")),
            ("exec-mode", Some("exec_mode")),
            ("execMode", Some("exec_mode")),
            ("scrip", Some("script")),
            ("max_memory_restrat", Some("max_memory_restart")),
            ("nmae", Some("name")),
            ("port", None),
            ("watch", None),
            ("x", None),
        ] {
            assert_eq!(nearest_field(typo, &known), want, "{typo}");
        }
    }

    #[test]
    fn an_unknown_field_message_suggests_lists_a_few_or_points_at_the_schema() {
        let many = "unknown field `zzz`, expected one of `a1`, `a2`, `a3`, `a4`, `a5`, `a6`, `a7`";
        assert_eq!(
            super::super::clean_message(many, "spec.zzz"),
            "unknown field `zzz` (none of the 7 fields here is close; `shipshape schema` lists them)"
        );
        let few = "unknown field `zzz`, expected `root` or `keep`";
        assert_eq!(super::super::clean_message(few, "x"), few);
        assert_eq!(
            super::super::clean_message("unknown field `kepe`, expected `root` or `keep`", "x"),
            "unknown field `kepe`: did you mean `keep`?"
        );
    }
}

//! What the read-only views may print of text that came from outside: build output,
//! hook output, git and pm2 messages, documents. Two rules, applied to records as they are
//! read for a view (the records on disk keep the raw text):
//!
//! - every URL's credentials are masked ([`crate::redact::credentials`]), in every format;
//! - in the formats for people (tables, details, logs, events), control characters are
//!   shown escaped ([`escape`]), so that a build step printing `\e]0;title\a` or `\e[2J`
//!   cannot retitle, clear or reprogram the operator's terminal. JSON (`-o json`) keeps
//!   the text as it is, written with `\u001b`-style escapes (serde's for C0 controls,
//!   [`json_text`]'s for DEL and C1), so nothing raw reaches a terminal there either.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// True for a character [`escape`] rewrites: C0 controls but newline and tab, DEL, and
/// the C1 controls U+0080–U+009F (U+009B is a one-character CSI for some terminals).
pub fn is_control(c: char) -> bool {
    let n = c as u32;
    (n < 0x20 && c != '\n' && c != '\t') || n == 0x7f || (0x80..=0x9f).contains(&n)
}

/// `text` with every control character but newline and tab written out: ESC as `\e`,
/// carriage return as `\r`, another C0 control or DEL as `\xNN` (BEL is `\x07`), a C1
/// control as `\u{NN}`. Borrowed when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\x1b' => out.push_str("\\e"),
            '\r' => out.push_str("\\r"),
            c if is_control(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` as a view prints it: credentials masked, control characters escaped.
pub fn text(text: &str) -> Cow<'_, str> {
    match crate::redact::credentials(text) {
        Cow::Borrowed(b) => escape(b),
        Cow::Owned(o) => Cow::Owned(escape(&o).into_owned()),
    }
}

/// `value` as a view for people shows it: [`text`] applied to each of its strings.
/// `None` when the escaped strings no longer read back (the view then says so).
pub fn for_people<T: Serialize + DeserializeOwned>(value: &T) -> Option<T> {
    crate::redact::rewrite(value, &|s| match text(s) {
        Cow::Owned(o) => Some(o),
        Cow::Borrowed(_) => None,
    })
}

/// `value` as `-o json` shows it: credentials masked; serde escapes the rest.
pub fn for_json<T: Serialize + DeserializeOwned>(value: &T) -> Option<T> {
    crate::redact::record(value)
}

/// JSON text as `-o json` prints it: serde writes C0 controls as `\u001b`-style escapes
/// but leaves DEL and the C1 controls (U+009B is a CSI for some terminals) raw; they are
/// written as `\u007f` … `\u009f` here. The same JSON value: only inside strings can they
/// occur, where the escape means the character itself.
pub fn json_text(json: String) -> String {
    if !json.chars().any(is_control) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_control(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_other_controls_are_written_out_but_newlines_and_tabs_stay() {
        let raw = "\x1b]0;pwned\x07\x1b[2Jok\r\n\tnext\x7f\u{9b}31m\0é";
        let shown = escape(raw);
        assert_eq!(
            shown,
            "\\e]0;pwned\\x07\\e[2Jok\\r\n\tnext\\x7f\\u{9b}31m\\x00é"
        );
        assert!(!shown.chars().any(is_control), "{shown:?}");
        assert!(matches!(escape("plain\ttext\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_control_character_is_escaped_and_nothing_else_is_changed() {
        for n in 0u32..0x250 {
            let Some(c) = char::from_u32(n) else { continue };
            let s = c.to_string();
            let shown = escape(&s);
            if is_control(c) {
                assert!(
                    shown.starts_with('\\') && shown.len() > 1,
                    "{n:#x}: {shown}"
                );
                assert!(!shown.chars().any(is_control), "{n:#x}");
            } else {
                assert_eq!(shown, s, "{n:#x}");
            }
        }
    }

    #[test]
    fn a_view_masks_credentials_and_escapes_each_string_of_a_value() {
        let v = serde_json::json!({"message": "fetch https://u:s3cret@h/x \x1b[2J", "n": 1});
        let shown: serde_json::Value = for_people(&v).unwrap();
        assert_eq!(shown["message"], "fetch https://***@h/x \\e[2J");
        let json: serde_json::Value = for_json(&v).unwrap();
        assert_eq!(json["message"], "fetch https://***@h/x \x1b[2J");
    }

    #[test]
    fn json_text_escapes_del_and_c1_and_means_the_same_value() {
        let v = serde_json::json!({"m": "\x1b[2J\u{9b}31m\x7f é"});
        let text = json_text(serde_json::to_string(&v).unwrap());
        assert!(!text.chars().any(is_control), "{text}");
        assert!(
            text.contains("\\u009b") && text.contains("\\u007f"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}

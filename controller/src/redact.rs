//! Keeping secrets that travel inside URLs out of everything the controller shows: the
//! `user:password@` part of any URL in a text (a git error quoting its remote, an old
//! record written before such URLs were refused), in every string of a record served by
//! the API or printed by the CLI, and in every line the controller logs; and reading a
//! secret from a file (`--notify-url-file`, `spec.source.tokenFile`) the same careful way.
//!
//! Records keep what they were given; this is applied where things are shown.

use std::borrow::Cow;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What replaces a URL's credentials.
pub const MASK: &str = "***";

/// `text` with the credentials of every URL in it (`scheme://user:password@host…`, also a
/// user alone: a token is often sent as the user name) replaced by `***`. Borrowed when
/// there is nothing to hide.
pub fn credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        // The authority ends where a path, query or fragment starts, or where the URL
        // itself ends in running text.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(at) => {
                out.push_str(MASK);
                rest = &after[at..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The `scheme://host:port` of a URL, lowercase, without credentials, path or query:
/// what may be said of a URL whose path or user holds a secret (a webhook, a remote).
pub fn origin(url: &str) -> String {
    let Some(scheme) = url.find("://") else {
        return String::from("(not a URL)");
    };
    let after = &url[scheme + 3..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let host = &after[..end];
    let host = host.rfind('@').map_or(host, |at| &host[at + 1..]);
    format!("{}{host}", &url[..scheme + 3]).to_ascii_lowercase()
}

/// `text` with every occurrence of `secret` (when it is at least 4 characters) and every
/// URL's credentials replaced by `***`.
pub fn secret_and_credentials(text: &str, secret: &str) -> String {
    let masked = if secret.len() >= 4 && text.contains(secret) {
        Cow::Owned(text.replace(secret, MASK))
    } else {
        Cow::Borrowed(text)
    };
    credentials(&masked).into_owned()
}

/// Apply `f` to every string in `value` (object keys too), in place.
pub fn map_strings(value: &mut serde_json::Value, f: &impl Fn(&str) -> Option<String>) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Some(new) = f(s) {
                *s = new;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| map_strings(v, f)),
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let Some(mut v) = map.remove(&k) else {
                    continue;
                };
                map_strings(&mut v, f);
                let key = f(&k).unwrap_or(k);
                map.insert(key, v);
            }
        }
        _ => {}
    }
}

/// `value` as JSON with every URL's credentials masked: what the API serves.
pub fn json<T: Serialize>(value: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    map_strings(&mut v, &|s| match credentials(s) {
        Cow::Owned(o) => Some(o),
        Cow::Borrowed(_) => None,
    });
    v
}

/// `value` with `f` applied to each of its strings, through its JSON form (records are
/// JSON on disk, so they go there and back). `None` when the changed strings no longer
/// read as a `T`: the caller shows an error rather than the unchanged value.
pub fn rewrite<T: Serialize + DeserializeOwned>(
    value: &T,
    f: &impl Fn(&str) -> Option<String>,
) -> Option<T> {
    let mut v = serde_json::to_value(value).ok()?;
    map_strings(&mut v, f);
    serde_json::from_value(v).ok()
}

/// `value` with every URL's credentials masked (see [`rewrite`]).
pub fn record<T: Serialize + DeserializeOwned>(value: &T) -> Option<T> {
    rewrite(value, &|s| match credentials(s) {
        Cow::Owned(o) => Some(o),
        Cow::Borrowed(_) => None,
    })
}

/// Read a secret from `path` (surrounding whitespace trimmed): every secret file the
/// controller reads comes through here. `what` names it in errors (e.g. `notify URL file
/// (--notify-url-file)`); `private` refuses a file every user on the host can read.
///
/// # Errors
/// When the file cannot be read, is readable by every user on the host and `private` is
/// set (the secret is then no secret: `chmod o-r` it, or 0600), or holds nothing (an empty
/// secret would authenticate anyone, or send nothing for a password). The error never
/// holds the file's content.
pub fn read_secret_file(path: &Path, what: &str, private: bool) -> Result<String, SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let read = |source| SecretFileError::Read {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if private && meta.permissions().mode() & 0o004 != 0 {
        return Err(SecretFileError::Public {
            what: what.to_string(),
            path: path.to_path_buf(),
            mode: meta.permissions().mode() & 0o777,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(SecretFileError::Empty {
            what: what.to_string(),
            path: path.to_path_buf(),
        });
    }
    Ok(secret.to_string())
}

/// Why [`read_secret_file`] refused a file. `what` names the file's role; no variant holds
/// the file's content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// It cannot be read.
    #[error("{what} {}: {source}", path.display())]
    Read {
        /// The file's role (`notify URL file (--notify-url-file)`).
        what: String,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Every user on the host can read it, and it must be private.
    #[error(
        "{what} {} is readable by every user on this host (mode {mode:o}): make it private (chmod 600, owned by the controller's user)",
        path.display()
    )]
    Public {
        /// The file's role.
        what: String,
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It holds nothing but whitespace.
    #[error("{what} {} is empty", path.display())]
    Empty {
        /// The file's role.
        what: String,
        /// The file.
        path: std::path::PathBuf,
    },
}

/// A secret (the notification URL) masked in every log line from when it is set.
static HIDDEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Mask `secret` in every log line [`LogWriter`] writes from now on (once per process;
/// later calls are ignored).
pub fn hide_in_logs(secret: &str) {
    let _ = HIDDEN.set(secret.to_string());
}

/// A `tracing` writer to standard error that masks URL credentials (and the secret given
/// to [`hide_in_logs`]) in each line: the journal never gets them, whichever error quoted
/// a URL.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

/// One line being written (see [`LogWriter`]).
#[derive(Debug)]
pub struct LogLine;

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let masked = secret_and_credentials(&text, HIDDEN.get().map_or("", String::as_str));
        std::io::stderr().write_all(masked.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl tracing_subscriber::fmt::MakeWriter<'_> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&self) -> Self::Writer {
        LogLine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_urls_credentials_are_masked_in_running_text() {
        let t = "fetch from https://u:s3cret@h.example/x.git failed: remote 'http://tok@127.0.0.1:1/y' said no";
        assert_eq!(
            credentials(t),
            "fetch from https://***@h.example/x.git failed: remote 'http://***@127.0.0.1:1/y' said no"
        );
        assert_eq!(credentials("https://u:p@ss@h/x"), "https://***@h/x");
        assert_eq!(
            credentials("mail a@b.c about https://h/x@y"),
            "mail a@b.c about https://h/x@y",
            "an @ in the path or outside a URL stays"
        );
        assert!(matches!(credentials("no url here"), Cow::Borrowed(_)));
        assert_eq!(credentials("postgres://u:pw@db/x"), "postgres://***@db/x");
        assert_eq!(
            origin("https://U:s3cret@Hooks.Example:8443/services/T/B/s3cret?x#y"),
            "https://hooks.example:8443"
        );
        assert_eq!(
            secret_and_credentials(
                "posting to http://h/hooks/abcd1234 failed",
                "http://h/hooks/abcd1234"
            ),
            "posting to *** failed"
        );
    }

    #[test]
    fn every_string_of_a_value_is_masked_keys_too() {
        let v = serde_json::json!({
            "message": "from https://u:s3cret@h/x",
            "list": ["ok", "https://a:b@h"],
            "https://k:s3cret@h": 1
        });
        let out = json(&v).to_string();
        assert!(!out.contains("s3cret") && !out.contains("a:b@"), "{out}");
        assert!(out.contains("https://***@h/x"), "{out}");
    }

    #[test]
    fn a_secret_file_must_exist_be_private_and_hold_something() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        assert!(
            read_secret_file(&p, "x", true)
                .unwrap_err()
                .to_string()
                .contains("No such file")
        );
        std::fs::write(&p, " s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&p, "the file", true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("readable by every user") && !e.contains("s3cret"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&p, "x", true).unwrap(), "s3cret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            read_secret_file(&p, "x", false).unwrap(),
            "s3cret",
            "readable by all, when that is allowed"
        );
        std::fs::write(&p, "  \n").unwrap();
        for private in [true, false] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(
                read_secret_file(&p, "x", private)
                    .unwrap_err()
                    .to_string()
                    .contains("is empty")
            );
        }
    }
}

//! What a single value must look like: commit SHAs, names, levels, env names, paths
//! inside a release, repository URLs and the credentials they must not carry, log files.
//! Pure predicates, used by the document's sections.

use super::*;

/// True for a full, lowercase, 40-hex git commit SHA.
pub fn is_full_sha(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True for an app or check name: DNS-label style, 1–63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// True for a pm2 process name we accept: letters, digits, `-`, `_`, `.`, starting alphanumeric.
pub fn is_process_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// What pm2 takes for an ecosystem file when a process name contains it (pm2's
/// `Common.isConfigFile` looks for these anywhere in the name).
pub const PM2_CONFIG_FILE_MARKS: [&str; 6] = [
    ".json",
    ".yml",
    ".yaml",
    ".config.js",
    ".config.cjs",
    ".config.mjs",
];

/// Why pm2 would take process name `s` for something other than that process (`pm2 delete
/// <name>`, which the controller runs, would then act on other processes), if it would.
pub fn pm2_reserved(s: &str) -> Option<String> {
    if s == "all" {
        return Some(
            "\"all\" is reserved: pm2 reads it as every process (`pm2 delete all` would delete other apps' processes)"
                .into(),
        );
    }
    if s == "default" {
        return Some(
            "\"default\" is reserved: pm2 reads a name it cannot find as a namespace, and \"default\" is the namespace of every process not given one"
                .into(),
        );
    }
    if let Some(mark) = PM2_CONFIG_FILE_MARKS.iter().find(|m| s.contains(*m)) {
        return Some(format!(
            "{s:?} contains {mark:?}: pm2 reads such a name as the path of an ecosystem file"
        ));
    }
    if is_js_number(s) {
        return Some(format!(
            "{s:?} is a number to pm2, which reads it as a process id (another app's process)"
        ));
    }
    None
}

/// True when JavaScript's `Number(s)` is not `NaN` (pm2 tests names with `isNaN`), for the
/// characters a process name may hold: decimals with an optional fraction and exponent,
/// `0x`/`0o`/`0b` integers and `Infinity`.
pub(super) fn is_js_number(s: &str) -> bool {
    let radix =
        |digits: &str, radix: u32| !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    let lower = s.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("0x") {
        return radix(rest, 16);
    }
    if let Some(rest) = lower.strip_prefix("0o") {
        return radix(rest, 8);
    }
    if let Some(rest) = lower.strip_prefix("0b") {
        return radix(rest, 2);
    }
    if s == "Infinity" {
        return true;
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        radix(e, 10)
    });
    mantissa_ok && exponent_ok
}

/// True for a migration level: what tools use as names or versions.
pub fn is_level(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// True for a portable environment variable name.
pub fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// True for a relative path that stays inside its base (no `..`, not absolute, not empty).
pub fn is_contained_relative(s: &str) -> bool {
    let p = Path::new(s);
    !s.is_empty()
        && !s.contains('\0')
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// True for a path naming the release itself (`.`), `node_modules` (or inside it) or the
/// release marker: directories a build cache must not be, since the controller owns them.
pub(super) fn is_release_owned(s: &str) -> bool {
    let mut parts = Path::new(s)
        .components()
        .filter(|c| !matches!(c, Component::CurDir));
    match parts.next() {
        None => true,
        Some(first) => {
            first.as_os_str() == "node_modules" || first.as_os_str() == ".shipshape-release.json"
        }
    }
}

pub(super) fn is_repository(s: &str) -> bool {
    if s.is_empty() || s.contains(char::is_whitespace) || s.starts_with('-') {
        return false;
    }
    let schemes = ["https://", "http://", "ssh://", "git://", "file://"];
    if schemes
        .iter()
        .any(|sch| s.starts_with(sch) && s.len() > sch.len())
    {
        return true;
    }
    if s.starts_with('/') {
        return Path::new(s)
            .components()
            .all(|c| !matches!(c, Component::ParentDir));
    }
    // scp-like: user@host:path
    matches!(s.split_once(':'), Some((host, path)) if host.contains('@') && !path.is_empty() && !host.contains('/'))
}

/// The `user:password@` part of URL `s` (the text between `scheme://` and the last `@`
/// of the authority, which ends at the first `/`, `?` or `#`), if it has one.
pub fn url_userinfo(s: &str) -> Option<&str> {
    let start = s.find("://")? + 3;
    let authority = &s[start..];
    let end = authority.find(['/', '?', '#']).unwrap_or(authority.len());
    let at = authority[..end].rfind('@')?;
    Some(&authority[..at])
}

/// `s` with its URL credentials (`user:password@`) shown as `***@`, for messages; a string
/// that is not a URL but holds an `@` (scp-like `user:password@host:path`) loses what comes
/// before it.
pub fn redact_url(s: &str) -> String {
    match (s.find("://"), url_userinfo(s)) {
        (Some(scheme), Some(info)) => {
            format!("{}***{}", &s[..scheme + 3], &s[scheme + 3 + info.len()..])
        }
        (None, _) => match s.rfind('@') {
            Some(at) => format!("***{}", &s[at..]),
            None => s.to_string(),
        },
        _ => s.to_string(),
    }
}

/// Why repository URL `s` holds credentials, if it does: any user in an `http://` or
/// `https://` URL (a token is often sent as the user name), a password in any other.
pub(super) fn repository_credentials(s: &str) -> Option<&'static str> {
    let info = url_userinfo(s)?;
    let http = s.starts_with("https://") || s.starts_with("http://");
    if http {
        Some(if info.contains(':') {
            "user:…@"
        } else {
            "user@"
        })
    } else if info.contains(':') {
        Some("user:…@")
    } else {
        None
    }
}

/// Why `s` is not an `http://` or `https://` URL with a host, if it is not: the URL parser
/// the probes use (reqwest's) must take it as written.
pub(super) fn http_url_problem(s: &str) -> Option<String> {
    let scheme = s.starts_with("http://") || s.starts_with("https://");
    match url::Url::parse(s) {
        Ok(u) if scheme && matches!(u.scheme(), "http" | "https") && u.has_host() => None,
        Ok(_) => Some(String::new()),
        Err(e) if scheme => Some(format!(": {e}")),
        Err(_) => Some(String::new()),
    }
}

/// What is wrong with text that cannot hold a NUL byte or a line break, if anything.
pub(super) fn one_line_problem(s: &str) -> Option<&'static str> {
    if s.contains('\0') {
        Some("contains a NUL byte: no path, URL, name or environment value can hold one")
    } else if s.contains(['\n', '\r']) {
        Some(
            "contains a line break: a path, URL, name or environment value is one line (git, pm2 and logs read them line by line)",
        )
    } else {
        None
    }
}

/// True for a pm2 log file the controller lets pm2 write: relative to the process's
/// directory without `..` (or pm2's `~` for home), absolute strictly under `root` without
/// `..`, or pm2's `/dev/null` / `NULL` (no log).
pub fn is_log_file(s: &str, root: &str) -> bool {
    if s == "/dev/null" || s == "NULL" {
        return true;
    }
    let p = Path::new(s);
    if p.is_absolute() {
        let root = Path::new(root);
        root.is_absolute()
            && p != root
            && p.starts_with(root)
            && p.components().all(|c| !matches!(c, Component::ParentDir))
    } else {
        !s.starts_with('~') && is_contained_relative(s)
    }
}

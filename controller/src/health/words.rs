//! What a failed verification says to a person, in one line: the app's own error line
//! picked out of what it wrote ([`first_error_line`], [`last_error_line`]), a transport
//! error chain cut to what happened ([`cut_chain`]), and the headline that puts them
//! together with pm2's facts ([`headline`]). Pure: the callers read pm2's list and the
//! app's log files ([`crate::pm2::logs`]) and log the full chains at debug level.

use crate::pm2::{Instance, Status};

/// `host:port` of an `http://` or `https://` URL (the scheme's port when none is given),
/// without credentials; the text itself when it is not such a URL.
pub fn host_port(url: &str) -> String {
    match shipshape_spec::validate::url_host_port(url) {
        Some((host, port)) if host.contains(':') => format!("[{host}]:{port}"),
        Some((host, port)) => format!("{host}:{port}"),
        None => url.to_string(),
    }
}

/// A transport error chain (`error sending request for url (…): client error (Connect):
/// tcp connect error: Connection refused (os error 111)`, as
/// [`crate::prometheus::error_chain`] writes reqwest's) cut to what a person needs, for a
/// request to `url`: `connection refused on 127.0.0.1:4000 (nothing listening)`. A cause
/// it does not know is kept as the chain's innermost part, with the address.
pub fn cut_chain(url: &str, chain: &str) -> String {
    let at = host_port(url);
    let lower = chain.to_ascii_lowercase();
    let has = |s: &str| lower.contains(s);
    if has("connection refused") {
        return format!("connection refused on {at} (nothing listening)");
    }
    if has("connection reset") {
        return format!("connection reset by {at}");
    }
    if has("dns error") || has("failed to lookup address") || has("name or service not known") {
        let host = at.rsplit_once(':').map_or(at.as_str(), |(h, _)| h);
        return format!("cannot resolve {host}");
    }
    if has("network is unreachable") || has("no route to host") {
        return format!("no route to {at}");
    }
    if has("timed out") || has("deadline has elapsed") {
        return format!("{at} did not answer in time");
    }
    if has("connection closed before message completed") || has("incomplete message") {
        return format!("{at} closed the connection before answering");
    }
    if has("invalid http") || has("invalid status") || has("parse error") {
        return format!("{at} did not answer HTTP");
    }
    if has("certificate") || has("tls") || has("ssl") {
        return format!("TLS with {at} failed: {}", innermost(chain));
    }
    format!("{} ({at})", innermost(chain))
}

/// The last part of a `a: b: c` chain, without its `(os error N)`.
fn innermost(chain: &str) -> &str {
    let last = chain.rsplit(": ").next().unwrap_or(chain).trim();
    match last.find(" (os error") {
        Some(i) => &last[..i],
        None => last,
    }
}

/// `line` without the timestamp pm2 puts before each line of a process with `time: true`
/// (`2026-12-02T11:29:33: `): the line is what the app wrote.
fn without_time(line: &str) -> &str {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let stamped = b.len() >= 21
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && &b[19..21] == b": ";
    if stamped { &line[21..] } else { line }
}

/// The lines of what an app wrote, each without pm2's timestamp.
fn app_lines(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    text.lines().map(without_time)
}

/// True for a stack frame (`    at f (file.js:1:2)`), a caret under a source line, a
/// `Node.js v20.11.0` footer or a blank line: never an error line.
fn is_noise(line: &str) -> bool {
    let t = line.trim();
    t.is_empty()
        || t.starts_with("at ")
        || t.chars().all(|c| matches!(c, '^' | '~' | ' '))
        || t.starts_with("Node.js v")
        || is_location(t)
}

/// `/srv/app/server.js:12` or `file:///srv/app/server.mjs:3`: where Node says a throw was,
/// above the source line it echoes.
fn is_location(t: &str) -> bool {
    (t.starts_with('/') || t.starts_with("file://"))
        && t.rsplit_once(':')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// True for a line that names an error the way Node and npm print one: `Error: …`,
/// `TypeError: …`, `Error [ERR_MODULE_NOT_FOUND]: …`, `Uncaught …`, `Cannot find module`,
/// `EADDRINUSE`, `npm ERR!`, `npm error`.
fn is_strong(line: &str) -> bool {
    let names_error = line.match_indices("Error").any(|(i, _)| {
        let after = &line[i + "Error".len()..];
        let before = line[..i].chars().next_back();
        (after.starts_with(": ") || after.starts_with(" [") || after == ":")
            && before.is_none_or(|c| c.is_ascii_alphabetic() || !c.is_alphanumeric())
    });
    names_error
        || line.contains("Uncaught ")
        || line.contains("Cannot find module")
        || line.contains("Cannot find package")
        || line.contains("EADDRINUSE")
        || line.contains("npm ERR!")
        || line.contains("npm error")
}

/// True for a line that looks like trouble without naming an error the usual way.
fn is_weak(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.contains("error") || lower.contains("throw") || lower.contains("fatal")
}

/// True when `text` has a line naming an error the way Node and npm print one.
pub fn names_an_error(text: &str) -> bool {
    app_lines(text).any(|l| !is_noise(l) && is_strong(l))
}

/// The app's first error line in what it wrote (its stderr, preferably): the first line
/// naming an error the way Node does (`Error: DATABASE_URL is not set`, not the source line
/// `throw new Error(…)` Node echoes above it, nor a stack frame), else the first line that
/// mentions an error or a throw, else the last line that is not a stack frame. Trimmed;
/// `None` when nothing but noise was written.
pub fn first_error_line(text: &str) -> Option<&str> {
    let lines = || app_lines(text).filter(|l| !is_noise(l)).map(str::trim);
    lines()
        .find(|l| is_strong(l))
        .or_else(|| lines().find(|l| is_weak(l)))
        .or_else(|| lines().next_back())
}

/// The app's last error line in what it wrote: as [`first_error_line`], the last one of
/// each kind (what it said when it went down most recently).
pub fn last_error_line(text: &str) -> Option<&str> {
    last_named_error(text).or_else(|| app_lines(text).rev().find(|l| !is_noise(l)).map(str::trim))
}

/// The last line that names an error or mentions one (as [`last_error_line`], without
/// falling back to the last thing said).
pub fn last_named_error(text: &str) -> Option<&str> {
    let lines = || {
        app_lines(text)
            .rev()
            .filter(|l| !is_noise(l))
            .map(str::trim)
    };
    lines()
        .find(|l| is_strong(l))
        .or_else(|| lines().find(|l| is_weak(l)))
}

/// What one instance wrote since its release's processes started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Said {
    /// pm2's name.
    pub name: String,
    /// pm2's id.
    pub pm_id: u64,
    /// Its stderr since then.
    pub err: String,
    /// Its stdout since then.
    pub out: String,
}

impl Said {
    /// Its error line ([`first_error_line`] or [`last_error_line`]): stderr first, then
    /// stdout (an app that logs errors with `console.log`).
    fn line(&self, pick: fn(&str) -> Option<&str>) -> Option<&str> {
        pick(&self.err).or_else(|| {
            let out = pick(&self.out)?;
            is_weak(out).then_some(out)
        })
    }
}

/// How pm2 left the processes when the verification failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// An instance restarted since the verification began (`times`).
    Restarted {
        /// pm2's name.
        name: String,
        /// pm2's id.
        pm_id: u64,
        /// Restarts since the verification began.
        times: u64,
    },
    /// An instance is not online (errored, stopped, waiting for a restart).
    NotOnline {
        /// pm2's name.
        name: String,
        /// pm2's id.
        pm_id: u64,
        /// What pm2 says of it.
        status: Status,
    },
}

impl Down {
    /// The instance: pm2's name and id.
    pub fn who(&self) -> (&str, u64) {
        match self {
            Down::Restarted { name, pm_id, .. } | Down::NotOnline { name, pm_id, .. } => {
                (name, *pm_id)
            }
        }
    }
}

/// The first instance of `names` that restarted since `baseline` (pm_id → restarts when
/// the verification began) or is not online (launching aside): what made pm2's facts fail.
pub fn down(
    names: &[&str],
    instances: &[Instance],
    baseline: &std::collections::BTreeMap<u64, u64>,
) -> Option<Down> {
    let mine = || {
        instances
            .iter()
            .filter(|i| names.contains(&i.name.as_str()))
    };
    let restarted = mine().find_map(|i| {
        let before = *baseline.get(&i.pm_id)?;
        (i.restarts > before).then(|| Down::Restarted {
            name: i.name.clone(),
            pm_id: i.pm_id,
            times: i.restarts - before,
        })
    });
    restarted.or_else(|| {
        mine()
            .find(|i| !matches!(i.status, Status::Online | Status::Launching))
            .map(|i| Down::NotOnline {
                name: i.name.clone(),
                pm_id: i.pm_id,
                status: i.status.clone(),
            })
    })
}

/// The headline of a verification that failed on pm2's facts, from what pm2 says (`down`)
/// and what the app wrote (`said`, one per instance): `crashed at start: Error:
/// DATABASE_URL is not set (pm2 web (id 0) restarted 3 time(s))` when no round passed
/// (`ever_passed` false), else `pm2 web (id 1) restarted 2 time(s): Error: lost the
/// database` with the app's last error line. The instance that went down speaks first;
/// another instance of the same process when it wrote nothing. `None` when there is no
/// crash to tell of (pm2's facts failed for another reason: pm2 itself down, a process
/// missing).
pub fn headline(down: Option<&Down>, said: &[Said], ever_passed: bool) -> Option<String> {
    let down = down?;
    let (name, pm_id) = down.who();
    let fact = match down {
        Down::Restarted { times, .. } => {
            format!("pm2 {name} (id {pm_id}) restarted {times} time(s)")
        }
        Down::NotOnline { status, .. } => format!("pm2 {name} (id {pm_id}) is {status}"),
    };
    let pick = if ever_passed {
        last_error_line
    } else {
        first_error_line
    };
    let own = said.iter().filter(|s| s.name == name && s.pm_id == pm_id);
    let others = said.iter().filter(|s| s.name == name && s.pm_id != pm_id);
    let line = own.chain(others).find_map(|s| s.line(pick));
    Some(match (ever_passed, line) {
        (false, Some(line)) => format!("crashed at start: {line} ({fact})"),
        (false, None) => format!("crashed at start ({fact}; no error line in its pm2 logs)"),
        (true, Some(line)) => format!("{fact}: {line}"),
        (true, None) => format!("{fact} (no error line in its pm2 logs)"),
    })
}

/// The headline of a verification that failed with the processes online and nothing
/// listening (`what`: the failure, e.g. `web: connection refused on 127.0.0.1:4000 (nothing
/// listening)`), when no round passed and one of `names` wrote an error: the app failed at
/// start and pm2 kept it online (pm2's fork container keeps a process whose ES module threw
/// while loading alive, listening on nothing). `crashed at start: Error: DATABASE_URL is
/// not set, and pm2 still shows it online: web: connection refused …`. `None` otherwise.
pub fn never_listened(names: &[&str], said: &[Said], what: &str) -> Option<String> {
    if !what.contains("(nothing listening)") {
        return None;
    }
    let line = said
        .iter()
        .filter(|s| names.contains(&s.name.as_str()))
        .find_map(|s| {
            s.line(first_error_line)
                .filter(|l| is_strong(l) || is_weak(l))
        })?;
    Some(format!(
        "crashed at start: {line}, and pm2 still shows it online: {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_CRASH: &str = "Error: DATABASE_URL is not set
    at Object.<anonymous> (/srv/demo/releases/abc/server.js:2:38)
    at Module._compile (node:internal/modules/cjs/loader:1521:14)
    at Object.<anonymous> (/pm2/lib/ProcessContainerFork.js:33:23)
";

    const NODE_CRASH: &str = "/srv/demo/releases/abc/server.js:2
if (!process.env.DATABASE_URL) throw new Error('DATABASE_URL is not set');
                               ^

Error: DATABASE_URL is not set
    at Object.<anonymous> (/srv/demo/releases/abc/server.js:2:38)

Node.js v20.11.0
";

    #[test]
    fn the_error_line_is_the_one_naming_the_error_not_the_source_line_or_the_stack() {
        let rows: &[(&str, &str, Option<&str>)] = &[
            (
                "pm2's fork mode",
                FORK_CRASH,
                Some("Error: DATABASE_URL is not set"),
            ),
            (
                "node's own report",
                NODE_CRASH,
                Some("Error: DATABASE_URL is not set"),
            ),
            (
                "a typed error after other output",
                "listening soon\nTypeError: app.listen is not a function\n    at main (/a.js:3:7)\n",
                Some("TypeError: app.listen is not a function"),
            ),
            (
                "an ES module not found",
                "node:internal/errors:496\n    ErrorCaptureStackTrace(err);\n    ^\n\nError [ERR_MODULE_NOT_FOUND]: Cannot find package 'express' imported from /a/server.js\n",
                Some(
                    "Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'express' imported from /a/server.js",
                ),
            ),
            (
                "a port in use",
                "Error: listen EADDRINUSE: address already in use 127.0.0.1:4000\n    at Server.setupListenHandle [as _listen2] (node:net:1817:16)\n",
                Some("Error: listen EADDRINUSE: address already in use 127.0.0.1:4000"),
            ),
            (
                "npm's own words",
                "npm error Missing script: \"start\"\nnpm error\nnpm error A complete log of this run can be found in: /root/.npm/_logs/x.log\n",
                Some("npm error Missing script: \"start\""),
            ),
            (
                "an error said in lower case",
                "config: fatal: no database configured\n",
                Some("config: fatal: no database configured"),
            ),
            (
                "no error word: the last thing said",
                "starting\nDATABASE_URL is missing, exiting\n",
                Some("DATABASE_URL is missing, exiting"),
            ),
            (
                "pm2's `time: true` timestamps before each line",
                "2026-12-02T11:29:33: Error: DATABASE_URL is not set\n2026-12-02T11:29:33:     at file:///srv/a/src/index.js:3:38\n",
                Some("Error: DATABASE_URL is not set"),
            ),
            ("only stack frames", "    at a (b.js:1:1)\n\n", None),
            ("nothing", "", None),
        ];
        for (what, text, want) in rows {
            assert_eq!(first_error_line(text), *want, "{what}");
        }
    }

    #[test]
    fn the_last_error_line_is_the_newest_one() {
        let text = "Error: first\n    at a (b.js:1:1)\nok again\nError: lost the database connection\n    at Timeout._onTimeout (/a.js:4:24)\n";
        assert_eq!(
            last_error_line(text),
            Some("Error: lost the database connection")
        );
        assert_eq!(first_error_line(text), Some("Error: first"));
    }

    #[test]
    fn a_transport_chain_is_cut_to_what_happened_on_which_address() {
        let url = "http://127.0.0.1:4000/health";
        let rows: &[(&str, &str, &str)] = &[
            (
                url,
                "error sending request for url (http://127.0.0.1:4000/health): client error (Connect): tcp connect error: Connection refused (os error 111)",
                "connection refused on 127.0.0.1:4000 (nothing listening)",
            ),
            (
                url,
                "error sending request for url (http://127.0.0.1:4000/health): client error (SendRequest): connection closed before message completed",
                "127.0.0.1:4000 closed the connection before answering",
            ),
            (
                url,
                "error sending request for url (http://127.0.0.1:4000/health): client error (SendRequest): connection error: Connection reset by peer (os error 104)",
                "connection reset by 127.0.0.1:4000",
            ),
            (
                "http://app.invalid/health",
                "error sending request for url (http://app.invalid/health): client error (Connect): dns error: failed to lookup address information: Name or service not known",
                "cannot resolve app.invalid",
            ),
            (
                "https://u:secret@10.0.0.9/health",
                "error sending request for url (https://10.0.0.9/health): client error (Connect): tcp connect error: No route to host (os error 113)",
                "no route to 10.0.0.9:443",
            ),
            (
                url,
                "error sending request for url (http://127.0.0.1:4000/health): client error (SendRequest): invalid HTTP version parsed",
                "127.0.0.1:4000 did not answer HTTP",
            ),
            (
                url,
                "error sending request for url (http://127.0.0.1:4000/health): something new: Broken pipe (os error 32)",
                "Broken pipe (127.0.0.1:4000)",
            ),
        ];
        for (url, chain, want) in rows {
            let got = cut_chain(url, chain);
            assert_eq!(got, *want, "{chain}");
            assert!(!got.contains("secret"), "{got}");
        }
        assert_eq!(host_port("http://[::1]:8080/x"), "[::1]:8080");
        assert_eq!(host_port("http://[::1]/x"), "[::1]:80");
    }

    #[test]
    fn an_app_online_and_silent_on_its_port_is_told_by_the_error_it_wrote_at_start() {
        let what = "web: connection refused on 127.0.0.1:4000 (nothing listening)";
        let said = |err: &str| Said {
            name: "web".into(),
            pm_id: 0,
            err: err.into(),
            out: String::new(),
        };
        let threw = [said(
            "2026-12-02T11:29:33: Error: DATABASE_URL is not set\n2026-12-02T11:29:33:     at file:///a.js:3:38\n",
        )];
        assert_eq!(
            never_listened(&["web"], &threw, what).as_deref(),
            Some(
                "crashed at start: Error: DATABASE_URL is not set, and pm2 still shows it online: web: connection refused on 127.0.0.1:4000 (nothing listening)"
            )
        );
        // Another process's words, a failure that is not a silent port, or nothing that
        // names an error: the failure is told as it is.
        assert_eq!(never_listened(&["api"], &threw, what), None);
        assert_eq!(
            never_listened(&["web"], &threw, "web: status 500, expected 200"),
            None
        );
        assert_eq!(
            never_listened(&["web"], &[said("warming up the cache\n")], what),
            None
        );
    }

    fn inst(name: &str, pm_id: u64, status: &str, restarts: u64) -> Instance {
        Instance {
            name: name.into(),
            pm_id,
            pid: 1,
            status: status.into(),
            restarts,
            exec_mode: "fork_mode".into(),
            env: Default::default(),
            cpu: 0.0,
            memory: 0,
            logs: Default::default(),
        }
    }

    #[test]
    fn the_headline_says_crashed_at_start_or_restarted_with_the_apps_own_line() {
        let base: std::collections::BTreeMap<u64, u64> = [(0, 0), (1, 0)].into();
        let restarted = down(
            &["web"],
            &[inst("web", 0, "online", 0), inst("web", 1, "online", 3)],
            &base,
        );
        assert_eq!(
            restarted,
            Some(Down::Restarted {
                name: "web".into(),
                pm_id: 1,
                times: 3
            })
        );
        let errored = down(&["web"], &[inst("web", 0, "errored", 0)], &base);
        let said = |pm_id, err: &str| Said {
            name: "web".into(),
            pm_id,
            err: err.into(),
            out: String::new(),
        };
        let crash = [said(0, ""), said(1, FORK_CRASH)];
        assert_eq!(
            headline(restarted.as_ref(), &crash, false).unwrap(),
            "crashed at start: Error: DATABASE_URL is not set (pm2 web (id 1) restarted 3 time(s))"
        );
        assert_eq!(
            headline(errored.as_ref(), &crash, false).unwrap(),
            "crashed at start: Error: DATABASE_URL is not set (pm2 web (id 0) is errored)",
            "an instance that wrote nothing: its sibling's words"
        );
        let late = [said(
            1,
            "Error: first\nError: lost the database connection\n",
        )];
        assert_eq!(
            headline(restarted.as_ref(), &late, true).unwrap(),
            "pm2 web (id 1) restarted 3 time(s): Error: lost the database connection"
        );
        assert_eq!(
            headline(restarted.as_ref(), &[], false).unwrap(),
            "crashed at start (pm2 web (id 1) restarted 3 time(s); no error line in its pm2 logs)"
        );
        let quiet = Said {
            out: "listening on 4000\n".into(),
            ..said(1, "")
        };
        assert_eq!(
            headline(restarted.as_ref(), &[quiet], true).unwrap(),
            "pm2 web (id 1) restarted 3 time(s) (no error line in its pm2 logs)",
            "ordinary stdout is not an error line"
        );
        assert_eq!(
            down(&["web"], &[inst("web", 0, "launching", 0)], &base),
            None
        );
        assert_eq!(headline(None, &crash, false), None);
    }
}

//! Semantic checks on a parsed [`App`]: everything the types alone cannot say.
//! Every problem is reported at once, each with the field path it concerns.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path};

use crate::app::{
    App, Check, CheckKind, EnvValue, HttpCheck, Instances, MAX_INSTANCES, MigrationDriver,
    Migrations, OnRevert, Process, PrometheusCheck, ResourcesCheck, Source,
};

/// One semantic problem, before it is located in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted field path, e.g. `spec.processes[1].name`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Env names the controller sets itself; documents may not declare them.
pub const RESERVED_ENV_PREFIX: &str = "SHIPSHAPE_";

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
fn is_js_number(s: &str) -> bool {
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
fn is_release_owned(s: &str) -> bool {
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

fn is_repository(s: &str) -> bool {
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
fn repository_credentials(s: &str) -> Option<&'static str> {
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
fn http_url_problem(s: &str) -> Option<String> {
    let scheme = s.starts_with("http://") || s.starts_with("https://");
    match url::Url::parse(s) {
        Ok(u) if scheme && matches!(u.scheme(), "http" | "https") && u.has_host() => None,
        Ok(_) => Some(String::new()),
        Err(e) if scheme => Some(format!(": {e}")),
        Err(_) => Some(String::new()),
    }
}

/// What is wrong with text that cannot hold a NUL byte or a line break, if anything.
fn one_line_problem(s: &str) -> Option<&'static str> {
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

/// The problems found so far: every section reports through [`Checker::fail`], with the
/// field path the problem concerns (the loader turns it into a line and column).
struct Checker {
    out: Vec<Violation>,
}

impl Checker {
    /// Report `message` about the field at `path`.
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Violation {
            path: path.into(),
            message: message.into(),
        });
    }

    /// False (and a problem) when `value` holds a NUL byte or a line break.
    fn one_line(&mut self, path: &str, value: &str) -> bool {
        match one_line_problem(value) {
            Some(why) => {
                self.fail(path, why);
                false
            }
            None => true,
        }
    }

    fn env(&mut self, path: &str, env: &BTreeMap<String, EnvValue>) {
        for (key, value) in env {
            let at = format!("{path}.{key}");
            if !is_env_name(key) {
                self.fail(
                    at,
                    format!("{key:?} is not a valid environment variable name"),
                );
            } else if key.starts_with(RESERVED_ENV_PREFIX) {
                self.fail(
                    at,
                    format!("names starting with {RESERVED_ENV_PREFIX} are set by the controller"),
                );
            } else if let EnvValue::String(text) = value {
                self.one_line(&at, text);
            }
        }
    }

    /// The URL a probe requests: one line, `http://` or `https://`, with a host.
    fn probe_url(&mut self, path: &str, url: &str) {
        if self.one_line(path, url)
            && let Some(why) = http_url_problem(url)
        {
            self.fail(
                path,
                format!("{url:?} must be an http:// or https:// URL{why}"),
            );
        }
    }

    fn commands(&mut self, path: &str, commands: &[String]) {
        for (i, c) in commands.iter().enumerate() {
            if c.trim().is_empty() {
                self.fail(format!("{path}[{i}]"), "command must not be empty");
            }
        }
    }

    fn positive(&mut self, path: &str, d: crate::Duration) {
        if d.std().is_zero() {
            self.fail(path, "must be longer than 0s");
        }
    }
}

/// One section of the document's checks: reports what is wrong in its part of `app`.
type Section = fn(&mut Checker, &App);

/// The document's sections, checked in this order (which is the order problems at the same
/// place are reported in; the loader sorts them by line and column afterwards):
///
/// 1. [`metadata`]: the app's name;
/// 2. [`source`]: repository, token file and user, commit;
/// 3. [`releases`]: root and how many to keep;
/// 4. [`build`]: install, steps, env, timeout, cache directories;
/// 5. [`migrations`]: level, driver and its commands, revert policy, database env, dir;
/// 6. [`processes`]: each pm2 process's name, paths, instances, memory limit and env;
/// 7. [`health_checks`]: each check's name, kind and time limits;
/// 8. [`health_rounds`]: interval, thresholds, progress deadline and startup grace;
/// 9. [`pin`]: the document's pin;
/// 10. [`env_file`]: the secrets file;
/// 11. [`hooks`]: after-switch commands and their timeout;
/// 12. [`traffic`]: the slots' ports, the public and confirm addresses, the upstream file,
///     the serving process (which must not set `PORT` itself) and nginx's command.
///
/// `rollback` and `hosts` need nothing beyond their types.
const SECTIONS: [Section; 12] = [
    metadata,
    source,
    releases,
    build,
    migrations,
    processes,
    health_checks,
    health_rounds,
    pin,
    env_file,
    hooks,
    traffic,
];

/// Check everything about `app` that its types cannot express: each of the document's
/// sections in turn (`SECTIONS`: metadata, source, releases, build, migrations, processes,
/// health checks and rounds, pin, envFile, hooks).
pub fn validate(app: &App) -> Vec<Violation> {
    let mut c = Checker { out: Vec::new() };
    for section in SECTIONS {
        section(&mut c, app);
    }
    c.out
}

fn metadata(c: &mut Checker, app: &App) {
    let name = &app.metadata.name;
    if !is_dns_label(name) {
        c.fail(
            "metadata.name",
            format!("{name:?} must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric"),
        );
    }
}

fn source(c: &mut Checker, app: &App) {
    repository(c, &app.spec.source.repository);
    token(c, &app.spec.source);
    if !is_full_sha(&app.spec.source.commit) {
        c.fail(
            "spec.source.commit",
            format!(
                "{:?} must be a full 40-character lowercase hex commit SHA (branches and short SHAs are not reproducible)",
                app.spec.source.commit
            ),
        );
    }
}

fn repository(c: &mut Checker, repository: &str) {
    if !c.one_line("spec.source.repository", repository) {
        // Said above.
    } else if let Some(what) = repository_credentials(repository) {
        c.fail(
            "spec.source.repository",
            format!(
                "{:?} contains credentials ({what}): they would show in status, logs and the API; put the token in a file on the server (mode 0600) and name it with spec.source.tokenFile (the user, if your host needs one, with spec.source.tokenUser)",
                redact_url(repository)
            ),
        );
    } else if !is_repository(repository) {
        c.fail(
            "spec.source.repository",
            format!(
                "{:?} must be a git URL (https://, ssh://, git://, file://, user@host:path) or an absolute path",
                redact_url(repository)
            ),
        );
    }
}

/// `tokenFile` and `tokenUser`.
fn token(c: &mut Checker, source: &Source) {
    let repository = &source.repository;
    if let Some(f) = &source.token_file
        && c.one_line("spec.source.tokenFile", f)
    {
        if !is_absolute_without_parent(f) {
            c.fail(
                "spec.source.tokenFile",
                format!("{f:?} must be an absolute path without '..'"),
            );
        } else if !(repository.starts_with("https://") || repository.starts_with("http://")) {
            c.fail(
                "spec.source.tokenFile",
                "is for https:// repositories (an ssh:// one takes the controller's --git-ssh-key)",
            );
        }
    }
    if let Some(user) = &source.token_user
        && c.one_line("spec.source.tokenUser", user)
    {
        if source.token_file.is_none() {
            c.fail(
                "spec.source.tokenUser",
                "is sent with spec.source.tokenFile's token: set tokenFile too",
            );
        } else if user.is_empty() || user.contains([':', '@', '/']) {
            c.fail(
                "spec.source.tokenUser",
                format!("{user:?} must be a non-empty user name without ':', '@' or '/'"),
            );
        }
    }
}

fn is_absolute_without_parent(f: &str) -> bool {
    let p = Path::new(f);
    p.is_absolute() && !p.components().any(|x| matches!(x, Component::ParentDir))
}

fn releases(c: &mut Checker, app: &App) {
    let releases = &app.spec.releases;
    let root = Path::new(&releases.root);
    if !c.one_line("spec.releases.root", &releases.root) {
        // Said above.
    } else if !root.is_absolute() {
        c.fail(
            "spec.releases.root",
            format!("{:?} must be an absolute path", releases.root),
        );
    } else if root.components().any(|x| matches!(x, Component::ParentDir)) || root == Path::new("/")
    {
        c.fail(
            "spec.releases.root",
            format!("{:?} must not be / or contain '..'", releases.root),
        );
    }
    if releases.keep < 1 {
        c.fail("spec.releases.keep", "must be at least 1");
    }
}

fn build(c: &mut Checker, app: &App) {
    let build = &app.spec.build;
    if let Some(install) = &build.install
        && install.trim().is_empty()
    {
        c.fail("spec.build.install", "command must not be empty");
    }
    c.commands("spec.build.steps", &build.steps);
    c.env("spec.build.env", &build.env);
    c.positive("spec.build.timeout", build.timeout);
    for (i, dir) in build.cache.iter().enumerate() {
        let at = format!("spec.build.cache[{i}]");
        if c.one_line(&at, dir) && (!is_contained_relative(dir) || is_release_owned(dir)) {
            c.fail(
                at,
                format!("{dir:?} must be a directory inside the release (relative, no '..'), not the release itself nor node_modules"),
            );
        }
    }
}

fn migrations(c: &mut Checker, app: &App) {
    let Some(m) = &app.spec.migrations else {
        return;
    };
    if !is_level(&m.level) {
        c.fail(
            "spec.migrations.level",
            format!("{:?} must be letters, digits, '-', '_' or '.'", m.level),
        );
    }
    migration_driver(c, m);
    c.positive("spec.migrations.timeout", m.timeout);
    if !is_env_name(&m.database_env) {
        c.fail(
            "spec.migrations.databaseEnv",
            format!(
                "{:?} is not a valid environment variable name",
                m.database_env
            ),
        );
    }
    if let Some(dir) = &m.dir {
        if m.driver != MigrationDriver::Dbmate {
            c.fail(
                "spec.migrations.dir",
                "dir is only used with driver: dbmate",
            );
        } else if c.one_line("spec.migrations.dir", dir) && !is_contained_relative(dir) {
            c.fail(
                "spec.migrations.dir",
                format!("{dir:?} must be a path inside the release (relative, no '..')"),
            );
        }
    }
    if m.driver != MigrationDriver::Command && app.spec.env_file.is_none() {
        c.fail(
            "spec.migrations",
            format!(
                "driver {} reads {} from envFile: set spec.envFile",
                match m.driver {
                    MigrationDriver::Prisma => "prisma",
                    _ => "dbmate",
                },
                m.database_env
            ),
        );
    }
}

/// The driver's own commands and what `onRevert` needs of them.
fn migration_driver(c: &mut Checker, m: &Migrations) {
    match (m.driver, &m.command) {
        (MigrationDriver::Command, None) => c.fail(
            "spec.migrations.command",
            "driver: command needs command.status and command.up",
        ),
        (MigrationDriver::Command, Some(cmd)) => {
            if m.on_revert == OnRevert::Down && cmd.down.is_none() {
                c.fail(
                    "spec.migrations.onRevert",
                    "onRevert: down needs command.down",
                );
            }
        }
        (_, Some(_)) => c.fail(
            "spec.migrations.command",
            "command is only used with driver: command",
        ),
        (MigrationDriver::Prisma, None) => {
            if m.on_revert == OnRevert::Down {
                c.fail(
                    "spec.migrations.onRevert",
                    "prisma has no down-migrations: use keep (expand/contract) or restore",
                );
            }
        }
        (MigrationDriver::Dbmate, None) => {}
    }
    if m.on_revert == OnRevert::Restore && (m.backup.is_none() || m.restore.is_none()) {
        c.fail(
            "spec.migrations.onRevert",
            "onRevert: restore needs both a backup and a restore command",
        );
    }
}

fn processes(c: &mut Checker, app: &App) {
    let spec = &app.spec;
    if spec.processes.is_empty() {
        c.fail("spec.processes", "at least one process is needed");
    }
    let mut seen = HashSet::new();
    for (i, p) in spec.processes.iter().enumerate() {
        let at = format!("spec.processes[{i}]");
        process_name(c, &at, &p.name, &mut seen);
        process_paths(c, &at, p, &spec.releases.root);
        process_limits(c, &at, p);
        c.env(&format!("{at}.env"), &p.env);
    }
}

/// A process's name: pm2's rules, not one pm2 reads as something else, not declared twice.
fn process_name<'a>(c: &mut Checker, at: &str, name: &'a str, seen: &mut HashSet<&'a str>) {
    if !is_process_name(name) {
        c.fail(
            format!("{at}.name"),
            format!("{name:?} must be letters, digits, '-', '_' or '.', starting alphanumeric"),
        );
    } else if let Some(why) = pm2_reserved(name) {
        c.fail(format!("{at}.name"), why);
    } else if !seen.insert(name) {
        c.fail(format!("{at}.name"), format!("{name:?} is declared twice"));
    }
}

/// A process's script, cwd, interpreter and log files.
fn process_paths(c: &mut Checker, at: &str, p: &Process, root: &str) {
    if c.one_line(&format!("{at}.script"), &p.script) && !is_contained_relative(&p.script) {
        c.fail(
            format!("{at}.script"),
            format!(
                "{:?} must be a path inside the release (relative, no '..')",
                p.script
            ),
        );
    }
    if let Some(cwd) = &p.cwd
        && c.one_line(&format!("{at}.cwd"), cwd)
        && !is_contained_relative(cwd)
    {
        c.fail(
            format!("{at}.cwd"),
            format!("{cwd:?} must be a path inside the release (relative, no '..')"),
        );
    }
    if let Some(interpreter) = &p.interpreter {
        c.one_line(&format!("{at}.interpreter"), interpreter);
    }
    for (field, file) in [("out_file", &p.out_file), ("error_file", &p.error_file)] {
        if let Some(file) = file
            && c.one_line(&format!("{at}.{field}"), file)
            && !is_log_file(file, root)
        {
            c.fail(
                format!("{at}.{field}"),
                format!(
                    "{file:?} must be a path inside the release (relative, no '..' or '~') or under spec.releases.root ({root}), or /dev/null"
                ),
            );
        }
    }
}

/// A process's instances and memory limit.
fn process_limits(c: &mut Checker, at: &str, p: &Process) {
    match p.instances {
        Some(Instances::Count(0)) => {
            c.fail(format!("{at}.instances"), "must be at least 1 (or max)");
        }
        Some(Instances::Count(n)) if n > MAX_INSTANCES => c.fail(
            format!("{at}.instances"),
            format!("{n} is more than {MAX_INSTANCES}, the most instances of one process"),
        ),
        _ => {}
    }
    if let Some(mem) = &p.max_memory_restart {
        let digits = mem.trim_end_matches(['K', 'M', 'G']);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || mem.len() - digits.len() > 1
        {
            c.fail(
                format!("{at}.max_memory_restart"),
                format!("{mem:?} must be a size like 300M, 1G or 500000K"),
            );
        }
    }
}

fn health_checks(c: &mut Checker, app: &App) {
    let mut names = HashSet::new();
    for (i, check) in app.spec.health.checks.iter().enumerate() {
        let at = format!("spec.health.checks[{i}]");
        if !is_dns_label(&check.name) {
            c.fail(
                format!("{at}.name"),
                format!("{:?} must be a short lowercase name", check.name),
            );
        } else if !names.insert(check.name.as_str()) {
            c.fail(
                format!("{at}.name"),
                format!("{:?} is declared twice", check.name),
            );
        }
        check_kind(c, &at, check);
        c.positive(&format!("{at}.timeout"), check.timeout);
        if let Some(max) = check.max_latency {
            c.positive(&format!("{at}.maxLatency"), max);
            if max > check.timeout {
                c.fail(
                    format!("{at}.maxLatency"),
                    format!("{max} is longer than the check's timeout {}", check.timeout),
                );
            }
        }
    }
}

/// What a check probes, by its kind (that it has exactly one is said when it is parsed).
fn check_kind(c: &mut Checker, at: &str, check: &Check) {
    match &check.kind {
        CheckKind::Http(http) => http_check(c, at, http),
        CheckKind::Prometheus(prom) => prometheus_check(c, at, prom),
        CheckKind::Resources(res) => {
            resources_check(c, at, res);
            if check.max_latency.is_some() {
                c.fail(
                    format!("{at}.maxLatency"),
                    "a resources check reads what pm2 reports: it has no latency",
                );
            }
        }
    }
}

fn http_check(c: &mut Checker, at: &str, http: &HttpCheck) {
    c.probe_url(&format!("{at}.http.url"), &http.url);
    if !(100..=599).contains(&http.expect_status) {
        c.fail(
            format!("{at}.http.expectStatus"),
            "must be an HTTP status (100-599)",
        );
    }
}

fn prometheus_check(c: &mut Checker, at: &str, prom: &PrometheusCheck) {
    c.probe_url(&format!("{at}.prometheus.url"), &prom.url);
    if prom.query.trim().is_empty() {
        c.fail(format!("{at}.prometheus.query"), "must not be empty");
    }
    if prom.below.is_none() && prom.above.is_none() {
        c.fail(
            format!("{at}.prometheus"),
            "needs a threshold: below, above or both",
        );
    }
}

fn resources_check(c: &mut Checker, at: &str, res: &ResourcesCheck) {
    if res.max_cpu.is_none() && res.max_memory.is_none() {
        c.fail(
            format!("{at}.resources"),
            "needs a limit: maxCpu, maxMemory or both",
        );
    }
    if let Some(cpu) = res.max_cpu
        && cpu.value() <= 0.0
    {
        c.fail(format!("{at}.resources.maxCpu"), "must be more than 0%");
    }
    if let Some(mem) = res.max_memory
        && mem.bytes() == 0
    {
        c.fail(
            format!("{at}.resources.maxMemory"),
            "must be more than 0 (at least 1K)",
        );
    }
}

/// The rounds: interval, thresholds, and the deadlines they must fit in.
fn health_rounds(c: &mut Checker, app: &App) {
    let h = &app.spec.health;
    c.positive("spec.health.interval", h.interval);
    if h.success_threshold < 1 {
        c.fail("spec.health.successThreshold", "must be at least 1");
    }
    if h.failure_threshold < 1 {
        c.fail("spec.health.failureThreshold", "must be at least 1");
    }
    let least = h
        .interval
        .std()
        .saturating_mul(h.success_threshold.saturating_sub(1));
    if h.progress_deadline.std() <= least {
        c.fail(
            "spec.health.progressDeadline",
            format!(
                "{} leaves no time for {} passing rounds {} apart",
                h.progress_deadline, h.success_threshold, h.interval
            ),
        );
    }
    if let Some(grace) = h.startup_grace
        && grace.std() >= h.progress_deadline.std()
    {
        c.fail(
            "spec.health.startupGrace",
            format!(
                "{grace} is not shorter than progressDeadline {}: no round could ever fail",
                h.progress_deadline
            ),
        );
    }
}

fn pin(c: &mut Checker, app: &App) {
    let Some(pin) = &app.spec.pin else {
        return;
    };
    if pin.reason.trim().is_empty() {
        c.fail("spec.pin.reason", "a pin needs a reason");
    }
    if let Some(commit) = &pin.app_commit
        && !is_full_sha(commit)
    {
        c.fail(
            "spec.pin.appCommit",
            format!("{commit:?} must be a full 40-character lowercase hex commit SHA"),
        );
    }
}

fn env_file(c: &mut Checker, app: &App) {
    if let Some(f) = &app.spec.env_file
        && c.one_line("spec.envFile", f)
        && !is_absolute_without_parent(f)
    {
        c.fail(
            "spec.envFile",
            format!("{f:?} must be an absolute path without '..'"),
        );
    }
}

fn hooks(c: &mut Checker, app: &App) {
    c.commands("spec.hooks.afterSwitch", &app.spec.hooks.after_switch);
    c.positive("spec.hooks.timeout", app.spec.hooks.timeout);
}

fn traffic(c: &mut Checker, app: &App) {
    let Some(t) = &app.spec.traffic else { return };
    let public_port = match t.public.strip_prefix("http://").map(|rest| {
        let host_port = rest.trim_end_matches('/');
        host_port
            .rsplit_once(':')
            .and_then(|(host, port)| (!host.is_empty() && !host.contains('/')).then_some(port))
            .and_then(|port| port.parse::<u16>().ok())
    }) {
        Some(Some(port)) if port > 0 => Some(port),
        _ => {
            c.fail(
                "spec.traffic.public",
                format!(
                    "{:?} must be http://HOST:PORT, the address nginx serves the app on (e.g. http://127.0.0.1:8080)",
                    t.public
                ),
            );
            None
        }
    };
    if t.ports.len() != 2 || t.ports[0] == t.ports[1] || t.ports.contains(&0) {
        c.fail(
            "spec.traffic.ports",
            format!(
                "{:?} must be two different ports (slots take turns on them)",
                t.ports
            ),
        );
    }
    for (i, port) in t.ports.iter().enumerate() {
        if Some(*port) == public_port {
            c.fail(
                format!("spec.traffic.ports[{i}]"),
                format!("{port} is the public address's port: nginx listens there"),
            );
        }
        if *port == t.confirm_port {
            c.fail(
                format!("spec.traffic.ports[{i}]"),
                format!("{port} is also spec.traffic.confirmPort"),
            );
        }
    }
    if t.confirm_port == 0 || Some(t.confirm_port) == public_port {
        c.fail(
            "spec.traffic.confirmPort",
            format!(
                "{} must be a port of its own (not 0, not the public address's)",
                t.confirm_port
            ),
        );
    }
    if c.one_line("spec.traffic.upstreamFile", &t.upstream_file)
        && !is_absolute_without_parent(&t.upstream_file)
    {
        c.fail(
            "spec.traffic.upstreamFile",
            format!(
                "{:?} must be an absolute path without '..'",
                t.upstream_file
            ),
        );
    }
    let upstream = t.upstream_name(&app.metadata.name);
    if upstream.is_empty()
        || !upstream
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    {
        c.fail(
            "spec.traffic.upstream",
            format!("{upstream:?} must be letters, digits, '_' or '-'"),
        );
    }
    match (&t.process, t.serving(&app.spec.processes)) {
        (Some(name), None) => c.fail(
            "spec.traffic.process",
            format!("{name:?} is not one of spec.processes"),
        ),
        (_, Some(p)) => {
            let i = app
                .spec
                .processes
                .iter()
                .position(|q| q.name == p.name)
                .unwrap_or(0);
            let fork = p.exec_mode.unwrap_or_default() == crate::app::ExecMode::Fork;
            let many = !matches!(p.instances, None | Some(crate::app::Instances::Count(1)));
            if fork && many {
                c.fail(
                    format!("spec.processes[{i}].instances"),
                    "in fork mode each instance is its own process on the slot's one PORT, and only one can listen there: use exec_mode: cluster for more than one instance",
                );
            }
            if p.env.contains_key("PORT") {
                c.fail(
                    format!("spec.processes[{i}].env.PORT"),
                    "set by the controller in traffic mode: each slot gets its port from spec.traffic.ports",
                );
            }
        }
        (None, None) => {}
    }
    if app.spec.releases.keep < 2 {
        c.fail(
            "spec.releases.keep",
            format!(
                "{} is too few with spec.traffic: the warm slot runs the previous release from its own directory, keep at least 2",
                app.spec.releases.keep
            ),
        );
    }
    for (i, check) in app.spec.health.checks.iter().enumerate() {
        let Some(h) = check.http() else { continue };
        let port = h
            .url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
            .and_then(|authority| authority.rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<u16>().ok());
        if let Some(port) = port.filter(|p| t.ports.contains(p)) {
            c.fail(
                format!("spec.health.checks[{i}].http.url"),
                format!(
                    "{:?} probes slot port {port} directly: whichever slot holds it would answer (after a switch, the warm one); point it at spec.traffic.public ({}), whose checks run on the new slot's own port before the switch and through nginx after it",
                    h.url, t.public
                ),
            );
        }
    }
    c.one_line("spec.traffic.nginx.binary", &t.nginx.binary);
    for (i, a) in t.nginx.args.iter().enumerate() {
        c.one_line(&format!("spec.traffic.nginx.args[{i}]"), a);
    }
    c.positive("spec.traffic.nginx.timeout", t.nginx.timeout);
    c.positive("spec.traffic.drainTimeout", t.drain_timeout);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shas_must_be_full_lowercase_hex() {
        assert!(is_full_sha("3f2a1c9e0b7d4c6a8e1f2a3b4c5d6e7f8a9b0c1d"));
        assert!(!is_full_sha("3f2a1c9"));
        assert!(!is_full_sha("3F2A1C9E0B7D4C6A8E1F2A3B4C5D6E7F8A9B0C1D"));
        assert!(!is_full_sha("main"));
        assert!(!is_full_sha("3f2a1c9e0b7d4c6a8e1f2a3b4c5d6e7f8a9b0c1g"));
    }

    #[test]
    fn relative_paths_cannot_escape() {
        assert!(is_contained_relative("server.js"));
        assert!(is_contained_relative("./node_modules/next/dist/bin/next"));
        assert!(!is_contained_relative("../other/server.js"));
        assert!(!is_contained_relative("a/../../b"));
        assert!(!is_contained_relative("/etc/passwd"));
        assert!(!is_contained_relative(""));
    }

    #[test]
    fn build_caches_must_be_directories_of_the_release_the_controller_does_not_own() {
        assert!(!is_release_owned(".next/cache"));
        assert!(!is_release_owned("./.cache/build"));
        assert!(is_release_owned("."));
        assert!(is_release_owned("node_modules/.cache"));
        assert!(is_release_owned("./node_modules"));
        assert!(is_release_owned(".shipshape-release.json"));
    }

    #[test]
    fn repositories_are_urls_or_absolute_paths() {
        for ok in [
            "https://git.example.com/a.git",
            "git@github.com:acme/app.git",
            "/srv/git/app",
            "file:///srv/git/app",
        ] {
            assert!(is_repository(ok), "{ok}");
        }
        for bad in [
            "",
            "app",
            "./app",
            "--upload-pack=x",
            "https://",
            "/srv/../etc",
        ] {
            assert!(!is_repository(bad), "{bad}");
        }
    }

    #[test]
    fn credentials_in_a_repository_url_are_found_and_redacted() {
        assert_eq!(
            url_userinfo("https://u:s3cret@h.example/x.git"),
            Some("u:s3cret")
        );
        assert_eq!(
            url_userinfo("https://h.example/x@y.git"),
            None,
            "in the path"
        );
        assert_eq!(url_userinfo("https://u:p@ss@h/x"), Some("u:p@ss"));
        assert_eq!(url_userinfo("/srv/git/app"), None);
        assert_eq!(
            redact_url("https://u:s3cret@h.example/x.git"),
            "https://***@h.example/x.git"
        );
        assert_eq!(redact_url("https://u:p@ss@h/x"), "https://***@h/x");
        assert_eq!(redact_url("u:s3cret@h:x.git"), "***@h:x.git");
        assert_eq!(redact_url("https://h/x.git"), "https://h/x.git");
        for bad in [
            "https://u:s3cret@h/x.git",
            "https://ghp_s3cret@h/x.git",
            "http://u:s3cret@127.0.0.1:1/x.git",
            "ssh://git:s3cret@h/x.git",
        ] {
            assert!(repository_credentials(bad).is_some(), "{bad}");
        }
        for ok in [
            "ssh://git@h/x.git",
            "git@github.com:acme/app.git",
            "https://h/x.git",
            "file:///srv/git/app",
        ] {
            assert_eq!(repository_credentials(ok), None, "{ok}");
        }
    }

    /// The problems of a minimal document whose `source` block is `source` (YAML lines).
    fn source_problems(source: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: shipshape/v1alpha1\nkind: App\nmetadata:\n  name: demo\nspec:\n  source:\n{source}    commit: 3f2a1c9e0b7d4c6a8e1f2a3b4c5d6e7f8a9b0c1d\n  releases:\n    root: /srv/demo\n  processes:\n    - name: demo-web\n      script: server.js\n  health:\n    checks: []\n"
        );
        match crate::load_str(&text, "demo.yaml") {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_token_file_is_an_absolute_path_for_an_https_repository_and_its_user_needs_it() {
        let https = "    repository: https://git.example.com/a.git\n";
        assert_eq!(
            source_problems(&format!(
                "{https}    tokenFile: /etc/shipshape/t\n    tokenUser: oauth2\n"
            )),
            Vec::<String>::new()
        );
        let bad = [
            (
                format!("{https}    tokenFile: t\n"),
                "spec.source.tokenFile: \"t\" must be an absolute path",
            ),
            (
                "    repository: ssh://git@h/a.git\n    tokenFile: /etc/t\n".to_string(),
                "spec.source.tokenFile: is for https:// repositories",
            ),
            (
                format!("{https}    tokenUser: oauth2\n"),
                "spec.source.tokenUser: is sent with",
            ),
            (
                format!("{https}    tokenFile: /etc/t\n    tokenUser: \"a:b\"\n"),
                "spec.source.tokenUser: \"a:b\" must be a non-empty user name",
            ),
        ];
        for (source, said) in bad {
            let problems = source_problems(&source);
            assert!(
                problems.iter().any(|p| p.contains(said)),
                "{source}: {problems:?}"
            );
        }
    }

    #[test]
    fn names_and_levels() {
        assert!(is_dns_label("prompthub"));
        assert!(!is_dns_label("PromptHub"));
        assert!(!is_dns_label("-x"));
        assert!(is_process_name("prompthub-worker.1"));
        assert!(!is_process_name("a b"));
        assert!(is_level("20251020093000_add_search_index"));
        assert!(!is_level("1; drop table"));
        assert!(is_env_name("DATABASE_URL"));
        assert!(!is_env_name("1X"));
    }
}

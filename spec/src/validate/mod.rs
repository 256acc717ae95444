//! Semantic checks on a parsed [`App`]: everything the types alone cannot say.
//! Every problem is reported at once, each with the field path it concerns.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path};

use crate::app::{
    App, Check, CheckKind, EnvValue, HttpCheck, Instances, MAX_INSTANCES, MigrationDriver,
    Migrations, OnRevert, Process, PrometheusCheck, ResourcesCheck, Source,
};

mod health;
mod processes;
mod rollout;
mod rules;
mod traffic;
mod traps;

use health::{health_checks, health_rounds};
use processes::processes;
use rollout::rollout;
use rules::*;
pub use rules::{
    is_contained_relative, is_dns_label, is_env_name, is_full_sha, is_level, is_log_file,
    is_process_name, pm2_reserved, redact_url, url_userinfo,
};
use traffic::traffic;
pub use traps::{package_manager, url_host_port};

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
/// 6. [`processes`]: each pm2 process's name, paths, instances, memory limit and env, and no
///    package manager (`npm`, `yarn` …) as a cluster-mode script;
/// 7. [`health_checks`]: each check's name, kind and time limits;
/// 8. [`health_rounds`]: interval, thresholds, progress deadline and startup grace;
/// 9. [`pin`]: the document's pin;
/// 10. [`env_file`]: the secrets file;
/// 11. [`hooks`]: after-switch commands and their timeout;
/// 12. [`traffic`]: the slots' ports, the public and confirm addresses, the upstream file,
///     the serving process (which must not set `PORT` itself) and nginx's command;
/// 13. [`rollout`]: the fleet's Prometheus, the waves' names, hosts and parallelism, and its
///     time limits.
///
/// `rollback` and `hosts` need nothing beyond their types.
const SECTIONS: [Section; 13] = [
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
    rollout,
];

/// What in `app` probably does not do what it seems to, though it can be applied (the
/// document loads; `validate` and `plan` show these): a package manager as a fork-mode
/// script whose memory or CPU is watched, an `http` check of this host on a port no
/// process listens on.
pub fn warnings(app: &App) -> Vec<Violation> {
    let mut c = Checker { out: Vec::new() };
    traps::warnings(&mut c, app);
    c.out
}

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

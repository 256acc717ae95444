//! `shipshape init`: an existing pm2 ecosystem file turned into an App document to
//! review and commit, keeping pm2's own field names for the processes.
//!
//! # Layout
//! - [`read`]: the file as pm2 reads it (`.js`/`.cjs`/`.mjs` through node, ES modules
//!   included; `.json`; `.yaml`), its apps found in each shape pm2 takes.
//! - [`fields`]: pm2's fields and every spelling of each; the ones dropped and why.
//! - [`values`]: pm2's loose values (`instances: '3'`, `-1`, `min_uptime: 10s`) read.
//! - [`translate`]: each pm2 app's fields carried, translated, dropped or refused.
//! - [`build`]: the install command from the lockfile, a build step only for a `build`
//!   script, and what `script: npm` really starts.
//! - [`health`]: the health check from the env's PORT and the routes in the code.
//! - [`report`]: the notes, warnings and errors on stderr, one line each, located.
//! - Here: the options, the document's text (its `# TODO:` comments), and writing it
//!   (nothing is written when any problem is an error).

pub mod build;
pub mod fields;
pub mod health;
pub mod read;
pub mod report;
pub mod translate;
pub mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

use report::{Locator, Report};

/// The schema file `--output` writes beside the document, and the `$schema` comment names.
pub const SCHEMA_FILE: &str = "app.schema.json";

/// A placeholder commit (init could not read one from git).
const NO_COMMIT: &str = "0000000000000000000000000000000000000000";

/// Why `shipshape init` could not read the ecosystem file.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The ecosystem file cannot be read (or resolved).
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file name pm2 does not read as an ecosystem file.
    #[error(
        "{}: pm2 reads ecosystem files named .js, .cjs, .mjs, .json, .yaml or .yml",
        path.display()
    )]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// node could not be run.
    #[error("running node (needed to read a JavaScript ecosystem file): {0}")]
    Node(#[source] std::io::Error),
    /// node did not finish in time (the file waits on something).
    #[error("node did not finish loading {} within {after:?}: does the file wait on something (a server, stdin)?", path.display())]
    NodeTimeout {
        /// The file.
        path: PathBuf,
        /// The limit.
        after: Duration,
    },
    /// node could not evaluate the file.
    #[error("node could not load {}:\n{stderr}", path.display())]
    NodeFailed {
        /// The file.
        path: PathBuf,
        /// What node printed on stderr (its first lines).
        stderr: String,
    },
    /// The file (or what node made of it) is not JSON.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// serde's reason (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The YAML file does not parse.
    #[error("{}: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's reason (with line and column).
        message: String,
    },
    /// It declares no pm2 app.
    #[error("{}: no pm2 apps found (pm2 reads {{apps: [...]}}, a list of apps, or one app)", path.display())]
    NoApps {
        /// The file.
        path: PathBuf,
    },
}

/// What to build the document from.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The ecosystem file.
    pub ecosystem: PathBuf,
    /// The app's name (default: the first pm2 app's).
    pub name: Option<String>,
    /// The app's repository (default: the git remote `origin`, else the repository's path).
    pub repository: Option<String>,
    /// The commit (default: the repository's HEAD).
    pub commit: Option<String>,
    /// The releases root (default `/srv/<name>`).
    pub root: Option<String>,
    /// The health URL (default: guessed from the app).
    pub health_url: Option<String>,
    /// The `env_<name>` block to merge over `env` (`pm2 start --env NAME`).
    pub env: Option<String>,
    /// Write the document here (and [`SCHEMA_FILE`] beside it) instead of standard output.
    pub output: Option<PathBuf>,
    /// Replace `output` if it exists.
    pub force: bool,
}

/// The document's text and the report, or the report alone when an error stops it.
pub fn document(opts: &Options) -> Result<(String, Report), (Option<InitError>, Report)> {
    let mut report = Report::default();
    let eco = read::read(&opts.ecosystem).map_err(|e| (Some(e), Report::default()))?;
    let shown_dir = opts
        .ecosystem
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let loc = Locator::new(&opts.ecosystem.display().to_string(), &eco.text);

    for (key, _) in &eco.extra {
        let why = match key.as_str() {
            "deploy" => {
                "pm2 deploy is what shipshape replaces: the repository and commit are spec.source"
            }
            _ => "not part of an app",
        };
        report.warn(
            format!("{}: {key}", loc.at(loc.key_line(1, key))),
            format!("dropped: {why}"),
        );
    }
    if let Some(env) = &opts.env {
        let any = eco
            .apps
            .iter()
            .any(|a| a.get(format!("env_{env}")).is_some());
        if !any {
            report.error(
                loc.file(),
                format!("--env {env}: no app has an env_{env} block (pm2 would start with env alone; is it a typo?)"),
            );
        }
    }
    let mut processes = Vec::new();
    for (i, app) in eco.apps.iter().enumerate() {
        let mut ctx = translate::Ctx {
            env: opts.env.as_deref(),
            loc: &loc,
            report: &mut report,
        };
        processes.extend(translate::translate(i, app, &mut ctx));
    }
    let pkg = build::Package::read(&eco.dir, &shown_dir, &mut report);
    for t in &mut processes {
        let line = loc.key_line(loc.app_line(&t.process.name), "script");
        let at = format!("{}: app {}: script", loc.at(line), t.process.name);
        build::package_manager_script(t, &pkg, &at, &mut report);
    }
    if report.errors() > 0 || processes.is_empty() {
        return Err((None, report));
    }

    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| app_name(&processes[0].app));
    let root = opts.root.clone().unwrap_or_else(|| format!("/srv/{name}"));
    let (repository, commit, source_todo) = source(opts, &eco, &mut report);
    let env_file = env_file(&processes, &root, &mut report);
    let build = build::build(&eco.dir, &shown_dir, &pkg, &mut report);
    let checks = match &opts.health_url {
        Some(url) => vec![health::CheckGuess {
            name: processes[0].process.name.clone(),
            url: url.clone(),
            todo: None,
        }],
        None => health::health(&mut processes, &eco.dir, &shown_dir, &mut report),
    };
    if report.errors() > 0 {
        return Err((None, report));
    }

    let mut out = String::new();
    let push = |out: &mut String, s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    push(
        &mut out,
        &format!("# yaml-language-server: $schema={SCHEMA_FILE}"),
    );
    push(
        &mut out,
        &format!(
            "# Made by `shipshape init` from {} ({}{}).",
            opts.ecosystem.display(),
            eco.format.describe(),
            opts.env
                .as_ref()
                .map_or(String::new(), |e| format!("; --env {e}"))
        ),
    );
    push(
        &mut out,
        &format!(
            "# The schema named above is this binary's: `shipshape schema > {SCHEMA_FILE}` beside this file (init --output writes it)."
        ),
    );
    push(
        &mut out,
        "apiVersion: shipshape/v1alpha1\nkind: App\nmetadata:",
    );
    push(&mut out, &format!("  name: {}", scalar(&name)));
    push(&mut out, "spec:\n  source:");
    push(
        &mut out,
        &format!("    repository: {}", scalar(&repository)),
    );
    if let Some(todo) = &source_todo {
        push(&mut out, &format!("    # TODO: {todo}"));
    }
    push(&mut out, &format!("    commit: {}", scalar(&commit)));
    push(
        &mut out,
        &format!("  releases:\n    root: {}\n    keep: 5", scalar(&root)),
    );
    if let Some(f) = &env_file {
        push(&mut out, &format!("  envFile: {}", scalar(f)));
    }
    if build.install.is_some() || !build.steps.is_empty() {
        push(&mut out, "  build:");
        if let Some(i) = &build.install {
            push(&mut out, &format!("    install: {}", scalar(i)));
        }
        if !build.steps.is_empty() {
            push(&mut out, "    steps:");
            for s in &build.steps {
                push(&mut out, &format!("      - {}", scalar(s)));
            }
        }
    }
    push(&mut out, "  processes:");
    let list: Vec<_> = processes.iter().map(|t| &t.process).collect();
    for line in shipshape_spec::load::to_yaml(&list).lines() {
        push(&mut out, &format!("    {line}"));
    }
    push(&mut out, "  health:\n    checks:");
    for c in &checks {
        if let Some(todo) = &c.todo {
            push(&mut out, &format!("      # TODO: {todo}"));
        }
        push(&mut out, &format!("      - name: {}", scalar(&c.name)));
        push(
            &mut out,
            &format!("        http:\n          url: {}", scalar(&c.url)),
        );
        push(&mut out, "        timeout: 2s");
    }
    push(
        &mut out,
        "    interval: 2s\n    successThreshold: 3\n    failureThreshold: 3\n    progressDeadline: 5m",
    );
    push(&mut out, "  rollback:\n    auto: true\n    window: 30m");

    // The document must load; if it does not, each problem is an error (nothing written).
    let shown = opts
        .output
        .as_ref()
        .map_or("(init)".to_string(), |p| p.display().to_string());
    if let Err(e) = shipshape_spec::load_str(&out, &shown) {
        for line in e.to_string().lines() {
            report.error("", format!("the document made does not load: {line}"));
        }
        return Err((None, report));
    }
    Ok((out, report))
}

/// The document's `metadata.name` from a pm2 name: lowercase, `-` for anything else.
fn app_name(process: &str) -> String {
    let mut name: String = process
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').to_string();
    name.truncate(63);
    if name.is_empty() { "app".into() } else { name }
}

/// A scalar as YAML writes it (quoted when it must be).
fn scalar(s: &str) -> String {
    shipshape_spec::load::to_yaml(&s).trim_end().to_string()
}

/// The repository and commit: the flags, else git's `origin` and HEAD of the repository
/// holding the ecosystem file (else pm2 deploy's `repo`, else the repository's own path),
/// with a TODO when one is a placeholder.
fn source(
    opts: &Options,
    eco: &read::Ecosystem,
    report: &mut Report,
) -> (String, String, Option<String>) {
    let git = |args: &[&str]| -> Option<String> {
        let mut cmd = std::process::Command::new("git");
        cmd.arg("-C").arg(&eco.dir).args(args);
        let (status, out, _) = read::run_with_timeout(&mut cmd, Duration::from_secs(10)).ok()??;
        status
            .success()
            .then(|| String::from_utf8_lossy(&out).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let toplevel = git(&["rev-parse", "--show-toplevel"]);
    if let Some(top) = &toplevel
        && std::fs::canonicalize(top).ok().as_deref() != Some(eco.dir.as_path())
    {
        report.warn(
            "source",
            format!("the ecosystem file is not at the root of its repository ({top}): releases are the whole repository, so give each process the cwd of the app inside it and check spec.build"),
        );
    }
    let deploy_repo = eco.extra.get("deploy").and_then(|d| {
        d.as_object()?
            .values()
            .find_map(|env| env.get("repo")?.as_str().map(str::to_string))
    });
    let mut todo = None;
    let repository = match (&opts.repository, git(&["remote", "get-url", "origin"])) {
        (Some(r), _) => r.clone(),
        (None, Some(origin)) => {
            let clean = strip_credentials(&origin);
            report.note("source", format!("repository: {clean} (git remote origin)"));
            clean
        }
        (None, None) => match (deploy_repo, &toplevel) {
            (Some(r), _) => {
                report.note("source", format!("repository: {r} (pm2 deploy's repo)"));
                r
            }
            (None, Some(top)) => {
                report.note("source", format!("repository: {top} (this repository's path: no remote origin; set --repository to the URL the server fetches)"));
                top.clone()
            }
            (None, None) => {
                let t = "not a git repository: set the URL the server fetches the app from (--repository)";
                report.warn("source", t);
                todo = Some(t.to_string());
                "https://git.example.com/acme/app.git".into()
            }
        },
    };
    let commit = match (&opts.commit, git(&["rev-parse", "HEAD"])) {
        (Some(c), _) => c.clone(),
        (None, Some(head)) => {
            let dirty = git(&["status", "--porcelain"]).is_some();
            report.note(
                "source",
                format!(
                    "commit: {head} (HEAD){}",
                    if dirty { "; the working tree has uncommitted changes, which this commit does not hold" } else { "" }
                ),
            );
            head
        }
        (None, None) => {
            let t = "no commit read from git: set the full SHA of the commit to run (--commit)";
            report.warn("source", t);
            let t = match todo {
                Some(r) => format!("{r}; {t}"),
                None => t.to_string(),
            };
            todo = Some(t);
            NO_COMMIT.into()
        }
    };
    (repository, commit, todo)
}

/// A git URL without `user:password@` (the document refuses credentials in URLs).
fn strip_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && !userinfo.contains('/')
    {
        return format!("{scheme}://{host}");
    }
    url.to_string()
}

/// The document's `envFile`, from the processes' `env_file` (one for the app).
fn env_file(
    processes: &[translate::Translated],
    root: &str,
    report: &mut Report,
) -> Option<String> {
    let mut files: Vec<&(String, String)> = processes
        .iter()
        .filter_map(|t| t.env_file.as_ref())
        .collect();
    files.dedup_by(|a, b| a.0 == b.0);
    let (file, at) = files.first()?;
    if files.len() > 1 {
        report.error(
            at.clone(),
            format!(
                "the apps name different env_files ({}): the document takes one envFile for all its processes; use one file",
                files.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", ")
            ),
        );
        return None;
    }
    let path = if file.starts_with('/') {
        file.clone()
    } else {
        let base = Path::new(file)
            .file_name()
            .map_or(".env".into(), |b| b.to_string_lossy().into_owned());
        format!("{}/{base}", root.trim_end_matches('/'))
    };
    report.note(
        at.clone(),
        format!("{file} written as envFile: {path}: put the file there on the server (mode 0600) before the first run; its values never reach logs or status"),
    );
    Some(path)
}

/// `shipshape init`: the document on stdout (or `--output`), the report on stderr.
pub fn run(opts: &Options) -> i32 {
    let (text, report) = match document(opts) {
        Ok(done) => done,
        Err((err, report)) => {
            for line in &report.lines {
                eprintln!("{line}");
            }
            if let Some(e) = err {
                eprintln!("error: {e}");
            } else {
                eprintln!("error: {} problem(s): nothing written", report.errors());
            }
            return 1;
        }
    };
    for line in &report.lines {
        eprintln!("{line}");
    }
    match &opts.output {
        None => {
            print!("{text}");
            0
        }
        Some(path) => match write(path, &text, opts.force) {
            Ok(schema) => {
                eprintln!(
                    "wrote {} and {} (the schema); next: shipshape validate {}",
                    path.display(),
                    schema.display(),
                    path.display()
                );
                0
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                1
            }
        },
    }
}

/// Write the document (refusing to replace one unless `force`) and the schema beside it;
/// returns the schema's path.
fn write(path: &Path, text: &str, force: bool) -> std::io::Result<PathBuf> {
    if path.exists() && !force {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists: --force replaces it",
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let schema = dir.join(SCHEMA_FILE);
    atomic_write(&schema, &shipshape_spec::app_schema_text())?;
    atomic_write(path, text)?;
    Ok(schema)
}

fn atomic_write(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls_are_made_safe_for_the_document() {
        assert_eq!(app_name("My_API.server"), "my-api-server");
        assert_eq!(app_name("__"), "app");
        assert_eq!(
            strip_credentials("https://u:tok@github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
        assert_eq!(
            strip_credentials("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
    }
}

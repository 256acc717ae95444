//! The `shipshape` command line: the clap definitions, the shared argument parsers, the
//! dispatch to one module per group of commands, and what those share (building a
//! [`Controller`], tracing).
//!
//! - [`run`]: `run` (the daemon, or one pass with `--once`).
//! - [`plan`]: `plan`, `validate`.
//! - [`status`]: `status` (and `--watch`), `history`, `logs`; [`view`]: how status reads;
//!   [`shown`]: what the views may print of outside text (credentials masked, control
//!   characters escaped).
//! - [`requests`]: `pin`, `unpin`, `retry`, `reconcile`: requests to the running controller.
//! - [`fleet`]: `fleet`, app × host across controllers, from the Prometheus scraping them.
//! - Here: `schema` and `completions` (a few lines each); `init` is [`crate::init`].

mod build;
pub mod fleet;
pub mod plan;
pub mod requests;
pub mod run;
pub mod shown;
pub mod status;
pub mod view;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub use build::{PlanController, controller, plan_controller};

/// A GitOps reconciler for Node.js apps under pm2.
#[derive(Debug, Parser)]
#[command(name = "shipshape", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where desired state comes from and where the controller keeps things.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// The config repo: a local path or a git URL.
    #[arg(long, env = "SHIPSHAPE_REPO")]
    pub repo: Option<String>,
    /// The branch to follow.
    #[arg(long, default_value = "main", env = "SHIPSHAPE_BRANCH")]
    pub branch: String,
    /// The directory in the repo holding App documents.
    #[arg(long, default_value = ".", env = "SHIPSHAPE_PATH")]
    pub path: String,
    /// The controller's state directory (records, mirrors, logs); default /var/lib/shipshape
    /// for root, else $XDG_STATE_HOME/shipshape or ~/.local/state/shipshape.
    #[arg(long, env = "SHIPSHAPE_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
    pub state_dir: PathBuf,
    /// The pm2 executable.
    #[arg(long, default_value = "pm2", env = "SHIPSHAPE_PM2")]
    pub pm2: PathBuf,
    /// pm2's home (PM2_HOME); defaults to $PM2_HOME, else ~/.pm2.
    #[arg(long, env = "SHIPSHAPE_PM2_HOME")]
    pub pm2_home: Option<PathBuf>,
    /// Apply only config commits signed by a key in this OpenSSH allowed-signers file.
    #[arg(long, env = "SHIPSHAPE_ALLOWED_SIGNERS")]
    pub allowed_signers: Option<PathBuf>,
    /// Apply only config commits signed by a key in this GnuPG keyring.
    #[arg(long, env = "SHIPSHAPE_GPG_KEYRING")]
    pub gpg_keyring: Option<PathBuf>,
    /// This host's name, for documents that select hosts (default: the machine's).
    #[arg(long, env = "SHIPSHAPE_HOSTNAME")]
    pub hostname: Option<String>,
    /// A label of this host (`key=value`, repeatable), for documents that select hosts.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Delete the pm2 processes of apps whose documents were removed from the repo.
    #[arg(long)]
    pub prune: bool,
    /// An SSH private key for a remote config repo (and app repos).
    #[arg(long, env = "SHIPSHAPE_GIT_SSH_KEY")]
    pub git_ssh_key: Option<PathBuf>,
    /// A file holding an HTTPS token for a remote config repo.
    #[arg(long, env = "SHIPSHAPE_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// The HTTPS user name sent with the token.
    #[arg(long, env = "SHIPSHAPE_GIT_USER")]
    pub git_user: Option<String>,
    /// dbmate, for apps whose release has no `node_modules/.bin/dbmate`.
    #[arg(long, default_value = "dbmate", env = "SHIPSHAPE_DBMATE")]
    pub dbmate: PathBuf,
    /// How long observations may share one `pm2 jlist` (0s: never).
    #[arg(long, default_value = "500ms", value_parser = parse_duration, env = "SHIPSHAPE_PM2_CACHE")]
    pub pm2_cache: Duration,
    /// Time limit for one pm2 command.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub pm2_timeout: Duration,
    /// Reach pm2 through its CLI only (`pm2 jlist`, `pm2 delete`, `pm2 save`), never
    /// through its daemon's socket.
    #[arg(long, env = "SHIPSHAPE_PM2_NO_SOCKET")]
    pub pm2_no_socket: bool,
}

/// The flags of `shipshape run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Where things are.
    #[command(flatten)]
    pub source: SourceArgs,
    /// One pass, then exit: 0 when every app is converged and healthy, 1 otherwise.
    #[arg(long)]
    pub once: bool,
    /// Time between passes.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Revisions kept per app.
    #[arg(long, default_value_t = crate::state::DEFAULT_HISTORY)]
    pub history: usize,
    /// Where the local API listens (status, watch, metrics, pin/unpin/retry).
    #[arg(long, default_value = "127.0.0.1:7300", env = "SHIPSHAPE_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// Allow the API on a non-loopback address (it is unencrypted; mutations need the token).
    #[arg(long)]
    pub allow_remote_api: bool,
    /// A host name the TCP API also answers to (the Host header), besides 127.0.0.1, [::1]
    /// and localhost: the name a proxy in front of it passes on. Repeatable.
    #[arg(long = "public-host", value_name = "NAME", value_parser = parse_public_host)]
    pub public_hosts: Vec<String>,
    /// Post notifications (Slack-compatible JSON) to this URL. On the command line it shows
    /// in `ps` (with the secret a webhook URL holds): prefer --notify-url-file.
    #[arg(long, env = "SHIPSHAPE_NOTIFY_URL")]
    pub notify_url: Option<String>,
    /// Post notifications to the URL this file holds (private to the controller's user, read
    /// at start): the URL's secret stays out of `ps` and of every log line.
    #[arg(long, env = "SHIPSHAPE_NOTIFY_URL_FILE", conflicts_with = "notify_url")]
    pub notify_url_file: Option<PathBuf>,
    /// At most this many apps reconcile at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Time between fetches of a remote config repo.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Enable `POST /hooks/git` with this secret (GitHub HMAC key or GitLab token).
    #[arg(long, env = "SHIPSHAPE_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Table,
    /// For scripts.
    Json,
}

/// Output formats of `shipshape status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// One line per app (or the detail of one app).
    Table,
    /// The one-line view with the config commit, level and last pass, messages whole.
    Wide,
    /// The records, for scripts.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconcile continuously (or once, with --once).
    Run(RunArgs),
    /// Show the steps a pass would run, with reasons. Exit 0: nothing to do; 2: changes
    /// pending; 1: an error, or a blocker that would stop the pass.
    Plan {
        /// Where things are.
        #[command(flatten)]
        source: SourceArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Plan these document files instead of the config repo's branch tip.
        #[arg(long = "file", value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// One line per app, the ones needing attention first; with APP, that app's detail.
    Status {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
        state_dir: PathBuf,
        /// Only this app, in detail.
        app: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: StatusFormat,
        /// Keep watching: on a terminal, a live view redrawn in place; piped, each event of
        /// the running controller's stream as it happens.
        #[arg(short, long)]
        watch: bool,
    },
    /// Hold an app at a revision (default: the live one when healthy, else the last healthy one).
    Pin {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
        state_dir: PathBuf,
        /// The app.
        app: String,
        /// The revision to hold.
        revision: Option<u64>,
        /// Why (required; shown in status and notifications).
        #[arg(long)]
        reason: String,
        /// Who (default: $SUDO_USER or $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Resume following git.
    Unpin {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
        state_dir: PathBuf,
        /// The app.
        app: String,
        /// Who (default: $SUDO_USER or $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Release the desired config commit from quarantine and try it again.
    Retry {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
        state_dir: PathBuf,
        /// The app whose desired config commit leaves quarantine.
        #[arg(required_unless_present = "allow_rewind")]
        app: Option<String>,
        /// Signed mode: apply the refused config commit that does not descend from the last
        /// applied trusted one (a rewind or force-push of the branch), once, if it is trusted.
        #[arg(long)]
        allow_rewind: bool,
    },
    /// Ask the running controller for a pass now.
    Reconcile {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
        state_dir: PathBuf,
        /// Only this app (a pass covers all; this checks the app exists).
        app: Option<String>,
    },
    /// Print the output of every step of a revision's rollout (and revert).
    Logs {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
        state_dir: PathBuf,
        /// The app.
        app: String,
        /// The revision (default: the last attempted one).
        revision: Option<u64>,
    },
    /// Show an app's revisions.
    History {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
        state_dir: PathBuf,
        /// The app.
        app: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Check App documents; prints every problem with file:line:column and exits 1 if any.
    Validate {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show app × host across the fleet (live commit, phase, pin, revert, hosts off the
    /// desired commit), from the Prometheus that scrapes every controller's /metrics.
    /// Exit 0: every host reachable and live on its desired commit; 2: not; 1: an error.
    Fleet {
        /// The Prometheus base URL.
        #[arg(long, env = "SHIPSHAPE_PROMETHEUS")]
        prometheus: String,
        /// Only this app.
        app: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// How far back a controller still counts as part of the fleet (last scraped).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        lookback: Duration,
        /// Time limit for each query to Prometheus.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Print the App document's JSON Schema.
    Schema,
    /// Print the first upstream file of a document's `spec.traffic` (naming its first slot
    /// port, nothing warm), for nginx to start with before the controller's first switch.
    TrafficFile {
        /// The App document.
        file: PathBuf,
    },
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Turn an existing pm2 ecosystem file (`.js`, `.cjs`, `.mjs`, `.json`, `.yaml`) into an
    /// App document, to review and commit. Notes, warnings and errors go to standard error,
    /// one line each; nothing is written when any is an error (docs/init.md).
    Init {
        /// The ecosystem file.
        ecosystem: PathBuf,
        /// Merge this `env_<NAME>` block over `env`, as `pm2 start --env NAME` does.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// Write the document to FILE (and the schema, app.schema.json, beside it) instead of
        /// standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// The app's name (default: the first pm2 app's name).
        #[arg(long)]
        name: Option<String>,
        /// The app's git repository, URL or absolute path (default: the remote `origin` of the
        /// repository holding the ecosystem file, else that repository's path).
        #[arg(long)]
        repository: Option<String>,
        /// The commit to run, a full SHA (default: that repository's HEAD).
        #[arg(long)]
        commit: Option<String>,
        /// Where releases go (default: /srv/<name>).
        #[arg(long)]
        root: Option<String>,
        /// The health URL (default: guessed from the env's PORT and the app's code).
        #[arg(long)]
        health_url: Option<String>,
    },
}

/// A flag's value that does not read (clap prints the message).
#[derive(Debug, thiserror::Error)]
enum ArgError {
    /// A `--label` without `key=`.
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),
    /// A `--public-host` with a scheme, port, path or odd characters.
    #[error(
        "{0:?} is not a host name or address (no scheme, port or path: e.g. deploy.example.com)"
    )]
    NotHost(String),
    /// A duration that does not read.
    #[error(transparent)]
    Duration(#[from] shipshape_spec::duration::ParseDurationError),
}

fn parse_label(s: &str) -> Result<(String, String), ArgError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(ArgError::NotKeyValue(s.to_string())),
    }
}

/// The machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// A `--public-host`: a DNS name or an IP address, without scheme, port or path.
fn parse_public_host(s: &str) -> Result<String, ArgError> {
    let name = s.trim().trim_start_matches('[').trim_end_matches(']');
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && (name.parse::<std::net::Ipv6Addr>().is_ok() || !name.contains(':'));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(ArgError::NotHost(s.to_string()))
    }
}

fn parse_duration(s: &str) -> Result<Duration, ArgError> {
    Ok(s.parse::<shipshape_spec::Duration>()?.std())
}

/// Parse the command line, run, and return the process exit code.
///
/// # Errors
/// Setup failures (the state directory cannot be created, the runtime cannot start).
pub fn main() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        end_quietly_on_a_closed_pipe();
    }
    cli.command.run()
}

/// The most `caused by:` lines [`error_text`] shows under the message.
pub const MAX_CAUSES: usize = 2;

/// An ordinary error as a person reads it: `error: <message>`, then up to [`MAX_CAUSES`]
/// `caused by:` lines, each only when it says something the lines above did not (a message
/// that already quotes its source is not repeated). No backtrace, whatever `RUST_BACKTRACE`
/// says; the full chain stays at debug level in the log.
pub fn error_text(e: &anyhow::Error) -> String {
    tracing::debug!("error chain: {e:?}");
    let mut text = format!("error: {e}\n");
    let mut said = e.to_string();
    let mut causes = 0;
    for cause in e.chain().skip(1) {
        let line = cause.to_string();
        if line.trim().is_empty() || said.contains(&line) {
            continue;
        }
        if causes == MAX_CAUSES {
            break;
        }
        text.push_str(&format!("caused by: {line}\n"));
        said.push_str(&line);
        causes += 1;
    }
    text
}

/// A one-shot command piped into `head` should end quietly, as Unix tools do. (The daemon
/// keeps Rust's default: a closed socket must not kill it.)
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: restoring the default disposition of a signal at start-up, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

impl Command {
    /// Run the command; its exit code.
    ///
    /// # Errors
    /// Setup failures (the state directory cannot be created, the runtime cannot start).
    fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Run(args) => run::run(args),
            Command::Plan {
                source,
                output,
                files,
            } => plan::plan(&source, output, &files),
            Command::Validate { files } => Ok(plan::validate(&files)),
            Command::TrafficFile { file } => Ok(plan::traffic_file(&file)),
            Command::Status {
                state_dir,
                app,
                output,
                watch,
            } => status::status(&state_dir, app.as_deref(), output, watch),
            Command::History {
                state_dir,
                app,
                output,
            } => Ok(status::history(&state_dir, &app, output)),
            Command::Logs {
                state_dir,
                app,
                revision,
            } => Ok(status::logs(&state_dir, &app, revision)),
            Command::Pin {
                state_dir,
                app,
                revision,
                reason,
                by,
            } => Ok(requests::pin(&state_dir, &app, revision, reason, by)),
            Command::Unpin { state_dir, app, by } => Ok(requests::unpin(&state_dir, &app, by)),
            Command::Retry {
                state_dir,
                app,
                allow_rewind,
            } => Ok(retry(&state_dir, app.as_deref(), allow_rewind)),
            Command::Reconcile { state_dir, app } => {
                Ok(requests::reconcile(&state_dir, app.as_deref()))
            }
            Command::Fleet {
                prometheus,
                app,
                output,
                lookback,
                timeout,
            } => fleet::fleet(&fleet::Options {
                prometheus,
                app,
                output,
                lookback,
                timeout,
            }),
            Command::Schema => {
                print!("{}", shipshape_spec::app_schema_text());
                Ok(0)
            }
            Command::Completions { shell } => Ok(completions(shell)),
            Command::Init {
                ecosystem,
                env,
                output,
                force,
                name,
                repository,
                commit,
                root,
                health_url,
            } => Ok(crate::init::run(&crate::init::Options {
                ecosystem,
                name,
                repository,
                commit,
                root,
                health_url,
                env,
                output,
                force,
            })),
        }
    }
}

/// `shipshape retry`: allow the rewind first when asked, then retry `app` (if named and
/// the rewind was allowed); the exit code of the first that fails.
fn retry(state_dir: &Path, app: Option<&str>, allow_rewind: bool) -> i32 {
    let mut code = 0;
    if allow_rewind {
        code = requests::allow_rewind(state_dir);
    }
    if let Some(app) = app
        && code == 0
    {
        code = requests::retry(state_dir, app);
    }
    code
}

/// `shipshape completions`: the completion script for `shell`, on standard output.
fn completions(shell: clap_complete::Shell) -> i32 {
    use clap::CommandFactory;
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "shipshape",
        &mut std::io::stdout(),
    );
    0
}

/// Log to standard error, at `RUST_LOG`'s levels (default: info), with URL credentials
/// (and the notification URL) masked in every line ([`crate::redact::LogWriter`]).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::redact::LogWriter)
        .try_init();
}

/// Where `program` runs from: itself when it is a path to an executable file, else the
/// first executable of that name in `path` (a `PATH` value); None when there is none.
pub fn find_program(program: &std::path::Path, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return runnable(program).then(|| program.to_path_buf());
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|p| runnable(p))
}

/// The error for a pm2 that cannot be found: what was looked for, where, and the flag.
fn pm2_not_found(pm2: &std::path::Path) -> String {
    if pm2.components().count() > 1 {
        format!(
            "pm2 not found: {} is not an executable file (point --pm2 or SHIPSHAPE_PM2 at pm2)",
            pm2.display()
        )
    } else {
        format!(
            "pm2 not found: no `{}` on the PATH (install pm2, or point --pm2 or SHIPSHAPE_PM2 at it)",
            pm2.display()
        )
    }
}

/// A program given as a relative path (`.tools/…/pm2`) made absolute, since commands run
/// in other directories; a bare name (`pm2`) is left for PATH to resolve.
fn absolute_if_path(p: &Path) -> PathBuf {
    if p.components().count() > 1 && p.is_relative() {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    } else {
        p.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_one_line_with_at_most_two_new_causes_and_no_backtrace() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let e = anyhow::Error::new(io)
            .context("reading /srv/state/demo.json")
            .context("loading the records");
        assert_eq!(
            error_text(&e),
            "error: loading the records\ncaused by: reading /srv/state/demo.json\ncaused by: permission denied\n"
        );
        // A message that already quotes its cause is not followed by it again.
        let inner = anyhow::anyhow!("no such file");
        let e = inner.context("state directory /x: no such file");
        assert_eq!(error_text(&e), "error: state directory /x: no such file\n");
        // Deep chains are cut.
        let mut e = anyhow::anyhow!("c0");
        for i in 1..6 {
            e = e.context(format!("c{i}"));
        }
        assert_eq!(error_text(&e).lines().count(), 1 + MAX_CAUSES);
    }

    #[test]
    fn a_program_is_found_on_the_path_or_as_a_path_and_a_missing_pm2_names_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("pm2");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(
            find_program(Path::new("pm2"), Some(&path)),
            Some(exe.clone())
        );
        assert_eq!(find_program(&exe, None), Some(exe.clone()));
        assert_eq!(
            find_program(Path::new("pm2"), Some("/nonexistent".as_ref())),
            None
        );
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_program(&exe, None), None, "not executable");
        let said = pm2_not_found(Path::new("pm2"));
        assert!(
            said.contains("no `pm2` on the PATH") && said.contains("--pm2"),
            "{said}"
        );
        assert!(pm2_not_found(&exe).contains("--pm2"));
    }
}

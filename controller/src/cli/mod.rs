//! The `shipshape` command line: `run`, `plan`, `status`, `history`, `validate`, `schema`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::pm2::Pm2;
use crate::reconciler::Controller;
use crate::source::ConfigRepo;
use crate::state::Store;

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
    /// The controller's state directory (records, mirrors, logs).
    #[arg(long, env = "SHIPSHAPE_STATE_DIR")]
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
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Table,
    /// For scripts.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconcile continuously (or once, with --once).
    Run {
        /// Where things are.
        #[command(flatten)]
        source: SourceArgs,
        /// One pass, then exit: 0 when every app is converged and healthy, 1 otherwise.
        #[arg(long)]
        once: bool,
        /// Time between passes.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        interval: Duration,
        /// Revisions kept per app.
        #[arg(long, default_value_t = crate::state::DEFAULT_HISTORY)]
        history: usize,
        /// Where the local API listens (status, watch, metrics, pin/unpin/retry).
        #[arg(long, default_value = "127.0.0.1:7300", env = "SHIPSHAPE_LISTEN")]
        listen: std::net::SocketAddr,
        /// Allow the API on a non-loopback address (it is unencrypted; mutations need the token).
        #[arg(long)]
        allow_remote_api: bool,
        /// Post notifications (Slack-compatible JSON) to this URL.
        #[arg(long, env = "SHIPSHAPE_NOTIFY_URL")]
        notify_url: Option<String>,
        /// At most this many apps reconcile at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Time between fetches of a remote config repo.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        poll_interval: Duration,
        /// Enable `POST /hooks/git` with this secret (GitHub HMAC key or GitLab token).
        #[arg(long, env = "SHIPSHAPE_WEBHOOK_SECRET_FILE")]
        webhook_secret_file: Option<PathBuf>,
    },
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
    /// Show each app's phase, conditions, live and desired revisions, and last error.
    Status {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR")]
        state_dir: PathBuf,
        /// Only this app.
        app: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Then print each change as it happens (from the running controller's event stream).
        #[arg(short, long)]
        watch: bool,
    },
    /// Hold an app at a revision (default: the live one when healthy, else the last healthy one).
    Pin {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR")]
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
        #[arg(long, env = "SHIPSHAPE_STATE_DIR")]
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
        #[arg(long, env = "SHIPSHAPE_STATE_DIR")]
        state_dir: PathBuf,
        /// The app.
        app: String,
    },
    /// Ask the running controller for a pass now.
    Reconcile {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR")]
        state_dir: PathBuf,
        /// Only this app (a pass covers all; this checks the app exists).
        app: Option<String>,
    },
    /// Print the output of every step of a revision's rollout (and revert).
    Logs {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR")]
        state_dir: PathBuf,
        /// The app.
        app: String,
        /// The revision (default: the last attempted one).
        revision: Option<u64>,
    },
    /// Show an app's revisions.
    History {
        /// The controller's state directory.
        #[arg(long, env = "SHIPSHAPE_STATE_DIR")]
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
    /// Print the App document's JSON Schema.
    Schema,
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Turn an existing pm2 ecosystem file (`ecosystem.config.js` or `.json`) into an App
    /// document on standard output, to review and commit.
    Init {
        /// The ecosystem file.
        ecosystem: PathBuf,
        /// The app's name (default: the first pm2 app's name).
        #[arg(long)]
        name: Option<String>,
        /// The app's git repository (URL or absolute path).
        #[arg(long, default_value = "https://git.example.com/acme/app.git")]
        repository: String,
        /// The commit to run (a full SHA).
        #[arg(long, default_value = "0000000000000000000000000000000000000000")]
        commit: String,
        /// Where releases go (default: /srv/<name>).
        #[arg(long)]
        root: Option<String>,
        /// The health URL (default: http://127.0.0.1:<PORT>/api/health, from the app's env).
        #[arg(long)]
        health_url: Option<String>,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// The machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<shipshape_spec::Duration>()
        .map(|d| d.std())
        .map_err(|e| e.to_string())
}

/// Parse the command line, run, and return the process exit code.
///
/// # Errors
/// Setup failures (the state directory cannot be created, the runtime cannot start).
pub fn main() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // A one-shot command piped into `head` should end quietly, as Unix tools do.
        // (The daemon keeps Rust's default: a closed socket must not kill it.)
        // SAFETY: restoring the default disposition of a signal at start-up, before any thread.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        Command::Validate { files } => Ok(validate(&files)),
        Command::Schema => {
            print!("{}", shipshape_spec::app_schema_text());
            Ok(0)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "shipshape",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Init {
            ecosystem,
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
        })),
        Command::Status {
            state_dir,
            app,
            output,
            watch,
        } => {
            let code = status(&Store::new(&state_dir), app.as_deref(), output);
            if !watch || code != 0 {
                return Ok(code);
            }
            let rt = tokio::runtime::Runtime::new()?;
            Ok(rt.block_on(watch_events(&state_dir, app.as_deref(), output)))
        }
        Command::Pin {
            state_dir,
            app,
            revision,
            reason,
            by,
        } => {
            let body = serde_json::json!({ "revision": revision, "reason": reason, "by": by.unwrap_or_else(whoami) });
            Ok(api_call(
                &state_dir,
                &format!("/api/v1/apps/{app}/pin"),
                body,
                |v| {
                    format!(
                        "{app} pinned at revision {} by {}: {}",
                        v["revision"],
                        v["by"].as_str().unwrap_or(""),
                        v["reason"].as_str().unwrap_or("")
                    )
                },
            ))
        }
        Command::Unpin { state_dir, app, by } => {
            let body = serde_json::json!({ "by": by.unwrap_or_else(whoami) });
            Ok(api_call(
                &state_dir,
                &format!("/api/v1/apps/{app}/unpin"),
                body,
                |_| format!("{app} unpinned; following git again"),
            ))
        }
        Command::Retry { state_dir, app } => Ok(api_call(
            &state_dir,
            &format!("/api/v1/apps/{app}/retry"),
            serde_json::json!({}),
            |v| {
                format!(
                    "{app}: {} quarantined config commit(s) released; a pass is queued",
                    v["released"]
                )
            },
        )),
        Command::Reconcile { state_dir, app } => {
            let path = match &app {
                Some(a) => format!("/api/v1/apps/{a}/reconcile"),
                None => "/api/v1/reconcile".to_string(),
            };
            Ok(api_call(&state_dir, &path, serde_json::json!({}), |_| {
                "a pass is queued".to_string()
            }))
        }
        Command::Logs {
            state_dir,
            app,
            revision,
        } => Ok(logs(&Store::new(state_dir), &app, revision)),
        Command::History {
            state_dir,
            app,
            output,
        } => Ok(history(&Store::new(state_dir), &app, output)),
        Command::Run {
            source,
            once,
            interval,
            history,
            listen,
            allow_remote_api,
            notify_url,
            concurrency,
            poll_interval,
            webhook_secret_file,
        } => {
            init_tracing();
            if source.repo.is_none() {
                anyhow::bail!("run needs --repo (or SHIPSHAPE_REPO)");
            }
            if !listen.ip().is_loopback() && !allow_remote_api {
                anyhow::bail!(
                    "refusing to serve the API on {listen}: it is not a loopback address (pass --allow-remote-api to do it anyway)"
                );
            }
            let mut controller = controller(&source, history)?;
            controller.concurrency = concurrency;
            // One controller per state directory, held until this process ends.
            let _lock = controller.store.lock()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                controller.hub = crate::events::Hub::new(notify_url, controller.http.clone());
                if once {
                    let summary = crate::daemon::pass(&controller).await;
                    return Ok(if summary.is_some_and(|s| s.all_ready()) {
                        0
                    } else {
                        1
                    });
                }
                crate::daemon::run(
                    std::sync::Arc::new(controller),
                    crate::daemon::Options {
                        interval,
                        poll_interval,
                        listen: Some(listen),
                        webhook_secret_file,
                        stop_timeout: Duration::from_secs(60),
                    },
                )
                .await
            })
        }
        Command::Plan {
            source,
            output,
            files,
        } => {
            init_tracing();
            if source.repo.is_none() && files.is_empty() {
                anyhow::bail!("plan needs --repo (or SHIPSHAPE_REPO), or --file");
            }
            let controller = controller(&source, crate::state::DEFAULT_HISTORY)?;
            let rt = tokio::runtime::Runtime::new()?;
            Ok(rt.block_on(plan(controller, output, &files)))
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Build a [`Controller`] from command-line arguments.
///
/// # Errors
/// When the state directory cannot be created.
pub fn controller(args: &SourceArgs, history: usize) -> anyhow::Result<Controller> {
    std::fs::create_dir_all(&args.state_dir)?;
    let state_dir = std::fs::canonicalize(&args.state_dir)?;
    let pm2_home = args
        .pm2_home
        .clone()
        .or_else(|| std::env::var_os("PM2_HOME").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pm2")))
        .ok_or_else(|| {
            anyhow::anyhow!("set --pm2-home (no PM2_HOME or HOME in the environment)")
        })?;
    let repo = match &args.repo {
        None => String::new(),
        Some(r) if crate::source::is_remote(r) => r.clone(),
        Some(r) => std::fs::canonicalize(r)
            .map_err(|e| anyhow::anyhow!("config repo {r}: {e}"))?
            .display()
            .to_string(),
    };
    Ok(Controller {
        config: ConfigRepo {
            repo,
            branch: args.branch.clone(),
            path: args.path.clone(),
            mirror: state_dir.join("config.git"),
            credentials: crate::source::Credentials {
                ssh_key: args.git_ssh_key.clone(),
                https_token_file: args.git_token_file.clone(),
                https_user: args.git_user.clone(),
            },
        },
        store: Store::new(&state_dir),
        pm2: Pm2 {
            bin: absolute_if_path(&args.pm2),
            home: pm2_home,
            timeout: args.pm2_timeout,
            turn: Default::default(),
            cache: Default::default(),
            cache_for: args.pm2_cache,
        },
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        sources_dir: state_dir.join("sources"),
        hub: crate::events::Hub::default(),
        trust: crate::trust::Trust {
            allowed_signers: args.allowed_signers.clone(),
            gpg_keyring: args.gpg_keyring.clone(),
        },
        host: crate::reconciler::HostIdentity {
            name: args.hostname.clone().unwrap_or_else(hostname),
            labels: args.labels.iter().cloned().collect(),
        },
        prune: args.prune,
        handles: Default::default(),
        concurrency: 4,
        history,
        dbmate: absolute_if_path(&args.dbmate),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
    })
}

/// A program given as a relative path (`.tools/…/pm2`) made absolute, since commands run
/// in other directories; a bare name (`pm2`) is left for PATH to resolve.
fn absolute_if_path(p: &std::path::Path) -> PathBuf {
    if p.components().count() > 1 && p.is_relative() {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    } else {
        p.to_path_buf()
    }
}

fn whoami() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

/// POST to the running controller's API and print the result.
fn api_call(
    state_dir: &std::path::Path,
    path: &str,
    body: serde_json::Value,
    ok: impl Fn(&serde_json::Value) -> String,
) -> i32 {
    let client = match crate::api::Client::from_state_dir(state_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match rt.block_on(client.post(path, body)) {
        Ok(v) => {
            println!("{}", ok(&v));
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn watch_events(state_dir: &std::path::Path, only: Option<&str>, output: Format) -> i32 {
    let client = match crate::api::Client::from_state_dir(state_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let result = client
        .watch(|ev| {
            if only.is_some_and(|a| a != ev.app) {
                return true;
            }
            match output {
                Format::Json => println!("{}", serde_json::to_string(&ev).expect("json")),
                Format::Table => println!(
                    "{}  {:<10} {:<19} {:<11} {}",
                    ev.at,
                    ev.app,
                    serde_json::to_value(ev.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    ev.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
                    ev.message
                ),
            }
            true
        })
        .await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn logs(store: &Store, app: &str, revision: Option<u64>) -> i32 {
    let rec = match store.load(app) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let Some(n) = revision.or(rec.last_attempted().map(|r| r.revision.number)) else {
        eprintln!("{app} has no revisions yet");
        return 1;
    };
    let path = store
        .app_dir(app)
        .join("logs")
        .join(format!("revision-{n}.log"));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            1
        }
    }
}

async fn plan(controller: Controller, output: Format, files: &[PathBuf]) -> i32 {
    let mut invalid = false;
    let snapshot = if files.is_empty() {
        if controller.config.is_remote()
            && let Err(e) = controller.fetch_source().await
        {
            eprintln!("error: {e}");
            return 1;
        }
        let desired = match controller.load_desired().await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        if let Some(r) = &desired.refused {
            eprintln!("note: {r}; planning against the last trusted commit");
        }
        for (_, _, message) in &desired.invalid {
            eprintln!("{message}");
        }
        if !desired.invalid.is_empty() {
            invalid = true;
        }
        crate::source::Snapshot {
            commit: desired.commit.clone(),
            files: desired
                .docs
                .into_iter()
                .map(|d| crate::source::DocumentFile {
                    path: d.path,
                    text: d.text,
                })
                .collect(),
        }
    } else {
        let mut docs = Vec::new();
        for f in files {
            match std::fs::read_to_string(f) {
                Ok(text) => docs.push(crate::source::DocumentFile {
                    path: f.display().to_string(),
                    text,
                }),
                Err(e) => {
                    eprintln!("{}: cannot read: {e}", f.display());
                    return 1;
                }
            }
        }
        crate::source::Snapshot {
            commit: "(files)".into(),
            files: docs,
        }
    };
    let mut pending = false;
    let mut failed = invalid;
    let mut json = Vec::new();
    for file in &snapshot.files {
        let app = match shipshape_spec::load_str(&file.text, &file.path) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}");
                failed = true;
                continue;
            }
        };
        let record = match controller.store.load(&app.metadata.name) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
                continue;
            }
        };
        // An unreadable env file blocks the plan, but the rest is still worth showing.
        let (secrets, env_problem) = match crate::reconciler::Secrets::load(&app) {
            Ok(s) => (s, None),
            Err(e) => (Default::default(), Some(e.to_string())),
        };
        let observed = match controller.observe(&app, &record, &secrets).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {}: {e}", app.metadata.name);
                failed = true;
                continue;
            }
        };
        let mut p = crate::plan::plan(&app, &observed);
        if let Some(problem) = env_problem {
            p.blockers.insert(0, problem);
        }
        pending |= !p.is_empty();
        failed |= !p.blockers.is_empty();
        match output {
            Format::Table => {
                println!(
                    "{} (config {}, app {}):",
                    app.metadata.name,
                    crate::plan::short_sha(&snapshot.commit),
                    crate::plan::short_sha(&app.spec.source.commit)
                );
                print!("{p}");
            }
            Format::Json => json.push(serde_json::json!({
                "app": app.metadata.name,
                "configCommit": snapshot.commit,
                "plan": p,
            })),
        }
    }
    if output == Format::Json {
        println!("{}", serde_json::to_string_pretty(&json).expect("json"));
    }
    if failed {
        1
    } else if pending {
        2
    } else {
        0
    }
}

fn validate(files: &[PathBuf]) -> i32 {
    let mut bad = 0;
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(f) {
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                bad += 1;
            }
            Ok(text) => match shipshape_spec::load_str(&text, &name) {
                Ok(app) => println!("{name}: ok (app {})", app.metadata.name),
                Err(e) => {
                    eprintln!("{e}");
                    bad += 1;
                }
            },
        }
    }
    if bad > 0 { 1 } else { 0 }
}

fn status(store: &Store, only: Option<&str>, output: Format) -> i32 {
    let names: Vec<String> = match only {
        Some(n) => vec![n.to_string()],
        None => store.apps(),
    };
    let mut records = Vec::new();
    for n in &names {
        match store.load(n) {
            Ok(r) if r.passes > 0 => records.push(r),
            Ok(_) => {
                eprintln!("{n}: no records in {}", store.dir.display());
                return 1;
            }
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    }
    match output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&records).expect("json")),
        Format::Table => {
            let src = store.load_source();
            if !src.repo.is_empty() {
                let sha = |s: &Option<String>| {
                    s.as_deref()
                        .map(crate::plan::short_sha)
                        .unwrap_or_else(|| "-".into())
                };
                println!(
                    "source {} ({}) tip {}{}{}{}",
                    src.repo,
                    src.branch,
                    sha(&src.tip),
                    src.last_error
                        .as_ref()
                        .map(|e| format!(
                            "  FETCH FAILING ({} in a row, next try {}): {e}",
                            src.consecutive_failures,
                            src.next_try_at.as_deref().unwrap_or("-")
                        ))
                        .unwrap_or_default(),
                    src.refused
                        .as_ref()
                        .map(|r| format!(
                            "  REFUSED {}: {}",
                            crate::plan::short_sha(&r.commit),
                            r.reason
                        ))
                        .unwrap_or_default(),
                    src.last_trusted
                        .as_ref()
                        .map(|t| format!("  last trusted {}", crate::plan::short_sha(t)))
                        .unwrap_or_default(),
                );
            }
            if records.is_empty() {
                println!("no apps yet in {}", store.dir.display());
            }
            for r in &records {
                print_status(r);
            }
        }
    }
    0
}

fn print_status(r: &crate::state::AppRecord) {
    use crate::plan::short_sha;
    let pinned = r
        .pin
        .as_ref()
        .map(|p| {
            format!(
                "  PINNED at revision {} by {} since {}: {}",
                p.revision, p.by, p.at, p.reason
            )
        })
        .unwrap_or_default();
    println!("{}  phase={:?}{pinned}", r.name, r.phase);
    let sha = |s: &Option<String>| s.as_deref().map(short_sha).unwrap_or_else(|| "-".into());
    println!(
        "  desired    config {}  app {}",
        sha(&r.desired_config_commit),
        sha(&r.desired_app_commit)
    );
    let line = |label: &str, e: &crate::state::RevisionEntry| {
        println!(
            "  {label:<10} revision {}  app {}  level {}  {:?}{}",
            e.revision.number,
            short_sha(&e.revision.app_commit),
            e.revision.level.as_deref().unwrap_or("-"),
            e.revision.outcome,
            if e.revision.message.is_empty() || e.revision.message == "healthy" {
                String::new()
            } else {
                format!(": {}", e.revision.message)
            }
        )
    };
    if let Some(l) = r.live() {
        line("live", l);
    }
    if let Some(h) = r
        .last_healthy()
        .filter(|h| Some(h.revision.number) != r.live_revision)
    {
        line("healthy", h);
    }
    if let Some(a) = r
        .last_attempted()
        .filter(|a| Some(a.revision.number) != r.live_revision)
    {
        line("attempted", a);
    }
    if let Some(h) = &r.health {
        let results: Vec<String> = h
            .results
            .iter()
            .map(|c| format!("{} {:?} ({})", c.name, c.state, c.detail))
            .collect();
        println!(
            "  health     {} at {} ({} passing / {} failing in a row): {}",
            if h.passing { "passing" } else { "FAILING" },
            h.checked_at,
            h.consecutive_passes,
            h.consecutive_failures,
            results.join("; ")
        );
    }
    for c in &r.conditions {
        println!(
            "  {:<12} {:<7} {:<20} {}",
            c.type_,
            format!("{:?}", c.status),
            c.reason,
            c.message
        );
    }
    for q in &r.quarantined {
        println!(
            "  quarantined config {} (revision {}): {}",
            short_sha(&q.config_commit),
            q.revision,
            q.reason
        );
    }
    if let Some(e) = &r.last_error {
        println!("  last error at {} in {}: {}", e.at, e.step, e.message);
        if let Some(t) = &e.output_tail {
            for line in t
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                println!("    | {line}");
            }
        }
    }
    if let Some(p) = &r.last_pass {
        let steps: Vec<&str> = p.steps.iter().map(|s| s.step.as_str()).collect();
        println!(
            "  last pass  {} config {}: {} step(s) [{}] — {}",
            p.finished_at,
            short_sha(&p.config_commit),
            steps.len(),
            steps.join(", "),
            p.result
        );
    }
}

fn history(store: &Store, app: &str, output: Format) -> i32 {
    let r = match store.load(app) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    match output {
        Format::Json => {
            let revs: Vec<_> = r.revisions.iter().map(|e| &e.revision).collect();
            println!("{}", serde_json::to_string_pretty(&revs).expect("json"));
        }
        Format::Table => {
            println!(
                "{:>4}  {:<12}  {:<12}  {:<10}  {:<24}  MESSAGE",
                "REV", "CONFIG", "APP", "OUTCOME", "STARTED"
            );
            for e in &r.revisions {
                let v = &e.revision;
                println!(
                    "{:>4}  {:<12}  {:<12}  {:<10}  {:<24}  {}",
                    v.number,
                    crate::plan::short_sha(&v.config_commit),
                    crate::plan::short_sha(&v.app_commit),
                    format!("{:?}", v.outcome),
                    v.started_at,
                    v.message
                );
            }
        }
    }
    0
}

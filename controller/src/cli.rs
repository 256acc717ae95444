//! The `shipshape` command line: `run`, `plan`, `status`, `history`, `validate`, `schema`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tracing::{error, info};

use crate::pm2::Pm2;
use crate::reconciler::{AppResult, Controller};
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
    /// dbmate, for apps whose release has no `node_modules/.bin/dbmate`.
    #[arg(long, default_value = "dbmate", env = "SHIPSHAPE_DBMATE")]
    pub dbmate: PathBuf,
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
    match cli.command {
        Command::Validate { files } => Ok(validate(&files)),
        Command::Schema => {
            print!("{}", shipshape_spec::app_schema_text());
            Ok(0)
        }
        Command::Status {
            state_dir,
            app,
            output,
        } => Ok(status(&Store::new(state_dir), app.as_deref(), output)),
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
        } => {
            init_tracing();
            if source.repo.is_none() {
                anyhow::bail!("run needs --repo (or SHIPSHAPE_REPO)");
            }
            let controller = controller(&source, history)?;
            let rt = tokio::runtime::Runtime::new()?;
            Ok(rt.block_on(run(controller, once, interval)))
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
        },
        store: Store::new(&state_dir),
        pm2: Pm2 {
            bin: absolute_if_path(&args.pm2),
            home: pm2_home,
            timeout: args.pm2_timeout,
        },
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        sources_dir: state_dir.join("sources"),
        hub: crate::events::Hub::default(),
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

async fn run(controller: Controller, once: bool, interval: Duration) -> i32 {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    loop {
        let pass = controller.reconcile_all().await;
        let ready = match &pass {
            Ok(summary) => {
                for (app, result) in &summary.apps {
                    match result {
                        AppResult::Ready { steps } => {
                            info!(app, steps, config_commit = %summary.config_commit, "ready")
                        }
                        AppResult::NotReady { phase, message } => error!(app, ?phase, "{message}"),
                        AppResult::Invalid { message } => {
                            error!(file = app, "invalid document: {message}")
                        }
                    }
                }
                if summary.apps.is_empty() {
                    error!(config_commit = %summary.config_commit, "no App documents found");
                }
                summary.all_ready()
            }
            Err(e) => {
                error!("pass failed: {e}");
                false
            }
        };
        if once {
            return if ready { 0 } else { 1 };
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => { info!("interrupted; stopping"); return 0; }
            _ = sigterm.recv() => { info!("SIGTERM; stopping"); return 0; }
        }
    }
}

async fn plan(controller: Controller, output: Format, files: &[PathBuf]) -> i32 {
    let snapshot = if files.is_empty() {
        let config = controller.config.clone();
        match tokio::task::spawn_blocking(move || config.snapshot())
            .await
            .expect("snapshot task")
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
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
    let mut failed = false;
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
    println!("{}  phase={:?}", r.name, r.phase);
    let live = r.last_healthy();
    println!(
        "  desired   config {}  app {}",
        r.desired_config_commit
            .as_deref()
            .map(short_sha)
            .unwrap_or_default(),
        r.desired_app_commit
            .as_deref()
            .map(short_sha)
            .unwrap_or_default()
    );
    if let Some(h) = live {
        println!(
            "  healthy   revision {}  app {}  release {}",
            h.revision.number,
            short_sha(&h.revision.app_commit),
            short_sha(&h.release)
        );
    }
    if let Some(a) = r.last_attempted() {
        println!(
            "  attempted revision {}  app {}  {:?}",
            a.revision.number,
            short_sha(&a.revision.app_commit),
            a.revision.outcome
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
            "  last pass {} config {}: {} step(s) [{}] — {}",
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

//! The [`Controller`] the command line asks for, built in one place: the daemon's and
//! `run --once`'s ([`controller`]: the state directory created, pm2 through its socket and
//! CLI, app sources mirrored and fetched), and `plan`'s ([`plan_controller`]: read only).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{SourceArgs, absolute_if_path, find_program, hostname, pm2_not_found};
use crate::pm2::Pm2;
use crate::pm2::readonly::ReadOnlyPm2;
use crate::reconcile::Controller;
use crate::source::ConfigRepo;
use crate::state::Store;

/// Build a [`Controller`] from command-line arguments.
///
/// # Errors
/// When the state directory cannot be created, or pm2 cannot be found (naming `--pm2`).
pub fn controller(args: &SourceArgs, history: usize) -> anyhow::Result<Controller> {
    let pm2_bin = find_pm2(args)?;
    crate::state::ensure_dir(&args.state_dir)
        .map_err(|e| anyhow::anyhow!("state directory {}: {e}", args.state_dir.display()))?;
    let state_dir = std::fs::canonicalize(&args.state_dir)?;
    let hub = crate::runtime::events::Hub::default();
    let pm2 = pm2_client(args, pm2_bin, pm2_home(args)?, &hub);
    let mirror = state_dir.join("config.git");
    build_controller(args, history, &state_dir, mirror, Arc::new(pm2), hub, false)
}

/// A [`Controller`] for `shipshape plan`, which changes nothing: the state directory is read
/// when it exists and never created; pm2 is read only from a daemon already running
/// ([`ReadOnlyPm2`]); app sources are read from the controller's mirror when there is one,
/// or from the repository itself when it is a local path, and never fetched; a remote
/// config repo is fetched into a temporary mirror (removed when the returned value is
/// dropped), not the controller's.
pub struct PlanController {
    /// The controller (its [`Controller::read_only`] set).
    pub controller: Controller,
    /// Its pm2, to say when no daemon was running.
    pub pm2: ReadOnlyPm2,
    /// The temporary config mirror, for a remote config repo.
    _mirror: Option<tempfile::TempDir>,
}

/// Build a [`PlanController`] from command-line arguments.
///
/// # Errors
/// When pm2 cannot be found (naming `--pm2`), a state directory path that is there but
/// cannot be read, or a temporary directory that cannot be made.
pub fn plan_controller(args: &SourceArgs) -> anyhow::Result<PlanController> {
    let pm2_bin = find_pm2(args)?;
    let state_dir = match std::fs::canonicalize(&args.state_dir) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => absolute_if_path(&args.state_dir),
        Err(e) => anyhow::bail!("state directory {}: {e}", args.state_dir.display()),
    };
    let remote = args.repo.as_deref().is_some_and(crate::source::is_remote);
    let tmp = remote
        .then(|| tempfile::Builder::new().prefix("shipshape-plan-").tempdir())
        .transpose()
        .map_err(|e| anyhow::anyhow!("a temporary directory for the config repo: {e}"))?;
    let mirror = match &tmp {
        Some(t) => t.path().join("config.git"),
        None => state_dir.join("config.git"),
    };
    let hub = crate::runtime::events::Hub::default();
    let pm2 = ReadOnlyPm2::new(pm2_client(args, pm2_bin, pm2_home(args)?, &hub));
    let controller = build_controller(
        args,
        crate::state::DEFAULT_HISTORY,
        &state_dir,
        mirror,
        Arc::new(pm2.clone()),
        hub,
        true,
    )?;
    Ok(PlanController {
        controller,
        pm2,
        _mirror: tmp,
    })
}

/// pm2's executable as `args` name it, found.
fn find_pm2(args: &SourceArgs) -> anyhow::Result<PathBuf> {
    let pm2_bin = absolute_if_path(&args.pm2);
    if find_program(&pm2_bin, std::env::var_os("PATH").as_deref()).is_none() {
        anyhow::bail!("{}", pm2_not_found(&args.pm2));
    }
    Ok(pm2_bin)
}

/// `PM2_HOME`: `--pm2-home`, else the environment's, else `~/.pm2`.
fn pm2_home(args: &SourceArgs) -> anyhow::Result<PathBuf> {
    args.pm2_home
        .clone()
        .or_else(|| std::env::var_os("PM2_HOME").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pm2")))
        .ok_or_else(|| anyhow::anyhow!("set --pm2-home (no PM2_HOME or HOME in the environment)"))
}

/// The controller over `state_dir` with `pm2`, the config repo mirrored at `mirror` when
/// remote; app sources read only (never fetched) when `read_only`.
fn build_controller(
    args: &SourceArgs,
    history: usize,
    state_dir: &Path,
    mirror: PathBuf,
    pm2: Arc<dyn crate::ports::Pm2Port>,
    hub: crate::runtime::events::Hub,
    read_only: bool,
) -> anyhow::Result<Controller> {
    let repo = match &args.repo {
        None => String::new(),
        Some(r) if crate::source::is_remote(r) => r.clone(),
        Some(r) => std::fs::canonicalize(r)
            .map_err(|e| anyhow::anyhow!("config repo {r}: {e}"))?
            .display()
            .to_string(),
    };
    let config = ConfigRepo {
        repo,
        branch: args.branch.clone(),
        path: args.path.clone(),
        mirror,
        credentials: crate::source::Credentials {
            ssh_key: args.git_ssh_key.clone(),
            https_token_file: args.git_token_file.clone(),
            https_user: args.git_user.clone(),
            private_token_file: false,
        },
    };
    let trust = crate::source::trust::Trust {
        allowed_signers: args.allowed_signers.clone(),
        gpg_keyring: args.gpg_keyring.clone(),
    };
    let store = Store::new(state_dir);
    // The one place the real ports are built: the daemon, `run --once` and `plan` share it.
    let source = crate::ports::GitSource {
        config: config.clone(),
        trust: trust.clone(),
        store: store.clone(),
        sources_dir: state_dir.join("sources"),
        read_only,
    };
    Ok(Controller {
        config,
        store,
        ports: crate::ports::Ports::real(pm2, source),
        http: crate::clients::Http::new(),
        hub,
        trust,
        host: crate::reconcile::HostIdentity {
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
        read_only,
    })
}

/// The pm2 client `args` ask for (its socket reads counted in `hub`'s metrics).
fn pm2_client(
    args: &SourceArgs,
    bin: PathBuf,
    home: PathBuf,
    hub: &crate::runtime::events::Hub,
) -> Pm2 {
    Pm2 {
        bin,
        home,
        timeout: args.pm2_timeout,
        turn: Default::default(),
        cache: Default::default(),
        cache_for: args.pm2_cache,
        daemon_up: Default::default(),
        socket: crate::pm2::SocketReads {
            enabled: !args.pm2_no_socket,
            timeout: args.pm2_timeout.min(Duration::from_secs(5)),
            metrics: Some(hub.metrics.clone()),
            ..Default::default()
        },
    }
}

//! `shipshape run`: the controller itself, either the long-running daemon (reconcile loop,
//! monitors, source poller, local API) or, with `--once`, a single pass and an exit code.

use std::time::Duration;

use super::{RunArgs, controller, init_tracing};

/// Run the controller as `args` say, and return the exit code (for `--once`: 0 when every
/// app is converged and healthy, 1 otherwise).
///
/// # Errors
/// Missing `--repo`, an API address that is not loopback without `--allow-remote-api`,
/// another controller holding the state directory, or a runtime that cannot start.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let RunArgs {
        source,
        once,
        interval,
        history,
        listen,
        allow_remote_api,
        public_hosts,
        notify_url,
        notify_url_file,
        concurrency,
        poll_interval,
        webhook_secret_file,
    } = args;
    limit_malloc_arenas();
    // SAFETY: no other thread has started yet.
    unsafe { crate::source::start_git_without_loading_certificates() };
    init_tracing();
    let open_files = raise_open_files_limit();
    if source.repo.is_none() {
        anyhow::bail!("run needs --repo (or SHIPSHAPE_REPO)");
    }
    let notify_url = notify_url_from(notify_url, notify_url_file.as_deref())?;
    if !listen.ip().is_loopback() && !allow_remote_api {
        anyhow::bail!(
            "refusing to serve the API on {listen}: it is not a loopback address (pass --allow-remote-api to do it anyway)"
        );
    }
    let mut controller = controller(&source, history)?;
    controller.concurrency = concurrency;
    // One controller per state directory, held until this process ends.
    let _lock = controller.store.lock()?;
    secure_files(&controller)?;
    let rt = runtime()?;
    rt.block_on(async move {
        controller.hub = crate::runtime::events::Hub::new(notify_url, controller.http.clone());
        if once {
            let summary = crate::runtime::daemon::pass(&controller).await;
            return Ok(if summary.is_some_and(|s| s.all_ready()) {
                0
            } else {
                1
            });
        }
        crate::runtime::daemon::run(
            std::sync::Arc::new(controller),
            crate::runtime::daemon::Options {
                interval,
                poll_interval,
                listen: Some(listen),
                webhook_secret_file,
                stop_timeout: Duration::from_secs(60),
                public_hosts,
                open_files,
            },
        )
        .await
    })
}

/// The notification URL, from `--notify-url-file` (read now: private, not empty, an
/// `http(s)://` URL) or `--notify-url` (with a warning when it was given on the command
/// line, where `ps` shows it). Either way it is masked in every log line from here on.
///
/// # Errors
/// When the file cannot be read, is readable by every user, is empty, or does not hold an
/// `http://` or `https://` URL; the error never quotes the file's content.
pub fn notify_url_from(
    flag: Option<String>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    let url = match (flag, file) {
        (_, Some(path)) => {
            let url =
                crate::redact::read_secret_file(path, "notify URL file (--notify-url-file)", true)
                    .map_err(|e| anyhow::anyhow!(e))?;
            let parsed = reqwest::Url::parse(&url).ok();
            if !parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
                anyhow::bail!(
                    "notify URL file (--notify-url-file) {} does not hold an http:// or https:// URL (one line, nothing else)",
                    path.display()
                );
            }
            url
        }
        (Some(url), None) => {
            let on_command_line =
                std::env::args().any(|a| a == "--notify-url" || a.starts_with("--notify-url="));
            if on_command_line {
                tracing::warn!(
                    "--notify-url is visible to every local user in `ps` and /proc/<pid>/cmdline, with any secret the URL holds: write it into a file readable only by this user and pass --notify-url-file instead"
                );
            }
            url
        }
        (None, None) => return Ok(None),
    };
    crate::redact::hide_in_logs(&url);
    Ok(Some(url))
}

/// The controller's runtime: one thread. Its work is waiting (timers, sockets, child
/// processes); what blocks (git, copying `node_modules`) runs on the blocking pool, whose
/// threads outlive a resync interval instead of being made anew for each pass. A
/// multi-threaded runtime kept a worker per core (and each its own malloc arena) awake
/// for nothing.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(120))
        .build()
}

/// Raise the soft open-file limit to the hard one (systemd's default soft limit is 1024)
/// and say so; returns the limit the process now runs with.
fn raise_open_files_limit() -> u64 {
    match crate::runtime::api::edge::raise_open_files_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!("open-file limit raised from {before} to {after} (the hard limit)");
            after
        }
        Ok((_, limit)) => {
            tracing::info!("open-file limit: {limit} (the hard limit)");
            limit
        }
        Err(e) => {
            tracing::warn!("could not raise the open-file limit: {e}");
            1024
        }
    }
}

/// glibc gives each thread that allocates its own arena (64 MiB reserved, and what it
/// touched kept resident); two are plenty for a controller that mostly waits.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Before anything runs: the state directory 0700 and its files 0600, `PM2_HOME` created
/// 0700 and pm2's dump files 0600; each permission changed is a warning saying so.
fn secure_files(controller: &crate::reconcile::Controller) -> anyhow::Result<()> {
    let fixed = controller.store.secure().map_err(|e| {
        anyhow::anyhow!(
            "making the state directory {} private: {e}",
            controller.store.dir.display()
        )
    })?;
    let (dump, note) = controller.ports.pm2.secure()?;
    for t in fixed.iter().chain(&dump) {
        tracing::warn!("{t}");
    }
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
    Ok(())
}

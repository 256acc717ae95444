//! The read-only views of a controller's records: `shipshape status` (one line per app, or
//! one app's detail; with `--watch`, a live view on a terminal or the running controller's
//! event stream when piped), `history` and `logs`. All but the stream read the state
//! directory directly, so they work with no controller running. How the records read is
//! [`super::view`]'s (pure); this module reads, picks and prints.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use super::{Format, StatusFormat};
use super::{shown, view};
use crate::state::{AppRecord, Store};

/// `shipshape status`: one line per app (or `app`'s detail); then, with `watch`, a live
/// view when standard output is a terminal, else every event from the running controller
/// until the stream ends.
///
/// # Errors
/// When the runtime for the stream cannot start.
pub fn status(
    state_dir: &Path,
    app: Option<&str>,
    output: StatusFormat,
    watch: bool,
) -> anyhow::Result<i32> {
    let store = match crate::state::existing(state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let rt = || tokio::runtime::Runtime::new();
    if watch && output != StatusFormat::Json && std::io::stdout().is_terminal() {
        if let Err(e) = read_records(&store, app, false) {
            eprintln!("error: {e}");
            return Ok(1);
        }
        return Ok(rt()?.block_on(live_view(&store, app)));
    }
    let code = print_records(&store, app, output);
    if !watch || code != 0 {
        return Ok(code);
    }
    let format = if output == StatusFormat::Json {
        Format::Json
    } else {
        Format::Table
    };
    Ok(rt()?.block_on(watch_events(state_dir, app, format)))
}

/// How often the live view reads the records when no event wakes it sooner.
const REFRESH: Duration = Duration::from_secs(1);

/// The live view: one line per app (or `only`'s detail), redrawn in place every [`REFRESH`]
/// (and at each event of the running controller, when one is there), changed lines
/// highlighted for a moment.
/// Ends with the process (Ctrl-C).
async fn live_view(store: &Store, only: Option<&str>) -> i32 {
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    if let Ok(client) = crate::runtime::api::Client::from_state_dir(&store.dir) {
        let wake = wake.clone();
        tokio::spawn(async move {
            let _ = client
                .watch(|_| {
                    wake.notify_one();
                    true
                })
                .await;
        });
    }
    let highlight = if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        view::Highlight::Marker
    } else {
        view::Highlight::Ansi
    };
    let mut frame = view::Frame::default();
    let mut stdout = std::io::stdout();
    loop {
        let now = chrono::Utc::now();
        let (records, problem) = match read_records(store, only, false) {
            Ok((r, problems)) if problems.is_empty() => (r, None),
            Ok((r, problems)) => (r, Some(problems.join("; "))),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let footer = format!(
            "{}  {}{}  (Ctrl-C to stop)",
            now.format("%H:%M:%S"),
            store.dir.display(),
            problem.map(|p| format!("  error: {p}")).unwrap_or_default()
        );
        let source = shown_source(store, false);
        let lines = match (only, records.first()) {
            (Some(_), Some(r)) => view::watch_detail_lines(r, &source, now, &footer),
            _ => view::watch_lines(&records, &source, now, &footer),
        };
        let (text, next) = frame.draw(&lines, now, terminal_width(), highlight);
        frame = next;
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return 0;
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}

/// The terminal's width in columns ($COLUMNS, else 120 when it cannot be asked).
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize struct we own; a failure leaves it zeroed.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if rc == 0 && ws.ws_col > 0 {
        return ws.ws_col as usize;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120)
}

/// Print each event of the running controller's stream (only `only`'s, if given).
async fn watch_events(state_dir: &Path, only: Option<&str>, output: Format) -> i32 {
    let client = match crate::runtime::api::Client::from_state_dir(state_dir) {
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
                Format::Json => match shown::for_json(&ev) {
                    Some(ev) => println!(
                        "{}",
                        shown::json_text(serde_json::to_string(&ev).expect("json"))
                    ),
                    None => eprintln!("error: an event of {} cannot be shown safely", ev.app),
                },
                Format::Table => println!(
                    "{}  {:<10} {:<19} {:<11} {}",
                    shown::text(&ev.at.to_string()),
                    shown::text(&ev.app),
                    serde_json::to_value(ev.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    ev.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
                    shown::text(&ev.message)
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

/// `shipshape logs`: the output of every step of a revision's rollout (and revert); by
/// default the last attempted revision's.
pub fn logs(state_dir: &Path, app: &str, revision: Option<u64>) -> i32 {
    let rec = match crate::state::existing(state_dir).and_then(|store| store.load_known(app)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let store = Store::new(state_dir);
    let Some(n) = revision.or(rec.last_attempted().map(|r| r.revision.number)) else {
        eprintln!("error: {app} has no revisions yet (see `shipshape status {app}`)");
        return 1;
    };
    if rec.revision(n).is_none() && revision.is_some() {
        let known: Vec<String> = rec
            .revisions
            .iter()
            .map(|r| r.revision.number.to_string())
            .collect();
        eprintln!(
            "error: {app} has no revision {n} (kept: {}; see `shipshape history {app}`)",
            known.join(", ")
        );
        return 1;
    }
    let path = store
        .app_dir(app)
        .join("logs")
        .join(format!("revision-{n}.log"));
    match std::fs::read(&path) {
        Ok(bytes) => {
            // The log keeps the raw output; what reaches the terminal is escaped.
            print!("{}", shown::text(&String::from_utf8_lossy(&bytes)));
            0
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            1
        }
    }
}

/// Every app's records (or `only`'s), by name, and the problems reading some of them (a
/// corrupt file hides only its own app); an app asked for by name must exist and be readable.
/// As a view shows them ([`shown_record`]): for JSON when `json`, else for people.
fn read_records(
    store: &Store,
    only: Option<&str>,
    json: bool,
) -> Result<(Vec<AppRecord>, Vec<String>), ViewError> {
    match only {
        Some(n) => Ok((vec![shown_record(&store.load_known(n)?, json)?], Vec::new())),
        None => {
            let (mut records, mut problems) = (Vec::new(), Vec::new());
            for n in store.apps() {
                match store
                    .load(&n)
                    .map_err(ViewError::from)
                    .and_then(|r| shown_record(&r, json))
                {
                    Ok(r) => records.push(r),
                    Err(e) => problems.push(e.to_string()),
                }
            }
            Ok((records, problems))
        }
    }
}

/// `rec` as a view shows it: URL credentials masked, and for people (not `json`) control
/// characters escaped (see [`shown`]). The records on disk keep the raw text.
fn shown_record(rec: &AppRecord, json: bool) -> Result<AppRecord, ViewError> {
    let shown = if json {
        shown::for_json(rec)
    } else {
        shown::for_people(rec)
    };
    shown.ok_or_else(|| ViewError::Unshowable(rec.name.clone()))
}

/// Why a view of the records cannot be shown.
#[derive(Debug, thiserror::Error)]
enum ViewError {
    /// The state directory or a record cannot be read.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A record's text does not read back once escaped for the view.
    #[error("{0}: the record cannot be shown safely")]
    Unshowable(String),
}

/// The config repo's status as a view shows it (see [`shown_record`]).
fn shown_source(store: &Store, json: bool) -> shipshape_spec::status::SourceStatus {
    let src = store.load_source();
    let shown = if json {
        shown::for_json(&src)
    } else {
        shown::for_people(&src)
    };
    shown.unwrap_or_default()
}

/// Print the records as `output` says: the source line and one line per app, `only`'s
/// detail, or JSON. 1 when some cannot be read (the others are printed).
fn print_records(store: &Store, only: Option<&str>, output: StatusFormat) -> i32 {
    let (records, problems) = match read_records(store, only, output == StatusFormat::Json) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    for p in &problems {
        eprintln!("error: {p}");
    }
    let now = chrono::Utc::now();
    match output {
        StatusFormat::Json => {
            println!(
                "{}",
                shown::json_text(serde_json::to_string_pretty(&records).expect("json"))
            )
        }
        StatusFormat::Table | StatusFormat::Wide => {
            if let Some(line) = view::source_line(&shown_source(store, false)) {
                println!("{line}");
            }
            if let Some(line) = api_line(&store.dir) {
                println!("{line}");
            }
            match (only, records.first()) {
                (Some(_), Some(r)) if output == StatusFormat::Table => {
                    print!("{}", view::detail(r, now))
                }
                _ if records.is_empty() && problems.is_empty() => {
                    println!(
                        "no apps yet in {} (a controller records each app at its first pass)",
                        store.dir.display()
                    )
                }
                _ => {
                    let wide = output == StatusFormat::Wide;
                    for line in view::render_table(&view::list(&records, now, wide), wide) {
                        println!("{line}");
                    }
                }
            }
        }
    }
    i32::from(!problems.is_empty())
}

/// A line when the running controller's TCP API is not listening (its port busy, say):
/// what it asked for, why, and that the CLI goes through the socket meanwhile.
fn api_line(state_dir: &Path) -> Option<String> {
    let a = crate::runtime::api::Address::read(state_dir)?;
    if a.listening || !a.writer_alive() {
        return None;
    }
    Some(format!(
        "api NOT LISTENING on {}: {} (retrying with back-off; the CLI uses {})",
        a.listen.as_deref().unwrap_or("?"),
        a.error.as_deref().unwrap_or("unknown error"),
        a.socket
            .as_ref()
            .map_or("nothing".into(), |s| s.display().to_string())
    ))
}

/// `shipshape history`: an app's revisions, oldest first.
pub fn history(state_dir: &Path, app: &str, output: Format) -> i32 {
    let r = match crate::state::existing(state_dir)
        .and_then(|store| store.load_known(app))
        .map_err(ViewError::from)
        .and_then(|r| shown_record(&r, output == Format::Json))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match output {
        Format::Json => {
            let revs: Vec<_> = r.revisions.iter().map(|e| &e.revision).collect();
            println!(
                "{}",
                shown::json_text(serde_json::to_string_pretty(&revs).expect("json"))
            );
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

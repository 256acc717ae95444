//! The read-only views of a controller's records: `shipshape status` (and its `--watch`
//! stream of events from the running controller), `history` and `logs`. All but the
//! stream read the state directory directly, so they work with no controller running.

use std::path::Path;

use shipshape_spec::status::{Outcome, Revision};

use super::Format;
use crate::state::Store;

/// `shipshape status`: each app's phase, conditions, revisions and last error; then, with
/// `watch`, every event from the running controller until the stream ends.
///
/// # Errors
/// When the runtime for the stream cannot start.
pub fn status(
    state_dir: &Path,
    app: Option<&str>,
    output: Format,
    watch: bool,
) -> anyhow::Result<i32> {
    let code = print_records(&Store::new(state_dir), app, output);
    if !watch || code != 0 {
        return Ok(code);
    }
    let rt = tokio::runtime::Runtime::new()?;
    Ok(rt.block_on(watch_events(state_dir, app, output)))
}

/// Print each event of the running controller's stream (only `only`'s, if given).
async fn watch_events(state_dir: &Path, only: Option<&str>, output: Format) -> i32 {
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

/// `shipshape logs`: the output of every step of a revision's rollout (and revert); by
/// default the last attempted revision's.
pub fn logs(store: &Store, app: &str, revision: Option<u64>) -> i32 {
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

/// The source line and every app's (or `only`'s) records; 1 when an app has none.
fn print_records(store: &Store, only: Option<&str>, output: Format) -> i32 {
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

/// One app's block of `status` lines.
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
            outcome_note(&e.revision)
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

/// `shipshape history`: an app's revisions, oldest first.
pub fn history(store: &Store, app: &str, output: Format) -> i32 {
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

/// What follows a revision's outcome on a `status` line: its message, except for a healthy
/// revision, whose outcome says it (`history` shows every message).
fn outcome_note(v: &Revision) -> String {
    if v.outcome == Outcome::Healthy || v.message.is_empty() {
        String::new()
    } else {
        format!(": {}", v.message)
    }
}

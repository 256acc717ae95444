//! `shipshape plan` and `shipshape validate`: what a pass would do, and whether App
//! documents are valid, without changing anything.

use std::path::PathBuf;

use super::{Format, SourceArgs, controller, init_tracing};
use crate::reconcile::Controller;

/// `shipshape plan`: show the steps a pass would run, with reasons, for the config repo's
/// branch tip or for `files`. Exit code 0: nothing to do; 2: changes pending; 1: an error,
/// or a blocker that would stop the pass.
///
/// # Errors
/// Neither `--repo` nor `--file`, a state directory that cannot be created, or a runtime
/// that cannot start.
pub fn plan(source: &SourceArgs, output: Format, files: &[PathBuf]) -> anyhow::Result<i32> {
    init_tracing();
    if source.repo.is_none() && files.is_empty() {
        anyhow::bail!("plan needs --repo (or SHIPSHAPE_REPO), or --file");
    }
    let controller = controller(source, crate::state::DEFAULT_HISTORY)?;
    let rt = tokio::runtime::Runtime::new()?;
    Ok(rt.block_on(plan_with(controller, output, files)))
}

/// Plan every document with `controller`'s observations of this host.
async fn plan_with(controller: Controller, output: Format, files: &[PathBuf]) -> i32 {
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
                .map(|d| crate::source::DocumentFile::new(d.path, d.text))
                .collect(),
        }
    } else {
        let mut docs = Vec::new();
        for f in files {
            match crate::source::DocumentFile::read(f) {
                Ok(doc) => docs.push(doc),
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
        let app = match file.load() {
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
        // What the daemon would converge to: the same target function it uses.
        let (app, hold) = match held_target(&record, &app, &snapshot.commit) {
            Ok(t) => t,
            Err(message) => {
                println!("{}: {message}", app.metadata.name);
                failed = true;
                continue;
            }
        };
        // An unreadable env file blocks the plan, but the rest is still worth showing.
        let (secrets, env_problem) = match crate::reconcile::Secrets::load(&app) {
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
                if let Some(h) = &hold {
                    println!("  HOLD     {}", h.message);
                }
                print!("{p}");
            }
            Format::Json => json.push(serde_json::json!({
                "app": app.metadata.name,
                "configCommit": snapshot.commit,
                "hold": hold,
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

/// Why the daemon holds an app instead of following the document.
#[derive(Debug, Clone, serde::Serialize)]
struct Hold {
    /// What holds it.
    kind: HoldKind,
    /// The revision held.
    revision: u64,
    /// The hold in words.
    message: String,
}

/// What holds an app, as `shipshape plan --output json` names it (`pinned`, `quarantined`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum HoldKind {
    /// A pin (`shipshape pin` or `spec.pin`).
    Pinned,
    /// The desired config commit is quarantined; the last good revision is held.
    Quarantined,
}

/// The document the daemon would converge `app` to, from the records (a pin, including
/// one `spec.pin` would set now; a quarantine of `config_commit`), and the hold, if any.
fn held_target(
    record: &crate::state::AppRecord,
    app: &shipshape_spec::App,
    config_commit: &str,
) -> Result<(shipshape_spec::App, Option<Hold>), String> {
    use crate::plan::short_sha;
    use crate::reconcile::target::{self, DocumentPinChange, Mode, NoTarget};
    let mut view = record.clone();
    match target::document_pin(&view, app) {
        DocumentPinChange::Set(revision) => {
            let doc = app.spec.pin.as_ref().expect("document pins");
            view.pin = Some(shipshape_spec::status::Pin {
                revision,
                by: doc.by.clone().unwrap_or_else(|| "the document".into()),
                at: crate::state::now(),
                reason: doc.reason.clone(),
                source: shipshape_spec::status::PinSource::Document,
            });
        }
        DocumentPinChange::Remove => view.pin = None,
        DocumentPinChange::Keep | DocumentPinChange::Refused(_) => {}
    }
    let t = target::choose(&view, app, config_commit).map_err(|no| match no {
        NoTarget::PinGone { revision } => format!(
            "pinned to revision {revision}, which is no longer in the history; unpin or pin another revision"
        ),
        NoTarget::QuarantinedWithoutGood { why } => format!(
            "config commit {} is quarantined ({why}) and there is no healthy revision to hold; commit a fix or run `shipshape retry {}`",
            short_sha(config_commit),
            app.metadata.name
        ),
    })?;
    let desired = format!(
        "desired config {} (app {}) is not applied",
        short_sha(config_commit),
        short_sha(&app.spec.source.commit)
    );
    let hold = match (&t.mode, t.held) {
        (Mode::Pinned(pin), Some(n)) => Some(Hold {
            kind: HoldKind::Pinned,
            revision: n,
            message: format!(
                "pinned at revision {n} by {} ({}); {desired}; only drift towards the pin is corrected",
                pin.by, pin.reason
            ),
        }),
        (Mode::Hold { why }, Some(n)) => Some(Hold {
            kind: HoldKind::Quarantined,
            revision: n,
            message: format!(
                "config commit {} is quarantined ({why}); holding revision {n}; {desired} until a new config commit or `shipshape retry {}`",
                short_sha(config_commit),
                app.metadata.name
            ),
        }),
        _ => None,
    };
    Ok((t.document, hold))
}

/// `shipshape validate`: check each file as an App document; print every problem with
/// file:line:column. Exit code 1 when any file is unreadable or invalid.
pub fn validate(files: &[PathBuf]) -> i32 {
    let mut bad = 0;
    for f in files {
        let name = f.display().to_string();
        match crate::source::DocumentFile::read(f) {
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                bad += 1;
            }
            Ok(doc) => match doc.load() {
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

//! `shipshape plan` and `shipshape validate`: what a pass would do, and whether App
//! documents are valid, without changing anything.

use std::path::PathBuf;

use super::{Format, SourceArgs, controller, init_tracing};
use crate::reconciler::Controller;

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

/// `shipshape validate`: check each file as an App document; print every problem with
/// file:line:column. Exit code 1 when any file is unreadable or invalid.
pub fn validate(files: &[PathBuf]) -> i32 {
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

//! `shipshape plan` and `shipshape validate`: what a pass would do, and whether App
//! documents are valid, without changing anything.

use std::path::{Path, PathBuf};

use shipshape_spec::App;

use super::{Format, PlanController, SourceArgs, init_tracing, plan_controller};
use crate::plan::short_sha;
use crate::reconcile::target::Hold;
use crate::reconcile::{Controller, Preparation};

/// `shipshape plan`: show the steps a pass would run, with reasons, for the config repo's
/// branch tip or for `files`. Exit code 0: nothing to do; 2: changes pending; 1: an error,
/// or a blocker that would stop the pass.
///
/// It changes nothing ([`plan_controller`]): no state directory is created (one that exists
/// is read), no pm2 daemon is started (a running one is asked; with none, there are no
/// processes, and it says so), no app repository is fetched.
///
/// # Errors
/// Neither `--repo` nor `--file`, pm2 not found, or a runtime that cannot start.
pub fn plan(source: &SourceArgs, output: Format, files: &[PathBuf]) -> anyhow::Result<i32> {
    init_tracing();
    if source.repo.is_none() && files.is_empty() {
        anyhow::bail!("plan needs --repo (or SHIPSHAPE_REPO), or --file");
    }
    let planner = plan_controller(source)?;
    let rt = tokio::runtime::Runtime::new()?;
    Ok(rt.block_on(plan_with(&planner, output, files)))
}

/// Plan every document with `planner`'s observations of this host.
async fn plan_with(planner: &PlanController, output: Format, files: &[PathBuf]) -> i32 {
    let controller = &planner.controller;
    let (snapshot, invalid) = match snapshot(controller, files).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut shown = Shown {
        failed: invalid,
        ..Shown::default()
    };
    for file in &snapshot.files {
        let app = match file.load_warned() {
            Ok((a, warnings)) => {
                print_warnings(&warnings);
                a
            }
            Err(e) => {
                eprintln!("{e}");
                shown.failed = true;
                continue;
            }
        };
        // What the daemon's pass would do: the very preparation it runs.
        match controller.preview(&app, &snapshot.commit).await {
            Ok((_, mut prepared)) => {
                // What was observed of pm2 when no daemon runs: said in the plan itself.
                if let (Preparation::Planned(p), Some(note)) =
                    (&mut prepared, planner.pm2.no_daemon())
                {
                    p.plan.notes.insert(0, note);
                }
                shown.show(output, &app, &snapshot.commit, prepared)
            }
            Err(e) => {
                eprintln!("error: {}: {e}", app.metadata.name);
                shown.failed = true;
            }
        }
    }
    if output == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&shown.json).expect("json")
        );
    }
    if shown.failed {
        1
    } else if shown.pending {
        2
    } else {
        0
    }
}

/// The documents to plan: the config repo's (the branch tip, or the last trusted commit),
/// or `files`; and whether some did not load. `Err`: the exit code.
async fn snapshot(
    controller: &Controller,
    files: &[PathBuf],
) -> Result<(crate::source::Snapshot, bool), i32> {
    if !files.is_empty() {
        let mut docs = Vec::new();
        for f in files {
            match crate::source::DocumentFile::read(f) {
                Ok(doc) => docs.push(doc),
                Err(e) => {
                    eprintln!("{}: cannot read: {e}", f.display());
                    return Err(1);
                }
            }
        }
        let commit = "(files)".into();
        return Ok((
            crate::source::Snapshot {
                commit,
                files: docs,
            },
            false,
        ));
    }
    if controller.config.is_remote()
        && let Err(e) = controller.fetch_source().await
    {
        eprintln!("error: {e}");
        return Err(1);
    }
    let desired = controller.load_desired().await.map_err(|e| {
        eprintln!("error: {e}");
        1
    })?;
    if let Some(r) = &desired.refused {
        eprintln!("note: {r}; planning against the last trusted commit");
    }
    for (_, _, message) in &desired.invalid {
        eprintln!("{message}");
    }
    let files = desired
        .docs
        .into_iter()
        .map(|d| crate::source::DocumentFile::new(d.path, d.text))
        .collect();
    let snapshot = crate::source::Snapshot {
        commit: desired.commit.clone(),
        files,
    };
    Ok((snapshot, !desired.invalid.is_empty()))
}

/// What a pass does instead of running a plan, in words, and whether that is a failure
/// (exit code 1) rather than a change pending (2); `None` for a plan.
fn instead(prepared: &Preparation) -> Option<(String, bool)> {
    Some(match prepared {
        Preparation::Planned(_) => return None,
        Preparation::NoTarget(no) => (no.to_string(), true),
        Preparation::EnvFileUnreadable(e) => (e.clone(), true),
        Preparation::Regressed(reg) => (
            format!(
                "revision {} regressed: {}; the pass acts on it first (a revert within rollback.window, else Degraded)",
                reg.revision, reg.reason
            ),
            false,
        ),
        Preparation::ResumeRevert(j) => (
            format!("{}; the pass finishes the revert", j.describe()),
            false,
        ),
        Preparation::Gated(v) => (
            format!(
                "HOLD wave {} ({} of {}) holds the first rollout: {}",
                v.wave,
                v.wave_index + 1,
                v.waves,
                v.message
            ),
            false,
        ),
    })
}

/// What `plan` showed so far: the exit code's facts, and the JSON documents.
#[derive(Default)]
struct Shown {
    failed: bool,
    pending: bool,
    json: Vec<serde_json::Value>,
}

impl Shown {
    /// Show what a pass of `app` would do: `prepared`, from [`Controller::preview`].
    fn show(&mut self, output: Format, app: &App, config_commit: &str, prepared: Preparation) {
        let name = &app.metadata.name;
        // The pass would act on something else first, or stop: say what.
        if let Some((line, failed)) = instead(&prepared) {
            self.failed |= failed;
            self.pending |= !failed;
            match output {
                Format::Table => println!("{name}: {line}"),
                Format::Json => self.json.push(serde_json::json!({
                    "app": name, "configCommit": config_commit, "act": line,
                })),
            }
            return;
        }
        let Preparation::Planned(p) = prepared else {
            return;
        };
        let hold = Hold::of(&p.target, app, config_commit);
        let mut plan = p.plan.clone();
        if let Some(problem) = &p.env_problem {
            plan.blockers.insert(0, problem.clone());
        }
        // A wave gate's hold is a rollout still to come.
        self.pending |= !plan.is_empty()
            || hold
                .as_ref()
                .is_some_and(|h| h.kind == crate::reconcile::target::HoldKind::Wave);
        self.failed |= !plan.blockers.is_empty();
        match output {
            Format::Table => {
                println!(
                    "{name} (config {}, app {}):",
                    short_sha(config_commit),
                    short_sha(&p.target.document.spec.source.commit)
                );
                if let Some(h) = &hold {
                    println!("  HOLD     {h}");
                }
                if let Some(j) = &p.stopped {
                    println!("  RESUME   {}", j.describe());
                }
                print!("{plan}");
            }
            Format::Json => self.json.push(serde_json::json!({
                "app": name,
                "configCommit": config_commit,
                "hold": hold,
                "plan": plan,
            })),
        }
    }
}

/// `shipshape traffic-file`: the first upstream file of `file`'s `spec.traffic` on stdout.
/// Exit 0, or 1 (the document does not load or has no `spec.traffic`).
pub fn traffic_file(file: &Path) -> i32 {
    let name = file.display().to_string();
    let app = match crate::source::DocumentFile::read(file).map(|d| d.load()) {
        Err(e) => {
            eprintln!("{name}: cannot read: {e}");
            return 1;
        }
        Ok(Err(e)) => {
            eprintln!("{e}");
            return 1;
        }
        Ok(Ok(app)) => app,
    };
    let Some(t) = &app.spec.traffic else {
        eprintln!("{name}: has no spec.traffic");
        return 1;
    };
    print!(
        "{}",
        crate::traffic::upstream_text(t, &app.metadata.name, t.ports[0], None)
    );
    0
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
            Ok(doc) => match doc.load_warned() {
                Ok((app, warnings)) => {
                    print_warnings(&warnings);
                    println!("{name}: ok (app {})", app.metadata.name);
                }
                Err(e) => {
                    eprintln!("{e}");
                    bad += 1;
                }
            },
        }
    }
    if bad > 0 { 1 } else { 0 }
}

/// Print the warnings of a document that loads, one a line on stderr:
/// `warning: apps/x.yaml:12:7: spec.processes[0].script: …`. They fail nothing.
fn print_warnings(warnings: &[shipshape_spec::Problem]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

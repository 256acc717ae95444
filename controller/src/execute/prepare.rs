//! Preparing a release, beside the live one: the app commit checked out (through the
//! source port), dependencies installed or carried over from a release installed from the
//! same inputs, `build.cache` carried, the build run; and the after-switch hooks. Commands
//! run through the commands port, with the env file, `build.env` and the `SHIPSHAPE_*`
//! variables, their output logged with secrets masked.

use std::path::Path;
use std::time::Instant;

use shipshape_spec::App;
use shipshape_spec::status::StepKind;
use tracing::{info, warn};

use super::{Secrets, StepError, append_log_line, confined_error, exec_error, shipshape_env};
use crate::exec::Spec;
use crate::ports::{Commands, Source};
use crate::reconcile::decide::ErrorClass;
use crate::reconcile::pins::PinWatch;
use crate::release::Layout;
use crate::source;
use crate::state;

/// Check `commit` of `app` out into `dest` (an incomplete one from an interrupted pass is
/// removed first) through the source port; refuse a commit that carries the controller's
/// own release marker.
pub(super) async fn fetch(
    sources: &dyn Source,
    app: &App,
    commit: &str,
    dest: &Path,
) -> Result<(), StepError> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| {
            StepError::new(
                StepKind::Fetch,
                ErrorClass::Transient,
                format!("removing the incomplete {}: {e}", dest.display()),
            )
        })?;
    }
    sources
        .checkout(app, commit, dest)
        .await
        .map_err(|e| StepError {
            step: StepKind::Fetch,
            class: match e {
                source::SourceError::NoCommit { .. } => ErrorClass::Stalled,
                _ => ErrorClass::Transient,
            },
            message: crate::redact::credentials(&e.to_string()).into_owned(),
            tail: None,
        })?;
    // The marker is the controller's word that a release is complete: one committed
    // to the app repo (a file or a link) would seal an interrupted preparation.
    if std::fs::symlink_metadata(dest.join(crate::release::MARKER)).is_ok() {
        return Err(StepError::new(
            StepKind::Fetch,
            ErrorClass::Stalled,
            format!(
                "the app commit has a {} (the controller's own release marker); refusing",
                crate::release::MARKER
            ),
        ));
    }
    Ok(())
}

/// What preparing one release needs: its app, id, directory, log and secrets, and the
/// pass's pin checks (a request that stops the pass cuts an install or build short).
pub(super) struct Prep<'a> {
    pub(super) commands: &'a dyn Commands,
    pub(super) app: &'a App,
    pub(super) release: &'a str,
    pub(super) dir: &'a Path,
    pub(super) log: &'a Path,
    pub(super) secrets: &'a Secrets,
    pub(super) stop: Option<&'a PinWatch>,
}

impl Prep<'_> {
    /// Run one install or build command in the release, with the env file, `build.env`
    /// and the `SHIPSHAPE_*` variables, its output logged with secrets masked. A pin that
    /// stops the pass kills it (its whole process group: dropping [`exec::run`] does).
    async fn run(&self, step: StepKind, command: &str) -> Result<(), StepError> {
        self.check_scripts(step, command, self.dir)?;
        let build = &self.app.spec.build;
        let env = build.env.iter().map(|(k, v)| (k.clone(), v.as_text()));
        let spec = Spec::shell(command, self.dir, build.timeout.std())
            .envs(self.secrets.env.vars.clone())
            .envs(env)
            .envs(shipshape_env(self.app, self.release, self.dir))
            .redact(&self.secrets.redactor)
            .log_to(self.log);
        let stopped = async {
            match self.stop {
                Some(w) => w.stopped().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.commands.run(&spec) => r.map(|_| ()).map_err(|e| exec_error(step, e)),
            why = stopped => {
                let message = format!("stopped during {step} (its process group was killed): {why}");
                append_log_line(self.log, &format!("== {} {message}", state::now()));
                info!(app = %self.app.metadata.name, step = %step, "{message}");
                Err(StepError::new(step, ErrorClass::Superseded, message))
            }
        }
    }

    /// Refuse, before npm runs, a command running an npm script that `dir`'s package.json
    /// does not have (the plan checks it too, from git, when it can): the message names the
    /// script and the commit, where npm would end with a pointer to its own log.
    fn check_scripts(&self, step: StepKind, command: &str, dir: &Path) -> Result<(), StepError> {
        use crate::plan::scripts::{PackageScripts, missing_in_command, npm_scripts};
        if npm_scripts(command).is_empty() {
            return Ok(());
        }
        // No package.json, or one that cannot be read: npm says what it finds (the plan
        // names a missing package.json already, from git).
        let Ok(text) = std::fs::read_to_string(dir.join("package.json")) else {
            return Ok(());
        };
        let scripts = PackageScripts::of(Some(&text));
        let commit = &self.app.spec.source.commit;
        match missing_in_command(command, &scripts, commit)
            .into_iter()
            .next()
        {
            None => Ok(()),
            Some(problem) => {
                let message = format!("{problem}; not running it");
                append_log_line(self.log, &format!("== {} {message}", state::now()));
                Err(StepError::new(step, ErrorClass::Stalled, message))
            }
        }
    }

    /// `build.install`, when there is one.
    pub(super) async fn install(&self) -> Result<(), StepError> {
        match &self.app.spec.build.install {
            Some(cmd) => self.run(StepKind::Install, cmd).await,
            None => Ok(()),
        }
    }

    /// `build.steps`, in order.
    pub(super) async fn build(&self) -> Result<(), StepError> {
        for cmd in &self.app.spec.build.steps {
            self.run(StepKind::Build, cmd).await?;
        }
        Ok(())
    }

    /// Carry `node_modules` over from release `from` (installed from the same inputs) as
    /// this release's own copy (reflinked where the filesystem can, copied otherwise), so
    /// nothing this release's build writes can reach `from`, which may be live. Both ends
    /// are resolved beneath their releases without following a symlink
    /// ([`crate::confined`]): a `node_modules` committed as a link is refused by name.
    pub(super) async fn reuse_deps(&self, layout: &Layout, from: &str) -> Result<(), StepError> {
        let nm = Path::new("node_modules");
        let transient = |m: String| StepError::new(StepKind::ReuseDeps, ErrorClass::Transient, m);
        let src = match layout.open(from).and_then(|d| d.open_dir(nm)) {
            Ok(d) => d,
            // The plan saw it; it went away since. Installing here instead would run a step
            // the plan did not name: fail, and let the next pass plan an install.
            Err(e) if e.is_not_found() => {
                return Err(transient(format!(
                    "{} is gone since the plan: nothing to reuse (the next pass plans an install)",
                    layout.release(from).join(nm).display()
                )));
            }
            Err(e) => return Err(transient(format!("node_modules of release {from}: {e}"))),
        };
        let dst = crate::confined::Dir::open(self.dir, "the release")
            .map_err(|e| transient(e.to_string()))?;
        if let Err(e) = dst.remove_tree(nm) {
            return Err(confined_error(
                StepKind::ReuseDeps,
                format!("removing the incomplete {}", self.dir.join(nm).display()),
                e,
            ));
        }
        let t0 = Instant::now();
        let stats = tokio::task::spawn_blocking(move || dst.copy_tree(&src, nm))
            .await
            .expect("copy task panicked")
            .map_err(|e| {
                confined_error(
                    StepKind::ReuseDeps,
                    format!("copying node_modules from release {from}"),
                    e,
                )
            })?;
        let how = if stats.cloned == stats.files {
            "reflinked"
        } else if stats.cloned == 0 {
            "copied"
        } else {
            "partly reflinked, partly copied"
        };
        append_log_line(
            self.log,
            &format!(
                "node_modules from release {from}: {} files ({} MB) {how}, {} symlinks, in {:.1}s",
                stats.files,
                stats.bytes / 1_000_000,
                stats.symlinks,
                t0.elapsed().as_secs_f64()
            ),
        );
        info!(app = %self.app.metadata.name, from = %from, files = stats.files, cloned = stats.cloned, "node_modules {how}");
        Ok(())
    }

    /// Refuse a `build.cache` path of this release that runs through a symlink (committed
    /// to the app repo): the controller replaces those directories, so a link there would
    /// make it remove and write outside the release (`.next -> /some/dir`) or into another
    /// release (`.next -> ../<live>/.next`). Checked before every build, whether or not a
    /// cache is carried this time, so the same commit fails the same way.
    pub(super) fn check_build_cache_paths(&self, layout: &Layout) -> Result<(), StepError> {
        let dst = layout
            .open(self.release)
            .map_err(|e| StepError::new(StepKind::Build, ErrorClass::Transient, e.to_string()))?;
        for dir in &self.app.spec.build.cache {
            if let Err(e) = dst.check_no_symlinks(Path::new(dir)) {
                return Err(confined_error(
                    StepKind::Build,
                    format!("build.cache {dir}"),
                    e,
                ));
            }
        }
        Ok(())
    }

    /// Give this release its own copy of release `from`'s `build.cache` directories (each
    /// reflinked or copied file by file, never shared), before its build runs. A directory
    /// `from` lacks is skipped; one already in this release (committed to git, or left by an
    /// interrupted preparation) is replaced. Every path is resolved beneath its release
    /// without following a symlink ([`crate::confined`]): a link on this release's side is
    /// an error naming it (the build fails, nothing outside is touched); any other failed
    /// copy is logged, the partial copy removed, and the build runs from scratch (a cache
    /// is an optimisation).
    pub(super) async fn carry_build_cache(
        &self,
        layout: &Layout,
        from: &str,
    ) -> Result<(), StepError> {
        for dir in &self.app.spec.build.cache {
            let rel = Path::new(dir);
            let src = match layout.open(from).and_then(|d| d.open_dir(rel)) {
                Ok(src) => src,
                Err(e) => {
                    let why = if e.is_not_found() {
                        format!("release {from} has none")
                    } else {
                        e.to_string()
                    };
                    append_log_line(self.log, &format!("build cache {dir}: {why}; not carried"));
                    continue;
                }
            };
            let dst = layout.open(self.release).map_err(|e| {
                StepError::new(StepKind::Build, ErrorClass::Transient, e.to_string())
            })?;
            let t0 = Instant::now();
            let rel = rel.to_path_buf();
            let copied = tokio::task::spawn_blocking(move || {
                let rel = rel.as_path();
                dst.remove_tree(rel)?;
                let r = dst.copy_tree(&src, rel);
                if r.is_err() {
                    let _ = dst.remove_tree(rel);
                }
                r
            })
            .await
            .expect("copy task panicked");
            match copied {
                Ok(stats) => {
                    append_log_line(
                        self.log,
                        &format!(
                            "build cache {dir} from release {from}: {} files ({} MB, {} reflinked) in {:.1}s",
                            stats.files,
                            stats.bytes / 1_000_000,
                            stats.cloned,
                            t0.elapsed().as_secs_f64()
                        ),
                    );
                    info!(app = %self.app.metadata.name, from = %from, cache = %dir, files = stats.files, "build cache carried");
                }
                Err(e) if e.is_refusal() => {
                    return Err(confined_error(
                        StepKind::Build,
                        format!("build.cache {dir}"),
                        e,
                    ));
                }
                Err(e) => {
                    append_log_line(
                        self.log,
                        &format!(
                            "build cache {dir} from release {from} not carried: {e}; building from scratch"
                        ),
                    );
                    warn!(app = %self.app.metadata.name, from = %from, cache = %dir, "build cache not carried: {e}");
                }
            }
        }
        Ok(())
    }

    /// One after-switch hook, run in `current`.
    pub(super) async fn hook(&self, command: &str, current: &Path) -> Result<(), StepError> {
        self.check_scripts(StepKind::Hook, command, current)?;
        let spec = Spec::shell(command, current, self.app.spec.hooks.timeout.std())
            .envs(self.secrets.env.vars.clone())
            .envs(shipshape_env(self.app, self.release, self.dir))
            .redact(&self.secrets.redactor)
            .log_to(self.log);
        self.commands
            .run(&spec)
            .await
            .map(|_| ())
            .map_err(|e| exec_error(StepKind::Hook, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan chose reuse-deps from a release whose `node_modules` was there; it is gone
    /// by the time the step runs: the step fails as reuse-deps and installs nothing.
    #[tokio::test]
    async fn reuse_deps_fails_when_the_source_node_modules_vanished_and_never_installs() {
        let root = tempfile::tempdir().unwrap();
        let mut app = crate::reconcile::fixtures::app("2222222222222222222222222222222222222222");
        app.spec.releases.root = root.path().display().to_string();
        app.spec.build.install = Some("touch installed-anyway".into());
        let layout = Layout::new(root.path());
        for id in ["from", "to"] {
            std::fs::create_dir_all(layout.release(id)).unwrap();
        }
        let (dir, log) = (layout.release("to"), root.path().join("log"));
        let secrets = Secrets::default();
        let prep = Prep {
            commands: &crate::ports::SystemCommands,
            app: &app,
            release: "to",
            dir: &dir,
            log: &log,
            secrets: &secrets,
            stop: None,
        };

        let e = prep.reuse_deps(&layout, "from").await.unwrap_err();
        assert_eq!(e.step, StepKind::ReuseDeps);
        assert_eq!(e.class, ErrorClass::Transient);
        assert!(
            e.message.contains("is gone since the plan"),
            "{}",
            e.message
        );
        assert!(!dir.join("installed-anyway").exists(), "it ran the install");
        assert!(!dir.join("node_modules").exists());

        // With the directory there, it is copied (and still nothing is installed).
        std::fs::create_dir_all(layout.release("from").join("node_modules/dep")).unwrap();
        std::fs::write(
            layout.release("from").join("node_modules/dep/index.js"),
            "x",
        )
        .unwrap();
        prep.reuse_deps(&layout, "from").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("node_modules/dep/index.js")).unwrap(),
            "x"
        );
        assert!(!dir.join("installed-anyway").exists(), "it ran the install");
    }

    /// A build step runs `npm run build`; the release's package.json has no such script: the
    /// step fails before anything runs, naming the script and the commit (never npm's
    /// "A complete log of this run can be found in …"), and a script that is there runs.
    #[tokio::test]
    async fn a_build_step_for_a_missing_npm_script_fails_before_running_anything() {
        let root = tempfile::tempdir().unwrap();
        let commit = "2222222222222222222222222222222222222222";
        let mut app = crate::reconcile::fixtures::app(commit);
        app.spec.releases.root = root.path().display().to_string();
        // `npm` is not run at all: this one would leave a file behind if it were.
        app.spec.build.steps = vec!["touch ran && npm run build".into()];
        let dir = root.path().join("rel");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("package.json"),
            r#"{"scripts":{"start":"node s.js"}}"#,
        )
        .unwrap();
        let (log, secrets) = (root.path().join("log"), Secrets::default());
        let prep = Prep {
            commands: &crate::ports::SystemCommands,
            app: &app,
            release: commit,
            dir: &dir,
            log: &log,
            secrets: &secrets,
            stop: None,
        };
        let e = prep.build().await.unwrap_err();
        assert_eq!((e.step, e.class), (StepKind::Build, ErrorClass::Stalled));
        assert_eq!(
            e.message,
            "package.json at 222222222222 has no script \"build\" (`touch ran && npm run build`); its scripts: start; not running it"
        );
        assert!(!dir.join("ran").exists(), "the command ran");
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("has no script \"build\"")
        );
        // With the script there, the command runs (`npm run` is not reached: `true ||`).
        let mut app = app.clone();
        app.spec.build.steps = vec!["touch ran || npm run start".into()];
        let prep = Prep { app: &app, ..prep };
        prep.build().await.unwrap();
        assert!(dir.join("ran").exists());
    }
}

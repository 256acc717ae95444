//! The server as it is for one app: its releases and `current`, pm2's processes (one
//! shared `pm2 jlist` per short window), the database's migration level, and the desired
//! commit's lockfile and package.json scripts when a release must be prepared. It changes
//! nothing.

use std::path::PathBuf;

use shipshape_spec::App;

use std::path::Path;

use crate::execute::{self, Secrets};
use crate::migrate;
use crate::plan::{self, MigrationState, Observed};
use crate::ports::Ports;
use crate::reconcile::{Controller, ReconcileError};
use crate::release::Layout;
use crate::state::AppRecord;

/// What observing reaches: pm2 (its process list), the app sources (the desired commit's
/// lockfile), the database (through dbmate or the release's own tools), the CPUs.
pub struct Observer<'a> {
    /// The ports.
    pub ports: &'a Ports,
    /// CPUs (for `instances: max`).
    pub cpus: u32,
    /// dbmate, for releases that do not bring their own.
    pub dbmate: &'a Path,
}

impl Controller {
    /// What the server looks like for `app` ([`Observer::observe`] with this controller's
    /// ports).
    ///
    /// # Errors
    /// [`ReconcileError`] when releases or pm2 cannot be read.
    pub async fn observe(
        &self,
        app: &App,
        record: &AppRecord,
        secrets: &Secrets,
    ) -> Result<Observed, ReconcileError> {
        let observer = Observer {
            ports: &self.ports,
            cpus: self.cpus,
            dbmate: &self.dbmate,
        };
        observer.observe(app, record, secrets).await
    }
}

impl Observer<'_> {
    /// What the server looks like for `app`.
    ///
    /// # Errors
    /// [`ReconcileError`] when releases or pm2 cannot be read.
    pub async fn observe(
        &self,
        app: &App,
        record: &AppRecord,
        secrets: &Secrets,
    ) -> Result<Observed, ReconcileError> {
        let layout = Layout::new(&app.spec.releases.root);
        let releases = layout.scan().map_err(|source| ReconcileError::Releases {
            root: layout.root.clone(),
            source,
        })?;
        let current = layout.current_release();
        let node_modules = releases
            .iter()
            .filter(|(id, marker)| marker.is_some() && layout.has_node_modules(id))
            .map(|(id, _)| id.clone())
            .collect();
        let build_caches = releases
            .iter()
            .filter(|(id, marker)| {
                marker.is_some()
                    && app
                        .spec
                        .build
                        .cache
                        .iter()
                        .any(|dir| layout.has_dir(id, std::path::Path::new(dir)))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let migration = match &app.spec.migrations {
            None => MigrationState::NotManaged,
            Some(_) => {
                // Read from the live release, else the releases root, else (nothing there
                // yet) the temporary directory: observing creates nothing.
                let dir = current
                    .as_ref()
                    .map(|c| layout.release(c))
                    .filter(|d| d.is_dir())
                    .or_else(|| Some(layout.root.clone()).filter(|d| d.is_dir()))
                    .unwrap_or_else(std::env::temp_dir);
                let ctx =
                    migrate_context(app, secrets, dir, None, self.dbmate, &*self.ports.commands);
                match ctx.level().await {
                    Ok(level) => MigrationState::At(level),
                    Err(e) => MigrationState::Unreadable(
                        secrets
                            .redactor
                            .redact(&execute::with_last_line(e.to_string(), e.tail())),
                    ),
                }
            }
        };
        let mut observed = Observed {
            current,
            releases,
            node_modules,
            build_caches,
            processes: self.ports.pm2.jlist_cached().await?,
            hooks_applied: record.hooks_applied.clone(),
            cpus: self.cpus,
            desired_lockfile: None,
            package_scripts: Default::default(),
            migration,
            env_file: secrets.env.clone(),
            traffic: match &app.spec.traffic {
                None => None,
                Some(t) => self.observe_traffic(app, t).await,
            },
        };
        // The desired commit's lockfile only matters when a release must be prepared: no git
        // work on passes that find one built from the same inputs.
        if !plan::choose_release(app, &observed).1 {
            observed.desired_lockfile = self.ports.source.lockfile(app).await;
            if !plan::scripts::script_commands(app).is_empty() {
                observed.package_scripts = match self.ports.source.package_json(app).await {
                    Ok(text) => plan::scripts::PackageScripts::of(text.as_deref()),
                    Err(why) => plan::scripts::PackageScripts::NotChecked(why),
                };
            }
        }
        Ok(observed)
    }
}

impl Observer<'_> {
    /// The slots as the upstream file records them, with what nginx really routes to
    /// ([`crate::traffic::nginx::loaded_slot`]) as the live one when the two differ: a
    /// controller stopped between writing the file and nginx's reload leaves the file naming
    /// a slot nginx never switched to, which the plan must then prove and switch to (and
    /// never retire the slot nginx still routes to). `None` (logged): the file is unreadable.
    async fn observe_traffic(
        &self,
        app: &App,
        t: &shipshape_spec::app::Traffic,
    ) -> Option<crate::traffic::TrafficState> {
        let mut state = match crate::traffic::read_state(t, self.ports.clock.now()) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(app = %app.metadata.name, "cannot read the traffic state: {e}");
                return None;
            }
        };
        if let Some(loaded) = crate::traffic::nginx::loaded_slot(t.confirm_port).await
            && state.live != Some(loaded)
        {
            tracing::warn!(app = %app.metadata.name, file = ?state.live, nginx = loaded, "nginx routes to another slot than the upstream file names (a switch did not finish): planning from what nginx routes to");
            state.live = Some(loaded);
        }
        Some(state)
    }
}

/// The migration context for `app` in `dir` (its output appended to `log`).
pub(crate) fn migrate_context<'a>(
    app: &'a App,
    secrets: &'a Secrets,
    dir: PathBuf,
    log: Option<PathBuf>,
    dbmate: &Path,
    commands: &'a dyn crate::ports::Commands,
) -> migrate::Context<'a> {
    migrate::Context {
        app,
        env: &secrets.env.vars,
        redactor: &secrets.redactor,
        dir,
        dbmate: dbmate.to_path_buf(),
        log,
        commands,
    }
}

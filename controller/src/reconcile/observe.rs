//! The server as it is for one app: its releases and `current`, pm2's processes (one
//! shared `pm2 jlist` per short window), the database's migration level, and the desired
//! commit's lockfile when a release must be prepared.

use std::path::PathBuf;

use shipshape_spec::App;

use super::execute::{self, Secrets};
use super::{Controller, ReconcileError};
use crate::migrate;
use crate::plan::{self, MigrationState, Observed};
use crate::release::Layout;
use crate::source;
use crate::state::AppRecord;

impl Controller {
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
                let dir = current
                    .as_ref()
                    .map(|c| layout.release(c))
                    .filter(|d| d.is_dir())
                    .unwrap_or_else(|| layout.root.clone());
                let _ = std::fs::create_dir_all(&dir);
                let ctx = self.migrate_context(app, secrets, dir, None);
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
            processes: self.pm2.jlist_cached().await?,
            hooks_applied: record.hooks_applied.clone(),
            cpus: self.cpus,
            desired_lockfile: None,
            migration,
            env_file: secrets.env.clone(),
        };
        // The desired commit's lockfile only matters when a release must be prepared: no git
        // work on passes that find one built from the same inputs.
        if !plan::choose_release(app, &observed).1 {
            observed.desired_lockfile = self.desired_lockfile(app).await;
        }
        Ok(observed)
    }

    /// The lockfile hash at the desired commit, read from the app's mirror (fetching the
    /// commit if it is not there yet). `None` when there is no lockfile or git cannot answer.
    pub(super) async fn desired_lockfile(&self, app: &App) -> Option<String> {
        let mirror = source::mirror_path(&self.sources_dir, &app.spec.source.repository);
        let repository = app.spec.source.repository.clone();
        let creds = source::Credentials::for_app(
            &app.spec.source,
            self.config.credentials.ssh_key.as_deref(),
        );
        let commit = app.spec.source.commit.clone();
        tokio::task::spawn_blocking(move || {
            let repo = source::ensure_commit(&mirror, &repository, &commit, &creds).ok()?;
            source::lockfile_at(&repo, &commit)
        })
        .await
        .ok()
        .flatten()
    }

    pub(super) fn migrate_context<'a>(
        &self,
        app: &'a App,
        secrets: &'a Secrets,
        dir: PathBuf,
        log: Option<PathBuf>,
    ) -> migrate::Context<'a> {
        migrate::Context {
            app,
            env: &secrets.env.vars,
            redactor: &secrets.redactor,
            dir,
            dbmate: self.dbmate.clone(),
            log,
        }
    }
}

//! What the planner is told about the server: [`Observed`] (releases, `current`, pm2,
//! the migration level).

use super::*;

/// What the server looks like, as far as planning is concerned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The release `current` points at.
    pub current: Option<String>,
    /// Release directories, with their marker when sealed.
    pub releases: BTreeMap<String, Option<BuildMarker>>,
    /// The sealed releases whose `node_modules` directory is on disk: the only ones
    /// `reuse-deps` may copy from (an install of a lockfile without dependencies leaves
    /// none, and a hand may have removed one).
    pub node_modules: BTreeSet<String>,
    /// The sealed releases that hold at least one of the document's `build.cache`
    /// directories: the only ones a build may carry its cache from.
    pub build_caches: BTreeSet<String>,
    /// Every pm2 instance (ours and others').
    pub processes: Vec<Instance>,
    /// Hash of the hooks (and the release they ran for) last run, from the records.
    pub hooks_applied: Option<String>,
    /// CPUs, for `instances: max`.
    pub cpus: u32,
    /// Hash of the lockfile at the desired commit (`None`: no lockfile, or not readable).
    pub desired_lockfile: Option<String>,
    /// The `scripts` of `package.json` at the desired commit, when a release is prepared
    /// and a command runs an npm script.
    pub package_scripts: super::scripts::PackageScripts,
    /// The database's migration level.
    pub migration: MigrationState,
    /// The server's env file (its values feed process env; never printed).
    pub env_file: EnvFile,
    /// Traffic through nginx: the live and warm slots (`None`: the document has no
    /// `spec.traffic`).
    pub traffic: Option<crate::traffic::TrafficState>,
}

/// What is known of the database's migration level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MigrationState {
    /// The document declares no migrations.
    #[default]
    NotManaged,
    /// The level read from the database (`None`: nothing applied yet).
    At(Option<String>),
    /// It could not be read (the reason, secrets masked).
    Unreadable(String),
}

//! The controller's own records, one JSON file per app under `<state-dir>/apps/<name>/`:
//! revision history (with the document each revision applied, so a revert can re-apply
//! it), the last pass and its steps, the last error, quarantined config commits and the
//! hooks last run; beside them, the requests (pin, unpin, retry) the API recorded since
//! ([`requests`]), applied whenever the records are read. Written atomically (temp file, fsync, rename, fsync the directory)
//! with mode 0600 in a directory created 0700 (and made private again at start, with a
//! warning, when found open to others); a file that does not parse is reported, never
//! silently reset.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shipshape_spec::App;
use shipshape_spec::status::{
    Condition, HealthRecord, LastError, Outcome, PassRecord, Phase, Pin, Regression, Revision,
    SourceStatus, Timestamp,
};

use crate::release::write_atomic_mode;

pub mod requests;

/// Revisions kept per app unless configured otherwise.
pub const DEFAULT_HISTORY: usize = 20;

/// Quarantined config commits kept per app: the newest 20 (the same horizon as the
/// revision history). Quarantine is keyed by config commit, and the desired commit is the
/// config branch's tip: a commit 20 quarantines back can be desired again only if the
/// branch is rewound to it (a person's act, refused for a trusted repo without
/// `--allow-rewind`). The entry of the desired commit is never dropped.
pub const QUARANTINE_KEEP: usize = 20;

/// A revision and the document it applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionEntry {
    /// The revision's summary.
    #[serde(flatten)]
    pub revision: Revision,
    /// The release directory it made live.
    pub release: String,
    /// The whole desired-state document as applied.
    pub document: App,
    /// It failed verification while the checks were already failing before it began, so
    /// it is not blamed: not reverted, not quarantined, and Healthy once checks recover.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_blamed: bool,
    /// Checks a config commit that changed only `spec.health` added or changed and that
    /// then failed against this (untouched) revision: the document's checks are suspect,
    /// not the release. The revision keeps its outcome; the monitor leaves these checks out
    /// of its streak (so their failures are never evidence that excuses a later rollout,
    /// nor a regression); cleared when they pass again or a config commit changes the
    /// checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspect_checks: Vec<String>,
    /// The database backup taken before this revision migrated up, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

/// A config commit the controller will not apply again by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantine {
    /// The config commit.
    pub config_commit: String,
    /// The revision that failed with it.
    pub revision: u64,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// Everything the controller remembers about one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRecord {
    /// Format version of this file.
    pub version: u32,
    /// The app's name.
    pub name: String,
    /// Where it stands.
    pub phase: Phase,
    /// kstatus-style conditions.
    pub conditions: Vec<Condition>,
    /// The config commit last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_config_commit: Option<String>,
    /// The app commit desired at that config commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_app_commit: Option<String>,
    /// Revisions, oldest first, bounded.
    pub revisions: Vec<RevisionEntry>,
    /// The next revision number.
    pub next_revision: u64,
    /// The last pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass: Option<PassRecord>,
    /// Passes run since the records began.
    pub passes: u64,
    /// Steps run since the records began.
    pub steps_run: u64,
    /// Steps that changed live state (switch, migration, pm2 processes, hooks) since the
    /// records began: the monitor starts a new streak and restart baseline when it moves.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub live_changes: u64,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// Config commits not to apply again by themselves (the newest [`QUARANTINE_KEEP`]).
    #[serde(default)]
    pub quarantined: Vec<Quarantine>,
    /// How many older quarantine entries were dropped to keep that bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quarantine_dropped: u64,
    /// Hash of the hooks (and their release) last run successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks_applied: Option<String>,
    /// The revision whose release and processes are live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_revision: Option<u64>,
    /// The pin holding the app, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Pin>,
    /// The live revision's latest health, from the controller's monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
    /// A regression the monitor saw and the next pass must act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<Regression>,
    /// The last request (pin, unpin, retry) of `requests.json` this record absorbed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requests_applied: u64,
    /// The wave gate of a fleet rollout (`spec.rollout`), as last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_gate: Option<shipshape_spec::status::WaveGate>,
    /// The phase last announced to watchers during this process's life (not persisted).
    #[serde(skip)]
    pub announced_phase: Option<Phase>,
}

impl AppRecord {
    /// A record for an app never seen before.
    pub fn new(name: &str) -> AppRecord {
        AppRecord {
            version: 1,
            name: name.to_string(),
            phase: Phase::Pending,
            conditions: Vec::new(),
            desired_config_commit: None,
            desired_app_commit: None,
            revisions: Vec::new(),
            next_revision: 1,
            last_pass: None,
            passes: 0,
            steps_run: 0,
            live_changes: 0,
            last_error: None,
            quarantined: Vec::new(),
            quarantine_dropped: 0,
            hooks_applied: None,
            live_revision: None,
            pin: None,
            health: None,
            regression: None,
            requests_applied: 0,
            wave_gate: None,
            announced_phase: None,
        }
    }

    /// The revision numbered `n`, if still in the history.
    pub fn revision(&self, n: u64) -> Option<&RevisionEntry> {
        self.revisions.iter().find(|r| r.revision.number == n)
    }

    /// The revision numbered `n`, mutably.
    pub fn revision_mut(&mut self, n: u64) -> Option<&mut RevisionEntry> {
        self.revisions.iter_mut().find(|r| r.revision.number == n)
    }

    /// The live revision's entry.
    pub fn live(&self) -> Option<&RevisionEntry> {
        self.live_revision.and_then(|n| self.revision(n))
    }

    /// The newest revision that passed verification.
    pub fn last_healthy(&self) -> Option<&RevisionEntry> {
        self.revisions
            .iter()
            .rev()
            .find(|r| r.revision.outcome == Outcome::Healthy)
    }

    /// The newest revision, whatever its outcome.
    pub fn last_attempted(&self) -> Option<&RevisionEntry> {
        self.revisions.last()
    }

    /// True when `config_commit` must not be applied again by itself.
    pub fn is_quarantined(&self, config_commit: &str) -> bool {
        self.quarantined
            .iter()
            .any(|q| q.config_commit == config_commit)
    }

    /// Append a revision, dropping the oldest beyond `keep` (never the last healthy, the
    /// live or the pinned one).
    pub fn push_revision(&mut self, entry: RevisionEntry, keep: usize) {
        self.revisions.push(entry);
        while self.revisions.len() > keep.max(1) {
            let protected = [
                self.last_healthy().map(|r| r.revision.number),
                self.live_revision,
                self.pin.as_ref().map(|p| p.revision),
            ];
            let Some(idx) = self
                .revisions
                .iter()
                .position(|r| !protected.contains(&Some(r.revision.number)))
            else {
                break;
            };
            self.revisions.remove(idx);
        }
    }

    /// Drop the oldest quarantine entries beyond `keep`, never the desired config
    /// commit's; counts them in `quarantine_dropped`. Returns how many went.
    pub fn prune_quarantine(&mut self, keep: usize) -> usize {
        let mut dropped = 0;
        while self.quarantined.len() > keep {
            let desired = self.desired_config_commit.as_deref();
            let Some(idx) = self
                .quarantined
                .iter()
                .position(|q| Some(q.config_commit.as_str()) != desired)
            else {
                break;
            };
            self.quarantined.remove(idx);
            dropped += 1;
        }
        self.quarantine_dropped += dropped as u64;
        dropped
    }

    /// Set a condition, keeping its transition time when the status did not change.
    pub fn set_condition(
        &mut self,
        type_: &str,
        status: shipshape_spec::status::ConditionStatus,
        reason: &str,
        message: &str,
        now: &Timestamp,
    ) {
        if let Some(c) = self.conditions.iter_mut().find(|c| c.type_ == type_) {
            if c.status != status {
                c.last_transition_time = *now;
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message.to_string();
        } else {
            self.conditions.push(Condition {
                type_: type_.to_string(),
                status,
                reason: reason.to_string(),
                message: message.to_string(),
                last_transition_time: *now,
            });
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What [`Store::prune_files`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Revision logs of revisions no longer in the history.
    pub logs: Vec<PathBuf>,
    /// Backups no revision in the history refers to.
    pub backups: Vec<PathBuf>,
}

/// Why the records could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No app of that name has records here.
    #[error("no app named {name} in {dir} (known: {})", if known.is_empty() { "none yet".to_string() } else { known.join(", ") })]
    NoSuchApp {
        /// The name asked for.
        name: String,
        /// The state directory.
        dir: PathBuf,
        /// The apps it has records of.
        known: Vec<String>,
    },
    /// The file exists but does not parse: torn, corrupt or from an unknown version.
    #[error(
        "state file {path} is corrupt ({source}); it was left as it is: move it aside to start this app's records afresh"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The state directory a reading command was pointed at is not there.
    #[error(
        "no such state directory {} (point --state-dir or SHIPSHAPE_STATE_DIR at the controller's; `shipshape run` creates it)",
        dir.display()
    )]
    NoStateDir {
        /// The directory.
        dir: PathBuf,
    },
    /// The state directory cannot be read by this user.
    #[error(
        "cannot read the state directory {}: {source} (run as the controller's user, or with sudo)",
        dir.display()
    )]
    StateDirDenied {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    /// `--state-dir`.
    pub dir: PathBuf,
}

impl Store {
    /// The store under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// `<state-dir>/apps/<name>`.
    pub fn app_dir(&self, name: &str) -> PathBuf {
        self.dir.join("apps").join(name)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.app_dir(name).join("state.json")
    }

    /// `<state-dir>/apps/<name>/requests.json`: pins, unpins and retries recorded by the API
    /// (see [`requests`]).
    pub fn requests_path(&self, name: &str) -> PathBuf {
        self.app_dir(name).join("requests.json")
    }

    /// The app's recorded requests (none yet: an empty file).
    ///
    /// # Errors
    /// [`StateError::Corrupt`] for a file that does not parse; [`StateError::Io`] otherwise.
    pub fn load_requests(&self, name: &str) -> Result<requests::RequestFile, StateError> {
        let path = self.requests_path(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Record `request` for `name` durably (atomic write, fsync'd): returns it as recorded
    /// (its number and time), or `None` when [`requests::MAX_PENDING`] already wait. The
    /// caller holds the app's request lock (one writer at a time; a pass never writes it).
    ///
    /// # Errors
    /// [`StateError`] when the records or the file cannot be read or written.
    pub fn add_request(
        &self,
        name: &str,
        request: requests::Request,
    ) -> Result<Option<requests::Entry>, StateError> {
        let applied = self.load_saved(name)?.requests_applied;
        let mut file = self.load_requests(name)?;
        if file.push(request, applied, now()).is_none() {
            return Ok(None);
        }
        self.save_requests(name, &file)?;
        Ok(file.pending.pop())
    }

    fn save_requests(&self, name: &str, file: &requests::RequestFile) -> Result<(), StateError> {
        let path = self.requests_path(name);
        let bytes = serde_json::to_vec_pretty(file).expect("requests serialize");
        write_atomic_mode(&path, &bytes, 0o600).map_err(|source| StateError::Io { path, source })
    }

    /// The app's records with the requests recorded since they were saved applied (what
    /// is in force), or fresh ones if it has none yet.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] for a file that does not parse; [`StateError::Io`] otherwise.
    pub fn load(&self, name: &str) -> Result<AppRecord, StateError> {
        let mut rec = self.load_saved(name)?;
        let file = self.load_requests(name)?;
        let pending = file.after(rec.requests_applied);
        requests::apply(&mut rec, &pending);
        Ok(rec)
    }

    /// The app's records as saved, without the requests recorded since.
    ///
    /// # Errors
    /// As [`Store::load`].
    pub fn load_saved(&self, name: &str) -> Result<AppRecord, StateError> {
        let path = self.record_path(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AppRecord::new(name)),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// The records of an app the controller has seen; unlike [`Store::load`], a name it
    /// has no records of is an error that lists the names it has.
    ///
    /// # Errors
    /// [`StateError::NoSuchApp`], or what [`Store::load`] returns.
    pub fn load_known(&self, name: &str) -> Result<AppRecord, StateError> {
        let known = self.apps();
        if !known.iter().any(|a| a == name) {
            return Err(StateError::NoSuchApp {
                name: name.to_string(),
                dir: self.dir.clone(),
                known,
            });
        }
        self.load(name)
    }

    /// Write the app's records atomically.
    ///
    /// # Errors
    /// [`StateError::Io`] when the write fails (the previous file stays intact).
    pub fn save(&self, record: &AppRecord) -> Result<(), StateError> {
        let path = self.record_path(&record.name);
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        write_atomic_mode(&path, &bytes, 0o600).map_err(|source| StateError::Io { path, source })
    }

    /// The config repo's status (fresh when none was saved yet).
    pub fn load_source(&self) -> SourceStatus {
        std::fs::read(self.dir.join("source.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Save the config repo's status.
    ///
    /// # Errors
    /// [`StateError::Io`] when the write fails.
    pub fn save_source(&self, source: &SourceStatus) -> Result<(), StateError> {
        let path = self.dir.join("source.json");
        let bytes = serde_json::to_vec_pretty(source).expect("source status serializes");
        write_atomic_mode(&path, &bytes, 0o600).map_err(|source| StateError::Io { path, source })
    }

    /// Remove the files of revisions that left `rec`'s history: their logs
    /// (`logs/revision-<n>.log`) and the backups (`backups/*.backup`) no revision in the
    /// history refers to and taken before its oldest revision started (so never one a pass
    /// in flight just took). Call it between passes of the app, with its records saved.
    pub fn prune_files(&self, rec: &AppRecord) -> Pruned {
        let mut out = Pruned::default();
        let dir = self.app_dir(&rec.name);
        let kept: Vec<u64> = rec.revisions.iter().map(|r| r.revision.number).collect();
        for entry in std::fs::read_dir(dir.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_prefix("revision-")
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if !kept.contains(&n) && entry.file_type().is_ok_and(|t| t.is_file()) {
                let path = entry.path();
                if std::fs::remove_file(&path).is_ok() {
                    out.logs.push(path);
                }
            }
        }
        let oldest = rec
            .revisions
            .iter()
            .map(|r| r.revision.started_at)
            .min()
            .map(std::time::SystemTime::from);
        let Some(oldest) = oldest else { return out };
        let referenced: Vec<PathBuf> = rec
            .revisions
            .iter()
            .filter_map(|r| r.backup.as_ref().map(PathBuf::from))
            .collect();
        let backups = dir.join("backups");
        for entry in std::fs::read_dir(&backups).into_iter().flatten().flatten() {
            let path = entry.path();
            let old = entry
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .is_some_and(|t| t < oldest);
            if path.extension().is_some_and(|e| e == "backup")
                && old
                && !referenced
                    .iter()
                    .any(|r| r == &path || r.file_name() == path.file_name())
                && std::fs::remove_file(&path).is_ok()
            {
                out.backups.push(path);
            }
        }
        out
    }

    /// Every app with records, by name.
    pub fn apps(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir.join("apps"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("state.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }
}

/// The state directory every command uses when neither `--state-dir` nor
/// `SHIPSHAPE_STATE_DIR` says otherwise: `/var/lib/shipshape` for root, else
/// `$XDG_STATE_HOME/shipshape`, else `~/.local/state/shipshape`.
pub fn default_state_dir() -> PathBuf {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    default_state_dir_for(
        root,
        std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// [`default_state_dir`] for a user who is `root` or not, with these `XDG_STATE_HOME`
/// and `HOME` (relative ones are ignored, as the XDG spec says).
pub fn default_state_dir_for(root: bool, xdg: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    if root {
        return PathBuf::from("/var/lib/shipshape");
    }
    if let Some(x) = xdg.filter(|x| x.is_absolute()) {
        return x.join("shipshape");
    }
    match home.filter(|h| h.is_absolute()) {
        Some(h) => h.join(".local/state/shipshape"),
        None => PathBuf::from("/var/lib/shipshape"),
    }
}

/// The store of an existing state directory, for the commands that only read it or talk to
/// its controller; a directory that is not there is an error naming it and the flag.
///
/// # Errors
/// [`StateError::StateDirDenied`] or [`StateError::NoStateDir`] when `dir` is not a
/// directory this user can read.
pub fn existing(dir: &Path) -> Result<Store, StateError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(Store::new(dir)),
        Err(source) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(StateError::StateDirDenied {
                dir: dir.to_path_buf(),
                source,
            })
        }
        _ => Err(StateError::NoStateDir {
            dir: dir.to_path_buf(),
        }),
    }
}

/// Now, to the millisecond (recorded as RFC 3339 UTC with milliseconds).
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// Create the directory `path` when missing: mode 0700 (its parents as the umask says).
/// An existing directory is left as it is ([`Store::secure`] tightens the state directory).
///
/// # Errors
/// When it cannot be created.
pub fn ensure_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        r => r,
    }
}

/// Directories under the state directory that hold git's own files (mirrors of the config
/// and app repos, no secrets; git makes its objects 0444): [`Store::secure`] leaves them.
const GIT_DIRS: &[&str] = &["sources", "config.git"];

/// A permission [`Store::secure`] or [`crate::pm2::Pm2::secure`] tightened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// The file or directory.
    pub path: PathBuf,
    /// Its mode before (permission bits).
    pub was: u32,
    /// Its mode now.
    pub now: u32,
}

impl std::fmt::Display for Tightened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} was readable by others (mode {:04o}); made it {:04o}",
            self.path.display(),
            self.was,
            self.now
        )
    }
}

/// Make `path` `mode` when group or others have any access to it; returns what changed.
///
/// # Errors
/// When its mode cannot be read or changed.
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<Option<Tightened>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    let was = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() || was & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(Some(Tightened {
        path: path.to_path_buf(),
        was,
        now: mode,
    }))
}

impl Store {
    /// Make the state directory 0700 and every file in it 0600 where group or others could
    /// read them (a token or records made by hand, by an older version, or copied in): the
    /// records hold documents, the ecosystem files and logs hold env-file values, the
    /// backups hold the database. Git's mirrors are left as git made them. Returns what
    /// was tightened, for the caller to warn about.
    ///
    /// # Errors
    /// When a mode cannot be read or changed.
    pub fn secure(&self) -> std::io::Result<Vec<Tightened>> {
        fn walk(dir: &Path, top: bool, out: &mut Vec<Tightened>) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    if top && GIT_DIRS.iter().any(|g| entry.file_name() == *g) {
                        continue;
                    }
                    walk(&entry.path(), false, out)?;
                } else if kind.is_file() {
                    out.extend(tighten(&entry.path(), 0o600)?);
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        out.extend(tighten(&self.dir, 0o700)?);
        walk(&self.dir, true, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_corruption_is_reported_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut rec = store.load("demo").unwrap();
        rec.passes = 7;
        store.save(&rec).unwrap();
        assert_eq!(store.load("demo").unwrap().passes, 7);
        assert_eq!(store.apps(), ["demo"]);
        let path = store.app_dir("demo").join("state.json");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = store.load("demo").unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            bytes.len() / 2,
            "the torn file is left for a person"
        );
    }

    /// A record written before times were typed (every time as RFC 3339 text) loads, its
    /// times are times, and saving it writes the very same JSON back.
    #[test]
    fn a_record_written_by_the_previous_version_loads_and_saves_back_unchanged() {
        let text = include_str!("../tests/fixtures/state-0.1.json");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::create_dir_all(store.app_dir("demo")).unwrap();
        std::fs::write(store.app_dir("demo").join("state.json"), text).unwrap();
        let rec = store.load_saved("demo").unwrap();
        let pass = rec.last_pass.as_ref().unwrap();
        assert_eq!((pass.finished_at - pass.started_at).num_milliseconds(), 130);
        let h = rec.health.as_ref().unwrap();
        let since = h.failing_since.unwrap();
        assert_eq!((h.checked_at - since).num_milliseconds(), 2400);
        assert_eq!(
            rec.pin.as_ref().unwrap().at.to_string(),
            "2026-12-02T00:18:00.250Z"
        );
        store.save(&rec).unwrap();
        let written: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.app_dir("demo").join("state.json")).unwrap(),
        )
        .unwrap();
        let before: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(written, before);
    }
}

/// The exclusive hold one controller has on a state directory (released when dropped or
/// when the process dies: the kernel drops `flock` locks with their holder, so a lock file
/// left by a crashed controller never blocks a new one).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another controller holds it.
    #[error(
        "another shipshape controller holds {dir} ({holder}); stop it first, or use another --state-dir"
    )]
    Held {
        /// The state directory.
        dir: PathBuf,
        /// What the lock file says about the holder.
        holder: String,
    },
    /// The lock file could not be opened.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Store {
    /// Take the state directory for this process, or say who has it.
    ///
    /// # Errors
    /// [`LockError::Held`] when another live controller holds it.
    pub fn lock(&self) -> Result<DirLock, LockError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join("controller.lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock(2) on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim().to_string();
            return Err(LockError::Held {
                dir: self.dir.clone(),
                holder: if holder.is_empty() {
                    "pid unknown".into()
                } else {
                    holder
                },
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "pid {} since {}", std::process::id(), now()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod private_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ensure_dir_creates_the_directory_0700() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("var/lib/shipshape");
        ensure_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        ensure_dir(&state).unwrap();
    }

    #[test]
    fn secure_tightens_the_directory_and_files_readable_by_others_and_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state"));
        std::fs::create_dir_all(store.app_dir("demo")).unwrap();
        std::fs::set_permissions(&store.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let token = store.dir.join("api-token");
        std::fs::write(&token, "t").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let rec = store.app_dir("demo").join("state.json");
        std::fs::write(&rec, "{}").unwrap();
        std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o640)).unwrap();
        let private = store.dir.join("source.json");
        std::fs::write(&private, "{}").unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        let git_object = store.dir.join("sources/x.git/objects/ab");
        std::fs::create_dir_all(git_object.parent().unwrap()).unwrap();
        std::fs::write(&git_object, "blob").unwrap();
        std::fs::set_permissions(&git_object, std::fs::Permissions::from_mode(0o444)).unwrap();

        let fixed = store.secure().unwrap();
        let paths: Vec<&Path> = fixed.iter().map(|t| t.path.as_path()).collect();
        assert_eq!(paths.len(), 3, "{fixed:?}");
        assert!(paths.contains(&store.dir.as_path()));
        assert!(paths.contains(&token.as_path()) && paths.contains(&rec.as_path()));
        assert_eq!(
            (mode(&store.dir), mode(&token), mode(&rec)),
            (0o700, 0o600, 0o600)
        );
        assert_eq!(mode(&git_object), 0o444, "git's mirrors are left alone");
        let said = fixed.iter().find(|t| t.path == token).unwrap().to_string();
        assert!(
            said.contains("api-token was readable by others (mode 0644); made it 0600"),
            "{said}"
        );
        assert!(store.secure().unwrap().is_empty(), "nothing left to fix");
    }
}

#[cfg(test)]
mod default_dir_tests {
    use super::*;

    #[test]
    fn the_default_state_directory_is_var_lib_for_root_else_the_xdg_state_dir() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            default_state_dir_for(true, p("/x"), p("/home/a")),
            PathBuf::from("/var/lib/shipshape")
        );
        assert_eq!(
            default_state_dir_for(false, p("/x/state"), p("/home/a")),
            PathBuf::from("/x/state/shipshape")
        );
        assert_eq!(
            default_state_dir_for(false, p("relative"), p("/home/a")),
            PathBuf::from("/home/a/.local/state/shipshape")
        );
        assert_eq!(
            default_state_dir_for(false, None, p("/home/a")),
            PathBuf::from("/home/a/.local/state/shipshape")
        );
    }

    #[test]
    fn an_unknown_app_is_named_with_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        for n in ["b", "a"] {
            store.save(&AppRecord::new(n)).unwrap();
        }
        let err = store.load_known("nosuchapp").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "no app named nosuchapp in {} (known: a, b)",
                dir.path().display()
            )
        );
        assert!(store.load_known("a").is_ok());
        let missing = existing(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.starts_with("no such state directory "), "{missing}");
        assert!(missing.contains("--state-dir"), "{missing}");
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_a_dead_holder_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let first = store.lock().unwrap();
        let err = store.lock().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        store.lock().expect("released with its holder");
    }
}

#[cfg(test)]
mod prune_tests {
    use super::*;
    use crate::reconcile::fixtures::entry;
    use shipshape_spec::status::Outcome;

    fn q(n: u64) -> Quarantine {
        Quarantine {
            config_commit: format!("cfg{n}"),
            revision: n,
            reason: "build failed".into(),
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn quarantine_keeps_the_newest_entries_and_the_desired_commit_and_counts_the_rest() {
        let mut rec = AppRecord::new("demo");
        rec.desired_config_commit = Some("cfg1".into());
        for n in 1..=40 {
            rec.quarantined.push(q(n));
            rec.prune_quarantine(QUARANTINE_KEEP);
        }
        assert_eq!(rec.quarantined.len(), QUARANTINE_KEEP);
        assert_eq!(rec.quarantine_dropped, 40 - QUARANTINE_KEEP as u64);
        assert!(
            rec.is_quarantined("cfg1"),
            "the desired commit's entry was dropped"
        );
        assert!(rec.is_quarantined("cfg40") && rec.is_quarantined("cfg22"));
        assert!(!rec.is_quarantined("cfg2") && !rec.is_quarantined("cfg21"));
    }

    #[test]
    fn files_of_revisions_that_left_the_history_are_removed_and_the_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut rec = AppRecord::new("demo");
        let logs = store.app_dir("demo").join("logs");
        let backups = store.app_dir("demo").join("backups");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&backups).unwrap();
        for n in 1..=5 {
            std::fs::write(logs.join(format!("revision-{n}.log")), "x").unwrap();
        }
        std::fs::write(logs.join("notes.txt"), "mine").unwrap();
        let dropped = backups.join("2020-01-01T000000Z-0001.backup");
        let referenced = backups.join("2020-01-02T000000Z-0002.backup");
        std::fs::write(&dropped, "dump").unwrap();
        std::fs::write(&referenced, "dump").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        for f in [&dropped, &referenced] {
            std::fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        // Taken after the oldest kept revision started: perhaps by a pass in flight.
        let fresh = backups.join("2099-01-01T000000Z-0003.backup");
        std::fs::write(&fresh, "dump").unwrap();
        for n in [4, 5] {
            let mut e = entry(n, Outcome::Failed);
            e.revision.started_at = "2021-01-01T00:00:00.000Z".parse().unwrap();
            rec.revisions.push(e);
        }
        rec.revisions[0].backup = Some(referenced.display().to_string());
        let pruned = store.prune_files(&rec);
        let mut names: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["notes.txt", "revision-4.log", "revision-5.log"]);
        assert_eq!(pruned.logs.len(), 3);
        assert_eq!(pruned.backups, std::slice::from_ref(&dropped));
        assert!(!dropped.exists() && referenced.exists() && fresh.exists());
    }
}

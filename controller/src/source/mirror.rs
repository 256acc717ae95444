//! App sources: a controller-owned bare mirror per app repository (one fetch at a time into
//! each), an exact commit checked out into a release directory, and the lockfile hash at a
//! commit (to reuse a prepared release's `node_modules`).
//!
//! Everything here is blocking (libgit2); callers run it on `spawn_blocking`.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, build::CheckoutBuilder};
use sha2::{Digest, Sha256};

use super::git::{Credentials, SourceError, fetch_with, open_or_init_bare, redact_url};

/// Where the bare mirror of an app repository lives under `sources_dir`.
pub fn mirror_path(sources_dir: &Path, repository: &str) -> PathBuf {
    let digest = Sha256::digest(repository.as_bytes());
    sources_dir.join(format!("{}.git", &hex::encode(digest)[..16]))
}

/// One lock per mirror: apps sharing an app repository must not fetch into it at once.
fn mirror_lock(path: &Path) -> std::sync::Arc<std::sync::Mutex<()>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .expect("mirror locks");
    map.entry(path.to_path_buf()).or_default().clone()
}

/// Make sure `commit` is in the app's mirror, fetching when it is not.
///
/// # Errors
/// [`SourceError::Fetch`] when the remote cannot be reached, [`SourceError::NoCommit`]
/// when the commit is not there after fetching.
pub fn ensure_commit(
    mirror: &Path,
    repository: &str,
    commit: &str,
    creds: &Credentials,
) -> Result<Repository, SourceError> {
    let lock = mirror_lock(mirror);
    let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    let repo = open_or_init_bare(mirror, repository)?;
    let oid = Oid::from_str(commit).map_err(|error| SourceError::Git {
        what: format!("commit {commit:?}"),
        error,
    })?;
    if repo.find_commit(oid).is_ok() {
        return Ok(repo);
    }
    fetch_with(
        &repo,
        repository,
        &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
        creds,
    )?;
    if repo.find_commit(oid).is_err() {
        return Err(SourceError::NoCommit {
            repo: redact_url(repository),
            commit: commit.to_string(),
        });
    }
    Ok(repo)
}

/// A repository holding `commit`, found without changing anything (for `shipshape plan`):
/// the controller's mirror when it is there and has the commit, else the repository itself
/// when it is a local path (bare or not). `None`: neither (a remote repository the
/// controller has not mirrored, or a commit not fetched yet).
pub fn existing_commit(mirror: &Path, repository: &str, commit: &str) -> Option<Repository> {
    let oid = Oid::from_str(commit).ok()?;
    let has = |r: &Repository| r.find_commit(oid).is_ok();
    if let Ok(r) = Repository::open_bare(mirror)
        && has(&r)
    {
        return Some(r);
    }
    let local = repository.strip_prefix("file://").unwrap_or(repository);
    if super::git::is_remote(repository) && !repository.starts_with("file://") {
        return None;
    }
    let flags = git2::RepositoryOpenFlags::NO_SEARCH;
    Repository::open_ext(local, flags, std::iter::empty::<&std::ffi::OsStr>())
        .ok()
        .filter(has)
}

/// Write the tree of `commit` into `dest` (which must not exist yet).
///
/// # Errors
/// [`SourceError`] when the commit is missing or files cannot be written.
pub fn checkout(repo: &Repository, commit: &str, dest: &Path) -> Result<(), SourceError> {
    let oid = Oid::from_str(commit).map_err(|error| SourceError::Git {
        what: format!("commit {commit:?}"),
        error,
    })?;
    let object = repo
        .find_object(oid, Some(ObjectType::Commit))
        .map_err(|error| SourceError::Git {
            what: format!("finding {commit}"),
            error,
        })?;
    std::fs::create_dir_all(dest).map_err(|source| SourceError::Io {
        what: format!("creating {}", dest.display()),
        source,
    })?;
    let mut cb = CheckoutBuilder::new();
    cb.target_dir(dest)
        .force()
        .recreate_missing(true)
        .update_index(false);
    repo.checkout_tree(&object, Some(&mut cb))
        .map_err(|error| SourceError::Git {
            what: format!("checking out {commit} into {}", dest.display()),
            error,
        })
}

/// The text of `path` (e.g. `package.json`) in `commit`'s tree; `None` when the commit or
/// the file is not there, or the file is not UTF-8.
pub fn file_at(repo: &Repository, commit: &str, path: &str) -> Option<String> {
    let oid = Oid::from_str(commit).ok()?;
    let tree = repo.find_commit(oid).ok()?.tree().ok()?;
    let entry = tree.get_path(Path::new(path)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    String::from_utf8(blob.content().to_vec()).ok()
}

/// The hash of the first lockfile (see [`crate::release::LOCKFILES`]) in `commit`'s tree.
pub fn lockfile_at(repo: &Repository, commit: &str) -> Option<String> {
    let oid = Oid::from_str(commit).ok()?;
    let tree = repo.find_commit(oid).ok()?.tree().ok()?;
    crate::release::LOCKFILES.iter().find_map(|name| {
        let entry = tree.get_name(name)?;
        let blob = repo.find_blob(entry.id()).ok()?;
        Some(crate::release::lockfile_hash(blob.content()))
    })
}

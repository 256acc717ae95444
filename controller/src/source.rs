//! Git: reading desired-state documents from the config repo at a branch tip (through
//! git2, never from a working tree), and fetching an app's source at an exact commit into
//! a release directory through a controller-owned bare mirror.
//!
//! Everything here is blocking (libgit2); callers run it on `spawn_blocking`.

use std::path::{Path, PathBuf};

use git2::{FetchOptions, ObjectType, Oid, Repository, build::CheckoutBuilder};
use sha2::{Digest, Sha256};

/// Why reading or fetching from git failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository could not be opened or created.
    #[error("cannot open repository {repo}: {source}")]
    Open {
        /// Path or URL.
        repo: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// Fetching from the remote failed.
    #[error("fetch from {repo} failed: {source}")]
    Fetch {
        /// URL or path.
        repo: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// The branch does not exist.
    #[error("branch {branch:?} not found in {repo}")]
    NoBranch {
        /// Path or URL.
        repo: String,
        /// The branch.
        branch: String,
    },
    /// The commit is not in the repository, even after a fetch.
    #[error("commit {commit} not found in {repo} (after fetching)")]
    NoCommit {
        /// URL or path.
        repo: String,
        /// The commit.
        commit: String,
    },
    /// Reading objects or writing files failed.
    #[error("{what}: {source}")]
    Git {
        /// What was being done.
        what: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
    /// Filesystem trouble around the checkout.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// One file read from the config repo.
#[derive(Debug, Clone)]
pub struct DocumentFile {
    /// Path inside the repo, e.g. `apps/prompthub.yaml`.
    pub path: String,
    /// Its text (lossily decoded).
    pub text: String,
}

/// The documents at one config commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The branch tip's commit.
    pub commit: String,
    /// Every `*.yaml` / `*.yml` directly in the watched directory, sorted by path.
    pub files: Vec<DocumentFile>,
}

/// True when `repo` names a remote (URL or scp-like), false for a local path.
pub fn is_remote(repo: &str) -> bool {
    repo.contains("://") || (!repo.starts_with('/') && repo.contains(':'))
}

/// The config repo, as the controller reads it.
#[derive(Debug, Clone)]
pub struct ConfigRepo {
    /// A local path or a URL.
    pub repo: String,
    /// The branch to follow.
    pub branch: String,
    /// The directory inside the repo holding documents (`""` or `.` for the root).
    pub path: String,
    /// Where a remote repo is mirrored.
    pub mirror: PathBuf,
}

impl ConfigRepo {
    /// Read the documents at the branch tip, fetching first if the repo is remote.
    ///
    /// # Errors
    /// [`SourceError`] when the repo, branch or directory cannot be read.
    pub fn snapshot(&self) -> Result<Snapshot, SourceError> {
        let (repo, refname) = if is_remote(&self.repo) {
            let repo = open_or_init_bare(&self.mirror, &self.repo)?;
            let refspec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
            fetch(&repo, &self.repo, &[&refspec])?;
            (repo, format!("refs/heads/{}", self.branch))
        } else {
            let repo = Repository::open(&self.repo).map_err(|source| SourceError::Open {
                repo: self.repo.clone(),
                source,
            })?;
            (repo, format!("refs/heads/{}", self.branch))
        };
        let reference = repo
            .find_reference(&refname)
            .map_err(|_| SourceError::NoBranch {
                repo: self.repo.clone(),
                branch: self.branch.clone(),
            })?;
        let commit = reference
            .peel_to_commit()
            .map_err(|source| SourceError::Git {
                what: format!("resolving {refname}"),
                source,
            })?;
        let tree = commit.tree().map_err(|source| SourceError::Git {
            what: "reading the commit's tree".into(),
            source,
        })?;
        let dir = self.path.trim_matches('/');
        let subtree = if dir.is_empty() || dir == "." {
            tree
        } else {
            let entry = tree
                .get_path(Path::new(dir))
                .map_err(|source| SourceError::Git {
                    what: format!("directory {dir:?} at {}", commit.id()),
                    source,
                })?;
            let object = entry.to_object(&repo).map_err(|source| SourceError::Git {
                what: format!("reading {dir:?}"),
                source,
            })?;
            object.into_tree().map_err(|_| SourceError::Git {
                what: format!("{dir:?} at {}", commit.id()),
                source: git2::Error::from_str("not a directory"),
            })?
        };
        let mut files = Vec::new();
        for entry in subtree.iter() {
            let Ok(name) = entry.name() else { continue };
            if entry.kind() != Some(ObjectType::Blob)
                || !(name.ends_with(".yaml") || name.ends_with(".yml"))
            {
                continue;
            }
            let blob = repo
                .find_blob(entry.id())
                .map_err(|source| SourceError::Git {
                    what: format!("reading {name}"),
                    source,
                })?;
            let path = if dir.is_empty() || dir == "." {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            files.push(DocumentFile {
                path,
                text: String::from_utf8_lossy(blob.content()).into_owned(),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Snapshot {
            commit: commit.id().to_string(),
            files,
        })
    }
}

impl ConfigRepo {
    /// The branch tip's commit and the text of `file` there (`None` when it is gone),
    /// fetching first if the repo is remote. Used to notice a newer desired state while a
    /// rollout is being verified.
    ///
    /// # Errors
    /// [`SourceError`] when the repo cannot be read.
    pub fn document_at_tip(&self, file: &str) -> Result<(String, Option<String>), SourceError> {
        let snapshot = self.snapshot()?;
        let text = snapshot
            .files
            .into_iter()
            .find(|f| f.path == file)
            .map(|f| f.text);
        Ok((snapshot.commit, text))
    }
}

/// Where the bare mirror of an app repository lives under `sources_dir`.
pub fn mirror_path(sources_dir: &Path, repository: &str) -> PathBuf {
    let digest = Sha256::digest(repository.as_bytes());
    sources_dir.join(format!("{}.git", &hex::encode(digest)[..16]))
}

fn open_or_init_bare(path: &Path, url: &str) -> Result<Repository, SourceError> {
    let open = |source| SourceError::Open {
        repo: url.to_string(),
        source,
    };
    match Repository::open_bare(path) {
        Ok(r) => Ok(r),
        Err(_) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| SourceError::Io {
                    what: format!("creating {}", parent.display()),
                    source,
                })?;
            }
            Repository::init_bare(path).map_err(open)
        }
    }
}

fn fetch(repo: &Repository, url: &str, refspecs: &[&str]) -> Result<(), SourceError> {
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(|source| SourceError::Fetch {
            repo: url.to_string(),
            source,
        })?;
    let mut opts = FetchOptions::new();
    opts.download_tags(git2::AutotagOption::None);
    remote
        .fetch(refspecs, Some(&mut opts), None)
        .map_err(|source| SourceError::Fetch {
            repo: url.to_string(),
            source,
        })
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
) -> Result<Repository, SourceError> {
    let repo = open_or_init_bare(mirror, repository)?;
    let oid = Oid::from_str(commit).map_err(|source| SourceError::Git {
        what: format!("commit {commit:?}"),
        source,
    })?;
    if repo.find_commit(oid).is_ok() {
        return Ok(repo);
    }
    fetch(
        &repo,
        repository,
        &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
    )?;
    if repo.find_commit(oid).is_err() {
        return Err(SourceError::NoCommit {
            repo: repository.to_string(),
            commit: commit.to_string(),
        });
    }
    Ok(repo)
}

/// Write the tree of `commit` into `dest` (which must not exist yet).
///
/// # Errors
/// [`SourceError`] when the commit is missing or files cannot be written.
pub fn checkout(repo: &Repository, commit: &str, dest: &Path) -> Result<(), SourceError> {
    let oid = Oid::from_str(commit).map_err(|source| SourceError::Git {
        what: format!("commit {commit:?}"),
        source,
    })?;
    let object = repo
        .find_object(oid, Some(ObjectType::Commit))
        .map_err(|source| SourceError::Git {
            what: format!("finding {commit}"),
            source,
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
        .map_err(|source| SourceError::Git {
            what: format!("checking out {commit} into {}", dest.display()),
            source,
        })
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

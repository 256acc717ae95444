//! The config repo: desired-state documents read at a branch tip (through git2, never from
//! a working tree), a remote one fetched into a controller-owned mirror, and what the
//! controller asks of its history (a commit's signature, ancestry).
//!
//! Everything here is blocking (libgit2); callers run it on `spawn_blocking`.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};
use shipshape_spec::load::MAX_DOCUMENT_BYTES;

use super::git::{Credentials, SourceError, fetch_with, is_remote, open_or_init_bare, redact_url};

/// One file read from the config repo.
#[derive(Debug, Clone)]
pub struct DocumentFile {
    /// Path inside the repo, e.g. `apps/prompthub.yaml`.
    pub path: String,
    /// Its text (lossily decoded). A file over [`MAX_DOCUMENT_BYTES`] is not read whole:
    /// this is its beginning, enough to name its app in the error.
    pub text: String,
    /// Its size in bytes.
    pub size: usize,
}

impl DocumentFile {
    /// A document whose whole text is `text`.
    pub fn new(path: impl Into<String>, text: String) -> DocumentFile {
        DocumentFile {
            path: path.into(),
            size: text.len(),
            text,
        }
    }

    /// Read a document from disk, no more of it than the size limit.
    ///
    /// # Errors
    /// The OS error, or `InvalidData` when a file within the limit is not UTF-8.
    pub fn read(path: &Path) -> std::io::Result<DocumentFile> {
        use std::io::Read;
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)?;
        let size = len.max(bytes.len());
        let text = if size > MAX_DOCUMENT_BYTES {
            bytes.truncate(MAX_DOCUMENT_BYTES);
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            String::from_utf8(bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        };
        Ok(DocumentFile {
            path: path.display().to_string(),
            text,
            size,
        })
    }

    /// The document, loaded and validated; refused without parsing when it is over the
    /// size limit.
    ///
    /// # Errors
    /// Every problem, located (see [`shipshape_spec::load_str`]).
    pub fn load(&self) -> Result<shipshape_spec::App, shipshape_spec::LoadError> {
        shipshape_spec::load::check_size(self.size, &self.path)?;
        shipshape_spec::load_str(&self.text, &self.path)
    }

    /// [`DocumentFile::load`], with the warnings of a document that loads (things that
    /// probably do not do what they seem to: see [`shipshape_spec::validate::warnings`]).
    ///
    /// # Errors
    /// As [`DocumentFile::load`].
    pub fn load_warned(
        &self,
    ) -> Result<(shipshape_spec::App, Vec<shipshape_spec::Problem>), shipshape_spec::LoadError>
    {
        shipshape_spec::load::check_size(self.size, &self.path)?;
        shipshape_spec::load::load_str_warned(&self.text, &self.path)
    }
}

/// The first [`MAX_DOCUMENT_BYTES`] of an oversized blob: streamed when the object is
/// loose; libgit2 cannot stream a packed object, so that one is inflated, but only its
/// beginning is decoded and parsed.
fn blob_prefix(repo: &Repository, id: Oid) -> Result<Vec<u8>, git2::Error> {
    use std::io::Read;
    let odb = repo.odb()?;
    if let Ok((reader, _, _)) = odb.reader(id) {
        let mut bytes = Vec::new();
        if reader
            .take(MAX_DOCUMENT_BYTES as u64)
            .read_to_end(&mut bytes)
            .is_ok()
        {
            return Ok(bytes);
        }
    }
    let blob = repo.find_blob(id)?;
    let content = blob.content();
    Ok(content[..content.len().min(MAX_DOCUMENT_BYTES)].to_vec())
}

/// The documents at one config commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The branch tip's commit.
    pub commit: String,
    /// Every `*.yaml` / `*.yml` directly in the watched directory, sorted by path.
    pub files: Vec<DocumentFile>,
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
    /// Credentials for a remote repo.
    pub credentials: Credentials,
}

impl ConfigRepo {
    /// True when the repo is fetched into a mirror (a URL), false for a local path.
    pub fn is_remote(&self) -> bool {
        is_remote(&self.repo)
    }

    fn open(&self) -> Result<Repository, SourceError> {
        if self.is_remote() {
            open_or_init_bare(&self.mirror, &self.repo)
        } else {
            Repository::open(&self.repo).map_err(|error| SourceError::Open {
                repo: redact_url(&self.repo),
                error,
            })
        }
    }

    /// The git directory to watch for ref changes (a local repo's `.git`, or the repo
    /// itself when bare).
    pub fn git_dir(&self) -> Result<PathBuf, SourceError> {
        Ok(self.open()?.path().to_path_buf())
    }

    /// Fetch the branch into the mirror (remote repos; a local repo needs none) and
    /// return the tip.
    ///
    /// # Errors
    /// [`SourceError::Fetch`] when the remote cannot be reached or refuses.
    pub fn fetch(&self) -> Result<String, SourceError> {
        if self.is_remote() {
            let repo = self.open()?;
            let refspec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
            fetch_with(&repo, &self.repo, &[&refspec], &self.credentials)?;
        }
        self.tip()
    }

    /// The branch tip's commit, as last fetched (remote) or now (local).
    ///
    /// # Errors
    /// [`SourceError`] when the repo or branch cannot be read.
    pub fn tip(&self) -> Result<String, SourceError> {
        let repo = self.open()?;
        let commit = self.tip_commit(&repo)?;
        Ok(commit.id().to_string())
    }

    fn tip_commit<'r>(&self, repo: &'r Repository) -> Result<git2::Commit<'r>, SourceError> {
        let refname = format!("refs/heads/{}", self.branch);
        let reference = repo
            .find_reference(&refname)
            .map_err(|_| SourceError::NoBranch {
                repo: redact_url(&self.repo),
                branch: self.branch.clone(),
            })?;
        reference
            .peel_to_commit()
            .map_err(|error| SourceError::Git {
                what: format!("resolving {refname}"),
                error,
            })
    }

    /// Read the documents at the branch tip (as last fetched, for a remote repo).
    ///
    /// # Errors
    /// [`SourceError`] when the repo, branch or directory cannot be read.
    pub fn snapshot(&self) -> Result<Snapshot, SourceError> {
        let repo = self.open()?;
        let commit = self.tip_commit(&repo)?;
        self.documents(&repo, &commit)
    }

    /// Read the documents at `commit`.
    ///
    /// # Errors
    /// [`SourceError`] when the commit or directory cannot be read.
    pub fn snapshot_at(&self, commit: &str) -> Result<Snapshot, SourceError> {
        let repo = self.open()?;
        let oid = Oid::from_str(commit).map_err(|error| SourceError::Git {
            what: format!("commit {commit:?}"),
            error,
        })?;
        let commit = repo.find_commit(oid).map_err(|_| SourceError::NoCommit {
            repo: redact_url(&self.repo),
            commit: commit.to_string(),
        })?;
        self.documents(&repo, &commit)
    }

    /// The signature and signed payload of `commit`, if it is signed.
    ///
    /// # Errors
    /// [`SourceError`] when the repo cannot be read.
    pub fn signature(&self, commit: &str) -> Result<Option<(String, Vec<u8>)>, SourceError> {
        let repo = self.open()?;
        let oid = Oid::from_str(commit).map_err(|error| SourceError::Git {
            what: format!("commit {commit:?}"),
            error,
        })?;
        match repo.extract_signature(&oid, None) {
            Ok((sig, data)) => Ok(Some((
                String::from_utf8_lossy(&sig).into_owned(),
                data.to_vec(),
            ))),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(error) => Err(SourceError::Git {
                what: format!("reading the signature of {commit}"),
                error,
            }),
        }
    }

    /// True when `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        let Ok(repo) = self.open() else { return false };
        match (Oid::from_str(ancestor), Oid::from_str(descendant)) {
            (Ok(a), Ok(d)) => a == d || repo.graph_descendant_of(d, a).unwrap_or(false),
            _ => false,
        }
    }

    fn documents(
        &self,
        repo: &Repository,
        commit: &git2::Commit<'_>,
    ) -> Result<Snapshot, SourceError> {
        let tree = commit.tree().map_err(|error| SourceError::Git {
            what: "reading the commit's tree".into(),
            error,
        })?;
        let dir = self.path.trim_matches('/');
        let subtree = if dir.is_empty() || dir == "." {
            tree
        } else {
            let entry = tree
                .get_path(Path::new(dir))
                .map_err(|error| SourceError::Git {
                    what: format!("directory {dir:?} at {}", commit.id()),
                    error,
                })?;
            let object = entry.to_object(repo).map_err(|error| SourceError::Git {
                what: format!("reading {dir:?}"),
                error,
            })?;
            object.into_tree().map_err(|_| SourceError::Git {
                what: format!("{dir:?} at {}", commit.id()),
                error: git2::Error::from_str("not a directory"),
            })?
        };
        let odb = repo.odb().map_err(|error| SourceError::Git {
            what: "opening the object database".into(),
            error,
        })?;
        let mut files = Vec::new();
        for entry in subtree.iter() {
            let Ok(name) = entry.name() else { continue };
            if entry.kind() != Some(ObjectType::Blob)
                || !(name.ends_with(".yaml") || name.ends_with(".yml"))
            {
                continue;
            }
            let read_error = |error| SourceError::Git {
                what: format!("reading {name}"),
                error,
            };
            // The size first, from the object's header: a blob over the limit is not read
            // whole (only the beginning, to name its app in the error).
            let (size, _) = odb.read_header(entry.id()).map_err(read_error)?;
            let text = if size > MAX_DOCUMENT_BYTES {
                let prefix = blob_prefix(repo, entry.id()).map_err(read_error)?;
                String::from_utf8_lossy(&prefix).into_owned()
            } else {
                let blob = repo.find_blob(entry.id()).map_err(read_error)?;
                String::from_utf8_lossy(blob.content()).into_owned()
            };
            let path = if dir.is_empty() || dir == "." {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            files.push(DocumentFile { path, text, size });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Snapshot {
            commit: commit.id().to_string(),
            files,
        })
    }
}

impl ConfigRepo {
    /// The branch tip's commit and the text of `file` there (`None` when it is gone), as
    /// last fetched. Used to notice a newer desired state while a rollout is being verified.
    ///
    /// # Errors
    /// [`SourceError`] when the repo cannot be read.
    pub fn document_at_tip(&self, file: &str) -> Result<(String, Option<String>), SourceError> {
        self.document_in(self.snapshot()?, file)
    }

    /// The text of `file` at `commit` (`None` when it is not there).
    ///
    /// # Errors
    /// [`SourceError`] when the repo or the commit cannot be read.
    pub fn document_at(
        &self,
        commit: &str,
        file: &str,
    ) -> Result<(String, Option<String>), SourceError> {
        self.document_in(self.snapshot_at(commit)?, file)
    }

    fn document_in(
        &self,
        snapshot: Snapshot,
        file: &str,
    ) -> Result<(String, Option<String>), SourceError> {
        let text = snapshot
            .files
            .into_iter()
            .find(|f| f.path == file)
            .map(|f| f.text);
        Ok((snapshot.commit, text))
    }
}

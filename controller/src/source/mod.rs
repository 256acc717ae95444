//! Git: reading desired-state documents from the config repo at a branch tip (through
//! git2, never from a working tree), and fetching an app's source at an exact commit into
//! a release directory through a controller-owned bare mirror.
//!
//! Everything here is blocking (libgit2); callers run it on `spawn_blocking`.

pub mod trust;

use std::path::{Path, PathBuf};

use git2::{FetchOptions, ObjectType, Oid, Repository, build::CheckoutBuilder};
use sha2::{Digest, Sha256};
use shipshape_spec::load::MAX_DOCUMENT_BYTES;

/// Why reading or fetching from git failed.
///
/// A repository URL here is always redacted ([`redact_url`]), and libgit2's message is
/// shown with every URL's credentials masked ([`crate::redact::credentials`]): libgit2
/// quotes its remote in some messages. Its error is kept as a field, not as the error's
/// source, so that no printer of the error chain shows it unmasked.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository could not be opened or created.
    #[error("cannot open repository {repo}: {}", masked(.error))]
    Open {
        /// Path or URL (redacted).
        repo: String,
        /// libgit2's error.
        error: git2::Error,
    },
    /// Fetching from the remote failed.
    #[error("fetch from {repo} failed: {}", masked(.error))]
    Fetch {
        /// URL or path (redacted).
        repo: String,
        /// libgit2's error.
        error: git2::Error,
    },
    /// The branch does not exist.
    #[error("branch {branch:?} not found in {repo}")]
    NoBranch {
        /// Path or URL (redacted).
        repo: String,
        /// The branch.
        branch: String,
    },
    /// The commit is not in the repository, even after a fetch.
    #[error("commit {commit} not found in {repo} (after fetching)")]
    NoCommit {
        /// URL or path (redacted).
        repo: String,
        /// The commit.
        commit: String,
    },
    /// Reading objects or writing files failed.
    #[error("{what}: {}", masked(.error))]
    Git {
        /// What was being done.
        what: String,
        /// libgit2's error.
        error: git2::Error,
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

/// libgit2's message with every URL's credentials masked.
fn masked(e: &git2::Error) -> String {
    crate::redact::credentials(e.message()).into_owned()
}

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

/// True when `repo` names a remote (URL or scp-like), false for a local path.
pub fn is_remote(repo: &str) -> bool {
    repo.contains("://") || (!repo.starts_with('/') && repo.contains(':'))
}

/// Credentials for remote repositories, read from files named in the controller's
/// configuration (never from documents).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// An SSH private key for `ssh://` and `user@host:path` URLs.
    pub ssh_key: Option<PathBuf>,
    /// A file holding an HTTPS token (or password), used with `https_user`.
    pub https_token_file: Option<PathBuf>,
    /// The HTTPS user name for the token (`x-access-token`, `oauth2`, your user …).
    pub https_user: Option<String>,
    /// Refuse a token file that every user can read (an app's `spec.source.tokenFile`; the
    /// config repo's `--git-token-file` may be, as it always could). An empty one is refused
    /// either way.
    pub private_token_file: bool,
}

impl Credentials {
    /// The credentials for an app's repository: the controller's SSH key, and the token
    /// file and user its document names (never the config repo's token: a document could
    /// point its repository anywhere).
    pub fn for_app(source: &shipshape_spec::app::Source, ssh_key: Option<&Path>) -> Credentials {
        Credentials {
            ssh_key: ssh_key.map(Path::to_path_buf),
            https_token_file: source.token_file.as_ref().map(PathBuf::from),
            https_user: source.token_user.clone(),
            private_token_file: true,
        }
    }
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

/// Where the bare mirror of an app repository lives under `sources_dir`.
pub fn mirror_path(sources_dir: &Path, repository: &str) -> PathBuf {
    let digest = Sha256::digest(repository.as_bytes());
    sources_dir.join(format!("{}.git", &hex::encode(digest)[..16]))
}

fn open_or_init_bare(path: &Path, url: &str) -> Result<Repository, SourceError> {
    let open = |error| SourceError::Open {
        repo: redact_url(url),
        error,
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

/// The CA certificate file libgit2 was started without, to hand it at the first fetch
/// (set by [`start_git_without_loading_certificates`]; `None` inside: none was found).
static CERT_FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

/// Start libgit2 without reading every CA certificate on the host.
///
/// libgit2 starts OpenSSL on its first use and loads the certificate file that
/// `SSL_CERT_FILE` names (git2 sets it to the system's bundle): ~17 ms of CPU and the
/// parsed certificates kept in memory, in every process, although reading a local config
/// repo never needs one. Here it is started with `SSL_CERT_FILE` naming an empty file;
/// the variable is then set as git2 would have set it, and the real file is handed to
/// libgit2 at the first fetch (`GIT_OPT_SET_SSL_CERT_LOCATIONS`, which loads it into the
/// same store): the same certificates, trusted the same way, read only when a remote is
/// reached. The certificate directory (`SSL_CERT_DIR`) is set and read as before.
///
/// # Safety
/// Changes the process's environment: call it before any other thread starts.
pub unsafe fn start_git_without_loading_certificates() {
    const VAR: &str = "SSL_CERT_FILE";
    // What git2's own start would set it to (the variable's file when it exists).
    let file = openssl_probe::probe().cert_file;
    let before = std::env::var_os(VAR);
    // SAFETY: the caller guarantees no other thread runs.
    unsafe { std::env::set_var(VAR, "/dev/null") };
    // Any libgit2 object starts it (and OpenSSL with it) now.
    drop(git2::Config::new());
    // SAFETY: as above.
    unsafe {
        match (&file, before) {
            (Some(f), _) => std::env::set_var(VAR, f),
            (None, Some(b)) => std::env::set_var(VAR, b),
            (None, None) => std::env::remove_var(VAR),
        }
    }
    let _ = CERT_FILE.set(file);
}

/// Hand libgit2 the CA certificates it was started without, once, before a fetch.
fn load_certificates() {
    static LOADED: std::sync::Once = std::sync::Once::new();
    LOADED.call_once(|| {
        if let Some(Some(file)) = CERT_FILE.get() {
            // SAFETY: libgit2 is started; every fetch passes here first, so none uses the
            // TLS context while it is being given its certificates.
            if let Err(e) = unsafe { git2::opts::set_ssl_cert_file(file) } {
                tracing::warn!(
                    "loading CA certificates from {} for git: {e}",
                    file.display()
                );
            }
        }
    });
}

fn fetch_with(
    repo: &Repository,
    url: &str,
    refspecs: &[&str],
    creds: &Credentials,
) -> Result<(), SourceError> {
    load_certificates();
    let err = |error| SourceError::Fetch {
        repo: redact_url(url),
        error,
    };
    let mut remote = repo.remote_anonymous(url).map_err(err)?;
    let mut callbacks = git2::RemoteCallbacks::new();
    let creds = creds.clone();
    let mut tries = 0;
    let configured = crate::redact::origin(url);
    callbacks.credentials(move |asked_for, user_from_url, allowed| {
        tries += 1;
        if tries > 3 {
            return Err(git2::Error::from_str("credentials refused"));
        }
        // A token goes only to the server it is configured for, not to one the first
        // answer redirected to.
        if crate::redact::origin(asked_for) != configured {
            return Err(git2::Error::from_str(&format!(
                "not sending credentials to {} (redirected from {configured})",
                crate::redact::origin(asked_for)
            )));
        }
        if allowed.is_ssh_key()
            && let Some(key) = &creds.ssh_key
        {
            return git2::Cred::ssh_key(user_from_url.unwrap_or("git"), None, key, None);
        }
        if allowed.is_user_pass_plaintext()
            && let Some(file) = &creds.https_token_file
        {
            let what = if creds.private_token_file {
                "token file (spec.source.tokenFile)"
            } else {
                "token file (--git-token-file)"
            };
            let token = crate::redact::read_secret_file(file, what, creds.private_token_file)
                .map_err(|e| git2::Error::from_str(&e.to_string()))?;
            let user = creds
                .https_user
                .as_deref()
                .or(user_from_url)
                .unwrap_or("x-access-token");
            return git2::Cred::userpass_plaintext(user, &token);
        }
        if allowed.is_default() {
            return git2::Cred::default();
        }
        Err(git2::Error::from_str(
            "no credentials configured for this remote",
        ))
    });
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks);
    opts.download_tags(git2::AutotagOption::None);
    remote.fetch(refspecs, Some(&mut opts), None).map_err(err)
}

/// `url` without any `user:password@` part, for messages.
pub fn redact_url(url: &str) -> String {
    shipshape_spec::validate::redact_url(url)
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

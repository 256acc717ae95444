//! The libgit2 plumbing the config repo and the app mirrors share: the error type (URLs
//! redacted, libgit2's messages masked), credentials for remotes, fetching with them (a
//! token goes only to the server it is configured for), opening or creating a bare mirror,
//! and starting libgit2 without loading every CA certificate.
//!
//! Everything here is blocking (libgit2); callers run it on `spawn_blocking`.

use std::path::{Path, PathBuf};

use git2::{FetchOptions, Repository};

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

pub(super) fn open_or_init_bare(path: &Path, url: &str) -> Result<Repository, SourceError> {
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

/// Fetch `refspecs` from `url` into `repo` with `creds`, offered only to `url`'s own origin.
pub(super) fn fetch_with(
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

//! The source: where desired state comes from, and when it changed.
//!
//! - [`repo`]: the config repo (git2): documents at a branch tip, a remote one fetched into
//!   a mirror, a commit's signature and ancestry;
//! - [`watch`]: the local watch (notify on a local repo's refs);
//! - [`poll`]: the remote poll (fetch every interval, back-off on failure, at once on a
//!   webhook);
//! - [`webhook`]: the webhook intake (signature checked in constant time; what it wakes);
//! - [`trust`]: trusted commits (signatures checked by ssh-keygen or gpg);
//! - [`mirror`]: app sources (a bare mirror per app repository, checked out into releases);
//! - [`git`]: the libgit2 plumbing the config repo and the mirrors share (errors with URLs
//!   redacted, credentials, fetching, CA certificates).
//!
//! The types others use are re-exported here (`crate::source::ConfigRepo`, …).

pub mod git;
pub mod mirror;
pub mod poll;
pub mod repo;
pub mod trust;
pub mod watch;
pub mod webhook;

pub use git::{
    Credentials, SourceError, is_remote, redact_url, start_git_without_loading_certificates,
};
pub use mirror::{checkout, ensure_commit, lockfile_at, mirror_path};
pub use repo::{ConfigRepo, DocumentFile, Snapshot};

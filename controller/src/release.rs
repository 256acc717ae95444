//! The release layout on disk: `<root>/releases/<id>` (immutable once sealed),
//! `<root>/current` (a symlink switched atomically), and the build marker
//! `<release>/.shipshape-release.json` that says a release is complete and what it was
//! built from. A directory without a marker is an interrupted preparation, never live.
//! Also the copy of `node_modules` one release gives another ([`copy_tree`], by path, over
//! [`crate::confined::Dir::copy_tree`], which owns the copy): reflinked or
//! copied, never hard-linked, so a build never writes into the live release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::confined::{CopyStats, Dir};

/// The marker file's name inside a release.
pub const MARKER: &str = ".shipshape-release.json";

/// What a sealed release was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMarker {
    /// The app commit.
    pub commit: String,
    /// Hash of the build inputs (commit, install, steps, build env).
    pub inputs: String,
    /// Hash of the lockfile, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockfile: Option<String>,
    /// Hash of what `node_modules` was installed from (lockfile, install command, build
    /// env); another release with the same value can reuse it instead of installing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deps: Option<String>,
    /// When it was sealed.
    pub sealed_at: shipshape_spec::Timestamp,
}

/// Lockfiles, in the order they are looked for; the first present one identifies the dependencies.
pub const LOCKFILES: &[&str] = &[
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
];

/// A short hash of lockfile contents.
pub fn lockfile_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(bytes)[..12])
}

/// The hash of the first lockfile in `dir`, if any.
/// (read beneath `dir`, never through a symlink).
pub fn lockfile_in_dir(dir: &Path) -> Option<String> {
    let dir = Dir::open(dir, "the release").ok()?;
    LOCKFILES
        .iter()
        .find_map(|name| dir.read(Path::new(name)).ok())
        .map(|b| lockfile_hash(&b))
}

/// Copy the tree `from` to `to` so that no file of `to` shares storage that a write into
/// either tree can change: each regular file is cloned with a reflink (`FICLONE`: the
/// blocks are shared copy-on-write, so a write into one copy never reaches the other) where
/// the filesystem supports it (btrfs, XFS, bcachefs …), and copied byte for byte otherwise
/// (ext4, tmpfs, another filesystem). Symlinks are recreated as symlinks (never followed);
/// permission bits (executable bits included) and modification times are kept; a `.cache`
/// directory is skipped (tools write there). Other file kinds (sockets, fifos) are skipped.
/// The walk is [`crate::confined`]'s: by descriptor, never through a symlink.
///
/// `to` must not exist yet: nothing is overwritten.
///
/// # Errors
/// The first I/O error; what was copied so far stays for the caller to remove.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<CopyStats> {
    let src = Dir::open(from, "the source")?;
    let parent = to.parent().unwrap_or(Path::new("."));
    let name = to.file_name().map(Path::new).unwrap_or(Path::new(""));
    Ok(Dir::open(parent, "the destination")?.copy_tree(&src, name)?)
}

/// Paths of one app's releases.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `spec.releases.root`.
    pub root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    /// `<root>/releases`.
    pub fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }
    /// `<root>/releases/<id>`.
    pub fn release(&self, id: &str) -> PathBuf {
        self.releases_dir().join(id)
    }
    /// `<root>/current`.
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The release id `current` points at, if it points into `releases/`.
    pub fn current_release(&self) -> Option<String> {
        let target = std::fs::read_link(self.current()).ok()?;
        let target = if target.is_absolute() {
            target
        } else {
            self.root.join(target)
        };
        let parent = target.parent()?;
        if parent != self.releases_dir() {
            return None;
        }
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// Every directory under `releases/`, with its marker when sealed.
    pub fn scan(&self) -> std::io::Result<BTreeMap<String, Option<BuildMarker>>> {
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(self.releases_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.starts_with('.') {
                continue;
            }
            // Never through a symlink: a committed link cannot seal a release.
            let marker = Dir::open(&entry.path(), "the release")
                .and_then(|d| d.read(Path::new(MARKER)))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            out.insert(id, marker);
        }
        Ok(out)
    }

    /// True when release `id` has a `node_modules` directory (what `reuse-deps` copies from).
    /// An install of a lockfile with no dependencies leaves none: such a release has
    /// nothing to give another.
    /// (A `node_modules` symlink is not one: it is never copied from.)
    pub fn has_node_modules(&self, id: &str) -> bool {
        self.has_dir(id, Path::new("node_modules"))
    }

    /// True when release `id` has the directory `rel`, reached without a symlink.
    pub fn has_dir(&self, id: &str, rel: &Path) -> bool {
        Dir::open(&self.release(id), "the release").is_ok_and(|d| d.is_dir(rel))
    }

    /// Release `id`, held open for [`crate::confined`] operations beneath it.
    ///
    /// # Errors
    /// When it cannot be opened.
    pub fn open(&self, id: &str) -> Result<Dir, crate::confined::ConfinedError> {
        Dir::open(&self.release(id), "the release")
    }

    /// Write the marker that seals release `id`.
    pub fn seal(&self, id: &str, marker: &BuildMarker) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(marker).expect("marker serializes");
        Ok(self
            .open(id)?
            .write_atomic(Path::new(MARKER), &bytes, 0o644)?)
    }

    /// Point `current` at release `id` atomically (symlink to a temp name, then rename).
    pub fn switch(&self, id: &str) -> std::io::Result<()> {
        let tmp = self
            .root
            .join(format!(".current.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("releases").join(id), &tmp)?;
        std::fs::rename(&tmp, self.current())?;
        fsync_dir(&self.root)
    }
}

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync, rename,
/// fsync the directory. Readers see the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] with the file's permission bits (e.g. `0o600` for state and tokens).
/// The temporary file is created exclusively, never through a symlink, and the rename
/// replaces a symlink planted at `path` instead of writing through it
/// ([`Dir::write_atomic`]).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(Path::new).unwrap_or(Path::new(""));
    Ok(Dir::open(dir, "the directory")?.write_atomic(name, bytes, mode)?)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_replaces_the_link_and_current_release_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.release("a")).unwrap();
        std::fs::create_dir_all(layout.release("b")).unwrap();
        assert_eq!(layout.current_release(), None);
        layout.switch("a").unwrap();
        assert_eq!(layout.current_release().as_deref(), Some("a"));
        layout.switch("b").unwrap();
        assert_eq!(layout.current_release().as_deref(), Some("b"));
        assert!(
            std::fs::symlink_metadata(layout.current())
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn copy_tree_shares_no_storage_and_keeps_symlinks_modes_and_times() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a/node_modules");
        std::fs::create_dir_all(src.join("pkg/lib")).unwrap();
        std::fs::create_dir_all(src.join(".cache/x")).unwrap();
        std::fs::write(src.join(".cache/x/f"), "cached").unwrap();
        std::fs::write(src.join("pkg/lib/index.js"), "x").unwrap();
        std::fs::write(src.join("pkg/cli.js"), "#!/usr/bin/env node\n").unwrap();
        std::fs::set_permissions(
            src.join("pkg/cli.js"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir_all(src.join(".bin")).unwrap();
        std::os::unix::fs::symlink("../pkg/cli.js", src.join(".bin/pkg")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/elsewhere", src.join("dangling")).unwrap();
        let dst = dir.path().join("b/node_modules");
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        let stats = copy_tree(&src, &dst).unwrap();
        assert_eq!((stats.files, stats.symlinks, stats.bytes), (2, 2, 21));
        for file in ["pkg/lib/index.js", "pkg/cli.js"] {
            let a = std::fs::metadata(src.join(file)).unwrap();
            let b = std::fs::metadata(dst.join(file)).unwrap();
            assert_ne!(a.ino(), b.ino(), "{file} is shared");
            assert_eq!(a.mode() & 0o7777, b.mode() & 0o7777, "{file}'s mode");
            assert_eq!(a.mtime(), b.mtime(), "{file}'s mtime");
        }
        // A write through the copy (in place, same inode) never reaches the source.
        std::fs::write(dst.join("pkg/lib/index.js"), "rewritten").unwrap();
        assert_eq!(
            std::fs::read_to_string(src.join("pkg/lib/index.js")).unwrap(),
            "x"
        );
        assert_eq!(
            std::fs::read_link(dst.join(".bin/pkg")).unwrap(),
            Path::new("../pkg/cli.js")
        );
        assert_eq!(
            std::fs::read_link(dst.join("dangling")).unwrap(),
            Path::new("/nonexistent/elsewhere"),
            "symlinks are copied, never followed"
        );
        assert!(!dst.join(".cache").exists());
        assert_eq!(
            std::fs::metadata(&dst).unwrap().mode() & 0o777,
            std::fs::metadata(&src).unwrap().mode() & 0o777
        );
    }

    #[test]
    fn scan_tells_sealed_from_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.release("sealed")).unwrap();
        std::fs::create_dir_all(layout.release("partial")).unwrap();
        let marker = BuildMarker {
            commit: "a".repeat(40),
            inputs: "x".into(),
            lockfile: None,
            deps: None,
            sealed_at: shipshape_spec::Timestamp::UNIX_EPOCH,
        };
        layout.seal("sealed", &marker).unwrap();
        let scan = layout.scan().unwrap();
        assert_eq!(scan["sealed"].as_ref(), Some(&marker));
        assert_eq!(scan["partial"], None);
    }
}

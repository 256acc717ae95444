//! The release layout on disk: `<root>/releases/<id>` (immutable once sealed),
//! `<root>/current` (a symlink switched atomically), and the build marker
//! `<release>/.shipshape-release.json` that says a release is complete and what it was
//! built from. A directory without a marker is an interrupted preparation, never live.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    pub sealed_at: String,
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
pub fn lockfile_in_dir(dir: &Path) -> Option<String> {
    LOCKFILES
        .iter()
        .find_map(|name| std::fs::read(dir.join(name)).ok())
        .map(|b| lockfile_hash(&b))
}

/// Copy `from` to `to` as hard links (directories recreated, symlinks copied as links),
/// falling back to a byte copy where a link cannot be made (another filesystem).
pub fn link_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut files = 0;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if kind.is_symlink() {
            let target = std::fs::read_link(&src)?;
            std::os::unix::fs::symlink(target, &dst)?;
        } else if kind.is_dir() {
            if entry.file_name() == ".cache" {
                continue; // tools write here; never share it between releases
            }
            files += link_tree(&src, &dst)?;
        } else {
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst)?;
            }
            files += 1;
        }
    }
    Ok(files)
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
            let marker = std::fs::read(entry.path().join(MARKER))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            out.insert(id, marker);
        }
        Ok(out)
    }

    /// Write the marker that seals release `id`.
    pub fn seal(&self, id: &str, marker: &BuildMarker) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(marker).expect("marker serializes");
        write_atomic(&self.release(id).join(MARKER), &bytes)
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
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    fsync_dir(dir)
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
    fn link_tree_shares_files_and_keeps_symlinks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a/node_modules");
        std::fs::create_dir_all(src.join("pkg/lib")).unwrap();
        std::fs::create_dir_all(src.join(".cache/x")).unwrap();
        std::fs::write(src.join("pkg/lib/index.js"), "x").unwrap();
        std::fs::create_dir_all(src.join(".bin")).unwrap();
        std::os::unix::fs::symlink("../pkg/lib/index.js", src.join(".bin/pkg")).unwrap();
        let dst = dir.path().join("b/node_modules");
        assert_eq!(link_tree(&src, &dst).unwrap(), 1);
        let a = std::fs::metadata(src.join("pkg/lib/index.js")).unwrap();
        let b = std::fs::metadata(dst.join("pkg/lib/index.js")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            std::fs::read_link(dst.join(".bin/pkg")).unwrap(),
            Path::new("../pkg/lib/index.js")
        );
        assert!(!dst.join(".cache").exists());
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
            sealed_at: "now".into(),
        };
        layout.seal("sealed", &marker).unwrap();
        let scan = layout.scan().unwrap();
        assert_eq!(scan["sealed"].as_ref(), Some(&marker));
        assert_eq!(scan["partial"], None);
    }
}

//! Confined file operations: every path the controller opens, creates or removes inside a
//! directory it does not fully control (a release checked out from an app repo, a build
//! cache, the state directory) is resolved *beneath* that directory without following a
//! symlink: one component at a time, each opened with `openat(O_NOFOLLOW)` from the
//! directory opened before it (what `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` does
//! in one call; the walk runs on every kernel, and it is what names the link). A
//! symlink (or `..`, or an absolute path) on such a path is an error that names it, e.g.
//! `.next is a symlink (to /some/dir) out of the release; refusing`: a repo that commits
//! `.next -> /some/dir` or `.next -> ../<live release>/.next` cannot make the controller
//! remove or write anything outside the release.
//!
//! What this module owns: [`Dir`] (a directory held open by descriptor, the root every
//! path is resolved under) and its operations: open a directory or read a file beneath
//! it, create directories, remove a tree, copy a tree (symlinks copied as symlinks, never
//! followed; files reflinked where the filesystem can), check a path for symlinks, and
//! write a file atomically. The root itself is opened as its caller names it (an
//! operator's path, trusted); only what lies beneath it is confined.

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Why a confined operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    /// A component of the path is a symlink: never followed.
    #[error("{} is a symlink (to {}){}; refusing", .component.display(), .target.display(), if *.out { format!(" out of {}", .within) } else { String::new() })]
    Symlink {
        /// The path up to and including the link, relative to the root.
        component: PathBuf,
        /// What the link points at.
        target: PathBuf,
        /// Whether the target lies outside the root.
        out: bool,
        /// The root, in words ("the release").
        within: String,
    },
    /// The path itself leaves the root (`..` or absolute).
    #[error("{} leaves {within} (`..` or an absolute path); refusing", .path.display())]
    Escapes {
        /// The path asked for.
        path: PathBuf,
        /// The root, in words.
        within: String,
    },
    /// A component that must be a directory is not one.
    #[error("{} is not a directory", .component.display())]
    NotDirectory {
        /// The path up to that component, relative to the root.
        component: PathBuf,
    },
    /// The operating system refused.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The full path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl ConfinedError {
    /// True when the path (or a parent of it) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ConfinedError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// True when the path was refused (a symlink, `..`, not a directory), as opposed to an
    /// I/O failure: the content asked for it, and trying again cannot help.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ConfinedError::Io { .. })
    }
}

impl From<ConfinedError> for io::Error {
    fn from(e: ConfinedError) -> io::Error {
        match e {
            ConfinedError::Io { source, .. } if source.kind() != io::ErrorKind::Other => {
                io::Error::new(source.kind(), format!("{source}"))
            }
            other => io::Error::other(other.to_string()),
        }
    }
}

/// A directory held open; every path given to its methods is relative to it and resolved
/// beneath it without following symlinks.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// The root's path (for messages and to tell links out from links in).
    root: PathBuf,
    /// This directory relative to the root.
    prefix: PathBuf,
    /// The root, in words ("the release").
    within: String,
}

/// How every component but the last is opened: as a directory (never through a link).
const DIRECTORY: (libc::c_int, u32) = (libc::O_RDONLY | libc::O_DIRECTORY, 0);

fn cstr(name: &std::ffi::OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// `fstatat(AT_SYMLINK_NOFOLLOW)`.
fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: `st` is a properly sized out-parameter; `name` is NUL-terminated.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) != 0 {
            return Err(last_error());
        }
        Ok(st)
    }
}

fn is_kind(st: &libc::stat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

/// `readlinkat`.
fn read_link_at(dir: RawFd, name: &CStr) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` is writable for its length; `name` is NUL-terminated.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(last_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`.
fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; a non-negative result is a descriptor we now own.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(last_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The names in the directory `fd` (without `.` and `..`).
fn list(fd: RawFd) -> io::Result<Vec<CString>> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor; fdopendir takes ownership of it
    // (closedir closes it); readdir's entries are read before the next call.
    unsafe {
        let dup = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
        if dup < 0 {
            return Err(last_error());
        }
        let dir = libc::fdopendir(dup);
        if dir.is_null() {
            let e = last_error();
            libc::close(dup);
            return Err(e);
        }
        libc::rewinddir(dir);
        let mut out = Vec::new();
        loop {
            *libc::__errno_location() = 0;
            let entry = libc::readdir(dir);
            if entry.is_null() {
                let errno = *libc::__errno_location();
                libc::closedir(dir);
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(errno));
                }
                return Ok(out);
            }
            let name = CStr::from_ptr((*entry).d_name.as_ptr());
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                out.push(name.to_owned());
            }
        }
    }
}

/// The path's normal components; `..`, an absolute path or a prefix is refused.
fn components(rel: &Path, within: &str) -> Result<Vec<OsString>, ConfinedError> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(ConfinedError::Escapes {
                    path: rel.to_path_buf(),
                    within: within.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// True when `target`, a link found at `at` (relative to the root), points outside the
/// root (read lexically: an absolute target outside `root`, or one that climbs above it).
fn points_out(root: &Path, at: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return !target.starts_with(root);
    }
    let mut depth: usize = at.parent().map_or(0, |p| p.components().count());
    for c in target.components() {
        match c {
            Component::ParentDir => {
                if depth == 0 {
                    return true;
                }
                depth -= 1;
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

impl Dir {
    /// Open the root `path` (as given: the operator's path, or one the controller made);
    /// `within` names it in errors ("the release", "the state directory").
    ///
    /// # Errors
    /// When it cannot be opened as a directory.
    pub fn open(path: &Path, within: &str) -> Result<Dir, ConfinedError> {
        let io = |source| ConfinedError::Io {
            path: path.to_path_buf(),
            source,
        };
        let c = cstr(path.as_os_str()).map_err(io)?;
        // SAFETY: `c` is NUL-terminated; a non-negative result is a descriptor we now own.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io(last_error()));
        }
        Ok(Dir {
            // SAFETY: just returned by open, owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            root: path.to_path_buf(),
            prefix: PathBuf::new(),
            within: within.to_string(),
        })
    }

    /// This directory's path.
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.prefix)
    }

    fn child(&self, fd: OwnedFd, rel: &Path) -> Dir {
        Dir {
            fd,
            root: self.root.clone(),
            prefix: self.prefix.join(rel),
            within: self.within.clone(),
        }
    }

    fn io(&self, rel: &Path, source: io::Error) -> ConfinedError {
        ConfinedError::Io {
            path: self.path().join(rel),
            source,
        }
    }

    /// Tell why `name` in `dir` (at `at`, relative to this directory) could not be
    /// opened: a symlink, not a directory, or the OS error `e`.
    fn diagnose(&self, dir: RawFd, name: &CStr, at: &Path, e: io::Error) -> ConfinedError {
        match lstat_at(dir, name) {
            Ok(st) if is_kind(&st, libc::S_IFLNK) => {
                let target = read_link_at(dir, name).unwrap_or_default();
                let component = self.prefix.join(at);
                ConfinedError::Symlink {
                    out: points_out(&self.root, &component, &target),
                    component,
                    target,
                    within: self.within.clone(),
                }
            }
            Ok(st) if !is_kind(&st, libc::S_IFDIR) && e.raw_os_error() == Some(libc::ENOTDIR) => {
                ConfinedError::NotDirectory {
                    component: self.prefix.join(at),
                }
            }
            _ => self.io(at, e),
        }
    }

    /// Open `rel` beneath this directory with `flags` (the last component opened with
    /// `flags`, every other one as a directory), following no symlink.
    fn resolve(&self, rel: &Path, flags: libc::c_int, mode: u32) -> Result<OwnedFd, ConfinedError> {
        match self.descend(rel, (flags, mode), |_, _, _| Ok(true))? {
            Some(fd) => Ok(fd),
            None => open_at(self.fd.as_raw_fd(), c".", flags, mode).map_err(|e| self.io(rel, e)),
        }
    }

    /// Walk `rel` beneath this directory one component at a time, each opened with
    /// `openat(O_NOFOLLOW)` from the one before it (so no symlink is followed, and `..` is
    /// refused before the walk starts): every component as a directory, the last one with
    /// `last` (flags, mode). `visit` sees each name in its directory before it is opened:
    /// it may create it, refuse it, or end the walk there (`Ok(false)`). Returns the last
    /// descriptor opened, `None` when the walk ended early or `rel` is empty.
    fn descend(
        &self,
        rel: &Path,
        last: (libc::c_int, u32),
        mut visit: impl FnMut(RawFd, &CStr, &Path) -> Result<bool, ConfinedError>,
    ) -> Result<Option<OwnedFd>, ConfinedError> {
        let parts = components(rel, &self.within)?;
        let mut at = PathBuf::new();
        let mut cur: Option<OwnedFd> = None;
        for (i, part) in parts.iter().enumerate() {
            let dir = cur.as_ref().map_or(self.fd.as_raw_fd(), |f| f.as_raw_fd());
            at.push(part);
            let name = cstr(part).map_err(|e| self.io(&at, e))?;
            if !visit(dir, &name, &at)? {
                return Ok(None);
            }
            let (flags, mode) = if i + 1 == parts.len() {
                last
            } else {
                DIRECTORY
            };
            let fd =
                open_at(dir, &name, flags, mode).map_err(|e| self.diagnose(dir, &name, &at, e))?;
            cur = Some(fd);
        }
        Ok(cur)
    }

    /// The directory `rel` beneath this one.
    ///
    /// # Errors
    /// A symlink, `..` or a non-directory on the way; an I/O error (not found included).
    pub fn open_dir(&self, rel: &Path) -> Result<Dir, ConfinedError> {
        let fd = self.resolve(rel, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        Ok(self.child(fd, rel))
    }

    /// [`Dir::open_dir`], with `None` when it does not exist.
    ///
    /// # Errors
    /// As [`Dir::open_dir`], except not found.
    pub fn open_dir_if_exists(&self, rel: &Path) -> Result<Option<Dir>, ConfinedError> {
        match self.open_dir(rel) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// True when `rel` is a directory reached without a symlink.
    pub fn is_dir(&self, rel: &Path) -> bool {
        self.open_dir(rel).is_ok()
    }

    /// The bytes of the regular file `rel` (never through a symlink).
    ///
    /// # Errors
    /// A refusal or an I/O error.
    pub fn read(&self, rel: &Path) -> Result<Vec<u8>, ConfinedError> {
        use std::io::Read;
        let fd = self.resolve(rel, libc::O_RDONLY, 0)?;
        let mut out = Vec::new();
        File::from(fd)
            .read_to_end(&mut out)
            .map_err(|e| self.io(rel, e))?;
        Ok(out)
    }

    /// Refuse `rel` when any component of it that exists is a symlink (or `..`); what does
    /// not exist yet is fine (the controller would create it).
    ///
    /// # Errors
    /// The first symlink, as [`ConfinedError::Symlink`].
    pub fn check_no_symlinks(&self, rel: &Path) -> Result<(), ConfinedError> {
        self.descend(rel, DIRECTORY, |dir, name, at| match lstat_at(dir, name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(at, e)),
            Ok(st) if is_kind(&st, libc::S_IFLNK) => {
                Err(self.diagnose(dir, name, at, io::Error::from_raw_os_error(libc::ELOOP)))
            }
            // A file where a directory is asked for: nothing beneath it to follow.
            Ok(st) => Ok(is_kind(&st, libc::S_IFDIR)),
        })?;
        Ok(())
    }

    /// Create the directory `rel` and its missing parents beneath this one (mode 0777
    /// less the umask), following no symlink; returns it.
    ///
    /// # Errors
    /// A symlink or a non-directory on the way; an I/O error.
    pub fn create_dir_all(&self, rel: &Path) -> Result<Dir, ConfinedError> {
        let fd = self.descend(rel, DIRECTORY, |dir, name, at| {
            // SAFETY: `name` is NUL-terminated.
            if unsafe { libc::mkdirat(dir, name.as_ptr(), 0o777) } != 0 {
                let e = last_error();
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(self.io(at, e));
                }
            }
            Ok(true)
        })?;
        match fd {
            Some(fd) => Ok(self.child(fd, rel)),
            None => self.open_dir(Path::new(".")),
        }
    }

    /// Split `rel` into its parent (opened beneath this directory) and its last name.
    fn parent_of(
        &self,
        rel: &Path,
        create: bool,
    ) -> Result<(Dir, CString, PathBuf), ConfinedError> {
        let mut parts = components(rel, &self.within)?;
        let Some(name) = parts.pop() else {
            return Err(ConfinedError::Escapes {
                path: rel.to_path_buf(),
                within: self.within.clone(),
            });
        };
        let parent: PathBuf = parts.iter().collect();
        let dir = if create {
            self.create_dir_all(&parent)?
        } else {
            self.open_dir(&parent)?
        };
        let c = cstr(&name).map_err(|e| self.io(rel, e))?;
        Ok((dir, c, PathBuf::from(name)))
    }

    /// Remove `rel` and everything under it. The path to it must hold no symlink, and
    /// `rel` itself must not be one (a link where the controller writes is refused, not
    /// removed); inside the tree, symlinks are removed as links, never followed. Returns
    /// false when there was nothing to remove.
    ///
    /// # Errors
    /// A refusal or an I/O error.
    pub fn remove_tree(&self, rel: &Path) -> Result<bool, ConfinedError> {
        let (parent, name, last) = match self.parent_of(rel, false) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let st = match lstat_at(parent.fd.as_raw_fd(), &name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.io(rel, e)),
        };
        if is_kind(&st, libc::S_IFLNK) {
            return Err(parent.diagnose(
                parent.fd.as_raw_fd(),
                &name,
                &last,
                io::Error::from_raw_os_error(libc::ELOOP),
            ));
        }
        remove_entry(parent.fd.as_raw_fd(), &name, &st).map_err(|e| self.io(rel, e))?;
        Ok(true)
    }

    /// Copy the tree `src` to the new directory `rel` beneath this one (its missing parents
    /// created, none of them a symlink). Regular files are reflinked where the filesystem
    /// can (copy-on-write: a write to one copy never reaches the other) and copied byte for
    /// byte otherwise; symlinks are recreated as symlinks, never followed; permission bits
    /// and modification times are kept; `.cache` directories are skipped (tools write
    /// there); other file kinds are skipped. `rel` must not exist yet.
    ///
    /// # Errors
    /// A refusal or the first I/O error; what was copied so far stays for the caller.
    pub fn copy_tree(&self, src: &Dir, rel: &Path) -> Result<CopyStats, ConfinedError> {
        let (parent, name, _) = self.parent_of(rel, true)?;
        let mut stats = CopyStats::default();
        copy_dir(src.fd.as_raw_fd(), parent.fd.as_raw_fd(), &name, &mut stats)
            .map_err(|e| self.io(rel, e))?;
        Ok(stats)
    }

    /// Write `bytes` to `rel` atomically (a temporary file beside it, fsync, rename, fsync
    /// the directory), with permission bits `mode`; missing parents are created. The
    /// temporary file is created exclusively and never through a symlink; the rename
    /// replaces a symlink planted at `rel` instead of writing through it.
    ///
    /// # Errors
    /// A refusal or an I/O error (the previous file stays as it was).
    pub fn write_atomic(&self, rel: &Path, bytes: &[u8], mode: u32) -> Result<(), ConfinedError> {
        use std::io::Write;
        let (parent, name, last) = self.parent_of(rel, true)?;
        let pfd = parent.fd.as_raw_fd();
        let tmp_name = format!(".{}.{}.tmp", last.display(), std::process::id());
        let tmp =
            CString::new(tmp_name).map_err(|_| self.io(rel, io::ErrorKind::InvalidInput.into()))?;
        // A leftover of a crashed write (or something planted there): removed as it is.
        // SAFETY: `tmp` is NUL-terminated.
        unsafe { libc::unlinkat(pfd, tmp.as_ptr(), 0) };
        let fd = open_at(
            pfd,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            mode,
        )
        .map_err(|e| self.io(rel, e))?;
        let mut f = File::from(fd);
        let written = f
            .write_all(bytes)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(mode))
            })
            .and_then(|()| f.sync_all());
        if let Err(e) = written {
            // SAFETY: `tmp` is NUL-terminated.
            unsafe { libc::unlinkat(pfd, tmp.as_ptr(), 0) };
            return Err(self.io(rel, e));
        }
        // SAFETY: both names are NUL-terminated and relative to the same open directory.
        if unsafe { libc::renameat(pfd, tmp.as_ptr(), pfd, name.as_ptr()) } != 0 {
            let e = last_error();
            // SAFETY: as above.
            unsafe { libc::unlinkat(pfd, tmp.as_ptr(), 0) };
            return Err(self.io(rel, e));
        }
        // SAFETY: fsync on a directory descriptor we own.
        if unsafe { libc::fsync(pfd) } != 0 {
            return Err(self.io(rel, last_error()));
        }
        Ok(())
    }
}

/// What [`Dir::copy_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files copied.
    pub files: u64,
    /// Of those, the ones cloned with a reflink (shared blocks, copy-on-write).
    pub cloned: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Symlinks recreated.
    pub symlinks: u64,
}

/// Remove the entry `name` of `dir` (stat'ed as `st`, not followed): a directory with all
/// it holds, anything else unlinked.
fn remove_entry(dir: RawFd, name: &CStr, st: &libc::stat) -> io::Result<()> {
    if is_kind(st, libc::S_IFDIR) {
        let sub = open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        // A read-only directory (as npm may leave) is made writable to be emptied.
        if st.st_mode & 0o300 != 0o300 {
            // SAFETY: fchmod on a descriptor we own.
            unsafe { libc::fchmod(sub.as_raw_fd(), 0o700) };
        }
        for child in list(sub.as_raw_fd())? {
            match lstat_at(sub.as_raw_fd(), &child) {
                Ok(cst) => remove_entry(sub.as_raw_fd(), &child, &cst)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        // SAFETY: `name` is NUL-terminated.
        if unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            return Err(last_error());
        }
    } else {
        // SAFETY: `name` is NUL-terminated.
        if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } != 0 {
            let e = last_error();
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Create `name` in `dst` and copy the directory `src` into it.
fn copy_dir(src: RawFd, dst: RawFd, name: &CStr, stats: &mut CopyStats) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    if unsafe { libc::mkdirat(dst, name.as_ptr(), 0o700) } != 0 {
        return Err(last_error());
    }
    let to = open_at(dst, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    for child in list(src)? {
        let st = match lstat_at(src, &child) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if is_kind(&st, libc::S_IFLNK) {
            let target = read_link_at(src, &child)?;
            let t = cstr(target.as_os_str())?;
            // SAFETY: both strings are NUL-terminated.
            if unsafe { libc::symlinkat(t.as_ptr(), to.as_raw_fd(), child.as_ptr()) } != 0 {
                return Err(last_error());
            }
            stats.symlinks += 1;
        } else if is_kind(&st, libc::S_IFDIR) {
            if child.to_bytes() == b".cache" {
                continue; // tools write here; never carried between releases
            }
            let from = open_at(src, &child, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            copy_dir(from.as_raw_fd(), to.as_raw_fd(), &child, stats)?;
        } else if is_kind(&st, libc::S_IFREG) {
            let input = File::from(open_at(src, &child, libc::O_RDONLY, 0)?);
            let output = File::from(open_at(
                to.as_raw_fd(),
                &child,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o600,
            )?);
            let (bytes, cloned) = copy_file(input, output)?;
            stats.files += 1;
            stats.bytes += bytes;
            stats.cloned += u64::from(cloned);
        }
    }
    // The directory's own mode last, once it is filled (it may be read-only).
    // SAFETY: fstat/fchmod on descriptors we own; `st` is a sized out-parameter.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(src, &mut st) != 0 {
            return Err(last_error());
        }
        if libc::fchmod(to.as_raw_fd(), st.st_mode & 0o7777) != 0 {
            return Err(last_error());
        }
    }
    Ok(())
}

/// Copy one regular file into a new, empty `output`: a reflink where possible, else its
/// bytes; then its mode and times. Returns (bytes, cloned).
fn copy_file(mut input: std::fs::File, mut output: std::fs::File) -> std::io::Result<(u64, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let meta = input.metadata()?;
    let cloned = reflink(&input, &output);
    if !cloned {
        std::io::copy(&mut input, &mut output)?;
    }
    output.set_permissions(std::fs::Permissions::from_mode(
        meta.permissions().mode() & 0o7777,
    ))?;
    let mut times = std::fs::FileTimes::new();
    if let Ok(t) = meta.modified() {
        times = times.set_modified(t);
    }
    if let Ok(t) = meta.accessed() {
        times = times.set_accessed(t);
    }
    output.set_times(times)?;
    Ok((meta.len(), cloned))
}

/// Make `dst` share `src`'s blocks copy-on-write (`ioctl(FICLONE)`); false where the
/// filesystem cannot (`EOPNOTSUPP`, `EXDEV`, `EINVAL` …): the caller copies instead.
#[cfg(target_os = "linux")]
fn reflink(src: &std::fs::File, dst: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: FICLONE takes the source descriptor as its argument; both descriptors are
    // open files owned by the caller for the duration of the call; no memory is shared.
    unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn reflink(_src: &std::fs::File, _dst: &std::fs::File) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn world() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let release = t.path().join("releases/r2");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::create_dir_all(outside.join("cache")).unwrap();
        std::fs::write(outside.join("cache/keep"), "outside bytes").unwrap();
        (t, release, outside)
    }

    #[test]
    fn a_symlink_out_of_the_root_is_refused_by_name_and_nothing_outside_is_touched() {
        let (_t, release, outside) = world();
        symlink(&outside, release.join(".next")).unwrap();
        let dir = Dir::open(&release, "the release").unwrap();
        let rel = Path::new(".next/cache");
        let want = format!(
            ".next is a symlink (to {}) out of the release; refusing",
            outside.display()
        );
        assert_eq!(dir.remove_tree(rel).unwrap_err().to_string(), want);
        assert_eq!(dir.check_no_symlinks(rel).unwrap_err().to_string(), want);
        assert_eq!(dir.open_dir(rel).unwrap_err().to_string(), want);
        assert_eq!(dir.create_dir_all(rel).unwrap_err().to_string(), want);
        let src = Dir::open(&outside, "x").unwrap();
        assert_eq!(dir.copy_tree(&src, rel).unwrap_err().to_string(), want);
        let w = dir.write_atomic(Path::new(".next/cache/f"), b"x", 0o600);
        assert_eq!(w.unwrap_err().to_string(), want);
        assert!(dir.read(Path::new(".next/cache/keep")).is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("cache/keep")).unwrap(),
            "outside bytes"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    }

    #[test]
    fn a_relative_link_into_a_sibling_release_is_out_of_the_release() {
        let (t, release, _) = world();
        let live = t.path().join("releases/r1/.next/cache");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(live.join("bytes"), "live").unwrap();
        symlink("../r1/.next", release.join(".next")).unwrap();
        let dir = Dir::open(&release, "the release").unwrap();
        let e = dir.remove_tree(Path::new(".next/cache")).unwrap_err();
        assert_eq!(
            e.to_string(),
            ".next is a symlink (to ../r1/.next) out of the release; refusing"
        );
        assert!(e.is_refusal());
        assert_eq!(std::fs::read_to_string(live.join("bytes")).unwrap(), "live");
    }

    #[test]
    fn dot_dot_and_absolute_paths_are_refused() {
        let (_t, release, _) = world();
        let dir = Dir::open(&release, "the release").unwrap();
        for rel in ["../outside", "a/../../outside", "/etc"] {
            let e = dir.open_dir(Path::new(rel)).unwrap_err();
            assert!(matches!(e, ConfinedError::Escapes { .. }), "{rel}: {e}");
            assert!(e.to_string().contains("leaves the release"), "{e}");
            assert!(dir.remove_tree(Path::new(rel)).is_err());
        }
    }

    #[test]
    fn a_symlink_inside_is_kept_as_a_link_when_copied_and_removed_as_a_link() {
        let (t, release, outside) = world();
        let nm = release.join("node_modules");
        std::fs::create_dir_all(nm.join("pkg")).unwrap();
        std::fs::write(nm.join("pkg/cli.js"), "x").unwrap();
        std::fs::create_dir_all(nm.join(".bin")).unwrap();
        symlink("../pkg/cli.js", nm.join(".bin/pkg")).unwrap();
        // A link inside the tree that points out is copied as a link, not followed.
        symlink(&outside, nm.join("escape")).unwrap();
        let from = Dir::open(&release, "the release").unwrap();
        let src = from.open_dir(Path::new("node_modules")).unwrap();
        let other = t.path().join("releases/r3");
        std::fs::create_dir_all(&other).unwrap();
        let to = Dir::open(&other, "the release").unwrap();
        let stats = to.copy_tree(&src, Path::new("node_modules")).unwrap();
        assert_eq!((stats.files, stats.symlinks), (1, 2));
        assert_eq!(
            std::fs::read_link(other.join("node_modules/.bin/pkg")).unwrap(),
            Path::new("../pkg/cli.js")
        );
        assert_eq!(
            std::fs::read_to_string(other.join("node_modules/.bin/pkg")).unwrap(),
            "x"
        );
        assert!(
            std::fs::symlink_metadata(other.join("node_modules/escape"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(to.remove_tree(Path::new("node_modules")).unwrap());
        assert!(!other.join("node_modules").exists());
        assert!(!to.remove_tree(Path::new("node_modules")).unwrap());
        assert_eq!(
            std::fs::read_to_string(outside.join("cache/keep")).unwrap(),
            "outside bytes",
            "removing the tree followed a link out of it"
        );
    }

    #[test]
    fn a_symlink_at_the_written_name_or_its_temporary_name_is_replaced_never_written_through() {
        let (_t, release, outside) = world();
        let target = outside.join("cache/keep");
        symlink(&target, release.join("state.json")).unwrap();
        let tmp = release.join(format!(".state.json.{}.tmp", std::process::id()));
        symlink(&target, &tmp).unwrap();
        let dir = Dir::open(&release, "the state directory").unwrap();
        dir.write_atomic(Path::new("state.json"), b"{}", 0o600)
            .unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "outside bytes");
        let meta = std::fs::symlink_metadata(release.join("state.json")).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(std::fs::read(release.join("state.json")).unwrap(), b"{}");
        assert!(!tmp.exists());
    }

    #[test]
    fn paths_inside_are_opened_created_and_read() {
        let (_t, release, _) = world();
        let dir = Dir::open(&release, "the release").unwrap();
        assert!(!dir.is_dir(Path::new("a/b")));
        dir.create_dir_all(Path::new("a/b")).unwrap();
        assert!(dir.is_dir(Path::new("a/b")));
        dir.write_atomic(Path::new("a/b/f"), b"hi", 0o644).unwrap();
        assert_eq!(dir.read(Path::new("./a/b/f")).unwrap(), b"hi");
        assert!(dir.check_no_symlinks(Path::new("a/b/missing/x")).is_ok());
        assert!(dir.open_dir_if_exists(Path::new("nope")).unwrap().is_none());
        let e = dir.open_dir(Path::new("a/b/f")).unwrap_err();
        assert!(matches!(e, ConfinedError::NotDirectory { .. }), "{e}");
    }
}

//! The server-side env file named by `spec.envFile` (`KEY=VALUE` lines, `#` comments,
//! optional `export ` and quotes), and the redactor that keeps its values out of logs,
//! plans, status and command output tails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why the env file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    /// It could not be read.
    #[error("env file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It is not a regular file (a device, a FIFO, a directory …).
    #[error("env file {path}: not a regular file ({kind})")]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// It is larger than [`MAX_ENV_FILE_BYTES`].
    #[error("env file {path}: {size}; the limit is 1 MiB")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, for people (`3.0 MiB`).
        size: String,
    },
    /// A line is not `KEY=VALUE`.
    #[error("env file {path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong (never the value).
        message: String,
    },
}

/// The largest env file read, in bytes (1 MiB: an env file holds a few dozen lines).
pub const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// What a file that is not a regular file is, for messages.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Variables from an env file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    /// The variables.
    pub vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print values.
        f.debug_struct("EnvFile")
            .field("keys", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EnvFile {
    /// Read and parse `path`: a regular file (a symlink to one is followed) of at most
    /// [`MAX_ENV_FILE_BYTES`]. Anything else is refused before it is opened (a FIFO would
    /// block, `/dev/zero` never ends), and nothing past the limit is read.
    ///
    /// # Errors
    /// [`EnvFileError`] when it is not a regular file, is too large, cannot be read or a
    /// line is malformed.
    pub fn read(path: &Path) -> Result<EnvFile, EnvFileError> {
        use std::io::Read;
        let read_error = |source| EnvFileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let too_large = |size: u64| EnvFileError::TooLarge {
            path: path.to_path_buf(),
            size: format!("{:.1} MiB", size as f64 / (1024.0 * 1024.0)),
        };
        let meta = std::fs::metadata(path).map_err(read_error)?;
        if !meta.is_file() {
            return Err(EnvFileError::NotAFile {
                path: path.to_path_buf(),
                kind: file_kind(&meta.file_type()),
            });
        }
        if meta.len() > MAX_ENV_FILE_BYTES {
            return Err(too_large(meta.len()));
        }
        // It may have grown since: never read more than the limit.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_ENV_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        EnvFile::parse(&text, path)
    }

    /// Parse env-file text (`path` is only used in errors).
    ///
    /// # Errors
    /// [`EnvFileError::Syntax`] naming the line.
    pub fn parse(text: &str, path: &Path) -> Result<EnvFile, EnvFileError> {
        let mut vars = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let err = |message: &str| EnvFileError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                message: message.to_string(),
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err("expected KEY=VALUE"))?;
            let key = key.trim();
            if !shipshape_spec::validate::is_env_name(key) {
                return Err(err("invalid variable name"));
            }
            let value = value.trim();
            let value = if value.len() >= 2
                && ((value.starts_with('"') && value.ends_with('"'))
                    || (value.starts_with('\'') && value.ends_with('\'')))
            {
                &value[1..value.len() - 1]
            } else {
                value
            };
            vars.insert(key.to_string(), value.to_string());
        }
        Ok(EnvFile { vars })
    }

    /// A hash of the contents, so a changed secret can be noticed without storing it.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.vars {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..12])
    }

    /// A redactor for these values.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.vars.values().cloned())
    }
}

/// Replaces secret values in text with `***`.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor for `values`; values shorter than 4 characters are ignored (too common to mask).
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = values.into_iter().filter(|v| v.len() >= 4).collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The length of the longest secret (0 when none): how much of a stream must be held
    /// back so that a secret split across two reads is still masked.
    pub fn longest(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_exports_and_quotes() {
        let text = "# secrets\nexport DATABASE_URL=\"postgres://u:pw@h/db\"\nTOKEN='abc def'\n\nPLAIN=x=y\n";
        let env = EnvFile::parse(text, Path::new("/etc/app/env")).unwrap();
        assert_eq!(env.vars["DATABASE_URL"], "postgres://u:pw@h/db");
        assert_eq!(env.vars["TOKEN"], "abc def");
        assert_eq!(env.vars["PLAIN"], "x=y");
        assert!(
            !format!("{env:?}").contains("pw@"),
            "Debug must not show values"
        );
    }

    #[test]
    fn a_bad_line_is_named_without_its_value() {
        let err = EnvFile::parse(
            "A=1\nthis-is-secret-but-malformed\n",
            Path::new("/etc/app/env"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert_eq!(msg, "env file /etc/app/env:2: expected KEY=VALUE");
    }

    #[test]
    fn redaction_masks_every_occurrence_longest_first() {
        let r = Redactor::new([
            "s3cr3t".to_string(),
            "s3cr3t-and-more".to_string(),
            "ab".to_string(),
        ]);
        assert_eq!(r.redact("x s3cr3t-and-more y s3cr3t ab"), "x *** y *** ab");
    }

    #[test]
    fn a_special_file_is_refused_without_reading_it() {
        // /dev/zero never ends: reading it whole took all memory. A FIFO blocks its reader.
        let err = EnvFile::read(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "env file /dev/zero: not a regular file (a character device)"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("env");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = EnvFile::read(&fifo).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("env file {}: not a regular file (a FIFO)", fifo.display())
        );
        let err = EnvFile::read(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("not a regular file (a directory)"),
            "{err}"
        );
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(&path, format!("A={}\n", "x".repeat(3 << 20))).unwrap();
        let err = EnvFile::read(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("env file {}: 3.0 MiB; the limit is 1 MiB", path.display())
        );
        // At the limit it is read.
        std::fs::write(&path, format!("A={}\n", "x".repeat((1 << 20) - 3))).unwrap();
        assert_eq!(EnvFile::read(&path).unwrap().vars["A"].len(), (1 << 20) - 3);
    }
}

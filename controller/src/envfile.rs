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
    /// Read and parse `path`.
    ///
    /// # Errors
    /// [`EnvFileError`] when it cannot be read or a line is malformed.
    pub fn read(path: &Path) -> Result<EnvFile, EnvFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
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
}

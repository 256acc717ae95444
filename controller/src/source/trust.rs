//! Trusted config commits: when the controller is given an allowed-signers file (ssh) or a
//! keyring (gpg), only commits signed by one of those keys are applied. Verification uses
//! the real tools, `ssh-keygen -Y verify` and `gpg --verify`, on the commit's signature and
//! signed payload as git2 extracts them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exec::{self, Spec};
use crate::source::ConfigRepo;

/// Which signatures to trust.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// An OpenSSH allowed-signers file (`git config gpg.ssh.allowedSignersFile` format).
    pub allowed_signers: Option<PathBuf>,
    /// A GnuPG keyring holding the trusted public keys.
    pub gpg_keyring: Option<PathBuf>,
}

/// Time limit for one verification command.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(20);

impl Trust {
    /// True when signatures are required.
    pub fn required(&self) -> bool {
        self.allowed_signers.is_some() || self.gpg_keyring.is_some()
    }

    /// Who signed `commit`, if a trusted key did.
    ///
    /// # Errors
    /// [`Untrusted`]: why the commit is not trusted (unsigned, unknown key, bad signature …).
    pub async fn verify(&self, repo: &ConfigRepo, commit: &str) -> Result<String, Untrusted> {
        let r = repo.clone();
        let c = commit.to_string();
        let signature = tokio::task::spawn_blocking(move || r.signature(&c))
            .await
            .map_err(|e| Untrusted::Unreadable(e.to_string()))?
            .map_err(|e| Untrusted::Unreadable(e.to_string()))?;
        let Some((sig, payload)) = signature else {
            return Err(Untrusted::Unsigned);
        };
        let signed = Signed::write(&sig, &payload)?;
        if sig.contains("BEGIN SSH SIGNATURE") {
            let Some(allowed) = &self.allowed_signers else {
                return Err(Untrusted::NoAllowedSigners);
            };
            signed.verify_ssh(allowed).await
        } else if sig.contains("BEGIN PGP SIGNATURE") {
            let Some(keyring) = &self.gpg_keyring else {
                return Err(Untrusted::NoKeyring);
            };
            signed.verify_gpg(keyring).await
        } else {
            Err(Untrusted::UnknownKind)
        }
    }
}

/// A commit's signature and signed payload, written to files in a temporary directory for
/// the verifying tools (removed when this is dropped).
struct Signed {
    dir: tempfile::TempDir,
    sig_file: PathBuf,
    data_file: PathBuf,
}

impl Signed {
    /// Write `sig` and `payload` to files.
    ///
    /// # Errors
    /// When the temporary directory or the files cannot be written.
    fn write(sig: &str, payload: &[u8]) -> Result<Signed, Untrusted> {
        let io = |e: std::io::Error| Untrusted::Unreadable(e.to_string());
        let dir = tempfile::tempdir().map_err(io)?;
        let sig_file = dir.path().join("commit.sig");
        let data_file = dir.path().join("commit.payload");
        std::fs::write(&sig_file, sig).map_err(io)?;
        std::fs::write(&data_file, payload).map_err(io)?;
        Ok(Signed {
            dir,
            sig_file,
            data_file,
        })
    }

    /// The principal of `allowed` (an allowed-signers file) whose key made this ssh
    /// signature: `ssh-keygen -Y find-principals` names the candidates, `-Y verify` checks
    /// each.
    ///
    /// # Errors
    /// When no allowed signer's key made it, or it does not verify.
    async fn verify_ssh(&self, allowed: &Path) -> Result<String, Untrusted> {
        let allowed = allowed.display().to_string();
        let sig_path = self.sig_file.display().to_string();
        let find = Spec::program(
            "ssh-keygen",
            &["-Y", "find-principals", "-s", &sig_path, "-f", &allowed],
            self.dir.path(),
            VERIFY_TIMEOUT,
        );
        let principals = match exec::run(&find).await {
            Ok(out) => out.stdout,
            Err(_) => return Err(Untrusted::UnknownSshKey),
        };
        for principal in principals.lines().map(str::trim).filter(|p| !p.is_empty()) {
            // ssh-keygen reads the signed data from standard input.
            let script = "exec ssh-keygen -Y verify -f \"$ALLOWED\" -I \"$PRINCIPAL\" -n git -s \"$SIG\" < \"$DATA\"";
            let verify = Spec::shell(script, self.dir.path(), VERIFY_TIMEOUT).envs([
                ("ALLOWED", allowed.clone()),
                ("PRINCIPAL", principal.to_string()),
                ("SIG", sig_path.clone()),
                ("DATA", self.data_file.display().to_string()),
            ]);
            if exec::run(&verify).await.is_ok() {
                return Ok(principal.to_string());
            }
        }
        Err(Untrusted::BadSshSignature)
    }

    /// Who made this gpg signature, when it verifies against `keyring` (read with an empty
    /// home of its own, no default keyring): `gpg --verify`'s `GOODSIG` user.
    ///
    /// # Errors
    /// When it does not verify (no `VALIDSIG`), or the gpg home cannot be made.
    async fn verify_gpg(&self, keyring: &Path) -> Result<String, Untrusted> {
        let home = self.dir.path().join("gnupg");
        std::fs::create_dir_all(&home).map_err(|e| Untrusted::Unreadable(e.to_string()))?;
        let keyring = keyring.display().to_string();
        let sig_path = self.sig_file.display().to_string();
        let data_path = self.data_file.display().to_string();
        let args = [
            "--batch",
            "--homedir",
            home.to_str().unwrap_or("."),
            "--no-default-keyring",
            "--keyring",
            &keyring,
            "--status-fd",
            "1",
            "--verify",
            &sig_path,
            &data_path,
        ];
        match exec::run(&Spec::program(
            "gpg",
            &args,
            self.dir.path(),
            VERIFY_TIMEOUT,
        ))
        .await
        {
            Ok(out) if out.stdout.contains("[GNUPG:] VALIDSIG") => {
                let who = out
                    .stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("[GNUPG:] GOODSIG "))
                    .unwrap_or("a trusted gpg key");
                Ok(who.to_string())
            }
            _ => Err(Untrusted::BadGpgSignature),
        }
    }
}

/// Why a config commit is not trusted: recorded (as its text) in the source status's
/// `refused`, and shown by `shipshape status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// Its signature (or the repo) could not be read, or checking it could not start.
    #[error("{0}")]
    Unreadable(String),
    /// It carries no signature.
    #[error("the commit is not signed")]
    Unsigned,
    /// An ssh signature, and no allowed-signers file.
    #[error("signed with ssh, but no allowed-signers file is configured")]
    NoAllowedSigners,
    /// An ssh key the allowed-signers file does not list.
    #[error("signed by a key that is not in the allowed-signers file")]
    UnknownSshKey,
    /// An ssh signature that does not verify.
    #[error("the ssh signature does not verify against the allowed signers")]
    BadSshSignature,
    /// A gpg signature, and no keyring.
    #[error("signed with gpg, but no keyring is configured")]
    NoKeyring,
    /// A gpg signature that does not verify against the keyring.
    #[error("the gpg signature does not verify against the keyring")]
    BadGpgSignature,
    /// Neither ssh nor gpg.
    #[error("the commit carries a signature of an unknown kind")]
    UnknownKind,
    /// Trusted, but not a descendant of the last applied trusted commit (`last`, short).
    #[error(
        "it does not descend from the last applied trusted commit {0} (the branch was rewound or force-pushed); `shipshape retry --allow-rewind` applies it"
    )]
    Rewound(String),
    /// Refused before, for this reason (as recorded).
    #[error("{0}")]
    Refused(String),
}

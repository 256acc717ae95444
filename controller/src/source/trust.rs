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
    /// Why the commit is not trusted (unsigned, unknown key, bad signature …).
    pub async fn verify(&self, repo: &ConfigRepo, commit: &str) -> Result<String, String> {
        let r = repo.clone();
        let c = commit.to_string();
        let signature = tokio::task::spawn_blocking(move || r.signature(&c))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let Some((sig, payload)) = signature else {
            return Err("the commit is not signed".into());
        };
        let signed = Signed::write(&sig, &payload)?;
        if sig.contains("BEGIN SSH SIGNATURE") {
            let Some(allowed) = &self.allowed_signers else {
                return Err("signed with ssh, but no allowed-signers file is configured".into());
            };
            signed.verify_ssh(allowed).await
        } else if sig.contains("BEGIN PGP SIGNATURE") {
            let Some(keyring) = &self.gpg_keyring else {
                return Err("signed with gpg, but no keyring is configured".into());
            };
            signed.verify_gpg(keyring).await
        } else {
            Err("the commit carries a signature of an unknown kind".into())
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
    fn write(sig: &str, payload: &[u8]) -> Result<Signed, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let sig_file = dir.path().join("commit.sig");
        let data_file = dir.path().join("commit.payload");
        std::fs::write(&sig_file, sig).map_err(|e| e.to_string())?;
        std::fs::write(&data_file, payload).map_err(|e| e.to_string())?;
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
    async fn verify_ssh(&self, allowed: &Path) -> Result<String, String> {
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
            Err(_) => {
                return Err("signed by a key that is not in the allowed-signers file".into());
            }
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
        Err("the ssh signature does not verify against the allowed signers".into())
    }

    /// Who made this gpg signature, when it verifies against `keyring` (read with an empty
    /// home of its own, no default keyring): `gpg --verify`'s `GOODSIG` user.
    ///
    /// # Errors
    /// When it does not verify (no `VALIDSIG`), or the gpg home cannot be made.
    async fn verify_gpg(&self, keyring: &Path) -> Result<String, String> {
        let home = self.dir.path().join("gnupg");
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
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
            _ => Err("the gpg signature does not verify against the keyring".into()),
        }
    }
}

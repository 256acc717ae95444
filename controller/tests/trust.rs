//! Signed mode against an attacker with push access but no trusted key: a force-push back
//! to an older signed commit is refused until a person allows the rewind, and unsigned
//! pushes never cancel (supersede) a trusted rollout being verified.
//! Real git with ssh signatures (ssh-keygen), real pm2 and the example app, the daemon.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{AppEdit, World, git, wait_for};
use shipshape_spec::status::{Outcome, Phase};

/// A trusted ssh key and the allowed-signers file naming it.
struct Signer {
    key: PathBuf,
    allowed: PathBuf,
}

impl Signer {
    fn new(w: &World) -> Signer {
        let keys = w.root().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let key = keys.join("id_ed25519");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()])
            .output()
            .expect("ssh-keygen (openssh-client) is needed");
        assert!(out.status.success());
        let pubkey = std::fs::read_to_string(keys.join("id_ed25519.pub")).unwrap();
        let allowed = keys.join("allowed_signers");
        std::fs::write(&allowed, format!("release@shipshape.invalid {pubkey}")).unwrap();
        Signer { key, allowed }
    }

    /// Write the app's document and commit it signed; returns the config commit.
    fn commit(&self, w: &World, text: &str) -> String {
        std::fs::write(w.config_repo().join(format!("apps/{}.yaml", w.name)), text).unwrap();
        git(&w.config_repo(), &["add", "-A"]);
        let signing_key = format!("user.signingkey={}", self.key.display());
        git(
            &w.config_repo(),
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &signing_key,
                "commit",
                "-S",
                "-qm",
                "signed",
            ],
        );
        git(&w.config_repo(), &["rev-parse", "HEAD"])
    }
}

fn greet(w: &World, commit: &str, greeting: &str) -> String {
    let mut app = w.app(commit);
    app.env("GREETING", greeting);
    shipshape_spec::load::to_yaml(&app)
}

#[test]
fn a_force_push_back_to_an_older_signed_commit_is_refused_until_the_rewind_is_allowed() {
    let w = World::new("rewind");
    let s = Signer::new(&w);
    let v1 = w.app_head();
    let c1 = s.commit(&w, &greet(&w, &v1, "one"));
    let d = w.start(&["--allowed-signers", s.allowed.to_str().unwrap()]);
    w.wait_record("c1 applied", 60, &d, |r| r.phase == Phase::Ready);
    let c2 = s.commit(&w, &greet(&w, &v1, "two"));
    w.wait_record("c2 applied", 60, &d, |r| {
        r.phase == Phase::Ready && r.live().is_some_and(|l| l.revision.config_commit == c2)
    });
    assert_eq!(w.get("/").as_deref(), Some("two from 1.0.0"));

    // The attacker rewinds the branch to c1: signed, but a downgrade.
    git(&w.config_repo(), &["reset", "-q", "--hard", &c1]);
    let src = wait_for("the rewind refused", Duration::from_secs(30), || {
        let src = w.store().load_source();
        src.refused
            .as_ref()
            .is_some_and(|r| r.commit == c1)
            .then_some(src)
    });
    let reason = &src.refused.as_ref().unwrap().reason;
    assert!(
        reason.contains("does not descend from the last applied trusted commit"),
        "{reason}"
    );
    assert!(reason.contains("--allow-rewind"), "{reason}");
    assert_eq!(src.last_trusted.as_deref(), Some(c2.as_str()));
    let status = String::from_utf8_lossy(&w.shipshape(&["status"], &[]).stdout).into_owned();
    assert!(status.contains("REFUSED"), "{status}");
    assert_eq!(w.get("/").as_deref(), Some("two from 1.0.0"), "still on c2");
    let rec = w.record();
    assert!(rec.live().is_some_and(|l| l.revision.config_commit == c2));

    // A person allows it: applied once.
    let out = w.shipshape(&["retry", "--allow-rewind"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("c1 applied again", Duration::from_secs(60), || {
        (w.get("/").as_deref() == Some("one from 1.0.0")).then_some(())
    });
    let src = w.store().load_source();
    assert_eq!(src.last_trusted.as_deref(), Some(c1.as_str()));
    assert!(src.allow_rewind.is_none(), "the permission is used up");
    assert!(
        d.log_tail(400)
            .contains("applying a rewind of the config branch")
    );
}

#[test]
fn unsigned_pushes_never_cancel_a_trusted_rollout_which_then_fails_and_is_reverted() {
    let w = World::new("nostall");
    let s = Signer::new(&w);
    let v1 = w.app_head();
    s.commit(&w, &greet(&w, &v1, "hello"));
    let d = w.start(&["--allowed-signers", s.allowed.to_str().unwrap()]);
    w.wait_record("v1 healthy", 60, &d, |r| {
        r.phase == Phase::Ready && r.live_revision == Some(1)
    });

    // A trusted but broken v2 (health answers 500) …
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let broken = server.replacen("res.writeHead(ok ? 200 : 503", "res.writeHead(500", 1);
    assert_ne!(broken, server);
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(&[("server.js", &broken)], "v2 answers 500");
    s.commit(&w, &greet(&w, &v2, "hello"));
    // Only tips are verified: wait until the controller took the signed v2 as its tip.
    w.wait_record("the trusted rollout of v2 started", 60, &d, |r| {
        r.revision(2).is_some()
    });
    // … then unsigned commits keep landing on top, several a second, while it verifies.
    let stop = AtomicBool::new(false);
    let (rec, pushed) = std::thread::scope(|scope| {
        let pusher = scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 300 {
                n += 1;
                w.commit_config(&greet(&w, &v2, &format!("unsigned{n}")));
                std::thread::sleep(Duration::from_millis(150));
            }
            n
        });
        let rec = w.wait_record("revision 2 reverted", 90, &d, |r| {
            matches!(
                r.revision(2).map(|e| e.revision.outcome),
                Some(Outcome::Reverted | Outcome::Superseded)
            ) || r.phase == Phase::Degraded
        });
        stop.store(true, Ordering::SeqCst);
        (rec, pusher.join().expect("the pusher"))
    });
    assert!(
        pushed >= 3,
        "only {pushed} unsigned commits landed during the rollout"
    );
    let r2 = &rec.revision(2).unwrap().revision;
    assert_eq!(r2.outcome, Outcome::Reverted, "{r2:?}");
    assert!(!r2.message.contains("superseded"), "{}", r2.message);
    assert_eq!(rec.live_revision, Some(1));
    assert!(
        w.store().load_source().refused.is_some(),
        "the unsigned tips are refused"
    );
}

#[test]
fn gpg_signed_config_commits_are_applied_and_unsigned_ones_refused_with_a_gpg_keyring() {
    let w = World::new("gpgsigned");
    // A throwaway gpg key in its own home; its public key exported as the keyring.
    let home = w.root().join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let out = std::process::Command::new("gpg")
            .arg("--homedir")
            .arg(&home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg is needed (Debian's gnupg)");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    gpg(&[
        "--quick-gen-key",
        "Release Manager <release@shipshape.invalid>",
        "ed25519",
        "sign",
        "never",
    ]);
    let keyring = w.root().join("trusted.gpg");
    gpg(&[
        "--output",
        keyring.to_str().unwrap(),
        "--export",
        "release@shipshape.invalid",
    ]);
    let signed = |text: &str| {
        std::fs::write(w.config_repo().join(format!("apps/{}.yaml", w.name)), text).unwrap();
        git(&w.config_repo(), &["add", "-A"]);
        let out = std::process::Command::new("git")
            .current_dir(w.config_repo())
            .env("GNUPGHOME", &home)
            .args([
                "-c",
                "user.signingkey=release@shipshape.invalid",
                "commit",
                "-S",
                "-qm",
                "gpg signed",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        git(&w.config_repo(), &["rev-parse", "HEAD"])
    };
    let run = || {
        let out = w.shipshape(
            &["run", "--once", "--gpg-keyring", keyring.to_str().unwrap()],
            &[],
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let v1 = w.app_head();
    let c1 = signed(&greet(&w, &v1, "signed"));
    let (code, log) = run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        w.store().load_source().last_trusted.as_deref(),
        Some(c1.as_str())
    );
    assert_eq!(w.get("/").as_deref(), Some("signed from 1.0.0"));
    // An unsigned commit on top is refused; the server stays on the signed one.
    let c2 = w.commit_config(&greet(&w, &v1, "unsigned"));
    let (_, log) = run();
    assert!(log.contains("not signed"), "{log}");
    let src = w.store().load_source();
    assert_eq!(
        src.refused.as_ref().map(|r| r.commit.as_str()),
        Some(c2.as_str())
    );
    assert_eq!(w.get("/").as_deref(), Some("signed from 1.0.0"));
}

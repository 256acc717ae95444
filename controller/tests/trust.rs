//! Signed mode against an attacker with push access but no trusted key: a force-push back
//! to an older signed commit is refused until a person allows the rewind, and unsigned
//! pushes never cancel (supersede) a trusted rollout being verified.
//! Real git with ssh signatures (ssh-keygen), real pm2 and the example app, the daemon.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{World, git, wait_for};
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
    let doc = w.document(commit);
    assert!(doc.contains("        PORT:"));
    doc.replacen(
        "        PORT:",
        &format!("        GREETING: {greeting}\n        PORT:"),
        1,
    )
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
    // Only the tip is verified: an unsigned commit landing before the controller read the
    // signed one would leave it never trusted (the server stays on v1, by design). So the
    // unsigned pushes start once the trusted rollout has begun.
    w.wait_record("the trusted v2 rollout begun", 60, &d, |r| {
        r.revision(2).is_some()
    });
    // … while unsigned commits keep landing on top, several a second.
    let stop = AtomicBool::new(false);
    let rec = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 300 {
                n += 1;
                w.commit_config(&greet(&w, &v2, &format!("unsigned{n}")));
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        let rec = w.wait_record("revision 2 reverted", 90, &d, |r| {
            matches!(
                r.revision(2).map(|e| e.revision.outcome),
                Some(Outcome::Reverted | Outcome::Superseded)
            ) || r.phase == Phase::Degraded
        });
        stop.store(true, Ordering::SeqCst);
        rec
    });
    let r2 = &rec.revision(2).unwrap().revision;
    assert_eq!(r2.outcome, Outcome::Reverted, "{r2:?}");
    assert!(!r2.message.contains("superseded"), "{}", r2.message);
    assert_eq!(rec.live_revision, Some(1));
    assert!(
        w.store().load_source().refused.is_some(),
        "the unsigned tips are refused"
    );
}

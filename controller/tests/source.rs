//! Change detection and trusted sources: a local commit starts a pass within a second, a
//! burst costs fewer passes than commits, a remote repo is polled with back-off while it is
//! gone, webhooks are authenticated, only signed commits are applied when required, a bad
//! document affects only its app, removed documents are reported (or pruned), documents
//! select hosts, and a slow app does not hold up another.

mod common;

use std::time::{Duration, Instant};

use common::{AppEdit, World, free_port, git, wait_for};
use shipshape_spec::status::Phase;

fn greet(w: &World, commit: &str, greeting: &str) -> String {
    common::with_env(&w.document(commit), "GREETING", greeting)
}

#[test]
fn a_commit_to_a_local_config_repo_starts_a_pass_within_a_second() {
    let w = World::new("fast");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    // A long resync interval: only the ref watcher can explain a quick pass.
    let d = w.start(&["--interval", "10m"]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);
    let mut latencies = Vec::new();
    for greeting in ["one", "two", "three"] {
        let committed = chrono::Utc::now();
        let c = w.commit_config(&greet(&w, &v1, greeting));
        let rec = w.wait_record("a pass of the new commit", 30, &d, |r| {
            r.last_pass.as_ref().is_some_and(|p| p.config_commit == c)
        });
        let started = rec.last_pass.unwrap().started_at.datetime();
        latencies.push(started.signed_duration_since(committed).num_milliseconds());
        w.wait_record("ready", 30, &d, |r| {
            r.phase == Phase::Ready && r.last_pass.as_ref().is_some_and(|p| p.config_commit == c)
        });
    }
    eprintln!("commit → pass start latencies (ms): {latencies:?}");
    assert!(latencies.iter().all(|ms| *ms < 1000), "{latencies:?}");
}

#[test]
fn a_burst_of_five_commits_applies_the_newest_in_fewer_passes() {
    let w = World::new("burst");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let d = w.start(&["--interval", "10m"]);
    let before = w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);
    let mut last = String::new();
    for i in 1..=5 {
        last = w.commit_config(&greet(&w, &v1, &format!("burst{i}")));
    }
    let rec = w.wait_record("the newest commit applied", 60, &d, |r| {
        r.phase == Phase::Ready
            && r.last_pass
                .as_ref()
                .is_some_and(|p| p.config_commit == last)
    });
    assert_eq!(w.get("/").as_deref(), Some("burst5 from 1.0.0"));
    let passes = rec.passes - before.passes;
    assert!(passes < 5, "{passes} passes for 5 commits");
}

#[test]
fn a_remote_repo_is_polled_backs_off_while_gone_and_recovers() {
    let w = World::new("remote");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let bare = w.bare_remote();
    let url = format!("file://{}", bare.display());
    let d = w.start(&["--repo", &url, "--poll-interval", "1s"]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);

    // A new commit is picked up by polling.
    let c2 = w.commit_config(&greet(&w, &v1, "polled"));
    w.push();
    w.wait_record("the pushed commit applied", 30, &d, |r| {
        r.phase == Phase::Ready && r.last_pass.as_ref().is_some_and(|p| p.config_commit == c2)
    });

    // The remote goes away: the fetches back off, each wait about twice the one before
    // (from 1 s, ±50 % jitter), as status shows; the server is untouched.
    let gone = w.root().join("remote.git.gone");
    std::fs::rename(&bare, &gone).unwrap();
    let attempts = failed_fetches(&w, 4);
    let waits: Vec<f64> = attempts
        .iter()
        .map(|(tried, next)| (*next - *tried).as_seconds_f64())
        .collect();
    println!("waits announced after failed fetches 1..=4: {waits:.2?} s");
    for (k, wait) in waits.iter().enumerate() {
        // The k-th failure (from 0) waits 2^k s ±50 %, give or take the time to record it.
        let base = f64::from(1u32 << k);
        assert!(
            (0.5 * base - 0.05..=1.5 * base + 0.3).contains(wait),
            "wait {} after failure {}: {wait:.2} s, not within 2^{k} s ±50 % (all: {waits:.2?})",
            k + 1,
            k + 1
        );
    }
    assert!(
        waits[2] > waits[0] && waits[3] > waits[1],
        "the waits did not grow: {waits:.2?}"
    );
    for k in 0..attempts.len() - 1 {
        // The next attempt came no sooner than announced.
        let (_, next) = attempts[k];
        let (tried_after, _) = attempts[k + 1];
        assert!(
            tried_after >= next - chrono::TimeDelta::milliseconds(10),
            "attempt {} at {tried_after} came before its announced time {next}",
            k + 2
        );
    }
    let source = w.store().load_source();
    assert!(
        source.last_error.is_some() && source.next_try_at.is_some(),
        "{source:?}"
    );
    let status = String::from_utf8_lossy(&w.shipshape(&["status"], &[]).stdout).into_owned();
    assert!(status.contains("FETCH FAILING"), "{status}");
    assert_eq!(w.get("/").as_deref(), Some("polled from 1.0.0"));
    assert_eq!(w.record().phase, Phase::Ready);

    // It comes back: fetching recovers, and new commits flow again.
    std::fs::rename(&gone, &bare).unwrap();
    let c3 = w.commit_config(&greet(&w, &v1, "back"));
    w.push();
    w.wait_record("the commit after recovery applied", 120, &d, |r| {
        r.phase == Phase::Ready && r.last_pass.as_ref().is_some_and(|p| p.config_commit == c3)
    });
    let source = w.store().load_source();
    assert_eq!(
        (source.consecutive_failures, source.last_error.as_deref()),
        (0, None)
    );
}

/// Watch the source status until `n` fetches in a row have failed; for each failure (in
/// order) when it was tried and when the next try is due, as status showed them.
fn failed_fetches(
    w: &World,
    n: u32,
) -> Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    let parse = |t: Option<&shipshape_spec::Timestamp>| t.map(|t| t.datetime());
    let mut seen = std::collections::BTreeMap::new();
    // The next try announced last (before the first failure: after the last success).
    let mut announced = parse(w.store().load_source().next_try_at.as_ref());
    let start = Instant::now();
    while !seen.contains_key(&n) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{n} failed fetches in a row within 60 s; saw {seen:?}"
        );
        let s = w.store().load_source();
        // Failure k is recorded first, its next try a moment later: take the pair once a
        // new next try is announced after this failure.
        if let (Some(tried), Some(next)) = (
            parse(s.last_fetch_at.as_ref()),
            parse(s.next_try_at.as_ref()),
        ) && s.consecutive_failures > 0
            && !seen.contains_key(&s.consecutive_failures)
            && Some(next) != announced
            && next > tried
        {
            seen.insert(s.consecutive_failures, (tried, next));
            announced = Some(next);
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let counts: Vec<u32> = seen.keys().copied().collect();
    assert_eq!(
        counts,
        (1..=n).collect::<Vec<_>>(),
        "a failure went unseen (each lasts at least 0.5 s)"
    );
    seen.into_values().collect()
}

#[test]
fn webhooks_fetch_at_once_and_bad_signatures_get_401() {
    use hmac::Mac;
    let w = World::new("hooked");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let bare = w.bare_remote();
    let secret = "s3cret-webhook-key";
    let secret_file = w.root().join("webhook-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let url = format!("file://{}", bare.display());
    let d = w.start(&[
        "--repo",
        &url,
        "--poll-interval",
        "1h",
        "--webhook-secret-file",
        secret_file.to_str().unwrap(),
    ]);
    w.wait_record("v1 healthy", 60, &d, |r| r.phase == Phase::Ready);

    let c2 = w.commit_config(&greet(&w, &v1, "hooked"));
    w.push();
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{c2}"}}"#);
    let sign = |key: &str| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let post = |headers: &[(&str, String)]| {
        use std::io::{Read, Write};
        let addr = d.url.trim_start_matches("http://").to_string();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(s, "POST /hooks/git HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    assert_eq!(post(&[]), 401, "no signature");
    assert_eq!(
        post(&[("X-Hub-Signature-256", sign("wrong-key"))]),
        401,
        "bad signature"
    );
    assert_eq!(
        post(&[("X-Hub-Signature-256", "sha256=zz".into())]),
        401,
        "malformed signature"
    );
    assert_eq!(
        post(&[("X-Gitlab-Token", "wrong".into())]),
        401,
        "bad token"
    );
    let src = w.store().load_source();
    assert!(
        src.last_webhook_at.is_none(),
        "a refused webhook was recorded"
    );
    assert_ne!(
        src.tip.as_deref(),
        Some(c2.as_str()),
        "a refused webhook caused a fetch"
    );

    let sent = Instant::now();
    assert_eq!(post(&[("X-Hub-Signature-256", sign(secret))]), 202);
    w.wait_record("the hooked commit applied", 30, &d, |r| {
        r.phase == Phase::Ready && r.last_pass.as_ref().is_some_and(|p| p.config_commit == c2)
    });
    eprintln!("webhook → applied in {:?}", sent.elapsed());

    let c3 = w.commit_config(&greet(&w, &v1, "gitlab"));
    w.push();
    assert_eq!(post(&[("X-Gitlab-Token", secret.into())]), 202);
    w.wait_record("the GitLab-hooked commit applied", 30, &d, |r| {
        r.phase == Phase::Ready && r.last_pass.as_ref().is_some_and(|p| p.config_commit == c3)
    });
}

#[test]
fn only_signed_config_commits_are_applied_when_signatures_are_required() {
    let w = World::new("signed");
    let keys = w.root().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "release-manager",
            "-f",
            key.to_str().unwrap(),
        ])
        .output()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(out.status.success());
    let pubkey = std::fs::read_to_string(keys.join("id_ed25519.pub")).unwrap();
    let allowed = keys.join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("release@shipshape.invalid namespaces=\"git\" {pubkey}"),
    )
    .unwrap();
    let signed = |text: &str| {
        std::fs::write(w.config_repo().join("apps/signed.yaml"), text).unwrap();
        git(&w.config_repo(), &["add", "-A"]);
        git(
            &w.config_repo(),
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingkey={}", key.display()),
                "commit",
                "-S",
                "-qm",
                "signed change",
            ],
        );
        git(&w.config_repo(), &["rev-parse", "HEAD"])
    };
    let run = || {
        let out = w.shipshape(
            &[
                "run",
                "--once",
                "--allowed-signers",
                allowed.to_str().unwrap(),
            ],
            &[],
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let v1 = w.app_head();
    let c1 = signed(&w.document(&v1));
    let (code, log) = run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        w.store().load_source().last_trusted.as_deref(),
        Some(c1.as_str())
    );

    // An unsigned commit on top is refused; the server stays on the last trusted state.
    let c2 = w.commit_config(&greet(&w, &v1, "unsigned"));
    let (_, log) = run();
    assert!(
        log.contains("untrusted config commit") && log.contains("not signed"),
        "{log}"
    );
    let src = w.store().load_source();
    assert_eq!(
        src.refused.as_ref().map(|r| r.commit.as_str()),
        Some(c2.as_str())
    );
    assert_eq!(w.get("/").as_deref(), Some("hello from 1.0.0"));
    let status = String::from_utf8_lossy(&w.shipshape(&["status"], &[]).stdout).into_owned();
    assert!(
        status.contains("REFUSED") && status.contains("the commit is not signed"),
        "{status}"
    );

    // A commit signed by a key that is not allowed is refused too.
    let other = keys.join("other");
    std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            other.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    std::fs::write(
        w.config_repo().join("apps/signed.yaml"),
        greet(&w, &v1, "stranger"),
    )
    .unwrap();
    git(&w.config_repo(), &["add", "-A"]);
    git(
        &w.config_repo(),
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &format!("user.signingkey={}", other.display()),
            "commit",
            "-S",
            "-qm",
            "stranger",
        ],
    );
    let (_, log) = run();
    assert!(log.contains("not in the allowed-signers file"), "{log}");
    assert_eq!(w.get("/").as_deref(), Some("hello from 1.0.0"));

    // The next trusted commit is applied.
    let c3 = signed(&greet(&w, &v1, "trusted"));
    let (code, log) = run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.get("/").as_deref(), Some("trusted from 1.0.0"));
    assert_eq!(
        w.store().load_source().last_trusted.as_deref(),
        Some(c3.as_str())
    );
}

#[test]
fn a_bad_document_stops_only_its_app_and_the_next_good_commit_recovers() {
    let w = World::new("first");
    let v1 = w.app_head();
    let other_port = free_port();
    w.commit_config_file(
        "other.yaml",
        Some(&w.other_document("second", &v1, other_port)),
    );
    w.commit_config(&w.document(&v1));
    assert_eq!(w.run_once().0, 0);

    // One commit breaks `first` and changes `second`.
    let broken = w.document(&v1).replace("instances: 2", "instances: many");
    std::fs::write(
        w.config_repo().join("apps/other.yaml"),
        common::with_env(
            &w.other_document("second", &v1, other_port),
            "GREETING",
            "still-going",
        ),
    )
    .unwrap();
    w.commit_config(&broken);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Invalid);
    let err = rec.last_error.unwrap();
    assert!(
        err.message.contains("apps/first.yaml:")
            && err.message.contains("spec.processes[0].instances"),
        "{}",
        err.message
    );
    assert_eq!(
        w.get("/version").as_deref(),
        Some("1.0.0"),
        "the broken app keeps running"
    );
    let second = w.store().load("second").unwrap();
    assert_eq!(second.phase, Phase::Ready, "the other app was held up");
    assert_eq!(
        common::get_port(other_port, "/").unwrap_or_default(),
        "still-going from 1.0.0"
    );
    let status =
        String::from_utf8_lossy(&w.shipshape(&["status", "first"], &[]).stdout).into_owned();
    assert!(
        status.contains("first  Invalid  since") && status.contains("InvalidDocument"),
        "{status}"
    );

    // The next good commit recovers without a restart.
    w.commit_config(&greet(&w, &v1, "fixed"));
    assert_eq!(w.run_once().0, 0);
    assert_eq!(w.record().phase, Phase::Ready);
    assert_eq!(w.get("/").as_deref(), Some("fixed from 1.0.0"));
}

#[test]
fn a_removed_document_is_reported_and_only_pruned_when_asked() {
    let w = World::new("removed");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let other_port = free_port();
    w.commit_config_file(
        "keep.yaml",
        Some(&w.other_document("keeper", &v1, other_port)),
    );
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    w.commit_config_file("removed.yaml", None);
    w.run_once();
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Orphaned);
    assert_eq!(
        w.get("/version").as_deref(),
        Some("1.0.0"),
        "removing a document undeployed it"
    );
    let out = w.shipshape(&["run", "--once", "--prune"], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pruned"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.record().phase, Phase::Pruned);
    assert!(
        !w.pm2_jlist_raw().contains("removed-web"),
        "the process survived pruning"
    );
    assert!(
        w.pm2_jlist_raw().contains("keeper-web"),
        "pruning touched another app"
    );
}

#[test]
fn documents_select_hosts_by_name_and_label() {
    let w = World::new("selective");
    let v1 = w.app_head();
    let doc = common::edited(&w.document(&v1), |app| {
        app.hosts(&["web-1", "web-2"], &[("role", "web")]);
    });
    w.commit_config(&doc);
    let out = w.shipshape(
        &["run", "--once", "--hostname", "db-1", "--label", "role=web"],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "no app for this host is not 'ready'"
    );
    assert!(
        w.store().apps().is_empty(),
        "an app not selecting this host was touched"
    );
    let out = w.shipshape(
        &["run", "--once", "--hostname", "web-2", "--label", "role=db"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(w.store().apps().is_empty());
    let out = w.shipshape(
        &[
            "run",
            "--once",
            "--hostname",
            "web-2",
            "--label",
            "role=web",
            "--label",
            "zone=a",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
}

#[test]
fn a_slow_app_does_not_hold_up_another() {
    let w = World::new("slow");
    let v1 = w.app_head();
    let other_port = free_port();
    w.commit_config_file(
        "quick.yaml",
        Some(&w.other_document("quick", &v1, other_port)),
    );
    w.commit_config(&w.document(&v1));
    let d = w.start(&[]);
    w.wait_record("slow v1 healthy", 60, &d, |r| r.phase == Phase::Ready);
    // `slow` gets a revision that never passes, with a long deadline.
    w.commit_config(&common::edited(&w.document(&v1), |app| {
        app.env("HEALTH_FAIL", "1")
            .progress_deadline(Duration::from_secs(300));
    }));
    w.wait_record("slow verifying", 30, &d, |r| r.phase == Phase::Progressing);
    let started = Instant::now();
    let quick_doc = common::with_env(
        &w.other_document("quick", &v1, other_port),
        "GREETING",
        "meanwhile",
    );
    w.commit_config_file("quick.yaml", Some(&quick_doc));
    wait_for(
        "quick to roll out while slow verifies",
        Duration::from_secs(30),
        || {
            (common::get_port(other_port, "/").as_deref() == Some("meanwhile from 1.0.0"))
                .then_some(())
        },
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        w.record().phase,
        Phase::Progressing,
        "slow should still be verifying"
    );
}

//! Hostile and conflicting documents in the config repo: the controller keeps running,
//! reports the one app whose document is bad, and keeps reconciling the others. Real
//! git, real pm2, the example app, the real daemon.

mod common;

use std::time::Duration;

use common::{World, free_port, get_port, wait_for};
use shipshape_spec::status::Phase;

/// The second app's document, greeting with `greeting`.
fn second(w: &World, commit: &str, port: u16, greeting: &str) -> String {
    common::with_env(
        &w.other_document("second", commit, port),
        "GREETING",
        greeting,
    )
}

/// Commit a change to the second app and wait until it serves it and is healthy.
fn second_applies(w: &World, commit: &str, port: u16, greeting: &str) {
    w.commit_config_file("second.yaml", Some(&second(w, commit, port, greeting)));
    let want = format!("{greeting} from 1.0.0");
    wait_for(
        &format!("the second app to serve {want:?}"),
        Duration::from_secs(90),
        || (get_port(port, "/").as_deref() == Some(want.as_str())).then_some(()),
    );
    wait_for(
        "the second app to be healthy",
        Duration::from_secs(60),
        || (w.store().load("second").ok()?.phase == Phase::Ready).then_some(()),
    );
}

#[test]
fn a_hostile_document_is_refused_on_its_app_while_the_daemon_keeps_reconciling_the_others() {
    let w = World::new("first");
    let v1 = w.app_head();
    let port = free_port();
    w.commit_config_file("second.yaml", Some(&second(&w, &v1, port, "hello")));
    w.commit_config(&w.document(&v1));
    let d = w.start(&[]);
    w.wait_record("first healthy", 90, &d, |r| r.phase == Phase::Ready);
    second_applies(&w, &v1, port, "hello");

    // 30,000 levels of block sequence in a label: this aborted the controller.
    let deep = w.document(&v1).replace(
        "metadata:\n  name: first\n",
        &format!(
            "metadata:\n  name: first\n  labels:\n    x:\n      {}a\n",
            "- ".repeat(30_000)
        ),
    );
    w.commit_config(&deep);
    // `labels:` is line 6, `x:` line 7, the sequence line 8 from column 7: the 65th level
    // (the root mapping, metadata and labels are 3) is the 62nd `-`.
    let limit = "apps/first.yaml:8:129: the document nests deeper than 64 levels";
    let rec = w.wait_record("first invalid (too deep)", 30, &d, |r| {
        r.phase == Phase::Invalid
            && r.last_error
                .as_ref()
                .is_some_and(|e| e.message.contains(limit))
    });
    assert_eq!(rec.live_revision, Some(1), "the live revision moved");
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"), "first stopped");
    assert_eq!(d.get("/healthz").0, 200, "the controller is gone");
    second_applies(&w, &v1, port, "after-deep");

    // Over the size limit: refused without being parsed, still on its app.
    let big = format!("{}#{}\n", w.document(&v1), "x".repeat(1 << 20));
    w.commit_config(&big);
    let size = "apps/first.yaml: the document is 1.0 MiB; the limit is 256 KiB";
    w.wait_record("first invalid (too big)", 30, &d, |r| {
        r.phase == Phase::Invalid
            && r.last_error
                .as_ref()
                .is_some_and(|e| e.message.contains(size))
    });
    let status = w.shipshape(&["status", "first"], &[]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("first  Invalid  since") && status.contains(size),
        "{status}"
    );
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"), "first stopped");
    second_applies(&w, &v1, port, "after-big");
    assert_eq!(d.get("/healthz").0, 200, "the controller is gone");
}

#[test]
fn a_second_app_on_the_same_releases_root_is_invalid_and_current_stays_put() {
    let w = World::new("alpha");
    let v1 = w.app_head();
    let v2 = w.commit_app_version("2.0.0");
    let port = free_port();
    let root = w.releases_root().display().to_string();
    // `beta` runs another commit from alpha's root: each pass would move `current`.
    let mut beta: shipshape_spec::App =
        shipshape_spec::load_str(&w.other_document("beta", &v2, port), "beta.yaml").unwrap();
    beta.spec.releases.root = root.clone();
    let beta = shipshape_spec::load::to_yaml(&beta);
    // Where `root:` is in the text, for the located error (line and column, 1-based).
    let (line, column) = beta
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find("root: ").map(|c| (i + 1, c + 1)))
        .expect("releases.root in the document");
    w.commit_config_file("beta.yaml", Some(&beta));
    w.commit_config(&w.document(&v1));
    for pass in 0..2 {
        let (code, log) = w.run_once();
        assert_eq!(code, 1, "pass {pass}: beta must fail the pass:\n{log}");
        let message = format!(
            "apps/beta.yaml:{line}:{column}: spec.releases.root: {root} is also used by app alpha (apps/alpha.yaml)"
        );
        assert!(
            log.contains(&message),
            "pass {pass}: no {message:?} in:\n{log}"
        );
        assert_eq!(w.current().as_deref(), Some(v1.as_str()), "current moved");
        assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
        assert_eq!(w.record().phase, Phase::Ready);
        let beta = w.store().load("beta").unwrap();
        assert_eq!(beta.phase, Phase::Invalid);
        assert!(
            beta.last_error.unwrap().message.contains(&message),
            "beta's record does not say why"
        );
        assert!(!w.pm2_jlist_raw().contains("beta-web"), "beta was deployed");
    }
}

#[test]
fn a_document_that_cannot_name_its_app_never_gets_an_app_pruned() {
    let w = World::new("first");
    let v1 = w.app_head();
    let port = free_port();
    w.commit_config_file("second.yaml", Some(&second(&w, &v1, port, "hello")));
    w.commit_config(&w.document(&v1));
    let d = w.start(&["--prune"]);
    w.wait_record("first healthy", 90, &d, |r| r.phase == Phase::Ready);
    second_applies(&w, &v1, port, "hello");

    // The first app's document breaks before its name can be read.
    w.commit_config("{ this is [ not yaml\n");
    wait_for(
        "a few passes over the broken document",
        Duration::from_secs(30),
        || {
            d.log_tail(200)
                .contains("a document does not name its app; no app is reported removed or pruned")
                .then_some(())
        },
    );
    let rec = w.record();
    assert!(
        !matches!(rec.phase, Phase::Pruned | Phase::Orphaned),
        "{:?}",
        rec.phase
    );
    assert_eq!(
        w.get("/version").as_deref(),
        Some("1.0.0"),
        "first was pruned"
    );
    // The other app is still reconciled.
    second_applies(&w, &v1, port, "still");
}

//! A symlink committed to the app repo never makes the controller remove or write outside
//! the release: with `build.cache: [.next/cache]`, a committed `.next -> /some/dir` or
//! `.next -> ../<live release>/.next` fails the build naming the link, the directory it
//! points at is untouched, and the live release (its cache bytes included) stays as it was;
//! a first release with such a link fails the same way, before its build runs, though it
//! has no cache to carry.
//!
//! Real parts: git repos, the controller binary, pm2 and the example app.

mod common;

use std::path::{Path, PathBuf};

use common::{World, git};
use shipshape_spec::status::{Phase, StepKind};

/// A build step that writes `.next/cache/bytes` (what `next build` does with its cache).
const CACHE_BUILD: &str = r#"'use strict';
const fs = require('fs');
fs.mkdirSync('.next/cache', { recursive: true });
fs.writeFileSync('.next/cache/bytes', 'built at ' + process.hrtime.bigint());
"#;

fn commit_cached_document(w: &World, commit: &str) {
    let mut app = w.app(commit);
    app.spec.build.steps.push("node cache-build.js".into());
    app.spec.build.cache = vec![".next/cache".into()];
    w.commit_app(&app);
}

fn release_dir(w: &World, id: &str) -> PathBuf {
    w.releases_root().join("releases").join(id)
}

/// A live release whose build left `.next/cache/bytes`; returns (release id, its bytes).
fn live_with_cache(w: &World) -> (String, String) {
    let v1 = w.commit_app_files(&[("cache-build.js", CACHE_BUILD)], "a cached build");
    commit_cached_document(w, &v1);
    let (code, err) = w.run_once();
    assert_eq!(code, 0, "{err}");
    let r1 = w.current().expect("live release");
    let bytes = std::fs::read_to_string(release_dir(w, &r1).join(".next/cache/bytes")).unwrap();
    (r1, bytes)
}

/// Commit `.next` as a symlink to `target` (forced past any ignore rule); returns the SHA.
fn commit_next_link(w: &World, target: &Path) -> String {
    let repo = w.app_repo();
    std::os::unix::fs::symlink(target, repo.join(".next")).unwrap();
    git(&repo, &["add", "-f", ".next"]);
    git(&repo, &["commit", "-qm", "commit .next as a symlink"]);
    w.app_head()
}

/// Commit `.next -> target` with the cached document, and run one pass.
fn pass_with_next_link(w: &World, target: &Path) {
    let v = commit_next_link(w, target);
    commit_cached_document(w, &v);
    let _ = w.run_once();
}

/// The pass failed at the build, naming the link, and the live release stayed live.
fn assert_refused(w: &World, live: &str, want: &str) {
    let rec = w.record();
    let err = rec.last_error.as_ref().expect("a last error");
    assert_eq!(err.step, StepKind::Build, "{err:?}");
    assert!(err.message.contains(want), "{}", err.message);
    assert_eq!(rec.phase, Phase::Failed, "{:?}", rec.last_pass);
    assert_eq!(
        w.current().as_deref(),
        Some(live),
        "the live release changed"
    );
    assert!(
        w.get("/version").is_some(),
        "the live app stopped answering"
    );
}

#[test]
fn a_committed_next_symlink_out_of_the_release_fails_the_build_naming_it_and_touches_nothing_outside()
 {
    let w = World::new("confined-out");
    let (r1, live_bytes) = live_with_cache(&w);
    let outside = w.root().join("outside");
    std::fs::create_dir_all(outside.join("cache")).unwrap();
    std::fs::write(outside.join("cache/keep"), "not the controller's").unwrap();

    pass_with_next_link(&w, &outside);
    assert_refused(
        &w,
        &r1,
        &format!(
            "build.cache .next/cache: .next is a symlink (to {}) out of the release; refusing",
            outside.display()
        ),
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("cache/keep")).unwrap(),
        "not the controller's",
        "the directory the link points at was changed"
    );
    let entries: Vec<_> = std::fs::read_dir(outside.join("cache")).unwrap().collect();
    assert_eq!(
        entries.len(),
        1,
        "something was written outside the release"
    );
    assert_eq!(
        std::fs::read_to_string(release_dir(&w, &r1).join(".next/cache/bytes")).unwrap(),
        live_bytes
    );
}

#[test]
fn a_committed_next_symlink_into_the_live_release_leaves_its_cache_bytes_unchanged() {
    let w = World::new("confined-live");
    let (r1, live_bytes) = live_with_cache(&w);
    let target = PathBuf::from(format!("../{r1}/.next"));

    pass_with_next_link(&w, &target);
    assert_refused(
        &w,
        &r1,
        &format!(
            "build.cache .next/cache: .next is a symlink (to ../{r1}/.next) out of the release; refusing"
        ),
    );
    assert_eq!(
        std::fs::read_to_string(release_dir(&w, &r1).join(".next/cache/bytes")).unwrap(),
        live_bytes,
        "the live release's cache was written through the link"
    );
}

#[test]
fn a_first_release_with_a_committed_next_symlink_fails_before_its_build_though_no_cache_is_carried()
{
    let w = World::new("confined-first");
    let outside = w.root().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    w.commit_app_files(&[("cache-build.js", CACHE_BUILD)], "a cached build");
    // No release has a cache to carry: the check before every build is what refuses it.
    pass_with_next_link(&w, &outside);
    let rec = w.record();
    let err = rec.last_error.as_ref().expect("a last error");
    assert_eq!(err.step, StepKind::Build, "{err:?}");
    let want = format!(
        "build.cache .next/cache: .next is a symlink (to {}) out of the release; refusing",
        outside.display()
    );
    assert!(err.message.contains(&want), "{}", err.message);
    assert_eq!(rec.phase, Phase::Failed, "{:?}", rec.last_pass);
    assert_eq!(w.current(), None, "the release went live");
    let entries: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(
        entries.is_empty(),
        "the build wrote through the link: {entries:?}"
    );
}

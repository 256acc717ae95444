//! The build cache carried between releases (`build.cache`): a new release built from the
//! same dependencies as the live one starts its build with its own copy of the live
//! release's cache, so the build is incremental; a dependency change builds from scratch;
//! and nothing the new build writes into its copy reaches the old release.
//!
//! The build here is a real one run by the controller (`npm run build`, then a small script
//! that reads and writes its cache directory, as `next build` does with `.next/cache`);
//! the real Next.js build is measured by the benchmark (`hack/bench.sh`).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use common::World;
use shipshape_spec::status::StepKind;

/// A build step that counts its own runs in `.build-cache/runs` (what it found there is
/// what was carried) and records what it found in `dist/cache-seen.txt`.
const CACHE_BUILD: &str = r#"'use strict';
const fs = require('fs');
let runs = 0;
try { runs = Number(fs.readFileSync('.build-cache/runs', 'utf8')); } catch (e) {}
fs.mkdirSync('.build-cache', { recursive: true });
fs.writeFileSync('.build-cache/runs', String(runs + 1));
fs.mkdirSync('dist', { recursive: true });
fs.writeFileSync('dist/cache-seen.txt', String(runs));
console.log(`build cache: ${runs} earlier runs`);
"#;

/// The document for `commit`, with the cache-writing build step and `build.cache`.
fn commit_cached_document(w: &World, commit: &str) {
    let mut app = w.app(commit);
    app.spec.build.steps.push("node cache-build.js".into());
    app.spec.build.cache = vec![".build-cache".into()];
    w.commit_app(&app);
}

fn release_dir(w: &World, id: &str) -> PathBuf {
    w.releases_root().join("releases").join(id)
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_code_only_release_builds_on_its_own_copy_of_the_live_cache_and_a_dependency_change_does_not() {
    let w = World::new("cache");
    let v1 = w.commit_app_files(&[("cache-build.js", CACHE_BUILD)], "a cached build");
    commit_cached_document(&w, &v1);
    let (code, err) = w.run_once();
    assert_eq!(code, 0, "{err}");
    let r1 = w.current().expect("live release");
    assert_eq!(read(release_dir(&w, &r1).join("dist/cache-seen.txt")), "0");
    assert_eq!(read(release_dir(&w, &r1).join(".build-cache/runs")), "1");

    // A code-only change: the new release's build finds the live release's cache.
    let v2 = w.commit_app_version("1.1.0");
    commit_cached_document(&w, &v2);
    let (code, err) = w.run_once();
    assert_eq!(code, 0, "{err}");
    let r2 = w.current().expect("live release");
    assert_ne!(r1, r2);
    let rec = w.record();
    let build = rec
        .last_pass
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .find(|s| s.step == StepKind::Build)
        .expect("a build step");
    assert!(
        build.reason.contains(&format!(
            ".build-cache carried from release {} (same dependencies)",
            &r1[..12]
        )),
        "{}",
        build.reason
    );
    assert_eq!(
        read(release_dir(&w, &r2).join("dist/cache-seen.txt")),
        "1",
        "the new build did not see the carried cache"
    );
    assert_eq!(read(release_dir(&w, &r2).join(".build-cache/runs")), "2");
    // The old release's cache is as its own build left it: the copy shares nothing.
    assert_eq!(
        read(release_dir(&w, &r1).join(".build-cache/runs")),
        "1",
        "the new build wrote into the old release's cache"
    );
    let old = std::fs::metadata(release_dir(&w, &r1).join(".build-cache/runs")).unwrap();
    let new = std::fs::metadata(release_dir(&w, &r2).join(".build-cache/runs")).unwrap();
    assert_ne!(old.ino(), new.ino(), "the cache file is shared");
    assert_eq!(old.nlink(), 1, "the old cache file is hard-linked");

    // A dependency change (a new lockfile): the build starts from an empty cache.
    let v3 = w.add_local_dependency();
    commit_cached_document(&w, &v3);
    let (code, err) = w.run_once();
    assert_eq!(code, 0, "{err}");
    let r3 = w.current().expect("live release");
    assert_ne!(r3, r2);
    assert_eq!(
        read(release_dir(&w, &r3).join("dist/cache-seen.txt")),
        "0",
        "a cache built against other dependencies was carried"
    );
    let rec = w.record();
    let build = rec
        .last_pass
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .find(|s| s.step == StepKind::Build)
        .expect("a build step");
    assert!(
        build.reason.contains("no build cache carried"),
        "{}",
        build.reason
    );
}

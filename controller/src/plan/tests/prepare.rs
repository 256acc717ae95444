//! Preparation: which release a document makes live, build caches carried only between
//! releases of the same dependencies, and the env file (its changes reload; its values
//! never reach the plan).

use super::*;

#[test]
fn a_build_cache_is_carried_only_from_a_release_with_the_same_dependencies_that_has_one() {
    // Live: C1, lockfile A, with a cache. A code-only change to C2 carries it.
    let mut obs = converged(&cached(C1));
    let live = obs.current.clone().unwrap();
    obs.build_caches.insert(live.clone());
    let (from, why) = build_of(&plan(&cached(C2), &obs));
    assert_eq!(from.as_deref(), Some(live.as_str()));
    assert!(
        why.contains(".next/cache carried from release 111111111111 (same dependencies)"),
        "{why}"
    );

    // Not declared: nothing carried, and the reason is the plain one.
    let (from, why) = build_of(&plan(&app(C2), &obs));
    assert_eq!((from, why.as_str()), (None, "new release needs its build"));

    // The live release has no cache on disk: nothing carried, and the reason says so.
    let mut bare = obs.clone();
    bare.build_caches.clear();
    let (from, why) = build_of(&plan(&cached(C2), &bare));
    assert_eq!(from, None);
    assert!(why.contains("no build cache carried"), "{why}");

    // The lockfile changed (a dependency change): built from scratch.
    let mut deps = obs.clone();
    deps.desired_lockfile = Some(LOCK_B.into());
    let p = plan(&cached(C2), &deps);
    assert!(kinds(&p).contains(&"install"), "{:?}", kinds(&p));
    let (from, why) = build_of(&p);
    assert_eq!(from, None);
    assert!(why.contains("no release with these dependencies"), "{why}");

    // No lockfile to compare: built from scratch.
    let mut unknown = obs.clone();
    unknown.desired_lockfile = None;
    assert_eq!(build_of(&plan(&cached(C2), &unknown)).0, None);

    // Live has other dependencies, but another sealed release has these and a cache:
    // carried from that one (it is also where the dependencies are reused from).
    let mut other = obs.clone();
    other.desired_lockfile = Some(LOCK_B.into());
    other
        .releases
        .insert(C3.into(), Some(marker(&cached(C3), LOCK_B)));
    other.node_modules.insert(C3.into());
    other.build_caches.insert(C3.into());
    let p = plan(&cached(C2), &other);
    assert!(kinds(&p).contains(&"reuse-deps"), "{:?}", kinds(&p));
    assert_eq!(build_of(&p).0.as_deref(), Some(C3));
}

#[test]
fn new_build_inputs_for_the_live_commit_get_a_new_directory() {
    let old = app(C1);
    let mut new = old.clone();
    new.spec.build.steps.push("npm test".into());
    let p = plan(&new, &converged(&old));
    assert_ne!(p.release, C1);
    assert!(p.release.starts_with(C1));
    assert_eq!(kinds(&p)[..4], ["fetch", "reuse-deps", "build", "switch"]);
}

#[test]
fn env_file_changes_reload_and_values_never_reach_the_plan() {
    let d = app(C1);
    let mut obs = converged(&d);
    obs.env_file
        .vars
        .insert("DATABASE_URL".into(), "postgres://u:s3cret@db/app".into());
    let p = plan(&d, &obs);
    assert_eq!(kinds(&p), ["pm2-reload", "pm2-save", "verify"]);
    let shown = format!("{p}{}", serde_json::to_string(&p).unwrap());
    assert!(!shown.contains("s3cret"));
}

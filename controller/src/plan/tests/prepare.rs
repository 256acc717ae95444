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

#[test]
fn a_build_step_for_an_npm_script_package_json_lacks_blocks_the_plan_naming_it() {
    let obs = converged(&app(C1));
    let scripts = |names: &[&str]| {
        crate::plan::scripts::PackageScripts::Known(names.iter().map(|n| n.to_string()).collect())
    };
    // C2 is not prepared: its package.json has only `start`.
    let mut missing = obs.clone();
    missing.package_scripts = scripts(&["start"]);
    let mut desired = app(C2);
    desired.spec.hooks.after_switch = vec!["yarn warm-cache".into()];
    let p = plan(&desired, &missing);
    assert_eq!(
        p.blockers,
        [
            "package.json at 222222222222 has no script \"build\" (spec.build.steps[0]: `npm run build`); its scripts: start",
            "package.json at 222222222222 has no script \"warm-cache\" (spec.hooks.afterSwitch[0]: `yarn warm-cache`); its scripts: start",
        ]
    );
    // With the scripts there, nothing blocks.
    let mut there = obs.clone();
    there.package_scripts = scripts(&["build", "start", "warm-cache"]);
    assert_eq!(plan(&desired, &there).blockers, Vec::<String>::new());
    // Not readable (a remote repository plan cannot fetch): a note, no blocker.
    let mut unknown = obs.clone();
    unknown.package_scripts =
        crate::plan::scripts::PackageScripts::NotChecked("not mirrored".into());
    let p = plan(&desired, &unknown);
    assert!(p.blockers.is_empty());
    assert_eq!(
        p.notes,
        ["the npm scripts the build runs are not checked: not mirrored"]
    );
    // A prepared (sealed) release was built already: nothing to check.
    assert!(plan(&app(C1), &missing).blockers.is_empty());
}

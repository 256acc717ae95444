//! The plan's first section: fetch, install or reuse-deps, and build a release unless a
//! sealed one of the same inputs exists; the dependency and build-cache rules.

use super::*;

/// Fetch, install (or reuse-deps) and build a release, unless it is sealed already.
pub(super) fn prepare(pl: &mut Planner) {
    if pl.sealed {
        return;
    }
    let (desired, observed, release) = (pl.desired, pl.observed, pl.release.clone());
    let spec = &desired.spec;
    // A script the build or a hook runs that package.json does not have: stop before npm.
    pl.blockers.extend(super::scripts::missing_scripts(
        desired,
        &observed.package_scripts,
    ));
    if let super::scripts::PackageScripts::NotChecked(why) = &observed.package_scripts {
        pl.notes.push(format!(
            "the npm scripts the build runs are not checked: {why}"
        ));
    }
    let why = match observed.releases.get(&release) {
        Some(None) => format!(
            "release {} is incomplete (interrupted preparation)",
            short_sha(&release)
        ),
        _ => format!(
            "no release of {} built from these inputs",
            short_sha(&spec.source.commit)
        ),
    };
    pl.push(
        Step::Fetch {
            release: release.clone(),
            commit: spec.source.commit.clone(),
        },
        why,
    );
    let mut deps_from = None;
    if spec.build.install.is_some() {
        let (step, why) = plan_dependencies(desired, observed, &release);
        if let Step::ReuseDeps { from, .. } = &step {
            deps_from = Some(from.clone());
        }
        pl.push(step, why);
    }
    if !spec.build.steps.is_empty() {
        let (cache_from, why) = plan_build_cache(desired, observed, &release, deps_from);
        pl.push(
            Step::Build {
                release,
                cache_from,
            },
            why,
        );
    }
}

/// Install, or reuse the `node_modules` of a prepared release installed from the same
/// inputs whose `node_modules` is on disk (a matching release without one gives nothing to
/// reuse: install, and say so).
pub(super) fn plan_dependencies(
    desired: &App,
    observed: &Observed,
    release: &str,
) -> (Step, String) {
    let install = Step::Install {
        release: release.to_string(),
    };
    let Some(want) = deps_inputs(desired, observed.desired_lockfile.as_deref()) else {
        return (
            install,
            "no lockfile to match prepared releases against".into(),
        );
    };
    let sealed: Vec<(&String, &BuildMarker)> = observed
        .releases
        .iter()
        .filter_map(|(id, m)| m.as_ref().map(|m| (id, m)))
        .filter(|(id, _)| id.as_str() != release)
        .collect();
    let same: Vec<&String> = sealed
        .iter()
        .filter(|(_, m)| m.deps.as_deref() == Some(want.as_str()))
        .map(|(id, _)| *id)
        .collect();
    if let Some(from) = same.iter().find(|id| observed.node_modules.contains(**id)) {
        return (
            Step::ReuseDeps {
                release: release.to_string(),
                from: from.to_string(),
            },
            format!("lockfile unchanged since release {}", short_sha(from)),
        );
    }
    if let Some(from) = same.first() {
        return (
            install,
            format!(
                "release {} was installed from this lockfile, but it has no node_modules to reuse",
                short_sha(from)
            ),
        );
    }
    let live_lock = observed
        .current
        .as_ref()
        .and_then(|c| observed.releases.get(c))
        .and_then(|m| m.as_ref())
        .and_then(|m| m.lockfile.clone());
    let why = match (live_lock, observed.desired_lockfile.as_deref()) {
        (Some(old), Some(new)) if old != new => format!("lockfile changed ({old} → {new})"),
        _ if sealed.is_empty() => "new release needs its dependencies".to_string(),
        _ => "no prepared release was installed from this lockfile and install command".to_string(),
    };
    (install, why)
}

/// Where a new release's build may carry its `build.cache` directories from, and the build
/// step's reason.
///
/// # The rule
/// Only from a sealed release of this app installed from the same dependencies (the same
/// lockfile, install command and build env: what `reuse-deps` matches on), and only one
/// that holds a cache: the live release when it qualifies, else the release the
/// dependencies are reused from, else any other that qualifies. A dependency change
/// (or no lockfile to compare, or no install command) builds from scratch: a cache written
/// against other dependencies is not trusted.
pub(super) fn plan_build_cache(
    desired: &App,
    observed: &Observed,
    release: &str,
    deps_from: Option<String>,
) -> (Option<String>, String) {
    let base = "new release needs its build";
    let cache = &desired.spec.build.cache;
    if cache.is_empty() {
        return (None, base.into());
    }
    let Some(want) = deps_inputs(desired, observed.desired_lockfile.as_deref()) else {
        return (
            None,
            format!("{base}; no build cache carried (no lockfile or install to match releases on)"),
        );
    };
    let same_deps = |id: &String| {
        id != release
            && observed.build_caches.contains(id)
            && observed
                .releases
                .get(id)
                .and_then(|m| m.as_ref())
                .is_some_and(|m| m.deps.as_deref() == Some(want.as_str()))
    };
    let from = observed
        .current
        .iter()
        .chain(deps_from.iter())
        .chain(observed.releases.keys())
        .find(|id| same_deps(id));
    match from {
        Some(from) => (
            Some(from.clone()),
            format!(
                "{base}; {} carried from release {} (same dependencies)",
                cache.join(", "),
                short_sha(from)
            ),
        ),
        None => (
            None,
            format!(
                "{base}; no build cache carried (no release with these dependencies has {})",
                cache.join(", ")
            ),
        ),
    }
}

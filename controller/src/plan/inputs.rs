//! What a release and its processes are made of, as the planner and the executor both
//! compute it: the build, dependency and hook hashes, the ecosystem entries and the
//! processes hash, the instance count, and which release a document makes live.

use super::*;

/// A stable hex hash of a JSON value.
pub fn hash_json(v: &serde_json::Value) -> String {
    let digest = Sha256::digest(serde_json::to_vec(v).expect("json serializes"));
    hex::encode(&digest[..12])
}

/// The hash of everything a build depends on besides the lockfile.
pub fn build_inputs(app: &App) -> String {
    let b = &app.spec.build;
    hash_json(&serde_json::json!({
        "commit": app.spec.source.commit,
        "install": b.install,
        "steps": b.steps,
        "env": b.env,
    }))
}

/// The hash of what `node_modules` is installed from; `None` when it cannot be matched
/// (no install command, or no lockfile).
pub fn deps_inputs(app: &App, lockfile: Option<&str>) -> Option<String> {
    let install = app.spec.build.install.as_ref()?;
    let lockfile = lockfile?;
    Some(hash_json(&serde_json::json!({
        "lockfile": lockfile,
        "install": install,
        "env": app.spec.build.env,
    })))
}

/// The hash identifying the hooks to run for `release`.
pub fn hooks_hash(app: &App, release: &str) -> String {
    hooks_hash_of(&app.spec.hooks.after_switch, release)
}

/// The hash identifying `hooks` run for `release`.
pub fn hooks_hash_of(hooks: &[String], release: &str) -> String {
    hash_json(&serde_json::json!({ "hooks": hooks, "release": release }))
}

/// The pm2 ecosystem entry for `process`, with the controller's marker variables.
/// Paths resolve under `<root>/current`, so a reload picks up a switched release.
pub fn ecosystem_entry(app: &App, process: &Process, env_file: &EnvFile) -> serde_json::Value {
    let current = format!("{}/current", app.spec.releases.root.trim_end_matches('/'));
    let cwd = match &process.cwd {
        Some(sub) => format!("{current}/{}", sub.trim_start_matches("./")),
        None => current,
    };
    let mut entry = serde_json::to_value(process).expect("process serializes");
    {
        let obj = entry.as_object_mut().expect("process is an object");
        obj.remove("env");
        obj.insert("cwd".into(), cwd.into());
        obj.insert("vizion".into(), false.into());
        obj.entry("exec_mode").or_insert_with(|| "fork".into());
    }
    let shape = hash_json(&entry);
    // The env file first; what the document declares wins.
    let mut env: BTreeMap<String, String> = env_file.vars.clone();
    env.extend(process.env.iter().map(|(k, v)| (k.clone(), v.as_text())));
    let declared: Vec<String> = env.keys().cloned().collect();
    env.insert(ENV_KEYS.into(), declared.join(","));
    env.insert(ENV_APP.into(), app.metadata.name.clone());
    env.insert(ENV_COMMIT.into(), app.spec.source.commit.clone());
    env.insert(ENV_SHAPE.into(), shape);
    let config = hash_json(&serde_json::json!({ "entry": &entry, "env": &env }));
    env.insert(ENV_CONFIG.into(), config);
    entry.as_object_mut().expect("process is an object").insert(
        "env".into(),
        serde_json::to_value(env).expect("env serializes"),
    );
    entry
}

/// The ecosystem entry a graceful replace starts `process` from under its temporary name
/// ([`replace::next_name`]): the declared entry, renamed, with the same env and markers (so
/// it is recognised as this app's, running this config).
pub fn next_entry(app: &App, process: &Process, env_file: &EnvFile) -> serde_json::Value {
    let mut entry = ecosystem_entry(app, process, env_file);
    entry
        .as_object_mut()
        .expect("process is an object")
        .insert("name".into(), replace::next_name(&process.name).into());
    entry
}

/// The hash of all processes' config, for revision records.
pub fn processes_hash(app: &App, env_file: &EnvFile) -> String {
    let entries: Vec<_> = app
        .spec
        .processes
        .iter()
        .map(|p| ecosystem_entry(app, p, env_file))
        .collect();
    hash_json(&serde_json::Value::Array(entries))
}

/// The instance count pm2 runs for `p` on a machine with `cpus` CPUs.
pub fn expected_instances(p: &Process, cpus: u32) -> u32 {
    match p.instances {
        Some(Instances::Count(n)) => n,
        Some(Instances::Max(_)) => cpus.max(1),
        None => 1,
    }
}

/// The release id to prepare for `app`: a sealed release built from the same inputs if
/// one exists; else `<commit>` unless that name is taken by a live or differently-built
/// release, in which case `<commit>-<inputs>`.
pub fn choose_release(app: &App, observed: &Observed) -> (String, bool) {
    let commit = &app.spec.source.commit;
    let inputs = build_inputs(app);
    if let Some((id, _)) = observed.releases.iter().find(|(_, m)| {
        m.as_ref()
            .is_some_and(|m| &m.commit == commit && m.inputs == inputs)
    }) {
        return (id.clone(), true);
    }
    let plain = commit.clone();
    let taken = match observed.releases.get(&plain) {
        None => false,
        Some(None) => observed.current.as_deref() == Some(&plain),
        Some(Some(_)) => true,
    };
    if taken {
        (format!("{commit}-{}", &inputs[..8]), false)
    } else {
        (plain, false)
    }
}

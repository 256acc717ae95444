//! The oracle: how a simulated server differs from what a document declares, judged from
//! the document alone, never through the planner's helpers.

use super::server::*;
use super::*;

impl Server {
    // ---- the oracle ----

    /// How this server differs from what `app` declares (empty: converged). Judged from
    /// the document alone, never through the planner's helpers.
    pub(super) fn problems(&self, app: &App) -> Vec<String> {
        let spec = &app.spec;
        let mut out = self.faults.clone();

        // The live release: sealed, from the document's commit, built from its inputs.
        match self.current.as_ref().map(|c| (c, self.releases.get(c))) {
            None => out.push("nothing is live".into()),
            Some((c, None)) => out.push(format!("current points at {c}, which does not exist")),
            Some((c, Some(r))) => {
                if r.marker.is_none() {
                    out.push(format!("the live release {c} is not sealed"));
                }
                if r.commit != spec.source.commit {
                    out.push(format!(
                        "the live release {c} holds commit {}, the document {}",
                        r.commit, spec.source.commit
                    ));
                }
                // npm writes no node_modules for a lockfile without dependencies.
                let want_deps = spec
                    .build
                    .install
                    .as_ref()
                    .filter(|_| r.lockfile.as_deref() != Some(NO_DEPS))
                    .map(|cmd| Deps {
                        lockfile: r.lockfile.clone(),
                        install: cmd.clone(),
                        env: text_env(&spec.build.env),
                    });
                if r.node_modules != want_deps {
                    out.push(format!(
                        "the live release's node_modules {:?}, the document's {want_deps:?}",
                        r.node_modules
                    ));
                }
                let want_build = (!spec.build.steps.is_empty()).then(|| Built {
                    steps: spec.build.steps.clone(),
                    env: text_env(&spec.build.env),
                });
                if r.built != want_build {
                    out.push(format!(
                        "the live release's build {:?}, the document's {want_build:?}",
                        r.built
                    ));
                }
            }
        }

        // Each declared process, as the document declares it.
        let env_file = self.env_file_for(app);
        for p in &spec.processes {
            let procs: Vec<&Proc> = self.pm2.iter().filter(|i| i.name == p.name).collect();
            let want_count = match &p.instances {
                None => 1,
                Some(Instances::Count(n)) => *n,
                Some(Instances::Max(_)) => self.cpus,
            };
            if procs.len() as u32 != want_count {
                out.push(format!(
                    "{}: {} instances, the document {want_count}",
                    p.name,
                    procs.len()
                ));
            }
            let want_mode = match p.exec_mode {
                Some(ExecMode::Cluster) => "cluster_mode",
                Some(ExecMode::Fork) | None => "fork_mode",
            };
            let mut want_env = env_file.clone();
            want_env.extend(text_env(&p.env));
            for i in procs {
                let id = format!("{}#{}", i.name, i.pm_id);
                if i.exec_mode != want_mode {
                    out.push(format!("{id}: {} , the document {want_mode}", i.exec_mode));
                }
                if i.script != p.script {
                    out.push(format!(
                        "{id}: runs {}, the document {}",
                        i.script, p.script
                    ));
                }
                if i.status != Status::Online {
                    out.push(format!("{id}: {}", i.status));
                }
                if i.code != self.current {
                    out.push(format!(
                        "{id}: runs release {:?}, current is {:?}",
                        i.code, self.current
                    ));
                }
                // The process's variables, without the controller's SHIPSHAPE_* markers.
                let env: BTreeMap<String, String> = i
                    .env
                    .iter()
                    .filter(|(k, _)| !k.starts_with("SHIPSHAPE_"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if env != want_env {
                    let extra: Vec<&String> =
                        env.keys().filter(|k| !want_env.contains_key(*k)).collect();
                    out.push(format!(
                        "{id}: env {env:?}, the document {want_env:?} (extra: {extra:?})"
                    ));
                }
            }
        }

        // Nothing else of ours runs; what others started is untouched.
        let declared: BTreeSet<&str> = spec.processes.iter().map(|p| p.name.as_str()).collect();
        for i in &self.pm2 {
            let foreign = self.foreign_names.contains(&i.name);
            if !declared.contains(i.name.as_str()) && !foreign {
                out.push(format!("{}#{} runs but is not declared", i.name, i.pm_id));
            }
        }
        for f in &self.foreign {
            if !self.pm2.contains(f) {
                out.push(format!("someone else's {} was touched", f.name));
            }
        }

        // pm2's dump resurrects what runs, but for what a hand deleted without `pm2 save`
        // and nothing started again since: that difference is the hand's, in a dump the
        // controller does not read (a reboot brings it back; the next pass deals with it).
        let unsaved = |p: &&Proc| {
            self.unsaved_hand_deletes.contains(&p.name) && self.pm2.iter().all(|r| r.name != p.name)
        };
        let summary = |list: &[Proc]| {
            let mut v: Vec<(String, String, String, BTreeMap<String, String>)> = list
                .iter()
                .filter(|p| !unsaved(p))
                .map(|p| {
                    (
                        p.name.clone(),
                        p.exec_mode.clone(),
                        p.script.clone(),
                        p.env.clone(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        if summary(&self.dump) != summary(&self.pm2) {
            out.push(
                "pm2's dump differs from what runs (a reboot would bring back another list)".into(),
            );
        }

        // The database.
        if let Some(m) = &spec.migrations
            && self.level.as_deref() != Some(m.level.as_str())
        {
            out.push(format!("level {:?}, the document {}", self.level, m.level));
        }

        // The hooks ran, in order, in the live release, since it went live.
        let hooks = &spec.hooks.after_switch;
        let ran = &self.hooks_run;
        let tail = &ran[ran.len().saturating_sub(hooks.len())..];
        let want: Vec<(String, Option<String>)> = hooks
            .iter()
            .map(|h| (h.clone(), self.current.clone()))
            .collect();
        if tail != want.as_slice() {
            out.push(format!(
                "hooks run since current last changed {ran:?}, the document's {hooks:?}"
            ));
        }
        out
    }
}

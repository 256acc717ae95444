//! A fleet of controllers on one machine, for the tests and benchmarks of fleet rollouts
//! (`spec.rollout`): N hosts, each with its own [`World`] (state dir, pm2 home, app port,
//! releases root; the controller's API gets its own port when started), one shared app
//! repo and one shared config repo. On one machine each host needs its own port and
//! releases root, so each host reads its own document (`apps/<app>-<host>.yaml`, selected
//! for it alone by `spec.hosts.names`); every document carries the same `spec.rollout`,
//! as one document would in a real fleet.

use std::path::{Path, PathBuf};
use std::process::Output;

use shipshape_spec::App;
use shipshape_spec::rollout::Rollout;

use super::{AppEdit, Daemon, World, git};

/// One host of a [`Fleet`].
pub struct Host {
    /// `--hostname`.
    pub name: String,
    /// `--label key=value`s.
    pub labels: Vec<(String, String)>,
    /// Its own state dir, pm2 home, app port and releases root (its own repos go unused:
    /// the fleet's are shared).
    pub world: World,
}

impl Host {
    /// The controller flags naming this host: `--hostname NAME --label k=v …`.
    pub fn flags(&self) -> Vec<String> {
        let mut f = vec!["--hostname".to_string(), self.name.clone()];
        for (k, v) in &self.labels {
            f.push("--label".into());
            f.push(format!("{k}={v}"));
        }
        f
    }

    /// The app's release directory for `commit` under this host's releases root (the
    /// plain `<commit>` id; a rebuild under other inputs would be `<commit>-<inputs>`, so
    /// [`Host::releases_of`] is the thorough check).
    pub fn release_dir(&self, commit: &str) -> PathBuf {
        self.world.releases_root().join("releases").join(commit)
    }

    /// The release directories under this host's releases root whose name starts with
    /// `commit` (none when the commit was never prepared here).
    pub fn releases_of(&self, commit: &str) -> Vec<String> {
        std::fs::read_dir(self.world.releases_root().join("releases"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(commit))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Hosts sharing one app repo and one config repo.
pub struct Fleet {
    /// The app's name (`metadata.name` of every host's document).
    pub app: String,
    /// Holds the shared app repo ([`Fleet::app_repo`]) and config repo
    /// ([`Fleet::config_repo`]).
    pub repos: World,
    /// The hosts, in the order given.
    pub hosts: Vec<Host>,
}

impl Fleet {
    /// A fleet of `hosts` (name, labels) running app `app` (the example app at 1.0.0).
    pub fn new(app: &str, hosts: &[(&str, &[(&str, &str)])]) -> Fleet {
        let repos = World::new(app);
        let hosts = hosts
            .iter()
            .map(|(name, labels)| Host {
                name: name.to_string(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                world: World::new(app),
            })
            .collect();
        Fleet {
            app: app.to_string(),
            repos,
            hosts,
        }
    }

    /// The shared app repo.
    pub fn app_repo(&self) -> PathBuf {
        self.repos.app_repo()
    }

    /// The shared config repo.
    pub fn config_repo(&self) -> PathBuf {
        self.repos.config_repo()
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the fleet"))
    }

    /// The document `host` reads at app commit `commit`: the host world's default
    /// document (its port and releases root), from the fleet's app repo, for this host
    /// only, with `rollout`.
    pub fn document(&self, host: &Host, commit: &str, rollout: Option<&Rollout>) -> App {
        let mut app = host.world.app(commit);
        app.repository(&self.app_repo().display().to_string())
            .hosts(&[&host.name], &[]);
        app.spec.rollout = rollout.cloned();
        app
    }

    /// Commit every host's document at app commit `commit` with `rollout` in one config
    /// commit; returns it.
    pub fn commit(&self, commit: &str, rollout: Option<&Rollout>) -> String {
        self.commit_with(commit, rollout, |_, _| {})
    }

    /// [`Fleet::commit`] with each host's document changed by `edit` first.
    pub fn commit_with(
        &self,
        commit: &str,
        rollout: Option<&Rollout>,
        edit: impl Fn(&Host, &mut App),
    ) -> String {
        let config = self.config_repo();
        for h in &self.hosts {
            let mut app = self.document(h, commit, rollout);
            edit(h, &mut app);
            let text = shipshape_spec::load::to_yaml(&app);
            if let Err(e) = shipshape_spec::load_str(&text, "fleet.yaml") {
                panic!("{}'s document does not load:\n{e}\n{text}", h.name);
            }
            std::fs::write(
                config
                    .join("apps")
                    .join(format!("{}-{}.yaml", self.app, h.name)),
                text,
            )
            .unwrap();
        }
        git(&config, &["add", "-A"]);
        git(
            &config,
            &["commit", "-qm", &format!("{} at {commit}", self.app)],
        );
        git(&config, &["rev-parse", "HEAD"])
    }

    /// Start `host`'s controller on the fleet's config repo, with its `--hostname` and
    /// `--label`s and `extra` flags.
    pub fn start(&self, host: &Host, extra: &[&str]) -> Daemon {
        let flags = host.flags();
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        host.world.start_with_env(
            &args,
            &[("SHIPSHAPE_REPO", self.config_repo().to_str().unwrap())],
        )
    }

    /// Start every host's controller, in order.
    pub fn start_all(&self, extra: &[&str]) -> Vec<Daemon> {
        self.hosts.iter().map(|h| self.start(h, extra)).collect()
    }

    /// `shipshape <args>` as `host` (its state dir and pm2 home, the fleet's config repo);
    /// with `as_host`, its `--hostname` and `--label`s are appended (for `plan`, which
    /// asks the gate as that host).
    pub fn shipshape(&self, host: &Host, args: &[&str], as_host: bool) -> Output {
        let flags = host.flags();
        let mut all: Vec<&str> = args.to_vec();
        if as_host {
            all.extend(flags.iter().map(String::as_str));
        }
        host.world.shipshape(
            &all,
            &[("SHIPSHAPE_REPO", self.config_repo().to_str().unwrap())],
        )
    }
}

/// The scrape targets (`127.0.0.1:PORT`) of `daemons`' APIs, for a Prometheus.
pub fn targets(daemons: &[Daemon]) -> Vec<String> {
    daemons
        .iter()
        .map(|d| d.url.trim_start_matches("http://").to_string())
        .collect()
}

/// A `spec.rollout` from its JSON form (`{"prometheus": …, "waves": […], "soak": "6s"}`);
/// panics when it does not deserialize.
pub fn rollout(json: serde_json::Value) -> Rollout {
    serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// The app commits of the pm2 processes `pm2 jlist` lists under `home`, with where they
/// run: (`name`, `SHIPSHAPE_COMMIT`, `pm_cwd`, status), one per process.
pub fn pm2_processes(world: &World) -> Vec<(String, String, String, String)> {
    let raw = world.pm2_jlist_raw();
    let list: serde_json::Value = match serde_json::from_str(&raw) {
        Ok(v) => v,
        // No daemon yet (or a half-written answer): nothing listed.
        Err(_) => return Vec::new(),
    };
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|p| {
            let env = &p["pm2_env"];
            let commit = env["SHIPSHAPE_COMMIT"]
                .as_str()
                .or_else(|| env["env"]["SHIPSHAPE_COMMIT"].as_str())
                .unwrap_or("")
                .to_string();
            (
                p["name"].as_str().unwrap_or("").to_string(),
                commit,
                env["pm_cwd"].as_str().unwrap_or("").to_string(),
                env["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Where `path` leads, symlinks resolved (`None` when it does not exist).
pub fn resolved(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

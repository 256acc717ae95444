//! Generated histories: documents with their knobs, the drift that happens to a server
//! between them, and the server each history starts from.

use super::server::*;
use super::*;

/// Something that happens to a server between two documents.
#[derive(Debug, Clone)]
pub(super) enum Drift {
    /// `pm2 stop` of one instance.
    Stop(usize),
    /// `pm2 delete` of one process by hand.
    DeleteByHand(usize),
    /// `current` pointed by hand at another (unsealed) directory.
    MoveCurrent,
    /// pm2 restarts every process (they load whatever `current` is now).
    RestartAll,
    /// A release's marker is gone (an interrupted preparation, or a hand).
    Unseal(usize),
    /// Someone else starts (and saves) a process of their own.
    Foreign,
    /// The database was migrated or restored by hand.
    Level(Option<&'static str>),
    /// The env file was edited.
    EnvFile(Option<&'static str>),
    /// The machine rebooted: pm2 resurrects its dump.
    Reboot,
    /// The controller crashed in the middle of a graceful replace of a cluster-mode
    /// process, after 1 (the new processes started under `NAME~next`), 2 (the old ones
    /// deleted) or 3 (the declared name started again) of its moves.
    InterruptedReplace(u8),
}

/// The knobs of one generated document.
#[derive(Debug, Clone)]
pub(super) struct Doc {
    pub(super) commit: &'static str,
    pub(super) level: Option<&'static str>,
    pub(super) env_file: bool,
    pub(super) greeting: Option<&'static str>,
    /// `None`: no `instances`; `Some(None)`: `max`.
    pub(super) instances: Option<Option<u32>>,
    /// `None`: no `exec_mode`.
    pub(super) cluster: Option<bool>,
    pub(super) script: &'static str,
    pub(super) install: bool,
    pub(super) build_steps: usize,
    pub(super) hooks: usize,
    pub(super) worker: bool,
}

impl Doc {
    pub(super) fn app(&self) -> App {
        let mut y = String::new();
        let _ = writeln!(
            y,
            "apiVersion: shipshape/v1alpha1\nkind: App\nmetadata: {{ name: demo }}\nspec:"
        );
        let _ = writeln!(
            y,
            "  source: {{ repository: /srv/git/demo, commit: \"{}\" }}",
            self.commit
        );
        let _ = writeln!(y, "  releases: {{ root: {ROOT} }}");
        if self.env_file || self.level.is_some() {
            let _ = writeln!(y, "  envFile: /etc/demo/env");
        }
        let steps: Vec<&str> = ["npm run build", "npm test"][..self.build_steps].to_vec();
        let _ = writeln!(y, "  build:");
        if self.install {
            let _ = writeln!(y, "    install: npm ci");
        }
        let _ = writeln!(y, "    steps: {steps:?}");
        if let Some(l) = self.level {
            let _ = writeln!(
                y,
                "  migrations: {{ driver: dbmate, level: \"{l}\", backup: pg_dump -Fc -f \"$SHIPSHAPE_BACKUP_FILE\" }}"
            );
        }
        let _ = writeln!(y, "  processes:");
        let _ = writeln!(y, "    - name: web\n      script: {}", self.script);
        match self.instances {
            None => {}
            Some(None) => {
                let _ = writeln!(y, "      instances: max");
            }
            Some(Some(n)) => {
                let _ = writeln!(y, "      instances: {n}");
            }
        }
        if let Some(c) = self.cluster {
            let mode = if c { "cluster" } else { "fork" };
            let _ = writeln!(y, "      exec_mode: {mode}");
        }
        let _ = write!(y, "      env: {{ PORT: 3000");
        if let Some(g) = self.greeting {
            let _ = write!(y, ", GREETING: {g}");
        }
        let _ = writeln!(y, " }}");
        if self.worker {
            let _ = writeln!(
                y,
                "    - name: worker\n      script: worker.js\n      env: {{ QUEUE: jobs, DEBUG: true }}"
            );
        }
        let _ = writeln!(
            y,
            "  health:\n    checks:\n      - name: api\n        http: {{ url: \"http://127.0.0.1:3000/api/health\" }}"
        );
        let hooks: Vec<&str> = ["echo switched", "echo again"][..self.hooks].to_vec();
        let _ = writeln!(y, "  hooks:\n    afterSwitch: {hooks:?}");
        shipshape_spec::load_str(&y, "sim.yaml").unwrap_or_else(|e| panic!("{e}\n{y}"))
    }
}

pub(super) fn any_doc() -> impl Strategy<Value = Doc> {
    (
        (
            prop::sample::select(vec![C1, C2, C3]),
            prop::option::of(prop::sample::select(vec!["0001", "0002", "0003"])),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["hi", "howdy"])),
            prop::option::of(prop::option::of(1u32..4)),
            prop::option::of(any::<bool>()),
        ),
        (
            prop::sample::select(vec!["server.js", "app.js"]),
            any::<bool>(),
            0usize..3,
            0usize..3,
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (commit, level, env_file, greeting, instances, cluster),
                (script, install, build_steps, hooks, worker),
            )| Doc {
                commit,
                level,
                env_file,
                greeting,
                instances,
                cluster,
                script,
                install,
                build_steps,
                hooks,
                worker,
            },
        )
}

pub(super) fn any_drift() -> impl Strategy<Value = Drift> {
    prop_oneof![
        (0usize..8).prop_map(Drift::Stop),
        (0usize..8).prop_map(Drift::DeleteByHand),
        Just(Drift::MoveCurrent),
        Just(Drift::RestartAll),
        (0usize..4).prop_map(Drift::Unseal),
        Just(Drift::Foreign),
        prop::option::of(prop::sample::select(vec!["0001", "0002", "0003"])).prop_map(Drift::Level),
        prop::option::of(prop::sample::select(vec!["k1", "k2"])).prop_map(Drift::EnvFile),
        Just(Drift::Reboot),
        (1u8..4).prop_map(Drift::InterruptedReplace),
    ]
}

/// A server's world and the documents it goes through, with drift before each.
#[derive(Debug, Clone)]
pub(super) struct History {
    pub(super) cpus: u32,
    /// The lockfile of C1, C2, C3.
    pub(super) lockfiles: [Option<&'static str>; 3],
    pub(super) env_file: Option<&'static str>,
    pub(super) docs: Vec<(Vec<Drift>, Doc)>,
}

pub(super) fn any_history() -> impl Strategy<Value = History> {
    let lock = || {
        prop::option::of(prop::sample::select(vec![
            "aaaaaaaaaaaa",
            "bbbbbbbbbbbb",
            NO_DEPS,
        ]))
    };
    (
        1u32..5,
        (lock(), lock(), lock()),
        prop::option::of(prop::sample::select(vec!["k1", "k2"])),
        prop::collection::vec((prop::collection::vec(any_drift(), 0..3), any_doc()), 1..5),
    )
        .prop_map(|(cpus, (l1, l2, l3), env_file, docs)| History {
            cpus,
            lockfiles: [l1, l2, l3],
            env_file,
            docs,
        })
}

pub(super) fn server_for(h: &History) -> Server {
    let repo = [C1, C2, C3]
        .iter()
        .zip(h.lockfiles)
        .map(|(c, l)| (c.to_string(), l.map(str::to_string)))
        .collect();
    Server::new(h.cpus, repo, h.env_file)
}

//! Records and documents for the reconcile core's table tests (no pm2, git or network).

use shipshape_spec::App;
use shipshape_spec::status::{Outcome, Revision};

use crate::state::{AppRecord, RevisionEntry};

/// A small valid document; its app commit is set to `commit` after loading.
pub fn app(commit: &str) -> App {
    let text = r#"
apiVersion: shipshape/v1alpha1
kind: App
metadata: { name: demo }
spec:
  source: { repository: /srv/git/demo, commit: 1111111111111111111111111111111111111111 }
  releases: { root: /srv/demo }
  build: { install: npm ci, steps: [npm run build] }
  processes:
    - name: web
      script: server.js
      instances: 2
      exec_mode: cluster
      env: { PORT: 3000 }
  health:
    checks:
      - name: api
        http: { url: "http://127.0.0.1:3000/api/health" }
"#;
    let mut app = shipshape_spec::load_str(text, "test.yaml").expect("fixture loads");
    app.spec.source.commit = commit.to_string();
    app
}

/// Revision `n` with `outcome`: config commit `cfg<n>`, app commit `app<n>`, release `r<n>`,
/// process hash `h`.
pub fn entry(n: u64, outcome: Outcome) -> RevisionEntry {
    RevisionEntry {
        revision: Revision {
            number: n,
            config_commit: format!("cfg{n}"),
            app_commit: format!("app{n}"),
            level: None,
            process_hash: "h".into(),
            started_at: shipshape_spec::Timestamp::UNIX_EPOCH,
            live_at: None,
            finished_at: None,
            outcome,
            message: String::new(),
            rounds: Default::default(),
        },
        release: format!("r{n}"),
        document: app(&format!("app{n}")),
        not_blamed: false,
        suspect_checks: Vec::new(),
        backup: None,
    }
}

/// An empty record for the app `demo`.
pub fn record() -> AppRecord {
    AppRecord::new("demo")
}

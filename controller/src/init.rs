//! `shipshape init`: an existing pm2 ecosystem file (`ecosystem.config.js`, evaluated with
//! node as pm2 itself would, or `.json`) turned into an App document to commit, keeping
//! pm2's own field names for the processes.

use std::path::{Path, PathBuf};

use shipshape_spec::app::Process;

/// Why `shipshape init` could not write a document.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The ecosystem file cannot be read (or resolved).
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// node could not be run.
    #[error("running node: {0}")]
    Node(#[source] std::io::Error),
    /// node could not evaluate the file.
    #[error("node could not load {}: {stderr}", path.display())]
    NodeFailed {
        /// The file.
        path: PathBuf,
        /// What node printed on stderr.
        stderr: String,
    },
    /// The file (or what node made of it) is not JSON.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
    /// It declares no pm2 app.
    #[error("{}: no pm2 apps found", path.display())]
    NoApps {
        /// The file.
        path: PathBuf,
    },
    /// A pm2 app cannot be expressed as a process of the document.
    #[error("pm2 app {name}: {source}")]
    App {
        /// The app's `name` as JSON (`null` when it has none).
        name: serde_json::Value,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The processes cannot be written back as JSON.
    #[error("{0}")]
    Serialize(#[source] serde_json::Error),
    /// The document made does not load (a bug, or a value the document cannot take).
    #[error("the generated document does not validate:\n{0}")]
    Invalid(#[source] shipshape_spec::LoadError),
}

/// What to build the document from.
#[derive(Debug, Clone)]
pub struct Options {
    /// The ecosystem file.
    pub ecosystem: PathBuf,
    /// The app's name.
    pub name: Option<String>,
    /// The app's repository.
    pub repository: String,
    /// The commit.
    pub commit: String,
    /// The releases root.
    pub root: Option<String>,
    /// The health URL.
    pub health_url: Option<String>,
}

/// pm2 fields the document does not take (the controller owns restarts and paths).
const DROPPED: &[&str] = &[
    "watch",
    "ignore_watch",
    "watch_options",
    "env_production",
    "env_development",
    "pid_file",
    "exec_interpreter",
];

/// Read the ecosystem file's apps as JSON.
///
/// # Errors
/// When node cannot evaluate it or it has no `apps`.
pub fn read_ecosystem(path: &Path) -> Result<Vec<serde_json::Value>, InitError> {
    let read = |source| InitError::Read {
        path: path.to_path_buf(),
        source,
    };
    let text = if path.extension().is_some_and(|e| e == "json") {
        std::fs::read_to_string(path).map_err(read)?
    } else {
        let abs = std::fs::canonicalize(path).map_err(read)?;
        let out = std::process::Command::new("node")
            .args([
                "-e",
                "const m = require(process.argv[1]); process.stdout.write(JSON.stringify(m))",
            ])
            .arg(&abs)
            .output()
            .map_err(InitError::Node)?;
        if !out.status.success() {
            return Err(InitError::NodeFailed {
                path: path.to_path_buf(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| InitError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let apps = value.get("apps").cloned().unwrap_or(value);
    match apps {
        serde_json::Value::Array(a) if !a.is_empty() => Ok(a),
        serde_json::Value::Object(_) => Ok(vec![apps]),
        _ => Err(InitError::NoApps {
            path: path.to_path_buf(),
        }),
    }
}

/// Build the document's text.
///
/// # Errors
/// When the ecosystem file cannot be read or an app cannot be expressed.
pub fn document(opts: &Options) -> Result<String, InitError> {
    let apps = read_ecosystem(&opts.ecosystem)?;
    let mut processes = Vec::new();
    let mut port = None;
    for mut app in apps {
        if let Some(obj) = app.as_object_mut() {
            for f in DROPPED {
                obj.remove(*f);
            }
            // Paths become relative to the release.
            if let Some(cwd) = obj.get("cwd").and_then(|c| c.as_str()).map(str::to_string)
                && (cwd.starts_with('/') || cwd == "." || cwd == "./")
            {
                obj.remove("cwd");
            }
            if port.is_none() {
                port = obj
                    .get("env")
                    .and_then(|e| e.get("PORT"))
                    .map(|p| p.to_string().trim_matches('"').to_string());
            }
        }
        let p: Process = serde_json::from_value(app.clone()).map_err(|source| InitError::App {
            name: app.get("name").cloned().unwrap_or_default(),
            source,
        })?;
        processes.push(p);
    }
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| processes[0].name.to_lowercase().replace(['_', '.'], "-"));
    let root = opts.root.clone().unwrap_or_else(|| format!("/srv/{name}"));
    let health = opts.health_url.clone().unwrap_or_else(|| {
        format!(
            "http://127.0.0.1:{}/api/health",
            port.unwrap_or_else(|| "3000".into())
        )
    });
    let processes_yaml = serde_json::to_value(&processes).map_err(InitError::Serialize)?;
    let mut out = String::new();
    out.push_str("# yaml-language-server: $schema=https://example.invalid/shipshape/schemas/app.schema.json\n");
    out.push_str(&format!(
        "# Made by `shipshape init` from {}. Review it: set the commit, build and health.\n",
        opts.ecosystem.display()
    ));
    out.push_str("apiVersion: shipshape/v1alpha1\nkind: App\nmetadata:\n");
    out.push_str(&format!("  name: {name}\n"));
    out.push_str("spec:\n  source:\n");
    out.push_str(&format!(
        "    repository: {}\n    commit: {}\n",
        opts.repository, opts.commit
    ));
    out.push_str(&format!("  releases:\n    root: {root}\n    keep: 5\n"));
    out.push_str("  build:\n    install: npm ci\n    steps:\n      - npm run build\n");
    out.push_str("  processes:\n");
    for line in shipshape_spec::load::to_yaml(&processes_yaml).lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "  health:\n    checks:\n      - name: api\n        http:\n          url: {health}\n        timeout: 2s\n    interval: 2s\n    successThreshold: 3\n    failureThreshold: 3\n    progressDeadline: 5m\n"
    ));
    out.push_str("  rollback:\n    auto: true\n    window: 30m\n");
    // The output must be a valid document.
    shipshape_spec::load_str(&out, "(init)").map_err(InitError::Invalid)?;
    Ok(out)
}

/// `shipshape init`.
pub fn run(opts: &Options) -> i32 {
    match document(opts) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

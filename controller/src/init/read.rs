//! Reading an ecosystem file the way pm2 does: `.json` (JSON, else pm2's own
//! JavaScript-expression reading), `.yaml`/`.yml`, and `.js`/`.cjs`/`.mjs` evaluated by
//! node — `require` for CommonJS, dynamic `import()` for ES modules (`.mjs`, or `.js` in a
//! package whose `package.json` says `"type": "module"`). node runs with a time limit, the
//! path in its argv, its working directory the file's own, and an environment of `PATH`
//! and `HOME` only, so nothing from the operator's shell ends up in a document for git.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::InitError;

/// How long node may take to evaluate an ecosystem file.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// How node is asked to load a JavaScript ecosystem file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// CommonJS: `require`.
    CommonJs,
    /// An ES module: `import()`.
    EsModule,
}

/// What the file is, by its name (and, for `.js`, the package it is in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`.
    Json,
    /// `.yaml` / `.yml`.
    Yaml,
    /// `.js` / `.cjs` / `.mjs`.
    JavaScript(ModuleKind),
}

impl Format {
    /// How the file was read, for the document's header.
    pub fn describe(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
            Format::JavaScript(ModuleKind::CommonJs) => "CommonJS, loaded with require",
            Format::JavaScript(ModuleKind::EsModule) => "ES module, loaded with import()",
        }
    }
}

/// An ecosystem file as read: its apps (each a JSON object as pm2 would see it), its text
/// (to point at lines), and what else it declared at the top.
#[derive(Debug, Clone)]
pub struct Ecosystem {
    /// The file, as given.
    pub path: PathBuf,
    /// Its directory (absolute): where the app's package.json and code are looked for.
    pub dir: PathBuf,
    /// How it was read.
    pub format: Format,
    /// Its text.
    pub text: String,
    /// The apps, in order.
    pub apps: Vec<serde_json::Value>,
    /// Top-level keys other than `apps` (e.g. `deploy`), with their values.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The format of `path`: by extension; a `.js` is an ES module when the nearest
/// `package.json` above it has `"type": "module"`.
///
/// # Errors
/// An extension pm2 does not read.
pub fn format_of(path: &Path) -> Result<Format, InitError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "json" => Ok(Format::Json),
        "yaml" | "yml" => Ok(Format::Yaml),
        "cjs" => Ok(Format::JavaScript(ModuleKind::CommonJs)),
        "mjs" => Ok(Format::JavaScript(ModuleKind::EsModule)),
        "js" => Ok(Format::JavaScript(package_type(path))),
        _ => Err(InitError::Format {
            path: path.to_path_buf(),
        }),
    }
}

/// Node's rule for a `.js` file: the `type` of the nearest package.json.
fn package_type(path: &Path) -> ModuleKind {
    let mut dir = path.parent();
    while let Some(d) = dir {
        let pkg = d.join("package.json");
        if let Ok(text) = std::fs::read_to_string(&pkg) {
            let module = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                .is_some_and(|t| t == "module");
            return if module {
                ModuleKind::EsModule
            } else {
                ModuleKind::CommonJs
            };
        }
        dir = d.parent();
    }
    ModuleKind::CommonJs
}

/// Read `path` as pm2 would and find its apps: `{apps: [...]}` (or pm2's older `{pm2:
/// [...]}`), a bare array, or a single app object; an ES module's default export.
///
/// # Errors
/// The file cannot be read, node fails or times out, the text is not JSON/YAML, or it
/// declares no app.
pub fn read(path: &Path) -> Result<Ecosystem, InitError> {
    let io = |source| InitError::Read {
        path: path.to_path_buf(),
        source,
    };
    let abs = std::fs::canonicalize(path).map_err(io)?;
    let text = std::fs::read_to_string(&abs).map_err(io)?;
    let format = format_of(path)?;
    let value = match format {
        Format::Json => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => v,
            // pm2 reads a .json file as a JavaScript expression (comments, trailing
            // commas and unquoted keys pass); so does init, but only when JSON fails.
            Err(json) => node_eval(&abs, "expression").map_err(|_| InitError::Json {
                path: path.to_path_buf(),
                source: json,
            })?,
        },
        Format::Yaml => serde_yaml::from_str(&text).map_err(|e| InitError::Yaml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?,
        Format::JavaScript(ModuleKind::CommonJs) => node_eval(&abs, "require")?,
        Format::JavaScript(ModuleKind::EsModule) => node_eval(&abs, "import")?,
    };
    let (apps, extra) = split_apps(value);
    if apps.is_empty() {
        return Err(InitError::NoApps {
            path: path.to_path_buf(),
        });
    }
    Ok(Ecosystem {
        path: path.to_path_buf(),
        dir: abs.parent().map(Path::to_path_buf).unwrap_or_default(),
        format,
        text,
        apps,
        extra,
    })
}

/// pm2's own reading of what a file evaluates to (lib/API.js `_startJson`): `apps`, else
/// `pm2`, else the value itself; an object is one app.
fn split_apps(
    value: serde_json::Value,
) -> (
    Vec<serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
) {
    use serde_json::Value;
    match value {
        Value::Array(apps) => (apps, Default::default()),
        Value::Object(mut top) => {
            let key = ["apps", "pm2"].into_iter().find(|k| top.contains_key(*k));
            match key.and_then(|k| top.remove(k)) {
                Some(Value::Array(apps)) => (apps, top),
                Some(one @ Value::Object(_)) => (vec![one], top),
                Some(_) => (Vec::new(), top),
                None if top.is_empty() => (Vec::new(), top),
                None => (vec![Value::Object(top)], Default::default()),
            }
        }
        _ => (Vec::new(), Default::default()),
    }
}

/// The loader node runs: argv[1] is the file, argv[2] how to load it. It prints the value
/// as JSON (functions and `undefined` drop out, as they would for pm2's daemon).
const LOADER: &str = r#"
const file = process.argv[1];
const how = process.argv[2];
const out = (v) => process.stdout.write(JSON.stringify(v === undefined ? null : v));
const fail = (e) => { process.stderr.write(String((e && e.stack) || e)); process.exit(1); };
try {
  if (how === 'import') {
    import(require('url').pathToFileURL(file).href).then((m) => {
      out(m.default !== undefined ? m.default : Object.assign({}, m));
    }, fail);
  } else if (how === 'expression') {
    const text = require('fs').readFileSync(file, 'utf8');
    out(require('vm').runInNewContext('(' + text + ')', {}, { timeout: 1000 }));
  } else {
    const m = require(file);
    out(m && m.__esModule && m.default !== undefined ? m.default : m);
  }
} catch (e) { fail(e); }
"#;

/// Evaluate `file` with node (see [`LOADER`]) and parse what it prints.
fn node_eval(file: &Path, how: &str) -> Result<serde_json::Value, InitError> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    let mut cmd = Command::new("node");
    cmd.arg("-e")
        .arg(LOADER)
        .arg(file)
        .arg(how)
        .current_dir(dir)
        .env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    let Some((status, stdout, stderr)) =
        run_with_timeout(&mut cmd, NODE_TIMEOUT).map_err(InitError::Node)?
    else {
        return Err(InitError::NodeTimeout {
            path: file.to_path_buf(),
            after: NODE_TIMEOUT,
        });
    };
    if !status.success() {
        return Err(InitError::NodeFailed {
            path: file.to_path_buf(),
            stderr: first_lines(&String::from_utf8_lossy(&stderr), 6),
        });
    }
    serde_json::from_slice(&stdout).map_err(|source| InitError::Json {
        path: file.to_path_buf(),
        source,
    })
}

/// A finished command: its status, standard output and standard error.
pub(super) type Finished = (std::process::ExitStatus, Vec<u8>, Vec<u8>);

/// Run `cmd` (its stdout and stderr piped) for at most `limit`: its status and output, or
/// `None` when it was killed at the limit.
pub(super) fn run_with_timeout(
    cmd: &mut Command,
    limit: Duration,
) -> std::io::Result<Option<Finished>> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Some((
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )))
}

/// The first `n` lines of `text`, trimmed (node's stack traces are long).
fn first_lines(text: &str, n: usize) -> String {
    text.trim().lines().take(n).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apps_are_found_in_each_shape_pm2_reads() {
        let (a, _) = split_apps(json!({"apps": [{"name": "a"}]}));
        assert_eq!(a.len(), 1);
        let (a, _) = split_apps(json!([{"name": "a"}, {"name": "b"}]));
        assert_eq!(a.len(), 2);
        let (a, _) = split_apps(json!({"name": "a", "script": "x.js"}));
        assert_eq!(a, vec![json!({"name": "a", "script": "x.js"})]);
        let (a, extra) = split_apps(json!({"apps": {"name": "a"}, "deploy": {}}));
        assert_eq!(a.len(), 1);
        assert!(extra.contains_key("deploy"));
        let (a, _) = split_apps(json!({"pm2": [{"name": "a"}]}));
        assert_eq!(a.len(), 1);
        assert!(split_apps(json!({})).0.is_empty());
        assert!(split_apps(json!(null)).0.is_empty());
    }
}

//! The build read from the app beside the ecosystem file: the install command from the
//! lockfile present (`npm ci`, `yarn install --frozen-lockfile`, `pnpm install
//! --frozen-lockfile`, `bun install --frozen-lockfile`; `npm install` with a warning when
//! there is none), a build step only when package.json has a `build` script, and what
//! `script: npm` really starts (package.json's script), each said with its file and line.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::report::Report;
use super::translate::Translated;

/// The app's package.json, read.
#[derive(Debug, Clone, Default)]
pub struct Package {
    /// Its path (shown in notes), when there is one.
    pub path: Option<PathBuf>,
    /// Its text.
    pub text: String,
    /// Its value.
    pub json: Value,
}

impl Package {
    /// Read `dir/package.json` (an empty package when there is none or it does not parse:
    /// the report says which).
    pub fn read(dir: &Path, shown: &Path, report: &mut Report) -> Package {
        let path = dir.join("package.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Package::default();
        };
        let shown = shown.join("package.json");
        match serde_json::from_str(&text) {
            Ok(json) => Package {
                path: Some(shown),
                text,
                json,
            },
            Err(e) => {
                report.warn(
                    shown.display().to_string(),
                    format!("does not parse ({e}): no install or build step written"),
                );
                Package::default()
            }
        }
    }

    /// `scripts.<name>`.
    pub fn script(&self, name: &str) -> Option<&str> {
        self.json.get("scripts")?.get(name)?.as_str()
    }

    /// `package.json:LINE` of `"key":` (the first line naming it).
    fn at(&self, key: &str) -> String {
        let shown = self
            .path
            .as_ref()
            .map_or("package.json".into(), |p| p.display().to_string());
        let needle = format!("\"{key}\"");
        match self.text.lines().position(|l| l.contains(&needle)) {
            Some(i) => format!("{shown}:{}", i + 1),
            None => shown,
        }
    }

    fn has_dependencies(&self) -> bool {
        ["dependencies", "devDependencies", "optionalDependencies"]
            .iter()
            .any(|k| {
                self.json
                    .get(k)
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
            })
    }
}

/// The package manager, by its lockfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    Npm,
    Yarn,
    Pnpm,
    Bun,
}

/// The lockfiles init knows, in the order it prefers them, with their frozen install.
const LOCKFILES: &[(&str, Manager, &str)] = &[
    ("package-lock.json", Manager::Npm, "npm ci"),
    ("npm-shrinkwrap.json", Manager::Npm, "npm ci"),
    (
        "pnpm-lock.yaml",
        Manager::Pnpm,
        "pnpm install --frozen-lockfile",
    ),
    ("yarn.lock", Manager::Yarn, "yarn install --frozen-lockfile"),
    ("bun.lock", Manager::Bun, "bun install --frozen-lockfile"),
    ("bun.lockb", Manager::Bun, "bun install --frozen-lockfile"),
];

/// The build section: `install` and `steps`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildGuess {
    /// The install command.
    pub install: Option<String>,
    /// The build steps.
    pub steps: Vec<String>,
}

/// The build of the app in `dir` (the ecosystem file's directory: the release root).
pub fn build(dir: &Path, shown: &Path, pkg: &Package, report: &mut Report) -> BuildGuess {
    let mut guess = BuildGuess::default();
    if pkg.path.is_none() {
        report.warn(
            shown.join("package.json").display().to_string(),
            "not found beside the ecosystem file: no install or build step written (add spec.build if the app needs one)",
        );
        return guess;
    }
    let found: Vec<_> = LOCKFILES
        .iter()
        .filter(|(f, _, _)| dir.join(f).is_file())
        .collect();
    let manager = match found.first() {
        Some((file, manager, install)) => {
            guess.install = Some((*install).to_string());
            report.note(
                shown.join(file).display().to_string(),
                format!("build.install: {install} (this lockfile)"),
            );
            if found.len() > 1 {
                let others: Vec<_> = found[1..].iter().map(|(f, _, _)| *f).collect();
                report.warn(
                    shown.join(file).display().to_string(),
                    format!(
                        "other lockfiles too ({}): {file} was chosen; remove the ones not used",
                        others.join(", ")
                    ),
                );
            }
            *manager
        }
        None if pkg.has_dependencies() => {
            guess.install = Some("npm install".into());
            report.warn(
                pkg.at("dependencies"),
                "build.install: npm install, since there is no lockfile: each release may get other versions; commit package-lock.json and use npm ci",
            );
            Manager::Npm
        }
        None => {
            report.note(
                pkg.at("name"),
                "no dependencies and no lockfile: no install step",
            );
            Manager::Npm
        }
    };
    match pkg.script("build") {
        Some(_) => {
            let step = match manager {
                Manager::Npm => "npm run build",
                Manager::Yarn => "yarn build",
                Manager::Pnpm => "pnpm run build",
                Manager::Bun => "bun run build",
            };
            guess.steps.push(step.into());
            report.note(
                pkg.at("build"),
                format!("build.steps: {step} (a build script)"),
            );
        }
        None => report.note(
            pkg.path
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
            "no build script: no build step",
        ),
    }
    guess
}

/// `script: npm` (or yarn, pnpm) with `args: start` / `run NAME`: what package.json's script
/// runs, when it is `node FILE ARGS` or `next ARGS`, so pm2 runs (and reloads, and counts
/// restarts of) the app itself rather than the package manager. Else the process is left
/// as it is: a warning in fork mode, an error in cluster mode, where pm2 cannot run npm.
pub fn package_manager_script(t: &mut Translated, pkg: &Package, at: &str, report: &mut Report) {
    use shipshape_spec::app::{ExecMode, StringOrList};
    let p = &mut t.process;
    if !matches!(p.script.as_str(), "npm" | "yarn" | "pnpm" | "bun") {
        return;
    }
    let args: Vec<String> = match &p.args {
        Some(StringOrList::One(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(StringOrList::List(l)) => l.clone(),
        None => Vec::new(),
    };
    let name = match args.as_slice() {
        [one] => one.clone(),
        [run, one] if run == "run" || run == "run-script" => one.clone(),
        _ => String::new(),
    };
    let cluster =
        p.exec_mode == Some(ExecMode::Cluster) || (p.exec_mode.is_none() && p.instances.is_some());
    let manager = p.script.clone();
    let line = pkg.script(&name).map(str::to_string);
    let plain = line.as_deref().filter(|l| {
        !l.contains(['&', '|', ';', '>', '<', '$', '`', '"', '\'']) && !l.contains("NODE_ENV=")
    });
    let words: Vec<&str> = plain.map_or(Vec::new(), |l| l.split_whitespace().collect());
    let written = match words.as_slice() {
        ["node", file, rest @ ..] if !file.starts_with('-') => Some((file.to_string(), rest)),
        ["next", rest @ ..] => Some(("node_modules/next/dist/bin/next".to_string(), rest)),
        _ => None,
    };
    match written {
        Some((file, rest)) => {
            report.note(
                at,
                format!(
                    "{manager} {} runs {:?} ({}): written as script: {file}{}, so pm2 runs the app itself, not {manager}",
                    args.join(" "),
                    line.clone().unwrap_or_default(),
                    pkg.at(&name),
                    if rest.is_empty() { String::new() } else { format!(", args: {}", rest.join(" ")) }
                ),
            );
            p.script = file.trim_start_matches("./").to_string();
            p.args = (!rest.is_empty()).then(|| StringOrList::One(rest.join(" ")));
        }
        None if cluster => report.error(
            at,
            format!(
                "{manager} in cluster mode: pm2 forks {manager} itself into workers, which cannot serve (it restarts until it gives up); set script to the file the {name:?} script starts (e.g. script: server.js) or exec_mode: fork"
            ),
        ),
        None => report.warn(
            at,
            format!(
                "{manager} kept: pm2 runs {manager}, not the app, so a reload restarts {manager} and the app's crash counts as {manager}'s; set script to the app's entry file when you can"
            ),
        ),
    }
}

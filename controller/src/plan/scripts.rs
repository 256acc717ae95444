//! The npm scripts a document's commands run (`npm run build`, `yarn build`, `pnpm run
//! build` …) against the `scripts` of the release's `package.json`: a script that is not
//! there is a blocker before anything runs, naming the script, the command and the commit,
//! instead of npm's "Missing script" at the end of a failed build. Pure: the package.json
//! text is read by the observer ([`PackageScripts`]).

use std::collections::BTreeSet;

use shipshape_spec::App;

use super::short_sha;

/// What is known of the `scripts` of `package.json` at the desired commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PackageScripts {
    /// Not looked at: no release is prepared, or no command runs an npm script.
    #[default]
    NotObserved,
    /// It could not be read (why): the scripts are not checked.
    NotChecked(String),
    /// The commit has no `package.json`.
    NoPackageJson,
    /// It does not parse as JSON (the parser's words).
    Unreadable(String),
    /// The names of its scripts.
    Known(BTreeSet<String>),
}

impl PackageScripts {
    /// Read from `text`, a `package.json` (`None`: there is none).
    pub fn of(text: Option<&str>) -> PackageScripts {
        let Some(text) = text else {
            return PackageScripts::NoPackageJson;
        };
        match serde_json::from_str::<serde_json::Value>(text) {
            Err(e) => PackageScripts::Unreadable(e.to_string()),
            Ok(v) => PackageScripts::Known(
                v.get("scripts")
                    .and_then(|s| s.as_object())
                    .map(|s| s.keys().cloned().collect())
                    .unwrap_or_default(),
            ),
        }
    }
}

/// yarn's own commands: `yarn <one of these>` is not a script (`yarn X` otherwise runs
/// script X).
const YARN_COMMANDS: &[&str] = &[
    "add",
    "audit",
    "autoclean",
    "bin",
    "cache",
    "check",
    "config",
    "constraints",
    "create",
    "dedupe",
    "dlx",
    "exec",
    "explain",
    "generate-lock-entry",
    "global",
    "help",
    "import",
    "info",
    "init",
    "install",
    "licenses",
    "link",
    "list",
    "login",
    "logout",
    "node",
    "npm",
    "outdated",
    "owner",
    "pack",
    "patch",
    "plugin",
    "policies",
    "publish",
    "rebuild",
    "remove",
    "set",
    "tag",
    "team",
    "unlink",
    "unplug",
    "up",
    "upgrade",
    "upgrade-interactive",
    "version",
    "versions",
    "why",
    "workspace",
    "workspaces",
];

/// The npm scripts `command` runs, in order: `npm run X` / `npm run-script X`, `npm test`,
/// `yarn run X` / `yarn X` (X not one of yarn's own commands), `pnpm run X`, in each part of
/// a `&&`/`||`/`;` chain. A part that runs in another package (`--prefix`, `-C`, `--cwd`,
/// `--workspace`, `--filter`) is left out: its package.json is not the release's.
pub fn npm_scripts(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in command.split(['&', '|', ';']) {
        let words: Vec<&str> = part
            .split_whitespace()
            .skip_while(|w| is_assignment(w))
            .collect();
        let Some((tool, rest)) = words.split_first() else {
            continue;
        };
        if rest.iter().any(|w| elsewhere(w)) {
            continue;
        }
        let args: Vec<&str> = rest
            .iter()
            .copied()
            .filter(|w| !w.starts_with('-'))
            .collect();
        let script = match (*tool, args.as_slice()) {
            ("npm", ["run" | "run-script" | "rum" | "urn", s, ..]) => Some(*s),
            ("npm" | "pnpm", ["test" | "t" | "tst", ..]) => Some("test"),
            ("pnpm", ["run", s, ..]) => Some(*s),
            ("yarn", ["run", s, ..]) => Some(*s),
            ("yarn", [s, ..]) if !YARN_COMMANDS.contains(s) => Some(*s),
            _ => None,
        };
        if let Some(s) = script {
            out.push(s.to_string());
        }
    }
    out
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// A flag that points the package manager at another package.
fn elsewhere(word: &str) -> bool {
    let flag = word.split('=').next().unwrap_or(word);
    matches!(
        flag,
        "--prefix" | "-C" | "--cwd" | "--dir" | "--workspace" | "-w" | "--workspaces" | "--filter"
    )
}

/// Each of the document's commands that run npm scripts, with where it is written:
/// `(field path, command, scripts)`.
pub fn script_commands(app: &App) -> Vec<(String, String, Vec<String>)> {
    let b = &app.spec.build;
    let install = b
        .install
        .iter()
        .map(|c| ("spec.build.install".to_string(), c));
    let steps = b
        .steps
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.build.steps[{i}]"), c));
    let hooks = app
        .spec
        .hooks
        .after_switch
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.hooks.afterSwitch[{i}]"), c));
    install
        .chain(steps)
        .chain(hooks)
        .filter_map(|(at, c)| {
            let s = npm_scripts(c);
            (!s.is_empty()).then(|| (at, c.clone(), s))
        })
        .collect()
}

/// The problems of `app`'s npm scripts against what `package.json` at `commit` holds: one
/// line per missing script, naming it, the command and where it is written.
pub fn missing_scripts(app: &App, scripts: &PackageScripts) -> Vec<String> {
    let commit = &app.spec.source.commit;
    script_commands(app)
        .into_iter()
        .flat_map(|(at, command, wanted)| {
            wanted
                .iter()
                .filter_map(|s| missing(s, scripts, commit, &format!("{at}: `{command}`")))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The scripts `command` runs that `scripts` (package.json at `commit`) does not have, each
/// in words ([`missing`]).
pub fn missing_in_command(command: &str, scripts: &PackageScripts, commit: &str) -> Vec<String> {
    npm_scripts(command)
        .iter()
        .filter_map(|s| missing(s, scripts, commit, &format!("`{command}`")))
        .collect()
}

/// `script` missing from `scripts`, in words: `package.json at 3f2a1c9e0b7d has no script
/// "build" (<context>); its scripts: dev, start`. `None`: it is there, or not known.
pub fn missing(
    script: &str,
    scripts: &PackageScripts,
    commit: &str,
    context: &str,
) -> Option<String> {
    let commit = short_sha(commit);
    Some(match scripts {
        PackageScripts::Known(have) if have.contains(script) => return None,
        PackageScripts::Known(have) => format!(
            "package.json at {commit} has no script {script:?} ({context}); its scripts: {}",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        ),
        PackageScripts::NoPackageJson => {
            format!("the app has no package.json at {commit}, so no script {script:?} ({context})")
        }
        PackageScripts::Unreadable(e) => format!(
            "package.json at {commit} is not JSON ({e}), so no script {script:?} ({context})"
        ),
        PackageScripts::NotObserved | PackageScripts::NotChecked(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_a_command_runs_are_found_in_each_spelling() {
        for (command, want) in [
            ("npm run build", vec!["build"]),
            ("npm run-script build -- --debug", vec!["build"]),
            ("npm run --silent build", vec!["build"]),
            ("NODE_ENV=production npm run build", vec!["build"]),
            ("yarn build", vec!["build"]),
            ("yarn run build", vec!["build"]),
            ("yarn install --frozen-lockfile", vec![]),
            (
                "pnpm run build && pnpm run postbuild",
                vec!["build", "postbuild"],
            ),
            ("npm ci --no-audit", vec![]),
            ("npm start", vec![]),
            ("npm test -- --ci", vec!["test"]),
            ("npx prisma generate", vec![]),
            ("npm run build --prefix web", vec![]),
            ("pnpm --filter web run build", vec![]),
            ("npm run", vec![]),
        ] {
            assert_eq!(npm_scripts(command), want, "{command}");
        }
    }

    #[test]
    fn scripts_are_read_from_package_json() {
        assert_eq!(
            PackageScripts::of(Some(r#"{"scripts":{"start":"node s.js","dev":"x"}}"#)),
            PackageScripts::Known(["dev".to_string(), "start".to_string()].into())
        );
        assert_eq!(
            PackageScripts::of(Some(r#"{"name":"a"}"#)),
            PackageScripts::Known(BTreeSet::new())
        );
        assert_eq!(PackageScripts::of(None), PackageScripts::NoPackageJson);
        assert!(matches!(
            PackageScripts::of(Some("{")),
            PackageScripts::Unreadable(_)
        ));
    }
}

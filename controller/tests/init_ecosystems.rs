//! `shipshape init` on real-world ecosystem shapes: each case under
//! `tests/fixtures/ecosystems/<case>/` (an ecosystem file shaped after public repositories,
//! with the package.json and code its guesses read) is copied to a temp dir and run with
//! the flags in its `args` file (one per line). Its standard output must equal
//! `expected.yaml` (absent: init must fail and write nothing) and its standard error
//! `expected.stderr`, byte for byte; `UPDATE_GOLDEN=1` rewrites both. Every document made
//! must pass `shipshape validate`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_dir, shipshape_bin};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ecosystems")
}

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// `shipshape init ARGS` in `dir`: (exit code, stdout, stderr).
fn init(dir: &Path, args: &[String], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(shipshape_bin());
    cmd.arg("init")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("shipshape runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Compare `got` with the golden file (or rewrite it); a mismatch is described in `diffs`.
fn golden(path: &Path, got: Option<&str>, diffs: &mut Vec<String>) {
    if update() {
        match got {
            Some(text) => std::fs::write(path, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
        return;
    }
    let want = std::fs::read_to_string(path).ok();
    if want.as_deref() != got {
        diffs.push(format!(
            "{} differs (UPDATE_GOLDEN=1 rewrites it)\n--- want\n{}\n--- got\n{}",
            path.display(),
            want.as_deref().unwrap_or("(no file)"),
            got.unwrap_or("(nothing)")
        ));
    }
}

#[test]
fn every_real_world_ecosystem_shape_becomes_its_expected_document_and_report() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "a dozen shapes at least: {cases:?}");
    let tmp = tempfile::tempdir().unwrap();
    let mut diffs = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let dir = tmp.path().join(&name);
        copy_dir(case, &dir);
        for golden_file in ["expected.yaml", "expected.stderr", "args"] {
            let _ = std::fs::remove_file(dir.join(golden_file));
        }
        let args: Vec<String> = std::fs::read_to_string(case.join("args"))
            .unwrap_or_else(|_| panic!("{name}: no args file"))
            .lines()
            .map(str::to_string)
            .collect();
        let (code, stdout, stderr) = init(&dir, &args, &[]);
        let document = (code == 0).then_some(stdout.as_str());
        if code != 0 {
            assert!(
                stdout.is_empty(),
                "{name}: a failed init wrote a document:\n{stdout}"
            );
            assert_eq!(code, 1, "{name}: {stderr}");
        }
        golden(&case.join("expected.yaml"), document, &mut diffs);
        golden(&case.join("expected.stderr"), Some(&stderr), &mut diffs);
        if let Some(doc) = document {
            let file = dir.join("app.yaml");
            std::fs::write(&file, doc).unwrap();
            let out = Command::new(shipshape_bin())
                .args(["validate"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: shipshape validate refuses what init made:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

/// pm2's own schema, next to the pm2 the tests run.
fn pm2_schema() -> Option<serde_json::Value> {
    let bin = std::fs::canonicalize(common::pm2_bin()).ok()?;
    // node_modules/pm2/bin/pm2 -> node_modules/pm2/lib/API/schema.json
    let file = bin.parent()?.parent()?.join("lib/API/schema.json");
    serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()
}

#[test]
fn every_field_and_alias_in_pm2s_schema_has_a_deliberate_answer() {
    let schema = pm2_schema().expect("pm2's lib/API/schema.json beside the pm2 the tests run");
    let known = shipshape::init::fields::PM2_FIELDS;
    let mut missing = Vec::new();
    for (field, def) in schema.as_object().unwrap() {
        if field.contains('\\') || field.starts_with('^') {
            continue; // the env_<name> pattern, handled as --env blocks
        }
        let Some((_, aliases)) = known.iter().find(|(f, _)| f == field) else {
            missing.push(field.clone());
            continue;
        };
        let theirs: Vec<String> = match def.get("alias") {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        for alias in theirs {
            if !aliases.contains(&alias.as_str()) {
                missing.push(format!("{field} (alias {alias})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "pm2 fields init has no answer for: {missing:?}"
    );
    for (field, _) in known {
        assert!(
            schema.get(*field).is_some() || *field == "env_file",
            "{field} is not a pm2 field"
        );
    }
}

#[test]
fn output_writes_the_document_and_the_schema_and_never_replaces_or_writes_half() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    copy_dir(&cases_dir().join("express-esm-cjs"), &dir);
    std::fs::create_dir_all(dir.join("config/apps")).unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        [
            "ecosystem.config.cjs",
            "--repository",
            "https://git.example.com/acme/api.git",
            "--commit",
            "2222222222222222222222222222222222222222",
            "--output",
            "config/apps/api.yaml",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let (code, stdout, stderr) = init(&dir, &args(&[]), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.is_empty(),
        "with --output nothing goes to stdout: {stdout}"
    );
    let doc = std::fs::read_to_string(dir.join("config/apps/api.yaml")).unwrap();
    assert!(
        doc.starts_with("# yaml-language-server: $schema=app.schema.json\n"),
        "{doc}"
    );
    let schema = std::fs::read_to_string(dir.join("config/apps/app.schema.json")).unwrap();
    let printed = Command::new(shipshape_bin())
        .arg("schema")
        .output()
        .unwrap();
    assert_eq!(
        schema.as_bytes(),
        printed.stdout,
        "the schema beside it is the binary's"
    );
    assert!(
        stderr.contains("wrote config/apps/api.yaml and config/apps/app.schema.json"),
        "{stderr}"
    );

    // An existing document is not replaced without --force.
    std::fs::write(dir.join("config/apps/api.yaml"), "mine\n").unwrap();
    let (code, _, stderr) = init(&dir, &args(&[]), &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("exists: --force replaces it"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("config/apps/api.yaml")).unwrap(),
        "mine\n"
    );
    let (code, _, stderr) = init(&dir, &args(&["--force"]), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("config/apps/api.yaml")).unwrap(),
        doc
    );

    // With an error, nothing at all is written.
    let bad = tmp.path().join("bad");
    copy_dir(&cases_dir().join("refusals"), &bad);
    let out_args: Vec<String> = ["ecosystem.config.js", "--output", "out/app.yaml"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    std::fs::create_dir_all(bad.join("out")).unwrap();
    let (code, _, stderr) = init(&bad, &out_args, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("nothing written"), "{stderr}");
    assert_eq!(std::fs::read_dir(bad.join("out")).unwrap().count(), 0);
}

#[test]
fn the_operators_environment_never_reaches_the_document() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("ecosystem.config.js"),
        "module.exports = { apps: [{ name: 'api', script: 'a.js', env: { PORT: 3000, TOKEN: process.env.DEPLOY_TOKEN || 'unset' } }] };\n",
    )
    .unwrap();
    let args: Vec<String> = ["ecosystem.config.js", "--commit", &"3".repeat(40)]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (code, stdout, stderr) = init(tmp.path(), &args, &[("DEPLOY_TOKEN", "hunter2-secret")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stdout.contains("hunter2") && !stderr.contains("hunter2"),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("TOKEN: unset"), "{stdout}");
}

#[test]
fn the_repository_and_commit_are_read_from_git_when_not_given() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    copy_dir(&cases_dir().join("mjs-export-default"), &dir);
    for f in ["expected.yaml", "expected.stderr", "args"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    common::git(&dir, &["init", "-q", "-b", "main"]);
    common::git(&dir, &["add", "-A"]);
    common::git(&dir, &["commit", "-qm", "v1"]);
    let head = common::git(&dir, &["rev-parse", "HEAD"]);
    let (code, stdout, stderr) = init(&dir, &["ecosystem.config.mjs".to_string()], &[]);
    assert_eq!(code, 0, "{stderr}");
    let app = shipshape_spec::load_str(&stdout, "init.yaml").unwrap();
    assert_eq!(app.spec.source.commit, head);
    let top = std::fs::canonicalize(&dir).unwrap();
    assert_eq!(Path::new(&app.spec.source.repository), top);
    assert!(!stdout.contains("TODO: not a git"), "{stdout}");

    common::git(
        &dir,
        &[
            "remote",
            "add",
            "origin",
            "https://bot:s3cret@github.com/acme/edge.git",
        ],
    );
    let (code, stdout, stderr) = init(&dir, &["ecosystem.config.mjs".to_string()], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("repository: https://github.com/acme/edge.git\n"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "credentials leak"
    );
}

#[test]
fn a_file_that_does_not_load_is_reported_with_its_own_words_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("ecosystem.config.js"),
        "throw new Error('DATABASE_URL must be set to load this file');\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("ecosystem.yaml"),
        "apps:\n  - name: a\n   script: x\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("ecosystem.toml"), "").unwrap();
    for (file, says) in [
        (
            "ecosystem.config.js",
            "Error: DATABASE_URL must be set to load this file",
        ),
        ("ecosystem.yaml", "line 3"),
        (
            "ecosystem.toml",
            "pm2 reads ecosystem files named .js, .cjs, .mjs, .json, .yaml or .yml",
        ),
    ] {
        let (code, stdout, stderr) = init(tmp.path(), &[file.to_string()], &[]);
        assert_eq!(code, 1, "{file}: {stderr}");
        assert!(stdout.is_empty(), "{file}: {stdout}");
        assert!(stderr.contains(says), "{file}: {stderr}");
    }
}

//! Loading App documents: valid ones load; invalid ones fail with the file, line, column,
//! field path and message a person needs, and every semantic problem is reported at once.

use shipshape_spec::load_str;

const VALID: &str = r#"apiVersion: shipshape/v1alpha1
kind: App
metadata:
  name: demo
spec:
  source:
    repository: /srv/git/demo
    commit: 3f2a1c9e0b7d4c6a8e1f2a3b4c5d6e7f8a9b0c1d
  releases:
    root: /srv/demo
  processes:
    - name: demo-web
      script: server.js
      instances: max
      env:
        PORT: 3000
        DEBUG: false
  health:
    checks:
      - name: api
        http:
          url: http://127.0.0.1:3000/api/health
        timeout: 2s
"#;

fn errors(text: &str) -> Vec<String> {
    load_str(text, "apps/demo.yaml")
        .unwrap_err()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn a_minimal_document_loads_with_defaults() {
    let app = load_str(VALID, "apps/demo.yaml").unwrap();
    assert_eq!(app.metadata.name, "demo");
    assert_eq!(app.spec.releases.keep, 5);
    assert_eq!(app.spec.health.success_threshold, 3);
    assert_eq!(app.spec.health.interval.to_string(), "2s");
    assert_eq!(app.spec.processes[0].env["PORT"].as_text(), "3000");
    assert_eq!(app.spec.processes[0].env["DEBUG"].as_text(), "false");
    assert!(app.spec.rollback.auto);
}

#[test]
fn an_invalid_duration_names_file_line_column_and_path() {
    let text = VALID.replace("timeout: 2s", "timeout: 5 sec");
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:23:9: spec.health.checks[0].timeout: invalid duration \"5 sec\": expected groups like 500ms, 5s, 2m, 1h or 1m30s"
        ]
    );
}

#[test]
fn an_unknown_field_is_rejected_with_the_fields_that_exist() {
    let text = VALID.replace("    root: /srv/demo", "    root: /srv/demo\n    kepe: 3");
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:11:5: spec.releases.kepe: unknown field `kepe`, expected `root` or `keep`"
        ]
    );
}

#[test]
fn a_wrong_type_says_what_was_expected() {
    let text = VALID.replace("instances: max", "instances: lots");
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:14:7: spec.processes[0].instances: invalid value: string \"lots\", expected a positive integer or \"max\""
        ]
    );
    let text = VALID.replace("PORT: 3000", "PORT: [3000]");
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:16:9: spec.processes[0].env.PORT: invalid type: sequence, expected a string, an integer or a boolean"
        ]
    );
}

#[test]
fn malformed_yaml_is_located() {
    let text = VALID.replace("  processes:\n", "  processes: [\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("apps/demo.yaml:"), "{errs:?}");
    let parts: Vec<&str> = errs[0].splitn(4, ':').collect();
    assert!(
        parts[1].parse::<usize>().is_ok() && parts[2].parse::<usize>().is_ok(),
        "{errs:?}"
    );
}

#[test]
fn a_missing_field_names_its_parent() {
    let text = VALID.replace("    commit: 3f2a1c9e0b7d4c6a8e1f2a3b4c5d6e7f8a9b0c1d\n", "");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("spec.source: missing field `commit`"),
        "{errs:?}"
    );
}

#[test]
fn a_wrong_api_version_or_kind_is_refused() {
    let errs = errors(&VALID.replace("shipshape/v1alpha1", "shipshape/v2"));
    assert_eq!(
        errs,
        [
            "apps/demo.yaml:1:1: apiVersion: unknown variant `shipshape/v2`, expected `shipshape/v1alpha1`"
        ]
    );
    let errs = errors(&VALID.replace("kind: App", "kind: Deployment"));
    assert_eq!(
        errs,
        ["apps/demo.yaml:2:1: kind: unknown variant `Deployment`, expected `App`"]
    );
}

#[test]
fn every_semantic_problem_is_reported_at_once_in_document_order() {
    let text = VALID
        .replace("name: demo\n", "name: Demo_App\n")
        .replace("commit: 3f2a1c9e0b7d4c6a8e1f2a3b4c5d6e7f8a9b0c1d", "commit: main")
        .replace("root: /srv/demo", "root: srv/demo")
        .replace("script: server.js", "script: ../../etc/passwd")
        .replace("        timeout: 2s\n", "        timeout: 2s\n    successThreshold: 0\n")
        .replace(
            "    - name: demo-web\n",
            "    - name: twin\n      script: a.js\n    - name: twin\n      script: b.js\n    - name: demo-web\n",
        );
    let errs = errors(&text);
    assert_eq!(
        errs,
        [
            "apps/demo.yaml:4:3: metadata.name: \"Demo_App\" must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric",
            "apps/demo.yaml:8:5: spec.source.commit: \"main\" must be a full 40-character lowercase hex commit SHA (branches and short SHAs are not reproducible)",
            "apps/demo.yaml:10:5: spec.releases.root: \"srv/demo\" must be an absolute path",
            "apps/demo.yaml:14:7: spec.processes[1].name: \"twin\" is declared twice",
            "apps/demo.yaml:17:7: spec.processes[2].script: \"../../etc/passwd\" must be a path inside the release (relative, no '..')",
            "apps/demo.yaml:28:5: spec.health.successThreshold: must be at least 1",
        ]
    );
}

#[test]
fn duplicate_check_names_bad_urls_and_impossible_deadlines_are_caught() {
    let text = VALID
        .replace("url: http://127.0.0.1:3000/api/health", "url: localhost:3000/health")
        .replace("        timeout: 2s\n", "        timeout: 2s\n        maxLatency: 5s\n    interval: 10s\n    progressDeadline: 15s\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].contains("spec.health.checks[0].http.url: \"localhost:3000/health\" must be an http:// or https:// URL"));
    assert!(
        errs[1]
            .contains("spec.health.checks[0].maxLatency: 5s is longer than the check's timeout 2s")
    );
    assert!(errs[2].contains(
        "spec.health.progressDeadline: 15s leaves no time for 3 passing rounds 10s apart"
    ));
}

#[test]
fn migration_settings_must_fit_their_driver() {
    let base = VALID.replace(
        "  processes:\n",
        "  envFile: /etc/demo/env\n  migrations:\n    driver: prisma\n    level: 0001_init\n    onRevert: down\n  processes:\n",
    );
    let errs = errors(&base);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("spec.migrations.onRevert: prisma has no down-migrations"),
        "{errs:?}"
    );
    let errs = errors(&base.replace("driver: prisma", "driver: command"));
    assert!(
        errors(&base.replace("  envFile: /etc/demo/env\n", ""))
            .iter()
            .any(|e| e.contains("spec.migrations: driver prisma reads DATABASE_URL from envFile")),
    );
    assert!(
        errs[0].contains(
            "spec.migrations.command: driver: command needs command.status and command.up"
        ),
        "{errs:?}"
    );
}

#[test]
fn reserved_and_invalid_env_names_are_refused() {
    let text = VALID.replace(
        "        DEBUG: false\n",
        "        DEBUG: false\n        SHIPSHAPE_APP: x\n        1BAD: y\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains(
        "spec.processes[0].env.1BAD: \"1BAD\" is not a valid environment variable name"
    )));
    assert!(errs.iter().any(|e| e.contains("spec.processes[0].env.SHIPSHAPE_APP: names starting with SHIPSHAPE_ are set by the controller")));
}

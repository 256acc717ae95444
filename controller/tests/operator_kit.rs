//! The operator kit under examples/ stays valid: the systemd unit (`systemd-analyze verify`;
//! under CI a missing systemd-analyze fails the test),
//! the Prometheus rules (`promtool check rules`), the Grafana dashboard (valid JSON, only
//! metrics the controller exports), shell completions, and `shipshape init`.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::workspace;

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

/// Under CI (`CI=true`; hack/test.sh sets it, and installs the tools these checks need) a
/// missing tool fails the test: a check the docs name never passes by being skipped.
fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// `name` on PATH; when it is missing, a failure under CI, else `None` with a loud note.
fn tool_for_check(name: &str, check: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = which(name) {
        return Some(p);
    }
    assert!(
        !in_ci(),
        "{name} is not installed, so {check} cannot run; under CI it must (hack/test.sh installs it)"
    );
    eprintln!(
        "NOT CHECKED: {name} is not installed here, so {check} did not run (under CI=true this fails)"
    );
    None
}

#[test]
fn the_systemd_unit_keeps_its_restart_and_hardening_keys() {
    let unit =
        std::fs::read_to_string(workspace().join("examples/systemd/shipshape.service")).unwrap();
    for key in [
        "ExecStart=",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(key), "{key}");
    }
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool_for_check("systemd-analyze", "systemd-analyze verify of the unit")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Point ExecStart at the binary under test and the user at root, so verify can resolve them.
    let unit = std::fs::read_to_string(workspace().join("examples/systemd/shipshape.service"))
        .unwrap()
        .replace("/usr/local/bin/shipshape", env!("CARGO_BIN_EXE_shipshape"))
        .replace("User=deploy", "User=root")
        .replace("Group=deploy", "Group=root");
    assert!(unit.contains(env!("CARGO_BIN_EXE_shipshape")) && unit.contains("User=root"));
    let path = dir.path().join("shipshape.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Without a running systemd (containers, CI) verify still parses the unit; only
    // complaints about the unit itself count.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("shipshape.service"))
        .filter(|l| !l.contains("Failed to") || l.contains("parse"))
        .collect();
    assert!(problems.is_empty(), "{stderr}");
}

/// Run `promtool ARGS` in examples/monitoring; fail with its output unless it succeeds.
fn promtool(args: &[&str]) {
    let promtool =
        which("promtool").expect("promtool is needed (hack/test.sh installs Debian's prometheus)");
    let out = Command::new(promtool)
        .args(args)
        .current_dir(workspace().join("examples/monitoring"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_pass_promtool() {
    promtool(&["check", "rules", "alerts.yml"]);
    let rules =
        std::fs::read_to_string(workspace().join("examples/monitoring/alerts.yml")).unwrap();
    for alert in [
        "ShipshapeRolloutFailed",
        "ShipshapeReverted",
        "ShipshapeDegraded",
        "ShipshapeSourceFailing",
        "ShipshapePinnedTooLong",
        "ShipshapeWaveHeldByFailure",
        "ShipshapeWaveHeldTooLong",
    ] {
        assert!(rules.contains(alert), "missing {alert}");
    }
    assert_only_exported_metrics("alerts.yml", &rules);
}

/// The wave alerts fire as they should (promtool's rule unit tests): held by a failure at
/// once, held past `alertAfter` only once the bound is passed.
#[test]
fn the_wave_alerts_fire_on_a_failure_and_past_the_bound() {
    promtool(&["test", "rules", "alerts.test.yml"]);
}

fn assert_only_exported_metrics(what: &str, text: &str) {
    let exported: BTreeSet<&str> = shipshape::runtime::metrics::METRICS
        .iter()
        .map(|(n, _, _)| *n)
        .collect();
    let mut used = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("shipshape_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        used.insert(&text[start..end]);
        i = end;
    }
    assert!(!used.is_empty(), "{what} uses no shipshape metric");
    for m in &used {
        assert!(
            exported.contains(m),
            "{what} uses {m}, which the controller does not export"
        );
    }
}

#[test]
fn the_dashboard_is_valid_json_over_exported_metrics() {
    let text =
        std::fs::read_to_string(workspace().join("examples/monitoring/grafana-dashboard.json"))
            .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string())
        })
        .collect();
    assert_only_exported_metrics("the dashboard", &exprs.join("\n"));
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_shipshape"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("shipshape") && text.contains("unpin"),
            "{shell}"
        );
    }
}

#[test]
fn init_turns_the_prompthub_ecosystem_file_into_a_valid_document() {
    let out = Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args([
            "init",
            "examples/prompthub/ecosystem.config.js",
            "--repository",
            "https://git.example.com/acme/prompthub.git",
        ])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let app = shipshape_spec::load_str(&text, "init.yaml").unwrap();
    assert_eq!(app.metadata.name, "prompthub");
    let p = &app.spec.processes[0];
    assert_eq!(p.script, "node_modules/next/dist/bin/next");
    assert_eq!(p.exec_mode, Some(shipshape_spec::app::ExecMode::Cluster));
    assert_eq!(
        p.cwd, None,
        "an absolute cwd must not survive (paths are relative to the release)"
    );
    // examples/prompthub holds no code to read a route from: `/` on the env's PORT, with a
    // TODO saying what to set.
    assert_eq!(
        app.spec.health.checks[0].http().unwrap().url,
        "http://127.0.0.1:3000/"
    );
    assert!(
        text.contains("      # TODO: no health route found"),
        "{text}"
    );
}

//! Traps `validate` and `plan` catch before a rollout: a package manager as a cluster-mode
//! script (refused), as a fork-mode script whose memory is watched (warned), a health URL on
//! a port no process listens on (warned), and a field-name typo (the nearest field named).

mod common;

use common::errors;

use shipshape_spec::load::load_str_warned;

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
      instances: 2
      exec_mode: cluster
      env:
        PORT: 3000
  health:
    checks:
      - name: api
        http:
          url: http://127.0.0.1:3000/api/health
        timeout: 2s
"#;

fn warnings(text: &str) -> Vec<String> {
    let (_, warnings) = load_str_warned(text, "apps/demo.yaml")
        .unwrap_or_else(|e| panic!("the document loads: {e}"));
    warnings.iter().map(|p| p.to_string()).collect()
}

#[test]
fn the_fixture_loads_without_warnings() {
    assert_eq!(warnings(VALID), Vec::<String>::new());
}

#[test]
fn a_package_manager_in_cluster_mode_is_refused_with_the_reason_and_the_fix() {
    for script in ["npm", "yarn", "pnpm", "npx", "node_modules/.bin/npm"] {
        let text = VALID.replace(
            "      script: server.js\n",
            &format!("      script: {script}\n      args: start\n"),
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{script}: {errs:?}");
        let e = &errs[0];
        assert!(
            e.starts_with(&format!(
                "apps/demo.yaml:13:7: spec.processes[0].script: \"{script} start\" cannot run in cluster mode"
            )),
            "{e}"
        );
        assert!(e.contains("node's cluster module"), "the reason: {e}");
        assert!(
            e.contains("script: node_modules/.bin/next, args: start")
                && e.contains("script: server.js")
                && e.contains("exec_mode: fork"),
            "the fixes: {e}"
        );
    }
}

#[test]
fn a_package_manager_in_fork_mode_loads_and_is_warned_about_only_when_pm2_measures_it() {
    let fork = VALID
        .replace(
            "      script: server.js\n",
            "      script: npm\n      args: start\n",
        )
        .replace("      instances: 2\n      exec_mode: cluster\n", "");
    assert_eq!(warnings(&fork), Vec::<String>::new(), "nothing measured");
    let measured = fork.replace(
        "      env:\n",
        "      max_memory_restart: 300M\n      env:\n",
    );
    assert_eq!(
        warnings(&measured),
        [
            "apps/demo.yaml:13:7: spec.processes[0].script: pm2 measures the process it started, npm's CLI wrapper, not the server it runs as a child: max_memory_restart sees the wrapper's memory and CPU. Run the server itself (e.g. script: node_modules/.bin/next, args: start, or your server file)"
        ]
    );
}

#[test]
fn a_health_url_on_a_port_no_process_listens_on_is_warned_about_naming_the_ports() {
    let text = VALID.replace("127.0.0.1:3000/api/health", "127.0.0.1:4000/api/health");
    assert_eq!(
        warnings(&text),
        [
            "apps/demo.yaml:22:11: spec.health.checks[0].http.url: \"http://127.0.0.1:4000/api/health\" probes port 4000, where no process of this app listens (the processes' PORTs: demo-web: PORT=3000): the check would fail every round"
        ]
    );
    // Where the scheme's port is meant, it is the one compared.
    let text = VALID.replace("127.0.0.1:3000/api/health", "localhost/api/health");
    assert!(warnings(&text)[0].contains("probes port 80"), "{text}");
    // Another host is its own business; and with no PORT declared, nothing is known.
    let other = VALID.replace("127.0.0.1:3000", "status.example.com:9000");
    assert_eq!(warnings(&other), Vec::<String>::new());
    let unset = text.replace("      env:\n        PORT: 3000\n", "");
    assert_eq!(warnings(&unset), Vec::<String>::new());
    // A second process's PORT counts.
    let two = VALID
        .replace("127.0.0.1:3000/api/health", "127.0.0.1:3001/api/health")
        .replace(
            "  health:\n",
            "    - name: demo-admin\n      script: admin.js\n      env:\n        PORT: 3001\n  health:\n",
        );
    assert_eq!(warnings(&two), Vec::<String>::new());
}

#[test]
fn with_traffic_a_health_url_is_compared_with_the_public_address() {
    let traffic = VALID
        .replace(
            "  processes:",
            "  traffic:\n    via: nginx\n    public: http://127.0.0.1:8080\n    ports: [3100, 3101]\n    upstreamFile: /etc/nginx/shipshape/demo.conf\n    confirmPort: 8099\n  processes:",
        )
        .replace("      env:\n        PORT: 3000\n", "")
        .replace("    root: /srv/demo\n", "    root: /srv/demo\n    keep: 3\n");
    let public = traffic.replace("127.0.0.1:3000/api/health", "127.0.0.1:8080/api/health");
    assert_eq!(warnings(&public), Vec::<String>::new());
    let w = warnings(&traffic);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("probes port 3000")
            && w[0].contains("spec.traffic.public (http://127.0.0.1:8080, port 8080)")
            && w[0].contains("the slots' PORTs are [3100, 3101]"),
        "{w:?}"
    );
}

#[test]
fn a_typo_in_a_field_name_names_the_nearest_field_and_not_all_of_them() {
    let text = VALID.replace("instances: 2", "instaces: 2");
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:14:7: spec.processes[0].instaces: unknown field `instaces`: did you mean `instances`?"
        ]
    );
    // Nothing close: no guess, and no list of every process field either.
    let text = VALID.replace("instances: 2", "replicas: 2");
    let errs = errors(&text);
    assert_eq!(
        errs,
        [format!(
            "apps/demo.yaml:14:7: spec.processes[0].replicas: unknown field `replicas` (none of the {} fields here is close; `shipshape schema` lists them)",
            errs[0]
                .split("none of the ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("?")
        )]
    );
    assert!(!errs[0].contains("`script`"), "{errs:?}");
    // A camelCase field written in pm2's or another spelling.
    let text = VALID.replace("timeout: 2s", "time_out: 2s");
    assert!(
        errors(&text)[0].ends_with("did you mean `timeout`?"),
        "{:?}",
        errors(&text)
    );
}

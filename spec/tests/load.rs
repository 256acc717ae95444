//! Loading App documents: valid ones load; invalid ones fail with the file, line, column,
//! field path and message a person needs, and every semantic problem is reported at once.

mod common;

use common::errors;

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
fn an_unknown_field_is_rejected_with_the_nearest_field_that_exists() {
    let text = VALID.replace("    root: /srv/demo", "    root: /srv/demo\n    kepe: 3");
    assert_eq!(
        errors(&text),
        ["apps/demo.yaml:11:5: spec.releases.kepe: unknown field `kepe`: did you mean `keep`?"]
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

/// `VALID` with a second check, `name: resources`, whose body is `body` (YAML lines at
/// the check's indentation, i.e. 8 spaces). The check starts on line 24.
fn with_resources_check(body: &str) -> String {
    VALID.replace(
        "        timeout: 2s\n",
        &format!("        timeout: 2s\n      - name: resources\n{body}"),
    )
}

#[test]
fn a_resources_check_loads_with_percent_and_binary_sizes() {
    let text = with_resources_check(
        "        resources:\n          maxCpu: 80%\n          maxMemory: 800M\n          per: app\n",
    );
    let app = load_str(&text, "apps/demo.yaml").unwrap();
    let check = &app.spec.health.checks[1];
    assert!(check.http().is_none() && check.prometheus().is_none());
    let res = check.resources().unwrap();
    assert_eq!(res.max_cpu.unwrap().value(), 80.0);
    assert_eq!(res.max_memory.unwrap().bytes(), 800 * 1024 * 1024);
    assert_eq!(res.per, shipshape_spec::app::ResourcesPer::App);

    // Flow style, one limit, the default `per`, explicit binary units and fractions.
    for (limits, bytes) in [
        ("{ maxMemory: 512Mi }", Some(512u64 << 20)),
        ("{ maxMemory: 1.5G }", Some(1536 << 20)),
        ("{ maxMemory: 1G, maxCpu: 12.5% }", Some(1 << 30)),
        ("{ maxCpu: 150% }", None),
    ] {
        let text = with_resources_check(&format!("        resources: {limits}\n"));
        let app = load_str(&text, "apps/demo.yaml").unwrap_or_else(|e| panic!("{limits}: {e}"));
        let res = app.spec.health.checks[1].resources().cloned().unwrap();
        assert_eq!(res.max_memory.map(|m| m.bytes()), bytes, "{limits}");
        assert_eq!(
            res.per,
            shipshape_spec::app::ResourcesPer::Instance,
            "{limits}"
        );
    }
    // It serializes back to the same words.
    let yaml = shipshape_spec::load::to_yaml(&app.spec.health.checks[1]);
    assert!(
        yaml.contains("maxCpu: 80%")
            && yaml.contains("maxMemory: 800M")
            && yaml.contains("per: app"),
        "{yaml}"
    );
}

#[test]
fn a_malformed_limit_names_file_line_column_and_path() {
    let cases = [
        (
            "        resources: { maxMemory: 800MB }\n",
            "apps/demo.yaml:25:22: spec.health.checks[1].resources.maxMemory: invalid size \"800MB\": expected a number and a binary unit K, M, G or T (or Ki, Mi, Gi, Ti), e.g. 800M, 1.5G or 512Mi",
        ),
        (
            "        resources:\n          maxMemory: 800\n",
            "apps/demo.yaml:26:11: spec.health.checks[1].resources.maxMemory: 800: a size needs a unit, e.g. 800M or 1G",
        ),
        (
            "        resources:\n          maxCpu: 80\n",
            "apps/demo.yaml:26:11: spec.health.checks[1].resources.maxCpu: 80: a percentage needs its % sign, e.g. 80%",
        ),
        (
            "        resources:\n          maxCpu: 80 percent\n",
            "apps/demo.yaml:26:11: spec.health.checks[1].resources.maxCpu: invalid percentage \"80 percent\": expected a number and a % sign, e.g. 80% or 12.5%",
        ),
        (
            "        resources:\n          maxCpu: 80%\n          per: process\n",
            "apps/demo.yaml:27:11: spec.health.checks[1].resources.per: unknown variant `process`, expected `instance` or `app`",
        ),
        (
            "        resources:\n          maxCPU: 80%\n",
            "apps/demo.yaml:26:11: spec.health.checks[1].resources.maxCPU: unknown field `maxCPU`: did you mean `maxCpu`?",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(errors(&with_resources_check(body)), [want], "{body}");
    }
}

#[test]
fn a_resources_check_needs_a_positive_limit_and_no_other_kind() {
    let errs = errors(&with_resources_check("        resources: {}\n"));
    assert_eq!(
        errs,
        [
            "apps/demo.yaml:25:9: spec.health.checks[1].resources: needs a limit: maxCpu, maxMemory or both"
        ]
    );
    let errs = errors(&with_resources_check(
        "        resources:\n          maxCpu: 0%\n          maxMemory: 0K\n        maxLatency: 100ms\n",
    ));
    assert_eq!(
        errs,
        [
            "apps/demo.yaml:26:11: spec.health.checks[1].resources.maxCpu: must be more than 0%",
            "apps/demo.yaml:27:11: spec.health.checks[1].resources.maxMemory: must be more than 0 (at least 1K)",
            "apps/demo.yaml:28:9: spec.health.checks[1].maxLatency: a resources check reads what pm2 reports: it has no latency",
        ]
    );
    // Two kinds in one check, and none at all.
    let errs = errors(&with_resources_check(
        "        resources: { maxCpu: 80% }\n        http: { url: http://127.0.0.1:3000/ }\n",
    ));
    assert_eq!(
        errs,
        [
            "apps/demo.yaml:24:9: spec.health.checks[1]: needs exactly one of http, prometheus or resources"
        ]
    );
    let errs = errors(&with_resources_check("        timeout: 1s\n"));
    assert_eq!(
        errs,
        [
            "apps/demo.yaml:24:9: spec.health.checks[1]: needs exactly one of http, prometheus or resources"
        ]
    );
}

/// `VALID` with the process named `name` (quoted, so numbers stay strings).
fn with_process_name(name: &str) -> String {
    VALID.replace(
        "    - name: demo-web\n",
        &format!("    - name: \"{name}\"\n"),
    )
}

#[test]
fn process_names_pm2_reads_as_something_else_are_refused() {
    let cases = [
        (
            "all",
            "\"all\" is reserved: pm2 reads it as every process (`pm2 delete all` would delete other apps' processes)",
        ),
        (
            "default",
            "\"default\" is reserved: pm2 reads a name it cannot find as a namespace, and \"default\" is the namespace of every process not given one",
        ),
        (
            "api.json",
            "\"api.json\" contains \".json\": pm2 reads such a name as the path of an ecosystem file",
        ),
        (
            "api.config.js",
            "\"api.config.js\" contains \".config.js\": pm2 reads such a name as the path of an ecosystem file",
        ),
        (
            "web.yml-2",
            "\"web.yml-2\" contains \".yml\": pm2 reads such a name as the path of an ecosystem file",
        ),
        (
            "web.yaml",
            "\"web.yaml\" contains \".yaml\": pm2 reads such a name as the path of an ecosystem file",
        ),
        (
            "42",
            "\"42\" is a number to pm2, which reads it as a process id (another app's process)",
        ),
    ];
    for (name, why) in cases {
        assert_eq!(
            errors(&with_process_name(name)),
            [format!(
                "apps/demo.yaml:12:7: spec.processes[0].name: {why}"
            )],
            "{name}"
        );
    }
    // JavaScript's idea of a number, which pm2 uses (`isNaN`), is wider than digits.
    for name in ["1.5", "1e3", "0x1f", "0b101", "0o17", "Infinity", "7."] {
        let errs = errors(&with_process_name(name));
        assert!(
            errs.len() == 1
                && errs[0].ends_with("which reads it as a process id (another app's process)"),
            "{name}: {errs:?}"
        );
    }
    // Names that merely look like them are fine.
    for name in [
        "all-web", "defaults", "json", "web.js", "api-1", "1a", "v1.2", "NaN", "0x", "1e",
    ] {
        load_str(&with_process_name(name), "apps/demo.yaml")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn instances_are_capped() {
    assert_eq!(
        errors(&VALID.replace("instances: max", "instances: 4294967295")),
        [
            "apps/demo.yaml:14:7: spec.processes[0].instances: 4294967295 is more than 1024, the most instances of one process"
        ]
    );
    load_str(
        &VALID.replace("instances: max", "instances: 1024"),
        "apps/demo.yaml",
    )
    .unwrap();
}

#[test]
fn nul_bytes_and_line_breaks_are_refused_in_paths_names_urls_and_env() {
    const NUL: &str = "contains a NUL byte: no path, URL, name or environment value can hold one";
    const LINE: &str = "contains a line break: a path, URL, name or environment value is one line (git, pm2 and logs read them line by line)";
    let cases = [
        (
            "    root: /srv/demo\n",
            "    root: \"/srv/demo\\0x\"\n",
            format!("apps/demo.yaml:10:5: spec.releases.root: {NUL}"),
        ),
        (
            "    root: /srv/demo\n",
            "    root: \"/srv/demo\\nx\"\n",
            format!("apps/demo.yaml:10:5: spec.releases.root: {LINE}"),
        ),
        (
            "    repository: /srv/git/demo\n",
            "    repository: \"/srv/git/demo\\0x\"\n",
            format!("apps/demo.yaml:7:5: spec.source.repository: {NUL}"),
        ),
        (
            "        PORT: 3000\n",
            "        PORT: \"3000\\nEVIL=1\"\n",
            format!("apps/demo.yaml:16:9: spec.processes[0].env.PORT: {LINE}"),
        ),
        (
            "        PORT: 3000\n",
            "        PORT: \"3000\\0\"\n",
            format!("apps/demo.yaml:16:9: spec.processes[0].env.PORT: {NUL}"),
        ),
        (
            "      script: server.js\n",
            "      script: \"server.js\\nx\"\n",
            format!("apps/demo.yaml:13:7: spec.processes[0].script: {LINE}"),
        ),
        (
            "      script: server.js\n",
            "      script: server.js\n      interpreter: \"node\\0\"\n",
            format!("apps/demo.yaml:14:7: spec.processes[0].interpreter: {NUL}"),
        ),
        (
            "  processes:\n",
            "  envFile: \"/etc/demo\\r\"\n  processes:\n",
            format!("apps/demo.yaml:11:3: spec.envFile: {LINE}"),
        ),
    ];
    for (from, to, want) in cases {
        assert_eq!(errors(&VALID.replace(from, to)), [want], "{to}");
    }
}

#[test]
fn health_urls_must_parse_as_http_or_https() {
    let at = "apps/demo.yaml:22:11: spec.health.checks[0].http.url";
    for (url, why) in [
        ("http://127.0.0.1:99999/api/health", ": invalid port number"),
        ("http://[::1/api/health", ": invalid IPv6 address"),
        ("http://a:b:c/", ": invalid port number"),
        ("ftp://127.0.0.1/api/health", ""),
    ] {
        let text = VALID.replace("http://127.0.0.1:3000/api/health", url);
        assert_eq!(
            errors(&text),
            [format!(
                "{at}: {url:?} must be an http:// or https:// URL{why}"
            )]
        );
    }
    for url in ["https://[::1]:8443/health", "http://localhost/x?y=1#z"] {
        let text = VALID.replace("http://127.0.0.1:3000/api/health", url);
        load_str(&text, "apps/demo.yaml").unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn pm2_log_files_stay_in_the_release_or_under_the_releases_root() {
    let with = |field: &str, value: &str| {
        VALID.replace(
            "      script: server.js\n",
            &format!("      script: server.js\n      {field}: {value}\n"),
        )
    };
    for ok in [
        "logs/out.log",
        "./out.log",
        "/srv/demo/logs/out.log",
        "/dev/null",
        "NULL",
    ] {
        load_str(&with("out_file", ok), "apps/demo.yaml").unwrap_or_else(|e| panic!("{ok}: {e}"));
        load_str(&with("error_file", ok), "apps/demo.yaml").unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "/etc/cron.d/x",
        "../out.log",
        "logs/../../out.log",
        "~/out.log",
        "/srv/demo/../etc/x",
        "/srv/demo-other/out.log",
        "/srv/demo",
    ] {
        assert_eq!(
            errors(&with("error_file", bad)),
            [format!(
                "apps/demo.yaml:14:7: spec.processes[0].error_file: {bad:?} must be a path inside the release (relative, no '..' or '~') or under spec.releases.root (/srv/demo), or /dev/null"
            )],
            "{bad}"
        );
    }
}

#[test]
fn build_caches_default_to_none_and_must_stay_inside_the_release_outside_node_modules() {
    let app = load_str(VALID, "apps/demo.yaml").unwrap();
    assert!(app.spec.build.cache.is_empty());
    let text = VALID.replace(
        "  processes:\n",
        "  build:\n    cache: [.next/cache, ../shared/cache, node_modules/.cache, .]\n  processes:\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    for (i, e) in errs.iter().enumerate() {
        assert!(
            e.contains(&format!("spec.build.cache[{}]", i + 1))
                && e.contains("must be a directory inside the release"),
            "{e}"
        );
    }
    let ok = VALID.replace(
        "  processes:\n",
        "  build:\n    cache: [.next/cache]\n  processes:\n",
    );
    assert_eq!(
        load_str(&ok, "apps/demo.yaml").unwrap().spec.build.cache,
        [".next/cache"]
    );
}

#[test]
fn every_kind_of_check_is_written_back_under_the_key_it_was_read_from() {
    use shipshape_spec::app::CheckKind;
    let prometheus = "        prometheus:\n          url: http://127.0.0.1:9090\n          query: up\n          below: 1.5\n";
    for (body, key) in [
        ("        http: { url: http://127.0.0.1:3000/ }\n", "http"),
        (prometheus, "prometheus"),
        ("        resources: { maxCpu: 80% }\n", "resources"),
    ] {
        let app = load_str(&with_resources_check(body), "apps/demo.yaml")
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let check = &app.spec.health.checks[1];
        let read = match &check.kind {
            CheckKind::Http(_) => "http",
            CheckKind::Prometheus(_) => "prometheus",
            CheckKind::Resources(_) => "resources",
        };
        assert_eq!(read, key);
        let yaml = shipshape_spec::load::to_yaml(check);
        assert!(
            yaml.starts_with("name: resources\n") && yaml.contains(&format!("\n{key}:\n")),
            "{yaml}"
        );
        let again = shipshape_spec::load::to_yaml(&app);
        assert_eq!(load_str(&again, "again.yaml").unwrap(), app, "{again}");
    }
}

/// `VALID` with a `spec.traffic` section (and `keep`) as given, `PORT` left in or not.
fn with_traffic(traffic: &str, keep_port: bool) -> String {
    let mut text = VALID.replace(
        "  processes:",
        &format!("  traffic:\n{traffic}  processes:"),
    );
    if !keep_port {
        text = text.replace("        PORT: 3000\n", "");
    }
    text.replace("instances: max", "instances: 1")
}

/// [`with_traffic`] with the check on the public address (the valid way).
fn with_traffic_public(traffic: &str, keep_port: bool) -> String {
    with_traffic(traffic, keep_port).replace(
        "http://127.0.0.1:3000/api/health",
        "http://127.0.0.1:8080/api/health",
    )
}

const TRAFFIC: &str = "    via: nginx\n    public: http://127.0.0.1:8080\n    ports: [3000, 3001]\n    upstreamFile: /etc/nginx/shipshape/demo.conf\n    confirmPort: 8099\n";

#[test]
fn a_traffic_section_loads_with_its_defaults() {
    let app = load_str(&with_traffic_public(TRAFFIC, false), "apps/demo.yaml").unwrap();
    let t = app.spec.traffic.expect("traffic");
    assert_eq!(t.warm_for.to_string(), "5m");
    assert_eq!(t.drain_timeout.to_string(), "30s");
    assert_eq!(t.nginx.binary, "nginx");
    assert_eq!(t.upstream_name("demo-app"), "shipshape_demo_app");
    assert_eq!(t.serving(&app.spec.processes).unwrap().name, "demo-web");
}

#[test]
fn traffic_refuses_a_port_the_process_sets_itself_two_equal_ports_and_a_bad_public_address() {
    let errs = errors(&with_traffic(TRAFFIC, true));
    assert!(
        errs.iter().any(
            |e| e.contains("spec.processes[0].env.PORT: set by the controller in traffic mode")
        ),
        "{errs:?}"
    );
    let same = TRAFFIC.replace("[3000, 3001]", "[3000, 3000]");
    let errs = errors(&with_traffic(&same, false));
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.traffic.ports: [3000, 3000] must be two different ports")),
        "{errs:?}"
    );
    let public = TRAFFIC.replace("http://127.0.0.1:8080", "127.0.0.1:8080");
    let errs = errors(&with_traffic(&public, false));
    assert!(
        errs.iter().any(|e| e.contains("spec.traffic.public")),
        "{errs:?}"
    );
    let clash = TRAFFIC.replace("confirmPort: 8099", "confirmPort: 3001");
    let errs = errors(&with_traffic(&clash, false));
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.traffic.ports[1]: 3001 is also spec.traffic.confirmPort")),
        "{errs:?}"
    );
    let text = with_traffic(TRAFFIC, false).replace(
        "    root: /srv/demo\n",
        "    root: /srv/demo\n    keep: 1\n",
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.releases.keep: 1 is too few with spec.traffic")),
        "{errs:?}"
    );
    let fork_many = with_traffic_public(TRAFFIC, false).replace("instances: 1", "instances: 2");
    let errs = errors(&fork_many);
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.processes[0].instances: in fork mode each instance")),
        "{errs:?}"
    );
    let cluster_many = fork_many.replace("instances: 2", "instances: 2\n      exec_mode: cluster");
    assert!(load_str(&cluster_many, "apps/demo.yaml").is_ok());
    // VALID's check probes 127.0.0.1:3000, one of the slot ports.
    let errs = errors(&with_traffic(TRAFFIC, false));
    assert!(
        errs.iter().any(|e| e.contains("spec.health.checks[0].http.url: \"http://127.0.0.1:3000/api/health\" probes slot port 3000 directly")),
        "{errs:?}"
    );
    let unknown = format!("{TRAFFIC}    process: nope\n");
    let errs = errors(&with_traffic(&unknown, false));
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.traffic.process: \"nope\" is not one of spec.processes")),
        "{errs:?}"
    );
}

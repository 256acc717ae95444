//! Loading App documents with a `spec.rollout` through the real loader: every problem in the
//! waves, the Prometheus URL and the time limits is reported with its file, line, column and
//! field path (all at once when there are several); a valid document with every field loads
//! as written, and one with only the required fields gets the defaults.

mod common;

use common::{HEAD, errors};

use shipshape_spec::load_str;
use shipshape_spec::quantity::Percent;
use shipshape_spec::rollout::MaxParallel;

/// The end of a valid document without a rollout, after [`HEAD`]; [`doc`] appends one.
const HEALTH: &str = r#"  health:
    checks:
      - name: api
        http:
          url: http://127.0.0.1:3000/api/health
"#;

/// A valid document with `rollout` (indented under `spec:`) appended: its first line is
/// line 19.
fn doc(rollout: &str) -> String {
    format!("{HEAD}{HEALTH}{rollout}")
}

/// A rollout whose Prometheus is `prometheus` and whose only wave, `canary` (line 22),
/// has `wave` appended (fields at line 23 on, indented 8).
fn one_wave(prometheus: &str, wave: &str) -> String {
    doc(&format!(
        "  rollout:\n    prometheus: {prometheus}\n    waves:\n      - name: canary\n{wave}"
    ))
}

#[test]
fn a_rollout_with_every_field_loads_as_written() {
    let text = doc(r#"  rollout:
    prometheus: https://prometheus.internal:9090
    soak: 10m
    fresh: 45s
    alertAfter: 1h
    timeout: 2s
    waves:
      - name: canary
        hosts:
          names: [web-1]
        maxParallel: 1
      - name: zone-a
        hosts:
          labels:
            zone: a
        maxParallel: "25%"
      - name: rest-of-fleet
        maxParallel: 3
"#);
    let app = load_str(&text, "apps/demo.yaml").unwrap();
    let r = app.spec.rollout.expect("spec.rollout is read");
    assert_eq!(r.prometheus, "https://prometheus.internal:9090");
    assert_eq!(r.soak.std().as_secs(), 600);
    assert_eq!(r.fresh.std().as_secs(), 45);
    assert_eq!(r.alert_after.std().as_secs(), 3600);
    assert_eq!(r.timeout.std().as_secs(), 2);
    let names: Vec<&str> = r.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["canary", "zone-a", "rest-of-fleet"]);
    assert_eq!(r.waves[0].hosts.names, ["web-1"]);
    assert_eq!(r.waves[1].hosts.labels["zone"], "a");
    assert!(r.waves[2].hosts.names.is_empty() && r.waves[2].hosts.labels.is_empty());
    assert_eq!(r.waves[0].max_parallel, MaxParallel::Count(1));
    assert_eq!(r.waves[1].max_parallel, MaxParallel::Percent(Percent(25.0)));
    assert_eq!(r.waves[2].max_parallel, MaxParallel::Count(3));
}

#[test]
fn a_rollout_with_only_the_required_fields_gets_the_defaults() {
    let text = one_wave(
        "http://prometheus:9090",
        "        hosts:\n          names: [web-1]\n",
    );
    let app = load_str(&text, "apps/demo.yaml").unwrap();
    let r = app.spec.rollout.expect("spec.rollout is read");
    assert_eq!(r.soak.to_string(), "5m");
    assert_eq!(r.fresh.to_string(), "1m");
    assert_eq!(r.alert_after.to_string(), "30m");
    assert_eq!(r.timeout.to_string(), "5s");
    assert_eq!(r.soak.std().as_secs(), 300);
    assert_eq!(r.fresh.std().as_secs(), 60);
    assert_eq!(r.alert_after.std().as_secs(), 1800);
    assert_eq!(r.timeout.std().as_secs(), 5);
    assert_eq!(r.waves[0].max_parallel, MaxParallel::Count(1));
}

#[test]
fn a_rollout_without_waves_is_refused() {
    let text = doc("  rollout:\n    prometheus: http://p:9090\n    waves: []\n");
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:21:5: spec.rollout.waves: needs at least one wave (the canary); hosts no wave selects go after the last one"
        ]
    );
    let text = doc("  rollout:\n    prometheus: http://p:9090\n");
    assert_eq!(
        errors(&text),
        ["apps/demo.yaml:19:3: spec.rollout: missing field `waves`"]
    );
}

#[test]
fn a_wave_name_used_twice_is_refused_at_the_second() {
    let text = doc(r#"  rollout:
    prometheus: http://p:9090
    waves:
      - name: canary
        hosts:
          names: [web-1]
      - name: canary
        hosts:
          names: [web-2]
"#);
    assert_eq!(
        errors(&text),
        ["apps/demo.yaml:25:9: spec.rollout.waves[1].name: \"canary\" names two waves"]
    );
}

#[test]
fn a_wave_name_that_is_not_a_dns_label_is_refused() {
    for (name, col) in [("Canary_1", 9), ("-canary", 9), ("\"\"", 9)] {
        let text = doc(&format!(
            "  rollout:\n    prometheus: http://p:9090\n    waves:\n      - name: {name}\n        hosts:\n          names: [web-1]\n"
        ));
        let shown = if name == "\"\"" { "" } else { name };
        assert_eq!(
            errors(&text),
            [format!(
                "apps/demo.yaml:22:{col}: spec.rollout.waves[0].name: {shown:?} must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric"
            )],
            "wave name {name}"
        );
    }
}

#[test]
fn a_wave_that_selects_every_host_must_be_the_last() {
    let text = doc(r#"  rollout:
    prometheus: http://p:9090
    waves:
      - name: everyone
      - name: late
        hosts:
          names: [web-2]
"#);
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:22:9: spec.rollout.waves[0].hosts: selects every host, so the waves after it would have none; give it names or labels, or make it the last wave"
        ]
    );
    // Empty lists are the same as none.
    let text = doc(r#"  rollout:
    prometheus: http://p:9090
    waves:
      - name: everyone
        hosts:
          names: []
          labels: {}
      - name: late
        hosts:
          names: [web-2]
"#);
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:23:9: spec.rollout.waves[0].hosts: selects every host, so the waves after it would have none; give it names or labels, or make it the last wave"
        ]
    );
    // As the last wave it is the rest of the fleet, and fine.
    let text = doc(r#"  rollout:
    prometheus: http://p:9090
    waves:
      - name: canary
        hosts:
          names: [web-1]
      - name: everyone
"#);
    load_str(&text, "apps/demo.yaml").unwrap();
}

#[test]
fn max_parallel_must_be_at_least_one_host_and_at_most_the_whole_wave() {
    let at = "apps/demo.yaml:23:9: spec.rollout.waves[0].maxParallel";
    #[rustfmt::skip]
    let rows: [(&str, String); 6] = [
        ("0", format!("{at}: must be 1 or more")),
        ("\"0%\"", format!("{at}: 0% must be above 0% and at most 100%")),
        ("\"150%\"", format!("{at}: 150% must be above 0% and at most 100%")),
        ("abc", format!("{at}: \"abc\" must be a count of hosts (e.g. 1) or a percentage of the wave (e.g. 25%)")),
        ("-1", format!("{at}: -1 must be 1 or more")),
        ("1.5", format!("{at}: invalid type: floating point `1.5`, expected a count of hosts (e.g. 1) or a percentage of the wave (e.g. 25%)")),
    ];
    for (value, want) in rows {
        let text = one_wave(
            "http://p:9090",
            &format!("        maxParallel: {value}\n        hosts:\n          names: [web-1]\n"),
        );
        assert_eq!(errors(&text), [want], "maxParallel: {value}");
    }
    // The edges that are fine: one host, and the whole wave (quoted or not).
    for value in ["1", "\"100%\"", "100%", "\"0.5%\""] {
        let text = one_wave(
            "http://p:9090",
            &format!("        maxParallel: {value}\n        hosts:\n          names: [web-1]\n"),
        );
        load_str(&text, "apps/demo.yaml").unwrap_or_else(|e| panic!("maxParallel: {value}: {e}"));
    }
}

#[test]
fn the_prometheus_url_must_be_http_and_hold_no_credentials() {
    let text = one_wave("ftp://p:9090", "");
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:20:5: spec.rollout.prometheus: \"ftp://p:9090\" must be an http:// or https:// URL"
        ]
    );
    let text = one_wave("http://user:pw@p:9090", "");
    let errs = errors(&text);
    assert_eq!(
        errs,
        [
            "apps/demo.yaml:20:5: spec.rollout.prometheus: must not hold credentials (they would show in status and logs); put the controllers and Prometheus on a private network"
        ]
    );
    assert!(
        !errs[0].contains("pw"),
        "the password is not echoed: {errs:?}"
    );
}

#[test]
fn a_zero_time_limit_is_refused() {
    for field in ["fresh", "alertAfter", "timeout"] {
        let text = doc(&format!(
            "  rollout:\n    prometheus: http://p:9090\n    {field}: 0s\n    waves:\n      - name: canary\n"
        ));
        assert_eq!(
            errors(&text),
            [format!(
                "apps/demo.yaml:21:5: spec.rollout.{field}: must be longer than 0s"
            )],
            "{field}: 0s"
        );
    }
}

#[test]
fn an_unknown_field_in_a_wave_names_the_nearest_one() {
    let text = one_wave("http://p:9090", "        maxparallel: 2\n");
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:23:9: spec.rollout.waves[0].maxparallel: unknown field `maxparallel`: did you mean `maxParallel`?"
        ]
    );
    let text = one_wave("http://p:9090", "        host:\n          names: [web-1]\n");
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:23:9: spec.rollout.waves[0].host: unknown field `host`: did you mean `hosts`?"
        ]
    );
}

#[test]
fn every_problem_in_a_rollout_is_reported_at_once_in_document_order() {
    let text = doc(r#"  rollout:
    prometheus: http://user:pw@p:9090
    fresh: 0s
    waves:
      - name: Canary
      - name: b
        maxParallel: 0
        hosts:
          names: [web-2]
      - name: b
        maxParallel: "150%"
        hosts:
          names: [web-3]
"#);
    assert_eq!(
        errors(&text),
        [
            "apps/demo.yaml:20:5: spec.rollout.prometheus: must not hold credentials (they would show in status and logs); put the controllers and Prometheus on a private network",
            "apps/demo.yaml:21:5: spec.rollout.fresh: must be longer than 0s",
            "apps/demo.yaml:23:9: spec.rollout.waves[0].name: \"Canary\" must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric",
            "apps/demo.yaml:23:9: spec.rollout.waves[0].hosts: selects every host, so the waves after it would have none; give it names or labels, or make it the last wave",
            "apps/demo.yaml:25:9: spec.rollout.waves[1].maxParallel: must be 1 or more",
            "apps/demo.yaml:28:9: spec.rollout.waves[2].name: \"b\" names two waves",
            "apps/demo.yaml:29:9: spec.rollout.waves[2].maxParallel: 150% must be above 0% and at most 100%",
        ]
    );
}

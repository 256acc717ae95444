//! The worked example of traffic through nginx (docs/traffic.md) holds together:
//! `examples/prompthub/prompthub-nginx.yaml` validates, `shipshape traffic-file` prints its
//! first upstream file, and nginx (the real one) accepts `examples/nginx/prompthub.conf`
//! including that file (`nginx -t`).

mod common;

use std::process::Command;

use common::nginx::nginx_bin;
use common::{shipshape_bin, workspace};

#[test]
fn the_prompthub_document_behind_nginx_and_its_site_config_pass_validate_and_nginx_t() {
    let root = workspace();
    let doc = root.join("examples/prompthub/prompthub-nginx.yaml");
    let shipshape = |command: &str| {
        let out = Command::new(shipshape_bin())
            .arg(command)
            .arg(&doc)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{command}: {err}");
        String::from_utf8(out.stdout).unwrap()
    };
    shipshape("validate");
    let upstream = shipshape("traffic-file");
    assert!(
        upstream.contains("upstream shipshape_prompthub"),
        "{upstream}"
    );
    assert!(upstream.contains("server 127.0.0.1:3000"), "{upstream}");
    let Some(nginx) = nginx_bin("traffic_example") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().display().to_string();
    std::fs::write(dir.path().join("prompthub-upstream.conf"), &upstream).unwrap();
    let site = std::fs::read_to_string(root.join("examples/nginx/prompthub.conf"))
        .unwrap()
        .replace(
            "include /etc/nginx/shipshape/prompthub.conf;",
            &format!("include {p}/prompthub-upstream.conf;"),
        );
    assert!(
        site.contains(&format!("include {p}/")),
        "the site includes the upstream file"
    );
    std::fs::write(dir.path().join("site.conf"), site).unwrap();
    let temps: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("{t}_temp_path {p}/{t}_temp;\n"))
        .collect();
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "pid {p}/nginx.pid;\nerror_log {p}/error.log;\nworker_shutdown_timeout 30s;\nevents {{}}\nhttp {{\n{temps}access_log {p}/access.log;\ninclude {p}/site.conf;\n}}\n"
        ),
    )
    .unwrap();
    let out = Command::new(nginx)
        .args([
            "-t",
            "-p",
            &format!("{p}/"),
            "-c",
            &format!("{p}/nginx.conf"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

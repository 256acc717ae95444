//! What the controller refuses, and what it repairs, when it starts: an empty webhook
//! secret, a busy API port, private files readable by others. The real binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::World;

/// Start `shipshape run` with `args` and wait up to `secs` for it to exit; a controller
/// still running then is stopped and `None` returned.
fn run_briefly(w: &World, args: &[&str], secs: u64) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .arg("run")
        .args(args)
        .env("SHIPSHAPE_REPO", w.config_repo())
        .env("SHIPSHAPE_PATH", "apps")
        .env("SHIPSHAPE_STATE_DIR", w.state_dir())
        .env("SHIPSHAPE_PM2", common::pm2_bin())
        .env("SHIPSHAPE_PM2_HOME", w.pm2_home())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait_with_output();
    None
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn an_empty_webhook_secret_file_refuses_to_start_naming_the_file() {
    let w = World::new("emptysecret");
    w.commit_config(&w.document(&w.app_head()));
    for (i, text) in ["", "  \n\t\n"].iter().enumerate() {
        let secret = w.root().join(format!("webhook-secret-{i}"));
        std::fs::write(&secret, text).unwrap();
        let out = run_briefly(
            &w,
            &[
                "--listen",
                "127.0.0.1:0",
                "--webhook-secret-file",
                secret.to_str().unwrap(),
            ],
            20,
        )
        .expect("a controller with an empty webhook secret started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&secret.display().to_string()) && stderr.contains("empty"),
            "the error does not name the file: {stderr}"
        );
    }
}

#[test]
fn a_busy_api_port_is_reported_with_the_address_and_the_flag() {
    let w = World::new("busyport");
    w.commit_config(&w.document(&w.app_head()));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_briefly(&w, &["--listen", &addr], 20).expect("it ran on a busy port");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot listen on {addr} (--listen): address already in use (another controller?)"
        )),
        "{stderr}"
    );
}

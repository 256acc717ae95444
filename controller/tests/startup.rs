//! What the controller refuses, and what it repairs, when it starts: an empty webhook
//! secret, a busy API port (reported, and the controller goes on), private files readable
//! by others. The real binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{AppEdit, World};

/// `shipshape run` with `args` on `w`'s repositories and state directory.
fn controller(w: &World, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shipshape"));
    cmd.arg("run")
        .args(args)
        .env("SHIPSHAPE_REPO", w.config_repo())
        .env("SHIPSHAPE_PATH", "apps")
        .env("SHIPSHAPE_STATE_DIR", w.state_dir())
        .env("SHIPSHAPE_PM2", common::pm2_bin())
        .env("SHIPSHAPE_PM2_HOME", w.pm2_home())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    cmd
}

/// Start `shipshape run` with `args` and wait up to `secs` for it to exit; a controller
/// still running then is stopped and `None` returned.
fn run_briefly(w: &World, args: &[&str], secs: u64) -> Option<Output> {
    let mut child = controller(w, args)
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
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
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
fn a_busy_api_port_is_reported_with_the_address_and_the_flag_and_the_controller_keeps_running() {
    let w = World::new("busyport");
    w.commit_config(&w.document(&w.app_head()));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let log = w.root().join("busy.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = controller(&w, &["--listen", &addr])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let said =
        format!("cannot listen on {addr} (--listen): address already in use (another controller?)");
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&said) {
            break text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the controller stopped ({status}) on a busy port:\n{text}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no error naming the address and the flag:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains("next try in"), "{text}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "a busy API port stopped the controller:\n{text}"
    );
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    drop(taken);
}

#[test]
fn secrets_on_disk_are_private_pm2_home_dump_state_dir_and_token() {
    let w = World::new("private");
    // A state directory and token made by hand, readable by others.
    std::fs::create_dir_all(w.state_dir()).unwrap();
    std::fs::set_permissions(w.state_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let token_file = w.state_dir().join("api-token");
    let token = "ab".repeat(32);
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();

    // A deploy whose env file holds a secret: pm2 save writes it into dump.pm2.
    let env = w.write_env_file("API_SECRET=hunter2-in-the-dump\n");
    let doc = common::edited(&w.document(&w.app_head()), |app| {
        app.env_file(&env);
    });
    w.commit_config(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    let dump = w.pm2_home().join("dump.pm2");
    assert!(
        std::fs::read_to_string(&dump)
            .unwrap()
            .contains("hunter2-in-the-dump"),
        "the dump holds the env file's values (that is why it must be private)"
    );
    assert_eq!(mode(&w.pm2_home()), 0o700, "PM2_HOME");
    assert_eq!(mode(&dump), 0o600, "dump.pm2 after pm2 save");
    assert_eq!(mode(&w.state_dir()), 0o700, "the state directory");
    for file in ["apps/private/state.json", "apps/private/ecosystem.json"] {
        assert_eq!(mode(&w.state_dir().join(file)), 0o600, "{file}");
    }
    // The pre-existing token was fixed, with a warning saying so, and is still the token.
    assert_eq!(mode(&token_file), 0o600, "api-token");
    assert!(
        log.contains("api-token") && log.contains("readable by others"),
        "no warning about the token: {log}"
    );

    // At start, a dump (and its backup) made readable again is fixed before anything runs.
    let bak = w.pm2_home().join("dump.pm2.bak");
    std::fs::write(&bak, "[]").unwrap();
    for f in [&dump, &bak] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let d = w.start(&[]);
    assert_ne!(d.token, token, "the token is a new one at each start");
    assert_eq!(mode(&token_file), 0o600, "api-token at start");
    assert_eq!(mode(&dump), 0o600, "dump.pm2 at start");
    assert_eq!(mode(&bak), 0o600, "dump.pm2.bak at start");
    assert!(
        d.log_tail(200).contains("dump.pm2"),
        "no warning about the dump: {}",
        d.log_tail(50)
    );
}

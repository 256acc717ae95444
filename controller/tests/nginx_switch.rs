//! Traffic switches through a real nginx (controller/tests/common/nginx.rs) between two
//! real listeners: `shipshape::traffic::nginx::switch` writes the upstream file, runs
//! `nginx -t` and a graceful reload through the real command runner, and confirms through
//! nginx's confirm server. The faults: a main config `nginx -t` refuses, nginx not running,
//! and a reload nginx's master refuses after `-t` passed (the confirm catches it).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::free_port;
use common::nginx::{TestNginx, answering_slot, get};
use shipshape::ports::SystemCommands;
use shipshape::traffic::nginx::{self, NginxError, Switched};
use shipshape_spec::app::Traffic;

/// A tiny HTTP server on a loopback port answering every request with `body`.
struct Slot {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Slot {
    fn start(body: &'static str) -> Slot {
        Self::on(free_port(), move |_| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        })
    }

    /// Serve `answer(request head)` on `port` until dropped.
    fn on(port: u16, answer: impl Fn(&str) -> String + Send + Sync + 'static) -> Slot {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                let answer = answer.clone();
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = s.write_all(answer(&String::from_utf8_lossy(&buf)).as_bytes());
                });
            }
        });
        Slot { port, stop }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Two slots, an nginx in front with the upstream file naming slot A, started.
struct Bench {
    a: Slot,
    b: Slot,
    nginx: TestNginx,
    traffic: Traffic,
    _dir: tempfile::TempDir,
}

const APP: &str = "web";

fn bench(test: &str) -> Option<Bench> {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("shipshape-web.conf");
    let a = Slot::start("slot A");
    let b = Slot::start("slot B");
    let public = free_port();
    let confirm = free_port();
    let nginx = TestNginx::new(test, public, &upstream, "shipshape_web")?;
    let traffic: Traffic =
        serde_json::from_value(nginx.traffic_json([a.port, b.port], confirm, "5s")).unwrap();
    std::fs::write(&upstream, nginx::render(&traffic, APP, a.port)).unwrap();
    nginx.start();
    let bench = Bench {
        a,
        b,
        nginx,
        traffic,
        _dir: dir,
    };
    assert_eq!(bench.public_body(), "slot A");
    Some(bench)
}

impl Bench {
    fn public_body(&self) -> String {
        get(self.nginx.public_port, "/")
            .map(|(_, _, body)| body)
            .unwrap_or_default()
    }

    fn switch(&self, to: u16) -> Result<Switched, NginxError> {
        rt().block_on(nginx::switch(&self.traffic, APP, to, &SystemCommands))
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.traffic.upstream_file).unwrap()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every answer of `n` requests through the public port.
fn bodies(b: &Bench, n: usize) -> Vec<String> {
    (0..n).map(|_| b.public_body()).collect()
}

#[test]
fn a_switch_moves_the_traffic_to_the_new_slot_and_is_confirmed_through_nginx() {
    let Some(b) =
        bench("a_switch_moves_the_traffic_to_the_new_slot_and_is_confirmed_through_nginx")
    else {
        return;
    };
    let file = Path::new(&b.traffic.upstream_file);
    assert_eq!(nginx::live_slot(file), Ok(Some(b.a.port)));
    let switched = b.switch(b.b.port).expect("the switch to B");
    println!(
        "switch A -> B confirmed {:?} after the reload",
        switched.confirmed_after
    );
    assert_eq!(nginx::live_slot(file), Ok(Some(b.b.port)));
    assert_eq!(answering_slot(b.traffic.confirm_port), Some(b.b.port));
    // Confirmed: every new connection through the public port reaches B.
    assert!(
        bodies(&b, 20).iter().all(|x| x == "slot B"),
        "{:?}",
        bodies(&b, 20)
    );
    // And back.
    let back = b.switch(b.a.port).expect("the switch back to A");
    println!(
        "switch B -> A confirmed {:?} after the reload",
        back.confirmed_after
    );
    assert!(bodies(&b, 20).iter().all(|x| x == "slot A"));
    assert!(switched.confirmed_after < Duration::from_secs(5));
}

#[test]
fn a_config_nginx_t_refuses_fails_the_switch_with_nginxs_message_and_nothing_live_changes() {
    let Some(b) = bench(
        "a_config_nginx_t_refuses_fails_the_switch_with_nginxs_message_and_nothing_live_changes",
    ) else {
        return;
    };
    let before = b.file();
    b.nginx.break_config();
    let err = b.switch(b.b.port).expect_err("nginx -t fails").to_string();
    println!("{err}");
    assert!(err.starts_with("nginx -t failed: "), "{err}");
    assert!(
        err.contains("[emerg]") && err.contains("this_is_not_a_directive"),
        "nginx's own message: {err}"
    );
    assert!(err.contains("nothing live changed"), "{err}");
    assert_eq!(b.file(), before, "the upstream file is unchanged");
    assert!(bodies(&b, 10).iter().all(|x| x == "slot A"));
    assert_eq!(answering_slot(b.traffic.confirm_port), Some(b.a.port));
    // Fixed, the same switch goes through.
    b.nginx.restore_config();
    b.switch(b.b.port)
        .expect("the switch once the config is fixed");
    assert_eq!(b.public_body(), "slot B");
}

#[test]
fn a_switch_with_nginx_down_fails_with_nginxs_message_and_leaves_the_file() {
    let Some(b) = bench("a_switch_with_nginx_down_fails_with_nginxs_message_and_leaves_the_file")
    else {
        return;
    };
    let before = b.file();
    b.nginx.stop();
    assert!(!b.nginx.is_running());
    let err = b
        .switch(b.b.port)
        .expect_err("no nginx to reload")
        .to_string();
    println!("{err}");
    assert!(err.starts_with("nginx -s reload failed: "), "{err}");
    assert!(
        err.contains("nginx.pid") && err.contains("[error]"),
        "nginx's message about its pid file: {err}"
    );
    assert!(err.contains("nothing live changed"), "{err}");
    assert_eq!(b.file(), before, "the upstream file is unchanged");
}

#[test]
fn a_reload_nginxs_master_refuses_is_caught_by_the_confirm_and_the_old_file_is_back() {
    let Some(mut b) =
        bench("a_reload_nginxs_master_refuses_is_caught_by_the_confirm_and_the_old_file_is_back")
    else {
        return;
    };
    let before = b.file();
    let old_confirm = b.traffic.confirm_port;
    // The new file moves the confirm server to a port another process holds: `nginx -t`
    // passes (it binds nothing), the master's reload fails to bind and keeps the old
    // config. What holds the port answers HTTP without naming a slot.
    let squatter = Slot::on(free_port(), |_| {
        "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nno".to_string()
    });
    b.traffic.confirm_port = squatter.port;
    b.traffic.nginx.timeout = shipshape_spec::Duration(Duration::from_secs(2));
    let err = b
        .switch(b.b.port)
        .expect_err("the reload is refused")
        .to_string();
    println!("{err}");
    assert!(
        err.starts_with(&format!(
            "the switch to slot {} was not confirmed",
            b.b.port
        )),
        "{err}"
    );
    assert!(
        err.contains("HTTP 200 without X-Shipshape-Upstream"),
        "{err}"
    );
    assert!(!err.contains("nothing live changed"), "{err}");
    assert!(
        err.contains(&format!("names slot {} again", b.a.port)),
        "{err}"
    );
    assert_eq!(b.file(), before, "the old upstream file is back");
    assert!(
        b.nginx.error_log().contains("Address already in use"),
        "nginx's master refused the reload: {}",
        b.nginx.error_log()
    );
    assert!(bodies(&b, 10).iter().all(|x| x == "slot A"));
    assert_eq!(answering_slot(old_confirm), Some(b.a.port));
}

#[test]
fn the_harness_nginx_starts_and_stops_and_a_dead_slot_is_a_502_not_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("up.conf");
    let Some(n) = TestNginx::new(
        "the_harness_nginx_starts_and_stops_and_a_dead_slot_is_a_502_not_a_retry",
        free_port(),
        &upstream,
        "shipshape_web",
    ) else {
        return;
    };
    n.start();
    assert!(n.is_running());
    // The placeholder slot has no listener: nginx answers 502 itself.
    let (status, _, _) = get(n.public_port, "/").expect("nginx answers");
    assert_eq!(status, 502);
    n.stop();
    assert!(!n.is_running());
    assert!(get(n.public_port, "/").is_none());
}

//! Traffic switches through a real nginx (controller/tests/common/nginx.rs) between two
//! real listeners: `shipshape::traffic::nginx::switch` writes the upstream file, runs
//! `nginx -t` and a reload through the real command runner, and confirms through nginx.

mod common;

use common::free_port;
use common::nginx::{TestNginx, answering_slot, get};

#[test]
fn the_harness_nginx_starts_serves_its_upstream_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("up.conf");
    let Some(n) = TestNginx::new(
        "the_harness_nginx_starts_serves_its_upstream_and_stops",
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
    let _ = answering_slot;
}

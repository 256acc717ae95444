//! pm2 through its daemon's RPC socket, against the real pinned pm2: the socket's process
//! list equals `pm2 jlist`'s for the same processes; a daemon killed and started again in
//! the middle is read again; a socket that is not pm2's (a plain file, nonsense, an
//! unexpected answer, silence) makes reads fall back to the CLI, reported once and counted.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::pm2::{client, idle_script};
use common::{World, wait_for};
use shipshape::pm2::{Instance, ReadVia, Status, parse_jlist, socket};
use shipshape::runtime::metrics::Metrics;

const SECRET: &str = "s3cr3t-value-from-the-env";

fn pm2_cli(home: &Path, args: &[&str]) {
    common::pm2::pm2_cli(home, SECRET, args);
}

/// Everything but cpu and memory (measured anew by each read).
type Seen = (String, u64, u64, Status, u64, String, Vec<(String, String)>);

fn seen(list: &[Instance]) -> Vec<Seen> {
    let mut v: Vec<Seen> = list
        .iter()
        .map(|i| {
            (
                i.name.clone(),
                i.pm_id,
                i.pid,
                i.status.clone(),
                i.restarts,
                i.exec_mode.clone(),
                i.env.clone().into_iter().collect(),
            )
        })
        .collect();
    v.sort();
    v
}

fn fallbacks(metrics: &Metrics, reason: &str) -> f64 {
    let needle = format!("shipshape_pm2_socket_fallbacks_total{{reason=\"{reason}\"}} ");
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&needle).map(|n| n.parse().unwrap()))
        .unwrap_or(0.0)
}

fn cli_list(w: &World) -> Vec<Instance> {
    parse_jlist(&w.pm2_jlist_raw()).unwrap()
}

fn all_online(w: &World, n: usize) {
    wait_for("pm2 processes online", Duration::from_secs(30), || {
        let l = cli_list(w);
        (l.len() == n && l.iter().all(|i| i.status == Status::Online)).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sockets_list_equals_pm2_jlist() {
    let w = World::new("sock-list");
    let script = idle_script(&w);
    let home = w.pm2_home();
    pm2_cli(&home, &["start", &script, "--name", "fork-a"]);
    pm2_cli(&home, &["start", &script, "--name", "clu-b", "-i", "2"]);
    all_online(&w, 3);
    pm2_cli(&home, &["restart", "fork-a"]);
    all_online(&w, 3);
    let metrics = Arc::new(Metrics::new());
    let pm2 = client(&w, &metrics);

    let (list, via) = pm2.jlist_via().await.unwrap();
    let cli = cli_list(&w);
    assert_eq!(via, ReadVia::Socket);
    assert_eq!(seen(&list), seen(&cli));
    let a = list.iter().find(|i| i.name == "fork-a").unwrap();
    assert_eq!((a.restarts, a.exec_mode.as_str()), (1, "fork_mode"));
    assert_eq!(a.env["SECRET_TOKEN"], SECRET, "the env is read whole");
    assert_eq!(
        list.iter()
            .filter(|i| i.exec_mode == "cluster_mode")
            .count(),
        2
    );
    assert!(list.iter().all(|i| i.pid > 0 && i.memory > 0));
    assert!(
        !metrics
            .render()
            .contains("shipshape_pm2_socket_fallbacks_total")
    );

    // Socket reads do not wait for the turn the CLI needs (held here by a long write).
    let mut cached = pm2.clone();
    cached.cache_for = Duration::from_secs(60);
    let _turn = pm2.turn.lock().await;
    let within = Duration::from_secs(10);
    let (list, via) = tokio::time::timeout(within, pm2.jlist_via())
        .await
        .expect("a socket read waited for the turn")
        .unwrap();
    assert_eq!((list.len(), via), (3, ReadVia::Socket));
    let list = tokio::time::timeout(within, cached.jlist_cached())
        .await
        .expect("a cached socket read waited for the turn")
        .unwrap();
    assert_eq!(list.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_and_started_again_is_read_again() {
    let w = World::new("sock-restart");
    let script = idle_script(&w);
    let home = w.pm2_home();
    pm2_cli(&home, &["start", &script, "--name", "a"]);
    all_online(&w, 1);
    let metrics = Arc::new(Metrics::new());
    let pm2 = client(&w, &metrics);
    let (list, via) = pm2.jlist_via().await.unwrap();
    assert_eq!((via, list.len()), (ReadVia::Socket, 1));

    pm2_cli(&home, &["kill"]);
    // No daemon: the CLI is used (and spawns a new one), reported once.
    let (list, via) = pm2.jlist_via().await.unwrap();
    assert!(matches!(via, ReadVia::Cli(Some(_))), "{via:?}");
    assert!(list.is_empty());
    assert_eq!(
        fallbacks(&metrics, "missing") + fallbacks(&metrics, "refused"),
        1.0
    );
    assert!(pm2.socket.warned.load(std::sync::atomic::Ordering::SeqCst));

    // The new daemon answers on the socket again.
    pm2_cli(&home, &["start", &script, "--name", "a"]);
    all_online(&w, 1);
    let (list, via) = pm2.jlist_via().await.unwrap();
    assert_eq!(via, ReadVia::Socket);
    assert_eq!(seen(&list), seen(&cli_list(&w)));
    assert!(!pm2.socket.warned.load(std::sync::atomic::Ordering::SeqCst));
}

/// A fake daemon at `path` answering each connection with `answer(request frame)`
/// (`None`: never answer).
fn fake_daemon(
    path: PathBuf,
    answer: impl Fn(Vec<Vec<u8>>) -> Option<Vec<u8>> + Send + Sync + 'static,
) {
    common::pm2::serve(&path, move |frame| std::future::ready(answer(frame)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_is_not_pm2s_falls_back_to_the_cli_and_is_reported() {
    let w = World::new("sock-garbage");
    let script = idle_script(&w);
    let home = w.pm2_home();
    pm2_cli(&home, &["start", &script, "--name", "a"]);
    all_online(&w, 1);
    let expected = seen(&cli_list(&w));
    let fakes = tempfile::tempdir().unwrap();

    let plain = fakes.path().join("plain.sock");
    std::fs::write(&plain, "not a socket").unwrap();
    let nonsense = fakes.path().join("nonsense.sock");
    fake_daemon(nonsense.clone(), |_| {
        Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec())
    });
    // Well-framed, right id, but not a list (another pm2's answer).
    let odd = fakes.path().join("odd.sock");
    fake_daemon(odd.clone(), |req| {
        let body = format!("j:{{\"args\":[{{\"SECRET_TOKEN\":\"{SECRET}\"}}]}}");
        Some(socket::encode(&[body.as_bytes(), &req[1]]))
    });
    let unreadable = fakes.path().join("unreadable.sock");
    fake_daemon(unreadable.clone(), |req| {
        // An env that is not a map: serde's error would quote it.
        let body =
            format!("j:{{\"args\":[[{{\"name\":\"a\",\"pm2_env\":{{\"env\":\"{SECRET}\"}}}}]]}}");
        Some(socket::encode(&[body.as_bytes(), &req[1]]))
    });
    let silent = fakes.path().join("silent.sock");
    fake_daemon(silent.clone(), |_| None);
    let hangup = fakes.path().join("hangup.sock");
    fake_daemon(hangup.clone(), |_| Some(Vec::new()));

    for (path, reason) in [
        (plain, "refused"),
        (nonsense, "unexpected"),
        (odd, "unexpected"),
        (unreadable, "unexpected"),
        (silent, "timeout"),
        (hangup, "io"),
    ] {
        let metrics = Arc::new(Metrics::new());
        let mut pm2 = client(&w, &metrics);
        pm2.socket.path = Some(path.clone());
        pm2.socket.timeout = Duration::from_millis(500);
        for round in 0..2 {
            let (list, via) = tokio::time::timeout(Duration::from_secs(60), pm2.jlist_via())
                .await
                .unwrap_or_else(|_| panic!("{}: hangs", path.display()))
                .unwrap();
            let ReadVia::Cli(Some(why)) = via else {
                panic!("{}: read via {via:?}", path.display());
            };
            assert!(!why.contains(SECRET), "{why}");
            assert_eq!(seen(&list), expected, "{}", path.display());
            assert_eq!(
                fallbacks(&metrics, reason),
                f64::from(round + 1),
                "{}: {}",
                path.display(),
                metrics.render()
            );
            assert!(pm2.socket.warned.load(std::sync::atomic::Ordering::SeqCst));
        }
    }

    // The daemon's own socket, with the cache on: read through the socket, and a garbage
    // socket's fallback goes through the cache as well.
    let metrics = Arc::new(Metrics::new());
    let mut pm2 = client(&w, &metrics);
    pm2.cache_for = Duration::from_secs(60);
    assert_eq!(seen(&pm2.jlist_cached().await.unwrap()), expected);
    assert!(!metrics.render().contains("fallbacks_total{"));
    pm2.socket.path = Some(fakes.path().join("missing.sock"));
    *pm2.cache.lock().unwrap() = None;
    assert_eq!(seen(&pm2.jlist_cached().await.unwrap()), expected);
    assert_eq!(fallbacks(&metrics, "missing"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_read_that_overlaps_a_change_does_not_fill_the_cache() {
    let w = World::new("sock-cache");
    let fakes = tempfile::tempdir().unwrap();
    // A daemon that answers an empty list, slowly.
    let slow = fakes.path().join("slow.sock");
    let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = asked.clone();
    common::pm2::serve(&slow, move |frame| {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Some(socket::encode(&[b"j:{\"args\":[[]]}", &frame[1]]))
        }
    });
    let metrics = Arc::new(Metrics::new());
    let mut pm2 = client(&w, &metrics);
    pm2.cache_for = Duration::from_secs(60);
    pm2.socket.path = Some(slow);
    let reader = {
        let pm2 = pm2.clone();
        tokio::spawn(async move { pm2.jlist_cached().await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !asked.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the read never reached the daemon"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A change while the read is in flight (its outcome does not matter here).
    let _ = pm2.delete("nothing-by-that-name").await;
    assert!(reader.await.unwrap().unwrap().is_empty());
    assert!(
        pm2.cache.lock().unwrap().is_none(),
        "a list read before a change was cached"
    );
    // Without a change in between, the read is cached.
    assert!(pm2.jlist_cached().await.unwrap().is_empty());
    assert!(pm2.cache.lock().unwrap().is_some());
}

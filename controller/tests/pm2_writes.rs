//! Changes to pm2 through its daemon's socket, against the real pinned pm2, compared with
//! what pm2's CLI does to the same processes: the dump written through the socket equals
//! `pm2 save`'s (and pm2 resurrects from it); a delete through the socket leaves what
//! `pm2 delete` leaves; a daemon killed and started again is written through again; a
//! socket answering unexpectedly sends each change through the CLI, reported, and no
//! process env value reaches the controller's output.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pm2::{client, idle_script};
use common::{World, wait_for};
use serde_json::Value;
use shipshape::pm2::{Instance, Pm2, Pm2Error, ReadVia, Status, parse_jlist, socket};
use shipshape::runtime::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "s3cr3t-value-of-a-write-test";

fn pm2_cli(home: &Path, args: &[&str]) -> String {
    common::pm2::pm2_cli(home, SECRET, args)
}

fn cli_client(w: &World, metrics: &Arc<Metrics>) -> Pm2 {
    let mut c = client(w, metrics);
    c.socket.enabled = false;
    c
}

fn fallbacks(metrics: &Metrics) -> f64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("shipshape_pm2_socket_fallbacks_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
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

/// (name, pm_id, pid) of every process, sorted.
fn ids(list: &[Instance]) -> Vec<(String, u64, u64)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|i| (i.name.clone(), i.pm_id, i.pid))
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A dump as values, without what changes by itself between two reads of the same
/// processes (pm2's in-process metrics), sorted by name.
fn dump(path: &Path) -> Vec<Value> {
    let mut v: Vec<Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for e in &mut v {
        e.as_object_mut().unwrap().remove("axm_monitor");
    }
    v.sort_by_key(|e| e["name"].as_str().unwrap().to_string());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dump_saved_through_the_socket_equals_pm2_saves_and_pm2_resurrects_from_it() {
    let w = World::new("write-save");
    let script = idle_script(&w);
    let home = w.pm2_home();
    pm2_cli(&home, &["start", &script, "--name", "fork-a"]);
    pm2_cli(&home, &["start", &script, "--name", "clu-b", "-i", "2"]);
    all_online(&w, 3);
    pm2_cli(&home, &["restart", "fork-a"]);
    all_online(&w, 3);
    let metrics = Arc::new(Metrics::new());
    let pm2 = client(&w, &metrics);
    let (main, bak) = (home.join("dump.pm2"), home.join("dump.pm2.bak"));

    // pm2's own save first: the reference (and 0644, as pm2 makes it).
    pm2_cli(&home, &["save", "--force"]);
    let by_cli = dump(&main);
    let cli_bytes = std::fs::read(&main).unwrap();
    assert_eq!(
        mode(&main),
        0o644,
        "pm2 writes its dump with the umask's mode"
    );
    assert_eq!(by_cli.len(), 3);
    assert!(by_cli.iter().all(|e| e.get("pm_id").is_none()));

    assert_eq!(pm2.save_via().await.unwrap(), ReadVia::Socket);
    assert_eq!(
        dump(&main),
        by_cli,
        "the socket's dump differs from pm2 save's"
    );
    assert_eq!(
        std::fs::read(&bak).unwrap(),
        cli_bytes,
        "the old dump is the backup"
    );
    assert_eq!((mode(&main), mode(&bak)), (0o600, 0o600));
    assert_eq!(
        dump(&main).iter().find(|e| e["name"] == "fork-a").unwrap()["env"]["SECRET_TOKEN"],
        SECRET,
        "the env is saved whole, as pm2 saves it"
    );
    assert_eq!(fallbacks(&metrics), 0.0);
    assert!(
        std::fs::read_dir(&home).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "no temp file left behind"
    );

    // pm2 resurrects exactly what was saved, from our dump.
    let before = ids(&cli_list(&w));
    pm2_cli(&home, &["kill"]);
    pm2_cli(&home, &["resurrect"]);
    all_online(&w, 3);
    let after = cli_list(&w);
    let names = |v: &[(String, u64, u64)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ids(&after)), names(&before));
    assert!(
        after
            .iter()
            .all(|i| i.env.get("SECRET_TOKEN").map(String::as_str) == Some(SECRET))
    );

    // An empty list is saved too (`--force`), as `[]`.
    pm2_cli(&home, &["delete", "all"]);
    pm2_cli(&home, &["save", "--force"]);
    let cli_empty = std::fs::read(&main).unwrap();
    assert_eq!(pm2.save_via().await.unwrap(), ReadVia::Socket);
    assert_eq!(
        serde_json::from_slice::<Value>(&std::fs::read(&main).unwrap()).unwrap(),
        serde_json::from_slice::<Value>(&cli_empty).unwrap()
    );

    // A PM2_HOME without a dump: created 0600, with no backup, as pm2 makes none.
    std::fs::remove_file(&main).unwrap();
    std::fs::remove_file(&bak).unwrap();
    assert_eq!(pm2.save_via().await.unwrap(), ReadVia::Socket);
    assert_eq!(mode(&main), 0o600);
    assert!(!bak.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_through_the_socket_leaves_what_pm2_delete_leaves() {
    let w = World::new("write-delete");
    let script = idle_script(&w);
    let home = w.pm2_home();
    let metrics = Arc::new(Metrics::new());
    let (sock, cli) = (client(&w, &metrics), cli_client(&w, &metrics));
    pm2_cli(&home, &["start", &script, "--name", "keep"]);
    pm2_cli(
        &home,
        &["start", &script, "--name", "other", "--namespace", "ns1"],
    );

    // The same processes deleted both ways: the rest of the list is untouched, the
    // deleted instances' pids are gone.
    for (way, pm2) in [("socket", &sock), ("cli", &cli)] {
        pm2_cli(&home, &["start", &script, "--name", "gone", "-i", "2"]);
        all_online(&w, 4);
        let before = cli_list(&w);
        let via = pm2.delete_via("gone").await.unwrap();
        let want_via = if way == "socket" {
            ReadVia::Socket
        } else {
            ReadVia::Cli(None)
        };
        assert_eq!(via, want_via);
        let after = cli_list(&w);
        let kept: Vec<_> = before
            .iter()
            .filter(|i| i.name != "gone")
            .cloned()
            .collect();
        assert_eq!(ids(&after), ids(&kept), "{way}");
        for i in before.iter().filter(|i| i.name == "gone") {
            assert!(
                !Path::new(&format!("/proc/{}", i.pid)).exists(),
                "{way}: pid {} of a deleted process still runs",
                i.pid
            );
        }
    }

    // A name pm2 does not know, both ways: refused; nothing deleted.
    let before = ids(&cli_list(&w));
    let by_socket = sock.delete_via("nothing").await.unwrap_err();
    assert!(matches!(by_socket, Pm2Error::Refused { .. }), "{by_socket}");
    assert!(cli.delete_via("nothing").await.is_err());
    assert_eq!(ids(&cli_list(&w)), before);

    // A name that is no process's but a namespace's: its processes, as pm2 does.
    assert_eq!(sock.delete_via("ns1").await.unwrap(), ReadVia::Socket);
    let left: Vec<_> = ids(&cli_list(&w)).into_iter().map(|x| x.0).collect();
    assert_eq!(left, ["keep"]);
    assert_eq!(fallbacks(&metrics), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_and_started_again_is_written_through_again() {
    let w = World::new("write-restart");
    let script = idle_script(&w);
    let home = w.pm2_home();
    let metrics = Arc::new(Metrics::new());
    let pm2 = client(&w, &metrics);
    pm2_cli(&home, &["start", &script, "--name", "a"]);
    pm2_cli(&home, &["start", &script, "--name", "b"]);
    all_online(&w, 2);
    assert_eq!(pm2.save_via().await.unwrap(), ReadVia::Socket);

    // No daemon: the save goes through the CLI (which starts an empty one), counted.
    pm2_cli(&home, &["kill"]);
    let via = pm2.save_via().await.unwrap();
    assert!(matches!(via, ReadVia::Cli(Some(_))), "{via:?}");
    assert_eq!(fallbacks(&metrics), 1.0);
    assert_eq!(dump(&home.join("dump.pm2")), Vec::<Value>::new());
    assert_eq!(mode(&home.join("dump.pm2")), 0o600);

    // The daemon started again with the processes (from the backup of the first dump):
    // both changes go through its socket.
    std::fs::copy(home.join("dump.pm2.bak"), home.join("dump.pm2")).unwrap();
    pm2_cli(&home, &["kill"]);
    pm2_cli(&home, &["resurrect"]);
    all_online(&w, 2);
    assert_eq!(pm2.delete_via("a").await.unwrap(), ReadVia::Socket);
    assert_eq!(pm2.save_via().await.unwrap(), ReadVia::Socket);
    let names: Vec<_> = dump(&home.join("dump.pm2"))
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["b"]);
    assert_eq!(fallbacks(&metrics), 1.0);
}

/// A daemon at `path` in front of pm2's real socket `real`: reads (`getMonitorData`) are
/// passed through; every other call is answered with `garble(request)`.
fn garbling_proxy(
    path: PathBuf,
    real: PathBuf,
    garble: impl Fn(&[Vec<u8>]) -> Vec<u8> + Send + Sync + 'static,
) {
    let garble = Arc::new(garble);
    common::pm2::serve(&path, move |frame| {
        let (garble, real) = (garble.clone(), real.clone());
        async move {
            let body: Value = serde_json::from_slice(&frame[0][2..]).unwrap();
            if body["method"] != "getMonitorData" {
                return Some(garble(&frame));
            }
            let mut up = tokio::net::UnixStream::connect(&real).await.unwrap();
            let args: Vec<&[u8]> = frame.iter().map(Vec::as_slice).collect();
            up.write_all(&socket::encode(&args)).await.unwrap();
            let mut reply = Vec::new();
            loop {
                let mut chunk = vec![0u8; 65536];
                let n = up.read(&mut chunk).await.unwrap();
                reply.extend_from_slice(&chunk[..n]);
                if socket::decode(&reply).unwrap().is_some() {
                    return Some(reply);
                }
            }
        }
    });
}

/// Everything the controller logs, at every level, for the whole test binary.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_answering_unexpectedly_sends_changes_through_the_cli_and_no_secret_is_logged() {
    let logs = capture_logs();
    let w = World::new("write-garble");
    let script = idle_script(&w);
    let home = w.pm2_home();
    pm2_cli(&home, &["start", &script, "--name", "a", "-i", "2"]);
    pm2_cli(&home, &["start", &script, "--name", "b"]);
    pm2_cli(&home, &["start", &script, "--name", "c"]);
    all_online(&w, 4);
    let fakes = tempfile::tempdir().unwrap();
    let real = home.join("rpc.sock");

    // Reads pass, deletes are answered with nonsense, with the secret in it; pm2's own
    // daemon never sees them: the CLI deletes.
    let garbled = fakes.path().join("garbled.sock");
    garbling_proxy(garbled.clone(), real.clone(), |_| {
        format!("HTTP/1.1 500 {SECRET}\r\n\r\n").into_bytes()
    });
    // Deletes are answered as another pm2 would: well framed, the id right, no args.
    let other = fakes.path().join("other.sock");
    garbling_proxy(other.clone(), real.clone(), |req| {
        let body = format!("j:{{\"SECRET_TOKEN\":\"{SECRET}\"}}");
        socket::encode(&[body.as_bytes(), &req[1]])
    });
    // Deletes answered with args of the wrong type: serde's message would quote them.
    let typed = fakes.path().join("typed.sock");
    garbling_proxy(typed.clone(), real.clone(), |req| {
        let body = format!("j:{{\"args\":\"{SECRET}\"}}");
        socket::encode(&[body.as_bytes(), &req[1]])
    });
    // A process list whose entries are not pm2 7's: the save goes through the CLI.
    let odd = fakes.path().join("odd.sock");
    common::pm2::serve(&odd, |frame| async move {
        let body = format!("j:{{\"args\":[[{{\"pm_id\":0,\"pm2_env\":\"{SECRET}\"}}]]}}");
        Some(socket::encode(&[body.as_bytes(), &frame[1]]))
    });

    for (path, name) in [(&garbled, "a"), (&other, "b"), (&typed, "c")] {
        let metrics = Arc::new(Metrics::new());
        let mut pm2 = client(&w, &metrics);
        pm2.socket.path = Some(path.clone());
        pm2.socket.timeout = Duration::from_secs(5);
        let before = cli_list(&w).len();
        let via = tokio::time::timeout(Duration::from_secs(60), pm2.delete_via(name))
            .await
            .expect("the delete hangs")
            .unwrap();
        let ReadVia::Cli(Some(why)) = via else {
            panic!("{}: deleted via {via:?}", path.display());
        };
        assert!(!why.contains(SECRET), "{why}");
        assert_eq!(fallbacks(&metrics), 1.0, "{}", metrics.render());
        let after = cli_list(&w);
        assert!(after.iter().all(|i| i.name != name), "{name} still runs");
        assert!(after.len() < before);
    }

    pm2_cli(&home, &["start", &script, "--name", "d"]);
    all_online(&w, 1);
    pm2_cli(&home, &["save", "--force"]);
    let by_cli = dump(&home.join("dump.pm2"));
    std::fs::remove_file(home.join("dump.pm2")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let mut pm2 = client(&w, &metrics);
    pm2.socket.path = Some(odd);
    let via = pm2.save_via().await.unwrap();
    assert!(
        matches!(via, ReadVia::Cli(Some(ref why)) if !why.contains(SECRET)),
        "{via:?}"
    );
    assert_eq!(dump(&home.join("dump.pm2")), by_cli);
    assert_eq!(
        mode(&home.join("dump.pm2")),
        0o600,
        "made private after the CLI's save"
    );
    assert_eq!(fallbacks(&metrics), 1.0);

    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logs.contains("through pm2's CLI instead of its daemon socket"),
        "the fallbacks are not reported:\n{logs}"
    );
    assert!(
        !logs.contains(SECRET),
        "a process env value was logged:\n{logs}"
    );
}

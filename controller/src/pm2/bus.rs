//! pm2's event bus (`PM2_HOME/pub.sock`: pm2-axon's pub socket over amp framing, frames of
//! `[s:TOPIC, j:PAYLOAD]`), listened to for what the processes write as pm2's daemon relays
//! it (`log:out`, `log:err`). In cluster mode a worker that throws while it starts exits
//! before pm2's write to its error log lands: the file stays empty, and the bus is the only
//! place its error is said (`pm2 logs` shows it from there too). A [`Tap`] listens while a
//! release's processes are started and verified, and keeps the end of what each instance
//! of the named processes wrote, bounded.
//!
//! Only `log:out` and `log:err` payloads of the named processes are kept; every other
//! event (`process:event` carries a process's whole environment) is dropped unread.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use super::logs::READ_BYTES;
use super::socket;
use crate::health::words::Said;

/// What the bus said of each instance: (name, pm_id) → (stderr, stdout), each bounded.
type Heard = Arc<Mutex<BTreeMap<(String, u64), (String, String)>>>;

/// How long connecting to the bus may take.
const CONNECT: Duration = Duration::from_secs(1);
/// A frame larger than this ends the listening (the daemon's events are small).
const MAX_BUFFER: usize = 8 * 1024 * 1024;

/// Listening to pm2's bus for what some processes' instances write; stops when dropped.
pub struct Tap {
    heard: Heard,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").finish_non_exhaustive()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tap {
    /// Listen on the bus at `path` for the output of the processes whose pm2 name `ours`
    /// accepts; `None` when there is no bus to listen to (pm2's daemon not running yet).
    pub async fn open(path: &Path, ours: Ours) -> Option<Tap> {
        let stream = tokio::time::timeout(CONNECT, UnixStream::connect(path))
            .await
            .ok()?
            .ok()?;
        let heard: Heard = Arc::default();
        let task = tokio::spawn(listen(stream, ours, heard.clone()));
        Some(Tap { heard, task })
    }

    /// What each instance wrote since the tap was opened, by name and id.
    pub fn heard(&self) -> Vec<Said> {
        let heard = self.heard.lock().expect("bus tap");
        heard
            .iter()
            .map(|((name, pm_id), (err, out))| Said {
                name: name.clone(),
                pm_id: *pm_id,
                err: err.clone(),
                out: out.clone(),
            })
            .collect()
    }
}

/// Which pm2 names a [`Tap`] keeps the output of.
pub type Ours = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Read frames until the daemon hangs up (or the tap is dropped), keeping what the
/// processes `ours` accepts wrote.
async fn listen(mut stream: UnixStream, ours: Ours, heard: Heard) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        loop {
            match socket::decode(&buf) {
                Ok(Some((args, used))) => {
                    if let Some((name, pm_id, stream, text)) = output_of(&args)
                        && ours(&name)
                    {
                        let mut heard = heard.lock().expect("bus tap");
                        let (err, out) = heard.entry((name, pm_id)).or_default();
                        keep_end(if stream == "log:err" { err } else { out }, &text);
                    }
                    buf.drain(..used);
                }
                Ok(None) if buf.len() > MAX_BUFFER => return,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// A `log:out` / `log:err` frame's process name, id, topic and text; `None` for any other
/// frame (never parsed further).
fn output_of(args: &[Vec<u8>]) -> Option<(String, u64, &'static str, String)> {
    let [topic, payload] = args else {
        return None;
    };
    let topic = match topic.as_slice() {
        b"s:log:err" => "log:err",
        b"s:log:out" => "log:out",
        _ => return None,
    };
    #[derive(serde::Deserialize)]
    struct Process {
        name: String,
        pm_id: serde_json::Value,
    }
    #[derive(serde::Deserialize)]
    struct Payload {
        process: Process,
        data: String,
    }
    let p: Payload = serde_json::from_slice(payload.strip_prefix(b"j:")?).ok()?;
    Some((p.process.name, p.process.pm_id.as_u64()?, topic, p.data))
}

/// Append `text` to `kept`, keeping its last [`READ_BYTES`] bytes (from a character start).
fn keep_end(kept: &mut String, text: &str) {
    kept.push_str(text);
    let limit = READ_BYTES as usize;
    if kept.len() > limit {
        let mut cut = kept.len() - limit;
        while !kept.is_char_boundary(cut) {
            cut += 1;
        }
        kept.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn frame(topic: &str, payload: serde_json::Value) -> Vec<u8> {
        let t = format!("s:{topic}");
        let p = format!("j:{payload}");
        socket::encode(&[t.as_bytes(), p.as_bytes()])
    }

    #[tokio::test]
    async fn the_tap_keeps_what_the_named_processes_wrote_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pub.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let tap = Tap::open(&path, Box::new(|n| n == "web"))
            .await
            .expect("a bus");
        let (mut s, _) = listener.accept().await.unwrap();
        let mut bytes = frame(
            "process:event",
            serde_json::json!({"event": "online", "process": {"name": "web", "pm_id": 0, "env": {"SECRET": "hunter2"}}}),
        );
        bytes.extend(frame(
            "log:err",
            serde_json::json!({"process": {"name": "web", "pm_id": 0}, "data": "\nError: DATABASE_URL is not set\n"}),
        ));
        bytes.extend(frame(
            "log:out",
            serde_json::json!({"process": {"name": "other", "pm_id": 1}, "data": "not ours\n"}),
        ));
        bytes.extend(frame(
            "log:PM2",
            serde_json::json!({"process": {"name": "PM2", "pm_id": "PM2"}, "data": "App [web:0] online\n"}),
        ));
        // Split mid-frame: frames are reassembled.
        let (a, b) = bytes.split_at(bytes.len() / 2);
        s.write_all(a).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(b).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tap.heard().is_empty() {
            assert!(std::time::Instant::now() < deadline, "nothing heard");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let heard = tap.heard();
        assert_eq!(
            heard,
            [Said {
                name: "web".into(),
                pm_id: 0,
                err: "\nError: DATABASE_URL is not set\n".into(),
                out: String::new(),
            }]
        );
        assert!(
            Tap::open(&dir.path().join("none.sock"), Box::new(|_| true))
                .await
                .is_none()
        );
    }

    #[test]
    fn what_is_kept_is_bounded_to_its_end() {
        let mut kept = String::new();
        for _ in 0..10_000 {
            keep_end(&mut kept, "é line\n");
        }
        assert!(kept.len() <= READ_BYTES as usize);
        assert!(kept.ends_with("é line\n"));
    }
}

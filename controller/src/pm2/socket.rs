//! A client of pm2's daemon RPC socket (`PM2_HOME/rpc.sock`), the channel pm2's own CLI
//! uses: pm2-axon's req/rep sockets over AMP framing, carrying pm2-axon-rpc messages.
//!
//! A frame (amp 0.3) is one meta byte (`version << 4 | argc`, version 1, at most 15
//! arguments), then per argument a big-endian `u32` length and the bytes. amp-message
//! prefixes each argument with its type: `s:` text, `j:` JSON, anything else raw bytes.
//! A request is `[j:{"type":"call","method":M,"args":[…]}, s:ID]`; the reply is
//! `[j:{"args":[…]} | j:{"error":…}, s:ID]`.
//!
//! Each call opens its own connection (a Unix connect costs microseconds), so a restarted
//! daemon is simply reached again. Payloads are never logged nor put in errors: the
//! process list carries every process's environment, secrets included.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// amp's protocol version.
const VERSION: u8 = 1;
/// The largest frame accepted (a garbage length must not allocate gigabytes).
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Why a call through the socket failed (never carrying the payload).
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// There is no socket file: pm2's daemon is not running (or another `PM2_HOME`).
    #[error("no pm2 socket at {0}")]
    Missing(String),
    /// Connecting failed (refused: a stale socket or not a socket at all).
    #[error("connecting to pm2's socket: {0}")]
    Connect(std::io::Error),
    /// Connecting or the call took longer than allowed.
    #[error("pm2's socket did not answer within {0:?}")]
    Timeout(Duration),
    /// Reading or writing failed, or the daemon hung up before answering.
    #[error("talking to pm2's socket: {0}")]
    Io(std::io::Error),
    /// The daemon answered something this client does not understand (another pm2?).
    #[error("pm2's socket answered unexpectedly: {0}")]
    Unexpected(String),
    /// The daemon reported an error for the call.
    #[error("pm2's daemon refused the call: {0}")]
    Remote(String),
    /// The process list answered does not read as this version's [`crate::pm2::Instance`]s
    /// (serde's reason is not kept: it may quote a value, such as an env value).
    #[error("pm2's socket answered a process list this version cannot read")]
    UnreadableList,
}

impl SocketError {
    /// A short label for metrics: `missing`, `refused`, `timeout`, `io`, `unexpected`, `remote`.
    pub fn kind(&self) -> &'static str {
        match self {
            SocketError::Missing(_) => "missing",
            SocketError::Connect(_) => "refused",
            SocketError::Timeout(_) => "timeout",
            SocketError::Io(_) => "io",
            SocketError::Unexpected(_) | SocketError::UnreadableList => "unexpected",
            SocketError::Remote(_) => "remote",
        }
    }
}

/// Encode one amp frame of `args` (at most 15).
///
/// # Panics
/// When given more than 15 arguments or one longer than `u32::MAX` (callers build frames
/// of two arguments).
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    assert!(args.len() <= 15, "amp carries at most 15 arguments");
    let len = 1 + args.iter().map(|a| 4 + a.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(VERSION << 4 | args.len() as u8);
    for a in args {
        out.extend_from_slice(
            &u32::try_from(a.len())
                .expect("amp argument size")
                .to_be_bytes(),
        );
        out.extend_from_slice(a);
    }
    out
}

/// A decoded frame's arguments and how many bytes it took.
pub type Decoded = (Vec<Vec<u8>>, usize);

/// Decode the first amp frame at the start of `buf`: `Ok(None)` when more bytes are
/// needed, else its arguments and how many bytes it took.
///
/// # Errors
/// [`SocketError::Unexpected`] for another protocol version or a frame over [`MAX_FRAME`].
pub fn decode(buf: &[u8]) -> Result<Option<Decoded>, SocketError> {
    let Some(&meta) = buf.first() else {
        return Ok(None);
    };
    if meta >> 4 != VERSION {
        return Err(SocketError::Unexpected(format!(
            "amp version {} (expected {VERSION})",
            meta >> 4
        )));
    }
    let argc = usize::from(meta & 0xf);
    let mut off = 1;
    let mut args = Vec::with_capacity(argc);
    for _ in 0..argc {
        let Some(len) = buf.get(off..off + 4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        if off + 4 + len > MAX_FRAME {
            return Err(SocketError::Unexpected(format!(
                "a frame over {MAX_FRAME} bytes"
            )));
        }
        off += 4;
        let Some(arg) = buf.get(off..off + len) else {
            return Ok(None);
        };
        args.push(arg.to_vec());
        off += len;
    }
    Ok(Some((args, off)))
}

/// amp-message's packing of a JSON argument.
fn pack_json(v: &serde_json::Value) -> Vec<u8> {
    let mut out = b"j:".to_vec();
    out.extend_from_slice(v.to_string().as_bytes());
    out
}

/// amp-message's packing of a text argument.
fn pack_str(s: &str) -> Vec<u8> {
    let mut out = b"s:".to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// The request frame of an axon-rpc call of `method` with `args`, under message `id`.
pub fn call_frame(method: &str, args: &[serde_json::Value], id: &str) -> Vec<u8> {
    let msg = serde_json::json!({ "type": "call", "method": method, "args": args });
    encode(&[&pack_json(&msg), &pack_str(id)])
}

/// Read an axon-rpc reply frame for message `id`: the reply's `args`.
///
/// # Errors
/// [`SocketError::Unexpected`] when the frame is not such a reply, [`SocketError::Remote`]
/// when it carries an error.
pub fn read_reply(frame: &[Vec<u8>], id: &str) -> Result<Vec<serde_json::Value>, SocketError> {
    let [body, got] = frame else {
        return Err(SocketError::Unexpected(format!(
            "a frame of {} arguments (expected 2)",
            frame.len()
        )));
    };
    if got.as_slice() != pack_str(id).as_slice() {
        return Err(SocketError::Unexpected("a reply to another message".into()));
    }
    let Some(json) = body.strip_prefix(b"j:") else {
        return Err(SocketError::Unexpected("a reply that is not JSON".into()));
    };
    #[derive(serde::Deserialize)]
    struct Reply {
        args: Option<Vec<serde_json::Value>>,
        error: Option<serde_json::Value>,
    }
    let reply: Reply = serde_json::from_slice(json)
        // serde's message may quote a value (a process's env): only where and what kind.
        .map_err(|e| {
            SocketError::Unexpected(format!(
                "an unreadable reply ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
    if let Some(err) = reply.error {
        // pm2's error text (e.g. "method \"x\" does not exist"), bounded.
        let text = match err {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        return Err(SocketError::Remote(text.chars().take(200).collect()));
    }
    reply
        .args
        .ok_or_else(|| SocketError::Unexpected("a reply without args".into()))
}

static IDS: AtomicU64 = AtomicU64::new(0);

/// Call `method` with `args` on the pm2 daemon listening at `socket`, within `timeout`
/// (connecting included); returns the reply's arguments.
///
/// # Errors
/// [`SocketError`] for a missing or refusing socket, a timeout, or an unexpected answer.
pub async fn call(
    socket: &Path,
    method: &str,
    args: &[serde_json::Value],
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, SocketError> {
    match tokio::time::timeout(timeout, call_inner(socket, method, args)).await {
        Ok(r) => r,
        Err(_) => Err(SocketError::Timeout(timeout)),
    }
}

async fn call_inner(
    socket: &Path,
    method: &str,
    args: &[serde_json::Value],
) -> Result<Vec<serde_json::Value>, SocketError> {
    let mut stream = UnixStream::connect(socket).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SocketError::Missing(socket.display().to_string())
        } else {
            SocketError::Connect(e)
        }
    })?;
    let id = format!(
        "{}:{}",
        std::process::id(),
        IDS.fetch_add(1, Ordering::Relaxed)
    );
    stream
        .write_all(&call_frame(method, args, &id))
        .await
        .map_err(SocketError::Io)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some((frame, _)) = decode(&buf)? {
            return read_reply(&frame, &id);
        }
        let n = stream.read(&mut chunk).await.map_err(SocketError::Io)?;
        if n == 0 {
            return Err(SocketError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection before answering",
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// pm2's process list (`getMonitorData`, what `pm2 jlist` prints) from the daemon at
/// `socket`, as JSON.
///
/// # Errors
/// [`SocketError`] as for [`call`], and [`SocketError::Unexpected`] when the answer is
/// not a list.
pub async fn monitor_data(
    socket: &Path,
    timeout: Duration,
) -> Result<serde_json::Value, SocketError> {
    let mut args = call(socket, "getMonitorData", &[serde_json::json!({})], timeout).await?;
    // The reply is `[list]` (pm2-axon-rpc drops the callback's leading null error).
    match args.get_mut(0).map(serde_json::Value::take) {
        Some(list @ serde_json::Value::Array(_)) => Ok(list),
        _ => Err(SocketError::Unexpected(
            "getMonitorData did not answer a list".into(),
        )),
    }
}

/// pm2's `deleteProcessId` for process `id`, preceded by the `stopWatch` call pm2's CLI
/// makes before each delete (`Client.executeRemote`), within `timeout` each. The daemon
/// answers once the process has stopped (its `kill_timeout` included).
///
/// # Errors
/// [`SocketError`] as for [`call`]; [`SocketError::Remote`] when pm2 refuses (an unknown id).
pub async fn delete_process_id(
    socket: &Path,
    id: u64,
    timeout: Duration,
) -> Result<(), SocketError> {
    let id = serde_json::json!(id);
    call(
        socket,
        "stopWatch",
        &[serde_json::json!("deleteProcessId"), id.clone()],
        timeout,
    )
    .await?;
    call(socket, "deleteProcessId", &[id], timeout).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // The expected bytes were printed by the installed JS modules (amp 0.3.1,
    // amp-message 0.1.2), e.g. `new Message([{type:"call",…}, "42:0"]).toBuffer()`.
    const JS_CALL: &str = "12000000376a3a7b2274797065223a2263616c6c222c226d6574686f64223a226765744d6f6e69746f7244617461222c2261726773223a5b7b7d5d7d00000006733a34323a30";
    const JS_REPLY_EMPTY: &str = "120000000f6a3a7b2261726773223a5b5b5d5d7d00000006733a34323a30";

    #[test]
    fn encoding_matches_amp() {
        assert_eq!(encode(&[b"a", b"bc"]), hex("120000000161000000026263"));
        assert_eq!(encode(&[]), hex("10"));
    }

    #[test]
    fn call_frame_matches_axon_rpc() {
        // serde_json writes object keys sorted; JS in insertion order: compare decoded JSON.
        let ours = call_frame("getMonitorData", &[serde_json::json!({})], "42:0");
        let (ours, n) = decode(&ours).unwrap().unwrap();
        let (js, m) = decode(&hex(JS_CALL)).unwrap().unwrap();
        assert_eq!((n, m), (hex(JS_CALL).len(), hex(JS_CALL).len()));
        assert_eq!(ours[1], js[1]);
        let json = |a: &[u8]| -> serde_json::Value {
            serde_json::from_slice(a.strip_prefix(b"j:").unwrap()).unwrap()
        };
        assert_eq!(json(&ours[0]), json(&js[0]));
    }

    #[test]
    fn decoding_waits_for_whole_frames_at_any_split() {
        let mut stream = hex(JS_REPLY_EMPTY);
        stream.extend(encode(&[b"x"]));
        for cut in 0..hex(JS_REPLY_EMPTY).len() {
            assert!(decode(&stream[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let (args, used) = decode(&stream).unwrap().unwrap();
        assert_eq!(used, hex(JS_REPLY_EMPTY).len());
        assert_eq!(
            args,
            vec![b"j:{\"args\":[[]]}".to_vec(), b"s:42:0".to_vec()]
        );
        let (rest, _) = decode(&stream[used..]).unwrap().unwrap();
        assert_eq!(rest, vec![b"x".to_vec()]);
        assert_eq!(
            read_reply(&args, "42:0").unwrap(),
            vec![serde_json::json!([])]
        );
    }

    #[test]
    fn odd_frames_are_unexpected() {
        // Another version, a huge length, text where JSON was due, another id, an error.
        assert!(matches!(
            decode(b"HTTP/1.1"),
            Err(SocketError::Unexpected(_))
        ));
        assert!(matches!(
            decode(&[0x21, 0, 0, 0, 1, b'x']),
            Err(SocketError::Unexpected(_))
        ));
        assert!(matches!(
            decode(&[0x11, 0xff, 0xff, 0xff, 0xff]),
            Err(SocketError::Unexpected(_))
        ));
        let id = b"s:1:0".as_slice();
        for (frame, want) in [
            (vec![b"s:hello".to_vec(), id.to_vec()], "unexpected"),
            (
                vec![b"j:{\"args\":[]}".to_vec(), b"s:1:9".to_vec()],
                "unexpected",
            ),
            (vec![b"j:{\"args\":[]}".to_vec()], "unexpected"),
            (vec![b"j:{\"nope\":1}".to_vec(), id.to_vec()], "unexpected"),
            (
                vec![b"j:{\"error\":\"boom\"}".to_vec(), id.to_vec()],
                "remote",
            ),
        ] {
            assert_eq!(read_reply(&frame, "1:0").unwrap_err().kind(), want);
        }
    }
}

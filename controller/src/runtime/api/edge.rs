//! The API's edge: how its two listeners (TCP on `--listen`, a Unix socket in the state
//! directory) accept connections and which requests reach the router. It owns every limit
//! on what a client can hold (connections, requests in flight, event-stream subscribers,
//! header and body deadlines, body sizes), the Host and Origin policy (DNS rebinding), the
//! token rotated at each start, and raising the open-file limit.
//!
//! # Guarantees
//! - A listener stops accepting at its connection cap (new clients wait in the kernel's
//!   backlog, holding none of the controller's file descriptors); the caps are sized so
//!   that [`FD_RESERVE`] descriptors are always left for git, pm2's socket and child pipes.
//! - A connection that has not sent a whole request head within [`HEADER_TIMEOUT`], or sits
//!   idle between requests that long, is closed.
//! - A connection whose client leaves its answer unread (no byte of it can be written) for
//!   [`WRITE_TIMEOUT`] is closed.
//! - On TCP, only requests addressed to a loopback name (or a `--public-host`) are served;
//!   a browser `Origin` that is not the API's own is refused everywhere.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::runtime::metrics::Metrics;

/// File descriptors always left for the controller's own work (git, pm2's socket, child
/// processes' pipes, health probes, state files) whatever the API's clients hold.
pub const FD_RESERVE: u64 = 512;
/// Connections the TCP listener holds at most (fewer when the open-file limit is low).
pub const TCP_MAX_CONNECTIONS: usize = 256;
/// Connections the Unix socket holds at most.
pub const SOCKET_MAX_CONNECTIONS: usize = 32;
/// Requests handled at once on TCP; more get 503 at once.
pub const TCP_MAX_IN_FLIGHT: usize = 64;
/// Requests handled at once on the Unix socket (the CLI's own budget).
pub const SOCKET_MAX_IN_FLIGHT: usize = 16;
/// Event-stream (`/api/v1/watch`) subscribers on TCP; the next one gets 503.
pub const TCP_MAX_SUBSCRIBERS: usize = 32;
/// Event-stream subscribers on the Unix socket.
pub const SOCKET_MAX_SUBSCRIBERS: usize = 8;
/// How long a client has to send a whole request head, and how long a kept-alive connection
/// may sit idle before its next request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The largest request body of an API call.
pub const BODY_LIMIT: usize = 64 * 1024;
/// The largest webhook body (`POST /hooks/git`): GitHub's push payloads are a few KiB to a
/// few hundred; a larger one is refused (413) and polling picks the commit up.
pub const HOOK_BODY_LIMIT: usize = 1024 * 1024;
/// How long a client has to send a whole request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer (or an event stream) may wait for its client to read it: a write
/// that makes no progress for this long closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients the kernel queues for the TCP listener while it is at its connection cap (they
/// hold none of the controller's descriptors). Past it, the kernel stops completing
/// handshakes (clients retry with back-off). At most `net.core.somaxconn`.
pub const TCP_BACKLOG: u32 = 1024;
/// The webhook's path: served whatever its Host (see [`guard`]).
pub const HOOK_PATH: &str = "/hooks/git";

/// One listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once; accepting stops there.
    pub max_connections: usize,
    /// Requests being handled at once; more get 503.
    pub max_in_flight: usize,
    /// Event-stream subscribers at once; more get 503.
    pub max_subscribers: usize,
}

impl Limits {
    /// The TCP and Unix-socket limits under an open-file limit of `open_files`: the TCP cap
    /// shrinks so the two caps and [`FD_RESERVE`] fit (never below 8 connections).
    pub fn for_open_files(open_files: u64) -> (Limits, Limits) {
        let room = open_files.saturating_sub(FD_RESERVE + SOCKET_MAX_CONNECTIONS as u64);
        let tcp = Limits {
            max_connections: TCP_MAX_CONNECTIONS.min(room as usize).max(8),
            max_in_flight: TCP_MAX_IN_FLIGHT,
            max_subscribers: TCP_MAX_SUBSCRIBERS,
        };
        let tcp = Limits {
            max_in_flight: tcp.max_in_flight.min(tcp.max_connections),
            max_subscribers: tcp.max_subscribers.min(tcp.max_connections / 2).max(1),
            ..tcp
        };
        let socket = Limits {
            max_connections: SOCKET_MAX_CONNECTIONS,
            max_in_flight: SOCKET_MAX_IN_FLIGHT,
            max_subscribers: SOCKET_MAX_SUBSCRIBERS,
        };
        (tcp, socket)
    }
}

/// Raise this process's soft `RLIMIT_NOFILE` to its hard limit; returns (before, after).
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok((before, lim.rlim_cur))
}

/// Write a new random token into `<state-dir>/api-token` (0600), replacing the previous
/// one: each start has its own, and the last start's stops working.
///
/// # Errors
/// When randomness cannot be read or the file cannot be written.
pub fn rotate_token(state_dir: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token = hex::encode(bytes);
    crate::release::write_atomic_mode(
        &state_dir.join(super::TOKEN_FILE),
        format!("{token}\n").as_bytes(),
        0o600,
    )?;
    Ok(token)
}

/// Bind the Unix socket at `path` (0600): a socket file left by a controller that died is
/// removed first (the caller holds the state directory's lock, so no live one owns it).
///
/// # Errors
/// When the path is not a socket, or binding fails (a path too long for a socket, say).
pub fn bind_socket(path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Bind `addr` for the API (address reuse on, as `TcpListener::bind`) with a backlog of
/// [`TCP_BACKLOG`].
///
/// # Errors
/// When the address is taken, not on this host, or needs privileges.
pub fn bind_tcp(addr: std::net::SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(TCP_BACKLOG)
}

/// Which requests a listener serves.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// TCP: the port the listener is bound to; `None` for the Unix socket (no Host check:
    /// a browser cannot reach it).
    pub port: Option<u16>,
    /// Names (or addresses) served besides loopback ones, with any port: `--public-host`,
    /// and the listen address itself when it is not loopback (`--allow-remote-api`).
    pub public: Vec<String>,
}

/// Split `host[:port]` (a Host header or an authority): the name, lowercased and without
/// brackets, and the port if any. `None` when it is not of that form.
fn split_host(value: &str) -> Option<(String, Option<u16>)> {
    let (name, rest) = if let Some(inner) = value.strip_prefix('[') {
        let end = inner.find(']')?;
        (&inner[..end], &inner[end + 1..])
    } else {
        match value.rsplit_once(':') {
            Some((n, _)) if !n.contains(':') => (n, &value[n.len()..]),
            Some(_) => return None,
            None => (value, ""),
        }
    };
    let port = match rest {
        "" => None,
        p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    if name.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), port))
}

fn is_loopback_name(name: &str) -> bool {
    matches!(name, "127.0.0.1" | "::1" | "localhost")
}

impl HostPolicy {
    /// Whether a request whose Host (or authority) is `value` is served: a loopback name
    /// with the listener's port (or none, when it is 80), or a public host with any port.
    pub fn host_allowed(&self, value: &str) -> bool {
        let Some((name, port)) = split_host(value) else {
            return false;
        };
        if self.public.iter().any(|p| p.eq_ignore_ascii_case(&name)) {
            return true;
        }
        is_loopback_name(&name)
            && match self.port {
                None => true,
                Some(listening) => port.unwrap_or(80) == listening,
            }
    }

    /// Whether a browser's `Origin` is the API's own: `http://` and an allowed host.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        match origin.split_once("://") {
            Some((scheme, host)) if scheme.eq_ignore_ascii_case("http") => {
                !host.contains('/') && self.host_allowed(host)
            }
            Some((scheme, host)) if scheme.eq_ignore_ascii_case("https") => split_host(host)
                .is_some_and(|(name, _)| self.public.iter().any(|p| p.eq_ignore_ascii_case(&name))),
            _ => false,
        }
    }
}

/// Handed to the watch handler: the permits for this listener's event-stream subscribers.
#[derive(Clone)]
pub struct Subscribers {
    places: Arc<Semaphore>,
    listener: &'static str,
    metrics: Arc<Metrics>,
}

impl Subscribers {
    /// A subscriber's place, held as long as its stream; `None` when all are taken (the
    /// refusal is counted).
    pub fn join(&self) -> Option<OwnedSemaphorePermit> {
        let place = self.places.clone().try_acquire_owned().ok();
        if place.is_none() {
            count_refused(&self.metrics, self.listener, "subscribers");
        }
        place
    }
}

/// Count a refusal on `listener` in `shipshape_api_refused_total`.
fn count_refused(metrics: &Metrics, listener: &'static str, reason: &'static str) {
    metrics.inc(
        "shipshape_api_refused_total",
        vec![
            ("listener", listener.to_string()),
            ("reason", reason.to_string()),
        ],
        1.0,
    );
}

/// One listener's edge: its policy, limits and counters.
#[derive(Clone)]
pub struct Edge {
    /// `tcp` or `socket` (a metrics label).
    pub listener: &'static str,
    /// Which requests it serves.
    pub policy: Arc<HostPolicy>,
    /// Its limits.
    pub limits: Limits,
    in_flight: Arc<Semaphore>,
    subscribers: Subscribers,
    metrics: Arc<Metrics>,
}

impl Edge {
    /// The edge of the listener named `listener`.
    pub fn new(
        listener: &'static str,
        policy: HostPolicy,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Edge {
        Edge {
            listener,
            policy: Arc::new(policy),
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            subscribers: Subscribers {
                places: Arc::new(Semaphore::new(limits.max_subscribers)),
                listener,
                metrics: metrics.clone(),
            },
            metrics,
        }
    }

    /// Count a refused request and answer it.
    fn refuse(&self, code: StatusCode, reason: &'static str, message: &str) -> Response {
        count_refused(&self.metrics, self.listener, reason);
        let mut resp = super::error(code, message).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if code == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }

    fn set_connections(&self, n: usize) {
        self.metrics.set(
            "shipshape_api_connections",
            vec![("listener", self.listener.to_string())],
            n as f64,
        );
    }
}

/// What every request passes before the router: the Host (TCP, all but the webhook, whose
/// signature authenticates it and whose answers carry no records: nginx may pass the public
/// name), the Origin, a place among the requests in flight, and its whole body within
/// [`BODY_TIMEOUT`] and the body limit.
async fn guard(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let is_hook = req.uri().path() == HOOK_PATH;
    if edge.policy.port.is_some() && !is_hook {
        // Both the Host header and an absolute URI's authority, when given, must pass (one
        // of them must be given); a Host that is not text passes nothing.
        let host = req
            .headers()
            .get(header::HOST)
            .map(|v| v.to_str().unwrap_or_default());
        let authority = req.uri().authority().map(|a| a.as_str());
        let given = [host, authority];
        let ok = given.iter().any(Option::is_some)
            && given
                .into_iter()
                .flatten()
                .all(|v| edge.policy.host_allowed(v));
        if !ok {
            return edge.refuse(
                StatusCode::MISDIRECTED_REQUEST,
                "host",
                "this API answers only requests addressed to 127.0.0.1, [::1] or localhost on its port (the Host header), or to a --public-host",
            );
        }
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| edge.policy.origin_allowed(o));
        if !ok {
            return edge.refuse(
                StatusCode::FORBIDDEN,
                "origin",
                "requests from web pages of other origins are refused",
            );
        }
    }
    let Ok(_permit) = edge.in_flight.clone().try_acquire_owned() else {
        return edge.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            &format!(
                "too many requests in flight (at most {}); try again",
                edge.limits.max_in_flight
            ),
        );
    };
    let mut req = if req.method() == Method::GET || req.method() == Method::HEAD {
        req
    } else {
        let limit = if is_hook { HOOK_BODY_LIMIT } else { BODY_LIMIT };
        match read_body(req, limit).await {
            Ok(r) => r,
            Err((code, reason, message)) => return edge.refuse(code, reason, &message),
        }
    };
    req.extensions_mut().insert(edge.subscribers.clone());
    next.run(req).await
}

/// The request with its whole body read (at most `limit` bytes, within [`BODY_TIMEOUT`]).
async fn read_body(
    req: Request,
    limit: usize,
) -> Result<Request, (StatusCode, &'static str, String)> {
    use http_body_util::BodyExt;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {BODY_TIMEOUT:?}"),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err((
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            format!("the request body could not be read: {e}"),
        )),
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// `--listen`.
    Tcp(tokio::net::TcpListener),
    /// `<state-dir>/api.sock`.
    Unix(tokio::net::UnixListener),
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// A connection whose writes fail with `TimedOut` once one has made no progress for
/// [`WRITE_TIMEOUT`] (its client reads nothing): hyper then closes it. Reads pass through
/// (their deadlines are hyper's header timeout and [`BODY_TIMEOUT`]).
struct WriteDeadline<T> {
    io: T,
    /// Running while a write waits for the client to read.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(io: T) -> Self {
        WriteDeadline { io, stalled: None }
    }

    /// `result` of a write or flush; a pending one starts (or checks) the deadline.
    fn check<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        result: std::task::Poll<io::Result<R>>,
    ) -> std::task::Poll<io::Result<R>> {
        use std::task::Poll;
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing of its answer for {WRITE_TIMEOUT:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Listener {
    async fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Conn::Tcp(s))
            }
            Listener::Unix(l) => Ok(Conn::Unix(l.accept().await?.0)),
        }
    }
}

/// Whether an accept error means the process (or system) is out of descriptors or memory:
/// waiting, not retrying at once, is what helps.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Until `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serve HTTP/1.1 requests on one connection until it ends, or closes gracefully (within
/// 5 s) when `stop` turns true: hyper's header timeout, the head size limit, and
/// [`WriteDeadline`].
async fn drive<I>(
    io: I,
    app: axum::Router,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(
        TokioIo::new(WriteDeadline::new(io)),
        TowerToHyperService::new(app),
    );
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(Duration::from_secs(5), conn)
                .await
                .unwrap_or(Ok(()))
        }
    }
}

/// Serve `app` on `listener` with `edge`'s policy and limits until `stop` turns true.
/// Returns when accepting stops; connections still open end on their own (each closes
/// gracefully when `stop` turns true).
pub async fn serve(
    listener: Listener,
    app: axum::Router,
    edge: Edge,
    mut stop: watch::Receiver<bool>,
) {
    let app = app.layer(middleware::from_fn_with_state(edge.clone(), guard));
    let slots = Arc::new(Semaphore::new(edge.limits.max_connections));
    let open = Arc::new(AtomicUsize::new(0));
    edge.set_connections(0);
    let mut last_warning: Option<Instant> = None;
    loop {
        // At the cap, stop accepting: a new client waits in the kernel's backlog.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) if out_of_resources(&e) => {
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::error!(
                        listener = edge.listener,
                        "the API cannot accept a connection: {e}"
                    );
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(listener = edge.listener, "accept failed: {e}");
                continue;
            }
        };
        let (app, edge, open, mut stop) = (app.clone(), edge.clone(), open.clone(), stop.clone());
        tokio::spawn(async move {
            let _slot = slot;
            edge.set_connections(open.fetch_add(1, Ordering::SeqCst) + 1);
            let result = match conn {
                Conn::Tcp(s) => drive(s, app, &mut stop).await,
                Conn::Unix(s) => drive(s, app, &mut stop).await,
            };
            if let Err(e) = result {
                tracing::debug!(listener = edge.listener, "API connection ended: {e}");
            }
            edge.set_connections(open.fetch_sub(1, Ordering::SeqCst) - 1);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> HostPolicy {
        HostPolicy {
            port: Some(port),
            public: Vec::new(),
        }
    }

    #[test]
    fn only_loopback_names_on_the_listeners_port_are_served() {
        let p = tcp(7300);
        for ok in [
            "127.0.0.1:7300",
            "localhost:7300",
            "LOCALHOST:7300",
            "[::1]:7300",
        ] {
            assert!(p.host_allowed(ok), "{ok}");
        }
        for refused in [
            "attacker.example:7300",
            "attacker.example",
            "127.0.0.1.nip.io:7300",
            "127.0.0.1:7301",
            "127.0.0.1",
            "localhost:7300.evil",
            "[::1]",
            "::1:7300",
            "",
            ":7300",
            "10.0.0.5:7300",
            "localhost.:7300",
        ] {
            assert!(!p.host_allowed(refused), "{refused}");
        }
        assert!(tcp(80).host_allowed("localhost"), "port 80 may be left out");
    }

    #[test]
    fn public_hosts_are_served_on_any_port_and_the_socket_takes_any_loopback_name() {
        let p = HostPolicy {
            port: Some(7300),
            public: vec!["deploy.example.com".into()],
        };
        assert!(p.host_allowed("deploy.example.com"));
        assert!(p.host_allowed("Deploy.Example.com:443"));
        assert!(!p.host_allowed("other.example.com"));
        let socket = HostPolicy::default();
        assert!(socket.host_allowed("localhost"));
        assert!(!socket.host_allowed("attacker.example"));
    }

    #[test]
    fn only_the_apis_own_origin_passes() {
        let p = tcp(7300);
        assert!(p.origin_allowed("http://127.0.0.1:7300"));
        assert!(p.origin_allowed("http://localhost:7300"));
        for refused in [
            "http://attacker.example:7300",
            "http://localhost:3000",
            "https://localhost:7300",
            "null",
            "http://localhost:7300/x",
            "file://",
        ] {
            assert!(!p.origin_allowed(refused), "{refused}");
        }
        let public = HostPolicy {
            port: Some(7300),
            public: vec!["deploy.example.com".into()],
        };
        assert!(public.origin_allowed("https://deploy.example.com"));
    }

    #[test]
    fn the_tcp_cap_shrinks_to_leave_the_reserve_under_a_low_open_file_limit() {
        let (tcp, socket) = Limits::for_open_files(65536);
        assert_eq!(tcp.max_connections, TCP_MAX_CONNECTIONS);
        assert_eq!(socket.max_connections, SOCKET_MAX_CONNECTIONS);
        let (tcp, _) = Limits::for_open_files(1024);
        assert!(
            tcp.max_connections as u64 + SOCKET_MAX_CONNECTIONS as u64 + FD_RESERVE <= 1024,
            "{tcp:?}"
        );
        let (tcp, _) = Limits::for_open_files(600);
        assert_eq!(tcp.max_connections, 56);
        let (tcp, _) = Limits::for_open_files(100);
        assert_eq!(tcp.max_connections, 8, "never below 8");
        assert!(tcp.max_subscribers >= 1 && tcp.max_in_flight <= 8);
    }
}

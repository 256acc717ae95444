//! The API as the daemon runs it: a new token at each start, the Unix socket, the TCP
//! listener (retried with back-off while its port is busy: the controller goes on without
//! it), where it listens recorded in `api.json` and `shipshape_api_listening`, and the stop
//! (serving tasks ended within a bound, `api.json` and the socket removed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::reconcile::Controller;
use crate::retry::Backoff;
use crate::runtime::api::edge::{self, Edge, HostPolicy, Limits, Listener};
use crate::runtime::api::{self, ApiState};
use crate::runtime::daemon::Options;

/// How long the stop waits for each serving task.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What a failed bind of the API says: the address, the flag, and the likely cause.
pub fn listen_error(addr: SocketAddr, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use (another controller?)".into(),
        std::io::ErrorKind::AddrNotAvailable => "no such address on this host".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".into()
        }
        _ => e.to_string(),
    };
    format!("cannot listen on {addr} (--listen): {why}")
}

/// Publish whether the TCP API listens (`shipshape_api_listening`) and record it, with
/// the socket, in `api.json` for the CLI and `shipshape status`.
fn record_api(
    ctl: &Controller,
    listen: Option<SocketAddr>,
    url: Option<String>,
    socket: Option<PathBuf>,
    error: Option<String>,
) {
    if let Some(l) = listen {
        ctl.hub.metrics.set(
            "shipshape_api_listening",
            vec![("listener", "tcp".into()), ("address", l.to_string())],
            if url.is_some() { 1.0 } else { 0.0 },
        );
    }
    let a = api::Address::this_process(listen, url, socket, error);
    if let Err(e) = a.write(&ctl.store.dir) {
        error!(
            "could not write {}: {e}",
            ctl.store.dir.join(api::ADDRESS_FILE).display()
        );
    }
}

/// The address a local client reaches a listener on: an unspecified bind (`0.0.0.0`,
/// `[::]`) is reached on loopback, which is also a Host the API answers to.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The API's serving tasks and the signal that stops them.
pub struct Api {
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    dir: PathBuf,
}

impl Api {
    /// Start the API: a new token, the Unix socket, the TCP listener (retried with back-off
    /// while its port is busy: the controller goes on without it).
    ///
    /// # Errors
    /// When the token cannot be written.
    pub fn start(
        ctl: &Arc<Controller>,
        opts: &Options,
        webhook_secret: Option<Arc<String>>,
        trigger: &Arc<Notify>,
        fetch_now: &Arc<Notify>,
    ) -> anyhow::Result<Api> {
        let (stop_tx, stop) = watch::channel(false);
        let mut api = Api {
            tasks: Vec::new(),
            stop: stop_tx,
            dir: ctl.store.dir.clone(),
        };
        let app = api::router(ApiState {
            ctl: ctl.clone(),
            token: Arc::new(new_token(ctl)?),
            trigger: trigger.clone(),
            fetch_now: fetch_now.clone(),
            webhook_secret,
        });
        let (tcp_limits, socket_limits) = Limits::for_open_files(opts.open_files);
        let socket = serve_socket(ctl, &app, socket_limits, &stop).map(|(path, task)| {
            api.tasks.push(task);
            path
        });
        let Some(listen) = opts.listen else {
            record_api(ctl, None, None, socket, None);
            return Ok(api);
        };
        log_limits(&tcp_limits, &socket_limits, opts.open_files);
        let tcp = Tcp {
            ctl: ctl.clone(),
            listen,
            socket,
            public: public_hosts(opts, listen),
            limits: tcp_limits,
        };
        let first = edge::bind_tcp(listen);
        api.tasks.push(tokio::spawn(tcp.serve(first, app, stop)));
        Ok(api)
    }

    /// Stop serving: each task gets 5 s to end; then `api.json` and the socket are removed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if tokio::time::timeout(STOP_WAIT, t).await.is_err() {
                warn!("API did not stop within 5s");
            }
        }
        let _ = std::fs::remove_file(self.dir.join(api::ADDRESS_FILE));
        let _ = std::fs::remove_file(self.dir.join(api::SOCKET_FILE));
    }
}

/// Write a new API token (the previous one stops working).
///
/// # Errors
/// When the token cannot be written.
fn new_token(ctl: &Controller) -> anyhow::Result<String> {
    let dir = &ctl.store.dir;
    let token = edge::rotate_token(dir).map_err(|e| {
        anyhow::anyhow!(
            "writing the API token {}: {e}",
            dir.join(api::TOKEN_FILE).display()
        )
    })?;
    info!(
        "a new API token is in {} (the previous one no longer works)",
        dir.join(api::TOKEN_FILE).display()
    );
    Ok(token)
}

/// Serve `app` on the Unix socket; its path and serving task, or `None` (logged) when it
/// cannot be bound.
fn serve_socket(
    ctl: &Controller,
    app: &axum::Router,
    limits: Limits,
    stop: &watch::Receiver<bool>,
) -> Option<(PathBuf, JoinHandle<()>)> {
    let socket_path = ctl.store.dir.join(api::SOCKET_FILE);
    match edge::bind_socket(&socket_path) {
        Ok(l) => {
            info!(socket = %socket_path.display(), "API listening on the Unix socket");
            let e = Edge::new(
                "socket",
                HostPolicy::default(),
                limits,
                ctl.hub.metrics.clone(),
            );
            let task = tokio::spawn(edge::serve(Listener::Unix(l), app.clone(), e, stop.clone()));
            Some((socket_path, task))
        }
        Err(e) => {
            error!(socket = %socket_path.display(), "the API cannot listen on its Unix socket (the CLI falls back to TCP): {e}");
            None
        }
    }
}

/// Log the listeners' limits at start.
fn log_limits(tcp: &Limits, socket: &Limits, open_files: u64) {
    info!(
        "API limits: {} connections, {} requests in flight, {} event-stream subscribers on TCP; {} connections on the socket; {:?} to send a request head; {} open files",
        tcp.max_connections,
        tcp.max_in_flight,
        tcp.max_subscribers,
        socket.max_connections,
        edge::HEADER_TIMEOUT,
        open_files
    );
}

/// The Host names the TCP API answers to besides loopback ones: `--public-host`, and the
/// listen address itself when it is neither loopback nor unspecified.
fn public_hosts(opts: &Options, listen: SocketAddr) -> Vec<String> {
    let mut public = opts.public_hosts.clone();
    if !listen.ip().is_loopback() && !listen.ip().is_unspecified() {
        public.push(listen.ip().to_string());
    }
    public
}

/// The TCP listener, to bind and serve.
struct Tcp {
    ctl: Arc<Controller>,
    listen: SocketAddr,
    socket: Option<PathBuf>,
    public: Vec<String>,
    limits: Limits,
}

impl Tcp {
    /// Bind (retrying from `first`), record where it listens, and serve until `stop`.
    async fn serve(
        self,
        first: std::io::Result<tokio::net::TcpListener>,
        app: axum::Router,
        stop: watch::Receiver<bool>,
    ) {
        let Some(listener) = self.bind(first, stop.clone()).await else {
            return;
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                error!("the API's TCP listener has no address: {e}");
                return;
            }
        };
        let url = format!("http://{}", reachable(addr));
        record_api(&self.ctl, Some(self.listen), Some(url), self.socket, None);
        info!(%addr, "API listening");
        let policy = HostPolicy {
            port: Some(addr.port()),
            public: self.public,
        };
        let e = Edge::new("tcp", policy, self.limits, self.ctl.hub.metrics.clone());
        edge::serve(Listener::Tcp(listener), app, e, stop).await;
    }

    /// The listener, once a bind succeeds: each failure is logged and recorded, and the
    /// next try waits with back-off; `None` when the daemon stops first.
    async fn bind(
        &self,
        first: std::io::Result<tokio::net::TcpListener>,
        mut stop: watch::Receiver<bool>,
    ) -> Option<tokio::net::TcpListener> {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut attempt = first;
        loop {
            let e = match attempt {
                Ok(l) => return Some(l),
                Err(e) => e,
            };
            let wait = backoff.next_delay();
            let why = listen_error(self.listen, &e);
            error!(
                "{why}; the API is not listening on TCP (the controller goes on reconciling and monitoring; the CLI uses {}); next try in {wait:?}",
                self.socket
                    .as_ref()
                    .map_or("nothing".into(), |s| s.display().to_string())
            );
            record_api(
                &self.ctl,
                Some(self.listen),
                None,
                self.socket.clone(),
                Some(why),
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
            attempt = edge::bind_tcp(self.listen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_bind_is_reached_on_loopback() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(reachable(at("0.0.0.0:7300")), at("127.0.0.1:7300"));
        assert_eq!(reachable(at("[::]:7300")), at("[::1]:7300"));
        assert_eq!(reachable(at("10.0.0.5:7300")), at("10.0.0.5:7300"));
    }
}

//! The local HTTP API: status, history, a watch stream (server-sent events), metrics and
//! health for everyone on the host; pin, unpin, retry and reconcile for holders of the
//! bearer token the controller writes (mode 0600) into its state directory.
//!
//! # Guarantees
//! - It listens on loopback unless the operator explicitly allows another address.
//! - Tokens are compared in constant time; a mutating call without a valid token changes
//!   nothing and gets 401.
//!
//! The request and answer bodies live in [`types`], shared with the CLI's [`Client`].

pub mod address;
pub mod edge;
pub mod types;

pub use address::Address;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shipshape_spec::status::{Pin, PinSource};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::reconcile::Controller;
use crate::runtime::events::Event;
use crate::source::webhook;
use crate::state;
use crate::state::requests::Request as AppRequest;
use types::{
    AllowRewindResponse, ByRequest, ErrorBody, HookResponse, PinRequest, PinResponse,
    QueuedResponse, RetryResponse,
};

/// The token file's name in the state directory.
pub const TOKEN_FILE: &str = "api-token";
/// Where the controller writes its API address for the CLI.
pub const ADDRESS_FILE: &str = "api.json";
/// The Unix socket the controller serves the API on, in the state directory.
pub const SOCKET_FILE: &str = "api.sock";

/// Shared by the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The controller.
    pub ctl: Arc<Controller>,
    /// The bearer token.
    pub token: Arc<String>,
    /// Wakes the reconcile loop.
    pub trigger: Arc<Notify>,
    /// Asks the source poller to fetch now.
    pub fetch_now: Arc<Notify>,
    /// The webhook secret (GitHub HMAC key, or GitLab token), when webhooks are enabled.
    pub webhook_secret: Option<Arc<String>>,
}

/// The router.
pub fn router(state: ApiState) -> axum::Router {
    let mutating = axum::Router::new()
        .route("/api/v1/apps/{app}/pin", post(pin))
        .route("/api/v1/apps/{app}/unpin", post(unpin))
        .route("/api/v1/apps/{app}/retry", post(retry))
        .route("/api/v1/apps/{app}/reconcile", post(reconcile))
        .route("/api/v1/reconcile", post(reconcile_all))
        .route("/api/v1/source/allow-rewind", post(allow_rewind))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/apps", get(apps))
        .route("/api/v1/apps/{app}", get(app))
        .route("/api/v1/apps/{app}/history", get(history))
        .route("/api/v1/watch", get(watch))
        .route("/api/v1/source", get(source))
        .route(edge::HOOK_PATH, post(git_hook))
        .merge(mutating)
        .with_state(state)
}

/// True when `given` is `Bearer <token>`, compared in constant time.
pub fn token_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = value.strip_prefix("Bearer ") else {
        return false;
    };
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

async fn require_token(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if token_matches(req.headers(), &s.token) {
        next.run(req).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (see <state-dir>/api-token)",
        )
        .into_response()
    }
}

/// An error answer: a status and a message.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

fn error(code: StatusCode, message: &str) -> ApiError {
    ApiError(code, message.to_string())
}

async fn source(State(s): State<ApiState>) -> Response {
    let store = s.ctl.store.clone();
    match read_records(move || store.load_source()).await {
        Ok(src) => Json(crate::redact::json(&src)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Record reads at once on the blocking pool, at most (the API's share of it).
pub const RECORD_READS_AT_ONCE: usize = 4;

/// Run `read` (a read of the records from disk) on the blocking pool, at most
/// [`RECORD_READS_AT_ONCE`] at a time: a flood of API requests never reads the disk on the
/// controller's runtime thread, nor starts a thread per request.
async fn read_records<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(RECORD_READS_AT_ONCE);
    let _permit = READS
        .acquire()
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    tokio::task::spawn_blocking(read).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("reading the records failed: {e}"),
        )
    })
}

async fn git_hook(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let secret = s.webhook_secret.as_deref().map(String::as_str);
    match webhook::receive(&s.ctl.store, secret, &headers, &body) {
        Ok(wake) => wake.send(&s.fetch_now, &s.trigger),
        Err(refusal) => {
            let code = match refusal {
                webhook::Refusal::NotEnabled => StatusCode::NOT_FOUND,
                webhook::Refusal::NotAuthentic => StatusCode::UNAUTHORIZED,
            };
            return error(code, &refusal.to_string()).into_response();
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(HookResponse {
            fetch: "queued".into(),
        }),
    )
        .into_response()
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.ctl.hub.metrics.render(),
    )
        .into_response()
}

async fn apps(State(s): State<ApiState>) -> Response {
    let store = s.ctl.store.clone();
    let read = read_records(move || {
        let mut out = Vec::new();
        for name in store.apps() {
            match store.load(&name) {
                Ok(r) => out.push(crate::redact::json(&r)),
                Err(e) => out.push(serde_json::json!({ "name": name, "error": e.to_string() })),
            }
        }
        out
    });
    match read.await {
        Ok(out) => Json(out).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn load(s: &ApiState, app: &str) -> Result<state::AppRecord, ApiError> {
    let (store, name) = (s.ctl.store.clone(), app.to_string());
    read_records(move || store.load_known(&name))
        .await?
        .map_err(|e| match e {
            state::StateError::NoSuchApp { .. } => error(StatusCode::NOT_FOUND, &e.to_string()),
            e => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        })
}

async fn app(State(s): State<ApiState>, UrlPath(app): UrlPath<String>) -> Response {
    match load(&s, &app).await {
        Ok(r) => Json(crate::redact::json(&r)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn history(State(s): State<ApiState>, UrlPath(app): UrlPath<String>) -> Response {
    match load(&s, &app).await {
        Ok(r) => Json(crate::redact::json(
            &r.revisions.iter().map(|e| &e.revision).collect::<Vec<_>>(),
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The event stream; a listener's subscribers are capped ([`edge::Subscribers`]): past
/// the cap, 503. The subscriber's place is held as long as its stream.
async fn watch(
    State(s): State<ApiState>,
    subscribers: Option<axum::Extension<edge::Subscribers>>,
) -> Response {
    let place = match subscribers {
        Some(axum::Extension(sub)) => match sub.join() {
            Some(p) => Some(p),
            None => {
                let mut resp = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many event-stream subscribers; try again later",
                )
                .into_response();
                resp.headers_mut().insert(
                    header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                return resp;
            }
        },
        None => None,
    };
    let rx = s.ctl.hub.subscribe();
    let stream = futures::stream::unfold((rx, place), |(mut rx, place)| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let sse = SseEvent::default()
                        .event(serde_json::to_value(ev.kind).ok()?.as_str()?)
                        .json_data(&ev)
                        .ok()?;
                    return Some((Ok::<_, std::convert::Infallible>(sse), (rx, place)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A request recorded: the answer, and whether a pass was running steps (it stops before
/// its next live step if the request changes the pin).
struct Recorded<T> {
    answer: T,
    pending: bool,
}

impl<T> Recorded<T> {
    /// 202 Accepted while a pass runs (it takes effect at that pass's next step
    /// boundary), 200 OK when it is in force at once.
    fn status(&self) -> StatusCode {
        if self.pending {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        }
    }
}

/// Record a request for `app` at once, without waiting for a pass: `check` reads the
/// records in force (the saved records with the requests recorded since applied) and
/// returns the answer and the request, or refuses (4xx). The request is written durably to
/// the app's `requests.json` under the app's small request lock (never the pass's lock),
/// off the runtime thread; then any verification in flight stops waiting and the
/// reconcile loop is woken.
async fn record_request<T: Send + 'static>(
    s: &ApiState,
    app: &str,
    check: impl FnOnce(&state::AppRecord) -> Result<(T, AppRequest), ApiError> + Send + 'static,
) -> Result<Recorded<T>, ApiError> {
    let handle = s.ctl.handles.get(app);
    let (store, app, h) = (s.ctl.store.clone(), app.to_string(), handle.clone());
    let recorded = tokio::task::spawn_blocking(move || {
        let _requests = h.requests.lock().unwrap_or_else(|e| e.into_inner());
        let internal =
            |e: state::StateError| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        let mut rec = store.load_known(&app).map_err(|e| match e {
            state::StateError::NoSuchApp { .. } => error(StatusCode::NOT_FOUND, &e.to_string()),
            e => internal(e),
        })?;
        let (answer, request) = check(&rec)?;
        let Some(entry) = store.add_request(&app, request).map_err(internal)? else {
            return Err(error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "{} requests already wait for the pass in flight; try again when it ends",
                    state::requests::MAX_PENDING
                ),
            ));
        };
        // As recorded: a retry releases what had failed by the time written in the file.
        let effects = crate::reconcile::record::apply(
            &mut rec,
            crate::reconcile::record::Fact::Request(&entry),
        );
        Ok((answer, rec, effects))
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))??;
    let (answer, rec, effects) = recorded;
    let pending = handle.running_steps();
    // After the write: a pass's pin checks read the file again only when this moved.
    handle.interrupt();
    s.ctl.publish_app_metrics(&rec);
    s.trigger.notify_one();
    // The request's events (pinned, unpinned), as the one bookkeeping function says.
    s.ctl.publish_effects(&rec, effects);
    Ok(Recorded { answer, pending })
}

async fn pin(
    State(s): State<ApiState>,
    UrlPath(app): UrlPath<String>,
    Json(req): Json<PinRequest>,
) -> Response {
    if req.reason.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "a pin needs a reason").into_response();
    }
    let result = record_request(&s, &app, move |rec| {
        use crate::reconcile::target::{self, PinRefusal, PinSelector};
        let selector = match req.revision {
            Some(n) => PinSelector::Revision(n),
            None => PinSelector::Default,
        };
        // One rule for pins, shared with `spec.pin` in the reconciler.
        let revision = target::pin_revision(rec, selector).map_err(|e| {
            let code = match e {
                PinRefusal::NothingGood => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            error(code, &e.to_string())
        })?;
        let by = req.by.as_deref().unwrap_or("unknown");
        let pin = crate::reconcile::pins::new_pin(revision, by, &req.reason, PinSource::Cli);
        Ok((pin.clone(), AppRequest::Pin { pin }))
    })
    .await;
    pin_answer(result)
}

async fn unpin(
    State(s): State<ApiState>,
    UrlPath(app): UrlPath<String>,
    body: Option<Json<ByRequest>>,
) -> Response {
    let by = body
        .and_then(|b| b.0.by)
        .unwrap_or_else(|| "unknown".into());
    let result = record_request(&s, &app, move |rec| match rec.pin.clone() {
        None => Err(error(StatusCode::CONFLICT, "not pinned")),
        Some(p) if p.source == PinSource::Document => Err(error(
            StatusCode::CONFLICT,
            "pinned by the document (spec.pin): remove it in git to unpin",
        )),
        Some(p) => Ok((p, AppRequest::Unpin { by })),
    })
    .await;
    pin_answer(result)
}

/// A pin or unpin request's answer: the pin it concerns, and whether the pass in flight
/// has yet to act on it (202), or the refusal.
fn pin_answer(result: Result<Recorded<Pin>, ApiError>) -> Response {
    match result {
        Ok(r) => {
            let body = PinResponse {
                pin: r.answer.clone(),
                pending: r.pending,
            };
            (r.status(), Json(body)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn retry(State(s): State<ApiState>, UrlPath(app): UrlPath<String>) -> Response {
    let result = record_request(&s, &app, |rec| {
        let config_commit = rec.desired_config_commit.clone();
        let released = rec
            .quarantined
            .iter()
            .filter(|q| config_commit.as_ref().is_none_or(|c| &q.config_commit == c))
            .count();
        Ok((released, AppRequest::Retry { config_commit }))
    })
    .await;
    match result {
        Ok(r) => (
            r.status(),
            Json(RetryResponse {
                released: r.answer,
                pending: r.pending,
            }),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Allow the refused config commit that rewinds the branch (signed mode): it is applied
/// once, if it is trusted. Reported in the log and the source status.
async fn allow_rewind(State(s): State<ApiState>, body: Option<Json<ByRequest>>) -> Response {
    let by = body
        .and_then(|b| b.0.by)
        .unwrap_or_else(|| "unknown".into());
    let mut source = s.ctl.source_status();
    let Some(commit) = source.refused.as_ref().map(|r| r.commit.clone()) else {
        return error(StatusCode::CONFLICT, "no config commit is refused").into_response();
    };
    tracing::warn!(commit = %commit, by = %by, "a rewind of the config branch was allowed");
    source.allow_rewind = Some(commit.clone());
    if let Err(e) = s.ctl.store.save_source(&source) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()).into_response();
    }
    s.trigger.notify_one();
    Json(AllowRewindResponse { commit }).into_response()
}

async fn reconcile(State(s): State<ApiState>, UrlPath(app): UrlPath<String>) -> Response {
    if let Err(e) = load(&s, &app).await {
        return e.into_response();
    }
    s.trigger.notify_one();
    (StatusCode::ACCEPTED, Json(QueuedResponse { queued: app })).into_response()
}

async fn reconcile_all(State(s): State<ApiState>) -> Response {
    s.trigger.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(QueuedResponse {
            queued: "all".into(),
        }),
    )
        .into_response()
}

/// A client for the CLI. It reaches the controller over `<state-dir>/api.sock` (in the
/// 0700 state directory: only the controller's user can connect) whenever the socket
/// answers; otherwise over TCP at the address in `api.json`, and then only after checking
/// that the listener there is the controller holding the state directory
/// ([`address::verify_tcp_listener`]): the token is never sent to whatever else listens
/// on a port a stale `api.json` names.
#[derive(Debug, Clone)]
pub struct Client {
    /// The controller's base URL (`http://localhost` over the socket).
    pub url: String,
    /// How it is reached.
    pub via: Via,
    token: Option<String>,
    http: reqwest::Client,
}

/// How a [`Client`] reaches the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Its Unix socket.
    Socket(PathBuf),
    /// TCP, the listener checked to be the controller's.
    Tcp(SocketAddr),
}

/// Why the CLI could not talk to the controller.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No running controller recorded its address.
    #[error("no controller API found in {0} (is `shipshape run` running with this --state-dir?)")]
    NotRunning(PathBuf),
    /// The socket does not answer and the controller is not listening on TCP.
    #[error(
        "the controller's socket {socket} does not answer and its API is not listening on TCP{why}"
    )]
    NotListening {
        /// The socket tried.
        socket: PathBuf,
        /// `: <the last bind error>` when known.
        why: String,
    },
    /// Over TCP, the listener could not be confirmed to be the controller: the token is
    /// not sent.
    #[error(
        "not sending the API token to {url}: {why} (the controller's socket {socket} does not answer)"
    )]
    Unverified {
        /// The address in `api.json`.
        url: String,
        /// What could not be confirmed.
        why: String,
        /// The socket tried first.
        socket: PathBuf,
    },
    /// The request failed.
    #[error("{0}")]
    Http(String),
    /// The controller answered, but not with what the call expects.
    #[error("unreadable answer from the controller: {0}")]
    BadAnswer(String),
    /// The controller refused.
    #[error("{status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
}

impl Client {
    /// Reach the controller whose state directory is `state_dir`: its socket when it
    /// answers, else its TCP listener once checked to be the controller's.
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] when there is no controller to reach,
    /// [`ClientError::NotListening`] when its socket does not answer and it does not
    /// listen on TCP, [`ClientError::Unverified`] when the TCP listener cannot be confirmed
    /// to be the controller.
    pub fn from_state_dir(state_dir: &Path) -> Result<Client, ClientError> {
        let token = std::fs::read_to_string(state_dir.join(TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_string());
        let socket = state_dir.join(SOCKET_FILE);
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .tls_certs_only(std::iter::empty())
                .unix_socket(socket.as_path())
                .build()
                .map_err(|e| ClientError::Http(e.to_string()))?;
            return Ok(Client {
                url: "http://localhost".into(),
                via: Via::Socket(socket),
                token,
                http,
            });
        }
        let addr =
            Address::read(state_dir).ok_or_else(|| ClientError::NotRunning(state_dir.into()))?;
        let Some(url) = addr.url.clone() else {
            if !addr.writer_alive() {
                return Err(ClientError::NotRunning(state_dir.into()));
            }
            return Err(ClientError::NotListening {
                socket,
                why: addr.error.map(|e| format!(": {e}")).unwrap_or_default(),
            });
        };
        let sock = address::verify_tcp_listener(state_dir, &addr).map_err(|why| {
            ClientError::Unverified {
                url: url.clone(),
                why: why.to_string(),
                socket,
            }
        })?;
        Ok(Client {
            url,
            via: Via::Tcp(sock),
            token,
            http: crate::clients::plain(),
        })
    }

    /// `POST /api/v1/apps/{app}/pin`.
    ///
    /// # Errors
    /// [`ClientError`] when the controller cannot be reached or refuses.
    pub async fn pin(&self, app: &str, req: &PinRequest) -> Result<PinResponse, ClientError> {
        self.post(&format!("/api/v1/apps/{app}/pin"), req).await
    }

    /// `POST /api/v1/apps/{app}/unpin`; the answer is the pin removed.
    ///
    /// # Errors
    /// [`ClientError`] when the controller cannot be reached or refuses.
    pub async fn unpin(&self, app: &str, req: &ByRequest) -> Result<PinResponse, ClientError> {
        self.post(&format!("/api/v1/apps/{app}/unpin"), req).await
    }

    /// `POST /api/v1/source/allow-rewind`: apply the refused commit that rewinds the branch.
    ///
    /// # Errors
    /// [`ClientError`] when the controller cannot be reached or refuses.
    pub async fn allow_rewind(&self, by: &str) -> Result<AllowRewindResponse, ClientError> {
        let req = ByRequest {
            by: Some(by.to_string()),
        };
        self.post("/api/v1/source/allow-rewind", &req).await
    }

    /// `POST /api/v1/apps/{app}/retry`.
    ///
    /// # Errors
    /// [`ClientError`] when the controller cannot be reached or refuses.
    pub async fn retry(&self, app: &str) -> Result<RetryResponse, ClientError> {
        self.post(&format!("/api/v1/apps/{app}/retry"), &ByRequest::default())
            .await
    }

    /// `POST /api/v1/apps/{app}/reconcile`, or `POST /api/v1/reconcile` for every app.
    ///
    /// # Errors
    /// [`ClientError`] when the controller cannot be reached or refuses.
    pub async fn reconcile(&self, app: Option<&str>) -> Result<QueuedResponse, ClientError> {
        let path = match app {
            Some(a) => format!("/api/v1/apps/{a}/reconcile"),
            None => "/api/v1/reconcile".to_string(),
        };
        self.post(&path, &ByRequest::default()).await
    }

    /// POST `body` to `path` with the token and read the answer as `T`; an error answer's
    /// message is its [`ErrorBody`], else its text.
    ///
    /// # Errors
    /// [`ClientError`] when the controller cannot be reached, refuses, or answers
    /// something that is not a `T`.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .timeout(std::time::Duration::from_secs(120));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::BadAnswer(format!("{path}: {e}")))
        } else {
            let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => b.error,
                // Not one of ours (an extractor's rejection, a proxy): its text says why.
                Err(_) => String::from_utf8_lossy(&bytes).trim().to_string(),
            };
            Err(ClientError::Refused {
                status: status.as_u16(),
                message,
            })
        }
    }

    /// Stream events from `/api/v1/watch`, calling `f` for each until it returns false.
    ///
    /// # Errors
    /// [`ClientError`] when the stream cannot be opened or breaks.
    pub async fn watch(&self, mut f: impl FnMut(Event) -> bool) -> Result<(), ClientError> {
        use futures::StreamExt;
        let resp = self
            .http
            .get(format!("{}/api/v1/watch", self.url))
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ClientError::Http(e.to_string()))?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data:")
                        && let Ok(ev) = serde_json::from_str::<Event>(data.trim())
                        && !f(ev)
                    {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

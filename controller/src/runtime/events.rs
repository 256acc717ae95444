//! What happens, as events: broadcast to `/api/v1/watch` (and `shipshape status --watch`),
//! counted in metrics, and posted to an optional notification webhook (a Slack-compatible
//! JSON body) for the ones people must hear about.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shipshape_spec::status::Phase;
use tokio::sync::broadcast;
use tracing::warn;

use crate::runtime::metrics::Metrics;

/// The kinds of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An app's phase changed.
    PhaseChanged,
    /// A rollout of a new revision began.
    RolloutStarted,
    /// A rollout passed verification.
    RolloutHealthy,
    /// A rollout failed.
    RolloutFailed,
    /// A newer desired state replaced a rollout being verified.
    RolloutSuperseded,
    /// The server went back to the last healthy revision.
    Reverted,
    /// The app is unhealthy and the controller cannot fix it by itself.
    Degraded,
    /// The live revision regressed after it was healthy.
    Regressed,
    /// Someone pinned the app.
    Pinned,
    /// The pin was lifted.
    Unpinned,
    /// A fleet rollout's wave gate holds the desired app commit because it failed on an
    /// earlier-wave host, or has held it past `spec.rollout.alertAfter`.
    WaveHeld,
}

impl EventKind {
    /// True for the events the notification webhook is told about.
    pub fn notifies(self) -> bool {
        !matches!(self, EventKind::PhaseChanged)
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// When.
    pub at: shipshape_spec::Timestamp,
    /// Which app.
    pub app: String,
    /// What.
    pub kind: EventKind,
    /// The revision concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The app's phase after the event, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// A sentence for people.
    pub message: String,
}

/// Where events go.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Event>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    notify: Option<(String, crate::clients::Http)>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("notify", &self.notify.is_some())
            .finish()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(None, crate::clients::Http::new())
    }
}

/// How long a notification may take before it is given up (it never blocks a rollout).
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

impl Hub {
    /// A hub posting notifications to `notify_url`, if given.
    pub fn new(notify_url: Option<String>, http: crate::clients::Http) -> Hub {
        let (tx, _) = broadcast::channel(1024);
        Hub {
            tx,
            metrics: Arc::new(Metrics::new()),
            notify: notify_url.map(|u| (u, http)),
        }
    }

    /// Receive every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publish an event (and post it to the webhook, in the background), with every URL's
    /// credentials masked in its message.
    pub fn emit(&self, mut event: Event) {
        if let std::borrow::Cow::Owned(m) = crate::redact::credentials(&event.message) {
            event.message = m;
        }
        if event.kind.notifies()
            && let Some((url, http)) = &self.notify
        {
            let body = serde_json::json!({
                "text": format!("shipshape: {} {}: {}", event.app, kind_words(event.kind), event.message),
                "event": &event,
            });
            let (url, http) = (url.clone(), http.clone());
            tokio::spawn(async move {
                let sent = http
                    .for_url(&url)
                    .post(&url)
                    .json(&body)
                    .timeout(NOTIFY_TIMEOUT)
                    .send()
                    .await;
                // Never the URL itself: a webhook URL holds its secret (reqwest's errors
                // quote it, so it is taken out of them).
                let to = crate::redact::origin(&url);
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => warn!("notification webhook {to} answered {}", r.status()),
                    Err(e) => warn!("notification webhook {to} failed: {}", error_chain(e)),
                }
            });
        }
        let _ = self.tx.send(event);
    }
}

/// A request error and its causes, without the URL.
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn kind_words(kind: EventKind) -> &'static str {
    match kind {
        EventKind::PhaseChanged => "changed phase",
        EventKind::RolloutStarted => "rollout started",
        EventKind::RolloutHealthy => "rollout healthy",
        EventKind::RolloutFailed => "rollout FAILED",
        EventKind::RolloutSuperseded => "rollout superseded",
        EventKind::Reverted => "REVERTED",
        EventKind::Degraded => "DEGRADED",
        EventKind::Regressed => "regressed",
        EventKind::Pinned => "pinned",
        EventKind::Unpinned => "unpinned",
        EventKind::WaveHeld => "wave HELD",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_message_reaches_subscribers_with_url_credentials_masked() {
        let hub = Hub::default();
        let mut rx = hub.subscribe();
        hub.emit(Event {
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
            app: "web".into(),
            kind: EventKind::RolloutFailed,
            revision: Some(1),
            phase: None,
            message: "fetch from https://deployer:s3cret@git.example/x.git failed".into(),
        });
        let got = rx.try_recv().expect("the event");
        assert_eq!(
            got.message,
            "fetch from https://***@git.example/x.git failed"
        );
    }

    #[tokio::test]
    async fn a_failed_notification_is_described_without_its_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/services/T0/B0/s3cretpath");
        let e = crate::clients::plain()
            .post(&url)
            .timeout(NOTIFY_TIMEOUT)
            .send()
            .await
            .expect_err("nothing listens");
        assert!(
            e.to_string().contains("s3cretpath"),
            "reqwest quotes it: {e}"
        );
        let said = error_chain(e);
        assert!(!said.contains("s3cretpath"), "{said}");
        assert!(said.contains("error sending request"), "{said}");
    }
}

//! The webhook intake: a push notice from the git host (GitHub's HMAC signature or
//! GitLab's token, checked in constant time against the secret the controller was started
//! with), its arrival recorded in the source status, and what it asks of the daemon: fetch
//! the config repo now and run a pass ([`Wake`]). The body is not read beyond the
//! signature: a pass reads desired state afresh whatever the notice says. The HTTP route
//! lives in the API ([`crate::runtime::api`]) and calls [`receive`].

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::state;

/// Read the webhook secret from `path` (see [`crate::redact::read_secret_file`]; a file
/// others can read is taken, as it always was).
///
/// # Errors
/// When the file cannot be read, or holds nothing: an empty secret would authenticate
/// anyone (an empty GitLab token, an HMAC keyed with nothing), so the controller refuses
/// to start rather than serve webhooks with it.
pub fn read_webhook_secret(path: &std::path::Path) -> anyhow::Result<String> {
    crate::redact::read_secret_file(path, "webhook secret file (--webhook-secret-file)", false)
        .map_err(|e| match matches!(e, crate::redact::SecretFileError::Empty { .. }) {
            true => anyhow::anyhow!(
                "{e}: an empty secret would authenticate anyone; write the secret into it, or start without --webhook-secret-file"
            ),
            false => anyhow::anyhow!(e),
        })
}

/// True when `headers` carry a valid GitHub (`X-Hub-Signature-256: sha256=<hex>`, an
/// HMAC-SHA256 of the body) or GitLab (`X-Gitlab-Token`) credential for `secret`. Both
/// comparisons are constant-time. An empty secret authenticates nobody (anyone can send
/// an empty token or compute an HMAC keyed with nothing).
pub fn webhook_authentic(headers: &HeaderMap, body: &[u8], secret: &str) -> bool {
    use hmac::Mac;
    if secret.is_empty() {
        return false;
    }
    if let Some(sig) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
    {
        let Some(hex_sig) = sig.strip_prefix("sha256=") else {
            return false;
        };
        let Ok(expected) = hex::decode(hex_sig) else {
            return false;
        };
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(body);
        return mac.verify_slice(&expected).is_ok();
    }
    if let Some(token) = headers.get("x-gitlab-token").and_then(|v| v.to_str().ok()) {
        return token.as_bytes().ct_eq(secret.as_bytes()).into();
    }
    false
}

/// Why a webhook was turned away; nothing was recorded and nothing woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The controller was started without a webhook secret.
    #[error("webhooks are not enabled (start with --webhook-secret-file)")]
    NotEnabled,
    /// The signature or token is missing or does not match the secret.
    #[error("missing or bad webhook signature")]
    NotAuthentic,
}

/// What an authentic webhook asks of the daemon: fetch the config repo now (a remote one;
/// the poller's wait ends) and run a pass. Sent with [`Wake::send`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a webhook wakes nothing until the wake is sent"]
pub struct Wake;

impl Wake {
    /// Wake the poller (`fetch_now`) and the reconcile loop (`trigger`).
    pub fn send(self, fetch_now: &Notify, trigger: &Notify) {
        fetch_now.notify_one();
        trigger.notify_one();
    }
}

/// Take in a webhook: check it against `secret` (`None`: webhooks are off), record its
/// arrival (`lastWebhookAt`) in `store`'s source status, and say what to wake.
///
/// # Errors
/// [`Refusal`] when webhooks are off or the notice is not authentic.
pub fn receive(
    store: &state::Store,
    secret: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Wake, Refusal> {
    let secret = secret.ok_or(Refusal::NotEnabled)?;
    if !webhook_authentic(headers, body, secret) {
        return Err(Refusal::NotAuthentic);
    }
    let mut src = store.load_source();
    src.last_webhook_at = Some(state::now());
    if let Err(e) = store.save_source(&src) {
        tracing::warn!("could not record the webhook's arrival: {e}");
    }
    Ok(Wake)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github_headers(secret: &str, body: &[u8]) -> HeaderMap {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let sig = hex::encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            format!("sha256={sig}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn webhooks_are_authentic_only_with_the_secret() {
        let body = b"{\"ref\":\"refs/heads/main\"}";
        assert!(webhook_authentic(&github_headers("k3y", body), body, "k3y"));
        assert!(!webhook_authentic(
            &github_headers("other", body),
            body,
            "k3y"
        ));
        let mut gitlab = HeaderMap::new();
        gitlab.insert("x-gitlab-token", "k3y".parse().unwrap());
        assert!(webhook_authentic(&gitlab, body, "k3y"));
        assert!(!webhook_authentic(&gitlab, body, "k3y-not"));
        assert!(!webhook_authentic(&HeaderMap::new(), body, "k3y"));
    }

    #[test]
    fn an_empty_secret_authenticates_nobody() {
        let body = b"{}";
        // An HMAC keyed with the empty string is computable by anyone.
        assert!(!webhook_authentic(&github_headers("", body), body, ""));
        let mut gitlab = HeaderMap::new();
        gitlab.insert("x-gitlab-token", "".parse().unwrap());
        assert!(!webhook_authentic(&gitlab, body, ""));
    }

    #[test]
    fn an_authentic_webhook_is_recorded_and_a_refused_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = state::Store::new(dir.path());
        let body = b"{}";
        let headers = github_headers("k3y", body);
        assert_eq!(
            receive(&store, None, &headers, body),
            Err(Refusal::NotEnabled)
        );
        assert_eq!(
            receive(&store, Some("other"), &headers, body),
            Err(Refusal::NotAuthentic)
        );
        assert_eq!(store.load_source().last_webhook_at, None);
        assert_eq!(receive(&store, Some("k3y"), &headers, body), Ok(Wake));
        assert!(store.load_source().last_webhook_at.is_some());
    }

    #[tokio::test]
    async fn a_wake_asks_the_poller_for_a_fetch_and_the_loop_for_a_pass() {
        let (fetch_now, trigger) = (Notify::new(), Notify::new());
        Wake.send(&fetch_now, &trigger);
        let within = std::time::Duration::from_secs(1);
        assert!(
            tokio::time::timeout(within, fetch_now.notified())
                .await
                .is_ok()
        );
        assert!(
            tokio::time::timeout(within, trigger.notified())
                .await
                .is_ok()
        );
    }
}

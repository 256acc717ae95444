//! The bodies of the local API's mutating calls and their answers, in one place: the
//! handlers in [`crate::runtime::api`] deserialize requests into these and answer with them, and the
//! CLI (through [`crate::runtime::api::Client`]) sends and reads the same types.
//!
//! Wire format: JSON, field names as written here (they are single words, so there is no
//! case question). Optional request fields are left out when empty.

use serde::{Deserialize, Serialize};

/// Body of `POST /api/v1/apps/{app}/pin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// The revision to hold; default: the live one when healthy, else the last healthy one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Why (required).
    pub reason: String,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Who asked: the body of `POST /api/v1/apps/{app}/unpin`. The CLI sends the same body
/// (empty) to retry and reconcile, which take none and ignore what they are given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByRequest {
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The answer to pin (the pin now held) and to unpin (the pin just removed): 200 when it
/// is in force at once, 202 (and `pending`) while a pass runs, which stops before its next
/// live step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinResponse {
    /// The pin.
    #[serde(flatten)]
    pub pin: shipshape_spec::status::Pin,
    /// A pass was in flight: the request is recorded, and that pass stops before its next
    /// step that changes live state (or at once, in an install, build or verification).
    #[serde(default)]
    pub pending: bool,
}

/// The answer to `POST /api/v1/apps/{app}/retry`: 200, or 202 (and `pending`) while a pass
/// runs; the retry is applied after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryResponse {
    /// How many quarantined config commits are released (as the records stood).
    pub released: usize,
    /// A pass was in flight: recorded; what it quarantines of the desired config commit
    /// is released when it ends.
    #[serde(default)]
    pub pending: bool,
}

/// The answer to `POST /api/v1/source/allow-rewind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowRewindResponse {
    /// The refused config commit that will be applied (once, if it is trusted).
    pub commit: String,
}

/// The answer (202) to `POST /api/v1/apps/{app}/reconcile` and `POST /api/v1/reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedResponse {
    /// The app a pass was asked for, or `all`.
    pub queued: String,
}

/// The answer (202) to an authentic `POST /hooks/git`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookResponse {
    /// What was queued: always `queued` (a fetch of the config repo, then a pass).
    pub fetch: String,
}

/// The body of every error answer (4xx, 5xx) the API itself produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_optional_fields_stay_off_the_wire_and_unknown_pin_fields_are_refused() {
        assert_eq!(serde_json::to_string(&ByRequest::default()).unwrap(), "{}");
        let pin = PinRequest {
            reason: "incident".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&pin).unwrap(),
            r#"{"reason":"incident"}"#
        );
        let back: PinRequest =
            serde_json::from_str(r#"{"revision":3,"reason":"r","by":"alice"}"#).unwrap();
        assert_eq!(
            back,
            PinRequest {
                revision: Some(3),
                reason: "r".into(),
                by: Some("alice".into())
            }
        );
        assert!(serde_json::from_str::<PinRequest>(r#"{"reason":"r","force":true}"#).is_err());
    }

    /// The client against a stand-in server on the socket: answers read as their types, refusals as
    /// their [`ErrorBody`] or, when not one of ours, their text.
    #[tokio::test]
    async fn the_client_reads_answers_and_refusals() {
        use crate::runtime::api::{Client, ClientError};
        use axum::Json;
        use axum::http::StatusCode;
        use axum::routing::post;

        let router = axum::Router::new()
            .route(
                "/pin",
                post(|Json(req): Json<PinRequest>| async move {
                    Json(PinResponse {
                        pin: shipshape_spec::status::Pin {
                            revision: req.revision.unwrap_or(7),
                            by: req.by.unwrap_or_default(),
                            at: shipshape_spec::Timestamp::UNIX_EPOCH,
                            reason: req.reason,
                            source: shipshape_spec::status::PinSource::Cli,
                        },
                        pending: false,
                    })
                }),
            )
            .route(
                "/refused",
                post(|| async {
                    (
                        StatusCode::CONFLICT,
                        Json(ErrorBody {
                            error: "not pinned".into(),
                        }),
                    )
                }),
            )
            .route(
                "/plain",
                post(|| async { (StatusCode::UNPROCESSABLE_ENTITY, "missing field `reason`\n") }),
            )
            .route(
                "/other",
                post(|| async {
                    Json(QueuedResponse {
                        queued: "all".into(),
                    })
                }),
            );
        let dir = tempfile::tempdir().unwrap();
        let listener =
            crate::runtime::api::edge::bind_socket(&dir.path().join("api.sock")).unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = Client::from_state_dir(dir.path()).unwrap();
        assert!(matches!(client.via, crate::runtime::api::Via::Socket(_)));

        let req = PinRequest {
            revision: None,
            reason: "incident".into(),
            by: Some("alice".into()),
        };
        let pin: PinResponse = client.post("/pin", &req).await.unwrap();
        assert_eq!(
            (
                pin.pin.revision,
                pin.pin.by.as_str(),
                pin.pin.reason.as_str()
            ),
            (7, "alice", "incident")
        );
        assert!(!pin.pending);
        let refused = client
            .post::<_, PinResponse>("/refused", &ByRequest::default())
            .await;
        assert!(
            matches!(&refused, Err(ClientError::Refused { status: 409, message }) if message == "not pinned"),
            "{refused:?}"
        );
        let plain = client
            .post::<_, PinResponse>("/plain", &ByRequest::default())
            .await;
        assert!(
            matches!(&plain, Err(ClientError::Refused { status: 422, message }) if message == "missing field `reason`"),
            "{plain:?}"
        );
        let other = client
            .post::<_, RetryResponse>("/other", &ByRequest::default())
            .await;
        assert!(matches!(other, Err(ClientError::BadAnswer(_))), "{other:?}");
    }
}

//! Prometheus's HTTP API as the controller asks it: one instant query (`/api/v1/query`)
//! with a time limit, its answer's `data` or why there is none. The `prometheus` health
//! check and `shipshape fleet` both ask through [`instant_query`] and read the `data` their
//! own way (a first sample; labelled vectors).

use std::time::Duration;

/// Why an instant query has no `data`.
#[derive(Debug)]
pub enum QueryError {
    /// No answer: connection refused, time-out, DNS (the transport error, with its causes).
    Unreachable(String),
    /// An answer that is not Prometheus's JSON: the status and the body's first 200 chars.
    Unreadable {
        /// The HTTP status.
        status: u16,
        /// What the body was, or why it could not be read.
        detail: String,
    },
    /// Prometheus refused the query (`"status": "error"`).
    Rejected {
        /// The HTTP status.
        status: u16,
        /// Prometheus's error message.
        message: String,
    },
}

/// Ask `base` (a Prometheus URL) for `promql` at this instant, with `timeout` both on the
/// request and as Prometheus's own query time-out; returns the answer's `data`.
///
/// # Errors
/// [`QueryError`]: no answer, an unreadable one, or the query refused.
pub async fn instant_query(
    client: &reqwest::Client,
    base: &str,
    promql: &str,
    timeout: Duration,
) -> Result<serde_json::Value, QueryError> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let response = client
        .get(&url)
        .query(&[
            ("query", promql),
            ("timeout", &format!("{}ms", timeout.as_millis())),
        ])
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| QueryError::Unreachable(error_chain(&e)))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| QueryError::Unreachable(error_chain(&e)))?;
    let mut body: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| QueryError::Unreadable {
            status,
            detail: text.chars().take(200).collect(),
        })?;
    if body["status"] != "success" {
        let message = body["error"]
            .as_str()
            .unwrap_or("no error message")
            .to_string();
        return Err(QueryError::Rejected { status, message });
    }
    Ok(body["data"].take())
}

/// An error and its causes, `outer: inner: innermost` (reqwest's own message stops at the
/// outermost, e.g. "error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

//! Requests (pin, unpin, retry) recorded at once, durably, beside an app's records:
//! `<state-dir>/apps/<name>/requests.json`, written atomically (0600) by the API under the
//! app's request lock, never by a pass. Each request has a sequence number; the record
//! says up to which one it has absorbed (`requestsApplied`). Reading the records applies
//! the requests after that mark ([`apply`]), so every reader (status, the API, the pass
//! at its start) sees a pin the moment it is recorded, and a pass that saves the record it
//! loaded before a request never overwrites it: the request stays in the file, after the
//! mark, until a save that absorbed it (then the next request recorded drops it:
//! [`RequestFile::push`]).
//!
//! A pass in flight reads the file before every step that changes live state
//! ([`crate::reconcile::target::pin_change_stops`] says whether it must stop).

use serde::{Deserialize, Serialize};
use shipshape_spec::status::{Pin, PinSource, Timestamp};

use super::AppRecord;

/// Requests waiting beyond this many are refused (a pass absorbs them all when it ends).
pub const MAX_PENDING: usize = 64;

/// What a person asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Request {
    /// Hold the app at this pin (already checked by [`crate::reconcile::target::pin_revision`]).
    Pin {
        /// The pin.
        pin: Pin,
    },
    /// Lift the CLI's pin (a pin from the document is only lifted in git).
    Unpin {
        /// Who.
        by: String,
    },
    /// Release this config commit from quarantine (`None`: every one) and forget a
    /// regression the monitor saw.
    #[serde(rename_all = "camelCase")]
    Retry {
        /// The desired config commit when it was asked.
        config_commit: Option<String>,
    },
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Its sequence number (per app, increasing).
    pub seq: u64,
    /// When it was recorded.
    pub at: Timestamp,
    /// What.
    #[serde(flatten)]
    pub request: Request,
}

/// The file: the requests not yet known to be absorbed, and the next number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestFile {
    /// The next sequence number.
    pub next: u64,
    /// Oldest first.
    pub pending: Vec<Entry>,
}

impl RequestFile {
    /// The entries after `applied`, oldest first.
    pub fn after(&self, applied: u64) -> Vec<Entry> {
        self.pending
            .iter()
            .filter(|e| e.seq > applied)
            .cloned()
            .collect()
    }

    /// Append `request`, dropping what `applied` says the saved record absorbed; returns
    /// its number, or `None` when [`MAX_PENDING`] are already waiting.
    pub fn push(&mut self, request: Request, applied: u64, at: Timestamp) -> Option<u64> {
        self.pending.retain(|e| e.seq > applied);
        if self.pending.len() >= MAX_PENDING {
            return None;
        }
        // A file lost or reset must not reuse numbers the record already absorbed.
        let seq = self.next.max(applied + 1).max(1);
        self.next = seq + 1;
        self.pending.push(Entry { seq, at, request });
        Some(seq)
    }
}

/// The pin after `requests`, starting from `pin`: the one rule both the reading of the
/// records ([`apply`]) and a pass's checks use.
pub fn pin_after(mut pin: Option<Pin>, requests: &[Entry]) -> Option<Pin> {
    for e in requests {
        match &e.request {
            Request::Pin { pin: p } => pin = Some(p.clone()),
            Request::Unpin { .. } => {
                // A pin the document set since is lifted only in git.
                if pin.as_ref().is_some_and(|p| p.source == PinSource::Cli) {
                    pin = None;
                }
            }
            Request::Retry { .. } => {}
        }
    }
    pin
}

/// Absorb `requests` (those after the record's mark, oldest first) into `rec`.
pub fn apply(rec: &mut AppRecord, requests: &[Entry]) {
    for e in requests {
        if e.seq <= rec.requests_applied {
            continue;
        }
        match &e.request {
            Request::Pin { .. } | Request::Unpin { .. } => {
                rec.pin = pin_after(rec.pin.take(), std::slice::from_ref(e));
            }
            Request::Retry { config_commit } => {
                // A retry releases what had failed when it was asked for, never a failure
                // that the pass in flight recorded after it (that would roll the commit out
                // again at once, unasked).
                let asked = e.at;
                rec.quarantined.retain(|q| {
                    let named = config_commit.as_ref().is_none_or(|c| &q.config_commit == c);
                    !(named && q.at <= asked)
                });
                if rec.regression.as_ref().is_some_and(|r| r.at <= asked) {
                    rec.regression = None;
                }
            }
        }
        rec.requests_applied = e.seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Quarantine;

    fn pin(n: u64, source: PinSource) -> Pin {
        Pin {
            revision: n,
            by: "ana".into(),
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
            reason: "incident".into(),
            source,
        }
    }

    fn file(requests: Vec<Request>) -> RequestFile {
        let mut f = RequestFile::default();
        for r in requests {
            f.push(r, 0, shipshape_spec::Timestamp::UNIX_EPOCH).unwrap();
        }
        f
    }

    #[test]
    fn a_retry_releases_only_what_had_failed_when_it_was_asked_for() {
        let entry = |config_commit: &str, at: &str| Quarantine {
            config_commit: config_commit.into(),
            revision: 2,
            reason: "broken".into(),
            at: at.parse().unwrap(),
        };
        let mut rec = AppRecord::new("a");
        // c2 failed before the retry; c3 failed in the pass that was running when it came.
        rec.quarantined = vec![
            entry("c2", "2026-12-01T10:00:00.000Z"),
            entry("c3", "2026-12-01T10:05:00.000Z"),
        ];
        rec.regression = Some(shipshape_spec::status::Regression {
            revision: 3,
            at: "2026-12-01T10:05:00.000Z".parse().unwrap(),
            reason: "api: status 500".into(),
        });
        let retry = Entry {
            seq: 1,
            at: "2026-12-01T10:01:00.000Z".parse().unwrap(),
            request: Request::Retry {
                config_commit: None,
            },
        };
        apply(&mut rec, std::slice::from_ref(&retry));
        let left: Vec<_> = rec
            .quarantined
            .iter()
            .map(|q| q.config_commit.as_str())
            .collect();
        assert_eq!(
            left,
            ["c3"],
            "the failure after the retry stays quarantined"
        );
        assert!(
            rec.regression.is_some(),
            "a regression seen after the retry stays"
        );
        // A retry naming c3, asked after it failed, releases it.
        let again = Entry {
            seq: 2,
            at: "2026-12-01T10:06:00.000Z".parse().unwrap(),
            request: Request::Retry {
                config_commit: Some("c3".into()),
            },
        };
        apply(&mut rec, std::slice::from_ref(&again));
        assert!(rec.quarantined.is_empty());
        assert!(rec.regression.is_none());
    }

    #[test]
    fn requests_apply_in_order_once_and_a_document_pin_survives_an_unpin() {
        let mut rec = AppRecord::new("a");
        rec.quarantined.push(Quarantine {
            config_commit: "c2".into(),
            revision: 2,
            reason: "broken".into(),
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
        });
        let f = file(vec![
            Request::Pin {
                pin: pin(1, PinSource::Cli),
            },
            Request::Retry {
                config_commit: Some("c2".into()),
            },
            Request::Unpin { by: "bo".into() },
            Request::Pin {
                pin: pin(3, PinSource::Cli),
            },
        ]);
        apply(&mut rec, &f.after(0));
        assert_eq!(rec.pin.as_ref().map(|p| p.revision), Some(3));
        assert!(rec.quarantined.is_empty());
        assert_eq!(rec.requests_applied, 4);
        // Applied once: a quarantine set after the retry stays.
        rec.quarantined.push(Quarantine {
            config_commit: "c2".into(),
            revision: 2,
            reason: "broken again".into(),
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
        });
        apply(&mut rec, &f.after(0));
        assert_eq!(rec.quarantined.len(), 1, "a request was applied twice");

        let doc = Some(pin(1, PinSource::Document));
        let unpin = file(vec![Request::Unpin { by: "bo".into() }]);
        assert_eq!(pin_after(doc.clone(), &unpin.pending), doc);
    }

    #[test]
    fn pushing_drops_what_the_record_absorbed_never_reuses_a_number_and_is_bounded() {
        let mut f = file(vec![
            Request::Unpin { by: "a".into() },
            Request::Unpin { by: "b".into() },
        ]);
        assert_eq!(
            f.push(
                Request::Unpin { by: "c".into() },
                2,
                shipshape_spec::Timestamp::UNIX_EPOCH
            ),
            Some(3)
        );
        assert_eq!(f.pending.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        // The file was lost, the record had absorbed up to 9.
        let mut lost = RequestFile::default();
        assert_eq!(
            lost.push(
                Request::Unpin { by: "d".into() },
                9,
                shipshape_spec::Timestamp::UNIX_EPOCH
            ),
            Some(10)
        );
        let mut full = RequestFile::default();
        for _ in 0..MAX_PENDING {
            full.push(
                Request::Unpin { by: "e".into() },
                0,
                shipshape_spec::Timestamp::UNIX_EPOCH,
            )
            .unwrap();
        }
        assert_eq!(
            full.push(
                Request::Unpin { by: "f".into() },
                0,
                shipshape_spec::Timestamp::UNIX_EPOCH
            ),
            None
        );
    }
}

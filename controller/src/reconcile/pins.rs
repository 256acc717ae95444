//! A pass's pin checks: before every step that changes live state (backup, migrate,
//! restore, switch, pm2, hooks) the run reads the requests recorded since it began
//! (`requests.json`, see [`crate::state::requests`]) and stops when the pin in force would
//! have it converge elsewhere ([`target::pin_change_stops`]); an install or build in
//! progress is cut short the same way (its process group is killed). One check, at the
//! step boundary, in [`super::execute`]; verification stops on any request already.
//!
//! The file is read only when something may have changed: the API bumps the handle's
//! generation ([`AppHandle::interrupt`]) after it wrote a request, so a check whose
//! generation is the one of the last read gives that read's answer again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shipshape_spec::App;
use shipshape_spec::status::{Pin, PinSource};

use super::AppHandle;
use super::publish::Note;
use super::target::{self, DocumentPinChange};
use crate::runtime::events::EventKind;
use crate::state::{self, AppRecord, Store};

/// A pin of `revision`, set now: the one constructor, for the CLI's (through the API) and
/// the document's (`spec.pin`, see [`document_pin`]).
pub fn new_pin(revision: u64, by: &str, reason: &str, source: PinSource) -> Pin {
    Pin {
        revision,
        by: by.to_string(),
        at: state::now(),
        reason: reason.to_string(),
        source,
    }
}

/// The pin `spec.pin` sets on `revision` (by whom the document says, else "the document").
pub fn document_pin(revision: u64, doc: &shipshape_spec::app::DocumentPin) -> Pin {
    let by = doc.by.as_deref().unwrap_or("the document");
    new_pin(revision, by, &doc.reason, PinSource::Document)
}

/// The event's words for a pin set: "pinned at revision 3 by ana: incident 42".
pub fn pinned_words(pin: &Pin) -> String {
    format!(
        "pinned at revision {} by {}: {}",
        pin.revision, pin.by, pin.reason
    )
}

/// Apply what the document's `spec.pin` asks of `rec`'s pin ([`target::document_pin`]):
/// returns the event to publish, if the pin changed. Pure.
pub fn apply_document_pin(rec: &mut AppRecord, desired: &App) -> Option<Note> {
    match target::document_pin(rec, desired) {
        DocumentPinChange::Keep => None,
        DocumentPinChange::Remove => rec.pin.take().map(|old| {
            let m = "the document's pin was removed".to_string();
            Note::new(EventKind::Unpinned, Some(old.revision), m)
        }),
        DocumentPinChange::Set(revision) => {
            let doc = desired.spec.pin.as_ref().expect("document pins");
            let pin = document_pin(revision, doc);
            let note = Note::new(EventKind::Pinned, Some(revision), pinned_words(&pin));
            rec.pin = Some(pin);
            Some(note)
        }
        DocumentPinChange::Refused(why) => {
            tracing::warn!(app = %rec.name, "spec.pin: {why}; not pinning");
            None
        }
    }
}

/// How often an install or build in progress looks for a request (only when one was
/// recorded since the last look: the API bumps the handle's generation).
const BUILD_POLL: Duration = Duration::from_millis(200);

/// What a run compares the recorded requests with.
#[derive(Debug, Clone)]
pub struct PinWatch {
    store: Store,
    app: String,
    handle: Arc<AppHandle>,
    /// The last request the pass's record absorbed.
    applied: u64,
    /// The pin the run began under.
    pin: Option<Pin>,
    /// The revision the run makes live.
    making_live: u64,
    /// The last read of the file (shared by clones: they compare the same things).
    last: Arc<Mutex<Option<LastRead>>>,
}

/// What a read of the requests said, and the handle's generation just before it.
#[derive(Debug)]
struct LastRead {
    generation: u64,
    stop: Option<String>,
}

impl PinWatch {
    /// A watch for a run of `rec`'s app that makes `making_live` live.
    pub fn new(store: &Store, rec: &AppRecord, handle: &Arc<AppHandle>, making_live: u64) -> Self {
        PinWatch {
            store: store.clone(),
            app: rec.name.clone(),
            handle: handle.clone(),
            applied: rec.requests_applied,
            pin: rec.pin.clone(),
            making_live,
            last: Arc::default(),
        }
    }

    /// Why the run must stop now, if it must. Requests that cannot be read stop it too:
    /// nothing live changes while a request might say not to. The file is read the first
    /// time, then only after a request was recorded since the last read.
    pub fn check(&self) -> Option<String> {
        // Taken before the read: a request written after it bumps it again.
        let generation = self.handle.generation();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(read) = &*last
            && read.generation == generation
        {
            return read.stop.clone();
        }
        let stop = self.read();
        *last = Some(LastRead {
            generation,
            stop: stop.clone(),
        });
        stop
    }

    fn read(&self) -> Option<String> {
        match self.store.load_requests(&self.app) {
            Ok(file) => target::pin_change_stops(
                self.pin.as_ref(),
                &file.after(self.applied),
                self.making_live,
            ),
            Err(e) => Some(format!("its recorded requests cannot be read ({e})")),
        }
    }

    /// Resolves (with why) once a request recorded while waiting means the run must stop.
    pub async fn stopped(&self) -> String {
        loop {
            if let Some(why) = self.check() {
                return why;
            }
            tokio::time::sleep(BUILD_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::requests::Request;
    use shipshape_spec::status::PinSource;

    /// The file is read again only after the handle's generation moved (the API bumps it
    /// once the request is written), and a stop once seen stays, for every clone.
    #[test]
    fn a_pin_check_reads_the_requests_again_only_after_a_request_was_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let rec = AppRecord::new("a");
        store.save(&rec).unwrap();
        let handle = Arc::new(AppHandle::default());
        let watch = PinWatch::new(&store, &rec, &handle, 2);
        assert_eq!(watch.check(), None);
        let pin = Pin {
            revision: 1,
            by: "ana".into(),
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
            reason: "incident".into(),
            source: PinSource::Cli,
        };
        store
            .add_request("a", Request::Pin { pin })
            .unwrap()
            .unwrap();
        // Written, not yet announced: the last read's answer stands.
        assert_eq!(watch.check(), None);
        handle.interrupt();
        let stop = Some("pinned at revision 1 by ana (incident)".to_string());
        assert_eq!(watch.check(), stop);
        // The file gone (or unreadable) since: the stop seen stays without a new request.
        std::fs::remove_file(store.requests_path("a")).unwrap();
        assert_eq!(watch.clone().check(), stop);
        // A new generation reads again: no requests left, nothing stops the run.
        handle.interrupt();
        assert_eq!(watch.check(), None);
    }
}

//! Releases on disk that a pass no longer needs: sealed ones beyond `releases.keep` (never
//! the live, last good or pinned one) and unsealed ones (failed or interrupted
//! preparations), at the end of a pass.

use shipshape_spec::{App, Timestamp};
use tracing::{info, warn};

use super::Controller;
use crate::release::Layout;
use crate::state::AppRecord;

impl Controller {
    /// Delete sealed releases beyond `releases.keep`, never the live, last good or pinned
    /// one, and every unsealed release directory that `current` does not point at, except
    /// `just_failed` (the release this pass failed to prepare, kept for a person to look
    /// at until the next pass that ends a rollout).
    pub(super) fn prune_releases(&self, app: &App, rec: &AppRecord, just_failed: Option<&str>) {
        let layout = Layout::new(&app.spec.releases.root);
        let Ok(scan) = layout.scan() else { return };
        let current = layout.current_release();
        let mut protected: Vec<String> = current.iter().cloned().collect();
        let keep_revisions = [
            rec.live_revision,
            super::target::good_revision(rec, None).map(|(h, _)| h.revision.number),
            rec.pin.as_ref().map(|p| p.revision),
        ];
        for r in &rec.revisions {
            if keep_revisions.contains(&Some(r.revision.number)) {
                protected.push(r.release.clone());
            }
        }
        let mut sealed: Vec<(Timestamp, String)> = scan
            .iter()
            .filter_map(|(id, m)| m.as_ref().map(|m| (m.sealed_at, id.clone())))
            .collect();
        sealed.sort();
        sealed.reverse();
        let keep = app.spec.releases.keep as usize;
        for (i, (_, id)) in sealed.iter().enumerate() {
            if i < keep || protected.contains(id) {
                continue;
            }
            info!(app = %app.metadata.name, release = %id, "pruning release beyond releases.keep");
            if let Err(e) = std::fs::remove_dir_all(layout.release(id)) {
                warn!(app = %app.metadata.name, release = %id, "pruning failed: {e}");
            }
        }
        // Unsealed directories (failed or interrupted preparations) are never live and
        // never reused as they are (a fetch starts them afresh): each goes unless `current`
        // points at it. Only this app's pass prepares releases under its root, and this
        // runs at the end of that pass, so none of them is in use.
        for (id, marker) in &scan {
            if marker.is_some() || protected.contains(id) || Some(id.as_str()) == just_failed {
                continue;
            }
            info!(app = %app.metadata.name, release = %id, "removing an unsealed release (a failed or interrupted preparation)");
            if let Err(e) = std::fs::remove_dir_all(layout.release(id)) {
                warn!(app = %app.metadata.name, release = %id, "removing the unsealed release failed: {e}");
            }
        }
    }
}

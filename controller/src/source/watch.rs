//! The local watch: a local config repo is read in place, so a moved branch is seen through
//! notify on its git directory (`refs/heads/`, `HEAD`, `packed-refs`) and wakes a pass
//! within [`DEBOUNCE`]; each tip read is recorded in the source status.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::reconcile::Controller;
use crate::state;

/// How long a burst of ref changes is collected before the tip is read.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// Whether a change in the watched git directories can move a ref. Opening, reading and
/// closing a file read cannot: reading the tip opens `.git/config` (and `HEAD`,
/// `packed-refs`), which inotify reports; taken as a change, each read of the tip caused
/// the next, and the controller re-read the repository every [`DEBOUNCE`] while idle. A
/// file closed after writing still counts (a ref written in place).
fn moves_a_ref(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

/// Record `tip` as the config repo's branch tip, read just now, in the source status and
/// its gauges (`what` names the tip in the warning when the status cannot be written).
pub fn record_tip(ctl: &Controller, tip: Option<String>, what: &str) {
    let mut source = ctl.source_status();
    source.tip = tip;
    source.last_success_at = Some(state::now());
    if let Err(e) = ctl.store.save_source(&source) {
        warn!("could not record the config repo's {what}: {e}");
    }
    ctl.publish_source_metrics(&source);
}

/// Watch a local repo's refs: a moved branch triggers a pass within [`DEBOUNCE`]. The
/// watch lasts as long as the returned watcher.
///
/// # Errors
/// When the repo's git directory cannot be opened or watched.
pub fn watch_local(
    ctl: Arc<Controller>,
    trigger: Arc<Notify>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let git_dir = ctl.config.git_dir()?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| moves_a_ref(&e.kind)) {
            let _ = tx.send(());
        }
    })?;
    let heads = git_dir.join("refs").join("heads");
    watcher.watch(&heads, notify::RecursiveMode::Recursive)?;
    // packed-refs and HEAD live directly in the git directory.
    watcher.watch(&git_dir, notify::RecursiveMode::NonRecursive)?;
    info!(dir = %git_dir.display(), "watching the config repo's refs");
    tokio::spawn(follow_tip(ctl, trigger, rx));
    Ok(watcher)
}

/// On each burst of ref changes, read the tip; when it moved, record it and wake a pass.
async fn follow_tip(
    ctl: Arc<Controller>,
    trigger: Arc<Notify>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let mut last = None;
    while changes.recv().await.is_some() {
        tokio::time::sleep(DEBOUNCE).await;
        while changes.try_recv().is_ok() {}
        let config = ctl.config.clone();
        let tip = tokio::task::spawn_blocking(move || config.tip())
            .await
            .ok()
            .and_then(Result::ok);
        if tip.is_some() && tip != last {
            debug!(tip = ?tip, "the branch moved");
            last = tip.clone();
            record_tip(&ctl, tip, "new tip");
            trigger.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn only_changes_that_can_move_a_ref_wake_the_watcher() {
        for read in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(!moves_a_ref(&read), "{read:?}");
        }
        for change in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Remove(RemoveKind::File),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Any,
        ] {
            assert!(moves_a_ref(&change), "{change:?}");
        }
    }
}

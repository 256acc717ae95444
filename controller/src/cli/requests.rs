//! The commands that ask the running controller to act, through its local API with the
//! token from the state directory: `pin`, `unpin`, `retry` and `reconcile`. Requests and
//! answers are the typed bodies of [`crate::runtime::api::types`]; the rules (which revision may
//! be pinned, and so on) are the API's, not the CLI's.

use std::future::Future;
use std::path::Path;

use crate::runtime::api::Client;
use crate::runtime::api::ClientError;
use crate::runtime::api::types::{ByRequest, PinRequest};

/// `shipshape pin`: hold `app` at `revision` (default: the controller's choice, the live
/// revision when healthy, else the last healthy one).
pub fn pin(
    state_dir: &Path,
    app: &str,
    revision: Option<u64>,
    reason: String,
    by: Option<String>,
) -> i32 {
    let req = PinRequest {
        revision,
        reason,
        by: Some(by.unwrap_or_else(whoami)),
    };
    call(
        state_dir,
        |c| async move { c.pin(app, &req).await },
        |p| {
            let pinned = format!(
                "{app} pinned at revision {} by {}: {}",
                p.pin.revision, p.pin.by, p.pin.reason
            );
            if p.pending {
                format!("{pinned}; {IN_FLIGHT}, then the next pass converges to the pin")
            } else {
                pinned
            }
        },
    )
}

/// What a 202 means for a pin or an unpin: recorded, and the pass running now stops.
const IN_FLIGHT: &str =
    "the pass in flight stops before its next live step (an install or build is cut short)";

/// `shipshape unpin`: let `app` follow git again.
pub fn unpin(state_dir: &Path, app: &str, by: Option<String>) -> i32 {
    let req = ByRequest {
        by: Some(by.unwrap_or_else(whoami)),
    };
    call(
        state_dir,
        |c| async move { c.unpin(app, &req).await },
        |p| {
            if p.pending {
                format!("{app} unpinned; {IN_FLIGHT}, then the app follows git again")
            } else {
                format!("{app} unpinned; following git again")
            }
        },
    )
}

/// `shipshape retry`: release `app`'s desired config commit from quarantine; a pass follows.
pub fn retry(state_dir: &Path, app: &str) -> i32 {
    call(
        state_dir,
        |c| async move { c.retry(app).await },
        |r| {
            if r.pending {
                format!(
                    "{app}: retry recorded ({} quarantined config commit(s) released now); a pass is in flight: the desired config commit is released from quarantine when it ends, and the next pass tries it",
                    r.released
                )
            } else {
                format!(
                    "{app}: {} quarantined config commit(s) released; a pass is queued",
                    r.released
                )
            }
        },
    )
}

/// `shipshape retry --allow-rewind`: apply the refused config commit that rewinds the branch.
pub fn allow_rewind(state_dir: &Path) -> i32 {
    let by = whoami();
    call(
        state_dir,
        |c| async move { c.allow_rewind(&by).await },
        |r| {
            format!(
                "config commit {} will be applied once (if it is trusted), though it does not descend from the last applied one; a pass is queued",
                crate::plan::short_sha(&r.commit)
            )
        },
    )
}

/// `shipshape reconcile`: ask for a pass now (`app`, if given, must exist).
pub fn reconcile(state_dir: &Path, app: Option<&str>) -> i32 {
    call(
        state_dir,
        |c| async move { c.reconcile(app).await },
        |_| "a pass is queued".to_string(),
    )
}

/// Who is asking: `$SUDO_USER` (the person behind `sudo`), else `$USER`, else `$LOGNAME`,
/// else the account of the effective user id.
fn whoami() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    var("SUDO_USER")
        .or_else(|| var("USER"))
        .or_else(|| var("LOGNAME"))
        .unwrap_or_else(|| {
            // SAFETY: geteuid(2) cannot fail; getpwuid(3) returns a pointer into static
            // storage (or null) that is read at once, before any other call could reuse it.
            unsafe {
                let uid = libc::geteuid();
                let pw = libc::getpwuid(uid);
                if pw.is_null() || (*pw).pw_name.is_null() {
                    format!("uid {uid}")
                } else {
                    std::ffi::CStr::from_ptr((*pw).pw_name)
                        .to_string_lossy()
                        .into_owned()
                }
            }
        })
}

/// Reach the controller of `state_dir`, make one request, and print `ok` of its answer
/// (exit code 0) or the error (exit code 1).
fn call<T, F>(
    state_dir: &Path,
    request: impl FnOnce(Client) -> F,
    ok: impl FnOnce(T) -> String,
) -> i32
where
    F: Future<Output = Result<T, ClientError>>,
{
    if let Err(e) = crate::state::existing(state_dir) {
        eprintln!("error: {e}");
        return 1;
    }
    let client = match Client::from_state_dir(state_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match rt.block_on(request(client)) {
        Ok(answer) => {
            println!("{}", ok(answer));
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

//! Fault injection for the crash tests, compiled only with the `fault-injection` cargo
//! feature (`hack/test.sh` builds the tests with it; a release build has no such code
//! path: `hack/verify-no-faults.sh` checks the binary). Without the feature a fault point
//! is an empty function the compiler removes.

#[cfg(feature = "fault-injection")]
use tracing::warn;

/// Fault injection for the crash tests: `SHIPSHAPE_FAULT=<before|after>:<step>[:<n>]`
/// makes the controller SIGKILL itself at the n-th (default first) such step boundary;
/// `panic:<step>[:<n>]` makes that pass panic before the step instead. Inside a step, a
/// point has its own name (`after:replace-move:<n>`: after the n-th move of a graceful replace).
#[cfg(feature = "fault-injection")]
pub(crate) fn fault_point(when: &str, kind: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEEN: AtomicU32 = AtomicU32::new(0);
    let Ok(spec) = std::env::var("SHIPSHAPE_FAULT") else {
        return;
    };
    let mut parts = spec.split(':');
    let (Some(w), Some(k)) = (parts.next(), parts.next()) else {
        return;
    };
    let nth: u32 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    if w == "panic"
        && when == "before"
        && kind == k
        && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == nth
    {
        panic!("fault injection: a panic before {kind}");
    }
    if w == when && kind == k && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        warn!(
            when,
            step = %kind,
            "fault injection: the controller kills itself here"
        );
        // SAFETY: signalling our own process, as the fault being simulated would.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Without the `fault-injection` feature: nothing (the variable is never read).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn fault_point(_when: &str, _kind: &str) {}

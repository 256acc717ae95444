//! Retry timing: exponential back-off with jitter, capped, reset after a success
//! (kube-runtime's default policy). The only module that knows the `backoff` crate.

use std::time::Duration;

use backoff::backoff::Backoff as _;

/// An exponential back-off schedule.
pub struct Backoff {
    inner: backoff::ExponentialBackoff,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("current", &self.inner.current_interval)
            .field("max", &self.inner.max_interval)
            .finish()
    }
}

impl Backoff {
    /// Start at `initial`, double each time (±50 % jitter), never above `max`, forever.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let inner = backoff::ExponentialBackoff {
            current_interval: initial,
            initial_interval: initial,
            randomization_factor: 0.5,
            multiplier: 2.0,
            max_interval: max,
            max_elapsed_time: None,
            ..backoff::ExponentialBackoff::default()
        };
        Backoff { inner }
    }

    /// The wait before the next try after a failure.
    pub fn next_delay(&mut self) -> Duration {
        self.inner.next_backoff().unwrap_or(self.inner.max_interval)
    }

    /// Back to the initial interval, after a success.
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_stay_capped_and_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let first = b.next_delay();
        assert!(
            first >= Duration::from_millis(500) && first <= Duration::from_millis(1500),
            "{first:?}"
        );
        let mut last = first;
        for _ in 0..20 {
            last = b.next_delay();
            assert!(last <= Duration::from_secs(45), "{last:?}");
        }
        assert!(last >= Duration::from_secs(15), "it grew: {last:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1500));
    }
}

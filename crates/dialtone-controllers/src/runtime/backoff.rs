//! Exponential backoff with jitter, for everything the controllers retry: a launch that
//! fails, a throttled cloud call, a cluster API that does not answer, a task that ends.
//! The n-th failure in a row waits `base · 2ⁿ⁻¹`, capped at `cap`, of which a random half
//! ("equal jitter"), so that many clusters failing together do not retry together.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The longest wait after `failures` failures in a row, before jitter.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.base
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.cap)
    }

    /// How long to wait after `failures` failures in a row (at least one): between half
    /// the ceiling and the ceiling.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures.max(1));
        let half = ceiling / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// Calls `attempt` until it succeeds, logging each failure as `what` and backing off.
pub async fn until_ok<T, E: std::fmt::Display, Fut>(
    what: &str,
    backoff: Backoff,
    mut attempt: impl FnMut() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut failures = 0;
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "{what} failed; retrying");
                tokio::time::sleep(backoff.delay(failures)).await;
            }
        }
    }
}

/// For reloading what a watch follows, after the watch ended.
pub const RELOAD: Backoff = Backoff {
    base: Duration::from_millis(50),
    cap: Duration::from_secs(5),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base_up_to_the_cap_with_jitter_below_the_ceiling() {
        let backoff = Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
        };
        let ceilings: Vec<u64> = (1..=7).map(|n| backoff.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff.ceiling(u32::MAX), backoff.cap, "never overflows");
        for failures in 1..=8 {
            for _ in 0..100 {
                let delay = backoff.delay(failures);
                let ceiling = backoff.ceiling(failures);
                assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?}");
            }
        }
        let spread: std::collections::BTreeSet<_> = (0..50).map(|_| backoff.delay(3)).collect();
        assert!(spread.len() > 10, "jittered, not fixed: {spread:?}");
    }
}

//! When a failed call is sent again: only transient failures, with exponential backoff and jitter,
//! never sooner than the server's `Retry-After`, bounded in count and in time.
//!
//! This module sits below every layer that sends: the executor retries writes with it, and the
//! connectors retry the reads of an observe with it. It knows no error type of theirs: an error
//! says whether it is worth another try through [`Transient`].

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

/// An error that may say "try again": what [`RetryPolicy::retry_idempotent`] needs of it.
pub trait Transient: std::fmt::Display {
    /// Whether sending the same request again might succeed.
    fn is_transient(&self) -> bool;
    /// How long the server asked to wait before trying again, if it said.
    fn retry_after(&self) -> Option<Duration>;
}

/// The retry rules of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times one call may be sent again after its first attempt.
    pub max_retries: u32,
    /// The first backoff delay; later ones double.
    pub min_delay: Duration,
    /// The longest backoff delay.
    pub max_delay: Duration,
    /// The longest time one call may take across all its attempts; past it the call fails.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            budget: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// A fresh sequence of backoff delays for one call (jittered, so that calls that failed
    /// together do not come back together).
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries as usize)
            .with_jitter()
            .build()
    }

    /// The wait before the next attempt: the backoff delay, or the server's `Retry-After` when
    /// that is longer. `None` when the attempts or the time budget are used up.
    pub fn next_wait(
        &self,
        backoff: Option<Duration>,
        retry_after: Option<Duration>,
        elapsed: Duration,
    ) -> Option<Duration> {
        let wait = backoff?.max(retry_after.unwrap_or_default());
        (elapsed + wait <= self.budget).then_some(wait)
    }

    /// Runs an idempotent operation (a read), sending it again after transient failures as this
    /// policy allows. Connectors use it for the reads of an observe; writes go through the
    /// executor, which also rechecks calls that are not idempotent.
    pub async fn retry_idempotent<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let start = Instant::now();
        let mut delays = self.delays();
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    let Some(wait) =
                        self.next_wait(delays.next(), e.retry_after(), start.elapsed())
                    else {
                        return Err(e);
                    };
                    tracing::debug!(error = %e, ?wait, "read failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_over_a_shorter_backoff() {
        let p = RetryPolicy::default();
        let w = p.next_wait(
            Some(Duration::from_millis(200)),
            Some(Duration::from_secs(3)),
            Duration::ZERO,
        );
        assert_eq!(w, Some(Duration::from_secs(3)));
    }

    #[test]
    fn the_budget_bounds_the_wait() {
        let p = RetryPolicy {
            budget: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.next_wait(
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(10)),
                Duration::ZERO
            ),
            None
        );
        assert_eq!(
            p.next_wait(Some(Duration::from_secs(1)), None, Duration::from_secs(4)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn attempts_are_bounded_and_jittered_within_limits() {
        let p = RetryPolicy {
            max_retries: 3,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
            budget: Duration::from_secs(60),
        };
        let d: Vec<Duration> = p.delays().collect();
        assert_eq!(d.len(), 3);
        assert!(d.iter().all(|x| *x >= Duration::from_millis(100)));
        // backon's jitter adds up to one more delay on top of the capped one.
        assert!(d.iter().all(|x| *x <= Duration::from_millis(500)), "{d:?}");
    }
}

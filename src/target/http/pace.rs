//! Pacing: a target's declared `rate_limit`, kept by every call the connector sends (reads,
//! writes, logins), so that roster stays within an API quota it shares instead of bouncing off
//! 429s.
//!
//! The pacer reserves each call a start time: calls spaced `interval` apart on average, up to
//! `burst` at once after a quiet spell (the generic cell rate algorithm). A reservation is made
//! under a lock and waited for outside it, so concurrent calls queue in order and the lock is
//! never held across a sleep.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::retry::Rate;

/// A target's declared rate: see the module documentation.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    /// How far ahead of now the next due time may be and a call still start at once:
    /// `(burst - 1) × interval`.
    tolerance: Duration,
    /// When the next call would be due were calls evenly spaced.
    due: Mutex<Instant>,
}

impl Pacer {
    /// A pacer of `rate`, letting `burst` calls (at least 1) start at once.
    pub fn new(rate: Rate, burst: u32) -> Self {
        let interval = rate.interval();
        Self {
            interval,
            tolerance: interval * (burst.max(1) - 1),
            due: Mutex::new(Instant::now()),
        }
    }

    /// Waits until the next call may start.
    pub async fn wait(&self) {
        let start = {
            let mut due = self.due.lock().await;
            let now = Instant::now();
            let next = (*due).max(now);
            *due = next + self.interval;
            next.checked_sub(self.tolerance).map_or(now, |s| s.max(now))
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_start_at_the_rate_after_a_burst() {
        let pacer = Pacer::new("50/s".parse().unwrap(), 3);
        let t0 = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..8 {
            pacer.wait().await;
            starts.push(t0.elapsed());
        }
        // Three at once, then one every 20 ms: the eighth at 5 × 20 ms.
        assert!(starts[2] < Duration::from_millis(10), "{starts:?}");
        assert!(starts[3] >= Duration::from_millis(15), "{starts:?}");
        assert!(starts[7] >= Duration::from_millis(95), "{starts:?}");
        assert!(starts[7] < Duration::from_millis(250), "{starts:?}");
    }

    #[tokio::test]
    async fn concurrent_callers_share_the_rate() {
        let pacer = std::sync::Arc::new(Pacer::new("100/s".parse().unwrap(), 1));
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let p = std::sync::Arc::clone(&pacer);
                tokio::spawn(async move { p.wait().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Twenty calls at 100/s, one at once: the last starts 190 ms in.
        assert!(
            t0.elapsed() >= Duration::from_millis(185),
            "{:?}",
            t0.elapsed()
        );
    }
}

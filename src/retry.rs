//! When a failed call is sent again: only transient failures, with exponential backoff and jitter,
//! never sooner than the server's `Retry-After`, bounded in count and in time.
//!
//! [`Rate`] is how fast calls may go: an API's quota, as a simulator enforces it.
//!
//! This module sits below every layer that sends: the executor retries writes with it, and the
//! connectors retry the reads of an observe with it. It knows no error type of theirs: an error
//! says whether it is worth another try through [`Transient`].

use std::fmt;
use std::future::Future;
use std::str::FromStr;
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
        exponential(self.min_delay, self.max_delay)
            .with_max_times(self.max_retries as usize)
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

/// Delays from `min` doubling to `max`, with jitter and without end, never above `max`: for a
/// watch that must come back however long its server is away.
pub fn endless_backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    exponential(min, max)
        .without_max_times()
        .build()
        // backon's jitter may add up to one delay more.
        .map(move |d| d.min(max))
}

/// The one backoff schedule: exponential from `min` to `max`, with jitter.
fn exponential(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
}

/// A rate of calls: `calls` per `per`, written `"20/s"`, `"1200/m"` or `"50000/h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// How many calls...
    pub calls: u32,
    /// ...per this long.
    pub per: Duration,
}

impl Rate {
    /// The time one call takes of the rate: `per / calls`.
    pub fn interval(&self) -> Duration {
        self.per / self.calls.max(1)
    }
}

/// A rate limit: `rate` on average, `burst` calls at once after a quiet spell. A target's
/// declared `rate_limit`, and a simulator's quota (`{ rate = "20/s", burst = 20 }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// The average rate.
    pub rate: Rate,
    /// How many calls may start at once (at least 1). Default 1.
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid rate `{text}`: write calls per unit, such as \"20/s\", \"1200/m\" or \"50000/h\""
            )
        };
        let (calls, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let calls: u32 = calls.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if calls == 0 {
            return Err(format!(
                "invalid rate `{text}`: it must allow at least one call"
            ));
        }
        Ok(Rate { calls, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            60 => "m",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.calls)
    }
}

impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
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

    #[test]
    fn rates_read_and_write_as_calls_per_unit() {
        let r: Rate = "20/s".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.interval(), Duration::from_millis(50));
        assert_eq!(r.to_string(), "20/s");
        let m: Rate = " 1200 / m ".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.calls, m.per), (1200, Duration::from_secs(60)));
        assert_eq!(m.to_string(), "1200/m");
        assert_eq!(
            "3600/h".parse::<Rate>().map(|r| r.interval()),
            Ok(Duration::from_secs(1))
        );
        for bad in ["20", "20/d", "x/s", "0/s", "-1/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}

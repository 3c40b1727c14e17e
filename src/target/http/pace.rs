//! Pacing: how fast a target's calls leave, so that roster stays within an API quota it shares
//! with everything else that calls the same system instead of bouncing off 429s.
//!
//! Every call the connector sends (reads, writes; not token or login requests) is admitted by
//! the target's one [`Pacer`], which keeps two limits:
//!
//! * **The declared rate** (`rate_limit`, `burst`): calls spaced `interval` apart on average, up
//!   to `burst` at once after a quiet spell (the generic cell rate algorithm). A reservation is
//!   made under a lock and waited for outside it, so concurrent calls queue in order and the
//!   lock is never held across a sleep (or any await).
//! * **An adaptive limit**, for quotas nobody declared. Calls go unpaced until the server
//!   answers 429 or 503, or a call times out. Then the pacer shrinks: the calls in flight are
//!   halved, and calls are paced at β (0.7) of the rate that succeeded in the last second. The
//!   rate then doubles every quarter second (slow start) until the next overload, which fixes the rate
//!   the server sustains, `w`; from there it is cut to βw and grows back along a cubic (as TCP
//!   CUBIC and the AWS SDKs' adaptive retry mode do), quickly back to `w`, then slowly probing
//!   past it, so overloads stay rare and the pace stays near the quota. In-flight slots grow
//!   back by one for each window of successes. Only an overload of a call sent at the present
//!   pace counts: the calls already in flight when the pace was cut answer for the old pace.
//!
//! The declared rate is a ceiling: with a rate that matches the quota the server never says
//! 429 and the adaptive limit never engages. The call that was refused is retried by its caller
//! after `Retry-After`, as before.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::retry::{Rate, RateLimit};

/// The share of the sustained rate the pace drops to after an overload.
const BETA: f64 = 0.7;
/// How fast the cubic grows, in calls per second per second cubed: a quarter of the AWS SDKs'
/// 0.4, so that the pace stays near the sustained rate for longer before probing past it (each
/// probe that finds the quota costs a 429 or two).
const CUBIC_C: f64 = 0.1;
/// The slowest pace the adaptive limit drops to, in calls per second.
const MIN_RATE: f64 = 0.5;
/// The most calls in flight the adaptive limit counts up to (the connector's `concurrency`
/// bounds them first).
const MAX_IN_FLIGHT: u32 = 1024;
/// How long slow start takes to double the pace.
const SLOW_START_DOUBLING: Duration = Duration::from_millis(250);
/// The window over which the succeeding rate is measured.
const WINDOW: Duration = Duration::from_secs(1);

/// What an answer says about the server's load, for the adaptive limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// An answer that says nothing about load being too high.
    Fine,
    /// 429 or 503, or no answer in time: the server wants fewer calls.
    Overload,
}

impl Signal {
    /// The signal of an answer's HTTP status.
    pub fn of_status(status: u16) -> Self {
        match status {
            429 | 503 => Self::Overload,
            _ => Self::Fine,
        }
    }
}

/// A target's pace: see the module documentation.
#[derive(Debug)]
pub struct Pacer {
    declared: Option<Gcra>,
    adaptive: Mutex<Adaptive>,
    freed: Notify,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Pacer {
    /// A pacer keeping `declared` (the target's `rate_limit` and `burst`) when given, and the
    /// adaptive limit always.
    pub fn new(declared: Option<RateLimit>) -> Self {
        Self {
            declared: declared.map(|l| Gcra::new(l.rate, l.burst)),
            adaptive: Mutex::new(Adaptive::new(Instant::now())),
            freed: Notify::new(),
        }
    }

    /// The pacer of the target whose settings read `target` with `declared`: one per process,
    /// so that what one run learnt of the server's quota paces the next (a daemon's runs, or a
    /// run a change triggered moments after another).
    pub fn shared(target: &str, declared: Option<RateLimit>) -> Arc<Self> {
        static PACERS: Mutex<BTreeMap<String, Arc<Pacer>>> = Mutex::new(BTreeMap::new());
        let key = format!("{target}\n{declared:?}");
        let mut pacers = PACERS.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            pacers
                .entry(key)
                .or_insert_with(|| Arc::new(Self::new(declared))),
        )
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Adaptive> {
        self.adaptive.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until one more call may start, and admits it: the call holds its [`Admission`]
    /// until its answer (or failure) has come, and tells it what the answer said.
    pub async fn admit(&self) -> Admission<'_> {
        // The pace first, then a slot: a call waiting for its turn is not yet in flight.
        if let Some(g) = &self.declared {
            g.wait().await;
        }
        // A turn reserved before the pace was cut is reserved again at the new pace.
        let epoch = loop {
            let (start, epoch) = {
                let mut a = self.state();
                (a.reserve(Instant::now()), a.epoch)
            };
            let Some(start) = start else { break epoch };
            tokio::time::sleep_until(start).await;
            if self.state().epoch == epoch {
                break epoch;
            }
        };
        loop {
            let freed = self.freed.notified();
            {
                let mut a = self.state();
                if a.in_flight < a.limit {
                    a.in_flight += 1;
                    break;
                }
            }
            freed.await;
        }
        Admission { pacer: self, epoch }
    }
}

/// One admitted call; dropping it frees its slot.
#[derive(Debug)]
pub struct Admission<'a> {
    pacer: &'a Pacer,
    /// The pace's epoch when the call was admitted: an overload of a call admitted under an
    /// older pace is not counted again.
    epoch: u64,
}

impl Admission<'_> {
    /// Tells the pacer what the call's answer said about the server's load.
    pub fn answered(self, signal: Signal) {
        self.pacer
            .state()
            .answered(signal, self.epoch, Instant::now());
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        let mut a = self.pacer.state();
        a.in_flight = a.in_flight.saturating_sub(1);
        drop(a);
        self.pacer.freed.notify_one();
    }
}

/// How the adaptive pace is set now.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// No overload seen: calls are not paced.
    Unpaced,
    /// After the first overload: `from` calls per second at `since`, doubling each second.
    SlowStart { since: Instant, from: f64 },
    /// After an overload at `w` calls per second at `since`: the cubic back to `w` and past it.
    Cubic { since: Instant, w: f64 },
}

#[derive(Debug)]
struct Adaptive {
    phase: Phase,
    /// Calls that may be in flight, and those that are.
    limit: u32,
    in_flight: u32,
    /// Successes since `limit` last grew.
    grown: u32,
    /// Bumped each time the pace is cut.
    epoch: u64,
    /// When the next call is due at the present pace.
    due: Instant,
    /// When the successes of the last [`WINDOW`] came.
    successes: VecDeque<Instant>,
    /// When the pace last held a call back.
    held: Option<Instant>,
}

impl Adaptive {
    fn new(now: Instant) -> Self {
        Self {
            phase: Phase::Unpaced,
            limit: MAX_IN_FLIGHT,
            in_flight: 0,
            grown: 0,
            epoch: 0,
            due: now,
            successes: VecDeque::new(),
            held: None,
        }
    }

    /// The pace at `now`, in calls per second; `None` when unpaced.
    fn rate_at(&self, now: Instant) -> Option<f64> {
        let rate = match self.phase {
            Phase::Unpaced => return None,
            Phase::SlowStart { since, from } => {
                let doublings = now.saturating_duration_since(since).as_secs_f64()
                    / SLOW_START_DOUBLING.as_secs_f64();
                from * 2f64.powf(doublings.min(60.0))
            }
            Phase::Cubic { since, w } => {
                let t = now.saturating_duration_since(since).as_secs_f64();
                let k = (w * (1.0 - BETA) / CUBIC_C).cbrt();
                CUBIC_C * (t - k).powi(3) + w
            }
        };
        Some(rate.max(MIN_RATE))
    }

    /// Reserves the next call's start at the present pace; `None`: at once.
    fn reserve(&mut self, now: Instant) -> Option<Instant> {
        let rate = self.rate_at(now)?;
        let start = self.due.max(now);
        self.due = start + Duration::from_secs_f64(1.0 / rate);
        let wait = start > now;
        if wait {
            self.held = Some(now);
        }
        wait.then_some(start)
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .successes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
        {
            self.successes.pop_front();
        }
    }

    fn answered(&mut self, signal: Signal, epoch: u64, now: Instant) {
        self.forget_before(now);
        match signal {
            Signal::Fine => {
                self.successes.push_back(now);
                self.grown += 1;
                if self.grown >= self.limit {
                    self.grown = 0;
                    self.limit = (self.limit + 1).min(MAX_IN_FLIGHT);
                }
            }
            // Calls admitted before the last cut were sent at the old pace: one overload
            // answers for them all.
            Signal::Overload if epoch == self.epoch => {
                let sustained = self.successes.len().max(1) as f64 / WINDOW.as_secs_f64();
                // A pace that held no call back lately (calls were fewer than it allowed, say
                // after an idle spell) says nothing of what the server sustains: start over.
                let held = self
                    .held
                    .is_some_and(|t| now.saturating_duration_since(t) <= WINDOW);
                self.phase = match self.rate_at(now).filter(|_| held) {
                    None => Phase::SlowStart {
                        since: now,
                        from: (sustained * BETA).max(MIN_RATE),
                    },
                    Some(rate) => Phase::Cubic {
                        since: now,
                        w: rate.min(sustained.max(rate * BETA)),
                    },
                };
                tracing::debug!(
                    pace = self.rate_at(now),
                    in_flight = self.in_flight,
                    succeeded_last_second = sustained,
                    "the server is overloaded: pace cut"
                );
                self.epoch += 1;
                self.limit = (self.in_flight / 2).max(1);
                self.grown = 0;
                // The server's bucket is empty now: the next call waits one turn at the new pace.
                self.due = now
                    + self
                        .rate_at(now)
                        .map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r));
            }
            Signal::Overload => {}
        }
    }
}

/// The declared rate: see the module documentation.
#[derive(Debug)]
struct Gcra {
    interval: Duration,
    /// How far ahead of now the next due time may be and a call still start at once:
    /// `(burst - 1) × interval`.
    tolerance: Duration,
    /// When the next call would be due were calls evenly spaced.
    due: Mutex<Instant>,
}

impl Gcra {
    fn new(rate: Rate, burst: u32) -> Self {
        let interval = rate.interval();
        Self {
            interval,
            tolerance: interval * (burst.max(1) - 1),
            due: Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let start = {
            let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
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
mod tests;

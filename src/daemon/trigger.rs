//! Triggers: what makes the daemon run before its next scheduled tick (a source that changed,
//! `POST /trigger`, a lease just acquired), and the debounce that turns a burst of them into one
//! run.
//!
//! A trigger is never the truth: the run it starts reads every source and target afresh and
//! goes through the same plan and guards as a scheduled one. So a trigger may be lost or doubled
//! at no cost to correctness; only the delay to the next run suffers, and the schedule bounds it.
//!
//! The debounce holds one pending burst: it is due once triggers have been quiet for `quiet`, or
//! `max` after its first trigger, whichever comes first. Triggers that arrive while a run is
//! going make the burst that follows it: exactly one run after it, however many came.

use std::time::{Duration, Instant};

/// The most trigger instants a burst keeps for the trigger-to-apply histogram; more are counted
/// by `/metrics` all the same, and their latencies are those of the first ones.
const KEPT_INSTANTS: usize = 4096;

/// One trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// Where it came from: a source's label, `http` or `lease`.
    pub source: String,
    /// What kind it is (`syncrepl`, `files`, `http`, …), the `kind` label of
    /// `roster_triggers_total`.
    pub kind: &'static str,
    /// When it arrived.
    pub at: Instant,
    /// Whether it skips the quiet period (a lease just acquired: run at once).
    pub urgent: bool,
}

impl Trigger {
    /// A trigger that arrived now.
    pub fn now(source: impl Into<String>, kind: &'static str) -> Self {
        Self {
            source: source.into(),
            kind,
            at: Instant::now(),
            urgent: false,
        }
    }
}

/// Triggers received and not yet served by a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Burst {
    /// The first trigger's arrival.
    pub first: Instant,
    /// The last trigger's arrival.
    pub last: Instant,
    /// How many triggers.
    pub count: usize,
    /// When each trigger arrived (the first [`KEPT_INSTANTS`]).
    pub arrivals: Vec<Instant>,
    /// Whether one of them asked to skip the quiet period.
    pub urgent: bool,
}

/// Coalesces triggers: see the module documentation.
#[derive(Clone, Debug)]
pub struct Debounce {
    quiet: Duration,
    max: Duration,
    pending: Option<Burst>,
}

impl Debounce {
    /// A debounce that waits for `quiet` without triggers, at most `max` after the first.
    pub fn new(quiet: Duration, max: Duration) -> Self {
        Self {
            quiet,
            max,
            pending: None,
        }
    }

    /// Takes new settings (a reload); a pending burst keeps its triggers.
    pub fn set(&mut self, quiet: Duration, max: Duration) {
        self.quiet = quiet;
        self.max = max;
    }

    /// Adds a trigger to the pending burst, opening one if there is none.
    pub fn add(&mut self, t: &Trigger) {
        match &mut self.pending {
            Some(b) => {
                b.last = b.last.max(t.at);
                b.count += 1;
                if b.arrivals.len() < KEPT_INSTANTS {
                    b.arrivals.push(t.at);
                }
                b.urgent |= t.urgent;
            }
            None => {
                self.pending = Some(Burst {
                    first: t.at,
                    last: t.at,
                    count: 1,
                    arrivals: vec![t.at],
                    urgent: t.urgent,
                });
            }
        }
    }

    /// When the pending burst is due; `None` without one.
    pub fn due(&self) -> Option<Instant> {
        let b = self.pending.as_ref()?;
        if b.urgent {
            return Some(b.last);
        }
        Some((b.last + self.quiet).min(b.first + self.max))
    }

    /// Whether a burst is pending.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes the pending burst: a run is starting, and its reads see every change the burst
    /// stands for.
    pub fn take(&mut self) -> Option<Burst> {
        self.pending.take()
    }
}

/// Sleeps until `at`; never, without it.
pub async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Trigger {
        Trigger {
            source: "ldap://x".to_owned(),
            kind: "syncrepl",
            at: base + Duration::from_millis(ms),
            urgent: false,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn nothing_is_due_without_a_trigger() {
        let d = Debounce::new(secs(2), secs(30));
        assert_eq!(d.due(), None);
        assert!(!d.is_pending());
    }

    #[test]
    fn a_lone_trigger_is_due_after_the_quiet_period() {
        let base = Instant::now();
        let mut d = Debounce::new(secs(2), secs(30));
        d.add(&at(base, 0));
        assert_eq!(d.due(), Some(base + secs(2)));
    }

    #[test]
    fn each_trigger_pushes_the_run_back_by_the_quiet_period() {
        let base = Instant::now();
        let mut d = Debounce::new(secs(2), secs(30));
        d.add(&at(base, 0));
        d.add(&at(base, 1500));
        assert_eq!(d.due(), Some(base + Duration::from_millis(3500)));
    }

    #[test]
    fn a_burst_that_never_stops_is_due_at_most_max_after_its_first_trigger() {
        let base = Instant::now();
        let mut d = Debounce::new(secs(2), secs(30));
        for ms in (0..40_000).step_by(1000) {
            d.add(&at(base, ms));
        }
        assert_eq!(d.due(), Some(base + secs(30)));
    }

    #[test]
    fn a_burst_is_taken_whole_and_once() {
        let base = Instant::now();
        let mut d = Debounce::new(secs(2), secs(30));
        for ms in 0..100 {
            d.add(&at(base, ms));
        }
        let b = d.take().unwrap();
        assert_eq!(b.count, 100);
        assert_eq!(b.arrivals.len(), 100);
        assert_eq!(b.first, base);
        assert_eq!(b.last, base + Duration::from_millis(99));
        assert!(d.take().is_none());
        assert_eq!(d.due(), None);
    }

    #[test]
    fn an_urgent_trigger_is_due_at_once() {
        let base = Instant::now();
        let mut d = Debounce::new(secs(2), secs(30));
        d.add(&at(base, 0));
        let mut lease = at(base, 500);
        lease.urgent = true;
        d.add(&lease);
        assert_eq!(d.due(), Some(base + Duration::from_millis(500)));
    }

    #[test]
    fn new_settings_apply_to_the_pending_burst() {
        let base = Instant::now();
        let mut d = Debounce::new(secs(2), secs(30));
        d.add(&at(base, 0));
        d.set(secs(5), secs(3));
        assert_eq!(d.due(), Some(base + secs(3)));
        d.set(secs(1), secs(30));
        assert_eq!(d.due(), Some(base + secs(1)));
        assert!(d.is_pending(), "a reload keeps the triggers");
    }

    #[test]
    fn arrivals_kept_are_bounded() {
        let base = Instant::now();
        let mut d = Debounce::new(secs(2), secs(30));
        for _ in 0..(KEPT_INSTANTS + 10) {
            d.add(&at(base, 1));
        }
        let b = d.take().unwrap();
        assert_eq!(b.count, KEPT_INSTANTS + 10);
        assert_eq!(b.arrivals.len(), KEPT_INSTANTS);
    }
}

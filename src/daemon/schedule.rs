//! When the next run is due: the cron schedule read in UTC, a random jitter on top, and the ticks
//! a long run made the daemon miss. Pure functions of the time given, so they are tested without
//! waiting.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng as _;

/// The most missed ticks counted after one run: a run of hours on a per-second schedule must not
/// make the daemon walk millions of instants.
const MAX_MISSED: usize = 100_000;

/// The first instant of `schedule` strictly after `after`, in UTC; `None` when it has none (a
/// schedule such as February 30th).
pub fn next_tick(schedule: &cron::Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.after(&after).next()
}

/// How many instants of `schedule` fell in `(since, until]`: the ticks skipped because the run
/// that started at `since` was still going (capped at a large number).
pub fn missed_ticks(
    schedule: &cron::Schedule,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> usize {
    schedule
        .after(&since)
        .take_while(|t| *t <= until)
        .take(MAX_MISSED)
        .count()
}

/// A random delay in `[0, max]`, at millisecond resolution.
pub fn jitter(max: Duration) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// The shortest gap between two of the next few instants of `schedule` after `after`, to warn
/// when a jitter that large would push runs past the following tick.
pub fn shortest_interval(schedule: &cron::Schedule, after: DateTime<Utc>) -> Option<Duration> {
    let ticks: Vec<DateTime<Utc>> = schedule.after(&after).take(8).collect();
    ticks
        .windows(2)
        .filter_map(|w| (w[1] - w[0]).to_std().ok())
        .min()
}

/// How long to sleep from `now` until `due`; zero when it is past. Capped at `cap`, so that the
/// daemon wakes now and then to look at the clock again: a wall clock that was stepped (NTP, a
/// resumed virtual machine) then moves the run with it instead of leaving a stale sleep.
pub fn sleep_for(now: DateTime<Utc>, due: DateTime<Utc>, cap: Duration) -> Duration {
    (due - now).to_std().unwrap_or(Duration::ZERO).min(cap)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::config::daemon::parse_schedule;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, s).unwrap()
    }

    #[test]
    fn the_next_tick_is_strictly_after_the_given_instant() {
        let every_quarter = parse_schedule("*/15 * * * *").unwrap();
        assert_eq!(
            next_tick(&every_quarter, at(10, 7, 30)),
            Some(at(10, 15, 0))
        );
        assert_eq!(
            next_tick(&every_quarter, at(10, 15, 0)),
            Some(at(10, 30, 0))
        );
    }

    #[test]
    fn a_schedule_that_never_comes_has_no_tick() {
        let never = parse_schedule("0 0 30 2 *").unwrap();
        assert_eq!(next_tick(&never, at(10, 0, 0)), None);
    }

    #[test]
    fn ticks_passed_during_a_run_are_counted_as_missed() {
        let every_second = parse_schedule("* * * * * *").unwrap();
        // A run started by the 10:00:00 tick that ended at 10:00:03.5 missed 01, 02 and 03.
        let end = at(10, 0, 3) + chrono::Duration::milliseconds(500);
        assert_eq!(missed_ticks(&every_second, at(10, 0, 0), end), 3);
        let every_quarter = parse_schedule("*/15 * * * *").unwrap();
        assert_eq!(
            missed_ticks(&every_quarter, at(10, 0, 0), at(10, 14, 59)),
            0
        );
        assert_eq!(missed_ticks(&every_quarter, at(10, 0, 0), at(10, 15, 0)), 1);
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        let max = Duration::from_millis(30);
        for _ in 0..200 {
            assert!(jitter(max) <= max);
        }
    }

    #[test]
    fn the_shortest_interval_of_a_schedule() {
        let s = parse_schedule("0,10 * * * *").unwrap();
        assert_eq!(
            shortest_interval(&s, at(10, 0, 30)),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn sleeps_are_capped_and_never_negative() {
        let cap = Duration::from_secs(60);
        assert_eq!(sleep_for(at(10, 0, 0), at(9, 0, 0), cap), Duration::ZERO);
        assert_eq!(
            sleep_for(at(10, 0, 0), at(10, 0, 20), cap),
            Duration::from_secs(20)
        );
        assert_eq!(sleep_for(at(10, 0, 0), at(11, 0, 0), cap), cap);
    }
}

//! The `[daemon]` table of `roster.toml`: when `roster run` reconciles, and how it serves and
//! stops.
//!
//! ```toml
//! [daemon]
//! schedule = "*/15 * * * *"      # cron: 5 fields as crontab has them, or 6 with seconds first
//! jitter = "30s"                 # a random delay up to this, added to each run
//! run_on_start = true            # reconcile once at start, before the first tick
//! listen = "127.0.0.1:9464"      # /healthz and /metrics; absent: no listener
//! shutdown_timeout = "30s"       # how long a stop waits for the run in flight
//! state_dir = "/var/lib/roster"  # or at the top level (see `config::state`), not both
//! ```
//!
//! The day of the week is read as crontab reads it (0 to 7, Sunday being 0 and 7, or `MON` ...),
//! in both forms, so that a schedule copied from a crontab means what it meant there.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::check::{duration, duration_or_zero};
use crate::diag::toml::{Reported, Resolver};

/// The default `shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A checked `[daemon]` table.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// When runs start.
    pub schedule: cron::Schedule,
    /// The schedule as written, for messages.
    pub schedule_text: String,
    /// A random delay, up to this, added to each run.
    pub jitter: Duration,
    /// Whether to reconcile once at start, before the first tick.
    pub run_on_start: bool,
    /// Where `/healthz` and `/metrics` are served, if anywhere.
    pub listen: Option<SocketAddr>,
    /// How long a stop waits for the run in flight.
    pub shutdown_timeout: Duration,
}

/// The `[daemon]` keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaemonFile {
    /// When to reconcile: a cron expression, 5 fields as in a crontab (`*/15 * * * *`) or 6 with
    /// seconds first (`0 */15 * * * *`).
    schedule: Spanned<String>,
    /// A random delay up to this is added to each run (humantime, `"30s"`), so that a fleet of
    /// roster instances does not call the APIs at the same moment. Default none.
    jitter: Option<Spanned<String>>,
    /// Whether to reconcile once at start. Default `true`.
    #[serde(default = "yes")]
    run_on_start: bool,
    /// `host:port` to serve `/healthz` and `/metrics` on. Default: no listener.
    listen: Option<Spanned<String>>,
    /// How long a stop (SIGTERM) waits for the run in flight before giving up (humantime).
    /// Default `"30s"`.
    shutdown_timeout: Option<Spanned<String>>,
    /// Where roster keeps its state (the audit journal); the same key as at the top level,
    /// which it may replace but not repeat. Read apart by the config loader.
    pub(crate) state_dir: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

impl DaemonFile {
    /// Checks the keys, recording every problem in `r`.
    pub(crate) fn resolve(self, r: &mut Resolver<'_>) -> Result<DaemonConfig, Reported> {
        let schedule = match parse_schedule(self.schedule.get_ref()) {
            Ok(s) => Ok(s),
            Err(e) => Err(r.error(
                self.schedule.span(),
                format!("invalid schedule `{}`: {e}", self.schedule.get_ref()),
            )),
        };
        let jitter = duration_or_zero(self.jitter.as_ref(), Duration::ZERO, r);
        let listen = match &self.listen {
            None => Ok(None),
            Some(l) => match SocketAddr::from_str(l.get_ref().trim()) {
                Ok(addr) => {
                    if !addr.ip().is_loopback() {
                        r.warn(
                            l.span(),
                            format!(
                                "`{addr}` is not a loopback address: /metrics and /healthz have \
                                 no authentication"
                            ),
                        );
                    }
                    Ok(Some(addr))
                }
                Err(_) => Err(r.error(
                    l.span(),
                    format!(
                        "invalid listen address `{}`: write it as host:port, such as \
                         \"127.0.0.1:9464\"",
                        l.get_ref()
                    ),
                )),
            },
        };
        let shutdown_timeout = duration(
            self.shutdown_timeout.as_ref(),
            "shutdown_timeout",
            DEFAULT_SHUTDOWN_TIMEOUT,
            r,
        );
        Ok(DaemonConfig {
            schedule: schedule?,
            schedule_text: self.schedule.into_inner(),
            jitter: jitter?,
            run_on_start: self.run_on_start,
            listen: listen?,
            shutdown_timeout: shutdown_timeout?,
        })
    }
}

/// Reads a cron expression of 5 fields (crontab: minute hour day month weekday) or 6 (seconds
/// first), with crontab's weekday numbers.
pub fn parse_schedule(text: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let mut fields: Vec<String> = match fields.len() {
        5 => std::iter::once("0")
            .chain(fields.iter().copied())
            .map(str::to_owned)
            .collect(),
        6 => fields.iter().map(|f| (*f).to_owned()).collect(),
        n => {
            return Err(format!(
                "{n} fields; write 5 (minute hour day month weekday, as in a crontab) or 6 \
                 (seconds first)"
            ));
        }
    };
    check_ranges(&fields)?;
    fields[5] = crontab_weekdays(&fields[5])?;
    cron::Schedule::from_str(&fields.join(" ")).map_err(|e| {
        // The cron crate's own message spans lines; its first says what is wrong.
        let e = e.to_string();
        e.lines().next().unwrap_or_default().trim().to_owned()
    })
}

/// Checks the numbers of the second, minute, hour, day and month fields against their ranges, so
/// that `61 * * * *` is told as a crontab user thinks of it. Steps (after `/`) are not values.
fn check_ranges(fields: &[String]) -> Result<(), String> {
    const RANGES: [(&str, u32, u32); 5] = [
        ("second", 0, 59),
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of the month", 1, 31),
        ("month", 1, 12),
    ];
    for (field, (what, lo, hi)) in fields.iter().zip(RANGES) {
        let values = field
            .split(',')
            .flat_map(|item| item.split('/').next().unwrap_or_default().split('-'));
        for v in values {
            if let Ok(n) = v.parse::<u32>()
                && !(lo..=hi).contains(&n)
            {
                return Err(format!("{what} {n} is out of range ({lo} to {hi})"));
            }
        }
    }
    Ok(())
}

/// Rewrites crontab weekday numbers (0-7, Sunday 0 and 7) as names, which the cron crate reads
/// unambiguously (its own numbers start at Sunday = 1).
fn crontab_weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let name = |n: &str| -> Result<String, String> {
        match n.parse::<usize>() {
            Ok(i) if i < NAMES.len() => Ok(NAMES[i].to_owned()),
            Ok(i) => Err(format!(
                "weekday {i} is out of range (0 to 7, Sunday being 0 or 7)"
            )),
            Err(_) => Ok(n.to_owned()),
        }
    };
    let items: Result<Vec<String>, String> = field
        .split(',')
        .map(|item| {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            let range = match range.split_once('-') {
                Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
                None => name(range)?,
            };
            Ok(match step {
                Some(s) => format!("{range}/{s}"),
                None => range,
            })
        })
        .collect();
    Ok(items?.join(","))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{Datelike, TimeZone, Timelike, Utc, Weekday};

    use super::*;

    fn next(expr: &str, after: chrono::DateTime<Utc>, n: usize) -> Vec<chrono::DateTime<Utc>> {
        parse_schedule(expr)
            .unwrap()
            .after(&after)
            .take(n)
            .collect()
    }

    #[test]
    fn five_fields_are_a_crontab_line_at_second_zero() {
        let start = Utc.with_ymd_and_hms(2026, 11, 23, 10, 7, 30).unwrap();
        let got = next("*/15 * * * *", start, 3);
        let minutes: Vec<u32> = got.iter().map(|t| t.minute()).collect();
        assert_eq!(minutes, [15, 30, 45]);
        assert!(got.iter().all(|t| t.second() == 0));
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let start = Utc.with_ymd_and_hms(2026, 11, 23, 10, 7, 30).unwrap();
        let got = next("*/20 * * * * *", start, 2);
        let seconds: Vec<u32> = got.iter().map(|t| t.second()).collect();
        assert_eq!(seconds, [40, 0]);
    }

    #[test]
    fn weekdays_are_numbered_as_crontab_numbers_them() {
        // 2026-11-23 is a Monday.
        let start = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let days: Vec<Weekday> = next("0 9 * * 1-5", start, 5)
            .iter()
            .map(|t| t.weekday())
            .collect();
        assert_eq!(
            days,
            [
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Mon
            ]
        );
        let sundays = next("0 9 * * 0,7", start, 2);
        assert!(sundays.iter().all(|t| t.weekday() == Weekday::Sun));
        assert_eq!(next("0 9 * * SAT", start, 1)[0].weekday(), Weekday::Sat);
    }

    #[test]
    fn bad_schedules_say_why() {
        assert!(
            parse_schedule("* * *")
                .unwrap_err()
                .starts_with("3 fields; write 5")
        );
        assert!(
            parse_schedule("0 9 * * 8")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse_schedule("61 * * * *").is_err());
    }
}

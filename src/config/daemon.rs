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
//! watch = true                   # run when a source changes, not only on the schedule
//! debounce = "2s"                # a run starts once changes are quiet this long...
//! debounce_max = "30s"           # ...or this long after the first change, whichever is first
//! poll_interval = "60s"          # how often a source without change notifications is asked
//! trigger_token_file = "secrets/trigger"  # POST /trigger then needs `Authorization: Bearer …`
//!
//! [daemon.lease]                 # active/standby: only the holder of this etcd lease writes
//! backend = "etcd"
//! endpoints = ["https://etcd1:2379", "https://etcd2:2379"]
//! key = "/roster/leader"
//! ttl = "15s"
//! ```
//!
//! The day of the week is read as crontab reads it (0 to 7, Sunday being 0 and 7, or `MON` ...),
//! in both forms, so that a schedule copied from a crontab means what it meant there.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use crate::diag::check::{duration, duration_or_zero, existing_file, is_loopback, split_host_port};
use crate::diag::toml::{RawTable, Reported, Resolver};
use crate::secret::{Secret, SecretKeys};

/// The default `shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `debounce`: changes come in bursts (a script adding ten members); one run for
/// the burst is enough.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
/// The default `debounce_max`: a source that never stops changing still gets a run this long
/// after its first change.
pub const DEFAULT_DEBOUNCE_MAX: Duration = Duration::from_secs(30);
/// The default `poll_interval`: one LDAP read a minute when idle.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The default `[daemon.lease] key`.
pub const DEFAULT_LEASE_KEY: &str = "/roster/leader";
/// The default `[daemon.lease] ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// The shortest `[daemon.lease] ttl`: etcd counts leases in whole seconds, and a third of the
/// TTL (how often the holder renews and proves its lease) must leave room for a round trip.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(3);

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
    /// Whether sources are watched, a change starting a run.
    pub watch: bool,
    /// A run starts once triggers have been quiet this long...
    pub debounce: Duration,
    /// ...or this long after the first trigger, whichever comes first.
    pub debounce_max: Duration,
    /// How often a source that cannot notify changes is asked whether it changed.
    pub poll_interval: Duration,
    /// The bearer token `POST /trigger` needs; `None`: loopback callers need none.
    pub trigger_token: Option<Secret>,
    /// `[daemon.lease]`: active/standby on etcd; `None`: this daemon always writes.
    pub lease: Option<LeaseConfig>,
}

/// A checked `[daemon.lease]` table: the etcd lease whose holder is the active daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// etcd's client URLs, tried in order.
    pub endpoints: Vec<String>,
    /// The key whose holder is active.
    pub key: String,
    /// The lease's time to live: writes stop within it once the lease cannot be proven.
    pub ttl: Duration,
    /// A PEM file of CA certificates to trust for etcd's TLS.
    pub ca_file: Option<PathBuf>,
    /// The client certificate (PEM) for etcd's mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The etcd user, when etcd has authentication on.
    pub username: Option<String>,
    /// The etcd user's password.
    pub password: Option<Secret>,
    /// How this daemon is named in the lease's value, logs and metrics; default host name and
    /// process id.
    pub name: Option<String>,
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
    /// Whether to watch the sources and run when one changes (LDAP change notifications or
    /// polling, file changes). The schedule stays as the safety net. Default `true`.
    #[serde(default = "yes")]
    watch: bool,
    /// A run starts once changes have been quiet this long (humantime). Default `"2s"`.
    debounce: Option<Spanned<String>>,
    /// ... or this long after the first change, whichever comes first. Default `"30s"`.
    debounce_max: Option<Spanned<String>>,
    /// How often a source that cannot notify changes (Active Directory, an OpenLDAP without
    /// syncprov) is asked whether it changed. Default `"60s"`.
    poll_interval: Option<Spanned<String>>,
    /// A file holding the bearer token `POST /trigger` requires. Without one, `/trigger`
    /// answers loopback callers only.
    trigger_token_file: Option<Spanned<PathBuf>>,
    /// The token in an environment variable, as `trigger_token_file`.
    trigger_token_env: Option<Spanned<String>>,
    /// Active/standby on etcd. Read apart by the config loader, so that its keys' errors keep
    /// their positions; listed here so that it is a known key.
    #[serde(rename = "lease")]
    pub(crate) _lease: Option<serde::de::IgnoredAny>,
}

/// The `[daemon.lease]` keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaseFile {
    /// Where the lease is kept: `etcd` (the only backend).
    backend: Spanned<String>,
    /// etcd's client URLs (`https://etcd1:2379`), tried in order.
    endpoints: Spanned<Vec<Spanned<String>>>,
    /// The key whose holder is active. Default `/roster/leader`.
    key: Option<Spanned<String>>,
    /// The lease's time to live (humantime, whole seconds, at least 3s). The holder renews and
    /// proves it every third of it; writes stop within it once it cannot. Default `"15s"`.
    ttl: Option<Spanned<String>>,
    /// A PEM file of CA certificates to trust for etcd's TLS, relative to the config file.
    ca_file: Option<Spanned<PathBuf>>,
    /// A client certificate (PEM) for etcd's mutual TLS.
    cert_file: Option<Spanned<PathBuf>>,
    /// The client certificate's private key (PEM).
    key_file: Option<Spanned<PathBuf>>,
    /// The etcd user, when etcd's authentication is on.
    username: Option<Spanned<String>>,
    /// A file holding the etcd user's password.
    password_file: Option<Spanned<PathBuf>>,
    /// The password in an environment variable.
    password_env: Option<Spanned<String>>,
    /// How this daemon is named to the others (in the lease's value, logs and metrics).
    /// Default: the host name and process id.
    name: Option<Spanned<String>>,
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
        let debounce = duration_or_zero(self.debounce.as_ref(), DEFAULT_DEBOUNCE, r);
        let debounce_max = duration(
            self.debounce_max.as_ref(),
            "debounce_max",
            DEFAULT_DEBOUNCE_MAX,
            r,
        );
        if let (Ok(quiet), Ok(max), Some(span)) = (&debounce, &debounce_max, &self.debounce_max)
            && max < quiet
        {
            r.warn(
                span.span(),
                "`debounce_max` is shorter than `debounce`: runs start `debounce_max` after the \
                 first change",
            );
        }
        let poll_interval = duration(
            self.poll_interval.as_ref(),
            "poll_interval",
            DEFAULT_POLL_INTERVAL,
            r,
        );
        let trigger_token = r.secret(&SecretKeys {
            key: "trigger_token",
            literal: None,
            file: self.trigger_token_file,
            env: self.trigger_token_env,
        });
        Ok(DaemonConfig {
            schedule: schedule?,
            schedule_text: self.schedule.into_inner(),
            jitter: jitter?,
            run_on_start: self.run_on_start,
            listen: listen?,
            shutdown_timeout: shutdown_timeout?,
            watch: self.watch,
            debounce: debounce?,
            debounce_max: debounce_max?,
            poll_interval: poll_interval?,
            trigger_token: trigger_token?,
            lease: None,
        })
    }
}

impl LeaseFile {
    /// Checks the keys, recording every problem in `r`; `table` is the table's span, for a
    /// problem with no key to point at.
    pub(crate) fn resolve(
        self,
        r: &mut Resolver<'_>,
        table: Range<usize>,
    ) -> Result<LeaseConfig, Reported> {
        let backend = if self.backend.get_ref() == "etcd" {
            Ok(())
        } else {
            Err(r.error(
                self.backend.span(),
                format!(
                    "unknown lease backend `{}`: the one backend is `etcd`",
                    self.backend.get_ref()
                ),
            ))
        };
        let endpoints = lease_endpoints(&self.endpoints, r);
        let key = match self.key {
            None => Ok(DEFAULT_LEASE_KEY.to_owned()),
            Some(k) if k.get_ref().trim().is_empty() => Err(r.error(
                k.span(),
                "`key` is empty: name the etcd key, such as \"/roster/leader\"",
            )),
            Some(k) => Ok(k.into_inner()),
        };
        let ttl = match duration(self.ttl.as_ref(), "ttl", DEFAULT_LEASE_TTL, r) {
            Ok(t) if t < MIN_LEASE_TTL || t.subsec_nanos() != 0 => Err(r.error(
                self.ttl.as_ref().map_or(table.clone(), Spanned::span),
                format!(
                    "`ttl` must be whole seconds, at least {}",
                    humantime::format_duration(MIN_LEASE_TTL)
                ),
            )),
            other => other,
        };
        let file = |f: Option<Spanned<PathBuf>>, what: &str, r: &mut Resolver<'_>| match f {
            None => Ok(None),
            Some(f) => existing_file(&f, what, r).map(Some),
        };
        let ca = file(self.ca_file, "CA file", r);
        let cert = file(self.cert_file, "certificate file", r);
        let key_file = file(self.key_file, "key file", r);
        let mtls = match (&cert, &key_file) {
            (Ok(Some(_)), Ok(None)) | (Ok(None), Ok(Some(_))) => Err(r.error(
                table.clone(),
                "`cert_file` and `key_file` go together: give both for mutual TLS, or neither",
            )),
            _ => Ok(()),
        };
        let password = r.secret(&SecretKeys {
            key: "password",
            literal: None,
            file: self.password_file,
            env: self.password_env,
        });
        let auth = match (&self.username, &password) {
            (Some(u), Ok(None)) => Err(r.error(
                u.span(),
                "`username` needs `password_file` or `password_env`",
            )),
            (None, Ok(Some(_))) => Err(r.error(table.clone(), "a password needs `username`")),
            _ => Ok(()),
        };
        let name = match self.name {
            Some(n) if n.get_ref().trim().is_empty() => Err(r.error(n.span(), "`name` is empty")),
            n => Ok(n.map(Spanned::into_inner)),
        };
        backend?;
        mtls?;
        auth?;
        Ok(LeaseConfig {
            endpoints: endpoints?,
            key: key?,
            ttl: ttl?,
            ca_file: ca?,
            cert_file: cert?,
            key_file: key_file?,
            username: self.username.map(Spanned::into_inner),
            password: password?,
            name: name?,
        })
    }
}

/// Takes `[daemon.lease]` out of the `[daemon]` table and checks it: `Ok(None)` when there is
/// none. Read apart from the other keys so that its errors point at its own keys.
pub(crate) fn take_lease(
    daemon: &mut RawTable<'_>,
    r: &mut Resolver<'_>,
) -> Result<Option<LeaseConfig>, Reported> {
    let Some(value) = daemon.table.remove("lease") else {
        return Ok(None);
    };
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(table) => RawTable {
            span: span.clone(),
            table,
        }
        .read::<LeaseFile>("[daemon.lease]", r)?
        .resolve(r, span)
        .map(Some),
        _ => Err(r.error(
            span,
            "`lease` must be a table: write a [daemon.lease] section",
        )),
    }
}

/// etcd's client URLs: at least one, each `http://` or `https://` with a host and nothing after
/// the port; plain http off loopback is warned about (the lease's proofs cross unencrypted).
fn lease_endpoints(
    list: &Spanned<Vec<Spanned<String>>>,
    r: &mut Resolver<'_>,
) -> Result<Vec<String>, Reported> {
    if list.get_ref().is_empty() {
        return Err(r.error(list.span(), "`endpoints` is empty: list etcd's client URLs"));
    }
    let mut out = Vec::new();
    let mut bad = None;
    for e in list.get_ref() {
        let raw = e.get_ref().trim();
        let (plain, rest) = match (raw.strip_prefix("http://"), raw.strip_prefix("https://")) {
            (Some(rest), _) => (true, rest),
            (_, Some(rest)) => (false, rest),
            _ => {
                bad = Some(r.error(
                    e.span(),
                    format!(
                        "invalid etcd endpoint `{raw}`: it must start with https:// or http://"
                    ),
                ));
                continue;
            }
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#']) {
            bad = Some(r.error(
                e.span(),
                format!("invalid etcd endpoint `{raw}`: give scheme, host and port only"),
            ));
            continue;
        }
        if plain && !is_loopback(split_host_port(authority).0) {
            r.warn(
                e.span(),
                format!("`{raw}` is plain http: the lease's proofs cross the network unencrypted"),
            );
        }
        out.push(format!(
            "{}{authority}",
            if plain { "http://" } else { "https://" }
        ));
    }
    match bad {
        Some(b) => Err(b),
        None => Ok(out),
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

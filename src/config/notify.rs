//! The `[[notify]]` tables: where roster reports a run's refusals, failures and applies.
//!
//! ```toml
//! [[notify]]
//! type = "webhook"
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"  # a secret: logs show the host only
//! secret_file = "secrets/webhook"   # optional: sign each body (X-Roster-Signature: sha256=…)
//! on = ["refused", "failed"]        # the default; "applied" adds runs that changed something
//! timeout = "10s"                   # one attempt's limit; the default
//! ```
//!
//! A webhook URL often *is* the credential (Slack's, Teams', Discord's carry their token in the
//! path), so the URL is kept as a [`Secret`]: `Debug`, logs and error messages show only
//! [`NotifyConfig::host`] (scheme, host and port), and no config message repeats the URL.
//!
//! Like every other table, `[[notify]]` is read through the spanned-TOML reader, so a misspelt key
//! or a bad value is an error at its own line and column; `type` is read first, by hand, so that
//! another kind of notification can later be one more match arm with keys of its own.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::check::{duration, is_loopback};
use crate::diag::toml::{RawTable, Reported, Resolver, backticked};
use crate::secret::{Secret, SecretKeys};

/// The notification types `[[notify]] type = "…"` accepts.
pub const NOTIFY_TYPES: &[&str] = &["webhook"];

/// The default of [`NotifyConfig::timeout`]: a receiver that takes longer is retried later.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a target's run can end, as far as a notification cares: the values of `on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOutcome {
    /// A safety rule refused the plan; nothing was written.
    Refused,
    /// The target could not be read or planned, or a change failed; or the run could not start.
    Failed,
    /// Changes were applied and none failed (a run with no changes is not one).
    Applied,
}

impl NotifyOutcome {
    /// Every outcome, in the order `on` documents them.
    pub const ALL: [NotifyOutcome; 3] = [Self::Refused, Self::Failed, Self::Applied];

    /// The word `on` and the JSON body use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Applied => "applied",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One checked `[[notify]]` table of `type = "webhook"`.
///
/// `Debug` is safe to log: the URL and the signing key are [`Secret`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Where the JSON body is POSTed. A secret: it often carries the receiver's token.
    pub url: Secret,
    /// `scheme://host[:port]` of [`NotifyConfig::url`]: what logs and errors show of it.
    pub host: String,
    /// The HMAC-SHA256 key of the `X-Roster-Signature` header, from `secret_file`; no header
    /// without it.
    pub secret: Option<Secret>,
    /// The outcomes that are sent. Never empty.
    pub on: BTreeSet<NotifyOutcome>,
    /// The time limit of one attempt (connect, send, answer).
    pub timeout: Duration,
}

impl NotifyConfig {
    /// A webhook to `url` for `on`, unsigned, with the default timeout: for tests and for
    /// embedding roster, where there is no config file to read.
    pub fn webhook(url: &str, on: &[NotifyOutcome]) -> Self {
        Self {
            host: host_of(url).unwrap_or_else(|| "[invalid url]".to_owned()),
            url: Secret::new(url),
            secret: None,
            on: on.iter().copied().collect(),
            timeout: DEFAULT_NOTIFY_TIMEOUT,
        }
    }
}

/// The keys of a `[[notify]]` table of `type = "webhook"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    /// `webhook`. (Read by hand before this struct, to choose the keys; listed here so that it is
    /// a known key.)
    #[serde(rename = "type")]
    _kind: serde::de::IgnoredAny,
    /// The URL the JSON body is POSTed to: `https://…` (`http://` is warned about off loopback).
    url: Spanned<String>,
    /// A file holding the key of the body's HMAC-SHA256 signature, relative to the config file;
    /// the signature is sent as `X-Roster-Signature: sha256=<hex>`.
    secret_file: Option<Spanned<PathBuf>>,
    /// The outcomes to send: any of `refused`, `failed`, `applied`. Default
    /// `["refused", "failed"]`.
    on: Option<Spanned<Vec<Spanned<String>>>>,
    /// How long one attempt may take, as a duration such as `"10s"`. Default 10s.
    timeout: Option<Spanned<String>>,
}

/// Reads every `[[notify]]` table, recording each problem in `r`; the tables with an error are
/// left out (the config as a whole is then refused).
pub(crate) fn read_all(tables: Vec<RawTable<'_>>, r: &mut Resolver<'_>) -> Vec<NotifyConfig> {
    tables.into_iter().filter_map(|t| read(t, r).ok()).collect()
}

/// One `[[notify]]` table: dispatch on `type`, then its keys.
fn read(table: RawTable<'_>, r: &mut Resolver<'_>) -> Result<NotifyConfig, Reported> {
    let kind = table.kind("notify", NOTIFY_TYPES, r)?;
    match kind.get_ref().as_str() {
        "webhook" => table.read::<WebhookFile>("[[notify]]", r)?.resolve(r),
        other => Err(r.error(
            kind.span(),
            format!(
                "unknown notify type `{other}`; known types: {}",
                backticked(NOTIFY_TYPES)
            ),
        )),
    }
}

impl WebhookFile {
    fn resolve(self, r: &mut Resolver<'_>) -> Result<NotifyConfig, Reported> {
        let url = check_url(&self.url, r);
        let on = check_on(self.on.as_ref(), r);
        let timeout = duration(self.timeout.as_ref(), "timeout", DEFAULT_NOTIFY_TIMEOUT, r);
        let keys = SecretKeys {
            key: "secret",
            literal: None,
            file: self.secret_file,
            env: None,
        };
        let secret = r.secret(&keys);
        let (host, on, timeout, secret) = (url?, on?, timeout?, secret?);
        Ok(NotifyConfig {
            url: Secret::new(self.url.into_inner().trim()),
            host,
            secret,
            on,
            timeout,
        })
    }
}

/// `scheme://host[:port]` of an http(s) URL; `None` when it is not one.
pub fn host_of(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let host = u.host_str().filter(|h| !h.is_empty())?;
    Some(match u.port() {
        Some(port) => format!("{}://{host}:{port}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// Checks the webhook URL and returns what may be shown of it. No message repeats the URL: its
/// path or query may be the receiver's token.
fn check_url(url: &Spanned<String>, r: &mut Resolver<'_>) -> Result<String, Reported> {
    let raw = url.get_ref().trim();
    if !(raw.starts_with("https://") || raw.starts_with("http://")) {
        return Err(r.error(
            url.span(),
            "invalid `url`: it must start with https:// or http://",
        ));
    }
    let parsed = match reqwest::Url::parse(raw) {
        Ok(u) => u,
        // The parser's reason ("invalid port number", …) names no part of the URL.
        Err(e) => return Err(r.error(url.span(), format!("invalid `url`: {e}"))),
    };
    if parsed.fragment().is_some() {
        return Err(r.error(
            url.span(),
            "invalid `url`: a `#fragment` is never sent to the receiver; remove it",
        ));
    }
    let Some(host) = host_of(raw) else {
        return Err(r.error(url.span(), "invalid `url`: no host"));
    };
    let bare = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if parsed.scheme() == "http" && !is_loopback(bare) {
        r.warn(
            url.span(),
            format!(
                "the `url` to {host} is plain http: the run's report, and any token in the url, \
                 cross the network unencrypted"
            ),
        );
    }
    Ok(host)
}

/// Checks `on`: known outcomes, at least one; a repeated one is warned about.
fn check_on(
    on: Option<&Spanned<Vec<Spanned<String>>>>,
    r: &mut Resolver<'_>,
) -> Result<BTreeSet<NotifyOutcome>, Reported> {
    let Some(on) = on else {
        return Ok(BTreeSet::from([
            NotifyOutcome::Refused,
            NotifyOutcome::Failed,
        ]));
    };
    let known: Vec<&str> = NotifyOutcome::ALL.iter().map(|o| o.as_str()).collect();
    if on.get_ref().is_empty() {
        return Err(r.error(
            on.span(),
            format!(
                "`on` is empty: list what to send, any of {} (or remove the [[notify]])",
                backticked(&known)
            ),
        ));
    }
    let mut out = BTreeSet::new();
    let mut ok = true;
    for value in on.get_ref() {
        match NotifyOutcome::parse(value.get_ref()) {
            Some(o) if !out.insert(o) => {
                r.warn(
                    value.span(),
                    format!("`{}` is listed twice in `on`", value.get_ref()),
                );
            }
            Some(_) => {}
            None => {
                r.error(
                    value.span(),
                    format!(
                        "unknown value `{}` in `on`; expected any of {}",
                        value.get_ref(),
                        backticked(&known)
                    ),
                );
                ok = false;
            }
        }
    }
    if ok { Ok(out) } else { Err(Reported) }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{ConfigErrors, parse};

    const HEAD: &str = "[[source]]\ntype = \"toml\"\npath = \"g\"\n";

    fn notify(body: &str) -> Result<Vec<NotifyConfig>, ConfigErrors> {
        parse(&format!("{HEAD}[[notify]]\n{body}"), Path::new("r.toml")).map(|c| c.notify)
    }

    /// The diagnostics of a config, without the warning every test config has (no target).
    fn problems(body: &str) -> String {
        let text = match parse(&format!("{HEAD}[[notify]]\n{body}"), Path::new("r.toml")) {
            Ok(c) => crate::diag::Lines(&c.warnings).to_string(),
            Err(e) => e.to_string(),
        };
        text.lines()
            .filter(|l| !l.contains("no [[target]]"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn defaults_are_refused_and_failed_in_ten_seconds_unsigned() {
        let n = notify("type = \"webhook\"\nurl = \"https://hooks.example.com/T1/B2/tok\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.len(), 1);
        assert_eq!(
            n[0].on,
            BTreeSet::from([NotifyOutcome::Refused, NotifyOutcome::Failed])
        );
        assert_eq!(n[0].timeout, DEFAULT_NOTIFY_TIMEOUT);
        assert_eq!(n[0].host, "https://hooks.example.com");
        assert_eq!(n[0].url.expose(), "https://hooks.example.com/T1/B2/tok");
        assert!(n[0].secret.is_none());
    }

    #[test]
    fn debug_shows_the_host_never_the_url_or_key() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("key"), "k3y-value\n")?;
        let text = format!(
            "{HEAD}[[notify]]\ntype = \"webhook\"\nurl = \"https://hooks.example.com:8443/T1/tok3n?x=y\"\n\
             secret_file = \"key\"\non = [\"applied\"]\ntimeout = \"3s\"\n"
        );
        let config =
            parse(&text, &dir.path().join("roster.toml")).unwrap_or_else(|e| panic!("{e}"));
        let n = &config.notify[0];
        assert_eq!(n.secret.as_ref().map(Secret::expose), Some("k3y-value"));
        assert_eq!(n.timeout, Duration::from_secs(3));
        let shown = format!("{config:?}");
        assert!(shown.contains("https://hooks.example.com:8443"), "{shown}");
        assert!(
            !shown.contains("tok3n") && !shown.contains("k3y"),
            "{shown}"
        );
        Ok(())
    }

    #[test]
    fn bad_keys_and_values_are_errors_at_their_place() {
        assert_eq!(
            problems("type = \"webhook\"\nurl = \"https://h.example.com/x\"\nonn = [\"failed\"]\n"),
            "r.toml:7:1: unknown key `onn` in [[notify]] (did you mean `on`?); expected one of \
             `type`, `url`, `secret_file`, `on`, `timeout`"
        );
        assert_eq!(
            problems("type = \"slack\"\nurl = \"https://h.example.com/x\"\n"),
            "r.toml:5:8: unknown notify type `slack`; known types: `webhook`"
        );
        assert_eq!(
            problems("url = \"https://h.example.com/x\"\n"),
            "r.toml:4:1: missing key `type` in [[notify]]; known types: `webhook`"
        );
        assert_eq!(
            problems("type = \"webhook\"\n"),
            "r.toml:4:1: missing key `url`"
        );
        assert_eq!(
            problems(
                "type = \"webhook\"\nurl = \"https://h.example.com/x\"\n\
                 on = [\"failed\", \"aplied\", \"failed\"]\ntimeout = \"soon\"\n"
            ),
            "r.toml:7:17: unknown value `aplied` in `on`; expected any of `refused`, `failed`, \
             `applied`\n\
             r.toml:7:27: warning: `failed` is listed twice in `on`\n\
             r.toml:8:11: invalid duration `soon`: expected number at 0; write it like \"30s\" or \"2m\""
        );
        assert_eq!(
            problems("type = \"webhook\"\nurl = \"https://h.example.com/x\"\non = []\n"),
            "r.toml:7:6: `on` is empty: list what to send, any of `refused`, `failed`, `applied` \
             (or remove the [[notify]])"
        );
        assert_eq!(
            problems(
                "type = \"webhook\"\nurl = \"https://h.example.com/x\"\nsecret_file = \"nope\"\n"
            )
            .split(": No such file")
            .next(),
            Some("r.toml:7:15: cannot read secret file nope")
        );
    }

    #[test]
    fn url_messages_never_repeat_the_url() {
        for (url, says) in [
            (
                "ftp://h.example.com/s3cr3t",
                "r.toml:6:7: invalid `url`: it must start with https:// or http://",
            ),
            (
                "https://h.example.com/s3cr3t#frag",
                "r.toml:6:7: invalid `url`: a `#fragment` is never sent to the receiver; remove it",
            ),
            (
                "https://h.example.com:99999/s3cr3t",
                "r.toml:6:7: invalid `url`: invalid port number",
            ),
            (
                "http://h.example.com/s3cr3t",
                "r.toml:6:7: warning: the `url` to http://h.example.com is plain http: the run's \
                 report, and any token in the url, cross the network unencrypted",
            ),
        ] {
            let got = problems(&format!("type = \"webhook\"\nurl = \"{url}\"\n"));
            assert_eq!(got, says, "{url}");
            assert!(!got.contains("s3cr3t"));
        }
        // Loopback receivers (tests, a local relay) are fine over http.
        for ok in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]:8/x",
        ] {
            assert_eq!(
                problems(&format!("type = \"webhook\"\nurl = \"{ok}\"\n")),
                "",
                "{ok}"
            );
        }
    }

    #[test]
    fn notify_must_be_a_list_of_tables() {
        let text = format!("{HEAD}[notify]\ntype = \"webhook\"\n");
        let err = parse(&text, Path::new("r.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.ends_with(
                "\nr.toml:4:1: `notify` must be a list of tables: write [[notify]] sections, not \
                 [notify]"
            ),
            "{err}"
        );
    }
}

//! Checks of the values that many tables share (secrets, URLs, durations, CA files), and the seam
//! through which a connector checks its own keys.
//!
//! The config's common keys, each connector's keys (`target/<name>/config.rs`) and the LDAP
//! source's keys (`source/ldap/config.rs`) all use them, so they sit below all three. Each records
//! its problems in the [`Resolver`] and returns [`Reported`] when the value cannot be used.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::Spanned;

use super::toml::{Reported, Resolver};
use crate::secret::{Secret, SecretKeys};

/// The variable systemd sets to the folder of a unit's `LoadCredential=` files.
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// A secret file path under `$CREDENTIALS_DIRECTORY` (written `$CREDENTIALS_DIRECTORY/name` or
/// `${CREDENTIALS_DIRECTORY}/name`), expanded from the environment; `None` for any other path.
fn credentials_path(path: &Path) -> Result<Option<PathBuf>, String> {
    let text = path.to_string_lossy();
    let rest = ["$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix));
    let Some(rest) = rest else {
        return Ok(None);
    };
    match std::env::var_os(CREDENTIALS_DIRECTORY) {
        Some(dir) if !dir.is_empty() => Ok(Some(PathBuf::from(dir).join(rest))),
        _ => Err(format!(
            "`{}` names $CREDENTIALS_DIRECTORY, which is not set: it is set by systemd for a \
             unit with LoadCredential=",
            path.display()
        )),
    }
}

impl Resolver<'_> {
    /// Reads a secret that must be given: as [`Resolver::secret`], and an error at `table` when
    /// none of its keys is set.
    pub fn required_secret(
        &mut self,
        keys: &SecretKeys,
        table: Range<usize>,
    ) -> Result<Secret, Reported> {
        match self.secret(keys)? {
            Some(s) => Ok(s),
            None => {
                let k = keys.key;
                Err(self.error(
                    table,
                    format!("no `{k}`: set `{k}_file`, `{k}_env` or `{k}`"),
                ))
            }
        }
    }

    /// Reads the secret the keys point at: `Ok(None)` when none of the three keys is set.
    ///
    /// Records an error when more than one is set, when a file cannot be read, when a variable is
    /// not set, or when the secret is empty; records a warning for a secret written in the config
    /// and for a secret file readable by group or others.
    pub fn secret(&mut self, keys: &SecretKeys) -> Result<Option<Secret>, Reported> {
        let given = keys.given();
        if let [(first, _), (second, span), ..] = given.as_slice() {
            return Err(self.error(
                span.clone(),
                format!("`{second}` conflicts with `{first}`: give the secret one way only"),
            ));
        }
        let secret = if let Some(file) = &keys.file {
            let path = match credentials_path(file.get_ref()) {
                Ok(Some(p)) => p,
                Ok(None) => self.path(file.get_ref()),
                Err(e) => return Err(self.error(file.span(), e)),
            };
            match Secret::from_file(&path) {
                Err(e) => {
                    return Err(self.error(
                        file.span(),
                        format!("cannot read secret file {}: {e}", path.display()),
                    ));
                }
                Ok((secret, loose)) => {
                    if let Some(mode) = loose {
                        self.warn(
                            file.span(),
                            format!(
                                "secret file {} can be read by group or others (mode {mode:03o}); \
                                 restrict it with `chmod 600`",
                                path.display()
                            ),
                        );
                    }
                    if secret.expose().is_empty() {
                        return Err(self.error(
                            file.span(),
                            format!("secret file {} is empty", path.display()),
                        ));
                    }
                    secret
                }
            }
        } else if let Some(var) = &keys.env {
            let name = var.get_ref();
            match Secret::from_env(name) {
                Err(std::env::VarError::NotPresent) => {
                    return Err(self.error(
                        var.span(),
                        format!("environment variable `{name}` is not set"),
                    ));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(self.error(
                        var.span(),
                        format!("environment variable `{name}` is not valid UTF-8"),
                    ));
                }
                Ok(s) if s.expose().is_empty() => {
                    return Err(self.error(
                        var.span(),
                        format!("environment variable `{name}` is empty"),
                    ));
                }
                Ok(s) => s,
            }
        } else if let Some(literal) = &keys.literal {
            let key = keys.key;
            if literal.get_ref().is_empty() {
                return Err(self.error(literal.span(), format!("`{key}` is empty")));
            }
            self.warn(
                literal.span(),
                format!(
                    "`{key}` is written in the config file; \
                     prefer `{key}_file` or `{key}_env`"
                ),
            );
            Secret::new(literal.get_ref().clone())
        } else {
            return Ok(None);
        };
        Ok(Some(secret))
    }
}

/// The connector keys of a `[[target]]` table of one type, as serde reads them
/// (`deny_unknown_fields`, a doc comment on every field: they are the user documentation).
pub(crate) trait TargetKeys: DeserializeOwned {
    /// The checked configuration the keys become.
    type Config;

    /// Checks the keys and reads what they point at (secrets). `table` is the span of the
    /// `[[target]]` header, for problems with no key to point at (a missing key). Every problem is
    /// recorded in `r`.
    fn resolve(self, r: &mut Resolver<'_>, table: Range<usize>) -> Result<Self::Config, Reported>;
}

/// The default of every `timeout` key: a `[[target]]`'s and an LDAP `[[source]]`'s.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks a target's base URL: the scheme and the host (plain http warned about off loopback),
/// no query or fragment; drops trailing slashes, since API paths are appended to it.
pub(crate) fn check_url(url: &Spanned<String>, r: &mut Resolver<'_>) -> Result<String, Reported> {
    let raw = url.get_ref().trim();
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Err(r.error(
            url.span(),
            format!("invalid url `{raw}`: it must start with https:// or http://"),
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(r.error(url.span(), format!("invalid url `{raw}`: no host")));
    }
    if rest.contains(['?', '#']) {
        return Err(r.error(
            url.span(),
            format!("invalid url `{raw}`: give the instance's base url, without `?` or `#`"),
        ));
    }
    if raw.starts_with("http://") && !is_loopback(split_host_port(host).0) {
        r.warn(
            url.span(),
            format!("`{raw}` is plain http: credentials and tokens cross the network unencrypted"),
        );
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// A URL authority's host (without the brackets of an IPv6 address) and port, if any.
pub(crate) fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (rest, None),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    }
}

/// Whether a URL's host names this machine: `localhost` or a loopback address.
pub(crate) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A duration key (`timeout`) such as `"30s"` or `"2m"`, or `default` when it is not set; zero
/// is refused.
pub(crate) fn duration(
    value: Option<&Spanned<String>>,
    key: &str,
    default: Duration,
    r: &mut Resolver<'_>,
) -> Result<Duration, Reported> {
    let d = duration_or_zero(value, default, r)?;
    match value {
        Some(s) if d.is_zero() => {
            Err(r.error(s.span(), format!("`{key}` must be longer than zero")))
        }
        _ => Ok(d),
    }
}

/// A duration key that may be zero (`jitter = "0s"`), or `default` when it is not set.
pub(crate) fn duration_or_zero(
    value: Option<&Spanned<String>>,
    default: Duration,
    r: &mut Resolver<'_>,
) -> Result<Duration, Reported> {
    let Some(s) = value else {
        return Ok(default);
    };
    match humantime::parse_duration(s.get_ref()) {
        Ok(d) => Ok(d),
        Err(e) => Err(r.error(
            s.span(),
            format!(
                "invalid duration `{}`: {e}; write it like \"30s\" or \"2m\"",
                s.get_ref()
            ),
        )),
    }
}

/// A `ca_file`: resolved against the config file's folder, and required to be a readable file.
pub(crate) fn ca_file(file: &Spanned<PathBuf>, r: &mut Resolver<'_>) -> Result<PathBuf, Reported> {
    existing_file(file, "CA file", r)
}

/// A file key's path, resolved against the config file's folder; an error at the key when it is
/// not a file that can be read. `what` names the file in messages ("CA file").
pub(crate) fn existing_file(
    file: &Spanned<PathBuf>,
    what: &str,
    r: &mut Resolver<'_>,
) -> Result<PathBuf, Reported> {
    let path = r.path(file.get_ref());
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(r.error(
            file.span(),
            format!("{what} {} is not a file", path.display()),
        )),
        Err(e) => Err(r.error(
            file.span(),
            format!("cannot read {what} {}: {e}", path.display()),
        )),
    }
}

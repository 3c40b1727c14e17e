//! The shapes of `roster.toml` as serde reads them, and the hand-written dispatch on `type`.
//!
//! Why by hand: with serde's `tag = "type"` (or `untagged`, or `flatten`) serde buffers the whole
//! table before it knows the variant, and the toml crate can then only point at the table header
//! (`[[target]]`) instead of the misspelt key (toml-rs/toml #535, #748, #593). So the document is
//! parsed into spanned toml values ([`DeTable`]), `type` is read from each `[[source]]` and
//! `[[target]]` table, and the table is split into the keys every component of that kind has and
//! the keys of its type. Each part is then deserialized into a `deny_unknown_fields` struct through
//! its own [`Spanned<DeValue>`] deserializer, so every error keeps the position of the key or value
//! it is about.
//!
//! [`Resolver`] collects the diagnostics of one file, resolves relative paths against the config
//! file's folder and reads secrets. A connector's keys are a struct implementing [`TargetKeys`];
//! adding a connector is one such struct and one match arm in [`super::parse`].

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostic, TextFile};
use crate::model::Origin;
use crate::plan::MembershipMode;
use crate::secret::{Secret, SecretKeys};
use crate::source::ldap::{LdapScope, LdapSourceConfig, MemberKind};

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

/// Marks that a problem was found and already recorded as a diagnostic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reported;

/// Turns one config file's serde shapes into checked values, collecting every problem on the way.
#[derive(Debug)]
pub(crate) struct Resolver<'a> {
    file: TextFile<'a>,
    base: &'a Path,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Resolver<'a> {
    /// A resolver for `file`, whose relative paths are relative to `base`.
    pub fn new(file: TextFile<'a>, base: &'a Path) -> Self {
        Self {
            file,
            base,
            diagnostics: Vec::new(),
        }
    }

    /// The file being read.
    pub fn file(&self) -> TextFile<'a> {
        self.file
    }

    /// Records an error at `span`.
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) -> Reported {
        let d = self.file.error(span, message);
        self.diagnostics.push(d);
        Reported
    }

    /// Records a warning at `span`.
    pub fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.file.warning(span, message);
        self.diagnostics.push(d);
    }

    /// Whether any error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The diagnostics recorded, in the order of their positions in the file.
    pub fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.col));
        self.diagnostics
    }

    /// Deserializes a spanned toml value, recording the error (at its position) if it fails.
    ///
    /// serde stops at the first bad value. For a table, so that every bad value is reported at
    /// once, the key the error is in is then set aside and the rest is tried again, until it
    /// succeeds or fails only for want of a key set aside.
    pub fn deserialize<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
    ) -> Result<T, Reported> {
        let span = value.span();
        let mut table = match value.into_inner() {
            DeValue::Table(table) => table,
            other => {
                return T::deserialize(Spanned::new(span, other).into_deserializer())
                    .map_err(|e| self.toml_error(&e));
            }
        };
        let mut set_aside: Vec<String> = Vec::new();
        let mut failed = false;
        loop {
            let attempt = Spanned::new(span.clone(), DeValue::Table(table.clone()));
            let e = match T::deserialize(attempt.into_deserializer()) {
                Ok(v) if !failed => return Ok(v),
                Ok(_) => return Err(Reported),
                Err(e) => e,
            };
            let missing_aside = set_aside
                .iter()
                .any(|k| e.message() == format!("missing field `{k}`"));
            if missing_aside {
                return Err(Reported);
            }
            self.toml_error(&e);
            failed = true;
            // The key the error is under: the last one that starts before it (a value written
            // under a `[table.sub]` header comes after the header's key).
            let at = e.span().map(|s| s.start);
            let culprit = at.and_then(|at| {
                table
                    .keys()
                    .filter(|k| k.span().start <= at)
                    .max_by_key(|k| k.span().start)
                    .cloned()
            });
            let Some(culprit) = culprit else {
                return Err(Reported);
            };
            set_aside.push(culprit.get_ref().to_string());
            table.remove(&culprit);
        }
    }

    /// Records a toml error at its position, in a config's words.
    fn toml_error(&mut self, e: &toml::de::Error) -> Reported {
        let mut d = self.file.toml_error(e);
        // serde speaks of fields and variants; a config has keys and values.
        if let Some(rest) = d.message.strip_prefix("missing field ") {
            d.message = format!("missing key {rest}");
        } else if let Some(rest) = d.message.strip_prefix("unknown field ") {
            d.message = format!("unknown key {rest}");
        } else if let Some(rest) = d.message.strip_prefix("unknown variant ") {
            d.message = format!("unknown value {rest}");
        }
        self.diagnostics.push(d);
        Reported
    }

    /// A path from the config, made absolute against the config file's folder.
    pub fn path(&self, path: &Path) -> PathBuf {
        self.base.join(path)
    }

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

/// The keys every `[[target]]` table has, whatever its `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetFile {
    /// The target's name, used in plans, reports, metrics and `--target`. Must be unique.
    pub name: Spanned<String>,
    /// The connector: `contensis`, `vinyldns`, `crafter` or `uipath`. (Read by hand before this
    /// struct, to choose the connector's keys; listed here so that it is a known key.)
    #[serde(rename = "type")]
    pub _kind: serde::de::IgnoredAny,
    /// The managed scope: glob patterns over group names (`*`, `?`, `[abc]`, `{a,b}`). roster
    /// creates, changes and (with `prune`) deletes only groups whose names match. Default: exactly
    /// the groups of the desired state, so nothing else on the target is ever touched.
    pub groups: Option<Vec<Spanned<String>>>,
    /// `authoritative` (default): members and children not in the desired state are removed.
    /// `additive`: roster only adds.
    #[serde(default)]
    pub membership: MembershipMode,
    /// Whether managed groups that the desired state no longer names are deleted. Default
    /// `false`.
    #[serde(default)]
    pub prune: bool,
    /// An apply whose removals (members, children and groups) exceed this is refused, unless
    /// raised for one run with `--max-deletes`. Default 100.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: usize,
    /// How many API calls may be in flight at once on this target. Default 8.
    #[serde(default = "default_concurrency")]
    pub concurrency: NonZeroUsize,
    /// How long one API call may take, as a duration such as `"30s"` or `"2m"`. Default 30s.
    pub timeout: Option<Spanned<String>>,
    /// How many times a failed call is retried, when retrying is safe. Default 4.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Allow applying an empty desired state to a target whose scope holds groups (which would
    /// empty or, with `prune`, delete them). Default `false`.
    #[serde(default)]
    pub allow_empty_source: bool,
    /// A PEM file of CA certificates to trust, in addition to the system's, relative to the
    /// config file.
    pub ca_file: Option<Spanned<PathBuf>>,
}

/// The default of [`TargetFile::max_deletes`].
pub(crate) const DEFAULT_MAX_DELETES: usize = 100;
/// The default of [`TargetFile::concurrency`].
pub(crate) const DEFAULT_CONCURRENCY: usize = 8;
/// The default of [`TargetFile::retries`].
pub(crate) const DEFAULT_RETRIES: u32 = 4;
/// The default of [`TargetFile::timeout`] and of [`LdapSourceFile::timeout`].
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

fn default_max_deletes() -> usize {
    DEFAULT_MAX_DELETES
}

fn default_concurrency() -> NonZeroUsize {
    NonZeroUsize::new(DEFAULT_CONCURRENCY).unwrap_or(NonZeroUsize::MIN)
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

/// The keys every `[[source]]` table has, whatever its `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceFile {
    /// The kind of source: `toml` or `ldap`. (Read by hand before this struct, to choose the
    /// source's keys; listed here so that it is a known key.)
    #[serde(rename = "type")]
    pub _kind: serde::de::IgnoredAny,
}

/// The keys of a `[[source]]` table of `type = "toml"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TomlSourceFile {
    /// A desired-state file, or a folder whose `*.toml` files are read in name order; relative to
    /// the config file.
    pub path: Spanned<PathBuf>,
}

/// The keys of a `[[source]]` table of `type = "ldap"`.
///
/// The desired groups are the entries under `base_dn` that match `group_filter`: each one's
/// `name_attr` is the group's name, its `description_attr` the description, and its `member_attr`
/// the members, as DNs (resolved to user keys through the users under `user_base_dn`) or, with
/// `member_kind = "uid"`, as user keys already. The bind password follows the same rules as every
/// secret: `bind_password_file`, `bind_password_env` or `bind_password` (warned about).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LdapSourceFile {
    /// The server, as `ldap://host[:port]` or `ldaps://host[:port]`; or a list of them, tried in
    /// order until one connects (failover). Required.
    pub url: Spanned<Urls>,
    /// Upgrade `ldap://` connections to TLS with StartTLS. Default `false`. Not for `ldaps://`
    /// URLs, which are TLS from the start.
    #[serde(default)]
    pub starttls: bool,
    /// A PEM file of CA certificates to trust in addition to the system's, relative to the
    /// config file. It must exist.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// The DN to bind as, such as `cn=roster,ou=services,dc=example,dc=org`; it needs a
    /// password. Default: an anonymous bind.
    pub bind_dn: Option<Spanned<String>>,
    /// A file holding the bind password, relative to the config file.
    pub bind_password_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the bind password.
    pub bind_password_env: Option<Spanned<String>>,
    /// The bind password, written here (warned about: prefer the file or the variable).
    pub bind_password: Option<Spanned<String>>,
    /// Where groups are searched, such as `ou=groups,dc=example,dc=org`. Required.
    pub base_dn: Spanned<String>,
    /// `sub` (default): the whole subtree under `base_dn`; `one`: only the entries directly
    /// under it.
    #[serde(default)]
    pub scope: LdapScope,
    /// The filter that selects the groups. Default `(objectClass=groupOfNames)`.
    pub group_filter: Option<Spanned<String>>,
    /// The attribute holding a group's name. Default `cn`.
    pub name_attr: Option<Spanned<String>>,
    /// The attribute holding a group's description. Default `description`.
    pub description_attr: Option<Spanned<String>>,
    /// The attribute holding a group's members. Default `member`; `uniqueMember` for
    /// groupOfUniqueNames, `memberUid` for posixGroup.
    pub member_attr: Option<Spanned<String>>,
    /// `dn` (default): the member values are DNs of users or of groups; `uid`: they are user
    /// keys already (posixGroup's `memberUid`).
    #[serde(default)]
    pub member_kind: MemberKind,
    /// Where users are searched, to turn member DNs into user keys. Default: `base_dn`.
    pub user_base_dn: Option<Spanned<String>>,
    /// The filter that selects users. Default `(objectClass=inetOrgPerson)`.
    pub user_filter: Option<Spanned<String>>,
    /// The user attribute whose value is the user key handed to targets. Default `uid`.
    pub user_key_attr: Option<Spanned<String>>,
    /// Whether a member DN that is one of the groups read becomes a child group. Default `true`.
    #[serde(default = "default_nested")]
    pub nested: bool,
    /// Entries per page of the paged search (Simple Paged Results), 1 to 2147483647. Default
    /// 500.
    pub page_size: Option<Spanned<i64>>,
    /// How long connecting, and each LDAP operation, may take, as a duration such as `"30s"`.
    /// Default 30s.
    pub timeout: Option<Spanned<String>>,
}

/// The default of [`LdapSourceFile::group_filter`].
pub(crate) const DEFAULT_GROUP_FILTER: &str = "(objectClass=groupOfNames)";
/// The default of [`LdapSourceFile::name_attr`].
pub(crate) const DEFAULT_NAME_ATTR: &str = "cn";
/// The default of [`LdapSourceFile::description_attr`].
pub(crate) const DEFAULT_DESCRIPTION_ATTR: &str = "description";
/// The default of [`LdapSourceFile::member_attr`].
pub(crate) const DEFAULT_MEMBER_ATTR: &str = "member";
/// The default of [`LdapSourceFile::user_filter`].
pub(crate) const DEFAULT_USER_FILTER: &str = "(objectClass=inetOrgPerson)";
/// The default of [`LdapSourceFile::user_key_attr`].
pub(crate) const DEFAULT_USER_KEY_ATTR: &str = "uid";
/// The default of [`LdapSourceFile::page_size`].
pub(crate) const DEFAULT_PAGE_SIZE: i32 = 500;

fn default_nested() -> bool {
    true
}

/// The `url` of an LDAP source: one URL, or a list of them.
#[derive(Debug)]
pub(crate) enum Urls {
    /// `url = "ldap://…"`; its span is the enclosing `Spanned`'s.
    One(String),
    /// `url = ["ldap://…", …]`, each with its own span.
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for Urls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UrlsVisitor;

        impl<'de> serde::de::Visitor<'de> for UrlsVisitor {
            type Value = Urls;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a URL or an array of URLs")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Urls, E> {
                Ok(Urls::One(v.to_owned()))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Urls, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element()? {
                    urls.push(url);
                }
                Ok(Urls::Many(urls))
            }
        }

        deserializer.deserialize_any(UrlsVisitor)
    }
}

impl LdapSourceFile {
    /// Checks the keys and reads the bind password. `origin` is where the source is defined (its
    /// `type` value). `clean` is whether every key of the table was known: when one was not, it
    /// may be a misspelt `bind_dn` or password key, so the check that the two go together is
    /// left until it is fixed. Every problem is recorded in `r`.
    pub fn resolve(
        self,
        origin: Origin,
        clean: bool,
        r: &mut Resolver<'_>,
    ) -> Result<LdapSourceConfig, Reported> {
        let urls = ldap_urls(self.url, self.starttls, r);
        let ca_file = self.ca_file.map(|f| ca_file(&f, r)).transpose();
        let password_keys = SecretKeys {
            key: "bind_password",
            literal: self.bind_password,
            file: self.bind_password_file,
            env: self.bind_password_env,
        };
        let password = r.secret(&password_keys);
        let bind_dn = self
            .bind_dn
            .map(|dn| dn_value(dn, "bind_dn", "leave it out to bind anonymously", r))
            .transpose();
        let bind = bind_pair(bind_dn, password, &password_keys, clean, r);
        let base_dn = dn_value(
            self.base_dn,
            "base_dn",
            "give the DN groups are searched under, such as \"ou=groups,dc=example,dc=org\"",
            r,
        );
        let user_base_dn = self
            .user_base_dn
            .map(|dn| {
                dn_value(
                    dn,
                    "user_base_dn",
                    "leave it out to search users under `base_dn`",
                    r,
                )
            })
            .transpose();
        let group_filter = ldap_filter(self.group_filter, "group_filter", DEFAULT_GROUP_FILTER, r);
        let user_filter = ldap_filter(self.user_filter, "user_filter", DEFAULT_USER_FILTER, r);
        let name_attr = attribute(self.name_attr, "name_attr", DEFAULT_NAME_ATTR, r);
        let description_attr = attribute(
            self.description_attr,
            "description_attr",
            DEFAULT_DESCRIPTION_ATTR,
            r,
        );
        let member_attr = attribute(self.member_attr, "member_attr", DEFAULT_MEMBER_ATTR, r);
        let user_key_attr = attribute(
            self.user_key_attr,
            "user_key_attr",
            DEFAULT_USER_KEY_ATTR,
            r,
        );
        let page_size = match self.page_size {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(n) => match i32::try_from(*n.get_ref()) {
                Ok(size) if size >= 1 => Ok(size),
                Ok(_) | Err(_) => Err(r.error(
                    n.span(),
                    format!("`page_size` must be between 1 and {}", i32::MAX),
                )),
            },
        };
        let timeout = duration(self.timeout.as_ref(), "timeout", DEFAULT_TIMEOUT, r);
        let (bind_dn, bind_password) = bind?;
        Ok(LdapSourceConfig {
            urls: urls?,
            starttls: self.starttls,
            ca_file: ca_file?,
            bind_dn,
            bind_password,
            base_dn: base_dn?.into_inner(),
            scope: self.scope,
            group_filter: group_filter?,
            name_attr: name_attr?,
            description_attr: description_attr?,
            member_attr: member_attr?,
            member_kind: self.member_kind,
            user_base_dn: user_base_dn?.map(Spanned::into_inner),
            user_filter: user_filter?,
            user_key_attr: user_key_attr?,
            nested: self.nested,
            page_size: page_size?,
            timeout: timeout?,
            origin,
        })
    }
}

/// Checks every URL of `url` (see [`ldap_url`]), reporting each bad one.
fn ldap_urls(
    url: Spanned<Urls>,
    starttls: bool,
    r: &mut Resolver<'_>,
) -> Result<Vec<String>, Reported> {
    let span = url.span();
    let urls = match url.into_inner() {
        Urls::One(u) => vec![Spanned::new(span, u)],
        Urls::Many(urls) if urls.is_empty() => {
            return Err(r.error(
                span,
                "`url` is an empty list: give at least one ldap:// or ldaps:// URL",
            ));
        }
        Urls::Many(urls) => urls,
    };
    let checked: Vec<_> = urls.iter().map(|u| ldap_url(u, starttls, r)).collect();
    checked.into_iter().collect()
}

/// Checks one server URL: `ldap://` or `ldaps://`, a host, an optional port and nothing else;
/// StartTLS only on `ldap://`; a warning for `ldap://` in clear to another machine. Returns it
/// without a trailing slash.
fn ldap_url(
    url: &Spanned<String>,
    starttls: bool,
    r: &mut Resolver<'_>,
) -> Result<String, Reported> {
    let raw = url.get_ref().trim();
    let (tls, rest) = if let Some(rest) = raw.strip_prefix("ldaps://") {
        (true, rest)
    } else if let Some(rest) = raw.strip_prefix("ldap://") {
        (false, rest)
    } else {
        return Err(r.error(
            url.span(),
            format!("invalid url `{raw}`: it must start with ldap:// or ldaps://"),
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !(tail.is_empty() || tail == "/") {
        return Err(r.error(
            url.span(),
            format!(
                "invalid url `{raw}`: give the server only, as ldap://host or ldap://host:port; \
                 the search base is `base_dn`"
            ),
        ));
    }
    let (host, port) = split_host_port(authority);
    if host.is_empty() {
        return Err(r.error(url.span(), format!("invalid url `{raw}`: no host")));
    }
    if let Some(port) = port.filter(|p| !p.parse::<u16>().is_ok_and(|p| p != 0)) {
        return Err(r.error(
            url.span(),
            format!("invalid url `{raw}`: invalid port `{port}`"),
        ));
    }
    if tls && starttls {
        return Err(r.error(
            url.span(),
            format!(
                "StartTLS is for ldap:// URLs, and `{raw}` is TLS from the start: drop \
                 `starttls = true` or use an ldap:// URL"
            ),
        ));
    }
    if !tls && !starttls && !is_loopback(host) {
        r.warn(
            url.span(),
            format!(
                "`{raw}` is LDAP without TLS: the bind password and directory data cross the \
                 network in clear; use ldaps:// or `starttls = true`"
            ),
        );
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

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

/// A bind DN and a password go together: each without the other is an error (unless `clean`
/// is false, see [`LdapSourceFile::resolve`]).
fn bind_pair(
    bind_dn: Result<Option<Spanned<String>>, Reported>,
    password: Result<Option<Secret>, Reported>,
    keys: &SecretKeys,
    clean: bool,
    r: &mut Resolver<'_>,
) -> Result<(Option<String>, Option<Secret>), Reported> {
    match (&bind_dn, keys.span()) {
        (Ok(Some(dn)), None) if clean => {
            let k = keys.key;
            return Err(r.error(
                dn.span(),
                format!("`bind_dn` needs a password: set `{k}_file`, `{k}_env` or `{k}`"),
            ));
        }
        (Ok(None), Some(span)) if clean => {
            let given = keys.given_key().unwrap_or_else(|| keys.key.to_owned());
            return Err(r.error(
                span,
                format!("`{given}` needs `bind_dn`: an anonymous bind takes no password"),
            ));
        }
        _ => {}
    }
    match (bind_dn?, password?) {
        (Some(dn), Some(password)) => Ok((Some(dn.into_inner()), Some(password))),
        (None, None) => Ok((None, None)),
        // Only when a key was unknown: that error is already reported.
        (Some(_), None) | (None, Some(_)) => Err(Reported),
    }
}

/// A DN that must not be empty; `hint` says what to do instead.
fn dn_value(
    dn: Spanned<String>,
    key: &str,
    hint: &str,
    r: &mut Resolver<'_>,
) -> Result<Spanned<String>, Reported> {
    if dn.get_ref().trim().is_empty() {
        return Err(r.error(dn.span(), format!("`{key}` is empty; {hint}")));
    }
    Ok(dn)
}

/// An LDAP search filter (or its default): not empty, in parentheses.
fn ldap_filter(
    filter: Option<Spanned<String>>,
    key: &str,
    default: &str,
    r: &mut Resolver<'_>,
) -> Result<String, Reported> {
    let Some(filter) = filter else {
        return Ok(default.to_owned());
    };
    let text = filter.get_ref();
    if text.trim().is_empty() {
        return Err(r.error(
            filter.span(),
            format!("`{key}` is empty; leave it out to use the default, `{default}`"),
        ));
    }
    if !(text.starts_with('(') && text.ends_with(')')) {
        return Err(r.error(
            filter.span(),
            format!(
                "invalid filter `{text}`: an LDAP filter is in parentheses, such as `{default}`"
            ),
        ));
    }
    Ok(filter.into_inner())
}

/// An attribute name (or its default): not empty; letters, digits, `-`, `.` and `;` (an OID, or
/// a name with options such as `cn;lang-en`).
fn attribute(
    name: Option<Spanned<String>>,
    key: &str,
    default: &str,
    r: &mut Resolver<'_>,
) -> Result<String, Reported> {
    let Some(name) = name else {
        return Ok(default.to_owned());
    };
    let text = name.get_ref();
    if text.is_empty() {
        return Err(r.error(
            name.span(),
            format!("`{key}` is empty; leave it out to use the default, `{default}`"),
        ));
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';'))
    {
        return Err(r.error(
            name.span(),
            format!("invalid attribute name `{text}`: use letters, digits, `-`, `.` and `;` only"),
        ));
    }
    Ok(name.into_inner())
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
    let path = r.path(file.get_ref());
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(r.error(
            file.span(),
            format!("CA file {} is not a file", path.display()),
        )),
        Err(e) => Err(r.error(
            file.span(),
            format!("cannot read CA file {}: {e}", path.display()),
        )),
    }
}

/// One `[[source]]` or `[[target]]` table of the document: its header's span and its keys.
pub(crate) struct RawTable<'i> {
    /// The span of the `[[…]]` header.
    pub span: Range<usize>,
    /// The keys.
    pub table: DeTable<'i>,
}

/// The top level of `roster.toml`, split by hand so that every key is checked.
#[derive(Default)]
pub(crate) struct RootFile<'i> {
    /// The `[[source]]` tables, in file order.
    pub sources: Vec<RawTable<'i>>,
    /// The `[[target]]` tables, in file order.
    pub targets: Vec<RawTable<'i>>,
    /// Whether the document has a `source` key at all (even a malformed one).
    pub has_source_key: bool,
    /// Whether the document has a `target` key at all (even a malformed one).
    pub has_target_key: bool,
    /// The `[daemon]` table, if any.
    pub daemon: Option<RawTable<'i>>,
}

/// The top-level keys of `roster.toml`.
const ROOT_KEYS: &[&str] = &["source", "target", "daemon"];

impl<'i> RootFile<'i> {
    /// Splits the parsed document into its `[[source]]` and `[[target]]` tables, recording an
    /// error for any other key and for a `source` or `target` that is not an array of tables.
    pub fn split(root: DeTable<'i>, r: &mut Resolver<'_>) -> Self {
        let mut out = Self::default();
        for (key, value) in root {
            let name = key.get_ref().as_ref();
            let list = match name {
                "source" => {
                    out.has_source_key = true;
                    &mut out.sources
                }
                "target" => {
                    out.has_target_key = true;
                    &mut out.targets
                }
                "daemon" => {
                    let span = value.span();
                    match value.into_inner() {
                        DeValue::Table(table) => out.daemon = Some(RawTable { span, table }),
                        _ => {
                            r.error(span, "`daemon` must be a table: write a [daemon] section");
                        }
                    }
                    continue;
                }
                _ => {
                    r.error(key.span(), unknown_key(name, "at the top level", ROOT_KEYS));
                    continue;
                }
            };
            let span = value.span();
            let sections = format!("`{name}` must be a list of tables: write [[{name}]] sections");
            match value.into_inner() {
                DeValue::Array(items) => {
                    for item in items {
                        let span = item.span();
                        match item.into_inner() {
                            DeValue::Table(table) => list.push(RawTable { span, table }),
                            _ => {
                                r.error(span, sections.clone());
                            }
                        }
                    }
                }
                DeValue::Table(_) => {
                    r.error(span, format!("{sections}, not [{name}]"));
                }
                _ => {
                    r.error(span, sections);
                }
            }
        }
        out
    }
}

impl<'i> RawTable<'i> {
    /// The table's `type`, with its span; records an error (listing `known`) when it is missing
    /// or not a string.
    pub fn kind(
        &self,
        what: &str,
        known: &[&str],
        r: &mut Resolver<'_>,
    ) -> Result<Spanned<String>, Reported> {
        match self.table.get("type") {
            None => Err(r.error(
                self.span.clone(),
                format!(
                    "missing key `type` in [[{what}]]; known types: {}",
                    backticked(known)
                ),
            )),
            Some(v) => match v.get_ref().as_str() {
                Some(s) => Ok(Spanned::new(v.span(), s.to_owned())),
                None => Err(r.error(
                    v.span(),
                    format!("`type` must be a string, one of {}", backticked(known)),
                )),
            },
        }
    }

    /// Deserializes the table into `T`, recording an error for each key `T` does not have (and
    /// ignoring that key, so that the rest of the table is still checked).
    pub fn read<T: DeserializeOwned>(
        self,
        what: &str,
        r: &mut Resolver<'_>,
    ) -> Result<T, Reported> {
        let keys = keys_of::<T>();
        let mut known = DeTable::new();
        for (key, value) in self.table {
            let name = key.get_ref().as_ref();
            if keys.contains(&name) {
                known.insert(key, value);
            } else {
                r.error(key.span(), unknown_key(name, &format!("in {what}"), keys));
            }
        }
        r.deserialize(Spanned::new(self.span, DeValue::Table(known)))
    }

    /// Splits the table into the keys of `C` (common to every component of its kind) and those
    /// of `K` (of its type), deserializes both, and records an error for each key that is in
    /// neither. Both parts are attempted, so that all their errors are reported at once.
    ///
    /// The third value is whether every key was known: when one was not, it may have been meant
    /// as a key that now seems missing, so checks across keys are best left until it is fixed.
    pub fn split<C: DeserializeOwned, K: DeserializeOwned>(
        self,
        what: &str,
        r: &mut Resolver<'_>,
    ) -> (Result<C, Reported>, Result<K, Reported>, bool) {
        let common_keys = keys_of::<C>();
        let kind_keys = keys_of::<K>();
        let mut common = DeTable::new();
        let mut kind = DeTable::new();
        let mut clean = true;
        for (key, value) in self.table {
            let name = key.get_ref().as_ref();
            if common_keys.contains(&name) {
                common.insert(key, value);
            } else if kind_keys.contains(&name) {
                kind.insert(key, value);
            } else {
                let all: Vec<&str> = common_keys.iter().chain(kind_keys).copied().collect();
                r.error(key.span(), unknown_key(name, &format!("in {what}"), &all));
                clean = false;
            }
        }
        let c = r.deserialize(Spanned::new(self.span.clone(), DeValue::Table(common)));
        let k = r.deserialize(Spanned::new(self.span, DeValue::Table(kind)));
        (c, k, clean)
    }
}

/// The message for a key that is not allowed where it is (`place`: "in [[target]]", "at the top
/// level"): names the key, a likely intended key, and every allowed one.
pub(crate) fn unknown_key(key: &str, place: &str, expected: &[&str]) -> String {
    let hint = closest(key, expected)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    format!(
        "unknown key `{key}` {place}{hint}; expected one of {}",
        backticked(expected)
    )
}

/// `a`, `b`, `c`: for lists of keys and names in messages.
pub(crate) fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate nearest to `word` by edit distance, if it is near enough to be a likely typo.
fn closest<'k>(word: &str, candidates: &[&'k str]) -> Option<&'k str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting an exchange of two neighbouring characters as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The keys a `deny_unknown_fields` struct accepts, as its derived `Deserialize` declares them.
///
/// Asking serde keeps one list of keys (the struct's fields), instead of a hand-kept copy that
/// could drift from it.
pub(crate) fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    // The probe always fails: it only records the field list serde passes to it.
    let _ = T::deserialize(KeyProbe(&mut keys));
    keys
}

/// A deserializer that records the fields of the struct asked of it, then gives up.
struct KeyProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for KeyProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Glob patterns as [`crate::plan::Scope`] builds them; checked here so that a bad one is an
/// error at its position in the config, not a failure at run time.
pub(crate) fn check_globs(patterns: &[Spanned<String>], r: &mut Resolver<'_>) -> bool {
    let mut ok = true;
    let mut seen = BTreeSet::new();
    for p in patterns {
        if let Err(e) = globset::GlobBuilder::new(p.get_ref())
            .literal_separator(false)
            .build()
        {
            r.error(
                p.span(),
                format!("invalid glob `{}`: {}", p.get_ref(), e.kind()),
            );
            ok = false;
        } else if !seen.insert(p.get_ref().as_str()) {
            r.warn(p.span(), format!("glob `{}` is listed twice", p.get_ref()));
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_struct() {
        assert_eq!(keys_of::<SourceFile>(), ["type"]);
        assert_eq!(keys_of::<TomlSourceFile>(), ["path"]);
        let target = keys_of::<TargetFile>();
        assert_eq!(target[0], "name");
        assert!(target.contains(&"type") && target.contains(&"ca_file"));
    }

    #[test]
    fn ldap_hosts_and_ports() {
        assert_eq!(split_host_port("[::1]:389"), ("::1", Some("389")));
        assert_eq!(
            split_host_port("ldap.example.org"),
            ("ldap.example.org", None)
        );
        assert_eq!(split_host_port("ldap:636"), ("ldap", Some("636")));
        assert!(is_loopback("LocalHost") && is_loopback("127.0.0.2") && is_loopback("::1"));
        assert!(!is_loopback("ldap.example.org") && !is_loopback("10.0.0.1"));
        assert_eq!(keys_of::<LdapSourceFile>()[0], "url");
    }

    #[test]
    fn typos_find_the_intended_key() {
        let keys = ["url", "client_id", "client_secret", "scope"];
        assert_eq!(closest("clinet_id", &keys), Some("client_id"));
        assert_eq!(closest("urll", &keys), Some("url"));
        assert_eq!(closest("banana", &keys), None);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

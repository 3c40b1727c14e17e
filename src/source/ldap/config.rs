//! The LDAP keys of a `[[source]]` table (`type = "ldap"`).
//!
//! `LdapSourceFile` is the table as serde reads it; its doc comments are the user documentation
//! of each key. [`LdapSourceConfig`] is the checked result the source reads with: URLs known to be
//! `ldap://` or `ldaps://` servers, non-empty DNs, filters and attribute names, and the bind
//! password already read.
//!
//! ```toml
//! [[source]]
//! type = "ldap"
//! url = ["ldaps://ldap1.example.org", "ldaps://ldap2.example.org"]  # tried in order
//! bind_dn = "cn=roster,ou=services,dc=example,dc=org"
//! bind_password_file = "secrets/ldap"
//! base_dn = "ou=groups,dc=example,dc=org"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::check::{DEFAULT_TIMEOUT, ca_file, duration, is_loopback, split_host_port};
use crate::diag::toml::{Reported, Resolver};
use crate::model::Origin;
use crate::secret::{Secret, SecretKeys};

/// The search scope of the group search (the `scope` key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LdapScope {
    /// The whole subtree under `base_dn` (default).
    #[default]
    Sub,
    /// Only the entries directly under `base_dn`.
    One,
}

/// What the values of `member_attr` are (the `member_kind` key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    /// Distinguished names of users or groups (`member`, `uniqueMember`); default.
    #[default]
    Dn,
    /// User keys already (`memberUid` of posixGroup).
    Uid,
}

/// Which kind of directory the source reads (the `directory` key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Directory {
    /// Ask the server: its rootDSE says whether it is Active Directory (default).
    #[default]
    Auto,
    /// OpenLDAP or another directory that returns every value of an attribute at once.
    OpenLdap,
    /// Active Directory (or Samba AD): members are read in explicit ranges.
    Ad,
}

impl Directory {
    /// How the directory is named in messages and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Directory::Auto => "auto",
            Directory::OpenLdap => "openldap",
            Directory::Ad => "ad",
        }
    }
}

/// What a mapped LDAP attribute's values are (see [`MappedAttribute`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappedKind {
    /// One text value (VinylDNS `email`, a Contensis `custom` field): the first value is used.
    Text,
    /// DNs of users, mapped to user keys as members are (VinylDNS `admins`).
    UserDns,
}

/// One entry of the `attributes` key: an LDAP attribute read into a per-target attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedAttribute {
    /// The target type the attribute belongs to (`vinyldns`).
    pub target_type: String,
    /// The attribute's path under the target type (`["email"]`, `["custom", "team"]`).
    pub path: Vec<String>,
    /// The LDAP attribute read on each group entry.
    pub ldap_attr: String,
    /// How its values are read.
    pub kind: MappedKind,
}

/// A `[[source]]` of `type = "ldap"`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapSourceConfig {
    /// Server URLs (`ldap://` or `ldaps://`), tried in order until one connects.
    pub urls: Vec<String>,
    /// StartTLS on `ldap://` URLs.
    pub starttls: bool,
    /// A PEM file of CA certificates to trust in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// The DN to bind as; anonymous when `None`.
    pub bind_dn: Option<String>,
    /// The bind password.
    pub bind_password: Option<Secret>,
    /// Where groups are searched.
    pub base_dn: String,
    /// How deep groups are searched.
    pub scope: LdapScope,
    /// Which kind of directory it is; `Auto` asks the server's rootDSE.
    pub directory: Directory,
    /// The filter that selects groups; `None`: the directory's default
    /// (`(objectClass=groupOfNames)`, on Active Directory `(objectClass=group)`).
    pub group_filter: Option<String>,
    /// The attribute holding a group's name.
    pub name_attr: String,
    /// The attribute holding a group's description.
    pub description_attr: String,
    /// The attribute holding a group's members.
    pub member_attr: String,
    /// Whether member values are DNs or user keys.
    pub member_kind: MemberKind,
    /// Where users are searched (to map member DNs to user keys); `base_dn` when `None`.
    pub user_base_dn: Option<String>,
    /// The filter that selects users; `None`: the directory's default
    /// (`(objectClass=inetOrgPerson)`, on Active Directory
    /// `(&(objectCategory=person)(objectClass=user))`).
    pub user_filter: Option<String>,
    /// The user attribute whose value is the user key handed to targets; `None`: the
    /// directory's default (`uid`, on Active Directory `sAMAccountName`).
    pub user_key_attr: Option<String>,
    /// Values per ranged read of a multi-valued attribute on Active Directory.
    pub range_size: u32,
    /// Whether users whose `userAccountControl` has ACCOUNTDISABLE are left out (AD only).
    pub exclude_disabled: bool,
    /// LDAP attributes read into per-target attributes, sorted by target type and path.
    pub attributes: Vec<MappedAttribute>,
    /// Whether a member DN that is a group in the result becomes a child group.
    pub nested: bool,
    /// Entries per page of the Simple Paged Results control.
    pub page_size: i32,
    /// The time limit of connecting and of each operation.
    pub timeout: Duration,
    /// Where the config defines this source, for messages.
    pub origin: Origin,
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
    /// `auto` (default): the server's rootDSE says whether it is Active Directory; `openldap`;
    /// or `ad`. On Active Directory members are read in ranges of `range_size` values and the
    /// defaults of `group_filter`, `user_filter` and `user_key_attr` are AD's.
    #[serde(default)]
    pub directory: Directory,
    /// Values per ranged read of a group's members on Active Directory, 1 to 1,000,000.
    /// Default 1000 (AD answers at most its `MaxValRange`, 1,500 by default, at once).
    pub range_size: Option<Spanned<i64>>,
    /// Leave out users whose `userAccountControl` has the ACCOUNTDISABLE bit (2): they are not
    /// members. Default `false`. Active Directory only.
    pub exclude_disabled: Option<Spanned<bool>>,
    /// Per-target attributes read from each group entry: `{ "vinyldns.email" = "mail",
    /// "vinyldns.admins" = "owner" }`. Keys: `vinyldns.email` (text), `vinyldns.admins` (DNs
    /// of users, mapped to user keys as members are), `contensis.custom.<field>` (text).
    pub attributes: Option<Spanned<std::collections::BTreeMap<Spanned<String>, Spanned<String>>>>,
    /// The filter that selects the groups. Default `(objectClass=groupOfNames)`; on Active
    /// Directory `(objectClass=group)`.
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
    /// The filter that selects users. Default `(objectClass=inetOrgPerson)`; on Active
    /// Directory `(&(objectCategory=person)(objectClass=user))`.
    pub user_filter: Option<Spanned<String>>,
    /// The user attribute whose value is the user key handed to targets. Default `uid`; on
    /// Active Directory `sAMAccountName` (also `userPrincipalName` or `mail`).
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
/// The default of [`LdapSourceFile::group_filter`] on Active Directory.
pub(crate) const AD_GROUP_FILTER: &str = "(objectClass=group)";
/// The default of [`LdapSourceFile::user_filter`] on Active Directory.
pub(crate) const AD_USER_FILTER: &str = "(&(objectCategory=person)(objectClass=user))";
/// The default of [`LdapSourceFile::user_key_attr`] on Active Directory.
pub(crate) const AD_USER_KEY_ATTR: &str = "sAMAccountName";
/// Active Directory's binary attributes that people reach for as identifiers: never text, so
/// never a user key.
const BINARY_ATTRS: [&str; 2] = ["objectGUID", "objectSid"];
/// The default of [`LdapSourceFile::range_size`].
pub(crate) const DEFAULT_RANGE_SIZE: u32 = 1000;
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
        let group_filter = self
            .group_filter
            .map(|f| ldap_filter(f, "group_filter", DEFAULT_GROUP_FILTER, r))
            .transpose();
        let user_filter = self
            .user_filter
            .map(|f| ldap_filter(f, "user_filter", DEFAULT_USER_FILTER, r))
            .transpose();
        let name_attr = attribute(self.name_attr, "name_attr", DEFAULT_NAME_ATTR, r);
        let description_attr = attribute(
            self.description_attr,
            "description_attr",
            DEFAULT_DESCRIPTION_ATTR,
            r,
        );
        let member_attr = attribute(self.member_attr, "member_attr", DEFAULT_MEMBER_ATTR, r);
        let user_key_attr = self
            .user_key_attr
            .map(|a| {
                if BINARY_ATTRS
                    .iter()
                    .any(|b| a.get_ref().eq_ignore_ascii_case(b))
                {
                    return Err(r.error(
                        a.span(),
                        format!(
                            "`{}` is binary, so it cannot be a user key; use a text attribute \
                             such as sAMAccountName, userPrincipalName, mail or uid",
                            a.get_ref()
                        ),
                    ));
                }
                attribute(Some(a), "user_key_attr", DEFAULT_USER_KEY_ATTR, r)
            })
            .transpose();
        let range_size = match self.range_size {
            None => Ok(DEFAULT_RANGE_SIZE),
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(size) if (1..=1_000_000).contains(&size) => Ok(size),
                Ok(_) | Err(_) => Err(r.error(
                    n.span(),
                    "`range_size` must be between 1 and 1000000 (values per ranged read)",
                )),
            },
        };
        let exclude_disabled = match &self.exclude_disabled {
            Some(x) if *x.get_ref() && self.directory == Directory::OpenLdap => Err(r.error(
                x.span(),
                "`exclude_disabled` reads Active Directory's userAccountControl, and this source \
                 is `directory = \"openldap\"`: leave it out, or filter disabled users with \
                 `user_filter`",
            )),
            Some(x) => Ok(*x.get_ref()),
            None => Ok(false),
        };
        let attributes = self
            .attributes
            .map(|a| mapped_attributes(a.into_inner(), r))
            .transpose()
            .map(Option::unwrap_or_default);
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
            directory: self.directory,
            group_filter: group_filter?,
            name_attr: name_attr?,
            description_attr: description_attr?,
            member_attr: member_attr?,
            member_kind: self.member_kind,
            user_base_dn: user_base_dn?.map(Spanned::into_inner),
            user_filter: user_filter?,
            user_key_attr: user_key_attr?,
            range_size: range_size?,
            exclude_disabled: exclude_disabled?,
            attributes: attributes?,
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

/// An LDAP search filter: not empty, in parentheses. `default` is named in the messages.
fn ldap_filter(
    filter: Spanned<String>,
    key: &str,
    default: &str,
    r: &mut Resolver<'_>,
) -> Result<String, Reported> {
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

/// The per-target attributes an LDAP source can fill, as `key = kind`; `contensis.custom.*`
/// stands for any field name.
const MAPPABLE: [(&str, MappedKind); 3] = [
    ("contensis.custom.*", MappedKind::Text),
    ("vinyldns.admins", MappedKind::UserDns),
    ("vinyldns.email", MappedKind::Text),
];

/// Checks the `attributes` table: every key one roster can fill, every value an attribute name.
fn mapped_attributes(
    table: std::collections::BTreeMap<Spanned<String>, Spanned<String>>,
    r: &mut Resolver<'_>,
) -> Result<Vec<MappedAttribute>, Reported> {
    let mut out = Vec::new();
    let mut failed = false;
    for (key, value) in table {
        let path: Vec<&str> = key.get_ref().split('.').collect();
        let kind = MAPPABLE.iter().find_map(|(pattern, kind)| {
            let pattern: Vec<&str> = pattern.split('.').collect();
            (pattern.len() == path.len()
                && pattern
                    .iter()
                    .zip(&path)
                    .all(|(p, k)| *p == *k || (*p == "*" && !k.is_empty())))
            .then_some(*kind)
        });
        let Some(kind) = kind else {
            let known: Vec<&str> = MAPPABLE.iter().map(|(k, _)| *k).collect();
            r.error(
                key.span(),
                format!(
                    "`{}` is not a per-target attribute an LDAP source can fill; known: {}",
                    key.get_ref(),
                    known.join(", ")
                ),
            );
            failed = true;
            continue;
        };
        if value.get_ref().is_empty() {
            r.error(
                value.span(),
                format!("`{}` maps to an empty attribute name", key.get_ref()),
            );
            failed = true;
            continue;
        }
        let key_name = format!("attributes.\"{}\"", key.get_ref());
        match attribute(Some(value), &key_name, "", r) {
            Ok(ldap_attr) => out.push(MappedAttribute {
                target_type: path[0].to_owned(),
                path: path[1..].iter().map(|p| (*p).to_owned()).collect(),
                ldap_attr,
                kind,
            }),
            Err(_) => failed = true,
        }
    }
    if failed { Err(Reported) } else { Ok(out) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::toml::keys_of;

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
}

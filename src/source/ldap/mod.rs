//! The LDAP source: desired groups read from a directory (OpenLDAP or Active Directory).
//!
//! A partial read is an error, never a smaller desired state: a search that ends with any result
//! other than success (a size limit, a timeout, a broken connection) fails the whole load, and
//! so does a ranged attribute whose ranges stop short ([`range`]).
//!
//! A load is: connect and bind (`connect`); ask the rootDSE whether the server is Active
//! Directory, unless `directory` says (`detect`); one paged search of the groups ([`search`]),
//! each group's ranged members continued to the end; member DNs turned into user keys or child
//! groups ([`dn`] spares a large load the DN parser), through one paged search of the users
//! when the DNs alone cannot say; and a [`LdapRead`] that tells the plan's reader what was read.
//!
//! The source's keys in `roster.toml`, their defaults and their checks are in [`config`].

pub mod config;
mod dn;
mod range;
mod search;

pub use config::{Directory, LdapScope, LdapSourceConfig, MappedAttribute, MappedKind, MemberKind};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use tracing::{debug, warn};

use crate::diag::Diagnostic;
use crate::model::{Desired, Group, GroupName, Origin, UserKey};
use crate::source::{ChildRef, Loaded, SourceError};
use dn::{
    first_rdn, is_plain, is_under, normalize_dn, normalize_into, plain_first_rdn, quick_user_key,
};
use search::At;

/// The OID in a rootDSE's `supportedCapabilities` that says the server is Active Directory
/// (`LDAP_CAP_ACTIVE_DIRECTORY_OID`; Samba AD sends it too).
const AD_CAPABILITY: &str = "1.2.840.113556.1.4.800";

/// The `userAccountControl` bit of a disabled account (ACCOUNTDISABLE).
const ACCOUNT_DISABLE: u32 = 2;

/// What one LDAP source read: enough for a person reviewing a plan to see that the read was
/// whole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LdapRead {
    /// The server that answered.
    pub server: String,
    /// The base the groups were searched under.
    pub base: String,
    /// The kind of directory, as configured or as its rootDSE said (`openldap` or `ad`).
    pub directory: String,
    /// Group entries read.
    pub groups: usize,
    /// User entries read (0 when every member DN named its user key).
    pub users: usize,
    /// Pages read, over all paged searches.
    pub pages: usize,
    /// Attributes whose values came in ranges and were continued to their end.
    pub ranged: usize,
    /// The extra reads that continuation took.
    pub range_reads: usize,
    /// Members left out because their account is disabled (`exclude_disabled`).
    pub disabled: usize,
}

/// LDAP result code 49: the bind DN or password is wrong (failing over would not help).
const INVALID_CREDENTIALS: u32 = 49;

impl LdapSourceConfig {
    /// An error of this source: which server, doing what, what went wrong.
    fn error(&self, server: &str, doing: &str, message: impl Into<String>) -> SourceError {
        SourceError::Ldap {
            server: server.to_owned(),
            doing: doing.to_owned(),
            message: message.into(),
        }
    }
}

/// Reads the groups (and, for DN members, the users) and returns them with where each child
/// reference came from; any short or broken read is an error.
///
/// The read runs in a task of its own: the LDAP client's reply parsers panic on a malformed
/// reply, and a server's bad answer must fail this load, not the process.
pub(crate) async fn read(cfg: &LdapSourceConfig) -> Result<Loaded, SourceError> {
    let owned = cfg.clone();
    let task = tokio::spawn(async move {
        let (mut ldap, server) = connect(&owned).await?;
        let result = read_on(&owned, &mut ldap, &server).await;
        let _ = ldap.unbind().await;
        result
    });
    match task.await {
        Ok(result) => result,
        Err(e) => Err(cfg.error(
            &cfg.urls.join(", "),
            "reading the directory",
            format!("a reply could not be parsed ({e}); the read is incomplete"),
        )),
    }
}

/// Connects to the first URL that answers and binds; a wrong password fails at once.
async fn connect(cfg: &LdapSourceConfig) -> Result<(Ldap, String), SourceError> {
    let tls = Arc::new(tls_config(cfg)?);
    let mut failures = Vec::new();
    for url in &cfg.urls {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(cfg.timeout)
            .set_starttls(cfg.starttls)
            .set_config(tls.clone());
        let (conn, mut ldap) = match LdapConnAsync::with_settings(settings, url).await {
            Ok(c) => c,
            Err(e) => {
                warn!(server = %url, error = %e, "cannot connect; trying the next server");
                failures.push(format!("{url}: {}", describe(&e)));
                continue;
            }
        };
        ldap3::drive!(conn);
        let bound = match (&cfg.bind_dn, &cfg.bind_password) {
            (Some(dn), Some(pw)) => {
                ldap.with_timeout(cfg.timeout)
                    .simple_bind(dn, pw.expose())
                    .await
            }
            _ => Ok(ldap3::LdapResult {
                rc: 0,
                matched: String::new(),
                text: String::new(),
                refs: Vec::new(),
                ctrls: Vec::new(),
            }),
        };
        match bound {
            Ok(r) if r.rc == 0 => {
                debug!(server = %url, "bound");
                return Ok((ldap, url.clone()));
            }
            Ok(r) if r.rc == INVALID_CREDENTIALS => {
                return Err(cfg.error(
                    url,
                    &format!(
                        "binding as {}",
                        cfg.bind_dn.as_deref().unwrap_or("anonymous")
                    ),
                    format!("invalid credentials (result code 49){}", text_of(&r.text)),
                ));
            }
            Ok(r) => failures.push(format!(
                "{url}: bind failed with result code {}{}",
                r.rc,
                text_of(&r.text)
            )),
            Err(e) => failures.push(format!("{url}: bind failed: {}", describe(&e))),
        }
    }
    Err(cfg.error(
        &cfg.urls.join(", "),
        "connecting",
        format!("no server could be used: {}", failures.join("; ")),
    ))
}

fn text_of(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// Every cause of an LDAP error on one line (a TLS failure is a cause of a connection error).
fn describe(e: &LdapError) -> String {
    crate::diag::error_chain(e)
}

/// rustls with the system roots plus `ca_file`; certificates are always verified.
fn tls_config(cfg: &LdapSourceConfig) -> Result<rustls::ClientConfig, SourceError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = &cfg.ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| {
                cfg.error(
                    &cfg.urls.join(", "),
                    &format!("reading ca_file {}", path.display()),
                    e.to_string(),
                )
            })?;
        if certs.is_empty() {
            return Err(cfg.error(
                &cfg.urls.join(", "),
                &format!("reading ca_file {}", path.display()),
                "no PEM certificate in it",
            ));
        }
        for c in certs {
            roots.add(c).map_err(|e| {
                cfg.error(
                    &cfg.urls.join(", "),
                    &format!("reading ca_file {}", path.display()),
                    e.to_string(),
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cfg.error(&cfg.urls.join(", "), "setting up TLS", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The values of an attribute, whatever the case the server spells its name in.
fn values<'a>(entry: &'a SearchEntry, attr: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map_or(&[], |(_, v)| v.as_slice())
}

/// Asks the rootDSE whether the server is Active Directory, unless the config says which it is.
async fn detect(at: &At<'_>, ldap: &mut Ldap) -> Result<Directory, SourceError> {
    if at.cfg.directory != Directory::Auto {
        return Ok(at.cfg.directory);
    }
    let attrs = ["supportedCapabilities".to_owned()];
    let doing =
        "reading the rootDSE to tell Active Directory from OpenLDAP (set `directory` to skip this)";
    let root = search::entry(at, ldap, "", &attrs, doing).await?;
    let ad = root.as_ref().is_some_and(|e| {
        values(e, "supportedCapabilities")
            .iter()
            .any(|v| v == AD_CAPABILITY)
    });
    Ok(if ad {
        Directory::Ad
    } else {
        Directory::OpenLdap
    })
}

/// A group entry as read, its members complete.
struct GroupEntry {
    /// The DN as the server wrote it.
    dn: String,
    /// The DN normalised.
    norm: String,
    /// The group's name.
    name: GroupName,
    /// Its description.
    description: Option<String>,
    /// Every value of the member attribute.
    members: Vec<String>,
    /// The values of each of the config's `attributes`, in its order.
    mapped: Vec<Vec<String>>,
}

/// Where a member DN that needs the user search belongs once it is resolved.
#[derive(Clone, Copy)]
enum Dest {
    /// A member of group `i`.
    Member(usize),
    /// A value of group `i`'s mapped attribute `k` (a DN-valued one, such as VinylDNS admins).
    Mapped(usize, usize),
}

/// What a DN value names, as far as the DN and the groups read can tell.
enum Named {
    /// A user, whose key the DN itself gives.
    User(String),
    /// One of the groups read.
    Group(GroupName),
    /// Only the user search can tell.
    Lookup,
    /// Not a DN.
    Invalid,
}

/// Tells users from groups among DN values without the user search where the DNs allow it.
struct Classifier<'a> {
    by_dn: HashMap<String, GroupName>,
    /// The attribute types that start a group's DN (`cn`): a member DN starting with another
    /// type (`uid`) cannot be a group, so it needs neither normalising nor a lookup.
    group_rdn_attrs: Vec<String>,
    user_base: String,
    user_key_attr: &'a str,
    /// Whether every user must be looked up (to read its `userAccountControl`).
    lookup_all: bool,
}

impl Classifier<'_> {
    fn classify(&self, v: &str, norm: &mut String) -> Named {
        if !self.lookup_all {
            if let Some(key) = quick_user_key(
                v,
                self.user_key_attr,
                &self.user_base,
                &self.group_rdn_attrs,
            ) {
                return Named::User(key.to_owned());
            }
        }
        if !normalize_into(v, norm) {
            return Named::Invalid;
        }
        let maybe_group = norm
            .split_once('=')
            .is_some_and(|(a, _)| self.group_rdn_attrs.iter().any(|g| g == a));
        if let Some(child) = maybe_group.then(|| self.by_dn.get(norm.as_str())).flatten() {
            return Named::Group(child.clone());
        }
        if self.lookup_all {
            return Named::Lookup;
        }
        let key = if is_plain(v) {
            plain_first_rdn(v)
                .filter(|(attr, _)| attr.eq_ignore_ascii_case(self.user_key_attr))
                .map(|(_, value)| value.to_owned())
        } else {
            first_rdn(v)
                .filter(|(attr, _)| attr.eq_ignore_ascii_case(self.user_key_attr))
                .map(|(_, value)| value)
        };
        match key {
            Some(key) if is_under(norm, &self.user_base) => Named::User(key),
            _ => Named::Lookup,
        }
    }
}

/// Reads the rest of a ranged attribute, from after `first` to the range that ends in `*`,
/// appending to `values`; returns how many reads it took. Any stop short of the end is an
/// error naming the group and the last range read.
async fn continue_ranges(
    at: &At<'_>,
    ldap: &mut Ldap,
    dn: &str,
    attr: &str,
    size: Option<u32>,
    values: &mut Vec<String>,
    first: range::Range,
) -> Result<usize, SourceError> {
    let doing = format!("reading the members of {dn} in ranges");
    let mut last = first;
    let mut reads = 0;
    while let range::Range::Part { hi, .. } = last {
        let next = hi + 1;
        let ask = range::ask(attr, next, size);
        let stopped = |why: String| {
            let why = why
                .strip_suffix(search::INCOMPLETE)
                .map_or(why.as_str(), |w| w.trim_end_matches("; "));
            at.error(
                &doing,
                format!(
                    "{why}; last range read: {attr};range={last}; {}",
                    search::INCOMPLETE
                ),
            )
        };
        let entry = match search::entry(at, ldap, dn, std::slice::from_ref(&ask), &doing).await {
            Ok(e) => e,
            Err(SourceError::Ldap { message, .. }) => return Err(stopped(message)),
            Err(e) => return Err(e),
        };
        let Some(mut entry) = entry else {
            return Err(stopped(format!(
                "the group was gone when asked for `{ask}`"
            )));
        };
        let (more, range) = range::take(&mut entry, attr).map_err(stopped)?;
        let Some(range) = range else {
            return Err(stopped(if more.is_empty() {
                format!("the server returned no values for `{ask}`")
            } else {
                format!("the server answered `{ask}` with values that are not ranged")
            }));
        };
        range::check_chunk(range, next, more.len()).map_err(stopped)?;
        values.extend(more);
        last = range;
        reads += 1;
    }
    Ok(reads)
}

async fn read_on(
    cfg: &LdapSourceConfig,
    ldap: &mut Ldap,
    server: &str,
) -> Result<Loaded, SourceError> {
    let at = At { cfg, server };
    let directory = detect(&at, ldap).await?;
    let ad = directory == Directory::Ad;
    if cfg.exclude_disabled && !ad {
        return Err(at.error(
            "checking the source's settings",
            "`exclude_disabled` reads Active Directory's userAccountControl, and the server's \
             rootDSE does not say it is Active Directory: leave it out, or set \
             `directory = \"ad\"` if it is",
        ));
    }
    let group_filter = cfg.group_filter.as_deref().unwrap_or(if ad {
        config::AD_GROUP_FILTER
    } else {
        config::DEFAULT_GROUP_FILTER
    });
    let user_filter = cfg.user_filter.as_deref().unwrap_or(if ad {
        config::AD_USER_FILTER
    } else {
        config::DEFAULT_USER_FILTER
    });
    let user_key_attr = cfg.user_key_attr.as_deref().unwrap_or(if ad {
        config::AD_USER_KEY_ATTR
    } else {
        config::DEFAULT_USER_KEY_ATTR
    });
    let mut read = LdapRead {
        server: server.to_owned(),
        base: cfg.base_dn.clone(),
        directory: directory.as_str().to_owned(),
        ..LdapRead::default()
    };
    let scope = match cfg.scope {
        LdapScope::Sub => Scope::Subtree,
        LdapScope::One => Scope::OneLevel,
    };
    // On Active Directory ask for ranges from the start: a plain request for a large group gets
    // the first 1,500 values only, and an explicit size keeps each answer within AD's limits.
    let range_size = ad.then_some(cfg.range_size);
    let member_request = match range_size {
        Some(size) => range::ask(&cfg.member_attr, 0, Some(size)),
        None => cfg.member_attr.clone(),
    };
    let mut attrs = vec![
        cfg.name_attr.clone(),
        cfg.description_attr.clone(),
        member_request,
    ];
    for m in &cfg.attributes {
        if !attrs.iter().any(|a| a.eq_ignore_ascii_case(&m.ldap_attr)) {
            attrs.push(m.ldap_attr.clone());
        }
    }
    let found = search::paged(&at, ldap, &cfg.base_dn, scope, group_filter, &attrs).await?;
    read.pages += found.pages;
    read.groups = found.entries.len();

    let mut loaded = Loaded::default();
    let warn_at = |dn: &str, message: String| {
        warn!(dn, "{message}");
        Diagnostic::at_origin(&Origin::Ldap { dn: dn.to_owned() }, message).warning_level()
    };

    let mut groups: Vec<GroupEntry> = Vec::with_capacity(found.entries.len());
    for mut e in found.entries {
        let doing = format!("reading the members of {}", e.dn);
        let (mut members, range) =
            range::take(&mut e, &cfg.member_attr).map_err(|m| at.error(&doing, m))?;
        if let Some(first) = range {
            range::check_chunk(first, 0, members.len()).map_err(|m| at.error(&doing, m))?;
            if matches!(first, range::Range::Part { .. }) {
                read.range_reads += continue_ranges(
                    &at,
                    ldap,
                    &e.dn,
                    &cfg.member_attr,
                    range_size,
                    &mut members,
                    first,
                )
                .await?;
                read.ranged += 1;
            }
        }
        let Some(name) = values(&e, &cfg.name_attr).first() else {
            loaded.diagnostics.push(warn_at(
                &e.dn,
                format!("no `{}` value; the entry is skipped", cfg.name_attr),
            ));
            continue;
        };
        let name = GroupName(name.clone());
        let Some(norm) = normalize_dn(&e.dn) else {
            loaded.diagnostics.push(warn_at(
                &e.dn,
                "the entry's DN cannot be parsed; skipped".to_owned(),
            ));
            continue;
        };
        let mut mapped = Vec::with_capacity(cfg.attributes.len());
        for m in &cfg.attributes {
            if e.bin_attrs
                .keys()
                .any(|k| k.eq_ignore_ascii_case(&m.ldap_attr))
            {
                loaded.diagnostics.push(warn_at(
                    &e.dn,
                    format!(
                        "`{}` of `{name}` is not text; `{}.{}` is left as the target has it",
                        m.ldap_attr,
                        m.target_type,
                        m.path.join(".")
                    ),
                ));
                mapped.push(Vec::new());
                continue;
            }
            mapped.push(values(&e, &m.ldap_attr).to_vec());
        }
        groups.push(GroupEntry {
            description: values(&e, &cfg.description_attr).first().cloned(),
            dn: e.dn,
            norm,
            name,
            members,
            mapped,
        });
    }

    let mut group_rdn_attrs: Vec<String> = groups
        .iter()
        .filter_map(|g| Some(g.norm.split_once('=')?.0.to_owned()))
        .collect();
    group_rdn_attrs.sort();
    group_rdn_attrs.dedup();
    let classifier = Classifier {
        by_dn: groups
            .iter()
            .map(|g| (g.norm.clone(), g.name.clone()))
            .collect(),
        group_rdn_attrs,
        user_base: normalize_dn(cfg.user_base_dn.as_deref().unwrap_or(&cfg.base_dn))
            .unwrap_or_default(),
        user_key_attr,
        lookup_all: cfg.exclude_disabled,
    };

    // Member DNs (and DN-valued mapped attributes) that need the user search.
    let mut pending: Vec<(Dest, &str)> = Vec::new();
    let mut members: Vec<BTreeSet<UserKey>> = vec![BTreeSet::new(); groups.len()];
    let mut children: Vec<BTreeSet<GroupName>> = vec![BTreeSet::new(); groups.len()];
    let mut mapped_keys: Vec<Vec<BTreeSet<String>>> =
        vec![vec![BTreeSet::new(); cfg.attributes.len()]; groups.len()];
    // One buffer for every normalised member DN: a large directory has a million of them.
    let mut norm = String::new();
    for (i, g) in groups.iter().enumerate() {
        for v in &g.members {
            // An empty value is how schemas that require a member spell an empty group.
            if v.trim().is_empty() {
                continue;
            }
            if cfg.member_kind == MemberKind::Uid {
                members[i].insert(UserKey(v.clone()));
                continue;
            }
            match classifier.classify(v, &mut norm) {
                Named::User(key) => {
                    members[i].insert(UserKey(key));
                }
                Named::Group(child) if cfg.nested => {
                    children[i].insert(child);
                }
                Named::Group(_) => loaded.diagnostics.push(warn_at(
                    &g.dn,
                    format!(
                        "member `{v}` of `{}` is a group and nested = false; skipped",
                        g.name
                    ),
                )),
                Named::Lookup => pending.push((Dest::Member(i), v.as_str())),
                Named::Invalid => loaded.diagnostics.push(warn_at(
                    &g.dn,
                    format!("member `{v}` is not a valid DN; skipped"),
                )),
            }
        }
        for (k, m) in cfg.attributes.iter().enumerate() {
            if m.kind != MappedKind::UserDns {
                continue;
            }
            for v in g.mapped[k].iter().filter(|v| !v.trim().is_empty()) {
                match classifier.classify(v, &mut norm) {
                    Named::User(key) => {
                        mapped_keys[i][k].insert(key);
                    }
                    Named::Lookup => pending.push((Dest::Mapped(i, k), v.as_str())),
                    Named::Group(_) | Named::Invalid => loaded.diagnostics.push(warn_at(
                        &g.dn,
                        format!(
                            "`{}` value `{v}` of `{}` is not a user's DN; skipped",
                            m.ldap_attr, g.name
                        ),
                    )),
                }
            }
        }
    }

    if !pending.is_empty() {
        let mut user_attrs = vec![user_key_attr.to_owned()];
        if cfg.exclude_disabled {
            user_attrs.push("userAccountControl".to_owned());
        }
        let users = search::paged(
            &at,
            ldap,
            cfg.user_base_dn.as_deref().unwrap_or(&cfg.base_dn),
            Scope::Subtree,
            user_filter,
            &user_attrs,
        )
        .await?;
        read.pages += users.pages;
        read.users = users.entries.len();
        // A key that is not text cannot name a user to a target; reading it as "no key" would
        // empty every group.
        if let Some(u) = users.entries.iter().find(|u| {
            u.bin_attrs
                .keys()
                .any(|k| k.eq_ignore_ascii_case(user_key_attr))
        }) {
            return Err(at.error(
                "mapping member DNs to user keys",
                format!(
                    "`{user_key_attr}` of {} is not text, so it cannot be a user key; set \
                     `user_key_attr` to a text attribute such as sAMAccountName, \
                     userPrincipalName or mail",
                    u.dn
                ),
            ));
        }
        // Each user's key (if it has one) and whether its account is disabled.
        let known: HashMap<String, (Option<&String>, bool)> = users
            .entries
            .iter()
            .filter_map(|u| {
                let disabled = cfg.exclude_disabled
                    && values(u, "userAccountControl")
                        .first()
                        .and_then(|v| v.trim().parse::<i64>().ok())
                        .is_some_and(|flags| flags & i64::from(ACCOUNT_DISABLE) != 0);
                Some((
                    normalize_dn(&u.dn)?,
                    (values(u, user_key_attr).first(), disabled),
                ))
            })
            .collect();
        for (dest, written) in pending {
            let i = match dest {
                Dest::Member(i) | Dest::Mapped(i, _) => i,
            };
            let found = normalize_into(written, &mut norm)
                .then(|| known.get(norm.as_str()))
                .flatten();
            match found {
                Some((_, true)) => {
                    debug!(member = written, group = %groups[i].name, "disabled account left out");
                    read.disabled += 1;
                }
                Some((Some(key), false)) => match dest {
                    Dest::Member(i) => {
                        members[i].insert(UserKey((*key).clone()));
                    }
                    Dest::Mapped(i, k) => {
                        mapped_keys[i][k].insert((*key).clone());
                    }
                },
                Some((None, false)) => loaded.diagnostics.push(warn_at(
                    &groups[i].dn,
                    format!(
                        "member `{written}` of `{}` has no `{user_key_attr}`; skipped",
                        groups[i].name
                    ),
                )),
                None => loaded.diagnostics.push(warn_at(
                    &groups[i].dn,
                    format!(
                        "member `{written}` of `{}` is neither a user nor a group in the result; skipped",
                        groups[i].name
                    ),
                )),
            }
        }
    }

    let mut desired = Desired::default();
    for (i, g) in groups.iter().enumerate() {
        let origin = Origin::Ldap { dn: g.dn.clone() };
        if let Some(first) = desired.origins.get(&g.name) {
            loaded.diagnostics.push(Diagnostic::at_origin(
                &origin,
                format!("duplicate group `{}`; first defined at {first}", g.name),
            ));
            continue;
        }
        let mut group = Group::named(g.name.clone());
        group.description = g.description.clone();
        group.members = std::mem::take(&mut members[i]);
        group.children = std::mem::take(&mut children[i]);
        group.extras = extras(cfg, &g.mapped, &mut mapped_keys[i]);
        for c in &group.children {
            loaded.refs.push(ChildRef {
                parent: g.name.clone(),
                child: c.clone(),
                at: origin.clone(),
            });
        }
        desired.origins.insert(g.name.clone(), origin);
        desired.groups.insert(g.name.clone(), group);
    }
    loaded.desired = desired;
    loaded.reads.push(crate::source::SourceRead::Ldap(read));
    Ok(loaded)
}

/// A group's per-target attributes from its mapped LDAP attributes: text attributes take their
/// first value, DN-valued ones the sorted user keys they resolved to. An attribute the entry
/// does not have is left out, so the target keeps what it has.
fn extras(
    cfg: &LdapSourceConfig,
    mapped: &[Vec<String>],
    keys: &mut [BTreeSet<String>],
) -> BTreeMap<String, crate::model::Attributes> {
    let mut out: BTreeMap<String, crate::model::Attributes> = BTreeMap::new();
    for (k, m) in cfg.attributes.iter().enumerate() {
        let value = match m.kind {
            MappedKind::Text => match mapped[k].first() {
                Some(v) => serde_json::Value::String(v.clone()),
                None => continue,
            },
            // None resolved (each already warned about): leave the target's as they are
            // rather than replace them with none.
            MappedKind::UserDns if keys[k].is_empty() => continue,
            MappedKind::UserDns => std::mem::take(&mut keys[k])
                .into_iter()
                .map(serde_json::Value::String)
                .collect(),
        };
        let attrs = out.entry(m.target_type.clone()).or_default();
        match m.path.as_slice() {
            [key] => {
                attrs.insert(key.clone(), value);
            }
            [outer, inner] => {
                let obj = attrs
                    .entry(outer.clone())
                    .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
                if let serde_json::Value::Object(map) = obj {
                    map.insert(inner.clone(), value);
                }
            }
            // The config accepts no other shape.
            _ => {}
        }
    }
    out
}

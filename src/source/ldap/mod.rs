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
mod members;
mod range;
mod search;
mod users;
pub mod watch;

pub use config::{Directory, LdapScope, LdapSourceConfig, MappedAttribute, MappedKind, MemberKind};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use tracing::{debug, warn};

use crate::diag::Diagnostic;
use crate::model::{Desired, Group, Origin};
use crate::source::{ChildRef, Loaded, SourceError};
use dn::normalize_dn;
use members::Groups;
use search::{At, Paged, Query};
use users::UserSearch;

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
    /// The directory's revision when the read ended, where the server lets it be read: the
    /// `contextCSN` of the naming context holding the base (OpenLDAP), else the rootDSE's
    /// `highestCommittedUSN` (Active Directory). The audit journal records it; the plan does
    /// not show it.
    #[serde(skip)]
    pub context_csn: Option<String>,
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
        let (mut ldap, server, tls) = connect(&owned).await?;
        let result = read_on(&owned, &mut ldap, &server, &tls).await;
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

/// The TLS settings of every connection of one read; `None` when no URL needs TLS (loading the
/// system's roots takes longer than a small directory's whole read).
type Tls = Option<Arc<rustls::ClientConfig>>;

/// Whether any connection of the source will speak TLS (or a CA file is to be checked).
fn needs_tls(cfg: &LdapSourceConfig) -> bool {
    cfg.starttls
        || cfg.ca_file.is_some()
        || cfg.urls.iter().any(|u| {
            u.get(..8)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("ldaps://"))
        })
}

/// Connects to the first URL that answers and binds; a wrong password fails at once.
async fn connect(cfg: &LdapSourceConfig) -> Result<(Ldap, String, Tls), SourceError> {
    let tls = if needs_tls(cfg) {
        Some(Arc::new(tls_config(cfg)?))
    } else {
        None
    };
    let mut failures = Vec::new();
    for url in &cfg.urls {
        match connect_to(cfg, &tls, url).await {
            Ok(ldap) => return Ok((ldap, url.clone(), tls)),
            Err(Unusable::Unreachable(e)) => {
                warn!(server = %url, error = %e, "cannot connect; trying the next server");
                failures.push(format!("{url}: {}", describe(&e)));
            }
            Err(Unusable::Refused(why)) => failures.push(why),
            Err(Unusable::Fatal(e)) => return Err(e),
        }
    }
    Err(cfg.error(
        &cfg.urls.join(", "),
        "connecting",
        format!("no server could be used: {}", failures.join("; ")),
    ))
}

/// Why a server could not be used.
enum Unusable {
    /// No connection: the next server may answer.
    Unreachable(LdapError),
    /// The bind failed (other than for a wrong password): the next server may take it.
    Refused(String),
    /// A wrong password: no other server will take it either.
    Fatal(SourceError),
}

/// Connects to one URL and binds.
async fn connect_to(cfg: &LdapSourceConfig, tls: &Tls, url: &str) -> Result<Ldap, Unusable> {
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(cfg.timeout)
        .set_starttls(cfg.starttls);
    if let Some(tls) = tls {
        settings = settings.set_config(tls.clone());
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
        .await
        .map_err(Unusable::Unreachable)?;
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
            Ok(ldap)
        }
        Ok(r) if r.rc == INVALID_CREDENTIALS => Err(Unusable::Fatal(cfg.error(
            url,
            &format!(
                "binding as {}",
                cfg.bind_dn.as_deref().unwrap_or("anonymous")
            ),
            format!("invalid credentials (result code 49){}", text_of(&r.text)),
        ))),
        Ok(r) => Err(Unusable::Refused(format!(
            "{url}: bind failed with result code {}{}",
            r.rc,
            text_of(&r.text)
        ))),
        Err(e) => Err(Unusable::Refused(format!(
            "{url}: bind failed: {}",
            describe(&e)
        ))),
    }
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
        e.values("supportedCapabilities")
            .iter()
            .any(|v| v == AD_CAPABILITY)
    });
    Ok(if ad {
        Directory::Ad
    } else {
        Directory::OpenLdap
    })
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

/// A warning about an entry, logged as it is made.
fn warn_at(dn: &str, message: String) -> Diagnostic {
    warn!(dn, "{message}");
    Diagnostic::at_origin(&Origin::Ldap { dn: dn.to_owned() }, message).warning_level()
}

async fn read_on(
    cfg: &LdapSourceConfig,
    ldap: &mut Ldap,
    server: &str,
    tls: &Tls,
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
    let user_base_dn = cfg.user_base_dn.as_deref().unwrap_or(&cfg.base_dn);
    let user_base = normalize_dn(user_base_dn).unwrap_or_default();
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
    let query = Query {
        base: &cfg.base_dn,
        scope,
        filter: group_filter,
        attrs,
    };
    let user_search = UserSearch {
        cfg: cfg.clone(),
        server: server.to_owned(),
        base: user_base_dn.to_owned(),
        filter: user_filter.to_owned(),
        key_attr: user_key_attr.to_owned(),
    };
    // With `exclude_disabled` every member is looked up, so the user search starts at once;
    // otherwise as soon as a value turns up that only it can map.
    let mut started = cfg
        .exclude_disabled
        .then(|| users::spawn(&user_search, tls));
    let mut spawned = started.is_some();

    let mut early = true;
    let mut carried = None;
    let mut groups = loop {
        let mut groups = Groups::new(cfg, user_key_attr, &user_base, early);
        if let Some(users) = carried.take() {
            groups.users_in(users);
        }
        let mut paged = Paged::start(&at, ldap, &query).await?;
        while let Some(page) = paged.next_page().await? {
            for e in page {
                let e = e.map_err(|why| paged.incomplete(&why))?;
                groups.add(&at, e)?;
                if !spawned && groups.waiting_for_users() {
                    started = Some(users::spawn(&user_search, tls));
                    spawned = true;
                }
            }
            // Once the users are in, DNs are mapped as they are decided.
            if started.as_ref().is_some_and(users::Started::is_finished)
                && let Some(s) = started.take()
                && let Some(users) = s.join().await?
            {
                groups.users_in(users);
            }
        }
        read.pages += paged.pages();
        if groups.sound() {
            break groups;
        }
        debug!("a group read late changes what earlier members are: reading the groups again");
        carried = groups.take_users();
        early = false;
    };
    read.groups = groups.seen;

    // Ranges are continued once the paged search is over: a connection keeps one paged
    // search, and some servers drop its cookie when another search starts.
    for (i, first) in std::mem::take(&mut groups.ranged) {
        let g = &mut groups.entries[i];
        read.range_reads += continue_ranges(
            &at,
            ldap,
            &g.dn,
            &cfg.member_attr,
            range_size,
            &mut g.rest,
            first,
        )
        .await?;
        read.ranged += 1;
    }
    groups.finish();
    if groups.waiting_for_users() {
        let users = match started.take() {
            Some(s) => s.join().await?,
            None => None,
        };
        let users = match users {
            Some(users) => users,
            None => users::read(&user_search, ldap).await?,
        };
        groups.users_in(users);
    }
    // Started for values that turned out to be groups: not needed after all.
    drop(started);
    if let Some(users) = groups.take_users() {
        read.pages += users.pages;
        read.users = users.entries;
    }
    read.disabled = groups.disabled;

    let mut loaded = Loaded {
        diagnostics: std::mem::take(&mut groups.diagnostics),
        ..Loaded::default()
    };
    groups.settle();
    let mut desired = Desired::default();
    for g in groups.entries {
        let origin = Origin::Ldap { dn: g.dn };
        if let Some(first) = desired.origins.get(&g.name) {
            loaded.diagnostics.push(Diagnostic::at_origin(
                &origin,
                format!("duplicate group `{}`; first defined at {first}", g.name),
            ));
            continue;
        }
        let mut group = Group::named(g.name.clone());
        group.description = g.description;
        group.members = g.members;
        group.children = g.children;
        let mut mapped_keys = g.mapped_keys;
        group.extras = extras(cfg, &g.mapped, &mut mapped_keys);
        for c in &group.children {
            loaded.refs.push(ChildRef {
                parent: g.name.clone(),
                child: c.clone(),
                at: origin.clone(),
            });
        }
        desired.origins.insert(g.name.clone(), origin);
        desired.groups.insert(g.name, group);
    }
    loaded.desired = desired;
    // Last, so that a server that refuses these reads cannot disturb the load itself.
    read.context_csn = revision(&at, ldap).await;
    loaded.reads.push(crate::source::SourceRead::Ldap(read));
    Ok(loaded)
}

/// The directory's revision (see [`LdapRead::context_csn`]), or `None` when it cannot be read:
/// it is recorded where there is one, never required.
async fn revision(at: &At<'_>, ldap: &mut Ldap) -> Option<String> {
    let doing = "reading the directory's revision";
    let attrs = [
        "namingContexts".to_owned(),
        "highestCommittedUSN".to_owned(),
    ];
    let root = search::entry(at, ldap, "", &attrs, doing).await.ok()??;
    if let Some(context) = naming_context(&at.cfg.base_dn, root.values("namingContexts")) {
        let attrs = ["contextCSN".to_owned()];
        if let Ok(Some(entry)) = search::entry(at, ldap, context, &attrs, doing).await {
            // One value per server of a replicated directory.
            let mut csns = entry.values("contextCSN").to_vec();
            if !csns.is_empty() {
                csns.sort();
                return Some(csns.join(" "));
            }
        }
    }
    root.values("highestCommittedUSN").first().cloned()
}

/// Of a rootDSE's `namingContexts`, the one that holds `base_dn`: the longest one the base ends
/// with (where OpenLDAP keeps the `contextCSN` that changes with every write under it).
fn naming_context<'a>(base_dn: &str, contexts: &'a [String]) -> Option<&'a String> {
    let base = normalize_dn(base_dn)?;
    contexts
        .iter()
        .filter(|c| {
            normalize_dn(c)
                .is_some_and(|c| base == c || c.is_empty() || base.ends_with(&format!(",{c}")))
        })
        .max_by_key(|c| c.len())
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

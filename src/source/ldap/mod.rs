//! The LDAP source: desired groups read from a directory with paged searches.
//!
//! A partial read is an error, never a smaller desired state: a search that ends with any result
//! other than success (a size limit, a timeout, a broken connection) fails the whole load.
//!
//! The source's keys in `roster.toml`, their defaults and their checks are in [`config`].

pub mod config;

pub use config::{LdapScope, LdapSourceConfig, MemberKind};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tracing::{debug, warn};

use crate::diag::Diagnostic;
use crate::model::{Desired, Group, GroupName, Origin, UserKey};
use crate::source::{ChildRef, Loaded, SourceError};

/// LDAP result code 49: the bind DN or password is wrong (failing over would not help).
const INVALID_CREDENTIALS: u32 = 49;

impl LdapSourceConfig {
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
pub(crate) async fn read(cfg: &LdapSourceConfig) -> Result<Loaded, SourceError> {
    let (mut ldap, server) = connect(cfg).await?;
    let result = read_on(cfg, &mut ldap, &server).await;
    let _ = ldap.unbind().await;
    result
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
    crate::target::http::error_chain(e)
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

/// All entries of a paged search; an error unless the search ended in success.
async fn search(
    cfg: &LdapSourceConfig,
    ldap: &mut Ldap,
    server: &str,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: Vec<String>,
) -> Result<Vec<SearchEntry>, SourceError> {
    let doing = format!("searching {base} for {filter}");
    let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(cfg.page_size)),
    ];
    let mut stream = ldap
        .with_timeout(cfg.timeout)
        .streaming_search_with(adapters, base, scope, filter, attrs)
        .await
        .map_err(|e| cfg.error(server, &doing, describe(&e)))?;
    let mut entries = Vec::new();
    loop {
        match stream.next().await {
            Ok(Some(entry)) => entries.push(SearchEntry::construct(entry)),
            Ok(None) => break,
            Err(e) => {
                let _ = stream.finish().await;
                return Err(cfg.error(
                    server,
                    &doing,
                    format!("{}; the read is incomplete", describe(&e)),
                ));
            }
        }
    }
    let done = stream.finish().await;
    if done.rc != 0 {
        let why = match done.rc {
            3 => "time limit exceeded (result code 3)".to_owned(),
            4 => {
                "the server stopped at its size limit (result code 4, sizeLimitExceeded)".to_owned()
            }
            11 => "administrative limit exceeded (result code 11); lower page_size".to_owned(),
            32 => "no such object (result code 32): check the base DN".to_owned(),
            rc => format!("result code {rc}"),
        };
        return Err(cfg.error(
            server,
            &doing,
            format!(
                "{why}{} after {} entries; the read is incomplete",
                text_of(&done.text),
                entries.len()
            ),
        ));
    }
    debug!(%base, entries = entries.len(), "searched");
    Ok(entries)
}

/// The values of an attribute, whatever the case the server spells its name in.
fn values<'a>(entry: &'a SearchEntry, attr: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map_or(&[], |(_, v)| v.as_slice())
}

async fn read_on(
    cfg: &LdapSourceConfig,
    ldap: &mut Ldap,
    server: &str,
) -> Result<Loaded, SourceError> {
    let scope = match cfg.scope {
        LdapScope::Sub => Scope::Subtree,
        LdapScope::One => Scope::OneLevel,
    };
    let attrs = vec![
        cfg.name_attr.clone(),
        cfg.description_attr.clone(),
        cfg.member_attr.clone(),
    ];
    let entries = search(
        cfg,
        ldap,
        server,
        &cfg.base_dn,
        scope,
        &cfg.group_filter,
        attrs,
    )
    .await?;

    let mut loaded = Loaded::default();
    let warn_at = |dn: &str, message: String| {
        warn!(dn, "{message}");
        Diagnostic::at_origin(&Origin::Ldap { dn: dn.to_owned() }, message).warning_level()
    };

    // Groups by normalised DN, so that members can be told apart from child groups.
    let mut groups: Vec<(String, GroupName, &SearchEntry)> = Vec::new();
    let mut by_dn: HashMap<String, GroupName> = HashMap::new();
    for e in &entries {
        let Some(name) = values(e, &cfg.name_attr).first() else {
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
        by_dn.insert(norm.clone(), name.clone());
        groups.push((norm, name, e));
    }

    let user_base =
        normalize_dn(cfg.user_base_dn.as_deref().unwrap_or(&cfg.base_dn)).unwrap_or_default();
    // (group index, member DN as written) of DNs that need the user search.
    let mut pending: Vec<(usize, &str)> = Vec::new();
    let mut members: Vec<BTreeSet<UserKey>> = vec![BTreeSet::new(); groups.len()];
    let mut children: Vec<BTreeSet<GroupName>> = vec![BTreeSet::new(); groups.len()];
    // The attribute types that start a group's DN (`cn`): a member DN starting with another type
    // (`uid`) cannot be a group, so it needs neither normalising nor a lookup.
    let mut group_rdn_attrs: Vec<String> = groups
        .iter()
        .filter_map(|(norm, _, _)| Some(norm.split_once('=')?.0.to_owned()))
        .collect();
    group_rdn_attrs.sort();
    group_rdn_attrs.dedup();
    // One buffer for every normalised member DN: a large directory has a million of them.
    let mut norm = String::new();
    for (i, (_, name, e)) in groups.iter().enumerate() {
        for v in values(e, &cfg.member_attr) {
            // An empty value is how schemas that require a member spell an empty group.
            if v.trim().is_empty() {
                continue;
            }
            if cfg.member_kind == MemberKind::Uid {
                members[i].insert(UserKey(v.clone()));
                continue;
            }
            if let Some(key) = quick_user_key(v, &cfg.user_key_attr, &user_base, &group_rdn_attrs) {
                members[i].insert(UserKey(key.to_owned()));
                continue;
            }
            if !normalize_into(v, &mut norm) {
                loaded.diagnostics.push(warn_at(
                    &e.dn,
                    format!("member `{v}` is not a valid DN; skipped"),
                ));
                continue;
            }
            let maybe_group = norm
                .split_once('=')
                .is_some_and(|(a, _)| group_rdn_attrs.iter().any(|g| g == a));
            if let Some(child) = maybe_group.then(|| by_dn.get(norm.as_str())).flatten() {
                if cfg.nested {
                    children[i].insert(child.clone());
                } else {
                    loaded.diagnostics.push(warn_at(
                        &e.dn,
                        format!("member `{v}` of `{name}` is a group and nested = false; skipped"),
                    ));
                }
                continue;
            }
            let key = if is_plain(v) {
                plain_first_rdn(v)
                    .filter(|(attr, _)| attr.eq_ignore_ascii_case(&cfg.user_key_attr))
                    .map(|(_, value)| value.to_owned())
            } else {
                first_rdn(v)
                    .filter(|(attr, _)| attr.eq_ignore_ascii_case(&cfg.user_key_attr))
                    .map(|(_, value)| value)
            };
            match key {
                Some(key) if is_under(&norm, &user_base) => {
                    members[i].insert(UserKey(key));
                }
                _ => pending.push((i, v.as_str())),
            }
        }
    }

    if !pending.is_empty() {
        let users = search(
            cfg,
            ldap,
            server,
            cfg.user_base_dn.as_deref().unwrap_or(&cfg.base_dn),
            Scope::Subtree,
            &cfg.user_filter,
            vec![cfg.user_key_attr.clone()],
        )
        .await?;
        let keys: HashMap<String, &String> = users
            .iter()
            .filter_map(|u| Some((normalize_dn(&u.dn)?, values(u, &cfg.user_key_attr).first()?)))
            .collect();
        for (i, written) in pending {
            let key = normalize_into(written, &mut norm)
                .then(|| keys.get(norm.as_str()))
                .flatten();
            match key {
                Some(k) => {
                    members[i].insert(UserKey((*k).clone()));
                }
                None => loaded.diagnostics.push(warn_at(
                    &groups[i].2.dn,
                    format!("member `{written}` of `{}` is neither a user nor a group in the result; skipped", groups[i].1),
                )),
            }
        }
    }

    let mut desired = Desired::default();
    for (i, (_, name, e)) in groups.iter().enumerate() {
        let origin = Origin::Ldap { dn: e.dn.clone() };
        if let Some(first) = desired.origins.get(name) {
            loaded.diagnostics.push(Diagnostic::at_origin(
                &origin,
                format!("duplicate group `{name}`; first defined at {first}"),
            ));
            continue;
        }
        let mut g = Group::named(name.clone());
        g.description = values(e, &cfg.description_attr).first().cloned();
        g.members = std::mem::take(&mut members[i]);
        g.children = std::mem::take(&mut children[i]);
        for c in &g.children {
            loaded.refs.push(ChildRef {
                parent: name.clone(),
                child: c.clone(),
                at: origin.clone(),
            });
        }
        desired.origins.insert(name.clone(), origin);
        desired.groups.insert(name.clone(), g);
    }
    loaded.desired = desired;
    Ok(loaded)
}

/// Whether `dn` lies under `base` (both normalised).
fn is_under(dn: &str, base: &str) -> bool {
    base.is_empty()
        || dn == base
        || (dn.len() > base.len()
            && dn.ends_with(base)
            && dn.as_bytes()[dn.len() - base.len() - 1] == b',')
}

/// One RDN component: attribute type and value, unescaped.
type Ava = (String, String);

/// Parses a DN string (RFC 4514) into RDNs of attribute-value pairs, unescaping values.
pub fn parse_dn(dn: &str) -> Option<Vec<Vec<Ava>>> {
    let mut rdns = Vec::new();
    let mut rdn = Vec::new();
    let mut chars = dn.trim().chars().peekable();
    if chars.peek().is_none() {
        return Some(rdns);
    }
    loop {
        // Attribute type.
        let mut attr = String::new();
        let mut has_value = false;
        for c in chars.by_ref() {
            if c == '=' {
                has_value = true;
                break;
            }
            attr.push(c);
        }
        let attr = attr.trim().to_owned();
        if attr.is_empty() || !has_value {
            return None;
        }
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        // Value, up to an unescaped `,`, `+` or the end.
        let mut bytes: Vec<u8> = Vec::new();
        let mut end = None;
        let mut trailing_spaces = 0;
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
        }
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let a = chars.next()?;
                    if a.is_ascii_hexdigit() {
                        let b = chars.next()?;
                        let byte = u8::from_str_radix(&format!("{a}{b}"), 16).ok()?;
                        bytes.push(byte);
                    } else {
                        let mut buf = [0; 4];
                        bytes.extend_from_slice(a.encode_utf8(&mut buf).as_bytes());
                    }
                    trailing_spaces = 0;
                }
                '"' if quoted => {
                    // Skip to the separator.
                    for c in chars.by_ref() {
                        if c == ',' || c == ';' || c == '+' {
                            end = Some(c);
                            break;
                        }
                    }
                    break;
                }
                ',' | ';' | '+' if !quoted => {
                    end = Some(c);
                    break;
                }
                c => {
                    trailing_spaces = if c == ' ' { trailing_spaces + 1 } else { 0 };
                    let mut buf = [0; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        bytes.truncate(bytes.len() - trailing_spaces);
        let value = String::from_utf8(bytes).ok()?;
        rdn.push((attr, value));
        match end {
            Some('+') => {}
            Some(_) => {
                rdns.push(std::mem::take(&mut rdn));
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            None => {
                rdns.push(rdn);
                return Some(rdns);
            }
        }
    }
}

/// A DN in one canonical spelling, for comparing DNs that a directory spells differently:
/// attribute types and values lowercased, escapes resolved and re-applied one way, spaces around
/// separators dropped, the parts of a multi-valued RDN sorted. `None` if it does not parse.
pub fn normalize_dn(dn: &str) -> Option<String> {
    if is_plain(dn) {
        return normalize_plain(dn);
    }
    let rdns = parse_dn(dn)?;
    let parts: Vec<String> = rdns
        .into_iter()
        .map(|rdn| {
            let mut avas: Vec<String> = rdn
                .into_iter()
                .map(|(a, v)| format!("{}={}", a.to_lowercase(), escape(&v.to_lowercase())))
                .collect();
            avas.sort();
            avas.join("+")
        })
        .collect();
    Some(parts.join(","))
}

/// The first RDN's attribute type and value (unescaped, as written), if it has exactly one.
pub fn first_rdn(dn: &str) -> Option<(String, String)> {
    if is_plain(dn) {
        return plain_first_rdn(dn).map(|(a, v)| (a.to_owned(), v.to_owned()));
    }
    let mut rdns = parse_dn(dn)?;
    if rdns.is_empty() {
        return None;
    }
    let mut first = rdns.swap_remove(0);
    (first.len() == 1).then(|| first.swap_remove(0))
}

/// Whether a DN needs none of the parser's care: ASCII, and no escapes, quotes, multi-valued RDNs,
/// or characters the canonical form escapes. Nearly every DN in a directory is such a DN, and
/// reading them without allocating per character is what keeps a large load fast.
fn is_plain(dn: &str) -> bool {
    if dn.trim().is_empty() {
        return true;
    }
    dn.bytes()
        .all(|b| b.is_ascii() && !matches!(b, b'\\' | b'"' | b'+' | b';' | b'#' | b'<' | b'>'))
        && dn
            .split(',')
            .all(|rdn| rdn.bytes().filter(|b| *b == b'=').count() == 1)
}

/// The user key of a member DN that is plainly a user's: a plain DN without spaces, whose first
/// RDN is `key_attr=value`, under `user_base`, and whose first attribute starts no group's DN.
/// `None` means "ask the full path", never "not a user".
fn quick_user_key<'a>(
    dn: &'a str,
    key_attr: &str,
    user_base: &str,
    group_rdn_attrs: &[String],
) -> Option<&'a str> {
    if dn.contains(' ') || !is_plain(dn) {
        return None;
    }
    let (attr, value) = plain_first_rdn(dn)?;
    if !attr.eq_ignore_ascii_case(key_attr)
        || group_rdn_attrs.iter().any(|g| g.eq_ignore_ascii_case(attr))
    {
        return None;
    }
    // Without spaces, a plain DN's normal form is its lowercase: compare the suffix so.
    let under = user_base.is_empty()
        || (dn.len() > user_base.len()
            && dn.as_bytes()[dn.len() - user_base.len() - 1] == b','
            && dn[dn.len() - user_base.len()..].eq_ignore_ascii_case(user_base));
    under.then_some(value)
}

/// [`normalize_dn`] into a reused buffer, allocating nothing for a plain DN without spaces (whose
/// normal form is its lowercase). `false` if the DN does not parse.
fn normalize_into(dn: &str, buf: &mut String) -> bool {
    buf.clear();
    let dn = dn.trim();
    if !dn.contains(' ') && is_plain(dn) && dn.split(',').all(|rdn| !rdn.starts_with('=')) {
        buf.push_str(dn);
        buf.make_ascii_lowercase();
        return true;
    }
    match normalize_dn(dn) {
        Some(n) => {
            buf.push_str(&n);
            true
        }
        None => false,
    }
}

/// [`first_rdn`] of a DN for which [`is_plain`] holds, borrowed.
fn plain_first_rdn(dn: &str) -> Option<(&str, &str)> {
    let (a, v) = dn.split(',').next()?.split_once('=')?;
    Some((a.trim(), v.trim()))
}

/// [`normalize_dn`] of a DN for which [`is_plain`] holds: the same result, without the parser.
fn normalize_plain(dn: &str) -> Option<String> {
    let dn = dn.trim();
    // Without spaces there is nothing to trim: lowercasing is the whole work.
    if !dn.contains(' ') && !dn.is_empty() {
        return dn
            .split(',')
            .all(|rdn| !rdn.starts_with('='))
            .then(|| dn.to_ascii_lowercase());
    }
    let mut out = String::with_capacity(dn.len());
    if dn.is_empty() {
        return Some(out);
    }
    for (i, rdn) in dn.split(',').enumerate() {
        let (a, v) = rdn.split_once('=')?;
        let a = a.trim();
        if a.is_empty() {
            return None;
        }
        if i > 0 {
            out.push(',');
        }
        out.extend(a.chars().map(|c| c.to_ascii_lowercase()));
        out.push('=');
        out.extend(v.trim().chars().map(|c| c.to_ascii_lowercase()));
    }
    Some(out)
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == v.chars().count() => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_that_differ_in_case_spacing_and_escaping_normalise_alike() {
        let a = normalize_dn("CN=Smith\\, John, OU=People,dc=Example,dc=org");
        let b = normalize_dn("cn=smith\\2C john,ou=people,DC=example,DC=ORG");
        assert_eq!(a, b);
        assert_eq!(
            a.as_deref(),
            Some("cn=smith\\, john,ou=people,dc=example,dc=org")
        );
    }

    #[test]
    fn non_ascii_and_hex_escapes_decode() {
        assert_eq!(
            normalize_dn("cn=Zo\\C3\\AB,ou=people"),
            normalize_dn("CN=ZOË,ou=People")
        );
        assert_eq!(first_rdn("uid=Zoë+cn=x,ou=p"), None);
        assert_eq!(
            first_rdn("uid=j\\,doe,ou=people,dc=example,dc=org"),
            Some(("uid".into(), "j,doe".into()))
        );
    }

    #[test]
    fn malformed_dns_are_rejected_not_guessed() {
        assert_eq!(parse_dn("no-equals-sign"), None);
        assert_eq!(parse_dn("cn=a\\"), None);
        assert_eq!(
            parse_dn("cn=a\\zq"),
            Some(vec![vec![("cn".into(), "azq".into())]])
        );
    }

    #[test]
    fn the_plain_path_agrees_with_the_parser() {
        for dn in [
            "uid=user00001,ou=people,dc=example,dc=org",
            " UID = User00001 , OU=People ,dc=Example,dc=org ",
            "cn=Group 7,ou=groups,dc=example,dc=org",
            "",
            "cn=",
        ] {
            assert!(is_plain(dn), "{dn}");
            let slow = parse_dn(dn).map(|rdns| {
                rdns.into_iter()
                    .map(|rdn| {
                        rdn.into_iter()
                            .map(|(a, v)| {
                                format!("{}={}", a.to_lowercase(), escape(&v.to_lowercase()))
                            })
                            .collect::<Vec<_>>()
                            .join("+")
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            });
            assert_eq!(normalize_plain(dn), slow, "{dn:?}");
        }
        assert!(!is_plain("cn=a\\,b,dc=x") && !is_plain("cn=Zoë") && !is_plain("cn=a+uid=b"));
        assert!(!is_plain("cn=a=b,dc=x"));
        let mut buf = String::new();
        for dn in [
            "UID=A,dc=X",
            " uid = a , dc=x",
            "cn=Zo\\C3\\AB,dc=x",
            "cn=a\\,b,dc=x",
            "=x",
        ] {
            let ok = normalize_into(dn, &mut buf);
            assert_eq!(ok.then(|| buf.clone()), normalize_dn(dn), "{dn:?}");
        }
    }

    #[test]
    fn quick_keys_only_for_plain_user_dns_under_the_base() {
        let base = "ou=people,dc=x";
        let cn = ["cn".to_owned()];
        assert_eq!(
            quick_user_key("UID=Ann,OU=People,DC=x", "uid", base, &cn),
            Some("Ann")
        );
        assert_eq!(
            quick_user_key("uid=ann,ou=others,dc=x", "uid", base, &cn),
            None
        );
        assert_eq!(
            quick_user_key("uid=ann,xou=people,dc=x", "uid", base, &cn),
            None
        );
        assert_eq!(
            quick_user_key("cn=ann,ou=people,dc=x", "cn", base, &cn),
            None
        );
        assert_eq!(
            quick_user_key("uid=a\\,b,ou=people,dc=x", "uid", base, &cn),
            None
        );
        assert_eq!(
            quick_user_key("uid=ann, ou=people,dc=x", "uid", base, &cn),
            None
        );
    }

    #[test]
    fn multi_valued_rdns_compare_in_any_order() {
        assert_eq!(
            normalize_dn("cn=a+uid=b,dc=x"),
            normalize_dn("uid=B+cn=A,dc=x")
        );
    }

    #[test]
    fn membership_under_a_base_is_by_whole_rdns() {
        assert!(is_under("uid=a,ou=people,dc=x", "ou=people,dc=x"));
        assert!(!is_under("uid=a,ou=otherpeople,dc=x", "people,dc=x"));
    }
}

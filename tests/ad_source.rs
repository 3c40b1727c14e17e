//! roster's LDAP source against Active Directory (issue 11): a real Samba AD DC
//! (`support/samba.rs`), the same DC behind a proxy that answers `member` as Windows AD does
//! (`support/adproxy.rs`: plain reads cut at 1,500 values, ranges capped at 1,500, and faults),
//! and, for comparison, a real OpenLDAP with groups of the same sizes.
//!
//! What is proved: every group size around AD's `MaxValRange` (0, 1, 1,499, 1,500, 1,501,
//! 5,000) is read whole, compared as a set with the members the DC was loaded with, whether
//! roster asks for ranges itself (`directory` detected as AD, several `range_size`s) or is
//! handed one unasked (`directory = "openldap"` through the proxy), and the read report counts
//! the continuations the ranges imply; a range sequence that stops short fails the load (and
//! the `roster` binary, without a write) naming the server, the group and the last range
//! read; user keys (`sAMAccountName`, `userPrincipalName`, `mail`, non-ASCII ones included),
//! nested groups, `exclude_disabled`, binary attributes and per-target attributes read from
//! AD's group entries.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster::config::SourceConfig;
use roster::model::{Desired, GroupName, Origin};
use roster::secret::Secret;
use roster::source::ldap::{
    Directory, LdapRead, LdapScope, LdapSourceConfig, MappedAttribute, MappedKind, MemberKind,
};
use roster::source::{Load, SourceError, SourceRead};
use support::adproxy::{AdProxy, Fault, MAX_VAL_RANGE};
use support::ldif;
use support::samba::{self, Samba, TestGroup};
use support::slapd::Slapd;

/// An LDAP source for the Samba DC at `url`: roster's service account, groups under
/// `OU=Groups`, users under `OU=People`, and the AD defaults (`directory` detected; group and
/// user filters and the user key attribute left to the directory's defaults).
fn ad_config(url: &str) -> LdapSourceConfig {
    LdapSourceConfig {
        urls: vec![url.to_owned()],
        starttls: false,
        ca_file: None,
        bind_dn: Some(samba::BIND_DN.to_owned()),
        bind_password: Some(Secret::new(samba::BIND_PW)),
        base_dn: samba::GROUPS_DN.to_owned(),
        scope: LdapScope::Sub,
        directory: Directory::Auto,
        group_filter: None,
        name_attr: "cn".to_owned(),
        description_attr: "description".to_owned(),
        member_attr: "member".to_owned(),
        member_kind: MemberKind::Dn,
        user_base_dn: Some(samba::PEOPLE_DN.to_owned()),
        user_filter: None,
        user_key_attr: None,
        range_size: 1000,
        exclude_disabled: false,
        attributes: Vec::new(),
        nested: true,
        page_size: 1000,
        timeout: Duration::from_secs(30),
        origin: Origin::Ldap {
            dn: "ad_source test".to_owned(),
        },
    }
}

/// [`ad_config`] restricted to the one group `name`.
fn one_group(url: &str, name: &str) -> LdapSourceConfig {
    LdapSourceConfig {
        group_filter: Some(format!("(&(objectClass=group)(cn={name}))")),
        ..ad_config(url)
    }
}

/// Loads one LDAP source: the desired state and its read report, or the error.
async fn load(cfg: LdapSourceConfig) -> Result<(Desired, LdapRead), SourceError> {
    let Load { desired, reads } = roster::source::load(&[SourceConfig::Ldap(cfg)]).await?;
    match reads.as_slice() {
        [SourceRead::Ldap(read)] => Ok((desired, read.clone())),
        other => panic!("expected one LDAP read, got {other:?}"),
    }
}

/// The error of a load that must fail, as roster prints it.
async fn load_err(cfg: LdapSourceConfig) -> String {
    match load(cfg).await {
        Ok((d, read)) => panic!(
            "the load should have failed; it read {} groups: {read:?}",
            d.groups.len()
        ),
        Err(e) => e.to_string(),
    }
}

/// What `tracing` wrote while a closure of the test ran (roster's warnings go there).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// [`load`], with the warnings it logged (one per line). The test runtime has one thread, so
/// the read's own task logs to this subscriber too.
async fn load_warned(cfg: LdapSourceConfig) -> (Result<(Desired, LdapRead), SourceError>, String) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let result = {
        let _guard = tracing::subscriber::set_default(subscriber);
        load(cfg).await
    };
    (result, captured.text())
}

/// Panics unless `got` is `want`, naming what is missing and what is extra (a few of each)
/// rather than printing 5,000 values.
fn assert_same(what: &str, got: &BTreeSet<String>, want: &BTreeSet<String>) {
    if got == want {
        return;
    }
    let missing: Vec<&String> = want.difference(got).take(5).collect();
    let extra: Vec<&String> = got.difference(want).take(5).collect();
    panic!(
        "{what}: read {} values, expected {}; missing (first 5 of {}): {missing:?}; extra \
         (first 5 of {}): {extra:?}",
        got.len(),
        want.len(),
        want.difference(got).count(),
        got.difference(want).count(),
    );
}

/// The member keys roster read for `name`.
fn members(d: &Desired, name: &str) -> BTreeSet<String> {
    let g = d
        .groups
        .get(&GroupName::from(name))
        .unwrap_or_else(|| panic!("no group {name:?} in the desired state"));
    g.members.iter().map(|k| k.as_str().to_owned()).collect()
}

/// The child group names roster read for `name`.
fn children(d: &Desired, name: &str) -> BTreeSet<String> {
    d.groups[&GroupName::from(name)]
        .children
        .iter()
        .map(|c| c.0.clone())
        .collect()
}

/// Every test group was read, with exactly the members `key` gives (and its child groups).
fn assert_every_group(what: &str, d: &Desired, key: impl Fn(&TestGroup) -> BTreeSet<String>) {
    let groups = samba::groups();
    let names: BTreeSet<String> = groups.iter().map(|g| g.name.clone()).collect();
    let read: BTreeSet<String> = d.groups.keys().map(|g| g.0.clone()).collect();
    assert_same(&format!("{what}: group names"), &read, &names);
    for g in &groups {
        assert_same(
            &format!("{what}: members of {}", g.name),
            &members(d, &g.name),
            &key(g),
        );
        let kids: BTreeSet<String> = g.groups.iter().cloned().collect();
        assert_same(
            &format!("{what}: children of {}", g.name),
            &children(d, &g.name),
            &kids,
        );
    }
}

/// The `member` values of each test group (users and nested groups).
fn sizes() -> Vec<(TestGroup, usize)> {
    samba::groups()
        .into_iter()
        .map(|g| {
            let n = g.users.len() + g.groups.len();
            (g, n)
        })
        .collect()
}

/// `(ranged, range_reads)` of a read of every test group whose answers hold at most `chunk`
/// values each: a group of `n > chunk` values is ranged and takes `ceil(n / chunk) - 1`
/// continuations; a group that fits one answer is not ranged (its one range ends in `*`).
fn expected_ranges(chunk: usize) -> (usize, usize) {
    sizes()
        .iter()
        .filter(|(_, n)| *n > chunk)
        .fold((0, 0), |(ranged, reads), (_, n)| {
            (ranged + 1, reads + n.div_ceil(chunk) - 1)
        })
}

/// The expected member keys of a test group (`TestGroup::sams`, `upns`, …).
type KeysOf = fn(&TestGroup) -> BTreeSet<String>;

/// The users under `OU=People`: what the user search reads.
const PEOPLE: usize = samba::USERS + samba::INTL_USERS.len();

#[tokio::test]
async fn every_group_size_reads_exactly_from_samba_with_ad_detected() {
    let s = Samba::start();
    // range_size: the default, AD's MaxValRange, one that divides no size, one above 1,500
    // (Samba, unlike Windows AD, serves any range asked for).
    for range_size in [1000, 1500, 700, 2000] {
        let what = format!("samba directly, range_size {range_size}");
        let cfg = LdapSourceConfig {
            range_size,
            ..ad_config(&s.url())
        };
        let (d, read) = load(cfg).await.unwrap();
        assert_every_group(&what, &d, TestGroup::sams);
        let (ranged, range_reads) = expected_ranges(range_size as usize);
        assert_eq!(
            (
                read.server.as_str(),
                read.base.as_str(),
                read.directory.as_str(),
                read.groups,
                read.users,
                read.ranged,
                read.range_reads,
                read.disabled,
            ),
            (
                s.url().as_str(),
                samba::GROUPS_DN,
                "ad",
                samba::groups().len(),
                PEOPLE,
                ranged,
                range_reads,
                0,
            ),
            "{what}: {read:?}"
        );
        // One page of 9 groups, then 5,054 users in pages of 1,000.
        assert_eq!(read.pages, 1 + PEOPLE.div_ceil(1000), "{what}: {read:?}");
    }
    // The figures the formula gives, spelt out for the default: size-1499, -1500 and -1501 take
    // one continuation each, size-5000 four.
    assert_eq!(expected_ranges(1000), (4, 7));
    assert_eq!(expected_ranges(1500), (2, 4));
    assert_eq!(expected_ranges(700), (4, 13));
}

#[tokio::test]
async fn every_group_size_reads_exactly_through_an_ad_like_proxy() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    for range_size in [1000, 1500, 700, 2000] {
        let what = format!("through the AD proxy, range_size {range_size}");
        proxy.reset_stats();
        let cfg = LdapSourceConfig {
            range_size,
            ..ad_config(&proxy.url())
        };
        let (d, read) = load(cfg).await.unwrap();
        assert_every_group(&what, &d, TestGroup::sams);
        assert_eq!(
            read.directory, "ad",
            "{what}: the proxy passes the rootDSE on"
        );
        assert_eq!(read.server, proxy.url());
        // The proxy, like AD, answers at most 1,500 values whatever roster asks for.
        let chunk = (range_size as usize).min(MAX_VAL_RANGE);
        let (ranged, range_reads) = expected_ranges(chunk);
        assert_eq!(
            (read.groups, read.users, read.ranged, read.range_reads),
            (samba::groups().len(), PEOPLE, ranged, range_reads),
            "{what}: {read:?}"
        );
        let stats = proxy.stats();
        assert_eq!(
            stats.continuations, read.range_reads,
            "{what}: every continuation the proxy served is counted: {stats:?}"
        );
        assert_eq!(
            stats.truncated, 0,
            "{what}: roster asked for ranges: {stats:?}"
        );
    }
    assert_eq!(expected_ranges(MAX_VAL_RANGE), (2, 4));
}

#[tokio::test]
async fn a_forced_openldap_read_still_continues_the_ranges_ad_returns_unasked() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let cfg = LdapSourceConfig {
        directory: Directory::OpenLdap,
        // Not AD, so the AD defaults do not apply: say them.
        group_filter: Some("(objectClass=group)".to_owned()),
        user_filter: Some("(&(objectCategory=person)(objectClass=user))".to_owned()),
        user_key_attr: Some("sAMAccountName".to_owned()),
        ..ad_config(&proxy.url())
    };
    let (d, read) = load(cfg).await.unwrap();
    assert_every_group("openldap forced, through the AD proxy", &d, TestGroup::sams);
    // Plain `member`: size-1501 and size-5000 come back as `member;range=0-1499` and are
    // continued with open ranges the proxy caps at 1,500 (1 + 3 continuations).
    assert_eq!(
        (
            read.directory.as_str(),
            read.ranged,
            read.range_reads,
            read.users
        ),
        ("openldap", 2, 4, PEOPLE),
        "{read:?}"
    );
    let stats = proxy.stats();
    assert_eq!(stats.truncated, 2, "{stats:?}");
    assert_eq!(stats.continuations, 4, "{stats:?}");
}

/// The Samba test groups rebuilt in OpenLDAP: each user as `uid=<sAMAccountName>` (so the same
/// keys are expected), each group a `groupOfNames` with the same members.
fn slapd_copy_of_the_samba_groups() -> String {
    let mut data = ldif::base();
    for u in samba::all_users() {
        data.push_str(&ldif::user(&u.sam, &u.cn));
    }
    for g in samba::groups() {
        let dns: Vec<String> = g
            .users
            .iter()
            .map(|u| ldif::user_dn(&u.sam))
            .chain(g.groups.iter().map(|c| ldif::group_dn(c)))
            .collect();
        let refs: Vec<&str> = dns.iter().map(String::as_str).collect();
        data.push_str(&ldif::group_of_names(&g.name, None, &refs));
    }
    data
}

#[tokio::test]
async fn every_group_size_reads_exactly_from_slapd_directly_and_through_the_proxy() {
    let slapd = Slapd::with_ldif(slapd_copy_of_the_samba_groups());
    let direct = support::slapd::source_config(&slapd.url());
    let (d, read) = load(direct.clone()).await.unwrap();
    assert_every_group("slapd directly", &d, TestGroup::sams);
    assert_eq!(
        (read.directory.as_str(), read.ranged, read.range_reads),
        ("openldap", 0, 0),
        "slapd answers every value at once: {read:?}"
    );

    let proxy = AdProxy::start(&slapd.url());
    let (d, read) = load(support::slapd::source_config(&proxy.url()))
        .await
        .unwrap();
    assert_every_group("slapd through the AD proxy", &d, TestGroup::sams);
    assert_eq!(
        (read.directory.as_str(), read.ranged, read.range_reads),
        ("openldap", 2, 4),
        "plain member, cut at 1,500 and continued: {read:?}"
    );
    assert_eq!(proxy.stats().truncated, 2);
    assert_eq!(proxy.stats().continuations, 4);

    // Told it is AD, roster asks for ranges of 1,000 itself, which the proxy serves from slapd.
    proxy.reset_stats();
    let forced = LdapSourceConfig {
        directory: Directory::Ad,
        ..support::slapd::source_config(&proxy.url())
    };
    let (d, read) = load(forced).await.unwrap();
    assert_every_group(
        "slapd through the AD proxy, directory = ad",
        &d,
        TestGroup::sams,
    );
    assert_eq!(
        (read.directory.as_str(), read.ranged, read.range_reads),
        ("ad", 4, 7),
        "{read:?}"
    );
    assert_eq!(proxy.stats().continuations, 7);
    assert_eq!(proxy.stats().truncated, 0);
}

/// The last range roster reads of a group of `n` values through the proxy, asking for ranges of
/// 1,000, before `fault` stops the sequence; `None` when the fault cannot stop this group's
/// sequence: no continuation to close, an unknown option (not a range fault), or an omitted
/// last chunk of a group that fits one answer (which reads as an empty group, as AD answers
/// for one: nothing can tell them apart).
fn last_range_read(fault: Fault, n: usize) -> Option<String> {
    let last_lo = (n - 1) / 1000 * 1000;
    match fault {
        // The final range, named without its `*`.
        Fault::DropLastChunk => Some(format!("member;range={last_lo}-{}", n - 1)),
        // The range before the final one.
        Fault::OmitLastChunk if last_lo == 0 => None,
        Fault::OmitLastChunk => Some(format!("member;range={}-{}", last_lo - 1000, last_lo - 1)),
        // The first range: the first continuation closes the connection.
        Fault::CloseBetweenChunks if n <= 1000 => None,
        Fault::CloseBetweenChunks => Some("member;range=0-999".to_owned()),
        Fault::UnknownOption => None,
    }
}

#[tokio::test]
async fn a_range_sequence_that_stops_short_fails_the_load_naming_server_group_and_last_range() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let big = samba::group("size-5000");
    let why = [
        (Fault::DropLastChunk, "result code 1"),
        (
            Fault::OmitLastChunk,
            "the server returned no values for `member;range=4000-4999`",
        ),
        (Fault::CloseBetweenChunks, "the read is incomplete"),
    ];
    for (fault, says) in why {
        proxy.set_fault(fault, true);
        // The one big group: the message is exact.
        let e = load_err(one_group(&proxy.url(), "size-5000")).await;
        let last = last_range_read(fault, 5000).unwrap();
        let want = format!(
            "ldap source {}: reading the members of {} in ranges: ",
            proxy.url(),
            big.dn
        );
        assert!(e.starts_with(&want), "{fault:?}: {e}");
        assert!(
            e.contains(&format!("last range read: {last}; the read is incomplete")),
            "{fault:?}: {e}"
        );
        assert!(e.contains(says), "{fault:?}: {e}");

        // Every group: the load fails at the first group the fault shows in, named with the
        // last range read of that group.
        let e = load_err(ad_config(&proxy.url())).await;
        let (failed, n) = sizes()
            .into_iter()
            .find(|(g, _)| e.contains(&format!("reading the members of {} in ranges:", g.dn)))
            .unwrap_or_else(|| panic!("{fault:?}: the message names no test group: {e}"));
        let last = last_range_read(fault, n)
            .unwrap_or_else(|| panic!("{fault:?}: {} cannot show this fault: {e}", failed.name));
        assert!(e.contains(&proxy.url()), "{fault:?}: {e}");
        assert!(
            e.contains(&format!("last range read: {last};")),
            "{fault:?}: {e}"
        );

        proxy.set_fault(fault, false);
        let (d, _) = load(ad_config(&proxy.url())).await.unwrap();
        assert_eq!(members(&d, "size-5000"), big.sams(), "{fault:?} off again");
    }

    // An option roster does not know is an error, never "no members": with ranges asked for,
    // and with a plain read.
    proxy.set_fault(Fault::UnknownOption, true);
    let openldap = LdapSourceConfig {
        directory: Directory::OpenLdap,
        group_filter: Some("(objectClass=group)".to_owned()),
        user_key_attr: Some("sAMAccountName".to_owned()),
        user_filter: Some("(objectClass=user)".to_owned()),
        ..ad_config(&proxy.url())
    };
    for (cfg, attr) in [
        (one_group(&proxy.url(), "size-1"), "member;x-foo;range=0-*"),
        (
            one_group(&proxy.url(), "size-5000"),
            "member;x-foo;range=0-999",
        ),
        (
            LdapSourceConfig {
                group_filter: Some("(&(objectClass=group)(cn=size-1))".to_owned()),
                ..openldap.clone()
            },
            "member;x-foo",
        ),
        (ad_config(&proxy.url()), "member;x-foo"),
        (openldap, "member;x-foo"),
    ] {
        let e = load_err(cfg).await;
        assert!(e.contains(&proxy.url()), "{e}");
        assert!(e.contains("reading the members of CN="), "{e}");
        assert!(
            e.contains(&format!("`{attr}")) && e.contains("(`x-foo`)") && e.contains("refusing"),
            "{e}"
        );
    }
    let e = load_err(one_group(&proxy.url(), "size-1")).await;
    assert!(
        e.contains(&format!(
            "reading the members of {}:",
            samba::group_dn("size-1")
        )),
        "{e}"
    );
}

/// Lines of the simulator's call log that change state (the token request only reads).
fn write_calls(calls: &[String]) -> Vec<&String> {
    calls
        .iter()
        .filter(|c| !c.starts_with("GET ") && !c.contains("/authenticate/"))
        .collect()
}

/// A config folder whose LDAP source reads the group `size-1501` through `ldap_url` and whose
/// one target is the Contensis simulator at `sim_url`; returns the config file.
fn write_config(dir: &std::path::Path, ldap_url: &str, sim_url: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    for (file, secret) in [("ldap-pw", samba::BIND_PW), ("cms-secret", "cms-secret")] {
        let path = dir.join(file);
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = dir.join("roster.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\ntype = \"ldap\"\nurl = \"{ldap_url}\"\nbind_dn = \"{}\"\n\
             bind_password_file = \"ldap-pw\"\nbase_dn = \"{}\"\nuser_base_dn = \"{}\"\n\
             group_filter = \"(&(objectClass=group)(cn=size-1501))\"\npage_size = 1000\n\n\
             [[target]]\nname = \"cms\"\ntype = \"contensis\"\nurl = \"{sim_url}\"\n\
             client_id = \"roster\"\nclient_secret_file = \"cms-secret\"\n",
            samba::BIND_DN,
            samba::GROUPS_DN,
            samba::PEOPLE_DN,
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn a_broken_range_sequence_makes_plan_and_apply_exit_1_without_a_write() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let g = samba::group("size-1501");
    // Contensis already holds the group exactly as AD has it: a read that lost a range would
    // plan removals.
    let quoted: Vec<String> = g.sams().iter().map(|k| format!("{k:?}")).collect();
    let seed = format!(
        "[contensis]\nclient_id = \"roster\"\nclient_secret = \"cms-secret\"\nusers = [{list}]\n\n\
         [[contensis.group]]\nname = \"size-1501\"\ndescription = \"1501 user(s), 0 group(s)\"\n\
         members = [{list}]\n",
        list = quoted.join(", ")
    );
    let sim = roster::sim::start(
        roster::sim::parse_seed(&seed, "seed").unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &proxy.url(), &sim.url());

    // Without a fault the whole group is read through the proxy (1,000 + 501): nothing to do.
    let out = support::roster_at(&config, &["plan", "--detailed-exitcode"], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        support::stdout(&out),
        support::stderr(&out)
    );
    assert!(proxy.stats().continuations >= 1, "{:?}", proxy.stats());

    let writes = sim.contensis.writes();
    for fault in [
        Fault::DropLastChunk,
        Fault::OmitLastChunk,
        Fault::CloseBetweenChunks,
        Fault::UnknownOption,
    ] {
        proxy.set_fault(fault, true);
        for command in ["plan", "apply"] {
            let calls_before = sim.calls_of(roster::sim::SimKind::Contensis).len();
            let out = support::roster_at(&config, &[command], &[]).await;
            let err = support::stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{fault:?} {command}: {}{err}",
                support::stdout(&out)
            );
            assert!(err.contains(&g.dn), "{fault:?} {command}: {err}");
            assert!(
                err.contains("nothing was planned or written"),
                "{fault:?} {command}: {err}"
            );
            if fault != Fault::UnknownOption {
                assert!(
                    err.contains("last range read: member;range="),
                    "{fault:?} {command}: {err}"
                );
            }
            let calls = sim.calls_of(roster::sim::SimKind::Contensis);
            assert_eq!(
                write_calls(&calls[calls_before..]),
                Vec::<&String>::new(),
                "{fault:?} {command}"
            );
        }
        proxy.set_fault(fault, false);
    }
    assert_eq!(
        sim.contensis.writes(),
        writes,
        "a broken read led to writes"
    );
    assert_eq!(
        sim.contensis.group("size-1501").unwrap().members.len(),
        1501
    );
}

#[tokio::test]
async fn the_binary_says_why_a_load_failed_once() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    proxy.set_fault(Fault::DropLastChunk, true);
    let sim = roster::sim::start(
        roster::sim::parse_seed(
            "[contensis]\nclient_id = \"roster\"\nclient_secret = \"cms-secret\"\n",
            "seed",
        )
        .unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &proxy.url(), &sim.url());
    let out = support::roster_at(&config, &["plan"], &[]).await;
    let err = support::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let said = format!(
        "ldap source {}: reading the members of {} in ranges:",
        proxy.url(),
        samba::group_dn("size-1501")
    );
    assert_eq!(
        err.matches(&said).count(),
        1,
        "the error is printed once, not repeated after itself:\n{err}"
    );
}

#[tokio::test]
async fn user_keys_are_sam_account_names_upns_or_mail_non_ascii_included() {
    let s = Samba::start();
    let keys: [(Option<&str>, KeysOf); 4] = [
        (None, TestGroup::sams),
        (Some("sAMAccountName"), TestGroup::sams),
        (Some("userPrincipalName"), TestGroup::upns),
        (Some("mail"), TestGroup::mails),
    ];
    for (attr, key) in keys {
        let what = format!("user_key_attr {attr:?}");
        let cfg = LdapSourceConfig {
            user_key_attr: attr.map(str::to_owned),
            ..ad_config(&s.url())
        };
        let (d, _) = load(cfg).await.unwrap();
        assert_every_group(&what, &d, key);
    }
    // Spelt out for the non-ASCII users (one of whose DNs holds an escaped comma).
    let (d, _) = load(ad_config(&s.url())).await.unwrap();
    let want: BTreeSet<String> = [
        "user00001",
        "zoe.angstrom",
        "jürgen.groß",
        "anna.mueller",
        "li.xiaolong",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(members(&d, samba::INTL_GROUP), want);
}

#[tokio::test]
async fn a_nested_group_is_a_child_not_a_member() {
    let s = Samba::start();
    let (d, _) = load(ad_config(&s.url())).await.unwrap();
    let one = |k: &str| BTreeSet::from([k.to_owned()]);
    assert_eq!(children(&d, samba::NESTED_PARENT), one(samba::NESTED_CHILD));
    assert_eq!(members(&d, samba::NESTED_PARENT), one("user00002"));
    assert_eq!(
        members(&d, samba::NESTED_CHILD),
        BTreeSet::from(["user00003".to_owned(), "user00004".to_owned()])
    );
    assert!(children(&d, samba::NESTED_CHILD).is_empty());

    // With nested = false the child group is left out (with a warning), still not a member.
    let flat = LdapSourceConfig {
        nested: false,
        ..ad_config(&s.url())
    };
    let (result, warnings) = load_warned(flat).await;
    let (d, _) = result.unwrap();
    assert!(children(&d, samba::NESTED_PARENT).is_empty());
    assert_eq!(members(&d, samba::NESTED_PARENT), one("user00002"));
    assert!(
        warnings.contains("is a group and nested = false"),
        "{warnings}"
    );
}

#[tokio::test]
async fn exclude_disabled_leaves_out_disabled_accounts_and_counts_them() {
    let s = Samba::start();
    let cfg = LdapSourceConfig {
        exclude_disabled: true,
        ..ad_config(&s.url())
    };
    let (d, read) = load(cfg).await.unwrap();
    assert_every_group("exclude_disabled", &d, TestGroup::enabled_sams);
    let big = members(&d, "size-5000");
    assert_eq!(big.len(), 4997);
    for i in samba::DISABLED_USERS {
        assert!(!big.contains(&samba::user(i).sam), "user {i} is disabled");
    }
    // Each membership of a disabled account: user 7 in four groups, user 1500 in three, user
    // 5000 in one.
    let disabled: usize = samba::groups()
        .iter()
        .map(|g| g.users.iter().filter(|u| !u.enabled).count())
        .sum();
    assert_eq!(disabled, 8);
    assert_eq!(read.disabled, disabled, "{read:?}");

    let (d, read) = load(ad_config(&s.url())).await.unwrap();
    assert_eq!(members(&d, "size-5000"), samba::group("size-5000").sams());
    assert_eq!(members(&d, "size-5000").len(), 5000);
    assert_eq!(read.disabled, 0);
}

/// The `attr` of every entry under `base` matching `filter`, by DN, as the `ldap3` client
/// classes it: `Some(text)` when its value is UTF-8 (roster then reads it as text), `None`
/// when it is binary. Every entry must have the attribute.
async fn values_of(
    url: &str,
    base: &str,
    filter: &str,
    attr: &str,
) -> BTreeMap<String, Option<String>> {
    use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(url).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(samba::BIND_DN, samba::BIND_PW)
        .await
        .unwrap()
        .success()
        .unwrap();
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(500)),
    ];
    let mut stream = ldap
        .streaming_search_with(adapters, base, ldap3::Scope::Subtree, filter, vec![attr])
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    while let Some(e) = stream.next().await.unwrap() {
        let e = ldap3::SearchEntry::construct(e);
        assert!(
            e.attrs.contains_key(attr) || e.bin_attrs.contains_key(attr),
            "{} has no {attr}",
            e.dn
        );
        let text = e.attrs.get(attr).map(|v| v[0].clone());
        out.insert(e.dn, text);
    }
    assert_eq!(stream.finish().await.rc, 0);
    out
}

#[tokio::test]
async fn binary_attributes_are_warned_about_and_never_break_a_read() {
    let s = Samba::start();
    let text = |target: &str, path: &[&str], attr: &str| MappedAttribute {
        target_type: target.to_owned(),
        path: path.iter().map(|p| (*p).to_owned()).collect(),
        ldap_attr: attr.to_owned(),
        kind: MappedKind::Text,
    };
    let cfg = LdapSourceConfig {
        attributes: vec![
            text("contensis", &["custom", "sid"], "objectSid"),
            text("vinyldns", &["email"], "objectGUID"),
        ],
        ..ad_config(&s.url())
    };
    let (result, warnings) = load_warned(cfg).await;
    let (d, _) = result.unwrap();
    assert_every_group("binary mapped attributes", &d, TestGroup::sams);
    let url = s.url();
    let of_groups = |attr| values_of(&url, samba::GROUPS_DN, "(objectClass=group)", attr);
    let guids = of_groups("objectGUID").await;
    let sids = of_groups("objectSid").await;
    let mut binary = 0;
    for (name, group) in &d.groups {
        let extras = serde_json::to_value(&group.extras).unwrap();
        for (attr, values, pointer) in [
            ("objectGUID", &guids, "/vinyldns/email"),
            ("objectSid", &sids, "/contensis/custom/sid"),
        ] {
            match &values[&samba::group_dn(name.as_str())] {
                // Binary: left out, so the target keeps what it has, with a warning.
                None => {
                    binary += 1;
                    assert_eq!(extras.pointer(pointer), None, "{name}: {extras}");
                    let warning = format!("`{attr}` of `{name}` is not text");
                    assert!(warnings.contains(&warning), "{warning}:\n{warnings}");
                }
                // A value that happens to be UTF-8 is text to any LDAP client.
                Some(v) => assert_eq!(
                    extras.pointer(pointer),
                    Some(&serde_json::Value::String(v.clone())),
                    "{name}"
                ),
            }
        }
    }
    assert!(binary > 0, "no binary value among {guids:?} and {sids:?}");
    assert!(!warnings.contains("ERROR"), "{warnings}");

    // A binary user key: the load must not panic, and must not read the users as keyless
    // (every group would come out empty and an apply would empty them): it fails, naming the
    // attribute. (The config refuses `objectSid` and `objectGUID` outright; this is the check
    // behind it, for any attribute whose values are not text.)
    let cfg = LdapSourceConfig {
        user_key_attr: Some("objectSid".to_owned()),
        ..ad_config(&s.url())
    };
    let (result, _) = load_warned(cfg).await;
    let e = result
        .expect_err("a binary user key fails the load")
        .to_string();
    assert!(
        e.contains("`objectSid`") && e.contains("not text") && e.contains(&s.url()),
        "{e}"
    );
}

#[tokio::test]
async fn per_target_attributes_come_from_ad_group_entries() {
    let s = Samba::start();
    let muller = samba::intl_users()
        .into_iter()
        .find(|u| u.sam == "anna.mueller")
        .unwrap();
    let mut change = String::new();
    for (group, mail, admin) in [
        ("size-1", "size-1@groups.roster.test", samba::user(2).dn),
        (samba::INTL_GROUP, "intl@groups.roster.test", muller.dn),
    ] {
        change.push_str(&ldif::attr("dn", &samba::group_dn(group)));
        change.push_str("changetype: modify\nreplace: mail\n");
        change.push_str(&ldif::attr("mail", mail));
        change.push_str("-\nreplace: managedBy\n");
        change.push_str(&ldif::attr("managedBy", &admin));
        change.push_str("-\n\n");
    }
    s.ldapmodify(&change);

    let map = |path: &str, attr: &str, kind| MappedAttribute {
        target_type: "vinyldns".to_owned(),
        path: vec![path.to_owned()],
        ldap_attr: attr.to_owned(),
        kind,
    };
    let attributes = vec![
        map("admins", "managedBy", MappedKind::UserDns),
        map("email", "mail", MappedKind::Text),
    ];
    for (key_attr, size1_admin, intl_admin) in [
        (None, "user00002", "anna.mueller"),
        (
            Some("userPrincipalName"),
            "user00002@roster.test",
            "anna.mueller@roster.test",
        ),
    ] {
        let cfg = LdapSourceConfig {
            attributes: attributes.clone(),
            user_key_attr: key_attr.map(str::to_owned),
            ..ad_config(&s.url())
        };
        let (d, _) = load(cfg).await.unwrap();
        let extras = |name: &str| serde_json::to_value(&d.groups[&GroupName::from(name)].extras);
        assert_eq!(
            extras("size-1").unwrap(),
            serde_json::json!({"vinyldns": {
                "admins": [size1_admin],
                "email": "size-1@groups.roster.test",
            }}),
            "{key_attr:?}"
        );
        assert_eq!(
            extras(samba::INTL_GROUP).unwrap(),
            serde_json::json!({"vinyldns": {
                "admins": [intl_admin],
                "email": "intl@groups.roster.test",
            }}),
            "{key_attr:?}"
        );
        // A group without either attribute leaves them to the target.
        assert_eq!(
            extras("size-1499").unwrap(),
            serde_json::json!({}),
            "{key_attr:?}"
        );
    }
}

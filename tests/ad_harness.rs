//! Tests of the Active Directory test harness itself: the real Samba AD DC of
//! `tests/support/samba.rs` and the AD-like proxy of `tests/support/adproxy.rs`, checked with the
//! `ldap3` client directly, so roster's own LDAP code is not involved. If these fail, every AD
//! test of roster would be meaningless.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapError, Scope, SearchEntry};
use support::adproxy::{AdProxy, Fault, MAX_VAL_RANGE, RANGE_RETRIEVAL_NOERR_OID};
use support::ldif;
use support::samba::{self, Samba};
use support::slapd::{self, Slapd};

/// A connection to `url`, bound as `dn` (the bind must succeed).
async fn connect(url: &str, dn: &str, pw: &str) -> Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(url).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(dn, pw).await.unwrap().success().unwrap();
    ldap
}

/// A connection to `url` bound as roster's service account in the Samba domain.
async fn as_service(url: &str) -> Ldap {
    connect(url, samba::BIND_DN, samba::BIND_PW).await
}

/// A base-scope read of `dn`: the one entry, or the error (a result code other than 0 included).
async fn read(ldap: &mut Ldap, dn: &str, attrs: &[&str]) -> Result<SearchEntry, LdapError> {
    let (entries, _) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", attrs.to_vec())
        .await?
        .success()?;
    assert_eq!(entries.len(), 1, "one entry for a base search of {dn}");
    Ok(SearchEntry::construct(entries.into_iter().next().unwrap()))
}

/// The same, with the RANGE_RETRIEVAL_NOERR control.
async fn read_noerr(ldap: &mut Ldap, dn: &str, attrs: &[&str]) -> Result<SearchEntry, LdapError> {
    let noerr = RawControl {
        ctype: RANGE_RETRIEVAL_NOERR_OID.to_owned(),
        crit: false,
        val: None,
    };
    let (entries, _) = ldap
        .with_controls(vec![noerr])
        .search(dn, Scope::Base, "(objectClass=*)", attrs.to_vec())
        .await?
        .success()?;
    assert_eq!(entries.len(), 1, "one entry for a base search of {dn}");
    Ok(SearchEntry::construct(entries.into_iter().next().unwrap()))
}

/// The attributes of `e` whose type starts with `member` (any case, any options), sorted by name.
fn member_attrs(e: &SearchEntry) -> Vec<(String, Vec<String>)> {
    let mut found: Vec<(String, Vec<String>)> = e
        .attrs
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("member"))
        .filter(|(k, _)| !k.eq_ignore_ascii_case("memberOf"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    found.sort();
    found
}

/// The one `member…` attribute of `e`: its name and values.
fn the_member_attr(e: &SearchEntry) -> (String, Vec<String>) {
    let mut found = member_attrs(e);
    assert_eq!(
        found.len(),
        1,
        "one member attribute in {:?}",
        e.attrs.keys()
    );
    found.pop().unwrap()
}

fn set(values: &[String]) -> BTreeSet<String> {
    values.iter().cloned().collect()
}

/// Every entry of a paged one-level search (page size 500).
async fn paged(ldap: &mut Ldap, base: &str, filter: &str, attrs: &[&str]) -> Vec<SearchEntry> {
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(500)),
    ];
    let mut stream = ldap
        .streaming_search_with(adapters, base, Scope::OneLevel, filter, attrs.to_vec())
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(e) = stream.next().await.unwrap() {
        out.push(SearchEntry::construct(e));
    }
    let done = stream.finish().await;
    assert_eq!(done.rc, 0, "paged search of {base}: {done:?}");
    out
}

/// Reads `member` of `dn` through range retrieval, the way a client of AD must: first plain
/// `member`, then `member;range=LO-*` until a range ends in `*`. Returns the attribute names
/// answered, in order, and every value.
async fn walk_ranges(ldap: &mut Ldap, dn: &str) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut attr = "member".to_owned();
    loop {
        let e = read(ldap, dn, &[&attr]).await.unwrap();
        let (name, vals) = the_member_attr(&e);
        values.extend(vals);
        names.push(name.clone());
        let Some((_, range)) = name.split_once(";range=") else {
            break; // plain: every value at once
        };
        let (_, hi) = range.split_once('-').unwrap();
        if hi == "*" {
            break;
        }
        attr = format!("member;range={}-*", hi.parse::<usize>().unwrap() + 1);
        assert!(
            names.len() < 100,
            "a range walk that does not end: {names:?}"
        );
    }
    (names, values)
}

#[tokio::test]
async fn samba_starts_binds_the_service_account_and_refuses_a_wrong_password() {
    let started = Instant::now();
    let s = Samba::start();
    eprintln!("Samba::start took {:.2?}", started.elapsed());
    let url = s.url();
    assert!(
        url.starts_with("ldap://127.") && url.ends_with(":389"),
        "{url}"
    );
    assert_ne!(s.addr(), std::net::Ipv4Addr::LOCALHOST);
    let pid = s.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    let mut ldap = as_service(&url).await;
    let root = read(&mut ldap, "", &["defaultNamingContext"])
        .await
        .unwrap();
    assert_eq!(root.attrs["defaultNamingContext"], [samba::BASE_DN]);
    assert_eq!(s.base_dn(), samba::BASE_DN);
    ldap.unbind().await.unwrap();

    // AD also accepts the userPrincipalName as the bind name.
    let mut ldap = connect(&url, samba::BIND_UPN, samba::BIND_PW).await;
    ldap.unbind().await.unwrap();

    let (conn, mut ldap) = LdapConnAsync::new(&url).await.unwrap();
    ldap3::drive!(conn);
    let res = ldap
        .simple_bind(samba::BIND_DN, "wrong-password")
        .await
        .unwrap();
    assert_eq!(res.rc, 49, "invalidCredentials: {res:?}");

    drop(s);
    // Dropped: killed and reaped, so the PID is gone.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[tokio::test]
async fn samba_holds_the_documented_users_and_groups() {
    let s = Samba::start();
    let mut ldap = as_service(&s.url()).await;

    let users = paged(
        &mut ldap,
        samba::PEOPLE_DN,
        "(objectClass=user)",
        &[
            "sAMAccountName",
            "userPrincipalName",
            "mail",
            "userAccountControl",
            "cn",
        ],
    )
    .await;
    let mut got: Vec<samba::TestUser> = users
        .iter()
        .map(|e| samba::TestUser {
            dn: e.dn.clone(),
            cn: e.attrs["cn"][0].clone(),
            sam: e.attrs["sAMAccountName"][0].clone(),
            upn: e.attrs["userPrincipalName"][0].clone(),
            mail: e.attrs["mail"][0].clone(),
            enabled: match e.attrs["userAccountControl"][0].as_str() {
                "512" => true,
                "514" => false,
                other => panic!("unexpected userAccountControl {other} on {}", e.dn),
            },
        })
        .collect();
    got.sort();
    let mut want = samba::all_users();
    want.sort();
    assert_eq!(got.len(), samba::USERS + samba::INTL_USERS.len());
    // Compared one by one: a failure then names the user instead of printing 5,000.
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }

    for g in samba::groups() {
        let e = read(&mut ldap, &g.dn, &["member", "sAMAccountName"])
            .await
            .unwrap();
        assert_eq!(e.attrs["sAMAccountName"], std::slice::from_ref(&g.name));
        let members = e.attrs.get("member").map(|v| set(v)).unwrap_or_default();
        // Samba returns every value of a plain read, even 5,000 (Windows AD would cut at 1,500).
        assert_eq!(members.len(), g.users.len() + g.groups.len(), "{}", g.name);
        assert_eq!(members, g.member_dns(), "{}", g.name);
    }
    assert_eq!(samba::group("size-5000").enabled_sams().len(), 4997);
    assert!(
        samba::group(samba::NESTED_PARENT)
            .member_dns()
            .contains(&samba::group_dn(samba::NESTED_CHILD))
    );

    let svc = read(
        &mut ldap,
        samba::BIND_DN,
        &["userAccountControl", "sAMAccountName"],
    )
    .await
    .unwrap();
    assert_eq!(svc.attrs["sAMAccountName"], [samba::BIND_SAM]);
    assert_eq!(
        svc.attrs["userAccountControl"],
        [samba::UAC_SERVICE.to_string()]
    );
}

#[tokio::test]
async fn samba_serves_explicit_ranges_but_never_cuts_a_plain_read() {
    let s = Samba::start();
    let mut ldap = as_service(&s.url()).await;
    let g = samba::group("size-5000");

    let plain = read(&mut ldap, &g.dn, &["member"]).await.unwrap();
    assert_eq!(the_member_attr(&plain).0, "member");
    assert_eq!(the_member_attr(&plain).1.len(), 5000);

    let first = read(&mut ldap, &g.dn, &["member;range=0-999"])
        .await
        .unwrap();
    let (name, vals) = the_member_attr(&first);
    assert_eq!(name, "member;range=0-999");
    assert_eq!(vals.len(), 1000);

    // Samba has no MaxValRange: `range=0-*` is every value.
    let all = read(&mut ldap, &g.dn, &["member;range=0-*"]).await.unwrap();
    assert_eq!(
        the_member_attr(&all),
        ("member;range=0-*".to_owned(), plain.attrs["member"].clone())
    );

    let tail = read(&mut ldap, &g.dn, &["member;range=4000-*"])
        .await
        .unwrap();
    let (name, vals) = the_member_attr(&tail);
    assert_eq!(name, "member;range=4000-*");
    assert_eq!(vals, plain.attrs["member"][4000..]);

    // Past the end, Samba answers the range with no values (Windows AD: operationsError).
    let past = read(&mut ldap, &g.dn, &["member;range=5000-*"])
        .await
        .unwrap();
    assert_eq!(
        member_attrs(&past),
        [("member;range=5000-*".to_owned(), Vec::new())]
    );
}

#[tokio::test]
async fn proxy_cuts_a_plain_member_read_at_1500_values_like_ad() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let mut ldap = as_service(&proxy.url()).await;

    let empty = read(&mut ldap, &samba::group_dn("size-0"), &["member"])
        .await
        .unwrap();
    assert_eq!(member_attrs(&empty), []);
    for n in [1, 1499, 1500] {
        let g = samba::group(&samba::size_group_name(n));
        let e = read(&mut ldap, &g.dn, &["member"]).await.unwrap();
        let (name, vals) = the_member_attr(&e);
        assert_eq!(name, "member", "{} comes back whole", g.name);
        assert_eq!(set(&vals), g.member_dns());
    }

    let g = samba::group("size-1501");
    let first = read(&mut ldap, &g.dn, &["member"]).await.unwrap();
    let (name, head) = the_member_attr(&first);
    assert_eq!(name, "member;range=0-1499");
    assert_eq!(head.len(), MAX_VAL_RANGE);
    let rest = read(&mut ldap, &g.dn, &["member;range=1500-*"])
        .await
        .unwrap();
    let (name, tail) = the_member_attr(&rest);
    assert_eq!(name, "member;range=1500-*");
    assert_eq!(tail.len(), 1);
    let all: BTreeSet<String> = head.iter().chain(&tail).cloned().collect();
    assert_eq!(all, g.member_dns());

    let stats = proxy.stats();
    assert_eq!(stats.truncated, 1);
    assert_eq!(stats.ranged_searches, 1);
    assert_eq!(stats.continuations, 1);
    assert_eq!(stats.searches, 6);
    assert_eq!(stats.connections, 1);
}

#[tokio::test]
async fn proxy_serves_ranges_of_5000_members_capped_at_1500_a_request() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let mut ldap = as_service(&proxy.url()).await;
    let g = samba::group("size-5000");

    let (names, values) = walk_ranges(&mut ldap, &g.dn).await;
    assert_eq!(
        names,
        [
            "member;range=0-1499",
            "member;range=1500-2999",
            "member;range=3000-4499",
            "member;range=4500-*"
        ]
    );
    assert_eq!(values.len(), 5000);
    assert_eq!(set(&values), g.member_dns());
    // The proxy keeps the upstream's order, so ranges line up with a plain read of Samba.
    let direct = read(&mut as_service(&s.url()).await, &g.dn, &["member"])
        .await
        .unwrap();
    assert_eq!(values, direct.attrs["member"]);
    assert_eq!(proxy.stats().continuations, 3);

    let cases = [
        ("member;range=0-*", "member;range=0-1499", 0..1500),
        ("member;range=0-2999", "member;range=0-1499", 0..1500),
        ("member;range=10-19", "member;range=10-19", 10..20),
        ("member;range=4990-6000", "member;range=4990-*", 4990..5000),
        ("member;range=4999-4999", "member;range=4999-*", 4999..5000),
        ("Member;Range=100-*", "member;range=100-1599", 100..1600),
    ];
    for (ask, answer, range) in cases {
        let e = read(&mut ldap, &g.dn, &[ask]).await.unwrap();
        let (name, vals) = the_member_attr(&e);
        assert_eq!(name, answer, "asked {ask}");
        assert_eq!(vals, direct.attrs["member"][range], "asked {ask}");
    }
}

#[tokio::test]
async fn proxy_fails_a_range_past_the_end_unless_noerr_is_sent_like_ad() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let mut ldap = as_service(&proxy.url()).await;
    let dn = samba::group_dn("size-1501");

    let err = read(&mut ldap, &dn, &["member;range=1501-*"])
        .await
        .unwrap_err();
    match err {
        LdapError::LdapResult { result } => assert_eq!(result.rc, 1, "{result:?}"),
        other => panic!("expected operationsError, got {other:?}"),
    }
    let e = read_noerr(&mut ldap, &dn, &["member;range=1501-*"])
        .await
        .unwrap();
    assert_eq!(e.dn, dn);
    assert_eq!(member_attrs(&e), []);
    // The connection is still good, and an ordinary range works with the control too.
    let e = read_noerr(&mut ldap, &dn, &["member;range=1500-*"])
        .await
        .unwrap();
    assert_eq!(the_member_attr(&e).0, "member;range=1500-*");
}

#[tokio::test]
async fn proxy_serves_ranges_in_front_of_slapd_too() {
    const N: usize = 3200;
    let mut data = ldif::base();
    let dns: Vec<String> = (0..N)
        .map(|i| {
            let uid = format!("big{i:04}");
            data.push_str(&ldif::user(&uid, &format!("Big {i:04}")));
            ldif::user_dn(&uid)
        })
        .collect();
    let refs: Vec<&str> = dns.iter().map(String::as_str).collect();
    data.push_str(&ldif::group_of_names("big", None, &refs));
    let slapd = Slapd::with_ldif(data);
    let proxy = AdProxy::start(&slapd.url());
    let mut ldap = connect(&proxy.url(), slapd::BIND_DN, slapd::BIND_PW).await;
    let dn = ldif::group_dn("big");

    let (names, values) = walk_ranges(&mut ldap, &dn).await;
    assert_eq!(
        names,
        [
            "member;range=0-1499",
            "member;range=1500-2999",
            "member;range=3000-*"
        ]
    );
    assert_eq!(values, dns);
    let e = read(&mut ldap, &dn, &["member;range=100-199"])
        .await
        .unwrap();
    assert_eq!(
        the_member_attr(&e),
        ("member;range=100-199".to_owned(), dns[100..200].to_vec())
    );
    let err = read(&mut ldap, &dn, &[&format!("member;range={N}-*")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LdapError::LdapResult { result } if result.rc == 1),
        "{err:?}"
    );
}

#[tokio::test]
async fn fault_drop_last_chunk_names_the_final_range_without_a_star() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let mut ldap = as_service(&proxy.url()).await;
    let dn = samba::group_dn("size-1501");
    proxy.set_fault(Fault::DropLastChunk, true);
    assert!(proxy.faults().is_on(Fault::DropLastChunk));

    let e = read(&mut ldap, &dn, &["member"]).await.unwrap();
    assert_eq!(the_member_attr(&e).0, "member;range=0-1499");
    let e = read(&mut ldap, &dn, &["member;range=1500-*"])
        .await
        .unwrap();
    let (name, vals) = the_member_attr(&e);
    assert_eq!(name, "member;range=1500-1500");
    assert_eq!(vals.len(), 1);
    // The client that follows it asks past the end, which AD refuses.
    let err = read(&mut ldap, &dn, &["member;range=1501-*"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LdapError::LdapResult { result } if result.rc == 1),
        "{err:?}"
    );

    proxy.set_fault(Fault::DropLastChunk, false);
    let e = read(&mut ldap, &dn, &["member;range=1500-*"])
        .await
        .unwrap();
    assert_eq!(the_member_attr(&e).0, "member;range=1500-*");
}

#[tokio::test]
async fn fault_omit_last_chunk_drops_the_final_ranges_attribute() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let mut ldap = as_service(&proxy.url()).await;
    let dn = samba::group_dn("size-1501");
    proxy.set_fault(Fault::OmitLastChunk, true);

    let e = read(&mut ldap, &dn, &["member"]).await.unwrap();
    assert_eq!(the_member_attr(&e).0, "member;range=0-1499");
    let e = read(&mut ldap, &dn, &["member;range=1500-*", "sAMAccountName"])
        .await
        .unwrap();
    assert_eq!(e.dn, dn, "the entry itself still comes");
    assert_eq!(e.attrs["sAMAccountName"], ["size-1501"]);
    assert_eq!(member_attrs(&e), []);
    // A plain read that needs no range is not a "final range".
    let small = read(&mut ldap, &samba::group_dn("size-1"), &["member"])
        .await
        .unwrap();
    assert_eq!(the_member_attr(&small).0, "member");

    proxy.set_fault(Fault::OmitLastChunk, false);
    let e = read(&mut ldap, &dn, &["member;range=1500-*"])
        .await
        .unwrap();
    assert_eq!(the_member_attr(&e).1.len(), 1);
}

#[tokio::test]
async fn fault_close_between_chunks_closes_the_connection_on_a_continuation() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let mut ldap = as_service(&proxy.url()).await;
    let dn = samba::group_dn("size-1501");
    proxy.set_fault(Fault::CloseBetweenChunks, true);

    let e = read(&mut ldap, &dn, &["member"]).await.unwrap();
    assert_eq!(the_member_attr(&e).0, "member;range=0-1499");
    // `range=0-…` is not a continuation.
    let e = read(&mut ldap, &dn, &["member;range=0-*"]).await.unwrap();
    assert_eq!(the_member_attr(&e).0, "member;range=0-1499");
    let err = read(&mut ldap, &dn, &["member;range=1500-*"])
        .await
        .unwrap_err();
    assert!(
        !matches!(err, LdapError::LdapResult { .. }),
        "a closed connection, not an LDAP result: {err:?}"
    );
    assert!(
        read(&mut ldap, &dn, &["cn"]).await.is_err(),
        "the connection is gone"
    );
    assert_eq!(proxy.stats().continuations, 1);

    proxy.set_fault(Fault::CloseBetweenChunks, false);
    let mut ldap = as_service(&proxy.url()).await;
    let e = read(&mut ldap, &dn, &["member;range=1500-*"])
        .await
        .unwrap();
    assert_eq!(the_member_attr(&e).0, "member;range=1500-*");
    assert_eq!(proxy.stats().connections, 2);
}

#[tokio::test]
async fn fault_unknown_option_adds_x_foo_to_every_member_answer() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());
    let mut ldap = as_service(&proxy.url()).await;
    proxy.set_fault(Fault::UnknownOption, true);

    let small = read(&mut ldap, &samba::group_dn("size-1"), &["member"])
        .await
        .unwrap();
    assert_eq!(
        the_member_attr(&small),
        ("member;x-foo".to_owned(), vec![samba::user(1).dn])
    );
    let dn = samba::group_dn("size-1501");
    let e = read(&mut ldap, &dn, &["member"]).await.unwrap();
    assert_eq!(the_member_attr(&e).0, "member;x-foo;range=0-1499");
    let e = read(&mut ldap, &dn, &["member;range=1500-*"])
        .await
        .unwrap();
    assert_eq!(the_member_attr(&e).0, "member;x-foo;range=1500-*");

    proxy.set_fault(Fault::UnknownOption, false);
    let e = read(&mut ldap, &dn, &["member;range=1500-*"])
        .await
        .unwrap();
    assert_eq!(the_member_attr(&e).0, "member;range=1500-*");
}

#[tokio::test]
async fn proxy_forwards_binds_paged_searches_and_writes_unchanged() {
    let s = Samba::start();
    let proxy = AdProxy::start(&s.url());

    let (conn, mut ldap) = LdapConnAsync::new(&proxy.url()).await.unwrap();
    ldap3::drive!(conn);
    let res = ldap.simple_bind(samba::BIND_DN, "wrong").await.unwrap();
    assert_eq!(res.rc, 49);

    let mut ldap = as_service(&proxy.url()).await;
    let users = paged(
        &mut ldap,
        samba::PEOPLE_DN,
        "(objectClass=user)",
        &["sAMAccountName"],
    )
    .await;
    assert_eq!(users.len(), samba::USERS + samba::INTL_USERS.len());
    // Groups read with every attribute (`*` includes member) are cut like a plain read.
    let groups = paged(&mut ldap, samba::GROUPS_DN, "(objectClass=group)", &["*"]).await;
    let big = groups
        .iter()
        .find(|g| g.dn == samba::group_dn("size-5000"))
        .unwrap();
    assert_eq!(the_member_attr(big).0, "member;range=0-1499");

    let mut admin = connect(&proxy.url(), samba::ADMIN_DN, samba::ADMIN_PW).await;
    let dn = samba::group_dn("size-1");
    admin
        .modify(
            &dn,
            vec![ldap3::Mod::Replace(
                "description",
                std::collections::HashSet::from(["changed through the proxy"]),
            )],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let e = read(&mut ldap, &dn, &["description"]).await.unwrap();
    assert_eq!(e.attrs["description"], ["changed through the proxy"]);
    assert!(proxy.stats().searches >= 4);
}

#[tokio::test]
async fn two_samba_instances_run_side_by_side() {
    let started = Instant::now();
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(Samba::start);
        let b = scope.spawn(Samba::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    eprintln!(
        "two Samba::start in parallel took {:.2?}",
        started.elapsed()
    );
    assert_ne!(a.addr(), b.addr());
    assert_ne!(a.pid(), b.pid());
    assert_ne!(a.dir(), b.dir());

    let dn = samba::group_dn("size-1");
    a.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: description\ndescription: only in a\n-\n"
    ));
    let mut on_a = as_service(&a.url()).await;
    let mut on_b = as_service(&b.url()).await;
    let ea = read(&mut on_a, &dn, &["description"]).await.unwrap();
    let eb = read(&mut on_b, &dn, &["description"]).await.unwrap();
    assert_eq!(ea.attrs["description"], ["only in a"]);
    assert_eq!(eb.attrs["description"], ["1 user(s), 0 group(s)"]);
}

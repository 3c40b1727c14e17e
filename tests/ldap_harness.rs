//! Tests of the LDAP test harness itself (`tests/support/slapd.rs`, `tests/support/ldif.rs`):
//! a real slapd, checked with the OpenLDAP command-line client, so roster's own LDAP code is not
//! involved. If these fail, every LDAP test would be meaningless.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Output;
use std::time::Instant;

use support::ldif::{self, GROUPS_DN, PEOPLE_DN};
use support::slapd::{self, BASE_DN, BIND_DN, BIND_PW, Slapd, SlapdOptions};

/// `ldapsearch -x -LLL -o ldif-wrap=no -H url` bound as roster's account, plus `args`, with the
/// machine's `ldap.conf` ignored.
fn search_as_bind(s: &Slapd, args: &[&str]) -> Output {
    s.tool("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &s.url()])
        .args(["-D", BIND_DN, "-w", BIND_PW])
        .args(args)
        .output()
        .unwrap()
}

/// A search over TLS (`starttls`: `-ZZ` on the plain port; else LDAPS) trusting only `ca`.
fn search_tls(s: &Slapd, ca: &std::path::Path, starttls: bool) -> Output {
    let mut cmd = s.tls_tool("ldapsearch", ca);
    cmd.args(["-x", "-LLL", "-o", "nettimeout=5"]);
    if starttls {
        cmd.args(["-ZZ", "-H", &s.starttls_url()]);
    } else {
        cmd.args(["-H", &s.ldaps_url()]);
    }
    cmd.args([
        "-D",
        BIND_DN,
        "-w",
        BIND_PW,
        "-b",
        GROUPS_DN,
        "(cn=group0003)",
        "cn",
    ])
    .output()
    .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Entries in `-LLL` output.
fn count_entries(o: &Output) -> usize {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("dn:"))
        .count()
}

fn groups_opts(groups: usize, prtotal_unlimited: bool) -> SlapdOptions {
    SlapdOptions {
        ldif: ldif::directory(20, groups, 3),
        prtotal_unlimited,
        ..SlapdOptions::default()
    }
}

const GROUP_FILTER: &str = "(objectClass=groupOfNames)";

#[test]
fn plain_ldap_search_as_bind_account_sees_the_directory() {
    let s = Slapd::with_ldif(ldif::directory(50, 10, 5));
    assert!(s.url().starts_with("ldap://127.0.0.1:"), "{}", s.url());

    let groups = search_as_bind(&s, &["-b", GROUPS_DN, GROUP_FILTER, "member"]);
    assert!(groups.status.success(), "{}", text(&groups));
    assert_eq!(count_entries(&groups), 10, "{}", text(&groups));
    let members = String::from_utf8_lossy(&groups.stdout)
        .lines()
        .filter(|l| l.starts_with("member: uid=user"))
        .count();
    assert_eq!(members, 10 * 5, "{}", text(&groups));

    let users = search_as_bind(
        &s,
        &["-b", PEOPLE_DN, "(objectClass=inetOrgPerson)", "mail"],
    );
    assert!(users.status.success(), "{}", text(&users));
    assert_eq!(count_entries(&users), 50);
    assert!(String::from_utf8_lossy(&users.stdout).contains("mail: user00049@example.org"));

    // Access rules: anonymous users see nothing, a wrong password is refused (49).
    let anon = s
        .tool("ldapsearch")
        .args(["-x", "-LLL", "-H", &s.url(), "-b", GROUPS_DN, GROUP_FILTER])
        .output()
        .unwrap();
    assert_eq!(count_entries(&anon), 0, "{}", text(&anon));
    let wrong = s
        .tool("ldapsearch")
        .args([
            "-x",
            "-H",
            &s.url(),
            "-D",
            BIND_DN,
            "-w",
            "wrong",
            "-b",
            BASE_DN,
        ])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(49), "{}", text(&wrong));
}

#[test]
fn paged_search_stops_at_the_size_limit_without_prtotal() {
    let s = Slapd::start(groups_opts(600, false));
    let paged = search_as_bind(
        &s,
        &["-E", "pr=100/noprompt", "-b", GROUPS_DN, GROUP_FILTER, "cn"],
    );
    assert_eq!(paged.status.code(), Some(4), "{}", text(&paged));
    assert_eq!(count_entries(&paged), 500, "{}", text(&paged));
}

#[test]
fn paged_search_reads_everything_with_prtotal_unlimited() {
    let s = Slapd::start(groups_opts(600, true));
    let paged = search_as_bind(
        &s,
        &["-E", "pr=100/noprompt", "-b", GROUPS_DN, GROUP_FILTER, "cn"],
    );
    assert!(paged.status.success(), "{}", text(&paged));
    assert_eq!(count_entries(&paged), 600);

    // Without paging the size limit still applies: clients are forced to page.
    let unpaged = search_as_bind(&s, &["-b", GROUPS_DN, GROUP_FILTER, "cn"]);
    assert_eq!(unpaged.status.code(), Some(4), "{}", text(&unpaged));
    assert_eq!(count_entries(&unpaged), 500);
}

#[test]
fn set_limits_changes_the_limits_live() {
    let s = Slapd::start(groups_opts(600, true));
    let paged = || {
        search_as_bind(
            &s,
            &["-E", "pr=100/noprompt", "-b", GROUPS_DN, GROUP_FILTER, "cn"],
        )
    };
    assert_eq!(count_entries(&paged()), 600);

    s.set_limits("users size.soft=500 size.hard=500");
    let limited = paged();
    assert_eq!(limited.status.code(), Some(4), "{}", text(&limited));
    assert_eq!(count_entries(&limited), 500);

    // size.pr rejects larger pages with adminLimitExceeded (11): another fault to inject.
    s.set_limits("users size.soft=500 size.hard=500 size.prtotal=unlimited size.pr=50");
    let too_big = paged();
    assert_eq!(too_big.status.code(), Some(11), "{}", text(&too_big));

    s.set_limits(&SlapdOptions::default().olc_limits());
    let again = paged();
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(count_entries(&again), 600);
}

#[test]
fn starttls_and_ldaps_work_with_the_test_ca() {
    let s = Slapd::with_ldif(ldif::directory(10, 5, 2));
    assert!(s.ldaps_url().starts_with("ldaps://localhost:"));
    assert!(s.starttls_url().starts_with("ldap://localhost:"));
    for starttls in [true, false] {
        let o = search_tls(&s, &s.ca_file, starttls);
        assert!(o.status.success(), "starttls={starttls}: {}", text(&o));
        assert_eq!(count_entries(&o), 1, "starttls={starttls}: {}", text(&o));
    }
}

#[test]
fn tls_fails_closed_with_another_ca() {
    let s = Slapd::with_ldif(ldif::directory(10, 5, 2));
    let wrong = slapd::other_ca(s.dir.path());
    assert_ne!(
        std::fs::read(&wrong).unwrap(),
        std::fs::read(&s.ca_file).unwrap()
    );
    for starttls in [true, false] {
        let o = search_tls(&s, &wrong, starttls);
        assert!(!o.status.success(), "starttls={starttls}: {}", text(&o));
        assert_eq!(count_entries(&o), 0);
    }
}

#[test]
fn non_ascii_values_and_escaped_dns_load_and_are_found() {
    let smith = format!("cn={},{PEOPLE_DN}", ldif::escape_dn_value("Smith, John"));
    assert_eq!(smith, "cn=Smith\\, John,ou=people,dc=example,dc=org");
    let zoe = ldif::user_dn("zoë");
    let data = [
        ldif::base(),
        ldif::user("zoë", "Zoë Ångström"),
        ldif::entry(
            &smith,
            &[
                ("objectClass", "inetOrgPerson"),
                ("cn", "Smith, John"),
                ("sn", "Smith"),
                ("uid", "jsmith"),
            ],
        ),
        ldif::group_of_names("数据组", Some(" leading space"), &[&zoe, &smith]),
        ldif::group_of_names("#hash, and+plus ", None, &[&smith]),
    ]
    .concat();
    let s = Slapd::with_ldif(data);

    // The escaped DN is a real entry.
    let o = search_as_bind(&s, &["-b", &smith, "-s", "base", "(objectClass=*)", "uid"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("uid: jsmith"));

    // A UTF-8 filter finds the group; ldapsearch prints non-ASCII and leading-space values
    // base64-encoded exactly as our encoder writes them.
    let o = search_as_bind(
        &s,
        &[
            "-b",
            GROUPS_DN,
            "(cn=数据组)",
            "cn",
            "description",
            "member",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for line in [
        ldif::attr("dn", &ldif::group_dn("数据组")),
        ldif::attr("cn", "数据组"),
        ldif::attr("description", " leading space"),
        ldif::attr("member", &zoe),
        ldif::attr("member", &smith),
    ] {
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }

    let o = search_as_bind(&s, &["-b", PEOPLE_DN, "(cn=Zoë Ångström)", "uid"]);
    assert_eq!(count_entries(&o), 1, "{}", text(&o));

    let o = search_as_bind(
        &s,
        &["-b", &ldif::group_dn("#hash, and+plus "), "-s", "base"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(count_entries(&o), 1, "{}", text(&o));
}

#[test]
fn other_group_kinds_and_empty_groups_load() {
    let data = [
        ldif::base(),
        ldif::user("alice", "Alice"),
        ldif::group_of_unique_names("uniq", Some("unique"), &[&ldif::user_dn("alice")]),
        ldif::posix_group("posix", 5000, &["alice", "bob"]),
        ldif::posix_group("posix-empty", 5001, &[]),
        ldif::group_of_names("empty", None, &[]),
        // groupOfURLs needs the extra dyngroup schema.
        ldif::entry(
            &ldif::group_dn("dynamic"),
            &[
                ("objectClass", "groupOfURLs"),
                ("cn", "dynamic"),
                (
                    "memberURL",
                    "ldap:///ou=people,dc=example,dc=org??one?(uid=*)",
                ),
            ],
        ),
    ]
    .concat();
    let s = Slapd::start(SlapdOptions {
        ldif: data,
        extra_schemas: vec!["dyngroup".into()],
        ..SlapdOptions::default()
    });
    let o = search_as_bind(
        &s,
        &[
            "-b",
            GROUPS_DN,
            "(uniqueMember=uid=alice,ou=people,dc=example,dc=org)",
        ],
    );
    assert_eq!(count_entries(&o), 1, "{}", text(&o));
    let o = search_as_bind(&s, &["-b", GROUPS_DN, "(memberUid=bob)", "gidNumber"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("gidNumber: 5000"),
        "{}",
        text(&o)
    );
    let o = search_as_bind(
        &s,
        &["-b", GROUPS_DN, "(|(cn=empty)(cn=posix-empty)(cn=dynamic))"],
    );
    assert_eq!(count_entries(&o), 3, "{}", text(&o));
}

#[test]
fn ldapmodify_changes_the_running_directory() {
    let s = Slapd::start(SlapdOptions::default());
    s.ldapmodify(&format!(
        "{}changetype: add\n{}",
        ldif::attr("dn", &ldif::group_dn("late")),
        "objectClass: groupOfNames\ncn: late\nmember: cn=roster,ou=services,dc=example,dc=org\n"
    ));
    s.ldapadd(&ldif::user("bob", "Bob"));
    let o = search_as_bind(&s, &["-b", BASE_DN, "(|(cn=late)(uid=bob))"]);
    assert_eq!(count_entries(&o), 2, "{}", text(&o));
}

#[test]
fn memberof_overlay_fills_member_of() {
    let s = Slapd::start(SlapdOptions {
        ldif: ldif::directory(5, 2, 5),
        memberof: true,
        ..SlapdOptions::default()
    });
    let o = search_as_bind(
        &s,
        &["-b", &ldif::directory_user_dn(3), "-s", "base", "memberOf"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("memberOf: cn=group0000,ou=groups,dc=example,dc=org"),
        "{out}"
    );
    assert!(
        out.contains("memberOf: cn=group0001,ou=groups,dc=example,dc=org"),
        "{out}"
    );
}

#[test]
fn stop_and_drop_leave_no_process() {
    let mut s = Slapd::start(SlapdOptions::default());
    let pid = s.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    s.stop();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    s.stop(); // twice is fine

    let s = Slapd::start(SlapdOptions::default());
    let (pid, dir) = (s.pid(), s.dir.path().to_path_buf());
    drop(s);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists(), "the instance directory is removed");
}

#[test]
fn parallel_instances_are_independent() {
    let started = Instant::now();
    let instances: Vec<Slapd> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| scope.spawn(move || Slapd::with_ldif(ldif::directory(10, i + 1, 2))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("4 parallel starts took {:?}", started.elapsed());
    let mut ports: Vec<u16> = instances
        .iter()
        .flat_map(|s| [s.port, s.ldaps_port])
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 8, "every instance has its own ports");
    for (i, s) in instances.iter().enumerate() {
        let o = search_as_bind(s, &["-b", GROUPS_DN, GROUP_FILTER, "cn"]);
        assert_eq!(count_entries(&o), i + 1, "{}", text(&o));
    }

    let started = Instant::now();
    let s = Slapd::start(SlapdOptions::default());
    eprintln!("one start took {:?} (port {})", started.elapsed(), s.port);
}

#[test]
#[should_panic(expected = "slapadd -q (loading the test data) failed")]
fn bad_data_fails_loudly() {
    // A user without the required sn: a schema violation.
    let _s = Slapd::with_ldif(format!(
        "{}dn: uid=x,{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: x\ncn: x\n\n",
        ldif::base()
    ));
}

#[test]
fn generated_directory_is_deterministic_and_shaped_like_gen_ldif() {
    let a = ldif::directory(300, 200, 10);
    assert_eq!(a, ldif::directory(300, 200, 10));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("d.ldif");
    ldif::write_directory(&path, 300, 200, 10).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), a);

    let entries: Vec<&str> = a.split("\n\n").filter(|e| !e.trim().is_empty()).collect();
    assert_eq!(entries.len(), 1 + 3 + 1 + 300 + 200);
    assert!(a.starts_with(&ldif::base()));
    let group = |g: usize| {
        let dn = format!("dn: {}\n", ldif::directory_group_dn(g));
        format!("{}\n", entries.iter().find(|e| e.starts_with(&dn)).unwrap())
    };
    for g in [0, 57, 98, 150] {
        let e = group(g);
        let members: Vec<&str> = e.lines().filter(|l| l.starts_with("member: ")).collect();
        assert_eq!(members.len(), 10, "{e}");
        assert!(
            members.windows(2).all(|w| w[0] < w[1]),
            "sorted and distinct: {e}"
        );
        assert!(e.contains(&format!("description: Group number {g}\n")));
    }
    for g in [99, 199] {
        let e = group(g);
        assert!(e.contains(&format!("member: {}\n", ldif::directory_group_dn(g - 1))));
        assert_eq!(e.lines().filter(|l| l.starts_with("member: ")).count(), 11);
    }
    assert_ne!(group(0), group(1).replace("group0001", "group0000"));
    // More members than users: every user, once.
    let small = ldif::directory(3, 1, 10);
    assert_eq!(small.matches("member: uid=").count(), 3);
}

#[test]
fn ldif_values_are_encoded_when_needed() {
    assert_eq!(ldif::base64(b""), "");
    assert_eq!(ldif::base64(b"f"), "Zg==");
    assert_eq!(ldif::base64(b"fo"), "Zm8=");
    assert_eq!(ldif::base64(b"foo"), "Zm9v");
    assert_eq!(ldif::base64("Zoë".as_bytes()), "Wm/Dqw==");
    assert_eq!(ldif::attr("cn", "plain value"), "cn: plain value\n");
    assert_eq!(ldif::attr("cn", "Zoë"), "cn:: Wm/Dqw==\n");
    assert_eq!(ldif::attr("cn", "数据组"), "cn:: 5pWw5o2u57uE\n");
    for needs in [" lead", "trail ", ":colon", "<lt", "line\nbreak", "cr\r"] {
        assert!(ldif::attr("x", needs).starts_with("x:: "), "{needs:?}");
    }
    assert_eq!(ldif::attr("x", "a:b<c"), "x: a:b<c\n");
    assert_eq!(ldif::attr("member", ""), "member:\n");
    assert_eq!(ldif::escape_dn_value("Smith, John"), "Smith\\, John");
    assert_eq!(
        ldif::escape_dn_value("#a+b;c\"d\\e<f>"),
        "\\#a\\+b\\;c\\\"d\\\\e\\<f\\>"
    );
    assert_eq!(ldif::escape_dn_value(" x "), "\\ x\\ ");
    assert_eq!(ldif::group_dn("Zoë"), "cn=Zoë,ou=groups,dc=example,dc=org");
}

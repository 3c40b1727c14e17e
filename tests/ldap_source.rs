//! The LDAP source against a real OpenLDAP `slapd` started by the test harness: paging past size
//! limits, every way a read can be partial, TLS, the three group schemas, nesting, and DNs spelt
//! in every way a directory spells them.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use roster::config::SourceConfig;
use roster::model::{Desired, GroupName, Origin, UserKey};
use roster::source::ldap::{LdapSourceConfig, MemberKind};
use roster::source::{SourceError, load_desired};
use support::ldif::{self, GROUPS_DN, PEOPLE_DN};
use support::slapd::{BIND_DN, BIND_PW, Slapd, SlapdOptions};

fn cfg(url: &str) -> LdapSourceConfig {
    support::slapd::source_config(url)
}

async fn load(cfg: LdapSourceConfig) -> Result<Desired, SourceError> {
    load_desired(&[SourceConfig::Ldap(cfg)]).await
}

fn keys(d: &Desired, group: &str) -> Vec<String> {
    d.groups[&GroupName::from(group)]
        .members
        .iter()
        .map(|u| u.as_str().to_owned())
        .collect()
}

#[tokio::test]
async fn paging_reads_2000_groups_past_a_size_limit_of_500() {
    let slapd = Slapd::start(SlapdOptions::with_ldif(ldif::directory(300, 2000, 5)));
    let d = load(cfg(&slapd.url())).await.unwrap();
    assert_eq!(d.groups.len(), 2000);
    let g = &d.groups[&GroupName::from("group0099")];
    assert_eq!(g.members.len(), 5);
    assert_eq!(
        g.children.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        ["group0098"]
    );
    assert_eq!(g.description.as_deref(), Some("Group number 99"));
}

#[tokio::test]
async fn a_search_stopped_at_the_size_limit_is_an_error_not_a_smaller_state() {
    let slapd = Slapd::start(SlapdOptions {
        prtotal_unlimited: false,
        ..SlapdOptions::with_ldif(ldif::directory(50, 600, 3))
    });
    let e = load(cfg(&slapd.url())).await.unwrap_err().to_string();
    assert!(e.contains(&slapd.url()), "{e}");
    assert!(e.contains(&format!("searching {GROUPS_DN}")), "{e}");
    assert!(
        e.contains("result code 4") && e.contains("incomplete"),
        "{e}"
    );
}

#[tokio::test]
async fn wrong_credentials_fail_with_what_ldap_said() {
    let slapd = Slapd::with_ldif(ldif::directory(5, 2, 2));
    let mut c = cfg(&slapd.url());
    c.bind_password = Some(roster::secret::Secret::new("wrong"));
    let e = load(c).await.unwrap_err().to_string();
    assert!(e.contains("invalid credentials (result code 49)"), "{e}");
    assert!(e.contains(BIND_DN) && !e.contains("wrong"), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_fails_and_a_list_of_urls_fails_over() {
    let slapd = Slapd::with_ldif(ldif::directory(5, 2, 2));
    // A port that was free a moment ago: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ldap://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let mut c = cfg(&dead);
    c.timeout = Duration::from_secs(2);
    let e = load(c.clone()).await.unwrap_err().to_string();
    assert!(
        e.contains("no server could be used") && e.contains(&dead),
        "{e}"
    );

    c.urls = vec![dead, slapd.url()];
    let d = load(c).await.unwrap();
    assert_eq!(d.groups.len(), 2);
}

#[tokio::test]
async fn a_connection_dropped_by_the_server_is_an_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ldap://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        loop {
            if let Ok((sock, _)) = listener.accept().await {
                drop(sock);
            }
        }
    });
    let mut c = cfg(&url);
    c.timeout = Duration::from_secs(2);
    let e = load(c).await.unwrap_err().to_string();
    assert!(e.contains(&url), "{e}");
}

#[tokio::test]
async fn a_server_that_stops_answering_times_out() {
    let slapd = Slapd::with_ldif(ldif::directory(5, 2, 2));
    let mut c = cfg(&slapd.url());
    c.timeout = Duration::from_secs(1);
    let pid = slapd.pid().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    let started = Instant::now();
    let result = load(c).await;
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    let e = result.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        e.to_lowercase().contains("timed out") || e.contains("timeout"),
        "{e}"
    );
}

#[tokio::test]
async fn group_of_unique_names_and_posix_groups_read_their_members() {
    let data = ldif::base()
        + &ldif::user("ann", "Ann")
        + &ldif::user("ben", "Ben")
        + &ldif::group_of_unique_names(
            "uniq",
            None,
            &[&ldif::user_dn("ann"), &ldif::user_dn("ben")],
        )
        + &ldif::posix_group("posix", 1000, &["ann", "carl"]);
    let slapd = Slapd::with_ldif(data);
    let mut c = cfg(&slapd.url());
    c.group_filter = Some("(objectClass=groupOfUniqueNames)".into());
    c.member_attr = "uniqueMember".into();
    let d = load(c.clone()).await.unwrap();
    assert_eq!(keys(&d, "uniq"), ["ann", "ben"]);

    c.group_filter = Some("(objectClass=posixGroup)".into());
    c.member_attr = "memberUid".into();
    c.member_kind = MemberKind::Uid;
    let d = load(c).await.unwrap();
    assert_eq!(keys(&d, "posix"), ["ann", "carl"]);
}

#[tokio::test]
async fn dns_resolve_across_case_escaping_and_non_ascii() {
    let smith = format!("cn=Smith\\, John,{PEOPLE_DN}");
    let data = ldif::base()
        + &ldif::entry(
            &smith,
            &[
                ("objectClass", "inetOrgPerson"),
                ("cn", "Smith, John"),
                ("sn", "Smith"),
                ("uid", "jsmith"),
            ],
        )
        + &ldif::user("zoë", "Zoë")
        + &ldif::group_of_names("Ärzte 数据组", Some("Ärzte"), &[&ldif::user_dn("zoë")])
        + &ldif::group_of_names(
            "mixed",
            None,
            &[
                // The same users as the entries, spelt with other case, spacing and escapes.
                "CN=smith\\2C john, OU=People,DC=example,DC=org",
                "UID=ZOË,ou=people,dc=example,dc=org",
                &format!("cn=Ärzte 数据组,{GROUPS_DN}").to_uppercase(),
                "uid=ghost,ou=elsewhere,dc=example,dc=org",
            ],
        );
    let slapd = Slapd::with_ldif(data);
    let d = load(cfg(&slapd.url())).await.unwrap();
    let mixed = &d.groups[&GroupName::from("mixed")];
    assert!(
        mixed.members.contains(&UserKey::from("jsmith")),
        "{mixed:?}"
    );
    assert!(
        mixed.members.contains(&UserKey::from("ZOË"))
            || mixed.members.contains(&UserKey::from("zoë")),
        "{mixed:?}"
    );
    assert!(
        !mixed.members.iter().any(|m| m.as_str().contains("ghost")),
        "an unknown DN became a member"
    );
    assert_eq!(
        mixed
            .children
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["Ärzte 数据组"]
    );
    assert_eq!(keys(&d, "Ärzte 数据组"), ["zoë"]);
}

#[tokio::test]
async fn a_cycle_of_nested_groups_is_reported_not_followed() {
    let data = ldif::base()
        + &ldif::user("ann", "Ann")
        + &ldif::group_of_names("a", None, &[&ldif::user_dn("ann"), &ldif::group_dn("b")])
        + &ldif::group_of_names("b", None, &[&ldif::group_dn("a")]);
    let slapd = Slapd::with_ldif(data);
    let e = load(cfg(&slapd.url())).await.unwrap_err().to_string();
    assert!(e.contains("cycle: a → b → a"), "{e}");
}

#[tokio::test]
async fn starttls_and_ldaps_with_a_ca_file_work_and_a_wrong_ca_fails_closed() {
    let slapd = Slapd::with_ldif(ldif::directory(5, 3, 2));
    let mut c = cfg(&slapd.starttls_url());
    c.starttls = true;
    c.ca_file = Some(slapd.ca_file.clone());
    assert_eq!(load(c.clone()).await.unwrap().groups.len(), 3);

    let mut s = cfg(&slapd.ldaps_url());
    s.ca_file = Some(slapd.ca_file.clone());
    assert_eq!(load(s.clone()).await.unwrap().groups.len(), 3);

    let wrong = support::slapd::other_ca(slapd.dir.path());
    for mut bad in [c, s] {
        bad.ca_file = Some(wrong.clone());
        let e = load(bad).await.unwrap_err().to_string();
        assert!(e.to_lowercase().contains("certificate"), "{e}");
    }
}

#[tokio::test]
async fn a_group_defined_by_ldap_and_by_a_toml_file_is_an_error_naming_both() {
    let slapd = Slapd::with_ldif(ldif::directory(5, 2, 2));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.toml");
    std::fs::write(
        &file,
        "[[group]]\nname = \"group0001\"\n\n[[group]]\nname = \"extra\"\n",
    )
    .unwrap();
    let toml = SourceConfig::Toml(roster::config::TomlSourceConfig {
        path: file.clone(),
        origin: Origin::File {
            path: dir.path().join("roster.toml"),
            line: 3,
            col: 8,
        },
    });
    let e = load_desired(&[SourceConfig::Ldap(cfg(&slapd.url())), toml])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("group `group0001` is also defined by another source"),
        "{e}"
    );
    assert!(
        e.contains("extra.toml:1:1") && e.contains("cn=group0001,ou=groups,dc=example,dc=org"),
        "{e}"
    );
}

/// The simulators, with a Contensis that knows the generated users `user00000`.. (`n` of them).
async fn contensis_with_users(n: usize) -> roster::sim::RunningSim {
    let users: Vec<String> = (0..n).map(|i| format!("\"user{i:05}\"")).collect();
    let seed = format!(
        "[contensis]\nclient_id = \"roster\"\nclient_secret = \"cms-secret\"\nusers = [{}]\n",
        users.join(", ")
    );
    roster::sim::start(
        roster::sim::parse_seed(&seed, "seed").unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

/// A config folder with an LDAP source and the Contensis simulator as target.
fn write_config(dir: &std::path::Path, slapd: &Slapd, sim_url: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("ldap-pw"), format!("{BIND_PW}\n")).unwrap();
    std::fs::write(dir.join("cms-secret"), "cms-secret\n").unwrap();
    let config = dir.join("roster.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\ntype = \"ldap\"\nurl = \"{}\"\nbind_dn = \"{BIND_DN}\"\nbind_password_file = \"ldap-pw\"\n\
             base_dn = \"{GROUPS_DN}\"\nuser_base_dn = \"{PEOPLE_DN}\"\npage_size = 100\n\n\
             [[target]]\nname = \"cms\"\ntype = \"contensis\"\nurl = \"{sim_url}\"\nclient_id = \"roster\"\n\
             client_secret_file = \"cms-secret\"\n",
            slapd.url()
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn ldap_to_contensis_end_to_end_converges_and_a_partial_read_writes_nothing() {
    let slapd = Slapd::start(SlapdOptions::with_ldif(ldif::directory(40, 600, 4)));
    let sim = contensis_with_users(40).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &slapd, &sim.url());

    let out = support::roster_at(&config, &["apply"], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        support::stdout(&out),
        support::stderr(&out)
    );
    assert_eq!(
        sim.contensis.group_names().len(),
        601,
        "600 groups and System Administrators"
    );
    let g = sim.contensis.group("group0199").unwrap();
    assert_eq!(g.members.len(), 4);
    assert!(g.children.contains("group0198"));
    let out = support::roster_at(&config, &["plan", "--detailed-exitcode"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::stdout(&out));

    // The directory now stops paged searches at 500 entries: the read is partial.
    slapd.set_limits("users size.soft=500 size.hard=500");
    slapd.ldapmodify(&format!(
        "dn: cn=group0001,{GROUPS_DN}\nchangetype: modify\nreplace: description\ndescription: changed\n"
    ));
    let writes = sim.contensis.writes();
    let out = support::roster_at(&config, &["apply"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", support::stdout(&out));
    let err = support::stderr(&out);
    assert!(
        err.contains("result code 4") && err.contains("nothing was planned or written"),
        "{err}"
    );
    assert_eq!(
        sim.contensis.writes(),
        writes,
        "a partial LDAP read led to writes"
    );
}

/// The one source read of a load, as the plan's read report shows it.
async fn read_report(cfg: LdapSourceConfig) -> roster::source::ldap::LdapRead {
    let load = roster::source::load(&[SourceConfig::Ldap(cfg)])
        .await
        .unwrap();
    match load.reads.as_slice() {
        [roster::source::SourceRead::Ldap(read)] => read.clone(),
        other => panic!("expected one LDAP read, got {other:?}"),
    }
}

#[tokio::test]
async fn the_read_report_counts_groups_users_and_pages() {
    let slapd = Slapd::with_ldif(ldif::directory(300, 250, 5));
    // page_size is 100: 250 groups come in 3 pages.
    let uid_keys = read_report(cfg(&slapd.url())).await;
    assert_eq!(
        (
            uid_keys.directory.as_str(),
            uid_keys.groups,
            uid_keys.users,
            uid_keys.pages,
            uid_keys.ranged
        ),
        ("openldap", 250, 0, 3, 0),
        "{uid_keys:?}"
    );
    assert_eq!(uid_keys.server, slapd.url());
    assert_eq!(uid_keys.base, GROUPS_DN);

    // Keys that the DNs do not carry take the user search: 300 users in 3 more pages.
    let mut c = cfg(&slapd.url());
    c.user_key_attr = Some("mail".to_owned());
    let mail_keys = read_report(c).await;
    assert_eq!(
        (mail_keys.groups, mail_keys.users, mail_keys.pages),
        (250, 300, 6),
        "{mail_keys:?}"
    );
}

#[tokio::test]
async fn exclude_disabled_on_a_directory_that_is_not_ad_fails_the_load() {
    let slapd = Slapd::with_ldif(ldif::directory(5, 2, 2));
    let mut c = cfg(&slapd.url());
    c.exclude_disabled = true;
    let e = load(c).await.unwrap_err().to_string();
    assert!(
        e.contains("exclude_disabled") && e.contains(&slapd.url()),
        "{e}"
    );
}

#[tokio::test]
async fn per_target_attributes_are_read_from_the_group_entries() {
    use roster::source::ldap::{MappedAttribute, MappedKind};
    let ops = [
        ("objectClass", "groupOfNames"),
        ("objectClass", "extensibleObject"),
        ("cn", "ops"),
        ("mail", "ops@example.org"),
        ("businessCategory", "platform"),
    ];
    let ann = ldif::user_dn("ann");
    let bob = ldif::user_dn("bob");
    let owners = [("owner", ann.as_str()), ("owner", bob.as_str())];
    let members = [("member", ann.as_str())];
    let ops: Vec<(&str, &str)> = ops.into_iter().chain(owners).chain(members).collect();
    let data = ldif::base()
        + &ldif::user("ann", "Ann")
        + &ldif::user("bob", "Bob")
        + &ldif::entry(&ldif::group_dn("ops"), &ops)
        + &ldif::group_of_names("bare", None, &[&ann]);
    let slapd = Slapd::with_ldif(data);
    let mut c = cfg(&slapd.url());
    let map = |target: &str, path: &[&str], attr: &str, kind| MappedAttribute {
        target_type: target.to_owned(),
        path: path.iter().map(|p| (*p).to_owned()).collect(),
        ldap_attr: attr.to_owned(),
        kind,
    };
    c.attributes = vec![
        map(
            "contensis",
            &["custom", "team"],
            "businessCategory",
            MappedKind::Text,
        ),
        map("vinyldns", &["admins"], "owner", MappedKind::UserDns),
        map("vinyldns", &["email"], "mail", MappedKind::Text),
    ];
    let d = load(c).await.unwrap();
    let ops = &d.groups[&GroupName::from("ops")];
    assert_eq!(
        serde_json::to_value(&ops.extras).unwrap(),
        serde_json::json!({
            "contensis": {"custom": {"team": "platform"}},
            "vinyldns": {"admins": ["ann", "bob"], "email": "ops@example.org"},
        })
    );
    assert_eq!(keys(&d, "ops"), ["ann"]);
    // A group without the attributes leaves them to the target.
    assert!(d.groups[&GroupName::from("bare")].extras.is_empty());
}

#[tokio::test]
async fn a_group_whose_dn_starts_like_a_users_read_late_is_still_a_child() {
    // Members `uid=…` are decided as users while the groups arrive, on the assumption that no
    // group's DN starts with `uid`; a group read later that does start so undoes it, and the
    // groups are read again with every member decided at the end.
    let team = format!("uid=team,{GROUPS_DN}");
    let mut data = ldif::base() + &ldif::user("ann", "Ann");
    for i in 0..150 {
        data += &ldif::group_of_names(&format!("g{i:03}"), None, &[&ldif::user_dn("ann"), &team]);
    }
    data += &ldif::entry(
        &team,
        &[
            ("objectClass", "groupOfNames"),
            ("objectClass", "uidObject"),
            ("cn", "team"),
            ("uid", "team"),
            ("member", &ldif::user_dn("ann")),
        ],
    );
    let slapd = Slapd::with_ldif(data);
    let d = load(cfg(&slapd.url())).await.unwrap();
    for name in ["g000", "g149"] {
        let g = &d.groups[&GroupName::from(name)];
        assert_eq!(keys(&d, name), ["ann"], "{g:?}");
        assert_eq!(
            g.children.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            ["team"],
            "{g:?}"
        );
    }
    // 151 groups in pages of 100, read twice, and the one page of users the first reading
    // looked up `uid=team` in (a DN outside the users' base, taken then for a user's).
    let read = read_report(cfg(&slapd.url())).await;
    assert_eq!(
        (read.groups, read.pages, read.users),
        (151, 5, 1),
        "{read:?}"
    );
}

#[tokio::test]
async fn the_read_records_the_directorys_context_csn_where_there_is_one() {
    // Without a sync provider slapd keeps no contextCSN: the read goes on without one.
    let plain = Slapd::with_ldif(ldif::directory(5, 2, 2));
    assert_eq!(read_report(cfg(&plain.url())).await.context_csn, None);
    // A directory restored from a provider's backup carries its contextCSN on the suffix entry,
    // one value per provider.
    let csns = [
        "20260504101502.113000Z#000000#002#000000",
        "20260504101502.113000Z#000000#001#000000",
    ];
    let suffix = format!("dn: {}\n", ldif::BASE_DN);
    let with_csn = ldif::directory(5, 2, 2).replacen(
        &suffix,
        &format!("{suffix}contextCSN: {}\ncontextCSN: {}\n", csns[0], csns[1]),
        1,
    );
    let restored = Slapd::with_ldif(with_csn);
    assert_eq!(
        read_report(cfg(&restored.url())).await.context_csn,
        Some(format!("{} {}", csns[1], csns[0]))
    );
}

/// `roster run` on an OpenLDAP with `syncprov`: a member added in the directory reaches the
/// Contensis simulator within seconds, with no tick and no signal (the persistent search starts a
/// run), counted as a `syncrepl` trigger.
#[tokio::test]
async fn the_daemon_applies_a_directory_change_within_seconds() {
    let slapd = Slapd::start(SlapdOptions {
        syncprov: true,
        ..SlapdOptions::with_ldif(ldif::directory(10, 5, 2))
    });
    let sim = contensis_with_users(10).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &slapd, &sim.url());
    let mut text = std::fs::read_to_string(&config).unwrap();
    // A schedule that never comes within the test: only the directory's changes start runs.
    text.push_str("\n[daemon]\nschedule = \"0 0 1 1 *\"\ndebounce = \"500ms\"\n");
    std::fs::write(&config, text).unwrap();
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let members = |g: &str| -> Vec<String> {
        sim.contensis
            .group(g)
            .map(|g| g.members.into_iter().collect())
            .unwrap_or_default()
    };
    let wait = async |what: &str, ok: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    wait("the start-up run", &|| members("group0001").len() == 2).await;
    assert!(!members("group0001").contains(&"user00009".to_owned()));

    // Let the watcher finish its refresh, then change the directory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changed = Instant::now();
    slapd.ldapmodify(&format!(
        "dn: {}\nchangetype: modify\nadd: member\nmember: {}\n",
        ldif::directory_group_dn(1),
        ldif::directory_user_dn(9)
    ));
    wait("the change applied", &|| {
        members("group0001").contains(&"user00009".to_owned())
    })
    .await;
    let took = changed.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{took:?} from the LDAP write to the apply"
    );
    daemon.kill().await.unwrap();
}

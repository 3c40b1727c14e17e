//! LDAP source load speed against `ldapsearch` on the same slapd, in one run.
//!
//! `cargo bench --bench ldap` runs two cases, each in a child process so that its peak memory is
//! its own: 10,000 users and 2,000 groups of 50 members, and 100,000 users and 20,000 groups of
//! 50. For each it times, as medians of several runs:
//! - roster's source load (connect, bind, all pages of groups, DNs mapped to user keys), once
//!   with `user_key_attr = "uid"` (member DNs whose first RDN is the key need no user search) and
//!   once with `user_key_attr = "mail"` (every DN is mapped through one paged search of the users);
//! - `ldapsearch -x -LLL -E pr=1000/noprompt` of the same groups and of the same users.
//!
//! Target: roster within 1.5× of ldapsearch.

#![allow(clippy::unwrap_used)]

// The test harness's slapd and LDIF generator, shared rather than copied. At the crate root,
// `super::ldif` in slapd.rs names the module below.
#[path = "../tests/support/ldif.rs"]
mod ldif;
#[path = "../tests/support/slapd.rs"]
mod slapd;

use std::process::Command;
use std::time::{Duration, Instant};

use ldif::{GROUPS_DN, PEOPLE_DN};
use roster::config::SourceConfig;
use roster::source::ldap::LdapSourceConfig;
use slapd::{BIND_DN, BIND_PW, Slapd, SlapdOptions};

const RUNS: usize = 5;

fn cfg(url: &str, key: &str) -> LdapSourceConfig {
    LdapSourceConfig {
        user_key_attr: Some(key.to_owned()),
        page_size: 1000,
        timeout: Duration::from_secs(300),
        ..slapd::source_config(url)
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ldapsearch(slapd: &Slapd, base: &str, filter: &str, attrs: &[&str]) -> Duration {
    let started = Instant::now();
    let out = slapd
        .tool("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-E",
            "pr=1000/noprompt",
            "-H",
        ])
        .arg(slapd.url())
        .args(["-D", BIND_DN, "-w", BIND_PW, "-b", base, filter])
        .args(attrs)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn case(users: usize, groups: usize, per: usize) {
    let data = tempfile::NamedTempFile::new().unwrap();
    ldif::write_directory(data.path(), users, groups, per).unwrap();
    let started = Instant::now();
    let slapd = Slapd::start(SlapdOptions::with_ldif(
        std::fs::read_to_string(data.path()).unwrap(),
    ));
    eprintln!(
        "slapd loaded {users} users, {groups} groups in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let load = |key: &str| {
        let c = cfg(&slapd.url(), key);
        let started = Instant::now();
        let d = rt
            .block_on(roster::source::load_desired(&[SourceConfig::Ldap(c)]))
            .unwrap();
        let took = started.elapsed();
        assert_eq!(d.groups.len(), groups);
        let members: usize = d
            .groups
            .values()
            .map(|g| g.members.len() + g.children.len())
            .sum();
        assert!(members >= groups * per, "{members}");
        took
    };
    // Warm the server's caches once, then alternate the clients run by run.
    let _ = load("mail");
    let (mut uid, mut mail, mut ls_groups, mut ls_users) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        uid.push(load("uid"));
        mail.push(load("mail"));
        ls_groups.push(ldapsearch(
            &slapd,
            GROUPS_DN,
            "(objectClass=groupOfNames)",
            &["cn", "description", "member"],
        ));
        ls_users.push(ldapsearch(
            &slapd,
            PEOPLE_DN,
            "(objectClass=inetOrgPerson)",
            &["mail"],
        ));
    }
    let (uid, mail, lg, lu) = (
        median(uid),
        median(mail),
        median(ls_groups),
        median(ls_users),
    );
    let both = lg + lu;
    println!(
        "{users} users, {groups} groups x {per}: roster uid-keys {:.0} ms ({:.2}x ldapsearch groups {:.0} ms); \
         roster mail-keys {:.0} ms ({:.2}x ldapsearch groups+users {:.0} ms); peak RSS of roster's process {}",
        uid.as_secs_f64() * 1e3,
        uid.as_secs_f64() / lg.as_secs_f64(),
        lg.as_secs_f64() * 1e3,
        mail.as_secs_f64() * 1e3,
        mail.as_secs_f64() / both.as_secs_f64(),
        both.as_secs_f64() * 1e3,
        peak_rss()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(c) = args.iter().find_map(|a| a.strip_prefix("--case=")) {
        match c {
            "small" => case(10_000, 2_000, 50),
            "large" => case(100_000, 20_000, 50),
            other => panic!("unknown case {other}"),
        }
        return;
    }
    // `cargo bench` passes --bench; `cargo test` (which only lists) runs nothing.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    for c in ["small", "large"] {
        let status = Command::new(std::env::current_exe().unwrap())
            .arg(format!("--case={c}"))
            .status()
            .unwrap();
        assert!(status.success(), "case {c} failed");
    }
}

//! LDAP source load speed against `ldapsearch` on the same slapd, in one run.
//!
//! `cargo bench --bench ldap` runs two cases, each in a child process of its own: 10,000 users
//! and 2,000 groups of 50 members, and 100,000 users and 20,000 groups of 50. For each it times,
//! as medians of several runs that alternate the clients:
//! - roster's source load (connect, bind, all pages of groups, DNs mapped to user keys, the
//!   desired state built), once with `user_key_attr = "uid"` (member DNs whose first RDN is the
//!   key need no user search) and once with `user_key_attr = "mail"` (every DN is mapped through
//!   one paged search of the users);
//! - `ldapsearch -x -LLL -o ldif-wrap=no -E pr=1000/noprompt` of the same groups (`cn`,
//!   `description`, `member`) and of the same users (`mail`), bound as the same account, its
//!   LDIF read from a pipe by this process. For the mail path the two ldapsearch runs are added:
//!   one after the other, as a shell script would run them.
//!
//! Both clients ask for the same entries and the same attributes with the same page size (1000).
//!
//! What is compared with what, honestly:
//! - `ldapsearch` is timed as a whole process (exec, dynamic linking, connect, bind, search, LDIF
//!   written, exit). So roster is timed the same way, as the headline figure: this bench binary
//!   re-executes itself with `--load=URL` and the child does nothing but the source load (a
//!   fresh multi-thread tokio runtime as `roster` builds one, connect, bind, load) and exits
//!   without freeing what it loaded (its work ends there, as ldapsearch's ends with its output);
//!   the ratio printed as `x ldapsearch` is child process against ldapsearch process. The child
//!   allocates with mimalloc, as the `roster` binary does. The time of
//!   [`roster::source::load_desired`] in this process (no process start, a runtime already
//!   running, until the desired state is in hand) is printed beside it, as `in-process`.
//! - roster builds the desired state (member DNs mapped to keys, sets, child groups);
//!   ldapsearch only writes LDIF. On the mail path roster reads the users on a second
//!   connection while it reads the groups on the first (OpenLDAP keeps one paged search per
//!   connection), where the two ldapsearch runs are one after the other: run as two processes at
//!   once they would gain some of that overlap too.
//! - `CPU` is user + system time of the client (the child, or this process for in-process) and
//!   of slapd during the run, from `/proc` (10 ms ticks): on a busy machine it is a steadier
//!   measure than wall time. The peak RSS printed is the load child's own (`VmHWM` at its end),
//!   so the LDIF and slapd's bookkeeping in this process do not count in it.
//! - The digest printed under each case hashes every group, description, member and child
//!   loaded: two builds that print the same digest loaded the same desired state.
//!
//! On a shared 2-core machine slapd and the client compete for the cores, and other work adds
//! noise: compare the ratios of one run, not the milliseconds of two.
//!
//! Target: roster within 1.2× of ldapsearch on both paths.
//!
//! For profiling, `--serve=small|large` starts the case's slapd, prints its URL and keeps it
//! up until standard input closes; `--load=URL [--key=uid|mail]` is then one load to put under
//! `perf record` or valgrind.

#![allow(clippy::unwrap_used)]

// The test harness's slapd and LDIF generator, shared rather than copied. At the crate root,
// `super::ldif` in slapd.rs names the module below.
#[path = "../tests/support/ldif.rs"]
mod ldif;
#[path = "../tests/support/slapd.rs"]
mod slapd;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::process::Command;
use std::time::{Duration, Instant};

use ldif::{GROUPS_DN, PEOPLE_DN};
use roster::config::SourceConfig;
use roster::model::Desired;
use roster::source::ldap::LdapSourceConfig;
use slapd::{BIND_DN, BIND_PW, Slapd, SlapdOptions};

const RUNS: usize = 7;

/// The allocator the `roster` binary uses, so that the load child is timed as roster runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cfg(url: &str, key: &str) -> LdapSourceConfig {
    LdapSourceConfig {
        user_key_attr: Some(key.to_owned()),
        page_size: 1000,
        timeout: Duration::from_secs(300),
        ..slapd::source_config(url)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ldapsearch(slapd: &Slapd, base: &str, filter: &str, attrs: &[&str]) {
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// This process's peak resident set (`VmHWM`).
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

/// The number of groups, of member and child references, and a digest of everything loaded, so
/// that two builds can be checked to load exactly the same desired state.
fn summary(d: &Desired) -> (usize, usize, u64) {
    let mut h = DefaultHasher::new();
    let mut refs = 0;
    for (name, g) in &d.groups {
        name.0.hash(&mut h);
        g.description.hash(&mut h);
        for m in &g.members {
            m.as_str().hash(&mut h);
        }
        0xffu8.hash(&mut h);
        for c in &g.children {
            c.0.hash(&mut h);
        }
        refs += g.members.len() + g.children.len();
    }
    (d.groups.len(), refs, h.finish())
}

/// One source load in this process, as `roster` runs it (a multi-thread runtime, the load on the
/// main thread); the line it prints is read by [`load_process`]. With `digest`, the groups and
/// references are counted and everything loaded is hashed. Either way the process then exits
/// without freeing what it loaded: its work ends there, as ldapsearch's ends with its output.
fn load_child(url: &str, key: &str, digest: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = rt
        .block_on(roster::source::load_desired(&[SourceConfig::Ldap(cfg(
            url, key,
        ))]))
        .unwrap();
    if digest {
        let (groups, refs, digest) = summary(&d);
        println!("groups={groups} refs={refs} digest={digest:016x}");
    } else {
        println!("groups={}", d.groups.len());
    }
    println!("rss={}", peak_rss());
    std::mem::forget(d);
    std::process::exit(0);
}

/// One source load in a child process; returns the child's lines.
fn load_process(url: &str, key: &str, digest: bool) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg(format!("--load={url}"))
        .arg(format!("--key={key}"))
        .args(digest.then_some("--digest"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().replace('\n', " ")
}

fn start(users: usize, groups: usize, per: usize) -> Slapd {
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
    slapd
}

/// CPU time from `/proc/PID/stat`: `own` = utime + stime, else cutime + cstime (of the children
/// waited for). In clock ticks of 10 ms (`USER_HZ` is 100 on Linux).
fn cpu_ticks(pid: &str, own: bool) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    // utime is field 14 of stat, the 12th after the name; cutime the 14th.
    let at = if own { 11 } else { 13 };
    fields.get(at).copied().unwrap_or(0) + fields.get(at + 1).copied().unwrap_or(0)
}

/// One timed run: wall time, the client's CPU time and slapd's CPU time (in ms).
#[derive(Clone, Copy, Default)]
struct Run {
    wall: Duration,
    client_ms: u64,
    server_ms: u64,
}

/// Times `f`; `child`: the client is a child process (else this process).
fn timed(slapd: &Slapd, child: bool, f: impl FnOnce()) -> Run {
    let pid = slapd.pid().to_string();
    let (me, sv) = (cpu_ticks("self", !child), cpu_ticks(&pid, true));
    let started = Instant::now();
    f();
    let wall = started.elapsed();
    Run {
        wall,
        client_ms: (cpu_ticks("self", !child) - me) * 10,
        server_ms: (cpu_ticks(&pid, true) - sv) * 10,
    }
}

/// The run of median wall time.
fn median_run(mut v: Vec<Run>) -> Run {
    v.sort_by_key(|r| r.wall);
    v[v.len() / 2]
}

fn case(users: usize, groups: usize, per: usize) {
    let slapd = start(users, groups, per);
    let url = slapd.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Timed up to the desired state in hand; checking it and freeing it are not.
    let loaded = std::cell::RefCell::new(Vec::new());
    let load_in_process = |key: &str| {
        let d = rt
            .block_on(roster::source::load_desired(&[SourceConfig::Ldap(cfg(
                &url, key,
            ))]))
            .unwrap();
        loaded.borrow_mut().push(d);
    };
    let check = || {
        for d in loaded.borrow_mut().drain(..) {
            let (n, refs, _) = summary(&d);
            assert_eq!(n, groups);
            assert!(refs >= groups * per, "{refs}");
        }
    };
    let ls_groups = || {
        ldapsearch(
            &slapd,
            GROUPS_DN,
            "(objectClass=groupOfNames)",
            &["cn", "description", "member"],
        );
    };
    let ls_users = || {
        ldapsearch(&slapd, PEOPLE_DN, "(objectClass=inetOrgPerson)", &["mail"]);
    };
    // Warm the server's caches once (and check what is loaded), then alternate the clients run
    // by run.
    load_in_process("mail");
    check();
    let digests = [
        load_process(&url, "uid", true),
        load_process(&url, "mail", true),
    ];
    let mut runs: [Vec<Run>; 6] = Default::default();
    let mut lines = [String::new(), String::new()];
    for _ in 0..RUNS {
        for (i, key) in ["uid", "mail"].into_iter().enumerate() {
            runs[i].push(timed(&slapd, true, || {
                lines[i] = load_process(&url, key, false)
            }));
        }
        runs[2].push(timed(&slapd, false, || load_in_process("uid")));
        check();
        runs[3].push(timed(&slapd, false, || load_in_process("mail")));
        check();
        runs[4].push(timed(&slapd, true, ls_groups));
        runs[5].push(timed(&slapd, true, ls_users));
    }
    let rss = |line: &str| {
        line.split_once("rss=")
            .map_or("unknown".to_owned(), |(_, r)| r.trim().to_owned())
    };
    let [uid, mail, uid_in, mail_in, lg, lu] = runs.map(median_run);
    let both = Run {
        wall: lg.wall + lu.wall,
        client_ms: lg.client_ms + lu.client_ms,
        server_ms: lg.server_ms + lu.server_ms,
    };
    for (path, roster, inproc, ls, what, line) in [
        ("uid-keys", uid, uid_in, lg, "groups", &lines[0]),
        ("mail-keys", mail, mail_in, both, "groups+users", &lines[1]),
    ] {
        println!(
            "{users} users, {groups} groups x {per}: {path}: roster {:.0} ms ({:.2}x ldapsearch \
             {what} {:.0} ms; in-process {:.0} ms, {:.2}x); CPU roster {} + slapd {} ms, \
             ldapsearch {} + slapd {} ms; peak RSS {}",
            ms(roster.wall),
            ms(roster.wall) / ms(ls.wall),
            ms(ls.wall),
            ms(inproc.wall),
            ms(inproc.wall) / ms(ls.wall),
            roster.client_ms,
            roster.server_ms,
            ls.client_ms,
            ls.server_ms,
            rss(line),
        );
    }
    eprintln!(
        "  loaded (uid): {}\n  loaded (mail): {}",
        digests[0], digests[1]
    );
}

/// Starts a case's slapd for profiling and keeps it up until standard input closes.
fn serve(users: usize, groups: usize, per: usize) {
    let slapd = start(users, groups, per);
    println!("{}", slapd.url());
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
}

fn sizes(name: &str) -> (usize, usize, usize) {
    match name {
        "small" => (10_000, 2_000, 50),
        "large" => (100_000, 20_000, 50),
        other => panic!("unknown case {other}"),
    }
}

fn main() {
    // As the `roster` binary runs (`roster::memory`).
    roster::memory::small_pages_only();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().find_map(|a| a.strip_prefix(name));
    if let Some(url) = arg("--load=") {
        load_child(
            url,
            arg("--key=").unwrap_or("uid"),
            args.iter().any(|a| a == "--digest"),
        );
        return;
    }
    if let Some(c) = arg("--serve=") {
        let (u, g, p) = sizes(c);
        serve(u, g, p);
        return;
    }
    if let Some(c) = arg("--case=") {
        let (u, g, p) = sizes(c);
        case(u, g, p);
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

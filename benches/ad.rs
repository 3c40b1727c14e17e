//! One 100,000-member Active Directory group read in ranges from a real Samba AD DC: roster's
//! source load against `ldapsearch` reading the same ranges, and against an in-process `ldap3`
//! loop making the same reads (the protocol floor), all in one run.
//!
//! `cargo bench --bench ad` starts Samba from the [`BIG`] dataset of `tests/support/samba.rs`
//! (100,000 users `CN=Big 000001` … under `OU=People`, `sAMAccountName: big000001` …,
//! `userAccountControl: 512`, and one group `CN=big,OU=Groups` with all of them as `member`).
//! Its template is built the first time (6.5 to 10 minutes on the 2-core machine, see the module
//! doc of `samba.rs`) and cached under `target/tmp`. Then, for `range_size` 1000 and 1500, it
//! times as medians of [`RUNS`] runs, the clients alternated run by run after one warm-up:
//!
//! - **roster**: `load_desired` of an `LdapSourceConfig` with `directory = Ad`,
//!   `user_key_attr = "sAMAccountName"`, `page_size = 1000`: connect and bind, the paged group
//!   search asking for `member;range=0-(size-1)`, the continuation reads until a range ends in
//!   `*`, then (AD member DNs are `CN=…`, not keys) one paged search of the users to map the DNs.
//!   Each load runs in a child process of its own (allocating with mimalloc, as the `roster`
//!   binary does), which reports the load's time and its peak RSS (`VmHWM`), and asserts that
//!   `big` has 100,000 members with the right keys;
//! - **roster, ranges only**: the same with `user_key_attr = "cn"` (the key is the DN's first
//!   RDN, so no user search), to set against the ranged reads alone;
//! - **ldapsearch**: one process per range (`ldapsearch -x -LLL -o ldif-wrap=no -s base -b <group>
//!   '(objectClass=*)' 'member;range=N-M'`, until the answer's range ends in `*`), plus the paged
//!   user search roster makes (`-E pr=1000/noprompt`, `sAMAccountName`): the sum of those process
//!   times. A single `ldapsearch` cannot follow ranges, so each read pays a process start, a
//!   connect and a bind that roster does not;
//! - **ldap3**: the same reads in this process on one connection (bind, the group search, the
//!   base reads, the paged user search), each entry decoded into a `SearchEntry` and nothing
//!   more: what any client of this LDAP library must spend.
//!
//! Wall times on a shared 2-core machine swing by ±30 % from run to run, so each ratio is the
//! median of per-run ratios (clients run minutes apart at most, in an order rotated run by run),
//! and the bench also reports the CPU each client and Samba spent (`/proc/<pid>/stat`: this
//! process, the children it waited for, and Samba), a steadier measure of the work a read costs.
//! A last line times open-ended ranges (`member;range=N-*`: as many values as the server gives)
//! with `ldap3`.
//!
//! Target (issue 11, for the LDAP paths): roster within 1.2× of ldapsearch.
//!
//! # Findings (Samba 4.17, ldb 2.6.2; the 2-core machine shared with other builds)
//!
//! Five full runs: three before the LDAP source had its own paging loop, one with it (the user
//! search folded into one index page by page), and one with the user search also started at the
//! first value that needs it and the load child on mimalloc; that last one at a load average of
//! 6–7 from other builds, so its wall times are the slowest.
//!
//! - roster is at the protocol floor and within the target in every run: medians of per-run
//!   ratios 0.80–1.04× ldapsearch and 0.88–1.09× ldap3; in CPU (client + Samba) 0.90–1.04×
//!   ldapsearch and 0.96–1.09× ldap3. The load is Samba's work: roster's own CPU is 0.2–0.3 s
//!   since the paging loop (0.4–0.6 s before it) of a 17–38 s load, Samba's 16–27 s for every
//!   client alike. For the ranged reads alone Samba spent 3.1 s on roster's and 3.2–3.4 s on
//!   ldapsearch's (67 reads of 1500; measured in the first runs).
//! - In the last three runs roster's ranges-only load took 0.70–0.85× the wall time of
//!   ldapsearch's ranges, but mostly ran above ldap3's in-process ranges (medians 0.99–1.81×,
//!   per-run ratios 0.88–2.36×, the highest under the heaviest load). The bench measures no CPU
//!   for that load, so whether the gap is Samba's or roster's is open.
//! - Samba unpacks a group's whole `member` attribute for every ranged read (`perf`: page faults,
//!   `memmove`, `strstr`/`memmem` in libc and talloc over all 100,000 values), so each read costs
//!   the whole group and ranges are quadratic: roster's ranges-only load took 4.0–13.9 s in
//!   ranges of 1000, 2.7–7.5 s of 1500, 1.4 s of 5000, 0.2 s of 100,000; one open-ended read
//!   (`member;range=0-*`) 0.1–0.2 s.
//! - The paged user search is the larger part: Samba's paged results cost ~4× an unpaged search
//!   of the same users (`ldapsearch`: 13–35 s paged, at page sizes 1000 to 100,000 alike, against
//!   4.8–5.9 s unpaged), and AD requires paging (`MaxPageSize`).
//! - Peak RSS of roster's load with the system allocator: 33–37 MB since the paging loop (ranges
//!   alone 16–17 MB, from `--roster-load` with `cn` keys), the user entries folded into the index
//!   of DNs page by page; 88–92 MB before it, ~70 MB of it the user search, whose 100,000 entries
//!   were all kept until the map of DNs to keys was built. On mimalloc, as roster runs, the same
//!   load peaks at 49–56 MB (ranges alone 30–37 MB; 8 MB before the load against 4 MB): the same
//!   child built with each allocator and run alternately on one Samba took the same time within
//!   the noise (ranges alone 6.2–9.9 s against 7.2–9.0 s, the whole load 23–34 s against
//!   19.5–32 s), so on these loads, which wait on Samba, mimalloc costs 12–20 MB and gains
//!   nothing measurable.
//!
//! To profile one load: `ad --serve [SECS]` starts the same Samba and prints its URL for SECS
//! seconds (600 by default; let it end, a kill leaves Samba's ~825 MB copy in the temp dir),
//! and `ad --roster-load URL RANGE_SIZE KEY_ATTR` makes one load and prints its time in µs, its
//! peak RSS and the RSS before it in kB (`ad` is `target/release/deps/ad-*`).

#![allow(clippy::unwrap_used)]

// The test harness's Samba DC, shared rather than copied. At the crate root, `super::ldif` and
// `super::slapd` in samba.rs (slapd.rs locates the tools and builds the ldap-utils commands)
// name the modules below.
#[path = "../tests/support/ldif.rs"]
mod ldif;
#[path = "../tests/support/samba.rs"]
mod samba;
#[path = "../tests/support/slapd.rs"]
mod slapd;

use std::fmt::Write as _;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, Scope, SearchEntry};
use roster::config::SourceConfig;
use roster::source::ldap::{Directory, LdapScope, LdapSourceConfig, MemberKind};
use samba::{BIND_DN, BIND_PW, Dataset, GROUPS_DN, PEOPLE_DN, Samba};

/// The members of the one group.
const MEMBERS: usize = 100_000;
/// Timed runs of each client and range size (after one warm-up).
const RUNS: usize = 3;
/// The range sizes compared.
const RANGE_SIZES: [u32; 2] = [1000, 1500];
/// The user filter roster uses on Active Directory by default.
const AD_USER_FILTER: &str = "(&(objectCategory=person)(objectClass=user))";
/// The group.
const GROUP: &str = "big";

/// The allocator the `roster` binary uses, so that the load child is timed as roster runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 100,000 users and the group `big` of all of them (see the module doc).
static BIG: Dataset = Dataset {
    name: "biggroup",
    version: 1,
    ldif: big_ldif,
    check_group: GROUP,
    check_members: MEMBERS,
};

/// The DN of big user `i`.
fn user_dn(i: usize) -> String {
    format!("CN=Big {i:06},{PEOPLE_DN}")
}

/// The `sAMAccountName` of big user `i`.
fn user_sam(i: usize) -> String {
    format!("big{i:06}")
}

/// The LDIF of [`BIG`].
fn big_ldif() -> String {
    let mut out = samba::base_ldif();
    for i in 1..=MEMBERS {
        let _ = write!(
            out,
            "dn: {}\nobjectClass: user\nsAMAccountName: {}\nuserAccountControl: {}\n\n",
            user_dn(i),
            user_sam(i),
            samba::UAC_ENABLED
        );
    }
    let _ = write!(
        out,
        "dn: {}\nobjectClass: group\nsAMAccountName: {GROUP}\n",
        samba::group_dn(GROUP)
    );
    for i in 1..=MEMBERS {
        let _ = writeln!(out, "member: {}", user_dn(i));
    }
    out.push('\n');
    out
}

/// roster's source config for the Samba at `url`.
fn cfg(url: &str, range_size: u32, key: &str) -> LdapSourceConfig {
    LdapSourceConfig {
        urls: vec![url.to_owned()],
        starttls: false,
        ca_file: None,
        bind_dn: Some(BIND_DN.to_owned()),
        bind_password: Some(roster::secret::Secret::new(BIND_PW)),
        base_dn: GROUPS_DN.to_owned(),
        scope: LdapScope::Sub,
        directory: Directory::Ad,
        group_filter: None,
        name_attr: "cn".to_owned(),
        description_attr: "description".to_owned(),
        member_attr: "member".to_owned(),
        member_kind: MemberKind::Dn,
        user_base_dn: Some(PEOPLE_DN.to_owned()),
        user_filter: None,
        user_key_attr: Some(key.to_owned()),
        range_size,
        exclude_disabled: false,
        attributes: Vec::new(),
        nested: true,
        page_size: 1000,
        timeout: Duration::from_secs(600),
        origin: roster::model::Origin::Ldap {
            dn: "bench".to_owned(),
        },
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// `VmHWM` of this process in kB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) from a `/proc/<pid>/stat`: the process's own, and that of its
/// children it has waited for.
fn cpu_of(pid: &str) -> (Duration, Duration) {
    static TICKS: OnceLock<f64> = OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime, stime, cutime, cstime are fields 14-17 of stat(5), 12-15 of `rest` (from 1).
    let secs = |t: f64| Duration::from_secs_f64(t / ticks);
    (secs(f[11] + f[12]), secs(f[13] + f[14]))
}

/// CPU used by this process, by the children it waited for, and by Samba, while `f` ran.
fn with_cpu<T>(samba: u32, f: impl FnOnce() -> T) -> (T, Cpu) {
    let (me, kids) = cpu_of("self");
    let (server, _) = cpu_of(&samba.to_string());
    let out = f();
    let (me2, kids2) = cpu_of("self");
    let (server2, _) = cpu_of(&samba.to_string());
    let cpu = Cpu {
        client: (me2 - me) + (kids2 - kids),
        server: server2 - server,
    };
    (out, cpu)
}

/// CPU time spent while a client ran.
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// The client's: this process and the children it waited for.
    client: Duration,
    /// Samba's.
    server: Duration,
}

impl Cpu {
    /// Client and server CPU together: the work a read costs, which the machine's other load
    /// disturbs less than wall time.
    fn total(&self) -> Duration {
        self.client + self.server
    }
}

/// The child process: one roster load, checked; prints `<micros> <VmHWM kB> <VmHWM kB before>`.
fn roster_child(url: &str, range_size: u32, key: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = peak_rss_kb();
    let c = cfg(url, range_size, key);
    let started = Instant::now();
    let d = rt
        .block_on(roster::source::load_desired(&[SourceConfig::Ldap(c)]))
        .unwrap();
    let took = started.elapsed();
    let peak = peak_rss_kb();
    let g = d
        .groups
        .values()
        .find(|g| g.name.0 == GROUP)
        .expect("the group big");
    assert_eq!(g.members.len(), MEMBERS, "members of big");
    let (first, last) = if key == "cn" {
        ("Big 000001".to_owned(), format!("Big {MEMBERS:06}"))
    } else {
        (user_sam(1), user_sam(MEMBERS))
    };
    assert_eq!(g.members.first().map(|k| k.as_str()), Some(first.as_str()));
    assert_eq!(g.members.last().map(|k| k.as_str()), Some(last.as_str()));
    println!("{} {peak} {before}", took.as_micros());
}

/// Runs [`roster_child`] in a new process: the load's time, its peak RSS and the RSS before it.
fn roster(url: &str, range_size: u32, key: &str) -> (Duration, u64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--roster-load", url, &range_size.to_string(), key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "roster's load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (Duration::from_micros(nums[0]), nums[1], nums[2])
}

/// `ldapsearch` of `member;range=…` one process per range until the range ends in `*`: the sum
/// of the process times and the number of processes.
fn ldapsearch_ranges(s: &Samba, range_size: u32) -> (Duration, usize) {
    let (mut total, mut reads, mut next, mut values) = (Duration::ZERO, 0, 0u64, 0usize);
    let group = samba::group_dn(GROUP);
    loop {
        let ask = format!("member;range={next}-{}", next + u64::from(range_size) - 1);
        let started = Instant::now();
        let out = s
            .tool("ldapsearch")
            .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &s.url()])
            .args(["-D", BIND_DN, "-w", BIND_PW, "-s", "base", "-b", &group])
            .args(["(objectClass=*)", &ask])
            .output()
            .unwrap();
        total += started.elapsed();
        reads += 1;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut described = None;
        for line in text.lines().filter(|l| l.starts_with("member;range=")) {
            described.get_or_insert_with(|| line.split(':').next().unwrap_or("").to_owned());
            values += 1;
        }
        let described = described.unwrap_or_else(|| panic!("no values for {ask}:\n{text}"));
        if described.ends_with("-*") {
            break;
        }
        let hi: u64 = described.rsplit('-').next().unwrap().parse().unwrap();
        next = hi + 1;
    }
    assert_eq!(values, MEMBERS, "ldapsearch read every member");
    (total, reads)
}

/// `ldapsearch -E pr=1000/noprompt` of the users' `sAMAccountName`, as roster's user search.
fn ldapsearch_users(s: &Samba) -> Duration {
    let started = Instant::now();
    let out = s
        .tool("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-E", "pr=1000/noprompt"])
        .args(["-H", &s.url(), "-D", BIND_DN, "-w", BIND_PW])
        .args(["-b", PEOPLE_DN, AD_USER_FILTER, "sAMAccountName"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let users = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("sAMAccountName:"))
        .count();
    assert_eq!(users, MEMBERS, "ldapsearch read every user");
    took
}

/// The same reads with `ldap3` on one connection: (connect, bind, group search and ranges;
/// paged user search). With no `range_size` it asks for open-ended ranges (`N-*`) and skips the
/// user search.
async fn ldap3_reads(url: &str, range_size: Option<u32>) -> (Duration, Duration) {
    let started = Instant::now();
    let (conn, mut ldap) = LdapConnAsync::new(url).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(BIND_DN, BIND_PW)
        .await
        .unwrap()
        .success()
        .unwrap();
    let ask = |lo: u64| match range_size {
        Some(size) => format!("member;range={lo}-{}", lo + u64::from(size) - 1),
        None => format!("member;range={lo}-*"),
    };
    let (entries, _) = ldap
        .search(
            GROUPS_DN,
            Scope::Subtree,
            "(objectClass=group)",
            vec!["cn".to_owned(), "description".to_owned(), ask(0)],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let mut entry = SearchEntry::construct(entries.into_iter().next().unwrap());
    let group = entry.dn.clone();
    let mut values = 0;
    loop {
        let (key, vals) = entry
            .attrs
            .into_iter()
            .find(|(k, _)| k.starts_with("member;range="))
            .unwrap();
        values += vals.len();
        if key.ends_with("-*") {
            break;
        }
        let next = key.rsplit('-').next().unwrap().parse::<u64>().unwrap() + 1;
        let (entries, _) = ldap
            .search(&group, Scope::Base, "(objectClass=*)", vec![ask(next)])
            .await
            .unwrap()
            .success()
            .unwrap();
        entry = SearchEntry::construct(entries.into_iter().next().unwrap());
    }
    assert_eq!(values, MEMBERS, "ldap3 read every member");
    let ranges = started.elapsed();
    if range_size.is_none() {
        let _ = ldap.unbind().await;
        return (ranges, Duration::ZERO);
    }

    let started = Instant::now();
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(1000)),
    ];
    let mut stream = ldap
        .streaming_search_with(
            adapters,
            PEOPLE_DN,
            Scope::Subtree,
            AD_USER_FILTER,
            vec!["sAMAccountName"],
        )
        .await
        .unwrap();
    let mut users = 0;
    while let Some(e) = stream.next().await.unwrap() {
        let e = SearchEntry::construct(e);
        users += usize::from(e.attrs.contains_key("sAMAccountName"));
    }
    stream.finish().await.success().unwrap();
    assert_eq!(users, MEMBERS, "ldap3 read every user");
    let _ = ldap.unbind().await;
    (ranges, started.elapsed())
}

/// One run of every client at one range size.
#[derive(Clone, Copy, Default)]
struct Run {
    /// roster's load.
    roster: Duration,
    /// roster's load with `cn` keys: the ranged reads without the user search.
    roster_ranges: Duration,
    /// Peak RSS of roster's load and RSS before it, kB.
    peak_kb: u64,
    before_kb: u64,
    /// The ldapsearch processes: ranges, users, and how many range processes.
    ls_ranges: Duration,
    ls_users: Duration,
    ls_reads: usize,
    /// The ldap3 reads: ranges, users.
    l3_ranges: Duration,
    l3_users: Duration,
    /// CPU during roster's (full) load, the ldapsearch processes and the ldap3 reads.
    cpu: [Cpu; 3],
}

impl Run {
    fn ls(&self) -> Duration {
        self.ls_ranges + self.ls_users
    }

    fn l3(&self) -> Duration {
        self.l3_ranges + self.l3_users
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The median of `f` over `runs`.
fn med(runs: &[Run], f: impl Fn(&Run) -> Duration) -> Duration {
    median(runs.iter().map(f).collect())
}

/// The median over `runs` of each run's `a / b`: each ratio sets clients against each other
/// within one run, minutes apart at most, which the machine's changing load disturbs less than
/// a ratio of medians taken over the whole bench.
fn med_ratio(runs: &[Run], a: impl Fn(&Run) -> Duration, b: impl Fn(&Run) -> Duration) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(|r| ratio(a(r), b(r))).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median client and server CPU of the `i`th client over `runs`, in seconds.
fn cpu_median(runs: &[Run], i: usize) -> String {
    let client = med(runs, |r| r.cpu[i].client);
    let server = med(runs, |r| r.cpu[i].server);
    format!("{:.1}/{:.1} s", client.as_secs_f64(), server.as_secs_f64())
}

/// Every client once at `size`, in an order rotated by `run` so that none is always first
/// after the previous client's load.
fn one_run(s: &Samba, rt: &tokio::runtime::Runtime, size: u32, run: usize) -> Run {
    let (url, pid) = (s.url(), s.pid());
    let mut r = Run::default();
    for step in (0..4).map(|i| (i + run) % 4) {
        match step {
            0 => {
                let ((took, peak, before), cpu) =
                    with_cpu(pid, || roster(&url, size, "sAMAccountName"));
                (r.roster, r.peak_kb, r.before_kb, r.cpu[0]) = (took, peak, before, cpu);
            }
            1 => r.roster_ranges = roster(&url, size, "cn").0,
            2 => {
                let (((ranges, reads), users), cpu) =
                    with_cpu(pid, || (ldapsearch_ranges(s, size), ldapsearch_users(s)));
                (r.ls_ranges, r.ls_reads, r.ls_users, r.cpu[1]) = (ranges, reads, users, cpu);
            }
            _ => {
                let ((ranges, users), cpu) =
                    with_cpu(pid, || rt.block_on(ldap3_reads(&url, Some(size))));
                (r.l3_ranges, r.l3_users, r.cpu[2]) = (ranges, users, cpu);
            }
        }
    }
    r
}

fn bench() {
    let started = Instant::now();
    let s = Samba::start_dataset(&BIG);
    eprintln!(
        "ad bench: samba with {MEMBERS} users and group `{GROUP}` up in {:.1} s (template {})",
        started.elapsed().as_secs_f64(),
        samba::dataset_template(&BIG).display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runs: Vec<Vec<Run>> = RANGE_SIZES.iter().map(|_| Vec::new()).collect();
    let mut open = Vec::new();
    for run in 0..=RUNS {
        for (size, done) in RANGE_SIZES.iter().zip(&mut runs) {
            let r = one_run(&s, &rt, *size, run);
            eprintln!(
                "ad bench: run {run} range_size {size}: roster {} (ranges only {}), \
                 ldapsearch {} + {}, ldap3 {} + {}; client/Samba CPU s: roster {:.1}/{:.1}, \
                 ldapsearch {:.1}/{:.1}, ldap3 {:.1}/{:.1}",
                ms(r.roster),
                ms(r.roster_ranges),
                ms(r.ls_ranges),
                ms(r.ls_users),
                ms(r.l3_ranges),
                ms(r.l3_users),
                r.cpu[0].client.as_secs_f64(),
                r.cpu[0].server.as_secs_f64(),
                r.cpu[1].client.as_secs_f64(),
                r.cpu[1].server.as_secs_f64(),
                r.cpu[2].client.as_secs_f64(),
                r.cpu[2].server.as_secs_f64(),
            );
            // Run 0 warms Samba's caches and is not counted.
            if run > 0 {
                done.push(r);
            }
        }
        // Open-ended ranges (`member;range=N-*`: as many values as the server gives).
        let (ranges, _) = rt.block_on(ldap3_reads(&s.url(), None));
        if run > 0 {
            open.push(ranges);
        }
    }
    for (size, runs) in RANGE_SIZES.iter().zip(&runs) {
        let peak = runs.iter().map(|r| r.peak_kb).max().unwrap_or(0);
        let before = runs.iter().map(|r| r.before_kb).max().unwrap_or(0);
        println!(
            "AD group of {MEMBERS} in ranges of {size} (Samba, medians of {RUNS} runs): roster \
             {} ({:.2}x ldapsearch {}: {} ranges in {} processes + {} users; {:.2}x ldap3 {}: \
             {} ranges + {} users); roster ranges only {} ({:.2}x ldapsearch ranges, {:.2}x \
             ldap3 ranges); client/Samba CPU: roster {}, ldapsearch {}, ldap3 {} (client+Samba \
             CPU: roster {:.2}x ldapsearch, {:.2}x ldap3); peak RSS of roster's load {:.1} MB \
             ({:.1} MB before it)",
            ms(med(runs, |r| r.roster)),
            med_ratio(runs, |r| r.roster, Run::ls),
            ms(med(runs, Run::ls)),
            ms(med(runs, |r| r.ls_ranges)),
            runs[0].ls_reads,
            ms(med(runs, |r| r.ls_users)),
            med_ratio(runs, |r| r.roster, Run::l3),
            ms(med(runs, Run::l3)),
            ms(med(runs, |r| r.l3_ranges)),
            ms(med(runs, |r| r.l3_users)),
            ms(med(runs, |r| r.roster_ranges)),
            med_ratio(runs, |r| r.roster_ranges, |r| r.ls_ranges),
            med_ratio(runs, |r| r.roster_ranges, |r| r.l3_ranges),
            cpu_median(runs, 0),
            cpu_median(runs, 1),
            cpu_median(runs, 2),
            med_ratio(runs, |r| r.cpu[0].total(), |r| r.cpu[1].total()),
            med_ratio(runs, |r| r.cpu[0].total(), |r| r.cpu[2].total()),
            peak as f64 / 1024.0,
            before as f64 / 1024.0,
        );
    }
    println!(
        "AD group of {MEMBERS}, open-ended ranges (member;range=N-*, as many values as Samba \
         gives) read with ldap3: {} (median of {RUNS})",
        ms(median(open))
    );
}

fn main() {
    // As the `roster` binary runs (`roster::memory`).
    roster::memory::small_pages_only();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--roster-load") {
        let size = args[i + 2].parse().unwrap();
        roster_child(&args[i + 1], size, &args[i + 3]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        // Exits (and so removes Samba's copy of the template) when the time is up: a kill
        // would leave the copy in the temp dir.
        let secs: u64 = args.get(i + 1).map_or(600, |v| v.parse().unwrap());
        let s = Samba::start_dataset(&BIG);
        println!("{}", s.url());
        eprintln!("ad bench: Samba (pid {}) serves for {secs} s", s.pid());
        std::thread::sleep(Duration::from_secs(secs));
        return;
    }
    // `cargo bench` passes --bench; `cargo test` (which only lists) runs nothing.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    bench();
}

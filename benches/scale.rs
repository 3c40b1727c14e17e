//! A large estate on every target: 20,000 groups × 50 members (1,000 users) on its simulator,
//! 20 ms added to every request, concurrency 8. For each target, one plan (the read) and one
//! apply of 5,000 member changes (100 groups each losing 25 members and gaining 25), each phase
//! side by side with its bound, (calls × latency ÷ concurrency), and the calls made side by side
//! with the fewest the API allows.
//!
//! `cargo bench --bench scale` runs every target; `cargo bench --bench scale -- vinyldns` one.
//! The apply keeps the audit journal, as `roster apply` does; `ROSTER_BENCH_JOURNAL=0` times it
//! without. `ROSTER_BENCH_GROUPS=2000` seeds fewer groups: the same apply after a read a tenth
//! as long, for comparing applies side by side.
//!
//! # Findings: the journal's share of an apply
//!
//! Each write request's intent is written and flushed (the line, then the head: two
//! `fdatasync`s, 0.10 ms at the median on this machine's disk) before the request leaves.
//! Interleaved runs, journal then none: VinylDNS's apply 1.058 and 1.065× against 1.032 and
//! 1.035×, UiPath's 1.121 and 1.125× against 1.074 and 1.102×; in one full run with it,
//! Contensis 1.046× (1.014-1.022× without), Crafter 1.078× (1.038-1.049×).
//!
//! The flushes were made under the journal's lock, so an outcome line (appended on a runtime
//! worker) waited behind another write's flush, holding a second worker. Now they are made
//! outside it, and the intents waiting at one moment share one flush. Four interleaved
//! triples of VinylDNS's apply (load average 0.6-1.8): before 1.057-1.080×, flushed on the
//! blocking pool 1.056-1.101× (the hand-over there and back cost more than it saved: not
//! kept), flushed on the worker outside the lock 1.047-1.066×. UiPath's, two pairs: before
//! 1.112 and 1.108×, after 1.135 and 1.097×, within the day's noise. Counted (`strace -f -c -e
//! trace=fdatasync <bench> --bench vinyldns`: 200 `fdatasync`s, before as after): both applies
//! still made one flush per intent (100 for 100), since the 8
//! requests of a round do not leave together: each leaves when its own call's previous answer
//! came, further apart than a flush takes. Sharing flushes pays where writes do coincide (the
//! first round, several targets applied at once); the rest of the journal's share is the
//! flush itself, which an intent must wait for.
//!
//! So the intent is now written and flushed before the write waits for its slot, and calls of
//! one request run a round ahead of the free slots: each next request's flush is made while the
//! requests before it are out. UiPath's apply with the journal, six interleaved pairs on a slow
//! day (VinylDNS's apply, which this does not touch, at 1.10-1.15× that day): before
//! 1.147-1.196× (median 1.165), after 1.112-1.216× (median 1.136); without the journal, one
//! pair, 1.151× against 1.126×. Within the day's noise on 2 shared cores, the medians a round's
//! flush apart.
//!
//! Where UiPath's apply spends its time over the bound, timed inside one process (temporary
//! instrumentation, not kept; `ROSTER_BENCH_GROUPS=2000`, the same apply after a shorter read):
//! 100 PUTs 8 at a time are 13 rounds of the latency where the bound counts 12.5 (1.04× at
//! best). Each round was 20.8-21.1 ms at the median: from a request leaving roster to its
//! arrival at the simulator 0.17-0.24 ms, the simulator's own lateness 0.11-0.14 ms, from its
//! answer leaving to roster holding the head 0.18-0.37 ms, from the head to the next request
//! leaving 0.09-0.26 ms; with the tails, 13-15 ms of the apply. Before the first request, 4-7
//! ms: the compile of 5,000 changes 1.8-2.3 ms, and the first intents' flush 2.9-3.3 ms, the
//! journal's new file and head created and made durable on the apply's path. The flushes
//! themselves, two `fdatasync`s, took 0.5-0.6 ms at the median on a runtime worker, 100 of
//! them, and a worker held by the disk holds up the answers queued on it. So now the flushes
//! run on the blocking pool (the intents are flushed while their writes wait for a slot, so
//! the hand-over is off the path; 33-47 flushes for 100 intents, more of them shared), the
//! journal's file and head are created and flushed, with their folder, when it is opened
//! (before the read), and the compiles look users up without copying keys: before the first
//! request 3.0-4.9 ms. Twelve interleaved pairs, the binary before and after (load average
//! 0.5-1.7): after, median 1.115×, mean 1.113×, highest 1.126×; before, 1.116×, 1.118× and
//! 1.148×: the tail narrower, the median within the day's noise.
//!
//! An apply's calls are futures of one task: when an answer came, the request waiting for its
//! slot left only once the answered call had journalled its outcome, decoded its answer and
//! started the next call (its intent written, its flush handed to the blocking pool). The
//! endpoint now gives the slot back once the body is in and, when a request was waiting for
//! it, yields once, so that request leaves first; and the first flush yields once before it
//! takes its turn, so the 16 intents written as the apply starts share it (one flush, not two
//! in turn). At 2,000 groups, ten interleaved pairs each: median 1.097× before, 1.088× after
//! the first; 1.092× before, 1.088× after the second. At 100 groups (`ROSTER_BENCH_GROUPS=100`,
//! a one-second run: the same apply), twelve interleaved triples on a busier spell: median
//! 1.107× before this stop, 1.098× after. Full estate, the same spell: 1.094-1.111×. A
//! simulator on a runtime of its own, as a server elsewhere is, measured no different (ten
//! pairs at 100 groups, medians 1.091× and 1.086×): not kept.
//!
//! # Findings: where VinylDNS's read spends its time over the bound (2 shared cores)
//!
//! The read is 1,016 calls, 2.54 s at the bound; it takes 2.73-2.90 s (1.08-1.14×) on a quiet
//! day, up to 3.2 s (1.26×) on a busy one. Timed inside one process (the simulator's arrival and answer, roster's call
//! and its answer's head and body, kept in memory and written out after the run: temporary
//! instrumentation, not kept; printing each event instead made the read itself 2-4 % slower):
//!
//! - **Before the first lookup, 55-65 ms**: the lookups need the ids of the list's first page
//!   (3,000 groups, 7.5 MB), which arrives about 35 ms in and is parsed in about 20 ms.
//! - **Each lookup's hand-over, about 0.5 ms at the median and 0.8-1.2 ms on average** over
//!   the simulator's 20 ms: from roster's call to the simulator's arrival 0.14-0.20 ms (p50),
//!   the simulator's own lateness 0.12-0.15 ms, from its answer leaving to roster holding the
//!   head 0.18-0.30 ms, the 40 kB body and its decoding 0.05 ms; the averages are the tails'
//!   (p99 1-6 ms each), which are the scheduler's on this machine. 1,000 lookups 8 at a time
//!   make that 100-150 ms of the read.
//! - **The build after the last lookup, 41-72 ms**: 20,000 observed groups, their member sets
//!   and attributes, on both cores; about a third of it (`perf`) the kernel's first touch of fresh memory.
//!
//! Tried and not kept (no change in the read's ratio over interleaved runs):
//! - building, during the lookups' last round, the groups none of whose members is still being
//!   looked up (89-94 % of them): that build took 60-76 ms itself, as long as the whole build
//!   after the last lookup, so the read ended no sooner;
//! - the allocator keeping freed memory longer (`MIMALLOC_PURGE_DELAY` of 1 s, 10 s or never):
//!   the build 10-15 ms shorter when never returned, the read's ratio the same;
//! - running the read on a runtime worker rather than on the thread that blocks on it (so an
//!   answer's head reaches the waiting call without waking another thread): the head 20-50 µs
//!   sooner at the median, the read's ratio the same;
//! - the guest's halt polling (`guest_halt_poll_ns` 200 µs against 0): no change;
//! - a first page of 100 groups, so that the lookups start about 35 ms sooner (one call more):
//!   2.77-2.79 s against 2.74-2.78 s, three interleaved pairs: the read ended no sooner (why
//!   not is not found: the start may not be on the read's longest path);
//! - the simulators' latency ending on a kernel timer (`timerfd`) rather than a thread's sleep:
//!   2.77-2.78 s against 2.78-2.82 s, three pairs, within the day's noise;
//! - `TCP_NODELAY` on the simulators' sockets: 2.75-2.79 s against 2.76-2.78 s, three pairs.
//!
//! # Findings: VinylDNS's apply
//!
//! The apply is 100 updates, each a GET of the group and then its PUT: 200 calls, 0.50 s at the
//! bound. Run 8 updates at a time, they were 13 waves of two calls, the last wave of 4 updates
//! with half the slots idle: 26 rounds of the latency where the bound counts 25, so 1.04× at
//! best. The executor now holds requests, not calls, to the concurrency and starts the last 8
//! updates together once no more are left, so their GETs take the slots the PUTs before them
//! free: 25 rounds (`exec::tests::chained_requests_fill_every_slot_and_never_exceed_it` checks it
//! in paused time). Interleaved runs of the binary before and after on this machine, nine pairs
//! in a quiet spell: the apply 1.049-1.111× after against 1.086-1.135× before, every pair faster,
//! the median pair by 0.042× (one round of 25); ten pairs in a busier spell: 1.041-1.183× against
//! 1.075-1.161×, 7 pairs faster. The few tenths of a millisecond of work per round, and the
//! machine's busier spells, show on top.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use roster::config;
use roster::reconcile::Mode;
use roster::run::{RunOptions, RunReport, run};
use roster::sim::{self, SimKind, faults::Faults};

mod support;

/// The groups on the simulator: 20,000, or `ROSTER_BENCH_GROUPS` (at least [`CHANGED`]).
fn groups() -> usize {
    std::env::var("ROSTER_BENCH_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(20_000, |g: usize| g.max(CHANGED))
}
const MEMBERS: usize = 50;
const USERS: usize = 1_000;
/// Groups that change, each losing 25 members and gaining 25: 5,000 member changes.
const CHANGED: usize = 100;
const LATENCY: Duration = Duration::from_millis(20);
const CONCURRENCY: u32 = 8;

fn user(u: usize) -> String {
    format!("u{u:04}")
}

/// The `k`th member of group `g`: 13 is prime to 1,000, so a group's 50 are distinct.
fn member(g: usize, k: usize) -> String {
    user((g * 7 + k * 13) % USERS)
}

fn quoted(names: impl Iterator<Item = String>) -> String {
    names
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The simulator's seed: every group with members 0..50.
fn seed(kind: SimKind) -> String {
    let users = quoted((0..USERS).map(user));
    let mut s = match kind {
        SimKind::Contensis => format!(
            "[contensis]\nclient_id = \"roster\"\nclient_secret = \"bench\"\nusers = [{users}]\n"
        ),
        SimKind::VinylDns => format!(
            "[vinyldns]\nusers = [{users}]\nsuper_users = [\"roster\"]\n\
             [[vinyldns.credentials]]\naccess_key = \"bench-access\"\nsecret_key = \"bench\"\n\
             user = \"roster\"\n"
        ),
        SimKind::Crafter => format!("[crafter]\ntoken = \"bench\"\nusers = [{users}]\n"),
        SimKind::UiPath => format!("[uipath]\nclient_secret = \"bench\"\nusers = [{users}]\n"),
    };
    let kind_name = kind.type_name();
    for g in 0..groups() {
        let members = quoted((0..MEMBERS).map(|k| member(g, k)));
        let _ = write!(
            s,
            "[[{kind_name}.group]]\nname = \"g{g:05}\"\nmembers = [{members}]\n"
        );
        if kind == SimKind::VinylDns {
            let _ = write!(
                s,
                "email = \"g{g:05}@example.com\"\nadmins = [\"{}\"]\n",
                member(g, MEMBERS - 1)
            );
        }
    }
    s
}

/// The desired groups: the first [`CHANGED`] lose members 0..25 and gain 50..75.
fn desired(kind: SimKind) -> String {
    let mut s = String::new();
    for g in 0..groups() {
        let ks: Vec<usize> = if g < CHANGED {
            (25..MEMBERS + 25).collect()
        } else {
            (0..MEMBERS).collect()
        };
        let members = quoted(ks.into_iter().map(|k| member(g, k)));
        let _ = write!(s, "[[group]]\nname = \"g{g:05}\"\nmembers = [{members}]\n");
        if kind == SimKind::VinylDns {
            let _ = write!(
                s,
                "[group.vinyldns]\nemail = \"g{g:05}@example.com\"\nadmins = [\"{}\"]\n",
                member(g, MEMBERS - 1)
            );
        }
    }
    s
}

fn config(kind: SimKind) -> String {
    let target = match kind {
        SimKind::Contensis => {
            "url = \"http://127.0.0.1:1\"\nclient_id = \"roster\"\nclient_secret = \"bench\""
        }
        SimKind::VinylDns => {
            "url = \"http://127.0.0.1:1\"\naccess_key = \"bench-access\"\nsecret_key = \"bench\""
        }
        SimKind::Crafter => "url = \"http://127.0.0.1:1/studio\"\ntoken = \"bench\"",
        SimKind::UiPath => {
            "url = \"http://127.0.0.1:1/roster\"\n\
             partition_global_id = \"3fa85f64-5717-4562-b3fc-2c963f66afa6\"\n\
             client_id = \"roster\"\nclient_secret = \"bench\""
        }
    };
    format!(
        "state_dir = \"state\"\n[[source]]\ntype = \"toml\"\npath = \"groups.toml\"\n\n[[target]]\nname = \"{0}\"\n\
         type = \"{0}\"\nconcurrency = {CONCURRENCY}\ntimeout = \"60s\"\n{target}\n",
        kind.type_name()
    )
}

/// The fewest reads the API allows for the estate, and what they are.
fn fewest_reads(kind: SimKind) -> (usize, &'static str) {
    let g = groups();
    match kind {
        // No list carries members or children: the list (100 a page; the largest page size is
        // unconfirmed), then each group's direct members and direct children.
        SimKind::Contensis => (g.div_ceil(100) + 2 * g, "list at 100 a page + 2 per group"),
        // The list carries each group's member ids: 3,000 a page, then one lookup per user.
        SimKind::VinylDns => (
            g.div_ceil(3000) + USERS,
            "list at 3,000 a page + 1 per user",
        ),
        // No list carries members: the list (1,000 a page), then each group's members.
        SimKind::Crafter => (g.div_ceil(1000) + g, "list at 1,000 a page + 1 per group"),
        // The list carries no members: the list, then each group's members (1,000 a page).
        SimKind::UiPath => (1 + g, "list + 1 per group"),
    }
}

/// The fewest writes the API allows for 5,000 member changes over [`CHANGED`] groups.
fn fewest_writes(kind: SimKind) -> (usize, &'static str) {
    let c = CHANGED;
    match kind {
        // One bulk add per group; one DELETE per member removed.
        SimKind::Contensis => (c + c * 25, "1 bulk add per group + 1 per removal"),
        // One full-replace PUT per group, after the fresh GET the design requires.
        SimKind::VinylDns => (2 * c, "GET + PUT per group"),
        // One bulk add and one bulk remove per group.
        SimKind::Crafter => (2 * c, "bulk add + bulk remove per group"),
        // One PUT per group carrying its additions and removals.
        SimKind::UiPath => (c, "1 PUT per group"),
    }
}

fn is_auth(call: &str) -> bool {
    call.contains("/token") || call.contains("/login") || call.contains("/authenticate")
}

fn phase(report: &RunReport, name: &str) -> Duration {
    report.targets[0]
        .durations
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(Duration::ZERO, |(_, d)| *d)
}

/// Whether the apply keeps the audit journal, as `roster apply` does (default), or not
/// (`ROSTER_BENCH_JOURNAL=0`).
fn journal() -> bool {
    std::env::var("ROSTER_BENCH_JOURNAL").map_or(true, |v| v != "0")
}

fn bound(calls: usize) -> Duration {
    LATENCY * u32::try_from(calls).unwrap_or(u32::MAX) / CONCURRENCY
}

async fn once(kind: SimKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("roster.toml"), config(kind)).expect("config");
    std::fs::write(dir.path().join("groups.toml"), desired(kind)).expect("groups");
    let text = seed(kind);
    let loading = Instant::now();
    let seed = sim::parse_seed(&text, "bench seed").expect("seed");
    let running = sim::start(seed, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulators");
    let loaded = loading.elapsed();
    running.set_faults_all(&Faults {
        latency: Some(LATENCY),
        ..Faults::default()
    });
    let mut cfg = config::load(&dir.path().join("roster.toml")).expect("config");
    running.point_at(&mut cfg);

    let calls = |from: usize| -> Vec<String> {
        running.calls_of(kind)[from..]
            .iter()
            .filter(|c| !is_auth(c))
            .cloned()
            .collect()
    };
    let before = running.calls_of(kind).len();
    let plan = run(
        &cfg,
        &RunOptions {
            mode: Mode::Plan,
            ..RunOptions::default()
        },
    )
    .await
    .expect("plan");
    assert!(!plan.any_failed(), "{kind:?}: the plan failed");
    let changes = plan.targets[0].plan.as_ref().map_or(0, |p| p.changes.len());
    let reads = calls(before);
    let read_took = phase(&plan, "observe");
    let after_plan = running.calls_of(kind).len();

    let apply = support::apply(&cfg, journal()).await;
    assert!(!apply.any_failed(), "{kind:?}: a change failed");
    let apply_calls = calls(after_plan).len().saturating_sub(reads.len());
    let apply_took = phase(&apply, "apply");
    running.shutdown().await;

    let (min_reads, how_reads) = fewest_reads(kind);
    let (min_writes, how_writes) = fewest_writes(kind);
    let ratio = |took: Duration, b: Duration| took.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "{:<10} seed of {} × {MEMBERS} loaded in {:.2} s; {changes} changes planned",
        kind.type_name(),
        groups(),
        loaded.as_secs_f64()
    );
    println!(
        "           read  {:>7.2} s for {:>6} calls; bound {:>7.2} s: {:.3}×  (fewest {} = {})",
        read_took.as_secs_f64(),
        reads.len(),
        bound(reads.len()).as_secs_f64(),
        ratio(read_took, bound(reads.len())),
        min_reads,
        how_reads
    );
    println!(
        "           apply {:>7.2} s for {:>6} calls; bound {:>7.2} s: {:.3}×  (fewest {} = {})",
        apply_took.as_secs_f64(),
        apply_calls,
        bound(apply_calls).as_secs_f64(),
        ratio(apply_took, bound(apply_calls)),
        min_writes,
        how_writes
    );
}

fn main() {
    let Some(rt) = support::benching() else {
        return;
    };
    let args: Vec<String> = std::env::args().collect();
    let only: Vec<&str> = args[1..]
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    for kind in SimKind::ALL {
        if only.is_empty() || only.contains(&kind.type_name()) {
            rt.block_on(once(kind));
        }
    }
}

//! Memory handed back on cue (`roster::memory::release_freed`, through `roster_alloc`): freed
//! memory stays with the process until the release, and leaves with it; a simulator's start
//! releases its parsed seed's garbage before it listens, so that no answer waits behind the
//! allocator doing it a second later (`benches/sims.rs` measured 3-15 ms stalls).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// As the `roster` binary runs: the allocator whose delayed purge this is about.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MIB: u64 = 1 << 20;

/// The tests measure the whole process's resident memory, so they take turns: one's garbage
/// must not be another's figure.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process's resident memory, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap()
        * 4096
}

#[test]
fn freed_memory_leaves_when_released_and_not_before() {
    let _turn = turn();
    let before = resident();
    // A parse tree's worth of small, touched allocations: 1,000,000 strings of 200 bytes.
    let garbage: Vec<String> = (0..1_000_000).map(|i| format!("{i:0>200}")).collect();
    let full = resident();
    assert!(
        full >= before + 150 * MIB,
        "the garbage took {} MiB",
        (full - before) / MIB
    );
    drop(garbage);
    let freed = resident();
    assert!(
        freed >= before + 150 * MIB,
        "the allocator kept the freed memory until asked (it gave back {} MiB at once)",
        full.saturating_sub(freed) / MIB
    );
    roster::memory::release_freed();
    let released = resident();
    assert!(
        released <= before + 50 * MIB,
        "{} MiB above the start after the release",
        released.saturating_sub(before) / MIB
    );
}

/// A Crafter seed of `groups` groups of 50 members each, from 1,000 users.
fn seed(groups: usize) -> String {
    let users: Vec<String> = (0..1_000).map(|u| format!("\"u{u:04}\"")).collect();
    let mut s = format!("[crafter]\ntoken = \"t\"\nusers = [{}]\n", users.join(", "));
    for g in 0..groups {
        let members: Vec<&str> = (0..50)
            .map(|k| users[(g + k * 20) % 1_000].as_str())
            .collect();
        let _ = write!(
            s,
            "[[crafter.group]]\nname = \"g{g:05}\"\nmembers = [{}]\n",
            members.join(", ")
        );
    }
    s
}

#[test]
fn a_started_simulator_has_handed_its_seeds_garbage_back() {
    let _turn = turn();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let text = seed(3_000);
        let parsed = roster::sim::parse_seed(&text, "test seed").unwrap();
        drop(text);
        let running = roster::sim::start(parsed, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let started = resident();
        // Whatever the start left freed but held is what a release now would give back.
        roster::memory::release_freed();
        let left = started.saturating_sub(resident());
        assert!(
            left < 8 * MIB,
            "the start left {} MiB of freed memory for a later allocation to hand back",
            left / MIB
        );
        running.shutdown().await;
    });
}

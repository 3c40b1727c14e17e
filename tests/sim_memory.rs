//! A simulator's start hands its parsed seed's garbage back to the kernel before it listens
//! (`sim::start`, `roster::memory::release_freed`), so that no answer waits behind the
//! allocator doing it a second later (`benches/sims.rs` measured 3-15 ms stalls).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::net::SocketAddr;

/// As the `roster` binary runs: the allocator whose delayed purge this is about.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MIB: u64 = 1 << 20;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_simulator_has_handed_its_seeds_garbage_back() {
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
}

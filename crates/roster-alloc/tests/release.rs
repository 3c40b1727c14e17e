//! [`roster_alloc::release_freed_memory`] against the allocator roster runs with: memory freed
//! in small pieces stays with the process until it is called, and leaves when it is.

#![cfg(target_os = "linux")]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The process's resident memory, in bytes (`/proc/self/statm`, second field, in pages of 4 KiB
/// on every Linux roster runs on).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

const MIB: u64 = 1 << 20;

#[test]
fn freed_memory_leaves_when_released_and_not_before() {
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
    roster_alloc::release_freed_memory();
    let released = resident();
    assert!(
        released <= before + 50 * MIB,
        "{} MiB above the start after the release",
        released.saturating_sub(before) / MIB
    );
}

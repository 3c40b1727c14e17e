//! How the process takes memory from the kernel.
//!
//! A read of a large estate builds its state in fresh memory all at once, and a simulator's seed
//! load does too: most of their time is the kernel zeroing pages at their first touch. A
//! transparent huge page is 2 MB zeroed at once however little of it is used, and with huge pages
//! the VinylDNS simulator's seed of 20,000 groups loaded in 1.53-1.81 s against 0.87-1.12 s
//! without (`cargo bench --bench sims`). The allocator is built not to ask for them (`Cargo.toml`,
//! mimalloc's `no_thp`), which is enough where the host gives huge pages only on request
//! (`madvise`); where it gives them to every large mapping (`always`), only the process itself
//! can decline, with [`small_pages_only`].
//!
//! The allocator gives freed memory back to the kernel a second after the free, in whichever
//! thread next allocates: after a simulator's seed load that is a thread answering requests,
//! and 8 calls in flight waited 3-15 ms behind it (`benches/sims.rs`). Where a load leaves its
//! garbage, [`release_freed`] pays for it at once instead.

/// Declines transparent huge pages for the whole process and the processes it starts, whatever
/// the host's setting (`prctl(PR_SET_THP_DISABLE)`). Call it first thing in `main`. Says whether
/// the kernel took it: an older kernel or another system goes on with its own pages, only slower.
pub fn small_pages_only() -> bool {
    #[cfg(target_os = "linux")]
    {
        rustix::thread::disable_transparent_huge_pages(true).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Hands the memory freed so far back to the kernel now, on this thread, rather than in a
/// thread that allocates a second from now (`roster_alloc`, the one foreign call roster makes
/// to its allocator). For after a load that freed a large intermediate form (a simulator's
/// parsed seed), before the work that must not wait; not for a hot path, where the allocator's
/// own delay is cheaper (with every free purged at once, the planner bench ran 20 % slower).
pub fn release_freed() {
    roster_alloc::release_freed_memory();
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_declines_huge_pages() {
        assert!(super::small_pages_only());
        assert_eq!(
            rustix::thread::transparent_huge_pages_are_disabled().ok(),
            Some(true)
        );
    }
}

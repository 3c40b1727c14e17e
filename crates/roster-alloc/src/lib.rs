//! The one place roster speaks to its allocator (mimalloc) directly.
//!
//! mimalloc hands memory freed in bulk back to the kernel a while after the free (its purge
//! delay, 1 s by default), and does it in whichever thread next calls into it once that time
//! is up. After a load that leaves tens or hundreds of megabytes behind (a simulator's seed:
//! the parsed TOML document, freed once the state is built), that thread is one answering requests, and
//! the requests on it wait the milliseconds the purge takes. [`release_freed_memory`] lets
//! the code that made the garbage pay for it at once, where it chooses.
//!
//! It is its own crate because the call is foreign (`unsafe` to Rust) and roster itself forbids
//! `unsafe`: the exception is this one audited call, not a relaxed rule.

/// Hands every page the allocator holds free back to the kernel now, rather than when the purge
/// delay runs out on some later allocation. Costs about what the purge would have cost later
/// (the kernel dropping the pages), on the calling thread. Without mimalloc as the global
/// allocator it tidies mimalloc's own (unused) heap and changes nothing else.
pub fn release_freed_memory() {
    #[allow(unsafe_code)]
    // SAFETY: `mi_collect` takes no pointers and touches only the allocator's own structures;
    // mimalloc allows it from any thread at any time (`mimalloc.h`: "collect all pending
    // memory"), and `force` only makes it purge what is not yet due.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

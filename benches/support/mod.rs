//! What the benches share: the runtime they run on, and an apply as the CLI's `roster apply`
//! runs it.

// Each bench uses what it needs of this module.
#![allow(dead_code)]

use roster::config::Config;
use roster::reconcile::Mode;
use roster::run::{RunOptions, RunReport, run};

/// The allocator the `roster` binary uses, so that what a bench times runs as roster runs it.
/// The system allocator differs by more than noise here: after a read of 20,000 groups is
/// dropped, its next allocation sorted the freed chunks for 25 ms, a tenth of a small apply.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A multi-threaded runtime when `cargo bench` runs this binary (it passes `--bench`); `None`
/// otherwise (`cargo test` only lists the benches, and then they run nothing).
pub fn benching() -> Option<tokio::runtime::Runtime> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    // As the `roster` binary runs (`roster::memory`).
    roster::memory::small_pages_only();
    Some(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    )
}

/// `roster apply` of every target of `cfg`, with no limit on deletions; `journal` keeps the
/// audit journal in the config's `state_dir`, as `roster apply` does.
pub async fn apply(cfg: &Config, journal: bool) -> RunReport {
    run(
        cfg,
        &RunOptions {
            mode: Mode::Apply,
            max_deletes: Some(usize::MAX),
            journal,
            ..RunOptions::default()
        },
    )
    .await
    .expect("apply")
}

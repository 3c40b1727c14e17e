//! What the benches share: the runtime they run on, and an apply as the CLI's `roster apply`
//! runs it.

// Each bench uses what it needs of this module.
#![allow(dead_code)]

use roster::config::Config;
use roster::reconcile::Mode;
use roster::run::{RunOptions, RunReport, run};

/// A multi-threaded runtime when `cargo bench` runs this binary (it passes `--bench`); `None`
/// otherwise (`cargo test` only lists the benches, and then they run nothing).
pub fn benching() -> Option<tokio::runtime::Runtime> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    Some(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    )
}

/// `roster apply` of every target of `cfg`, with no limit on deletions.
pub async fn apply(cfg: &Config) -> RunReport {
    run(
        cfg,
        &RunOptions {
            mode: Mode::Apply,
            max_deletes: Some(usize::MAX),
            ..RunOptions::default()
        },
    )
    .await
    .expect("apply")
}

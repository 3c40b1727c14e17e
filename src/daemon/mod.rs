//! `roster run`: the daemon. It reconciles on the `[daemon]` schedule until stopped, on top of
//! the one-shot engine (`crate::run`). (Skeleton: filled in by the daemon work.)

pub mod http;
pub mod metrics;

use std::path::Path;

/// What `roster run` was asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaemonOptions {
    /// Reconcile once and exit with `apply`'s exit codes.
    pub once: bool,
    /// Plan and report drift, never write.
    pub dry_run: bool,
}

/// Runs the daemon with the config at `config_path`; returns the process exit code.
pub async fn run(config_path: &Path, opts: DaemonOptions) -> anyhow::Result<u8> {
    let _ = (config_path, opts);
    anyhow::bail!("roster run is not built yet")
}

//! What the daemon counts and serves: run outcomes, changes, API calls, phase durations, last
//! success and pending drift per target, config reloads; rendered in the Prometheus text format,
//! and the health `/healthz` reports. (Skeleton: filled in by the metrics work.)

use crate::reconcile::Mode;
use crate::run::{RunError, RunReport};

/// The daemon's metrics and health; clones share them.
#[derive(Clone, Debug, Default)]
pub struct Metrics {}

/// What `/healthz` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Whether the last run of every target succeeded (or no run happened yet).
    pub ok: bool,
    /// The targets (or `source`) whose last run failed.
    pub failing: Vec<String>,
}

impl Metrics {
    /// Empty metrics: no run yet, healthy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a run that reached the targets, in `mode` (`Plan` for a dry run).
    pub fn record_run(&self, report: &RunReport, mode: Mode) {
        let _ = (report, mode);
    }

    /// Records a run that could not start (the desired state could not be loaded).
    pub fn record_run_error(&self, error: &RunError) {
        let _ = error;
    }

    /// Records a tick skipped because the run before it was still going.
    pub fn record_skipped(&self) {}

    /// Records a config reload, successful or refused.
    pub fn record_reload(&self, ok: bool) {
        let _ = ok;
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        String::new()
    }

    /// The health `/healthz` reports.
    pub fn health(&self) -> Health {
        Health {
            ok: true,
            failing: Vec::new(),
        }
    }
}

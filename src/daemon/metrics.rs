//! What the daemon counts and serves: run outcomes, changes, API calls, phase durations, last
//! success and pending drift per target, config reloads; rendered in the Prometheus text format
//! (version 0.0.4), and the health `/healthz` reports.
//!
//! The text is written by hand rather than with `prometheus-client`: that crate encodes only
//! OpenMetrics (a `# EOF` trailer, counter families named without `_total`), not the
//! `text/plain; version=0.0.4` format `/metrics` promises; the API call counts live in a
//! process-wide table (`crate::target::http::api_calls`) that it could only read through a custom
//! collector; and the "last run" gauges are replaced wholesale on every run. What is left is a
//! dozen families of plain numbers, escaping, and a test that parses the result.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `roster_runs_total` | counter | `outcome`: `success`, `failure` (a target failed or was refused), `error` (the run could not start) |
//! | `roster_skipped_runs_total` | counter | |
//! | `roster_changes_total` | counter | `target`, `kind` (`add_member`, ...), `outcome` (`applied`, `already_done`, `failed`, `skipped`) |
//! | `roster_api_calls_total` | counter | `target`, `status` (HTTP status; `0`: no answer) |
//! | `roster_phase_duration_seconds` | gauge | `target`, `phase` (`observe`, `plan`, `apply`); `phase="source"` alone |
//! | `roster_last_success_timestamp_seconds` | gauge | `target` |
//! | `roster_drift_changes` | gauge | `target` |
//! | `roster_config_reloads_total` | counter | `outcome`: `success`, `failure` |
//! | `roster_triggers_total` | counter | `source` (an LDAP source's URL, a TOML source's path, `http`, `lease`), `kind` (`syncrepl`, `context_csn`, `usn`, `files`, `reconnect`, `http`, `acquired`) |
//! | `roster_trigger_to_apply_seconds` | histogram | (from a trigger to the end of the apply it caused) |
//! | `roster_lease_active` | gauge | (1 while this daemon holds the lease; absent without `[daemon.lease]`) |
//! | `roster_lease_config_skew` | gauge | (1 while the lease holder's config differs from this one's) |

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exec::Outcome;
use crate::reconcile::{TargetOutcome, TargetReport};
use crate::run::{RunError, RunReport};

/// The health name of a run that could not load the desired state (it fails every target).
const SOURCE: &str = "source";

/// The health name of a run that could not keep its audit journal (it writes to no target).
const JOURNAL: &str = "journal";

/// The daemon's metrics and health; clones share them.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

/// Everything counted so far. Counters only grow; the per-target gauges describe the last run
/// that reached the targets.
#[derive(Debug, Default)]
struct State {
    /// Runs by outcome: `[success, failure, error]`.
    runs: [u64; 3],
    skipped: u64,
    /// Reloads: `[success, failure]`.
    reloads: [u64; 2],
    /// By (target, change kind, outcome).
    changes: BTreeMap<(String, &'static str, &'static str), u64>,
    /// How long loading the desired state took in the last run that loaded it.
    source_duration: Option<Duration>,
    /// By target: each phase of its last run, in the order they ran.
    phases: BTreeMap<String, Vec<(&'static str, Duration)>>,
    /// By target: when its last successful run ended.
    last_success: BTreeMap<String, SystemTime>,
    /// By target: the changes still pending after its last run (absent when it could not be read).
    drift: BTreeMap<String, usize>,
    /// What `/healthz` reports: the targets (or `source`) whose last run failed, in run order.
    failing: Vec<String>,
    /// By (source, kind): the triggers received.
    triggers: BTreeMap<(String, String), u64>,
    /// From each trigger to the end of the apply it caused.
    trigger_to_apply: Histogram,
    /// With `[daemon.lease]`: whether this daemon holds the lease, and whether the holder's
    /// config differs from this one's.
    lease: Option<LeaseState>,
}

/// The lease as the metrics and `/healthz` show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseState {
    /// This daemon holds the lease: it writes.
    pub active: bool,
    /// The holder's config hash differs from this daemon's.
    pub skew: bool,
}

/// The upper bounds of `roster_trigger_to_apply_seconds`' buckets: the bound (5 s) and
/// the debounce's defaults (2 s, 30 s) fall on edges.
const LATENCY_BUCKETS: [f64; 11] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

/// A Prometheus histogram: cumulative counts per bucket are derived when rendering.
#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// What `/healthz` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Whether the last run of every target succeeded (or no run happened yet).
    pub ok: bool,
    /// The targets (or `source`) whose last run failed.
    pub failing: Vec<String>,
    /// With `[daemon.lease]`: whether this daemon is the active one.
    pub active: Option<bool>,
}

/// Run outcomes, in `State::runs` order.
const RUN_OUTCOMES: [&str; 3] = ["success", "failure", "error"];
/// Reload outcomes, in `State::reloads` order.
const RELOAD_OUTCOMES: [&str; 2] = ["success", "failure"];

impl Metrics {
    /// Empty metrics: no run yet, healthy.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state; a panic elsewhere while holding the lock leaves numbers that are still numbers,
    /// so a poisoned lock is used as it is rather than taking `/metrics` down with it.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a run that reached the targets. A dry run needs no flag: its targets' outcomes
    /// are `Planned` or `Refused`, never `Applied`, and a plan the guard refuses in a dry run is
    /// the failure it would be in an apply (health, `last_success`, runs by outcome).
    pub fn record_run(&self, report: &RunReport) {
        self.record_run_at(report, SystemTime::now());
    }

    /// [`Metrics::record_run`] with the clock passed in, so tests can check exact timestamps.
    fn record_run_at(&self, report: &RunReport, now: SystemTime) {
        let mut s = self.state();
        s.source_duration = Some(report.source_duration);
        // The per-target gauges describe this run only: a target dropped from the config by a
        // reload must not stay failing, drifting or stale forever.
        s.phases.clear();
        s.drift.clear();
        s.failing.clear();
        s.last_success
            .retain(|name, _| report.targets.iter().any(|t| &t.target == name));
        for t in &report.targets {
            s.phases.insert(t.target.clone(), t.durations.clone());
            if let Some(drift) = drift(t) {
                s.drift.insert(t.target.clone(), drift);
            }
            if let TargetOutcome::Applied(applied) = &t.outcome {
                for (index, outcome) in &applied.outcomes {
                    let kind = t
                        .plan
                        .as_ref()
                        .and_then(|p| p.changes.get(*index))
                        .map_or("unknown", |c| c.op());
                    *s.changes
                        .entry((t.target.clone(), kind, outcome_name(outcome)))
                        .or_default() += 1;
                }
            }
            if succeeded(t) {
                s.last_success.insert(t.target.clone(), now);
            } else if !s.failing.contains(&t.target) {
                s.failing.push(t.target.clone());
            }
        }
        let outcome = if s.failing.is_empty() { 0 } else { 1 };
        s.runs[outcome] += 1;
    }

    /// Records a run that could not start (the desired state could not be loaded, or the
    /// journal kept).
    pub fn record_run_error(&self, error: &RunError) {
        let mut s = self.state();
        s.runs[2] += 1;
        // Nothing was planned, so every target's gauges still describe the last run that reached
        // it; only the health changes: the whole run failed at its source.
        s.failing = vec![match error {
            RunError::Source(_) => SOURCE.to_owned(),
            RunError::UnknownTarget(name, _) | RunError::NotInPlan(name, _) => name.clone(),
            RunError::Journal(_) => JOURNAL.to_owned(),
        }];
    }

    /// Records `ticks` ticks skipped because the run before them was still going.
    pub fn record_skipped(&self, ticks: usize) {
        let mut s = self.state();
        s.skipped = s
            .skipped
            .saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX));
    }

    /// Records a config reload, successful or refused.
    pub fn record_reload(&self, ok: bool) {
        self.state().reloads[usize::from(!ok)] += 1;
    }

    /// Records a trigger from `source` of `kind`.
    pub fn record_trigger(&self, source: &str, kind: &str) {
        *self
            .state()
            .triggers
            .entry((source.to_owned(), kind.to_owned()))
            .or_default() += 1;
    }

    /// Records how long after each of its triggers an apply ended.
    pub fn record_trigger_to_apply(&self, waits: impl IntoIterator<Item = Duration>) {
        let mut s = self.state();
        for w in waits {
            s.trigger_to_apply.observe(w.as_secs_f64());
        }
    }

    /// Records the lease's state (with `[daemon.lease]` only).
    pub fn set_lease(&self, lease: LeaseState) {
        self.state().lease = Some(lease);
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.render_with(&crate::target::http::api_calls())
    }

    /// Renders with the API call counts passed in: they are process-wide, so a test sets its own.
    fn render_with(&self, api_calls: &[(String, u16, u64)]) -> String {
        let s = self.state();
        let mut out = Text::default();

        out.family(
            "roster_runs_total",
            "counter",
            "Runs by outcome: success, failure (a target failed or its plan was refused), \
             error (the desired state could not be loaded).",
        );
        for (outcome, n) in RUN_OUTCOMES.iter().zip(s.runs) {
            out.sample("roster_runs_total", &[("outcome", outcome)], n);
        }

        out.family(
            "roster_skipped_runs_total",
            "counter",
            "Scheduled runs skipped because the run before them was still going.",
        );
        out.sample("roster_skipped_runs_total", &[], s.skipped);

        out.family(
            "roster_changes_total",
            "counter",
            "Changes carried out, by target, kind and outcome (applied, already_done, failed, \
             skipped).",
        );
        for ((target, kind, outcome), n) in &s.changes {
            out.sample(
                "roster_changes_total",
                &[("target", target), ("kind", kind), ("outcome", outcome)],
                n,
            );
        }

        out.family(
            "roster_api_calls_total",
            "counter",
            "API calls sent, by target and HTTP status (0: no answer came).",
        );
        for (target, status, n) in api_calls {
            out.sample(
                "roster_api_calls_total",
                &[("target", target), ("status", &status.to_string())],
                n,
            );
        }

        out.family(
            "roster_phase_duration_seconds",
            "gauge",
            "How long each phase of the last run took: source (loading the desired state), then \
             observe, plan and apply per target.",
        );
        if let Some(d) = s.source_duration {
            out.sample(
                "roster_phase_duration_seconds",
                &[("phase", SOURCE)],
                d.as_secs_f64(),
            );
        }
        for (target, phases) in &s.phases {
            for (phase, d) in phases {
                out.sample(
                    "roster_phase_duration_seconds",
                    &[("target", target), ("phase", phase)],
                    d.as_secs_f64(),
                );
            }
        }

        out.family(
            "roster_last_success_timestamp_seconds",
            "gauge",
            "When the last successful run of each target ended, in seconds since the Unix epoch.",
        );
        for (target, at) in &s.last_success {
            let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default();
            out.sample(
                "roster_last_success_timestamp_seconds",
                &[("target", target)],
                secs.as_secs_f64(),
            );
        }

        out.family(
            "roster_drift_changes",
            "gauge",
            "Changes pending for each target after the last run: a dry run's whole plan, a \
             refused plan, or the changes an apply did not carry out. Absent while the target \
             cannot be read.",
        );
        for (target, n) in &s.drift {
            out.sample("roster_drift_changes", &[("target", target)], n);
        }

        out.family(
            "roster_config_reloads_total",
            "counter",
            "Config reloads (SIGHUP) by outcome; a failed reload keeps the previous config.",
        );
        for (outcome, n) in RELOAD_OUTCOMES.iter().zip(s.reloads) {
            out.sample("roster_config_reloads_total", &[("outcome", outcome)], n);
        }

        out.family(
            "roster_triggers_total",
            "counter",
            "Triggers received, by source and kind; triggers close together start one run.",
        );
        for ((source, kind), n) in &s.triggers {
            out.sample(
                "roster_triggers_total",
                &[("source", source), ("kind", kind)],
                n,
            );
        }

        out.family(
            "roster_trigger_to_apply_seconds",
            "histogram",
            "Seconds from a trigger to the end of the apply it caused.",
        );
        let h = &s.trigger_to_apply;
        let mut cumulative = 0;
        for (i, n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            out.sample(
                "roster_trigger_to_apply_seconds_bucket",
                &[("le", &le)],
                cumulative,
            );
        }
        out.sample("roster_trigger_to_apply_seconds_sum", &[], h.sum);
        out.sample("roster_trigger_to_apply_seconds_count", &[], h.count);

        if let Some(lease) = s.lease {
            out.family(
                "roster_lease_active",
                "gauge",
                "1 while this daemon holds the lease and writes; 0 while it is standby.",
            );
            out.sample("roster_lease_active", &[], u8::from(lease.active));
            out.family(
                "roster_lease_config_skew",
                "gauge",
                "1 while the lease holder runs with a config other than this daemon's.",
            );
            out.sample("roster_lease_config_skew", &[], u8::from(lease.skew));
        }

        out.0
    }

    /// The health `/healthz` reports.
    pub fn health(&self) -> Health {
        let s = self.state();
        Health {
            ok: s.failing.is_empty(),
            failing: s.failing.clone(),
            active: s.lease.map(|l| l.active),
        }
    }
}

/// Whether a target's run counts as a success for health and `last_success`: it was read and
/// planned, and either only planned or every change holds. A refused plan is not a success: the
/// target keeps drifting until a human raises the limit, and health is how they hear of it.
fn succeeded(t: &TargetReport) -> bool {
    !t.failed() && !matches!(t.outcome, TargetOutcome::Refused(_))
}

/// The changes still pending for a target after its run, when known: all of a plan that was not
/// carried out, or those of an apply that did not succeed; unknown when the target was not read.
fn drift(t: &TargetReport) -> Option<usize> {
    match &t.outcome {
        TargetOutcome::Planned | TargetOutcome::Refused(_) => {
            t.plan.as_ref().map(|p| p.changes.len())
        }
        TargetOutcome::Applied(r) => Some(r.failures()),
        TargetOutcome::Invalid(_) | TargetOutcome::ObserveFailed(_) => None,
    }
}

/// The `outcome` label of a change, as the JSON report names it.
fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Applied => "applied",
        Outcome::AlreadyDone(_) => "already_done",
        Outcome::Failed(_) => "failed",
        Outcome::Skipped(_) => "skipped",
    }
}

/// Text in the exposition format, family by family.
#[derive(Default)]
struct Text(String);

impl Text {
    /// The `# HELP` and `# TYPE` lines that open a family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // In HELP text only the backslash and the line feed are escaped.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One sample line: `name{label="value",...} value`.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                self.0.push_str(label);
                self.0.push_str("=\"");
                escape_label_value(&mut self.0, v);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Appends a label value escaped as the format asks: `\` as `\\`, `"` as `\"`, a line feed as
/// `\n`; everything else (any UTF-8) as it is. Target names come from the config, so they can
/// hold anything.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;

//! One target, one run: observe → plan → guard → compile → execute, and a report of it.
//!
//! This is where the safety rules meet: nothing is compiled, let alone sent, unless the source
//! load and the observe both succeeded completely and the guard accepted the plan.

use std::time::{Duration, Instant};

use tracing::{Instrument, info, info_span, warn};

use crate::config::Diagnostic;
use crate::exec::{ApplyReport, Executor};
use crate::model::Desired;
use crate::plan::{self, Plan, Policy, Refusal};
use crate::target::{ObserveError, Target};

/// Whether a run only plans or also writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read and plan; write nothing.
    Plan,
    /// Read, plan, check the limits, write.
    Apply,
}

/// How reconciling one target ended.
#[derive(Debug)]
pub enum TargetOutcome {
    /// The desired state holds something this target cannot take (a VinylDNS group without an
    /// e-mail, say); nothing was read or written.
    Invalid(Vec<Diagnostic>),
    /// Reading the target failed; nothing was written.
    ObserveFailed(ObserveError),
    /// Planned only (plan mode).
    Planned,
    /// A safety rule refused the plan; nothing was written.
    Refused(Refusal),
    /// The plan was carried out; see the report for each change.
    Applied(ApplyReport),
}

/// What happened to one target in a run.
#[derive(Debug)]
pub struct TargetReport {
    /// The target's name.
    pub target: String,
    /// The plan, when the target could be read.
    pub plan: Option<Plan>,
    /// How it ended.
    pub outcome: TargetOutcome,
    /// How long each phase took (`observe`, `plan`, `apply`), for those that ran.
    pub durations: Vec<(&'static str, Duration)>,
}

impl TargetReport {
    /// Whether something failed: the read, or any change.
    pub fn failed(&self) -> bool {
        match &self.outcome {
            TargetOutcome::ObserveFailed(_) | TargetOutcome::Invalid(_) => true,
            TargetOutcome::Applied(r) => r.failures() > 0,
            TargetOutcome::Planned | TargetOutcome::Refused(_) => false,
        }
    }
}

/// Reconciles one target: see the module documentation.
pub async fn reconcile<T: Target>(
    target: &T,
    target_type: &str,
    desired: &Desired,
    policy: &Policy,
    exec: &Executor,
    mode: Mode,
) -> TargetReport {
    let name = target.target_name().to_owned();
    let span = info_span!("target", target = %name);
    async {
        let caps = target.capabilities();
        let mut durations = Vec::new();
        let desired = match target.prepare(desired, &policy.scope) {
            Ok(d) => d,
            Err(problems) => {
                warn!(
                    problems = problems.len(),
                    "the desired state does not fit this target; nothing will be read or written"
                );
                return TargetReport {
                    target: name.clone(),
                    plan: None,
                    outcome: TargetOutcome::Invalid(problems),
                    durations: durations.clone(),
                };
            }
        };
        let desired = desired.as_ref();
        let started = Instant::now();
        let observed = match target
            .observe(&policy.scope, &desired.user_keys())
            .instrument(info_span!("observe"))
            .await
        {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "could not read the target; nothing will be written to it");
                return TargetReport {
                    target: name.clone(),
                    plan: None,
                    outcome: TargetOutcome::ObserveFailed(e),
                    durations: durations.clone(),
                };
            }
        };
        durations.push(("observe", started.elapsed()));
        let started = Instant::now();
        let plan = info_span!("plan")
            .in_scope(|| plan::plan(&name, target_type, desired, &observed, policy, caps));
        durations.push(("plan", started.elapsed()));
        info!(
            add = plan.summary.add,
            change = plan.summary.change,
            remove = plan.summary.remove,
            warnings = plan.warnings.len(),
            "planned"
        );
        if mode == Mode::Plan {
            return TargetReport {
                target: name.clone(),
                plan: Some(plan),
                outcome: TargetOutcome::Planned,
                durations: durations.clone(),
            };
        }
        if let Err(refusal) = plan::guard(&plan, desired, &observed, policy) {
            warn!(%refusal, "plan refused; nothing will be written");
            return TargetReport {
                target: name.clone(),
                plan: Some(plan),
                outcome: TargetOutcome::Refused(refusal),
                durations: durations.clone(),
            };
        }
        let started = Instant::now();
        let calls = target.compile(&plan, &observed);
        let report = exec
            .execute(target, calls)
            .instrument(info_span!("apply"))
            .await;
        durations.push(("apply", started.elapsed()));
        info!(
            changes = plan.changes.len(),
            failed = report.failures(),
            attempts = report.attempts,
            "applied"
        );
        TargetReport {
            target: name.clone(),
            plan: Some(plan),
            outcome: TargetOutcome::Applied(report),
            durations,
        }
    }
    .instrument(span)
    .await
}

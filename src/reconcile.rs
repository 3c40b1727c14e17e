//! One target, one run: observe → plan → guard → compile → execute, and a report of it.
//!
//! This is where the safety rules meet: nothing is compiled, let alone sent, unless the source
//! load and the observe both succeeded completely and the guard accepted the plan.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{Instrument, info, info_span, warn};

use crate::config::Diagnostic;
use crate::exec::{ApplyReport, Executor};
use crate::model::Desired;
use crate::plan::{self, Plan, PlanError, Policy, Refusal};
use crate::target::{ObserveError, Rejection, Target};

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
    /// Whether something failed: the read, any change, or (in a plan) the check of a change
    /// against the target's rules.
    pub fn failed(&self) -> bool {
        match &self.outcome {
            TargetOutcome::ObserveFailed(_) | TargetOutcome::Invalid(_) => true,
            TargetOutcome::Applied(r) => r.failures() > 0,
            TargetOutcome::Planned => self.plan.as_ref().is_some_and(|p| !p.errors.is_empty()),
            TargetOutcome::Refused(_) => false,
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
        let mut plan = info_span!("plan")
            .in_scope(|| plan::plan(&name, target_type, desired, &observed, policy, caps));
        match target
            .vet(desired, &observed, &plan)
            .instrument(info_span!("vet"))
            .await
        {
            Ok(rejections) => plan.errors = plan_errors(desired, rejections),
            Err(e) => {
                warn!(error = %e, "could not check the plan against the target's rules; nothing will be written to it");
                return TargetReport {
                    target: name.clone(),
                    plan: None,
                    outcome: TargetOutcome::ObserveFailed(e),
                    durations: durations.clone(),
                };
            }
        }
        durations.push(("plan", started.elapsed()));
        info!(
            add = plan.summary.add,
            change = plan.summary.change,
            remove = plan.summary.remove,
            warnings = plan.warnings.len(),
            errors = plan.errors.len(),
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
        let refused = refused_changes(&plan);
        let report = exec
            .execute_vetted(target, calls, &refused)
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

/// The connector's rejections as plan errors, each pointing at where its group is defined;
/// sorted, so that plans come out the same on every run.
fn plan_errors(desired: &Desired, rejections: Vec<Rejection>) -> Vec<PlanError> {
    let mut errors: Vec<PlanError> = rejections
        .into_iter()
        .map(|r| PlanError {
            at: desired.origins.get(&r.group).map(ToString::to_string),
            group: r.group,
            change: r.change,
            message: r.message,
        })
        .collect();
    errors.sort();
    errors.dedup();
    errors
}

/// Every change of `plan` its errors refuse, by index, with the reasons joined.
fn refused_changes(plan: &Plan) -> BTreeMap<usize, String> {
    (0..plan.changes.len())
        .filter_map(|i| {
            let why: Vec<&str> = plan.refusals_of(i).map(|e| e.message.as_str()).collect();
            (!why.is_empty()).then(|| (i, why.join("; ")))
        })
        .collect()
}

//! One target, one run: observe → plan → guard → compile → execute, and a report of it.
//!
//! This is where the safety rules meet: nothing is compiled, let alone sent, unless the source
//! load and the observe both succeeded completely and the guard accepted the plan. A plan-only run
//! stops after the guard, so that it reports the refusals an apply would meet.
//!
//! When an earlier run was stopped between sending a write and journalling its outcome, the
//! target's log says which writes, the groups they were about are handled first, and once the
//! target has been read afresh the journal records that they were checked. The journal never
//! decides what is written: the plan comes from the fresh read, as always.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::{Instrument, info, info_span, warn};

use crate::config::Diagnostic;
use crate::exec::{ApplyReport, Executor};
use crate::journal::{Audit, Line, read};
use crate::model::{Desired, GroupName};
use crate::plan::fingerprint::Fingerprint;
use crate::plan::saved::SavedTarget;
use crate::plan::{self, Change, Plan, PlanError, Policy, Refusal, Summary};
use crate::target::{Call, ObserveError, Rejection, Target};

/// Whether a run only plans or also writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read, plan and check the limits; write nothing.
    Plan,
    /// Read, plan, check the limits, write.
    Apply,
}

/// What a target's plan is made from.
#[derive(Clone, Copy, Debug, Default)]
pub enum Basis<'a> {
    /// The desired state, fresh.
    #[default]
    Fresh,
    /// The desired state, fresh, with a fingerprint of the target's state kept in the report (a
    /// plan to be saved).
    Recorded,
    /// A saved plan's changes, applied only if the target still holds what the plan was made
    /// from.
    Saved(&'a SavedTarget),
}

/// How reconciling one target ended.
#[derive(Debug)]
pub enum TargetOutcome {
    /// The desired state holds something this target cannot take (a VinylDNS group without an
    /// e-mail, say); nothing was read or written.
    Invalid(Vec<Diagnostic>),
    /// Reading the target failed; nothing was written.
    ObserveFailed(ObserveError),
    /// Planned only (plan mode), and the guard accepted the plan.
    Planned,
    /// A safety rule refused the plan (in plan mode as in apply mode); nothing was written. The
    /// plan carries the same refusal.
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
    /// The fingerprint of what the target held, when one was asked for (a plan to be saved, or
    /// a saved plan to be applied).
    pub fingerprint: Option<Fingerprint>,
}

impl TargetReport {
    /// Whether something failed: the read, any change, or (in a plan, refused or not) the check
    /// of a change against the target's rules. A refusal alone is not a failure: it has its own
    /// exit code.
    pub fn failed(&self) -> bool {
        match &self.outcome {
            TargetOutcome::ObserveFailed(_) | TargetOutcome::Invalid(_) => true,
            TargetOutcome::Applied(r) => r.failures() > 0,
            // A refused plan with errors fails too: raising the limit would not make it clean.
            TargetOutcome::Planned | TargetOutcome::Refused(_) => {
                self.plan.as_ref().is_some_and(|p| !p.errors.is_empty())
            }
        }
    }
}

/// Reconciles one target: see the module documentation. `basis` says what the plan comes from;
/// `audit` is the run's journal and the writes earlier runs left without outcome.
// Each argument is an input of its own that the run hands over as it has it; a struct of them
// would be built only to be taken apart here.
#[allow(clippy::too_many_arguments)]
pub async fn reconcile<T: Target>(
    target: &T,
    target_type: &str,
    desired: &Desired,
    policy: &Policy,
    exec: &Executor,
    mode: Mode,
    basis: Basis<'_>,
    audit: &Audit,
) -> TargetReport {
    let name = target.target_name().to_owned();
    let span = info_span!("target", target = %name);
    async {
        let interrupted: Vec<&Line> = audit.pending_for(&name).collect();
        if !interrupted.is_empty() {
            warn!(
                writes = interrupted.len(),
                unfinished = %unfinished(&interrupted),
                "an earlier run stopped before it journalled how these writes came out; the \
                 target is read afresh, and their groups are checked first"
            );
        }
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
                    fingerprint: None,
                    target: name.clone(),
                    plan: None,
                    outcome: TargetOutcome::Invalid(problems),
                    durations: durations.clone(),
                };
            }
        };
        let desired = desired.as_ref();
        // The users the desired state names are the desired state's, not the read's.
        let users = desired.user_keys();
        let started = Instant::now();
        let observed = match target
            .observe(&policy.scope, &users)
            .instrument(info_span!("observe"))
            .await
        {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "could not read the target; nothing will be written to it");
                return TargetReport {
                    fingerprint: None,
                    target: name.clone(),
                    plan: None,
                    outcome: TargetOutcome::ObserveFailed(e),
                    durations: durations.clone(),
                };
            }
        };
        durations.push(("observe", started.elapsed()));
        if mode == Mode::Apply
            && let Some(journal) = audit.journal()
        {
            // The fresh read settles what those writes came to: record that they were checked,
            // so that the next run does not report them again.
            for intent in &interrupted {
                if let Err(e) = journal.recheck(intent) {
                    warn!(error = %e, "cannot journal the check of an unfinished write");
                }
            }
        }
        let fingerprint = match basis {
            Basis::Fresh => None,
            Basis::Recorded | Basis::Saved(_) => Some(Fingerprint::of(&observed)),
        };
        let started = Instant::now();
        let mut plan = match basis {
            Basis::Saved(saved) => match saved_plan(&name, saved, fingerprint.as_ref(), policy) {
                Ok(plan) => plan,
                Err(refusal) => {
                    warn!(%refusal, "the saved plan is stale; nothing will be written");
                    let plan = Plan {
                        target: name.clone(),
                        refusal: Some(refusal.clone()),
                        ..Plan::default()
                    };
                    return TargetReport {
                        target: name.clone(),
                        plan: Some(plan),
                        outcome: TargetOutcome::Refused(refusal),
                        durations: durations.clone(),
                        fingerprint,
                    };
                }
            },
            Basis::Fresh | Basis::Recorded => info_span!("plan")
                .in_scope(|| plan::plan(&name, target_type, desired, &observed, policy, caps)),
        };
        match target
            .vet(desired, &observed, &plan)
            .instrument(info_span!("vet"))
            .await
        {
            Ok(rejections) => plan.errors = plan_errors(desired, rejections),
            Err(e) => {
                warn!(error = %e, "could not check the plan against the target's rules; nothing will be written to it");
                return TargetReport {
                    fingerprint: fingerprint.clone(),
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
        // The guard runs in plan mode too, so that `roster plan` shows what `roster apply` would
        // refuse, and the plan carries the refusal for the renders.
        if let Err(refusal) = plan::guard(&plan, desired, &observed, policy) {
            warn!(%refusal, "plan refused by a safety rule; nothing will be written");
            plan.refusal = Some(refusal.clone());
            return TargetReport {
                fingerprint: fingerprint.clone(),
                target: name.clone(),
                plan: Some(plan),
                outcome: TargetOutcome::Refused(refusal),
                durations: durations.clone(),
            };
        }
        if mode == Mode::Plan {
            return TargetReport {
                fingerprint: fingerprint.clone(),
                target: name.clone(),
                plan: Some(plan),
                outcome: TargetOutcome::Planned,
                durations: durations.clone(),
            };
        }
        let started = Instant::now();
        let mut calls = target.compile(&plan, &observed);
        // The groups of unfinished writes go first in each stage: what an interrupted run left
        // half done is completed before anything new is started.
        let first: BTreeSet<GroupName> = interrupted
            .iter()
            .map(|l| GroupName::from(l.group.as_str()))
            .collect();
        calls.sort_by_key(|c| !first.contains(c.group()));
        let refused = refused_changes(&plan);
        let mut exec = exec.clone();
        exec.journal = audit.for_target(&name, &plan);
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
            fingerprint: fingerprint.clone(),
            target: name.clone(),
            plan: Some(plan),
            outcome: TargetOutcome::Applied(report),
            durations,
        }
    }
    .instrument(span)
    .await
}

/// The unfinished writes, for a log line: `create group "eng" (run 1f3a9c2e, 2026-…)`, the
/// first ten and a count of the rest.
fn unfinished(intents: &[&Line]) -> String {
    const SHOWN: usize = 10;
    let mut parts: Vec<String> = intents
        .iter()
        .take(SHOWN)
        .map(|l| {
            let run: String = l.run_id.chars().take(8).collect();
            format!("{} (run {run}, {})", read::describe(l), l.time)
        })
        .collect();
    if intents.len() > SHOWN {
        parts.push(format!("and {} more", intents.len() - SHOWN));
    }
    parts.join("; ")
}

/// A saved plan's changes as this target's plan, if the target still holds what the plan was
/// made from (`now`, its fingerprint) and every group they change is still in the managed
/// scope (the config's and the desired state's of now: a group a later merge dropped from the
/// files would be a write roster no longer manages); else the refusal saying what moved.
fn saved_plan(
    name: &str,
    saved: &SavedTarget,
    now: Option<&Fingerprint>,
    policy: &Policy,
) -> Result<Plan, Refusal> {
    let mut changed = match now {
        Some(now) if now.digest == saved.fingerprint.digest => Vec::new(),
        Some(now) => now.changes_since(&saved.fingerprint),
        None => Vec::new(),
    };
    if changed.is_empty() && now.map(|f| &f.digest) != Some(&saved.fingerprint.digest) {
        changed.push("its groups differ".to_owned());
    }
    if changed.is_empty() {
        changed = saved
            .changes
            .iter()
            .map(Change::group)
            .filter(|g| !policy.scope.contains(g))
            .map(|g| format!("\"{g}\" is no longer in the managed scope"))
            .collect();
        changed.sort();
        changed.dedup();
    }
    if !changed.is_empty() {
        return Err(Refusal::Stale { changed });
    }
    Ok(Plan {
        target: name.to_owned(),
        summary: Summary::of(&saved.changes),
        changes: saved.changes.clone(),
        ..Plan::default()
    })
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! `reconcile` with a connector whose checks refuse one change: the plan carries the error
    //! at the group's place, a plan run fails, and an apply sends everything but the refused call.

    use std::collections::BTreeSet;
    use std::num::NonZeroUsize;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;
    use crate::exec::{Outcome, RetryPolicy};
    use crate::model::{
        Capabilities, Group, GroupName, MembershipWrites, Observed, Origin, UserKey,
    };
    use crate::plan::change::Change;
    use crate::plan::{MembershipMode, Scope};
    use crate::target::{Call, CallError, Named, RetrySafety, Sent, Stage};

    #[derive(Debug)]
    struct OneCall {
        group: GroupName,
        index: [usize; 1],
    }

    impl Call for OneCall {
        fn group(&self) -> &GroupName {
            &self.group
        }
        fn stage(&self) -> Stage {
            Stage::CreateGroup
        }
        fn retry(&self) -> RetrySafety {
            RetrySafety::Idempotent
        }
        fn covers(&self) -> &[usize] {
            &self.index
        }
    }

    /// Refuses to create groups whose names start with a digit; reads fail when `broken_vet`;
    /// holds `observed`.
    #[derive(Default)]
    struct Picky {
        sent: Mutex<Vec<GroupName>>,
        broken_vet: bool,
        observed: Observed,
    }

    impl Named for Picky {
        fn target_name(&self) -> &str {
            "picky"
        }
    }

    impl Target for Picky {
        type Call = OneCall;

        fn capabilities(&self) -> Capabilities {
            Capabilities {
                nested_groups: true,
                membership: MembershipWrites::PerMember,
                case_insensitive_names: false,
                renames: true,
            }
        }

        async fn observe(
            &self,
            _scope: &Scope,
            _users: &BTreeSet<UserKey>,
        ) -> Result<Observed, ObserveError> {
            Ok(self.observed.clone())
        }

        async fn vet(
            &self,
            _desired: &Desired,
            _observed: &Observed,
            plan: &Plan,
        ) -> Result<Vec<Rejection>, ObserveError> {
            if self.broken_vet {
                return Err(ObserveError::Incomplete {
                    target: "picky".to_owned(),
                    message: "the domain list could not be read".to_owned(),
                });
            }
            Ok(plan
                .changes
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.group()
                        .as_str()
                        .starts_with(|ch: char| ch.is_ascii_digit())
                })
                .filter_map(|(i, _)| {
                    Rejection::of_change(plan, i, "names start with a letter".to_owned())
                })
                .collect())
        }

        fn compile(&self, plan: &Plan, _observed: &Observed) -> Vec<OneCall> {
            plan.changes
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c, Change::CreateGroup { .. }))
                .map(|(i, c)| OneCall {
                    group: c.group().clone(),
                    index: [i],
                })
                .collect()
        }

        async fn send(&self, call: &OneCall) -> Result<Sent, CallError> {
            self.sent.lock().unwrap().push(call.group.clone());
            Ok(Sent::Done)
        }

        async fn recheck(&self, _call: &OneCall) -> Result<Option<Sent>, CallError> {
            Ok(None)
        }
    }

    fn desired() -> Desired {
        let mut d = Desired::default();
        for (name, line) in [("1st", 1), ("eng", 5)] {
            d.groups.insert(name.into(), Group::named(name));
            d.origins.insert(
                name.into(),
                Origin::File {
                    path: PathBuf::from("groups/all.toml"),
                    line,
                    col: 1,
                },
            );
        }
        d
    }

    fn policy(d: &Desired) -> Policy {
        Policy {
            scope: Scope::new(None, d, false).unwrap(),
            membership: MembershipMode::Authoritative,
            prune: false,
            max_deletes: 10,
            max_group_shrink: crate::plan::Share::DEFAULT,
            allow_empty_source: false,
        }
    }

    fn executor() -> Executor {
        Executor::new(RetryPolicy::default(), NonZeroUsize::new(2).unwrap())
    }

    #[tokio::test]
    async fn a_refused_change_is_a_plan_error_at_its_group() {
        let d = desired();
        let t = Picky::default();
        let r = reconcile(
            &t,
            "picky",
            &d,
            &policy(&d),
            &executor(),
            Mode::Plan,
            Basis::Fresh,
            &Audit::default(),
        )
        .await;
        let plan = r.plan.as_ref().unwrap();
        assert_eq!(
            plan.errors,
            [PlanError {
                group: "1st".into(),
                change: Some(0),
                at: Some("groups/all.toml:1:1".to_owned()),
                message: "names start with a letter".to_owned(),
            }]
        );
        assert!(r.failed(), "a plan with errors is not clean");
        assert!(t.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_apply_sends_all_but_the_refused_change() {
        let d = desired();
        let t = Picky::default();
        let r = reconcile(
            &t,
            "picky",
            &d,
            &policy(&d),
            &executor(),
            Mode::Apply,
            Basis::Fresh,
            &Audit::default(),
        )
        .await;
        assert_eq!(*t.sent.lock().unwrap(), [GroupName::from("eng")]);
        let TargetOutcome::Applied(report) = &r.outcome else {
            panic!("{:?}", r.outcome)
        };
        assert_eq!(
            report.outcomes.get(&0),
            Some(&Outcome::Failed(
                "refused at plan time: names start with a letter".to_owned()
            ))
        );
        assert_eq!(report.outcomes.get(&1), Some(&Outcome::Applied));
        assert!(r.failed());
    }

    #[tokio::test]
    async fn a_failed_check_writes_nothing() {
        let d = desired();
        let t = Picky {
            broken_vet: true,
            ..Picky::default()
        };
        let r = reconcile(
            &t,
            "picky",
            &d,
            &policy(&d),
            &executor(),
            Mode::Apply,
            Basis::Fresh,
            &Audit::default(),
        )
        .await;
        assert!(matches!(r.outcome, TargetOutcome::ObserveFailed(_)));
        assert!(r.plan.is_none());
        assert!(t.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_clean_plan_is_not_a_failure() {
        let mut d = desired();
        d.groups.remove(&GroupName::from("1st"));
        let t = Picky::default();
        let r = reconcile(
            &t,
            "picky",
            &d,
            &policy(&d),
            &executor(),
            Mode::Plan,
            Basis::Fresh,
            &Audit::default(),
        )
        .await;
        assert!(r.plan.as_ref().unwrap().errors.is_empty());
        assert!(!r.failed());
    }

    /// A target that holds `eng` with twelve members, of which the desired state keeps two.
    fn shrinking() -> (Desired, Picky) {
        let members: Vec<String> = (0..12).map(|i| format!("u{i:02}")).collect();
        let mut d = Desired::default();
        let mut want = Group::named("eng");
        want.members = members[..2]
            .iter()
            .map(|m| UserKey::from(m.as_str()))
            .collect();
        d.groups.insert("eng".into(), want);
        let mut have = Group::named("eng");
        have.members = members.iter().map(|m| UserKey::from(m.as_str())).collect();
        let mut observed = Observed::default();
        observed.groups.insert(
            "eng".into(),
            crate::model::ObservedGroup {
                id: "1".to_owned(),
                group: have,
                kind: crate::model::GroupKind::Managed,
            },
        );
        let t = Picky {
            observed,
            ..Picky::default()
        };
        (d, t)
    }

    #[tokio::test]
    async fn a_plan_run_reports_the_refusal_an_apply_would_meet_with_its_plan() {
        let (d, t) = shrinking();
        for mode in [Mode::Plan, Mode::Apply] {
            let r = reconcile(
                &t,
                "picky",
                &d,
                &policy(&d),
                &executor(),
                mode,
                Basis::Fresh,
                &Audit::default(),
            )
            .await;
            let TargetOutcome::Refused(refusal) = &r.outcome else {
                panic!("{mode:?}: {:?}", r.outcome)
            };
            assert_eq!(refusal.kind(), "group_shrink");
            let plan = r.plan.as_ref().unwrap();
            assert_eq!(plan.refusal.as_ref(), Some(refusal), "{mode:?}");
            assert_eq!(plan.summary.remove, 10, "{mode:?}: the plan is shown whole");
            assert!(!r.failed(), "{mode:?}: a refusal is not a failure");
        }
        assert!(t.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_plan_with_errors_has_failed() {
        let (mut d, t) = shrinking();
        d.groups.insert("1st".into(), Group::named("1st"));
        let r = reconcile(
            &t,
            "picky",
            &d,
            &policy(&d),
            &executor(),
            Mode::Plan,
            Basis::Fresh,
            &Audit::default(),
        )
        .await;
        assert!(matches!(r.outcome, TargetOutcome::Refused(_)), "{r:?}");
        assert_eq!(r.plan.as_ref().unwrap().errors.len(), 1);
        assert!(r.failed());
    }

    #[tokio::test]
    async fn an_accepted_plan_run_is_planned() {
        let (d, t) = shrinking();
        let mut p = policy(&d);
        p.max_group_shrink = crate::plan::Share::ALL;
        let r = reconcile(
            &t,
            "picky",
            &d,
            &p,
            &executor(),
            Mode::Plan,
            Basis::Fresh,
            &Audit::default(),
        )
        .await;
        assert!(matches!(r.outcome, TargetOutcome::Planned), "{r:?}");
        assert_eq!(r.plan.as_ref().unwrap().refusal, None);
    }
}

//! A run in one line, for the log and systemd's `STATUS=`: how many targets, how many changes
//! applied (or pending, in a dry run), how many failed, and which targets could not be reconciled.

use std::fmt;

use crate::exec::Outcome;
use crate::reconcile::{Mode, TargetOutcome};
use crate::run::RunReport;

/// The counts of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Plan only (a dry run) or apply.
    pub dry_run: bool,
    /// Targets reconciled (or attempted).
    pub targets: usize,
    /// Changes applied (apply), or pending (dry run).
    pub changes: usize,
    /// Changes that failed (apply).
    pub failed: usize,
    /// Changes not attempted (apply): the run was stopped, or a change they need failed.
    pub skipped: usize,
    /// Targets that could not be read or cannot take the desired state: nothing was written.
    pub unreconciled: Vec<String>,
    /// Targets whose plan a safety rule refused (in a dry run as in an apply): nothing was
    /// written.
    pub refused: Vec<String>,
}

impl Summary {
    /// Counts `report`, a run in `mode`.
    pub fn of(report: &RunReport, mode: Mode) -> Self {
        let mut s = Summary {
            dry_run: mode == Mode::Plan,
            targets: report.targets.len(),
            ..Summary::default()
        };
        for t in &report.targets {
            match &t.outcome {
                TargetOutcome::Invalid(_) | TargetOutcome::ObserveFailed(_) => {
                    s.unreconciled.push(t.target.clone());
                }
                TargetOutcome::Refused(_) => {
                    s.refused.push(t.target.clone());
                    // A dry run reports drift: a refused plan's changes are still pending. An
                    // apply applied none of them.
                    if s.dry_run {
                        s.changes += t.plan.as_ref().map_or(0, |p| p.changes.len());
                    }
                }
                TargetOutcome::Planned => {
                    s.changes += t.plan.as_ref().map_or(0, |p| p.changes.len());
                }
                TargetOutcome::Applied(r) => {
                    for o in r.outcomes.values() {
                        match o {
                            Outcome::Applied | Outcome::AlreadyDone(_) => s.changes += 1,
                            Outcome::Failed(_) => s.failed += 1,
                            Outcome::Skipped(_) => s.skipped += 1,
                        }
                    }
                }
            }
        }
        s
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            write!(
                f,
                "{}, {} pending (dry run)",
                count(self.targets, "target"),
                count(self.changes, "change")
            )?;
        } else {
            write!(
                f,
                "{}, {} applied, {} failed",
                count(self.targets, "target"),
                count(self.changes, "change"),
                self.failed
            )?;
            if self.skipped > 0 {
                write!(f, ", {} skipped", self.skipped)?;
            }
        }
        if !self.unreconciled.is_empty() {
            write!(f, "; not reconciled: {}", self.unreconciled.join(", "))?;
        }
        if !self.refused.is_empty() {
            write!(f, "; refused: {}", self.refused.join(", "))?;
        }
        Ok(())
    }
}

/// `1 target`, `2 targets`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::exec::ApplyReport;
    use crate::plan::{Change, Plan};
    use crate::reconcile::TargetReport;
    use crate::target::ObserveError;

    fn target(name: &str, outcome: TargetOutcome) -> TargetReport {
        TargetReport {
            fingerprint: None,
            target: name.to_owned(),
            plan: None,
            outcome,
            durations: Vec::new(),
        }
    }

    #[test]
    fn an_apply_counts_applied_and_failed_changes_and_names_unread_targets() {
        let outcomes = BTreeMap::from([
            (0, Outcome::Applied),
            (1, Outcome::AlreadyDone("409".into())),
            (2, Outcome::Failed("500".into())),
            (3, Outcome::Skipped("run stopped".into())),
        ]);
        let report = RunReport {
            run_id: "test".to_owned(),
            targets: vec![
                target(
                    "cms",
                    TargetOutcome::Applied(ApplyReport {
                        outcomes,
                        attempts: 3,
                    }),
                ),
                target(
                    "dns",
                    TargetOutcome::ObserveFailed(ObserveError::Setup {
                        target: "dns".into(),
                        message: "down".into(),
                    }),
                ),
            ],
            ..RunReport::default()
        };
        assert_eq!(
            Summary::of(&report, Mode::Apply).to_string(),
            "2 targets, 2 changes applied, 1 failed, 1 skipped; not reconciled: dns"
        );
    }

    /// A run of one target, `cms`, with this outcome and a plan of these changes.
    fn planned_cms(outcome: TargetOutcome, changes: Vec<Change>) -> RunReport {
        let mut t = target("cms", outcome);
        t.plan = Some(Plan {
            target: "cms".to_owned(),
            summary: crate::plan::Summary::of(&changes),
            changes,
            ..Plan::default()
        });
        RunReport {
            run_id: "test".to_owned(),
            targets: vec![t],
            ..RunReport::default()
        }
    }

    #[test]
    fn a_dry_run_counts_pending_changes() {
        let report = planned_cms(
            TargetOutcome::Planned,
            vec![
                Change::AddMember {
                    group: "g".into(),
                    member: "alice".into(),
                },
                Change::RemoveMember {
                    group: "g".into(),
                    member: "bob".into(),
                },
            ],
        );
        assert_eq!(
            Summary::of(&report, Mode::Plan).to_string(),
            "1 target, 2 changes pending (dry run)"
        );
    }

    #[test]
    fn a_refused_plan_is_pending_in_a_dry_run_and_not_applied_in_an_apply() {
        let refusal = crate::plan::Refusal::TooManyDeletes {
            removals: 1,
            limit: 0,
        };
        let report = planned_cms(
            TargetOutcome::Refused(refusal),
            vec![Change::RemoveMember {
                group: "g".into(),
                member: "bob".into(),
            }],
        );
        assert_eq!(
            Summary::of(&report, Mode::Plan).to_string(),
            "1 target, 1 change pending (dry run); refused: cms"
        );
        assert_eq!(
            Summary::of(&report, Mode::Apply).to_string(),
            "1 target, 0 changes applied, 0 failed; refused: cms"
        );
    }
}

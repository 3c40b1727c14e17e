//! Turning a run's outcome into what a person reads and the exit code a script checks. This is the
//! one place that maps outcomes to exit codes.

use std::fmt::Write as _;

use crate::exec::Outcome;
use crate::plan::render::{self, Failed, Format};
use crate::reconcile::TargetOutcome;
use crate::run::RunReport;
use crate::source::SourceRead;

/// Exit code: success (for `plan --detailed-exitcode`: in sync).
pub const EXIT_OK: u8 = 0;
/// Exit code: an error (a config, source, read or change failed).
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `plan --detailed-exitcode`: changes are pending.
pub const EXIT_CHANGES: u8 = 2;
/// Exit code of `plan` and `apply`: a safety rule refused a plan; nothing was (or, for `plan`,
/// would be) written to that target.
pub const EXIT_REFUSED: u8 = 3;

/// The plans of a run, rendered; targets that could not be read are listed as failed.
pub fn plans(report: &RunReport, format: Format) -> String {
    let plans: Vec<_> = report
        .targets
        .iter()
        .filter_map(|t| t.plan.clone())
        .collect();
    let failed: Vec<Failed> = report
        .targets
        .iter()
        .filter_map(|t| match &t.outcome {
            TargetOutcome::ObserveFailed(e) => Some(Failed {
                target: t.target.clone(),
                error: e.to_string(),
            }),
            TargetOutcome::Invalid(problems) => Some(Failed {
                target: t.target.clone(),
                error: invalid(problems),
            }),
            _ => None,
        })
        .collect();
    let reads: Vec<render::Read> = report.sources.iter().map(read).collect();
    render::render(&plans, &failed, &reads, format)
}

/// What a source read, in words and as JSON.
fn read(r: &SourceRead) -> render::Read {
    let line = match r {
        SourceRead::Toml {
            path,
            files,
            groups,
        } => format!(
            "{}: {} from {}",
            path.display(),
            count(*groups, "group"),
            count(*files, "file")
        ),
        SourceRead::Ldap(l) => {
            let mut line = format!(
                "{} ({}), base {}: {}, {}, {}",
                l.server,
                l.directory,
                l.base,
                count(l.groups, "group"),
                count(l.users, "user"),
                count(l.pages, "page")
            );
            if l.ranged > 0 {
                let _ = write!(
                    line,
                    ", {} continued in {}",
                    count(l.ranged, "ranged attribute"),
                    count(l.range_reads, "read")
                );
            }
            if l.disabled > 0 {
                let _ = write!(line, ", {} left out", count(l.disabled, "disabled member"));
            }
            line
        }
    };
    render::Read {
        line,
        json: serde_json::to_value(r).unwrap_or_default(),
    }
}

/// `n thing` or `n things`.
fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// The problems of a desired state a target cannot take, as one message.
fn invalid(problems: &[crate::config::Diagnostic]) -> String {
    format!(
        "the desired state does not fit this target:\n{}",
        crate::config::diag::Lines(problems)
    )
}

/// The exit code of `roster plan`: 1 if anything failed, else 3 if a safety rule refused a plan
/// (what `apply` would do), else with `detailed` 2 for pending changes, else 0.
pub fn plan_exit(report: &RunReport, detailed: bool) -> u8 {
    if report.any_failed() {
        EXIT_ERROR
    } else if report.any_refused() {
        EXIT_REFUSED
    } else if detailed && report.any_changes() {
        EXIT_CHANGES
    } else {
        EXIT_OK
    }
}

/// The exit code of `roster apply`: 1 if anything failed, else 3 if a plan was refused, else 0.
pub fn apply_exit(report: &RunReport) -> u8 {
    if report.any_failed() {
        EXIT_ERROR
    } else if report.any_refused() {
        EXIT_REFUSED
    } else {
        EXIT_OK
    }
}

/// What `roster apply` did, target by target: each change with its outcome, then totals.
pub fn applied(report: &RunReport) -> String {
    let mut out = String::new();
    let (mut ok, mut failed) = (0usize, 0usize);
    // Targets the apply did not happen for, and why, for the last line.
    let mut not_applied: Vec<String> = Vec::new();
    for t in &report.targets {
        match (&t.outcome, &t.plan) {
            (TargetOutcome::ObserveFailed(e), _) => {
                let _ = writeln!(
                    out,
                    "{}: not applied, the target could not be read: {e}",
                    t.target
                );
                not_applied.push(format!("{} (could not be read)", t.target));
            }
            (TargetOutcome::Invalid(problems), _) => {
                let _ = writeln!(out, "{}: not applied, {}", t.target, invalid(problems));
                not_applied.push(format!("{} (the desired state does not fit it)", t.target));
            }
            (TargetOutcome::Refused(r), _) => {
                let _ = writeln!(out, "{}: refused, nothing written: {r}", t.target);
                not_applied.push(format!("{} (refused)", t.target));
            }
            (TargetOutcome::Applied(_), Some(p)) if p.is_empty() => {
                let _ = writeln!(out, "{}: in sync", t.target);
            }
            (TargetOutcome::Applied(r), Some(p)) => {
                let _ = writeln!(out, "{}:", t.target);
                for (i, c) in p.changes.iter().enumerate() {
                    let line = render::line(c);
                    match r.outcomes.get(&i) {
                        Some(Outcome::Applied) => {
                            ok += 1;
                            let _ = writeln!(out, "  {line}");
                        }
                        Some(Outcome::AlreadyDone(why)) => {
                            ok += 1;
                            let _ = writeln!(out, "  {line} (already done: {why})");
                        }
                        Some(Outcome::Failed(e)) => {
                            failed += 1;
                            let _ = writeln!(out, "  {line} FAILED: {e}");
                        }
                        Some(Outcome::Skipped(why)) => {
                            failed += 1;
                            let _ = writeln!(out, "  {line} SKIPPED: {why}");
                        }
                        None => {
                            failed += 1;
                            let _ = writeln!(out, "  {line} NOT SENT");
                        }
                    }
                }
                for w in &p.warnings {
                    let _ = writeln!(out, "  ! {}", w.message);
                }
            }
            (_, _) => {}
        }
    }
    let _ = if not_applied.is_empty() {
        writeln!(
            out,
            "\nApply complete: {ok} changes applied, {failed} failed."
        )
    } else if not_applied.len() == report.targets.len() {
        writeln!(
            out,
            "\nNothing applied: the apply did not happen for {}.",
            not_applied.join(", ")
        )
    } else {
        writeln!(
            out,
            "\nApply incomplete: {ok} changes applied, {failed} failed; not applied to {}.",
            not_applied.join(", ")
        )
    };
    out
}

#[cfg(test)]
mod tests {
    //! The exit codes of `roster plan` (a failure outranks a refusal, which outranks pending
    //! changes), and the read report at the top of a plan.

    use super::*;
    use crate::plan::{Change, Plan, PlanError, Refusal, Summary};
    use crate::reconcile::TargetReport;

    /// A target whose plan has one change, with an error if `error`, and this outcome.
    fn target(outcome: TargetOutcome, error: bool) -> TargetReport {
        let changes = vec![Change::RemoveMember {
            group: "g".into(),
            member: "bob".into(),
        }];
        let errors = if error {
            vec![PlanError {
                group: "g".into(),
                change: Some(0),
                at: None,
                message: "no".to_owned(),
            }]
        } else {
            Vec::new()
        };
        TargetReport {
            fingerprint: None,
            target: "cms".to_owned(),
            plan: Some(Plan {
                target: "cms".to_owned(),
                summary: Summary::of(&changes),
                changes,
                errors,
                ..Plan::default()
            }),
            outcome,
            durations: Vec::new(),
        }
    }

    fn refused() -> TargetOutcome {
        TargetOutcome::Refused(Refusal::TooManyDeletes {
            removals: 1,
            limit: 0,
        })
    }

    fn run(targets: Vec<TargetReport>) -> RunReport {
        RunReport {
            targets,
            ..RunReport::default()
        }
    }

    #[test]
    fn plan_exits_3_on_a_refusal_whatever_detailed_says() {
        let r = run(vec![
            target(TargetOutcome::Planned, false),
            target(refused(), false),
        ]);
        assert_eq!(plan_exit(&r, false), EXIT_REFUSED);
        assert_eq!(plan_exit(&r, true), EXIT_REFUSED);
        assert_eq!(apply_exit(&r), EXIT_REFUSED);
    }

    #[test]
    fn plan_exits_1_when_something_failed_even_beside_a_refusal() {
        let r = run(vec![
            target(TargetOutcome::Planned, true),
            target(refused(), false),
        ]);
        assert_eq!(plan_exit(&r, true), EXIT_ERROR);
        // A refused plan that the target's rules also reject has failed itself.
        let r = run(vec![target(refused(), true)]);
        assert_eq!(plan_exit(&r, false), EXIT_ERROR);
    }

    #[test]
    fn the_last_line_of_an_apply_says_which_targets_it_did_not_happen_for() {
        let done = |outcomes: std::collections::BTreeMap<usize, Outcome>| {
            TargetOutcome::Applied(crate::exec::ApplyReport {
                outcomes,
                attempts: 1,
            })
        };
        let ok = || done([(0, Outcome::Applied)].into_iter().collect());
        let text = applied(&run(vec![target(ok(), false)]));
        assert!(
            text.ends_with("\nApply complete: 1 changes applied, 0 failed.\n"),
            "{text}"
        );

        let mut dns = target(refused(), false);
        dns.target = "dns".to_owned();
        let text = applied(&run(vec![target(ok(), false), dns]));
        assert!(
            text.ends_with(
                "\nApply incomplete: 1 changes applied, 0 failed; not applied to dns (refused).\n"
            ),
            "{text}"
        );

        let text = applied(&run(vec![target(refused(), false)]));
        assert!(
            text.ends_with("\nNothing applied: the apply did not happen for cms (refused).\n"),
            "{text}"
        );
        assert!(!text.contains("Apply complete"), "{text}");
    }

    #[test]
    fn plan_exits_2_or_0_without_a_refusal() {
        let r = run(vec![target(TargetOutcome::Planned, false)]);
        assert_eq!(plan_exit(&r, true), EXIT_CHANGES);
        assert_eq!(plan_exit(&r, false), EXIT_OK);
    }

    /// One read of each kind: a TOML folder, and an LDAP directory with ranges and disabled
    /// members (words in the singular where a count is 1).
    fn reads() -> RunReport {
        RunReport {
            sources: vec![
                SourceRead::Toml {
                    path: "groups".into(),
                    files: 1,
                    groups: 3,
                },
                SourceRead::Ldap(crate::source::ldap::LdapRead {
                    server: "ldaps://dc1".to_owned(),
                    base: "OU=Groups,DC=x".to_owned(),
                    directory: "ad".to_owned(),
                    groups: 9,
                    users: 5054,
                    pages: 7,
                    ranged: 2,
                    range_reads: 4,
                    disabled: 1,
                    context_csn: None,
                }),
            ],
            ..RunReport::default()
        }
    }

    #[test]
    fn a_plan_starts_with_what_each_source_read() {
        let text = plans(&reads(), Format::Text);
        assert!(
            text.starts_with(
                "Read groups: 3 groups from 1 file\n\
                 Read ldaps://dc1 (ad), base OU=Groups,DC=x: 9 groups, 5054 users, 7 pages, \
                 2 ranged attributes continued in 4 reads, 1 disabled member left out\n\n"
            ),
            "{text}"
        );
        let md = plans(&reads(), Format::Markdown);
        assert!(
            md.contains("\n- Read groups: 3 groups from 1 file\n"),
            "{md}"
        );

        let json: serde_json::Value =
            serde_json::from_str(&plans(&reads(), Format::Json)).expect("JSON");
        assert_eq!(
            json["sources"],
            serde_json::json!([
                {"type": "toml", "path": "groups", "files": 1, "groups": 3},
                {"type": "ldap", "server": "ldaps://dc1", "base": "OU=Groups,DC=x",
                 "directory": "ad", "groups": 9, "users": 5054, "pages": 7, "ranged": 2,
                 "range_reads": 4, "disabled": 1},
            ])
        );
    }

    #[test]
    fn a_read_without_ranges_or_disabled_members_does_not_mention_them() {
        let mut report = reads();
        if let SourceRead::Ldap(l) = &mut report.sources[1] {
            (l.ranged, l.range_reads, l.disabled, l.pages) = (0, 0, 0, 1);
        }
        let text = plans(&report, Format::Text);
        assert!(
            text.contains(
                "Read ldaps://dc1 (ad), base OU=Groups,DC=x: 9 groups, 5054 users, 1 page\n"
            ),
            "{text}"
        );
        // Without sources, the document has no `sources` key.
        let json: serde_json::Value =
            serde_json::from_str(&plans(&RunReport::default(), Format::Json)).expect("JSON");
        assert!(json.get("sources").is_none(), "{json}");
    }
}

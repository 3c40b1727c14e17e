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
/// Exit code of `apply`: a safety rule refused a plan; nothing was written to that target.
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

/// The exit code of `roster plan`.
pub fn plan_exit(report: &RunReport, detailed: bool) -> u8 {
    if report.any_failed() {
        EXIT_ERROR
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
    for t in &report.targets {
        match (&t.outcome, &t.plan) {
            (TargetOutcome::ObserveFailed(e), _) => {
                let _ = writeln!(
                    out,
                    "{}: not applied, the target could not be read: {e}",
                    t.target
                );
            }
            (TargetOutcome::Invalid(problems), _) => {
                let _ = writeln!(out, "{}: not applied, {}", t.target, invalid(problems));
            }
            (TargetOutcome::Refused(r), _) => {
                let _ = writeln!(out, "{}: refused, nothing written: {r}", t.target);
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
    let _ = writeln!(
        out,
        "\nApply complete: {ok} changes applied, {failed} failed."
    );
    out
}

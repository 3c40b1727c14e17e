//! Rendering plans for people (text in Terraform's manner, Markdown for pull requests) and for
//! machines (JSON). Pure: values in, a string out.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::plan::change::{Change, Plan, PlanError, Summary};

/// An output format of `roster plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `+ - ~` lines and a summary, for a terminal.
    Text,
    /// The JSON plan contract, for machines.
    Json,
    /// Markdown, for a pull-request comment.
    Markdown,
}

/// A target that could not be planned, shown beside the plans of the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failed {
    /// The target's name.
    pub target: String,
    /// Why.
    pub error: String,
}

/// What one source read, as the caller words it: a line for people, a value for machines.
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    /// One line, such as `ldap://dc1 (ad), base ou=groups,...: 40 groups, ...`.
    pub line: String,
    /// The same as JSON (an element of the document's `sources`).
    pub json: Value,
}

/// Renders the plans (and failures) of a run in `format`, after what the sources read.
pub fn render(plans: &[Plan], failed: &[Failed], reads: &[Read], format: Format) -> String {
    match format {
        Format::Text => reads_text(reads, "Read ") + &text(plans, failed),
        Format::Json => json(plans, failed, reads),
        Format::Markdown => markdown(plans, failed, reads),
    }
}

/// The reads, one line each after `prefix`, and a blank line when there are any.
fn reads_text(reads: &[Read], prefix: &str) -> String {
    let mut out = String::new();
    for r in reads {
        let _ = writeln!(out, "{prefix}{}", r.line);
    }
    if !reads.is_empty() {
        out.push('\n');
    }
    out
}

/// One change as a line without its sign, e.g. `member "alice" in "Eng"`.
fn describe(change: &Change) -> String {
    match change {
        Change::CreateGroup { group, .. } => format!("create group \"{group}\""),
        Change::UpdateGroup { group, fields } => {
            let parts: Vec<String> = fields
                .iter()
                .map(|(k, f)| format!("{k} {} → {}", show(&f.from), show(&f.to)))
                .collect();
            format!("update group \"{group}\": {}", parts.join(", "))
        }
        Change::AddMember { group, member } | Change::RemoveMember { group, member } => {
            format!("member \"{member}\" in \"{group}\"")
        }
        Change::AddChild { group, child } | Change::RemoveChild { group, child } => {
            format!("child \"{child}\" in \"{group}\"")
        }
        Change::DeleteGroup { group } => format!("delete group \"{group}\""),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".to_owned(),
        other => other.to_string(),
    }
}

/// The sign of a change: `+` adds, `~` changes, `-` removes.
pub fn sign(change: &Change) -> char {
    match change.effect() {
        crate::plan::change::Effect::Add => '+',
        crate::plan::change::Effect::Change => '~',
        crate::plan::change::Effect::Remove => '-',
    }
}

/// The `+ member "alice" in "Eng"` line of a change.
pub fn line(change: &Change) -> String {
    format!("{} {}", sign(change), describe(change))
}

fn total(plans: &[Plan]) -> Summary {
    plans.iter().fold(Summary::default(), |a, p| Summary {
        add: a.add + p.summary.add,
        change: a.change + p.summary.change,
        remove: a.remove + p.summary.remove,
    })
}

fn summary_line(plans: &[Plan], failed: &[Failed]) -> String {
    let t = total(plans);
    let line = if t.add + t.change + t.remove == 0 {
        if failed.is_empty() {
            "No changes. Targets are in sync.".to_owned()
        } else {
            "No changes for the targets that could be read.".to_owned()
        }
    } else {
        format!(
            "Plan: {} to add, {} to change, {} to remove.",
            t.add, t.change, t.remove
        )
    };
    let errors: usize = plans.iter().map(|p| p.errors.len()).sum();
    let line = match errors {
        0 => line,
        1 => format!("{line} 1 error: the target would refuse it."),
        n => format!("{line} {n} errors: the targets would refuse them."),
    };
    let refused = plans.iter().filter(|p| p.refusal.is_some()).count();
    let line = match refused {
        0 => line,
        1 => format!("{line} 1 target refused by a safety rule: an apply writes nothing to it."),
        n => {
            format!("{line} {n} targets refused by a safety rule: an apply writes nothing to them.")
        }
    };
    match failed.len() {
        0 => line,
        1 => format!("{line} 1 target could not be planned."),
        n => format!("{line} {n} targets could not be planned."),
    }
}

/// A plan error as one line: where the group is defined, the refused change, and why.
pub fn error_line(plan: &Plan, e: &PlanError) -> String {
    let what = match e.change.and_then(|i| plan.changes.get(i)) {
        Some(c) => describe(c),
        None => format!("group \"{}\"", e.group),
    };
    match &e.at {
        Some(at) => format!("error: {at}: {what}: {}", e.message),
        None => format!("error: {what}: {}", e.message),
    }
}

fn text(plans: &[Plan], failed: &[Failed]) -> String {
    let mut out = String::new();
    for p in plans {
        if p.changes.is_empty() && p.refusal.is_none() {
            let _ = writeln!(out, "{}: in sync", p.target);
        } else {
            let _ = writeln!(out, "{}:", p.target);
        }
        // First, so that it is read before the changes it holds back.
        if let Some(r) = &p.refusal {
            let _ = writeln!(out, "  refused: {r}");
        }
        for c in &p.changes {
            let _ = writeln!(out, "  {}", line(c));
        }
        for w in &p.warnings {
            let _ = writeln!(out, "  ! {}", w.message);
        }
        for e in &p.errors {
            let _ = writeln!(out, "  {}", error_line(p, e));
        }
    }
    for f in failed {
        let _ = writeln!(out, "{}: not planned: {}", f.target, f.error);
    }
    if !plans.is_empty() || !failed.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary_line(plans, failed));
    out
}

fn json(plans: &[Plan], failed: &[Failed], reads: &[Read]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        #[serde(skip_serializing_if = "Vec::is_empty")]
        sources: Vec<&'a Value>,
        targets: &'a [Plan],
        #[serde(skip_serializing_if = "<[Failed]>::is_empty")]
        failed: &'a [Failed],
    }
    // Serializing plain data to a String cannot fail; fall back to an empty document regardless.
    serde_json::to_string_pretty(&Doc {
        sources: reads.iter().map(|r| &r.json).collect(),
        targets: plans,
        failed,
    })
    .unwrap_or_else(|_| "{}".to_owned())
        + "\n"
}

fn markdown(plans: &[Plan], failed: &[Failed], reads: &[Read]) -> String {
    let mut out = String::from("### roster plan\n\n");
    out.push_str(&reads_text(reads, "- Read "));
    for p in plans {
        let s = p.summary;
        let _ = writeln!(
            out,
            "**{}**: {} to add, {} to change, {} to remove\n",
            p.target, s.add, s.change, s.remove
        );
        if let Some(r) = &p.refusal {
            let _ = writeln!(out, "⛔ **refused**: {r}\n");
        }
        if !p.changes.is_empty() {
            out.push_str("```diff\n");
            for c in &p.changes {
                let _ = writeln!(out, "{}", line(c));
            }
            out.push_str("```\n\n");
        }
        for w in &p.warnings {
            let _ = writeln!(out, "- ⚠️ {}", w.message);
        }
        for e in &p.errors {
            let _ = writeln!(out, "- ❌ {}", error_line(p, e));
        }
        if !p.warnings.is_empty() || !p.errors.is_empty() {
            out.push('\n');
        }
    }
    for f in failed {
        let _ = writeln!(out, "**{}**: not planned: {}\n", f.target, f.error);
    }
    let _ = writeln!(out, "{}", summary_line(plans, failed));
    out
}

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

/// The most a pull-request comment may hold (GitHub takes 65,536 characters); a Markdown plan
/// longer than this is cut, with a visible note.
pub const MARKDOWN_LIMIT: usize = 65_000;

/// A plan as a pull-request comment: the summary of every target first, then what needs a
/// reviewer's eye (refusals, failures, errors, warnings), then each target's changes in a
/// collapsible section; cut to [`MARKDOWN_LIMIT`] with a note saying so.
fn markdown(plans: &[Plan], failed: &[Failed], reads: &[Read]) -> String {
    markdown_within(plans, failed, reads, MARKDOWN_LIMIT)
}

fn markdown_within(plans: &[Plan], failed: &[Failed], reads: &[Read], limit: usize) -> String {
    let mut head = String::from("### roster plan\n\n");
    head.push_str(&reads_text(reads, "- Read "));
    if !reads.is_empty() {
        head.push('\n');
    }
    head.push_str("| target | add | change | remove | |\n|---|---:|---:|---:|---|\n");
    for p in plans {
        let s = p.summary;
        let state = if p.refusal.is_some() {
            "⛔ refused"
        } else if !p.errors.is_empty() {
            "❌ errors"
        } else if p.changes.is_empty() {
            "in sync"
        } else {
            ""
        };
        let _ = writeln!(
            head,
            "| **{}** | {} | {} | {} | {state} |",
            p.target, s.add, s.change, s.remove
        );
    }
    for f in failed {
        let _ = writeln!(head, "| **{}** | | | | ❌ not planned |", f.target);
    }
    head.push('\n');
    // What a reviewer must see, before any list of changes.
    for p in plans {
        if let Some(r) = &p.refusal {
            let _ = writeln!(head, "⛔ **{} refused**: {r}\n", p.target);
        }
    }
    for f in failed {
        let _ = writeln!(head, "❌ **{}**: not planned: {}\n", f.target, f.error);
    }
    let mut notes = false;
    for p in plans {
        for e in &p.errors {
            let _ = writeln!(head, "- ❌ **{}**: {}", p.target, error_line(p, e));
            notes = true;
        }
        for w in &p.warnings {
            let _ = writeln!(head, "- ⚠️ **{}**: {}", p.target, w.message);
            notes = true;
        }
    }
    if notes {
        head.push('\n');
    }
    let tail = format!("{}\n", summary_line(plans, failed));
    let total: usize = plans.iter().map(|p| p.changes.len()).sum();
    // Room kept for the note on a cut comment.
    let note_room = 200;
    let mut body = String::new();
    let mut shown = 0;
    let mut cut = false;
    for p in plans.iter().filter(|p| !p.changes.is_empty()) {
        let s = p.summary;
        let open = format!(
            "<details><summary><b>{}</b>: {} to add, {} to change, {} to remove</summary>\n\n```diff\n",
            p.target, s.add, s.change, s.remove
        );
        let close = "```\n</details>\n\n";
        let budget = |body: &str, more: usize| {
            head.len() + body.len() + more + close.len() + tail.len() + note_room <= limit
        };
        if !budget(&body, open.len()) {
            cut = true;
            break;
        }
        body.push_str(&open);
        for c in &p.changes {
            let l = format!("{}\n", line(c));
            if !budget(&body, l.len()) {
                cut = true;
                break;
            }
            body.push_str(&l);
            shown += 1;
        }
        body.push_str(close);
        if cut {
            break;
        }
    }
    let mut out = head;
    out.push_str(&body);
    if cut {
        let _ = writeln!(
            out,
            "⚠️ **truncated**: this comment shows {shown} of {total} changes (a comment holds \
             {limit} characters); the whole plan is in the job's output and its saved plan file.\n"
        );
    }
    out.push_str(&tail);
    out
}

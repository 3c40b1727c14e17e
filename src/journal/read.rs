//! Reading the journal: its files in order, the check `roster journal verify` makes, the intents
//! without outcome a run looks for, and the history `roster journal show` prints.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{GENESIS, HEAD_FILE, JournalError, Kind, Line, WriteOutcome, file_name};
use crate::model::hex;

/// One journal file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalFile {
    /// Its number: `journal-000007.jsonl` is 7.
    pub number: u64,
    /// Its path.
    pub path: PathBuf,
}

/// The journal files in `dir`, oldest first; none when the folder does not exist.
pub fn list(dir: &Path) -> Result<Vec<JournalFile>, JournalError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io(dir, e))?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix("journal-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            files.push(JournalFile {
                number,
                path: entry.path(),
            });
        }
    }
    files.sort_by_key(|f| f.number);
    Ok(files)
}

/// The hash the head file keeps; `None` when there is no head file.
pub fn head(dir: &Path) -> Result<Option<String>, JournalError> {
    let path = dir.join(HEAD_FILE);
    match fs::read_to_string(&path) {
        // Empty: created, and the process stopped before its first write; as good as absent.
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JournalError::io(&path, e)),
    }
}

/// One line as read: where it is, its bytes (without the line break), its hash.
#[derive(Clone, Debug)]
pub struct RawLine {
    /// `file:line`, the file as its name alone.
    pub at: String,
    /// The line, without its line break.
    pub text: String,
    /// The SHA-256 of `text`.
    pub digest: [u8; 32],
}

impl RawLine {
    /// The hash, in hex.
    pub fn hash(&self) -> String {
        hex(&self.digest)
    }
}

/// Calls `each` with every line of `files` in order; an incomplete last line (no line break) is
/// an error naming it, as is text that is not UTF-8.
pub fn each_line(
    files: &[JournalFile],
    mut each: impl FnMut(&JournalFile, RawLine) -> Result<(), JournalError>,
) -> Result<(), JournalError> {
    for f in files {
        let name = f.path.file_name().map_or_else(
            || f.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let file = File::open(&f.path).map_err(|e| JournalError::io(&f.path, e))?;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| JournalError::io(&f.path, e))?;
            if n == 0 {
                break;
            }
            number += 1;
            let at = format!("{name}:{number}");
            if buf.last() != Some(&b'\n') {
                return Err(JournalError::Damaged {
                    at,
                    message: "the last line is incomplete: a write was cut short (disk full, or \
                              the machine stopped)"
                        .into(),
                });
            }
            buf.pop();
            let digest: [u8; 32] = Sha256::digest(&buf).into();
            let text =
                String::from_utf8(std::mem::take(&mut buf)).map_err(|_| JournalError::Damaged {
                    at: at.clone(),
                    message: "not text (UTF-8): the line was damaged".into(),
                })?;
            each(f, RawLine { at, text, digest })?;
        }
    }
    Ok(())
}

/// Where a line is and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// `file:line`.
    pub at: String,
    /// Its hash, in hex.
    pub hash: String,
}

/// The journal's last two lines.
#[derive(Clone, Debug, Default)]
pub struct Tail {
    /// The newest line.
    pub last: Option<Placed>,
    /// The hash of the line before it.
    pub before_last: Option<String>,
}

/// The last two lines of `files`, read from the newest file back as far as it takes.
pub fn tail(files: &[JournalFile]) -> Result<Tail, JournalError> {
    let mut lines: Vec<Placed> = Vec::new();
    for start in (0..files.len()).rev() {
        let mut found = Vec::new();
        each_line(&files[start..=start], |_, l| {
            let hash = l.hash();
            found.push(Placed { at: l.at, hash });
            if found.len() > 2 {
                found.remove(0);
            }
            Ok(())
        })?;
        found.append(&mut lines);
        lines = found;
        if lines.len() >= 2 {
            break;
        }
    }
    let last = lines.pop();
    Ok(Tail {
        before_last: lines.pop().map(|p| p.hash),
        last,
    })
}

/// What `roster journal verify` found in a journal that is intact.
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// The files, oldest first.
    pub files: Vec<JournalFile>,
    /// Lines read.
    pub lines: usize,
    /// Whether the oldest file is not the first: earlier ones were rotated away, so its first
    /// line follows one that is gone.
    pub rotated: bool,
    /// Whether the head was one line behind (a run stopped between writing a line and the
    /// head; the next run brings it up to date).
    pub head_behind: bool,
    /// Intents without an outcome, oldest first, each with the recheck of a later run if one
    /// was made.
    pub open: Vec<(Line, Option<Line>)>,
}

/// Checks the journal in `dir`: every line whole, a journal line, and chained to the one before
/// it; the files numbered without a gap; the head matching the newest line. The first problem is
/// an error naming its file and line.
///
/// A run may be writing while it is checked (a daemon keeps its journal open). When no run
/// holds the journal, the check holds its lock, so none starts meanwhile, and the head must name
/// the newest line. While a run holds it, lines after the head are that run's, written since the
/// head was read: they must chain like any other, and the head may name an earlier line.
pub fn verify(dir: &Path) -> Result<Verified, JournalError> {
    if !dir.is_dir() {
        return verify_once(dir, false);
    }
    match super::lock(dir) {
        Ok(_held) => verify_once(dir, false),
        Err(JournalError::Busy { .. }) => {
            // A rotation may remove a file as it is read: read again.
            let mut result = verify_once(dir, true);
            for _ in 0..5 {
                match &result {
                    Err(JournalError::Io { .. }) => result = verify_once(dir, true),
                    _ => break,
                }
            }
            result
        }
        Err(e) => Err(e),
    }
}

fn verify_once(dir: &Path, writing: bool) -> Result<Verified, JournalError> {
    let files = list(dir)?;
    let head = head(dir)?;
    let head_path = dir.join(HEAD_FILE).display().to_string();
    for pair in files.windows(2) {
        if pair[1].number != pair[0].number + 1 {
            return Err(JournalError::Damaged {
                at: dir
                    .join(file_name(pair[0].number + 1))
                    .display()
                    .to_string(),
                message: format!(
                    "missing: the journal goes from {} to {}",
                    file_name(pair[0].number),
                    file_name(pair[1].number)
                ),
            });
        }
    }
    // Where every line is, first, so that a line that follows the wrong one can say which it
    // follows: one further on means the lines were reordered.
    let mut seen: HashMap<[u8; 32], String> = HashMap::new();
    each_line(&files, |_, raw| {
        seen.entry(raw.digest).or_insert(raw.at);
        Ok(())
    })?;
    let mut prev: Option<([u8; 32], String)> = None;
    let mut before_last: Option<[u8; 32]> = None;
    let mut lines = 0;
    let mut open = Open::default();
    let first_number = files.first().map(|f| f.number);
    each_line(&files, |_, raw| {
        let line: Line = serde_json::from_str(&raw.text).map_err(|e| JournalError::Damaged {
            at: raw.at.clone(),
            message: format!("not a journal line: {e}"),
        })?;
        match &prev {
            Some((digest, at)) if line.prev != hex(digest) => {
                let message = match seen.get(&decode(&line.prev)) {
                    Some(named) => format!(
                        "follows {named}, not {at}, the line before it: lines were reordered"
                    ),
                    None => format!(
                        "does not follow {at}, the line before it: that line was edited, or lines \
                         between them were removed"
                    ),
                };
                return Err(JournalError::Damaged {
                    at: raw.at,
                    message,
                });
            }
            None if first_number == Some(1) && line.prev != GENESIS => {
                return Err(JournalError::Damaged {
                    at: raw.at,
                    message: "the journal's first line must follow none (prev of 64 zeros): the \
                              lines before it were removed, or it was edited"
                        .into(),
                });
            }
            _ => {}
        }
        before_last = prev.as_ref().map(|(d, _)| *d);
        prev = Some((raw.digest, raw.at));
        lines += 1;
        open.see(line);
        Ok(())
    })?;
    let mut head_behind = false;
    match (&head, &prev) {
        (None, None) => {}
        // The journal's first line, the head not written yet: the head is one line behind.
        (None, Some(_)) if before_last.is_none() => head_behind = true,
        (None, Some((_, at))) => {
            return Err(JournalError::Damaged {
                at: head_path,
                message: format!(
                    "missing: it keeps the hash of the newest line ({at}), so that lines removed \
                     at the end show"
                ),
            });
        }
        (Some(_), None) => {
            return Err(JournalError::Damaged {
                at: head_path,
                message: "names a line, but the journal has none: its files were removed".into(),
            });
        }
        (Some(h), Some((digest, at))) => {
            let h = decode(h);
            if h == *digest {
            } else if Some(h) == before_last || (writing && seen.contains_key(&h)) {
                head_behind = true;
            } else {
                let message = match seen.get(&h) {
                    Some(named) => format!(
                        "the journal ends here, but {HEAD_FILE} names {named}, an earlier line: \
                         the lines after that one were added by something other than roster, or \
                         the head was replaced"
                    ),
                    None => format!(
                        "{HEAD_FILE} does not match the newest line: the line was edited, or \
                         lines after it were removed"
                    ),
                };
                return Err(JournalError::Damaged {
                    at: at.clone(),
                    message,
                });
            }
        }
    }
    Ok(Verified {
        rotated: first_number.is_some_and(|n| n > 1),
        files,
        lines,
        head_behind,
        open: open.finish(),
    })
}

/// A hash in hex as bytes; anything that is not one reads as all ones, which no line hashes to.
fn decode(hex: &str) -> [u8; 32] {
    let mut out = [0xff; 32];
    if hex.len() != 64 {
        return out;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        match hex.get(2 * i..2 * i + 2).map(|b| u8::from_str_radix(b, 16)) {
            Some(Ok(b)) => *byte = b,
            _ => return [0xff; 32],
        }
    }
    out
}

/// The intents seen without an outcome so far, by run and number, and their rechecks.
#[derive(Debug, Default)]
struct Open {
    intents: BTreeMap<(String, u64), (usize, Line)>,
    rechecks: HashMap<(String, u64), Line>,
    order: usize,
}

impl Open {
    fn see(&mut self, line: Line) {
        match line.kind {
            Kind::Intent => {
                if let Some(call) = line.call {
                    self.order += 1;
                    self.intents
                        .insert((line.run_id.clone(), call), (self.order, line));
                }
            }
            Kind::Outcome => {
                if let Some(call) = line.call {
                    self.intents.remove(&(line.run_id, call));
                }
            }
            Kind::Recheck => {
                if let (Some(run), Some(call)) = (&line.of_run_id, line.of_call) {
                    self.rechecks.insert((run.clone(), call), line);
                }
            }
        }
    }

    /// The intents without outcome in journal order, each with its recheck if any.
    fn finish(mut self) -> Vec<(Line, Option<Line>)> {
        let mut open: Vec<(usize, Line)> =
            std::mem::take(&mut self.intents).into_values().collect();
        open.sort_by_key(|(order, _)| *order);
        open.into_iter()
            .map(|(_, line)| {
                let recheck = line
                    .call
                    .and_then(|c| self.rechecks.remove(&(line.run_id.clone(), c)));
                (line, recheck)
            })
            .collect()
    }
}

/// The intents in `dir`'s journal that have neither an outcome nor a later run's recheck: writes
/// a run was stopped in the middle of. Lines that do not read as journal lines are passed over
/// (`verify` is where they are reported).
pub fn pending(dir: &Path) -> Result<Vec<Line>, JournalError> {
    let mut open = Open::default();
    each_line(&list(dir)?, |_, raw| {
        if let Ok(line) = serde_json::from_str::<Line>(&raw.text) {
            open.see(line);
        }
        Ok(())
    })?;
    Ok(open
        .finish()
        .into_iter()
        .filter_map(|(line, recheck)| recheck.is_none().then_some(line))
        .collect())
}

/// Which writes `roster journal show` prints.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only writes to this target.
    pub target: Option<String>,
    /// Only writes to this group, or naming it as a child.
    pub group: Option<String>,
    /// Only writes naming this member.
    pub member: Option<String>,
    /// Only writes from this time on.
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    fn takes(&self, line: &Line) -> bool {
        self.target.as_ref().is_none_or(|t| *t == line.target)
            && self
                .group
                .as_ref()
                .is_none_or(|g| *g == line.group || line.children().any(|c| c == g))
            && self
                .member
                .as_ref()
                .is_none_or(|m| line.members().any(|x| x == m))
            && self.since.is_none_or(|since| {
                DateTime::parse_from_rfc3339(&line.time).is_ok_and(|t| t >= since)
            })
    }
}

/// One write as `roster journal show` tells it: its intent, its outcome if one was recorded,
/// and a later run's recheck if it has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The intent.
    pub intent: Line,
    /// The outcome.
    pub outcome: Option<Line>,
    /// The recheck.
    pub recheck: Option<Line>,
}

/// The writes `filter` takes, in journal order. Lines that do not read as journal lines are
/// passed over.
pub fn history(dir: &Path, filter: &Filter) -> Result<Vec<Write>, JournalError> {
    let mut writes: Vec<Write> = Vec::new();
    let mut index: HashMap<(String, u64), usize> = HashMap::new();
    each_line(&list(dir)?, |_, raw| {
        let Ok(line) = serde_json::from_str::<Line>(&raw.text) else {
            return Ok(());
        };
        match line.kind {
            Kind::Intent if filter.takes(&line) => {
                if let Some(call) = line.call {
                    index.insert((line.run_id.clone(), call), writes.len());
                    writes.push(Write {
                        intent: line,
                        outcome: None,
                        recheck: None,
                    });
                }
            }
            Kind::Intent => {}
            Kind::Outcome => {
                if let Some(i) = line.call.and_then(|c| index.get(&(line.run_id.clone(), c))) {
                    writes[*i].outcome = Some(line);
                }
            }
            Kind::Recheck => {
                let key = line.of_run_id.clone().zip(line.of_call);
                if let Some(i) = key.and_then(|k| index.get(&k)) {
                    writes[*i].recheck = Some(line);
                }
            }
        }
        Ok(())
    })?;
    Ok(writes)
}

/// `writes` as plain text, one line each: when, target, run, what, request, and how it came back.
pub fn render(writes: &[Write]) -> String {
    let mut out = String::new();
    for w in writes {
        let i = &w.intent;
        let run: String = i.run_id.chars().take(8).collect();
        let request = match (&i.method, &i.path) {
            (Some(m), Some(p)) => format!("  {m} {p}"),
            _ => String::new(),
        };
        let result = match (&w.outcome, &w.recheck) {
            (Some(o), _) => outcome_text(o),
            (None, Some(r)) => format!(
                "no outcome recorded (the run stopped); run {} read the target again at {}",
                r.run_id.chars().take(8).collect::<String>(),
                r.time
            ),
            (None, None) => "no outcome recorded (the run stopped, or is still going)".to_owned(),
        };
        out.push_str(&format!(
            "{}  {}  run {run}  {}{request}  → {result}\n",
            i.time,
            i.target,
            describe(i)
        ));
    }
    out
}

fn outcome_text(o: &Line) -> String {
    let word = o.outcome.map_or("?", WriteOutcome::as_str);
    let status = match o.status {
        Some(0) | None => String::new(),
        Some(s) => format!(" ({s})"),
    };
    match &o.message {
        Some(m) => format!("{word}{status}: {m}"),
        None => format!("{word}{status}"),
    }
}

/// What a write does, in words: `add member "alice" to "eng"`.
pub fn describe(line: &Line) -> String {
    let one = |op: &str, member: Option<&str>, child: Option<&str>| -> String {
        let g = &line.group;
        match (op, member, child) {
            ("create_group", ..) => format!("create group \"{g}\""),
            ("update_group", ..) => format!("update group \"{g}\""),
            ("delete_group", ..) => format!("delete group \"{g}\""),
            ("add_member", Some(m), _) => format!("add member \"{m}\" to \"{g}\""),
            ("remove_member", Some(m), _) => format!("remove member \"{m}\" from \"{g}\""),
            ("add_child", _, Some(c)) => format!("add child \"{c}\" to \"{g}\""),
            ("remove_child", _, Some(c)) => format!("remove child \"{c}\" from \"{g}\""),
            (op, ..) => format!("{op} \"{g}\""),
        }
    };
    match &line.changes {
        Some(changes) if !changes.is_empty() => {
            // A bulk write carries many changes of one or two kinds: one phrase per kind.
            let mut kinds: Vec<(&str, Vec<&str>)> = Vec::new();
            for c in changes {
                let name = c.member.as_deref().or(c.child.as_deref()).unwrap_or("?");
                match kinds.iter_mut().find(|(op, _)| *op == c.op) {
                    Some((_, names)) => names.push(name),
                    None => kinds.push((&c.op, vec![name])),
                }
            }
            let g = &line.group;
            kinds
                .into_iter()
                .map(|(op, names)| {
                    let list = || {
                        names
                            .iter()
                            .map(|n| format!("\"{n}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    match (op, names.len()) {
                        (_, 1) | (_, 0) => one(
                            op,
                            names.first().copied().filter(|_| op.ends_with("_member")),
                            names.first().copied().filter(|_| op.ends_with("_child")),
                        ),
                        ("add_member", _) => format!("add members {} to \"{g}\"", list()),
                        ("remove_member", _) => format!("remove members {} from \"{g}\"", list()),
                        ("add_child", _) => format!("add children {} to \"{g}\"", list()),
                        ("remove_child", _) => format!("remove children {} from \"{g}\"", list()),
                        (op, _) => one(op, None, None),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
        _ => one(&line.op, line.member.as_deref(), line.child.as_deref()),
    }
}

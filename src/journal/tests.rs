//! The journal's chain and its checks: lines written through [`Journal`], then the files edited
//! the ways a person or a failing disk would (a line changed, removed, moved; the newest lines
//! cut off; a file gone), each of which `verify` must name by file and line; and what a killed
//! run leaves, which it must accept.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use super::*;

fn subject(group: &str, member: Option<&str>) -> Subject {
    Subject {
        op: if member.is_some() {
            "add_member"
        } else {
            "create_group"
        }
        .to_owned(),
        group: group.to_owned(),
        member: member.map(str::to_owned),
        ..Subject::default()
    }
}

pub(super) fn open(dir: &Path, run: &str) -> Journal {
    Journal::open(dir, &JournalConfig::default(), run, "cfg").unwrap()
}

/// A fresh state folder (not yet created) in a temporary folder that lives as long as the first.
pub(super) fn state() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("state");
    (d, dir)
}

/// A change of `op` naming `member`, as a bulk write carries it.
pub(super) fn member_change(op: &str, member: &str) -> ChangeRef {
    ChangeRef {
        op: op.to_owned(),
        member: Some(member.to_owned()),
        child: None,
    }
}

/// Every line of the first journal file, decoded.
pub(super) fn parsed(dir: &Path) -> Vec<Line> {
    lines(dir)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A journal of `n` writes, each an intent and an outcome: 2n lines in one file.
fn journal(n: usize) -> (tempfile::TempDir, PathBuf) {
    let (d, dir) = state();
    let j = open(&dir, "run1");
    for i in 0..n {
        let s = subject("eng", Some(&format!("u{i}")));
        let call = intent(&j, "cms", &s, "POST", "/api/groups/eng/users");
        j.outcome("cms", &s, call, WriteOutcome::Applied, 204, None)
            .unwrap();
    }
    (d, dir)
}

/// Records an intent as a run's write request does, returning once it is on disk.
fn intent(j: &Journal, target: &str, s: &Subject, method: &str, path: &str) -> u64 {
    let written = j.intent(target, s, method, path).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(j.on_disk(&written))
        .unwrap();
    written.call
}

fn file(dir: &Path) -> PathBuf {
    dir.join(file_name(1))
}

fn lines(dir: &Path) -> Vec<String> {
    fs::read_to_string(file(dir))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(dir: &Path, lines: &[String]) {
    fs::write(file(dir), lines.join("\n") + "\n").unwrap();
}

fn damage(dir: &Path) -> (String, String) {
    match read::verify(dir) {
        Err(JournalError::Damaged { at, message }) => (at, message),
        other => panic!("not found damaged: {other:?}"),
    }
}

#[test]
fn lines_chain_from_zeros_and_the_head_keeps_the_newest() {
    let (_d, dir) = journal(3);
    let all = lines(&dir);
    assert_eq!(all.len(), 6);
    let first: Line = serde_json::from_str(&all[0]).unwrap();
    assert_eq!(first.prev, GENESIS);
    assert_eq!(first.kind, Kind::Intent);
    assert_eq!(first.call, Some(1));
    assert_eq!(first.config.as_deref(), Some("cfg"));
    assert_eq!(first.method.as_deref(), Some("POST"));
    for pair in all.windows(2) {
        let next: Line = serde_json::from_str(&pair[1]).unwrap();
        assert_eq!(next.prev, sha256_hex(pair[0].as_bytes()));
    }
    let head = fs::read_to_string(dir.join(HEAD_FILE)).unwrap();
    assert_eq!(head.trim(), sha256_hex(all[5].as_bytes()));
    let v = read::verify(&dir).unwrap();
    assert_eq!((v.lines, v.files.len(), v.head_behind), (6, 1, false));
    assert!(v.open.is_empty());
}

#[test]
fn a_line_holds_the_names_the_format_promises() {
    let (_d, dir) = journal(1);
    let all = lines(&dir);
    let intent: serde_json::Value = serde_json::from_str(&all[0]).unwrap();
    let outcome: serde_json::Value = serde_json::from_str(&all[1]).unwrap();
    for key in [
        "kind", "run_id", "time", "target", "op", "group", "member", "prev", "config", "source",
        "method", "path", "call",
    ] {
        assert!(intent.get(key).is_some(), "intent lacks {key}: {intent}");
    }
    for key in [
        "kind", "run_id", "time", "target", "op", "group", "member", "outcome", "status", "prev",
    ] {
        assert!(outcome.get(key).is_some(), "outcome lacks {key}: {outcome}");
    }
    assert_eq!(outcome["kind"], "outcome");
    assert_eq!(outcome["outcome"], "applied");
    assert_eq!(outcome["status"], 204);
    assert_eq!(outcome["call"], intent["call"]);
}

#[test]
fn an_edited_line_is_named_by_the_line_after_it() {
    let (_d, dir) = journal(3);
    let mut all = lines(&dir);
    all[2] = all[2].replace("\"u1\"", "\"mallory\"");
    rewrite(&dir, &all);
    let (at, message) = damage(&dir);
    assert_eq!(at, "journal-000001.jsonl:4");
    assert!(message.contains("journal-000001.jsonl:3"), "{message}");
    assert!(message.contains("edited"), "{message}");
}

#[test]
fn a_removed_line_is_found() {
    let (_d, dir) = journal(3);
    let mut all = lines(&dir);
    all.remove(2);
    rewrite(&dir, &all);
    let (at, message) = damage(&dir);
    assert_eq!(at, "journal-000001.jsonl:3");
    assert!(message.contains("removed"), "{message}");
}

#[test]
fn reordered_lines_are_found() {
    let (_d, dir) = journal(3);
    let mut all = lines(&dir);
    all.swap(2, 3);
    rewrite(&dir, &all);
    let (at, message) = damage(&dir);
    assert_eq!(at, "journal-000001.jsonl:3");
    assert!(message.contains("reordered"), "{message}");
}

#[test]
fn lines_cut_off_the_end_no_longer_match_the_head() {
    let (_d, dir) = journal(3);
    let mut all = lines(&dir);
    all.truncate(3);
    rewrite(&dir, &all);
    let (at, message) = damage(&dir);
    assert_eq!(at, "journal-000001.jsonl:3");
    assert!(message.contains("head"), "{message}");
    assert!(message.contains("removed"), "{message}");
}

#[test]
fn an_edited_last_line_no_longer_matches_the_head() {
    let (_d, dir) = journal(2);
    let mut all = lines(&dir);
    let last = all.len() - 1;
    all[last] = all[last].replace("applied", "failed");
    rewrite(&dir, &all);
    let (at, message) = damage(&dir);
    assert_eq!(at, "journal-000001.jsonl:4");
    assert!(message.contains("head"), "{message}");
}

#[test]
fn the_first_line_must_follow_none() {
    let (_d, dir) = journal(2);
    let mut all = lines(&dir);
    all.remove(0);
    rewrite(&dir, &all);
    let (at, message) = damage(&dir);
    assert_eq!(at, "journal-000001.jsonl:1");
    assert!(message.contains("first line"), "{message}");
}

#[test]
fn a_removed_head_or_an_incomplete_line_is_found() {
    let (_d, dir) = journal(1);
    let all = lines(&dir);
    fs::write(file(&dir), all.join("\n")).unwrap();
    let (at, message) = damage(&dir);
    assert_eq!(at, "journal-000001.jsonl:2");
    assert!(message.contains("incomplete"), "{message}");
    rewrite(&dir, &all);
    fs::remove_file(dir.join(HEAD_FILE)).unwrap();
    let (at, message) = damage(&dir);
    assert!(at.ends_with(HEAD_FILE), "{at}");
    assert!(message.contains("missing"), "{message}");
}

#[test]
fn the_head_holds_the_newest_hash_alone_whatever_it_held_before() {
    let (_d, dir) = journal(1);
    // A head with more after its hash (an editor's blank lines) still names the newest line.
    let head = dir.join(HEAD_FILE);
    let mut text = fs::read_to_string(&head).unwrap();
    text.push_str("\n\n\n");
    fs::write(&head, &text).unwrap();
    let j = open(&dir, "run2");
    intent(&j, "cms", &subject("ops", None), "POST", "/api/groups");
    drop(j);
    let newest = sha256_hex(lines(&dir).last().unwrap().as_bytes());
    assert_eq!(fs::read_to_string(&head).unwrap(), format!("{newest}\n"));
    read::verify(&dir).unwrap();
}

#[test]
fn a_head_one_line_behind_is_what_a_kill_leaves_and_the_next_run_mends_it() {
    let (_d, dir) = journal(2);
    let all = lines(&dir);
    fs::write(
        dir.join(HEAD_FILE),
        format!("{}\n", sha256_hex(all[2].as_bytes())),
    )
    .unwrap();
    assert!(read::verify(&dir).unwrap().head_behind);
    let j = open(&dir, "run2");
    drop(j);
    let v = read::verify(&dir).unwrap();
    assert!(!v.head_behind);
    // Two lines behind is two lines removed, not a kill.
    fs::write(
        dir.join(HEAD_FILE),
        format!("{}\n", sha256_hex(all[1].as_bytes())),
    )
    .unwrap();
    damage(&dir);
    assert!(matches!(
        Journal::open(&dir, &JournalConfig::default(), "run3", "cfg"),
        Err(JournalError::Damaged { .. })
    ));
}

#[test]
fn a_damaged_journal_is_not_written_on() {
    let (_d, dir) = journal(2);
    let mut all = lines(&dir);
    all.pop();
    rewrite(&dir, &all);
    let err = Journal::open(&dir, &JournalConfig::default(), "run2", "cfg").unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn files_rotate_by_size_keep_their_number_and_chain_across() {
    let (_d, dir) = state();
    let rotation = JournalConfig {
        max_file_size: 4096,
        max_files: NonZeroUsize::new(3).unwrap(),
    };
    let j = Journal::open(&dir, &rotation, "run1", "cfg").unwrap();
    for i in 0..60 {
        let s = subject(&format!("g{i}"), None);
        let call = intent(&j, "cms", &s, "POST", "/api/groups");
        j.outcome("cms", &s, call, WriteOutcome::Applied, 201, None)
            .unwrap();
    }
    // The new journal's file, head and folder were flushed as they were created; each intent
    // flushed the file and the head; each file rotated away was flushed as it was closed
    // (lines of it may still have waited for a flush), and the folder naming the next file
    // with the next intent.
    let rotations = read::list(&dir).unwrap().last().unwrap().number - 1;
    assert!(rotations > 3, "{rotations}");
    assert_eq!(j.syncs(), 3 + 2 * 60 + 2 * rotations);
    drop(j);
    let files = read::list(&dir).unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].number > 1);
    for f in &files {
        assert!(fs::metadata(&f.path).unwrap().len() <= 4096);
    }
    let v = read::verify(&dir).unwrap();
    assert!(v.rotated);
    // A file missing between two others is a gap.
    fs::remove_file(&files[1].path).unwrap();
    let (at, message) = damage(&dir);
    assert!(at.ends_with(&file_name(files[1].number)), "{at}");
    assert!(message.contains("missing"), "{message}");
}

/// A journal in `dir` whose files hold `max_file_size` bytes, of `n` intents to create groups
/// `g0`, `g1`, ... (lines of one length while `n` is 10 or less).
fn creates(dir: &Path, max_file_size: u64, n: usize) {
    let rotation = JournalConfig {
        max_file_size,
        max_files: NonZeroUsize::new(10).unwrap(),
    };
    let j = Journal::open(dir, &rotation, "run1", "cfg").unwrap();
    for i in 0..n {
        let s = subject(&format!("g{i}"), None);
        intent(&j, "cms", &s, "POST", "/api/groups");
    }
}

#[test]
fn a_line_longer_than_a_file_may_be_starts_the_next_file_only_when_this_one_holds_a_line() {
    let (_d, dir) = state();
    creates(&dir, 16, 3);
    let files = read::list(&dir).unwrap();
    let numbers: Vec<u64> = files.iter().map(|f| f.number).collect();
    assert_eq!(numbers, [1, 2, 3], "one line in each file, from the first");
    read::verify(&dir).unwrap();
}

#[test]
fn a_file_is_filled_to_exactly_its_size_before_the_next_is_started() {
    let one = {
        let (_d, dir) = state();
        creates(&dir, u64::MAX, 1);
        fs::metadata(file(&dir)).unwrap().len()
    };
    let (_d, dir) = state();
    creates(&dir, 2 * one, 3);
    // Lines of one length: two fill the first file to its size exactly, the third starts the
    // second.
    assert_eq!(fs::metadata(file(&dir)).unwrap().len(), 2 * one);
    assert_eq!(read::list(&dir).unwrap().len(), 2);
}

#[test]
fn a_line_removed_across_a_file_boundary_is_found() {
    let (_d, dir) = state();
    let rotation = JournalConfig {
        max_file_size: 4096,
        max_files: NonZeroUsize::new(10).unwrap(),
    };
    let j = Journal::open(&dir, &rotation, "run1", "cfg").unwrap();
    for i in 0..30 {
        let s = subject(&format!("g{i}"), None);
        intent(&j, "cms", &s, "POST", "/api/groups");
    }
    drop(j);
    let second = dir.join(file_name(2));
    let text = fs::read_to_string(&second).unwrap();
    let rest: Vec<&str> = text.lines().skip(1).collect();
    fs::write(&second, rest.join("\n") + "\n").unwrap();
    let (at, _) = damage(&dir);
    assert_eq!(at, "journal-000002.jsonl:1");
}

#[test]
fn intents_without_outcome_are_pending_until_a_later_run_rechecks_them() {
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    let a = subject("eng", None);
    let b = subject("ops", Some("alice"));
    let call = intent(&j, "cms", &a, "POST", "/api/groups");
    j.outcome("cms", &a, call, WriteOutcome::Applied, 201, None)
        .unwrap();
    intent(&j, "cms", &b, "POST", "/api/groups/ops/users");
    drop(j);
    let pending = read::pending(&dir).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].group, "ops");
    assert_eq!(pending[0].member.as_deref(), Some("alice"));

    let j = open(&dir, "run2");
    j.recheck(&pending[0]).unwrap();
    drop(j);
    assert!(read::pending(&dir).unwrap().is_empty());
    // Still an intent without outcome for verify and show: only its recheck is added.
    let v = read::verify(&dir).unwrap();
    assert_eq!(v.open.len(), 1);
    assert_eq!(
        v.open[0].1.as_ref().map(|r| r.run_id.as_str()),
        Some("run2")
    );
    let shown = read::render(&read::history(&dir, &read::Filter::default()).unwrap());
    assert!(shown.contains("add member \"alice\" to \"ops\""), "{shown}");
    assert!(shown.contains("no outcome recorded"), "{shown}");
}

#[test]
fn show_filters_by_target_group_member_and_time() {
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    for (target, group, member) in [
        ("cms", "eng", Some("alice")),
        ("cms", "ops", Some("bob")),
        ("dns", "eng", None),
    ] {
        let s = subject(group, member);
        let call = intent(&j, target, &s, "PUT", "/x");
        j.outcome(
            target,
            &s,
            call,
            WriteOutcome::Failed,
            409,
            Some("conflict".into()),
        )
        .unwrap();
    }
    drop(j);
    let take = |f: read::Filter| read::history(&dir, &f).unwrap().len();
    assert_eq!(take(read::Filter::default()), 3);
    let f = |target: Option<&str>, group: Option<&str>, member: Option<&str>| read::Filter {
        target: target.map(str::to_owned),
        group: group.map(str::to_owned),
        member: member.map(str::to_owned),
        since: None,
    };
    assert_eq!(take(f(Some("cms"), None, None)), 2);
    assert_eq!(take(f(None, Some("eng"), None)), 2);
    assert_eq!(take(f(None, None, Some("bob"))), 1);
    assert_eq!(take(f(Some("dns"), None, Some("bob"))), 0);
    let later = read::Filter {
        since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..read::Filter::default()
    };
    assert_eq!(take(later), 0);
    let text = read::render(&read::history(&dir, &f(None, None, Some("bob"))).unwrap());
    assert!(
        text.contains(
            "cms  run run1  add member \"bob\" to \"ops\"  PUT /x  → failed (409): conflict"
        ),
        "{text}"
    );
}

#[test]
fn intents_and_outcomes_carry_the_child_or_every_change_they_write() {
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    let child = Subject {
        op: "add_child".into(),
        group: "eng".into(),
        child: Some("ops".into()),
        ..Subject::default()
    };
    let bulk = Subject {
        op: "add_member".into(),
        group: "eng".into(),
        changes: Some(vec![
            member_change("add_member", "a"),
            member_change("add_member", "b"),
        ]),
        ..Subject::default()
    };
    for s in [&child, &bulk] {
        let call = intent(&j, "cms", s, "POST", "/api/groups/eng");
        j.outcome("cms", s, call, WriteOutcome::Applied, 204, None)
            .unwrap();
    }
    drop(j);
    let read = parsed(&dir);
    assert_eq!(read.len(), 4);
    for (line, want) in read.iter().zip([&child, &child, &bulk, &bulk]) {
        assert_eq!(line.subject(), *want, "{line:?}");
        assert_eq!(line.run_id, "run1");
    }
    assert_eq!(read[0].children().collect::<Vec<_>>(), ["ops"]);
    assert_eq!(read[3].members().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn intents_name_the_sources_read_for_the_run_that_sends_them() {
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    let s = subject("eng", None);
    intent(&j, "cms", &s, "POST", "/api/groups");
    let sources = vec![
        SourceRevision::Toml {
            path: "groups".into(),
            commit: Some("abc123".into()),
        },
        SourceRevision::Ldap {
            server: "ldap://dc1".into(),
            context_csn: None,
        },
    ];
    j.set_sources(sources.clone());
    intent(&j, "cms", &s, "POST", "/api/groups");
    drop(j);
    let read = parsed(&dir);
    assert_eq!(read[0].source, Some(Vec::new()));
    assert_eq!(read[1].source, Some(sources));
    assert_eq!(read[1].config.as_deref(), Some("cfg"));
}

#[test]
fn a_bulk_write_names_each_member() {
    let line = Line {
        op: "add_member+remove_member".into(),
        group: "eng".into(),
        changes: Some(vec![
            member_change("add_member", "a"),
            member_change("add_member", "b"),
            member_change("remove_member", "c"),
        ]),
        ..Line::default()
    };
    assert_eq!(
        read::describe(&line),
        "add members \"a\", \"b\" to \"eng\"; remove member \"c\" from \"eng\""
    );
    assert_eq!(line.members().collect::<Vec<_>>(), ["a", "b", "c"]);
}

#[cfg(unix)]
#[test]
fn one_process_writes_a_journal_at_a_time() {
    let (_d, dir) = state();
    let first = open(&dir, "run1");
    // flock locks belong to the open file, so a second open in this process is refused too.
    let second = Journal::open(&dir, &JournalConfig::default(), "run2", "cfg");
    assert!(
        matches!(second, Err(JournalError::Busy { .. })),
        "{second:?}"
    );
    drop(first);
    open(&dir, "run3");
}

#[test]
fn no_journal_verifies_as_empty() {
    let d = tempfile::tempdir().unwrap();
    let v = read::verify(&d.path().join("nothing-here")).unwrap();
    assert_eq!(v.lines, 0);
    assert!(v.files.is_empty());
}

#[test]
fn a_kill_after_the_first_line_and_before_its_head_leaves_a_journal_the_next_run_mends() {
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    let s = subject("eng", Some("u1"));
    intent(&j, "cms", &s, "POST", "/api/groups/eng/users");
    drop(j);
    // The head not written yet: missing, or created and still empty.
    for head in [None, Some("")] {
        match head {
            None => fs::remove_file(dir.join(HEAD_FILE)).unwrap(),
            Some(text) => fs::write(dir.join(HEAD_FILE), text).unwrap(),
        }
        assert!(read::verify(&dir).unwrap().head_behind);
    }
    drop(open(&dir, "run2"));
    assert!(!read::verify(&dir).unwrap().head_behind);
    // With two lines, a missing head is still two lines' worth missing: damage.
    let (_d2, dir2) = journal(1);
    fs::remove_file(dir2.join(HEAD_FILE)).unwrap();
    damage(&dir2);
}

#[cfg(unix)]
#[test]
fn journal_files_are_for_the_service_alone() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, dir) = journal(1);
    for path in [file(&dir), dir.join(HEAD_FILE)] {
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "{} is {mode:o}", path.display());
    }
}

#[test]
fn verify_while_a_run_writes_never_takes_its_new_lines_for_tampering() {
    // Long enough that a check takes a while, so that writes land during it.
    let (_d, dir) = journal(3000);
    let j = open(&dir, "run2");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            // Bursts with pauses, as a run's calls come.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..40 {
                    let s = subject("eng", Some(&format!("w{i}")));
                    let call = intent(&j, "cms", &s, "POST", "/api/groups/eng/users");
                    j.outcome("cms", &s, call, WriteOutcome::Applied, 204, None)
                        .unwrap();
                    i += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
        })
    };
    for _ in 0..10 {
        if let Err(e) = read::verify(&dir) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            panic!("a journal being written was found damaged: {e}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    read::verify(&dir).unwrap();
}

#[test]
fn a_new_journal_is_on_disk_when_opened_and_one_that_exists_is_not_flushed_again() {
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    // The file, the head and the folder naming them: the first intent waits for itself only.
    assert_eq!(j.syncs(), 3);
    assert!(dir.join(file_name(1)).exists());
    assert!(dir.join(HEAD_FILE).exists());
    drop(j);
    // Empty, they are an empty journal.
    assert_eq!(read::verify(&dir).unwrap().lines, 0);
    let j = open(&dir, "run2");
    assert_eq!(j.syncs(), 0);
    intent(&j, "cms", &subject("ops", None), "POST", "/api/groups");
    assert_eq!(j.syncs(), 2, "the file and the head, not the folder");
    drop(j);
    assert_eq!(read::verify(&dir).unwrap().lines, 1);
}

#[test]
fn a_journal_file_left_without_its_head_is_completed_and_flushed_when_opened() {
    // A first run stopped between creating the journal's file and its head.
    let (_d, dir) = state();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(file_name(1)), "").unwrap();
    let j = open(&dir, "run1");
    assert_eq!(
        j.syncs(),
        3,
        "the file, the head it created, and the folder"
    );
    assert!(dir.join(HEAD_FILE).exists());
}

#[test]
fn a_head_made_when_the_journal_is_brought_up_to_date_is_flushed_with_its_folder() {
    // A first run stopped between writing its first line and creating the head.
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    intent(&j, "cms", &subject("ops", None), "POST", "/api/groups");
    drop(j);
    fs::remove_file(dir.join(HEAD_FILE)).unwrap();
    let j = open(&dir, "run2");
    assert_eq!(
        j.syncs(),
        3,
        "the file, the head it created, and the folder"
    );
    drop(j);
    assert_eq!(read::verify(&dir).unwrap().lines, 1);
}

#[test]
fn a_flush_whose_write_was_given_up_ends_and_is_recorded_before_the_next_begins() {
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let written = j
            .intent("cms", &subject("ops", None), "POST", "/api/groups")
            .unwrap();
        {
            let flush = j.on_disk(&written);
            tokio::pin!(flush);
            // Polled until it holds the turn, the flush is under way on the blocking pool (the
            // first poll yields to let other intents join it); then given up.
            while j.flushing.try_lock().is_ok() {
                assert!(futures::poll!(&mut flush).is_pending());
            }
        }
        // The next flush's turn comes once that flush has ended and recorded its lines.
        let _turn = j.flushing.lock().await;
        assert!(j.flushed.load(Ordering::Acquire) >= written.line);
        assert_eq!(j.syncs(), 3 + 2);
    });
}

/// Writes the intent of adding user `u{i}` to "eng"; its write's number, once it is on disk.
async fn intent_on_disk(j: &Journal, i: usize) -> u64 {
    let s = subject("eng", Some(&format!("u{i}")));
    let written = j
        .intent("cms", &s, "POST", "/api/groups/eng/users")
        .unwrap();
    j.on_disk(&written).await.unwrap();
    written.call
}

#[test]
fn intents_written_together_share_the_first_flush() {
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    let syncs = || j.syncs() - 3;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        // Eight writes started together, as an apply starts its first calls, with no flush
        // under way: the first to need a flush lets the others write their intents before it
        // takes its turn, so one flush covers all eight.
        futures::future::join_all((0..8).map(|i| intent_on_disk(&j, i))).await;
    });
    assert_eq!(j.flushed.load(Ordering::Acquire), 8);
    assert_eq!(syncs(), 2, "one flush of the file and the head");
}

#[test]
fn a_folder_is_flushed_or_the_error_names_it() {
    let (_d, dir) = state();
    fs::create_dir_all(&dir).unwrap();
    sync_dir(&dir).unwrap();
    let missing = dir.join("gone");
    let err = sync_dir(&missing).unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
}

#[test]
fn intents_waiting_together_share_a_flush_and_each_returns_only_once_it_is_on_disk() {
    let (_d, dir) = state();
    let j = open(&dir, "run1");
    // The new journal's file, head and folder, flushed as they were created.
    assert_eq!(j.syncs(), 3);
    let syncs = || j.syncs() - 3;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        // Eight writes, as a target's concurrency sends them, while a flush is under way: they
        // append their intents and wait, and the first to flush after it takes all eight.
        let under_way = j.flushing.lock().await;
        let each = (0..8).map(|i| {
            let j = &j;
            async move {
                let call = intent_on_disk(j, i).await;
                // Every line is an intent here: the write's number is its line's.
                let flushed = j.flushed.load(Ordering::Acquire);
                assert!(
                    flushed >= call,
                    "intent {call} returned with {flushed} lines on disk"
                );
                call
            }
        });
        let all = futures::future::join_all(each);
        tokio::pin!(all);
        assert!(futures::poll!(&mut all).is_pending());
        assert_eq!(lock_ignoring_poison(&j.files).written, 8);
        assert_eq!(syncs(), 0);
        drop(under_way);
        let mut calls = all.await;
        calls.sort_unstable();
        assert_eq!(calls, (1..=8).collect::<Vec<u64>>());
        assert_eq!(syncs(), 2, "one flush of the file and the head");
    });
    // One alone flushes its own line.
    intent(&j, "cms", &subject("ops", None), "POST", "/api/groups");
    assert_eq!(syncs(), 2 * 2);
    assert_eq!(j.flushed.load(Ordering::Acquire), 9);
    // Outcomes are not flushed on their own: the next intent's flush takes them along.
    j.outcome(
        "cms",
        &subject("ops", None),
        9,
        WriteOutcome::Applied,
        201,
        None,
    )
    .unwrap();
    assert_eq!(syncs(), 2 * 2);
    intent(&j, "cms", &subject("qa", None), "POST", "/api/groups");
    assert_eq!(j.flushed.load(Ordering::Acquire), 11);
    drop(j);
    let v = read::verify(&dir).unwrap();
    assert_eq!(v.open.len(), 9);
}

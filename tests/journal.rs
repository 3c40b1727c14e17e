//! The audit journal end to end: `roster` as a process against the simulators over real HTTP.
//!
//! - Every write a simulator's call log records has exactly one outcome line in the journal (and
//!   every outcome line one logged write), on all four targets, with faults that make roster send
//!   writes again: answers lost after the write landed, and writes refused with a 500.
//! - An apply of about 1,000 changes killed with SIGKILL early, during the group creates and in
//!   the middle, then run again, converges with no duplicate group and no member lost that
//!   should stay; the journal verifies, and shows the interrupted writes as intents without
//!   outcome, which the next run named in its log and handled first.
//! - `roster journal verify` and `show` as a person runs them: a line edited by hand is named
//!   by file and line (exit 1).

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is a failure with its place.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use roster::journal::{Kind, Line};
use roster::sim::faults::Faults;
use support::harness::{Contensis, Crafter, Harness, UiPath, VinylDns, world};
use support::{World, stderr, stdout, strs};

/// The journal folder of a world whose config names no `state_dir`: `./.roster` in the folder
/// roster runs in, which the support functions make the config's.
fn state(w: &World) -> PathBuf {
    w.dir.path().join(".roster")
}

/// Every journal line, oldest first.
fn journal(w: &World) -> Vec<Line> {
    support::journal_lines(&state(w))
}

/// The intents without an outcome line, as `(run_id, call)` with the intent.
fn without_outcome(lines: &[Line]) -> BTreeMap<(String, u64), Line> {
    let mut open = BTreeMap::new();
    for l in lines {
        let key = (l.run_id.clone(), l.call.unwrap_or(0));
        match l.kind {
            Kind::Intent => {
                open.insert(key, l.clone());
            }
            Kind::Outcome => {
                open.remove(&key);
            }
            Kind::Recheck => {}
        }
    }
    open
}

/// Every writing request of a simulator's call log, as `METHOD /path` (the query left off, as
/// the journal leaves it off).
fn logged_writes<H: Harness>(w: &World) -> Vec<String> {
    let mut writes: Vec<String> = H::write_calls(w)
        .into_iter()
        .map(|c| c.split('?').next().unwrap_or_default().to_owned())
        .collect();
    writes.sort();
    writes
}

async fn one_outcome_line_per_logged_write<H: Harness>() {
    let users = ["u1", "u2", "u3", "u4", "u5", "u6"];
    let seeded: &[(&str, &[&str])] = &[("keep", &["u1", "u2", "u3"]), ("old", &["u1", "u2"])];
    let groups = H::group("keep", "kept", &["u1", "u4"], &[])
        + &H::group("new1", "made", &["u1", "u2", "u5"], &["new2"])
        + &H::group("new2", "made", &["u3", "u6"], &[])
        + &H::group("new3", "made", &["u4"], &[]);
    let w = world::<H>(
        &users,
        seeded,
        &groups,
        "groups = [\"keep\", \"old\", \"new*\"]\nprune = true\nretries = 8\n",
    )
    .await;
    // Two writes whose answers are lost after they landed, then two refused with a 500: the
    // executor rechecks or sends again, and each of those sends is a write of its own.
    H::set_faults(
        &w,
        Faults {
            drop_after_write: 2,
            ..Faults::default()
        },
    );
    H::clear_calls(&w);
    let out = w.roster(&["apply"]).await;
    let first = logged_writes::<H>(&w);
    H::set_faults(
        &w,
        Faults {
            fail_writes: 2,
            ..Faults::default()
        },
    );
    // A second change after the first apply, so that the 500s meet writes.
    w.write_groups(&(groups + &H::group("new4", "made", &["u2"], &[])));
    let again = w.roster(&["apply"]).await;
    assert!(
        out.status.code() == Some(0) && again.status.code() == Some(0),
        "{}{}\n{}{}",
        stdout(&out),
        stderr(&out),
        stdout(&again),
        stderr(&again)
    );
    let lines = journal(&w);
    let intents: BTreeMap<(String, u64), &Line> = lines
        .iter()
        .filter(|l| l.kind == Kind::Intent)
        .map(|l| ((l.run_id.clone(), l.call.unwrap()), l))
        .collect();
    let mut outcomes: Vec<String> = Vec::new();
    let mut kinds = BTreeSet::new();
    for l in lines.iter().filter(|l| l.kind == Kind::Outcome) {
        let intent = intents[&(l.run_id.clone(), l.call.unwrap())];
        outcomes.push(format!(
            "{} {}",
            intent.method.as_deref().unwrap(),
            intent.path.as_deref().unwrap()
        ));
        kinds.insert(l.outcome.unwrap().as_str());
    }
    outcomes.sort();
    let logged = logged_writes::<H>(&w);
    assert!(logged.len() > first.len() && !first.is_empty());
    assert_eq!(
        outcomes, logged,
        "journal outcomes and the simulator's writes differ"
    );
    assert!(
        without_outcome(&lines).is_empty(),
        "a clean run leaves no intent open"
    );
    // The lost answers and the refusals are in the journal as what they were.
    assert!(kinds.contains("applied"), "{kinds:?}");
    assert!(kinds.contains("unknown"), "{kinds:?}");
    assert!(kinds.contains("failed"), "{kinds:?}");
    let verify = w.roster(&["journal", "verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
}

#[tokio::test]
async fn contensis_has_one_outcome_line_per_logged_write() {
    one_outcome_line_per_logged_write::<Contensis>().await;
}

#[tokio::test]
async fn vinyldns_has_one_outcome_line_per_logged_write() {
    one_outcome_line_per_logged_write::<VinylDns>().await;
}

#[tokio::test]
async fn crafter_has_one_outcome_line_per_logged_write() {
    one_outcome_line_per_logged_write::<Crafter>().await;
}

#[tokio::test]
async fn uipath_has_one_outcome_line_per_logged_write() {
    one_outcome_line_per_logged_write::<UiPath>().await;
}

/// The executor's stage of a journalled write, from its op (`add_member+remove_member` is one
/// write of the members stage).
fn stage(op: &str) -> u8 {
    match op.split('+').next().unwrap_or_default() {
        "create_group" => 0,
        "update_group" => 1,
        "add_member" | "remove_member" => 2,
        "add_child" | "remove_child" => 3,
        _ => 4,
    }
}

/// A group's name, members and the members it must never lose.
struct Planned {
    name: String,
    members: Vec<String>,
    kept: Vec<String>,
}

/// The users, the seeded groups (name, members) and the desired groups of [`big_change`].
struct BigChange {
    users: Vec<String>,
    seeded: Vec<(String, Vec<String>)>,
    planned: Vec<Planned>,
}

/// About 1,000 changes: 60 seeded groups of 5 members each keep 3, lose 2 and gain 2 (240
/// changes), and 150 new groups of 4 members each are created (750).
fn big_change() -> BigChange {
    let users: Vec<String> = (0..300).map(|i| format!("u{i:03}")).collect();
    let mut seeded = Vec::new();
    let mut planned = Vec::new();
    for g in 0..60 {
        let have: Vec<String> = (0..5).map(|k| users[(g * 5 + k) % 300].clone()).collect();
        let kept = have[..3].to_vec();
        let mut want = kept.clone();
        want.extend((0..2).map(|k| users[(g * 5 + 150 + k) % 300].clone()));
        let name = format!("old{g:02}");
        seeded.push((name.clone(), have));
        planned.push(Planned {
            name,
            members: want,
            kept,
        });
    }
    for g in 0..150 {
        let want: Vec<String> = (0..4).map(|k| users[(g * 2 + k) % 300].clone()).collect();
        planned.push(Planned {
            name: format!("new{g:03}"),
            members: want,
            kept: Vec::new(),
        });
    }
    BigChange {
        users,
        seeded,
        planned,
    }
}

/// Starts `roster apply` on the world's config, and kills it with SIGKILL once the simulator has
/// logged `writes` writes in all; returns the run's standard error, and whether it was killed
/// (rather than finished first).
async fn apply_killed_at<H: Harness>(w: &World, writes: usize) -> (String, bool) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("--config")
        .arg(w.config_path())
        .arg("apply")
        .current_dir(w.dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut err, &mut s).await;
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed = loop {
        if H::write_calls(w).len() >= writes {
            // tokio's kill is SIGKILL: no handler runs, nothing is flushed.
            child.start_kill().unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let status = child.wait().await.unwrap();
    let log = log.await.unwrap();
    if killed {
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{log}"
        );
    }
    (log, killed)
}

/// Every planned group that exists still holds the members it must keep.
fn kept_members_stay<H: Harness>(w: &World, planned: &[Planned], when: &str) {
    for p in planned.iter().filter(|p| !p.kept.is_empty()) {
        let have = H::members(w, &p.name);
        for k in &p.kept {
            assert!(have.contains(k), "{when}: {} lost {k}: {have:?}", p.name);
        }
    }
}

async fn killed_applies_converge<H: Harness>() {
    let BigChange {
        users,
        seeded,
        planned,
    } = big_change();
    let seeded_refs: Vec<(&str, Vec<&str>)> =
        seeded.iter().map(|(n, m)| (n.as_str(), strs(m))).collect();
    let seeded_refs: Vec<(&str, &[&str])> = seeded_refs
        .iter()
        .map(|(n, m)| (*n, m.as_slice()))
        .collect();
    let groups: String = planned
        .iter()
        .map(|p| H::group(&p.name, "", &strs(&p.members), &[]))
        .collect();
    let w = world::<H>(
        &strs(&users),
        &seeded_refs,
        &groups,
        "max_deletes = 1000\nconcurrency = 8\n",
    )
    .await;
    let changes = 60 * 4 + 150 * 5;
    assert_eq!(changes, 990);
    // Every request waits, so that calls are in flight whenever roster is killed.
    H::set_faults(
        &w,
        Faults {
            latency: Some(Duration::from_millis(40)),
            ..Faults::default()
        },
    );
    H::clear_calls(&w);
    let creates = 150;
    // Early (a few creates in), during the creates, and in the middle of the member writes.
    let mut killed_runs = Vec::new();
    let mut logs = Vec::new();
    for (when, at) in [
        ("early", 5),
        ("during the creates", creates / 2),
        ("in the middle", creates + 30),
    ] {
        let before: BTreeSet<String> = journal(&w).iter().map(|l| l.run_id.clone()).collect();
        let (log, killed) = apply_killed_at::<H>(&w, at).await;
        assert!(
            killed,
            "{when}: the apply ended before it could be killed:\n{log}"
        );
        kept_members_stay::<H>(&w, &planned, when);
        let run: Vec<String> = journal(&w)
            .iter()
            .map(|l| l.run_id.clone())
            .filter(|r| !before.contains(r))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(run.len(), 1, "{when}: one new run in the journal");
        killed_runs.push(run[0].clone());
        logs.push(log);
    }

    // The run that completes.
    let out = w.roster(&["apply"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    logs.push(stderr(&out));
    let plan = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(
        plan.status.code(),
        Some(0),
        "not converged:\n{}",
        stdout(&plan)
    );

    // No duplicate group, every member where it should be, none lost that should stay.
    let names = H::group_names(&w);
    let folded: BTreeSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(
        folded.len(),
        names.len(),
        "a group was created twice: {names:?}"
    );
    for p in &planned {
        let mut want = p.members.clone();
        want.sort();
        assert_eq!(H::members(&w, &p.name), want, "{}", p.name);
    }
    kept_members_stay::<H>(&w, &planned, "at the end");

    // The journal is intact, and each killed run left intents without outcome, which the next
    // run named in its log, handled first and recorded as rechecked.
    let verify = w.roster(&["journal", "verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
    assert!(
        stdout(&verify).contains("have no outcome"),
        "{}",
        stdout(&verify)
    );
    let lines = journal(&w);
    let open = without_outcome(&lines);
    for (i, run) in killed_runs.iter().enumerate() {
        let interrupted: Vec<&Line> = open
            .iter()
            .filter(|((r, _), _)| r == run)
            .map(|(_, l)| l)
            .collect();
        // At most the 8 requests out and the 8 calls started ahead of their turn, whose
        // intents are written while they wait for a slot.
        assert!(
            !interrupted.is_empty() && interrupted.len() <= 16,
            "run {i}: {} intents without outcome",
            interrupted.len()
        );
        let next_log = &logs[i + 1];
        assert!(
            next_log.contains("an earlier run stopped before it journalled"),
            "run {}: {next_log}",
            i + 1
        );
        let next_run = killed_runs.get(i + 1);
        // The log names the first ten, oldest first, and counts the rest.
        const NAMED: usize = 10;
        if interrupted.len() > NAMED {
            let more = format!("and {} more", interrupted.len() - NAMED);
            assert!(next_log.contains(&more), "run {}: {next_log}", i + 1);
        }
        for (k, intent) in interrupted.iter().enumerate() {
            assert!(
                k >= NAMED || next_log.contains(&format!("\"{}\"", intent.group)),
                "run {}: the log does not name {}: {next_log}",
                i + 1,
                intent.group
            );
            let rechecked = lines.iter().any(|l| {
                l.kind == Kind::Recheck
                    && l.of_run_id.as_ref() == Some(run)
                    && l.of_call == intent.call
            });
            assert!(rechecked, "run {i}: {intent:?} was not rechecked");
        }
        // The groups of the interrupted writes come first among the next run's writes of the
        // same stage.
        if let Some(next) = next_run {
            let next_intents: Vec<&Line> = lines
                .iter()
                .filter(|l| l.kind == Kind::Intent && &l.run_id == next)
                .collect();
            let groups: BTreeSet<&str> = interrupted.iter().map(|l| l.group.as_str()).collect();
            for g in &groups {
                let Some(first) = next_intents.iter().find(|l| l.group == *g) else {
                    continue;
                };
                let same_stage: Vec<&&Line> = next_intents
                    .iter()
                    .filter(|l| stage(&l.op) == stage(&first.op))
                    .collect();
                let k = same_stage
                    .iter()
                    .position(|l| l.group == *g)
                    .unwrap_or_default();
                assert!(
                    k < 16,
                    "run {}: the first write to {g} is write {k} of its stage, not among the first",
                    i + 1
                );
            }
        }
    }
    let show = w.roster(&["journal", "show"]).await;
    let shown = stdout(&show);
    assert_eq!(
        shown.matches("no outcome recorded").count(),
        open.len(),
        "{shown}"
    );
}

#[tokio::test]
async fn contensis_applies_killed_with_sigkill_converge_and_the_journal_shows_them() {
    killed_applies_converge::<Contensis>().await;
}

#[tokio::test]
async fn uipath_applies_killed_with_sigkill_converge_and_the_journal_shows_them() {
    killed_applies_converge::<UiPath>().await;
}

#[tokio::test]
async fn verify_names_a_line_edited_by_hand_and_show_tells_a_members_history() {
    let w = world::<Contensis>(
        &["alice", "bob"],
        &[("eng", &["alice"])],
        &support::group("eng", "Engineering", &["bob"], &[]),
        "",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let show = w.roster(&["journal", "show", "--member", "bob"]).await;
    let shown = stdout(&show);
    assert!(
        shown.contains("cms  run ") && shown.contains("add member \"bob\" to \"eng\""),
        "{shown}"
    );
    assert!(shown.contains("→ applied"), "{shown}");
    let removed = w
        .roster(&["journal", "show", "--group", "eng", "--since", "1h"])
        .await;
    assert!(stdout(&removed).contains("remove member \"alice\" from \"eng\""));
    let none = w.roster(&["journal", "show", "--target", "dns"]).await;
    assert_eq!(stdout(&none), "No writes journalled that match.\n");

    let file = state(&w).join("journal-000001.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"bob\"", "\"mallory\"", 1)).unwrap();
    let verify = w.roster(&["journal", "verify"]).await;
    assert_eq!(verify.status.code(), Some(1));
    let said = stderr(&verify);
    assert!(said.contains("journal-000001.jsonl:"), "{said}");
    assert!(said.contains("edited"), "{said}");
    // Lines added later leave the break where it is.
    w.write_groups(&support::group("eng", "Engineering", &["alice"], &[]));
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&w.roster(&["journal", "verify"]).await), said);

    // Lines cut off the end would be buried by the next line, so nothing is written on them.
    let text = std::fs::read_to_string(&file).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&file, kept[..kept.len() - 1].join("\n") + "\n").unwrap();
    let writes = Contensis::write_calls(&w).len();
    w.write_groups(&support::group("eng", "Engineering", &["bob"], &[]));
    let refused = w.roster(&["apply"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("cannot keep the audit journal"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        Contensis::write_calls(&w).len(),
        writes,
        "nothing was written"
    );
}

/// The journal lives where `state_dir` says, relative to the config file.
#[tokio::test]
async fn state_dir_places_the_journal() {
    let w = world::<Contensis>(
        &["alice"],
        &[],
        &support::group("eng", "Engineering", &["alice"], &[]),
        "",
    )
    .await;
    let text = std::fs::read_to_string(w.config_path()).unwrap();
    std::fs::write(
        w.config_path(),
        format!("state_dir = \"var/state\"\n{text}"),
    )
    .unwrap();
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir: &Path = &w.dir.path().join("var/state");
    assert!(dir.join("journal-000001.jsonl").exists());
    assert!(dir.join("journal.head").exists());
    assert!(!state(&w).exists());
    let verify = w
        .roster(&["journal", "verify", "--state-dir", "var/state"])
        .await;
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
}

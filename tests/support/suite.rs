//! The safety scenarios every target's end-to-end suite runs, written once over a [`Harness`].
//! Each e2e file calls them from its own `#[tokio::test]`s, passing what differs by target (the
//! path to fail, the words of the error, what the target does on top) as arguments.

use std::time::{Duration, Instant};

use roster::exec::{ApplyReport, Executor, Outcome, RetryPolicy};
use roster::plan::Plan;
use roster::plan::render::Format;
use roster::reconcile::TargetOutcome;
use roster::run::RunReport;
use roster::sim::faults::Faults;
use roster::target::Target;

use super::harness::{Harness, world};
use super::{SECRET, World, stderr, stdout};

/// The users most scenarios seed.
pub const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

/// The one target's apply report.
pub fn applied(report: &RunReport) -> &ApplyReport {
    match &report.targets[0].outcome {
        TargetOutcome::Applied(r) => r,
        other => panic!("expected an apply, got {other:?}"),
    }
}

/// The plans of a run, as text.
pub fn text(report: &RunReport) -> String {
    roster::report::plans(report, Format::Text)
}

/// Standard output and standard error, for a failed assertion's message.
pub fn both(o: &std::process::Output) -> String {
    stdout(o) + &stderr(o)
}

/// The simulator received no write, and changed nothing.
pub fn assert_no_writes<H: Harness>(w: &World) {
    assert!(H::write_calls(w).is_empty(), "{:#?}", H::write_calls(w));
    assert_eq!(H::writes(w), 0);
}

/// A failed read (a 500 on every call whose path holds `fail_path`) means no write at all, and
/// exit 1: through the library (the read fails as a whole, saying each of `says`) and through the
/// binary. The target holds `n` groups `g000`, `g001`, … to read; `fail_path` is made from the
/// started world.
pub async fn failed_read_means_no_writes<H: Harness>(
    n: usize,
    fail_path: impl FnOnce(&World) -> String,
    says: &[&str],
) {
    let names: Vec<String> = (0..n).map(|i| format!("g{i:03}")).collect();
    let seeded: Vec<(&str, &[&str])> = names.iter().map(|g| (g.as_str(), &["alice"][..])).collect();
    let groups: String = names
        .iter()
        .map(|g| H::group(g, "wanted", &["alice", "bob"], &[]))
        .collect();
    let w = world::<H>(&USERS, &seeded, &groups, "retries = 1").await;
    H::set_faults(
        &w,
        Faults {
            error_rate: 1.0,
            fail_path: Some(fail_path(&w)),
            ..Faults::default()
        },
    );
    let report = w.apply(None).await;
    let TargetOutcome::ObserveFailed(e) = &report.targets[0].outcome else {
        panic!(
            "expected a failed read, got {:?}",
            report.targets[0].outcome
        );
    };
    let msg = e.to_string();
    for s in says {
        assert!(msg.contains(s), "{s}: {msg}");
    }
    assert!(report.any_failed());
    assert_no_writes::<H>(&w);

    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    for s in says {
        assert!(both(&out).contains(s), "{s}: {}", both(&out));
    }
    assert_no_writes::<H>(&w);
}

/// More removals than `max_deletes` exit 3 and write nothing; at the raised limit the apply goes
/// through, in `raised_writes` write calls where the target's count is known. The group `big`
/// holds `keep` and 101 others, and should hold `keep` only.
pub async fn too_many_removals_are_refused<H: Harness>(
    keep: &[&str],
    raised_writes: Option<usize>,
) {
    let others: Vec<String> = (0..101).map(|i| format!("u{i:03}")).collect();
    let mut all: Vec<&str> = keep.to_vec();
    all.extend(others.iter().map(String::as_str));
    let w = world::<H>(
        &all,
        &[("big", &all)],
        &H::group("big", "", keep, &[]),
        "max_deletes = 100",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(
        stdout(&out).contains("more than max_deletes = 100"),
        "{}",
        stdout(&out)
    );
    assert_no_writes::<H>(&w);
    assert_eq!(H::members(&w, "big").len(), 101 + keep.len());

    // Exactly at the raised limit the apply goes through.
    H::clear_calls(&w);
    let out = w.roster(&["apply", "--max-deletes", "101"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert_eq!(H::members(&w, "big"), keep);
    if let Some(n) = raised_writes {
        assert_eq!(H::write_calls(&w).len(), n, "{:#?}", H::write_calls(&w));
    }
}

/// An empty desired state against groups roster manages (`groups = ["*"]`, prune) is refused
/// with exit 3 and no write; `builtin`, a group the target is born with, is still there too.
pub async fn empty_source_is_refused<H: Harness>(builtin: Option<&str>) {
    let w = world::<H>(
        &USERS,
        &[("aaa", &["alice"]), ("bbb", &["bob"])],
        "",
        "groups = [\"*\"]\nprune = true",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(
        stdout(&out).contains("the source returned no groups"),
        "{}",
        stdout(&out)
    );
    assert_no_writes::<H>(&w);
    assert!(H::members_of(&w, "aaa").is_some());
    assert!(H::members_of(&w, "bbb").is_some());
    if let Some(b) = builtin {
        assert!(H::members_of(&w, b).is_some(), "{b} is gone");
    }
}

/// A connection dropped after a create landed: the create is rechecked, found done, and not sent
/// again (`is_create` picks the create out of the call log). Returns the world for the target's
/// own checks.
pub async fn dropped_connection_after_a_create_converges<H: Harness>(
    is_create: impl Fn(&str) -> bool,
) -> World {
    let w = world::<H>(
        &USERS,
        &[],
        &H::group("fresh", "new", &["alice", "bob"], &[]),
        "",
    )
    .await;
    H::set_faults(
        &w,
        Faults {
            drop_after_write: 1,
            ..Faults::default()
        },
    );
    let report = w.apply(None).await;
    let r = applied(&report);
    assert_eq!(r.failures(), 0, "{report:?}");
    assert!(
        matches!(&r.outcomes[&0], Outcome::AlreadyDone(why) if why.contains("earlier attempt")),
        "{:?}",
        r.outcomes[&0]
    );
    let names = H::group_names(&w);
    assert_eq!(
        names.iter().filter(|n| *n == "fresh").count(),
        1,
        "{names:?}"
    );
    let posts = H::calls(&w).iter().filter(|c| is_create(c)).count();
    assert_eq!(posts, 1, "the create was sent twice");
    assert_eq!(H::members(&w, "fresh"), ["alice", "bob"]);
    assert!(!w.plan().await.any_changes());
    w
}

/// A run under errors, throttling, dropped connections and latency may stop part-way, but leaves
/// a state the next apply completes: then the plan is empty and no group was made twice. Twelve
/// groups `t00`… change members, four new groups `new0`… have `t00` as child and end up with
/// `new_members`. Returns the world for the target's own checks.
pub async fn faulty_run_converges<H: Harness>(new_members: &[&str]) -> World {
    let names: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
    let seeded: Vec<(&str, &[&str])> = names.iter().map(|t| (t.as_str(), &["erin"][..])).collect();
    let mut groups: String = names
        .iter()
        .map(|t| H::group(t, "team", &["alice", "bob", "carol"], &[]))
        .collect();
    for i in 0..4 {
        groups += &H::group(&format!("new{i}"), "new", &["dave"], &["t00"]);
    }
    let w = world::<H>(&USERS, &seeded, &groups, "retries = 1").await;
    H::set_faults(
        &w,
        Faults {
            error_rate: 0.3,
            throttle_rate: 0.1,
            retry_after: Duration::from_secs(0),
            drop_after_write: 3,
            latency: Some(Duration::from_millis(2)),
            seed: 7,
            ..Faults::default()
        },
    );
    // The first run may fail part-way (or not even read); it must leave a valid state.
    let _ = w.apply(None).await;
    H::set_faults(&w, Faults::default());
    let second = w.apply(None).await;
    assert!(!second.any_failed(), "{second:?}");
    let third = w.plan().await;
    assert!(!third.any_changes(), "{}", text(&third));
    let names = H::group_names(&w);
    for i in 0..4 {
        let n = format!("new{i}");
        assert_eq!(
            names.iter().filter(|x| **x == n).count(),
            1,
            "duplicate {n}"
        );
        assert_eq!(H::members(&w, &n), new_members);
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicates: {names:?}");
    w
}

/// The world most small scenarios start from: the [`USERS`] and five desired groups `g0`… of
/// alice and bob.
pub async fn five_new_groups<H: Harness>() -> World {
    let groups: String = (0..5)
        .map(|i| H::group(&format!("g{i}"), "", &["alice", "bob"], &[]))
        .collect();
    world::<H>(&USERS, &[], &groups, "").await
}

/// Credentials that expire after `expire_after` requests do not fail the run; where the target
/// has sessions, `renewals` counts the logins or token requests, which must be two or more.
pub async fn expiring_credentials_are_renewed<H: Harness>(
    w: &World,
    expire_after: u32,
    renewals: Option<fn(&World) -> usize>,
) {
    H::set_faults(
        w,
        Faults {
            expire_tokens_after: expire_after,
            ..Faults::default()
        },
    );
    let report = w.apply(None).await;
    assert!(!report.any_failed(), "{report:?}");
    if let Some(renewals) = renewals {
        let n = renewals(w);
        assert!(n >= 2, "the credentials were not renewed: {n} logins");
    }
    assert!(!w.plan().await.any_changes());
}

/// A 429 with `Retry-After: 1` on every call whose path holds `fail_path` is waited out: the
/// throttle is lifted once the first call matching `lift_when` has been answered, and the apply
/// must not have finished before a second went by. `group` ends up holding `member`.
pub async fn retry_after_is_honoured<H: Harness>(
    w: &World,
    fail_path: &str,
    lift_when: impl Fn(&str) -> bool + Send + 'static,
    group: &str,
    member: &str,
) {
    let sim = H::sim(w).clone();
    H::set_faults_of(
        &sim,
        Faults {
            throttle_rate: 1.0,
            retry_after: Duration::from_secs(1),
            fail_path: Some(fail_path.to_owned()),
            ..Faults::default()
        },
    );
    let started = Instant::now();
    let lift = tokio::spawn(async move {
        for _ in 0..400 {
            if H::calls_of(&sim).iter().any(|c| lift_when(c)) {
                H::set_faults_of(&sim, Faults::default());
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let report = w.apply(None).await;
    lift.await.expect("lifter");
    assert!(!report.any_failed(), "{report:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "retried before Retry-After: {:?}",
        started.elapsed()
    );
    assert!(H::members(w, group).iter().any(|m| m == member));
}

/// One change fails (the world is set up so) and the apply goes on with the others, exits 1 and
/// names the failed call on its `FAILED` line (each of `line_has`). `failing` is left with
/// `failing_members`, `other` gets `other_members`.
pub async fn one_failure_does_not_stop_the_others<H: Harness>(
    w: &World,
    line_has: &[String],
    (failing, failing_members): (&str, &[&str]),
    (other, other_members): (&str, &[&str]),
) {
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let t = stdout(&out);
    let line = t.lines().find(|l| l.contains("FAILED")).unwrap_or_default();
    for s in line_has {
        assert!(line.contains(s.as_str()), "{s}: {t}");
    }
    assert_eq!(H::members(w, other), other_members);
    assert_eq!(H::members(w, failing), failing_members);
}

/// Users the target does not have (and the like) are warnings in the plan (each of `warnings`),
/// which has changes (exit 2 with `--detailed-exitcode`); the apply succeeds with `group` holding
/// `members`, and then the plan has none.
pub async fn warnings_are_not_failures<H: Harness>(
    w: &World,
    warnings: &[&str],
    group: &str,
    members: &[&str],
) {
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let t = stdout(&out);
    for warning in warnings {
        assert!(t.contains(warning), "{warning}: {t}");
    }
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert_eq!(H::members(w, group), members);
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
}

/// The secret shows in no Debug output (config, connector), and in no output or log of a plan in
/// any format or an apply, all of which succeed.
pub async fn secrets_never_appear<H: Harness>(w: &World) {
    let config = w.config();
    assert!(
        !format!("{config:?}").contains(SECRET),
        "Debug of the config shows the secret"
    );
    assert!(
        !format!("{:?}", H::connector(w)).contains(SECRET),
        "Debug of the connector shows the secret"
    );
    for args in [
        &["plan"][..],
        &["plan", "--format", "json"][..],
        &["plan", "--format", "markdown"][..],
        &["apply"][..],
    ] {
        let out = super::roster_at(&w.config_path(), args, &[("RUST_LOG", "trace")]).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", both(&out));
        assert!(
            !stdout(&out).contains(SECRET),
            "{args:?} printed the secret"
        );
        assert!(!stderr(&out).contains(SECRET), "{args:?} logged the secret");
    }
}

/// A wrong secret (`wrong`) fails closed, exit 1, with a clear message (each of `says`), and
/// without echoing it.
pub async fn a_wrong_secret_fails_closed(w: &World, wrong: &str, says: &[&str]) {
    std::fs::write(w.dir.path().join("secret"), format!("{wrong}\n")).expect("write");
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let all = both(&out);
    for s in says {
        assert!(all.contains(s), "{s}: {all}");
    }
    assert!(!all.contains(wrong), "{all}");
}

/// What [`plan_then`] did.
pub struct Staged {
    /// The plan made from the first read.
    pub plan: Plan,
    /// How many calls the plan compiled to.
    pub calls: usize,
    /// What executing them did, after `between`.
    pub report: ApplyReport,
}

/// Drives prepare → observe → plan → compile → execute by hand, running `between` before the
/// calls are sent, as another writer would change the target in between.
pub async fn plan_then<H: Harness>(w: &World, between: impl AsyncFnOnce(&World)) -> Staged {
    let target = H::connector(w);
    let config = w.config();
    let t = &config.targets[0];
    let desired = roster::source::load_desired(&config.sources)
        .await
        .expect("desired");
    let policy = roster::run::policy(t, &desired, true, None);
    let desired = target
        .prepare(&desired, &policy.scope)
        .expect("prepare")
        .into_owned();
    let observed = target
        .observe(&policy.scope, &desired.user_keys())
        .await
        .expect("observe");
    let plan = roster::plan::plan(
        &t.name,
        t.kind.type_name(),
        &desired,
        &observed,
        &policy,
        target.capabilities(),
    );
    let calls = target.compile(&plan, &observed);
    let n = calls.len();
    between(w).await;
    let exec = Executor::new(RetryPolicy::default(), t.concurrency);
    let report = exec.execute(&target, calls).await;
    Staged {
        plan,
        calls: n,
        report,
    }
}

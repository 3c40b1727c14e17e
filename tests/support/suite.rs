//! The safety scenarios every target's end-to-end suite runs, written once over a [`Harness`].
//! Each e2e file invokes [`safety_suite!`](crate::safety_suite) once, which makes one
//! `#[tokio::test]` per scenario; what differs by target (the path to fail, the words of the
//! error, the world to start from, checks on top) comes from the target's [`SafetyCase`] impl,
//! and a target that cannot run a scenario says why there.

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

/// A `roster plan`'s standard output after its read report (the `Read ...` lines and the blank
/// line that ends them), so scenarios can check where the plan starts.
pub fn plan_output(o: &std::process::Output) -> String {
    let out = stdout(o);
    let mut rest = out.as_str();
    while let Some(line_end) = rest.strip_prefix("Read ").and_then(|r| r.find('\n')) {
        rest = &rest["Read ".len() + line_end + 1..];
    }
    rest.strip_prefix('\n').unwrap_or(rest).to_owned()
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

/// More removals than `max_deletes` exit 3 and write nothing, in `roster plan` (which shows the
/// refusal above the plan) as in `roster apply`; at the raised limit the apply goes through, in
/// `raised_writes` write calls where the target's count is known. The group `big` holds `keep`
/// and 101 others, and should hold `keep` only (which `max_group_shrink` would refuse too: it is
/// off here, so that the deletion limit alone is tested).
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
        "max_deletes = 100\nmax_group_shrink = \"100%\"",
    )
    .await;
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(
        plan_output(&out).starts_with(&format!(
            "{}:\n  refused: the plan removes 101 members, children or groups, more than \
             max_deletes = 100; ",
            w.target_name()
        )),
        "{}",
        stdout(&out)
    );
    let out = w.roster(&["plan", "--max-deletes", "101"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert_no_writes::<H>(&w);

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
/// with exit 3 by `roster plan` and `roster apply`, and nothing is written; `builtin`, a group the target is born with, is still there too.
pub async fn empty_source_is_refused<H: Harness>(builtin: Option<&str>) {
    let w = world::<H>(
        &USERS,
        &[("aaa", &["alice"]), ("bbb", &["bob"])],
        "",
        "groups = [\"*\"]\nprune = true",
    )
    .await;
    for cmd in ["plan", "apply"] {
        let out = w.roster(&[cmd]).await;
        assert_eq!(out.status.code(), Some(3), "{cmd}: {}", both(&out));
        assert!(
            stdout(&out).contains("the source returned no groups"),
            "{cmd}: {}",
            stdout(&out)
        );
    }
    assert_no_writes::<H>(&w);
    assert!(H::members_of(&w, "aaa").is_some());
    assert!(H::members_of(&w, "bbb").is_some());
    if let Some(b) = builtin {
        assert!(H::members_of(&w, b).is_some(), "{b} is gone");
    }
}

/// A source that drops 6 of a group's 10 members (a filter typo, an old backup) is refused by
/// `max_group_shrink` (default 50%): `roster plan` and `roster apply` exit 3 and name the group
/// with its counts, text and JSON, and no write reaches the target; `--max-group-shrink 100%`
/// lets the apply through.
pub async fn group_shrink_is_refused<H: Harness>() {
    let ten: Vec<String> = (0..10).map(|i| format!("u{i:02}")).collect();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    let w = world::<H>(
        &ten,
        &[("team", &ten)],
        &H::group("team", "", &ten[..4], &[]),
        "",
    )
    .await;

    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    let t = plan_output(&out);
    let head = format!(
        "{}:\n  refused: the plan shrinks 1 group by more than max_group_shrink = 50% of its members: \"team\" 10 → 4 members; ",
        w.target_name()
    );
    assert!(t.starts_with(&head), "{t}");
    assert!(t.contains("--max-group-shrink 100%"), "{t}");
    // The plan is shown whole beneath the refusal.
    assert_eq!(t.matches("  - member ").count(), 6, "{t}");

    let out = w.roster(&["plan", "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON plan");
    let refusal = &json["targets"][0]["refusal"];
    assert_eq!(refusal["kind"], "group_shrink", "{json}");
    assert_eq!(
        refusal["details"],
        serde_json::json!({
            "limit": "50%",
            "groups": [{"group": "team", "before": 10, "after": 4}],
        })
    );
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"team\" 10 → 4 members")),
        "{refusal}"
    );
    assert_no_writes::<H>(&w);

    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(
        stdout(&out).contains("refused, nothing written: the plan shrinks 1 group")
            && stdout(&out).contains("\"team\" 10 → 4 members"),
        "{}",
        stdout(&out)
    );
    assert_no_writes::<H>(&w);
    assert_eq!(H::members(&w, "team"), ten);

    // Reviewed: allowed for this run only.
    let out = w.roster(&["plan", "--max-group-shrink", "100%"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(!stdout(&out).contains("refused"), "{}", stdout(&out));
    let out = w.roster(&["apply", "--max-group-shrink", "100%"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert_eq!(H::members(&w, "team"), &ten[..4]);
    assert!(!w.plan().await.any_changes());
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
    let policy = roster::run::policy(t, &desired, true, None, None);
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

/// What a target gives one scenario: its arguments, or why the target cannot run it.
pub enum Case<T> {
    /// Run the scenario with these arguments.
    Run(T),
    /// The target cannot run the scenario, for this reason (printed by the test).
    Skip(&'static str),
}

/// A check a target runs on the world after a scenario passed.
pub type Then = fn(&World);

/// The [`Then`] of a target with nothing to check on top.
pub fn nothing(_: &World) {}

/// Arguments of [`failed_read_means_no_writes`].
pub struct FailedRead {
    /// How many groups the target holds.
    pub groups: usize,
    /// The path to fail, made from the started world.
    pub fail_path: fn(&World) -> String,
    /// What the error says.
    pub says: &'static [&'static str],
}

/// Arguments of [`too_many_removals_are_refused`].
pub struct TooManyRemovals {
    /// The members `big` keeps.
    pub keep: &'static [&'static str],
    /// The write calls of the apply at the raised limit, where the target's count is known.
    pub raised_writes: Option<usize>,
}

/// Arguments of [`empty_source_is_refused`].
pub struct EmptySource {
    /// A group the target is born with, which must survive.
    pub builtin: Option<&'static str>,
}

/// Arguments of [`dropped_connection_after_a_create_converges`].
pub struct DroppedCreate {
    /// Picks the create out of the call log.
    pub is_create: fn(&str) -> bool,
    /// The target's own checks.
    pub then: Then,
}

/// Arguments of [`faulty_run_converges`].
pub struct FaultyRun {
    /// The members the new groups end up with.
    pub new_members: &'static [&'static str],
    /// The target's own checks.
    pub then: Then,
}

/// Arguments of [`expiring_credentials_are_renewed`].
pub struct Expiring {
    /// The world to apply.
    pub world: World,
    /// Requests after which the credentials expire.
    pub expire_after: u32,
    /// Counts the logins or token requests.
    pub renewals: Option<fn(&World) -> usize>,
}

/// Arguments of [`retry_after_is_honoured`].
pub struct RetryAfter {
    /// The world to apply.
    pub world: World,
    /// The path throttled.
    pub fail_path: String,
    /// The throttle is lifted once a call this picks out was answered.
    pub lift_when: Box<dyn Fn(&str) -> bool + Send>,
    /// The group that gains `member`.
    pub group: &'static str,
    /// The member it gains.
    pub member: &'static str,
    /// The target's own checks.
    pub then: Then,
}

/// Arguments of [`one_failure_does_not_stop_the_others`].
pub struct OneFailure {
    /// The world, with the fault set.
    pub world: World,
    /// What the `FAILED` line holds.
    pub line_has: Vec<String>,
    /// The failing group and the members it is left with.
    pub failing: (&'static str, &'static [&'static str]),
    /// The other group and the members it gets.
    pub other: (&'static str, &'static [&'static str]),
}

/// Arguments of [`warnings_are_not_failures`].
pub struct Warnings {
    /// The world to plan and apply.
    pub world: World,
    /// The warnings of the plan.
    pub warnings: &'static [&'static str],
    /// The group applied.
    pub group: &'static str,
    /// The members it ends up with.
    pub members: &'static [&'static str],
    /// The target's own checks.
    pub then: Then,
}

/// Arguments of [`a_wrong_secret_fails_closed`].
pub struct WrongSecret {
    /// The world whose secret is replaced.
    pub world: World,
    /// The wrong secret.
    pub wrong: &'static str,
    /// What the message says.
    pub says: &'static [&'static str],
    /// The target's own checks.
    pub then: Then,
}

/// What each safety scenario needs of one target; [`safety_suite!`](crate::safety_suite) makes
/// one test per method.
#[allow(async_fn_in_trait)]
pub trait SafetyCase: Harness {
    /// [`failed_read_means_no_writes`].
    fn failed_read() -> Case<FailedRead>;
    /// [`too_many_removals_are_refused`].
    fn too_many_removals() -> Case<TooManyRemovals>;
    /// [`empty_source_is_refused`].
    fn empty_source() -> Case<EmptySource>;
    /// [`dropped_connection_after_a_create_converges`].
    fn dropped_create() -> Case<DroppedCreate>;
    /// [`faulty_run_converges`].
    fn faulty_run() -> Case<FaultyRun>;
    /// [`expiring_credentials_are_renewed`].
    async fn expiring_credentials() -> Case<Expiring>;
    /// [`retry_after_is_honoured`].
    async fn retry_after() -> Case<RetryAfter>;
    /// [`one_failure_does_not_stop_the_others`].
    async fn one_failure() -> Case<OneFailure>;
    /// [`warnings_are_not_failures`].
    async fn warnings() -> Case<Warnings>;
    /// [`secrets_never_appear`], in each of these worlds.
    async fn secrets() -> Case<Vec<World>>;
    /// [`a_wrong_secret_fails_closed`].
    async fn wrong_secret() -> Case<WrongSecret>;
    /// [`unmanaged_groups_are_never_touched`].
    fn unmanaged_groups() -> Case<()> {
        Case::Run(())
    }
    /// [`group_shrink_is_refused`].
    fn group_shrink() -> Case<()> {
        Case::Run(())
    }
}

/// Makes `mod safety`, one `#[tokio::test]` per safety scenario for the [`SafetyCase`] target
/// `$t`; a scenario the target skips prints why and passes.
#[macro_export]
macro_rules! safety_suite {
    ($t:ty) => {
        mod safety {
            use super::*;
            use $crate::support::suite::{self as s, Case, SafetyCase};

            fn skipped(scenario: &str, why: &str) {
                eprintln!("{scenario}: skipped for {}: {why}", stringify!($t));
            }

            #[tokio::test]
            async fn a_failed_read_means_zero_writes_and_exit_1() {
                match <$t as SafetyCase>::failed_read() {
                    Case::Run(a) => {
                        s::failed_read_means_no_writes::<$t>(a.groups, a.fail_path, a.says).await
                    }
                    Case::Skip(why) => skipped("failed read", why),
                }
            }

            #[tokio::test]
            async fn more_removals_than_max_deletes_exits_3_and_writes_nothing() {
                match <$t as SafetyCase>::too_many_removals() {
                    Case::Run(a) => {
                        s::too_many_removals_are_refused::<$t>(a.keep, a.raised_writes).await
                    }
                    Case::Skip(why) => skipped("too many removals", why),
                }
            }

            #[tokio::test]
            async fn a_group_shrunk_by_more_than_max_group_shrink_exits_3_and_writes_nothing() {
                match <$t as SafetyCase>::group_shrink() {
                    Case::Run(()) => s::group_shrink_is_refused::<$t>().await,
                    Case::Skip(why) => skipped("group shrink", why),
                }
            }

            #[tokio::test]
            async fn an_empty_source_against_managed_groups_is_refused() {
                match <$t as SafetyCase>::empty_source() {
                    Case::Run(a) => s::empty_source_is_refused::<$t>(a.builtin).await,
                    Case::Skip(why) => skipped("empty source", why),
                }
            }

            #[tokio::test]
            async fn a_connection_dropped_after_a_create_adopts_the_group_without_a_duplicate() {
                match <$t as SafetyCase>::dropped_create() {
                    Case::Run(a) => {
                        let w =
                            s::dropped_connection_after_a_create_converges::<$t>(a.is_create).await;
                        (a.then)(&w);
                    }
                    Case::Skip(why) => skipped("dropped create", why),
                }
            }

            #[tokio::test]
            async fn a_fault_run_converges_on_the_second_apply_and_the_third_plan_is_empty() {
                match <$t as SafetyCase>::faulty_run() {
                    Case::Run(a) => {
                        let w = s::faulty_run_converges::<$t>(a.new_members).await;
                        (a.then)(&w);
                    }
                    Case::Skip(why) => skipped("faulty run", why),
                }
            }

            #[tokio::test]
            async fn credentials_that_expire_mid_run_are_renewed() {
                match <$t as SafetyCase>::expiring_credentials().await {
                    Case::Run(a) => {
                        s::expiring_credentials_are_renewed::<$t>(
                            &a.world,
                            a.expire_after,
                            a.renewals,
                        )
                        .await
                    }
                    Case::Skip(why) => skipped("expiring credentials", why),
                }
            }

            #[tokio::test]
            async fn a_429_waits_for_retry_after() {
                match <$t as SafetyCase>::retry_after().await {
                    Case::Run(a) => {
                        s::retry_after_is_honoured::<$t>(
                            &a.world,
                            &a.fail_path,
                            a.lift_when,
                            a.group,
                            a.member,
                        )
                        .await;
                        (a.then)(&a.world);
                    }
                    Case::Skip(why) => skipped("Retry-After", why),
                }
            }

            #[tokio::test]
            async fn one_failed_change_does_not_stop_the_others_and_the_error_says_where() {
                match <$t as SafetyCase>::one_failure().await {
                    Case::Run(a) => {
                        s::one_failure_does_not_stop_the_others::<$t>(
                            &a.world,
                            &a.line_has,
                            a.failing,
                            a.other,
                        )
                        .await
                    }
                    Case::Skip(why) => skipped("one failure", why),
                }
            }

            #[tokio::test]
            async fn unknown_users_are_warnings_not_failures() {
                match <$t as SafetyCase>::warnings().await {
                    Case::Run(a) => {
                        s::warnings_are_not_failures::<$t>(
                            &a.world, a.warnings, a.group, a.members,
                        )
                        .await;
                        (a.then)(&a.world);
                    }
                    Case::Skip(why) => skipped("warnings", why),
                }
            }

            #[tokio::test]
            async fn secrets_never_reach_logs_plans_or_debug_output() {
                match <$t as SafetyCase>::secrets().await {
                    Case::Run(worlds) => {
                        for w in &worlds {
                            s::secrets_never_appear::<$t>(w).await;
                        }
                    }
                    Case::Skip(why) => skipped("secrets", why),
                }
            }

            #[tokio::test]
            async fn a_wrong_secret_fails_closed_with_a_clear_message() {
                match <$t as SafetyCase>::wrong_secret().await {
                    Case::Run(a) => {
                        s::a_wrong_secret_fails_closed(&a.world, a.wrong, a.says).await;
                        (a.then)(&a.world);
                    }
                    Case::Skip(why) => skipped("wrong secret", why),
                }
            }

            #[tokio::test]
            async fn groups_outside_the_managed_scope_are_never_touched() {
                match <$t as SafetyCase>::unmanaged_groups() {
                    Case::Run(()) => s::unmanaged_groups_are_never_touched::<$t>().await,
                    Case::Skip(why) => skipped("managed scope", why),
                }
            }
        }
    };
}

/// Whether a call addresses the group of this id: the id is a path segment after `groups` (or
/// UiPath's `Group`), before any query.
fn addresses(call: &str, id: &str) -> bool {
    let path = call.split('?').next().unwrap_or_default();
    let mut after_groups = false;
    for seg in path.split('/') {
        if after_groups && seg == id {
            return true;
        }
        if seg.eq_ignore_ascii_case("groups") || seg == "Group" {
            after_groups = true;
        }
    }
    false
}

/// Groups out of the managed scope (`groups = ["app-*"]`, prune) are never touched: `ops`, also
/// named in the desired state with other members, and `legacy`, absent from it, get no write
/// and no change in the plan (`ops` only a warning that it is left alone), while the managed `app-web` gains a member, `app-old` is pruned and
/// `app-new` is created.
pub async fn unmanaged_groups_are_never_touched<H: Harness>() {
    let desired = H::group("ops", "", &["alice", "carol"], &[])
        + &H::group("app-web", "", &["alice", "bob"], &[])
        + &H::group("app-new", "", &["dave"], &[]);
    let w = world::<H>(
        &USERS,
        &[
            ("ops", &["alice", "bob"]),
            ("legacy", &["erin"]),
            ("app-web", &["alice"]),
            ("app-old", &["erin"]),
        ],
        &desired,
        "groups = [\"app-*\"]\nprune = true",
    )
    .await;
    let unmanaged: Vec<(&str, String, Vec<String>)> = ["ops", "legacy"]
        .into_iter()
        .map(|g| (g, H::group_id(&w, g), H::members(&w, g)))
        .collect();

    let plan = w.plan().await;
    let t = text(&plan);
    // The plan changes neither; the desired `ops` is only warned about, as left alone.
    for (name, _, _) in &unmanaged {
        for line in t.lines().filter(|l| l.contains(&format!("\"{name}\""))) {
            assert!(
                line.trim_start().starts_with('!') && line.contains("left alone"),
                "{name}: {t}"
            );
        }
    }
    assert!(!t.contains("\"legacy\""), "{t}");
    assert!(t.contains("\"app-web\""), "{t}");
    assert!(t.contains("\"app-old\""), "{t}");
    assert!(t.contains("\"app-new\""), "{t}");
    assert_no_writes::<H>(&w);

    let report = w.apply(None).await;
    assert!(!report.any_failed(), "{report:?}");
    let writes = H::write_calls(&w);
    assert!(!writes.is_empty(), "the managed changes were not sent");
    for (name, id, members) in &unmanaged {
        assert!(
            !writes.iter().any(|c| addresses(c, id) || c.contains(name)),
            "{name} was written to: {writes:#?}"
        );
        assert_eq!(&H::members(&w, name), members, "{name}");
    }
    assert_eq!(H::members(&w, "app-web"), ["alice", "bob"]);
    assert_eq!(H::members(&w, "app-new"), ["dave"]);
    assert!(H::members_of(&w, "app-old").is_none(), "app-old was kept");
    assert!(!w.plan().await.any_changes());
}

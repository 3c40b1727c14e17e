//! End to end against the VinylDNS simulator over real HTTP, every request signed with SigV4:
//! plan, apply, the safety rules, and convergence after faults. Each test names the rule it would
//! catch breaking.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use roster::exec::{Executor, Outcome, RetryPolicy};
use roster::reconcile::TargetOutcome;
use roster::sim::SimKind;
use roster::sim::faults::Faults;
use roster::target::Target;
use roster::target::vinyldns::VinylDnsTarget;
use support::{SECRET, World, stderr, stdout};

const KEYS: &str = "access_key = \"roster-access\"\nsecret_key_file = \"secret\"\n";

/// A seed whose roster account is a super user, with these users and extra seed text.
fn seed(users: &[&str], extra: &str) -> String {
    seed_as(users, extra, true)
}

fn seed_as(users: &[&str], extra: &str, roster_is_super: bool) -> String {
    let q: Vec<String> = users.iter().map(|u| format!("{u:?}")).collect();
    let supers = if roster_is_super {
        "[\"roster\"]"
    } else {
        "[]"
    };
    format!(
        "[vinyldns]\nusers = [{}]\nsuper_users = {supers}\n\n[[vinyldns.credentials]]\n\
         access_key = \"roster-access\"\nsecret_key = \"{SECRET}\"\nuser = \"roster\"\n\n{extra}",
        q.join(", ")
    )
}

fn seed_group(name: &str, members: &[&str], admins: &[&str]) -> String {
    let q = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[vinyldns.group]]\nname = {name:?}\nemail = \"{name}@example.com\"\nmembers = [{}]\n\
         admins = [{}]\n\n",
        q(members),
        q(admins)
    )
}

/// A desired group with its `[group.vinyldns]` table.
fn group(name: &str, members: &[&str], children: &[&str], admins: &[&str]) -> String {
    let q = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[group]]\nname = {name:?}\ndescription = \"{name} team\"\nmembers = [{}]\nchildren = [{}]\n\
         [group.vinyldns]\nemail = \"{name}@example.com\"\nadmins = [{}]\n\n",
        q(members),
        q(children),
        q(admins)
    )
}

async fn world(seed: &str, groups: &str, extra: &str) -> World {
    World::with_target(SimKind::VinylDns, seed, KEYS, groups, extra).await
}

fn writes(w: &World) -> Vec<String> {
    w.sim
        .vinyldns
        .calls()
        .into_iter()
        .filter(|c| !c.starts_with("GET "))
        .collect()
}

fn applied(report: &roster::run::RunReport) -> &roster::exec::ApplyReport {
    match &report.targets[0].outcome {
        TargetOutcome::Applied(r) => r,
        other => panic!("expected an apply, got {other:?}"),
    }
}

fn text(report: &roster::run::RunReport) -> String {
    roster::report::plans(report, roster::plan::render::Format::Text)
}

#[tokio::test]
async fn apply_creates_updates_flattens_children_and_the_next_plan_is_empty() {
    let s = seed(
        &["alice", "bob", "carol", "dave", "erin"],
        &(seed_group("eng", &["alice", "dave"], &["alice"])
            + &seed_group("untouched", &["erin"], &["erin"])),
    );
    // "leads" is a child of "eng": VinylDNS cannot nest, so its members become eng's.
    let groups = group("eng", &["alice", "bob"], &["leads"], &["alice"])
        + &group("leads", &["carol"], &[], &["carol"]);
    let w = world(&s, &groups, "").await;

    let first = w.plan().await;
    let plan = text(&first);
    assert!(plan.contains("+ create group \"leads\""), "{plan}");
    assert!(plan.contains("+ member \"carol\" in \"eng\""), "{plan}");
    assert!(plan.contains("- member \"dave\" in \"eng\""), "{plan}");
    assert!(writes(&w).is_empty(), "planning wrote something");

    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    assert_eq!(
        w.sim.vinyldns.member_names("eng"),
        ["alice", "bob", "carol"]
    );
    assert_eq!(w.sim.vinyldns.admin_names("eng"), ["alice"]);
    let eng = w.sim.vinyldns.group("eng").expect("eng");
    assert_eq!(eng.description.as_deref(), Some("eng team"));
    // The simulator made roster's account an admin of "leads"; roster put that right.
    assert_eq!(w.sim.vinyldns.member_names("leads"), ["carol"]);
    assert_eq!(w.sim.vinyldns.admin_names("leads"), ["carol"]);
    assert_eq!(w.sim.vinyldns.member_names("untouched"), ["erin"]);

    let again = w.plan().await;
    assert!(!again.any_changes(), "{}", text(&again));
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[tokio::test]
async fn a_500_on_the_second_page_of_groups_means_zero_writes_and_exit_1() {
    let mut extra = String::new();
    let mut groups = String::new();
    for i in 0..150 {
        extra += &seed_group(&format!("g{i:03}"), &["alice"], &["alice"]);
        groups += &group(&format!("g{i:03}"), &["alice", "bob"], &[], &["alice"]);
    }
    let w = world(&seed(&["alice", "bob"], &extra), &groups, "retries = 1").await;
    w.sim.vinyldns.set_faults(Faults {
        error_rate: 1.0,
        fail_path: Some("startFrom=".into()),
        ..Faults::default()
    });
    let out = w.roster(&["apply"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let all = stdout(&out) + &stderr(&out);
    assert!(all.contains("dns: GET /groups: 500"), "{all}");
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
}

#[tokio::test]
async fn a_page_that_repeats_its_cursor_is_an_incomplete_read() {
    let mut extra = String::new();
    for i in 0..120 {
        extra += &seed_group(&format!("g{i:03}"), &["alice"], &["alice"]);
    }
    let w = world(
        &seed(&["alice", "bob"], &extra),
        &group("g000", &["alice", "bob"], &[], &["alice"]),
        "",
    )
    .await;
    let mut b = w.sim.vinyldns.behaviour();
    b.repeat_group_pages = true;
    w.sim.vinyldns.set_behaviour(b);
    let report = w.apply(None).await;
    let TargetOutcome::ObserveFailed(e) = &report.targets[0].outcome else {
        panic!(
            "expected a failed read, got {:?}",
            report.targets[0].outcome
        );
    };
    assert!(e.to_string().contains("incomplete read"), "{e}");
    assert!(writes(&w).is_empty());
}

#[tokio::test]
async fn more_removals_than_max_deletes_exits_3_and_writes_nothing() {
    let members: Vec<String> = (0..101).map(|i| format!("u{i:03}")).collect();
    let mut all: Vec<&str> = members.iter().map(String::as_str).collect();
    all.push("alice");
    let w = world(
        &seed(&all, &seed_group("big", &all, &["alice"])),
        &group("big", &["alice"], &[], &["alice"]),
        "max_deletes = 100",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("more than max_deletes = 100"),
        "{}",
        stdout(&out)
    );
    assert!(writes(&w).is_empty());
    assert_eq!(w.sim.vinyldns.member_names("big").len(), 102);
}

#[tokio::test]
async fn an_empty_source_against_managed_groups_is_refused() {
    let w = world(
        &seed(&["alice"], &seed_group("a", &["alice"], &["alice"])),
        "",
        "groups = [\"*\"]\nprune = true",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(writes(&w).is_empty());
    assert!(w.sim.vinyldns.group("a").is_some());
}

#[tokio::test]
async fn a_connection_dropped_after_a_create_is_rechecked_not_duplicated() {
    let w = world(
        &seed(&["alice", "bob"], ""),
        &group("new", &["alice", "bob"], &[], &["alice"]),
        "",
    )
    .await;
    w.sim.vinyldns.set_faults(Faults {
        drop_after_write: 1,
        ..Faults::default()
    });
    let report = w.apply(None).await;
    let r = applied(&report);
    assert_eq!(r.failures(), 0, "{report:?}");
    assert!(
        matches!(&r.outcomes[&0], Outcome::AlreadyDone(why) if why.contains("earlier attempt")),
        "{:?}",
        r.outcomes[&0]
    );
    let posts = writes(&w).iter().filter(|c| c.starts_with("POST ")).count();
    assert_eq!(posts, 1, "the create was sent twice");
    assert_eq!(w.sim.vinyldns.groups().len(), 1);
    // The recheck replaced the lists, so roster's own admin seat is gone too.
    assert_eq!(w.sim.vinyldns.member_names("new"), ["alice", "bob"]);
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_409_on_create_adopts_the_group_someone_else_made() {
    let w = world(
        &seed(&["alice", "bob", "zed"], ""),
        &group("ops", &["alice", "bob"], &[], &["alice"]),
        "",
    )
    .await;
    let before = w.plan().await;
    assert!(text(&before).contains("+ create group \"ops\""));
    // Someone creates it (differently cased: VinylDNS names ignore case) between plan and apply.
    let config = w.config();
    let t = connector(&config);
    let desired = roster::source::load_desired(&config.sources)
        .await
        .expect("desired");
    let policy = policy(&desired);
    let observed = t
        .observe(&policy.scope, &desired.user_keys())
        .await
        .expect("observe");
    let plan = roster::plan::plan(
        "dns",
        "vinyldns",
        &desired,
        &observed,
        &policy,
        t.capabilities(),
    );
    let calls = t.compile(&plan, &observed);
    w.sim
        .vinyldns
        .insert_group("OPS", "other@example.com", "zed");
    let report = Executor::new(RetryPolicy::default(), std::num::NonZeroUsize::MIN)
        .execute(&t, calls)
        .await;
    assert!(
        matches!(&report.outcomes[&0], Outcome::AlreadyDone(why) if why.contains("adopted")),
        "{report:?}"
    );
    assert_eq!(w.sim.vinyldns.groups().len(), 1);
    assert_eq!(w.sim.vinyldns.member_names("OPS"), ["alice", "bob"]);
    assert_eq!(w.sim.vinyldns.admin_names("OPS"), ["alice"]);
}

fn connector(config: &roster::config::Config) -> VinylDnsTarget {
    let t = &config.targets[0];
    let roster::config::TargetKind::VinylDns(c) = &t.kind else {
        panic!("not a VinylDNS target");
    };
    VinylDnsTarget::new(&t.name, c, reqwest::Client::new(), t.concurrency)
}

fn policy(desired: &roster::model::Desired) -> roster::plan::Policy {
    roster::plan::Policy {
        scope: roster::plan::Scope::new(None, desired, true).expect("scope"),
        membership: roster::plan::MembershipMode::Authoritative,
        prune: false,
        max_deletes: 10_000,
        allow_empty_source: false,
    }
}

#[tokio::test]
async fn a_member_added_by_someone_else_between_plan_and_put_is_kept() {
    let w = world(
        &seed(
            &["alice", "bob", "carol"],
            &seed_group("ops", &["alice"], &["alice"]),
        ),
        &group("ops", &["alice", "bob"], &[], &["alice"]),
        "membership = \"additive\"",
    )
    .await;
    let config = w.config();
    let t = connector(&config);
    let desired = roster::source::load_desired(&config.sources)
        .await
        .expect("desired");
    let policy = policy(&desired);
    let observed = t
        .observe(&policy.scope, &desired.user_keys())
        .await
        .expect("observe");
    let plan = roster::plan::plan(
        "dns",
        "vinyldns",
        &desired,
        &observed,
        &policy,
        t.capabilities(),
    );
    let calls = t.compile(&plan, &observed);
    assert_eq!(calls.len(), 1);
    // Another administrator adds carol after roster read the group.
    assert!(w.sim.vinyldns.add_member("ops", "carol"));
    let report = Executor::new(RetryPolicy::default(), std::num::NonZeroUsize::MIN)
        .execute(&t, calls)
        .await;
    assert_eq!(report.failures(), 0, "{report:?}");
    assert_eq!(
        w.sim.vinyldns.member_names("ops"),
        ["alice", "bob", "carol"]
    );
    let gets: Vec<String> = w.sim.vinyldns.calls();
    let n = gets.len();
    assert!(
        gets[n - 2].starts_with("GET /groups/"),
        "no fresh read before the PUT: {gets:?}"
    );
    assert!(gets[n - 1].starts_with("PUT /groups/"), "{gets:?}");
}

#[tokio::test]
async fn an_error_and_throttle_run_converges_and_the_following_plan_is_empty() {
    let mut extra = String::new();
    let mut groups = String::new();
    for i in 0..12 {
        extra += &seed_group(&format!("t{i:02}"), &["erin"], &["erin"]);
        groups += &group(
            &format!("t{i:02}"),
            &["alice", "bob", "carol"],
            &[],
            &["alice"],
        );
    }
    for i in 0..4 {
        groups += &group(&format!("new{i}"), &["dave"], &["t00"], &["dave"]);
    }
    let w = world(
        &seed(&["alice", "bob", "carol", "dave", "erin"], &extra),
        &groups,
        "retries = 1",
    )
    .await;
    w.sim.vinyldns.set_faults(Faults {
        error_rate: 0.3,
        throttle_rate: 0.1,
        retry_after: Duration::from_secs(0),
        drop_after_write: 3,
        latency: Some(Duration::from_millis(2)),
        seed: 7,
        ..Faults::default()
    });
    let _ = w.apply(None).await;
    w.sim.vinyldns.set_faults(Faults::default());
    let second = w.apply(None).await;
    assert!(!second.any_failed(), "{second:?}");
    let third = w.plan().await;
    assert!(!third.any_changes(), "{}", text(&third));
    let names: Vec<String> = w
        .sim
        .vinyldns
        .groups()
        .into_iter()
        .map(|g| g.name)
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicates: {names:?}");
    assert_eq!(names.len(), 16);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let w = world(
        &seed(&["alice", "bob"], &seed_group("g", &["alice"], &["alice"])),
        &group("g", &["alice", "bob"], &[], &["alice"]),
        "concurrency = 1",
    )
    .await;
    // Throttle every call to the group until the first 429 has been answered.
    let id = w.sim.vinyldns.group("g").expect("g").id;
    let started = Instant::now();
    let sim = w.sim.vinyldns.clone();
    let plan = w.plan().await;
    assert!(plan.any_changes());
    sim.clear_calls();
    sim.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after: Duration::from_secs(1),
        fail_path: Some(format!("/groups/{id}")),
        ..Faults::default()
    });
    let lifter = {
        let sim = sim.clone();
        let id = id.clone();
        tokio::spawn(async move {
            for _ in 0..400 {
                if sim
                    .calls()
                    .iter()
                    .any(|c| c.contains(&format!("/groups/{id}")))
                {
                    sim.set_faults(Faults::default());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // The observe's read of /groups/{id}/members is the first call throttled: it must wait.
    let report = w.apply(None).await;
    lifter.await.expect("lifter");
    assert!(!report.any_failed(), "{report:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "retried before Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(w.sim.vinyldns.member_names("g"), ["alice", "bob"]);
}

#[tokio::test]
async fn there_is_no_session_to_expire_every_request_is_signed_on_its_own() {
    let mut groups = String::new();
    for i in 0..5 {
        groups += &group(&format!("g{i}"), &["alice", "bob"], &[], &["alice"]);
    }
    let w = world(&seed(&["alice", "bob"], ""), &groups, "").await;
    w.sim.vinyldns.set_faults(Faults {
        expire_tokens_after: 2,
        ..Faults::default()
    });
    let report = w.apply(None).await;
    assert!(!report.any_failed(), "{report:?}");
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn one_failed_change_does_not_stop_the_others_and_the_error_says_where() {
    // roster is no super user here: it may change "b" (it is b's admin) but not "a".
    let s = seed_as(
        &["alice", "bob"],
        &(seed_group("a", &["alice"], &["alice"]) + &seed_group("b", &["roster"], &["roster"])),
        false,
    );
    let w = world(
        &s,
        &(group("a", &["alice", "bob"], &[], &["alice"])
            + &group("b", &["roster", "bob"], &[], &["roster"])),
        "",
    )
    .await;
    let a_id = w.sim.vinyldns.group("a").expect("a").id;
    let out = w.roster(&["apply"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let all = stdout(&out);
    let line = all
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_default();
    assert!(line.contains(&format!("dns: PUT /groups/{a_id}")), "{all}");
    assert!(line.contains("(group \"a\")"), "{all}");
    assert!(
        line.contains("403") && line.contains("Not authorized"),
        "{all}"
    );
    assert_eq!(w.sim.vinyldns.member_names("b"), ["bob", "roster"]);
    assert_eq!(w.sim.vinyldns.member_names("a"), ["alice"]);
}

#[tokio::test]
async fn a_group_without_an_email_is_a_validation_error_at_its_origin() {
    let groups = "[[group]]\nname = \"ops\"\nmembers = [\"alice\"]\n";
    let w = world(&seed(&["alice"], ""), groups, "").await;
    let out = w.roster(&["plan"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let all = stdout(&out) + &stderr(&out);
    assert!(
        all.contains("groups.toml:1:1: group \"ops\" has no e-mail"),
        "{all}"
    );
    assert!(w.sim.vinyldns.calls().is_empty(), "the target was read");
}

#[tokio::test]
async fn unknown_users_are_warnings_not_failures() {
    let w = world(
        &seed(&["alice"], ""),
        &group("g", &["alice", "ghost"], &[], &["alice"]),
        "",
    )
    .await;
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("user \"ghost\" does not exist"),
        "{}",
        stdout(&out)
    );
    let out = w.roster(&["apply"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(w.sim.vinyldns.member_names("g"), ["alice"]);
}

#[tokio::test]
async fn secrets_never_reach_logs_plans_or_debug_output() {
    let w = world(
        &seed(&["alice"], ""),
        &group("g", &["alice"], &[], &["alice"]),
        "",
    )
    .await;
    let config = w.config();
    assert!(!format!("{config:?}").contains(SECRET));
    assert!(!format!("{:?}", connector(&config)).contains(SECRET));
    for args in [
        &["plan"][..],
        &["plan", "--format", "json"][..],
        &["apply"][..],
    ] {
        let out = support::roster_at(&w.config_path(), args, &[("RUST_LOG", "trace")]).await;
        assert!(
            !stdout(&out).contains(SECRET),
            "{args:?} printed the secret"
        );
        assert!(!stderr(&out).contains(SECRET), "{args:?} logged the secret");
    }
    // A wrong secret key fails closed with a clear message, without echoing it.
    std::fs::write(w.dir.path().join("secret"), "wrong-secret-123\n").expect("write");
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1));
    let all = stdout(&out) + &stderr(&out);
    assert!(
        all.contains("Request signature could not be validated"),
        "{all}"
    );
    assert!(!all.contains("wrong-secret-123"), "{all}");
}

#[tokio::test]
async fn thousand_member_changes_take_the_fewest_calls() {
    // 10 existing groups of 50 members plus an admin; the desired state swaps all 50 members of
    // each: 500 additions + 500 removals = 1,000 member changes.
    let mut users: Vec<String> = vec!["admin".into()];
    let mut extra = String::new();
    let mut groups = String::new();
    for g in 0..10 {
        let old: Vec<String> = (0..50).map(|i| format!("old{g}-{i:02}")).collect();
        let new: Vec<String> = (0..50).map(|i| format!("new{g}-{i:02}")).collect();
        let mut have: Vec<&str> = old.iter().map(String::as_str).collect();
        have.push("admin");
        let mut want: Vec<&str> = new.iter().map(String::as_str).collect();
        want.push("admin");
        extra += &seed_group(&format!("g{g}"), &have, &["admin"]);
        groups += &group(&format!("g{g}"), &want, &[], &["admin"]);
        users.extend(old.into_iter().chain(new));
    }
    let u: Vec<&str> = users.iter().map(String::as_str).collect();
    let w = world(&seed(&u, &extra), &groups, "max_deletes = 1000").await;
    // Descriptions differ from the seed's; set them so the plan holds member changes only.
    let plan = w.plan().await;
    let p = plan.targets[0].plan.as_ref().expect("plan");
    let member_changes = p
        .changes
        .iter()
        .filter(|c| matches!(c.op(), "add_member" | "remove_member"))
        .count();
    assert_eq!(member_changes, 1000);
    w.sim.vinyldns.clear_calls();
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let calls = w.sim.vinyldns.calls();
    // The apply observes again before it writes; count only what the apply itself sent: after
    // the observe's reads, each changed group costs one fresh GET /groups/{id} (the read the
    // design requires before a full replace) and one PUT. VinylDNS has no add or remove call, so
    // one PUT per changed group is the minimum: 10 writes.
    let puts = calls.iter().filter(|c| c.starts_with("PUT ")).count();
    let other_writes = calls
        .iter()
        .filter(|c| !c.starts_with("GET ") && !c.starts_with("PUT "))
        .count();
    let fresh_reads = calls
        .iter()
        .filter(|c| c.starts_with("GET /groups/") && !c.contains("/members") && !c.contains('?'))
        .count();
    let minimum = 10;
    eprintln!(
        "vinyldns: 1000 member changes: {} write calls (+{fresh_reads} reads), minimum {minimum}",
        puts + other_writes
    );
    assert_eq!(puts + other_writes, minimum, "{calls:?}");
    assert_eq!(fresh_reads, 10, "one fresh read per full replace");
    for g in 0..10 {
        assert_eq!(w.sim.vinyldns.member_names(&format!("g{g}")).len(), 51);
    }
    assert!(!w.plan().await.any_changes());
}

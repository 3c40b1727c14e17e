//! End to end against the VinylDNS simulator over real HTTP, every request signed with SigV4:
//! plan, apply, the safety rules, and convergence after faults. Each test names the rule it would
//! catch breaking.

mod support;

use roster::exec::Outcome;
use roster::reconcile::TargetOutcome;
use roster::sim::SimKind;
use roster::sim::control::SimControl as _;
use support::World;
use support::harness::{Harness, VinylDns, quoted, vinyldns_seed};
use support::suite::{
    self, Case, DroppedCreate, EmptySource, Expiring, FailedRead, FaultyRun, OneFailure,
    RetryAfter, SafetyCase, TooManyRemovals, Warnings, WrongSecret, applied, nothing, text,
};

/// A seed whose roster account is a super user, with these users and extra seed text.
fn seed(users: &[&str], extra: &str) -> String {
    seed_as(users, extra, true)
}

fn seed_as(users: &[&str], extra: &str, roster_is_super: bool) -> String {
    vinyldns_seed(users, &[], roster_is_super) + extra
}

fn seed_group(name: &str, members: &[&str], admins: &[&str]) -> String {
    format!(
        "[[vinyldns.group]]\nname = {name:?}\nemail = \"{name}@example.com\"\nmembers = [{}]\n\
         admins = [{}]\n\n",
        quoted(members),
        quoted(admins)
    )
}

/// A desired group with its `[group.vinyldns]` table.
fn group(name: &str, members: &[&str], children: &[&str], admins: &[&str]) -> String {
    format!(
        "[[group]]\nname = {name:?}\ndescription = \"{name} team\"\nmembers = [{}]\nchildren = [{}]\n\
         [group.vinyldns]\nemail = \"{name}@example.com\"\nadmins = [{}]\n\n",
        quoted(members),
        quoted(children),
        quoted(admins)
    )
}

async fn world(seed: &str, groups: &str, extra: &str) -> World {
    World::with_target(SimKind::VinylDns, seed, &VinylDns::keys(), groups, extra).await
}

fn writes(w: &World) -> Vec<String> {
    VinylDns::write_calls(w)
}

/// Makes the simulator answer `status` to every call whose path and query contain `path`.
fn fail_every(w: &World, status: u16, path: &str) {
    w.sim.vinyldns.set_faults(roster::sim::faults::Faults {
        error_rate: 1.0,
        error_status: status,
        fail_path: Some(path.into()),
        ..Default::default()
    });
}

safety_suite!(VinylDns);

impl SafetyCase for VinylDns {
    fn failed_read() -> Case<FailedRead> {
        Case::Run(FailedRead {
            groups: 150,
            // An older server's page limit (roster falls back to it), so that the list takes
            // two pages and the second one fails.
            fail_path: |w| {
                let mut b = w.sim.vinyldns.behaviour();
                b.group_page_limit = 100;
                w.sim.vinyldns.set_behaviour(b);
                "startFrom=".into()
            },
            says: &["dns: GET /groups: 500"],
        })
    }

    fn too_many_removals() -> Case<TooManyRemovals> {
        // alice stays: a VinylDNS group needs an admin. The 101 removals are one PUT.
        Case::Run(TooManyRemovals {
            keep: &["alice"],
            raised_writes: Some(1),
        })
    }

    fn empty_source() -> Case<EmptySource> {
        Case::Run(EmptySource { builtin: None })
    }

    /// The recheck replaced the lists and kept roster's own admin seat, which the server gave it.
    fn dropped_create() -> Case<DroppedCreate> {
        Case::Run(DroppedCreate {
            is_create: |c| c.starts_with("POST "),
            then: |w| {
                assert_eq!(w.sim.vinyldns.groups().len(), 1);
                assert_eq!(w.sim.vinyldns.admin_names("fresh"), ["alice", "roster"]);
            },
        })
    }

    fn faulty_run() -> Case<FaultyRun> {
        // VinylDNS cannot nest: t00's members become the new groups' own.
        Case::Run(FaultyRun {
            new_members: &["alice", "bob", "carol", "dave"],
            then: |w| assert_eq!(w.sim.vinyldns.groups().len(), 16),
        })
    }

    async fn expiring_credentials() -> Case<Expiring> {
        Case::Skip(
            "VinylDNS signs every request with the keys themselves (SigV4): there is no session \
             or token to expire",
        )
    }

    async fn retry_after() -> Case<RetryAfter> {
        let w = world(
            &seed(&["alice", "bob"], &seed_group("g", &["alice"], &["alice"])),
            &group("g", &["alice", "bob"], &[], &["alice"]),
            "concurrency = 1",
        )
        .await;
        let plan = w.plan().await;
        assert!(plan.any_changes());
        w.sim.vinyldns.clear_calls();
        // Throttle every call to the group until the first 429 has been answered: the observe's
        // read of /groups/{id}/members is the first call throttled, and it must wait.
        let id = w.sim.vinyldns.group("g").expect("g").id;
        let path = format!("/groups/{id}");
        Case::Run(RetryAfter {
            world: w,
            fail_path: path.clone(),
            lift_when: Box::new(move |c| c.contains(&path)),
            group: "g",
            member: "bob",
            then: |w| assert_eq!(w.sim.vinyldns.member_names("g"), ["alice", "bob"]),
        })
    }

    async fn one_failure() -> Case<OneFailure> {
        // "a" owns a record set: VinylDNS refuses to delete it (400), which the API does not let
        // roster see beforehand. "b" is updated all the same.
        let s = seed(
            &["alice", "bob"],
            &(seed_group("a", &["alice"], &["alice"])
                + &seed_group("b", &["roster"], &["roster"])
                + "[[vinyldns.zone]]\nname = \"example.com.\"\nadmin_group = \"b\"\n\
                   record_owners = [\"a\"]\n\n"),
        );
        let w = world(
            &s,
            &group("b", &["roster", "bob"], &[], &["roster"]),
            "groups = [\"*\"]\nprune = true",
        )
        .await;
        let a_id = w.sim.vinyldns.group("a").expect("a").id;
        Case::Run(OneFailure {
            world: w,
            line_has: vec![
                format!("dns: DELETE /groups/{a_id}"),
                "(group \"a\")".into(),
                "400".into(),
                "a is the owner for a record set".into(),
            ],
            failing: ("a", &["alice"]),
            other: ("b", &["bob"]),
        })
    }

    async fn warnings() -> Case<Warnings> {
        let w = world(
            &seed(&["alice"], ""),
            &group("g", &["alice", "ghost"], &[], &["alice"]),
            "",
        )
        .await;
        Case::Run(Warnings {
            world: w,
            warnings: &["user \"ghost\" does not exist"],
            group: "g",
            members: &["alice"],
            then: nothing,
        })
    }

    async fn secrets() -> Case<Vec<World>> {
        Case::Run(vec![one_group_world().await])
    }

    /// A wrong secret key fails closed with a clear message, without echoing it.
    async fn wrong_secret() -> Case<WrongSecret> {
        Case::Run(WrongSecret {
            world: one_group_world().await,
            wrong: "wrong-secret-123",
            says: &["Request signature could not be validated"],
            then: nothing,
        })
    }
}

/// The group g of alice, on a target that holds nothing else.
async fn one_group_world() -> World {
    world(
        &seed(&["alice"], ""),
        &group("g", &["alice"], &[], &["alice"]),
        "",
    )
    .await
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
    // VinylDNS made roster's account an admin and a member of "leads": roster keeps that seat
    // (without it, an account that is no super user could not change the group again), sends
    // no second call to remove it, and does not show it as drift.
    assert_eq!(w.sim.vinyldns.member_names("leads"), ["carol", "roster"]);
    assert_eq!(w.sim.vinyldns.admin_names("leads"), ["carol", "roster"]);
    assert_eq!(writes(&w).len(), 2, "{:?}", writes(&w));
    assert_eq!(w.sim.vinyldns.member_names("untouched"), ["erin"]);

    let again = w.plan().await;
    assert!(!again.any_changes(), "{}", text(&again));
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
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
    // An older server's page limit, which roster falls back to: 121 groups are two pages.
    b.group_page_limit = 100;
    w.sim.vinyldns.set_behaviour(b);
    let report = w.apply(None).await;
    let TargetOutcome::ObserveFailed(e) = &report.targets[0].outcome else {
        panic!(
            "expected a failed read, got {:?}",
            report.targets[0].outcome
        );
    };
    assert!(e.to_string().contains("incomplete read"), "{e}");
    // The first repeated item is named, by its name rather than its id.
    assert!(e.to_string().contains("listed group \"g000\" twice"), "{e}");
    assert!(writes(&w).is_empty());
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
    let suite::Staged { report, .. } = suite::plan_then::<VinylDns>(&w, async |w: &World| {
        w.sim
            .vinyldns
            .insert_group("OPS", "other@example.com", "zed");
    })
    .await;
    assert!(
        matches!(&report.outcomes[&0], Outcome::AlreadyDone(why) if why.contains("adopted")),
        "{report:?}"
    );
    assert_eq!(w.sim.vinyldns.groups().len(), 1);
    // Found by one listing filtered by its name, across every group (not only the account's).
    let calls = w.sim.vinyldns.calls();
    assert!(
        calls.iter().any(|c| c.starts_with("GET /groups?")
            && c.contains("groupNameFilter=ops")
            && c.contains("ignoreAccess=true")),
        "{calls:?}"
    );
    // Adopting adds and removes nobody: the plan never saw zed.
    assert_eq!(w.sim.vinyldns.member_names("OPS"), ["alice", "bob", "zed"]);
    assert_eq!(w.sim.vinyldns.admin_names("OPS"), ["alice", "zed"]);
    // The next plan shows the removal, where the deletion limit and the reader see it.
    let next = text(&w.plan().await);
    assert!(next.contains("- member \"zed\" in \"OPS\""), "{next}");
    assert!(
        next.contains("admins [\"alice\",\"zed\"] → [\"alice\"]"),
        "{next}"
    );
    assert!(next.contains("name \"OPS\" → \"ops\""), "{next}");
    let applied = w.apply(None).await;
    assert!(!applied.any_failed());
    assert_eq!(w.sim.vinyldns.member_names("ops"), ["alice", "bob"]);
    assert_eq!(w.sim.vinyldns.admin_names("ops"), ["alice"]);
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_member_added_by_someone_else_between_plan_and_put_is_kept() {
    // Membership is authoritative: carol is kept because the plan never said to remove her.
    let w = world(
        &seed(
            &["alice", "bob", "carol"],
            &seed_group("ops", &["alice"], &["alice"]),
        ),
        &group("ops", &["alice", "bob"], &[], &["alice"]),
        "",
    )
    .await;
    let staged = suite::plan_then::<VinylDns>(&w, async |w: &World| {
        // Another administrator adds carol after roster read the group.
        assert!(w.sim.vinyldns.add_member("ops", "carol"));
    })
    .await;
    assert_eq!(staged.calls, 1);
    let report = staged.report;
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
async fn a_group_without_an_email_is_a_validation_error_at_its_origin() {
    let groups = "[[group]]\nname = \"ops\"\nmembers = [\"alice\"]\n";
    let w = world(&seed(&["alice"], ""), groups, "").await;
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    let all = suite::both(&out);
    assert!(
        all.contains("groups.toml:1:1: group \"ops\" has no e-mail"),
        "{all}"
    );
    assert!(w.sim.vinyldns.calls().is_empty(), "the target was read");
}

/// `n` groups `g0`.. of `members` users each plus an admin, and a desired state that swaps
/// every member for another (`old{g}-{i}` for `new{g}-{i}`): the users, the seeded groups and the
/// desired groups.
fn swapping(n: usize, members: usize) -> (Vec<String>, String, String) {
    let mut users: Vec<String> = vec!["admin".into()];
    let (mut seeded, mut desired) = (String::new(), String::new());
    for g in 0..n {
        let old: Vec<String> = (0..members).map(|i| format!("old{g}-{i:02}")).collect();
        let new: Vec<String> = (0..members).map(|i| format!("new{g}-{i:02}")).collect();
        let have: Vec<&str> = old.iter().map(String::as_str).chain(["admin"]).collect();
        let want: Vec<&str> = new.iter().map(String::as_str).chain(["admin"]).collect();
        seeded += &seed_group(&format!("g{g}"), &have, &["admin"]);
        desired += &group(&format!("g{g}"), &want, &[], &["admin"]);
        users.extend(old.into_iter().chain(new));
    }
    (users, seeded, desired)
}

#[tokio::test]
async fn thousand_member_changes_take_the_fewest_calls() {
    // 10 existing groups of 50 members plus an admin; the desired state swaps all 50 members of
    // each: 500 additions + 500 removals = 1,000 member changes.
    let (u, extra, groups) = swapping(10, 50);
    let w = world(
        &seed(&support::strs(&u), &extra),
        &groups,
        "max_deletes = 1000",
    )
    .await;
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
        .filter(|c| {
            c.starts_with("GET /groups/")
                && !c.contains("/members")
                && !c.contains("/valid/")
                && !c.contains('?')
        })
        .count();
    let reads = calls.iter().filter(|c| c.starts_with("GET ")).count();
    let minimum = 10;
    eprintln!(
        "vinyldns: 1000 member changes: {} write calls (+{fresh_reads} fresh reads; {reads} reads \
         in all, the observe's included), minimum {minimum}",
        puts + other_writes
    );
    assert_eq!(puts + other_writes, minimum, "{calls:?}");
    assert_eq!(fresh_reads, 10, "one fresh read per full replace");
    for g in 0..10 {
        assert_eq!(w.sim.vinyldns.member_names(&format!("g{g}")).len(), 51);
    }
    assert!(!w.plan().await.any_changes());
}

/// An update reads its group afresh and then replaces it: two requests. The apply starts the
/// last updates of the stage together (the executor's tests time it), yet the server never has
/// more than `concurrency` of roster's requests at once, and each group is read once, then
/// replaced.
#[tokio::test]
async fn chained_updates_never_have_more_requests_out_than_the_concurrency() {
    let (u, extra, groups) = swapping(10, 1);
    let w = world(
        &seed(&support::strs(&u), &extra),
        &groups,
        "concurrency = 4\nmax_deletes = 10",
    )
    .await;
    let plan = text(&w.plan().await);
    assert_eq!(plan.matches("+ member \"new").count(), 10, "{plan}");
    w.sim.vinyldns.set_faults(roster::sim::faults::Faults {
        latency: Some(std::time::Duration::from_millis(20)),
        ..Default::default()
    });
    let before = w.sim.vinyldns.calls().len();
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let peak = w.sim.vinyldns.peak_in_flight();
    assert_eq!(peak, 4, "{peak} requests at once, at concurrency 4");
    let sent = &w.sim.vinyldns.calls()[before..];
    for g in 0..10 {
        let id = w.sim.vinyldns.group(&format!("g{g}")).expect("seeded").id;
        let mine: Vec<&String> = sent
            .iter()
            .filter(|c| c.ends_with(&format!("/groups/{id}")))
            .collect();
        assert_eq!(
            mine,
            [&format!("GET /groups/{id}"), &format!("PUT /groups/{id}")],
            "{sent:?}"
        );
        assert_eq!(w.sim.vinyldns.member_names(&format!("g{g}")).len(), 2);
    }
    assert!(!w.plan().await.any_changes());
}

/// Plan output and exit code of `roster plan`.
async fn plan_out(w: &World) -> (Option<i32>, String) {
    let out = w.roster(&["plan"]).await;
    (out.status.code(), suite::both(&out))
}

#[tokio::test]
async fn user_names_with_reserved_and_non_ascii_characters_are_planned_and_applied() {
    let names = ["jane@corp.com", "o'neil", "mary ann", "zoë", "a+b", "50%"];
    let mut users = vec!["alice"];
    users.extend(names);
    let w = world(
        &seed(&users, &seed_group("ops", &["alice"], &["alice"])),
        &group(
            "ops",
            &[&["alice"][..], &names[..]].concat(),
            &[],
            &["alice", "jane@corp.com"],
        ),
        "",
    )
    .await;
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let mut want: Vec<&str> = users.clone();
    want.sort();
    assert_eq!(w.sim.vinyldns.member_names("ops"), want);
    assert_eq!(
        w.sim.vinyldns.admin_names("ops"),
        ["alice", "jane@corp.com"]
    );
    assert!(
        w.sim
            .vinyldns
            .calls()
            .contains(&"GET /users/jane@corp.com".to_owned()),
        "{:?}",
        w.sim.vinyldns.calls()
    );
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
}

#[tokio::test]
async fn a_401_on_one_path_after_others_passed_names_the_signed_path_not_the_keys() {
    let w = world(
        &seed(&["alice", "jane@corp.com"], ""),
        &group("ops", &["alice", "jane@corp.com"], &[], &["alice"]),
        "",
    )
    .await;
    fail_every(&w, 401, "/users/jane@");
    let (code, out) = plan_out(&w).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the server refused the signature of GET /users/jane@corp.com"),
        "{out}"
    );
    assert!(
        out.contains("requests signed with the same keys succeeded"),
        "{out}"
    );
    assert!(!out.contains("check access_key"), "{out}");
}

#[tokio::test]
async fn admins_are_compared_without_case_or_order_and_the_second_plan_is_empty() {
    let w = world(
        &seed(
            &["alice", "jwilson", "bob"],
            &seed_group("ops", &["alice", "jwilson"], &["alice", "jwilson"]),
        ),
        &group(
            "ops",
            &["JWilson", "alice", "bob"],
            &[],
            &["JWilson", "alice"],
        ),
        "",
    )
    .await;
    let first = text(&w.plan().await);
    assert!(first.contains("+ member \"bob\" in \"ops\""), "{first}");
    assert!(!first.contains("admins"), "{first}");
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let again = w.plan().await;
    assert!(!again.any_changes(), "{}", text(&again));
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
}

#[tokio::test]
async fn ids_without_users_are_left_alone_and_the_target_stays_plannable() {
    let w = world(
        &seed(
            &["alice", "bob"],
            &seed_group("ops", &["alice"], &["alice"]),
        ),
        &group("ops", &["alice", "bob"], &[], &["bob"]),
        "",
    )
    .await;
    // The server stores an unknown admin id unchecked; its members list leaves it out.
    assert!(w.sim.vinyldns.add_unknown_admin("ops", "0e1f-no-such-user"));
    let plan = text(&w.plan().await);
    assert!(plan.contains("+ member \"bob\" in \"ops\""), "{plan}");
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    assert!(
        w.sim
            .vinyldns
            .member_ids("ops")
            .contains("0e1f-no-such-user")
    );
    let g = w.sim.vinyldns.group("ops").expect("ops");
    assert!(g.admins.contains("0e1f-no-such-user"), "left alone: {g:?}");
    assert_eq!(w.sim.vinyldns.admin_names("ops"), ["bob"]);
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
}

#[tokio::test]
async fn a_create_whose_admins_are_all_unknown_is_a_plan_error() {
    let w = world(
        &seed(&["alice"], ""),
        &(group("lost", &["alice"], &[], &["ghost"]) + &group("fine", &["alice"], &[], &["alice"])),
        "",
    )
    .await;
    let (code, out) = plan_out(&w).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("create group \"lost\": none of its admins (ghost) is a VinylDNS user"),
        "{out}"
    );
    let report = w.apply(None).await;
    assert!(report.any_failed(), "{report:?}");
    assert!(w.sim.vinyldns.group("lost").is_none());
    assert!(w.sim.vinyldns.group("fine").is_some());
}

#[tokio::test]
async fn an_account_that_is_no_super_user_keeps_managing_the_groups_it_creates() {
    let s = seed_as(
        &["alice", "bob", "carol"],
        &seed_group("other", &["carol"], &["carol"]),
        false,
    );
    let w = world(&s, &group("team", &["alice"], &[], &["alice"]), "").await;
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    // roster kept the seat VinylDNS gave it, and the next plan does not show it.
    assert_eq!(w.sim.vinyldns.admin_names("team"), ["alice", "roster"]);
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
    // A later change still goes through: roster is still an admin of its group.
    w.write_groups(&group("team", &["alice", "bob"], &[], &["bob"]));
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    assert_eq!(w.sim.vinyldns.admin_names("team"), ["bob", "roster"]);
    assert_eq!(
        w.sim.vinyldns.member_names("team"),
        ["alice", "bob", "roster"]
    );
    // A group it does not administer is a plan error, and nothing is sent for it.
    w.write_groups(
        &(group("team", &["alice", "bob"], &[], &["bob"])
            + &group("other", &["carol", "bob"], &[], &["carol"])),
    );
    let (code, out) = plan_out(&w).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "roster's account (user \"roster\") may not change this group: VinylDNS lets only a \
             super user or an admin of the group change it, and the account is neither"
        ),
        "{out}"
    );
    w.sim.vinyldns.clear_calls();
    let _ = w.apply(None).await;
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
}

#[tokio::test]
async fn a_403_says_which_right_is_missing() {
    // roster is a member of every group and an admin of none: the API cannot tell whether it is
    // a super user, so the plan lets the change through and the server refuses it.
    let s = seed_as(
        &["alice", "bob"],
        &seed_group("other", &["alice", "roster"], &["alice"]),
        false,
    );
    let w = world(
        &s,
        &group("other", &["alice", "bob", "roster"], &[], &["alice"]),
        "",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    let all = suite::both(&out);
    assert!(
        all.contains(
            "403: Forbidden: Not authorized: VinylDNS lets only a super user or an admin of a group \
             change it; roster's account (user \"roster\") may not change \"other\""
        ),
        "{all}"
    );
}

#[tokio::test]
async fn the_servers_group_rules_are_plan_errors() {
    let mut extra = seed_group("zoned", &["alice"], &["alice"])
        + &seed_group("dotted", &["alice"], &["alice"])
        + "[[vinyldns.zone]]\nname = \"example.com.\"\nadmin_group = \"zoned\"\n\n";
    extra += "[vinyldns.behaviour]\nvalid_email_domains = [\"example.com\", \"*.example.org\"]\n\
              email_dots = 1\n";
    let w = world(&seed(&["alice", "bob"], &extra), "", "").await;
    // A stored e-mail the rules no longer allow: a membership-only PUT re-sends it.
    assert!(
        w.sim
            .vinyldns
            .set_email("dotted", "dotted@mail.example.com")
    );
    let long = "x".repeat(300);
    let desired = group("ok", &["alice"], &[], &["alice"])
        + &group("dotted", &["alice", "bob"], &[], &["alice"]).replace(
            "email = \"dotted@example.com\"",
            "email = \"dotted@mail.example.com\"",
        )
        + &group("elsewhere", &["alice"], &[], &["alice"])
            .replace("elsewhere@example.com", "elsewhere@example.net")
        + &group("wordy", &["alice"], &[], &["alice"]).replace(
            "description = \"wordy team\"",
            &format!("description = \"{long}\""),
        );
    w.write_groups(&desired);
    w.write_config("groups = [\"*\"]\nprune = true\nemail_dots = 1");
    let (code, out) = plan_out(&w).await;
    assert_eq!(code, Some(1), "{out}");
    for want in [
        "create group \"elsewhere\": VinylDNS refuses the e-mail \"elsewhere@example.net\": its \
         domain is not one the server allows (example.com, *.example.org)",
        "group \"dotted\": every update re-sends the group's stored e-mail, and \
         VinylDNS refuses the e-mail \"dotted@mail.example.com\": its domain has 2 dots, and the \
         server allows at most 1 after the @",
        "create group \"wordy\": its description has 300 characters, and VinylDNS stores at most \
         256",
        "delete group \"zoned\": VinylDNS refuses to delete a group that administers a zone, and \
         this one administers zone \"example.com.\"",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
    // The apply sends what passes and nothing refused; then only the refused remain.
    let report = w.apply(None).await;
    assert!(report.any_failed());
    assert!(w.sim.vinyldns.group("ok").is_some());
    assert!(w.sim.vinyldns.group("zoned").is_some());
    assert!(w.sim.vinyldns.group("elsewhere").is_none());
    assert_eq!(w.sim.vinyldns.member_names("dotted"), ["alice"]);
    let calls = writes(&w);
    assert_eq!(calls.len(), 1, "{calls:?}");
}

#[tokio::test]
async fn a_locked_account_is_a_403_that_says_so() {
    let w = world(
        &seed(&["alice"], "").replace(
            "[vinyldns]\nusers",
            "[vinyldns]\nlocked_users = [\"roster\"]\nusers",
        ),
        &group("g", &["alice"], &[], &["alice"]),
        "",
    )
    .await;
    let (code, out) = plan_out(&w).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("403") && out.contains("Account with username roster is locked"),
        "{out}"
    );
}

#[tokio::test]
async fn a_plan_that_would_take_a_non_super_accounts_own_admin_seat_is_refused() {
    // The desired state names roster's own user ("roster" is a member of "ops"), so its entries
    // are ordinary ones; but "team" leaves it out, which would lock it out of "team".
    let s = seed_as(
        &["alice"],
        &(seed_group("team", &["alice", "roster"], &["alice", "roster"])
            + &seed_group("ops", &["roster"], &["roster"])),
        false,
    );
    let w = world(
        &s,
        &(group("team", &["alice"], &[], &["alice"])
            + &group("ops", &["roster"], &[], &["roster"])),
        "",
    )
    .await;
    let (code, out) = plan_out(&w).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "member \"roster\" in \"team\": this would remove roster's account (user \
             \"roster\") from the admins of the group; it is no super user"
        ),
        "{out}"
    );
    let team = w.sim.vinyldns.group("team").expect("team").id;
    w.sim.vinyldns.clear_calls();
    let _ = w.apply(None).await;
    assert!(
        !writes(&w).iter().any(|c| c.contains(&team)),
        "{:?}",
        writes(&w)
    );
    assert_eq!(w.sim.vinyldns.admin_names("team"), ["alice", "roster"]);
}

#[tokio::test]
async fn a_server_that_ignores_abridged_lists_is_told_the_account_by_the_config() {
    let groups =
        group("ops", &["alice", "bob"], &[], &["alice"]) + &group("new", &["bob"], &[], &["bob"]);
    let s = seed(
        &["alice", "bob"],
        &seed_group("ops", &["alice"], &["alice"]),
    );
    for (extra, kept) in [("user = \"roster\"", true), ("", false)] {
        let w = world(&s, &groups, extra).await;
        let mut b = w.sim.vinyldns.behaviour();
        b.abridged_lists = false;
        w.sim.vinyldns.set_behaviour(b);
        let report = w.apply(None).await;
        assert_eq!(applied(&report).failures(), 0, "{report:?}");
        assert_eq!(w.sim.vinyldns.member_names("ops"), ["alice", "bob"]);
        assert_eq!(w.sim.vinyldns.admin_names("new"), ["bob", "roster"]);
        if !kept {
            // Without the user name, the server cannot tell roster which account it is: the
            // account's seat shows as drift, and a super user's is removed by the next apply.
            let plan = text(&w.plan().await);
            assert!(plan.contains("- member \"roster\" in \"new\""), "{plan}");
            let report = w.apply(None).await;
            assert_eq!(applied(&report).failures(), 0, "{report:?}");
            assert_eq!(w.sim.vinyldns.admin_names("new"), ["bob"]);
        }
        let out = w.roster(&["plan", "--detailed-exitcode"]).await;
        assert_eq!(out.status.code(), Some(0), "{extra}: {}", suite::both(&out));
    }
}

/// On a server that ignores `abridged`, the config's user name tells roster its account. When it
/// administers no group, listing its own groups tells whether it is a super user (more than it is
/// a member of) or not; one that is not may change no group it does not administer, and a plan
/// to change one is refused before anything is sent, as on a server that abridges.
#[tokio::test]
async fn an_account_named_by_the_config_to_a_server_that_does_not_abridge_is_known_no_super_user() {
    let s = seed_as(
        &["alice", "bob"],
        &(seed_group("ops", &["alice", "roster"], &["alice"])
            + &seed_group("dev", &["bob"], &["bob"])),
        false,
    );
    let groups = group("ops", &["alice", "roster"], &[], &["alice"])
        + &group("dev", &["bob", "alice"], &[], &["bob"]);
    let w = world(&s, &groups, "user = \"roster\"").await;
    let mut b = w.sim.vinyldns.behaviour();
    b.abridged_lists = false;
    w.sim.vinyldns.set_behaviour(b);
    let (code, out) = plan_out(&w).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "roster's account (user \"roster\") may not change this group: VinylDNS lets only a \
             super user or an admin of the group change it"
        ),
        "{out}"
    );
    w.sim.vinyldns.clear_calls();
    let _ = w.apply(None).await;
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
    assert_eq!(w.sim.vinyldns.member_names("dev"), ["bob"]);
}

#[tokio::test]
async fn groups_sharing_their_members_are_read_with_one_lookup_per_member() {
    let names: Vec<String> = (0..6).map(|i| format!("team{i}")).collect();
    let seeded: String = names
        .iter()
        .map(|n| seed_group(n, &["alice", "bob"], &["alice"]))
        .collect();
    let desired: String = names
        .iter()
        .map(|n| group(n, &["alice", "bob", "carol"], &[], &["alice"]))
        .collect();
    let w = world(&seed(&["alice", "bob", "carol"], &seeded), &desired, "").await;
    // An admin id that names no user: the list holds it, no lookup finds it.
    assert!(
        w.sim
            .vinyldns
            .add_unknown_admin("team0", "0e1f-no-such-user")
    );
    let before = w.sim.vinyldns.calls().len();
    let plan = text(&w.plan().await);
    let read = &w.sim.vinyldns.calls()[before..];
    for n in &names {
        assert!(
            plan.contains(&format!("+ member \"carol\" in \"{n}\"")),
            "{plan}"
        );
    }
    assert_eq!(plan.matches("+ member").count(), 6, "{plan}");
    // Six groups, three distinct ids among them (alice, bob, the unknown one) and roster's
    // own: no group's members are read, each id is looked up once.
    assert!(
        !read.iter().any(|c| c.contains("/members")),
        "a members read: {read:?}"
    );
    let lookups = read.iter().filter(|c| c.starts_with("GET /users/")).count();
    assert!(lookups <= 5, "{lookups} user lookups: {read:?}");
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    for n in &names {
        assert_eq!(
            w.sim.vinyldns.member_names(n),
            ["alice", "bob", "carol"],
            "{n}"
        );
    }
    let g = w.sim.vinyldns.group("team0").expect("team0");
    assert!(g.admins.contains("0e1f-no-such-user"), "left alone: {g:?}");
    let again = w.plan().await;
    assert!(!again.any_changes(), "{}", text(&again));
}

/// Groups that do not share their members are read group by group; an id one of them holds that
/// names no user is found all the same, reported as what roster leaves alone, and kept.
#[tokio::test]
async fn groups_that_do_not_share_are_read_one_by_one_and_their_orphans_kept() {
    let seeded = seed_group("red", &["alice", "bob"], &["alice"])
        + &seed_group("blue", &["carol", "dave"], &["carol"]);
    let desired = group("red", &["alice", "bob", "erin"], &[], &["alice"])
        + &group("blue", &["carol", "dave"], &[], &["carol"]);
    let w = world(
        &seed(&["alice", "bob", "carol", "dave", "erin"], &seeded),
        &desired,
        "",
    )
    .await;
    assert!(
        w.sim
            .vinyldns
            .add_unknown_admin("blue", "0e1f-no-such-user")
    );
    let before = w.sim.vinyldns.calls().len();
    let plan = text(&w.plan().await);
    let read = &w.sim.vinyldns.calls()[before..];
    assert_eq!(
        read.iter().filter(|c| c.contains("/members")).count(),
        2,
        "one members read per group: {read:?}"
    );
    assert!(plan.contains("+ member \"erin\" in \"red\""), "{plan}");
    assert_eq!(plan.matches("+ member").count(), 1, "{plan}");
    assert!(!plan.contains("- "), "nothing removed: {plan}");

    let o = w.export(&[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", suite::both(&o));
    let file = w.export_dir().join(format!("{}.toml", w.target_name()));
    let exported = std::fs::read_to_string(file).expect("the export");
    assert!(
        exported.contains("#   id that names no user \"0e1f-no-such-user\"\n"),
        "{exported}"
    );

    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    assert_eq!(w.sim.vinyldns.member_names("red"), ["alice", "bob", "erin"]);
    let blue = w.sim.vinyldns.group("blue").expect("blue");
    assert!(
        blue.admins.contains("0e1f-no-such-user"),
        "left alone: {blue:?}"
    );
    let again = w.plan().await;
    assert!(!again.any_changes(), "{}", text(&again));
}

/// The member ids a page names are looked up while the next pages are read, within the read's
/// calls in flight; the super-user check reads no more than it needs.
#[tokio::test]
async fn members_are_looked_up_while_the_list_is_still_being_paged() {
    // 40 users, two in each group: every id is on the first page, and more lookups than the
    // calls the read may have in flight.
    let users: Vec<String> = (0..40).map(|u| format!("u{u:02}")).collect();
    let pair = |i: usize| [users[i % 40].as_str(), users[(i + 1) % 40].as_str()];
    let names: Vec<String> = (0..250).map(|i| format!("t{i:03}")).collect();
    let seeded: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| seed_group(n, &pair(i), &pair(i)[..1]))
        .collect();
    let desired: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| group(n, &pair(i), &[], &pair(i)[..1]))
        .collect();
    let all: Vec<&str> = users.iter().map(String::as_str).collect();
    let w = world(&seed(&all, &seeded), &desired, "").await;
    let mut b = w.sim.vinyldns.behaviour();
    // An older server's page limit, which roster falls back to: 250 groups are three pages.
    b.group_page_limit = 100;
    w.sim.vinyldns.set_behaviour(b);
    w.sim.vinyldns.set_faults(roster::sim::faults::Faults {
        latency: Some(std::time::Duration::from_millis(20)),
        ..Default::default()
    });
    let before = w.sim.vinyldns.calls().len();
    let plan = text(&w.plan().await);
    // Every member read as it is: the plan only adds the descriptions the seed left out.
    assert_eq!(plan.matches("~ update group").count(), 250, "{plan}");
    assert!(!plan.contains("member"), "{plan}");
    let read = &w.sim.vinyldns.calls()[before..];
    let full_pages: Vec<usize> = (0..read.len())
        .filter(|&i| {
            read[i].starts_with("GET /groups?")
                && read[i].contains("ignoreAccess=true")
                && !read[i].contains("abridged")
        })
        .collect();
    // The refused 3,000, then three pages of 100.
    assert_eq!(full_pages.len(), 4, "{read:?}");
    let first_lookup = read
        .iter()
        .position(|c| c.starts_with("GET /users/"))
        .expect("the members are looked up");
    assert!(
        first_lookup < full_pages[3],
        "the lookups waited for the whole list: {read:?}"
    );
    assert!(!read.iter().any(|c| c.contains("/members")), "{read:?}");
    // Two lists and 40 lookups at once, within the target's `concurrency` (8).
    let peak = w.sim.vinyldns.peak_in_flight();
    assert!((5..=8).contains(&peak), "{peak} calls in flight at once");
    // Whether roster's account is a super user: one listing without `ignoreAccess` answers it
    // (it lists more groups than the account's own, none), not the whole list again.
    let own: Vec<&String> = read
        .iter()
        .filter(|c| c.starts_with("GET /groups?") && !c.contains("ignoreAccess"))
        .collect();
    assert_eq!(own, ["GET /groups?abridged=true&maxItems=1"], "{read:?}");
}

/// The super-user check lists groups without `ignoreAccess` only until it sees more than the
/// account's own: here the account belongs to exactly one page of them (100, an older server's
/// page), so the answer is on the second page, not the first.
#[tokio::test]
async fn a_super_user_in_exactly_a_page_of_groups_is_known_as_one() {
    let mut seeded: String = (0..100)
        .map(|i| seed_group(&format!("m{i:03}"), &["roster", "alice"], &["alice"]))
        .collect();
    seeded += &seed_group("x", &["alice"], &["alice"]);
    let w = world(
        &seed(&["alice", "bob"], &seeded),
        &group("x", &["alice", "bob"], &[], &["alice"]),
        "",
    )
    .await;
    let mut b = w.sim.vinyldns.behaviour();
    b.group_page_limit = 100;
    w.sim.vinyldns.set_behaviour(b);
    let (code, out) = plan_out(&w).await;
    assert_ne!(code, Some(1), "no plan error: {out}");
    assert!(out.contains("+ member \"bob\" in \"x\""), "{out}");
    assert!(!out.contains("may not change this group"), "{out}");
    let own: Vec<String> = w
        .sim
        .vinyldns
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("GET /groups?") && !c.contains("ignoreAccess"))
        .collect();
    assert_eq!(
        own.len(),
        2,
        "a page of its own 100, then one beyond: {own:?}"
    );
}

/// roster lists 100 groups a page only when the server refuses a larger page by naming
/// `maxItems`, as older servers do: a list refused for any other reason is a failed read, and
/// nothing is read again at another size.
#[tokio::test]
async fn a_list_refused_for_another_reason_is_a_failed_read_not_a_smaller_page() {
    let w = world(
        &seed(&["alice"], &seed_group("g", &["alice"], &["alice"])),
        &group("g", &["alice"], &[], &["alice"]),
        "",
    )
    .await;
    fail_every(&w, 400, "maxItems=3000");
    let before = w.sim.vinyldns.calls().len();
    let report = w.plan().await;
    let TargetOutcome::ObserveFailed(e) = &report.targets[0].outcome else {
        panic!(
            "expected a failed read, got {:?}",
            report.targets[0].outcome
        );
    };
    assert!(e.to_string().contains("400"), "{e}");
    let read = &w.sim.vinyldns.calls()[before..];
    assert!(
        read.iter().any(|c| c.contains("maxItems=3000")),
        "the list was asked for: {read:?}"
    );
    let smaller = read
        .iter()
        .filter(|c| c.starts_with("GET /groups?"))
        .filter(|c| c.split(['?', '&']).any(|kv| kv == "maxItems=100"))
        .count();
    assert_eq!(smaller, 0, "read again 100 a page: {read:?}");
}

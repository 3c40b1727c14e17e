//! End to end against the UiPath Identity simulator over real HTTP: plan, apply, the safety
//! rules, convergence after faults, and the call count of a large membership change.

mod support;

use roster::exec::Outcome;
use roster::sim::SimKind;
use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use roster::sim::uipath::{Behaviour, DuplicateName, SearchType, Strictness, UnknownUser};
use support::harness::{Harness, UiPath};
use support::suite::{
    self, Case, DroppedCreate, EmptySource, Expiring, FailedRead, FaultyRun, OneFailure,
    RetryAfter, SafetyCase, Staged, TooManyRemovals, Warnings, WrongSecret, applied, nothing, text,
};
use support::{SECRET, World, group};

const USERS: &str = r#"users = ["alice", "bob", "carol", "dave", "erin"]"#;

fn seed(body: &str) -> String {
    format!("[uipath]\nclient_id = \"roster\"\nclient_secret = \"{SECRET}\"\n{body}")
}

async fn world(seed_body: &str, groups: &str, extra: &str) -> World {
    World::with_target(
        SimKind::UiPath,
        &seed(seed_body),
        &UiPath::keys(),
        groups,
        extra,
    )
    .await
}

safety_suite!(UiPath);

impl SafetyCase for UiPath {
    fn failed_read() -> Case<FailedRead> {
        Case::Run(FailedRead {
            groups: 5,
            fail_path: |w| UiPath::group_id(w, "g003"),
            says: &["robots: GET /identity_/api/Group/", "500"],
        })
    }

    fn too_many_removals() -> Case<TooManyRemovals> {
        // 101 removals are one PUT.
        Case::Run(TooManyRemovals {
            keep: &[],
            raised_writes: Some(1),
        })
    }

    fn empty_source() -> Case<EmptySource> {
        // The built-in groups are in the "*" scope too, but never touched nor counted as managed.
        Case::Run(EmptySource {
            builtin: Some("Everyone"),
        })
    }

    fn dropped_create() -> Case<DroppedCreate> {
        Case::Run(DroppedCreate {
            is_create: |c| c.starts_with("POST ") && c.contains("/api/Group"),
            then: nothing,
        })
    }

    fn faulty_run() -> Case<FaultyRun> {
        // UiPath cannot nest: t00's members become the new groups' own.
        Case::Run(FaultyRun {
            new_members: &["alice", "bob", "carol", "dave"],
            then: nothing,
        })
    }

    async fn expiring_credentials() -> Case<Expiring> {
        Case::Run(Expiring {
            world: suite::five_new_groups::<UiPath>().await,
            expire_after: 4,
            renewals: Some(|w| w.sim.uipath.token_requests()),
        })
    }

    async fn retry_after() -> Case<RetryAfter> {
        let seed = format!("{USERS}\n[[uipath.group]]\nname = \"G\"\n");
        let w = world(&seed, &group("G", "", &["alice"], &[]), "concurrency = 1").await;
        let id = w.sim.uipath.group("G").expect("G").id;
        Case::Run(RetryAfter {
            world: w,
            fail_path: format!("/api/Group/{id}"),
            lift_when: Box::new(|c| c.starts_with("PUT ")),
            group: "G",
            member: "alice",
            then: nothing,
        })
    }

    async fn one_failure() -> Case<OneFailure> {
        let seed =
            format!("{USERS}\n[[uipath.group]]\nname = \"A\"\n[[uipath.group]]\nname = \"B\"\n");
        let w = world(
            &seed,
            &(group("A", "", &["alice"], &[]) + &group("B", "", &["bob"], &[])),
            "",
        )
        .await;
        let a_id = w.sim.uipath.group("A").expect("A").id;
        // Only A's PUT fails (its GET is `/api/Group/{partition}/{id}`, which the filter misses).
        w.sim.uipath.set_faults(Faults {
            error_rate: 1.0,
            error_status: 409,
            fail_path: Some(format!("/api/Group/{a_id}")),
            ..Faults::default()
        });
        Case::Run(OneFailure {
            world: w,
            line_has: vec![
                format!("robots: PUT /identity_/api/Group/{a_id}"),
                "(group \"A\")".into(),
                "409".into(),
                "Conflict".into(),
            ],
            failing: ("A", &[]),
            other: ("B", &["bob"]),
        })
    }

    async fn warnings() -> Case<Warnings> {
        let w = world(USERS, &group("G", "", &["alice", "ghost"], &[]), "").await;
        Case::Run(Warnings {
            world: w,
            warnings: &["user \"ghost\" does not exist"],
            group: "G",
            members: &["alice"],
            then: nothing,
        })
    }

    async fn secrets() -> Case<Vec<World>> {
        Case::Run(vec![
            world(USERS, &group("G", "d", &["alice"], &[]), "").await,
        ])
    }

    async fn wrong_secret() -> Case<WrongSecret> {
        Case::Run(WrongSecret {
            world: world(USERS, &group("G", "d", &["alice"], &[]), "").await,
            wrong: "wrong-secret-123",
            says: &["authentication failed", "invalid_client"],
            then: nothing,
        })
    }
}

fn writes_in(calls: &[String]) -> usize {
    calls
        .iter()
        .filter(|c| !c.starts_with("GET ") && !c.contains("/api/Directory/"))
        .count()
}

#[tokio::test]
async fn apply_creates_updates_and_converges_then_the_next_plan_is_empty() {
    let seed = format!(
        "{USERS}\n[[uipath.group]]\nname = \"Eng\"\nmembers = [\"alice\", \"dave\"]\n\
         [[uipath.group]]\nname = \"Untouched\"\nmembers = [\"erin\"]\n"
    );
    // Eng Leads is a child of Eng: UiPath cannot nest, so carol becomes a direct member of Eng.
    let groups = group(
        "Eng",
        "descriptions are dropped",
        &["alice", "bob"],
        &["Eng Leads"],
    ) + &group("Eng Leads", "", &["carol"], &[]);
    let w = world(&seed, &groups, "").await;

    let first = w.plan().await;
    let t = text(&first);
    assert!(t.contains("+ create group \"Eng Leads\""), "{t}");
    assert!(t.contains("+ member \"bob\" in \"Eng\""), "{t}");
    assert!(t.contains("+ member \"carol\" in \"Eng\""), "{t}");
    assert!(t.contains("- member \"dave\" in \"Eng\""), "{t}");
    assert!(!t.contains("description"), "{t}");
    assert_eq!(w.sim.uipath.writes(), 0, "planning wrote something");

    w.sim.uipath.clear_calls();
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let calls = w.sim.uipath.calls();
    let writes: Vec<&String> = calls
        .iter()
        .filter(|c| !c.starts_with("GET ") && !c.contains("/api/Directory/"))
        .collect();
    // One POST for the new group with its member, one PUT for Eng's three changes.
    assert_eq!(writes.len(), 2, "{calls:#?}");
    assert!(
        writes
            .iter()
            .any(|c| c.starts_with("POST /roster/identity_/api/Group"))
    );
    let eng = w.sim.uipath.group("Eng").expect("Eng");
    assert!(
        writes
            .iter()
            .any(|c| **c == format!("PUT /roster/identity_/api/Group/{}", eng.id))
    );
    assert_eq!(
        eng.members.iter().cloned().collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    let leads = w.sim.uipath.group("Eng Leads").expect("Eng Leads");
    assert_eq!(leads.members.iter().cloned().collect::<Vec<_>>(), ["carol"]);
    assert_eq!(
        w.sim
            .uipath
            .group("Untouched")
            .expect("Untouched")
            .members
            .len(),
        1
    );

    assert!(!w.plan().await.any_changes(), "{}", text(&w.plan().await));
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
}

#[tokio::test]
async fn users_are_matched_by_email_when_configured() {
    let seed = "[[uipath.user]]\nname = \"a.smith\"\nemail = \"Alice@Corp.example\"\nsource = \"aad\"\n\
                [[uipath.group]]\nname = \"G\"\nmembers = [\"bob\"]\n";
    let w = world(
        seed,
        &group(
            "G",
            "",
            &[
                "alice@corp.example",
                "bob@example.com",
                "ghost@corp.example",
            ],
            &[],
        ),
        "user_key = \"email\"",
    )
    .await;
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let t = text(&report);
    assert!(
        t.contains("user \"ghost@corp.example\" does not exist"),
        "{t}"
    );
    let g = w.sim.uipath.group("G").expect("G");
    assert_eq!(
        g.members.iter().cloned().collect::<Vec<_>>(),
        ["a.smith", "bob"]
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn prune_deletes_managed_groups_but_never_built_in_ones() {
    let seed = format!("{USERS}\n[[uipath.group]]\nname = \"gone\"\nmembers = [\"alice\"]\n");
    let w = world(
        &seed,
        &group("kept", "", &["bob"], &[]),
        "groups = [\"*\"]\nprune = true",
    )
    .await;
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    assert!(w.sim.uipath.group("gone").is_none());
    assert!(
        w.sim.uipath.group("Administrators").is_some() && w.sim.uipath.group("Everyone").is_some()
    );
    assert!(
        text(&report).contains("\"Everyone\" is a system group"),
        "{}",
        text(&report)
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_dropped_put_is_resent_and_converges_even_when_the_server_refuses_repeats() {
    let seed =
        format!("{USERS}\n[[uipath.group]]\nname = \"G\"\nmembers = [\"alice\", \"dave\"]\n");
    let w = world(&seed, &group("G", "", &["alice", "bob", "carol"], &[]), "").await;
    // The strict server answers 400 to adding a member twice or removing a non-member, so the
    // resend of a PUT that landed is refused; roster re-reads and finds nothing left to do.
    w.sim.uipath.set_behaviour(Behaviour {
        add_existing: Strictness::Reject,
        remove_missing: Strictness::Reject,
        ..Behaviour::default()
    });
    w.sim.uipath.set_faults(Faults {
        drop_after_write: 1,
        ..Faults::default()
    });
    let report = w.apply(None).await;
    let r = applied(&report);
    assert_eq!(r.failures(), 0, "{report:?}");
    assert!(
        r.outcomes
            .values()
            .all(|o| matches!(o, Outcome::AlreadyDone(why) if why.contains("already as desired"))),
        "{r:?}"
    );
    let g = w.sim.uipath.group("G").expect("G");
    assert_eq!(
        g.members.iter().cloned().collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn the_servers_own_message_names_the_missing_scope() {
    let w = world(
        &format!("{USERS}\nscopes = [\"PM.Group.Read\", \"PM.Directory\"]\n"),
        &group("G", "", &["alice"], &[]),
        "scope = \"PM.Group.Read PM.Directory\"",
    )
    .await;
    let report = w.apply(None).await;
    let r = applied(&report);
    let Outcome::Failed(msg) = &r.outcomes[&0] else {
        panic!("{r:?}");
    };
    assert!(
        msg.contains("robots: POST /identity_/api/Group (group \"G\"): 403"),
        "{msg}"
    );
    assert!(msg.contains("PM.Group.Write"), "{msg}");
}

#[tokio::test]
async fn a_duplicate_name_on_create_adopts_the_group_someone_else_made_409_or_400() {
    for answer in [DuplicateName::Conflict, DuplicateName::BadRequest] {
        let w = world(USERS, &group("Race", "", &["alice", "bob"], &[]), "").await;
        w.sim.uipath.set_behaviour(Behaviour {
            duplicate_name: answer,
            ..Behaviour::default()
        });
        let Staged { plan, report, .. } = suite::plan_then::<UiPath>(&w, async |w: &World| {
            w.sim.uipath.insert_group("race", &["alice", "erin"]);
        })
        .await;
        assert!(matches!(
            plan.changes[0],
            roster::plan::Change::CreateGroup { .. }
        ));
        assert!(
            matches!(&report.outcomes[&0], Outcome::AlreadyDone(why) if why.contains("adopted")),
            "{answer:?}: {report:?}"
        );
        let names = w.sim.uipath.group_names();
        assert_eq!(
            names
                .iter()
                .filter(|n| n.eq_ignore_ascii_case("race"))
                .count(),
            1,
            "{names:?}"
        );
        // The adopted group got the members it lacked; nothing else was removed yet.
        let race = w.sim.uipath.group("race").expect("race");
        assert_eq!(
            race.members.iter().cloned().collect::<Vec<_>>(),
            ["alice", "bob", "erin"]
        );
        // The next run renames it and removes erin, then it is in sync.
        assert!(!w.apply(None).await.any_failed());
        let race = w.sim.uipath.group("Race").expect("Race");
        assert_eq!(race.name, "Race");
        assert_eq!(
            race.members.iter().cloned().collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert!(!w.plan().await.any_changes());
    }
}

#[tokio::test]
async fn deleting_a_group_someone_already_deleted_counts_as_done() {
    let seed = format!("{USERS}\n[[uipath.group]]\nname = \"Old\"\n");
    let w = world(
        &seed,
        &group("Keep", "", &[], &[]),
        "groups = [\"Old\", \"Keep\"]\nprune = true",
    )
    .await;
    let Staged { plan, report, .. } = suite::plan_then::<UiPath>(&w, async |w: &World| {
        let id = w.sim.uipath.group("Old").expect("Old").id;
        let token = http_token(w).await;
        let p = w.sim.uipath.partition_global_id();
        let status = reqwest::Client::new()
            .delete(format!(
                "{}/identity_/api/Group/{p}/{id}",
                w.sim.url_of(SimKind::UiPath)
            ))
            .bearer_auth(token)
            .send()
            .await
            .expect("delete")
            .status();
        assert_eq!(status, 204);
    })
    .await;
    let i = plan
        .changes
        .iter()
        .position(|c| matches!(c, roster::plan::Change::DeleteGroup { .. }))
        .expect("a delete");
    assert!(
        matches!(&report.outcomes[&i], Outcome::AlreadyDone(why) if why == "already deleted"),
        "{report:?}"
    );
}

async fn http_token(w: &World) -> String {
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/identity_/connect/token",
            w.sim.url_of(SimKind::UiPath)
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "roster"),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    v["access_token"].as_str().expect("access_token").to_owned()
}

#[tokio::test]
async fn thousand_member_changes_take_the_fewest_calls() {
    // 10 groups of users u000..u049 that should hold u050..u099 instead: 50 adds and 50 removes
    // each, 1,000 member changes in all.
    let all: Vec<String> = (0..100).map(|i| format!("u{i:03}")).collect();
    let q = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut seed = format!("users = [{}]\n", q(&all));
    let mut groups = String::new();
    let want: Vec<&str> = all[50..].iter().map(String::as_str).collect();
    for i in 0..10 {
        seed += &format!(
            "[[uipath.group]]\nname = \"team{i}\"\nmembers = [{}]\n",
            q(&all[..50])
        );
        groups += &group(&format!("team{i}"), "", &want, &[]);
    }
    let w = world(&seed, &groups, "max_deletes = 1000").await;
    let plan = w.plan().await;
    assert_eq!(
        plan.targets[0].plan.as_ref().expect("plan").changes.len(),
        1000
    );

    w.sim.uipath.clear_calls();
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let calls = w.sim.uipath.calls();
    let writes = writes_in(&calls);
    let reads = calls.len() - writes;
    // The minimum: UiPath's PUT carries every addition and removal of one group and one group
    // only, so 10 changed groups need 10 writes, and no fewer. The reads are the observe the
    // design requires before any write: one list, one GET per group in scope, and the exact
    // lookup of the 50 desired users not yet a member of any group, `BulkResolveByName` taking
    // 20 names a call: 3 calls (one directory search per user took 50).
    let minimum = 10;
    eprintln!(
        "uipath: 1000 member changes: {writes} write calls (+{reads} reads), minimum {minimum}"
    );
    assert_eq!(writes, minimum, "{calls:#?}");
    assert_eq!(reads, 1 + 10 + 50usize.div_ceil(20), "{calls:#?}");
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.contains("/BulkResolveByName/"))
            .count(),
        3,
        "{calls:#?}"
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_user_not_yet_a_member_anywhere_is_found_whether_the_search_writes_type_as_number_or_string()
 {
    // "BOB" is not the directory's spelling, so an exact BulkResolveByName misses it and the
    // directory search finds it; "carol" resolves in bulk. Neither is a member of any group yet.
    for (search_type, bulk_resolve_ignores_case) in [
        (SearchType::Number, false),
        (SearchType::String, false),
        (SearchType::Number, true),
    ] {
        let seed = format!("{USERS}\n[[uipath.group]]\nname = \"G\"\nmembers = [\"alice\"]\n");
        let w = world(&seed, &group("G", "", &["alice", "BOB", "carol"], &[]), "").await;
        w.sim.uipath.set_behaviour(Behaviour {
            search_type,
            bulk_resolve_ignores_case,
            ..Behaviour::default()
        });
        let plan = w.plan().await;
        let t = text(&plan);
        assert!(
            t.contains("+ member \"BOB\" in \"G\""),
            "{search_type:?}: {t}"
        );
        assert!(
            t.contains("+ member \"carol\" in \"G\""),
            "{search_type:?}: {t}"
        );
        let calls = w.sim.uipath.calls();
        assert_eq!(
            calls.iter().any(|c| c.contains("/api/Directory/Search/")),
            !bulk_resolve_ignores_case,
            "{calls:#?}"
        );
        let report = w.apply(None).await;
        assert_eq!(
            applied(&report).failures(),
            0,
            "{search_type:?}: {report:?}"
        );
        let g = w.sim.uipath.group("G").expect("G");
        assert_eq!(
            g.members.iter().cloned().collect::<Vec<_>>(),
            ["alice", "bob", "carol"],
            "{search_type:?}"
        );
        assert!(!w.plan().await.any_changes(), "{search_type:?}");
    }
}

#[tokio::test]
async fn a_create_carries_a_guid_id_and_a_failed_create_is_resent_with_the_same_id() {
    let w = world(USERS, &group("New", "", &["alice", "bob"], &[]), "").await;
    // The first POST fails before the server acts on it: the recheck reads the group by the id
    // the create was sent with, finds none, and the resend creates it with that same id.
    w.sim.uipath.set_faults(Faults {
        fail_writes: 1,
        error_status: 503,
        ..Faults::default()
    });
    w.sim.uipath.clear_calls();
    let report = w.apply(None).await;
    let r = applied(&report);
    assert_eq!(r.failures(), 0, "{report:?}");
    assert!(matches!(r.outcomes[&0], Outcome::Applied), "{r:?}");
    let new = w.sim.uipath.group("New").expect("New");
    assert!(uuid::Uuid::parse_str(&new.id).is_ok(), "{}", new.id);
    assert_eq!(
        new.members.iter().cloned().collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    let calls = w.sim.uipath.calls();
    let posts = calls
        .iter()
        .filter(|c| **c == "POST /roster/identity_/api/Group")
        .count();
    assert_eq!(posts, 2, "{calls:#?}");
    let p = w.sim.uipath.partition_global_id();
    assert!(
        calls
            .iter()
            .any(|c| *c == format!("GET /roster/identity_/api/Group/{p}/{}", new.id)),
        "the recheck asked for the id the group now has: {calls:#?}"
    );
    assert_eq!(w.sim.uipath.group_names().len(), 3, "no duplicate");
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn members_listed_only_by_the_members_call_are_managed_and_robots_are_never_removed() {
    for members_inline in [true, false] {
        let seed = format!(
            "{USERS}\n[[uipath.user]]\nname = \"r2d2\"\nkind = \"robot\"\n\
             [[uipath.group]]\nname = \"G\"\nmembers = [\"alice\", \"dave\", \"r2d2\"]\n\
             [[uipath.group]]\nname = \"Empty\"\n"
        );
        let w = world(
            &seed,
            &(group("G", "", &["alice", "bob"], &[]) + &group("Empty", "", &["erin"], &[])),
            "",
        )
        .await;
        w.sim.uipath.set_behaviour(Behaviour {
            members_inline,
            ..Behaviour::default()
        });
        let plan = w.plan().await;
        let p = plan.targets[0].plan.as_ref().expect("plan");
        let changes: Vec<String> = p.changes.iter().map(|c| format!("{c:?}")).collect();
        // + bob and - dave in G, + erin in Empty: nothing about alice or the robot.
        assert_eq!(changes.len(), 3, "{members_inline}: {changes:#?}");
        assert!(
            !changes
                .iter()
                .any(|c| c.contains("alice") || c.contains("r2d2")),
            "{members_inline}: {changes:#?}"
        );
        // dave is named, even when only his id came with the group.
        assert!(
            changes
                .iter()
                .any(|c| c.contains("RemoveMember") && c.contains("\"dave\"")),
            "{members_inline}: {changes:#?}"
        );
        let named_by_id = w
            .sim
            .uipath
            .calls()
            .iter()
            .filter(|c| c.contains("/api/Directory/BulkResolve/"))
            .count();
        assert_eq!(
            named_by_id,
            usize::from(!members_inline),
            "{members_inline}"
        );
        let report = w.apply(None).await;
        assert_eq!(
            applied(&report).failures(),
            0,
            "{members_inline}: {report:?}"
        );
        let g = w.sim.uipath.group("G").expect("G");
        assert_eq!(
            g.members.iter().cloned().collect::<Vec<_>>(),
            ["alice", "bob", "r2d2"],
            "{members_inline}"
        );
        let e = w.sim.uipath.group("Empty").expect("Empty");
        assert_eq!(e.members.iter().cloned().collect::<Vec<_>>(), ["erin"]);
        assert!(!w.plan().await.any_changes(), "{members_inline}");
    }
}

#[tokio::test]
async fn a_user_deleted_between_plan_and_apply_fails_its_group_by_name_then_the_next_run_converges()
{
    for answer in [
        UnknownUser::BadRequest,
        UnknownUser::NotFound,
        UnknownUser::Ignore,
    ] {
        let seed = format!("{USERS}\n[[uipath.group]]\nname = \"G\"\n");
        let w = world(&seed, &group("G", "", &["alice", "bob"], &[]), "").await;
        w.sim.uipath.set_behaviour(Behaviour {
            unknown_user: answer,
            ..Behaviour::default()
        });
        let Staged { report, .. } = suite::plan_then::<UiPath>(&w, async |w: &World| {
            assert!(w.sim.uipath.remove_user("bob"));
        })
        .await;
        let refused = !matches!(answer, UnknownUser::Ignore);
        if refused {
            let failed: Vec<&String> = report
                .outcomes
                .values()
                .filter_map(|o| match o {
                    Outcome::Failed(m) => Some(m),
                    _ => None,
                })
                .collect();
            assert!(!failed.is_empty(), "{answer:?}: {report:?}");
            assert!(
                failed
                    .iter()
                    .all(|m| m.contains("(group \"G\")") && m.contains("was not found")),
                "{answer:?}: {failed:?}"
            );
        } else {
            assert_eq!(report.failures(), 0, "{answer:?}: {report:?}");
        }
        // The next run knows bob is gone: a warning, and alice is added.
        let next = w.apply(None).await;
        assert!(!next.any_failed(), "{answer:?}: {}", text(&next));
        assert!(
            text(&next).contains("user \"bob\" does not exist"),
            "{answer:?}: {}",
            text(&next)
        );
        let g = w.sim.uipath.group("G").expect("G");
        assert_eq!(g.members.iter().cloned().collect::<Vec<_>>(), ["alice"]);
    }
}

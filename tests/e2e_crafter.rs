//! End to end against the Crafter Studio simulator over real HTTP: plan, apply, the safety rules,
//! convergence after faults, both APIs (API 2 for Studio 4.x, API 1 for Studio 3.0), and the
//! fewest-calls count. Each test names the rule it would catch breaking.

mod support;

use std::time::{Duration, Instant};

use roster::exec::Outcome;
use roster::reconcile::TargetOutcome;
use roster::sim::SimKind;
use roster::sim::control::SimControl as _;
use roster::sim::crafter::{Behaviour, PatchShape, UnknownFields};
use roster::sim::faults::Faults;
use support::harness::{Crafter, Harness};
use support::suite::{
    self, Case, DroppedCreate, EmptySource, Expiring, FailedRead, FaultyRun, OneFailure,
    RetryAfter, SafetyCase, Staged, TooManyRemovals, Warnings, WrongSecret, applied, nothing, text,
};
use support::{SECRET, World, group, stdout};

const V1_KEYS: &str =
    "api = \"v1\"\nusername = \"admin\"\npassword_file = \"secret\"\nsite_id = \"mysite\"\n";
const USERS: &str = r#"users = ["alice", "bob", "carol", "dave", "erin"]"#;

/// A world whose target is a Studio 4.x (API 2) simulator accepting the test secret as token.
async fn v2(seed_body: &str, groups: &str, extra: &str) -> World {
    let seed = format!("[crafter]\ntoken = \"{SECRET}\"\n{seed_body}");
    World::with_target(SimKind::Crafter, &seed, &Crafter::keys(), groups, extra).await
}

/// A world whose target is a Studio 3.0 (API 1) simulator whose admin password is the secret.
async fn v1(seed_body: &str, groups: &str, extra: &str) -> World {
    let seed = format!("[crafter]\napi = \"v1\"\npassword = \"{SECRET}\"\n{seed_body}");
    World::with_target(SimKind::Crafter, &seed, V1_KEYS, groups, extra).await
}

/// Calls that write (not GET, not the login).
fn writes_of(calls: &[String]) -> Vec<&String> {
    calls.iter().filter(|c| Crafter::is_write(c)).collect()
}

fn members(w: &World, name: &str) -> Vec<String> {
    Crafter::members(w, name)
}

safety_suite!(Crafter);

impl SafetyCase for Crafter {
    fn failed_read() -> Case<FailedRead> {
        Case::Run(FailedRead {
            // Two pages of the group list (1,000 a page); the second fails.
            groups: 1_050,
            fail_path: |_| "offset=1000".into(),
            says: &["studio: GET /api/2/groups: 500"],
        })
    }

    fn too_many_removals() -> Case<TooManyRemovals> {
        // At the raised limit the apply goes through, in one bulk remove.
        Case::Run(TooManyRemovals {
            keep: &[],
            raised_writes: Some(1),
        })
    }

    fn empty_source() -> Case<EmptySource> {
        // The built-in groups are in scope of "*" but never touched: they are system groups.
        Case::Run(EmptySource {
            builtin: Some("system_admin"),
        })
    }

    /// The recheck looked the group up by keyword.
    fn dropped_create() -> Case<DroppedCreate> {
        Case::Run(DroppedCreate {
            is_create: |c| c == "POST /studio/api/2/groups",
            then: |w| {
                assert!(
                    w.sim
                        .crafter
                        .calls()
                        .iter()
                        .any(|c| c.starts_with("GET /studio/api/2/groups?keyword=fresh")),
                    "{:#?}",
                    w.sim.crafter.calls()
                );
            },
        })
    }

    fn faulty_run() -> Case<FaultyRun> {
        // Studio cannot nest: t00's members become the new groups' own.
        Case::Run(FaultyRun {
            new_members: &["alice", "bob", "carol", "dave"],
            then: nothing,
        })
    }

    /// API 1's session expires and is renewed by logging in again; API 2's access token is
    /// given, not granted, so it has nothing to renew.
    async fn expiring_credentials() -> Case<Expiring> {
        let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\nsite = \"mysite\"\n");
        let groups = group("docs", "", &["alice", "bob", "carol"], &[])
            + &group("team", "", &["dave", "erin"], &[]);
        Case::Run(Expiring {
            world: v1(&seed, &groups, "").await,
            expire_after: 3,
            renewals: Some(|w| {
                w.sim
                    .crafter
                    .calls()
                    .iter()
                    .filter(|c| c.ends_with("/security/login.json"))
                    .count()
            }),
        })
    }

    /// The observe's read of docs' members is throttled until its first 429 is answered; the
    /// target's own `a_429_waits_for_retry_after` throttles the bulk add after the observe.
    async fn retry_after() -> Case<RetryAfter> {
        let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\n");
        let w = v2(
            &seed,
            &group("docs", "", &["alice"], &[]),
            "concurrency = 1",
        )
        .await;
        let path = format!(
            "/groups/{}/members",
            w.sim.crafter.group("docs").expect("docs").id
        );
        Case::Run(RetryAfter {
            world: w,
            fail_path: path.clone(),
            lift_when: Box::new(move |c| c.contains(&path)),
            group: "docs",
            member: "alice",
            then: |w| assert_eq!(members(w, "docs"), ["alice"]),
        })
    }

    async fn one_failure() -> Case<OneFailure> {
        let seed = format!(
            "{USERS}\n[[crafter.group]]\nname = \"aaa\"\n[[crafter.group]]\nname = \"bbb\"\n"
        );
        let w = v2(
            &seed,
            &(group("aaa", "", &["alice"], &[]) + &group("bbb", "", &["bob"], &[])),
            "",
        )
        .await;
        let a_id = w.sim.crafter.group("aaa").expect("aaa").id;
        // Let the reads through: fail only the writes of aaa's members.
        w.sim.crafter.set_faults(Faults {
            fail_writes: 1,
            error_status: 400,
            fail_path: Some(format!("/groups/{a_id}/members")),
            ..Faults::default()
        });
        Case::Run(OneFailure {
            world: w,
            line_has: vec![format!(
                "studio: POST /api/2/groups/{a_id}/members (group \"aaa\"): 400: Internal system failure: Bad Request (code 1000)"
            )],
            failing: ("aaa", &[]),
            other: ("bbb", &["bob"]),
        })
    }

    /// Users are matched against the user list; names Studio cannot hold are never sent, and no
    /// lookup answers 400 for them.
    async fn warnings() -> Case<Warnings> {
        let w = v2(
            USERS,
            &group("docs", "", &["alice", "ghost", "9bad", "bad name"], &[]),
            "",
        )
        .await;
        Case::Run(Warnings {
            world: w,
            warnings: &[
                "user \"ghost\" does not exist",
                "user \"9bad\" does not exist",
                "user \"bad name\" does not exist",
            ],
            group: "docs",
            members: &["alice"],
            then: |w| {
                let calls = w.sim.crafter.calls();
                assert!(
                    calls
                        .iter()
                        .any(|c| c.starts_with("GET /studio/api/2/users?")),
                    "{calls:#?}"
                );
                assert!(
                    !calls.iter().any(|c| c.contains("9bad")
                        || c.contains("bad%20name")
                        || c.contains("/users/")),
                    "{calls:#?}"
                );
            },
        })
    }

    /// Both APIs: API 2's token and API 1's password.
    async fn secrets() -> Case<Vec<World>> {
        let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\nsite = \"mysite\"\n");
        Case::Run(vec![
            v2(USERS, &group("docs", "d", &["alice"], &[]), "").await,
            v1(&seed, &group("docs", "d", &["alice"], &[]), "").await,
        ])
    }

    /// One try: a refused token is not retried.
    async fn wrong_secret() -> Case<WrongSecret> {
        Case::Run(WrongSecret {
            world: v2(USERS, &group("docs", "", &["alice"], &[]), "").await,
            wrong: "wrong-token-123",
            says: &[
                "authentication failed: the access token was refused (401: Unauthenticated (code 2000))",
            ],
            then: |w| {
                assert_eq!(
                    w.sim.crafter.calls().len(),
                    1,
                    "{:#?}",
                    w.sim.crafter.calls()
                );
            },
        })
    }
}

#[tokio::test]
async fn apply_creates_updates_flattens_children_and_the_next_plan_is_empty() {
    let seed = format!(
        "{USERS}\n[[crafter.group]]\nname = \"docs\"\ndescription = \"old\"\nmembers = [\"alice\", \"dave\"]\n\
         [[crafter.group]]\nname = \"untouched\"\nmembers = [\"erin\"]\n"
    );
    // `docs` has the child `leads`: Studio cannot nest, so carol becomes a direct member.
    let groups = group("docs", "Writers", &["alice", "bob"], &["leads"])
        + &group("leads", "Leads", &["carol"], &[]);
    let w = v2(&seed, &groups, "").await;

    let first = w.plan().await;
    let t = text(&first);
    assert!(
        t.contains("~ update group \"docs\": description \"old\" → \"Writers\""),
        "{t}"
    );
    assert!(t.contains("+ create group \"leads\""), "{t}");
    assert!(t.contains("+ member \"bob\" in \"docs\""), "{t}");
    assert!(t.contains("+ member \"carol\" in \"docs\""), "{t}");
    assert!(t.contains("- member \"dave\" in \"docs\""), "{t}");
    assert!(!t.contains("child"), "{t}");
    assert_eq!(w.sim.crafter.writes(), 0, "planning wrote something");

    w.sim.crafter.clear_calls();
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let docs = w.sim.crafter.group("docs").expect("docs");
    assert_eq!(docs.description.as_deref(), Some("Writers"));
    assert_eq!(members(&w, "docs"), ["alice", "bob", "carol"]);
    assert_eq!(members(&w, "leads"), ["carol"]);
    assert_eq!(
        members(&w, "untouched"),
        ["erin"],
        "out of scope was changed"
    );
    // One PATCH, one create, one bulk add and one bulk remove for docs, one bulk add for leads.
    let calls = w.sim.crafter.calls();
    let writes = writes_of(&calls);
    assert_eq!(writes.len(), 5, "{writes:#?}");
    // Removed by id: Studio holds ids to no rule.
    let dave = w.sim.crafter.user_id("dave").expect("dave");
    assert!(
        writes
            .iter()
            .any(|c| c.starts_with("DELETE /studio/api/2/groups/")
                && c.ends_with(&format!("/members?userId={dave}"))),
        "{writes:#?}"
    );

    let again = w.plan().await;
    assert!(!again.any_changes(), "{}", text(&again));
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
}

#[tokio::test]
async fn a_short_members_read_is_incomplete_not_a_smaller_group() {
    let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\nmembers = [\"alice\"]\n");
    let w = v2(&seed, &group("docs", "", &[], &[]), "").await;
    // A 500 on every members page: the read fails whole, nothing is removed.
    w.sim.crafter.set_faults(Faults {
        error_rate: 1.0,
        fail_path: Some("/members".into()),
        ..Faults::default()
    });
    let report = w.apply(None).await;
    assert!(
        matches!(report.targets[0].outcome, TargetOutcome::ObserveFailed(_)),
        "{report:?}"
    );
    assert_eq!(members(&w, "docs"), ["alice"]);
}

#[tokio::test]
async fn dropped_answers_of_non_idempotent_api_1_calls_are_read_as_done_on_retry() {
    let seed = format!(
        "{USERS}\n[[crafter.group]]\nname = \"docs\"\nsite = \"mysite\"\nmembers = [\"alice\", \"dave\"]\n\
         [[crafter.group]]\nname = \"gone\"\nsite = \"mysite\"\n"
    );
    let w = v1(
        &seed,
        &group("docs", "", &["alice", "bob"], &[]),
        "groups = [\"*\"]\nprune = true\nconcurrency = 1",
    )
    .await;
    // Every write's answer is lost once: add-user then answers 409, remove-user 404
    // "User not found", delete 404 "Group not found"; each is the outcome it stands for.
    w.sim.crafter.set_faults(Faults {
        drop_after_write: 3,
        ..Faults::default()
    });
    let report = w.apply(None).await;
    let r = applied(&report);
    assert_eq!(r.failures(), 0, "{report:?}");
    let why: Vec<String> = r
        .outcomes
        .values()
        .map(|o| match o {
            Outcome::AlreadyDone(w) => w.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(why.contains(&"already a member".to_owned()), "{why:?}");
    assert!(why.contains(&"not a member".to_owned()), "{why:?}");
    assert!(why.contains(&"already deleted".to_owned()), "{why:?}");
    let docs = w.sim.crafter.site_group("mysite", "docs").expect("docs");
    assert_eq!(
        docs.members.into_iter().collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert!(w.sim.crafter.site_group("mysite", "gone").is_none());
    let calls = w.sim.crafter.calls();
    assert!(
        calls
            .iter()
            .any(|c| c
                .starts_with("GET /studio/api/1/services/api/1/group/get.json?group_name=docs")),
        "{calls:#?}"
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_token_without_group_permissions_is_a_403_with_the_servers_words() {
    let w = v2(USERS, &group("docs", "", &["alice"], &[]), "").await;
    std::fs::write(w.dir.path().join("secret"), "no-permissions-token\n").expect("write");
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1));
    let all = suite::both(&out);
    assert!(
        all.contains("studio: GET /api/2/groups: 403: Unauthorized (code 2001)"),
        "{all}"
    );
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\n");
    let w = v2(
        &seed,
        &group("docs", "", &["alice"], &[]),
        "concurrency = 1",
    )
    .await;
    let id = w.sim.crafter.group("docs").expect("docs").id;
    let started = Instant::now();
    // After the observe, throttle the bulk add until the first 429 has been answered.
    let Staged { report, .. } = suite::plan_then::<Crafter>(&w, async |w: &World| {
        w.sim.crafter.set_faults(Faults {
            throttle_rate: 1.0,
            retry_after: Duration::from_secs(1),
            fail_path: Some(format!("/groups/{id}/members")),
            ..Faults::default()
        });
        let sim = w.sim.crafter.clone();
        tokio::spawn(async move {
            for _ in 0..400 {
                if sim
                    .calls()
                    .iter()
                    .any(|c| c.starts_with("POST ") && c.contains("/members"))
                {
                    sim.set_faults(Faults::default());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    })
    .await;
    assert_eq!(report.failures(), 0, "{report:?}");
    assert_eq!(report.attempts, 2, "{report:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "retried before Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(members(&w, "docs"), ["alice"]);
}

#[tokio::test]
async fn one_failed_change_does_not_stop_the_others_and_the_error_says_where() {
    let seed =
        format!("{USERS}\n[[crafter.group]]\nname = \"aaa\"\n[[crafter.group]]\nname = \"bbb\"\n");
    let w = v2(
        &seed,
        &(group("aaa", "", &["alice"], &[]) + &group("bbb", "", &["bob"], &[])),
        "",
    )
    .await;
    let a_id = w.sim.crafter.group("aaa").expect("aaa").id;
    // Let the reads through: fail only the writes of aaa's members.
    w.sim.crafter.set_faults(Faults {
        fail_writes: 1,
        error_status: 400,
        fail_path: Some(format!("/groups/{a_id}/members")),
        ..Faults::default()
    });
    suite::one_failure_does_not_stop_the_others::<Crafter>(
        &w,
        &[format!(
            "studio: POST /api/2/groups/{a_id}/members (group \"aaa\"): 400: Internal system failure: Bad Request (code 1000)"
        )],
        ("aaa", &[]),
        ("bbb", &["bob"]),
    )
    .await;
}

#[tokio::test]
async fn a_user_purged_between_plan_and_apply_fails_only_that_groups_add() {
    let seed =
        format!("{USERS}\n[[crafter.group]]\nname = \"aaa\"\n[[crafter.group]]\nname = \"bbb\"\n");
    let w = v2(
        &seed,
        &(group("aaa", "", &["alice", "carol"], &[]) + &group("bbb", "", &["bob"], &[])),
        "",
    )
    .await;
    let a_id = w.sim.crafter.group("aaa").expect("aaa").id;
    let Staged { report, .. } =
        suite::plan_then::<Crafter>(&w, async |w: &World| w.sim.crafter.purge_user("alice")).await;
    let failed: Vec<&String> = report
        .outcomes
        .values()
        .filter_map(|o| match o {
            Outcome::Failed(m) => Some(m),
            _ => None,
        })
        .collect();
    // The bulk add (`POST /api/2/groups/{id}/members`) is all-or-nothing: both of aaa's adds fail
    // together, with the server's words.
    assert_eq!(failed.len(), 2, "{report:?}");
    assert_eq!(
        failed[0],
        &format!(
            "studio: POST /api/2/groups/{a_id}/members (group \"aaa\"): 404: User not found (code 6000)"
        )
    );
    assert_eq!(members(&w, "bbb"), ["bob"]);
}

#[tokio::test]
async fn usernames_with_at_signs_and_hyphens_are_added_and_hyphenated_group_names_created() {
    let seed = "users = [\"jane@corp.com\", \"jane-doe\", \"j.o+tag\"]\n";
    let w = v2(
        seed,
        &group(
            "dev-team",
            "Developers",
            &["jane@corp.com", "jane-doe", "j.o+tag"],
            &[],
        ),
        "",
    )
    .await;
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{}", suite::both(&out));
    assert!(!t.contains("does not exist"), "{t}");
    assert!(t.contains("+ create group \"dev-team\""), "{t}");
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    assert_eq!(
        members(&w, "dev-team"),
        ["j.o+tag", "jane-doe", "jane@corp.com"]
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_soft_deleted_user_is_unknown_and_never_added() {
    // Studio's one-user lookup still finds a deleted user, and an add would succeed without
    // the member list ever showing it: every run would add it again.
    let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\nmembers = [\"alice\"]\n");
    let w = v2(&seed, &group("docs", "", &["alice", "bob"], &[]), "").await;
    w.sim.crafter.delete_user("bob");
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    let t = stdout(&out);
    assert!(t.contains("user \"bob\" does not exist"), "{t}");
    assert!(!t.contains("+ member \"bob\""), "{t}");
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
    assert_eq!(w.sim.crafter.writes(), 0);
    assert_eq!(members(&w, "docs"), ["alice"]);
}

#[tokio::test]
async fn system_and_externally_managed_groups_are_left_alone_with_warnings() {
    let seed = format!(
        "{USERS}\n[[crafter.group]]\nname = \"ldap_editors\"\nexternally_managed = true\nmembers = [\"erin\"]\n"
    );
    let groups =
        group("system_admin", "", &["alice"], &[]) + &group("ldap_editors", "", &["alice"], &[]);
    let w = v2(&seed, &groups, "").await;
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    let t = stdout(&out);
    assert!(t.contains("\"system_admin\" is a system group"), "{t}");
    assert!(t.contains("\"ldap_editors\" is an external group"), "{t}");
    assert_eq!(out.status.code(), Some(0), "{t}");
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
    assert_eq!(w.sim.crafter.writes(), 0);
    assert_eq!(members(&w, "ldap_editors"), ["erin"]);
}

#[tokio::test]
async fn what_studio_would_refuse_is_a_plan_error_at_its_origin_never_a_failed_apply() {
    // An existing group with a name Studio would no longer create needs no create: only what
    // a write would send is checked.
    let seed = format!(
        "{USERS}\n[[crafter.group]]\nname = \"9legacy\"\nmembers = [\"alice\"]\n\
         [[crafter.group]]\nname = \"ldap_team\"\nexternally_managed = true\n"
    );
    let long = "d".repeat(1025);
    let groups = group("CMS Editors", "", &["alice"], &[])
        + &group("9team", "", &["bob"], &[])
        + &group("ab", "", &[], &[])
        + &group("long_desc", &long, &["carol"], &[])
        + &group("9legacy", "", &["alice", "dave"], &[])
        + &group("ok_group", "", &["erin"], &[]);
    let w = v2(&seed, &groups, "").await;
    let file = w.dir.path().join("groups.toml");
    let file = file.display();
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    let all = suite::both(&out);
    for (line, group, why) in [
        (
            1,
            "CMS Editors",
            "Studio creates only groups whose names match ^[a-zA-Z][\\w.\\-]*$",
        ),
        (7, "9team", "Studio creates only groups whose names match"),
        (13, "ab", "and have 3 to 512 characters"),
        (
            19,
            "long_desc",
            "the description has 1025 characters; Crafter Studio takes at most 1024",
        ),
    ] {
        assert!(
            all.contains(&format!(
                "error: {file}:{line}:1: create group \"{group}\": "
            )),
            "{group}: {all}"
        );
        assert!(all.contains(why), "{group}: {all}");
    }
    assert!(!all.contains("\"9legacy\": "), "{all}");
    assert!(!all.contains("\"ok_group\": "), "{all}");
    // Nothing was written by the plan, and the apply never sends a refused change.
    assert_eq!(w.sim.crafter.writes(), 0);
    w.sim.crafter.clear_calls();
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    let creates: Vec<String> = w
        .sim
        .crafter
        .calls()
        .into_iter()
        .filter(|c| c == "POST /studio/api/2/groups")
        .collect();
    assert_eq!(creates.len(), 1, "only ok_group is created: {creates:#?}");
    assert!(w.sim.crafter.group("ok_group").is_some());
    assert_eq!(members(&w, "9legacy"), ["alice", "dave"]);
    for g in ["CMS Editors", "9team", "ab", "long_desc"] {
        assert!(w.sim.crafter.group(g).is_none(), "{g}");
    }
    // `roster validate` has no Studio to ask, and finds no fault in the files.
    let out = w.roster(&["validate"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
}

#[tokio::test]
async fn a_name_differing_only_in_case_is_matched_not_duplicated() {
    let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\nmembers = [\"alice\"]\n");
    let w = v2(&seed, &group("Docs", "", &["alice", "bob"], &[]), "").await;
    let report = w.apply(None).await;
    assert!(!report.any_failed(), "{report:?}");
    let t = text(&report);
    assert!(t.contains("cannot rename groups"), "{t}");
    assert_eq!(members(&w, "docs"), ["alice", "bob"]);
    assert_eq!(
        w.sim
            .crafter
            .groups()
            .iter()
            .filter(|g| g.name.eq_ignore_ascii_case("docs"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_409_on_create_adopts_the_group_someone_else_made() {
    let w = v2(USERS, &group("race", "mine", &["alice"], &[]), "").await;
    let Staged { plan, report, .. } = suite::plan_then::<Crafter>(&w, async |w: &World| {
        w.sim
            .crafter
            .insert_group("RACE", Some("theirs"), &[], None);
    })
    .await;
    assert!(matches!(
        plan.changes[0],
        roster::plan::Change::CreateGroup { .. }
    ));
    assert!(
        matches!(&report.outcomes[&0], Outcome::AlreadyDone(why) if why.contains("adopted")),
        "{report:?}"
    );
    assert_eq!(report.failures(), 0, "{report:?}");
    assert_eq!(members(&w, "race"), ["alice"]);
    assert!(!w.apply(None).await.any_failed());
    assert_eq!(
        w.sim
            .crafter
            .group("race")
            .expect("race")
            .description
            .as_deref(),
        Some("mine")
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_delete_of_a_group_someone_already_deleted_counts_as_done() {
    let seed = "[[crafter.group]]\nname = \"old_team\"\n[[crafter.group]]\nname = \"keep\"\n";
    let w = v2(
        seed,
        &group("keep", "", &[], &[]),
        "groups = [\"old_*\", \"keep\"]\nprune = true",
    )
    .await;
    let Staged { plan, report, .. } = suite::plan_then::<Crafter>(&w, async |w: &World| {
        w.sim.crafter.remove_group("old_team", None)
    })
    .await;
    assert!(
        matches!(
            &plan.changes[..],
            [roster::plan::Change::DeleteGroup { .. }]
        ),
        "{plan:?}"
    );
    assert!(
        matches!(&report.outcomes[&0], Outcome::AlreadyDone(why) if why == "already deleted"),
        "{report:?}"
    );
}

#[tokio::test]
async fn an_api_1_remove_from_a_group_that_vanished_is_a_failure_not_success() {
    let seed = format!(
        "{USERS}\n[[crafter.group]]\nname = \"docs\"\nsite = \"mysite\"\nmembers = [\"alice\", \"bob\"]\n"
    );
    let w = v1(&seed, &group("docs", "", &["alice"], &[]), "").await;
    let Staged { report, .. } = suite::plan_then::<Crafter>(&w, async |w: &World| {
        w.sim.crafter.remove_group("docs", Some("mysite"))
    })
    .await;
    let Outcome::Failed(msg) = &report.outcomes[&0] else {
        panic!("a 404 for a missing group was taken as success: {report:?}");
    };
    assert_eq!(
        msg,
        "studio: POST /api/1/services/api/1/group/remove-user.json (group \"docs\"): 404: Group not found"
    );
}

#[tokio::test]
async fn an_api_1_add_of_an_unknown_user_fails_naming_the_user() {
    let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\nsite = \"mysite\"\n");
    let w = v1(&seed, &group("docs", "", &["alice", "ghost"], &[]), "").await;
    let report = w.apply(None).await;
    let r = applied(&report);
    assert_eq!(r.failures(), 1, "{report:?}");
    let failed = r.outcomes.values().find_map(|o| match o {
        Outcome::Failed(m) => Some(m.clone()),
        _ => None,
    });
    assert_eq!(
        failed.as_deref(),
        Some(
            "studio: POST /api/1/services/api/1/group/add-user.json (group \"docs\"): 404: User not found: Studio has no user \"ghost\" (API 1 cannot look users up ahead)"
        )
    );
    let docs = w.sim.crafter.site_group("mysite", "docs").expect("docs");
    assert!(docs.members.contains("alice"));
}

#[tokio::test]
async fn api_1_converges_through_the_binary() {
    let seed = format!(
        "{USERS}\n[[crafter.group]]\nname = \"docs\"\nsite = \"mysite\"\ndescription = \"old\"\nmembers = [\"alice\", \"dave\"]\n\
         [[crafter.group]]\nname = \"docs\"\nsite = \"othersite\"\nmembers = [\"erin\"]\n"
    );
    let w = World::with_target(
        SimKind::Crafter,
        &format!("[crafter]\napi = \"v1\"\npassword = \"{SECRET}\"\nsites = [\"mysite\", \"othersite\"]\n{seed}"),
        V1_KEYS,
        &(group("docs", "Writers", &["alice", "bob"], &[]) + &group("CMS Editors", "", &["carol"], &[])),
        "",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
    let docs = w.sim.crafter.site_group("mysite", "docs").expect("docs");
    assert_eq!(docs.description.as_deref(), Some("Writers"));
    assert_eq!(
        docs.members.iter().cloned().collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    // Studio 3.0 takes names with spaces; another site's group of the same name is untouched.
    assert!(w.sim.crafter.site_group("mysite", "CMS Editors").is_some());
    let other = w
        .sim
        .crafter
        .site_group("othersite", "docs")
        .expect("other");
    assert_eq!(other.members.iter().cloned().collect::<Vec<_>>(), ["erin"]);
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
}

#[tokio::test]
async fn studio_3_1s_301_on_api_1_is_reported_and_never_followed() {
    let seed = format!("[crafter]\napi = \"v3.1\"\npassword = \"{SECRET}\"\n{USERS}\n");
    let w = World::with_target(
        SimKind::Crafter,
        &seed,
        V1_KEYS,
        &group("docs", "", &["alice"], &[]),
        "",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    let all = suite::both(&out);
    assert!(
        all.contains("studio: GET /api/1/services/api/1/group/get-per-site.json: 301: API deprecated.; redirected to /studio/api/2/groups and not followed"),
        "{all}"
    );
    let calls = w.sim.crafter.calls();
    assert!(
        !calls.iter().any(|c| c.contains("/api/2/")),
        "a redirect was followed: {calls:#?}"
    );
    assert_eq!(w.sim.crafter.writes(), 0);
}

#[tokio::test]
async fn a_token_against_studio_3_1_fails_closed_naming_the_version() {
    // Studio 3.1 has no access tokens: its API 2 ignores the bearer token.
    let seed = format!(
        "[crafter]\napi = \"v3.1\"\ntoken = \"{SECRET}\"\n{USERS}\n[[crafter.group]]\nname = \"docs\"\ndescription = \"old\"\n"
    );
    let w = World::with_target(
        SimKind::Crafter,
        &seed,
        &Crafter::keys(),
        &group("docs", "new", &["alice"], &[]),
        "",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    let all = suite::both(&out);
    assert!(
        all.contains("the access token was refused (401: Unauthenticated (code 2000))"),
        "{all}"
    );
    assert!(all.contains("Studio 4.0.0 or later"), "{all}");
    assert_eq!(w.sim.crafter.writes(), 0);
}

#[tokio::test]
async fn updates_work_on_4_0_0_to_4_0_2_and_on_4_0_3_whether_unknown_fields_are_ignored_or_refused()
{
    for patch in [PatchShape::WholeGroup, PatchShape::DescOnly] {
        for unknown_fields in [UnknownFields::Ignore, UnknownFields::Reject] {
            let seed = format!(
                "{USERS}\n[[crafter.group]]\nname = \"docs\"\ndescription = \"old\"\n\
                 [[crafter.group]]\nname = \"team\"\ndescription = \"old\"\n\
                 [[crafter.group]]\nname = \"wiki\"\ndescription = \"old\"\n"
            );
            let w = v2(
                &seed,
                &(group("Docs", "new", &[], &[])
                    + &group("team", "new", &[], &[])
                    + &group("wiki", "new", &[], &[])),
                "concurrency = 1",
            )
            .await;
            w.sim.crafter.set_behaviour(Behaviour {
                unknown_fields,
                patch,
                ..Behaviour::default()
            });
            let report = w.apply(None).await;
            let case = format!("{patch:?}/{unknown_fields:?}");
            assert!(!report.any_failed(), "{case}: {report:?}");
            for g in ["docs", "team", "wiki"] {
                let got = w.sim.crafter.group(g).expect(g);
                // The name is the one Studio has: a whole-group update never renames.
                assert_eq!(got.name, g, "{case}");
                assert_eq!(got.description.as_deref(), Some("new"), "{case}");
            }
            // A Studio that refused the name once is sent updates without it by every call
            // started after. At concurrency 1 one call is started ahead of its turn, built
            // before the first answer came: it is refused once too, and the third is not.
            let patches = w
                .sim
                .crafter
                .calls()
                .into_iter()
                .filter(|c| c.starts_with("PATCH "))
                .count();
            let expected =
                if patch == PatchShape::DescOnly && unknown_fields == UnknownFields::Reject {
                    5
                } else {
                    3
                };
            assert_eq!(patches, expected, "{case}");
            assert!(!w.plan().await.any_changes(), "{case}");
        }
    }
}

#[tokio::test]
async fn case_sensitive_names_on_the_server_still_converge() {
    let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\n");
    let w = v2(&seed, &group("docs", "", &["alice"], &[]), "").await;
    w.sim.crafter.set_behaviour(Behaviour {
        case_insensitive_names: false,
        ..Behaviour::default()
    });
    assert!(!w.apply(None).await.any_failed());
    assert!(!w.plan().await.any_changes());
}

/// Ten existing groups of 50 members each; the desired state swaps all 50 of every group for 50
/// others: 500 adds and 500 removes.
#[tokio::test]
async fn thousand_member_changes_take_the_fewest_calls() {
    let mut seed = String::from("users = [");
    for g in 0..10 {
        for u in 0..50 {
            seed += &format!("\"new{g}_{u}\", ");
        }
    }
    seed += "]\n";
    let mut groups = String::new();
    for g in 0..10 {
        let old: Vec<String> = (0..50).map(|u| format!("\"old{g}_{u}\"")).collect();
        seed += &format!(
            "[[crafter.group]]\nname = \"team{g}\"\nmembers = [{}]\n",
            old.join(", ")
        );
        let new: Vec<String> = (0..50).map(|u| format!("new{g}_{u}")).collect();
        let refs: Vec<&str> = new.iter().map(String::as_str).collect();
        groups += &group(&format!("team{g}"), "", &refs, &[]);
    }
    let w = v2(&seed, &groups, "max_deletes = 500").await;
    let plan = w.plan().await;
    assert_eq!(
        plan.targets[0].plan.as_ref().expect("plan").changes.len(),
        1000
    );

    w.sim.crafter.clear_calls();
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let calls = w.sim.crafter.calls();
    let writes = writes_of(&calls).len();
    let reads = calls.len() - writes;
    // The minimum API 2 allows: the bulk add (`POST /api/2/groups/{id}/members`) takes any number
    // of users, and the bulk remove (`DELETE /api/2/groups/{id}/members?userId=…`) as many as fit
    // one request line under Tomcat's 8 KB limit (50 ids of about 15 bytes each fit easily), but
    // each addresses one group, so every group that gains members needs one bulk add and every
    // group that loses members one bulk remove: 10 + 10 = 20. The reads are what an observe
    // needs: one page of the group list (`GET /api/2/groups`, 16 groups at 100 a page), one page
    // of the member list (`GET /api/2/groups/{id}/members`) per managed group (10), and the user
    // list, which finds the desired users not already members (the bulk add fails whole on one
    // unknown user) while leaving soft-deleted users out: 1,001 users at 1,000 a page is 2 pages.
    // No fresh read is needed before a write: nothing is replaced whole.
    let minimum = 20;
    eprintln!(
        "crafter: 1000 member changes: {writes} write calls (+{reads} reads), minimum {minimum}"
    );
    assert_eq!(writes, minimum, "{:#?}", writes_of(&calls));
    assert_eq!(reads, 1 + 10 + 2);
    for g in 0..10 {
        assert_eq!(members(&w, &format!("team{g}")).len(), 50);
        assert!(
            members(&w, &format!("team{g}"))
                .iter()
                .all(|m| m.starts_with("new"))
        );
    }
    assert!(!w.plan().await.any_changes());
}

/// A group losing 600 members whose usernames are 28 characters long: as usernames, one query
/// string of removals would be about 22 KB, far past Tomcat's 8 KB for a request's line and
/// headers.
#[tokio::test]
async fn hundreds_of_removals_go_by_id_in_requests_under_tomcats_limit() {
    let olds: Vec<String> = (0..600)
        .map(|u| format!("departed.member.number_{u:05}"))
        .collect();
    let quoted: Vec<String> = olds.iter().map(|u| format!("{u:?}")).collect();
    let seed = format!(
        "{USERS}\n[[crafter.group]]\nname = \"big\"\nmembers = [\"alice\", {}]\n",
        quoted.join(", ")
    );
    let w = v2(
        &seed,
        &group("big", "", &["alice"], &[]),
        // The group loses nearly all its members, which max_group_shrink would refuse.
        "max_deletes = 600\nmax_group_shrink = \"100%\"",
    )
    .await;
    w.sim.crafter.clear_calls();
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    assert_eq!(members(&w, "big"), ["alice"]);
    let calls = w.sim.crafter.calls();
    let removals: Vec<&String> = calls.iter().filter(|c| c.starts_with("DELETE ")).collect();
    // 600 ids of three digits at 11 bytes a pair fill one 6 KB request line and part of a
    // second: two requests.
    assert_eq!(removals.len(), 2, "{}", removals.len());
    for r in &removals {
        assert!(r.len() < 6 * 1024, "{}", r.len());
        assert!(!r.contains("username="), "{r}");
    }
    assert!(!w.plan().await.any_changes());
}

/// Every setting of the simulator's switches for what is not confirmed about Studio: the same
/// desired state (a create with a hyphen, an update, adds of e-mail-like usernames, hundreds of
/// removals) applies without a failure and converges.
#[tokio::test]
async fn roster_converges_under_every_setting_of_the_simulators_switches() {
    let variants = [
        Behaviour::default(),
        Behaviour {
            case_insensitive_names: false,
            ..Behaviour::default()
        },
        Behaviour {
            unknown_fields: UnknownFields::Reject,
            ..Behaviour::default()
        },
        Behaviour {
            patch: PatchShape::WholeGroup,
            ..Behaviour::default()
        },
        Behaviour {
            patch: PatchShape::WholeGroup,
            unknown_fields: UnknownFields::Reject,
            ..Behaviour::default()
        },
        Behaviour {
            name_rules: false,
            ..Behaviour::default()
        },
        Behaviour {
            validation_field: "name".into(),
            ..Behaviour::default()
        },
    ];
    let olds: Vec<String> = (0..400).map(|u| format!("former.staff_{u:04}")).collect();
    let quoted: Vec<String> = olds.iter().map(|u| format!("{u:?}")).collect();
    let seed = format!(
        "users = [\"alice\", \"jane@corp.com\", \"jane-doe\"]\n[[crafter.group]]\nname = \"docs\"\n\
         description = \"old\"\nmembers = [\"alice\", {}]\n",
        quoted.join(", ")
    );
    let groups = group("docs", "new", &["alice", "jane-doe"], &[])
        + &group("dev-team", "Developers", &["jane@corp.com"], &[]);
    for behaviour in variants {
        // `docs` loses 400 of 401 members, which max_group_shrink would refuse.
        let w = v2(
            &seed,
            &groups,
            "max_deletes = 400\nmax_group_shrink = \"100%\"",
        )
        .await;
        w.sim.crafter.set_behaviour(behaviour.clone());
        let report = w.apply(None).await;
        assert_eq!(applied(&report).failures(), 0, "{behaviour:?}: {report:?}");
        let docs = w.sim.crafter.group("docs").expect("docs");
        assert_eq!(docs.description.as_deref(), Some("new"), "{behaviour:?}");
        assert_eq!(members(&w, "docs"), ["alice", "jane-doe"], "{behaviour:?}");
        assert_eq!(members(&w, "dev-team"), ["jane@corp.com"], "{behaviour:?}");
        assert!(!w.plan().await.any_changes(), "{behaviour:?}");
    }
}

/// A long access token takes room from the request line: the removals are split so that line
/// and headers together stay inside Tomcat's 8 KB.
#[tokio::test]
async fn a_long_token_makes_the_removal_requests_shorter() {
    let token = "t".repeat(3000);
    let olds: Vec<String> = (0..600)
        .map(|u| format!("departed.member.number_{u:05}"))
        .collect();
    let quoted: Vec<String> = olds.iter().map(|u| format!("{u:?}")).collect();
    let seed = format!(
        "[crafter]\ntoken = \"{token}\"\n{USERS}\n[[crafter.group]]\nname = \"big\"\n\
         members = [\"alice\", {}]\n",
        quoted.join(", ")
    );
    let w = World::with_target(
        SimKind::Crafter,
        &seed,
        &Crafter::keys(),
        &group("big", "", &["alice"], &[]),
        // The group loses nearly all its members, which max_group_shrink would refuse.
        "max_deletes = 600\nmax_group_shrink = \"100%\"",
    )
    .await;
    std::fs::write(w.dir.path().join("secret"), format!("{token}\n")).expect("write");
    w.sim.crafter.clear_calls();
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    assert_eq!(members(&w, "big"), ["alice"]);
    let removals = w
        .sim
        .crafter
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("DELETE "))
        .count();
    assert_eq!(removals, 2);
}

/// Studio 3.0 stores names and descriptions in `utf8` columns of 255 and 3,000 characters: the
/// plan refuses what would not fit, at the group's origin, and the apply never sends it.
#[tokio::test]
async fn api_1_plan_errors_for_what_studio_3_0_cannot_store() {
    let seed = format!("{USERS}\n[[crafter.group]]\nname = \"docs\"\nsite = \"mysite\"\n");
    let long_name = "n".repeat(256);
    let groups = group(&long_name, "", &["alice"], &[])
        + &group("party 🎉", "", &["bob"], &[])
        + &group("docs", &"d".repeat(3001), &["carol"], &[])
        + &group("CMS Editors", "Fine in 3.0", &["dave"], &[]);
    let w = v1(&seed, &groups, "").await;
    let file = w.dir.path().join("groups.toml");
    let file = file.display();
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    let all = suite::both(&out);
    for (line, what, why) in [
        (
            1,
            format!("create group \"{long_name}\""),
            "1 to 255 characters",
        ),
        (
            7,
            "create group \"party 🎉\"".to_owned(),
            "Basic Multilingual Plane",
        ),
        (
            13,
            "update group \"docs\"".to_owned(),
            "has 3001 characters; Crafter Studio takes at most 3000",
        ),
    ] {
        assert!(
            all.contains(&format!("error: {file}:{line}:1: {what}: ")),
            "{what}: {all}"
        );
        assert!(all.contains(why), "{why}: {all}");
    }
    assert!(!all.contains("\"CMS Editors\": "), "{all}");
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    assert!(w.sim.crafter.site_group("mysite", "CMS Editors").is_some());
    assert!(w.sim.crafter.site_group("mysite", "party 🎉").is_none());
    assert_eq!(
        w.sim
            .crafter
            .site_group("mysite", "docs")
            .expect("docs")
            .description,
        None
    );
    // Members of docs are still written: only the update was refused.
    assert!(
        w.sim
            .crafter
            .site_group("mysite", "docs")
            .expect("docs")
            .members
            .contains("carol")
    );
}

//! End to end against the Contensis simulator over real HTTP: plan, apply, the safety rules, and
//! convergence after faults. Each test names the rule it would catch breaking.

mod support;

use roster::exec::Outcome;
use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use support::harness::{Contensis, Harness};
use support::suite::{
    self, Case, DroppedCreate, EmptySource, Expiring, FailedRead, FaultyRun, OneFailure,
    RetryAfter, SafetyCase, TooManyRemovals, Warnings, WrongSecret, applied, nothing,
};
use support::{SECRET, World, group, stderr, stdout, strs, toml_list};

const USERS: &str = r#"users = ["alice", "bob", "carol", "dave", "erin"]"#;

safety_suite!(Contensis);

impl SafetyCase for Contensis {
    fn failed_read() -> Case<FailedRead> {
        Case::Run(FailedRead {
            groups: 150,
            fail_path: |_| "pageIndex=1".into(),
            says: &["cms: GET /api/security/groups: 500"],
        })
    }

    fn too_many_removals() -> Case<TooManyRemovals> {
        Case::Run(TooManyRemovals {
            keep: &[],
            raised_writes: None,
        })
    }

    fn empty_source() -> Case<EmptySource> {
        Case::Run(EmptySource { builtin: None })
    }

    fn dropped_create() -> Case<DroppedCreate> {
        Case::Run(DroppedCreate {
            is_create: |c| c.split('?').next() == Some("POST /api/security/groups"),
            then: nothing,
        })
    }

    fn faulty_run() -> Case<FaultyRun> {
        // Contensis nests: the child t00 stays a child, its members are not copied in.
        Case::Run(FaultyRun {
            new_members: &["dave"],
            then: nothing,
        })
    }

    async fn expiring_credentials() -> Case<Expiring> {
        Case::Run(Expiring {
            world: suite::five_new_groups::<Contensis>().await,
            expire_after: 4,
            renewals: Some(|w| {
                w.sim
                    .contensis
                    .calls()
                    .iter()
                    .filter(|c| c.contains("/authenticate/connect/token"))
                    .count()
            }),
        })
    }

    async fn retry_after() -> Case<RetryAfter> {
        // G is created in the run, so no read goes below `/groups/`: only the bulk add of its
        // members is throttled, until the first 429 is answered.
        let w = World::new(USERS, &group("G", "", &["alice"], &[]), "concurrency = 1").await;
        Case::Run(RetryAfter {
            world: w,
            fail_path: "/groups/".into(),
            lift_when: Box::new(|c| c.starts_with("POST ") && c.contains("/users")),
            group: "G",
            member: "alice",
            then: nothing,
        })
    }

    async fn one_failure() -> Case<OneFailure> {
        // A loses bob (a DELETE the fault refuses); B gains bob.
        let seed = format!(
            "{USERS}\n[[contensis.group]]\nname = \"A\"\nmembers = [\"alice\", \"bob\"]\n\
             [[contensis.group]]\nname = \"B\"\n"
        );
        let w = World::new(
            &seed,
            &(group("A", "", &["alice"], &[]) + &group("B", "", &["bob"], &[])),
            "",
        )
        .await;
        let a_id = w.sim.contensis.group("A").expect("A").id;
        w.sim.contensis.set_faults(Faults {
            error_rate: 1.0,
            error_status: 400,
            fail_path: Some(format!("/groups/{a_id}/users/")),
            ..Faults::default()
        });
        Case::Run(OneFailure {
            world: w,
            line_has: vec![
                format!("cms: DELETE /api/security/groups/{a_id}/users/"),
                "(group \"A\")".into(),
                "400".into(),
            ],
            failing: ("A", &["alice", "bob"]),
            other: ("B", &["bob"]),
        })
    }

    /// System groups are warnings too, and are left alone.
    async fn warnings() -> Case<Warnings> {
        let w = World::new(
            USERS,
            &(group("System Administrators", "", &["alice"], &[])
                + &group("G", "", &["alice", "ghost"], &[])),
            "",
        )
        .await;
        Case::Run(Warnings {
            world: w,
            warnings: &[
                "\"System Administrators\" is a system group",
                "user \"ghost\" does not exist",
            ],
            group: "G",
            members: &["alice"],
            then: |w| {
                let admins = w.sim.contensis.group("System Administrators").expect("sys");
                assert!(!admins.members.contains("alice"));
            },
        })
    }

    async fn secrets() -> Case<Vec<World>> {
        Case::Run(vec![
            World::new(USERS, &group("G", "d", &["alice"], &[]), "").await,
        ])
    }

    async fn wrong_secret() -> Case<WrongSecret> {
        Case::Run(WrongSecret {
            world: World::new(USERS, &group("G", "d", &["alice"], &[]), "").await,
            wrong: "wrong-secret-123",
            says: &["authentication failed"],
            then: nothing,
        })
    }
}

#[tokio::test]
async fn apply_creates_updates_and_converges_then_the_next_plan_is_empty() {
    let seed = format!(
        "{USERS}\n[[contensis.group]]\nname = \"Eng\"\ndescription = \"old\"\nmembers = [\"alice\", \"dave\"]\n\
         [[contensis.group]]\nname = \"Untouched\"\nmembers = [\"erin\"]\n"
    );
    let groups = group("Eng", "Engineers", &["alice", "bob"], &["Eng Leads"])
        + &group("Eng Leads", "Leads", &["carol"], &[]);
    let w = World::new(&seed, &groups, "").await;

    let first = w.plan().await;
    let text = roster::report::plans(&first, roster::plan::render::Format::Text);
    assert!(
        text.contains("~ update group \"Eng\": description \"old\" → \"Engineers\""),
        "{text}"
    );
    assert!(text.contains("+ create group \"Eng Leads\""), "{text}");
    assert!(text.contains("+ member \"bob\" in \"Eng\""), "{text}");
    assert!(text.contains("- member \"dave\" in \"Eng\""), "{text}");
    assert!(text.contains("+ child \"Eng Leads\" in \"Eng\""), "{text}");
    assert!(
        text.contains("Plan: 4 to add, 1 to change, 1 to remove."),
        "{text}"
    );
    assert_eq!(w.sim.contensis.writes(), 0, "planning wrote something");

    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let eng = w.sim.contensis.group("Eng").expect("Eng");
    assert_eq!(eng.description.as_deref(), Some("Engineers"));
    assert_eq!(
        eng.members.iter().cloned().collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(
        eng.children.iter().cloned().collect::<Vec<_>>(),
        ["Eng Leads"]
    );
    let untouched = w.sim.contensis.group("Untouched").expect("Untouched");
    assert_eq!(
        untouched.members.len(),
        1,
        "a group outside the scope was changed"
    );

    let again = w.plan().await;
    assert!(
        !again.any_changes(),
        "{}",
        roster::report::plans(&again, roster::plan::render::Format::Text)
    );
}

#[tokio::test]
async fn plan_json_follows_the_contract_and_detailed_exit_codes_track_drift() {
    let w = World::new(USERS, &group("G", "d", &["alice"], &[]), "").await;
    let out_file = w.dir.path().join("plan.json");
    let out = w
        .roster(&[
            "plan",
            "--format",
            "json",
            "--out",
            out_file.to_str().expect("utf-8"),
            "--detailed-exitcode",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("plan written"))
            .expect("json");
    let t = &v["targets"][0];
    assert_eq!(t["target"], "cms");
    assert_eq!(t["changes"][0]["op"], "create_group");
    assert_eq!(t["changes"][0]["group"], "G");
    assert_eq!(t["changes"][1]["op"], "add_member");
    assert_eq!(t["changes"][1]["member"], "alice");
    assert_eq!(
        t["summary"],
        serde_json::json!({"add": 2, "change": 0, "remove": 0})
    );
    assert_eq!(w.sim.contensis.writes(), 0);

    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("No changes. Targets are in sync."));
}

/// Deletes a group through the simulator's API, as another administrator would.
async fn delete_over_api(w: &World, id: &str) {
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/authenticate/connect/token", w.sim.url()))
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
        .expect("token json");
    let status = http
        .delete(format!("{}/api/security/groups/{id}", w.sim.url()))
        .bearer_auth(token["access_token"].as_str().expect("access_token"))
        .send()
        .await
        .expect("delete")
        .status();
    assert_eq!(status, 204);
}

#[tokio::test]
async fn a_409_on_create_adopts_the_group_someone_else_made() {
    let w = World::new(USERS, &group("Race", "mine", &["alice"], &[]), "").await;
    let suite::Staged { plan, report, .. } =
        suite::plan_then::<Contensis>(&w, async |w: &World| {
            w.sim
                .contensis
                .insert_group("race", Some("theirs"), &[], &[]);
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
    let names = w.sim.contensis.group_names();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.eq_ignore_ascii_case("race"))
            .count(),
        1,
        "{names:?}"
    );
    assert!(
        w.sim
            .contensis
            .group("race")
            .expect("race")
            .members
            .contains("alice")
    );
    // The adopted group's differences (name case, description) are planned next, then it converges.
    assert!(!w.apply(None).await.any_failed());
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn removing_a_member_someone_already_removed_counts_as_done() {
    let seed =
        format!("{USERS}\n[[contensis.group]]\nname = \"G\"\nmembers = [\"alice\", \"bob\"]\n");
    let w = World::new(&seed, &group("G", "", &["alice"], &[]), "").await;
    let suite::Staged { plan, report, .. } =
        suite::plan_then::<Contensis>(&w, async |w: &World| {
            w.sim.contensis.insert_group("G", None, &["alice"], &[]);
        })
        .await;
    assert!(
        matches!(
            &plan.changes[..],
            [roster::plan::Change::RemoveMember { .. }]
        ),
        "{plan:?}"
    );
    assert!(
        matches!(&report.outcomes[&0], Outcome::AlreadyDone(why) if why == "not a member"),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_remove_from_a_group_that_vanished_is_a_failure_not_success() {
    let seed =
        format!("{USERS}\n[[contensis.group]]\nname = \"G\"\nmembers = [\"alice\", \"bob\"]\n");
    let w = World::new(&seed, &group("G", "", &["alice"], &[]), "").await;
    let id = w.sim.contensis.group("G").expect("G").id;
    let suite::Staged { report, .. } =
        suite::plan_then::<Contensis>(&w, async |w: &World| delete_over_api(w, &id).await).await;
    let Outcome::Failed(msg) = &report.outcomes[&0] else {
        panic!("a 404 for a missing group was taken as success: {report:?}");
    };
    assert!(
        msg.contains("404") && msg.contains("Group not found"),
        "{msg}"
    );
}

#[tokio::test]
async fn json_logs_carry_the_run_id_the_target_and_the_phase_of_each_line() {
    let w = World::new(USERS, &group("G", "", &["alice"], &[]), "").await;
    let out = support::roster_at(
        &w.config_path(),
        &["--log-format", "json", "apply"],
        &[("RUST_LOG", "debug")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let spans = |v: &serde_json::Value| -> Vec<String> {
        v["spans"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let planned = lines
        .iter()
        .find(|v| v["message"] == "planned")
        .expect("a `planned` line");
    let run_id = planned["spans"][0]["run_id"].as_str().expect("a run id");
    assert_eq!(run_id.len(), 32, "{planned}");
    assert_eq!(planned["spans"][1]["target"], "cms", "{planned}");
    // Lines inside a phase name it; every line of the run carries the same run id.
    assert!(
        lines
            .iter()
            .any(|v| spans(v).contains(&"observe".to_owned())),
        "no line inside the observe phase"
    );
    assert!(
        lines.iter().any(|v| spans(v).contains(&"apply".to_owned())),
        "no line inside the apply phase"
    );
    for v in lines.iter().filter(|v| !spans(v).is_empty()) {
        assert_eq!(v["spans"][0]["run_id"], run_id, "{v}");
    }
    // No ANSI colour when standard error is not a terminal.
    assert!(!stderr(&out).contains('\u{1b}'));
}

#[tokio::test]
async fn under_the_journal_text_logs_carry_no_timestamp_of_their_own() {
    let w = World::new(USERS, &group("G", "", &["alice"], &[]), "").await;
    let plain = support::roster_at(&w.config_path(), &["plan"], &[]).await;
    let journal =
        support::roster_at(&w.config_path(), &["plan"], &[("JOURNAL_STREAM", "8:1234")]).await;
    let first = |o: &std::process::Output| stderr(o).lines().next().unwrap_or_default().to_owned();
    // Without the journal a line starts with its time (`2026-…`); under it, with the level.
    assert!(first(&plain).starts_with("20"), "{}", first(&plain));
    assert!(
        first(&journal).trim_start().starts_with("INFO"),
        "{}",
        first(&journal)
    );
}

#[tokio::test]
async fn a_token_is_renewed_before_it_runs_out() {
    use roster::secret::Secret;
    use roster::target::oauth::{BearerSession, FormValue};
    // Tokens live 2 s, so roster renews them after 1 s (half their life, under the 60 s margin).
    let w = World::new(&format!("{USERS}\ntoken_ttl = \"2s\"\n"), "", "").await;
    let plain = |s: &str| FormValue::Plain(s.to_owned());
    let session = BearerSession::new(
        "cms",
        "/authenticate/connect/token",
        vec![
            ("grant_type", plain("client_credentials")),
            ("client_id", plain("roster")),
            ("client_secret", FormValue::Secret(Secret::new(SECRET))),
            (
                "scope",
                plain(roster::target::contensis::config::DEFAULT_SCOPE),
            ),
        ],
        "check the client id and secret",
    );
    let http = reqwest::Client::new();
    let base = w.sim.url();
    let first = session.token(&http, &base, None).await.expect("a token");
    let cached = session.token(&http, &base, None).await.expect("a token");
    assert_eq!(first, cached, "a fresh token is reused");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let renewed = session.token(&http, &base, None).await.expect("a token");
    assert_ne!(renewed, first, "not renewed although past half its life");
    let grants = w
        .sim
        .contensis
        .calls()
        .iter()
        .filter(|c| c.contains("/authenticate/connect/token"))
        .count();
    assert_eq!(grants, 2);
}

#[tokio::test]
async fn additive_membership_adds_the_desired_members_and_removes_nobody() {
    let seed =
        format!("{USERS}\n[[contensis.group]]\nname = \"G\"\nmembers = [\"alice\", \"erin\"]\n");
    let w = World::new(
        &seed,
        &group("G", "", &["alice", "bob"], &[]),
        "membership = \"additive\"",
    )
    .await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", suite::both(&out));
    let g = w.sim.contensis.group("G").expect("G");
    assert_eq!(
        g.members.iter().cloned().collect::<Vec<_>>(),
        ["alice", "bob", "erin"],
        "erin, a member the desired state lacks, was removed"
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn thousand_member_changes_take_the_fewest_calls() {
    // 10 groups of users u000..u049 that should hold u050..u099 instead: 50 adds and 50 removes
    // each, 1,000 member changes in all.
    let all: Vec<String> = (0..100).map(|i| format!("u{i:03}")).collect();
    let mut seed = format!("users = [{}]\n", toml_list(&all));
    let mut groups = String::new();
    let want = strs(&all[50..]);
    for i in 0..10 {
        seed += &format!(
            "[[contensis.group]]\nname = \"team{i}\"\nmembers = [{}]\n",
            toml_list(&all[..50])
        );
        groups += &group(&format!("team{i}"), "", &want, &[]);
    }
    let w = World::new(&seed, &groups, "max_deletes = 1000").await;
    let plan = w.plan().await;
    assert_eq!(
        plan.targets[0].plan.as_ref().expect("plan").changes.len(),
        1000
    );

    w.sim.contensis.clear_calls();
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let calls = w.sim.contensis.calls();
    let writes = Contensis::write_calls(&w).len();
    let reads = calls.len() - writes;
    // The minimum: Contensis adds a group's new members in one bulk POST, and removes one member
    // per DELETE (there is no bulk remove): 10 adds and 500 removes.
    let minimum = 10 + 500;
    eprintln!(
        "contensis: 1000 member changes: {writes} write calls (+{reads} reads), minimum {minimum}"
    );
    assert_eq!(writes, minimum, "{calls:#?}");
    // Reads: the group list, each group's members and children, and the GUIDs of the 50 desired
    // users no member list named (u050..u099) from the user list (a first page that tells the
    // count, then its 2 pages: 100 users and the API key) rather than 50 lookups; plus one token.
    assert_eq!(reads, 1 + 10 * 2 + (1 + 2) + 1, "{calls:#?}");
    assert_eq!(w.sim.contensis.writes(), minimum);
    for i in 0..10 {
        let g = w.sim.contensis.group(&format!("team{i}")).expect("team");
        assert_eq!(g.members.iter().cloned().collect::<Vec<_>>(), want);
    }
    assert!(!w.plan().await.any_changes());
}

/// A seed of group G (with alice, an auto-membership domain and a field roster does not know)
/// under these behaviour lines.
fn rich_seed(behaviour: &str) -> String {
    format!(
        "{USERS}\n[[contensis.group]]\nname = \"G\"\ndescription = \"old\"\nmembers = [\"alice\"]\n\
         auto_membership_email_domains = [\"fightclub.example\"]\n\
         [contensis.group.extra]\nnotificationEmail = \"ops@fightclub.example\"\n\
         [contensis.behaviour]\n{behaviour}\n"
    )
}

#[tokio::test]
async fn an_update_keeps_the_fields_roster_does_not_model_under_replace_and_merge() {
    for mode in ["replace", "merge"] {
        let w = World::new(
            &rich_seed(&format!("put_mode = \"{mode}\"")),
            &group("G", "new", &["alice"], &[]),
            "",
        )
        .await;
        let report = w.apply(None).await;
        assert_eq!(applied(&report).failures(), 0, "{mode}: {report:?}");
        let g = w.sim.contensis.group("G").expect("G");
        assert_eq!(g.description.as_deref(), Some("new"), "{mode}");
        assert_eq!(
            g.extra["autoMembershipEmailDomains"],
            serde_json::json!(["fightclub.example"]),
            "{mode}: the update wiped the auto-membership domains"
        );
        assert_eq!(
            g.extra["notificationEmail"],
            serde_json::json!("ops@fightclub.example"),
            "{mode}: the update wiped a field roster does not model"
        );
        // The body went back as read, with the description replaced, after a fresh read.
        let calls = w.sim.contensis.calls();
        let put = calls
            .iter()
            .position(|c| c.starts_with("PUT "))
            .expect("a PUT");
        assert!(
            calls[put - 1].starts_with("GET /api/security/groups/"),
            "{calls:?}"
        );
        assert!(!w.plan().await.any_changes());
    }
}

/// G holds alice; the desired G also holds bob, carol and dave. Between plan and apply, `meddle`
/// changes the simulator. Returns the world and the apply's report.
async fn bulk_add_after(behaviour: &str, meddle: fn(&World)) -> (World, roster::exec::ApplyReport) {
    let seed = format!(
        "{USERS}\n[[contensis.group]]\nname = \"G\"\nmembers = [\"alice\"]\n\
         [contensis.behaviour]\n{behaviour}\n"
    );
    let w = World::new(
        &seed,
        &group("G", "", &["alice", "bob", "carol", "dave"], &[]),
        "",
    )
    .await;
    let suite::Staged { report, .. } = suite::plan_then::<Contensis>(&w, async |w: &World| {
        meddle(w);
        w.sim.contensis.clear_calls();
    })
    .await;
    (w, report)
}

fn posts(w: &World) -> usize {
    w.sim
        .contensis
        .calls()
        .iter()
        .filter(|c| c.starts_with("POST ") && c.contains("/users"))
        .count()
}

#[tokio::test]
async fn a_bulk_add_finishes_when_someone_added_a_member_since_the_plan_under_every_answer() {
    for existing in ["ignore", "conflict", "bad_request"] {
        for partial in [true, false] {
            let behaviour =
                format!("bulk_add_existing = \"{existing}\"\nbulk_add_partial = {partial}");
            let (w, report) = bulk_add_after(&behaviour, |w| {
                w.sim
                    .contensis
                    .insert_group("G", None, &["alice", "bob"], &[]);
            })
            .await;
            assert_eq!(report.failures(), 0, "{behaviour}: {report:?}");
            let g = w.sim.contensis.group("G").expect("G");
            assert_eq!(
                g.members.iter().cloned().collect::<Vec<_>>(),
                ["alice", "bob", "carol", "dave"],
                "{behaviour}"
            );
            // One POST when the server took it; a second with only carol and dave when it
            // refused all of it.
            let want = if existing == "ignore" || partial {
                1
            } else {
                2
            };
            assert_eq!(
                posts(&w),
                want,
                "{behaviour}: {:?}",
                w.sim.contensis.calls()
            );
            assert!(!w.plan().await.any_changes(), "{behaviour}");
        }
    }
}

#[tokio::test]
async fn a_user_deleted_since_the_plan_fails_alone_and_the_others_are_added() {
    for partial in [true, false] {
        let behaviour = format!("bulk_add_unknown = \"not_found\"\nbulk_add_partial = {partial}");
        let (w, report) = bulk_add_after(&behaviour, |w| w.sim.contensis.remove_user("dave")).await;
        let Outcome::Failed(msg) = &report.outcomes[&0] else {
            panic!("{behaviour}: a 404 for a deleted user was taken as success: {report:?}");
        };
        assert!(
            msg.contains("404") && msg.contains("no longer exists: \"dave\""),
            "{behaviour}: {msg}"
        );
        assert!(!msg.contains("\"bob\""), "{behaviour}: {msg}");
        let g = w.sim.contensis.group("G").expect("G");
        assert_eq!(
            g.members.iter().cloned().collect::<Vec<_>>(),
            ["alice", "bob", "carol"],
            "{behaviour}"
        );
    }
    // A server that skips unknown ids answers 204: the others are added.
    let (w, report) = bulk_add_after("bulk_add_unknown = \"ignore\"", |w| {
        w.sim.contensis.remove_user("dave");
    })
    .await;
    assert_eq!(report.failures(), 0, "{report:?}");
    assert_eq!(w.sim.contensis.group("G").expect("G").members.len(), 3);
}

#[tokio::test]
async fn unknown_users_are_found_at_plan_time_and_never_sent() {
    let seed = format!("{USERS}\n[[contensis.group]]\nname = \"G\"\n");
    let w = World::new(&seed, &group("G", "", &["alice", "ghost"], &[]), "").await;
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let calls = w.sim.contensis.calls();
    assert!(
        !calls
            .iter()
            .any(|c| !c.starts_with("GET ") && c.contains("ghost"))
    );
    let g = w.sim.contensis.group("G").expect("G");
    assert_eq!(g.members.iter().cloned().collect::<Vec<_>>(), ["alice"]);
}

#[tokio::test]
async fn new_child_groups_are_added_in_one_bulk_call() {
    let seed = format!("{USERS}\n[[contensis.group]]\nname = \"Parent\"\n");
    let groups = group("Parent", "", &[], &["A", "B", "C"])
        + &group("A", "", &[], &[])
        + &group("B", "", &[], &[])
        + &group("C", "", &[], &[]);
    let w = World::new(&seed, &groups, "").await;
    w.plan().await;
    w.sim.contensis.clear_calls();
    let report = w.apply(None).await;
    assert!(!report.any_failed(), "{report:?}");
    let parent = w.sim.contensis.group("Parent").expect("Parent");
    assert_eq!(parent.children.len(), 3);
    let child_writes: Vec<String> = w
        .sim
        .contensis
        .calls()
        .into_iter()
        .filter(|c| !c.starts_with("GET ") && c.contains("/groups/") && c.ends_with("/groups"))
        .collect();
    assert_eq!(child_writes.len(), 1, "{child_writes:?}");
    assert!(child_writes[0].starts_with("POST "), "{child_writes:?}");
    assert!(!w.plan().await.any_changes());
}

/// `roster plan` fails with an `error:` line at `groups.toml:1:1` (the first group) saying
/// `has`, and nothing is written, not even by `roster apply`.
async fn plan_refuses(w: &World, has: &str) {
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    let text = suite::both(&out);
    let line = text
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| panic!("no error line: {text}"));
    assert!(line.contains("groups.toml:1:1"), "{line}");
    assert!(line.contains(has), "{line}");
    let out = w.roster(&["apply"]).await;
    assert_ne!(out.status.code(), Some(0), "{}", suite::both(&out));
    let refused = w
        .sim
        .contensis
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("POST ") && c.contains("/groups/") && c.ends_with("/groups"))
        .count();
    assert_eq!(refused, 0, "the refused child was sent");
}

#[tokio::test]
async fn a_child_that_would_make_a_cycle_is_a_plan_error() {
    // Additive: B holds A on the server, and is kept; adding B to A would close the loop.
    let seed = format!(
        "{USERS}\n[[contensis.group]]\nname = \"A\"\n[[contensis.group]]\nname = \"B\"\n\
         children = [\"A\"]\n"
    );
    let groups = group("A", "", &[], &["B"]) + &group("B", "", &[], &[]);
    let w = World::new(&seed, &groups, "membership = \"additive\"").await;
    plan_refuses(&w, "cycle").await;

    // Through a group outside the scope: A holds Y (not in the desired state), Y holds B. The
    // plan removes Y from A, but may add A to B first, which the server refuses.
    let seed = format!(
        "{USERS}\n[[contensis.group]]\nname = \"A\"\nchildren = [\"Y\"]\n\
         [[contensis.group]]\nname = \"Y\"\nchildren = [\"B\"]\n[[contensis.group]]\nname = \"B\"\n"
    );
    let groups = group("B", "", &[], &["A"]) + &group("A", "", &[], &[]);
    let w = World::new(&seed, &groups, "").await;
    plan_refuses(&w, "\"A\" already contains \"B\"").await;
}

#[tokio::test]
async fn an_account_outside_system_administrators_fails_the_plan_and_says_why() {
    let w = World::new(
        &format!("client_is_admin = false\n{USERS}"),
        &group("G", "", &["alice"], &[]),
        "",
    )
    .await;
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", suite::both(&out));
    let text = suite::both(&out);
    assert!(
        text.contains("403") && text.contains("member of the System Administrators group"),
        "{text}"
    );
    assert_eq!(w.sim.contensis.writes(), 0);
}

#[tokio::test]
async fn a_bulk_add_whose_answer_was_lost_is_sent_again_safely_under_every_answer() {
    for existing in ["ignore", "conflict", "bad_request"] {
        let seed = format!(
            "{USERS}\n[[contensis.group]]\nname = \"G\"\nmembers = [\"alice\"]\n\
             [contensis.behaviour]\nbulk_add_existing = \"{existing}\"\n"
        );
        let w = World::new(&seed, &group("G", "", &["alice", "bob", "carol"], &[]), "").await;
        // The bulk add lands, but its answer never comes back: the executor sends it again.
        w.sim.contensis.set_faults(Faults {
            drop_after_write: 1,
            ..Faults::default()
        });
        let report = w.apply(None).await;
        assert_eq!(applied(&report).failures(), 0, "{existing}: {report:?}");
        assert_eq!(posts(&w), 2, "{existing}: {:?}", w.sim.contensis.calls());
        let g = w.sim.contensis.group("G").expect("G");
        assert_eq!(
            g.members.iter().cloned().collect::<Vec<_>>(),
            ["alice", "bob", "carol"],
            "{existing}"
        );
        assert!(!w.plan().await.any_changes(), "{existing}");
    }
}

#[tokio::test]
async fn group_bodies_contensis_would_refuse_fail_the_plan_at_their_origin() {
    // A blank name, and custom data that is not a string: the server refuses both with 422.
    for (bad, at) in [
        ("[[group]]\nname = \" \"\n", "groups.toml:2:8"),
        (
            "[[group]]\nname = \"G\"\n[group.contensis]\ncustom = { n = 1 }\n",
            "groups.toml:4:",
        ),
    ] {
        let w = World::new(USERS, bad, "").await;
        let out = w.roster(&["plan"]).await;
        let text = suite::both(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains("loading the desired state failed") && text.contains(at),
            "{at}: {text}"
        );
        let out = w.roster(&["apply"]).await;
        assert_ne!(out.status.code(), Some(0), "{}", suite::both(&out));
        assert_eq!(w.sim.contensis.writes(), 0, "{bad}");
    }
}

#[tokio::test]
async fn an_apply_under_a_quota_waits_as_told_and_converges() {
    // Twelve groups of two members: 24 changes, more calls than the quota allows at once.
    let groups: String = (0..12)
        .map(|i| group(&format!("Q{i:02}"), "", &["alice", "bob"], &[]))
        .collect();
    let w = World::new(USERS, &groups, "concurrency = 4").await;
    w.sim.contensis.set_faults(Faults {
        quota: Some(roster::retry::RateLimit {
            rate: "20/s".parse().expect("a rate"),
            burst: 4,
        }),
        ..Faults::default()
    });
    let start = std::time::Instant::now();
    let report = w.apply(None).await;
    // Retry-After (one second) was honoured: the retries waited rather than failed.
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    for i in 0..12 {
        let g = w.sim.contensis.group(&format!("Q{i:02}")).expect("created");
        assert_eq!(g.members.len(), 2);
    }
    assert!(
        start.elapsed() >= std::time::Duration::from_secs(1),
        "the quota never pushed back"
    );
    assert!(w.sim.contensis.throttled() > 0, "no call met the quota");
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_declared_rate_within_the_quota_meets_no_429_and_keeps_near_its_pace() {
    let groups: String = (0..40)
        .map(|i| group(&format!("R{i:02}"), "", &["alice"], &[]))
        .collect();
    // The API allows 40 calls a second, 5 at once; roster is told 40/s, 4 at once.
    let w = World::new(
        USERS,
        &groups,
        "concurrency = 8\nrate_limit = \"40/s\"\nburst = 4",
    )
    .await;
    w.sim.contensis.set_faults(Faults {
        quota: Some(roster::retry::RateLimit {
            rate: "40/s".parse().expect("a rate"),
            burst: 5,
        }),
        ..Faults::default()
    });
    let start = std::time::Instant::now();
    let report = w.apply(None).await;
    let took = start.elapsed();
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    assert_eq!(
        w.sim.contensis.throttled(),
        0,
        "a paced call went over the quota"
    );
    // The pace held: the API calls made, at 40 a second, take at least their share of time,
    // and not much more (0.9 of the quota's throughput at least).
    let calls = w.sim.contensis.calls().len();
    let bound = std::time::Duration::from_millis(25) * u32::try_from(calls).expect("calls");
    assert!(calls >= 80, "{calls} calls");
    assert!(
        took >= bound.mul_f64(0.8)
            && took <= bound.mul_f64(1.0 / 0.9) + std::time::Duration::from_millis(500),
        "{calls} calls in {took:?}; at 40/s: {bound:?}"
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn without_a_declared_rate_the_pace_adapts_to_the_quota_with_few_429s() {
    // 300 groups gain 10 members each: about 900 calls (the read, then one bulk add per group),
    // 8 at once, against an API that allows 150 calls a second, 10 at once, and says nothing of
    // it beforehand.
    let users: Vec<String> = (0..10).map(|u| format!("u{u:02}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut seed = format!("users = {users:?}\n");
    let mut groups = String::new();
    for g in 0..300 {
        seed.push_str(&format!("[[contensis.group]]\nname = \"A{g:03}\"\n"));
        groups.push_str(&group(&format!("A{g:03}"), "", &names, &[]));
    }
    let w = World::new(&seed, &groups, "concurrency = 8").await;
    let quota = 150.0;
    let counted_429s = || -> u64 {
        roster::target::http::api_calls()
            .iter()
            .filter(|(t, status, _)| t == w.target_name() && *status == 429)
            .map(|(_, _, n)| n)
            .sum()
    };
    let before = counted_429s();
    w.sim.contensis.set_faults(Faults {
        quota: Some(roster::retry::RateLimit {
            rate: "150/s".parse().expect("a rate"),
            burst: 10,
        }),
        ..Faults::default()
    });
    let start = std::time::Instant::now();
    let report = w.apply(None).await;
    let took = start.elapsed().as_secs_f64();
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let calls = w.sim.contensis.calls().len();
    let throttled = usize::try_from(w.sim.contensis.throttled()).expect("a count");
    let served = calls - throttled;
    assert!(served >= 900, "{served} calls served");
    assert!(
        throttled > 0,
        "the quota never pushed back: nothing adapted"
    );
    // `roster_api_calls_total{status="429"}` saw them (other tests of this binary may add to
    // the same target name, never take away).
    assert!(
        counted_429s() - before >= throttled as u64,
        "the 429s are not counted for the metrics"
    );
    assert!(
        (throttled as f64) < 0.02 * calls as f64,
        "{throttled} of {calls} calls answered 429"
    );
    // The run's pace: most of what the quota allows over its length (the first burst
    // included). A run this short pays its first second of learning and each refused call's
    // whole-second Retry-After in full; `cargo bench --bench quota` measures the long-run share.
    let allowed = quota * took + 10.0;
    eprintln!(
        "{served} served, {throttled} of {calls} answered 429, in {took:.2} s: {:.2} of the quota",
        served as f64 / allowed
    );
    assert!(
        served as f64 >= 0.7 * allowed,
        "{served} calls served in {took:.2} s; the quota allowed {allowed:.0}"
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn an_external_group_is_warned_and_neither_read_nor_changed() {
    // Contensis keeps an external group's members in its identity provider: roster must not
    // read them as drift, nor send a change it would refuse.
    let seed = format!(
        "{USERS}\n[[contensis.group]]\nname = \"Staff\"\ntype = \"external\"\nmembers = [\"bob\"]\n\
         [contensis.behaviour]\nprotect_system_groups = true\n"
    );
    let w = World::new(&seed, &group("Staff", "", &["alice"], &[]), "").await;
    w.sim.contensis.clear_calls();
    let plan = w.plan().await;
    let warnings = &plan.targets[0].plan.as_ref().expect("plan").warnings;
    assert!(!plan.any_changes(), "{plan:?}");
    assert!(
        warnings
            .iter()
            .any(|x| x.message.contains("\"Staff\" is an external group")),
        "{warnings:?}"
    );
    let id = w.sim.contensis.group("Staff").expect("Staff").id;
    assert!(
        !w.sim.contensis.calls().iter().any(|c| c.contains(&id)),
        "an external group's members were read: {:?}",
        w.sim.contensis.calls()
    );
    let report = w.apply(None).await;
    assert_eq!(applied(&report).failures(), 0, "{report:?}");
    let staff = w.sim.contensis.group("Staff").expect("Staff");
    assert_eq!(staff.members.iter().cloned().collect::<Vec<_>>(), ["bob"]);
}

/// The user reads a plan makes to find the GUIDs of `wanted` desired users that no member list
/// names, on a Contensis of `users` users (and the API key's own): `GET /api/security/users...`
/// lines, in order.
async fn user_reads(users: usize, wanted: usize) -> Vec<String> {
    let all: Vec<String> = (0..users).map(|i| format!("u{i:03}")).collect();
    let seed = format!(
        "users = [{}]\n[[contensis.group]]\nname = \"G\"\nmembers = [\"u000\"]\n",
        toml_list(&all)
    );
    let w = World::new(&seed, &group("G", "", &strs(&all[..=wanted]), &[]), "").await;
    w.sim.contensis.clear_calls();
    let plan = w.plan().await;
    assert_eq!(
        plan.any_changes(),
        wanted > 0,
        "{users} users, {wanted} to find: {plan:?}"
    );
    w.sim
        .contensis
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("GET /api/security/users"))
        .collect()
}

#[tokio::test]
async fn desired_users_are_found_by_the_list_only_when_it_takes_fewer_calls_than_lookups() {
    let first = "GET /api/security/users?pageIndex=0&pageSize=100";
    let second = "GET /api/security/users?pageIndex=1&pageSize=100";
    // Every desired user a member already: nothing to find.
    assert_eq!(user_reads(10, 0).await, Vec::<String>::new());
    // One to find: one lookup beats reading the list.
    assert_eq!(user_reads(10, 1).await, ["GET /api/security/users/u001"]);
    // Two, and the list fits one page: that page alone, read once.
    assert_eq!(user_reads(10, 2).await, [first]);
    // 101 users take 2 pages: for 2 users, as many calls as the lookups, so the lookups (after
    // the first page that told the count).
    let two = user_reads(100, 2).await;
    assert_eq!(
        two,
        [
            first,
            "GET /api/security/users/u001",
            "GET /api/security/users/u002"
        ],
        "{two:?}"
    );
    // For 3, the 2 pages are fewer.
    assert_eq!(user_reads(100, 3).await, [first, first, second]);
}

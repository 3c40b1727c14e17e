//! End to end against the Contensis simulator over real HTTP: plan, apply, the safety rules, and
//! convergence after faults. Each test names the rule it would catch breaking.

mod support;

use std::time::{Duration, Instant};

use roster::exec::Outcome;
use roster::reconcile::TargetOutcome;
use roster::sim::faults::Faults;
use support::{SECRET, World, group, stderr, stdout};

const USERS: &str = r#"users = ["alice", "bob", "carol", "dave", "erin"]"#;

fn applied(report: &roster::run::RunReport) -> &roster::exec::ApplyReport {
    match &report.targets[0].outcome {
        TargetOutcome::Applied(r) => r,
        other => panic!("expected an apply, got {other:?}"),
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
async fn a_500_on_the_second_page_of_groups_means_zero_writes() {
    let mut seed = USERS.to_owned();
    let mut groups = String::new();
    for i in 0..150 {
        seed += &format!("\n[[contensis.group]]\nname = \"g{i:03}\"\n");
        groups += &group(&format!("g{i:03}"), "wanted", &["alice"], &[]);
    }
    let w = World::new(&seed, &groups, "retries = 1").await;
    w.sim.contensis.set_faults(Faults {
        error_rate: 1.0,
        fail_path: Some("pageIndex=1".into()),
        ..Faults::default()
    });
    let report = w.apply(None).await;
    let TargetOutcome::ObserveFailed(e) = &report.targets[0].outcome else {
        panic!(
            "expected a failed read, got {:?}",
            report.targets[0].outcome
        );
    };
    let msg = e.to_string();
    assert!(msg.contains("cms: GET /api/security/groups: 500"), "{msg}");
    assert_eq!(w.sim.contensis.writes(), 0);
    assert!(report.any_failed());
}

#[tokio::test]
async fn more_removals_than_max_deletes_exits_3_and_writes_nothing() {
    let members: Vec<String> = (0..101).map(|i| format!("u{i:03}")).collect();
    let seed = format!(
        "[[contensis.group]]\nname = \"Big\"\nmembers = [{}]\n",
        members
            .iter()
            .map(|m| format!("{m:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let w = World::new(&seed, &group("Big", "", &[], &[]), "max_deletes = 100").await;
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
    assert_eq!(w.sim.contensis.writes(), 0);
    assert_eq!(
        w.sim.contensis.group("Big").expect("Big").members.len(),
        101
    );

    // Exactly at the raised limit the apply goes through.
    let out = w.roster(&["apply", "--max-deletes", "101"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        w.sim
            .contensis
            .group("Big")
            .expect("Big")
            .members
            .is_empty()
    );
}

#[tokio::test]
async fn an_empty_source_against_managed_groups_is_refused() {
    let seed =
        "[[contensis.group]]\nname = \"a\"\nmembers = [\"x\"]\n[[contensis.group]]\nname = \"b\"\n";
    let w = World::new(seed, "", "groups = [\"*\"]\nprune = true").await;
    let out = w.roster(&["apply"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("the source returned no groups"),
        "{}",
        stdout(&out)
    );
    assert_eq!(w.sim.contensis.writes(), 0);
    assert!(w.sim.contensis.group("a").is_some());
}

#[tokio::test]
async fn a_connection_dropped_after_a_create_adopts_the_group_without_a_duplicate() {
    let w = World::new(USERS, &group("New", "fresh", &["alice", "bob"], &[]), "").await;
    w.sim.contensis.set_faults(Faults {
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
    let names = w.sim.contensis.group_names();
    assert_eq!(
        names.iter().filter(|n| n.as_str() == "New").count(),
        1,
        "{names:?}"
    );
    let posts = w
        .sim
        .contensis
        .calls()
        .iter()
        .filter(|c| c.starts_with("POST /api/security/groups"))
        .count();
    assert_eq!(posts, 1, "the create was sent twice");
    assert_eq!(w.sim.contensis.group("New").expect("New").members.len(), 2);
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_fault_run_converges_on_the_second_apply_and_the_third_plan_is_empty() {
    let mut seed = USERS.to_owned();
    let mut groups = String::new();
    for i in 0..12 {
        seed += &format!("\n[[contensis.group]]\nname = \"t{i:02}\"\nmembers = [\"erin\"]\n");
        groups += &group(&format!("t{i:02}"), "team", &["alice", "bob", "carol"], &[]);
    }
    for i in 0..4 {
        groups += &group(&format!("new{i}"), "new", &["dave"], &["t00"]);
    }
    let w = World::new(&seed, &groups, "retries = 1").await;
    w.sim.contensis.set_faults(Faults {
        error_rate: 0.3,
        throttle_rate: 0.1,
        retry_after: Duration::from_secs(0),
        drop_after_write: 3,
        latency: Some(Duration::from_millis(2)),
        seed: 7,
        ..Faults::default()
    });
    // The first run may fail part-way (or not even read); it must leave a valid state.
    let _ = w.apply(None).await;
    w.sim.contensis.set_faults(Faults::default());
    let second = w.apply(None).await;
    assert!(!second.any_failed(), "{second:?}");
    let third = w.plan().await;
    assert!(
        !third.any_changes(),
        "{}",
        roster::report::plans(&third, roster::plan::render::Format::Text)
    );
    for i in 0..4 {
        let names = w.sim.contensis.group_names();
        let n = format!("new{i}");
        assert_eq!(
            names.iter().filter(|x| **x == n).count(),
            1,
            "duplicate {n}"
        );
    }
}

#[tokio::test]
async fn a_token_that_expires_mid_run_is_renewed() {
    let mut groups = String::new();
    for i in 0..5 {
        groups += &group(&format!("g{i}"), "", &["alice", "bob"], &[]);
    }
    let w = World::new(USERS, &groups, "").await;
    w.sim.contensis.set_faults(Faults {
        expire_tokens_after: 4,
        ..Faults::default()
    });
    let report = w.apply(None).await;
    assert!(!report.any_failed(), "{report:?}");
    let tokens = w
        .sim
        .contensis
        .calls()
        .iter()
        .filter(|c| c.contains("/authenticate/connect/token"))
        .count();
    assert!(
        tokens >= 2,
        "the token was not renewed: {tokens} token calls"
    );
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let seed = format!("{USERS}\n[[contensis.group]]\nname = \"G\"\n");
    let w = World::new(&seed, &group("G", "", &["alice"], &[]), "concurrency = 1").await;
    let g_id = w.sim.contensis.group("G").expect("G").id;
    // Let the reads through, then throttle the member write until the first 429 is answered.
    w.sim.contensis.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after: Duration::from_secs(1),
        fail_path: Some(format!("/groups/{g_id}/users/")),
        ..Faults::default()
    });
    let started = Instant::now();
    let sim = w.sim.contensis.clone();
    let lift = tokio::spawn(async move {
        // Lift the throttle once the first 429 has been answered.
        for _ in 0..200 {
            if sim
                .calls()
                .iter()
                .any(|c| c.starts_with("PUT ") && c.contains("/users/"))
            {
                sim.set_faults(Faults::default());
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
    assert!(
        w.sim
            .contensis
            .group("G")
            .expect("G")
            .members
            .contains("alice")
    );
}

#[tokio::test]
async fn one_failed_change_does_not_stop_the_others_and_the_error_says_where() {
    let seed =
        format!("{USERS}\n[[contensis.group]]\nname = \"A\"\n[[contensis.group]]\nname = \"B\"\n");
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
    let out = w.roster(&["apply"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_default();
    assert!(
        line.contains(&format!("cms: PUT /api/security/groups/{a_id}/users/")),
        "{text}"
    );
    assert!(
        line.contains("(group \"A\")") && line.contains("400"),
        "{text}"
    );
    assert!(
        w.sim
            .contensis
            .group("B")
            .expect("B")
            .members
            .contains("bob")
    );
    assert!(
        !w.sim
            .contensis
            .group("A")
            .expect("A")
            .members
            .contains("alice")
    );
}

#[tokio::test]
async fn system_groups_and_unknown_users_are_warnings_not_failures() {
    let w = World::new(
        USERS,
        &(group("System Administrators", "", &["alice"], &[])
            + &group("G", "", &["alice", "ghost"], &[])),
        "",
    )
    .await;
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\"System Administrators\" is a system group"),
        "{text}"
    );
    assert!(text.contains("user \"ghost\" does not exist"), "{text}");
    let out = w.roster(&["apply"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let admins = w.sim.contensis.group("System Administrators").expect("sys");
    assert!(!admins.members.contains("alice"));
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
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
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = w.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("No changes. Targets are in sync."));
}

#[tokio::test]
async fn secrets_never_reach_logs_plans_or_debug_output() {
    let w = World::new(USERS, &group("G", "d", &["alice"], &[]), "").await;
    let config = w.config();
    assert!(
        !format!("{config:?}").contains(SECRET),
        "Debug of the config shows the secret"
    );
    for args in [
        &["plan"][..],
        &["plan", "--format", "json"][..],
        &["plan", "--format", "markdown"][..],
        &["apply"][..],
    ] {
        let out = support::roster_at(&w.config_path(), args, &[("RUST_LOG", "trace")]).await;
        assert!(
            !stdout(&out).contains(SECRET),
            "{args:?} printed the secret"
        );
        assert!(!stderr(&out).contains(SECRET), "{args:?} logged the secret");
    }
    // A wrong secret fails closed with a clear message, and without echoing it.
    std::fs::write(w.dir.path().join("secret"), "wrong-secret-123\n").expect("write");
    let out = w.roster(&["plan"]).await;
    assert_eq!(out.status.code(), Some(1));
    let all = stdout(&out) + &stderr(&out);
    assert!(all.contains("authentication failed"), "{all}");
    assert!(!all.contains("wrong-secret-123"), "{all}");
}

/// Drives observe → plan → compile → execute by hand, so that the target can change in between,
/// as another writer would change it.
async fn plan_then(
    w: &World,
    between: impl AsyncFnOnce(&World),
) -> (roster::plan::Plan, roster::exec::ApplyReport) {
    use roster::target::Target;
    let target = support::contensis(w);
    let config = w.config();
    let desired = roster::source::load_desired(&config.sources)
        .await
        .expect("desired");
    let policy = roster::run::policy(&config.targets[0], &desired, true, None);
    let observed = target
        .observe(&policy.scope, &desired.user_keys())
        .await
        .expect("observe");
    let plan = roster::plan::plan(
        "cms",
        "contensis",
        &desired,
        &observed,
        &policy,
        target.capabilities(),
    );
    between(w).await;
    let calls = target.compile(&plan, &observed);
    let exec = roster::exec::Executor::new(
        roster::exec::RetryPolicy::default(),
        config.targets[0].concurrency,
    );
    let report = exec.execute(&target, calls).await;
    (plan, report)
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
    let (plan, report) = plan_then(&w, async |w: &World| {
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
    let (plan, report) = plan_then(&w, async |w: &World| {
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
    let (_, report) = plan_then(&w, async |w: &World| delete_over_api(w, &id).await).await;
    let Outcome::Failed(msg) = &report.outcomes[&0] else {
        panic!("a 404 for a missing group was taken as success: {report:?}");
    };
    assert!(
        msg.contains("404") && msg.contains("Group not found"),
        "{msg}"
    );
}

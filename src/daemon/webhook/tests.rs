//! The notifications a run makes (outcome, summary, refusals, failures with their calls, the
//! one-line text), the signature, what is retried, and that nothing shows a webhook's URL.

use std::collections::BTreeSet;

use super::*;
use crate::exec::ApplyReport;
use crate::plan::{Change, Plan, PlanError, Refusal, Summary};
use crate::target::CallError;

fn target(name: &str, outcome: TargetOutcome, changes: Vec<Change>) -> TargetReport {
    TargetReport {
        fingerprint: None,
        target: name.to_owned(),
        plan: Some(Plan {
            target: name.to_owned(),
            summary: Summary::of(&changes),
            changes,
            ..Plan::default()
        }),
        outcome,
        durations: Vec::new(),
    }
}

fn remove(group: &str, member: &str) -> Change {
    Change::RemoveMember {
        group: group.into(),
        member: member.into(),
    }
}

fn add(group: &str, member: &str) -> Change {
    Change::AddMember {
        group: group.into(),
        member: member.into(),
    }
}

fn run(targets: Vec<TargetReport>) -> RunReport {
    RunReport {
        run_id: "r1".to_owned(),
        targets,
        ..RunReport::default()
    }
}

fn applied(outcomes: Vec<Outcome>) -> TargetOutcome {
    TargetOutcome::Applied(ApplyReport {
        outcomes: outcomes.into_iter().enumerate().collect(),
        attempts: 1,
    })
}

const FORBIDDEN: &str =
    "cms: DELETE /api/security/groups/3f/users/9b (group \"A\"): 403: Forbidden";

#[test]
fn the_call_is_read_from_a_failed_calls_message() {
    assert_eq!(
        call_of(FORBIDDEN, "cms").as_deref(),
        Some("DELETE /api/security/groups/3f/users/9b")
    );
    assert_eq!(
        call_of("cms: GET /api/security/groups: 500: oops", "cms").as_deref(),
        Some("GET /api/security/groups")
    );
    // Not a call: refused at plan time, another target's prefix, no method.
    assert_eq!(call_of("refused at plan time: no e-mail", "cms"), None);
    assert_eq!(call_of(FORBIDDEN, "dns"), None);
    assert_eq!(call_of("cms: timed out", "cms"), None);
    assert_eq!(call_of("cms: FETCH /x: 500", "cms"), None);
}

#[test]
fn a_refused_plan_says_which_rule_and_why() {
    let refusal = Refusal::TooManyDeletes {
        removals: 2,
        limit: 1,
    };
    let report = run(vec![target(
        "cms",
        TargetOutcome::Refused(refusal.clone()),
        vec![remove("A", "bob"), remove("A", "carol"), add("B", "dave")],
    )]);
    let p = payloads(Ok(&report), Mode::Apply);
    assert_eq!(p.len(), 1);
    let p = &p[0];
    assert_eq!(p.outcome, NotifyOutcome::Refused);
    assert_eq!(p.run_id.as_deref(), Some("r1"));
    assert_eq!(p.target.as_deref(), Some("cms"));
    assert_eq!(
        p.refusals,
        [RefusalNote {
            kind: "too_many_deletes".into(),
            reason: refusal.to_string()
        }]
    );
    assert!(p.failures.is_empty());
    assert_eq!(
        (p.summary.add, p.summary.remove, p.summary.applied),
        (1, 2, 0)
    );
    assert_eq!(p.text, format!("roster: cms: refused: {refusal}"));
    assert!(p.wanted_by(&BTreeSet::from([NotifyOutcome::Refused])));
    assert!(!p.wanted_by(&BTreeSet::from([
        NotifyOutcome::Failed,
        NotifyOutcome::Applied
    ])));

    // The same in a dry run says so.
    let p = payloads(Ok(&report), Mode::Plan);
    assert!(p[0].dry_run);
    assert!(
        p[0].text
            .starts_with("roster: cms: refused (dry run): the plan removes 2")
    );
}

#[test]
fn failed_changes_are_listed_once_per_call_with_their_group_and_call() {
    let changes = vec![
        remove("A", "bob"),
        remove("A", "carol"),
        add("B", "dave"),
        add("C", "erin"),
    ];
    let report = run(vec![target(
        "cms",
        applied(vec![
            // One call carried both removes of A.
            Outcome::Failed(FORBIDDEN.to_owned()),
            Outcome::Failed(FORBIDDEN.to_owned()),
            Outcome::Applied,
            Outcome::Skipped("run stopped".to_owned()),
        ]),
        changes,
    )]);
    let p = payloads(Ok(&report), Mode::Apply).remove(0);
    assert_eq!(p.outcome, NotifyOutcome::Failed);
    assert_eq!(
        p.failures,
        [
            FailureNote {
                target: Some("cms".into()),
                group: Some("A".into()),
                call: Some("DELETE /api/security/groups/3f/users/9b".into()),
                message: FORBIDDEN.into(),
            },
            FailureNote {
                target: Some("cms".into()),
                group: Some("C".into()),
                call: None,
                message: "not sent: run stopped".into(),
            },
        ]
    );
    assert_eq!(
        p.summary,
        PayloadSummary {
            add: 2,
            change: 0,
            remove: 2,
            applied: 1,
            failed: 2,
            skipped: 1
        }
    );
    assert_eq!(
        p.text,
        format!("roster: cms: failed: 3 of 4 changes failed, 1 applied; first: {FORBIDDEN}")
    );
    assert!(!p.wanted_by(&BTreeSet::from([
        NotifyOutcome::Applied,
        NotifyOutcome::Refused
    ])));
}

#[test]
fn failures_are_capped_and_the_rest_counted() {
    let n = MAX_FAILURES + 5;
    let changes: Vec<Change> = (0..n).map(|i| add(&format!("g{i}"), "x")).collect();
    let outcomes = (0..n)
        .map(|i| Outcome::Failed(format!("cms: PUT /g/{i}: 500: no")))
        .collect();
    let report = run(vec![target("cms", applied(outcomes), changes)]);
    let p = payloads(Ok(&report), Mode::Apply).remove(0);
    assert_eq!(p.failures.len(), MAX_FAILURES);
    assert_eq!(p.failures_omitted, 5);
}

#[test]
fn an_unread_target_names_the_failed_read() {
    let e = CallError {
        target: "cms".into(),
        group: None,
        method: "GET".into(),
        path: "/api/security/groups".into(),
        kind: CallErrorKind::Status {
            status: 500,
            message: "Internal Server Error".into(),
            retry_after: None,
        },
    };
    let mut t = target("cms", TargetOutcome::ObserveFailed(e.into()), Vec::new());
    t.plan = None;
    let p = payloads(Ok(&run(vec![t])), Mode::Plan).remove(0);
    assert_eq!(p.outcome, NotifyOutcome::Failed);
    assert_eq!(
        p.failures[0].call.as_deref(),
        Some("GET /api/security/groups")
    );
    assert_eq!(
        p.text,
        "roster: cms: failed (dry run): could not read the target: cms: GET \
         /api/security/groups: 500: Internal Server Error"
    );
}

#[test]
fn a_refused_plan_with_errors_is_failed_and_still_lists_the_refusal() {
    let mut t = target(
        "dns",
        TargetOutcome::Refused(Refusal::EmptySource { managed: 3 }),
        vec![add("A", "x")],
    );
    if let Some(p) = &mut t.plan {
        p.errors = vec![PlanError {
            group: "A".into(),
            change: Some(0),
            at: Some("g.toml:1:1".into()),
            message: "no e-mail".into(),
        }];
    }
    let p = payloads(Ok(&run(vec![t])), Mode::Plan).remove(0);
    assert_eq!(p.outcome, NotifyOutcome::Failed);
    assert_eq!(p.refusals.len(), 1);
    assert_eq!(p.failures[0].message, "group \"A\" (g.toml:1:1): no e-mail");
    // Sent to those who asked for refusals only, too.
    assert!(p.wanted_by(&BTreeSet::from([NotifyOutcome::Refused])));
    assert!(
        p.text
            .contains("; also refused: the source returned no groups"),
        "{}",
        p.text
    );
}

#[test]
fn applied_is_sent_for_changes_only_and_never_in_a_dry_run() {
    let changes = vec![add("A", "x"), remove("A", "y")];
    let report = run(vec![
        target(
            "cms",
            applied(vec![Outcome::Applied, Outcome::AlreadyDone("gone".into())]),
            changes.clone(),
        ),
        target("dns", applied(Vec::new()), Vec::new()),
        target("studio", TargetOutcome::Planned, changes),
    ]);
    let p = payloads(Ok(&report), Mode::Apply);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].outcome, NotifyOutcome::Applied);
    assert_eq!(
        p[0].text,
        "roster: cms: applied: 2 changes (1 to add, 0 to change, 1 to remove)"
    );
    assert!(!p[0].wanted_by(&BTreeSet::from([
        NotifyOutcome::Refused,
        NotifyOutcome::Failed
    ])));
}

#[test]
fn a_run_that_could_not_start_is_one_failure_without_target() {
    let e = RunError::UnknownTarget("x".into(), "cms".into());
    let p = payloads(Err(&e), Mode::Apply);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].target.as_ref(), p[0].run_id.as_ref()), (None, None));
    assert_eq!(p[0].outcome, NotifyOutcome::Failed);
    let json = serde_json::to_value(&p[0]).unwrap_or_default();
    assert_eq!(json["target"], serde_json::Value::Null);
    assert_eq!(json["failures"][0]["message"], e.to_string());
    assert_eq!(
        p[0].text,
        "roster: failed: the run could not start: no target named \"x\" in the config \
         (targets: cms)"
    );
}

#[test]
fn text_is_one_bounded_line() {
    assert_eq!(line("a\n  b\tc "), "a b c");
    let long = "x".repeat(MAX_TEXT * 2);
    let cut = line(&long);
    assert_eq!(cut.chars().count(), MAX_TEXT);
    assert!(cut.ends_with('…'));
}

/// RFC 4231, test case 2.
#[test]
fn the_signature_is_hmac_sha256_in_lower_case_hex() {
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn only_what_may_pass_is_retried() {
    let status = |status| CallErrorKind::Status {
        status,
        message: String::new(),
        retry_after: None,
    };
    for s in [408, 429, 500, 502, 503, 504, 599] {
        assert!(transient(&status(s)), "{s}");
    }
    for s in [301, 400, 401, 403, 404, 410, 422] {
        assert!(!transient(&status(s)), "{s}");
    }
    assert!(transient(&CallErrorKind::Timeout));
    assert!(transient(&CallErrorKind::Connect("refused".into())));
}

#[test]
fn debug_and_transport_errors_show_the_host_only() {
    let hook = NotifyConfig::webhook(
        "https://hooks.example.com/services/T0/B0/t0k3n",
        &[NotifyOutcome::Failed],
    );
    let n = Notifier::new(std::slice::from_ref(&hook));
    let shown = format!("{n:?} {hook:?}");
    assert!(shown.contains("https://hooks.example.com"), "{shown}");
    assert!(!shown.contains("t0k3n"), "{shown}");
    let e = scrub(
        CallErrorKind::Connect(format!("dns error for {}", hook.url.expose())),
        &hook,
    );
    assert_eq!(
        e.to_string(),
        "connection failed: dns error for https://hooks.example.com"
    );
}

/// Outside a runtime (or with no [[notify]]) nothing is sent, and nothing panics.
#[test]
fn without_a_runtime_nothing_is_queued() {
    let hook = NotifyConfig::webhook("http://127.0.0.1:9/x", &NotifyOutcome::ALL);
    let n = Notifier::new(&[hook]);
    let e = RunError::UnknownTarget("x".into(), "cms".into());
    n.run_finished(Err(&e), Mode::Apply);
    assert_eq!(n.pending(), 0);
    Notifier::new(&[]).run_finished(Err(&e), Mode::Apply);
}

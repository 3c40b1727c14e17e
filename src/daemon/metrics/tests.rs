//! The metrics' numbers, their exposition text and health.

use std::collections::BTreeMap;

use super::*;
use crate::exec::ApplyReport;
use crate::plan::{Change, Plan, Refusal, Summary};
use crate::source::SourceError;
use crate::target::ObserveError;

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn add(group: &str, member: &str) -> Change {
    Change::AddMember {
        group: group.into(),
        member: member.into(),
    }
}

fn remove(group: &str, member: &str) -> Change {
    Change::RemoveMember {
        group: group.into(),
        member: member.into(),
    }
}

fn plan(target: &str, changes: Vec<Change>) -> Plan {
    Plan {
        target: target.to_owned(),
        summary: Summary::of(&changes),
        changes,
        ..Plan::default()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn planned(target: &str, changes: Vec<Change>) -> TargetReport {
    TargetReport {
        fingerprint: None,
        target: target.to_owned(),
        plan: Some(plan(target, changes)),
        outcome: TargetOutcome::Planned,
        durations: vec![("observe", ms(250)), ("plan", ms(2))],
    }
}

fn applied(target: &str, changes: Vec<Change>, outcomes: Vec<Outcome>) -> TargetReport {
    TargetReport {
        fingerprint: None,
        target: target.to_owned(),
        plan: Some(plan(target, changes)),
        outcome: TargetOutcome::Applied(ApplyReport {
            outcomes: outcomes.into_iter().enumerate().collect(),
            attempts: 0,
        }),
        durations: vec![("observe", ms(500)), ("plan", ms(1)), ("apply", ms(1500))],
    }
}

fn unreadable(target: &str) -> TargetReport {
    TargetReport {
        fingerprint: None,
        target: target.to_owned(),
        plan: None,
        outcome: TargetOutcome::ObserveFailed(ObserveError::Setup {
            target: target.to_owned(),
            message: "no route".to_owned(),
        }),
        durations: Vec::new(),
    }
}

fn report(targets: Vec<TargetReport>) -> RunReport {
    RunReport {
        targets,
        source_duration: ms(125),
        sources: Vec::new(),
        run_id: "test".to_owned(),
    }
}

fn source_error() -> RunError {
    RunError::Source(SourceError::Invalid(Vec::new()))
}

fn healthy() -> Health {
    Health {
        ok: true,
        failing: Vec::new(),
        active: None,
    }
}

fn failing(names: &[&str]) -> Health {
    Health {
        ok: false,
        failing: names.iter().map(|s| s.to_string()).collect(),
        active: None,
    }
}

/// The sample lines (not comments) of a rendering.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn before_any_run_it_is_healthy_and_counts_zero() {
    let m = Metrics::new();
    assert_eq!(m.health(), healthy());
    assert_eq!(
        samples(&m.render_with(&[])),
        [
            r#"roster_runs_total{outcome="success"} 0"#,
            r#"roster_runs_total{outcome="failure"} 0"#,
            r#"roster_runs_total{outcome="error"} 0"#,
            "roster_skipped_runs_total 0",
            r#"roster_config_reloads_total{outcome="success"} 0"#,
            r#"roster_config_reloads_total{outcome="failure"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="0.5"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="1"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="2"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="3"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="5"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="10"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="30"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="60"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="120"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="300"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="900"} 0"#,
            r#"roster_trigger_to_apply_seconds_bucket{le="+Inf"} 0"#,
            "roster_trigger_to_apply_seconds_sum 0",
            "roster_trigger_to_apply_seconds_count 0",
        ]
    );
}

#[test]
fn renders_exactly_after_an_apply_run() {
    let m = Metrics::new();
    let cms = applied(
        "cms",
        vec![
            Change::CreateGroup {
                group: "editors".into(),
                description: None,
                attributes: BTreeMap::new(),
            },
            add("editors", "alice"),
            add("editors", "bob"),
            remove("editors", "carol"),
            add("editors", "dave"),
        ],
        vec![
            Outcome::Applied,
            Outcome::Applied,
            Outcome::AlreadyDone("member already there".into()),
            Outcome::Failed("cms: DELETE ...: 500".into()),
            Outcome::Skipped("stopped".into()),
        ],
    );
    m.record_run_at(&report(vec![cms, unreadable("dns")]), at(T0));
    m.record_skipped(1);
    m.record_reload(true);
    m.record_reload(false);
    m.record_reload(false);
    m.record_trigger("ldap://a", "syncrepl");
    m.record_trigger("http", "http");
    m.record_trigger("ldap://a", "syncrepl");
    m.record_trigger_to_apply([ms(1500), ms(4000), ms(1_000_000)]);
    m.set_lease(LeaseState {
        active: true,
        skew: false,
    });
    let calls = [
        ("cms".to_owned(), 0, 1),
        ("cms".to_owned(), 200, 7),
        ("dns".to_owned(), 503, 3),
    ];
    let expected = r#"# HELP roster_runs_total Runs by outcome: success, failure (a target failed or its plan was refused), error (the desired state could not be loaded).
# TYPE roster_runs_total counter
roster_runs_total{outcome="success"} 0
roster_runs_total{outcome="failure"} 1
roster_runs_total{outcome="error"} 0
# HELP roster_skipped_runs_total Scheduled runs skipped because the run before them was still going.
# TYPE roster_skipped_runs_total counter
roster_skipped_runs_total 1
# HELP roster_changes_total Changes carried out, by target, kind and outcome (applied, already_done, failed, skipped).
# TYPE roster_changes_total counter
roster_changes_total{target="cms",kind="add_member",outcome="already_done"} 1
roster_changes_total{target="cms",kind="add_member",outcome="applied"} 1
roster_changes_total{target="cms",kind="add_member",outcome="skipped"} 1
roster_changes_total{target="cms",kind="create_group",outcome="applied"} 1
roster_changes_total{target="cms",kind="remove_member",outcome="failed"} 1
# HELP roster_api_calls_total API calls sent, by target and HTTP status (0: no answer came).
# TYPE roster_api_calls_total counter
roster_api_calls_total{target="cms",status="0"} 1
roster_api_calls_total{target="cms",status="200"} 7
roster_api_calls_total{target="dns",status="503"} 3
# HELP roster_phase_duration_seconds How long each phase of the last run took: source (loading the desired state), then observe, plan and apply per target.
# TYPE roster_phase_duration_seconds gauge
roster_phase_duration_seconds{phase="source"} 0.125
roster_phase_duration_seconds{target="cms",phase="observe"} 0.5
roster_phase_duration_seconds{target="cms",phase="plan"} 0.001
roster_phase_duration_seconds{target="cms",phase="apply"} 1.5
# HELP roster_last_success_timestamp_seconds When the last successful run of each target ended, in seconds since the Unix epoch.
# TYPE roster_last_success_timestamp_seconds gauge
# HELP roster_drift_changes Changes pending for each target after the last run: a dry run's whole plan, a refused plan, or the changes an apply did not carry out. Absent while the target cannot be read.
# TYPE roster_drift_changes gauge
roster_drift_changes{target="cms"} 2
# HELP roster_config_reloads_total Config reloads (SIGHUP) by outcome; a failed reload keeps the previous config.
# TYPE roster_config_reloads_total counter
roster_config_reloads_total{outcome="success"} 1
roster_config_reloads_total{outcome="failure"} 2
# HELP roster_triggers_total Triggers received, by source and kind; triggers close together start one run.
# TYPE roster_triggers_total counter
roster_triggers_total{source="http",kind="http"} 1
roster_triggers_total{source="ldap://a",kind="syncrepl"} 2
# HELP roster_trigger_to_apply_seconds Seconds from a trigger to the end of the apply it caused.
# TYPE roster_trigger_to_apply_seconds histogram
roster_trigger_to_apply_seconds_bucket{le="0.5"} 0
roster_trigger_to_apply_seconds_bucket{le="1"} 0
roster_trigger_to_apply_seconds_bucket{le="2"} 1
roster_trigger_to_apply_seconds_bucket{le="3"} 1
roster_trigger_to_apply_seconds_bucket{le="5"} 2
roster_trigger_to_apply_seconds_bucket{le="10"} 2
roster_trigger_to_apply_seconds_bucket{le="30"} 2
roster_trigger_to_apply_seconds_bucket{le="60"} 2
roster_trigger_to_apply_seconds_bucket{le="120"} 2
roster_trigger_to_apply_seconds_bucket{le="300"} 2
roster_trigger_to_apply_seconds_bucket{le="900"} 2
roster_trigger_to_apply_seconds_bucket{le="+Inf"} 3
roster_trigger_to_apply_seconds_sum 1005.5
roster_trigger_to_apply_seconds_count 3
# HELP roster_lease_active 1 while this daemon holds the lease and writes; 0 while it is standby.
# TYPE roster_lease_active gauge
roster_lease_active 1
# HELP roster_lease_config_skew 1 while the lease holder runs with a config other than this daemon's.
# TYPE roster_lease_config_skew gauge
roster_lease_config_skew 0
"#;
    assert_eq!(m.render_with(&calls), expected);
    assert_eq!(
        m.health(),
        Health {
            active: Some(true),
            ..failing(&["cms", "dns"])
        }
    );
}

#[test]
fn a_dry_run_reports_the_whole_plan_as_drift_and_succeeds() {
    let m = Metrics::new();
    let r = report(vec![
        planned("cms", vec![add("g", "a"), remove("g", "b")]),
        planned("dns", Vec::new()),
    ]);
    m.record_run_at(&r, at(T0));
    let text = m.render_with(&[]);
    let lines = samples(&text);
    for line in [
        r#"roster_runs_total{outcome="success"} 1"#,
        r#"roster_drift_changes{target="cms"} 2"#,
        r#"roster_drift_changes{target="dns"} 0"#,
        r#"roster_last_success_timestamp_seconds{target="cms"} 1700000000"#,
        r#"roster_last_success_timestamp_seconds{target="dns"} 1700000000"#,
        r#"roster_phase_duration_seconds{target="dns",phase="observe"} 0.25"#,
    ] {
        assert!(lines.contains(&line), "{line} missing from\n{text}");
    }
    // A dry run changes nothing, so it counts no changes.
    assert!(!text.contains("roster_changes_total{"), "{text}");
    assert_eq!(m.health(), healthy());
}

#[test]
fn a_refused_plan_fails_health_and_keeps_its_drift() {
    let m = Metrics::new();
    let mut refused = planned("cms", vec![remove("g", "a"), remove("g", "b")]);
    refused.outcome = TargetOutcome::Refused(Refusal::TooManyDeletes {
        removals: 2,
        limit: 1,
    });
    m.record_run_at(&report(vec![refused]), at(T0));
    assert_eq!(m.health(), failing(&["cms"]));
    let text = m.render_with(&[]);
    assert!(samples(&text).contains(&r#"roster_drift_changes{target="cms"} 2"#));
    assert!(
        !text.contains("roster_last_success_timestamp_seconds{"),
        "{text}"
    );
}

#[test]
fn health_flips_to_failing_and_back() {
    let m = Metrics::new();
    let ok = |t: &str| applied(t, vec![add("g", "a")], vec![Outcome::Applied]);

    m.record_run_at(&report(vec![ok("cms"), ok("dns")]), at(T0));
    assert_eq!(m.health(), healthy());

    // A failed change fails its target only.
    let broken = applied(
        "dns",
        vec![add("g", "a")],
        vec![Outcome::Failed("500".into())],
    );
    m.record_run_at(&report(vec![ok("cms"), broken]), at(T0 + 60));
    assert_eq!(m.health(), failing(&["dns"]));

    // A run that cannot load the desired state fails everything, named `source`...
    m.record_run_error(&source_error());
    assert_eq!(m.health(), failing(&["source"]));

    // ...and the next good run heals it.
    m.record_run_at(&report(vec![ok("cms"), ok("dns")]), at(T0 + 120));
    assert_eq!(m.health(), healthy());

    let text = m.render_with(&[]);
    let lines = samples(&text);
    for line in [
        r#"roster_runs_total{outcome="success"} 2"#,
        r#"roster_runs_total{outcome="failure"} 1"#,
        r#"roster_runs_total{outcome="error"} 1"#,
        // cms succeeded every time; dns last at the third run.
        r#"roster_last_success_timestamp_seconds{target="cms"} 1700000120"#,
        r#"roster_last_success_timestamp_seconds{target="dns"} 1700000120"#,
        r#"roster_changes_total{target="cms",kind="add_member",outcome="applied"} 3"#,
        r#"roster_changes_total{target="dns",kind="add_member",outcome="applied"} 2"#,
        r#"roster_changes_total{target="dns",kind="add_member",outcome="failed"} 1"#,
    ] {
        assert!(lines.contains(&line), "{line} missing from\n{text}");
    }
}

#[test]
fn a_failed_target_keeps_its_last_success_time() {
    let m = Metrics::new();
    m.record_run_at(&report(vec![planned("cms", Vec::new())]), at(T0));
    m.record_run_at(&report(vec![unreadable("cms")]), at(T0 + 60));
    let text = m.render_with(&[]);
    let lines = samples(&text);
    assert!(lines.contains(&r#"roster_last_success_timestamp_seconds{target="cms"} 1700000000"#));
    // Unreadable: its drift is unknown, and its phases are those of the failed run (none).
    assert!(!text.contains("roster_drift_changes{"), "{text}");
    assert!(!text.contains(r#"target="cms",phase"#), "{text}");
}

#[test]
fn a_target_dropped_by_a_reload_leaves_the_gauges_and_health() {
    let m = Metrics::new();
    m.record_run_at(
        &report(vec![planned("cms", Vec::new()), unreadable("old")]),
        at(T0),
    );
    assert_eq!(m.health(), failing(&["old"]));
    m.record_run_at(&report(vec![planned("cms", Vec::new())]), at(T0 + 1));
    assert_eq!(m.health(), healthy());
    assert!(!m.render_with(&[]).contains(r#""old""#));
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    let name = "we\"ird\\name\nnext";
    m.record_run_at(&report(vec![planned(name, vec![add("g", "a")])]), at(T0));
    let text = m.render_with(&[(name.to_owned(), 200, 1)]);
    let lines = samples(&text);
    assert!(
        lines.contains(&r#"roster_drift_changes{target="we\"ird\\name\nnext"} 1"#),
        "{text}"
    );
    assert!(
        lines.contains(&r#"roster_api_calls_total{target="we\"ird\\name\nnext",status="200"} 1"#)
    );
    assert_eq!(parse(&text).len(), lines.len());
}

#[test]
fn clones_share_and_threads_can_record() {
    let m = Metrics::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    m.record_skipped(1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("recording thread panicked");
    }
    assert!(samples(&m.render()).contains(&"roster_skipped_runs_total 400"));
}

#[test]
fn every_line_is_in_the_exposition_format() {
    let m = Metrics::new();
    m.record_run_at(
        &report(vec![
            applied(
                "cms",
                vec![add("g", "a"), remove("g", "b")],
                vec![Outcome::Applied, Outcome::Skipped("x".into())],
            ),
            planned("odd \"name\"\\", vec![add("g", "a")]),
            unreadable("dns"),
        ]),
        at(T0),
    );
    m.record_run_error(&source_error());
    m.record_skipped(1);
    m.record_reload(true);
    let text = m.render_with(&[("cms".to_owned(), 0, 2), ("dns".to_owned(), 404, 1)]);
    let parsed = parse(&text);
    assert_eq!(parsed.len(), samples(&text).len());
    assert!(parsed.contains(&(
        "roster_changes_total".to_owned(),
        vec![
            ("target".to_owned(), "cms".to_owned()),
            ("kind".to_owned(), "remove_member".to_owned()),
            ("outcome".to_owned(), "skipped".to_owned()),
        ],
        1.0
    )));
    assert!(parsed.contains(&(
        "roster_drift_changes".to_owned(),
        vec![("target".to_owned(), "odd \"name\"\\".to_owned())],
        1.0
    )));
}

/// A sample: name, labels (unescaped), value.
type Sample = (String, Vec<(String, String)>, f64);

/// A strict reader of the text format (0.0.4) as far as `render` uses it: every line is
/// `# HELP name text`, `# TYPE name counter|gauge` (once per family, before its samples), or
/// `name{label="value",...} value`; names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
/// `[a-zA-Z_][a-zA-Z0-9_]*`, and a value escapes exactly `\\`, `\"` and `\n`. Panics on
/// anything else, naming the line.
fn parse(text: &str) -> Vec<Sample> {
    fn name_ok(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    assert!(text.ends_with('\n'), "the text must end with a line feed");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(name_ok(name, true), "bad name in {line:?}");
            assert!(!helped.contains(&name), "second HELP for {name}");
            helped.push(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE without a type");
            assert!(name_ok(name, true), "bad name in {line:?}");
            assert!(
                matches!(kind, "counter" | "gauge" | "histogram"),
                "bad type in {line:?}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "second TYPE for {name}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = &line[..end];
        assert!(name_ok(name, true), "bad name in {line:?}");
        // A histogram's samples are its family's name with a suffix.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its TYPE: {line:?}"
        );
        if family != name && name.ends_with("_bucket") {
            assert!(line.contains("le=\""), "bucket without le: {line:?}");
        }
        if types[family] == "counter" {
            assert!(name.ends_with("_total"), "counter without _total: {line:?}");
        }
        let mut rest = &line[end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                let eq = rest.find('=').unwrap_or_else(|| panic!("no = in {line:?}"));
                let label = &rest[..eq];
                assert!(name_ok(label, false), "bad label name in {line:?}");
                let mut chars = rest[eq + 1..].char_indices();
                assert_eq!(chars.next().map(|c| c.1), Some('"'), "unquoted in {line:?}");
                let mut value = String::new();
                let close = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some((i, '"')) => break i,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated value in {line:?}"),
                    }
                };
                labels.push((label.to_owned(), value));
                rest = &rest[eq + 1 + close + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                } else {
                    panic!("expected , or }} in {line:?}");
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.push((name.to_owned(), labels, value));
    }
    for name in helped {
        assert!(types.contains_key(name), "HELP without TYPE for {name}");
    }
    out
}

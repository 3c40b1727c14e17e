//! Example-based tests of the planner, the guard, the closure and the renderers, with insta
//! snapshots of one rich plan in every output format.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is a failure with its place.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::*;
use crate::model::{Group, MembershipWrites, TargetUserId, UserKey};
use crate::plan::render::{Failed, Format, render};

const TT: &str = "contensis";

fn group(name: &str, members: &[&str], children: &[&str]) -> Group {
    Group {
        name: name.into(),
        members: members.iter().map(|m| UserKey::from(*m)).collect(),
        children: children.iter().map(|c| GroupName::from(*c)).collect(),
        ..Group::default()
    }
}

fn described(mut g: Group, description: &str) -> Group {
    g.description = Some(description.to_owned());
    g
}

fn with_attr(mut g: Group, key: &str, value: Value) -> Group {
    g.extras
        .entry(TT.to_owned())
        .or_default()
        .insert(key.to_owned(), value);
    g
}

fn desired(groups: impl IntoIterator<Item = Group>) -> Desired {
    Desired {
        groups: groups.into_iter().map(|g| (g.name.clone(), g)).collect(),
        origins: BTreeMap::new(),
    }
}

fn of_kind(g: Group, kind: GroupKind) -> ObservedGroup {
    ObservedGroup {
        id: format!("id-{}", g.name),
        group: g,
        kind,
    }
}

fn managed(g: Group) -> ObservedGroup {
    of_kind(g, GroupKind::Managed)
}

/// An observed state holding these groups, every member known to the target.
fn observed(groups: impl IntoIterator<Item = ObservedGroup>) -> Observed {
    let groups: BTreeMap<GroupName, ObservedGroup> = groups
        .into_iter()
        .map(|g| (g.group.name.clone(), g))
        .collect();
    let users: BTreeMap<UserKey, TargetUserId> = groups
        .values()
        .flat_map(|g| g.group.members.iter())
        .map(|u| (u.clone(), format!("uid-{u}")))
        .collect();
    Observed {
        groups,
        users,
        ..Observed::default()
    }
}

pub(super) fn caps(nested_groups: bool, case_insensitive_names: bool) -> Capabilities {
    Capabilities {
        nested_groups,
        membership: MembershipWrites::PerMember,
        case_insensitive_names,
        renames: true,
    }
}

pub(super) fn scope(patterns: Option<&[&str]>, desired: &Desired, ci: bool) -> Scope {
    let patterns: Option<Vec<String>> =
        patterns.map(|p| p.iter().map(|s| (*s).to_owned()).collect());
    Scope::new(patterns.as_deref(), desired, ci).unwrap()
}

/// Authoritative, no prune, `max_deletes = 100`, `max_group_shrink = "50%"`, empty source not
/// allowed.
fn policy(scope: Scope) -> Policy {
    Policy {
        scope,
        membership: MembershipMode::Authoritative,
        prune: false,
        max_deletes: 100,
        max_group_shrink: Share::DEFAULT,
        allow_empty_source: false,
    }
}

fn all_groups(d: &Desired) -> Policy {
    policy(scope(Some(&["*"]), d, false))
}

fn run(d: &Desired, o: &Observed, p: &Policy, c: Capabilities) -> Plan {
    plan("prod", TT, d, o, p, c)
}

fn lines(p: &Plan) -> Vec<String> {
    p.changes.iter().map(render::line).collect()
}

fn warnings_of(p: &Plan, kind: WarningKind) -> Vec<&str> {
    p.warnings
        .iter()
        .filter(|w| w.kind == kind)
        .map(|w| w.group.as_str())
        .collect()
}

fn users(names: &[&str]) -> BTreeSet<UserKey> {
    names.iter().map(|u| UserKey::from(*u)).collect()
}

// ---------------------------------------------------------------------------------------------
// Basics

#[test]
fn plan_of_desired_against_itself_is_empty() {
    let d = desired([
        described(
            group("eng", &["alice", "bob"], &["platform"]),
            "Engineering",
        ),
        with_attr(
            group("platform", &["carol"], &[]),
            "custom",
            json!({"k": 1}),
        ),
        group("empty", &[], &[]),
    ]);
    let o = observed(d.groups.values().cloned().map(managed));
    let mut p = all_groups(&d);
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, false));
    assert!(out.is_empty(), "{:#?}", out.changes);
    assert!(out.warnings.is_empty(), "{:#?}", out.warnings);
    assert_eq!(out.summary, Summary::default());
    assert_eq!(
        render(&[out], &[], &[], Format::Text),
        "prod: in sync\n\nNo changes. Targets are in sync.\n"
    );
}

#[test]
fn changes_are_ordered_group_by_group_then_by_kind() {
    let d = desired([
        described(group("b", &["alice", "zed"], &["a", "c"]), "new"),
        group("c", &["carol"], &[]),
        group("a", &["bob"], &[]),
    ]);
    let o = observed([
        managed(described(
            group("b", &["mallory", "oscar"], &["old", "older"]),
            "old",
        )),
        managed(group("old", &[], &[])),
        managed(group("older", &[], &[])),
        managed(group("zz-gone", &["eve"], &[])),
    ]);
    let mut p = all_groups(&d);
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(
        lines(&out),
        [
            "+ create group \"a\"",
            "+ member \"bob\" in \"a\"",
            "~ update group \"b\": description \"old\" → \"new\"",
            "+ member \"alice\" in \"b\"",
            "+ member \"zed\" in \"b\"",
            "- member \"mallory\" in \"b\"",
            "- member \"oscar\" in \"b\"",
            "+ child \"a\" in \"b\"",
            "+ child \"c\" in \"b\"",
            "- child \"old\" in \"b\"",
            "- child \"older\" in \"b\"",
            "+ create group \"c\"",
            "+ member \"carol\" in \"c\"",
            "- delete group \"old\"",
            "- delete group \"older\"",
            "- delete group \"zz-gone\"",
        ]
    );
    assert_eq!(
        out.summary,
        Summary {
            add: 8,
            change: 1,
            remove: 7
        }
    );
    assert_eq!(out.removals(), 7);
}

#[test]
fn same_inputs_give_identical_plans() {
    let d = desired([
        group("x", &["u1", "u2", "u3"], &["y"]),
        group("y", &["u4"], &[]),
    ]);
    let o = observed([
        managed(group("x", &["u9", "u8", "u7", "u6"], &["q", "r", "s"])),
        managed(group("q", &[], &[])),
        managed(group("r", &[], &[])),
        managed(group("s", &[], &[])),
    ]);
    let mut p = all_groups(&d);
    p.prune = true;
    let first = run(&d, &o, &p, caps(true, false));
    for _ in 0..20 {
        assert_eq!(run(&d, &o, &p, caps(true, false)), first);
    }
}

// ---------------------------------------------------------------------------------------------
// Safety

#[test]
fn additive_mode_never_removes() {
    let d = desired([
        group("eng", &["alice"], &["platform"]),
        group("platform", &[], &[]),
    ]);
    let o = observed([
        managed(group("eng", &["bob", "mallory"], &["legacy"])),
        managed(group("platform", &["carol"], &[])),
        managed(group("legacy", &[], &[])),
    ]);
    let mut p = all_groups(&d);
    p.membership = MembershipMode::Additive;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(
        lines(&out),
        [
            "+ member \"alice\" in \"eng\"",
            "+ child \"platform\" in \"eng\"",
        ]
    );
    assert_eq!(out.removals(), 0);
}

/// Additive mode plans no removal of any kind, as the contract says and the config documents
/// (`additive`: roster only adds): with `prune = true` too, no group is deleted (a deletion counts
/// as a removal).
#[test]
fn additive_mode_with_prune_plans_no_deletes() {
    let d = desired([group("eng", &["alice"], &[])]);
    let o = observed([
        managed(group("eng", &["alice"], &[])),
        managed(group("legacy", &["bob"], &[])),
    ]);
    let mut p = all_groups(&d);
    p.membership = MembershipMode::Additive;
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(lines(&out), Vec::<String>::new());
    assert_eq!(out.removals(), 0);
}

#[test]
fn system_groups_are_warned_and_untouched() {
    let d = desired([
        group("sys-admins", &["alice"], &["eng"]),
        described(group("ext-staff", &["bob"], &[]), "Staff"),
        group("eng", &["carol"], &["sys-admins"]),
    ]);
    let o = observed([
        of_kind(group("sys-admins", &["root"], &["ops"]), GroupKind::System),
        of_kind(group("ext-staff", &["dave"], &[]), GroupKind::External),
        of_kind(group("sys-everyone", &["root"], &[]), GroupKind::System),
        managed(group("eng", &["carol"], &[])),
        managed(group("ops", &[], &[])),
    ]);
    let mut p = all_groups(&d);
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, false));
    // Only the managed groups change; making a system group a child of a managed one is allowed.
    assert_eq!(
        lines(&out),
        [
            "+ child \"sys-admins\" in \"eng\"",
            "- delete group \"ops\"",
        ]
    );
    assert_eq!(
        warnings_of(&out, WarningKind::SkippedGroup),
        ["ext-staff", "sys-admins", "sys-everyone"]
    );
    let admin = out
        .warnings
        .iter()
        .find(|w| w.group.as_str() == "sys-admins")
        .unwrap();
    assert_eq!(
        admin.message,
        "\"sys-admins\" is a system group of the target; roster does not change it"
    );
    assert!(out.warnings.iter().any(|w| w.message
        == "\"ext-staff\" is an external group of the target; roster does not change it"));
}

#[test]
fn unknown_users_are_warned_not_added() {
    let d = desired([group("eng", &["alice", "ghost", "spook"], &[])]);
    let mut o = observed([managed(group("eng", &["spook"], &[]))]);
    o.unknown_users = users(&["ghost", "spook"]);
    let out = run(&d, &o, &all_groups(&d), caps(true, false));
    // "spook" is already a member: neither added nor warned about; "ghost" is warned about.
    assert_eq!(lines(&out), ["+ member \"alice\" in \"eng\""]);
    assert_eq!(
        out.warnings,
        [Warning {
            kind: WarningKind::UnknownUser,
            group: "eng".into(),
            message: "user \"ghost\" does not exist on the target; not added to \"eng\"".to_owned(),
        }]
    );
}

#[test]
fn unknown_users_are_matched_without_case_on_case_insensitive_targets() {
    let d = desired([group("eng", &["Ghost"], &[])]);
    let mut o = observed([managed(group("eng", &[], &[]))]);
    o.unknown_users = users(&["ghost"]);
    let p = policy(scope(Some(&["*"]), &d, true));
    let out = run(&d, &o, &p, caps(true, true));
    assert!(out.is_empty(), "{:?}", lines(&out));
    assert_eq!(warnings_of(&out, WarningKind::UnknownUser), ["eng"]);
}

/// A group with `n` members on the target that the desired state empties: `n` removals.
fn removals_fixture(n: usize) -> (Desired, Observed, Plan) {
    let d = desired([group("eng", &[], &[])]);
    let members: Vec<String> = (0..n).map(|i| format!("user{i:03}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let o = observed([managed(group("eng", &refs, &[]))]);
    let out = run(&d, &o, &all_groups(&d), caps(true, false));
    (d, o, out)
}

#[test]
fn guard_refuses_101_removals_over_limit_100() {
    let (d, o, out) = removals_fixture(101);
    assert_eq!(out.removals(), 101);
    let p = all_groups(&d);
    assert_eq!(p.max_deletes, 100);
    let refusal = guard(&out, &d, &o, &p).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::TooManyDeletes {
            removals: 101,
            limit: 100
        }
    );
    assert!(
        refusal.to_string().contains("--max-deletes 101"),
        "{refusal}"
    );
}

#[test]
fn guard_accepts_exactly_the_limit() {
    let (d, o, out) = removals_fixture(100);
    assert_eq!(out.removals(), 100);
    // Emptying one group of 100 is what max_group_shrink refuses; this test is about
    // max_deletes alone.
    let mut p = all_groups(&d);
    p.max_group_shrink = Share::ALL;
    assert_eq!(guard(&out, &d, &o, &p), Ok(()));
}

#[test]
fn guard_counts_deletes_and_child_removals_too() {
    // 1 member + 1 child + 1 group removed = 3; a limit of 2 refuses it.
    let d = desired([group("eng", &[], &[])]);
    let o = observed([
        managed(group("eng", &["bob"], &["old"])),
        managed(group("old", &[], &[])),
    ]);
    let mut p = all_groups(&d);
    p.prune = true;
    p.max_deletes = 2;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(out.removals(), 3);
    assert_eq!(
        guard(&out, &d, &o, &p),
        Err(Refusal::TooManyDeletes {
            removals: 3,
            limit: 2
        })
    );
    p.max_deletes = 3;
    assert_eq!(guard(&out, &d, &o, &p), Ok(()));
}

#[test]
fn empty_source_is_refused_when_target_has_managed_groups() {
    let d = Desired::default();
    let o = observed([
        managed(group("eng", &["alice"], &[])),
        managed(group("ops", &[], &[])),
        of_kind(group("sys-admins", &[], &[]), GroupKind::System),
    ]);
    let mut p = all_groups(&d);
    p.prune = true;
    p.max_deletes = 1000;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(
        guard(&out, &d, &o, &p),
        Err(Refusal::EmptySource { managed: 2 })
    );
}

#[test]
fn empty_source_with_only_system_groups_is_not_refused() {
    let d = Desired::default();
    let o = observed([of_kind(
        group("sys-admins", &["root"], &[]),
        GroupKind::System,
    )]);
    let p = all_groups(&d);
    let out = run(&d, &o, &p, caps(true, false));
    assert!(out.is_empty());
    assert_eq!(guard(&out, &d, &o, &p), Ok(()));
}

#[test]
fn empty_source_allowed_when_configured() {
    let d = Desired::default();
    let o = observed([
        managed(group("eng", &["alice"], &[])),
        managed(group("ops", &[], &[])),
    ]);
    let mut p = all_groups(&d);
    p.prune = true;
    p.allow_empty_source = true;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(
        lines(&out),
        ["- delete group \"eng\"", "- delete group \"ops\""]
    );
    assert_eq!(guard(&out, &d, &o, &p), Ok(()));
}

/// `n` user names, `u00`, `u01`, …
fn users_named(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i:02}")).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The guard's verdict on `eng`, held with `before` members `u00`… on the target, where the
/// desired state keeps the first `kept` of them and adds `added` new ones, under `limit`.
fn shrink_verdict(before: usize, kept: usize, added: usize, limit: &str) -> Result<(), Refusal> {
    let held = users_named(before);
    let mut want: Vec<String> = held[..kept].to_vec();
    want.extend((0..added).map(|i| format!("new{i:02}")));
    let d = desired([group("eng", &refs(&want), &[])]);
    let o = observed([managed(group("eng", &refs(&held), &[]))]);
    let mut p = all_groups(&d);
    p.max_group_shrink = limit.parse().unwrap();
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(out.summary.add, added);
    assert_eq!(out.summary.remove, before - kept);
    guard(&out, &d, &o, &p)
}

fn shrink_of(groups: &[(&str, usize, usize)], limit: &str) -> Result<(), Refusal> {
    Err(Refusal::GroupShrink {
        limit: limit.parse().unwrap(),
        groups: groups
            .iter()
            .map(|(g, before, after)| Shrink {
                group: (*g).into(),
                before: *before,
                after: *after,
            })
            .collect(),
    })
}

#[test]
fn shrink_to_exactly_the_limit_is_allowed_and_one_fewer_is_refused() {
    // after < (1 − 50%) × 10 = 5 refuses; 5 itself is allowed.
    assert_eq!(shrink_verdict(10, 5, 0, "50%"), Ok(()));
    assert_eq!(
        shrink_verdict(10, 4, 0, "50%"),
        shrink_of(&[("eng", 10, 4)], "50%")
    );
    assert_eq!(shrink_verdict(10, 6, 0, "50%"), Ok(()));
}

#[test]
fn shrink_applies_from_ten_members() {
    assert_eq!(shrink_verdict(9, 0, 0, "50%"), Ok(()));
    assert_eq!(
        shrink_verdict(10, 0, 0, "50%"),
        shrink_of(&[("eng", 10, 0)], "50%")
    );
    assert_eq!(SHRINK_MIN_MEMBERS, 10);
}

#[test]
fn shrink_counts_additions_against_removals() {
    // 7 of 10 removed: 3 left, refused; with 2 added, 5: allowed; with 1 added, 4: refused.
    assert_eq!(
        shrink_verdict(10, 3, 0, "50%"),
        shrink_of(&[("eng", 10, 3)], "50%")
    );
    assert_eq!(shrink_verdict(10, 3, 2, "50%"), Ok(()));
    assert_eq!(
        shrink_verdict(10, 3, 1, "50%"),
        shrink_of(&[("eng", 10, 4)], "50%")
    );
    // Growing is never refused, even at 0%.
    assert_eq!(shrink_verdict(10, 10, 5, "0%"), Ok(()));
}

#[test]
fn shrink_of_100_percent_is_off_and_0_percent_refuses_any_net_loss() {
    assert_eq!(shrink_verdict(10, 0, 0, "100%"), Ok(()));
    assert_eq!(shrink_verdict(50, 0, 0, "100%"), Ok(()));
    assert_eq!(
        shrink_verdict(10, 9, 0, "0%"),
        shrink_of(&[("eng", 10, 9)], "0%")
    );
    // One out, one in: the group keeps its size.
    assert_eq!(shrink_verdict(10, 9, 1, "0%"), Ok(()));
    assert_eq!(shrink_verdict(9, 0, 0, "0%"), Ok(()));
}

#[test]
fn shrink_with_decimals_is_exact() {
    // (1 − 12.5%) × 16 = 14.
    assert_eq!(shrink_verdict(16, 14, 0, "12.5%"), Ok(()));
    assert_eq!(
        shrink_verdict(16, 13, 0, "12.5%"),
        shrink_of(&[("eng", 16, 13)], "12.5%")
    );
    // (1 − 33.33%) × 12 = 8.0004: 8 is one member short of it.
    assert_eq!(
        shrink_verdict(12, 8, 0, "33.33%"),
        shrink_of(&[("eng", 12, 8)], "33.33%")
    );
    assert_eq!(shrink_verdict(12, 8, 0, "33.34%"), Ok(()));
}

#[test]
fn shrink_names_every_group_over_the_limit_sorted_with_its_counts() {
    let (a, b, c) = (users_named(12), users_named(10), users_named(20));
    let d = desired([
        group("zeta", &refs(&a[..1]), &[]),
        group("alpha", &refs(&b[..2]), &[]),
        group("mid", &refs(&c[..15]), &[]),
    ]);
    let o = observed([
        managed(group("zeta", &refs(&a), &[])),
        managed(group("alpha", &refs(&b), &[])),
        managed(group("mid", &refs(&c), &[])),
    ]);
    let p = all_groups(&d);
    let out = run(&d, &o, &p, caps(true, false));
    let refusal = guard(&out, &d, &o, &p).unwrap_err();
    assert_eq!(
        Err(refusal.clone()),
        shrink_of(&[("alpha", 10, 2), ("zeta", 12, 1)], "50%")
    );
    assert_eq!(
        refusal.to_string(),
        "the plan shrinks 2 groups by more than max_group_shrink = 50% of their members: \
         \"alpha\" 10 → 2 members, \"zeta\" 12 → 1 members; review it, then allow it for this \
         run with --max-group-shrink 100%, or change max_group_shrink for this target"
    );
    assert_eq!(refusal.kind(), "group_shrink");
}

#[test]
fn shrink_ignores_children_and_groups_deleted_whole() {
    // Ten children removed from a group of five members: children are not members.
    let kids = users_named(10);
    let five = users_named(5);
    let d = desired([group("eng", &[], &[])]);
    let mut held: Vec<ObservedGroup> = vec![managed(group("eng", &refs(&five), &refs(&kids)))];
    held.extend(kids.iter().map(|k| managed(group(k, &[], &[]))));
    held.push(managed(group("old", &refs(&users_named(20)), &[])));
    let o = observed(held);
    let mut p = policy(scope(Some(&["eng", "old"]), &d, false));
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(out.summary.remove, 5 + 10 + 1, "{:?}", lines(&out));
    assert!(lines(&out).contains(&"- delete group \"old\"".to_owned()));
    // `old` (20 members) is deleted whole: max_deletes governs that, not the shrink limit.
    assert_eq!(guard(&out, &d, &o, &p), Ok(()));
    p.max_deletes = 15;
    assert_eq!(
        guard(&out, &d, &o, &p),
        Err(Refusal::TooManyDeletes {
            removals: 16,
            limit: 15
        })
    );
}

#[test]
fn shrink_finds_the_group_under_the_targets_spelling() {
    let held = users_named(10);
    let d = desired([group("ENG", &refs(&held[..2]), &[])]);
    let o = observed([managed(group("eng", &refs(&held), &[]))]);
    let p = policy(scope(Some(&["*"]), &d, true));
    let out = run(&d, &o, &p, caps(true, true));
    assert_eq!(guard(&out, &d, &o, &p), shrink_of(&[("eng", 10, 2)], "50%"));
}

#[test]
fn shrink_ignores_new_groups() {
    let d = desired([group("fresh", &refs(&users_named(12)), &[])]);
    let o = observed([]);
    let p = all_groups(&d);
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(guard(&out, &d, &o, &p), Ok(()));
}

#[test]
fn the_empty_source_and_deletion_rules_come_before_the_shrink_limit() {
    // Emptying a group of 101: all three rules could refuse; max_deletes is reported.
    let (d, o, out) = removals_fixture(101);
    assert!(matches!(
        guard(&out, &d, &o, &all_groups(&d)),
        Err(Refusal::TooManyDeletes { .. })
    ));
    // An empty source that would delete the group, over a limit of 0: the empty source first.
    let d = Desired::default();
    let mut p = all_groups(&d);
    p.prune = true;
    p.max_deletes = 0;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(out.removals(), 1);
    assert_eq!(
        guard(&out, &d, &o, &p),
        Err(Refusal::EmptySource { managed: 1 })
    );
}

#[test]
fn shares_parse_from_0_to_100_percent_with_up_to_two_decimals() {
    for (text, shown) in [
        ("0%", "0%"),
        ("50%", "50%"),
        ("100%", "100%"),
        ("12.5%", "12.5%"),
        ("12.25%", "12.25%"),
        ("0.05%", "0.05%"),
        ("100.00%", "100%"),
        ("007%", "7%"),
    ] {
        let share: Share = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(share.to_string(), shown, "{text}");
    }
    assert_eq!("50%".parse(), Ok(Share::DEFAULT));
    assert_eq!("100%".parse(), Ok(Share::ALL));
    for (text, says) in [
        ("50", "write it with a % sign"),
        ("", "write it with a % sign"),
        ("0.5", "write it with a % sign"),
        ("%", "write a number from 0% to 100%"),
        ("-5%", "write a number from 0% to 100%"),
        ("+5%", "write a number from 0% to 100%"),
        ("fifty%", "write a number from 0% to 100%"),
        ("50 %", "write a number from 0% to 100%"),
        (" 50%", "write a number from 0% to 100%"),
        (".5%", "write a number from 0% to 100%"),
        ("5.%", "write a number from 0% to 100%"),
        ("1e2%", "write a number from 0% to 100%"),
        ("5.5.5%", "write a number from 0% to 100%"),
        ("12.345%", "at most two decimals"),
        ("100.01%", "more than 100%"),
        ("101%", "more than 100%"),
        ("99999999999%", "more than 100%"),
    ] {
        let err = text.parse::<Share>().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("invalid percentage `{text}`: ")) && err.contains(says),
            "{text}: {err}"
        );
    }
}

#[test]
fn a_share_deserializes_from_a_string_and_says_what_it_expects() {
    assert_eq!(
        serde_json::from_str::<Share>("\"12.5%\"")
            .unwrap()
            .to_string(),
        "12.5%"
    );
    let wrong_type = serde_json::from_str::<Share>("50").unwrap_err().to_string();
    assert!(
        wrong_type.starts_with(
            "invalid type: integer `50`, expected a percentage in quotes, such as \"50%\""
        ),
        "{wrong_type}"
    );
    let bad = serde_json::from_str::<Share>("\"50\"")
        .unwrap_err()
        .to_string();
    assert!(
        bad.starts_with("invalid percentage `50`: write it with a % sign"),
        "{bad}"
    );
}

#[test]
fn a_share_is_exceeded_below_the_part_it_keeps() {
    let half = Share::DEFAULT;
    assert!(!half.exceeded(10, 5));
    assert!(half.exceeded(10, 4));
    assert!(!half.exceeded(11, 6));
    assert!(half.exceeded(11, 5));
    assert!(!Share::ALL.exceeded(10, 0));
    let none: Share = "0%".parse().unwrap();
    assert!(!none.exceeded(10, 10));
    assert!(none.exceeded(10, 9));
    // Large groups do not overflow.
    assert!(half.exceeded(usize::MAX, usize::MAX / 2 - 1));
    assert!(!half.exceeded(usize::MAX, usize::MAX / 2 + 1));
}

#[test]
fn refusals_serialize_with_kind_message_and_details() {
    let shrink = shrink_of(&[("eng", 10, 4)], "12.5%").unwrap_err();
    assert_eq!(
        serde_json::to_value(&shrink).unwrap(),
        json!({
            "kind": "group_shrink",
            "message": shrink.to_string(),
            "details": {
                "limit": "12.5%",
                "groups": [{"group": "eng", "before": 10, "after": 4}],
            },
        })
    );
    let deletes = Refusal::TooManyDeletes {
        removals: 7,
        limit: 5,
    };
    assert_eq!(
        serde_json::to_value(&deletes).unwrap(),
        json!({
            "kind": "too_many_deletes",
            "message": deletes.to_string(),
            "details": {"removals": 7, "limit": 5},
        })
    );
    let empty = Refusal::EmptySource { managed: 3 };
    assert_eq!(
        serde_json::to_value(&empty).unwrap(),
        json!({
            "kind": "empty_source",
            "message": empty.to_string(),
            "details": {"managed": 3},
        })
    );
}

/// A plan removing two of `eng`'s members, refused.
fn refused_plan() -> Plan {
    let changes = vec![
        Change::RemoveMember {
            group: "eng".into(),
            member: "u00".into(),
        },
        Change::RemoveMember {
            group: "eng".into(),
            member: "u01".into(),
        },
    ];
    Plan {
        target: "prod".to_owned(),
        refusal: Some(Refusal::TooManyDeletes {
            removals: 2,
            limit: 1,
        }),
        summary: Summary::of(&changes),
        changes,
        ..Plan::default()
    }
}

#[test]
fn a_refused_plan_renders_its_refusal_first_in_text_and_markdown() {
    let plans = [refused_plan(), in_sync_plan()];
    let text = render(&plans, &[], &[], Format::Text);
    let refusal = plans[0].refusal.as_ref().unwrap().to_string();
    assert_eq!(
        text,
        format!(
            "prod:\n  refused: {refusal}\n  - member \"u00\" in \"eng\"\n  - member \"u01\" in \"eng\"\n\
             staging: in sync\n\nPlan: 0 to add, 0 to change, 2 to remove. 1 target refused by a \
             safety rule: an apply writes nothing to it.\n"
        )
    );
    let md = render(&plans[..1], &[], &[], Format::Markdown);
    assert!(
        md.contains("| **prod** | 0 | 0 | 2 | ⛔ refused |\n"),
        "{md}"
    );
    // The refusal comes before the changes.
    let refused_at = md
        .find(&format!("⛔ **prod refused**: {refusal}\n"))
        .expect("refusal shown");
    assert!(
        refused_at < md.find("<details>").expect("changes shown"),
        "{md}"
    );
    let mut two = refused_plan();
    two.changes.clear();
    let text = render(&[refused_plan(), two], &[], &[], Format::Text);
    assert!(text.contains("prod:\n  refused: "), "{text}");
    assert!(
        !text.contains("in sync"),
        "a refused plan is never in sync: {text}"
    );
    assert!(text.contains("2 targets refused by a safety rule: an apply writes nothing to them."));
}

#[test]
fn a_refused_plan_carries_its_refusal_in_json() {
    let json: Value = serde_json::from_str(&render(
        &[refused_plan(), in_sync_plan()],
        &[],
        &[],
        Format::Json,
    ))
    .unwrap();
    assert_eq!(json["targets"][0]["refusal"]["kind"], "too_many_deletes");
    assert_eq!(
        json["targets"][0]["refusal"]["details"],
        json!({"removals": 2, "limit": 1})
    );
    assert_eq!(json["targets"][0]["changes"].as_array().unwrap().len(), 2);
    assert!(json["targets"][1].get("refusal").is_none(), "{json}");
}

#[test]
fn prune_false_never_deletes() {
    let d = desired([group("eng", &[], &[])]);
    let o = observed([
        managed(group("eng", &[], &[])),
        managed(group("legacy", &["bob"], &[])),
    ]);
    let out = run(&d, &o, &all_groups(&d), caps(true, false));
    assert!(out.is_empty(), "{:?}", lines(&out));
}

#[test]
fn prune_true_deletes_only_managed_in_scope_groups_absent_from_desired() {
    let d = desired([group("app-eng", &[], &[])]);
    let o = observed([
        managed(group("app-eng", &[], &[])),
        managed(group("app-legacy", &["bob"], &[])),
        of_kind(group("app-sys", &[], &[]), GroupKind::System),
        // Out of scope; a connector would list it in `others`, but the planner must not touch it
        // even if it arrives among the groups.
        managed(group("finance", &[], &[])),
    ]);
    let mut p = policy(scope(Some(&["app-*"]), &d, false));
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(lines(&out), ["- delete group \"app-legacy\""]);
    assert_eq!(warnings_of(&out, WarningKind::SkippedGroup), ["app-sys"]);
}

#[test]
fn default_scope_is_the_desired_groups() {
    let d = desired([group("eng", &["alice"], &[])]);
    let o = observed([
        managed(group("eng", &[], &[])),
        managed(group("other", &["bob"], &[])),
    ]);
    let mut p = policy(scope(None, &d, false));
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(lines(&out), ["+ member \"alice\" in \"eng\""]);
}

/// A scope with the pattern `*` contains every name without asking its glob set, which is right
/// only because globset's `*` matches every name: here it is asked.
#[test]
fn star_scope_contains_every_name_as_the_glob_does() {
    let names = [
        "",
        "eng",
        "Eng Team",
        "a/b",
        "a\nb",
        "ärzte",
        "数据 组",
        "\0",
        ".x",
        "[*]",
    ];
    for ci in [false, true] {
        let glob = globset::GlobBuilder::new("*")
            .case_insensitive(ci)
            .literal_separator(false)
            .build()
            .unwrap()
            .compile_matcher();
        let star = scope(Some(&["eng", "*"]), &desired([]), ci);
        let eng = scope(Some(&["eng"]), &desired([]), ci);
        for n in names {
            assert!(glob.is_match(n), "{n:?}");
            assert!(star.contains(&n.into()), "{n:?}");
            assert_eq!(eng.contains(&n.into()), n == "eng", "{n:?}");
        }
    }
}

#[test]
fn out_of_scope_desired_group_is_warned() {
    let d = desired([
        group("eng-core", &["alice"], &["sales"]),
        group("sales", &["bob"], &[]),
    ]);
    let mut o = observed([managed(group("eng-core", &[], &[]))]);
    // "sales" exists on the target, outside the scope: the connector lists it in `others`.
    o.others.insert("sales".into());
    let mut p = policy(scope(Some(&["eng-*"]), &d, false));
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, false));
    // "sales" itself is left alone; an existing out-of-scope group may still be made a child.
    assert_eq!(
        lines(&out),
        [
            "+ member \"alice\" in \"eng-core\"",
            "+ child \"sales\" in \"eng-core\"",
        ]
    );
    assert_eq!(
        out.warnings,
        [Warning {
            kind: WarningKind::OutOfScope,
            group: "sales".into(),
            message: "\"sales\" is outside this target's managed groups; left alone".to_owned(),
        }]
    );
    assert!(out.changes.iter().all(|c| p.scope.contains(c.group())));
}

#[test]
fn out_of_scope_child_absent_from_target_is_warned_not_added() {
    let d = desired([
        group("eng-core", &[], &["sales", "eng-new"]),
        group("sales", &[], &[]),
        group("eng-new", &[], &[]),
    ]);
    let o = observed([managed(group("eng-core", &[], &[]))]);
    let p = policy(scope(Some(&["eng-*"]), &d, false));
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(
        lines(&out),
        [
            "+ child \"eng-new\" in \"eng-core\"",
            "+ create group \"eng-new\"",
        ]
    );
    assert_eq!(warnings_of(&out, WarningKind::UnknownChild), ["eng-core"]);
    assert_eq!(warnings_of(&out, WarningKind::OutOfScope), ["sales"]);
}

// ---------------------------------------------------------------------------------------------
// Case-insensitive targets

#[test]
fn rename_by_case_only_is_an_update() {
    let d = desired([
        group("Eng", &["Alice"], &["Platform"]),
        group("Platform", &[], &[]),
    ]);
    let o = observed([
        managed(group("eng", &["alice"], &["platform"])),
        managed(group("platform", &[], &[])),
    ]);
    let mut p = policy(scope(Some(&["*"]), &d, true));
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, true));
    // The group is addressed by its current name; members and children differing only in case
    // are no change; nothing is created or deleted.
    assert_eq!(
        out.changes,
        [
            Change::UpdateGroup {
                group: "eng".into(),
                fields: BTreeMap::from([(
                    "name".to_owned(),
                    FieldChange {
                        from: json!("eng"),
                        to: json!("Eng"),
                    }
                )]),
            },
            Change::UpdateGroup {
                group: "platform".into(),
                fields: BTreeMap::from([(
                    "name".to_owned(),
                    FieldChange {
                        from: json!("platform"),
                        to: json!("Platform"),
                    }
                )]),
            },
        ]
    );
    assert_eq!(
        lines(&out)[0],
        "~ update group \"eng\": name \"eng\" → \"Eng\""
    );
}

#[test]
fn a_target_that_cannot_rename_gets_a_warning_instead_of_a_rename() {
    let d = desired([described(group("Eng", &["alice"], &[]), "new")]);
    let o = observed([managed(group("eng", &[], &[]))]);
    let p = policy(scope(Some(&["*"]), &d, true));
    let mut c = caps(false, true);
    c.renames = false;
    let out = run(&d, &o, &p, c);
    // Everything else about the group is still planned, addressed by its current name.
    assert_eq!(
        lines(&out),
        [
            "~ update group \"eng\": description (none) → \"new\"",
            "+ member \"alice\" in \"eng\"",
        ]
    );
    assert_eq!(warnings_of(&out, WarningKind::CannotRename), ["eng"]);
    assert_eq!(
        out.warnings[0].message,
        "\"eng\" is spelled \"Eng\" in the desired state; this target cannot rename groups, so \
         its name is left as it is"
    );
}

#[test]
fn member_differing_only_in_case_is_no_change_on_case_insensitive_targets() {
    let d = desired([group("eng", &["Alice", "BOB"], &[])]);
    let o = observed([managed(group("eng", &["alice", "bob"], &[]))]);
    let p = policy(scope(None, &d, true));
    assert!(run(&d, &o, &p, caps(true, true)).is_empty());
}

#[test]
fn case_matters_on_case_sensitive_targets() {
    let d = desired([group("Eng", &["Alice"], &[])]);
    let o = observed([managed(group("eng", &["alice"], &[]))]);
    let mut p = all_groups(&d);
    p.prune = true;
    let out = run(&d, &o, &p, caps(true, false));
    assert_eq!(
        lines(&out),
        [
            "+ create group \"Eng\"",
            "+ member \"Alice\" in \"Eng\"",
            "- delete group \"eng\"",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Targets that cannot nest

fn names(set: &BTreeSet<UserKey>) -> Vec<&str> {
    set.iter().map(UserKey::as_str).collect()
}

#[test]
fn closure_flattens_and_reports_cycles() {
    // Acyclic: top → mid → leaf, and top → leaf directly (a diamond).
    let d = desired([
        group("top", &["t"], &["mid", "leaf"]),
        group("mid", &["m"], &["leaf"]),
        group("leaf", &["l"], &[]),
        // A cycle of two.
        group("ping", &["p1"], &["pong"]),
        group("pong", &["p2"], &["ping"]),
        // A self-loop.
        group("selfie", &["s"], &["selfie"]),
    ]);
    let (flat, warnings) = closure::flatten(&d);
    assert_eq!(
        names(&flat.groups[&GroupName::from("top")].members),
        ["l", "m", "t"]
    );
    assert_eq!(
        names(&flat.groups[&GroupName::from("mid")].members),
        ["l", "m"]
    );
    assert_eq!(names(&flat.groups[&GroupName::from("leaf")].members), ["l"]);
    assert!(flat.groups.values().all(|g| g.children.is_empty()));

    let cycles: BTreeSet<&str> = warnings
        .iter()
        .filter(|w| w.kind == WarningKind::DroppedCycle)
        .map(|w| w.group.as_str())
        .collect();
    assert_eq!(cycles, BTreeSet::from(["ping", "pong", "selfie"]));
    assert!(
        warnings
            .iter()
            .any(|w| w.message == "cycle of child groups ping → pong → ping; not followed"),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.message == "cycle of child groups selfie → selfie; not followed"),
        "{warnings:#?}"
    );

    // Through the planner: no child changes, children's members become direct members.
    let o = observed([managed(group("top", &["t"], &[]))]);
    let out = run(&d, &o, &all_groups(&d), caps(false, false));
    assert!(
        out.changes
            .iter()
            .all(|c| !matches!(c, Change::AddChild { .. } | Change::RemoveChild { .. }))
    );
    let top: Vec<String> = lines(&out)
        .into_iter()
        .filter(|l| l.ends_with("in \"top\""))
        .collect();
    assert_eq!(
        top,
        ["+ member \"l\" in \"top\"", "+ member \"m\" in \"top\""]
    );
    assert!(!warnings_of(&out, WarningKind::DroppedCycle).is_empty());
}

/// `closure::flatten` keeps the members of every group on or above a cycle: its own direct
/// members and those of every group it reaches, although a walk that met a cycle is not
/// memoized.
#[test]
fn closure_keeps_members_of_groups_on_and_above_a_cycle() {
    let d = desired([
        group("top", &["t"], &["ping"]),
        group("ping", &["p1"], &["pong"]),
        group("pong", &["p2"], &["ping"]),
    ]);
    let (flat, warnings) = closure::flatten(&d);
    assert!(warnings.iter().any(|w| w.kind == WarningKind::DroppedCycle));
    assert_eq!(
        names(&flat.groups[&GroupName::from("ping")].members),
        ["p1", "p2"]
    );
    assert_eq!(
        names(&flat.groups[&GroupName::from("pong")].members),
        ["p1", "p2"]
    );
    assert_eq!(
        names(&flat.groups[&GroupName::from("top")].members),
        ["p1", "p2", "t"]
    );
}

/// On a non-nesting target, authoritative, the groups on or above a cycle keep every member they
/// reach: the plan removes none of them.
#[test]
fn non_nesting_plan_keeps_members_of_cyclic_groups() {
    let d = desired([
        group("top", &["t"], &["ping"]),
        group("ping", &["p1"], &["pong"]),
        group("pong", &["p2"], &["ping"]),
    ]);
    let o = observed([
        managed(group("top", &["p1", "p2", "t"], &[])),
        managed(group("ping", &["p1", "p2"], &[])),
        managed(group("pong", &["p1", "p2"], &[])),
    ]);
    let out = run(&d, &o, &all_groups(&d), caps(false, false));
    assert_eq!(lines(&out), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// A plan with every kind of change and warning.
fn rich_plan() -> Plan {
    let d = desired([
        with_attr(
            described(
                group(
                    "Engineering",
                    &["alice", "dave"],
                    &["Platform", "sys-admins"],
                ),
                "Engineering department",
            ),
            "custom",
            json!({"cost": 2}),
        ),
        with_attr(
            described(
                group("Platform", &["bob", "carol", "ghost"], &[]),
                "Platform team",
            ),
            "custom",
            json!({"team": "platform"}),
        ),
        group("sys-admins", &["alice"], &[]),
        group("Sales", &["erin"], &[]),
    ]);
    let mut o = observed([
        managed(with_attr(
            described(
                group("Engineering", &["dave", "mallory"], &["Legacy"]),
                "Eng",
            ),
            "custom",
            json!({"cost": 1}),
        )),
        managed(group("Legacy", &["oscar"], &[])),
        of_kind(group("sys-admins", &["root"], &[]), GroupKind::System),
    ]);
    o.unknown_users = users(&["ghost"]);
    o.others.insert("Sales".into());
    let mut p = policy(scope(
        Some(&["Engineering", "Platform", "Legacy", "sys-*"]),
        &d,
        false,
    ));
    p.prune = true;
    run(&d, &o, &p, caps(true, false))
}

fn in_sync_plan() -> Plan {
    let d = desired([group("Engineering", &["alice"], &[])]);
    let o = observed([managed(group("Engineering", &["alice"], &[]))]);
    plan("staging", TT, &d, &o, &all_groups(&d), caps(true, false))
}

fn failed() -> Vec<Failed> {
    vec![Failed {
        target: "intranet".to_owned(),
        error: "GET /api/security/groups: 503 Service Unavailable after 4 retries".to_owned(),
    }]
}

#[test]
fn rich_plan_has_every_kind_of_change_in_order() {
    let out = rich_plan();
    let ops: Vec<(&str, &str)> = out
        .changes
        .iter()
        .map(|c| (c.group().as_str(), c.op()))
        .collect();
    assert_eq!(
        ops,
        [
            ("Engineering", "update_group"),
            ("Engineering", "add_member"),
            ("Engineering", "remove_member"),
            ("Engineering", "add_child"),
            ("Engineering", "add_child"),
            ("Engineering", "remove_child"),
            ("Legacy", "delete_group"),
            ("Platform", "create_group"),
            ("Platform", "add_member"),
            ("Platform", "add_member"),
        ]
    );
    assert_eq!(
        out.summary,
        Summary {
            add: 6,
            change: 1,
            remove: 3
        }
    );
    let kinds: Vec<WarningKind> = out.warnings.iter().map(|w| w.kind).collect();
    assert_eq!(
        kinds,
        [
            WarningKind::UnknownUser,
            WarningKind::SkippedGroup,
            WarningKind::OutOfScope
        ]
    );
}

#[test]
fn text_rendering() {
    let text = render(&[rich_plan(), in_sync_plan()], &failed(), &[], Format::Text);
    insta::assert_snapshot!("text", text);
}

#[test]
fn text_rendering_without_changes() {
    let text = render(&[in_sync_plan()], &[], &[], Format::Text);
    assert_eq!(
        text,
        "staging: in sync\n\nNo changes. Targets are in sync.\n"
    );
}

/// A target that could not be planned is not "in sync"; the summary line must not say so.
#[test]
fn failed_target_is_not_reported_as_in_sync() {
    for format in [Format::Text, Format::Markdown] {
        let out = render(&[in_sync_plan()], &failed(), &[], format);
        assert!(out.contains("not planned"), "{out}");
        assert!(!out.contains("Targets are in sync"), "{format:?}:\n{out}");
    }
}

#[test]
fn json_rendering() {
    let json = render(&[rich_plan(), in_sync_plan()], &[], &[], Format::Json);
    insta::assert_snapshot!("json", json);
}

#[test]
fn markdown_rendering() {
    let md = render(
        &[rich_plan(), in_sync_plan()],
        &failed(),
        &[],
        Format::Markdown,
    );
    insta::assert_snapshot!("markdown", md);
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn json_matches_the_contract_shape() {
    let plans = [rich_plan(), in_sync_plan()];
    let doc: Value = serde_json::from_str(&render(&plans, &[], &[], Format::Json)).unwrap();
    assert_eq!(keys(&doc), BTreeSet::from(["targets"]));
    let targets = doc["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for (t, p) in targets.iter().zip(&plans) {
        assert_eq!(
            keys(t),
            BTreeSet::from(["target", "changes", "warnings", "summary"])
        );
        assert_eq!(t["target"], json!(p.target));
        assert!(t["warnings"].is_array());
        let changes = t["changes"].as_array().unwrap();
        let mut counts = [0u64; 3];
        for c in changes {
            let op = c["op"].as_str().unwrap();
            assert!(c["group"].is_string(), "{c}");
            let k = keys(c);
            match op {
                "add_member" | "remove_member" => {
                    assert_eq!(k, BTreeSet::from(["op", "group", "member"]));
                    assert!(c["member"].is_string());
                }
                "add_child" | "remove_child" => {
                    assert_eq!(k, BTreeSet::from(["op", "group", "child"]));
                    assert!(c["child"].is_string());
                }
                "update_group" => {
                    assert_eq!(k, BTreeSet::from(["op", "group", "fields"]));
                    for f in c["fields"].as_object().unwrap().values() {
                        assert_eq!(keys(f), BTreeSet::from(["from", "to"]));
                    }
                }
                "delete_group" => assert_eq!(k, BTreeSet::from(["op", "group"])),
                // A create carries what the new group starts with, when the desired state sets it.
                "create_group" => {
                    assert!(k.contains("op") && k.contains("group"));
                    assert!(k.is_subset(&BTreeSet::from([
                        "op",
                        "group",
                        "description",
                        "attributes"
                    ])));
                }
                other => panic!("op {other} is not in the contract"),
            }
            counts[match op {
                "create_group" | "add_member" | "add_child" => 0,
                "update_group" => 1,
                _ => 2,
            }] += 1;
        }
        assert_eq!(
            t["summary"],
            json!({"add": counts[0], "change": counts[1], "remove": counts[2]})
        );
    }
    // The update carries each field's from and to.
    assert_eq!(
        targets[0]["changes"][0],
        json!({
            "op": "update_group",
            "group": "Engineering",
            "fields": {
                "custom": {"from": {"cost": 1}, "to": {"cost": 2}},
                "description": {"from": "Eng", "to": "Engineering department"},
            }
        })
    );
    // Failures are listed beside the targets only when there are some.
    let with_failed: Value =
        serde_json::from_str(&render(&plans, &failed(), &[], Format::Json)).unwrap();
    assert_eq!(keys(&with_failed), BTreeSet::from(["targets", "failed"]));
    assert_eq!(
        with_failed["failed"],
        json!([{"target": "intranet", "error": failed()[0].error}])
    );
}

/// Two desired groups that a case-insensitive target cannot tell apart would collide on create;
/// the second is left alone with a warning instead.
#[test]
fn names_differing_only_in_case_clash_on_case_insensitive_targets() {
    let d = desired([group("Eng", &["alice"], &[]), group("eng", &["bob"], &[])]);
    let o = observed([]);
    let p = run(&d, &o, &all_groups(&d), caps(true, true));
    assert_eq!(
        lines(&p),
        ["+ create group \"Eng\"", "+ member \"alice\" in \"Eng\""]
    );
    assert_eq!(warnings_of(&p, WarningKind::NameClash).len(), 1);
    // A target that tells case apart creates both.
    let p = run(&d, &o, &all_groups(&d), caps(true, false));
    assert_eq!(p.summary.add, 4);
    assert!(warnings_of(&p, WarningKind::NameClash).is_empty());
}

/// A plan with errors shows each refused change with where its group is defined, in every
/// format, and its summary does not read as clean.
#[test]
fn plan_errors_are_rendered_with_their_place() {
    let mut p = rich_plan();
    let create = p
        .changes
        .iter()
        .position(|c| c.op() == "create_group")
        .unwrap();
    p.errors = vec![
        crate::plan::PlanError {
            group: "Platform".into(),
            change: Some(create),
            at: Some("groups/eng.toml:7:1".to_owned()),
            message: "Studio refuses this name".to_owned(),
        },
        crate::plan::PlanError {
            group: "Engineering".into(),
            change: None,
            at: None,
            message: "the account may not change this group".to_owned(),
        },
    ];
    let text = render(std::slice::from_ref(&p), &[], &[], Format::Text);
    assert!(
        text.contains(
            "  error: groups/eng.toml:7:1: create group \"Platform\": Studio refuses this name\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  error: group \"Engineering\": the account may not change this group\n"),
        "{text}"
    );
    assert!(
        text.ends_with("2 errors: the targets would refuse them.\n"),
        "{text}"
    );
    let md = render(std::slice::from_ref(&p), &[], &[], Format::Markdown);
    assert!(
        md.contains("- ❌ **prod**: error: groups/eng.toml:7:1: create group \"Platform\""),
        "{md}"
    );
    let doc: Value = serde_json::from_str(&render(&[p], &[], &[], Format::Json)).unwrap();
    assert_eq!(
        doc["targets"][0]["errors"][0],
        json!({"group": "Platform", "change": create, "at": "groups/eng.toml:7:1",
               "message": "Studio refuses this name"})
    );
    assert_eq!(
        doc["targets"][0]["errors"][1],
        json!({"group": "Engineering", "message": "the account may not change this group"})
    );
}

/// An error about a whole group refuses each of its changes and no other; an error about one
/// change refuses that change alone.
#[test]
fn plan_errors_refuse_exactly_their_changes() {
    let mut p = rich_plan();
    p.errors = vec![
        crate::plan::PlanError {
            group: "Engineering".into(),
            change: None,
            at: None,
            message: "no right".to_owned(),
        },
        crate::plan::PlanError {
            group: "Platform".into(),
            change: Some(8),
            at: None,
            message: "bad user".to_owned(),
        },
    ];
    let refused: Vec<usize> = (0..p.changes.len())
        .filter(|i| p.refusals_of(*i).next().is_some())
        .collect();
    assert_eq!(refused, [0, 1, 2, 3, 4, 5, 8]);
}

/// A Markdown plan past the comment limit is cut at a whole line, says so, and stays within it;
/// the summary table and what needs a reviewer's eye are never cut.
#[test]
fn a_markdown_plan_too_long_for_a_comment_is_cut_with_a_note() {
    let mut big = rich_plan();
    let group = GroupName::from("Engineering");
    big.changes = (0..5000)
        .map(|i| Change::AddMember {
            group: group.clone(),
            member: UserKey::from(format!("user{i:05}")),
        })
        .collect();
    big.summary = Summary::of(&big.changes);
    let md = render(std::slice::from_ref(&big), &[], &[], Format::Markdown);
    assert!(md.len() <= super::render::MARKDOWN_LIMIT, "{}", md.len());
    assert!(
        md.contains("⚠️ **truncated**: this comment shows "),
        "{}",
        &md[md.len() - 600..]
    );
    assert!(md.contains(" of 5000 changes"), "{}", &md[md.len() - 600..]);
    assert!(md.contains("| **prod** | 5000 | 0 | 0 |"), "{}", &md[..400]);
    // The cut closes the code block and the section it opened.
    assert_eq!(md.matches("```").count() % 2, 0);
    assert_eq!(
        md.matches("<details>").count(),
        md.matches("</details>").count()
    );
    assert!(
        md.ends_with("Plan: 5000 to add, 0 to change, 0 to remove.\n"),
        "{}",
        &md[md.len() - 200..]
    );

    let small = render(&[rich_plan()], &[], &[], Format::Markdown);
    assert!(!small.contains("truncated"), "{small}");
}

#[test]
fn a_widened_scope_takes_in_the_extra_names_compared_as_it_compares_names() {
    let n = |s: &str| GroupName::from(s);
    let d = desired([group("eng-a", &[], &[])]);
    for ci in [false, true] {
        let by_glob = scope(Some(&["eng*"]), &d, ci);
        assert!(!by_glob.contains(&n("Ops")), "not widened yet");
        let by_glob = by_glob.including(&[n("Ops")]);
        assert!(by_glob.contains(&n("Ops")));
        assert_eq!(by_glob.contains(&n("OPS")), ci, "ci = {ci}");
        assert!(by_glob.contains(&n("eng-a")));
        assert!(by_glob.contains(&n("eng-b")), "the patterns still hold");
        assert!(!by_glob.contains(&n("hr")));

        let by_desired = scope(None, &d, ci).including(&[n("Ops")]);
        assert!(by_desired.contains(&n("Ops")));
        assert_eq!(by_desired.contains(&n("OPS")), ci, "ci = {ci}");
        assert!(by_desired.contains(&n("eng-a")));
        assert_eq!(by_desired.contains(&n("ENG-A")), ci, "ci = {ci}");
        assert!(!by_desired.contains(&n("eng-b")));
        assert!(!by_desired.contains(&n("hr")));
    }
    let nothing = Scope::empty();
    assert!(!nothing.contains(&n("Ops")));
    assert!(nothing.including(&[n("Ops")]).contains(&n("Ops")));
    // `*` anywhere among the patterns is every name; a pattern merely containing `*` is not.
    assert!(scope(Some(&["eng*", "*"]), &d, false).contains(&n("hr")));
    assert!(!scope(Some(&["eng*", "h*x"]), &d, false).contains(&n("hr")));
}

/// Which index the planner builds: the name-order walk only where equal names are the target's
/// pairs, and there the same counterparts the folded index finds.
#[test]
fn the_name_order_walk_is_taken_only_where_names_compare_as_themselves() {
    let aligned = |d: &Desired, o: &Observed, ci: bool| {
        matches!(Index::new(d, o, ci).0, Index::Aligned { .. })
    };
    let d = desired([
        group("a", &[], &[]),
        group("c", &[], &[]),
        group("e", &[], &[]),
    ]);
    let o = observed(["b", "c", "d", "f"].map(|n| managed(group(n, &[], &[]))));
    for ci in [false, true] {
        let (index, counterparts) = Index::new(&d, &o, ci);
        let Index::Aligned { unmatched } = index else {
            panic!("lowercase names compare as themselves (ci = {ci})");
        };
        let unmatched: Vec<&str> = unmatched.iter().map(|g| g.group.name.as_str()).collect();
        assert_eq!(unmatched, ["b", "d", "f"]);
        let found: Vec<Option<&str>> = counterparts
            .iter()
            .map(|c| match c {
                Counterpart::Have(h) => h.map(|g| g.group.name.as_str()),
                Counterpart::Clash(_) => panic!("no names clash"),
            })
            .collect();
        assert_eq!(found, [None, Some("c"), None]);
    }

    let upper_desired = desired([group("Eng", &[], &[])]);
    assert!(aligned(&upper_desired, &o, false));
    assert!(!aligned(&upper_desired, &o, true));
    let upper_observed = observed([managed(group("Eng", &[], &[]))]);
    assert!(aligned(&d, &upper_observed, false));
    assert!(!aligned(&d, &upper_observed, true));
    // An observed group filed under another name than its own (a target's id order, say).
    let mut misfiled = observed([managed(group("c", &[], &[]))]);
    let g = misfiled.groups.remove(&GroupName::from("c")).unwrap();
    misfiled.groups.insert(GroupName::from("zz"), g);
    assert!(!aligned(&d, &misfiled, false));
    let (_, counterparts) = Index::new(&d, &misfiled, false);
    assert!(matches!(counterparts[1], Counterpart::Have(Some(g)) if g.group.name.as_str() == "c"));

    // Two desired names that differ only in case clash on a target that ignores case.
    let twins = desired([group("Ops", &[], &[]), group("ops", &[], &[])]);
    let none = Observed::default();
    let (_, counterparts) = Index::new(&twins, &none, true);
    assert!(matches!(counterparts[0], Counterpart::Have(None)));
    assert!(matches!(counterparts[1], Counterpart::Clash(first) if first.as_str() == "Ops"));
}

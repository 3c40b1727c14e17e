//! Property tests of the planner over small random universes: a plan, carried out on the observed
//! state by [`apply`], gives the desired state; it stays within its scope and its mode; and it is
//! the same plan every time.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is a failure with its place.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::subsequence;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use super::sets::{cmp_plain, is_folded};
use super::tests::{caps, scope};
use super::*;
use crate::model::{Group, UserKey};

const TT: &str = "contensis";

/// Group names, with spaces, upper case and non-ASCII letters; distinct even without case.
const POOL: [&str; 10] = [
    "a",
    "alpha",
    "Ab",
    "b c",
    "eng",
    "Eng Team",
    "ops",
    "zeta",
    "ärzte",
    "数据 组",
];
/// User keys, distinct even without case.
const USERS: [&str; 10] = [
    "alice", "bob", "Carol", "dave", "eve", "frank", "zoë", "heidi", "o'brien", "judy",
];
const DESCRIPTIONS: [&str; 3] = ["", "Engineering", "ünïcode — desc"];

fn attr_value(i: usize) -> Value {
    [json!({}), json!({"k": 1}), json!({"k": 2}), json!("s")][i].clone()
}

/// Scopes for the scope property: glob patterns, or `None` for "the desired groups".
const SCOPES: [Option<&[&str]>; 5] = [
    Some(&["a*"]),
    Some(&["e*", "z*"]),
    Some(&["[ab]*", "数*"]),
    Some(&["*"]),
    None,
];

/// What one name of the universe is, in the desired and in the observed state.
#[derive(Clone, Debug)]
struct Spec {
    in_desired: bool,
    d_members: u16,
    /// Bits over the universe; only names later in it are taken, so desired children are acyclic.
    d_children: u16,
    d_desc: Option<usize>,
    d_attr: Option<usize>,
    in_observed: bool,
    kind: GroupKind,
    o_members: u16,
    /// Bits over the universe; any observed group but itself.
    o_children: u16,
    o_desc: Option<usize>,
    o_attr: Option<usize>,
    /// How a case-insensitive target spells the name: 0 as desired, 1 upper, 2 lower.
    case: u8,
    /// Which members a case-insensitive target spells in upper case.
    member_case: u16,
}

#[derive(Clone, Debug)]
struct World {
    /// Up to 8 names of `POOL`, in random order.
    names: Vec<&'static str>,
    specs: Vec<Spec>,
    /// Bits over `USERS`: desired users the target does not know (when asked for).
    unknown: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct Opts {
    /// Every observed group is managed (no system or external groups).
    all_managed: bool,
    /// Some desired users are unknown to the target.
    unknown_users: bool,
    /// The target spells names and members in other cases.
    ci_spelling: bool,
}

fn bits(mask: u16) -> impl Iterator<Item = usize> {
    (0..16).filter(move |i| mask & (1 << i) != 0)
}

fn user_set(mask: u16) -> BTreeSet<UserKey> {
    bits(mask)
        .filter(|&i| i < USERS.len())
        .map(|i| UserKey::from(USERS[i]))
        .collect()
}

fn attrs(attr: Option<usize>) -> BTreeMap<String, crate::model::Attributes> {
    attr.map(|i| {
        (
            TT.to_owned(),
            BTreeMap::from([("custom".to_owned(), attr_value(i))]),
        )
    })
    .into_iter()
    .collect()
}

impl World {
    fn desired(&self) -> Desired {
        let mut groups = BTreeMap::new();
        for (i, (name, s)) in self.names.iter().zip(&self.specs).enumerate() {
            if !s.in_desired {
                continue;
            }
            let children = bits(s.d_children)
                .filter(|&j| j > i && j < self.names.len() && self.specs[j].in_desired)
                .map(|j| GroupName::from(self.names[j]))
                .collect();
            let g = Group {
                name: (*name).into(),
                description: s.d_desc.map(|i| DESCRIPTIONS[i].to_owned()),
                members: user_set(s.d_members),
                children,
                extras: attrs(s.d_attr),
            };
            groups.insert(g.name.clone(), g);
        }
        Desired {
            groups,
            origins: BTreeMap::new(),
        }
    }

    fn spelled(&self, i: usize, opts: Opts) -> GroupName {
        let name = self.names[i];
        GroupName(match (opts.ci_spelling, self.specs[i].case) {
            (true, 1) => name.to_uppercase(),
            (true, 2) => name.to_lowercase(),
            _ => name.to_owned(),
        })
    }

    fn observed(&self, opts: Opts) -> Observed {
        let desired_users = self.desired().user_keys();
        let unknown: BTreeSet<UserKey> = if opts.unknown_users {
            user_set(self.unknown)
                .intersection(&desired_users)
                .cloned()
                .collect()
        } else {
            BTreeSet::new()
        };
        let mut groups = BTreeMap::new();
        for (i, s) in self.specs.iter().enumerate() {
            if !s.in_observed {
                continue;
            }
            let name = self.spelled(i, opts);
            let members = user_set(s.o_members)
                .into_iter()
                .filter(|u| !unknown.contains(u))
                .map(|u| {
                    let upper = USERS.iter().position(|x| *x == u.as_str()).unwrap();
                    if opts.ci_spelling && s.member_case & (1 << upper) != 0 {
                        UserKey::from(u.as_str().to_uppercase())
                    } else {
                        u
                    }
                })
                .collect();
            let children = bits(s.o_children)
                .filter(|&j| j != i && j < self.names.len() && self.specs[j].in_observed)
                .map(|j| self.spelled(j, opts))
                .collect();
            let g = Group {
                name: name.clone(),
                description: s.o_desc.map(|i| DESCRIPTIONS[i].to_owned()),
                members,
                children,
                extras: attrs(s.o_attr),
            };
            let kind = if opts.all_managed {
                GroupKind::Managed
            } else {
                s.kind
            };
            groups.insert(
                name.clone(),
                ObservedGroup {
                    id: format!("id-{name}"),
                    group: g,
                    kind,
                },
            );
        }
        Observed {
            groups,
            others: BTreeSet::new(),
            users: desired_users
                .iter()
                .filter(|u| !unknown.contains(*u))
                .map(|u| (u.clone(), format!("uid-{u}")))
                .collect(),
            unknown_users: unknown,
            ..Observed::default()
        }
    }
}

fn kind() -> impl Strategy<Value = GroupKind> {
    prop_oneof![
        6 => Just(GroupKind::Managed),
        1 => Just(GroupKind::System),
        1 => Just(GroupKind::External),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (proptest::bool::weighted(0.7), any::<u16>(), any::<u16>()),
        (
            proptest::option::of(0..DESCRIPTIONS.len()),
            proptest::option::of(0..4usize),
        ),
        (
            proptest::bool::weighted(0.7),
            kind(),
            any::<u16>(),
            any::<u16>(),
        ),
        (
            proptest::option::of(0..DESCRIPTIONS.len()),
            proptest::option::of(0..4usize),
        ),
        (0..3u8, any::<u16>()),
    )
        .prop_map(
            |(
                (in_desired, d_members, d_children),
                (d_desc, d_attr),
                (in_observed, kind, o_members, o_children),
                (o_desc, o_attr),
                (case, member_case),
            )| Spec {
                in_desired,
                d_members,
                d_children,
                d_desc,
                d_attr,
                in_observed,
                kind,
                o_members,
                o_children,
                o_desc,
                o_attr,
                case,
                member_case,
            },
        )
}

fn world() -> impl Strategy<Value = World> {
    subsequence(POOL.to_vec(), 0..=8)
        .prop_shuffle()
        .prop_flat_map(|names| {
            let n = names.len();
            (
                Just(names),
                proptest::collection::vec(spec(), n),
                any::<u16>(),
            )
        })
        .prop_map(|(names, specs, unknown)| World {
            names,
            specs,
            unknown,
        })
}

fn membership() -> impl Strategy<Value = MembershipMode> {
    prop_oneof![
        Just(MembershipMode::Authoritative),
        Just(MembershipMode::Additive)
    ]
}

/// No limits: the guard is tested elsewhere.
fn policy(scope: Scope, membership: MembershipMode, prune: bool) -> Policy {
    Policy {
        scope,
        membership,
        prune,
        max_deletes: usize::MAX,
        max_group_shrink: Share::ALL,
        allow_empty_source: true,
    }
}

fn run(d: &Desired, o: &Observed, p: &Policy, c: Capabilities) -> Plan {
    plan("t", TT, d, o, p, c)
}

/// Moves the observed groups outside `scope` to `others`, as a connector does.
fn split(mut o: Observed, scope: &Scope) -> Observed {
    let out: Vec<GroupName> = o
        .groups
        .keys()
        .filter(|n| !scope.contains(n))
        .cloned()
        .collect();
    for n in out {
        o.groups.remove(&n);
        o.others.insert(n);
    }
    o
}

/// The desired state as a target holding exactly it would report it.
fn as_observed(d: &Desired) -> Observed {
    Observed {
        groups: d
            .groups
            .values()
            .map(|g| {
                (
                    g.name.clone(),
                    ObservedGroup {
                        id: format!("id-{}", g.name),
                        group: g.clone(),
                        kind: GroupKind::Managed,
                    },
                )
            })
            .collect(),
        users: d
            .user_keys()
            .into_iter()
            .map(|u| {
                let id = format!("uid-{u}");
                (u, id)
            })
            .collect(),
        ..Observed::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Carrying out a plan

/// The key of the observed group a change names: the same name, or on a case-insensitive target
/// the same name without case. Panics when the target has no such group.
fn find(o: &Observed, name: &GroupName, ci: bool) -> GroupName {
    if o.groups.contains_key(name) {
        return name.clone();
    }
    if ci
        && let Some(k) = o
            .groups
            .keys()
            .find(|k| fold(k.as_str(), true) == fold(name.as_str(), true))
    {
        return k.clone();
    }
    panic!("the plan changes group {name:?}, which the target does not have");
}

fn managed_mut<'a>(o: &'a mut Observed, name: &GroupName, ci: bool) -> &'a mut Group {
    let key = find(o, name, ci);
    let g = o.groups.get_mut(&key).unwrap();
    assert_eq!(
        g.kind,
        GroupKind::Managed,
        "the plan changes {name:?}, a {:?} group",
        g.kind
    );
    &mut g.group
}

/// Carries out each change of `plan` on a copy of `observed`, as a case-sensitive target would.
fn apply(plan: &Plan, observed: &Observed) -> Observed {
    apply_on(plan, observed, false)
}

/// Carries out each change of `plan` on a copy of `observed`; `ci`: the target ignores case.
/// Panics on a change that makes no sense for the state it meets (a create of an existing group,
/// a removal of an absent member, an update whose `from` is not the current value, ...).
fn apply_on(plan: &Plan, observed: &Observed, ci: bool) -> Observed {
    let same = |a: &str, b: &str| fold(a, ci) == fold(b, ci);
    let mut o = observed.clone();
    for change in &plan.changes {
        match change {
            Change::CreateGroup {
                group,
                description,
                attributes,
            } => {
                assert!(
                    !o.groups
                        .keys()
                        .chain(&o.others)
                        .any(|k| same(k.as_str(), group.as_str())),
                    "create of {group:?}, which exists"
                );
                let mut g = Group::named(group.clone());
                g.description.clone_from(description);
                if !attributes.is_empty() {
                    g.extras.insert(TT.to_owned(), attributes.clone());
                }
                o.groups.insert(
                    group.clone(),
                    ObservedGroup {
                        id: format!("id-{group}"),
                        group: g,
                        kind: GroupKind::Managed,
                    },
                );
            }
            Change::UpdateGroup { group, fields } => {
                assert!(!fields.is_empty(), "empty update of {group:?}");
                let key = find(&o, group, ci);
                let mut og = o.groups.remove(&key).unwrap();
                assert_eq!(og.kind, GroupKind::Managed, "update of {group:?}");
                for (field, FieldChange { from, to }) in fields {
                    match field.as_str() {
                        "name" => {
                            assert_eq!(from, &json!(og.group.name.as_str()));
                            og.group.name = GroupName(to.as_str().unwrap().to_owned());
                        }
                        "description" => {
                            let cur = og
                                .group
                                .description
                                .clone()
                                .map_or(Value::Null, Value::from);
                            assert_eq!(from, &cur);
                            og.group.description = Some(to.as_str().unwrap().to_owned());
                        }
                        attr => {
                            let a = og.group.extras.entry(TT.to_owned()).or_default();
                            assert_eq!(from, a.get(attr).unwrap_or(&Value::Null));
                            a.insert(attr.to_owned(), to.clone());
                        }
                    }
                }
                assert!(
                    !o.groups.contains_key(&og.group.name),
                    "rename onto an existing group"
                );
                o.groups.insert(og.group.name.clone(), og);
            }
            Change::AddMember { group, member } => {
                let g = managed_mut(&mut o, group, ci);
                assert!(
                    !g.members.iter().any(|m| same(m.as_str(), member.as_str())),
                    "add of {member:?} to {group:?}, already a member"
                );
                g.members.insert(member.clone());
            }
            Change::RemoveMember { group, member } => {
                let g = managed_mut(&mut o, group, ci);
                assert!(
                    g.members.remove(member),
                    "removal of {member:?} from {group:?}, not a member"
                );
            }
            Change::AddChild { group, child } => {
                let g = managed_mut(&mut o, group, ci);
                assert!(
                    !g.children.iter().any(|c| same(c.as_str(), child.as_str())),
                    "add of child {child:?} to {group:?}, already a child"
                );
                g.children.insert(child.clone());
            }
            Change::RemoveChild { group, child } => {
                let g = managed_mut(&mut o, group, ci);
                assert!(
                    g.children.remove(child),
                    "removal of child {child:?} from {group:?}, not a child"
                );
            }
            Change::DeleteGroup { group } => {
                managed_mut(&mut o, group, ci);
                let key = find(&o, group, ci);
                o.groups.remove(&key);
            }
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// Checks

type Check = Result<(), TestCaseError>;

fn names_of(o: &Observed, kind_is_managed: bool) -> BTreeSet<GroupName> {
    o.groups
        .values()
        .filter(|g| (g.kind == GroupKind::Managed) == kind_is_managed)
        .map(|g| g.group.name.clone())
        .collect()
}

/// After an authoritative, pruning, all-groups plan: the managed groups are exactly the desired
/// ones (but those the target owns), with the desired members, children, descriptions and
/// attributes; the groups the target owns are untouched. `ci`: compare without case.
fn matches_desired(d: &Desired, before: &Observed, after: &Observed, ci: bool) -> Check {
    let f = |s: &str| fold(s, ci);
    let owned: BTreeSet<String> = names_of(before, false)
        .iter()
        .map(|n| f(n.as_str()))
        .collect();
    let want: BTreeSet<GroupName> = d
        .groups
        .keys()
        .filter(|n| !owned.contains(&f(n.as_str())))
        .cloned()
        .collect();
    prop_assert_eq!(&names_of(after, true), &want);
    for og in after.groups.values() {
        if og.kind != GroupKind::Managed {
            prop_assert_eq!(Some(og), before.groups.get(&og.group.name));
            continue;
        }
        let g = &og.group;
        let w = &d.groups[&g.name];
        let folded =
            |s: &BTreeSet<UserKey>| s.iter().map(|u| f(u.as_str())).collect::<BTreeSet<_>>();
        prop_assert_eq!(
            folded(&g.members),
            folded(&w.members),
            "members of {}",
            g.name
        );
        let folded =
            |s: &BTreeSet<GroupName>| s.iter().map(|u| f(u.as_str())).collect::<BTreeSet<_>>();
        prop_assert_eq!(
            folded(&g.children),
            folded(&w.children),
            "children of {}",
            g.name
        );
        if let Some(desc) = &w.description {
            prop_assert_eq!(g.description.as_deref().unwrap_or(""), desc.as_str());
        }
        for (k, v) in w.extras.get(TT).into_iter().flatten() {
            let have = g
                .extras
                .get(TT)
                .and_then(|a| a.get(k))
                .unwrap_or(&Value::Null);
            prop_assert!(same_attr(have, v), "{} {k}: {have} vs {v}", g.name);
        }
    }
    Ok(())
}

fn is_child_op(c: &Change) -> bool {
    matches!(c, Change::AddChild { .. } | Change::RemoveChild { .. })
}

fn is_removal(c: &Change) -> bool {
    matches!(
        c,
        Change::RemoveMember { .. } | Change::RemoveChild { .. } | Change::DeleteGroup { .. }
    )
}

/// Where a change falls within its group: create/update, member adds, member removes, child
/// adds, child removes, delete.
fn rank(c: &Change) -> u8 {
    match c {
        Change::CreateGroup { .. } | Change::UpdateGroup { .. } => 0,
        Change::AddMember { .. } => 1,
        Change::RemoveMember { .. } => 2,
        Change::AddChild { .. } => 3,
        Change::RemoveChild { .. } => 4,
        Change::DeleteGroup { .. } => 5,
    }
}

fn item(c: &Change) -> Option<&str> {
    match c {
        Change::AddMember { member, .. } | Change::RemoveMember { member, .. } => {
            Some(member.as_str())
        }
        Change::AddChild { child, .. } | Change::RemoveChild { child, .. } => Some(child.as_str()),
        _ => None,
    }
}

fn ordered(p: &Plan) -> Check {
    let mut done = BTreeSet::new();
    for pair in p.changes.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.group() == b.group() {
            prop_assert!(rank(a) <= rank(b), "{a:?} before {b:?}");
            prop_assert!(
                !(rank(a) == 0 && rank(b) == 0),
                "two creates/updates of {}",
                a.group()
            );
            if rank(a) == rank(b) {
                prop_assert!(item(a) < item(b), "{a:?} before {b:?}");
            }
        } else {
            prop_assert!(a.group() < b.group(), "{a:?} before {b:?}");
            prop_assert!(done.insert(a.group().clone()), "{} twice", a.group());
        }
    }
    Ok(())
}

fn summary_is_counted(p: &Plan) -> Check {
    let count = |f: fn(&Change) -> bool| p.changes.iter().filter(|c| f(c)).count();
    prop_assert_eq!(p.removals(), count(is_removal));
    prop_assert_eq!(
        p.summary.add,
        count(|c| matches!(
            c,
            Change::CreateGroup { .. } | Change::AddMember { .. } | Change::AddChild { .. }
        ))
    );
    prop_assert_eq!(
        p.summary.change,
        count(|c| matches!(c, Change::UpdateGroup { .. }))
    );
    Ok(())
}

fn has_warning(p: &Plan, kind: WarningKind, group: &GroupName) -> bool {
    p.warnings
        .iter()
        .any(|w| w.kind == kind && &w.group == group)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) + (b): authoritative, nested, every group in scope, prune: the plan carried out gives
    /// the desired state, and planning again gives nothing.
    #[test]
    fn authoritative_plan_applied_gives_desired_and_converges(w in world()) {
        let d = w.desired();
        let o = w.observed(Opts::default());
        let p = policy(scope(Some(&["*"]), &d, false), MembershipMode::Authoritative, true);
        let first = run(&d, &o, &p, caps(true, false));
        let after = apply(&first, &o);
        matches_desired(&d, &o, &after, false)?;
        let again = run(&d, &after, &p, caps(true, false));
        prop_assert!(again.is_empty(), "not converged: {:#?}", again.changes);
    }

    /// The same on a case-insensitive target that spells names and members in other cases:
    /// groups are renamed to the desired spelling, members differing in case are left.
    #[test]
    fn case_insensitive_plan_applied_gives_desired_and_converges(
        w in world(),
        nested in any::<bool>(),
    ) {
        let d = w.desired();
        let o = w.observed(Opts { ci_spelling: true, ..Opts::default() });
        let p = policy(scope(Some(&["*"]), &d, true), MembershipMode::Authoritative, true);
        let c = caps(nested, true);
        let first = run(&d, &o, &p, c);
        let after = apply_on(&first, &o, true);
        if nested {
            matches_desired(&d, &o, &after, true)?;
        }
        let again = run(&d, &after, &p, c);
        prop_assert!(again.is_empty(), "not converged: {:#?}", again.changes);
    }

    /// plan(desired, desired as observed) is empty, whatever the policy.
    #[test]
    fn desired_against_itself_is_empty(
        w in world(),
        scope_at in 0..SCOPES.len(),
        mode in membership(),
        prune in any::<bool>(),
        nested in any::<bool>(),
        ci in any::<bool>(),
    ) {
        let d = w.desired();
        let o = if nested { as_observed(&d) } else { as_observed(&closure::flatten(&d).0) };
        let p = policy(scope(SCOPES[scope_at], &d, ci), mode, prune);
        let out = run(&d, &o, &p, caps(nested, ci));
        prop_assert!(out.is_empty(), "{:#?}", out.changes);
    }

    /// Whatever the policy and the target, a plan carried out leaves nothing more to plan.
    #[test]
    fn a_plan_carried_out_leaves_nothing_to_plan(
        w in world(),
        scope_at in 0..SCOPES.len(),
        mode in membership(),
        prune in any::<bool>(),
        nested in any::<bool>(),
        ci in any::<bool>(),
        to_others in any::<bool>(),
    ) {
        let d = w.desired();
        let s = scope(SCOPES[scope_at], &d, ci);
        let mut o = w.observed(Opts { unknown_users: true, ci_spelling: ci, ..Opts::default() });
        if to_others {
            o = split(o, &s);
        }
        let p = policy(s, mode, prune);
        let c = caps(nested, ci);
        let first = run(&d, &o, &p, c);
        let after = apply_on(&first, &o, ci);
        let again = run(&d, &after, &p, c);
        prop_assert!(again.is_empty(), "not converged: {:#?}", again.changes);
    }

    /// (c) Additive mode removes nothing: after the plan, every observed member and child is
    /// still there, and the desired ones (but unknown users) have been added.
    #[test]
    fn additive_mode_only_adds(w in world(), unknown_users in any::<bool>()) {
        let d = w.desired();
        let o = w.observed(Opts { unknown_users, ..Opts::default() });
        let p = policy(scope(Some(&["*"]), &d, false), MembershipMode::Additive, false);
        let out = run(&d, &o, &p, caps(true, false));
        prop_assert!(!out.changes.iter().any(is_removal), "{:#?}", out.changes);
        prop_assert_eq!(out.removals(), 0);
        let after = apply(&out, &o);
        for (name, before) in &o.groups {
            let now = &after.groups[name];
            prop_assert!(now.group.members.is_superset(&before.group.members));
            prop_assert!(now.group.children.is_superset(&before.group.children));
        }
        for (name, want) in &d.groups {
            let now = &after.groups[name];
            if now.kind != GroupKind::Managed {
                continue;
            }
            let known: BTreeSet<UserKey> =
                want.members.difference(&o.unknown_users).cloned().collect();
            prop_assert!(now.group.members.is_superset(&known));
            prop_assert!(now.group.children.is_superset(&want.children));
        }
    }

    /// (d) A plan changes only groups in scope, and only managed ones; desired groups outside
    /// the scope and groups the target owns are warned about; a child is only added if it exists
    /// or is created; unknown users are warned about and never added; groups outside the scope
    /// are the same after the plan.
    #[test]
    fn plans_stay_in_scope_and_leave_owned_groups_alone(
        w in world(),
        scope_at in 0..SCOPES.len(),
        mode in membership(),
        prune in any::<bool>(),
        nested in any::<bool>(),
        to_others in any::<bool>(),
    ) {
        let d = w.desired();
        let s = scope(SCOPES[scope_at], &d, false);
        let mut o = w.observed(Opts { unknown_users: true, ..Opts::default() });
        if to_others {
            o = split(o, &s);
        }
        let p = policy(s, mode, prune);
        let out = run(&d, &o, &p, caps(nested, false));
        let owned = names_of(&o, false);
        for c in &out.changes {
            prop_assert!(p.scope.contains(c.group()), "out of scope: {c:?}");
            prop_assert!(!owned.contains(c.group()), "changes an owned group: {c:?}");
            if let Change::AddMember { member, .. } = c {
                prop_assert!(!o.unknown_users.contains(member), "adds unknown user: {c:?}");
            }
        }
        let after = apply(&out, &o);
        for c in &out.changes {
            if let Change::AddChild { child, .. } = c {
                prop_assert!(
                    after.groups.contains_key(child) || after.others.contains(child),
                    "child that does not exist: {c:?}"
                );
            }
        }
        for (name, g) in &o.groups {
            if !p.scope.contains(name) {
                prop_assert_eq!(Some(g), after.groups.get(name));
            } else if g.kind != GroupKind::Managed {
                prop_assert_eq!(Some(g), after.groups.get(name));
                prop_assert!(has_warning(&out, WarningKind::SkippedGroup, name), "{name}");
            }
        }
        let flat = if nested { d.clone() } else { closure::flatten(&d).0 };
        for (name, want) in &flat.groups {
            if !p.scope.contains(name) {
                prop_assert!(has_warning(&out, WarningKind::OutOfScope, name), "{name}");
                continue;
            }
            if owned.contains(name) {
                continue;
            }
            let have = o.groups.get(name).map(|g| &g.group.members);
            for m in want.members.intersection(&o.unknown_users) {
                if have.is_none_or(|h| !h.contains(m)) {
                    prop_assert!(has_warning(&out, WarningKind::UnknownUser, name), "{name} {m}");
                }
            }
        }
    }

    /// (e) The same inputs give the same plan, however the maps were filled.
    #[test]
    fn plans_are_deterministic(
        w in world(),
        scope_at in 0..SCOPES.len(),
        mode in membership(),
        prune in any::<bool>(),
        nested in any::<bool>(),
        ci in any::<bool>(),
    ) {
        let d = w.desired();
        let o = w.observed(Opts { unknown_users: true, ci_spelling: ci, ..Opts::default() });
        let p = policy(scope(SCOPES[scope_at], &d, ci), mode, prune);
        let c = caps(nested, ci);
        let first = run(&d, &o, &p, c);
        prop_assert_eq!(&first, &run(&d, &o, &p, c));

        // The same states, every map and set filled in reverse order.
        let d2 = Desired {
            groups: d
                .groups
                .iter()
                .rev()
                .map(|(k, g)| {
                    let mut g2 = Group::named(g.name.clone());
                    g2.description.clone_from(&g.description);
                    g2.extras.clone_from(&g.extras);
                    g2.members = g.members.iter().rev().cloned().collect();
                    g2.children = g.children.iter().rev().cloned().collect();
                    (k.clone(), g2)
                })
                .collect(),
            origins: BTreeMap::new(),
        };
        let mut o2 = Observed {
            others: o.others.iter().rev().cloned().collect(),
            users: o.users.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect(),
            unknown_users: o.unknown_users.iter().rev().cloned().collect(),
            ..Observed::default()
        };
        for (k, g) in o.groups.iter().rev() {
            let mut g2 = g.clone();
            g2.group.members = g.group.members.iter().rev().cloned().collect();
            g2.group.children = g.group.children.iter().rev().cloned().collect();
            o2.groups.insert(k.clone(), g2);
        }
        let p2 = policy(scope(SCOPES[scope_at], &d2, ci), mode, prune);
        prop_assert_eq!(&first, &run(&d2, &o2, &p2, c));
        ordered(&first)?;
    }

    /// (f) `removals()` counts the removals, and the summary the rest.
    #[test]
    fn summary_counts_the_changes(
        w in world(),
        scope_at in 0..SCOPES.len(),
        mode in membership(),
        prune in any::<bool>(),
        nested in any::<bool>(),
        ci in any::<bool>(),
    ) {
        let d = w.desired();
        let o = w.observed(Opts { unknown_users: true, ci_spelling: ci, ..Opts::default() });
        let p = policy(scope(SCOPES[scope_at], &d, ci), mode, prune);
        let out = run(&d, &o, &p, caps(nested, ci));
        summary_is_counted(&out)?;
    }

    /// (g) Without nesting, no child changes are planned, and after the plan a parent has every
    /// member of its children (transitively), and planning again gives nothing.
    #[test]
    fn non_nesting_targets_get_flattened_members(w in world()) {
        let d = w.desired();
        let o = w.observed(Opts::default());
        let p = policy(scope(Some(&["*"]), &d, false), MembershipMode::Authoritative, true);
        let out = run(&d, &o, &p, caps(false, false));
        prop_assert!(!out.changes.iter().any(is_child_op), "{:#?}", out.changes);
        let after = apply(&out, &o);
        let managed = |n: &GroupName| {
            after.groups.get(n).filter(|g| g.kind == GroupKind::Managed).map(|g| &g.group)
        };
        for (name, want) in &d.groups {
            let Some(parent) = managed(name) else { continue };
            prop_assert!(parent.members.is_superset(&want.members));
            for child in &want.children {
                if let Some(child) = managed(child) {
                    prop_assert!(
                        parent.members.is_superset(&child.members),
                        "{} ⊉ {}", name, child.name
                    );
                }
            }
        }
        let again = run(&d, &after, &p, caps(false, false));
        prop_assert!(again.is_empty(), "not converged: {:#?}", again.changes);
    }

    /// (h) Flattening gives each group exactly the users reachable from it through child groups
    /// (computed here by a plain graph search), whatever cycles the children form.
    #[test]
    fn flattened_members_are_the_users_reachable_through_children(
        members in proptest::collection::vec(any::<u16>(), 1..8),
        edges in proptest::collection::vec((0usize..8, 0usize..8), 0..16),
    ) {
        let n = members.len();
        let name = |i: usize| GroupName::from(format!("g{i}"));
        let mut d = Desired::default();
        for (i, m) in members.iter().enumerate() {
            let mut g = Group::named(name(i));
            g.members = user_set(*m);
            d.groups.insert(name(i), g);
        }
        for (a, b) in edges.iter().map(|(a, b)| (a % n, b % n)) {
            if let Some(g) = d.groups.get_mut(&name(a)) {
                g.children.insert(name(b));
            }
        }
        let (flat, _) = closure::flatten(&d);
        for i in 0..n {
            let mut seen = BTreeSet::from([name(i)]);
            let mut todo = vec![name(i)];
            let mut reach = BTreeSet::new();
            while let Some(g) = todo.pop() {
                let group = &d.groups[&g];
                reach.extend(group.members.iter().cloned());
                for c in &group.children {
                    if seen.insert(c.clone()) {
                        todo.push(c.clone());
                    }
                }
            }
            let got = &flat.groups[&name(i)];
            prop_assert_eq!(&got.members, &reach, "group g{}", i);
            prop_assert!(got.children.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The planner against the reference planner (`reference.rs`): the same plan for the same inputs.

/// Group names that fold alike in twos and threes, and names folding changes in other ways
/// (`Σ` to `σ`, `İ` to two characters), so that both the merge and the folded comparison of
/// `set_diff` run, and names clash.
const WILD_GROUPS: [&str; 16] = [
    "a",
    "A",
    "ab",
    "Ab",
    "AB",
    "eng",
    "Eng",
    "ENG",
    "zeta",
    "ärzte",
    "Ärzte",
    "ΣΑΣ",
    "σας",
    "数据 组",
    "İx",
    "ix",
];
/// User keys: lower-case ones (merged) and their variants in other cases (folded).
const WILD_USERS: [&str; 20] = [
    "alice", "Alice", "ALICE", "bob", "Bob", "carol", "dave", "eve", "frank", "grace", "heidi",
    "zoë", "Zoë", "ZOË", "o'brien", "Σ", "σ", "ς", "ivan", "judy",
];
/// Patterns for the wild scopes, `None` for the desired groups.
const WILD_SCOPES: [Option<&[&str]>; 5] = [
    Some(&["*"]),
    Some(&["a*", "e*"]),
    Some(&["[aeσ]*", "数*"]),
    Some(&["?"]),
    None,
];

fn wild_names<'a>(pool: &[&'a str], mask: u32) -> impl Iterator<Item = &'a str> {
    pool.iter()
        .enumerate()
        .filter(move |(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .into_iter()
}

/// One group of a wild world: members, children, description and attributes by index.
fn wild_group(
    name: &str,
    (members, children, desc, attr): (u32, u32, Option<usize>, Option<usize>),
) -> Group {
    Group {
        name: GroupName::from(name),
        description: desc.map(|i| DESCRIPTIONS[i].to_owned()),
        members: wild_names(&WILD_USERS, members)
            .map(UserKey::from)
            .collect(),
        children: wild_names(&WILD_GROUPS, children)
            .filter(|c| *c != name)
            .map(GroupName::from)
            .collect(),
        extras: attrs(attr),
    }
}

fn wild_group_spec() -> impl Strategy<Value = (u32, u32, Option<usize>, Option<usize>)> {
    (
        any::<u32>(),
        prop_oneof![3 => Just(0u32), 1 => any::<u32>()],
        proptest::option::of(0..DESCRIPTIONS.len()),
        proptest::option::of(0..4usize),
    )
}

/// A desired and an observed state over the wild pools; at times every name in lower case (where
/// the planner pairs names without folding them). An observed group is at times filed under
/// another name than its own, as no connector files it, to hold the two planners to the same
/// answer there too.
fn wild_states() -> impl Strategy<Value = (Desired, Observed)> {
    (
        proptest::collection::btree_map(0..WILD_GROUPS.len(), wild_group_spec(), 0..8),
        proptest::collection::btree_map(
            0..WILD_GROUPS.len(),
            (
                wild_group_spec(),
                kind(),
                prop_oneof![
                    6 => Just(None),
                    1 => (0..WILD_GROUPS.len()).prop_map(Some),
                ],
            ),
            0..8,
        ),
        any::<u32>(),
        any::<u32>(),
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(d, o, others, unknown, lower)| {
            let groups = d
                .into_iter()
                .map(|(i, spec)| {
                    (
                        GroupName::from(WILD_GROUPS[i]),
                        wild_group(WILD_GROUPS[i], spec),
                    )
                })
                .collect();
            let desired = Desired {
                groups,
                origins: BTreeMap::new(),
            };
            let mut observed = Observed {
                others: wild_names(&WILD_GROUPS, others)
                    .map(GroupName::from)
                    .collect(),
                unknown_users: wild_names(&WILD_USERS, unknown)
                    .map(UserKey::from)
                    .collect(),
                ..Observed::default()
            };
            for (i, (spec, kind, filed_as)) in o {
                let key = WILD_GROUPS[filed_as.unwrap_or(i)];
                observed.groups.insert(
                    GroupName::from(key),
                    ObservedGroup {
                        id: format!("id-{i}"),
                        group: wild_group(WILD_GROUPS[i], spec),
                        kind,
                    },
                );
            }
            if lower {
                (lowered_desired(desired), lowered_observed(observed))
            } else {
                (desired, observed)
            }
        })
}

/// Every name in lower case, so that folding changes none.
fn lowered_group(g: Group) -> Group {
    Group {
        name: GroupName(g.name.0.to_lowercase()),
        members: g
            .members
            .iter()
            .map(|m| UserKey::from(m.as_str().to_lowercase()))
            .collect(),
        children: g
            .children
            .iter()
            .map(|c| GroupName(c.0.to_lowercase()))
            .collect(),
        ..g
    }
}

fn lowered_desired(d: Desired) -> Desired {
    Desired {
        groups: d
            .groups
            .into_iter()
            .map(|(k, g)| (GroupName(k.0.to_lowercase()), lowered_group(g)))
            .collect(),
        origins: d.origins,
    }
}

fn lowered_observed(o: Observed) -> Observed {
    Observed {
        groups: o
            .groups
            .into_iter()
            .map(|(k, g)| {
                let group = lowered_group(g.group);
                (GroupName(k.0.to_lowercase()), ObservedGroup { group, ..g })
            })
            .collect(),
        others: o
            .others
            .iter()
            .map(|n| GroupName(n.0.to_lowercase()))
            .collect(),
        unknown_users: o
            .unknown_users
            .iter()
            .map(|u| UserKey::from(u.as_str().to_lowercase()))
            .collect(),
        ..o
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the inputs, the policy and the target, the planner makes the reference planner's
    /// plan: the same changes in the same order, the same warnings.
    #[test]
    fn plan_is_the_reference_plan(
        (d, o) in wild_states(),
        scope_at in 0..WILD_SCOPES.len(),
        scope_ci in any::<bool>(),
        including in prop_oneof![3 => Just(0u32), 1 => any::<u32>()],
        mode in membership(),
        prune in any::<bool>(),
        nested in any::<bool>(),
        ci in any::<bool>(),
        renames in any::<bool>(),
    ) {
        let names: Vec<GroupName> = wild_names(&WILD_GROUPS, including).map(GroupName::from).collect();
        let s = scope(WILD_SCOPES[scope_at], &d, scope_ci).including(&names);
        let p = policy(s, mode, prune);
        let c = Capabilities { renames, ..caps(nested, ci) };
        let got = run(&d, &o, &p, c);
        let want = super::reference::plan("t", TT, &d, &o, &p, c);
        prop_assert_eq!(got, want);
    }
}

/// Strings of ASCII (upper case included, the letters' neighbours `@`, `[`, `` ` ``, `{`), of
/// non-ASCII letters that fold or not, and of zero bytes, short and long, often sharing a prefix.
fn name_like() -> impl Strategy<Value = String> {
    proptest::string::string_regex("(group-|user)?[a-zA-Z@\\[`{0-9 ._\\x00äÄσΣςİ数]{0,20}")
        .expect("regex")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The merge's comparison orders as `str` does, and calls equal strings plain exactly when
    /// they are ASCII without an upper-case letter.
    #[test]
    fn cmp_plain_orders_as_str_and_tells_plain_strings(x in name_like(), y in name_like()) {
        for (a, b) in [(&x, &y), (&x, &x), (&y, &y)] {
            let (order, plain) = cmp_plain(a.as_bytes(), b.as_bytes());
            prop_assert_eq!(order, a.as_str().cmp(b.as_str()));
            let ascii_lower = a.is_ascii() && !a.bytes().any(|c| c.is_ascii_uppercase());
            prop_assert_eq!(plain, order == std::cmp::Ordering::Equal && ascii_lower);
        }
    }

    /// `is_folded` is lowercasing leaving the string as it is.
    #[test]
    fn is_folded_is_lowercasing_changing_nothing(x in name_like()) {
        prop_assert_eq!(is_folded(&x), x.to_lowercase() == x);
    }
}

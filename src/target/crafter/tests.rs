//! `compile`, `prepare` and the rules `vet` applies are pure: the fewest calls each API allows,
//! and the plan-time rules, checked without a server.

use std::collections::BTreeMap;

use super::*;
use crate::model::{Group, GroupKind, ObservedGroup, Origin};
use crate::plan::change::Change;
use crate::plan::{MembershipMode, Policy};
use crate::secret::Secret;

fn target(api: CrafterApi) -> CrafterTarget {
    let cfg = CrafterConfig {
        url: "https://studio.example.com/studio".into(),
        api,
    };
    CrafterTarget::new(
        "studio",
        &cfg,
        reqwest::Client::new(),
        NonZeroUsize::new(4).unwrap(),
    )
}

fn v2() -> CrafterTarget {
    target(CrafterApi::V2 {
        token: Secret::new("t"),
    })
}

fn v1() -> CrafterTarget {
    target(CrafterApi::V1 {
        username: "admin".into(),
        password: Secret::new("p"),
        site_id: "mysite".into(),
    })
}

fn observed_group(id: &str, name: &str, members: &[&str]) -> ObservedGroup {
    let mut g = Group::named(name);
    g.members = members.iter().map(|m| UserKey::from(*m)).collect();
    ObservedGroup {
        id: id.into(),
        group: g,
        kind: GroupKind::Managed,
    }
}

/// Ten existing groups, each losing 50 members and gaining 50: 1,000 member changes.
fn thousand() -> (Desired, Observed) {
    let mut desired = Desired::default();
    let mut observed = Observed::default();
    for g in 0..10 {
        let name = format!("team{g}");
        let old: Vec<String> = (0..50).map(|u| format!("old{g}_{u}")).collect();
        let new: Vec<String> = (0..50).map(|u| format!("new{g}_{u}")).collect();
        let olds: Vec<&str> = old.iter().map(String::as_str).collect();
        for (u, name) in old.iter().enumerate() {
            observed.users.insert(
                UserKey::from(name.clone()),
                (1000 + g * 100 + u).to_string(),
            );
        }
        observed.groups.insert(
            GroupName(name.clone()),
            observed_group(&(g + 10).to_string(), &name, &olds),
        );
        let mut want = Group::named(name.as_str());
        want.members = new.iter().map(|u| UserKey::from(u.clone())).collect();
        desired.groups.insert(GroupName(name), want);
        for u in new {
            observed.users.insert(UserKey::from(u), "1".into());
        }
    }
    (desired, observed)
}

fn plan_for(t: &CrafterTarget, desired: &Desired, observed: &Observed) -> Plan {
    let policy = Policy {
        scope: Scope::new(None, desired, true).unwrap(),
        membership: MembershipMode::Authoritative,
        prune: true,
        max_deletes: usize::MAX,
        max_group_shrink: crate::plan::Share::ALL,
        allow_empty_source: false,
    };
    crate::plan::plan("studio", TYPE, desired, observed, &policy, t.capabilities())
}

#[test]
fn api_2_compiles_1000_member_changes_into_one_add_and_one_remove_per_group() {
    let t = v2();
    let (desired, observed) = thousand();
    let plan = plan_for(&t, &desired, &observed);
    assert_eq!(plan.changes.len(), 1000);
    let calls = t.compile(&plan, &observed);
    assert_eq!(calls.len(), 20, "{calls:#?}");
    // Every change is covered exactly once.
    let mut covered: Vec<usize> = calls.iter().flat_map(|c| c.covers.clone()).collect();
    covered.sort_unstable();
    assert_eq!(covered, (0..1000).collect::<Vec<_>>());
    let Op::AddMembers { group, users } = &calls[0].op else {
        panic!("{:?}", calls[0]);
    };
    assert_eq!(group, &GroupRef::Id("10".into()));
    assert_eq!(users.len(), 50);
    // Removals go by id (Studio checks usernames, not ids).
    assert!(matches!(&calls[1].op, Op::RemoveMembers { users, .. }
            if users.len() == 50 && users.iter().all(|u| u.id.is_some())));
    assert!(calls.iter().all(|c| c.retry() == RetrySafety::Idempotent));
}

#[test]
fn api_1_compiles_one_call_per_member() {
    let t = v1();
    let (desired, observed) = thousand();
    let plan = plan_for(&t, &desired, &observed);
    let calls = t.compile(&plan, &observed);
    assert_eq!(calls.len(), 1000);
    assert!(matches!(calls[0].op, Op::AddMember(_)));
}

#[test]
fn create_update_and_delete_are_one_call_each_with_the_right_stage() {
    let t = v2();
    let mut observed = Observed::default();
    let mut have = observed_group("7", "docs", &["ann"]);
    have.group.description = Some("old".into());
    observed.groups.insert("docs".into(), have);
    observed
        .groups
        .insert("gone".into(), observed_group("8", "gone", &[]));
    let mut desired = Desired::default();
    let mut docs = Group::named("docs");
    docs.description = Some("new".into());
    docs.members.insert("ann".into());
    desired.groups.insert("docs".into(), docs);
    let mut fresh = Group::named("fresh");
    fresh.members.insert("bob".into());
    desired.groups.insert("fresh".into(), fresh);
    // `gone` is in scope through the desired names only when listed; use globs instead.
    let policy = Policy {
        scope: Scope::new(Some(&["*".to_owned()]), &desired, true).unwrap(),
        membership: MembershipMode::Authoritative,
        prune: true,
        max_deletes: 100,
        max_group_shrink: crate::plan::Share::ALL,
        allow_empty_source: false,
    };
    let plan = crate::plan::plan(
        "studio",
        TYPE,
        &desired,
        &observed,
        &policy,
        t.capabilities(),
    );
    let calls = t.compile(&plan, &observed);
    let ops: Vec<(&Op, Stage)> = calls.iter().map(|c| (&c.op, c.stage())).collect();
    assert_eq!(
        ops,
        [
            (
                &Op::Update {
                    group: GroupRef::Id("7".into()),
                    desc: "new".into()
                },
                Stage::UpdateGroup
            ),
            (&Op::Create { desc: None }, Stage::CreateGroup),
            (
                &Op::AddMembers {
                    group: GroupRef::Name("fresh".into()),
                    users: vec![Member {
                        username: "bob".into(),
                        id: None
                    }]
                },
                Stage::Members
            ),
            (&Op::Delete(GroupRef::Id("8".into())), Stage::DeleteGroup),
        ]
    );
    assert_eq!(calls[1].retry(), RetrySafety::AfterRecheck);
}

#[test]
fn removals_past_one_request_line_are_split_into_the_fewest_calls() {
    let t = v2();
    let mut observed = Observed::default();
    let olds: Vec<String> = (0..1000).map(|u| format!("old_member_{u:04}")).collect();
    let refs: Vec<&str> = olds.iter().map(String::as_str).collect();
    for (u, name) in olds.iter().enumerate() {
        observed
            .users
            .insert(UserKey::from(name.clone()), (100_000 + u).to_string());
    }
    observed
        .groups
        .insert("big".into(), observed_group("7", "big", &refs));
    let mut desired = Desired::default();
    desired.groups.insert("big".into(), Group::named("big"));
    let plan = plan_for(&t, &desired, &observed);
    let calls = t.compile(&plan, &observed);
    // "&userId=100000" is 14 bytes: 1,000 of them need three request lines of about 6 KB.
    assert_eq!(calls.len(), 3, "{}", calls.len());
    let mut covered = 0;
    for c in &calls {
        let Op::RemoveMembers { users, .. } = &c.op else {
            panic!("{c:?}");
        };
        let q: Vec<(&str, String)> = users.iter().map(Member::query_pair).collect();
        let line = t.line_overhead + api::query(&q).len();
        assert!(line <= t.line_budget && line <= MAX_REQUEST_LINE, "{line}");
        covered += c.covers.len();
    }
    assert_eq!(covered, 1000);
}

#[test]
fn a_long_token_leaves_less_room_for_the_request_line() {
    assert_eq!(v2().line_budget, MAX_REQUEST_LINE);
    let long = target(CrafterApi::V2 {
        token: Secret::new("t".repeat(3000)),
    });
    // 8,192 less 1,536 for other headers, less the 3,024-byte Authorization header.
    assert_eq!(long.line_budget, 8192 - 1536 - 3024);
    let absurd = target(CrafterApi::V2 {
        token: Secret::new("t".repeat(9000)),
    });
    assert_eq!(absurd.line_budget, MIN_REQUEST_LINE);
}

/// A desired group `name` (defined at `groups.toml:line:1`) and the plan roster would make.
fn vetted(
    t: &CrafterTarget,
    groups: &[(&str, Option<String>, usize)],
    observed: &Observed,
) -> Vec<String> {
    let mut desired = Desired::default();
    for (name, desc, line) in groups {
        let mut g = Group::named(*name);
        g.description = desc.clone();
        desired.groups.insert((*name).into(), g);
        desired.origins.insert(
            (*name).into(),
            Origin::File {
                path: "groups.toml".into(),
                line: *line,
                col: 1,
            },
        );
    }
    let plan = plan_for(t, &desired, observed);
    t.rejections(observed, &plan)
        .into_iter()
        .map(|r| format!("{}: {}", r.group, r.message))
        .collect()
}

#[test]
fn vet_holds_creates_and_updates_to_studio_4s_rules() {
    let t = v2();
    let mut observed = Observed::default();
    let mut old = observed_group("7", "9old name", &[]);
    old.group.description = Some("x".into());
    observed.groups.insert("9old name".into(), old);
    observed.others.insert("Taken".into());
    let long = Some("d".repeat(1025));
    let text = vetted(
        &t,
        &[
            ("CMS Editors", None, 3),
            ("9team", None, 4),
            ("ab", None, 5),
            ("dev-team", None, 6),
            ("fine.group_1", Some("d".repeat(1024)), 7),
            ("long_desc", long.clone(), 8),
            ("9old name", long, 9),
            ("taken", None, 10),
        ],
        &observed,
    );
    let of = |g: &str| {
        text.iter()
            .filter(|t| t.starts_with(&format!("{g}: ")))
            .count()
    };
    assert!(
        text.iter().any(|t| t.starts_with(
            "CMS Editors: Studio creates only groups whose names match ^[a-zA-Z][\\w.\\-]*$"
        )),
        "{text:#?}"
    );
    assert_eq!(
        (of("9team"), of("ab"), of("CMS Editors")),
        (1, 1, 1),
        "{text:#?}"
    );
    // Valid names, a description at the limit: nothing to refuse.
    assert_eq!((of("dev-team"), of("fine.group_1")), (0, 0), "{text:#?}");
    assert!(
        text.contains(
            &"long_desc: the description has 1025 characters; Crafter Studio takes at most 1024"
                .to_owned()
        ),
        "{text:#?}"
    );
    // An existing group with a name Studio would not create now needs no create: only its
    // update's description is refused.
    assert_eq!(
        text.iter()
            .filter(|t| t.starts_with("9old name: "))
            .collect::<Vec<_>>(),
        ["9old name: the description has 1025 characters; Crafter Studio takes at most 1024"]
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("taken: Studio already has a group of that name outside")),
        "{text:#?}"
    );
}

#[test]
fn vet_holds_api_1_to_its_lengths() {
    let at_limit = "n".repeat(255);
    let over = "o".repeat(256);
    let ok = vetted(
        &v1(),
        &[
            (at_limit.as_str(), Some("d".repeat(3000)), 1),
            ("CMS Editors", None, 2),
        ],
        &Observed::default(),
    );
    assert!(ok.is_empty(), "{ok:#?}");
    let text = vetted(
        &v1(),
        &[(over.as_str(), Some("d".repeat(3001)), 1)],
        &Observed::default(),
    );
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(text[0].contains("1 to 255 characters"), "{}", text[0]);
    assert!(
        text[1].contains("has 3001 characters") && text[1].contains("at most 3000"),
        "{}",
        text[1]
    );
}

#[test]
fn crafter_attributes_are_refused() {
    let mut desired = Desired::default();
    let mut g = Group::named("docs");
    g.extras.insert(
        TYPE.into(),
        BTreeMap::from([("x".to_owned(), serde_json::json!(1))]),
    );
    desired.groups.insert("docs".into(), g);
    let scope = Scope::new(None, &desired, true).unwrap();
    assert_eq!(v2().prepare(&desired, &scope).unwrap_err().len(), 1);
}

#[test]
fn capabilities_follow_the_api() {
    assert_eq!(
        v2().capabilities().membership,
        MembershipWrites::AddRemoveBatch
    );
    assert_eq!(v1().capabilities().membership, MembershipWrites::PerMember);
    let c = v2().capabilities();
    assert!(!c.nested_groups && !c.renames && c.case_insensitive_names);
    assert!(!format!("{:?}", v2()).contains("\"t\""));
}

#[test]
fn vet_refuses_any_change_to_a_group_roster_may_not_change() {
    // The planner never plans one; `vet` stands behind it.
    let mut observed = Observed::default();
    let mut ext = observed_group("9", "ldap_team", &["ann"]);
    ext.kind = GroupKind::External;
    observed.groups.insert("ldap_team".into(), ext);
    let mut sys = observed_group("1", "system_admin", &["admin"]);
    sys.kind = GroupKind::System;
    observed.groups.insert("system_admin".into(), sys);
    let plan = Plan {
        target: "studio".into(),
        changes: vec![
            Change::RemoveMember {
                group: "ldap_team".into(),
                member: "ann".into(),
            },
            Change::DeleteGroup {
                group: "system_admin".into(),
            },
        ],
        warnings: Vec::new(),
        errors: Vec::new(),
        refusal: None,
        summary: Default::default(),
    };
    let refused: Vec<(Option<usize>, String)> = v2()
        .rejections(&observed, &plan)
        .into_iter()
        .map(|r| (r.change, r.group.to_string()))
        .collect();
    assert_eq!(
        refused,
        [
            (Some(0), "ldap_team".to_owned()),
            (Some(1), "system_admin".to_owned())
        ]
    );
}

/// Studio 3.0's `utf8` columns hold every character of the Basic Multilingual Plane (up to
/// U+FFFF) and none beyond it, in descriptions as in names.
#[test]
fn vet_holds_api_1_descriptions_to_the_basic_multilingual_plane() {
    let ok = vetted(
        &v1(),
        &[("last_bmp\u{FFFF}", Some("ends in \u{FFFF}".to_owned()), 1)],
        &Observed::default(),
    );
    assert!(ok.is_empty(), "{ok:#?}");
    let text = vetted(
        &v1(),
        &[("emoji", Some("party \u{1F389}".to_owned()), 1)],
        &Observed::default(),
    );
    assert_eq!(text, [format!("emoji: {V1_BEYOND_BMP}")]);
    let text = vetted(&v1(), &[("party\u{1F389}", None, 1)], &Observed::default());
    assert_eq!(text, [format!("party\u{1F389}: {V1_BEYOND_BMP}")]);
}

/// An add of a user Studio has (by id), or of a name it could hold, is never refused; only a
/// username Studio could never hold is.
#[test]
fn vet_refuses_only_adds_of_usernames_studio_cannot_hold() {
    let t = v2();
    let mut observed = Observed::default();
    observed
        .groups
        .insert("eng".into(), observed_group("7", "eng", &[]));
    observed.users.insert("jane@corp.com".into(), "41".into());
    let add = |member: &str| Change::AddMember {
        group: "eng".into(),
        member: member.into(),
    };
    let changes = vec![add("jane@corp.com"), add("joe-doe"), add("9lives")];
    let plan = Plan {
        target: "studio".into(),
        summary: crate::plan::Summary::of(&changes),
        changes,
        ..Plan::default()
    };
    let refused: Vec<Option<usize>> = t
        .rejections(&observed, &plan)
        .into_iter()
        .map(|r| r.change)
        .collect();
    assert_eq!(refused, [Some(2)]);
    // On Studio 3.0 members are added by name per call, and the name rule is Studio 4's.
    assert!(v1().rejections(&observed, &plan).is_empty());
}

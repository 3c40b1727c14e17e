//! `compile` and `prepare` are pure: the fewest calls each API allows, and the plan-time name
//! rules, checked without a server.

use std::collections::BTreeMap;

use super::*;
use crate::config::Secret;
use crate::model::Origin;
use crate::plan::{MembershipMode, Policy};

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
        observed.groups.insert(
            GroupName(name.clone()),
            observed_group(&(g + 10).to_string(), &name, &olds),
        );
        let mut want = Group::named(name.as_str());
        want.members = new.iter().map(|u| UserKey(u.clone())).collect();
        desired.groups.insert(GroupName(name), want);
        for u in new {
            observed.users.insert(UserKey(u), "1".into());
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
    let Op::AddMembers { group, usernames } = &calls[0].op else {
        panic!("{:?}", calls[0]);
    };
    assert_eq!(group, &GroupRef::Id("10".into()));
    assert_eq!(usernames.len(), 50);
    assert!(matches!(&calls[1].op, Op::RemoveMembers { usernames, .. } if usernames.len() == 50));
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
                    usernames: vec!["bob".into()]
                },
                Stage::Members
            ),
            (&Op::Delete(GroupRef::Id("8".into())), Stage::DeleteGroup),
        ]
    );
    assert_eq!(calls[1].retry(), RetrySafety::AfterRecheck);
}

#[test]
fn prepare_refuses_names_and_descriptions_studio_cannot_hold() {
    let t = v2();
    let mut desired = Desired::default();
    for (name, line) in [("CMS Editors", 3), ("dev-team", 9), ("ok_name", 15)] {
        let mut g = Group::named(name);
        if name == "ok_name" {
            g.description = Some("x".repeat(1025));
        }
        desired.groups.insert(name.into(), g);
        desired.origins.insert(
            name.into(),
            Origin::File {
                path: "groups.toml".into(),
                line,
                col: 1,
            },
        );
    }
    let scope = Scope::new(None, &desired, true).unwrap();
    let problems = t.prepare(&desired, &scope).unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(
        text[0].starts_with("groups.toml:3:1: group \"CMS Editors\" cannot be created in Crafter Studio: a group name must match ^[a-zA-Z0-9_.]{3,512}$"),
        "{}",
        text[0]
    );
    assert!(
        text[1].starts_with("groups.toml:9:1: group \"dev-team\""),
        "{}",
        text[1]
    );
    assert!(
        text[2].contains("has 1025 characters") && text[2].contains("at most 1024"),
        "{}",
        text[2]
    );
    // Out of scope, the same names are no concern of this target.
    let only = Scope::new(Some(&["ok*".to_owned()]), &desired, true).unwrap();
    assert_eq!(t.prepare(&desired, &only).unwrap_err().len(), 1);
    // API 1 (Studio 3.0) has no name rule beyond length.
    let mut short = desired.clone();
    short.groups.remove(&GroupName::from("ok_name"));
    assert!(v1().prepare(&short, &scope).is_ok());
}

#[test]
fn prepare_holds_api_1_to_its_lengths() {
    let at_limit = "n".repeat(255);
    let over = "o".repeat(256);
    let mut desired = Desired::default();
    let mut g = Group::named(at_limit.as_str());
    g.description = Some("d".repeat(3000));
    desired.groups.insert(at_limit.as_str().into(), g);
    let scope = Scope::new(None, &desired, true).unwrap();
    assert!(v1().prepare(&desired, &scope).is_ok());

    let mut g = Group::named(over.as_str());
    g.description = Some("d".repeat(3001));
    desired.groups.insert(over.as_str().into(), g);
    let scope = Scope::new(None, &desired, true).unwrap();
    let problems = v1().prepare(&desired, &scope).unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(
        text[0].contains("names are 1 to 255 characters"),
        "{}",
        text[0]
    );
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

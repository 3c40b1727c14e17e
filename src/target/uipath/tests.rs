//! `compile` is pure, so "fewest calls" is checked here without a server; and `prepare`.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::model::Origin;
use crate::model::{Group, GroupKind, ObservedGroup};
use crate::plan::change::Change;
use crate::plan::{MembershipMode, Policy};
use crate::secret::Secret;
use crate::target::CallErrorKind;

const PARTITION: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";

fn target() -> UiPathTarget {
    target_named("robots")
}

fn target_named(name: &str) -> UiPathTarget {
    let config = UiPathConfig {
        url: "https://cloud.uipath.com/org".into(),
        identity_path: "identity_".into(),
        partition_global_id: PARTITION.into(),
        client_id: "app".into(),
        client_secret: Secret::new("s"),
        scope: config::DEFAULT_SCOPE.into(),
        user_key: UserKeyField::Username,
    };
    UiPathTarget::new(name, &config, reqwest::Client::new(), NonZeroUsize::MIN)
}

fn desired(groups: &[(&str, &[&str])]) -> Desired {
    let mut d = Desired::default();
    for (i, (name, members)) in groups.iter().enumerate() {
        let mut g = Group::named(*name);
        g.members = members.iter().map(|m| UserKey::from(*m)).collect();
        d.groups.insert(GroupName::from(*name), g);
        d.origins.insert(
            GroupName::from(*name),
            Origin::File {
                path: PathBuf::from("groups.toml"),
                line: i * 4 + 1,
                col: 1,
            },
        );
    }
    d
}

/// An observed state with these groups (ids `id-<name>`) and users `u<n>` → `uid-u<n>`.
fn observed(groups: &[(&str, &[&str])], users: usize) -> Observed {
    let mut o = Observed::default();
    for (name, members) in groups {
        let mut g = Group::named(*name);
        g.members = members.iter().map(|m| UserKey::from(*m)).collect();
        o.groups.insert(
            GroupName::from(*name),
            ObservedGroup {
                id: format!("id-{name}"),
                group: g,
                kind: GroupKind::Managed,
            },
        );
    }
    for i in 0..users {
        o.users
            .insert(UserKey::from(format!("u{i}")), format!("uid-u{i}"));
    }
    o
}

fn plan(t: &UiPathTarget, d: &Desired, o: &Observed, prune: bool) -> Plan {
    let policy = Policy {
        scope: Scope::new(Some(&["*".to_owned()]), d, true).unwrap(),
        membership: MembershipMode::Authoritative,
        prune,
        max_deletes: usize::MAX,
        max_group_shrink: crate::plan::Share::ALL,
        allow_empty_source: true,
    };
    crate::plan::plan("robots", TYPE, d, o, &policy, t.capabilities())
}

#[test]
fn a_thousand_member_changes_in_ten_groups_are_ten_puts() {
    let t = target();
    // 10 groups; each has u0..u49 and wants u50..u99 instead: 50 adds and 50 removes each.
    let have: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
    let want: Vec<String> = (50..100).map(|i| format!("u{i}")).collect();
    let have: Vec<&str> = have.iter().map(String::as_str).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    let names: Vec<String> = (0..10).map(|i| format!("g{i}")).collect();
    let o = observed(
        &names
            .iter()
            .map(|n| (n.as_str(), &have[..]))
            .collect::<Vec<_>>(),
        100,
    );
    let d = desired(
        &names
            .iter()
            .map(|n| (n.as_str(), &want[..]))
            .collect::<Vec<_>>(),
    );
    let p = plan(&t, &d, &o, false);
    assert_eq!(p.changes.len(), 1000);
    let calls = t.compile(&p, &o);
    assert_eq!(calls.len(), 10);
    let mut covered: Vec<usize> = calls.iter().flat_map(|c| c.covers().to_vec()).collect();
    covered.sort_unstable();
    assert_eq!(covered, (0..1000).collect::<Vec<_>>());
    for c in &calls {
        let Op::Update {
            add,
            remove,
            name,
            id,
        } = &c.op
        else {
            panic!("{c:?}");
        };
        assert_eq!((add.len(), remove.len()), (50, 50));
        assert_eq!(id, &format!("id-{}", c.group()));
        assert_eq!(name, c.group().as_str(), "the current name is always sent");
        assert_eq!(c.stage(), Stage::Members);
        assert_eq!(c.retry(), RetrySafety::Idempotent);
    }
}

#[test]
fn a_create_carries_its_members_in_one_post() {
    let t = target();
    let o = observed(&[], 3);
    let d = desired(&[("New", &["u0", "u1", "u2"])]);
    let p = plan(&t, &d, &o, false);
    let calls = t.compile(&p, &o);
    assert_eq!(calls.len(), 1);
    let Op::Create { id, members } = &calls[0].op else {
        panic!("{calls:?}");
    };
    assert_eq!(members, &["uid-u0", "uid-u1", "uid-u2"]);
    // The service wants the client to choose a GUID id, and each create gets its own.
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let again = t.compile(&p, &o);
    assert!(matches!(&again[0].op, Op::Create { id: other, .. } if other != id));
    // What `send` posts for it.
    assert_eq!(
        api::create_body(id, PARTITION, calls[0].group().as_str(), members),
        json!({
            "id": id,
            "partitionGlobalId": PARTITION,
            "name": "New",
            "directoryUserMemberIDs": ["uid-u0", "uid-u1", "uid-u2"],
        })
    );
    assert_eq!(calls[0].covers(), &[0, 1, 2, 3]);
    assert_eq!(calls[0].retry(), RetrySafety::AfterRecheck);
    assert_eq!(calls[0].stage(), Stage::CreateGroup);
}

#[test]
fn a_rename_and_member_changes_share_one_put_and_a_delete_is_one_call() {
    let t = target();
    let o = observed(&[("robots", &["u0"]), ("Old", &["u1"])], 3);
    let d = desired(&[("Robots", &["u1"])]);
    let p = plan(&t, &d, &o, true);
    let calls = t.compile(&p, &o);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let update = calls
        .iter()
        .find(|c| c.group().as_str() == "robots")
        .unwrap();
    assert_eq!(
        update.op,
        Op::Update {
            id: "id-robots".into(),
            name: "Robots".into(),
            add: vec!["uid-u1".into()],
            remove: vec!["uid-u0".into()],
        }
    );
    assert_eq!(update.covers().len(), 3);
    let delete = calls.iter().find(|c| c.group().as_str() == "Old").unwrap();
    assert_eq!(
        delete.op,
        Op::Delete {
            id: "id-Old".into()
        }
    );
    assert_eq!(delete.stage(), Stage::DeleteGroup);
}

#[test]
fn nothing_to_do_compiles_to_nothing_and_children_become_members() {
    let t = target();
    let o = observed(&[("A", &["u0"])], 2);
    let d = desired(&[("A", &["u0"])]);
    assert!(t.compile(&plan(&t, &d, &o, false), &o).is_empty());

    // A child's members are flattened into the parent by the planner: still one PUT.
    let mut d = desired(&[("A", &["u0"]), ("B", &["u1"])]);
    d.groups.get_mut(&GroupName::from("A")).unwrap().children =
        BTreeSet::from([GroupName::from("B")]);
    let o = observed(&[("A", &["u0"]), ("B", &["u1"])], 2);
    let calls = t.compile(&plan(&t, &d, &o, false), &o);
    assert_eq!(calls.len(), 1);
    assert!(matches!(&calls[0].op, Op::Update { add, .. } if add == &["uid-u1".to_owned()]));
}

#[test]
fn a_user_without_a_known_id_fails_the_call_instead_of_vanishing() {
    let t = target();
    let o = observed(&[("A", &[])], 0);
    let p = Plan {
        target: "robots".into(),
        changes: vec![Change::AddMember {
            group: GroupName::from("A"),
            member: UserKey::from("ghost"),
        }],
        ..Plan::default()
    };
    let calls = t.compile(&p, &o);
    assert_eq!(calls[0].missing, vec![UserKey::from("ghost")]);
}

#[tokio::test]
async fn a_call_with_a_user_without_a_known_id_fails_before_anything_is_sent() {
    // Its own name, so that the process-wide call counter shows whether it sent anything (a
    // token request included).
    let t = target_named("uipath-missing-users");
    let o = observed(&[("A", &[])], 1);
    let p = Plan {
        target: "uipath-missing-users".into(),
        changes: vec![
            Change::AddMember {
                group: GroupName::from("A"),
                member: UserKey::from("u0"),
            },
            Change::AddMember {
                group: GroupName::from("A"),
                member: UserKey::from("ghost"),
            },
        ],
        ..Plan::default()
    };
    let calls = t.compile(&p, &o);
    assert_eq!(calls.len(), 1);
    let err = t.send(&calls[0]).await.unwrap_err();
    assert_eq!(err.method, "PUT");
    assert_eq!(err.path, "/identity_/api/Group/id-A");
    assert_eq!(err.group, Some(GroupName::from("A")));
    assert_eq!(
        err.kind,
        CallErrorKind::Decode("no directory id for ghost; nothing sent".into())
    );
    assert!(!err.is_transient(), "the executor must not send it again");
    assert!(
        crate::target::http::api_calls()
            .iter()
            .all(|(target, _, _)| target != "uipath-missing-users"),
        "nothing was sent"
    );
}

#[test]
fn prepare_drops_descriptions_and_refuses_uipath_attributes() {
    let t = target();
    let mut d = desired(&[("A", &[]), ("B", &[])]);
    d.groups.get_mut(&GroupName::from("A")).unwrap().description = Some("text".into());
    let scope = Scope::new(None, &d, true).unwrap();
    let prepared = t.prepare(&d, &scope).unwrap();
    assert!(prepared.groups.values().all(|g| g.description.is_none()));

    d.groups
        .get_mut(&GroupName::from("B"))
        .unwrap()
        .extras
        .insert(TYPE.into(), BTreeMap::from([("x".to_owned(), json!(1))]));
    let problems = t.prepare(&d, &scope).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        "groups.toml:5:1: group \"B\": UiPath groups have no attributes; remove [group.uipath]"
    );
}

#[test]
fn debug_output_hides_the_secret() {
    let t = target();
    let text = format!("{t:?}");
    assert!(text.contains("robots") && !text.contains("\"s\""), "{text}");
}

#[test]
fn vet_refuses_a_blank_name_a_taken_name_and_changes_to_built_in_groups() {
    let t = target();

    // A blank name (the service requires a name).
    let o = observed(&[], 3);
    let p = plan(&t, &desired(&[(" ", &["u0"])]), &o, false);
    let refused = vet::rejections(&o, &p);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].change, Some(0));
    assert!(
        refused[0].message.contains("cannot be blank"),
        "{refused:?}"
    );

    // A create onto a name another group holds, whatever its case.
    let d = desired(&[("Ops", &["u0"])]);
    let mut o = observed(&[], 3);
    let p = plan(&t, &d, &o, false);
    assert!(vet::rejections(&o, &p).is_empty(), "nothing taken yet");
    o.others.insert(GroupName::from("OPS"));
    let refused = vet::rejections(&o, &p);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(matches!(p.changes[0], Change::CreateGroup { .. }));
    assert_eq!(refused[0].change, Some(0));
    assert!(
        refused[0]
            .message
            .contains("\"OPS\" (outside roster's scope)")
            && refused[0].message.contains("the create would be refused"),
        "{refused:?}"
    );

    // A rename onto a name another group holds; a change of case of its own name is fine.
    let d = desired(&[("Team", &["u0"])]);
    let mut o = observed(&[("team", &["u0"])], 3);
    let p = plan(&t, &d, &o, false);
    assert!(
        vet::rejections(&o, &p).is_empty(),
        "renaming to its own name in another case"
    );
    o.groups.insert(
        GroupName::from("TEAM"),
        ObservedGroup {
            id: "id-other".into(),
            group: Group::named("TEAM"),
            kind: GroupKind::Managed,
        },
    );
    let refused = vet::rejections(&o, &p);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].message.contains("the rename"), "{refused:?}");

    // Any change to a built-in group.
    let d = desired(&[("G", &["u0", "u1"])]);
    let mut o = observed(&[("G", &["u0"])], 3);
    let p = plan(&t, &d, &o, false);
    assert!(vet::rejections(&o, &p).is_empty());
    if let Some(g) = o.groups.get_mut(&GroupName::from("G")) {
        g.kind = GroupKind::System;
    }
    let refused = vet::rejections(&o, &p);
    assert_eq!(refused.len(), p.changes.len(), "{refused:?}");
    assert!(refused[0].message.contains("built-in"), "{refused:?}");
}

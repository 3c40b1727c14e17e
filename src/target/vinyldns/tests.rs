//! Unit tests of the VinylDNS connector: `compile` is pure, so "fewest calls" is checked here,
//! and so is `prepare`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::num::NonZeroUsize;

use futures::channel::mpsc::{TryRecvError, UnboundedReceiver};
use serde_json::json;

use super::*;
use crate::model::{Group, GroupKind, ObservedGroup, Origin};
use crate::plan::{MembershipMode, Policy};
use crate::secret::Secret;

fn target() -> VinylDnsTarget {
    let config = VinylDnsConfig {
        url: "https://vinyldns.example.com".into(),
        access_key: Secret::new("AK"),
        secret_key: Secret::new("SK"),
        email_dots: 2,
        user: None,
    };
    VinylDnsTarget::new(
        "dns",
        &config,
        reqwest::Client::new(),
        NonZeroUsize::new(4).unwrap(),
    )
}

fn desired_group(name: &str, members: &[&str], admins: &[&str]) -> Group {
    let mut g = Group::named(name);
    g.members = members.iter().map(|m| UserKey::from(*m)).collect();
    let admins: Vec<Value> = admins.iter().map(|a| Value::from(*a)).collect();
    g.extras.insert(
        TYPE.into(),
        Attributes::from([
            ("email".to_owned(), json!(format!("{name}@example.com"))),
            ("admins".to_owned(), Value::from(admins)),
        ]),
    );
    g
}

fn observed_group(name: &str, members: &[&str], admins: &[&str]) -> ObservedGroup {
    let mut g = desired_group(name, members, admins);
    g.members.extend(admins.iter().map(|a| UserKey::from(*a)));
    ObservedGroup {
        id: format!("id-{name}"),
        group: g,
        kind: GroupKind::Managed,
    }
}

fn desired(groups: Vec<Group>) -> Desired {
    let mut d = Desired::default();
    for g in groups {
        d.origins.insert(
            g.name.clone(),
            Origin::File {
                path: "groups.toml".into(),
                line: 1,
                col: 1,
            },
        );
        d.groups.insert(g.name.clone(), g);
    }
    d
}

fn plan_of(t: &VinylDnsTarget, d: &Desired, o: &Observed, prune: bool) -> Plan {
    let scope = Scope::new(Some(&["*".to_owned()]), d, true).unwrap();
    let policy = Policy {
        scope,
        membership: MembershipMode::Authoritative,
        prune,
        max_deletes: 10_000,
        max_group_shrink: crate::plan::Share::ALL,
        allow_empty_source: true,
    };
    crate::plan::plan("dns", TYPE, d, o, &policy, t.capabilities())
}

fn users(o: &mut Observed, names: impl IntoIterator<Item = String>) {
    for n in names {
        o.users.insert(UserKey::from(n.clone()), format!("u-{n}"));
    }
}

#[test]
fn a_thousand_member_changes_compile_to_one_put_per_group() {
    let t = target();
    let mut o = Observed::default();
    let mut groups = Vec::new();
    for g in 0..10 {
        let name = format!("g{g}");
        let old: Vec<String> = (0..50).map(|i| format!("old{g}-{i}")).collect();
        let new: Vec<String> = (0..50).map(|i| format!("new{g}-{i}")).collect();
        let mut have: Vec<&str> = old.iter().map(String::as_str).collect();
        have.push("admin");
        o.groups.insert(
            GroupName(name.clone()),
            observed_group(&name, &have, &["admin"]),
        );
        let mut want: Vec<&str> = new.iter().map(String::as_str).collect();
        want.push("admin");
        groups.push(desired_group(&name, &want, &["admin"]));
        users(&mut o, old.into_iter().chain(new));
    }
    users(&mut o, ["admin".to_owned()]);
    let d = desired(groups);
    let plan = plan_of(&t, &d, &o, false);
    assert_eq!(plan.changes.len(), 1000);
    let calls = t.compile(&plan, &o);
    assert_eq!(calls.len(), 10, "one full-replace PUT per group");
    let covered: BTreeSet<usize> = calls.iter().flat_map(|c| c.covers().to_vec()).collect();
    assert_eq!(covered.len(), 1000, "every change is carried by a call");
    let Op::Update(id, delta) = &calls[0].op else {
        panic!("not an update: {:?}", calls[0]);
    };
    assert_eq!(id, "id-g0");
    assert_eq!(delta.add.len(), 50);
    assert_eq!(delta.remove.len(), 50);
    assert!(delta.add.contains("u-new0-0") && delta.remove.contains("u-old0-0"));
    assert_eq!(calls[0].stage(), Stage::Members);
    assert_eq!(calls[0].retry(), RetrySafety::Idempotent);
}

#[test]
fn a_new_group_is_one_create_carrying_its_members() {
    let t = target();
    let mut o = Observed::default();
    users(&mut o, ["alice".into(), "bob".into()]);
    let d = desired(vec![desired_group("ops", &["alice", "bob"], &["alice"])]);
    let plan = plan_of(&t, &d, &o, false);
    assert_eq!(plan.changes.len(), 3, "{:?}", plan.changes);
    let calls = t.compile(&plan, &o);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].covers(), &[0, 1, 2]);
    assert_eq!(calls[0].retry(), RetrySafety::AfterRecheck);
    assert_eq!(
        calls[0].op,
        Op::Create(NewGroup {
            name: "ops".into(),
            email: "ops@example.com".into(),
            description: None,
            members: BTreeSet::from(["u-alice".to_owned(), "u-bob".to_owned()]),
            admins: BTreeSet::from(["u-alice".to_owned()]),
        })
    );
}

#[test]
fn field_changes_ride_in_the_same_put_and_a_delete_is_one_call() {
    let t = target();
    let mut o = Observed::default();
    users(&mut o, ["alice".into(), "bob".into()]);
    o.groups.insert(
        "ops".into(),
        observed_group("ops", &["alice", "bob"], &["alice"]),
    );
    o.groups
        .insert("old".into(), observed_group("old", &["alice"], &["alice"]));
    let mut want = desired_group("ops", &["alice", "bob"], &["bob"]);
    want.description = Some("Operations".into());
    let d = desired(vec![want]);
    let plan = plan_of(&t, &d, &o, true);
    let calls = t.compile(&plan, &o);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let Op::Update(_, delta) = &calls.iter().find(|c| c.group.as_str() == "ops").unwrap().op else {
        panic!("ops is not an update");
    };
    assert_eq!(delta.description.as_deref(), Some("Operations"));
    assert_eq!(delta.admins, Some(BTreeSet::from(["u-bob".to_owned()])));
    assert!(delta.add.is_empty() && delta.remove.is_empty());
    let del = calls.iter().find(|c| c.group.as_str() == "old").unwrap();
    assert_eq!(del.op, Op::Delete("id-old".into()));
    assert_eq!(del.stage(), Stage::DeleteGroup);
}

#[test]
fn prepare_reports_a_missing_email_and_admins_at_the_origin_and_makes_admins_members() {
    let t = target();
    let mut no_email = desired_group("dev", &["alice"], &["alice"]);
    no_email.extras.get_mut(TYPE).unwrap().remove("email");
    let spaced = desired_group("two words", &["alice"], &["alice"]);
    let mut no_admin = desired_group("qa", &["alice"], &[]);
    no_admin.extras.get_mut(TYPE).unwrap().remove("admins");
    let d = desired(vec![no_email, spaced, no_admin]);
    let scope = Scope::new(None, &d, true).unwrap();
    let problems: Vec<String> = t
        .prepare(&d, &scope)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        vec![
            "groups.toml:1:1: group \"dev\" has no e-mail, which VinylDNS requires: set \
             `[group.vinyldns] email`",
            "groups.toml:1:1: group \"qa\" has no admin, which VinylDNS requires: set \
             `[group.vinyldns] admins`",
            "groups.toml:1:1: group \"two words\": VinylDNS group names are one word (no spaces)",
        ]
    );

    let d = desired(vec![desired_group("ops", &["bob"], &["alice"])]);
    let scope = Scope::new(None, &d, true).unwrap();
    let prepared = t.prepare(&d, &scope).unwrap();
    assert!(matches!(prepared, Cow::Owned(_)));
    let members: Vec<&str> = prepared.groups[&GroupName::from("ops")]
        .members
        .iter()
        .map(UserKey::as_str)
        .collect();
    assert_eq!(members, ["alice", "bob"]);
    // Out of scope, nothing is checked.
    let empty = Scope::empty();
    let bad = desired(vec![Group::named("x y")]);
    assert!(t.prepare(&bad, &empty).is_ok());
}

#[test]
fn debug_never_shows_the_keys() {
    let text = format!("{:?}", target());
    assert!(!text.contains("\"AK\"") && !text.contains("SK"), "{text}");
}

#[test]
fn the_email_rule_is_the_servers() {
    let none: Vec<String> = Vec::new();
    assert!(email_rule("ops@example.com", &none, 2).is_ok());
    assert!(email_rule("a.b+c!d&e-f_g@mail.example.com", &none, 2).is_ok());
    // The pattern allows a dot just before the @, and inner hyphens in a domain label.
    assert!(email_rule("ops.@example.com", &none, 2).is_ok());
    assert!(email_rule("ops@my-example.com", &none, 2).is_ok());
    for bad in [
        "ops",
        "@example.com",
        "ops@localhost",
        "o'neil@example.com",
        ".ops@example.com",
        "o..ps@example.com",
        "ops@-example.com",
        "ops@exa_mple.com",
        "ops@example.com.",
    ] {
        assert!(email_rule(bad, &none, 2).is_err(), "{bad}");
    }
    let err = email_rule("ops@a.b.example.com", &none, 2).unwrap_err();
    assert!(err.contains("3 dots") && err.contains("at most 2"), "{err}");
    let domains = vec!["example.com".to_owned(), "*.corp.net".to_owned()];
    assert!(email_rule("ops@example.com", &domains, 2).is_ok());
    assert!(email_rule("ops@eu.corp.net", &domains, 2).is_ok());
    // The server matches every entry as a suffix, so this passes there too.
    assert!(email_rule("ops@badexample.com", &domains, 2).is_ok());
    let err = email_rule("ops@other.org", &domains, 2).unwrap_err();
    assert!(err.contains("not one the server allows"), "{err}");
}

#[test]
fn admins_are_sorted_and_deduplicated_without_regard_to_case() {
    let names = |v: &[&str]| sorted_names(v.iter().map(|s| (*s).to_owned()));
    assert_eq!(names(&["bob", "Alice", "alice"]), ["Alice", "bob"]);
    assert_eq!(names(&["JWilson", "alice"]), ["alice", "JWilson"]);
}

#[test]
fn prepare_sorts_the_admins_as_the_observe_does() {
    let t = target();
    let d = desired(vec![desired_group("ops", &["bob"], &["bob", "Alice"])]);
    let scope = Scope::new(None, &d, true).unwrap();
    let prepared = t.prepare(&d, &scope).unwrap();
    let admins = &prepared.groups[&GroupName::from("ops")].extras[TYPE]["admins"];
    assert_eq!(admins, &json!(["Alice", "bob"]));
}

#[test]
fn long_descriptions_and_unknown_admins_are_named() {
    assert!(description_rule(&"x".repeat(256)).is_none());
    assert!(description_rule(&"é".repeat(257)).is_some_and(|m| m.contains("257 characters")));
    assert!(no_admin(&["ghost".into()]).contains("(ghost)"));
}

/// A group of the list as a page gives it: `members` by id.
fn listed(id: &str, name: &str, members: &[&str]) -> api::Group {
    api::Group {
        id: id.to_owned(),
        name: name.to_owned(),
        email: format!("{name}@example.com"),
        description: None,
        status: None,
        members: members
            .iter()
            .map(|m| api::IdRef { id: (*m).into() })
            .collect(),
        admins: Vec::new(),
    }
}

/// Drains what the feed has sent so far.
fn sent(ids: &mut UnboundedReceiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(id) = ids.try_recv() {
        out.push(id);
    }
    out.sort();
    out
}

#[test]
fn the_feed_sends_ids_only_once_the_groups_share_them() {
    let desired = Desired::default();
    let scope = Scope::new(Some(&["t*".to_owned()]), &desired, true).expect("scope");
    let (feed, mut ids) = read::Feed::new(&scope);
    // Two groups, three distinct ids: no sharing yet, nothing sent.
    feed.page(&[
        listed("1", "t1", &["a", "b"]),
        listed("2", "t2", &["b", "c"]),
    ]);
    assert!(sent(&mut ids).is_empty());
    // Out of scope, deleted or read again: not counted.
    let mut gone = listed("4", "t4", &["z"]);
    gone.status = Some("Deleted".to_owned());
    feed.page(&[
        listed("3", "other", &["y"]),
        gone,
        listed("1", "t1", &["a", "b"]),
    ]);
    assert!(sent(&mut ids).is_empty());
    // Six groups of the same three ids: half as many ids as groups, all sent, each once.
    feed.page(&[
        listed("5", "t5", &["a"]),
        listed("6", "t6", &["a", "c"]),
        listed("7", "t7", &["b"]),
        listed("8", "t8", &["c"]),
    ]);
    assert_eq!(sent(&mut ids), ["a", "b", "c"]);
    feed.page(&[listed("9", "t9", &["a", "d"])]);
    assert!(sent(&mut ids).is_empty(), "4 ids of 7 groups: d waits");
    // Fewer ids than groups: read by user, and what waited is sent.
    assert!(feed.finish());
    assert_eq!(sent(&mut ids), ["d"]);
    assert!(
        matches!(ids.try_recv(), Err(TryRecvError::Closed)),
        "the feed is closed"
    );
}

#[test]
fn a_feed_whose_groups_do_not_share_is_read_group_by_group() {
    let desired = Desired::default();
    let scope = Scope::new(Some(&["*".to_owned()]), &desired, true).expect("scope");
    let (feed, mut ids) = read::Feed::new(&scope);
    feed.page(&[listed("1", "t1", &["a"]), listed("2", "t2", &["b"])]);
    assert!(!feed.finish(), "as many ids as groups");
    assert!(sent(&mut ids).is_empty());
    assert!(
        matches!(ids.try_recv(), Err(TryRecvError::Closed)),
        "the feed is closed"
    );
}

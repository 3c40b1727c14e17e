//! Unit tests of the VinylDNS simulator's state: its indexes agree with its records through
//! every change, and lookups keep the server's rules.

use super::*;

fn sim() -> VinylDnsSim {
    let seed: VinylDnsSeed = toml::from_str(
        r#"
        users = ["alice", "bob"]
        super_users = ["roster"]
        [[group]]
        name = "ops"
        email = "ops@example.com"
        members = ["alice"]
        admins = ["alice"]
        [[group]]
        name = "dev"
        email = "dev@example.com"
        members = ["bob"]
        admins = ["bob"]
        "#,
    )
    .unwrap();
    seed.validate().unwrap();
    VinylDnsSim::new(seed)
}

fn group(id: &str, name: &str, member: &str) -> SimGroup {
    SimGroup {
        id: id.to_owned(),
        name: name.to_owned(),
        email: format!("{name}@example.com"),
        description: None,
        members: BTreeSet::from([member.to_owned()]),
        admins: BTreeSet::from([member.to_owned()]),
    }
}

#[test]
fn lookups_follow_updates_deletes_and_the_case_switch() {
    let sim = sim();
    let (alice, bob) = (sim.user_id("alice").unwrap(), sim.user_id("bob").unwrap());
    let ops = sim.group("ops").unwrap().id;
    let mut st = sim.lock();
    st.assert_indexes();
    assert_eq!(
        st.same_name("OPS", None).map(|g| g.id.clone()),
        Some(ops.clone())
    );
    assert!(st.same_name("ops", Some(&ops)).is_none());
    // An update stores the whole group again: renamed, with other members.
    st.put_group(group(&ops, "Platform", &bob));
    st.assert_indexes();
    assert!(st.same_name("ops", None).is_none());
    assert_eq!(st.group_named("Platform"), Some(ops.clone()));
    assert!(!st.indexes.member_of.contains_key(&alice));
    assert_eq!(st.indexes.member_of[&bob].len(), 2);
    // Names compared exactly from now on, without a rebuild.
    st.behaviour.case_insensitive_names = false;
    assert!(st.same_name("platform", None).is_none());
    assert!(st.same_name("Platform", None).is_some());
    st.behaviour.case_insensitive_names = true;
    // Deleted, then made again under the same name.
    st.remove_group(&ops);
    st.assert_indexes();
    assert!(st.same_name("platform", None).is_none());
    assert_eq!(st.indexes.member_of[&bob].len(), 1);
    drop(st);
    let again = sim.insert_group("platform", "p@example.com", "alice");
    assert_ne!(again, ops);
    let st = sim.lock();
    assert_eq!(
        st.same_name("PLATFORM", None).map(|g| g.id.clone()),
        Some(again)
    );
    st.assert_indexes();
}

#[test]
fn names_differing_only_by_case_list_by_lower_case_name_then_id() {
    let sim = sim();
    let mut st = sim.lock();
    if let Some(ops) = st.group_named("ops") {
        st.remove_group(&ops);
    }
    st.behaviour.case_insensitive_names = false;
    st.put_group(group("b", "Ops", "x"));
    st.put_group(group("a", "OPS", "x"));
    st.assert_indexes();
    assert_eq!(st.same_name("OPS", None).map(|g| g.id.as_str()), Some("a"));
    assert_eq!(st.same_name("Ops", None).map(|g| g.id.as_str()), Some("b"));
    st.behaviour.case_insensitive_names = true;
    let first = st.same_name("ops", None).map(|g| g.id.clone());
    assert_eq!(first.as_deref(), Some("a"));
    let ids: Vec<&str> = st
        .indexes
        .names
        .iter()
        .filter(|(folded, _, _)| *folded == "ops")
        .map(|(_, _, id)| id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
}

#[test]
fn users_are_found_by_id_or_name_and_memberships_by_user() {
    let sim = sim();
    let alice = sim.user_id("alice").unwrap();
    {
        let st = sim.lock();
        assert_eq!(
            st.user_by_key("ALICE").map(|u| u.id.clone()),
            Some(alice.clone())
        );
        assert_eq!(
            st.user_by_key(&alice.to_uppercase())
                .map(|u| u.user_name.clone()),
            Some("alice".to_owned())
        );
        assert!(st.user_by_name("Alice").is_none(), "by name is exact");
    }
    assert!(sim.add_member("dev", "alice"));
    assert!(sim.add_unknown_admin("dev", "no-such-user"));
    let st = sim.lock();
    st.assert_indexes();
    assert_eq!(st.indexes.member_of[&alice].len(), 2);
    assert_eq!(st.indexes.member_of["no-such-user"].len(), 1);
}

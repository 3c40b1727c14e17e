//! Unit tests of the UiPath Identity simulator: what its seed builds and what validation finds,
//! and that its indexes agree with its records through every change.

use super::*;

#[test]
fn seed_builds_state_with_built_in_groups() {
    let seed: UiPathSeed = toml::from_str(
        r#"
        organization = "acme"
        users = ["alice"]
        [[user]]
        name = "bob"
        email = "bob@corp.example"
        source = "aad"
        [[group]]
        name = "Robots"
        members = ["alice", "carol"]
        "#,
    )
    .unwrap();
    seed.validate().unwrap();
    let sim = UiPathSim::new(seed);
    assert_eq!(sim.base_path(), "/acme");
    assert_eq!(sim.group_names(), ["Administrators", "Everyone", "Robots"]);
    let robots = sim.group("robots").unwrap();
    assert_eq!(robots.kind, 1);
    assert_eq!(
        robots.members,
        BTreeSet::from(["alice".into(), "carol".into()])
    );
    assert_eq!(sim.group("Everyone").unwrap().kind, 0);
    assert!(sim.user_id("bob@corp.example").is_some());
}

#[test]
fn validate_finds_problems() {
    let seed: UiPathSeed = toml::from_str(
        r#"
        partition_global_id = "magic-7"
        users = ["a", "A"]
        [[group]]
        name = "G"
        [[group]]
        name = "g"
        [[group]]
        name = "everyone"
        "#,
    )
    .unwrap();
    let problems = seed.validate().unwrap_err();
    assert_eq!(problems.len(), 4, "{problems:?}");
}

fn sim(toml: &str) -> UiPathSim {
    let seed: UiPathSeed = toml::from_str(toml).unwrap();
    seed.validate().unwrap();
    UiPathSim::new(seed)
}

fn local(id: &str, name: &str) -> GroupRec {
    GroupRec {
        id: id.to_owned(),
        name: name.to_owned(),
        kind: 1,
        members: BTreeSet::new(),
        modified: FIXED_TIME.to_owned(),
    }
}

#[test]
fn lookups_follow_renames_deletes_and_the_case_switch() {
    let sim = sim("[[group]]\nname = \"Ops\"\n[[group]]\nname = \"Dev\"\n");
    let mut st = sim.lock();
    let ops = st.group_by_name("ops").unwrap();
    st.rename_group(&ops, "Platform".into());
    st.assert_indexes();
    assert_eq!(st.group_by_name("Ops"), None);
    assert_eq!(st.group_by_name("PLATFORM"), Some(ops.clone()));
    assert!(st.check_name("ops", None).is_ok());
    assert!(st.check_name("platform", Some(&ops)).is_ok());
    assert!(st.check_name("platform", None).is_err());
    // Names compared exactly from now on, without a rebuild.
    st.behaviour.case_insensitive_names = false;
    assert_eq!(st.group_by_name("PLATFORM"), None);
    assert_eq!(st.group_by_name("Platform"), Some(ops.clone()));
    st.behaviour.case_insensitive_names = true;
    // A path's id matches regardless of case.
    assert_eq!(st.group_id(&ops.to_uppercase()).unwrap(), ops);
    // Deleted, then made again under the same name with another id.
    st.remove_group(&ops);
    st.assert_indexes();
    assert_eq!(st.group_by_name("Platform"), None);
    assert!(st.group_id(&ops).is_err());
    let again = Uuid::new_v4().to_string();
    st.put_group(local(&again, "platform"));
    st.assert_indexes();
    assert_eq!(st.group_by_name("Platform"), Some(again.clone()));
    // Stored again under its id with another name: the old name is gone.
    st.put_group(local(&again, "Infra"));
    st.assert_indexes();
    assert_eq!(st.group_by_name("platform"), None);
    assert_eq!(st.group_by_name("infra"), Some(again));
}

#[test]
fn names_differing_only_by_case_are_two_groups_while_names_are_exact() {
    let sim = sim("[behaviour]\ncase_insensitive_names = false\n\
         [[group]]\nname = \"ops\"\nid = \"00000000-0000-0000-0000-00000000000b\"\n\
         [[group]]\nname = \"Ops\"\nid = \"00000000-0000-0000-0000-00000000000a\"\n");
    assert_eq!(
        sim.group("ops").unwrap().id,
        "00000000-0000-0000-0000-00000000000b"
    );
    assert_eq!(
        sim.group("Ops").unwrap().id,
        "00000000-0000-0000-0000-00000000000a"
    );
    assert!(sim.group("OPS").is_none());
    let mut st = sim.lock();
    st.assert_indexes();
    // Flipped at run time: an exact match still wins, else the first in id order.
    st.behaviour.case_insensitive_names = true;
    assert_eq!(
        st.group_by_name("ops").unwrap(),
        "00000000-0000-0000-0000-00000000000b"
    );
    assert_eq!(
        st.group_by_name("OPS").unwrap(),
        "00000000-0000-0000-0000-00000000000a"
    );
    // Listed by lower-case name, then name.
    let listed: Vec<&str> = st
        .indexes
        .group_names
        .iter()
        .map(|(_, name, _)| name)
        .collect();
    assert_eq!(listed, ["Administrators", "Everyone", "Ops", "ops"]);
}

#[test]
fn users_are_found_by_name_email_and_id_until_removed() {
    let sim = sim(
        "users = [\"alice\"]\n[[user]]\nname = \"bob\"\nemail = \"Bob@Corp.example\"\n\
         identifier = \"AB-1\"\n",
    );
    assert_eq!(sim.user_id("BOB@corp.example").as_deref(), Some("AB-1"));
    assert_eq!(sim.user_id("Bob").as_deref(), Some("AB-1"));
    let alice = sim.user_id("alice").unwrap();
    {
        let st = sim.lock();
        assert_eq!(st.user_key("ab-1").as_deref(), Some("AB-1"));
        assert_eq!(st.user_key(&alice.to_uppercase()), Some(alice.clone()));
        st.assert_indexes();
    }
    sim.insert_group("G", &["alice", "bob"]);
    assert!(sim.remove_user("bob@corp.example"));
    assert!(sim.user_id("bob").is_none());
    assert_eq!(
        sim.group("G").unwrap().members,
        BTreeSet::from(["alice".into()])
    );
    let st = sim.lock();
    assert_eq!(st.user_key("AB-1"), None);
    st.assert_indexes();
}

//! Unit tests of the Crafter Studio simulator: what its seed builds and what validation finds,
//! and that its indexes agree with its records through every change.

use super::*;

#[test]
fn seed_builds_state_with_built_in_groups() {
    let seed: CrafterSeed = toml::from_str(
        "users = [\"ann\"]\n[[group]]\nname = \"docs\"\nmembers = [\"bob\"]\n\
         [[group]]\nname = \"system_admin\"\nmembers = [\"ann\"]\n",
    )
    .unwrap();
    let sim = CrafterSim::new(seed);
    assert_eq!(sim.group("system_admin").unwrap().id, 1);
    assert_eq!(
        sim.group("system_admin").unwrap().members,
        BTreeSet::from(["admin".to_owned(), "ann".to_owned()])
    );
    assert_eq!(sim.group("DOCS").unwrap().members.len(), 1);
    assert_eq!(sim.groups().len(), 7);
}

#[test]
fn validate_finds_problems() {
    let seed: CrafterSeed = toml::from_str(
        "[[group]]\nname = \"a\"\n[[group]]\nname = \"A\"\n[[group]]\nname = \"x\"\nsite = \"nosite\"\n",
    )
    .unwrap();
    let problems = seed.validate().unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(toml::from_str::<CrafterSeed>("api = \"v4\"").is_err());
}

fn sim(toml: &str) -> CrafterSim {
    let seed: CrafterSeed = toml::from_str(toml).unwrap();
    seed.validate().unwrap();
    CrafterSim::new(seed)
}

#[test]
fn lookups_follow_renames_deletes_and_the_case_switch() {
    let sim = sim(
        "sites = [\"web\"]\n[[group]]\nname = \"Ops\"\n[[group]]\nname = \"Ops\"\nsite = \"web\"\n",
    );
    let mut st = sim.lock();
    let ops = st.find("ops", None).unwrap();
    let site_ops = st.find("OPS", Some("web")).unwrap();
    assert_ne!(ops, site_ops);
    st.rename_group(ops, "Platform".into());
    st.assert_indexes();
    assert_eq!(st.find("Ops", None), None);
    assert_eq!(st.find("platform", None), Some(ops));
    // The site's group keeps its name.
    assert_eq!(st.find("ops", Some("web")), Some(site_ops));
    assert_eq!(st.find("platform", Some("web")), None);
    // Names compared exactly from now on, without a rebuild.
    st.behaviour.case_insensitive_names = false;
    assert_eq!(st.find("platform", None), None);
    assert_eq!(st.find("Platform", None), Some(ops));
    st.behaviour.case_insensitive_names = true;
    // Deleted, then made again under the same name.
    st.remove_group(ops);
    st.assert_indexes();
    assert_eq!(st.find("Platform", None), None);
    let again = st.insert("platform", None, false, None);
    assert_ne!(again, ops);
    assert_eq!(st.find("PLATFORM", None), Some(again));
    st.remove_group(site_ops);
    st.assert_indexes();
    assert_eq!(st.find("ops", Some("web")), None);
}

#[test]
fn names_differing_only_by_case_are_two_groups_while_names_are_exact() {
    let sim = sim("[behaviour]\ncase_insensitive_names = false\n\
         [[group]]\nname = \"ops\"\n[[group]]\nname = \"Ops\"\n");
    let (lower, upper) = (sim.group("ops").unwrap().id, sim.group("Ops").unwrap().id);
    assert_ne!(lower, upper);
    assert!(sim.group("OPS").is_none());
    let mut st = sim.lock();
    st.assert_indexes();
    // Flipped at run time: the first in id order.
    st.behaviour.case_insensitive_names = true;
    assert_eq!(st.find("OPS", None), Some(lower));
    assert_eq!(st.find("Ops", None), Some(lower));
    // Listed by lower-case name, then id.
    let listed: Vec<i64> = st
        .global_names
        .iter()
        .filter(|(folded, _, _)| *folded == "ops")
        .map(|(_, _, id)| *id)
        .collect();
    assert_eq!(listed, [lower, upper]);
}

#[test]
fn usernames_are_found_until_purged() {
    let sim = sim("users = [\"ann\"]\n");
    let ann = sim.user_id("ANN").unwrap();
    sim.delete_user("ann");
    assert_eq!(
        sim.user_id("ann"),
        Some(ann),
        "soft-deleted users are still found"
    );
    sim.insert_group("docs", None, &["ann"], None);
    sim.purge_user("Ann");
    assert_eq!(sim.user_id("ann"), None);
    sim.add_user("ann");
    let again = sim
        .user_id("ann")
        .expect("the name is free again once purged");
    assert_ne!(again, ann, "a new user, not the purged one back");
    sim.lock().assert_indexes();
}

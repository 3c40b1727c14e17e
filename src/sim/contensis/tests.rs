//! Unit tests of the Contensis simulator's seed: what it builds and what validation finds.

use super::*;

#[test]
fn seed_builds_state() {
    let seed: ContensisSeed = toml::from_str(
        r#"
        users = ["alice"]
        [[group]]
        name = "Eng"
        members = ["bob"]
        children = ["Ops"]
        [[group]]
        name = "Ops"
        type = "external"
        [[group]]
        name = "System Administrators"
        members = ["carol"]
        "#,
    )
    .unwrap();
    seed.validate().unwrap();
    let sim = ContensisSim::new(seed);
    assert_eq!(sim.group_names(), ["Eng", "Ops", "System Administrators"]);
    let eng = sim.group("eng").unwrap();
    assert_eq!(eng.members, BTreeSet::from(["bob".to_owned()]));
    assert_eq!(eng.children, BTreeSet::from(["Ops".to_owned()]));
    assert_eq!(sim.group("Ops").unwrap().kind, "external");
    let admins = sim.group(SYSTEM_ADMINISTRATORS).unwrap();
    assert_eq!(admins.kind, "sys");
    assert!(admins.members.contains("roster") && admins.members.contains("carol"));
    assert!(sim.user_id("alice@example.com").is_some());
}

#[test]
fn validate_finds_problems() {
    let seed: ContensisSeed = toml::from_str(
        r#"
        [[group]]
        name = "A"
        children = ["B", "Nope"]
        [[group]]
        name = "a"
        "#,
    )
    .unwrap();
    let problems = seed.validate().unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    let cyclic: ContensisSeed = toml::from_str(
        r#"
        [[group]]
        name = "A"
        children = ["B"]
        [[group]]
        name = "B"
        children = ["A"]
        "#,
    )
    .unwrap();
    let problems = cyclic.validate().unwrap_err();
    assert!(problems[0].contains("cycle"), "{problems:?}");
}

//! Unit tests of the UiPath Identity simulator's seed: what it builds and what validation finds.

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

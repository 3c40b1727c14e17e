//! Unit tests of the Crafter Studio simulator's seed: what it builds and what validation finds.

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

//! Unit tests of the Contensis simulator: what its seed builds and what validation finds, and
//! that its indexes agree with its records through every change.

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

fn sim(toml: &str) -> ContensisSim {
    let seed: ContensisSeed = toml::from_str(toml).unwrap();
    seed.validate().unwrap();
    ContensisSim::new(seed)
}

fn params(pairs: &[(&str, &str)]) -> Params {
    Params(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// The page of every group that `q` asks for, as JSON.
fn page_of(st: &SimState, q: &Params) -> Result<Value, ApiError> {
    Ok(serde_json::to_value(st.all_groups_page(q)?).unwrap())
}

/// The names of a page's items.
fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn lookups_follow_renames_deletes_and_the_case_switch() {
    let sim = sim("[[group]]\nname = \"Ops\"\n[[group]]\nname = \"Dev\"\n");
    let mut st = sim.lock();
    let ops = st.group_by_name("ops").unwrap();
    st.rename_group(ops, "Platform".into());
    st.assert_indexes();
    assert_eq!(st.group_by_name("Ops"), None);
    assert_eq!(st.find_group("PLATFORM"), Some(ops));
    assert!(st.check_name("OPS", None).is_ok());
    assert!(st.check_name("platform", Some(ops)).is_ok());
    assert!(st.check_name("platform", None).is_err());
    // Names compared exactly from now on, without a rebuild.
    st.behaviour.case_insensitive_names = false;
    assert_eq!(st.group_by_name("platform"), None);
    assert_eq!(st.group_by_name("Platform"), Some(ops));
    st.behaviour.case_insensitive_names = true;
    // Deleted, then made again under the same name.
    st.remove_group(ops);
    st.assert_indexes();
    assert_eq!(st.group_by_name("Platform"), None);
    let again = st.ensure_group("platform");
    assert_ne!(again, ops);
    assert_eq!(st.group_by_name("PLATFORM"), Some(again));
    st.assert_indexes();
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
    // Flipped at run time: an exact match still wins, else the first in id order.
    st.behaviour.case_insensitive_names = true;
    assert_eq!(
        st.group_by_name("ops").map(|id| id.to_string()),
        Some(lower.clone())
    );
    let first = lower.clone().min(upper.clone());
    assert_eq!(
        st.group_by_name("OPS").map(|id| id.to_string()),
        Some(first)
    );
    // Listed by lower-case name, then name; descending reverses it all.
    let page = page_of(&st, &params(&[])).unwrap();
    assert_eq!(names(&page), ["Ops", "ops", SYSTEM_ADMINISTRATORS]);
    let page = page_of(&st, &params(&[("order", "-name")])).unwrap();
    assert_eq!(names(&page), [SYSTEM_ADMINISTRATORS, "ops", "Ops"]);
}

#[test]
fn list_pages_match_a_sort_of_every_group() {
    let sim = sim("");
    for i in 0..57 {
        // Mixed case and an accent, so that the order is not the bytes' order.
        let name = match i % 3 {
            0 => format!("g{i:02}"),
            1 => format!("G{i:02}x"),
            _ => format!("É{i:02}"),
        };
        sim.insert_group(&name, None, &[], &[]);
    }
    let st = sim.lock();
    st.assert_indexes();
    let mut all: Vec<String> = st.groups.values().map(|g| g.name.clone()).collect();
    all.sort_by(|a, b| (a.to_lowercase(), a).cmp(&(b.to_lowercase(), b)));
    let mut paged = Vec::new();
    for index in 0..4 {
        let q = params(&[("pageIndex", &index.to_string()), ("pageSize", "20")]);
        let page = page_of(&st, &q).unwrap();
        assert_eq!(page["totalCount"], 58);
        assert_eq!(page["pageCount"], 3);
        paged.extend(names(&page));
    }
    assert_eq!(paged, all);
    let page = page_of(&st, &params(&[("q", "X"), ("pageSize", "5")])).unwrap();
    assert_eq!(page["totalCount"], 19);
    let want: Vec<&String> = all.iter().filter(|n| n.ends_with('x')).take(5).collect();
    assert_eq!(names(&page).iter().collect::<Vec<_>>(), want);
}

#[test]
fn users_are_found_by_username_or_email_until_removed() {
    let sim = sim("users = [\"alice\"]\n");
    assert!(sim.user_id("ALICE@example.com").is_some());
    sim.insert_group("G", None, &["alice"], &[]);
    sim.remove_user("Alice");
    assert!(sim.user_id("alice").is_none());
    assert!(sim.group("G").unwrap().members.is_empty());
    sim.add_user("alice");
    assert!(sim.user_id("alice@example.com").is_some());
    sim.lock().assert_indexes();
}

#[test]
fn a_users_groups_include_the_groups_above_when_inherited() {
    let sim = sim("users = [\"ann\"]\n\
         [[group]]\nname = \"Top\"\nchildren = [\"Mid\"]\n\
         [[group]]\nname = \"Mid\"\nchildren = [\"Low\"]\n\
         [[group]]\nname = \"Low\"\nmembers = [\"ann\"]\n\
         [[group]]\nname = \"Other\"\n");
    let st = sim.lock();
    let ann = st.user_by_name("ann").unwrap();
    let id = |n: &str| st.group_by_name(n).unwrap();
    assert_eq!(st.groups_of(ann, false), BTreeSet::from([id("Low")]));
    assert_eq!(
        st.groups_of(ann, true),
        BTreeSet::from([id("Low"), id("Mid"), id("Top")])
    );
    // What gathering every group's members with its descendants' says.
    let slow: BTreeSet<Uuid> = st
        .groups
        .keys()
        .copied()
        .filter(|g| st.all_members(*g).contains(&ann))
        .collect();
    assert_eq!(st.groups_of(ann, true), slow);
}

#[test]
fn validation_names_every_group_on_a_cycle_and_only_those() {
    let seed: ContensisSeed = toml::from_str(
        r#"
        [[group]]
        name = "A"
        children = ["B"]
        [[group]]
        name = "B"
        children = ["a"]
        [[group]]
        name = "C"
        children = ["A", "D", "System Administrators"]
        [[group]]
        name = "D"
        children = ["E"]
        [[group]]
        name = "E"
        children = ["F"]
        [[group]]
        name = "F"
        children = ["D"]
        "#,
    )
    .unwrap();
    let problems = seed.validate().unwrap_err();
    let on: Vec<&str> = problems
        .iter()
        .map(|p| p.split('"').nth(1).unwrap())
        .collect();
    assert_eq!(on, ["A", "B", "D", "E", "F"], "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.ends_with("child groups form a cycle"))
    );
}

#[test]
fn validation_walks_a_deep_hierarchy_without_recursing() {
    let depth = 5_000;
    let mut text = String::new();
    for i in 0..depth {
        let child = (i + 1) % depth;
        text.push_str(&format!(
            "[[group]]\nname = \"g{i}\"\nchildren = [\"g{child}\"]\n"
        ));
    }
    let seed: ContensisSeed = toml::from_str(&text).unwrap();
    assert_eq!(seed.validate().unwrap_err().len(), depth);
    let mut seed = seed;
    seed.groups[depth - 1].children.clear();
    assert!(seed.validate().is_ok());
}

#[test]
fn users_are_written_as_a_json_value_would_write_them() {
    let sim = sim("users = [\"émile\"]\n");
    let st = sim.lock();
    for u in st.users.values() {
        let (first, last) = if u.api_key {
            (u.username.clone(), "API key")
        } else {
            ("Émile".to_owned(), "Example")
        };
        // The value the simulator used to build for a user, field for field.
        let value = json!({
            "id": u.id,
            "username": u.username,
            "email": u.email,
            "firstName": first,
            "lastName": last,
            "timezone": "Europe/London",
            "language": "en-GB",
            "custom": {},
            "credentials": {
                "provider": {"type": "Contensis", "name": null},
                "passwordChangeFrequency": 0
            },
            "status": {"suspended": false, "locked": false, "passwordResetRequired": false},
            "created": FIXED_TIME,
            "modified": FIXED_TIME,
            "lastLogin": null,
            "lastFailedLogin": null,
            "expiry": null,
            "passwordChanged": null,
            "optOutOfNotifications": false,
            "failedLoginAttempts": 0,
            "failedLoginAttemptsSinceLastSuccess": 0,
            "successfulLoginAttempts": 0,
        });
        let typed = serde_json::to_string(&UserOut::of(u)).unwrap();
        assert_eq!(typed, value.to_string());
    }
    let q = params(&[("pageSize", "1")]);
    let page = st.user_page(st.users.keys().copied(), &q).unwrap();
    let text = serde_json::to_string(&page).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        text,
        value.to_string(),
        "the page's fields in a value's order"
    );
    assert_eq!(value["totalCount"], 2);
}

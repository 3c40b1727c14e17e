//! Choosing and writing an export, without a target: what is written reads back as what was
//! read, names are quoted as TOML needs, and what the desired state cannot hold is a comment.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;
use crate::model::{Attributes, ObservedGroup, UserKey};

fn group(name: &str, members: &[&str], children: &[&str]) -> Group {
    Group {
        name: GroupName::from(name),
        description: None,
        members: members.iter().map(|m| UserKey::from(*m)).collect(),
        children: children.iter().map(|c| GroupName::from(*c)).collect(),
        extras: BTreeMap::new(),
    }
}

fn observed(groups: Vec<(Group, GroupKind)>, others: &[&str]) -> Observed {
    Observed {
        groups: groups
            .into_iter()
            .map(|(g, kind)| {
                let og = ObservedGroup {
                    id: format!("id-{}", g.name),
                    group: g,
                    kind,
                };
                (og.group.name.clone(), og)
            })
            .collect(),
        others: others.iter().map(|o| GroupName::from(*o)).collect(),
        ..Observed::default()
    }
}

fn scope(patterns: &[&str]) -> Scope {
    let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
    Scope::new(Some(&patterns), &Desired::default(), true).expect("patterns")
}

fn header(type_name: &str) -> Header {
    Header {
        target: "t".to_owned(),
        type_name: type_name.to_owned(),
        all: false,
    }
}

/// Renders `sel` and checks that it reads back as it should.
fn text(type_name: &str, sel: &Selection) -> String {
    let rendered = render(&header(type_name), sel).expect("renders");
    check("t", &rendered).unwrap_or_else(|e| panic!("{e}\n{}", rendered.text));
    rendered.text
}

#[test]
fn names_that_need_quoting_read_back_as_they_were() {
    let odd = [
        "plain",
        "with \"quotes\"",
        "dotted.name",
        "Café Müller",
        "back\\slash",
        "it's",
        "two\nlines",
        "tab\there",
        "日本語",
        "'''",
        "\"\"\"",
    ];
    let mut g = group("Grüße \"und\" so.weiter", &odd, &[]);
    g.description = Some("line one\nline \"two\" \\ end".to_owned());
    g.extras.insert(
        "contensis".to_owned(),
        Attributes::from([(
            "custom".to_owned(),
            json!({"client.id": "P\"S", "schlüssel": "wert", "a b": "it's"}),
        )]),
    );
    let o = observed(vec![(g, GroupKind::Managed)], &[]);
    let sel = select(&o, &scope(&["*"]), false, true);
    let out = text("contensis", &sel);
    assert!(out.contains("[group.contensis]\ncustom = {"), "{out}");
}

#[test]
fn members_roster_leaves_alone_are_comments_on_one_line_each() {
    let o = Observed {
        unmanaged: BTreeMap::from([(
            GroupName::from("ops"),
            BTreeSet::from([
                crate::model::Unmanaged::new("robot account", "Invoice Bot"),
                crate::model::Unmanaged::new("directory group", "evil\n[[group]]\nname = \"x\""),
            ]),
        )]),
        ..observed(vec![(group("ops", &["amy"], &[]), GroupKind::Managed)], &[])
    };
    let sel = select(&o, &scope(&["*"]), false, true);
    let out = text("uipath", &sel);
    assert!(
        out.contains(
            "members = [\"amy\"]\n\
             # Members the desired state cannot name; roster leaves them as they are:\n\
             #   directory group \"evil\\n[[group]]\\nname = \\\"x\\\"\"\n\
             #   robot account \"Invoice Bot\"\n"
        ),
        "{out}"
    );
}

#[test]
fn children_outside_the_scope_are_written_whole_and_owned_groups_by_name() {
    let o = observed(
        vec![
            (
                group("app-a", &["amy"], &["shared", "Admins"]),
                GroupKind::Managed,
            ),
            (group("shared", &["bob"], &["deep"]), GroupKind::Managed),
            (group("deep", &["cy"], &[]), GroupKind::Managed),
            (group("Admins", &[], &[]), GroupKind::System),
            (group("app-sso", &[], &[]), GroupKind::External),
            (group("other", &["dan"], &[]), GroupKind::Managed),
        ],
        &[],
    );
    let sel = select(&o, &scope(&["APP-*"]), false, true);
    let roles: Vec<(&str, &Role)> = sel
        .entries
        .iter()
        .map(|(n, e)| (n.as_str(), &e.role))
        .collect();
    assert_eq!(
        roles,
        [
            (
                "Admins",
                &Role::Reference {
                    kind: GroupKind::System,
                    parent: "app-a".into()
                }
            ),
            ("app-a", &Role::Selected),
            (
                "deep",
                &Role::Child {
                    parent: "shared".into()
                }
            ),
            (
                "shared",
                &Role::Child {
                    parent: "app-a".into()
                }
            ),
        ]
    );
    assert_eq!(
        sel.left_out,
        [(GroupName::from("app-sso"), GroupKind::External)]
    );
    let out = text("contensis", &sel);
    assert!(
        out.contains(
            "# A system group of the target, written by name only because \"app-a\" names it as a\n\
             # child: roster never changes it, and its members are not written.\n\
             [[group]]\nname = \"Admins\"\n\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("children = [\"Admins\", \"shared\"]\n"),
        "{out}"
    );
    assert!(out.contains("#   external group \"app-sso\"\n"), "{out}");
}

#[test]
fn a_child_the_read_did_not_take_in_is_named_for_a_wider_read() {
    let o = observed(
        vec![(group("app", &[], &["outside"]), GroupKind::Managed)],
        &["outside"],
    );
    let sel = select(&o, &scope(&["app"]), false, true);
    assert_eq!(sel.missing, BTreeSet::from([GroupName::from("outside")]));
    let out = text("contensis", &sel);
    assert!(
        out.contains("# Children the target names but does not list as groups; not written:\n#   \"outside\"\n"),
        "{out}"
    );
}

#[test]
fn attributes_the_desired_state_cannot_hold_are_comments() {
    let mut g = group("ops", &["amy"], &[]);
    g.extras.insert(
        "contensis".to_owned(),
        Attributes::from([
            ("custom".to_owned(), json!({"team": "ops", "level": 3})),
            ("colour".to_owned(), json!("red")),
        ]),
    );
    let o = observed(vec![(g, GroupKind::Managed)], &[]);
    let sel = select(&o, &scope(&["*"]), false, true);
    let out = text("contensis", &sel);
    assert!(!out.contains("[group.contensis]"), "{out}");
    assert!(
        out.contains(
            "#   contensis.custom = {\"level\":3,\"team\":\"ops\"}\n#   contensis.colour = \"red\"\n"
        ),
        "{out}"
    );
}

#[test]
fn vinyldns_attributes_are_written_as_people_write_them() {
    let mut g = group("ops", &["amy", "bob"], &[]);
    g.extras.insert(
        "vinyldns".to_owned(),
        Attributes::from([
            ("email".to_owned(), json!("ops@example.com")),
            ("admins".to_owned(), json!(["bob", "amy"])),
        ]),
    );
    let o = observed(vec![(g, GroupKind::Managed)], &[]);
    let sel = select(&o, &scope(&["*"]), false, true);
    let out = text("vinyldns", &sel);
    assert!(
        out.ends_with(
            "[[group]]\nname = \"ops\"\nmembers = [\"amy\", \"bob\"]\n[group.vinyldns]\n\
             email = \"ops@example.com\"\nadmins = [\"amy\", \"bob\"]\n"
        ),
        "{out}"
    );
}

#[test]
fn a_long_member_list_is_written_one_member_a_line() {
    let members: Vec<String> = (0..30).map(|i| format!("user{i:02}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let o = observed(vec![(group("big", &refs, &[]), GroupKind::Managed)], &[]);
    let sel = select(&o, &scope(&["*"]), false, true);
    let out = text("crafter", &sel);
    assert!(
        out.contains("members = [\n    \"user00\",\n    \"user01\",\n"),
        "{out}"
    );
    assert!(out.contains("    \"user29\",\n]\n"), "{out}");
}

#[test]
fn with_all_every_managed_group_is_written_and_system_groups_are_named() {
    let o = observed(
        vec![
            (group("a", &["x"], &[]), GroupKind::Managed),
            (group("Everyone", &[], &[]), GroupKind::System),
        ],
        &[],
    );
    let sel = select(&o, &Scope::empty(), true, true);
    assert_eq!(
        sel.entries.keys().collect::<Vec<_>>(),
        [&GroupName::from("a")]
    );
    assert_eq!(
        sel.left_out,
        [(GroupName::from("Everyone"), GroupKind::System)]
    );
}

#[test]
fn file_names_are_the_target_name_made_safe() {
    assert_eq!(file_name("cms"), "cms.toml");
    assert_eq!(file_name("prod/cms eu"), "prod_cms_eu.toml");
    assert_eq!(file_name(".hidden"), "_.hidden.toml");
    assert_eq!(file_name("Café"), "Café.toml");
}

#[test]
fn a_cycle_of_children_cannot_be_written() {
    let o = observed(
        vec![
            (group("a", &[], &["b"]), GroupKind::Managed),
            (group("b", &[], &["a"]), GroupKind::Managed),
        ],
        &[],
    );
    let sel = select(&o, &scope(&["*"]), false, true);
    let rendered = render(&header("contensis"), &sel).expect("renders");
    let err = check("t", &rendered).expect_err("a cycle does not read back");
    assert!(err.to_string().contains("cycle"), "{err}");
}

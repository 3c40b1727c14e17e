//! `roster export` against the four simulators over HTTP, as the built binary: what it writes is
//! the desired state the target already holds (a plan with it as the only source has nothing to
//! do), the same bytes on every run, members the desired state cannot name are comments, and a
//! read that fails exports nothing.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is a failure with its place.

mod support;

use std::path::{Path, PathBuf};

use roster::sim::SimKind;
use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use support::harness::{Contensis, Crafter, Harness, UiPath, VinylDns};
use support::{SECRET, World, stderr, stdout};

/// One seeded simulator and the config lines of its target.
struct Case {
    kind: SimKind,
    seed: String,
    keys: String,
    extra: &'static str,
}

impl Case {
    async fn world(&self) -> World {
        World::with_target(self.kind, &self.seed, &self.keys, "", self.extra).await
    }
}

/// Contensis nests: `Engineering` holds `Platform`, `Café Staff` and an external group;
/// `Platform` holds `on-call`, which is outside the scope, and the built-in `System
/// Administrators`. The scope's patterns differ in case from the names.
fn contensis(extra: &'static str) -> Case {
    let seed = format!(
        r#"[contensis]
client_id = "roster"
client_secret = "{SECRET}"
users = ["amy", "Bob", "chloé", "dmitri", "Émile", "zoë"]

[[contensis.group]]
name = "Engineering"
description = 'Builds "things"'
members = ["amy", "Bob"]
children = ["Platform", "Café Staff", "sso-staff"]
custom = {{ team = "eng", "cost.centre" = "42" }}

[[contensis.group]]
name = "Platform"
members = ["dmitri"]
children = ["on-call", "System Administrators"]

[[contensis.group]]
name = "on-call"
members = ["Émile"]

[[contensis.group]]
name = "Café Staff"
description = "Baristas and bakers"
members = ["chloé", "zoë"]

[[contensis.group]]
name = "sso-staff"
type = "external"
members = ["amy"]

[[contensis.group]]
name = "System Administrators"

[[contensis.group]]
name = "marketing"
members = ["Bob"]
"#
    );
    Case {
        kind: SimKind::Contensis,
        seed,
        keys: Contensis::keys(),
        extra,
    }
}

/// VinylDNS: a description and names beyond ASCII, admins, and roster's own account as a member.
fn vinyldns() -> Case {
    let seed = format!(
        r#"[vinyldns]
users = ["amy", "Bob", "chloé", "dmitri"]
super_users = ["roster"]

[[vinyldns.credentials]]
access_key = "roster-access"
secret_key = "{SECRET}"
user = "roster"

[[vinyldns.group]]
name = "Ops"
email = "ops@example.com"
description = "Opérations"
members = ["amy", "Bob", "roster"]
admins = ["Bob"]

[[vinyldns.group]]
name = "réseau"
email = "net@example.com"
members = ["chloé", "dmitri"]
admins = ["chloé", "dmitri"]
"#
    );
    Case {
        kind: SimKind::VinylDns,
        seed,
        keys: VinylDns::keys(),
        extra: "groups = [\"*\"]\n",
    }
}

/// Crafter Studio 4.x: an externally managed group, the built-in ones, a name beyond ASCII.
fn crafter() -> Case {
    let seed = format!(
        r#"[crafter]
token = "{SECRET}"
users = ["amy", "Bob", "zoë"]

[[crafter.group]]
name = "Editors"
description = "Édition"
members = ["amy", "Bob"]

[[crafter.group]]
name = "reviewers_été"
members = ["zoë"]

[[crafter.group]]
name = "ldap_editors"
members = ["amy"]
externally_managed = true
"#
    );
    Case {
        kind: SimKind::Crafter,
        seed,
        keys: Crafter::keys(),
        extra: "groups = [\"*\"]\n",
    }
}

/// UiPath: a robot account and an external application among a group's members, the built-in
/// groups, names beyond ASCII.
fn uipath() -> Case {
    let seed = format!(
        r#"[uipath]
client_id = "roster"
client_secret = "{SECRET}"
users = ["amy", "Bob", "zoë"]

[[uipath.user]]
name = "InvoiceBot"
kind = "robot"

[[uipath.user]]
name = "Reporting App"
kind = "application"

[[uipath.group]]
name = "Finance Team"
members = ["amy", "InvoiceBot", "Reporting App"]

[[uipath.group]]
name = "équipe"
members = ["zoë", "Bob"]
"#
    );
    Case {
        kind: SimKind::UiPath,
        seed,
        keys: UiPath::keys(),
        extra: "groups = [\"*\"]\n",
    }
}

fn all_four() -> [Case; 4] {
    [
        contensis("groups = [\"ENGINEERING\", \"platform\", \"café*\"]\n"),
        vinyldns(),
        crafter(),
        uipath(),
    ]
}

/// The folder `--out` writes to in a world.
fn out_dir(w: &World) -> PathBuf {
    w.export_dir()
}

/// The file an export of the world's target is written to.
fn out_file(w: &World) -> PathBuf {
    out_dir(w).join(format!("{}.toml", w.target_name()))
}

/// Runs `roster export --target <the world's target> --out <dir> [args]`; returns the file.
async fn export_to_dir(w: &World, args: &[&str]) -> String {
    let o = w.export(args).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::read_to_string(out_file(w)).unwrap()
}

/// Points the world's config at the exported folder as its only source, then plans: the plan
/// must have nothing to do.
async fn plan_from_export(w: &World, exported: &str) {
    let config = std::fs::read_to_string(w.config_path()).unwrap();
    assert!(config.contains("path = \"groups.toml\""), "{config}");
    let config = config.replace("path = \"groups.toml\"", "path = \"exported\"");
    std::fs::write(w.config_path(), config).unwrap();
    let o = w.roster(&["plan", "--detailed-exitcode"]).await;
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "export:\n{exported}\nplan:\n{out}\n{}",
        stderr(&o)
    );
    assert!(
        out.contains("No changes. Targets are in sync."),
        "export:\n{exported}\nplan:\n{out}"
    );
}

/// Export, then plan with the export as the only source: nothing to do.
async fn round_trip(case: &Case, args: &[&str]) -> String {
    let w = case.world().await;
    let exported = export_to_dir(&w, args).await;
    plan_from_export(&w, &exported).await;
    w.sim.shutdown().await;
    exported
}

#[tokio::test]
async fn round_trip_on_contensis_keeps_nesting_inside_and_outside_the_scope() {
    let case = contensis("groups = [\"ENGINEERING\", \"platform\", \"café*\"]\n");
    let text = round_trip(&case, &[]).await;
    for line in [
        "[[group]]\nname = \"Engineering\"\ndescription = 'Builds \"things\"'\n\
         members = [\"Bob\", \"amy\"]\nchildren = [\"Café Staff\", \"Platform\", \"sso-staff\"]\n\
         [group.contensis]\ncustom = { \"cost.centre\" = \"42\", team = \"eng\" }\n",
        "name = \"Café Staff\"\ndescription = \"Baristas and bakers\"\n\
         members = [\"chloé\", \"zoë\"]\n",
        "children = [\"System Administrators\", \"on-call\"]\n",
        "# Outside the managed scope: written because \"Platform\" names it as a child. roster\n\
         # leaves it alone while it stays outside the scope.\n\
         [[group]]\nname = \"on-call\"\nmembers = [\"Émile\"]\n",
        "# A system group of the target, written by name only because \"Platform\" names it as a\n\
         # child: roster never changes it, and its members are not written.\n\
         [[group]]\nname = \"System Administrators\"\n\n",
        "# An external group of the target, written by name only because \"Engineering\" names it as a\n",
    ] {
        assert!(text.contains(line), "missing:\n{line}\nin:\n{text}");
    }
    assert!(!text.contains("marketing"), "{text}");
}

#[tokio::test]
async fn round_trip_on_contensis_with_all_and_the_desired_groups_as_scope() {
    // No `groups` patterns: the scope is the desired groups, the exported ones once exported.
    let text = round_trip(&contensis(""), &["--all"]).await;
    assert!(
        text.contains("name = \"marketing\"\nmembers = [\"Bob\"]\n"),
        "{text}"
    );
    assert!(
        text.contains("name = \"on-call\"\nmembers = [\"Émile\"]\n"),
        "{text}"
    );
    assert!(!text.contains("Outside the managed scope"), "{text}");
}

#[tokio::test]
async fn without_patterns_the_desired_groups_are_the_scope_and_their_children_come_whole() {
    // The desired state names one group (with other members than the target's): the export
    // reads the scope from it, and writes the target's groups, children and all.
    let case = contensis("");
    let w = case.world().await;
    w.write_groups("[[group]]\nname = \"engineering\"\nmembers = [\"zoë\"]\n");
    let text = export_to_dir(&w, &[]).await;
    for name in ["Engineering", "Platform", "Café Staff", "on-call"] {
        assert!(
            text.contains(&format!("[[group]]\nname = \"{name}\"\n")),
            "{name}:\n{text}"
        );
    }
    assert!(text.contains("members = [\"Bob\", \"amy\"]\n"), "{text}");
    assert!(!text.contains("marketing"), "{text}");
    // With the export as the source, every group it writes is in the scope, and in sync.
    plan_from_export(&w, &text).await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn round_trip_on_vinyldns_keeps_emails_and_admins() {
    let text = round_trip(&vinyldns(), &[]).await;
    assert!(
        text.contains(
            "[[group]]\nname = \"Ops\"\ndescription = \"Opérations\"\nmembers = [\"Bob\", \"amy\"]\n\
             # Members the desired state cannot name; roster leaves them as they are:\n\
             #   roster's own account \"roster\"\n\
             [group.vinyldns]\nemail = \"ops@example.com\"\nadmins = [\"Bob\"]\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("name = \"réseau\"\nmembers = [\"chloé\", \"dmitri\"]\n"),
        "{text}"
    );
}

#[tokio::test]
async fn round_trip_on_crafter_leaves_out_its_own_and_external_groups() {
    let text = round_trip(&crafter(), &[]).await;
    assert!(
        text.contains(
            "# Not written: groups of the target that roster never changes.\n\
             #   external group \"ldap_editors\"\n#   system group \"site_admin\"\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "name = \"Editors\"\ndescription = \"Édition\"\nmembers = [\"Bob\", \"amy\"]\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("name = \"reviewers_été\"\nmembers = [\"zoë\"]\n"),
        "{text}"
    );
}

#[tokio::test]
async fn round_trip_on_uipath_lists_robots_and_applications_as_comments() {
    let text = round_trip(&uipath(), &[]).await;
    assert!(
        text.contains(
            "[[group]]\nname = \"Finance Team\"\nmembers = [\"amy\"]\n\
             # Members the desired state cannot name; roster leaves them as they are:\n\
             #   application \"Reporting App\"\n#   robot account \"InvoiceBot\"\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("name = \"équipe\"\nmembers = [\"Bob\", \"zoë\"]\n"),
        "{text}"
    );
}

#[tokio::test]
async fn uipath_members_known_only_by_id_are_comments_with_their_ids() {
    // A server that lists members only through `/Members` gives their ids and kinds, no names.
    let case = uipath();
    let w = case.world().await;
    w.sim.uipath.set_behaviour(roster::sim::uipath::Behaviour {
        members_inline: false,
        ..roster::sim::uipath::Behaviour::default()
    });
    let exported = export_to_dir(&w, &[]).await;
    let group = w.sim.uipath.group("Finance Team").unwrap();
    let robot = w.sim.uipath.add_user("InvoiceBot");
    assert!(group.member_ids.contains(&robot), "{group:?}");
    assert!(
        exported.contains(&format!("#   robot account \"{robot}\"\n")),
        "{exported}"
    );
    plan_from_export(&w, &exported).await;
    w.sim.shutdown().await;
}

#[tokio::test]
async fn an_export_is_the_same_bytes_on_every_run_and_on_standard_output() {
    for case in all_four() {
        let w = case.world().await;
        let first = export_to_dir(&w, &[]).await;
        let second = export_to_dir(&w, &[]).await;
        assert_eq!(first, second, "{:?}", case.kind);
        let o = w.roster(&["export", "--target", w.target_name()]).await;
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), first, "{:?}", case.kind);
        let o = w
            .roster(&["export", "--target", w.target_name(), "--all"])
            .await;
        let again = w
            .roster(&["export", "--target", w.target_name(), "--all"])
            .await;
        assert_eq!(o.stdout, again.stdout, "{:?}", case.kind);
        w.sim.shutdown().await;
    }
}

/// A path in the read of each target that only a group's own reads take (its members), so that
/// the group list is read and the read fails part-way.
fn members_path(w: &World) -> String {
    match w.kind {
        SimKind::Contensis => "/users".to_owned(),
        SimKind::UiPath => w.sim.uipath.group("Finance Team").unwrap().id,
        _ => "/members".to_owned(),
    }
}

#[tokio::test]
async fn a_read_that_fails_part_way_exits_1_and_writes_no_file() {
    for case in all_four() {
        let w = case.world().await;
        w.write_config(&format!("{}retries = 0\n", case.extra));
        let faults = Faults {
            error_rate: 1.0,
            fail_path: Some(members_path(&w)),
            ..Faults::default()
        };
        match w.kind {
            SimKind::Contensis => w.sim.contensis.set_faults(faults),
            SimKind::VinylDns => w.sim.vinyldns.set_faults(faults),
            SimKind::Crafter => w.sim.crafter.set_faults(faults),
            _ => w.sim.uipath.set_faults(faults),
        }
        // Nothing there yet: the folder is not even made.
        let o = w.export(&[]).await;
        assert_eq!(o.status.code(), Some(1), "{:?}: {}", case.kind, stderr(&o));
        assert!(
            stderr(&o).contains("nothing was exported"),
            "{:?}: {}",
            case.kind,
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("500"),
            "{:?}: {}",
            case.kind,
            stderr(&o)
        );
        assert!(!out_dir(&w).exists(), "{:?}", case.kind);
        assert!(stdout(&o).is_empty(), "{:?}: {}", case.kind, stdout(&o));

        // An earlier export stays as it was, and nothing else is left beside it.
        std::fs::create_dir_all(out_dir(&w)).unwrap();
        std::fs::write(out_file(&w), "# an earlier export\n").unwrap();
        let o = w.export(&[]).await;
        assert_eq!(o.status.code(), Some(1), "{:?}", case.kind);
        assert_eq!(
            std::fs::read_to_string(out_file(&w)).unwrap(),
            "# an earlier export\n"
        );
        assert_eq!(files_in(&out_dir(&w)).len(), 1, "{:?}", case.kind);
        w.sim.shutdown().await;
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test]
async fn an_unknown_target_is_an_error_naming_the_targets() {
    let w = vinyldns().world().await;
    let o = w.roster(&["export", "--target", "nope"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no target named \"nope\" in the config (targets: dns)"),
        "{}",
        stderr(&o)
    );
    w.sim.shutdown().await;
}

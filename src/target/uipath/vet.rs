//! Vetting a UiPath plan: the creates and renames the service would refuse (a blank name, a
//! name another group has), and any change to a built-in group.

use crate::model::{GroupKind, Observed};
use crate::plan::change::{Change, Plan};
use crate::plan::fold;
use crate::target::Rejection;

/// The rules of [`super::UiPathTarget`]'s `vet`, over what was read.
pub(super) fn rejections(observed: &Observed, plan: &Plan) -> Vec<Rejection> {
    // Every group the target has: (folded name, name, id when in scope).
    let existing: Vec<(String, &str, Option<&str>)> = observed
        .groups
        .values()
        .map(|g| {
            let name = g.group.name.as_str();
            (fold(name, true), name, Some(g.id.as_str()))
        })
        .chain(
            observed
                .others
                .iter()
                .map(|n| (fold(n.as_str(), true), n.as_str(), None)),
        )
        .collect();
    let mut out = Vec::new();
    for (i, c) in plan.changes.iter().enumerate() {
        let group = c.group();
        let have = observed.groups.get(group);
        if have.is_some_and(|g| g.kind == GroupKind::System) {
            out.extend(Rejection::of_change(
                plan,
                i,
                format!("\"{group}\" is a built-in UiPath group, which cannot be changed"),
            ));
            continue;
        }
        let (verb, name) = match c {
            Change::CreateGroup { group, .. } => ("create", Some(group.as_str())),
            Change::UpdateGroup { fields, .. } => {
                ("rename", fields.get("name").and_then(|f| f.to.as_str()))
            }
            _ => continue,
        };
        let Some(name) = name else { continue };
        if name.trim().is_empty() {
            out.extend(Rejection::of_change(
                plan,
                i,
                "UiPath requires a group name; it cannot be blank".to_owned(),
            ));
            continue;
        }
        let own = have.map(|g| g.id.as_str());
        let key = fold(name, true);
        if let Some((_, other, id)) = existing
            .iter()
            .find(|(k, _, id)| *k == key && (id.is_none() || *id != own))
        {
            let outside = if id.is_none() {
                " (outside roster's scope)"
            } else {
                ""
            };
            out.extend(Rejection::of_change(
                plan,
                i,
                format!(
                    "UiPath already has a group named \"{other}\"{outside}, and group names are \
                     unique regardless of case: the {verb} would be refused; rename or remove \
                     one of them"
                ),
            ));
        }
    }
    out
}

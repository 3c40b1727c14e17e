//! Vetting a Contensis plan: the group bodies the server would refuse, and the child additions
//! that would close a cycle of nested groups (which the server refuses too).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::{ContensisTarget, GroupRef, api};
use crate::model::{GroupName, Observed};
use crate::plan::change::{Change, Plan};
use crate::plan::fold;
use crate::target::{ObserveError, Rejection};

/// The creates and updates of `plan` whose body Contensis would refuse (see
/// [`field_problem`]).
pub(super) fn field_rejections(plan: &Plan) -> Vec<Rejection> {
    plan.changes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let problem = match c {
                Change::CreateGroup {
                    group, attributes, ..
                } => field_problem("name", &Value::from(group.as_str())).or_else(|| {
                    attributes
                        .get("custom")
                        .and_then(|v| field_problem("custom", v))
                }),
                Change::UpdateGroup { fields, .. } => {
                    fields.iter().find_map(|(k, f)| field_problem(k, &f.to))
                }
                _ => None,
            }?;
            Rejection::of_change(plan, i, problem)
        })
        .collect()
}

/// Why Contensis would refuse `value` as the group body's field `field`, if it would: a
/// blank name, a description other than a string or null, `custom` other than an object of
/// strings (the API documents custom data as string properties).
fn field_problem(field: &str, value: &Value) -> Option<String> {
    match (field, value) {
        ("name", Value::String(s)) if !s.trim().is_empty() => None,
        ("name", _) => Some("Contensis requires a group name that is not blank".into()),
        ("description", Value::String(_) | Value::Null) => None,
        ("description", _) => Some("Contensis takes a description only as a string".into()),
        ("custom", Value::Null) => None,
        ("custom", Value::Object(m)) => m.iter().find(|(_, v)| !v.is_string()).map(|(k, v)| {
            format!("Contensis takes custom values only as strings, and custom.{k} is {v}")
        }),
        ("custom", _) => Some("Contensis takes custom data only as an object of strings".into()),
        _ => None,
    }
}

impl ContensisTarget {
    /// The planned child additions that would close a cycle (see [`crate::target::Target::vet`]).
    pub(super) async fn cycles(
        &self,
        observed: &Observed,
        plan: &Plan,
    ) -> Result<Vec<Rejection>, ObserveError> {
        let key = |n: &GroupName| fold(n.as_str(), true);
        let adds: Vec<(usize, &GroupName, &GroupName)> = plan
            .changes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Change::AddChild { group, child } => Some((i, group, child)),
                _ => None,
            })
            .collect();
        if adds.is_empty() {
            return Ok(Vec::new());
        }
        let mut links: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (name, g) in &observed.groups {
            links
                .entry(key(name))
                .or_default()
                .extend(g.group.children.iter().map(key));
        }
        for (_, group, child) in &adds {
            links.entry(key(group)).or_default().insert(key(child));
        }
        let others: HashMap<String, &GroupName> =
            observed.others.iter().map(|n| (key(n), n)).collect();
        let outside: BTreeSet<&GroupName> = links
            .values()
            .flatten()
            .filter_map(|k| others.get(k).copied())
            .collect();
        for name in outside {
            let slot = self.group_slot(&GroupRef::Name(name.clone()));
            let below = self
                .get_all_with(
                    &api::group_children(&slot),
                    &[("includeInherited", "true".to_owned())],
                    Some(name),
                )
                .await?;
            let below = below
                .iter()
                .filter_map(|g| g.get("name").and_then(Value::as_str))
                .map(str::to_lowercase);
            links.entry(key(name)).or_default().extend(below);
        }
        let reaches = |from: &str, to: &str| {
            let mut seen = HashSet::new();
            let mut stack = vec![from.to_owned()];
            while let Some(k) = stack.pop() {
                if k == to {
                    return true;
                }
                if seen.insert(k.clone())
                    && let Some(next) = links.get(&k)
                {
                    stack.extend(next.iter().cloned());
                }
            }
            false
        };
        Ok(adds
            .into_iter()
            .filter(|(_, group, child)| reaches(&key(child), &key(group)))
            .filter_map(|(i, group, child)| {
                Rejection::of_change(
                    plan,
                    i,
                    format!(
                        "\"{child}\" already contains \"{group}\" (directly or through its child \
                         groups), so adding it as a child would make a cycle, which Contensis \
                         refuses; remove \"{group}\" from \"{child}\" first"
                    ),
                )
            })
            .collect())
    }
}

//! Flattening nested groups for targets that cannot nest: a group's members become its own
//! members plus those of every group below it.
//!
//! Cycles never reach the planner from a config's sources: loading the desired state rejects them,
//! whatever the source. [`crate::plan::plan`] is public, though, and a caller may build a
//! [`Desired`] by hand; for such a caller a cycle is reported as a warning and never followed
//! twice.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Desired, GroupName, UserKey};
use crate::plan::change::{Warning, WarningKind};

/// Returns the desired state with every group's children folded into its members (and no
/// children), and a warning for each cycle met on the way.
pub fn flatten(desired: &Desired) -> (Desired, Vec<Warning>) {
    let mut memo: BTreeMap<GroupName, BTreeSet<UserKey>> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut out = desired.clone();
    for (name, g) in &mut out.groups {
        let mut path = Vec::new();
        g.members = members_below(desired, name, &mut memo, &mut path, &mut warnings);
        g.children.clear();
    }
    warnings.sort();
    warnings.dedup();
    (out, warnings)
}

fn members_below(
    desired: &Desired,
    name: &GroupName,
    memo: &mut BTreeMap<GroupName, BTreeSet<UserKey>>,
    path: &mut Vec<GroupName>,
    warnings: &mut Vec<Warning>,
) -> BTreeSet<UserKey> {
    if let Some(done) = memo.get(name) {
        return done.clone();
    }
    let Some(group) = desired.groups.get(name) else {
        return BTreeSet::new();
    };
    if let Some(at) = path.iter().position(|p| p == name) {
        let cycle: Vec<&str> = path[at..]
            .iter()
            .chain(std::iter::once(name))
            .map(GroupName::as_str)
            .collect();
        warnings.push(Warning {
            kind: WarningKind::DroppedCycle,
            group: name.clone(),
            message: format!("cycle of child groups {}; not followed", cycle.join(" → ")),
        });
        return BTreeSet::new();
    }
    let cycles_before = warnings.len();
    path.push(name.clone());
    let mut all = group.members.clone();
    for child in &group.children {
        all.extend(members_below(desired, child, memo, path, warnings));
    }
    path.pop();
    // A result that met a cycle may be partial for this starting point, so it is not reused.
    if warnings.len() == cycles_before {
        memo.insert(name.clone(), all.clone());
    }
    all
}

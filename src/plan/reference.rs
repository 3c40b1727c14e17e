//! The planner as it was before it was made to scale (issue 14, as of commit 81b5b5a), kept as the
//! reference the differential property test (`proptests::plan_is_the_reference_plan`) compares
//! [`super::plan`] with: the same inputs must give the same plan, change for change and warning
//! for warning.
//!
//! Only what the scaling rewrote is kept here (pairing names, the set differences, the order of
//! changes, pruning); the steps it left alone (`as_target_holds`, `skipped`, the description and
//! attribute changes) and [`super::Scope`] are the planner's own, shared, and tested on their own
//! in `tests.rs`: the property test does not vouch for them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{
    Change, FieldChange, InScope, MembershipMode, Plan, Policy, Summary, Warning, WarningKind,
    as_target_holds, attribute_changes, description_change, fold, skipped,
};
use crate::model::{Capabilities, Desired, GroupKind, GroupName, Observed, ObservedGroup};

/// Computes the changes that make `observed` match `desired` within the policy's scope.
///
/// `target_type` selects which of a group's `extras` apply (`"contensis"`, ...). The result is
/// ordered group by group (by name); within a group: create or update, members added, members
/// removed, children added, children removed, delete. Groups the target owns (system, external)
/// and desired members the target does not know are left alone and reported as warnings.
///
/// The plan is made in steps, each a function below, in this order: the desired state as the
/// target can hold it (`as_target_holds`); the names of both sides as the target compares them
/// (`Planner::new`); the desired groups this plan may change (`Planner::scope`); each one's
/// changes (`Planner::diff`: the group itself, its members, its children); the groups to delete
/// (`Planner::prune`); and the plan, in order (`Planner::finish`).
pub fn plan(
    target: &str,
    target_type: &str,
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
    caps: Capabilities,
) -> Plan {
    let (desired, warnings) = as_target_holds(desired, caps);
    let mut planner = Planner::new(target_type, &desired, observed, policy, caps, warnings);
    for group in planner.scope() {
        planner.diff(group);
    }
    planner.prune();
    planner.finish(target)
}

/// One plan in the making: its inputs, their names folded as the target compares them, and the
/// changes and warnings found so far.
struct Planner<'a> {
    /// Which of a group's `extras` apply.
    target_type: &'a str,
    /// The desired state, as the target can hold it.
    desired: &'a Desired,
    /// What the target holds.
    observed: &'a Observed,
    /// The target's scope, membership mode and pruning.
    policy: &'a Policy,
    /// What the target can express.
    caps: Capabilities,
    /// Whether the target ignores case in names.
    ci: bool,
    /// Whether membership is additive: nothing is ever removed.
    additive: bool,
    /// The target's groups in scope, by folded name.
    by_key: HashMap<String, &'a ObservedGroup>,
    /// The folded names of the target's groups out of scope.
    others: HashSet<String>,
    /// The folded desired user keys the target does not know.
    unknown: HashSet<String>,
    /// The folded names of the desired groups.
    desired_keys: HashSet<String>,
    /// Each group's changes, keyed by the name shown in the plan, so the output is sorted by
    /// group.
    per_group: BTreeMap<GroupName, Vec<Change>>,
    /// The warnings so far, in no particular order.
    warnings: Vec<Warning>,
}

impl<'a> Planner<'a> {
    /// Step 2: indexes both sides by name as the target compares names (folded where it ignores
    /// case), starting from the warnings of step 1.
    fn new(
        target_type: &'a str,
        desired: &'a Desired,
        observed: &'a Observed,
        policy: &'a Policy,
        caps: Capabilities,
        warnings: Vec<Warning>,
    ) -> Self {
        let ci = caps.case_insensitive_names;
        Self {
            target_type,
            desired,
            observed,
            policy,
            caps,
            ci,
            additive: policy.membership == MembershipMode::Additive,
            by_key: observed
                .groups
                .values()
                .map(|o| (fold(o.group.name.as_str(), ci), o))
                .collect(),
            others: observed
                .others
                .iter()
                .map(|n| fold(n.as_str(), ci))
                .collect(),
            unknown: observed
                .unknown_users
                .iter()
                .map(|u| fold(u.as_str(), ci))
                .collect(),
            desired_keys: desired
                .groups
                .keys()
                .map(|n| fold(n.as_str(), ci))
                .collect(),
            per_group: BTreeMap::new(),
            warnings,
        }
    }

    /// Step 3: the desired groups this plan may change, in name order, each with the target's
    /// group of the same name. Left alone, with a warning: a group whose name differs only in case
    /// from an earlier one where the target ignores case, a group outside the scope, and a group
    /// the target owns (system, external).
    fn scope(&mut self) -> Vec<InScope<'a>> {
        let desired = self.desired;
        let mut seen: HashMap<String, &GroupName> = HashMap::new();
        let mut planned = Vec::new();
        for (name, want) in &desired.groups {
            if let Some(first) = seen.insert(fold(name.as_str(), self.ci), name) {
                self.warnings.push(Warning {
                    kind: WarningKind::NameClash,
                    group: name.clone(),
                    message: format!(
                        "\"{name}\" and \"{first}\" differ only in case, which this target does not tell apart; \"{name}\" is left alone"
                    ),
                });
                seen.insert(fold(name.as_str(), self.ci), first);
                continue;
            }
            if !self.policy.scope.contains(name) {
                self.warnings.push(Warning {
                    kind: WarningKind::OutOfScope,
                    group: name.clone(),
                    message: format!(
                        "\"{name}\" is outside this target's managed groups; left alone"
                    ),
                });
                continue;
            }
            let have = self.by_key.get(&fold(name.as_str(), self.ci)).copied();
            if let Some(have) = have
                && have.kind != GroupKind::Managed
            {
                self.warnings.push(skipped(have));
                continue;
            }
            planned.push(InScope { name, want, have });
        }
        planned
    }

    /// Step 4: one desired group's changes, in the order they apply: the group itself, then its
    /// members, then its children. They are filed under the target's spelling of the name when
    /// the target has the group.
    fn diff(&mut self, g: InScope<'a>) {
        let shown = g.have.map_or(g.name, |h| &h.group.name).clone();
        let mut out: Vec<Change> = self.group_change(&g, &shown).into_iter().collect();
        out.extend(self.member_changes(&g, &shown));
        // Children only where the target nests; otherwise step 1 flattened them into members.
        if self.caps.nested_groups {
            out.extend(self.child_changes(&g, &shown));
        }
        if !out.is_empty() {
            self.per_group.entry(shown).or_default().extend(out);
        }
    }

    /// Step 4a: the group itself: created when the target lacks it; otherwise its name,
    /// description and attributes brought in line, as one update (or none when they agree).
    fn group_change(&mut self, g: &InScope<'a>, shown: &GroupName) -> Option<Change> {
        let want_attrs = g.want.extras.get(self.target_type);
        let Some(have) = g.have else {
            return Some(Change::CreateGroup {
                group: g.name.clone(),
                description: g.want.description.clone(),
                attributes: want_attrs.cloned().unwrap_or_default(),
            });
        };
        let mut fields = BTreeMap::new();
        self.rename(g.name, have, &mut fields);
        description_change(g.want, have, &mut fields);
        attribute_changes(
            want_attrs,
            have.group.extras.get(self.target_type),
            &mut fields,
        );
        (!fields.is_empty()).then(|| Change::UpdateGroup {
            group: shown.clone(),
            fields,
        })
    }

    /// A name the target spells differently (in case only, since names are matched as the target
    /// compares them): renamed where the target can rename, else left with a warning.
    fn rename(
        &mut self,
        name: &GroupName,
        have: &ObservedGroup,
        fields: &mut BTreeMap<String, FieldChange>,
    ) {
        if have.group.name == *name {
            return;
        }
        if !self.caps.renames {
            self.warnings.push(Warning {
                kind: WarningKind::CannotRename,
                group: have.group.name.clone(),
                message: format!(
                    "\"{}\" is spelled \"{name}\" in the desired state; this target cannot rename groups, so its name is left as it is",
                    have.group.name
                ),
            });
            return;
        }
        fields.insert(
            "name".to_owned(),
            FieldChange {
                from: have.group.name.as_str().into(),
                to: name.as_str().into(),
            },
        );
    }

    /// Step 4b: the members to add, except users the target does not know (warned about), and,
    /// unless membership is additive, the members to remove.
    fn member_changes(&mut self, g: &InScope<'a>, shown: &GroupName) -> Vec<Change> {
        let mut out = Vec::new();
        let (add, remove) = set_diff(g.have.map(|h| &h.group.members), &g.want.members, self.ci);
        for m in add {
            if self.unknown.contains(&fold(m.as_str(), self.ci)) {
                self.warnings.push(Warning {
                    kind: WarningKind::UnknownUser,
                    group: g.name.clone(),
                    message: format!(
                        "user \"{m}\" does not exist on the target; not added to \"{}\"",
                        g.name
                    ),
                });
                continue;
            }
            out.push(Change::AddMember {
                group: shown.clone(),
                member: m.clone(),
            });
        }
        if !self.additive {
            out.extend(remove.into_iter().map(|m| Change::RemoveMember {
                group: shown.clone(),
                member: m.clone(),
            }));
        }
        out
    }

    /// Step 4c: the children to add, except those that will not exist on the target (warned
    /// about), and, unless membership is additive, the children to remove.
    fn child_changes(&mut self, g: &InScope<'a>, shown: &GroupName) -> Vec<Change> {
        let mut out = Vec::new();
        let (add, remove) = set_diff(g.have.map(|h| &h.group.children), &g.want.children, self.ci);
        for c in add {
            if !self.will_exist(c) {
                self.warnings.push(Warning {
                    kind: WarningKind::UnknownChild,
                    group: g.name.clone(),
                    message: format!(
                        "child \"{c}\" of \"{}\" is outside the managed groups and absent from the target; not added",
                        g.name
                    ),
                });
                continue;
            }
            out.push(Change::AddChild {
                group: shown.clone(),
                child: c.clone(),
            });
        }
        if !self.additive {
            out.extend(remove.into_iter().map(|c| Change::RemoveChild {
                group: shown.clone(),
                child: c.clone(),
            }));
        }
        out
    }

    /// Whether a group will be on the target once the plan is applied, so that it can be made a
    /// child: a desired group in scope (created if need be), or a group the target has.
    fn will_exist(&self, name: &GroupName) -> bool {
        let k = fold(name.as_str(), self.ci);
        (self.desired_keys.contains(&k) && self.policy.scope.contains(name))
            || self.by_key.contains_key(&k)
            || self.others.contains(&k)
    }

    /// Step 5: the target's groups in scope that the desired state no longer names. With `prune`
    /// they are deleted, except in additive mode, which never removes (and deleting a group
    /// removes all its members); the target's own groups are warned about and left alone.
    fn prune(&mut self) {
        for have in self.observed.groups.values() {
            let k = fold(have.group.name.as_str(), self.ci);
            if self.desired_keys.contains(&k) || !self.policy.scope.contains(&have.group.name) {
                continue;
            }
            if have.kind != GroupKind::Managed {
                self.warnings.push(skipped(have));
                continue;
            }
            if self.policy.prune && !self.additive {
                self.per_group
                    .entry(have.group.name.clone())
                    .or_default()
                    .push(Change::DeleteGroup {
                        group: have.group.name.clone(),
                    });
            }
        }
    }

    /// Step 6: the plan: the changes group by group in name order, and the warnings sorted, each
    /// once.
    fn finish(self, target: &str) -> Plan {
        let changes: Vec<Change> = self.per_group.into_values().flatten().collect();
        let mut warnings = self.warnings;
        warnings.sort();
        warnings.dedup();
        Plan {
            target: target.to_owned(),
            refusal: None,
            summary: Summary::of(&changes),
            changes,
            warnings,
            errors: Vec::new(),
        }
    }
}

/// What to add to and remove from `have` to make it `want`, comparing names as the target does.
/// Both lists come out sorted: additions in `want`'s order, removals in `have`'s.
fn set_diff<'a, T: AsRef<str> + Ord>(
    have: Option<&'a BTreeSet<T>>,
    want: &'a BTreeSet<T>,
    ci: bool,
) -> (Vec<&'a T>, Vec<&'a T>) {
    let Some(have) = have else {
        return (want.iter().collect(), Vec::new());
    };
    let have_keys: HashSet<String> = have.iter().map(|x| fold(x.as_ref(), ci)).collect();
    let want_keys: HashSet<String> = want.iter().map(|x| fold(x.as_ref(), ci)).collect();
    let add = want
        .iter()
        .filter(|x| !have_keys.contains(&fold(x.as_ref(), ci)))
        .collect();
    let remove = have
        .iter()
        .filter(|x| !want_keys.contains(&fold(x.as_ref(), ci)))
        .collect();
    (add, remove)
}

//! Planning: a pure comparison of the desired state with what a target holds.
//!
//! [`plan`] takes values and returns a [`Plan`]; it does no I/O, reads no clock and draws no random
//! numbers, so the same inputs always give the same plan in the same order. [`guard`] (`guard.rs`)
//! applies the safety rules that can refuse a plan before anything is written.

pub mod change;
pub mod closure;
pub mod fingerprint;
pub mod guard;
pub mod render;
pub mod saved;
mod sets;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::Value;

use crate::model::{
    Attributes, Capabilities, Desired, Group, GroupKind, GroupName, Observed, ObservedGroup,
    UserKey,
};

pub use change::{Change, FieldChange, Plan, PlanError, Summary, Warning, WarningKind};
pub use guard::{Refusal, SHRINK_MIN_MEMBERS, Share, Shrink, guard};
pub use sets::folded;
use sets::{is_folded, set_diff};

/// Whether roster removes what the desired state does not name (the `membership` key of a
/// `[[target]]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipMode {
    /// Members and children not in the desired state are removed.
    #[default]
    Authoritative,
    /// roster only adds; it never removes a member or a child.
    Additive,
}

/// The groups roster manages on one target: glob patterns over group names, or by default exactly
/// the desired groups. A group outside the scope is never changed.
#[derive(Clone, Debug)]
pub struct Scope {
    globs: Option<GlobSet>,
    /// Whether a pattern is `*`, which matches every name: the glob set need not be asked.
    everything: bool,
    names: BTreeSet<String>,
    /// Names added to the patterns or the desired groups (see [`Scope::including`]), folded.
    extra: BTreeSet<String>,
    case_insensitive: bool,
}

impl Scope {
    /// A scope of the given glob patterns, or, when `patterns` is `None`, of the desired groups.
    pub fn new(
        patterns: Option<&[String]>,
        desired: &Desired,
        case_insensitive: bool,
    ) -> Result<Self, globset::Error> {
        let globs = match patterns {
            None => None,
            Some(patterns) => {
                let mut b = GlobSetBuilder::new();
                for p in patterns {
                    b.add(
                        GlobBuilder::new(p)
                            .case_insensitive(case_insensitive)
                            .literal_separator(false)
                            .build()?,
                    );
                }
                Some(b.build()?)
            }
        };
        let names = desired
            .groups
            .keys()
            .map(|n| fold(n.as_str(), case_insensitive))
            .collect();
        // `*` is `.*` with no literal separator and `.` matching any byte, as globset compiles
        // it; a planner asks for every group, and the glob set costs as much as the rest of
        // planning a small group (issue 14).
        let everything = patterns.is_some_and(|p| p.iter().any(|p| p == "*"));
        Ok(Self {
            globs,
            everything,
            names,
            extra: BTreeSet::new(),
            case_insensitive,
        })
    }

    /// A scope that contains no group.
    pub fn empty() -> Self {
        Self {
            globs: None,
            everything: false,
            names: BTreeSet::new(),
            extra: BTreeSet::new(),
            case_insensitive: false,
        }
    }

    /// This scope and the groups named `names` besides (compared as the scope compares names).
    /// An export widens its read this way to take in the groups its groups name as children.
    pub fn including<'n>(mut self, names: impl IntoIterator<Item = &'n GroupName>) -> Self {
        let ci = self.case_insensitive;
        self.extra
            .extend(names.into_iter().map(|n| fold(n.as_str(), ci)));
        self
    }

    /// Whether roster manages the group of this name.
    pub fn contains(&self, name: &GroupName) -> bool {
        self.contains_str(name.as_str())
    }

    /// [`Self::contains`] for a name as a wire type holds it (no [`GroupName`] made to ask).
    pub fn contains_str(&self, name: &str) -> bool {
        if !self.extra.is_empty() && self.extra.contains(&*folded(name, self.case_insensitive)) {
            return true;
        }
        match &self.globs {
            Some(_) if self.everything => true,
            Some(g) => g.is_match(name),
            None => self.names.contains(&*folded(name, self.case_insensitive)),
        }
    }
}

/// A name as compared on a target: lowercased where the target ignores case (the one rule, in
/// [`sets::folded`], owned).
pub fn fold(name: &str, case_insensitive: bool) -> String {
    sets::folded(name, case_insensitive).into_owned()
}

/// The rules one target is reconciled under, from its `[[target]]` table.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The managed groups.
    pub scope: Scope,
    /// Authoritative or additive membership.
    pub membership: MembershipMode,
    /// Whether managed groups absent from the desired state are deleted.
    pub prune: bool,
    /// Removals above this refuse the plan.
    pub max_deletes: usize,
    /// A plan that takes a group of [`SHRINK_MIN_MEMBERS`] or more below `(1 − share)` of its
    /// members is refused (see [`guard`]).
    pub max_group_shrink: Share,
    /// Whether an empty desired state may be applied to a target with managed groups.
    pub allow_empty_source: bool,
}

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

/// Step 1: the desired state as the target can hold it. Where the target cannot nest groups, each
/// group's children are folded into its members (with a warning for each cycle met on the way).
fn as_target_holds(desired: &Desired, caps: Capabilities) -> (Cow<'_, Desired>, Vec<Warning>) {
    if caps.nested_groups {
        (Cow::Borrowed(desired), Vec::new())
    } else {
        let (flattened, warnings) = closure::flatten(desired);
        (Cow::Owned(flattened), warnings)
    }
}

/// One desired group this plan may change, with the target's group of the same name, if any.
struct InScope<'a> {
    /// The group's name in the desired state.
    name: &'a GroupName,
    /// The group as the desired state wants it.
    want: &'a Group,
    /// The target's group of the same name (as the target compares names), if it has one.
    have: Option<&'a ObservedGroup>,
}

/// How the planner finds, for a name on one side, the name the target takes for the same on the
/// other.
enum Index<'a> {
    /// Every name compares as itself (the target tells case apart, or folding changes no desired
    /// and no observed group name) and every observed group is filed under its own name: a
    /// group's counterpart has the same name, found by walking both sides in name order, with no
    /// index to build (issue 14).
    Aligned {
        /// The target's groups that no desired group names, in name order: step 5's candidates.
        unmatched: Vec<&'a ObservedGroup>,
    },
    /// Otherwise, the names folded into hash maps.
    Folded {
        /// The target's groups in scope, by folded name; of two that fold alike, the later one.
        by_key: HashMap<Cow<'a, str>, &'a ObservedGroup>,
        /// The folded names of the desired groups, each with the first desired name (in name
        /// order) that folds to it: the one planned where several differ only in case.
        desired_keys: HashMap<Cow<'a, str>, &'a GroupName>,
    },
}

/// What step 2 finds for a desired group on the target.
enum Counterpart<'a> {
    /// An earlier desired group differs from this one only in case, and the target ignores case.
    Clash(&'a GroupName),
    /// The target's group of the same name, if any.
    Have(Option<&'a ObservedGroup>),
}

/// One plan in the making: its inputs, their names folded as the target compares them, and the
/// changes and warnings found so far.
///
/// A plan of a million memberships must cost about what walking the sorted member sets costs
/// (issue 14): where names compare as themselves both sides are walked in name order with no
/// index to build (see [`Index`]), sets are merged (see `sets::set_diff`), a name is copied to be
/// folded only where folding changes it, and changes go straight into one list, sorted at the end
/// only when they were not made in order.
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
    /// How names are matched across the two sides.
    index: Index<'a>,
    /// Each desired group's counterpart on the target, in desired name order; taken by step 3.
    counterparts: Vec<Counterpart<'a>>,
    /// The folded names of the target's groups out of scope.
    others: HashSet<Cow<'a, str>>,
    /// The folded desired user keys the target does not know.
    unknown: HashSet<Cow<'a, str>>,
    /// The changes so far, group by group. Groups are planned in desired name order, so they
    /// stay in group order unless the target spells a name in another case or a group is deleted.
    changes: Vec<Change>,
    /// Reused for each group's set differences: members to add and to remove.
    members: (Vec<&'a UserKey>, Vec<&'a UserKey>),
    /// Reused for each group's set differences: children to add and to remove.
    children: (Vec<&'a GroupName>, Vec<&'a GroupName>),
    /// The warnings so far, in no particular order.
    warnings: Vec<Warning>,
}

impl<'a> Planner<'a> {
    /// Step 2: pairs each desired group with the target's group of the same name, as the target
    /// compares names (folded where it ignores case; see [`Index`]), and folds the names of the
    /// target's other groups and unknown users, starting from the warnings of step 1.
    fn new(
        target_type: &'a str,
        desired: &'a Desired,
        observed: &'a Observed,
        policy: &'a Policy,
        caps: Capabilities,
        warnings: Vec<Warning>,
    ) -> Self {
        let ci = caps.case_insensitive_names;
        let (index, counterparts) = Index::new(desired, observed, ci);
        Self {
            target_type,
            desired,
            observed,
            policy,
            caps,
            ci,
            additive: policy.membership == MembershipMode::Additive,
            index,
            counterparts,
            others: observed
                .others
                .iter()
                .map(|n| folded(n.as_str(), ci))
                .collect(),
            unknown: observed
                .unknown_users
                .iter()
                .map(|u| folded(u.as_str(), ci))
                .collect(),
            changes: Vec::new(),
            members: (Vec::new(), Vec::new()),
            children: (Vec::new(), Vec::new()),
            warnings,
        }
    }

    /// Step 3: the desired groups this plan may change, in name order, each with the target's
    /// group of the same name. Left alone, with a warning: a group whose name differs only in case
    /// from an earlier one where the target ignores case, a group outside the scope, and a group
    /// the target owns (system, external).
    fn scope(&mut self) -> Vec<InScope<'a>> {
        let desired = self.desired;
        let mut planned = Vec::with_capacity(desired.groups.len());
        let counterparts = std::mem::take(&mut self.counterparts);
        for ((name, want), counterpart) in desired.groups.iter().zip(counterparts) {
            let have = match counterpart {
                Counterpart::Have(have) => have,
                Counterpart::Clash(first) => {
                    self.warnings.push(Warning {
                        kind: WarningKind::NameClash,
                        group: name.clone(),
                        message: format!(
                            "\"{name}\" and \"{first}\" differ only in case, which this target does not tell apart; \"{name}\" is left alone"
                        ),
                    });
                    continue;
                }
            };
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
        let shown: &'a GroupName = g.have.map_or(g.name, |h| &h.group.name);
        if let Some(change) = self.group_change(&g, shown) {
            self.changes.push(change);
        }
        self.member_changes(&g, shown);
        // Children only where the target nests; otherwise step 1 flattened them into members.
        if self.caps.nested_groups {
            self.child_changes(&g, shown);
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
    fn member_changes(&mut self, g: &InScope<'a>, shown: &GroupName) {
        // Taken out for the loop, which pushes onto `self`, and put back to be reused.
        let (mut add, mut remove) = std::mem::take(&mut self.members);
        set_diff(
            g.have.map(|h| &h.group.members),
            &g.want.members,
            self.ci,
            &mut add,
            &mut remove,
        );
        for &m in &add {
            if !self.unknown.is_empty() && self.unknown.contains(&*folded(m.as_str(), self.ci)) {
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
            self.changes.push(Change::AddMember {
                group: shown.clone(),
                member: m.clone(),
            });
        }
        if !self.additive {
            self.changes
                .extend(remove.iter().map(|&m| Change::RemoveMember {
                    group: shown.clone(),
                    member: m.clone(),
                }));
        }
        self.members = (add, remove);
    }

    /// Step 4c: the children to add, except those that will not exist on the target (warned
    /// about), and, unless membership is additive, the children to remove.
    fn child_changes(&mut self, g: &InScope<'a>, shown: &GroupName) {
        let (mut add, mut remove) = std::mem::take(&mut self.children);
        set_diff(
            g.have.map(|h| &h.group.children),
            &g.want.children,
            self.ci,
            &mut add,
            &mut remove,
        );
        for &c in &add {
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
            self.changes.push(Change::AddChild {
                group: shown.clone(),
                child: c.clone(),
            });
        }
        if !self.additive {
            self.changes
                .extend(remove.iter().map(|&c| Change::RemoveChild {
                    group: shown.clone(),
                    child: c.clone(),
                }));
        }
        self.children = (add, remove);
    }

    /// Whether a group will be on the target once the plan is applied, so that it can be made a
    /// child: a desired group in scope (created if need be), or a group the target has.
    fn will_exist(&self, name: &GroupName) -> bool {
        let k = folded(name.as_str(), self.ci);
        let (desired, observed) = match &self.index {
            Index::Aligned { .. } => {
                let k = GroupName::from(&*k);
                (
                    self.desired.groups.contains_key(&k),
                    self.observed.groups.contains_key(&k),
                )
            }
            Index::Folded {
                by_key,
                desired_keys,
            } => (desired_keys.contains_key(&*k), by_key.contains_key(&*k)),
        };
        (desired && self.policy.scope.contains(name)) || observed || self.others.contains(&*k)
    }

    /// Step 5: the target's groups in scope that the desired state no longer names. With `prune`
    /// they are deleted, except in additive mode, which never removes (and deleting a group
    /// removes all its members); the target's own groups are warned about and left alone.
    fn prune(&mut self) {
        let observed = self.observed;
        let ci = self.ci;
        let unwanted = match &mut self.index {
            Index::Aligned { unmatched } => std::mem::take(unmatched),
            Index::Folded { desired_keys, .. } => observed
                .groups
                .values()
                .filter(|o| !desired_keys.contains_key(&*folded(o.group.name.as_str(), ci)))
                .collect(),
        };
        for have in unwanted {
            if !self.policy.scope.contains(&have.group.name) {
                continue;
            }
            if have.kind != GroupKind::Managed {
                self.warnings.push(skipped(have));
                continue;
            }
            if self.policy.prune && !self.additive {
                self.changes.push(Change::DeleteGroup {
                    group: have.group.name.clone(),
                });
            }
        }
    }

    /// Step 6: the plan: the changes group by group in name order, and the warnings sorted, each
    /// once.
    fn finish(self, target: &str) -> Plan {
        let mut changes = self.changes;
        if !changes.is_sorted_by(|a, b| a.group() <= b.group()) {
            // Stable, so that each group's changes keep their order, and the changes of two
            // entries under one name (a degenerate observed state) follow each other as planned.
            changes.sort_by(|a, b| a.group().cmp(b.group()));
        }
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

impl<'a> Index<'a> {
    /// The aligned index where it holds, else the folded one; with each desired group's
    /// counterpart, in desired name order.
    fn new(desired: &'a Desired, observed: &'a Observed, ci: bool) -> (Self, Vec<Counterpart<'a>>) {
        Self::aligned(desired, observed, ci).unwrap_or_else(|| Self::folded(desired, observed, ci))
    }

    /// Walks both sides in name order, pairing equal names; `None` at the first name that
    /// folding changes where the target ignores case, or the first observed group filed under
    /// another name than its own, for then equal names need not be the target's pairs.
    fn aligned(
        desired: &'a Desired,
        observed: &'a Observed,
        ci: bool,
    ) -> Option<(Self, Vec<Counterpart<'a>>)> {
        let as_is = |name: &GroupName| !ci || is_folded(name.as_str());
        let mut entries = observed.groups.iter();
        // Each observed entry is checked once, as it comes up.
        let mut checked = || match entries.next() {
            Some((key, o)) if *key != o.group.name || !as_is(key) => Err(()),
            next => Ok(next),
        };
        let mut counterparts = Vec::with_capacity(desired.groups.len());
        let mut unmatched = Vec::new();
        let mut next = checked().ok()?;
        for name in desired.groups.keys() {
            if !as_is(name) {
                return None;
            }
            let mut have = None;
            while let Some((key, o)) = next {
                match key.cmp(name) {
                    Ordering::Less => unmatched.push(o),
                    Ordering::Equal => have = Some(o),
                    Ordering::Greater => break,
                }
                next = checked().ok()?;
                if have.is_some() {
                    break;
                }
            }
            counterparts.push(Counterpart::Have(have));
        }
        while let Some((_, o)) = next {
            unmatched.push(o);
            next = checked().ok()?;
        }
        Some((Index::Aligned { unmatched }, counterparts))
    }

    /// Folds the names of both sides into hash maps.
    fn folded(
        desired: &'a Desired,
        observed: &'a Observed,
        ci: bool,
    ) -> (Self, Vec<Counterpart<'a>>) {
        let mut desired_keys = HashMap::with_capacity(desired.groups.len());
        for name in desired.groups.keys() {
            desired_keys
                .entry(folded(name.as_str(), ci))
                .or_insert(name);
        }
        let by_key: HashMap<Cow<'a, str>, &'a ObservedGroup> = observed
            .groups
            .values()
            .map(|o| (folded(o.group.name.as_str(), ci), o))
            .collect();
        let counterparts = desired
            .groups
            .keys()
            .map(|name| {
                let key = folded(name.as_str(), ci);
                match desired_keys.get(&*key) {
                    Some(&first) if first != name => Counterpart::Clash(first),
                    _ => Counterpart::Have(by_key.get(&*key).copied()),
                }
            })
            .collect();
        (
            Index::Folded {
                by_key,
                desired_keys,
            },
            counterparts,
        )
    }
}

/// The warning for a group the target owns (system, external), which roster never changes.
fn skipped(have: &ObservedGroup) -> Warning {
    Warning {
        kind: WarningKind::SkippedGroup,
        group: have.group.name.clone(),
        message: format!(
            "\"{}\" is {} {} group of the target; roster does not change it",
            have.group.name,
            if have.kind == GroupKind::External {
                "an"
            } else {
                "a"
            },
            have.kind.word()
        ),
    }
}

/// The description, where the desired state gives one and the target's differs (a missing
/// description on the target counts as empty).
fn description_change(
    want: &Group,
    have: &ObservedGroup,
    fields: &mut BTreeMap<String, FieldChange>,
) {
    if let Some(d) = &want.description
        && have.group.description.as_deref().unwrap_or("") != d
    {
        fields.insert(
            "description".to_owned(),
            FieldChange {
                from: have
                    .group
                    .description
                    .clone()
                    .map_or(Value::Null, Value::from),
                to: d.as_str().into(),
            },
        );
    }
}

/// The attributes the desired state gives for this target type whose values on the target differ
/// (see `same_attr`); attributes it does not give are left as they are.
fn attribute_changes(
    want: Option<&Attributes>,
    have: Option<&Attributes>,
    fields: &mut BTreeMap<String, FieldChange>,
) {
    for (k, v) in want.into_iter().flatten() {
        let cur = have.and_then(|a| a.get(k)).unwrap_or(&Value::Null);
        if !same_attr(cur, v) {
            fields.insert(
                k.clone(),
                FieldChange {
                    from: cur.clone(),
                    to: v.clone(),
                },
            );
        }
    }
}

/// Attribute values compare as JSON, except that a missing value and an empty object or string are
/// the same thing to a target such as Contensis (`custom: {}`).
fn same_attr(have: &Value, want: &Value) -> bool {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    have == want || (empty(have) && empty(want))
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

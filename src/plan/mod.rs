//! Planning: a pure comparison of the desired state with what a target holds.
//!
//! [`plan`] takes values and returns a [`Plan`]; it does no I/O, reads no clock and draws no random
//! numbers, so the same inputs always give the same plan in the same order. [`guard`] applies the
//! safety rules that can refuse a plan before anything is written.

pub mod change;
pub mod closure;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::Value;

use crate::model::{Capabilities, Desired, GroupKind, GroupName, Observed, ObservedGroup};

pub use change::{Change, FieldChange, Plan, PlanError, Summary, Warning, WarningKind};

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
    names: BTreeSet<String>,
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
        Ok(Self {
            globs,
            names,
            case_insensitive,
        })
    }

    /// A scope that contains no group.
    pub fn empty() -> Self {
        Self {
            globs: None,
            names: BTreeSet::new(),
            case_insensitive: false,
        }
    }

    /// Whether roster manages the group of this name.
    pub fn contains(&self, name: &GroupName) -> bool {
        match &self.globs {
            Some(g) => g.is_match(name.as_str()),
            None => self
                .names
                .contains(&fold(name.as_str(), self.case_insensitive)),
        }
    }
}

/// A name as compared on a target: lowercased where the target ignores case.
pub fn fold(name: &str, case_insensitive: bool) -> String {
    if case_insensitive {
        name.to_lowercase()
    } else {
        name.to_owned()
    }
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
    /// Removals above this refuse the apply.
    pub max_deletes: usize,
    /// Whether an empty desired state may be applied to a target with managed groups.
    pub allow_empty_source: bool,
}

/// A safety rule refused the plan; nothing is written to the target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// More removals than `max_deletes` allows.
    #[error(
        "the plan removes {removals} members, children or groups, more than max_deletes = {limit}; \
         review it, then raise the limit for this run with --max-deletes {removals}"
    )]
    TooManyDeletes {
        /// Removals in the plan.
        removals: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The source returned no groups while the target has managed groups in scope.
    #[error(
        "the source returned no groups, but {managed} managed groups are in scope on the target; \
         refusing to treat that as the desired state (set allow_empty_source = true if it is)"
    )]
    EmptySource {
        /// Managed groups in scope on the target.
        managed: usize,
    },
}

/// Applies the safety rules that can refuse a whole plan: the deletion limit and the empty-source
/// guard. Pure.
pub fn guard(
    plan: &Plan,
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
) -> Result<(), Refusal> {
    let managed = observed
        .groups
        .values()
        .filter(|g| g.kind == GroupKind::Managed)
        .count();
    if desired.groups.is_empty() && managed > 0 && !policy.allow_empty_source {
        return Err(Refusal::EmptySource { managed });
    }
    if plan.removals() > policy.max_deletes {
        return Err(Refusal::TooManyDeletes {
            removals: plan.removals(),
            limit: policy.max_deletes,
        });
    }
    Ok(())
}

/// Computes the changes that make `observed` match `desired` within the policy's scope.
///
/// `target_type` selects which of a group's `extras` apply (`"contensis"`, ...). The result is
/// ordered group by group (by name); within a group: create or update, members added, members
/// removed, children added, children removed, delete. Groups the target owns (system, external)
/// and desired members the target does not know are left alone and reported as warnings.
pub fn plan(
    target: &str,
    target_type: &str,
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
    caps: Capabilities,
) -> Plan {
    let ci = caps.case_insensitive_names;
    let flattened;
    let (desired, mut warnings) = if caps.nested_groups {
        (desired, Vec::new())
    } else {
        let (d, w) = closure::flatten(desired);
        flattened = d;
        (&flattened, w)
    };

    let by_key: HashMap<String, &ObservedGroup> = observed
        .groups
        .values()
        .map(|o| (fold(o.group.name.as_str(), ci), o))
        .collect();
    let others: HashSet<String> = observed
        .others
        .iter()
        .map(|n| fold(n.as_str(), ci))
        .collect();
    let unknown: HashSet<String> = observed
        .unknown_users
        .iter()
        .map(|u| fold(u.as_str(), ci))
        .collect();
    let desired_keys: HashSet<String> = desired
        .groups
        .keys()
        .map(|n| fold(n.as_str(), ci))
        .collect();
    let additive = policy.membership == MembershipMode::Additive;

    // Each group's changes, keyed by the name shown in the plan, so the output is sorted by group.
    let mut per_group: BTreeMap<GroupName, Vec<Change>> = BTreeMap::new();

    let mut seen: HashMap<String, &GroupName> = HashMap::new();
    for (name, want) in &desired.groups {
        if let Some(first) = seen.insert(fold(name.as_str(), ci), name) {
            warnings.push(Warning {
                kind: WarningKind::NameClash,
                group: name.clone(),
                message: format!(
                    "\"{name}\" and \"{first}\" differ only in case, which this target does not tell apart; \"{name}\" is left alone"
                ),
            });
            seen.insert(fold(name.as_str(), ci), first);
            continue;
        }
        if !policy.scope.contains(name) {
            warnings.push(Warning {
                kind: WarningKind::OutOfScope,
                group: name.clone(),
                message: format!("\"{name}\" is outside this target's managed groups; left alone"),
            });
            continue;
        }
        let have = by_key.get(&fold(name.as_str(), ci)).copied();
        if let Some(have) = have
            && have.kind != GroupKind::Managed
        {
            warnings.push(Warning {
                kind: WarningKind::SkippedGroup,
                group: have.group.name.clone(),
                message: format!(
                    "\"{}\" is a {} group of the target; roster does not change it",
                    have.group.name,
                    kind_word(have.kind)
                ),
            });
            continue;
        }
        let mut out = Vec::new();
        let shown = have.map_or(name, |h| &h.group.name).clone();
        let want_attrs = want.extras.get(target_type);

        match have {
            None => out.push(Change::CreateGroup {
                group: name.clone(),
                description: want.description.clone(),
                attributes: want_attrs.cloned().unwrap_or_default(),
            }),
            Some(have) => {
                let mut fields = BTreeMap::new();
                if have.group.name != *name && !caps.renames {
                    warnings.push(Warning {
                        kind: WarningKind::CannotRename,
                        group: have.group.name.clone(),
                        message: format!(
                            "\"{}\" is spelled \"{name}\" in the desired state; this target cannot rename groups, so its name is left as it is",
                            have.group.name
                        ),
                    });
                } else if have.group.name != *name {
                    fields.insert(
                        "name".to_owned(),
                        FieldChange {
                            from: have.group.name.as_str().into(),
                            to: name.as_str().into(),
                        },
                    );
                }
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
                let have_attrs = have.group.extras.get(target_type);
                for (k, v) in want_attrs.into_iter().flatten() {
                    let cur = have_attrs.and_then(|a| a.get(k)).unwrap_or(&Value::Null);
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
                if !fields.is_empty() {
                    out.push(Change::UpdateGroup {
                        group: shown.clone(),
                        fields,
                    });
                }
            }
        }

        // Members.
        let (add, remove) = set_diff(have.map(|h| &h.group.members), &want.members, ci);
        for m in add {
            if unknown.contains(&fold(m.as_str(), ci)) {
                warnings.push(Warning {
                    kind: WarningKind::UnknownUser,
                    group: name.clone(),
                    message: format!(
                        "user \"{m}\" does not exist on the target; not added to \"{name}\""
                    ),
                });
                continue;
            }
            out.push(Change::AddMember {
                group: shown.clone(),
                member: m.clone(),
            });
        }
        if !additive {
            out.extend(remove.into_iter().map(|m| Change::RemoveMember {
                group: shown.clone(),
                member: m.clone(),
            }));
        }

        // Children (only where the target nests; otherwise they were flattened into members).
        if caps.nested_groups {
            let (add, remove) = set_diff(have.map(|h| &h.group.children), &want.children, ci);
            for c in add {
                let k = fold(c.as_str(), ci);
                let will_exist = (desired_keys.contains(&k) && policy.scope.contains(c))
                    || by_key.contains_key(&k)
                    || others.contains(&k);
                if !will_exist {
                    warnings.push(Warning {
                        kind: WarningKind::UnknownChild,
                        group: name.clone(),
                        message: format!(
                            "child \"{c}\" of \"{name}\" is outside the managed groups and absent from the target; not added"
                        ),
                    });
                    continue;
                }
                out.push(Change::AddChild {
                    group: shown.clone(),
                    child: c.clone(),
                });
            }
            if !additive {
                out.extend(remove.into_iter().map(|c| Change::RemoveChild {
                    group: shown.clone(),
                    child: c.clone(),
                }));
            }
        }
        if !out.is_empty() {
            per_group.entry(shown).or_default().extend(out);
        }
    }

    // Managed groups in scope that the desired state no longer has.
    for have in observed.groups.values() {
        let k = fold(have.group.name.as_str(), ci);
        if desired_keys.contains(&k) || !policy.scope.contains(&have.group.name) {
            continue;
        }
        if have.kind != GroupKind::Managed {
            warnings.push(Warning {
                kind: WarningKind::SkippedGroup,
                group: have.group.name.clone(),
                message: format!(
                    "\"{}\" is a {} group of the target; roster does not change it",
                    have.group.name,
                    kind_word(have.kind)
                ),
            });
            continue;
        }
        // Additive mode never removes, and deleting a group removes all its members.
        if policy.prune && !additive {
            per_group
                .entry(have.group.name.clone())
                .or_default()
                .push(Change::DeleteGroup {
                    group: have.group.name.clone(),
                });
        }
    }

    let changes: Vec<Change> = per_group.into_values().flatten().collect();
    warnings.sort();
    warnings.dedup();
    Plan {
        target: target.to_owned(),
        summary: Summary::of(&changes),
        changes,
        warnings,
        errors: Vec::new(),
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

fn kind_word(kind: GroupKind) -> &'static str {
    match kind {
        GroupKind::Managed => "managed",
        GroupKind::System => "system",
        GroupKind::External => "external",
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
mod tests;

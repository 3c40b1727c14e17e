//! The plan's vocabulary: the changes roster can make, the warnings it raises, and the summary.
//!
//! These types serialize to the JSON plan contract (`"op"`, `"group"`, `"member"`, `"child"`,
//! `"fields"`), which is why they, and nothing else, carry serde names such as `add_member`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Attributes, GroupName, UserKey};
use crate::plan::guard::Refusal;

/// One field of an update: what the target has and what it will have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The target's current value (`null` when unset).
    pub from: serde_json::Value,
    /// The desired value.
    pub to: serde_json::Value,
}

/// One change to one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Create a group (its members and children follow as their own changes).
    CreateGroup {
        /// The new group.
        group: GroupName,
        /// Its description, if the desired state sets one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Its target-type attributes, if any.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        attributes: Attributes,
    },
    /// Change fields of an existing group (`name`, `description`, or a target attribute).
    UpdateGroup {
        /// The group, by its current name on the target.
        group: GroupName,
        /// Each changed field, by name.
        fields: BTreeMap<String, FieldChange>,
    },
    /// Add a user as a direct member.
    AddMember {
        /// The group.
        group: GroupName,
        /// The user.
        member: UserKey,
    },
    /// Remove a direct member.
    RemoveMember {
        /// The group.
        group: GroupName,
        /// The user.
        member: UserKey,
    },
    /// Make a group a direct child.
    AddChild {
        /// The parent group.
        group: GroupName,
        /// The child group.
        child: GroupName,
    },
    /// Remove a direct child group.
    RemoveChild {
        /// The parent group.
        group: GroupName,
        /// The child group.
        child: GroupName,
    },
    /// Delete a managed group that the desired state no longer has (only with `prune = true`).
    DeleteGroup {
        /// The group.
        group: GroupName,
    },
}

/// Which column of the summary a change counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Something is added: a group, a member, a child.
    Add,
    /// Something is changed in place.
    Change,
    /// Something is removed: a member, a child, a group.
    Remove,
}

impl Change {
    /// The group this change is about.
    pub fn group(&self) -> &GroupName {
        match self {
            Change::CreateGroup { group, .. }
            | Change::UpdateGroup { group, .. }
            | Change::AddMember { group, .. }
            | Change::RemoveMember { group, .. }
            | Change::AddChild { group, .. }
            | Change::RemoveChild { group, .. }
            | Change::DeleteGroup { group } => group,
        }
    }

    /// Whether the change adds, changes or removes.
    pub fn effect(&self) -> Effect {
        match self {
            Change::CreateGroup { .. } | Change::AddMember { .. } | Change::AddChild { .. } => {
                Effect::Add
            }
            Change::UpdateGroup { .. } => Effect::Change,
            Change::RemoveMember { .. }
            | Change::RemoveChild { .. }
            | Change::DeleteGroup { .. } => Effect::Remove,
        }
    }

    /// The contract's name for this kind of change (`"add_member"`, ...), for logs and metrics.
    pub fn op(&self) -> &'static str {
        match self {
            Change::CreateGroup { .. } => "create_group",
            Change::UpdateGroup { .. } => "update_group",
            Change::AddMember { .. } => "add_member",
            Change::RemoveMember { .. } => "remove_member",
            Change::AddChild { .. } => "add_child",
            Change::RemoveChild { .. } => "remove_child",
            Change::DeleteGroup { .. } => "delete_group",
        }
    }
}

/// Why the planner left something out or wants a human to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A desired member does not exist on the target; it is not added.
    UnknownUser,
    /// A group the target owns (system or external) was left alone.
    SkippedGroup,
    /// A cycle of child groups was found and not followed.
    DroppedCycle,
    /// A desired child group is outside the managed scope and absent from the target.
    UnknownChild,
    /// A desired group is outside the target's managed scope; it is left alone.
    OutOfScope,
    /// Two desired groups differ only in case on a target that ignores case.
    NameClash,
    /// The target's name differs from the desired one only in case, and the target cannot
    /// rename groups.
    CannotRename,
}

/// A warning attached to a plan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Warning {
    /// What kind of warning.
    pub kind: WarningKind,
    /// The group it concerns.
    pub group: GroupName,
    /// A sentence for the reader.
    pub message: String,
}

/// A planned change the target's server would refuse, found at plan time by the connector's
/// [`crate::target::Target::vet`], so that a clean plan means the apply will not be refused for the
/// rules the connector can check before writing. `roster apply` never sends a refused change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PlanError {
    /// The group the refused change is about.
    pub group: GroupName,
    /// The index of the refused change in the plan's `changes`, or `None` when the error is
    /// about the group as a whole (every change of it is refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<usize>,
    /// Where the group is defined (`file:line:col`, or the LDAP entry), when the desired state
    /// has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Which server rule refuses it, and what to do about it.
    pub message: String,
}

impl PlanError {
    /// Whether this error refuses change `index` of the plan, whose group is `group`.
    pub fn refuses(&self, index: usize, group: &GroupName) -> bool {
        match self.change {
            Some(i) => i == index,
            None => &self.group == group,
        }
    }
}

/// Counts of changes by effect, as in `Plan: 3 to add, 1 to change, 2 to remove.`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Groups created, members and children added.
    pub add: usize,
    /// Groups updated.
    pub change: usize,
    /// Members and children removed, groups deleted.
    pub remove: usize,
}

impl Summary {
    /// Counts the changes.
    pub fn of(changes: &[Change]) -> Self {
        let mut s = Summary::default();
        for c in changes {
            match c.effect() {
                Effect::Add => s.add += 1,
                Effect::Change => s.change += 1,
                Effect::Remove => s.remove += 1,
            }
        }
        s
    }
}

/// The plan for one target: ordered changes, warnings and a summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The target's name from the config.
    pub target: String,
    /// The safety rule that refused the plan, if one did ([`crate::plan::guard`]): nothing of it
    /// is written until a person has reviewed it and lifted the limit. Set after planning, by
    /// `reconcile`, in `roster plan` as in `roster apply`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// The changes, in a deterministic order: group by group, creates and updates first.
    pub changes: Vec<Change>,
    /// Warnings, sorted.
    pub warnings: Vec<Warning>,
    /// Changes the target's server would refuse, sorted; a plan with errors is not clean, and its
    /// refused changes are never sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PlanError>,
    /// Counts of the changes.
    pub summary: Summary,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The errors that refuse change `index`, if any.
    pub fn refusals_of(&self, index: usize) -> impl Iterator<Item = &PlanError> {
        let group = self.changes.get(index).map(Change::group);
        self.errors
            .iter()
            .filter(move |e| group.is_some_and(|g| e.refuses(index, g)))
    }

    /// How many removals (members, children and groups) the plan makes: what `max_deletes` limits.
    pub fn removals(&self) -> usize {
        self.summary.remove
    }
}

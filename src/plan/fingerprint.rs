//! A fingerprint of what a target held when a plan was made, so that a saved plan is applied only
//! to the state it was made from.
//!
//! Every group in scope counts, with its description, members, children, attributes and kind;
//! the order a target lists them in does not (they are hashed in name order). Besides the whole
//! digest, each group keeps its own digest and counts, so that a stale plan can say which groups
//! changed and how.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{GroupName, Observed, ObservedGroup, hex};

/// The fingerprint of a target's observed state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// SHA-256 (hex) over every group's digest, in name order.
    pub digest: String,
    /// Each group in scope.
    pub groups: BTreeMap<GroupName, GroupPrint>,
}

/// One group's part of a [`Fingerprint`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPrint {
    /// Direct user members.
    pub members: usize,
    /// Direct child groups.
    pub children: usize,
    /// SHA-256 (hex, first 16 bytes) of the group's description, members, children, attributes
    /// and kind.
    pub digest: String,
}

impl Fingerprint {
    /// The fingerprint of `observed`.
    pub fn of(observed: &Observed) -> Self {
        let mut whole = Sha256::new();
        let mut groups = BTreeMap::new();
        for (name, g) in &observed.groups {
            let digest = group_digest(name, g);
            whole.update(name.as_str().as_bytes());
            whole.update([0]);
            whole.update(digest.as_bytes());
            whole.update([0]);
            groups.insert(
                name.clone(),
                GroupPrint {
                    members: g.group.members.len(),
                    children: g.group.children.len(),
                    digest,
                },
            );
        }
        Fingerprint {
            digest: hex(&whole.finalize()),
            groups,
        }
    }

    /// What differs from `then` to `self` (now), one line per group, in name order; empty when
    /// nothing does.
    pub fn changes_since(&self, then: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        for (name, was) in &then.groups {
            match self.groups.get(name) {
                None => out.push(format!("\"{name}\" is gone")),
                Some(now) if now.digest != was.digest => {
                    let mut parts = Vec::new();
                    if now.members != was.members {
                        parts.push(format!("members {} → {}", was.members, now.members));
                    }
                    if now.children != was.children {
                        parts.push(format!("children {} → {}", was.children, now.children));
                    }
                    if parts.is_empty() {
                        parts.push("changed".to_owned());
                    }
                    out.push(format!("\"{name}\" {}", parts.join(", ")));
                }
                Some(_) => {}
            }
        }
        for (name, now) in &self.groups {
            if !then.groups.contains_key(name) {
                out.push(format!("\"{name}\" is new ({} members)", now.members));
            }
        }
        out.sort();
        out
    }
}

/// A group's digest: its fields in a fixed order, each ended by a separator no name holds.
fn group_digest(name: &GroupName, g: &ObservedGroup) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update(bytes);
        h.update([0]);
    };
    field(name.as_str().as_bytes());
    match &g.group.description {
        Some(d) => field(format!("d:{d}").as_bytes()),
        None => field(b"-"),
    }
    field(format!("m:{}", g.group.members.len()).as_bytes());
    for m in &g.group.members {
        field(m.as_str().as_bytes());
    }
    field(format!("c:{}", g.group.children.len()).as_bytes());
    for c in &g.group.children {
        field(c.as_str().as_bytes());
    }
    // BTreeMaps all the way down, so the JSON is in one order.
    field(
        serde_json::to_string(&g.group.extras)
            .unwrap_or_default()
            .as_bytes(),
    );
    field(format!("{:?}", g.kind).as_bytes());
    hex(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Group, GroupKind, TargetGroupId, UserKey};

    fn observed(groups: &[(&str, &[&str])]) -> Observed {
        let mut o = Observed::default();
        for (name, members) in groups {
            let mut g = Group::named(*name);
            g.members = members.iter().map(|m| UserKey::from(*m)).collect();
            o.groups.insert(
                GroupName::from(*name),
                ObservedGroup {
                    id: TargetGroupId::from(*name),
                    group: g,
                    kind: GroupKind::Managed,
                },
            );
        }
        o
    }

    #[test]
    fn the_same_state_has_the_same_fingerprint_and_any_change_shows() {
        let base = observed(&[("a", &["ann", "bob"]), ("b", &[])]);
        let same = observed(&[("b", &[]), ("a", &["bob", "ann"])]);
        assert_eq!(Fingerprint::of(&base), Fingerprint::of(&same));
        assert!(
            Fingerprint::of(&same)
                .changes_since(&Fingerprint::of(&base))
                .is_empty()
        );

        let member = observed(&[("a", &["ann", "cy"]), ("b", &[])]);
        let then = Fingerprint::of(&base);
        let now = Fingerprint::of(&member);
        assert_ne!(now.digest, then.digest);
        assert_eq!(now.changes_since(&then), ["\"a\" changed"]);

        let more = observed(&[("a", &["ann", "bob", "cy"]), ("c", &["x"])]);
        assert_eq!(
            Fingerprint::of(&more).changes_since(&then),
            [
                "\"a\" members 2 → 3",
                "\"b\" is gone",
                "\"c\" is new (1 members)"
            ]
        );

        let mut described = base.clone();
        if let Some(g) = described.groups.get_mut(&GroupName::from("b")) {
            g.group.description = Some("new".to_owned());
        }
        assert_ne!(Fingerprint::of(&described).digest, then.digest);
        let mut system = base.clone();
        if let Some(g) = system.groups.get_mut(&GroupName::from("b")) {
            g.kind = GroupKind::System;
        }
        assert_ne!(Fingerprint::of(&system).digest, then.digest);
    }

    #[test]
    fn names_and_members_cannot_run_into_each_other() {
        let one = observed(&[("ab", &["c"])]);
        let other = observed(&[("a", &["bc"])]);
        assert_ne!(Fingerprint::of(&one).digest, Fingerprint::of(&other).digest);
    }
}

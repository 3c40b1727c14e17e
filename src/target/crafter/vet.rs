//! What Studio would refuse of a plan, found before anything is sent: the name, length and
//! character rules of each API's group writes, and usernames Studio cannot hold.

use std::collections::HashSet;

use super::{CASE_INSENSITIVE, CrafterTarget, V1_BEYOND_BMP, api};
use crate::model::{GroupKind, Observed};
use crate::plan::change::{Change, Plan};
use crate::plan::fold;
use crate::target::Rejection;

impl CrafterTarget {
    /// The changes of `plan` that Studio would refuse, with why: what `vet` reports.
    pub(super) fn rejections(&self, observed: &Observed, plan: &Plan) -> Vec<Rejection> {
        let v1 = self.v1_site().is_some();
        let others: HashSet<String> = observed
            .others
            .iter()
            .map(|n| fold(n.as_str(), CASE_INSENSITIVE))
            .collect();
        let max_desc = if v1 {
            api::V1_MAX_DESCRIPTION
        } else {
            api::MAX_DESCRIPTION
        };
        // Studio 4 counts a description as Java does, in UTF-16 units; Studio 3.0's column
        // counts characters, and its `utf8` charset holds none beyond the Basic Multilingual
        // Plane (emoji, say).
        let desc_rule = |d: &str| {
            let n = if v1 {
                d.chars().count()
            } else {
                d.encode_utf16().count()
            };
            let mut why = Vec::new();
            if n > max_desc {
                why.push(format!(
                    "the description has {n} characters; Crafter Studio takes at most {max_desc}"
                ));
            }
            if v1 && d.chars().any(|c| u32::from(c) > 0xFFFF) {
                why.push(V1_BEYOND_BMP.to_owned());
            }
            why
        };
        let mut out = Vec::new();
        for (i, change) in plan.changes.iter().enumerate() {
            let group = change.group();
            let mut why: Vec<String> = Vec::new();
            // Groups owned by an identity provider, and the built-in ones, are never written.
            if let Some(g) = observed.groups.get(group)
                && g.kind != GroupKind::Managed
            {
                why.push(format!(
                    "\"{group}\" is not a group roster may change (built in, or externally \
                     managed by LDAP/SAML)"
                ));
            }
            match change {
                Change::CreateGroup { description, .. } => {
                    let n = group.as_str();
                    if v1 {
                        if n.trim().is_empty() || n.chars().count() > api::V1_MAX_NAME {
                            why.push(format!(
                                "Studio 3.0 holds group names of 1 to {} characters",
                                api::V1_MAX_NAME
                            ));
                        }
                        if n.chars().any(|c| u32::from(c) > 0xFFFF) {
                            why.push(V1_BEYOND_BMP.to_owned());
                        }
                    } else if !api::valid_group_name(n) {
                        why.push(format!(
                            "Studio creates only groups whose names match ^[a-zA-Z][\\w.\\-]*$ \
                             (an ASCII letter, then letters, digits, `_`, `.` or `-`) and have \
                             {} to {} characters",
                            api::MIN_GROUP_NAME,
                            api::MAX_GROUP_NAME
                        ));
                    }
                    if others.contains(&fold(n, CASE_INSENSITIVE)) {
                        why.push(
                            "Studio already has a group of that name outside the groups roster \
                             manages (names are unique without regard to case)"
                                .to_owned(),
                        );
                    }
                    why.extend(description.as_deref().map(desc_rule).unwrap_or_default());
                }
                Change::UpdateGroup { fields, .. } => {
                    why.extend(
                        fields
                            .get("description")
                            .and_then(|f| f.to.as_str())
                            .map(desc_rule)
                            .unwrap_or_default(),
                    );
                }
                // Sent by username only when no id was read: Studio checks the name.
                Change::AddMember { member, .. }
                    if !v1
                        && !observed.users.contains_key(member)
                        && !api::valid_username(member.as_str()) =>
                {
                    why.push(format!(
                        "\"{member}\" cannot be a Studio username (^[a-zA-Z][\\w.\\-@+]+$, at \
                         most {} characters)",
                        api::MAX_USERNAME
                    ));
                }
                _ => {}
            }
            out.extend(
                why.into_iter()
                    .filter_map(|w| Rejection::of_change(plan, i, w)),
            );
        }
        out
    }
}

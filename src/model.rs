//! The domain model shared by every layer: group and user names, groups, the desired and the
//! observed state, and what a target's API can express.
//!
//! These are plain values. Sources produce [`Desired`], connectors produce [`Observed`], the planner
//! compares the two. `BTreeMap`/`BTreeSet` are used wherever order reaches a user, so that plans and
//! reports come out the same on every run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

/// The name of a group, as the desired state or the target spells it.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct GroupName(pub String);

/// A user key: the identifier the desired state names a user by (a username, a uid, an e-mail).
///
/// Shared rather than owned: an estate of 20,000 groups of 50 names a thousand users a million
/// times, and each group's members are built from the same keys, so a copy is a count (the
/// VinylDNS read's build after its last call went from 52-86 ms to 41-72 ms, the planner's peak
/// for a million memberships from 156 to 127 MiB). The price: a key cut from a buffer of its
/// own (an LDAP member value) is copied once into shared text, not taken over (the LDAP load
/// about 5-10 % slower, `cargo bench --bench ldap`).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UserKey(Arc<str>);

macro_rules! string_newtype {
    ($t:ty) => {
        impl $t {
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                Self(s.into())
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                Self(s.into())
            }
        }
    };
}
string_newtype!(GroupName);
string_newtype!(UserKey);

/// Per-target-type attributes of a group, such as Contensis `custom`.
///
/// Keys are attribute names; only the attributes the desired state sets are managed, so a target
/// attribute roster was never told about is left as it is.
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// One group: its name, description, direct members and direct child groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// The group's name, unique within a target.
    pub name: GroupName,
    /// The description; `None` in the desired state means "leave it as the target has it".
    pub description: Option<String>,
    /// Direct user members.
    pub members: BTreeSet<UserKey>,
    /// Direct child groups.
    pub children: BTreeSet<GroupName>,
    /// Attributes for each target type (`"contensis"` → `{"custom": {...}}`).
    pub extras: BTreeMap<String, Attributes>,
}

impl Group {
    /// A group with a name and nothing else.
    pub fn named(name: impl Into<GroupName>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// Where a desired group was defined, so that messages can point at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A `[[group]]` table in a desired-state file.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the table.
        line: usize,
        /// 1-based column of the table.
        col: usize,
    },
    /// An LDAP entry.
    Ldap {
        /// The entry's distinguished name.
        dn: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, col } => write!(f, "{}:{line}:{col}", path.display()),
            Origin::Ldap { dn } => write!(f, "ldap entry {dn}"),
        }
    }
}

/// The desired state: every group the sources define, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// The groups, by name.
    pub groups: BTreeMap<GroupName, Group>,
    /// Where each group was defined.
    pub origins: BTreeMap<GroupName, Origin>,
}

impl Desired {
    /// Every user key named as a member of any desired group.
    pub fn user_keys(&self) -> BTreeSet<UserKey> {
        // Users are members of many groups each: each key is cloned once, not once a membership.
        // A million memberships: hashed with FxHash, as SipHash took 30 ms of it.
        let distinct: rustc_hash::FxHashSet<&UserKey> =
            self.groups.values().flat_map(|g| &g.members).collect();
        distinct.into_iter().cloned().collect()
    }
}

/// The target's own identifier for a group (a GUID for Contensis).
pub type TargetGroupId = String;
/// The target's own identifier for a user.
pub type TargetUserId = String;

/// How a target treats a group roster can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// An ordinary group, which roster may change.
    Managed,
    /// A built-in group of the target (Contensis `sys`): never changed.
    System,
    /// A group owned by an external identity provider (Contensis `external`): never changed.
    External,
}

impl GroupKind {
    /// How the kind is called in messages and comments: `managed`, `system`, `external`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::System => "system",
            Self::External => "external",
        }
    }
}

/// One group as a target reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedGroup {
    /// The target's identifier for the group.
    pub id: TargetGroupId,
    /// The group's fields, members and children as the target holds them. Attributes are keyed as
    /// the desired state's `extras` for this target type.
    pub group: Group,
    /// Whether roster may change it.
    pub kind: GroupKind,
}

/// A member of a target's group that is not a plain user the desired state could name: a robot,
/// an application, a directory group, an id that names no user, roster's own account. roster
/// leaves such members as they are; the planner never sees them, and `roster export` lists them
/// as comments so that they are not lost from view.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unmanaged {
    /// What the member is, in the reader's words (`"robot"`, `"directory group"`, ...).
    pub what: String,
    /// How the target names it: its name, or its id when the target gives no name.
    pub name: String,
}

impl Unmanaged {
    /// A member that is `what`, named `name`.
    pub fn new(what: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            name: name.into(),
        }
    }
}

/// What a target holds: every group in scope, completely read, plus what roster needs to address
/// users.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Groups in the managed scope, with members and children, by name.
    pub groups: BTreeMap<GroupName, ObservedGroup>,
    /// Names of every other group the target has (out of scope), so that a child reference or a
    /// create can be checked against them.
    pub others: BTreeSet<GroupName>,
    /// Target ids of the user keys roster may need to address: the desired users that exist on
    /// the target, and (where the API removes members by id) the observed members.
    pub users: BTreeMap<UserKey, TargetUserId>,
    /// Desired user keys the target does not know; they are warned about, never added.
    pub unknown_users: BTreeSet<UserKey>,
    /// Members of groups in scope that are not plain users (see [`Unmanaged`]), by group, where
    /// the connector can tell; never planned.
    pub unmanaged: BTreeMap<GroupName, BTreeSet<Unmanaged>>,
}

/// How a target's API writes membership; the connector compiles changes to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipWrites {
    /// One call per member added or removed.
    PerMember,
    /// The whole member list is replaced in one call.
    FullReplace,
    /// One call carries lists of additions and removals.
    AddRemoveBatch,
}

/// What a target's API can express; the planner and the executor shape their work to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether groups may contain groups. Without it the planner flattens children into members.
    pub nested_groups: bool,
    /// How membership is written.
    pub membership: MembershipWrites,
    /// Whether the target compares group names and user keys without regard to case.
    pub case_insensitive_names: bool,
    /// Whether an existing group can be renamed (to fix the case of its name). Without it, a
    /// name that differs only in case is warned about and left as it is.
    pub renames: bool,
}

/// Bytes as lower-case hex: how roster writes every hash (plan fingerprints and checksums, the
/// config's settings hash, the journal's chain).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_user_key_shares_its_text() {
        let key = UserKey::from("alice");
        let copy = key.clone();
        assert_eq!(copy, key);
        assert_eq!(copy.as_str().as_ptr(), key.as_str().as_ptr());
    }

    #[test]
    fn a_user_key_reads_and_writes_as_a_plain_string() {
        let key: UserKey = serde_json::from_str("\"bob@example.com\"").expect("json");
        assert_eq!(key.as_str(), "bob@example.com");
        assert_eq!(
            serde_json::to_string(&key).expect("json"),
            "\"bob@example.com\""
        );
        assert_eq!(UserKey::from(String::from("bob@example.com")), key);
        assert_eq!(key.to_string(), "bob@example.com");
    }
}

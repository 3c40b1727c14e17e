//! UiPath Identity wire shapes and paths: the only code that knows them.
//!
//! Every path is relative to the target's `url` and starts with the identity service's segment
//! (`identity_` on Automation Cloud, `identity` on Automation Suite). Ids (UUIDs, or directory
//! identifiers such as `aad|…`) are percent-encoded as whole path segments.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::target::http::encode as seg;

/// `/{identity}/connect/token`: the OAuth token endpoint.
pub fn token(identity: &str) -> String {
    format!("/{identity}/connect/token")
}

/// `/{identity}/api/Group`: create a local group.
pub fn create(identity: &str) -> String {
    format!("/{identity}/api/Group")
}

/// `/{identity}/api/Group/{partitionGlobalId}`: every group, a bare array.
pub fn groups(identity: &str, partition: &str) -> String {
    format!("/{identity}/api/Group/{}", seg(partition))
}

/// `/{identity}/api/Group/{partitionGlobalId}/{groupId}`: one group with members; delete.
pub fn group(identity: &str, partition: &str, id: &str) -> String {
    format!("/{identity}/api/Group/{}/{}", seg(partition), seg(id))
}

/// `/{identity}/api/Group/{groupId}`: update (rename, add and remove members).
pub fn update(identity: &str, id: &str) -> String {
    format!("/{identity}/api/Group/{}", seg(id))
}

/// `/{identity}/api/Directory/Search/{partitionGlobalId}`: find users by name or e-mail prefix.
pub fn search(identity: &str, partition: &str) -> String {
    format!("/{identity}/api/Directory/Search/{}", seg(partition))
}

/// The directory sources searched for users: local users and directory (AAD, AD) users.
pub const USER_SOURCES: [&str; 2] = ["LocalUsers", "DirectoryUsers"];

/// A group as the list returns it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    /// The group's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// 0 for built-in groups (Everyone, Administrators), 1 for local ones.
    #[serde(default = "local", rename = "type")]
    pub kind: i64,
}

fn local() -> i64 {
    1
}

/// Built-in groups have type 0.
pub const BUILT_IN: i64 = 0;

/// A group with its members.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupDetail {
    /// The group's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Direct members (null or absent: none).
    #[serde(default)]
    pub members: Option<Vec<Member>>,
}

/// A member of a group.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// `DirectoryUser` for users; other kinds (directory groups, robots) are left alone.
    #[serde(default)]
    pub object_type: Option<String>,
    /// The directory id used in membership calls.
    pub identifier: String,
    /// The user name.
    #[serde(default)]
    pub name: Option<String>,
    /// The e-mail.
    #[serde(default)]
    pub email: Option<String>,
}

impl Member {
    /// Whether the member is a user (the only members roster manages).
    pub fn is_user(&self) -> bool {
        self.object_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("DirectoryUser"))
    }
}

/// One result of a directory search.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchEntity {
    /// The directory id.
    pub identifier: String,
    /// The user name (`identityName`; some answers say `name`).
    #[serde(default, alias = "name")]
    pub identity_name: Option<String>,
    /// The e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// `User`, `Group`, `Application`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `DirectoryUser`, `DirectoryGroup`, …
    #[serde(default)]
    pub object_type: Option<String>,
}

impl SearchEntity {
    /// Whether the result is a user.
    pub fn is_user(&self) -> bool {
        let user = |t: &Option<String>, want: &str| {
            t.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(want))
        };
        user(&self.kind, "User") && user(&self.object_type, "DirectoryUser")
    }
}

/// The body of a create.
pub fn create_body(partition: &str, name: &str, members: &[String]) -> Value {
    json!({
        "partitionGlobalId": partition,
        "name": name,
        "directoryUserMemberIDs": members,
    })
}

/// The body of an update: the name is always sent (the current one unless renaming).
pub fn update_body(partition: &str, name: &str, add: &[String], remove: &[String]) -> Value {
    json!({
        "partitionGlobalId": partition,
        "name": name,
        "directoryUserIDsToAdd": add,
        "directoryUserIDsToRemove": remove,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_ids_as_segments() {
        assert_eq!(
            group("identity_", "p-1", "aad|x/y"),
            "/identity_/api/Group/p-1/aad%7Cx%2Fy"
        );
        assert_eq!(update("identity", "g"), "/identity/api/Group/g");
    }
}

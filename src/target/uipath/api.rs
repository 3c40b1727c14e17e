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

/// `/{identity}/api/Group/{partitionGlobalId}/{groupId}`: one group with members; delete. (Not an
/// update path: the service allows only `GET` and `DELETE` here.)
pub fn group(identity: &str, partition: &str, id: &str) -> String {
    format!("/{identity}/api/Group/{}/{}", seg(partition), seg(id))
}

/// `/{identity}/api/Group/{groupId}`: update (rename, add and remove members).
pub fn update(identity: &str, id: &str) -> String {
    format!("/{identity}/api/Group/{}", seg(id))
}

/// `/{identity}/api/Group/{partitionGlobalId}/{groupId}/Members`: a group's members, paged
/// (`top`, `skip`), ids and account types only.
pub fn members(identity: &str, partition: &str, id: &str) -> String {
    format!("{}/Members", group(identity, partition, id))
}

/// The most members one page of the members call holds.
pub const MEMBERS_PAGE: usize = 1000;

/// `/{identity}/api/Directory/BulkResolveByName/{partitionGlobalId}`: exact lookup of many names.
pub fn bulk_resolve(identity: &str, partition: &str) -> String {
    format!(
        "/{identity}/api/Directory/BulkResolveByName/{}",
        seg(partition)
    )
}

/// `/{identity}/api/Directory/BulkResolve/{partitionGlobalId}`: many entities by id.
pub fn bulk_resolve_ids(identity: &str, partition: &str) -> String {
    format!("/{identity}/api/Directory/BulkResolve/{}", seg(partition))
}

/// The body of a `BulkResolve` call for users.
pub fn bulk_resolve_ids_body(ids: &[&str]) -> Value {
    json!({ "entityIds": ids, "entityTypes": vec!["User"; ids.len()] })
}

/// The most names (or ids) one `BulkResolveByName` (or `BulkResolve`) call is sent.
pub const BULK_RESOLVE_LIMIT: usize = 20;

/// The body of a `BulkResolveByName` call for users.
pub fn bulk_resolve_body(names: &[&str]) -> Value {
    json!({ "entityNames": names, "entityType": "User", "scope": null })
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

/// One page of the members call.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembersPage {
    /// How many members the group has.
    pub total_count: usize,
    /// This page's members.
    #[serde(default)]
    pub results: Vec<MemberRef>,
}

/// A member as the members call lists it: its id and account type.
#[derive(Clone, Debug, Deserialize)]
pub struct MemberRef {
    /// The directory id.
    pub id: String,
    /// 0 user, 1 robot, 2 directory user, 3 directory group, 4 robot account, 5 application.
    #[serde(rename = "type")]
    pub kind: i64,
}

impl MemberRef {
    /// Whether the member is a person (local or directory user): the only members roster manages.
    pub fn is_user(&self) -> bool {
        matches!(self.kind, 0 | 2)
    }

    /// What a member that is not a person is, in words.
    pub fn what(&self) -> String {
        match self.kind {
            1 => "robot".to_owned(),
            3 => "directory group".to_owned(),
            4 => "robot account".to_owned(),
            5 => "application".to_owned(),
            n => format!("member of type {n}"),
        }
    }
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
    /// Whether the member is a user (the only members roster manages): robots, applications
    /// and directory groups are not.
    pub fn is_user(&self) -> bool {
        self.object_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("DirectoryUser"))
    }

    /// What a member that is not a person is, in words (its `objectType` when it is none
    /// roster knows).
    pub fn what(&self) -> String {
        let t = self.object_type.as_deref().unwrap_or_default();
        let known = [
            ("DirectoryRobotUser", "robot account"),
            ("DirectoryGroup", "directory group"),
            ("DirectoryApplication", "application"),
        ];
        known
            .iter()
            .find(|(wire, _)| wire.eq_ignore_ascii_case(t))
            .map_or_else(|| t.to_owned(), |(_, words)| (*words).to_owned())
    }
}

/// One result of a directory search or of `BulkResolveByName`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchEntity {
    /// The directory id.
    pub identifier: String,
    /// The user name as the search writes it.
    #[serde(default)]
    pub identity_name: Option<String>,
    /// The user name as a directory user object writes it (`BulkResolveByName`); an answer may
    /// carry both, so neither is an alias of the other.
    #[serde(default)]
    pub name: Option<String>,
    /// The e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// The entity type: a number on the live service (0 user, 1 group, 2 application), a string
    /// (`User`, `Group`, `Application`) in the Swagger; read as either.
    #[serde(default, rename = "type")]
    pub kind: Option<Value>,
    /// `DirectoryUser`, `DirectoryGroup`, …
    #[serde(default)]
    pub object_type: Option<String>,
}

impl SearchEntity {
    /// The user name, however the answer spells the field.
    pub fn user_name(&self) -> Option<&str> {
        self.identity_name.as_deref().or(self.name.as_deref())
    }

    /// Whether the result is a user: by `objectType` when it is given (it names robots and
    /// applications apart), else by `type`.
    pub fn is_user(&self) -> bool {
        if let Some(t) = self.object_type.as_deref() {
            return t.eq_ignore_ascii_case("DirectoryUser");
        }
        match &self.kind {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.eq_ignore_ascii_case("User"),
            Some(_) => false,
        }
    }
}

/// The body of a create: the service requires the client to choose the new group's id.
pub fn create_body(id: &str, partition: &str, name: &str, members: &[String]) -> Value {
    json!({
        "id": id,
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
#[allow(clippy::unwrap_used)]
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

    #[test]
    fn a_search_entity_is_a_user_by_object_type_then_by_numeric_or_string_type() {
        let e = |v: Value| serde_json::from_value::<SearchEntity>(v).unwrap();
        let id = "identifier";
        assert!(e(json!({id: "a", "type": 0})).is_user());
        assert!(!e(json!({id: "a", "type": 1})).is_user());
        assert!(!e(json!({id: "a", "type": 2})).is_user());
        assert!(e(json!({id: "a", "type": "User"})).is_user());
        assert!(!e(json!({id: "a", "type": "Group"})).is_user());
        assert!(e(json!({id: "a", "type": 2, "objectType": "DirectoryUser"})).is_user());
        assert!(!e(json!({id: "a", "type": 0, "objectType": "DirectoryRobotUser"})).is_user());
        let both = e(json!({id: "a", "identityName": "x", "name": "y"}));
        assert_eq!(both.user_name(), Some("x"));
        assert_eq!(e(json!({id: "a", "name": "y"})).user_name(), Some("y"));
    }
}

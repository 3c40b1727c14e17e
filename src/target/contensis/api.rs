//! Contensis Management API wire shapes and paths: the only code that knows them.
//!
//! Group and user names are percent-encoded as whole path segments (`/`, `,`, `%`, `?` and `#`
//! included), because a name is user data and the API also accepts names where ids go.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::target::http::encode as seg;

/// The token endpoint (client credentials or `contensis_classic` password grant).
pub const TOKEN: &str = "/authenticate/connect/token";
/// The group collection (`GET` lists groups, paged; `POST` creates one).
pub const GROUPS: &str = "/api/security/groups";

/// `/api/security/groups/{group}` (`GET` reads a group, `PUT` updates it,
/// `DELETE` deletes it).
pub fn group(group: &str) -> String {
    format!("{GROUPS}/{}", seg(group))
}

/// `/api/security/groups/{group}/users` (`GET` lists direct members, paged;
/// `POST` adds many users by GUID).
pub fn group_users(group: &str) -> String {
    format!("{GROUPS}/{}/users", seg(group))
}

/// `/api/security/groups/{group}/users/{user}` (`PUT` adds one user, `DELETE`
/// removes one).
pub fn group_user(group: &str, user: &str) -> String {
    format!("{GROUPS}/{}/users/{}", seg(group), seg(user))
}

/// `/api/security/groups/{group}/groups` (`GET` lists direct children, paged;
/// `POST` adds many child groups by GUID).
pub fn group_children(group: &str) -> String {
    format!("{GROUPS}/{}/groups", seg(group))
}

/// `/api/security/groups/{group}/groups/{child}` (`PUT` adds one child group,
/// `DELETE` removes one).
pub fn group_child(group: &str, child: &str) -> String {
    format!("{GROUPS}/{}/groups/{}", seg(group), seg(child))
}

/// The user collection (`GET` lists users, paged).
pub const USERS: &str = "/api/security/users";

/// `/api/security/users/{user}` (`GET` reads a user by id, username or
/// e-mail).
pub fn user(user: &str) -> String {
    format!("/api/security/users/{}", seg(user))
}

/// `PagedList<T>`, with the items kept as JSON until each is read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PagedList {
    /// Zero-based page number.
    pub page_index: u64,
    /// Items across all pages.
    pub total_count: u64,
    /// How many pages there are.
    pub page_count: u64,
    /// This page's items.
    pub items: Vec<Value>,
}

/// A group as the API returns it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// GUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// May be null.
    #[serde(default)]
    pub description: Option<String>,
    /// `contensis`, `sys` or `external`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// String-valued custom data.
    #[serde(default)]
    pub custom: Option<Map<String, Value>>,
}

/// A user as the API returns it (only what roster needs).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// GUID.
    pub id: String,
    /// Username, the user key roster matches on.
    pub username: String,
    /// E-mail address, which the API also accepts where a user is named (API keys have none).
    #[serde(default)]
    pub email: Option<String>,
}

/// The body of a group create (`POST /api/security/groups`).
pub fn create_body(name: &str, description: Option<&str>, custom: Option<&Value>) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), name.into());
    if let Some(d) = description {
        body.insert("description".into(), d.into());
    }
    body.insert(
        "custom".into(),
        custom.cloned().unwrap_or_else(|| Value::Object(Map::new())),
    );
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_whole_segments() {
        assert_eq!(
            group_user("Paper Street/Soap, Co?#%", "t.durden"),
            "/api/security/groups/Paper%20Street%2FSoap%2C%20Co%3F%23%25/users/t.durden"
        );
        assert_eq!(seg("Café"), "Caf%C3%A9");
    }
}

//! Crafter Studio wire shapes and paths, API 2 and API 1: the only code that knows them.
//!
//! Paths are relative to the configured `url`, which already ends with Studio's web context
//! (`/studio`). Query strings that carry names are built here with strict percent-encoding
//! (everything but RFC 3986 unreserved characters), never as forms, so that a `+` or a space
//! in a name cannot change its meaning.

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::target::http::encode as enc;

/// A query string (`?a=1&b=2`) from pairs, strictly percent-encoded.
pub fn query(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

// ---------------------------------------------------------------------------------------------
// API 2 (Studio 3.1 and 4.x)
// ---------------------------------------------------------------------------------------------

/// A1 list, A2 create, A3 update, A4 delete.
pub const GROUPS: &str = "/api/2/groups";

/// A6 list members, A7 add members, A8 remove members.
pub fn members(group_id: &str) -> String {
    format!("{GROUPS}/{}/members", enc(group_id))
}

/// A9: one user by username (a path that is all digits would be read as an id).
pub fn user(username: &str) -> String {
    format!("/api/2/users/{}", enc(username))
}

/// The group names Studio 4.x accepts: `^[a-zA-Z0-9_.]{3,512}$`.
pub fn valid_group_name(name: &str) -> bool {
    (3..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// The usernames Studio 4.x accepts in A7, A8 and A9: `^[a-zA-Z0-9_.]{3,255}$`.
pub fn valid_username(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Longest group description Studio 4.x accepts (characters).
pub const MAX_DESCRIPTION: usize = 1024;

/// The six groups every Studio 4.x install has (ids 1 to 6); roster never changes them.
pub const BUILT_IN_GROUPS: [&str; 6] = [
    "system_admin",
    "site_admin",
    "site_author",
    "site_publisher",
    "site_developer",
    "site_reviewer",
];

/// A1: a page of groups. `limit` is the number returned, not the number asked for.
#[derive(Debug, Deserialize)]
pub struct GroupPage {
    /// Groups across all pages.
    pub total: u64,
    /// This page's groups.
    #[serde(default)]
    pub groups: Vec<Group>,
}

/// A6: a page of members. Here `limit` echoes the request.
#[derive(Debug, Deserialize)]
pub struct MemberPage {
    /// Members across all pages.
    pub total: u64,
    /// This page's members.
    #[serde(default)]
    pub users: Vec<User>,
}

/// A group as API 2 returns it. `externallyManaged` is absent on Studio 3.1.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Numeric id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// May be null.
    #[serde(default)]
    pub desc: Option<String>,
    /// Owned by LDAP/SAML/header login: read-only to roster. `None` on Studio 3.1.
    #[serde(default)]
    pub externally_managed: Option<bool>,
}

/// A user as API 2 returns it (only what roster needs).
#[derive(Clone, Debug, Deserialize)]
pub struct User {
    /// Numeric id.
    pub id: i64,
    /// Username, the user key roster matches on.
    pub username: String,
}

/// A2 and A3 answers: `{"response": …, "group": Group}`.
#[derive(Debug, Deserialize)]
pub struct GroupAnswer {
    /// The group.
    pub group: Group,
}

/// A9 answer: `{"response": …, "user": User}`.
#[derive(Debug, Deserialize)]
pub struct UserAnswer {
    /// The user.
    pub user: User,
}

/// The `response` object every API 2 answer carries, as far as errors need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The API's own code (4001 group exists, 6000 user not found, ...), when the body had one.
    pub code: Option<i64>,
    /// What to show: the server's message, its code and any validation details.
    pub message: String,
}

/// Group already exists (A2).
pub const CODE_GROUP_EXISTS: i64 = 4001;
/// Group not found.
pub const CODE_GROUP_NOT_FOUND: i64 = 4000;

/// Reads an error body of either API: API 2's `{"response": {code, message, remedialAction}}`
/// (with `validationErrors`), or API 1's `{"message": …}`.
pub fn error_of(status: StatusCode, body: &str) -> ApiError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let Some(resp) = v.get("response").filter(|r| r.is_object()) else {
        return ApiError {
            code: None,
            message: crate::target::http::server_message(status, body),
        };
    };
    let code = resp.get("code").and_then(Value::as_i64);
    let text = resp
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    let mut message = match code {
        Some(c) => format!("{text} (code {c})"),
        None => text.to_owned(),
    };
    let details: Vec<String> = v
        .get("validationErrors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let m = e.get("message").and_then(Value::as_str)?;
            Some(match e.get("field").and_then(Value::as_str) {
                Some(f) => format!("{f}: {m}"),
                None => m.to_owned(),
            })
        })
        .collect();
    if !details.is_empty() {
        message = format!("{message} ({})", details.join("; "));
    }
    ApiError { code, message }
}

// ---------------------------------------------------------------------------------------------
// API 1 (Studio 3.0)
// ---------------------------------------------------------------------------------------------

/// The session login.
pub const V1_LOGIN: &str = "/api/1/services/api/1/security/login.json";
/// The prefix of the group scripts.
const V1_GROUP: &str = "/api/1/services/api/1/group";

/// One API 1 group script, such as `create.json`.
pub fn v1(script: &str) -> String {
    format!("{V1_GROUP}/{script}")
}

/// The XSRF cookie API 1 checks against the header of the same value.
pub const XSRF_COOKIE: &str = "XSRF-TOKEN";
/// The XSRF header.
pub const XSRF_HEADER: &str = "X-XSRF-TOKEN";
/// The session cookie.
pub const SESSION_COOKIE: &str = "JSESSIONID";

/// `get-per-site.json`: a page of a site's groups, each with all its users.
#[derive(Debug, Deserialize)]
pub struct V1GroupPage {
    /// This page's groups.
    #[serde(default)]
    pub groups: Vec<V1Group>,
    /// Groups across all pages.
    pub total: u64,
}

/// A group as API 1 returns it.
#[derive(Debug, Deserialize)]
pub struct V1Group {
    /// Name, unique within the site.
    pub group_name: String,
    /// May be null.
    #[serde(default)]
    pub description: Option<String>,
    /// The members.
    #[serde(default)]
    pub users: Vec<V1User>,
}

/// A user as API 1 returns it (only what roster needs).
#[derive(Debug, Deserialize)]
pub struct V1User {
    /// Username.
    pub username: String,
}

/// The value of the session cookie in a `Set-Cookie` header, if it sets one.
pub fn session_cookie(set_cookie: &str) -> Option<&str> {
    let first = set_cookie.split(';').next()?.trim();
    let (name, value) = first.split_once('=')?;
    (name.trim() == SESSION_COOKIE && !value.is_empty()).then_some(value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_strictly_encoded() {
        assert_eq!(
            query(&[("username", "a b+c".into()), ("username", "é&x".into())]),
            "?username=a%20b%2Bc&username=%C3%A9%26x"
        );
        assert_eq!(query(&[]), "");
    }

    #[test]
    fn name_rules_follow_studio_4() {
        assert!(valid_group_name("site_admin.eu"));
        assert!(!valid_group_name("ab"));
        assert!(!valid_group_name("CMS Editors"));
        assert!(!valid_group_name("dev-team"));
        assert!(!valid_group_name("Café_team"));
        assert!(valid_username("jane.doe"));
        assert!(!valid_username("jane@example.com"));
    }

    #[test]
    fn both_error_bodies_are_read() {
        let body = r#"{"response":{"code":1001,"message":"Invalid parameter(s)","remedialAction":"x","documentationUrl":""},"validationErrors":[{"field":"groupName","message":"bad"}]}"#;
        let e = error_of(StatusCode::BAD_REQUEST, body);
        assert_eq!(e.code, Some(1001));
        assert_eq!(
            e.message,
            "Invalid parameter(s) (code 1001) (groupName: bad)"
        );
        let e = error_of(
            StatusCode::CONFLICT,
            r#"{"message":"Group already exists"}"#,
        );
        assert_eq!((e.code, e.message.as_str()), (None, "Group already exists"));
    }

    #[test]
    fn the_session_cookie_is_found() {
        assert_eq!(
            session_cookie("JSESSIONID=abc123; Path=/studio; HttpOnly"),
            Some("abc123")
        );
        assert_eq!(session_cookie("XSRF-TOKEN=x; Path=/"), None);
    }
}

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

/// The bytes one `key=value` pair adds to a query string, with its `?` or `&`.
pub fn query_pair_len(key: &str, value: &str) -> usize {
    1 + enc(key).len() + 1 + enc(value).len()
}

// ---------------------------------------------------------------------------------------------
// API 2 (Studio 4.0.0 and later)
// ---------------------------------------------------------------------------------------------

/// The groups: `GET` lists them, `POST` creates one, `PATCH` updates one (its id in the body),
/// `DELETE ?id=…` deletes.
pub const GROUPS: &str = "/api/2/groups";

/// A group's members: `GET` lists them, `POST` adds users in bulk, `DELETE
/// ?userId=…&username=…` removes users in bulk.
pub fn members(group_id: &str) -> String {
    format!("{GROUPS}/{}/members", enc(group_id))
}

/// The user list (`GET /api/2/users`): every user Studio has, soft-deleted users left out.
pub const USERS: &str = "/api/2/users";

/// Shortest group name Studio accepts on a create.
pub const MIN_GROUP_NAME: usize = 3;
/// Longest group name Studio accepts on a create.
pub const MAX_GROUP_NAME: usize = 512;
/// Longest username Studio can hold (its `user.username` column).
pub const MAX_USERNAME: usize = 255;

/// Java's `\w`: ASCII letters, digits and `_`.
fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The group names Studio 4.x creates: `^[a-zA-Z][\w.\-]*$`, 3 to 512 characters.
pub fn valid_group_name(name: &str) -> bool {
    let b = name.as_bytes();
    (MIN_GROUP_NAME..=MAX_GROUP_NAME).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// The usernames Studio 4.x accepts (and so the only ones it can hold):
/// `^[a-zA-Z][\w.\-@+]+$`, at most 255 characters.
pub fn valid_username(name: &str) -> bool {
    let b = name.as_bytes();
    (2..=MAX_USERNAME).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|&c| word(c) || matches!(c, b'.' | b'-' | b'@' | b'+'))
}

/// Longest group description Studio 4.x accepts (characters).
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest group name Studio 3.0 (API 1) holds (characters).
pub const V1_MAX_NAME: usize = 255;
/// Longest group description Studio 3.0 (API 1) holds (characters).
pub const V1_MAX_DESCRIPTION: usize = 3000;

/// The six groups every Studio 4.x install has (ids 1 to 6); roster never changes them.
pub const BUILT_IN_GROUPS: [&str; 6] = [
    "system_admin",
    "site_admin",
    "site_author",
    "site_publisher",
    "site_developer",
    "site_reviewer",
];

/// A page of the group list (`GET /api/2/groups`). `limit` is the number returned, not the
/// number asked for.
#[derive(Debug, Deserialize)]
pub struct GroupPage {
    /// Groups across all pages.
    pub total: u64,
    /// This page's groups.
    #[serde(default)]
    pub groups: Vec<Group>,
}

/// A page of a group's members (`GET /api/2/groups/{id}/members`). Here `limit` echoes the request.
#[derive(Debug, Deserialize)]
pub struct MemberPage {
    /// Members across all pages.
    pub total: u64,
    /// This page's members.
    #[serde(default)]
    pub users: Vec<User>,
}

/// A group as API 2 returns it.
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
    /// Owned by LDAP/SAML/header login: read-only to roster.
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

/// The answers of a create (`POST /api/2/groups`) and an update (`PATCH /api/2/groups`):
/// `{"response": …, "group": Group}`.
#[derive(Debug, Deserialize)]
pub struct GroupAnswer {
    /// The group.
    pub group: Group,
}

/// A page of the user list (`GET /api/2/users`). `limit` is the number returned.
#[derive(Debug, Deserialize)]
pub struct UserPage {
    /// Users across all pages.
    pub total: u64,
    /// This page's users.
    #[serde(default)]
    pub users: Vec<User>,
}

/// The `response` object every API 2 answer carries, as far as errors need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The API's own code (4001 group exists, 6000 user not found, ...), when the body had one.
    pub code: Option<i64>,
    /// What to show: the server's message, its code and any validation details.
    pub message: String,
}

/// Group already exists (an answer of `POST /api/2/groups`).
pub const CODE_GROUP_EXISTS: i64 = 4001;
/// Group not found.
pub const CODE_GROUP_NOT_FOUND: i64 = 4000;

/// Reads an error body of either API: API 2's `{"response": {code, message, remedialAction}}`
/// (with `validationErrors`), or API 1's `{"message": …}`.
pub fn error_of(status: StatusCode, body: &str) -> ApiError {
    let lead = body.trim_start().get(..14).unwrap_or_default();
    if status == StatusCode::BAD_REQUEST
        && (lead.eq_ignore_ascii_case("<!doctype html") || lead.starts_with("<html"))
    {
        // Studio answers in JSON: an HTML 400 is Tomcat's (or a proxy's), refusing the request
        // before Studio read it.
        return ApiError {
            code: None,
            message: "Bad Request, as an HTML page from the web server in front of Studio (Tomcat \
                      answers so when a request's line and headers pass its maxHttpHeaderSize)"
                .to_owned(),
        };
    }
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
        assert!(valid_group_name("dev-team"));
        assert!(valid_group_name("abc"));
        assert!(valid_group_name(&format!("a{}", "b".repeat(511))));
        assert!(!valid_group_name(&format!("a{}", "b".repeat(512))));
        assert!(!valid_group_name("ab"));
        assert!(!valid_group_name("9team"));
        assert!(!valid_group_name("_team"));
        assert!(!valid_group_name(".team"));
        assert!(!valid_group_name("CMS Editors"));
        assert!(!valid_group_name("Café_team"));
        assert!(!valid_group_name("team@x"));
        assert!(valid_username("jane.doe"));
        assert!(valid_username("jane@corp.com"));
        assert!(valid_username("jane-doe"));
        assert!(valid_username("j+x"));
        assert!(valid_username("jo"));
        assert!(!valid_username("j"));
        assert!(!valid_username("1jane"));
        assert!(!valid_username("_jane"));
        assert!(!valid_username("jane doe"));
        assert!(!valid_username("jané"));
        assert!(!valid_username(&format!("j{}", "x".repeat(255))));
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
        let e = error_of(
            StatusCode::BAD_REQUEST,
            "<!doctype html><html lang=\"en\"><head><title>HTTP Status 400 – Bad Request</title>",
        );
        assert!(e.message.contains("maxHttpHeaderSize"), "{}", e.message);
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

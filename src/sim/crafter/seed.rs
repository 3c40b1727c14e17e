//! The Crafter Studio simulator's seed (`[crafter]` in a seed file): the API it serves, its
//! users and groups, the [`Behaviour`] switches, the name rules and the seed's validation.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::sim::faults::Faults;
use crate::sim::name_key;

/// Which Studio the simulator is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum SimApi {
    /// Studio 4.x: API 2 only, bearer tokens.
    #[default]
    #[serde(rename = "v2")]
    V2,
    /// Studio 3.1: API 2 (older shapes); API 1 group calls answer 301.
    #[serde(rename = "v3.1")]
    V31,
    /// Studio 3.0: API 1 only, groups per site, sessions.
    #[serde(rename = "v1")]
    V1,
}

/// The `[crafter]` table of a seed file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrafterSeed {
    /// Which Studio to be: `"v2"` (4.x, default), `"v3.1"` or `"v1"` (3.0).
    pub api: SimApi,
    /// The access token with every group and user permission (API 2).
    pub token: String,
    /// An access token of a user without group permissions: every group call answers 403.
    pub unprivileged_token: String,
    /// The user who may log in to API 1 (a member of `system_admin`).
    pub username: String,
    /// That user's password.
    pub password: String,
    /// The sites of Studio 3.0 (API 1 groups belong to one).
    pub sites: Vec<String>,
    /// Usernames of the users that exist. Users named as members of a seed group exist without
    /// being listed here.
    pub users: Vec<String>,
    /// The groups that exist at start (`[[crafter.group]]`), besides the six built-in ones.
    #[serde(rename = "group")]
    pub groups: Vec<SeedGroup>,
    /// Switches for behaviour the reference leaves unconfirmed.
    pub behaviour: Behaviour,
    /// Faults to inject from the start.
    pub faults: Faults,
}

impl Default for CrafterSeed {
    fn default() -> Self {
        Self {
            api: SimApi::V2,
            token: "roster-token".into(),
            unprivileged_token: "no-permissions-token".into(),
            username: "admin".into(),
            password: "admin".into(),
            sites: vec!["mysite".into()],
            users: Vec::new(),
            groups: Vec::new(),
            behaviour: Behaviour::default(),
            faults: Faults::default(),
        }
    }
}

/// A group in a seed file (`[[crafter.group]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// The name. A built-in name adds members to the built-in group.
    pub name: String,
    /// The description.
    #[serde(default)]
    pub description: Option<String>,
    /// Usernames of the members.
    #[serde(default)]
    pub members: Vec<String>,
    /// Made by LDAP/SAML/header login (API 2 shows `externallyManaged: true`).
    #[serde(default)]
    pub externally_managed: bool,
    /// The site of an API 1 (Studio 3.0) group; API 2 groups have none.
    #[serde(default)]
    pub site: Option<String>,
}

/// Switches for what the reference marks unconfirmed (`[crafter.behaviour]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behaviour {
    /// Names are unique and matched without regard to case, as under MariaDB's default
    /// collation (default true).
    pub case_insensitive_names: bool,
    /// Unknown JSON fields in `POST /api/2/groups` and `PATCH /api/2/groups` bodies are ignored
    /// (default) or refused with 400.
    pub unknown_fields: UnknownFields,
    /// The `field` of a bad group name in `validationErrors` (default `groupName`, the bean
    /// property; `name` is the JSON name).
    pub validation_field: String,
    /// Enforce the 4.x name and username rules (default true; whether every 4.0 release had
    /// them is not known).
    pub name_rules: bool,
    /// What a 4.x `PATCH /api/2/groups` takes: `desc_only` (4.0.3 and later, the default:
    /// `{id, desc}`) or `whole_group` (4.0.0 to 4.0.2: the name and the description are both
    /// replaced, so a missing name fails the update).
    pub patch: PatchShape,
    /// Tomcat's `maxHttpHeaderSize`: a request whose request line and headers together exceed
    /// this many bytes is answered `400 Bad Request` before Studio sees it (default 8192).
    pub max_http_header_size: usize,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            case_insensitive_names: true,
            unknown_fields: UnknownFields::Ignore,
            validation_field: "groupName".into(),
            name_rules: true,
            patch: PatchShape::DescOnly,
            max_http_header_size: 8192,
        }
    }
}

/// What a 4.x group update takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchShape {
    /// Studio 4.0.3 and later: `{id, desc}`; only the description changes.
    #[default]
    DescOnly,
    /// Studio 4.0.0 to 4.0.2: the whole group; name and description are both replaced.
    WholeGroup,
}

/// What API 2 does with JSON fields its request type does not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Ignored silently (Spring's default Jackson setup).
    #[default]
    Ignore,
    /// Refused with 400 code 1001.
    Reject,
}

impl CrafterSeed {
    /// Every problem with the seed (duplicate names, unknown sites, empty credentials), or
    /// nothing.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.token.is_empty() || self.username.is_empty() {
            problems.push("crafter: token and username must not be empty".to_owned());
        }
        if self.token == self.unprivileged_token {
            problems.push("crafter: token and unprivileged_token must differ".to_owned());
        }
        let ci = self.behaviour.case_insensitive_names;
        let mut names = HashSet::new();
        for g in &self.groups {
            if g.name.trim().is_empty() {
                problems.push("crafter.group: name must not be empty".to_owned());
            }
            if let Some(s) = &g.site
                && !self.sites.contains(s)
            {
                problems.push(format!(
                    "crafter.group {:?}: site {s:?} is not in crafter.sites",
                    g.name
                ));
            }
            if !names.insert((g.site.clone(), name_key(&g.name, ci))) {
                problems.push(format!("crafter.group {:?}: duplicate name", g.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Studio's group name pattern, `^[a-zA-Z][\w.\-]*$` (the length is checked apart).
pub(super) const GROUP_NAME_PATTERN: &str = "^[a-zA-Z][\\w.\\-]*$";

/// Java's `\w`.
pub(super) fn java_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `^[a-zA-Z][\w.\-]*$`.
pub(super) fn group_name_matches(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| java_word(c) || c == '.' || c == '-')
}

/// `^[a-zA-Z][\w.\-@+]+$`: the username rule of `POST /api/2/groups/{id}/members`,
/// `DELETE /api/2/groups/{id}/members` and `GET /api/2/users/{id or username}`.
pub(super) fn valid_username(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().count() >= 2
        && chars.all(|c| java_word(c) || matches!(c, '.' | '-' | '@' | '+'))
}

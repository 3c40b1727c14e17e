//! The UiPath Identity simulator's seed (`[uipath]` in a seed file): its partition, client,
//! users and groups, the [`Behaviour`] switches, and the seed's validation.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sim::faults::{self, Faults};
use crate::sim::name_key;

use super::*;

/// The `[uipath]` table of a seed file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiPathSeed {
    /// The organization name, the first path segment (`/{organization}/identity_/…`).
    pub organization: String,
    /// The organization's partition id (a UUID).
    pub partition_global_id: String,
    /// The external application's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The scopes the application was granted.
    pub scopes: Vec<String>,
    /// Lifetime of an access token (humantime; default `"1h"`).
    #[serde(with = "faults::duration")]
    pub token_ttl: Duration,
    /// Local users by name (e-mail `<name>@example.com`).
    pub users: Vec<String>,
    /// Users with every field given (`[[uipath.user]]`).
    #[serde(rename = "user")]
    pub user_details: Vec<SeedUser>,
    /// The groups that exist at start (`[[uipath.group]]`), besides the built-in ones.
    #[serde(rename = "group")]
    pub groups: Vec<SeedGroup>,
    /// Switches for behaviour the reference leaves unconfirmed.
    pub behaviour: Behaviour,
    /// Faults to inject from the start.
    pub faults: Faults,
}

impl Default for UiPathSeed {
    fn default() -> Self {
        Self {
            organization: "roster".into(),
            partition_global_id: DEFAULT_PARTITION.into(),
            client_id: "roster".into(),
            client_secret: "roster-secret".into(),
            scopes: DEFAULT_GRANTED.iter().map(|s| (*s).to_owned()).collect(),
            token_ttl: Duration::from_secs(3600),
            users: Vec::new(),
            user_details: Vec::new(),
            groups: Vec::new(),
            behaviour: Behaviour::default(),
            faults: Faults::default(),
        }
    }
}

/// A user of a seed file (`[[uipath.user]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// The user name.
    pub name: String,
    /// The e-mail; `<name>@example.com` when omitted.
    #[serde(default)]
    pub email: Option<String>,
    /// The directory identifier; a random UUID when omitted.
    #[serde(default)]
    pub identifier: Option<String>,
    /// `local` (default) or a directory such as `aad`.
    #[serde(default)]
    pub source: Option<String>,
    /// The display name; the name when omitted.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `user` (default), `robot` (a robot account) or `application` (an external application):
    /// what the account is when it is a group member.
    #[serde(default)]
    pub kind: AccountKind,
}

/// What a directory account is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A person.
    #[default]
    User,
    /// A robot account.
    Robot,
    /// An external application.
    Application,
}

/// A group of a seed file (`[[uipath.group]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// The name.
    pub name: String,
    /// 1 (local, default) or 0 (built-in).
    #[serde(rename = "type", default = "local_type")]
    pub kind: u8,
    /// Names of the members (made as local users when unknown).
    #[serde(default)]
    pub members: Vec<String>,
    /// A fixed id; a random UUID when omitted.
    #[serde(default)]
    pub id: Option<String>,
}

pub(super) fn local_type() -> u8 {
    1
}

/// Switches for behaviour the reference does not confirm (`[uipath.behaviour]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behaviour {
    /// Group names are unique without regard to case (default true).
    pub case_insensitive_names: bool,
    /// The answer to a create or rename onto a name that is taken (default 409).
    pub duplicate_name: DuplicateName,
    /// Adding a user who is already a member: ignored (default) or refused with 400.
    pub add_existing: Strictness,
    /// Removing a user who is not a member: ignored (default) or refused with 400.
    pub remove_missing: Strictness,
    /// Most results a directory search returns (default 50).
    pub search_limit: usize,
    /// Built-in groups cannot be changed or deleted (default true).
    pub protect_built_in: bool,
    /// How the directory search writes `type` (default a number, as the live service does).
    pub search_type: SearchType,
    /// `GET` of one group lists its `members` (default true, as the docs show); false: `members`
    /// is empty and only the `/Members` call lists them.
    pub members_inline: bool,
    /// `BulkResolveByName` matches names regardless of case (default false: exactly).
    pub bulk_resolve_ignores_case: bool,
    /// The answer to a create or update naming a member id that is no user (default 400).
    pub unknown_user: UnknownUser,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            case_insensitive_names: true,
            duplicate_name: DuplicateName::Conflict,
            add_existing: Strictness::Ignore,
            remove_missing: Strictness::Ignore,
            search_limit: 50,
            protect_built_in: true,
            search_type: SearchType::Number,
            members_inline: true,
            bulk_resolve_ignores_case: false,
            unknown_user: UnknownUser::BadRequest,
        }
    }
}

/// How a duplicate group name is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateName {
    /// `409 Conflict`.
    #[default]
    Conflict,
    /// `400 Bad Request`.
    BadRequest,
}

/// How the directory search writes an entity's `type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchType {
    /// `0` user, `1` group, `2` application.
    #[default]
    Number,
    /// `"User"`, `"Group"`, `"Application"` (the Swagger's form).
    String,
}

/// How a member id that is no user is answered in a create or update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownUser {
    /// `400 Bad Request`; nothing of the request is applied.
    #[default]
    BadRequest,
    /// `404 Not Found`; nothing of the request is applied.
    NotFound,
    /// Ignored: the other ids are applied.
    Ignore,
}

/// Whether a membership change that changes nothing is accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strictness {
    /// Accepted; nothing happens.
    #[default]
    Ignore,
    /// Refused with 400; nothing of the request is applied.
    Reject,
}

impl UiPathSeed {
    /// Every problem with the seed (duplicate names or ids, a bad partition id), or nothing.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.organization.trim().is_empty() || self.organization.contains(['/', '?', '#']) {
            problems.push(format!(
                "uipath.organization {:?} must be one path segment",
                self.organization
            ));
        }
        if Uuid::parse_str(&self.partition_global_id).is_err() {
            problems.push(format!(
                "uipath.partition_global_id {:?} is not a UUID",
                self.partition_global_id
            ));
        }
        if self.client_id.trim().is_empty() {
            problems.push("uipath.client_id must not be empty".to_owned());
        }
        let key = |n: &str| name_key(n, self.behaviour.case_insensitive_names);
        let mut names: BTreeSet<String> = BUILT_IN.iter().map(|n| key(n)).collect();
        let mut ids = BTreeSet::new();
        for g in &self.groups {
            if g.name.trim().is_empty() {
                problems.push("uipath.group: name must not be empty".to_owned());
            }
            if !names.insert(key(&g.name)) {
                problems.push(format!("uipath.group {:?}: duplicate name", g.name));
            }
            if g.kind > 1 {
                problems.push(format!("uipath.group {:?}: type must be 0 or 1", g.name));
            }
            if let Some(id) = &g.id
                && !ids.insert(id.to_lowercase())
            {
                problems.push(format!("uipath.group {:?}: duplicate id {id}", g.name));
            }
        }
        let mut users = BTreeSet::new();
        for u in self
            .users
            .iter()
            .chain(self.user_details.iter().map(|u| &u.name))
        {
            if !users.insert(u.to_lowercase()) {
                problems.push(format!("uipath user {u:?}: duplicate name"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

//! The UiPath Identity simulator: an in-memory stand-in for the group and directory-search part
//! of UiPath's Platform Management (Identity) API and its token endpoint, served by axum.
//!
//! Users run it through `roster sim`; the integration tests start it in-process and inspect its
//! state and call log. Its JSON is written from the API reference (`targets/uipath.md` and
//! UiPath's API guide pages), never from the connector's wire types.
//!
//! It serves the Automation Cloud form, `/{organization}/identity_/…`, and also
//! `/{organization}/identity/…` (the Automation Suite spelling). Everything is
//! organization-scoped, the token endpoint included: as newer Cloud organizations do, a call
//! without the organization (`/identity_/connect/token`) is a 404.
//!
//! What the reference leaves unconfirmed is a switch in [`Behaviour`]. Choices made where the
//! reference is silent:
//! * Errors use ASP.NET Core problem details (`type`, `title`, `status`, `detail`, `traceId`;
//!   validation errors carry `errors: {field: [messages]}`), the shape the Identity service's
//!   framework produces. A 401 has an empty body and `WWW-Authenticate: Bearer
//!   error="invalid_token"`; token errors are OAuth's `{"error": "invalid_client"}`.
//! * Scopes: reads of groups need `PM.Group.Read` (or `PM.Group`), writes `PM.Group.Write` (or
//!   `PM.Group`), directory search and the bulk lookups `PM.Directory`; otherwise 403. A token request for a scope the
//!   application was not granted is refused with `invalid_scope`; without `scope` it gets all.
//! * The group list carries no members; a single group carries its `members` (or, under
//!   [`Behaviour::members_inline`] `false`, an empty `members` list), and
//!   `GET /api/Group/{partitionGlobalId}/{groupId}/Members?top=&skip=` pages through them as
//!   `{totalCount, results: [{id, type}]}` (type 0 user, 1 robot, 2 directory user, 3 directory
//!   group, 4 robot account, 5 application; page size 10 by default, at most 1,000).
//! * `PUT` is served at `/api/Group/{groupId}` only: the partition form
//!   `/api/Group/{partitionGlobalId}/{groupId}` allows `GET` and `DELETE`, and answers 405 to a
//!   `PUT`. `name` is required on every update.
//! * A create needs a client-generated `id` (a GUID): without it the answer is the validation 400
//!   "The Id field is required."; an id that is taken is answered as a taken name is. A create
//!   answers 201 with the new group. A member id that is not a user is answered as
//!   [`Behaviour::unknown_user`] says.
//! * Built-in groups (type 0: Everyone, Administrators) cannot be changed or deleted (403).
//! * Directory search matches `startsWith` case-insensitively against the user name, e-mail and
//!   display name, sorted by name, at most [`Behaviour::search_limit`] results; its `type` is a
//!   number (0 user, 1 group, 2 application) as the live service sends it, or the Swagger's
//!   string under [`Behaviour::search_type`].
//! * `POST /api/Directory/BulkResolveByName/{partitionGlobalId}` with `{entityNames, entityType,
//!   scope}` answers `{name: entity | null}` for every name asked, at most
//!   [`BULK_RESOLVE_LIMIT`] names per call (more is a 400). A user name matches a
//!   user's name or e-mail, exactly or regardless of case per
//!   [`Behaviour::bulk_resolve_ignores_case`]. Robot accounts are never resolved.
//! * `POST /api/Directory/BulkResolve/{partitionGlobalId}` with `{entityIds, entityTypes}` (one
//!   type per id) answers `{id: entity | null}`, under the same limit.
//!
//! The control endpoints `GET /_sim/state`, `GET|PUT /_sim/faults`, `GET|PUT /_sim/behaviour`
//! and `GET /_sim/calls` need no token: serve the simulator on loopback only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::control::{self, Call, ControlPut, SimControl, SimCore, Tokens};
use crate::sim::faults::{self, FaultHost, FaultInjector, Faults};
use crate::sim::name_key;

/// The partition id of the default seed (the example id of UiPath's API guide).
pub const DEFAULT_PARTITION: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";

/// The scopes the default seed grants the external application.
pub const DEFAULT_GRANTED: [&str; 5] = [
    "PM.Group",
    "PM.Group.Read",
    "PM.Group.Write",
    "PM.Directory",
    "PM.User.Read",
];

/// The most names (or ids) one `BulkResolveByName` (or `BulkResolve`) call takes.
pub const BULK_RESOLVE_LIMIT: usize = 20;

/// The built-in groups every organization has (type 0).
pub const BUILT_IN: [&str; 2] = ["Administrators", "Everyone"];

const FIXED_TIME: &str = "2024-01-01T00:00:00Z";

// ---------------------------------------------------------------------------------------------
// Seed and switches
// ---------------------------------------------------------------------------------------------

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

fn local_type() -> u8 {
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

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// A group as the simulator holds it, members by user name, for inspection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimGroup {
    /// The id.
    pub id: String,
    /// The name, as stored.
    pub name: String,
    /// 0 built-in, 1 local.
    pub kind: u8,
    /// User names of the members.
    pub members: BTreeSet<String>,
    /// Directory identifiers of the members.
    pub member_ids: BTreeSet<String>,
}

/// A running UiPath Identity simulator. Clones share the state.
#[derive(Clone, Debug)]
pub struct UiPathSim {
    inner: Arc<SimCore<SimState>>,
    /// The first path segment; fixed for the simulator's life.
    organization: Arc<str>,
}

#[derive(Debug)]
struct User {
    identifier: String,
    name: String,
    email: Option<String>,
    display_name: String,
    source: String,
    kind: AccountKind,
}

#[derive(Debug)]
struct GroupRec {
    id: String,
    name: String,
    kind: u8,
    members: BTreeSet<String>,
    modified: String,
}

/// The simulator's state behind its handles (opaque: only its handles reach inside).
#[derive(Debug)]
pub struct SimState {
    partition: String,
    client_id: String,
    client_secret: String,
    granted: BTreeSet<String>,
    token_ttl: Duration,
    behaviour: Behaviour,
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, GroupRec>,
    tokens: Tokens<BTreeSet<String>>,
    token_calls: usize,
    writes: usize,
    clock: u64,
}

impl UiPathSim {
    /// A simulator holding what `seed` describes, plus the built-in groups. Lenient: a member the
    /// seed does not list as a user is made one ([`UiPathSeed::validate`] reports real problems).
    pub fn new(seed: UiPathSeed) -> Self {
        let mut st = SimState {
            partition: seed.partition_global_id.to_lowercase(),
            client_id: seed.client_id,
            client_secret: seed.client_secret,
            granted: seed.scopes.into_iter().collect(),
            token_ttl: seed.token_ttl,
            behaviour: seed.behaviour,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            tokens: Tokens::default(),
            token_calls: 0,
            writes: 0,
            clock: 0,
        };
        for name in BUILT_IN {
            let id = Uuid::new_v4().to_string();
            st.groups.insert(
                id.clone(),
                GroupRec {
                    id,
                    name: name.to_owned(),
                    kind: 0,
                    members: BTreeSet::new(),
                    modified: FIXED_TIME.to_owned(),
                },
            );
        }
        for u in &seed.users {
            st.ensure_user(u);
        }
        for u in seed.user_details {
            let identifier = u.identifier.unwrap_or_else(|| Uuid::new_v4().to_string());
            st.users.insert(
                identifier.clone(),
                User {
                    identifier,
                    email: Some(u.email.unwrap_or_else(|| format!("{}@example.com", u.name))),
                    display_name: u.display_name.unwrap_or_else(|| u.name.clone()),
                    source: u.source.unwrap_or_else(|| "local".to_owned()),
                    kind: u.kind,
                    name: u.name,
                },
            );
        }
        for g in seed.groups {
            let members = g.members.iter().map(|m| st.ensure_user(m)).collect();
            let id = match st.group_by_name(&g.name) {
                Some(id) => id,
                None => g.id.clone().unwrap_or_else(|| Uuid::new_v4().to_string()),
            };
            st.groups.insert(
                id.clone(),
                GroupRec {
                    id,
                    name: g.name,
                    kind: g.kind,
                    members,
                    modified: FIXED_TIME.to_owned(),
                },
            );
        }
        Self {
            inner: Arc::new(SimCore::new(st, seed.faults)),
            organization: seed.organization.into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.inner.lock()
    }

    /// The HTTP API (behind the call log and the fault layer) and the `/_sim/…` control
    /// endpoints (neither logged nor faulted).
    pub fn router(&self) -> Router {
        let org = &self.organization;
        let api = Router::new()
            .route("/connect/token", post(token))
            .route("/api/Group", post(create_group))
            .route("/api/Group/{x}", get(list_groups).put(update_group))
            .route(
                "/api/Group/{partition}/{group}",
                get(get_group).delete(delete_group),
            )
            .route("/api/Group/{partition}/{group}/Members", get(group_members))
            .route("/api/Directory/Search/{partition}", get(search))
            .route(
                "/api/Directory/BulkResolveByName/{partition}",
                post(bulk_resolve_by_name),
            )
            .route("/api/Directory/BulkResolve/{partition}", post(bulk_resolve))
            .fallback(not_found)
            .with_state(self.clone());
        let app = Router::new()
            .nest(&format!("/{org}/identity_"), api.clone())
            .nest(&format!("/{org}/identity"), api);
        control::wrap_api(self, app)
    }

    /// What follows `http://host:port` in a target's `url`: `/{organization}`.
    pub fn base_path(&self) -> String {
        format!("/{}", self.organization)
    }

    /// The organization's partition id.
    pub fn partition_global_id(&self) -> String {
        self.lock().partition.clone()
    }

    /// How many token requests were received.
    pub fn token_requests(&self) -> usize {
        self.lock().token_calls
    }

    /// How many requests changed the state.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// Names of all groups, built-in ones included, sorted.
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lock()
            .groups
            .values()
            .map(|g| g.name.clone())
            .collect();
        names.sort();
        names
    }

    /// The group of this name (by the name rules in force).
    pub fn group(&self, name: &str) -> Option<SimGroup> {
        let st = self.lock();
        st.group_by_name(name).and_then(|id| st.sim_group(&id))
    }

    /// Makes a local user exist (e-mail `<name>@example.com`) and returns its identifier.
    pub fn add_user(&self, name: &str) -> String {
        self.lock().ensure_user(name)
    }

    /// The identifier of the user of this name or e-mail.
    pub fn user_id(&self, name: &str) -> Option<String> {
        self.lock().user_by_name(name)
    }

    /// Sets a local group's members directly (making the group and unknown users as needed),
    /// bypassing the API; returns the group's id.
    pub fn insert_group(&self, name: &str, members: &[&str]) -> String {
        let mut st = self.lock();
        let members: BTreeSet<String> = members.iter().map(|m| st.ensure_user(m)).collect();
        let id = st
            .group_by_name(name)
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        st.groups.insert(
            id.clone(),
            GroupRec {
                id: id.clone(),
                name: name.to_owned(),
                kind: 1,
                members,
                modified: FIXED_TIME.to_owned(),
            },
        );
        id
    }

    /// Deletes the user of this name or e-mail from the directory and from every group, as an
    /// administrator would; returns whether there was one.
    pub fn remove_user(&self, name: &str) -> bool {
        let mut st = self.lock();
        let Some(id) = st.user_by_name(name) else {
            return false;
        };
        st.users.remove(&id);
        for g in st.groups.values_mut() {
            g.members.remove(&id);
        }
        true
    }

    /// Invalidates every access token issued so far.
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }
}

impl FaultHost for UiPathSim {
    fn injector(&self) -> &FaultInjector {
        self.inner.faults()
    }

    fn is_api_call(&self, path: &str) -> bool {
        path.contains("/api/")
    }

    fn fault_response(&self, status: StatusCode) -> Response {
        let message = status.canonical_reason().unwrap_or("Injected failure");
        ApiError::Status(status, message.to_owned()).into_response()
    }

    fn expire_tokens(&self) {
        UiPathSim::expire_tokens(self);
    }

    /// Directory lookups (`BulkResolveByName`) read with a `POST`.
    fn is_write(&self, method: &axum::http::Method, path: &str) -> bool {
        faults::is_write(method) && !path.contains("/api/Directory/")
    }
}

impl SimControl for UiPathSim {
    type Behaviour = Behaviour;
    type State = SimState;

    const CONTROL_PUT: ControlPut = ControlPut::Echo {
        bad_body: bad_control_body,
    };

    fn core(&self) -> &SimCore<SimState> {
        &self.inner
    }

    fn behaviour_in(state: &mut SimState) -> &mut Behaviour {
        &mut state.behaviour
    }

    fn state_json(&self) -> Value {
        let st = self.lock();
        let mut groups: Vec<SimGroup> =
            st.groups.keys().filter_map(|id| st.sim_group(id)).collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        let mut users: Vec<&str> = st.users.values().map(|u| u.name.as_str()).collect();
        users.sort_unstable();
        json!({ "groups": groups, "users": users, "writes": st.writes })
    }

    /// Logs API calls only; token requests are counted apart ([`UiPathSim::token_requests`]), and
    /// requests for neither (unknown paths) are not logged.
    fn log_call(&self, call: &Call) {
        if call.path.ends_with("/connect/token") {
            self.lock().token_calls += 1;
        } else if self.is_api_call(&call.path) {
            self.core().calls().push(call.line());
        }
    }
}

/// The answer to a control `PUT` whose body does not fit: a problem-details 400.
fn bad_control_body(message: String) -> Response {
    ApiError::BadRequest(message).into_response()
}

impl SimState {
    fn key(&self, name: &str) -> String {
        name_key(name, self.behaviour.case_insensitive_names)
    }

    fn group_by_name(&self, name: &str) -> Option<String> {
        let key = self.key(name);
        self.groups
            .values()
            .find(|g| g.name == name)
            .or_else(|| self.groups.values().find(|g| self.key(&g.name) == key))
            .map(|g| g.id.clone())
    }

    fn user_by_name(&self, name: &str) -> Option<String> {
        let lower = name.to_lowercase();
        self.users
            .values()
            .find(|u| {
                u.name.to_lowercase() == lower
                    || u.email
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase() == lower)
            })
            .map(|u| u.identifier.clone())
    }

    fn ensure_user(&mut self, name: &str) -> String {
        if let Some(id) = self.user_by_name(name) {
            return id;
        }
        let identifier = Uuid::new_v4().to_string();
        self.users.insert(
            identifier.clone(),
            User {
                identifier: identifier.clone(),
                name: name.to_owned(),
                email: Some(format!("{name}@example.com")),
                display_name: name.to_owned(),
                source: "local".to_owned(),
                kind: AccountKind::User,
            },
        );
        identifier
    }

    fn sim_group(&self, id: &str) -> Option<SimGroup> {
        let g = self.groups.get(id)?;
        Some(SimGroup {
            id: g.id.clone(),
            name: g.name.clone(),
            kind: g.kind,
            members: g
                .members
                .iter()
                .filter_map(|m| self.users.get(m).map(|u| u.name.clone()))
                .collect(),
            member_ids: g.members.clone(),
        })
    }

    fn touch(&mut self) -> String {
        self.clock += 1;
        format!(
            "2024-01-01T00:00:{:02}.{:06}Z",
            self.clock / 1_000_000 % 60,
            self.clock % 1_000_000
        )
    }

    // --- auth ---

    /// The scopes of the bearer token, or 401.
    fn caller(&mut self, headers: &HeaderMap) -> Result<BTreeSet<String>, ApiError> {
        control::bearer(headers)
            .and_then(|token| self.tokens.get(token))
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }

    /// The caller, whose token must carry one of `any_of`.
    fn require(&mut self, headers: &HeaderMap, any_of: &[&str]) -> Result<(), ApiError> {
        let scopes = self.caller(headers)?;
        if any_of.iter().any(|s| scopes.contains(*s)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "The access token lacks the scope this call needs: one of {}",
                any_of.join(", ")
            )))
        }
    }

    fn check_partition(&self, partition: &str) -> Result<(), ApiError> {
        if partition.eq_ignore_ascii_case(&self.partition) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "Partition {partition} was not found"
            )))
        }
    }

    fn group_id(&self, id: &str) -> Result<String, ApiError> {
        let lower = id.to_lowercase();
        self.groups
            .keys()
            .find(|k| k.to_lowercase() == lower)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("Group {id} was not found")))
    }

    fn check_name(&self, name: &str, except: Option<&str>) -> Result<(), ApiError> {
        match self.group_by_name(name) {
            Some(other) if Some(other.as_str()) != except => {
                Err(self.taken(format!("A group named '{name}' already exists")))
            }
            _ => Ok(()),
        }
    }

    /// The answer to a name or id that is taken, as [`Behaviour::duplicate_name`] says.
    fn taken(&self, message: String) -> ApiError {
        match self.behaviour.duplicate_name {
            DuplicateName::Conflict => ApiError::Conflict(message),
            DuplicateName::BadRequest => ApiError::BadRequest(message),
        }
    }

    /// A directory entity's `type`, as [`Behaviour::search_type`] says it is written.
    fn entity_type(&self, number: u8, name: &str) -> Value {
        match self.behaviour.search_type {
            SearchType::Number => Value::from(number),
            SearchType::String => Value::from(name),
        }
    }

    fn protect(&self, id: &str) -> Result<(), ApiError> {
        if self.behaviour.protect_built_in && self.groups.get(id).is_some_and(|g| g.kind == 0) {
            Err(ApiError::Forbidden(
                "Built-in groups cannot be changed".into(),
            ))
        } else {
            Ok(())
        }
    }

    // --- JSON ---

    fn user_json(&self, id: &str) -> Value {
        let Some(u) = self.users.get(id) else {
            return Value::Null;
        };
        json!({
            "objectType": match u.kind {
                AccountKind::User => "DirectoryUser",
                AccountKind::Robot => "DirectoryRobotUser",
                AccountKind::Application => "DirectoryApplication",
            },
            "source": u.source,
            "identifier": u.identifier,
            "name": u.name,
            "displayName": u.display_name,
            "email": u.email,
            "firstName": u.display_name,
            "lastName": null,
            "isActive": true,
        })
    }

    fn group_json(&self, id: &str, members: bool) -> Value {
        let Some(g) = self.groups.get(id) else {
            return Value::Null;
        };
        let mut v = json!({
            "id": g.id,
            "name": g.name,
            "displayName": g.name,
            "type": g.kind,
            "creationTime": FIXED_TIME,
            "lastModificationTime": g.modified,
        });
        if members {
            v["members"] = if self.behaviour.members_inline {
                g.members.iter().map(|m| self.user_json(m)).collect()
            } else {
                Value::Array(Vec::new())
            };
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Every failure answer of the API, as ASP.NET Core problem details.
#[derive(Debug)]
enum ApiError {
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    BadRequest(String),
    Validation(String, String),
    Status(StatusCode, String),
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": format!("https://tools.ietf.org/html/rfc9110#section-{}", section(status)),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "traceId": format!("00-{}-{}-00", Uuid::new_v4().simple(), &Uuid::new_v4().simple().to_string()[..16]),
    });
    (status, Json(body)).into_response()
}

fn section(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "15.5.1",
        403 => "15.5.4",
        404 => "15.5.5",
        409 => "15.5.10",
        429 => "15.5.30",
        _ => "15.6.1",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => {
                let mut resp = StatusCode::UNAUTHORIZED.into_response();
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                resp
            }
            Self::Forbidden(m) => problem(StatusCode::FORBIDDEN, &m),
            Self::NotFound(m) => problem(StatusCode::NOT_FOUND, &m),
            Self::Conflict(m) => problem(StatusCode::CONFLICT, &m),
            Self::BadRequest(m) => problem(StatusCode::BAD_REQUEST, &m),
            Self::Validation(field, message) => {
                let body = json!({
                    "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                    "title": "One or more validation errors occurred.",
                    "status": 400,
                    "errors": { field: [message] },
                    "traceId": format!("00-{}-00", Uuid::new_v4().simple()),
                });
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
            Self::Status(status, m) => problem(status, &m),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

type ApiResult = Result<Response, ApiError>;

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "No such resource")
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

/// `POST …/connect/token`: the client credentials grant.
async fn token(
    State(sim): State<UiPathSim>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Ok(Form(pairs)) = form else {
        return oauth_error("invalid_request");
    };
    let field = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mut st = sim.lock();
    match field("grant_type") {
        Some("client_credentials") => {}
        Some(_) => return oauth_error("unsupported_grant_type"),
        None => return oauth_error("invalid_request"),
    }
    if field("client_id") != Some(st.client_id.as_str())
        || field("client_secret") != Some(st.client_secret.as_str())
    {
        return oauth_error("invalid_client");
    }
    let scopes: BTreeSet<String> = match field("scope") {
        Some(s) if !s.trim().is_empty() => s.split_whitespace().map(str::to_owned).collect(),
        _ => st.granted.clone(),
    };
    if !scopes.is_subset(&st.granted) {
        return oauth_error("invalid_scope");
    }
    let ttl = st.token_ttl;
    let scope = scopes.iter().cloned().collect::<Vec<_>>().join(" ");
    let access = st.tokens.issue(scopes, ttl);
    (
        StatusCode::OK,
        Json(json!({
            "access_token": access,
            "expires_in": faults::whole_secs_up(ttl),
            "token_type": "Bearer",
            "scope": scope,
        })),
    )
        .into_response()
}

const READ: &[&str] = &["PM.Group.Read", "PM.Group"];
const WRITE: &[&str] = &["PM.Group.Write", "PM.Group"];

/// `GET …/api/Group/{partitionGlobalId}`: every group, a bare array.
async fn list_groups(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(partition): Path<String>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, READ)?;
    st.check_partition(&partition)?;
    let mut groups: Vec<&GroupRec> = st.groups.values().collect();
    groups.sort_by(|a, b| (a.name.to_lowercase(), &a.name).cmp(&(b.name.to_lowercase(), &b.name)));
    let items: Vec<Value> = groups.iter().map(|g| st.group_json(&g.id, false)).collect();
    Ok((StatusCode::OK, Json(Value::Array(items))).into_response())
}

/// `GET …/api/Group/{partitionGlobalId}/{groupId}`: one group with its members.
async fn get_group(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path((partition, group)): Path<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, READ)?;
    st.check_partition(&partition)?;
    let id = st.group_id(&group)?;
    Ok((StatusCode::OK, Json(st.group_json(&id, true))).into_response())
}

/// A JSON object body, or 400.
fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::BadRequest(
            "The request body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

fn field<'a>(body: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The body's `partitionGlobalId`, which must be the organization's.
fn body_partition(st: &SimState, body: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    match field(body, "partitionGlobalId").and_then(Value::as_str) {
        Some(p) if p.eq_ignore_ascii_case(&st.partition) => Ok(()),
        Some(p) => Err(ApiError::BadRequest(format!(
            "partitionGlobalId {p} does not match the organization"
        ))),
        None => Err(ApiError::Validation(
            "PartitionGlobalId".into(),
            "The PartitionGlobalId field is required.".into(),
        )),
    }
}

/// The body's `id`: required, and a GUID (the service binds it to one).
fn body_id(body: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match field(body, "id") {
        None | Some(Value::Null) => Err(ApiError::Validation(
            "Id".into(),
            "The Id field is required.".into(),
        )),
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(u) => Ok(u.to_string()),
            Err(_) => Err(ApiError::Validation(
                "$.id".into(),
                "The JSON value could not be converted to System.Guid.".into(),
            )),
        },
        Some(_) => Err(ApiError::Validation(
            "$.id".into(),
            "The JSON value could not be converted to System.Guid.".into(),
        )),
    }
}

fn body_name(body: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match field(body, "name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(ApiError::Validation(
            "Name".into(),
            "The Name field is required.".into(),
        )),
    }
}

/// A list of account identifiers (absent or null is empty); an id that is no account is
/// answered as [`Behaviour::unknown_user`] says (dropped when ignored).
fn body_ids(
    st: &SimState,
    body: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Vec<String>, ApiError> {
    let items = match field(body, key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::Validation(
                key.to_owned(),
                format!("{key} must be an array of strings"),
            ));
        }
    };
    let mut ids = Vec::new();
    for item in items {
        let Some(s) = item.as_str() else {
            return Err(ApiError::Validation(
                key.to_owned(),
                format!("{key} must be an array of strings"),
            ));
        };
        let found = st.users.keys().find(|k| k.eq_ignore_ascii_case(s)).cloned();
        let message = || format!("Directory user {s} was not found");
        match (found, st.behaviour.unknown_user) {
            (Some(id), _) => ids.push(id),
            (None, UnknownUser::BadRequest) => return Err(ApiError::BadRequest(message())),
            (None, UnknownUser::NotFound) => return Err(ApiError::NotFound(message())),
            (None, UnknownUser::Ignore) => {}
        }
    }
    Ok(ids)
}

/// `POST …/api/Group`: create a local group with members.
async fn create_group(State(sim): State<UiPathSim>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, WRITE)?;
    let body = object(&body)?;
    body_partition(&st, &body)?;
    let id = body_id(&body)?;
    let name = body_name(&body)?;
    let members = body_ids(&st, &body, "directoryUserMemberIDs")?;
    if st.group_id(&id).is_ok() {
        return Err(st.taken(format!("A group with id '{id}' already exists")));
    }
    st.check_name(&name, None)?;
    let modified = st.touch();
    st.groups.insert(
        id.clone(),
        GroupRec {
            id: id.clone(),
            name,
            kind: 1,
            members: members.into_iter().collect(),
            modified,
        },
    );
    st.writes += 1;
    Ok((StatusCode::CREATED, Json(st.group_json(&id, true))).into_response())
}

/// `PUT …/api/Group/{groupId}`: the only update path.
async fn update_group(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult {
    update(&sim, &headers, &group, &body)
}

/// Renames and changes members in one request; applies all of it or nothing.
fn update(sim: &UiPathSim, headers: &HeaderMap, group: &str, body: &[u8]) -> ApiResult {
    let mut st = sim.lock();
    st.require(headers, WRITE)?;
    let id = st.group_id(group)?;
    st.protect(&id)?;
    let body = object(body)?;
    body_partition(&st, &body)?;
    let name = body_name(&body)?;
    let add = body_ids(&st, &body, "directoryUserIDsToAdd")?;
    let remove = body_ids(&st, &body, "directoryUserIDsToRemove")?;
    if let Some(both) = add.iter().find(|a| remove.contains(a)) {
        return Err(ApiError::BadRequest(format!(
            "Directory user {both} is both added and removed"
        )));
    }
    st.check_name(&name, Some(&id))?;
    let current = st
        .groups
        .get(&id)
        .map(|g| g.members.clone())
        .unwrap_or_default();
    if st.behaviour.add_existing == Strictness::Reject
        && let Some(m) = add.iter().find(|a| current.contains(*a))
    {
        return Err(ApiError::BadRequest(format!(
            "Directory user {m} is already a member of the group"
        )));
    }
    if st.behaviour.remove_missing == Strictness::Reject
        && let Some(m) = remove.iter().find(|r| !current.contains(*r))
    {
        return Err(ApiError::BadRequest(format!(
            "Directory user {m} is not a member of the group"
        )));
    }
    let modified = st.touch();
    let changed = {
        let Some(g) = st.groups.get_mut(&id) else {
            return Err(ApiError::NotFound(format!("Group {group} was not found")));
        };
        let before = (g.name.clone(), g.members.clone());
        g.name = name;
        g.members.extend(add);
        for r in &remove {
            g.members.remove(r);
        }
        let changed = before != (g.name.clone(), g.members.clone());
        if changed {
            g.modified = modified;
        }
        changed
    };
    if changed {
        st.writes += 1;
    }
    Ok((StatusCode::OK, Json(st.group_json(&id, true))).into_response())
}

/// `DELETE …/api/Group/{partitionGlobalId}/{groupId}`.
async fn delete_group(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path((partition, group)): Path<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, WRITE)?;
    st.check_partition(&partition)?;
    let id = st.group_id(&group)?;
    st.protect(&id)?;
    st.groups.remove(&id);
    st.writes += 1;
    Ok(StatusCode::NO_CONTENT.into_response())
}

const SOURCES: [&str; 6] = [
    "LocalUsers",
    "DirectoryUsers",
    "LocalGroups",
    "DirectoryGroups",
    "RobotAccounts",
    "Applications",
];

/// `GET …/api/Directory/Search/{partitionGlobalId}?startsWith=…[&sourceFilter=…|&entityType=…]`.
async fn search(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(partition): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, &["PM.Directory"])?;
    st.check_partition(&partition)?;
    let get = |k: &'static str| {
        q.iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let Some(prefix) = get("startsWith").next().filter(|s| !s.is_empty()) else {
        return Err(ApiError::Validation(
            "startsWith".into(),
            "The startsWith field is required.".into(),
        ));
    };
    let filters: Vec<&str> = get("sourceFilter")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let entity = get("entityType").next();
    if entity.is_some() && !filters.is_empty() {
        return Err(ApiError::BadRequest(
            "entityType cannot be used together with sourceFilter".into(),
        ));
    }
    if let Some(bad) = filters
        .iter()
        .find(|f| !SOURCES.iter().any(|s| s.eq_ignore_ascii_case(f)))
    {
        return Err(ApiError::BadRequest(format!(
            "Unknown sourceFilter value {bad}"
        )));
    }
    let has = |s: &str| filters.is_empty() || filters.iter().any(|f| f.eq_ignore_ascii_case(s));
    let (want_users, want_groups) = match entity {
        None => (true, true),
        Some(e) if e.eq_ignore_ascii_case("User") => (true, false),
        Some(e) if e.eq_ignore_ascii_case("Group") => (false, true),
        Some(e) if e.eq_ignore_ascii_case("Application") => (false, false),
        Some(e) => return Err(ApiError::BadRequest(format!("Unknown entityType {e}"))),
    };
    let p = prefix.to_lowercase();
    let starts = |s: &str| s.to_lowercase().starts_with(&p);
    let mut found: Vec<(String, Value)> = Vec::new();
    if want_users {
        // Robot accounts and applications are not searched as users.
        for u in st.users.values().filter(|u| u.kind == AccountKind::User) {
            let source_ok = if u.source == "local" {
                has("LocalUsers")
            } else {
                has("DirectoryUsers")
            };
            if source_ok
                && (starts(&u.name)
                    || u.email.as_deref().is_some_and(starts)
                    || starts(&u.display_name))
            {
                found.push((
                    u.name.to_lowercase(),
                    json!({
                        "source": u.source,
                        "identifier": u.identifier,
                        "identityName": u.name,
                        "displayName": u.display_name,
                        "email": u.email,
                        "type": st.entity_type(0, "User"),
                        "objectType": "DirectoryUser",
                    }),
                ));
            }
        }
    }
    if want_groups && has("LocalGroups") {
        for g in st.groups.values().filter(|g| starts(&g.name)) {
            found.push((
                g.name.to_lowercase(),
                json!({
                    "source": "local",
                    "identifier": g.id,
                    "identityName": g.name,
                    "displayName": g.name,
                    "email": null,
                    "type": st.entity_type(1, "Group"),
                    "objectType": "DirectoryGroup",
                }),
            ));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let limit = st.behaviour.search_limit;
    let items: Vec<Value> = found.into_iter().take(limit).map(|(_, v)| v).collect();
    Ok((StatusCode::OK, Json(Value::Array(items))).into_response())
}

/// `GET …/api/Group/{partitionGlobalId}/{groupId}/Members?top=&skip=`: one page of a group's
/// members, ids and account types only.
async fn group_members(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path((partition, group)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, READ)?;
    st.check_partition(&partition)?;
    let id = st.group_id(&group)?;
    let number = |key: &str, default: usize| -> Result<usize, ApiError> {
        match q.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| {
                ApiError::Validation(key.to_owned(), format!("The value '{v}' is not valid."))
            }),
        }
    };
    let top = number("top", 10)?.min(1000);
    let skip = number("skip", 0)?;
    let members: Vec<&String> = st
        .groups
        .get(&id)
        .map(|g| g.members.iter().collect())
        .unwrap_or_default();
    let results: Vec<Value> = members
        .iter()
        .skip(skip)
        .take(top)
        .filter_map(|m| st.users.get(*m))
        .map(|u| {
            let kind = match (u.kind, u.source.as_str()) {
                (AccountKind::User, "local") => 0,
                (AccountKind::User, _) => 2,
                (AccountKind::Robot, _) => 4,
                (AccountKind::Application, _) => 5,
            };
            json!({ "id": u.identifier, "type": kind })
        })
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({ "totalCount": members.len(), "results": results })),
    )
        .into_response())
}

/// `POST …/api/Directory/BulkResolveByName/{partitionGlobalId}`: `{entityNames, entityType,
/// scope}` → `{name: entity | null}`.
async fn bulk_resolve_by_name(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(partition): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, &["PM.Directory"])?;
    st.check_partition(&partition)?;
    let body = object(&body)?;
    let names: Vec<String> = match field(&body, "entityNames") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| {
                ApiError::Validation(
                    "EntityNames".into(),
                    "EntityNames must be an array of strings".into(),
                )
            })?,
        _ => {
            return Err(ApiError::Validation(
                "EntityNames".into(),
                "The EntityNames field is required.".into(),
            ));
        }
    };
    let Some(kind) = field(&body, "entityType").and_then(Value::as_str) else {
        return Err(ApiError::Validation(
            "EntityType".into(),
            "The EntityType field is required.".into(),
        ));
    };
    if names.len() > BULK_RESOLVE_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "At most {BULK_RESOLVE_LIMIT} names can be resolved at once"
        )));
    }
    let ignore_case = st.behaviour.bulk_resolve_ignores_case;
    let same = |a: &str, b: &str| {
        if ignore_case {
            a.to_lowercase() == b.to_lowercase()
        } else {
            a == b
        }
    };
    let mut out = serde_json::Map::new();
    for name in names {
        let entity = if kind.eq_ignore_ascii_case("User") {
            st.users
                .values()
                .find(|u| {
                    u.kind == AccountKind::User
                        && (same(&u.name, &name)
                            || u.email.as_deref().is_some_and(|e| same(e, &name)))
                })
                .map(|u| st.user_json(&u.identifier))
        } else if kind.eq_ignore_ascii_case("Group") {
            st.groups.values().find(|g| same(&g.name, &name)).map(|g| {
                json!({
                    "objectType": "DirectoryGroup",
                    "source": "local",
                    "identifier": g.id,
                    "name": g.name,
                    "displayName": g.name,
                })
            })
        } else if kind.eq_ignore_ascii_case("Application") {
            None
        } else {
            return Err(ApiError::BadRequest(format!("Unknown entityType {kind}")));
        };
        out.insert(name, entity.unwrap_or(Value::Null));
    }
    Ok((StatusCode::OK, Json(Value::Object(out))).into_response())
}

/// `POST …/api/Directory/BulkResolve/{partitionGlobalId}`: `{entityIds, entityTypes}` →
/// `{id: entity | null}`.
async fn bulk_resolve(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(partition): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, &["PM.Directory"])?;
    st.check_partition(&partition)?;
    let body = object(&body)?;
    let strings = |key: &str| -> Result<Vec<String>, ApiError> {
        match field(&body, key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    ApiError::Validation(
                        key.to_owned(),
                        format!("{key} must be an array of strings"),
                    )
                }),
            _ => Err(ApiError::Validation(
                key.to_owned(),
                format!("The {key} field is required."),
            )),
        }
    };
    let ids = strings("EntityIds")?;
    let types = strings("EntityTypes")?;
    if ids.len() != types.len() {
        return Err(ApiError::BadRequest(
            "EntityTypes must be as long as EntityIds".into(),
        ));
    }
    if ids.len() > BULK_RESOLVE_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "At most {BULK_RESOLVE_LIMIT} entities can be resolved at once"
        )));
    }
    let mut out = serde_json::Map::new();
    for (id, kind) in ids.into_iter().zip(types) {
        let entity = if kind.eq_ignore_ascii_case("User") {
            st.users
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&id))
                .map(|k| st.user_json(k))
        } else if kind.eq_ignore_ascii_case("Group") || kind.eq_ignore_ascii_case("Application") {
            None
        } else {
            return Err(ApiError::BadRequest(format!("Unknown entity type {kind}")));
        };
        out.insert(id, entity.unwrap_or(Value::Null));
    }
    Ok((StatusCode::OK, Json(Value::Object(out))).into_response())
}

impl crate::sim::Simulator for UiPathSim {
    type Seed = UiPathSeed;

    fn from_seed(seed: UiPathSeed) -> Self {
        UiPathSim::new(seed)
    }

    fn check_seed(seed: &UiPathSeed) -> Result<(), Vec<String>> {
        seed.validate()
    }

    fn router(&self) -> axum::Router {
        UiPathSim::router(self)
    }

    fn base_path(&self) -> String {
        UiPathSim::base_path(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seed_builds_state_with_built_in_groups() {
        let seed: UiPathSeed = toml::from_str(
            r#"
            organization = "acme"
            users = ["alice"]
            [[user]]
            name = "bob"
            email = "bob@corp.example"
            source = "aad"
            [[group]]
            name = "Robots"
            members = ["alice", "carol"]
            "#,
        )
        .unwrap();
        seed.validate().unwrap();
        let sim = UiPathSim::new(seed);
        assert_eq!(sim.base_path(), "/acme");
        assert_eq!(sim.group_names(), ["Administrators", "Everyone", "Robots"]);
        let robots = sim.group("robots").unwrap();
        assert_eq!(robots.kind, 1);
        assert_eq!(
            robots.members,
            BTreeSet::from(["alice".into(), "carol".into()])
        );
        assert_eq!(sim.group("Everyone").unwrap().kind, 0);
        assert!(sim.user_id("bob@corp.example").is_some());
    }

    #[test]
    fn validate_finds_problems() {
        let seed: UiPathSeed = toml::from_str(
            r#"
            partition_global_id = "magic-7"
            users = ["a", "A"]
            [[group]]
            name = "G"
            [[group]]
            name = "g"
            [[group]]
            name = "everyone"
            "#,
        )
        .unwrap();
        let problems = seed.validate().unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}

//! The Contensis simulator: an in-memory stand-in for the security part of the Contensis
//! Management API (groups, their users and child groups, and the token endpoint), served by axum.
//!
//! Users run it through `roster sim` to try roster without a Contensis tenant; the integration
//! tests start it in-process on `127.0.0.1:0` and inspect its state and call log. Its JSON is
//! written from the API reference (`targets/contensis.md`), never from the connector's wire
//! types, so that a misreading of the API shared by both cannot make the tests pass.
//!
//! What the reference leaves unconfirmed is a switch in [`Behaviour`], so the connector can be
//! tested against every plausible server; failures come from [`crate::sim::faults`].
//!
//! Choices the reference leaves open (beyond the [`Behaviour`] switches):
//! * A client-chosen `id` on create is honoured when it is a free GUID (409 when taken).
//! * Every group carries `autoMembershipEmailDomains` (null unless seeded or written) and any
//!   extra fields its seed gives it; a `PUT` writes each from its body, and clears the ones it
//!   omits unless [`Behaviour::put_mode`] is merge.
//! * The bulk adds (`POST .../users`, `POST .../groups`) take a bare JSON array of GUID strings
//!   and answer 204; an id already there or unknown is answered as [`Behaviour`] says.
//! * `C4` on a group that is not a direct child answers `404 "Child group not found"`.
//! * With [`Behaviour::protect_system_groups`], `PUT`/`DELETE` of a `sys` or `external` group and
//!   membership changes of an `external` group answer 403; the members of `sys` groups (such as
//!   `System Administrators`) can be changed, as they can in the product.
//! * `order` honours only the direction (`-` prefix) of its first field: groups are always sorted
//!   by name, users by username (case-insensitively). `zenQL` and `excludedGroups` are refused
//!   with 400 rather than ignored, so that nobody mistakes an unfiltered answer for a filtered one.
//! * The API key of the `client_credentials` grant is a user-like principal whose username is
//!   the client id and whose email is null (a live server lists API keys among users).
//! * Tokens are opaque random strings; `expires_in` is the TTL in whole seconds, rounded up.
//!
//! The control endpoints `GET /_sim/state`, `GET|PUT /_sim/faults`, `GET|PUT /_sim/behaviour` and
//! `GET /_sim/calls` need no token: the simulator is meant for loopback only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, head, post, put};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::sim::control::{self, ControlPut, SimControl, SimCore, Tokens};
use crate::sim::faults::{self, FaultHost, FaultInjector, Faults};
use crate::sim::name_key;

/// The name of the built-in `sys` group whose members may call the security API.
pub const SYSTEM_ADMINISTRATORS: &str = "System Administrators";

/// Longest group name the simulator accepts (the reference documents no limit).
pub const MAX_NAME_LEN: usize = 255;

const DEFAULT_PAGE_SIZE: u32 = 25;
const UNAUTHORIZED: &str = "Authorization has been denied for this request.";
const ALREADY_EXISTS: &str = "Resource already exists in target location";
const GROUP_NOT_FOUND: &str = "Group not found";
const USER_NOT_FOUND: &str = "User not found";
const USER_NOT_IN_GROUP: &str = "User not in group";
const CHILD_NOT_FOUND: &str = "Child group not found";
const FIXED_TIME: &str = "2024-01-01T00:00:00Z";

// ---------------------------------------------------------------------------------------------
// Seed and switches
// ---------------------------------------------------------------------------------------------

/// The `[contensis]` table of a seed file: credentials, users, groups, switches and faults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContensisSeed {
    /// Client id of the API key accepted by the `client_credentials` grant.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Whether the API key is a member of `System Administrators`; when false every group call
    /// made with its token is answered 403.
    pub client_is_admin: bool,
    /// Usernames of the users that exist; each gets the email `<username>@example.com`. Users
    /// named as members of a seed group or in a login exist without being listed here.
    pub users: Vec<String>,
    /// Users who may sign in with the `contensis_classic` grant (`[[contensis.login]]`). They
    /// may call the security API when they are members of `System Administrators`.
    #[serde(rename = "login")]
    pub logins: Vec<SeedLogin>,
    /// Lifetime of an access token (humantime; default `"1h"`).
    #[serde(with = "faults::duration")]
    pub token_ttl: Duration,
    /// The groups that exist at start (`[[contensis.group]]`). A group named
    /// `System Administrators` adds to the built-in one instead of making a second.
    #[serde(rename = "group")]
    pub groups: Vec<SeedGroup>,
    /// Switches for behaviour the API reference leaves unconfirmed.
    pub behaviour: Behaviour,
    /// Faults to inject from the start.
    pub faults: Faults,
}

impl Default for ContensisSeed {
    fn default() -> Self {
        Self {
            client_id: "roster".into(),
            client_secret: "roster-secret".into(),
            client_is_admin: true,
            users: Vec::new(),
            logins: Vec::new(),
            token_ttl: Duration::from_secs(3600),
            groups: Vec::new(),
            behaviour: Behaviour::default(),
            faults: Faults::default(),
        }
    }
}

/// A user who may sign in with a password (`[[contensis.login]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedLogin {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A group in a seed file (`[[contensis.group]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// The unique name.
    pub name: String,
    /// The description, if any.
    #[serde(default)]
    pub description: Option<String>,
    /// `contensis` (default), `sys` or `external`.
    #[serde(rename = "type", default)]
    pub kind: GroupKind,
    /// Custom string fields.
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
    /// Usernames of the direct members.
    #[serde(default)]
    pub members: Vec<String>,
    /// Names of the direct child groups, each defined in the same seed.
    #[serde(default)]
    pub children: Vec<String>,
    /// A fixed id (GUID); a random one when omitted.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// The e-mail domains whose users join the group automatically (`autoMembershipEmailDomains`,
    /// the "Domains" of the group in the UI).
    #[serde(default)]
    pub auto_membership_email_domains: Option<Vec<String>>,
    /// Further fields a group carries on the server, by their wire name (`[contensis.group.extra]`):
    /// returned on every read, and cleared by a replacing `PUT` that omits them.
    #[serde(default)]
    pub extra: BTreeMap<String, Value>,
}

/// The `type` of a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// Made in the UI or through the API.
    #[default]
    Contensis,
    /// Built in, such as `System Administrators`.
    Sys,
    /// Made by single sign-on from an identity provider.
    External,
}

impl GroupKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contensis => "contensis",
            Self::Sys => "sys",
            Self::External => "external",
        }
    }
}

/// Switches for behaviour the API reference marks as unconfirmed (`[contensis.behaviour]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behaviour {
    /// Group names are unique, and looked up, without regard to case (default true).
    pub case_insensitive_names: bool,
    /// Answer to adding a user or child group that is already a direct member (default 204).
    pub add_existing: AddExisting,
    /// Whether `PUT` of a group clears the fields it omits or keeps them (default replace).
    pub put_mode: PutMode,
    /// Refuse, with 422, a child group that would close a cycle such as A > B > A (default true).
    /// A group can never be its own child.
    pub reject_cycles: bool,
    /// Largest page served; a larger `pageSize` is clamped to it (default 1000).
    pub max_page_size: u32,
    /// `PUT`/`DELETE` of `sys` and `external` groups, and membership changes of `external`
    /// groups, are answered 403 (default true).
    pub protect_system_groups: bool,
    /// Answer to a bulk add (`POST .../users`, `POST .../groups`) naming an id that already is a
    /// direct member (default 409).
    pub bulk_add_existing: BulkExisting,
    /// Answer to a bulk add naming an id that is no user (or no group) (default 404).
    pub bulk_add_unknown: BulkUnknown,
    /// When a bulk add is refused (an existing or unknown id), whether the other ids were added
    /// all the same before the refusal (default true: the answer says nothing of what happened).
    pub bulk_add_partial: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            case_insensitive_names: true,
            add_existing: AddExisting::NoContent,
            put_mode: PutMode::Replace,
            reject_cycles: true,
            max_page_size: 1000,
            protect_system_groups: true,
            bulk_add_existing: BulkExisting::Conflict,
            bulk_add_unknown: BulkUnknown::NotFound,
            bulk_add_partial: true,
        }
    }
}

/// The answer to adding a member that is already there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddExisting {
    /// `204 No Content`, as if it had been added.
    #[default]
    NoContent,
    /// `409 "Resource already exists in target location"`.
    Conflict,
}

/// The answer to a bulk add naming an id that already is a direct member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkExisting {
    /// Skipped: the others are added and the answer is 204.
    Ignore,
    /// `409 "Resource already exists in target location"`.
    #[default]
    Conflict,
    /// `400` naming the id.
    BadRequest,
}

/// The answer to a bulk add naming an id that is no user (or no group).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkUnknown {
    /// Skipped: the others are added and the answer is 204.
    Ignore,
    /// `404 "User not found"` (or `"Group not found"`).
    #[default]
    NotFound,
}

/// What `PUT` of a group does with the fields its body omits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PutMode {
    /// Omitted fields are cleared (`description` null, `custom` empty, any other field such as
    /// `autoMembershipEmailDomains` null); `name` is required.
    #[default]
    Replace,
    /// Omitted fields keep their values.
    Merge,
}

impl ContensisSeed {
    /// Checks what serde cannot: unique names, known child groups, no self-children, no cycles
    /// when [`Behaviour::reject_cycles`] is set. Returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.client_id.trim().is_empty() {
            problems.push("contensis.client_id must not be empty".to_owned());
        }
        let key = |n: &str| name_key(n, self.behaviour.case_insensitive_names);
        let mut names: BTreeMap<String, &str> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for g in &self.groups {
            if g.name.trim().is_empty() {
                problems.push("contensis.group: name must not be empty".to_owned());
            }
            if let Some(prev) = names.insert(key(&g.name), &g.name) {
                problems.push(format!(
                    "contensis.group {:?}: duplicate name (also {prev:?})",
                    g.name
                ));
            }
            if let Some(id) = g.id
                && !ids.insert(id)
            {
                problems.push(format!("contensis.group {:?}: duplicate id {id}", g.name));
            }
        }
        let sys = key(SYSTEM_ADMINISTRATORS);
        for g in &self.groups {
            for c in &g.children {
                if key(c) == key(&g.name) {
                    problems.push(format!(
                        "contensis.group {:?}: a group cannot be its own child",
                        g.name
                    ));
                } else if !names.contains_key(&key(c)) && key(c) != sys {
                    problems.push(format!(
                        "contensis.group {:?}: child {c:?} is not a group of the seed",
                        g.name
                    ));
                }
            }
        }
        if problems.is_empty() && self.behaviour.reject_cycles {
            let sim = ContensisSim::new(self.clone());
            let st = sim.lock();
            for g in st.groups.values() {
                if st.descendants(g.id).contains(&g.id) {
                    problems.push(format!(
                        "contensis.group {:?}: child groups form a cycle",
                        g.name
                    ));
                }
            }
        }
        let mut logins = BTreeSet::new();
        for l in &self.logins {
            if !logins.insert(l.username.to_lowercase()) {
                problems.push(format!(
                    "contensis.login {:?}: duplicate username",
                    l.username
                ));
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

/// A group as the simulator stores it, with members and children by name, for inspection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimGroup {
    /// The GUID.
    pub id: String,
    /// The name, as stored.
    pub name: String,
    /// The description.
    pub description: Option<String>,
    /// `contensis`, `sys` or `external`.
    pub kind: String,
    /// Custom fields.
    pub custom: BTreeMap<String, String>,
    /// Usernames of the direct members.
    pub members: BTreeSet<String>,
    /// Names of the direct child groups.
    pub children: BTreeSet<String>,
    /// The other fields the group carries (`autoMembershipEmailDomains` and any seeded extra).
    pub extra: BTreeMap<String, Value>,
}

/// A running Contensis simulator's state. Cloning gives another handle on the same state: one
/// handle serves requests, another lets a test look inside.
#[derive(Clone, Debug)]
pub struct ContensisSim {
    inner: Arc<SimCore<SimState>>,
}

#[derive(Debug)]
struct User {
    id: Uuid,
    username: String,
    email: Option<String>,
    api_key: bool,
}

#[derive(Debug)]
struct GroupRec {
    id: Uuid,
    name: String,
    description: Option<String>,
    kind: GroupKind,
    custom: BTreeMap<String, String>,
    members: BTreeSet<Uuid>,
    children: BTreeSet<Uuid>,
    /// Fields beyond those above, by wire name; always holds `autoMembershipEmailDomains`.
    extra: BTreeMap<String, Value>,
}

/// The field a group's auto-membership domains are sent in.
const AUTO_DOMAINS: &str = "autoMembershipEmailDomains";

/// The extra fields of a new group: `autoMembershipEmailDomains` null, plus `more`.
fn extra_fields(
    domains: Option<&Vec<String>>,
    more: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    let mut extra = BTreeMap::from([(AUTO_DOMAINS.to_owned(), json!(domains))]);
    extra.extend(more.iter().map(|(k, v)| (k.clone(), v.clone())));
    extra
}

/// The simulator's state behind its handles (opaque: only its handles reach inside).
#[derive(Debug)]
pub struct SimState {
    client_id: String,
    client_secret: String,
    api_key_user: Uuid,
    logins: Vec<SeedLogin>,
    token_ttl: Duration,
    behaviour: Behaviour,
    users: BTreeMap<Uuid, User>,
    groups: BTreeMap<Uuid, GroupRec>,
    sys_admins: Uuid,
    tokens: Tokens<Uuid>,
    refresh_tokens: HashMap<String, Uuid>,
    writes: usize,
}

impl ContensisSim {
    /// A simulator holding what `seed` describes, plus the built-in `System Administrators`
    /// group (with the API key as a member when [`ContensisSeed::client_is_admin`]). Lenient:
    /// a child group the seed does not define is skipped ([`ContensisSeed::validate`] reports it).
    pub fn new(seed: ContensisSeed) -> Self {
        let api_key_user = Uuid::new_v4();
        let sys_admins = Uuid::new_v4();
        let mut st = SimState {
            client_id: seed.client_id.clone(),
            client_secret: seed.client_secret,
            api_key_user,
            logins: seed.logins.clone(),
            token_ttl: seed.token_ttl,
            behaviour: seed.behaviour,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            sys_admins,
            tokens: Tokens::default(),
            refresh_tokens: HashMap::new(),
            writes: 0,
        };
        st.users.insert(
            api_key_user,
            User {
                id: api_key_user,
                username: seed.client_id,
                email: None,
                api_key: true,
            },
        );
        let mut admins = BTreeSet::new();
        if seed.client_is_admin {
            admins.insert(api_key_user);
        }
        st.groups.insert(
            sys_admins,
            GroupRec {
                id: sys_admins,
                name: SYSTEM_ADMINISTRATORS.into(),
                description: Some("Members administer the whole environment".into()),
                kind: GroupKind::Sys,
                custom: BTreeMap::new(),
                members: admins,
                children: BTreeSet::new(),
                extra: extra_fields(None, &BTreeMap::new()),
            },
        );
        for name in seed
            .users
            .iter()
            .chain(seed.logins.iter().map(|l| &l.username))
        {
            st.ensure_user(name);
        }
        let mut made = Vec::new();
        for g in &seed.groups {
            let members: BTreeSet<Uuid> = g.members.iter().map(|m| st.ensure_user(m)).collect();
            let id = match st.group_by_name(&g.name) {
                Some(id) => {
                    if let Some(rec) = st.groups.get_mut(&id) {
                        if g.description.is_some() {
                            rec.description.clone_from(&g.description);
                        }
                        rec.custom.extend(g.custom.clone());
                        rec.members.extend(members);
                        if let Some(d) = &g.auto_membership_email_domains {
                            rec.extra.insert(AUTO_DOMAINS.to_owned(), json!(d));
                        }
                        rec.extra.extend(g.extra.clone());
                    }
                    id
                }
                None => {
                    let id = g.id.filter(|id| !st.groups.contains_key(id));
                    let id = id.unwrap_or_else(Uuid::new_v4);
                    st.groups.insert(
                        id,
                        GroupRec {
                            id,
                            name: g.name.clone(),
                            description: g.description.clone(),
                            kind: g.kind,
                            custom: g.custom.clone(),
                            members,
                            children: BTreeSet::new(),
                            extra: extra_fields(g.auto_membership_email_domains.as_ref(), &g.extra),
                        },
                    );
                    id
                }
            };
            made.push((id, &g.children));
        }
        for (id, children) in made {
            let kids: Vec<Uuid> = children
                .iter()
                .filter_map(|c| st.group_by_name(c))
                .filter(|c| *c != id)
                .collect();
            if let Some(rec) = st.groups.get_mut(&id) {
                rec.children.extend(kids);
            }
        }
        Self {
            inner: Arc::new(SimCore::new(st, seed.faults)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.inner.lock()
    }

    /// The axum router serving the API (`/authenticate/connect/token`, `/api/security/...`)
    /// behind the call log and the fault layer, plus the unauthenticated `/_sim/...` control
    /// endpoints, which are neither logged nor faulted.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/authenticate/connect/token", post(token))
            .route("/api/security/groups", get(list_groups).post(create_group))
            .route("/api/security/groups/", get(list_groups).post(create_group))
            .route(
                "/api/security/groups/{group}",
                get(get_group).put(update_group).delete(delete_group),
            )
            .route(
                "/api/security/groups/{group}/users",
                get(list_group_users).post(add_users),
            )
            .route(
                "/api/security/groups/{group}/users/{user}",
                put(add_user).delete(remove_user).head(has_user),
            )
            .route(
                "/api/security/groups/{group}/groups",
                get(list_children).post(add_children),
            )
            .route(
                "/api/security/groups/{group}/groups/{child}",
                put(add_child).delete(remove_child),
            )
            .route("/api/security/users", get(list_users))
            .route("/api/security/users/{user}", get(get_user))
            .route("/api/security/users/{user}/groups", get(user_groups))
            .route(
                "/api/security/users/{user}/groups/{groups}",
                head(user_in_groups),
            )
            .fallback(not_found)
            .with_state(self.clone());
        control::wrap_api(self, api)
    }

    /// Names of all groups as stored, sorted; includes `sys` groups.
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

    /// The group called `name` (by the simulator's own name rules), with members and children by
    /// name.
    pub fn group(&self, name: &str) -> Option<SimGroup> {
        let st = self.lock();
        st.group_by_name(name).and_then(|id| st.sim_group(id))
    }

    /// Every group, sorted by name.
    pub fn groups(&self) -> Vec<SimGroup> {
        let st = self.lock();
        let mut all: Vec<SimGroup> = st
            .groups
            .keys()
            .filter_map(|id| st.sim_group(*id))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The id of a user, looked up by username or email.
    pub fn user_id(&self, username: &str) -> Option<String> {
        let st = self.lock();
        st.user_by_name(username).map(|id| id.to_string())
    }

    /// How many requests changed the state.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// Makes a user exist (email `<username>@example.com`); nothing happens if it does.
    pub fn add_user(&self, username: &str) {
        self.lock().ensure_user(username);
    }

    /// Sets up a `contensis` group directly, bypassing the API, and returns its id. An existing
    /// group of that name keeps its id and gets the given description, members and children
    /// (replacing the old ones). Unknown users are made; unknown child groups are made empty.
    pub fn insert_group(
        &self,
        name: &str,
        description: Option<&str>,
        members: &[&str],
        children: &[&str],
    ) -> String {
        let mut st = self.lock();
        let members: BTreeSet<Uuid> = members.iter().map(|m| st.ensure_user(m)).collect();
        let id = st.ensure_group(name);
        let kids: BTreeSet<Uuid> = children.iter().map(|c| st.ensure_group(c)).collect();
        if let Some(rec) = st.groups.get_mut(&id) {
            rec.description = description.map(str::to_owned);
            rec.members = members;
            rec.children = kids;
        }
        id.to_string()
    }

    /// Deletes a user (and its memberships) directly, as another administrator would.
    pub fn remove_user(&self, username: &str) {
        let mut st = self.lock();
        if let Some(id) = st.user_by_name(username) {
            st.users.remove(&id);
            for g in st.groups.values_mut() {
                g.members.remove(&id);
            }
        }
    }

    /// Invalidates every access token issued so far (refresh tokens still work).
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }
}

impl FaultHost for ContensisSim {
    fn injector(&self) -> &FaultInjector {
        self.inner.faults()
    }

    fn is_api_call(&self, path: &str) -> bool {
        path.starts_with("/api/")
    }

    fn fault_response(&self, status: StatusCode) -> Response {
        let message = status.canonical_reason().unwrap_or("Injected failure");
        ApiError::Status(status, message.to_owned()).into_response()
    }

    fn expire_tokens(&self) {
        ContensisSim::expire_tokens(self);
    }
}

impl SimControl for ContensisSim {
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
        let groups = self.groups();
        let st = self.lock();
        let mut users: Vec<&str> = st.users.values().map(|u| u.username.as_str()).collect();
        users.sort_unstable();
        json!({ "groups": groups, "users": users, "writes": st.writes })
    }
}

/// The answer to a control `PUT` whose body does not fit: the API's own 400.
fn bad_control_body(message: String) -> Response {
    ApiError::BadRequest(message).into_response()
}

impl SimState {
    fn key(&self, name: &str) -> String {
        name_key(name, self.behaviour.case_insensitive_names)
    }

    /// The group of that name: an exact match first, then one by the name rules in force.
    fn group_by_name(&self, name: &str) -> Option<Uuid> {
        let key = self.key(name);
        self.groups
            .values()
            .find(|g| g.name == name)
            .or_else(|| self.groups.values().find(|g| self.key(&g.name) == key))
            .map(|g| g.id)
    }

    /// A group by path identifier: a GUID-shaped string is an id, anything else a name.
    fn find_group(&self, ident: &str) -> Option<Uuid> {
        match Uuid::parse_str(ident) {
            Ok(id) => self.groups.contains_key(&id).then_some(id),
            Err(_) => self.group_by_name(ident),
        }
    }

    fn group_id(&self, ident: &str) -> Result<Uuid, ApiError> {
        self.find_group(ident)
            .ok_or(ApiError::NotFound(GROUP_NOT_FOUND))
    }

    fn user_by_name(&self, name: &str) -> Option<Uuid> {
        let lower = name.to_lowercase();
        self.users
            .values()
            .find(|u| {
                u.username.to_lowercase() == lower
                    || u.email
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase() == lower)
            })
            .map(|u| u.id)
    }

    /// A user by path identifier: `@current`, a GUID, a username or an email.
    fn find_user(&self, ident: &str, caller: Uuid) -> Option<Uuid> {
        if ident.eq_ignore_ascii_case("@current") {
            return Some(caller);
        }
        match Uuid::parse_str(ident) {
            Ok(id) => self.users.contains_key(&id).then_some(id),
            Err(_) => self.user_by_name(ident),
        }
    }

    fn user_id(&self, ident: &str, caller: Uuid) -> Result<Uuid, ApiError> {
        self.find_user(ident, caller)
            .ok_or(ApiError::NotFound(USER_NOT_FOUND))
    }

    fn ensure_user(&mut self, username: &str) -> Uuid {
        if let Some(id) = self.user_by_name(username) {
            return id;
        }
        let id = Uuid::new_v4();
        self.users.insert(
            id,
            User {
                id,
                username: username.to_owned(),
                email: Some(format!("{username}@example.com")),
                api_key: false,
            },
        );
        id
    }

    fn ensure_group(&mut self, name: &str) -> Uuid {
        if let Some(id) = self.group_by_name(name) {
            return id;
        }
        let id = Uuid::new_v4();
        self.groups.insert(
            id,
            GroupRec {
                id,
                name: name.to_owned(),
                description: None,
                kind: GroupKind::Contensis,
                custom: BTreeMap::new(),
                members: BTreeSet::new(),
                children: BTreeSet::new(),
                extra: extra_fields(None, &BTreeMap::new()),
            },
        );
        id
    }

    /// Every group reachable through child links from `root` (`root` itself only via a cycle).
    fn descendants(&self, root: Uuid) -> BTreeSet<Uuid> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Uuid> = self
            .groups
            .get(&root)
            .map(|g| g.children.iter().copied().collect())
            .unwrap_or_default();
        while let Some(id) = stack.pop() {
            if seen.insert(id)
                && let Some(g) = self.groups.get(&id)
            {
                stack.extend(g.children.iter().copied());
            }
        }
        seen
    }

    /// Users of `group` and of all its descendants.
    fn all_members(&self, group: Uuid) -> BTreeSet<Uuid> {
        let mut users: BTreeSet<Uuid> = BTreeSet::new();
        for id in self.descendants(group).into_iter().chain([group]) {
            if let Some(g) = self.groups.get(&id) {
                users.extend(g.members.iter().copied());
            }
        }
        users
    }

    fn sim_group(&self, id: Uuid) -> Option<SimGroup> {
        let g = self.groups.get(&id)?;
        Some(SimGroup {
            id: g.id.to_string(),
            name: g.name.clone(),
            description: g.description.clone(),
            kind: g.kind.as_str().to_owned(),
            custom: g.custom.clone(),
            members: g
                .members
                .iter()
                .filter_map(|u| self.users.get(u).map(|u| u.username.clone()))
                .collect(),
            children: g
                .children
                .iter()
                .filter_map(|c| self.groups.get(c).map(|c| c.name.clone()))
                .collect(),
            extra: g.extra.clone(),
        })
    }

    // --- auth ---

    /// The principal behind the bearer token, or 401.
    fn caller(&mut self, headers: &HeaderMap) -> Result<Uuid, ApiError> {
        let user = control::bearer(headers)
            .and_then(|token| self.tokens.get(token))
            .copied()
            .ok_or(ApiError::Unauthorized)?;
        if self.users.contains_key(&user) {
            Ok(user)
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    fn is_admin(&self, user: Uuid) -> bool {
        self.all_members(self.sys_admins).contains(&user)
    }

    /// The caller, who must be a member of System Administrators (or 401/403).
    fn admin(&mut self, headers: &HeaderMap) -> Result<Uuid, ApiError> {
        let caller = self.caller(headers)?;
        if self.is_admin(caller) {
            Ok(caller)
        } else {
            Err(ApiError::Forbidden(format!(
                "Access denied: the caller must be a member of {SYSTEM_ADMINISTRATORS}"
            )))
        }
    }

    /// The caller, who must be an administrator or the user `ident` names.
    fn admin_or_self(&mut self, headers: &HeaderMap, ident: &str) -> Result<Uuid, ApiError> {
        let caller = self.caller(headers)?;
        if self.is_admin(caller) || self.find_user(ident, caller) == Some(caller) {
            Ok(caller)
        } else {
            self.admin(headers)
        }
    }

    fn protect(&self, group: Uuid, membership: bool) -> Result<(), ApiError> {
        if !self.behaviour.protect_system_groups {
            return Ok(());
        }
        match self.groups.get(&group).map(|g| g.kind) {
            Some(GroupKind::External) if membership => Err(ApiError::Forbidden(
                "The members of an external group are managed by its identity provider".into(),
            )),
            Some(GroupKind::Sys | GroupKind::External) if !membership => Err(ApiError::Forbidden(
                "System and external groups cannot be changed".into(),
            )),
            _ => Ok(()),
        }
    }

    // --- JSON ---

    fn group_json(&self, id: Uuid) -> Value {
        let Some(g) = self.groups.get(&id) else {
            return Value::Null;
        };
        let mut body = json!({
            "id": g.id,
            "name": g.name,
            "description": g.description,
            "type": g.kind.as_str(),
            "custom": g.custom,
            "userCount": g.members.len(),
            "childGroupCount": g.children.len(),
        });
        if let Value::Object(fields) = &mut body {
            for (k, v) in &g.extra {
                fields.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        body
    }

    fn user_json(&self, id: Uuid) -> Value {
        let Some(u) = self.users.get(&id) else {
            return Value::Null;
        };
        let (first, last) = if u.api_key {
            (u.username.clone(), "API key".to_owned())
        } else {
            let mut chars = u.username.chars();
            let first = chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
            (first, "Example".to_owned())
        };
        json!({
            "id": u.id,
            "username": u.username,
            "email": u.email,
            "firstName": first,
            "lastName": last,
            "timezone": "Europe/London",
            "language": "en-GB",
            "custom": {},
            "credentials": {
                "provider": {"type": "Contensis", "name": null},
                "passwordChangeFrequency": 0
            },
            "status": {"suspended": false, "locked": false, "passwordResetRequired": false},
            "created": FIXED_TIME,
            "modified": FIXED_TIME,
            "lastLogin": null,
            "lastFailedLogin": null,
            "expiry": null,
            "passwordChanged": null,
            "optOutOfNotifications": false,
            "failedLoginAttempts": 0,
            "failedLoginAttemptsSinceLastSuccess": 0,
            "successfulLoginAttempts": 0,
        })
    }

    /// Groups as a sorted, filtered, paged list.
    fn group_page(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
        q: &Params,
    ) -> Result<Value, ApiError> {
        let page = q.page(self.behaviour.max_page_size)?;
        let needle = q.get("q").map(str::to_lowercase);
        let mut groups: Vec<&GroupRec> = ids
            .into_iter()
            .filter_map(|id| self.groups.get(&id))
            .filter(|g| {
                needle
                    .as_deref()
                    .is_none_or(|n| g.name.to_lowercase().contains(n))
            })
            .collect();
        groups.sort_by(|a, b| {
            (a.name.to_lowercase(), &a.name).cmp(&(b.name.to_lowercase(), &b.name))
        });
        if page.descending {
            groups.reverse();
        }
        let items = groups.iter().map(|g| self.group_json(g.id)).collect();
        Ok(page.wrap(items))
    }

    /// Users as a sorted, filtered, paged list.
    fn user_page(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
        q: &Params,
    ) -> Result<Value, ApiError> {
        let page = q.page(self.behaviour.max_page_size)?;
        let needle = q.get("q").map(str::to_lowercase);
        let mut users: Vec<&User> = ids
            .into_iter()
            .filter_map(|id| self.users.get(&id))
            .filter(|u| {
                needle.as_deref().is_none_or(|n| {
                    u.username.to_lowercase().contains(n)
                        || u.email
                            .as_deref()
                            .is_some_and(|e| e.to_lowercase().contains(n))
                })
            })
            .collect();
        users.sort_by(|a, b| {
            (a.username.to_lowercase(), &a.username).cmp(&(b.username.to_lowercase(), &b.username))
        });
        if page.descending {
            users.reverse();
        }
        let items = users.iter().map(|u| self.user_json(u.id)).collect();
        Ok(page.wrap(items))
    }

    // --- group bodies ---

    fn check_name(&self, name: &str, except: Option<Uuid>) -> Result<(), ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::validation("name", "The name is required"));
        }
        if name.chars().count() > MAX_NAME_LEN {
            return Err(ApiError::validation(
                "name",
                &format!("The name must be at most {MAX_NAME_LEN} characters long"),
            ));
        }
        match self.group_by_name(name) {
            Some(other) if Some(other) != except => Err(ApiError::Conflict),
            _ => Ok(()),
        }
    }

    /// Whether `child` may become a child of `parent` (404s are the caller's job).
    fn check_child(&self, parent: Uuid, child: Uuid) -> Result<(), ApiError> {
        if parent == child {
            return Err(ApiError::validation(
                "childGroupId",
                "A group cannot be a child of itself",
            ));
        }
        if self.behaviour.reject_cycles && self.descendants(child).contains(&parent) {
            return Err(ApiError::validation(
                "childGroupId",
                "Adding this child group would create a cycle",
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and extractors
// ---------------------------------------------------------------------------------------------

/// Every failure answer of the API. All but 401 use the Error envelope with a fresh `logId`.
#[derive(Debug)]
enum ApiError {
    Unauthorized,
    Forbidden(String),
    NotFound(&'static str),
    Conflict,
    Validation(Vec<(String, String)>),
    BadRequest(String),
    Status(StatusCode, String),
}

impl ApiError {
    fn validation(field: &str, message: &str) -> Self {
        Self::Validation(vec![(field.to_owned(), message.to_owned())])
    }
}

fn envelope(status: StatusCode, message: &str, data: Value) -> Response {
    let body = json!({
        "logId": Uuid::new_v4(),
        "message": message,
        "data": data,
        "type": "error",
    });
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => {
                let mut resp = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({ "message": UNAUTHORIZED })),
                )
                    .into_response();
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                resp
            }
            Self::Forbidden(message) => envelope(StatusCode::FORBIDDEN, &message, Value::Null),
            Self::NotFound(message) => envelope(StatusCode::NOT_FOUND, message, Value::Null),
            Self::Conflict => envelope(StatusCode::CONFLICT, ALREADY_EXISTS, Value::Null),
            Self::Validation(items) => {
                let data = items
                    .into_iter()
                    .map(|(field, message)| json!({ "field": field, "message": message }))
                    .collect();
                envelope(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation error",
                    Value::Array(data),
                )
            }
            Self::BadRequest(message) => envelope(StatusCode::BAD_REQUEST, &message, Value::Null),
            Self::Status(status, message) => envelope(status, &message, Value::Null),
        }
    }
}

/// Percent-decoded path parameters, with a bad path answered by the Error envelope.
struct Seg<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Seg<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Seg(t))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Query parameters, with names matched case-insensitively.
struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        for unsupported in ["zenQL", "excludedGroups"] {
            if pairs
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(unsupported))
            {
                return Err(ApiError::BadRequest(format!(
                    "{unsupported} is not supported by the simulator"
                )));
            }
        }
        Ok(Params(pairs))
    }
}

/// One page request.
struct Page {
    index: usize,
    size: usize,
    descending: bool,
}

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ApiError::BadRequest(format!(
                "The value {v:?} of {key} is not a boolean"
            ))),
        }
    }

    fn number(&self, key: &str, default: u32) -> Result<u32, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                ApiError::BadRequest(format!("The value {v:?} of {key} is not a valid number"))
            }),
        }
    }

    fn page(&self, max_size: u32) -> Result<Page, ApiError> {
        let index = self.number("pageIndex", 0)?;
        let size = self.number("pageSize", DEFAULT_PAGE_SIZE)?;
        if size == 0 {
            return Err(ApiError::BadRequest("pageSize must be at least 1".into()));
        }
        let descending = self
            .get("order")
            .and_then(|o| o.split(',').next())
            .is_some_and(|f| f.trim().starts_with('-'));
        Ok(Page {
            index: index as usize,
            size: size.min(max_size.max(1)) as usize,
            descending,
        })
    }
}

impl Page {
    fn wrap(&self, items: Vec<Value>) -> Value {
        let total = items.len();
        let page: Vec<Value> = items
            .into_iter()
            .skip(self.index.saturating_mul(self.size))
            .take(self.size)
            .collect();
        json!({
            "pageIndex": self.index,
            "pageSize": self.size,
            "totalCount": total,
            "pageCount": total.div_ceil(self.size),
            "items": page,
        })
    }
}

/// The fields of a group body, found without regard to the case of their keys (the docs send
/// `Description`, responses say `description`); absent and `null` are told apart for merge.
struct GroupBody {
    fields: Map<String, Value>,
}

impl GroupBody {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => Ok(Self { fields }),
            Ok(_) => Err(ApiError::BadRequest(
                "The request body must be a JSON object".into(),
            )),
            Err(e) => Err(ApiError::BadRequest(format!(
                "The request body is not valid JSON: {e}"
            ))),
        }
    }

    fn field(&self, key: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    fn name(&self) -> Result<Option<String>, ApiError> {
        match self.field("name") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::validation("name", "The name must be a string")),
        }
    }

    /// `None` when absent; `Some(None)` when null.
    fn description(&self) -> Result<Option<Option<String>>, ApiError> {
        match self.field("description") {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(ApiError::validation(
                "description",
                "The description must be a string",
            )),
        }
    }

    /// `None` when absent; null is an empty map.
    fn custom(&self) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        match self.field("custom") {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(BTreeMap::new())),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(ApiError::validation(
                        &format!("custom.{k}"),
                        "Custom values must be strings",
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(ApiError::validation("custom", "custom must be an object")),
        }
    }

    /// `autoMembershipEmailDomains`: `None` when absent; else null or an array of strings.
    fn domains(&self) -> Result<Option<Value>, ApiError> {
        match self.field(AUTO_DOMAINS) {
            None => Ok(None),
            Some(v @ Value::Null) => Ok(Some(v.clone())),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                Ok(Some(Value::Array(items.clone())))
            }
            Some(_) => Err(ApiError::validation(
                AUTO_DOMAINS,
                "The domains must be an array of strings",
            )),
        }
    }

    /// The `type`, checked against the one the group must have.
    fn check_kind(&self, expected: GroupKind) -> Result<(), ApiError> {
        match self.field("type") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) if s.eq_ignore_ascii_case(expected.as_str()) => Ok(()),
            Some(_) => Err(ApiError::validation(
                "type",
                &format!("The type must be {:?}", expected.as_str()),
            )),
        }
    }
}

fn json_ok(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A JSON array of GUID strings (bulk add bodies).
fn parse_guids(body: &[u8]) -> Result<Vec<Uuid>, ApiError> {
    let items: Vec<Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("The request body must be a JSON array of ids: {e}"))
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| ApiError::validation(&format!("[{i}]"), "Not a valid id (GUID)"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

type ApiResult = Result<Response, ApiError>;

async fn not_found() -> Response {
    envelope(StatusCode::NOT_FOUND, "Resource not found", Value::Null)
}

fn oauth_error(error: &str) -> Response {
    json_ok(StatusCode::BAD_REQUEST, json!({ "error": error }))
}

/// `POST /authenticate/connect/token`.
async fn token(
    State(sim): State<ContensisSim>,
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
    let (user, refresh) = match field("grant_type") {
        Some("client_credentials") => {
            if field("client_id") != Some(st.client_id.as_str())
                || field("client_secret") != Some(st.client_secret.as_str())
            {
                return oauth_error("invalid_client");
            }
            (st.api_key_user, false)
        }
        Some("contensis_classic") => {
            let (Some(username), Some(password)) = (field("username"), field("password")) else {
                return oauth_error("invalid_grant");
            };
            let ok = st
                .logins
                .iter()
                .any(|l| l.username.eq_ignore_ascii_case(username) && l.password == password);
            match st.user_by_name(username) {
                Some(user) if ok => (user, true),
                _ => return oauth_error("invalid_grant"),
            }
        }
        Some("contensis_classic_refresh_token") => {
            match field("refresh_token").and_then(|t| st.refresh_tokens.remove(t)) {
                Some(user) => (user, true),
                None => return oauth_error("invalid_grant"),
            }
        }
        Some(_) => return oauth_error("unsupported_grant_type"),
        None => return oauth_error("invalid_request"),
    };
    let ttl = st.token_ttl;
    let access = st.tokens.issue(user, ttl);
    let mut body = json!({
        "access_token": access,
        "expires_in": faults::whole_secs_up(ttl),
        "token_type": "Bearer",
    });
    if refresh {
        let rt = control::random_token();
        st.refresh_tokens.insert(rt.clone(), user);
        body["refresh_token"] = Value::String(rt);
    }
    json_ok(StatusCode::OK, body)
}

/// G1 `GET /api/security/groups`.
async fn list_groups(State(sim): State<ContensisSim>, headers: HeaderMap, q: Params) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let ids: Vec<Uuid> = st.groups.keys().copied().collect();
    Ok(json_ok(StatusCode::OK, st.group_page(ids, &q)?))
}

/// G2 `GET /api/security/groups/{group}`.
async fn get_group(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    Ok(json_ok(StatusCode::OK, st.group_json(id)))
}

/// G3 `POST /api/security/groups`.
async fn create_group(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let body = GroupBody::parse(&body)?;
    let name = body.name()?.unwrap_or_default();
    body.check_kind(GroupKind::Contensis)?;
    let description = body.description()?.flatten();
    let custom = body.custom()?.unwrap_or_default();
    let domains = body.domains()?.unwrap_or(Value::Null);
    let id = match body.field("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| ApiError::validation("id", "Not a valid id (GUID)"))?,
        ),
    };
    st.check_name(&name, None)?;
    if id.is_some_and(|id| st.groups.contains_key(&id)) {
        return Err(ApiError::Conflict);
    }
    let id = id.unwrap_or_else(Uuid::new_v4);
    st.groups.insert(
        id,
        GroupRec {
            id,
            name,
            description,
            kind: GroupKind::Contensis,
            custom,
            members: BTreeSet::new(),
            children: BTreeSet::new(),
            extra: BTreeMap::from([(AUTO_DOMAINS.to_owned(), domains)]),
        },
    );
    st.writes += 1;
    Ok(json_ok(StatusCode::CREATED, st.group_json(id)))
}

/// G4 `PUT /api/security/groups/{group}`.
async fn update_group(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    st.protect(id, false)?;
    let body = GroupBody::parse(&body)?;
    let merge = st.behaviour.put_mode == PutMode::Merge;
    let Some(current) = st.groups.get(&id) else {
        return Err(ApiError::NotFound(GROUP_NOT_FOUND));
    };
    body.check_kind(current.kind)?;
    let name = match body.name()? {
        Some(name) => name,
        None if merge => current.name.clone(),
        None => String::new(),
    };
    let description = match body.description()? {
        Some(d) => d,
        None if merge => current.description.clone(),
        None => None,
    };
    let custom = match body.custom()? {
        Some(c) => c,
        None if merge => current.custom.clone(),
        None => BTreeMap::new(),
    };
    // Every other field the group carries is written the same way: from the body when sent,
    // else kept (merge) or cleared (replace).
    body.domains()?;
    let extra: BTreeMap<String, Value> = current
        .extra
        .iter()
        .map(|(k, old)| {
            let v = match body.field(k) {
                Some(v) => v.clone(),
                None if merge => old.clone(),
                None => Value::Null,
            };
            (k.clone(), v)
        })
        .collect();
    st.check_name(&name, Some(id))?;
    let changed = {
        let Some(rec) = st.groups.get_mut(&id) else {
            return Err(ApiError::NotFound(GROUP_NOT_FOUND));
        };
        let changed = rec.name != name
            || rec.description != description
            || rec.custom != custom
            || rec.extra != extra;
        rec.name = name;
        rec.description = description;
        rec.custom = custom;
        rec.extra = extra;
        changed
    };
    if changed {
        st.writes += 1;
    }
    Ok(json_ok(StatusCode::OK, st.group_json(id)))
}

/// G5 `DELETE /api/security/groups/{group}`.
async fn delete_group(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    st.protect(id, false)?;
    st.groups.remove(&id);
    for g in st.groups.values_mut() {
        g.children.remove(&id);
    }
    st.writes += 1;
    Ok(no_content())
}

/// M1 `GET /api/security/groups/{group}/users`.
async fn list_group_users(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    q: Params,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    let users = if q.flag("includeInherited")? {
        st.all_members(id)
    } else {
        st.groups
            .get(&id)
            .map(|g| g.members.clone())
            .unwrap_or_default()
    };
    Ok(json_ok(StatusCode::OK, st.user_page(users, &q)?))
}

/// M2 `PUT /api/security/groups/{group}/users/{user}`.
async fn add_user(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, user)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin(&headers)?;
    let id = st.group_id(&group)?;
    let user = st.user_id(&user, caller)?;
    link_one(&mut st, id, user, Link::Members)
}

/// M3 `POST /api/security/groups/{group}/users`: a JSON array of user GUIDs.
async fn add_users(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    body: Bytes,
) -> ApiResult {
    link_many(&mut sim.lock(), &headers, &group, &body, Link::Members)
}

/// M4 `DELETE /api/security/groups/{group}/users/{user}`.
async fn remove_user(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, user)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin(&headers)?;
    let id = st.group_id(&group)?;
    let user = st.user_id(&user, caller)?;
    unlink(&mut st, id, user, Link::Members)
}

/// M5 `HEAD /api/security/groups/{group}/users/{user}`: 204 when a member, inherited included.
async fn has_user(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, user)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin_or_self(&headers, &user)?;
    let id = st.group_id(&group)?;
    let user = st.user_id(&user, caller)?;
    if st.all_members(id).contains(&user) {
        Ok(no_content())
    } else {
        Err(ApiError::NotFound(USER_NOT_IN_GROUP))
    }
}

/// C1 `GET /api/security/groups/{group}/groups`.
async fn list_children(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    q: Params,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    let mut ids = if q.flag("includeInherited")? {
        let mut all = st.descendants(id);
        all.remove(&id);
        all
    } else {
        st.groups
            .get(&id)
            .map(|g| g.children.clone())
            .unwrap_or_default()
    };
    if q.flag("includeSelf")? {
        ids.insert(id);
    }
    Ok(json_ok(StatusCode::OK, st.group_page(ids, &q)?))
}

/// Which of a group's links a membership call changes: its users or its child groups.
#[derive(Clone, Copy, Debug)]
enum Link {
    Members,
    Children,
}

impl Link {
    fn of(self, g: &mut GroupRec) -> &mut BTreeSet<Uuid> {
        match self {
            Link::Members => &mut g.members,
            Link::Children => &mut g.children,
        }
    }

    /// Whether `id` names a user (members) or a group (children), or the 404 saying it does not.
    fn check_known(self, st: &SimState, id: &Uuid) -> Result<(), ApiError> {
        let (known, missing) = match self {
            Link::Members => (st.users.contains_key(id), USER_NOT_FOUND),
            Link::Children => (st.groups.contains_key(id), GROUP_NOT_FOUND),
        };
        if known {
            Ok(())
        } else {
            Err(ApiError::NotFound(missing))
        }
    }
}

/// Adds `ids` to `parent`'s members or children (after checking that `parent` may change and,
/// for children, that none makes a cycle), counting a write when that changed anything; says
/// whether it did.
fn link(st: &mut SimState, parent: Uuid, ids: &[Uuid], what: Link) -> Result<bool, ApiError> {
    st.protect(parent, true)?;
    if let Link::Children = what {
        for child in ids {
            st.check_child(parent, *child)?;
        }
    }
    let Some(g) = st.groups.get_mut(&parent) else {
        return Err(ApiError::NotFound(GROUP_NOT_FOUND));
    };
    let set = what.of(g);
    let before = set.len();
    set.extend(ids.iter().copied());
    let changed = set.len() != before;
    if changed {
        st.writes += 1;
    }
    Ok(changed)
}

/// M2 and C2: links one user or group, answering 409 when it already was and the behaviour
/// says so.
fn link_one(st: &mut SimState, parent: Uuid, id: Uuid, what: Link) -> ApiResult {
    let added = link(st, parent, &[id], what)?;
    if !added && st.behaviour.add_existing == AddExisting::Conflict {
        return Err(ApiError::Conflict);
    }
    Ok(no_content())
}

/// M3 and C3: links every user or group of a JSON array of GUIDs. An id that is unknown or
/// already linked is answered as [`Behaviour::bulk_add_unknown`] and
/// [`Behaviour::bulk_add_existing`] say; a refused call still links the other ids when
/// [`Behaviour::bulk_add_partial`] is set.
fn link_many(
    st: &mut SimState,
    headers: &HeaderMap,
    group: &str,
    body: &[u8],
    what: Link,
) -> ApiResult {
    st.admin(headers)?;
    let parent = st.group_id(group)?;
    let ids = parse_guids(body)?;
    st.protect(parent, true)?;
    let linked = st
        .groups
        .get_mut(&parent)
        .map(|g| what.of(g).clone())
        .unwrap_or_default();
    let mut refusal = None;
    let mut fine = Vec::new();
    for id in ids {
        if let Err(e) = what.check_known(st, &id) {
            if st.behaviour.bulk_add_unknown == BulkUnknown::NotFound {
                refusal.get_or_insert(e);
            }
        } else if linked.contains(&id) {
            match st.behaviour.bulk_add_existing {
                BulkExisting::Ignore => {}
                BulkExisting::Conflict => {
                    refusal.get_or_insert(ApiError::Conflict);
                }
                BulkExisting::BadRequest => {
                    refusal.get_or_insert(ApiError::BadRequest(format!(
                        "{id} is already a member of the group"
                    )));
                }
            }
        } else {
            fine.push(id);
        }
    }
    match refusal {
        None => {
            link(st, parent, &fine, what)?;
            Ok(no_content())
        }
        Some(e) => {
            if st.behaviour.bulk_add_partial {
                link(st, parent, &fine, what)?;
            }
            Err(e)
        }
    }
}

/// M4 and C4: unlinks one user or group, 404 when it was not linked.
fn unlink(st: &mut SimState, parent: Uuid, id: Uuid, what: Link) -> ApiResult {
    st.protect(parent, true)?;
    let removed = st
        .groups
        .get_mut(&parent)
        .is_some_and(|g| what.of(g).remove(&id));
    if !removed {
        return Err(ApiError::NotFound(match what {
            Link::Members => USER_NOT_IN_GROUP,
            Link::Children => CHILD_NOT_FOUND,
        }));
    }
    st.writes += 1;
    Ok(no_content())
}

/// C2 `PUT /api/security/groups/{group}/groups/{child}`.
async fn add_child(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, child)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let parent = st.group_id(&group)?;
    let child = st.group_id(&child)?;
    link_one(&mut st, parent, child, Link::Children)
}

/// C3 `POST /api/security/groups/{group}/groups`: a JSON array of group GUIDs.
async fn add_children(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    body: Bytes,
) -> ApiResult {
    link_many(&mut sim.lock(), &headers, &group, &body, Link::Children)
}

/// C4 `DELETE /api/security/groups/{group}/groups/{child}`.
async fn remove_child(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, child)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let parent = st.group_id(&group)?;
    let child = st.group_id(&child)?;
    unlink(&mut st, parent, child, Link::Children)
}

/// U2 `GET /api/security/users`.
async fn list_users(State(sim): State<ContensisSim>, headers: HeaderMap, q: Params) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let ids: Vec<Uuid> = st.users.keys().copied().collect();
    Ok(json_ok(StatusCode::OK, st.user_page(ids, &q)?))
}

/// U1 `GET /api/security/users/{user}`.
async fn get_user(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(user): Seg<String>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin_or_self(&headers, &user)?;
    let id = st.user_id(&user, caller)?;
    Ok(json_ok(StatusCode::OK, st.user_json(id)))
}

/// U3 `GET /api/security/users/{user}/groups`.
async fn user_groups(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(user): Seg<String>,
    q: Params,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin_or_self(&headers, &user)?;
    let user = st.user_id(&user, caller)?;
    let inherited = q.flag("includeInherited")?;
    let ids: Vec<Uuid> = st
        .groups
        .values()
        .filter(|g| {
            if inherited {
                st.all_members(g.id).contains(&user)
            } else {
                g.members.contains(&user)
            }
        })
        .map(|g| g.id)
        .collect();
    Ok(json_ok(StatusCode::OK, st.group_page(ids, &q)?))
}

/// U4 `HEAD /api/security/users/{user}/groups/{group}[,{group}...]`: 204 when the user is in any.
async fn user_in_groups(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((user, groups)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin_or_self(&headers, &user)?;
    let user = st.user_id(&user, caller)?;
    // A whole segment that names a group wins over its comma-separated parts.
    let ids: Vec<Uuid> = match st.find_group(&groups) {
        Some(id) => vec![id],
        None => groups
            .split(',')
            .map(|g| {
                st.find_group(g.trim())
                    .ok_or(ApiError::NotFound(GROUP_NOT_FOUND))
            })
            .collect::<Result<_, _>>()?,
    };
    if ids.iter().any(|g| st.all_members(*g).contains(&user)) {
        Ok(no_content())
    } else {
        Err(ApiError::NotFound(USER_NOT_IN_GROUP))
    }
}

impl crate::sim::Simulator for ContensisSim {
    type Seed = ContensisSeed;

    fn from_seed(seed: ContensisSeed) -> Self {
        ContensisSim::new(seed)
    }

    fn check_seed(seed: &ContensisSeed) -> Result<(), Vec<String>> {
        seed.validate()
    }

    fn router(&self) -> axum::Router {
        ContensisSim::router(self)
    }

    fn login_hint(seed: &ContensisSeed) -> Option<String> {
        Some(format!("client_id {}", seed.client_id))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seed_builds_state() {
        let seed: ContensisSeed = toml::from_str(
            r#"
            users = ["alice"]
            [[group]]
            name = "Eng"
            members = ["bob"]
            children = ["Ops"]
            [[group]]
            name = "Ops"
            type = "external"
            [[group]]
            name = "System Administrators"
            members = ["carol"]
            "#,
        )
        .unwrap();
        seed.validate().unwrap();
        let sim = ContensisSim::new(seed);
        assert_eq!(sim.group_names(), ["Eng", "Ops", "System Administrators"]);
        let eng = sim.group("eng").unwrap();
        assert_eq!(eng.members, BTreeSet::from(["bob".to_owned()]));
        assert_eq!(eng.children, BTreeSet::from(["Ops".to_owned()]));
        assert_eq!(sim.group("Ops").unwrap().kind, "external");
        let admins = sim.group(SYSTEM_ADMINISTRATORS).unwrap();
        assert_eq!(admins.kind, "sys");
        assert!(admins.members.contains("roster") && admins.members.contains("carol"));
        assert!(sim.user_id("alice@example.com").is_some());
    }

    #[test]
    fn validate_finds_problems() {
        let seed: ContensisSeed = toml::from_str(
            r#"
            [[group]]
            name = "A"
            children = ["B", "Nope"]
            [[group]]
            name = "a"
            "#,
        )
        .unwrap();
        let problems = seed.validate().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        let cyclic: ContensisSeed = toml::from_str(
            r#"
            [[group]]
            name = "A"
            children = ["B"]
            [[group]]
            name = "B"
            children = ["A"]
            "#,
        )
        .unwrap();
        let problems = cyclic.validate().unwrap_err();
        assert!(problems[0].contains("cycle"), "{problems:?}");
    }
}

//! The Crafter Studio simulator: an in-memory stand-in for Studio's group APIs, served by axum
//! under the web context `/studio`.
//!
//! It speaks API 2 (Studio 4.x: global groups, bearer access tokens, the flat `response`
//! envelope with Studio's code table, the 4.x name and username rules, all-or-nothing member
//! lists, the `system_admin` guards, externally managed groups answering 403/4002, soft-deleted
//! users that lookups and adds still find while the lists hide them, and Tomcat's limit on the
//! size of a request's line and headers) and API 1
//! (Studio 3.0: a session from `login.json`, the XSRF cookie/header pair on every POST, groups
//! addressed by name and site, the non-idempotent 409/404 membership answers, `{"message": …}`
//! bodies). [`SimApi`] picks which Studio it is: `v2` (4.x: API 1's group and login scripts are
//! gone), `v1` (3.0: no API 2) or `v3.1` (API 2 without `keyword`, without `externallyManaged`,
//! with a PATCH that replaces the name too, authenticated by the API 1 login's session and the
//! XSRF pair only: a bearer token is ignored; API 1 group calls answer `301 {"message":"API
//! deprecated."}`).
//!
//! Its JSON is written from Studio's API reference and server code, never from the connector's
//! wire types. What the reference leaves unconfirmed is a switch in [`Behaviour`]; failures come
//! from [`crate::sim::faults`] (an injected error uses API 2's envelope, code 1000).
//!
//! Choices the reference leaves open:
//! * API 1 POSTs without a matching XSRF pair are answered `403 {"message":"Forbidden"}` (Spring
//!   Security's CSRF filter), before the session is checked.
//! * `delete.json` answers 204 with no body (a 204 cannot carry one).
//! * The access token never expires by itself; `expire_tokens_after` ends API 1 sessions, which
//!   the connector renews by logging in again.
//! * A soft-deleted user ([`CrafterSim::delete_user`]) keeps its memberships, which no list
//!   shows; [`CrafterSim::purge_user`] removes a user outright, as only the database can.
//! * Tomcat's `400` for an oversized request carries its HTML error page and closes the
//!   connection; the size counted is the request line and headers as sent.
//!
//! The control endpoints `GET /_sim/state`, `GET|PUT /_sim/faults`, `GET|PUT /_sim/behaviour`
//! and `GET /_sim/calls` need no credentials: the simulator is meant for loopback only.

// The handlers' helpers fail with the answer to send, an axum `Response`: boxing it would only
// be unboxed again one line later.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::sim::control::{self, Call, ControlPut, SimControl, SimCore};
use crate::sim::faults::{self, FaultHost, FaultInjector, Faults};
use crate::sim::name_key;

/// The web context every Studio URL lives under.
pub const CONTEXT: &str = "/studio";

/// The six built-in groups of Studio 4.x, ids 1 to 6.
pub const BUILT_IN: [&str; 6] = [
    "system_admin",
    "site_admin",
    "site_author",
    "site_publisher",
    "site_developer",
    "site_reviewer",
];

// ---------------------------------------------------------------------------------------------
// Seed and switches
// ---------------------------------------------------------------------------------------------

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
    /// Unknown JSON fields in A2/A3 bodies are ignored (default) or refused with 400.
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
const GROUP_NAME_PATTERN: &str = "^[a-zA-Z][\\w.\\-]*$";

/// Java's `\w`.
fn java_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `^[a-zA-Z][\w.\-]*$`.
fn group_name_matches(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| java_word(c) || c == '.' || c == '-')
}

/// `^[a-zA-Z][\w.\-@+]+$`: the username rule of A7, A8 and A9.
fn valid_username(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().count() >= 2
        && chars.all(|c| java_word(c) || matches!(c, '.' | '-' | '@' | '+'))
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// A group as the simulator stores it, members by username, for inspection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimGroup {
    /// The numeric id.
    pub id: i64,
    /// The name, as stored.
    pub name: String,
    /// The description.
    pub description: Option<String>,
    /// Owned by an external identity provider.
    pub externally_managed: bool,
    /// The site of an API 1 group.
    pub site: Option<String>,
    /// Usernames of the members.
    pub members: BTreeSet<String>,
}

#[derive(Debug)]
struct GroupRec {
    id: i64,
    name: String,
    desc: Option<String>,
    external: bool,
    site: Option<String>,
    members: BTreeSet<i64>,
}

/// The simulator's state behind its handles (opaque: only its handles reach inside).
#[derive(Debug)]
pub struct SimState {
    api: SimApi,
    token: String,
    unprivileged_token: String,
    username: String,
    password: String,
    sites: BTreeSet<String>,
    behaviour: Behaviour,
    /// Users by id, soft-deleted ones included (Studio keeps their rows).
    users: BTreeMap<i64, String>,
    /// Ids of the soft-deleted users: hidden from the lists, still found by A7, A8 and A9.
    deleted: BTreeSet<i64>,
    groups: BTreeMap<i64, GroupRec>,
    next_user: i64,
    next_group: i64,
    sessions: HashSet<String>,
    writes: usize,
}

/// A running Crafter Studio simulator's state. Clones share it: one handle serves requests,
/// another lets a test look inside.
#[derive(Clone, Debug)]
pub struct CrafterSim {
    inner: Arc<SimCore<SimState>>,
}

impl CrafterSim {
    /// A simulator holding what `seed` describes, plus the six built-in groups (with the login
    /// user in `system_admin`). Lenient: what [`CrafterSeed::validate`] reports is skipped.
    pub fn new(seed: CrafterSeed) -> Self {
        let mut st = SimState {
            api: seed.api,
            token: seed.token,
            unprivileged_token: seed.unprivileged_token,
            username: seed.username.clone(),
            password: seed.password,
            sites: seed.sites.into_iter().collect(),
            behaviour: seed.behaviour,
            users: BTreeMap::new(),
            deleted: BTreeSet::new(),
            groups: BTreeMap::new(),
            next_user: 1,
            next_group: 1,
            sessions: HashSet::new(),
            writes: 0,
        };
        let admin = st.ensure_user(&seed.username);
        for name in BUILT_IN {
            let id = st.insert(name, None, false, None);
            if name == "system_admin"
                && let Some(g) = st.groups.get_mut(&id)
            {
                g.members.insert(admin);
            }
        }
        for u in &seed.users {
            st.ensure_user(u);
        }
        for g in seed.groups {
            let id = match st.find(&g.name, g.site.as_deref()) {
                Some(id) => id,
                None => st.insert(&g.name, g.description.clone(), g.externally_managed, g.site),
            };
            let members: Vec<i64> = g.members.iter().map(|m| st.ensure_user(m)).collect();
            if let Some(rec) = st.groups.get_mut(&id) {
                rec.members.extend(members);
                if g.description.is_some() {
                    rec.desc = g.description;
                }
            }
        }
        Self {
            inner: Arc::new(SimCore::new(st, seed.faults)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.inner.lock()
    }

    /// The HTTP API under `/studio`, behind the call log and the fault layer, plus the
    /// unauthenticated `/_sim/...` control endpoints, which are neither logged nor faulted.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route(
                "/studio/api/2/groups",
                get(a1_list)
                    .post(a2_create)
                    .patch(a3_update)
                    .delete(a4_delete),
            )
            .route("/studio/api/2/groups/{id}", get(a5_get))
            .route(
                "/studio/api/2/groups/{id}/members",
                get(a6_members).post(a7_add).delete(a8_remove),
            )
            .route("/studio/api/2/users", get(a10_users))
            .route("/studio/api/2/users/{user}", get(a9_user))
            .route(
                "/studio/api/1/services/api/1/security/login.json",
                post(v1_login),
            )
            .route(
                "/studio/api/1/services/api/1/group/{script}",
                get(v1_script).post(v1_script),
            )
            .fallback(not_found)
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(self.clone(), gate));
        control::wrap_api(self, api)
    }

    /// The path the API lives under (appended to `http://host:port` to make the target's `url`).
    pub fn base_path(&self) -> String {
        CONTEXT.to_owned()
    }

    /// How many writes succeeded (POST, PATCH and DELETE calls answered 2xx, logging in aside),
    /// whether or not they changed anything.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// The global (API 2) group of this name, as Studio compares names.
    pub fn group(&self, name: &str) -> Option<SimGroup> {
        let st = self.lock();
        st.find(name, None).and_then(|id| st.sim_group(id))
    }

    /// The API 1 group of this name in `site`.
    pub fn site_group(&self, site: &str, name: &str) -> Option<SimGroup> {
        let st = self.lock();
        st.find(name, Some(site)).and_then(|id| st.sim_group(id))
    }

    /// Every group, global and per site, sorted by site then name.
    pub fn groups(&self) -> Vec<SimGroup> {
        let st = self.lock();
        let mut all: Vec<SimGroup> = st
            .groups
            .keys()
            .filter_map(|id| st.sim_group(*id))
            .collect();
        all.sort_by(|a, b| (&a.site, &a.name).cmp(&(&b.site, &b.name)));
        all
    }

    /// The id of a user (soft-deleted or not), as Studio compares usernames.
    pub fn user_id(&self, username: &str) -> Option<i64> {
        self.lock().user_id(username)
    }

    /// Adds a user (a no-op if it exists).
    pub fn add_user(&self, username: &str) {
        self.lock().ensure_user(username);
    }

    /// Deletes a user as Studio does (`DELETE /api/2/users`): the row is only marked deleted, so
    /// the user and group lists hide it while lookups and adds still find it.
    pub fn delete_user(&self, username: &str) {
        let mut st = self.lock();
        if let Some(id) = st.user_id(username) {
            st.deleted.insert(id);
        }
    }

    /// Removes a user's row and memberships outright, as an administrator editing the
    /// database would: lookups and adds no longer find it.
    pub fn purge_user(&self, username: &str) {
        let mut st = self.lock();
        if let Some(id) = st.user_id(username) {
            st.users.remove(&id);
            st.deleted.remove(&id);
            for g in st.groups.values_mut() {
                g.members.remove(&id);
            }
        }
    }

    /// Makes or replaces a group (`site` for API 1) with these members, as another writer would.
    pub fn insert_group(
        &self,
        name: &str,
        description: Option<&str>,
        members: &[&str],
        site: Option<&str>,
    ) {
        let mut st = self.lock();
        let id = match st.find(name, site) {
            Some(id) => id,
            None => st.insert(name, None, false, site.map(str::to_owned)),
        };
        let ids: BTreeSet<i64> = members.iter().map(|m| st.ensure_user(m)).collect();
        if let Some(g) = st.groups.get_mut(&id) {
            g.desc = description.map(str::to_owned);
            g.members = ids;
        }
    }

    /// Deletes a group (`site` for API 1), as another writer would.
    pub fn remove_group(&self, name: &str, site: Option<&str>) {
        let mut st = self.lock();
        if let Some(id) = st.find(name, site) {
            st.groups.remove(&id);
        }
    }

    /// Ends every API 1 session.
    pub fn expire_sessions(&self) {
        self.lock().sessions.clear();
    }
}

impl FaultHost for CrafterSim {
    fn injector(&self) -> &FaultInjector {
        self.inner.faults()
    }

    fn is_api_call(&self, path: &str) -> bool {
        path.starts_with("/studio/api/") && !path.ends_with("/security/login.json")
    }

    fn fault_response(&self, status: StatusCode) -> Response {
        let message = format!(
            "Internal system failure: {}",
            status.canonical_reason().unwrap_or("injected failure")
        );
        v2_error(status, 1000, &message, "Contact support")
    }

    fn expire_tokens(&self) {
        self.expire_sessions();
    }
}

impl SimControl for CrafterSim {
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
        let users: Vec<&String> = st
            .users
            .iter()
            .filter(|(id, _)| !st.deleted.contains(id))
            .map(|(_, u)| u)
            .collect();
        let deleted: Vec<&String> = st
            .deleted
            .iter()
            .filter_map(|id| st.users.get(id))
            .collect();
        json!({
            "api": st.api,
            "groups": groups,
            "users": users,
            "deleted_users": deleted,
            "writes": st.writes,
        })
    }

    /// Counts the successful writes: POST, PATCH and DELETE calls answered 2xx (a no-op
    /// included), logging in aside.
    fn call_answered(&self, call: &Call, status: StatusCode) {
        let write = faults::is_write(&call.method) && !call.target.contains("/security/login.json");
        if write && status.is_success() {
            self.lock().writes += 1;
        }
    }
}

/// The answer to a control `PUT` whose body does not fit: API 2's 400.
fn bad_control_body(message: String) -> Response {
    bad_request(&message)
}

impl SimState {
    fn key(&self, name: &str) -> String {
        name_key(name, self.behaviour.case_insensitive_names)
    }

    fn find(&self, name: &str, site: Option<&str>) -> Option<i64> {
        let k = self.key(name);
        self.groups
            .values()
            .find(|g| g.site.as_deref() == site && self.key(&g.name) == k)
            .map(|g| g.id)
    }

    fn insert(
        &mut self,
        name: &str,
        desc: Option<String>,
        external: bool,
        site: Option<String>,
    ) -> i64 {
        let id = self.next_group;
        self.next_group += 1;
        self.groups.insert(
            id,
            GroupRec {
                id,
                name: name.to_owned(),
                desc,
                external,
                site,
                members: BTreeSet::new(),
            },
        );
        id
    }

    fn user_id(&self, username: &str) -> Option<i64> {
        let k = self.key(username);
        self.users
            .iter()
            .find(|(_, u)| self.key(u) == k)
            .map(|(id, _)| *id)
    }

    fn ensure_user(&mut self, username: &str) -> i64 {
        if let Some(id) = self.user_id(username) {
            return id;
        }
        let id = self.next_user;
        self.next_user += 1;
        self.users.insert(id, username.to_owned());
        id
    }

    fn sim_group(&self, id: i64) -> Option<SimGroup> {
        let g = self.groups.get(&id)?;
        Some(SimGroup {
            id: g.id,
            name: g.name.clone(),
            description: g.desc.clone(),
            externally_managed: g.external,
            site: g.site.clone(),
            members: g
                .members
                .iter()
                .filter_map(|u| self.users.get(u).cloned())
                .collect(),
        })
    }

    fn group_json(&self, g: &GroupRec) -> Value {
        let mut v = json!({ "id": g.id, "name": g.name, "desc": g.desc });
        if self.api != SimApi::V31 {
            v["externallyManaged"] = Value::Bool(g.external);
        }
        v
    }

    fn user_json(&self, id: i64) -> Value {
        let username = self.users.get(&id).cloned().unwrap_or_default();
        json!({
            "id": id,
            "username": username,
            "firstName": username,
            "lastName": "",
            "email": format!("{username}@example.com"),
            "enabled": true,
            "externallyManaged": false,
        })
    }

    /// API 2 authentication and the group/user permission: 401 before 403. Studio 3.1 has no
    /// access tokens: it takes the API 1 login's session only (its XSRF pair is checked on
    /// writes by [`gate`]).
    fn auth2(&self, headers: &HeaderMap) -> Result<(), Response> {
        if self.api == SimApi::V31 {
            let session = cookies(headers)
                .into_iter()
                .find(|(k, _)| k == "JSESSIONID")
                .map(|(_, v)| v);
            return if session.is_some_and(|s| self.sessions.contains(&s)) {
                Ok(())
            } else {
                Err(v2_error(
                    StatusCode::UNAUTHORIZED,
                    2000,
                    "Unauthenticated",
                    "Please login first",
                ))
            };
        }
        match control::bearer(headers) {
            Some(t) if t == self.token => Ok(()),
            Some(t) if t == self.unprivileged_token => Err(v2_error(
                StatusCode::FORBIDDEN,
                2001,
                "Unauthorized",
                "You don't have permission to perform this task, please contact your administrator",
            )),
            _ => Err(v2_error(
                StatusCode::UNAUTHORIZED,
                2000,
                "Unauthenticated",
                "Please login first",
            )),
        }
    }

    /// API 2 exists in Studio 3.1 and 4.x, not in 3.0.
    fn api2(&self, headers: &HeaderMap) -> Result<(), Response> {
        if self.api == SimApi::V1 {
            return Err(not_found_body());
        }
        self.auth2(headers)
    }

    fn global_group(&self, id: i64) -> Result<&GroupRec, Response> {
        self.groups
            .get(&id)
            .filter(|g| g.site.is_none())
            .ok_or_else(group_not_found)
    }
}

// ---------------------------------------------------------------------------------------------
// Tomcat, in front of Studio
// ---------------------------------------------------------------------------------------------

/// The bytes of a request's line and headers as they went over the wire, which is what Tomcat
/// holds against `maxHttpHeaderSize`.
fn head_size(req: &axum::extract::Request) -> usize {
    let target = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path().len(), |p| p.as_str().len());
    // "METHOD target HTTP/1.1\r\n", each "name: value\r\n", and the blank line.
    let line = req.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len() + 2;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.as_bytes().len() + 2)
        .sum();
    line + headers + 2
}

/// What Tomcat answers and Studio never sees: a request line and headers over
/// `maxHttpHeaderSize` (`400`, Tomcat's own error page, the connection closed); and, on Studio
/// 3.1, an API 2 write without the XSRF cookie/header pair (Spring Security's `403`).
async fn gate(
    State(sim): State<CrafterSim>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (limit, api) = {
        let st = sim.lock();
        (st.behaviour.max_http_header_size, st.api)
    };
    if head_size(&req) > limit {
        let mut resp = (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
            "<!doctype html><html lang=\"en\"><head><title>HTTP Status 400 – Bad Request</title>\
             </head><body><h1>HTTP Status 400 – Bad Request</h1></body></html>",
        )
            .into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    if api == SimApi::V31
        && req.uri().path().starts_with("/studio/api/2/")
        && req.method() != Method::GET
        && !xsrf_ok(req.headers())
    {
        return v1_message(StatusCode::FORBIDDEN, "Forbidden");
    }
    next.run(req).await
}

// ---------------------------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------------------------

const BAD_PARAMS: &str = "Invalid parameter(s)";
const CHECK_PARAMS: &str = "Check API and make sure you're sending the correct parameters";

fn response_object(code: i64, message: &str, remedial: &str) -> Value {
    json!({
        "code": code,
        "message": message,
        "remedialAction": remedial,
        "documentationUrl": "",
    })
}

fn v2_error(status: StatusCode, code: i64, message: &str, remedial: &str) -> Response {
    (
        status,
        Json(json!({ "response": response_object(code, message, remedial) })),
    )
        .into_response()
}

fn v2_ok(status: StatusCode, code: i64, message: &str, rest: Value) -> Response {
    let mut body = Map::new();
    body.insert("response".into(), response_object(code, message, ""));
    if let Value::Object(m) = rest {
        body.extend(m);
    }
    (status, Json(Value::Object(body))).into_response()
}

fn bad_request(detail: &str) -> Response {
    let message = if detail.is_empty() {
        BAD_PARAMS.to_owned()
    } else {
        format!("{BAD_PARAMS} : {detail}")
    };
    v2_error(StatusCode::BAD_REQUEST, 1001, &message, CHECK_PARAMS)
}

fn validation(errors: &[(String, String)]) -> Response {
    let list: Vec<Value> = errors
        .iter()
        .map(|(f, m)| json!({ "field": f, "message": m }))
        .collect();
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "response": response_object(1001, BAD_PARAMS, CHECK_PARAMS),
            "validationErrors": list,
        })),
    )
        .into_response()
}

fn group_not_found() -> Response {
    v2_error(
        StatusCode::NOT_FOUND,
        4000,
        "Group not found",
        "Check if you sent in the right Group Id",
    )
}

fn user_not_found() -> Response {
    v2_error(
        StatusCode::NOT_FOUND,
        6000,
        "User not found",
        "Check if you're using the correct User ID or username",
    )
}

fn externally_managed() -> Response {
    v2_error(
        StatusCode::FORBIDDEN,
        4002,
        "Group is externally managed",
        "Update the group in the main identity system (e.g. LDAP)",
    )
}

fn internal(detail: &str) -> Response {
    v2_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        1000,
        &format!("Internal system failure: {detail}"),
        "Contact support",
    )
}

fn not_found_body() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "message": "Not Found" })),
    )
        .into_response()
}

async fn not_found() -> Response {
    not_found_body()
}

fn v1_message(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

fn with_location(mut resp: Response, group: &str) -> Response {
    // As the scripts do: the name is not encoded and the site is missing.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CONTEXT}/api/1/services/api/1/group/get.json?group_name={group}"
    )) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Query parameters in order (repeats kept).
type Params = Vec<(String, String)>;

fn param<'a>(q: &'a Params, k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// A non-negative integer parameter, or the default.
fn number(q: &Params, k: &str, default: u64) -> Result<u64, String> {
    match param(q, k) {
        None => Ok(default),
        Some(v) => v.parse::<u64>().map_err(|_| format!("{k} must be >= 0")),
    }
}

fn parse_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers: API 2
// ---------------------------------------------------------------------------------------------

/// An API 2 handler's answer: `Err` carries its error response, so that `?` can pass one on.
type Answer = Result<Response, Response>;

/// A1 `GET /api/2/groups?keyword=&offset=&limit=&sort=`.
async fn a1_list(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let (offset, limit) = match (number(&q, "offset", 0), number(&q, "limit", 10)) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(e), _) | (_, Err(e)) => return Err(bad_request(&e)),
    };
    if let Some(sort) = param(&q, "sort")
        && st.api == SimApi::V2
    {
        let ok = sort.split(',').all(|part| {
            let mut words = part.split_whitespace();
            let col = words.next().unwrap_or_default();
            let dir = words.next();
            [
                "id",
                "record_last_updated",
                "group_name",
                "externally_managed",
            ]
            .contains(&col)
                && dir
                    .is_none_or(|d| d.eq_ignore_ascii_case("asc") || d.eq_ignore_ascii_case("desc"))
                && words.next().is_none()
        });
        if !ok {
            return Err(bad_request("sort"));
        }
    }
    // 3.1 has no keyword filter: it lists every group.
    let keyword = param(&q, "keyword")
        .filter(|_| st.api == SimApi::V2)
        .map(|k| st.key(k));
    let mut groups: Vec<&GroupRec> = st
        .groups
        .values()
        .filter(|g| g.site.is_none())
        .filter(|g| {
            keyword
                .as_ref()
                .is_none_or(|k| st.key(&g.name).contains(k.as_str()))
        })
        .collect();
    if st.api == SimApi::V2 {
        groups.sort_by_key(|g| (g.name.to_lowercase(), g.id));
    }
    let total = groups.len();
    let page: Vec<Value> = groups
        .into_iter()
        .skip(as_index(offset))
        .take(as_index(limit))
        .map(|g| st.group_json(g))
        .collect();
    Ok(v2_ok(
        StatusCode::OK,
        0,
        "OK",
        json!({ "total": total, "offset": offset, "limit": page.len(), "groups": page }),
    ))
}

/// Refuses JSON fields outside `known` when the switch says so.
fn unknown_fields(
    st: &SimState,
    body: &Map<String, Value>,
    known: &[&str],
) -> Result<(), Response> {
    if st.behaviour.unknown_fields == UnknownFields::Reject
        && let Some(k) = body.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(bad_request(&format!("Unrecognized field \"{k}\"")));
    }
    Ok(())
}

/// A2 `POST /api/2/groups` `{"name", "desc"}`.
async fn a2_create(State(sim): State<CrafterSim>, headers: HeaderMap, body: Bytes) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let Some(b) = parse_object(&body) else {
        return Err(bad_request("JSON parse error"));
    };
    unknown_fields(&st, &b, &["id", "name", "desc", "externallyManaged"])?;
    let field = st.behaviour.validation_field.clone();
    let name = match b.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => return Err(validation(&[(field, "must not be null".into())])),
    };
    let desc = match b.get("desc") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(bad_request("desc")),
    };
    let mut errors = Vec::new();
    if st.api == SimApi::V2 && st.behaviour.name_rules {
        if !(3..=512).contains(&name.chars().count()) {
            errors.push((field.clone(), "size must be between 3 and 512".to_owned()));
        }
        if !group_name_matches(&name) {
            errors.push((field, format!("must match \"{GROUP_NAME_PATTERN}\"")));
        }
        if desc.as_ref().is_some_and(|d| d.chars().count() > 1024) {
            errors.push((
                "groupDescription".into(),
                "size must be between 0 and 1024".into(),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(validation(&errors));
    }
    if st.find(&name, None).is_some() {
        return Err(v2_error(
            StatusCode::CONFLICT,
            4001,
            "Group already exists",
            "Try a different group name",
        ));
    }
    // The server forces externallyManaged = false and ignores any id.
    let id = st.insert(&name, desc, false, None);
    let g = st.group_json(&st.groups[&id]);
    Ok(v2_ok(
        StatusCode::CREATED,
        1,
        "Created",
        json!({ "group": g }),
    ))
}

/// A3 `PATCH /api/2/groups` `{"id", "desc"}` (3.1: `{"id", "name", "desc"}`, both replaced).
async fn a3_update(State(sim): State<CrafterSim>, headers: HeaderMap, body: Bytes) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let Some(b) = parse_object(&body) else {
        return Err(bad_request("JSON parse error"));
    };
    // Studio 3.1 and 4.0.0-4.0.2 take the whole group and replace its name too.
    let whole = st.api == SimApi::V31 || st.behaviour.patch == PatchShape::WholeGroup;
    let known: &[&str] = if whole {
        &["id", "name", "desc", "externallyManaged"]
    } else {
        &["id", "desc"]
    };
    unknown_fields(&st, &b, known)?;
    let Some(id) = b.get("id").and_then(Value::as_i64) else {
        return Err(bad_request("id"));
    };
    let desc = match b.get("desc") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(bad_request("desc")),
    };
    if st.api == SimApi::V2 && desc.as_ref().is_some_and(|d| d.chars().count() > 1024) {
        return Err(validation(&[(
            "groupDescription".into(),
            "size must be between 0 and 1024".into(),
        )]));
    }
    let external = st.global_group(id)?.external;
    if external {
        return Err(externally_managed());
    }
    let new_name = if whole {
        match b.get("name").and_then(Value::as_str) {
            Some(n) => Some(n.to_owned()),
            None => return Err(internal("Column 'group_name' cannot be null")),
        }
    } else {
        None
    };
    if let Some(n) = &new_name
        && st.find(n, None).is_some_and(|other| other != id)
    {
        return Err(v2_error(
            StatusCode::CONFLICT,
            4001,
            "Group already exists",
            "Try a different group name",
        ));
    }
    let Some(g) = st.groups.get_mut(&id) else {
        return Err(group_not_found());
    };
    g.desc = desc;
    if let Some(n) = new_name {
        g.name = n;
    }
    let v = st.group_json(&st.groups[&id]);
    Ok(v2_ok(StatusCode::OK, 0, "OK", json!({ "group": v })))
}

/// A4 `DELETE /api/2/groups?id=1&id=2`: all ids must exist, else nothing is deleted.
async fn a4_delete(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let mut ids = Vec::new();
    for (k, v) in &q {
        if k == "id" {
            match v.parse::<i64>() {
                Ok(id) => ids.push(id),
                Err(_) => return Err(bad_request("id")),
            }
        }
    }
    if ids.is_empty() {
        return Err(bad_request("id"));
    }
    for id in &ids {
        let g = st.global_group(*id)?;
        if g.name == "system_admin" {
            return Err(internal("Deleting the System Admin group is not allowed."));
        }
        if g.external {
            return Err(externally_managed());
        }
    }
    for id in ids {
        st.groups.remove(&id);
    }
    Ok(v2_ok(StatusCode::OK, 2, "Deleted", json!({})))
}

fn path_id(raw: &str) -> Result<i64, Response> {
    raw.parse::<i32>()
        .map(i64::from)
        .map_err(|_| bad_request("id"))
}

/// A5 `GET /api/2/groups/{id}`.
async fn a5_get(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let id = path_id(&raw)?;
    let g = st.global_group(id)?;
    Ok(v2_ok(
        StatusCode::OK,
        0,
        "OK",
        json!({ "group": st.group_json(g) }),
    ))
}

/// A6 `GET /api/2/groups/{id}/members?offset=&limit=`: `limit` echoes the request.
async fn a6_members(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<Params>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let id = path_id(&raw)?;
    let (offset, limit) = match (number(&q, "offset", 0), number(&q, "limit", 10)) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(e), _) | (_, Err(e)) => return Err(bad_request(&e)),
    };
    let g = st.global_group(id)?;
    // `u.deleted = 0`: soft-deleted members are neither listed nor counted.
    let visible: Vec<i64> = g
        .members
        .iter()
        .copied()
        .filter(|u| !st.deleted.contains(u))
        .collect();
    let users: Vec<Value> = visible
        .iter()
        .skip(as_index(offset))
        .take(as_index(limit))
        .map(|u| st.user_json(*u))
        .collect();
    Ok(v2_ok(
        StatusCode::OK,
        0,
        "OK",
        json!({ "total": visible.len(), "offset": offset, "limit": limit, "users": users }),
    ))
}

/// Resolves ids and usernames, all or nothing.
fn resolve_users(st: &SimState, ids: &[i64], names: &[String]) -> Result<BTreeSet<i64>, Response> {
    let mut out = BTreeSet::new();
    for id in ids {
        if !st.users.contains_key(id) {
            return Err(user_not_found());
        }
        out.insert(*id);
    }
    for n in names {
        match st.user_id(n) {
            Some(id) => {
                out.insert(id);
            }
            None => return Err(user_not_found()),
        }
    }
    Ok(out)
}

/// A7 `POST /api/2/groups/{id}/members` `{"ids": [...], "usernames": [...]}`.
async fn a7_add(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let id = path_id(&raw)?;
    let Some(b) = parse_object(&body) else {
        return Err(bad_request("JSON parse error"));
    };
    let ids: Vec<i64> = b
        .get("ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let names: Vec<String> = b
        .get("usernames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() && names.is_empty() {
        return Err(bad_request("Both 'userIds' and 'usernames' are empty"));
    }
    if st.api == SimApi::V2 && st.behaviour.name_rules {
        let bad: Vec<(String, String)> = names
            .iter()
            .filter(|n| !valid_username(n))
            .map(|n| ("usernames".to_owned(), format!("invalid username \"{n}\"")))
            .collect();
        if !bad.is_empty() {
            return Err(validation(&bad));
        }
    }
    st.global_group(id)?;
    let users = resolve_users(&st, &ids, &names)?;
    if let Some(g) = st.groups.get_mut(&id) {
        // INSERT IGNORE: existing members are a no-op.
        g.members.extend(users.iter().copied());
    }
    let list: Vec<Value> = users.iter().map(|u| st.user_json(*u)).collect();
    Ok(v2_ok(StatusCode::OK, 0, "OK", json!({ "users": list })))
}

/// A8 `DELETE /api/2/groups/{id}/members?userId=&username=`.
async fn a8_remove(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<Params>,
) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let id = path_id(&raw)?;
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for (k, v) in &q {
        match k.as_str() {
            "userId" => match v.parse::<i64>() {
                Ok(i) => ids.push(i),
                Err(_) => return Err(bad_request("userId")),
            },
            "username" => names.push(v.clone()),
            _ => {}
        }
    }
    if ids.is_empty() && names.is_empty() {
        return Err(bad_request("All parameters are empty or null"));
    }
    // `username` values are validated, `userId` values are not.
    if st.api == SimApi::V2 && st.behaviour.name_rules {
        let bad: Vec<(String, String)> = names
            .iter()
            .filter(|n| !valid_username(n))
            .map(|n| ("username".to_owned(), format!("invalid username \"{n}\"")))
            .collect();
        if !bad.is_empty() {
            return Err(validation(&bad));
        }
    }
    let g = st.global_group(id)?;
    let (is_admin_group, current) = (g.name == "system_admin", g.members.clone());
    let users = resolve_users(&st, &ids, &names)?;
    if is_admin_group && current.iter().all(|m| users.contains(m)) {
        return Err(internal(
            "Removing all members of the System Admin group is not allowed.",
        ));
    }
    if let Some(g) = st.groups.get_mut(&id) {
        // Removing a non-member is a silent no-op.
        g.members.retain(|m| !users.contains(m));
    }
    Ok(v2_ok(StatusCode::OK, 2, "Deleted", json!({})))
}

/// A9 `GET /api/2/users/{id or username}`.
async fn a9_user(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(ident): Path<String>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let id = if let Ok(n) = ident.parse::<i64>() {
        st.users.contains_key(&n).then_some(n)
    } else {
        // Studio validates a username here too (the path variable is `id`); a soft-deleted
        // user is still found.
        if st.behaviour.name_rules && st.api == SimApi::V2 && !valid_username(&ident) {
            return Err(validation(&[(
                "id".into(),
                format!("invalid username \"{ident}\""),
            )]));
        }
        st.user_id(&ident)
    };
    match id {
        Some(id) => Ok(v2_ok(
            StatusCode::OK,
            0,
            "OK",
            json!({ "user": st.user_json(id) }),
        )),
        None => Err(user_not_found()),
    }
}

/// A10 `GET /api/2/users?keyword=&offset=&limit=&sort=`: every user but the soft-deleted ones
/// (`u.deleted = 0`), by id; `limit` is the number returned.
async fn a10_users(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let (offset, limit) = match (number(&q, "offset", 0), number(&q, "limit", 10)) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(e), _) | (_, Err(e)) => return Err(bad_request(&e)),
    };
    let keyword = param(&q, "keyword").map(|k| st.key(k));
    let users: Vec<i64> = st
        .users
        .iter()
        .filter(|(id, _)| !st.deleted.contains(id))
        .filter(|(_, u)| {
            // username, first name, last name or e-mail LIKE %keyword%
            keyword.as_ref().is_none_or(|k| {
                st.key(u).contains(k.as_str())
                    || st.key(&format!("{u}@example.com")).contains(k.as_str())
            })
        })
        .map(|(id, _)| *id)
        .collect();
    let page: Vec<Value> = users
        .iter()
        .skip(as_index(offset))
        .take(as_index(limit))
        .map(|u| st.user_json(*u))
        .collect();
    Ok(v2_ok(
        StatusCode::OK,
        0,
        "OK",
        json!({ "total": users.len(), "offset": offset, "limit": page.len(), "users": page }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Handlers: API 1
// ---------------------------------------------------------------------------------------------

fn cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The XSRF cookie and header match (any value the caller chose).
fn xsrf_ok(headers: &HeaderMap) -> bool {
    let cookie = cookies(headers)
        .into_iter()
        .find(|(k, _)| k == "XSRF-TOKEN")
        .map(|(_, v)| v);
    let head = headers.get("X-XSRF-TOKEN").and_then(|v| v.to_str().ok());
    matches!((cookie.as_deref(), head), (Some(c), Some(h)) if !c.is_empty() && c == h)
}

/// `POST /api/1/services/api/1/security/login.json` (Studio 3.0 and 3.1).
async fn v1_login(State(sim): State<CrafterSim>, headers: HeaderMap, body: Bytes) -> Response {
    let mut st = sim.lock();
    if st.api == SimApi::V2 {
        return not_found_body();
    }
    if !xsrf_ok(&headers) {
        return v1_message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let Some(b) = parse_object(&body) else {
        return v1_message(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let user = b.get("username").and_then(Value::as_str);
    let pass = b.get("password").and_then(Value::as_str);
    let (Some(user), Some(pass)) = (user, pass) else {
        return v1_message(StatusCode::BAD_REQUEST, "Bad Request");
    };
    if user != st.username || pass != st.password {
        return v1_message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let session = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    st.sessions.insert(session.clone());
    let mut resp = (
        StatusCode::OK,
        Json(json!({
            "username": user,
            "first_name": user,
            "last_name": "",
            "email": format!("{user}@example.com"),
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={session}; Path=/studio; HttpOnly")) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Every `…/api/1/services/api/1/group/{script}` call.
async fn v1_script(
    State(sim): State<CrafterSim>,
    method: Method,
    headers: HeaderMap,
    Path(script): Path<String>,
    Query(q): Query<Params>,
    body: Bytes,
) -> Response {
    let mut st = sim.lock();
    if st.api == SimApi::V2 {
        return not_found_body();
    }
    let post = method == Method::POST;
    if post && !xsrf_ok(&headers) {
        return v1_message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let session = cookies(&headers)
        .into_iter()
        .find(|(k, _)| k == "JSESSIONID")
        .map(|(_, v)| v);
    if !session.is_some_and(|s| st.sessions.contains(&s)) {
        return v1_message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if st.api == SimApi::V31 {
        let mut resp = v1_message(StatusCode::MOVED_PERMANENTLY, "API deprecated.");
        resp.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_static("/studio/api/2/groups"),
        );
        return resp;
    }
    // Parameters: the JSON body of a POST, the query of a GET.
    let args: Map<String, Value> = if post {
        match parse_object(&body) {
            Some(m) => m,
            None => return v1_message(StatusCode::BAD_REQUEST, "Bad Request"),
        }
    } else {
        q.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect()
    };
    let arg = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let required = |keys: &[&str]| -> Result<Vec<String>, Response> {
        let missing: Vec<&str> = keys.iter().copied().filter(|k| arg(k).is_none()).collect();
        if missing.is_empty() {
            Ok(keys.iter().filter_map(|k| arg(k)).collect())
        } else {
            Err(v1_message(
                StatusCode::BAD_REQUEST,
                &format!("Invalid parameter(s): [{}]", missing.join(", ")),
            ))
        }
    };
    let page = |q: &Params| -> Result<(usize, usize), Response> {
        let get = |k: &str, d: usize| match param(q, k) {
            None => Ok(d),
            Some(v) => v.parse::<usize>().map_err(|_| {
                v1_message(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid parameter(s): [{k}]"),
                )
            }),
        };
        Ok((get("start", 0)?, get("number", 25)?))
    };
    let site_missing = |st: &SimState, site: &str| !st.sites.contains(site);
    // The arguments of a call on one site's group: `first`, then `group_name` and `site_id`, all
    // required, the site checked; their values in that order, and the group if there is one.
    let group_call =
        |st: &SimState, first: &[&str]| -> Result<(Vec<String>, Option<i64>), Response> {
            let keys: Vec<&str> = first
                .iter()
                .copied()
                .chain(["group_name", "site_id"])
                .collect();
            let v = required(&keys)?;
            let (name, site) = (&v[first.len()], &v[first.len() + 1]);
            if site_missing(st, site) {
                return Err(v1_message(StatusCode::NOT_FOUND, "Site not found"));
            }
            let found = st.find(name, Some(site));
            Ok((v, found))
        };
    let result: Result<Response, Response> = (|| {
        match (post, script.as_str()) {
            (true, "create.json") => {
                let (v, found) = group_call(&st, &[])?;
                let (name, site) = (&v[0], &v[1]);
                if found.is_some() {
                    return Ok(with_location(
                        v1_message(StatusCode::CONFLICT, "Group already exists"),
                        name,
                    ));
                }
                let desc = arg("description");
                v1_column("group_name", name, 255)?;
                if let Some(d) = &desc {
                    v1_column("description", d, 3000)?;
                }
                st.insert(name, desc, false, Some(site.clone()));
                Ok(with_location(v1_message(StatusCode::CREATED, "OK"), name))
            }
            (true, "update.json") => {
                let (v, found) = group_call(&st, &[])?;
                let name = &v[0];
                let Some(id) = found else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                // SET description = #{description}: omitted means NULL.
                let desc = args
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if let Some(d) = &desc {
                    v1_column("description", d, 3000)?;
                }
                if let Some(g) = st.groups.get_mut(&id) {
                    g.desc = desc;
                }
                Ok(with_location(v1_message(StatusCode::OK, "OK"), name))
            }
            (true, "delete.json") => {
                let (_, found) = group_call(&st, &[])?;
                let Some(id) = found else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                st.groups.remove(&id);
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            (true, "add-user.json") | (true, "remove-user.json") => {
                let (v, found) = group_call(&st, &["username"])?;
                let (user, name) = (&v[0], &v[1]);
                let Some(id) = found else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                let uid = st.user_id(user);
                let adding = script == "add-user.json";
                let Some(g) = st.groups.get_mut(&id) else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                match (adding, uid) {
                    (_, None) => Ok(v1_message(StatusCode::NOT_FOUND, "User not found")),
                    (true, Some(u)) if g.members.contains(&u) => Ok(with_location(
                        v1_message(StatusCode::CONFLICT, "User already in group"),
                        name,
                    )),
                    (true, Some(u)) => {
                        g.members.insert(u);
                        Ok(with_location(v1_message(StatusCode::OK, "OK"), name))
                    }
                    // Not a member answers the same 404 as no such user.
                    (false, Some(u)) if !g.members.remove(&u) => {
                        Ok(v1_message(StatusCode::NOT_FOUND, "User not found"))
                    }
                    (false, Some(_)) => Ok(StatusCode::NO_CONTENT.into_response()),
                }
            }
            (false, "get.json") => {
                let (v, found) = group_call(&st, &[])?;
                let site = &v[1];
                match found.and_then(|id| st.groups.get(&id)) {
                    Some(g) => Ok((
                        StatusCode::OK,
                        Json(json!({
                            "group_name": g.name,
                            "description": g.desc,
                            "site_id": site,
                        })),
                    )
                        .into_response()),
                    None => Ok(v1_message(StatusCode::NOT_FOUND, "Group not found")),
                }
            }
            (false, "get-per-site.json") => {
                let v = required(&["site_id"])?;
                let site = &v[0];
                if site_missing(&st, site) {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Site not found"));
                }
                let (start, number) = page(&q)?;
                let mut groups: Vec<&GroupRec> = st
                    .groups
                    .values()
                    .filter(|g| g.site.as_deref() == Some(site.as_str()))
                    .collect();
                groups.sort_by_key(|g| g.name.to_lowercase());
                let total = groups.len();
                let list: Vec<Value> = groups
                    .into_iter()
                    .skip(start)
                    .take(number)
                    .map(|g| {
                        let users: Vec<Value> =
                            g.members.iter().map(|u| v1_user(&st, *u)).collect();
                        json!({ "group_name": g.name, "description": g.desc, "users": users })
                    })
                    .collect();
                Ok((
                    StatusCode::OK,
                    Json(json!({ "groups": list, "total": total })),
                )
                    .into_response())
            }
            (false, "users.json") => {
                let (_, found) = group_call(&st, &[])?;
                let (start, number) = page(&q)?;
                let Some(g) = found.and_then(|id| st.groups.get(&id)) else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                let users: Vec<Value> = g
                    .members
                    .iter()
                    .skip(start)
                    .take(number)
                    .map(|u| v1_user(&st, *u))
                    .collect();
                Ok((
                    StatusCode::OK,
                    Json(json!({ "users": users, "total": g.members.len() })),
                )
                    .into_response())
            }
            _ => Ok(not_found_body()),
        }
    })();
    result.unwrap_or_else(|r| r)
}

/// What Studio 3.0's database does with a value for a `VARCHAR(max)` column of charset `utf8`
/// (MySQL's three-byte UTF-8, in strict mode): too long, or with a character beyond the Basic
/// Multilingual Plane, the insert fails, and the script answers 500 with the exception's text.
fn v1_column(column: &str, value: &str, max: usize) -> Result<(), Response> {
    let problem = if value.chars().count() > max {
        format!("Data too long for column '{column}' at row 1")
    } else if value.chars().any(|c| u32::from(c) > 0xFFFF) {
        format!("Incorrect string value for column '{column}' at row 1")
    } else {
        return Ok(());
    };
    Err(v1_message(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("Internal server error: \n{problem}"),
    ))
}

fn v1_user(st: &SimState, id: i64) -> Value {
    let username = st.users.get(&id).cloned().unwrap_or_default();
    json!({
        "username": username,
        "first_name": username,
        "last_name": "",
        "email": format!("{username}@example.com"),
        "externally_managed": false,
    })
}

/// An `offset` or `limit` Studio has validated as at least 0, as a count of items (one beyond any
/// list when it does not fit).
fn as_index<N: TryInto<usize>>(n: N) -> usize {
    n.try_into().unwrap_or(usize::MAX)
}

impl crate::sim::Simulator for CrafterSim {
    type Seed = CrafterSeed;

    fn from_seed(seed: CrafterSeed) -> Self {
        CrafterSim::new(seed)
    }

    fn check_seed(seed: &CrafterSeed) -> Result<(), Vec<String>> {
        seed.validate()
    }

    fn router(&self) -> axum::Router {
        CrafterSim::router(self)
    }

    fn base_path(&self) -> String {
        CrafterSim::base_path(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seed_builds_state_with_built_in_groups() {
        let seed: CrafterSeed = toml::from_str(
            "users = [\"ann\"]\n[[group]]\nname = \"docs\"\nmembers = [\"bob\"]\n\
             [[group]]\nname = \"system_admin\"\nmembers = [\"ann\"]\n",
        )
        .unwrap();
        let sim = CrafterSim::new(seed);
        assert_eq!(sim.group("system_admin").unwrap().id, 1);
        assert_eq!(
            sim.group("system_admin").unwrap().members,
            BTreeSet::from(["admin".to_owned(), "ann".to_owned()])
        );
        assert_eq!(sim.group("DOCS").unwrap().members.len(), 1);
        assert_eq!(sim.groups().len(), 7);
    }

    #[test]
    fn validate_finds_problems() {
        let seed: CrafterSeed = toml::from_str(
            "[[group]]\nname = \"a\"\n[[group]]\nname = \"A\"\n[[group]]\nname = \"x\"\nsite = \"nosite\"\n",
        )
        .unwrap();
        let problems = seed.validate().unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(toml::from_str::<CrafterSeed>("api = \"v4\"").is_err());
    }
}

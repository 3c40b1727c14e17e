//! The VinylDNS simulator: the groups, members and users endpoints of the VinylDNS API, written
//! from the API reference and the server's membership code, with every request's AWS Signature
//! Version 4 checked as the server checks it.
//!
//! State lives behind one mutex; handlers lock it, change it and answer. Errors are plain-text
//! bodies, as the server's routes answer (`complete(status, message)`); a body that cannot be read
//! as the request type is a 400 with `{"errors": [...]}`. The rules that matter to a reconciler
//! are kept: `email` is required, every admin is a member, names are unique (without regard to
//! case), the creating account becomes an admin of a new group, only a group admin or a super
//! user may update or delete a group (403), unknown user ids are refused.
//!
//! Where the reference and the server code disagree or the reference is unsure, a
//! [`Behaviour`] switch picks one (`[vinyldns.behaviour]` in a seed, or `PUT /_sim/behaviour`).
//! Control endpoints (`GET /_sim/state`, `GET|PUT /_sim/faults`, `GET|PUT /_sim/behaviour`,
//! `GET /_sim/calls`) need no signature: serve the simulator on loopback only.
//!
//! ```toml
//! [vinyldns]
//! users = ["alice", "bob"]
//! super_users = ["roster"]
//!
//! [[vinyldns.credentials]]
//! access_key = "roster-access"
//! secret_key = "roster-secret"
//! user = "roster"
//!
//! [[vinyldns.group]]
//! name = "ops"
//! email = "ops@example.com"
//! members = ["alice"]
//! admins = ["alice"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, MutexGuard};

use axum::Router;
use axum::body::{Bytes, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::sigv4::{self, Received, SigError};
use crate::sim::control::{self, ControlPut, SimControl, SimCore};
use crate::sim::faults::{FaultHost, FaultInjector, Faults};
use crate::sim::name_key;

/// The `[vinyldns]` table of a seed file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VinylDnsSeed {
    /// Key pairs, each signing as a user.
    pub credentials: Vec<SeedCredentials>,
    /// Users, by name (ids are generated).
    pub users: Vec<String>,
    /// Users who are super users (may update any group); created when not in `users`.
    pub super_users: Vec<String>,
    /// Groups.
    pub group: Vec<SeedGroup>,
    /// Faults to inject from the start.
    pub faults: Faults,
    /// Which of the plausible behaviours to show.
    pub behaviour: Behaviour,
}

impl Default for VinylDnsSeed {
    fn default() -> Self {
        Self {
            credentials: vec![SeedCredentials {
                access_key: "roster-access".into(),
                secret_key: "roster-secret".into(),
                user: "roster".into(),
            }],
            users: Vec::new(),
            super_users: vec!["roster".into()],
            group: Vec::new(),
            faults: Faults::default(),
            behaviour: Behaviour::default(),
        }
    }
}

/// One access key and secret key, and the user they sign as.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCredentials {
    /// The access key.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    /// The user's name (created when not listed in `users`).
    pub user: String,
}

/// A group of the seed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// Its name.
    pub name: String,
    /// Its e-mail.
    pub email: String,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// Member user names.
    #[serde(default)]
    pub members: Vec<String>,
    /// Admin user names (members too).
    #[serde(default)]
    pub admins: Vec<String>,
}

/// How the simulator answers where the reference is unsure or differs from the server code.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behaviour {
    /// The statuses of authentication failures: `"documented"` (the reference: no header 401,
    /// unparsable header 403, unknown access key 401, bad signature 403) or `"server"` (the
    /// route code read: every failure 401).
    pub auth_statuses: AuthStatuses,
    /// Whether the account that creates a group becomes its admin (the server code does this).
    pub creator_becomes_admin: bool,
    /// The status for a member id that is no user: 404 (the server code) or 400 (the reference,
    /// for PUT).
    pub unknown_user_status: u16,
    /// Whether group names are unique without regard to case.
    pub case_insensitive_names: bool,
    /// A broken server for tests: `GET /groups` ignores `startFrom`, so every page repeats the
    /// first one and its cursor.
    pub repeat_group_pages: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            auth_statuses: AuthStatuses::Documented,
            creator_becomes_admin: true,
            unknown_user_status: 404,
            case_insensitive_names: true,
            repeat_group_pages: false,
        }
    }
}

/// Which statuses authentication failures get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStatuses {
    /// As the API reference lists them (401 and 403 by kind).
    #[default]
    Documented,
    /// As the server's authentication directive answers (401 for all).
    Server,
}

impl VinylDnsSeed {
    /// Every problem with the seed (duplicate names, unknown users, groups without an admin), or
    /// nothing.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let users: BTreeSet<&str> = self
            .users
            .iter()
            .chain(&self.super_users)
            .chain(self.credentials.iter().map(|c| &c.user))
            .map(String::as_str)
            .collect();
        let mut names = BTreeSet::new();
        for g in &self.group {
            if !names.insert(g.name.to_lowercase()) {
                problems.push(format!("vinyldns: group \"{}\" is listed twice", g.name));
            }
            if g.email.trim().is_empty() {
                problems.push(format!("vinyldns: group \"{}\" has no email", g.name));
            }
            if g.admins.is_empty() {
                problems.push(format!("vinyldns: group \"{}\" has no admin", g.name));
            }
            for u in g.members.iter().chain(&g.admins) {
                if !users.contains(u.as_str()) {
                    problems.push(format!(
                        "vinyldns: group \"{}\" names unknown user \"{u}\"",
                        g.name
                    ));
                }
            }
        }
        let mut keys = BTreeSet::new();
        for c in &self.credentials {
            if !keys.insert(&c.access_key) {
                problems.push(format!(
                    "vinyldns: access key \"{}\" is listed twice",
                    c.access_key
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

/// A user of the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimUser {
    /// Its id.
    pub id: String,
    /// Its name.
    pub user_name: String,
    /// Whether it may change any group.
    pub is_super: bool,
}

/// A group of the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimGroup {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its e-mail.
    pub email: String,
    /// Its description.
    pub description: Option<String>,
    /// Member ids (admins included).
    pub members: BTreeSet<String>,
    /// Admin ids.
    pub admins: BTreeSet<String>,
}

/// The simulator's state behind its handles (opaque: only its handles reach inside).
#[derive(Debug)]
pub struct SimState {
    keys: BTreeMap<String, (String, String)>,
    users: BTreeMap<String, SimUser>,
    groups: BTreeMap<String, SimGroup>,
    behaviour: Behaviour,
}

/// A running VinylDNS simulator's state; clones share it.
#[derive(Clone, Debug)]
pub struct VinylDnsSim {
    inner: Arc<SimCore<SimState>>,
}

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
struct Caller {
    id: String,
    is_super: bool,
}

impl VinylDnsSim {
    /// A simulator holding what `seed` describes.
    pub fn new(seed: VinylDnsSeed) -> Self {
        let mut st = SimState {
            keys: BTreeMap::new(),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            behaviour: seed.behaviour.clone(),
        };
        for u in &seed.users {
            st.user_or_new(u, false);
        }
        for u in &seed.super_users {
            st.user_or_new(u, true);
        }
        for c in &seed.credentials {
            let id = st.user_or_new(&c.user, false);
            st.keys
                .insert(c.access_key.clone(), (c.secret_key.clone(), id));
        }
        for g in &seed.group {
            let admins: BTreeSet<String> =
                g.admins.iter().map(|u| st.user_or_new(u, false)).collect();
            let mut members: BTreeSet<String> =
                g.members.iter().map(|u| st.user_or_new(u, false)).collect();
            members.extend(admins.iter().cloned());
            let id = Uuid::new_v4().to_string();
            st.groups.insert(
                id.clone(),
                SimGroup {
                    id,
                    name: g.name.clone(),
                    email: g.email.clone(),
                    description: g.description.clone(),
                    members,
                    admins,
                },
            );
        }
        Self {
            inner: Arc::new(SimCore::new(st, seed.faults)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.inner.lock()
    }

    /// The HTTP API, ready to serve.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/groups", get(list_groups).post(create_group))
            .route(
                "/groups/{id}",
                get(get_group).put(update_group).delete(delete_group),
            )
            .route("/groups/{id}/members", get(list_members))
            .route("/groups/{id}/admins", get(list_admins))
            .route("/users/{key}", get(get_user))
            .fallback(not_found)
            .with_state(self.clone())
            .layer(from_fn_with_state(self.clone(), authenticate));
        control::wrap_api(self, api)
    }

    /// The path the API lives under (appended to `http://host:port` to make the target's `url`):
    /// VinylDNS serves at the root.
    pub fn base_path(&self) -> String {
        String::new()
    }

    /// Adds a user (as VinylDNS does on a first login) and returns its id.
    pub fn add_user(&self, name: &str) -> String {
        self.lock().user_or_new(name, false)
    }

    /// The id of a user, by name.
    pub fn user_id(&self, name: &str) -> Option<String> {
        self.lock().user_by_name(name).map(|u| u.id.clone())
    }

    /// Every group, sorted by name.
    pub fn groups(&self) -> Vec<SimGroup> {
        let mut g: Vec<SimGroup> = self.lock().groups.values().cloned().collect();
        g.sort_by(|a, b| a.name.cmp(&b.name));
        g
    }

    /// A group by exact name.
    pub fn group(&self, name: &str) -> Option<SimGroup> {
        self.lock()
            .groups
            .values()
            .find(|g| g.name == name)
            .cloned()
    }

    /// The member names of a group, sorted (admins included).
    pub fn member_names(&self, group: &str) -> Vec<String> {
        self.names_of(group, |g| &g.members)
    }

    /// The admin names of a group, sorted.
    pub fn admin_names(&self, group: &str) -> Vec<String> {
        self.names_of(group, |g| &g.admins)
    }

    fn names_of(&self, group: &str, ids: impl Fn(&SimGroup) -> &BTreeSet<String>) -> Vec<String> {
        let st = self.lock();
        let Some(g) = st.groups.values().find(|g| g.name == group) else {
            return Vec::new();
        };
        let mut names: Vec<String> = ids(g)
            .iter()
            .filter_map(|id| st.users.get(id).map(|u| u.user_name.clone()))
            .collect();
        names.sort();
        names
    }

    /// Adds a member to a group directly, as another administrator would (no call is logged).
    pub fn add_member(&self, group: &str, user: &str) -> bool {
        let mut st = self.lock();
        let id = st.user_or_new(user, false);
        match st.groups.values_mut().find(|g| g.name == group) {
            Some(g) => {
                g.members.insert(id);
                true
            }
            None => false,
        }
    }

    /// Creates a group directly (no call is logged), with `admin` as its admin and member.
    pub fn insert_group(&self, name: &str, email: &str, admin: &str) -> String {
        let mut st = self.lock();
        let admin = st.user_or_new(admin, false);
        let id = Uuid::new_v4().to_string();
        st.groups.insert(
            id.clone(),
            SimGroup {
                id: id.clone(),
                name: name.to_owned(),
                email: email.to_owned(),
                description: None,
                members: BTreeSet::from([admin.clone()]),
                admins: BTreeSet::from([admin]),
            },
        );
        id
    }
}

impl SimState {
    fn user_by_name(&self, name: &str) -> Option<&SimUser> {
        self.users.values().find(|u| u.user_name == name)
    }

    fn user_or_new(&mut self, name: &str, is_super: bool) -> String {
        if let Some(u) = self.users.values_mut().find(|u| u.user_name == name) {
            u.is_super |= is_super;
            return u.id.clone();
        }
        let id = Uuid::new_v4().to_string();
        self.users.insert(
            id.clone(),
            SimUser {
                id: id.clone(),
                user_name: name.to_owned(),
                is_super,
            },
        );
        id
    }

    fn name_key(&self, name: &str) -> String {
        name_key(name, self.behaviour.case_insensitive_names)
    }

    /// A group of that name other than `except`.
    fn same_name(&self, name: &str, except: Option<&str>) -> Option<&SimGroup> {
        let key = self.name_key(name);
        self.groups
            .values()
            .find(|g| Some(g.id.as_str()) != except && self.name_key(&g.name) == key)
    }

    fn info(&self, g: &SimGroup) -> Value {
        let mut v = json!({
            "id": g.id,
            "name": g.name,
            "email": g.email,
            "created": "2025-01-01T00:00:00Z",
            "status": "Active",
            "members": g.members.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
            "admins": g.admins.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
        });
        if let (Some(d), Some(o)) = (&g.description, v.as_object_mut()) {
            o.insert("description".into(), d.clone().into());
        }
        v
    }

    fn user_info(&self, u: &SimUser) -> Value {
        json!({
            "id": u.id,
            "userName": u.user_name,
            "created": "2025-01-01T00:00:00Z",
            "lockStatus": "Unlocked",
        })
    }

    /// Ids that name no user.
    fn unknown_users<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> Vec<&'a String> {
        ids.into_iter()
            .filter(|id| !self.users.contains_key(*id))
            .collect()
    }
}

impl FaultHost for VinylDnsSim {
    fn injector(&self) -> &FaultInjector {
        self.inner.faults()
    }

    fn is_api_call(&self, path: &str) -> bool {
        !path.starts_with("/_sim/")
    }

    fn fault_response(&self, status: StatusCode) -> Response {
        text(
            status,
            status.canonical_reason().unwrap_or("Injected failure"),
        )
    }

    /// VinylDNS has no tokens or sessions: every request is signed on its own, so there is
    /// nothing to expire.
    fn expire_tokens(&self) {}
}

impl SimControl for VinylDnsSim {
    type Behaviour = Behaviour;
    type State = SimState;

    const CONTROL_PUT: ControlPut = ControlPut::NoContent;

    fn core(&self) -> &SimCore<SimState> {
        &self.inner
    }

    fn behaviour_in(state: &mut SimState) -> &mut Behaviour {
        &mut state.behaviour
    }

    fn state_json(&self) -> Value {
        let st = self.lock();
        json!({
            "users": st.users.values().collect::<Vec<_>>(),
            "groups": st.groups.values().collect::<Vec<_>>(),
        })
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

/// Checks the request's signature as the server does and passes the caller on.
async fn authenticate(State(sim): State<VinylDnsSim>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, 10 * 1024 * 1024).await else {
        return text(
            StatusCode::BAD_REQUEST,
            "The request body could not be read",
        );
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let pq = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let received = Received {
        method: parts.method.as_str(),
        path_and_query: &pq,
        headers: &headers,
        body: &bytes,
    };
    let (keys, mode) = {
        let st = sim.lock();
        (st.keys.clone(), st.behaviour.auth_statuses)
    };
    let verdict = sigv4::verify(&received, |ak| keys.get(ak).map(|(s, _)| s.clone()));
    let access_key = match verdict {
        Ok(ak) => ak,
        Err(e) => {
            let status = match (mode, &e) {
                (AuthStatuses::Documented, SigError::Unparsable | SigError::BadSignature) => {
                    StatusCode::FORBIDDEN
                }
                _ => StatusCode::UNAUTHORIZED,
            };
            return text(status, format!("Authentication Failed: {e}"));
        }
    };
    let caller = {
        let st = sim.lock();
        let Some((_, id)) = st.keys.get(&access_key) else {
            return text(StatusCode::UNAUTHORIZED, "Authentication Failed");
        };
        Caller {
            id: id.clone(),
            is_super: st.users.get(id).is_some_and(|u| u.is_super),
        }
    };
    let mut req = Request::from_parts(parts, axum::body::Body::from(bytes));
    req.extensions_mut().insert(caller);
    next.run(req).await
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "The requested resource could not be found.",
    )
}

/// `maxItems`, 1..=100 (default 100).
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn max_items(q: &BTreeMap<String, String>) -> Result<usize, Response> {
    let Some(raw) = q.get("maxItems") else {
        return Ok(100);
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=100).contains(&n) => Ok(usize::try_from(n).unwrap_or(100)),
        Ok(n) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("maxItems was {n}, maxItems must be between 0 exclusive and 100 inclusive"),
        )),
        Err(_) => Err(text(
            StatusCode::BAD_REQUEST,
            format!(
                "The query parameter 'maxItems' was malformed: '{raw}' is not a valid 32-bit signed integer value"
            ),
        )),
    }
}

/// A handler's answer: `Err` carries its error response, so that `?` can pass one on.
type Answer = Result<Response, Response>;

/// `GET /groups`.
async fn list_groups(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Answer {
    let max = max_items(&q)?;
    let ignore_access = match q.get("ignoreAccess").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!(
                    "The query parameter 'ignoreAccess' was malformed: '{other}' is not a valid Boolean value"
                ),
            ));
        }
    };
    let st = sim.lock();
    let filter = q.get("groupNameFilter").map(|f| f.to_lowercase());
    let mut all: Vec<&SimGroup> = st
        .groups
        .values()
        .filter(|g| ignore_access || caller.is_super || g.members.contains(&caller.id))
        .filter(|g| {
            filter
                .as_ref()
                .is_none_or(|f| g.name.to_lowercase().contains(f))
        })
        .collect();
    all.sort_by_key(|g| (g.name.to_lowercase(), g.id.clone()));
    let start = if st.behaviour.repeat_group_pages {
        None
    } else {
        q.get("startFrom")
    };
    let rest: Vec<&SimGroup> = match start {
        None => all,
        Some(id) => {
            let Some(prev) = st.groups.get(id) else {
                return Err(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "There was an internal server error.",
                ));
            };
            let prev = prev.name.to_lowercase();
            all.into_iter()
                .filter(|g| g.name.to_lowercase() > prev)
                .collect()
        }
    };
    let next_id = (rest.len() > max).then(|| rest[max - 1].id.clone());
    let groups: Vec<Value> = rest.iter().take(max).map(|g| st.info(g)).collect();
    let mut body = json!({
        "groups": groups,
        "maxItems": max,
        "ignoreAccess": ignore_access,
    });
    if let Some(o) = body.as_object_mut() {
        if let Some(n) = next_id {
            o.insert("nextId".into(), n.into());
        }
        if let Some(s) = q.get("startFrom") {
            o.insert("startFrom".into(), s.clone().into());
        }
        if let Some(f) = q.get("groupNameFilter") {
            o.insert("groupNameFilter".into(), f.clone().into());
        }
    }
    Ok(ok(body))
}

fn group_not_found(id: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("Group with ID {id} was not found"),
    )
}

/// `GET /groups/{id}`.
async fn get_group(State(sim): State<VinylDnsSim>, Path(id): Path<String>) -> Response {
    let st = sim.lock();
    match st.groups.get(&id) {
        Some(g) => ok(st.info(g)),
        None => group_not_found(&id),
    }
}

/// The body of a create or an update, as the server's JSON protocol reads it.
#[derive(Debug, Default, Deserialize)]
struct GroupInput {
    id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    description: Option<String>,
    #[serde(default)]
    members: Vec<IdIn>,
    #[serde(default)]
    admins: Vec<IdIn>,
}

#[derive(Debug, Deserialize)]
struct IdIn {
    id: String,
}

// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn read_input(body: &Bytes, update: bool) -> Result<(GroupInput, String, String), Response> {
    let input: GroupInput = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "errors": [format!("The request content was malformed: {e}")] })),
        )
            .into_response()
    })?;
    let mut missing = Vec::new();
    if update && input.id.is_none() {
        missing.push("Missing Group.id");
    }
    if input.name.is_none() {
        missing.push("Missing Group.name");
    }
    if input.email.is_none() {
        missing.push("Missing Group.email");
    }
    if !missing.is_empty() {
        return Err((StatusCode::BAD_REQUEST, Json(json!({ "errors": missing }))).into_response());
    }
    let name = input.name.clone().unwrap_or_default();
    let email = input.email.clone().unwrap_or_default();
    if name.trim().is_empty() || email.trim().is_empty() {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "Group name and email cannot be empty.",
        ));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "Group name must be one word: no spaces.",
        ));
    }
    let valid_email = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !valid_email {
        return Err(text(StatusCode::BAD_REQUEST, "Please enter a valid Email."));
    }
    Ok((input, name, email))
}

fn conflict(name: &str, email: &str) -> Response {
    text(
        StatusCode::CONFLICT,
        format!(
            "Group with name {name} already exists. Please try a different name or contact {email} to be added to the group."
        ),
    )
}

// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn check_lists(
    st: &SimState,
    members: &BTreeSet<String>,
    admins: &BTreeSet<String>,
) -> Result<(), Response> {
    if members.is_empty() || admins.is_empty() {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "Group must have at least one member and one admin",
        ));
    }
    let unknown = st.unknown_users(members);
    if !unknown.is_empty() {
        let ids: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        let status =
            StatusCode::from_u16(st.behaviour.unknown_user_status).unwrap_or(StatusCode::NOT_FOUND);
        return Err(text(
            status,
            format!("Users [ {} ] were not found", ids.join(",")),
        ));
    }
    Ok(())
}

/// `POST /groups`.
async fn create_group(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Answer {
    let (input, name, email) = read_input(&body, false)?;
    let mut st = sim.lock();
    let mut admins: BTreeSet<String> = input.admins.iter().map(|a| a.id.clone()).collect();
    if st.behaviour.creator_becomes_admin {
        admins.insert(caller.id.clone());
    }
    let mut members: BTreeSet<String> = input.members.iter().map(|m| m.id.clone()).collect();
    members.extend(admins.iter().cloned());
    if let Some(g) = st.same_name(&name, None) {
        return Err(conflict(&name, &g.email));
    }
    check_lists(&st, &members, &admins)?;
    let id = Uuid::new_v4().to_string();
    let g = SimGroup {
        id: id.clone(),
        name,
        email,
        description: input.description,
        members,
        admins,
    };
    let info = st.info(&g);
    st.groups.insert(id, g);
    Ok(ok(info))
}

/// `PUT /groups/{id}`: the whole group; the server reads the id from the body.
async fn update_group(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Path(_path_id): Path<String>,
    body: Bytes,
) -> Answer {
    let (input, name, email) = read_input(&body, true)?;
    let id = input.id.clone().unwrap_or_default();
    let mut st = sim.lock();
    let Some(existing) = st.groups.get(&id).cloned() else {
        return Err(group_not_found(&id));
    };
    if !(caller.is_super || existing.admins.contains(&caller.id)) {
        return Err(text(StatusCode::FORBIDDEN, "Not authorized"));
    }
    let admins: BTreeSet<String> = input.admins.iter().map(|a| a.id.clone()).collect();
    let mut members: BTreeSet<String> = input.members.iter().map(|m| m.id.clone()).collect();
    members.extend(admins.iter().cloned());
    check_lists(&st, &members, &admins)?;
    if let Some(g) = st.same_name(&name, Some(&id)) {
        return Err(conflict(&name, &g.email));
    }
    let g = SimGroup {
        id: id.clone(),
        name,
        email,
        description: input.description,
        members,
        admins,
    };
    let info = st.info(&g);
    st.groups.insert(id, g);
    Ok(ok(info))
}

/// `DELETE /groups/{id}`.
async fn delete_group(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let mut st = sim.lock();
    let Some(existing) = st.groups.get(&id).cloned() else {
        return group_not_found(&id);
    };
    if !(caller.is_super || existing.admins.contains(&caller.id)) {
        return text(StatusCode::FORBIDDEN, "Not authorized");
    }
    st.groups.remove(&id);
    let mut info = st.info(&existing);
    if let Some(o) = info.as_object_mut() {
        o.insert("status".into(), "Deleted".into());
    }
    ok(info)
}

/// `GET /groups/{id}/members`: paged by user id.
async fn list_members(
    State(sim): State<VinylDnsSim>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Answer {
    let max = max_items(&q)?;
    let st = sim.lock();
    let Some(g) = st.groups.get(&id) else {
        return Err(group_not_found(&id));
    };
    let start = q.get("startFrom");
    let rest: Vec<&String> = g
        .members
        .iter()
        .filter(|m| start.is_none_or(|s| m.as_str() > s.as_str()))
        .collect();
    let page: Vec<Value> = rest
        .iter()
        .take(max)
        .filter_map(|m| st.users.get(*m))
        .map(|u| {
            let mut v = st.user_info(u);
            if let Some(o) = v.as_object_mut() {
                o.insert("isAdmin".into(), g.admins.contains(&u.id).into());
            }
            v
        })
        .collect();
    let mut body = json!({ "members": page, "maxItems": max });
    if let Some(o) = body.as_object_mut() {
        if rest.len() > max {
            o.insert("nextId".into(), rest[max - 1].clone().into());
        }
        if let Some(s) = start {
            o.insert("startFrom".into(), s.clone().into());
        }
    }
    Ok(ok(body))
}

/// `GET /groups/{id}/admins`.
async fn list_admins(State(sim): State<VinylDnsSim>, Path(id): Path<String>) -> Response {
    let st = sim.lock();
    let Some(g) = st.groups.get(&id) else {
        return group_not_found(&id);
    };
    let admins: Vec<Value> = g
        .admins
        .iter()
        .filter_map(|a| st.users.get(a))
        .map(|u| st.user_info(u))
        .collect();
    ok(json!({ "admins": admins }))
}

/// `GET /users/{id or name}`.
async fn get_user(State(sim): State<VinylDnsSim>, Path(key): Path<String>) -> Response {
    let st = sim.lock();
    let user = st.users.get(&key).or_else(|| st.user_by_name(&key));
    match user {
        Some(u) => {
            let groups: Vec<&String> = st
                .groups
                .values()
                .filter(|g| g.members.contains(&u.id))
                .map(|g| &g.id)
                .collect();
            ok(json!({ "id": u.id, "userName": u.user_name, "groupId": groups }))
        }
        None => text(StatusCode::NOT_FOUND, format!("User {key} was not found")),
    }
}

//! The VinylDNS simulator: the groups, members, admins, users, allowed-domains and zone-list
//! endpoints of the VinylDNS API, written from the API reference and the server's code, with every
//! request's AWS Signature Version 4 checked as the server checks it ([`auth`]).
//!
//! State lives behind one mutex; handlers lock it, change it and answer. Errors are plain-text
//! bodies, as the server's routes answer (`complete(status, message)`); a body without a required
//! field is a 400 with `{"errors": [...]}`. The server's rules are kept, in the server's order:
//! every authentication failure is a 401 (a locked account a 403); the e-mail must pass the
//! server's pattern, its allowed domains and its limit of dots after `@`; a description over 256
//! characters does not fit the server's column (500); every admin is a member and a group needs
//! one of each; names are unique without regard to case; the creating account becomes an admin and
//! a member of a new group; only a group admin or a super user may update or delete a group (403);
//! a create checks every user id (404), an update only the newly added non-admin members, so an
//! unknown admin id is stored unchecked; the members list leaves out ids without a user; a group
//! that administers a zone, owns records or appears in a zone's ACL cannot be deleted (400).
//!
//! The server's configuration (allowed e-mail domains, dots after `@`) and a few behaviours are
//! [`Behaviour`] settings (`[vinyldns.behaviour]` in a seed, or `PUT /_sim/behaviour`).
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
//!
//! # ops administers a zone, so it cannot be deleted.
//! [[vinyldns.zone]]
//! name = "example.com."
//! admin_group = "ops"
//!
//! [vinyldns.behaviour]
//! valid_email_domains = ["example.com"]   # empty: every domain
//! email_dots = 2
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

pub mod auth;

use self::auth::{AuthFailure, Incoming};
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
    /// Users whose accounts are locked (their requests are refused with 403).
    pub locked_users: Vec<String>,
    /// Groups.
    pub group: Vec<SeedGroup>,
    /// Zones, each administered by a group.
    pub zone: Vec<SeedZone>,
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
            locked_users: Vec::new(),
            group: Vec::new(),
            zone: Vec::new(),
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

/// A zone of the seed: the group that administers it, and the groups its ACL rules and records
/// name (each of them keeps its group from being deleted).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedZone {
    /// The zone's name, such as `example.com.`.
    pub name: String,
    /// The name of the group that administers it.
    pub admin_group: String,
    /// Groups named by the zone's ACL rules.
    #[serde(default)]
    pub acl_groups: Vec<String>,
    /// Groups that own a record set in the zone.
    #[serde(default)]
    pub record_owners: Vec<String>,
}

/// The server's configuration and the behaviours a test may pick.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behaviour {
    /// The e-mail domains groups may use (the server's `valid-email-config.email-domains`);
    /// empty allows every domain. `*.example.com` allows any domain ending in `.example.com`;
    /// as on the server, every entry is matched as a suffix of the domain.
    pub valid_email_domains: Vec<String>,
    /// The most dots the domain of a group's e-mail may hold (the server's
    /// `valid-email-config.number-of-dots`, 2 by default).
    pub email_dots: usize,
    /// Whether `GET /groups` honours `abridged=true` (each group's lists cut to the caller's own
    /// id); `false` shows a server from before that parameter, which lists everyone.
    pub abridged_lists: bool,
    /// Whether group names are unique without regard to case.
    pub case_insensitive_names: bool,
    /// A broken server for tests: `GET /groups` ignores `startFrom`, so every page repeats the
    /// first one and its cursor.
    pub repeat_group_pages: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            valid_email_domains: Vec::new(),
            email_dots: 2,
            abridged_lists: true,
            case_insensitive_names: true,
            repeat_group_pages: false,
        }
    }
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
            .chain(&self.locked_users)
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
        for z in &self.zone {
            for g in std::iter::once(&z.admin_group)
                .chain(&z.acl_groups)
                .chain(&z.record_owners)
            {
                if !names.contains(&g.to_lowercase()) {
                    problems.push(format!(
                        "vinyldns: zone \"{}\" names unknown group \"{g}\"",
                        z.name
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
    /// Whether its account is locked.
    pub locked: bool,
}

/// A zone of the simulator (only what decides whether a group may be deleted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimZone {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The id of the group that administers it.
    pub admin_group_id: String,
    /// Ids of the groups its ACL rules name.
    pub acl_group_ids: BTreeSet<String>,
    /// Ids of the groups that own a record set in it.
    pub record_owner_ids: BTreeSet<String>,
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
    zones: Vec<SimZone>,
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
            zones: Vec::new(),
            behaviour: seed.behaviour.clone(),
        };
        for u in &seed.users {
            st.user_or_new(u, false);
        }
        for u in &seed.super_users {
            st.user_or_new(u, true);
        }
        for u in &seed.locked_users {
            let id = st.user_or_new(u, false);
            if let Some(user) = st.users.get_mut(&id) {
                user.locked = true;
            }
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
        for z in &seed.zone {
            let id_of = |name: &str| {
                st.groups
                    .values()
                    .find(|g| g.name.eq_ignore_ascii_case(name))
                    .map(|g| g.id.clone())
            };
            let zone = SimZone {
                id: Uuid::new_v4().to_string(),
                name: z.name.clone(),
                admin_group_id: id_of(&z.admin_group).unwrap_or_default(),
                acl_group_ids: z.acl_groups.iter().filter_map(|g| id_of(g)).collect(),
                record_owner_ids: z.record_owners.iter().filter_map(|g| id_of(g)).collect(),
            };
            st.zones.push(zone);
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
            .route("/groups/valid/domains", get(valid_domains))
            .route("/users/{key}", get(get_user))
            .route("/zones", get(list_zones))
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

    /// Stores an id that names no user among a group's admins (and so its members), as the
    /// server's PUT does with an unknown admin id (no call is logged).
    pub fn add_unknown_admin(&self, group: &str, id: &str) -> bool {
        let mut st = self.lock();
        match st.groups.values_mut().find(|g| g.name == group) {
            Some(g) => {
                g.admins.insert(id.to_owned());
                g.members.insert(id.to_owned());
                true
            }
            None => false,
        }
    }

    /// Sets a group's e-mail directly, as if the server's rules had changed since it was stored
    /// (no call is logged).
    pub fn set_email(&self, group: &str, email: &str) -> bool {
        let mut st = self.lock();
        match st.groups.values_mut().find(|g| g.name == group) {
            Some(g) => {
                g.email = email.to_owned();
                true
            }
            None => false,
        }
    }

    /// The ids a group holds, admins included, whether or not a user stands behind them.
    pub fn member_ids(&self, group: &str) -> BTreeSet<String> {
        self.group(group).map(|g| g.members).unwrap_or_default()
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

    /// A user by id or name, without regard to case (the server's lookup).
    fn user_by_key(&self, key: &str) -> Option<&SimUser> {
        let key = key.to_lowercase();
        self.users
            .values()
            .find(|u| u.id.to_lowercase() == key || u.user_name.to_lowercase() == key)
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
                locked: false,
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
            "isSuper": u.is_super,
            "isSupport": false,
            "lockStatus": if u.locked { "Locked" } else { "Unlocked" },
        })
    }

    fn member_info(&self, u: &SimUser, g: &SimGroup) -> Value {
        json!({
            "id": u.id,
            "userName": u.user_name,
            "created": "2025-01-01T00:00:00Z",
            "isAdmin": g.admins.contains(&u.id),
            "lockStatus": if u.locked { "Locked" } else { "Unlocked" },
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
            "zones": st.zones,
        })
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

/// Checks the request's signature as the server does and passes the caller on. Every
/// authentication failure is a 401 with a plain-text body; a locked account is a 403; a request
/// without a readable date fails inside the server (500).
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
    let incoming = Incoming {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
        body: &bytes,
    };
    let keys = sim.lock().keys.clone();
    let access_key = match auth::authenticate(&incoming, |ak| keys.get(ak).map(|(s, _)| s.clone()))
    {
        Ok(ak) => ak,
        Err(AuthFailure::NoDate) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "There was an internal server error.",
            );
        }
        Err(e) => {
            return text(
                StatusCode::UNAUTHORIZED,
                format!("Authentication Failed: {e}"),
            );
        }
    };
    let caller = {
        let st = sim.lock();
        let Some(user) = st
            .keys
            .get(&access_key)
            .and_then(|(_, id)| st.users.get(id))
        else {
            return text(StatusCode::UNAUTHORIZED, "Authentication Failed");
        };
        if user.locked {
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "Authentication Failed: Account with username {} is locked",
                    user.user_name
                ),
            );
        }
        Caller {
            id: user.id.clone(),
            is_super: user.is_super,
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

/// `maxItems` between 1 and `limit` (default 100), as the server's routes check it.
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn max_items(q: &BTreeMap<String, String>, limit: i64) -> Result<usize, Response> {
    let Some(raw) = q.get("maxItems") else {
        return Ok(100);
    };
    match raw.parse::<i32>() {
        Ok(n) if (1..=limit).contains(&i64::from(n)) => Ok(usize::try_from(n).unwrap_or(100)),
        // Each route words it its own way; the group list's message spans lines.
        Ok(n) if limit == 3000 => Err(text(
            StatusCode::BAD_REQUEST,
            format!(
                "\nmaxItems was {n}, maxItems must be between 0 exclusive\nand {limit} inclusive\"\n"
            ),
        )),
        Ok(n) if limit == 100 => Err(text(
            StatusCode::BAD_REQUEST,
            format!("maxItems was {n}, maxItems must be between 0 and {limit}"),
        )),
        Ok(n) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("maxItems was {n}, maxItems must be between 0 exclusive and {limit} inclusive"),
        )),
        Err(_) => Err(text(
            StatusCode::BAD_REQUEST,
            format!(
                "The query parameter 'maxItems' was malformed: '{raw}' is not a valid 32-bit signed integer value"
            ),
        )),
    }
}

/// A boolean query parameter (default `false`).
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn flag(q: &BTreeMap<String, String>, name: &str) -> Result<bool, Response> {
    match q.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(text(
            StatusCode::BAD_REQUEST,
            format!(
                "The query parameter '{name}' was malformed: '{other}' is not a valid Boolean value"
            ),
        )),
    }
}

/// A handler's answer: `Err` carries its error response, so that `?` can pass one on.
type Answer = Result<Response, Response>;

/// `GET /groups`: every group for a super user or with `ignoreAccess=true`, else the caller's;
/// `abridged=true` keeps of each group's lists only the caller's own id (in `members` when it is
/// a member, in `admins` when it is an admin).
async fn list_groups(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Answer {
    let max = max_items(&q, 3000)?;
    let ignore_access = flag(&q, "ignoreAccess")?;
    let abridged = flag(&q, "abridged")? && sim.lock().behaviour.abridged_lists;
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
    let groups: Vec<Value> = rest
        .iter()
        .take(max)
        .map(|g| {
            if !abridged {
                return st.info(g);
            }
            let mine = |ids: &BTreeSet<String>| -> Vec<Value> {
                ids.iter()
                    .filter(|id| **id == caller.id)
                    .map(|id| json!({ "id": id }))
                    .collect()
            };
            let mut v = json!({
                "id": g.id,
                "name": g.name,
                "email": g.email,
                "members": mine(&g.members),
                "admins": mine(&g.admins),
            });
            if let (Some(d), Some(o)) = (&g.description, v.as_object_mut()) {
                o.insert("description".into(), d.clone().into());
            }
            v
        })
        .collect();
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
    members: Option<Vec<IdIn>>,
    admins: Option<Vec<IdIn>>,
}

#[derive(Debug, Deserialize)]
struct IdIn {
    id: String,
}

/// A create or update body with every required field.
struct Input {
    id: Option<String>,
    name: String,
    email: String,
    description: Option<String>,
    members: BTreeSet<String>,
    admins: BTreeSet<String>,
}

/// Reads a body as the server's JSON protocol does: every missing field is named in one 400.
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn read_input(body: &Bytes, update: bool) -> Result<Input, Response> {
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
    if input.members.is_none() {
        missing.push("Missing Group.members");
    }
    if input.admins.is_none() {
        missing.push("Missing Group.admins");
    }
    if !missing.is_empty() {
        return Err((StatusCode::BAD_REQUEST, Json(json!({ "errors": missing }))).into_response());
    }
    let ids = |v: Option<Vec<IdIn>>| -> BTreeSet<String> {
        v.unwrap_or_default().into_iter().map(|i| i.id).collect()
    };
    let admins = ids(input.admins);
    // The server's routes make every admin a member.
    let mut members = ids(input.members);
    members.extend(admins.iter().cloned());
    Ok(Input {
        id: input.id,
        name: input.name.unwrap_or_default(),
        email: input.email.unwrap_or_default(),
        description: input.description,
        members,
        admins,
    })
}

/// The checks the server makes of every group it is about to store, before any other: name and
/// e-mail not blank, a one-word name, the e-mail rule.
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn check_fields(st: &SimState, name: &str, email: &str) -> Result<(), Response> {
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
    email_rule(email, &st.behaviour).map_err(|m| text(StatusCode::BAD_REQUEST, m))
}

/// The server's e-mail rule: its pattern, at least one dot after `@`, an allowed domain (every
/// configured entry, its `*` removed, matched as a suffix), at most `email_dots` dots after `@`.
fn email_rule(email: &str, b: &Behaviour) -> Result<(), String> {
    const INVALID: &str = "Please enter a valid Email.";
    let Some((local, domain)) = email.split_once('@') else {
        return Err(INVALID.into());
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._+!&-".contains(&c));
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
    };
    let shape_ok = local_ok
        && domain.split('.').all(label_ok)
        && !email.starts_with('.')
        && !email.ends_with('.')
        && !email.contains("..");
    let dots = domain.matches('.').count();
    if !shape_ok || dots == 0 {
        return Err(INVALID.into());
    }
    let suffixes: Vec<String> = b
        .valid_email_domains
        .iter()
        .map(|d| d.replace('*', ""))
        .collect();
    let allowed = b.valid_email_domains.is_empty()
        || b.valid_email_domains.iter().any(|d| d == domain)
        || suffixes.iter().any(|d| domain.ends_with(d.as_str()));
    if allowed && dots <= b.email_dots {
        Ok(())
    } else if dots > b.email_dots {
        Err(format!(
            "Please enter a valid Email. Number of dots allowed after @ is {}",
            b.email_dots
        ))
    } else {
        Err(format!(
            "Please enter a valid Email. Valid domains should end with {}",
            suffixes.join(",")
        ))
    }
}

/// The server stores a description in a column of 256 characters; a longer one fails the
/// write inside the server.
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn check_description(d: Option<&str>) -> Result<(), Response> {
    if d.is_some_and(|d| d.chars().count() > 256) {
        return Err(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "There was an internal server error.",
        ));
    }
    Ok(())
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
fn has_members_and_admins(
    members: &BTreeSet<String>,
    admins: &BTreeSet<String>,
) -> Result<(), Response> {
    if members.is_empty() || admins.is_empty() {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "Group must have at least one member and one admin",
        ));
    }
    Ok(())
}

// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn users_exist<'a>(
    st: &SimState,
    ids: impl IntoIterator<Item = &'a String>,
) -> Result<(), Response> {
    let unknown = st.unknown_users(ids);
    if unknown.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
    Err(text(
        StatusCode::NOT_FOUND,
        format!("Users [ {} ] were not found", ids.join(",")),
    ))
}

fn not_authorized() -> Response {
    text(StatusCode::FORBIDDEN, "Not authorized")
}

/// `POST /groups`, in the server's order: fields and e-mail, members and admins, the name, then
/// every user id. The creator becomes an admin and a member.
async fn create_group(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Answer {
    let mut input = read_input(&body, false)?;
    input.admins.insert(caller.id.clone());
    input.members.insert(caller.id.clone());
    let mut st = sim.lock();
    check_fields(&st, &input.name, &input.email)?;
    has_members_and_admins(&input.members, &input.admins)?;
    if let Some(g) = st.same_name(&input.name, None) {
        return Err(conflict(&input.name, &g.email));
    }
    users_exist(&st, &input.members)?;
    check_description(input.description.as_deref())?;
    let id = Uuid::new_v4().to_string();
    let g = SimGroup {
        id: id.clone(),
        name: input.name,
        email: input.email,
        description: input.description,
        members: input.members,
        admins: input.admins,
    };
    let info = st.info(&g);
    st.groups.insert(id, g);
    Ok(ok(info))
}

/// `PUT /groups/{id}`: the whole group; the server reads the id from the body. In the server's
/// order: the group, fields and e-mail, the caller's right, members and admins, the newly added
/// non-admin members (unknown admin ids are stored unchecked), the name.
async fn update_group(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Path(_path_id): Path<String>,
    body: Bytes,
) -> Answer {
    let input = read_input(&body, true)?;
    let id = input.id.clone().unwrap_or_default();
    let mut st = sim.lock();
    let Some(existing) = st.groups.get(&id).cloned() else {
        return Err(group_not_found(&id));
    };
    check_fields(&st, &input.name, &input.email)?;
    if !(caller.is_super || existing.admins.contains(&caller.id)) {
        return Err(not_authorized());
    }
    has_members_and_admins(&input.members, &input.admins)?;
    let added_admins: BTreeSet<&String> = input.admins.difference(&existing.admins).collect();
    let added_non_admins: BTreeSet<&String> = input
        .members
        .difference(&existing.members)
        .filter(|m| !added_admins.contains(m))
        .chain(
            existing
                .admins
                .difference(&input.admins)
                .filter(|a| input.members.contains(*a)),
        )
        .collect();
    users_exist(&st, added_non_admins)?;
    if let Some(g) = st.same_name(&input.name, Some(&id)) {
        return Err(conflict(&input.name, &g.email));
    }
    check_description(input.description.as_deref())?;
    let g = SimGroup {
        id: id.clone(),
        name: input.name,
        email: input.email,
        description: input.description,
        members: input.members,
        admins: input.admins,
    };
    let info = st.info(&g);
    st.groups.insert(id, g);
    Ok(ok(info))
}

/// `DELETE /groups/{id}`: refused while the group administers a zone, owns a record set or is
/// named in a zone's ACL rule.
async fn delete_group(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let mut st = sim.lock();
    let Some(existing) = st.groups.get(&id).cloned() else {
        return Err(group_not_found(&id));
    };
    if !(caller.is_super || existing.admins.contains(&caller.id)) {
        return Err(not_authorized());
    }
    let refuse = |m: String| text(StatusCode::BAD_REQUEST, m);
    let name = &existing.name;
    if st.zones.iter().any(|z| z.admin_group_id == id) {
        return Err(refuse(format!(
            "{name} is the admin of a zone. Cannot delete. Please transfer the ownership to another group before deleting."
        )));
    }
    if st.zones.iter().any(|z| z.record_owner_ids.contains(&id)) {
        return Err(refuse(format!(
            "{name} is the owner for a record set including {}. Cannot delete. Please transfer the ownership to another group before deleting.",
            Uuid::new_v4()
        )));
    }
    if let Some(z) = st.zones.iter().find(|z| z.acl_group_ids.contains(&id)) {
        return Err(refuse(format!(
            "{name} has an ACL rule for a zone including {}. Cannot delete. Please transfer the ownership to another group before deleting.",
            z.id
        )));
    }
    st.groups.remove(&id);
    let mut info = st.info(&existing);
    if let Some(o) = info.as_object_mut() {
        o.insert("status".into(), "Deleted".into());
    }
    Ok(ok(info))
}

/// `GET /groups/{id}/members`: the group's ids that are users, paged by user id; an id without a
/// user is left out.
async fn list_members(
    State(sim): State<VinylDnsSim>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Answer {
    let max = max_items(&q, 1000)?;
    let st = sim.lock();
    let Some(g) = st.groups.get(&id) else {
        return Err(group_not_found(&id));
    };
    let start = q.get("startFrom");
    let rest: Vec<&SimUser> = g
        .members
        .iter()
        .filter(|m| start.is_none_or(|s| m.as_str() > s.as_str()))
        .filter_map(|m| st.users.get(m))
        .collect();
    let page: Vec<Value> = rest
        .iter()
        .take(max)
        .map(|u| st.member_info(u, g))
        .collect();
    let mut body = json!({ "members": page, "maxItems": max });
    if let Some(o) = body.as_object_mut() {
        if rest.len() > max {
            o.insert("nextId".into(), rest[max - 1].id.clone().into());
        }
        if let Some(s) = start {
            o.insert("startFrom".into(), s.clone().into());
        }
    }
    Ok(ok(body))
}

/// `GET /groups/{id}/admins`: the admins that are users, with their `isSuper` flags.
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

/// `GET /groups/valid/domains`: the allowed e-mail domains, as configured.
async fn valid_domains(State(sim): State<VinylDnsSim>) -> Response {
    let domains = sim.lock().behaviour.valid_email_domains.clone();
    ok(json!(domains))
}

/// `GET /users/{id or name}`, without regard to case.
async fn get_user(State(sim): State<VinylDnsSim>, Path(key): Path<String>) -> Response {
    let st = sim.lock();
    match st.user_by_key(&key) {
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

/// `GET /zones`: the zones whose admin group the caller belongs to, or every zone for a super
/// user or with `ignoreAccess=true`; paged by zone name (`maxItems` 1..100).
async fn list_zones(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Answer {
    let max = max_items(&q, 100)?;
    let ignore_access = flag(&q, "ignoreAccess")?;
    let st = sim.lock();
    let mine = |z: &SimZone| {
        st.groups
            .get(&z.admin_group_id)
            .is_some_and(|g| g.members.contains(&caller.id))
    };
    let mut zones: Vec<&SimZone> = st
        .zones
        .iter()
        .filter(|z| ignore_access || caller.is_super || mine(z))
        .filter(|z| {
            q.get("nameFilter")
                .is_none_or(|f| z.name.to_lowercase().contains(&f.to_lowercase()))
        })
        .collect();
    zones.sort_by(|a, b| a.name.cmp(&b.name));
    let start = q.get("startFrom");
    let rest: Vec<&SimZone> = zones
        .into_iter()
        .filter(|z| start.is_none_or(|s| z.name.as_str() > s.as_str()))
        .collect();
    let page: Vec<Value> = rest
        .iter()
        .take(max)
        .map(|z| {
            let rules: Vec<Value> = z
                .acl_group_ids
                .iter()
                .map(|g| json!({ "accessLevel": "Read", "groupId": g }))
                .collect();
            json!({
                "id": z.id,
                "name": z.name,
                "email": "dns@example.com",
                "status": "Active",
                "adminGroupId": z.admin_group_id,
                "acl": { "rules": rules },
            })
        })
        .collect();
    let mut body = json!({ "zones": page, "maxItems": max, "ignoreAccess": ignore_access });
    if let Some(o) = body.as_object_mut() {
        if rest.len() > max {
            o.insert("nextId".into(), rest[max - 1].name.clone().into());
        }
        if let Some(s) = start {
            o.insert("startFrom".into(), s.clone().into());
        }
    }
    Ok(ok(body))
}

impl crate::sim::Simulator for VinylDnsSim {
    type Seed = VinylDnsSeed;

    fn from_seed(seed: VinylDnsSeed) -> Self {
        VinylDnsSim::new(seed)
    }

    fn check_seed(seed: &VinylDnsSeed) -> Result<(), Vec<String>> {
        seed.validate()
    }

    fn router(&self) -> axum::Router {
        VinylDnsSim::router(self)
    }

    fn base_path(&self) -> String {
        VinylDnsSim::base_path(self)
    }
}

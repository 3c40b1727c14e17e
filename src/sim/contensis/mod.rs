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
//! * `DELETE /api/security/groups/{group}/groups/{child}` on a group that is not a direct child
//!   answers `404 "Child group not found"`.
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

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, post, put};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::control::{self, ControlPut, SimControl, SimCore, Tokens};
use crate::sim::faults::{FaultHost, FaultInjector};

mod handlers;
mod seed;
mod state;
mod wire;

use self::handlers::*;
pub use self::seed::{
    AddExisting, Behaviour, BulkExisting, BulkUnknown, ContensisSeed, GroupKind, PutMode,
    SeedGroup, SeedLogin,
};
use self::state::*;
pub use self::state::{SimGroup, SimState};
use self::wire::*;

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

/// A running Contensis simulator's state. Cloning gives another handle on the same state: one
/// handle serves requests, another lets a test look inside.
#[derive(Clone, Debug)]
pub struct ContensisSim {
    inner: Arc<SimCore<SimState>>,
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
            indexes: Indexes::default(),
        };
        st.put_user(User {
            id: api_key_user,
            username: seed.client_id,
            email: None,
            api_key: true,
        });
        let mut admins = BTreeSet::new();
        if seed.client_is_admin {
            admins.insert(api_key_user);
        }
        st.put_group(GroupRec {
            id: sys_admins,
            name: SYSTEM_ADMINISTRATORS.into(),
            description: Some("Members administer the whole environment".into()),
            kind: GroupKind::Sys,
            custom: BTreeMap::new(),
            members: admins,
            children: BTreeSet::new(),
            extra: extra_fields(None, &BTreeMap::new()),
        });
        // A large seed names each user many times: every lookup below goes through the state's
        // indexes, so the load is linear in the seed.
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
                    st.put_group(GroupRec {
                        id,
                        name: g.name.clone(),
                        description: g.description.clone(),
                        kind: g.kind,
                        custom: g.custom.clone(),
                        members,
                        children: BTreeSet::new(),
                        extra: extra_fields(g.auto_membership_email_domains.as_ref(), &g.extra),
                    });
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
            st.remove_user(id);
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
mod tests;

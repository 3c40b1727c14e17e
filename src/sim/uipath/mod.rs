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

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::control::{self, Call, ControlPut, SimControl, SimCore, Tokens};
use crate::sim::faults::{self, FaultHost, FaultInjector};

mod http;
mod seed;
mod state;

use self::http::*;
pub use self::seed::{
    AccountKind, Behaviour, DuplicateName, SearchType, SeedGroup, SeedUser, Strictness, UiPathSeed,
    UnknownUser,
};
use self::state::*;
pub use self::state::{SimGroup, SimState};

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

/// A running UiPath Identity simulator. Clones share the state.
#[derive(Clone, Debug)]
pub struct UiPathSim {
    inner: Arc<SimCore<SimState>>,
    /// The first path segment; fixed for the simulator's life.
    organization: Arc<str>,
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
            indexes: Indexes::default(),
        };
        for name in BUILT_IN {
            st.put_group(GroupRec {
                id: Uuid::new_v4().to_string(),
                name: name.to_owned(),
                kind: 0,
                members: BTreeSet::new(),
                modified: FIXED_TIME.to_owned(),
            });
        }
        for u in &seed.users {
            st.ensure_user(u);
        }
        for u in seed.user_details {
            st.put_user(User {
                identifier: u.identifier.unwrap_or_else(|| Uuid::new_v4().to_string()),
                email: Some(u.email.unwrap_or_else(|| format!("{}@example.com", u.name))),
                display_name: u.display_name.unwrap_or_else(|| u.name.clone()),
                source: u.source.unwrap_or_else(|| "local".to_owned()),
                kind: u.kind,
                name: u.name,
            });
        }
        for g in seed.groups {
            let members = g.members.iter().map(|m| st.ensure_user(m)).collect();
            let id = match st.group_by_name(&g.name) {
                Some(id) => id,
                None => g.id.clone().unwrap_or_else(|| Uuid::new_v4().to_string()),
            };
            st.put_group(GroupRec {
                id,
                name: g.name,
                kind: g.kind,
                members,
                modified: FIXED_TIME.to_owned(),
            });
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
        st.put_group(GroupRec {
            id: id.clone(),
            name: name.to_owned(),
            kind: 1,
            members,
            modified: FIXED_TIME.to_owned(),
        });
        id
    }

    /// Deletes the user of this name or e-mail from the directory and from every group, as an
    /// administrator would; returns whether there was one.
    pub fn remove_user(&self, name: &str) -> bool {
        let mut st = self.lock();
        let Some(id) = st.user_by_name(name) else {
            return false;
        };
        st.remove_user(&id);
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
            self.core().calls().push(call);
        }
    }
}

/// The answer to a control `PUT` whose body does not fit: a problem-details 400.
fn bad_control_body(message: String) -> Response {
    ApiError::BadRequest(message).into_response()
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
mod tests;

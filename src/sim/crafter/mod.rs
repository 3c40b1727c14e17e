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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, MutexGuard};

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::sim::control::{self, Call, ControlPut, SimControl, SimCore};
use crate::sim::faults::{self, FaultHost, FaultInjector};

mod api1;
mod api2;
mod seed;
mod state;
mod wire;

use self::api1::*;
use self::api2::*;
use self::seed::*;
pub use self::seed::{Behaviour, CrafterSeed, PatchShape, SeedGroup, SimApi, UnknownFields};
use self::state::*;
pub use self::state::{SimGroup, SimState};
use self::wire::*;

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
            global_names: name_index(),
            site_names: BTreeMap::new(),
            usernames: name_index(),
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
            st.purge_user(id);
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
            st.remove_group(id);
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
mod tests;

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
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::get;
use rustc_hash::FxHashMap;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::control::{self, ControlPut, SimControl, SimCore};
use crate::sim::faults::{FaultHost, FaultInjector};

pub mod auth;
mod http;
mod seed;
mod state;

use self::http::*;
pub use self::seed::{Behaviour, SeedCredentials, SeedGroup, SeedZone, VinylDnsSeed};
use self::state::*;
pub use self::state::{SimGroup, SimState, SimUser, SimZone};

/// A running VinylDNS simulator's state; clones share it.
#[derive(Clone, Debug)]
pub struct VinylDnsSim {
    inner: Arc<SimCore<SimState>>,
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
            indexes: Indexes::default(),
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
        // A large seed names each user many times: its ids by name, as they are made.
        fn id_of<'s>(
            st: &mut SimState,
            ids: &mut FxHashMap<&'s str, String>,
            name: &'s str,
        ) -> String {
            ids.entry(name)
                .or_insert_with(|| st.user_or_new(name, false))
                .clone()
        }
        let mut ids = FxHashMap::default();
        for g in &seed.group {
            let admins: BTreeSet<String> = g
                .admins
                .iter()
                .map(|u| id_of(&mut st, &mut ids, u))
                .collect();
            let mut members: BTreeSet<String> = g
                .members
                .iter()
                .map(|u| id_of(&mut st, &mut ids, u))
                .collect();
            members.extend(admins.iter().cloned());
            st.put_group(SimGroup {
                id: Uuid::new_v4().to_string(),
                name: g.name.clone(),
                email: g.email.clone(),
                description: g.description.clone(),
                members,
                admins,
            });
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
        let mut g: Vec<SimGroup> = self
            .lock()
            .groups
            .values()
            .map(|g| g.group().clone())
            .collect();
        g.sort_by(|a, b| a.name.cmp(&b.name));
        g
    }

    /// A group by exact name.
    pub fn group(&self, name: &str) -> Option<SimGroup> {
        let st = self.lock();
        st.group_named(name)
            .and_then(|id| st.groups.get(&id).map(|g| g.group().clone()))
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
        let Some(g) = st.group_named(group).and_then(|id| st.groups.get(&id)) else {
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
        st.group_named(group)
            .is_some_and(|g| st.add_to_group(&g, &id, false))
    }

    /// Stores an id that names no user among a group's admins (and so its members), as the
    /// server's PUT does with an unknown admin id (no call is logged).
    pub fn add_unknown_admin(&self, group: &str, id: &str) -> bool {
        let mut st = self.lock();
        st.group_named(group)
            .is_some_and(|g| st.add_to_group(&g, id, true))
    }

    /// Sets a group's e-mail directly, as if the server's rules had changed since it was stored
    /// (no call is logged).
    pub fn set_email(&self, group: &str, email: &str) -> bool {
        let mut st = self.lock();
        let found = st.group_named(group);
        match found
            .and_then(|id| st.groups.get_mut(&id))
            .map(Arc::make_mut)
        {
            Some(g) => {
                g.edit(|g| g.email = email.to_owned());
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
        st.put_group(SimGroup {
            id: id.clone(),
            name: name.to_owned(),
            email: email.to_owned(),
            description: None,
            members: BTreeSet::from([admin.clone()]),
            admins: BTreeSet::from([admin]),
        });
        id
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
            "groups": st.groups.values().map(|g| g.group()).collect::<Vec<_>>(),
            "zones": st.zones,
        })
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

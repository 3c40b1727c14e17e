//! The Crafter Studio simulator's state and rules: its users and groups, how they are found
//! and shown, and who may call (the API 2 token or session, the API 1 session).

// The handlers' helpers fail with the answer to send, an axum `Response`: boxing it would only
// be unboxed again one line later.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashSet};

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};

use crate::sim::control;
use crate::sim::name_key;

use super::*;

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
pub(super) struct GroupRec {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) desc: Option<String>,
    pub(super) external: bool,
    pub(super) site: Option<String>,
    pub(super) members: BTreeSet<i64>,
}

/// The simulator's state behind its handles (opaque: only its handles reach inside).
#[derive(Debug)]
pub struct SimState {
    pub(super) api: SimApi,
    pub(super) token: String,
    pub(super) unprivileged_token: String,
    pub(super) username: String,
    pub(super) password: String,
    pub(super) sites: BTreeSet<String>,
    pub(super) behaviour: Behaviour,
    /// Users by id, soft-deleted ones included (Studio keeps their rows).
    pub(super) users: BTreeMap<i64, String>,
    /// Ids of the soft-deleted users: hidden from the lists, still found by the member add and
    /// remove (`POST`/`DELETE /api/2/groups/{id}/members`) and `GET /api/2/users/{id or username}`.
    pub(super) deleted: BTreeSet<i64>,
    pub(super) groups: BTreeMap<i64, GroupRec>,
    pub(super) next_user: i64,
    pub(super) next_group: i64,
    pub(super) sessions: HashSet<String>,
    pub(super) writes: usize,
}

impl SimState {
    pub(super) fn key(&self, name: &str) -> String {
        name_key(name, self.behaviour.case_insensitive_names)
    }

    pub(super) fn find(&self, name: &str, site: Option<&str>) -> Option<i64> {
        let k = self.key(name);
        self.groups
            .values()
            .find(|g| g.site.as_deref() == site && self.key(&g.name) == k)
            .map(|g| g.id)
    }

    pub(super) fn insert(
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

    pub(super) fn user_id(&self, username: &str) -> Option<i64> {
        let k = self.key(username);
        self.users
            .iter()
            .find(|(_, u)| self.key(u) == k)
            .map(|(id, _)| *id)
    }

    pub(super) fn ensure_user(&mut self, username: &str) -> i64 {
        if let Some(id) = self.user_id(username) {
            return id;
        }
        let id = self.next_user;
        self.next_user += 1;
        self.users.insert(id, username.to_owned());
        id
    }

    pub(super) fn sim_group(&self, id: i64) -> Option<SimGroup> {
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

    pub(super) fn group_json(&self, g: &GroupRec) -> Value {
        let mut v = json!({ "id": g.id, "name": g.name, "desc": g.desc });
        if self.api != SimApi::V31 {
            v["externallyManaged"] = Value::Bool(g.external);
        }
        v
    }

    pub(super) fn user_json(&self, id: i64) -> Value {
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
    pub(super) fn api2(&self, headers: &HeaderMap) -> Result<(), Response> {
        if self.api == SimApi::V1 {
            return Err(not_found_body());
        }
        self.auth2(headers)
    }

    pub(super) fn global_group(&self, id: i64) -> Result<&GroupRec, Response> {
        self.groups
            .get(&id)
            .filter(|g| g.site.is_none())
            .ok_or_else(group_not_found)
    }
}

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
use crate::sim::index::{Fold, NameIndex, Tie};
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
    /// The names of global (API 2) groups → ids, by lower-case name, in the list's order
    /// (lower-case name, then id). Kept by [`SimState::insert`], [`SimState::rename_group`] and
    /// [`SimState::remove_group`], the only ways groups come, go or change names: a request
    /// then finds a group without a pass over every group (issue 14: 20,000 of them).
    pub(super) global_names: NameIndex<i64>,
    /// The same for each site's (API 1) groups.
    pub(super) site_names: BTreeMap<String, NameIndex<i64>>,
    /// Usernames → ids (soft-deleted users included), by lower-case name; kept by
    /// [`SimState::ensure_user`] and [`SimState::purge_user`].
    pub(super) usernames: NameIndex<i64>,
}

/// An empty index of names, ordered as Studio sorts groups: by lower-case name, then id.
pub(super) fn name_index() -> NameIndex<i64> {
    NameIndex::new(Fold::Unicode, Tie::Id)
}

impl SimState {
    pub(super) fn key(&self, name: &str) -> String {
        name_key(name, self.behaviour.case_insensitive_names)
    }

    /// The index of the names of `site`'s groups (global groups without a site).
    pub(super) fn names(&self, site: Option<&str>) -> Option<&NameIndex<i64>> {
        match site {
            None => Some(&self.global_names),
            Some(s) => self.site_names.get(s),
        }
    }

    fn names_mut(&mut self, site: Option<&str>) -> &mut NameIndex<i64> {
        match site {
            None => &mut self.global_names,
            Some(s) => self
                .site_names
                .entry(s.to_owned())
                .or_insert_with(name_index),
        }
    }

    /// The group of that name in `site` (global without), by the name rules in force; the
    /// first in id order when several match.
    pub(super) fn find(&self, name: &str, site: Option<&str>) -> Option<i64> {
        let ci = self.behaviour.case_insensitive_names;
        self.names(site)?.first(name, ci).copied()
    }

    /// Renames a group, keeping the index of names true.
    pub(super) fn rename_group(&mut self, id: i64, name: String) {
        let Some(g) = self.groups.get(&id) else {
            return;
        };
        let (old, site) = (g.name.clone(), g.site.clone());
        let names = self.names_mut(site.as_deref());
        names.remove(&old, &id);
        names.insert(&name, id);
        if let Some(g) = self.groups.get_mut(&id) {
            g.name = name;
        }
    }

    /// Removes a group and its index entry.
    pub(super) fn remove_group(&mut self, id: i64) -> Option<GroupRec> {
        let g = self.groups.remove(&id)?;
        self.names_mut(g.site.as_deref()).remove(&g.name, &id);
        Some(g)
    }

    /// Panics unless the indexes say what indexes built afresh from the records would.
    #[cfg(test)]
    pub(super) fn assert_indexes(&self) {
        let mut global = name_index();
        let mut sites: BTreeMap<String, NameIndex<i64>> = BTreeMap::new();
        for g in self.groups.values() {
            match &g.site {
                None => global.insert(&g.name, g.id),
                Some(s) => sites
                    .entry(s.clone())
                    .or_insert_with(name_index)
                    .insert(&g.name, g.id),
            }
        }
        let mut usernames = name_index();
        for (id, name) in &self.users {
            usernames.insert(name, *id);
        }
        // A site whose groups are all gone keeps an empty index.
        let site_names: BTreeMap<String, NameIndex<i64>> = self
            .site_names
            .iter()
            .filter(|(_, n)| !n.is_empty())
            .map(|(s, n)| (s.clone(), n.clone()))
            .collect();
        assert_eq!(
            (&self.global_names, &site_names, &self.usernames),
            (&global, &sites, &usernames)
        );
    }

    /// Removes a user's row (not its memberships) and its index entry.
    pub(super) fn purge_user(&mut self, id: i64) {
        if let Some(name) = self.users.remove(&id) {
            self.usernames.remove(&name, &id);
        }
        self.deleted.remove(&id);
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
        self.names_mut(site.as_deref()).insert(name, id);
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

    /// The user of that username by the name rules in force (soft-deleted or not); the first
    /// in id order when several match.
    pub(super) fn user_id(&self, username: &str) -> Option<i64> {
        let ci = self.behaviour.case_insensitive_names;
        self.usernames.first(username, ci).copied()
    }

    pub(super) fn ensure_user(&mut self, username: &str) -> i64 {
        if let Some(id) = self.user_id(username) {
            return id;
        }
        let id = self.next_user;
        self.next_user += 1;
        self.users.insert(id, username.to_owned());
        self.usernames.insert(username, id);
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

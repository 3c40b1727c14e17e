//! The VinylDNS simulator's state and rules: its users, zones and groups, how they are shown,
//! and the server's checks on a group (e-mail, description, members and admins, who may write).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::index::{Fold, NameIndex, Tie};

use super::*;

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

/// A group as the state keeps it: the group, and its entry in a full page of the group list,
/// written whenever the group is stored or changed rather than for every page that lists it (a
/// page of 3,000 groups of 50 members is 7.5 MB of JSON: 18 ms to write afresh, a copy this way).
#[derive(Clone, Debug)]
pub(super) struct Stored {
    group: SimGroup,
    listed: Box<RawValue>,
}

impl Stored {
    pub(super) fn new(group: SimGroup) -> Self {
        let listed = Self::list_entry(&group);
        Self { group, listed }
    }

    /// The group.
    pub(super) fn group(&self) -> &SimGroup {
        &self.group
    }

    /// The group's entry in a full page of the list.
    pub(super) fn listed(&self) -> &RawValue {
        &self.listed
    }

    /// Changes the group, and its entry with it.
    pub(super) fn edit(&mut self, change: impl FnOnce(&mut SimGroup)) {
        change(&mut self.group);
        self.listed = Self::list_entry(&self.group);
    }

    fn list_entry(g: &SimGroup) -> Box<RawValue> {
        // A group of strings and sets of strings always serializes.
        serde_json::value::to_raw_value(&GroupInfo::full(g)).unwrap_or_default()
    }
}

impl Deref for Stored {
    type Target = SimGroup;

    fn deref(&self) -> &SimGroup {
        &self.group
    }
}

/// A group as the server shows it: whole, or abridged (`GET /groups?abridged=true`: no dates or
/// status, and of its member and admin ids only the caller's own). Serialized without building
/// JSON values first, for the pages of the group list; the fields are in the order a JSON
/// value's map writes them, so the text is the same either way.
#[derive(Debug, Serialize)]
pub(super) struct GroupInfo<'a> {
    admins: Ids<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    email: &'a str,
    id: &'a str,
    members: Ids<'a>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
}

impl<'a> GroupInfo<'a> {
    /// The whole group.
    pub(super) fn full(g: &'a SimGroup) -> Self {
        Self {
            admins: Ids {
                ids: &g.admins,
                only: None,
            },
            created: Some("2025-01-01T00:00:00Z"),
            description: g.description.as_deref(),
            email: &g.email,
            id: &g.id,
            members: Ids {
                ids: &g.members,
                only: None,
            },
            name: &g.name,
            status: Some("Active"),
        }
    }

    /// The group abridged for `caller`.
    pub(super) fn abridged(g: &'a SimGroup, caller: &'a str) -> Self {
        Self {
            admins: Ids {
                ids: &g.admins,
                only: Some(caller),
            },
            created: None,
            description: g.description.as_deref(),
            email: &g.email,
            id: &g.id,
            members: Ids {
                ids: &g.members,
                only: Some(caller),
            },
            name: &g.name,
            status: None,
        }
    }
}

/// A group's member or admin ids, written as `[{"id": …}]`; only `only` when set.
#[derive(Debug)]
pub(super) struct Ids<'a> {
    ids: &'a BTreeSet<String>,
    only: Option<&'a str>,
}

impl Serialize for Ids<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        #[derive(Serialize)]
        struct Id<'a> {
            id: &'a str,
        }
        let mut seq = s.serialize_seq(None)?;
        match self.only {
            // An abridged page asks this of each of 3,000 groups: a search, not a walk of the
            // group's members.
            Some(only) => {
                if let Some(id) = self.ids.get(only) {
                    seq.serialize_element(&Id { id })?;
                }
            }
            None => {
                for id in self.ids {
                    seq.serialize_element(&Id { id })?;
                }
            }
        }
        seq.end()
    }
}

/// The simulator's state behind its handles (opaque: only its handles reach inside).
#[derive(Debug)]
pub struct SimState {
    pub(super) keys: BTreeMap<String, (String, String)>,
    pub(super) users: BTreeMap<String, SimUser>,
    /// Shared, so that a page of them is held for its answer without copying their members; a
    /// change copies the group it changes if an answer still holds it.
    pub(super) groups: BTreeMap<String, Arc<Stored>>,
    pub(super) zones: Vec<SimZone>,
    pub(super) behaviour: Behaviour,
    /// The indexes below answer lookups without a pass over every group or user (issue 14:
    /// 20,000 groups, answers within 1 ms). They are kept by [`SimState::put_group`],
    /// [`SimState::remove_group`], [`SimState::add_to_group`] and [`SimState::user_or_new`],
    /// the only ways groups and users come and go, change names or gain members.
    pub(super) indexes: Indexes,
}

/// The lookups of [`SimState`], each kept by the same rules as a scan of the records in id order
/// would apply.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Indexes {
    /// Group names → ids, by lower-case name (whether names ignore case is applied at lookup
    /// time, so a flipped [`Behaviour::case_insensitive_names`] needs no rebuild); in the order
    /// the group list is sorted in (lower-case name, then id).
    pub(super) names: NameIndex<String>,
    /// Users' ids and names → ids, by lower-case form (`GET /users/{id or name}`).
    user_keys: NameIndex<String>,
    /// Member id → the ids of the groups holding it (admins included, as `members` holds
    /// them), whether or not a user stands behind the id: a user's groups, and the groups a
    /// caller may list.
    pub(super) member_of: FxHashMap<String, BTreeSet<String>>,
}

impl Default for Indexes {
    fn default() -> Self {
        Self {
            names: NameIndex::new(Fold::Unicode, Tie::Id),
            user_keys: NameIndex::new(Fold::Unicode, Tie::Id),
            member_of: FxHashMap::default(),
        }
    }
}

impl SimState {
    pub(super) fn user_by_name(&self, name: &str) -> Option<&SimUser> {
        self.indexes
            .user_keys
            .matching(name, false)
            .filter_map(|id| self.users.get(id))
            .filter(|u| u.user_name == name)
            .min_by(|a, b| a.id.cmp(&b.id))
    }

    /// A user by id or name, without regard to case (the server's lookup); the first in id
    /// order when several match.
    pub(super) fn user_by_key(&self, key: &str) -> Option<&SimUser> {
        self.indexes
            .user_keys
            .first(key, true)
            .and_then(|id| self.users.get(id))
    }

    pub(super) fn user_or_new(&mut self, name: &str, is_super: bool) -> String {
        if let Some(id) = self.user_by_name(name).map(|u| u.id.clone()) {
            if let Some(u) = self.users.get_mut(&id) {
                u.is_super |= is_super;
            }
            return id;
        }
        let id = Uuid::new_v4().to_string();
        self.indexes.user_keys.insert(&id, id.clone());
        self.indexes.user_keys.insert(name, id.clone());
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

    /// A group of that name other than `except`, by the name rules in force; the first in id
    /// order when several match.
    pub(super) fn same_name(&self, name: &str, except: Option<&str>) -> Option<&SimGroup> {
        let ci = self.behaviour.case_insensitive_names;
        self.indexes
            .names
            .matching(name, ci)
            .filter(|id| Some(id.as_str()) != except)
            .min()
            .and_then(|id| self.groups.get(id))
            .map(|g| g.group())
    }

    /// The id of the group of exactly that name; the first in id order when several have it.
    pub(super) fn group_named(&self, name: &str) -> Option<String> {
        self.indexes.names.first(name, false).cloned()
    }

    /// Stores a group, replacing the one of the same id, and indexes it.
    pub(super) fn put_group(&mut self, g: SimGroup) {
        self.remove_group(&g.id);
        let ix = &mut self.indexes;
        ix.names.insert(&g.name, g.id.clone());
        for m in &g.members {
            // A user holds many groups: its entry is there after its first, and its id is
            // copied for the key once, not once a group.
            if let Some(groups) = ix.member_of.get_mut(m) {
                groups.insert(g.id.clone());
            } else {
                ix.member_of
                    .insert(m.clone(), BTreeSet::from([g.id.clone()]));
            }
        }
        self.groups.insert(g.id.clone(), Arc::new(Stored::new(g)));
    }

    /// Removes a group and its index entries.
    pub(super) fn remove_group(&mut self, id: &str) -> Option<Arc<Stored>> {
        let g = self.groups.remove(id)?;
        let ix = &mut self.indexes;
        ix.names.remove(&g.name, &g.id);
        for m in &g.members {
            if let Some(groups) = ix.member_of.get_mut(m) {
                groups.remove(&g.id);
                if groups.is_empty() {
                    ix.member_of.remove(m);
                }
            }
        }
        Some(g)
    }

    /// Panics unless the indexes say what indexes built afresh from the records would.
    #[cfg(test)]
    pub(super) fn assert_indexes(&self) {
        let mut fresh = Indexes::default();
        for g in self.groups.values() {
            fresh.names.insert(&g.name, g.id.clone());
            for m in &g.members {
                fresh
                    .member_of
                    .entry(m.clone())
                    .or_default()
                    .insert(g.id.clone());
            }
        }
        for u in self.users.values() {
            fresh.user_keys.insert(&u.id, u.id.clone());
            fresh.user_keys.insert(&u.user_name, u.id.clone());
        }
        assert_eq!(self.indexes, fresh);
    }

    /// Adds `member` to a group's members (and to its admins when `admin`); says whether there
    /// was such a group.
    pub(super) fn add_to_group(&mut self, group: &str, member: &str, admin: bool) -> bool {
        let Some(g) = self.groups.get_mut(group).map(Arc::make_mut) else {
            return false;
        };
        g.edit(|g| {
            if admin {
                g.admins.insert(member.to_owned());
            }
            g.members.insert(member.to_owned());
        });
        self.indexes
            .member_of
            .entry(member.to_owned())
            .or_default()
            .insert(group.to_owned());
        true
    }

    pub(super) fn info(&self, g: &SimGroup) -> Value {
        serde_json::to_value(GroupInfo::full(g)).unwrap_or(Value::Null)
    }

    pub(super) fn user_info(&self, u: &SimUser) -> Value {
        json!({
            "id": u.id,
            "userName": u.user_name,
            "created": "2025-01-01T00:00:00Z",
            "isSuper": u.is_super,
            "isSupport": false,
            "lockStatus": if u.locked { "Locked" } else { "Unlocked" },
        })
    }

    pub(super) fn member_info(&self, u: &SimUser, g: &SimGroup) -> Value {
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

/// The checks the server makes of every group it is about to store, before any other: name and
/// e-mail not blank, a one-word name, the e-mail rule.
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn check_fields(st: &SimState, name: &str, email: &str) -> Result<(), Response> {
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
pub(super) fn email_rule(email: &str, b: &Behaviour) -> Result<(), String> {
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
pub(super) fn check_description(d: Option<&str>) -> Result<(), Response> {
    if d.is_some_and(|d| d.chars().count() > 256) {
        return Err(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "There was an internal server error.",
        ));
    }
    Ok(())
}

pub(super) fn conflict(name: &str, email: &str) -> Response {
    text(
        StatusCode::CONFLICT,
        format!(
            "Group with name {name} already exists. Please try a different name or contact {email} to be added to the group."
        ),
    )
}

// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn has_members_and_admins(
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
pub(super) fn users_exist<'a>(
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

pub(super) fn not_authorized() -> Response {
    text(StatusCode::FORBIDDEN, "Not authorized")
}

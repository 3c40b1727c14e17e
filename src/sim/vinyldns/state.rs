//! The VinylDNS simulator's state and rules: its users, zones and groups, how they are shown,
//! and the server's checks on a group (e-mail, description, members and admins, who may write).

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::name_key;

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

/// The simulator's state behind its handles (opaque: only its handles reach inside).
#[derive(Debug)]
pub struct SimState {
    pub(super) keys: BTreeMap<String, (String, String)>,
    pub(super) users: BTreeMap<String, SimUser>,
    pub(super) groups: BTreeMap<String, SimGroup>,
    pub(super) zones: Vec<SimZone>,
    pub(super) behaviour: Behaviour,
}

impl SimState {
    pub(super) fn user_by_name(&self, name: &str) -> Option<&SimUser> {
        self.users.values().find(|u| u.user_name == name)
    }

    /// A user by id or name, without regard to case (the server's lookup).
    pub(super) fn user_by_key(&self, key: &str) -> Option<&SimUser> {
        let key = key.to_lowercase();
        self.users
            .values()
            .find(|u| u.id.to_lowercase() == key || u.user_name.to_lowercase() == key)
    }

    pub(super) fn user_or_new(&mut self, name: &str, is_super: bool) -> String {
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
    pub(super) fn same_name(&self, name: &str, except: Option<&str>) -> Option<&SimGroup> {
        let key = self.name_key(name);
        self.groups
            .values()
            .find(|g| Some(g.id.as_str()) != except && self.name_key(&g.name) == key)
    }

    pub(super) fn info(&self, g: &SimGroup) -> Value {
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

//! The UiPath Identity simulator's state and rules: its users and groups, the caller's scopes,
//! the partition, name uniqueness, protected groups, and how groups and users are shown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::control::{self, Tokens};
use crate::sim::name_key;

use super::*;

/// A group as the simulator holds it, members by user name, for inspection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimGroup {
    /// The id.
    pub id: String,
    /// The name, as stored.
    pub name: String,
    /// 0 built-in, 1 local.
    pub kind: u8,
    /// User names of the members.
    pub members: BTreeSet<String>,
    /// Directory identifiers of the members.
    pub member_ids: BTreeSet<String>,
}

#[derive(Debug)]
pub(super) struct User {
    pub(super) identifier: String,
    pub(super) name: String,
    pub(super) email: Option<String>,
    pub(super) display_name: String,
    pub(super) source: String,
    pub(super) kind: AccountKind,
}

#[derive(Debug)]
pub(super) struct GroupRec {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) kind: u8,
    pub(super) members: BTreeSet<String>,
    pub(super) modified: String,
}

/// The simulator's state behind its handles (opaque: only its handles reach inside).
#[derive(Debug)]
pub struct SimState {
    pub(super) partition: String,
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) granted: BTreeSet<String>,
    pub(super) token_ttl: Duration,
    pub(super) behaviour: Behaviour,
    pub(super) users: BTreeMap<String, User>,
    pub(super) groups: BTreeMap<String, GroupRec>,
    pub(super) tokens: Tokens<BTreeSet<String>>,
    pub(super) token_calls: usize,
    pub(super) writes: usize,
    pub(super) clock: u64,
}

impl SimState {
    fn key(&self, name: &str) -> String {
        name_key(name, self.behaviour.case_insensitive_names)
    }

    pub(super) fn group_by_name(&self, name: &str) -> Option<String> {
        let key = self.key(name);
        self.groups
            .values()
            .find(|g| g.name == name)
            .or_else(|| self.groups.values().find(|g| self.key(&g.name) == key))
            .map(|g| g.id.clone())
    }

    pub(super) fn user_by_name(&self, name: &str) -> Option<String> {
        let lower = name.to_lowercase();
        self.users
            .values()
            .find(|u| {
                u.name.to_lowercase() == lower
                    || u.email
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase() == lower)
            })
            .map(|u| u.identifier.clone())
    }

    pub(super) fn ensure_user(&mut self, name: &str) -> String {
        if let Some(id) = self.user_by_name(name) {
            return id;
        }
        let identifier = Uuid::new_v4().to_string();
        self.users.insert(
            identifier.clone(),
            User {
                identifier: identifier.clone(),
                name: name.to_owned(),
                email: Some(format!("{name}@example.com")),
                display_name: name.to_owned(),
                source: "local".to_owned(),
                kind: AccountKind::User,
            },
        );
        identifier
    }

    pub(super) fn sim_group(&self, id: &str) -> Option<SimGroup> {
        let g = self.groups.get(id)?;
        Some(SimGroup {
            id: g.id.clone(),
            name: g.name.clone(),
            kind: g.kind,
            members: g
                .members
                .iter()
                .filter_map(|m| self.users.get(m).map(|u| u.name.clone()))
                .collect(),
            member_ids: g.members.clone(),
        })
    }

    pub(super) fn touch(&mut self) -> String {
        self.clock += 1;
        format!(
            "2024-01-01T00:00:{:02}.{:06}Z",
            self.clock / 1_000_000 % 60,
            self.clock % 1_000_000
        )
    }

    // --- auth ---

    /// The scopes of the bearer token, or 401.
    fn caller(&mut self, headers: &HeaderMap) -> Result<BTreeSet<String>, ApiError> {
        control::bearer(headers)
            .and_then(|token| self.tokens.get(token))
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }

    /// The caller, whose token must carry one of `any_of`.
    pub(super) fn require(&mut self, headers: &HeaderMap, any_of: &[&str]) -> Result<(), ApiError> {
        let scopes = self.caller(headers)?;
        if any_of.iter().any(|s| scopes.contains(*s)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "The access token lacks the scope this call needs: one of {}",
                any_of.join(", ")
            )))
        }
    }

    pub(super) fn check_partition(&self, partition: &str) -> Result<(), ApiError> {
        if partition.eq_ignore_ascii_case(&self.partition) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "Partition {partition} was not found"
            )))
        }
    }

    pub(super) fn group_id(&self, id: &str) -> Result<String, ApiError> {
        let lower = id.to_lowercase();
        self.groups
            .keys()
            .find(|k| k.to_lowercase() == lower)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("Group {id} was not found")))
    }

    pub(super) fn check_name(&self, name: &str, except: Option<&str>) -> Result<(), ApiError> {
        match self.group_by_name(name) {
            Some(other) if Some(other.as_str()) != except => {
                Err(self.taken(format!("A group named '{name}' already exists")))
            }
            _ => Ok(()),
        }
    }

    /// The answer to a name or id that is taken, as [`Behaviour::duplicate_name`] says.
    pub(super) fn taken(&self, message: String) -> ApiError {
        match self.behaviour.duplicate_name {
            DuplicateName::Conflict => ApiError::Conflict(message),
            DuplicateName::BadRequest => ApiError::BadRequest(message),
        }
    }

    /// A directory entity's `type`, as [`Behaviour::search_type`] says it is written.
    pub(super) fn entity_type(&self, number: u8, name: &str) -> Value {
        match self.behaviour.search_type {
            SearchType::Number => Value::from(number),
            SearchType::String => Value::from(name),
        }
    }

    pub(super) fn protect(&self, id: &str) -> Result<(), ApiError> {
        if self.behaviour.protect_built_in && self.groups.get(id).is_some_and(|g| g.kind == 0) {
            Err(ApiError::Forbidden(
                "Built-in groups cannot be changed".into(),
            ))
        } else {
            Ok(())
        }
    }

    // --- JSON ---

    pub(super) fn user_json(&self, id: &str) -> Value {
        let Some(u) = self.users.get(id) else {
            return Value::Null;
        };
        json!({
            "objectType": match u.kind {
                AccountKind::User => "DirectoryUser",
                AccountKind::Robot => "DirectoryRobotUser",
                AccountKind::Application => "DirectoryApplication",
            },
            "source": u.source,
            "identifier": u.identifier,
            "name": u.name,
            "displayName": u.display_name,
            "email": u.email,
            "firstName": u.display_name,
            "lastName": null,
            "isActive": true,
        })
    }

    pub(super) fn group_json(&self, id: &str, members: bool) -> Value {
        let Some(g) = self.groups.get(id) else {
            return Value::Null;
        };
        let mut v = json!({
            "id": g.id,
            "name": g.name,
            "displayName": g.name,
            "type": g.kind,
            "creationTime": FIXED_TIME,
            "lastModificationTime": g.modified,
        });
        if members {
            v["members"] = if self.behaviour.members_inline {
                g.members.iter().map(|m| self.user_json(m)).collect()
            } else {
                Value::Array(Vec::new())
            };
        }
        v
    }
}

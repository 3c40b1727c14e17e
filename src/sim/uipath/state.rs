//! The UiPath Identity simulator's state and rules: its users and groups, the caller's scopes,
//! the partition, name uniqueness, protected groups, and how groups and users are shown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::control::{self, Tokens};
use crate::sim::index::{Fold, NameIndex, Tie};

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

/// A group as the group list shows it, written straight to the answer: the list carries every
/// group (20,000 at scale), which is too many to build as JSON values first. The fields are in
/// the order a JSON value's map writes them, so the text is the same either way.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GroupSummary<'a> {
    creation_time: &'static str,
    display_name: &'a str,
    id: &'a str,
    last_modification_time: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: u8,
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
    /// The indexes below answer lookups without a pass over every record (a seed of 20,000
    /// groups names each user many times; each request looks a group up). They are kept by
    /// [`SimState::put_group`], [`SimState::rename_group`], [`SimState::remove_group`],
    /// [`SimState::put_user`] and [`SimState::remove_user`], the only ways records change
    /// names or come and go.
    pub(super) indexes: Indexes,
}

/// The lookups of [`SimState`], each kept by the same rules as a scan of the records in id order
/// would apply.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Indexes {
    /// Group names → ids, by lower-case name (the name rules are applied at lookup time, so a
    /// flipped [`Behaviour::case_insensitive_names`] needs no rebuild); in the order the group
    /// list is sorted in (lower-case name, then name, then id).
    pub(super) group_names: NameIndex<String>,
    /// Group ids by their lower-case form: a path's id matches regardless of case.
    group_ids: NameIndex<String>,
    /// Users' names and e-mails → identifiers, by lower-case form.
    user_names: NameIndex<String>,
    /// User identifiers by their ASCII lower-case form, as member ids are matched.
    user_ids: NameIndex<String>,
}

impl Default for Indexes {
    fn default() -> Self {
        Self {
            group_names: NameIndex::new(Fold::Unicode, Tie::Name),
            group_ids: NameIndex::new(Fold::Unicode, Tie::Id),
            user_names: NameIndex::new(Fold::Unicode, Tie::Id),
            user_ids: NameIndex::new(Fold::Ascii, Tie::Id),
        }
    }
}

impl SimState {
    /// The group of that name: an exact match first, then one by the name rules in force.
    pub(super) fn group_by_name(&self, name: &str) -> Option<String> {
        self.indexes
            .group_names
            .find(name, self.behaviour.case_insensitive_names)
            .cloned()
    }

    /// The groups named `name`, exactly or when `ignore_case` regardless of case.
    pub(super) fn groups_named<'a>(
        &'a self,
        name: &str,
        ignore_case: bool,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.indexes.group_names.matching(name, ignore_case)
    }

    /// The user whose name or e-mail is `name`, regardless of case.
    pub(super) fn user_by_name(&self, name: &str) -> Option<String> {
        self.indexes.user_names.first(name, true).cloned()
    }

    /// The users whose name or e-mail is `name`, exactly or when `ignore_case` regardless of
    /// case (a user may come twice).
    pub(super) fn users_named<'a>(
        &'a self,
        name: &str,
        ignore_case: bool,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.indexes.user_names.matching(name, ignore_case)
    }

    /// The identifier of the user whose identifier is `id` regardless of ASCII case.
    pub(super) fn user_key(&self, id: &str) -> Option<String> {
        self.indexes.user_ids.first(id, true).cloned()
    }

    /// Stores a group, replacing the one of the same id, and indexes it.
    pub(super) fn put_group(&mut self, rec: GroupRec) {
        let ix = &mut self.indexes;
        if let Some(old) = self.groups.get(&rec.id) {
            ix.group_names.remove(&old.name, &old.id);
        } else {
            ix.group_ids.insert(&rec.id, rec.id.clone());
        }
        ix.group_names.insert(&rec.name, rec.id.clone());
        self.groups.insert(rec.id.clone(), rec);
    }

    /// Renames a group, keeping the index of names true.
    pub(super) fn rename_group(&mut self, id: &str, name: String) {
        if let Some(g) = self.groups.get_mut(id) {
            self.indexes.group_names.remove(&g.name, &g.id);
            self.indexes.group_names.insert(&name, g.id.clone());
            g.name = name;
        }
    }

    /// Removes a group and its index entries.
    pub(super) fn remove_group(&mut self, id: &str) -> Option<GroupRec> {
        let g = self.groups.remove(id)?;
        self.indexes.group_names.remove(&g.name, &g.id);
        self.indexes.group_ids.remove(&g.id, &g.id);
        Some(g)
    }

    fn user_entries(ix: &mut Indexes, u: &User, add: bool) {
        for name in std::iter::once(&u.name).chain(&u.email) {
            if add {
                ix.user_names.insert(name, u.identifier.clone());
            } else {
                ix.user_names.remove(name, &u.identifier);
            }
        }
    }

    /// Stores a user, replacing the one of the same identifier, and indexes it.
    pub(super) fn put_user(&mut self, u: User) {
        if let Some(old) = self.users.get(&u.identifier) {
            Self::user_entries(&mut self.indexes, old, false);
        } else {
            self.indexes
                .user_ids
                .insert(&u.identifier, u.identifier.clone());
        }
        Self::user_entries(&mut self.indexes, &u, true);
        self.users.insert(u.identifier.clone(), u);
    }

    /// Removes a user (not its memberships) and its index entries.
    pub(super) fn remove_user(&mut self, id: &str) -> Option<User> {
        let u = self.users.remove(id)?;
        Self::user_entries(&mut self.indexes, &u, false);
        self.indexes.user_ids.remove(&u.identifier, &u.identifier);
        Some(u)
    }

    /// Panics unless the indexes say what indexes built afresh from the records would.
    #[cfg(test)]
    pub(super) fn assert_indexes(&self) {
        let mut fresh = Indexes::default();
        for g in self.groups.values() {
            fresh.group_names.insert(&g.name, g.id.clone());
            fresh.group_ids.insert(&g.id, g.id.clone());
        }
        for u in self.users.values() {
            Self::user_entries(&mut fresh, u, true);
            fresh.user_ids.insert(&u.identifier, u.identifier.clone());
        }
        assert_eq!(self.indexes, fresh);
    }

    pub(super) fn ensure_user(&mut self, name: &str) -> String {
        if let Some(id) = self.user_by_name(name) {
            return id;
        }
        let identifier = Uuid::new_v4().to_string();
        self.put_user(User {
            identifier: identifier.clone(),
            name: name.to_owned(),
            email: Some(format!("{name}@example.com")),
            display_name: name.to_owned(),
            source: "local".to_owned(),
            kind: AccountKind::User,
        });
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

    /// The group of a path's id, which matches regardless of case.
    pub(super) fn group_id(&self, id: &str) -> Result<String, ApiError> {
        self.indexes
            .group_ids
            .first(id, true)
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

    /// A group as the list shows it (and a single group, before its members).
    pub(super) fn summary<'a>(&self, g: &'a GroupRec) -> GroupSummary<'a> {
        GroupSummary {
            creation_time: FIXED_TIME,
            display_name: &g.name,
            id: &g.id,
            last_modification_time: &g.modified,
            name: &g.name,
            kind: g.kind,
        }
    }

    pub(super) fn group_json(&self, id: &str, members: bool) -> Value {
        let Some(g) = self.groups.get(id) else {
            return Value::Null;
        };
        let mut v = serde_json::to_value(self.summary(g)).unwrap_or(Value::Null);
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

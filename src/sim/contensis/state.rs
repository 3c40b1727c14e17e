//! The Contensis simulator's state and rules: its users and groups, who the caller is, what a
//! request may change (names, nesting, protected groups) and how groups and users are shown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::control::{self, Tokens};
use crate::sim::name_key;

use super::*;

/// A group as the simulator stores it, with members and children by name, for inspection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimGroup {
    /// The GUID.
    pub id: String,
    /// The name, as stored.
    pub name: String,
    /// The description.
    pub description: Option<String>,
    /// `contensis`, `sys` or `external`.
    pub kind: String,
    /// Custom fields.
    pub custom: BTreeMap<String, String>,
    /// Usernames of the direct members.
    pub members: BTreeSet<String>,
    /// Names of the direct child groups.
    pub children: BTreeSet<String>,
    /// The other fields the group carries (`autoMembershipEmailDomains` and any seeded extra).
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug)]
pub(super) struct User {
    pub(super) id: Uuid,
    pub(super) username: String,
    pub(super) email: Option<String>,
    pub(super) api_key: bool,
}

#[derive(Debug)]
pub(super) struct GroupRec {
    pub(super) id: Uuid,
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) kind: GroupKind,
    pub(super) custom: BTreeMap<String, String>,
    pub(super) members: BTreeSet<Uuid>,
    pub(super) children: BTreeSet<Uuid>,
    /// Fields beyond those above, by wire name; always holds `autoMembershipEmailDomains`.
    pub(super) extra: BTreeMap<String, Value>,
}

/// The field a group's auto-membership domains are sent in.
pub(super) const AUTO_DOMAINS: &str = "autoMembershipEmailDomains";

/// The extra fields of a new group: `autoMembershipEmailDomains` null, plus `more`.
pub(super) fn extra_fields(
    domains: Option<&Vec<String>>,
    more: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    let mut extra = BTreeMap::from([(AUTO_DOMAINS.to_owned(), json!(domains))]);
    extra.extend(more.iter().map(|(k, v)| (k.clone(), v.clone())));
    extra
}

/// The simulator's state behind its handles (opaque: only its handles reach inside).
#[derive(Debug)]
pub struct SimState {
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) api_key_user: Uuid,
    pub(super) logins: Vec<SeedLogin>,
    pub(super) token_ttl: Duration,
    pub(super) behaviour: Behaviour,
    pub(super) users: BTreeMap<Uuid, User>,
    pub(super) groups: BTreeMap<Uuid, GroupRec>,
    pub(super) sys_admins: Uuid,
    pub(super) tokens: Tokens<Uuid>,
    pub(super) refresh_tokens: HashMap<String, Uuid>,
    pub(super) writes: usize,
}

impl SimState {
    pub(super) fn key(&self, name: &str) -> String {
        name_key(name, self.behaviour.case_insensitive_names)
    }

    /// The group of that name: an exact match first, then one by the name rules in force.
    pub(super) fn group_by_name(&self, name: &str) -> Option<Uuid> {
        let key = self.key(name);
        self.groups
            .values()
            .find(|g| g.name == name)
            .or_else(|| self.groups.values().find(|g| self.key(&g.name) == key))
            .map(|g| g.id)
    }

    /// A group by path identifier: a GUID-shaped string is an id, anything else a name.
    pub(super) fn find_group(&self, ident: &str) -> Option<Uuid> {
        match Uuid::parse_str(ident) {
            Ok(id) => self.groups.contains_key(&id).then_some(id),
            Err(_) => self.group_by_name(ident),
        }
    }

    pub(super) fn group_id(&self, ident: &str) -> Result<Uuid, ApiError> {
        self.find_group(ident)
            .ok_or(ApiError::NotFound(GROUP_NOT_FOUND))
    }

    pub(super) fn user_by_name(&self, name: &str) -> Option<Uuid> {
        let lower = name.to_lowercase();
        self.users
            .values()
            .find(|u| {
                u.username.to_lowercase() == lower
                    || u.email
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase() == lower)
            })
            .map(|u| u.id)
    }

    /// A user by path identifier: `@current`, a GUID, a username or an email.
    fn find_user(&self, ident: &str, caller: Uuid) -> Option<Uuid> {
        if ident.eq_ignore_ascii_case("@current") {
            return Some(caller);
        }
        match Uuid::parse_str(ident) {
            Ok(id) => self.users.contains_key(&id).then_some(id),
            Err(_) => self.user_by_name(ident),
        }
    }

    pub(super) fn user_id(&self, ident: &str, caller: Uuid) -> Result<Uuid, ApiError> {
        self.find_user(ident, caller)
            .ok_or(ApiError::NotFound(USER_NOT_FOUND))
    }

    pub(super) fn ensure_user(&mut self, username: &str) -> Uuid {
        if let Some(id) = self.user_by_name(username) {
            return id;
        }
        let id = Uuid::new_v4();
        self.users.insert(
            id,
            User {
                id,
                username: username.to_owned(),
                email: Some(format!("{username}@example.com")),
                api_key: false,
            },
        );
        id
    }

    pub(super) fn ensure_group(&mut self, name: &str) -> Uuid {
        if let Some(id) = self.group_by_name(name) {
            return id;
        }
        let id = Uuid::new_v4();
        self.groups.insert(
            id,
            GroupRec {
                id,
                name: name.to_owned(),
                description: None,
                kind: GroupKind::Contensis,
                custom: BTreeMap::new(),
                members: BTreeSet::new(),
                children: BTreeSet::new(),
                extra: extra_fields(None, &BTreeMap::new()),
            },
        );
        id
    }

    /// Every group reachable through child links from `root` (`root` itself only via a cycle).
    pub(super) fn descendants(&self, root: Uuid) -> BTreeSet<Uuid> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Uuid> = self
            .groups
            .get(&root)
            .map(|g| g.children.iter().copied().collect())
            .unwrap_or_default();
        while let Some(id) = stack.pop() {
            if seen.insert(id)
                && let Some(g) = self.groups.get(&id)
            {
                stack.extend(g.children.iter().copied());
            }
        }
        seen
    }

    /// Users of `group` and of all its descendants.
    pub(super) fn all_members(&self, group: Uuid) -> BTreeSet<Uuid> {
        let mut users: BTreeSet<Uuid> = BTreeSet::new();
        for id in self.descendants(group).into_iter().chain([group]) {
            if let Some(g) = self.groups.get(&id) {
                users.extend(g.members.iter().copied());
            }
        }
        users
    }

    pub(super) fn sim_group(&self, id: Uuid) -> Option<SimGroup> {
        let g = self.groups.get(&id)?;
        Some(SimGroup {
            id: g.id.to_string(),
            name: g.name.clone(),
            description: g.description.clone(),
            kind: g.kind.as_str().to_owned(),
            custom: g.custom.clone(),
            members: g
                .members
                .iter()
                .filter_map(|u| self.users.get(u).map(|u| u.username.clone()))
                .collect(),
            children: g
                .children
                .iter()
                .filter_map(|c| self.groups.get(c).map(|c| c.name.clone()))
                .collect(),
            extra: g.extra.clone(),
        })
    }

    // --- auth ---

    /// The principal behind the bearer token, or 401.
    fn caller(&mut self, headers: &HeaderMap) -> Result<Uuid, ApiError> {
        let user = control::bearer(headers)
            .and_then(|token| self.tokens.get(token))
            .copied()
            .ok_or(ApiError::Unauthorized)?;
        if self.users.contains_key(&user) {
            Ok(user)
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    fn is_admin(&self, user: Uuid) -> bool {
        self.all_members(self.sys_admins).contains(&user)
    }

    /// The caller, who must be a member of System Administrators (or 401/403).
    pub(super) fn admin(&mut self, headers: &HeaderMap) -> Result<Uuid, ApiError> {
        let caller = self.caller(headers)?;
        if self.is_admin(caller) {
            Ok(caller)
        } else {
            Err(ApiError::Forbidden(format!(
                "Access denied: the caller must be a member of {SYSTEM_ADMINISTRATORS}"
            )))
        }
    }

    /// The caller, who must be an administrator or the user `ident` names.
    pub(super) fn admin_or_self(
        &mut self,
        headers: &HeaderMap,
        ident: &str,
    ) -> Result<Uuid, ApiError> {
        let caller = self.caller(headers)?;
        if self.is_admin(caller) || self.find_user(ident, caller) == Some(caller) {
            Ok(caller)
        } else {
            self.admin(headers)
        }
    }

    pub(super) fn protect(&self, group: Uuid, membership: bool) -> Result<(), ApiError> {
        if !self.behaviour.protect_system_groups {
            return Ok(());
        }
        match self.groups.get(&group).map(|g| g.kind) {
            Some(GroupKind::External) if membership => Err(ApiError::Forbidden(
                "The members of an external group are managed by its identity provider".into(),
            )),
            Some(GroupKind::Sys | GroupKind::External) if !membership => Err(ApiError::Forbidden(
                "System and external groups cannot be changed".into(),
            )),
            _ => Ok(()),
        }
    }

    // --- JSON ---

    pub(super) fn group_json(&self, id: Uuid) -> Value {
        let Some(g) = self.groups.get(&id) else {
            return Value::Null;
        };
        let mut body = json!({
            "id": g.id,
            "name": g.name,
            "description": g.description,
            "type": g.kind.as_str(),
            "custom": g.custom,
            "userCount": g.members.len(),
            "childGroupCount": g.children.len(),
        });
        if let Value::Object(fields) = &mut body {
            for (k, v) in &g.extra {
                fields.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        body
    }

    pub(super) fn user_json(&self, id: Uuid) -> Value {
        let Some(u) = self.users.get(&id) else {
            return Value::Null;
        };
        let (first, last) = if u.api_key {
            (u.username.clone(), "API key".to_owned())
        } else {
            let mut chars = u.username.chars();
            let first = chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
            (first, "Example".to_owned())
        };
        json!({
            "id": u.id,
            "username": u.username,
            "email": u.email,
            "firstName": first,
            "lastName": last,
            "timezone": "Europe/London",
            "language": "en-GB",
            "custom": {},
            "credentials": {
                "provider": {"type": "Contensis", "name": null},
                "passwordChangeFrequency": 0
            },
            "status": {"suspended": false, "locked": false, "passwordResetRequired": false},
            "created": FIXED_TIME,
            "modified": FIXED_TIME,
            "lastLogin": null,
            "lastFailedLogin": null,
            "expiry": null,
            "passwordChanged": null,
            "optOutOfNotifications": false,
            "failedLoginAttempts": 0,
            "failedLoginAttemptsSinceLastSuccess": 0,
            "successfulLoginAttempts": 0,
        })
    }

    /// Groups as a sorted, filtered, paged list.
    pub(super) fn group_page(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
        q: &Params,
    ) -> Result<Value, ApiError> {
        let page = q.page(self.behaviour.max_page_size)?;
        let needle = q.get("q").map(str::to_lowercase);
        let mut groups: Vec<&GroupRec> = ids
            .into_iter()
            .filter_map(|id| self.groups.get(&id))
            .filter(|g| {
                needle
                    .as_deref()
                    .is_none_or(|n| g.name.to_lowercase().contains(n))
            })
            .collect();
        groups.sort_by(|a, b| {
            (a.name.to_lowercase(), &a.name).cmp(&(b.name.to_lowercase(), &b.name))
        });
        if page.descending {
            groups.reverse();
        }
        let items = groups.iter().map(|g| self.group_json(g.id)).collect();
        Ok(page.wrap(items))
    }

    /// Users as a sorted, filtered, paged list.
    pub(super) fn user_page(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
        q: &Params,
    ) -> Result<Value, ApiError> {
        let page = q.page(self.behaviour.max_page_size)?;
        let needle = q.get("q").map(str::to_lowercase);
        let mut users: Vec<&User> = ids
            .into_iter()
            .filter_map(|id| self.users.get(&id))
            .filter(|u| {
                needle.as_deref().is_none_or(|n| {
                    u.username.to_lowercase().contains(n)
                        || u.email
                            .as_deref()
                            .is_some_and(|e| e.to_lowercase().contains(n))
                })
            })
            .collect();
        users.sort_by(|a, b| {
            (a.username.to_lowercase(), &a.username).cmp(&(b.username.to_lowercase(), &b.username))
        });
        if page.descending {
            users.reverse();
        }
        let items = users.iter().map(|u| self.user_json(u.id)).collect();
        Ok(page.wrap(items))
    }

    // --- group bodies ---

    pub(super) fn check_name(&self, name: &str, except: Option<Uuid>) -> Result<(), ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::validation("name", "The name is required"));
        }
        if name.chars().count() > MAX_NAME_LEN {
            return Err(ApiError::validation(
                "name",
                &format!("The name must be at most {MAX_NAME_LEN} characters long"),
            ));
        }
        match self.group_by_name(name) {
            Some(other) if Some(other) != except => Err(ApiError::Conflict),
            _ => Ok(()),
        }
    }

    /// Whether `child` may become a child of `parent` (404s are the caller's job).
    pub(super) fn check_child(&self, parent: Uuid, child: Uuid) -> Result<(), ApiError> {
        if parent == child {
            return Err(ApiError::validation(
                "childGroupId",
                "A group cannot be a child of itself",
            ));
        }
        if self.behaviour.reject_cycles && self.descendants(child).contains(&parent) {
            return Err(ApiError::validation(
                "childGroupId",
                "Adding this child group would create a cycle",
            ));
        }
        Ok(())
    }
}

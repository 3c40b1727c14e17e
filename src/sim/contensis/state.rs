//! The Contensis simulator's state and rules: its users and groups, who the caller is, what a
//! request may change (names, nesting, protected groups) and how groups and users are shown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::control::{self, Tokens};
use crate::sim::index::{Fold, NameIndex, Tie};

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

/// A user as the API shows it, written straight to the answer: a page of a group's users is
/// the call an observe makes most (one per group), and building each user as JSON values
/// first cost more than the rest of the call. The fields are in the order a JSON value's map
/// writes them, so the text is the same either way.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserOut<'a> {
    created: &'static str,
    credentials: Credentials,
    custom: Empty,
    email: Option<&'a str>,
    expiry: Option<()>,
    failed_login_attempts: u32,
    failed_login_attempts_since_last_success: u32,
    first_name: String,
    id: Uuid,
    language: &'static str,
    last_failed_login: Option<()>,
    last_login: Option<()>,
    last_name: &'static str,
    modified: &'static str,
    opt_out_of_notifications: bool,
    password_changed: Option<()>,
    status: Status,
    successful_login_attempts: u32,
    timezone: &'static str,
    username: &'a str,
}

/// An empty JSON object.
#[derive(Debug, Serialize)]
pub(super) struct Empty {}

/// A user's `credentials`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Credentials {
    password_change_frequency: u32,
    provider: Provider,
}

/// A user's credentials' `provider`.
#[derive(Debug, Serialize)]
pub(super) struct Provider {
    name: Option<()>,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A user's `status`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Status {
    locked: bool,
    password_reset_required: bool,
    suspended: bool,
}

impl<'a> UserOut<'a> {
    /// How `u` is shown: an API key by its name, a person with a made-up first and last name.
    pub(super) fn of(u: &'a User) -> Self {
        let (first_name, last_name) = if u.api_key {
            (u.username.clone(), "API key")
        } else {
            let mut chars = u.username.chars();
            let first = chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
            (first, "Example")
        };
        Self {
            created: FIXED_TIME,
            credentials: Credentials {
                password_change_frequency: 0,
                provider: Provider {
                    name: None,
                    kind: "Contensis",
                },
            },
            custom: Empty {},
            email: u.email.as_deref(),
            expiry: None,
            failed_login_attempts: 0,
            failed_login_attempts_since_last_success: 0,
            first_name,
            id: u.id,
            language: "en-GB",
            last_failed_login: None,
            last_login: None,
            last_name,
            modified: FIXED_TIME,
            opt_out_of_notifications: false,
            password_changed: None,
            status: Status {
                locked: false,
                password_reset_required: false,
                suspended: false,
            },
            successful_login_attempts: 0,
            timezone: "Europe/London",
            username: &u.username,
        }
    }
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
    /// The indexes below answer lookups without a pass over every record (issue 14: a seed of
    /// 20,000 groups names each user many times; every request looks a group or user up; a
    /// list page must not sort every group). They are kept by [`SimState::put_group`],
    /// [`SimState::rename_group`], [`SimState::remove_group`], [`SimState::put_user`] and
    /// [`SimState::remove_user`], the only ways records come, go or change names.
    pub(super) indexes: Indexes,
}

/// The lookups of [`SimState`], each kept by the same rules as a scan of the records in id order
/// would apply.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Indexes {
    /// Group names → ids, by lower-case name (whether names ignore case is applied at lookup
    /// time, so a flipped [`Behaviour::case_insensitive_names`] needs no rebuild); in the order
    /// the group list is sorted in (lower-case name, then name, then id).
    pub(super) group_names: NameIndex<Uuid>,
    /// Usernames and e-mails → user ids, by lower-case form.
    user_names: NameIndex<Uuid>,
}

impl Default for Indexes {
    fn default() -> Self {
        Self {
            group_names: NameIndex::new(Fold::Unicode, Tie::Name),
            user_names: NameIndex::new(Fold::Unicode, Tie::Id),
        }
    }
}

impl SimState {
    /// The group of that name: an exact match first, then one by the name rules in force.
    pub(super) fn group_by_name(&self, name: &str) -> Option<Uuid> {
        self.indexes
            .group_names
            .find(name, self.behaviour.case_insensitive_names)
            .copied()
    }

    /// Stores a group, replacing the one of the same id, and indexes it.
    pub(super) fn put_group(&mut self, rec: GroupRec) {
        let names = &mut self.indexes.group_names;
        if let Some(old) = self.groups.get(&rec.id) {
            names.remove(&old.name, &old.id);
        }
        names.insert(&rec.name, rec.id);
        self.groups.insert(rec.id, rec);
    }

    /// Renames a group, keeping the index of names true.
    pub(super) fn rename_group(&mut self, id: Uuid, name: String) {
        if let Some(g) = self.groups.get_mut(&id) {
            self.indexes.group_names.remove(&g.name, &id);
            self.indexes.group_names.insert(&name, id);
            g.name = name;
        }
    }

    /// Removes a group and its index entry (not the links to it).
    pub(super) fn remove_group(&mut self, id: Uuid) -> Option<GroupRec> {
        let g = self.groups.remove(&id)?;
        self.indexes.group_names.remove(&g.name, &id);
        Some(g)
    }

    fn user_entries(names: &mut NameIndex<Uuid>, u: &User, add: bool) {
        for name in std::iter::once(&u.username).chain(&u.email) {
            if add {
                names.insert(name, u.id);
            } else {
                names.remove(name, &u.id);
            }
        }
    }

    /// Stores a user, replacing the one of the same id, and indexes it.
    pub(super) fn put_user(&mut self, u: User) {
        if let Some(old) = self.users.get(&u.id) {
            Self::user_entries(&mut self.indexes.user_names, old, false);
        }
        Self::user_entries(&mut self.indexes.user_names, &u, true);
        self.users.insert(u.id, u);
    }

    /// Removes a user (not its memberships) and its index entries.
    pub(super) fn remove_user(&mut self, id: Uuid) -> Option<User> {
        let u = self.users.remove(&id)?;
        Self::user_entries(&mut self.indexes.user_names, &u, false);
        Some(u)
    }

    /// Panics unless the indexes say what indexes built afresh from the records would.
    #[cfg(test)]
    pub(super) fn assert_indexes(&self) {
        let mut fresh = Indexes::default();
        for g in self.groups.values() {
            fresh.group_names.insert(&g.name, g.id);
        }
        for u in self.users.values() {
            Self::user_entries(&mut fresh.user_names, u, true);
        }
        assert_eq!(self.indexes, fresh);
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

    /// The user whose username or e-mail is `name`, regardless of case; the first in id order
    /// when several are.
    pub(super) fn user_by_name(&self, name: &str) -> Option<Uuid> {
        self.indexes.user_names.first(name, true).copied()
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
        self.put_user(User {
            id,
            username: username.to_owned(),
            email: Some(format!("{username}@example.com")),
            api_key: false,
        });
        id
    }

    pub(super) fn ensure_group(&mut self, name: &str) -> Uuid {
        if let Some(id) = self.group_by_name(name) {
            return id;
        }
        let id = Uuid::new_v4();
        self.put_group(GroupRec {
            id,
            name: name.to_owned(),
            description: None,
            kind: GroupKind::Contensis,
            custom: BTreeMap::new(),
            members: BTreeSet::new(),
            children: BTreeSet::new(),
            extra: extra_fields(None, &BTreeMap::new()),
        });
        id
    }

    /// The groups `user` belongs to: directly, or when `inherited` also through child groups
    /// (a group whose descendants hold the user). One pass over the groups and their child
    /// links, rather than every group's members gathered with its descendants'.
    pub(super) fn groups_of(&self, user: Uuid, inherited: bool) -> BTreeSet<Uuid> {
        let mut found: BTreeSet<Uuid> = self
            .groups
            .values()
            .filter(|g| g.members.contains(&user))
            .map(|g| g.id)
            .collect();
        if inherited {
            let mut parents: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
            for g in self.groups.values() {
                for c in &g.children {
                    parents.entry(*c).or_default().push(g.id);
                }
            }
            let mut stack: Vec<Uuid> = found.iter().copied().collect();
            while let Some(id) = stack.pop() {
                for p in parents.get(&id).into_iter().flatten() {
                    if found.insert(*p) {
                        stack.push(*p);
                    }
                }
            }
        }
        found
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
        self.users
            .get(&id)
            .and_then(|u| serde_json::to_value(UserOut::of(u)).ok())
            .unwrap_or(Value::Null)
    }

    /// Every group as a sorted (by name, ignoring case), filtered, paged list. The index of
    /// names is kept in that order, so a page is a walk to it, not a sort of every group.
    pub(super) fn all_groups_page(&self, q: &Params) -> Result<PageOut<Value>, ApiError> {
        let page = q.page(self.behaviour.max_page_size)?;
        let needle = q.get("q").map(str::to_lowercase);
        let names = &self.indexes.group_names;
        let wanted = |lower: &str| needle.as_deref().is_none_or(|n| lower.contains(n));
        let total = if needle.is_some() {
            names.iter().filter(|(l, _, _)| wanted(l)).count()
        } else {
            names.len()
        };
        let ids = names
            .iter()
            .filter(|(l, _, _)| wanted(l))
            .map(|(_, _, id)| *id);
        let items: Vec<Value> = if page.descending {
            page.of(ids.rev()).map(|id| self.group_json(id)).collect()
        } else {
            page.of(ids).map(|id| self.group_json(id)).collect()
        };
        Ok(page.wrap(total, items))
    }

    /// Some groups (in id order) as a sorted, filtered, paged list.
    pub(super) fn group_page(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
        q: &Params,
    ) -> Result<PageOut<Value>, ApiError> {
        let page = q.page(self.behaviour.max_page_size)?;
        let needle = q.get("q").map(str::to_lowercase);
        let mut groups: Vec<(String, &GroupRec)> = ids
            .into_iter()
            .filter_map(|id| self.groups.get(&id))
            .map(|g| (g.name.to_lowercase(), g))
            .filter(|(lower, _)| needle.as_deref().is_none_or(|n| lower.contains(n)))
            .collect();
        // Stable: names equal in every way stay in id order.
        groups.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
        if page.descending {
            groups.reverse();
        }
        let total = groups.len();
        let items = page
            .of(groups.iter())
            .map(|(_, g)| self.group_json(g.id))
            .collect();
        Ok(page.wrap(total, items))
    }

    /// Users as a sorted, filtered, paged list.
    pub(super) fn user_page(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
        q: &Params,
    ) -> Result<PageOut<UserOut<'_>>, ApiError> {
        let page = q.page(self.behaviour.max_page_size)?;
        let needle = q.get("q").map(str::to_lowercase);
        let mut users: Vec<(String, &User)> = ids
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
            .map(|u| (u.username.to_lowercase(), u))
            .collect();
        // Each username lowered once, not at every comparison; stable, as before.
        users.sort_by(|a, b| (&a.0, &a.1.username).cmp(&(&b.0, &b.1.username)));
        if page.descending {
            users.reverse();
        }
        let total = users.len();
        let items = page.of(users.iter()).map(|(_, u)| UserOut::of(u)).collect();
        Ok(page.wrap(total, items))
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

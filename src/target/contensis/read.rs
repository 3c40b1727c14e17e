//! Reading Contensis: the observe (groups with their direct members and children, and the GUIDs
//! of the desired users), and the lookups a send or recheck makes (a group by name, whether a
//! group or user exists, a group's direct links).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{ContensisTarget, PAGE_SIZE, TYPE, api};
use crate::model::{Group, GroupKind, GroupName, Observed, ObservedGroup, UserKey};
use crate::plan::{Scope, fold};
use crate::target::http::endpoint::Req;
use crate::target::progress;
use crate::target::{CallError, CallErrorKind, Named, ObserveError, resolve_users};

impl ContensisTarget {
    /// Every group in `scope` with its direct members and children, the other groups' names,
    /// and the GUIDs of `users`.
    pub(super) async fn observe_all(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        let mut observed = Observed::default();
        let mut in_scope = Vec::new();
        let mut seen_ids = BTreeSet::new();
        for item in self.get_all(api::GROUPS, None).await? {
            let g: api::Group = serde_json::from_value(item)
                .map_err(|e| self.incomplete(format!("a group in GET {}: {e}", api::GROUPS)))?;
            if !seen_ids.insert(g.id.clone()) {
                return Err(self.incomplete(format!("group \"{}\" was listed twice", g.name)));
            }
            self.remember(&g.name, &g.id);
            let name = GroupName(g.name.clone());
            if scope.contains(&name) {
                in_scope.push(g);
            } else {
                observed.others.insert(name);
            }
        }
        let groups: Vec<(ObservedGroup, Vec<(UserKey, String)>)> =
            progress::read_each("groups", in_scope, self.concurrency.get(), |g| {
                self.observe_group(g)
            })
            .await?;
        let mut members: HashSet<String> = HashSet::new();
        for (g, ids) in groups {
            members.extend(g.group.members.iter().map(|m| fold(m.as_str(), true)));
            observed.groups.insert(g.group.name.clone(), g);
            observed.users.extend(ids);
        }

        // Bulk adds take GUIDs, so every desired user needs one, and an unknown user must be
        // known before anything is sent: look up only the desired users not already seen as
        // members (whose GUIDs the member lists gave), from the user list when that takes fewer
        // calls, else one `GET /api/security/users/{user}` each.
        let unresolved: Vec<UserKey> = users
            .iter()
            .filter(|u| !members.contains(&fold(u.as_str(), true)))
            .cloned()
            .collect();
        match self.all_users_if_cheaper(unresolved.len()).await? {
            Some(all) => {
                let mut by_name: HashMap<String, &String> = HashMap::new();
                // Usernames win over e-mail addresses that happen to be spelled the same.
                for u in &all {
                    if let Some(e) = &u.email {
                        by_name.insert(fold(e, true), &u.id);
                    }
                }
                for u in &all {
                    by_name.insert(fold(&u.username, true), &u.id);
                }
                for key in unresolved {
                    match by_name.get(&fold(key.as_str(), true)) {
                        Some(id) => {
                            observed.users.insert(key, (*id).clone());
                        }
                        None => {
                            observed.unknown_users.insert(key);
                        }
                    }
                }
            }
            None => {
                resolve_users(&mut observed, unresolved, self.concurrency, |u| {
                    self.resolve_user(u)
                })
                .await?;
            }
        }
        Ok(observed)
    }

    /// One group in scope with its direct members and children, and the GUIDs of its members
    /// (by username), which spare a lookup for each when they are added elsewhere.
    async fn observe_group(
        &self,
        g: api::Group,
    ) -> Result<(ObservedGroup, Vec<(UserKey, String)>), ObserveError> {
        let name = GroupName(g.name.clone());
        let kind = match g.kind.as_deref() {
            Some("sys") => GroupKind::System,
            Some("external") => GroupKind::External,
            _ => GroupKind::Managed,
        };
        let mut group = Group::named(g.name.clone());
        let mut ids = Vec::new();
        group.description = g.description.clone();
        let custom = Value::Object(g.custom.clone().unwrap_or_default());
        group.extras.insert(
            TYPE.to_owned(),
            BTreeMap::from([("custom".to_owned(), custom)]),
        );
        // Groups roster never changes need no membership read.
        if kind == GroupKind::Managed {
            for u in self.get_all(&api::group_users(&g.id), Some(&name)).await? {
                let u: api::User = serde_json::from_value(u)
                    .map_err(|e| self.incomplete(format!("a member of \"{name}\": {e}")))?;
                let key = UserKey::from(u.username);
                group.members.insert(key.clone());
                ids.push((key, u.id));
            }
            for c in self
                .get_all(&api::group_children(&g.id), Some(&name))
                .await?
            {
                let c: api::Group = serde_json::from_value(c)
                    .map_err(|e| self.incomplete(format!("a child of \"{name}\": {e}")))?;
                group.children.insert(GroupName(c.name));
            }
        }
        Ok((
            ObservedGroup {
                id: g.id,
                group,
                kind,
            },
            ids,
        ))
    }

    /// Every user (`GET /api/security/users`, paged), when listing them takes fewer calls than
    /// `wanted` lookups; `None` when it would not. The first page tells how many pages there
    /// are.
    pub(super) async fn all_users_if_cheaper(
        &self,
        wanted: usize,
    ) -> Result<Option<Vec<api::User>>, ObserveError> {
        if wanted < 2 {
            return Ok(None);
        }
        let q = [
            ("pageIndex", "0".to_owned()),
            ("pageSize", PAGE_SIZE.to_string()),
        ];
        let first: api::PagedList = self.read(&Req::get(api::USERS).query(&q), None).await?;
        let items = if first.page_count <= 1 && first.items.len() as u64 == first.total_count {
            first.items
        } else if (first.page_count as usize) < wanted {
            self.get_all(api::USERS, None).await?
        } else {
            return Ok(None);
        };
        items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map(Some)
            .map_err(|e| self.incomplete(format!("a user in GET {}: {e}", api::USERS)))
    }

    /// The GUID of a user (`GET /api/security/users/{user}`, which takes a username or an
    /// e-mail address), or `None` if no such user exists.
    async fn resolve_user(&self, u: UserKey) -> Result<(UserKey, Option<String>), CallError> {
        let path = api::user(u.as_str());
        let reply = self
            .endpoint
            .reads()
            .retry_idempotent(|| {
                self.call(Method::GET, &path, None, None, &[StatusCode::NOT_FOUND])
            })
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok((u, None));
        }
        let user: api::User = self.decode(&reply, &Method::GET, &path, None)?;
        Ok((u, Some(user.id)))
    }

    /// Reads a group by name; `None` if it does not exist.
    pub(super) async fn find_group(
        &self,
        name: &GroupName,
    ) -> Result<Option<api::Group>, CallError> {
        let path = api::group(name.as_str());
        let reply = self
            .call(
                Method::GET,
                &path,
                None,
                Some(name),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let g: api::Group = self.decode(&reply, &Method::GET, &path, Some(name))?;
        self.remember(&g.name, &g.id);
        Ok(Some(g))
    }

    /// Whether a group or user exists (for telling the causes of a 404 apart).
    pub(super) async fn exists(&self, path: &str, group: &GroupName) -> Result<bool, CallError> {
        let reply = self
            .call(
                Method::GET,
                path,
                None,
                Some(group),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        Ok(reply.status != StatusCode::NOT_FOUND)
    }

    /// The ids (lower case) of the direct members or children the list at `path` holds.
    pub(super) async fn linked_ids(
        &self,
        path: &str,
        group: &GroupName,
    ) -> Result<HashSet<String>, CallError> {
        let items = self.get_all(path, Some(group)).await.map_err(|e| match e {
            ObserveError::Call(e) => e,
            other => self.err(
                &Method::GET,
                path,
                Some(group),
                CallErrorKind::Decode(other.to_string()),
            ),
        })?;
        Ok(items
            .iter()
            .filter_map(|i| i.get("id").and_then(Value::as_str))
            .map(str::to_lowercase)
            .collect())
    }
}

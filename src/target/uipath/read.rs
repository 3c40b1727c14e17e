//! Reading UiPath Identity: the observe (groups, their user members, the directory ids of the
//! desired users), and the lookups a send or recheck makes (a group by name, its current
//! members).

use std::collections::{BTreeSet, HashMap};

use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use tracing::debug;

use super::{UiPathTarget, api};
use crate::model::{Group, GroupKind, GroupName, Observed, ObservedGroup, Unmanaged, UserKey};
use crate::plan::{Scope, fold};
use crate::target::http::endpoint::Req;
use crate::target::http::paging::{self, Counted, Paged};
use crate::target::progress;
use crate::target::{CallError, CallErrorKind, Named, ObserveError};

/// One group as [`UiPathTarget::observe_group`] reads it: the group, its named members' (key,
/// id), the ids of members known by id only, and its members that are not people.
type GroupRead = (
    ObservedGroup,
    Vec<(UserKey, String)>,
    Vec<String>,
    BTreeSet<Unmanaged>,
);

impl UiPathTarget {
    /// Every group in `scope` with its user members, the other groups' names, and the
    /// directory ids of `users`.
    pub(super) async fn observe_all(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        let mut observed = Observed::default();
        let mut in_scope = Vec::new();
        let mut seen = BTreeSet::new();
        let path = api::groups(&self.identity, &self.partition);
        for g in self
            .endpoint
            .reads()
            .retry_idempotent(|| self.list())
            .await?
        {
            if !seen.insert(g.id.to_lowercase()) {
                return Err(
                    self.incomplete(format!("GET {path} listed group \"{}\" twice", g.name))
                );
            }
            let name = GroupName(g.name.clone());
            if scope.contains(&name) {
                in_scope.push(g);
            } else {
                observed.others.insert(name);
            }
        }
        let groups: Vec<GroupRead> =
            progress::read_each("groups", in_scope, self.concurrency.get(), |g| {
                self.observe_group(g)
            })
            .await?;
        let mut seen_keys: BTreeSet<String> = BTreeSet::new();
        for (_, ids, _, _) in &groups {
            for (key, _) in ids {
                seen_keys.insert(fold(key.as_str(), true));
            }
        }
        let unresolved: Vec<UserKey> = users
            .iter()
            .filter(|u| !seen_keys.contains(&fold(u.as_str(), true)))
            .cloned()
            .collect();
        let resolved = self
            .resolve_all(unresolved)
            .await
            .map_err(ObserveError::from)?;
        // Members known by id only take the key of the desired user with that id; the others
        // are named by the directory (or by their id, which is enough to remove them).
        let mut key_of_id: HashMap<String, UserKey> = resolved
            .iter()
            .filter_map(|(k, id)| id.as_ref().map(|id| (id.to_lowercase(), k.clone())))
            .collect();
        let mut strangers: Vec<String> = groups
            .iter()
            .flat_map(|(_, _, anonymous, _)| anonymous)
            .filter(|id| !key_of_id.contains_key(&id.to_lowercase()))
            .cloned()
            .collect();
        strangers.sort_by_key(|id| id.to_lowercase());
        strangers.dedup_by_key(|id| id.to_lowercase());
        key_of_id.extend(self.names_of(strangers).await.map_err(ObserveError::from)?);
        for (mut g, ids, anonymous, unmanaged) in groups {
            if !unmanaged.is_empty() {
                observed.unmanaged.insert(g.group.name.clone(), unmanaged);
            }
            for (key, id) in ids {
                observed.users.insert(key, id);
            }
            for id in anonymous {
                let key = key_of_id
                    .get(&id.to_lowercase())
                    .cloned()
                    .unwrap_or_else(|| UserKey::from(id.as_str()));
                g.group.members.insert(key.clone());
                observed.users.insert(key, id);
            }
            observed.groups.insert(g.group.name.clone(), g);
        }
        for (key, id) in resolved {
            match id {
                Some(id) => {
                    observed.users.insert(key, id);
                }
                None => {
                    observed.unknown_users.insert(key);
                }
            }
        }
        Ok(observed)
    }

    /// The user members of a group through its `/Members` call, every page: their ids.
    async fn member_ids(&self, id: &str, name: &GroupName) -> Result<Vec<String>, CallError> {
        Ok(self
            .member_refs(id, name)
            .await?
            .into_iter()
            .filter(api::MemberRef::is_user)
            .map(|m| m.id)
            .collect())
    }

    /// Every member of a group through its `/Members` call, every page, each once. A server
    /// without the call (404) has nothing more to say than the group's own `members`: none.
    async fn member_refs(
        &self,
        id: &str,
        name: &GroupName,
    ) -> Result<Vec<api::MemberRef>, CallError> {
        let path = api::members(&self.identity, &self.partition, id);
        let what = format!("GET {path}");
        let page = |skip: u64| {
            let path = &path;
            async move {
                let query = [
                    ("top", api::MEMBERS_PAGE.to_string()),
                    ("skip", skip.to_string()),
                ];
                let reply = self
                    .call(
                        Method::GET,
                        path,
                        &query,
                        None,
                        Some(name),
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if reply.status == StatusCode::NOT_FOUND {
                    if skip == 0 {
                        return Ok(Counted {
                            items: Vec::new(),
                            total: 0,
                        });
                    }
                    let kind = reply.status_error();
                    return Err(Paged::Failed(self.err(
                        &Method::GET,
                        path,
                        Some(name),
                        kind,
                    )));
                }
                let page: api::MembersPage = self.decode(&reply, &Method::GET, path, Some(name))?;
                Ok(Counted {
                    items: page.results,
                    total: page.total_count as u64,
                })
            }
        };
        let members = paging::counted(&what, "totalCount", page)
            .await
            .map_err(|e| match e {
                Paged::Failed(e) => e,
                Paged::Incomplete(m) => {
                    let kind =
                        CallErrorKind::Decode(members_short(m.strip_prefix(&what).unwrap_or(&m)));
                    self.err(&Method::GET, &path, Some(name), kind)
                }
            })?;
        // Only people are roster's; every member counts towards the total, though.
        let mut seen = BTreeSet::new();
        Ok(members
            .into_iter()
            .filter(|m| seen.insert(m.id.to_lowercase()))
            .collect())
    }

    /// A group's current name and the ids of its user members (lower case), from the group
    /// itself or, when it lists none there, from its `/Members` call.
    pub(super) async fn current(
        &self,
        id: &str,
        name: &GroupName,
    ) -> Result<(String, BTreeSet<String>), CallError> {
        let detail = self.detail(id, name).await?;
        let inline: Vec<api::Member> = detail.members.unwrap_or_default();
        let ids: BTreeSet<String> = if inline.is_empty() {
            self.member_ids(id, name)
                .await?
                .into_iter()
                .map(|m| m.to_lowercase())
                .collect()
        } else {
            inline
                .iter()
                .filter(|m| m.is_user())
                .map(|m| m.identifier.to_lowercase())
                .collect()
        };
        Ok((detail.name, ids))
    }

    /// The existing group whose name matches `name` as UiPath compares names (case-insensitive).
    pub(super) async fn find(
        &self,
        name: &GroupName,
    ) -> Result<Option<api::GroupSummary>, CallError> {
        let key = fold(name.as_str(), true);
        let all = self.list().await?;
        Ok(all
            .iter()
            .find(|g| g.name == name.as_str())
            .or_else(|| all.iter().find(|g| fold(&g.name, true) == key))
            .cloned())
    }

    /// The directory ids of `keys` (cached for the run): `BulkResolveByName` for all of them,
    /// [`api::BULK_RESOLVE_LIMIT`] names a call, then the directory search for each name it
    /// did not resolve.
    async fn resolve_all(
        &self,
        keys: Vec<UserKey>,
    ) -> Result<Vec<(UserKey, Option<String>)>, CallError> {
        let mut done = Vec::new();
        let mut ask = Vec::new();
        {
            let cache = self.cache();
            for key in keys {
                match cache.get(&fold(key.as_str(), true)) {
                    Some(hit) => done.push((key, hit.clone())),
                    None => ask.push(key),
                }
            }
        }
        let chunks: Vec<Vec<UserKey>> = ask
            .chunks(api::BULK_RESOLVE_LIMIT)
            .map(<[UserKey]>::to_vec)
            .collect();
        let answers: Vec<Vec<(UserKey, Option<String>)>> = futures::stream::iter(chunks)
            .map(|chunk| self.bulk_resolve(chunk))
            .buffer_unordered(self.concurrency.get())
            .try_collect()
            .await?;
        let mut missed = Vec::new();
        for (key, id) in answers.into_iter().flatten() {
            match id {
                Some(id) => {
                    self.cache()
                        .insert(fold(key.as_str(), true), Some(id.clone()));
                    done.push((key, Some(id)));
                }
                None => missed.push(key),
            }
        }
        let searched: Vec<(UserKey, Option<String>)> = futures::stream::iter(missed)
            .map(|key| self.search(key))
            .buffer_unordered(self.concurrency.get())
            .try_collect()
            .await?;
        done.extend(searched);
        Ok(done)
    }

    /// One `BulkResolveByName` call: each key with the id of the user it names, or `None` when
    /// the answer names no such user.
    async fn bulk_resolve(
        &self,
        keys: Vec<UserKey>,
    ) -> Result<Vec<(UserKey, Option<String>)>, CallError> {
        let path = api::bulk_resolve(&self.identity, &self.partition);
        let names: Vec<&str> = keys.iter().map(UserKey::as_str).collect();
        let body = api::bulk_resolve_body(&names);
        let answer: HashMap<String, Option<api::SearchEntity>> = self
            .read(&Req::new(Method::POST, &path).json(&body))
            .await?;
        Ok(keys
            .into_iter()
            .map(|key| {
                let entity = answer.get(key.as_str()).or_else(|| {
                    answer
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(key.as_str()))
                        .map(|(_, v)| v)
                });
                let id = entity
                    .and_then(Option::as_ref)
                    .filter(|e| self.is_user_named(e, key.as_str()))
                    .map(|e| e.identifier.clone());
                (key, id)
            })
            .collect())
    }

    /// The user keys of member ids through `BulkResolve`, [`api::BULK_RESOLVE_LIMIT`] ids a
    /// call, by lower-case id; an id the directory does not name is left out.
    async fn names_of(&self, ids: Vec<String>) -> Result<HashMap<String, UserKey>, CallError> {
        let path = api::bulk_resolve_ids(&self.identity, &self.partition);
        let chunks: Vec<Vec<String>> = ids
            .chunks(api::BULK_RESOLVE_LIMIT)
            .map(<[String]>::to_vec)
            .collect();
        let answers: Vec<HashMap<String, Option<api::Member>>> = futures::stream::iter(chunks)
            .map(|chunk| {
                let path = &path;
                async move {
                    let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    let body = api::bulk_resolve_ids_body(&refs);
                    self.read(&Req::new(Method::POST, path).json(&body)).await
                }
            })
            .buffer_unordered(self.concurrency.get())
            .try_collect()
            .await?;
        Ok(answers
            .into_iter()
            .flatten()
            .filter_map(|(id, m)| {
                let m = m.filter(api::Member::is_user)?;
                Some((id.to_lowercase(), UserKey::from(self.member_key(&m))))
            })
            .collect())
    }

    /// The directory id of a user key through the directory search (cached for the run);
    /// `None` when no user has exactly that key, or more than one has.
    async fn search(&self, key: UserKey) -> Result<(UserKey, Option<String>), CallError> {
        let folded = fold(key.as_str(), true);
        if let Some(hit) = self.cache().get(&folded) {
            return Ok((key, hit.clone()));
        }
        let path = api::search(&self.identity, &self.partition);
        let query = [
            ("startsWith", key.as_str().to_owned()),
            ("sourceFilter", api::USER_SOURCES[0].to_owned()),
            ("sourceFilter", api::USER_SOURCES[1].to_owned()),
        ];
        let found: Vec<api::SearchEntity> = self
            .endpoint
            .reads()
            .retry_idempotent(|| self.get_json(&path, &query, None))
            .await?;
        let ids: BTreeSet<&str> = found
            .iter()
            .filter(|e| self.is_user_named(e, key.as_str()))
            .map(|e| e.identifier.as_str())
            .collect();
        let id = match ids.len() {
            1 => ids.into_iter().next().map(str::to_owned),
            0 => None,
            n => {
                debug!(target_name = %self.name, user = %key, matches = n, "ambiguous user key");
                None
            }
        };
        self.cache().insert(folded, id.clone());
        Ok((key, id))
    }

    /// One group as read: the group with the members that came with their names, the named
    /// members' (key, id), the ids of members known by id only (from the `/Members` call), and
    /// the members that are not people (robots, applications, directory groups), which roster
    /// leaves alone.
    async fn observe_group(&self, g: api::GroupSummary) -> Result<GroupRead, ObserveError> {
        let name = GroupName(g.name.clone());
        let kind = if g.kind == api::BUILT_IN {
            GroupKind::System
        } else {
            GroupKind::Managed
        };
        let mut group = Group::named(g.name.clone());
        let mut ids = Vec::new();
        let mut anonymous = Vec::new();
        let mut unmanaged = BTreeSet::new();
        // Built-in groups are never changed, so their members need no read.
        if kind == GroupKind::Managed {
            let detail = self
                .endpoint
                .reads()
                .retry_idempotent(|| self.detail(&g.id, &name))
                .await?;
            if detail.id != g.id {
                return Err(self.incomplete(format!(
                    "GET of group \"{name}\" ({}) answered group {}",
                    g.id, detail.id
                )));
            }
            let inline = detail.members.unwrap_or_default();
            if inline.is_empty() {
                // Some servers list members only through the group's `/Members` call, which
                // gives ids and kinds but no names.
                let refs = self
                    .endpoint
                    .reads()
                    .retry_idempotent(|| self.member_refs(&g.id, &name))
                    .await?;
                for m in refs {
                    if m.is_user() {
                        anonymous.push(m.id);
                    } else {
                        unmanaged.insert(Unmanaged::new(m.what(), m.id));
                    }
                }
            }
            for m in &inline {
                if !m.is_user() {
                    let name = m.name.as_deref().filter(|n| !n.is_empty());
                    unmanaged.insert(Unmanaged::new(m.what(), name.unwrap_or(&m.identifier)));
                    continue;
                }
                let key = UserKey::from(self.member_key(m));
                ids.push((key.clone(), m.identifier.clone()));
                group.members.insert(key);
            }
        }
        Ok((
            ObservedGroup {
                id: g.id,
                group,
                kind,
            },
            ids,
            anonymous,
            unmanaged,
        ))
    }
}

/// What an incomplete read of a group's members says, from the shortfall [`paging::counted`]
/// describes (what follows the list's name in its message).
fn members_short(rest: &str) -> String {
    if let Some(counts) = rest.strip_prefix(" returned ")
        && let Some((listed, total)) = counts.split_once(" items where totalCount is ")
    {
        format!("listed {listed} of the {total} members it counts")
    } else {
        "the member count changed while the members were read".to_owned()
    }
}

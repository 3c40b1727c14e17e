//! The Contensis connector: security groups of the Contensis Management API.
//!
//! Contensis nests groups. A group's new members (and new child groups) are added in one bulk
//! POST of their GUIDs; removals are one DELETE per member, since the API has no bulk remove. A
//! bulk add that is refused or answered ambiguously re-reads the group and adds what is still
//! missing, so it is safe to send again whatever the server does with an id already there. A
//! create is a POST, rechecked by name after an ambiguous failure and adopted on 409, so it is
//! never duplicated. An update GETs the group and PUTs it back as read with only the planned
//! fields replaced, so fields roster does not model (`autoMembershipEmailDomains`, and any the
//! server adds) survive a PUT that replaces the whole group. Groups are read with paging and the
//! count checked against `totalCount`; direct members and children are read without
//! `includeInherited`. Once a group's GUID is known, write paths use it.

pub mod api;
pub mod config;

pub use config::ContensisConfig;
pub(crate) use config::ContensisKeys;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use tracing::debug;

use crate::model::{
    Capabilities, Desired, Group, GroupKind, GroupName, MembershipWrites, Observed, ObservedGroup,
    UserKey,
};
use crate::plan::change::{Change, Plan};
use crate::plan::{Scope, fold};
use crate::retry::RetryPolicy;
use crate::target::http::status_error;
use crate::target::oauth::{BearerSession, FormValue};
use crate::target::{
    Call, CallError, CallErrorKind, Named, ObserveError, Rejection, RetrySafety, Sent, Stage,
    Target, resolve_users,
};

use config::ContensisAuth;

/// The `extras` key of Contensis attributes in the desired state (`[group.contensis]`).
pub const TYPE: &str = "contensis";

/// Items asked for per page of a list.
const PAGE_SIZE: u32 = 100;

/// How a call names a group: by GUID once known, else by name (a group created in this run, whose
/// GUID is looked up when the call is sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRef {
    /// The group's GUID.
    Id(String),
    /// The group's name.
    Name(GroupName),
}

/// One Contensis API call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// G3: create a group with this body.
    Create(Value),
    /// G2 then G4: read the group and put it back with these fields (by wire name) replaced.
    Update(GroupRef, Map<String, Value>),
    /// M3: add these users, as (user key, GUID), in one call.
    AddMembers(GroupRef, Vec<(UserKey, String)>),
    /// M2: add one user by username (only for a user whose GUID is unknown).
    AddMember(GroupRef, String),
    /// M4: remove a user.
    RemoveMember(GroupRef, String),
    /// C3: add these child groups in one call.
    AddChildren(GroupRef, Vec<(GroupName, GroupRef)>),
    /// C4: remove a child group.
    RemoveChild(GroupRef, GroupRef),
    /// G5: delete a group.
    Delete(GroupRef),
}

/// A compiled call: the operation, the group it is about, and the plan changes it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContensisCall {
    /// What to send.
    pub op: Op,
    group: GroupName,
    children: Vec<GroupName>,
    covers: Vec<usize>,
}

impl Call for ContensisCall {
    fn group(&self) -> &GroupName {
        &self.group
    }
    fn stage(&self) -> Stage {
        match self.op {
            Op::Create(_) => Stage::CreateGroup,
            Op::Update(..) => Stage::UpdateGroup,
            Op::AddMembers(..) | Op::AddMember(..) | Op::RemoveMember(..) => Stage::Members,
            Op::AddChildren(..) | Op::RemoveChild(..) => Stage::Children,
            Op::Delete(_) => Stage::DeleteGroup,
        }
    }
    fn retry(&self) -> RetrySafety {
        match self.op {
            Op::Create(_) => RetrySafety::AfterRecheck,
            _ => RetrySafety::Idempotent,
        }
    }
    fn covers(&self) -> &[usize] {
        &self.covers
    }
    fn needs(&self) -> Vec<&GroupName> {
        std::iter::once(&self.group)
            .chain(self.children.iter())
            .collect()
    }
}

/// The Contensis connector for one `[[target]]`.
pub struct ContensisTarget {
    name: String,
    base: String,
    auth: ContensisAuth,
    session: BearerSession,
    http: reqwest::Client,
    concurrency: NonZeroUsize,
    reads: RetryPolicy,
    /// GUIDs by folded group name: filled by observe and by creates, read when a call is sent.
    ids: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for ContensisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContensisTarget")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl ContensisTarget {
    /// A connector for `config`, sending with `http`, reading with up to `concurrency` calls at once.
    pub fn new(
        name: &str,
        config: &ContensisConfig,
        http: reqwest::Client,
        concurrency: NonZeroUsize,
    ) -> Self {
        Self {
            name: name.to_owned(),
            base: config.url.clone(),
            auth: config.auth.clone(),
            session: session(name, config),
            http,
            concurrency,
            reads: RetryPolicy::default(),
            ids: Mutex::new(HashMap::new()),
        }
    }

    /// Retries transient read failures of an observe under `policy`.
    pub fn with_read_retries(mut self, policy: RetryPolicy) -> Self {
        self.reads = policy;
        self
    }

    /// Sends one request with the bearer token (renewed once on a 401). Returns the response
    /// when its status is a success or listed in `accept`.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        group: Option<&GroupName>,
        accept: &[StatusCode],
    ) -> Result<reqwest::Response, CallError> {
        self.session
            .send(&self.http, &self.base, method, path, query, body, accept)
            .await
            .map_err(|f| {
                // Every group call needs the same right; say which, since the server's 403
                // message may not.
                let kind = match f.kind {
                    CallErrorKind::Status { status: 403, .. } => with_note(
                        f.kind,
                        "the account must be a member of the System Administrators group",
                    ),
                    other => other,
                };
                self.err(&f.method, &f.path, group, kind)
            })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        self.reads
            .retry_idempotent(|| async {
                let resp = self
                    .request(Method::GET, path, query, None, group, &[])
                    .await?;
                resp.json().await.map_err(|e| {
                    self.err(
                        &Method::GET,
                        path,
                        group,
                        CallErrorKind::Decode(e.to_string()),
                    )
                })
            })
            .await
    }

    /// Every item of a paged list, checked against `totalCount`; a list that shifts while it is
    /// read is read once more, and an error if it shifts again.
    async fn get_all(
        &self,
        path: &str,
        group: Option<&GroupName>,
    ) -> Result<Vec<Value>, ObserveError> {
        self.get_all_with(path, &[], group).await
    }

    /// [`Self::get_all`] with these query parameters besides the paging.
    async fn get_all_with(
        &self,
        path: &str,
        extra: &[(&str, String)],
        group: Option<&GroupName>,
    ) -> Result<Vec<Value>, ObserveError> {
        let mut last = String::new();
        for _ in 0..2 {
            let mut items = Vec::new();
            let mut index = 0u64;
            let total = loop {
                let mut q = vec![
                    ("pageIndex", index.to_string()),
                    ("pageSize", PAGE_SIZE.to_string()),
                ];
                q.extend(extra.iter().cloned());
                let page: api::PagedList = self.get_json(path, &q, group).await?;
                if page.page_index != index {
                    return Err(self.incomplete(format!(
                        "GET {path} asked for page {index} and got page {}",
                        page.page_index
                    )));
                }
                let got = page.items.len();
                items.extend(page.items);
                index += 1;
                if index >= page.page_count || got == 0 || items.len() as u64 >= page.total_count {
                    break page.total_count;
                }
            };
            if items.len() as u64 == total {
                return Ok(items);
            }
            last = format!(
                "GET {path} returned {} items where totalCount is {total}",
                items.len()
            );
            debug!(target_name = %self.name, "{last}; reading again");
        }
        Err(self.incomplete(last))
    }

    /// The path form of a group: its GUID when known, else its name.
    fn group_slot(&self, r: &GroupRef) -> String {
        match r {
            GroupRef::Id(id) => id.clone(),
            GroupRef::Name(n) => self
                .ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&fold(n.as_str(), true))
                .cloned()
                .unwrap_or_else(|| n.as_str().to_owned()),
        }
    }

    fn remember(&self, name: &str, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fold(name, true), id.to_owned());
    }

    /// Whether a group or user exists (for telling the causes of a 404 apart).
    async fn exists(&self, path: &str, group: &GroupName) -> Result<bool, CallError> {
        let resp = self
            .request(
                Method::GET,
                path,
                &[],
                None,
                Some(group),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        Ok(resp.status() != StatusCode::NOT_FOUND)
    }

    /// M4/C4: removes a member or child. The API answers 404 both for "not in the group" (the
    /// removal already holds) and for a missing group or user (a real failure), so a 404 counts as
    /// done only when every path in `exist` still resolves.
    async fn remove(
        &self,
        call: &ContensisCall,
        path: &str,
        exist: &[String],
        already: &str,
    ) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        let resp = self
            .request(Method::DELETE, path, &[], None, g, &[StatusCode::NOT_FOUND])
            .await?;
        if resp.status() != StatusCode::NOT_FOUND {
            return Ok(Sent::Done);
        }
        for p in exist {
            if !self.exists(p, &call.group).await? {
                return Err(self.err(&Method::DELETE, path, g, status_error(resp).await));
            }
        }
        Ok(Sent::AlreadyDone(already.to_owned()))
    }

    /// Reads a group by name; `None` if it does not exist.
    async fn find_group(&self, name: &GroupName) -> Result<Option<api::Group>, CallError> {
        let path = api::group(name.as_str());
        let resp = self
            .request(
                Method::GET,
                &path,
                &[],
                None,
                Some(name),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let g: api::Group = resp.json().await.map_err(|e| {
            self.err(
                &Method::GET,
                &path,
                Some(name),
                CallErrorKind::Decode(e.to_string()),
            )
        })?;
        self.remember(&g.name, &g.id);
        Ok(Some(g))
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
                group.members.insert(UserKey(u.username.clone()));
                ids.push((UserKey(u.username), u.id));
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

    /// U2: every user, when listing them takes fewer calls than `wanted` lookups; `None` when
    /// it would not. The first page tells how many pages there are.
    async fn all_users_if_cheaper(
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
        let first: api::PagedList = self.get_json(api::USERS, &q, None).await?;
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

    /// U1: the GUID of a user, or `None` if no such user exists.
    async fn resolve_user(&self, u: UserKey) -> Result<(UserKey, Option<String>), CallError> {
        let path = api::user(u.as_str());
        let resp = self
            .reads
            .retry_idempotent(|| {
                self.request(
                    Method::GET,
                    &path,
                    &[],
                    None,
                    None,
                    &[StatusCode::NOT_FOUND],
                )
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok((u, None));
        }
        let user: api::User = resp.json().await.map_err(|e| {
            self.err(
                &Method::GET,
                &path,
                None,
                CallErrorKind::Decode(e.to_string()),
            )
        })?;
        Ok((u, Some(user.id)))
    }

    /// G2 then G4: reads the group and puts it back as read, with only `set` replaced, so that
    /// fields roster does not model survive a PUT that replaces the whole group. The read is
    /// fresh (not the observe's) so that an edit made since the plan is not undone.
    async fn update(
        &self,
        call: &ContensisCall,
        r: &GroupRef,
        set: &Map<String, Value>,
    ) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        let path = api::group(&self.group_slot(r));
        let resp = self.request(Method::GET, &path, &[], None, g, &[]).await?;
        let mut body: Map<String, Value> = resp
            .json()
            .await
            .map_err(|e| self.err(&Method::GET, &path, g, CallErrorKind::Decode(e.to_string())))?;
        for (k, v) in set {
            body.retain(|have, _| !have.eq_ignore_ascii_case(k));
            body.insert(k.clone(), v.clone());
        }
        let resp = self
            .request(Method::PUT, &path, &[], Some(&Value::Object(body)), g, &[])
            .await?;
        if let Ok(updated) = resp.json::<api::Group>().await {
            self.remember(&updated.name, &updated.id);
        }
        Ok(Sent::Done)
    }

    /// The ids (lower case) of the direct members or children the list at `path` holds.
    async fn linked_ids(
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

    /// M3/C3: adds `items` (name, GUID) to a group in one POST of their GUIDs to `path`. What the
    /// server does with an id already there, or one it does not know, is undocumented, and a
    /// refusal may or may not have added the others; so after a refusal the group's direct links
    /// are read again from `list`, and what is still missing is sent once more. It is done when
    /// nothing is missing, and an error naming what was not added otherwise.
    async fn bulk_add(
        &self,
        call: &ContensisCall,
        path: &str,
        list: &str,
        items: &[(String, String)],
        (what, exists): (&str, fn(&str) -> String),
    ) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        let refused = [
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
            StatusCode::CONFLICT,
            StatusCode::UNPROCESSABLE_ENTITY,
        ];
        let ids = |items: &[&(String, String)]| {
            Value::from(items.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>())
        };
        let all: Vec<&(String, String)> = items.iter().collect();
        let resp = self
            .request(Method::POST, path, &[], Some(&ids(&all)), g, &refused)
            .await?;
        if resp.status().is_success() {
            return Ok(Sent::Done);
        }
        let mut refusal = status_error(resp).await;
        // The refusal is the cause to report when the group cannot be read again.
        let have = match self.linked_ids(list, &call.group).await {
            Ok(have) => have,
            Err(e) => {
                let note = format!("and reading the group again failed: {}", e.kind);
                return Err(self.err(&Method::POST, path, g, with_note(refusal, &note)));
            }
        };
        let mut missing: Vec<&(String, String)> = items
            .iter()
            .filter(|(_, id)| !have.contains(&id.to_lowercase()))
            .collect();
        if missing.is_empty() {
            return Ok(Sent::AlreadyDone(format!("already a {what}")));
        }
        // A 404 names no id: find the ones gone since the plan, and add the others.
        let mut gone = Vec::new();
        if matches!(refusal, CallErrorKind::Status { status: 404, .. }) {
            for m in std::mem::take(&mut missing) {
                if self.exists(&exists(&m.1), &call.group).await? {
                    missing.push(m);
                } else {
                    gone.push(m);
                }
            }
        }
        let quote = |v: &[&(String, String)]| {
            v.iter()
                .map(|(n, _)| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Fewer to add than were sent: the refusal was about the others (already there, or
        // gone), so the rest can go in.
        if !missing.is_empty() && missing.len() < items.len() {
            let resp = self
                .request(Method::POST, path, &[], Some(&ids(&missing)), g, &refused)
                .await?;
            if resp.status().is_success() {
                if gone.is_empty() {
                    return Ok(Sent::Done);
                }
                missing.clear();
            } else {
                refusal = status_error(resp).await;
            }
        }
        let mut notes = Vec::new();
        if !gone.is_empty() {
            notes.push(format!("no longer exists: {}", quote(&gone)));
        }
        if !missing.is_empty() {
            notes.push(format!("not added: {}", quote(&missing)));
        }
        Err(self.err(
            &Method::POST,
            path,
            g,
            with_note(refusal, &notes.join("; ")),
        ))
    }
}

impl ContensisTarget {
    /// The planned child additions that would close a cycle (see [`Target::vet`]).
    async fn cycles(
        &self,
        observed: &Observed,
        plan: &Plan,
    ) -> Result<Vec<Rejection>, ObserveError> {
        let key = |n: &GroupName| fold(n.as_str(), true);
        let adds: Vec<(usize, &GroupName, &GroupName)> = plan
            .changes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Change::AddChild { group, child } => Some((i, group, child)),
                _ => None,
            })
            .collect();
        if adds.is_empty() {
            return Ok(Vec::new());
        }
        let mut links: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (name, g) in &observed.groups {
            links
                .entry(key(name))
                .or_default()
                .extend(g.group.children.iter().map(key));
        }
        for (_, group, child) in &adds {
            links.entry(key(group)).or_default().insert(key(child));
        }
        let others: HashMap<String, &GroupName> =
            observed.others.iter().map(|n| (key(n), n)).collect();
        let outside: BTreeSet<&GroupName> = links
            .values()
            .flatten()
            .filter_map(|k| others.get(k).copied())
            .collect();
        for name in outside {
            let slot = self.group_slot(&GroupRef::Name(name.clone()));
            let below = self
                .get_all_with(
                    &api::group_children(&slot),
                    &[("includeInherited", "true".to_owned())],
                    Some(name),
                )
                .await?;
            let below = below
                .iter()
                .filter_map(|g| g.get("name").and_then(Value::as_str))
                .map(str::to_lowercase);
            links.entry(key(name)).or_default().extend(below);
        }
        let reaches = |from: &str, to: &str| {
            let mut seen = HashSet::new();
            let mut stack = vec![from.to_owned()];
            while let Some(k) = stack.pop() {
                if k == to {
                    return true;
                }
                if seen.insert(k.clone())
                    && let Some(next) = links.get(&k)
                {
                    stack.extend(next.iter().cloned());
                }
            }
            false
        };
        Ok(adds
            .into_iter()
            .filter(|(_, group, child)| reaches(&key(child), &key(group)))
            .filter_map(|(i, group, child)| {
                Rejection::of_change(
                    plan,
                    i,
                    format!(
                        "\"{child}\" already contains \"{group}\" (directly or through its child \
                         groups), so adding it as a child would make a cycle, which Contensis \
                         refuses; remove \"{group}\" from \"{child}\" first"
                    ),
                )
            })
            .collect())
    }
}

impl Named for ContensisTarget {
    fn target_name(&self) -> &str {
        &self.name
    }
}

impl Target for ContensisTarget {
    type Call = ContensisCall;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            nested_groups: true,
            // Removals are one call per member; additions are batched per group, which no
            // `MembershipWrites` variant describes exactly (none of the planner's work depends
            // on it).
            membership: MembershipWrites::PerMember,
            case_insensitive_names: true,
            renames: true,
        }
    }

    async fn observe(
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
        let groups: Vec<(ObservedGroup, Vec<(UserKey, String)>)> = futures::stream::iter(in_scope)
            .map(|g| self.observe_group(g))
            .buffer_unordered(self.concurrency.get())
            .try_collect()
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
        // calls, else one U1 each.
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

    /// Refuses what Contensis refuses on a group write: a create or rename without a name, a
    /// description that is not a string, `custom` data that is not an object of string values
    /// (each checked only where a create or update sends it); and a child group that would make
    /// a cycle (a group cannot be its own child, nor hold a group that holds it). For cycles the
    /// links checked are those the groups hold now plus the planned additions; planned removals
    /// are not taken off, since the executor may send an addition before a removal of the same
    /// stage. Groups outside the scope were not read, so the descendants of each one a link
    /// leads to are read (one call each).
    async fn vet(
        &self,
        _desired: &Desired,
        observed: &Observed,
        plan: &Plan,
    ) -> Result<Vec<Rejection>, ObserveError> {
        let mut refused: Vec<Rejection> = plan
            .changes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let problem = match c {
                    Change::CreateGroup {
                        group, attributes, ..
                    } => field_problem("name", &Value::from(group.as_str())).or_else(|| {
                        attributes
                            .get("custom")
                            .and_then(|v| field_problem("custom", v))
                    }),
                    Change::UpdateGroup { fields, .. } => {
                        fields.iter().find_map(|(k, f)| field_problem(k, &f.to))
                    }
                    _ => None,
                }?;
                Rejection::of_change(plan, i, problem)
            })
            .collect();
        refused.extend(self.cycles(observed, plan).await?);
        Ok(refused)
    }

    fn compile(&self, plan: &Plan, observed: &Observed) -> Vec<ContensisCall> {
        let gref = |name: &GroupName| match observed.groups.get(name) {
            Some(g) => GroupRef::Id(g.id.clone()),
            None => GroupRef::Name(name.clone()),
        };
        // Users by folded key, so that a member spelled differently still finds its GUID.
        let user_ids: HashMap<String, &String> = observed
            .users
            .iter()
            .map(|(k, v)| (fold(k.as_str(), true), v))
            .collect();
        let user_id = |u: &UserKey| {
            user_ids
                .get(&fold(u.as_str(), true))
                .map(|id| (*id).clone())
        };
        let user_slot = |u: &UserKey| user_id(u).unwrap_or_else(|| u.as_str().to_owned());
        let call = |i: usize, op: Op, group: &GroupName| ContensisCall {
            op,
            group: group.clone(),
            children: Vec::new(),
            covers: vec![i],
        };
        let mut calls = Vec::new();
        // One bulk add per group for its new members, one for its new children, each placed
        // where the group's first addition is.
        let mut adds: BTreeMap<&GroupName, usize> = BTreeMap::new();
        let mut kids: BTreeMap<&GroupName, usize> = BTreeMap::new();
        for (i, change) in plan.changes.iter().enumerate() {
            match change {
                Change::CreateGroup {
                    group,
                    description,
                    attributes,
                } => calls.push(call(
                    i,
                    Op::Create(api::create_body(
                        group.as_str(),
                        description.as_deref(),
                        attributes.get("custom"),
                    )),
                    group,
                )),
                Change::UpdateGroup { group, fields } => {
                    let set: Map<String, Value> = fields
                        .iter()
                        .map(|(k, f)| (k.clone(), f.to.clone()))
                        .collect();
                    calls.push(call(i, Op::Update(gref(group), set), group));
                }
                Change::AddMember { group, member } => match user_id(member) {
                    Some(id) => {
                        let at = *adds.entry(group).or_insert_with(|| {
                            calls.push(call(i, Op::AddMembers(gref(group), Vec::new()), group));
                            calls.len() - 1
                        });
                        let c = &mut calls[at];
                        if let Op::AddMembers(_, users) = &mut c.op {
                            users.push((member.clone(), id));
                        }
                        if c.covers.last() != Some(&i) {
                            c.covers.push(i);
                        }
                    }
                    None => calls.push(call(
                        i,
                        Op::AddMember(gref(group), member.as_str().to_owned()),
                        group,
                    )),
                },
                Change::RemoveMember { group, member } => calls.push(call(
                    i,
                    Op::RemoveMember(gref(group), user_slot(member)),
                    group,
                )),
                Change::AddChild { group, child } => {
                    let at = *kids.entry(group).or_insert_with(|| {
                        calls.push(call(i, Op::AddChildren(gref(group), Vec::new()), group));
                        calls.len() - 1
                    });
                    let c = &mut calls[at];
                    if let Op::AddChildren(_, children) = &mut c.op {
                        children.push((child.clone(), gref(child)));
                    }
                    c.children.push(child.clone());
                    if c.covers.last() != Some(&i) {
                        c.covers.push(i);
                    }
                }
                Change::RemoveChild { group, child } => {
                    let mut c = call(i, Op::RemoveChild(gref(group), gref(child)), group);
                    c.children.push(child.clone());
                    calls.push(c);
                }
                Change::DeleteGroup { group } => {
                    calls.push(call(i, Op::Delete(gref(group)), group))
                }
            }
        }
        calls
    }

    async fn send(&self, call: &ContensisCall) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        match &call.op {
            Op::Create(body) => {
                let resp = self
                    .request(
                        Method::POST,
                        api::GROUPS,
                        &[],
                        Some(body),
                        g,
                        &[StatusCode::CONFLICT],
                    )
                    .await?;
                if resp.status() == StatusCode::CONFLICT {
                    return match self.find_group(&call.group).await? {
                        Some(_) => Ok(Sent::AlreadyDone("group already existed; adopted".into())),
                        None => Err(self.err(
                            &Method::POST,
                            api::GROUPS,
                            g,
                            CallErrorKind::Status {
                                status: 409,
                                message: "conflict, but no group of that name can be read".into(),
                                retry_after: None,
                            },
                        )),
                    };
                }
                let created: api::Group = resp.json().await.map_err(|e| {
                    self.err(
                        &Method::POST,
                        api::GROUPS,
                        g,
                        CallErrorKind::Decode(e.to_string()),
                    )
                })?;
                self.remember(&created.name, &created.id);
                Ok(Sent::Done)
            }
            Op::Update(r, set) => self.update(call, r, set).await,
            Op::AddMembers(r, users) => {
                let slot = self.group_slot(r);
                let items: Vec<(String, String)> = users
                    .iter()
                    .map(|(u, id)| (u.as_str().to_owned(), id.clone()))
                    .collect();
                let path = api::group_users(&slot);
                self.bulk_add(call, &path, &path, &items, ("member", api::user))
                    .await
            }
            Op::AddChildren(r, children) => {
                let slot = self.group_slot(r);
                let mut items = Vec::new();
                for (name, c) in children {
                    let mut id = self.group_slot(c);
                    if uuid::Uuid::parse_str(&id).is_err() {
                        id = match self.find_group(name).await? {
                            Some(found) => found.id,
                            None => {
                                let path = api::group(name.as_str());
                                return Err(self.err(
                                    &Method::GET,
                                    &path,
                                    g,
                                    CallErrorKind::Status {
                                        status: 404,
                                        message: format!("child group \"{name}\" not found"),
                                        retry_after: None,
                                    },
                                ));
                            }
                        };
                    }
                    items.push((name.as_str().to_owned(), id));
                }
                let path = api::group_children(&slot);
                self.bulk_add(call, &path, &path, &items, ("child", api::group))
                    .await
            }
            Op::AddMember(r, user) => {
                let path = api::group_user(&self.group_slot(r), user);
                let resp = self
                    .request(Method::PUT, &path, &[], None, g, &[StatusCode::CONFLICT])
                    .await?;
                Ok(already_if(
                    resp.status() == StatusCode::CONFLICT,
                    "already a member",
                ))
            }
            Op::RemoveMember(r, user) => {
                let slot = self.group_slot(r);
                let exist = [api::group(&slot), api::user(user)];
                self.remove(call, &api::group_user(&slot, user), &exist, "not a member")
                    .await
            }
            Op::RemoveChild(r, c) => {
                let (slot, child) = (self.group_slot(r), self.group_slot(c));
                let exist = [api::group(&slot), api::group(&child)];
                self.remove(
                    call,
                    &api::group_child(&slot, &child),
                    &exist,
                    "not a child",
                )
                .await
            }
            Op::Delete(r) => {
                let path = api::group(&self.group_slot(r));
                let resp = self
                    .request(
                        Method::DELETE,
                        &path,
                        &[],
                        None,
                        g,
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                Ok(already_if(
                    resp.status() == StatusCode::NOT_FOUND,
                    "already deleted",
                ))
            }
        }
    }

    async fn recheck(&self, call: &ContensisCall) -> Result<Option<Sent>, CallError> {
        match &call.op {
            Op::Create(_) => Ok(self
                .find_group(&call.group)
                .await?
                .map(|_| Sent::AlreadyDone("created by an earlier attempt".into()))),
            // Every other call is idempotent and is simply sent again.
            _ => Ok(None),
        }
    }
}

/// The token grant of target `name`'s `config`: client credentials, or the `contensis_classic` password grant.
fn session(name: &str, config: &ContensisConfig) -> BearerSession {
    let plain = |s: &str| FormValue::Plain(s.to_owned());
    let mut form = match &config.auth {
        ContensisAuth::ClientCredentials {
            client_id,
            client_secret,
        } => vec![
            ("grant_type", plain("client_credentials")),
            ("client_id", plain(client_id)),
            ("client_secret", FormValue::Secret(client_secret.clone())),
        ],
        ContensisAuth::Password { username, password } => vec![
            ("grant_type", plain("contensis_classic")),
            ("username", plain(username)),
            ("password", FormValue::Secret(password.clone())),
        ],
    };
    form.push(("scope", plain(&config.scope)));
    BearerSession::new(name, api::TOKEN, form, "check the client id and secret")
}

/// `kind` with `note` added to the server's message.
fn with_note(kind: CallErrorKind, note: &str) -> CallErrorKind {
    match kind {
        CallErrorKind::Status {
            status,
            message,
            retry_after,
        } => CallErrorKind::Status {
            status,
            message: format!("{message}; {note}"),
            retry_after,
        },
        other => other,
    }
}

/// Why Contensis would refuse `value` as the group body's field `field`, if it would: a
/// blank name, a description other than a string or null, `custom` other than an object of
/// strings (the API documents custom data as string properties).
fn field_problem(field: &str, value: &Value) -> Option<String> {
    match (field, value) {
        ("name", Value::String(s)) if !s.trim().is_empty() => None,
        ("name", _) => Some("Contensis requires a group name that is not blank".into()),
        ("description", Value::String(_) | Value::Null) => None,
        ("description", _) => Some("Contensis takes a description only as a string".into()),
        ("custom", Value::Null) => None,
        ("custom", Value::Object(m)) => m.iter().find(|(_, v)| !v.is_string()).map(|(k, v)| {
            format!("Contensis takes custom values only as strings, and custom.{k} is {v}")
        }),
        ("custom", _) => Some("Contensis takes custom data only as an object of strings".into()),
        _ => None,
    }
}

fn already_if(already: bool, why: &str) -> Sent {
    if already {
        Sent::AlreadyDone(why.to_owned())
    } else {
        Sent::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn target() -> ContensisTarget {
        let config = ContensisConfig {
            url: "http://127.0.0.1:9".into(),
            auth: ContensisAuth::ClientCredentials {
                client_id: "roster".into(),
                client_secret: Secret::new("s"),
            },
            scope: config::DEFAULT_SCOPE.into(),
        };
        let one = NonZeroUsize::MIN;
        ContensisTarget::new("cms", &config, reqwest::Client::new(), one)
    }

    #[test]
    fn adds_are_one_call_per_group_and_removals_one_per_member() {
        let g = |n: &str| GroupName(n.to_owned());
        let u = |n: &str| UserKey(n.to_owned());
        let mut observed = Observed::default();
        for name in ["G", "H"] {
            observed.groups.insert(
                g(name),
                ObservedGroup {
                    id: format!("id-{name}"),
                    group: Group::named(name),
                    kind: GroupKind::Managed,
                },
            );
        }
        for name in ["a", "b", "c"] {
            observed.users.insert(u(name), format!("uid-{name}"));
        }
        let add = |grp: &str, m: &str| Change::AddMember {
            group: g(grp),
            member: u(m),
        };
        let plan = Plan {
            changes: vec![
                add("G", "a"),
                add("G", "b"),
                Change::RemoveMember {
                    group: g("G"),
                    member: u("c"),
                },
                add("H", "c"),
                Change::AddChild {
                    group: g("G"),
                    child: g("H"),
                },
                Change::AddChild {
                    group: g("G"),
                    child: g("New"),
                },
            ],
            ..Plan::default()
        };
        let calls = target().compile(&plan, &observed);
        let ops: Vec<&Op> = calls.iter().map(|c| &c.op).collect();
        assert_eq!(
            ops,
            [
                &Op::AddMembers(
                    GroupRef::Id("id-G".into()),
                    vec![(u("a"), "uid-a".into()), (u("b"), "uid-b".into())]
                ),
                &Op::RemoveMember(GroupRef::Id("id-G".into()), "uid-c".into()),
                &Op::AddMembers(GroupRef::Id("id-H".into()), vec![(u("c"), "uid-c".into())]),
                &Op::AddChildren(
                    GroupRef::Id("id-G".into()),
                    vec![
                        (g("H"), GroupRef::Id("id-H".into())),
                        (g("New"), GroupRef::Name(g("New")))
                    ]
                ),
            ]
        );
        assert_eq!(calls[0].covers(), [0, 1]);
        assert_eq!(calls[3].covers(), [4, 5]);
        assert_eq!(calls[3].needs(), [&g("G"), &g("H"), &g("New")]);
    }

    #[tokio::test]
    async fn vet_refuses_bodies_contensis_would_refuse_and_only_those() {
        use crate::plan::change::FieldChange;
        let g = |n: &str| GroupName(n.to_owned());
        let custom = |v: Value| crate::model::Attributes::from([("custom".to_owned(), v)]);
        let update = |k: &str, to: Value| Change::UpdateGroup {
            group: g("U"),
            fields: BTreeMap::from([(
                k.to_owned(),
                FieldChange {
                    from: Value::Null,
                    to,
                },
            )]),
        };
        let create = |name: &str, attributes| Change::CreateGroup {
            group: g(name),
            description: None,
            attributes,
        };
        let plan = Plan {
            changes: vec![
                create("Fine", custom(serde_json::json!({"clientId": "PSSC"}))),
                create(" ", Default::default()),
                create("Num", custom(serde_json::json!({"n": 1}))),
                update("custom", serde_json::json!({"ok": "x", "flag": true})),
                update("custom", serde_json::json!({"ok": "x"})),
                update("description", Value::Null),
                update("description", serde_json::json!(3)),
                update("name", Value::from("")),
            ],
            ..Plan::default()
        };
        let refused = target()
            .vet(&Desired::default(), &Observed::default(), &plan)
            .await
            .expect("vet without child additions reads nothing");
        let at: Vec<Option<usize>> = refused.iter().map(|r| r.change).collect();
        assert_eq!(
            at,
            [Some(1), Some(2), Some(3), Some(6), Some(7)],
            "{refused:?}"
        );
        assert!(refused[1].message.contains("custom.n is 1"), "{refused:?}");
    }
}

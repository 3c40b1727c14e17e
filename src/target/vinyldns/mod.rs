//! The VinylDNS connector: groups of the VinylDNS API, signed with AWS Signature Version 4.
//!
//! VinylDNS cannot nest groups and writes membership only by full replacement: `PUT
//! /groups/{id}` carries the whole `members` and `admins` lists. So a group's changes compile to
//! one call: a create (POST, its members riding along), an update (one PUT carrying the field
//! changes and every member added or removed), or a delete. The update carries the plan's delta,
//! not a finished list: when it is sent, the group is read afresh and the delta applied to what
//! was read, so a member someone added meanwhile is kept and sending it twice is harmless.
//!
//! A create is not idempotent: a 409 (the name exists: someone else made it) is adopted by finding
//! the group by name and adding the desired members and admins, removing nobody (the next plan
//! shows any removals, under the deletion limit); after an ambiguous failure of roster's own create,
//! [`Target::recheck`] finds the group and sets its lists to the desired ones. VinylDNS makes the creating account an admin of every group it creates; when
//! the desired state does not name that account, the created group is put right with one PUT.

pub mod api;
pub mod config;
pub mod sigv4;
pub mod sim;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::debug;

use crate::config::Diagnostic;
use crate::exec::RetryPolicy;
use crate::model::{
    Attributes, Capabilities, Desired, Group, GroupKind, GroupName, MembershipWrites, Observed,
    ObservedGroup, UserKey,
};
use crate::plan::change::{Change, Plan};
use crate::plan::{Scope, fold};
use crate::target::http::{self, status_error, transport_error};
use crate::target::{
    Call, CallError, CallErrorKind, Named, ObserveError, RetrySafety, Sent, Stage, Target, problem,
    resolve_users,
};

use config::VinylDnsConfig;

/// The `extras` key of VinylDNS attributes in the desired state (`[group.vinyldns]`).
pub const TYPE: &str = "vinyldns";

/// VinylDNS compares group names without regard to case (its store's collation; listings sort
/// and filter on lower-cased names), so roster does too.
const CASE_INSENSITIVE: bool = true;

/// What a create carries: the whole new group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewGroup {
    /// Its name.
    pub name: String,
    /// Its e-mail.
    pub email: String,
    /// Its description, if the desired state sets one.
    pub description: Option<String>,
    /// Member ids (admins included).
    pub members: BTreeSet<String>,
    /// Admin ids.
    pub admins: BTreeSet<String>,
}

/// What an update changes, applied to a fresh read of the group when it is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// A new name.
    pub name: Option<String>,
    /// A new e-mail.
    pub email: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// The admins, when the desired state manages them (ids).
    pub admins: Option<BTreeSet<String>>,
    /// Member ids to add.
    pub add: BTreeSet<String>,
    /// Member ids to remove.
    pub remove: BTreeSet<String>,
}

/// One VinylDNS API call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `POST /groups` with the whole group.
    Create(NewGroup),
    /// A fresh `GET /groups/{id}`, then `PUT /groups/{id}` with the delta applied.
    Update(String, Delta),
    /// `DELETE /groups/{id}`.
    Delete(String),
}

/// A compiled call: the operation, the group it is about, and the plan changes it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VinylDnsCall {
    /// What to send.
    pub op: Op,
    group: GroupName,
    covers: Vec<usize>,
}

impl Call for VinylDnsCall {
    fn group(&self) -> &GroupName {
        &self.group
    }
    fn stage(&self) -> Stage {
        match self.op {
            Op::Create(_) => Stage::CreateGroup,
            Op::Update(..) => Stage::Members,
            Op::Delete(_) => Stage::DeleteGroup,
        }
    }
    fn retry(&self) -> RetrySafety {
        match self.op {
            Op::Create(_) => RetrySafety::AfterRecheck,
            Op::Update(..) | Op::Delete(_) => RetrySafety::Idempotent,
        }
    }
    fn covers(&self) -> &[usize] {
        &self.covers
    }
}

/// The VinylDNS connector for one `[[target]]`.
pub struct VinylDnsTarget {
    name: String,
    base: String,
    access_key: crate::config::Secret,
    secret_key: crate::config::Secret,
    http: reqwest::Client,
    concurrency: NonZeroUsize,
    reads: RetryPolicy,
    /// User ids by folded user key, for the run: `None` for a key the API does not know.
    users: Mutex<HashMap<String, Option<String>>>,
}

impl std::fmt::Debug for VinylDnsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VinylDnsTarget")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key)
            .finish_non_exhaustive()
    }
}

/// The desired `email` and `admins` of a group's `[group.vinyldns]` attributes.
fn attrs(a: Option<&Attributes>) -> (Option<&str>, Vec<&str>) {
    let email = a.and_then(|a| a.get("email")).and_then(Value::as_str);
    let admins = a
        .and_then(|a| a.get("admins"))
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    (email, admins)
}

impl VinylDnsTarget {
    /// A connector for `config`, sending with `http`, reading with up to `concurrency` calls at once.
    pub fn new(
        name: &str,
        config: &VinylDnsConfig,
        http: reqwest::Client,
        concurrency: NonZeroUsize,
    ) -> Self {
        Self {
            name: name.to_owned(),
            base: config.url.clone(),
            access_key: config.access_key.clone(),
            secret_key: config.secret_key.clone(),
            http,
            concurrency,
            reads: RetryPolicy::default(),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Retries transient read failures of an observe under `policy`.
    pub fn with_read_retries(mut self, policy: RetryPolicy) -> Self {
        self.reads = policy;
        self
    }

    /// Sends one signed request. Returns the response when its status is a success or listed in
    /// `accept`; a 401 is an authentication failure, any other status an error with the server's
    /// message.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
        group: Option<&GroupName>,
        accept: &[StatusCode],
    ) -> Result<reqwest::Response, CallError> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&sigv4::query(query));
        }
        let content_type = [("content-type", "application/json")];
        let signed_headers: &[(&str, &str)] = if body.is_some() { &content_type } else { &[] };
        let signed = sigv4::sign(
            method.as_str(),
            &url,
            signed_headers,
            body.unwrap_or_default(),
            self.access_key.expose(),
            self.secret_key.expose(),
            sigv4::now(),
        )
        .map_err(|e| self.err(&method, path, group, CallErrorKind::Auth(e.to_string())))?;
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("Accept", "application/json");
        for (k, v) in signed {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_vec());
        }
        let resp = http::send(&self.name, req)
            .await
            .map_err(|e| self.err(&method, path, group, transport_error(&e)))?;
        let status = resp.status();
        if status.is_success() || accept.contains(&status) {
            return Ok(resp);
        }
        let kind = match status_error(resp).await {
            CallErrorKind::Status {
                status: 401,
                message,
                ..
            } => CallErrorKind::Auth(format!(
                "the API refused the request signature (401): {message}; check access_key \
                     and secret_key"
            )),
            other => other,
        };
        Err(self.err(&method, path, group, kind))
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
        method: &Method,
        path: &str,
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        resp.json()
            .await
            .map_err(|e| self.err(method, path, group, CallErrorKind::Decode(e.to_string())))
    }

    /// A read, sent once.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        let resp = self
            .request(Method::GET, path, query, None, group, &[])
            .await?;
        self.decode(resp, &Method::GET, path, group).await
    }

    /// A read of an observe, retried after transient failures as the read policy allows.
    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        self.reads
            .retry_idempotent(|| self.get_json(path, query, group))
            .await
    }

    /// Every live group, every page. A page that repeats a cursor or a group is an incomplete
    /// read, never a shorter list. `retry`: whether a page is read again after a transient
    /// failure (an observe), or sent once (a send or recheck, which the executor retries).
    async fn list_groups(
        &self,
        name_filter: Option<&str>,
        retry: bool,
    ) -> Result<Vec<api::Group>, ObserveError> {
        let mut groups = Vec::new();
        let mut ids = HashSet::new();
        let mut cursors = HashSet::new();
        let mut start: Option<String> = None;
        loop {
            let mut q = vec![
                ("maxItems", api::MAX_ITEMS.to_string()),
                ("ignoreAccess", "true".to_owned()),
            ];
            if let Some(f) = name_filter {
                q.push(("groupNameFilter", f.to_owned()));
            }
            if let Some(s) = &start {
                q.push(("startFrom", s.clone()));
            }
            let page: api::GroupPage = if retry {
                self.read_json(api::GROUPS, &q, None).await?
            } else {
                self.get_json(api::GROUPS, &q, None).await?
            };
            for g in page.groups {
                if !ids.insert(g.id.clone()) {
                    return Err(self.incomplete(format!(
                        "GET {} listed group \"{}\" twice",
                        api::GROUPS,
                        g.name
                    )));
                }
                groups.push(g);
            }
            match page.next_id {
                None => return Ok(groups),
                Some(next) => {
                    if !cursors.insert(next.clone()) {
                        return Err(self.incomplete(format!(
                            "GET {} returned the cursor {next} twice",
                            api::GROUPS
                        )));
                    }
                    start = Some(next);
                }
            }
        }
    }

    /// Every member of a group, every page.
    async fn list_members(
        &self,
        id: &str,
        name: &GroupName,
    ) -> Result<Vec<api::Member>, ObserveError> {
        let path = api::group_members(id);
        let mut members = Vec::new();
        let mut ids = HashSet::new();
        let mut cursors = HashSet::new();
        let mut start: Option<String> = None;
        loop {
            let mut q = vec![("maxItems", api::MAX_ITEMS.to_string())];
            if let Some(s) = &start {
                q.push(("startFrom", s.clone()));
            }
            let page: api::MemberPage = self.read_json(&path, &q, Some(name)).await?;
            for m in page.members {
                if !ids.insert(m.id.clone()) {
                    return Err(self.incomplete(format!(
                        "GET {path} listed member \"{}\" twice",
                        m.user_name
                    )));
                }
                members.push(m);
            }
            match page.next_id {
                None => return Ok(members),
                Some(next) => {
                    if !cursors.insert(next.clone()) {
                        return Err(
                            self.incomplete(format!("GET {path} returned the cursor {next} twice"))
                        );
                    }
                    start = Some(next);
                }
            }
        }
    }

    async fn observe_group(&self, g: api::Group) -> Result<ObservedGroup, ObserveError> {
        let name = GroupName(g.name.clone());
        let members = self.list_members(&g.id, &name).await?;
        // The members read must be the members the group listed: a group changed between the
        // two reads is not observed half-way.
        let listed: BTreeSet<&str> = g.members.iter().map(|m| m.id.as_str()).collect();
        let read: BTreeSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
        if listed != read {
            return Err(self.incomplete(format!(
                "the members of \"{name}\" changed while they were read ({} listed, {} read)",
                listed.len(),
                read.len()
            )));
        }
        let mut group = Group::named(g.name.clone());
        group.description = g.description.clone().filter(|d| !d.is_empty());
        let mut admins = BTreeSet::new();
        {
            let mut cache = self.users.lock().unwrap_or_else(|e| e.into_inner());
            for m in &members {
                cache.insert(fold(&m.user_name, CASE_INSENSITIVE), Some(m.id.clone()));
                group.members.insert(UserKey(m.user_name.clone()));
                if m.is_admin {
                    admins.insert(m.user_name.clone());
                }
            }
        }
        let admins: Vec<Value> = admins.into_iter().map(Value::from).collect();
        group.extras.insert(
            TYPE.to_owned(),
            Attributes::from([
                ("email".to_owned(), Value::from(g.email.clone())),
                ("admins".to_owned(), Value::from(admins)),
            ]),
        );
        Ok(ObservedGroup {
            id: g.id,
            group,
            kind: GroupKind::Managed,
        })
    }

    /// The id of a user key, through the run's cache, else `GET /users/{key}`; `None` when the
    /// API does not know the user.
    async fn resolve_user(&self, key: UserKey) -> Result<(UserKey, Option<String>), CallError> {
        let folded = fold(key.as_str(), CASE_INSENSITIVE);
        if let Some(hit) = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&folded)
        {
            return Ok((key, hit.clone()));
        }
        let path = api::user(key.as_str());
        let found = self
            .reads
            .retry_idempotent(|| async {
                let resp = self
                    .request(
                        Method::GET,
                        &path,
                        &[],
                        None,
                        None,
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if resp.status() == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let u: api::User = self.decode(resp, &Method::GET, &path, None).await?;
                Ok(Some(u.id))
            })
            .await?;
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(folded, found.clone());
        Ok((key, found))
    }

    /// `GET /groups/{id}`: a fresh read before a full replace.
    async fn get_group(&self, id: &str, name: &GroupName) -> Result<api::Group, CallError> {
        let path = api::group(id);
        let resp = self
            .request(Method::GET, &path, &[], None, Some(name), &[])
            .await?;
        self.decode(resp, &Method::GET, &path, Some(name)).await
    }

    /// `PUT /groups/{id}` with the whole group.
    async fn put_group(&self, body: &api::UpdateGroup, name: &GroupName) -> Result<(), CallError> {
        let path = api::group(&body.id);
        let bytes = serde_json::to_vec(body).map_err(|e| {
            self.err(
                &Method::PUT,
                &path,
                Some(name),
                CallErrorKind::Decode(e.to_string()),
            )
        })?;
        self.request(Method::PUT, &path, &[], Some(&bytes), Some(name), &[])
            .await?;
        Ok(())
    }

    /// The live group of this name (compared as VinylDNS compares names), if any. Its pages are
    /// sent once: this is part of a send or recheck.
    async fn find_group(&self, name: &GroupName) -> Result<Option<api::Group>, CallError> {
        let groups = match self.list_groups(Some(name.as_str()), false).await {
            Ok(g) => g,
            Err(ObserveError::Call(e)) => return Err(e),
            Err(e) => {
                return Err(self.err(
                    &Method::GET,
                    api::GROUPS,
                    Some(name),
                    CallErrorKind::Decode(e.to_string()),
                ));
            }
        };
        let want = fold(name.as_str(), CASE_INSENSITIVE);
        Ok(groups
            .into_iter()
            .find(|g| !g.is_deleted() && fold(&g.name, CASE_INSENSITIVE) == want))
    }

    /// Replaces an existing group's fields and lists with those of `new` (an adopted group, or
    /// a created one that VinylDNS gave an admin the desired state does not name).
    async fn replace(
        &self,
        have: &api::Group,
        new: &NewGroup,
        name: &GroupName,
    ) -> Result<(), CallError> {
        let members = new.members.union(&new.admins);
        self.put_lists(have, new, members, &new.admins, name).await
    }

    /// Takes over a group someone else created under the desired name: adds the desired members
    /// and admins, and removes nobody. Removals are left to the next plan, where the deletion
    /// limit sees them, since the plan that led here never saw this group's members.
    async fn adopt(
        &self,
        have: &api::Group,
        new: &NewGroup,
        name: &GroupName,
    ) -> Result<(), CallError> {
        let ids = |refs: &[api::IdRef]| -> BTreeSet<String> {
            refs.iter().map(|r| r.id.clone()).collect()
        };
        let admins: BTreeSet<String> = ids(&have.admins).union(&new.admins).cloned().collect();
        let members: BTreeSet<String> = ids(&have.members)
            .into_iter()
            .chain(new.members.iter().cloned())
            .chain(admins.iter().cloned())
            .collect();
        self.put_lists(have, new, &members, &admins, name).await
    }

    /// `PUT`s group `have` under its own name with `new`'s e-mail and description (its own
    /// description when `new` has none) and these member and admin ids.
    async fn put_lists<'a>(
        &self,
        have: &api::Group,
        new: &NewGroup,
        members: impl IntoIterator<Item = &'a String>,
        admins: impl IntoIterator<Item = &'a String>,
        name: &GroupName,
    ) -> Result<(), CallError> {
        let body = api::UpdateGroup {
            id: have.id.clone(),
            name: have.name.clone(),
            email: new.email.clone(),
            description: new.description.clone().or_else(|| have.description.clone()),
            members: api::refs(members),
            admins: api::refs(admins),
        };
        self.put_group(&body, name).await
    }

    async fn create(&self, call: &VinylDnsCall, new: &NewGroup) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        let body = api::CreateGroup {
            name: new.name.clone(),
            email: new.email.clone(),
            description: new.description.clone(),
            members: api::refs(new.members.union(&new.admins)),
            admins: api::refs(&new.admins),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| {
            self.err(
                &Method::POST,
                api::GROUPS,
                g,
                CallErrorKind::Decode(e.to_string()),
            )
        })?;
        let resp = self
            .request(
                Method::POST,
                api::GROUPS,
                &[],
                Some(&bytes),
                g,
                &[StatusCode::CONFLICT],
            )
            .await?;
        if resp.status() == StatusCode::CONFLICT {
            let mut conflict = status_error(resp).await;
            return match self.find_group(&call.group).await? {
                Some(have) => {
                    self.adopt(&have, new, &call.group).await?;
                    Ok(Sent::AlreadyDone(
                        "group already existed; adopted, the desired members added".into(),
                    ))
                }
                None => {
                    if let CallErrorKind::Status { message, .. } = &mut conflict {
                        message.push_str(" (and no live group of that name can be read)");
                    }
                    Err(self.err(&Method::POST, api::GROUPS, g, conflict))
                }
            };
        }
        let created: api::Group = self.decode(resp, &Method::POST, api::GROUPS, g).await?;
        self.fix_creator(&created, new, &call.group).await?;
        Ok(Sent::Done)
    }

    /// VinylDNS makes the creating account an admin (and so a member) of a new group. When the
    /// desired state does not name it, one PUT puts the group right, built from the create's
    /// answer, which is as fresh as a read.
    async fn fix_creator(
        &self,
        created: &api::Group,
        new: &NewGroup,
        name: &GroupName,
    ) -> Result<(), CallError> {
        let members: BTreeSet<&String> = created.members.iter().map(|m| &m.id).collect();
        let admins: BTreeSet<&String> = created.admins.iter().map(|m| &m.id).collect();
        let want_members: BTreeSet<&String> = new.members.union(&new.admins).collect();
        let want_admins: BTreeSet<&String> = new.admins.iter().collect();
        if members == want_members && admins == want_admins || new.admins.is_empty() {
            return Ok(());
        }
        debug!(group = %name, "the API added its own admin to the new group; replacing the lists");
        self.replace(created, new, name).await
    }

    async fn update(&self, call: &VinylDnsCall, id: &str, d: &Delta) -> Result<Sent, CallError> {
        let have = self.get_group(id, &call.group).await?;
        let mut members: BTreeSet<String> = have.members.iter().map(|m| m.id.clone()).collect();
        let mut admins: BTreeSet<String> = match &d.admins {
            Some(a) => a.clone(),
            None => have.admins.iter().map(|m| m.id.clone()).collect(),
        };
        members.extend(d.add.iter().cloned());
        for r in &d.remove {
            members.remove(r);
            admins.remove(r);
        }
        // VinylDNS makes every admin a member.
        members.extend(admins.iter().cloned());
        let body = api::UpdateGroup {
            id: have.id.clone(),
            name: d.name.clone().unwrap_or_else(|| have.name.clone()),
            email: d.email.clone().unwrap_or_else(|| have.email.clone()),
            description: d.description.clone().or_else(|| have.description.clone()),
            members: api::refs(&members),
            admins: api::refs(&admins),
        };
        self.put_group(&body, &call.group).await?;
        Ok(Sent::Done)
    }
}

impl Named for VinylDnsTarget {
    fn target_name(&self) -> &str {
        &self.name
    }
}

impl Target for VinylDnsTarget {
    type Call = VinylDnsCall;

    /// VinylDNS cannot nest groups, replaces membership whole, can rename a group with the PUT
    /// (name is a field of the update), and treats group names without regard to case.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            nested_groups: false,
            membership: MembershipWrites::FullReplace,
            case_insensitive_names: CASE_INSENSITIVE,
            renames: true,
        }
    }

    /// Every group VinylDNS would refuse is an error at its origin: no `email`, no `admins`
    /// (VinylDNS requires at least one admin, and would otherwise make roster's own account the
    /// admin), or a name with white space. Admins are made members, as VinylDNS does.
    fn prepare<'d>(
        &self,
        desired: &'d Desired,
        scope: &Scope,
    ) -> Result<Cow<'d, Desired>, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let mut adapted: Option<Desired> = None;
        for (name, g) in &desired.groups {
            if !scope.contains(name) {
                continue;
            }
            let at = |msg: String| problem(desired, name, msg);
            if name.as_str().is_empty() || name.as_str().chars().any(char::is_whitespace) {
                problems.push(at(format!(
                    "group \"{name}\": VinylDNS group names are one word (no spaces)"
                )));
            }
            let (email, admins) = attrs(g.extras.get(TYPE));
            if email.is_none_or(|e| e.trim().is_empty()) {
                problems.push(at(format!(
                    "group \"{name}\" has no e-mail, which VinylDNS requires: set `[group.vinyldns] email`"
                )));
            }
            if admins.is_empty() {
                problems.push(at(format!(
                    "group \"{name}\" has no admin, which VinylDNS requires: set `[group.vinyldns] admins`"
                )));
            }
            let missing: Vec<&str> = admins
                .iter()
                .copied()
                .filter(|a| !g.members.contains(&UserKey::from(*a)))
                .collect();
            if !missing.is_empty() {
                let d = adapted.get_or_insert_with(|| desired.clone());
                if let Some(dg) = d.groups.get_mut(name) {
                    dg.members
                        .extend(missing.into_iter().map(|a| UserKey(a.to_owned())));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(adapted.map_or(Cow::Borrowed(desired), Cow::Owned))
    }

    async fn observe(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        let mut observed = Observed::default();
        let mut in_scope = Vec::new();
        for g in self.list_groups(None, true).await? {
            if g.is_deleted() {
                continue;
            }
            let name = GroupName(g.name.clone());
            if scope.contains(&name) {
                in_scope.push(g);
            } else {
                observed.others.insert(name);
            }
        }
        let groups: Vec<ObservedGroup> = futures::stream::iter(in_scope)
            .map(|g| self.observe_group(g))
            .buffer_unordered(self.concurrency.get())
            .try_collect()
            .await?;
        for g in groups {
            for m in &g.group.members {
                if let Some(Some(id)) = self
                    .users
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&fold(m.as_str(), CASE_INSENSITIVE))
                {
                    observed.users.insert(m.clone(), id.clone());
                }
            }
            observed.groups.insert(g.group.name.clone(), g);
        }
        // Desired users not seen as members: one lookup each, cached for the run.
        resolve_users(
            &mut observed,
            users.iter().cloned(),
            self.concurrency,
            |u| self.resolve_user(u),
        )
        .await?;
        Ok(observed)
    }

    fn compile(&self, plan: &Plan, observed: &Observed) -> Vec<VinylDnsCall> {
        let ids: HashMap<String, &String> = observed
            .users
            .iter()
            .map(|(k, v)| (fold(k.as_str(), CASE_INSENSITIVE), v))
            .collect();
        let id_of = |k: &str| ids.get(&fold(k, CASE_INSENSITIVE)).map(|v| (*v).clone());
        // One call per group, in the plan's (group-sorted) order.
        let mut calls: Vec<VinylDnsCall> = Vec::new();
        let mut index: BTreeMap<GroupName, usize> = BTreeMap::new();
        for (i, change) in plan.changes.iter().enumerate() {
            let group = change.group();
            let slot = match index.get(group) {
                Some(&s) => s,
                None => {
                    let op = match change {
                        Change::CreateGroup {
                            description,
                            attributes,
                            ..
                        } => {
                            let (email, admins) = attrs(Some(attributes));
                            Op::Create(NewGroup {
                                name: group.as_str().to_owned(),
                                email: email.unwrap_or_default().to_owned(),
                                description: description.clone(),
                                members: BTreeSet::new(),
                                admins: admins.into_iter().filter_map(id_of).collect(),
                            })
                        }
                        Change::DeleteGroup { .. } => {
                            let id = observed.groups.get(group).map(|g| g.id.clone());
                            Op::Delete(id.unwrap_or_default())
                        }
                        _ => {
                            let id = observed.groups.get(group).map(|g| g.id.clone());
                            Op::Update(id.unwrap_or_default(), Delta::default())
                        }
                    };
                    calls.push(VinylDnsCall {
                        op,
                        group: group.clone(),
                        covers: Vec::new(),
                    });
                    index.insert(group.clone(), calls.len() - 1);
                    calls.len() - 1
                }
            };
            let call = &mut calls[slot];
            call.covers.push(i);
            match (&mut call.op, change) {
                (Op::Create(new), Change::AddMember { member, .. }) => {
                    new.members.extend(id_of(member.as_str()));
                }
                (Op::Update(_, d), Change::AddMember { member, .. }) => {
                    d.add.extend(id_of(member.as_str()));
                }
                (Op::Update(_, d), Change::RemoveMember { member, .. }) => {
                    d.remove.extend(id_of(member.as_str()));
                }
                (Op::Update(_, d), Change::UpdateGroup { fields, .. }) => {
                    let to = |k: &str| fields.get(k).map(|f| &f.to);
                    let text = |k: &str| to(k).and_then(Value::as_str).map(str::to_owned);
                    d.name = text("name");
                    d.email = text("email");
                    d.description = text("description");
                    if let Some(a) = to("admins").and_then(Value::as_array) {
                        d.admins = Some(
                            a.iter()
                                .filter_map(Value::as_str)
                                .filter_map(id_of)
                                .collect(),
                        );
                    }
                }
                // Creates, deletes and (never planned here) child changes carry nothing more.
                _ => {}
            }
        }
        calls
    }

    async fn send(&self, call: &VinylDnsCall) -> Result<Sent, CallError> {
        match &call.op {
            Op::Create(new) => self.create(call, new).await,
            Op::Update(id, delta) => self.update(call, id, delta).await,
            Op::Delete(id) => {
                let path = api::group(id);
                let resp = self
                    .request(
                        Method::DELETE,
                        &path,
                        &[],
                        None,
                        Some(&call.group),
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if resp.status() == StatusCode::NOT_FOUND {
                    Ok(Sent::AlreadyDone("already deleted".into()))
                } else {
                    Ok(Sent::Done)
                }
            }
        }
    }

    async fn recheck(&self, call: &VinylDnsCall) -> Result<Option<Sent>, CallError> {
        match &call.op {
            Op::Create(new) => match self.find_group(&call.group).await? {
                Some(have) => {
                    self.replace(&have, new, &call.group).await?;
                    Ok(Some(Sent::AlreadyDone(
                        "created by an earlier attempt; its members replaced".into(),
                    )))
                }
                None => Ok(None),
            },
            // Every other call is idempotent and is simply sent again.
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;

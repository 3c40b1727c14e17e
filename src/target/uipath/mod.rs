//! The UiPath Identity connector: local groups of an Automation Cloud or Automation Suite
//! organization.
//!
//! UiPath groups cannot nest and have no description. Membership is written as batched deltas:
//! one `PUT /api/Group/{groupId}` per changed group carries the rename (the name is always sent)
//! and every directory user id to add and to remove, so a group costs one call however many
//! members change. A new group's members ride along in its create (`POST`), whose body carries
//! the group's id: the service wants the client to choose it, so roster draws it once, when the
//! call is compiled. Every resend of that create carries the same id, which makes an ambiguous
//! failure easy to settle: the recheck reads the group by that id, and finds it exactly when an
//! earlier attempt landed. A duplicate-name answer (409, or 400 on servers that answer so) is
//! adopted, with a `PUT` adding the members the existing group lacks. Deleting a group that is
//! already gone (404) counts as done.
//!
//! Users are addressed by their directory `identifier`. Members read from the groups give theirs:
//! inline in the group when the service lists them there, else through the group's `/Members`
//! call, which gives ids only: a member no desired user resolves to is named through
//! `BulkResolve` (20 ids a call), or by its id when the directory does not know it. Only people are
//! roster's to manage: robots, applications and directory groups among the members are left
//! alone. Desired users not seen among members are looked up exactly with `BulkResolveByName`,
//! 20 names a call; a name it does not resolve (it compares names exactly, roster does not) is
//! looked up through the directory search, one search per name. Lookups are cached for the run.

pub mod api;
pub mod config;

pub use config::UiPathConfig;
pub(crate) use config::UiPathKeys;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::debug;
use uuid::Uuid;

use crate::config::Diagnostic;
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
    Target, problem,
};

use config::UserKeyField;

/// The `extras` key of UiPath attributes in the desired state; UiPath groups have none.
pub const TYPE: &str = "uipath";

/// What one call does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `POST /api/Group` with the new group's id and members.
    Create {
        /// The id the group is created with (chosen by roster, as the service requires); the same
        /// in every resend.
        id: String,
        /// The members' directory ids (sent with the create, or added to an adopted group).
        members: Vec<String>,
    },
    /// `PUT /api/Group/{id}`: rename and member deltas in one request.
    Update {
        /// The group's id.
        id: String,
        /// The name to send: the new one when renaming, else the current one.
        name: String,
        /// Directory ids to add.
        add: Vec<String>,
        /// Directory ids to remove.
        remove: Vec<String>,
    },
    /// `DELETE /api/Group/{partition}/{id}`.
    Delete {
        /// The group's id.
        id: String,
    },
}

/// One compiled UiPath call: the operation, the group, and the plan changes it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiPathCall {
    /// What to send.
    pub op: Op,
    group: GroupName,
    covers: Vec<usize>,
    /// Users whose directory id was not known at compile time; the call fails without sending.
    missing: Vec<UserKey>,
}

impl Call for UiPathCall {
    fn group(&self) -> &GroupName {
        &self.group
    }
    fn stage(&self) -> Stage {
        match self.op {
            Op::Create { .. } => Stage::CreateGroup,
            Op::Update { .. } => Stage::Members,
            Op::Delete { .. } => Stage::DeleteGroup,
        }
    }
    fn retry(&self) -> RetrySafety {
        match self.op {
            Op::Create { .. } => RetrySafety::AfterRecheck,
            _ => RetrySafety::Idempotent,
        }
    }
    fn covers(&self) -> &[usize] {
        &self.covers
    }
}

/// The UiPath Identity connector for one `[[target]]`.
pub struct UiPathTarget {
    name: String,
    base: String,
    identity: String,
    partition: String,
    client_id: String,
    session: BearerSession,
    user_key: UserKeyField,
    http: reqwest::Client,
    concurrency: NonZeroUsize,
    reads: RetryPolicy,
    /// Directory ids by folded user key (`None`: no such user), for the run.
    users: Mutex<HashMap<String, Option<String>>>,
}

impl std::fmt::Debug for UiPathTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiPathTarget")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("identity", &self.identity)
            .field("partition", &self.partition)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl UiPathTarget {
    /// A connector for `config`, sending with `http`, reading with up to `concurrency` calls at once.
    pub fn new(
        name: &str,
        config: &UiPathConfig,
        http: reqwest::Client,
        concurrency: NonZeroUsize,
    ) -> Self {
        Self {
            name: name.to_owned(),
            base: config.url.clone(),
            identity: config.identity_path.clone(),
            partition: config.partition_global_id.clone(),
            client_id: config.client_id.clone(),
            session: BearerSession::new(
                name,
                api::token(&config.identity_path),
                vec![
                    ("grant_type", FormValue::Plain("client_credentials".into())),
                    ("client_id", FormValue::Plain(config.client_id.clone())),
                    (
                        "client_secret",
                        FormValue::Secret(config.client_secret.clone()),
                    ),
                    ("scope", FormValue::Plain(config.scope.clone())),
                ],
                format!(
                    "check the client id, the secret and that the external application was \
                     granted the scope `{}`",
                    config.scope
                ),
            ),
            user_key: config.user_key,
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

    /// Sends one request with a bearer token; on a 401 renews the token once and sends again.
    /// Returns the response when its status is a success or listed in `accept`.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        group: Option<&GroupName>,
        accept: &[StatusCode],
    ) -> Result<reqwest::Response, CallError> {
        self.session
            .send(&self.http, &self.base, method, path, query, body, accept)
            .await
            .map_err(|f| self.err(&f.method, &f.path, group, f.kind))
    }

    /// A GET whose JSON answer is read as `T`, sent once: a send or recheck is retried by the
    /// executor, and an observe wraps its reads in `self.reads`.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
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
    }

    /// Every group of the organization (the list is a bare array, not paged).
    async fn list(&self) -> Result<Vec<api::GroupSummary>, CallError> {
        self.get_json(&api::groups(&self.identity, &self.partition), &[], None)
            .await
    }

    /// One group with its members.
    async fn detail(&self, id: &str, name: &GroupName) -> Result<api::GroupDetail, CallError> {
        self.get_json(
            &api::group(&self.identity, &self.partition, id),
            &[],
            Some(name),
        )
        .await
    }

    /// The user members of a group through its `/Members` call, every page: their ids. A server
    /// without the call (404) has nothing more to say than the group's own `members`: none.
    async fn member_ids(&self, id: &str, name: &GroupName) -> Result<Vec<String>, CallError> {
        let path = api::members(&self.identity, &self.partition, id);
        let top = api::MEMBERS_PAGE.to_string();
        let mut ids: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut skip = 0usize;
        loop {
            let skip_text = skip.to_string();
            let query = [("top", top.as_str()), ("skip", skip_text.as_str())];
            let resp = self
                .request(
                    Method::GET,
                    &path,
                    &query,
                    None,
                    Some(name),
                    &[StatusCode::NOT_FOUND],
                )
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                if skip == 0 {
                    return Ok(Vec::new());
                }
                return Err(self.err(&Method::GET, &path, Some(name), status_error(resp).await));
            }
            let page: api::MembersPage = resp.json().await.map_err(|e| {
                self.err(
                    &Method::GET,
                    &path,
                    Some(name),
                    CallErrorKind::Decode(e.to_string()),
                )
            })?;
            let got = page.results.len();
            for m in page.results {
                // Only people are roster's; every member counts towards the total, though.
                if seen.insert(m.id.to_lowercase()) && m.is_user() {
                    ids.push(m.id);
                }
            }
            skip += got;
            if got == 0 || seen.len() >= page.total_count {
                if seen.len() < page.total_count {
                    return Err(self.err(
                        &Method::GET,
                        &path,
                        Some(name),
                        CallErrorKind::Decode(format!(
                            "listed {} of the {} members it counts",
                            seen.len(),
                            page.total_count
                        )),
                    ));
                }
                return Ok(ids);
            }
        }
    }

    /// A group's current name and the ids of its user members (lower case), from the group
    /// itself or, when it lists none there, from its `/Members` call.
    async fn current(
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
    async fn find(&self, name: &GroupName) -> Result<Option<api::GroupSummary>, CallError> {
        let key = fold(name.as_str(), true);
        let all = self.list().await?;
        Ok(all
            .iter()
            .find(|g| g.name == name.as_str())
            .or_else(|| all.iter().find(|g| fold(&g.name, true) == key))
            .cloned())
    }

    /// A member's user key, as the config says keys are matched (its identifier when the member
    /// has no such field, so that it can still be removed).
    fn member_key(&self, m: &api::Member) -> String {
        let key = match self.user_key {
            UserKeyField::Username => m.name.as_deref(),
            UserKeyField::Email => m.email.as_deref(),
        };
        key.filter(|k| !k.is_empty())
            .unwrap_or(&m.identifier)
            .to_owned()
    }

    /// Whether a directory entity is the user `key` names: a user whose configured key field
    /// equals it, regardless of case.
    fn is_user_named(&self, e: &api::SearchEntity, key: &str) -> bool {
        let field = match self.user_key {
            UserKeyField::Username => e.user_name(),
            UserKeyField::Email => e.email.as_deref(),
        };
        e.is_user() && field.is_some_and(|f| f.eq_ignore_ascii_case(key))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
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
            .reads
            .retry_idempotent(|| async {
                let resp = self
                    .request(Method::POST, &path, &[], Some(&body), None, &[])
                    .await?;
                resp.json().await.map_err(|e| {
                    self.err(
                        &Method::POST,
                        &path,
                        None,
                        CallErrorKind::Decode(e.to_string()),
                    )
                })
            })
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
                    self.reads
                        .retry_idempotent(|| async {
                            let resp = self
                                .request(Method::POST, path, &[], Some(&body), None, &[])
                                .await?;
                            resp.json().await.map_err(|e| {
                                self.err(
                                    &Method::POST,
                                    path,
                                    None,
                                    CallErrorKind::Decode(e.to_string()),
                                )
                            })
                        })
                        .await
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
                Some((id.to_lowercase(), UserKey(self.member_key(&m))))
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
            ("startsWith", key.as_str()),
            ("sourceFilter", api::USER_SOURCES[0]),
            ("sourceFilter", api::USER_SOURCES[1]),
        ];
        let found: Vec<api::SearchEntity> = self
            .reads
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
    /// members' (key, id), and the ids of members known by id only (from the `/Members` call).
    async fn observe_group(
        &self,
        g: api::GroupSummary,
    ) -> Result<(ObservedGroup, Vec<(String, String)>, Vec<String>), ObserveError> {
        let name = GroupName(g.name.clone());
        let kind = if g.kind == api::BUILT_IN {
            GroupKind::System
        } else {
            GroupKind::Managed
        };
        let mut group = Group::named(g.name.clone());
        let mut ids = Vec::new();
        let mut anonymous = Vec::new();
        // Built-in groups are never changed, so their members need no read.
        if kind == GroupKind::Managed {
            let detail = self
                .reads
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
                // Some servers list members only through the group's `/Members` call.
                anonymous = self
                    .reads
                    .retry_idempotent(|| self.member_ids(&g.id, &name))
                    .await?;
            }
            for m in inline.iter().filter(|m| m.is_user()) {
                let key = self.member_key(m);
                ids.push((key.clone(), m.identifier.clone()));
                group.members.insert(UserKey(key));
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
        ))
    }

    /// The PUT of an update, and on a 400 (a server that refuses to add a member twice or to
    /// remove a non-member) a fresh read and one PUT of what is still left to do.
    async fn update(
        &self,
        call: &UiPathCall,
        id: &str,
        name: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        let path = api::update(&self.identity, id);
        let body = api::update_body(&self.partition, name, add, remove);
        let resp = self
            .request(
                Method::PUT,
                &path,
                &[],
                Some(&body),
                g,
                &[StatusCode::BAD_REQUEST],
            )
            .await?;
        if resp.status() != StatusCode::BAD_REQUEST {
            return Ok(Sent::Done);
        }
        let refusal = self.err(&Method::PUT, &path, g, status_error(resp).await);
        let (now_name, have) = self.current(id, &call.group).await?;
        let add_left: Vec<String> = add
            .iter()
            .filter(|a| !have.contains(&a.to_lowercase()))
            .cloned()
            .collect();
        let remove_left: Vec<String> = remove
            .iter()
            .filter(|r| have.contains(&r.to_lowercase()))
            .cloned()
            .collect();
        if add_left.len() == add.len() && remove_left.len() == remove.len() {
            return Err(refusal);
        }
        if add_left.is_empty() && remove_left.is_empty() && now_name == name {
            return Ok(Sent::AlreadyDone("members already as desired".into()));
        }
        let body = api::update_body(&self.partition, name, &add_left, &remove_left);
        self.request(Method::PUT, &path, &[], Some(&body), g, &[])
            .await?;
        Ok(Sent::AlreadyDone(
            "partly done already; the rest applied".into(),
        ))
    }

    /// Adopts the existing group `id` for a create: adds the members it lacks (never removes:
    /// the next plan shows any other difference).
    async fn adopt(
        &self,
        call: &UiPathCall,
        id: &str,
        members: &[String],
        why: &str,
    ) -> Result<Sent, CallError> {
        let (name, have) = self.current(id, &call.group).await?;
        let add: Vec<String> = members
            .iter()
            .filter(|m| !have.contains(&m.to_lowercase()))
            .cloned()
            .collect();
        if !add.is_empty() {
            let path = api::update(&self.identity, id);
            let body = api::update_body(&self.partition, &name, &add, &[]);
            self.request(Method::PUT, &path, &[], Some(&body), Some(&call.group), &[])
                .await?;
        }
        Ok(Sent::AlreadyDone(why.to_owned()))
    }
}

impl Named for UiPathTarget {
    fn target_name(&self) -> &str {
        &self.name
    }
}

impl Target for UiPathTarget {
    type Call = UiPathCall;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            nested_groups: false,
            membership: MembershipWrites::AddRemoveBatch,
            case_insensitive_names: true,
            renames: true,
        }
    }

    /// UiPath groups have no description: descriptions are dropped (nothing is planned for
    /// them). `[group.uipath]` attributes are refused, since UiPath has none.
    fn prepare<'d>(
        &self,
        desired: &'d Desired,
        scope: &Scope,
    ) -> Result<Cow<'d, Desired>, Vec<Diagnostic>> {
        let problems: Vec<Diagnostic> = desired
            .groups
            .iter()
            .filter(|(name, g)| {
                scope.contains(name) && g.extras.get(TYPE).is_some_and(|a| !a.is_empty())
            })
            .map(|(name, _)| {
                problem(
                    desired,
                    name,
                    format!(
                        "group \"{name}\": UiPath groups have no attributes; remove [group.uipath]"
                    ),
                )
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        if desired.groups.values().all(|g| g.description.is_none()) {
            return Ok(Cow::Borrowed(desired));
        }
        let mut d = desired.clone();
        for g in d.groups.values_mut() {
            g.description = None;
        }
        Ok(Cow::Owned(d))
    }

    /// Refuses at plan time what the service refuses on a write: a blank group name (the name
    /// is required), a create or rename onto a name another group already has (names are
    /// unique regardless of case: the write is refused, and a create answered so would take
    /// over a group outside roster's scope), and any change to a built-in group (type 0).
    fn vet(
        &self,
        desired: &Desired,
        observed: &Observed,
        plan: &Plan,
    ) -> impl Future<Output = Result<Vec<Rejection>, ObserveError>> + Send {
        let _ = desired;
        std::future::ready(Ok(vet(observed, plan)))
    }

    async fn observe(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        let mut observed = Observed::default();
        let mut in_scope = Vec::new();
        let mut seen = BTreeSet::new();
        let path = api::groups(&self.identity, &self.partition);
        for g in self.reads.retry_idempotent(|| self.list()).await? {
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
        type Read = (ObservedGroup, Vec<(String, String)>, Vec<String>);
        let groups: Vec<Read> = futures::stream::iter(in_scope)
            .map(|g| self.observe_group(g))
            .buffer_unordered(self.concurrency.get())
            .try_collect()
            .await?;
        let mut seen_keys: BTreeSet<String> = BTreeSet::new();
        for (_, ids, _) in &groups {
            for (key, _) in ids {
                seen_keys.insert(fold(key, true));
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
            .flat_map(|(_, _, anonymous)| anonymous)
            .filter(|id| !key_of_id.contains_key(&id.to_lowercase()))
            .cloned()
            .collect();
        strangers.sort_by_key(|id| id.to_lowercase());
        strangers.dedup_by_key(|id| id.to_lowercase());
        key_of_id.extend(self.names_of(strangers).await.map_err(ObserveError::from)?);
        for (mut g, ids, anonymous) in groups {
            for (key, id) in ids {
                observed.users.insert(UserKey(key), id);
            }
            for id in anonymous {
                let key = key_of_id
                    .get(&id.to_lowercase())
                    .cloned()
                    .unwrap_or_else(|| UserKey(id.clone()));
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

    fn compile(&self, plan: &Plan, observed: &Observed) -> Vec<UiPathCall> {
        let ids: HashMap<String, &String> = observed
            .users
            .iter()
            .map(|(k, v)| (fold(k.as_str(), true), v))
            .collect();
        // The changes of each group, in plan order (the plan is already grouped by group).
        let mut order: Vec<GroupName> = Vec::new();
        let mut by_group: HashMap<GroupName, Vec<(usize, &Change)>> = HashMap::new();
        for (i, c) in plan.changes.iter().enumerate() {
            let g = c.group().clone();
            if !by_group.contains_key(&g) {
                order.push(g.clone());
            }
            by_group.entry(g).or_default().push((i, c));
        }
        let mut calls = Vec::new();
        for group in order {
            let changes = by_group.remove(&group).unwrap_or_default();
            let covers: Vec<usize> = changes.iter().map(|(i, _)| *i).collect();
            let mut missing = Vec::new();
            let mut id_of = |u: &UserKey| match ids.get(&fold(u.as_str(), true)) {
                Some(id) => Some((*id).clone()),
                None => {
                    missing.push(u.clone());
                    None
                }
            };
            let (mut add, mut remove) = (Vec::new(), Vec::new());
            let (mut create, mut delete, mut rename) = (false, false, None);
            for (_, c) in &changes {
                match c {
                    Change::CreateGroup { .. } => create = true,
                    Change::DeleteGroup { .. } => delete = true,
                    Change::UpdateGroup { fields, .. } => {
                        rename = fields
                            .get("name")
                            .and_then(|f| f.to.as_str().map(str::to_owned));
                    }
                    Change::AddMember { member, .. } => add.extend(id_of(member)),
                    Change::RemoveMember { member, .. } => remove.extend(id_of(member)),
                    // UiPath cannot nest: the planner flattened children into members.
                    Change::AddChild { .. } | Change::RemoveChild { .. } => {}
                }
            }
            let have = observed.groups.get(&group);
            let op = if create {
                // The id is drawn here, once, so that every resend of this create and its
                // recheck name the same group.
                Op::Create {
                    id: Uuid::new_v4().to_string(),
                    members: add,
                }
            } else if delete {
                Op::Delete {
                    id: have.map(|g| g.id.clone()).unwrap_or_default(),
                }
            } else {
                Op::Update {
                    id: have.map(|g| g.id.clone()).unwrap_or_default(),
                    name: rename.unwrap_or_else(|| {
                        have.map_or_else(|| group.to_string(), |g| g.group.name.to_string())
                    }),
                    add,
                    remove,
                }
            };
            calls.push(UiPathCall {
                op,
                group,
                covers,
                missing,
            });
        }
        calls
    }

    async fn send(&self, call: &UiPathCall) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        if !call.missing.is_empty() {
            let (method, path) = match &call.op {
                Op::Create { .. } => (Method::POST, api::create(&self.identity)),
                Op::Update { id, .. } => (Method::PUT, api::update(&self.identity, id)),
                Op::Delete { id } => (
                    Method::DELETE,
                    api::group(&self.identity, &self.partition, id),
                ),
            };
            let users: Vec<&str> = call.missing.iter().map(UserKey::as_str).collect();
            return Err(self.err(
                &method,
                &path,
                g,
                CallErrorKind::Decode(format!(
                    "no directory id for {}; nothing sent",
                    users.join(", ")
                )),
            ));
        }
        match &call.op {
            Op::Create { id, members } => {
                let path = api::create(&self.identity);
                let body = api::create_body(id, &self.partition, call.group.as_str(), members);
                let resp = self
                    .request(
                        Method::POST,
                        &path,
                        &[],
                        Some(&body),
                        g,
                        &[StatusCode::CONFLICT, StatusCode::BAD_REQUEST],
                    )
                    .await?;
                let status = resp.status();
                if status.is_success() {
                    return Ok(Sent::Done);
                }
                // A duplicate name is 409 on some servers and 400 on others: adopt the group
                // when one of that name exists, else it is the error it says.
                let refusal = self.err(&Method::POST, &path, g, status_error(resp).await);
                match self.find(&call.group).await? {
                    Some(found) => {
                        self.adopt(call, &found.id, members, "group already existed; adopted")
                            .await
                    }
                    None => Err(refusal),
                }
            }
            Op::Update {
                id,
                name,
                add,
                remove,
            } => self.update(call, id, name, add, remove).await,
            Op::Delete { id } => {
                let path = api::group(&self.identity, &self.partition, id);
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
                Ok(if resp.status() == StatusCode::NOT_FOUND {
                    Sent::AlreadyDone("already deleted".into())
                } else {
                    Sent::Done
                })
            }
        }
    }

    async fn recheck(&self, call: &UiPathCall) -> Result<Option<Sent>, CallError> {
        match &call.op {
            // The group was created exactly when a group of the id it was sent with exists.
            Op::Create { id, members } => {
                let path = api::group(&self.identity, &self.partition, id);
                let resp = self
                    .request(
                        Method::GET,
                        &path,
                        &[],
                        None,
                        Some(&call.group),
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if resp.status() == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                self.adopt(call, id, members, "created by an earlier attempt")
                    .await
                    .map(Some)
            }
            // Every other call is idempotent and is simply sent again.
            _ => Ok(None),
        }
    }
}

/// The rules of [`UiPathTarget::vet`], over what was read.
fn vet(observed: &Observed, plan: &Plan) -> Vec<Rejection> {
    // Every group the target has: (folded name, name, id when in scope).
    let existing: Vec<(String, &str, Option<&str>)> = observed
        .groups
        .values()
        .map(|g| {
            let name = g.group.name.as_str();
            (fold(name, true), name, Some(g.id.as_str()))
        })
        .chain(
            observed
                .others
                .iter()
                .map(|n| (fold(n.as_str(), true), n.as_str(), None)),
        )
        .collect();
    let mut out = Vec::new();
    for (i, c) in plan.changes.iter().enumerate() {
        let group = c.group();
        let have = observed.groups.get(group);
        if have.is_some_and(|g| g.kind == GroupKind::System) {
            out.extend(Rejection::of_change(
                plan,
                i,
                format!("\"{group}\" is a built-in UiPath group, which cannot be changed"),
            ));
            continue;
        }
        let (verb, name) = match c {
            Change::CreateGroup { group, .. } => ("create", Some(group.as_str())),
            Change::UpdateGroup { fields, .. } => {
                ("rename", fields.get("name").and_then(|f| f.to.as_str()))
            }
            _ => continue,
        };
        let Some(name) = name else { continue };
        if name.trim().is_empty() {
            out.extend(Rejection::of_change(
                plan,
                i,
                "UiPath requires a group name; it cannot be blank".to_owned(),
            ));
            continue;
        }
        let own = have.map(|g| g.id.as_str());
        let key = fold(name, true);
        if let Some((_, other, id)) = existing
            .iter()
            .find(|(k, _, id)| *k == key && (id.is_none() || *id != own))
        {
            let outside = if id.is_none() {
                " (outside roster's scope)"
            } else {
                ""
            };
            out.extend(Rejection::of_change(
                plan,
                i,
                format!(
                    "UiPath already has a group named \"{other}\"{outside}, and group names are \
                     unique regardless of case: the {verb} would be refused; rename or remove \
                     one of them"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

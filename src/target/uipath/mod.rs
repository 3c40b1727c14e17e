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
//!
//! The connector is split by what a run does with it: [`read`] observes and looks up,
//! [`vet`] refuses at plan time what the service would refuse, [`write`] compiles and sends.

pub mod api;
pub mod config;
mod read;
mod vet;
mod write;

pub use config::UiPathConfig;
pub(crate) use config::UiPathKeys;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Diagnostic;
use crate::model::{Capabilities, Desired, GroupName, MembershipWrites, Observed, UserKey};
use crate::plan::Scope;
use crate::plan::change::Plan;
use crate::retry::RetryPolicy;
use crate::target::http::endpoint::{Endpoint, Failure, Reply, Req};
use crate::target::http::pace::Pacer;
use crate::target::oauth::{BearerSession, FormValue};
use crate::target::{
    Call, CallError, Named, ObserveError, Rejection, RetrySafety, Sent, Stage, Target, problem,
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
    identity: String,
    partition: String,
    client_id: String,
    /// The Identity API, authorised by a bearer token from its token endpoint.
    endpoint: Endpoint<BearerSession>,
    user_key: UserKeyField,
    concurrency: NonZeroUsize,
    /// Directory ids by folded user key (`None`: no such user), for the run.
    users: Mutex<HashMap<String, Option<String>>>,
}

impl std::fmt::Debug for UiPathTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiPathTarget")
            .field("name", &self.name)
            .field("base", &self.endpoint.base())
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
        let session = BearerSession::new(
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
        );
        Self {
            name: name.to_owned(),
            identity: config.identity_path.clone(),
            partition: config.partition_global_id.clone(),
            client_id: config.client_id.clone(),
            endpoint: Endpoint::new(name, &config.url, http, session),
            user_key: config.user_key,
            concurrency,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Retries transient read failures of an observe under `reads`, and paces every API call at
    /// `pacer` (the target's `rate_limit`).
    pub fn with_calls(mut self, reads: RetryPolicy, pacer: Arc<Pacer>) -> Self {
        self.endpoint = self.endpoint.with_read_retries(reads).with_pacer(pacer);
        self
    }

    /// A failed request of this target, about `group`.
    fn failed(&self, f: Failure, group: Option<&GroupName>) -> CallError {
        self.err(&f.method, &f.path, group, f.kind)
    }

    /// Sends one request, once, with a bearer token (renewed once on a 401). Returns the
    /// answer when its status is a success or listed in `accept`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        group: Option<&GroupName>,
        accept: &[StatusCode],
    ) -> Result<Reply, CallError> {
        let mut req = Req::new(method, path).query(query).accept(accept);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.endpoint
            .send(&req)
            .await
            .map_err(|f| self.failed(f, group))
    }

    /// The JSON body of `reply` to `method path`.
    #[allow(clippy::result_large_err)]
    fn decode<T: DeserializeOwned>(
        &self,
        reply: &Reply,
        method: &Method,
        path: &str,
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        reply.json().map_err(|k| self.err(method, path, group, k))
    }

    /// A read of an observe as JSON (a `POST` lookup too), sent again after transient failures
    /// as the read policy allows.
    async fn read<T: DeserializeOwned>(&self, req: &Req<'_>) -> Result<T, CallError> {
        self.endpoint
            .read(req)
            .await
            .map_err(|f| self.failed(f, None))
    }

    /// A GET whose JSON answer is read as `T`, sent once: a send or recheck is retried by the
    /// executor, and an observe wraps its reads in the endpoint's read policy.
    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        let reply = self
            .call(Method::GET, path, query, None, group, &[])
            .await?;
        self.decode(&reply, &Method::GET, path, group)
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
        std::future::ready(Ok(vet::rejections(observed, plan)))
    }

    async fn observe(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        self.observe_all(scope, users).await
    }

    fn compile(&self, plan: &Plan, observed: &Observed) -> Vec<UiPathCall> {
        write::compile(plan, observed)
    }

    async fn send(&self, call: &UiPathCall) -> Result<Sent, CallError> {
        self.send_call(call).await
    }

    async fn recheck(&self, call: &UiPathCall) -> Result<Option<Sent>, CallError> {
        self.recheck_call(call).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

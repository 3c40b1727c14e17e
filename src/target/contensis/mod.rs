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
//!
//! The connector is split by what a run does with it: [`read`] observes, [`vet`] refuses at
//! plan time what the server would refuse, [`write`] compiles and sends the calls.

pub mod api;
pub mod config;
mod read;
mod vet;
mod write;

pub use config::ContensisConfig;
pub(crate) use config::ContensisKeys;

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::model::{Capabilities, Desired, GroupName, MembershipWrites, Observed, UserKey};
use crate::plan::change::Plan;
use crate::plan::{Scope, fold};
use crate::retry::RetryPolicy;
use crate::target::http::endpoint::{Endpoint, Failure, Reply, Req};
use crate::target::http::pace::Pacer;
use crate::target::http::paging::{self, Counted, Paged};
use crate::target::oauth::{BearerSession, FormValue};
use crate::target::{
    Call, CallError, CallErrorKind, Named, ObserveError, Rejection, RetrySafety, Sent, Stage,
    Target,
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
    /// `POST /api/security/groups`: create a group with this body.
    Create(Value),
    /// `GET` then `PUT /api/security/groups/{group}`: read the group and put it back with these
    /// fields (by wire name) replaced.
    Update(GroupRef, Map<String, Value>),
    /// `POST /api/security/groups/{group}/users`: add these users, as (user key, GUID), in one
    /// call.
    AddMembers(GroupRef, Vec<(UserKey, String)>),
    /// `PUT /api/security/groups/{group}/users/{user}`: add one user by username (only for a
    /// user whose GUID is unknown).
    AddMember(GroupRef, String),
    /// `DELETE /api/security/groups/{group}/users/{user}`: remove a user.
    RemoveMember(GroupRef, String),
    /// `POST /api/security/groups/{group}/groups`: add these child groups in one call.
    AddChildren(GroupRef, Vec<(GroupName, GroupRef)>),
    /// `DELETE /api/security/groups/{group}/groups/{child}`: remove a child group.
    RemoveChild(GroupRef, GroupRef),
    /// `DELETE /api/security/groups/{group}`: delete a group.
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
    auth: ContensisAuth,
    /// The Management API, authorised by a bearer token from its token endpoint.
    endpoint: Endpoint<BearerSession>,
    concurrency: NonZeroUsize,
    /// GUIDs by folded group name: filled by observe and by creates, read when a call is sent.
    ids: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for ContensisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContensisTarget")
            .field("name", &self.name)
            .field("base", &self.endpoint.base())
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
            auth: config.auth.clone(),
            endpoint: Endpoint::new(name, &config.url, http, session(name, config)),
            concurrency,
            ids: Mutex::new(HashMap::new()),
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
        // Every group call needs the same right; say which, since the server's 403 message may
        // not.
        let kind = match f.kind {
            CallErrorKind::Status { status: 403, .. } => with_note(
                f.kind,
                "the account must be a member of the System Administrators group",
            ),
            other => other,
        };
        self.err(&f.method, &f.path, group, kind)
    }

    /// Sends one request, once, with the bearer token (renewed once on a 401). Returns the
    /// answer when its status is a success or listed in `accept`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        group: Option<&GroupName>,
        accept: &[StatusCode],
    ) -> Result<Reply, CallError> {
        let mut req = Req::new(method, path).accept(accept);
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

    /// A read as JSON, sent again after transient failures as the read policy allows.
    async fn read<T: DeserializeOwned>(
        &self,
        req: &Req<'_>,
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        self.endpoint
            .read(req)
            .await
            .map_err(|f| self.failed(f, group))
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
        // The next page index, and once a page said it was the last, the total it gave: the
        // list ends there even when it is short (it is then read again, never continued past
        // `pageCount`).
        let at: &Mutex<(u64, Option<u64>)> = &Mutex::new((0, None));
        let page = |offset: u64| async move {
            let index = {
                let mut at = at.lock().unwrap_or_else(|e| e.into_inner());
                if offset == 0 {
                    *at = (0, None);
                }
                if let Some(total) = at.1 {
                    return Ok(Counted {
                        items: Vec::new(),
                        total,
                    });
                }
                at.0
            };
            let mut q = vec![
                ("pageIndex", index.to_string()),
                ("pageSize", PAGE_SIZE.to_string()),
            ];
            q.extend(extra.iter().cloned());
            let page: api::PagedList = self.read(&Req::get(path).query(&q), group).await?;
            if page.page_index != index {
                return Err(Paged::Incomplete(format!(
                    "GET {path} asked for page {index} and got page {}",
                    page.page_index
                )));
            }
            let mut at = at.lock().unwrap_or_else(|e| e.into_inner());
            at.0 = index + 1;
            if at.0 >= page.page_count {
                at.1 = Some(page.total_count);
            }
            Ok(Counted {
                items: page.items,
                total: page.total_count,
            })
        };
        paging::counted(&format!("GET {path}"), "totalCount", page)
            .await
            .map_err(|e| match e {
                Paged::Failed(e) => ObserveError::Call(e),
                Paged::Incomplete(m) => self.incomplete(m),
            })
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
        self.observe_all(scope, users).await
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
        let mut refused = vet::field_rejections(plan);
        refused.extend(self.cycles(observed, plan).await?);
        Ok(refused)
    }

    fn compile(&self, plan: &Plan, observed: &Observed) -> Vec<ContensisCall> {
        write::compile(plan, observed)
    }

    async fn send(&self, call: &ContensisCall) -> Result<Sent, CallError> {
        self.send_call(call).await
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

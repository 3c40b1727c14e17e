//! The Crafter Studio connector: Studio's groups and their members, through API 2 (Studio 4.0.0
//! and later, global groups, an access token) or API 1 (Studio 3.0, groups per site). Studio
//! 3.1 is neither: it has no access tokens, and its API 1 group calls are retired.
//!
//! API 2 (Studio 4.0.0 and later, with an access token) writes membership in bulk: one
//! `POST …/members` adds every new member of a group, by user id, and `DELETE …/members?userId=…`
//! removes old ones by id, in as few requests as keep each request line well inside Tomcat's
//! 8 KB limit on a request's line and headers. Both are idempotent (adding a member twice or
//! removing a non-member is a no-op). Adding members is all-or-nothing on unknown users, and
//! Studio's lookup of one user also finds soft-deleted users, whom an add would put in a group
//! where no list ever shows them; so desired users not already seen as members are resolved against the user list,
//! which leaves deleted users out, and an unknown one becomes a plan warning instead of a failed
//! add. A username that breaks Studio's rule (`^[a-zA-Z][\w.\-@+]+$`) cannot exist and is
//! unknown without a call. [`Target::vet`] refuses at plan time what Studio would refuse on a
//! write: a create whose name breaks `^[a-zA-Z][\w.\-]*$` or 3 to 512 characters, a description
//! over 1,024 characters. A create is a POST: after an ambiguous failure, or a 409, the group is
//! looked up by name (`keyword`, then an exact match) and adopted, never made twice. An update
//! sends the group's current name with its id and description: Studio 4.0.0 to 4.0.2 replace
//! both (a missing name would fail the update), 4.0.3 and later take `{id, desc}` and ignore the
//! name; a 4.0.3+ that refused the unknown field is sent `{id, desc}` again, and from then on.
//!
//! API 1 (Studio 3.0, a login session) writes one member per call, and its answers are not
//! idempotent: adding a member twice is 409 "User already in group", removing a non-member is
//! 404 "User not found". Both are read as the outcomes they are (the latter after checking that
//! the group still exists). It has no user lookup, so an unknown user shows up only as a failed
//! add that names the user. Its `utf8` columns hold names of 1 to 255 characters and descriptions
//! of 3,000, none beyond the Basic Multilingual Plane: `vet` refuses the rest.
//!
//! Redirects are never followed: Studio 3.1 answers its retired API 1 group calls with `301`
//! "API deprecated.", which roster reports as the error it is (and a token sent to its API 2 is
//! ignored: a 401 that names the version).

pub mod api;
mod auth;
pub mod config;
mod read;
mod vet;
mod write;

pub use config::CrafterConfig;
pub(crate) use config::CrafterKeys;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Diagnostic;
use crate::model::{Capabilities, Desired, GroupName, MembershipWrites, Observed, UserKey};
use crate::plan::change::Plan;
use crate::plan::{Scope, fold};
use crate::retry::RetryPolicy;
use crate::target::http::endpoint::{Endpoint, Failure, Reply, Req};
use crate::target::http::pace::Pacer;
use crate::target::http::paging::{self, Counted, Paged};
use crate::target::{
    Call, CallError, CallErrorKind, Named, ObserveError, Rejection, RetrySafety, Sent, Stage,
    Target, problem,
};

use auth::StudioAuth;
use config::CrafterApi;

/// The `extras` key of Crafter Studio attributes in the desired state; Crafter takes none.
pub const TYPE: &str = "crafter";

/// Group names are compared without regard to case: Studio's database collation ignores it.
const CASE_INSENSITIVE: bool = true;

/// Why Studio 3.0 refuses a name or description with characters beyond the Basic Multilingual
/// Plane.
const V1_BEYOND_BMP: &str = "Studio 3.0 stores text as MySQL `utf8`, which holds no character \
                             beyond the Basic Multilingual Plane (such as an emoji)";

/// Members asked for per page of a group's members (and groups per page of API 1's list).
const PAGE_SIZE: u32 = 100;

/// Groups asked for per page of API 2's group list (Studio sets no maximum; a group is about 150
/// bytes of JSON): 20,000 groups are 20 calls.
const GROUP_PAGE_SIZE: u32 = 1000;

/// Users asked for per page of the user list (Studio sets no maximum; a user is about 200
/// bytes of JSON).
const USER_PAGE_SIZE: u32 = 1000;

/// How a call names a group: by id once known, else by name (a group created in this run, whose
/// id is looked up when the call is sent). API 1 always uses names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRef {
    /// The group's numeric id (API 2).
    Id(String),
    /// The group's name.
    Name(GroupName),
}

/// One Crafter Studio API call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `POST /api/2/groups` or API 1 `create.json`.
    Create {
        /// The description, when the desired state sets one.
        desc: Option<String>,
    },
    /// `PATCH /api/2/groups` or API 1 `update.json`: the description is replaced, so it is
    /// always sent (with the group's current name, which Studio 4.0.0 to 4.0.2 replace too).
    Update {
        /// The group.
        group: GroupRef,
        /// The new description.
        desc: String,
    },
    /// `POST /api/2/groups/{id}/members`: add these users in one call (API 2).
    AddMembers {
        /// The group.
        group: GroupRef,
        /// The users.
        users: Vec<Member>,
    },
    /// `DELETE /api/2/groups/{id}/members?userId=…`: remove these users in one call (API 2); a
    /// group losing more members than one request line holds gets several.
    RemoveMembers {
        /// The group.
        group: GroupRef,
        /// The users, as the target spells them.
        users: Vec<Member>,
    },
    /// API 1 `add-user.json`: add one user.
    AddMember(String),
    /// API 1 `remove-user.json`: remove one user.
    RemoveMember(String),
    /// `DELETE /api/2/groups?id=…` or API 1 `delete.json`.
    Delete(GroupRef),
}

/// A user in a bulk membership call: sent by id when the read found one (ids are not held to
/// the username rule), else by username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The username.
    pub username: String,
    /// Studio's id of the user, when known.
    pub id: Option<i64>,
}

impl Member {
    /// The query pair that names this user in a bulk remove (`DELETE …/members`).
    fn query_pair(&self) -> (&'static str, String) {
        match self.id {
            Some(id) => ("userId", id.to_string()),
            None => ("username", self.username.clone()),
        }
    }
}

/// Tomcat's default `maxHttpHeaderSize`: a request whose line and headers together are longer
/// is refused with `400` before Studio sees it.
const TOMCAT_HEAD_LIMIT: usize = 8 * 1024;
/// What a request's line may not use of that: roster's other headers (host, accept, user agent)
/// and room for those a proxy adds.
const HEAD_RESERVE: usize = 1536;
/// Longest request line roster sends (method, path and query), whatever the token.
const MAX_REQUEST_LINE: usize = 6 * 1024;
/// Shortest line budget, for a token so long that little else fits.
const MIN_REQUEST_LINE: usize = 1024;

/// A compiled call: the operation, the group it is about, and the plan changes it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrafterCall {
    /// What to send.
    pub op: Op,
    group: GroupName,
    covers: Vec<usize>,
}

impl Call for CrafterCall {
    fn group(&self) -> &GroupName {
        &self.group
    }
    fn stage(&self) -> Stage {
        match self.op {
            Op::Create { .. } => Stage::CreateGroup,
            Op::Update { .. } => Stage::UpdateGroup,
            Op::AddMembers { .. }
            | Op::RemoveMembers { .. }
            | Op::AddMember(_)
            | Op::RemoveMember(_) => Stage::Members,
            Op::Delete(_) => Stage::DeleteGroup,
        }
    }
    fn retry(&self) -> RetrySafety {
        match self.op {
            // A POST that creates: checked by name before it is sent again.
            Op::Create { .. } => RetrySafety::AfterRecheck,
            // Bulk add/remove are no-ops when repeated; API 1's 409/404 answers to a repeat are
            // read as "already done"; a delete's 404 likewise.
            _ => RetrySafety::Idempotent,
        }
    }
    fn covers(&self) -> &[usize] {
        &self.covers
    }
}

/// The Crafter Studio connector for one `[[target]]`.
pub struct CrafterTarget {
    name: String,
    api: CrafterApi,
    concurrency: NonZeroUsize,
    /// Studio's API, authorised by the configured API's credentials.
    endpoint: Endpoint<StudioAuth>,
    /// API 2: group ids by folded name, filled by observe and by creates.
    ids: Mutex<HashMap<String, String>>,
    /// API 2: this Studio refused the name in an update (4.0.3 and later, strict about unknown
    /// fields), so updates go without it.
    patch_without_name: AtomicBool,
    /// The bytes of the request line that are not the query: the method, the configured URL's
    /// path and the longest API path, with room to spare.
    line_overhead: usize,
    /// The longest request line roster sends: what Tomcat's limit leaves beside the
    /// `Authorization` header and the others, at most [`MAX_REQUEST_LINE`].
    line_budget: usize,
}

impl std::fmt::Debug for CrafterTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrafterTarget")
            .field("name", &self.name)
            .field("base", &self.endpoint.base())
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl CrafterTarget {
    /// A connector for `config`, sending with `http`, reading with up to `concurrency` calls at once.
    pub fn new(
        name: &str,
        config: &CrafterConfig,
        http: reqwest::Client,
        concurrency: NonZeroUsize,
    ) -> Self {
        let auth = match &config.api {
            CrafterApi::V2 { token } => StudioAuth::token(token.clone()),
            CrafterApi::V1 {
                username, password, ..
            } => StudioAuth::login(username, password.clone()),
        };
        Self {
            name: name.to_owned(),
            api: config.api.clone(),
            concurrency,
            endpoint: Endpoint::new(name, &config.url, http, auth),
            ids: Mutex::new(HashMap::new()),
            patch_without_name: AtomicBool::new(false),
            line_overhead: reqwest::Url::parse(&config.url)
                .map_or(config.url.len(), |u| u.path().len())
                + "DELETE ".len()
                + api::members(&i64::MAX.to_string()).len()
                + " HTTP/1.1".len(),
            line_budget: Self::line_budget(&config.api),
        }
    }

    /// The longest request line that fits Tomcat's limit beside the credentials' header.
    fn line_budget(api: &CrafterApi) -> usize {
        let credentials = match api {
            CrafterApi::V2 { token } => "authorization: Bearer \r\n".len() + token.expose().len(),
            // API 1 writes carry no query lists.
            CrafterApi::V1 { .. } => 0,
        };
        TOMCAT_HEAD_LIMIT
            .saturating_sub(HEAD_RESERVE + credentials)
            .clamp(MIN_REQUEST_LINE, MAX_REQUEST_LINE)
    }

    /// Retries transient read failures of an observe under `reads`, and paces every API call at
    /// `pacer` (the target's `rate_limit`).
    pub fn with_calls(mut self, reads: RetryPolicy, pacer: Arc<Pacer>) -> Self {
        self.endpoint = self.endpoint.with_read_retries(reads).with_pacer(pacer);
        self
    }

    fn v1_site(&self) -> Option<&str> {
        match &self.api {
            CrafterApi::V1 { site_id, .. } => Some(site_id),
            CrafterApi::V2 { .. } => None,
        }
    }

    /// A failed request of this target, about `group` (a failed login is about no group).
    fn failed(&self, f: Failure, group: Option<&GroupName>) -> CallError {
        let group = group.filter(|_| f.path != api::V1_LOGIN);
        self.err(&f.method, &f.path, group, f.kind)
    }

    /// Sends one request, once, with the API's credentials. Returns the answer when its status
    /// is a success or listed in `accept`; any other status is an error with the server's message
    /// (a redirect too: it is never followed).
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

    /// A GET read as JSON, sent once: part of a send or recheck, which the executor retries.
    async fn get<T: DeserializeOwned>(
        &self,
        req: &Req<'_>,
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        let reply = self
            .endpoint
            .send(req)
            .await
            .map_err(|f| self.failed(f, group))?;
        reply
            .json()
            .map_err(|k| self.err(req.method(), req.path(), group, k))
    }

    /// A read of an observe as JSON, sent again after transient failures as the read policy
    /// allows.
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

    /// Every item of an offset-paged list (see [`paging::counted`]); `page` reads one page at
    /// an offset.
    async fn counted<T, F, Fut>(&self, what: &str, page: F) -> Result<Vec<T>, ObserveError>
    where
        F: Fn(u64) -> Fut,
        Fut: std::future::Future<Output = Result<Counted<T>, Paged<CallError>>>,
    {
        // Studio's field is `total`.
        paging::counted(what, "total", page)
            .await
            .map_err(|e| match e {
                Paged::Failed(e) => ObserveError::Call(e),
                Paged::Incomplete(m) => self.incomplete(m),
            })
    }

    fn status_err(
        &self,
        method: &Method,
        path: &str,
        group: Option<&GroupName>,
        status: StatusCode,
        message: String,
    ) -> CallError {
        self.err(
            method,
            path,
            group,
            CallErrorKind::Status {
                status: status.as_u16(),
                message,
                retry_after: None,
            },
        )
    }

    fn remember(&self, name: &str, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fold(name, CASE_INSENSITIVE), id.to_owned());
    }

    /// The id of a group: given, or looked up among those observed or created.
    #[allow(clippy::result_large_err)]
    fn group_id(&self, r: &GroupRef, method: &Method, path: &str) -> Result<i64, CallError> {
        let (id, name) = match r {
            GroupRef::Id(id) => (Some(id.clone()), None),
            GroupRef::Name(n) => (
                self.ids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&fold(n.as_str(), CASE_INSENSITIVE))
                    .cloned(),
                Some(n),
            ),
        };
        id.and_then(|i| i.parse().ok()).ok_or_else(|| {
            self.err(
                method,
                path,
                name,
                CallErrorKind::Decode(
                    "the group's id is not known (its create was not seen)".into(),
                ),
            )
        })
    }
}

impl Named for CrafterTarget {
    fn target_name(&self) -> &str {
        &self.name
    }
}

impl Target for CrafterTarget {
    type Call = CrafterCall;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            nested_groups: false,
            membership: match self.api {
                CrafterApi::V2 { .. } => MembershipWrites::AddRemoveBatch,
                CrafterApi::V1 { .. } => MembershipWrites::PerMember,
            },
            case_insensitive_names: CASE_INSENSITIVE,
            renames: false,
        }
    }

    fn prepare<'d>(
        &self,
        desired: &'d Desired,
        scope: &Scope,
    ) -> Result<Cow<'d, Desired>, Vec<Diagnostic>> {
        // Studio's name and length rules bear on the writes a plan makes, so `vet` checks them
        // per change; here only what no Studio group can hold at all.
        let problems: Vec<Diagnostic> = desired
            .groups
            .iter()
            .filter(|(name, group)| {
                scope.contains(name) && group.extras.get(TYPE).is_some_and(|a| !a.is_empty())
            })
            .map(|(name, _)| {
                problem(
                    desired,
                    name,
                    format!(
                        "group \"{name}\" sets [group.crafter] attributes; Crafter Studio groups \
                         have none beyond name, description and members"
                    ),
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(Cow::Borrowed(desired))
        } else {
            Err(problems)
        }
    }

    async fn vet(
        &self,
        _desired: &Desired,
        observed: &Observed,
        plan: &Plan,
    ) -> Result<Vec<Rejection>, ObserveError> {
        Ok(self.rejections(observed, plan))
    }

    async fn observe(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        match self.v1_site() {
            Some(site) => self.observe_v1(scope, site).await,
            None => self.observe_v2(scope, users).await,
        }
    }

    fn compile(&self, plan: &Plan, observed: &Observed) -> Vec<CrafterCall> {
        self.compile_calls(plan, observed)
    }

    async fn send(&self, call: &CrafterCall) -> Result<Sent, CallError> {
        match self.v1_site() {
            Some(site) => self.send_v1(call, site).await,
            None => self.send_v2(call).await,
        }
    }

    async fn recheck(&self, call: &CrafterCall) -> Result<Option<Sent>, CallError> {
        let Op::Create { .. } = call.op else {
            // Every other call is idempotent and is simply sent again.
            return Ok(None);
        };
        let landed = match self.v1_site() {
            Some(site) => self.v1_group_exists(&call.group, site).await?,
            None => self.find_group_v2(&call.group).await?.is_some(),
        };
        Ok(landed.then(|| Sent::AlreadyDone("created by an earlier attempt".into())))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

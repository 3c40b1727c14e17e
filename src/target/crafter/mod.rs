//! The Crafter Studio connector: Studio's groups and their members, through API 2 (Studio 4.0.0
//! and later, global groups, an access token) or API 1 (Studio 3.0, groups per site). Studio
//! 3.1 is neither: it has no access tokens, and its API 1 group calls are retired.
//!
//! API 2 (Studio 4.0.0 and later, with an access token) writes membership in bulk: one
//! `POST …/members` adds every new member of a group, by user id, and `DELETE …/members?userId=…`
//! removes old ones by id, in as few requests as keep each request line well inside Tomcat's
//! 8 KB limit on a request's line and headers. Both are idempotent (adding a member twice or
//! removing a non-member is a no-op). A7 is all-or-nothing on unknown users, and Studio's lookup
//! of one user also finds soft-deleted users, whom an add would put in a group where no list ever
//! shows them; so desired users not already seen as members are resolved against the user list,
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
pub mod config;

pub use config::CrafterConfig;
pub(crate) use config::CrafterKeys;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use tracing::debug;

use crate::config::Diagnostic;
use crate::model::{
    Capabilities, Desired, Group, GroupKind, GroupName, MembershipWrites, Observed, ObservedGroup,
    UserKey,
};
use crate::plan::change::{Change, Plan};
use crate::plan::{Scope, fold};
use crate::retry::RetryPolicy;
use crate::secret::Secret;
use crate::target::http::{self, retry_after, transport_error};
use crate::target::{
    Call, CallError, CallErrorKind, Named, ObserveError, Rejection, RetrySafety, Sent, Stage,
    Target, problem,
};

use config::CrafterApi;

/// The `extras` key of Crafter Studio attributes in the desired state; Crafter takes none.
pub const TYPE: &str = "crafter";

/// Group names are compared without regard to case: Studio's database collation ignores it.
const CASE_INSENSITIVE: bool = true;

/// Why Studio 3.0 refuses a name or description with characters beyond the Basic Multilingual
/// Plane.
const V1_BEYOND_BMP: &str = "Studio 3.0 stores text as MySQL `utf8`, which holds no character \
                             beyond the Basic Multilingual Plane (such as an emoji)";

/// Groups or members asked for per page of a list.
const PAGE_SIZE: u32 = 100;

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
    /// A2 `POST /api/2/groups` or API 1 `create.json`.
    Create {
        /// The description, when the desired state sets one.
        desc: Option<String>,
    },
    /// A3 `PATCH /api/2/groups` or API 1 `update.json`: the description is replaced, so it is
    /// always sent (with the group's current name, which Studio 4.0.0 to 4.0.2 replace too).
    Update {
        /// The group.
        group: GroupRef,
        /// The new description.
        desc: String,
    },
    /// A7: add these users in one call (API 2).
    AddMembers {
        /// The group.
        group: GroupRef,
        /// The users.
        users: Vec<Member>,
    },
    /// A8: remove these users in one call (API 2); a group losing more members than one
    /// request line holds gets several.
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
    /// A4 `DELETE /api/2/groups?id=…` or API 1 `delete.json`.
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
    /// The query pair that names this user in A8.
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

/// How a request is authenticated: API 2's access token, or API 1's session cookie (with the
/// credentials that renew it).
enum Credential<'a> {
    Token(&'a str),
    Session {
        username: &'a str,
        password: &'a Secret,
        cookie: String,
    },
}

/// An answer read whole: status and body.
struct Reply {
    status: StatusCode,
    body: String,
}

/// The Crafter Studio connector for one `[[target]]`.
pub struct CrafterTarget {
    name: String,
    base: String,
    api: CrafterApi,
    http: reqwest::Client,
    concurrency: NonZeroUsize,
    reads: RetryPolicy,
    /// API 1: the session cookie, renewed by logging in again on a 401.
    session: tokio::sync::Mutex<Option<String>>,
    /// API 1: the XSRF value this connector sends as cookie and header alike.
    xsrf: String,
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
            .field("base", &self.base)
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
        Self {
            name: name.to_owned(),
            base: config.url.clone(),
            api: config.api.clone(),
            http,
            concurrency,
            reads: RetryPolicy::default(),
            session: tokio::sync::Mutex::new(None),
            xsrf: uuid::Uuid::new_v4().simple().to_string(),
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

    /// Retries transient read failures of an observe under `policy`.
    pub fn with_read_retries(mut self, policy: RetryPolicy) -> Self {
        self.reads = policy;
        self
    }

    fn v1_site(&self) -> Option<&str> {
        match &self.api {
            CrafterApi::V1 { site_id, .. } => Some(site_id),
            CrafterApi::V2 { .. } => None,
        }
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

    /// API 1: a session cookie of `username`, the cached one or a new one from `login.json`.
    /// `stale` is a session the API refused, replaced only if nobody has replaced it already.
    async fn session(
        &self,
        username: &str,
        password: &Secret,
        stale: Option<&str>,
    ) -> Result<String, CallError> {
        let mut cached = self.session.lock().await;
        if let Some(s) = cached.as_ref()
            && stale != Some(s.as_str())
        {
            return Ok(s.clone());
        }
        let m = Method::POST;
        let login = self
            .http
            .post(format!("{}{}", self.base, api::V1_LOGIN))
            .header(header::ACCEPT, "application/json")
            .header(
                header::COOKIE,
                format!("{}={}", api::XSRF_COOKIE, self.xsrf),
            )
            .header(api::XSRF_HEADER, &self.xsrf)
            .json(&json!({ "username": username, "password": password.expose() }));
        let resp = http::send(&self.name, login)
            .await
            .map_err(|e| self.err(&m, api::V1_LOGIN, None, transport_error(&e)))?;
        let status = resp.status();
        let cookie = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(api::session_cookie)
            .map(str::to_owned);
        let retry_after = retry_after(&resp);
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = api::error_of(status, &body).message;
            let kind = if matches!(status.as_u16(), 400 | 401 | 403) {
                CallErrorKind::Auth(format!(
                    "Studio refused the login of \"{username}\" ({}: {message}); check the \
                     username and password",
                    status.as_u16()
                ))
            } else {
                CallErrorKind::Status {
                    status: status.as_u16(),
                    message,
                    retry_after,
                }
            };
            return Err(self.err(&m, api::V1_LOGIN, None, kind));
        }
        let Some(cookie) = cookie else {
            return Err(self.err(
                &m,
                api::V1_LOGIN,
                None,
                CallErrorKind::Decode("the login answered without a JSESSIONID cookie".into()),
            ));
        };
        *cached = Some(cookie.clone());
        debug!(target_name = %self.name, "logged in to Studio");
        Ok(cookie)
    }

    /// Sends one request with the API's credentials (API 1: the session, renewed once on a 401,
    /// and the XSRF pair). Returns the answer when its status is a success or listed in
    /// `accept`; any other status is an error with the server's message (a redirect too: it is
    /// never followed).
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&Value>,
        group: Option<&GroupName>,
        accept: &[StatusCode],
    ) -> Result<Reply, CallError> {
        let mut credential = match &self.api {
            CrafterApi::V2 { token } => Credential::Token(token.expose()),
            CrafterApi::V1 {
                username, password, ..
            } => Credential::Session {
                username,
                password,
                cookie: self.session(username, password, None).await?,
            },
        };
        let mut renewed = false;
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}{query}", self.base))
                .header(header::ACCEPT, "application/json");
            req = match &credential {
                Credential::Token(token) => req.bearer_auth(token),
                Credential::Session { cookie, .. } => req
                    .header(
                        header::COOKIE,
                        format!(
                            "{}={cookie}; {}={}",
                            api::SESSION_COOKIE,
                            api::XSRF_COOKIE,
                            self.xsrf
                        ),
                    )
                    .header(api::XSRF_HEADER, &self.xsrf),
            };
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = http::send(&self.name, req)
                .await
                .map_err(|e| self.err(&method, path, group, transport_error(&e)))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                if let Credential::Session {
                    username,
                    password,
                    cookie,
                } = &credential
                    && !renewed
                {
                    let (username, password) = (*username, *password);
                    let cookie = self.session(username, password, Some(cookie)).await?;
                    credential = Credential::Session {
                        username,
                        password,
                        cookie,
                    };
                    renewed = true;
                    continue;
                }
                let text = resp.text().await.unwrap_or_default();
                let message = api::error_of(status, &text).message;
                let why = match credential {
                    Credential::Token(_) => format!(
                        "the access token was refused (401: {message}); check that it is valid, \
                         enabled and not expired, and that this is Studio 4.0.0 or later (older \
                         releases have no access tokens)"
                    ),
                    Credential::Session { .. } => {
                        format!("a fresh session was refused (401: {message})")
                    }
                };
                return Err(self.err(&method, path, group, CallErrorKind::Auth(why)));
            }
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let retry_after = retry_after(&resp);
            let text = resp
                .text()
                .await
                .map_err(|e| self.err(&method, path, group, transport_error(&e)))?;
            if status.is_success() || accept.contains(&status) {
                return Ok(Reply { status, body: text });
            }
            let mut message = api::error_of(status, &text).message;
            if status.is_redirection() {
                message = format!(
                    "{message}; redirected to {} and not followed (is this the right Studio \
                     version for api = \"{}\"?)",
                    location.as_deref().unwrap_or("nowhere"),
                    if self.v1_site().is_some() { "v1" } else { "v2" }
                );
            }
            return Err(self.err(
                &method,
                path,
                group,
                CallErrorKind::Status {
                    status: status.as_u16(),
                    message,
                    retry_after,
                },
            ));
        }
    }

    // `CallError` is the error every connector call returns; boxing it here would not pay.
    #[allow(clippy::result_large_err)]
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        group: Option<&GroupName>,
        body: &str,
    ) -> Result<T, CallError> {
        serde_json::from_str(body)
            .map_err(|e| self.err(method, path, group, CallErrorKind::Decode(e.to_string())))
    }

    /// A GET read as JSON, sent once (an observe wraps it in `self.reads`).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &str,
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        let r = self
            .request(Method::GET, path, query, None, group, &[])
            .await?;
        self.decode(&Method::GET, path, group, &r.body)
    }

    /// Every item of an offset-paged list, checked against `total`: pages are read until as many
    /// items as `total` were seen; a list whose total moves, or that comes up short, is read once
    /// more, and is an error if it does again. `page` reads one page at an offset and returns
    /// its items and `total`.
    async fn read_all<T, F, Fut>(&self, what: &str, page: F) -> Result<Vec<T>, ObserveError>
    where
        F: Fn(u64) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<T>, u64), CallError>>,
    {
        let mut last = String::new();
        for _ in 0..2 {
            let mut items: Vec<T> = Vec::new();
            let mut first_total = None;
            let mut moved = false;
            loop {
                let (got, total) = page(items.len() as u64).await?;
                if *first_total.get_or_insert(total) != total {
                    moved = true;
                    break;
                }
                let n = got.len();
                items.extend(got);
                if n == 0 || items.len() as u64 >= total {
                    break;
                }
            }
            let total = first_total.unwrap_or(0);
            if !moved && items.len() as u64 == total {
                return Ok(items);
            }
            last = if moved {
                format!("{what}: the total changed while it was read")
            } else {
                format!(
                    "{what} returned {} items where total is {total}",
                    items.len()
                )
            };
            debug!(target_name = %self.name, "{last}; reading again");
        }
        Err(self.incomplete(last))
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

    /// The changes of `plan` that Studio would refuse, with why: what `vet` reports.
    fn rejections(&self, observed: &Observed, plan: &Plan) -> Vec<Rejection> {
        let v1 = self.v1_site().is_some();
        let others: HashSet<String> = observed
            .others
            .iter()
            .map(|n| fold(n.as_str(), CASE_INSENSITIVE))
            .collect();
        let max_desc = if v1 {
            api::V1_MAX_DESCRIPTION
        } else {
            api::MAX_DESCRIPTION
        };
        // Studio 4 counts a description as Java does, in UTF-16 units; Studio 3.0's column
        // counts characters, and its `utf8` charset holds none beyond the Basic Multilingual
        // Plane (emoji, say).
        let desc_rule = |d: &str| {
            let n = if v1 {
                d.chars().count()
            } else {
                d.encode_utf16().count()
            };
            let mut why = Vec::new();
            if n > max_desc {
                why.push(format!(
                    "the description has {n} characters; Crafter Studio takes at most {max_desc}"
                ));
            }
            if v1 && d.chars().any(|c| u32::from(c) > 0xFFFF) {
                why.push(V1_BEYOND_BMP.to_owned());
            }
            why
        };
        let mut out = Vec::new();
        for (i, change) in plan.changes.iter().enumerate() {
            let group = change.group();
            let mut why: Vec<String> = Vec::new();
            // Groups owned by an identity provider, and the built-in ones, are never written.
            if let Some(g) = observed.groups.get(group)
                && g.kind != GroupKind::Managed
            {
                why.push(format!(
                    "\"{group}\" is not a group roster may change (built in, or externally \
                     managed by LDAP/SAML)"
                ));
            }
            match change {
                Change::CreateGroup { description, .. } => {
                    let n = group.as_str();
                    if v1 {
                        if n.trim().is_empty() || n.chars().count() > api::V1_MAX_NAME {
                            why.push(format!(
                                "Studio 3.0 holds group names of 1 to {} characters",
                                api::V1_MAX_NAME
                            ));
                        }
                        if n.chars().any(|c| u32::from(c) > 0xFFFF) {
                            why.push(V1_BEYOND_BMP.to_owned());
                        }
                    } else if !api::valid_group_name(n) {
                        why.push(format!(
                            "Studio creates only groups whose names match ^[a-zA-Z][\\w.\\-]*$ \
                             (an ASCII letter, then letters, digits, `_`, `.` or `-`) and have \
                             {} to {} characters",
                            api::MIN_GROUP_NAME,
                            api::MAX_GROUP_NAME
                        ));
                    }
                    if others.contains(&fold(n, CASE_INSENSITIVE)) {
                        why.push(
                            "Studio already has a group of that name outside the groups roster \
                             manages (names are unique without regard to case)"
                                .to_owned(),
                        );
                    }
                    why.extend(description.as_deref().map(desc_rule).unwrap_or_default());
                }
                Change::UpdateGroup { fields, .. } => {
                    why.extend(
                        fields
                            .get("description")
                            .and_then(|f| f.to.as_str())
                            .map(desc_rule)
                            .unwrap_or_default(),
                    );
                }
                // Sent by username only when no id was read: Studio checks the name.
                Change::AddMember { member, .. }
                    if !v1
                        && !observed.users.contains_key(member)
                        && !api::valid_username(member.as_str()) =>
                {
                    why.push(format!(
                        "\"{member}\" cannot be a Studio username (^[a-zA-Z][\\w.\\-@+]+$, at \
                         most {} characters)",
                        api::MAX_USERNAME
                    ));
                }
                _ => {}
            }
            out.extend(
                why.into_iter()
                    .filter_map(|w| Rejection::of_change(plan, i, w)),
            );
        }
        out
    }

    // --- API 2 ---------------------------------------------------------------------------------

    /// One page of A1, sent once.
    async fn group_page(
        &self,
        offset: u64,
        keyword: Option<&str>,
    ) -> Result<(Vec<api::Group>, u64), CallError> {
        let mut q = Vec::new();
        if let Some(k) = keyword {
            q.push(("keyword", k.to_owned()));
        }
        q.push(("offset", offset.to_string()));
        q.push(("limit", PAGE_SIZE.to_string()));
        let p: api::GroupPage = self.get_json(api::GROUPS, &api::query(&q), None).await?;
        Ok((p.groups, p.total))
    }

    /// A2's missing get-by-name: A1 with `keyword` (a substring match),
    /// every page, then an exact match as Studio compares names. Each page is sent once: this
    /// is part of a send or recheck, which the executor retries.
    async fn find_group_v2(&self, name: &GroupName) -> Result<Option<api::Group>, CallError> {
        let all = self
            .read_all(&format!("GET {}", api::GROUPS), |offset| {
                self.group_page(offset, Some(name.as_str()))
            })
            .await
            .map_err(|e| match e {
                ObserveError::Call(c) => c,
                other => self.err(
                    &Method::GET,
                    api::GROUPS,
                    Some(name),
                    CallErrorKind::Decode(other.to_string()),
                ),
            })?;
        let key = fold(name.as_str(), CASE_INSENSITIVE);
        let found = all
            .into_iter()
            .find(|g| fold(&g.name, CASE_INSENSITIVE) == key);
        if let Some(g) = &found {
            self.remember(&g.name, &g.id.to_string());
        }
        Ok(found)
    }

    async fn observe_v2(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        let mut observed = Observed::default();
        let all = self
            .read_all(&format!("GET {}", api::GROUPS), |offset| {
                self.reads
                    .retry_idempotent(move || self.group_page(offset, None))
            })
            .await?;
        let mut seen = HashSet::new();
        let mut in_scope = Vec::new();
        for g in all {
            if !seen.insert(g.id) {
                return Err(self.incomplete(format!("group \"{}\" was listed twice", g.name)));
            }
            self.remember(&g.name, &g.id.to_string());
            let name = GroupName(g.name.clone());
            if scope.contains(&name) {
                in_scope.push(g);
            } else {
                observed.others.insert(name);
            }
        }
        let groups: Vec<(ObservedGroup, Vec<api::User>)> = futures::stream::iter(in_scope)
            .map(|g| self.observe_group_v2(g))
            .buffer_unordered(self.concurrency.get())
            .try_collect()
            .await?;
        let mut members: HashSet<String> = HashSet::new();
        for (g, users) in groups {
            members.extend(g.group.members.iter().map(|m| fold(m.as_str(), true)));
            // Members are removed by id.
            for u in users {
                observed.users.insert(UserKey(u.username), u.id.to_string());
            }
            observed.groups.insert(g.group.name.clone(), g);
        }

        // A7 fails whole on one unknown user, and A9 finds soft-deleted users too (an add would
        // put them in a group whose member list never shows them), so the desired users not seen
        // as members are matched against the user list, which leaves deleted users out. A key
        // Studio cannot hold as a username is unknown without a call.
        let mut wanted = Vec::new();
        for u in users {
            if members.contains(&fold(u.as_str(), true)) {
                continue;
            }
            if api::valid_username(u.as_str()) {
                wanted.push(u.clone());
            } else {
                observed.unknown_users.insert(u.clone());
            }
        }
        if !wanted.is_empty() {
            let all = self
                .read_all(&format!("GET {}", api::USERS), |offset| {
                    self.reads.retry_idempotent(move || self.user_page(offset))
                })
                .await?;
            let mut exact: HashMap<&str, i64> = HashMap::new();
            let mut folded: HashMap<String, i64> = HashMap::new();
            for u in &all {
                exact.insert(u.username.as_str(), u.id);
                folded.insert(fold(&u.username, CASE_INSENSITIVE), u.id);
            }
            for u in wanted {
                let id = exact
                    .get(u.as_str())
                    .or_else(|| folded.get(&fold(u.as_str(), CASE_INSENSITIVE)));
                match id {
                    Some(id) => {
                        observed.users.insert(u, id.to_string());
                    }
                    None => {
                        observed.unknown_users.insert(u);
                    }
                }
            }
        }
        Ok(observed)
    }

    /// One page of A10 (the user list, soft-deleted users left out), sent once.
    async fn user_page(&self, offset: u64) -> Result<(Vec<api::User>, u64), CallError> {
        let q = api::query(&[
            ("offset", offset.to_string()),
            ("limit", USER_PAGE_SIZE.to_string()),
            ("sort", "id asc".to_owned()),
        ]);
        let p: api::UserPage = self.get_json(api::USERS, &q, None).await?;
        Ok((p.users, p.total))
    }

    /// A group and, when roster may change it, its members (with their ids).
    async fn observe_group_v2(
        &self,
        g: api::Group,
    ) -> Result<(ObservedGroup, Vec<api::User>), ObserveError> {
        let name = GroupName(g.name.clone());
        let kind = if api::BUILT_IN_GROUPS
            .iter()
            .any(|b| b.eq_ignore_ascii_case(&g.name))
        {
            GroupKind::System
        } else if g.externally_managed == Some(true) {
            GroupKind::External
        } else {
            GroupKind::Managed
        };
        let mut group = Group::named(g.name.clone());
        group.description = g.desc.clone();
        let mut listed = Vec::new();
        // Groups roster never changes need no membership read.
        if kind == GroupKind::Managed {
            let id = g.id.to_string();
            let path = api::members(&id);
            let users = self
                .read_all(&format!("GET {path}"), |offset| {
                    let path = path.clone();
                    let name = name.clone();
                    async move {
                        let q = api::query(&[
                            ("offset", offset.to_string()),
                            ("limit", PAGE_SIZE.to_string()),
                        ]);
                        let p: api::MemberPage = self
                            .reads
                            .retry_idempotent(|| self.get_json(&path, &q, Some(&name)))
                            .await?;
                        Ok((p.users, p.total))
                    }
                })
                .await?;
            let mut ids = HashSet::new();
            for u in users {
                if !ids.insert(u.id) {
                    return Err(self.incomplete(format!(
                        "member \"{}\" of \"{name}\" was listed twice",
                        u.username
                    )));
                }
                group.members.insert(UserKey(u.username.clone()));
                listed.push(u);
            }
        }
        Ok((
            ObservedGroup {
                id: g.id.to_string(),
                group,
                kind,
            },
            listed,
        ))
    }

    async fn send_v2(&self, call: &CrafterCall) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        match &call.op {
            Op::Create { desc } => {
                let m = Method::POST;
                let mut body = json!({ "name": call.group.as_str() });
                if let Some(d) = desc {
                    body["desc"] = Value::from(d.as_str());
                }
                let r = self
                    .request(
                        m.clone(),
                        api::GROUPS,
                        "",
                        Some(&body),
                        g,
                        &[StatusCode::CONFLICT],
                    )
                    .await?;
                if r.status == StatusCode::CONFLICT {
                    let e = api::error_of(r.status, &r.body);
                    if e.code.is_some_and(|c| c != api::CODE_GROUP_EXISTS) {
                        return Err(self.status_err(&m, api::GROUPS, g, r.status, e.message));
                    }
                    return match self.find_group_v2(&call.group).await? {
                        Some(_) => Ok(Sent::AlreadyDone("group already existed; adopted".into())),
                        None => Err(self.status_err(
                            &m,
                            api::GROUPS,
                            g,
                            r.status,
                            format!("{}, but no group of that name can be read", e.message),
                        )),
                    };
                }
                let created: api::GroupAnswer = self.decode(&m, api::GROUPS, g, &r.body)?;
                self.remember(&created.group.name, &created.group.id.to_string());
                Ok(Sent::Done)
            }
            Op::Update { group, desc } => {
                let m = Method::PATCH;
                let id = self.group_id(group, &m, api::GROUPS)?;
                let bare = json!({ "id": id, "desc": desc });
                if self.patch_without_name.load(Ordering::Relaxed) {
                    self.request(m, api::GROUPS, "", Some(&bare), g, &[])
                        .await?;
                    return Ok(Sent::Done);
                }
                // Studio 4.0.0 to 4.0.2 replace the name as well (without it the update fails);
                // 4.0.3 and later have no `name` in an update and ignore it, unless strict about
                // unknown fields: a 400 without validation errors is that, and the update is sent
                // again without the name (which such a Studio never replaces).
                let mut whole = bare.clone();
                whole["name"] = Value::from(call.group.as_str());
                let r = self
                    .request(
                        m.clone(),
                        api::GROUPS,
                        "",
                        Some(&whole),
                        g,
                        &[StatusCode::BAD_REQUEST],
                    )
                    .await?;
                if r.status != StatusCode::BAD_REQUEST {
                    return Ok(Sent::Done);
                }
                let validation = serde_json::from_str::<Value>(&r.body)
                    .ok()
                    .is_some_and(|v| v.get("validationErrors").is_some());
                if validation {
                    let e = api::error_of(r.status, &r.body);
                    return Err(self.status_err(&m, api::GROUPS, g, r.status, e.message));
                }
                self.request(m, api::GROUPS, "", Some(&bare), g, &[])
                    .await?;
                self.patch_without_name.store(true, Ordering::Relaxed);
                debug!(target_name = %self.name, "Studio refused `name` in an update; sending updates without it");
                Ok(Sent::Done)
            }
            Op::AddMembers { group, users } => {
                let m = Method::POST;
                let id = self.group_id(group, &m, api::GROUPS)?;
                let path = api::members(&id.to_string());
                let ids: Vec<i64> = users.iter().filter_map(|u| u.id).collect();
                let names: Vec<&str> = users
                    .iter()
                    .filter(|u| u.id.is_none())
                    .map(|u| u.username.as_str())
                    .collect();
                let mut body = json!({});
                if !ids.is_empty() {
                    body["ids"] = json!(ids);
                }
                if !names.is_empty() {
                    body["usernames"] = json!(names);
                }
                self.request(m, &path, "", Some(&body), g, &[]).await?;
                Ok(Sent::Done)
            }
            Op::RemoveMembers { group, users } => {
                let m = Method::DELETE;
                let id = self.group_id(group, &m, api::GROUPS)?;
                let path = api::members(&id.to_string());
                let q: Vec<(&str, String)> = users.iter().map(Member::query_pair).collect();
                self.request(m, &path, &api::query(&q), None, g, &[])
                    .await?;
                Ok(Sent::Done)
            }
            Op::Delete(group) => {
                let m = Method::DELETE;
                let id = self.group_id(group, &m, api::GROUPS)?;
                let q = api::query(&[("id", id.to_string())]);
                let r = self
                    .request(
                        m.clone(),
                        api::GROUPS,
                        &q,
                        None,
                        g,
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if r.status == StatusCode::NOT_FOUND {
                    let e = api::error_of(r.status, &r.body);
                    if e.code.is_some_and(|c| c != api::CODE_GROUP_NOT_FOUND) {
                        return Err(self.status_err(&m, api::GROUPS, g, r.status, e.message));
                    }
                    return Ok(Sent::AlreadyDone("already deleted".into()));
                }
                Ok(Sent::Done)
            }
            Op::AddMember(_) | Op::RemoveMember(_) => Err(self.err(
                &Method::POST,
                api::GROUPS,
                g,
                CallErrorKind::Decode("a per-member call was compiled for API 2".into()),
            )),
        }
    }

    // --- API 1 ---------------------------------------------------------------------------------

    async fn observe_v1(&self, scope: &Scope, site: &str) -> Result<Observed, ObserveError> {
        let path = api::v1("get-per-site.json");
        let groups = self
            .read_all(&format!("GET {path}"), |start| {
                let path = path.clone();
                async move {
                    let q = api::query(&[
                        ("site_id", site.to_owned()),
                        ("start", start.to_string()),
                        ("number", PAGE_SIZE.to_string()),
                    ]);
                    let p: api::V1GroupPage = self
                        .reads
                        .retry_idempotent(|| self.get_json(&path, &q, None))
                        .await?;
                    Ok((p.groups, p.total))
                }
            })
            .await?;
        let mut observed = Observed::default();
        let mut seen = HashSet::new();
        for g in groups {
            if !seen.insert(fold(&g.group_name, CASE_INSENSITIVE)) {
                return Err(self.incomplete(format!("group \"{}\" was listed twice", g.group_name)));
            }
            let name = GroupName(g.group_name.clone());
            if !scope.contains(&name) {
                observed.others.insert(name);
                continue;
            }
            let kind = if api::BUILT_IN_GROUPS
                .iter()
                .any(|b| b.eq_ignore_ascii_case(&g.group_name))
            {
                GroupKind::System
            } else {
                GroupKind::Managed
            };
            let mut group = Group::named(g.group_name.clone());
            group.description = g.description;
            group.members = g.users.into_iter().map(|u| UserKey(u.username)).collect();
            observed.groups.insert(
                name,
                ObservedGroup {
                    id: g.group_name,
                    group,
                    kind,
                },
            );
        }
        // API 1 has no user lookup: users are not resolved ahead (an unknown one fails its add).
        Ok(observed)
    }

    /// API 1 `get.json`: whether the group exists in the site (a missing site is an error).
    /// Sent once: it is part of a send or recheck, which the executor retries.
    async fn v1_group_exists(&self, group: &GroupName, site: &str) -> Result<bool, CallError> {
        let path = api::v1("get.json");
        let q = api::query(&[
            ("group_name", group.as_str().to_owned()),
            ("site_id", site.to_owned()),
        ]);
        let r = self
            .request(
                Method::GET,
                &path,
                &q,
                None,
                Some(group),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        if r.status != StatusCode::NOT_FOUND {
            return Ok(true);
        }
        let e = api::error_of(r.status, &r.body);
        if e.message == "Group not found" {
            Ok(false)
        } else {
            Err(self.status_err(&Method::GET, &path, Some(group), r.status, e.message))
        }
    }

    async fn send_v1(&self, call: &CrafterCall, site: &str) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        let m = Method::POST;
        let name = call.group.as_str();
        match &call.op {
            Op::Create { desc } => {
                let path = api::v1("create.json");
                let mut body = json!({ "group_name": name, "site_id": site });
                if let Some(d) = desc {
                    body["description"] = Value::from(d.as_str());
                }
                let r = self
                    .request(
                        m.clone(),
                        &path,
                        "",
                        Some(&body),
                        g,
                        &[StatusCode::CONFLICT],
                    )
                    .await?;
                if r.status != StatusCode::CONFLICT {
                    return Ok(Sent::Done);
                }
                if self.v1_group_exists(&call.group, site).await? {
                    Ok(Sent::AlreadyDone("group already existed; adopted".into()))
                } else {
                    let e = api::error_of(r.status, &r.body);
                    Err(self.status_err(
                        &m,
                        &path,
                        g,
                        r.status,
                        format!("{}, but no group of that name can be read", e.message),
                    ))
                }
            }
            Op::Update { desc, .. } => {
                let path = api::v1("update.json");
                // An omitted description is set to NULL, so it is always sent.
                let body = json!({ "group_name": name, "site_id": site, "description": desc });
                self.request(m, &path, "", Some(&body), g, &[]).await?;
                Ok(Sent::Done)
            }
            Op::Delete(_) => {
                let path = api::v1("delete.json");
                let body = json!({ "group_name": name, "site_id": site });
                let r = self
                    .request(
                        m.clone(),
                        &path,
                        "",
                        Some(&body),
                        g,
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if r.status != StatusCode::NOT_FOUND {
                    return Ok(Sent::Done);
                }
                let e = api::error_of(r.status, &r.body);
                if e.message == "Group not found" {
                    Ok(Sent::AlreadyDone("already deleted".into()))
                } else {
                    Err(self.status_err(&m, &path, g, r.status, e.message))
                }
            }
            Op::AddMember(user) => {
                let path = api::v1("add-user.json");
                let body = json!({ "username": user, "group_name": name, "site_id": site });
                let accept = [StatusCode::CONFLICT, StatusCode::NOT_FOUND];
                let r = self
                    .request(m.clone(), &path, "", Some(&body), g, &accept)
                    .await?;
                let e = api::error_of(r.status, &r.body);
                match r.status {
                    StatusCode::CONFLICT => Ok(Sent::AlreadyDone("already a member".into())),
                    StatusCode::NOT_FOUND if e.message == "User not found" => Err(self.status_err(
                        &m,
                        &path,
                        g,
                        r.status,
                        format!(
                            "{}: Studio has no user \"{user}\" (API 1 cannot look users up ahead)",
                            e.message
                        ),
                    )),
                    StatusCode::NOT_FOUND => {
                        Err(self.status_err(&m, &path, g, r.status, e.message))
                    }
                    _ => Ok(Sent::Done),
                }
            }
            Op::RemoveMember(user) => {
                let path = api::v1("remove-user.json");
                let body = json!({ "username": user, "group_name": name, "site_id": site });
                let r = self
                    .request(
                        m.clone(),
                        &path,
                        "",
                        Some(&body),
                        g,
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if r.status != StatusCode::NOT_FOUND {
                    return Ok(Sent::Done);
                }
                // "User not found" also means "not a member": done, if the group still exists.
                let e = api::error_of(r.status, &r.body);
                if e.message == "User not found" && self.v1_group_exists(&call.group, site).await? {
                    Ok(Sent::AlreadyDone("not a member".into()))
                } else {
                    Err(self.status_err(&m, &path, g, r.status, e.message))
                }
            }
            Op::AddMembers { .. } | Op::RemoveMembers { .. } => Err(self.err(
                &m,
                &api::v1("add-user.json"),
                g,
                CallErrorKind::Decode("a bulk call was compiled for API 1".into()),
            )),
        }
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
        let gref = |name: &GroupName| match observed.groups.get(name) {
            Some(g) => GroupRef::Id(g.id.clone()),
            None => GroupRef::Name(name.clone()),
        };
        let bulk = matches!(self.api, CrafterApi::V2 { .. });
        let mut calls: Vec<CrafterCall> = Vec::new();
        // API 2: the one add call of each group, and its latest remove call with the bytes of
        // query it holds, by position in `calls`.
        let mut adds: BTreeMap<GroupName, usize> = BTreeMap::new();
        let mut removes: BTreeMap<GroupName, (usize, usize)> = BTreeMap::new();
        let member = |m: &UserKey| Member {
            username: m.as_str().to_owned(),
            id: observed.users.get(m).and_then(|id| id.parse().ok()),
        };
        let one = |i: usize, op: Op, group: &GroupName| CrafterCall {
            op,
            group: group.clone(),
            covers: vec![i],
        };
        for (i, change) in plan.changes.iter().enumerate() {
            match change {
                Change::CreateGroup {
                    group, description, ..
                } => calls.push(one(
                    i,
                    Op::Create {
                        desc: description.clone(),
                    },
                    group,
                )),
                Change::UpdateGroup { group, fields } => {
                    // Only the description can change (names are immutable, attributes refused
                    // by `prepare`), so it is the field this change carries, and it replaces
                    // the old one.
                    let desc = fields
                        .get("description")
                        .and_then(|f| f.to.as_str())
                        .unwrap_or_default()
                        .to_owned();
                    calls.push(one(
                        i,
                        Op::Update {
                            group: gref(group),
                            desc,
                        },
                        group,
                    ));
                }
                Change::AddMember { group, member: m } if bulk => {
                    // A7 takes its users in the body: one call per group.
                    let user = member(m);
                    if let Some(&at) = adds.get(group) {
                        let c = &mut calls[at];
                        c.covers.push(i);
                        if let Op::AddMembers { users, .. } = &mut c.op {
                            users.push(user);
                        }
                    } else {
                        adds.insert(group.clone(), calls.len());
                        let op = Op::AddMembers {
                            group: gref(group),
                            users: vec![user],
                        };
                        calls.push(one(i, op, group));
                    }
                }
                Change::RemoveMember { group, member: m } if bulk => {
                    // A8 takes its users in the query: a new call when the request line would
                    // pass its limit.
                    let user = member(m);
                    let (k, v) = user.query_pair();
                    let len = api::query_pair_len(k, &v);
                    match removes.get_mut(group) {
                        Some((at, used))
                            if self.line_overhead + *used + len <= self.line_budget =>
                        {
                            *used += len;
                            let c = &mut calls[*at];
                            c.covers.push(i);
                            if let Op::RemoveMembers { users, .. } = &mut c.op {
                                users.push(user);
                            }
                        }
                        _ => {
                            removes.insert(group.clone(), (calls.len(), len));
                            let op = Op::RemoveMembers {
                                group: gref(group),
                                users: vec![user],
                            };
                            calls.push(one(i, op, group));
                        }
                    }
                }
                Change::AddMember { group, member } => {
                    calls.push(one(i, Op::AddMember(member.as_str().to_owned()), group))
                }
                Change::RemoveMember { group, member } => {
                    calls.push(one(i, Op::RemoveMember(member.as_str().to_owned()), group))
                }
                // Crafter cannot nest, so the planner flattens children into members and plans
                // no child changes; none can reach here.
                Change::AddChild { .. } | Change::RemoveChild { .. } => {}
                Change::DeleteGroup { group } => calls.push(one(i, Op::Delete(gref(group)), group)),
            }
        }
        calls
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

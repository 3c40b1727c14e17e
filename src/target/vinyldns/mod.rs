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
//! [`Target::recheck`] finds the group and sets its lists to the desired ones.
//!
//! Only a super user or an admin of a group may change it, and VinylDNS makes the creating
//! account an admin and a member of every group it creates. So roster's own account keeps its
//! seat in every group where it has one and the desired state does not name it: that seat is
//! neither shown as drift nor removed, and an account that is no super user keeps managing the
//! groups it created. Ids that name no user (the server stores unknown admin ids unchecked, and
//! its members list leaves them out) are not roster's users either: they are left alone.
//!
//! [`Target::vet`] checks each planned change against the server's rules before anything is
//! sent: the account's right to change the group, the e-mail (pattern, allowed domains, dots after
//! `@`), the description's length, that a group keeps an admin, and that a group to delete
//! administers no zone and is named in no zone's ACL.

pub mod api;
mod auth;
pub mod config;
mod read;
pub mod sigv4;
mod vet;
mod write;

pub use config::VinylDnsConfig;
pub(crate) use config::VinylDnsKeys;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Diagnostic;
use crate::model::{
    Attributes, Capabilities, Desired, GroupName, MembershipWrites, Observed, UserKey,
};
use crate::plan::change::Plan;
use crate::plan::{Scope, fold};
use crate::retry::RetryPolicy;
use crate::target::http::endpoint::{Endpoint, Failure, Reply, Req};
use crate::target::http::pace::Pacer;
use crate::target::http::paging::Paged;
use crate::target::{
    Call, CallError, CallErrorKind, Named, ObserveError, Rejection, RetrySafety, Sent, Stage,
    Target, problem,
};

use auth::Signer;
#[cfg(test)]
use vet::{description_rule, email_rule, no_admin};

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
    fn requests(&self) -> usize {
        match self.op {
            // The group read afresh, then replaced whole.
            Op::Update(..) => 2,
            Op::Create(_) | Op::Delete(_) => 1,
        }
    }
}

/// What a run learned about roster's own account.
#[derive(Clone, Debug, Default)]
struct Account {
    /// Its user id, once a group showed it (as a member or an admin).
    id: Option<String>,
    /// Its user name, once a members list showed it.
    name: Option<String>,
    /// Ids of the groups it administers.
    admin_of: HashSet<String>,
    /// How many groups it is a member of.
    member_of: usize,
    /// How many live groups there are.
    groups: usize,
    /// Whether the account was identified: by an abridged listing (older servers ignore
    /// `abridged` and list everyone) or by the user name the config gives.
    identified: bool,
    /// Whether the desired state names it: then its entries are ordinary ones; otherwise they
    /// are kept where they are and never shown.
    desired: bool,
    /// Whether it is a super user, once [`Target::vet`] found out.
    is_super: Option<bool>,
}

impl Account {
    /// Whether its own entries in a group are kept whatever the desired state says: always when
    /// the desired state does not name it, and when it is no super user (or not known to be one),
    /// since removing its admin seat would lock it out of the group.
    fn keeps_own_seat(&self) -> bool {
        !self.desired || self.is_super != Some(true)
    }

    fn describe(&self) -> String {
        match (&self.name, &self.id) {
            (Some(n), _) => format!("roster's account (user \"{n}\")"),
            (None, Some(id)) => format!("roster's account (user id {id})"),
            (None, None) => "roster's account".to_owned(),
        }
    }
}

/// Which groups a listing asks for.
#[derive(Clone, Copy, Debug, Default)]
struct Listing<'a> {
    /// `groupNameFilter`.
    filter: Option<&'a str>,
    /// `abridged=true`: each group's lists hold only the caller's own id.
    abridged: bool,
    /// `ignoreAccess=true`: every group, not only the caller's.
    all: bool,
    /// Stop once more than this many groups are listed (a question the first groups answer).
    beyond: Option<usize>,
    /// Told each page's groups as it comes (to look their members up while the list goes on).
    feed: Option<&'a read::Feed<'a>>,
    /// Each page is sent holding one of these (the calls in flight of a read shared with others).
    permits: Option<&'a tokio::sync::Semaphore>,
    /// Parses the pages, holding each user id they name once.
    interner: Option<&'a Arc<api::Interner>>,
}

/// The VinylDNS connector for one `[[target]]`.
pub struct VinylDnsTarget {
    name: String,
    concurrency: NonZeroUsize,
    /// The API, each request signed with the configured keys.
    endpoint: Endpoint<Signer>,
    /// The server's limit of dots after the `@` of a group's e-mail.
    email_dots: usize,
    /// The account's user name from the config, for a server that cannot tell roster.
    own_user: Option<String>,
    /// User ids by folded user key, for the run: `None` for a key the API does not know.
    users: Mutex<HashMap<String, Option<String>>>,
    /// roster's own account, as far as the run learned it.
    account: Mutex<Account>,
    /// Per group id, the ids it holds that name no user: left alone by every write.
    orphans: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Whether a signed request succeeded in this run: then the keys are right, and a 401 is
    /// about the request, not the keys.
    authenticated: AtomicBool,
    /// The groups a list page asks for: [`api::GROUPS_PAGE`], or [`api::LEGACY_PAGE`] once the
    /// server refused that.
    page_size: AtomicU32,
}

impl std::fmt::Debug for VinylDnsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VinylDnsTarget")
            .field("name", &self.name)
            .field("base", &self.endpoint.base())
            .field("keys", self.endpoint.auth())
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

/// User names sorted and without repeats as VinylDNS compares them (without regard to case), so
/// that the desired and the observed admins of a group compare equal whatever their order and
/// case.
fn sorted_names(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().collect();
    v.sort_by(|a, b| {
        fold(a, CASE_INSENSITIVE)
            .cmp(&fold(b, CASE_INSENSITIVE))
            .then_with(|| a.cmp(b))
    });
    v.dedup_by(|a, b| fold(a, CASE_INSENSITIVE) == fold(b, CASE_INSENSITIVE));
    v
}

impl VinylDnsTarget {
    /// A connector for `config`, sending with `http`, reading with up to `concurrency` calls at once.
    pub fn new(
        name: &str,
        config: &VinylDnsConfig,
        http: reqwest::Client,
        concurrency: NonZeroUsize,
    ) -> Self {
        let signer = Signer::new(config.access_key.clone(), config.secret_key.clone());
        Self {
            name: name.to_owned(),
            concurrency,
            endpoint: Endpoint::new(name, &config.url, http, signer),
            email_dots: config.email_dots,
            own_user: config.user.clone(),
            users: Mutex::new(HashMap::new()),
            account: Mutex::new(Account::default()),
            orphans: Mutex::new(HashMap::new()),
            authenticated: AtomicBool::new(false),
            page_size: AtomicU32::new(api::GROUPS_PAGE),
        }
    }

    /// Retries transient read failures of an observe under `reads`, and paces every API call at
    /// `pacer` (the target's `rate_limit`).
    pub fn with_calls(mut self, reads: RetryPolicy, pacer: Arc<Pacer>) -> Self {
        self.endpoint = self.endpoint.with_read_retries(reads).with_pacer(pacer);
        self
    }

    /// Sends one signed request. Returns the answer when its status is a success or listed in
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
    ) -> Result<Reply, CallError> {
        let mut req = Req::new(method, path).query(query).accept(accept);
        if let Some(b) = body {
            req = req.json_bytes(b.to_vec());
        }
        match self.endpoint.send(&req).await {
            Ok(reply) => {
                if reply.status.is_success() {
                    self.authenticated.store(true, Ordering::Relaxed);
                }
                Ok(reply)
            }
            Err(f) => Err(self.failed(f, group)),
        }
    }

    /// A failed request as the error it is: a 401 explained, a 403 with the right the account
    /// lacks.
    fn failed(&self, f: Failure, group: Option<&GroupName>) -> CallError {
        let Failure { method, path, kind } = f;
        let kind = match kind {
            CallErrorKind::Status {
                status: 401,
                message,
                ..
            } => CallErrorKind::Auth(self.unauthorized(&method, &path, &message)),
            CallErrorKind::Status {
                status: 403,
                message,
                retry_after,
            } if message.contains("Not authorized") => CallErrorKind::Status {
                status: 403,
                message: format!("{message}: {}", self.why_forbidden(group)),
                retry_after,
            },
            other => other,
        };
        self.err(&method, &path, group, kind)
    }

    /// What a 401 means: an unknown access key, keys that do not sign at all, or (when requests
    /// with these keys succeeded in this run) a signature the server computes differently for
    /// this request.
    fn unauthorized(&self, method: &Method, path: &str, message: &str) -> String {
        if message.contains("accessKey") && message.contains("not found") {
            format!("the server does not know the access key (401: {message}); check access_key")
        } else if self.authenticated.load(Ordering::Relaxed) {
            format!(
                "the server refused the signature of {method} {path} (401: {message}), though \
                 requests signed with the same keys succeeded in this run: the path was signed \
                 as {path}, and the server computed the signature of another rendering of it"
            )
        } else {
            format!(
                "the server refused the request signature (401: {message}); check access_key \
                 and secret_key"
            )
        }
    }

    /// Why a change was forbidden: which right the account lacks.
    fn why_forbidden(&self, group: Option<&GroupName>) -> String {
        let a = self
            .account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let group = group.map_or_else(|| "the group".to_owned(), |g| format!("\"{g}\""));
        let rights = match a.is_super {
            Some(false) => "it is neither a super user nor an admin of it".to_owned(),
            _ => "it must be a super user or an admin of it".to_owned(),
        };
        format!(
            "VinylDNS lets only a super user or an admin of a group change it; {} may not \
             change {group}: {rights}",
            a.describe()
        )
    }

    // `CallError` is the error every connector call returns; boxing it here would not pay.
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

    /// A GET's answer, sent once.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        group: Option<&GroupName>,
    ) -> Result<Reply, CallError> {
        self.request(Method::GET, path, query, None, group, &[])
            .await
    }

    /// A GET's answer in an observe, sent again after transient failures as the endpoint's read
    /// policy allows. Each try goes through [`Self::request`], which notes every success for the
    /// meaning of a later 401.
    async fn read(
        &self,
        path: &str,
        query: &[(&str, String)],
        group: Option<&GroupName>,
    ) -> Result<Reply, CallError> {
        self.endpoint
            .reads()
            .retry_idempotent(|| self.get(path, query, group))
            .await
    }

    /// A read of an observe, as [`Self::read`] sends it, decoded.
    async fn read_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        group: Option<&GroupName>,
    ) -> Result<T, CallError> {
        let reply = self.read(path, query, group).await?;
        self.decode(&reply, &Method::GET, path, group)
    }

    /// A paged list read whole, or the error that it was not.
    // `ObserveError` is the error every observe returns; boxing it here would not pay.
    #[allow(clippy::result_large_err)]
    fn paged<T>(&self, r: Result<Vec<T>, Paged<CallError>>) -> Result<Vec<T>, ObserveError> {
        r.map_err(|e| match e {
            Paged::Failed(e) => ObserveError::Call(e),
            Paged::Incomplete(m) => self.incomplete(m),
        })
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
                    dg.members.extend(missing.into_iter().map(UserKey::from));
                }
            }
            let sorted = sorted_names(admins.iter().map(|a| (*a).to_owned()));
            if sorted.iter().map(String::as_str).ne(admins.iter().copied()) {
                let d = adapted.get_or_insert_with(|| desired.clone());
                if let Some(attrs) = d
                    .groups
                    .get_mut(name)
                    .and_then(|dg| dg.extras.get_mut(TYPE))
                {
                    let list: Vec<Value> = sorted.into_iter().map(Value::from).collect();
                    attrs.insert("admins".to_owned(), Value::from(list));
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
        self.observe_groups(scope, users).await
    }

    /// Refuses what the server would refuse, per change: a create or update whose e-mail fails
    /// the server's rule (a membership-only update re-sends the stored e-mail, so that one is
    /// checked too), a description over 256 characters, admins none of whom is a user, a change
    /// to a group roster's account may not edit (it is neither a super user nor an admin of the
    /// group), an update that would take a non-super account's own admin seat away, and the
    /// deletion of a group that administers a zone or is named in a zone's ACL. It cannot see
    /// which groups own record sets: such a delete is refused by the server (400) when sent.
    async fn vet(
        &self,
        _desired: &Desired,
        observed: &Observed,
        plan: &Plan,
    ) -> Result<Vec<Rejection>, ObserveError> {
        self.vet_plan(observed, plan).await
    }

    fn compile(&self, plan: &Plan, observed: &Observed) -> Vec<VinylDnsCall> {
        self.compile_calls(plan, observed)
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
                if resp.status == StatusCode::NOT_FOUND {
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

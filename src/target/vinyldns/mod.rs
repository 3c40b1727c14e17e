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
pub mod config;

pub use config::VinylDnsConfig;
pub(crate) use config::VinylDnsKeys;
pub mod sigv4;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::debug;

use crate::config::Diagnostic;
use crate::model::{
    Attributes, Capabilities, Desired, Group, GroupKind, GroupName, MembershipWrites, Observed,
    ObservedGroup, UserKey,
};
use crate::plan::change::{Change, Plan};
use crate::plan::{Scope, fold};
use crate::retry::RetryPolicy;
use crate::target::http::{self, status_error, transport_error};
use crate::target::{
    Call, CallError, CallErrorKind, Named, ObserveError, Rejection, RetrySafety, Sent, Stage,
    Target, problem, resolve_users,
};

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
}

/// One group as read: the group, its members that are users, and the ids it holds that name no
/// user.
struct Read {
    group: api::Group,
    members: Vec<api::Member>,
    orphans: BTreeSet<String>,
}

/// The VinylDNS connector for one `[[target]]`.
pub struct VinylDnsTarget {
    name: String,
    base: String,
    access_key: crate::secret::Secret,
    secret_key: crate::secret::Secret,
    http: reqwest::Client,
    concurrency: NonZeroUsize,
    reads: RetryPolicy,
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

/// The server's rule for a group's e-mail, as an error message when it fails: one `@`, a local
/// part of letters, digits and `. _ + ! & -`, a domain of dot-separated labels (letters, digits,
/// inner hyphens, at most 63 characters) with at least one dot and at most `max_dots`, no leading,
/// trailing or doubled dot; and, when the server lists allowed domains, one of them (each entry,
/// `*` removed, matched as a suffix of the domain, as the server matches).
fn email_rule(email: &str, domains: &[String], max_dots: usize) -> Result<(), String> {
    let refused = |why: String| Err(format!("VinylDNS refuses the e-mail \"{email}\": {why}"));
    let (local, domain) = match email.split_once('@') {
        Some(parts) => parts,
        None => return refused("it has no @".into()),
    };
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+!&-".contains(c));
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !local_ok
        || !domain.split('.').all(label_ok)
        || email.starts_with('.')
        || email.ends_with('.')
        || email.contains("..")
    {
        return refused("it does not match the server's e-mail pattern".into());
    }
    let dots = domain.matches('.').count();
    if dots == 0 {
        return refused("its domain has no dot".into());
    }
    if dots > max_dots {
        return refused(format!(
            "its domain has {dots} dots, and the server allows at most {max_dots} after the @"
        ));
    }
    let allowed = domains.is_empty()
        || domains
            .iter()
            .any(|d| d == domain || domain.ends_with(&d.replace('*', "")));
    if !allowed {
        return refused(format!(
            "its domain is not one the server allows ({})",
            domains.join(", ")
        ));
    }
    Ok(())
}

/// Why an update's e-mail is refused: the new one, or the stored one, which every update sends
/// again.
fn resent(changed: Option<&str>, why: String) -> String {
    match changed {
        Some(_) => why,
        None => format!("every update re-sends the group's stored e-mail, and {why}"),
    }
}

/// The server stores a description in a column of 256 characters.
fn description_rule(d: &str) -> Option<String> {
    let n = d.chars().count();
    (n > 256)
        .then(|| format!("its description has {n} characters, and VinylDNS stores at most 256"))
}

/// Why admins none of whom is a user are refused.
fn no_admin(names: &[String]) -> String {
    format!(
        "none of its admins ({}) is a VinylDNS user, and a group needs one (VinylDNS creates a \
         user at its first login): the server would refuse every update of the group",
        names.join(", ")
    )
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
            email_dots: config.email_dots,
            own_user: config.user.clone(),
            users: Mutex::new(HashMap::new()),
            account: Mutex::new(Account::default()),
            orphans: Mutex::new(HashMap::new()),
            authenticated: AtomicBool::new(false),
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
        if status.is_success() {
            self.authenticated.store(true, Ordering::Relaxed);
        }
        if status.is_success() || accept.contains(&status) {
            return Ok(resp);
        }
        let kind = match status_error(resp).await {
            CallErrorKind::Status {
                status: 401,
                message,
                ..
            } => CallErrorKind::Auth(self.unauthorized(&method, path, &message)),
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
        Err(self.err(&method, path, group, kind))
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
        listing: Listing<'_>,
        retry: bool,
    ) -> Result<Vec<api::Group>, ObserveError> {
        let mut groups = Vec::new();
        let mut ids = HashSet::new();
        let mut cursors = HashSet::new();
        let mut start: Option<String> = None;
        loop {
            let mut q = vec![("maxItems", api::MAX_ITEMS.to_string())];
            if listing.all {
                q.push(("ignoreAccess", "true".to_owned()));
            }
            if listing.abridged {
                q.push(("abridged", "true".to_owned()));
            }
            if let Some(f) = listing.filter {
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

    /// Reads one group's members. The members read must be the ids the group holds, less ids
    /// that name no user (the members list leaves those out; each is confirmed with a lookup):
    /// any other difference means the group changed between the reads, and it is not observed
    /// half-way.
    async fn read_group(&self, g: api::Group) -> Result<Read, ObserveError> {
        let name = GroupName(g.name.clone());
        let members = self.list_members(&g.id, &name).await?;
        let listed: BTreeSet<&str> = g.members.iter().map(|m| m.id.as_str()).collect();
        let read: BTreeSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
        let changed = || {
            self.incomplete(format!(
                "the members of \"{name}\" changed while they were read ({} listed, {} read)",
                listed.len(),
                read.len()
            ))
        };
        if !read.is_subset(&listed) {
            return Err(changed());
        }
        let mut orphans = BTreeSet::new();
        for id in listed.difference(&read) {
            if self.user_exists(id, &name).await? {
                return Err(changed());
            }
            orphans.insert((*id).to_owned());
        }
        {
            let mut cache = self.users.lock().unwrap_or_else(|e| e.into_inner());
            for m in &members {
                cache.insert(fold(&m.user_name, CASE_INSENSITIVE), Some(m.id.clone()));
            }
        }
        Ok(Read {
            group: g,
            members,
            orphans,
        })
    }

    /// Whether a user id names a user (`GET /users/{id}`, 404 when not).
    async fn user_exists(&self, id: &str, group: &GroupName) -> Result<bool, CallError> {
        let path = api::user(id);
        self.reads
            .retry_idempotent(|| async {
                let resp = self
                    .request(
                        Method::GET,
                        &path,
                        &[],
                        None,
                        Some(group),
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                Ok(resp.status() != StatusCode::NOT_FOUND)
            })
            .await
    }

    /// The observed group: its members by user name; admins spelt as the desired state spells
    /// them (VinylDNS user names match without regard to case) and sorted as [`Target::prepare`]
    /// sorts the desired ones; roster's own entry left out when `hide` is its id.
    fn build_group(
        &self,
        read: Read,
        hide: Option<&str>,
        spelling: &HashMap<String, &UserKey>,
    ) -> ObservedGroup {
        let g = read.group;
        let mut group = Group::named(g.name.clone());
        group.description = g.description.clone().filter(|d| !d.is_empty());
        let mut admins = Vec::new();
        for m in &read.members {
            if hide == Some(m.id.as_str()) {
                continue;
            }
            group.members.insert(UserKey(m.user_name.clone()));
            if m.is_admin {
                let key = fold(&m.user_name, CASE_INSENSITIVE);
                let shown = spelling
                    .get(&key)
                    .map_or_else(|| m.user_name.clone(), |k| k.as_str().to_owned());
                admins.push(shown);
            }
        }
        let admins: Vec<Value> = sorted_names(admins).into_iter().map(Value::from).collect();
        group.extras.insert(
            TYPE.to_owned(),
            Attributes::from([
                ("email".to_owned(), Value::from(g.email.clone())),
                ("admins".to_owned(), Value::from(admins)),
            ]),
        );
        ObservedGroup {
            id: g.id,
            group,
            kind: GroupKind::Managed,
        }
    }

    /// Learns roster's own account from one abridged listing of every group (each group's lists
    /// hold only the caller's id): its id, the groups it administers, how many it belongs to.
    /// `full` is the same listing unabridged: the abridged answer counts as one only where it
    /// holds fewer ids than `full` somewhere (an older server ignores `abridged` and lists
    /// everyone, which must never be taken for the caller).
    async fn learn_account(&self, full: &[api::Group]) -> Result<(), ObserveError> {
        let listing = Listing {
            abridged: true,
            all: true,
            ..Listing::default()
        };
        let groups = self.list_groups(listing, true).await?;
        let sizes: HashMap<&str, usize> = full
            .iter()
            .map(|g| (g.id.as_str(), g.members.len() + g.admins.len()))
            .collect();
        let mut a = Account::default();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut cut = false;
        for g in groups.iter().filter(|g| !g.is_deleted()) {
            a.groups += 1;
            let n = g.members.len() + g.admins.len();
            cut |= sizes.get(g.id.as_str()).is_some_and(|full| n < *full);
            seen.extend(g.members.iter().chain(&g.admins).map(|m| m.id.as_str()));
            if !g.members.is_empty() {
                a.member_of += 1;
            }
            if !g.admins.is_empty() {
                a.admin_of.insert(g.id.clone());
            }
        }
        // A server that ignores `abridged` lists everyone: then nothing here is about the caller,
        // and roster knows no more of its account than the server tells it later.
        if seen.len() > 1 || !cut {
            debug!("the server did not abridge its list; roster's own account stays unknown");
            a = Account {
                groups: a.groups,
                ..Account::default()
            };
            if let Some(user) = &self.own_user {
                let key = UserKey(user.clone());
                let (_, id) = self.resolve_user(key).await?;
                a.id = id;
                a.admin_of = full
                    .iter()
                    .filter(|g| {
                        a.id.as_ref()
                            .is_some_and(|id| g.admins.iter().any(|r| &r.id == id))
                    })
                    .map(|g| g.id.clone())
                    .collect();
                a.member_of = full
                    .iter()
                    .filter(|g| {
                        a.id.as_ref()
                            .is_some_and(|id| g.members.iter().any(|r| &r.id == id))
                    })
                    .count();
                a.identified = a.id.is_some();
            }
        } else {
            a.id = seen.into_iter().next().map(str::to_owned);
            a.identified = true;
        }
        *self.account.lock().unwrap_or_else(|e| e.into_inner()) = a;
        Ok(())
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

    /// Whether roster's account is a super user, found out with reads and remembered for the run:
    /// from the `isSuper` flag of its own entry among the admins of a group it administers, else
    /// from whether the groups listed for it without `ignoreAccess` go beyond its own (only a
    /// super or support user sees every group there). `None` when the API cannot tell (it is a
    /// member of every group and an admin of none).
    async fn super_status(&self) -> Result<Option<bool>, ObserveError> {
        let a = self
            .account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if a.is_super.is_some() {
            return Ok(a.is_super);
        }
        let found = match (&a.id, a.admin_of.iter().next()) {
            (Some(me), Some(gid)) => {
                let path = api::group_admins(gid);
                let list: api::AdminList = self.read_json(&path, &[], None).await?;
                Some(list.admins.iter().any(|u| &u.id == me && u.is_super))
            }
            // A server that ignores `abridged`, or an account in every group: no read tells.
            _ if !a.identified || a.member_of >= a.groups => None,
            _ => {
                let mine = Listing {
                    abridged: true,
                    ..Listing::default()
                };
                let seen = self.list_groups(mine, true).await?;
                Some(seen.len() > a.member_of)
            }
        };
        self.account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_super = found;
        Ok(found)
    }

    /// The e-mail domains the server allows (empty: all). A server without the list (before
    /// VinylDNS 0.18.2, which had no domain rule) answers 404: no rule.
    async fn valid_domains(&self) -> Result<Vec<String>, ObserveError> {
        let path = api::VALID_DOMAINS;
        let resp = self
            .reads
            .retry_idempotent(|| {
                self.request(Method::GET, path, &[], None, None, &[StatusCode::NOT_FOUND])
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        Ok(self.decode(resp, &Method::GET, path, None).await?)
    }

    /// Every zone, every page (`ignoreAccess=true`), for the groups they keep from deletion.
    async fn list_zones(&self) -> Result<Vec<api::Zone>, ObserveError> {
        let mut zones = Vec::new();
        let mut cursors = HashSet::new();
        let mut start: Option<String> = None;
        loop {
            let mut q = vec![
                ("maxItems", "100".to_owned()),
                ("ignoreAccess", "true".to_owned()),
            ];
            if let Some(s) = &start {
                q.push(("startFrom", s.clone()));
            }
            let page: api::ZonePage = self.read_json(api::ZONES, &q, None).await?;
            zones.extend(page.zones);
            match page.next_id {
                None => return Ok(zones),
                Some(next) => {
                    if !cursors.insert(next.clone()) {
                        return Err(self.incomplete(format!(
                            "GET {} returned the cursor {next} twice",
                            api::ZONES
                        )));
                    }
                    start = Some(next);
                }
            }
        }
    }

    /// The ids a write to group `group_id` keeps whatever the desired state says: the ids without
    /// a user that the observe found in it, and roster's own id where it keeps its seat.
    fn kept_ids(&self, group_id: &str) -> BTreeSet<String> {
        let mut keep = self
            .orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group_id)
            .cloned()
            .unwrap_or_default();
        let a = self.account.lock().unwrap_or_else(|e| e.into_inner());
        if let (true, Some(id)) = (a.keeps_own_seat(), &a.id) {
            keep.insert(id.clone());
        }
        keep
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
        let listing = Listing {
            filter: Some(name.as_str()),
            all: true,
            ..Listing::default()
        };
        let groups = match self.list_groups(listing, false).await {
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

    /// Replaces the fields and lists of a group an earlier attempt of roster's own create made
    /// with those of `new`, keeping roster's own seat and the ids without a user.
    async fn replace(
        &self,
        have: &api::Group,
        new: &NewGroup,
        name: &GroupName,
    ) -> Result<(), CallError> {
        let mut keep = self.kept_ids(&have.id);
        {
            // A group roster created holds one admin the desired state does not name: the
            // creating account's seat, which it keeps even when the run has not yet learned its id.
            let a = self.account.lock().unwrap_or_else(|e| e.into_inner());
            let extra: Vec<&api::IdRef> = have
                .admins
                .iter()
                .filter(|r| !new.admins.contains(&r.id))
                .collect();
            if let ([own], None, true) = (extra.as_slice(), &a.id, a.keeps_own_seat()) {
                keep.insert(own.id.clone());
            }
        }
        let held = |refs: &[api::IdRef]| -> BTreeSet<String> {
            refs.iter()
                .map(|r| r.id.clone())
                .filter(|id| keep.contains(id))
                .collect()
        };
        let admins: BTreeSet<String> = new.admins.union(&held(&have.admins)).cloned().collect();
        let members: BTreeSet<String> = new
            .members
            .iter()
            .chain(&admins)
            .cloned()
            .chain(held(&have.members))
            .collect();
        self.put_lists(have, new, &members, &admins, name).await
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
        let own = {
            let mut a = self.account.lock().unwrap_or_else(|e| e.into_inner());
            // The creator's seat is the only one the answer adds: learn the account from it.
            let added: Vec<&&String> = admins
                .iter()
                .filter(|id| !new.admins.contains(**id))
                .collect();
            if let ([id], None) = (added.as_slice(), &a.id) {
                a.id = Some((**id).clone());
            }
            a.id.clone().filter(|_| a.keeps_own_seat())
        };
        let mut want_members: BTreeSet<&String> = new.members.union(&new.admins).collect();
        let mut want_admins: BTreeSet<&String> = new.admins.iter().collect();
        if let Some(id) = &own {
            want_members.insert(id);
            want_admins.insert(id);
        }
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
        // Ids without a user and roster's own seat stay as they are.
        let keep = self.kept_ids(&have.id);
        admins.extend(
            have.admins
                .iter()
                .filter(|m| keep.contains(&m.id))
                .map(|m| m.id.clone()),
        );
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
        let mut observed = Observed::default();
        let mut in_scope = Vec::new();
        let all = Listing {
            all: true,
            ..Listing::default()
        };
        let listed = self.list_groups(all, true).await?;
        self.learn_account(&listed).await?;
        for g in listed {
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
        let reads: Vec<Read> = futures::stream::iter(in_scope)
            .map(|g| self.read_group(g))
            .buffer_unordered(self.concurrency.get())
            .try_collect()
            .await?;
        let spelling: HashMap<String, &UserKey> = users
            .iter()
            .map(|u| (fold(u.as_str(), CASE_INSENSITIVE), u))
            .collect();
        // roster's own account is hidden unless the desired state names it.
        let hide = {
            let mut a = self.account.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = a.id.clone() {
                a.name = reads
                    .iter()
                    .flat_map(|r| &r.members)
                    .find(|m| m.id == id)
                    .map(|m| m.user_name.clone());
            }
            a.desired = a
                .name
                .as_ref()
                .is_some_and(|n| spelling.contains_key(&fold(n, CASE_INSENSITIVE)));
            if a.desired { None } else { a.id.clone() }
        };
        let mut orphans = HashMap::new();
        for r in reads {
            if !r.orphans.is_empty() {
                orphans.insert(r.group.id.clone(), r.orphans.clone());
            }
            let g = self.build_group(r, hide.as_deref(), &spelling);
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
        *self.orphans.lock().unwrap_or_else(|e| e.into_inner()) = orphans;
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
        let mut out = Vec::new();
        if plan.changes.is_empty() {
            return Ok(out);
        }
        let ids: HashMap<String, &String> = observed
            .users
            .iter()
            .map(|(k, v)| (fold(k.as_str(), CASE_INSENSITIVE), v))
            .collect();
        let known = |names: &Value| -> (Vec<String>, usize) {
            let names: Vec<String> = names
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let n = names
                .iter()
                .filter(|n| ids.contains_key(&fold(n, CASE_INSENSITIVE)))
                .count();
            (names, n)
        };
        let writes = plan
            .changes
            .iter()
            .any(|c| !matches!(c, Change::DeleteGroup { .. }));
        let domains = if writes {
            self.valid_domains().await?
        } else {
            Vec::new()
        };
        let existing: BTreeSet<&GroupName> = plan
            .changes
            .iter()
            .map(Change::group)
            .filter(|g| observed.groups.contains_key(*g))
            .collect();
        let account = self
            .account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let admin_of = |g: &GroupName| {
            observed
                .groups
                .get(g)
                .is_some_and(|o| account.admin_of.contains(&o.id))
        };
        let is_super = if existing.iter().all(|g| admin_of(g)) {
            account.is_super
        } else {
            self.super_status().await?
        };
        let zones = if plan
            .changes
            .iter()
            .any(|c| matches!(c, Change::DeleteGroup { .. }))
        {
            self.list_zones().await?
        } else {
            Vec::new()
        };
        let who = account.describe();
        // The right to change each existing group: one rejection covers all its changes.
        for g in &existing {
            if is_super == Some(false) && !admin_of(g) {
                out.push(Rejection::of_group(
                    g,
                    format!(
                        "{who} may not change this group: VinylDNS lets only a super user or an \
                         admin of the group change it, and the account is neither; make it an \
                         admin of the group or a super user"
                    ),
                ));
            }
        }
        let own = account.name.as_deref().map(|n| fold(n, CASE_INSENSITIVE));
        let locks_out = format!(
            "this would remove {who} from the admins of the group; it is no super user, so it \
             could not change the group again: keep it among the admins"
        );
        let mut emailed: BTreeSet<&GroupName> = BTreeSet::new();
        for (i, c) in plan.changes.iter().enumerate() {
            let group = c.group();
            let stored = observed.groups.get(group);
            if let Change::RemoveMember { member, .. } = c
                && own.as_deref() == Some(fold(member.as_str(), CASE_INSENSITIVE).as_str())
                && admin_of(group)
                && is_super != Some(true)
            {
                out.extend(Rejection::of_change(plan, i, locks_out.clone()));
            }
            let stored_email = stored
                .and_then(|o| o.group.extras.get(TYPE))
                .and_then(|a| a.get("email"))
                .and_then(Value::as_str);
            match c {
                Change::CreateGroup {
                    description,
                    attributes,
                    ..
                } => {
                    let email = attributes.get("email").and_then(Value::as_str);
                    if let Some(Err(why)) = email.map(|e| email_rule(e, &domains, self.email_dots))
                    {
                        out.extend(Rejection::of_change(plan, i, why));
                    }
                    if let Some(why) = description.as_deref().and_then(description_rule) {
                        out.extend(Rejection::of_change(plan, i, why));
                    }
                    let (names, found) = known(attributes.get("admins").unwrap_or(&Value::Null));
                    if found == 0 {
                        out.extend(Rejection::of_change(plan, i, no_admin(&names)));
                    }
                    emailed.insert(group);
                }
                Change::UpdateGroup { fields, .. } => {
                    if let Some(why) = fields
                        .get("description")
                        .and_then(|f| f.to.as_str())
                        .and_then(description_rule)
                    {
                        out.extend(Rejection::of_change(plan, i, why));
                    }
                    if let Some(f) = fields.get("admins") {
                        let (names, found) = known(&f.to);
                        if found == 0 {
                            out.extend(Rejection::of_change(plan, i, no_admin(&names)));
                        }
                        let keeps = own.as_ref().is_none_or(|own| {
                            names.iter().any(|n| fold(n, CASE_INSENSITIVE) == *own)
                        });
                        if account.desired && !keeps && admin_of(group) && is_super != Some(true) {
                            out.extend(Rejection::of_change(plan, i, locks_out.clone()));
                        }
                    }
                    if emailed.insert(group) {
                        let changed = fields.get("email").and_then(|f| f.to.as_str());
                        if let Some(Err(why)) = changed
                            .or(stored_email)
                            .map(|e| email_rule(e, &domains, self.email_dots))
                        {
                            out.push(Rejection::of_group(group, resent(changed, why)));
                        }
                    }
                }
                Change::AddMember { .. } | Change::RemoveMember { .. }
                    if stored.is_some() && emailed.insert(group) =>
                {
                    let changed = plan.changes.iter().find_map(|c| match c {
                        Change::UpdateGroup { group: g, fields } if g == group => {
                            fields.get("email").and_then(|f| f.to.as_str())
                        }
                        _ => None,
                    });
                    let email = changed.or(stored_email);
                    if let Some(Err(why)) = email.map(|e| email_rule(e, &domains, self.email_dots))
                    {
                        out.push(Rejection::of_group(group, resent(changed, why)));
                    }
                }
                Change::DeleteGroup { .. } => {
                    let Some(id) = stored.map(|o| o.id.as_str()) else {
                        continue;
                    };
                    if let Some(z) = zones.iter().find(|z| z.admin_group_id == id) {
                        out.extend(Rejection::of_change(
                            plan,
                            i,
                            format!(
                                "VinylDNS refuses to delete a group that administers a zone, and \
                                 this one administers zone \"{}\": give the zone another admin \
                                 group first",
                                z.name
                            ),
                        ));
                    } else if let Some(z) = zones.iter().find(|z| {
                        z.acl.as_ref().is_some_and(|a| {
                            a.rules.iter().any(|r| r.group_id.as_deref() == Some(id))
                        })
                    }) {
                        out.extend(Rejection::of_change(
                            plan,
                            i,
                            format!(
                                "VinylDNS refuses to delete a group named in a zone's ACL rule, \
                                 and zone \"{}\" has a rule for this one: remove the rule first",
                                z.name
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
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

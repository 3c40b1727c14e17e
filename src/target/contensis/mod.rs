//! The Contensis connector: security groups of the Contensis Management API.
//!
//! Contensis nests groups and writes membership one member per call (PUT to add, DELETE to
//! remove), which are idempotent and so safe to retry; a create is a POST, which is rechecked by
//! name after an ambiguous failure and adopted on 409, so it is never duplicated. Groups are read
//! with paging and the count checked against `totalCount`; direct members and children are read
//! without `includeInherited`. Once a group's GUID is known, write paths use it.

pub mod api;
pub mod config;
pub mod sim;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::debug;

use crate::exec::RetryPolicy;
use crate::model::{
    Capabilities, Group, GroupKind, GroupName, MembershipWrites, Observed, ObservedGroup, UserKey,
};
use crate::plan::change::{Change, Plan};
use crate::plan::{Scope, fold};
use crate::target::http::status_error;
use crate::target::oauth::{BearerSession, FormValue};
use crate::target::{
    Call, CallError, CallErrorKind, Named, ObserveError, RetrySafety, Sent, Stage, Target,
    resolve_users,
};

use config::{ContensisAuth, ContensisConfig};

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
    /// G4: replace the group with this body.
    Update(GroupRef, Value),
    /// M2: add a user (by GUID, or by username when the GUID is unknown).
    AddMember(GroupRef, String),
    /// M4: remove a user.
    RemoveMember(GroupRef, String),
    /// C2: add a child group.
    AddChild(GroupRef, GroupRef),
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
    child: Option<GroupName>,
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
            Op::AddMember(..) | Op::RemoveMember(..) => Stage::Members,
            Op::AddChild(..) | Op::RemoveChild(..) => Stage::Children,
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
            .chain(self.child.as_ref())
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
            .map_err(|f| self.err(&f.method, &f.path, group, f.kind))
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
        let mut last = String::new();
        for _ in 0..2 {
            let mut items = Vec::new();
            let mut index = 0u64;
            let total = loop {
                let q = [
                    ("pageIndex", index.to_string()),
                    ("pageSize", PAGE_SIZE.to_string()),
                ];
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

    async fn observe_group(&self, g: api::Group) -> Result<ObservedGroup, ObserveError> {
        let name = GroupName(g.name.clone());
        let kind = match g.kind.as_deref() {
            Some("sys") => GroupKind::System,
            Some("external") => GroupKind::External,
            _ => GroupKind::Managed,
        };
        let mut group = Group::named(g.name.clone());
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
                group.members.insert(UserKey(u.username));
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
        Ok(ObservedGroup {
            id: g.id,
            group,
            kind,
        })
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

    fn kind_of(observed: &Observed, name: &GroupName) -> &'static str {
        match observed.groups.get(name).map(|g| g.kind) {
            Some(GroupKind::System) => "sys",
            Some(GroupKind::External) => "external",
            _ => "contensis",
        }
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
        let groups: Vec<ObservedGroup> = futures::stream::iter(in_scope)
            .map(|g| self.observe_group(g))
            .buffer_unordered(self.concurrency.get())
            .try_collect()
            .await?;
        let mut members: HashSet<String> = HashSet::new();
        for g in groups {
            members.extend(g.group.members.iter().map(|m| fold(m.as_str(), true)));
            observed.groups.insert(g.group.name.clone(), g);
        }

        // Resolve only the desired users not already seen as members: one U1 each.
        let unresolved: Vec<UserKey> = users
            .iter()
            .filter(|u| !members.contains(&fold(u.as_str(), true)))
            .cloned()
            .collect();
        resolve_users(&mut observed, unresolved, self.concurrency, |u| {
            self.resolve_user(u)
        })
        .await?;
        Ok(observed)
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
        let user_slot = |u: &UserKey| {
            user_ids
                .get(&fold(u.as_str(), true))
                .map_or_else(|| u.as_str().to_owned(), |id| (*id).clone())
        };
        let call = |i: usize, op: Op, group: &GroupName, child: Option<&GroupName>| ContensisCall {
            op,
            group: group.clone(),
            child: child.cloned(),
            covers: vec![i],
        };
        plan.changes
            .iter()
            .enumerate()
            .map(|(i, change)| match change {
                Change::CreateGroup {
                    group,
                    description,
                    attributes,
                } => call(
                    i,
                    Op::Create(api::create_body(
                        group.as_str(),
                        description.as_deref(),
                        attributes.get("custom"),
                    )),
                    group,
                    None,
                ),
                Change::UpdateGroup { group, fields } => {
                    let have = observed.groups.get(group);
                    let id = have.map(|g| g.id.clone()).unwrap_or_default();
                    let to = |k: &str| fields.get(k).map(|f| f.to.clone());
                    let name = to("name")
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| group.as_str().to_owned());
                    let description = match to("description") {
                        Some(v) => v.as_str().map(str::to_owned),
                        None => have.and_then(|g| g.group.description.clone()),
                    };
                    let custom = to("custom").unwrap_or_else(|| {
                        have.and_then(|g| g.group.extras.get(TYPE))
                            .and_then(|a| a.get("custom").cloned())
                            .unwrap_or_else(|| Value::Object(Default::default()))
                    });
                    let body = api::update_body(
                        &id,
                        &name,
                        description.as_deref(),
                        Self::kind_of(observed, group),
                        &custom,
                    );
                    call(i, Op::Update(gref(group), body), group, None)
                }
                Change::AddMember { group, member } => call(
                    i,
                    Op::AddMember(gref(group), user_slot(member)),
                    group,
                    None,
                ),
                Change::RemoveMember { group, member } => call(
                    i,
                    Op::RemoveMember(gref(group), user_slot(member)),
                    group,
                    None,
                ),
                Change::AddChild { group, child } => call(
                    i,
                    Op::AddChild(gref(group), gref(child)),
                    group,
                    Some(child),
                ),
                Change::RemoveChild { group, child } => call(
                    i,
                    Op::RemoveChild(gref(group), gref(child)),
                    group,
                    Some(child),
                ),
                Change::DeleteGroup { group } => call(i, Op::Delete(gref(group)), group, None),
            })
            .collect()
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
            Op::Update(r, body) => {
                let path = api::group(&self.group_slot(r));
                self.request(Method::PUT, &path, &[], Some(body), g, &[])
                    .await?;
                Ok(Sent::Done)
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
            Op::AddChild(r, c) => {
                let path = api::group_child(&self.group_slot(r), &self.group_slot(c));
                let resp = self
                    .request(Method::PUT, &path, &[], None, g, &[StatusCode::CONFLICT])
                    .await?;
                Ok(already_if(
                    resp.status() == StatusCode::CONFLICT,
                    "already a child",
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

fn already_if(already: bool, why: &str) -> Sent {
    if already {
        Sent::AlreadyDone(why.to_owned())
    } else {
        Sent::Done
    }
}

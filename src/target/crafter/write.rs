//! Writing Studio: the calls a plan compiles to, and sending each through its API (API 2's
//! bulk membership calls, API 1's one call per member), with the answers that mean "already
//! done" read as such.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tracing::debug;

use super::config::CrafterApi;
use super::{CrafterCall, CrafterTarget, GroupRef, Member, Op, api};
use crate::model::{GroupName, Observed, UserKey};
use crate::plan::change::{Change, Plan};
use crate::target::{CallError, CallErrorKind, Named, Sent};

impl CrafterTarget {
    /// The calls that carry out `plan`: one per group change, API 2's member changes gathered
    /// into as few bulk calls as the request line allows.
    pub(super) fn compile_calls(&self, plan: &Plan, observed: &Observed) -> Vec<CrafterCall> {
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
                    // Adding members (`POST …/members`) takes its users in the body: one call per group.
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
                    // Removing members (`DELETE …/members`) takes its users in the query: a new
                    // call when the request line would pass its limit.
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

    /// Sends a call through API 2.
    pub(super) async fn send_v2(&self, call: &CrafterCall) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        match &call.op {
            Op::Create { desc } => {
                let m = Method::POST;
                let mut body = json!({ "name": call.group.as_str() });
                if let Some(d) = desc {
                    body["desc"] = Value::from(d.as_str());
                }
                let r = self
                    .call(
                        m.clone(),
                        api::GROUPS,
                        &[],
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
                let created: api::GroupAnswer =
                    r.json().map_err(|k| self.err(&m, api::GROUPS, g, k))?;
                self.remember(&created.group.name, &created.group.id.to_string());
                Ok(Sent::Done)
            }
            Op::Update { group, desc } => {
                let m = Method::PATCH;
                let id = self.group_id(group, &m, api::GROUPS)?;
                let bare = json!({ "id": id, "desc": desc });
                if self.patch_without_name.load(Ordering::Relaxed) {
                    self.call(m, api::GROUPS, &[], Some(&bare), g, &[]).await?;
                    return Ok(Sent::Done);
                }
                // Studio 4.0.0 to 4.0.2 replace the name as well (without it the update fails);
                // 4.0.3 and later have no `name` in an update and ignore it, unless strict about
                // unknown fields: a 400 without validation errors is that, and the update is sent
                // again without the name (which such a Studio never replaces).
                let mut whole = bare.clone();
                whole["name"] = Value::from(call.group.as_str());
                let r = self
                    .call(
                        m.clone(),
                        api::GROUPS,
                        &[],
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
                self.call(m, api::GROUPS, &[], Some(&bare), g, &[]).await?;
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
                self.call(m, &path, &[], Some(&body), g, &[]).await?;
                Ok(Sent::Done)
            }
            Op::RemoveMembers { group, users } => {
                let m = Method::DELETE;
                let id = self.group_id(group, &m, api::GROUPS)?;
                let path = api::members(&id.to_string());
                let q: Vec<(&str, String)> = users.iter().map(Member::query_pair).collect();
                self.call(m, &path, &q, None, g, &[]).await?;
                Ok(Sent::Done)
            }
            Op::Delete(group) => {
                let m = Method::DELETE;
                let id = self.group_id(group, &m, api::GROUPS)?;
                let q = [("id", id.to_string())];
                let r = self
                    .call(
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

    /// Sends a call through API 1, reading its non-idempotent answers as the outcomes they are.
    pub(super) async fn send_v1(&self, call: &CrafterCall, site: &str) -> Result<Sent, CallError> {
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
                    .call(
                        m.clone(),
                        &path,
                        &[],
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
                self.call(m, &path, &[], Some(&body), g, &[]).await?;
                Ok(Sent::Done)
            }
            Op::Delete(_) => {
                let path = api::v1("delete.json");
                let body = json!({ "group_name": name, "site_id": site });
                let Some(e) = self.v1_call_or_404(&m, &path, &body, g).await? else {
                    return Ok(Sent::Done);
                };
                if e.message == "Group not found" {
                    Ok(Sent::AlreadyDone("already deleted".into()))
                } else {
                    Err(self.status_err(&m, &path, g, StatusCode::NOT_FOUND, e.message))
                }
            }
            Op::AddMember(user) => {
                let path = api::v1("add-user.json");
                let body = json!({ "username": user, "group_name": name, "site_id": site });
                let accept = [StatusCode::CONFLICT, StatusCode::NOT_FOUND];
                let r = self
                    .call(m.clone(), &path, &[], Some(&body), g, &accept)
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
                let Some(e) = self.v1_call_or_404(&m, &path, &body, g).await? else {
                    return Ok(Sent::Done);
                };
                // "User not found" also means "not a member": done, if the group still exists.
                if e.message == "User not found" && self.v1_group_exists(&call.group, site).await? {
                    Ok(Sent::AlreadyDone("not a member".into()))
                } else {
                    Err(self.status_err(&m, &path, g, StatusCode::NOT_FOUND, e.message))
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

    /// Sends an API 1 write that Studio may answer with 404: `None` when it succeeded, the
    /// 404's error (whose message says what was not found) otherwise.
    async fn v1_call_or_404(
        &self,
        method: &Method,
        path: &str,
        body: &Value,
        group: Option<&GroupName>,
    ) -> Result<Option<api::ApiError>, CallError> {
        let r = self
            .call(
                method.clone(),
                path,
                &[],
                Some(body),
                group,
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        Ok((r.status == StatusCode::NOT_FOUND).then(|| api::error_of(r.status, &r.body)))
    }
}

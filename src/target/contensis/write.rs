//! Writing to Contensis: compiling a plan into the fewest calls (one bulk add per group for its
//! new members and one for its new children, one removal per member or child), and sending each
//! call with the reads that settle what an ambiguous or refused answer means.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::{ContensisCall, ContensisTarget, GroupRef, Op, api, with_note};
use crate::model::{GroupName, Observed, UserKey};
use crate::plan::change::{Change, Plan};
use crate::target::{CallError, CallErrorKind, Named, Sent, UserIds};

/// The calls that carry out `plan`, given what was `observed`.
pub(super) fn compile(plan: &Plan, observed: &Observed) -> Vec<ContensisCall> {
    let gref = |name: &GroupName| match observed.groups.get(name) {
        Some(g) => GroupRef::Id(g.id.clone()),
        None => GroupRef::Name(name.clone()),
    };
    // Users by folded key, so that a member spelled differently still finds its GUID.
    let user_ids = UserIds::of(observed, true);
    let user_id = |u: &UserKey| user_ids.get(u.as_str()).cloned();
    let user_slot = |u: &UserKey| user_id(u).unwrap_or_else(|| u.as_str().to_owned());
    let call = |i: usize, op: Op, group: &GroupName| ContensisCall {
        op,
        group: group.clone(),
        children: Vec::new(),
        covers: vec![i],
    };
    let mut calls = Vec::new();
    // One bulk add per group for its new members, one for its new children, each placed
    // where the group's first addition is.
    let mut adds: BTreeMap<&GroupName, usize> = BTreeMap::new();
    let mut kids: BTreeMap<&GroupName, usize> = BTreeMap::new();
    for (i, change) in plan.changes.iter().enumerate() {
        match change {
            Change::CreateGroup {
                group,
                description,
                attributes,
            } => calls.push(call(
                i,
                Op::Create(api::create_body(
                    group.as_str(),
                    description.as_deref(),
                    attributes.get("custom"),
                )),
                group,
            )),
            Change::UpdateGroup { group, fields } => {
                let set: Map<String, Value> = fields
                    .iter()
                    .map(|(k, f)| (k.clone(), f.to.clone()))
                    .collect();
                calls.push(call(i, Op::Update(gref(group), set), group));
            }
            Change::AddMember { group, member } => match user_id(member) {
                Some(id) => {
                    let at = *adds.entry(group).or_insert_with(|| {
                        calls.push(call(i, Op::AddMembers(gref(group), Vec::new()), group));
                        calls.len() - 1
                    });
                    let c = &mut calls[at];
                    if let Op::AddMembers(_, users) = &mut c.op {
                        users.push((member.clone(), id));
                    }
                    if c.covers.last() != Some(&i) {
                        c.covers.push(i);
                    }
                }
                None => calls.push(call(
                    i,
                    Op::AddMember(gref(group), member.as_str().to_owned()),
                    group,
                )),
            },
            Change::RemoveMember { group, member } => calls.push(call(
                i,
                Op::RemoveMember(gref(group), user_slot(member)),
                group,
            )),
            Change::AddChild { group, child } => {
                let at = *kids.entry(group).or_insert_with(|| {
                    calls.push(call(i, Op::AddChildren(gref(group), Vec::new()), group));
                    calls.len() - 1
                });
                let c = &mut calls[at];
                if let Op::AddChildren(_, children) = &mut c.op {
                    children.push((child.clone(), gref(child)));
                }
                c.children.push(child.clone());
                if c.covers.last() != Some(&i) {
                    c.covers.push(i);
                }
            }
            Change::RemoveChild { group, child } => {
                let mut c = call(i, Op::RemoveChild(gref(group), gref(child)), group);
                c.children.push(child.clone());
                calls.push(c);
            }
            Change::DeleteGroup { group } => calls.push(call(i, Op::Delete(gref(group)), group)),
        }
    }
    calls
}

impl ContensisTarget {
    /// Sends one call, once.
    pub(super) async fn send_call(&self, call: &ContensisCall) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        match &call.op {
            Op::Create(body) => {
                let reply = self
                    .call(
                        Method::POST,
                        api::GROUPS,
                        Some(body),
                        g,
                        &[StatusCode::CONFLICT],
                    )
                    .await?;
                if reply.status == StatusCode::CONFLICT {
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
                let created: api::Group = self.decode(&reply, &Method::POST, api::GROUPS, g)?;
                self.remember(&created.name, &created.id);
                Ok(Sent::Done)
            }
            Op::Update(r, set) => self.update(call, r, set).await,
            Op::AddMembers(r, users) => {
                let slot = self.group_slot(r);
                let items: Vec<(String, String)> = users
                    .iter()
                    .map(|(u, id)| (u.as_str().to_owned(), id.clone()))
                    .collect();
                let path = api::group_users(&slot);
                self.bulk_add(call, &path, &path, &items, ("member", api::user))
                    .await
            }
            Op::AddChildren(r, children) => {
                let slot = self.group_slot(r);
                let mut items = Vec::new();
                for (name, c) in children {
                    let mut id = self.group_slot(c);
                    if uuid::Uuid::parse_str(&id).is_err() {
                        id = match self.find_group(name).await? {
                            Some(found) => found.id,
                            None => {
                                let path = api::group(name.as_str());
                                return Err(self.err(
                                    &Method::GET,
                                    &path,
                                    g,
                                    CallErrorKind::Status {
                                        status: 404,
                                        message: format!("child group \"{name}\" not found"),
                                        retry_after: None,
                                    },
                                ));
                            }
                        };
                    }
                    items.push((name.as_str().to_owned(), id));
                }
                let path = api::group_children(&slot);
                self.bulk_add(call, &path, &path, &items, ("child", api::group))
                    .await
            }
            Op::AddMember(r, user) => {
                let path = api::group_user(&self.group_slot(r), user);
                let reply = self
                    .call(Method::PUT, &path, None, g, &[StatusCode::CONFLICT])
                    .await?;
                Ok(already_if(
                    reply.status == StatusCode::CONFLICT,
                    "already a member",
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
                let reply = self
                    .call(Method::DELETE, &path, None, g, &[StatusCode::NOT_FOUND])
                    .await?;
                Ok(already_if(
                    reply.status == StatusCode::NOT_FOUND,
                    "already deleted",
                ))
            }
        }
    }

    /// Removes a member or child (`DELETE …/users/{user}` or `DELETE …/groups/{child}`). The API answers 404 both for "not in the group" (the
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
        let reply = self
            .call(Method::DELETE, path, None, g, &[StatusCode::NOT_FOUND])
            .await?;
        if reply.status != StatusCode::NOT_FOUND {
            return Ok(Sent::Done);
        }
        for p in exist {
            if !self.exists(p, &call.group).await? {
                return Err(self.err(&Method::DELETE, path, g, reply.status_error()));
            }
        }
        Ok(Sent::AlreadyDone(already.to_owned()))
    }

    /// `GET` then `PUT /api/security/groups/{group}`: reads the group and puts it back as read,
    /// with only `set` replaced, so that fields roster does not model survive a PUT that
    /// replaces the whole group. The read is fresh (not the observe's) so that an edit made
    /// since the plan is not undone.
    async fn update(
        &self,
        call: &ContensisCall,
        r: &GroupRef,
        set: &Map<String, Value>,
    ) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        let path = api::group(&self.group_slot(r));
        let reply = self.call(Method::GET, &path, None, g, &[]).await?;
        let mut body: Map<String, Value> = self.decode(&reply, &Method::GET, &path, g)?;
        for (k, v) in set {
            body.retain(|have, _| !have.eq_ignore_ascii_case(k));
            body.insert(k.clone(), v.clone());
        }
        let reply = self
            .call(Method::PUT, &path, Some(&Value::Object(body)), g, &[])
            .await?;
        if let Ok(updated) = reply.json::<api::Group>() {
            self.remember(&updated.name, &updated.id);
        }
        Ok(Sent::Done)
    }

    /// Adds `items` (name, GUID) to a group in one POST of their GUIDs to `path` (`…/users` or
    /// `…/groups`). What the
    /// server does with an id already there, or one it does not know, is undocumented, and a
    /// refusal may or may not have added the others; so after a refusal the group's direct links
    /// are read again from `list`, and what is still missing is sent once more. It is done when
    /// nothing is missing, and an error naming what was not added otherwise.
    async fn bulk_add(
        &self,
        call: &ContensisCall,
        path: &str,
        list: &str,
        items: &[(String, String)],
        (what, exists): (&str, fn(&str) -> String),
    ) -> Result<Sent, CallError> {
        let g = Some(&call.group);
        let refused = [
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
            StatusCode::CONFLICT,
            StatusCode::UNPROCESSABLE_ENTITY,
        ];
        let ids = |items: &[&(String, String)]| {
            Value::from(items.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>())
        };
        let all: Vec<&(String, String)> = items.iter().collect();
        let reply = self
            .call(Method::POST, path, Some(&ids(&all)), g, &refused)
            .await?;
        if reply.status.is_success() {
            return Ok(Sent::Done);
        }
        let mut refusal = reply.status_error();
        // The refusal is the cause to report when the group cannot be read again.
        let have = match self.linked_ids(list, &call.group).await {
            Ok(have) => have,
            Err(e) => {
                let note = format!("and reading the group again failed: {}", e.kind);
                return Err(self.err(&Method::POST, path, g, with_note(refusal, &note)));
            }
        };
        let mut missing: Vec<&(String, String)> = items
            .iter()
            .filter(|(_, id)| !have.contains(&id.to_lowercase()))
            .collect();
        if missing.is_empty() {
            return Ok(Sent::AlreadyDone(format!("already a {what}")));
        }
        // A 404 names no id: find the ones gone since the plan, and add the others.
        let mut gone = Vec::new();
        if matches!(refusal, CallErrorKind::Status { status: 404, .. }) {
            for m in std::mem::take(&mut missing) {
                if self.exists(&exists(&m.1), &call.group).await? {
                    missing.push(m);
                } else {
                    gone.push(m);
                }
            }
        }
        let quote = |v: &[&(String, String)]| {
            v.iter()
                .map(|(n, _)| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Fewer to add than were sent: the refusal was about the others (already there, or
        // gone), so the rest can go in.
        if !missing.is_empty() && missing.len() < items.len() {
            let reply = self
                .call(Method::POST, path, Some(&ids(&missing)), g, &refused)
                .await?;
            if reply.status.is_success() {
                if gone.is_empty() {
                    return Ok(Sent::Done);
                }
                missing.clear();
            } else {
                refusal = reply.status_error();
            }
        }
        let mut notes = Vec::new();
        if !gone.is_empty() {
            notes.push(format!("no longer exists: {}", quote(&gone)));
        }
        if !missing.is_empty() {
            notes.push(format!("not added: {}", quote(&missing)));
        }
        Err(self.err(
            &Method::POST,
            path,
            g,
            with_note(refusal, &notes.join("; ")),
        ))
    }
}

/// `AlreadyDone(why)` when `already`, else `Done`.
fn already_if(already: bool, why: &str) -> Sent {
    if already {
        Sent::AlreadyDone(why.to_owned())
    } else {
        Sent::Done
    }
}

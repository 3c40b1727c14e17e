//! Writing to UiPath Identity: compiling a plan into one call per changed group, and sending
//! each call with the reads that settle what a refused or ambiguous answer means.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use uuid::Uuid;

use super::{Op, UiPathCall, UiPathTarget, api};
use crate::model::{GroupName, Observed, UserKey};
use crate::plan::change::{Change, Plan};
use crate::target::{CallError, CallErrorKind, Named, Sent, UserIds};

/// The calls that carry out `plan`, given what was `observed`: one per changed group.
pub(super) fn compile(plan: &Plan, observed: &Observed) -> Vec<UiPathCall> {
    let ids = UserIds::of(observed, true);
    // The changes of each group, groups in plan order (the plan is already grouped by group).
    let mut index: HashMap<&GroupName, usize> = HashMap::new();
    let mut groups: Vec<(&GroupName, Vec<(usize, &Change)>)> = Vec::new();
    for (i, c) in plan.changes.iter().enumerate() {
        let at = *index.entry(c.group()).or_insert_with(|| {
            groups.push((c.group(), Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push((i, c));
    }
    let mut calls = Vec::new();
    for (group, changes) in groups {
        let covers: Vec<usize> = changes.iter().map(|(i, _)| *i).collect();
        let mut missing = Vec::new();
        let mut id_of = |u: &UserKey| match ids.get(u.as_str()) {
            Some(id) => Some(id.clone()),
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
        let have = observed.groups.get(group);
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
            group: group.clone(),
            covers,
            missing,
        });
    }
    calls
}

impl UiPathTarget {
    /// Sends one call, once.
    pub(super) async fn send_call(&self, call: &UiPathCall) -> Result<Sent, CallError> {
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
                let reply = self
                    .call(
                        Method::POST,
                        &path,
                        &[],
                        Some(&body),
                        g,
                        &[StatusCode::CONFLICT, StatusCode::BAD_REQUEST],
                    )
                    .await?;
                let status = reply.status;
                if status.is_success() {
                    return Ok(Sent::Done);
                }
                // A duplicate name is 409 on some servers and 400 on others: adopt the group
                // when one of that name exists, else it is the error it says.
                let refusal = self.err(&Method::POST, &path, g, reply.status_error());
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
                let reply = self
                    .call(
                        Method::DELETE,
                        &path,
                        &[],
                        None,
                        g,
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                Ok(if reply.status == StatusCode::NOT_FOUND {
                    Sent::AlreadyDone("already deleted".into())
                } else {
                    Sent::Done
                })
            }
        }
    }

    /// Whether a create that failed ambiguously landed after all.
    pub(super) async fn recheck_call(&self, call: &UiPathCall) -> Result<Option<Sent>, CallError> {
        match &call.op {
            // The group was created exactly when a group of the id it was sent with exists.
            Op::Create { id, members } => {
                let path = api::group(&self.identity, &self.partition, id);
                let reply = self
                    .call(
                        Method::GET,
                        &path,
                        &[],
                        None,
                        Some(&call.group),
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if reply.status == StatusCode::NOT_FOUND {
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
        let reply = self
            .call(
                Method::PUT,
                &path,
                &[],
                Some(&body),
                g,
                &[StatusCode::BAD_REQUEST],
            )
            .await?;
        if reply.status != StatusCode::BAD_REQUEST {
            return Ok(Sent::Done);
        }
        let refusal = self.err(&Method::PUT, &path, g, reply.status_error());
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
        self.call(Method::PUT, &path, &[], Some(&body), g, &[])
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
            self.call(Method::PUT, &path, &[], Some(&body), Some(&call.group), &[])
                .await?;
        }
        Ok(Sent::AlreadyDone(why.to_owned()))
    }
}

//! Writing VinylDNS: the one call each group's changes compile to, and sending it (a create
//! that adopts a group someone else made, an update applied to a fresh read, the creating
//! account's seat put right).

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::debug;

use super::{CASE_INSENSITIVE, Delta, NewGroup, Op, VinylDnsCall, VinylDnsTarget, api, attrs};
use crate::model::{GroupName, Observed};
use crate::plan::change::{Change, Plan};
use crate::target::{CallError, CallErrorKind, Named, Sent, UserIds};

impl VinylDnsTarget {
    /// The ids a write to group `group_id` keeps whatever the desired state says: the ids without
    /// a user that the observe found in it, and roster's own id where it keeps its seat.
    pub(super) fn kept_ids(&self, group_id: &str) -> BTreeSet<String> {
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
        self.decode(&resp, &Method::GET, &path, Some(name))
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

    /// Replaces the fields and lists of a group an earlier attempt of roster's own create made
    /// with those of `new`, keeping roster's own seat and the ids without a user.
    pub(super) async fn replace(
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
                .filter(|r| !new.admins.contains(&*r.id))
                .collect();
            if let ([own], None, true) = (extra.as_slice(), &a.id, a.keeps_own_seat()) {
                keep.insert(own.id.to_string());
            }
        }
        let held = |refs: &[api::IdRef]| -> BTreeSet<String> {
            refs.iter()
                .map(|r| r.id.to_string())
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
            refs.iter().map(|r| r.id.to_string()).collect()
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

    /// `POST /groups`; a 409 adopts the group of that name.
    pub(super) async fn create(
        &self,
        call: &VinylDnsCall,
        new: &NewGroup,
    ) -> Result<Sent, CallError> {
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
        if resp.status == StatusCode::CONFLICT {
            let mut conflict = resp.status_error();
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
        let created: api::Group = self.decode(&resp, &Method::POST, api::GROUPS, g)?;
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
        let members: BTreeSet<&str> = created.members.iter().map(|m| &*m.id).collect();
        let admins: BTreeSet<&str> = created.admins.iter().map(|m| &*m.id).collect();
        let own = {
            let mut a = self.account.lock().unwrap_or_else(|e| e.into_inner());
            // The creator's seat is the only one the answer adds: learn the account from it.
            let added: Vec<&&str> = admins
                .iter()
                .filter(|id| !new.admins.contains(**id))
                .collect();
            if let ([id], None) = (added.as_slice(), &a.id) {
                a.id = Some((**id).to_owned());
            }
            a.id.clone().filter(|_| a.keeps_own_seat())
        };
        let mut want_members: BTreeSet<&str> =
            new.members.union(&new.admins).map(String::as_str).collect();
        let mut want_admins: BTreeSet<&str> = new.admins.iter().map(String::as_str).collect();
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

    /// A fresh `GET /groups/{id}`, then `PUT /groups/{id}` with the delta applied.
    pub(super) async fn update(
        &self,
        call: &VinylDnsCall,
        id: &str,
        d: &Delta,
    ) -> Result<Sent, CallError> {
        let have = self.get_group(id, &call.group).await?;
        let mut members: BTreeSet<String> = have.members.iter().map(|m| m.id.to_string()).collect();
        let mut admins: BTreeSet<String> = match &d.admins {
            Some(a) => a.clone(),
            None => have.admins.iter().map(|m| m.id.to_string()).collect(),
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
                .filter(|m| keep.contains(&*m.id))
                .map(|m| m.id.to_string()),
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

    /// The calls that carry out `plan`: one per group.
    pub(super) fn compile_calls(&self, plan: &Plan, observed: &Observed) -> Vec<VinylDnsCall> {
        let ids = UserIds::of(observed, CASE_INSENSITIVE);
        let id_of = |k: &str| ids.get(k).cloned();
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
}

//! Reading Studio: the observe of each API (groups, members, and through API 2 the ids of the
//! desired users), and the lookups a send or recheck makes (a group by name, whether a group
//! exists).

use std::collections::{BTreeSet, HashMap, HashSet};

use reqwest::{Method, StatusCode};

use super::{CASE_INSENSITIVE, CrafterTarget, GROUP_PAGE_SIZE, PAGE_SIZE, USER_PAGE_SIZE, api};
use crate::model::{Group, GroupKind, GroupName, Observed, ObservedGroup, UserKey};
use crate::plan::{Scope, fold};
use crate::target::http::endpoint::Req;
use crate::target::http::paging::{Counted, Paged};
use crate::target::progress;
use crate::target::{CallError, CallErrorKind, Named, ObserveError};

impl CrafterTarget {
    /// One page of the group list (`GET /api/2/groups`), read again after transient failures
    /// when `retry` (an observe), else sent once (a send or recheck, which the executor retries).
    async fn group_page(
        &self,
        offset: u64,
        keyword: Option<&str>,
        retry: bool,
    ) -> Result<Counted<api::Group>, Paged<CallError>> {
        let mut q = Vec::new();
        if let Some(k) = keyword {
            q.push(("keyword", k.to_owned()));
        }
        q.push(("offset", offset.to_string()));
        q.push(("limit", GROUP_PAGE_SIZE.to_string()));
        let req = Req::get(api::GROUPS).query(&q);
        let p: api::GroupPage = if retry {
            self.read(&req, None).await?
        } else {
            self.get(&req, None).await?
        };
        Ok(Counted {
            items: p.groups,
            total: p.total,
        })
    }

    /// The get-by-name the create (`POST /api/2/groups`) lacks: the group list with `keyword` (a
    /// substring match), every page, then an exact match as Studio compares names. Each page is
    /// sent once: this is part of a send or recheck, which the executor retries.
    pub(super) async fn find_group_v2(
        &self,
        name: &GroupName,
    ) -> Result<Option<api::Group>, CallError> {
        let all = self
            .counted(&format!("GET {}", api::GROUPS), |offset| {
                self.group_page(offset, Some(name.as_str()), false)
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

    /// Observes through API 2: every group, the members of those in scope, and the ids of the
    /// desired users.
    pub(super) async fn observe_v2(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        let mut observed = Observed::default();
        let all = self
            .counted(&format!("GET {}", api::GROUPS), |offset| {
                self.group_page(offset, None, true)
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
        let groups: Vec<(ObservedGroup, Vec<(UserKey, String)>)> =
            progress::read_each("groups", in_scope, self.concurrency.get(), |g| {
                self.observe_group_v2(g)
            })
            .await?;
        let mut members: HashSet<String> = HashSet::new();
        for (g, users) in groups {
            members.extend(g.group.members.iter().map(|m| fold(m.as_str(), true)));
            // Members are removed by id.
            observed.users.extend(users);
            observed.groups.insert(g.group.name.clone(), g);
        }

        // Adding members (`POST …/members`) fails whole on one unknown user, and the lookup of
        // one user (`GET /api/2/users/{id or username}`) finds soft-deleted users too (an add
        // would put them in a group whose member list never shows them), so the desired users
        // not seen as members are matched against the user list, which leaves deleted users out.
        // A key Studio cannot hold as a username is unknown without a call.
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
                .counted(&format!("GET {}", api::USERS), |offset| {
                    self.user_page(offset)
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

    /// One page of the user list (`GET /api/2/users`, soft-deleted users left out).
    async fn user_page(&self, offset: u64) -> Result<Counted<api::User>, Paged<CallError>> {
        let q = [
            ("offset", offset.to_string()),
            ("limit", USER_PAGE_SIZE.to_string()),
            ("sort", "id asc".to_owned()),
        ];
        let p: api::UserPage = self.read(&Req::get(api::USERS).query(&q), None).await?;
        Ok(Counted {
            items: p.users,
            total: p.total,
        })
    }

    /// A group and, when roster may change it, its members (with their ids).
    async fn observe_group_v2(
        &self,
        g: api::Group,
    ) -> Result<(ObservedGroup, Vec<(UserKey, String)>), ObserveError> {
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
                .counted(&format!("GET {path}"), |offset| {
                    let path = path.clone();
                    let name = name.clone();
                    async move {
                        let q = [
                            ("offset", offset.to_string()),
                            ("limit", PAGE_SIZE.to_string()),
                        ];
                        let req = Req::get(&path).query(&q);
                        let p: api::MemberPage = self.read(&req, Some(&name)).await?;
                        Ok(Counted {
                            items: p.users,
                            total: p.total,
                        })
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
                let key = UserKey::from(u.username);
                group.members.insert(key.clone());
                listed.push((key, u.id.to_string()));
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

    /// Observes through API 1: the site's groups, each with its members.
    pub(super) async fn observe_v1(
        &self,
        scope: &Scope,
        site: &str,
    ) -> Result<Observed, ObserveError> {
        let path = api::v1("get-per-site.json");
        let groups = self
            .counted(&format!("GET {path}"), |start| {
                let path = path.clone();
                async move {
                    let q = [
                        ("site_id", site.to_owned()),
                        ("start", start.to_string()),
                        ("number", PAGE_SIZE.to_string()),
                    ];
                    let p: api::V1GroupPage = self.read(&Req::get(&path).query(&q), None).await?;
                    Ok(Counted {
                        items: p.groups,
                        total: p.total,
                    })
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
            group.members = g
                .users
                .into_iter()
                .map(|u| UserKey::from(u.username))
                .collect();
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
    pub(super) async fn v1_group_exists(
        &self,
        group: &GroupName,
        site: &str,
    ) -> Result<bool, CallError> {
        let path = api::v1("get.json");
        let q = [
            ("group_name", group.as_str().to_owned()),
            ("site_id", site.to_owned()),
        ];
        let r = self
            .call(
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
}

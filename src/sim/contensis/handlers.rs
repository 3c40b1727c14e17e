//! The Contensis simulator's handlers, one per endpoint of the security API and the token
//! endpoint: each locks the state, checks the caller, changes what it may and answers.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::control;
use crate::sim::faults;

use super::*;

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) async fn not_found() -> Response {
    envelope(StatusCode::NOT_FOUND, "Resource not found", Value::Null)
}

pub(super) fn oauth_error(error: &str) -> Response {
    json_ok(StatusCode::BAD_REQUEST, json!({ "error": error }))
}

/// `POST /authenticate/connect/token`.
pub(super) async fn token(
    State(sim): State<ContensisSim>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Ok(Form(pairs)) = form else {
        return oauth_error("invalid_request");
    };
    let field = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mut st = sim.lock();
    let (user, refresh) = match field("grant_type") {
        Some("client_credentials") => {
            if field("client_id") != Some(st.client_id.as_str())
                || field("client_secret") != Some(st.client_secret.as_str())
            {
                return oauth_error("invalid_client");
            }
            (st.api_key_user, false)
        }
        Some("contensis_classic") => {
            let (Some(username), Some(password)) = (field("username"), field("password")) else {
                return oauth_error("invalid_grant");
            };
            let ok = st
                .logins
                .iter()
                .any(|l| l.username.eq_ignore_ascii_case(username) && l.password == password);
            match st.user_by_name(username) {
                Some(user) if ok => (user, true),
                _ => return oauth_error("invalid_grant"),
            }
        }
        Some("contensis_classic_refresh_token") => {
            match field("refresh_token").and_then(|t| st.refresh_tokens.remove(t)) {
                Some(user) => (user, true),
                None => return oauth_error("invalid_grant"),
            }
        }
        Some(_) => return oauth_error("unsupported_grant_type"),
        None => return oauth_error("invalid_request"),
    };
    let ttl = st.token_ttl;
    let access = st.tokens.issue(user, ttl);
    let mut body = json!({
        "access_token": access,
        "expires_in": faults::whole_secs_up(ttl),
        "token_type": "Bearer",
    });
    if refresh {
        let rt = control::random_token();
        st.refresh_tokens.insert(rt.clone(), user);
        body["refresh_token"] = Value::String(rt);
    }
    json_ok(StatusCode::OK, body)
}

/// `GET /api/security/groups`.
pub(super) async fn list_groups(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    q: Params,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    Ok(json_ok(StatusCode::OK, st.all_groups_page(&q)?))
}

/// `GET /api/security/groups/{group}`.
pub(super) async fn get_group(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    Ok(json_ok(StatusCode::OK, st.group_json(id)))
}

/// `POST /api/security/groups`.
pub(super) async fn create_group(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let body = GroupBody::parse(&body)?;
    let name = body.name()?.unwrap_or_default();
    body.check_kind(GroupKind::Contensis)?;
    let description = body.description()?.flatten();
    let custom = body.custom()?.unwrap_or_default();
    let domains = body.domains()?.unwrap_or(Value::Null);
    let id = match body.field("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| ApiError::validation("id", "Not a valid id (GUID)"))?,
        ),
    };
    st.check_name(&name, None)?;
    if id.is_some_and(|id| st.groups.contains_key(&id)) {
        return Err(ApiError::Conflict);
    }
    let id = id.unwrap_or_else(Uuid::new_v4);
    st.put_group(GroupRec {
        id,
        name,
        description,
        kind: GroupKind::Contensis,
        custom,
        members: BTreeSet::new(),
        children: BTreeSet::new(),
        extra: BTreeMap::from([(AUTO_DOMAINS.to_owned(), domains)]),
    });
    st.writes += 1;
    Ok(json_ok(StatusCode::CREATED, st.group_json(id)))
}

/// `PUT /api/security/groups/{group}`.
pub(super) async fn update_group(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    st.protect(id, false)?;
    let body = GroupBody::parse(&body)?;
    let merge = st.behaviour.put_mode == PutMode::Merge;
    let Some(current) = st.groups.get(&id) else {
        return Err(ApiError::NotFound(GROUP_NOT_FOUND));
    };
    body.check_kind(current.kind)?;
    let name = match body.name()? {
        Some(name) => name,
        None if merge => current.name.clone(),
        None => String::new(),
    };
    let description = match body.description()? {
        Some(d) => d,
        None if merge => current.description.clone(),
        None => None,
    };
    let custom = match body.custom()? {
        Some(c) => c,
        None if merge => current.custom.clone(),
        None => BTreeMap::new(),
    };
    // Every other field the group carries is written the same way: from the body when sent,
    // else kept (merge) or cleared (replace).
    body.domains()?;
    let extra: BTreeMap<String, Value> = current
        .extra
        .iter()
        .map(|(k, old)| {
            let v = match body.field(k) {
                Some(v) => v.clone(),
                None if merge => old.clone(),
                None => Value::Null,
            };
            (k.clone(), v)
        })
        .collect();
    st.check_name(&name, Some(id))?;
    let renamed = st.groups.get(&id).is_some_and(|g| g.name != name);
    if renamed {
        st.rename_group(id, name);
    }
    let changed = {
        let Some(rec) = st.groups.get_mut(&id) else {
            return Err(ApiError::NotFound(GROUP_NOT_FOUND));
        };
        let changed =
            renamed || rec.description != description || rec.custom != custom || rec.extra != extra;
        rec.description = description;
        rec.custom = custom;
        rec.extra = extra;
        changed
    };
    if changed {
        st.writes += 1;
    }
    Ok(json_ok(StatusCode::OK, st.group_json(id)))
}

/// `DELETE /api/security/groups/{group}`.
pub(super) async fn delete_group(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    st.protect(id, false)?;
    st.remove_group(id);
    for g in st.groups.values_mut() {
        g.children.remove(&id);
    }
    st.writes += 1;
    Ok(no_content())
}

/// `GET /api/security/groups/{group}/users`.
pub(super) async fn list_group_users(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    q: Params,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    let users = if q.flag("includeInherited")? {
        st.all_members(id)
    } else {
        st.groups
            .get(&id)
            .map(|g| g.members.clone())
            .unwrap_or_default()
    };
    Ok(json_ok(StatusCode::OK, st.user_page(users, &q)?))
}

/// `PUT /api/security/groups/{group}/users/{user}`.
pub(super) async fn add_user(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, user)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin(&headers)?;
    let id = st.group_id(&group)?;
    let user = st.user_id(&user, caller)?;
    link_one(&mut st, id, user, Link::Members)
}

/// `POST /api/security/groups/{group}/users`: a JSON array of user GUIDs.
pub(super) async fn add_users(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    body: Bytes,
) -> ApiResult {
    link_many(&mut sim.lock(), &headers, &group, &body, Link::Members)
}

/// `DELETE /api/security/groups/{group}/users/{user}`.
pub(super) async fn remove_user(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, user)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin(&headers)?;
    let id = st.group_id(&group)?;
    let user = st.user_id(&user, caller)?;
    unlink(&mut st, id, user, Link::Members)
}

/// `HEAD /api/security/groups/{group}/users/{user}`: 204 when a member, inherited included.
pub(super) async fn has_user(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, user)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin_or_self(&headers, &user)?;
    let id = st.group_id(&group)?;
    let user = st.user_id(&user, caller)?;
    if st.all_members(id).contains(&user) {
        Ok(no_content())
    } else {
        Err(ApiError::NotFound(USER_NOT_IN_GROUP))
    }
}

/// `GET /api/security/groups/{group}/groups`.
pub(super) async fn list_children(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    q: Params,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let id = st.group_id(&group)?;
    let mut ids = if q.flag("includeInherited")? {
        let mut all = st.descendants(id);
        all.remove(&id);
        all
    } else {
        st.groups
            .get(&id)
            .map(|g| g.children.clone())
            .unwrap_or_default()
    };
    if q.flag("includeSelf")? {
        ids.insert(id);
    }
    Ok(json_ok(StatusCode::OK, st.group_page(ids, &q)?))
}

/// Which of a group's links a membership call changes: its users or its child groups.
#[derive(Clone, Copy, Debug)]
pub(super) enum Link {
    Members,
    Children,
}

impl Link {
    fn of(self, g: &mut GroupRec) -> &mut BTreeSet<Uuid> {
        match self {
            Link::Members => &mut g.members,
            Link::Children => &mut g.children,
        }
    }

    /// Whether `id` names a user (members) or a group (children), or the 404 saying it does not.
    fn check_known(self, st: &SimState, id: &Uuid) -> Result<(), ApiError> {
        let (known, missing) = match self {
            Link::Members => (st.users.contains_key(id), USER_NOT_FOUND),
            Link::Children => (st.groups.contains_key(id), GROUP_NOT_FOUND),
        };
        if known {
            Ok(())
        } else {
            Err(ApiError::NotFound(missing))
        }
    }
}

/// Adds `ids` to `parent`'s members or children (after checking that `parent` may change and,
/// for children, that none makes a cycle), counting a write when that changed anything; says
/// whether it did.
pub(super) fn link(
    st: &mut SimState,
    parent: Uuid,
    ids: &[Uuid],
    what: Link,
) -> Result<bool, ApiError> {
    st.protect(parent, true)?;
    if let Link::Children = what {
        for child in ids {
            st.check_child(parent, *child)?;
        }
    }
    let Some(g) = st.groups.get_mut(&parent) else {
        return Err(ApiError::NotFound(GROUP_NOT_FOUND));
    };
    let set = what.of(g);
    let before = set.len();
    set.extend(ids.iter().copied());
    let changed = set.len() != before;
    if changed {
        st.writes += 1;
    }
    Ok(changed)
}

/// `PUT /api/security/groups/{group}/users/{user}` and
/// `PUT /api/security/groups/{group}/groups/{child}`: links one user or group, answering 409
/// when it already was and the behaviour says so.
pub(super) fn link_one(st: &mut SimState, parent: Uuid, id: Uuid, what: Link) -> ApiResult {
    let added = link(st, parent, &[id], what)?;
    if !added && st.behaviour.add_existing == AddExisting::Conflict {
        return Err(ApiError::Conflict);
    }
    Ok(no_content())
}

/// `POST /api/security/groups/{group}/users` and `POST /api/security/groups/{group}/groups`:
/// links every user or group of a JSON array of GUIDs. An id that is unknown or
/// already linked is answered as [`Behaviour::bulk_add_unknown`] and
/// [`Behaviour::bulk_add_existing`] say; a refused call still links the other ids when
/// [`Behaviour::bulk_add_partial`] is set.
pub(super) fn link_many(
    st: &mut SimState,
    headers: &HeaderMap,
    group: &str,
    body: &[u8],
    what: Link,
) -> ApiResult {
    st.admin(headers)?;
    let parent = st.group_id(group)?;
    let ids = parse_guids(body)?;
    st.protect(parent, true)?;
    let linked = st
        .groups
        .get_mut(&parent)
        .map(|g| what.of(g).clone())
        .unwrap_or_default();
    let mut refusal = None;
    let mut fine = Vec::new();
    for id in ids {
        if let Err(e) = what.check_known(st, &id) {
            if st.behaviour.bulk_add_unknown == BulkUnknown::NotFound {
                refusal.get_or_insert(e);
            }
        } else if linked.contains(&id) {
            match st.behaviour.bulk_add_existing {
                BulkExisting::Ignore => {}
                BulkExisting::Conflict => {
                    refusal.get_or_insert(ApiError::Conflict);
                }
                BulkExisting::BadRequest => {
                    refusal.get_or_insert(ApiError::BadRequest(format!(
                        "{id} is already a member of the group"
                    )));
                }
            }
        } else {
            fine.push(id);
        }
    }
    match refusal {
        None => {
            link(st, parent, &fine, what)?;
            Ok(no_content())
        }
        Some(e) => {
            if st.behaviour.bulk_add_partial {
                link(st, parent, &fine, what)?;
            }
            Err(e)
        }
    }
}

/// `DELETE /api/security/groups/{group}/users/{user}` and
/// `DELETE /api/security/groups/{group}/groups/{child}`: unlinks one user or group, 404 when it
/// was not linked.
pub(super) fn unlink(st: &mut SimState, parent: Uuid, id: Uuid, what: Link) -> ApiResult {
    st.protect(parent, true)?;
    let removed = st
        .groups
        .get_mut(&parent)
        .is_some_and(|g| what.of(g).remove(&id));
    if !removed {
        return Err(ApiError::NotFound(match what {
            Link::Members => USER_NOT_IN_GROUP,
            Link::Children => CHILD_NOT_FOUND,
        }));
    }
    st.writes += 1;
    Ok(no_content())
}

/// `PUT /api/security/groups/{group}/groups/{child}`.
pub(super) async fn add_child(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, child)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let parent = st.group_id(&group)?;
    let child = st.group_id(&child)?;
    link_one(&mut st, parent, child, Link::Children)
}

/// `POST /api/security/groups/{group}/groups`: a JSON array of group GUIDs.
pub(super) async fn add_children(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(group): Seg<String>,
    body: Bytes,
) -> ApiResult {
    link_many(&mut sim.lock(), &headers, &group, &body, Link::Children)
}

/// `DELETE /api/security/groups/{group}/groups/{child}`.
pub(super) async fn remove_child(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((group, child)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let parent = st.group_id(&group)?;
    let child = st.group_id(&child)?;
    unlink(&mut st, parent, child, Link::Children)
}

/// `GET /api/security/users`.
pub(super) async fn list_users(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    q: Params,
) -> ApiResult {
    let mut st = sim.lock();
    st.admin(&headers)?;
    let ids: Vec<Uuid> = st.users.keys().copied().collect();
    Ok(json_ok(StatusCode::OK, st.user_page(ids, &q)?))
}

/// `GET /api/security/users/{user}`.
pub(super) async fn get_user(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(user): Seg<String>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin_or_self(&headers, &user)?;
    let id = st.user_id(&user, caller)?;
    Ok(json_ok(StatusCode::OK, st.user_json(id)))
}

/// `GET /api/security/users/{user}/groups`.
pub(super) async fn user_groups(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg(user): Seg<String>,
    q: Params,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin_or_self(&headers, &user)?;
    let user = st.user_id(&user, caller)?;
    let inherited = q.flag("includeInherited")?;
    let ids = st.groups_of(user, inherited);
    Ok(json_ok(StatusCode::OK, st.group_page(ids, &q)?))
}

/// `HEAD /api/security/users/{user}/groups/{group}[,{group}...]`: 204 when the user is in any.
pub(super) async fn user_in_groups(
    State(sim): State<ContensisSim>,
    headers: HeaderMap,
    Seg((user, groups)): Seg<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    let caller = st.admin_or_self(&headers, &user)?;
    let user = st.user_id(&user, caller)?;
    // A whole segment that names a group wins over its comma-separated parts.
    let ids: Vec<Uuid> = match st.find_group(&groups) {
        Some(id) => vec![id],
        None => groups
            .split(',')
            .map(|g| {
                st.find_group(g.trim())
                    .ok_or(ApiError::NotFound(GROUP_NOT_FOUND))
            })
            .collect::<Result<_, _>>()?,
    };
    if ids.iter().any(|g| st.all_members(*g).contains(&user)) {
        Ok(no_content())
    } else {
        Err(ApiError::NotFound(USER_NOT_IN_GROUP))
    }
}

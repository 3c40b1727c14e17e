//! The UiPath Identity simulator's HTTP side: the problem-details errors, the token endpoint
//! and one handler per group, search and bulk-resolve endpoint.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sim::faults;

use super::*;

/// Every failure answer of the API, as ASP.NET Core problem details.
#[derive(Debug)]
pub(super) enum ApiError {
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    BadRequest(String),
    Validation(String, String),
    Status(StatusCode, String),
}

pub(super) fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": format!("https://tools.ietf.org/html/rfc9110#section-{}", section(status)),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "traceId": format!("00-{}-{}-00", Uuid::new_v4().simple(), &Uuid::new_v4().simple().to_string()[..16]),
    });
    (status, Json(body)).into_response()
}

pub(super) fn section(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "15.5.1",
        403 => "15.5.4",
        404 => "15.5.5",
        409 => "15.5.10",
        429 => "15.5.30",
        _ => "15.6.1",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => {
                let mut resp = StatusCode::UNAUTHORIZED.into_response();
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                resp
            }
            Self::Forbidden(m) => problem(StatusCode::FORBIDDEN, &m),
            Self::NotFound(m) => problem(StatusCode::NOT_FOUND, &m),
            Self::Conflict(m) => problem(StatusCode::CONFLICT, &m),
            Self::BadRequest(m) => problem(StatusCode::BAD_REQUEST, &m),
            Self::Validation(field, message) => {
                let body = json!({
                    "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                    "title": "One or more validation errors occurred.",
                    "status": 400,
                    "errors": { field: [message] },
                    "traceId": format!("00-{}-00", Uuid::new_v4().simple()),
                });
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
            Self::Status(status, m) => problem(status, &m),
        }
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "No such resource")
}

pub(super) fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

/// `POST …/connect/token`: the client credentials grant.
pub(super) async fn token(
    State(sim): State<UiPathSim>,
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
    match field("grant_type") {
        Some("client_credentials") => {}
        Some(_) => return oauth_error("unsupported_grant_type"),
        None => return oauth_error("invalid_request"),
    }
    if field("client_id") != Some(st.client_id.as_str())
        || field("client_secret") != Some(st.client_secret.as_str())
    {
        return oauth_error("invalid_client");
    }
    let scopes: BTreeSet<String> = match field("scope") {
        Some(s) if !s.trim().is_empty() => s.split_whitespace().map(str::to_owned).collect(),
        _ => st.granted.clone(),
    };
    if !scopes.is_subset(&st.granted) {
        return oauth_error("invalid_scope");
    }
    let ttl = st.token_ttl;
    let scope = scopes.iter().cloned().collect::<Vec<_>>().join(" ");
    let access = st.tokens.issue(scopes, ttl);
    (
        StatusCode::OK,
        Json(json!({
            "access_token": access,
            "expires_in": faults::whole_secs_up(ttl),
            "token_type": "Bearer",
            "scope": scope,
        })),
    )
        .into_response()
}

pub(super) const READ: &[&str] = &["PM.Group.Read", "PM.Group"];
pub(super) const WRITE: &[&str] = &["PM.Group.Write", "PM.Group"];

/// `GET …/api/Group/{partitionGlobalId}`: every group, a bare array.
pub(super) async fn list_groups(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(partition): Path<String>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, READ)?;
    st.check_partition(&partition)?;
    // The index of names is kept in the list's order (lower-case name, then name), so the list
    // is one pass rather than a sort per call.
    let items: Vec<GroupSummary<'_>> = st
        .indexes
        .group_names
        .iter()
        .filter_map(|(_, _, id)| st.groups.get(id))
        .map(|g| st.summary(g))
        .collect();
    Ok((StatusCode::OK, Json(items)).into_response())
}

/// `GET …/api/Group/{partitionGlobalId}/{groupId}`: one group with its members.
pub(super) async fn get_group(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path((partition, group)): Path<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, READ)?;
    st.check_partition(&partition)?;
    let id = st.group_id(&group)?;
    Ok((StatusCode::OK, Json(st.group_json(&id, true))).into_response())
}

/// A JSON object body, or 400.
pub(super) fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::BadRequest(
            "The request body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

pub(super) fn field<'a>(body: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The body's `partitionGlobalId`, which must be the organization's.
pub(super) fn body_partition(
    st: &SimState,
    body: &serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    match field(body, "partitionGlobalId").and_then(Value::as_str) {
        Some(p) if p.eq_ignore_ascii_case(&st.partition) => Ok(()),
        Some(p) => Err(ApiError::BadRequest(format!(
            "partitionGlobalId {p} does not match the organization"
        ))),
        None => Err(ApiError::Validation(
            "PartitionGlobalId".into(),
            "The PartitionGlobalId field is required.".into(),
        )),
    }
}

/// The body's `id`: required, and a GUID (the service binds it to one).
pub(super) fn body_id(body: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match field(body, "id") {
        None | Some(Value::Null) => Err(ApiError::Validation(
            "Id".into(),
            "The Id field is required.".into(),
        )),
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(u) => Ok(u.to_string()),
            Err(_) => Err(ApiError::Validation(
                "$.id".into(),
                "The JSON value could not be converted to System.Guid.".into(),
            )),
        },
        Some(_) => Err(ApiError::Validation(
            "$.id".into(),
            "The JSON value could not be converted to System.Guid.".into(),
        )),
    }
}

pub(super) fn body_name(body: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match field(body, "name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(ApiError::Validation(
            "Name".into(),
            "The Name field is required.".into(),
        )),
    }
}

/// A list of account identifiers (absent or null is empty); an id that is no account is
/// answered as [`Behaviour::unknown_user`] says (dropped when ignored).
pub(super) fn body_ids(
    st: &SimState,
    body: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Vec<String>, ApiError> {
    let items = match field(body, key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::Validation(
                key.to_owned(),
                format!("{key} must be an array of strings"),
            ));
        }
    };
    let mut ids = Vec::new();
    for item in items {
        let Some(s) = item.as_str() else {
            return Err(ApiError::Validation(
                key.to_owned(),
                format!("{key} must be an array of strings"),
            ));
        };
        let found = st.user_key(s);
        let message = || format!("Directory user {s} was not found");
        match (found, st.behaviour.unknown_user) {
            (Some(id), _) => ids.push(id),
            (None, UnknownUser::BadRequest) => return Err(ApiError::BadRequest(message())),
            (None, UnknownUser::NotFound) => return Err(ApiError::NotFound(message())),
            (None, UnknownUser::Ignore) => {}
        }
    }
    Ok(ids)
}

/// `POST …/api/Group`: create a local group with members.
pub(super) async fn create_group(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, WRITE)?;
    let body = object(&body)?;
    body_partition(&st, &body)?;
    let id = body_id(&body)?;
    let name = body_name(&body)?;
    let members = body_ids(&st, &body, "directoryUserMemberIDs")?;
    if st.group_id(&id).is_ok() {
        return Err(st.taken(format!("A group with id '{id}' already exists")));
    }
    st.check_name(&name, None)?;
    let modified = st.touch();
    st.put_group(GroupRec {
        id: id.clone(),
        name,
        kind: 1,
        members: members.into_iter().collect(),
        modified,
    });
    st.writes += 1;
    Ok((StatusCode::CREATED, Json(st.group_json(&id, true))).into_response())
}

/// `PUT …/api/Group/{groupId}`: the only update path.
pub(super) async fn update_group(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: Bytes,
) -> ApiResult {
    update(&sim, &headers, &group, &body)
}

/// Renames and changes members in one request; applies all of it or nothing.
pub(super) fn update(sim: &UiPathSim, headers: &HeaderMap, group: &str, body: &[u8]) -> ApiResult {
    let mut st = sim.lock();
    st.require(headers, WRITE)?;
    let id = st.group_id(group)?;
    st.protect(&id)?;
    let body = object(body)?;
    body_partition(&st, &body)?;
    let name = body_name(&body)?;
    let add = body_ids(&st, &body, "directoryUserIDsToAdd")?;
    let remove = body_ids(&st, &body, "directoryUserIDsToRemove")?;
    if let Some(both) = add.iter().find(|a| remove.contains(a)) {
        return Err(ApiError::BadRequest(format!(
            "Directory user {both} is both added and removed"
        )));
    }
    st.check_name(&name, Some(&id))?;
    let current = st
        .groups
        .get(&id)
        .map(|g| g.members.clone())
        .unwrap_or_default();
    if st.behaviour.add_existing == Strictness::Reject
        && let Some(m) = add.iter().find(|a| current.contains(*a))
    {
        return Err(ApiError::BadRequest(format!(
            "Directory user {m} is already a member of the group"
        )));
    }
    if st.behaviour.remove_missing == Strictness::Reject
        && let Some(m) = remove.iter().find(|r| !current.contains(*r))
    {
        return Err(ApiError::BadRequest(format!(
            "Directory user {m} is not a member of the group"
        )));
    }
    let modified = st.touch();
    let renamed = st.groups.get(&id).is_some_and(|g| g.name != name);
    if renamed {
        st.rename_group(&id, name);
    }
    let changed = {
        let Some(g) = st.groups.get_mut(&id) else {
            return Err(ApiError::NotFound(format!("Group {group} was not found")));
        };
        let before = g.members.clone();
        g.members.extend(add);
        for r in &remove {
            g.members.remove(r);
        }
        let changed = renamed || before != g.members;
        if changed {
            g.modified = modified;
        }
        changed
    };
    if changed {
        st.writes += 1;
    }
    Ok((StatusCode::OK, Json(st.group_json(&id, true))).into_response())
}

/// `DELETE …/api/Group/{partitionGlobalId}/{groupId}`.
pub(super) async fn delete_group(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path((partition, group)): Path<(String, String)>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, WRITE)?;
    st.check_partition(&partition)?;
    let id = st.group_id(&group)?;
    st.protect(&id)?;
    st.remove_group(&id);
    st.writes += 1;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) const SOURCES: [&str; 6] = [
    "LocalUsers",
    "DirectoryUsers",
    "LocalGroups",
    "DirectoryGroups",
    "RobotAccounts",
    "Applications",
];

/// `GET …/api/Directory/Search/{partitionGlobalId}?startsWith=…[&sourceFilter=…|&entityType=…]`.
pub(super) async fn search(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(partition): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, &["PM.Directory"])?;
    st.check_partition(&partition)?;
    let get = |k: &'static str| {
        q.iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let Some(prefix) = get("startsWith").next().filter(|s| !s.is_empty()) else {
        return Err(ApiError::Validation(
            "startsWith".into(),
            "The startsWith field is required.".into(),
        ));
    };
    let filters: Vec<&str> = get("sourceFilter")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let entity = get("entityType").next();
    if entity.is_some() && !filters.is_empty() {
        return Err(ApiError::BadRequest(
            "entityType cannot be used together with sourceFilter".into(),
        ));
    }
    if let Some(bad) = filters
        .iter()
        .find(|f| !SOURCES.iter().any(|s| s.eq_ignore_ascii_case(f)))
    {
        return Err(ApiError::BadRequest(format!(
            "Unknown sourceFilter value {bad}"
        )));
    }
    let has = |s: &str| filters.is_empty() || filters.iter().any(|f| f.eq_ignore_ascii_case(s));
    let (want_users, want_groups) = match entity {
        None => (true, true),
        Some(e) if e.eq_ignore_ascii_case("User") => (true, false),
        Some(e) if e.eq_ignore_ascii_case("Group") => (false, true),
        Some(e) if e.eq_ignore_ascii_case("Application") => (false, false),
        Some(e) => return Err(ApiError::BadRequest(format!("Unknown entityType {e}"))),
    };
    let p = prefix.to_lowercase();
    let starts = |s: &str| s.to_lowercase().starts_with(&p);
    let mut found: Vec<(String, Value)> = Vec::new();
    if want_users {
        // Robot accounts and applications are not searched as users.
        for u in st.users.values().filter(|u| u.kind == AccountKind::User) {
            let source_ok = if u.source == "local" {
                has("LocalUsers")
            } else {
                has("DirectoryUsers")
            };
            if source_ok
                && (starts(&u.name)
                    || u.email.as_deref().is_some_and(starts)
                    || starts(&u.display_name))
            {
                found.push((
                    u.name.to_lowercase(),
                    json!({
                        "source": u.source,
                        "identifier": u.identifier,
                        "identityName": u.name,
                        "displayName": u.display_name,
                        "email": u.email,
                        "type": st.entity_type(0, "User"),
                        "objectType": "DirectoryUser",
                    }),
                ));
            }
        }
    }
    if want_groups && has("LocalGroups") {
        // The index holds the names in lower case, in order: the groups that match are one
        // range of it. Among names equal in lower case, the stable sort below keeps the order
        // they are pushed in, which was id order (the map's): sorted by id here too.
        let mut groups: Vec<(&str, &String)> = st
            .indexes
            .group_names
            .starting_with(prefix)
            .map(|(lower, _, id)| (lower, id))
            .collect();
        groups.sort();
        for g in groups.iter().filter_map(|(_, id)| st.groups.get(*id)) {
            found.push((
                g.name.to_lowercase(),
                json!({
                    "source": "local",
                    "identifier": g.id,
                    "identityName": g.name,
                    "displayName": g.name,
                    "email": null,
                    "type": st.entity_type(1, "Group"),
                    "objectType": "DirectoryGroup",
                }),
            ));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let limit = st.behaviour.search_limit;
    let items: Vec<Value> = found.into_iter().take(limit).map(|(_, v)| v).collect();
    Ok((StatusCode::OK, Json(Value::Array(items))).into_response())
}

/// `GET …/api/Group/{partitionGlobalId}/{groupId}/Members?top=&skip=`: one page of a group's
/// members, ids and account types only.
pub(super) async fn group_members(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path((partition, group)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, READ)?;
    st.check_partition(&partition)?;
    let id = st.group_id(&group)?;
    let number = |key: &str, default: usize| -> Result<usize, ApiError> {
        match q.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| {
                ApiError::Validation(key.to_owned(), format!("The value '{v}' is not valid."))
            }),
        }
    };
    let top = number("top", 10)?.min(1000);
    let skip = number("skip", 0)?;
    let members: Vec<&String> = st
        .groups
        .get(&id)
        .map(|g| g.members.iter().collect())
        .unwrap_or_default();
    let results: Vec<Value> = members
        .iter()
        .skip(skip)
        .take(top)
        .filter_map(|m| st.users.get(*m))
        .map(|u| {
            let kind = match (u.kind, u.source.as_str()) {
                (AccountKind::User, "local") => 0,
                (AccountKind::User, _) => 2,
                (AccountKind::Robot, _) => 4,
                (AccountKind::Application, _) => 5,
            };
            json!({ "id": u.identifier, "type": kind })
        })
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({ "totalCount": members.len(), "results": results })),
    )
        .into_response())
}

/// `POST …/api/Directory/BulkResolveByName/{partitionGlobalId}`: `{entityNames, entityType,
/// scope}` → `{name: entity | null}`.
pub(super) async fn bulk_resolve_by_name(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(partition): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, &["PM.Directory"])?;
    st.check_partition(&partition)?;
    let body = object(&body)?;
    let names: Vec<String> = match field(&body, "entityNames") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| {
                ApiError::Validation(
                    "EntityNames".into(),
                    "EntityNames must be an array of strings".into(),
                )
            })?,
        _ => {
            return Err(ApiError::Validation(
                "EntityNames".into(),
                "The EntityNames field is required.".into(),
            ));
        }
    };
    let Some(kind) = field(&body, "entityType").and_then(Value::as_str) else {
        return Err(ApiError::Validation(
            "EntityType".into(),
            "The EntityType field is required.".into(),
        ));
    };
    if names.len() > BULK_RESOLVE_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "At most {BULK_RESOLVE_LIMIT} names can be resolved at once"
        )));
    }
    let ignore_case = st.behaviour.bulk_resolve_ignores_case;
    let mut out = serde_json::Map::new();
    for name in names {
        // The first match in id order, as the directory's own scan would find it.
        let entity = if kind.eq_ignore_ascii_case("User") {
            st.users_named(&name, ignore_case)
                .filter(|id| {
                    st.users
                        .get(*id)
                        .is_some_and(|u| u.kind == AccountKind::User)
                })
                .min()
                .map(|id| st.user_json(id))
        } else if kind.eq_ignore_ascii_case("Group") {
            let first = st.groups_named(&name, ignore_case).min();
            first.and_then(|id| st.groups.get(id)).map(|g| {
                json!({
                    "objectType": "DirectoryGroup",
                    "source": "local",
                    "identifier": g.id,
                    "name": g.name,
                    "displayName": g.name,
                })
            })
        } else if kind.eq_ignore_ascii_case("Application") {
            None
        } else {
            return Err(ApiError::BadRequest(format!("Unknown entityType {kind}")));
        };
        out.insert(name, entity.unwrap_or(Value::Null));
    }
    Ok((StatusCode::OK, Json(Value::Object(out))).into_response())
}

/// `POST …/api/Directory/BulkResolve/{partitionGlobalId}`: `{entityIds, entityTypes}` →
/// `{id: entity | null}`.
pub(super) async fn bulk_resolve(
    State(sim): State<UiPathSim>,
    headers: HeaderMap,
    Path(partition): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = sim.lock();
    st.require(&headers, &["PM.Directory"])?;
    st.check_partition(&partition)?;
    let body = object(&body)?;
    let strings = |key: &str| -> Result<Vec<String>, ApiError> {
        match field(&body, key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    ApiError::Validation(
                        key.to_owned(),
                        format!("{key} must be an array of strings"),
                    )
                }),
            _ => Err(ApiError::Validation(
                key.to_owned(),
                format!("The {key} field is required."),
            )),
        }
    };
    let ids = strings("EntityIds")?;
    let types = strings("EntityTypes")?;
    if ids.len() != types.len() {
        return Err(ApiError::BadRequest(
            "EntityTypes must be as long as EntityIds".into(),
        ));
    }
    if ids.len() > BULK_RESOLVE_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "At most {BULK_RESOLVE_LIMIT} entities can be resolved at once"
        )));
    }
    let mut out = serde_json::Map::new();
    for (id, kind) in ids.into_iter().zip(types) {
        let entity = if kind.eq_ignore_ascii_case("User") {
            st.user_key(&id).map(|k| st.user_json(&k))
        } else if kind.eq_ignore_ascii_case("Group") || kind.eq_ignore_ascii_case("Application") {
            None
        } else {
            return Err(ApiError::BadRequest(format!("Unknown entity type {kind}")));
        };
        out.insert(id, entity.unwrap_or(Value::Null));
    }
    Ok((StatusCode::OK, Json(Value::Object(out))).into_response())
}

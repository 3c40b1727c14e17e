//! The VinylDNS simulator's HTTP side: the signature-checking middleware, the query checks,
//! the group bodies, and one handler per endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::{Bytes, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

use self::auth::{AuthFailure, Incoming};

use super::*;

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub(super) struct Caller {
    id: String,
    is_super: bool,
}

pub(super) fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

pub(super) fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

/// Checks the request's signature as the server does and passes the caller on. Every
/// authentication failure is a 401 with a plain-text body; a locked account is a 403; a request
/// without a readable date fails inside the server (500).
pub(super) async fn authenticate(
    State(sim): State<VinylDnsSim>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, 10 * 1024 * 1024).await else {
        return text(
            StatusCode::BAD_REQUEST,
            "The request body could not be read",
        );
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let incoming = Incoming {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
        body: &bytes,
    };
    let keys = sim.lock().keys.clone();
    let access_key = match auth::authenticate(&incoming, |ak| keys.get(ak).map(|(s, _)| s.clone()))
    {
        Ok(ak) => ak,
        Err(AuthFailure::NoDate) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "There was an internal server error.",
            );
        }
        Err(e) => {
            return text(
                StatusCode::UNAUTHORIZED,
                format!("Authentication Failed: {e}"),
            );
        }
    };
    let caller = {
        let st = sim.lock();
        let Some(user) = st
            .keys
            .get(&access_key)
            .and_then(|(_, id)| st.users.get(id))
        else {
            return text(StatusCode::UNAUTHORIZED, "Authentication Failed");
        };
        if user.locked {
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "Authentication Failed: Account with username {} is locked",
                    user.user_name
                ),
            );
        }
        Caller {
            id: user.id.clone(),
            is_super: user.is_super,
        }
    };
    let mut req = Request::from_parts(parts, axum::body::Body::from(bytes));
    req.extensions_mut().insert(caller);
    next.run(req).await
}

pub(super) async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "The requested resource could not be found.",
    )
}

/// `maxItems` between 1 and `limit` (default 100), as the server's routes check it.
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn max_items(q: &BTreeMap<String, String>, limit: i64) -> Result<usize, Response> {
    let Some(raw) = q.get("maxItems") else {
        return Ok(100);
    };
    match raw.parse::<i32>() {
        Ok(n) if (1..=limit).contains(&i64::from(n)) => Ok(usize::try_from(n).unwrap_or(100)),
        // Each route words it its own way; the group list's message spans lines.
        Ok(n) if limit == 3000 => Err(text(
            StatusCode::BAD_REQUEST,
            format!(
                "\nmaxItems was {n}, maxItems must be between 0 exclusive\nand {limit} inclusive\"\n"
            ),
        )),
        Ok(n) if limit == 100 => Err(text(
            StatusCode::BAD_REQUEST,
            format!("maxItems was {n}, maxItems must be between 0 and {limit}"),
        )),
        Ok(n) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("maxItems was {n}, maxItems must be between 0 exclusive and {limit} inclusive"),
        )),
        Err(_) => Err(text(
            StatusCode::BAD_REQUEST,
            format!(
                "The query parameter 'maxItems' was malformed: '{raw}' is not a valid 32-bit signed integer value"
            ),
        )),
    }
}

/// A boolean query parameter (default `false`).
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn flag(q: &BTreeMap<String, String>, name: &str) -> Result<bool, Response> {
    match q.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(text(
            StatusCode::BAD_REQUEST,
            format!(
                "The query parameter '{name}' was malformed: '{other}' is not a valid Boolean value"
            ),
        )),
    }
}

/// A handler's answer: `Err` carries its error response, so that `?` can pass one on.
pub(super) type Answer = Result<Response, Response>;

/// `GET /groups`: every group for a super user or with `ignoreAccess=true`, else the caller's;
/// `abridged=true` keeps of each group's lists only the caller's own id (in `members` when it is
/// a member, in `admins` when it is an admin).
pub(super) async fn list_groups(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Answer {
    let limit = sim.lock().behaviour.group_page_limit;
    let max = max_items(&q, i64::from(limit))?;
    let ignore_access = flag(&q, "ignoreAccess")?;
    let abridged = flag(&q, "abridged")? && sim.lock().behaviour.abridged_lists;
    let st = sim.lock();
    let filter = q.get("groupNameFilter").map(|f| f.to_lowercase());
    let start = if st.behaviour.repeat_group_pages {
        None
    } else {
        q.get("startFrom")
    };
    // The page starts after the lower-case name of the `startFrom` group.
    let after: Option<String> = match start {
        None => None,
        Some(id) => {
            let Some(prev) = st.groups.get(id) else {
                return Err(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "There was an internal server error.",
                ));
            };
            Some(prev.name.to_lowercase())
        }
    };
    let everyone = ignore_access || caller.is_super;
    let mine = st.indexes.member_of.get(&caller.id);
    let wanted = |lower: &str| {
        filter.as_deref().is_none_or(|f| lower.contains(f))
            && after.as_deref().is_none_or(|a| lower > a)
    };
    // The groups sorted by lower-case name, then id, from the one after `startFrom`; one more
    // than a page, to know whether there is a next. The index of names is in that order, so a
    // page is a walk to it rather than a sort of every group.
    let names = &st.indexes.names;
    let walk: Box<dyn Iterator<Item = (&str, &str, &String)>> = match &after {
        Some(a) => Box::new(names.after(a)),
        None => Box::new(names.iter()),
    };
    let rest: Vec<&Arc<Stored>> = walk
        .filter(|(lower, _, id)| {
            wanted(lower) && (everyone || mine.is_some_and(|m| m.contains(*id)))
        })
        .filter_map(|(_, _, id)| st.groups.get(id))
        .take(max + 1)
        .collect();
    let next_id = (rest.len() > max).then(|| rest[max - 1].id.clone());
    // The page's groups held apart from the state (shared, not copied), so that the state is
    // free while the answer is written: a page of 3,000 groups with 50 members each is 7.5 MB of
    // JSON, and every other request waits for the state meanwhile.
    let page_groups: Vec<Arc<Stored>> = rest.into_iter().take(max).cloned().collect();
    drop(st);
    // The answer's size is known before it is written: one buffer of that size, rather than
    // one doubled from 128 bytes to 8 MB through a dozen copies.
    let size = if abridged {
        page_groups.len() * 256
    } else {
        page_groups.iter().map(|g| g.listed().get().len() + 1).sum()
    };
    let groups = if abridged {
        Listed::Abridged(
            page_groups
                .iter()
                .map(|g| GroupInfo::abridged(g, &caller.id))
                .collect(),
        )
    } else {
        Listed::Full(page_groups.iter().map(|g| g.listed()).collect())
    };
    let page = GroupPage {
        group_name_filter: q.get("groupNameFilter").map(String::as_str),
        groups,
        ignore_access,
        max_items: max,
        next_id: next_id.as_deref(),
        start_from: q.get("startFrom").map(String::as_str),
    };
    let mut body = Vec::with_capacity(size + 1024);
    // A page of strings and numbers always serializes.
    if serde_json::to_writer(&mut body, &page).is_err() {
        return Err(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "There was an internal server error.",
        ));
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The answer to `GET /groups`, its fields in the order a JSON value's map writes them, so the
/// text is the same as a value's would be.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupPage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    group_name_filter: Option<&'a str>,
    groups: Listed<'a>,
    ignore_access: bool,
    max_items: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_from: Option<&'a str>,
}

/// The groups of a page of the list: whole, as the state keeps their entries, or abridged.
#[derive(Serialize)]
#[serde(untagged)]
enum Listed<'a> {
    Full(Vec<&'a RawValue>),
    Abridged(Vec<GroupInfo<'a>>),
}

pub(super) fn group_not_found(id: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("Group with ID {id} was not found"),
    )
}

/// `GET /groups/{id}`.
pub(super) async fn get_group(State(sim): State<VinylDnsSim>, Path(id): Path<String>) -> Response {
    let st = sim.lock();
    match st.groups.get(&id) {
        Some(g) => ok(st.info(g)),
        None => group_not_found(&id),
    }
}

/// The body of a create or an update, as the server's JSON protocol reads it.
#[derive(Debug, Default, Deserialize)]
pub(super) struct GroupInput {
    id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    description: Option<String>,
    members: Option<Vec<IdIn>>,
    admins: Option<Vec<IdIn>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct IdIn {
    id: String,
}

/// A create or update body with every required field.
pub(super) struct Input {
    id: Option<String>,
    name: String,
    email: String,
    description: Option<String>,
    members: BTreeSet<String>,
    admins: BTreeSet<String>,
}

/// Reads a body as the server's JSON protocol does: every missing field is named in one 400.
// The error is the response a handler returns at once; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn read_input(body: &Bytes, update: bool) -> Result<Input, Response> {
    let input: GroupInput = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "errors": [format!("The request content was malformed: {e}")] })),
        )
            .into_response()
    })?;
    let mut missing = Vec::new();
    if update && input.id.is_none() {
        missing.push("Missing Group.id");
    }
    if input.name.is_none() {
        missing.push("Missing Group.name");
    }
    if input.email.is_none() {
        missing.push("Missing Group.email");
    }
    if input.members.is_none() {
        missing.push("Missing Group.members");
    }
    if input.admins.is_none() {
        missing.push("Missing Group.admins");
    }
    if !missing.is_empty() {
        return Err((StatusCode::BAD_REQUEST, Json(json!({ "errors": missing }))).into_response());
    }
    let ids = |v: Option<Vec<IdIn>>| -> BTreeSet<String> {
        v.unwrap_or_default().into_iter().map(|i| i.id).collect()
    };
    let admins = ids(input.admins);
    // The server's routes make every admin a member.
    let mut members = ids(input.members);
    members.extend(admins.iter().cloned());
    Ok(Input {
        id: input.id,
        name: input.name.unwrap_or_default(),
        email: input.email.unwrap_or_default(),
        description: input.description,
        members,
        admins,
    })
}

/// `POST /groups`, in the server's order: fields and e-mail, members and admins, the name, then
/// every user id. The creator becomes an admin and a member.
pub(super) async fn create_group(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Answer {
    let mut input = read_input(&body, false)?;
    input.admins.insert(caller.id.clone());
    input.members.insert(caller.id.clone());
    let mut st = sim.lock();
    check_fields(&st, &input.name, &input.email)?;
    has_members_and_admins(&input.members, &input.admins)?;
    if let Some(g) = st.same_name(&input.name, None) {
        return Err(conflict(&input.name, &g.email));
    }
    users_exist(&st, &input.members)?;
    check_description(input.description.as_deref())?;
    let id = Uuid::new_v4().to_string();
    let g = SimGroup {
        id: id.clone(),
        name: input.name,
        email: input.email,
        description: input.description,
        members: input.members,
        admins: input.admins,
    };
    let info = st.info(&g);
    st.put_group(g);
    Ok(ok(info))
}

/// `PUT /groups/{id}`: the whole group; the server reads the id from the body. In the server's
/// order: the group, fields and e-mail, the caller's right, members and admins, the newly added
/// non-admin members (unknown admin ids are stored unchecked), the name.
pub(super) async fn update_group(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Path(_path_id): Path<String>,
    body: Bytes,
) -> Answer {
    let input = read_input(&body, true)?;
    let id = input.id.clone().unwrap_or_default();
    let mut st = sim.lock();
    let Some(existing) = st.groups.get(&id).cloned() else {
        return Err(group_not_found(&id));
    };
    check_fields(&st, &input.name, &input.email)?;
    if !(caller.is_super || existing.admins.contains(&caller.id)) {
        return Err(not_authorized());
    }
    has_members_and_admins(&input.members, &input.admins)?;
    let added_admins: BTreeSet<&String> = input.admins.difference(&existing.admins).collect();
    let added_non_admins: BTreeSet<&String> = input
        .members
        .difference(&existing.members)
        .filter(|m| !added_admins.contains(m))
        .chain(
            existing
                .admins
                .difference(&input.admins)
                .filter(|a| input.members.contains(*a)),
        )
        .collect();
    users_exist(&st, added_non_admins)?;
    if let Some(g) = st.same_name(&input.name, Some(&id)) {
        return Err(conflict(&input.name, &g.email));
    }
    check_description(input.description.as_deref())?;
    let g = SimGroup {
        id: id.clone(),
        name: input.name,
        email: input.email,
        description: input.description,
        members: input.members,
        admins: input.admins,
    };
    let info = st.info(&g);
    st.put_group(g);
    Ok(ok(info))
}

/// `DELETE /groups/{id}`: refused while the group administers a zone, owns a record set or is
/// named in a zone's ACL rule.
pub(super) async fn delete_group(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let mut st = sim.lock();
    let Some(existing) = st.groups.get(&id).cloned() else {
        return Err(group_not_found(&id));
    };
    if !(caller.is_super || existing.admins.contains(&caller.id)) {
        return Err(not_authorized());
    }
    let refuse = |m: String| text(StatusCode::BAD_REQUEST, m);
    let name = &existing.name;
    if st.zones.iter().any(|z| z.admin_group_id == id) {
        return Err(refuse(format!(
            "{name} is the admin of a zone. Cannot delete. Please transfer the ownership to another group before deleting."
        )));
    }
    if st.zones.iter().any(|z| z.record_owner_ids.contains(&id)) {
        return Err(refuse(format!(
            "{name} is the owner for a record set including {}. Cannot delete. Please transfer the ownership to another group before deleting.",
            Uuid::new_v4()
        )));
    }
    if let Some(z) = st.zones.iter().find(|z| z.acl_group_ids.contains(&id)) {
        return Err(refuse(format!(
            "{name} has an ACL rule for a zone including {}. Cannot delete. Please transfer the ownership to another group before deleting.",
            z.id
        )));
    }
    st.remove_group(&id);
    let mut info = st.info(&existing);
    if let Some(o) = info.as_object_mut() {
        o.insert("status".into(), "Deleted".into());
    }
    Ok(ok(info))
}

/// `GET /groups/{id}/members`: the group's ids that are users, paged by user id; an id without a
/// user is left out.
pub(super) async fn list_members(
    State(sim): State<VinylDnsSim>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Answer {
    let max = max_items(&q, 1000)?;
    let st = sim.lock();
    let Some(g) = st.groups.get(&id) else {
        return Err(group_not_found(&id));
    };
    let start = q.get("startFrom");
    let rest: Vec<&SimUser> = g
        .members
        .iter()
        .filter(|m| start.is_none_or(|s| m.as_str() > s.as_str()))
        .filter_map(|m| st.users.get(m))
        .collect();
    let page: Vec<Value> = rest
        .iter()
        .take(max)
        .map(|u| st.member_info(u, g))
        .collect();
    let mut body = json!({ "members": page, "maxItems": max });
    if let Some(o) = body.as_object_mut() {
        if rest.len() > max {
            o.insert("nextId".into(), rest[max - 1].id.clone().into());
        }
        if let Some(s) = start {
            o.insert("startFrom".into(), s.clone().into());
        }
    }
    Ok(ok(body))
}

/// `GET /groups/{id}/admins`: the admins that are users, with their `isSuper` flags.
pub(super) async fn list_admins(
    State(sim): State<VinylDnsSim>,
    Path(id): Path<String>,
) -> Response {
    let st = sim.lock();
    let Some(g) = st.groups.get(&id) else {
        return group_not_found(&id);
    };
    let admins: Vec<Value> = g
        .admins
        .iter()
        .filter_map(|a| st.users.get(a))
        .map(|u| st.user_info(u))
        .collect();
    ok(json!({ "admins": admins }))
}

/// `GET /groups/valid/domains`: the allowed e-mail domains, as configured.
pub(super) async fn valid_domains(State(sim): State<VinylDnsSim>) -> Response {
    let domains = sim.lock().behaviour.valid_email_domains.clone();
    ok(json!(domains))
}

/// `GET /users/{id or name}`, without regard to case.
pub(super) async fn get_user(State(sim): State<VinylDnsSim>, Path(key): Path<String>) -> Response {
    let st = sim.lock();
    match st.user_by_key(&key) {
        Some(u) => {
            // The groups holding the user, in id order (the index's), without a pass over all.
            let groups = st.indexes.member_of.get(&u.id);
            let body = user_info(&u.id, &u.user_name, groups);
            drop(st);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        None => text(StatusCode::NOT_FOUND, format!("User {key} was not found")),
    }
}

/// The answer to `GET /users/{key}`: the user and the groups holding it (`UserResponseInfo`),
/// `{"id":…,"userName":…,"groupId":[…]}`. A user in a thousand groups is 40 kB of ids: written
/// into a buffer of its size rather than one doubled from 128 bytes.
fn user_info(id: &str, name: &str, groups: Option<&BTreeSet<String>>) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct UserInfo<'a> {
        id: &'a str,
        user_name: &'a str,
        group_id: Vec<&'a String>,
    }
    let group_id: Vec<&String> = groups.into_iter().flatten().collect();
    let mut out = Vec::with_capacity(48 + id.len() + name.len() + group_id.len() * 40);
    // Strings always serialize.
    let _ = serde_json::to_writer(
        &mut out,
        &UserInfo {
            id,
            user_name: name,
            group_id,
        },
    );
    out
}

/// `GET /zones`: the zones whose admin group the caller belongs to, or every zone for a super
/// user or with `ignoreAccess=true`; paged by zone name (`maxItems` 1..100).
pub(super) async fn list_zones(
    State(sim): State<VinylDnsSim>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Answer {
    let max = max_items(&q, 100)?;
    let ignore_access = flag(&q, "ignoreAccess")?;
    let st = sim.lock();
    let mine = |z: &SimZone| {
        st.groups
            .get(&z.admin_group_id)
            .is_some_and(|g| g.members.contains(&caller.id))
    };
    let mut zones: Vec<&SimZone> = st
        .zones
        .iter()
        .filter(|z| ignore_access || caller.is_super || mine(z))
        .filter(|z| {
            q.get("nameFilter")
                .is_none_or(|f| z.name.to_lowercase().contains(&f.to_lowercase()))
        })
        .collect();
    zones.sort_by(|a, b| a.name.cmp(&b.name));
    let start = q.get("startFrom");
    let rest: Vec<&SimZone> = zones
        .into_iter()
        .filter(|z| start.is_none_or(|s| z.name.as_str() > s.as_str()))
        .collect();
    let page: Vec<Value> = rest
        .iter()
        .take(max)
        .map(|z| {
            let rules: Vec<Value> = z
                .acl_group_ids
                .iter()
                .map(|g| json!({ "accessLevel": "Read", "groupId": g }))
                .collect();
            json!({
                "id": z.id,
                "name": z.name,
                "email": "dns@example.com",
                "status": "Active",
                "adminGroupId": z.admin_group_id,
                "acl": { "rules": rules },
            })
        })
        .collect();
    let mut body = json!({ "zones": page, "maxItems": max, "ignoreAccess": ignore_access });
    if let Some(o) = body.as_object_mut() {
        if rest.len() > max {
            o.insert("nextId".into(), rest[max - 1].name.clone().into());
        }
        if let Some(s) = start {
            o.insert("startFrom".into(), s.clone().into());
        }
    }
    Ok(ok(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_written_with_its_groups_in_id_order() {
        let two = BTreeSet::from([
            "7642229b-9c17-4f83-bffd-f5044c7a4b67".to_owned(),
            "a \"quoted\" id\\ é\n".to_owned(),
        ]);
        for (id, name, groups, want) in [
            (
                "u-1",
                "jane@corp.com",
                Some(&two),
                json!({"id": "u-1", "userName": "jane@corp.com", "groupId": [
                    "7642229b-9c17-4f83-bffd-f5044c7a4b67", "a \"quoted\" id\\ é\n"]}),
            ),
            (
                "u\"2",
                "o'neil \u{7}",
                None,
                json!({"id": "u\"2", "userName": "o'neil \u{7}", "groupId": []}),
            ),
        ] {
            let got: Value = serde_json::from_slice(&user_info(id, name, groups)).expect("json");
            assert_eq!(got, want);
        }
    }
}

//! The Crafter Studio simulator's API 2 handlers: the group, member and user endpoints under
//! `/api/2/`.

// The handlers' helpers fail with the answer to send, an axum `Response`: boxing it would only
// be unboxed again one line later.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::*;

/// An API 2 handler's answer: `Err` carries its error response, so that `?` can pass one on.
pub(super) type Answer = Result<Response, Response>;

/// `GET /api/2/groups?keyword=&offset=&limit=&sort=`.
pub(super) async fn a1_list(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let (offset, limit) = match (number(&q, "offset", 0), number(&q, "limit", 10)) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(e), _) | (_, Err(e)) => return Err(bad_request(&e)),
    };
    if let Some(sort) = param(&q, "sort")
        && st.api == SimApi::V2
    {
        let ok = sort.split(',').all(|part| {
            let mut words = part.split_whitespace();
            let col = words.next().unwrap_or_default();
            let dir = words.next();
            [
                "id",
                "record_last_updated",
                "group_name",
                "externally_managed",
            ]
            .contains(&col)
                && dir
                    .is_none_or(|d| d.eq_ignore_ascii_case("asc") || d.eq_ignore_ascii_case("desc"))
                && words.next().is_none()
        });
        if !ok {
            return Err(bad_request("sort"));
        }
    }
    // 3.1 has no keyword filter: it lists every group.
    let keyword = param(&q, "keyword")
        .filter(|_| st.api == SimApi::V2)
        .map(|k| st.key(k));
    let ci = st.behaviour.case_insensitive_names;
    // `group_name LIKE %keyword%`, against the index's lower-case name when names ignore case
    // (the key the switch makes), so that no name is lowered per call.
    let wanted = |lower: &str, name: &str| {
        keyword.as_deref().is_none_or(|k| {
            if ci {
                lower.contains(k)
            } else {
                name.contains(k)
            }
        })
    };
    let (total, page): (usize, Vec<Value>) = if st.api == SimApi::V2 {
        // 4.x sorts by name: the index is kept in that order (lower-case name, then id), so a
        // page is a walk to it, not a sort of every group.
        let names = &st.global_names;
        let page = names
            .iter()
            .filter(|(lower, name, _)| wanted(lower, name))
            .skip(as_index(offset))
            .take(as_index(limit))
            .filter_map(|(_, _, id)| st.groups.get(id))
            .map(|g| st.group_json(g))
            .collect();
        let total = if keyword.is_some() {
            names.iter().filter(|(l, n, _)| wanted(l, n)).count()
        } else {
            names.len()
        };
        (total, page)
    } else {
        // 3.1 lists in id order, the map's.
        let global = || st.groups.values().filter(|g| g.site.is_none());
        let page = global()
            .skip(as_index(offset))
            .take(as_index(limit))
            .map(|g| st.group_json(g))
            .collect();
        (st.global_names.len(), page)
    };
    Ok(v2_ok(
        StatusCode::OK,
        0,
        "OK",
        json!({ "total": total, "offset": offset, "limit": page.len(), "groups": page }),
    ))
}

/// Refuses JSON fields outside `known` when the switch says so.
pub(super) fn unknown_fields(
    st: &SimState,
    body: &Map<String, Value>,
    known: &[&str],
) -> Result<(), Response> {
    if st.behaviour.unknown_fields == UnknownFields::Reject
        && let Some(k) = body.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(bad_request(&format!("Unrecognized field \"{k}\"")));
    }
    Ok(())
}

/// `POST /api/2/groups` `{"name", "desc"}`.
pub(super) async fn a2_create(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let Some(b) = parse_object(&body) else {
        return Err(bad_request("JSON parse error"));
    };
    unknown_fields(&st, &b, &["id", "name", "desc", "externallyManaged"])?;
    let field = st.behaviour.validation_field.clone();
    let name = match b.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => return Err(validation(&[(field, "must not be null".into())])),
    };
    let desc = match b.get("desc") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(bad_request("desc")),
    };
    let mut errors = Vec::new();
    if st.api == SimApi::V2 && st.behaviour.name_rules {
        if !(3..=512).contains(&name.chars().count()) {
            errors.push((field.clone(), "size must be between 3 and 512".to_owned()));
        }
        if !group_name_matches(&name) {
            errors.push((field, format!("must match \"{GROUP_NAME_PATTERN}\"")));
        }
        if desc.as_ref().is_some_and(|d| d.chars().count() > 1024) {
            errors.push((
                "groupDescription".into(),
                "size must be between 0 and 1024".into(),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(validation(&errors));
    }
    if st.find(&name, None).is_some() {
        return Err(v2_error(
            StatusCode::CONFLICT,
            4001,
            "Group already exists",
            "Try a different group name",
        ));
    }
    // The server forces externallyManaged = false and ignores any id.
    let id = st.insert(&name, desc, false, None);
    let g = st.group_json(&st.groups[&id]);
    Ok(v2_ok(
        StatusCode::CREATED,
        1,
        "Created",
        json!({ "group": g }),
    ))
}

/// `PATCH /api/2/groups` `{"id", "desc"}` (3.1: `{"id", "name", "desc"}`, both replaced).
pub(super) async fn a3_update(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let Some(b) = parse_object(&body) else {
        return Err(bad_request("JSON parse error"));
    };
    // Studio 3.1 and 4.0.0-4.0.2 take the whole group and replace its name too.
    let whole = st.api == SimApi::V31 || st.behaviour.patch == PatchShape::WholeGroup;
    let known: &[&str] = if whole {
        &["id", "name", "desc", "externallyManaged"]
    } else {
        &["id", "desc"]
    };
    unknown_fields(&st, &b, known)?;
    let Some(id) = b.get("id").and_then(Value::as_i64) else {
        return Err(bad_request("id"));
    };
    let desc = match b.get("desc") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(bad_request("desc")),
    };
    if st.api == SimApi::V2 && desc.as_ref().is_some_and(|d| d.chars().count() > 1024) {
        return Err(validation(&[(
            "groupDescription".into(),
            "size must be between 0 and 1024".into(),
        )]));
    }
    let external = st.global_group(id)?.external;
    if external {
        return Err(externally_managed());
    }
    let new_name = if whole {
        match b.get("name").and_then(Value::as_str) {
            Some(n) => Some(n.to_owned()),
            None => return Err(internal("Column 'group_name' cannot be null")),
        }
    } else {
        None
    };
    if let Some(n) = &new_name
        && st.find(n, None).is_some_and(|other| other != id)
    {
        return Err(v2_error(
            StatusCode::CONFLICT,
            4001,
            "Group already exists",
            "Try a different group name",
        ));
    }
    let Some(g) = st.groups.get_mut(&id) else {
        return Err(group_not_found());
    };
    g.desc = desc;
    if let Some(n) = new_name {
        st.rename_group(id, n);
    }
    let v = st.group_json(&st.groups[&id]);
    Ok(v2_ok(StatusCode::OK, 0, "OK", json!({ "group": v })))
}

/// `DELETE /api/2/groups?id=1&id=2`: all ids must exist, else nothing is deleted.
pub(super) async fn a4_delete(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let mut ids = Vec::new();
    for (k, v) in &q {
        if k == "id" {
            match v.parse::<i64>() {
                Ok(id) => ids.push(id),
                Err(_) => return Err(bad_request("id")),
            }
        }
    }
    if ids.is_empty() {
        return Err(bad_request("id"));
    }
    for id in &ids {
        let g = st.global_group(*id)?;
        if g.name == "system_admin" {
            return Err(internal("Deleting the System Admin group is not allowed."));
        }
        if g.external {
            return Err(externally_managed());
        }
    }
    for id in ids {
        st.remove_group(id);
    }
    Ok(v2_ok(StatusCode::OK, 2, "Deleted", json!({})))
}

pub(super) fn path_id(raw: &str) -> Result<i64, Response> {
    raw.parse::<i32>()
        .map(i64::from)
        .map_err(|_| bad_request("id"))
}

/// `GET /api/2/groups/{id}`.
pub(super) async fn a5_get(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let id = path_id(&raw)?;
    let g = st.global_group(id)?;
    Ok(v2_ok(
        StatusCode::OK,
        0,
        "OK",
        json!({ "group": st.group_json(g) }),
    ))
}

/// `GET /api/2/groups/{id}/members?offset=&limit=`: `limit` echoes the request.
pub(super) async fn a6_members(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<Params>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let id = path_id(&raw)?;
    let (offset, limit) = match (number(&q, "offset", 0), number(&q, "limit", 10)) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(e), _) | (_, Err(e)) => return Err(bad_request(&e)),
    };
    let g = st.global_group(id)?;
    // `u.deleted = 0`: soft-deleted members are neither listed nor counted.
    let visible: Vec<i64> = g
        .members
        .iter()
        .copied()
        .filter(|u| !st.deleted.contains(u))
        .collect();
    let users: Vec<Value> = visible
        .iter()
        .skip(as_index(offset))
        .take(as_index(limit))
        .map(|u| st.user_json(*u))
        .collect();
    Ok(v2_ok(
        StatusCode::OK,
        0,
        "OK",
        json!({ "total": visible.len(), "offset": offset, "limit": limit, "users": users }),
    ))
}

/// Resolves ids and usernames, all or nothing.
pub(super) fn resolve_users(
    st: &SimState,
    ids: &[i64],
    names: &[String],
) -> Result<BTreeSet<i64>, Response> {
    let mut out = BTreeSet::new();
    for id in ids {
        if !st.users.contains_key(id) {
            return Err(user_not_found());
        }
        out.insert(*id);
    }
    for n in names {
        match st.user_id(n) {
            Some(id) => {
                out.insert(id);
            }
            None => return Err(user_not_found()),
        }
    }
    Ok(out)
}

/// `POST /api/2/groups/{id}/members` `{"ids": [...], "usernames": [...]}`.
pub(super) async fn a7_add(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let id = path_id(&raw)?;
    let Some(b) = parse_object(&body) else {
        return Err(bad_request("JSON parse error"));
    };
    let ids: Vec<i64> = b
        .get("ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let names: Vec<String> = b
        .get("usernames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() && names.is_empty() {
        return Err(bad_request("Both 'userIds' and 'usernames' are empty"));
    }
    if st.api == SimApi::V2 && st.behaviour.name_rules {
        let bad: Vec<(String, String)> = names
            .iter()
            .filter(|n| !valid_username(n))
            .map(|n| ("usernames".to_owned(), format!("invalid username \"{n}\"")))
            .collect();
        if !bad.is_empty() {
            return Err(validation(&bad));
        }
    }
    st.global_group(id)?;
    let users = resolve_users(&st, &ids, &names)?;
    if let Some(g) = st.groups.get_mut(&id) {
        // INSERT IGNORE: existing members are a no-op.
        g.members.extend(users.iter().copied());
    }
    let list: Vec<Value> = users.iter().map(|u| st.user_json(*u)).collect();
    Ok(v2_ok(StatusCode::OK, 0, "OK", json!({ "users": list })))
}

/// `DELETE /api/2/groups/{id}/members?userId=&username=`.
pub(super) async fn a8_remove(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<Params>,
) -> Answer {
    let mut st = sim.lock();
    st.api2(&headers)?;
    let id = path_id(&raw)?;
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for (k, v) in &q {
        match k.as_str() {
            "userId" => match v.parse::<i64>() {
                Ok(i) => ids.push(i),
                Err(_) => return Err(bad_request("userId")),
            },
            "username" => names.push(v.clone()),
            _ => {}
        }
    }
    if ids.is_empty() && names.is_empty() {
        return Err(bad_request("All parameters are empty or null"));
    }
    // `username` values are validated, `userId` values are not.
    if st.api == SimApi::V2 && st.behaviour.name_rules {
        let bad: Vec<(String, String)> = names
            .iter()
            .filter(|n| !valid_username(n))
            .map(|n| ("username".to_owned(), format!("invalid username \"{n}\"")))
            .collect();
        if !bad.is_empty() {
            return Err(validation(&bad));
        }
    }
    let g = st.global_group(id)?;
    let (is_admin_group, current) = (g.name == "system_admin", g.members.clone());
    let users = resolve_users(&st, &ids, &names)?;
    if is_admin_group && current.iter().all(|m| users.contains(m)) {
        return Err(internal(
            "Removing all members of the System Admin group is not allowed.",
        ));
    }
    if let Some(g) = st.groups.get_mut(&id) {
        // Removing a non-member is a silent no-op.
        g.members.retain(|m| !users.contains(m));
    }
    Ok(v2_ok(StatusCode::OK, 2, "Deleted", json!({})))
}

/// `GET /api/2/users/{id or username}`.
pub(super) async fn a9_user(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Path(ident): Path<String>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let id = if let Ok(n) = ident.parse::<i64>() {
        st.users.contains_key(&n).then_some(n)
    } else {
        // Studio validates a username here too (the path variable is `id`); a soft-deleted
        // user is still found.
        if st.behaviour.name_rules && st.api == SimApi::V2 && !valid_username(&ident) {
            return Err(validation(&[(
                "id".into(),
                format!("invalid username \"{ident}\""),
            )]));
        }
        st.user_id(&ident)
    };
    match id {
        Some(id) => Ok(v2_ok(
            StatusCode::OK,
            0,
            "OK",
            json!({ "user": st.user_json(id) }),
        )),
        None => Err(user_not_found()),
    }
}

/// `GET /api/2/users?keyword=&offset=&limit=&sort=`: every user but the soft-deleted ones
/// (`u.deleted = 0`), by id; `limit` is the number returned.
pub(super) async fn a10_users(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Answer {
    let st = sim.lock();
    st.api2(&headers)?;
    let (offset, limit) = match (number(&q, "offset", 0), number(&q, "limit", 10)) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(e), _) | (_, Err(e)) => return Err(bad_request(&e)),
    };
    let keyword = param(&q, "keyword").map(|k| st.key(k));
    let users: Vec<i64> = st
        .users
        .iter()
        .filter(|(id, _)| !st.deleted.contains(id))
        .filter(|(_, u)| {
            // username, first name, last name or e-mail LIKE %keyword%
            keyword.as_ref().is_none_or(|k| {
                st.key(u).contains(k.as_str())
                    || st.key(&format!("{u}@example.com")).contains(k.as_str())
            })
        })
        .map(|(id, _)| *id)
        .collect();
    let page: Vec<Value> = users
        .iter()
        .skip(as_index(offset))
        .take(as_index(limit))
        .map(|u| st.user_json(*u))
        .collect();
    Ok(v2_ok(
        StatusCode::OK,
        0,
        "OK",
        json!({ "total": users.len(), "offset": offset, "limit": page.len(), "users": page }),
    ))
}

//! The Crafter Studio simulator's API 1 handlers: the session login and the scripts that
//! Studio 3.1 and older serve group and user management through.

// The handlers' helpers fail with the answer to send, an axum `Response`: boxing it would only
// be unboxed again one line later.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Map, Value, json};

use super::*;

pub(super) fn cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The XSRF cookie and header match (any value the caller chose).
pub(super) fn xsrf_ok(headers: &HeaderMap) -> bool {
    let cookie = cookies(headers)
        .into_iter()
        .find(|(k, _)| k == "XSRF-TOKEN")
        .map(|(_, v)| v);
    let head = headers.get("X-XSRF-TOKEN").and_then(|v| v.to_str().ok());
    matches!((cookie.as_deref(), head), (Some(c), Some(h)) if !c.is_empty() && c == h)
}

/// `POST /api/1/services/api/1/security/login.json` (Studio 3.0 and 3.1).
pub(super) async fn v1_login(
    State(sim): State<CrafterSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = sim.lock();
    if st.api == SimApi::V2 {
        return not_found_body();
    }
    if !xsrf_ok(&headers) {
        return v1_message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let Some(b) = parse_object(&body) else {
        return v1_message(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let user = b.get("username").and_then(Value::as_str);
    let pass = b.get("password").and_then(Value::as_str);
    let (Some(user), Some(pass)) = (user, pass) else {
        return v1_message(StatusCode::BAD_REQUEST, "Bad Request");
    };
    if user != st.username || pass != st.password {
        return v1_message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let session = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    st.sessions.insert(session.clone());
    let mut resp = (
        StatusCode::OK,
        Json(json!({
            "username": user,
            "first_name": user,
            "last_name": "",
            "email": format!("{user}@example.com"),
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={session}; Path=/studio; HttpOnly")) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Every `…/api/1/services/api/1/group/{script}` call.
pub(super) async fn v1_script(
    State(sim): State<CrafterSim>,
    method: Method,
    headers: HeaderMap,
    Path(script): Path<String>,
    Query(q): Query<Params>,
    body: Bytes,
) -> Response {
    let mut st = sim.lock();
    if st.api == SimApi::V2 {
        return not_found_body();
    }
    let post = method == Method::POST;
    if post && !xsrf_ok(&headers) {
        return v1_message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let session = cookies(&headers)
        .into_iter()
        .find(|(k, _)| k == "JSESSIONID")
        .map(|(_, v)| v);
    if !session.is_some_and(|s| st.sessions.contains(&s)) {
        return v1_message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if st.api == SimApi::V31 {
        let mut resp = v1_message(StatusCode::MOVED_PERMANENTLY, "API deprecated.");
        resp.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_static("/studio/api/2/groups"),
        );
        return resp;
    }
    // Parameters: the JSON body of a POST, the query of a GET.
    let args: Map<String, Value> = if post {
        match parse_object(&body) {
            Some(m) => m,
            None => return v1_message(StatusCode::BAD_REQUEST, "Bad Request"),
        }
    } else {
        q.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect()
    };
    let arg = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let required = |keys: &[&str]| -> Result<Vec<String>, Response> {
        let missing: Vec<&str> = keys.iter().copied().filter(|k| arg(k).is_none()).collect();
        if missing.is_empty() {
            Ok(keys.iter().filter_map(|k| arg(k)).collect())
        } else {
            Err(v1_message(
                StatusCode::BAD_REQUEST,
                &format!("Invalid parameter(s): [{}]", missing.join(", ")),
            ))
        }
    };
    let page = |q: &Params| -> Result<(usize, usize), Response> {
        let get = |k: &str, d: usize| match param(q, k) {
            None => Ok(d),
            Some(v) => v.parse::<usize>().map_err(|_| {
                v1_message(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid parameter(s): [{k}]"),
                )
            }),
        };
        Ok((get("start", 0)?, get("number", 25)?))
    };
    let site_missing = |st: &SimState, site: &str| !st.sites.contains(site);
    // The arguments of a call on one site's group: `first`, then `group_name` and `site_id`, all
    // required, the site checked; their values in that order, and the group if there is one.
    let group_call =
        |st: &SimState, first: &[&str]| -> Result<(Vec<String>, Option<i64>), Response> {
            let keys: Vec<&str> = first
                .iter()
                .copied()
                .chain(["group_name", "site_id"])
                .collect();
            let v = required(&keys)?;
            let (name, site) = (&v[first.len()], &v[first.len() + 1]);
            if site_missing(st, site) {
                return Err(v1_message(StatusCode::NOT_FOUND, "Site not found"));
            }
            let found = st.find(name, Some(site));
            Ok((v, found))
        };
    let result: Result<Response, Response> = (|| {
        match (post, script.as_str()) {
            (true, "create.json") => {
                let (v, found) = group_call(&st, &[])?;
                let (name, site) = (&v[0], &v[1]);
                if found.is_some() {
                    return Ok(with_location(
                        v1_message(StatusCode::CONFLICT, "Group already exists"),
                        name,
                    ));
                }
                let desc = arg("description");
                v1_column("group_name", name, 255)?;
                if let Some(d) = &desc {
                    v1_column("description", d, 3000)?;
                }
                st.insert(name, desc, false, Some(site.clone()));
                Ok(with_location(v1_message(StatusCode::CREATED, "OK"), name))
            }
            (true, "update.json") => {
                let (v, found) = group_call(&st, &[])?;
                let name = &v[0];
                let Some(id) = found else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                // SET description = #{description}: omitted means NULL.
                let desc = args
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if let Some(d) = &desc {
                    v1_column("description", d, 3000)?;
                }
                if let Some(g) = st.groups.get_mut(&id) {
                    g.desc = desc;
                }
                Ok(with_location(v1_message(StatusCode::OK, "OK"), name))
            }
            (true, "delete.json") => {
                let (_, found) = group_call(&st, &[])?;
                let Some(id) = found else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                st.remove_group(id);
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            (true, "add-user.json") | (true, "remove-user.json") => {
                let (v, found) = group_call(&st, &["username"])?;
                let (user, name) = (&v[0], &v[1]);
                let Some(id) = found else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                let uid = st.user_id(user);
                let adding = script == "add-user.json";
                let Some(g) = st.groups.get_mut(&id) else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                match (adding, uid) {
                    (_, None) => Ok(v1_message(StatusCode::NOT_FOUND, "User not found")),
                    (true, Some(u)) if g.members.contains(&u) => Ok(with_location(
                        v1_message(StatusCode::CONFLICT, "User already in group"),
                        name,
                    )),
                    (true, Some(u)) => {
                        g.members.insert(u);
                        Ok(with_location(v1_message(StatusCode::OK, "OK"), name))
                    }
                    // Not a member answers the same 404 as no such user.
                    (false, Some(u)) if !g.members.remove(&u) => {
                        Ok(v1_message(StatusCode::NOT_FOUND, "User not found"))
                    }
                    (false, Some(_)) => Ok(StatusCode::NO_CONTENT.into_response()),
                }
            }
            (false, "get.json") => {
                let (v, found) = group_call(&st, &[])?;
                let site = &v[1];
                match found.and_then(|id| st.groups.get(&id)) {
                    Some(g) => Ok((
                        StatusCode::OK,
                        Json(json!({
                            "group_name": g.name,
                            "description": g.desc,
                            "site_id": site,
                        })),
                    )
                        .into_response()),
                    None => Ok(v1_message(StatusCode::NOT_FOUND, "Group not found")),
                }
            }
            (false, "get-per-site.json") => {
                let v = required(&["site_id"])?;
                let site = &v[0];
                if site_missing(&st, site) {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Site not found"));
                }
                let (start, number) = page(&q)?;
                // The site's index of names is in the list's order (lower-case name, then
                // id): a page is a walk to it, not a sort of every group.
                let names = st.names(Some(site));
                let total = names.map_or(0, |n| n.len());
                let list: Vec<Value> = names
                    .into_iter()
                    .flat_map(|n| n.iter())
                    .filter_map(|(_, _, id)| st.groups.get(id))
                    .skip(start)
                    .take(number)
                    .map(|g| {
                        let users: Vec<Value> =
                            g.members.iter().map(|u| v1_user(&st, *u)).collect();
                        json!({ "group_name": g.name, "description": g.desc, "users": users })
                    })
                    .collect();
                Ok((
                    StatusCode::OK,
                    Json(json!({ "groups": list, "total": total })),
                )
                    .into_response())
            }
            (false, "users.json") => {
                let (_, found) = group_call(&st, &[])?;
                let (start, number) = page(&q)?;
                let Some(g) = found.and_then(|id| st.groups.get(&id)) else {
                    return Ok(v1_message(StatusCode::NOT_FOUND, "Group not found"));
                };
                let users: Vec<Value> = g
                    .members
                    .iter()
                    .skip(start)
                    .take(number)
                    .map(|u| v1_user(&st, *u))
                    .collect();
                Ok((
                    StatusCode::OK,
                    Json(json!({ "users": users, "total": g.members.len() })),
                )
                    .into_response())
            }
            _ => Ok(not_found_body()),
        }
    })();
    result.unwrap_or_else(|r| r)
}

/// What Studio 3.0's database does with a value for a `VARCHAR(max)` column of charset `utf8`
/// (MySQL's three-byte UTF-8, in strict mode): too long, or with a character beyond the Basic
/// Multilingual Plane, the insert fails, and the script answers 500 with the exception's text.
pub(super) fn v1_column(column: &str, value: &str, max: usize) -> Result<(), Response> {
    let problem = if value.chars().count() > max {
        format!("Data too long for column '{column}' at row 1")
    } else if value.chars().any(|c| u32::from(c) > 0xFFFF) {
        format!("Incorrect string value for column '{column}' at row 1")
    } else {
        return Ok(());
    };
    Err(v1_message(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("Internal server error: \n{problem}"),
    ))
}

pub(super) fn v1_user(st: &SimState, id: i64) -> Value {
    let username = st.users.get(&id).cloned().unwrap_or_default();
    json!({
        "username": username,
        "first_name": username,
        "last_name": "",
        "email": format!("{username}@example.com"),
        "externally_managed": false,
    })
}

/// An `offset` or `limit` Studio has validated as at least 0, as a count of items (one beyond any
/// list when it does not fit).
pub(super) fn as_index<N: TryInto<usize>>(n: N) -> usize {
    n.try_into().unwrap_or(usize::MAX)
}

//! The Crafter Studio simulator's wire: Tomcat in front of Studio (request size, the servlet
//! context) and Studio's answers (the API 2 envelope, its errors, the API 1 messages).

// The handlers' helpers fail with the answer to send, an axum `Response`: boxing it would only
// be unboxed again one line later.
#![allow(clippy::result_large_err)]

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Map, Value, json};

use super::*;

/// The bytes of a request's line and headers as they went over the wire, which is what Tomcat
/// holds against `maxHttpHeaderSize`.
pub(super) fn head_size(req: &axum::extract::Request) -> usize {
    let target = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path().len(), |p| p.as_str().len());
    // "METHOD target HTTP/1.1\r\n", each "name: value\r\n", and the blank line.
    let line = req.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len() + 2;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.as_bytes().len() + 2)
        .sum();
    line + headers + 2
}

/// What Tomcat answers and Studio never sees: a request line and headers over
/// `maxHttpHeaderSize` (`400`, Tomcat's own error page, the connection closed); and, on Studio
/// 3.1, an API 2 write without the XSRF cookie/header pair (Spring Security's `403`).
pub(super) async fn gate(
    State(sim): State<CrafterSim>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (limit, api) = {
        let st = sim.lock();
        (st.behaviour.max_http_header_size, st.api)
    };
    if head_size(&req) > limit {
        let mut resp = (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
            "<!doctype html><html lang=\"en\"><head><title>HTTP Status 400 – Bad Request</title>\
             </head><body><h1>HTTP Status 400 – Bad Request</h1></body></html>",
        )
            .into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    if api == SimApi::V31
        && req.uri().path().starts_with("/studio/api/2/")
        && req.method() != Method::GET
        && !xsrf_ok(req.headers())
    {
        return v1_message(StatusCode::FORBIDDEN, "Forbidden");
    }
    next.run(req).await
}

pub(super) const BAD_PARAMS: &str = "Invalid parameter(s)";
pub(super) const CHECK_PARAMS: &str =
    "Check API and make sure you're sending the correct parameters";

pub(super) fn response_object(code: i64, message: &str, remedial: &str) -> Value {
    json!({
        "code": code,
        "message": message,
        "remedialAction": remedial,
        "documentationUrl": "",
    })
}

pub(super) fn v2_error(status: StatusCode, code: i64, message: &str, remedial: &str) -> Response {
    (
        status,
        Json(json!({ "response": response_object(code, message, remedial) })),
    )
        .into_response()
}

pub(super) fn v2_ok(status: StatusCode, code: i64, message: &str, rest: Value) -> Response {
    let mut body = Map::new();
    body.insert("response".into(), response_object(code, message, ""));
    if let Value::Object(m) = rest {
        body.extend(m);
    }
    (status, Json(Value::Object(body))).into_response()
}

pub(super) fn bad_request(detail: &str) -> Response {
    let message = if detail.is_empty() {
        BAD_PARAMS.to_owned()
    } else {
        format!("{BAD_PARAMS} : {detail}")
    };
    v2_error(StatusCode::BAD_REQUEST, 1001, &message, CHECK_PARAMS)
}

pub(super) fn validation(errors: &[(String, String)]) -> Response {
    let list: Vec<Value> = errors
        .iter()
        .map(|(f, m)| json!({ "field": f, "message": m }))
        .collect();
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "response": response_object(1001, BAD_PARAMS, CHECK_PARAMS),
            "validationErrors": list,
        })),
    )
        .into_response()
}

pub(super) fn group_not_found() -> Response {
    v2_error(
        StatusCode::NOT_FOUND,
        4000,
        "Group not found",
        "Check if you sent in the right Group Id",
    )
}

pub(super) fn user_not_found() -> Response {
    v2_error(
        StatusCode::NOT_FOUND,
        6000,
        "User not found",
        "Check if you're using the correct User ID or username",
    )
}

pub(super) fn externally_managed() -> Response {
    v2_error(
        StatusCode::FORBIDDEN,
        4002,
        "Group is externally managed",
        "Update the group in the main identity system (e.g. LDAP)",
    )
}

pub(super) fn internal(detail: &str) -> Response {
    v2_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        1000,
        &format!("Internal system failure: {detail}"),
        "Contact support",
    )
}

pub(super) fn not_found_body() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "message": "Not Found" })),
    )
        .into_response()
}

pub(super) async fn not_found() -> Response {
    not_found_body()
}

pub(super) fn v1_message(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

pub(super) fn with_location(mut resp: Response, group: &str) -> Response {
    // As the scripts do: the name is not encoded and the site is missing.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CONTEXT}/api/1/services/api/1/group/get.json?group_name={group}"
    )) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Query parameters in order (repeats kept).
pub(super) type Params = Vec<(String, String)>;

pub(super) fn param<'a>(q: &'a Params, k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// A non-negative integer parameter, or the default.
pub(super) fn number(q: &Params, k: &str, default: u64) -> Result<u64, String> {
    match param(q, k) {
        None => Ok(default),
        Some(v) => v.parse::<u64>().map_err(|_| format!("{k} must be >= 0")),
    }
}

pub(super) fn parse_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

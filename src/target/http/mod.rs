//! What every HTTP connector shares: a client with verified TLS and timeouts, the count of API
//! calls, and turning an HTTP failure into a [`CallErrorKind`] that carries the server's own
//! message and `Retry-After`. [`endpoint`] sends a connector's requests; [`paging`] reads its
//! paged lists whole.

pub mod endpoint;
pub mod pace;
pub mod paging;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Response, StatusCode};

use crate::target::CallErrorKind;

/// Building an HTTP client failed (an unreadable or invalid CA file).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ClientError {
    /// What was being set up.
    pub what: String,
    /// Why it failed.
    pub message: String,
}

/// A client that verifies TLS against the system roots (and `ca_file`, when given), with a
/// per-request timeout. Certificate checks cannot be turned off.
///
/// Redirects are never followed: a reconciler must see what the API answered, and following a
/// `301` turns a POST into a GET that "succeeds" (Crafter Studio 3.1 answers its retired group
/// API that way).
pub fn client(timeout: Duration, ca_file: Option<&Path>) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(crate::instance::user_agent());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| ClientError {
            what: format!("ca_file {}", path.display()),
            message: e.to_string(),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError {
            what: format!("ca_file {}", path.display()),
            message: e.to_string(),
        })?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(|e| ClientError {
        what: "HTTP client".to_owned(),
        message: e.to_string(),
    })
}

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is percent-encoded.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a path segment, or a query key or value, with the strict RFC 3986 set, so
/// that `/`, `+`, `%`, a space or any other character of user data cannot change its meaning.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, STRICT).to_string()
}

/// API calls made by this process, by target name and HTTP status (0: no answer came).
static CALLS: Mutex<BTreeMap<(String, u16), u64>> = Mutex::new(BTreeMap::new());

/// Sends one request for `target`, counting it by its answer's status for `/metrics`. Every
/// connector sends through here or [`send_built`].
pub async fn send(target: &str, req: reqwest::RequestBuilder) -> Result<Response, reqwest::Error> {
    count(target, req.send().await)
}

/// [`send`] for a request already built (and authorised) by an [`endpoint::Endpoint`].
pub async fn send_built(
    target: &str,
    http: &reqwest::Client,
    req: reqwest::Request,
) -> Result<Response, reqwest::Error> {
    count(target, http.execute(req).await)
}

fn count(
    target: &str,
    result: Result<Response, reqwest::Error>,
) -> Result<Response, reqwest::Error> {
    let status = result.as_ref().map_or(0, |r| r.status().as_u16());
    let mut calls = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    *calls.entry((target.to_owned(), status)).or_default() += 1;
    drop(calls);
    result
}

/// How many API calls this process has made, by target name and status (0: no answer), in order.
pub fn api_calls() -> Vec<(String, u16, u64)> {
    CALLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|((t, s), n)| (t.clone(), *s, *n))
        .collect()
}

/// Classifies a transport failure (no response, or a response that broke off).
pub fn transport_error(e: &reqwest::Error) -> CallErrorKind {
    if e.is_timeout() {
        CallErrorKind::Timeout
    } else if e.is_decode() {
        CallErrorKind::Decode(crate::diag::error_chain(e))
    } else {
        CallErrorKind::Connect(crate::diag::error_chain(e))
    }
}

/// The server's `Retry-After`, in its seconds form (the HTTP-date form is treated as absent).
pub fn retry_after(resp: &Response) -> Option<Duration> {
    retry_after_in(resp.headers())
}

/// `Retry-After` among `headers`, as [`retry_after`] reads it.
pub fn retry_after_in(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Reads an error response: its status, the server's message (see [`server_message`]), and
/// `Retry-After` in seconds.
pub async fn status_error(resp: Response) -> CallErrorKind {
    let status = resp.status();
    let retry_after = retry_after(&resp);
    let body = resp.text().await.unwrap_or_default();
    CallErrorKind::Status {
        status: status.as_u16(),
        message: server_message(status, &body),
        retry_after,
    }
}

/// The message a server gave in an error body, with any validation details it listed: the
/// `message` field (with a Contensis-style `data` list and `logId`), an RFC 7807 problem's
/// `detail`, or its `title` with the ASP.NET `errors` map, an OAuth `error_description` or
/// `error`; else the body's start after the status reason.
pub fn server_message(status: StatusCode, body: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("error");
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        let t = body.trim();
        return if t.is_empty() {
            reason.to_owned()
        } else {
            format!("{reason}: {}", t.chars().take(300).collect::<String>())
        };
    };
    let get = |o: &serde_json::Value, k: &str| -> Option<String> {
        o.as_object()?
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    };
    if get(&v, "message").is_none()
        && let Some(problem) = problem_details(&v)
    {
        return problem;
    }
    let mut msg = get(&v, "message")
        .or_else(|| get(&v, "error_description"))
        .or_else(|| get(&v, "error"))
        .unwrap_or_else(|| reason.to_owned());
    if let Some(items) = v
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("data")))
        .and_then(|(_, d)| d.as_array())
    {
        let details: Vec<String> = items
            .iter()
            .filter_map(|i| match (get(i, "field"), get(i, "message")) {
                (Some(f), Some(m)) => Some(format!("{f}: {m}")),
                (None, Some(m)) => Some(m),
                _ => None,
            })
            .collect();
        if !details.is_empty() {
            msg = format!("{msg} ({})", details.join("; "));
        }
    }
    if let Some(log_id) = get(&v, "logId") {
        msg = format!("{msg} [logId {log_id}]");
    }
    msg
}

/// An RFC 7807 problem (`detail`, else `title` with the `errors` map ASP.NET adds to validation
/// failures), if the body is one.
fn problem_details(v: &serde_json::Value) -> Option<String> {
    let text = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(detail) = text("detail") {
        return Some(detail.to_owned());
    }
    let title = text("title")?;
    let details: Vec<String> = v
        .get("errors")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
        .map(|(field, msgs)| {
            let msgs: Vec<&str> = msgs
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
                .unwrap_or_default();
            format!("{field}: {}", msgs.join(" "))
        })
        .collect();
    Some(if details.is_empty() {
        title.to_owned()
    } else {
        format!("{title} ({})", details.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_details_give_the_detail_or_the_title_with_its_errors() {
        assert_eq!(
            server_message(
                StatusCode::NOT_FOUND,
                r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"Group x does not exist"}"#
            ),
            "Group x does not exist"
        );
        assert_eq!(
            server_message(
                StatusCode::BAD_REQUEST,
                r#"{"title":"One or more validation errors occurred.","errors":{"name":["The name field is required."]}}"#
            ),
            "One or more validation errors occurred. (name: The name field is required.)"
        );
    }

    #[test]
    fn validation_details_are_read_whatever_their_casing() {
        let body = r#"{"logId":"abc","message":"Validation error","data":[{"Field":"name","Message":"is required"}],"type":"error"}"#;
        assert_eq!(
            server_message(StatusCode::UNPROCESSABLE_ENTITY, body),
            "Validation error (name: is required) [logId abc]"
        );
    }

    #[test]
    fn a_non_json_body_is_quoted_after_the_reason() {
        assert_eq!(
            server_message(StatusCode::BAD_GATEWAY, "upstream down"),
            "Bad Gateway: upstream down"
        );
        assert_eq!(server_message(StatusCode::BAD_GATEWAY, ""), "Bad Gateway");
    }
}

//! The Contensis simulator's wire: the API's error envelope, the query and path extractors,
//! paging, and the group body a create or update sends.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::*;

/// Every failure answer of the API. All but 401 use the Error envelope with a fresh `logId`.
#[derive(Debug)]
pub(super) enum ApiError {
    Unauthorized,
    Forbidden(String),
    NotFound(&'static str),
    Conflict,
    Validation(Vec<(String, String)>),
    BadRequest(String),
    Status(StatusCode, String),
}

impl ApiError {
    pub(super) fn validation(field: &str, message: &str) -> Self {
        Self::Validation(vec![(field.to_owned(), message.to_owned())])
    }
}

pub(super) fn envelope(status: StatusCode, message: &str, data: Value) -> Response {
    let body = json!({
        "logId": Uuid::new_v4(),
        "message": message,
        "data": data,
        "type": "error",
    });
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => {
                let mut resp = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({ "message": UNAUTHORIZED })),
                )
                    .into_response();
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                resp
            }
            Self::Forbidden(message) => envelope(StatusCode::FORBIDDEN, &message, Value::Null),
            Self::NotFound(message) => envelope(StatusCode::NOT_FOUND, message, Value::Null),
            Self::Conflict => envelope(StatusCode::CONFLICT, ALREADY_EXISTS, Value::Null),
            Self::Validation(items) => {
                let data = items
                    .into_iter()
                    .map(|(field, message)| json!({ "field": field, "message": message }))
                    .collect();
                envelope(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation error",
                    Value::Array(data),
                )
            }
            Self::BadRequest(message) => envelope(StatusCode::BAD_REQUEST, &message, Value::Null),
            Self::Status(status, message) => envelope(status, &message, Value::Null),
        }
    }
}

/// Percent-decoded path parameters, with a bad path answered by the Error envelope.
pub(super) struct Seg<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Seg<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Seg(t))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Query parameters, with names matched case-insensitively.
pub(super) struct Params(pub(super) Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        for unsupported in ["zenQL", "excludedGroups"] {
            if pairs
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(unsupported))
            {
                return Err(ApiError::BadRequest(format!(
                    "{unsupported} is not supported by the simulator"
                )));
            }
        }
        Ok(Params(pairs))
    }
}

/// A page of a list as the API answers it, its fields in the order a JSON value's map writes
/// them (the text is the same either way).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PageOut<T> {
    /// The page's items.
    pub(super) items: Vec<T>,
    page_count: usize,
    page_index: usize,
    page_size: usize,
    total_count: usize,
}

/// One page request.
pub(super) struct Page {
    index: usize,
    size: usize,
    pub(super) descending: bool,
}

impl Params {
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ApiError::BadRequest(format!(
                "The value {v:?} of {key} is not a boolean"
            ))),
        }
    }

    fn number(&self, key: &str, default: u32) -> Result<u32, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                ApiError::BadRequest(format!("The value {v:?} of {key} is not a valid number"))
            }),
        }
    }

    pub(super) fn page(&self, max_size: u32) -> Result<Page, ApiError> {
        let index = self.number("pageIndex", 0)?;
        let size = self.number("pageSize", DEFAULT_PAGE_SIZE)?;
        if size == 0 {
            return Err(ApiError::BadRequest("pageSize must be at least 1".into()));
        }
        let descending = self
            .get("order")
            .and_then(|o| o.split(',').next())
            .is_some_and(|f| f.trim().starts_with('-'));
        Ok(Page {
            index: index as usize,
            size: size.min(max_size.max(1)) as usize,
            descending,
        })
    }
}

impl Page {
    /// This page's items out of all of them, in order: a walk to the page, not a copy of all.
    pub(super) fn of<T>(&self, items: impl Iterator<Item = T>) -> impl Iterator<Item = T> {
        items
            .skip(self.index.saturating_mul(self.size))
            .take(self.size)
    }

    /// The answer carrying this page's items, out of `total`.
    pub(super) fn wrap<T: Serialize>(&self, total: usize, items: Vec<T>) -> PageOut<T> {
        PageOut {
            items,
            page_count: total.div_ceil(self.size),
            page_index: self.index,
            page_size: self.size,
            total_count: total,
        }
    }
}

/// The fields of a group body, found without regard to the case of their keys (the docs send
/// `Description`, responses say `description`); absent and `null` are told apart for merge.
pub(super) struct GroupBody {
    fields: Map<String, Value>,
}

impl GroupBody {
    pub(super) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => Ok(Self { fields }),
            Ok(_) => Err(ApiError::BadRequest(
                "The request body must be a JSON object".into(),
            )),
            Err(e) => Err(ApiError::BadRequest(format!(
                "The request body is not valid JSON: {e}"
            ))),
        }
    }

    pub(super) fn field(&self, key: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    pub(super) fn name(&self) -> Result<Option<String>, ApiError> {
        match self.field("name") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::validation("name", "The name must be a string")),
        }
    }

    /// `None` when absent; `Some(None)` when null.
    pub(super) fn description(&self) -> Result<Option<Option<String>>, ApiError> {
        match self.field("description") {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(ApiError::validation(
                "description",
                "The description must be a string",
            )),
        }
    }

    /// `None` when absent; null is an empty map.
    pub(super) fn custom(&self) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        match self.field("custom") {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(BTreeMap::new())),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(ApiError::validation(
                        &format!("custom.{k}"),
                        "Custom values must be strings",
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(ApiError::validation("custom", "custom must be an object")),
        }
    }

    /// `autoMembershipEmailDomains`: `None` when absent; else null or an array of strings.
    pub(super) fn domains(&self) -> Result<Option<Value>, ApiError> {
        match self.field(AUTO_DOMAINS) {
            None => Ok(None),
            Some(v @ Value::Null) => Ok(Some(v.clone())),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                Ok(Some(Value::Array(items.clone())))
            }
            Some(_) => Err(ApiError::validation(
                AUTO_DOMAINS,
                "The domains must be an array of strings",
            )),
        }
    }

    /// The `type`, checked against the one the group must have.
    pub(super) fn check_kind(&self, expected: GroupKind) -> Result<(), ApiError> {
        match self.field("type") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) if s.eq_ignore_ascii_case(expected.as_str()) => Ok(()),
            Some(_) => Err(ApiError::validation(
                "type",
                &format!("The type must be {:?}", expected.as_str()),
            )),
        }
    }
}

pub(super) fn json_ok(status: StatusCode, body: impl Serialize) -> Response {
    (status, Json(body)).into_response()
}

pub(super) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A JSON array of GUID strings (bulk add bodies).
pub(super) fn parse_guids(body: &[u8]) -> Result<Vec<Uuid>, ApiError> {
    let items: Vec<Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("The request body must be a JSON array of ids: {e}"))
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| ApiError::validation(&format!("[{i}]"), "Not a valid id (GUID)"))
        })
        .collect()
}

//! How Crafter Studio authorises a request: API 2's access token (a bearer token that cannot be
//! renewed), or API 1's session cookie with the XSRF cookie and header pair (a session is logged
//! in again once after a 401), and how its error answers read.

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tracing::debug;

use super::api;
use crate::secret::Secret;
use crate::target::CallErrorKind;
use crate::target::http::endpoint::{Authorizer, Failure, Transport};
use crate::target::http::{self, retry_after, transport_error};

/// What a Studio request is authorised with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// API 2: the configured access token.
    Token,
    /// API 1: a session cookie from `login.json`.
    Session(String),
}

/// The credentials of one Studio, by API.
enum Keys {
    Token(Secret),
    Login { username: String, password: Secret },
}

/// Studio's [`Authorizer`].
pub struct StudioAuth {
    keys: Keys,
    /// API 1: the XSRF value sent as cookie and header alike.
    xsrf: String,
    /// API 1: the session cookie, renewed by logging in again on a 401.
    session: tokio::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for StudioAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the token nor the session cookie is ever shown.
        f.debug_struct("StudioAuth").finish_non_exhaustive()
    }
}

impl StudioAuth {
    /// API 2's access token.
    pub fn token(token: Secret) -> Self {
        Self::with(Keys::Token(token))
    }

    /// API 1's login of `username` with `password`.
    pub fn login(username: &str, password: Secret) -> Self {
        Self::with(Keys::Login {
            username: username.to_owned(),
            password,
        })
    }

    fn with(keys: Keys) -> Self {
        Self {
            keys,
            xsrf: uuid::Uuid::new_v4().simple().to_string(),
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// API 1: a session cookie of the configured user, the cached one or a new one from
    /// `login.json`. `stale` is a session the API refused, replaced only if nobody has replaced
    /// it already.
    async fn session(
        &self,
        via: &Transport,
        username: &str,
        password: &Secret,
        stale: Option<&str>,
    ) -> Result<String, Failure> {
        let mut cached = self.session.lock().await;
        if let Some(s) = cached.as_ref()
            && stale != Some(s.as_str())
        {
            return Ok(s.clone());
        }
        let fail = |kind| Failure {
            method: Method::POST,
            path: api::V1_LOGIN.to_owned(),
            kind,
        };
        let login = via
            .http
            .post(format!("{}{}", via.base, api::V1_LOGIN))
            .header(header::ACCEPT, "application/json")
            .header(
                header::COOKIE,
                format!("{}={}", api::XSRF_COOKIE, self.xsrf),
            )
            .header(api::XSRF_HEADER, &self.xsrf)
            .json(&json!({ "username": username, "password": password.expose() }));
        let resp = http::send(&via.target, login)
            .await
            .map_err(|e| fail(transport_error(&e)))?;
        let status = resp.status();
        let cookie = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(api::session_cookie)
            .map(str::to_owned);
        let retry_after = retry_after(&resp);
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = api::error_of(status, &body).message;
            let kind = if matches!(status.as_u16(), 400 | 401 | 403) {
                CallErrorKind::Auth(format!(
                    "Studio refused the login of \"{username}\" ({}: {message}); check the \
                     username and password",
                    status.as_u16()
                ))
            } else {
                CallErrorKind::Status {
                    status: status.as_u16(),
                    message,
                    retry_after,
                }
            };
            return Err(fail(kind));
        }
        let Some(cookie) = cookie else {
            return Err(fail(CallErrorKind::Decode(
                "the login answered without a JSESSIONID cookie".into(),
            )));
        };
        *cached = Some(cookie.clone());
        debug!(target_name = %via.target, "logged in to Studio");
        Ok(cookie)
    }
}

/// A header value made of a credential.
fn value(s: String) -> Result<HeaderValue, CallErrorKind> {
    let mut v = HeaderValue::try_from(s)
        .map_err(|e| CallErrorKind::Auth(format!("the credential is not a header value: {e}")))?;
    v.set_sensitive(true);
    Ok(v)
}

impl Authorizer for StudioAuth {
    type Credential = Credential;

    async fn credential(
        &self,
        via: &Transport,
        stale: Option<&Credential>,
    ) -> Result<Credential, Failure> {
        match &self.keys {
            Keys::Token(_) => Ok(Credential::Token),
            Keys::Login { username, password } => {
                let stale = match stale {
                    Some(Credential::Session(s)) => Some(s.as_str()),
                    _ => None,
                };
                let cookie = self.session(via, username, password, stale).await?;
                Ok(Credential::Session(cookie))
            }
        }
    }

    fn authorize(
        &self,
        credential: &Credential,
        request: &mut reqwest::Request,
    ) -> Result<(), CallErrorKind> {
        let headers = request.headers_mut();
        match (credential, &self.keys) {
            (Credential::Token, Keys::Token(token)) => {
                headers.insert(
                    header::AUTHORIZATION,
                    value(format!("Bearer {}", token.expose()))?,
                );
            }
            (Credential::Session(cookie), _) => {
                headers.insert(
                    header::COOKIE,
                    value(format!(
                        "{}={cookie}; {}={}",
                        api::SESSION_COOKIE,
                        api::XSRF_COOKIE,
                        self.xsrf
                    ))?,
                );
                headers.insert(api::XSRF_HEADER, value(self.xsrf.clone())?);
            }
            (Credential::Token, Keys::Login { .. }) => {
                return Err(CallErrorKind::Auth(
                    "API 1 has no access token; it logs in".into(),
                ));
            }
        }
        Ok(())
    }

    fn renews(&self) -> bool {
        matches!(self.keys, Keys::Login { .. })
    }

    fn refused(&self, message: &str) -> CallErrorKind {
        CallErrorKind::Auth(match self.keys {
            Keys::Token(_) => format!(
                "the access token was refused (401: {message}); check that it is valid, enabled \
                 and not expired, and that this is Studio 4.0.0 or later (older releases have no \
                 access tokens)"
            ),
            Keys::Login { .. } => format!("a fresh session was refused (401: {message})"),
        })
    }

    fn query(&self, pairs: &[(&str, String)]) -> String {
        // Names travel in queries: strictly encoded, never as a form (see `api::query`).
        let q = api::query(pairs);
        q.strip_prefix('?').unwrap_or(&q).to_owned()
    }

    fn message(&self, status: StatusCode, headers: &HeaderMap, body: &str) -> String {
        let message = api::error_of(status, body).message;
        if !status.is_redirection() {
            return message;
        }
        // Redirects are never followed: Studio 3.1 answers its retired API 1 group calls so.
        let api = match self.keys {
            Keys::Token(_) => "v2",
            Keys::Login { .. } => "v1",
        };
        format!(
            "{message}; redirected to {} and not followed (is this the right Studio version for \
             api = \"{api}\"?)",
            headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nowhere"),
        )
    }
}

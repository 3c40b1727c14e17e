//! The bearer-token session of connectors whose API hands out OAuth2 access tokens from a token
//! endpoint (Contensis, UiPath Identity): the grant form, the cached token, its renewal a minute
//! before it runs out, and one renewal after the API refuses a token mid-run.
//!
//! Concurrent calls share one token; when several of them see it refused at once, only the first
//! fetches a new one (`stale` names the refused token, so the others pick up the replacement).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use tracing::debug;

use crate::secret::Secret;
use crate::target::CallErrorKind;
use crate::target::http::endpoint::{Authorizer, Failure, Transport};
use crate::target::http::{send, status_error, transport_error};

/// Renew a token this long before it runs out (or at half its life, if that is shorter).
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// One field of a token request's form.
#[derive(Clone, Debug)]
pub enum FormValue {
    /// A value that may be logged (a grant type, a client id, a scope).
    Plain(String),
    /// A secret, exposed only when the form is sent.
    Secret(Secret),
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

/// A connector's bearer session: how to obtain a token, and the one in use.
pub struct BearerSession {
    target: String,
    token_path: String,
    form: Vec<(&'static str, FormValue)>,
    hint: String,
    cached: tokio::sync::Mutex<Option<Token>>,
}

impl std::fmt::Debug for BearerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The form's secrets are redacted by `Secret`; the token itself is never shown.
        f.debug_struct("BearerSession")
            .field("token_path", &self.token_path)
            .field("form", &self.form)
            .finish_non_exhaustive()
    }
}

impl BearerSession {
    /// A session of the target named `target` that posts `form` to `token_path` (below the
    /// connector's base URL); `hint` ends the message of a refused grant (what to check).
    pub fn new(
        target: &str,
        token_path: impl Into<String>,
        form: Vec<(&'static str, FormValue)>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            target: target.to_owned(),
            token_path: token_path.into(),
            form,
            hint: hint.into(),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a new one. `stale` is a token the API refused, replaced
    /// only if nobody has replaced it already.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        base: &str,
        stale: Option<&str>,
    ) -> Result<String, Failure> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
            && stale != Some(t.value.as_str())
        {
            return Ok(t.value.clone());
        }
        let fail = |kind| Failure {
            method: Method::POST,
            path: self.token_path.clone(),
            kind,
        };
        let form: Vec<(&str, &str)> = self
            .form
            .iter()
            .map(|(k, v)| match v {
                FormValue::Plain(s) => (*k, s.as_str()),
                FormValue::Secret(s) => (*k, s.expose()),
            })
            .collect();
        let req = http
            .post(format!("{base}{}", self.token_path))
            .header("Accept", "application/json")
            .form(&form);
        let resp = send(&self.target, req)
            .await
            .map_err(|e| fail(transport_error(&e)))?;
        if !resp.status().is_success() {
            let kind = match status_error(resp).await {
                CallErrorKind::Status {
                    status, message, ..
                } if status < 500 && status != 429 => CallErrorKind::Auth(format!(
                    "the token endpoint answered {status}: {message}; {}",
                    self.hint
                )),
                other => other,
            };
            return Err(fail(kind));
        }
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| fail(CallErrorKind::Decode(e.to_string())))?;
        let life = Duration::from_secs(t.expires_in);
        let token = Token {
            value: t.access_token,
            renew_at: Instant::now() + life.saturating_sub(TOKEN_MARGIN.min(life / 2)),
        };
        *cached = Some(token.clone());
        debug!(token_path = %self.token_path, "obtained a token");
        Ok(token.value)
    }
}

impl Authorizer for BearerSession {
    type Credential = String;

    async fn credential(&self, via: &Transport, stale: Option<&String>) -> Result<String, Failure> {
        self.token(&via.http, &via.base, stale.map(String::as_str))
            .await
    }

    fn authorize(
        &self,
        token: &String,
        request: &mut reqwest::Request,
    ) -> Result<(), CallErrorKind> {
        let value = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|e| CallErrorKind::Auth(format!("the token is not a header value: {e}")))?;
        request
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, value);
        Ok(())
    }

    fn renews(&self) -> bool {
        true
    }

    fn refused(&self, message: &str) -> CallErrorKind {
        CallErrorKind::Auth(format!(
            "the API refused a freshly issued token (401): {message}"
        ))
    }
}

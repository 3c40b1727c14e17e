//! How a VinylDNS request is authorised: signed with AWS Signature Version 4 ([`super::sigv4`])
//! as it goes on the wire, its query string in the signer's canonical form.

use reqwest::header::{HeaderName, HeaderValue};

use super::sigv4;
use crate::secret::Secret;
use crate::target::CallErrorKind;
use crate::target::http::endpoint::{Authorizer, Failure, Transport};

/// VinylDNS's [`Authorizer`]: the access and secret keys, which sign each request.
pub struct Signer {
    access_key: Secret,
    secret_key: Secret,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key)
            .finish()
    }
}

impl Signer {
    /// A signer with these keys.
    pub fn new(access_key: Secret, secret_key: Secret) -> Self {
        Self {
            access_key,
            secret_key,
        }
    }
}

impl Authorizer for Signer {
    /// Nothing: the keys sign each request, and never go stale.
    type Credential = ();

    async fn credential(&self, _: &Transport, _: Option<&()>) -> Result<(), Failure> {
        Ok(())
    }

    fn authorize(&self, _: &(), request: &mut reqwest::Request) -> Result<(), CallErrorKind> {
        let body = request
            .body()
            .and_then(|b| b.as_bytes())
            .map(<[u8]>::to_vec);
        // The content type is signed only when there is a body, as the server expects.
        let content_type = [("content-type", "application/json")];
        let signed_headers: &[(&str, &str)] = if body.is_some() { &content_type } else { &[] };
        let signed = sigv4::sign(
            request.method().as_str(),
            request.url().as_str(),
            signed_headers,
            body.as_deref().unwrap_or_default(),
            self.access_key.expose(),
            self.secret_key.expose(),
            sigv4::now(),
        )
        .map_err(|e| CallErrorKind::Auth(e.to_string()))?;
        for (name, value) in signed {
            let value = HeaderValue::try_from(value)
                .map_err(|e| CallErrorKind::Auth(format!("cannot sign the request: {e}")))?;
            request
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
        Ok(())
    }

    fn renews(&self) -> bool {
        false
    }

    /// A 401 stays a status here: what it means depends on what the run saw before (see the
    /// connector's `unauthorized`).
    fn refused(&self, message: &str) -> CallErrorKind {
        CallErrorKind::Status {
            status: 401,
            message: message.to_owned(),
            retry_after: None,
        }
    }

    fn query(&self, pairs: &[(&str, String)]) -> String {
        sigv4::query(pairs)
    }
}

//! A small etcd v3 client over etcd's gRPC gateway: the JSON API every etcd serves on its client
//! port at `POST /v3/...` (<https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/>).
//!
//! Why not the `etcd-client` crate: its build script needs `protoc`, so `cargo build` would fail
//! on a fresh machine. The lease needs six calls (grant, keep-alive, revoke, a create-if-absent
//! transaction, a holds-it transaction, a read), which the gateway offers as plain JSON over the
//! `reqwest` client roster already has.
//!
//! What the gateway sends, checked against etcd 3.4.23 (the shapes are the protobuf messages of
//! `rpc.proto` in JSON):
//! - int64 fields (ids, revisions, TTLs) are JSON strings; bytes (keys, values) are base64;
//!   fields at their zero value are left out (`succeeded` absent means false, `TTL` absent means
//!   0). Both the proto names (`create_revision`) and the JSON names (`createRevision`) are read.
//! - A failed call is an HTTP error status with `{"error": "...", "message": "...", "code": N}`,
//!   `code` being the gRPC status code (5 NotFound for a lease already gone, 16 Unauthenticated
//!   for an invalid or expired token, 3 InvalidArgument for a bad password).
//! - `lease/keepalive` is a streaming call: the answer is `{"result": {...}}` per line (or
//!   `{"error": {"grpc_code": N, "message": "..."}}`), and an expired or unknown lease answers
//!   `200` with no `TTL` rather than an error.
//! - With authentication on, `auth/authenticate` gives a token that goes, as it is (no
//!   `Bearer`), in the `Authorization` header of each call.
//!
//! Each call is bounded by [`EtcdSettings::timeout`] as a whole, whatever the number of endpoints,
//! so that a daemon proving its lease before a write knows how long the proof can take. The
//! endpoints are tried in order from the one that answered last, each with an equal share of the
//! time left, so that a hung member (its port accepts, nothing answers) leaves time for the next.
//! A connection that breaks after it was made (a pooled connection to an etcd that restarted) is
//! tried once more on the same endpoint. Moving on after a timeout may send a write twice: the
//! calls are shaped so that this is harmless (see [`Etcd::acquire`] and [`Etcd::grant`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::secret::Secret;

mod wire;

use wire::{
    AuthAnswer, GatewayError, GrantAnswer, KeepAliveAnswer, RangeAnswer, StreamChunk, TxnAnswer,
    decode,
};

#[cfg(test)]
mod tests;

/// The largest answer read from etcd. etcd refuses requests above 1.5 MiB by default, so no
/// answer to roster's calls comes near this; it only bounds what a wrong server can make roster
/// buffer.
const MAX_ANSWER: usize = 8 << 20;

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdSettings {
    /// The members' client URLs, `http://host:port` or `https://host:port`, tried in order.
    pub endpoints: Vec<String>,
    /// A CA (PEM) to trust besides the system's, for etcd's server certificates.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for etcd's `--client-cert-auth`; needs [`Self::key_file`].
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of [`Self::cert_file`].
    pub key_file: Option<PathBuf>,
    /// An etcd user, when etcd's authentication is on; needs [`Self::password`].
    pub username: Option<String>,
    /// The password of [`Self::username`].
    pub password: Option<Secret>,
    /// How long one call may take in all, every endpoint and any re-authentication included.
    pub timeout: Duration,
}

impl EtcdSettings {
    /// Plain settings for these endpoints: no TLS files, no user, a 5 s timeout.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// One endpoint that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointFailure {
    /// The endpoint, as configured.
    pub endpoint: String,
    /// Why it was given up (a connect error, a timeout, etcd saying it is unavailable).
    pub why: String,
}

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The settings cannot make a client (no endpoint, a bad URL, an unreadable TLS file, a user
    /// without a password). Found by [`Etcd::new`], before anything is sent.
    #[error("etcd settings: {0}")]
    Settings(String),
    /// A call's arguments are unusable, found before anything is sent: a bug in the caller.
    #[error("etcd: {0}")]
    Argument(String),
    /// No endpoint answered: each was tried (or the time ran out first), and none could be used.
    /// Whether the call took effect is unknown.
    #[error("etcd unreachable: {}", failures(.tried))]
    Unreachable {
        /// Every endpoint, in the order tried, with why it was given up.
        tried: Vec<EndpointFailure>,
    },
    /// etcd answered with an error (the gRPC status the gateway reports).
    #[error("etcd at {endpoint}: {path}: {message} (gRPC code {code})")]
    Server {
        /// The endpoint that answered.
        endpoint: String,
        /// The gateway path called (`/v3/kv/txn`).
        path: &'static str,
        /// The gRPC status code (`5` NotFound, `9` FailedPrecondition, …).
        code: i32,
        /// etcd's message (`etcdserver: requested lease not found`).
        message: String,
    },
    /// etcd's answer was not what its API says (not JSON, a field missing or malformed): a
    /// server that is not etcd, or a proxy in the way.
    #[error("etcd at {endpoint}: {path}: unexpected answer: {what}")]
    BadAnswer {
        /// The endpoint that answered.
        endpoint: String,
        /// The gateway path called.
        path: &'static str,
        /// What was wrong with it.
        what: String,
    },
    /// etcd refused roster's credentials: a wrong user or password, a token refused even after
    /// authenticating again, no permission on the key, or authentication on in etcd while roster
    /// has no user configured.
    #[error("etcd at {endpoint}: authentication: {message}")]
    Auth {
        /// The endpoint that refused.
        endpoint: String,
        /// etcd's message.
        message: String,
    },
}

impl EtcdError {
    /// True when no endpoint answered ([`EtcdError::Unreachable`]): etcd, or the way to it, is
    /// down, as opposed to etcd saying no.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EtcdError::Unreachable { .. })
    }
}

fn failures(tried: &[EndpointFailure]) -> String {
    if tried.is_empty() {
        return "no endpoint was tried".to_owned();
    }
    tried
        .iter()
        .map(|f| format!("{}: {}", f.endpoint, f.why))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An etcd lease id. etcd never grants 0, which means "no lease" on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    /// In hex, as `etcdctl` prints lease ids, so that logs and `etcdctl lease list` match.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A key as etcd holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created the key; it changes when the key is deleted and created again,
    /// which is what tells a holder its key was taken away and given back to someone else.
    pub create_revision: i64,
    /// The revision of the last change to the key.
    pub mod_revision: i64,
    /// The lease the key is bound to (`LeaseId(0)`: none).
    pub lease: LeaseId,
}

/// What [`Etcd::acquire`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquire {
    /// The key is now bound to the lease, created at this revision.
    Acquired {
        /// The key's create revision: with the lease id, what [`Etcd::holds`] checks.
        create_revision: i64,
    },
    /// Another lease holds the key.
    Held(KeyValue),
}

/// A client for one etcd cluster. Cheap to clone: clones share the connection pool, the
/// preferred endpoint and the authentication token.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The endpoints without a trailing `/`.
    endpoints: Vec<String>,
    /// The index of the endpoint that answered last: tried first next time, so that a dead first
    /// endpoint costs one connect failure, not one per call.
    preferred: AtomicUsize,
    timeout: Duration,
    credentials: Option<(String, Secret)>,
    /// The token of the last authentication; shared by every endpoint (etcd replicates tokens
    /// through raft), dropped when etcd refuses it.
    token: Mutex<Option<Secret>>,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.inner.endpoints)
            .field("timeout", &self.inner.timeout)
            .field(
                "username",
                &self.inner.credentials.as_ref().map(|(user, _)| user),
            )
            .finish_non_exhaustive()
    }
}

/// How one endpoint failed a call.
enum Failed {
    /// Move on to the next endpoint.
    NextEndpoint(String),
    /// The connection broke after it was made: most often a pooled connection the server
    /// closed (etcd restarted) before the client noticed. Worth one more try on the same
    /// endpoint, which then connects afresh.
    Broken(String),
    /// Stop with this error: etcd answered, and another member would answer the same.
    Stop(EtcdError),
}

/// When one endpoint's attempt must end: its share of what is left of the call's time, so that a
/// hung member (connection accepted, no answer) leaves time for the next.
#[derive(Clone, Copy)]
struct Deadline {
    at: Instant,
    share: Duration,
}

impl Etcd {
    /// A client for these settings. Reads the TLS files; sends nothing.
    pub fn new(s: &EtcdSettings) -> Result<Etcd, EtcdError> {
        let bad = |m: String| EtcdError::Settings(m);
        if s.endpoints.is_empty() {
            return Err(bad("no endpoint".to_owned()));
        }
        let mut endpoints = Vec::with_capacity(s.endpoints.len());
        for e in &s.endpoints {
            let url =
                reqwest::Url::parse(e).map_err(|err| bad(format!("endpoint {e:?}: {err}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(bad(format!(
                    "endpoint {e:?}: expected http://host:port or https://host:port"
                )));
            }
            // Endpoints appear in errors and logs: a password in one would be printed.
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad(format!(
                    "endpoint {:?}: credentials go in username and password, not in the URL",
                    url.host_str().unwrap_or_default()
                )));
            }
            if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
                return Err(bad(format!(
                    "endpoint {e:?}: expected no path or query (the API is at /v3/)"
                )));
            }
            endpoints.push(e.trim_end_matches('/').to_owned());
        }
        if s.timeout.is_zero() {
            return Err(bad("timeout is zero".to_owned()));
        }
        let credentials = match (&s.username, &s.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            (Some(_), None) => return Err(bad("username without password".to_owned())),
            (None, Some(_)) => return Err(bad("password without username".to_owned())),
        };

        // No client-wide timeouts: each request gets its own, from the call's (see `post`).
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(crate::instance::user_agent())
            // The gateway is HTTP/1.1 JSON; one protocol keeps its behaviour predictable.
            .http1_only();
        if let Some(path) = &s.ca_file {
            let pem = read_file(path, "ca_file")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
            b = b.tls_certs_merge(certs);
        }
        match (&s.cert_file, &s.key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file(cert, "cert_file")?;
                pem.push(b'\n');
                pem.extend(read_file(key, "key_file")?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    bad(format!(
                        "cert_file {} with key_file {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?;
                b = b.identity(identity);
            }
            (None, None) => {}
            (Some(_), None) => return Err(bad("cert_file without key_file".to_owned())),
            (None, Some(_)) => return Err(bad("key_file without cert_file".to_owned())),
        }
        let http = b
            .build()
            .map_err(|e| bad(format!("HTTP client: {}", crate::diag::error_chain(&e))))?;
        Ok(Etcd {
            inner: Arc::new(Inner {
                http,
                endpoints,
                preferred: AtomicUsize::new(0),
                timeout: s.timeout,
                credentials,
                token: Mutex::new(None),
            }),
        })
    }

    /// Grants a lease of `ttl`, in whole seconds (rounded down, at least 1). etcd may grant a
    /// longer one (it has a minimum of about 2 s at its default election timeout); the first
    /// [`Etcd::keep_alive`] tells.
    ///
    /// Not idempotent: should the answer be lost, etcd may hold a lease nobody knows of, which
    /// binds no key and expires after its TTL.
    pub async fn grant(&self, ttl: Duration) -> Result<LeaseId, EtcdError> {
        const PATH: &str = "/v3/lease/grant";
        let secs = ttl.as_secs().max(1);
        let (endpoint, answer) = self.post(PATH, &json!({ "TTL": secs.to_string() })).await?;
        let a: GrantAnswer = decode(&endpoint, PATH, answer)?;
        if !a.error.is_empty() {
            return Err(EtcdError::Server {
                endpoint,
                path: PATH,
                code: 0,
                message: a.error,
            });
        }
        if a.id == 0 {
            return Err(bad_answer(endpoint, PATH, "no lease ID"));
        }
        Ok(LeaseId(a.id))
    }

    /// Renews `id` once: its TTL from now on, or `None` when the lease is gone (expired or
    /// revoked), which etcd reports as a TTL of zero rather than as an error.
    pub async fn keep_alive(&self, id: LeaseId) -> Result<Option<Duration>, EtcdError> {
        const PATH: &str = "/v3/lease/keepalive";
        let (endpoint, answer) = self.post(PATH, &json!({ "ID": id.0.to_string() })).await?;
        // A streaming call: each message is wrapped as {"result": …} or {"error": …}.
        let chunk: StreamChunk = decode(&endpoint, PATH, answer)?;
        if let Some(e) = chunk.error {
            return Err(server_error(endpoint, PATH, e.grpc_code, e.message));
        }
        let a: KeepAliveAnswer = decode(
            &endpoint,
            PATH,
            chunk
                .result
                .ok_or_else(|| bad_answer(endpoint.clone(), PATH, "neither result nor error"))?,
        )?;
        if a.id != 0 && a.id != id.0 {
            return Err(bad_answer(
                endpoint,
                PATH,
                &format!("renewed lease {:x}, not {id}", a.id),
            ));
        }
        Ok(u64::try_from(a.ttl)
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs))
    }

    /// Revokes `id`, deleting the keys bound to it. A lease already gone counts as revoked.
    pub async fn revoke(&self, id: LeaseId) -> Result<(), EtcdError> {
        const PATH: &str = "/v3/lease/revoke";
        match self.post(PATH, &json!({ "ID": id.0.to_string() })).await {
            Ok(_) => Ok(()),
            // NotFound: "etcdserver: requested lease not found".
            Err(EtcdError::Server { code: 5, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates `key` = `value` bound to `lease` if the key does not exist; else returns who holds
    /// it. One transaction: compare the key's create revision with 0 (absent), put and read it
    /// back on success, read it on failure.
    ///
    /// A key that already exists bound to this same `lease` is reported as
    /// [`Acquire::Acquired`]: only this lease's holder puts keys with it, so it is this holder's
    /// own key, from an earlier attempt whose answer was lost.
    ///
    /// `LeaseId(0)` is refused ([`EtcdError::Argument`]): a key without a lease would never
    /// expire, and no standby could ever take over.
    pub async fn acquire(
        &self,
        key: &str,
        value: &[u8],
        lease: LeaseId,
    ) -> Result<Acquire, EtcdError> {
        const PATH: &str = "/v3/kv/txn";
        if lease.0 == 0 {
            return Err(EtcdError::Argument(format!(
                "acquire {key:?} without a lease would hold it forever"
            )));
        }
        let k = BASE64.encode(key);
        let body = json!({
            "compare": [{ "key": k, "target": "CREATE", "result": "EQUAL", "createRevision": "0" }],
            "success": [
                { "requestPut": { "key": k, "value": BASE64.encode(value), "lease": lease.0.to_string() } },
                { "requestRange": { "key": k } },
            ],
            "failure": [{ "requestRange": { "key": k } }],
        });
        let (endpoint, answer) = self.post(PATH, &body).await?;
        let a: TxnAnswer = decode(&endpoint, PATH, answer)?;
        // The range is the last operation of either branch.
        let kv = a
            .responses
            .into_iter()
            .filter_map(|r| r.response_range)
            .next_back()
            .and_then(|r| r.kvs.into_iter().next())
            .ok_or_else(|| {
                bad_answer(endpoint.clone(), PATH, "no key in the transaction's read")
            })?;
        let kv = kv.into_key_value(&endpoint, PATH, key)?;
        if a.succeeded || kv.lease == lease {
            if kv.lease != lease || kv.create_revision <= 0 {
                return Err(bad_answer(
                    endpoint,
                    PATH,
                    "the key put in the transaction is not bound to the lease",
                ));
            }
            Ok(Acquire::Acquired {
                create_revision: kv.create_revision,
            })
        } else {
            Ok(Acquire::Held(kv))
        }
    }

    /// One transaction: true iff `key` exists with this lease and this create revision. The
    /// proof a holder gives before each write: a key deleted and created again (even with the
    /// same lease) has another create revision.
    ///
    /// Always false for `LeaseId(0)` or a create revision below 1, which describe a key that
    /// does not exist (etcd compares a missing key as lease 0, create revision 0).
    pub async fn holds(
        &self,
        key: &str,
        lease: LeaseId,
        create_revision: i64,
    ) -> Result<bool, EtcdError> {
        const PATH: &str = "/v3/kv/txn";
        if lease.0 == 0 || create_revision <= 0 {
            return Ok(false);
        }
        let k = BASE64.encode(key);
        let body = json!({
            "compare": [
                { "key": k, "target": "LEASE", "result": "EQUAL", "lease": lease.0.to_string() },
                { "key": k, "target": "CREATE", "result": "EQUAL",
                  "createRevision": create_revision.to_string() },
            ],
        });
        let (endpoint, answer) = self.post(PATH, &body).await?;
        let a: TxnAnswer = decode(&endpoint, PATH, answer)?;
        Ok(a.succeeded)
    }

    /// Reads `key`: `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        const PATH: &str = "/v3/kv/range";
        let (endpoint, answer) = self
            .post(PATH, &json!({ "key": BASE64.encode(key) }))
            .await?;
        let a: RangeAnswer = decode(&endpoint, PATH, answer)?;
        match a.kvs.into_iter().next() {
            Some(kv) => kv.into_key_value(&endpoint, PATH, key).map(Some),
            None => Ok(None),
        }
    }

    /// Sends `body` to `path`, trying the endpoints from the one that answered last, within the
    /// call's timeout. Returns the endpoint that answered and its JSON (for a streaming call, the
    /// first message).
    async fn post(&self, path: &'static str, body: &Value) -> Result<(String, Value), EtcdError> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.timeout;
        let n = inner.endpoints.len();
        let first = inner.preferred.load(Ordering::Relaxed) % n;
        let mut tried = Vec::new();
        for i in 0..n {
            let index = (first + i) % n;
            let endpoint = &inner.endpoints[index];
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                tried.push(EndpointFailure {
                    endpoint: endpoint.clone(),
                    why: format!("not tried: the call's {:?} were spent", inner.timeout),
                });
                continue;
            }
            // This endpoint and each one after it get an equal share of what is left.
            let share = left / u32::try_from(n - i).unwrap_or(u32::MAX);
            let attempt = Deadline {
                at: now + share,
                share,
            };
            let mut result = self.post_to(endpoint, path, body, attempt).await;
            if let Err(Failed::Broken(why)) = &result {
                tracing::debug!(endpoint = %endpoint, path, why = %why, "etcd connection broke, trying once more");
                result = self.post_to(endpoint, path, body, attempt).await;
            }
            match result {
                Ok(answer) => {
                    inner.preferred.store(index, Ordering::Relaxed);
                    return Ok((endpoint.clone(), answer));
                }
                Err(Failed::NextEndpoint(why) | Failed::Broken(why)) => {
                    tracing::debug!(endpoint = %endpoint, path, why = %why, "etcd endpoint failed, trying the next");
                    tried.push(EndpointFailure {
                        endpoint: endpoint.clone(),
                        why,
                    });
                }
                Err(Failed::Stop(e)) => return Err(e),
            }
        }
        Err(EtcdError::Unreachable { tried })
    }

    /// [`Etcd::post`] to one endpoint, authenticating first when a user is configured and no
    /// token is at hand, and once more when etcd refuses the token (it expired, or etcd
    /// restarted and forgot it).
    async fn post_to(
        &self,
        endpoint: &str,
        path: &'static str,
        body: &Value,
        deadline: Deadline,
    ) -> Result<Value, Failed> {
        let mut fresh_token = false;
        loop {
            let token = match &self.inner.credentials {
                None => None,
                Some(_) => match self.token() {
                    Some(t) => Some(t),
                    None => {
                        fresh_token = true;
                        Some(self.authenticate(endpoint, deadline).await?)
                    }
                },
            };
            match self
                .send(endpoint, path, body, token.as_ref(), deadline)
                .await
            {
                Err(Failed::Stop(EtcdError::Server {
                    code: 16, message, ..
                })) if token.is_some() => {
                    self.forget_token(token.as_ref());
                    if fresh_token {
                        return Err(Failed::Stop(EtcdError::Auth {
                            endpoint: endpoint.to_owned(),
                            message,
                        }));
                    }
                    fresh_token = true;
                    // The loop authenticates again, since the token is gone.
                }
                other => return other,
            }
        }
    }

    fn token(&self) -> Option<Secret> {
        lock(&self.inner.token).clone()
    }

    /// Drops `stale` unless another call already replaced it.
    fn forget_token(&self, stale: Option<&Secret>) {
        let mut token = lock(&self.inner.token);
        if token.as_ref() == stale {
            *token = None;
        }
    }

    /// `auth/authenticate` with the configured user: a new token, also kept for later calls.
    async fn authenticate(&self, endpoint: &str, deadline: Deadline) -> Result<Secret, Failed> {
        const PATH: &str = "/v3/auth/authenticate";
        let Some((user, password)) = &self.inner.credentials else {
            return Err(Failed::Stop(EtcdError::Settings(
                "authentication without a user".to_owned(),
            )));
        };
        let body = json!({ "name": user, "password": password.expose() });
        let answer = match self.send(endpoint, PATH, &body, None, deadline).await {
            Ok(answer) => answer,
            // etcd answers a wrong user or password with InvalidArgument (3); auth switched off
            // with FailedPrecondition (9): either way these credentials do not work here.
            Err(Failed::Stop(EtcdError::Server { message, .. })) => {
                return Err(Failed::Stop(EtcdError::Auth {
                    endpoint: endpoint.to_owned(),
                    message,
                }));
            }
            Err(e) => return Err(e),
        };
        let a: AuthAnswer = decode(endpoint, PATH, answer).map_err(Failed::Stop)?;
        if a.token.is_empty() {
            return Err(Failed::Stop(bad_answer(
                endpoint.to_owned(),
                PATH,
                "no token",
            )));
        }
        let token = Secret::new(a.token);
        *lock(&self.inner.token) = Some(token.clone());
        Ok(token)
    }

    /// One request to one endpoint, and its answer read as the gateway writes it.
    async fn send(
        &self,
        endpoint: &str,
        path: &'static str,
        body: &Value,
        token: Option<&Secret>,
        deadline: Deadline,
    ) -> Result<Value, Failed> {
        let late = || format!("no answer within {:?}", deadline.share);
        let remaining = deadline.at.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Failed::NextEndpoint(late()));
        }
        let mut req = self
            .inner
            .http
            .post(format!("{endpoint}{path}"))
            .timeout(remaining)
            .json(body);
        if let Some(token) = token {
            // The gateway takes the token as it is: `Bearer <token>` is refused as invalid.
            req = req.header(reqwest::header::AUTHORIZATION, token.expose());
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                Failed::NextEndpoint(late())
            } else if e.is_connect() {
                Failed::NextEndpoint(crate::diag::error_chain(&e))
            } else {
                Failed::Broken(crate::diag::error_chain(&e))
            }
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(Failed::Stop(bad_answer(
                    endpoint.to_owned(),
                    path,
                    &format!("an answer over {MAX_ANSWER} bytes"),
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        // A unary answer is one JSON object; a streaming one is one per line. Either way the
        // first value is the answer.
        let first = serde_json::Deserializer::from_slice(&bytes)
            .into_iter::<Value>()
            .next();
        let value = match first {
            Some(Ok(v)) => v,
            _ if status.is_server_error() => {
                // Not the gateway's JSON: a proxy in front of a member that is down.
                return Err(Failed::NextEndpoint(format!(
                    "HTTP {status}: {}",
                    snippet(&bytes)
                )));
            }
            Some(Err(e)) => {
                return Err(Failed::Stop(bad_answer(
                    endpoint.to_owned(),
                    path,
                    &format!("HTTP {status}, not JSON ({e}): {}", snippet(&bytes)),
                )));
            }
            None => {
                return Err(Failed::Stop(bad_answer(
                    endpoint.to_owned(),
                    path,
                    &format!("HTTP {status} with an empty body"),
                )));
            }
        };
        if status.is_success() {
            return Ok(value);
        }
        let Ok(e) = serde_json::from_value::<GatewayError>(value) else {
            return Err(Failed::Stop(bad_answer(
                endpoint.to_owned(),
                path,
                &format!("HTTP {status} without the gateway's error JSON"),
            )));
        };
        let message = if e.message.is_empty() {
            e.error
        } else {
            e.message
        };
        match e.code {
            // Unavailable: this member cannot serve (no leader, stopping); another may.
            14 => Err(Failed::NextEndpoint(format!(
                "{message} (gRPC code 14, HTTP {status})"
            ))),
            _ => Err(Failed::Stop(server_error(
                endpoint.to_owned(),
                path,
                e.code,
                message,
            ))),
        }
    }
}

/// A gateway error as an [`EtcdError`]: permission problems are [`EtcdError::Auth`] (what an
/// operator fixes in etcd's users and roles), the rest [`EtcdError::Server`]. Unauthenticated
/// (16) stays a server error here: [`Etcd::post_to`] authenticates again before giving up.
fn server_error(endpoint: String, path: &'static str, code: i32, message: String) -> EtcdError {
    // PermissionDenied (7); and InvalidArgument "user name is empty" when etcd has
    // authentication on but roster has no user.
    if code == 7 || message.contains("user name is empty") {
        EtcdError::Auth { endpoint, message }
    } else {
        EtcdError::Server {
            endpoint,
            path,
            code,
            message,
        }
    }
}

/// Locks the token, taking it over from a call that panicked while holding it (it is only ever
/// replaced whole, so it cannot be half-written).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn bad_answer(endpoint: String, path: &'static str, what: &str) -> EtcdError {
    EtcdError::BadAnswer {
        endpoint,
        path,
        what: what.to_owned(),
    }
}

/// The start of an answer, for an error message.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|e| EtcdError::Settings(format!("{what} {}: {e}", path.display())))
}

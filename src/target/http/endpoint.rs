//! One HTTP endpoint shape for every connector: what a connector's API differs in is an
//! [`Authorizer`] (how a request is authorised, how its error bodies read); building, sending,
//! counting, reading the answer, `Retry-After`, one renewal after a 401 and retried reads are
//! written once, in [`Endpoint`].
//!
//! A connector holds an `Endpoint<ItsAuthorizer>` and sends [`Req`]s through it. A failure comes
//! back as a [`Failure`] (method, path, what went wrong) for the connector to name its target and
//! group in a [`CallError`](crate::target::CallError), and to add what only it knows (which right
//! a 403 lacks, say).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::pace::{Pacer, Signal};
use super::{retry_after, retry_after_in, send_built, server_message, transport_error};
use crate::retry::{RetryPolicy, Transient};
use crate::target::CallErrorKind;
use crate::target::slots;
use crate::target::watch::{self, WriteAnswer, WriteRequest};

/// A failed request: its method and path (the token endpoint's, when a grant failed), and what
/// went wrong, for the connector to wrap in a [`CallError`](crate::target::CallError).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{method} {path}: {kind}")]
pub struct Failure {
    /// The method of the request that failed.
    pub method: Method,
    /// Its path below the base URL, without the query string.
    pub path: String,
    /// What went wrong.
    pub kind: CallErrorKind,
}

impl Transient for Failure {
    fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    fn retry_after(&self) -> Option<Duration> {
        self.kind.retry_after()
    }
}

/// Where requests go: the target's name (for counting calls), its base URL and the client.
#[derive(Clone, Debug)]
pub struct Transport {
    /// The target's name from the config.
    pub target: String,
    /// The API's base URL, without a trailing slash; request paths are appended to it.
    pub base: String,
    /// The client (verified TLS, timeouts, no redirects: see [`super::client`]).
    pub http: reqwest::Client,
    /// The target's pace (its declared `rate_limit` and the adaptive limit), kept by every
    /// request sent through [`Endpoint`].
    pub pace: Arc<Pacer>,
}

/// What a connector's API differs in: how a request is authorised, and how its answers read.
pub trait Authorizer: Send + Sync {
    /// What authorises one request: a token, a session cookie, or nothing when the request
    /// itself is signed.
    type Credential: Send + Sync;

    /// The credential for the next request: a cached one, or a new one. `stale` is one the API
    /// just refused with a 401, to be replaced unless another request replaced it already.
    fn credential(
        &self,
        via: &Transport,
        stale: Option<&Self::Credential>,
    ) -> impl Future<Output = Result<Self::Credential, Failure>> + Send;

    /// Adds `credential` to a request that is built and about to be sent (a header, a cookie
    /// pair, or a signature over the request as it will be sent).
    fn authorize(
        &self,
        credential: &Self::Credential,
        request: &mut reqwest::Request,
    ) -> Result<(), CallErrorKind>;

    /// Whether a 401 is worth one more try with a fresh credential (a token or a session that
    /// may have run out); `false` for credentials that cannot go stale, such as signing keys.
    fn renews(&self) -> bool;

    /// What a 401 means when a fresh credential did not cure it (or none could be had), from
    /// the server's message.
    fn refused(&self, message: &str) -> CallErrorKind {
        CallErrorKind::Auth(format!("the API refused the credentials (401): {message}"))
    }

    /// The query string for `pairs` (without the `?`): form encoding by default.
    fn query(&self, pairs: &[(&str, String)]) -> String {
        // The same encoding `reqwest::RequestBuilder::query` gives.
        Url::parse("http://query.invalid/")
            .map(|mut url| {
                url.query_pairs_mut().extend_pairs(pairs);
                url.query().unwrap_or_default().to_owned()
            })
            .unwrap_or_default()
    }

    /// The server's message in a failed answer: by default read from its body (see
    /// [`server_message`]); an API may also read the headers (where a redirect that is never
    /// followed points, say).
    fn message(&self, status: StatusCode, headers: &HeaderMap, body: &str) -> String {
        let _ = headers;
        server_message(status, body)
    }
}

/// One request to send, described in full: method, path below the base URL (already encoded),
/// query, JSON body, and the statuses besides 2xx that are answers rather than failures.
#[derive(Clone, Debug)]
pub struct Req<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<Vec<u8>>,
    accept: &'a [StatusCode],
}

impl<'a> Req<'a> {
    /// A request with no query, no body, accepting only 2xx.
    pub fn new(method: Method, path: &'a str) -> Self {
        Self {
            method,
            path,
            query: &[],
            body: None,
            accept: &[],
        }
    }

    /// A GET of `path`.
    pub fn get(path: &'a str) -> Self {
        Self::new(Method::GET, path)
    }

    /// With these query parameters.
    pub fn query(mut self, query: &'a [(&'a str, String)]) -> Self {
        self.query = query;
        self
    }

    /// With this JSON body.
    pub fn json(mut self, body: &impl Serialize) -> Self {
        // Serialising roster's own wire types (maps, strings, numbers) cannot fail.
        self.body = Some(serde_json::to_vec(body).unwrap_or_default());
        self
    }

    /// With this body, already serialised as JSON (sent byte for byte as given).
    pub fn json_bytes(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    /// Also returning, rather than failing on, these statuses (a 404 that means "absent").
    pub fn accept(mut self, statuses: &'a [StatusCode]) -> Self {
        self.accept = statuses;
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path.
    pub fn path(&self) -> &str {
        self.path
    }

    fn fail(&self, kind: CallErrorKind) -> Failure {
        Failure {
            method: self.method.clone(),
            path: self.path.to_owned(),
            kind,
        }
    }
}

/// An answer: a 2xx, or a status the request accepted; its body read in full.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

/// The body length from which [`Reply::json_apart`] parses off the task: below it, handing the
/// parse to another thread costs more than the parse.
const PARSED_APART: usize = 256 * 1024;

impl Reply {
    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CallErrorKind> {
        serde_json::from_str(&self.body).map_err(|e| CallErrorKind::Decode(e.to_string()))
    }

    /// [`Self::json`], a large body parsed on the blocking pool: a read's calls in flight share
    /// one task, and the 15 ms that a 7.5 MB page takes to parse would hold all their answers
    /// back (and keep their permits idle) were it parsed there.
    pub async fn json_apart<T: DeserializeOwned + Send + 'static>(
        self,
    ) -> Result<T, CallErrorKind> {
        self.parse_apart(|body: &str| serde_json::from_str(body))
            .await
    }

    /// [`Self::json_apart`] parsed by `parse` (one that interns what it reads, say).
    pub async fn parse_apart<T, F>(self, parse: F) -> Result<T, CallErrorKind>
    where
        T: Send + 'static,
        F: FnOnce(&str) -> serde_json::Result<T> + Send + 'static,
    {
        let decode =
            move |body: &str| parse(body).map_err(|e| CallErrorKind::Decode(e.to_string()));
        if self.body.len() < PARSED_APART {
            return decode(&self.body);
        }
        crate::target::off_task(move || decode(&self.body)).await
    }

    /// An answer the caller accepted but refuses after all (a 404 or a 409 it looked at) as the
    /// status error it is: the server's message and `Retry-After`.
    pub fn status_error(&self) -> CallErrorKind {
        CallErrorKind::Status {
            status: self.status.as_u16(),
            message: server_message(self.status, &self.body),
            retry_after: retry_after_in(&self.headers),
        }
    }
}

/// A connector's API: where it is, how it authorises, how reads are retried.
#[derive(Debug)]
pub struct Endpoint<A> {
    transport: Transport,
    auth: A,
    reads: RetryPolicy,
}

/// A write request told to its watch and not yet sent: dropped before [`Unsent::leaves`], it
/// tells the watch the request was not sent, so that its intent gets an outcome that says so.
struct Unsent<'a>(Option<&'a dyn watch::CallWatch>);

impl Unsent<'_> {
    /// The request was held back for `why`.
    fn because(&mut self, why: &str) {
        if let Some(w) = self.0.take() {
            w.after(WriteAnswer::NotSent(why.to_owned()));
        }
    }

    /// The request is about to leave: what comes of it is told by its answer.
    fn leaves(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        self.because("roster gave up on the write before it was sent");
    }
}

impl<A: Authorizer> Endpoint<A> {
    /// An endpoint of the target named `target` at `base` (no trailing slash), sending with
    /// `http`, authorised by `auth`, retrying reads under the default policy.
    pub fn new(target: &str, base: &str, http: reqwest::Client, auth: A) -> Self {
        Self {
            transport: Transport {
                target: target.to_owned(),
                base: base.trim_end_matches('/').to_owned(),
                http,
                pace: Arc::default(),
            },
            auth,
            reads: RetryPolicy::default(),
        }
    }

    /// Retries transient failures of [`Endpoint::read`] under `policy`.
    pub fn with_read_retries(mut self, policy: RetryPolicy) -> Self {
        self.reads = policy;
        self
    }

    /// Paces every request with `pacer` (the target's, shared by all its connections).
    pub fn with_pacer(mut self, pacer: Arc<Pacer>) -> Self {
        self.transport.pace = pacer;
        self
    }

    /// The read retry policy.
    pub fn reads(&self) -> &RetryPolicy {
        &self.reads
    }

    /// The authorizer.
    pub fn auth(&self) -> &A {
        &self.auth
    }

    /// Where requests go.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.transport.base
    }

    /// Sends `req` once (once more with a fresh credential after a 401, when the authorizer
    /// renews). Returns the answer when its status is a 2xx or one `req` accepts; any other
    /// status is a failure carrying the server's message and `Retry-After`.
    ///
    /// A write request (any method but `GET`, `HEAD` and `OPTIONS`) sent during an attempt at a
    /// call is told to the attempt's [`watch`] before it waits for its slot, and after its answer
    /// comes (or that it was not sent), each time it is sent; when the watch refuses, it is not
    /// sent. During an attempt, each request holds one of the executor's [`slots`] while it is
    /// out, and a write leaves only when their gate, asked once the write has its slot, is open.
    pub async fn send(&self, req: &Req<'_>) -> Result<Reply, Failure> {
        self.send_once(req, watch::is_write(&req.method)).await
    }

    /// Sends `req`; a `write` passes the attempt's gate and is told to its watch.
    async fn send_once(&self, req: &Req<'_>, write: bool) -> Result<Reply, Failure> {
        let watch = if write { watch::current() } else { None };
        let watch = watch.as_deref();
        let mut credential = self.auth.credential(&self.transport, None).await?;
        let mut renewed = false;
        loop {
            let mut request = self.build(req)?;
            self.auth
                .authorize(&credential, &mut request)
                .map_err(|k| req.fail(k))?;
            // Until the request leaves, a write whose intent is journalled is recorded as not
            // sent, however its send ends (a closed gate, an attempt given up).
            let mut unsent = Unsent(watch);
            if let Some(w) = watch {
                // Before the slot: a call waiting for one has its intent flushed meanwhile, so
                // the flush is not on the path from one answer to the next request.
                let told = w
                    .before(WriteRequest {
                        method: req.method.as_str(),
                        path: request.url().path(),
                    })
                    .await;
                if let Err(why) = told {
                    unsent.because(&why);
                    return Err(req.fail(CallErrorKind::NotSent(why)));
                }
            }
            // Taken after the credential, whose own requests take no slot, and held until the
            // body is in: the slot stands for the request being out at the server.
            let slot = slots::take().await;
            // Asked once the slot is held: waiting for it may have kept the write a while since
            // its call started, and a closed gate means no write may leave. Before the pace, so
            // that a refused write spends no turn and turns are not held while the gate proves
            // itself (a write's wait for its turn is short beside the gate's own tolerance: a
            // proof a third of the lease's TTL old will do).
            if write && let Err(why) = slots::open().await {
                unsent.because(&why);
                return Err(req.fail(CallErrorKind::NotSent(why)));
            }
            let admission = self.transport.pace.admit().await;
            unsent.leaves();
            let sent = send_built(&self.transport.target, &self.transport.http, request).await;
            match &sent {
                Ok(resp) => admission.answered(Signal::of_status(resp.status().as_u16())),
                Err(e) if e.is_timeout() => admission.answered(Signal::Overload),
                // A refused connection says nothing about the server's load.
                Err(_) => drop(admission),
            }
            let resp = match sent {
                Ok(resp) => resp,
                Err(e) => {
                    let kind = transport_error(&e);
                    if let Some(w) = watch {
                        w.after(WriteAnswer::None(kind.to_string()));
                    }
                    return Err(req.fail(kind));
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !renewed && self.auth.renews() {
                if let Some(w) = watch {
                    w.after(WriteAnswer::Status {
                        status: status.as_u16(),
                        message: Some(
                            "credential refused; to be sent again with a fresh one".into(),
                        ),
                    });
                }
                // No request of this call is out while a fresh credential is fetched.
                drop(slot);
                credential = self
                    .auth
                    .credential(&self.transport, Some(&credential))
                    .await?;
                renewed = true;
                continue;
            }
            let headers = resp.headers().clone();
            let retry_after = retry_after(&resp);
            let body = match resp.text().await {
                Ok(body) => body,
                Err(e) => {
                    let kind = transport_error(&e);
                    if let Some(w) = watch {
                        // The status came, so the server took the request; only its body broke.
                        w.after(WriteAnswer::Status {
                            status: status.as_u16(),
                            message: Some(kind.to_string()),
                        });
                    }
                    return Err(req.fail(kind));
                }
            };
            let message =
                (!status.is_success()).then(|| self.auth.message(status, &headers, &body));
            if let Some(w) = watch {
                w.after(WriteAnswer::Status {
                    status: status.as_u16(),
                    message: message.clone(),
                });
            }
            // The request is done at the server, and its answer told (an attempt given up from
            // here on still records it). The calls of an apply are futures of one task, so a
            // request waiting for this slot would otherwise leave only once this call's own
            // work (its outcome journalled, its answer decoded, the next call started) is done:
            // yielding lets it leave first, and that work overlaps its latency. With none
            // waiting this call goes on at once: a yield would put its next request (VinylDNS's
            // PUT after its GET) behind whatever else the runtime has queued.
            if slot.is_some_and(slots::give_back) {
                tokio::task::yield_now().await;
            }
            if status.is_success() || req.accept.contains(&status) {
                return Ok(Reply {
                    status,
                    headers,
                    body,
                });
            }
            let message = message.unwrap_or_default();
            if status == StatusCode::UNAUTHORIZED {
                return Err(req.fail(self.auth.refused(&message)));
            }
            return Err(req.fail(CallErrorKind::Status {
                status: status.as_u16(),
                message,
                retry_after,
            }));
        }
    }

    /// Sends a read and decodes its JSON answer, sending it again after transient failures as
    /// the read policy allows. A read is never watched nor held at the gate, whatever its
    /// method (a `POST` that looks users up writes nothing).
    pub async fn read<T: DeserializeOwned>(&self, req: &Req<'_>) -> Result<T, Failure> {
        self.reads
            .retry_idempotent(|| async {
                let reply = self.send_once(req, false).await?;
                reply.json().map_err(|k| req.fail(k))
            })
            .await
    }

    /// The request as it goes on the wire, before it is authorised.
    fn build(&self, req: &Req<'_>) -> Result<reqwest::Request, Failure> {
        let mut url = format!("{}{}", self.transport.base, req.path);
        if !req.query.is_empty() {
            url.push('?');
            url.push_str(&self.auth.query(req.query));
        }
        let url = Url::parse(&url)
            .map_err(|e| req.fail(CallErrorKind::Connect(format!("bad URL {url}: {e}"))))?;
        let mut request = reqwest::Request::new(req.method.clone(), url);
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(body) = &req.body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            *request.body_mut() = Some(body.clone().into());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Open;

    impl Authorizer for Open {
        type Credential = ();

        async fn credential(&self, _: &Transport, _: Option<&()>) -> Result<(), Failure> {
            Ok(())
        }

        fn authorize(&self, _: &(), _: &mut reqwest::Request) -> Result<(), CallErrorKind> {
            Ok(())
        }

        fn renews(&self) -> bool {
            false
        }
    }

    fn reply(body: String) -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body,
        }
    }

    #[tokio::test]
    async fn a_large_answer_is_parsed_apart_as_a_small_one_is_in_place() {
        let big: Vec<u32> = (0..200_000).collect();
        let text = serde_json::to_string(&big).expect("json");
        assert!(
            text.len() >= PARSED_APART,
            "the body must be large enough to go apart"
        );
        let parsed: Vec<u32> = reply(text).json_apart().await.expect("parsed");
        assert_eq!(parsed, big);
        let small: Vec<u32> = reply("[1,2]".to_owned())
            .json_apart()
            .await
            .expect("parsed");
        assert_eq!(small, [1, 2]);
        let mut broken = serde_json::to_string(&big).expect("json");
        broken.push('x');
        let e = reply(broken)
            .json_apart::<Vec<u32>>()
            .await
            .expect_err("trailing characters");
        assert!(matches!(e, CallErrorKind::Decode(m) if m.contains("trailing")));
    }

    /// A gate open for its first `open_for` questions, noting when each was asked.
    struct Gate {
        open_for: usize,
        asked: std::sync::Mutex<Vec<std::time::Instant>>,
    }

    impl Gate {
        fn open_for(n: usize) -> Arc<Self> {
            Arc::new(Self {
                open_for: n,
                asked: std::sync::Mutex::default(),
            })
        }

        fn asked(&self) -> Vec<std::time::Instant> {
            lock(&self.asked).clone()
        }
    }

    impl slots::Gate for Gate {
        fn open(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
            let open = {
                let mut asked = lock(&self.asked);
                asked.push(std::time::Instant::now());
                asked.len() <= self.open_for
            };
            Box::pin(async move {
                if open {
                    Ok(())
                } else {
                    Err("the lease was lost".to_owned())
                }
            })
        }
    }

    /// A watch that notes the write requests it is told of before they leave, and what it is
    /// told of them after; and wakes `told` at each request.
    #[derive(Default)]
    struct Intents {
        intents: std::sync::Mutex<Vec<String>>,
        answers: std::sync::Mutex<Vec<WriteAnswer>>,
        told: tokio::sync::Notify,
    }

    impl Intents {
        fn intents(&self) -> Vec<String> {
            lock(&self.intents).clone()
        }
        fn answers(&self) -> Vec<WriteAnswer> {
            lock(&self.answers).clone()
        }
    }

    impl watch::CallWatch for Intents {
        fn before<'a>(
            &'a self,
            request: WriteRequest<'a>,
        ) -> futures::future::BoxFuture<'a, Result<(), String>> {
            lock(&self.intents).push(format!("{} {}", request.method, request.path));
            self.told.notify_waiters();
            Box::pin(async { Ok(()) })
        }
        fn after(&self, answer: WriteAnswer) {
            lock(&self.answers).push(answer);
        }
        fn finish(&self, _: Result<Option<&crate::target::Sent>, &crate::target::CallError>) {}
    }

    fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Credentials that run out: the first is refused, each renewal is the next number.
    struct Renewing;

    impl Authorizer for Renewing {
        type Credential = u32;

        async fn credential(&self, _: &Transport, stale: Option<&u32>) -> Result<u32, Failure> {
            Ok(stale.map_or(1, |n| n + 1))
        }

        fn authorize(&self, c: &u32, request: &mut reqwest::Request) -> Result<(), CallErrorKind> {
            request
                .headers_mut()
                .insert(CREDENTIAL, HeaderValue::from(*c));
            Ok(())
        }

        fn renews(&self) -> bool {
            true
        }
    }

    /// The header [`Renewing`] sends its credential in.
    const CREDENTIAL: &str = "x-credential";

    /// A server on a port of its own that answers `{}` to everything after `delay` (a 401 to a
    /// request carrying credential 1), noting each request's method and path; and an endpoint
    /// at it, with `auth`.
    async fn server<A: Authorizer>(
        delay: Duration,
        auth: A,
    ) -> (Endpoint<A>, Arc<std::sync::Mutex<Vec<String>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: axum::http::Uri, headers: HeaderMap| {
                let log = Arc::clone(&log);
                async move {
                    lock(&log).push(format!("{method} {}", uri.path()));
                    tokio::time::sleep(delay).await;
                    let status = if headers.get(CREDENTIAL).is_some_and(|c| c == "1") {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::OK
                    };
                    (status, "{}")
                }
            },
        );
        (serving(app, auth).await, seen)
    }

    /// An endpoint, with `auth`, at `app` served on a port of its own.
    async fn serving<A: Authorizer>(app: axum::Router, auth: A) -> Endpoint<A> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(axum::serve(listener, app).into_future());
        Endpoint::new("t", &format!("http://{addr}"), reqwest::Client::new(), auth)
    }

    #[tokio::test]
    async fn a_resend_after_a_refused_credential_asks_the_gate_again() {
        let (e, seen) = server(Duration::ZERO, Renewing).await;
        let body = serde_json::json!({"name": "a"});
        let put = Req::new(Method::PUT, "/groups/a").json(&body);
        let gate = Gate::open_for(1);
        let intents = Arc::new(Intents::default());

        // The gate lets the first send through; by the resend the lease is lost.
        let attempt = slots::within(
            slots::Slots::new(1, Some(gate.clone() as Arc<dyn slots::Gate>)),
            e.send(&put),
        );
        let resent = watch::watched(intents.clone(), attempt).await;
        let refused = resent.expect_err("the resend was held back");
        assert_eq!(
            refused.kind,
            CallErrorKind::NotSent("the lease was lost".to_owned())
        );
        assert_eq!(gate.asked().len(), 2, "asked for the send and the resend");
        assert_eq!(*lock(&seen), ["PUT /groups/a"]);
        // The resend was journalled before it waited for its slot, and then held back.
        assert_eq!(intents.intents(), ["PUT /groups/a", "PUT /groups/a"]);
        let answers = intents.answers();
        assert!(
            matches!(answers[0], WriteAnswer::Status { status: 401, .. }),
            "{answers:?}"
        );
        assert_eq!(
            answers[1..],
            [WriteAnswer::NotSent("the lease was lost".to_owned())]
        );
    }

    #[tokio::test]
    async fn a_shut_gate_holds_back_an_attempts_writes_and_nothing_else() {
        let (e, seen) = server(Duration::ZERO, Open).await;
        let body = serde_json::json!({"name": "a"});
        let put = Req::new(Method::PUT, "/groups/a").json(&body);
        let lookup = Req::new(Method::POST, "/users/lookup").json(&body);
        let intents = Arc::new(Intents::default());

        let shut = slots::Slots::new(1, Some(Gate::open_for(0) as Arc<dyn slots::Gate>));
        let attempt = slots::within(shut, async {
            let get = e.send(&Req::get("/groups/a")).await;
            let write = e.send(&put).await;
            let read: Result<serde_json::Value, Failure> = e.read(&lookup).await;
            (get, write, read)
        });
        let (get, write, read) = watch::watched(intents.clone(), attempt).await;
        assert!(get.is_ok(), "{get:?}");
        assert!(read.is_ok(), "{read:?}");
        let refused = write.expect_err("a write past a shut gate");
        assert_eq!(
            refused.kind,
            CallErrorKind::NotSent("the lease was lost".to_owned())
        );
        // Its intent was told before it waited for its slot; that it was not sent, after.
        assert_eq!(intents.intents(), ["PUT /groups/a"]);
        assert_eq!(
            intents.answers(),
            [WriteAnswer::NotSent("the lease was lost".to_owned())]
        );
        // Outside an attempt there is no gate: the same write leaves.
        e.send(&put).await.expect("sent");
        assert_eq!(
            *lock(&seen),
            ["GET /groups/a", "POST /users/lookup", "PUT /groups/a"]
        );
    }

    #[tokio::test]
    async fn the_gate_is_asked_once_the_write_holds_its_slot() {
        let latency = Duration::from_millis(50);
        let (e, seen) = server(latency, Open).await;
        let body = serde_json::json!({"name": "a"});
        let put = Req::new(Method::PUT, "/groups/a").json(&body);
        let gate = Gate::open_for(usize::MAX);
        let intents = Arc::new(Intents::default());

        // One slot: the second write waits for the first's answer before the gate is asked.
        let one = slots::Slots::new(1, Some(gate.clone() as Arc<dyn slots::Gate>));
        let start = std::time::Instant::now();
        let attempt = slots::within(one, async { tokio::join!(e.send(&put), e.send(&put)) });
        let (first, second) = watch::watched(intents.clone(), attempt).await;
        first.expect("sent");
        second.expect("sent");
        let asked = gate.asked();
        assert_eq!(asked.len(), 2);
        assert!(
            asked[1].duration_since(start) >= latency,
            "the second write asked the gate {:?} in, before the slot was free",
            asked[1].duration_since(start)
        );
        // Each write was journalled, then passed the gate, then left.
        assert_eq!(intents.intents().len(), 2);
        assert_eq!(lock(&seen).len(), 2);
    }

    /// The order in which writes passed the gate and their answers were told to the watch.
    #[derive(Default)]
    struct Order(std::sync::Mutex<Vec<&'static str>>);

    impl slots::Gate for Order {
        fn open(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
            lock(&self.0).push("gate");
            Box::pin(async { Ok(()) })
        }
    }

    impl watch::CallWatch for Order {
        fn before<'a>(
            &'a self,
            _: WriteRequest<'a>,
        ) -> futures::future::BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
        fn after(&self, _: WriteAnswer) {
            lock(&self.0).push("answered");
        }
        fn finish(&self, _: Result<Option<&crate::target::Sent>, &crate::target::CallError>) {}
    }

    #[tokio::test]
    async fn a_request_waiting_for_a_slot_leaves_before_the_answered_call_goes_on() {
        // Two writes of one task, as the executor runs its calls, and one slot: once the first
        // answer is in and told, the second write takes the slot and passes the gate before
        // the first call's send returns and its call goes on.
        let (e, _seen) = server(Duration::from_millis(5), Open).await;
        let body = serde_json::json!({"name": "a"});
        let put = Req::new(Method::PUT, "/groups/a").json(&body);
        let order = Arc::new(Order::default());
        let send = || async {
            e.send(&put).await.expect("sent");
            lock(&order.0).push("returned");
        };
        let one = slots::Slots::new(1, Some(order.clone() as Arc<dyn slots::Gate>));
        let attempt = slots::within(one, async {
            let mut running: futures::stream::FuturesUnordered<_> =
                [send(), send()].into_iter().collect();
            while futures::StreamExt::next(&mut running).await.is_some() {}
        });
        watch::watched(order.clone(), attempt).await;
        assert_eq!(
            *lock(&order.0),
            [
                "gate", "answered", "gate", "returned", "answered", "returned"
            ]
        );
    }

    #[tokio::test]
    async fn a_write_is_told_to_its_watch_while_it_waits_for_its_slot() {
        // The server holds the first write until the second has been told to the watch: were
        // a write told only once it held its slot, the second would wait for the first's slot
        // and the first would never be answered.
        let intents = Arc::new(Intents::default());
        let second_told = {
            let intents = Arc::clone(&intents);
            async move {
                loop {
                    let told = intents.told.notified();
                    if intents.intents().len() >= 2 {
                        return;
                    }
                    told.await;
                }
            }
        };
        let second_told = futures::future::FutureExt::shared(Box::pin(second_told));
        let app = axum::Router::new().fallback(move || {
            let second_told = second_told.clone();
            async move {
                second_told.await;
                "{}"
            }
        });
        let e = serving(app, Open).await;
        let body = serde_json::json!({"name": "a"});
        let put = Req::new(Method::PUT, "/groups/a").json(&body);

        let one = slots::Slots::new(1, None);
        let attempt = slots::within(one, async { tokio::join!(e.send(&put), e.send(&put)) });
        let (first, second) = tokio::time::timeout(
            Duration::from_secs(10),
            watch::watched(intents.clone(), attempt),
        )
        .await
        .expect("the second write was told to its watch only once the first was answered");
        first.expect("sent");
        second.expect("sent");
        assert_eq!(intents.intents(), ["PUT /groups/a", "PUT /groups/a"]);
    }

    #[tokio::test]
    async fn a_write_given_up_while_it_waits_for_its_slot_is_told_it_was_not_sent() {
        let (e, seen) = server(Duration::ZERO, Open).await;
        let body = serde_json::json!({"name": "a"});
        let put = Req::new(Method::PUT, "/groups/a").json(&body);
        let intents = Arc::new(Intents::default());

        let one = slots::Slots::new(1, None);
        let attempt = slots::within(one, async {
            // The one slot is held elsewhere: the write waits for it, and is given up.
            let _held = slots::take().await;
            tokio::time::timeout(Duration::from_millis(50), e.send(&put)).await
        });
        let given_up = watch::watched(intents.clone(), attempt).await;
        assert!(given_up.is_err(), "{given_up:?}");
        assert_eq!(intents.intents(), ["PUT /groups/a"]);
        assert_eq!(
            intents.answers(),
            [WriteAnswer::NotSent(
                "roster gave up on the write before it was sent".to_owned()
            )]
        );
        assert!(lock(&seen).is_empty(), "{:?}", lock(&seen));

        // A write that leaves is told its answer, and nothing of not being sent.
        let intents = Arc::new(Intents::default());
        watch::watched(intents.clone(), e.send(&put))
            .await
            .expect("sent");
        assert_eq!(
            intents.answers(),
            [WriteAnswer::Status {
                status: 200,
                message: None
            }]
        );
    }

    /// Sends one write through `e` and then asks its pacer for the next turn: whether that turn
    /// came at once (the pace was not cut) or was held back.
    async fn next_turn_at_once(e: &Endpoint<Open>, pacer: &Pacer) -> bool {
        let body = serde_json::json!({"name": "a"});
        let failed = e
            .send(&Req::new(Method::PUT, "/groups/a").json(&body))
            .await;
        assert!(failed.is_err(), "{failed:?}");
        tokio::time::timeout(Duration::from_millis(300), pacer.admit())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_request_that_times_out_cuts_the_pace_and_a_refused_connection_does_not() {
        // A server slower than the client's patience: no answer in time is an overload.
        let (slow, _seen) = server(Duration::from_secs(5), Open).await;
        let pacer = Arc::new(Pacer::default());
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(100))
            .build()
            .expect("client");
        let e = Endpoint::new("t", slow.base(), impatient, Open).with_pacer(Arc::clone(&pacer));
        assert!(
            !next_turn_at_once(&e, &pacer).await,
            "a timeout must cut the pace"
        );

        // Nobody listening: a refused connection says nothing of the server's load.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = closed.local_addr().expect("address");
        drop(closed);
        let pacer = Arc::new(Pacer::default());
        let e = Endpoint::new("t", &format!("http://{addr}"), reqwest::Client::new(), Open)
            .with_pacer(Arc::clone(&pacer));
        assert!(
            next_turn_at_once(&e, &pacer).await,
            "a refused connection must not cut the pace"
        );
    }

    #[test]
    fn requests_carry_path_query_and_body_as_given() {
        let e = Endpoint::new("t", "http://h.invalid/api/", reqwest::Client::new(), Open);
        let q = [("name", "a b&c".to_owned()), ("x", "1".to_owned())];
        let req = Req::new(Method::PUT, "/groups/a%2Fb")
            .query(&q)
            .json(&serde_json::json!({"k": "v"}));
        let built = e.build(&req).expect("builds");
        assert_eq!(
            built.url().as_str(),
            "http://h.invalid/api/groups/a%2Fb?name=a+b%26c&x=1"
        );
        assert_eq!(built.method(), Method::PUT);
        assert_eq!(built.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            built.body().and_then(|b| b.as_bytes()),
            Some(&br#"{"k":"v"}"#[..])
        );
    }
}

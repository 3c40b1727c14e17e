//! The plumbing every simulator shares around its own API: the state handles share
//! ([`SimCore`]), the call log ([`CallLog`], filled by the [`log_call`] middleware), the
//! unauthenticated control endpoints, and [`wrap_api`], which puts a simulator's API routes
//! behind the call log and the fault layer and serves the control routes beside them.
//!
//! The simulators differ in their APIs, not in how tests and users look inside them and steer
//! them, so a simulator only says what is its own through [`SimControl`] (its state as JSON, its
//! behaviour switches, how a control `PUT` answers, which requests it logs) and the rest lives
//! here, once.
//!
//! The control endpoints, the same on every simulator (no authentication: loopback only):
//! * `GET /_sim/state`: [`SimControl::state_json`].
//! * `GET|PUT /_sim/faults`: the [`Faults`] in force (counters show what is left of them).
//! * `GET|PUT /_sim/behaviour`: the simulator's behaviour switches.
//! * `GET /_sim/stats`: since the faults were last set, the calls answered 429 (`throttled`)
//!   and the most API calls answered at once (`peak_in_flight`: what a client's concurrency
//!   came to), and how late the API calls' answers left, over the latency, as the simulator
//!   timed them itself (`late`: `answers`, `p50_ms`, `p99_ms`, `max_ms`; see
//!   [`faults::Lateness`]).
//! * `GET /_sim/calls`: the call log, as `"METHOD /path?query"` lines in arrival order;
//!   `GET /_sim/calls?agent=true`: the same lines, each followed by a tab and the request's
//!   `User-Agent`, which names the roster instance that sent it (two daemons, one simulator).
//!
//! They sit outside the call log and the fault layer: steering a simulator must neither show in
//! the calls a test checks nor fail because of the faults it sets.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::faults::{self, FaultHost, FaultInjector, Faults};

/// Locks a mutex, taking over the state even when a panicking handler poisoned it: the
/// simulators' state stays usable (and inspectable) after a bug in one handler, which is what a
/// test wants to see.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every simulator's handles share: its own state behind one mutex, its fault injector and
/// its call log. A simulator holds it in an `Arc`, so that every clone of its handle (the one
/// serving requests, the one a test inspects) sees the same.
#[derive(Debug)]
pub struct SimCore<St> {
    state: Mutex<St>,
    faults: FaultInjector,
    calls: CallLog,
}

impl<St> SimCore<St> {
    /// The shared part of a new simulator: `state`, with `faults` injected and no calls yet.
    pub fn new(state: St, faults: Faults) -> Self {
        Self {
            state: Mutex::new(state),
            faults: FaultInjector::new(faults),
            calls: CallLog::default(),
        }
    }

    /// The simulator's own state, locked (see [`lock`] about poisoning).
    pub fn lock(&self) -> MutexGuard<'_, St> {
        lock(&self.state)
    }

    /// The simulator's fault state.
    pub fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// The simulator's call log.
    pub fn calls(&self) -> &CallLog {
        &self.calls
    }
}

/// The requests a simulator received, as `"METHOD /path?query"` lines (path and query as sent,
/// still percent-encoded), in arrival order, each with the `User-Agent` it came with. It has a
/// lock of its own so that logging a call never waits on a handler holding the state.
#[derive(Debug, Default)]
pub struct CallLog(Mutex<Vec<Logged>>);

/// One entry of a [`CallLog`].
#[derive(Clone, Debug)]
struct Logged {
    line: String,
    agent: String,
}

impl CallLog {
    /// Adds a call at the end: its [`Call::line`] and its user agent.
    pub fn push(&self, call: &Call) {
        lock(&self.0).push(Logged {
            line: call.line(),
            agent: call.agent.clone(),
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.0).iter().map(|c| c.line.clone()).collect()
    }

    /// Every line so far, each as `"METHOD /path?query\t<user-agent>"` (the agent empty when the
    /// request had none), so that a test can tell which roster instance sent which call.
    pub fn lines_with_agent(&self) -> Vec<String> {
        lock(&self.0)
            .iter()
            .map(|c| format!("{}\t{}", c.line, c.agent))
            .collect()
    }

    /// Forgets every line.
    pub fn clear(&self) {
        lock(&self.0).clear();
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case), if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A new token nobody can guess: 64 hex digits.
pub fn random_token() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// The access tokens a simulator issued, each with what it grants (`T`) and when it stops
/// working.
#[derive(Debug)]
pub struct Tokens<T>(HashMap<String, (T, Instant)>);

impl<T> Default for Tokens<T> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<T> Tokens<T> {
    /// Issues a new [`random_token`] granting `grant` for `ttl`.
    pub fn issue(&mut self, grant: T, ttl: Duration) -> String {
        let token = random_token();
        self.0.insert(token.clone(), (grant, Instant::now() + ttl));
        token
    }

    /// What `token` grants, if it was issued and has not expired; an expired one is forgotten.
    pub fn get(&mut self, token: &str) -> Option<&T> {
        if self.0.get(token)?.1 <= Instant::now() {
            self.0.remove(token);
            return None;
        }
        self.0.get(token).map(|(grant, _)| grant)
    }

    /// Forgets every token, so that none works any more.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// One request as [`log_call`] sees it on the way in.
#[derive(Clone, Debug)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The path, as sent.
    pub path: String,
    /// The path and query, as sent (the path alone when there is no query).
    pub target: String,
    /// The `User-Agent` header (lossily decoded; empty when absent). roster's names the
    /// instance that sent the request (`roster/<version> (<instance>)`).
    pub agent: String,
}

impl Call {
    fn of(req: &Request) -> Self {
        let path = req.uri().path().to_owned();
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
        let agent = req
            .headers()
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        Self {
            method: req.method().clone(),
            path,
            target,
            agent,
        }
    }

    /// The line the call log keeps: `"METHOD /path?query"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// How a simulator answers `PUT /_sim/faults` and `PUT /_sim/behaviour`. The simulators were
/// written apart and answer differently; scripts may rely on either, so each keeps its own.
#[derive(Clone, Copy, Debug)]
pub enum ControlPut {
    /// A JSON body is required (`Content-Type: application/json`; axum's own rejections
    /// otherwise) and success is `204 No Content`.
    NoContent,
    /// The body is read as JSON whatever its content type; one that does not fit is answered with
    /// `bad_body("invalid faults: …")` (or `"invalid behaviour: …"`), the simulator's own 400, and
    /// success is `200` with the value now in force.
    Echo {
        /// The simulator's answer to a body that does not fit.
        bad_body: fn(String) -> Response,
    },
}

/// What a simulator tells the shared plumbing about itself, beyond what [`FaultHost`] says. The
/// inspection and steering methods tests use (calls, faults, behaviour) come with it, written
/// once over [`SimControl::core`].
pub trait SimControl: FaultHost {
    /// The behaviour switches (`[<sim>.behaviour]` in a seed, `/_sim/behaviour` over HTTP).
    type Behaviour: Clone + Serialize + DeserializeOwned + Send + 'static;

    /// The simulator's own state, behind [`SimCore`]'s mutex.
    type State;

    /// How a control `PUT` answers.
    const CONTROL_PUT: ControlPut;

    /// The shared state: the simulator's own, its faults and its call log.
    fn core(&self) -> &SimCore<Self::State>;

    /// Where the behaviour switches live in the state.
    fn behaviour_in(state: &mut Self::State) -> &mut Self::Behaviour;

    /// The body of `GET /_sim/state`.
    fn state_json(&self) -> Value;

    /// Every request logged so far (see [`SimControl::log_call`] for which), as
    /// `"METHOD /path?query"` (path as sent, percent-encoded), in arrival order; control calls
    /// are never logged.
    fn calls(&self) -> Vec<String> {
        self.core().calls().lines()
    }

    /// [`SimControl::calls`], each line followed by a tab and the request's `User-Agent`.
    fn calls_with_agent(&self) -> Vec<String> {
        self.core().calls().lines_with_agent()
    }

    /// Forgets the calls logged so far.
    fn clear_calls(&self) {
        self.core().calls().clear();
    }

    /// Replaces the faults (counters refilled, random numbers reseeded).
    fn set_faults(&self, f: Faults) {
        self.core().faults().set(f);
    }

    /// The faults in force, with what is left of their counters.
    fn faults(&self) -> Faults {
        self.core().faults().get()
    }

    /// How many calls were answered 429 (over the quota or by `throttle_rate`) since the faults
    /// were last set.
    fn throttled(&self) -> u64 {
        self.core().faults().throttled()
    }

    /// The most API calls answered at once since the faults were last set.
    fn peak_in_flight(&self) -> usize {
        self.core().faults().peak_in_flight()
    }

    /// How late the API calls' answers left, over the latency, since the faults were last set.
    fn lateness(&self) -> faults::Lateness {
        self.core().faults().lateness()
    }

    /// The behaviour switches in force.
    fn behaviour(&self) -> Self::Behaviour {
        Self::behaviour_in(&mut self.core().lock()).clone()
    }

    /// Replaces the behaviour switches.
    fn set_behaviour(&self, b: Self::Behaviour) {
        *Self::behaviour_in(&mut self.core().lock()) = b;
    }

    /// Records a request that reached the API routes, before faults are injected. By default
    /// every one goes into the call log; a simulator that logs only some, or counts some apart,
    /// says so here.
    fn log_call(&self, call: &Call) {
        self.core().calls().push(call);
    }

    /// Sees the status of the answer to a call [`SimControl::log_call`] recorded (faults
    /// included), for a simulator that counts what succeeded. Does nothing by default.
    fn call_answered(&self, _call: &Call, _status: StatusCode) {}
}

/// The call-log middleware: records every request that reaches the API routes, faulted or not,
/// through [`SimControl::log_call`] and [`SimControl::call_answered`].
pub async fn log_call<S: SimControl>(State(sim): State<S>, req: Request, next: Next) -> Response {
    let call = Call::of(&req);
    sim.log_call(&call);
    let resp = next.run(req).await;
    sim.call_answered(&call, resp.status());
    resp
}

/// A simulator's whole router: `api` (its routes, fallback and own layers, state already given)
/// behind the fault layer and, outside that, the call log (so that faulted calls are logged too),
/// plus the control routes, which neither is applied to.
pub fn wrap_api<S: SimControl>(sim: &S, api: Router) -> Router {
    let control = Router::new()
        .route("/_sim/state", get(get_state::<S>))
        .route("/_sim/faults", get(get_faults::<S>).put(put_faults::<S>))
        .route(
            "/_sim/behaviour",
            get(get_behaviour::<S>).put(put_behaviour::<S>),
        )
        .route("/_sim/calls", get(get_calls::<S>))
        .route("/_sim/stats", get(get_stats::<S>))
        .with_state(sim.clone());
    api.layer(from_fn_with_state(sim.clone(), faults::inject::<S>))
        .layer(from_fn_with_state(sim.clone(), log_call::<S>))
        .merge(control)
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

/// As JSON; the control values (faults, behaviour switches, call lines) always serialize, so the
/// `null` is never seen.
fn to_json(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

async fn get_state<S: SimControl>(State(sim): State<S>) -> Response {
    ok(sim.state_json())
}

async fn get_stats<S: SimControl>(State(sim): State<S>) -> Response {
    let late = sim.lateness();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    ok(serde_json::json!({
        "throttled": sim.throttled(),
        "peak_in_flight": sim.peak_in_flight(),
        "late": {
            "answers": late.answers,
            "p50_ms": ms(late.p50),
            "p99_ms": ms(late.p99),
            "max_ms": ms(late.max),
        },
    }))
}

async fn get_faults<S: SimControl>(State(sim): State<S>) -> Response {
    ok(to_json(&sim.faults()))
}

async fn put_faults<S: SimControl>(State(sim): State<S>, req: Request) -> Response {
    control_put(
        req,
        S::CONTROL_PUT,
        "faults",
        |f| sim.set_faults(f),
        || sim.faults(),
    )
    .await
}

async fn get_behaviour<S: SimControl>(State(sim): State<S>) -> Response {
    ok(to_json(&sim.behaviour()))
}

async fn put_behaviour<S: SimControl>(State(sim): State<S>, req: Request) -> Response {
    control_put(
        req,
        S::CONTROL_PUT,
        "behaviour",
        |b| sim.set_behaviour(b),
        || sim.behaviour(),
    )
    .await
}

/// The query of `GET /_sim/calls`.
#[derive(Debug, Default, serde::Deserialize)]
struct CallsQuery {
    /// With each call's user agent.
    #[serde(default)]
    agent: bool,
}

async fn get_calls<S: SimControl>(
    State(sim): State<S>,
    query: Result<Query<CallsQuery>, QueryRejection>,
) -> Response {
    // A query that does not parse (`agent=yes`) gets the plain form rather than a rejection:
    // the control endpoints are for people poking at a simulator as much as for tests.
    let query = query.map(|Query(q)| q).unwrap_or_default();
    if query.agent {
        ok(to_json(&sim.calls_with_agent()))
    } else {
        ok(to_json(&sim.calls()))
    }
}

/// A control `PUT` of a `T` named `what`, answered as `style` says.
async fn control_put<T: Serialize + DeserializeOwned>(
    req: Request,
    style: ControlPut,
    what: &str,
    set: impl FnOnce(T),
    get: impl FnOnce() -> T,
) -> Response {
    match style {
        ControlPut::NoContent => match Json::<T>::from_request(req, &()).await {
            Ok(Json(v)) => {
                set(v);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(rejection) => rejection.into_response(),
        },
        ControlPut::Echo { bad_body } => {
            let body = match Bytes::from_request(req, &()).await {
                Ok(body) => body,
                Err(rejection) => return rejection.into_response(),
            };
            match serde_json::from_slice::<T>(&body) {
                Ok(v) => {
                    set(v);
                    ok(to_json(&get()))
                }
                Err(e) => bad_body(format!("invalid {what}: {e}")),
            }
        }
    }
}

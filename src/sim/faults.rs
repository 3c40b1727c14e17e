//! Fault injection shared by every simulator: slow answers, error statuses, throttling with
//! `Retry-After`, a quota (a token bucket: calls beyond it are answered 429 with the wait until
//! the next call is allowed), failed writes, responses lost after a write was applied, and access
//! tokens that stop working in the middle of a run.
//!
//! A simulator that only ever answers correctly cannot show that roster survives the failures a
//! real API has, so every simulator wraps its API routes in [`inject`], an axum middleware that is
//! generic over a [`FaultHost`]. The host says which requests are API calls, how its API spells an
//! error body, and how to invalidate its tokens; everything else (the decision, the counters, the
//! seeded random numbers) lives here, once.
//!
//! Decisions are deterministic: the rates draw from a [`StdRng`] seeded with [`Faults::seed`], and
//! the one-shot counters ([`Faults::fail_writes`], [`Faults::drop_after_write`]) count down as
//! they fire, so a test that sets the same faults sees the same failures in the same places.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::retry::RateLimit;

/// The faults a simulator injects, as written in a seed file (`[contensis.faults]`) or sent as
/// JSON to a simulator's `PUT /_sim/faults`. Every field is optional; the default injects nothing.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// How long every request takes to answer, token calls included (humantime, e.g.
    /// `"20ms"`): the request is handled half way through, and its answer leaves once the whole
    /// latency has passed (or the handling is done, if that takes longer). See [`inject`].
    #[serde(with = "duration::option")]
    pub latency: Option<Duration>,
    /// Fraction (0.0 to 1.0) of API calls (not token calls) answered with `error_status`.
    pub error_rate: f64,
    /// Status used by `error_rate` and `fail_writes`; 500 unless set (503 is the other useful one).
    pub error_status: u16,
    /// Fraction (0.0 to 1.0) of API calls answered `429 Too Many Requests` with `Retry-After`.
    pub throttle_rate: f64,
    /// The wait a 429 asks for (humantime); sent in whole seconds, rounded up. Default `"1s"`.
    #[serde(with = "duration")]
    pub retry_after: Duration,
    /// The next N successful writes (POST, PUT, PATCH, DELETE) are applied to the state, then
    /// the connection is dropped before any of the response is sent.
    pub drop_after_write: u32,
    /// The next N writes are answered with `error_status` before they are applied.
    pub fail_writes: u32,
    /// When set, `error_rate`, `throttle_rate`, `fail_writes` and `drop_after_write` apply only
    /// to requests whose path and query (as sent, still percent-encoded) contain this substring.
    pub fail_path: Option<String>,
    /// After this many API calls every token issued so far stops working (401), once; 0 = never.
    pub expire_tokens_after: u32,
    /// Seed of the random numbers behind the rates, so that a run can be repeated exactly.
    pub seed: u64,
    /// A quota on API calls (reads and writes; not token calls), as APIs shared by many clients
    /// have: `{ rate = "20/s", burst = 20 }`. A call beyond it is answered 429 with
    /// `Retry-After` (the wait until the next call is allowed, in whole seconds, at least 1).
    pub quota: Option<RateLimit>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency: None,
            error_rate: 0.0,
            error_status: 500,
            throttle_rate: 0.0,
            retry_after: Duration::from_secs(1),
            drop_after_write: 0,
            fail_writes: 0,
            fail_path: None,
            expire_tokens_after: 0,
            seed: 0,
            quota: None,
        }
    }
}

impl Faults {
    /// The value of a `Retry-After` header for `retry_after`: whole seconds, rounded up.
    fn retry_after_header(&self) -> HeaderValue {
        HeaderValue::from(whole_secs_up(self.retry_after))
    }

    /// The status to answer with when a call is failed on purpose. An out-of-range
    /// `error_status` falls back to 500 rather than failing the simulator.
    fn error_status(&self) -> StatusCode {
        StatusCode::from_u16(self.error_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// A duration in whole seconds, rounded up (as `Retry-After` and `expires_in` want it).
pub fn whole_secs_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What [`FaultInjector::before`] decided for one request, before it reaches the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Handle the request normally.
    Pass,
    /// Answer with this error status without handling the request.
    Fail(StatusCode),
    /// Answer `429 Too Many Requests` with this `Retry-After` header value.
    Throttle(HeaderValue),
}

/// The live fault state of one simulator: the configured [`Faults`], what is left of its one-shot
/// counters, and its random number generator.
#[derive(Debug)]
pub struct FaultInjector {
    inner: Mutex<FaultState>,
}

#[derive(Debug)]
struct FaultState {
    faults: Faults,
    rng: StdRng,
    api_calls: u64,
    tokens_expired: bool,
    /// The quota's bucket, as the generic cell rate algorithm keeps it: when the next call
    /// would be due were calls spaced evenly (a call is allowed while that is at most
    /// `burst - 1` intervals ahead). Exact in integer time, unlike a count of tokens.
    due: Instant,
    /// How many calls were answered 429 (over the quota, or by `throttle_rate`).
    throttled: u64,
    /// API calls being answered now (their latency included).
    in_flight: usize,
    /// The most API calls answered at once since the faults were last set.
    peak_in_flight: usize,
    /// How late the API calls' answers left since the faults were last set.
    late: LateCounts,
}

impl FaultState {
    fn new(faults: Faults) -> Self {
        Self {
            rng: StdRng::seed_from_u64(faults.seed),
            faults,
            api_calls: 0,
            tokens_expired: false,
            due: Instant::now(),
            throttled: 0,
            in_flight: 0,
            peak_in_flight: 0,
            late: LateCounts::default(),
        }
    }

    /// Takes one call from the quota's bucket at `now`; `Err` with the wait until one is there
    /// when it is empty. Always `Ok` without a quota.
    fn take_quota(&mut self, now: Instant) -> Result<(), Duration> {
        let Some(q) = self.faults.quota else {
            return Ok(());
        };
        let interval = q.rate.interval();
        let tolerance = interval * (q.burst.max(1) - 1);
        let due = self.due.max(now);
        let ahead = due.saturating_duration_since(now);
        if ahead <= tolerance {
            self.due = due + interval;
            Ok(())
        } else {
            Err(ahead - tolerance)
        }
    }

    fn applies_to(&self, path_and_query: &str) -> bool {
        self.faults
            .fail_path
            .as_deref()
            .is_none_or(|p| path_and_query.contains(p))
    }

    fn draw(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.random::<f64>() < rate
    }
}

impl FaultInjector {
    /// An injector for `faults`, its counters full and its random numbers seeded from them.
    pub fn new(faults: Faults) -> Self {
        Self {
            inner: Mutex::new(FaultState::new(faults)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        super::control::lock(&self.inner)
    }

    /// Replaces the faults, refilling the counters and reseeding the random numbers.
    pub fn set(&self, faults: Faults) {
        let mut st = self.lock();
        // The calls in flight go on: the peak starts again from them.
        let in_flight = st.in_flight;
        *st = FaultState::new(faults);
        st.in_flight = in_flight;
        st.peak_in_flight = in_flight;
    }

    /// The most API calls the simulator answered at once since the faults were last set: what
    /// a client's `concurrency` came to.
    pub fn peak_in_flight(&self) -> usize {
        self.lock().peak_in_flight
    }

    /// How late the API calls' answers left since the faults were last set.
    pub fn lateness(&self) -> Lateness {
        self.lock().late.summary()
    }

    /// Records that an API call's answer left `late` after its latency had passed.
    fn answered_late(&self, late: Duration) {
        self.lock().late.add(late);
    }

    /// Counts an API call in flight until the returned guard is dropped.
    fn enter(&self) -> InFlight<'_> {
        let mut st = self.lock();
        st.in_flight += 1;
        st.peak_in_flight = st.peak_in_flight.max(st.in_flight);
        InFlight(self)
    }

    /// The faults as they stand now (the counters show what is left of them).
    pub fn get(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// How many calls were answered 429 since the faults were last set.
    pub fn throttled(&self) -> u64 {
        self.lock().throttled
    }

    /// The delay to apply before handling any request.
    fn latency(&self) -> Option<Duration> {
        self.lock().faults.latency
    }

    /// Counts one API call and says whether tokens must be invalidated now: true exactly once,
    /// on the first call after `expire_tokens_after` calls.
    fn count_api_call(&self) -> bool {
        let mut st = self.lock();
        st.api_calls += 1;
        let limit = u64::from(st.faults.expire_tokens_after);
        if limit > 0 && !st.tokens_expired && st.api_calls > limit {
            st.tokens_expired = true;
            true
        } else {
            false
        }
    }

    /// Decides whether an API call is throttled or failed before it is handled.
    fn before(&self, path_and_query: &str, is_write: bool) -> Verdict {
        self.before_at(path_and_query, is_write, Instant::now())
    }

    fn before_at(&self, path_and_query: &str, is_write: bool, now: Instant) -> Verdict {
        let mut st = self.lock();
        // A quota counts every API call, whatever `fail_path` says: it is the API's, not a fault's.
        if let Err(wait) = st.take_quota(now) {
            st.throttled += 1;
            return Verdict::Throttle(HeaderValue::from(whole_secs_up(wait).max(1)));
        }
        if !st.applies_to(path_and_query) {
            return Verdict::Pass;
        }
        let throttle_rate = st.faults.throttle_rate;
        if st.draw(throttle_rate) {
            st.throttled += 1;
            return Verdict::Throttle(st.faults.retry_after_header());
        }
        let error_rate = st.faults.error_rate;
        if st.draw(error_rate) {
            return Verdict::Fail(st.faults.error_status());
        }
        if is_write && st.faults.fail_writes > 0 {
            st.faults.fail_writes -= 1;
            return Verdict::Fail(st.faults.error_status());
        }
        Verdict::Pass
    }

    /// Called after a write was handled successfully: whether to drop the connection instead of
    /// answering (consuming one of `drop_after_write`).
    fn drop_after(&self, path_and_query: &str) -> bool {
        let mut st = self.lock();
        if st.faults.drop_after_write > 0 && st.applies_to(path_and_query) {
            st.faults.drop_after_write -= 1;
            true
        } else {
            false
        }
    }
}

/// One API call in flight, counted until it is dropped (however its handling ends).
struct InFlight<'a>(&'a FaultInjector);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
    }
}

/// What a simulator tells [`inject`] about itself.
pub trait FaultHost: Clone + Send + Sync + 'static {
    /// The simulator's fault state.
    fn injector(&self) -> &FaultInjector;
    /// Whether a request path is an API call (subject to errors, throttling and token expiry),
    /// as opposed to a token call, which only ever gets the latency.
    fn is_api_call(&self, path: &str) -> bool;
    /// The simulator's own error response for a failure injected with `status`.
    fn fault_response(&self, status: StatusCode) -> Response;
    /// Makes every access token issued so far invalid.
    fn expire_tokens(&self);
    /// Whether a request changes state (subject to failed and dropped writes): by its method,
    /// unless the API reads with a `POST` somewhere.
    fn is_write(&self, method: &Method, path: &str) -> bool {
        let _ = path;
        is_write(method)
    }
}

/// The fault middleware: wrap a simulator's API routes with
/// `axum::middleware::from_fn_with_state(host, inject::<Host>)`.
///
/// A latency is the time the simulated server takes to answer, its own work included, as a
/// remote server's answer time is: the request reaches the server half way through it (so a
/// client that gives up earlier leaves nothing written, and one that gives up later leaves its
/// write landed and unanswered), and the answer leaves when the whole latency has passed since
/// the request came, or when the handling is done if that takes longer.
pub async fn inject<H: FaultHost>(State(host): State<H>, req: Request, next: Next) -> Response {
    let faults = host.injector();
    let arrived = Instant::now();
    let latency = faults.latency();
    let api_call = host.is_api_call(req.uri().path());
    let _in_flight = api_call.then(|| faults.enter());
    if let Some(delay) = latency {
        tokio::time::sleep(delay / 2).await;
    }
    let resp = answer(&host, api_call, req, next).await;
    if let Some(delay) = latency {
        sleep_precisely_until(arrived + delay).await;
    }
    if api_call {
        faults.answered_late(
            arrived
                .elapsed()
                .saturating_sub(latency.unwrap_or_default()),
        );
    }
    resp
}

/// How far past their latency a simulator's answers left, as it timed them itself: from a
/// request's arrival to its answer handed to the connection, less the latency (with none set,
/// the time the answer took). What a client sees on top of that is its own and the network's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lateness {
    /// The answers timed.
    pub answers: u64,
    /// Half the answers were no later than this, to within [`LATE_STEP`].
    pub p50: Duration,
    /// 99 answers in 100 were no later than this, to within [`LATE_STEP`].
    pub p99: Duration,
    /// The latest answer's lateness.
    pub max: Duration,
}

/// The resolution of [`Lateness`]: answers are counted in steps of this.
pub const LATE_STEP: Duration = Duration::from_micros(10);

/// Steps counted apart: up to 10 ms late; later answers share the last step.
const LATE_STEPS: usize = 1_000;

/// The answers' lateness as counts per [`LATE_STEP`]: a fixed size however long a simulator
/// runs.
#[derive(Debug)]
struct LateCounts {
    steps: Vec<u64>,
    answers: u64,
    max: Duration,
}

impl Default for LateCounts {
    fn default() -> Self {
        Self {
            steps: vec![0; LATE_STEPS + 1],
            answers: 0,
            max: Duration::ZERO,
        }
    }
}

impl LateCounts {
    fn add(&mut self, late: Duration) {
        let step = usize::try_from(late.as_nanos() / LATE_STEP.as_nanos())
            .map_or(LATE_STEPS, |s| s.min(LATE_STEPS));
        self.steps[step] += 1;
        self.answers += 1;
        self.max = self.max.max(late);
    }

    /// The lateness no more than `per_mille` of the answers exceed: the upper end of the step
    /// that holds the answer of that rank, or the latest answer's where that is sooner.
    fn quantile(&self, per_mille: u64) -> Duration {
        let rank = (self.answers * per_mille).div_ceil(1_000).max(1);
        let mut seen = 0;
        for (step, n) in self.steps[..LATE_STEPS].iter().enumerate() {
            seen += n;
            if seen >= rank {
                let end = u32::try_from(step + 1).map_or(Duration::MAX, |s| LATE_STEP * s);
                return end.min(self.max);
            }
        }
        // In the last step, which holds every answer later than the others reach.
        self.max
    }

    fn summary(&self) -> Lateness {
        Lateness {
            answers: self.answers,
            p50: self.quantile(500),
            p99: self.quantile(990),
            max: self.max,
        }
    }
}

/// What the server answers once the request has reached it: the faults' verdict, or the
/// simulator's own answer.
async fn answer<H: FaultHost>(host: &H, api_call: bool, req: Request, next: Next) -> Response {
    if !api_call {
        return next.run(req).await;
    }
    let faults = host.injector();
    let path = req.uri().path().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    if faults.count_api_call() {
        tracing::debug!("simulated token expiry");
        host.expire_tokens();
    }
    let is_write = host.is_write(req.method(), &path);
    match faults.before(&path_and_query, is_write) {
        Verdict::Pass => {}
        Verdict::Fail(status) => return host.fault_response(status),
        Verdict::Throttle(retry_after) => {
            let mut resp = host.fault_response(StatusCode::TOO_MANY_REQUESTS);
            resp.headers_mut().insert(header::RETRY_AFTER, retry_after);
            return resp;
        }
    }
    let resp = next.run(req).await;
    if is_write && resp.status().is_success() && faults.drop_after(&path_and_query) {
        tracing::debug!(path = %path_and_query, "simulated connection drop after a write");
        return dropped_connection();
    }
    resp
}

/// How far before the end of a latency tokio's timer is trusted to wake a request. It fires on
/// whole milliseconds and its driver can wake a millisecond after that, so a latency slept on it
/// alone comes out 1 to 2 ms long (1.3 ms at the median of 20 ms, measured by `benches/sims.rs`),
/// more than the 1 ms a simulator may add to its latency (issue 14).
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// Sleeps until `end`, to within tens of microseconds rather than tokio's milliseconds: on
/// tokio's timer until [`TIMER_SLACK`] before it, then the rest in the operating system's
/// sleep. On a multi-threaded runtime the request's own thread sleeps it, its other tasks handed
/// to another thread meanwhile (`block_in_place`): a sleep on the blocking pool must wake the
/// request from outside the runtime, and with two busy workers that wake-up waited 1.2 ms at
/// the median, more than the sleep saved (`benches/sims.rs`, VinylDNS floor rows: p50 1.3-1.4 ms
/// over the latency that way, 0.5 ms this way). A single-threaded runtime (tests) cannot lend
/// its thread, and uses the blocking pool.
async fn sleep_precisely_until(end: Instant) {
    if let Some(coarse) = end.checked_sub(TIMER_SLACK) {
        tokio::time::sleep_until(coarse.into()).await;
    }
    let rest = end.saturating_duration_since(Instant::now());
    if rest.is_zero() {
        return;
    }
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(|| sleep_on_this_thread(rest));
    } else {
        // The sleep cannot panic, so the join cannot fail.
        let _slept = tokio::task::spawn_blocking(move || sleep_on_this_thread(rest)).await;
    }
}

/// The operating system's sleep, ending within microseconds of `rest`: Linux lets a thread's
/// sleep run late by its timer slack (50 µs by default) to group wake-ups, and that would add to
/// every answer's latency. The slack is set for the sleep alone, since the thread is the
/// runtime's, and goes back to the thread's default after it.
fn sleep_on_this_thread(rest: Duration) {
    #[cfg(target_os = "linux")]
    let slack = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1)).is_ok();
    std::thread::sleep(rest);
    #[cfg(target_os = "linux")]
    if slack {
        // Zero is the thread's default slack; failing to restore it only makes the thread's
        // later timers more precise.
        let _restored = rustix::thread::set_current_timer_slack(None);
    }
}

/// Whether a method changes state.
pub fn is_write(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// A response that makes the server abort the connection before anything is written: its body
/// fails at once, so hyper drops the connection with the response head still unsent, and the
/// client sees a closed connection instead of an answer.
fn dropped_connection() -> Response {
    let body = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection dropped by the simulator",
        ))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1"));
    resp
}

/// Serde adapter for a [`Duration`] written in humantime (`"250ms"`, `"1h 30m"`), for
/// `#[serde(with = "crate::sim::faults::duration")]`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Writes the duration in humantime.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Reads a humantime duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| D::Error::custom(format!("invalid duration {text:?}: {e}")))
    }

    /// The same for an optional duration.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

        /// Writes the duration in humantime, or nothing.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.collect_str(&humantime::format_duration(*d)),
                None => s.serialize_none(),
            }
        }

        /// Reads an optional humantime duration string.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            let Some(text) = Option::<String>::deserialize(d)? else {
                return Ok(None);
            };
            humantime::parse_duration(&text)
                .map(Some)
                .map_err(|e| D::Error::custom(format!("invalid duration {text:?}: {e}")))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The whole latency is slept on either kind of runtime: the multi-threaded one lends the
    /// request's thread for the last of it, the single-threaded one cannot and uses the pool.
    async fn sleeps_at_least(delay: Duration) {
        let started = Instant::now();
        sleep_precisely_until(started + delay).await;
        let slept = started.elapsed();
        assert!(slept >= delay, "{slept:?} < {delay:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_latency_is_slept_whole_on_a_multi_threaded_runtime() {
        let sleeps = (0..4).map(|_| tokio::spawn(sleeps_at_least(Duration::from_millis(5))));
        for s in sleeps {
            s.await.expect("no panic");
        }
        sleeps_at_least(Duration::from_micros(500)).await;
    }

    #[tokio::test]
    async fn a_latency_is_slept_whole_on_a_single_threaded_runtime() {
        sleeps_at_least(Duration::from_millis(5)).await;
        sleeps_at_least(Duration::from_micros(500)).await;
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_sleep_leaves_its_threads_timer_slack_as_it_found_it() {
        let before = rustix::thread::current_timer_slack().expect("slack");
        sleep_on_this_thread(Duration::from_micros(100));
        assert_eq!(
            rustix::thread::current_timer_slack().expect("slack"),
            before
        );
    }

    #[test]
    fn lateness_is_told_by_rank_to_its_step_and_never_past_the_latest() {
        let us = Duration::from_micros;
        let mut late = LateCounts::default();
        assert_eq!(late.summary(), Lateness::default());
        // 98 answers 15 µs late, in the second step (which ends at 20 µs, after the latest).
        for _ in 0..98 {
            late.add(us(15));
        }
        assert_eq!(late.summary().p99, us(15));
        // Then two 5 ms late: half are still in the second step, the 99th in the 501st.
        late.add(us(5_000));
        late.add(us(5_000));
        let s = late.summary();
        assert_eq!((s.answers, s.p50, s.max), (100, us(20), us(5_000)));
        // The 99th answer is 5 ms late: its step ends at 5.01 ms, past the latest answer.
        assert_eq!(s.p99, us(5_000));
        // Later than the steps reach: counted in the last, told as the latest.
        let mut late = LateCounts::default();
        late.add(Duration::from_millis(20));
        late.add(Duration::from_millis(30));
        let s = late.summary();
        assert_eq!(
            (s.p50, s.p99),
            (Duration::from_millis(30), Duration::from_millis(30))
        );
        // One answer: it is every quantile, to its step.
        let mut late = LateCounts::default();
        late.add(us(123));
        assert_eq!(late.summary().p50, us(123));
        late.add(us(0));
        assert_eq!(late.summary().p50, us(10));
    }

    #[test]
    fn lateness_is_counted_again_from_when_the_faults_are_set() {
        let f = FaultInjector::new(Faults::default());
        f.answered_late(Duration::from_micros(250));
        assert_eq!(f.lateness().answers, 1);
        // Setting the faults starts the count again.
        f.set(Faults::default());
        assert_eq!(f.lateness(), Lateness::default());
    }

    #[test]
    fn the_peak_of_calls_in_flight_is_kept_until_the_faults_are_set() {
        let f = FaultInjector::new(Faults::default());
        let a = f.enter();
        let b = f.enter();
        drop(a);
        let c = f.enter();
        assert_eq!(f.peak_in_flight(), 2);
        drop((b, c));
        assert_eq!(f.peak_in_flight(), 2, "the peak stays");
        let d = f.enter();
        f.set(Faults::default());
        assert_eq!(
            f.peak_in_flight(),
            1,
            "starts again from the calls in flight"
        );
        let e = f.enter();
        assert_eq!(f.peak_in_flight(), 2);
        drop((d, e));
        let _g = f.enter();
        assert_eq!(f.peak_in_flight(), 2);
    }

    #[test]
    fn defaults_and_humantime() {
        let f: Faults = toml::from_str("latency = \"20ms\"\nretry_after = \"1500ms\"").unwrap();
        assert_eq!(f.latency, Some(Duration::from_millis(20)));
        assert_eq!(f.error_status, 500);
        assert_eq!(f.retry_after_header(), HeaderValue::from(2u64));
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["latency"], "20ms");
        let back: Faults = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
        assert!(toml::from_str::<Faults>("latncy = \"1s\"").is_err());
    }

    #[test]
    fn seeded_rates_repeat() {
        let faults = Faults {
            error_rate: 0.5,
            seed: 7,
            ..Faults::default()
        };
        let run = || {
            let inj = FaultInjector::new(faults.clone());
            (0..32)
                .map(|_| inj.before("/api/x", false) == Verdict::Pass)
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        assert!(first.iter().any(|p| *p) && first.iter().any(|p| !*p));
    }

    #[test]
    fn a_quota_lets_a_burst_through_then_one_call_per_interval() {
        let faults: Faults = toml::from_str("quota = { rate = \"20/s\", burst = 3 }").unwrap();
        assert_eq!(
            faults.quota,
            Some(RateLimit {
                rate: "20/s".parse().unwrap(),
                burst: 3
            })
        );
        let inj = FaultInjector::new(faults);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(inj.before_at("/api/x", false, t0), Verdict::Pass);
        }
        // Empty: the next call is 50 ms away, asked for as the one second `Retry-After` allows.
        assert_eq!(
            inj.before_at("/api/x", true, t0),
            Verdict::Throttle(HeaderValue::from(1u64))
        );
        let ms = Duration::from_millis;
        assert_eq!(
            inj.before_at("/api/x", false, t0 + ms(40)),
            Verdict::Throttle(HeaderValue::from(1u64))
        );
        assert_eq!(inj.before_at("/api/x", false, t0 + ms(50)), Verdict::Pass);
        assert_eq!(
            inj.before_at("/api/x", false, t0 + ms(60)),
            Verdict::Throttle(HeaderValue::from(1u64))
        );
        // A long pause refills the bucket to its burst, never beyond.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(inj.before_at("/api/x", false, later), Verdict::Pass);
        }
        assert_ne!(inj.before_at("/api/x", false, later), Verdict::Pass);
        // Over a second, the rate: 20 calls.
        let start = t0 + Duration::from_secs(20);
        let passed = (0..1000)
            .filter(|i| inj.before_at("/api/x", false, start + ms(*i)) == Verdict::Pass)
            .count();
        assert!(
            (20..=23).contains(&passed),
            "{passed} calls passed in a second"
        );
        assert!(toml::from_str::<Faults>("quota = { rate = \"20\" }").is_err());
        assert!(toml::from_str::<Faults>("quota = { rate = \"1/m\", bust = 2 }").is_err());
    }

    #[test]
    fn counters_count_down() {
        let inj = FaultInjector::new(Faults {
            fail_writes: 1,
            expire_tokens_after: 2,
            fail_path: Some("/groups".into()),
            ..Faults::default()
        });
        assert_eq!(inj.before("/api/users", true), Verdict::Pass);
        assert_eq!(
            inj.before("/api/groups", true),
            Verdict::Fail(StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert_eq!(inj.before("/api/groups", true), Verdict::Pass);
        assert!(!inj.count_api_call());
        assert!(!inj.count_api_call());
        assert!(inj.count_api_call());
        assert!(!inj.count_api_call());
    }
}

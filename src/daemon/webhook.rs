//! Webhook notifications (`[[notify]] type = "webhook"`): after a run, one JSON document per
//! target whose outcome a `[[notify]]` asks for, POSTed to its URL.
//!
//! A notification reports; it never steers. So [`Notifier::run_finished`] only builds the bodies
//! and queues them: sending happens in spawned tasks, with retries, and neither a slow nor a dead
//! receiver can delay, fail or change a run. Everything is bounded: at most [`Limits::queue`]
//! notifications wait or are in flight (more are dropped, with a warning), at most
//! [`Limits::concurrency`] requests are open at once, and each notification is given up after
//! [`Limits::retry`]'s attempts or time budget (by default 5 attempts within a minute, 1s, 2s,
//! 4s, 8s apart, with jitter). A connect error, a timeout, a 408, a 429 or a 5xx is tried again,
//! never sooner than the receiver's `Retry-After` (when that is beyond the budget, the
//! notification is given up); any other answer outside 2xx (a 400, a 404, a redirect) would be
//! refused again and is not retried. [`Notifier::flush`] waits, within a limit, for what is
//! still being sent: `roster run --once` before it exits, the daemon when it stops.
//!
//! # The body
//!
//! ```json
//! {
//!   "run_id": "5d3c9f0e8a6b4f1e9d2c7b6a5f4e3d2c",
//!   "target": "cms",
//!   "outcome": "failed",
//!   "dry_run": false,
//!   "time": "2026-05-04T12:00:03Z",
//!   "summary": {"add": 2, "change": 0, "remove": 1, "applied": 2, "failed": 1, "skipped": 0},
//!   "refusals": [],
//!   "failures": [{
//!     "target": "cms",
//!     "group": "Editors",
//!     "call": "DELETE /api/security/groups/3f2a…/users/9b1c…",
//!     "message": "cms: DELETE /api/security/groups/3f2a…/users/9b1c… (group \"Editors\"): 403: Forbidden"
//!   }],
//!   "failures_omitted": 0,
//!   "text": "roster: cms: failed: 1 of 3 changes failed, 2 applied; first: cms: DELETE …: 403: Forbidden"
//! }
//! ```
//!
//! - `run_id`: the run's id, as its log lines carry it; `null` when the run could not start.
//! - `target`: the target's name; `null` for a run that could not start (a source down), which
//!   is one notification with outcome `failed`.
//! - `outcome`: `refused` (a safety rule refused the plan; nothing was written), `failed` (the
//!   target could not be read, the desired state does not fit it, the target would refuse a
//!   planned change, or a change failed or was not sent) or `applied` (changes were applied and
//!   none failed; a run with nothing to change sends nothing). A failure outranks a refusal: a
//!   refused plan that also has errors is `failed`, with its `refusals` listed all the same, and
//!   is sent to a `[[notify]]` that asks for either.
//! - `dry_run`: the run only planned (`roster run --dry-run`): `refused` and `failed` are still
//!   sent, `applied` never is.
//! - `summary`: the plan's counts (`add`, `change`, `remove`, as `roster plan` prints them), and
//!   what became of its changes in an apply (`applied`, `failed`, `skipped`; 0 otherwise).
//! - `refusals`: each safety rule that refused the plan: `kind` (`too_many_deletes`,
//!   `empty_source`, `group_shrink`, `stale_plan`) and `reason`, the sentence `roster plan` prints.
//! - `failures`: what failed: `target`, `group` (or `null`), `call` (`METHOD /path`, or `null`
//!   when no HTTP call failed: a change never sent, a problem of the desired state) and
//!   `message`, the full message as the log has it, with the server's own words. Changes that one
//!   call carried fail with one message and are listed once. At most 20 are listed;
//!   `failures_omitted` counts the rest.
//! - `text`: the same in one line, `roster: <target>: <outcome>: …`, so that a Slack (or
//!   Mattermost, Rocket.Chat, Teams workflow) incoming webhook shows it without glue.
//!
//! # The signature
//!
//! With `secret_file`, each request carries `X-Roster-Signature: sha256=<hex>`: the lower-case
//! hex HMAC-SHA256 of the exact body bytes, keyed with the file's contents (trailing line breaks
//! dropped, as for every secret file). A receiver recomputes it over the raw body before parsing
//! it, and compares in constant time.
//!
//! # Secrets
//!
//! A webhook URL is often its own credential (Slack's carries the token in its path), so logs
//! name a receiver by scheme and host only ([`NotifyConfig::host`]), and the transport's error
//! messages are stripped of the URL. Neither the URL nor the key is in any `Debug`.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, warn};

use crate::config::notify::{DEFAULT_NOTIFY_TIMEOUT, NotifyConfig, NotifyOutcome};
use crate::exec::Outcome;
use crate::reconcile::{Mode, TargetOutcome, TargetReport};
use crate::retry::RetryPolicy;
use crate::run::{RunError, RunReport};
use crate::target::http;
use crate::target::{CallErrorKind, ObserveError};

/// The header that carries the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Roster-Signature";

/// At most this many failures are listed in one body; `failures_omitted` counts the rest, so
/// that a run where thousands of changes failed still sends a small message.
pub const MAX_FAILURES: usize = 20;

/// The longest `text`, in characters: a chat line, not a report.
const MAX_TEXT: usize = 600;

/// How much sending may take: queue, concurrency, retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Notifications waiting or being sent, at most; one more is dropped with a warning.
    pub queue: usize,
    /// Requests open at once, across every `[[notify]]`.
    pub concurrency: usize,
    /// When a failed delivery is tried again, and for how long.
    pub retry: RetryPolicy,
}

impl Default for Limits {
    /// 64 queued, 4 at once, 5 attempts (1s, 2s, 4s, 8s apart, jittered) within a minute.
    fn default() -> Self {
        Self {
            queue: 64,
            concurrency: 4,
            retry: RetryPolicy {
                max_retries: 4,
                min_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(16),
                budget: Duration::from_secs(60),
            },
        }
    }
}

/// Sends the notifications of finished runs; see the module documentation. Cloning is cheap and
/// clones share the queue.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    hooks: Vec<NotifyConfig>,
    /// `None` when the client could not be built (logged once, at start); nothing is sent then.
    client: Option<reqwest::Client>,
    limits: Limits,
    /// Notifications queued or in flight.
    pending: AtomicUsize,
    /// Notifications dropped because the queue was full.
    dropped: AtomicU64,
    /// Woken whenever a notification is done with, for `flush`.
    idle: Notify,
    /// The concurrency bound: one permit per open request.
    permits: Semaphore,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = self.inner.hooks.iter().map(|h| h.host.as_str()).collect();
        f.debug_struct("Notifier")
            .field("hooks", &hosts)
            .field("limits", &self.inner.limits)
            .field("pending", &self.pending())
            .finish()
    }
}

impl Notifier {
    /// A notifier for these `[[notify]]` tables, with the default [`Limits`]. With none, every
    /// call is a no-op.
    pub fn new(config: &[NotifyConfig]) -> Notifier {
        Self::with_limits(config, Limits::default())
    }

    /// A notifier with other limits (tests use short retry delays and small queues).
    pub fn with_limits(config: &[NotifyConfig], limits: Limits) -> Notifier {
        // roster's client: verified TLS, its user agent, no redirects (a receiver that moved is
        // an error to see, not to follow with the body). Each request sets its own timeout.
        let client = if config.is_empty() {
            None
        } else {
            match http::client(DEFAULT_NOTIFY_TIMEOUT, None) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(error = %e, "cannot build the HTTP client of [[notify]]: no notification will be sent");
                    None
                }
            }
        };
        Notifier {
            inner: Arc::new(Inner {
                hooks: config.to_vec(),
                client,
                limits,
                pending: AtomicUsize::new(0),
                dropped: AtomicU64::new(0),
                idle: Notify::new(),
                permits: Semaphore::new(limits.concurrency.max(1)),
            }),
        }
    }

    /// Queues the notifications of one finished run (each `[[notify]]` × each target whose
    /// outcome it asks for) and returns at once: sending happens in spawned tasks, with retries,
    /// and never blocks or fails the run. Called outside a tokio runtime, it sends nothing (and
    /// says so).
    pub fn run_finished(&self, result: Result<&RunReport, &RunError>, mode: Mode) {
        if self.inner.hooks.is_empty() || self.inner.client.is_none() {
            return;
        }
        for payload in payloads(result, mode) {
            let body: Arc<[u8]> = match serde_json::to_vec(&payload) {
                Ok(b) => b.into(),
                Err(e) => {
                    warn!(error = %e, "cannot write a notification's body; it is not sent");
                    continue;
                }
            };
            for (hook, config) in self.inner.hooks.iter().enumerate() {
                if payload.wanted_by(&config.on) {
                    self.enqueue(hook, Arc::clone(&body), &payload);
                }
            }
        }
    }

    /// Waits up to `timeout` for the notifications queued or in flight (`roster run --once`
    /// before it exits, the daemon when it stops); those still unsent then are given up, with a
    /// warning.
    pub async fn flush(&self, timeout: Duration) {
        let inner = &self.inner;
        let all_sent = async {
            loop {
                // Registered before the count is read, so that a task finishing in between
                // still wakes this loop.
                let idle = inner.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if inner.pending.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(timeout, all_sent).await.is_err() {
            warn!(
                unsent = self.pending(),
                ?timeout,
                "notifications still being sent are given up"
            );
        }
    }

    /// Notifications queued or being sent now.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::SeqCst)
    }

    /// Notifications dropped since start because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::SeqCst)
    }

    fn enqueue(&self, hook: usize, body: Arc<[u8]>, payload: &Payload) {
        let inner = &self.inner;
        let Some(config) = inner.hooks.get(hook) else {
            return;
        };
        let label = Label {
            target: payload.target.clone(),
            outcome: payload.outcome,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!(notify = %config.host, target = label.target(), outcome = label.outcome.as_str(),
                  "no async runtime to send a notification with; it is not sent");
            return;
        };
        if inner.pending.fetch_add(1, Ordering::SeqCst) >= inner.limits.queue {
            inner.pending.fetch_sub(1, Ordering::SeqCst);
            inner.dropped.fetch_add(1, Ordering::SeqCst);
            warn!(
                notify = %config.host,
                target = label.target(),
                outcome = label.outcome.as_str(),
                queue = inner.limits.queue,
                "the notification queue is full; this notification is dropped"
            );
            return;
        }
        let inner = Arc::clone(inner);
        runtime.spawn(async move {
            // Counted down however the task ends, a panic included, so `flush` never waits
            // for a task that is gone.
            let _done = Done(Arc::clone(&inner));
            if let Some(config) = inner.hooks.get(hook) {
                inner.deliver(config, &body, &label).await;
            }
        });
    }
}

/// Marks one queued notification done when dropped.
struct Done(Arc<Inner>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
        self.0.idle.notify_waiters();
    }
}

/// What a notification is about, for log lines.
struct Label {
    target: Option<String>,
    outcome: NotifyOutcome,
}

impl Label {
    fn target(&self) -> &str {
        self.target.as_deref().unwrap_or("(run)")
    }
}

impl Inner {
    /// Sends one notification until it is accepted, refused for good, or out of attempts.
    async fn deliver(&self, hook: &NotifyConfig, body: &[u8], label: &Label) {
        let Some(client) = &self.client else {
            return;
        };
        let signature = hook
            .secret
            .as_ref()
            .map(|key| signature(key.expose().as_bytes(), body));
        let start = Instant::now();
        let mut delays = self.limits.retry.delays();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let result = {
                // Held for the request only, not across the wait before a retry, so that one
                // dead receiver does not hold up the others.
                let Ok(_permit) = self.permits.acquire().await else {
                    return;
                };
                attempt(client, hook, body, signature.as_deref()).await
            };
            let error = match result {
                Ok(()) => {
                    debug!(notify = %hook.host, target = label.target(),
                           outcome = label.outcome.as_str(), attempts, "notification sent");
                    return;
                }
                Err(e) => e,
            };
            let wait = if transient(&error) {
                self.limits
                    .retry
                    .next_wait(delays.next(), error.retry_after(), start.elapsed())
            } else {
                None
            };
            let Some(wait) = wait else {
                warn!(notify = %hook.host, target = label.target(),
                      outcome = label.outcome.as_str(), attempts, error = %error,
                      "could not send a notification; giving up on it");
                return;
            };
            debug!(notify = %hook.host, target = label.target(), attempts, error = %error,
                   ?wait, "sending a notification failed; trying again");
            tokio::time::sleep(wait).await;
        }
    }
}

/// One POST of the body. The error names no part of the URL beyond its host.
async fn attempt(
    client: &reqwest::Client,
    hook: &NotifyConfig,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), CallErrorKind> {
    let mut req = client
        .post(hook.url.expose())
        .timeout(hook.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header(SIGNATURE_HEADER, sig);
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(http::status_error(resp).await),
        Err(e) => Err(scrub(http::transport_error(&e.without_url()), hook)),
    }
}

/// Removes the URL from a transport error's message, should a cause deep in the chain repeat
/// it (`without_url` only clears reqwest's own).
fn scrub(kind: CallErrorKind, hook: &NotifyConfig) -> CallErrorKind {
    let url = hook.url.expose();
    let clean = |s: String| {
        if url.is_empty() {
            s
        } else {
            s.replace(url, &hook.host)
        }
    };
    match kind {
        CallErrorKind::Connect(s) => CallErrorKind::Connect(clean(s)),
        CallErrorKind::Decode(s) => CallErrorKind::Decode(clean(s)),
        other => other,
    }
}

/// Whether trying again may succeed: no answer in time, no connection, or an answer that says
/// "later" (408, 429, any 5xx). Other answers would come again.
fn transient(e: &CallErrorKind) -> bool {
    match e {
        CallErrorKind::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
        CallErrorKind::Timeout | CallErrorKind::Connect(_) => true,
        _ => false,
    }
}

/// The `X-Roster-Signature` value of `body`: `sha256=` and the lower-case hex HMAC-SHA256 of
/// the body under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", crate::model::hex(&mac.finalize().into_bytes()))
}

/// The JSON body of one notification; the module documentation describes each field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Payload {
    /// The run's id; `None` (`null`) when the run could not start.
    pub run_id: Option<String>,
    /// The target; `None` (`null`) for a run that could not start.
    pub target: Option<String>,
    /// How the target's run ended.
    pub outcome: NotifyOutcome,
    /// Whether the run only planned.
    pub dry_run: bool,
    /// When the run finished (RFC 3339, UTC, in seconds).
    pub time: String,
    /// The plan's counts and, in an apply, what became of its changes.
    pub summary: PayloadSummary,
    /// The safety rules that refused the plan.
    pub refusals: Vec<RefusalNote>,
    /// What failed, at most [`MAX_FAILURES`].
    pub failures: Vec<FailureNote>,
    /// Failures beyond [`MAX_FAILURES`], not listed.
    pub failures_omitted: usize,
    /// The whole in one line, for chat webhooks.
    pub text: String,
}

impl Payload {
    /// Whether a `[[notify]]` with this `on` wants it: its outcome is listed, or it lists
    /// `refused` and a safety rule refused the plan (which a failure may outrank).
    pub fn wanted_by(&self, on: &std::collections::BTreeSet<NotifyOutcome>) -> bool {
        on.contains(&self.outcome)
            || (on.contains(&NotifyOutcome::Refused) && !self.refusals.is_empty())
    }
}

/// The counts of [`Payload::summary`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PayloadSummary {
    /// Groups to create, members and children to add (the plan's count).
    pub add: usize,
    /// Groups to update.
    pub change: usize,
    /// Members and children to remove, groups to delete.
    pub remove: usize,
    /// Changes that took effect (applied, or already done), in an apply.
    pub applied: usize,
    /// Changes that failed, in an apply.
    pub failed: usize,
    /// Changes not sent (a change they need failed, or the run was stopped), in an apply.
    pub skipped: usize,
}

/// One refusal of [`Payload::refusals`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefusalNote {
    /// The rule: `too_many_deletes`, `empty_source`, `group_shrink`, `stale_plan`.
    pub kind: String,
    /// The sentence `roster plan` prints: the figures and what to do.
    pub reason: String,
}

/// One failure of [`Payload::failures`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FailureNote {
    /// The target; `None` for a run that could not start.
    pub target: Option<String>,
    /// The group the failure is about, when it is about one.
    pub group: Option<String>,
    /// The HTTP call that failed, `METHOD /path` (no query string), when one did.
    pub call: Option<String>,
    /// The whole message, with the server's words.
    pub message: String,
}

/// The notifications a finished run makes, before any `on` is applied: one per target that
/// failed, was refused, or had changes applied; or one for a run that could not start.
pub fn payloads(result: Result<&RunReport, &RunError>, mode: Mode) -> Vec<Payload> {
    let time = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let dry_run = mode == Mode::Plan;
    match result {
        Err(e) => {
            let message = e.to_string();
            vec![Payload {
                run_id: None,
                target: None,
                outcome: NotifyOutcome::Failed,
                dry_run,
                time,
                summary: PayloadSummary::default(),
                refusals: Vec::new(),
                text: line(&format!(
                    "roster: failed: the run could not start: {message}"
                )),
                failures: vec![FailureNote {
                    target: None,
                    group: None,
                    call: None,
                    message,
                }],
                failures_omitted: 0,
            }]
        }
        Ok(report) => report
            .targets
            .iter()
            .filter_map(|t| of_target(t, dry_run))
            .map(|mut p| {
                p.run_id = Some(report.run_id.clone());
                p.time.clone_from(&time);
                p
            })
            .collect(),
    }
}

/// The notification of one target, if its outcome is one to report.
fn of_target(t: &TargetReport, dry_run: bool) -> Option<Payload> {
    let plan = t.plan.as_ref();
    let mut summary = PayloadSummary::default();
    if let Some(p) = plan {
        summary.add = p.summary.add;
        summary.change = p.summary.change;
        summary.remove = p.summary.remove;
    }
    if let TargetOutcome::Applied(r) = &t.outcome {
        for o in r.outcomes.values() {
            match o {
                Outcome::Applied | Outcome::AlreadyDone(_) => summary.applied += 1,
                Outcome::Failed(_) => summary.failed += 1,
                Outcome::Skipped(_) => summary.skipped += 1,
            }
        }
    }
    let refusals: Vec<RefusalNote> = match &t.outcome {
        TargetOutcome::Refused(r) => vec![RefusalNote {
            kind: r.kind().to_owned(),
            reason: r.to_string(),
        }],
        _ => Vec::new(),
    };
    let failures = failures_of(t);
    let name = &t.target;
    let (outcome, headline) = if t.failed() {
        let what = match &t.outcome {
            TargetOutcome::Invalid(problems) => format!(
                "the desired state does not fit this target ({}); first: {}",
                count(problems.len(), "problem"),
                problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            TargetOutcome::ObserveFailed(e) => format!("could not read the target: {e}"),
            TargetOutcome::Applied(r) => format!(
                "{} of {} failed, {} applied; first: {}",
                summary.failed + summary.skipped,
                count(r.outcomes.len(), "change"),
                summary.applied,
                failures.first().map_or("", |f| f.message.as_str())
            ),
            TargetOutcome::Planned | TargetOutcome::Refused(_) => format!(
                "the target would refuse {}; first: {}",
                count(plan.map_or(0, |p| p.errors.len()), "planned change"),
                failures.first().map_or("", |f| f.message.as_str())
            ),
        };
        let also = refusals
            .first()
            .map(|r| format!("; also refused: {}", r.reason))
            .unwrap_or_default();
        (NotifyOutcome::Failed, format!("{what}{also}"))
    } else if let Some(r) = refusals.first() {
        (NotifyOutcome::Refused, r.reason.clone())
    } else if matches!(&t.outcome, TargetOutcome::Applied(r) if !r.outcomes.is_empty()) {
        (
            NotifyOutcome::Applied,
            format!(
                "{} ({} to add, {} to change, {} to remove)",
                count(summary.applied, "change"),
                summary.add,
                summary.change,
                summary.remove
            ),
        )
    } else {
        return None;
    };
    let mode = if dry_run { " (dry run)" } else { "" };
    let omitted = failures.len().saturating_sub(MAX_FAILURES);
    let mut failures = failures;
    failures.truncate(MAX_FAILURES);
    Some(Payload {
        run_id: None,
        target: Some(name.clone()),
        outcome,
        dry_run,
        time: String::new(),
        summary,
        refusals,
        failures,
        failures_omitted: omitted,
        text: line(&format!(
            "roster: {name}: {}{mode}: {headline}",
            outcome.as_str()
        )),
    })
}

/// Everything that failed for one target, each failed call once.
fn failures_of(t: &TargetReport) -> Vec<FailureNote> {
    let target = Some(t.target.clone());
    let note = |group: Option<String>, call: Option<String>, message: String| FailureNote {
        target: target.clone(),
        group,
        call,
        message,
    };
    let mut out = Vec::new();
    match &t.outcome {
        TargetOutcome::Invalid(problems) => {
            out.extend(problems.iter().map(|d| note(None, None, d.to_string())));
        }
        TargetOutcome::ObserveFailed(ObserveError::Call(e)) => out.push(note(
            e.group.as_ref().map(|g| g.as_str().to_owned()),
            Some(format!("{} {}", e.method, e.path)),
            e.to_string(),
        )),
        TargetOutcome::ObserveFailed(e) => out.push(note(None, None, e.to_string())),
        TargetOutcome::Applied(r) => {
            let changes = t.plan.as_ref().map_or(&[][..], |p| p.changes.as_slice());
            let mut seen = HashSet::new();
            for (i, o) in &r.outcomes {
                let group = changes.get(*i).map(|c| c.group().as_str().to_owned());
                let n = match o {
                    Outcome::Failed(message) => {
                        note(group, call_of(message, &t.target), message.clone())
                    }
                    Outcome::Skipped(why) => note(group, None, format!("not sent: {why}")),
                    Outcome::Applied | Outcome::AlreadyDone(_) => continue,
                };
                if seen.insert(n.clone()) {
                    out.push(n);
                }
            }
        }
        // Changes the target's rules refuse, found while planning (an apply reports them as
        // failed changes instead, above).
        TargetOutcome::Planned | TargetOutcome::Refused(_) => {
            for e in t.plan.iter().flat_map(|p| &p.errors) {
                let at = e.at.as_ref().map(|a| format!(" ({a})")).unwrap_or_default();
                out.push(note(
                    Some(e.group.as_str().to_owned()),
                    None,
                    format!("group \"{}\"{at}: {}", e.group, e.message),
                ));
            }
        }
    }
    out
}

/// The HTTP methods a call can have.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The call (`METHOD /path`) a failed change's message names. Messages of failed calls read
/// `<target>: <METHOD> <path>[ (group "…")]: <what went wrong>` (the `Display` of
/// [`crate::target::CallError`]); any other message (a change refused at plan time) names none.
fn call_of(message: &str, target: &str) -> Option<String> {
    let rest = message.strip_prefix(target)?.strip_prefix(": ")?;
    let (method, rest) = rest.split_once(' ')?;
    if !METHODS.contains(&method) {
        return None;
    }
    // Paths are built from percent-encoded segments, so a space or `: ` ends one.
    let path = rest.split(' ').next()?;
    let path = path.strip_suffix(':').unwrap_or(path);
    path.starts_with('/').then(|| format!("{method} {path}"))
}

/// `1 change`, `2 changes`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `text` as one line of at most [`MAX_TEXT`] characters: line breaks and runs of spaces
/// become one space.
fn line(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= MAX_TEXT {
        return one;
    }
    let mut cut: String = one.chars().take(MAX_TEXT - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests;

//! The seam between roster and a target system: the [`Target`] trait every connector implements,
//! the [`Call`] it compiles a plan into, and the errors of observing and sending.
//!
//! A connector is the only code that knows its API's paths and JSON. It reads ([`Target::observe`]),
//! turns a plan into the fewest calls its API allows ([`Target::compile`], pure), and sends one call
//! once ([`Target::send`]). Ordering, concurrency and retries belong to [`crate::exec`].

pub mod contensis;
pub mod crafter;
pub mod http;
pub mod oauth;
pub mod progress;
pub mod slots;
pub mod uipath;
pub mod vinyldns;
pub mod watch;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::config::Diagnostic;
use futures::{StreamExt, TryStreamExt};
use rustc_hash::FxHashMap;

use crate::model::{Capabilities, Desired, GroupName, Observed, TargetUserId, UserKey};
use crate::plan::change::Plan;
use crate::plan::{Scope, folded};

/// The phase of an apply a call belongs to; the executor finishes one stage before the next, so
/// that a group exists before members are added to it and is emptied before it is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Create groups.
    CreateGroup,
    /// Update group fields.
    UpdateGroup,
    /// Add or remove members.
    Members,
    /// Add or remove child groups.
    Children,
    /// Delete groups.
    DeleteGroup,
}

/// Whether the executor may send a call again after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrySafety {
    /// Sending it twice has the effect of sending it once (GET, PUT, DELETE).
    Idempotent,
    /// Not idempotent (a POST that creates): after an ambiguous failure, ask
    /// [`Target::recheck`] whether it landed before sending it again.
    AfterRecheck,
}

/// One API call, described in full before anything is sent.
pub trait Call: fmt::Debug + Send + Sync {
    /// The group the call writes to.
    fn group(&self) -> &GroupName;
    /// The stage it runs in.
    fn stage(&self) -> Stage;
    /// Whether and how it may be retried.
    fn retry(&self) -> RetrySafety;
    /// Indices into the plan's `changes` that this call carries out.
    fn covers(&self) -> &[usize];
    /// Groups this call needs to exist, so that it is skipped when creating one of them failed:
    /// by default the group it writes to.
    fn needs(&self) -> Vec<&GroupName> {
        vec![self.group()]
    }
    /// How many requests the call sends one after another when all goes well: by default one.
    /// The executor starts the last calls of a stage together when they chain requests, and
    /// holds the requests to its concurrency with [`slots`]; a call that sends more than one
    /// must send them all through the [`http::endpoint::Endpoint`], which takes a slot for each.
    fn requests(&self) -> usize {
        1
    }
}

/// How a call that succeeded came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// The API did what was asked.
    Done,
    /// The API said the work was already done (an existing group adopted after a 409, a member
    /// already absent): the desired effect holds.
    AlreadyDone(String),
}

/// What went wrong with one HTTP call, without the context of which call it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The server answered with an error status.
    #[error("{status}: {message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The server's message (from its error body), or the status reason.
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The connection could not be made, or broke before an answer came.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The answer could not be read as the API documents it.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// Authentication with the target failed.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// roster did not send the request: its intent could not be journalled, or the run may
    /// write no more.
    #[error("not sent: {0}")]
    NotSent(String),
}

/// A failed call, with where it went: target, group, method and path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{target}: {method} {path}{}: {kind}", group.as_ref().map(|g| format!(" (group \"{g}\")")).unwrap_or_default())]
pub struct CallError {
    /// The target's name from the config.
    pub target: String,
    /// The group the call was about, if any.
    pub group: Option<GroupName>,
    /// The HTTP method.
    pub method: String,
    /// The request path, without query string or credentials.
    pub path: String,
    /// What went wrong.
    pub kind: CallErrorKind,
}

impl CallErrorKind {
    /// Whether sending the same call again might succeed: throttling, server errors, timeouts and
    /// broken connections. A 4xx other than 408/429 will fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            CallErrorKind::Status { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            CallErrorKind::Timeout | CallErrorKind::Connect(_) => true,
            CallErrorKind::Decode(_) | CallErrorKind::Auth(_) | CallErrorKind::NotSent(_) => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallErrorKind::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl CallError {
    /// Whether sending the same call again might succeed (see [`CallErrorKind::is_transient`]).
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// Whether the call may have reached the server and taken effect although no success came
    /// back (so a non-idempotent call must be rechecked before it is sent again).
    pub fn is_ambiguous(&self) -> bool {
        match &self.kind {
            CallErrorKind::Status { status, .. } => *status >= 500 || *status == 408,
            CallErrorKind::Timeout | CallErrorKind::Connect(_) | CallErrorKind::Decode(_) => true,
            CallErrorKind::Auth(_) | CallErrorKind::NotSent(_) => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.kind.retry_after()
    }
}

impl crate::retry::Transient for CallError {
    fn is_transient(&self) -> bool {
        CallError::is_transient(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        CallError::retry_after(self)
    }
}

/// Observing a target failed; nothing will be written to it this run.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A read call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The connector could not be set up (an unreadable CA file, say); nothing was sent.
    #[error("{target}: cannot set up the connector: {message}")]
    Setup {
        /// The target's name.
        target: String,
        /// Why.
        message: String,
    },
    /// The reads succeeded but do not add up (a page short of `totalCount`, a duplicate group).
    #[error("{target}: incomplete read: {message}")]
    Incomplete {
        /// The target's name.
        target: String,
        /// What did not add up.
        message: String,
    },
}

/// The errors of a connector, which all carry its target's name: implementing `target_name`
/// gives a connector `err` and `incomplete`.
pub trait Named {
    /// The target's name from the config.
    fn target_name(&self) -> &str;

    /// A failed call of this target: method, path, the group it was about, what went wrong.
    fn err(
        &self,
        method: &reqwest::Method,
        path: &str,
        group: Option<&GroupName>,
        kind: CallErrorKind,
    ) -> CallError {
        CallError {
            target: self.target_name().to_owned(),
            group: group.cloned(),
            method: method.to_string(),
            path: path.to_owned(),
            kind,
        }
    }

    /// Reads of this target that succeeded but do not add up.
    fn incomplete(&self, message: String) -> ObserveError {
        ObserveError::Incomplete {
            target: self.target_name().to_owned(),
            message,
        }
    }
}

/// Runs `work` on the blocking pool: a read's calls in flight share its task, and work of tens
/// of milliseconds there (parsing a 7.5 MB page, indexing 20,000 groups) would hold all their
/// answers back. A panic in `work` is resumed in the caller.
pub async fn off_task<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels blocking work, and then nothing awaits this.
            Err(e) => panic!("blocking work cancelled: {e}"),
        },
    }
}

/// A problem with desired group `group` that a target cannot take, at the place the group is
/// defined (for [`Target::prepare`]).
pub fn problem(desired: &Desired, group: &GroupName, message: String) -> Diagnostic {
    match desired.origins.get(group) {
        Some(origin) => Diagnostic::at_origin(origin, message),
        None => Diagnostic::error("<desired state>", 0, 0, message),
    }
}

/// A planned change that the target's server would refuse, as [`Target::vet`] finds it: the
/// group, the change (by index in the plan; `None` refuses every change of the group) and the
/// server rule that refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The group.
    pub group: GroupName,
    /// The refused change's index in the plan, or `None` for all of the group's changes.
    pub change: Option<usize>,
    /// Which rule refuses it, in the reader's terms (what the server checks, what to do).
    pub message: String,
}

impl Rejection {
    /// Refuses change `index` of `plan`.
    pub fn of_change(plan: &Plan, index: usize, message: String) -> Option<Self> {
        plan.changes.get(index).map(|c| Self {
            group: c.group().clone(),
            change: Some(index),
            message,
        })
    }

    /// Refuses every change of `group`.
    pub fn of_group(group: &GroupName, message: String) -> Self {
        Self {
            group: group.clone(),
            change: None,
            message,
        }
    }
}

/// The target ids of the observed users, by key as the target compares keys (folded where it
/// ignores case): built once for a compile, and looked up for every member without a copy of
/// the key, so that a member spelled in another case still finds its id.
pub struct UserIds<'a> {
    ids: FxHashMap<Cow<'a, str>, &'a TargetUserId>,
    case_insensitive: bool,
}

impl<'a> UserIds<'a> {
    /// The ids of `observed`'s users, on a target that ignores the case of keys or not.
    pub fn of(observed: &'a Observed, case_insensitive: bool) -> Self {
        Self {
            ids: observed
                .users
                .iter()
                .map(|(k, v)| (folded(k.as_str(), case_insensitive), v))
                .collect(),
            case_insensitive,
        }
    }

    /// The id of the user `key`.
    pub fn get(&self, key: &str) -> Option<&'a TargetUserId> {
        self.ids.get(&folded(key, self.case_insensitive)).copied()
    }
}

/// Looks up `keys` with `resolve` (one call each, up to `concurrency` at once) and records each
/// in `observed`: its target id in `users`, or in `unknown_users` when the target has no such
/// user. The first failed lookup fails the whole observe.
pub async fn resolve_users<F, Fut>(
    observed: &mut Observed,
    keys: impl IntoIterator<Item = UserKey>,
    concurrency: NonZeroUsize,
    resolve: F,
) -> Result<(), CallError>
where
    F: FnMut(UserKey) -> Fut,
    Fut: Future<Output = Result<(UserKey, Option<TargetUserId>), CallError>>,
{
    let found: Vec<(UserKey, Option<TargetUserId>)> = futures::stream::iter(keys)
        .map(resolve)
        .buffer_unordered(concurrency.get())
        .try_collect()
        .await?;
    for (key, id) in found {
        match id {
            Some(id) => {
                observed.users.insert(key, id);
            }
            None => {
                observed.unknown_users.insert(key);
            }
        }
    }
    Ok(())
}

/// A connector: the only code that knows one API's paths and JSON. Its name is
/// [`Named::target_name`].
pub trait Target: Named + Send + Sync {
    /// One API call of this target.
    type Call: Call + 'static;

    /// What the API can express.
    fn capabilities(&self) -> Capabilities;

    /// Checks the desired groups in `scope` against what this API can hold, and adapts them to it
    /// (VinylDNS admins are members too, say). Pure, and run before anything is read: a desired
    /// state the target cannot take is a validation error for that target, pointing at where
    /// each group is defined, never a write that fails halfway through an apply.
    fn prepare<'d>(
        &self,
        desired: &'d Desired,
        scope: &Scope,
    ) -> Result<Cow<'d, Desired>, Vec<Diagnostic>> {
        let _ = scope;
        Ok(Cow::Borrowed(desired))
    }

    /// Reads every group in scope, every page, with direct members and children, and resolves the
    /// `users` keys to target ids; or fails. It never returns part of the state.
    fn observe(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> impl Future<Output = Result<Observed, ObserveError>> + Send;

    /// Checks `plan` against the rules the target's server applies to writes, before anything is
    /// written: name and username rules, e-mail rules and allowed domains, field lengths, required
    /// fields, the account's right to change each group. Every change the server would refuse is
    /// returned as a [`Rejection`], so a plan without rejections will not be refused for those
    /// reasons. It may read (a list of allowed domains, the account's own rights) but never writes;
    /// a failed read fails the target as a failed observe does. By default nothing is refused.
    fn vet(
        &self,
        desired: &Desired,
        observed: &Observed,
        plan: &Plan,
    ) -> impl Future<Output = Result<Vec<Rejection>, ObserveError>> + Send {
        let _ = (desired, observed, plan);
        std::future::ready(Ok(Vec::new()))
    }

    /// The fewest calls this API allows for `plan`. Pure: no I/O.
    fn compile(&self, plan: &Plan, observed: &Observed) -> Vec<Self::Call>;

    /// Sends one call, once. Retrying is the executor's decision.
    fn send(&self, call: &Self::Call) -> impl Future<Output = Result<Sent, CallError>> + Send;

    /// After an ambiguous failure of a call that is not idempotent: whether it landed after all
    /// (`Some`), or did not (`None`, so it may be sent again).
    fn recheck(
        &self,
        call: &Self::Call,
    ) -> impl Future<Output = Result<Option<Sent>, CallError>> + Send;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_users_id_is_found_however_its_key_is_spelled_where_the_target_ignores_case() {
        let mut observed = Observed::default();
        observed.users.insert(UserKey::from("Alice"), "id-a".into());
        observed.users.insert(UserKey::from("bob"), "id-b".into());
        let ids = UserIds::of(&observed, true);
        assert_eq!(ids.get("ALICE").map(String::as_str), Some("id-a"));
        assert_eq!(ids.get("alice").map(String::as_str), Some("id-a"));
        assert_eq!(ids.get("Bob").map(String::as_str), Some("id-b"));
        assert_eq!(ids.get("carol"), None);
        let exact = UserIds::of(&observed, false);
        assert_eq!(exact.get("Alice").map(String::as_str), Some("id-a"));
        assert_eq!(exact.get("alice"), None);
        assert_eq!(exact.get("Bob"), None);
    }
}

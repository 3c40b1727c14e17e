//! Unit tests of the [`Executor`] against a scripted in-memory [`Target`].
//!
//! The fake target answers each call from a script kept per call id (successive sends take
//! successive entries; the last entry repeats), logs every send and recheck in order, and counts
//! the sends and requests in flight. Retry delays are kept to a few milliseconds and only the
//! `Retry-After` test really waits; the test of chained requests runs in paused time.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::model::{Capabilities, MembershipWrites, Observed, UserKey};
use crate::plan::Scope;
use crate::plan::change::Plan;
use crate::target::{CallErrorKind, Named, ObserveError};

/// One call of the fake target.
#[derive(Debug)]
struct FakeCall {
    id: String,
    group: GroupName,
    stage: Stage,
    retry: RetrySafety,
    covers: Vec<usize>,
    needs: Vec<GroupName>,
    /// Requests each send makes one after another, each taking a slot and the call's delay.
    requests: usize,
}

impl FakeCall {
    /// An idempotent call writing to `group` that covers change `index` and needs its own group.
    fn new(id: &str, group: &str, stage: Stage, index: usize) -> Self {
        Self {
            id: id.to_owned(),
            group: group.into(),
            stage,
            retry: RetrySafety::Idempotent,
            covers: vec![index],
            needs: if stage == Stage::CreateGroup {
                Vec::new()
            } else {
                vec![group.into()]
            },
            requests: 1,
        }
    }

    /// Each send makes `n` requests one after another.
    fn chaining(mut self, n: usize) -> Self {
        self.requests = n;
        self
    }

    fn after_recheck(mut self) -> Self {
        self.retry = RetrySafety::AfterRecheck;
        self
    }

    fn covering(mut self, covers: &[usize]) -> Self {
        self.covers = covers.to_vec();
        self
    }
}

impl Call for FakeCall {
    fn group(&self) -> &GroupName {
        &self.group
    }
    fn stage(&self) -> Stage {
        self.stage
    }
    fn retry(&self) -> RetrySafety {
        self.retry
    }
    fn covers(&self) -> &[usize] {
        &self.covers
    }
    fn needs(&self) -> Vec<&GroupName> {
        self.needs.iter().collect()
    }
    fn requests(&self) -> usize {
        self.requests
    }
}

/// What the fake target saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    /// A send began.
    Send,
    /// A send finished (successfully or not).
    SendEnd,
    /// A recheck that answered (`Ok(_)`).
    Recheck,
    /// A recheck that failed.
    RecheckFailed,
}

/// Scripted answers by call id, in the order they are given.
type Script<T> = Mutex<HashMap<String, VecDeque<Result<T, CallErrorKind>>>>;

/// A scripted in-memory target.
#[derive(Default)]
struct FakeTarget {
    sends: Script<Sent>,
    rechecks: Script<Option<Sent>>,
    delays: HashMap<String, Duration>,
    log: Mutex<Vec<(String, Event)>>,
    /// Requests out at once, each holding a slot as the endpoint's do.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Sends under way at once.
    calls: AtomicUsize,
    max_calls: AtomicUsize,
    /// The longest wait of a call's request after the one before it came back.
    max_gap: Mutex<Duration>,
    /// The calls whose write request (each send's last) left.
    writes: Mutex<Vec<String>>,
}

impl FakeTarget {
    /// Scripts the answers to successive sends of call `id`; the last answer repeats.
    fn on_send(self, id: &str, script: Vec<Result<Sent, CallErrorKind>>) -> Self {
        self.sends
            .lock()
            .unwrap()
            .insert(id.to_owned(), script.into());
        self
    }

    /// Scripts the answers to successive rechecks of call `id`; the last answer repeats.
    fn on_recheck(self, id: &str, script: Vec<Result<Option<Sent>, CallErrorKind>>) -> Self {
        self.rechecks
            .lock()
            .unwrap()
            .insert(id.to_owned(), script.into());
        self
    }

    /// Makes every send of call `id` take `d`.
    fn with_delay(mut self, id: &str, d: Duration) -> Self {
        self.delays.insert(id.to_owned(), d);
        self
    }

    fn log(&self) -> Vec<(String, Event)> {
        self.log.lock().unwrap().clone()
    }

    /// The events of call `id`, in order.
    fn events(&self, id: &str) -> Vec<Event> {
        self.log()
            .into_iter()
            .filter(|(c, _)| c == id)
            .map(|(_, e)| e)
            .collect()
    }

    fn sends_of(&self, id: &str) -> usize {
        self.events(id)
            .iter()
            .filter(|e| **e == Event::Send)
            .count()
    }

    fn push(&self, id: &str, e: Event) {
        self.log.lock().unwrap().push((id.to_owned(), e));
    }

    /// Sends the requests of one send of `call` one after another, as a connector does through
    /// the endpoint: each holds a slot while it is out, and the last, the write, is told to the
    /// attempt's watch before it waits for its slot and leaves only past the attempt's gate.
    async fn requests(&self, call: &FakeCall) -> Result<(), CallError> {
        let mut came_back: Option<tokio::time::Instant> = None;
        for r in 1..=call.requests {
            let write = r == call.requests;
            let watch = crate::target::watch::current().filter(|_| write);
            if let Some(w) = &watch {
                let path = format!("/calls/{}", call.id);
                w.before(crate::target::watch::WriteRequest {
                    method: "POST",
                    path: &path,
                })
                .await
                .map_err(|why| Self::error(call, CallErrorKind::NotSent(why)))?;
            }
            let slot = crate::target::slots::take().await;
            if let Some(t) = came_back {
                let mut gap = self.max_gap.lock().unwrap();
                *gap = (*gap).max(t.elapsed());
            }
            if write {
                if let Err(why) = crate::target::slots::open().await {
                    if let Some(w) = &watch {
                        w.after(crate::target::watch::WriteAnswer::NotSent(why.clone()));
                    }
                    return Err(Self::error(call, CallErrorKind::NotSent(why)));
                }
                self.writes.lock().unwrap().push(call.id.clone());
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            if let Some(d) = self.delays.get(&call.id) {
                tokio::time::sleep(*d).await;
            } else {
                tokio::task::yield_now().await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(slot);
            came_back = Some(tokio::time::Instant::now());
        }
        Ok(())
    }

    /// The calls whose write request left, in the order they left.
    fn writes(&self) -> Vec<String> {
        self.writes.lock().unwrap().clone()
    }

    /// The error the fake reports for `call`.
    fn error(call: &FakeCall, kind: CallErrorKind) -> CallError {
        CallError {
            target: "fake".to_owned(),
            group: Some(call.group.clone()),
            method: "POST".to_owned(),
            path: format!("/calls/{}", call.id),
            kind,
        }
    }
}

/// Takes the next scripted answer: the front, or the last one for good.
fn next<T: Clone>(script: &mut HashMap<String, VecDeque<T>>, id: &str) -> Option<T> {
    let q = script.get_mut(id)?;
    if q.len() > 1 {
        q.pop_front()
    } else {
        q.front().cloned()
    }
}

impl Named for FakeTarget {
    fn target_name(&self) -> &str {
        "fake"
    }
}

impl Target for FakeTarget {
    type Call = FakeCall;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            nested_groups: true,
            membership: MembershipWrites::PerMember,
            case_insensitive_names: false,
            renames: true,
        }
    }

    async fn observe(
        &self,
        _scope: &Scope,
        _users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        Ok(Observed::default())
    }

    fn compile(&self, _plan: &Plan, _observed: &Observed) -> Vec<FakeCall> {
        Vec::new()
    }

    async fn send(&self, call: &FakeCall) -> Result<Sent, CallError> {
        self.push(&call.id, Event::Send);
        let calls = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_calls.fetch_max(calls, Ordering::SeqCst);
        let sent = self.requests(call).await;
        self.calls.fetch_sub(1, Ordering::SeqCst);
        sent?;
        let answer = next(&mut self.sends.lock().unwrap(), &call.id);
        self.push(&call.id, Event::SendEnd);
        match answer {
            None => Ok(Sent::Done),
            Some(Ok(sent)) => Ok(sent),
            Some(Err(kind)) => Err(Self::error(call, kind)),
        }
    }

    async fn recheck(&self, call: &FakeCall) -> Result<Option<Sent>, CallError> {
        let answer = next(&mut self.rechecks.lock().unwrap(), &call.id);
        match answer {
            None => {
                self.push(&call.id, Event::Recheck);
                Ok(None)
            }
            Some(Ok(found)) => {
                self.push(&call.id, Event::Recheck);
                Ok(found)
            }
            Some(Err(kind)) => {
                self.push(&call.id, Event::RecheckFailed);
                Err(Self::error(call, kind))
            }
        }
    }
}

fn status(status: u16) -> CallErrorKind {
    CallErrorKind::Status {
        status,
        message: format!("status {status}"),
        retry_after: None,
    }
}

fn connect() -> CallErrorKind {
    CallErrorKind::Connect("connection reset".to_owned())
}

/// A policy with millisecond delays and a budget no test reaches.
fn quick(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        budget: Duration::from_secs(60),
    }
}

fn executor(max_retries: u32, concurrency: usize) -> Executor {
    Executor::new(quick(max_retries), NonZeroUsize::new(concurrency).unwrap())
}

fn outcome(report: &ApplyReport, index: usize) -> &Outcome {
    report
        .outcomes
        .get(&index)
        .unwrap_or_else(|| panic!("no outcome for change {index}: {report:?}"))
}

/// Positions in `log` of the events `e` of calls whose id starts with `prefix`.
fn positions(log: &[(String, Event)], prefix: &str, e: &Event) -> Vec<usize> {
    log.iter()
        .enumerate()
        .filter(|(_, (id, ev))| id.starts_with(prefix) && ev == e)
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test]
async fn stages_run_in_order() {
    // Slow creates and fast members, handed over in reverse stage order: only stage ordering
    // can make every create finish before any member starts.
    let ms = Duration::from_millis;
    let target = FakeTarget::default()
        .with_delay("create-A", ms(30))
        .with_delay("create-B", ms(5))
        .with_delay("update-A", ms(20))
        .with_delay("member-A", ms(1))
        .with_delay("member-B", ms(15))
        .with_delay("child-A", ms(1));
    let calls = vec![
        FakeCall::new("delete-Z", "Z", Stage::DeleteGroup, 0),
        FakeCall::new("child-A", "A", Stage::Children, 1),
        FakeCall::new("member-A", "A", Stage::Members, 2),
        FakeCall::new("member-B", "B", Stage::Members, 3),
        FakeCall::new("update-A", "A", Stage::UpdateGroup, 4),
        FakeCall::new("create-A", "A", Stage::CreateGroup, 5),
        FakeCall::new("create-B", "B", Stage::CreateGroup, 6),
    ];
    let report = executor(0, 8).execute(&target, calls).await;

    assert_eq!(report.failures(), 0, "{report:?}");
    assert_eq!(report.attempts, 7);
    let log = target.log();
    let order = ["create-", "update-", "member-", "child-", "delete-"];
    for pair in order.windows(2) {
        let last_end = *positions(&log, pair[0], &Event::SendEnd)
            .iter()
            .max()
            .unwrap();
        let first_start = *positions(&log, pair[1], &Event::Send).iter().min().unwrap();
        assert!(
            last_end < first_start,
            "a {} call started before every {} call finished: {log:?}",
            pair[1],
            pair[0]
        );
    }
}

/// At most `concurrency` requests are out; as many calls again are under way, waiting for a
/// slot with their intents journalled.
#[tokio::test]
async fn at_most_concurrency_requests_are_in_flight_and_as_many_calls_wait_ahead() {
    let (target, calls) = slow_calls(50, 1, Duration::from_millis(10));
    let report = executor(0, 4).execute(&target, calls).await;

    assert_eq!(report.outcomes.len(), 50);
    assert!(report.outcomes.values().all(|o| *o == Outcome::Applied));
    assert_eq!(report.attempts, 50);
    assert_eq!(target.max_in_flight.load(Ordering::SeqCst), 4);
    assert_eq!(target.max_calls.load(Ordering::SeqCst), 8);
}

/// `n` calls (`member-0`, ...) of group "G" of `requests` requests each (a read and then a
/// write, when two), each request taking `latency`.
fn slow_calls(n: usize, requests: usize, latency: Duration) -> (FakeTarget, Vec<FakeCall>) {
    let mut target = FakeTarget::default();
    let mut calls = Vec::new();
    for i in 0..n {
        let id = format!("member-{i}");
        target = target.with_delay(&id, latency);
        calls.push(FakeCall::new(&id, "G", Stage::Members, i).chaining(requests));
    }
    (target, calls)
}

/// `n` calls of two requests each, a read and then a write, each request taking `latency`.
fn chained(n: usize, latency: Duration) -> (FakeTarget, Vec<FakeCall>) {
    slow_calls(n, 2, latency)
}

/// 100 calls of two requests each (a read, then a replace), 8 requests at once: 200 requests
/// fill 25 rounds of the latency, where running 8 calls at once takes 26 (the last 4 calls run
/// with half the slots idle), and no call's second request waits more than one round.
#[tokio::test(start_paused = true)]
async fn chained_requests_fill_every_slot_and_never_exceed_it() {
    let latency = Duration::from_millis(20);
    let (target, calls) = chained(100, latency);
    let start = tokio::time::Instant::now();
    let report = executor(0, 8).execute(&target, calls).await;
    let took = start.elapsed();

    assert_eq!(report.failures(), 0, "{report:?}");
    assert_eq!(target.max_in_flight.load(Ordering::SeqCst), 8);
    assert!(
        target.max_calls.load(Ordering::SeqCst) > 8,
        "only {} calls ran at once",
        target.max_calls.load(Ordering::SeqCst)
    );
    assert!(
        took >= latency * 25 && took < latency * 26,
        "200 requests, 8 at a time, took {took:?}: not 25 rounds of {latency:?}"
    );
    let gap = *target.max_gap.lock().unwrap();
    assert!(
        gap <= latency,
        "a call's second request waited {gap:?} after its first"
    );
}

#[tokio::test]
async fn a_transient_failure_is_retried() {
    let target = FakeTarget::default().on_send("c", vec![Err(status(503)), Ok(Sent::Done)]);
    let calls = vec![FakeCall::new("c", "G", Stage::Members, 0)];
    let report = executor(3, 4).execute(&target, calls).await;

    assert_eq!(*outcome(&report, 0), Outcome::Applied);
    assert_eq!(report.attempts, 2);
    assert_eq!(target.sends_of("c"), 2);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let target = FakeTarget::default().on_send("c", vec![Err(status(400)), Ok(Sent::Done)]);
    let calls = vec![FakeCall::new("c", "G", Stage::Members, 0)];
    let report = executor(3, 4).execute(&target, calls).await;

    assert!(
        matches!(outcome(&report, 0), Outcome::Failed(_)),
        "{report:?}"
    );
    assert_eq!(report.attempts, 1);
    assert_eq!(target.sends_of("c"), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let throttled = CallErrorKind::Status {
        status: 429,
        message: "slow down".to_owned(),
        retry_after: Some(Duration::from_secs(3)),
    };
    let target = FakeTarget::default().on_send("c", vec![Err(throttled), Ok(Sent::Done)]);
    let calls = vec![FakeCall::new("c", "G", Stage::Members, 0)];
    let started = tokio::time::Instant::now();
    let report = executor(3, 4).execute(&target, calls).await;

    assert_eq!(*outcome(&report, 0), Outcome::Applied);
    assert_eq!(report.attempts, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_wait_beyond_the_budget_is_not_made() {
    let throttled = CallErrorKind::Status {
        status: 429,
        message: "slow down".to_owned(),
        retry_after: Some(Duration::from_secs(10)),
    };
    let target = FakeTarget::default().on_send("c", vec![Err(throttled), Ok(Sent::Done)]);
    let calls = vec![FakeCall::new("c", "G", Stage::Members, 0)];
    let ex = Executor::new(
        RetryPolicy {
            budget: Duration::from_secs(5),
            ..quick(3)
        },
        NonZeroUsize::new(1).unwrap(),
    );
    let started = tokio::time::Instant::now();
    let report = ex.execute(&target, calls).await;

    assert!(
        matches!(outcome(&report, 0), Outcome::Failed(_)),
        "{report:?}"
    );
    assert_eq!(report.attempts, 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn retries_are_bounded() {
    let target = FakeTarget::default().on_send("c", vec![Err(status(503))]);
    let calls = vec![FakeCall::new("c", "G", Stage::Members, 0)];
    let report = executor(2, 4).execute(&target, calls).await;

    assert!(
        matches!(outcome(&report, 0), Outcome::Failed(_)),
        "{report:?}"
    );
    assert_eq!(report.attempts, 3);
    assert_eq!(target.sends_of("c"), 3);
}

#[tokio::test]
async fn an_idempotent_call_is_resent_without_recheck() {
    let target = FakeTarget::default().on_send("c", vec![Err(connect()), Ok(Sent::Done)]);
    let calls = vec![FakeCall::new("c", "G", Stage::Members, 0)];
    let report = executor(3, 4).execute(&target, calls).await;

    assert_eq!(*outcome(&report, 0), Outcome::Applied);
    assert_eq!(
        target.events("c"),
        [Event::Send, Event::SendEnd, Event::Send, Event::SendEnd]
    );
}

#[tokio::test]
async fn an_ambiguous_failure_that_landed_is_not_sent_again() {
    let target = FakeTarget::default()
        .on_send("create", vec![Err(connect()), Ok(Sent::Done)])
        .on_recheck(
            "create",
            vec![Ok(Some(Sent::AlreadyDone("found".to_owned())))],
        );
    let calls = vec![FakeCall::new("create", "G", Stage::CreateGroup, 0).after_recheck()];
    let report = executor(3, 4).execute(&target, calls).await;

    assert_eq!(
        *outcome(&report, 0),
        Outcome::AlreadyDone("found".to_owned())
    );
    assert_eq!(
        target.events("create"),
        [Event::Send, Event::SendEnd, Event::Recheck]
    );
    assert_eq!(target.sends_of("create"), 1);
    assert_eq!(report.attempts, 2, "the send and the recheck are attempts");
}

#[tokio::test]
async fn an_ambiguous_failure_that_did_not_land_is_rechecked_then_sent_again() {
    let target = FakeTarget::default()
        .on_send("create", vec![Err(connect()), Ok(Sent::Done)])
        .on_recheck("create", vec![Ok(None)]);
    let calls = vec![FakeCall::new("create", "G", Stage::CreateGroup, 0).after_recheck()];
    let report = executor(3, 4).execute(&target, calls).await;

    assert_eq!(*outcome(&report, 0), Outcome::Applied);
    assert_eq!(
        target.events("create"),
        [
            Event::Send,
            Event::SendEnd,
            Event::Recheck,
            Event::Send,
            Event::SendEnd
        ]
    );
}

#[tokio::test]
async fn a_throttled_after_recheck_call_is_resent_without_recheck() {
    let target = FakeTarget::default()
        .on_send("create", vec![Err(status(429)), Ok(Sent::Done)])
        .on_recheck(
            "create",
            vec![Ok(Some(Sent::AlreadyDone("found".to_owned())))],
        );
    let calls = vec![FakeCall::new("create", "G", Stage::CreateGroup, 0).after_recheck()];
    let report = executor(3, 4).execute(&target, calls).await;

    assert_eq!(*outcome(&report, 0), Outcome::Applied);
    assert_eq!(report.attempts, 2);
    assert_eq!(
        target.events("create"),
        [Event::Send, Event::SendEnd, Event::Send, Event::SendEnd]
    );
}

#[tokio::test]
async fn a_failed_recheck_never_leads_to_a_blind_resend() {
    // The send may have landed (connection reset); the recheck is throttled, then answers
    // "not there". The call must not be sent again before a recheck has answered.
    let target = FakeTarget::default()
        .on_send("create", vec![Err(connect()), Ok(Sent::Done)])
        .on_recheck("create", vec![Err(status(429)), Ok(None)]);
    let calls = vec![FakeCall::new("create", "G", Stage::CreateGroup, 0).after_recheck()];
    let report = executor(3, 4).execute(&target, calls).await;

    assert_eq!(*outcome(&report, 0), Outcome::Applied);
    assert_eq!(
        target.events("create"),
        [
            Event::Send,
            Event::SendEnd,
            Event::RecheckFailed,
            Event::Recheck,
            Event::Send,
            Event::SendEnd
        ]
    );
}

#[tokio::test]
async fn a_permanent_recheck_failure_fails_the_call() {
    let target = FakeTarget::default()
        .on_send("create", vec![Err(connect()), Ok(Sent::Done)])
        .on_recheck(
            "create",
            vec![Err(CallErrorKind::Auth("token expired".to_owned()))],
        );
    let calls = vec![FakeCall::new("create", "G", Stage::CreateGroup, 0).after_recheck()];
    let report = executor(3, 4).execute(&target, calls).await;

    assert!(
        matches!(outcome(&report, 0), Outcome::Failed(_)),
        "{report:?}"
    );
    assert_eq!(
        target.events("create"),
        [Event::Send, Event::SendEnd, Event::RecheckFailed]
    );
}

#[tokio::test]
async fn calls_needing_a_group_whose_create_failed_are_skipped() {
    let target = FakeTarget::default().on_send("create-G", vec![Err(status(400))]);
    let calls = vec![
        FakeCall::new("create-G", "G", Stage::CreateGroup, 0),
        FakeCall::new("create-H", "H", Stage::CreateGroup, 1),
        FakeCall::new("member-G", "G", Stage::Members, 2),
        FakeCall::new("member-H", "H", Stage::Members, 3),
    ];
    let report = executor(3, 4).execute(&target, calls).await;

    assert!(
        matches!(outcome(&report, 0), Outcome::Failed(_)),
        "{report:?}"
    );
    assert_eq!(*outcome(&report, 1), Outcome::Applied);
    match outcome(&report, 2) {
        Outcome::Skipped(why) => assert!(why.contains("\"G\""), "{why}"),
        other => panic!("member-G: {other:?}"),
    }
    assert_eq!(*outcome(&report, 3), Outcome::Applied);
    assert_eq!(target.sends_of("member-G"), 0);
    assert_eq!(target.sends_of("member-H"), 1);
    assert_eq!(report.failures(), 2);
}

#[tokio::test]
async fn every_covered_change_gets_the_outcome() {
    let target = FakeTarget::default().on_send("bad", vec![Err(status(400))]);
    let calls = vec![
        FakeCall::new("good", "G", Stage::Members, 0).covering(&[0, 2, 5]),
        FakeCall::new("bad", "H", Stage::Members, 1).covering(&[1, 3]),
    ];
    let report = executor(3, 4).execute(&target, calls).await;

    assert_eq!(
        report.outcomes.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2, 3, 5]
    );
    for i in [0, 2, 5] {
        assert_eq!(*outcome(&report, i), Outcome::Applied);
    }
    for i in [1, 3] {
        assert!(
            matches!(outcome(&report, i), Outcome::Failed(_)),
            "{report:?}"
        );
    }
    assert_eq!(report.attempts, 2);
}

#[tokio::test]
async fn a_stopped_run_sends_nothing() {
    let target = FakeTarget::default();
    let calls = vec![
        FakeCall::new("create-G", "G", Stage::CreateGroup, 0),
        FakeCall::new("update-G", "G", Stage::UpdateGroup, 1),
        FakeCall::new("member-H", "H", Stage::Members, 2),
        FakeCall::new("child-H", "H", Stage::Children, 3),
        FakeCall::new("delete-Z", "Z", Stage::DeleteGroup, 4),
    ];
    let ex = executor(3, 4);
    ex.stop.cancel();
    let report = ex.execute(&target, calls).await;

    assert_eq!(report.outcomes.len(), 5);
    assert!(
        report
            .outcomes
            .values()
            .all(|o| matches!(o, Outcome::Skipped(_))),
        "{report:?}"
    );
    assert_eq!(report.attempts, 0);
    assert!(target.log().is_empty(), "{:?}", target.log());
}

#[tokio::test]
async fn a_failure_message_names_the_call() {
    let kind = CallErrorKind::Status {
        status: 400,
        message: "name is invalid".to_owned(),
        retry_after: None,
    };
    let target = FakeTarget::default().on_send("create-G", vec![Err(kind.clone())]);
    let call = FakeCall::new("create-G", "G", Stage::CreateGroup, 0);
    let expected = FakeTarget::error(&call, kind).to_string();
    let report = executor(3, 4).execute(&target, vec![call]).await;

    let Outcome::Failed(message) = outcome(&report, 0) else {
        panic!("{report:?}");
    };
    assert!(message.contains(&expected), "{message}");
    for part in ["fake", "POST", "/calls/create-G", "name is invalid"] {
        assert!(message.contains(part), "{message} lacks {part}");
    }
}

#[tokio::test]
async fn a_change_refused_at_plan_time_is_never_sent() {
    // Change 0 creates "New" (refused), 1-2 are members of "New" (their call needs it), 3 and 4
    // are carried by one call with refused change 4, 5 is independent.
    let target = FakeTarget::default();
    let calls = vec![
        FakeCall::new("create-New", "New", Stage::CreateGroup, 0),
        FakeCall::new("member-New", "New", Stage::Members, 1).covering(&[1, 2]),
        FakeCall::new("put-A", "A", Stage::Members, 3).covering(&[3, 4]),
        FakeCall::new("member-B", "B", Stage::Members, 5),
    ];
    let refused = BTreeMap::from([
        (0, "the name breaks the rule".to_owned()),
        (4, "the e-mail is refused".to_owned()),
    ]);
    let report = executor(0, 2)
        .execute_vetted(&target, calls, &refused)
        .await;

    assert_eq!(target.sends_of("create-New"), 0);
    assert_eq!(target.sends_of("member-New"), 0);
    assert_eq!(target.sends_of("put-A"), 0);
    assert_eq!(target.sends_of("member-B"), 1);
    assert_eq!(report.attempts, 1);
    assert_eq!(
        outcome(&report, 0),
        &Outcome::Failed("refused at plan time: the name breaks the rule".to_owned())
    );
    assert!(
        matches!(outcome(&report, 1), Outcome::Skipped(why) if why.contains("\"New\" could not be created"))
    );
    assert!(matches!(outcome(&report, 2), Outcome::Skipped(_)));
    assert!(
        matches!(outcome(&report, 3), Outcome::Skipped(why) if why.contains("refused at plan time"))
    );
    assert_eq!(
        outcome(&report, 4),
        &Outcome::Failed("refused at plan time: the e-mail is refused".to_owned())
    );
    assert_eq!(outcome(&report, 5), &Outcome::Applied);
    assert_eq!(report.failures(), 5);
}

/// A journal that records each attempt it is asked to watch, what the fake target reported to
/// its watch, and how the attempt finished.
#[derive(Debug, Default)]
struct RecordingJournal {
    log: Arc<Mutex<Vec<String>>>,
    refuse: bool,
}

struct RecordingWatch {
    name: String,
    log: Arc<Mutex<Vec<String>>>,
    refuse: bool,
}

impl CallJournal for RecordingJournal {
    fn attempt(&self, group: &GroupName, covers: &[usize]) -> Arc<dyn CallWatch> {
        Arc::new(RecordingWatch {
            name: format!("{group}{covers:?}"),
            log: Arc::clone(&self.log),
            refuse: self.refuse,
        })
    }
}

impl CallWatch for RecordingWatch {
    fn before<'a>(
        &'a self,
        r: crate::target::watch::WriteRequest<'a>,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}: intent {} {}", self.name, r.method, r.path));
        let refuse = self.refuse;
        Box::pin(async move {
            if refuse {
                return Err("the disk is full".to_owned());
            }
            Ok(())
        })
    }
    fn after(&self, _answer: crate::target::watch::WriteAnswer) {}
    fn finish(&self, result: Result<Option<&Sent>, &CallError>) {
        let how = match result {
            Ok(Some(s)) => format!("{s:?}"),
            Ok(None) => "not landed".to_owned(),
            Err(e) => format!("error {}", e.kind),
        };
        self.log
            .lock()
            .unwrap()
            .push(format!("{}: finish {how}", self.name));
    }
}

#[tokio::test]
async fn every_attempt_runs_under_a_watch_of_its_own_and_is_told_how_it_ended() {
    let target = FakeTarget::default()
        .on_send("create-A", vec![Err(connect()), Ok(Sent::Done)])
        .on_recheck("create-A", vec![Ok(None)]);
    let journal = RecordingJournal::default();
    let log = Arc::clone(&journal.log);
    let mut exec = executor(2, 2);
    exec.journal = Some(Arc::new(journal));
    let calls = vec![FakeCall::new("create-A", "A", Stage::CreateGroup, 0).after_recheck()];
    let report = exec.execute(&target, calls).await;
    assert_eq!(*outcome(&report, 0), Outcome::Applied);
    assert_eq!(
        *log.lock().unwrap(),
        [
            "A[0]: intent POST /calls/create-A",
            "A[0]: finish error connection failed: connection reset",
            "A[0]: finish not landed",
            "A[0]: intent POST /calls/create-A",
            "A[0]: finish Done",
        ]
    );
}

#[tokio::test]
async fn the_next_calls_intent_is_journalled_while_the_call_before_it_holds_the_slot() {
    let (target, calls) = slow_calls(3, 1, Duration::from_millis(10));
    let journal = RecordingJournal::default();
    let log = Arc::clone(&journal.log);
    let mut exec = executor(0, 1);
    exec.journal = Some(Arc::new(journal));
    let report = exec.execute(&target, calls).await;
    assert_eq!(report.failures(), 0, "{report:?}");
    assert_eq!(target.max_in_flight.load(Ordering::SeqCst), 1);
    // One slot: each call's intent is written while the call before it is out, not after.
    assert_eq!(
        *log.lock().unwrap(),
        [
            "G[0]: intent POST /calls/member-0",
            "G[1]: intent POST /calls/member-1",
            "G[0]: finish Done",
            "G[2]: intent POST /calls/member-2",
            "G[1]: finish Done",
            "G[2]: finish Done",
        ]
    );
}

#[tokio::test]
async fn a_write_the_journal_cannot_record_is_not_sent() {
    let target = FakeTarget::default();
    let journal = RecordingJournal {
        refuse: true,
        ..RecordingJournal::default()
    };
    let mut exec = executor(3, 1);
    exec.journal = Some(Arc::new(journal));
    let calls = vec![FakeCall::new("create-A", "A", Stage::CreateGroup, 0)];
    let report = exec.execute(&target, calls).await;
    let Outcome::Failed(why) = outcome(&report, 0) else {
        panic!("{report:?}")
    };
    assert!(why.contains("not sent: the disk is full"), "{why}");
    // Refused for good: not retried, and never past the journal.
    assert_eq!(target.events("create-A"), [Event::Send]);
}

/// A fence that answers yes a given number of times, then no for good, and logs what it was
/// asked (`true`: a fresh proof).
#[derive(Debug, Default)]
struct CountedFence {
    /// How many confirmations it gives before it says no.
    yes: usize,
    /// Set when the lease is lost before that.
    lost: AtomicBool,
    asked: Mutex<Vec<bool>>,
}

impl CountedFence {
    fn allowing(yes: usize) -> Arc<Self> {
        Arc::new(Self {
            yes,
            lost: AtomicBool::new(false),
            asked: Mutex::default(),
        })
    }

    /// From now on, says no.
    fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    fn asked(&self) -> Vec<bool> {
        self.asked.lock().unwrap().clone()
    }
}

impl Fence for CountedFence {
    fn confirm(&self, fresh: bool) -> BoxFuture<'_, Result<(), String>> {
        let mut asked = self.asked.lock().unwrap();
        asked.push(fresh);
        let n = asked.len();
        Box::pin(async move {
            if n <= self.yes && !self.lost.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("the lease was lost".to_owned())
            }
        })
    }
}

fn fenced(fence: &Arc<CountedFence>, concurrency: usize) -> Executor {
    let mut ex = executor(3, concurrency);
    ex.fence = Some(Arc::clone(fence) as Arc<dyn Fence>);
    ex
}

#[tokio::test]
async fn each_stage_proves_afresh_and_each_attempt_asks_the_fence() {
    let target = FakeTarget::default().on_send("member-A", vec![Err(connect()), Ok(Sent::Done)]);
    let calls = vec![
        FakeCall::new("create-A", "A", Stage::CreateGroup, 0),
        FakeCall::new("member-A", "A", Stage::Members, 1),
        FakeCall::new("member-B", "B", Stage::Members, 2),
        FakeCall::new("delete-Z", "Z", Stage::DeleteGroup, 3),
    ];
    let fence = CountedFence::allowing(usize::MAX);
    let report = fenced(&fence, 1).execute(&target, calls).await;

    assert_eq!(report.failures(), 0, "{report:?}");
    assert_eq!(report.attempts, 5);
    // Three stages, each opened by a fresh proof; then one question per attempt and one per
    // write request (member-A is sent twice).
    assert_eq!(
        fence.asked(),
        [
            true, false, false, // creates
            true, false, false, false, false, false, false, // members
            true, false, false, // deletes
        ]
    );
}

#[tokio::test]
async fn a_fence_that_fails_between_stages_stops_every_later_call() {
    let target = FakeTarget::default();
    let calls = vec![
        FakeCall::new("create-A", "A", Stage::CreateGroup, 0),
        FakeCall::new("create-B", "B", Stage::CreateGroup, 1),
        FakeCall::new("member-A", "A", Stage::Members, 2),
        FakeCall::new("delete-Z", "Z", Stage::DeleteGroup, 3),
    ];
    // The creates' stage proof and both creates' questions and writes pass; the members' stage
    // proof fails.
    let fence = CountedFence::allowing(5);
    let report = fenced(&fence, 4).execute(&target, calls).await;

    assert_eq!(outcome(&report, 0), &Outcome::Applied);
    assert_eq!(outcome(&report, 1), &Outcome::Applied);
    for i in [2, 3] {
        assert_eq!(
            outcome(&report, i),
            &Outcome::Skipped("the lease was lost".to_owned())
        );
    }
    assert_eq!(report.attempts, 2);
    let sent: Vec<String> = target.log().into_iter().map(|(id, _)| id).collect();
    assert!(
        sent.iter().all(|id| id.starts_with("create-")),
        "a call was sent after the fence said no: {sent:?}"
    );
}

#[tokio::test]
async fn a_fence_that_fails_within_a_stage_stops_the_calls_not_yet_started() {
    let target = FakeTarget::default();
    let calls: Vec<FakeCall> = (0..6)
        .map(|i| FakeCall::new(&format!("member-{i}"), "A", Stage::Members, i))
        .collect();
    // The stage's proof and two calls' questions and writes pass; the third call's question
    // fails.
    let fence = CountedFence::allowing(5);
    let report = fenced(&fence, 1).execute(&target, calls).await;

    assert_eq!(report.attempts, 2);
    let applied = report.outcomes.values().filter(|o| o.is_ok()).count();
    assert_eq!(applied, 2, "{report:?}");
    assert_eq!(report.failures(), 4);
    let sends = target
        .log()
        .iter()
        .filter(|(_, e)| *e == Event::Send)
        .count();
    assert_eq!(sends, 2);
}

/// One call whose first send's connection breaks and whose second succeeds, at concurrency 1
/// under a fence that says yes `yes` times: the target and the report.
async fn retried_under_fence(yes: usize) -> (FakeTarget, ApplyReport) {
    let target = FakeTarget::default().on_send("member-A", vec![Err(connect()), Ok(Sent::Done)]);
    let calls = vec![FakeCall::new("member-A", "A", Stage::Members, 0)];
    let fence = CountedFence::allowing(yes);
    let report = fenced(&fence, 1).execute(&target, calls).await;
    (target, report)
}

#[tokio::test]
async fn a_retry_asks_the_fence_again() {
    // The stage's proof and the first attempt and its write pass; the retry is refused.
    let (_, report) = retried_under_fence(3).await;

    assert_eq!(report.attempts, 1);
    match outcome(&report, 0) {
        Outcome::Skipped(why) => {
            assert!(
                why.starts_with("the lease was lost; last attempt:"),
                "{why}"
            );
        }
        other => panic!("expected a skip, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_waiting_for_its_slot_when_the_fence_says_no_is_not_sent() {
    // Three calls of a read and a write, 20 ms each, two slots: the third call starts with the
    // others (the stage's end) and its read takes the first slot free, so the second call's
    // write waits for a slot until 40 ms, as the third's does. The lease is lost at 30 ms.
    let (target, calls) = chained(3, Duration::from_millis(20));
    let fence = CountedFence::allowing(usize::MAX);
    let ex = fenced(&fence, 2);
    let lose = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        fence.lose();
    };
    let (report, ()) = tokio::join!(ex.execute(&target, calls), lose);

    // The first call's write left at 20 ms, before the lease was lost.
    assert_eq!(target.writes(), ["member-0"]);
    assert_eq!(outcome(&report, 0), &Outcome::Applied);
    for i in [1, 2] {
        assert_eq!(
            outcome(&report, i),
            &Outcome::Skipped("the lease was lost".to_owned()),
            "{report:?}"
        );
    }
    // Each call was attempted once: a write held back is not tried again.
    assert_eq!(report.attempts, 3);
}

#[tokio::test]
async fn a_call_the_server_refused_fails_though_the_fence_said_no_since() {
    let target = FakeTarget::default().on_send("member-A", vec![Err(status(422))]);
    let calls = vec![FakeCall::new("member-A", "A", Stage::Members, 0)];
    // The stage's proof, the attempt and its write pass; then the lease is lost.
    let fence = CountedFence::allowing(3);
    let report = fenced(&fence, 1).execute(&target, calls).await;

    assert_eq!(target.writes(), ["member-A"]);
    match outcome(&report, 0) {
        Outcome::Failed(why) => assert!(why.contains("status 422"), "{why}"),
        other => panic!("the write was sent and refused, so the call failed: {other:?}"),
    }
}

#[tokio::test]
async fn a_call_held_back_after_a_write_of_it_left_fails_not_skipped() {
    // The stage's proof, the first attempt, its write and the retry's question pass; the
    // retry's write is held back. The first write's connection broke: it may have landed.
    let (target, report) = retried_under_fence(4).await;

    assert_eq!(target.writes(), ["member-A"]);
    assert_eq!(report.attempts, 2);
    match outcome(&report, 0) {
        Outcome::Failed(why) => assert!(why.contains("not sent: the lease was lost"), "{why}"),
        other => panic!("a write of the call left, so it is not \"not written\": {other:?}"),
    }
}

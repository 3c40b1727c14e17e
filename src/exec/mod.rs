//! The executor: carries out a target's compiled calls in stage order, with bounded concurrency
//! and retries, and reports what became of every planned change.
//!
//! It knows no API. It orders calls by [`Stage`] (creates before the member and child calls that
//! need them, deletes last), runs up to `concurrency` requests at once (each holding one of
//! `concurrency` [`slots`], so that calls chaining requests can fill the end of a stage),
//! retries only what [`RetrySafety`] and [`CallError::is_transient`] allow, and skips calls that
//! need a group whose creation failed. One failed call never stops independent ones.
//!
//! With a [`CallJournal`], every attempt at a call (each send, each recheck) runs under a
//! [`CallWatch`] the journal gives, which the endpoint tells of each write request before it
//! leaves and after its answer comes; the executor then tells it how the attempt ended. The
//! executor neither reads the journal nor decides anything from it.
//!
//! With a [`Fence`] (the active daemon's lease), the executor asks it for a fresh proof that
//! this run may still write before each stage, and before each attempt at a call it asks again,
//! which the fence answers from its last proof while that is recent enough; so does each write
//! request, as the [`slots`]' gate, once it has its slot, just before it leaves. Once the fence
//! says no, no call is started and no write request leaves any more: the requests out finish,
//! the calls not started and those held back before their first write are skipped with the
//! fence's reason; a call held back after a write of it left fails.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::model::GroupName;
use crate::target::slots::{self, Gate, Slots};
use crate::target::watch::{self, CallWatch};
use crate::target::{Call, CallError, CallErrorKind, RetrySafety, Sent, Stage, Target};

pub use crate::retry::RetryPolicy;

/// What became of one planned change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// The API made the change.
    Applied,
    /// The API reported it already in effect (an adopted group, a member already gone).
    AlreadyDone(String),
    /// The call failed; the message names target, group, method, path and the server's words.
    Failed(String),
    /// Not attempted, because a change it depends on failed or the run was stopped.
    Skipped(String),
}

impl Outcome {
    /// Whether the desired effect holds.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Applied | Outcome::AlreadyDone(_))
    }
}

/// The result of executing one target's calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// The outcome of each planned change, by its index in the plan.
    pub outcomes: BTreeMap<usize, Outcome>,
    /// Calls sent, counting every attempt.
    pub attempts: usize,
}

impl ApplyReport {
    /// How many changes failed or were skipped.
    pub fn failures(&self) -> usize {
        self.outcomes.values().filter(|o| !o.is_ok()).count()
    }
}

/// Where the executor records the calls it sends (the audit journal, in a run that keeps one).
pub trait CallJournal: fmt::Debug + Send + Sync {
    /// The watch of one attempt at a call that writes to `group` and carries out the plan's
    /// changes `covers`, about to start.
    fn attempt(&self, group: &GroupName, covers: &[usize]) -> Arc<dyn CallWatch>;
}

/// Whether this run may still write: the proof the active daemon gives that it still holds its
/// lease. A "no" is for good: once given, every later answer is no.
pub trait Fence: fmt::Debug + Send + Sync {
    /// `Ok` while the run may write; `Err` says why not. With `fresh`, the answer comes from a
    /// proof made now (a stage starts); without, a recent proof will do.
    fn confirm(&self, fresh: bool) -> BoxFuture<'_, Result<(), String>>;
}

/// Carries out calls against one target. See the module documentation.
#[derive(Clone, Debug)]
pub struct Executor {
    /// When failed calls are sent again.
    pub retry: RetryPolicy,
    /// How many requests may be in flight at once: calls run this many at once, and so do their
    /// requests, each holding one of this many [`slots`] (calls that chain requests may run
    /// more at once at the end of a stage).
    pub concurrency: NonZeroUsize,
    /// Cancelled when the run must stop: calls not yet started are skipped.
    pub stop: CancellationToken,
    /// Advanced once per call finished; hidden unless a terminal shows it.
    pub progress: ProgressBar,
    /// Told of every write request, when the run keeps a journal.
    pub journal: Option<Arc<dyn CallJournal>>,
    /// Asked before every stage, every attempt and every write request whether the run may
    /// still write.
    pub fence: Option<Arc<dyn Fence>>,
}

impl Executor {
    /// An executor with the given retry rules and concurrency, no progress bar, never stopped.
    pub fn new(retry: RetryPolicy, concurrency: NonZeroUsize) -> Self {
        Self {
            retry,
            concurrency,
            stop: CancellationToken::new(),
            progress: ProgressBar::hidden(),
            journal: None,
            fence: None,
        }
    }

    /// Sends `calls` stage by stage and reports the outcome of every change they cover.
    pub async fn execute<T: Target>(&self, target: &T, calls: Vec<T::Call>) -> ApplyReport {
        self.execute_vetted(target, calls, &BTreeMap::new()).await
    }

    /// As [`Executor::execute`], but never sends a call that covers a change in `refused` (the
    /// plan's errors, by change index, with why the server would refuse it): that change fails
    /// with its reason, the others the same call covers are skipped, and so is every call that
    /// needs a group whose creation was refused.
    pub async fn execute_vetted<T: Target>(
        &self,
        target: &T,
        calls: Vec<T::Call>,
        refused: &BTreeMap<usize, String>,
    ) -> ApplyReport {
        let mut report = ApplyReport::default();
        let mut failed_creates: HashSet<GroupName> = HashSet::new();
        let mut stages: BTreeMap<Stage, Vec<T::Call>> = BTreeMap::new();
        for c in calls {
            if c.covers().iter().any(|i| refused.contains_key(i)) {
                for i in c.covers() {
                    let outcome = match refused.get(i) {
                        Some(why) => Outcome::Failed(format!("refused at plan time: {why}")),
                        None => Outcome::Skipped(
                            "sent in one call with a change refused at plan time".to_owned(),
                        ),
                    };
                    report.outcomes.insert(*i, outcome);
                }
                if c.stage() == Stage::CreateGroup {
                    failed_creates.insert(c.group().clone());
                }
                continue;
            }
            stages.entry(c.stage()).or_default().push(c);
        }
        self.progress
            .set_length(stages.values().map(Vec::len).sum::<usize>() as u64);
        let gate = self
            .fence
            .clone()
            .map(|f| Arc::new(FenceGate(f)) as Arc<dyn Gate>);
        let slots = Slots::new(self.concurrency.get(), gate);

        for (stage, calls) in stages {
            // A stage proves the lease afresh before its first call: a long stage before it may
            // have outlived the last proof by far.
            if let Err(why) = self.fenced(true).await {
                for call in calls {
                    record(&mut report, &call, Outcome::Skipped(why.clone()));
                    self.progress.inc(1);
                }
                continue;
            }
            let mut runnable = Vec::new();
            for call in calls {
                let blocked = call
                    .needs()
                    .into_iter()
                    .find(|g| failed_creates.contains(*g));
                if let Some(g) = blocked {
                    let why = format!("group \"{g}\" could not be created");
                    record(&mut report, &call, Outcome::Skipped(why));
                    self.progress.inc(1);
                } else {
                    runnable.push(call);
                }
            }
            let results = self.run_stage(target, runnable, &slots).await;
            for (call, outcome, attempts) in results {
                report.attempts += attempts;
                if stage == Stage::CreateGroup && !outcome.is_ok() {
                    failed_creates.insert(call.group().clone());
                }
                record(&mut report, &call, outcome);
            }
        }
        report
    }

    /// Runs one stage's calls, each attempt's requests holding `slots`.
    ///
    /// Calls of one request each run `concurrency` at once and as many again ahead of their
    /// turn: a call under way before a slot is free does what must come before its request
    /// leaves (the journal's flush of its intent) while it waits for the slot, so that work is
    /// not on the path from one request's answer to the next request.
    ///
    /// When the calls chain requests (a read, then a write), the last `concurrency` of them all
    /// start as soon as there are no more left than that: their requests then fill the slots
    /// the calls finishing before them leave idle, where running them a wave at a time would
    /// leave half the slots idle for the last wave (26 rounds of the latency for 100 calls of
    /// two requests at 8, where 200 requests take 25). A call's second request then waits
    /// behind at most `concurrency` requests asked for before it: one round.
    async fn run_stage<T: Target>(
        &self,
        target: &T,
        calls: Vec<T::Call>,
        slots: &Slots,
    ) -> Vec<(T::Call, Outcome, usize)> {
        let concurrency = self.concurrency.get();
        let chained = calls.iter().any(|c| c.requests() > 1);
        let mut waiting = calls.into_iter();
        let mut running = FuturesUnordered::new();
        let mut results = Vec::with_capacity(waiting.len());
        // Chained calls are not started ahead: a call's second request would wait behind the
        // first requests of the calls started after it.
        let ahead = if chained { 0 } else { concurrency };
        loop {
            while running.len() < concurrency + ahead || (chained && waiting.len() <= concurrency) {
                let Some(call) = waiting.next() else { break };
                let slots = slots.for_call();
                running.push(async move {
                    let (outcome, attempts) =
                        slots::within(slots, self.run_one(target, &call)).await;
                    self.progress.inc(1);
                    (call, outcome, attempts)
                });
            }
            match running.next().await {
                Some(done) => results.push(done),
                None => return results,
            }
        }
    }

    /// Sends one call until it succeeds, fails for good, or runs out of retries or time.
    async fn run_one<T: Target>(&self, target: &T, call: &T::Call) -> (Outcome, usize) {
        let start = Instant::now();
        let mut delays = self.retry.delays();
        let mut attempts = 0;
        let mut last: Option<CallError> = None;
        loop {
            if self.stop.is_cancelled() {
                let why = match &last {
                    Some(e) => format!("run stopped after: {e}"),
                    None => "run stopped".to_owned(),
                };
                return (Outcome::Skipped(why), attempts);
            }
            if let Err(why) = self.fenced(false).await {
                let why = match &last {
                    Some(e) => format!("{why}; last attempt: {e}"),
                    None => why,
                };
                return (Outcome::Skipped(why), attempts);
            }
            // A call that may have landed although it failed is checked before it is sent again,
            // so that a create is never made twice.
            if let Some(e) = &last
                && call.retry() == RetrySafety::AfterRecheck
                && e.is_ambiguous()
            {
                attempts += 1;
                match self.recheck(target, call).await {
                    Ok(Some(sent)) => return (outcome_of(sent), attempts),
                    Ok(None) => {}
                    Err(e) => {
                        // Whether the call landed is still unknown, so the next attempt must
                        // recheck again: the original ambiguous error stays in `last`.
                        warn!(error = %e, "recheck failed");
                        if e.is_transient() && self.wait(&e, &mut delays, start).await {
                            continue;
                        }
                        return (self.failed(&e).await, attempts);
                    }
                }
            }
            attempts += 1;
            match self.send(target, call).await {
                Ok(sent) => return (outcome_of(sent), attempts),
                Err(e) => {
                    if !e.is_transient() || !self.wait(&e, &mut delays, start).await {
                        warn!(error = %e, attempts, "call failed");
                        return (self.failed(&e).await, attempts);
                    }
                    debug!(error = %e, attempts, "call failed; retrying");
                    last = Some(e);
                }
            }
        }
    }

    /// How a call that failed for good ends: skipped, with the fence's reason, when its first
    /// write was held back because the fence said no (a write waiting for its slot when the
    /// lease was lost), as the calls not yet started are; failed otherwise, a call held back
    /// after a write of it left included (that write may have changed the target).
    async fn failed(&self, e: &CallError) -> Outcome {
        if matches!(e.kind, CallErrorKind::NotSent(_))
            && slots::passed() == 0
            && let Err(why) = self.fenced(false).await
        {
            return Outcome::Skipped(why);
        }
        Outcome::Failed(e.to_string())
    }

    /// What the fence says, if there is one.
    async fn fenced(&self, fresh: bool) -> Result<(), String> {
        match &self.fence {
            Some(f) => f.confirm(fresh).await,
            None => Ok(()),
        }
    }

    /// Sends `call` once, under a watch of its own when there is a journal.
    async fn send<T: Target>(&self, target: &T, call: &T::Call) -> Result<Sent, CallError> {
        let Some(journal) = &self.journal else {
            return target.send(call).await;
        };
        let watch = journal.attempt(call.group(), call.covers());
        let result = watch::watched(Arc::clone(&watch), target.send(call)).await;
        watch.finish(result.as_ref().map(Some));
        result
    }

    /// Rechecks `call` once, under a watch of its own when there is a journal (adopting a group
    /// may write to it).
    async fn recheck<T: Target>(
        &self,
        target: &T,
        call: &T::Call,
    ) -> Result<Option<Sent>, CallError> {
        let Some(journal) = &self.journal else {
            return target.recheck(call).await;
        };
        let watch = journal.attempt(call.group(), call.covers());
        let result = watch::watched(Arc::clone(&watch), target.recheck(call)).await;
        watch.finish(result.as_ref().map(Option::as_ref));
        result
    }

    /// Waits before the next attempt; `false` when no attempt is left (count, time or stop).
    async fn wait(
        &self,
        e: &CallError,
        delays: &mut (impl Iterator<Item = std::time::Duration> + Send),
        start: Instant,
    ) -> bool {
        let Some(wait) = self
            .retry
            .next_wait(delays.next(), e.retry_after(), start.elapsed())
        else {
            return false;
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.stop.cancelled() => false,
        }
    }
}

/// The fence, asked as the gate every write request of an attempt passes.
struct FenceGate(Arc<dyn Fence>);

impl Gate for FenceGate {
    fn open(&self) -> BoxFuture<'_, Result<(), String>> {
        self.0.confirm(false)
    }
}

fn outcome_of(sent: Sent) -> Outcome {
    match sent {
        Sent::Done => Outcome::Applied,
        Sent::AlreadyDone(why) => Outcome::AlreadyDone(why),
    }
}

fn record<C: Call>(report: &mut ApplyReport, call: &C, outcome: Outcome) {
    for i in call.covers() {
        report.outcomes.insert(*i, outcome.clone());
    }
}
#[cfg(test)]
mod tests;

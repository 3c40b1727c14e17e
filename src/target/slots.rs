//! The request slots of an apply, and the gate its writes pass: at most `concurrency` requests
//! of a target's calls are out at once, however many requests each call sends, and no write
//! leaves once the run may write no more.
//!
//! A call may chain requests (VinylDNS reads a group afresh before it replaces it whole), so
//! `concurrency` calls at once leave slots idle: while one call waits on its first answer, no
//! other call may use the slot its second request will need, and the last wave of calls runs
//! part-empty. The executor therefore starts the last `concurrency` calls of such a stage
//! together, and holds the requests themselves to `concurrency` with these slots: it sets them
//! around each attempt at a call, and [`Endpoint::send`] takes one for each request it sends,
//! for as long as the request is out (answer and body). Slots are handed out in the order they
//! were asked for, so a call's second request waits behind at most the requests asked for
//! before it, not behind every call still to start.
//!
//! A request may wait for its slot well after its call started, so the executor
//! also sets a [`Gate`] (the active daemon's lease, when there is one) that the endpoint asks
//! once a write request holds its slot, just before it is journalled and sent: a write refused
//! there is not sent, and its attempt fails with
//! [`CallErrorKind::NotSent`](crate::target::CallErrorKind::NotSent). The slots count the writes
//! of each call the gate let through, so that the executor can tell a call held back before it
//! wrote anything from one held back half-way.
//!
//! Like the [`watch`](super::watch), the slots are a task-local value rather than an argument:
//! the connectors decide how many requests a call takes, and every request passes through the
//! endpoint. Requests sent outside an attempt (an observe, a vet) take no slot and pass no gate;
//! those reads bound their own concurrency. Token and login requests do not pass through the
//! endpoint and take none either, so a request never waits for a slot while holding another.
//!
//! [`Endpoint::send`]: super::http::endpoint::Endpoint::send

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Whether a write may still leave: asked for each write request of an attempt just before it
/// is sent. A "no" is for good.
pub trait Gate: Send + Sync {
    /// `Ok` while writes may leave; `Err` says why not.
    fn open(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The slots an apply's requests share, and the gate its writes pass.
#[derive(Clone)]
pub struct Slots {
    permits: Arc<Semaphore>,
    gate: Option<Arc<dyn Gate>>,
    /// The writes of one call the gate has let through, over all its attempts.
    passed: Arc<AtomicUsize>,
}

impl Slots {
    /// `concurrency` slots, and `gate` (if any) for every write request.
    pub fn new(concurrency: usize, gate: Option<Arc<dyn Gate>>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            gate,
            passed: Arc::default(),
        }
    }

    /// The same slots and gate, for one call: [`passed`] counts its writes alone.
    pub fn for_call(&self) -> Self {
        Self {
            passed: Arc::default(),
            ..self.clone()
        }
    }
}

tokio::task_local! {
    static SLOTS: Slots;
}

/// Runs `attempt` with each request it sends through the endpoint holding one of `slots`, and
/// each write passing their gate.
pub async fn within<F: Future>(slots: Slots, attempt: F) -> F::Output {
    SLOTS.scope(slots, attempt).await
}

/// Waits for a slot for one request of the attempt being carried out, and holds it until the
/// permit is dropped. `None` outside an attempt, where no slots apply.
pub async fn take() -> Option<OwnedSemaphorePermit> {
    let permits = SLOTS.try_with(|s| Arc::clone(&s.permits)).ok()?;
    // The executor never closes its slots; were they closed, the request would go unheld
    // rather than never.
    permits.acquire_owned().await.ok()
}

/// Gives a request's slot back once its answer is in; whether a request waiting for a slot took
/// it. The calls of an apply are futures of one task, so nothing else takes or gives back one of
/// its slots between the two counts.
pub fn give_back(slot: OwnedSemaphorePermit) -> bool {
    let permits = Arc::clone(slot.semaphore());
    let free = permits.available_permits();
    drop(slot);
    permits.available_permits() == free
}

/// Asks the gate of the attempt being carried out whether a write may leave now. `Ok` outside
/// an attempt and when no gate is set.
pub async fn open() -> Result<(), String> {
    let Ok((gate, passed)) = SLOTS.try_with(|s| (s.gate.clone(), Arc::clone(&s.passed))) else {
        return Ok(());
    };
    if let Some(gate) = gate {
        gate.open().await?;
    }
    passed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// How many writes of the call being carried out the gate has let through so far, over all
/// its attempts: those may have changed the target, though the call then failed. 0 outside
/// an attempt.
pub fn passed() -> usize {
    SLOTS
        .try_with(|s| s.passed.load(Ordering::Relaxed))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_given_back_says_whether_a_request_waiting_for_one_took_it() {
        within(Slots::new(1, None), async {
            let alone = take().await.expect("a slot");
            assert!(!give_back(alone), "no request was waiting");
            let held = take().await.expect("a slot");
            let waiting = take();
            tokio::pin!(waiting);
            assert!(futures::poll!(&mut waiting).is_pending());
            assert!(give_back(held), "the waiting request took it");
            assert!(waiting.await.is_some());
        })
        .await;
    }
}

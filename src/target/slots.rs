//! The request slots of an apply: at most `concurrency` requests of a target's calls are out at
//! once, however many requests each call sends.
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
//! Like the [`watch`](super::watch), the slots are a task-local value rather than an argument:
//! the connectors decide how many requests a call takes, and every request passes through the
//! endpoint. Requests sent outside an attempt (an observe, a vet) take no slot; those reads
//! bound their own concurrency. Token and login requests do not pass through the endpoint and
//! take none either, so a request never waits for a slot while holding another.
//!
//! [`Endpoint::send`]: super::http::endpoint::Endpoint::send

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static SLOTS: Arc<Semaphore>;
}

/// Runs `attempt` with each request it sends through the endpoint holding one of `slots`.
pub async fn within<F: Future>(slots: Arc<Semaphore>, attempt: F) -> F::Output {
    SLOTS.scope(slots, attempt).await
}

/// Waits for a slot for one request of the attempt being carried out, and holds it until the
/// permit is dropped. `None` outside an attempt, where no slots apply.
pub async fn take() -> Option<OwnedSemaphorePermit> {
    let slots = SLOTS.try_with(Arc::clone).ok()?;
    // The executor never closes its slots; were they closed, the request would go unheld
    // rather than never.
    slots.acquire_owned().await.ok()
}

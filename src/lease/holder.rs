//! Active/standby: the holder of the lease on one key (in etcd) is the active daemon and writes;
//! the others are standby and plan only.
//!
//! A daemon keeps a lease of its own alive (renewed every third of the TTL) and tries to create
//! the key bound to it; the key exists only while its creator's lease lives, so when the active
//! daemon dies its key goes within the TTL and a standby creates it at its next try (a third of
//! the TTL later at most): a takeover within 4/3 of the TTL. The key's value says who holds it
//! and a hash of its config, so a standby whose config differs says so (`roster_lease_config_skew`)
//! instead of fighting. A standby's own lease is renewed between its tries; one that went a whole
//! TTL without a renewal (the store unreachable meanwhile) is given up for a new one, since the
//! key cannot be created with a lease the store has let expire.
//!
//! Holding the key is not enough to write: the store may say otherwise at any moment (the lease
//! expired while this daemon was paused, an operator deleted the key). So every run that writes
//! carries a [`Fence`] bound to the tenure it started in (the lease id and the key's create
//! revision). Before each write stage the executor asks for a fresh proof, one transaction that
//! the key still has this lease and this create revision, after the lease was renewed; within a
//! stage a proof serves for a third of the TTL, then a new one is made. A proof that fails, or
//! cannot be made within a third of the TTL, stops the run's writes for good, and the daemon
//! turns standby until it proves the lease again. A renewal made at the start of a proof keeps the
//! lease alive for a whole TTL after it, and writes rely on a proof for a third of the TTL at most,
//! so no write starts once the lease could have passed to another daemon.
//!
//! The store is a trait so that the state machine does not depend on how etcd is reached; the
//! daemon uses etcd ([`super::etcd`]).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::exec::Fence;

/// Where the lease lives: the calls of a lease-and-transaction store such as etcd's.
pub trait Store: Send + Sync + 'static {
    /// What a failed call says.
    type Error: fmt::Display + Send;

    /// A new lease of `ttl`; its id.
    fn grant(&self, ttl: Duration) -> impl Future<Output = Result<i64, Self::Error>> + Send;

    /// Renews lease `id` for its whole TTL; `false` when it is gone (expired or revoked).
    fn keep_alive(&self, id: i64) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Ends lease `id` (its keys go with it); a lease already gone is no error.
    fn revoke(&self, id: i64) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Creates `key` = `value` bound to lease `id`, in one transaction, unless the key exists.
    fn acquire(
        &self,
        key: &str,
        value: &[u8],
        id: i64,
    ) -> impl Future<Output = Result<Claim, Self::Error>> + Send;

    /// One transaction: whether `key` exists, bound to lease `id`, with this create revision.
    fn holds(
        &self,
        key: &str,
        id: i64,
        create_revision: i64,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

/// What an attempt to create the key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours now, created at this revision.
    Created {
        /// The key's create revision: with the lease id, the tenure's identity.
        create_revision: i64,
    },
    /// Another lease holds it; its value.
    Held {
        /// The holder's value (a [`Holder`] in JSON, when a roster wrote it).
        value: Vec<u8>,
    },
}

/// The value of the key: who holds it, with what config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder's name (`[daemon.lease] name`, or host and process id).
    pub name: String,
    /// A hash of the holder's config ([`crate::config::Config::settings_hash`]).
    pub config: String,
}

/// One period of holding the key: its lease and the key's create revision. A fence serves one
/// tenure only: a daemon that lost the key and got it back has a new one, and a run started
/// under the old one must not go on writing on the strength of the new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenure {
    /// The lease the key is bound to.
    pub lease: i64,
    /// The key's create revision.
    pub create_revision: i64,
}

/// What this daemon is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// It may not write: another daemon holds the key, or the store cannot be reached.
    Standby {
        /// Who holds the key, when known.
        holder: Option<String>,
        /// Whether the holder's config differs from this daemon's.
        skew: bool,
    },
    /// It holds the key: its runs write, under a fence for this tenure.
    Active(Tenure),
}

impl Role {
    /// Whether this daemon writes.
    pub fn is_active(&self) -> bool {
        matches!(self, Role::Active(_))
    }
}

/// The lease's settings.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// The key whose holder is active.
    pub key: String,
    /// The lease's time to live.
    pub ttl: Duration,
    /// This daemon, as the key's value names it.
    pub holder: Holder,
}

impl LeaseSettings {
    /// A third of the TTL: how often the lease is renewed and the key tried, how long a proof
    /// serves, and how long a proof may take.
    fn third(&self) -> Duration {
        self.ttl / 3
    }
}

/// What the holding task and the fences share.
struct Shared<S> {
    store: S,
    settings: LeaseSettings,
    /// Woken by a fence that could not prove the tenure: the task checks at once rather than at
    /// its next renewal, so that the daemon turns standby before its next run.
    suspect: Notify,
}

/// The lease, held by a task of its own: its role as it changes, and fences for runs.
pub struct Lease<S: Store> {
    shared: Arc<Shared<S>>,
    role: watch::Receiver<Role>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl<S: Store> fmt::Debug for Lease<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.shared.settings.key)
            .field("role", &*self.role.borrow())
            .finish_non_exhaustive()
    }
}

impl<S: Store> Lease<S> {
    /// Starts trying for the lease on `store`; this daemon is standby until it holds it.
    pub fn start(store: S, settings: LeaseSettings) -> Self {
        let shared = Arc::new(Shared {
            store,
            settings,
            suspect: Notify::new(),
        });
        let (tx, role) = watch::channel(Role::Standby {
            holder: None,
            skew: false,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(hold(Arc::clone(&shared), tx, stop.clone()));
        Self {
            shared,
            role,
            stop,
            task,
        }
    }

    /// The role, to watch for changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// A fence for a run started in `tenure`.
    pub fn fence(&self, tenure: Tenure) -> Arc<dyn Fence> {
        Arc::new(LeaseFence {
            shared: Arc::clone(&self.shared),
            tenure,
            proof: Mutex::new(None),
            lost: OnceLock::new(),
        })
    }

    /// Gives the lease up (its key goes at once, so a standby takes over without waiting for
    /// the TTL) and ends the task, within a third of the TTL.
    pub async fn release(self) {
        self.stop.cancel();
        let wait = self.shared.settings.third() + Duration::from_millis(100);
        if tokio::time::timeout(wait, self.task).await.is_err() {
            warn!("the lease was not released in time; it expires with its TTL");
        }
    }
}

/// The lease as the daemon holds it, whatever its store.
pub trait LeaseHandle: Send + Sync {
    /// The role, to watch for changes.
    fn role(&self) -> watch::Receiver<Role>;
    /// A fence for a run started in `tenure`.
    fn fence(&self, tenure: Tenure) -> Arc<dyn Fence>;
    /// Gives the lease up and ends its task.
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

impl<S: Store> LeaseHandle for Lease<S> {
    fn role(&self) -> watch::Receiver<Role> {
        Lease::role(self)
    }

    fn fence(&self, tenure: Tenure) -> Arc<dyn Fence> {
        Lease::fence(self, tenure)
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(Lease::release(*self))
    }
}

/// The holding task: see the module documentation.
async fn hold<S: Store>(
    shared: Arc<Shared<S>>,
    role: watch::Sender<Role>,
    stop: CancellationToken,
) {
    let s = &shared.settings;
    let third = s.third();
    let value = match serde_json::to_vec(&s.holder) {
        Ok(v) => v,
        Err(e) => {
            // A struct of two strings always serializes; stay standby rather than panic.
            warn!(error = %e, "cannot write the lease's value; staying standby");
            return;
        }
    };
    let mut lease: Option<i64> = None;
    // When the lease was last granted or renewed (on the answer). A lease not renewed within its
    // TTL is gone, whatever the store says later; the key cannot be created with it (etcd refuses
    // a put with an unknown lease), so trying on with it would keep this daemon standby for good.
    let mut renewed = Instant::now();
    let mut last_error: Option<String> = None;
    while !stop.is_cancelled() {
        let id = match lease {
            Some(id) => id,
            None => match within(third, shared.store.grant(s.ttl)).await {
                Ok(id) => {
                    lease = Some(id);
                    renewed = Instant::now();
                    id
                }
                Err(e) => {
                    unreachable_store(&role, &mut last_error, &e);
                    pause(third, &stop).await;
                    continue;
                }
            },
        };
        match within(third, shared.store.acquire(&s.key, &value, id)).await {
            Ok(Claim::Created { create_revision }) => {
                last_error = None;
                let tenure = Tenure {
                    lease: id,
                    create_revision,
                };
                info!(key = %s.key, holder = %s.holder.name, "this daemon holds the lease: active");
                role.send_replace(Role::Active(tenure));
                keep(&shared, tenure, &role, &stop).await;
                if stop.is_cancelled() {
                    break;
                }
                // The tenure ended; a new lease makes a new one.
                lease = None;
            }
            Ok(Claim::Held { value }) => {
                last_error = None;
                let other: Option<Holder> = serde_json::from_slice(&value).ok();
                let skew = other.as_ref().is_some_and(|h| h.config != s.holder.config);
                let standby = Role::Standby {
                    holder: other.map(|h| h.name),
                    skew,
                };
                role.send_if_modified(|r| {
                    if *r == standby {
                        return false;
                    }
                    if let Role::Standby { holder, skew } = &standby {
                        info!(
                            key = %s.key,
                            holder = holder.as_deref().unwrap_or("(not roster)"),
                            "another daemon holds the lease: standby"
                        );
                        if *skew {
                            warn!(
                                holder = holder.as_deref().unwrap_or("(not roster)"),
                                "roster_lease_config_skew: the active daemon runs with another \
                                 config than this one; this one stays standby"
                            );
                        }
                    }
                    *r = standby;
                    true
                });
                pause(third, &stop).await;
                match within(third, shared.store.keep_alive(id)).await {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => lease = None,
                    Err(e) => {
                        unreachable_store(&role, &mut last_error, &e);
                        if renewed.elapsed() >= s.ttl {
                            lease = None;
                        }
                    }
                }
            }
            Err(e) => {
                unreachable_store(&role, &mut last_error, &e);
                if renewed.elapsed() >= s.ttl {
                    lease = None;
                }
                pause(third, &stop).await;
            }
        }
    }
    if let Some(id) = lease {
        // Best effort: a lease not revoked expires with its TTL.
        if let Err(e) = within(third, shared.store.revoke(id)).await {
            warn!(error = %e, "could not give the lease up; it expires with its TTL");
        } else {
            info!(key = %s.key, "lease given up");
        }
    }
    role.send_replace(Role::Standby {
        holder: None,
        skew: false,
    });
}

/// Keeps `tenure` while it lasts: renews the lease and checks the key every third of the TTL
/// (at once when a fence suspects it). Turns standby while the store cannot say, active again
/// when it says the tenure holds; returns once the tenure is over for sure, or on stop.
async fn keep<S: Store>(
    shared: &Shared<S>,
    tenure: Tenure,
    role: &watch::Sender<Role>,
    stop: &CancellationToken,
) {
    let s = &shared.settings;
    let third = s.third();
    let mut last_proof = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(third) => {}
            () = shared.suspect.notified() => {}
            () = stop.cancelled() => return,
        }
        match prove(shared, tenure).await {
            Ok(true) => {
                last_proof = Instant::now();
                if !role.borrow().is_active() {
                    info!(key = %s.key, "the lease is proven again: active");
                    role.send_replace(Role::Active(tenure));
                }
            }
            Ok(false) => {
                warn!(key = %s.key, "the lease is no longer this daemon's: standby");
                role.send_replace(Role::Standby {
                    holder: None,
                    skew: false,
                });
                return;
            }
            Err(e) => {
                if role.borrow().is_active() {
                    warn!(error = %e, "cannot prove the lease: standby until it can be");
                    role.send_replace(Role::Standby {
                        holder: None,
                        skew: false,
                    });
                }
                if last_proof.elapsed() >= s.ttl {
                    // The lease has expired by now, whatever the store will say later.
                    warn!(key = %s.key, "the lease could not be renewed within its TTL");
                    return;
                }
            }
        }
    }
}

/// Renews the tenure's lease, then checks in one transaction that the key is still bound to it;
/// within a third of the TTL.
async fn prove<S: Store>(shared: &Shared<S>, tenure: Tenure) -> Result<bool, String> {
    let s = &shared.settings;
    let check = async {
        if !shared
            .store
            .keep_alive(tenure.lease)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(false);
        }
        shared
            .store
            .holds(&s.key, tenure.lease, tenure.create_revision)
            .await
            .map_err(|e| e.to_string())
    };
    within(s.third(), check).await
}

/// Runs `f`, an error after `limit`.
async fn within<T, E: fmt::Display>(
    limit: Duration,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        )),
    }
}

/// The store cannot be reached: standby, said once per distinct error.
fn unreachable_store(role: &watch::Sender<Role>, last: &mut Option<String>, e: &str) {
    if last.as_deref() != Some(e) {
        warn!(error = %e, "the lease store cannot be reached: standby");
        *last = Some(e.to_owned());
    }
    role.send_if_modified(|r| {
        let standby = Role::Standby {
            holder: None,
            skew: false,
        };
        if r.is_active() {
            *r = standby;
            true
        } else {
            false
        }
    });
}

/// Sleeps `d`, or until stopped.
async fn pause(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = stop.cancelled() => {}
    }
}

/// The fence of one run: see the module documentation.
struct LeaseFence<S> {
    shared: Arc<Shared<S>>,
    tenure: Tenure,
    /// When the last proof was asked for (not answered: the lease was renewed no earlier).
    proof: Mutex<Option<Instant>>,
    /// Why the run may write no more, once it may not.
    lost: OnceLock<String>,
}

impl<S> fmt::Debug for LeaseFence<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseFence")
            .field("tenure", &self.tenure)
            .field("lost", &self.lost.get())
            .finish_non_exhaustive()
    }
}

impl<S: Store> LeaseFence<S> {
    async fn check(&self, fresh: bool) -> Result<(), String> {
        if let Some(why) = self.lost.get() {
            return Err(why.clone());
        }
        // One proof at a time: the calls waiting meanwhile take its answer.
        let mut proof = self.proof.lock().await;
        if let Some(why) = self.lost.get() {
            return Err(why.clone());
        }
        let third = self.shared.settings.third();
        if !fresh && proof.is_some_and(|at| at.elapsed() < third) {
            return Ok(());
        }
        let asked = Instant::now();
        let why = match prove(&self.shared, self.tenure).await {
            Ok(true) => {
                *proof = Some(asked);
                return Ok(());
            }
            Ok(false) => format!(
                "not written: this daemon no longer holds the lease on {}",
                self.shared.settings.key
            ),
            Err(e) => format!(
                "not written: the lease on {} could not be proven: {e}",
                self.shared.settings.key
            ),
        };
        warn!(reason = %why, "writes stop for this run");
        self.shared.suspect.notify_one();
        Err(self.lost.get_or_init(|| why).clone())
    }
}

impl<S: Store> Fence for LeaseFence<S> {
    fn confirm(&self, fresh: bool) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.check(fresh))
    }
}

#[cfg(test)]
mod tests;

//! The lease's state machine and fences against an in-memory store that keeps etcd's rules
//! (a key bound to a lease goes when the lease expires or is revoked; create revisions grow),
//! with real time and TTLs of a few hundred milliseconds. The same behaviours against a real
//! etcd are in `tests/lease.rs`.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;

#[derive(Default)]
struct Inner {
    next_id: i64,
    revision: i64,
    /// Lease id → when it expires.
    leases: HashMap<i64, (Instant, Duration)>,
    /// Key → (value, lease, create revision).
    keys: HashMap<String, (Vec<u8>, i64, i64)>,
}

impl Inner {
    fn expire(&mut self) {
        let now = Instant::now();
        self.leases.retain(|_, (at, _)| *at > now);
        let leases = &self.leases;
        self.keys
            .retain(|_, (_, lease, _)| leases.contains_key(lease));
    }
}

/// An etcd-like store in memory; `down` makes every call fail.
#[derive(Clone, Default)]
struct MemStore {
    inner: Arc<StdMutex<Inner>>,
    down: Arc<AtomicBool>,
    holds_calls: Arc<AtomicUsize>,
}

impl MemStore {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Result<T, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".to_owned());
        }
        let mut inner = self.inner.lock().unwrap();
        inner.expire();
        Ok(f(&mut inner))
    }

    fn delete(&self, key: &str) {
        self.inner.lock().unwrap().keys.remove(key);
    }
}

impl Store for MemStore {
    type Error = String;

    async fn grant(&self, ttl: Duration) -> Result<i64, String> {
        self.with(|i| {
            i.next_id += 1;
            i.leases.insert(i.next_id, (Instant::now() + ttl, ttl));
            i.next_id
        })
    }

    async fn keep_alive(&self, id: i64) -> Result<bool, String> {
        self.with(|i| match i.leases.get_mut(&id) {
            Some((at, ttl)) => {
                *at = Instant::now() + *ttl;
                true
            }
            None => false,
        })
    }

    async fn revoke(&self, id: i64) -> Result<(), String> {
        self.with(|i| {
            i.leases.remove(&id);
            i.expire();
        })
    }

    async fn acquire(&self, key: &str, value: &[u8], id: i64) -> Result<Claim, String> {
        self.with(|i| {
            if let Some((v, _, _)) = i.keys.get(key) {
                return Ok(Claim::Held { value: v.clone() });
            }
            if !i.leases.contains_key(&id) {
                // As etcd refuses a put with an unknown lease.
                return Err("etcdserver: requested lease not found".to_owned());
            }
            i.revision += 1;
            let rev = i.revision;
            i.keys.insert(key.to_owned(), (value.to_vec(), id, rev));
            Ok(Claim::Created {
                create_revision: rev,
            })
        })?
    }

    async fn holds(&self, key: &str, id: i64, create_revision: i64) -> Result<bool, String> {
        self.holds_calls.fetch_add(1, Ordering::SeqCst);
        self.with(|i| {
            i.keys
                .get(key)
                .is_some_and(|(_, l, r)| *l == id && *r == create_revision)
        })
    }
}

const TTL: Duration = Duration::from_millis(600);

fn settings(name: &str, config: &str) -> LeaseSettings {
    LeaseSettings {
        key: "/roster/leader".to_owned(),
        ttl: TTL,
        holder: Holder {
            name: name.to_owned(),
            config: config.to_owned(),
        },
    }
}

/// Waits until `role` satisfies `ok`, for at most `limit`; how long it took.
async fn until(
    role: &mut watch::Receiver<Role>,
    limit: Duration,
    ok: impl Fn(&Role) -> bool,
) -> Duration {
    let start = Instant::now();
    let reached = tokio::time::timeout(limit, role.wait_for(|r| ok(r)))
        .await
        .map(|r| r.is_ok());
    assert!(
        reached == Ok(true),
        "role not reached within {limit:?}: {:?}",
        *role.borrow()
    );
    start.elapsed()
}

/// `a` active, then `b` standby naming a holder, on `store`; `b`'s role to watch.
async fn active_and_standby(
    store: &MemStore,
) -> (Lease<MemStore>, Lease<MemStore>, watch::Receiver<Role>) {
    let a = Lease::start(store.clone(), settings("a", "h"));
    until(&mut a.role(), TTL, Role::is_active).await;
    let b = Lease::start(store.clone(), settings("b", "h"));
    let mut rb = b.role();
    until(&mut rb, TTL, |r| {
        matches!(
            r,
            Role::Standby {
                holder: Some(_),
                ..
            }
        )
    })
    .await;
    (a, b, rb)
}

fn tenure(role: &watch::Receiver<Role>) -> Tenure {
    match &*role.borrow() {
        Role::Active(t) => *t,
        other => panic!("not active: {other:?}"),
    }
}

#[tokio::test]
async fn one_of_two_is_active_and_the_other_names_it_and_its_config_skew() {
    let store = MemStore::default();
    let a = Lease::start(store.clone(), settings("a", "h1"));
    let mut ra = a.role();
    until(&mut ra, TTL, Role::is_active).await;
    let b = Lease::start(store.clone(), settings("b", "h2"));
    let mut rb = b.role();
    until(&mut rb, TTL, |r| {
        *r == Role::Standby {
            holder: Some("a".to_owned()),
            skew: true,
        }
    })
    .await;
    // Over several renewals, the roles stay put.
    tokio::time::sleep(TTL * 2).await;
    assert!(ra.borrow().is_active());
    assert!(!rb.borrow().is_active());
    a.release().await;
    b.release().await;
}

#[tokio::test]
async fn a_released_lease_passes_to_the_standby_at_its_next_try() {
    let store = MemStore::default();
    let (a, b, mut rb) = active_and_standby(&store).await;
    assert!(matches!(*rb.borrow(), Role::Standby { skew: false, .. }));
    a.release().await;
    // Revoked, not expired: the standby's next try (a third of the TTL) finds the key free.
    let took = until(&mut rb, TTL, Role::is_active).await;
    assert!(took <= TTL / 3 + Duration::from_millis(150), "{took:?}");
    b.release().await;
}

#[tokio::test]
async fn a_dead_holder_is_replaced_within_two_ttls() {
    let store = MemStore::default();
    let (a, b, mut rb) = active_and_standby(&store).await;
    // As kill -9: the task stops renewing and never revokes.
    a.task.abort();
    let took = until(&mut rb, TTL * 3, Role::is_active).await;
    assert!(took < TTL * 2, "takeover took {took:?}, over 2 × TTL");
    b.release().await;
}

#[tokio::test]
async fn a_fence_proves_per_stage_reuses_a_recent_proof_and_fails_for_good_once_the_key_is_gone() {
    let store = MemStore::default();
    let a = Lease::start(store.clone(), settings("a", "h"));
    let mut ra = a.role();
    until(&mut ra, TTL, Role::is_active).await;
    let first = tenure(&ra);
    let fence = a.fence(first);
    let before = store.holds_calls.load(Ordering::SeqCst);
    fence.confirm(true).await.unwrap();
    fence.confirm(false).await.unwrap();
    fence.confirm(false).await.unwrap();
    assert_eq!(store.holds_calls.load(Ordering::SeqCst), before + 1);
    // A fresh proof asks again.
    fence.confirm(true).await.unwrap();
    assert_eq!(store.holds_calls.load(Ordering::SeqCst), before + 2);
    // A proof older than a third of the TTL is not enough.
    tokio::time::sleep(TTL / 3 + Duration::from_millis(20)).await;
    let n = store.holds_calls.load(Ordering::SeqCst);
    fence.confirm(false).await.unwrap();
    assert!(store.holds_calls.load(Ordering::SeqCst) > n);

    store.delete("/roster/leader");
    let why = fence.confirm(true).await.unwrap_err();
    assert!(why.contains("no longer holds the lease"), "{why}");
    // The daemon hears of it at once, not at its next renewal, and (the key being free) holds
    // it again in a new tenure.
    until(&mut ra, TTL / 3, |r| {
        r.is_active() && *r != Role::Active(first)
    })
    .await;
    // For good: this run's fence says no under the new tenure too.
    assert!(fence.confirm(false).await.is_err());
    a.release().await;
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_turns_the_holder_standby_and_its_fences_shut() {
    let store = MemStore::default();
    let a = Lease::start(store.clone(), settings("a", "h"));
    let mut ra = a.role();
    until(&mut ra, TTL, Role::is_active).await;
    let t = tenure(&ra);
    let fence = a.fence(t);
    fence.confirm(true).await.unwrap();
    store.down.store(true, Ordering::SeqCst);
    // Standby within the TTL (at its next renewal, a third of it).
    let took = until(&mut ra, TTL, |r| !r.is_active()).await;
    assert!(took < TTL, "{took:?}");
    let why = fence.confirm(true).await.unwrap_err();
    assert!(why.contains("could not be proven"), "{why}");
    // Back before the lease expired: the same tenure is proven again.
    store.down.store(false, Ordering::SeqCst);
    until(&mut ra, TTL, Role::is_active).await;
    assert_eq!(tenure(&ra), t);
    a.release().await;
}

#[tokio::test]
async fn a_store_down_longer_than_the_ttl_ends_the_tenure() {
    let store = MemStore::default();
    let a = Lease::start(store.clone(), settings("a", "h"));
    let mut ra = a.role();
    until(&mut ra, TTL, Role::is_active).await;
    let t = tenure(&ra);
    store.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(TTL * 2).await;
    assert!(!ra.borrow().is_active());
    store.down.store(false, Ordering::SeqCst);
    until(&mut ra, TTL * 2, Role::is_active).await;
    assert_ne!(
        tenure(&ra),
        t,
        "a lease that expired cannot be the same tenure"
    );
    a.release().await;
}

#[tokio::test]
async fn a_standby_whose_lease_expired_in_an_outage_takes_a_new_one_and_the_free_key() {
    let store = MemStore::default();
    let (a, b, mut rb) = active_and_standby(&store).await;
    // The store goes away for longer than the TTL, and the holder dies meanwhile.
    store.down.store(true, Ordering::SeqCst);
    a.task.abort();
    tokio::time::sleep(TTL * 2).await;
    store.down.store(false, Ordering::SeqCst);
    // Both leases expired in the outage; the standby must not go on trying with its dead one.
    until(&mut rb, TTL * 3, Role::is_active).await;
    b.release().await;
}

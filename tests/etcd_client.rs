//! roster's etcd client (`roster::lease::etcd`) against a real etcd from `support::etcd`: the
//! lease calls, the create-if-absent and holds-it transactions the active/standby pair relies on,
//! failing over between endpoints, bounded waits when etcd is down or hung, and authentication.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use roster::lease::etcd::{Acquire, Etcd, EtcdError, EtcdSettings, LeaseId};
use roster::secret::Secret;
use support::etcd::{Etcd as EtcdServer, dead_port};

const KEY: &str = "/roster/leader";

fn client(server: &EtcdServer) -> Etcd {
    Etcd::new(&EtcdSettings::new(vec![server.endpoint()])).unwrap()
}

/// Acquires `KEY` for `lease`, which must succeed; returns the create revision.
async fn acquire(etcd: &Etcd, value: &str, lease: LeaseId) -> i64 {
    match etcd.acquire(KEY, value.as_bytes(), lease).await.unwrap() {
        Acquire::Acquired { create_revision } => create_revision,
        held => panic!("expected to acquire {KEY}, got {held:?}"),
    }
}

#[tokio::test]
async fn grant_keep_alive_revoke() {
    let server = EtcdServer::start();
    let etcd = client(&server);
    let lease = etcd.grant(Duration::from_secs(10)).await.unwrap();
    assert_ne!(lease.0, 0);
    let ttl = etcd.keep_alive(lease).await.unwrap();
    assert_eq!(ttl, Some(Duration::from_secs(10)));
    // etcd lists it, under the id Display prints.
    assert!(server.ctl(&["lease", "list"]).contains(&lease.to_string()));

    etcd.revoke(lease).await.unwrap();
    assert_eq!(etcd.keep_alive(lease).await.unwrap(), None);
    // Revoking a lease already gone is fine.
    etcd.revoke(lease).await.unwrap();
    // A lease that never was: gone, not an error.
    assert_eq!(etcd.keep_alive(LeaseId(12345)).await.unwrap(), None);
    // Below a second is a second, which etcd raises to its minimum (2 s at its defaults).
    let short = etcd.grant(Duration::from_millis(300)).await.unwrap();
    let ttl = etcd.keep_alive(short).await.unwrap().unwrap();
    assert!(ttl >= Duration::from_secs(1), "{ttl:?}");
}

#[tokio::test]
async fn acquire_then_held_by_another_lease() {
    let server = EtcdServer::start();
    let etcd = client(&server);
    let a = etcd.grant(Duration::from_secs(30)).await.unwrap();
    let b = etcd.grant(Duration::from_secs(30)).await.unwrap();
    assert_eq!(etcd.get(KEY).await.unwrap(), None);

    let rev = acquire(&etcd, "host-a", a).await;
    assert!(rev > 0);
    match etcd.acquire(KEY, b"host-b", b).await.unwrap() {
        Acquire::Held(kv) => {
            assert_eq!(kv.lease, a);
            assert_eq!(kv.value, b"host-a");
            assert_eq!(kv.create_revision, rev);
        }
        other => panic!("b acquired a held key: {other:?}"),
    }
    // Never without a lease: such a key would outlive every daemon.
    let err = etcd.acquire("/other", b"x", LeaseId(0)).await.unwrap_err();
    assert!(matches!(err, EtcdError::Argument(_)), "{err:?}");
    assert_eq!(etcd.get("/other").await.unwrap(), None);
    // The holder asking again (an answer lost, a retry) gets its own key back, unchanged.
    assert_eq!(acquire(&etcd, "host-a", a).await, rev);
    let kv = etcd.get(KEY).await.unwrap().unwrap();
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.lease,
            kv.create_revision,
            kv.mod_revision
        ),
        (&b"host-a"[..], a, rev, rev)
    );
    // etcdctl sees the same key, bound to the same lease.
    assert_eq!(
        server.ctl(&["get", KEY, "--print-value-only"]).trim(),
        "host-a"
    );
}

#[tokio::test]
async fn holds_only_with_this_lease_and_this_creation() {
    let server = EtcdServer::start();
    let etcd = client(&server);
    let a = etcd.grant(Duration::from_secs(30)).await.unwrap();
    let b = etcd.grant(Duration::from_secs(30)).await.unwrap();
    assert!(!etcd.holds(KEY, a, 1).await.unwrap(), "no key yet");
    // Lease 0 and revision 0 describe a missing key, which etcd would compare as equal.
    assert!(!etcd.holds(KEY, LeaseId(0), 0).await.unwrap());

    let rev = acquire(&etcd, "host-a", a).await;
    assert!(etcd.holds(KEY, a, rev).await.unwrap());
    assert!(!etcd.holds(KEY, b, rev).await.unwrap());
    assert!(!etcd.holds(KEY, a, rev + 1).await.unwrap());

    // Deleted and created again by someone else: b holds it now, a does not.
    server.ctl(&["del", KEY]);
    let rev_b = acquire(&etcd, "host-b", b).await;
    assert_ne!(rev_b, rev);
    assert!(!etcd.holds(KEY, a, rev).await.unwrap());
    assert!(etcd.holds(KEY, b, rev_b).await.unwrap());

    // Deleted and created again with a's own lease (by a's twin, say): a new creation, so a's
    // old proof fails.
    server.ctl(&["del", KEY]);
    let rev_a2 = acquire(&etcd, "host-a", a).await;
    assert!(rev_a2 > rev_b);
    assert!(!etcd.holds(KEY, a, rev).await.unwrap());
    assert!(etcd.holds(KEY, a, rev_a2).await.unwrap());

    // Revoking the lease deletes the key.
    etcd.revoke(a).await.unwrap();
    assert!(!etcd.holds(KEY, a, rev_a2).await.unwrap());
    assert_eq!(etcd.get(KEY).await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_lease_holds_nothing() {
    let server = EtcdServer::start();
    let etcd = client(&server);
    let lease = etcd.grant(Duration::from_secs(2)).await.unwrap();
    let rev = acquire(&etcd, "host-a", lease).await;
    assert!(etcd.holds(KEY, lease, rev).await.unwrap());

    // No keep-alive: etcd expires the lease after its TTL (checked every 500 ms).
    let start = Instant::now();
    while etcd.holds(KEY, lease, rev).await.unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the lease outlived its TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "expired early: {:?}",
        start.elapsed()
    );
    assert_eq!(etcd.keep_alive(lease).await.unwrap(), None);
    assert_eq!(etcd.get(KEY).await.unwrap(), None);
    // And the key is free for the next holder.
    let other = etcd.grant(Duration::from_secs(30)).await.unwrap();
    acquire(&etcd, "host-b", other).await;
}

#[tokio::test]
async fn a_dead_first_endpoint_is_skipped() {
    let server = EtcdServer::start();
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let mut settings = EtcdSettings::new(vec![dead, server.endpoint()]);
    settings.timeout = Duration::from_secs(3);
    let etcd = Etcd::new(&settings).unwrap();
    let lease = etcd.grant(Duration::from_secs(30)).await.unwrap();
    let rev = acquire(&etcd, "host-a", lease).await;
    assert!(etcd.holds(KEY, lease, rev).await.unwrap());
    assert_eq!(etcd.get(KEY).await.unwrap().unwrap().lease, lease);
}

#[tokio::test]
async fn a_hung_first_endpoint_leaves_time_for_the_next() {
    let hung = EtcdServer::start();
    let server = EtcdServer::start();
    hung.pause();
    let mut settings = EtcdSettings::new(vec![hung.endpoint(), server.endpoint()]);
    settings.timeout = Duration::from_secs(4);
    let etcd = Etcd::new(&settings).unwrap();
    // The hung member accepts the connection and never answers: its share of the call's time
    // runs out, and the second member answers.
    let start = Instant::now();
    let result = etcd.get(KEY).await;
    let took = start.elapsed();
    hung.resume();
    // Either the connect share ran out (the kernel did not complete the handshake) or the
    // request's did; in both cases the second endpoint must have been reached in time.
    assert_eq!(result.unwrap(), None, "after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn etcd_down_is_an_error_within_the_timeout_and_heals_on_restart() {
    let mut server = EtcdServer::start();
    let mut settings = EtcdSettings::new(vec![server.endpoint()]);
    settings.timeout = Duration::from_secs(2);
    let etcd = Etcd::new(&settings).unwrap();
    let lease = etcd.grant(Duration::from_secs(60)).await.unwrap();
    let rev = acquire(&etcd, "host-a", lease).await;

    // Stopped: connections are refused.
    server.stop();
    let start = Instant::now();
    let err = etcd.holds(KEY, lease, rev).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains(&server.endpoint()), "{err}");
    assert!(start.elapsed() < Duration::from_millis(2500));

    // Back with its data: the lease and the key survived (etcd renews leases on restart).
    server.restart();
    assert!(etcd.holds(KEY, lease, rev).await.unwrap());
    assert!(etcd.keep_alive(lease).await.unwrap().is_some());

    // Hung: the connection is accepted and nothing answers; the call still ends in time.
    server.pause();
    let start = Instant::now();
    let err = etcd.holds(KEY, lease, rev).await.unwrap_err();
    let took = start.elapsed();
    server.resume();
    assert!(err.is_unreachable(), "{err}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert!(etcd.holds(KEY, lease, rev).await.unwrap());

    // Killed (a crash): the same error, and the same recovery.
    server.kill();
    assert!(etcd.get(KEY).await.unwrap_err().is_unreachable());
    server.restart();
    assert!(etcd.holds(KEY, lease, rev).await.unwrap());
}

#[tokio::test]
async fn authentication() {
    // Tokens that expire after a second, to see the client authenticate again.
    let mut server = EtcdServer::start_with(&["--auth-token-ttl=1"]);
    server.ctl(&["user", "add", "root:root-pw"]);
    server.ctl(&["user", "grant-role", "root", "root"]);
    server.ctl(&["user", "add", "roster:roster-pw"]);
    server.ctl(&["role", "add", "leader"]);
    server.ctl(&["role", "grant-permission", "leader", "readwrite", KEY]);
    server.ctl(&["user", "grant-role", "roster", "leader"]);
    server.ctl(&["auth", "enable"]);

    let with = |user: Option<&str>, password: &str| {
        let mut s = EtcdSettings::new(vec![server.endpoint()]);
        s.username = user.map(str::to_owned);
        s.password = user.map(|_| Secret::new(password));
        Etcd::new(&s).unwrap()
    };

    // A wrong password fails, and the error names no password.
    let err = with(Some("roster"), "wrong-pw").get(KEY).await.unwrap_err();
    assert!(matches!(err, EtcdError::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-pw"), "{err}");
    // No user while etcd wants one.
    let err = with(None, "").get(KEY).await.unwrap_err();
    assert!(matches!(err, EtcdError::Auth { .. }), "{err:?}");

    let etcd = with(Some("roster"), "roster-pw");
    assert!(!format!("{etcd:?}").contains("roster-pw"));
    let lease = etcd.grant(Duration::from_secs(60)).await.unwrap();
    let rev = acquire(&etcd, "host-a", lease).await;
    assert!(etcd.holds(KEY, lease, rev).await.unwrap());
    assert_eq!(etcd.get(KEY).await.unwrap().unwrap().value, b"host-a");
    assert!(etcd.keep_alive(lease).await.unwrap().is_some());
    // A key outside the user's permission.
    let err = etcd.get("/elsewhere").await.unwrap_err();
    assert!(matches!(err, EtcdError::Auth { .. }), "{err:?}");

    // The token expires; etcd refuses it (gRPC code 16) and the client authenticates again on
    // its own.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(etcd.holds(KEY, lease, rev).await.unwrap());

    // A restart drops the client's pooled connection under it (and etcd restores its tokens
    // from its log): the next call connects again.
    server.restart();
    assert!(etcd.holds(KEY, lease, rev).await.unwrap());

    etcd.revoke(lease).await.unwrap();
    assert_eq!(etcd.get(KEY).await.unwrap(), None);
}

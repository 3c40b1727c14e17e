//! `[[notify]]` webhooks against a local HTTP receiver: what the body says after real runs, which
//! outcomes `on` lets through, the signature (checked here with the hmac crate over the raw bytes
//! received), retries (which answers, how many times), and that sending never holds up the run:
//! `run_finished` returns at once, `flush` waits within its limit, a full queue drops.

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Semaphore;

use roster::config::notify::{NotifyConfig, NotifyOutcome};
use roster::daemon::webhook::{Limits, Notifier};
use roster::reconcile::{Mode, TargetOutcome, TargetReport};
use roster::retry::RetryPolicy;
use roster::run::{RunOptions, RunReport, run};
use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use roster::target::ObserveError;
use support::{World, group};

/// What the receiver answers to one request.
#[derive(Clone, Debug)]
enum Reply {
    /// This status at once.
    Status(u16),
    /// This status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// 200 after this long.
    Slow(Duration),
    /// 200 once the test adds a permit to the gate.
    Gated,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Log {
    got: Vec<Got>,
    /// Answers in order; 200 once they run out (or `then` forever, when set).
    script: VecDeque<Reply>,
    then: Option<Reply>,
}

/// A local webhook receiver on 127.0.0.1:0 that records every request.
#[derive(Clone)]
struct Receiver {
    log: Arc<Mutex<Log>>,
    gate: Arc<Semaphore>,
    addr: SocketAddr,
}

impl Receiver {
    async fn start(script: Vec<Reply>, then: Option<Reply>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let r = Receiver {
            log: Arc::new(Mutex::new(Log {
                got: Vec::new(),
                script: script.into(),
                then,
            })),
            gate: Arc::new(Semaphore::new(0)),
            addr: listener.local_addr().expect("addr"),
        };
        let app = Router::new().fallback(hook).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.log.lock().expect("lock").got.clone()
    }

    /// Waits until `n` requests have come, for at most 5 seconds.
    async fn wait_for(&self, n: usize) {
        let start = Instant::now();
        while self.got().len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{} requests came, not {n}",
                self.got().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn hook(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut log = r.log.lock().expect("lock");
        log.got.push(Got {
            path: uri.path().to_owned(),
            headers,
            body,
            at: Instant::now(),
        });
        let then = log.then.clone();
        log.script
            .pop_front()
            .or(then)
            .unwrap_or(Reply::Status(200))
    };
    let status = |s: u16| StatusCode::from_u16(s).expect("status");
    match reply {
        Reply::Status(s) => (status(s), "answer").into_response(),
        Reply::RetryAfter(s, secs) => {
            (status(s), [("retry-after", secs.to_string())], "later").into_response()
        }
        Reply::Slow(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Reply::Gated => {
            if let Ok(p) = r.gate.acquire().await {
                p.forget();
            }
            StatusCode::OK.into_response()
        }
    }
}

/// Short retry delays, so that retries take milliseconds.
fn fast() -> Limits {
    Limits {
        retry: RetryPolicy {
            max_retries: 4,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            budget: Duration::from_secs(10),
        },
        ..Limits::default()
    }
}

const USERS: &str = r#"users = ["alice", "bob", "carol", "dave", "erin"]"#;

/// The Contensis simulator holds A (alice, bob, carol) and B (bob); `extra` goes below the
/// target (a `[[notify]]` table can come there, after the target's keys).
async fn world(groups: &str, extra: &str) -> World {
    let seed = format!(
        "{USERS}\n[[contensis.group]]\nname = \"A\"\nmembers = [\"alice\", \"bob\", \"carol\"]\n\
         [[contensis.group]]\nname = \"B\"\nmembers = [\"bob\"]\n"
    );
    World::new(&seed, groups, extra).await
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A real apply that `max_deletes` refuses: the notification, read from roster.toml with its
/// `secret_file`, names the rule and its reason, and its signature is the HMAC of the raw body.
#[tokio::test]
async fn a_refused_run_is_sent_signed_with_its_rule() {
    let rx = Receiver::start(Vec::new(), None).await;
    let notify = format!(
        "\n[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\nsecret_file = \"hook-key\"\n",
        rx.url("/hook")
    );
    let w = world(
        &(group("A", "", &["alice"], &[]) + &group("B", "", &["bob"], &[])),
        &format!("max_deletes = 1\n{notify}"),
    )
    .await;
    std::fs::write(w.dir.path().join("hook-key"), "k3y-for-hmac\n").expect("write key");
    let config = w.config();
    assert_eq!(config.notify.len(), 1);
    let report = w.apply(None).await;
    assert!(matches!(
        report.targets[0].outcome,
        TargetOutcome::Refused(_)
    ));

    let n = Notifier::with_limits(&config.notify, fast());
    n.run_finished(Ok(&report), Mode::Apply);
    n.flush(Duration::from_secs(5)).await;

    let got = rx.got();
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["run_id"], report.run_id.as_str());
    assert_eq!(body["target"], "cms");
    assert_eq!(body["outcome"], "refused");
    assert_eq!(body["dry_run"], false);
    assert_eq!(body["summary"]["remove"], 2);
    assert_eq!(body["summary"]["applied"], 0);
    assert_eq!(body["refusals"][0]["kind"], "too_many_deletes");
    let reason = body["refusals"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_deletes = 1"), "{reason}");
    assert_eq!(body["failures"], Value::Array(Vec::new()));
    assert_eq!(
        body["text"].as_str().unwrap_or_default(),
        format!("roster: cms: refused: {reason}")
    );
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert!(
        got[0]
            .header("user-agent")
            .is_some_and(|u| u.starts_with("roster/"))
    );
    // The signature, recomputed from the bytes that arrived (the key without its newline).
    let expected = format!("sha256={}", hmac_hex(b"k3y-for-hmac", &got[0].body));
    assert_eq!(got[0].header("x-roster-signature"), Some(expected.as_str()));
    assert_ne!(
        got[0].header("x-roster-signature"),
        Some(format!("sha256={}", hmac_hex(b"k3y-for-hmac\n", &got[0].body)).as_str())
    );
}

/// A real apply where the server refuses one call: the failure names the group, the call and
/// the server's answer; the changes that went through are counted.
#[tokio::test]
async fn a_failed_change_names_its_group_call_and_the_servers_message() {
    let rx = Receiver::start(Vec::new(), None).await;
    let w = world(
        &(group("A", "", &["alice", "bob"], &[]) + &group("B", "", &["bob", "dave"], &[])),
        "",
    )
    .await;
    let a_id = w.sim.contensis.group("A").expect("A").id;
    w.sim.contensis.set_faults(Faults {
        error_rate: 1.0,
        error_status: 400,
        fail_path: Some(format!("/groups/{a_id}/users/")),
        ..Faults::default()
    });
    let report = w.apply(None).await;
    let hook = NotifyConfig::webhook(&rx.url("/hook"), &[NotifyOutcome::Failed]);
    let n = Notifier::with_limits(&[hook], fast());
    n.run_finished(Ok(&report), Mode::Apply);
    n.flush(Duration::from_secs(5)).await;

    let got = rx.got();
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["outcome"], "failed");
    assert_eq!(body["summary"]["failed"], 1);
    assert_eq!(body["summary"]["applied"], 1);
    let f = &body["failures"][0];
    assert_eq!(f["target"], "cms");
    assert_eq!(f["group"], "A");
    let call = f["call"].as_str().unwrap_or_default();
    assert!(
        call.starts_with(&format!("DELETE /api/security/groups/{a_id}/users/")),
        "{call}"
    );
    let message = f["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("cms: {call} (group \"A\"): 400")),
        "{message}"
    );
    assert_eq!(body["failures"].as_array().map(Vec::len), Some(1));
    let text = body["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(
            "roster: cms: failed: 1 of 2 changes failed, 1 applied; first: cms: DELETE"
        ),
        "{text}"
    );
    assert!(got[0].header("x-roster-signature").is_none());
}

/// `on` decides: the default (refused, failed) sends nothing for a clean apply; `applied` gets it.
#[tokio::test]
async fn an_applied_run_goes_only_where_applied_is_asked_for() {
    let rx = Receiver::start(Vec::new(), None).await;
    let w = world(
        &(group("A", "", &["alice", "bob", "carol", "dave"], &[]) + &group("B", "", &["bob"], &[])),
        &format!(
            "\n[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\n\n[[notify]]\ntype = \"webhook\"\n\
             url = \"{}\"\non = [\"applied\"]\n",
            rx.url("/default"),
            rx.url("/applied")
        ),
    )
    .await;
    let config = w.config();
    let report = w.apply(None).await;
    let n = Notifier::with_limits(&config.notify, fast());
    n.run_finished(Ok(&report), Mode::Apply);
    n.flush(Duration::from_secs(5)).await;
    let got = rx.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/applied");
    let body = got[0].json();
    assert_eq!(body["outcome"], "applied");
    assert_eq!(body["summary"]["add"], 1);
    assert_eq!(body["summary"]["applied"], 1);
    assert_eq!(
        body["text"],
        "roster: cms: applied: 1 change (1 to add, 0 to change, 0 to remove)"
    );

    // The next run is in sync: nothing to say, even to `applied`.
    let report = w.apply(None).await;
    n.run_finished(Ok(&report), Mode::Apply);
    n.flush(Duration::from_secs(5)).await;
    assert_eq!(rx.got().len(), 1);
}

/// A run that cannot start is one `failed` notification without a target.
#[tokio::test]
async fn a_run_that_cannot_start_is_sent_without_a_target() {
    let rx = Receiver::start(Vec::new(), None).await;
    let w = world(&group("A", "", &["alice"], &[]), "").await;
    let opts = RunOptions {
        targets: vec!["nope".to_owned()],
        ..RunOptions::default()
    };
    let err = run(&w.config(), &opts).await.expect_err("no such target");
    let hook = NotifyConfig::webhook(&rx.url("/hook"), &[NotifyOutcome::Failed]);
    let n = Notifier::with_limits(&[hook], fast());
    n.run_finished(Err(&err), Mode::Apply);
    n.flush(Duration::from_secs(5)).await;
    let body = rx.got()[0].json();
    assert_eq!(body["target"], Value::Null);
    assert_eq!(body["run_id"], Value::Null);
    assert_eq!(body["outcome"], "failed");
    assert_eq!(body["failures"][0]["message"], err.to_string());
}

/// A run report of `n` targets that could not be read.
fn unread(n: usize) -> RunReport {
    RunReport {
        run_id: "test".to_owned(),
        targets: (0..n)
            .map(|i| TargetReport {
                target: format!("t{i}"),
                plan: None,
                outcome: TargetOutcome::ObserveFailed(ObserveError::Setup {
                    target: format!("t{i}"),
                    message: "down".to_owned(),
                }),
                durations: Vec::new(),
                fingerprint: None,
            })
            .collect(),
        ..RunReport::default()
    }
}

/// Sends one failed-target notification to a receiver answering `script`, and returns what
/// arrived once `flush` is done.
async fn deliver(script: Vec<Reply>, timeout: Option<Duration>) -> Vec<Got> {
    let rx = Receiver::start(script, None).await;
    let mut hook = NotifyConfig::webhook(&rx.url("/hook"), &[NotifyOutcome::Failed]);
    if let Some(t) = timeout {
        hook.timeout = t;
    }
    let n = Notifier::with_limits(&[hook], fast());
    n.run_finished(Ok(&unread(1)), Mode::Apply);
    n.flush(Duration::from_secs(8)).await;
    assert_eq!(n.pending(), 0);
    rx.got()
}

#[tokio::test]
async fn server_errors_are_retried_until_accepted() {
    let got = deliver(vec![Reply::Status(500), Reply::Status(503)], None).await;
    assert_eq!(got.len(), 3);
    // Every attempt sends the same bytes.
    assert!(got.iter().all(|g| g.body == got[0].body));
}

#[tokio::test]
async fn attempts_are_bounded() {
    let got = deliver(vec![Reply::Status(502); 10], None).await;
    // The first attempt and `max_retries` more.
    assert_eq!(got.len(), 5);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    assert_eq!(deliver(vec![Reply::Status(400)], None).await.len(), 1);
    assert_eq!(deliver(vec![Reply::Status(404)], None).await.len(), 1);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let got = deliver(vec![Reply::RetryAfter(429, 1)], None).await;
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let got = deliver(
        vec![Reply::Slow(Duration::from_secs(5))],
        Some(Duration::from_millis(200)),
    )
    .await;
    assert_eq!(got.len(), 2);
}

/// The run never waits for the receiver: `run_finished` returns at once while it hangs, and
/// `flush` gives up at its limit.
#[tokio::test]
async fn a_hanging_receiver_holds_up_nothing() {
    let rx = Receiver::start(Vec::new(), Some(Reply::Slow(Duration::from_secs(30)))).await;
    let hook = NotifyConfig::webhook(&rx.url("/hook"), &[NotifyOutcome::Failed]);
    let n = Notifier::with_limits(&[hook], fast());
    let report = unread(3);
    let start = Instant::now();
    n.run_finished(Ok(&report), Mode::Apply);
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(n.pending(), 3);
    rx.wait_for(3).await;

    let start = Instant::now();
    n.flush(Duration::from_millis(300)).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(n.pending(), 3);
}

/// `flush` returns when the last notification is sent, not before.
#[tokio::test]
async fn flush_waits_for_what_is_in_flight() {
    let rx = Receiver::start(vec![Reply::Slow(Duration::from_millis(400))], None).await;
    let hook = NotifyConfig::webhook(&rx.url("/hook"), &[NotifyOutcome::Failed]);
    let n = Notifier::with_limits(&[hook], fast());
    let start = Instant::now();
    n.run_finished(Ok(&unread(1)), Mode::Apply);
    n.flush(Duration::from_secs(10)).await;
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(n.pending(), 0);
    assert_eq!(rx.got().len(), 1);
}

/// Past `queue` notifications waiting or in flight, more are dropped (and counted), not queued.
#[tokio::test]
async fn a_full_queue_drops_what_does_not_fit() {
    let rx = Receiver::start(Vec::new(), Some(Reply::Gated)).await;
    let hook = NotifyConfig::webhook(&rx.url("/hook"), &[NotifyOutcome::Failed]);
    let limits = Limits {
        queue: 2,
        concurrency: 1,
        ..fast()
    };
    let n = Notifier::with_limits(&[hook], limits);
    n.run_finished(Ok(&unread(5)), Mode::Apply);
    assert_eq!((n.pending(), n.dropped()), (2, 3));
    // One at a time: the second waits for the first's answer.
    rx.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.got().len(), 1);

    rx.gate.add_permits(10);
    n.flush(Duration::from_secs(5)).await;
    assert_eq!(n.pending(), 0);
    let targets: Vec<Value> = rx
        .got()
        .iter()
        .map(|g| g.json()["target"].clone())
        .collect();
    assert_eq!(targets, ["t0", "t1"]);
}

/// `[[notify]]` mistakes are reported at their line and column, as every config key is.
#[test]
fn notify_keys_are_checked_at_their_place() {
    let text = "[[source]]\ntype = \"toml\"\npath = \"groups\"\n\n[[notify]]\ntype = \"webhook\"\n\
                url = \"https://hooks.example.com/T/B/secret-token\"\nsecret = \"x\"\n\
                on = [\"refused\", \"drift\"]\n";
    let err = roster::config::parse(text, std::path::Path::new("roster.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "roster.toml:1:1: warning: no [[target]]: there is nothing to reconcile\n\
         roster.toml:8:1: unknown key `secret` in [[notify]]; expected one of `type`, `url`, \
         `secret_file`, `on`, `timeout`\n\
         roster.toml:9:18: unknown value `drift` in `on`; expected any of `refused`, `failed`, \
         `applied`"
    );
    assert!(!err.contains("secret-token"));
}

//! The daemon's listener: `GET /healthz`, `GET /metrics` and `POST /trigger`; every other path
//! is a 404.
//!
//! `/healthz` answers 200 `{"status":"ok"}` while the last run of every target succeeded (or no
//! run happened yet), and 503 `{"status":"failing","failing":["dns",...]}` otherwise, so that a
//! load balancer or `curl --fail` can use it as it is. With `[daemon.lease]` a healthy standby
//! answers 200 `{"status":"standby"}` and the body says `"role"` (`active` or `standby`).
//! `/metrics` is the Prometheus text format.
//!
//! `POST /trigger` starts a run now (after the debounce's quiet period), answering 202. Without
//! a `trigger_token`, only loopback callers may (403 otherwise); with one, every caller needs
//! `Authorization: Bearer <token>` (401 otherwise), compared in constant time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::metrics::Metrics;
use super::trigger::Trigger;
use crate::secret::Secret;

/// The content type of the Prometheus text exposition format `/metrics` writes.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where `POST /trigger` sends its triggers, and the token it asks for.
#[derive(Clone, Debug)]
pub struct TriggerGate {
    tx: UnboundedSender<Trigger>,
    /// Shared with the daemon, which replaces it on a reload.
    token: Arc<Mutex<Option<Secret>>>,
}

impl TriggerGate {
    /// A gate that sends to `tx` and asks for `token`, if any.
    pub fn new(tx: UnboundedSender<Trigger>, token: Option<Secret>) -> Self {
        Self {
            tx,
            token: Arc::new(Mutex::new(token)),
        }
    }

    /// Replaces the token (a reload).
    pub fn set_token(&self, token: Option<Secret>) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// Whether a caller at `peer` with these headers may trigger a run; the refusal otherwise.
    fn admit(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Refused> {
        let token = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(token) = token else {
            if peer.ip().is_loopback() {
                return Ok(());
            }
            return Err(Refused::NotLoopback);
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
            Ok(())
        } else {
            Err(Refused::Token)
        }
    }
}

/// Why `POST /trigger` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// No token is configured and the caller is not on loopback.
    NotLoopback,
    /// A token is configured and the caller did not give it.
    Token,
}

impl Refused {
    fn status(self) -> StatusCode {
        match self {
            Refused::NotLoopback => StatusCode::FORBIDDEN,
            Refused::Token => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NotLoopback => refusal(
                self.status(),
                "POST /trigger answers loopback callers only; set [daemon] trigger_token_file to \
                 allow others with a bearer token",
            ),
            Refused::Token => {
                let mut r = refusal(self.status(), "a valid bearer token is required");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                r
            }
        }
    }
}

/// A JSON refusal: `{"status":"refused","reason":…}`.
fn refusal(code: StatusCode, reason: &'static str) -> Response {
    let body = serde_json::json!({ "status": "refused", "reason": reason });
    (code, axum::Json(body)).into_response()
}

/// What the routes read.
#[derive(Clone, Debug)]
struct Shared {
    metrics: Metrics,
    trigger: Option<TriggerGate>,
}

/// Binds `listen` and serves `/healthz` and `/metrics` from `metrics`, and `/trigger` through
/// `trigger` when given, until `stop` is cancelled. Returns the bound address and the server task.
pub async fn serve(
    listen: SocketAddr,
    metrics: Metrics,
    trigger: Option<TriggerGate>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(Shared { metrics, trigger });
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    });
    Ok((addr, task))
}

/// The routes; axum answers 404 for any other path and 405 for other methods on these.
fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .route("/trigger", post(trigger))
        .with_state(shared)
}

/// The `/healthz` body; a struct rather than `json!` so that `status` comes first.
#[derive(serde::Serialize)]
struct HealthBody {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failing: Vec<String>,
}

/// `GET /healthz`.
async fn healthz(State(shared): State<Shared>) -> Response {
    let health = shared.metrics.health();
    let (code, status) = match (health.ok, health.active) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "failing"),
        (true, Some(false)) => (StatusCode::OK, "standby"),
        (true, _) => (StatusCode::OK, "ok"),
    };
    let body = HealthBody {
        status,
        role: health.active.map(|a| if a { "active" } else { "standby" }),
        failing: health.failing,
    };
    (code, axum::Json(body)).into_response()
}

/// `GET /metrics`.
async fn prometheus(State(shared): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        shared.metrics.render(),
    )
        .into_response()
}

/// `POST /trigger`.
async fn trigger(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(gate) = &shared.trigger else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(refused) = gate.admit(peer, &headers) {
        warn!(peer = %peer, status = refused.status().as_u16(), "POST /trigger refused");
        return refused.into_response();
    }
    info!(peer = %peer, "run triggered by POST /trigger");
    if gate.tx.send(Trigger::now("http", "http")).is_err() {
        // The loop has ended: roster is stopping.
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "roster is stopping");
    }
    let body = serde_json::json!({ "status": "queued" });
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::run::RunError;
    use crate::source::SourceError;

    fn client() -> reqwest::Client {
        // No proxy: a CI machine's HTTP_PROXY must not intercept loopback.
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    #[tokio::test]
    async fn serves_health_and_metrics_on_loopback_until_stopped() {
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (addr, task) = serve(listen, metrics.clone(), None, stop.clone())
            .await
            .expect("bind");
        assert_ne!(addr.port(), 0);
        let http = client();
        let base = format!("http://{addr}");

        let r = http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[reqwest::header::CONTENT_TYPE],
            "application/json"
        );
        assert_eq!(r.text().await.expect("body"), r#"{"status":"ok"}"#);

        let r = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[reqwest::header::CONTENT_TYPE],
            METRICS_CONTENT_TYPE
        );
        let body = r.text().await.expect("body");
        assert!(
            body.contains("# TYPE roster_runs_total counter\n"),
            "{body}"
        );
        assert!(
            body.contains("\nroster_runs_total{outcome=\"error\"} 0\n"),
            "{body}"
        );

        // The server reads the metrics the loop writes: a failed run shows at once.
        metrics.record_run_error(&RunError::Source(SourceError::Invalid(Vec::new())));
        let r = http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.text().await.expect("body"),
            r#"{"status":"failing","failing":["source"]}"#
        );
        let body = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        assert!(
            body.contains("\nroster_runs_total{outcome=\"error\"} 1\n"),
            "{body}"
        );

        let r = http.get(format!("{base}/")).send().await.expect("root");
        assert_eq!(r.status(), 404);
        let r = http
            .get(format!("{base}/metrics/x"))
            .send()
            .await
            .expect("other");
        assert_eq!(r.status(), 404);

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the server stops when cancelled")
            .expect("server task")
            .expect("server result");
        assert!(http.get(format!("{base}/healthz")).send().await.is_err());
    }

    #[tokio::test]
    async fn a_taken_address_is_an_error() {
        let stop = CancellationToken::new();
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (addr, _task) = serve(listen, Metrics::new(), None, stop.clone())
            .await
            .expect("bind");
        assert!(
            serve(addr, Metrics::new(), None, stop.clone())
                .await
                .is_err()
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn trigger_queues_a_run_for_loopback_callers_and_asks_others_for_a_token() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let gate = TriggerGate::new(tx, None);
        let stop = CancellationToken::new();
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (addr, _task) = serve(listen, Metrics::new(), Some(gate.clone()), stop.clone())
            .await
            .expect("bind");
        let http = client();
        let url = format!("http://{addr}/trigger");

        let r = http.post(&url).send().await.expect("trigger");
        assert_eq!(r.status(), 202);
        let t = rx.try_recv().expect("a trigger reached the loop");
        assert_eq!((t.source.as_str(), t.kind), ("http", "http"));
        assert_eq!(
            http.get(&url).send().await.expect("get").status(),
            405,
            "only POST triggers"
        );

        // Without a token, a caller from elsewhere is refused.
        let far: SocketAddr = "192.0.2.7:40000".parse().expect("address");
        let refused = gate.admit(far, &HeaderMap::new()).expect_err("refused");
        assert_eq!(refused.into_response().status(), 403);
        assert!(gate.admit(addr, &HeaderMap::new()).is_ok());

        // With a token, everyone needs it, loopback too.
        gate.set_token(Some(Secret::new("s3cret-token")));
        let r = http.post(&url).send().await.expect("trigger");
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let r = http
            .post(&url)
            .bearer_auth("s3cret-tokeN")
            .send()
            .await
            .expect("trigger");
        assert_eq!(r.status(), 401);
        let r = http
            .post(&url)
            .bearer_auth("s3cret-token-and-more")
            .send()
            .await
            .expect("trigger");
        assert_eq!(r.status(), 401);
        assert!(rx.try_recv().is_err(), "a refused call triggered a run");
        let r = http
            .post(&url)
            .bearer_auth("s3cret-token")
            .send()
            .await
            .expect("trigger");
        assert_eq!(r.status(), 202);
        assert!(rx.try_recv().is_ok());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_static("Bearer s3cret-token"),
        );
        assert!(gate.admit(far, &headers).is_ok());
        stop.cancel();
    }

    #[tokio::test]
    async fn healthz_says_standby_and_the_role_with_a_lease() {
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (addr, _task) = serve(listen, metrics.clone(), None, stop.clone())
            .await
            .expect("bind");
        let http = client();
        let get = async || {
            let r = http
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .expect("healthz");
            (r.status().as_u16(), r.text().await.expect("body"))
        };
        metrics.set_lease(super::super::metrics::LeaseState {
            active: false,
            skew: false,
        });
        assert_eq!(
            get().await,
            (200, r#"{"status":"standby","role":"standby"}"#.to_owned())
        );
        metrics.set_lease(super::super::metrics::LeaseState {
            active: true,
            skew: false,
        });
        assert_eq!(
            get().await,
            (200, r#"{"status":"ok","role":"active"}"#.to_owned())
        );
        metrics.record_run_error(&RunError::Source(SourceError::Invalid(Vec::new())));
        assert_eq!(
            get().await,
            (
                503,
                r#"{"status":"failing","role":"active","failing":["source"]}"#.to_owned()
            )
        );
        stop.cancel();
    }
}

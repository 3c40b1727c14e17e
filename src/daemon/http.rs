//! The daemon's listener: `GET /healthz` and `GET /metrics`; every other path is a 404.
//!
//! `/healthz` answers 200 `{"status":"ok"}` while the last run of every target succeeded (or no
//! run happened yet), and 503 `{"status":"failing","failing":["dns",...]}` otherwise, so that a
//! load balancer or `curl --fail` can use it as it is. `/metrics` is the Prometheus text format.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// The content type of the Prometheus text exposition format `/metrics` writes.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `listen` and serves `/healthz` and `/metrics` from `metrics` until `stop` is cancelled.
/// Returns the bound address and the server task.
pub async fn serve(
    listen: SocketAddr,
    metrics: Metrics,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(metrics);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok((addr, task))
}

/// The routes; axum answers 404 for any other path and 405 for other methods on these.
fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .with_state(metrics)
}

/// The `/healthz` body; a struct rather than `json!` so that `status` comes first.
#[derive(serde::Serialize)]
struct HealthBody {
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failing: Vec<String>,
}

/// `GET /healthz`.
async fn healthz(State(metrics): State<Metrics>) -> Response {
    let health = metrics.health();
    let (code, status) = if health.ok {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    };
    let body = HealthBody {
        status,
        failing: health.failing,
    };
    (code, axum::Json(body)).into_response()
}

/// `GET /metrics`.
async fn prometheus(State(metrics): State<Metrics>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        metrics.render(),
    )
        .into_response()
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
        let (addr, task) = serve(listen, metrics.clone(), stop.clone())
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
        let (addr, _task) = serve(listen, Metrics::new(), stop.clone())
            .await
            .expect("bind");
        assert!(serve(addr, Metrics::new(), stop.clone()).await.is_err());
        stop.cancel();
    }
}

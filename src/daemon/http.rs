//! The daemon's listener: `GET /healthz` and `GET /metrics`. (Skeleton: filled in by the
//! metrics work.)

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Binds `listen` and serves `/healthz` and `/metrics` from `metrics` until `stop` is cancelled.
/// Returns the bound address and the server task.
pub async fn serve(
    listen: SocketAddr,
    metrics: Metrics,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let _ = metrics;
    let app = axum::Router::new();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok((addr, task))
}

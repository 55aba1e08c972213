//! `/metrics` over HTTP: a route to merge into a service's router, and a listener of its
//! own for services whose main port is not HTTP (the manager's is pure gRPC).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{PROMETHEUS_CONTENT_TYPE, Registry};

/// The path Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";

async fn metrics(State(registry): State<Registry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        registry.render(),
    )
}

/// The `/metrics` route over `registry`.
pub fn metrics_router<S>(registry: Registry) -> Router<S> {
    Router::new()
        .route(METRICS_PATH, get(metrics))
        .with_state(registry)
}

/// Serves `/metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router::<()>(registry))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

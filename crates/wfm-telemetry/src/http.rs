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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::metrics::{BUILD_INFO, sample};

    #[tokio::test]
    async fn metrics_serves_openmetrics_with_process_series_and_build_info() {
        let registry = Registry::new();
        registry.register_process("wfm-test");
        registry.counter("t_requests_total", "Requests.", &[]).inc();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_metrics(listener, registry, stop.clone()));

        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request =
            format!("GET {METRICS_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {PROMETHEUS_CONTENT_TYPE}")),
            "{head}"
        );
        assert_eq!(sample(body, "t_requests_total"), Some(1.0));
        let build = format!(
            "{BUILD_INFO}{{binary=\"wfm-test\",version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(sample(body, &build), Some(1.0), "{body}");
        if cfg!(target_os = "linux") {
            for series in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_virtual_memory_bytes",
                "process_open_fds",
                "process_max_fds",
                "process_start_time_seconds",
            ] {
                assert!(sample(body, series).is_some(), "no {series} in {body}");
            }
            assert!(sample(body, "process_resident_memory_bytes").unwrap() > 0.0);
        }
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}

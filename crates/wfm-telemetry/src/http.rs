//! `/metrics` over HTTP: a route to merge into a service's router, and a listener of its
//! own for services whose main port is not HTTP (the manager's is pure gRPC), which also
//! answers the plaintext `/healthz` and `/readyz` probes that a kubelet can reach when the
//! main port requires TLS and client certificates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{PROMETHEUS_CONTENT_TYPE, Registry};

/// The path Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";
/// Liveness: 200 while the process serves HTTP.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness: 200 while the service reports itself serving.
pub const READYZ_PATH: &str = "/readyz";

/// Whether a service is ready for work: set wherever its health service is, so that the
/// HTTP probes and the gRPC health check tell the same.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Sets readiness.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the service is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Arc<Readiness>>) -> (StatusCode, &'static str) {
    if readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not serving\n")
    }
}

/// `/healthz` and `/readyz` over `readiness`.
pub fn probe_router<S>(readiness: Arc<Readiness>) -> Router<S> {
    Router::new()
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz))
        .with_state(readiness)
}

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

/// Serves `/metrics` on `listener` until `shutdown` is cancelled, and the probes when
/// `readiness` is given.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Registry,
    readiness: Option<Arc<Readiness>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut router = metrics_router::<()>(registry);
    if let Some(readiness) = readiness {
        router = router.merge(probe_router(readiness));
    }
    axum::serve(listener, router)
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
        let readiness = Arc::new(Readiness::default());
        let server = tokio::spawn(serve_metrics(
            listener,
            registry,
            Some(Arc::clone(&readiness)),
            stop.clone(),
        ));

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
        let probe = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response.lines().next().unwrap_or_default().to_string()
        };
        assert!(probe(HEALTHZ_PATH).await.starts_with("HTTP/1.1 200"));
        assert!(probe(READYZ_PATH).await.starts_with("HTTP/1.1 503"));
        readiness.set(true);
        assert!(probe(READYZ_PATH).await.starts_with("HTTP/1.1 200"));
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}

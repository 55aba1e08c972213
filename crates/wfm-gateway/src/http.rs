//! The HTTP routes: the MediaBar WebSocket endpoint, the health probes, and the demo page.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio_util::task::TaskTracker;

use crate::connection::{self, Hub};
use crate::demo;

/// The path of the MediaBar WebSocket endpoint.
pub const MEDIABAR_PATH: &str = "/mediabar/v1";
/// Liveness: 200 while the process serves HTTP.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness: 200 while the manager is reachable and the gateway is not shutting down.
pub const READYZ_PATH: &str = "/readyz";

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    /// Tracks every WebSocket connection, so that shutdown can wait for their goodbyes.
    connections: TaskTracker,
}

/// The gateway's routes; `connections` tracks the WebSocket sessions.
pub(crate) fn router(hub: Arc<Hub>, connections: TaskTracker) -> Router {
    let metrics = wfm_telemetry::http::metrics_router(hub.config.stats.registry().clone());
    Router::new()
        .route(MEDIABAR_PATH, get(mediabar))
        .route("/", get(page))
        .route("/demo/sessions", get(demo_sessions))
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz))
        .with_state(AppState { hub, connections })
        .merge(metrics)
}

async fn mediabar(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let config = &state.hub.config;
    if !config.allowed_origins.is_empty() {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !config.allowed_origins.iter().any(|o| o == origin) {
            config.stats.connections_refused.inc();
            return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
        }
    }
    if state.hub.shutdown.is_cancelled() {
        config.stats.connections_refused.inc();
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if state.connections.len() >= config.max_connections {
        config.stats.connections_refused.inc();
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    }
    // Taken before the upgrade completes, so that shutdown also waits for a connection
    // whose task has not started yet.
    let token = state.connections.token();
    let hub = Arc::clone(&state.hub);
    upgrade
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        // Writes are flow-controlled by `poll_ready`, so the write buffer holds at most the
        // frame being written; no separate cap is needed.
        .max_write_buffer_size(usize::MAX)
        .max_message_size(config.max_frame_size)
        .max_frame_size(config.max_frame_size)
        .on_failed_upgrade(|error| tracing::debug!(%error, "websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            connection::run(socket, hub).await;
            drop(token);
        })
}

async fn page() -> Html<&'static str> {
    Html(demo::PAGE)
}

/// The demo sessions, only in demo mode: elsewhere references are never listed.
async fn demo_sessions(State(state): State<AppState>) -> Response {
    match &state.hub.config.demo {
        Some(directory) => match serde_json::to_string(&directory.list()) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
        },
        None => (StatusCode::NOT_FOUND, "not in demo mode\n").into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.hub.draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if state.hub.upstream.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "workflow manager unreachable\n",
        )
    }
}

//! The HTTP routes: the MediaBar WebSocket endpoint, the health probes, and the demo page.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use crate::addresses::Addresses;
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

/// The MediaBar client library the demo page imports.
pub(crate) const CLIENT_PATH: &str = "/mediabar.js";

/// The client address of a connection, as the handlers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Remote(pub(crate) SocketAddr);

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    /// Tracks every WebSocket connection, so that shutdown can wait for their goodbyes.
    connections: TaskTracker,
    /// Open connections per client address.
    addresses: Arc<Addresses>,
}

/// The gateway's routes; `connections` tracks the WebSocket sessions.
pub(crate) fn router(hub: Arc<Hub>, connections: TaskTracker) -> Router {
    let config = Arc::clone(&hub.config);
    let mut router = Router::new()
        .route(MEDIABAR_PATH, get(mediabar))
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz));
    // The page and the demo's list of references only where asked for: a production port
    // serves the MediaBar protocol and health, nothing to browse.
    if config.demo_page || config.demo.is_some() {
        router = router
            .route("/", get(page))
            .route(CLIENT_PATH, get(client))
            .route("/demo/sessions", get(demo_sessions));
    }
    let router = router.with_state(AppState {
        hub,
        connections,
        addresses: Arc::default(),
    });
    if config.metrics_on_public_port {
        router.merge(wfm_telemetry::http::metrics_router(
            config.stats.registry().clone(),
        ))
    } else {
        router
    }
}

async fn mediabar(
    State(state): State<AppState>,
    ConnectInfo(Remote(remote)): ConnectInfo<Remote>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let config = &state.hub.config;
    if !origin_allowed(&headers, &config.allowed_origins) {
        config.stats.connections_refused.inc();
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    if state.hub.shutdown.is_cancelled() {
        config.stats.connections_refused.inc();
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if state.connections.len() >= config.max_connections {
        config.stats.connections_refused.inc();
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    }
    let Some(admitted) = state
        .addresses
        .admit(remote.ip(), config.max_connections_per_address)
    else {
        config.stats.connections_refused.inc();
        config.stats.address_refused.inc();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections from this address\n",
        )
            .into_response();
    };
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
            drop(admitted);
            drop(token);
        })
}

/// The `Origin` check against cross-site WebSocket hijacking: a browser always sends
/// `Origin`, so a page from another site cannot open a socket here with the agent's
/// network position. Allowed: no `Origin` (not a browser: the simulator, tests, other
/// services), the gateway's own origin (the Origin's host and port are the request's
/// `Host`, as for the demo page, or the MediaBar served behind the same ingress host), any
/// origin listed in `allowed` exactly, and anything when `allowed` holds `*`.
pub(crate) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed.iter().any(|o| o == "*" || o == origin) {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    // A browser leaves the scheme's default port out of Origin; a Host header may not.
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return false,
    };
    let strip = |a: &str| {
        a.strip_suffix(default_port)
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    strip(authority) == strip(host)
}

async fn page() -> Html<&'static str> {
    Html(demo::PAGE)
}

async fn client() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        demo::CLIENT,
    )
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
        }
        headers
    }

    #[test]
    fn same_origin_and_listed_origins_are_allowed_and_others_refused() {
        let none: &[String] = &[];
        let listed = ["https://agents.example.com".to_string()];
        // Not a browser.
        assert!(origin_allowed(&headers(None, "gw:8080"), none));
        // The gateway's own page, with and without the default port in Host.
        assert!(origin_allowed(
            &headers(Some("http://gw:8080"), "gw:8080"),
            none
        ));
        assert!(origin_allowed(
            &headers(Some("https://GW.example"), "gw.example:443"),
            none
        ));
        // Another site.
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "gw:8080"),
            none
        ));
        assert!(!origin_allowed(
            &headers(Some("http://gw:8081"), "gw:8080"),
            none
        ));
        assert!(!origin_allowed(&headers(Some("null"), "gw:8080"), none));
        // Listed, and the wildcard.
        assert!(origin_allowed(
            &headers(Some("https://agents.example.com"), "gw:8080"),
            &listed
        ));
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "gw:8080"),
            &listed
        ));
        assert!(origin_allowed(
            &headers(Some("https://evil.example"), "gw:8080"),
            &["*".to_string()]
        ));
    }
}

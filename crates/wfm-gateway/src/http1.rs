//! The HTTP/1 server loop: hyper on each accepted connection, with a header read deadline
//! and graceful shutdown.
//!
//! `axum::serve` sets no timer, so hyper's header read timeout never runs under it: a
//! client that connects and sends nothing, or sends its upgrade request a byte at a time
//! (slowloris), would hold a socket and a task forever. Here every connection reads its
//! request headers under `header_read_timeout`, counted from when it is ready for a request.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wfm_tls::Incoming;

/// Serves `app` on every connection `incoming` yields until `closing` is cancelled; then
/// asks each connection to finish its request and waits for them. Upgraded WebSockets are
/// no longer hyper's and are shut down by the connection hub.
pub(crate) async fn serve(
    mut incoming: Incoming,
    app: Router,
    header_read_timeout: Duration,
    closing: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = closing.cancelled() => break,
            accepted = incoming.accept() => accepted,
        };
        // The accept loop only ends when its listener is gone.
        let Some(accepted) = accepted else { break };
        // The client's address, for the per-address connection cap.
        let remote = axum::extract::ConnectInfo(crate::http::Remote(accepted.remote));
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(remote)));
        let closing = closing.clone();
        connections.spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(accepted.io), service)
                .with_upgrades();
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(remote = %accepted.remote, %error, "http connection ended");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

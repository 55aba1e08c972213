//! `serve`: the HTTP server, the upstream, and the order of a graceful shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wfm_telemetry::settings::SettingsError;

use crate::connection::Hub;
use crate::settings::GatewayConfig;
use crate::upstream::Upstream;
use crate::{http, http1};
use wfm_tls::{AcceptOptions, Incoming, Reloadable};

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] SettingsError),
    /// The manager URL is not a valid endpoint.
    #[error("invalid manager url: {0}")]
    ManagerUrl(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the MediaBar protocol on `listener` until `shutdown` is cancelled.
///
/// On shutdown `/readyz` turns 503 at once; after `drain_delay` the gateway stops accepting
/// connections, tells every bound client `resourceUnbound` / `serverShutdown`, releases its
/// binding, sends a 1001 close frame, waits (up to `shutdown_grace`) for the clients to
/// close, then closes its streams to the manager and returns.
pub async fn serve(
    listener: TcpListener,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    config.validate()?;
    let config = Arc::new(config);
    let upstream = Upstream::new(Arc::clone(&config))?;
    let upstream_tasks = TaskTracker::new();
    // Stopped only after the clients are gone, so that their unbinds still reach the manager.
    let upstream_stop = CancellationToken::new();
    upstream.spawn(&upstream_tasks, &upstream_stop);
    upstream_tasks.close();

    // `shutdown` starts the drain (readiness false); `closing` follows after the delay.
    let closing = CancellationToken::new();
    let drain_delay = config.drain_delay;
    let drain = {
        let (shutdown, closing) = (shutdown.clone(), closing.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = closing.cancelled() => return,
            }
            tracing::info!(
                drain_delay_ms = drain_delay.as_millis() as u64,
                "shutting down: /readyz answers 503"
            );
            tokio::select! {
                () = tokio::time::sleep(drain_delay) => {}
                () = closing.cancelled() => {}
            }
            closing.cancel();
        })
    };
    let hub = Arc::new(Hub::new(
        Arc::clone(&config),
        Arc::clone(&upstream),
        closing.clone(),
        shutdown.clone(),
    ));
    let connections = TaskTracker::new();
    let app = http::router(hub, connections.clone());
    if let Ok(address) = listener.local_addr() {
        let scheme = if config.tls.is_some() { "wss" } else { "ws" };
        tracing::info!(%address, scheme, manager = %config.manager_url, "edge gateway listening");
    }
    let reloadable: Vec<Arc<dyn Reloadable>> = config
        .tls
        .iter()
        .map(|tls| Arc::clone(tls) as Arc<dyn Reloadable>)
        .chain(
            config
                .manager_tls
                .iter()
                .map(|tls| Arc::clone(tls) as Arc<dyn Reloadable>),
        )
        .collect();
    let reload_stop = CancellationToken::new();
    wfm_tls::reload::watch(
        reloadable,
        config.tls_poll,
        config.stats.tls.clone(),
        reload_stop.clone(),
    )
    .await;

    // The accept loop sets TCP_NODELAY (events are small frames written one by one;
    // Nagle's algorithm would hold each behind the client's delayed ACK for up to 40 ms)
    // and runs each TLS handshake under its deadline, off the accept path.
    let accept = AcceptOptions {
        handshake_timeout: config.handshake_timeout,
        handshake_failures: config.stats.tls_handshake_failures.clone(),
        accept_errors: config.stats.accept_errors.clone(),
    };
    let incoming = Incoming::spawn(listener, config.tls.clone(), accept);
    http1::serve(incoming, app, config.header_read_timeout, closing.clone()).await;
    shutdown.cancel();
    closing.cancel();
    let _ = drain.await;
    connections.close();
    tracing::info!(
        connections = connections.len(),
        "shutting down: closing client connections"
    );
    connections.wait().await;
    upstream_stop.cancel();
    reload_stop.cancel();
    upstream_tasks.wait().await;
    tracing::info!("edge gateway stopped");
    Ok(())
}

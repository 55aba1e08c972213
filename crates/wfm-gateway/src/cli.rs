//! The `wfm gateway` command: reads its settings, starts telemetry, and serves until SIGTERM.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use crate::GatewayStats;
use crate::settings::{BINARY, Settings};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The subcommand of the `wfm` binary that runs this service.
pub const COMMAND: &str = "gateway";

/// Runs the service with `args` (the program name first) until SIGTERM; exits 2 on a bad
/// setting, as the settings' errors say.
pub fn run(args: Vec<OsString>) -> ExitCode {
    wfm_telemetry::command::run_service(args, service)
}

async fn service(settings: Settings) -> anyhow::Result<()> {
    let registry = wfm_telemetry::Registry::new();
    let stats = Arc::new(GatewayStats::new(&registry));
    let telemetry = settings.telemetry.start(BINARY, &registry)?;
    let grace = settings.shutdown_grace();
    let listen = settings.listen;
    let metrics_listen = settings.metrics_listen;
    let config = settings
        .into_config(stats, telemetry.tracer())
        .unwrap_or_else(|error| error.exit());

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let shutdown = CancellationToken::new();
    if let Some(address) = metrics_listen {
        let metrics = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} for metrics"))?;
        tracing::info!(%address, "metrics listening on /metrics");
        tokio::spawn(wfm_telemetry::http::serve_metrics(
            metrics,
            registry.clone(),
            None,
            shutdown.clone(),
        ));
    }
    let outcome = wfm_telemetry::serve_until_signal(
        crate::serve(listener, config, shutdown.clone()),
        shutdown,
        grace,
    )
    .await;
    telemetry.shutdown(std::time::Duration::from_secs(2)).await;
    outcome??;
    Ok(())
}

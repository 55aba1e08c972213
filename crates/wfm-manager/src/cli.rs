//! The `wfm manager` command: reads its settings, starts telemetry, and serves until SIGTERM.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use crate::ManagerStats;
use crate::settings::{BINARY, Settings};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The subcommand of the `wfm` binary that runs this service.
pub const COMMAND: &str = "manager";

/// Runs the service with `args` (the program name first) until SIGTERM; exits 2 on a bad
/// setting, as the settings' errors say.
pub fn run(args: Vec<OsString>) -> ExitCode {
    wfm_telemetry::command::run_service(args, service)
}

async fn service(settings: Settings) -> anyhow::Result<()> {
    let registry = wfm_telemetry::Registry::new();
    let stats = Arc::new(ManagerStats::new(&registry));
    let telemetry = settings.telemetry.start(BINARY, &registry)?;
    let grace = settings.shutdown_grace();
    let (listen, metrics_listen) = (settings.listen, settings.metrics_listen);
    let config = settings
        .into_config(stats, telemetry.tracer())
        .unwrap_or_else(|error| error.exit());

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let metrics = TcpListener::bind(metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {metrics_listen} for metrics"))?;
    tracing::info!(address = %metrics_listen, "metrics listening on /metrics, probes on /healthz and /readyz");
    let shutdown = CancellationToken::new();
    let metrics_stop = CancellationToken::new();
    // Plaintext HTTP by design: it serves only metrics and the probes, which a kubelet
    // and Prometheus reach without client certificates; the settings keep it on loopback
    // unless the gRPC port has TLS or --insecure-plaintext is given.
    let metrics_task = tokio::spawn(wfm_telemetry::http::serve_metrics(
        metrics,
        registry,
        Some(std::sync::Arc::clone(&config.readiness)),
        metrics_stop.clone(),
    ));
    let outcome = wfm_telemetry::serve_until_signal(
        crate::serve(listener, config, shutdown.clone()),
        shutdown,
        grace,
    )
    .await;
    metrics_stop.cancel();
    let _ = metrics_task.await;
    telemetry.shutdown(std::time::Duration::from_secs(2)).await;
    outcome??;
    Ok(())
}

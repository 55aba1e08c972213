//! The `wfm-manager` binary: reads its settings, starts telemetry, and serves until SIGTERM.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wfm_manager::ManagerStats;
use wfm_manager::settings::{BINARY, Settings};

fn main() -> anyhow::Result<()> {
    let settings: Settings = wfm_telemetry::settings::parse().unwrap_or_else(|error| error.exit());
    // Multi-threaded: the OTLP exporters flush from a blocking thread through the runtime.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(settings))
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let registry = wfm_telemetry::Registry::new();
    let stats = Arc::new(ManagerStats::new(&registry));
    let telemetry = settings.telemetry.start(BINARY, &registry)?;
    let grace = settings.shutdown_grace();
    let (listen, metrics_listen) = (settings.listen, settings.metrics_listen);
    let config = match settings.into_config(stats, telemetry.tracer()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let metrics = TcpListener::bind(metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {metrics_listen} for metrics"))?;
    tracing::info!(address = %metrics_listen, "metrics listening on /metrics");
    let shutdown = CancellationToken::new();
    let metrics_stop = CancellationToken::new();
    let metrics_task = tokio::spawn(wfm_telemetry::http::serve_metrics(
        metrics,
        registry,
        metrics_stop.clone(),
    ));
    let outcome = wfm_telemetry::serve_until_signal(
        wfm_manager::serve(listener, config, shutdown.clone()),
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

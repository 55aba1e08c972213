//! The `wfm-gateway` binary: reads its settings, starts telemetry, and serves until SIGTERM.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wfm_gateway::GatewayStats;
use wfm_gateway::settings::{BINARY, Settings};

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
    let stats = Arc::new(GatewayStats::new(&registry));
    let telemetry = settings.telemetry.start(BINARY, &registry)?;
    let grace = settings.shutdown_grace();
    let listen = settings.listen;
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
    let shutdown = CancellationToken::new();
    let outcome = wfm_telemetry::serve_until_signal(
        wfm_gateway::serve(listener, config, shutdown.clone()),
        shutdown,
        grace,
    )
    .await;
    telemetry.shutdown(std::time::Duration::from_secs(2)).await;
    outcome??;
    Ok(())
}

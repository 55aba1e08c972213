//! The `wfm-gateway` binary: parses its flags, sets up logging, and serves.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wfm_gateway::GatewayConfig;
use wfm_reference::SigningKey;

/// The edge gateway: MediaBar WebSocket clients in, the workflow manager's Attach stream out.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on for WebSocket and health requests.
    #[arg(long, env = "WFM_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The workflow manager's gRPC endpoint.
    #[arg(
        long,
        env = "WFM_MANAGER_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    manager_url: String,
    /// The key the manager signs session resource references with (at least 32 bytes);
    /// the gateway verifies references itself before binding.
    #[arg(long, env = "WFM_SIGNING_KEY", hide_env_values = true)]
    signing_key: String,
    /// Multiplexed Attach streams to the manager.
    #[arg(long, env = "WFM_GATEWAY_UPSTREAM_STREAMS", default_value_t = 2)]
    upstream_streams: usize,
    /// Longest delay between reconnect attempts, in milliseconds.
    #[arg(long, env = "WFM_GATEWAY_RECONNECT_MAX_MS", default_value_t = 5_000)]
    reconnect_max_ms: u64,
    /// How long a rebind refused with "session not found" is retried after a reconnect, in seconds.
    #[arg(long, env = "WFM_GATEWAY_REBIND_GRACE_SECS", default_value_t = 30)]
    rebind_grace_secs: u64,
    /// Interval of WebSocket pings, in seconds.
    #[arg(long, env = "WFM_GATEWAY_PING_INTERVAL_SECS", default_value_t = 20)]
    ping_interval_secs: u64,
    /// How long a ping may go unanswered before the client is dropped, in seconds.
    #[arg(long, env = "WFM_GATEWAY_PONG_TIMEOUT_SECS", default_value_t = 20)]
    pong_timeout_secs: u64,
    /// How long an unbound connection may stay silent, in seconds.
    #[arg(long, env = "WFM_GATEWAY_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    idle_timeout_secs: u64,
    /// Largest accepted client message, in bytes.
    #[arg(long, env = "WFM_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024)]
    max_message_bytes: usize,
    /// Hard limit of a client frame, in bytes; larger frames close the connection (1009).
    #[arg(long, env = "WFM_GATEWAY_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    max_frame_bytes: usize,
    /// Per-connection WebSocket read buffer, in bytes.
    #[arg(long, env = "WFM_GATEWAY_READ_BUFFER_BYTES", default_value_t = 2 * 1024)]
    read_buffer_bytes: usize,
    /// Sustained requests per second per connection.
    #[arg(long, env = "WFM_GATEWAY_REQUEST_RATE", default_value_t = 10)]
    request_rate: u32,
    /// Requests per connection in a burst.
    #[arg(long, env = "WFM_GATEWAY_REQUEST_BURST", default_value_t = 20)]
    request_burst: u32,
    /// Most concurrent WebSocket connections.
    #[arg(long, env = "WFM_GATEWAY_MAX_CONNECTIONS", default_value_t = 100_000)]
    max_connections: usize,
    /// Allowed Origin headers, comma-separated; empty allows any.
    #[arg(long, env = "WFM_GATEWAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let signing_key =
        SigningKey::from_bytes(args.signing_key.as_bytes()).context("WFM_SIGNING_KEY")?;
    let mut config = GatewayConfig::new(args.manager_url, signing_key);
    config.upstream_streams = args.upstream_streams;
    config.reconnect_max = Duration::from_millis(args.reconnect_max_ms);
    config.rebind_grace = Duration::from_secs(args.rebind_grace_secs);
    config.ping_interval = Duration::from_secs(args.ping_interval_secs);
    config.pong_timeout = Duration::from_secs(args.pong_timeout_secs);
    config.idle_timeout = Duration::from_secs(args.idle_timeout_secs);
    config.max_message_size = args.max_message_bytes;
    config.max_frame_size = args.max_frame_bytes;
    config.read_buffer_size = args.read_buffer_bytes;
    config.request_rate = args.request_rate;
    config.request_burst = args.request_burst;
    config.max_connections = args.max_connections;
    config.allowed_origins = args
        .allowed_origins
        .into_iter()
        .filter(|o| !o.is_empty())
        .collect();
    config.validate()?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    wfm_gateway::serve(listener, config, shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on ctrl-c or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only ctrl-c stops the server");
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}

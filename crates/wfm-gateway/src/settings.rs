//! The binary's settings: every one is a flag, a `WFM_*` environment variable and a key of
//! the optional TOML file given by `--config`, in that order of precedence over the
//! built-in default. `docs/configuration.md` lists them, and a test keeps it in step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory as _, Parser};
use wfm_reference::{MIN_KEY_LEN, SigningKey};
use wfm_telemetry::settings::{InvalidSetting, at_least, describe, secret};
use wfm_telemetry::{TelemetryArgs, Tracer};

use crate::{GatewayConfig, GatewayStats};

/// The binary's name, as the Dockerfile, compose file and manifests run it.
pub const BINARY: &str = "wfm-gateway";
/// The default HTTP and WebSocket address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default workflow manager endpoint.
pub const DEFAULT_MANAGER_URL: &str = "http://127.0.0.1:50051";

/// The edge gateway: MediaBar WebSocket clients in, the workflow manager's Attach stream out.
#[derive(Debug, Clone, Parser)]
#[command(name = BINARY, version, about)]
pub struct Settings {
    /// TOML file of settings (keys as below, e.g. `listen = "0.0.0.0:8080"`); the
    /// environment and flags override it.
    #[arg(long, env = "WFM_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for WebSocket, health, metrics and the demo page.
    #[arg(long, env = "WFM_GATEWAY_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The workflow manager's gRPC endpoint.
    #[arg(long, env = "WFM_MANAGER_URL", default_value = DEFAULT_MANAGER_URL)]
    pub manager_url: String,
    /// The key the manager signs session resource references with (at least 32 bytes);
    /// the gateway verifies references itself before binding. This or a key file is required.
    #[arg(
        long,
        env = "WFM_SIGNING_KEY",
        hide_env_values = true,
        conflicts_with = "signing_key_file"
    )]
    pub signing_key: Option<String>,
    /// File holding the signing key (a mounted Kubernetes or Docker secret); a trailing
    /// line break is ignored.
    #[arg(long, env = "WFM_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Multiplexed Attach streams to the manager.
    #[arg(long, env = "WFM_GATEWAY_UPSTREAM_STREAMS", default_value_t = 2, value_parser = at_least::<1>)]
    pub upstream_streams: u64,
    /// Longest delay between reconnect attempts, in milliseconds.
    #[arg(long, env = "WFM_GATEWAY_RECONNECT_MAX_MS", default_value_t = 5_000, value_parser = at_least::<100>)]
    pub reconnect_max_ms: u64,
    /// How long a rebind refused with "session not found" is retried after a reconnect, in seconds.
    #[arg(long, env = "WFM_GATEWAY_REBIND_GRACE_SECS", default_value_t = 30)]
    pub rebind_grace_secs: u64,
    /// Interval of WebSocket pings, in seconds.
    #[arg(long, env = "WFM_GATEWAY_PING_INTERVAL_SECS", default_value_t = 20, value_parser = at_least::<1>)]
    pub ping_interval_secs: u64,
    /// How long a ping may go unanswered before the client is dropped, in seconds.
    #[arg(long, env = "WFM_GATEWAY_PONG_TIMEOUT_SECS", default_value_t = 20, value_parser = at_least::<1>)]
    pub pong_timeout_secs: u64,
    /// How long an unbound connection may stay silent, in seconds.
    #[arg(long, env = "WFM_GATEWAY_IDLE_TIMEOUT_SECS", default_value_t = 300, value_parser = at_least::<1>)]
    pub idle_timeout_secs: u64,
    /// Largest accepted client message, in bytes.
    #[arg(long, env = "WFM_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024, value_parser = at_least::<1024>)]
    pub max_message_bytes: u64,
    /// Hard limit of a client frame, in bytes; larger frames close the connection (1009).
    /// At least `max_message_bytes`.
    #[arg(long, env = "WFM_GATEWAY_MAX_FRAME_BYTES", default_value_t = 64 * 1024, value_parser = at_least::<1024>)]
    pub max_frame_bytes: u64,
    /// Per-connection WebSocket read buffer, in bytes.
    #[arg(long, env = "WFM_GATEWAY_READ_BUFFER_BYTES", default_value_t = 2 * 1024, value_parser = at_least::<256>)]
    pub read_buffer_bytes: u64,
    /// Sustained requests per second per connection.
    #[arg(long, env = "WFM_GATEWAY_REQUEST_RATE", default_value_t = 10, value_parser = at_least::<1>)]
    pub request_rate: u64,
    /// Requests per connection in a burst.
    #[arg(long, env = "WFM_GATEWAY_REQUEST_BURST", default_value_t = 20, value_parser = at_least::<1>)]
    pub request_burst: u64,
    /// Most concurrent WebSocket connections.
    #[arg(long, env = "WFM_GATEWAY_MAX_CONNECTIONS", default_value_t = 100_000, value_parser = at_least::<1>)]
    pub max_connections: u64,
    /// Allowed Origin headers, comma-separated; empty allows any.
    #[arg(long, env = "WFM_GATEWAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// On SIGTERM, how long `/readyz` answers 503 before clients are told and closed, in
    /// milliseconds, so that load balancers stop sending new clients first.
    #[arg(long, env = "WFM_GATEWAY_DRAIN_DELAY_MS", default_value_t = 0)]
    pub drain_delay_ms: u64,
    /// On SIGTERM, the most the whole shutdown may take, in seconds; the process exits
    /// then whatever is left.
    #[arg(long, env = "WFM_GATEWAY_SHUTDOWN_GRACE_SECS", default_value_t = 10, value_parser = at_least::<1>)]
    pub shutdown_grace_secs: u64,
    /// Logs and OpenTelemetry.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

fn invalid(id: &str, value: String, allowed: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        setting: describe(&Settings::command(), id),
        value,
        allowed: allowed.into(),
    }
}

fn saturate<T: TryFrom<u64> + Copy>(value: u64, max: T) -> T {
    T::try_from(value).unwrap_or(max)
}

impl Settings {
    /// How long shutdown may take before the process gives up on it.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The signing key from the flag or the key file; the gateway cannot run without it.
    fn signing_key(&self) -> Result<SigningKey, InvalidSetting> {
        let given = secret(
            &Settings::command(),
            ("signing_key", self.signing_key.as_deref()),
            ("signing_key_file", self.signing_key_file.as_deref()),
        )?;
        let Some((id, bytes)) = given else {
            return Err(invalid(
                "signing_key",
                String::new(),
                "required: the manager's signing key, or --signing-key-file",
            ));
        };
        SigningKey::from_bytes(&bytes).map_err(|_| {
            let value = format!("<{} bytes, redacted>", bytes.len());
            invalid(id, value, format!("at least {MIN_KEY_LEN} bytes"))
        })
    }

    /// Validates the settings and builds the gateway's config around `stats` and `tracer`.
    pub fn into_config(
        self,
        stats: Arc<GatewayStats>,
        tracer: Tracer,
    ) -> Result<GatewayConfig, InvalidSetting> {
        let signing_key = self.signing_key()?;
        if !(self.manager_url.starts_with("http://") || self.manager_url.starts_with("https://")) {
            return Err(invalid(
                "manager_url",
                self.manager_url,
                "an http:// or https:// URL, e.g. http://wfm-manager:50051",
            ));
        }
        if self.max_frame_bytes < self.max_message_bytes {
            return Err(invalid(
                "max_frame_bytes",
                self.max_frame_bytes.to_string(),
                format!("at least max_message_bytes ({})", self.max_message_bytes),
            ));
        }
        if self.drain_delay_ms >= self.shutdown_grace_secs.saturating_mul(1000) {
            return Err(invalid(
                "drain_delay_ms",
                self.drain_delay_ms.to_string(),
                format!(
                    "less than the shutdown grace ({} s)",
                    self.shutdown_grace_secs
                ),
            ));
        }
        let mut config = GatewayConfig::new(self.manager_url, signing_key);
        config.upstream_streams = saturate(self.upstream_streams, usize::MAX);
        config.reconnect_max = Duration::from_millis(self.reconnect_max_ms);
        config.rebind_grace = Duration::from_secs(self.rebind_grace_secs);
        config.ping_interval = Duration::from_secs(self.ping_interval_secs);
        config.pong_timeout = Duration::from_secs(self.pong_timeout_secs);
        config.idle_timeout = Duration::from_secs(self.idle_timeout_secs);
        config.max_message_size = saturate(self.max_message_bytes, usize::MAX);
        config.max_frame_size = saturate(self.max_frame_bytes, usize::MAX);
        config.read_buffer_size = saturate(self.read_buffer_bytes, usize::MAX);
        config.request_rate = saturate(self.request_rate, u32::MAX);
        config.request_burst = saturate(self.request_burst, u32::MAX);
        config.max_connections = saturate(self.max_connections, usize::MAX);
        config.allowed_origins = self
            .allowed_origins
            .into_iter()
            .filter(|o| !o.is_empty())
            .collect();
        config.drain_delay = Duration::from_millis(self.drain_delay_ms);
        // The close handshake must fit in what is left of the grace period.
        let left = Duration::from_millis(
            (self.shutdown_grace_secs * 1000).saturating_sub(self.drain_delay_ms),
        );
        config.shutdown_grace = config.shutdown_grace.min(left / 2);
        config.stats = stats;
        config.tracer = tracer;
        // The library's own check, for anything the flags above could still combine badly.
        config
            .validate()
            .map_err(|error| invalid(error.setting, String::new(), error.problem.to_string()))?;
        Ok(config)
    }
}

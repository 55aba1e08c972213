//! The gateway's settings, each defined once: the binary's flag, `WFM_*` environment
//! variable and key of the optional TOML file given by `--config` (in that order of
//! precedence over the built-in default) in [`Settings`], its default in [`default`], and
//! its check in [`GatewayConfig::validate`], which every caller of `serve` goes through.
//! `docs/configuration.md` lists them, and a test keeps it in step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory as _, Parser};
use wfm_reference::KeyRing;
#[cfg(test)]
use wfm_reference::SigningKey;
use wfm_telemetry::settings::{SettingsError, at_least, secret};
use wfm_telemetry::{TelemetryArgs, Tracer};

use wfm_tls::{
    ClientFiles, ClientTls, ListenCheck, NatsSecurity, ServerFiles, ServerTls, listen_check,
};

use crate::demo::DemoDirectory;
use crate::stats::GatewayStats;

/// The binary's name, as the Dockerfile, compose file and manifests run it.
pub const BINARY: &str = "wfm-gateway";
/// The default HTTP and WebSocket address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default workflow manager endpoint.
pub const DEFAULT_MANAGER_URL: &str = "http://127.0.0.1:50051";

/// The default of each setting, shared by the flags and [`GatewayConfig::new`].
pub mod default {
    /// `upstream_streams`.
    pub const UPSTREAM_STREAMS: u64 = 2;
    /// `reconnect_max_ms`.
    pub const RECONNECT_MAX_MS: u64 = 5_000;
    /// `rebind_grace_secs`.
    pub const REBIND_GRACE_SECS: u64 = 30;
    /// `command_timeout_ms`: longer than the manager's own (5 s), whose answer it awaits.
    pub const COMMAND_TIMEOUT_MS: u64 = 10_000;
    /// `ping_interval_secs`.
    pub const PING_INTERVAL_SECS: u64 = 20;
    /// `pong_timeout_secs`.
    pub const PONG_TIMEOUT_SECS: u64 = 20;
    /// `idle_timeout_secs`.
    pub const IDLE_TIMEOUT_SECS: u64 = 300;
    /// `max_message_bytes`.
    pub const MAX_MESSAGE_BYTES: u64 = 16 * 1024;
    /// `max_frame_bytes`.
    pub const MAX_FRAME_BYTES: u64 = 64 * 1024;
    /// `read_buffer_bytes`.
    pub const READ_BUFFER_BYTES: u64 = 2 * 1024;
    /// `request_rate`.
    pub const REQUEST_RATE: u64 = 10;
    /// `request_burst`.
    pub const REQUEST_BURST: u64 = 20;
    /// `max_connections_per_address`.
    pub const MAX_CONNECTIONS_PER_ADDRESS: u64 = 1024;
    /// `max_binds_per_minute`: a toolbar binds once, and again after a loss or a takeover.
    pub const MAX_BINDS_PER_MINUTE: u64 = 30;
    /// Descriptors kept back from `max_connections`' default: the manager streams, NATS,
    /// the listener, logs, and the connections being refused with 503.
    pub const RESERVED_DESCRIPTORS: u64 = 128;

    /// `max_connections` when unset: the open-files limit less the reserve, so that the
    /// documented 503 answers before accepting fails for want of descriptors.
    pub fn max_connections() -> u64 {
        let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
        soft.saturating_sub(RESERVED_DESCRIPTORS).max(1)
    }
    /// `drain_delay_ms`.
    pub const DRAIN_DELAY_MS: u64 = 0;
    /// `shutdown_grace_secs`.
    pub const SHUTDOWN_GRACE_SECS: u64 = 10;
}

/// The edge gateway: MediaBar WebSocket clients in, the workflow manager's Attach stream out.
#[derive(Debug, Clone, Parser)]
#[command(name = BINARY, version, about)]
pub struct Settings {
    /// TOML file of settings (keys as below, e.g. `listen = "0.0.0.0:8080"`); the
    /// environment and flags override it.
    #[arg(long, env = "WFM_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for WebSocket and health (and metrics unless `metrics_listen` is set).
    #[arg(long, env = "WFM_GATEWAY_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// A separate address for Prometheus `/metrics`; set, the public port no longer serves
    /// them (production: keep counters off the port agents reach).
    #[arg(long, env = "WFM_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the MediaBar demo page at `/` (as `wfm up` does); off, `/` is not found.
    #[arg(long, env = "WFM_GATEWAY_DEMO_PAGE")]
    pub demo_page: bool,
    /// The workflow manager's gRPC endpoint; a comma-separated list for several replicas,
    /// or the seeds of a cluster.
    #[arg(long, env = "WFM_MANAGER_URL", default_value = DEFAULT_MANAGER_URL)]
    pub manager_url: String,
    /// NATS servers of a manager cluster, comma-separated; the gateway finds the manager
    /// replicas in the JetStream bucket `wfm_nodes`. Unset, only `manager_url` is used.
    #[arg(long, env = "WFM_NATS_URL")]
    pub nats_url: Option<String>,
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
    /// File of the manager's previous signing keys, one per line, newest first: references
    /// they signed still verify until they expire (key rotation).
    #[arg(long, env = "WFM_PREVIOUS_SIGNING_KEYS_FILE")]
    pub previous_signing_keys_file: Option<PathBuf>,
    /// Multiplexed Attach streams to the manager.
    #[arg(long, env = "WFM_GATEWAY_UPSTREAM_STREAMS", default_value_t = default::UPSTREAM_STREAMS)]
    pub upstream_streams: u64,
    /// Longest delay between reconnect attempts, in milliseconds.
    #[arg(long, env = "WFM_GATEWAY_RECONNECT_MAX_MS", default_value_t = default::RECONNECT_MAX_MS)]
    pub reconnect_max_ms: u64,
    /// How long a rebind refused with "session not found" is retried after a reconnect, in seconds.
    #[arg(long, env = "WFM_GATEWAY_REBIND_GRACE_SECS", default_value_t = default::REBIND_GRACE_SECS)]
    pub rebind_grace_secs: u64,
    /// How long a MediaBar command waits for the manager's answer before it fails with
    /// `timeout`, in milliseconds; keep it above the manager's `command_timeout_ms`.
    #[arg(long, env = "WFM_GATEWAY_COMMAND_TIMEOUT_MS", default_value_t = default::COMMAND_TIMEOUT_MS, value_parser = at_least::<100>)]
    pub command_timeout_ms: u64,
    /// Interval of WebSocket pings, in seconds.
    #[arg(long, env = "WFM_GATEWAY_PING_INTERVAL_SECS", default_value_t = default::PING_INTERVAL_SECS)]
    pub ping_interval_secs: u64,
    /// How long a ping may go unanswered before the client is dropped, in seconds.
    #[arg(long, env = "WFM_GATEWAY_PONG_TIMEOUT_SECS", default_value_t = default::PONG_TIMEOUT_SECS)]
    pub pong_timeout_secs: u64,
    /// How long an unbound connection may stay silent, in seconds.
    #[arg(long, env = "WFM_GATEWAY_IDLE_TIMEOUT_SECS", default_value_t = default::IDLE_TIMEOUT_SECS)]
    pub idle_timeout_secs: u64,
    /// Largest accepted client message, in bytes.
    #[arg(long, env = "WFM_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = default::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: u64,
    /// Hard limit of a client frame, in bytes; larger frames close the connection (1009).
    /// At least `max_message_bytes`.
    #[arg(long, env = "WFM_GATEWAY_MAX_FRAME_BYTES", default_value_t = default::MAX_FRAME_BYTES)]
    pub max_frame_bytes: u64,
    /// Per-connection WebSocket read buffer, in bytes.
    #[arg(long, env = "WFM_GATEWAY_READ_BUFFER_BYTES", default_value_t = default::READ_BUFFER_BYTES)]
    pub read_buffer_bytes: u64,
    /// Sustained requests per second per connection.
    #[arg(long, env = "WFM_GATEWAY_REQUEST_RATE", default_value_t = default::REQUEST_RATE)]
    pub request_rate: u64,
    /// Requests per connection in a burst.
    #[arg(long, env = "WFM_GATEWAY_REQUEST_BURST", default_value_t = default::REQUEST_BURST)]
    pub request_burst: u64,
    /// Most concurrent WebSocket connections; more are answered 503. Unset: the open-files
    /// limit (`RLIMIT_NOFILE`) less 128.
    #[arg(long, env = "WFM_GATEWAY_MAX_CONNECTIONS")]
    pub max_connections: Option<u64>,
    /// Most concurrent WebSocket connections from one client address; more are answered
    /// 503. 0: no limit (behind an ingress every connection comes from the ingress).
    #[arg(long, env = "WFM_GATEWAY_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = default::MAX_CONNECTIONS_PER_ADDRESS)]
    pub max_connections_per_address: u64,
    /// `bindResource` attempts one connection may make in a minute (a burst, refilled
    /// evenly); more are refused with `rateLimited`.
    #[arg(long, env = "WFM_GATEWAY_MAX_BINDS_PER_MINUTE", default_value_t = default::MAX_BINDS_PER_MINUTE, value_parser = at_least::<1>)]
    pub max_binds_per_minute: u64,
    /// Origins allowed besides the gateway's own (an Origin whose host is the request's
    /// Host), comma-separated, e.g. `https://agents.example.com`; `*` allows any. Clients
    /// that send no Origin (not browsers) are always allowed.
    #[arg(long, env = "WFM_GATEWAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// On SIGTERM, how long `/readyz` answers 503 before clients are told and closed, in
    /// milliseconds, so that load balancers stop sending new clients first.
    #[arg(long, env = "WFM_GATEWAY_DRAIN_DELAY_MS", default_value_t = default::DRAIN_DELAY_MS)]
    pub drain_delay_ms: u64,
    /// On SIGTERM, the most the whole shutdown may take, in seconds; the process exits
    /// then whatever is left.
    #[arg(long, env = "WFM_GATEWAY_SHUTDOWN_GRACE_SECS", default_value_t = default::SHUTDOWN_GRACE_SECS, value_parser = at_least::<1>)]
    pub shutdown_grace_secs: u64,
    /// PEM certificate chain of the gateway's port, which then serves HTTPS and `wss://`
    /// only; with `--tls-key`. Reloaded on change or SIGHUP.
    #[arg(long, env = "WFM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "WFM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle the manager's certificate must chain to; needed for `https://`
    /// manager URLs, and then every manager URL must be `https://`.
    #[arg(long, env = "WFM_MANAGER_CA")]
    pub manager_ca: Option<PathBuf>,
    /// PEM client certificate presented to the manager (mutual TLS: its URI SAN gives the
    /// `gateway` role); with `--manager-key` and `--manager-ca`.
    #[arg(long, env = "WFM_MANAGER_CERT", requires_all = ["manager_key", "manager_ca"])]
    pub manager_cert: Option<PathBuf>,
    /// PEM private key of `--manager-cert`.
    #[arg(long, env = "WFM_MANAGER_KEY", requires = "manager_cert")]
    pub manager_key: Option<PathBuf>,
    /// Allows plaintext HTTP and WebSocket on an address other than loopback, for a
    /// private demo network or behind a TLS-terminating proxy on the same host; logged as
    /// a warning at start.
    #[arg(long, env = "WFM_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// How often the TLS files are checked for changes, in milliseconds.
    #[arg(long, env = "WFM_TLS_POLL_MS", default_value_t = 5_000, value_parser = at_least::<100>)]
    pub tls_poll_ms: u64,
    /// NATS credentials file (`.creds`: the user's JWT and NKey seed), with `nats_url`.
    #[arg(long, env = "WFM_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// PEM CA of the NATS servers; set, the NATS connection requires TLS.
    #[arg(long, env = "WFM_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Logs and OpenTelemetry.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Everything `serve` needs besides its listener.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The workflow manager's gRPC endpoint, e.g. `http://127.0.0.1:50051`, or a
    /// comma-separated list of them (replicas, or the seeds of a cluster).
    pub manager_url: String,
    /// NATS servers, comma-separated, whose `wfm_nodes` bucket lists the manager replicas;
    /// `None` runs on [`Self::manager_url`] alone.
    pub nats_url: Option<String>,
    /// Verifies session resource references before any bind reaches the manager.
    pub signing_key: KeyRing,
    /// Number of multiplexed `Attach` streams shared by all WebSocket connections.
    pub upstream_streams: usize,
    /// First delay before reconnecting to the manager; doubles on each failure.
    pub reconnect_initial: Duration,
    /// Cap of the reconnect delay.
    pub reconnect_max: Duration,
    /// HTTP/2 keep-alive ping interval towards the manager, so a silent network loss is
    /// noticed within this plus [`Self::upstream_keepalive_timeout`].
    pub upstream_keepalive: Duration,
    /// How long an HTTP/2 keep-alive ping may go unanswered.
    pub upstream_keepalive_timeout: Duration,
    /// After a reconnect, how long a rebind refused with "session not found" is retried:
    /// the Interaction Processor needs a moment to recreate its sessions on a restarted
    /// manager.
    pub rebind_grace: Duration,
    /// Delay between rebind attempts within [`Self::rebind_grace`].
    pub rebind_retry: Duration,
    /// How long a bind may wait for the manager's answer.
    pub request_timeout: Duration,
    /// How long a command may wait for the manager's answer.
    pub command_timeout: Duration,
    /// Interval of WebSocket pings to each client.
    pub ping_interval: Duration,
    /// How long a client may leave a ping unanswered before it is dropped and its binding
    /// released.
    pub pong_timeout: Duration,
    /// An unbound connection that sends no request for this long is closed (1008).
    pub idle_timeout: Duration,
    /// Largest accepted client message, in bytes; a larger one (up to
    /// [`Self::max_frame_size`]) is refused with `messageTooLarge` and the connection stays
    /// open.
    pub max_message_size: usize,
    /// Hard limit of a client frame or message, in bytes: the most a connection ever
    /// buffers. A larger frame is refused and the connection closed with 1009.
    pub max_frame_size: usize,
    /// Per-connection WebSocket read buffer, allocated up front: the main term of the
    /// memory an idle connection costs.
    pub read_buffer_size: usize,
    /// Bytes buffered before a write reaches the socket; 0 writes every frame through, so
    /// that no write buffer grows on idle connections.
    pub write_buffer_size: usize,
    /// Sustained client requests per second per connection.
    pub request_rate: u32,
    /// Requests a connection may send in a burst.
    pub request_burst: u32,
    /// Replies and notices a client may leave unread before the gateway stops reading its
    /// requests; past four times this the connection is closed as too slow (1008).
    pub max_pending_replies: usize,
    /// Most concurrent WebSocket connections; more are refused with HTTP 503.
    pub max_connections: usize,
    /// Most concurrent WebSocket connections from one client address; 0 for no limit.
    pub max_connections_per_address: usize,
    /// Bind attempts per connection per minute.
    pub max_binds_per_minute: u32,
    /// `Origin`s allowed besides the gateway's own (same host as the request's `Host`);
    /// `*` allows any. A request without `Origin` (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// TLS on the listener (`https://`, `wss://`); `None` serves plaintext, which the
    /// settings allow on loopback or with `--insecure-plaintext` only.
    pub tls: Option<Arc<ServerTls>>,
    /// TLS towards the manager (its CA, and the gateway's client certificate for mutual
    /// TLS); required for `https://` manager URLs and refusing `http://` ones.
    pub manager_tls: Option<Arc<ClientTls>>,
    /// How often the TLS files are checked for changes (they are also reloaded on SIGHUP).
    pub tls_poll: Duration,
    /// The most a client's TLS handshake may take.
    pub handshake_timeout: Duration,
    /// The most an HTTP request's headers (the WebSocket upgrade included) may take to
    /// arrive, counted from when the connection is ready for a request: a client that
    /// sends nothing, or its headers a byte at a time, is cut off then.
    pub header_read_timeout: Duration,
    /// The NATS connection's credentials file and CA.
    pub nats: NatsSecurity,
    /// How long shutdown waits for clients to acknowledge the close frame.
    pub shutdown_grace: Duration,
    /// On shutdown, how long `/readyz` answers 503 before clients are told and closed, so
    /// that load balancers stop sending new clients first.
    pub drain_delay: Duration,
    /// Metrics, served on `/metrics`.
    pub stats: Arc<GatewayStats>,
    /// Traces each state event's socket write as part of its CTI update's trace.
    pub tracer: Tracer,
    /// Demo mode: the sessions the demo page offers. `None` in every real deployment.
    pub demo: Option<DemoDirectory>,
    /// Whether `/` serves the demo page (always in demo mode).
    pub demo_page: bool,
    /// Whether `/metrics` is served on the public port; false when it has its own listener.
    pub metrics_on_public_port: bool,
}

/// The non-empty items of a comma-separated list, trimmed.
fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `url` can be a gRPC endpoint of a manager: http or https with a host.
pub(crate) fn is_manager_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && tonic::transport::Endpoint::from_shared(url.to_string())
            .is_ok_and(|endpoint| endpoint.uri().host().is_some_and(|h| !h.is_empty()))
}

fn saturate<T: TryFrom<u64> + Copy>(value: u64, max: T) -> T {
    T::try_from(value).unwrap_or(max)
}

/// Fails with `setting` = `value` and what is allowed unless `ok`.
fn check(
    ok: bool,
    setting: &str,
    value: impl ToString,
    allowed: impl Into<String>,
) -> Result<(), SettingsError> {
    if ok {
        Ok(())
    } else {
        Err(SettingsError::invalid(setting, value, allowed))
    }
}

impl GatewayConfig {
    /// Defaults around the manager's address and the references' signing key.
    pub fn new(manager_url: impl Into<String>, signing_key: impl Into<KeyRing>) -> Self {
        Self {
            manager_url: manager_url.into(),
            nats_url: None,
            signing_key: signing_key.into(),
            upstream_streams: saturate(default::UPSTREAM_STREAMS, usize::MAX),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(default::RECONNECT_MAX_MS),
            upstream_keepalive: Duration::from_secs(10),
            upstream_keepalive_timeout: Duration::from_secs(5),
            rebind_grace: Duration::from_secs(default::REBIND_GRACE_SECS),
            rebind_retry: Duration::from_millis(500),
            request_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_millis(default::COMMAND_TIMEOUT_MS),
            ping_interval: Duration::from_secs(default::PING_INTERVAL_SECS),
            pong_timeout: Duration::from_secs(default::PONG_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(default::IDLE_TIMEOUT_SECS),
            max_message_size: saturate(default::MAX_MESSAGE_BYTES, usize::MAX),
            max_frame_size: saturate(default::MAX_FRAME_BYTES, usize::MAX),
            read_buffer_size: saturate(default::READ_BUFFER_BYTES, usize::MAX),
            write_buffer_size: 0,
            request_rate: saturate(default::REQUEST_RATE, u32::MAX),
            request_burst: saturate(default::REQUEST_BURST, u32::MAX),
            max_pending_replies: 32,
            max_connections: saturate(default::max_connections(), usize::MAX),
            max_connections_per_address: saturate(default::MAX_CONNECTIONS_PER_ADDRESS, usize::MAX),
            max_binds_per_minute: saturate(default::MAX_BINDS_PER_MINUTE, u32::MAX),
            allowed_origins: Vec::new(),
            tls: None,
            manager_tls: None,
            tls_poll: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            nats: NatsSecurity::default(),
            shutdown_grace: Duration::from_secs(5),
            drain_delay: Duration::from_millis(default::DRAIN_DELAY_MS),
            stats: Arc::default(),
            tracer: Tracer::disabled(),
            demo: None,
            demo_page: false,
            metrics_on_public_port: true,
        }
    }

    /// The manager URLs of [`Self::manager_url`], in order.
    pub fn manager_urls(&self) -> Vec<String> {
        split_list(&self.manager_url)
    }

    /// The NATS servers of [`Self::nats_url`]; empty without a cluster.
    pub fn nats_urls(&self) -> Vec<String> {
        self.nats_url.as_deref().map(split_list).unwrap_or_default()
    }

    /// Refuses settings that cannot work, naming each by its setting's id and in its units.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let urls = self.manager_urls();
        check(
            !urls.is_empty(),
            "manager_url",
            &self.manager_url,
            "at least one http:// or https:// URL, e.g. http://wfm-manager:50051",
        )?;
        for url in &urls {
            check(
                is_manager_url(url),
                "manager_url",
                url,
                "each an http:// or https:// URL, e.g. http://wfm-manager:50051",
            )?;
            let https = url.starts_with("https://");
            check(
                !https || self.manager_tls.is_some(),
                "manager_url",
                url,
                "an https:// URL needs --manager-ca, the CA to verify the manager by",
            )?;
            check(
                https || self.manager_tls.is_none(),
                "manager_url",
                url,
                "an https:// URL: TLS towards the manager is configured (--manager-ca)",
            )?;
        }
        if let Some(list) = &self.nats_url {
            let servers = self.nats_urls();
            check(
                !servers.is_empty(),
                "nats_url",
                list,
                "at least one NATS server, e.g. nats://nats:4222",
            )?;
            for server in &servers {
                check(
                    server.parse::<async_nats::ServerAddr>().is_ok(),
                    "nats_url",
                    server,
                    "each a NATS server URL, e.g. nats://nats:4222",
                )?;
            }
        }
        let at_least = |value: u64, min: u64, setting: &str| {
            check(
                value >= min,
                setting,
                value,
                format!("must be at least {min}"),
            )
        };
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        at_least(count(self.upstream_streams), 1, "upstream_streams")?;
        check(
            !self.reconnect_initial.is_zero() && self.reconnect_initial <= self.reconnect_max,
            "reconnect_max_ms",
            millis(self.reconnect_max),
            format!(
                "at least the first reconnect delay ({} ms)",
                millis(self.reconnect_initial)
            ),
        )?;
        // Tests and embedders use fractions of a second; the flags give whole seconds.
        let positive = |d: Duration, setting: &str| {
            check(!d.is_zero(), setting, d.as_secs(), "must be at least 1")
        };
        positive(self.ping_interval, "ping_interval_secs")?;
        positive(self.pong_timeout, "pong_timeout_secs")?;
        positive(self.idle_timeout, "idle_timeout_secs")?;
        at_least(count(self.max_message_size), 1024, "max_message_bytes")?;
        check(
            self.max_frame_size >= self.max_message_size,
            "max_frame_bytes",
            self.max_frame_size,
            format!("at least max_message_bytes ({})", self.max_message_size),
        )?;
        at_least(count(self.read_buffer_size), 256, "read_buffer_bytes")?;
        at_least(u64::from(self.request_rate), 1, "request_rate")?;
        at_least(u64::from(self.request_burst), 1, "request_burst")?;
        at_least(count(self.max_pending_replies), 1, "max_pending_replies")?;
        at_least(count(self.max_connections), 1, "max_connections")
    }
}

/// The TLS parts of the config: the listener's, towards the manager, and towards NATS.
struct Tls {
    server: Option<Arc<ServerTls>>,
    client: Option<Arc<ClientTls>>,
    nats: NatsSecurity,
}

impl Settings {
    /// How long shutdown may take before the process gives up on it.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The signing keys (the flag or the key file, and the previous keys); the gateway
    /// cannot run without them.
    fn signing_key(&self) -> Result<KeyRing, SettingsError> {
        let given = secret(
            &Settings::command(),
            ("signing_key", self.signing_key.as_deref()),
            ("signing_key_file", self.signing_key_file.as_deref()),
        )?;
        let Some((id, bytes)) = given else {
            return Err(SettingsError::invalid(
                "signing_key",
                "",
                "required: the manager's signing key, or --signing-key-file",
            ));
        };
        wfm_telemetry::settings::key_ring(id, &bytes, self.previous_signing_keys_file.as_deref())
    }

    /// Validates the settings and builds the gateway's config around `stats` and `tracer`;
    /// an error names the setting in all its forms.
    pub fn into_config(
        self,
        stats: Arc<GatewayStats>,
        tracer: Tracer,
    ) -> Result<GatewayConfig, SettingsError> {
        self.config(stats, tracer)
            .map_err(|error| error.described(&Settings::command()))
    }

    /// The listener's TLS and the rule for plaintext; the client side towards the manager;
    /// the NATS connection's security.
    fn tls(&self) -> Result<Tls, SettingsError> {
        let files: Vec<(&'static str, &std::path::Path)> = [
            ("tls_cert", self.tls_cert.as_deref()),
            ("tls_key", self.tls_key.as_deref()),
            ("manager_ca", self.manager_ca.as_deref()),
            ("manager_cert", self.manager_cert.as_deref()),
            ("manager_key", self.manager_key.as_deref()),
            ("nats_ca", self.nats_ca.as_deref()),
            ("nats_creds", self.nats_creds.as_deref()),
        ]
        .into_iter()
        .filter_map(|(id, path)| path.map(|p| (id, p)))
        .collect();
        let server = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                ServerTls::load(
                    ServerFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                        client_ca: None,
                    },
                    &[b"http/1.1"],
                )
                .map_err(|error| error.setting(&files))?,
            ),
            _ => None,
        };
        let client = match &self.manager_ca {
            Some(ca) => Some(
                ClientTls::load(ClientFiles {
                    ca: ca.clone(),
                    identity: self.manager_cert.clone().zip(self.manager_key.clone()),
                })
                .map_err(|error| error.setting(&files))?,
            ),
            None => None,
        };
        let nats = NatsSecurity {
            creds: self.nats_creds.clone(),
            ca: self.nats_ca.clone(),
        };
        nats.check().map_err(|error| error.setting(&files))?;
        match listen_check(self.listen, server.is_some(), self.insecure_plaintext) {
            ListenCheck::Allowed => {}
            ListenCheck::Insecure => tracing::warn!(
                address = %self.listen,
                "--insecure-plaintext: serving plaintext HTTP and WebSocket on an address other \
                 than loopback; session references cross the network in the clear"
            ),
            ListenCheck::Refused => {
                return Err(SettingsError::invalid(
                    "insecure_plaintext",
                    "false",
                    format!(
                        "needed to serve plaintext on {} (`listen`), which is not loopback: \
                         give --tls-cert and --tls-key, or --insecure-plaintext on a private \
                         network",
                        self.listen
                    ),
                ));
            }
        }
        Ok(Tls {
            server,
            client,
            nats,
        })
    }

    fn config(
        self,
        stats: Arc<GatewayStats>,
        tracer: Tracer,
    ) -> Result<GatewayConfig, SettingsError> {
        let signing_key = self.signing_key()?;
        let Tls {
            server: tls,
            client: manager_tls,
            nats,
        } = self.tls()?;
        check(
            self.drain_delay_ms < self.shutdown_grace_secs.saturating_mul(1000),
            "drain_delay_ms",
            self.drain_delay_ms,
            format!(
                "less than the shutdown grace ({} s)",
                self.shutdown_grace_secs
            ),
        )?;
        let mut config = GatewayConfig::new(self.manager_url, signing_key);
        config.nats_url = self.nats_url.filter(|list| !list.trim().is_empty());
        config.upstream_streams = saturate(self.upstream_streams, usize::MAX);
        config.reconnect_max = Duration::from_millis(self.reconnect_max_ms);
        config.rebind_grace = Duration::from_secs(self.rebind_grace_secs);
        config.command_timeout = Duration::from_millis(self.command_timeout_ms);
        config.ping_interval = Duration::from_secs(self.ping_interval_secs);
        config.pong_timeout = Duration::from_secs(self.pong_timeout_secs);
        config.idle_timeout = Duration::from_secs(self.idle_timeout_secs);
        config.max_message_size = saturate(self.max_message_bytes, usize::MAX);
        config.max_frame_size = saturate(self.max_frame_bytes, usize::MAX);
        config.read_buffer_size = saturate(self.read_buffer_bytes, usize::MAX);
        config.request_rate = saturate(self.request_rate, u32::MAX);
        config.request_burst = saturate(self.request_burst, u32::MAX);
        config.max_connections = saturate(
            self.max_connections
                .unwrap_or_else(default::max_connections),
            usize::MAX,
        );
        config.demo_page = self.demo_page;
        config.max_connections_per_address = saturate(self.max_connections_per_address, usize::MAX);
        config.max_binds_per_minute = saturate(self.max_binds_per_minute, u32::MAX);
        config.metrics_on_public_port = self.metrics_listen.is_none();
        config.allowed_origins = self
            .allowed_origins
            .into_iter()
            .filter(|o| !o.is_empty())
            .collect();
        config.tls = tls;
        config.manager_tls = manager_tls;
        config.nats = nats;
        config.tls_poll = Duration::from_millis(self.tls_poll_ms);
        config.drain_delay = Duration::from_millis(self.drain_delay_ms);
        // The close handshake must fit in what is left of the grace period.
        let left = Duration::from_millis(
            (self.shutdown_grace_secs * 1000).saturating_sub(self.drain_delay_ms),
        );
        config.shutdown_grace = config.shutdown_grace.min(left / 2);
        config.stats = stats;
        config.tracer = tracer;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A key that passes the key checks (not repetitive, not a placeholder).
    const TEST_KEY: &str = "k3Jq9vXz2Lw8Rt5Yp1Nc7Hb4Gd6Fs0Ma+/Qe=";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[1; 32]).unwrap()
    }

    #[test]
    fn the_flags_defaults_are_the_configs_defaults_and_valid() {
        let settings = Settings::try_parse_from([BINARY, "--signing-key", TEST_KEY]).unwrap();
        let from_flags = settings
            .into_config(Arc::default(), Tracer::disabled())
            .unwrap();
        let built = GatewayConfig::new(DEFAULT_MANAGER_URL, key());
        assert_eq!(built.validate().map_err(|e| e.to_string()), Ok(()));
        assert_eq!(
            (
                from_flags.upstream_streams,
                from_flags.ping_interval,
                from_flags.max_message_size
            ),
            (
                built.upstream_streams,
                built.ping_interval,
                built.max_message_size
            )
        );
        assert_eq!(
            (
                from_flags.request_rate,
                from_flags.request_burst,
                from_flags.max_connections
            ),
            (
                built.request_rate,
                built.request_burst,
                built.max_connections
            )
        );
    }

    #[test]
    fn a_bad_value_names_its_setting_value_and_what_is_allowed() {
        let mut config = GatewayConfig::new(DEFAULT_MANAGER_URL, key());
        config.upstream_streams = 0;
        assert_eq!(
            config.validate().map_err(|e| e.to_string()),
            Err("invalid setting upstream_streams = \"0\": must be at least 1".to_string())
        );
        let settings =
            Settings::try_parse_from([BINARY, "--signing-key", TEST_KEY, "--request-burst", "0"])
                .unwrap();
        let error = settings
            .into_config(Arc::default(), Tracer::disabled())
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid setting --request-burst (WFM_GATEWAY_REQUEST_BURST, `request_burst` in the \
             config file) = \"0\": must be at least 1"
        );
    }

    #[test]
    fn every_manager_url_of_the_list_is_checked_and_a_bad_one_named() {
        let parse = |urls: &str| {
            Settings::try_parse_from([BINARY, "--signing-key", TEST_KEY, "--manager-url", urls])
                .unwrap()
                .into_config(Arc::default(), Tracer::disabled())
        };
        let config = parse("http://a:50051, http://b:50051").unwrap();
        assert_eq!(config.manager_urls(), ["http://a:50051", "http://b:50051"]);
        // https needs a CA to verify the manager by.
        let error = parse("https://b:50051").unwrap_err().to_string();
        assert!(
            error.ends_with("an https:// URL needs --manager-ca, the CA to verify the manager by"),
            "{error}"
        );
        let error = parse("http://a:50051,b:50051").unwrap_err().to_string();
        assert!(
            error.starts_with("invalid setting --manager-url (WFM_MANAGER_URL, `manager_url` in the config file) = \"b:50051\""),
            "{error}"
        );
        assert!(parse(" , ").is_err());
    }

    #[test]
    fn nats_servers_are_optional_and_checked() {
        let mut config = GatewayConfig::new(DEFAULT_MANAGER_URL, key());
        assert!(config.nats_urls().is_empty());
        config.nats_url = Some("nats://a:4222,b:4222".into());
        assert_eq!(config.validate().map_err(|e| e.to_string()), Ok(()));
        assert_eq!(config.nats_urls(), ["nats://a:4222", "b:4222"]);
        config.nats_url = Some("nats://a:4222,nats://b:notaport".into());
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("nats://b:notaport"), "{error}");
    }
}

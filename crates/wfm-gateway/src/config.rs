//! Settings of the edge gateway, with the defaults a contact-center deployment starts from.

use std::sync::Arc;
use std::time::Duration;

use wfm_reference::SigningKey;
use wfm_telemetry::Tracer;

use crate::demo::DemoDirectory;
use crate::stats::GatewayStats;

/// Everything `serve` needs besides its listener.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The workflow manager's gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub manager_url: String,
    /// Verifies session resource references before any bind reaches the manager.
    pub signing_key: SigningKey,
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
    /// Allowed `Origin` headers; empty allows any origin.
    pub allowed_origins: Vec<String>,
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
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid gateway setting {setting}: {problem}")]
pub struct ConfigError {
    /// The setting.
    pub setting: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl GatewayConfig {
    /// Defaults around the manager's address and the references' signing key.
    pub fn new(manager_url: impl Into<String>, signing_key: SigningKey) -> Self {
        Self {
            manager_url: manager_url.into(),
            signing_key,
            upstream_streams: 2,
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            upstream_keepalive: Duration::from_secs(10),
            upstream_keepalive_timeout: Duration::from_secs(5),
            rebind_grace: Duration::from_secs(30),
            rebind_retry: Duration::from_millis(500),
            request_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(300),
            max_message_size: 16 * 1024,
            max_frame_size: 64 * 1024,
            read_buffer_size: 2 * 1024,
            write_buffer_size: 0,
            request_rate: 10,
            request_burst: 20,
            max_pending_replies: 32,
            max_connections: 100_000,
            allowed_origins: Vec::new(),
            shutdown_grace: Duration::from_secs(5),
            drain_delay: Duration::ZERO,
            stats: Arc::default(),
            tracer: Tracer::disabled(),
            demo: None,
        }
    }

    /// Refuses settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |setting, problem| Err(ConfigError { setting, problem });
        if self.upstream_streams == 0 {
            return fail("upstream_streams", "must be at least 1");
        }
        if self.reconnect_initial.is_zero() || self.reconnect_initial > self.reconnect_max {
            return fail(
                "reconnect_initial",
                "must be positive and at most reconnect_max",
            );
        }
        if self.ping_interval.is_zero() || self.pong_timeout.is_zero() {
            return fail("ping_interval/pong_timeout", "must be positive");
        }
        if self.max_message_size < 1024 {
            return fail("max_message_size", "must be at least 1024 bytes");
        }
        if self.max_frame_size < self.max_message_size {
            return fail("max_frame_size", "must be at least max_message_size");
        }
        if self.read_buffer_size < 256 {
            return fail("read_buffer_size", "must be at least 256 bytes");
        }
        if self.request_rate == 0 || self.request_burst == 0 {
            return fail("request_rate/request_burst", "must be at least 1");
        }
        if self.max_pending_replies == 0 {
            return fail("max_pending_replies", "must be at least 1");
        }
        if self.max_connections == 0 {
            return fail("max_connections", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_streams_are_not() {
        let key = SigningKey::from_bytes(&[1; 32]).unwrap_or_else(|e| panic!("{e}"));
        let mut config = GatewayConfig::new("http://127.0.0.1:50051", key);
        assert_eq!(config.validate(), Ok(()));
        config.upstream_streams = 0;
        assert_eq!(
            config.validate().map_err(|e| e.to_string()),
            Err("invalid gateway setting upstream_streams: must be at least 1".to_string())
        );
    }
}

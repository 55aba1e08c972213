//! The gateway's metrics: atomics updated on the hot path, served on `/metrics` and
//! exported over OTLP by `wfm-telemetry`.

use wfm_telemetry::{Counter, Gauge, Histogram, Registry};

/// Counters, gauges and histograms of one gateway.
#[derive(Debug, Clone)]
pub struct GatewayStats {
    registry: Registry,
    pub(crate) connections: Gauge,
    pub(crate) connections_total: Counter,
    pub(crate) connections_refused: Counter,
    pub(crate) accept_errors: Counter,
    pub(crate) binds_refused: Counter,
    pub(crate) address_refused: Counter,
    pub(crate) bindings: Gauge,
    pub(crate) upstream_streams: Gauge,
    pub(crate) upstream_endpoints: Gauge,
    pub(crate) redirects: Counter,
    pub(crate) events_received: Counter,
    pub(crate) events_sent: Counter,
    pub(crate) events_conflated: Counter,
    pub(crate) queued: Gauge,
    pub(crate) commands_refused: Counter,
    pub(crate) commands_pending: Gauge,
    pub(crate) commands_timed_out: Counter,
    pub(crate) event_to_write: Histogram,
    /// TLS reloads of the server and the manager-client certificates.
    pub(crate) tls: wfm_tls::ReloadStats,
    pub(crate) tls_handshake_failures: Counter,
}

impl Default for GatewayStats {
    fn default() -> Self {
        Self::new(&Registry::new())
    }
}

impl GatewayStats {
    /// Registers the gateway's metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let r = registry;
        Self {
            registry: registry.clone(),
            connections: r.gauge(
                "wfm_gateway_connections",
                "Open MediaBar WebSocket connections.",
                &[],
            ),
            connections_total: r.counter(
                "wfm_gateway_connections_total",
                "MediaBar WebSocket connections accepted.",
                &[],
            ),
            connections_refused: r.counter(
                "wfm_gateway_connections_refused_total",
                "WebSocket upgrades refused (origin, connection limit, shutting down).",
                &[],
            ),
            accept_errors: r.counter(
                "wfm_gateway_accept_errors_total",
                "TCP connections the listener could not accept (out of file descriptors, say).",
                &[],
            ),
            binds_refused: r.counter(
                "wfm_gateway_binds_refused_total",
                "bindResource requests refused because the connection's bind attempts per minute were spent.",
                &[],
            ),
            address_refused: r.counter(
                "wfm_gateway_connections_per_address_refused_total",
                "WebSocket upgrades refused because their client address had max_connections_per_address open.",
                &[],
            ),
            bindings: r.gauge(
                "wfm_gateway_bindings",
                "Connections bound to a session.",
                &[],
            ),
            upstream_streams: r.gauge(
                "wfm_gateway_upstream_streams",
                "Attach gRPC streams connected to the workflow manager.",
                &[],
            ),
            upstream_endpoints: r.gauge(
                "wfm_gateway_upstream_endpoints",
                "Workflow manager endpoints known: the manager URLs, and in a cluster the replicas found in NATS or named by a redirect.",
                &[],
            ),
            redirects: r.counter(
                "wfm_gateway_redirects_total",
                "Binds redirected by a manager replica to the replica that owns the session.",
                &[],
            ),
            events_received: r.counter(
                "wfm_gateway_events_received_total",
                "state.updated events received from the workflow manager for bound clients.",
                &[],
            ),
            events_sent: r.counter(
                "wfm_gateway_events_sent_total",
                "state.updated events written to client sockets.",
                &[],
            ),
            events_conflated: r.counter(
                "wfm_gateway_events_conflated_total",
                "state.updated events replaced by a newer state of their target before a slow client read them.",
                &[],
            ),
            queued: r.gauge(
                "wfm_gateway_queued_messages",
                "Messages waiting in client connections' queues (state events conflated per target, and replies).",
                &[],
            ),
            commands_refused: r.counter(
                "wfm_gateway_upstream_commands_refused_total",
                "Bind, unbind or MediaBar commands that found an Attach stream's command queue full (binds and MediaBar commands fail with serviceUnavailable, unbinds are retried).",
                &[],
            ),
            commands_pending: r.gauge(
                "wfm_gateway_commands_pending",
                "MediaBar commands (resourceRequest) sent to the manager and not yet answered.",
                &[],
            ),
            commands_timed_out: r.counter(
                "wfm_gateway_commands_timed_out_total",
                "MediaBar commands the manager did not answer within the gateway's command timeout.",
                &[],
            ),
            event_to_write: r.histogram(
                "wfm_gateway_event_to_write_seconds",
                "From receiving a state.updated event from the manager to writing it to the client socket.",
                &[],
            ),
            tls: wfm_tls::ReloadStats {
                reloads: r.counter(
                    "wfm_gateway_tls_reloads_total",
                    "TLS certificates, keys and CAs reloaded from disk and put in force for new connections.",
                    &[],
                ),
                failures: r.counter(
                    "wfm_gateway_tls_reload_failures_total",
                    "TLS reloads refused (unreadable or mismatched files); the previous certificate stayed in force.",
                    &[],
                ),
            },
            tls_handshake_failures: r.counter(
                "wfm_gateway_tls_handshake_failures_total",
                "TLS handshakes with clients failed or timed out (plaintext on the TLS port, say).",
                &[],
            ),
        }
    }

    /// The registry these metrics live in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// TLS reloads put in force since start.
    pub fn tls_reloads(&self) -> u64 {
        self.tls.reloads.get()
    }

    /// TLS reloads refused since start (the previous certificate stayed in force).
    pub fn tls_reload_failures(&self) -> u64 {
        self.tls.failures.get()
    }
}

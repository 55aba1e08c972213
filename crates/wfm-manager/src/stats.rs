//! The manager's metrics: atomics updated on the hot path, rendered on `/metrics` and
//! exported over OTLP by `wfm-telemetry`.

use wfm_telemetry::{Counter, Gauge, Histogram, Registry};

use wfm_proto::v1 as pb;

use crate::error::REJECT_REASONS;

/// The `outcome` label of `wfm_manager_commands_total`, for each status.
const COMMAND_STATUSES: &[(pb::CommandStatus, &str)] = &[
    (pb::CommandStatus::Accepted, "accepted"),
    (pb::CommandStatus::NotBound, "not_bound"),
    (pb::CommandStatus::UnknownTarget, "unknown_target"),
    (pb::CommandStatus::UnknownCapability, "unknown_capability"),
    (pb::CommandStatus::CapabilityDisabled, "capability_disabled"),
    (
        pb::CommandStatus::ProcessorUnavailable,
        "processor_unavailable",
    ),
    (pb::CommandStatus::Rejected, "rejected"),
    (pb::CommandStatus::Timeout, "timeout"),
    (pb::CommandStatus::InvalidArguments, "invalid_arguments"),
];

/// Counters, gauges and histograms of one manager.
#[derive(Debug, Clone)]
pub struct ManagerStats {
    registry: Registry,
    pub(crate) sessions: Gauge,
    pub(crate) bindings: Gauge,
    pub(crate) grpc_connections: Gauge,
    pub(crate) grpc_connections_total: Counter,
    pub(crate) attach_streams: Gauge,
    pub(crate) attach_bindings: Gauge,
    pub(crate) updates_applied: Counter,
    pub(crate) updates_duplicate: Counter,
    rejected: Vec<(&'static str, Counter)>,
    pub(crate) events_emitted: Counter,
    pub(crate) stream_queued: Gauge,
    pub(crate) stream_overflows: Counter,
    pub(crate) resyncs: Counter,
    pub(crate) update_to_event: Histogram,
    profile_reloads: Counter,
    profile_reload_failures: Counter,
    pub(crate) store_up: Gauge,
    pub(crate) persist_pending: Gauge,
    pub(crate) persist_lag: Histogram,
    pub(crate) takeovers: Counter,
    pub(crate) handoffs: Counter,
    pub(crate) forwarded: Counter,
    pub(crate) fencing_refusals: Counter,
    pub(crate) sessions_refused: Counter,
    pub(crate) open_calls: Gauge,
    pub(crate) messages_too_large: Counter,
    /// TLS reloads of the server certificate (and the peer client certificate).
    pub(crate) tls: wfm_tls::ReloadStats,
    pub(crate) tls_handshake_failures: Counter,
    pub(crate) calls_denied: Counter,
    pub(crate) processors: Gauge,
    commands: Vec<(pb::CommandStatus, Counter)>,
}

impl Default for ManagerStats {
    fn default() -> Self {
        Self::new(&Registry::new())
    }
}

impl ManagerStats {
    /// Registers the manager's metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let r = registry;
        Self {
            registry: registry.clone(),
            sessions: r.gauge("wfm_manager_sessions", "Live sessions.", &[]),
            bindings: r.gauge("wfm_manager_bindings", "Sessions with a bound client.", &[]),
            grpc_connections: r.gauge(
                "wfm_manager_grpc_connections",
                "Open gRPC (HTTP/2) connections.",
                &[],
            ),
            grpc_connections_total: r.counter(
                "wfm_manager_grpc_connections_total",
                "gRPC connections accepted.",
                &[],
            ),
            attach_streams: r.gauge(
                "wfm_manager_attach_streams",
                "Open Attach and BindSession streams (gateways).",
                &[],
            ),
            attach_bindings: r.gauge(
                "wfm_manager_attach_bindings",
                "Bindings held by Attach streams: the live ones, and those the manager ended itself until the stream prunes them (when it has doubled).",
                &[],
            ),
            updates_applied: r.counter(
                "wfm_manager_updates_applied_total",
                "CTI updates applied.",
                &[],
            ),
            updates_duplicate: r.counter(
                "wfm_manager_updates_duplicate_total",
                "CTI updates acknowledged as repeats and ignored.",
                &[],
            ),
            rejected: REJECT_REASONS
                .iter()
                .map(|&reason| {
                    let counter = r.counter(
                        "wfm_manager_updates_rejected_total",
                        "CTI updates refused, by reason.",
                        &[("reason", reason)],
                    );
                    (reason, counter)
                })
                .collect(),
            events_emitted: r.counter(
                "wfm_manager_events_emitted_total",
                "state.updated events queued to bound clients.",
                &[],
            ),
            stream_queued: r.gauge(
                "wfm_manager_stream_queued_events",
                "state.updated events waiting in binding streams' queues, all streams.",
                &[],
            ),
            stream_overflows: r.counter(
                "wfm_manager_stream_overflows_total",
                "State events not queued because their binding stream's queue was full, or their binding was waiting to be resynchronised.",
                &[],
            ),
            resyncs: r.counter(
                "wfm_manager_resyncs_total",
                "Bindings resent their entire view state after their stream's queue overflowed.",
                &[],
            ),
            update_to_event: r.histogram(
                "wfm_manager_update_to_event_seconds",
                "From receiving a CTI update to its state.updated events queued to the binder.",
                &[],
            ),
            profile_reloads: r.counter(
                "wfm_manager_profile_reloads_total",
                "Profile files loaded and put in force.",
                &[],
            ),
            profile_reload_failures: r.counter(
                "wfm_manager_profile_reload_failures_total",
                "Profile files refused; the previous profiles stayed in force.",
                &[],
            ),
            store_up: r.gauge(
                "wfm_manager_cluster_store_up",
                "Cluster mode: 1 while NATS is reachable, else 0.",
                &[],
            ),
            persist_pending: r.gauge(
                "wfm_manager_cluster_persist_pending",
                "Cluster mode: sessions whose latest changes are not yet persisted.",
                &[],
            ),
            persist_lag: r.histogram(
                "wfm_manager_cluster_persist_lag_seconds",
                "Cluster mode: from a session's first unpersisted change to its record written.",
                &[],
            ),
            takeovers: r.counter(
                "wfm_manager_cluster_takeovers_total",
                "Cluster mode: sessions taken over from a dead, released or earlier owner.",
                &[],
            ),
            handoffs: r.counter(
                "wfm_manager_cluster_handoffs_total",
                "Cluster mode: sessions handed to a peer on shutdown.",
                &[],
            ),
            forwarded: r.counter(
                "wfm_manager_cluster_forwarded_calls_total",
                "Cluster mode: calls forwarded to the replica owning their session.",
                &[],
            ),
            sessions_refused: r.counter(
                "wfm_manager_sessions_refused_total",
                "CreateSession refused because the manager held max_sessions sessions.",
                &[],
            ),
            open_calls: r.gauge(
                "wfm_manager_grpc_open_calls",
                "gRPC calls and streams open, over every connection (each connection may have MAX_STREAMS_PER_CONNECTION = 1024).",
                &[],
            ),
            messages_too_large: r.counter(
                "wfm_manager_grpc_messages_too_large_total",
                "gRPC messages refused with OUT_OF_RANGE for exceeding MAX_MESSAGE_BYTES (1 MiB).",
                &[],
            ),
            fencing_refusals: r.counter(
                "wfm_manager_cluster_fencing_refusals_total",
                "Cluster mode: writes refused because another replica owns the session now; the session is dropped here.",
                &[],
            ),
            tls: wfm_tls::ReloadStats {
                reloads: r.counter(
                    "wfm_manager_tls_reloads_total",
                    "TLS certificates, keys and CAs reloaded from disk and put in force for new connections.",
                    &[],
                ),
                failures: r.counter(
                    "wfm_manager_tls_reload_failures_total",
                    "TLS reloads refused (unreadable or mismatched files); the previous certificate stayed in force.",
                    &[],
                ),
            },
            tls_handshake_failures: r.counter(
                "wfm_manager_tls_handshake_failures_total",
                "TLS handshakes failed or timed out (plaintext on the TLS port, no or untrusted client certificate).",
                &[],
            ),
            calls_denied: r.counter(
                "wfm_manager_calls_denied_total",
                "Calls refused with PERMISSION_DENIED: the client certificate's role does not allow them.",
                &[],
            ),
            processors: r.gauge(
                "wfm_manager_processors",
                "Interaction Processors with a command stream (ReceiveCommands) to this process.",
                &[],
            ),
            commands: COMMAND_STATUSES
                .iter()
                .map(|&(status, label)| {
                    let counter = r.counter(
                        "wfm_manager_commands_total",
                        "MediaBar commands handled, by outcome.",
                        &[("outcome", label)],
                    );
                    (status, counter)
                })
                .collect(),
        }
    }

    /// The registry these metrics live in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Profile files loaded and put in force since start.
    pub fn profile_reloads(&self) -> u64 {
        self.profile_reloads.get()
    }

    /// Profile files refused since start (the previous profiles stayed in force).
    pub fn profile_reload_failures(&self) -> u64 {
        self.profile_reload_failures.get()
    }

    /// TLS reloads put in force since start.
    pub fn tls_reloads(&self) -> u64 {
        self.tls.reloads.get()
    }

    /// TLS reloads refused since start (the previous certificate stayed in force).
    pub fn tls_reload_failures(&self) -> u64 {
        self.tls.failures.get()
    }

    pub(crate) fn reloaded(&self) {
        self.profile_reloads.inc();
    }

    pub(crate) fn reload_failed(&self) {
        self.profile_reload_failures.inc();
    }

    /// Counts an update refused for `reason` (one of [`REJECT_REASONS`]).
    /// Counts one command's outcome.
    pub(crate) fn command(&self, status: pb::CommandStatus) {
        if let Some((_, counter)) = self.commands.iter().find(|(s, _)| *s == status) {
            counter.inc();
        }
    }

    pub(crate) fn rejected(&self, reason: &'static str) {
        if let Some((_, counter)) = self.rejected.iter().find(|(r, _)| *r == reason) {
            counter.inc();
        }
    }
}

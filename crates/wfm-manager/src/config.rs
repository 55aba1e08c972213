//! Settings of the workflow-manager service.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wfm_profiles::ProfileSet;
use wfm_reference::KeyRing;
use wfm_telemetry::Tracer;
use wfm_telemetry::http::Readiness;
use wfm_tls::{ClientTls, RoleMap, ServerTls};

use crate::stats::ManagerStats;

/// Everything `serve` needs besides its listener.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Signs session resource references with its current key, and verifies them with it or
    /// a previous one.
    pub signing_key: KeyRing,
    /// How long a newly issued reference stays valid.
    pub reference_ttl: Duration,
    /// The workflow profiles in force at start.
    pub profiles: ProfileSet,
    /// The profile file to watch and reload (on change or SIGHUP), if profiles came from one.
    pub profiles_path: Option<PathBuf>,
    /// How often the profile file is checked for changes.
    pub profiles_poll: Duration,
    /// Metrics, shared with whoever renders or exports them.
    pub stats: Arc<ManagerStats>,
    /// Traces update handling, continuing the caller's W3C trace context; disabled by default.
    pub tracer: Tracer,
    /// On shutdown, how long health reports NOT_SERVING before binders are told and
    /// streams end, so that load balancers and probes stop sending work first.
    pub drain_delay: Duration,
    /// State events that may wait in one binding stream's queue; beyond it a binding's
    /// events are dropped and it is resent its entire view state once the stream catches up.
    pub stream_queue: usize,
    /// Most sessions this manager creates; more are refused with RESOURCE_EXHAUSTED.
    pub max_sessions: usize,
    /// How long a command waits for its Interaction Processor's answer.
    pub command_timeout: Duration,
    /// Cluster mode (replicas over NATS JetStream); `None` runs one process alone.
    pub cluster: Option<crate::ClusterConfig>,
    /// TLS on the gRPC port (with mutual TLS when it has a client CA); `None` serves
    /// plaintext, which the settings allow on loopback or with `--insecure-plaintext` only.
    pub tls: Option<Arc<ServerTls>>,
    /// Client certificate URI SANs → roles; enforced only when `tls` requires client
    /// certificates. Without a client CA every caller may make every call.
    pub roles: RoleMap,
    /// Cluster mode with TLS: this replica's own certificate towards its peers, trusting
    /// the client CA, for forwarded calls (which the `peer` role allows).
    pub peer_tls: Option<Arc<ClientTls>>,
    /// How often the TLS files are checked for changes (they are also reloaded on SIGHUP).
    pub tls_poll: Duration,
    /// The most a TLS handshake may take; also the most a connection may take to send the
    /// HTTP/2 client preface (after the handshake, or from accept in plaintext).
    pub handshake_timeout: Duration,
    /// Set with the gRPC health status, for the metrics listener's `/readyz`.
    pub readiness: Arc<Readiness>,
    /// Reported by `GetServiceInfo`.
    pub vendor: String,
    /// Reported by `GetServiceInfo`.
    pub version: String,
}

impl ManagerConfig {
    /// Defaults around `signing_key`: 12-hour references (an agent's shift), only the
    /// built-in profile, and this crate's version.
    pub fn new(signing_key: impl Into<KeyRing>) -> Self {
        Self {
            signing_key: signing_key.into(),
            reference_ttl: Duration::from_secs(12 * 60 * 60),
            profiles: ProfileSet::default(),
            profiles_path: None,
            profiles_poll: Duration::from_secs(2),
            stats: Arc::default(),
            tracer: Tracer::disabled(),
            drain_delay: Duration::ZERO,
            stream_queue: 4096,
            max_sessions: 100_000,
            command_timeout: Duration::from_secs(5),
            cluster: None,
            tls: None,
            roles: RoleMap::default(),
            peer_tls: None,
            tls_poll: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            readiness: Arc::default(),
            vendor: "wfm".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

//! Settings of the workflow-manager service.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wfm_profiles::ProfileSet;
use wfm_reference::KeyRing;
use wfm_telemetry::Tracer;

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
    /// Cluster mode (replicas over NATS JetStream); `None` runs one process alone.
    pub cluster: Option<crate::ClusterConfig>,
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
            cluster: None,
            vendor: "wfm".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

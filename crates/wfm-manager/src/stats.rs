//! Counters of the manager's own life, read by tests and exported by the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of profile reloads.
#[derive(Debug, Default)]
pub struct ManagerStats {
    profile_reloads: AtomicU64,
    profile_reload_failures: AtomicU64,
}

impl ManagerStats {
    /// Profile files loaded and put in force since start.
    pub fn profile_reloads(&self) -> u64 {
        self.profile_reloads.load(Ordering::Relaxed)
    }

    /// Profile files refused since start (the previous profiles stayed in force).
    pub fn profile_reload_failures(&self) -> u64 {
        self.profile_reload_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn reloaded(&self) {
        self.profile_reloads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reload_failed(&self) {
        self.profile_reload_failures.fetch_add(1, Ordering::Relaxed);
    }
}

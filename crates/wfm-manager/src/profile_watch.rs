//! Hot reload of the profile file: on a change of its modification time or size, or on
//! SIGHUP. A file that fails validation is refused whole and the profiles in force stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use wfm_profiles::ProfileSet;

use crate::registry::Registry;
use crate::stats::ManagerStats;

/// Watches `path` until `stop` is cancelled.
pub(crate) async fn watch(
    path: PathBuf,
    poll: Duration,
    registry: Arc<Registry>,
    stats: Arc<ManagerStats>,
    stop: CancellationToken,
) {
    let mut hangup = wfm_telemetry::signal::Hangup::new();
    let mut seen = fingerprint(&path).await;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => false,
            () = hangup.recv() => true,
        };
        let now = fingerprint(&path).await;
        if !forced && now == seen {
            continue;
        }
        seen = now;
        reload(&path, &registry, &stats).await;
    }
}

async fn reload(path: &Path, registry: &Registry, stats: &ManagerStats) {
    let origin = path.display().to_string();
    let loaded = match tokio::fs::read_to_string(path).await {
        Ok(text) => ProfileSet::parse(&origin, &text),
        Err(error) => Err(wfm_profiles::LoadError::io(path, &error)),
    };
    match loaded {
        Ok(profiles) => {
            registry.reload(profiles);
            stats.reloaded();
            tracing::info!(path = %origin, "profiles reloaded");
        }
        Err(error) => {
            stats.reload_failed();
            for diagnostic in &error.diagnostics {
                tracing::error!(%diagnostic, "profile file refused; the previous profiles stay in force");
            }
        }
    }
}

/// What tells a rewritten file apart without reading it.
async fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = tokio::fs::metadata(path).await.ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

//! Reloading TLS material without a restart: each config's files are polled for a change
//! of modification time or size (a Kubernetes Secret volume swaps a symlink, which changes
//! both), and every config is reloaded on SIGHUP. A reload that fails (a half-written
//! file, a key that does not match its certificate) keeps the config in force, is logged,
//! and is counted; the next change tries again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use wfm_telemetry::Counter;
use wfm_telemetry::signal::Hangup;

use crate::TlsError;

/// A config that can be rebuilt from its files.
pub trait Reloadable: Send + Sync {
    /// What it is, for the logs: `server certificate`, say.
    fn name(&self) -> &'static str;
    /// The files it is built from.
    fn files(&self) -> Vec<PathBuf>;
    /// Rebuilds it from its files; on an error the config in force stays.
    fn reload(&self) -> Result<(), TlsError>;
}

/// The counters of a service's reloads.
#[derive(Debug, Clone, Default)]
pub struct ReloadStats {
    /// Reloads that replaced a config.
    pub reloads: Counter,
    /// Reloads refused, the old config kept.
    pub failures: Counter,
}

/// What tells a rewritten file apart without reading it.
async fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = tokio::fs::metadata(path).await.ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

async fn fingerprints(item: &dyn Reloadable) -> Vec<Option<(SystemTime, u64)>> {
    let mut all = Vec::new();
    for file in item.files() {
        all.push(fingerprint(&file).await);
    }
    all
}

/// Reloads one config and counts the outcome.
pub fn reload_one(item: &dyn Reloadable, stats: &ReloadStats) -> bool {
    match item.reload() {
        Ok(()) => {
            stats.reloads.inc();
            tracing::info!(what = item.name(), "tls reloaded; new connections use it");
            true
        }
        Err(error) => {
            stats.failures.inc();
            tracing::error!(
                what = item.name(),
                %error,
                "tls reload refused; the previous certificate stays in force"
            );
            false
        }
    }
}

/// Starts watching `items` every `poll`, and on SIGHUP, until `stop` is cancelled. The
/// files' state is taken before this returns, so that a change made once the server is
/// up is never mistaken for the state it started with.
pub async fn watch(
    items: Vec<Arc<dyn Reloadable>>,
    poll: Duration,
    stats: ReloadStats,
    stop: CancellationToken,
) {
    if items.is_empty() {
        return;
    }
    let hangup = Hangup::new();
    let mut seen = Vec::with_capacity(items.len());
    for item in &items {
        seen.push(fingerprints(item.as_ref()).await);
    }
    tokio::spawn(run(items, seen, hangup, poll, stats, stop));
}

async fn run(
    items: Vec<Arc<dyn Reloadable>>,
    mut seen: Vec<Vec<Option<(SystemTime, u64)>>>,
    mut hangup: Hangup,
    poll: Duration,
    stats: ReloadStats,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => false,
            () = hangup.recv() => true,
        };
        if forced {
            tracing::info!("SIGHUP: reloading tls certificates");
        }
        for (item, seen) in items.iter().zip(seen.iter_mut()) {
            let now = fingerprints(item.as_ref()).await;
            if !forced && now == *seen {
                continue;
            }
            *seen = now;
            reload_one(item.as_ref(), &stats);
        }
    }
}

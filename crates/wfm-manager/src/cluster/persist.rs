//! Write-behind persistence: each changed session's record is rewritten after the update
//! that changed it was acknowledged, coalescing whatever changed meanwhile, with at most one
//! write in flight per session. Each write is conditional on the revision this replica last
//! wrote; a refused one means another replica owns the session now, and it is dropped here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use wfm_proto::cluster::v1::SessionRecord;

use super::Cluster;
use super::keys;
use super::record;
use super::store::StoreError;
use crate::outbox::UnboundReason;
use crate::registry::{Entry, lock};

/// Record writes in flight at once, across sessions.
const CONCURRENCY: usize = 256;
/// Pause before a write that NATS did not take is retried.
const RETRY: Duration = Duration::from_millis(250);

struct Snapshot {
    key: String,
    record: SessionRecord,
    revision: u64,
    incarnation: u64,
    since: Instant,
}

fn take(shared: &Mutex<Entry>, cluster: &Cluster) -> Option<Snapshot> {
    let mut entry = lock(shared);
    let owned = entry.owned.as_mut()?;
    owned.queued = false;
    if owned.in_flight || owned.moving {
        return None;
    }
    let since = owned.dirty_since.take()?;
    owned.in_flight = true;
    let (revision, incarnation) = (owned.revision, owned.incarnation);
    let key = keys::session_key(entry.session.id().as_str());
    let record = record::of_entry(&entry, cluster.owner(incarnation));
    Some(Snapshot {
        key,
        record,
        revision,
        incarnation,
        since,
    })
}

fn finish(
    shared: Arc<Mutex<Entry>>,
    cluster: &Arc<Cluster>,
    since: Instant,
    result: Result<u64, StoreError>,
) {
    let stats = &cluster.stats;
    let mut entry = lock(&shared);
    let session_id = entry.session.id().clone();
    let Some(owned) = entry.owned.as_mut() else {
        return;
    };
    owned.in_flight = false;
    match result {
        Ok(revision) => {
            owned.revision = revision;
            stats.persist_lag.observe(since.elapsed());
            stats.persist_pending.dec();
            if owned.dirty_since.is_some() && !owned.queued && !owned.moving {
                owned.queued = true;
                drop(entry);
                cluster.fence.requeue(shared);
            }
        }
        Err(StoreError::Conflict) => {
            stats.persist_pending.dec();
            if owned.dirty_since.take().is_some() {
                stats.persist_pending.dec();
            }
            stats.fencing_refusals.inc();
            tracing::warn!(%session_id, "session taken by another replica; dropped here");
            drop(entry);
            cluster
                .registry()
                .evict(&shared, UnboundReason::Moved(None));
        }
        Err(error) => {
            tracing::debug!(%session_id, %error, "persisting failed; retrying");
            // The failed write's changes join any made since: one pending unit again.
            if owned.dirty_since.is_some() {
                stats.persist_pending.dec();
            }
            owned.dirty_since = Some(since);
            if !owned.queued {
                owned.queued = true;
                drop(entry);
                let cluster = Arc::clone(cluster);
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY).await;
                    cluster.fence.requeue(shared);
                });
            }
        }
    }
}

/// Writes queued sessions until the queue closes.
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    mut queue: mpsc::UnboundedReceiver<Arc<Mutex<Entry>>>,
) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    while let Some(shared) = queue.recv().await {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let Some(snapshot) = take(&shared, &cluster) else {
            continue;
        };
        let cluster = Arc::clone(&cluster);
        tokio::spawn(async move {
            let result = cluster
                .store
                .update_own(
                    &snapshot.key,
                    &snapshot.record,
                    snapshot.revision,
                    &[snapshot.incarnation],
                )
                .await;
            finish(shared, &cluster, snapshot.since, result);
            drop(permit);
        });
    }
}

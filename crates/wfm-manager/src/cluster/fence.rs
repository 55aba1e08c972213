//! What the registry asks of cluster mode under a session's lock: may this update be
//! applied here, and queue the session's changes for persistence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use super::lease::Lease;
use crate::error::ManagerError;
use crate::registry::Entry;
use crate::stats::ManagerStats;

/// The lease, the store's reachability, and the persister's queue.
pub(crate) struct Fence {
    /// This replica's lease.
    pub(crate) lease: Lease,
    store_up: AtomicBool,
    /// Sessions with changes to persist. Unbounded as a channel, but bounded by the number
    /// of sessions: an entry is queued at most once at a time (`Owned::queued`).
    queue: mpsc::UnboundedSender<Arc<Mutex<Entry>>>,
    stats: Arc<ManagerStats>,
}

impl Fence {
    /// A fence over `lease`, feeding `queue`.
    pub(crate) fn new(
        lease: Lease,
        queue: mpsc::UnboundedSender<Arc<Mutex<Entry>>>,
        stats: Arc<ManagerStats>,
    ) -> Self {
        Self {
            lease,
            store_up: AtomicBool::new(true),
            queue,
            stats,
        }
    }

    /// Records whether NATS is reachable.
    pub(crate) fn set_store_up(&self, up: bool) {
        self.store_up.store(up, Ordering::Release);
    }

    /// Whether NATS is reachable.
    pub(crate) fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Acquire)
    }

    /// Whether an update may be applied to `entry` now.
    ///
    /// It may while this replica's lease holds the session. After a lapse (the process was
    /// paused, or NATS was slow), the session must first be re-acquired: unless NATS is
    /// unreachable altogether, when the replica goes on serving from memory, and a peer
    /// that took the session meanwhile wins when NATS is back (the writes here are then
    /// refused, and the Interaction Processor sees a sequence gap).
    pub(crate) fn admit(&self, entry: &Entry) -> Result<(), ManagerError> {
        let Some(owned) = &entry.owned else {
            return Ok(());
        };
        if owned.moving {
            return Err(ManagerError::Moved(entry.session.id().to_string()));
        }
        if self.lease.holder(Instant::now()) == Some(owned.incarnation) || !self.store_up() {
            return Ok(());
        }
        Err(ManagerError::Unverified(entry.session.id().to_string()))
    }

    /// Marks `entry` (the contents of `shared`) as changed, queueing it for its next write.
    pub(crate) fn changed(&self, shared: &Arc<Mutex<Entry>>, entry: &mut Entry) {
        let Some(owned) = entry.owned.as_mut() else {
            return;
        };
        if owned.dirty_since.is_none() {
            // One pending unit per change set; its write settles it (see `persist`).
            self.stats.persist_pending.inc();
            owned.dirty_since = Some(Instant::now());
        }
        if !owned.queued && !owned.in_flight {
            owned.queued = true;
            // Closed only when the persister stops at shutdown, after the handoff.
            let _ = self.queue.send(Arc::clone(shared));
        }
    }

    /// Queues `shared` again (a write failed and is to be retried).
    pub(crate) fn requeue(&self, shared: Arc<Mutex<Entry>>) {
        let _ = self.queue.send(shared);
    }
}

//! Cluster mode: interchangeable manager replicas over NATS JetStream (`docs/cluster.md`).
//!
//! Each session has one owner at a time. The owner keeps the session in memory, as a single
//! process does, and persists it write-behind (`persist`) into a record whose every write
//! is conditional on the revision it last wrote: the fencing. A replica that does not own a
//! session forwards calls for it to the owner (`forward`), or takes the session over when
//! the owner is gone. Replicas heartbeat a node record that expires one lease after the
//! last heartbeat (`lease`); the survivors of a dead replica take over its sessions, spread
//! by placement hash (`members`). A replica that shuts down hands its sessions over first
//! (`handoff`).
//!
//! # Layout
//! - `store`: the buckets and typed, deadline-bound calls on them.
//! - `keys`: session ids as KV keys.
//! - `lease`: the lease and incarnation (pure).
//! - `fence`: what the registry asks under a session's lock.
//! - `record`: a session as its record, and back.
//! - `persist`: write-behind persistence.
//! - `members`: live replicas, placement, the sweep of dead replicas' sessions.
//! - `forward`: calls forwarded to the owner.
//! - `relay`: commands for an Interaction Processor connected to another replica.
//! - `handoff`: the graceful handoff on shutdown and the adoption on the receiving side.

mod fence;
mod forward;
mod handoff;
mod keys;
mod lease;
mod members;
mod persist;
mod record;
mod relay;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use wfm_proto::cluster::v1::{NodeRecord, Owner};

pub(crate) use fence::Fence;
pub use forward::FORWARDED_HEADER;
pub(crate) use forward::{Peer, is_forwarded};
pub use store::{MIN_SERVER_VERSION, NODES, StartError};

use crate::error::ManagerError;
use crate::outbox::UnboundReason;
use crate::registry::{Created, Entry, Owned, Prepared, Registry, lock};
use crate::stats::ManagerStats;
use store::{Store, StoreError};

/// Cluster-mode settings of one replica.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Comma-separated NATS server URLs.
    pub nats_url: String,
    /// This replica's name, stable across restarts (a StatefulSet pod name, say).
    pub node_id: String,
    /// The gRPC URL at which the other replicas and the gateways reach this one.
    pub advertise_url: String,
    /// How long a dead replica's sessions wait before another takes them.
    pub lease_ttl: Duration,
    /// JetStream copies of each bucket (3 in production).
    pub replicas: usize,
    /// The NATS connection's credentials file and CA.
    pub nats: wfm_tls::NatsSecurity,
}

impl ClusterConfig {
    /// Whether `node_id` can name a replica: 1 to 64 letters, digits, `-` or `_`.
    pub fn valid_node_id(node_id: &str) -> bool {
        keys::valid_node_id(node_id)
    }
}

/// Where a call for a session is to be served.
pub(crate) enum Route {
    /// Here: this replica has (now) got the session.
    Local,
    /// At the owning replica.
    Peer(Peer),
}

/// How many times a call is re-routed before it is refused as moved.
pub(crate) const MAX_ROUTES: usize = 3;

/// One replica's part in the cluster.
pub(crate) struct Cluster {
    /// This replica's node id.
    pub(crate) node_id: String,
    advertise_url: Arc<str>,
    lease_ttl: Duration,
    store: Store,
    /// The lease and the persister's queue, shared with the registry.
    pub(crate) fence: Arc<Fence>,
    registry: OnceLock<Arc<Registry>>,
    members: members::Members,
    peers: forward::Peers,
    sweep_now: Notify,
    /// When the first heartbeat after the latest lapse of this replica's lease was stored.
    recovered_at: Mutex<Option<Instant>>,
    leaving: AtomicBool,
    stats: Arc<ManagerStats>,
    queue: Mutex<Option<mpsc::UnboundedReceiver<Arc<Mutex<Entry>>>>>,
    instance: String,
}

/// Whether the replica of node record `live` still holds what `owner` names: it is alive as
/// that incarnation, or re-acquiring what it held as it before a lapse of its lease.
fn holds(live: &NodeRecord, owner: &Owner) -> bool {
    live.owner
        .as_ref()
        .is_some_and(|o| o.incarnation == owner.incarnation)
        || (live.previous_incarnation != 0 && live.previous_incarnation == owner.incarnation)
}

fn random_incarnation() -> u64 {
    let mut bytes = [0u8; 8];
    // Without the OS's randomness, the clock still tells processes apart.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return nanos as u64 | 1;
    }
    u64::from_le_bytes(bytes) | 1
}

impl Cluster {
    /// Connects to NATS and opens the buckets; nothing runs until [`Cluster::start`].
    pub(crate) async fn connect(
        config: &ClusterConfig,
        peer_tls: Option<Arc<wfm_tls::ClientTls>>,
        stats: Arc<ManagerStats>,
    ) -> Result<Arc<Self>, StartError> {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let lease = lease::Lease::new(Instant::now(), config.lease_ttl, random_incarnation());
        let fence = Arc::new(Fence::new(lease, queue_tx, Arc::clone(&stats)));
        let timeout =
            (config.lease_ttl / 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let connect = store::Connect {
            urls: &config.nats_url,
            name: &config.node_id,
            replicas: config.replicas,
            lease_ttl: config.lease_ttl,
            timeout,
            security: &config.nats,
        };
        let events = Arc::clone(&fence);
        let store_stats = Arc::clone(&stats);
        let store = Store::connect(&connect, move |event| match event {
            async_nats::Event::Connected => {
                tracing::info!("NATS connected");
                events.set_store_up(true);
                store_stats.store_up.set(1);
            }
            async_nats::Event::Disconnected => {
                tracing::warn!(
                    "NATS unreachable: serving owned sessions from memory, refusing new ones"
                );
                events.set_store_up(false);
                store_stats.store_up.set(0);
            }
            other => tracing::debug!(event = %other, "NATS event"),
        })
        .await?;
        stats.store_up.set(1);
        let instance = store
            .instance()
            .await
            .map_err(|error| StartError::Connect {
                urls: config.nats_url.clone(),
                problem: format!("cannot read the cluster's instance id: {error}"),
            })?;
        Ok(Arc::new(Self {
            instance,
            node_id: config.node_id.clone(),
            advertise_url: Arc::from(config.advertise_url.as_str()),
            lease_ttl: config.lease_ttl,
            store,
            fence,
            registry: OnceLock::new(),
            members: members::Members::default(),
            peers: forward::Peers::new(config.node_id.clone(), timeout, peer_tls),
            sweep_now: Notify::new(),
            recovered_at: Mutex::new(None),
            leaving: AtomicBool::new(false),
            stats,
            queue: Mutex::new(Some(queue_rx)),
        }))
    }

    fn registry(&self) -> &Registry {
        self.registry
            .get()
            .map(AsRef::as_ref)
            .unwrap_or_else(|| unreachable!("the registry is set before the cluster starts"))
    }

    /// Joins the cluster with `registry`: the first heartbeat must be stored, then the
    /// heartbeat, persister, watch and sweep run until `stop`.
    pub(crate) async fn start(
        self: &Arc<Self>,
        registry: Arc<Registry>,
        stop: CancellationToken,
    ) -> Result<(), StartError> {
        let _ = self.registry.set(registry);
        self.heartbeat()
            .await
            .map_err(|error| StartError::Connect {
                urls: "the wfm_nodes bucket".to_string(),
                problem: error.to_string(),
            })?;
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(queue) = queue {
            tokio::spawn(persist::run(Arc::clone(self), queue));
        }
        tokio::spawn(Arc::clone(self).run_heartbeat(stop.clone()));
        tokio::spawn(members::watch(Arc::clone(self), stop.clone()));
        tokio::spawn(members::sweep(Arc::clone(self), stop.clone()));
        tokio::spawn(handoff::receive(Arc::clone(self), stop.clone()));
        tokio::spawn(Arc::clone(self).reclaim_own());
        tracing::info!(node_id = %self.node_id, url = %self.advertise_url, "joined the cluster");
        Ok(())
    }

    /// The cluster's instance id (`manager_instance`), the same on every replica.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// This replica as the owner in a record, under `incarnation`.
    pub(crate) fn owner(&self, incarnation: u64) -> Owner {
        Owner {
            node_id: self.node_id.clone(),
            incarnation,
        }
    }

    /// Whether this replica may take on sessions: NATS is reachable, it holds its lease,
    /// and it is not shutting down.
    pub(crate) fn ready_for_ownership(&self) -> bool {
        self.fence.store_up()
            && self.fence.lease.holder(Instant::now()).is_some()
            && !self.leaving.load(Ordering::Acquire)
    }

    async fn heartbeat(&self) -> Result<(), StoreError> {
        let record = NodeRecord {
            owner: Some(self.owner(self.fence.lease.incarnation())),
            advertise_url: self.advertise_url.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            previous_incarnation: self.fence.lease.previous().unwrap_or(0),
        };
        let sent = Instant::now();
        self.store.heartbeat(&self.node_id, &record).await?;
        self.fence.lease.renewed(sent);
        Ok(())
    }

    async fn run_heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let every = (self.lease_ttl / 3).max(Duration::from_millis(50));
        let mut reacquire = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if self.fence.lease.lapsed(Instant::now()) {
                tracing::warn!("lease lapsed: every session is re-acquired before it is served");
                self.fence.lease.reincarnate(random_incarnation());
                reacquire = true;
            }
            match self.heartbeat().await {
                Ok(()) if reacquire => {
                    reacquire = false;
                    *lock(&self.recovered_at) = Some(Instant::now());
                    tokio::spawn(Arc::clone(&self).reacquire_all());
                }
                Ok(()) => {}
                Err(error) => tracing::warn!(%error, "heartbeat not stored"),
            }
        }
    }

    /// Takes back the sessions an earlier process of this node id held (a restarted pod),
    /// unless a peer took them meanwhile.
    async fn reclaim_own(self: Arc<Self>) {
        use futures_util::StreamExt as _;
        let keys = match self.store.indexed(&self.node_id).await {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(%error, "cannot read this node's earlier sessions");
                return;
            }
        };
        let node = self.node_id.clone();
        futures_util::stream::iter(keys)
            .for_each_concurrent(32, |key| {
                let cluster = Arc::clone(&self);
                let node = node.clone();
                async move { cluster.reclaim(&node, &key).await }
            })
            .await;
    }

    async fn reacquire_all(self: Arc<Self>) {
        use futures_util::StreamExt as _;
        let entries = self.registry().entries();
        futures_util::stream::iter(entries)
            .for_each_concurrent(32, |entry| {
                let cluster = Arc::clone(&self);
                async move {
                    let _ = cluster.reacquire(&entry).await;
                }
            })
            .await;
        // The next heartbeat stops shielding the old incarnation's records: what is still
        // recorded under it was not re-acquired here, and a peer may take it.
        self.fence.lease.reacquired();
    }

    /// Whether this replica came back from a lapse of its own lease less than half a lease
    /// ago. Its peers most likely lapsed in the same NATS outage (a leader election of
    /// `wfm_nodes`): their records expired, and they heartbeat again within a third of a
    /// lease. Until then, their missing records are no proof that they died.
    pub(crate) fn recovering_from_lapse(&self, now: Instant) -> bool {
        lock(&self.recovered_at)
            .is_some_and(|at| now.saturating_duration_since(at) < self.lease_ttl / 2)
    }

    /// Waits until no write of `entry`'s record is in flight, then marks one as in flight;
    /// `None` if the entry is not owned or is being moved.
    async fn claim_write(&self, entry: &Mutex<Entry>) -> Option<(String, u64)> {
        let deadline = Instant::now() + self.lease_ttl;
        loop {
            {
                let mut guard = lock(entry);
                let id = guard.session.id().to_string();
                let owned = guard.owned.as_mut()?;
                if !owned.in_flight && !owned.moving {
                    owned.in_flight = true;
                    return Some((id, owned.revision));
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// After a lapse, re-acquires `entry` under the current incarnation, or drops it if
    /// another replica took it meanwhile.
    async fn reacquire(&self, entry: &Arc<Mutex<Entry>>) -> Result<(), ManagerError> {
        let incarnation = self.fence.lease.incarnation();
        let Some((id, revision)) = self.claim_write(entry).await else {
            let guard = lock(entry);
            let id = guard.session.id().to_string();
            // Still owned here, with a write that outlasted a lease (the store is slow): the
            // entry holds the newest state, so the call waits for it rather than moving on.
            if guard.owned.is_some() {
                return Err(ManagerError::Store(format!(
                    "session {id}: its record is still being written; retry"
                )));
            }
            return Err(ManagerError::Moved(id));
        };
        let key = keys::session_key(&id);
        let (record, held) = {
            let guard = lock(entry);
            if guard
                .owned
                .as_ref()
                .is_some_and(|o| o.incarnation == incarnation)
            {
                drop(guard);
                self.release_write(entry, None);
                return Ok(());
            }
            let held = guard.owned.as_ref().map_or(incarnation, |o| o.incarnation);
            (record::of_entry(&guard, self.owner(incarnation)), held)
        };
        let result = self
            .store
            .update_own(&key, &record, revision, &[incarnation, held])
            .await;
        match result {
            Ok(revision) => {
                self.release_write(entry, Some((revision, incarnation)));
                Ok(())
            }
            Err(StoreError::Conflict) => {
                if let Some(owned) = lock(entry).owned.as_mut()
                    && owned.dirty_since.take().is_some()
                {
                    self.stats.persist_pending.dec();
                }
                self.release_write(entry, None);
                self.stats.fencing_refusals.inc();
                tracing::warn!(session_id = %id, "session taken by another replica during a lapse; dropped here");
                self.registry().evict(entry, UnboundReason::Moved(None));
                Err(ManagerError::Moved(id))
            }
            Err(error) => {
                self.release_write(entry, None);
                Err(ManagerError::Store(error.to_string()))
            }
        }
    }

    fn release_write(&self, entry: &Arc<Mutex<Entry>>, written: Option<(u64, u64)>) {
        let mut guard = lock(entry);
        let Some(owned) = guard.owned.as_mut() else {
            return;
        };
        owned.in_flight = false;
        if let Some((revision, incarnation)) = written {
            owned.revision = revision;
            owned.incarnation = incarnation;
        }
        if owned.dirty_since.is_some() && !owned.queued && !owned.moving {
            owned.queued = true;
            drop(guard);
            self.fence.requeue(Arc::clone(entry));
        }
    }

    /// Whether `error`, from serving a call here, means the call belongs elsewhere or the
    /// session must be found or re-acquired first.
    pub(crate) fn routable(error: &ManagerError) -> bool {
        matches!(
            error,
            ManagerError::UnknownSession(_) | ManagerError::Moved(_) | ManagerError::Unverified(_)
        )
    }

    /// Finds where a call for `session_id` is served: here (loading or taking over the
    /// session if need be) or at its owner. A `forwarded` call is never forwarded again.
    pub(crate) async fn route(
        &self,
        session_id: &str,
        forwarded: bool,
    ) -> Result<Route, ManagerError> {
        if !forwarded && let Some(peer) = self.peers.cached(session_id) {
            return Ok(Route::Peer(peer));
        }
        for _ in 0..MAX_ROUTES {
            if let Some(entry) = self.registry().lookup(session_id) {
                let (moving, current) = {
                    let guard = lock(&entry);
                    let owned = guard.owned.as_ref();
                    (
                        owned.is_some_and(|o| o.moving),
                        owned.is_some_and(|o| {
                            Some(o.incarnation) == self.fence.lease.holder(Instant::now())
                        }),
                    )
                };
                if current {
                    return Ok(Route::Local);
                }
                if moving {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                match self.reacquire(&entry).await {
                    Ok(()) => return Ok(Route::Local),
                    Err(ManagerError::Moved(_)) => {}
                    Err(error) => return Err(error),
                }
            }
            let key = keys::session_key(session_id);
            let found = self
                .store
                .record(&key)
                .await
                .map_err(|e| ManagerError::Store(e.to_string()))?;
            let Some(found) = found else {
                return Err(ManagerError::UnknownSession(session_id.to_string()));
            };
            let owner = found.record.owner.clone().unwrap_or_default();
            let incarnation = self.fence.lease.incarnation();
            if owner.node_id == self.node_id && owner.incarnation == incarnation {
                self.load(found.record, found.revision)?;
                return Ok(Route::Local);
            }
            if !owner.node_id.is_empty() && owner.node_id != self.node_id {
                let node = self
                    .store
                    .node(&owner.node_id)
                    .await
                    .map_err(|e| ManagerError::Store(e.to_string()))?;
                if let Some(node) = node.filter(|n| holds(n, &owner)) {
                    if forwarded {
                        return Err(ManagerError::Moved(session_id.to_string()));
                    }
                    let peer = self.peers.peer(&node.advertise_url)?;
                    self.peers.remember(session_id, &peer.url);
                    return Ok(Route::Peer(peer));
                }
            }
            // Right after a lapse of its own, this replica cannot tell a dead owner from one
            // whose record expired in the same NATS outage and comes back within a moment.
            if !owner.node_id.is_empty()
                && owner.node_id != self.node_id
                && self.recovering_from_lapse(Instant::now())
            {
                return Err(ManagerError::Store(format!(
                    "session {session_id}: its owner {} is not heard from yet after a NATS outage; retry",
                    owner.node_id
                )));
            }
            // Released, dead, or an earlier process of this node: take it.
            match self.take(&key, found).await {
                Ok(()) => return Ok(Route::Local),
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(ManagerError::Store(error.to_string())),
            }
        }
        Err(ManagerError::Moved(session_id.to_string()))
    }

    /// `message` as a call forwarded by this replica.
    pub(crate) fn forward_request<T>(&self, message: T) -> tonic::Request<T> {
        self.peers.request(message)
    }

    /// A client of the replica at `url`.
    pub(crate) fn peer(&self, url: &str) -> Result<Peer, ManagerError> {
        self.peers.peer(url)
    }

    /// A call forwarded to `session_id`'s cached owner failed: forget the owner.
    pub(crate) fn forget_owner(&self, session_id: &str) {
        self.peers.forget(session_id);
    }

    fn load(
        &self,
        record: wfm_proto::cluster::v1::SessionRecord,
        revision: u64,
    ) -> Result<(), ManagerError> {
        let entry = record::restore(
            record,
            self.registry(),
            revision,
            self.fence.lease.incarnation(),
        )?;
        self.registry().adopt(entry);
        Ok(())
    }

    /// Takes over the session under `key`, as found: a conditional write naming this
    /// replica, then the session is restored here.
    async fn take(&self, key: &str, found: store::Versioned) -> Result<(), StoreError> {
        if !self.ready_for_ownership() {
            return Err(StoreError::Unavailable(
                "this replica is not ready to take sessions over".into(),
            ));
        }
        // A session held here is re-acquired, never taken over from its record: the record
        // may lack updates the entry has applied and acknowledged, and the entry would keep
        // its binder and its old revision beside a record it no longer matches.
        if self
            .registry()
            .lookup(&found.record.session_id)
            .is_some_and(|entry| lock(&entry).owned.is_some())
        {
            return Err(StoreError::Unavailable(format!(
                "session {} is held here and is being re-acquired",
                found.record.session_id
            )));
        }
        let incarnation = self.fence.lease.incarnation();
        let previous = found.record.owner.clone().unwrap_or_default();
        let mut record = found.record;
        record.owner = Some(self.owner(incarnation));
        self.store.index(&self.node_id, key).await?;
        let revision = self.store.update(key, &record, found.revision).await?;
        if !previous.node_id.is_empty() && previous.node_id != self.node_id {
            let _ = self.store.unindex(&previous.node_id, key).await;
        }
        let entry =
            record::restore(record, self.registry(), revision, incarnation).map_err(|error| {
                StoreError::Corrupt {
                    key: key.to_string(),
                    problem: error.to_string(),
                }
            })?;
        self.registry().adopt(entry);
        self.stats.takeovers.inc();
        tracing::debug!(%key, from = %previous.node_id, "session taken over");
        Ok(())
    }

    /// Takes over the session under `key` found in dead `node`'s index, unless a live replica
    /// owns it already; drops the stale index entry either way.
    pub(crate) async fn reclaim(&self, node: &str, key: &str) {
        let found = match self.store.record(key).await {
            Ok(found) => found,
            Err(error) => {
                tracing::debug!(%key, %error, "cannot read a session to take over");
                return;
            }
        };
        let Some(found) = found else {
            let _ = self.store.unindex(node, key).await;
            return;
        };
        let owner = found.record.owner.clone().unwrap_or_default();
        if owner.node_id != node && !owner.node_id.is_empty() {
            // Moved on already; the entry under `node` is stale.
            let _ = self.store.unindex(node, key).await;
            return;
        }
        if owner.node_id == self.node_id && owner.incarnation == self.fence.lease.incarnation() {
            return;
        }
        // The fence of a takeover: never take a session whose owner (node and incarnation)
        // still has a live node record, whatever made this replica think it dead (a stale
        // index, a restart of its own). Its owner may hold acknowledged updates that it has
        // not persisted yet; taking the record from under it would lose them.
        if owner.node_id != self.node_id {
            match self.store.node(&owner.node_id).await {
                Ok(Some(live)) if holds(&live, &owner) => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%key, %error, "cannot check a session's owner; not taken");
                    return;
                }
            }
        }
        if let Err(error) = self.take(key, found).await {
            tracing::debug!(%key, %error, "takeover not done");
        }
    }

    /// Creates a new session here: its record is written first (create-if-absent), so that
    /// two replicas cannot both create it. `Ok(None)`: it exists already, elsewhere.
    pub(crate) async fn create(&self, prepared: Prepared) -> Result<Option<Created>, ManagerError> {
        if !self.ready_for_ownership() {
            return Err(ManagerError::Store(
                "this replica cannot take new sessions now (NATS unreachable, lease not held, or shutting down)".into(),
            ));
        }
        let incarnation = self.fence.lease.incarnation();
        let key = keys::session_key(prepared.session().id().as_str());
        let record = record::encode(
            prepared.session(),
            prepared.agent_id(),
            prepared.incarnation(),
            prepared.processor_id(),
            "",
            self.owner(incarnation),
        );
        let store_error = |e: StoreError| ManagerError::Store(e.to_string());
        self.store
            .index(&self.node_id, &key)
            .await
            .map_err(store_error)?;
        match self.store.create(&key, &record).await {
            Ok(revision) => self
                .registry()
                .insert(prepared, Some(Owned::new(revision, incarnation)))
                .map(Some),
            Err(StoreError::Conflict) => Ok(None),
            Err(error) => Err(store_error(error)),
        }
    }

    /// Deletes the record of an ended session (removed from the registry already).
    pub(crate) async fn end(&self, entry: &Arc<Mutex<Entry>>) -> Result<(), ManagerError> {
        let Some((id, revision)) = self.claim_write(entry).await else {
            return Ok(());
        };
        if let Some(owned) = lock(entry).owned.as_mut() {
            owned.moving = true;
            if owned.dirty_since.take().is_some() {
                self.stats.persist_pending.dec();
            }
        }
        let key = keys::session_key(&id);
        match self.store.delete(&key, revision).await {
            Ok(()) | Err(StoreError::Conflict) => {
                let _ = self.store.unindex(&self.node_id, &key).await;
                Ok(())
            }
            Err(error) => Err(ManagerError::Store(error.to_string())),
        }
    }

    /// Hands every session to a peer and leaves the cluster (on SIGTERM).
    pub(crate) async fn leave(self: &Arc<Self>) {
        self.leaving.store(true, Ordering::Release);
        handoff::hand_over(self).await;
        if let Err(error) = self.store.leave(&self.node_id).await {
            tracing::warn!(%error, "node record not removed; it expires after the lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(incarnation: u64, previous: u64) -> NodeRecord {
        NodeRecord {
            owner: Some(Owner {
                node_id: "a".into(),
                incarnation,
            }),
            previous_incarnation: previous,
            ..Default::default()
        }
    }

    fn owner(incarnation: u64) -> Owner {
        Owner {
            node_id: "a".into(),
            incarnation,
        }
    }

    #[test]
    fn a_node_holds_its_incarnations_sessions_and_while_reacquiring_its_previous_ones() {
        assert!(holds(&node(7, 0), &owner(7)));
        assert!(
            !holds(&node(7, 0), &owner(5)),
            "a restarted process holds nothing"
        );
        assert!(holds(&node(7, 5), &owner(5)), "re-acquiring after a lapse");
        assert!(!holds(&node(7, 5), &owner(3)));
        assert!(
            !holds(&node(7, 0), &owner(0)),
            "no incarnation is never held"
        );
    }
}

//! The live replicas as this one sees them (from a watch of `wfm_nodes`), the placement of
//! sessions among them, and the sweep that takes over the sessions of dead ones.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Operation;
use futures_util::StreamExt as _;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use wfm_proto::cluster::v1::NodeRecord;

use super::Cluster;

/// Seed of the placement hash: the same in every replica, so that they agree.
const PLACEMENT_SEED: u64 = 0x5746_4d5f_4841_4e44;
/// Takeovers in flight at once during a sweep.
const SWEEP_CONCURRENCY: usize = 32;

/// A replica seen alive.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Its incarnation.
    pub(crate) incarnation: u64,
    /// Its gRPC address.
    pub(crate) url: Arc<str>,
    seen: Instant,
}

/// Replicas seen alive, and dead ones whose sessions may still need a new owner.
#[derive(Default)]
pub(crate) struct Members {
    live: Mutex<HashMap<String, Member>>,
    /// Dead replicas with sessions possibly left, and when each was last swept.
    dead: Mutex<HashMap<String, Option<Instant>>>,
}

impl Members {
    fn observe(&self, node_id: &str, record: &NodeRecord, now: Instant) {
        let incarnation = record.owner.as_ref().map_or(0, |o| o.incarnation);
        let member = Member {
            incarnation,
            url: Arc::from(record.advertise_url.as_str()),
            seen: now,
        };
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node_id.to_string(), member);
        self.dead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node_id);
    }

    /// Marks `node_id` dead: its sessions are to be swept. Returns its address, if it was
    /// seen alive.
    pub(crate) fn died(&self, node_id: &str) -> Option<Arc<str>> {
        let gone = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node_id);
        self.dead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(node_id.to_string())
            .or_insert(None);
        gone.map(|member| member.url)
    }

    /// The live replicas other than `me`, with their addresses.
    pub(crate) fn others(&self, me: &str) -> Vec<(String, Member)> {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let mut others: Vec<(String, Member)> = live
            .iter()
            .filter(|(id, _)| id.as_str() != me)
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        others.sort_by(|a, b| a.0.cmp(&b.0));
        others
    }

    /// Replicas not heard from for `ttl`: suspects, to be checked against the store.
    fn silent(&self, now: Instant, ttl: Duration) -> Vec<(String, u64)> {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.iter()
            .filter(|(_, m)| now.saturating_duration_since(m.seen) > ttl)
            .map(|(id, m)| (id.clone(), m.incarnation))
            .collect()
    }

    /// Dead replicas due for a sweep: never swept, or not for `every`.
    fn due(&self, now: Instant, every: Duration) -> Vec<String> {
        let mut dead = self.dead.lock().unwrap_or_else(PoisonError::into_inner);
        dead.iter_mut()
            .filter(|(_, last)| last.is_none_or(|at| now.saturating_duration_since(at) >= every))
            .map(|(id, last)| {
                *last = Some(now);
                id.clone()
            })
            .collect()
    }
}

/// The replica, among `candidates`, that a session placed by its `key` goes to: the highest
/// random weight, so that a dead replica's sessions spread evenly over the survivors and
/// every replica computes the same answer.
pub(crate) fn place<'a>(
    key: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let hasher = foldhash::fast::FixedState::with_seed(PLACEMENT_SEED);
    candidates
        .into_iter()
        .max_by_key(|node| hasher.hash_one((key, *node)))
}

/// Follows `wfm_nodes` until `stop`: records heartbeats, and marks replicas whose record was
/// deleted (they left) or expired (they died).
pub(crate) async fn watch(cluster: Arc<Cluster>, stop: CancellationToken) {
    loop {
        match cluster.store.watch_nodes().await {
            Ok(mut watch) => loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = watch.next() => next,
                };
                let Some(Ok(entry)) = next else {
                    break;
                };
                if entry.key == cluster.node_id {
                    continue;
                }
                match entry.operation {
                    Operation::Put => match NodeRecord::decode(entry.value) {
                        Ok(record) => cluster.members.observe(&entry.key, &record, Instant::now()),
                        Err(error) => {
                            tracing::warn!(node = %entry.key, %error, "unreadable node record")
                        }
                    },
                    Operation::Delete | Operation::Purge => {
                        tracing::info!(node = %entry.key, "replica left or expired");
                        if let Some(url) = cluster.members.died(&entry.key) {
                            cluster.peers.forget_url(&url);
                        }
                        cluster.sweep_now.notify_one();
                    }
                }
            },
            Err(error) => tracing::warn!(%error, "cannot watch replicas; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Every quarter lease until `stop`: confirms silent replicas dead against the store, and
/// takes over this replica's share of the dead replicas' sessions.
pub(crate) async fn sweep(cluster: Arc<Cluster>, stop: CancellationToken) {
    let tick = (cluster.lease_ttl / 4).max(Duration::from_millis(50));
    // Replicas that died while none was watching are found through the index once. Only
    // those without a live node record: the index also lists every live replica that owns
    // sessions, and marking one of those dead made this (just started) replica take its
    // sessions over under it, losing the updates it had acknowledged but not yet persisted.
    match cluster.store.indexed_nodes().await {
        Ok(nodes) => {
            for node in nodes.into_iter().filter(|n| *n != cluster.node_id) {
                match cluster.store.node(&node).await {
                    Ok(Some(record)) => cluster.members.observe(&node, &record, Instant::now()),
                    Ok(None) => {
                        let _ = cluster.members.died(&node);
                    }
                    Err(error) => {
                        tracing::debug!(%node, %error, "cannot check an indexed replica");
                        let _ = cluster.members.died(&node);
                    }
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot list the ownership index"),
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = cluster.sweep_now.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
        if !cluster.ready_for_ownership() || cluster.recovering_from_lapse(Instant::now()) {
            continue;
        }
        for (node, incarnation) in cluster.members.silent(Instant::now(), cluster.lease_ttl) {
            match cluster.store.node(&node).await {
                Ok(Some(record))
                    if record
                        .owner
                        .as_ref()
                        .is_some_and(|o| o.incarnation == incarnation) => {}
                Ok(Some(record)) => cluster.members.observe(&node, &record, Instant::now()),
                Ok(None) => {
                    if let Some(url) = cluster.members.died(&node) {
                        cluster.peers.forget_url(&url);
                    }
                }
                Err(error) => tracing::debug!(%node, %error, "cannot check a silent replica"),
            }
        }
        for node in cluster.members.due(Instant::now(), cluster.lease_ttl) {
            sweep_node(&cluster, &node).await;
        }
    }
}

/// Takes over this replica's share of `node`'s indexed sessions; forgets `node` once its
/// index is empty.
async fn sweep_node(cluster: &Arc<Cluster>, node: &str) {
    let keys = match cluster.store.indexed(node).await {
        Ok(keys) => keys,
        Err(error) => {
            tracing::debug!(%node, %error, "cannot read a dead replica's sessions");
            return;
        }
    };
    if keys.is_empty() {
        cluster
            .members
            .dead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node);
        return;
    }
    let others = cluster.members.others(&cluster.node_id);
    let mine: Vec<String> = keys
        .into_iter()
        .filter(|key| {
            let candidates = others
                .iter()
                .map(|(id, _)| id.as_str())
                .chain([cluster.node_id.as_str()]);
            place(key, candidates) == Some(cluster.node_id.as_str())
        })
        .collect();
    if mine.is_empty() {
        return;
    }
    tracing::info!(%node, sessions = mine.len(), "taking over a dead replica's sessions");
    futures_util::stream::iter(mine)
        .for_each_concurrent(SWEEP_CONCURRENCY, |key| {
            let cluster = Arc::clone(cluster);
            let node = node.to_string();
            async move { cluster.reclaim(&node, &key).await }
        })
        .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_the_same_everywhere_and_spreads_evenly() {
        let nodes = ["a", "b", "c"];
        let mut counts = HashMap::new();
        for i in 0..3000 {
            let key = format!("session-{i}");
            let first = place(&key, nodes);
            assert_eq!(first, place(&key, nodes.iter().rev().copied()));
            *counts.entry(first.unwrap()).or_insert(0) += 1;
        }
        for node in nodes {
            let share = counts[node];
            assert!((800..1200).contains(&share), "{node} got {share} of 3000");
        }
    }

    #[test]
    fn a_dead_replica_moves_only_its_own_sessions() {
        for i in 0..500 {
            let key = format!("s{i}");
            let before = place(&key, ["a", "b", "c"]).unwrap();
            if before != "c" {
                assert_eq!(place(&key, ["a", "b"]), Some(before));
            }
        }
    }
}

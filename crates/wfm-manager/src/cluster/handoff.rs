//! The graceful handoff: on SIGTERM a replica writes each session's final state naming a
//! live peer (chosen by placement) as its owner, tells its binder the session moved there,
//! and tells each peer which sessions it now owns, so that the peer loads them at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use wfm_proto::cluster::v1::{Adopt, Owner};

use super::members::{Member, place};
use super::store::{ADOPT_SUBJECT, StoreError};
use super::{Cluster, keys, record};
use crate::outbox::UnboundReason;
use crate::registry::{Entry, lock};

/// Sessions handed over at once.
const CONCURRENCY: usize = 64;
/// Session ids per adoption message, to stay far below the NATS payload limit.
const ADOPT_BATCH: usize = 512;

fn subject(node_id: &str) -> String {
    format!("{ADOPT_SUBJECT}.{node_id}")
}

/// Hands every session of this replica to a live peer, or releases it when none is left.
pub(crate) async fn hand_over(cluster: &Arc<Cluster>) {
    let peers = cluster.members.others(&cluster.node_id);
    let entries = cluster.registry().entries();
    tracing::info!(
        sessions = entries.len(),
        peers = peers.len(),
        "handing sessions over"
    );
    let adopted: Mutex<HashMap<String, Vec<String>>> = Mutex::default();
    futures_util::stream::iter(entries)
        .for_each_concurrent(CONCURRENCY, |entry| {
            let (peers, adopted) = (&peers, &adopted);
            async move {
                if let Some((node, id)) = hand_one(cluster, &entry, peers).await {
                    lock(adopted).entry(node).or_default().push(id);
                }
            }
        })
        .await;
    for (node, ids) in adopted.into_inner().unwrap_or_default() {
        for batch in ids.chunks(ADOPT_BATCH) {
            let message = Adopt {
                session_ids: batch.to_vec(),
            };
            let sent = cluster
                .store
                .client()
                .publish(subject(&node), message.encode_to_vec().into())
                .await;
            if let Err(error) = sent {
                tracing::warn!(%node, %error, "adoption notice not sent; the peer loads the sessions on first use");
            }
        }
    }
    let _ = cluster.store.client().flush().await;
}

/// Hands one session over: `(peer, session id)` when a peer now owns it.
async fn hand_one(
    cluster: &Cluster,
    entry: &Arc<Mutex<Entry>>,
    peers: &[(String, Member)],
) -> Option<(String, String)> {
    let (id, revision) = cluster.claim_write(entry).await?;
    let key = keys::session_key(&id);
    let successor = place(&key, peers.iter().map(|(node, _)| node.as_str()))
        .and_then(|node| peers.iter().find(|(n, _)| n == node));
    let owner = successor.map_or_else(Owner::default, |(node, member)| Owner {
        node_id: node.clone(),
        incarnation: member.incarnation,
    });
    let record = {
        let mut guard = lock(entry);
        if let Some(owned) = guard.owned.as_mut() {
            owned.moving = true;
            if owned.dirty_since.take().is_some() {
                cluster.stats.persist_pending.dec();
            }
        }
        record::of_entry(&guard, owner.clone())
    };
    if !owner.node_id.is_empty() {
        let _ = cluster.store.index(&owner.node_id, &key).await;
    }
    let url = successor.map(|(_, member)| Arc::clone(&member.url));
    match cluster.store.update(&key, &record, revision).await {
        Ok(_) => {
            let _ = cluster.store.unindex(&cluster.node_id, &key).await;
            cluster.stats.handoffs.inc();
            cluster.registry().evict(entry, UnboundReason::Moved(url));
            successor.map(|(node, _)| (node.clone(), id))
        }
        Err(StoreError::Conflict) => {
            cluster.stats.fencing_refusals.inc();
            cluster.registry().evict(entry, UnboundReason::Moved(None));
            None
        }
        Err(error) => {
            // Its lease expires with this process, and a peer takes the last persisted
            // state over: the Interaction Processor sees a sequence gap if it lost updates.
            tracing::warn!(session_id = %id, %error, "session not handed over");
            cluster.registry().evict(entry, UnboundReason::ShuttingDown);
            None
        }
    }
}

/// Loads the sessions peers hand to this replica, as their notices arrive, until `stop`.
pub(crate) async fn receive(cluster: Arc<Cluster>, stop: CancellationToken) {
    let subscription = cluster
        .store
        .client()
        .subscribe(subject(&cluster.node_id))
        .await;
    let mut subscription = match subscription {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::warn!(%error, "cannot receive handoffs; handed sessions load on first use");
            return;
        }
    };
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = subscription.next() => message,
        };
        let Some(message) = message else {
            return;
        };
        let Ok(adopt) = Adopt::decode(message.payload) else {
            tracing::warn!("unreadable handoff notice ignored");
            continue;
        };
        let cluster = Arc::clone(&cluster);
        tokio::spawn(async move {
            futures_util::stream::iter(adopt.session_ids)
                .for_each_concurrent(CONCURRENCY, |id| {
                    let cluster = Arc::clone(&cluster);
                    async move {
                        if let Err(error) = cluster.route(&id, true).await {
                            tracing::debug!(session_id = %id, %error, "handed session not loaded");
                        }
                    }
                })
                .await;
        });
    }
}

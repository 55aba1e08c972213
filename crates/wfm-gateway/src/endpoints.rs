//! The manager endpoints a gateway knows, the owner cache that routes a session's binds to
//! the replica owning it, and the discovery of replicas from NATS.
//!
//! An endpoint is one manager gRPC URL with its own channel and `upstream_streams` stream
//! slots. Endpoints come from three places: the `manager_url` list (*seeds*, kept for the
//! life of the process), the `wfm_nodes` bucket in NATS (kept while their node record
//! lives), and redirects from a replica naming the owner of a session. An endpoint whose
//! record is deleted is *retired*: its streams close, and their bindings rebind elsewhere.
//! A retired endpoint named again comes back with fresh slots, so that a stream task still
//! winding down never touches a slot its successor uses.
//!
//! Without `nats_url` nothing here talks to NATS, and the seeds are all there is.

use std::collections::HashMap;
use std::sync::Arc;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt as _;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use wfm_proto::cluster::v1::NodeRecord;

use crate::settings::GatewayConfig;
use crate::upstream::Upstream;

/// The JetStream key-value bucket in which manager replicas announce themselves.
pub(crate) const NODES_BUCKET: &str = "wfm_nodes";

/// Most endpoints a gateway keeps, so that a misbehaving replica naming ever new owner URLs
/// cannot make it open channels without end.
pub(crate) const MAX_ENDPOINTS: usize = 256;

/// The watch filter of every key of a bucket.
const ALL_KEYS: &str = ">";

/// Most sessions whose owner a gateway remembers.
const OWNER_CACHE: usize = 65_536;

/// One manager URL and its stream slots.
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) channel: Channel,
    /// The indices of its stream slots in the upstream's table, while active.
    pub(crate) slots: Vec<usize>,
    /// Cancelled when the endpoint is retired, which closes its streams.
    pub(crate) retire: CancellationToken,
    /// From `manager_url`: never retired.
    pub(crate) seed: bool,
    /// False once retired.
    pub(crate) active: bool,
}

/// Every endpoint the gateway has known, by index; an index is never reused.
#[derive(Default)]
pub(crate) struct Endpoints {
    list: Vec<Endpoint>,
    by_url: HashMap<String, usize>,
}

impl Endpoints {
    /// The endpoint of `url`, active or not.
    pub(crate) fn find(&self, url: &str) -> Option<usize> {
        self.by_url.get(normalize(url)).copied()
    }

    /// The endpoint at `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&Endpoint> {
        self.list.get(index)
    }

    /// The endpoint at `index`, to change.
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut Endpoint> {
        self.list.get_mut(index)
    }

    /// Adds an inactive endpoint for `url` over `channel`; `None` if the set is full.
    pub(crate) fn insert(&mut self, url: &str, channel: Channel) -> Option<usize> {
        if self.list.len() >= MAX_ENDPOINTS {
            return None;
        }
        let url = normalize(url);
        let index = self.list.len();
        self.list.push(Endpoint {
            url: url.to_string(),
            channel,
            slots: Vec::new(),
            retire: CancellationToken::new(),
            seed: false,
            active: false,
        });
        self.by_url.insert(url.to_string(), index);
        Some(index)
    }

    /// Every endpoint with its index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Endpoint)> {
        self.list.iter().enumerate()
    }

    /// How many endpoints are active.
    pub(crate) fn active(&self) -> usize {
        self.list.iter().filter(|e| e.active).count()
    }
}

/// A URL as endpoints are keyed: a replica may advertise `http://h:1/` for `http://h:1`.
fn normalize(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

/// A lazily connecting channel to `url`, with the gateway's timeouts and keep-alives, and
/// TLS (with the client certificate in force at each reconnect) for `https://`.
pub(crate) fn channel(
    url: &str,
    config: &GatewayConfig,
) -> Result<Channel, tonic::transport::Error> {
    let connector = wfm_tls::Connector::new(config.manager_tls.clone(), config.request_timeout);
    Ok(TonicEndpoint::from_shared(url.to_string())?
        .connect_timeout(config.request_timeout)
        .http2_keep_alive_interval(config.upstream_keepalive)
        .keep_alive_timeout(config.upstream_keepalive_timeout)
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(connector))
}

/// Which endpoint owns each recently bound session, as far as the gateway knows.
#[derive(Default)]
pub(crate) struct OwnerCache {
    owners: HashMap<String, usize>,
}

impl OwnerCache {
    /// The endpoint that owned `session` last the gateway heard.
    pub(crate) fn get(&self, session: &str) -> Option<usize> {
        self.owners.get(session).copied()
    }

    /// Records that `endpoint` owns `session`.
    pub(crate) fn insert(&mut self, session: &str, endpoint: usize) {
        if let Some(known) = self.owners.get_mut(session) {
            *known = endpoint;
            return;
        }
        if self.owners.len() >= OWNER_CACHE {
            // An arbitrary victim: a wrong guess costs one redirect, not a failed bind.
            if let Some(victim) = self.owners.keys().next().cloned() {
                self.owners.remove(&victim);
            }
        }
        self.owners.insert(session.to_string(), endpoint);
    }

    /// Forgets the owner of `session`.
    pub(crate) fn remove(&mut self, session: &str) {
        self.owners.remove(session);
    }

    /// Forgets every session `endpoint` owned.
    pub(crate) fn forget_endpoint(&mut self, endpoint: usize) {
        self.owners.retain(|_, owner| *owner != endpoint);
    }
}

/// Follows the `wfm_nodes` bucket until `stop`: each replica's advertised URL becomes an
/// endpoint, and a deleted record retires it. Any failure (NATS unreachable, no bucket
/// yet) is logged and retried with backoff, while the endpoints known stay in use.
pub(crate) async fn discover(
    upstream: Arc<Upstream>,
    servers: Vec<String>,
    stop: CancellationToken,
) {
    let config = Arc::clone(upstream.config());
    let policy = ExponentialBuilder::default()
        .with_min_delay(config.reconnect_initial)
        .with_max_delay(config.reconnect_max)
        .with_jitter()
        .without_max_times();
    // node id → advertised URL, across watches, to know what a deletion retires.
    let mut nodes: HashMap<String, String> = HashMap::new();
    let mut client: Option<async_nats::Client> = None;
    let mut backoff = policy.build();
    loop {
        let watched = tokio::select! {
            () = stop.cancelled() => return,
            watched = watch(&upstream, &servers, &mut client, &mut nodes) => watched,
        };
        match watched {
            Ok(()) => {
                tracing::warn!("the nats watch of the manager replicas ended; watching again");
                backoff = policy.build();
            }
            Err(error) => tracing::warn!(
                error = %format!("{error:#}"),
                "cannot watch the manager replicas in nats; keeping the known endpoints"
            ),
        }
        let pause = backoff.next().unwrap_or(config.reconnect_max);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One watch of the bucket, connecting first if need be; returns when the watch ends.
async fn watch(
    upstream: &Arc<Upstream>,
    servers: &[String],
    client: &mut Option<async_nats::Client>,
    nodes: &mut HashMap<String, String>,
) -> anyhow::Result<()> {
    let connected = match client {
        Some(connected) => connected.clone(),
        None => {
            let options = upstream
                .config()
                .nats
                .apply(async_nats::ConnectOptions::new())
                .await?;
            let connected = options
                .connection_timeout(upstream.config().request_timeout)
                .event_callback(|event| async move {
                    match event {
                        async_nats::Event::Disconnected => {
                            tracing::warn!(
                                "nats disconnected; keeping the known manager endpoints"
                            );
                        }
                        async_nats::Event::Connected => tracing::info!("nats connected"),
                        other => tracing::debug!(event = %other, "nats event"),
                    }
                })
                .connect(servers)
                .await?;
            client.insert(connected).clone()
        }
    };
    let store = async_nats::jetstream::new(connected)
        .get_key_value(NODES_BUCKET)
        .await?;
    // Not `watch_all`, which in async-nats 0.51 delivers only changes made after it starts:
    // the last value of every key first is what tells the gateway of the replicas up now.
    let mut entries = store.watch_with_history(ALL_KEYS).await?;
    tracing::info!(bucket = NODES_BUCKET, "watching manager replicas");
    // The nodes known before this watch; those the bucket no longer holds are retired
    // once the watch has delivered every current value.
    let mut unseen: Option<Vec<String>> = Some(nodes.keys().cloned().collect());
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        if let Some(unseen) = &mut unseen {
            unseen.retain(|node| *node != entry.key);
        }
        match entry.operation {
            async_nats::jetstream::kv::Operation::Put => {
                put(upstream, nodes, &entry.key, &entry.value);
            }
            async_nats::jetstream::kv::Operation::Delete
            | async_nats::jetstream::kv::Operation::Purge => {
                remove(upstream, nodes, &entry.key);
            }
        }
        if entry.seen_current
            && let Some(gone) = unseen.take()
        {
            for node in gone {
                remove(upstream, nodes, &node);
            }
        }
    }
    Ok(())
}

/// A replica announced itself (or heartbeat): make its URL an endpoint.
fn put(upstream: &Arc<Upstream>, nodes: &mut HashMap<String, String>, node: &str, value: &[u8]) {
    let record = match NodeRecord::decode(value) {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(node, %error, "unreadable node record ignored");
            return;
        }
    };
    let url = normalize(&record.advertise_url).to_string();
    if url.is_empty() {
        tracing::warn!(node, "node record without an advertised url ignored");
        return;
    }
    let before = nodes.insert(node.to_string(), url.clone());
    if before.as_deref() == Some(url.as_str()) {
        return;
    }
    if let Some(before) = before {
        departed(upstream, nodes, &before);
    }
    tracing::info!(node, %url, version = %record.version, "manager replica found");
    upstream.discovered(&url);
}

/// A replica left or died: retire its endpoint.
fn remove(upstream: &Arc<Upstream>, nodes: &mut HashMap<String, String>, node: &str) {
    if let Some(url) = nodes.remove(node) {
        tracing::info!(node, %url, "manager replica gone");
        departed(upstream, nodes, &url);
    }
}

/// Retires `url` unless another live node still advertises it.
fn departed(upstream: &Arc<Upstream>, nodes: &HashMap<String, String>, url: &str) {
    if !nodes.values().any(|other| other == url) {
        upstream.departed(url);
    }
}

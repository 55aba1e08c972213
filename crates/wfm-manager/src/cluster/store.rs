//! The cluster's shared state in NATS JetStream, behind typed calls with deadlines.
//!
//! Three KV buckets, all with `replicas` copies:
//! - `wfm_sessions`: one [`SessionRecord`] per session. Every write by an owner is
//!   conditional on the revision it last wrote (or read, to take a session over): a replica
//!   that lost a session cannot write it again. That is the fencing.
//! - `wfm_nodes`: one [`NodeRecord`] per live replica, rewritten by its heartbeat; the
//!   bucket's `max_age` is the lease TTL, so a dead replica's record expires by itself.
//! - `wfm_owned`: `<node>.<session key>` for each session a node owns, so that the
//!   survivors of a dead node find its sessions without reading every record. It is a hint:
//!   the record decides, and stale entries are removed when found.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, stream::StorageType};
use futures_util::StreamExt as _;
use prost::Message as _;
use wfm_proto::cluster::v1::{NodeRecord, SessionRecord};

use super::keys;

/// The bucket of session records.
pub(crate) const SESSIONS: &str = "wfm_sessions";
/// The bucket of live replicas.
pub const NODES: &str = "wfm_nodes";
/// The bucket indexing sessions by owner.
pub(crate) const OWNED: &str = "wfm_owned";
/// The core NATS subject prefix on which a leaving replica hands sessions to a peer.
pub(crate) const ADOPT_SUBJECT: &str = "wfm.adopt";
/// The oldest NATS server cluster mode runs against: KV limit markers and per-message TTLs
/// arrived in 2.11.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 11);
/// The header of a KV delete or purge.
const KV_OPERATION_HEADER: &str = "KV-Operation";
/// The header of a marker JetStream leaves where a message expired or was removed.
const MARKER_REASON_HEADER: &str = "Nats-Marker-Reason";
/// The key, in `wfm_owned`, of the cluster's instance id.
const INSTANCE_KEY: &str = "cluster-instance";
/// Largest session record accepted from the store, in bytes.
const MAX_RECORD: i32 = 1 << 20;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// A conditional write found another revision: someone else wrote the key.
    #[error("the key was written by another replica")]
    Conflict,
    /// NATS or JetStream did not answer, or refused.
    #[error("{0}")]
    Unavailable(String),
    /// A value in the store is not a record of this version.
    #[error("unreadable record under {key}: {problem}")]
    Corrupt {
        /// Its key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No NATS server answered.
    #[error("cannot connect to NATS at {urls}: {problem}")]
    Connect {
        /// The configured servers.
        urls: String,
        /// The client's error.
        problem: String,
    },
    /// The server is too old for the KV features cluster mode uses.
    #[error("NATS server {found} is older than {}.{}, the minimum for cluster mode (KV limit markers, per-message TTL); upgrade it", MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1)]
    ServerTooOld {
        /// The version it reports.
        found: String,
    },
    /// A bucket could not be opened or created.
    #[error("cannot open JetStream bucket {bucket}: {problem}{hint}")]
    Bucket {
        /// The bucket.
        bucket: &'static str,
        /// The server's answer.
        problem: String,
        /// What to change, when the answer says.
        hint: &'static str,
    },
}

/// A session record and the revision it was read at.
pub(crate) struct Versioned {
    /// The record.
    pub(crate) record: SessionRecord,
    /// Its revision, for the next conditional write.
    pub(crate) revision: u64,
}

/// What the connection options of cluster mode need.
pub(crate) struct Connect<'a> {
    /// Comma-separated server URLs.
    pub(crate) urls: &'a str,
    /// The client name, shown by the server.
    pub(crate) name: &'a str,
    /// Copies of each bucket.
    pub(crate) replicas: usize,
    /// The lease TTL: the node records' `max_age`.
    pub(crate) lease_ttl: Duration,
    /// The deadline of every call.
    pub(crate) timeout: Duration,
    /// Credentials and CA.
    pub(crate) security: &'a wfm_tls::NatsSecurity,
}

/// Handles to the cluster's buckets.
#[derive(Clone)]
pub(crate) struct Store {
    client: async_nats::Client,
    sessions: kv::Store,
    nodes: kv::Store,
    owned: kv::Store,
    timeout: Duration,
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// `major.minor` of a server version string such as `2.15.1` or `2.11.0-RC.1`.
pub(crate) fn parse_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl Store {
    /// Connects, checks the server version, and opens (or creates) the buckets.
    pub(crate) async fn connect(
        connect: &Connect<'_>,
        on_event: impl Fn(async_nats::Event) + Send + Sync + 'static,
    ) -> Result<Self, StartError> {
        let urls: Vec<&str> = connect.urls.split(',').map(str::trim).collect();
        let on_event = std::sync::Arc::new(on_event);
        let options = async_nats::ConnectOptions::new()
            .name(connect.name)
            .connection_timeout(connect.timeout)
            .request_timeout(Some(connect.timeout))
            .event_callback(move |event| {
                let on_event = std::sync::Arc::clone(&on_event);
                async move { on_event(event) }
            });
        let failed = |problem: String| StartError::Connect {
            urls: connect.urls.to_string(),
            problem,
        };
        let options = connect
            .security
            .apply(options)
            .await
            .map_err(|error| failed(error.to_string()))?;
        let client = tokio::time::timeout(
            connect.timeout * 2,
            async_nats::connect_with_options(urls.as_slice(), options),
        )
        .await
        .map_err(|_| failed("timed out".to_string()))?
        .map_err(|error| failed(error.to_string()))?;
        let found = client.server_info().version;
        if parse_version(&found).is_none_or(|v| v < MIN_SERVER_VERSION) {
            return Err(StartError::ServerTooOld { found });
        }
        let context = jetstream::new(client.clone());
        let bucket = |bucket: &'static str, max_age: Duration| kv::Config {
            bucket: bucket.to_string(),
            history: 1,
            max_age,
            max_value_size: MAX_RECORD,
            storage: StorageType::File,
            num_replicas: connect.replicas,
            ..Default::default()
        };
        let nodes_config = kv::Config {
            // Expiry leaves a marker that watchers see, so peers learn of a death at once.
            limit_markers: Some(connect.lease_ttl.max(Duration::from_secs(1))),
            ..bucket(NODES, connect.lease_ttl)
        };
        Ok(Self {
            sessions: open(&context, bucket(SESSIONS, Duration::ZERO), connect.timeout).await?,
            nodes: open(&context, nodes_config, connect.timeout).await?,
            owned: open(&context, bucket(OWNED, Duration::ZERO), connect.timeout).await?,
            client,
            timeout: connect.timeout,
        })
    }

    async fn deadline<T, E: std::fmt::Display>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| StoreError::Unavailable("NATS did not answer in time".to_string()))?
            .map_err(unavailable)
    }

    /// The core NATS client, for the handoff subject.
    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The record of the session under `key`, if it exists.
    pub(crate) async fn record(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let Some((value, revision)) = self.latest(&self.sessions, key).await? else {
            return Ok(None);
        };
        let record = SessionRecord::decode(value).map_err(|error| StoreError::Corrupt {
            key: key.to_string(),
            problem: error.to_string(),
        })?;
        Ok(Some(Versioned { record, revision }))
    }

    /// The latest value under `key` and its revision, `None` if absent or deleted, read from
    /// the stream's leader. KV buckets allow direct gets, which any copy may answer, even
    /// one that has not caught up: a record written a moment ago could read as absent, or a
    /// dead replica as alive. Ownership decisions need the leader's word.
    async fn latest(
        &self,
        bucket: &kv::Store,
        key: &str,
    ) -> Result<Option<(prost::bytes::Bytes, u64)>, StoreError> {
        let subject = format!("{}{key}", bucket.prefix);
        let read = bucket.stream.get_last_raw_message_by_subject(&subject);
        let message = match tokio::time::timeout(self.timeout, read).await {
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "NATS did not answer in time".into(),
                ));
            }
            Ok(Err(error)) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
                return Ok(None);
            }
            Ok(result) => result.map_err(unavailable)?,
        };
        // Deletes, purges and expiry markers carry one of these headers; a put carries none.
        let removed = message.headers.get(KV_OPERATION_HEADER).is_some()
            || message.headers.get(MARKER_REASON_HEADER).is_some();
        Ok((!removed).then_some((message.payload, message.sequence)))
    }

    /// Writes a new session's record; [`StoreError::Conflict`] if the session exists.
    pub(crate) async fn create(
        &self,
        key: &str,
        record: &SessionRecord,
    ) -> Result<u64, StoreError> {
        let value = record.encode_to_vec().into();
        match tokio::time::timeout(self.timeout, self.sessions.create(key, value)).await {
            Err(_) => Err(StoreError::Unavailable(
                "NATS did not answer in time".into(),
            )),
            Ok(Err(error)) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(StoreError::Conflict)
            }
            Ok(result) => result.map_err(unavailable),
        }
    }

    /// Rewrites a record last seen at `revision`; [`StoreError::Conflict`] if it moved on.
    pub(crate) async fn update(
        &self,
        key: &str,
        record: &SessionRecord,
        revision: u64,
    ) -> Result<u64, StoreError> {
        let value = record.encode_to_vec().into();
        match tokio::time::timeout(self.timeout, self.sessions.update(key, value, revision)).await {
            Err(_) => Err(StoreError::Unavailable(
                "NATS did not answer in time".into(),
            )),
            Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(StoreError::Conflict)
            }
            Ok(result) => result.map_err(unavailable),
        }
    }

    /// Writes `record` as its owner, at `revision`. A refusal is a conflict only if another
    /// writer came between: when the record found still names this node under one of
    /// `incarnations` (an earlier write of this replica landed, but its answer timed out),
    /// it is written again at the revision found. Only the owner writes a record it owns,
    /// so nothing of anyone else's is overwritten.
    pub(crate) async fn update_own(
        &self,
        key: &str,
        record: &SessionRecord,
        revision: u64,
        incarnations: &[u64],
    ) -> Result<u64, StoreError> {
        match self.update(key, record, revision).await {
            Err(StoreError::Conflict) => {
                let node = record.owner.as_ref().map(|o| o.node_id.as_str());
                let found = self.record(key).await?;
                match found {
                    Some(found)
                        if found.revision > revision
                            && found.record.owner.as_ref().is_some_and(|o| {
                                Some(o.node_id.as_str()) == node
                                    && incarnations.contains(&o.incarnation)
                            }) =>
                    {
                        self.update(key, record, found.revision).await
                    }
                    _ => Err(StoreError::Conflict),
                }
            }
            other => other,
        }
    }

    /// Deletes a record last written at `revision`.
    pub(crate) async fn delete(&self, key: &str, revision: u64) -> Result<(), StoreError> {
        self.deadline(self.sessions.delete_expect_revision(key, Some(revision)))
            .await
    }

    /// The live record of replica `node_id`, if it has one.
    pub(crate) async fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, StoreError> {
        let value = self.latest(&self.nodes, node_id).await?;
        value
            .map(|(bytes, _)| {
                NodeRecord::decode(bytes).map_err(|error| StoreError::Corrupt {
                    key: node_id.to_string(),
                    problem: error.to_string(),
                })
            })
            .transpose()
    }

    /// Rewrites this replica's node record (its heartbeat).
    pub(crate) async fn heartbeat(
        &self,
        node_id: &str,
        record: &NodeRecord,
    ) -> Result<(), StoreError> {
        let value = record.encode_to_vec().into();
        self.deadline(self.nodes.put(node_id, value))
            .await
            .map(drop)
    }

    /// Removes this replica's node record: it has left.
    pub(crate) async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        self.deadline(self.nodes.delete(node_id)).await
    }

    /// Watches every node record: the current ones first, then changes.
    pub(crate) async fn watch_nodes(&self) -> Result<kv::Watch, StoreError> {
        self.deadline(self.nodes.watch_with_history(">")).await
    }

    /// Records that `node` owns the session under `key`.
    pub(crate) async fn index(&self, node: &str, key: &str) -> Result<(), StoreError> {
        let key = keys::index_key(node, key);
        self.deadline(self.owned.put(key, Vec::new().into()))
            .await
            .map(drop)
    }

    /// Forgets that `node` owns the session under `key`.
    pub(crate) async fn unindex(&self, node: &str, key: &str) -> Result<(), StoreError> {
        self.deadline(self.owned.purge(keys::index_key(node, key)))
            .await
    }

    /// The session keys indexed under `node`.
    pub(crate) async fn indexed(&self, node: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{node}.");
        let mut watch = self
            .deadline(self.owned.watch_with_history(format!("{prefix}>")))
            .await?;
        let mut found = Vec::new();
        // The watch replays the current entries, then waits for new ones: stop once it has
        // caught up, or after a pause when there were none to replay.
        loop {
            let next = tokio::time::timeout(Duration::from_millis(300), watch.next()).await;
            let Ok(Some(entry)) = next else {
                break;
            };
            let entry = entry.map_err(unavailable)?;
            if entry.operation == Operation::Put
                && let Some(key) = entry.key.strip_prefix(&prefix)
            {
                found.push(key.to_string());
            }
            if entry.delta == 0 || entry.seen_current {
                break;
            }
        }
        Ok(found)
    }

    /// The cluster's instance id, made by the first replica to ask: it names the store of
    /// sessions, which outlives every replica.
    pub(crate) async fn instance(&self) -> Result<String, StoreError> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(unavailable)?;
        let fresh = format!("c{:016x}", u64::from_le_bytes(bytes));
        // The key has no dot, so it is no index entry (those are `<node>.<session key>`).
        match tokio::time::timeout(
            self.timeout,
            self.owned.create(INSTANCE_KEY, fresh.clone().into()),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(fresh),
            Ok(Err(error)) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Ok(Err(error)) => return Err(unavailable(error)),
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "NATS did not answer in time".into(),
                ));
            }
        }
        let value = self.deadline(self.owned.get(INSTANCE_KEY)).await?;
        let value =
            value.ok_or_else(|| StoreError::Unavailable("the cluster instance vanished".into()))?;
        Ok(String::from_utf8_lossy(&value).into_owned())
    }

    /// Every node id that has an entry in the ownership index.
    pub(crate) async fn indexed_nodes(&self) -> Result<Vec<String>, StoreError> {
        let mut keys = self.deadline(self.owned.keys()).await?;
        let mut nodes = std::collections::BTreeSet::new();
        while let Some(key) = tokio::time::timeout(self.timeout, keys.next())
            .await
            .map_err(|_| StoreError::Unavailable("NATS did not answer in time".into()))?
        {
            let key = key.map_err(unavailable)?;
            if let Some((node, _)) = key.split_once('.') {
                nodes.insert(node.to_string());
            }
        }
        Ok(nodes.into_iter().collect())
    }
}

async fn open(
    context: &jetstream::Context,
    config: kv::Config,
    timeout: Duration,
) -> Result<kv::Store, StartError> {
    let bucket: &'static str = match config.bucket.as_str() {
        SESSIONS => SESSIONS,
        NODES => NODES,
        _ => OWNED,
    };
    let failed = |problem: String| {
        let hint = if problem.contains("insufficient resources") || problem.contains("replicas") {
            ": the NATS cluster has fewer JetStream servers than --nats-replicas asks for"
        } else {
            ""
        };
        StartError::Bucket {
            bucket,
            problem,
            hint,
        }
    };
    let call = |config: kv::Config| async {
        match context.get_key_value(bucket).await {
            Ok(store) => Ok(store),
            Err(_) => context
                .create_key_value(config)
                .await
                .map_err(|e| e.to_string()),
        }
    };
    // A JetStream cluster that is still forming (every node started at once, as compose and
    // a StatefulSet do) times out or has no leader yet: retry for a while, not forever.
    let deadline = tokio::time::Instant::now() + OPEN_PATIENCE;
    let mut delays = backon::BackoffBuilder::build(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times(),
    );
    loop {
        let problem = match tokio::time::timeout(timeout * 2, call(config.clone())).await {
            Ok(Ok(store)) => return Ok(store),
            Ok(Err(problem)) => problem,
            Err(_) => "timed out".to_string(),
        };
        let lasting = problem.contains("insufficient resources") || problem.contains("replicas");
        let delay = delays.next().unwrap_or(Duration::from_secs(2));
        if lasting || tokio::time::Instant::now() + delay > deadline {
            return Err(failed(problem));
        }
        tracing::info!(bucket, %problem, "JetStream bucket not ready yet; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// How long a replica keeps trying to open a bucket at start before it gives up.
const OPEN_PATIENCE: Duration = Duration::from_secs(20);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_compare_by_major_and_minor() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("v2.11.0-RC.1"), Some((2, 11)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("2.9.10").unwrap() < MIN_SERVER_VERSION);
        assert!(parse_version("2.11.0").unwrap() >= MIN_SERVER_VERSION);
    }
}

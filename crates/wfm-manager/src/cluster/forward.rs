//! Calls forwarded to the replica that owns a session, over the same public gRPC service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

use crate::error::ManagerError;

/// The metadata a forwarded call carries: the forwarding replica's node id. A replica never
/// forwards such a call again, so a stale view of ownership cannot bounce a call around.
pub const FORWARDED_HEADER: &str = "wfm-forwarded-by";

/// Owner addresses remembered, beyond which the cache starts afresh.
const MAX_CACHED_OWNERS: usize = 65_536;

/// The owning replica of a session, ready to be called.
#[derive(Clone)]
pub(crate) struct Peer {
    /// Its gRPC address.
    pub(crate) url: Arc<str>,
    /// A client on its channel.
    pub(crate) client: WorkflowManagerClient<Channel>,
}

/// Channels to the other replicas, and the last known owner of recently forwarded sessions.
pub(crate) struct Peers {
    node_id: String,
    timeout: Duration,
    /// TCP, and TLS with this replica's certificate for `https://` peers.
    connector: wfm_tls::Connector,
    channels: Mutex<HashMap<Arc<str>, Channel>>,
    owners: Mutex<HashMap<String, Arc<str>>>,
}

impl Peers {
    /// Peers of replica `node_id`; every forwarded call has `timeout`. With `tls`, peers
    /// are reached over mutual TLS, this replica presenting its own certificate (the
    /// `peer` role on the receiving side).
    pub(crate) fn new(
        node_id: String,
        timeout: Duration,
        tls: Option<Arc<wfm_tls::ClientTls>>,
    ) -> Self {
        Self {
            node_id,
            timeout,
            connector: wfm_tls::Connector::new(tls, timeout),
            channels: Mutex::default(),
            owners: Mutex::default(),
        }
    }

    /// A client of the replica at `url`.
    pub(crate) fn peer(&self, url: &str) -> Result<Peer, ManagerError> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((url, channel)) = channels.get_key_value(url) {
            return Ok(Peer {
                url: Arc::clone(url),
                client: WorkflowManagerClient::new(channel.clone()),
            });
        }
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|error| ManagerError::Store(format!("peer address {url:?}: {error}")))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .connect_with_connector_lazy(self.connector.clone());
        let url: Arc<str> = Arc::from(url);
        channels.insert(Arc::clone(&url), channel.clone());
        Ok(Peer {
            url,
            client: WorkflowManagerClient::new(channel),
        })
    }

    /// The cached owner of `session_id`, if a call was forwarded there lately.
    pub(crate) fn cached(&self, session_id: &str) -> Option<Peer> {
        let url = self
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session_id)
            .cloned()?;
        self.peer(&url).ok()
    }

    /// Remembers that `url` owns `session_id`.
    pub(crate) fn remember(&self, session_id: &str, url: &Arc<str>) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if owners.len() >= MAX_CACHED_OWNERS {
            owners.clear();
        }
        owners.insert(session_id.to_string(), Arc::clone(url));
    }

    /// Forgets the owner of `session_id`: a call there was refused or failed.
    pub(crate) fn forget(&self, session_id: &str) {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session_id);
    }

    /// Forgets every session cached as owned by the replica at `url`: it left or died.
    /// Without this, a replica that once forwarded a session's calls there would go on
    /// naming the dead replica as the owner (`NotOwner`) to every gateway binding the
    /// session, and the gateway would keep redirecting to it, long after a peer took the
    /// session over.
    pub(crate) fn forget_url(&self, url: &str) {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, owner| &**owner != url);
    }

    /// `message` as a request forwarded by this replica.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = self.node_id.parse() {
            request.metadata_mut().insert(FORWARDED_HEADER, value);
        }
        request
    }
}

/// Whether a call arrived forwarded from another replica.
pub(crate) fn is_forwarded(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata.contains_key(FORWARDED_HEADER)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_departed_replica_is_no_longer_named_as_the_owner_of_its_sessions() {
        let peers = Peers::new("me".into(), Duration::from_secs(1), None);
        let (dead, live): (Arc<str>, Arc<str>) = ("http://dead:1".into(), "http://live:1".into());
        peers.remember("s1", &dead);
        peers.remember("s2", &live);
        peers.forget_url(&dead);
        assert!(peers.cached("s1").is_none());
        assert_eq!(&*peers.cached("s2").unwrap().url, "http://live:1");
    }
}

//! The manager as a cluster sees an Interaction Processor: a list of interchangeable
//! replicas, any of which answers any session.
//!
//! [`Manager`] retries a call refused with `UNAVAILABLE`, or lost to a transport error, at the
//! next replica in the list, after a short exponential backoff with jitter. Every call the
//! simulator makes is safe to repeat: `CreateSession` is idempotent, a repeated update
//! sequence is acknowledged as a duplicate, and an `EndSession` repeated after it took
//! effect answers `NOT_FOUND`, which [`Session::end`] takes as done.
//!
//! [`Session`] is one agent's session on top of it, with the two repairs of the cluster
//! contract: a sequence gap (an update acknowledged by a replica that died before persisting
//! it) is answered with a snapshot of the full CTI state at the expected sequence, and a
//! session the cluster lost entirely (`NOT_FOUND`) is created again with its full state.
//! [`Recovery`] counts retries, resyncs and recreations.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use wfm_manager::error::{
    ERROR_DOMAIN, EXPECTED_SEQUENCE_DETAIL, EXPECTED_SEQUENCE_KEY, SEQUENCE_GAP_REASON,
};
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

use crate::cti::CtiState;

/// Why a list of manager URLs is unusable.
#[derive(Debug, thiserror::Error)]
pub enum UrlsError {
    /// The list names no URL.
    #[error("no manager URL given")]
    Empty,
    /// One entry is not a valid URL.
    #[error("invalid manager URL {url:?}: {source}")]
    Invalid {
        /// The entry.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// A comma-separated list of manager replica URLs, as `--manager` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerUrls(Vec<String>);

impl ManagerUrls {
    /// The URLs, in the order they are tried.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl std::str::FromStr for ManagerUrls {
    type Err = UrlsError;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_string)
            .collect();
        if urls.is_empty() {
            return Err(UrlsError::Empty);
        }
        for url in &urls {
            Endpoint::from_shared(url.clone()).map_err(|source| UrlsError::Invalid {
                url: url.clone(),
                source,
            })?;
        }
        Ok(Self(urls))
    }
}

impl std::fmt::Display for ManagerUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// How calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub min_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Retries of one call before its last error is returned.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    /// About 20 s of retries in all: long enough for a cluster to expire a dead owner's
    /// lease and hand its sessions to another replica.
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
            max_retries: 24,
        }
    }
}

impl RetryPolicy {
    /// The delays between the attempts of one call.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        // Jitter, so that many sessions failing over at once do not retry in lockstep.
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
            .build()
    }
}

/// Whether a failed call may succeed at another replica: `UNAVAILABLE` from the server, or
/// any status the client made up itself from a transport failure (those carry the transport
/// error as their source; a status sent by a server never does).
pub fn retryable(status: &Status) -> bool {
    status.code() == Code::Unavailable || std::error::Error::source(status).is_some()
}

/// For a sequence gap, the sequence the session expects: from the `wfm-expected-sequence`
/// trailer, or else from the `google.rpc.ErrorInfo` detail.
pub fn expected_sequence(status: &Status) -> Option<u64> {
    if status.code() != Code::FailedPrecondition {
        return None;
    }
    let from_metadata = status
        .metadata()
        .get(EXPECTED_SEQUENCE_KEY)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    from_metadata.or_else(|| {
        let details = status.get_error_details();
        let info = details.error_info()?;
        if info.reason != SEQUENCE_GAP_REASON || info.domain != ERROR_DOMAIN {
            return None;
        }
        info.metadata.get(EXPECTED_SEQUENCE_DETAIL)?.parse().ok()
    })
}

/// Which replica calls go to: all callers share it, so that one failure moves everyone on.
#[derive(Debug)]
pub struct Rotation {
    current: AtomicUsize,
    len: usize,
}

impl Rotation {
    /// A rotation over `len` replicas, starting at the first.
    pub fn new(len: usize) -> Self {
        Self {
            current: AtomicUsize::new(0),
            len: len.max(1),
        }
    }

    /// The replica to call now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Moves on from replica `failed`, unless another caller already has: a burst of
    /// failures of one replica then skips it once, not once per failure.
    pub fn failed(&self, failed: usize) -> usize {
        let next = (failed + 1) % self.len;
        match self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => next,
            Err(moved) => moved,
        }
    }
}

/// The recovery counters: what failures cost.
#[derive(Debug, Default)]
pub struct Recovery {
    retries: AtomicU64,
    resyncs: AtomicU64,
    recreations: AtomicU64,
}

/// The recovery counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryCounts {
    /// Calls (or `PushUpdates` streams) repeated after `UNAVAILABLE` or a transport error.
    pub retries: u64,
    /// Sequence gaps repaired with a snapshot.
    pub resyncs: u64,
    /// Sessions the manager no longer knew, created again with their full state.
    pub recreations: u64,
}

impl RecoveryCounts {
    /// What happened between `earlier` and these counts.
    pub fn since(self, earlier: RecoveryCounts) -> RecoveryCounts {
        RecoveryCounts {
            retries: self.retries.saturating_sub(earlier.retries),
            resyncs: self.resyncs.saturating_sub(earlier.resyncs),
            recreations: self.recreations.saturating_sub(earlier.recreations),
        }
    }
}

impl Recovery {
    /// Counts a retried call.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a gap repaired with a snapshot.
    pub fn resynced(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session created again.
    pub fn recreated(&self) {
        self.recreations.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn counts(&self) -> RecoveryCounts {
        RecoveryCounts {
            retries: self.retries.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            recreations: self.recreations.load(Ordering::Relaxed),
        }
    }
}

/// The workflow manager as a list of replicas, with retries; cheap to clone.
#[derive(Debug, Clone)]
pub struct Manager {
    clients: Arc<[WorkflowManagerClient<Channel>]>,
    rotation: Arc<Rotation>,
    recovery: Arc<Recovery>,
    policy: RetryPolicy,
    /// The number of the next `CreateSession`, when creations are spread over the replicas.
    spread: Option<Arc<AtomicUsize>>,
}

impl From<WorkflowManagerClient<Channel>> for Manager {
    /// One replica, already connected.
    fn from(client: WorkflowManagerClient<Channel>) -> Self {
        Self::from_clients(vec![client], RetryPolicy::default())
    }
}

impl Manager {
    /// Replicas at `urls`, connected lazily, so that one down at start-up is simply skipped.
    pub fn new(urls: &ManagerUrls, policy: RetryPolicy) -> Result<Self, UrlsError> {
        let clients = urls
            .as_slice()
            .iter()
            .map(|url| {
                Endpoint::from_shared(url.clone())
                    .map(|endpoint| WorkflowManagerClient::new(endpoint.connect_lazy()))
                    .map_err(|source| UrlsError::Invalid {
                        url: url.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_clients(clients, policy))
    }

    /// Replicas reached through `clients` (never empty), tried in this order.
    fn from_clients(clients: Vec<WorkflowManagerClient<Channel>>, policy: RetryPolicy) -> Self {
        Self {
            rotation: Arc::new(Rotation::new(clients.len())),
            clients: clients.into(),
            recovery: Arc::new(Recovery::default()),
            policy,
            spread: None,
        }
    }

    /// The same replicas, except that each `CreateSession` is first tried at the next
    /// replica in turn. A cluster replica owns the sessions created at it, so this spreads
    /// ownership evenly, as a load balancer in front of the replicas would; a refusal moves
    /// the call on as usual.
    pub fn spreading_creates(mut self) -> Self {
        self.spread = Some(Arc::default());
        self
    }

    /// The recovery counters of every call made through this manager and its clones.
    pub fn recovery(&self) -> &Arc<Recovery> {
        &self.recovery
    }

    /// The retry policy.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// The client of the replica to call now, and its index for [`Manager::failed`].
    pub fn client(&self) -> (usize, WorkflowManagerClient<Channel>) {
        let index = self.rotation.current() % self.clients.len().max(1);
        // `clients` is never empty: `ManagerUrls` refuses an empty list.
        let client = self.clients[index].clone();
        (index, client)
    }

    /// Moves calls on from replica `index`, which just failed.
    pub fn failed(&self, index: usize) {
        self.rotation.failed(index);
    }

    /// Runs `call` against the current replica, retrying at the next one after a backoff
    /// while it fails with `UNAVAILABLE` or a transport error.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut(WorkflowManagerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut delays = self.policy.delays();
        loop {
            let (index, client) = self.client();
            let status = match call(client).await {
                Ok(value) => return Ok(value),
                Err(status) if retryable(&status) => status,
                Err(status) => return Err(status),
            };
            let Some(delay) = delays.next() else {
                return Err(status);
            };
            tracing::debug!(replica = index, %status, ?delay, "manager call failed; retrying at the next replica");
            self.failed(index);
            self.recovery.retried();
            tokio::time::sleep(delay).await;
        }
    }

    /// `CreateSession`, retried.
    pub async fn create_session(
        &self,
        request: &pb::CreateSessionRequest,
    ) -> Result<pb::CreateSessionResponse, Status> {
        if let Some(next) = &self.spread {
            let index = next.fetch_add(1, Ordering::Relaxed) % self.clients.len().max(1);
            let mut client = self.clients[index].clone();
            match client.create_session(request.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if retryable(&status) => self.recovery.retried(),
                Err(status) => return Err(status),
            }
        }
        self.call(|mut client| {
            let request = request.clone();
            async move { Ok(client.create_session(request).await?.into_inner()) }
        })
        .await
    }

    /// `ApplyUpdate` of `kind` as `sequence` of `session_id`, retried.
    pub async fn apply_update(
        &self,
        session_id: &str,
        sequence: u64,
        kind: &pb::cti_update::Kind,
    ) -> Result<pb::UpdateAck, Status> {
        self.call(|mut client| {
            let request = pb::ApplyUpdateRequest {
                session_id: session_id.to_string(),
                sequence,
                update: Some(pb::CtiUpdate {
                    kind: Some(kind.clone()),
                }),
            };
            async move { Ok(client.apply_update(request).await?.into_inner()) }
        })
        .await
    }

    /// `EndSession`, retried.
    pub async fn end_session(&self, session_id: &str) -> Result<(), Status> {
        self.call(|mut client| {
            let request = pb::EndSessionRequest {
                session_id: session_id.to_string(),
            };
            async move { client.end_session(request).await.map(drop) }
        })
        .await
    }
}

/// One agent's session as the Interaction Processor keeps it: its identity, the CTI state
/// it has reported, and the next sequence number. Every update goes through [`Session::push`],
/// which repairs gaps and lost sessions, so the manager ends up with the IP's state.
#[derive(Debug)]
pub struct Session {
    manager: Manager,
    /// The creation request; its channels and interactions are refilled from `state` when
    /// the session is created again.
    identity: pb::CreateSessionRequest,
    state: CtiState,
    next_sequence: u64,
    /// The sequence a newly created session expects first.
    first_sequence: u64,
    reference: String,
}

impl Session {
    /// Creates the session `request` describes (retried like any call).
    pub async fn create(
        manager: Manager,
        request: pb::CreateSessionRequest,
    ) -> Result<Self, Status> {
        let created = manager.create_session(&request).await?;
        let state = CtiState::new(request.channels.clone(), request.interactions.clone());
        Ok(Self {
            manager,
            identity: pb::CreateSessionRequest {
                channels: vec![],
                interactions: vec![],
                ..request
            },
            state,
            next_sequence: created.next_sequence,
            first_sequence: created.next_sequence,
            reference: created.resource_reference,
        })
    }

    /// The session resource reference; a recreated session has a new one.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.identity.session_id
    }

    /// The CTI state reported so far: what the manager should hold.
    pub fn state(&self) -> &CtiState {
        &self.state
    }

    /// The sequence number of the next update.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Reports `kind` as the next update. A gap is repaired with a snapshot that includes
    /// `kind`; a session the manager lost is created again and `kind` sent to it once more.
    /// The error of an update the manager refuses on its merits is returned.
    pub async fn push(&mut self, kind: &pb::cti_update::Kind) -> Result<(), Status> {
        let mut recreated = false;
        loop {
            let sent = self
                .manager
                .apply_update(&self.identity.session_id, self.next_sequence, kind)
                .await;
            match sent {
                // A duplicate is an earlier attempt that did land.
                Ok(_) => {
                    self.state.apply(kind);
                    self.next_sequence += 1;
                    return Ok(());
                }
                Err(status) => {
                    if let Some(expected) = expected_sequence(&status) {
                        self.state.apply(kind);
                        return self.resync(expected).await;
                    }
                    // A NOT_FOUND may also name an unknown interaction: after one
                    // recreation the same answer is the update's own fault.
                    if status.code() != Code::NotFound || recreated || !self.recreate().await? {
                        return Err(status);
                    }
                    recreated = true;
                }
            }
        }
    }

    /// Replaces the session's whole state with the reported one, at `sequence`.
    async fn resync(&mut self, sequence: u64) -> Result<(), Status> {
        let snapshot = pb::cti_update::Kind::Snapshot(self.state.snapshot());
        let sent = self
            .manager
            .apply_update(&self.identity.session_id, sequence, &snapshot)
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(session_id = %self.identity.session_id, sequence, "sequence gap: resynchronised with a snapshot");
                self.manager.recovery().resynced();
                self.next_sequence = sequence + 1;
                Ok(())
            }
            // The state is complete already: a recreated session holds it all.
            Err(status) if status.code() == Code::NotFound => {
                if self.recreate().await? {
                    Ok(())
                } else {
                    Err(status)
                }
            }
            Err(status) => Err(status),
        }
    }

    /// Creates the session again with its full state; `false` when the manager still had it:
    /// it re-issued the session at the sequence this side expects, which a new session
    /// would not, once any update was applied.
    async fn recreate(&mut self) -> Result<bool, Status> {
        // Resuming its reference keeps the session's incarnation, so that a client still
        // bound with that reference is rebound by its gateway.
        let request = pb::CreateSessionRequest {
            channels: self.state.channels().to_vec(),
            interactions: self.state.interactions().to_vec(),
            resume_reference: self.reference.clone(),
            ..self.identity.clone()
        };
        let created = self.manager.create_session(&request).await?;
        if created.next_sequence == self.next_sequence && self.next_sequence != self.first_sequence
        {
            return Ok(false);
        }
        tracing::info!(session_id = %self.identity.session_id, "session unknown to the manager: created again");
        self.manager.recovery().recreated();
        self.next_sequence = created.next_sequence;
        self.reference = created.resource_reference;
        Ok(true)
    }

    /// Ends the session; one the manager no longer knows is ended already.
    pub async fn end(&self) -> Result<(), Status> {
        match self.manager.end_session(&self.identity.session_id).await {
            Err(status) if status.code() != Code::NotFound => Err(status),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_list_is_split_on_commas_and_trimmed() {
        let urls: ManagerUrls = " http://a:1 ,http://b:2,"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(urls.as_slice(), ["http://a:1", "http://b:2"]);
        assert_eq!(urls.to_string(), "http://a:1,http://b:2");
        assert!(matches!(
            " , ".parse::<ManagerUrls>(),
            Err(UrlsError::Empty)
        ));
        assert!(matches!(
            "http://a:1,not a url".parse::<ManagerUrls>(),
            Err(UrlsError::Invalid { .. })
        ));
    }

    #[test]
    fn the_rotation_moves_on_once_per_failed_replica_and_wraps() {
        let rotation = Rotation::new(3);
        assert_eq!(rotation.current(), 0);
        assert_eq!(rotation.failed(0), 1);
        // A second caller that also saw replica 0 fail does not skip replica 1.
        assert_eq!(rotation.failed(0), 1);
        assert_eq!(rotation.current(), 1);
        assert_eq!(rotation.failed(1), 2);
        assert_eq!(rotation.failed(2), 0);
        let single = Rotation::new(1);
        assert_eq!(single.failed(0), 0);
    }

    #[test]
    fn the_backoff_grows_is_capped_and_ends() {
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retries: 5,
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 5);
        // Jitter adds up to one more delay; never past twice the cap.
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(10)));
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(80)),
            "{delays:?}"
        );
        assert!(delays[4] >= Duration::from_millis(40));
    }

    #[test]
    fn unavailable_and_local_transport_failures_are_retried_and_refusals_are_not() {
        assert!(retryable(&Status::unavailable("replica shutting down")));
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        assert!(retryable(&Status::from_error(Box::new(io))));
        assert!(!retryable(&Status::not_found("unknown session s")));
        assert!(!retryable(&Status::unknown("a server's own unknown error")));
        assert!(!retryable(&Status::failed_precondition("sequence gap")));
    }

    #[test]
    fn the_expected_sequence_is_read_from_the_trailer_or_the_error_info() {
        let error = wfm_manager::error::ManagerError::from(wfm_engine::UpdateError::SequenceGap {
            expected: 7,
            got: 9,
        });
        let status = Status::from(error);
        assert_eq!(expected_sequence(&status), Some(7));
        let mut bare = Status::failed_precondition("gap");
        bare.metadata_mut().insert(EXPECTED_SEQUENCE_KEY, 3.into());
        assert_eq!(expected_sequence(&bare), Some(3));
        let details = tonic_types::ErrorDetails::with_error_info(
            SEQUENCE_GAP_REASON,
            ERROR_DOMAIN,
            std::collections::HashMap::from([(
                EXPECTED_SEQUENCE_DETAIL.to_string(),
                "4".to_string(),
            )]),
        );
        let rich = Status::with_error_details(Code::FailedPrecondition, "gap", details);
        assert_eq!(expected_sequence(&rich), Some(4));
        assert_eq!(
            expected_sequence(&Status::failed_precondition("already bound")),
            None
        );
        assert_eq!(expected_sequence(&Status::not_found("x")), None);
    }
}

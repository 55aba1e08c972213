//! The gateway's side of the workflow manager: a small pool of multiplexed `Attach` streams
//! over one gRPC channel, the routing table from binding ids to client connections, the
//! Service Monitor, and the rebinding of every session after a reconnect.
//!
//! Each stream opens with the manager's capability catalogue, against which its state
//! events carry their capabilities as bits; a stream whose catalogue is missing or of
//! another wire version is refused with the reason logged.
//!
//! This side decides what happened to a binding or to the manager, and tells the
//! connection through a typed [`Delivery`]; only the connection side renders MediaBar JSON
//! and changes what its client was told.
//!
//! Every binding has a gateway-wide id, so a binding keeps its id when it moves to another
//! stream after a loss. A stream that ends (manager restart, network loss) turns its
//! bindings into *lost* bindings and tells their clients `service.unavailable`; once any
//! stream is connected again the rebinder binds each lost session anew (`takeover=false`),
//! and its client gets `service.available` followed by the full state the manager sends.
//!
//! Queues: each stream's commands to the manager wait in a channel of
//! [`COMMAND_QUEUE`]; a bind that finds it full fails with `serviceUnavailable`, an unbind
//! is kept and retried by the rebinder. Events from the manager are handed to the
//! connections as they arrive, where they are conflated per target.
//!
//! Locks: the routing table is taken before a connection's lock, which is a leaf lock; no
//! lock is held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

use crate::catalogue::{Catalogue, CatalogueError};
use crate::client::ClientShared;
use crate::delivery::{Availability, Delivery, ServiceInfo, StateDelivery};
use crate::errors::{GatewayError, UnboundReason};
use crate::settings::GatewayConfig;
use crate::stats::GatewayStats;

/// Commands that may wait for one `Attach` stream to the manager.
pub(crate) const COMMAND_QUEUE: usize = 1024;

/// The gRPC service name the manager reports in `grpc.health.v1`.
const HEALTH_SERVICE: &str = "wfm.v1.WorkflowManager";

/// Seconds since the epoch, for reference expiry.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections only move data between maps and queues; a panic inside one
    // cannot leave a half-written entry that a later reader would misread.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A client's `bindResource`, waiting for the manager's answer.
    Binding,
    /// Bound; events flow to the client.
    Bound,
    /// Re-bound after a loss, waiting for the manager's answer.
    Rebinding { grace_until: Option<Instant> },
    /// The stream carrying it ended; waits for the rebinder.
    Lost {
        retry_at: Instant,
        grace_until: Option<Instant>,
    },
}

struct Route {
    conn: Arc<ClientShared>,
    reference: String,
    /// The stream the binding lives (or lived) on.
    stream: usize,
    phase: Phase,
}

/// One connected `Attach` stream.
struct Stream {
    commands: mpsc::Sender<pb::AttachRequest>,
    catalogue: Arc<Catalogue>,
}

impl Stream {
    /// Queues a command for the manager, counting a full queue.
    fn command(
        &self,
        command: pb::AttachRequest,
        stats: &GatewayStats,
    ) -> Result<(), mpsc::error::TrySendError<pb::AttachRequest>> {
        let sent = self.commands.try_send(command);
        if let Err(mpsc::error::TrySendError::Full(_)) = &sent {
            stats.commands_refused.inc();
        }
        sent
    }
}

#[derive(Default)]
struct Table {
    routes: HashMap<u64, Route>,
    lost: HashSet<u64>,
    /// Each connected stream.
    streams: Vec<Option<Stream>>,
    /// Unbinds that found their stream's command queue full: (stream, binding id).
    unsent_unbinds: Vec<(usize, u64)>,
}

/// Shared by every connection of a gateway.
pub(crate) struct Upstream {
    config: Arc<GatewayConfig>,
    channel: Channel,
    table: Mutex<Table>,
    /// Every open connection, for Service Monitor broadcasts.
    connections: Mutex<HashMap<u64, Arc<ClientShared>>>,
    info: RwLock<Option<ServiceInfo>>,
    connected: AtomicUsize,
    rebind_wake: Notify,
    next_binding: AtomicU64,
}

fn bind_command(binding_id: u64, reference: &str, takeover: bool) -> pb::AttachRequest {
    pb::AttachRequest {
        kind: Some(pb::attach_request::Kind::Bind(pb::AttachBind {
            binding_id,
            resource_reference: reference.to_string(),
            takeover,
            binder_id: String::new(),
        })),
    }
}

fn unbind_command(binding_id: u64) -> pb::AttachRequest {
    pb::AttachRequest {
        kind: Some(pb::attach_request::Kind::Unbind(pb::AttachUnbind {
            binding_id,
        })),
    }
}

impl Upstream {
    /// An upstream to `config.manager_url`; nothing connects until [`Upstream::spawn`].
    pub(crate) fn new(config: Arc<GatewayConfig>) -> Result<Arc<Self>, tonic::transport::Error> {
        let channel = Endpoint::from_shared(config.manager_url.clone())?
            .connect_timeout(config.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(config.upstream_keepalive)
            .keep_alive_timeout(config.upstream_keepalive_timeout)
            .keep_alive_while_idle(true)
            .connect_lazy();
        let table = Table {
            streams: (0..config.upstream_streams).map(|_| None).collect(),
            ..Table::default()
        };
        Ok(Arc::new(Self {
            config,
            channel,
            table: Mutex::new(table),
            connections: Mutex::default(),
            info: RwLock::default(),
            connected: AtomicUsize::new(0),
            rebind_wake: Notify::new(),
            next_binding: AtomicU64::new(1),
        }))
    }

    /// Starts the stream tasks and the rebinder on `tracker`; they stop with `stop`.
    pub(crate) fn spawn(self: &Arc<Self>, tracker: &TaskTracker, stop: &CancellationToken) {
        for index in 0..self.config.upstream_streams {
            tracker.spawn(Arc::clone(self).run_stream(index, stop.clone()));
        }
        tracker.spawn(Arc::clone(self).run_rebinder(stop.clone()));
    }

    /// True while at least one stream to the manager is connected.
    pub(crate) fn is_ready(&self) -> bool {
        self.connected.load(Ordering::SeqCst) > 0
    }

    /// The last service information fetched from the manager, and whether it is reachable.
    pub(crate) fn service(&self) -> (Option<ServiceInfo>, bool) {
        let info = self
            .info
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (info, self.is_ready())
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    fn availability(&self) -> Availability {
        let (info, available) = self.service();
        Availability { available, info }
    }

    /// Adds a connection to the Service Monitor's audience.
    pub(crate) fn register(&self, conn: &Arc<ClientShared>) {
        let mut connections = lock(&self.connections);
        // Under the broadcast lock, so that the connection starts from the state that the
        // next broadcast compares against.
        conn.deliver(Delivery::Assume {
            available: self.is_ready(),
        });
        connections.insert(conn.id, Arc::clone(conn));
    }

    /// Removes a connection from the audience.
    pub(crate) fn deregister(&self, id: u64) {
        lock(&self.connections).remove(&id);
    }

    /// A new gateway-wide binding id, which the connection records before it binds, so
    /// that the manager's answer always finds it waiting.
    pub(crate) fn next_binding_id(&self) -> u64 {
        self.next_binding.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a client's bind to the manager; the answer arrives as a
    /// [`Delivery::BindResult`].
    pub(crate) fn bind(
        &self,
        conn: &Arc<ClientShared>,
        binding_id: u64,
        reference: String,
        takeover: bool,
    ) -> Result<(), GatewayError> {
        let mut table = self.table();
        let Table {
            routes, streams, ..
        } = &mut *table;
        let count = streams.len();
        let start = usize::try_from(binding_id).unwrap_or(0);
        let (stream, connected) = (0..count)
            .map(|k| (start + k) % count)
            .find_map(|i| streams[i].as_ref().map(|s| (i, s)))
            .ok_or(GatewayError::ServiceUnavailable)?;
        connected
            .command(
                bind_command(binding_id, &reference, takeover),
                &self.config.stats,
            )
            .map_err(|_| GatewayError::ServiceUnavailable)?;
        routes.insert(
            binding_id,
            Route {
                conn: Arc::clone(conn),
                reference,
                stream,
                phase: Phase::Binding,
            },
        );
        Ok(())
    }

    /// Whether `candidate` is the reference binding `binding_id` was made with.
    pub(crate) fn is_reference(&self, binding_id: u64, candidate: &str) -> bool {
        self.table()
            .routes
            .get(&binding_id)
            .is_some_and(|r| r.reference == candidate)
    }

    /// Forgets a binding and releases it on the manager; false if it had already ended.
    pub(crate) fn unbind(&self, binding_id: u64) -> bool {
        let mut table = self.table();
        let Some(route) = table.routes.remove(&binding_id) else {
            return false;
        };
        table.lost.remove(&binding_id);
        if !matches!(route.phase, Phase::Lost { .. }) {
            self.send_unbind(&mut table, route.stream, binding_id);
        }
        true
    }

    /// Gives up on a bind the manager has not answered in time.
    pub(crate) fn cancel_bind(&self, binding_id: u64) {
        let mut table = self.table();
        if !matches!(
            table.routes.get(&binding_id).map(|r| r.phase),
            Some(Phase::Binding)
        ) {
            return;
        }
        if let Some(route) = table.routes.remove(&binding_id) {
            self.send_unbind(&mut table, route.stream, binding_id);
            fail_bind(&route.conn, binding_id, GatewayError::UpstreamTimeout);
        }
    }

    async fn run_stream(self: Arc<Self>, index: usize, stop: CancellationToken) {
        // Exponential with jitter, so that gateways do not reconnect in lockstep.
        let policy = ExponentialBuilder::default()
            .with_min_delay(self.config.reconnect_initial)
            .with_max_delay(self.config.reconnect_max)
            .with_jitter()
            .without_max_times();
        let mut backoff = policy.build();
        loop {
            let opened = tokio::select! {
                () = stop.cancelled() => return,
                opened = tokio::time::timeout(self.config.request_timeout, self.open(index)) => opened,
            };
            match opened {
                Ok(Ok(mut inbound)) => {
                    tracing::info!(stream = index, "attach stream connected");
                    backoff = policy.build();
                    loop {
                        let message = tokio::select! {
                            () = stop.cancelled() => return,
                            message = inbound.message() => message,
                        };
                        match message {
                            Ok(Some(message)) => self.on_response(index, message),
                            Ok(None) => {
                                tracing::warn!(
                                    stream = index,
                                    "attach stream ended by the manager"
                                );
                                break;
                            }
                            Err(status) => {
                                tracing::warn!(stream = index, %status, "attach stream failed");
                                break;
                            }
                        }
                    }
                    self.stream_down(index);
                }
                Ok(Err(OpenError::Status(status))) => {
                    tracing::debug!(stream = index, %status, "cannot open attach stream");
                }
                Ok(Err(OpenError::Catalogue(error))) => {
                    tracing::error!(stream = index, %error, "attach stream refused");
                }
                Err(_) => tracing::debug!(stream = index, "opening attach stream timed out"),
            }
            let pause = backoff.next().unwrap_or(self.config.reconnect_max);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Checks health, refreshes the service information, opens one `Attach` stream and
    /// reads its catalogue.
    async fn open(&self, index: usize) -> Result<Streaming<pb::AttachResponse>, OpenError> {
        let health = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: HEALTH_SERVICE.to_string(),
            })
            .await?
            .into_inner();
        if health.status() != ServingStatus::Serving {
            return Err(Status::unavailable("workflow manager is not serving").into());
        }
        let mut client = WorkflowManagerClient::new(self.channel.clone());
        let info = client
            .get_service_info(pb::GetServiceInfoRequest {})
            .await?
            .into_inner();
        *self.info.write().unwrap_or_else(PoisonError::into_inner) = Some(ServiceInfo {
            vendor: info.vendor,
            version: info.version,
        });
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request.metadata_mut().insert(
            wfm_proto::ATTACH_WIRE_HEADER,
            wfm_proto::ATTACH_WIRE_VERSION.into(),
        );
        let mut inbound = client.attach(request).await?.into_inner();
        let catalogue = match inbound.message().await? {
            Some(pb::AttachResponse {
                kind: Some(Kind::Catalogue(catalogue)),
                ..
            }) => Catalogue::from_wire(catalogue)?,
            _ => return Err(CatalogueError::Missing.into()),
        };
        self.stream_up(
            index,
            Stream {
                commands: tx,
                catalogue: Arc::new(catalogue),
            },
        );
        Ok(inbound)
    }

    fn stream_up(&self, index: usize, stream: Stream) {
        let first = {
            let mut table = self.table();
            table.streams[index] = Some(stream);
            let before = self.connected.fetch_add(1, Ordering::SeqCst);
            self.config.stats.upstream_streams.set(before as i64 + 1);
            before == 0
        };
        if first {
            tracing::info!("workflow manager available");
            self.broadcast();
        }
        self.rebind_wake.notify_one();
    }

    fn stream_down(&self, index: usize) {
        let now = Instant::now();
        let last = {
            let mut table = self.table();
            let last = table.streams[index].take().is_some()
                && self.connected.fetch_sub(1, Ordering::SeqCst) == 1;
            let connected = self.connected.load(Ordering::SeqCst);
            self.config.stats.upstream_streams.set(connected as i64);
            // The manager releases a lost stream's bindings itself.
            table.unsent_unbinds.retain(|(stream, _)| *stream != index);
            let ids: Vec<u64> = table
                .routes
                .iter()
                .filter(|(_, r)| r.stream == index)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                self.lose(&mut table, id, now, now, GatewayError::ServiceUnavailable);
            }
            last
        };
        if last {
            tracing::warn!("workflow manager unavailable");
            self.broadcast();
        }
        self.rebind_wake.notify_one();
    }

    /// A binding's stream is gone: a pending client bind fails, anything bound waits for
    /// the rebinder, and the client hears the manager is unavailable.
    fn lose(
        &self,
        table: &mut Table,
        id: u64,
        now: Instant,
        retry_at: Instant,
        error: GatewayError,
    ) {
        let Some(route) = table.routes.get_mut(&id) else {
            return;
        };
        let grace_until = match route.phase {
            Phase::Binding => {
                if let Some(route) = table.routes.remove(&id) {
                    fail_bind(&route.conn, id, error);
                }
                return;
            }
            Phase::Lost { .. } => return,
            Phase::Bound => None,
            Phase::Rebinding { grace_until } => grace_until,
        };
        route.phase = Phase::Lost {
            retry_at: retry_at.max(now),
            grace_until,
        };
        route.conn.deliver(Delivery::Service {
            binding_id: Some(id),
            now: Availability {
                available: false,
                info: None,
            },
        });
        table.lost.insert(id);
    }

    /// Tells every connection whether the manager is reachable; bound ones ignore it, as
    /// they hear it with their binding's loss and rebind.
    fn broadcast(&self) {
        let connections = lock(&self.connections);
        let now = self.availability();
        for conn in connections.values() {
            conn.deliver(Delivery::Service {
                binding_id: None,
                now: now.clone(),
            });
        }
    }

    fn on_response(&self, index: usize, message: pb::AttachResponse) {
        let Some(kind) = message.kind else {
            return;
        };
        let id = message.binding_id;
        let now = Instant::now();
        let mut guard = self.table();
        let table = &mut *guard;
        let Some(route) = table.routes.get_mut(&id) else {
            // A binding the client has already released; the manager's answer is moot.
            return;
        };
        if route.stream != index {
            return;
        }
        match (kind, route.phase) {
            (Kind::State(state), Phase::Bound) => {
                let Some(stream) = &table.streams[index] else {
                    return;
                };
                let state = StateDelivery {
                    target: state.target,
                    context: state
                        .context
                        .into_iter()
                        .map(|e| (e.key, e.value))
                        .collect(),
                    defined: state.defined,
                    enabled: state.enabled,
                    catalogue: Arc::clone(&stream.catalogue),
                    trace: state.trace_context,
                    received: std::time::Instant::now(),
                };
                route.conn.deliver(Delivery::State {
                    binding_id: id,
                    state,
                });
            }
            (Kind::BindResult(result), Phase::Binding) => {
                if result.code == Code::Ok as i32 {
                    route.phase = Phase::Bound;
                    route.conn.deliver(Delivery::BindResult {
                        binding_id: id,
                        result: Ok(result.session_id),
                    });
                } else if let Some(route) = table.routes.remove(&id) {
                    tracing::debug!(binding_id = id, code = result.code, message = %result.message, "bind refused");
                    let error = GatewayError::from_bind_code(Code::from_i32(result.code));
                    fail_bind(&route.conn, id, error);
                }
            }
            (Kind::BindResult(result), Phase::Rebinding { grace_until }) => {
                let code = Code::from_i32(result.code);
                match code {
                    Code::Ok => {
                        tracing::info!(binding_id = id, session_id = %result.session_id, "session rebound");
                        route.phase = Phase::Bound;
                        route.conn.deliver(Delivery::Service {
                            binding_id: Some(id),
                            now: self.availability(),
                        });
                    }
                    Code::NotFound => {
                        // The Interaction Processor may not have recreated the session yet.
                        let grace_until =
                            grace_until.unwrap_or_else(|| now + self.config.rebind_grace);
                        if now < grace_until {
                            route.phase = Phase::Lost {
                                retry_at: now + self.config.rebind_retry,
                                grace_until: Some(grace_until),
                            };
                            table.lost.insert(id);
                            self.rebind_wake.notify_one();
                        } else {
                            self.end(table, id, UnboundReason::SessionEnded);
                        }
                    }
                    Code::Unavailable => {
                        route.phase = Phase::Lost {
                            retry_at: now + self.config.rebind_retry,
                            grace_until,
                        };
                        table.lost.insert(id);
                        self.rebind_wake.notify_one();
                    }
                    _ => {
                        tracing::info!(binding_id = id, ?code, message = %result.message, "rebind refused");
                        self.end(table, id, UnboundReason::from_rebind_code(code));
                    }
                }
            }
            (Kind::Unbound(unbound), Phase::Bound | Phase::Binding) => {
                match (
                    unbound.reason(),
                    UnboundReason::from_manager(unbound.reason()),
                ) {
                    (pb::UnboundReason::ShuttingDown, _) => {
                        // The manager is restarting: keep the client bound and rebind once a
                        // new manager answers; retry no sooner, since this one refuses binds.
                        let retry_at = now + self.config.rebind_retry;
                        self.lose(table, id, now, retry_at, GatewayError::ServiceUnavailable);
                        self.rebind_wake.notify_one();
                    }
                    (_, Some(reason)) => self.end(table, id, reason),
                    (_, None) => {}
                }
            }
            _ => {}
        }
    }

    /// Ends a binding for good and tells its client why.
    fn end(&self, table: &mut Table, id: u64, reason: UnboundReason) {
        table.lost.remove(&id);
        let Some(route) = table.routes.remove(&id) else {
            return;
        };
        route.conn.deliver(Delivery::Unbound {
            binding_id: id,
            reason,
            now: self.availability(),
        });
    }

    /// Releases a binding on the manager, or keeps the unbind and wakes the rebinder to
    /// retry it when the stream's command queue is full.
    fn send_unbind(&self, table: &mut Table, stream: usize, binding_id: u64) {
        let Some(connected) = &table.streams[stream] else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) =
            connected.command(unbind_command(binding_id), &self.config.stats)
        {
            table.unsent_unbinds.push((stream, binding_id));
            self.rebind_wake.notify_one();
        }
    }

    async fn run_rebinder(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let next = self.sweep();
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.rebind_wake.notified() => {}
                () = wait => {}
            }
        }
    }

    /// Retries unsent unbinds and rebinds the lost bindings that are due; returns when
    /// the next one will be.
    fn sweep(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut table = self.table();
        for (stream, id) in std::mem::take(&mut table.unsent_unbinds) {
            self.send_unbind(&mut table, stream, id);
        }
        let Table {
            routes,
            lost,
            streams,
            unsent_unbinds,
        } = &mut *table;
        let mut next = (!unsent_unbinds.is_empty()).then(|| now + self.config.rebind_retry);
        let connected: Vec<usize> = (0..streams.len())
            .filter(|&i| streams[i].is_some())
            .collect();
        if connected.is_empty() || lost.is_empty() {
            return next;
        }
        let mut expired = Vec::new();
        let ids: Vec<u64> = lost.iter().copied().collect();
        for id in ids {
            let Some(route) = routes.get_mut(&id) else {
                lost.remove(&id);
                continue;
            };
            let Phase::Lost {
                retry_at,
                grace_until,
            } = route.phase
            else {
                lost.remove(&id);
                continue;
            };
            if retry_at > now {
                next = Some(next.map_or(retry_at, |n| n.min(retry_at)));
                continue;
            }
            if self
                .config
                .signing_key
                .verify(&route.reference, unix_now())
                .is_err()
            {
                expired.push(id);
                continue;
            }
            let stream = connected[usize::try_from(id).unwrap_or(0) % connected.len()];
            let sent = streams[stream].as_ref().is_some_and(|s| {
                s.command(
                    bind_command(id, &route.reference, false),
                    &self.config.stats,
                )
                .is_ok()
            });
            if sent {
                route.stream = stream;
                route.phase = Phase::Rebinding { grace_until };
                lost.remove(&id);
            } else {
                let retry_at = now + self.config.rebind_retry;
                route.phase = Phase::Lost {
                    retry_at,
                    grace_until,
                };
                next = Some(next.map_or(retry_at, |n| n.min(retry_at)));
            }
        }
        for id in expired {
            self.end(&mut table, id, UnboundReason::Expired);
        }
        next
    }
}

/// Why an `Attach` stream could not be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    /// A call failed.
    #[error(transparent)]
    Status(#[from] Status),
    /// The manager's catalogue is missing or unusable.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

/// Answers a client's pending bind with `error`.
fn fail_bind(conn: &ClientShared, binding_id: u64, error: GatewayError) {
    conn.deliver(Delivery::BindResult {
        binding_id,
        result: Err(error),
    });
}

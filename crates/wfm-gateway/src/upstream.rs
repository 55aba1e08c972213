//! The gateway's side of the workflow manager: a small pool of multiplexed `Attach` streams
//! over one gRPC channel, the routing table from binding ids to client connections, the
//! Service Monitor, and the rebinding of every session after a reconnect.
//!
//! Every binding has a gateway-wide id, so a binding keeps its id when it moves to another
//! stream after a loss. A stream that ends (manager restart, network loss) turns its
//! bindings into *lost* bindings and tells their clients `service.unavailable`; once any
//! stream is connected again the rebinder binds each lost session anew (`takeover=false`),
//! and its client gets `service.available` followed by the full state the manager sends.
//!
//! Locks: the routing table is taken before a connection's lock, never after, and no lock is
//! held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
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

use crate::connection::{Binding, ConnShared};
use crate::errors::{GatewayError, UnboundReason};
use crate::protocol::{self, ResourceData, ServiceInfo};
use crate::settings::GatewayConfig;

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
    conn: Arc<ConnShared>,
    reference: String,
    /// The stream the binding lives (or lived) on.
    stream: usize,
    phase: Phase,
}

#[derive(Default)]
struct Table {
    routes: HashMap<u64, Route>,
    lost: HashSet<u64>,
    /// The command sender of each connected stream.
    streams: Vec<Option<mpsc::UnboundedSender<pb::AttachRequest>>>,
}

/// Shared by every connection of a gateway.
pub(crate) struct Upstream {
    config: Arc<GatewayConfig>,
    channel: Channel,
    table: Mutex<Table>,
    /// Every open connection, for Service Monitor broadcasts.
    connections: Mutex<HashMap<u64, Arc<ConnShared>>>,
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
            streams: vec![None; config.upstream_streams],
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

    /// Adds a connection to the Service Monitor's audience.
    pub(crate) fn register(&self, conn: &Arc<ConnShared>) {
        let mut connections = lock(&self.connections);
        // Under the broadcast lock, so that the connection starts from the state that the
        // next broadcast compares against.
        conn.update(|s| s.service_available = self.is_ready());
        connections.insert(conn.id, Arc::clone(conn));
    }

    /// Removes a connection from the audience.
    pub(crate) fn deregister(&self, id: u64) {
        lock(&self.connections).remove(&id);
    }

    /// Sends a client's bind to the manager. The answer arrives on the connection's queue,
    /// and its binding state is `Binding` until then.
    pub(crate) fn bind(
        &self,
        conn: &Arc<ConnShared>,
        request_id: &str,
        reference: String,
        takeover: bool,
    ) -> Result<u64, GatewayError> {
        let mut table = self.table();
        let Table {
            routes, streams, ..
        } = &mut *table;
        let binding_id = self.next_binding.fetch_add(1, Ordering::Relaxed);
        let count = streams.len();
        let start = usize::try_from(binding_id).unwrap_or(0);
        let (stream, tx) = (0..count)
            .map(|k| (start + k) % count)
            .find_map(|i| streams[i].as_ref().map(|tx| (i, tx)))
            .ok_or(GatewayError::ServiceUnavailable)?;
        tx.send(bind_command(binding_id, &reference, takeover))
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
        conn.update(|s| {
            s.set_binding(Binding::Pending {
                binding_id,
                request_id: request_id.to_string(),
            });
        });
        Ok(binding_id)
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
        if !matches!(route.phase, Phase::Lost { .. })
            && let Some(tx) = &table.streams[route.stream]
        {
            let _ = tx.send(unbind_command(binding_id));
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
            if let Some(tx) = &table.streams[route.stream] {
                let _ = tx.send(unbind_command(binding_id));
            }
            fail_bind(&route.conn, binding_id, &GatewayError::UpstreamTimeout);
        }
    }

    async fn run_stream(self: Arc<Self>, index: usize, stop: CancellationToken) {
        let mut delay = self.config.reconnect_initial;
        let jitter = RandomState::new();
        let mut attempt: u64 = 0;
        loop {
            let opened = tokio::select! {
                () = stop.cancelled() => return,
                opened = tokio::time::timeout(self.config.request_timeout, self.open(index)) => opened,
            };
            match opened {
                Ok(Ok(mut inbound)) => {
                    tracing::info!(stream = index, "attach stream connected");
                    delay = self.config.reconnect_initial;
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
                Ok(Err(status)) => {
                    tracing::debug!(stream = index, %status, "cannot open attach stream");
                }
                Err(_) => tracing::debug!(stream = index, "opening attach stream timed out"),
            }
            // Full jitter in [delay/2, delay], so that gateways do not reconnect in lockstep.
            attempt += 1;
            let spread = delay.as_millis().max(1) as u64 / 2;
            let pause = delay
                .saturating_sub(Duration::from_millis(spread))
                .saturating_add(Duration::from_millis(
                    jitter.hash_one((index, attempt)) % (spread + 1),
                ));
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            delay = (delay * 2).min(self.config.reconnect_max);
        }
    }

    /// Checks health, refreshes the service information and opens one `Attach` stream.
    async fn open(&self, index: usize) -> Result<Streaming<pb::AttachResponse>, Status> {
        let health = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: HEALTH_SERVICE.to_string(),
            })
            .await?
            .into_inner();
        if health.status() != ServingStatus::Serving {
            return Err(Status::unavailable("workflow manager is not serving"));
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
        let (tx, rx) = mpsc::unbounded_channel();
        let inbound = client
            .attach(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        self.stream_up(index, tx);
        Ok(inbound)
    }

    fn stream_up(&self, index: usize, tx: mpsc::UnboundedSender<pb::AttachRequest>) {
        let first = {
            let mut table = self.table();
            table.streams[index] = Some(tx);
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
    /// the rebinder, and the client hears `service.unavailable`.
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
                    fail_bind(&route.conn, id, &error);
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
        route.conn.update(|s| {
            if s.service_available {
                s.service_available = false;
                s.push_control(protocol::service_event(false, None));
            }
        });
        table.lost.insert(id);
    }

    /// Tells every connection that is not bound whether the manager is reachable; bound
    /// ones hear it with their binding's loss and rebind.
    fn broadcast(&self) {
        let connections = lock(&self.connections);
        let available = self.is_ready();
        let (info, _) = self.service();
        for conn in connections.values() {
            conn.update(|s| {
                if !matches!(s.binding, Binding::Bound { .. }) && s.service_available != available {
                    s.service_available = available;
                    s.push_control(protocol::service_event(available, info.as_ref()));
                }
            });
        }
    }

    fn on_response(&self, index: usize, message: pb::AttachResponse) {
        let Some(kind) = message.kind else {
            return;
        };
        let id = message.binding_id;
        let now = Instant::now();
        let mut table = self.table();
        let Some(route) = table.routes.get_mut(&id) else {
            // A binding the client has already released; the manager's answer is moot.
            return;
        };
        if route.stream != index {
            return;
        }
        match (kind, route.phase) {
            (Kind::BindResult(result), Phase::Binding) => {
                if result.code == Code::Ok as i32 {
                    route.phase = Phase::Bound;
                    route.conn.update(|s| {
                        if let Binding::Pending {
                            binding_id,
                            request_id,
                        } = &s.binding
                            && *binding_id == id
                        {
                            let response = protocol::success(
                                request_id,
                                "bindResource",
                                &ResourceData::session(&result.session_id),
                            );
                            s.push_control(response);
                            s.set_binding(Binding::Bound {
                                binding_id: id,
                                session_id: result.session_id,
                            });
                        }
                    });
                } else if let Some(route) = table.routes.remove(&id) {
                    tracing::debug!(binding_id = id, code = result.code, message = %result.message, "bind refused");
                    let error = GatewayError::from_bind_code(Code::from_i32(result.code));
                    fail_bind(&route.conn, id, &error);
                }
            }
            (Kind::BindResult(result), Phase::Rebinding { grace_until }) => {
                let code = Code::from_i32(result.code);
                match code {
                    Code::Ok => {
                        tracing::info!(binding_id = id, session_id = %result.session_id, "session rebound");
                        route.phase = Phase::Bound;
                        let (info, _) = self.service();
                        route.conn.update(|s| {
                            if !s.service_available {
                                s.service_available = true;
                                s.push_control(protocol::service_event(true, info.as_ref()));
                            }
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
                            self.end(&mut table, id, UnboundReason::SessionEnded);
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
                        self.end(&mut table, id, UnboundReason::from_rebind_code(code));
                    }
                }
            }
            (Kind::StateUpdated(event), Phase::Bound) => {
                route.conn.update(|s| {
                    if s.binding.id() == Some(id) {
                        s.push_state(event);
                    }
                });
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
                        self.lose(
                            &mut table,
                            id,
                            now,
                            retry_at,
                            GatewayError::ServiceUnavailable,
                        );
                        self.rebind_wake.notify_one();
                    }
                    (_, Some(reason)) => self.end(&mut table, id, reason),
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
        let available = self.is_ready();
        let (info, _) = self.service();
        route.conn.update(|s| {
            let Binding::Bound {
                binding_id,
                session_id,
            } = &s.binding
            else {
                return;
            };
            if *binding_id != id {
                return;
            }
            s.push_control(protocol::resource_unbound(session_id, reason));
            s.set_binding(Binding::Unbound);
            // Unbound now, the client follows the Service Monitor like any other.
            if s.service_available != available {
                s.service_available = available;
                s.push_control(protocol::service_event(available, info.as_ref()));
            }
        });
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

    /// Rebinds the lost bindings that are due; returns when the next one will be.
    fn sweep(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut table = self.table();
        let Table {
            routes,
            lost,
            streams,
        } = &mut *table;
        let connected: Vec<usize> = (0..streams.len())
            .filter(|&i| streams[i].is_some())
            .collect();
        if connected.is_empty() || lost.is_empty() {
            return None;
        }
        let mut next: Option<Instant> = None;
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
            let sent = streams[stream]
                .as_ref()
                .is_some_and(|tx| tx.send(bind_command(id, &route.reference, false)).is_ok());
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

/// Answers a client's pending bind with `error` and leaves the connection unbound.
fn fail_bind(conn: &ConnShared, id: u64, error: &GatewayError) {
    conn.update(|s| {
        if let Binding::Pending {
            binding_id,
            request_id,
        } = &s.binding
            && *binding_id == id
        {
            let response = protocol::failure(request_id, "bindResource", error);
            s.push_control(response);
            s.set_binding(Binding::Unbound);
        }
    });
}

//! The gateway's side of the workflow manager: a small pool of multiplexed `Attach` streams
//! per manager endpoint (see `endpoints`), the routing table from binding ids to client
//! connections, the Service Monitor, and the rebinding of every session after a reconnect.
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
//! Replicas: a bind goes to the endpoint of the replica that owns the session when the
//! owner cache knows it and it is connected, else to any connected stream. A replica that
//! does not own the session answers `UNAVAILABLE` with the owner's URL; the same bind
//! (same binding id and takeover flag) then goes there, at most [`MAX_REDIRECTS`] times
//! per attempt, waiting up to the request timeout for a new endpoint to connect. A session
//! that moves away (`MOVED`) is handled as a lost stream whose rebind is due at once, at
//! the new owner when the notice names it. Every bind carries the binder id
//! `<instance>/<binding id>`, stable across rebinds, so that the new owner recognises the
//! binder and needs no takeover. With a single manager all of this is inert.
//!
//! Queues: each stream's commands to the manager wait in a channel of
//! [`COMMAND_QUEUE`]; a bind that finds it full fails with `serviceUnavailable`, an unbind
//! is kept and retried by the rebinder. Events from the manager are handed to the
//! connections as they arrive, where they are conflated per target.
//!
//! Locks: the routing table is taken before a connection's lock, which is a leaf lock; no
//! lock is held across an `.await`.
//!
//! Its parts: `stream` (one stream's task), `replicas` (endpoints, redirects, moves),
//! `rebind` (the rebinder's sweep) and `commands` (MediaBar commands awaiting answers).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Code;
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;

mod commands;
mod rebind;
mod replicas;
mod stream;

pub(crate) use commands::CommandOrder;

use replicas::allocate;

use crate::catalogue::Catalogue;
use crate::client::ClientShared;
use crate::delivery::{Availability, Delivery, ServiceInfo, StateDelivery};
use crate::endpoints::{self, Endpoints, OwnerCache};
use crate::errors::{GatewayError, ManagerUnbound, UnboundReason};
use crate::settings::GatewayConfig;
use crate::stats::GatewayStats;

/// Commands that may wait for one `Attach` stream to the manager.
pub(crate) const COMMAND_QUEUE: usize = 1024;

/// Redirects one bind attempt follows before the manager counts as unavailable, so that
/// replicas disagreeing about an owner cannot bounce a bind forever.
pub(crate) const MAX_REDIRECTS: u8 = 3;

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
    /// The session the verified reference names: the owner cache's key.
    session: String,
    /// The client's takeover flag, which a redirected first bind keeps.
    takeover: bool,
    /// The stream slot the binding lives (or lived) on; `None` while parked.
    stream: Option<usize>,
    /// Redirects followed by the current bind attempt.
    redirects: u8,
    /// A redirected bind waiting for its owner's endpoint to connect: the endpoint, and
    /// when to give up on it.
    parked: Option<(usize, Instant)>,
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

/// A stream slot of an endpoint, connected or not.
struct Slot {
    endpoint: usize,
    stream: Option<Stream>,
}

#[derive(Default)]
struct Table {
    routes: HashMap<u64, Route>,
    lost: HashSet<u64>,
    /// Bindings whose route is parked.
    parked: HashSet<u64>,
    /// Every stream slot of every endpoint ever active; retired slots stay empty.
    slots: Vec<Slot>,
    endpoints: Endpoints,
    owners: OwnerCache,
    /// Unbinds that found their stream's command queue full: (slot, binding id).
    unsent_unbinds: Vec<(usize, u64)>,
    /// MediaBar commands waiting for the manager's answer, by request id.
    commands: HashMap<u64, commands::PendingCommand>,
}

impl Table {
    fn is_active(&self, endpoint: usize) -> bool {
        self.endpoints.get(endpoint).is_some_and(|e| e.active)
    }

    /// A connected slot of `endpoint`, spread by binding id.
    fn slot_of(&self, endpoint: usize, binding_id: u64) -> Option<usize> {
        let slots = &self.endpoints.get(endpoint).filter(|e| e.active)?.slots;
        spread(slots.len(), binding_id)
            .map(|k| slots[k])
            .find(|&slot| self.slots[slot].stream.is_some())
    }

    /// Any connected slot of an active endpoint, spread by binding id.
    fn any_slot(&self, binding_id: u64) -> Option<usize> {
        spread(self.slots.len(), binding_id).find(|&slot| {
            self.slots[slot].stream.is_some() && self.is_active(self.slots[slot].endpoint)
        })
    }

    /// The slot a bind of `session` goes to: the owner's if known and connected, else any.
    fn pick(&self, session: &str, binding_id: u64) -> Option<usize> {
        self.owners
            .get(session)
            .and_then(|owner| self.slot_of(owner, binding_id))
            .or_else(|| self.any_slot(binding_id))
    }
}

/// The indices `0..count` starting at one chosen by `binding_id`, so that bindings spread
/// over the streams.
fn spread(count: usize, binding_id: u64) -> impl Iterator<Item = usize> {
    let start = usize::try_from(binding_id).unwrap_or(0);
    (0..count).map(move |k| (start.wrapping_add(k)) % count)
}

/// Shared by every connection of a gateway.
pub(crate) struct Upstream {
    config: Arc<GatewayConfig>,
    table: Mutex<Table>,
    /// Every open connection, for Service Monitor broadcasts.
    connections: Mutex<HashMap<u64, Arc<ClientShared>>>,
    info: RwLock<Option<ServiceInfo>>,
    connected: AtomicUsize,
    rebind_wake: Notify,
    next_binding: AtomicU64,
    next_command: AtomicU64,
    /// This process's part of every binder id.
    instance: String,
    /// Where stream tasks run, once [`Upstream::spawn`] has started them.
    runtime: OnceLock<(TaskTracker, CancellationToken)>,
}

fn bind_command(
    binding_id: u64,
    reference: &str,
    takeover: bool,
    binder_id: String,
) -> pb::AttachRequest {
    pb::AttachRequest {
        kind: Some(pb::attach_request::Kind::Bind(pb::AttachBind {
            binding_id,
            resource_reference: reference.to_string(),
            takeover,
            binder_id,
        })),
    }
}

/// 16 hex characters, random per process.
fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Without OS randomness, time and pid still tell this process from its predecessor.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ u64::from(std::process::id()).rotate_left(32)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unbind_command(binding_id: u64) -> pb::AttachRequest {
    pb::AttachRequest {
        kind: Some(pb::attach_request::Kind::Unbind(pb::AttachUnbind {
            binding_id,
        })),
    }
}

impl Upstream {
    /// An upstream to the URLs of `config.manager_url`; nothing connects until
    /// [`Upstream::spawn`].
    pub(crate) fn new(config: Arc<GatewayConfig>) -> Result<Arc<Self>, tonic::transport::Error> {
        let mut table = Table::default();
        for url in config.manager_urls() {
            if table.endpoints.find(&url).is_some() {
                continue;
            }
            let channel = endpoints::channel(&url, &config)?;
            if let Some(endpoint) = table.endpoints.insert(&url, channel) {
                allocate(&mut table, endpoint, config.upstream_streams);
                if let Some(seed) = table.endpoints.get_mut(endpoint) {
                    seed.seed = true;
                }
            }
        }
        config
            .stats
            .upstream_endpoints
            .set(table.endpoints.active() as i64);
        Ok(Arc::new(Self {
            config,
            table: Mutex::new(table),
            connections: Mutex::default(),
            info: RwLock::default(),
            connected: AtomicUsize::new(0),
            rebind_wake: Notify::new(),
            next_binding: AtomicU64::new(1),
            next_command: AtomicU64::new(1),
            instance: instance_id(),
            runtime: OnceLock::new(),
        }))
    }

    /// Starts the stream tasks, the rebinder and, in a cluster, the discovery of replicas
    /// on `tracker`; they stop with `stop`.
    pub(crate) fn spawn(self: &Arc<Self>, tracker: &TaskTracker, stop: &CancellationToken) {
        {
            // Under the table lock, so that an endpoint activated meanwhile is started once.
            let table = self.table();
            if self.runtime.set((tracker.clone(), stop.clone())).is_err() {
                return;
            }
            for (_, endpoint) in table.endpoints.iter().filter(|(_, e)| e.active) {
                self.spawn_streams(endpoint);
            }
        }
        tracker.spawn(Arc::clone(self).run_rebinder(stop.clone()));
        let servers = self.config.nats_urls();
        if !servers.is_empty() {
            tracker.spawn(endpoints::discover(Arc::clone(self), servers, stop.clone()));
        }
    }

    /// The gateway's config.
    pub(crate) fn config(&self) -> &Arc<GatewayConfig> {
        &self.config
    }

    fn binder_id(&self, binding_id: u64) -> String {
        format!("{}/{binding_id}", self.instance)
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

    /// Sends a client's bind for `session` (which the verified `reference` names) to the
    /// manager; the answer arrives as a [`Delivery::BindResult`].
    pub(crate) fn bind(
        &self,
        conn: &Arc<ClientShared>,
        binding_id: u64,
        reference: String,
        session: String,
        takeover: bool,
    ) -> Result<(), GatewayError> {
        let mut guard = self.table();
        let table = &mut *guard;
        let slot = table
            .pick(&session, binding_id)
            .ok_or(GatewayError::ServiceUnavailable)?;
        table.routes.insert(
            binding_id,
            Route {
                conn: Arc::clone(conn),
                reference,
                session,
                takeover,
                stream: None,
                redirects: 0,
                parked: None,
                phase: Phase::Binding,
            },
        );
        if self.send_bind(table, binding_id, slot) {
            Ok(())
        } else {
            table.routes.remove(&binding_id);
            Err(GatewayError::ServiceUnavailable)
        }
    }

    /// Sends the binding's bind on `slot` (with the client's takeover flag for a first
    /// bind, without for a rebind); false if the stream is gone or its queue is full.
    fn send_bind(&self, table: &mut Table, binding_id: u64, slot: usize) -> bool {
        let Some(route) = table.routes.get_mut(&binding_id) else {
            return false;
        };
        let takeover = route.takeover && matches!(route.phase, Phase::Binding);
        let command = bind_command(
            binding_id,
            &route.reference,
            takeover,
            self.binder_id(binding_id),
        );
        let sent = table.slots[slot]
            .stream
            .as_ref()
            .is_some_and(|s| s.command(command, &self.config.stats).is_ok());
        if sent {
            route.stream = Some(slot);
            route.parked = None;
        }
        sent
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
        table.parked.remove(&binding_id);
        if !matches!(route.phase, Phase::Lost { .. })
            && let Some(stream) = route.stream
        {
            self.send_unbind(&mut table, stream, binding_id);
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
        table.parked.remove(&binding_id);
        if let Some(route) = table.routes.remove(&binding_id) {
            if let Some(stream) = route.stream {
                self.send_unbind(&mut table, stream, binding_id);
            }
            fail_bind(&route.conn, binding_id, GatewayError::UpstreamTimeout);
        }
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
                table.parked.remove(&id);
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
        route.parked = None;
        table.parked.remove(&id);
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

    fn on_response(self: &Arc<Self>, index: usize, message: pb::AttachResponse) {
        let Some(kind) = message.kind else {
            return;
        };
        let kind = match kind {
            Kind::CommandOutcome(outcome) => return self.on_outcome(index, outcome),
            other => other,
        };
        let id = message.binding_id;
        let now = Instant::now();
        let mut guard = self.table();
        let table = &mut *guard;
        let Some(route) = table.routes.get_mut(&id) else {
            // A binding the client has already released; the manager's answer is moot.
            return;
        };
        if route.stream != Some(index) {
            return;
        }
        let endpoint = table.slots[index].endpoint;
        match (kind, route.phase) {
            (Kind::State(state), Phase::Bound) => {
                let Some(stream) = &table.slots[index].stream else {
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
                    gone: state.gone,
                };
                route.conn.deliver(Delivery::State {
                    binding_id: id,
                    state,
                });
            }
            (Kind::BindResult(result), Phase::Binding | Phase::Rebinding { .. })
                if result.code == Code::Unavailable as i32 && !result.owner_url.is_empty() =>
            {
                tracing::debug!(binding_id = id, owner = %result.owner_url, "bind redirected to the owner replica");
                self.redirect(table, id, &result.owner_url, now);
            }
            (Kind::BindResult(result), Phase::Binding) => {
                if result.code == Code::Ok as i32 {
                    route.phase = Phase::Bound;
                    table.owners.insert(&route.session, endpoint);
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
                        table.owners.insert(&route.session, endpoint);
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
                    Code::Unavailable => self.unavailable(table, id, now),
                    _ => {
                        tracing::info!(binding_id = id, ?code, message = %result.message, "rebind refused");
                        self.end(table, id, UnboundReason::from_rebind_code(code));
                    }
                }
            }
            (Kind::Unbound(unbound), Phase::Bound | Phase::Binding) => {
                match UnboundReason::from_manager(unbound.reason()) {
                    ManagerUnbound::RebindLater => {
                        let retry_at = now + self.config.rebind_retry;
                        self.lose(table, id, now, retry_at, GatewayError::ServiceUnavailable);
                        self.rebind_wake.notify_one();
                    }
                    ManagerUnbound::RebindNow => self.moved(table, id, &unbound.owner_url, now),
                    ManagerUnbound::Ends(reason) => self.end(table, id, reason),
                    ManagerUnbound::Released => {}
                }
            }
            _ => {}
        }
    }

    /// Ends a binding for good and tells its client why.
    fn end(&self, table: &mut Table, id: u64, reason: UnboundReason) {
        table.lost.remove(&id);
        table.parked.remove(&id);
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
        let Some(connected) = &table.slots[stream].stream else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) =
            connected.command(unbind_command(binding_id), &self.config.stats)
        {
            table.unsent_unbinds.push((stream, binding_id));
            self.rebind_wake.notify_one();
        }
    }
}

/// Answers a client's pending bind with `error`.
fn fail_bind(conn: &ClientShared, binding_id: u64, error: GatewayError) {
    conn.deliver(Delivery::BindResult {
        binding_id,
        result: Err(error),
    });
}

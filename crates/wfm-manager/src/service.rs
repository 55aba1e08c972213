//! The `wfm.v1.WorkflowManager` gRPC service: a thin shell that converts wire messages,
//! calls the registry, and turns errors into statuses.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};
use wfm_proto::ATTACH_WIRE_VERSION;
use wfm_proto::v1 as pb;
use wfm_reference::Claims;
use wfm_telemetry::KeyValue;
use wfm_telemetry::metrics::{Gauge, GaugeGuard};

use crate::cluster::{Cluster, MAX_ROUTES, Peer, Route, is_forwarded};
use crate::commands::{self, CommandFailure, Processors};
use crate::config::ManagerConfig;
use crate::convert;
use crate::error::ManagerError;
use crate::outbox::{self, Bound, Outgoing, Trace, UnboundReason};
use crate::registry::{Created, NewSession, Registry, Sink};
use crate::streams::{AttachStream, BindingStream};

/// Responses a `PushUpdates` stream may queue before it stops reading updates.
const PUSH_QUEUE: usize = 64;
/// Commands one `Attach` stream may have waiting for their processors' answers.
const MAX_COMMANDS_IN_FLIGHT: usize = 1024;

/// The gRPC service; clones share everything.
#[derive(Clone)]
pub(crate) struct WorkflowManagerService {
    registry: Arc<Registry>,
    /// The identity of this manager's store of sessions (`manager_instance`).
    instance: Arc<str>,
    config: Arc<ManagerConfig>,
    /// Cluster mode: routes calls for sessions this replica does not hold.
    cluster: Option<Arc<Cluster>>,
    /// Cancelled once every binder has been told the server is shutting down.
    streams_stop: CancellationToken,
    /// The Interaction Processors' command streams connected here.
    processors: Arc<Processors>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl WorkflowManagerService {
    /// A service over `registry` that ends its streams when `streams_stop` is cancelled.
    pub(crate) fn new(
        registry: Arc<Registry>,
        instance: Arc<str>,
        config: ManagerConfig,
        cluster: Option<Arc<Cluster>>,
        streams_stop: CancellationToken,
    ) -> Self {
        let processors = Arc::new(Processors::new(
            config.command_timeout,
            Arc::clone(&config.stats),
        ));
        Self {
            registry,
            instance,
            config: Arc::new(config),
            cluster,
            streams_stop,
            processors,
        }
    }

    /// Serves a call for `session_id` `here`, or, in cluster mode, wherever the session
    /// lives: `here` again once this replica has loaded or taken the session over, or
    /// `there` at the owning replica. A forwarded call the owner refuses as unavailable is
    /// routed afresh, a few times.
    async fn routed<T, F>(
        &self,
        session_id: &str,
        metadata: &MetadataMap,
        mut here: impl FnMut() -> Result<T, ManagerError>,
        mut there: impl FnMut(Peer) -> F,
    ) -> Result<T, ManagerError>
    where
        F: Future<Output = Result<T, ManagerError>>,
    {
        let Some(cluster) = &self.cluster else {
            return here();
        };
        let forwarded = is_forwarded(metadata);
        let mut refused = None;
        for _ in 0..MAX_ROUTES {
            match here() {
                Err(error) if Cluster::routable(&error) => {}
                other => return other,
            }
            match cluster.route(session_id, forwarded).await? {
                Route::Local => continue,
                Route::Peer(peer) => {
                    self.config.stats.forwarded.inc();
                    match there(peer).await {
                        Err(error) if is_unavailable_peer(&error) => {
                            cluster.forget_owner(session_id);
                            refused = Some(error);
                        }
                        result => return result,
                    }
                }
            }
        }
        Err(refused.unwrap_or_else(|| ManagerError::Moved(session_id.to_string())))
    }

    /// `message` as a call forwarded to another replica.
    fn forward<T>(&self, message: T) -> Request<T> {
        match &self.cluster {
            Some(cluster) => cluster.forward_request(message),
            None => Request::new(message),
        }
    }

    fn verify(&self, reference: &str) -> Result<Claims, ManagerError> {
        Ok(self.config.signing_key.verify(reference, unix_now())?)
    }

    /// Binds `sink`; in cluster mode, a session another replica owns is refused with
    /// [`ManagerError::NotOwner`], naming where to bind.
    async fn bind(
        &self,
        reference: &str,
        takeover: bool,
        binder_id: &str,
        sink: Sink,
        announce: bool,
    ) -> Result<Bound, ManagerError> {
        let claims = self.verify(reference)?;
        let bound = self
            .routed(
                &claims.session_id,
                &MetadataMap::new(),
                || {
                    self.registry
                        .bind(&claims, takeover, binder_id, sink.clone(), announce)
                },
                |peer| std::future::ready(Err(ManagerError::NotOwner(peer.url.to_string()))),
            )
            .await?;
        tracing::info!(session_id = %claims.session_id, takeover, "session bound");
        Ok(bound)
    }

    /// Carries out a bound client's command and counts its outcome; `bound` is the
    /// binding the command names, if its stream holds one.
    async fn command(
        &self,
        bound: Option<Bound>,
        command: pb::AttachCommand,
    ) -> pb::CommandOutcome {
        let request_id = command.request_id;
        let result = self.run_command(bound, command).await;
        if let Err(error) = &result {
            tracing::debug!(%error, "command not carried out");
        }
        let outcome = commands::outcome(request_id, result);
        self.config.stats.command(outcome.status());
        outcome
    }

    async fn run_command(
        &self,
        bound: Option<Bound>,
        command: pb::AttachCommand,
    ) -> commands::CommandResult {
        let bound = bound.ok_or(CommandFailure::NotBound)?;
        commands::check_arguments(&command.arguments)?;
        let processor_id =
            self.registry
                .check_command(&bound, &command.target, &command.capability)?;
        if processor_id.is_empty() {
            return Err(CommandFailure::ProcessorUnavailable(
                "the session names no Interaction Processor (it was created without processor_id)"
                    .to_string(),
            ));
        }
        let wire = pb::Command {
            command_id: 0,
            session_id: bound.session_id.to_string(),
            target: command.target,
            capability: command.capability,
            arguments: command.arguments,
            deadline_ms: 0,
        };
        if let Some(cluster) = &self.cluster
            && !self.processors.is_connected(&processor_id)
        {
            return cluster
                .relay(&processor_id, wire, self.processors.timeout())
                .await;
        }
        self.processors
            .send(&processor_id, wire)
            .await
            .unwrap_or_else(|| {
                Err(CommandFailure::ProcessorUnavailable(format!(
                    "no Interaction Processor named {processor_id} is connected"
                )))
            })
    }

    /// Applies one update here.
    fn apply_here(
        &self,
        request: pb::ApplyUpdateRequest,
        trace: Option<&Trace>,
    ) -> Result<pb::UpdateAck, ManagerError> {
        let (session_id, sequence) = (request.session_id, request.sequence);
        convert::update(request.update)
            .and_then(|update| self.registry.apply(&session_id, sequence, update, trace))
            .map(|ack| pb::UpdateAck {
                session_id,
                sequence,
                duplicate: ack.duplicate,
                view_version: ack.view_version,
                events: u32::try_from(ack.events).unwrap_or(u32::MAX),
                manager_instance: self.instance.to_string(),
            })
    }

    /// The incarnation a recreated session resumes, from its `resume_reference`: none for
    /// a new session, or when that reference does not verify here (expired, or signed with
    /// a key this manager does not hold): no client could rebind with it anyway, and the
    /// session is still recreated, under a new incarnation.
    fn resumed(&self, request: &pb::CreateSessionRequest) -> Result<Option<u64>, ManagerError> {
        if request.resume_reference.is_empty() {
            return Ok(None);
        }
        let Ok(claims) = self.verify(&request.resume_reference) else {
            tracing::info!(session_id = %request.session_id, "resume_reference does not verify here; the session gets a new incarnation");
            return Ok(None);
        };
        if claims.session_id != request.session_id || claims.agent_id != request.agent_id {
            return Err(ManagerError::ResumeOtherSession);
        }
        Ok(Some(claims.incarnation))
    }

    /// Applies one update, here or at its session's owner; `metadata` is the call's (or
    /// the stream's), for its trace context.
    async fn apply(
        &self,
        request: pb::ApplyUpdateRequest,
        metadata: &MetadataMap,
    ) -> Result<pb::UpdateAck, ManagerError> {
        let received = Instant::now();
        let (session_id, sequence) = (request.session_id.clone(), request.sequence);
        let stats = &self.config.stats;
        // Disabled (no OTLP endpoint), this is one branch and the events carry no context.
        let span = self
            .config
            .tracer
            .server_span("wfm.manager.apply_update", metadata, || {
                vec![
                    KeyValue::new("wfm.session_id", session_id.clone()),
                    KeyValue::new("wfm.sequence", sequence as i64),
                ]
            });
        let trace = span.as_ref().map(|s| Arc::new(s.trace_context()));
        // Whether this replica applied the update itself: one forwarded to the owner is
        // counted there, so that `updates_applied` summed over replicas counts each update
        // once, and a replica that lost its sessions shows that it applies nothing.
        let here = AtomicBool::new(self.cluster.is_none());
        let result = if self.cluster.is_none() {
            self.apply_here(request, trace.as_ref())
        } else {
            self.routed(
                &session_id,
                metadata,
                || {
                    let result = self.apply_here(request.clone(), trace.as_ref());
                    here.store(result.is_ok(), Ordering::Relaxed);
                    result
                },
                |mut peer| {
                    let request = self.forward(request.clone());
                    async move {
                        match peer.client.apply_update(request).await {
                            Ok(ack) => Ok(ack.into_inner()),
                            Err(status) => Err(ManagerError::Peer(status)),
                        }
                    }
                },
            )
            .await
        };
        match &result {
            Ok(_) if !here.load(Ordering::Relaxed) => {}
            Ok(ack) if ack.duplicate => stats.updates_duplicate.inc(),
            Ok(ack) => {
                stats.updates_applied.inc();
                if ack.events > 0 {
                    stats.update_to_event.observe(received.elapsed());
                }
                if let Some(span) = &span {
                    span.set_attribute(KeyValue::new("wfm.events", i64::from(ack.events)));
                }
            }
            Err(error) => {
                stats.rejected(error.reason());
                if let Some(span) = &span {
                    span.set_error(error.to_string());
                }
                tracing::info!(%session_id, sequence, %error, "update refused");
            }
        }
        result
    }
}

/// Serves one `Attach` stream's commands until the client goes away or the server stops.
async fn serve_attach(
    service: WorkflowManagerService,
    mut inbound: Streaming<pb::AttachRequest>,
    tx: outbox::Sender,
    stop: CancellationToken,
) {
    use pb::attach_request::Kind as Command;
    let mut bindings = StreamBindings::new(service.config.stats.attach_bindings.clone());
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_COMMANDS_IN_FLIGHT));
    loop {
        // Backpressure: no command is read while the stream's queue is full, so a gateway
        // that stops reading cannot make the manager queue bind results without bound.
        tokio::select! {
            () = stop.cancelled() => break,
            () = tx.wait_for_room() => {}
        }
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = inbound.message() => message,
        };
        let command = match message {
            Ok(Some(pb::AttachRequest {
                kind: Some(command),
            })) => command,
            Ok(Some(pb::AttachRequest { kind: None })) => {
                tracing::debug!("attach command without a kind ignored");
                continue;
            }
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(%status, "attach stream failed");
                break;
            }
        };
        match command {
            Command::Bind(bind) => {
                if let Some(previous) = bindings.remove(bind.binding_id) {
                    service.registry.release(&previous, None);
                }
                let sink = Sink::new(tx.clone(), bind.binding_id);
                let bound = service
                    .bind(
                        &bind.resource_reference,
                        bind.takeover,
                        &bind.binder_id,
                        sink,
                        true,
                    )
                    .await;
                match bound {
                    Ok(bound) => bindings.insert(bind.binding_id, bound, &service.registry),
                    Err(error) => tx.control(Outgoing::BindFailed {
                        binding_id: bind.binding_id,
                        error,
                    }),
                }
            }
            Command::Command(command) => {
                let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                    let failure = CommandFailure::ProcessorUnavailable(format!(
                        "{MAX_COMMANDS_IN_FLIGHT} commands are already in flight on this gateway's stream"
                    ));
                    let outcome = commands::outcome(command.request_id, Err(failure));
                    service.config.stats.command(outcome.status());
                    tx.control(Outgoing::CommandOutcome {
                        binding_id: command.binding_id,
                        outcome,
                    });
                    continue;
                };
                let bound = bindings.map.get(&command.binding_id).cloned();
                let (service, tx) = (service.clone(), tx.clone());
                tokio::spawn(async move {
                    let binding_id = command.binding_id;
                    let outcome = service.command(bound, command).await;
                    tx.control(Outgoing::CommandOutcome {
                        binding_id,
                        outcome,
                    });
                    drop(permit);
                });
            }
            Command::Unbind(unbind) => {
                if let Some(bound) = bindings.remove(unbind.binding_id) {
                    service
                        .registry
                        .release(&bound, Some(UnboundReason::Unbound));
                }
            }
        }
    }
    for bound in bindings.map.values() {
        service.registry.release(bound, None);
    }
}

/// The bindings made through one `Attach` stream, by the gateway's binding id.
///
/// A binding the manager ends itself (its session ended, another client took it over) gets
/// no unbind from the gateway, which already heard of the end: such entries are pruned once
/// the map has doubled since the last pruning, so that a stream open for days holds its
/// live bindings only, at an amortised constant cost per bind.
struct StreamBindings {
    map: HashMap<u64, Bound>,
    /// The size at which the next pruning runs.
    prune_at: usize,
    /// Entries held, over every stream (`wfm_manager_attach_bindings`).
    held: Gauge,
}

impl StreamBindings {
    /// Fewest entries before pruning is worth a pass.
    const MIN_PRUNE: usize = 64;

    fn new(held: Gauge) -> Self {
        Self {
            map: HashMap::new(),
            prune_at: Self::MIN_PRUNE,
            held,
        }
    }

    fn insert(&mut self, binding_id: u64, bound: Bound, registry: &Registry) {
        if self.map.insert(binding_id, bound).is_none() {
            self.held.inc();
        }
        if self.map.len() >= self.prune_at {
            let before = self.map.len();
            self.map.retain(|_, bound| registry.is_current(bound));
            self.map.shrink_to_fit();
            self.held.dec_by(gauge_delta(before - self.map.len()));
            self.prune_at = (2 * self.map.len()).max(Self::MIN_PRUNE);
        }
    }

    fn remove(&mut self, binding_id: u64) -> Option<Bound> {
        let bound = self.map.remove(&binding_id)?;
        self.held.dec();
        Some(bound)
    }
}

impl Drop for StreamBindings {
    fn drop(&mut self) {
        self.held.dec_by(gauge_delta(self.map.len()));
    }
}

/// A count as a gauge step.
fn gauge_delta(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// A `BindSession` stream: this replica's own, or the owner's passed through.
pub(crate) type BindSessionStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::BindSessionResponse, Status>> + Send>,
>;

/// Whether a forwarded call's refusal means the owner moved or is going: route again.
///
/// A call that timed out counts too (tonic's channel timeout answers `CANCELLED`): an
/// owner that hangs (paused, overloaded) still accepts connections, so without this the
/// cached owner would never be forgotten and every call for its sessions would time out
/// even after a peer took them over. Re-sending is safe: every forwarded call is
/// idempotent (a repeated update sequence is acknowledged as a duplicate).
fn is_unavailable_peer(error: &ManagerError) -> bool {
    matches!(error, ManagerError::Peer(status) if matches!(
        status.code(),
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
    ))
}

impl WorkflowManagerService {
    /// Cluster mode's `CreateSession`: the new session's record is claimed first; a session
    /// that exists elsewhere is re-issued by its owner (`Err` holds the owner's answer).
    async fn create_clustered(
        &self,
        cluster: &Cluster,
        request: &pb::CreateSessionRequest,
        who: &NewSession<'_>,
    ) -> Result<Result<Created, pb::CreateSessionResponse>, ManagerError> {
        let state = || convert::state(request.channels.clone(), request.interactions.clone());
        if self.registry.lookup(who.session_id).is_none() {
            let prepared = self.registry.prepare(who, state)?;
            if let Some(created) = cluster.create(prepared).await? {
                return Ok(Ok(created));
            }
        }
        let unknown = || ManagerError::UnknownSession(who.session_id.to_string());
        self.routed(
            who.session_id,
            &MetadataMap::new(),
            || {
                let existing = self.registry.existing(who.session_id, who.agent_id);
                existing.unwrap_or_else(|| Err(unknown())).map(Ok)
            },
            |mut peer| {
                let forwarded = self.forward(request.clone());
                async move {
                    match peer.client.create_session(forwarded).await {
                        Ok(response) => Ok(Err(response.into_inner())),
                        Err(status) => Err(ManagerError::Peer(status)),
                    }
                }
            },
        )
        .await
    }
}

#[tonic::async_trait]
impl pb::workflow_manager_server::WorkflowManager for WorkflowManagerService {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let request = request.into_inner();
        let who = NewSession {
            session_id: &request.session_id,
            agent_id: &request.agent_id,
            profile: &request.profile,
            agent_group: &request.agent_group,
            incarnation: self.resumed(&request)?,
            processor_id: &request.processor_id,
        };
        let created = match &self.cluster {
            None => self.registry.create(&who, || {
                convert::state(request.channels.clone(), request.interactions.clone())
            })?,
            Some(cluster) => match self.create_clustered(cluster, &request, &who).await? {
                Ok(created) => created,
                Err(forwarded) => return Ok(Response::new(forwarded)),
            },
        };
        let view_state = convert::view_state(&created.session_id, created.view_state);
        let expires_at = unix_now().saturating_add(self.config.reference_ttl.as_secs());
        let reference = self.config.signing_key.issue(
            created.session_id.as_str(),
            &created.agent_id,
            created.incarnation,
            expires_at,
        );
        tracing::info!(session_id = %created.session_id, agent_id = %created.agent_id, "session created");
        Ok(Response::new(pb::CreateSessionResponse {
            session_id: created.session_id.to_string(),
            resource_reference: reference,
            reference_expires_at: i64::try_from(expires_at).unwrap_or(i64::MAX),
            view_state,
            next_sequence: created.next_sequence,
            manager_instance: self.instance.to_string(),
        }))
    }

    async fn apply_update(
        &self,
        request: Request<pb::ApplyUpdateRequest>,
    ) -> Result<Response<pb::UpdateAck>, Status> {
        let metadata = request.metadata().clone();
        Ok(Response::new(
            self.apply(request.into_inner(), &metadata).await?,
        ))
    }

    type PushUpdatesStream = ReceiverStream<Result<pb::PushUpdatesResponse, Status>>;

    async fn push_updates(
        &self,
        request: Request<Streaming<pb::ApplyUpdateRequest>>,
    ) -> Result<Response<Self::PushUpdatesStream>, Status> {
        let (metadata, _, mut inbound) = request.into_parts();
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = service.streams_stop.cancelled() => {
                        // Not a clean end: the Interaction Processor is to carry on at
                        // another replica, or at this one once it is back.
                        let status = Status::unavailable("workflow manager is shutting down; retry");
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                    message = inbound.message() => message,
                };
                let request = match message {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(status) => {
                        // An oversized or undecodable message ends the stream with its
                        // status, not with OK: the IP must see why its updates stopped.
                        tracing::debug!(%status, "push stream failed");
                        if status.code() == tonic::Code::OutOfRange {
                            service.config.stats.messages_too_large.inc();
                        }
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let (session_id, sequence) = (request.session_id.clone(), request.sequence);
                let result = match service.apply(request, &metadata).await {
                    Ok(ack) => pb::push_updates_response::Result::Ack(ack),
                    Err(error) => pb::push_updates_response::Result::Error(pb::UpdateError {
                        code: error.code() as i32,
                        expected_sequence: error.expected_sequence().unwrap_or_default(),
                        message: error.to_string(),
                    }),
                };
                let response = pb::PushUpdatesResponse {
                    session_id,
                    sequence,
                    result: Some(result),
                };
                if tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let session_id = request.session_id.clone();
        let ended = self
            .routed(
                &session_id,
                &metadata,
                || self.registry.end(&session_id).map(Some),
                |mut peer| {
                    let forwarded = self.forward(request.clone());
                    async move {
                        match peer.client.end_session(forwarded).await {
                            Ok(_) => Ok(None),
                            Err(status) => Err(ManagerError::Peer(status)),
                        }
                    }
                },
            )
            .await?;
        if let (Some(cluster), Some(entry)) = (&self.cluster, ended) {
            cluster.end(&entry).await?;
        }
        tracing::info!(%session_id, "session ended");
        Ok(Response::new(pb::EndSessionResponse {}))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let session_id = &request.session_id;
        let view = self
            .routed(
                session_id,
                &metadata,
                || self.registry.get(session_id).map(convert::session_view),
                |mut peer| {
                    let forwarded = self.forward(request.clone());
                    async move {
                        match peer.client.get_session(forwarded).await {
                            Ok(response) => Ok(response.into_inner()),
                            Err(status) => Err(ManagerError::Peer(status)),
                        }
                    }
                },
            )
            .await?;
        Ok(Response::new(view))
    }

    type BindSessionStream = BindSessionStream;

    async fn bind_session(
        &self,
        request: Request<pb::BindSessionRequest>,
    ) -> Result<Response<Self::BindSessionStream>, Status> {
        let request = request.into_inner();
        let (tx, rx) = outbox::channel(self.config.stream_queue, Arc::clone(&self.config.stats));
        let bound = self
            .bind(
                &request.resource_reference,
                request.takeover,
                "",
                Sink::new(tx, 0),
                false,
            )
            .await;
        let bound = match (bound, &self.cluster) {
            (Ok(bound), _) => bound,
            (Err(ManagerError::NotOwner(url)), Some(cluster)) => {
                // The caller streams from the owner through this replica.
                let mut peer = cluster.peer(&url)?;
                self.config.stats.forwarded.inc();
                let forwarded = self.forward(request);
                let stream = peer.client.bind_session(forwarded).await?.into_inner();
                return Ok(Response::new(Box::pin(stream)));
            }
            (Err(error), _) => return Err(error.into()),
        };
        Ok(Response::new(Box::pin(BindingStream::new(
            rx,
            Arc::clone(&self.registry),
            bound,
            self.config.stats.attach_streams.track(),
        ))))
    }

    type AttachStream = AttachStream;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let wire = wfm_proto::attach_wire(request.metadata());
        if wire.and_then(|v| v.parse::<u32>().ok()) != Some(ATTACH_WIRE_VERSION) {
            return Err(ManagerError::AttachWireVersion(wire.map(str::to_string)).into());
        }
        let (tx, rx) = outbox::channel(self.config.stream_queue, Arc::clone(&self.config.stats));
        let stop = self.streams_stop.child_token();
        tokio::spawn(serve_attach(
            self.clone(),
            request.into_inner(),
            tx,
            stop.clone(),
        ));
        let open: GaugeGuard = self.config.stats.attach_streams.track();
        Ok(Response::new(AttachStream::new(
            rx,
            Arc::clone(&self.registry),
            stop.drop_guard(),
            open,
        )))
    }

    type ReceiveCommandsStream = commands::CommandStream;

    async fn receive_commands(
        &self,
        request: Request<Streaming<pb::ProcessorMessage>>,
    ) -> Result<Response<Self::ReceiveCommandsStream>, Status> {
        let stream = commands::serve(
            Arc::clone(&self.processors),
            self.cluster.clone(),
            request.into_inner(),
            self.streams_stop.child_token(),
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn get_service_info(
        &self,
        _request: Request<pb::GetServiceInfoRequest>,
    ) -> Result<Response<pb::ServiceInfo>, Status> {
        Ok(Response::new(pb::ServiceInfo {
            vendor: self.config.vendor.clone(),
            version: self.config.version.clone(),
            service_type: "WorkflowManager".to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_call_that_timed_out_is_routed_again_like_one_refused_as_unavailable() {
        let peer = |status: Status| ManagerError::Peer(status);
        assert!(is_unavailable_peer(&peer(Status::unavailable("going"))));
        assert!(is_unavailable_peer(&peer(Status::cancelled(
            "Timeout expired"
        ))));
        assert!(is_unavailable_peer(&peer(Status::deadline_exceeded(
            "late"
        ))));
        assert!(!is_unavailable_peer(&peer(Status::not_found("nobody"))));
        assert!(!is_unavailable_peer(&peer(Status::failed_precondition(
            "gap"
        ))));
        assert!(!is_unavailable_peer(&ManagerError::Store("down".into())));
    }
}

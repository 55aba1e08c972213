//! The `wfm.v1.WorkflowManager` gRPC service: a thin shell that converts wire messages,
//! calls the registry, and turns errors into statuses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use wfm_proto::ATTACH_WIRE_VERSION;
use wfm_proto::v1 as pb;
use wfm_reference::Claims;
use wfm_telemetry::KeyValue;
use wfm_telemetry::metrics::GaugeGuard;

use crate::config::ManagerConfig;
use crate::convert;
use crate::error::ManagerError;
use crate::outbox::{self, Bound, Outgoing, UnboundReason};
use crate::registry::{NewSession, Registry, Sink};
use crate::streams::{AttachStream, BindingStream};

/// Responses a `PushUpdates` stream may queue before it stops reading updates.
const PUSH_QUEUE: usize = 64;

/// The gRPC service; clones share everything.
#[derive(Clone)]
pub(crate) struct WorkflowManagerService {
    registry: Arc<Registry>,
    config: Arc<ManagerConfig>,
    /// Cancelled once every binder has been told the server is shutting down.
    streams_stop: CancellationToken,
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
        config: ManagerConfig,
        streams_stop: CancellationToken,
    ) -> Self {
        Self {
            registry,
            config: Arc::new(config),
            streams_stop,
        }
    }

    fn verify(&self, reference: &str) -> Result<Claims, ManagerError> {
        Ok(self.config.signing_key.verify(reference, unix_now())?)
    }

    fn bind(
        &self,
        reference: &str,
        takeover: bool,
        sink: Sink,
        announce: bool,
    ) -> Result<Bound, ManagerError> {
        let claims = self.verify(reference)?;
        let bound = self.registry.bind(&claims, takeover, sink, announce)?;
        tracing::info!(session_id = %claims.session_id, takeover, "session bound");
        Ok(bound)
    }

    /// Applies one update; `metadata` is the call's (or the stream's), for its trace context.
    fn apply(
        &self,
        request: pb::ApplyUpdateRequest,
        metadata: &MetadataMap,
    ) -> Result<pb::UpdateAck, ManagerError> {
        let received = Instant::now();
        let (session_id, sequence) = (request.session_id, request.sequence);
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
        let result = convert::update(request.update)
            .and_then(|update| {
                self.registry
                    .apply(&session_id, sequence, update, trace.as_ref())
            })
            .map(|ack| pb::UpdateAck {
                session_id: session_id.clone(),
                sequence,
                duplicate: ack.duplicate,
                view_version: ack.view_version,
                events: u32::try_from(ack.events).unwrap_or(u32::MAX),
            });
        match &result {
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
    let mut bindings: HashMap<u64, Bound> = HashMap::new();
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
                if let Some(previous) = bindings.remove(&bind.binding_id) {
                    service.registry.release(&previous, None);
                }
                let sink = Sink::new(tx.clone(), bind.binding_id);
                match service.bind(&bind.resource_reference, bind.takeover, sink, true) {
                    Ok(bound) => {
                        bindings.insert(bind.binding_id, bound);
                    }
                    Err(error) => tx.control(Outgoing::BindFailed {
                        binding_id: bind.binding_id,
                        error,
                    }),
                }
            }
            Command::Unbind(unbind) => {
                if let Some(bound) = bindings.remove(&unbind.binding_id) {
                    service
                        .registry
                        .release(&bound, Some(UnboundReason::Unbound));
                }
            }
        }
    }
    for bound in bindings.values() {
        service.registry.release(bound, None);
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
        };
        let created = self.registry.create(&who, || {
            convert::state(request.channels, request.interactions)
        })?;
        let view_state = convert::view_state(&created.session_id, created.view_state);
        let expires_at = unix_now().saturating_add(self.config.reference_ttl.as_secs());
        let reference = self.config.signing_key.issue(
            created.session_id.as_str(),
            &created.agent_id,
            expires_at,
        );
        tracing::info!(session_id = %created.session_id, agent_id = %created.agent_id, "session created");
        Ok(Response::new(pb::CreateSessionResponse {
            session_id: created.session_id.to_string(),
            resource_reference: reference,
            reference_expires_at: i64::try_from(expires_at).unwrap_or(i64::MAX),
            view_state,
            next_sequence: created.next_sequence,
        }))
    }

    async fn apply_update(
        &self,
        request: Request<pb::ApplyUpdateRequest>,
    ) -> Result<Response<pb::UpdateAck>, Status> {
        let metadata = request.metadata().clone();
        Ok(Response::new(self.apply(request.into_inner(), &metadata)?))
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
                    () = service.streams_stop.cancelled() => break,
                    message = inbound.message() => message,
                };
                let request = match message {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "push stream failed");
                        break;
                    }
                };
                let (session_id, sequence) = (request.session_id.clone(), request.sequence);
                let result = match service.apply(request, &metadata) {
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
        let session_id = request.into_inner().session_id;
        self.registry.end(&session_id)?;
        tracing::info!(%session_id, "session ended");
        Ok(Response::new(pb::EndSessionResponse {}))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let view = self.registry.get(&request.into_inner().session_id)?;
        Ok(Response::new(convert::session_view(view)))
    }

    type BindSessionStream = BindingStream;

    async fn bind_session(
        &self,
        request: Request<pb::BindSessionRequest>,
    ) -> Result<Response<Self::BindSessionStream>, Status> {
        let request = request.into_inner();
        let (tx, rx) = outbox::channel(self.config.stream_queue, Arc::clone(&self.config.stats));
        let bound = self.bind(
            &request.resource_reference,
            request.takeover,
            Sink::new(tx, 0),
            false,
        )?;
        Ok(Response::new(BindingStream::new(
            rx,
            Arc::clone(&self.registry),
            bound,
            self.config.stats.attach_streams.track(),
        )))
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

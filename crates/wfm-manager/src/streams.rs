//! The writers of the `BindSession` and `Attach` response streams. They take engine-typed
//! messages from their [`outbox`](crate::outbox), build the protobuf outside any session
//! lock, resynchronise stale bindings once their queue has room, and release their bindings
//! when tonic drops them (the client went away, or the stream ended).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_stream::Stream;
use tokio_util::sync::DropGuard;
use tonic::Status;
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;
use wfm_telemetry::metrics::GaugeGuard;

use crate::convert;
use crate::outbox::{Bound, Outgoing, Receiver};
use crate::registry::Registry;

/// Takes the next message, first resending a stale binding its state if the queue has room.
fn poll_outgoing(
    rx: &Receiver,
    registry: &Registry,
    cx: &mut Context<'_>,
) -> Poll<Option<Outgoing>> {
    while let Some(stale) = rx.next_stale() {
        registry.resync(&stale);
    }
    rx.poll_recv(cx)
}

/// A `BindSession` stream: one binding, with capabilities by name for third-party clients.
pub(crate) struct BindingStream {
    rx: Receiver,
    registry: Arc<Registry>,
    bound: Bound,
    _open: GaugeGuard,
}

impl BindingStream {
    /// Streams what the registry queues for `bound` into `rx`; `open` counts the stream.
    pub(crate) fn new(
        rx: Receiver,
        registry: Arc<Registry>,
        bound: Bound,
        open: GaugeGuard,
    ) -> Self {
        Self {
            rx,
            registry,
            bound,
            _open: open,
        }
    }
}

impl Stream for BindingStream {
    type Item = Result<pb::BindSessionResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use pb::bind_session_response::Kind as Out;
        let this = self.get_mut();
        loop {
            let Some(message) = std::task::ready!(poll_outgoing(&this.rx, &this.registry, cx))
            else {
                return Poll::Ready(None);
            };
            let kind = match message {
                Outgoing::State { event, trace, .. } => {
                    let mut event = convert::state_updated(&this.bound.session_id, event);
                    if let Some(trace) = trace {
                        event.trace_context = (*trace).clone();
                    }
                    Out::StateUpdated(event)
                }
                Outgoing::Unbound {
                    session_id, reason, ..
                } => Out::Unbound(convert::unbound(&session_id, &reason)),
                // A BindSession is answered by the call itself.
                Outgoing::Bound { .. }
                | Outgoing::BindFailed { .. }
                | Outgoing::CommandOutcome { .. } => continue,
            };
            return Poll::Ready(Some(Ok(pb::BindSessionResponse { kind: Some(kind) })));
        }
    }
}

impl Drop for BindingStream {
    fn drop(&mut self) {
        self.registry.release(&self.bound, None);
    }
}

/// An `Attach` stream: the catalogue first, then every binding's messages with capabilities
/// as bits against it. Dropping it stops the task that serves its commands.
pub(crate) struct AttachStream {
    rx: Receiver,
    registry: Arc<Registry>,
    catalogue_sent: bool,
    _stop: DropGuard,
    _open: GaugeGuard,
}

impl AttachStream {
    /// Streams `rx`; `stop` is cancelled when the stream is dropped; `open` counts it.
    pub(crate) fn new(
        rx: Receiver,
        registry: Arc<Registry>,
        stop: DropGuard,
        open: GaugeGuard,
    ) -> Self {
        Self {
            rx,
            registry,
            catalogue_sent: false,
            _stop: stop,
            _open: open,
        }
    }
}

impl Stream for AttachStream {
    type Item = Result<pb::AttachResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !std::mem::replace(&mut this.catalogue_sent, true) {
            return Poll::Ready(Some(Ok(pb::AttachResponse {
                binding_id: 0,
                kind: Some(Kind::Catalogue(convert::catalogue())),
            })));
        }
        let Some(message) = std::task::ready!(poll_outgoing(&this.rx, &this.registry, cx)) else {
            return Poll::Ready(None);
        };
        let (binding_id, kind) = match message {
            Outgoing::Bound {
                binding_id,
                session_id,
            } => (
                binding_id,
                Kind::BindResult(pb::BindResult {
                    code: 0,
                    message: String::new(),
                    session_id: session_id.to_string(),
                    owner_url: String::new(),
                }),
            ),
            Outgoing::CommandOutcome {
                binding_id,
                outcome,
            } => (binding_id, Kind::CommandOutcome(outcome)),
            Outgoing::BindFailed { binding_id, error } => (
                binding_id,
                Kind::BindResult(pb::BindResult {
                    code: error.code() as i32,
                    message: error.to_string(),
                    session_id: String::new(),
                    owner_url: error.owner_url().unwrap_or_default().to_string(),
                }),
            ),
            Outgoing::State {
                binding_id,
                event,
                trace,
            } => (
                binding_id,
                Kind::State(convert::compact_state(event, trace.as_ref())),
            ),
            Outgoing::Unbound {
                binding_id,
                session_id,
                reason,
            } => (
                binding_id,
                Kind::Unbound(convert::unbound(&session_id, &reason)),
            ),
        };
        Poll::Ready(Some(Ok(pb::AttachResponse {
            binding_id,
            kind: Some(kind),
        })))
    }
}

//! The response streams of `BindSession` and `Attach`, which release their bindings when
//! tonic drops them (the client went away, or the stream ended).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::DropGuard;
use tonic::Status;
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;
use wfm_telemetry::metrics::GaugeGuard;

use crate::registry::{Bound, Registry};

/// A `BindSession` stream: the binding's messages, without the `Attach`-only bind result.
pub(crate) struct BindingStream {
    rx: mpsc::UnboundedReceiver<pb::AttachResponse>,
    registry: Arc<Registry>,
    bound: Bound,
    _open: GaugeGuard,
}

impl BindingStream {
    /// Streams what the registry queues for `bound` into `rx`; `open` counts the stream.
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<pb::AttachResponse>,
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

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use pb::bind_session_response::Kind as Out;
        loop {
            let Some(message) = std::task::ready!(self.rx.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            let kind = match message.kind {
                Some(Kind::StateUpdated(event)) => Out::StateUpdated(event),
                Some(Kind::Unbound(unbound)) => Out::Unbound(unbound),
                Some(Kind::BindResult(_)) | None => continue,
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

/// An `Attach` stream; dropping it stops the task that serves its commands.
pub(crate) struct AttachStream {
    rx: mpsc::UnboundedReceiver<pb::AttachResponse>,
    _stop: DropGuard,
    _open: GaugeGuard,
}

impl AttachStream {
    /// Streams `rx`; `stop` is cancelled when the stream is dropped; `open` counts it.
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<pb::AttachResponse>,
        stop: DropGuard,
        open: GaugeGuard,
    ) -> Self {
        Self {
            rx,
            _stop: stop,
            _open: open,
        }
    }
}

impl Stream for AttachStream {
    type Item = Result<pb::AttachResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|message| message.map(Ok))
    }
}

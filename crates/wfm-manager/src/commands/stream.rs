//! One Interaction Processor's `ReceiveCommands` stream: the hello that names it, then
//! its answers, until it goes away, is replaced, or the server stops.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use wfm_proto::v1 as pb;

use super::processors::{Link, Processors, STREAM_QUEUE};
use super::valid_processor_id;
use crate::cluster::Cluster;

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The commands sent down one stream.
pub(crate) type CommandStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Command, Status>> + Send>>;

/// Reads the hello of `inbound`, registers its processor, and returns the stream of its
/// commands; its answers are read by a task until the stream ends or `stop`.
pub(crate) async fn serve(
    processors: Arc<Processors>,
    cluster: Option<Arc<Cluster>>,
    mut inbound: Streaming<pb::ProcessorMessage>,
    stop: CancellationToken,
) -> Result<CommandStream, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no hello within {} s: a command stream names its processor first",
                HELLO_TIMEOUT.as_secs()
            ))
        })??;
    let processor_id = match first.and_then(|m| m.kind) {
        Some(pb::processor_message::Kind::Hello(hello)) => hello.processor_id,
        _ => {
            return Err(Status::invalid_argument(
                "the first message of a command stream is its hello",
            ));
        }
    };
    if !valid_processor_id(&processor_id) {
        return Err(crate::error::ManagerError::InvalidProcessorId.into());
    }
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let link = processors.connect(&processor_id, tx);
    tracing::info!(%processor_id, "Interaction Processor command stream open");
    if let Some(cluster) = cluster {
        tokio::spawn(cluster.relay_for(Arc::clone(&processors), Arc::clone(&link)));
    }
    let closed = link.closed.clone();
    tokio::spawn(read_answers(processors, link, inbound, stop));
    Ok(Box::pin(
        ReceiverStream::new(rx).take_until(closed.cancelled_owned()),
    ))
}

/// Reads the processor's answers until its stream ends, it is replaced, or `stop`.
async fn read_answers(
    processors: Arc<Processors>,
    link: Arc<Link>,
    mut inbound: Streaming<pb::ProcessorMessage>,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            () = link.closed.cancelled() => break,
            message = inbound.message() => message,
        };
        match message {
            Ok(Some(pb::ProcessorMessage {
                kind: Some(pb::processor_message::Kind::Result(result)),
            })) => link.answer(result),
            Ok(Some(_)) => {
                tracing::debug!(processor_id = %link.processor_id(), "command stream message that is no result ignored");
            }
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(processor_id = %link.processor_id(), %status, "command stream failed");
                break;
            }
        }
    }
    tracing::info!(processor_id = %link.processor_id(), "Interaction Processor command stream closed");
    processors.disconnect(&link);
}

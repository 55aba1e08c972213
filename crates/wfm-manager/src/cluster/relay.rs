//! Cluster mode: a session's owner and its Interaction Processor's command stream may be
//! on different replicas (a processor connects through a load balancer to any of them).
//! The replica that holds a processor's stream answers NATS requests on
//! `wfm.commands.<processor id>`; the owner sends each command there when the stream is
//! not its own. NATS's no-responders status tells at once that no replica holds it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use prost::Message as _;
use wfm_proto::v1 as pb;

use super::Cluster;
use crate::commands::{self, CommandFailure, CommandResult, Processors, processors::Link};

/// The subject of `processor_id`'s commands.
fn subject(processor_id: &str) -> String {
    format!("wfm.commands.{processor_id}")
}

/// One queue group, so that two replicas holding a stream of the same processor for a
/// moment (it reconnected elsewhere) do not both carry a command out.
const QUEUE_GROUP: &str = "wfm";

/// Beyond the holder's own deadline, for its timeout answer to come back.
const REPLY_GRACE: Duration = Duration::from_millis(500);

impl Cluster {
    /// Answers the commands other replicas send to `link`'s processor, until it closes.
    pub(crate) async fn relay_for(self: Arc<Self>, processors: Arc<Processors>, link: Arc<Link>) {
        let client = self.store.client().clone();
        let subject = subject(link.processor_id());
        let mut subscription = match client
            .queue_subscribe(subject.clone(), QUEUE_GROUP.to_string())
            .await
        {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::warn!(%error, processor_id = %link.processor_id(), "cannot take commands from other replicas; only sessions owned here reach this processor");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                () = link.closed.cancelled() => break,
                message = subscription.next() => message,
            };
            let Some(message) = message else { break };
            let Some(reply) = message.reply else { continue };
            let processors = Arc::clone(&processors);
            let client = client.clone();
            let processor_id = link.processor_id().to_string();
            tokio::spawn(async move {
                let result = match pb::Command::decode(message.payload) {
                    Ok(command) => processors.send(&processor_id, command).await.unwrap_or_else(
                        || {
                            Err(CommandFailure::ProcessorUnavailable(format!(
                                "the command stream of the Interaction Processor {processor_id} just closed"
                            )))
                        },
                    ),
                    Err(error) => Err(CommandFailure::ProcessorUnavailable(format!(
                        "a replica sent an unreadable command: {error}"
                    ))),
                };
                let answer = commands::outcome(0, result).encode_to_vec();
                if let Err(error) = client.publish(reply, answer.into()).await {
                    tracing::debug!(%error, "relayed command's answer not sent");
                }
            });
        }
        let _ = subscription.unsubscribe().await;
    }

    /// Sends `command` to the replica holding `processor_id`'s stream, waiting `timeout`
    /// (the holder's deadline) and a little more.
    pub(crate) async fn relay(
        &self,
        processor_id: &str,
        command: pb::Command,
        timeout: Duration,
    ) -> CommandResult {
        use async_nats::RequestErrorKind;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let request = async_nats::Request::new()
            .payload(command.encode_to_vec().into())
            .timeout(Some(timeout + REPLY_GRACE));
        match self
            .store
            .client()
            .send_request(subject(processor_id), request)
            .await
        {
            Ok(message) => match pb::CommandOutcome::decode(message.payload) {
                Ok(outcome) => CommandFailure::from_outcome(outcome, timeout_ms),
                Err(error) => Err(CommandFailure::ProcessorUnavailable(format!(
                    "the replica holding the Interaction Processor {processor_id} answered unreadably: {error}"
                ))),
            },
            Err(error) => Err(match error.kind() {
                RequestErrorKind::NoResponders => CommandFailure::ProcessorUnavailable(format!(
                    "no Interaction Processor named {processor_id} is connected to any replica"
                )),
                RequestErrorKind::TimedOut => CommandFailure::Timeout(timeout_ms),
                _ => CommandFailure::ProcessorUnavailable(format!(
                    "cannot reach the Interaction Processor {processor_id} through NATS: {error}"
                )),
            }),
        }
    }
}

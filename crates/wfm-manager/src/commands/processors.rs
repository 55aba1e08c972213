//! The Interaction Processors whose command streams are connected to this process, and
//! the commands each has been sent and not yet answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use wfm_proto::v1 as pb;

use super::{CommandFailure, CommandResult, result_of};
use crate::registry::lock;
use crate::stats::ManagerStats;

/// Commands one stream may have queued towards its processor; beyond it a command fails at
/// once, so that a processor that stops reading cannot make the manager hold them all.
pub(crate) const STREAM_QUEUE: usize = 256;
/// Commands one processor may have sent and not yet answered.
const MAX_PENDING: usize = 4096;

/// One connected command stream.
pub(crate) struct Link {
    processor_id: String,
    /// Tells one stream of a processor from the one that replaced it.
    generation: u64,
    tx: mpsc::Sender<Result<pb::Command, Status>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<pb::CommandResult>>>,
    next_command: AtomicU64,
    /// Cancelled when the stream ends or is replaced: its writer stops, and the relay of
    /// its commands (cluster mode) unsubscribes.
    pub(crate) closed: CancellationToken,
}

impl Link {
    /// The processor's name.
    pub(crate) fn processor_id(&self) -> &str {
        &self.processor_id
    }

    /// Hands the processor's answer to the command waiting for it. A late answer (after
    /// the deadline) or one naming no command is dropped: it has nobody to go to.
    pub(crate) fn answer(&self, result: pb::CommandResult) {
        let waiting = lock(&self.pending).remove(&result.command_id);
        match waiting {
            Some(waiting) => {
                let _ = waiting.send(result);
            }
            None => tracing::debug!(
                processor_id = %self.processor_id,
                command_id = result.command_id,
                "answer to no pending command dropped (late, or never sent)"
            ),
        }
    }

    /// Fails every pending command (their waiters see the stream end) and stops the stream.
    fn close(&self) {
        self.closed.cancel();
        lock(&self.pending).clear();
    }
}

/// The command streams connected here, by processor id.
pub(crate) struct Processors {
    links: Mutex<HashMap<String, Arc<Link>>>,
    next_generation: AtomicU64,
    timeout: Duration,
    stats: Arc<ManagerStats>,
}

impl Processors {
    /// No stream yet; commands wait `timeout` for their answer.
    pub(crate) fn new(timeout: Duration, stats: Arc<ManagerStats>) -> Self {
        Self {
            links: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            timeout,
            stats,
        }
    }

    /// How long a command waits for its answer.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Registers the stream of `processor_id`, writing into `tx`. An earlier stream of the
    /// same processor is replaced: its pending commands fail and it ends.
    pub(crate) fn connect(
        &self,
        processor_id: &str,
        tx: mpsc::Sender<Result<pb::Command, Status>>,
    ) -> Arc<Link> {
        let link = Arc::new(Link {
            processor_id: processor_id.to_string(),
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
            tx,
            pending: Mutex::new(HashMap::new()),
            next_command: AtomicU64::new(1),
            closed: CancellationToken::new(),
        });
        let replaced = lock(&self.links).insert(processor_id.to_string(), Arc::clone(&link));
        match replaced {
            Some(old) => {
                tracing::info!(%processor_id, "command stream replaced by a new one");
                old.close();
            }
            None => self.stats.processors.inc(),
        }
        link
    }

    /// Unregisters `link` if it is still its processor's stream, and fails its pending
    /// commands; they are never sent again.
    pub(crate) fn disconnect(&self, link: &Link) {
        let mut links = lock(&self.links);
        if links
            .get(&link.processor_id)
            .is_some_and(|current| current.generation == link.generation)
        {
            links.remove(&link.processor_id);
            self.stats.processors.dec();
        }
        drop(links);
        link.close();
    }

    /// Whether `processor_id` has a stream here.
    pub(crate) fn is_connected(&self, processor_id: &str) -> bool {
        lock(&self.links).contains_key(processor_id)
    }

    /// Sends `command` to `processor_id`'s stream here and waits for the answer; `None`
    /// when that processor has no stream here.
    pub(crate) async fn send(
        &self,
        processor_id: &str,
        mut command: pb::Command,
    ) -> Option<CommandResult> {
        let link = lock(&self.links).get(processor_id).cloned()?;
        let id = link.next_command.fetch_add(1, Ordering::Relaxed);
        let (answer_tx, answer_rx) = oneshot::channel();
        {
            let mut pending = lock(&link.pending);
            if pending.len() >= MAX_PENDING {
                return Some(Err(CommandFailure::ProcessorUnavailable(format!(
                    "the Interaction Processor {processor_id} has {MAX_PENDING} commands unanswered"
                ))));
            }
            pending.insert(id, answer_tx);
        }
        command.command_id = id;
        command.deadline_ms = u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX);
        if link.tx.try_send(Ok(command)).is_err() {
            lock(&link.pending).remove(&id);
            return Some(Err(CommandFailure::ProcessorUnavailable(format!(
                "the Interaction Processor {processor_id} is not reading its commands"
            ))));
        }
        Some(match tokio::time::timeout(self.timeout, answer_rx).await {
            Ok(Ok(answer)) => result_of(answer),
            Ok(Err(_)) => Err(CommandFailure::ProcessorUnavailable(format!(
                "the command stream of the Interaction Processor {processor_id} ended before it answered"
            ))),
            Err(_) => {
                lock(&link.pending).remove(&id);
                Err(CommandFailure::Timeout(
                    u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                ))
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn command() -> pb::Command {
        pb::Command {
            session_id: "s1".into(),
            target: "s1.voice.c1".into(),
            capability: "interaction.hold".into(),
            ..Default::default()
        }
    }

    fn processors(timeout_ms: u64) -> Arc<Processors> {
        Arc::new(Processors::new(
            Duration::from_millis(timeout_ms),
            Arc::default(),
        ))
    }

    #[tokio::test]
    async fn an_answer_reaches_its_command_and_a_missing_processor_is_none() {
        let processors = processors(5_000);
        assert!(processors.send("ip-1", command()).await.is_none());
        let (tx, mut rx) = mpsc::channel(4);
        let link = processors.connect("ip-1", tx);
        let sender = Arc::clone(&processors);
        let waiting = tokio::spawn(async move { sender.send("ip-1", command()).await });
        let sent = rx.recv().await.unwrap().unwrap();
        assert_eq!(sent.deadline_ms, 5_000);
        link.answer(pb::CommandResult {
            command_id: sent.command_id,
            accepted: true,
            reason: String::new(),
            data: HashMap::from([("k".into(), "v".into())]),
        });
        let result = waiting.await.unwrap().unwrap().unwrap();
        assert_eq!(result.get("k").map(String::as_str), Some("v"));
    }

    #[tokio::test]
    async fn an_unanswered_command_times_out_and_its_late_answer_is_dropped() {
        let processors = processors(100);
        let (tx, mut rx) = mpsc::channel(4);
        let link = processors.connect("ip-1", tx);
        let result = processors.send("ip-1", command()).await.unwrap();
        assert!(matches!(result, Err(CommandFailure::Timeout(100))));
        let sent = rx.recv().await.unwrap().unwrap();
        link.answer(pb::CommandResult {
            command_id: sent.command_id,
            accepted: true,
            ..Default::default()
        });
        assert!(lock(&link.pending).is_empty());
    }

    #[tokio::test]
    async fn a_dropped_stream_fails_its_pending_commands_and_a_replaced_one_too() {
        let processors = processors(5_000);
        let (tx, mut rx) = mpsc::channel(4);
        let first = processors.connect("ip-1", tx);
        let sender = Arc::clone(&processors);
        let waiting = tokio::spawn(async move { sender.send("ip-1", command()).await });
        rx.recv().await.unwrap().unwrap();
        let (tx2, _rx2) = mpsc::channel(4);
        let second = processors.connect("ip-1", tx2);
        assert!(first.closed.is_cancelled());
        let result = waiting.await.unwrap().unwrap();
        assert!(
            matches!(result, Err(CommandFailure::ProcessorUnavailable(m)) if m.contains("ended"))
        );
        // The replaced stream's own end does not unregister its successor.
        processors.disconnect(&first);
        assert!(processors.is_connected("ip-1"));
        processors.disconnect(&second);
        assert!(!processors.is_connected("ip-1"));
    }

    #[tokio::test]
    async fn a_processor_that_stops_reading_fails_commands_at_once() {
        let processors = processors(5_000);
        let (tx, _rx) = mpsc::channel(1);
        let _link = processors.connect("ip-1", tx);
        let sender = Arc::clone(&processors);
        // The first fills the queue and waits; the second finds it full.
        let _first = tokio::spawn(async move { sender.send("ip-1", command()).await });
        tokio::task::yield_now().await;
        let second = processors.send("ip-1", command()).await.unwrap();
        assert!(
            matches!(second, Err(CommandFailure::ProcessorUnavailable(m)) if m.contains("not reading"))
        );
    }
}

//! The Interaction Processor's command stream: one long-lived `ReceiveCommands` call to the
//! manager, reopened with backoff when it drops, that hands each command to the task that
//! plays its session and carries that task's answer back.
//!
//! The processor is the gRPC client (it may sit behind NAT), so it dials out and names
//! itself; the manager sends it the commands of the sessions created with that name.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use backon::BackoffBuilder as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use wfm_proto::v1 as pb;

use crate::cti::CtiState;
use crate::platform::{self, Effect, Order};
use crate::resilient::Manager;

/// Commands waiting for their session's task; beyond it the processor refuses at once.
const PER_SESSION_QUEUE: usize = 64;
/// Answers waiting to go up the stream.
const RESULT_QUEUE: usize = 1024;

/// One command for a session's task, with the way back for its answer.
#[derive(Debug)]
pub struct Incoming {
    /// The command as the manager sent it.
    pub command: pb::Command,
    reply: mpsc::Sender<pb::ProcessorMessage>,
}

impl Incoming {
    /// Answers the command: accepted with `data`, or refused with `reason`.
    pub fn answer(self, outcome: Result<HashMap<String, String>, String>) {
        let (accepted, reason, data) = match outcome {
            Ok(data) => (true, String::new(), data),
            Err(reason) => (false, reason, HashMap::new()),
        };
        let result = pb::CommandResult {
            command_id: self.command.command_id,
            accepted,
            reason,
            data,
        };
        // A full or closed stream means the manager has given up on (or will time out) the
        // command; there is nobody left to tell.
        let _ = self
            .reply
            .try_send(message(pb::processor_message::Kind::Result(result)));
    }
}

impl Incoming {
    /// Carries the command out on the simulated platform, against `state` (session
    /// `session_id`'s), and answers it; the updates it causes, none when it is refused.
    pub fn carry_out(self, session_id: &str, state: &CtiState) -> Vec<Effect> {
        let command = &self.command;
        let planned = Order::parse(
            session_id,
            &command.target,
            &command.capability,
            &command.arguments,
        )
        .ok_or_else(|| format!("{} is not a target of this session", command.target))
        .and_then(|order| platform::plan(state, &order).map_err(|refusal| refusal.0));
        match planned {
            Ok(effects) => {
                self.answer(Ok(HashMap::new()));
                effects
            }
            Err(reason) => {
                self.answer(Err(reason));
                Vec::new()
            }
        }
    }
}

/// Which task plays which session, and whether the stream is open.
#[derive(Debug, Clone)]
pub struct Routes {
    table: Arc<RwLock<HashMap<String, mpsc::Sender<Incoming>>>>,
    open: Arc<watch::Sender<bool>>,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            table: Arc::default(),
            open: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl Routes {
    /// Waits until the manager has registered the processor (its stream is open), so that
    /// the next command finds it.
    pub async fn opened(&self) {
        let mut open = self.open.subscribe();
        // The sender lives in `self`, so the wait ends only when the stream opens.
        let _ = open.wait_for(|open| *open).await;
    }

    /// Routes `session_id`'s commands to the returned receiver (replacing an earlier route).
    pub fn add(&self, session_id: &str) -> mpsc::Receiver<Incoming> {
        let (sender, receiver) = mpsc::channel(PER_SESSION_QUEUE);
        self.table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session_id.to_string(), sender);
        receiver
    }

    /// Stops routing `session_id`.
    pub fn remove(&self, session_id: &str) {
        self.table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session_id);
    }

    fn deliver(&self, incoming: Incoming) {
        let sender = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&incoming.command.session_id)
            .cloned();
        let refused = match sender {
            None => "this processor does not play that session",
            Some(sender) => match sender.try_send(incoming) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    return back.answer(Err("the platform is busy with this session".into()));
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    return back.answer(Err("the session's agent has stopped".into()));
                }
            },
        };
        incoming.answer(Err(refused.into()));
    }
}

fn message(kind: pb::processor_message::Kind) -> pb::ProcessorMessage {
    pb::ProcessorMessage { kind: Some(kind) }
}

/// Keeps the command stream of `processor_id` open against `manager`, delivering commands
/// along `routes`, until the task is dropped. Each drop of the stream is logged and the
/// stream reopened after a growing, jittered delay (reset once a stream has carried a
/// command).
pub async fn serve(manager: Manager, processor_id: String, routes: Routes) {
    let mut delays = backoff();
    loop {
        match stream_once(&manager, &processor_id, &routes).await {
            Ok(carried) => {
                tracing::info!(processor = %processor_id, "command stream ended; reopening");
                if carried {
                    delays = backoff();
                }
            }
            Err(status) => {
                tracing::warn!(processor = %processor_id, %status, "command stream failed");
            }
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
        tokio::time::sleep(delay).await;
    }
}

fn backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// One stream: hello, then commands until it ends. `Ok(true)` if it carried a command.
async fn stream_once(
    manager: &Manager,
    processor_id: &str,
    routes: &Routes,
) -> Result<bool, tonic::Status> {
    let (up, outgoing) = mpsc::channel(RESULT_QUEUE);
    let hello = pb::ProcessorHello {
        processor_id: processor_id.to_string(),
    };
    up.try_send(message(pb::processor_message::Kind::Hello(hello)))
        .map_err(|_| tonic::Status::internal("cannot queue the hello"))?;
    let (index, mut client) = manager.client();
    let mut commands = match client.receive_commands(ReceiverStream::new(outgoing)).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            manager.failed(index);
            return Err(status);
        }
    };
    tracing::info!(processor = %processor_id, "command stream open");
    routes.open.send_replace(true);
    let mut carried = false;
    let ended = loop {
        let command = match commands.message().await {
            Ok(Some(command)) => command,
            Ok(None) => break Ok(carried),
            Err(status) => break Err(status),
        };
        carried = true;
        routes.deliver(Incoming {
            command,
            reply: up.clone(),
        });
    };
    routes.open.send_replace(false);
    ended
}

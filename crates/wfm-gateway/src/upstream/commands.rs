//! MediaBar commands on their way to the manager: each goes on the `Attach` stream of its
//! binding, waits in the table under a gateway-chosen request id, and is answered by the
//! manager's outcome, by the gateway's own deadline, or by the loss of its stream,
//! whichever comes first. Every answer is delivered exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;
use wfm_proto::v1 as pb;

use super::{Phase, Table, Upstream};
use crate::client::ClientShared;
use crate::delivery::{CommandFailed, CommandReply, Delivery, StateDelivery};
use crate::errors::{ErrorCode, GatewayError};

/// Commands that may wait for the manager's answer, gateway-wide. Each connection's
/// request budget keeps its own share small; this bounds the table whatever the clients.
const MAX_PENDING: usize = 65_536;

/// A command sent and not yet answered.
pub(super) struct PendingCommand {
    conn: Arc<ClientShared>,
    reply: CommandReply,
    /// The stream slot it went on: only that stream's answer, or loss, settles it.
    slot: usize,
}

/// What a command carries to the manager.
pub(crate) struct CommandOrder {
    /// The capability.
    pub(crate) capability: String,
    /// Dot-notation target.
    pub(crate) target: String,
    /// Arguments, every value a string.
    pub(crate) arguments: HashMap<String, String>,
}

impl Upstream {
    /// Sends `order` for `binding_id`'s session; the answer arrives as a
    /// [`Delivery::CommandAnswer`] for `reply`. `Err` is the answer when it cannot be sent.
    pub(crate) fn command(
        self: &Arc<Self>,
        conn: &Arc<ClientShared>,
        binding_id: u64,
        reply: CommandReply,
        order: CommandOrder,
    ) -> Result<(), GatewayError> {
        let id = self.next_command.fetch_add(1, Ordering::Relaxed);
        let mut table = self.table();
        let slot = match table.routes.get(&binding_id) {
            Some(route) if matches!(route.phase, Phase::Bound) => route.stream,
            // Lost or being rebound: the client has heard service.unavailable.
            Some(_) => None,
            None => return Err(GatewayError::NotBound),
        };
        let Some(slot) = slot else {
            return Err(GatewayError::ServiceUnavailable);
        };
        if table.commands.len() >= MAX_PENDING {
            return Err(GatewayError::ServiceUnavailable);
        }
        let command = pb::AttachRequest {
            kind: Some(pb::attach_request::Kind::Command(pb::AttachCommand {
                binding_id,
                request_id: id,
                target: order.target,
                capability: order.capability,
                arguments: order.arguments,
            })),
        };
        let sent = table.slots[slot]
            .stream
            .as_ref()
            .is_some_and(|s| s.command(command, &self.config.stats).is_ok());
        if !sent {
            return Err(GatewayError::ServiceUnavailable);
        }
        table.commands.insert(
            id,
            PendingCommand {
                conn: Arc::clone(conn),
                reply,
                slot,
            },
        );
        drop(table);
        self.config.stats.commands_pending.inc();
        if let Some((tracker, stop)) = self.runtime.get() {
            let deadline = Instant::now() + self.config.command_timeout;
            let (upstream, stop) = (Arc::clone(self), stop.clone());
            tracker.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep_until(deadline) => upstream.expire_command(id),
                }
            });
        }
        Ok(())
    }

    /// The manager's outcome of a command sent on `slot`.
    pub(super) fn on_outcome(&self, slot: usize, outcome: pb::CommandOutcome) {
        let mut table = self.table();
        let Some(pending) = take(&mut table, outcome.request_id, |p| p.slot == slot) else {
            // Answered already by the gateway's own deadline.
            return;
        };
        let catalogue = table.slots[slot]
            .stream
            .as_ref()
            .map(|s| Arc::clone(&s.catalogue));
        drop(table);
        self.config.stats.commands_pending.dec();
        let status = outcome.status();
        let result = match ErrorCode::of_command(status) {
            None => Ok(outcome.data),
            Some(code) => Err(CommandFailed {
                error: GatewayError::Command {
                    code,
                    message: outcome.message,
                },
                view: outcome.view.zip(catalogue).map(|(view, catalogue)| {
                    Box::new(StateDelivery {
                        target: view.target,
                        context: view.context.into_iter().map(|e| (e.key, e.value)).collect(),
                        defined: view.defined,
                        enabled: view.enabled,
                        catalogue,
                        trace: HashMap::new(),
                        received: std::time::Instant::now(),
                        gone: view.gone,
                    })
                }),
            }),
        };
        answer(pending, result);
    }

    /// A command the manager has not answered within the command timeout.
    fn expire_command(&self, id: u64) {
        let pending = take(&mut self.table(), id, |_| true);
        if let Some(pending) = pending {
            self.config.stats.commands_pending.dec();
            self.config.stats.commands_timed_out.inc();
            let millis = u64::try_from(self.config.command_timeout.as_millis()).unwrap_or(u64::MAX);
            answer(pending, failed(GatewayError::CommandTimeout(millis)));
        }
    }

    /// Fails the commands of a stream that ended: their outcome is unknown.
    pub(super) fn lose_commands(&self, table: &mut Table, slot: usize) {
        let ids: Vec<u64> = table
            .commands
            .iter()
            .filter(|(_, p)| p.slot == slot)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(pending) = table.commands.remove(&id) {
                self.config.stats.commands_pending.dec();
                answer(pending, failed(GatewayError::CommandLost));
            }
        }
    }
}

fn take(
    table: &mut Table,
    id: u64,
    accept: impl Fn(&PendingCommand) -> bool,
) -> Option<PendingCommand> {
    if !table.commands.get(&id).is_some_and(accept) {
        return None;
    }
    table.commands.remove(&id)
}

fn failed(error: GatewayError) -> Result<HashMap<String, String>, CommandFailed> {
    Err(CommandFailed { error, view: None })
}

fn answer(pending: PendingCommand, result: Result<HashMap<String, String>, CommandFailed>) {
    pending.conn.deliver(Delivery::CommandAnswer {
        reply: pending.reply,
        result,
    });
}

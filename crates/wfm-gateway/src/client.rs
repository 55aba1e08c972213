//! What one connection's client has been told, shared between its socket task and the
//! upstream: its binding, what it believes about the manager's availability, and the queue
//! of messages waiting to be written. Upstream [`Delivery`]s are applied here, and this is
//! where they become MediaBar JSON.
//!
//! The state sits behind a leaf lock: whoever holds it takes no other lock.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::delivery::{Availability, CommandReply, Delivery};
use crate::outbound::{Item, Outbound};
use crate::protocol::{self, ResourceData};
use crate::stats::GatewayStats;

/// A bound session, as its events are written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BoundSession {
    /// The session id, the `resourceId` of its events.
    pub(crate) id: String,
    /// The JSON every state event of the session starts with, rendered once per binding.
    pub(crate) event_prefix: Box<str>,
}

/// Where a connection stands with its (single) binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Binding {
    /// No binding.
    Unbound,
    /// `bindResource` sent to the manager; `request_id` gets the answer.
    Pending {
        /// The binding's id on the upstream.
        binding_id: u64,
        /// The request to answer.
        request_id: String,
    },
    /// Bound to `session`.
    Bound {
        /// The binding's id on the upstream.
        binding_id: u64,
        /// The bound session.
        session: Arc<BoundSession>,
    },
}

impl Binding {
    /// The upstream binding id, while binding or bound.
    pub(crate) fn id(&self) -> Option<u64> {
        match self {
            Binding::Unbound => None,
            Binding::Pending { binding_id, .. } | Binding::Bound { binding_id, .. } => {
                Some(*binding_id)
            }
        }
    }
}

/// The mutable part of [`ClientShared`].
pub(crate) struct ClientState {
    /// What waits to be written.
    pub(crate) out: Outbound,
    /// The connection's binding.
    pub(crate) binding: Binding,
    /// What the client was last told (or, before any event, could assume) about the
    /// manager's availability.
    service_available: bool,
    changed: bool,
    stats: Arc<GatewayStats>,
}

impl ClientState {
    /// Queues a control message.
    pub(crate) fn push_control(&mut self, message: String) {
        self.out.push_control(message);
        self.stats.queued.inc();
        self.changed = true;
    }

    /// Takes the next message to write.
    pub(crate) fn pop(&mut self) -> Option<Item> {
        let item = self.out.pop()?;
        self.stats.queued.dec();
        Some(item)
    }

    /// Changes the binding.
    pub(crate) fn set_binding(&mut self, binding: Binding) {
        let was_bound = matches!(self.binding, Binding::Bound { .. });
        let is_bound = matches!(binding, Binding::Bound { .. });
        match (was_bound, is_bound) {
            (false, true) => self.stats.bindings.inc(),
            (true, false) => self.stats.bindings.dec(),
            _ => {}
        }
        self.binding = binding;
        self.changed = true;
    }

    /// Tells the client of the manager's availability, unless it already knows.
    fn tell_service(&mut self, now: &Availability) {
        if self.service_available != now.available {
            self.service_available = now.available;
            self.push_control(protocol::service_event(now.available, now.info.as_ref()));
        }
    }

    /// The bound session, if the connection is bound through `binding_id`.
    fn bound_session(&self, binding_id: u64) -> Option<Arc<BoundSession>> {
        match &self.binding {
            Binding::Bound {
                binding_id: bound,
                session,
            } if *bound == binding_id => Some(Arc::clone(session)),
            _ => None,
        }
    }

    fn apply(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::BindResult { binding_id, result } => {
                let Binding::Pending {
                    binding_id: pending,
                    request_id,
                } = &self.binding
                else {
                    return;
                };
                if *pending != binding_id {
                    return;
                }
                match result {
                    Ok(session_id) => {
                        let response = protocol::success(
                            request_id,
                            "bindResource",
                            &ResourceData::session(&session_id),
                        );
                        self.push_control(response);
                        let session = BoundSession {
                            event_prefix: protocol::state_event_prefix(&session_id),
                            id: session_id,
                        };
                        self.set_binding(Binding::Bound {
                            binding_id,
                            session: Arc::new(session),
                        });
                    }
                    Err(error) => {
                        let response = protocol::failure(request_id, "bindResource", &error);
                        self.push_control(response);
                        self.set_binding(Binding::Unbound);
                    }
                }
            }
            Delivery::State { binding_id, state } => {
                let Some(session) = self.bound_session(binding_id) else {
                    return;
                };
                self.stats.events_received.inc();
                if self.out.push_state(state, session) {
                    self.stats.events_conflated.inc();
                } else {
                    self.stats.queued.inc();
                }
                self.changed = true;
            }
            Delivery::Unbound {
                binding_id,
                reason,
                now,
            } => {
                let Some(session) = self.bound_session(binding_id) else {
                    return;
                };
                let event = protocol::resource_unbound(&session.id, reason);
                self.push_control(event);
                self.set_binding(Binding::Unbound);
                // Unbound now, the client follows the Service Monitor like any other.
                self.tell_service(&now);
            }
            Delivery::Service {
                binding_id: Some(id),
                now,
            } => {
                if matches!(self.binding, Binding::Bound { binding_id, .. } if binding_id == id) {
                    self.tell_service(&now);
                }
            }
            Delivery::Service {
                binding_id: None,
                now,
            } => {
                if !matches!(self.binding, Binding::Bound { .. }) {
                    self.tell_service(&now);
                }
            }
            Delivery::CommandAnswer { reply, result } => {
                let CommandReply {
                    request_id,
                    address,
                    request,
                } = &reply;
                let message = match &result {
                    Ok(data) => protocol::resource_response(request_id, address, request, data),
                    Err(failed) => protocol::resource_error(
                        request_id,
                        address,
                        request,
                        &failed.error,
                        failed.view.as_deref(),
                    ),
                };
                self.push_control(message);
            }
            Delivery::Assume { available } => self.service_available = available,
        }
    }
}

impl Drop for ClientState {
    fn drop(&mut self) {
        // What a closed connection never wrote is gone with it.
        self.stats
            .queued
            .dec_by(i64::try_from(self.out.len()).unwrap_or(i64::MAX));
    }
}

/// What the connection task and the upstream share about one connection.
pub(crate) struct ClientShared {
    /// Gateway-wide connection id.
    pub(crate) id: u64,
    state: Mutex<ClientState>,
    /// Woken whenever something was queued or the binding changed.
    pub(crate) wake: Notify,
}

impl ClientShared {
    /// A connection with nothing queued and no binding.
    pub(crate) fn new(id: u64, stats: Arc<GatewayStats>) -> Self {
        Self {
            id,
            state: Mutex::new(ClientState {
                out: Outbound::default(),
                binding: Binding::Unbound,
                service_available: true,
                changed: false,
                stats,
            }),
            wake: Notify::new(),
        }
    }

    /// The state, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ClientState> {
        // Every critical section leaves the state consistent before it can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state and wakes the connection task if anything was queued or the
    /// binding changed.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut ClientState) -> R) -> R {
        let mut state = self.lock();
        let result = f(&mut state);
        if std::mem::take(&mut state.changed) {
            self.wake.notify_one();
        }
        result
    }

    /// Applies what the upstream reports.
    pub(crate) fn deliver(&self, delivery: Delivery) {
        self.update(|s| s.apply(delivery));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use wfm_proto::v1 as pb;

    use super::*;
    use crate::catalogue::Catalogue;
    use crate::delivery::StateDelivery;
    use crate::errors::UnboundReason;

    fn state(target: &str, enabled: u64) -> StateDelivery {
        let catalogue = Catalogue::from_wire(pb::Catalogue {
            wire_version: wfm_proto::ATTACH_WIRE_VERSION,
            names: vec!["a".into()],
        })
        .unwrap();
        StateDelivery {
            target: target.into(),
            context: Vec::new(),
            defined: 1,
            enabled,
            catalogue: Arc::new(catalogue),
            trace: HashMap::new(),
            received: std::time::Instant::now(),
            gone: false,
        }
    }

    fn drain(client: &ClientShared) -> Vec<String> {
        let mut state = client.lock();
        std::iter::from_fn(|| state.pop())
            .map(|item| match item {
                Item::Control(text) => text,
                Item::State(queued) => format!("state {}", queued.state.target),
            })
            .collect()
    }

    fn pending(client: &ClientShared, binding_id: u64) {
        client.update(|s| {
            s.set_binding(Binding::Pending {
                binding_id,
                request_id: "r1".into(),
            });
        });
    }

    #[test]
    fn a_bind_answer_binds_and_states_flow_only_for_that_binding() {
        let stats = Arc::new(GatewayStats::default());
        let client = ClientShared::new(1, Arc::clone(&stats));
        pending(&client, 7);
        client.deliver(Delivery::BindResult {
            binding_id: 6,
            result: Ok("stale".into()),
        });
        assert!(
            drain(&client).is_empty(),
            "an answer for another binding is ignored"
        );
        client.deliver(Delivery::BindResult {
            binding_id: 7,
            result: Ok("s1".into()),
        });
        client.deliver(Delivery::State {
            binding_id: 7,
            state: state("s1", 1),
        });
        client.deliver(Delivery::State {
            binding_id: 7,
            state: state("s1", 0),
        });
        client.deliver(Delivery::State {
            binding_id: 8,
            state: state("other", 0),
        });
        let sent = drain(&client);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(
            sent[0].contains(r#""response":"bindResource""#),
            "{}",
            sent[0]
        );
        assert_eq!(sent[1], "state s1");
        assert_eq!(stats.events_received.get(), 2);
        assert_eq!(stats.events_conflated.get(), 1);
        assert_eq!(stats.bindings.get(), 1);
        assert_eq!(stats.queued.get(), 0, "everything queued was taken");
    }

    #[test]
    fn service_news_reach_a_bound_client_only_through_its_binding_and_only_once() {
        let client = ClientShared::new(1, Arc::new(GatewayStats::default()));
        pending(&client, 1);
        client.deliver(Delivery::BindResult {
            binding_id: 1,
            result: Ok("s1".into()),
        });
        drain(&client);
        let down = Availability {
            available: false,
            info: None,
        };
        client.deliver(Delivery::Service {
            binding_id: None,
            now: down.clone(),
        });
        assert!(drain(&client).is_empty(), "a broadcast skips bound clients");
        for _ in 0..2 {
            client.deliver(Delivery::Service {
                binding_id: Some(1),
                now: down.clone(),
            });
        }
        let sent = drain(&client);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].contains("service.unavailable"));

        client.deliver(Delivery::Unbound {
            binding_id: 1,
            reason: UnboundReason::SessionEnded,
            now: down,
        });
        let sent = drain(&client);
        assert_eq!(sent.len(), 1, "already told it is unavailable: {sent:?}");
        assert!(sent[0].contains("sessionEnded"));
        assert_eq!(client.lock().binding, Binding::Unbound);
    }
}

//! What waits to be written to one client: control messages in order, and state events
//! conflated per target.
//!
//! A `state.updated` event carries its target's entire view state, so a newer one makes an
//! older one of the same target worthless. While a client is slow, only the newest state of
//! each target waits, in the order targets first appeared, and memory stays bounded by the
//! number of targets whatever the event rate.
//!
//! Control messages (responses, core and service events) are never conflated, and they are
//! barriers: a state event queued after one is never merged into a slot before it. So a bind
//! response precedes the binding's states, and after `service.available` the client gets the
//! full state even if older states of the same targets still wait ahead of it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::client::BoundSession;
use crate::delivery::StateDelivery;

/// One queued message.
#[derive(Debug)]
pub(crate) enum Item {
    /// A serialized control message.
    Control(String),
    /// The newest state of a target, serialized when sent; boxed so that a slot costs a
    /// pointer.
    State(Box<Queued>),
}

/// A waiting state event and the session it belongs to.
#[derive(Debug)]
pub(crate) struct Queued {
    /// The event.
    pub(crate) state: StateDelivery,
    /// Its session, as the binding it arrived for had it.
    pub(crate) session: Arc<BoundSession>,
}

/// The queue of one connection.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    items: VecDeque<Item>,
    /// Sequence number of `items[0]`; a slot's sequence never changes while it waits.
    head: u64,
    /// Target → sequence of its waiting state, for slots after the last control message.
    latest: HashMap<String, u64>,
    controls: usize,
    conflated: u64,
}

/// Capacity above which an emptied queue gives its memory back: small enough that an idle
/// connection keeps next to nothing, large enough that steady traffic does not reallocate.
const KEEP_CAPACITY: usize = 4;

impl Outbound {
    /// Queues a control message.
    pub(crate) fn push_control(&mut self, message: String) {
        self.latest.clear();
        self.items.push_back(Item::Control(message));
        self.controls += 1;
    }

    /// Queues a state event, replacing the waiting state of its target if there is one
    /// after the last control message.
    /// Returns true when it replaced a waiting state (conflation).
    pub(crate) fn push_state(&mut self, state: StateDelivery, session: Arc<BoundSession>) -> bool {
        if let Some(&sequence) = self.latest.get(&state.target) {
            let index = usize::try_from(sequence - self.head).unwrap_or(usize::MAX);
            if let Some(Item::State(slot)) = self.items.get_mut(index) {
                **slot = Queued { state, session };
                self.conflated += 1;
                return true;
            }
        }
        let sequence = self.head + self.items.len() as u64;
        self.latest.insert(state.target.clone(), sequence);
        self.items
            .push_back(Item::State(Box::new(Queued { state, session })));
        false
    }

    /// Takes the next message to send.
    pub(crate) fn pop(&mut self) -> Option<Item> {
        let item = self.items.pop_front()?;
        let sequence = self.head;
        self.head += 1;
        match &item {
            Item::Control(_) => self.controls -= 1,
            Item::State(queued) => {
                if self.latest.get(&queued.state.target) == Some(&sequence) {
                    self.latest.remove(&queued.state.target);
                }
            }
        }
        if self.items.is_empty() {
            // An idle connection should hold no memory from its last burst.
            if self.items.capacity() > KEEP_CAPACITY {
                self.items = VecDeque::new();
            }
            if self.latest.capacity() > 0 {
                self.latest = HashMap::new();
            }
        }
        Some(item)
    }

    /// Control messages waiting.
    pub(crate) fn controls(&self) -> usize {
        self.controls
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// State events replaced by a newer one so far.
    pub(crate) fn conflated(&self) -> u64 {
        self.conflated
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use wfm_proto::v1 as pb;

    use super::*;
    use crate::catalogue::Catalogue;

    fn session() -> Arc<BoundSession> {
        Arc::new(BoundSession {
            id: "s".into(),
            event_prefix: "".into(),
        })
    }

    /// A state of `target`; `version` is carried in its enabled bits.
    fn state(target: &str, version: u64) -> StateDelivery {
        let catalogue = Catalogue::from_wire(pb::Catalogue {
            wire_version: wfm_proto::ATTACH_WIRE_VERSION,
            names: Vec::new(),
        })
        .unwrap();
        StateDelivery {
            target: target.into(),
            context: Vec::new(),
            defined: 0,
            enabled: version,
            catalogue: Arc::new(catalogue),
            trace: HashMap::new(),
            received: Instant::now(),
        }
    }

    fn push(queue: &mut Outbound, target: &str, version: u64) -> bool {
        queue.push_state(state(target, version), session())
    }

    fn drain(queue: &mut Outbound) -> Vec<String> {
        std::iter::from_fn(|| queue.pop())
            .map(|item| match item {
                Item::Control(text) => text,
                Item::State(q) => format!("{}@{}", q.state.target, q.state.enabled),
            })
            .collect()
    }

    #[test]
    fn newer_states_replace_older_ones_in_first_arrival_order() {
        let mut queue = Outbound::default();
        push(&mut queue, "a", 1);
        push(&mut queue, "b", 1);
        assert!(push(&mut queue, "a", 2));
        push(&mut queue, "c", 1);
        push(&mut queue, "b", 2);
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.conflated(), 2);
        assert_eq!(drain(&mut queue), ["a@2", "b@2", "c@1"]);
    }

    #[test]
    fn control_messages_are_barriers_and_keep_their_order() {
        let mut queue = Outbound::default();
        push(&mut queue, "a", 1);
        queue.push_control("response".into());
        push(&mut queue, "a", 2);
        push(&mut queue, "a", 3);
        queue.push_control("event".into());
        assert_eq!(queue.controls(), 2);
        assert_eq!(drain(&mut queue), ["a@1", "response", "a@3", "event"]);
        assert_eq!(queue.controls(), 0);
    }

    #[test]
    fn a_sent_state_is_not_replaced_and_memory_is_bounded_by_targets() {
        let mut queue = Outbound::default();
        push(&mut queue, "a", 1);
        assert_eq!(drain(&mut queue), ["a@1"]);
        for version in 0..10_000 {
            push(&mut queue, &format!("t{}", version % 20), version);
        }
        assert_eq!(queue.len(), 20);
        let drained = drain(&mut queue);
        assert_eq!(drained[0], "t0@9980");
        assert_eq!(drained[19], "t19@9999");
        assert_eq!(
            queue.items.capacity(),
            0,
            "an emptied queue frees its buffer"
        );
    }
}

//! What waits to be written to one client: control messages in order, and state events
//! conflated per target.
//!
//! A `state.updated` event carries its target's entire view state, so a newer one makes an
//! older one of the same target worthless. While a client is slow, only the newest state of
//! each target waits, in the order targets first appeared, and memory stays bounded by the
//! number of targets whatever the event rate.
//!
//! A target that appears and goes while its events wait (an interaction created and ended
//! under a stalled client) is dropped altogether: the client never saw it, so it needs no
//! final event, and a client that stops reading cannot make the queue grow by the
//! interactions it missed. The queue remembers which targets the client has been sent, for
//! as long as they live, and only for the session it was last sent: a connection that binds
//! one session after another (each ended without final events for its targets) keeps one
//! session's targets, not every session's it ever showed.
//!
//! Control messages (responses, core and service events) are never conflated, and they are
//! barriers: a state event queued after one is never merged into a slot before it. So a bind
//! response precedes the binding's states, and after `service.available` the client gets the
//! full state even if older states of the same targets still wait ahead of it.

use std::collections::{HashMap, HashSet, VecDeque};
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

/// A place in the queue: an item, or one dropped while it waited (its target went before
/// the client saw it).
#[derive(Debug)]
enum Slot {
    Item(Item),
    Dropped,
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
    items: VecDeque<Slot>,
    /// Sequence number of `items[0]`; a slot's sequence never changes while it waits.
    head: u64,
    /// Target → sequence of its waiting state, for slots after the last control message.
    latest: HashMap<String, u64>,
    /// Targets of `known_session` whose state the client has been sent, and not yet their
    /// final event.
    known: HashSet<String>,
    /// The session `known` describes: the one the client was last sent a state of.
    known_session: Option<Arc<BoundSession>>,
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
        self.items.push_back(Slot::Item(Item::Control(message)));
        self.controls += 1;
    }

    /// Queues a state event, replacing the waiting state of its target if there is one
    /// after the last control message.
    /// Returns true when it replaced a waiting state (conflation).
    pub(crate) fn push_state(&mut self, state: StateDelivery, session: Arc<BoundSession>) -> bool {
        if state.gone && !self.has_seen(&session, &state.target) {
            self.forget(&state.target);
            return true;
        }
        if let Some(&sequence) = self.latest.get(&state.target) {
            let index = usize::try_from(sequence - self.head).unwrap_or(usize::MAX);
            if let Some(Slot::Item(Item::State(slot))) = self.items.get_mut(index) {
                **slot = Queued { state, session };
                self.conflated += 1;
                return true;
            }
        }
        let sequence = self.head + self.items.len() as u64;
        self.latest.insert(state.target.clone(), sequence);
        self.items
            .push_back(Slot::Item(Item::State(Box::new(Queued { state, session }))));
        false
    }

    /// Whether the client has been sent a state of `target` of `session` that is still live.
    fn has_seen(&self, session: &BoundSession, target: &str) -> bool {
        self.known_session
            .as_ref()
            .is_some_and(|known| known.id == session.id)
            && self.known.contains(target)
    }

    /// Drops the waiting state of a target the client never saw, which has gone.
    fn forget(&mut self, target: &str) {
        let Some(sequence) = self.latest.remove(target) else {
            return;
        };
        let index = usize::try_from(sequence - self.head).unwrap_or(usize::MAX);
        if index + 1 == self.items.len() {
            // The usual case: it appeared last, so it leaves no trace.
            self.items.pop_back();
        } else if let Some(item) = self.items.get_mut(index) {
            *item = Slot::Dropped;
        }
    }

    /// Takes the next message to send.
    pub(crate) fn pop(&mut self) -> Option<Item> {
        let item = loop {
            let Slot::Item(item) = self.items.pop_front()? else {
                self.head += 1;
                continue;
            };
            let sequence = self.head;
            self.head += 1;
            match &item {
                Item::Control(_) => self.controls -= 1,
                Item::State(queued) => {
                    if self
                        .known_session
                        .as_ref()
                        .is_none_or(|known| known.id != queued.session.id)
                    {
                        // The client has moved on to another session: what it was sent of
                        // the last one is of no use for deciding about this one's.
                        self.known = HashSet::new();
                        self.known_session = Some(Arc::clone(&queued.session));
                    }
                    let target = &queued.state.target;
                    if self.latest.get(target) == Some(&sequence) {
                        self.latest.remove(target);
                    }
                    if queued.state.gone {
                        self.known.remove(target);
                    } else if !self.known.contains(target) {
                        self.known.insert(target.clone());
                    }
                }
            }
            break item;
        };
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
        session_named("s")
    }

    fn session_named(id: &str) -> Arc<BoundSession> {
        Arc::new(BoundSession {
            id: id.into(),
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
            gone: false,
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

    fn gone(target: &str) -> StateDelivery {
        StateDelivery {
            gone: true,
            ..state(target, 0)
        }
    }

    fn popped_targets(out: &mut Outbound) -> Vec<(String, bool)> {
        std::iter::from_fn(|| out.pop())
            .filter_map(|item| match item {
                Item::State(queued) => Some((queued.state.target, queued.state.gone)),
                Item::Control(_) => None,
            })
            .collect()
    }

    #[test]
    fn interactions_that_come_and_go_under_a_stalled_client_leave_nothing_queued() {
        let mut out = Outbound::default();
        out.push_state(state("s.voice", 1), session());
        for n in 0..25_000 {
            let target = format!("s.voice.c{n}");
            out.push_state(state(&target, 1), session());
            out.push_state(gone(&target), session());
        }
        assert_eq!(
            out.len(),
            1,
            "only the channel, which the client has not seen yet"
        );
        assert!(out.latest.len() <= 1);
        assert_eq!(popped_targets(&mut out), [("s.voice".to_string(), false)]);
    }

    #[test]
    fn a_target_the_client_saw_still_gets_its_final_event() {
        let mut out = Outbound::default();
        out.push_state(state("s.voice.c1", 1), session());
        assert_eq!(
            popped_targets(&mut out),
            [("s.voice.c1".to_string(), false)]
        );
        out.push_state(state("s.voice.c1", 2), session());
        out.push_state(gone("s.voice.c1"), session());
        assert_eq!(popped_targets(&mut out), [("s.voice.c1".to_string(), true)]);
        // Gone and forgotten: a later target of the same name is new again.
        out.push_state(state("s.voice.c1", 3), session());
        out.push_state(gone("s.voice.c1"), session());
        assert!(popped_targets(&mut out).is_empty());
    }

    #[test]
    fn a_connection_binding_session_after_session_remembers_one_sessions_targets() {
        let mut out = Outbound::default();
        for n in 0..1_000 {
            // Each session ends without final events for its targets (sessionEnded).
            let bound = session_named(&format!("s{n}"));
            for target in ["", ".voice", ".voice.c1", ".chat"] {
                out.push_state(state(&format!("s{n}{target}"), 1), Arc::clone(&bound));
            }
            out.push_control("sessionEnded".into());
            drain(&mut out);
        }
        assert_eq!(out.known.len(), 4, "only the last session's targets");
        // The last session's targets are still known: their final events still go out.
        out.push_state(gone("s999.voice.c1"), session_named("s999"));
        assert_eq!(
            popped_targets(&mut out),
            [("s999.voice.c1".to_string(), true)]
        );
        // Another session's target of the same shape, never sent, is dropped when it goes.
        out.push_state(state("s5.voice.c2", 1), session_named("s5"));
        out.push_state(gone("s5.voice.c2"), session_named("s5"));
        assert_eq!(out.len(), 0);
    }

    #[test]
    fn a_dropped_state_in_the_middle_of_the_queue_keeps_the_order_of_the_rest() {
        let mut out = Outbound::default();
        out.push_state(state("s.voice.c1", 1), session());
        out.push_state(state("s.voice.c2", 1), session());
        out.push_state(gone("s.voice.c1"), session());
        out.push_state(state("s.voice.c2", 2), session());
        assert_eq!(
            popped_targets(&mut out),
            [("s.voice.c2".to_string(), false)]
        );
        assert_eq!(out.len(), 0);
    }
}

//! The bounded queue between the registry and one binding stream (`Attach` or
//! `BindSession`), in engine types: the stream's writer builds the protobuf, outside any
//! session lock.
//!
//! Overflow policy: at most `capacity` state events wait per stream. A state event that
//! finds the queue full is dropped, and its binding turns *stale*: it gets no further state
//! events until the writer has drained the queue below half, when the registry resends the
//! binding its entire current view state (and the final event of each target that went
//! meanwhile). Since every `state.updated` carries a target's entire view state, the newest
//! state of every target still arrives. Control messages (bind results, unbound notices)
//! are never dropped: there is at most one bind result per command, and the stream stops
//! reading commands while its queue is full, and at most one unbound notice per binding.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use wfm_engine::{Id, StateEvent};
use wfm_proto::v1 as pb;

use crate::error::ManagerError;
use crate::stats::ManagerStats;

/// The W3C trace context of the update that caused an event, shared by its events.
pub(crate) type Trace = Arc<HashMap<String, String>>;

/// Why a binding ended, as its stream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnboundReason {
    /// The Interaction Processor ended the session.
    SessionEnded,
    /// Another client bound with `takeover`.
    TakenOver,
    /// The manager is shutting down.
    ShuttingDown,
    /// The binder asked to be released.
    Unbound,
    /// Cluster mode: the session moved to another replica, at this address when known.
    Moved(Option<Arc<str>>),
}

/// One message waiting for a binding stream.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A bind command succeeded (`Attach` only).
    Bound {
        /// The binding id the gateway chose.
        binding_id: u64,
        /// The bound session.
        session_id: Id,
    },
    /// A bind command failed (`Attach` only).
    BindFailed {
        /// The binding id the gateway chose.
        binding_id: u64,
        /// Why.
        error: ManagerError,
    },
    /// The outcome of a command (`Attach` only).
    CommandOutcome {
        /// The binding the command was sent on.
        binding_id: u64,
        /// The outcome.
        outcome: pb::CommandOutcome,
    },
    /// A target's entire view state.
    State {
        /// The binding it is for.
        binding_id: u64,
        /// The event.
        event: StateEvent,
        /// The trace of the update that caused it, when traces are exported.
        trace: Option<Trace>,
    },
    /// The binding has ended.
    Unbound {
        /// The binding.
        binding_id: u64,
        /// Its session.
        session_id: Id,
        /// Why it ended.
        reason: UnboundReason,
    },
}

/// Proof of a binding, used to release or resynchronise exactly that binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bound {
    /// The bound session.
    pub(crate) session_id: Id,
    /// Distinguishes this binding from later ones of the same session.
    pub(crate) token: u64,
}

struct Inner {
    items: VecDeque<Outgoing>,
    /// State events in `items`.
    states: usize,
    /// Bindings that dropped a state event and wait for a resynchronisation.
    stale: Vec<Bound>,
    waker: Option<Waker>,
    senders: usize,
    /// The stream is gone: whatever is still sent is discarded.
    closed: bool,
}

/// The shared queue; producers hold [`Sender`]s, the stream holds the [`Receiver`].
struct Outbox {
    inner: Mutex<Inner>,
    capacity: usize,
    stats: Arc<ManagerStats>,
    /// Signalled when the queue drops below capacity, for the waiting command reader.
    room: Notify,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section is a few queue operations that cannot leave it half-done.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new queue holding at most `capacity` state events; counted in `stats`.
pub(crate) fn channel(capacity: usize, stats: Arc<ManagerStats>) -> (Sender, Receiver) {
    let outbox = Arc::new(Outbox {
        inner: Mutex::new(Inner {
            items: VecDeque::new(),
            states: 0,
            stale: Vec::new(),
            waker: None,
            senders: 1,
            closed: false,
        }),
        capacity: capacity.max(1),
        stats,
        room: Notify::new(),
    });
    (Sender(Arc::clone(&outbox)), Receiver(outbox))
}

/// The producing side; the stream ends once every sender is gone and the queue is empty.
pub(crate) struct Sender(Arc<Outbox>);

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(Arc::clone(&self.0))
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.senders -= 1;
        if inner.senders == 0
            && let Some(waker) = inner.waker.take()
        {
            waker.wake();
        }
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.0.capacity)
            .finish_non_exhaustive()
    }
}

fn push(inner: &mut Inner, item: Outgoing) {
    if inner.closed {
        return;
    }
    inner.items.push_back(item);
    if let Some(waker) = inner.waker.take() {
        waker.wake();
    }
}

impl Sender {
    /// Queues the events of one update under one lock, as many as fit; hands back the
    /// first that did not, followed by the rest. Boxed: an overflow is rare, and the pair
    /// is too large to return by value on every call.
    pub(crate) fn states(
        &self,
        binding_id: u64,
        events: Vec<StateEvent>,
        trace: Option<&Trace>,
    ) -> Result<(), Box<(StateEvent, std::vec::IntoIter<StateEvent>)>> {
        let mut inner = self.0.lock();
        let mut events = events.into_iter();
        while let Some(event) = events.next() {
            if inner.states >= self.0.capacity {
                return Err(Box::new((event, events)));
            }
            self.queue_state(&mut inner, binding_id, event, trace.cloned());
        }
        Ok(())
    }

    /// Queues a resynchronising state event whatever the fill: a resynchronisation starts
    /// only below half the capacity and adds one session's targets.
    pub(crate) fn resync_state(&self, binding_id: u64, event: StateEvent) {
        let mut inner = self.0.lock();
        self.queue_state(&mut inner, binding_id, event, None);
    }

    fn queue_state(
        &self,
        inner: &mut Inner,
        binding_id: u64,
        event: StateEvent,
        trace: Option<Trace>,
    ) {
        if inner.closed {
            return;
        }
        inner.states += 1;
        self.0.stats.stream_queued.inc();
        push(
            inner,
            Outgoing::State {
                binding_id,
                event,
                trace,
            },
        );
    }

    /// Queues a control message; these are never dropped (see the module docs).
    pub(crate) fn control(&self, item: Outgoing) {
        push(&mut self.0.lock(), item);
    }

    /// Asks the writer to resynchronise `bound` once the queue has room.
    pub(crate) fn mark_stale(&self, bound: Bound) {
        let mut inner = self.0.lock();
        if !inner.stale.contains(&bound) {
            inner.stale.push(bound);
        }
    }

    /// Waits until the queue has room for state events again (or the stream is gone), so
    /// that a stream's commands are not read faster than its events are written.
    pub(crate) async fn wait_for_room(&self) {
        loop {
            let room = self.0.room.notified();
            {
                let inner = self.0.lock();
                if inner.closed || inner.states < self.0.capacity {
                    return;
                }
            }
            room.await;
        }
    }
}

/// The consuming side, polled by the stream's writer.
pub(crate) struct Receiver(Arc<Outbox>);

impl Receiver {
    /// The next message; `None` once every sender is gone and nothing waits.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        let mut inner = self.0.lock();
        match inner.items.pop_front() {
            Some(item) => {
                if matches!(item, Outgoing::State { .. }) {
                    if inner.states == self.0.capacity {
                        self.0.room.notify_one();
                    }
                    inner.states -= 1;
                    self.0.stats.stream_queued.dec();
                }
                if inner.items.is_empty() && inner.items.capacity() > 64 {
                    // A queue that absorbed a stall gives its memory back once drained.
                    inner.items = VecDeque::new();
                }
                Poll::Ready(Some(item))
            }
            None if inner.senders == 0 => Poll::Ready(None),
            None => {
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// A stale binding to resynchronise now, if the queue has drained below half.
    pub(crate) fn next_stale(&self) -> Option<Bound> {
        let mut inner = self.0.lock();
        if inner.states * 2 < self.0.capacity {
            inner.stale.pop()
        } else {
            None
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Whatever still waits is discarded with the stream, and so is what comes later.
        let mut inner = self.0.lock();
        inner.closed = true;
        self.0
            .stats
            .stream_queued
            .dec_by(i64::try_from(inner.states).unwrap_or(i64::MAX));
        inner.states = 0;
        inner.items = VecDeque::new();
        inner.stale = Vec::new();
        drop(inner);
        self.0.room.notify_one();
    }
}

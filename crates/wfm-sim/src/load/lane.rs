//! One `PushUpdates` stream of the load generator that survives its replica: the updates
//! sent on it and not yet answered are kept (as small records, not requests), so that a new
//! stream at the next replica first sends them again, in order, then carries on with the
//! queue. A repeated update is answered as a duplicate, so nothing is applied twice.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use wfm_proto::v1 as pb;

use super::Outlet;

/// What one update of a load agent said; enough to build it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Update {
    /// The agent's call was put on hold (`true`) or retrieved.
    Toggle {
        /// The call's new state.
        held: bool,
    },
    /// The agent's whole state, its call held or not.
    Snapshot {
        /// The call's state.
        held: bool,
    },
}

/// One update sent on a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    /// The agent's index in the generator.
    pub(super) agent: usize,
    /// Its sequence number.
    pub(super) sequence: u64,
    /// What it said.
    pub(super) update: Update,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a generator's updates go: a queue, and for a lane that survives failures, the
/// record of what it sent that was not answered yet.
pub(super) struct Lane {
    tx: Outlet,
    log: Option<Mutex<VecDeque<Entry>>>,
}

impl Lane {
    /// A queue nobody replays (the benchmark's raw targets).
    pub(super) fn plain(tx: Outlet) -> Self {
        Self { tx, log: None }
    }

    /// A queue whose unanswered updates are kept for [`Lane::replay`].
    pub(super) fn logged(tx: Outlet) -> Self {
        Self {
            tx,
            log: Some(Mutex::new(VecDeque::new())),
        }
    }

    /// Queues `request`, which `entry` describes.
    pub(super) fn send(&self, entry: Entry, request: pb::ApplyUpdateRequest) {
        match &self.log {
            None => {
                let _ = self.tx.send(request);
            }
            // Under the log's lock, so that the log and the queue hold the same order.
            Some(log) => {
                let mut log = lock(log);
                log.push_back(entry);
                let _ = self.tx.send(request);
            }
        }
    }

    /// The update the next answer is for.
    pub(super) fn answered(&self) -> Option<Entry> {
        self.log.as_ref().and_then(|log| lock(log).pop_front())
    }

    /// Puts back an update whose answer said to try elsewhere: it is sent again first.
    pub(super) fn unanswered(&self, entry: Entry) {
        if let Some(log) = &self.log {
            lock(log).push_front(entry);
        }
    }

    /// Starts a new stream's feed from `inbox`, and returns it with the updates that the old
    /// stream took from the queue and never answered, oldest first.
    pub(super) fn replay(&self, inbox: &Arc<Inbox>) -> (Vec<Entry>, Feed) {
        let Some(log) = &self.log else {
            return (Vec::new(), inbox.feed().0);
        };
        // Senders wait, so that the queue's length and the log agree.
        let log = lock(log);
        let (feed, queued) = inbox.feed();
        let taken = log.len().saturating_sub(queued);
        (log.iter().take(taken).copied().collect(), feed)
    }
}

/// The receiving end of a lane's queue, handed from one stream to the next.
pub(super) struct Inbox {
    /// The current feed's generation, and the queue.
    rx: Mutex<(u64, mpsc::UnboundedReceiver<pb::ApplyUpdateRequest>)>,
}

impl Inbox {
    /// The receiving end of `rx`.
    pub(super) fn new(rx: mpsc::UnboundedReceiver<pb::ApplyUpdateRequest>) -> Arc<Self> {
        Arc::new(Self {
            rx: Mutex::new((0, rx)),
        })
    }

    /// A feed for a new stream, which silences every earlier one, and the updates queued.
    fn feed(self: &Arc<Self>) -> (Feed, usize) {
        let mut rx = lock(&self.rx);
        rx.0 += 1;
        let feed = Feed {
            inbox: Arc::clone(self),
            generation: rx.0,
        };
        (feed, rx.1.len())
    }
}

/// The request stream of one `PushUpdates` call: the lane's queue, until a newer stream
/// takes it over.
pub(super) struct Feed {
    inbox: Arc<Inbox>,
    generation: u64,
}

impl futures_util::Stream for Feed {
    type Item = pb::ApplyUpdateRequest;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut rx = lock(&self.inbox.rx);
        if rx.0 != self.generation {
            return Poll::Ready(None);
        }
        rx.1.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    fn entry(sequence: u64) -> Entry {
        Entry {
            agent: 0,
            sequence,
            update: Update::Toggle { held: true },
        }
    }

    fn request(sequence: u64) -> pb::ApplyUpdateRequest {
        pb::ApplyUpdateRequest {
            sequence,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_new_stream_replays_what_the_old_one_took_and_keeps_the_queue() {
        let (tx, rx) = mpsc::unbounded_channel();
        let lane = Lane::logged(tx);
        let inbox = Inbox::new(rx);
        let (replay, mut first) = lane.replay(&inbox);
        assert!(replay.is_empty());
        for sequence in 1..=4 {
            lane.send(entry(sequence), request(sequence));
        }
        assert_eq!(first.next().await.map(|r| r.sequence), Some(1));
        assert_eq!(first.next().await.map(|r| r.sequence), Some(2));
        assert_eq!(lane.answered(), Some(entry(1)));

        // The stream fails with 2 taken and unanswered, 3 and 4 still queued.
        let (replay, mut second) = lane.replay(&inbox);
        assert_eq!(replay, vec![entry(2)]);
        assert!(first.next().await.is_none(), "the old stream is silenced");
        assert_eq!(second.next().await.map(|r| r.sequence), Some(3));
        assert_eq!(lane.answered(), Some(entry(2)));
        assert_eq!(lane.answered(), Some(entry(3)));
        lane.unanswered(entry(3));
        assert_eq!(lane.answered(), Some(entry(3)));
    }
}

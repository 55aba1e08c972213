//! One timer for every session's deadline (time-boxed after-call work, custom rules on the
//! time in state). A session names its next deadline after each change; a single task
//! sleeps until the earliest one and wakes the sessions that are due, so that 10,000
//! sessions with timers cost one task and one ordered set of `(deadline, session id)`,
//! not a task each.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wfm_engine::Id;

use crate::registry::{Registry, lock};

/// The deadlines of every session, on the manager's clock.
#[derive(Debug)]
pub(crate) struct Timers {
    start: Instant,
    /// The Unix time of `start`, in milliseconds.
    epoch_ms: u64,
    due: Mutex<BTreeSet<(u64, Id)>>,
    wake: Notify,
}

impl Timers {
    /// No deadlines, with the clock starting now.
    pub(crate) fn new() -> Self {
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        Self {
            start: Instant::now(),
            epoch_ms,
            due: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
        }
    }

    /// The manager's time, as sessions count it: Unix milliseconds read once at start and
    /// advanced by the monotonic clock. A step of the wall clock never moves it, and a
    /// session's dates mean the same on every replica, within the skew of their clocks,
    /// so that a persisted session's timers run on at its new owner.
    pub(crate) fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.epoch_ms.saturating_add(elapsed)
    }

    /// When the manager's time reaches `at`.
    fn instant_of(&self, at: u64) -> Instant {
        self.start + Duration::from_millis(at.saturating_sub(self.epoch_ms))
    }

    /// Moves `session`'s deadline from `old` to `new`, waking the task when it comes first.
    pub(crate) fn reschedule(&self, session: &Id, old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        let mut due = lock(&self.due);
        if let Some(old) = old {
            due.remove(&(old, session.clone()));
        }
        if let Some(new) = new {
            let earliest = due.first().map(|(at, _)| *at);
            due.insert((new, session.clone()));
            if earliest.is_none_or(|at| new < at) {
                self.wake.notify_one();
            }
        }
    }

    /// How many sessions wait for a deadline.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.due).len()
    }

    /// The earliest deadline filed.
    pub(crate) fn earliest(&self) -> Option<u64> {
        lock(&self.due).first().map(|(at, _)| *at)
    }

    /// Takes out every session due by `now`.
    fn take_due(&self, now: u64) -> Vec<Id> {
        let mut due = lock(&self.due);
        let mut woken = Vec::new();
        while let Some((at, _)) = due.first() {
            if *at > now {
                break;
            }
            if let Some((_, id)) = due.pop_first() {
                woken.push(id);
            }
        }
        woken
    }
}

/// Wakes the sessions of `registry` at their deadlines until `shutdown`.
pub(crate) async fn run(registry: Arc<Registry>, shutdown: CancellationToken) {
    let timers = registry.timers();
    loop {
        let sleep = match timers.earliest() {
            Some(at) => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(timers.instant_of(at)))
            }
            // Nothing to wait for: a new deadline wakes the task.
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = timers.wake.notified() => continue,
            () = sleep => {}
        }
        let now = timers.now_ms();
        for session in timers.take_due(now) {
            registry.expire(&session, now);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_out_in_order_and_a_moved_one_leaves_no_trace() {
        let timers = Timers::new();
        let a = Id::parse("session id", "a").unwrap();
        let b = Id::parse("session id", "b").unwrap();
        timers.reschedule(&a, None, Some(300));
        timers.reschedule(&b, None, Some(100));
        timers.reschedule(&a, Some(300), Some(200));
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.earliest(), Some(100));
        assert_eq!(timers.take_due(150), std::slice::from_ref(&b));
        assert_eq!(timers.take_due(150), Vec::<Id>::new());
        timers.reschedule(&a, Some(200), None);
        assert_eq!(timers.len(), 0);
    }
}

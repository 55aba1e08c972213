//! The replica's lease: how long it may act as the owner of its sessions without hearing
//! back from NATS. Pure: time enters as an argument.
//!
//! A heartbeat rewrites the replica's node record, which expires `ttl` after the server
//! stored it; the lease is counted from when the heartbeat was *sent*, and ends a margin
//! before `ttl`, so it always ends before the record can expire and the replica's sessions
//! can be taken over. When it lapses, the replica takes a new incarnation: it must then
//! re-acquire each session (a conditional write) before it applies anything more to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One replica's lease and incarnation.
#[derive(Debug)]
pub(crate) struct Lease {
    origin: Instant,
    ttl: Duration,
    incarnation: AtomicU64,
    /// The incarnation before the oldest lapse whose sessions are not all re-acquired yet;
    /// 0 when there is none.
    previous: AtomicU64,
    /// Milliseconds after `origin` when the lease ends; 0 before the first heartbeat.
    valid_until_ms: AtomicU64,
}

impl Lease {
    /// A lease of `ttl` for `incarnation`, not valid until its first heartbeat.
    pub(crate) fn new(origin: Instant, ttl: Duration, incarnation: u64) -> Self {
        Self {
            origin,
            ttl,
            incarnation: AtomicU64::new(incarnation),
            previous: AtomicU64::new(0),
            valid_until_ms: AtomicU64::new(0),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// The current incarnation.
    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Acquire)
    }

    /// The incarnation, if the lease is valid at `now`.
    pub(crate) fn holder(&self, now: Instant) -> Option<u64> {
        (self.millis(now) < self.valid_until_ms.load(Ordering::Acquire)).then(|| self.incarnation())
    }

    /// A heartbeat sent at `sent_at` was stored: the lease runs until a fifth of `ttl`
    /// before the record can expire.
    pub(crate) fn renewed(&self, sent_at: Instant) {
        let until = self.millis(sent_at + self.ttl - self.ttl / 5);
        self.valid_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    /// Whether the lease was held once and has ended by `now`.
    pub(crate) fn lapsed(&self, now: Instant) -> bool {
        let until = self.valid_until_ms.load(Ordering::Acquire);
        until > 0 && self.millis(now) >= until
    }

    /// Starts a new incarnation after a lapse; the next heartbeat makes it valid. The one
    /// before is remembered until [`Lease::reacquired`]; after two lapses in a row, the
    /// older, which the records still name.
    pub(crate) fn reincarnate(&self, incarnation: u64) {
        self.valid_until_ms.store(0, Ordering::Release);
        let old = self.incarnation.swap(incarnation, Ordering::AcqRel);
        let _ = self
            .previous
            .compare_exchange(0, old, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The incarnation before a lapse whose sessions are being re-acquired, if any.
    pub(crate) fn previous(&self) -> Option<u64> {
        Some(self.previous.load(Ordering::Acquire)).filter(|p| *p != 0)
    }

    /// Every session held at the lapse has been re-acquired or dropped.
    pub(crate) fn reacquired(&self) {
        self.previous.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(1000);

    #[test]
    fn a_lease_holds_from_its_heartbeat_until_a_margin_before_the_ttl() {
        let t0 = Instant::now();
        let lease = Lease::new(t0, TTL, 7);
        assert_eq!(lease.holder(t0), None, "no heartbeat yet");
        assert!(!lease.lapsed(t0));
        lease.renewed(t0);
        assert_eq!(lease.holder(t0 + Duration::from_millis(799)), Some(7));
        assert_eq!(lease.holder(t0 + Duration::from_millis(800)), None);
        assert!(lease.lapsed(t0 + Duration::from_millis(800)));
    }

    #[test]
    fn a_late_acknowledgement_of_an_old_heartbeat_does_not_shorten_the_lease() {
        let t0 = Instant::now();
        let lease = Lease::new(t0, TTL, 1);
        lease.renewed(t0 + Duration::from_millis(500));
        lease.renewed(t0);
        assert_eq!(lease.holder(t0 + Duration::from_millis(1200)), Some(1));
    }

    #[test]
    fn a_new_incarnation_holds_nothing_until_its_own_heartbeat() {
        let t0 = Instant::now();
        let lease = Lease::new(t0, TTL, 1);
        lease.renewed(t0);
        let later = t0 + Duration::from_millis(900);
        assert!(lease.lapsed(later));
        lease.reincarnate(2);
        assert_eq!(lease.holder(later), None);
        assert!(!lease.lapsed(later));
        lease.renewed(later);
        assert_eq!(lease.holder(later), Some(2));
    }

    #[test]
    fn the_incarnation_before_a_lapse_is_kept_until_its_sessions_are_reacquired() {
        let t0 = Instant::now();
        let lease = Lease::new(t0, TTL, 1);
        assert_eq!(lease.previous(), None);
        lease.reincarnate(2);
        assert_eq!(lease.previous(), Some(1));
        // A second lapse before the first is settled: the records still name 1.
        lease.reincarnate(3);
        assert_eq!(lease.previous(), Some(1));
        lease.reacquired();
        assert_eq!(lease.previous(), None);
        lease.reincarnate(4);
        assert_eq!(lease.previous(), Some(3));
    }
}

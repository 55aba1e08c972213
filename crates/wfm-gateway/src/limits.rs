//! The per-connection budgets: `governor` rate limiters, for requests and for bind attempts.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Allows `burst` requests at once and `rate` per second sustained.
#[derive(Debug)]
pub(crate) struct RequestLimiter<C: Clock = DefaultClock>(
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
);

impl RequestLimiter {
    /// A limiter with its whole burst available.
    pub(crate) fn new(burst: u32, rate: u32) -> Self {
        Self::with_clock(burst, rate, DefaultClock::default())
    }

    /// `per_minute` at once, refilled evenly over a minute: for bind attempts.
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        let at_least_one = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self(RateLimiter::direct(Quota::per_minute(at_least_one)))
    }
}

impl<C: Clock> RequestLimiter<C> {
    fn with_clock(burst: u32, rate: u32, clock: C) -> Self {
        // The settings are validated to be at least 1; zero would mean one, not none.
        let at_least_one = |n| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(at_least_one(rate)).allow_burst(at_least_one(burst));
        Self(RateLimiter::direct_with_clock(quota, clock))
    }

    /// Spends one request of the budget if there is one.
    pub(crate) fn try_take(&self) -> bool {
        self.0.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = RequestLimiter::with_clock(3, 2, clock.clone());
        assert!((0..3).all(|_| limiter.try_take()));
        assert!(!limiter.try_take());
        clock.advance(Duration::from_millis(500));
        assert!(limiter.try_take());
        assert!(!limiter.try_take());
        clock.advance(Duration::from_secs(60));
        assert_eq!((0..10).filter(|_| limiter.try_take()).count(), 3);
    }

    #[test]
    fn a_limiter_costs_an_idle_connection_a_few_bytes() {
        // The gateway's goal is at most 16 KiB per idle connection, and the limiter lives
        // inline in each connection's state.
        assert!(std::mem::size_of::<RequestLimiter>() <= 64);
    }
}

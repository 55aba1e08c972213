//! A connection's clocks: the ping schedule, the pong deadline, the idle timeout and the
//! bind deadline. Time comes in as an argument, so the connection task decides when to
//! look and the tests drive the clocks with tokio's paused time.

use std::time::Duration;

use tokio::time::Instant;

use crate::settings::GatewayConfig;

/// The durations the clocks run on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Between pings.
    pub(crate) ping_interval: Duration,
    /// How long a ping may go unanswered.
    pub(crate) pong_timeout: Duration,
    /// How long an unbound connection may send nothing.
    pub(crate) idle_timeout: Duration,
    /// How long the manager may take to answer a bind.
    pub(crate) request_timeout: Duration,
}

impl Limits {
    /// The limits `config` sets.
    pub(crate) fn of(config: &GatewayConfig) -> Self {
        Self {
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            idle_timeout: config.idle_timeout,
            request_timeout: config.request_timeout,
        }
    }
}

/// What the binding is doing, as far as the clocks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not bound: the idle timeout runs.
    Unbound,
    /// Waiting for the manager's answer to a bind: the bind deadline runs.
    Binding,
    /// Bound.
    Bound,
}

/// A clock that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// The client did not answer a ping in time.
    Pong,
    /// The unbound client sent nothing for the idle timeout.
    Idle,
    /// The manager did not answer the bind in time.
    Bind,
}

/// The clocks of one connection.
#[derive(Debug)]
pub(crate) struct Timers {
    limits: Limits,
    next_ping: Instant,
    /// When the unanswered ping became due.
    awaiting_pong: Option<Instant>,
    ping_due: bool,
    last_request: Instant,
    bind_started: Option<Instant>,
}

impl Timers {
    /// Clocks started at `now`.
    pub(crate) fn new(limits: Limits, now: Instant) -> Self {
        Self {
            limits,
            next_ping: now + limits.ping_interval,
            awaiting_pong: None,
            ping_due: false,
            last_request: now,
            bind_started: None,
        }
    }

    /// The earliest instant a clock has to be looked at in `phase`; `idle_runs` is false
    /// once the connection is closing.
    pub(crate) fn deadline(&self, phase: Phase, idle_runs: bool) -> Instant {
        let limits = &self.limits;
        let mut deadline = self.next_ping;
        if let Some(since) = self.awaiting_pong {
            deadline = deadline.min(since + limits.pong_timeout);
        }
        if phase == Phase::Unbound && idle_runs {
            deadline = deadline.min(self.last_request + limits.idle_timeout);
        }
        if let (Phase::Binding, Some(started)) = (phase, self.bind_started) {
            deadline = deadline.min(started + limits.request_timeout);
        }
        deadline
    }

    /// Looks at the clocks at `now`: schedules a ping when one is due, and reports the
    /// clock that ran out, if any.
    pub(crate) fn tick(&mut self, now: Instant, phase: Phase) -> Option<Expired> {
        let limits = self.limits;
        if self
            .awaiting_pong
            .is_some_and(|since| now >= since + limits.pong_timeout)
        {
            return Some(Expired::Pong);
        }
        if now >= self.next_ping {
            if self.awaiting_pong.is_none() {
                self.ping_due = true;
                self.awaiting_pong = Some(now);
            }
            self.next_ping = now + limits.ping_interval;
        }
        match phase {
            Phase::Unbound if now >= self.last_request + limits.idle_timeout => Some(Expired::Idle),
            Phase::Binding
                if self
                    .bind_started
                    .is_some_and(|started| now >= started + limits.request_timeout) =>
            {
                Some(Expired::Bind)
            }
            _ => None,
        }
    }

    /// Whether a ping should be written now; true once per due ping.
    pub(crate) fn take_ping(&mut self) -> bool {
        std::mem::take(&mut self.ping_due)
    }

    /// The client sent a frame: it is alive, whatever the frame.
    pub(crate) fn heard(&mut self) {
        self.awaiting_pong = None;
    }

    /// The client sent a request at `now`.
    pub(crate) fn requested(&mut self, now: Instant) {
        self.last_request = now;
    }

    /// A bind went to the manager at `now`.
    pub(crate) fn bind_sent(&mut self, now: Instant) {
        self.bind_started = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        ping_interval: Duration::from_secs(20),
        pong_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
    };

    async fn advance_to(at: Instant) {
        tokio::time::advance(at.saturating_duration_since(Instant::now())).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_is_due_each_interval_and_an_unanswered_one_expires() {
        let mut timers = Timers::new(LIMITS, Instant::now());
        let first = timers.deadline(Phase::Bound, true);
        assert_eq!(first, Instant::now() + LIMITS.ping_interval);
        advance_to(first).await;
        assert_eq!(timers.tick(Instant::now(), Phase::Bound), None);
        assert!(timers.take_ping());
        assert!(!timers.take_ping(), "one ping per interval");
        // The pong deadline comes before the next ping.
        let pong_deadline = timers.deadline(Phase::Bound, true);
        assert_eq!(pong_deadline, Instant::now() + LIMITS.pong_timeout);
        advance_to(pong_deadline).await;
        assert_eq!(
            timers.tick(Instant::now(), Phase::Bound),
            Some(Expired::Pong)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn any_frame_answers_the_ping() {
        let mut timers = Timers::new(LIMITS, Instant::now());
        advance_to(timers.deadline(Phase::Bound, true)).await;
        timers.tick(Instant::now(), Phase::Bound);
        assert!(timers.take_ping());
        tokio::time::advance(Duration::from_secs(9)).await;
        timers.heard();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(timers.tick(Instant::now(), Phase::Bound), None);
        assert!(!timers.take_ping());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unbound_connection_idles_out_unless_it_asks_for_something() {
        let limits = Limits {
            ping_interval: Duration::from_secs(3600),
            ..LIMITS
        };
        let mut timers = Timers::new(limits, Instant::now());
        tokio::time::advance(Duration::from_secs(50)).await;
        timers.requested(Instant::now());
        let idle = timers.deadline(Phase::Unbound, true);
        assert_eq!(idle, Instant::now() + LIMITS.idle_timeout);
        assert_eq!(
            timers.deadline(Phase::Unbound, false),
            Instant::now() + Duration::from_secs(3550),
            "a closing connection's idle clock does not run"
        );
        advance_to(idle).await;
        assert_eq!(
            timers.tick(Instant::now(), Phase::Bound),
            None,
            "bound: never idle"
        );
        assert_eq!(
            timers.tick(Instant::now(), Phase::Unbound),
            Some(Expired::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_bind_the_manager_does_not_answer_in_time_expires() {
        let mut timers = Timers::new(LIMITS, Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        timers.bind_sent(Instant::now());
        let deadline = timers.deadline(Phase::Binding, true);
        assert_eq!(deadline, Instant::now() + LIMITS.request_timeout);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(timers.tick(Instant::now(), Phase::Binding), None);
        advance_to(deadline).await;
        assert_eq!(
            timers.tick(Instant::now(), Phase::Binding),
            Some(Expired::Bind)
        );
    }
}

//! A connection's clocks: the ping schedule, the pong deadline, the idle timeout and the
//! bind deadline. Time comes in as an argument, so the connection task decides when to
//! look and the tests step the clocks to exact instants, with no wall-clock sleeps (and
//! without tokio's `test-util`, which would give the test build another tokio than the
//! release binary's).

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
    /// When the idle clock last restarted: the client's latest request, or the moment its
    /// binding ended, whichever is later.
    last_request: Instant,
    /// The phase last observed, to see a binding end.
    phase: Phase,
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
            phase: Phase::Unbound,
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

    /// The connection is in `phase` at `now`. A binding that just ended restarts the idle
    /// clock: the client sent nothing while it was bound (it had no need to), and must not
    /// be closed the moment its session ends. It gets the whole idle timeout to bind again.
    pub(crate) fn observe(&mut self, phase: Phase, now: Instant) {
        if phase == Phase::Unbound && self.phase != Phase::Unbound {
            self.last_request = self.last_request.max(now);
        }
        self.phase = phase;
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

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_ping_is_due_each_interval_and_an_unanswered_one_expires() {
        let t0 = Instant::now();
        let mut timers = Timers::new(LIMITS, t0);
        assert_eq!(timers.deadline(Phase::Bound, true), t0 + secs(20));
        assert_eq!(timers.tick(t0 + secs(19), Phase::Bound), None);
        assert!(!timers.take_ping(), "not due yet");
        assert_eq!(timers.tick(t0 + secs(20), Phase::Bound), None);
        assert!(timers.take_ping());
        assert!(!timers.take_ping(), "one ping per interval");
        // The pong deadline comes before the next ping.
        assert_eq!(timers.deadline(Phase::Bound, true), t0 + secs(30));
        assert_eq!(timers.tick(t0 + secs(29), Phase::Bound), None);
        assert_eq!(
            timers.tick(t0 + secs(30), Phase::Bound),
            Some(Expired::Pong)
        );
    }

    #[test]
    fn a_binding_that_ends_restarts_the_idle_clock() {
        let t0 = Instant::now();
        let mut timers = Timers::new(LIMITS, t0);
        timers.requested(t0);
        timers.observe(Phase::Binding, t0);
        timers.observe(Phase::Bound, t0 + secs(1));
        // Bound far longer than the idle timeout, sending nothing; then the session ends.
        timers.observe(Phase::Unbound, t0 + secs(600));
        timers.heard();
        assert_eq!(timers.tick(t0 + secs(659), Phase::Unbound), None);
        // Still unbound: the clock does not restart again, and runs out as before.
        timers.heard();
        timers.observe(Phase::Unbound, t0 + secs(659));
        assert_eq!(
            timers.tick(t0 + secs(660), Phase::Unbound),
            Some(Expired::Idle)
        );
    }

    #[test]
    fn any_frame_answers_the_ping() {
        let t0 = Instant::now();
        let mut timers = Timers::new(LIMITS, t0);
        timers.tick(t0 + secs(20), Phase::Bound);
        assert!(timers.take_ping());
        timers.heard();
        assert_eq!(timers.tick(t0 + secs(35), Phase::Bound), None);
        assert_eq!(timers.deadline(Phase::Bound, true), t0 + secs(40));
        timers.tick(t0 + secs(40), Phase::Bound);
        assert!(timers.take_ping(), "the next ping is on schedule");
    }

    #[test]
    fn an_unbound_connection_idles_out_unless_it_asks_for_something() {
        let limits = Limits {
            ping_interval: secs(3600),
            ..LIMITS
        };
        let t0 = Instant::now();
        let mut timers = Timers::new(limits, t0);
        timers.requested(t0 + secs(50));
        assert_eq!(timers.deadline(Phase::Unbound, true), t0 + secs(110));
        assert_eq!(
            timers.deadline(Phase::Unbound, false),
            t0 + secs(3600),
            "a closing connection's idle clock does not run"
        );
        assert_eq!(timers.tick(t0 + secs(109), Phase::Unbound), None);
        assert_eq!(
            timers.tick(t0 + secs(110), Phase::Bound),
            None,
            "bound: never idle"
        );
        assert_eq!(
            timers.tick(t0 + secs(110), Phase::Unbound),
            Some(Expired::Idle)
        );
    }

    #[test]
    fn a_bind_the_manager_does_not_answer_in_time_expires() {
        let t0 = Instant::now();
        let mut timers = Timers::new(LIMITS, t0);
        timers.bind_sent(t0 + secs(1));
        assert_eq!(timers.deadline(Phase::Binding, true), t0 + secs(6));
        assert_eq!(timers.tick(t0 + secs(5), Phase::Binding), None);
        assert_eq!(
            timers.tick(t0 + secs(6), Phase::Binding),
            Some(Expired::Bind)
        );
        assert_eq!(
            timers.tick(t0 + secs(6), Phase::Bound),
            None,
            "answered: no deadline"
        );
    }
}

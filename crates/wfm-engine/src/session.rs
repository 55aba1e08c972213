//! One session: its CTI state, its sequence, and the view state last emitted to its binder.

use std::sync::Arc;

use crate::custom::Circumstances;
use crate::error::UpdateError;
use crate::id::{self, Id};
use crate::model::{AgentState, Pending, SessionState};
use crate::profile::Profile;
use crate::update::{self, CtiUpdate};
use crate::view::{StateEvent, TargetView, ViewState};

/// What applying an update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The sequence number was already applied; nothing changed.
    Duplicate,
    /// The update was applied; these targets' view states changed (possibly none).
    Changed(Vec<StateEvent>),
}

/// A session's state machine. Pure: no I/O, no clocks, no async.
#[derive(Debug, Clone)]
pub struct Session {
    id: Id,
    profile: Arc<Profile>,
    state: SessionState,
    view: ViewState,
    last_sequence: u64,
    view_version: u64,
    /// The latest time the caller has given, in its milliseconds; never goes back.
    now_ms: u64,
    /// When each channel (by position in `state.channels`) entered its agent state; `None`
    /// until the session first sees the clock, since a state reported at creation began at
    /// a time nobody told it.
    since_ms: Vec<Option<u64>>,
    /// The agent's group, `""` when none: custom rules may read it.
    agent_group: Arc<str>,
}

/// What a persisted session carries besides its CTI state and profile.
#[derive(Debug, Clone, Copy, Default)]
pub struct Persisted<'a> {
    /// The last sequence it applied.
    pub last_sequence: u64,
    /// Its view version after it.
    pub view_version: u64,
    /// The agent's group, `""` when none.
    pub agent_group: &'a str,
    /// When each channel entered its agent state, in the caller's milliseconds; 0 when
    /// not known. Missing entries count as 0.
    pub state_since_ms: &'a [u64],
    /// The caller's time now.
    pub now_ms: u64,
}

impl Session {
    /// Creates a session from its initial state; the first update then carries sequence 1.
    pub fn new(id: Id, profile: Arc<Profile>, state: SessionState) -> Result<Self, UpdateError> {
        let state = update::validate_state(state)?;
        let view = ViewState::compute(&state, &profile);
        Ok(Session {
            id,
            profile,
            since_ms: vec![None; state.channels.len()],
            state,
            view,
            last_sequence: 0,
            view_version: 1,
            now_ms: 0,
            agent_group: Arc::from(""),
        })
    }

    /// The session for an agent of `group` (`""` for none), which custom rules may read.
    pub fn with_agent_group(mut self, group: &str) -> Result<Self, UpdateError> {
        self.agent_group = id::label("agent group", group)?;
        self.view = ViewState::compute_in(&self.state, &self.profile, self.circumstances());
        Ok(self)
    }

    /// Restores a session persisted elsewhere (cluster mode): its state as of
    /// `persisted.last_sequence`, its group and the dates of its agent states, with its view
    /// recomputed at `persisted.now_ms` and its view version carried on, so that the next
    /// update it accepts is `last_sequence + 1` and its timers run on where they were.
    pub fn restore(
        id: Id,
        profile: Arc<Profile>,
        state: SessionState,
        persisted: Persisted<'_>,
    ) -> Result<Self, UpdateError> {
        let mut session = Self::new(id, profile, state)?;
        session.last_sequence = persisted.last_sequence;
        session.view_version = persisted.view_version.max(1);
        session.now_ms = persisted.now_ms;
        for (since, &at) in session.since_ms.iter_mut().zip(persisted.state_since_ms) {
            *since = (at != 0).then_some(at);
        }
        session.with_agent_group(persisted.agent_group)
    }

    /// When each channel entered its agent state, in the caller's milliseconds (0 when not
    /// known yet), in channel order: what a persisted record keeps.
    pub fn state_since_ms(&self) -> impl Iterator<Item = u64> + '_ {
        self.since_ms.iter().map(|since| since.unwrap_or(0))
    }

    /// The agent's group, `""` when none.
    pub fn agent_group(&self) -> &str {
        &self.agent_group
    }

    fn circumstances(&self) -> Circumstances<'_> {
        Circumstances {
            agent_group: &self.agent_group,
            now_ms: self.now_ms,
            since_ms: &self.since_ms,
        }
    }

    /// Applies `update` carrying `sequence`.
    ///
    /// The next number is applied, a repeat is acknowledged as [`Applied::Duplicate`], a gap is
    /// refused with the expected number, and a snapshot is applied whatever its number and
    /// resets the sequence to it. 0 (unset on the wire) and `u64::MAX` (no number could
    /// follow it) are refused. A refused update changes nothing, including the sequence.
    pub fn apply(&mut self, sequence: u64, update: CtiUpdate) -> Result<Applied, UpdateError> {
        self.apply_at(sequence, update, self.now_ms)
    }

    /// [`Session::apply`] at time `now_ms` (any monotonic milliseconds the caller keeps),
    /// which dates the agent states the update changes; an earlier time than one already
    /// given counts as that one.
    pub fn apply_at(
        &mut self,
        sequence: u64,
        update: CtiUpdate,
        now_ms: u64,
    ) -> Result<Applied, UpdateError> {
        if sequence == 0 || sequence == u64::MAX {
            return Err(UpdateError::InvalidSequence(sequence));
        }
        let is_snapshot = matches!(update, CtiUpdate::Snapshot(_));
        if !is_snapshot {
            if sequence <= self.last_sequence {
                return Ok(Applied::Duplicate);
            }
            let expected = self.last_sequence + 1;
            if sequence != expected {
                return Err(UpdateError::SequenceGap {
                    expected,
                    got: sequence,
                });
            }
        }
        let changed_channel = match &update {
            CtiUpdate::Channel(c) => self
                .state
                .channels
                .iter()
                .position(|ch| ch.id == c.id)
                .filter(|&i| self.state.channels[i].state != c.state),
            _ => None,
        };
        update::apply(&mut self.state, update)?;
        self.last_sequence = sequence;
        let now = self.tick(now_ms);
        if is_snapshot {
            self.since_ms.clear();
            self.since_ms.resize(self.state.channels.len(), Some(now));
        } else if let Some(since) = changed_channel.and_then(|i| self.since_ms.get_mut(i)) {
            *since = Some(now);
        }
        Ok(Applied::Changed(self.refresh()))
    }

    /// Gives the session the caller's time without an update: agent states reported at
    /// creation are dated from it, so that their deadlines can run.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.tick(now_ms);
    }

    /// Advances the clock to `now_ms` (never back) and dates the states not dated yet.
    fn tick(&mut self, now_ms: u64) -> u64 {
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        for since in self.since_ms.iter_mut().filter(|s| s.is_none()) {
            *since = Some(now);
        }
        now
    }

    /// The session's next deadline, if it has one: when the earliest time-boxed after-call
    /// work runs out (`acw_timeout_secs` from entering it, once more per extension the
    /// platform reports, up to `max_wrap_up_extensions`), or when a channel's time in state
    /// reaches a mark of a custom rule, whichever comes first. The caller wakes the session
    /// then and calls [`Session::expire`].
    pub fn next_deadline(&self) -> Option<u64> {
        self.wrap_up_deadline()
            .into_iter()
            .chain(self.rule_deadline())
            .min()
    }

    fn wrap_up_deadline(&self) -> Option<u64> {
        let options = self.profile.options();
        let timeout_ms = u64::from(options.acw_timeout_secs).saturating_mul(1000);
        if timeout_ms == 0 {
            return None;
        }
        self.state
            .channels
            .iter()
            .zip(&self.since_ms)
            .filter(|(c, _)| c.state == AgentState::AfterCallWork)
            .filter_map(|(c, since)| {
                let boxes = 1 + u64::from(c.wrap_up_extensions.min(options.max_wrap_up_extensions));
                since.map(|s| s.saturating_add(timeout_ms.saturating_mul(boxes)))
            })
            .min()
    }

    /// The first time after now at which a channel's time in state crosses a rule's mark.
    fn rule_deadline(&self) -> Option<u64> {
        let marks = self.profile.custom().marks_ms();
        self.since_ms
            .iter()
            .flatten()
            .filter_map(|since| {
                marks
                    .iter()
                    .map(|mark| since.saturating_add(*mark))
                    .find(|&at| at > self.now_ms)
            })
            .min()
    }

    /// Applies what the clock changed by `now_ms` and returns the events. Every after-call
    /// work whose time box has run out ends, as Finesse's wrap-up timer does: to Ready when
    /// a Ready is pending (WORK_READY), else to Not Ready with the pending reason (WORK).
    /// Custom rules on the time in state are evaluated again. The sequence does not move,
    /// and the Interaction Processor's next report of the channel wins as always.
    pub fn expire(&mut self, now_ms: u64) -> Vec<StateEvent> {
        let now = self.tick(now_ms);
        let timed_rules = !self.profile.custom().marks_ms().is_empty();
        if self.end_wrap_ups(now) || timed_rules {
            self.refresh()
        } else {
            Vec::new()
        }
    }

    /// Ends the after-call work whose time box has run out by `now`; whether any did.
    fn end_wrap_ups(&mut self, now: u64) -> bool {
        let options = self.profile.options();
        let timeout_ms = u64::from(options.acw_timeout_secs).saturating_mul(1000);
        if timeout_ms == 0 {
            return false;
        }
        let max_extensions = options.max_wrap_up_extensions;
        let mut expired = false;
        for (channel, since) in self.state.channels.iter_mut().zip(self.since_ms.iter_mut()) {
            let boxes = 1 + u64::from(channel.wrap_up_extensions.min(max_extensions));
            let due = since.map(|s| s.saturating_add(timeout_ms.saturating_mul(boxes)));
            if channel.state != AgentState::AfterCallWork || due.is_none_or(|d| d > now) {
                continue;
            }
            let (state, reason) = match channel.pending {
                Some(Pending::Ready) => (AgentState::Ready, String::new()),
                _ => (
                    AgentState::NotReady,
                    std::mem::take(&mut channel.pending_reason),
                ),
            };
            channel.state = state;
            channel.reason = reason;
            channel.pending = None;
            channel.pending_reason.clear();
            channel.wrap_up_extensions = 0;
            *since = Some(now);
            expired = true;
        }
        expired
    }

    /// Puts `profile` in force (a reloaded version, say) and returns the events of the
    /// targets whose view state changed under it.
    pub fn set_profile(&mut self, profile: Arc<Profile>) -> Vec<StateEvent> {
        self.profile = profile;
        self.refresh()
    }

    /// Recomputes the view state and returns the events for the targets that changed.
    fn refresh(&mut self) -> Vec<StateEvent> {
        let view = ViewState::compute_in(&self.state, &self.profile, self.circumstances());
        let events: Vec<StateEvent> = view
            .changes_since(&self.view)
            .map(|change| {
                StateEvent::new(
                    &self.id,
                    change.view,
                    change.gone,
                    &self.state,
                    &self.profile,
                )
            })
            .collect();
        if !events.is_empty() {
            self.view_version += 1;
        }
        self.view = view;
        events
    }

    /// The full current view state, one event per target, as a newly bound client needs it.
    pub fn full_view(&self) -> Vec<StateEvent> {
        self.view
            .targets()
            .iter()
            .map(|view| self.event_of(view))
            .collect()
    }

    /// The current event of one target of this session's view.
    pub(crate) fn event_of(&self, view: &TargetView) -> StateEvent {
        StateEvent::new(&self.id, view, false, &self.state, &self.profile)
    }

    /// The session id.
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// The profile in force.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The tracked CTI state.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// The last emitted view state.
    pub fn view(&self) -> &ViewState {
        &self.view
    }

    /// The last applied sequence number (0 before any update).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// Counts view-state changes; starts at 1 for the initial view.
    pub fn view_version(&self) -> u64 {
        self.view_version
    }
}

#[cfg(test)]
mod tests;

//! One session: its CTI state, its sequence, and the view state last emitted to its binder.

use std::sync::Arc;

use crate::error::UpdateError;
use crate::id::Id;
use crate::model::SessionState;
use crate::profile::Profile;
use crate::update::{self, CtiUpdate};
use crate::view::{StateEvent, ViewState};

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
}

impl Session {
    /// Creates a session from its initial state; the first update then carries sequence 1.
    pub fn new(id: Id, profile: Arc<Profile>, state: SessionState) -> Result<Self, UpdateError> {
        let state = update::validate_state(state)?;
        let view = ViewState::compute(&state, &profile);
        Ok(Session {
            id,
            profile,
            state,
            view,
            last_sequence: 0,
            view_version: 1,
        })
    }

    /// Restores a session persisted elsewhere (cluster mode): its state as of
    /// `last_sequence`, with its view recomputed and its view version carried on, so that
    /// the next update it accepts is `last_sequence + 1`.
    pub fn restore(
        id: Id,
        profile: Arc<Profile>,
        state: SessionState,
        last_sequence: u64,
        view_version: u64,
    ) -> Result<Self, UpdateError> {
        let mut session = Self::new(id, profile, state)?;
        session.last_sequence = last_sequence;
        session.view_version = view_version.max(1);
        Ok(session)
    }

    /// Applies `update` carrying `sequence`.
    ///
    /// The next number is applied, a repeat is acknowledged as [`Applied::Duplicate`], a gap is
    /// refused with the expected number, and a snapshot is applied whatever its number and
    /// resets the sequence to it. 0 (unset on the wire) and `u64::MAX` (no number could
    /// follow it) are refused. A refused update changes nothing, including the sequence.
    pub fn apply(&mut self, sequence: u64, update: CtiUpdate) -> Result<Applied, UpdateError> {
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
        update::apply(&mut self.state, update)?;
        self.last_sequence = sequence;
        Ok(Applied::Changed(self.refresh()))
    }

    /// Puts `profile` in force (a reloaded version, say) and returns the events of the
    /// targets whose view state changed under it.
    pub fn set_profile(&mut self, profile: Arc<Profile>) -> Vec<StateEvent> {
        self.profile = profile;
        self.refresh()
    }

    /// Recomputes the view state and returns the events for the targets that changed.
    fn refresh(&mut self) -> Vec<StateEvent> {
        let view = ViewState::compute(&self.state, &self.profile);
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
            .map(|view| StateEvent::new(&self.id, view, false, &self.state, &self.profile))
            .collect()
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

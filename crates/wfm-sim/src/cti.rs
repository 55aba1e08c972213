//! The CTI state an Interaction Processor has reported for one session, kept as the
//! manager keeps it, so that a snapshot or a new `CreateSession` can carry all of it.
//!
//! It follows the manager's rules for updates it accepted: a channel update replaces that
//! channel's agent state, an interaction change sets the fields it carries, and an
//! interaction that ends is forgotten. What the manager would refuse (a change of an
//! unknown channel or interaction) changes nothing here either.

use wfm_proto::v1 as pb;

/// Channels and live interactions of one session, in the order they appeared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CtiState {
    channels: Vec<pb::Channel>,
    interactions: Vec<pb::Interaction>,
}

impl CtiState {
    /// The state a session was created with.
    pub fn new(channels: Vec<pb::Channel>, interactions: Vec<pb::Interaction>) -> Self {
        let mut state = Self {
            channels,
            interactions,
        };
        state.forget_ended();
        state
    }

    /// The channels.
    pub fn channels(&self) -> &[pb::Channel] {
        &self.channels
    }

    /// The interactions that have not ended.
    pub fn interactions(&self) -> &[pb::Interaction] {
        &self.interactions
    }

    /// The whole state, as a snapshot update carries it.
    pub fn snapshot(&self) -> pb::Snapshot {
        pb::Snapshot {
            channels: self.channels.clone(),
            interactions: self.interactions.clone(),
        }
    }

    /// Records an update the manager accepted (or the IP reports in a snapshot).
    pub fn apply(&mut self, update: &pb::cti_update::Kind) {
        use pb::cti_update::Kind;
        match update {
            Kind::Snapshot(snapshot) => {
                *self = Self::new(snapshot.channels.clone(), snapshot.interactions.clone());
            }
            Kind::Channel(channel) => {
                // The channel's media is fixed at creation; an update may leave it unset.
                if let Some(known) = self
                    .channels
                    .iter_mut()
                    .find(|c| c.channel_id == channel.channel_id)
                {
                    known.state = channel.state;
                    known.reason.clone_from(&channel.reason);
                    known.pending = channel.pending;
                    known.pending_reason.clone_from(&channel.pending_reason);
                    known.wrap_up_extensions = channel.wrap_up_extensions;
                    // 0 means not reported in this update: the manager keeps the old one.
                    if channel.capacity != 0 {
                        known.capacity = channel.capacity;
                    }
                }
            }
            Kind::InteractionCreated(item) => {
                self.interactions
                    .retain(|i| i.interaction_id != item.interaction_id);
                self.interactions.push(item.clone());
                self.forget_ended();
            }
            Kind::InteractionChanged(change) => self.change(change),
        }
    }

    fn change(&mut self, change: &pb::InteractionChange) {
        let Some(item) = self
            .interactions
            .iter_mut()
            .find(|i| i.interaction_id == change.interaction_id)
        else {
            return;
        };
        if let Some(state) = change.state {
            item.state = state;
        }
        if let Some(consult_of) = &change.consult_of {
            item.consult_of.clone_from(consult_of);
        }
        if let Some(parties) = change.parties {
            item.parties = parties;
        }
        if let Some(intent) = change.consult_intent {
            item.consult_intent = intent;
        }
        if let Some(list) = &change.participants {
            item.participants.clone_from(&list.participants);
        }
        if let Some(supervision) = change.supervision {
            item.supervision = supervision;
        }
        if let Some(monitored) = change.monitored {
            item.monitored = monitored;
        }
        if let Some(preview) = change.preview {
            item.preview = preview;
        }
        if let Some(callback_of) = &change.callback_of {
            item.callback_of.clone_from(callback_of);
        }
        if let Some(recording) = change.recording {
            item.recording = recording;
        }
        if let Some(muted) = change.muted {
            item.muted = muted;
        }
        if let Some(disposition) = &change.disposition {
            item.disposition.clone_from(disposition);
        }
        for (key, value) in &change.data {
            if value.is_empty() {
                item.data.remove(key);
            } else {
                item.data.insert(key.clone(), value.clone());
            }
        }
        self.forget_ended();
    }

    fn forget_ended(&mut self) {
        let ended = i32::from(pb::InteractionState::Ended);
        self.interactions.retain(|i| i.state != ended);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::cti_update::Kind;

    fn voice(state: pb::AgentState) -> pb::Channel {
        pb::Channel {
            channel_id: "voice".into(),
            media: pb::Media::Voice.into(),
            state: state.into(),
            ..Default::default()
        }
    }

    fn change(state: pb::InteractionState) -> Kind {
        Kind::InteractionChanged(pb::InteractionChange {
            interaction_id: "c1".into(),
            state: Some(state.into()),
            ..Default::default()
        })
    }

    #[test]
    fn updates_build_the_state_the_manager_holds_and_ended_calls_are_forgotten() {
        let mut state = CtiState::new(vec![voice(pb::AgentState::Ready)], vec![]);
        state.apply(&Kind::InteractionCreated(pb::Interaction {
            interaction_id: "c1".into(),
            channel_id: "voice".into(),
            state: pb::InteractionState::Alerting.into(),
            ..Default::default()
        }));
        state.apply(&Kind::Channel(pb::Channel {
            media: 0,
            ..voice(pb::AgentState::Busy)
        }));
        state.apply(&change(pb::InteractionState::Connected));
        state.apply(&Kind::InteractionChanged(pb::InteractionChange {
            interaction_id: "c1".into(),
            muted: Some(true),
            data: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        }));
        let snapshot = state.snapshot();
        assert_eq!(snapshot.channels, vec![voice(pb::AgentState::Busy)]);
        let call = &snapshot.interactions[0];
        assert_eq!(call.state, i32::from(pb::InteractionState::Connected));
        assert!(call.muted);
        assert_eq!(call.data.get("k").map(String::as_str), Some("v"));

        state.apply(&change(pb::InteractionState::Ended));
        assert!(state.interactions().is_empty());
        state.apply(&Kind::Snapshot(pb::Snapshot {
            channels: vec![voice(pb::AgentState::LoggedOut)],
            interactions: vec![],
        }));
        assert_eq!(
            state,
            CtiState::new(vec![voice(pb::AgentState::LoggedOut)], vec![])
        );
    }
}

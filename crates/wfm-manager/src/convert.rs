//! Conversions between `wfm.v1` wire messages and engine types. Nothing else touches both.

use std::collections::HashMap;

use wfm_engine::{
    AgentState, Capability, ChannelUpdate, ConsultIntent, CtiUpdate, Direction, Id,
    InteractionChange, InteractionState, Media, Participant, ParticipantRole, Pending, Recording,
    SessionState, StateEvent, Supervision,
};
use wfm_proto::v1 as pb;

use crate::error::ManagerError;
use crate::outbox::{Trace, UnboundReason};
use crate::registry::SessionView;

/// A conversion result; a refused message carries the error the RPC returns.
pub type Result<T> = std::result::Result<T, ManagerError>;

/// Decodes an enum field, refusing numbers the contract does not define. The typed
/// conversions below then refuse an unspecified value where the field is required.
fn decode<E: TryFrom<i32>>(field: &'static str, value: i32) -> Result<E> {
    E::try_from(value).map_err(|_| ManagerError::UnknownEnumValue { field, value })
}

fn media(value: pb::Media) -> Result<Media> {
    Ok(match value {
        pb::Media::Unspecified => return Err(ManagerError::MissingField("channel.media")),
        pb::Media::Voice => Media::Voice,
        pb::Media::Chat => Media::Chat,
        pb::Media::Email => Media::Email,
        pb::Media::Task => Media::Task,
        pb::Media::Callback => Media::Callback,
    })
}

fn media_to_wire(value: Media) -> pb::Media {
    match value {
        Media::Voice => pb::Media::Voice,
        Media::Chat => pb::Media::Chat,
        Media::Email => pb::Media::Email,
        Media::Task => pb::Media::Task,
        Media::Callback => pb::Media::Callback,
    }
}

fn agent_state(value: pb::AgentState) -> Result<AgentState> {
    Ok(match value {
        pb::AgentState::Unspecified => return Err(ManagerError::MissingField("channel.state")),
        pb::AgentState::LoggedOut => AgentState::LoggedOut,
        pb::AgentState::NotReady => AgentState::NotReady,
        pb::AgentState::Ready => AgentState::Ready,
        pb::AgentState::Reserved => AgentState::Reserved,
        pb::AgentState::Busy => AgentState::Busy,
        pb::AgentState::AfterCallWork => AgentState::AfterCallWork,
    })
}

fn agent_state_to_wire(value: AgentState) -> pb::AgentState {
    match value {
        AgentState::LoggedOut => pb::AgentState::LoggedOut,
        AgentState::NotReady => pb::AgentState::NotReady,
        AgentState::Ready => pb::AgentState::Ready,
        AgentState::Reserved => pb::AgentState::Reserved,
        AgentState::Busy => pb::AgentState::Busy,
        AgentState::AfterCallWork => pb::AgentState::AfterCallWork,
    }
}

fn pending(value: pb::PendingState) -> Option<Pending> {
    match value {
        pb::PendingState::None => None,
        pb::PendingState::Ready => Some(Pending::Ready),
        pb::PendingState::NotReady => Some(Pending::NotReady),
    }
}

fn pending_to_wire(value: Option<Pending>) -> pb::PendingState {
    match value {
        None => pb::PendingState::None,
        Some(Pending::Ready) => pb::PendingState::Ready,
        Some(Pending::NotReady) => pb::PendingState::NotReady,
    }
}

fn direction(value: pb::Direction) -> Result<Direction> {
    Ok(match value {
        pb::Direction::Unspecified => {
            return Err(ManagerError::MissingField("interaction.direction"));
        }
        pb::Direction::Inbound => Direction::Inbound,
        pb::Direction::Outbound => Direction::Outbound,
        pb::Direction::Internal => Direction::Internal,
        pb::Direction::Consult => Direction::Consult,
    })
}

fn direction_to_wire(value: Direction) -> pb::Direction {
    match value {
        Direction::Inbound => pb::Direction::Inbound,
        Direction::Outbound => pb::Direction::Outbound,
        Direction::Internal => pb::Direction::Internal,
        Direction::Consult => pb::Direction::Consult,
    }
}

fn interaction_state(value: pb::InteractionState) -> Result<InteractionState> {
    use pb::InteractionState as W;
    Ok(match value {
        W::Unspecified => return Err(ManagerError::MissingField("interaction.state")),
        W::Alerting => InteractionState::Alerting,
        W::Dialing => InteractionState::Dialing,
        W::Connected => InteractionState::Connected,
        W::Held => InteractionState::Held,
        W::Failed => InteractionState::Failed,
        W::Offered => InteractionState::Offered,
        W::Active => InteractionState::Active,
        W::Paused => InteractionState::Paused,
        W::WrapUp => InteractionState::WrapUp,
        W::Ended => InteractionState::Ended,
    })
}

fn interaction_state_to_wire(value: InteractionState) -> pb::InteractionState {
    use pb::InteractionState as W;
    match value {
        InteractionState::Alerting => W::Alerting,
        InteractionState::Dialing => W::Dialing,
        InteractionState::Connected => W::Connected,
        InteractionState::Held => W::Held,
        InteractionState::Failed => W::Failed,
        InteractionState::Offered => W::Offered,
        InteractionState::Active => W::Active,
        InteractionState::Paused => W::Paused,
        InteractionState::WrapUp => W::WrapUp,
        InteractionState::Ended => W::Ended,
    }
}

fn consult_intent(value: pb::ConsultIntent) -> ConsultIntent {
    match value {
        pb::ConsultIntent::Unspecified => ConsultIntent::Unspecified,
        pb::ConsultIntent::Transfer => ConsultIntent::Transfer,
        pb::ConsultIntent::Conference => ConsultIntent::Conference,
    }
}

fn consult_intent_to_wire(value: ConsultIntent) -> pb::ConsultIntent {
    match value {
        ConsultIntent::Unspecified => pb::ConsultIntent::Unspecified,
        ConsultIntent::Transfer => pb::ConsultIntent::Transfer,
        ConsultIntent::Conference => pb::ConsultIntent::Conference,
    }
}

/// A reported participant; the role is required.
fn participant(wire: pb::Participant) -> Result<Participant> {
    let role = match decode("participant.role", wire.role)? {
        pb::ParticipantRole::Unspecified => {
            return Err(ManagerError::MissingField("participant.role"));
        }
        pb::ParticipantRole::Agent => ParticipantRole::Agent,
        pb::ParticipantRole::Customer => ParticipantRole::Customer,
        pb::ParticipantRole::Consult => ParticipantRole::Consult,
        pb::ParticipantRole::Supervisor => ParticipantRole::Supervisor,
    };
    Ok(Participant {
        id: wire.participant_id,
        role,
        is_self: wire.is_self,
        controller: wire.controller,
    })
}

/// Participants as reported; the engine checks their number and ids with the rest.
fn participants(wire: Vec<pb::Participant>) -> Result<Vec<Participant>> {
    wire.into_iter().map(participant).collect()
}

fn participant_to_wire(value: &Participant) -> pb::Participant {
    pb::Participant {
        participant_id: value.id.clone(),
        role: match value.role {
            ParticipantRole::Agent => pb::ParticipantRole::Agent,
            ParticipantRole::Customer => pb::ParticipantRole::Customer,
            ParticipantRole::Consult => pb::ParticipantRole::Consult,
            ParticipantRole::Supervisor => pb::ParticipantRole::Supervisor,
        }
        .into(),
        is_self: value.is_self,
        controller: value.controller,
    }
}

fn supervision(value: pb::Supervision) -> Supervision {
    match value {
        pb::Supervision::Own => Supervision::Own,
        pb::Supervision::Supervised => Supervision::Supervised,
        pb::Supervision::Monitoring => Supervision::Monitoring,
        pb::Supervision::Whispering => Supervision::Whispering,
        pb::Supervision::Barged => Supervision::Barged,
    }
}

fn supervision_to_wire(value: Supervision) -> pb::Supervision {
    match value {
        Supervision::Own => pb::Supervision::Own,
        Supervision::Supervised => pb::Supervision::Supervised,
        Supervision::Monitoring => pb::Supervision::Monitoring,
        Supervision::Whispering => pb::Supervision::Whispering,
        Supervision::Barged => pb::Supervision::Barged,
    }
}

fn recording(value: pb::Recording) -> Recording {
    match value {
        pb::Recording::Off => Recording::Off,
        pb::Recording::Active => Recording::Active,
        pb::Recording::Paused => Recording::Paused,
    }
}

fn recording_to_wire(value: Recording) -> pb::Recording {
    match value {
        Recording::Off => pb::Recording::Off,
        Recording::Active => pb::Recording::Active,
        Recording::Paused => pb::Recording::Paused,
    }
}

/// An id, or `None` for the empty string of an unset optional relation.
fn optional_id(what: &'static str, value: &str) -> Result<Option<Id>> {
    if value.is_empty() {
        Ok(None)
    } else {
        Ok(Some(Id::parse(what, value)?))
    }
}

/// A channel as reported in `CreateSession` or a snapshot.
pub(crate) fn channel(wire: pb::Channel) -> Result<wfm_engine::Channel> {
    Ok(wfm_engine::Channel {
        id: Id::parse("channel id", &wire.channel_id)?,
        media: media(decode("channel.media", wire.media)?)?,
        state: agent_state(decode("channel.state", wire.state)?)?,
        reason: wire.reason,
        pending: pending(decode("channel.pending", wire.pending)?),
        pending_reason: wire.pending_reason,
        // Checked against the limit by the engine, with the rest of the state.
        capacity: wire.capacity,
        wrap_up_extensions: wire.wrap_up_extensions,
    })
}

/// A new interaction.
pub(crate) fn interaction(wire: pb::Interaction) -> Result<wfm_engine::Interaction> {
    let mut item = wfm_engine::Interaction::new(
        Id::parse("interaction id", &wire.interaction_id)?,
        Id::parse("channel id", &wire.channel_id)?,
        direction(decode("interaction.direction", wire.direction)?)?,
        interaction_state(decode("interaction.state", wire.state)?)?,
    );
    item.consult_of = optional_id("consult_of interaction id", &wire.consult_of)?;
    item.consult_intent =
        consult_intent(decode("interaction.consult_intent", wire.consult_intent)?);
    item.parties = wire.parties.max(2);
    item.participants = participants(wire.participants)?;
    item.supervision = supervision(decode("interaction.supervision", wire.supervision)?);
    item.monitored = wire.monitored;
    item.preview = wire.preview;
    item.callback_of = optional_id("callback_of interaction id", &wire.callback_of)?;
    item.recording = recording(decode("interaction.recording", wire.recording)?);
    item.muted = wire.muted;
    item.disposition = wire.disposition;
    item.caller = wire.caller.into();
    item.queue = wire.queue.into();
    item.data = std::sync::Arc::new(wire.data.into_iter().collect());
    Ok(item)
}

/// A whole session state, as `CreateSession` and snapshots carry it.
pub fn state(
    channels: Vec<pb::Channel>,
    interactions: Vec<pb::Interaction>,
) -> Result<SessionState> {
    Ok(SessionState {
        channels: channels.into_iter().map(channel).collect::<Result<_>>()?,
        interactions: interactions
            .into_iter()
            .map(interaction)
            .collect::<Result<_>>()?,
    })
}

/// A CTI update, as `ApplyUpdate` and `PushUpdates` carry it.
pub fn update(wire: Option<pb::CtiUpdate>) -> Result<CtiUpdate> {
    use pb::cti_update::Kind;
    let kind = wire
        .and_then(|u| u.kind)
        .ok_or(ManagerError::MissingField("update"))?;
    Ok(match kind {
        Kind::Snapshot(s) => CtiUpdate::Snapshot(state(s.channels, s.interactions)?),
        Kind::Channel(c) => CtiUpdate::Channel(ChannelUpdate {
            id: Id::parse("channel id", &c.channel_id)?,
            media: match c.media {
                0 => None,
                value => Some(media(decode("channel.media", value)?)?),
            },
            state: agent_state(decode("channel.state", c.state)?)?,
            reason: c.reason,
            pending: pending(decode("channel.pending", c.pending)?),
            pending_reason: c.pending_reason,
            capacity: (c.capacity != 0).then_some(c.capacity),
            wrap_up_extensions: c.wrap_up_extensions,
        }),
        Kind::InteractionCreated(i) => CtiUpdate::InteractionCreated(interaction(i)?),
        Kind::InteractionChanged(c) => {
            let mut change =
                InteractionChange::new(Id::parse("interaction id", &c.interaction_id)?);
            change.state = c
                .state
                .map(|s| decode("interaction.state", s).and_then(interaction_state))
                .transpose()?;
            change.consult_of = c
                .consult_of
                .map(|id| optional_id("consult_of interaction id", &id))
                .transpose()?;
            change.consult_intent = c
                .consult_intent
                .map(|i| decode("interaction.consult_intent", i).map(consult_intent))
                .transpose()?;
            change.parties = c.parties.map(|p| p.max(2));
            change.participants = c
                .participants
                .map(|list| participants(list.participants))
                .transpose()?;
            change.supervision = c
                .supervision
                .map(|s| decode("interaction.supervision", s).map(supervision))
                .transpose()?;
            change.monitored = c.monitored;
            change.preview = c.preview;
            change.callback_of = c
                .callback_of
                .map(|id| optional_id("callback_of interaction id", &id))
                .transpose()?;
            change.recording = c
                .recording
                .map(|r| decode("interaction.recording", r).map(recording))
                .transpose()?;
            change.muted = c.muted;
            change.disposition = c.disposition;
            change.data = c.data.into_iter().collect();
            CtiUpdate::InteractionChanged(change)
        }
    })
}

/// A `state.updated` event with its capabilities by name, as `BindSession`, `CreateSession`
/// and `GetSession` carry it for third-party clients.
pub(crate) fn state_updated(session_id: &Id, event: StateEvent) -> pb::StateUpdated {
    pb::StateUpdated {
        session_id: session_id.to_string(),
        context: event
            .context
            .entries()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        capabilities: event
            .capabilities()
            .map(|(cap, enabled)| pb::Capability {
                name: cap.name().to_string(),
                enabled,
            })
            .collect(),
        target: event.target,
        trace_context: HashMap::new(),
    }
}

/// The catalogue that the bits of every `CompactState` on an Attach stream index: the
/// engine's, in its order, so that a capability's bit is its discriminant.
pub(crate) fn catalogue() -> pb::Catalogue {
    pb::Catalogue {
        wire_version: wfm_proto::ATTACH_WIRE_VERSION,
        names: Capability::ALL
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
    }
}

/// A `state.updated` event on an Attach stream: capabilities as bits, context in order.
pub(crate) fn compact_state(event: StateEvent, trace: Option<&Trace>) -> pb::CompactState {
    pb::CompactState {
        context: event
            .context
            .entries()
            .map(|(key, value)| pb::ContextEntry {
                key: key.to_string(),
                value: value.to_string(),
            })
            .collect(),
        defined: event.defined.bits(),
        enabled: event.enabled.bits(),
        target: event.target,
        trace_context: trace.map(|t| (**t).clone()).unwrap_or_default(),
        gone: event.gone,
    }
}

/// The notice that a binding of `session_id` ended, on the wire.
pub(crate) fn unbound(session_id: &Id, reason: &UnboundReason) -> pb::Unbound {
    let (reason, owner_url) = match reason {
        UnboundReason::SessionEnded => (pb::UnboundReason::SessionEnded, None),
        UnboundReason::TakenOver => (pb::UnboundReason::TakenOver, None),
        UnboundReason::ShuttingDown => (pb::UnboundReason::ShuttingDown, None),
        UnboundReason::Unbound => (pb::UnboundReason::Unbound, None),
        UnboundReason::Moved(owner_url) => (pb::UnboundReason::Moved, owner_url.as_deref()),
    };
    pb::Unbound {
        session_id: session_id.to_string(),
        reason: reason.into(),
        owner_url: owner_url.unwrap_or_default().to_string(),
    }
}

/// A session's view state, by name.
pub(crate) fn view_state(session_id: &Id, view: Vec<StateEvent>) -> Vec<pb::StateUpdated> {
    view.into_iter()
        .map(|event| state_updated(session_id, event))
        .collect()
}

/// `GetSession`'s answer.
pub(crate) fn session_view(view: SessionView) -> pb::GetSessionResponse {
    pb::GetSessionResponse {
        session_id: view.session_id.to_string(),
        agent_id: view.agent_id,
        profile: view.profile,
        state: Some(state_to_wire(&view.state)),
        last_sequence: view.last_sequence,
        view_version: view.view_version,
        view_state: view_state(&view.session_id, view.view_state),
        bound: view.bound,
    }
}

/// A session state on the wire, for `GetSession` and cluster records; [`state`] reads it back.
pub fn state_to_wire(state: &SessionState) -> pb::Snapshot {
    pb::Snapshot {
        channels: state
            .channels
            .iter()
            .map(|c| pb::Channel {
                channel_id: c.id.to_string(),
                media: media_to_wire(c.media).into(),
                state: agent_state_to_wire(c.state).into(),
                reason: c.reason.clone(),
                pending: pending_to_wire(c.pending).into(),
                pending_reason: c.pending_reason.clone(),
                capacity: c.capacity,
                wrap_up_extensions: c.wrap_up_extensions,
            })
            .collect(),
        interactions: state
            .interactions
            .iter()
            .map(|i| pb::Interaction {
                interaction_id: i.id.to_string(),
                channel_id: i.channel.to_string(),
                direction: direction_to_wire(i.direction).into(),
                state: interaction_state_to_wire(i.state).into(),
                consult_of: i.consult_of.as_ref().map(Id::to_string).unwrap_or_default(),
                parties: i.parties,
                recording: recording_to_wire(i.recording).into(),
                muted: i.muted,
                disposition: i.disposition.clone(),
                caller: i.caller.to_string(),
                queue: i.queue.to_string(),
                data: i.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                consult_intent: consult_intent_to_wire(i.consult_intent).into(),
                participants: i.participants.iter().map(participant_to_wire).collect(),
                supervision: supervision_to_wire(i.supervision).into(),
                monitored: i.monitored,
                preview: i.preview,
                callback_of: i
                    .callback_of
                    .as_ref()
                    .map(Id::to_string)
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn wire_interaction() -> pb::Interaction {
        pb::Interaction {
            interaction_id: "call-1".into(),
            channel_id: "voice".into(),
            direction: pb::Direction::Inbound.into(),
            state: pb::InteractionState::Alerting.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_state_round_trips_through_the_wire() {
        let channels = vec![pb::Channel {
            channel_id: "voice".into(),
            media: pb::Media::Voice.into(),
            state: pb::AgentState::Busy.into(),
            pending: pb::PendingState::NotReady.into(),
            pending_reason: "lunch".into(),
            capacity: 3,
            ..Default::default()
        }];
        let mut call = wire_interaction();
        call.data.insert("tier".into(), "vip".into());
        call.parties = 3;
        call.consult_intent = pb::ConsultIntent::Transfer.into();
        call.supervision = pb::Supervision::Whispering.into();
        call.monitored = true;
        call.preview = true;
        call.callback_of = "cb-1".into();
        call.participants = vec![pb::Participant {
            participant_id: "agent-7".into(),
            role: pb::ParticipantRole::Agent.into(),
            is_self: true,
            controller: true,
        }];
        let engine = state(channels.clone(), vec![call.clone()]).unwrap();
        let back = state_to_wire(&engine);
        assert_eq!(back.channels, channels);
        assert_eq!(back.interactions, vec![call]);
    }

    #[test]
    fn unspecified_and_unknown_enum_values_are_named() {
        let mut missing = wire_interaction();
        missing.state = 0;
        assert_eq!(
            interaction(missing).unwrap_err().to_string(),
            "missing required field interaction.state"
        );
        let mut unknown = wire_interaction();
        unknown.direction = 42;
        assert_eq!(
            interaction(unknown).unwrap_err().to_string(),
            "field interaction.direction has unknown value 42"
        );
        assert_eq!(
            update(None).unwrap_err().to_string(),
            "missing required field update"
        );
        let mut roleless = wire_interaction();
        roleless.participants = vec![pb::Participant::default()];
        assert_eq!(
            interaction(roleless).unwrap_err().to_string(),
            "missing required field participant.role"
        );
        let mut intent = wire_interaction();
        intent.consult_intent = 9;
        assert_eq!(
            interaction(intent).unwrap_err().to_string(),
            "field interaction.consult_intent has unknown value 9"
        );
        let change = pb::CtiUpdate {
            kind: Some(pb::cti_update::Kind::InteractionChanged(
                pb::InteractionChange {
                    interaction_id: "call-1".into(),
                    consult_intent: Some(7),
                    ..Default::default()
                },
            )),
        };
        assert_eq!(
            update(Some(change)).unwrap_err().to_string(),
            "field interaction.consult_intent has unknown value 7"
        );
    }

    #[test]
    fn a_channel_update_without_a_capacity_keeps_the_one_reported_before() {
        let wire = |capacity| pb::CtiUpdate {
            kind: Some(pb::cti_update::Kind::Channel(pb::Channel {
                channel_id: "chat".into(),
                state: pb::AgentState::Ready.into(),
                capacity,
                ..Default::default()
            })),
        };
        let capacity_of = |u: CtiUpdate| match u {
            CtiUpdate::Channel(c) => c.capacity,
            other => panic!("not a channel update: {other:?}"),
        };
        assert_eq!(capacity_of(update(Some(wire(0))).unwrap()), None);
        assert_eq!(capacity_of(update(Some(wire(3))).unwrap()), Some(3));
    }
}

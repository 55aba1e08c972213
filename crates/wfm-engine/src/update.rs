//! CTI updates and how they are validated and applied to a session's state.
//!
//! Every update is validated completely before anything is written, so a refused update
//! leaves the state exactly as it was.

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::UpdateError;
use crate::id::Id;
use crate::limits;
use crate::model::{
    AgentState, ConsultIntent, Interaction, InteractionState, Media, Participant, Pending,
    Recording, SessionState, Supervision,
};

/// One fact reported by the Interaction Processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtiUpdate {
    /// The whole state; replaces everything and resets the sequence.
    Snapshot(SessionState),
    /// The new agent state of an existing channel.
    Channel(ChannelUpdate),
    /// A new interaction.
    InteractionCreated(Interaction),
    /// A change to a known interaction. Reaching `ended` drops it.
    InteractionChanged(InteractionChange),
}

/// The agent state of a channel, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelUpdate {
    /// The channel.
    pub id: Id,
    /// The media the IP believes the channel has; checked when given.
    pub media: Option<Media>,
    /// The new agent state.
    pub state: AgentState,
    /// Not-ready reason code; empty when none.
    pub reason: String,
    /// Pending state requested during work.
    pub pending: Option<Pending>,
    /// Reason code of a pending NotReady.
    pub pending_reason: String,
    /// New capacity; `None` keeps the current one.
    pub capacity: Option<u32>,
    /// Extensions of the current after-call work granted so far.
    pub wrap_up_extensions: u32,
}

/// The fields of an interaction that changed; `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionChange {
    /// The interaction (must be known).
    pub id: Id,
    /// New state.
    pub state: Option<InteractionState>,
    /// New consult relation; `Some(None)` clears it.
    pub consult_of: Option<Option<Id>>,
    /// New consult intent.
    pub consult_intent: Option<ConsultIntent>,
    /// New preview flag.
    pub preview: Option<bool>,
    /// New callback relation; `Some(None)` clears it.
    pub callback_of: Option<Option<Id>>,
    /// New party count.
    pub parties: Option<u32>,
    /// New participants, replacing the reported ones; `Some(vec![])` clears them.
    pub participants: Option<Vec<Participant>>,
    /// New recording state.
    pub recording: Option<Recording>,
    /// New supervision.
    pub supervision: Option<Supervision>,
    /// New monitored flag.
    pub monitored: Option<bool>,
    /// New mute flag.
    pub muted: Option<bool>,
    /// New disposition; empty clears it.
    pub disposition: Option<String>,
    /// Attached data to set; an empty value removes the key.
    pub data: Vec<(String, String)>,
}

/// Validates `state` as a complete session state, dropping interactions reported as ended.
pub(crate) fn validate_state(mut state: SessionState) -> Result<SessionState, UpdateError> {
    if state.channels.is_empty() {
        return Err(UpdateError::NoChannels);
    }
    // Counts first, so that nothing below runs over an oversized state.
    at_most("channels", state.channels.len(), limits::MAX_CHANNELS)?;
    at_most(
        "interactions",
        state.interactions.len(),
        limits::MAX_INTERACTIONS,
    )?;
    let mut seen = HashSet::with_capacity(state.channels.len());
    for channel in &mut state.channels {
        check_channel_text(&channel.reason, &channel.pending_reason)?;
        channel.capacity = capacity(channel.capacity)?;
    }
    for channel in &state.channels {
        if !seen.insert(&channel.id) {
            return Err(UpdateError::DuplicateChannel(channel.id.clone()));
        }
    }
    let mut ids = HashSet::with_capacity(state.interactions.len());
    for item in &state.interactions {
        // Ended ones too: an id listed twice is malformed even if one copy is being dropped.
        if !ids.insert(&item.id) {
            return Err(UpdateError::DuplicateInteraction(item.id.clone()));
        }
    }
    for item in &state.interactions {
        if let Some(consult_of) = item.consult_of.as_ref().filter(|c| !ids.contains(c)) {
            return Err(UpdateError::UnknownConsult {
                interaction: item.id.clone(),
                consult_of: consult_of.clone(),
            });
        }
    }
    let mut checked: Vec<Interaction> = Vec::with_capacity(state.interactions.len());
    let mut ended = Vec::new();
    for item in std::mem::take(&mut state.interactions) {
        let item = admit(&state, item)?;
        if item.state == InteractionState::Ended {
            ended.push(item.id);
        } else {
            checked.push(item);
        }
    }
    for id in &ended {
        forget_consults_of(&mut checked, id);
    }
    state.interactions = checked;
    Ok(state)
}

/// Clears the consult relation of every interaction that consults for `ended`, which is
/// leaving the state. A kept `consult_of` then always names a tracked interaction, so the
/// state stays one that [`validate_state`] accepts: a cluster replica restores a session
/// from exactly this state (found by the `apply_update` fuzz target: ending the original
/// call of a live consult left a state that `Session::restore` refused). The rules read a
/// relation to a missing interaction as no relation, so no capability changes.
fn forget_consults_of(interactions: &mut [Interaction], ended: &Id) {
    for item in interactions {
        if item.consult_of.as_ref() == Some(ended) {
            item.consult_of = None;
        }
    }
}

/// Checks a new interaction against the channels of `state` and shares its channel id.
fn admit(state: &SessionState, mut item: Interaction) -> Result<Interaction, UpdateError> {
    let channel = state
        .channel(&item.channel)
        .ok_or_else(|| UpdateError::UnknownChannel(item.channel.clone()))?;
    check_state(&item.id, item.state, channel.media)?;
    if item.consult_of.as_ref() == Some(&item.id) {
        return Err(UpdateError::ConsultOfSelf(item.id));
    }
    at_most(
        "parties",
        item.parties as usize,
        limits::MAX_PARTIES as usize,
    )?;
    at_most_bytes("disposition", &item.disposition, limits::MAX_TEXT)?;
    at_most_bytes("caller", &item.caller, limits::MAX_TEXT)?;
    at_most_bytes("queue", &item.queue, limits::MAX_TEXT)?;
    check_participants(&item.participants)?;
    at_most(
        "attached-data entries",
        item.data.len(),
        limits::MAX_DATA_ENTRIES,
    )?;
    for (key, value) in item.data.iter() {
        check_data(key, value)?;
    }
    at_most_bytes_total(item.data.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    // Sharing the channel's Arc turns later id comparisons into pointer comparisons.
    item.channel = channel.id.clone();
    Ok(item)
}

/// At most [`limits::MAX_PARTIES`] participants with bounded ids, and at most one of them
/// this agent: a list that names the agent twice cannot be right.
fn check_participants(participants: &[Participant]) -> Result<(), UpdateError> {
    at_most(
        "participants",
        participants.len(),
        limits::MAX_PARTIES as usize,
    )?;
    for participant in participants {
        at_most_bytes("participant id", &participant.id, limits::MAX_TEXT)?;
    }
    at_most(
        "participants marked as this agent",
        participants.iter().filter(|p| p.is_self).count(),
        1,
    )
}

fn at_most(what: &'static str, count: usize, limit: usize) -> Result<(), UpdateError> {
    if count > limit {
        return Err(UpdateError::TooMany { what, limit });
    }
    Ok(())
}

fn at_most_bytes(what: &'static str, text: &str, limit: usize) -> Result<(), UpdateError> {
    if text.len() > limit {
        return Err(UpdateError::TooLong { what, limit });
    }
    Ok(())
}

fn at_most_bytes_total<'a>(
    data: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), UpdateError> {
    let bytes: usize = data.map(|(k, v)| k.len() + v.len()).sum();
    if bytes > limits::MAX_DATA_BYTES {
        return Err(UpdateError::TooLong {
            what: "attached data",
            limit: limits::MAX_DATA_BYTES,
        });
    }
    Ok(())
}

/// A reported capacity within the limit (0: not reported).
fn capacity(reported: u32) -> Result<u32, UpdateError> {
    at_most(
        "concurrent interactions in a channel's capacity",
        reported as usize,
        limits::MAX_CAPACITY as usize,
    )?;
    Ok(reported)
}

fn check_channel_text(reason: &str, pending_reason: &str) -> Result<(), UpdateError> {
    at_most_bytes("reason", reason, limits::MAX_TEXT)?;
    at_most_bytes("pending reason", pending_reason, limits::MAX_TEXT)
}

fn check_data(key: &str, value: &str) -> Result<(), UpdateError> {
    at_most_bytes("attached-data key", key, limits::MAX_DATA_KEY)?;
    at_most_bytes("attached-data value", value, limits::MAX_DATA_VALUE)
}

fn check_state(id: &Id, state: InteractionState, media: Media) -> Result<(), UpdateError> {
    if state.applies_to(media) {
        Ok(())
    } else {
        Err(UpdateError::StateNotForMedia {
            interaction: id.clone(),
            state,
            media,
        })
    }
}

/// Applies a non-snapshot update to `state`, or refuses it without touching `state`.
pub(crate) fn apply(state: &mut SessionState, update: CtiUpdate) -> Result<(), UpdateError> {
    match update {
        CtiUpdate::Snapshot(snapshot) => {
            *state = validate_state(snapshot)?;
        }
        CtiUpdate::Channel(update) => {
            let channel = state
                .channels
                .iter_mut()
                .find(|c| c.id == update.id)
                .ok_or(UpdateError::UnknownChannel(update.id))?;
            if let Some(claimed) = update.media.filter(|m| *m != channel.media) {
                return Err(UpdateError::ChannelMediaMismatch {
                    channel: channel.id.clone(),
                    actual: channel.media,
                    claimed,
                });
            }
            check_channel_text(&update.reason, &update.pending_reason)?;
            let new_capacity = update.capacity.map(capacity).transpose()?;
            channel.state = update.state;
            channel.wrap_up_extensions = update.wrap_up_extensions;
            if let Some(new_capacity) = new_capacity {
                channel.capacity = new_capacity;
            }
            channel.reason = update.reason;
            channel.pending = update.pending;
            channel.pending_reason = update.pending_reason;
        }
        CtiUpdate::InteractionCreated(item) => {
            if state.interaction(&item.id).is_some() {
                return Err(UpdateError::DuplicateInteraction(item.id));
            }
            at_most(
                "interactions",
                state.interactions.len() + 1,
                limits::MAX_INTERACTIONS,
            )?;
            let item = admit(state, item)?;
            if let Some(consult_of) = item
                .consult_of
                .as_ref()
                .filter(|c| state.interaction(c).is_none())
            {
                return Err(UpdateError::UnknownConsult {
                    interaction: item.id.clone(),
                    consult_of: consult_of.clone(),
                });
            }
            if item.state != InteractionState::Ended {
                state.interactions.push(item);
            }
        }
        CtiUpdate::InteractionChanged(change) => apply_change(state, change)?,
    }
    Ok(())
}

fn apply_change(state: &mut SessionState, change: InteractionChange) -> Result<(), UpdateError> {
    let id = change.id.clone();
    let index = state
        .interactions
        .iter()
        .position(|i| i.id == id)
        .ok_or_else(|| UpdateError::UnknownInteraction(id.clone()))?;
    let media = state
        .channel(&state.interactions[index].channel)
        .map(|c| c.media)
        .ok_or_else(|| UpdateError::UnknownChannel(state.interactions[index].channel.clone()))?;
    if let Some(new_state) = change.state {
        check_state(&id, new_state, media)?;
    }
    if change.consult_of.as_ref().and_then(Option::as_ref) == Some(&id) {
        return Err(UpdateError::ConsultOfSelf(id));
    }
    if let Some(consult_of) = change
        .consult_of
        .as_ref()
        .and_then(Option::as_ref)
        .filter(|c| state.interaction(c).is_none())
    {
        return Err(UpdateError::UnknownConsult {
            interaction: id,
            consult_of: consult_of.clone(),
        });
    }
    if let Some(parties) = change.parties {
        at_most("parties", parties as usize, limits::MAX_PARTIES as usize)?;
    }
    if let Some(disposition) = &change.disposition {
        at_most_bytes("disposition", disposition, limits::MAX_TEXT)?;
    }
    if let Some(participants) = &change.participants {
        check_participants(participants)?;
    }
    for (key, value) in &change.data {
        check_data(key, value)?;
    }
    let item = &state.interactions[index];
    let added = change
        .data
        .iter()
        .filter(|(key, value)| !value.is_empty() && !item.data.contains_key(key))
        .count();
    at_most(
        "attached-data entries",
        item.data.len() + added,
        limits::MAX_DATA_ENTRIES,
    )?;
    // The data as it would be after the change: kept entries not overwritten, plus the new.
    let kept = item
        .data
        .iter()
        .filter(|(key, _)| !change.data.iter().any(|(k, _)| k == *key))
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let set = change
        .data
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.as_str()));
    at_most_bytes_total(kept.chain(set))?;

    if change.state == Some(InteractionState::Ended) {
        let ended = state.interactions.remove(index);
        forget_consults_of(&mut state.interactions, &ended.id);
        return Ok(());
    }
    let item = &mut state.interactions[index];
    if let Some(s) = change.state {
        item.state = s;
    }
    if let Some(consult_of) = change.consult_of {
        item.consult_of = consult_of;
    }
    if let Some(intent) = change.consult_intent {
        item.consult_intent = intent;
    }
    if let Some(preview) = change.preview {
        item.preview = preview;
    }
    if let Some(callback_of) = change.callback_of {
        item.callback_of = callback_of;
    }
    if let Some(parties) = change.parties {
        item.parties = parties;
    }
    if let Some(participants) = change.participants {
        item.participants = participants;
    }
    if let Some(recording) = change.recording {
        item.recording = recording;
    }
    if let Some(supervision) = change.supervision {
        item.supervision = supervision;
    }
    if let Some(monitored) = change.monitored {
        item.monitored = monitored;
    }
    if let Some(muted) = change.muted {
        item.muted = muted;
    }
    if let Some(disposition) = change.disposition {
        item.disposition = disposition;
    }
    if !change.data.is_empty() {
        let data = Arc::make_mut(&mut item.data);
        for (key, value) in change.data {
            if value.is_empty() {
                data.remove(&key);
            } else {
                data.insert(key, value);
            }
        }
    }
    Ok(())
}

impl InteractionChange {
    /// A change of interaction `id` that changes nothing yet.
    pub fn new(id: Id) -> Self {
        Self {
            id,
            state: None,
            consult_of: None,
            consult_intent: None,
            preview: None,
            callback_of: None,
            parties: None,
            participants: None,
            supervision: None,
            monitored: None,
            recording: None,
            muted: None,
            disposition: None,
            data: Vec::new(),
        }
    }
}

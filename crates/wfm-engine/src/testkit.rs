//! Test fixtures: terse builders for session states, updates and view-state look-ups.
//!
//! Shared by the engine's unit tests, integration tests and benchmarks, and usable by crates
//! that test code built on the engine. Not meant for production paths.
//!
//! Ids are given as string literals. A literal that [`Id::parse`] refuses is a bug in the
//! calling test, so the builders panic on it with the reason instead of threading a `Result`
//! through every fixture.
//!
//! Interactions are plain structs with public fields: start from [`call`] or [`chat`] and
//! change fields with struct-update syntax, e.g.
//! `Interaction { muted: true, ..call("c1", "voice", Connected) }`.

use std::sync::Arc;

use crate::capability::{CapSet, Capability};
use crate::error::UpdateError;
use crate::id::Id;
use crate::model::{
    AgentState, Channel, Direction, Interaction, InteractionState, Media, SessionState,
};
use crate::profile::{Options, Profile, Switch};
use crate::session::{Applied, Session};
use crate::update::{ChannelUpdate, CtiUpdate, InteractionChange};
use crate::view::Target;

/// The session id every fixture session gets.
pub const SESSION: &str = "s1";

/// Parses a fixture id.
///
/// # Panics
/// When `value` is not a valid [`Id`]: fixture ids are literals written by the test.
pub fn id(value: &str) -> Id {
    match Id::parse("fixture id", value) {
        Ok(id) => id,
        Err(err) => panic!("fixture id {value:?}: {err}"),
    }
}

/// A channel of `media` in agent state `state`, with no reason and no pending state.
pub fn channel(channel_id: &str, media: Media, state: AgentState) -> Channel {
    Channel {
        id: id(channel_id),
        media,
        state,
        reason: String::new(),
        pending: None,
        pending_reason: String::new(),
        capacity: 0,
        wrap_up_extensions: 0,
    }
}

/// A voice channel in `state`.
pub fn voice(channel_id: &str, state: AgentState) -> Channel {
    channel(channel_id, Media::Voice, state)
}

/// A chat channel in `state`.
pub fn chat_channel(channel_id: &str, state: AgentState) -> Channel {
    channel(channel_id, Media::Chat, state)
}

/// An inbound interaction `interaction_id` on `channel_id` in `state`, two parties, no flags.
pub fn interaction(interaction_id: &str, channel_id: &str, state: InteractionState) -> Interaction {
    Interaction::new(
        id(interaction_id),
        id(channel_id),
        Direction::Inbound,
        state,
    )
}

/// A call; the same as [`interaction`], named for readability in voice scenarios.
pub fn call(interaction_id: &str, channel_id: &str, state: InteractionState) -> Interaction {
    interaction(interaction_id, channel_id, state)
}

/// A chat; the same as [`interaction`], named for readability in non-voice scenarios.
pub fn chat(interaction_id: &str, channel_id: &str, state: InteractionState) -> Interaction {
    interaction(interaction_id, channel_id, state)
}

/// A consult leg `interaction_id` placed for `original`.
pub fn consult(
    interaction_id: &str,
    channel_id: &str,
    state: InteractionState,
    original: &str,
) -> Interaction {
    Interaction {
        direction: Direction::Consult,
        consult_of: Some(id(original)),
        ..interaction(interaction_id, channel_id, state)
    }
}

/// A session state of `channels` and `interactions`.
pub fn state(channels: Vec<Channel>, interactions: Vec<Interaction>) -> SessionState {
    SessionState {
        channels,
        interactions,
    }
}

/// A profile named `test` with `options` and the switches in `off` turned off.
pub fn profile(options: Options, off: &[Switch]) -> Profile {
    Profile::new("test", options, off)
}

/// Session [`SESSION`] on `state` under `profile`.
///
/// # Panics
/// When `state` is refused; a fixture state is meant to be valid.
pub fn session_with(profile: Profile, state: SessionState) -> Session {
    match Session::new(id(SESSION), Arc::new(profile), state) {
        Ok(session) => session,
        Err(err) => panic!("fixture state refused: {err}"),
    }
}

/// Session [`SESSION`] on `state` under the default profile.
///
/// # Panics
/// When `state` is refused.
pub fn session(state: SessionState) -> Session {
    session_with(Profile::default(), state)
}

/// The session the benchmarks and property tests share: a voice channel `voice` with a
/// consult pair (`c1` held, its consult leg `c2` connected) and a chat channel `chat` with an
/// active chat `x`, both channels busy.
pub fn two_channel_state() -> SessionState {
    use InteractionState::*;
    state(
        vec![
            voice("voice", AgentState::Busy),
            chat_channel("chat", AgentState::Busy),
        ],
        vec![
            call("c1", "voice", Held),
            consult("c2", "voice", Connected, "c1"),
            chat("x", "chat", Active),
        ],
    )
}

/// Applies `update` with the next sequence number.
pub fn next(session: &mut Session, update: CtiUpdate) -> Result<Applied, UpdateError> {
    session.apply(session.last_sequence() + 1, update)
}

/// An update that changes nothing of interaction `interaction_id` yet.
pub fn change(interaction_id: &str) -> InteractionChange {
    InteractionChange::new(id(interaction_id))
}

/// An update moving interaction `interaction_id` to `state`.
pub fn to_state(interaction_id: &str, state: InteractionState) -> CtiUpdate {
    CtiUpdate::InteractionChanged(InteractionChange {
        state: Some(state),
        ..change(interaction_id)
    })
}

/// A channel update to `state`, with no media claim, reason or pending state.
pub fn channel_update(channel_id: &str, state: AgentState) -> ChannelUpdate {
    ChannelUpdate {
        id: id(channel_id),
        media: None,
        state,
        reason: String::new(),
        pending: None,
        pending_reason: String::new(),
        capacity: None,
        wrap_up_extensions: 0,
    }
}

/// The target named `path` below the session: `""` is the session, `"voice"` a channel and
/// `"voice.c1"` an interaction.
///
/// # Panics
/// When `path` has more than two segments or an invalid id.
pub fn target(path: &str) -> Target {
    let segments: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('.').collect()
    };
    match segments.as_slice() {
        [] => Target::Session,
        [channel] => Target::Channel(id(channel)),
        [channel, interaction] => Target::Interaction {
            channel: id(channel),
            interaction: id(interaction),
        },
        _ => panic!("target path {path:?} has more than two segments"),
    }
}

/// The enabled capabilities of the target at `path` (see [`target`]) in the session's view.
///
/// # Panics
/// When the target is not in the view.
pub fn enabled(session: &Session, path: &str) -> CapSet {
    match session.view().get(&target(path)) {
        Some(view) => view.enabled,
        None => panic!("no target {path:?} in the view"),
    }
}

/// The public names of `caps`, in catalogue order; makes assertion failures readable.
pub fn names(caps: CapSet) -> Vec<&'static str> {
    caps.iter().map(Capability::name).collect()
}

//! Session-state files for `wfm profile explain --snapshot`: the CTI state of one session in
//! TOML, with the same names the wire and the capability catalogue use.
//!
//! ```toml
//! session_id = "s1"                # optional, "session" by default
//!
//! [[channels]]
//! id = "voice"
//! media = "voice"
//! state = "busy"
//! pending = "not_ready"            # optional: ready | not_ready
//! capacity = 3                     # optional: concurrent interactions the platform routes
//!
//! [[interactions]]
//! id = "c1"
//! channel = "voice"
//! direction = "inbound"
//! state = "connected"
//! data = { tier = "vip" }          # optional; also consult_of, consult_intent, parties, recording, muted, disposition,
//!                                  # preview, callback_of, supervision, monitored
//! participants = [{ id = "me", role = "agent", self = true, controller = true }]   # optional
//! ```

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow};
use serde::Deserialize;
use wfm_engine::{
    AgentState, Channel, ConsultIntent, Direction, Id, Interaction, InteractionState, Media,
    Participant, ParticipantRole, Pending, Recording, SessionState, Supervision,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    #[serde(default = "default_session")]
    session_id: String,
    channels: Vec<ChannelEntry>,
    #[serde(default)]
    interactions: Vec<InteractionEntry>,
}

fn default_session() -> String {
    "session".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelEntry {
    id: String,
    media: String,
    state: String,
    #[serde(default)]
    reason: String,
    pending: Option<String>,
    #[serde(default)]
    pending_reason: String,
    #[serde(default)]
    capacity: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionEntry {
    id: String,
    channel: String,
    direction: String,
    state: String,
    consult_of: Option<String>,
    consult_intent: Option<String>,
    #[serde(default = "two")]
    parties: u32,
    #[serde(default)]
    recording: Option<String>,
    #[serde(default)]
    muted: bool,
    #[serde(default)]
    disposition: String,
    #[serde(default)]
    preview: bool,
    callback_of: Option<String>,
    supervision: Option<String>,
    #[serde(default)]
    monitored: bool,
    #[serde(default)]
    participants: Vec<ParticipantEntry>,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantEntry {
    id: String,
    role: String,
    #[serde(default, rename = "self")]
    is_self: bool,
    #[serde(default)]
    controller: bool,
}

fn two() -> u32 {
    2
}

/// Looks `value` up with `parse`, naming the field and what is allowed when it is wrong.
fn named<T>(
    field: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
    allowed: &str,
) -> anyhow::Result<T> {
    parse(value).ok_or_else(|| anyhow!("{field}: unknown value {value:?}; allowed: {allowed}"))
}

/// Parses a snapshot file into a session id and a session state.
pub(crate) fn parse(origin: &str, text: &str) -> anyhow::Result<(Id, SessionState)> {
    let file: SnapshotFile =
        toml::from_str(text).with_context(|| format!("{origin}: not a session snapshot"))?;
    let channels = file
        .channels
        .into_iter()
        .map(|c| {
            Ok(Channel {
                id: Id::parse("channel id", &c.id)?,
                media: named(
                    "media",
                    &c.media,
                    Media::from_name,
                    "voice, chat, email, task, callback",
                )?,
                state: named(
                    "state",
                    &c.state,
                    AgentState::from_name,
                    "logged_out, not_ready, ready, reserved, busy, after_call_work",
                )?,
                reason: c.reason,
                pending: c
                    .pending
                    .map(|p| named("pending", &p, Pending::from_name, "ready, not_ready"))
                    .transpose()?,
                pending_reason: c.pending_reason,
                capacity: c.capacity,
                wrap_up_extensions: 0,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let interactions = file
        .interactions
        .into_iter()
        .map(|i| {
            let mut item = Interaction::new(
                Id::parse("interaction id", &i.id)?,
                Id::parse("channel id", &i.channel)?,
                named("direction", &i.direction, Direction::from_name, "inbound, outbound, internal, consult")?,
                named(
                    "state",
                    &i.state,
                    InteractionState::from_name,
                    "alerting, dialing, connected, held, failed, offered, active, paused, wrap_up, ended",
                )?,
            );
            item.consult_of = i.consult_of.map(|c| Id::parse("consult_of", &c)).transpose()?;
            item.consult_intent = i
                .consult_intent
                .map(|c| {
                    named(
                        "consult_intent",
                        &c,
                        ConsultIntent::from_name,
                        "unspecified, transfer, conference",
                    )
                })
                .transpose()?
                .unwrap_or_default();
            item.parties = i.parties;
            item.recording = i
                .recording
                .map(|r| named("recording", &r, Recording::from_name, "off, active, paused"))
                .transpose()?
                .unwrap_or_default();
            item.muted = i.muted;
            item.preview = i.preview;
            item.callback_of = i
                .callback_of
                .map(|c| Id::parse("callback_of", &c))
                .transpose()?;
            item.supervision = i
                .supervision
                .map(|s| {
                    named(
                        "supervision",
                        &s,
                        Supervision::from_name,
                        "own, supervised, monitoring, whispering, barged",
                    )
                })
                .transpose()?
                .unwrap_or_default();
            item.monitored = i.monitored;
            item.participants = i
                .participants
                .into_iter()
                .map(|p| {
                    Ok(Participant {
                        id: p.id,
                        role: named(
                            "participant role",
                            &p.role,
                            ParticipantRole::from_name,
                            "agent, customer, consult, supervisor",
                        )?,
                        is_self: p.is_self,
                        controller: p.controller,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            item.disposition = i.disposition;
            item.data = i.data.into();
            Ok(item)
        })
        .collect::<anyhow::Result<_>>()?;
    let session = Id::parse("session id", &file.session_id)?;
    Ok((
        session,
        SessionState {
            channels,
            interactions,
        },
    ))
}

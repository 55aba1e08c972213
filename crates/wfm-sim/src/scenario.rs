//! Scenario files: a scripted call flow in TOML that doubles as a test.
//!
//! ```toml
//! description = "inbound call answered"
//! profile = ""                       # optional profile name for CreateSession
//!
//! [[channels]]                       # the session's channels at creation
//! id = "voice"
//! media = "voice"
//! state = "logged_out"
//!
//! [[steps]]
//! delay_ms = 300                     # optional pause before the step
//! agent = { channel = "voice", state = "ready" }
//! expect = { "" = ["session.logout"], "voice" = ["channel.logout", "channel.notReady", "channel.dial"] }
//!
//! [[steps]]
//! create = { id = "c1", channel = "voice", direction = "inbound", state = "alerting" }
//!
//! [[steps]]
//! change = { id = "c1", state = "connected", data = { tier = "gold" } }
//! ```
//!
//! A channel may carry a `capacity` (concurrent interactions; `agent` steps too, where 0 or
//! absent keeps the one reported before), and `create` and `change` a `consult_intent`
//! (`transfer`, `conference` or `unspecified`) and `participants`, a list of
//! `{ id, role, self, controller }` (role `agent`, `customer`, `consult` or `supervisor`),
//! a `supervision` (`own`, `supervised`, `monitoring`, `whispering`, `barged`) and a
//! `monitored` flag; `preview` marks an outbound preview reservation and `callback_of` names
//! the callback a call serves.
//!
//! A step may instead play the MediaBar: `command = { target = "voice.c1", capability =
//! "interaction.hold", arguments = { ... } }` sends the command through the gateway, the
//! simulated platform carries it out as the session's Interaction Processor, and
//! `expect_result` (default `accepted`) is the answer the client must get: `accepted` or a
//! MediaBar error code such as `capabilityDisabled` or `rejected`.
//!
//! A step does at most one of `agent`, `create`, `change` and `command`, then checks
//! `expect`: for each target (`""` is the session, `"voice"` a channel, `"voice.c1"` an
//! interaction) the exact list of enabled capabilities, in catalogue order.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use wfm_proto::v1 as pb;

/// A problem in a scenario file, with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The line of the step in its file, for reports.
    pub line: usize,
    /// Pause before the step.
    pub delay: Duration,
    /// The CTI update it pushes, if any.
    pub update: Option<pb::cti_update::Kind>,
    /// The MediaBar command it sends, if any.
    pub command: Option<CommandStep>,
    /// Target path → the exact enabled capabilities expected after the step.
    pub expect: BTreeMap<String, Vec<String>>,
}

/// A command a step sends as the MediaBar, and the answer it expects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandStep {
    /// The target, relative to the session (`""`, `"voice"`, `"voice.c1"`).
    pub target: String,
    /// The capability to carry out.
    pub capability: String,
    /// Its arguments.
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
    /// `accepted`, or the MediaBar error code the client must get.
    #[serde(skip)]
    pub expect_result: String,
}

/// The answer a command step expects when the file names none.
pub const ACCEPTED: &str = "accepted";

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The file it came from.
    pub origin: String,
    /// What it plays.
    pub description: String,
    /// Profile to create the session with; empty for the manager's choice.
    pub profile: String,
    /// Channels at creation.
    pub channels: Vec<pb::Channel>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Whether a step sends a MediaBar command (the scenario then needs a MediaBar).
    pub fn sends_commands(&self) -> bool {
        self.steps.iter().any(|s| s.command.is_some())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDto {
    #[serde(default)]
    description: String,
    #[serde(default)]
    profile: String,
    channels: Vec<Spanned<ChannelDto>>,
    #[serde(default)]
    steps: Vec<Spanned<StepDto>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelDto {
    id: String,
    media: String,
    state: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    capacity: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDto {
    #[serde(default)]
    delay_ms: u64,
    agent: Option<AgentDto>,
    create: Option<CreateDto>,
    change: Option<ChangeDto>,
    command: Option<CommandStep>,
    expect_result: Option<String>,
    #[serde(default)]
    expect: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentDto {
    channel: String,
    state: String,
    #[serde(default)]
    reason: String,
    pending: Option<String>,
    #[serde(default)]
    pending_reason: String,
    #[serde(default)]
    capacity: u32,
    #[serde(default)]
    wrap_up_extensions: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDto {
    id: String,
    channel: String,
    direction: String,
    state: String,
    #[serde(default)]
    consult_of: String,
    consult_intent: Option<String>,
    #[serde(default)]
    parties: u32,
    #[serde(default)]
    participants: Vec<ParticipantDto>,
    supervision: Option<String>,
    #[serde(default)]
    monitored: bool,
    #[serde(default)]
    preview: bool,
    #[serde(default)]
    callback_of: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantDto {
    id: String,
    role: String,
    #[serde(default, rename = "self")]
    is_self: bool,
    #[serde(default)]
    controller: bool,
}

impl ParticipantDto {
    fn wire(self) -> Result<pb::Participant, String> {
        Ok(pb::Participant {
            participant_id: self.id,
            role: wire(
                "participant role",
                "PARTICIPANT_ROLE",
                &self.role,
                pb::ParticipantRole::from_str_name,
            )?,
            is_self: self.is_self,
            controller: self.controller,
        })
    }
}

fn participants(list: Vec<ParticipantDto>) -> Result<Vec<pb::Participant>, String> {
    list.into_iter().map(ParticipantDto::wire).collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeDto {
    id: String,
    state: Option<String>,
    consult_of: Option<String>,
    consult_intent: Option<String>,
    parties: Option<u32>,
    participants: Option<Vec<ParticipantDto>>,
    supervision: Option<String>,
    monitored: Option<bool>,
    preview: Option<bool>,
    callback_of: Option<String>,
    recording: Option<String>,
    muted: Option<bool>,
    disposition: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// Decodes a snake_case name into a wire enum through its proto name, e.g. `not_ready` →
/// `AGENT_STATE_NOT_READY`.
fn wire<E: Into<i32>>(
    what: &str,
    prefix: &str,
    value: &str,
    from: fn(&str) -> Option<E>,
) -> Result<i32, String> {
    from(&format!("{prefix}_{}", value.to_ascii_uppercase()))
        .filter(|_| !value.is_empty() && value != "unspecified")
        .map(Into::into)
        .ok_or_else(|| format!("unknown {what} {value:?}"))
}

/// `transfer`, `conference` or `unspecified` as the wire's consult intent. Unlike the other
/// enums, `unspecified` is a real choice here: a consultation for either.
fn consult_intent(value: &str) -> Result<i32, String> {
    pb::ConsultIntent::from_str_name(&format!("CONSULT_INTENT_{}", value.to_ascii_uppercase()))
        .filter(|_| !value.is_empty())
        .map(Into::into)
        .ok_or_else(|| format!("unknown consult intent {value:?}"))
}

/// `own`, `supervised`, `monitoring`, `whispering` or `barged`; `own` is the wire default.
fn supervision(value: &str) -> Result<i32, String> {
    pb::Supervision::from_str_name(&format!("SUPERVISION_{}", value.to_ascii_uppercase()))
        .filter(|_| !value.is_empty())
        .map(Into::into)
        .ok_or_else(|| format!("unknown supervision {value:?}"))
}

fn agent_state(value: &str) -> Result<i32, String> {
    wire(
        "agent state",
        "AGENT_STATE",
        value,
        pb::AgentState::from_str_name,
    )
}

fn interaction_state(value: &str) -> Result<i32, String> {
    wire(
        "interaction state",
        "INTERACTION_STATE",
        value,
        pb::InteractionState::from_str_name,
    )
}

impl AgentDto {
    fn update(self) -> Result<pb::cti_update::Kind, String> {
        Ok(pb::cti_update::Kind::Channel(pb::Channel {
            channel_id: self.channel,
            media: 0,
            state: agent_state(&self.state)?,
            reason: self.reason,
            pending: match self.pending.as_deref() {
                None => 0,
                Some(p) => wire(
                    "pending state",
                    "PENDING_STATE",
                    p,
                    pb::PendingState::from_str_name,
                )?,
            },
            pending_reason: self.pending_reason,
            capacity: self.capacity,
            wrap_up_extensions: self.wrap_up_extensions,
        }))
    }
}

impl CreateDto {
    fn update(self) -> Result<pb::cti_update::Kind, String> {
        Ok(pb::cti_update::Kind::InteractionCreated(pb::Interaction {
            interaction_id: self.id,
            channel_id: self.channel,
            direction: wire(
                "direction",
                "DIRECTION",
                &self.direction,
                pb::Direction::from_str_name,
            )?,
            state: interaction_state(&self.state)?,
            consult_of: self.consult_of,
            consult_intent: self
                .consult_intent
                .as_deref()
                .map(consult_intent)
                .transpose()?
                .unwrap_or_default(),
            parties: self.parties,
            participants: participants(self.participants)?,
            supervision: self
                .supervision
                .as_deref()
                .map(supervision)
                .transpose()?
                .unwrap_or_default(),
            monitored: self.monitored,
            preview: self.preview,
            callback_of: self.callback_of,
            data: self.data.into_iter().collect(),
            ..Default::default()
        }))
    }
}

impl ChangeDto {
    fn update(self) -> Result<pb::cti_update::Kind, String> {
        Ok(pb::cti_update::Kind::InteractionChanged(
            pb::InteractionChange {
                interaction_id: self.id,
                state: self.state.as_deref().map(interaction_state).transpose()?,
                consult_of: self.consult_of,
                consult_intent: self
                    .consult_intent
                    .as_deref()
                    .map(consult_intent)
                    .transpose()?,
                parties: self.parties,
                participants: self
                    .participants
                    .map(|list| {
                        participants(list).map(|participants| pb::Participants { participants })
                    })
                    .transpose()?,
                supervision: self.supervision.as_deref().map(supervision).transpose()?,
                monitored: self.monitored,
                preview: self.preview,
                callback_of: self.callback_of,
                recording: self
                    .recording
                    .as_deref()
                    .map(|r| {
                        wire(
                            "recording state",
                            "RECORDING",
                            r,
                            pb::Recording::from_str_name,
                        )
                    })
                    .transpose()?,
                muted: self.muted,
                disposition: self.disposition,
                data: self.data.into_iter().collect(),
            },
        ))
    }
}

/// Parses `text`; `origin` names the file in errors.
pub fn parse(origin: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let error = |span: Range<usize>, message: String| {
        let before = &text[..span.start.min(text.len())];
        ScenarioError {
            origin: origin.to_string(),
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
            message,
        }
    };
    let file: FileDto = toml::from_str(text)
        .map_err(|e| error(e.span().unwrap_or(0..0), e.message().trim().to_string()))?;
    let channels = file
        .channels
        .into_iter()
        .map(|spanned| {
            let span = spanned.span();
            let c = spanned.into_inner();
            let media = wire("media", "MEDIA", &c.media, pb::Media::from_str_name)
                .map_err(|m| error(span.clone(), m))?;
            let state = agent_state(&c.state).map_err(|m| error(span, m))?;
            Ok(pb::Channel {
                channel_id: c.id,
                media,
                state,
                reason: c.reason,
                capacity: c.capacity,
                ..Default::default()
            })
        })
        .collect::<Result<_, ScenarioError>>()?;
    let steps = file
        .steps
        .into_iter()
        .map(|spanned| {
            let span = spanned.span();
            let line = error(span.clone(), String::new()).line;
            let step = spanned.into_inner();
            let actions = [
                step.agent.is_some(),
                step.create.is_some(),
                step.change.is_some(),
                step.command.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() > 1 {
                return Err(error(
                    span,
                    "a step does one of agent, create, change or command".into(),
                ));
            }
            let command = match (step.command, step.expect_result) {
                (Some(command), expected) => Some(CommandStep {
                    expect_result: expected.unwrap_or_else(|| ACCEPTED.to_string()),
                    ..command
                }),
                (None, Some(_)) => {
                    return Err(error(
                        span,
                        "expect_result belongs to a command step".into(),
                    ));
                }
                (None, None) => None,
            };
            let update = match (step.agent, step.create, step.change) {
                (Some(agent), _, _) => Some(agent.update()),
                (_, Some(create), _) => Some(create.update()),
                (_, _, Some(change)) => Some(change.update()),
                _ => None,
            }
            .transpose()
            .map_err(|m| error(span.clone(), m))?;
            if update.is_none() && command.is_none() && step.expect.is_empty() {
                return Err(error(
                    span,
                    "a step needs agent, create, change, command or expect".into(),
                ));
            }
            Ok(Step {
                line,
                delay: Duration::from_millis(step.delay_ms),
                update,
                command,
                expect: step.expect,
            })
        })
        .collect::<Result<_, ScenarioError>>()?;
    Ok(Scenario {
        origin: origin.to_string(),
        description: file.description,
        profile: file.profile,
        channels,
        steps,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_parses_into_wire_updates_and_expectations() {
        let text = r#"
description = "x"
[[channels]]
id = "voice"
media = "voice"
state = "logged_out"
[[steps]]
delay_ms = 5
agent = { channel = "voice", state = "not_ready", reason = "login" }
expect = { "voice" = ["channel.ready"] }
[[steps]]
change = { id = "c1", state = "wrap_up", disposition = "sale" }
[[steps]]
command = { target = "voice.c1", capability = "interaction.wrapUp", arguments = { disposition = "sale" } }
[[steps]]
command = { target = "voice", capability = "channel.ready" }
expect_result = "capabilityDisabled"
"#;
        let s = parse("s.toml", text).unwrap();
        assert_eq!(s.channels[0].media, i32::from(pb::Media::Voice));
        assert_eq!(s.steps[0].line, 7);
        assert_eq!(s.steps[0].delay, Duration::from_millis(5));
        let Some(pb::cti_update::Kind::Channel(c)) = &s.steps[0].update else {
            panic!()
        };
        assert_eq!(
            (c.state, c.reason.as_str()),
            (i32::from(pb::AgentState::NotReady), "login")
        );
        assert_eq!(s.steps[0].expect["voice"], ["channel.ready"]);
        let Some(pb::cti_update::Kind::InteractionChanged(c)) = &s.steps[1].update else {
            panic!()
        };
        assert_eq!(c.state, Some(i32::from(pb::InteractionState::WrapUp)));
        let command = s.steps[2].command.as_ref().unwrap();
        assert_eq!(
            (command.target.as_str(), command.capability.as_str()),
            ("voice.c1", "interaction.wrapUp")
        );
        assert_eq!(command.arguments["disposition"], "sale");
        assert_eq!(command.expect_result, ACCEPTED);
        let command = s.steps[3].command.as_ref().unwrap();
        assert_eq!(command.expect_result, "capabilityDisabled");
        assert!(command.arguments.is_empty());
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_problem() {
        let base = "[[channels]]\nid = \"voice\"\nmedia = \"voice\"\nstate = \"ready\"\n";
        let cases = [
            (
                format!("{base}[[steps]]\nagent = {{ channel = \"voice\", state = \"lunch\" }}\n"),
                "s.toml:5:1: unknown agent state \"lunch\"",
            ),
            (
                format!("{base}[[steps]]\nfly = true\n"),
                "s.toml:6:1: unknown field `fly`",
            ),
            (
                format!("{base}[[steps]]\ndelay_ms = 1\n"),
                "s.toml:5:1: a step needs agent, create, change, command or expect",
            ),
            (
                "[[channels]]\nid = \"v\"\nmedia = \"fax\"\nstate = \"ready\"\n".to_string(),
                "s.toml:1:1: unknown media \"fax\"",
            ),
            (
                format!(
                    "{base}[[steps]]\nagent = {{ channel = \"voice\", state = \"ready\" }}\nchange = {{ id = \"c\" }}\n"
                ),
                "s.toml:5:1: a step does one of agent, create, change or command",
            ),
            (
                format!("{base}[[steps]]\nexpect_result = \"rejected\"\n"),
                "s.toml:5:1: expect_result belongs to a command step",
            ),
        ];
        for (text, expected) in cases {
            let error = parse("s.toml", &text).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error} vs {expected}");
        }
    }
}

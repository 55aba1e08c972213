//! A simulated CTI platform: it carries out a MediaBar command on one session's CTI state
//! as a switch and an ACD would, and says which updates follow and after what delay.
//!
//! It is pure: [`plan`] takes the state the Interaction Processor last reported and returns
//! either the timed updates the command causes or the reason a platform would refuse it.
//! The manager has already checked the command against the view state; the platform checks
//! again against what it knows, because a real switch has the last word (an update that
//! crossed the command on the wire, a destination it cannot reach).

use std::collections::HashMap;
use std::time::Duration;

use wfm_proto::v1 as pb;

use crate::cti::CtiState;
use pb::AgentState as Agent;
use pb::InteractionState as State;

/// One update a command causes, `after` the one before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// Delay after the previous effect (or after the command was accepted).
    pub after: Duration,
    /// The CTI update.
    pub update: pb::cti_update::Kind,
}

/// Why the platform refuses a command: the reason the agent reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// A command as the platform sees it: what, on which target, with which arguments.
#[derive(Debug, Clone, Copy)]
pub struct Order<'a> {
    /// The capability name, for example `interaction.hold`.
    pub capability: &'a str,
    /// The channel id, when the target is a channel or an interaction.
    pub channel: Option<&'a str>,
    /// The interaction id, when the target is an interaction.
    pub interaction: Option<&'a str>,
    /// The command's arguments.
    pub arguments: &'a HashMap<String, String>,
}

impl<'a> Order<'a> {
    /// Splits a dot-notation `target` of session `session_id` (`s`, `s.voice`,
    /// `s.voice.c1`) into an order; `None` when the target is not one of that session's.
    pub fn parse(
        session_id: &str,
        target: &'a str,
        capability: &'a str,
        arguments: &'a HashMap<String, String>,
    ) -> Option<Self> {
        let rest = target.strip_prefix(session_id)?;
        let (channel, interaction) = match rest.strip_prefix('.') {
            None if rest.is_empty() => (None, None),
            None => return None,
            Some(path) => match path.split_once('.') {
                Some((channel, interaction)) => (Some(channel), Some(interaction)),
                None => (Some(path), None),
            },
        };
        Some(Self {
            capability,
            channel,
            interaction,
            arguments,
        })
    }

    fn argument(&self, name: &str) -> Result<&'a str, Refusal> {
        match self.arguments.get(name).map(String::as_str) {
            Some(value) if !value.trim().is_empty() => Ok(value),
            _ => Err(Refusal(format!("{} needs a {name}", self.capability))),
        }
    }
}

/// How long a switch takes for an ordinary state change.
const SWITCH: Duration = Duration::from_millis(150);
/// How long an outbound leg rings before the far end answers.
const RINGING: Duration = Duration::from_millis(1200);

/// The updates that carrying out `order` on `state` causes, in order, or why the platform
/// refuses it. Nothing is applied to `state`.
pub fn plan(state: &CtiState, order: &Order<'_>) -> Result<Vec<Effect>, Refusal> {
    let mut plan = Plan {
        state: state.clone(),
        effects: Vec::new(),
    };
    match (order.channel, order.interaction) {
        (None, _) => plan.session(order)?,
        (Some(channel), None) => plan.channel(channel, order)?,
        (Some(channel), Some(id)) => plan.interaction(channel, id, order)?,
    }
    Ok(plan.effects)
}

/// The state as the planned effects leave it, and the effects so far.
struct Plan {
    state: CtiState,
    effects: Vec<Effect>,
}

impl Plan {
    fn push(&mut self, after: Duration, update: pb::cti_update::Kind) {
        self.state.apply(&update);
        self.effects.push(Effect { after, update });
    }

    fn channel_of(&self, id: &str) -> Result<pb::Channel, Refusal> {
        self.state
            .channels()
            .iter()
            .find(|c| c.channel_id == id)
            .cloned()
            .ok_or_else(|| Refusal(format!("the platform has no channel {id}")))
    }

    fn interaction_of(&self, channel: &str, id: &str) -> Result<pb::Interaction, Refusal> {
        self.state
            .interactions()
            .iter()
            .find(|i| i.interaction_id == id && i.channel_id == channel)
            .cloned()
            .ok_or_else(|| Refusal(format!("the platform has no interaction {id} on {channel}")))
    }

    fn set_agent(&mut self, after: Duration, channel: pb::Channel) {
        self.push(after, pb::cti_update::Kind::Channel(channel));
    }

    fn change(&mut self, after: Duration, change: pb::InteractionChange) {
        self.push(after, pb::cti_update::Kind::InteractionChanged(change));
    }

    fn move_to(&mut self, after: Duration, id: &str, to: State) {
        self.change(
            after,
            pb::InteractionChange {
                interaction_id: id.to_string(),
                state: Some(to.into()),
                ..Default::default()
            },
        );
    }

    fn session(&mut self, order: &Order<'_>) -> Result<(), Refusal> {
        let channels = self.state.channels().to_vec();
        match order.capability {
            "session.login" => {
                for channel in channels.into_iter().filter(is_logged_out) {
                    self.set_agent(SWITCH, with_state(channel, Agent::NotReady, ""));
                }
            }
            "session.logout" => {
                let reason = order.arguments.get("reason").cloned().unwrap_or_default();
                for channel in channels.into_iter().filter(|c| !is_logged_out(c)) {
                    self.set_agent(SWITCH, with_state(channel, Agent::LoggedOut, &reason));
                }
            }
            other => return Err(unsupported(other, "the session")),
        }
        Ok(())
    }

    fn channel(&mut self, id: &str, order: &Order<'_>) -> Result<(), Refusal> {
        let channel = self.channel_of(id)?;
        let live = self.live_on(id);
        let reason = order.arguments.get("reason").cloned().unwrap_or_default();
        match order.capability {
            "channel.login" => self.set_agent(SWITCH, with_state(channel, Agent::NotReady, "")),
            "channel.logout" => {
                if live {
                    return Err(Refusal(format!("{id} still has work on it")));
                }
                self.set_agent(SWITCH, with_state(channel, Agent::LoggedOut, &reason));
            }
            "channel.ready" | "channel.notReady" => {
                let (target, pending) = if order.capability == "channel.ready" {
                    (Agent::Ready, pb::PendingState::Ready)
                } else {
                    (Agent::NotReady, pb::PendingState::NotReady)
                };
                if live {
                    // Busy: the platform applies it once the work ends (Finesse's pending state).
                    self.set_agent(
                        SWITCH,
                        pb::Channel {
                            pending: pending.into(),
                            pending_reason: reason,
                            ..channel
                        },
                    );
                } else {
                    // Leaving after-call work closes what was wrapped up on the channel.
                    for done in self.wrapped_up_on(id) {
                        self.move_to(Duration::ZERO, &done, State::Ended);
                    }
                    self.set_agent(SWITCH, with_state(channel, target, &reason));
                }
            }
            "channel.cancelPending" => self.set_agent(
                SWITCH,
                pb::Channel {
                    pending: pb::PendingState::None.into(),
                    pending_reason: String::new(),
                    ..channel
                },
            ),
            "channel.extendWrapUp" => {
                let extensions = channel.wrap_up_extensions + 1;
                self.set_agent(
                    SWITCH,
                    pb::Channel {
                        wrap_up_extensions: extensions,
                        ..channel
                    },
                );
            }
            "channel.dial" => {
                let destination = order.argument("destination")?;
                let call = self.new_id("out");
                self.push(
                    SWITCH,
                    pb::cti_update::Kind::InteractionCreated(pb::Interaction {
                        interaction_id: call.clone(),
                        channel_id: id.to_string(),
                        direction: pb::Direction::Outbound.into(),
                        state: State::Dialing.into(),
                        parties: 2,
                        caller: destination.to_string(),
                        ..Default::default()
                    }),
                );
                self.settle_channel(id)?;
                self.move_to(RINGING, &call, State::Connected);
            }
            other => return Err(unsupported(other, "a channel")),
        }
        Ok(())
    }

    fn interaction(&mut self, channel: &str, id: &str, order: &Order<'_>) -> Result<(), Refusal> {
        let item = self.interaction_of(channel, id)?;
        let state = State::try_from(item.state).unwrap_or(State::Unspecified);
        let refuse = || {
            Refusal(format!(
                "the platform cannot {} {id} while it is {}",
                order.capability,
                state.as_str_name()
            ))
        };
        let expect = |allowed: &[State]| {
            if allowed.contains(&state) {
                Ok(())
            } else {
                Err(refuse())
            }
        };
        match order.capability {
            "interaction.answer" => {
                expect(&[State::Alerting])?;
                self.move_to(SWITCH, id, State::Connected);
            }
            "interaction.accept" => {
                expect(&[State::Offered])?;
                self.move_to(SWITCH, id, State::Active);
            }
            "interaction.reject" => {
                expect(&[State::Alerting, State::Offered])?;
                self.move_to(SWITCH, id, State::Ended);
            }
            "interaction.redirect" => {
                expect(&[State::Alerting])?;
                order.argument("destination")?;
                self.move_to(SWITCH, id, State::Ended);
            }
            "interaction.release" => match state {
                State::Dialing | State::Failed | State::Alerting => {
                    self.move_to(SWITCH, id, State::Ended);
                }
                State::Connected | State::Held | State::Active | State::Paused => {
                    self.release_with_its_consult(id);
                }
                _ => return Err(refuse()),
            },
            "interaction.hold" => {
                expect(&[State::Connected])?;
                self.move_to(SWITCH, id, State::Held);
            }
            "interaction.retrieve" => {
                expect(&[State::Held])?;
                self.move_to(SWITCH, id, State::Connected);
            }
            "interaction.pause" => {
                expect(&[State::Active])?;
                self.move_to(SWITCH, id, State::Paused);
            }
            "interaction.resume" => {
                expect(&[State::Paused])?;
                self.move_to(SWITCH, id, State::Active);
            }
            "interaction.consult" => {
                expect(&[State::Connected])?;
                let destination = order.argument("destination")?;
                let intent = match order.arguments.get("intent").map(String::as_str) {
                    None | Some("") => pb::ConsultIntent::Unspecified,
                    Some("transfer") => pb::ConsultIntent::Transfer,
                    Some("conference") => pb::ConsultIntent::Conference,
                    Some(other) => {
                        return Err(Refusal(format!(
                            "intent {other:?} is neither transfer nor conference"
                        )));
                    }
                };
                self.move_to(SWITCH, id, State::Held);
                let leg = self.new_id("consult");
                self.push(
                    SWITCH,
                    pb::cti_update::Kind::InteractionCreated(pb::Interaction {
                        interaction_id: leg.clone(),
                        channel_id: channel.to_string(),
                        direction: pb::Direction::Consult.into(),
                        state: State::Dialing.into(),
                        consult_of: id.to_string(),
                        consult_intent: intent.into(),
                        parties: 2,
                        caller: destination.to_string(),
                        ..Default::default()
                    }),
                );
                self.move_to(RINGING, &leg, State::Connected);
            }
            "interaction.completeTransfer" | "interaction.completeConference" => {
                let other = self.pair_partner(&item).ok_or_else(refuse)?;
                let (held, connected) = if state == State::Held {
                    (item, other)
                } else {
                    (other, item)
                };
                if held.state != i32::from(State::Held)
                    || connected.state != i32::from(State::Connected)
                {
                    return Err(refuse());
                }
                if order.capability == "interaction.completeTransfer" {
                    // The switch joins the two far ends and drops the agent from both legs:
                    // the customer's call goes into wrap-up, the consult leg just ends.
                    self.move_to(SWITCH, &connected.interaction_id, State::Ended);
                    self.move_to(Duration::ZERO, &held.interaction_id, State::WrapUp);
                } else {
                    self.move_to(SWITCH, &connected.interaction_id, State::Ended);
                    self.change(
                        Duration::ZERO,
                        pb::InteractionChange {
                            interaction_id: held.interaction_id.clone(),
                            state: Some(State::Connected.into()),
                            parties: Some(held.parties.max(2) + 1),
                            ..Default::default()
                        },
                    );
                }
            }
            "interaction.singleStepTransfer" => {
                expect(&[State::Connected, State::Active])?;
                order.argument("destination")?;
                self.move_to(SWITCH, id, State::WrapUp);
            }
            "interaction.singleStepConference" => {
                expect(&[State::Connected])?;
                order.argument("destination")?;
                self.change(
                    RINGING,
                    pb::InteractionChange {
                        interaction_id: id.to_string(),
                        parties: Some(item.parties.max(2) + 1),
                        ..Default::default()
                    },
                );
            }
            "interaction.alternate" => {
                let other = self.pair_partner(&item).ok_or_else(refuse)?;
                let (to_hold, to_connect) = if state == State::Connected {
                    (id.to_string(), other.interaction_id)
                } else {
                    (other.interaction_id, id.to_string())
                };
                self.move_to(SWITCH, &to_hold, State::Held);
                self.move_to(Duration::ZERO, &to_connect, State::Connected);
            }
            "interaction.reconnect" => {
                let other = self.pair_partner(&item).ok_or_else(refuse)?;
                let (original, leg) = if item.consult_of.is_empty() {
                    (item, other)
                } else {
                    (other, item)
                };
                self.move_to(SWITCH, &leg.interaction_id, State::Ended);
                self.move_to(Duration::ZERO, &original.interaction_id, State::Connected);
            }
            "interaction.sendDtmf" => {
                expect(&[State::Connected])?;
                let digits = order.argument("digits")?;
                if !digits
                    .chars()
                    .all(|c| c.is_ascii_digit() || "*#ABCD".contains(c))
                {
                    return Err(Refusal(format!("{digits:?} are not DTMF digits")));
                }
            }
            "interaction.mute" | "interaction.unmute" => {
                expect(&[State::Connected, State::Held])?;
                self.change(
                    SWITCH,
                    pb::InteractionChange {
                        interaction_id: id.to_string(),
                        muted: Some(order.capability == "interaction.mute"),
                        ..Default::default()
                    },
                );
            }
            "interaction.dropParticipant" => {
                let participant = order.argument("participant")?;
                let remaining: Vec<pb::Participant> = item
                    .participants
                    .iter()
                    .filter(|p| p.participant_id != participant)
                    .cloned()
                    .collect();
                if remaining.len() == item.participants.len() && item.parties <= 2 {
                    return Err(Refusal(format!("{participant} is not on {id}")));
                }
                self.change(
                    SWITCH,
                    pb::InteractionChange {
                        interaction_id: id.to_string(),
                        parties: Some(item.parties.saturating_sub(1).max(2)),
                        participants: Some(pb::Participants {
                            participants: remaining,
                        }),
                        ..Default::default()
                    },
                );
            }
            "interaction.updateData" => {
                if order.arguments.is_empty() {
                    return Err(Refusal("updateData needs at least one key".into()));
                }
                self.change(
                    SWITCH,
                    pb::InteractionChange {
                        interaction_id: id.to_string(),
                        data: order.arguments.clone(),
                        ..Default::default()
                    },
                );
            }
            "interaction.recording.start"
            | "interaction.recording.stop"
            | "interaction.recording.pause"
            | "interaction.recording.resume" => {
                let recording = match order.capability {
                    "interaction.recording.start" | "interaction.recording.resume" => {
                        pb::Recording::Active
                    }
                    "interaction.recording.pause" => pb::Recording::Paused,
                    _ => pb::Recording::Off,
                };
                self.change(
                    SWITCH,
                    pb::InteractionChange {
                        interaction_id: id.to_string(),
                        recording: Some(recording.into()),
                        ..Default::default()
                    },
                );
            }
            "interaction.monitor" | "interaction.whisper" | "interaction.barge" => {
                let supervision = match order.capability {
                    "interaction.monitor" => pb::Supervision::Monitoring,
                    "interaction.whisper" => pb::Supervision::Whispering,
                    _ => pb::Supervision::Barged,
                };
                self.change(
                    SWITCH,
                    pb::InteractionChange {
                        interaction_id: id.to_string(),
                        supervision: Some(supervision.into()),
                        ..Default::default()
                    },
                );
            }
            "interaction.stopMonitoring" => self.move_to(SWITCH, id, State::Ended),
            "interaction.preview.accept" => {
                self.change(
                    SWITCH,
                    pb::InteractionChange {
                        interaction_id: id.to_string(),
                        preview: Some(false),
                        state: Some(State::Dialing.into()),
                        ..Default::default()
                    },
                );
                self.move_to(RINGING, id, State::Connected);
            }
            "interaction.preview.skip" | "interaction.preview.reject" => {
                self.move_to(SWITCH, id, State::Ended);
            }
            "interaction.callback.call" => {
                let call = self.new_id("cb");
                let voice = self
                    .state
                    .channels()
                    .iter()
                    .find(|c| c.media == i32::from(pb::Media::Voice))
                    .map(|c| c.channel_id.clone())
                    .ok_or_else(|| Refusal("no voice channel to place the callback on".into()))?;
                self.push(
                    SWITCH,
                    pb::cti_update::Kind::InteractionCreated(pb::Interaction {
                        interaction_id: call.clone(),
                        channel_id: voice.clone(),
                        direction: pb::Direction::Outbound.into(),
                        state: State::Dialing.into(),
                        parties: 2,
                        callback_of: id.to_string(),
                        caller: item.caller.clone(),
                        ..Default::default()
                    }),
                );
                self.settle_channel(&voice)?;
                self.move_to(RINGING, &call, State::Connected);
            }
            "interaction.callback.reschedule" => {
                let at = order.argument("at")?;
                self.change(
                    SWITCH,
                    pb::InteractionChange {
                        interaction_id: id.to_string(),
                        data: [("scheduled_at".to_string(), at.to_string())].into(),
                        ..Default::default()
                    },
                );
            }
            "interaction.callback.cancel" => self.move_to(SWITCH, id, State::Ended),
            "interaction.wrapUp" => {
                expect(&[State::WrapUp])?;
                let disposition = order.argument("disposition")?;
                self.change(
                    SWITCH,
                    pb::InteractionChange {
                        interaction_id: id.to_string(),
                        disposition: Some(disposition.to_string()),
                        ..Default::default()
                    },
                );
            }
            "interaction.complete" => {
                expect(&[State::WrapUp])?;
                self.move_to(SWITCH, id, State::Ended);
            }
            other => return Err(unsupported(other, "an interaction")),
        }
        self.settle_channel(channel)
    }

    /// Releasing the original of a consult pair drops the consult leg with it.
    fn release_with_its_consult(&mut self, id: &str) {
        let legs: Vec<String> = self
            .state
            .interactions()
            .iter()
            .filter(|i| i.consult_of == id && is_live(i))
            .map(|i| i.interaction_id.clone())
            .collect();
        self.move_to(SWITCH, id, State::WrapUp);
        for leg in legs {
            self.move_to(Duration::ZERO, &leg, State::Ended);
        }
    }

    /// The other leg of a consult pair that `item` is part of.
    fn pair_partner(&self, item: &pb::Interaction) -> Option<pb::Interaction> {
        self.state
            .interactions()
            .iter()
            .find(|i| {
                is_live(i)
                    && i.interaction_id != item.interaction_id
                    && (i.consult_of == item.interaction_id
                        || (!item.consult_of.is_empty() && i.interaction_id == item.consult_of))
            })
            .cloned()
    }

    fn live_on(&self, channel: &str) -> bool {
        self.state
            .interactions()
            .iter()
            .any(|i| i.channel_id == channel && is_live(i))
    }

    fn wrapped_up_on(&self, channel: &str) -> Vec<String> {
        self.state
            .interactions()
            .iter()
            .filter(|i| i.channel_id == channel && i.state == i32::from(State::WrapUp))
            .map(|i| i.interaction_id.clone())
            .collect()
    }

    /// The agent state the channel's interactions now call for, as an ACD keeps it: busy
    /// while work is live, after-call work while some waits in wrap-up, then the pending
    /// state the agent asked for (if any).
    fn settle_channel(&mut self, id: &str) -> Result<(), Refusal> {
        let channel = self.channel_of(id)?;
        let agent = Agent::try_from(channel.state).unwrap_or(Agent::Unspecified);
        let wrapped = !self.wrapped_up_on(id).is_empty();
        let settled = if self.live_on(id) {
            with_state(channel.clone(), Agent::Busy, "")
        } else if agent == Agent::Busy || agent == Agent::Reserved {
            if wrapped {
                with_state(channel.clone(), Agent::AfterCallWork, "")
            } else {
                apply_pending(channel.clone())
            }
        } else if agent == Agent::AfterCallWork && !wrapped && channel.pending != 0 {
            apply_pending(channel.clone())
        } else {
            return Ok(());
        };
        if settled != channel {
            self.set_agent(Duration::ZERO, settled);
        }
        Ok(())
    }

    /// An interaction id not in use on the session.
    fn new_id(&self, prefix: &str) -> String {
        (1..)
            .map(|n| format!("{prefix}{n}"))
            .find(|id| {
                !self
                    .state
                    .interactions()
                    .iter()
                    .any(|i| &i.interaction_id == id)
            })
            .unwrap_or_else(|| prefix.to_string())
    }
}

fn is_logged_out(channel: &pb::Channel) -> bool {
    channel.state == i32::from(Agent::LoggedOut)
}

fn is_live(item: &pb::Interaction) -> bool {
    !matches!(
        State::try_from(item.state),
        Ok(State::WrapUp | State::Ended)
    )
}

fn with_state(channel: pb::Channel, state: Agent, reason: &str) -> pb::Channel {
    // What the agent asked for waits out the call and its after-call work.
    let keep_pending = matches!(state, Agent::Busy | Agent::AfterCallWork);
    pb::Channel {
        state: state.into(),
        reason: reason.to_string(),
        pending: if keep_pending { channel.pending } else { 0 },
        pending_reason: if keep_pending {
            channel.pending_reason.clone()
        } else {
            String::new()
        },
        wrap_up_extensions: 0,
        ..channel
    }
}

/// Ready or Not Ready as the agent asked during the call; Ready when nothing was asked.
fn apply_pending(channel: pb::Channel) -> pb::Channel {
    let reason = channel.pending_reason.clone();
    match pb::PendingState::try_from(channel.pending) {
        Ok(pb::PendingState::NotReady) => with_state(channel, Agent::NotReady, &reason),
        _ => with_state(channel, Agent::Ready, ""),
    }
}

fn unsupported(capability: &str, on: &str) -> Refusal {
    Refusal(format!(
        "{capability} is not something the platform does on {on}"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "platform/tests.rs"]
mod tests;

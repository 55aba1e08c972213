//! The built-in state rules of the default profile: which capabilities the telephony state
//! allows for each target, before feature switches are applied.

use crate::capability::{CapSet, Capability, Capability::*, TargetKind};
use crate::custom::{Circumstances, Facts};
use crate::id::Id;
use crate::model::{
    AgentState, Channel, ConsultIntent, Interaction, InteractionState, Media, ParticipantRole,
    Pending, Recording, SessionState, Supervision,
};
use crate::profile::Options;
use crate::view::Target;

/// What a channel's interactions look like, gathered once per channel for its own rules and
/// its interactions' rules.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ChannelTally {
    legs: u8,
    held: u8,
    connected: u8,
    dialing: u8,
    /// An alerting call or an offered item waits for the agent.
    offer: bool,
    /// Pending or live work on the channel (anything but wrap-up).
    work: bool,
    /// An interaction in wrap-up has no disposition yet.
    undisposed: bool,
    /// Accepted non-voice work (active or paused): what fills the channel's capacity.
    accepted: u32,
    /// Parties on the held and connected legs, each counted as at least two: the joined
    /// call of a conference.
    pair_parties: u32,
}

impl ChannelTally {
    /// Tallies the interactions on `channel`.
    pub(crate) fn of(channel: &Channel, interactions: &[Interaction]) -> Self {
        let mut tally = ChannelTally::default();
        let voice = channel.media.is_voice();
        for item in interactions.iter().filter(|i| i.channel == channel.id) {
            // A supervised agent's call is no leg, offer or load of this channel; joined, it
            // is the supervisor's work all the same.
            if item.supervision != Supervision::Own {
                tally.work |= item.is_work();
                continue;
            }
            tally.offer |= item.state.is_offer();
            tally.work |= item.state.is_live();
            tally.undisposed |=
                item.state == InteractionState::WrapUp && item.disposition.is_empty();
            if !voice {
                if matches!(
                    item.state,
                    InteractionState::Active | InteractionState::Paused
                ) {
                    tally.accepted = tally.accepted.saturating_add(1);
                }
                continue;
            }
            if !item.state.is_call_leg() {
                continue;
            }
            tally.legs = tally.legs.saturating_add(1);
            match item.state {
                // Saturating: a snapshot may list any number of legs, and only 0, 1 and 2 matter.
                InteractionState::Held => tally.held = tally.held.saturating_add(1),
                InteractionState::Connected => tally.connected = tally.connected.saturating_add(1),
                InteractionState::Dialing => tally.dialing = tally.dialing.saturating_add(1),
                _ => {}
            }
            if matches!(
                item.state,
                InteractionState::Held | InteractionState::Connected
            ) {
                tally.pair_parties = tally.pair_parties.saturating_add(item.party_count().max(2));
            }
        }
        tally
    }

    /// One held leg and one connected leg, whatever else rings or fails beside them: the
    /// shape CSTA Transfer Call, Conference Call and Alternate Call act on.
    fn is_held_pair(&self) -> bool {
        self.held == 1 && self.connected == 1
    }

    /// One held leg and one still dialing, with no connected leg: the shape
    /// `transfer_on_alerting` completes a transfer on.
    fn is_held_and_dialing(&self) -> bool {
        self.held == 1 && self.connected == 0 && self.dialing == 1
    }
}

/// One target of a session, with what its rules look at.
pub(crate) struct Subject<'a> {
    pub(crate) target: Target,
    pub(crate) kind: TargetKind,
    pub(crate) media: Option<Media>,
    pub(crate) facts: Facts<'a>,
    tally: ChannelTally,
}

/// Every target of `state` in tree order: the session, then each channel followed by its
/// interactions. A channel's interactions are tallied once, for it and all its interactions.
pub(crate) fn subjects<'a>(
    state: &'a SessionState,
    around: Circumstances<'a>,
) -> impl Iterator<Item = Subject<'a>> {
    let session_facts = Facts {
        agent_group: around.agent_group,
        ..Facts::of(state)
    };
    let session = Subject {
        target: Target::Session,
        kind: TargetKind::Session,
        media: None,
        facts: session_facts,
        tally: ChannelTally::default(),
    };
    let channels = state.channels.iter().enumerate();
    std::iter::once(session).chain(channels.flat_map(move |(index, channel)| {
        let tally = ChannelTally::of(channel, &state.interactions);
        let facts = Facts {
            channel: Some(channel),
            state_secs: around.state_secs(index),
            ..session_facts
        };
        let own = Subject {
            target: Target::Channel(channel.id.clone()),
            kind: TargetKind::channel(channel.media),
            media: Some(channel.media),
            facts,
            tally,
        };
        let items = state
            .interactions
            .iter()
            .filter(move |i| i.channel == channel.id);
        std::iter::once(own).chain(items.map(move |item| Subject {
            target: Target::Interaction {
                channel: channel.id.clone(),
                interaction: item.id.clone(),
            },
            kind: TargetKind::interaction(channel.media),
            media: Some(channel.media),
            facts: Facts {
                interaction: Some(item),
                ..facts
            },
            tally,
        }))
    }))
}

/// What the built-in state rules enable for `subject` under `options`.
pub(crate) fn evaluate(subject: &Subject<'_>, options: &Options) -> CapSet {
    let state = subject.facts.state;
    match (subject.facts.channel, subject.facts.interaction) {
        (_, Some(item)) if subject.kind == TargetKind::VoiceInteraction => {
            voice_interaction(item, &subject.tally, &state.interactions, options)
        }
        (channel, Some(item)) => {
            // Every interaction subject has its channel; none would mean no reported capacity.
            let capacity = channel.map_or(0, |c| c.capacity);
            let mut caps = other_interaction(item, capacity, &subject.tally, options);
            if subject.media == Some(Media::Callback) {
                caps = caps.union(callback(item, &state.interactions));
            }
            caps
        }
        (Some(channel), None) => self::channel(channel, &subject.tally, state, options),
        (None, None) => session(state, options),
    }
}

/// The built-in state rule of `capability`, in words, for explanations.
pub(crate) fn describe(capability: Capability) -> &'static str {
    match capability {
        SessionLogin => "every channel is logged out",
        ChannelLogin => "the channel is logged out",
        ChannelLogout => {
            "the channel is logged in, not reserved, with no pending or live work \
             (not ready first with logout_requires_not_ready; no undisposed wrap-up with \
             mandatory_disposition)"
        }
        ChannelCancelPending => "a Ready or Not Ready is pending on the channel",
        ChannelExtendWrapUp => {
            "time-boxed after-call work (acw_timeout_secs) with extensions left \
             (max_wrap_up_extensions)"
        }
        Redirect => "the call is alerting (not a preview)",
        Pause => "the interaction is active",
        Resume => "the interaction is paused",
        SingleStepConference => {
            "the call is connected, alone on the channel, and one more party fits the limit"
        }
        SessionLogout => {
            "a channel is logged in, none is reserved, and no interaction is pending or live \
             (with a mandatory disposition: none waits in wrap-up without one)"
        }
        ChannelReady => {
            "not ready or in after-call work, or busy without a pending ready \
             (with a mandatory disposition: not in after-call work while a wrap-up lacks one)"
        }
        ChannelNotReady => {
            "ready, not ready, in after-call work, or busy (as a pending request), \
             and nothing offered on the channel"
        }
        ChannelDial => {
            "logged in, not reserved, and no pending or live work on the session \
             (only this channel's, with dial_during_other_media)"
        }
        Answer => "the call is alerting (not a preview)",
        Accept => "the interaction is offered and the channel is under its capacity",
        Reject => "the call is alerting (not a preview) or the interaction offered",
        Release => {
            "the call is dialing, connected, held or failed, or the interaction active or paused"
        }
        Hold | SendDtmf => "the call is connected",
        SingleStepTransfer => "the call is connected and not in a consult pair (non-voice: active)",
        Retrieve => "the call is held and no other call on the channel is connected",
        Consult => "the call is connected and is the channel's only call",
        CompleteTransfer => {
            "the call is the held one of a held call and a connected call, \
             unless the consultation was placed for a conference"
        }
        CompleteConference => {
            "the call is the held one of a held call and a connected call, within the party \
             limit, unless the consultation was placed for a transfer"
        }
        Alternate => "the call is held or connected, beside one connected or held call",
        Reconnect => {
            "a consult pair: the original held, the consult leg dialing, connected or failed"
        }
        Mute => "the call is connected and not muted",
        Unmute => "the call is dialing, connected or held and muted",
        DropParticipant => {
            "the call is connected in a conference of three or more parties, one of them \
             droppable by this agent (the controller only, with drop_requires_controller)"
        }
        UpdateData => "until the interaction ends, except on a failed call",
        RecordingStart => "the call is connected and not recording",
        RecordingStop => "the call is dialing, connected or held, and recording or paused",
        RecordingPause => "the call is dialing, connected or held, and recording",
        RecordingResume => "the call is dialing, connected or held, and its recording paused",
        Monitor => {
            "a supervised agent's call that is connected or held, not joined yet or joined \
             to whisper or barge"
        }
        Whisper => "a supervised agent's call, connected or held, listened in on or barged into",
        Barge => "a supervised agent's call, connected or held, listened in on or coached",
        StopMonitoring => "this supervisor has joined the agent's call, and it is not over",
        PreviewAccept | PreviewSkip | PreviewReject => "a preview reservation is offered",
        CallbackCall | CallbackReschedule | CallbackCancel => {
            "a scheduled callback is offered or active, and no call placed for it is up"
        }
        WrapUp => "the interaction is in wrap-up",
        Complete => "the interaction is in wrap-up (with a disposition, when mandatory)",
    }
}

/// `session.login` and `session.logout`.
pub(crate) fn session(state: &SessionState, options: &Options) -> CapSet {
    let logged_in = state.channels.iter().filter(|c| c.state.is_logged_in());
    let any_logged_in = state.channels.iter().any(|c| c.state.is_logged_in());
    let not_ready_if_required = !options.logout_requires_not_ready
        || logged_in.clone().all(|c| c.state == AgentState::NotReady);
    let reserved = state
        .channels
        .iter()
        .any(|c| c.state == AgentState::Reserved);
    let live = state.interactions.iter().any(Interaction::is_work);
    let awaiting_disposition =
        options.mandatory_disposition && state.interactions.iter().any(undisposed);
    let mut caps = CapSet::EMPTY;
    caps.set(SessionLogin, !any_logged_in);
    caps.set(
        SessionLogout,
        any_logged_in && !reserved && !live && !awaiting_disposition && not_ready_if_required,
    );
    caps
}

/// An own interaction in wrap-up without a disposition.
fn undisposed(item: &Interaction) -> bool {
    item.supervision == Supervision::Own
        && item.state == InteractionState::WrapUp
        && item.disposition.is_empty()
}

/// `channel.login`, `channel.logout`, `channel.ready`, `channel.notReady`,
/// `channel.cancelPending` and `channel.dial`.
pub(crate) fn channel(
    channel: &Channel,
    tally: &ChannelTally,
    state: &SessionState,
    options: &Options,
) -> CapSet {
    use AgentState::*;
    // Leaving after-call work is what a mandatory disposition holds back (Genesys WWE
    // `interaction.disposition.is-mandatory`).
    let held_in_acw =
        channel.state == AfterCallWork && options.mandatory_disposition && tally.undisposed;
    let mut caps = CapSet::EMPTY;
    caps.set(ChannelLogin, channel.state == LoggedOut);
    // Per-media sign-out (Finesse MRD) follows session.logout, for this channel's work only.
    let awaiting_disposition = options.mandatory_disposition && tally.undisposed;
    caps.set(
        ChannelLogout,
        channel.state.is_logged_in()
            && channel.state != Reserved
            && !tally.work
            && !awaiting_disposition
            && (!options.logout_requires_not_ready || channel.state == NotReady),
    );
    caps.set(
        ChannelCancelPending,
        channel.state.is_logged_in() && channel.pending.is_some(),
    );
    caps.set(
        ChannelExtendWrapUp,
        channel.state == AfterCallWork
            && options.acw_timeout_secs > 0
            && channel.wrap_up_extensions < options.max_wrap_up_extensions,
    );
    caps.set(
        ChannelReady,
        !held_in_acw
            && match channel.state {
                NotReady | AfterCallWork => true,
                Busy => channel.pending != Some(Pending::Ready),
                LoggedOut | Ready | Reserved => false,
            },
    );
    caps.set(
        ChannelNotReady,
        !held_in_acw
            && !tally.offer
            && matches!(channel.state, Ready | AfterCallWork | NotReady | Busy),
    );
    caps.set(
        ChannelDial,
        channel.state.is_logged_in()
            && channel.state != Reserved
            && !tally.work
            && (options.dial_during_other_media || !other_work(channel, state)),
    );
    caps
}

/// Pending or live work on a channel other than `channel`: a reservation or an interaction
/// that is not in wrap-up.
fn other_work(channel: &Channel, state: &SessionState) -> bool {
    state
        .channels
        .iter()
        .any(|c| c.id != channel.id && c.state == AgentState::Reserved)
        || state
            .interactions
            .iter()
            .any(|i| i.channel != channel.id && i.is_work())
}

/// Capabilities of a call.
pub(crate) fn voice_interaction(
    call: &Interaction,
    tally: &ChannelTally,
    siblings: &[Interaction],
    options: &Options,
) -> CapSet {
    use InteractionState::*;
    if call.supervision != Supervision::Own {
        return supervising(call);
    }
    let s = call.state;
    let connected = s == Connected;
    let on_call = s.is_on_call();
    let pair = tally.is_held_pair();
    let transfer_pair = pair || (options.transfer_on_alerting && tally.is_held_and_dialing());
    let conference_size = tally.pair_parties.saturating_sub(1);
    let consult_pair = in_consult_pair(call, siblings);
    let intent = if s == Held && transfer_pair {
        pair_intent(call, siblings)
    } else {
        ConsultIntent::Unspecified
    };

    // A preview is a record to decide on, not a ringing call (Finesse
    // RESERVED_OUTBOUND_PREVIEW): it has the preview choices instead of answer and reject.
    let ringing = s == Alerting && !call.preview;
    let previewing = s == Alerting && call.preview;
    let mut caps = CapSet::EMPTY;
    caps.set(Answer, ringing);
    caps.set(Reject, ringing && options.reject_alerting);
    caps.set(Redirect, ringing);
    caps.set(PreviewAccept, previewing);
    caps.set(PreviewSkip, previewing);
    caps.set(PreviewReject, previewing);
    caps.set(Release, matches!(s, Dialing | Connected | Held | Failed));
    caps.set(Hold, connected);
    caps.set(Retrieve, s == Held && tally.connected == 0);
    caps.set(Consult, connected && tally.legs == 1);
    // The held leg carries the completion, as Finesse's HELD participant actions and the
    // Genesys held parent do; the connected leg only alternates.
    caps.set(
        CompleteTransfer,
        s == Held && transfer_pair && intent.allows_transfer(),
    );
    caps.set(
        CompleteConference,
        s == Held
            && pair
            && intent.allows_conference()
            && conference_size <= options.max_conference_parties,
    );
    caps.set(
        SingleStepTransfer,
        connected && (!consult_pair || options.single_step_transfer_in_consult),
    );
    // Adding a party in one step is a conference of the call alone, one party larger.
    caps.set(
        SingleStepConference,
        connected
            && tally.legs == 1
            && call.party_count().max(2).saturating_add(1) <= options.max_conference_parties,
    );
    caps.set(Alternate, matches!(s, Held | Connected) && pair);
    caps.set(Reconnect, consult_pair);
    caps.set(SendDtmf, connected);
    caps.set(Mute, connected && !call.muted);
    caps.set(Unmute, on_call && call.muted);
    caps.set(
        DropParticipant,
        connected && can_drop_a_party(call, options),
    );
    // A failed leg only clears (Finesse FAILED: DROP).
    caps.set(UpdateData, s != Failed);
    caps.set(
        RecordingStart,
        connected && call.recording == Recording::Off,
    );
    caps.set(RecordingStop, on_call && call.recording != Recording::Off);
    caps.set(
        RecordingPause,
        on_call && call.recording == Recording::Active,
    );
    caps.set(
        RecordingResume,
        on_call && call.recording == Recording::Paused,
    );
    set_wrap_up(&mut caps, call, options);
    caps
}

/// Capabilities of a chat, email, task or callback on a channel of `capacity`.
pub(crate) fn other_interaction(
    item: &Interaction,
    capacity: u32,
    tally: &ChannelTally,
    options: &Options,
) -> CapSet {
    use InteractionState::*;
    // A supervisor watches other agents' chats but acts on none of them.
    if item.supervision != Supervision::Own {
        return CapSet::EMPTY;
    }
    let s = item.state;
    let room = tally.accepted < effective_capacity(capacity, options);
    let mut caps = CapSet::EMPTY;
    caps.set(Accept, s == Offered && room);
    caps.set(Reject, s == Offered && options.reject_alerting);
    caps.set(Release, matches!(s, Active | Paused));
    caps.set(Pause, s == Active);
    caps.set(Resume, s == Paused);
    caps.set(SingleStepTransfer, s == Active);
    caps.set(UpdateData, true);
    set_wrap_up(&mut caps, item, options);
    caps
}

fn set_wrap_up(caps: &mut CapSet, item: &Interaction, options: &Options) {
    let wrapping_up = item.state == InteractionState::WrapUp;
    caps.set(WrapUp, wrapping_up);
    caps.set(
        Complete,
        wrapping_up && (!options.mandatory_disposition || !item.disposition.is_empty()),
    );
}

/// A scheduled callback's own choices while it waits (offered) or is being worked (active)
/// and no call placed for it is still up; Finesse UPDATE_SCHEDULED_CALLBACK and
/// CANCEL_SCHEDULED_CALLBACK, Amazon Connect queue callbacks.
fn callback(item: &Interaction, interactions: &[Interaction]) -> CapSet {
    use InteractionState::*;
    if item.supervision != Supervision::Own {
        return CapSet::EMPTY;
    }
    let waiting = matches!(item.state, Offered | Active);
    let calling = interactions
        .iter()
        .any(|i| i.callback_of.as_ref() == Some(&item.id) && i.state.is_live());
    let open = waiting && !calling;
    let mut caps = CapSet::EMPTY;
    caps.set(CallbackCall, open);
    caps.set(CallbackReschedule, open);
    caps.set(CallbackCancel, open);
    caps
}

/// A supervisor's capabilities on a supervised agent's call, and nothing of the agent's: the
/// usual moves between listen-in, coaching and barge-in (Genesys switch-to-listen-in,
/// switch-to-coaching, switch-to-barge-in), on a call that is still up.
fn supervising(call: &Interaction) -> CapSet {
    use Supervision::*;
    let up = matches!(
        call.state,
        InteractionState::Connected | InteractionState::Held
    );
    let mode = call.supervision;
    let mut caps = CapSet::EMPTY;
    caps.set(
        Monitor,
        up && matches!(mode, Supervised | Whispering | Barged),
    );
    caps.set(Whisper, up && matches!(mode, Monitoring | Barged));
    caps.set(Barge, up && matches!(mode, Monitoring | Whispering));
    // Once the agent's call is over there is nothing left to leave.
    caps.set(StopMonitoring, mode.is_joined() && call.state.is_live());
    caps
}

/// A conference with a party other than this agent that the agent may drop: any agent, or
/// only the conference controller with `drop_requires_controller` (Finesse's
/// `enableDropParticipantFor`). A supervisor is not the agent's to drop. Reported as a count
/// only, a call cannot show who controls it, so the option then allows no drop.
fn can_drop_a_party(call: &Interaction, options: &Options) -> bool {
    if call.participants.is_empty() {
        return call.parties >= 3 && !options.drop_requires_controller;
    }
    let droppable = call
        .participants
        .iter()
        .any(|p| !p.is_self && p.role != ParticipantRole::Supervisor);
    let controls = call.participants.iter().any(|p| p.is_self && p.controller);
    call.participants.len() >= 3 && droppable && (!options.drop_requires_controller || controls)
}

/// The most accepted interactions a channel of reported `capacity` holds: what the
/// Interaction Processor says, within the profile's cap; the cap alone when it says nothing.
pub(crate) fn effective_capacity(capacity: u32, options: &Options) -> u32 {
    let cap = options.max_channel_capacity.max(1);
    if capacity == 0 {
        cap
    } else {
        capacity.min(cap)
    }
}

/// What the held pair of `held` was placed for: the intent of whichever of the two legs
/// consults for the other, or unspecified for two independent calls.
fn pair_intent(held: &Interaction, siblings: &[Interaction]) -> ConsultIntent {
    use InteractionState::*;
    let on_channel = |state: InteractionState| {
        siblings
            .iter()
            .find(|i| i.channel == held.channel && i.state == state)
    };
    let partner = on_channel(Connected).or_else(|| on_channel(Dialing));
    match partner {
        Some(p) if p.consult_of.as_ref() == Some(&held.id) => p.consult_intent,
        Some(p) if held.consult_of.as_ref() == Some(&p.id) => held.consult_intent,
        _ => ConsultIntent::Unspecified,
    }
}

/// A consult pair: the original leg is held while its consult leg is dialing, connected or failed.
fn in_consult_pair(call: &Interaction, siblings: &[Interaction]) -> bool {
    use InteractionState::*;
    let consult_live = |s: InteractionState| matches!(s, Dialing | Connected | Failed);
    let on_channel = |id: &Id| {
        siblings
            .iter()
            .find(|i| &i.id == id && i.channel == call.channel)
    };
    match &call.consult_of {
        Some(original) if consult_live(call.state) => {
            on_channel(original).is_some_and(|o| o.state == Held)
        }
        _ => {
            call.state == Held
                && siblings.iter().any(|c| {
                    c.channel == call.channel
                        && c.consult_of.as_ref() == Some(&call.id)
                        && consult_live(c.state)
                })
        }
    }
}

#[cfg(test)]
mod tests;

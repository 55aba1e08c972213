//! The built-in state rules of the default profile: which capabilities the telephony state
//! allows for each target, before feature switches are applied.

use crate::capability::{CapSet, Capability, Capability::*, TargetKind};
use crate::custom::Facts;
use crate::id::Id;
use crate::model::{
    AgentState, Channel, Interaction, InteractionState, Media, Pending, Recording, SessionState,
};
use crate::profile::Options;
use crate::view::Target;

/// What a channel's call legs look like, gathered once per channel for its interactions' rules.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LegTally {
    legs: u8,
    held: u8,
    connected: u8,
    dialing: u8,
    /// A call is alerting, dialing, connected or held (a failed leg does not block dialing).
    busy: bool,
    /// Parties on the legs, each counted as at least two.
    parties: u32,
}

impl LegTally {
    /// Tallies the voice call legs on `channel`.
    pub(crate) fn of(channel: &Channel, interactions: &[Interaction]) -> Self {
        let mut tally = LegTally::default();
        if !channel.media.is_voice() {
            return tally;
        }
        for leg in interactions
            .iter()
            .filter(|i| i.channel == channel.id && i.state.is_call_leg())
        {
            tally.legs = tally.legs.saturating_add(1);
            tally.parties = tally.parties.saturating_add(leg.parties.max(2));
            match leg.state {
                // Saturating: a snapshot may list any number of legs, and only 0, 1 and 2 matter.
                InteractionState::Held => tally.held = tally.held.saturating_add(1),
                InteractionState::Connected => tally.connected = tally.connected.saturating_add(1),
                InteractionState::Dialing => tally.dialing = tally.dialing.saturating_add(1),
                _ => {}
            }
            tally.busy |= leg.state != InteractionState::Failed;
        }
        tally
    }

    /// Exactly two legs, one of them held: the shape transfer, conference and alternate need.
    fn is_held_pair(&self) -> bool {
        self.legs == 2 && self.held == 1
    }
}

/// One target of a session, with what its rules look at.
pub(crate) struct Subject<'a> {
    pub(crate) target: Target,
    pub(crate) kind: TargetKind,
    pub(crate) media: Option<Media>,
    pub(crate) facts: Facts<'a>,
    tally: LegTally,
}

/// Every target of `state` in tree order: the session, then each channel followed by its
/// interactions. A channel's call legs are tallied once, for all its interactions.
pub(crate) fn subjects(state: &SessionState) -> impl Iterator<Item = Subject<'_>> {
    let session = Subject {
        target: Target::Session,
        kind: TargetKind::Session,
        media: None,
        facts: Facts {
            state,
            channel: None,
            interaction: None,
        },
        tally: LegTally::default(),
    };
    std::iter::once(session).chain(state.channels.iter().flat_map(move |channel| {
        let tally = LegTally::of(channel, &state.interactions);
        let own = Subject {
            target: Target::Channel(channel.id.clone()),
            kind: TargetKind::channel(channel.media),
            media: Some(channel.media),
            facts: Facts {
                state,
                channel: Some(channel),
                interaction: None,
            },
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
                state,
                channel: Some(channel),
                interaction: Some(item),
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
        (_, Some(item)) => other_interaction(item, options),
        (Some(channel), None) => self::channel(channel, &subject.tally),
        (None, None) => session(state, options),
    }
}

/// The built-in state rule of `capability`, in words, for explanations.
pub(crate) fn describe(capability: Capability) -> &'static str {
    match capability {
        SessionLogin => "every channel is logged out",
        SessionLogout => "a channel is logged in and no interaction is live",
        ChannelReady => "not ready or in after-call work, or busy without a pending ready",
        ChannelNotReady => "ready, not ready, in after-call work, or busy (as a pending request)",
        ChannelDial => "logged in with no call alerting, dialing, connected or held on the channel",
        Answer => "the call is alerting",
        Accept => "the interaction is offered",
        Reject => "the call is alerting or the interaction offered",
        Release => {
            "the call is dialing, connected, held or failed, or the interaction active or paused"
        }
        Hold | SendDtmf | SingleStepTransfer => "the call is connected (non-voice: active)",
        Retrieve => "the call is held and no other call on the channel is connected",
        Consult => "the call is connected and is the channel's only call",
        CompleteTransfer => "the channel has exactly two calls, one held and one connected",
        CompleteConference => {
            "the channel has exactly two calls, one held and one connected, within the party limit"
        }
        Alternate => "the channel has exactly two calls, one held and one connected",
        Reconnect => {
            "a consult pair: the original held, the consult leg dialing, connected or failed"
        }
        Mute => "the call is connected and not muted",
        Unmute => "the call is muted",
        DropParticipant => "the call is connected in a conference of three or more parties",
        UpdateData => "always, until the interaction ends",
        RecordingStart => "the call is connected and not recording",
        RecordingStop => "the call is recording or paused",
        RecordingPause => "the call is recording",
        RecordingResume => "the recording is paused",
        WrapUp => "the interaction is in wrap-up",
        Complete => "the interaction is in wrap-up (with a disposition, when mandatory)",
    }
}

/// `session.login` and `session.logout`.
pub(crate) fn session(state: &SessionState, options: &Options) -> CapSet {
    let logged_in = state.channels.iter().filter(|c| c.state.is_logged_in());
    let any_logged_in = state.channels.iter().any(|c| c.state.is_logged_in());
    let no_live_work = !state.interactions.iter().any(|i| i.state.is_live());
    let not_ready_if_required = !options.logout_requires_not_ready
        || logged_in.clone().all(|c| c.state == AgentState::NotReady);
    let mut caps = CapSet::EMPTY;
    caps.set(SessionLogin, !any_logged_in);
    caps.set(
        SessionLogout,
        any_logged_in && no_live_work && not_ready_if_required,
    );
    caps
}

/// `channel.ready`, `channel.notReady` and `channel.dial`.
pub(crate) fn channel(channel: &Channel, tally: &LegTally) -> CapSet {
    use AgentState::*;
    let mut caps = CapSet::EMPTY;
    caps.set(
        ChannelReady,
        match channel.state {
            NotReady | AfterCallWork => true,
            Busy => channel.pending != Some(Pending::Ready),
            LoggedOut | Ready | Reserved => false,
        },
    );
    caps.set(
        ChannelNotReady,
        matches!(channel.state, Ready | AfterCallWork | NotReady | Busy),
    );
    caps.set(ChannelDial, channel.state.is_logged_in() && !tally.busy);
    caps
}

/// Capabilities of a call.
pub(crate) fn voice_interaction(
    call: &Interaction,
    tally: &LegTally,
    siblings: &[Interaction],
    options: &Options,
) -> CapSet {
    use InteractionState::*;
    let s = call.state;
    let connected = s == Connected;
    let in_pair = s.is_call_leg() && tally.is_held_pair();
    let other_leg_ready =
        tally.connected == 1 || (options.transfer_on_alerting && tally.dialing == 1);
    let conference_size = tally.parties.saturating_sub(1);

    let mut caps = CapSet::EMPTY;
    caps.set(Answer, s == Alerting);
    caps.set(Reject, s == Alerting && options.reject_alerting);
    caps.set(Release, matches!(s, Dialing | Connected | Held | Failed));
    caps.set(Hold, connected);
    caps.set(Retrieve, s == Held && tally.connected == 0);
    caps.set(Consult, connected && tally.legs == 1);
    caps.set(CompleteTransfer, in_pair && other_leg_ready);
    caps.set(
        CompleteConference,
        in_pair && tally.connected == 1 && conference_size <= options.max_conference_parties,
    );
    caps.set(SingleStepTransfer, connected);
    caps.set(Alternate, in_pair && tally.connected == 1);
    caps.set(Reconnect, in_consult_pair(call, siblings));
    caps.set(SendDtmf, connected);
    caps.set(Mute, connected && !call.muted);
    caps.set(Unmute, call.muted);
    caps.set(DropParticipant, connected && call.parties >= 3);
    caps.set(UpdateData, true);
    caps.set(
        RecordingStart,
        connected && call.recording == Recording::Off,
    );
    caps.set(RecordingStop, call.recording != Recording::Off);
    caps.set(RecordingPause, call.recording == Recording::Active);
    caps.set(RecordingResume, call.recording == Recording::Paused);
    set_wrap_up(&mut caps, call, options);
    caps
}

/// Capabilities of a chat, email, task or callback.
pub(crate) fn other_interaction(item: &Interaction, options: &Options) -> CapSet {
    use InteractionState::*;
    let s = item.state;
    let mut caps = CapSet::EMPTY;
    caps.set(Accept, s == Offered);
    caps.set(Reject, s == Offered && options.reject_alerting);
    caps.set(Release, matches!(s, Active | Paused));
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

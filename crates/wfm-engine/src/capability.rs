//! The capability catalogue (the public contract with MediaBar developers) and its bitset.

use std::fmt;

use crate::model::Media;

macro_rules! catalogue {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// One toolbar capability. The discriminant is its catalogue position and bit.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Capability {
            $(#[doc = $doc] $variant,)*
        }

        impl Capability {
            /// Every capability, in catalogue order.
            pub const ALL: &'static [Capability] = &[$(Capability::$variant,)*];

            /// The public, namespaced name (e.g. `interaction.hold`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Capability::$variant => $name,)*
                }
            }
        }
    };
}

catalogue! {
    SessionLogin => "session.login", "Log the agent in.";
    SessionLogout => "session.logout", "Log the agent out of every channel.";
    ChannelLogin => "channel.login", "Log the agent in on this channel only.";
    ChannelLogout => "channel.logout", "Log the agent out of this channel only.";
    ChannelReady => "channel.ready", "Become ready (or request it after the current work).";
    ChannelNotReady => "channel.notReady", "Become not ready, or change the reason code.";
    ChannelCancelPending => "channel.cancelPending", "Cancel a Ready or Not Ready requested for after the current work.";
    ChannelExtendWrapUp => "channel.extendWrapUp", "Ask for more time in time-boxed after-call work.";
    ChannelDial => "channel.dial", "Place an outbound call.";
    Answer => "interaction.answer", "Answer an alerting call.";
    Accept => "interaction.accept", "Accept an offered non-voice interaction.";
    Reject => "interaction.reject", "Reject an alerting call or an offered interaction.";
    Redirect => "interaction.redirect", "Deflect an alerting call elsewhere without answering it.";
    Release => "interaction.release", "Hang up or close.";
    Hold => "interaction.hold", "Put a connected call on hold.";
    Retrieve => "interaction.retrieve", "Take a held call off hold.";
    Pause => "interaction.pause", "Park an active chat, email or task.";
    Resume => "interaction.resume", "Take a paused chat, email or task up again.";
    Consult => "interaction.consult", "Place a consultation call for this call.";
    CompleteTransfer => "interaction.completeTransfer", "Join the held and the connected call and drop out.";
    CompleteConference => "interaction.completeConference", "Join the held and the connected call into a conference.";
    SingleStepTransfer => "interaction.singleStepTransfer", "Blind-transfer.";
    SingleStepConference => "interaction.singleStepConference", "Add a party to the call in one step, without a consultation.";
    Alternate => "interaction.alternate", "Swap the held and the connected call.";
    Reconnect => "interaction.reconnect", "Drop the consult leg and return to the original call.";
    SendDtmf => "interaction.sendDtmf", "Send DTMF digits.";
    Mute => "interaction.mute", "Mute the agent's microphone.";
    Unmute => "interaction.unmute", "Unmute the agent's microphone.";
    DropParticipant => "interaction.dropParticipant", "Remove a party from a conference.";
    UpdateData => "interaction.updateData", "Edit attached data.";
    RecordingStart => "interaction.recording.start", "Start recording.";
    RecordingStop => "interaction.recording.stop", "Stop recording.";
    RecordingPause => "interaction.recording.pause", "Pause recording.";
    RecordingResume => "interaction.recording.resume", "Resume a paused recording.";
    Monitor => "interaction.monitor", "Supervisor: listen in on an agent's call (also back from whisper or barge).";
    Whisper => "interaction.whisper", "Supervisor: coach the agent, unheard by the customer.";
    Barge => "interaction.barge", "Supervisor: join an agent's call so that everyone hears.";
    StopMonitoring => "interaction.stopMonitoring", "Supervisor: leave an agent's call.";
    PreviewAccept => "interaction.preview.accept", "Accept a previewed outbound record: the call is placed.";
    PreviewSkip => "interaction.preview.skip", "Pass a previewed record back to the campaign for later.";
    PreviewReject => "interaction.preview.reject", "Refuse a previewed record: it is not called.";
    CallbackCall => "interaction.callback.call", "Call the customer of a scheduled callback now.";
    CallbackReschedule => "interaction.callback.reschedule", "Move a scheduled callback to another time.";
    CallbackCancel => "interaction.callback.cancel", "Cancel a scheduled callback.";
    WrapUp => "interaction.wrapUp", "Set a disposition.";
    Complete => "interaction.complete", "Mark the interaction done.";
}

impl Capability {
    /// The capability with this public name.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.iter().copied().find(|c| c.name() == name)
    }

    const fn bit(self) -> u64 {
        1 << self as u8
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities as one machine word; iteration yields catalogue order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(u64);

impl CapSet {
    /// No capability.
    pub const EMPTY: CapSet = CapSet(0);

    /// The set of `caps`.
    pub const fn of(caps: &[Capability]) -> CapSet {
        let mut bits = 0;
        let mut i = 0;
        while i < caps.len() {
            bits |= caps[i].bit();
            i += 1;
        }
        CapSet(bits)
    }

    /// The set as bits: bit `i` is the capability at catalogue position `i`. This is how
    /// the set crosses process boundaries, against the catalogue sent once per stream.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether `cap` is in the set.
    pub const fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Adds `cap` when `on` holds; the branch-free form keeps rule evaluation tight.
    pub fn set(&mut self, cap: Capability, on: bool) {
        self.0 |= (on as u64) << cap as u8;
    }

    /// Capabilities in both sets.
    pub const fn intersect(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    /// Capabilities in either set.
    pub const fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    /// Capabilities in `self` but not in `other`.
    pub const fn without(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of capabilities in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The capabilities, in catalogue order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .iter()
            .copied()
            .filter(move |c| self.contains(*c))
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Capability::name))
            .finish()
    }
}

impl FromIterator<Capability> for CapSet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut set = CapSet::EMPTY;
        for cap in iter {
            set.set(cap, true);
        }
        set
    }
}

/// The kind of a target, which decides the capabilities its view state lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// `<sessionId>`.
    Session,
    /// `<sessionId>.<channelId>` of a voice channel.
    VoiceChannel,
    /// `<sessionId>.<channelId>` of a non-voice channel.
    OtherChannel,
    /// `<sessionId>.<channelId>.<interactionId>` of a call.
    VoiceInteraction,
    /// `<sessionId>.<channelId>.<interactionId>` of a chat, email, task or callback.
    OtherInteraction,
}

impl TargetKind {
    /// Every kind.
    pub const ALL: [TargetKind; 5] = [
        TargetKind::Session,
        TargetKind::VoiceChannel,
        TargetKind::OtherChannel,
        TargetKind::VoiceInteraction,
        TargetKind::OtherInteraction,
    ];

    /// The kind of a channel target of `media`.
    pub fn channel(media: Media) -> TargetKind {
        if media.is_voice() {
            TargetKind::VoiceChannel
        } else {
            TargetKind::OtherChannel
        }
    }

    /// The kind of an interaction target of `media`.
    pub fn interaction(media: Media) -> TargetKind {
        if media.is_voice() {
            TargetKind::VoiceInteraction
        } else {
            TargetKind::OtherInteraction
        }
    }

    /// Every capability the catalogue defines for this kind, before feature switches.
    pub const fn catalogue(self) -> CapSet {
        /// What every channel, of any media, offers.
        const CHANNEL: CapSet = CapSet::of(&[
            Capability::ChannelLogin,
            Capability::ChannelLogout,
            Capability::ChannelReady,
            Capability::ChannelNotReady,
            Capability::ChannelCancelPending,
            Capability::ChannelExtendWrapUp,
        ]);
        use Capability::*;
        match self {
            TargetKind::Session => CapSet::of(&[SessionLogin, SessionLogout]),
            // A voice channel is every channel and dials besides (bit order gives the list
            // order, so the union keeps it).
            TargetKind::VoiceChannel => CHANNEL.union(CapSet::of(&[ChannelDial])),
            TargetKind::OtherChannel => CHANNEL,
            TargetKind::VoiceInteraction => CapSet::of(&[
                Answer,
                Reject,
                Redirect,
                Release,
                Hold,
                Retrieve,
                Consult,
                CompleteTransfer,
                CompleteConference,
                SingleStepTransfer,
                SingleStepConference,
                Alternate,
                Reconnect,
                SendDtmf,
                Mute,
                Unmute,
                DropParticipant,
                UpdateData,
                RecordingStart,
                RecordingStop,
                RecordingPause,
                RecordingResume,
                Monitor,
                Whisper,
                Barge,
                StopMonitoring,
                PreviewAccept,
                PreviewSkip,
                PreviewReject,
                WrapUp,
                Complete,
            ]),
            TargetKind::OtherInteraction => CapSet::of(&[
                Accept,
                Reject,
                Release,
                Pause,
                Resume,
                SingleStepTransfer,
                CallbackCall,
                CallbackReschedule,
                CallbackCancel,
                UpdateData,
                WrapUp,
                Complete,
            ]),
        }
    }

    /// A short human name, used in docs and explanations.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Session => "session",
            TargetKind::VoiceChannel => "voice channel",
            TargetKind::OtherChannel => "non-voice channel",
            TargetKind::VoiceInteraction => "voice interaction",
            TargetKind::OtherInteraction => "non-voice interaction",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for cap in Capability::ALL {
            assert_eq!(Capability::from_name(cap.name()), Some(*cap));
        }
        assert_eq!(Capability::from_name("interaction.teleport"), None);
        assert!(Capability::ALL.len() <= 64, "CapSet is one u64");
    }

    #[test]
    fn iteration_follows_catalogue_order() {
        let set = CapSet::of(&[Capability::Complete, Capability::Answer, Capability::Hold]);
        let order: Vec<_> = set.iter().collect();
        assert_eq!(
            order,
            [Capability::Answer, Capability::Hold, Capability::Complete]
        );
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn every_capability_belongs_to_some_kind() {
        let all = TargetKind::ALL
            .iter()
            .fold(CapSet::EMPTY, |acc, k| acc.union(k.catalogue()));
        assert_eq!(all.len(), Capability::ALL.len());
    }
}

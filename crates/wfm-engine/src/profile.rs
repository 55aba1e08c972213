//! Workflow profiles: the options and feature switches that tune the built-in state rules.

use crate::capability::{CapSet, Capability, TargetKind};

/// Behaviour choices where real contact-center platforms disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `session.logout` also needs every logged-in channel to be `not_ready`.
    pub logout_requires_not_ready: bool,
    /// `interaction.reject` is enabled while alerting / offered.
    pub reject_alerting: bool,
    /// `interaction.completeTransfer` is enabled while the other leg is still dialing.
    pub transfer_on_alerting: bool,
    /// `interaction.completeConference` only while the joined call would have at most this many parties.
    pub max_conference_parties: u32,
    /// `interaction.complete` needs a disposition to have been set.
    pub mandatory_disposition: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            logout_requires_not_ready: false,
            reject_alerting: true,
            transfer_on_alerting: false,
            max_conference_parties: 6,
            mandatory_disposition: false,
        }
    }
}

/// A feature switch: when off, its capabilities disappear from every view state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Switch {
    /// Call recording (licence).
    Recording,
    /// Pausing and resuming a recording.
    RecordingPause,
    /// Microphone mute.
    Mute,
    /// DTMF digits.
    Dtmf,
    /// Consultation calls and the transfer/reconnect that follow them.
    Consult,
    /// Conferences.
    Conference,
    /// Blind transfer.
    SingleStepTransfer,
    /// Rejecting offered work.
    Reject,
    /// Answering through CTI (off for phones that must be picked up by hand).
    Answer,
}

impl Switch {
    /// Every switch.
    pub const ALL: [Switch; 9] = [
        Switch::Recording,
        Switch::RecordingPause,
        Switch::Mute,
        Switch::Dtmf,
        Switch::Consult,
        Switch::Conference,
        Switch::SingleStepTransfer,
        Switch::Reject,
        Switch::Answer,
    ];

    /// The configuration name.
    pub const fn name(self) -> &'static str {
        match self {
            Switch::Recording => "recording",
            Switch::RecordingPause => "recording_pause",
            Switch::Mute => "mute",
            Switch::Dtmf => "dtmf",
            Switch::Consult => "consult",
            Switch::Conference => "conference",
            Switch::SingleStepTransfer => "single_step_transfer",
            Switch::Reject => "reject",
            Switch::Answer => "answer",
        }
    }

    /// The capabilities the switch removes when off.
    pub const fn capabilities(self) -> CapSet {
        use Capability::*;
        match self {
            Switch::Recording => CapSet::of(&[
                RecordingStart,
                RecordingStop,
                RecordingPause,
                RecordingResume,
            ]),
            Switch::RecordingPause => CapSet::of(&[RecordingPause, RecordingResume]),
            Switch::Mute => CapSet::of(&[Mute, Unmute]),
            Switch::Dtmf => CapSet::of(&[SendDtmf]),
            Switch::Consult => CapSet::of(&[Consult, CompleteTransfer, Reconnect]),
            Switch::Conference => CapSet::of(&[CompleteConference, DropParticipant]),
            Switch::SingleStepTransfer => CapSet::of(&[SingleStepTransfer]),
            Switch::Reject => CapSet::of(&[Reject]),
            Switch::Answer => CapSet::of(&[Answer]),
        }
    }

    /// The switch with this configuration name.
    pub fn from_name(name: &str) -> Option<Switch> {
        Switch::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A named set of options and switches, with the defined capabilities per target kind
/// computed once so that view-state computation only masks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    name: String,
    options: Options,
    switched_off: CapSet,
    off: Vec<Switch>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile::new("default", Options::default(), &[])
    }
}

impl Profile {
    /// The name of the built-in profile.
    pub const DEFAULT_NAME: &'static str = "default";

    /// A profile with `options` and the switches in `off` turned off.
    pub fn new(name: impl Into<String>, options: Options, off: &[Switch]) -> Self {
        let switched_off = off
            .iter()
            .fold(CapSet::EMPTY, |acc, s| acc.union(s.capabilities()));
        let mut off = off.to_vec();
        off.dedup();
        Self {
            name: name.into(),
            options,
            switched_off,
            off,
        }
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Whether `switch` is on.
    pub fn is_on(&self, switch: Switch) -> bool {
        !self.off.contains(&switch)
    }

    /// The capabilities a target of `kind` lists: its catalogue minus switched-off ones.
    pub fn defined(&self, kind: TargetKind) -> CapSet {
        kind.catalogue().without(self.switched_off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_names_round_trip() {
        for s in Switch::ALL {
            assert_eq!(Switch::from_name(s.name()), Some(s));
        }
        assert_eq!(Switch::from_name("teleport"), None);
    }

    #[test]
    fn a_switch_that_is_off_removes_its_capabilities_from_the_list() {
        let profile = Profile::new("no-rec", Options::default(), &[Switch::Recording]);
        let defined = profile.defined(TargetKind::VoiceInteraction);
        assert!(!defined.contains(Capability::RecordingStart));
        assert!(!defined.contains(Capability::RecordingResume));
        assert!(defined.contains(Capability::Hold));
        assert!(!profile.is_on(Switch::Recording));
        assert!(profile.is_on(Switch::Mute));
        assert_eq!(
            Profile::default().defined(TargetKind::VoiceInteraction),
            TargetKind::VoiceInteraction.catalogue()
        );
    }
}

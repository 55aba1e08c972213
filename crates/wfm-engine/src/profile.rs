//! Workflow profiles: the options and feature switches that tune the built-in state rules.

use std::sync::Arc;

use crate::capability::{CapSet, Capability, TargetKind};
use crate::custom::{CustomRule, CustomRules};
use crate::limits;

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
    /// `interaction.complete` needs a disposition, and after-call work cannot be left
    /// (Ready, Not Ready, logout) while a wrapped-up interaction lacks one.
    pub mandatory_disposition: bool,
    /// `channel.dial` ignores work on the session's other channels.
    pub dial_during_other_media: bool,
    /// `interaction.singleStepTransfer` stays enabled on the connected leg of a consult pair.
    pub single_step_transfer_in_consult: bool,
    /// After-call work is time-boxed to this many seconds (0: it is not).
    pub acw_timeout_secs: u32,
    /// How many times `channel.extendWrapUp` may extend one after-call work.
    pub max_wrap_up_extensions: u32,
    /// `interaction.dropParticipant` only for the conference controller.
    pub drop_requires_controller: bool,
    /// The most interactions any channel is given at once, whatever capacity the
    /// Interaction Processor reports for it: `interaction.accept` waits below it.
    pub max_channel_capacity: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            logout_requires_not_ready: false,
            reject_alerting: true,
            transfer_on_alerting: false,
            max_conference_parties: 6,
            mandatory_disposition: false,
            dial_during_other_media: false,
            single_step_transfer_in_consult: false,
            acw_timeout_secs: 0,
            max_wrap_up_extensions: 1,
            drop_requires_controller: false,
            max_channel_capacity: limits::MAX_CAPACITY,
        }
    }
}

impl Options {
    /// Every option as `(name, value)`, in declaration order, the name as configuration
    /// spells it and the value as a configuration file writes it (`true`, `6`).
    ///
    /// `Options::default().describe()` lists the defaults; the catalogue document is checked
    /// against it.
    pub fn describe(&self) -> [(&'static str, String); 11] {
        // Destructured so that a new field fails to compile here instead of going unlisted.
        let Options {
            logout_requires_not_ready,
            reject_alerting,
            transfer_on_alerting,
            max_conference_parties,
            mandatory_disposition,
            dial_during_other_media,
            single_step_transfer_in_consult,
            acw_timeout_secs,
            max_wrap_up_extensions,
            drop_requires_controller,
            max_channel_capacity,
        } = self;
        [
            (
                "logout_requires_not_ready",
                logout_requires_not_ready.to_string(),
            ),
            ("reject_alerting", reject_alerting.to_string()),
            ("transfer_on_alerting", transfer_on_alerting.to_string()),
            ("max_conference_parties", max_conference_parties.to_string()),
            ("mandatory_disposition", mandatory_disposition.to_string()),
            (
                "dial_during_other_media",
                dial_during_other_media.to_string(),
            ),
            (
                "single_step_transfer_in_consult",
                single_step_transfer_in_consult.to_string(),
            ),
            ("acw_timeout_secs", acw_timeout_secs.to_string()),
            ("max_wrap_up_extensions", max_wrap_up_extensions.to_string()),
            (
                "drop_requires_controller",
                drop_requires_controller.to_string(),
            ),
            ("max_channel_capacity", max_channel_capacity.to_string()),
        ]
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
    /// Consultation calls and the reconnect that cancels one. Completing a transfer stays:
    /// it also joins two independent calls, as a conference does.
    Consult,
    /// Conferences.
    Conference,
    /// Blind transfer.
    SingleStepTransfer,
    /// Rejecting offered work.
    Reject,
    /// Answering through CTI (off for phones that must be picked up by hand).
    Answer,
    /// Deflecting an alerting call.
    Redirect,
    /// Pausing and resuming non-voice work.
    Pause,
    /// Supervisor monitoring, whisper and barge-in.
    Supervisor,
    /// Outbound preview dialing.
    Preview,
    /// Scheduled callbacks handled from the desktop.
    Callback,
}

impl Switch {
    /// Every switch.
    pub const ALL: [Switch; 14] = [
        Switch::Recording,
        Switch::RecordingPause,
        Switch::Mute,
        Switch::Dtmf,
        Switch::Consult,
        Switch::Conference,
        Switch::SingleStepTransfer,
        Switch::Reject,
        Switch::Answer,
        Switch::Redirect,
        Switch::Pause,
        Switch::Supervisor,
        Switch::Preview,
        Switch::Callback,
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
            Switch::Redirect => "redirect",
            Switch::Pause => "pause",
            Switch::Supervisor => "supervisor",
            Switch::Preview => "preview",
            Switch::Callback => "callback",
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
            Switch::Consult => CapSet::of(&[Consult, Reconnect]),
            Switch::Conference => {
                CapSet::of(&[CompleteConference, SingleStepConference, DropParticipant])
            }
            Switch::SingleStepTransfer => CapSet::of(&[SingleStepTransfer]),
            Switch::Reject => CapSet::of(&[Reject]),
            Switch::Answer => CapSet::of(&[Answer]),
            Switch::Redirect => CapSet::of(&[Redirect]),
            Switch::Pause => CapSet::of(&[Pause, Resume]),
            Switch::Supervisor => CapSet::of(&[Monitor, Whisper, Barge, StopMonitoring]),
            Switch::Preview => CapSet::of(&[PreviewAccept, PreviewSkip, PreviewReject]),
            Switch::Callback => CapSet::of(&[CallbackCall, CallbackReschedule, CallbackCancel]),
        }
    }

    /// The switch with this configuration name.
    pub fn from_name(name: &str) -> Option<Switch> {
        Switch::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The reason codes a site lets agents choose, for the toolbar to offer: the view context
/// carries them (Finesse Not Ready and Sign Out reason codes). They label; they never decide
/// what is enabled, because the platform is the one that refuses a wrong code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReasonCodes {
    not_ready: Vec<String>,
    logout: Vec<String>,
    not_ready_required: bool,
    logout_required: bool,
    /// The lists joined with commas once, so that a context shares them instead of
    /// building them per event.
    not_ready_joined: Option<Arc<str>>,
    logout_joined: Option<Arc<str>>,
    /// Wrap-up (disposition) codes, joined likewise (Finesse's wrap-up reasons).
    wrap_up: Vec<String>,
    wrap_up_joined: Option<Arc<str>>,
}

impl ReasonCodes {
    /// Not Ready codes and logout codes, and whether each transition needs one.
    pub fn new(
        not_ready: Vec<String>,
        not_ready_required: bool,
        logout: Vec<String>,
        logout_required: bool,
    ) -> Self {
        Self {
            not_ready_joined: joined(&not_ready),
            logout_joined: joined(&logout),
            not_ready,
            logout,
            not_ready_required,
            logout_required,
            wrap_up: Vec::new(),
            wrap_up_joined: None,
        }
    }

    /// These codes with `wrap_up` as the dispositions agents may pick in wrap-up.
    pub fn with_wrap_up(mut self, wrap_up: Vec<String>) -> Self {
        self.wrap_up_joined = joined(&wrap_up);
        self.wrap_up = wrap_up;
        self
    }

    /// The wrap-up codes agents may pick, in the profile's order.
    pub fn wrap_up(&self) -> &[String] {
        &self.wrap_up
    }

    /// The Not Ready reason codes agents may pick, in the profile's order.
    pub fn not_ready(&self) -> &[String] {
        &self.not_ready
    }

    /// The logout reason codes agents may pick, in the profile's order.
    pub fn logout(&self) -> &[String] {
        &self.logout
    }

    /// Whether going Not Ready needs a reason code.
    pub fn not_ready_required(&self) -> bool {
        self.not_ready_required
    }

    /// Whether logging out needs a reason code.
    pub fn logout_required(&self) -> bool {
        self.logout_required
    }

    /// The Not Ready codes joined with commas, if any.
    pub(crate) fn not_ready_joined(&self) -> Option<&Arc<str>> {
        self.not_ready_joined.as_ref()
    }

    /// The logout codes joined with commas, if any.
    pub(crate) fn logout_joined(&self) -> Option<&Arc<str>> {
        self.logout_joined.as_ref()
    }

    /// The wrap-up codes joined with commas, if any.
    pub(crate) fn wrap_up_joined(&self) -> Option<&Arc<str>> {
        self.wrap_up_joined.as_ref()
    }
}

/// `codes` joined with commas, once; `None` when there are none.
fn joined(codes: &[String]) -> Option<Arc<str>> {
    (!codes.is_empty()).then(|| Arc::from(codes.join(",")))
}

/// A named set of options and switches, with the defined capabilities per target kind
/// computed once so that view-state computation only masks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    name: String,
    options: Options,
    switched_off: CapSet,
    off: Vec<Switch>,
    rules: CustomRules,
    reasons: ReasonCodes,
    show_monitoring: bool,
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
        // Unsorted duplicates too, so that equal switch sets give equal profiles.
        let off = off
            .iter()
            .fold(Vec::with_capacity(off.len()), |mut unique, s| {
                if !unique.contains(s) {
                    unique.push(*s);
                }
                unique
            });
        Self {
            name: name.into(),
            options,
            switched_off,
            off,
            rules: CustomRules::default(),
            reasons: ReasonCodes::default(),
            show_monitoring: false,
        }
    }

    /// This profile telling agents when a supervisor monitors their calls, or not.
    pub fn with_show_monitoring(mut self, show: bool) -> Self {
        self.show_monitoring = show;
        self
    }

    /// Whether an agent's interaction context says it is being monitored.
    pub fn show_monitoring(&self) -> bool {
        self.show_monitoring
    }

    /// This profile with the reason codes `reasons`.
    pub fn with_reasons(mut self, reasons: ReasonCodes) -> Self {
        self.reasons = reasons;
        self
    }

    /// The reason codes agents may choose.
    pub fn reasons(&self) -> &ReasonCodes {
        &self.reasons
    }

    /// This profile with `rules`, evaluated in order after the built-in state rules.
    pub fn with_rules(mut self, rules: Vec<CustomRule>) -> Self {
        self.rules = CustomRules::new(rules);
        self
    }

    /// The custom rules.
    pub fn rules(&self) -> &[CustomRule] {
        self.rules.all()
    }

    pub(crate) fn custom(&self) -> &CustomRules {
        &self.rules
    }

    /// The switch that removes `capability`, if one is off.
    pub fn switched_off_by(&self, capability: Capability) -> Option<Switch> {
        self.off
            .iter()
            .copied()
            .find(|s| s.capabilities().contains(capability))
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
    fn options_describe_names_and_defaults() {
        let described = Options::default().describe();
        let as_strs: Vec<(&str, &str)> = described.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            as_strs,
            [
                ("logout_requires_not_ready", "false"),
                ("reject_alerting", "true"),
                ("transfer_on_alerting", "false"),
                ("max_conference_parties", "6"),
                ("mandatory_disposition", "false"),
                ("dial_during_other_media", "false"),
                ("single_step_transfer_in_consult", "false"),
                ("acw_timeout_secs", "0"),
                ("max_wrap_up_extensions", "1"),
                ("drop_requires_controller", "false"),
                ("max_channel_capacity", "64"),
            ]
        );
        let custom = Options {
            max_conference_parties: 9,
            mandatory_disposition: true,
            ..Options::default()
        };
        assert_eq!(custom.describe()[3].1, "9");
        assert_eq!(custom.describe()[4].1, "true");
    }

    #[test]
    fn repeated_switches_make_the_same_profile() {
        let repeated = Profile::new(
            "p",
            Options::default(),
            &[Switch::Mute, Switch::Dtmf, Switch::Mute],
        );
        let once = Profile::new("p", Options::default(), &[Switch::Mute, Switch::Dtmf]);
        assert_eq!(repeated, once);
        assert!(!repeated.is_on(Switch::Mute));
        assert!(repeated.is_on(Switch::Answer));
    }

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

//! Why each capability of each target is enabled or disabled: the answer to an agent's
//! "why is Transfer grey?".

use crate::capability::{Capability, TargetKind};
use crate::custom::{Circumstances, CustomRule};
use crate::model::SessionState;
use crate::profile::{Options, Profile, Switch};
use crate::rules;
use crate::view::{Target, TargetContext, TargetView};

/// What decided one capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The state rule holds and no custom rule objects.
    Enabled,
    /// A feature switch is off, so the capability is not even listed.
    SwitchedOff(Switch),
    /// The telephony state does not allow it.
    StateRule,
    /// The state would allow it, but this option of the profile forbids it.
    Option(&'static str),
    /// The state allows it, but this custom rule disables it.
    CustomRule(CustomRule),
}

/// One capability and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityVerdict {
    /// The capability.
    pub capability: Capability,
    /// What decided it.
    pub verdict: Verdict,
    /// The built-in state rule, in words.
    pub state_rule: &'static str,
}

/// Every capability of one target, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetExplanation {
    /// The target.
    pub target: Target,
    /// Its kind.
    pub kind: TargetKind,
    /// Its state, for the heading.
    pub context: TargetContext,
    /// Its catalogue, in order.
    pub capabilities: Vec<CapabilityVerdict>,
}

/// Each option set to the value that forbids least, where the profile forbids more.
fn relaxations(options: &Options) -> Vec<(&'static str, Options)> {
    let relaxed = |change: fn(&mut Options)| {
        let mut copy = options.clone();
        change(&mut copy);
        copy
    };
    [
        (
            "logout_requires_not_ready",
            relaxed(|o| o.logout_requires_not_ready = false),
        ),
        ("reject_alerting", relaxed(|o| o.reject_alerting = true)),
        (
            "transfer_on_alerting",
            relaxed(|o| o.transfer_on_alerting = true),
        ),
        (
            "max_conference_parties",
            relaxed(|o| o.max_conference_parties = u32::MAX),
        ),
        (
            "mandatory_disposition",
            relaxed(|o| o.mandatory_disposition = false),
        ),
        (
            "dial_during_other_media",
            relaxed(|o| o.dial_during_other_media = true),
        ),
        (
            "single_step_transfer_in_consult",
            relaxed(|o| o.single_step_transfer_in_consult = true),
        ),
        (
            "acw_timeout_secs",
            relaxed(|o| o.acw_timeout_secs = o.acw_timeout_secs.max(1)),
        ),
        (
            "max_wrap_up_extensions",
            relaxed(|o| o.max_wrap_up_extensions = u32::MAX),
        ),
        (
            "drop_requires_controller",
            relaxed(|o| o.drop_requires_controller = false),
        ),
        (
            "max_channel_capacity",
            relaxed(|o| o.max_channel_capacity = u32::MAX),
        ),
    ]
    .into_iter()
    .filter(|(_, relaxed)| relaxed != options)
    .collect()
}

/// Explains every capability of every target of `state` under `profile`.
pub fn explain(state: &SessionState, profile: &Profile) -> Vec<TargetExplanation> {
    let options = profile.options();
    let relaxed = relaxations(options);
    rules::subjects(state, Circumstances::default())
        .map(|subject| {
            let allowed = rules::evaluate(&subject, options);
            let capabilities = subject
                .kind
                .catalogue()
                .iter()
                .map(|capability| {
                    let verdict = if let Some(switch) = profile.switched_off_by(capability) {
                        Verdict::SwitchedOff(switch)
                    } else if allowed.contains(capability) {
                        match profile.custom().deciding(capability, &subject.facts) {
                            Some(rule) => Verdict::CustomRule(rule.clone()),
                            None => Verdict::Enabled,
                        }
                    } else {
                        relaxed
                            .iter()
                            .find(|(_, o)| rules::evaluate(&subject, o).contains(capability))
                            .map_or(Verdict::StateRule, |(name, _)| Verdict::Option(name))
                    };
                    CapabilityVerdict {
                        capability,
                        verdict,
                        state_rule: rules::describe(capability),
                    }
                })
                .collect();
            let view = TargetView {
                target: subject.target.clone(),
                kind: subject.kind,
                media: subject.media,
                enabled: allowed,
            };
            TargetExplanation {
                context: TargetContext::of(&view, state, profile),
                target: subject.target,
                kind: subject.kind,
                capabilities,
            }
        })
        .collect()
}

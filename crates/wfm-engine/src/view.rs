//! View state: the enabled capabilities of every target, how to compute it from the CTI
//! state, and how two view states differ as `state.updated` events.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::capability::{CapSet, Capability, TargetKind};
use crate::custom::Circumstances;
use crate::id::Id;
use crate::limits;
use crate::model::{Direction, InteractionState, Media, Pending, SessionState, Supervision};
use crate::profile::Profile;
use crate::rules;

/// A target below the session, identified by its ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The session itself.
    Session,
    /// A channel.
    Channel(Id),
    /// An interaction on a channel.
    Interaction {
        /// The channel.
        channel: Id,
        /// The interaction.
        interaction: Id,
    },
}

impl Target {
    /// The dot-notation target name of the platform spec, e.g. `s1.voice.call-7`.
    pub fn render(&self, session: &Id) -> String {
        // `join` sizes the string once; `format!` through Display cost about 900
        // instructions a name (callgrind, `wfm bench callgrind apply-3`), a fifth of an update.
        match self {
            Target::Session => session.as_str().to_owned(),
            Target::Channel(channel) => [session.as_str(), channel.as_str()].join("."),
            Target::Interaction {
                channel,
                interaction,
            } => [session.as_str(), channel.as_str(), interaction.as_str()].join("."),
        }
    }
}

/// The computed view of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetView {
    /// Which target.
    pub target: Target,
    /// Its kind, which decides the capabilities listed.
    pub kind: TargetKind,
    /// Its media (none for the session).
    pub media: Option<Media>,
    /// The capabilities enabled right now, always within the profile's defined set.
    pub enabled: CapSet,
}

/// The view state of every target of a session, in tree order: the session, then each
/// channel followed by its interactions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ViewState {
    targets: Vec<TargetView>,
}

impl ViewState {
    /// Computes the view state of `state` under `profile`: the built-in state rules, masked
    /// by the feature switches, then narrowed by the custom rules.
    pub fn compute(state: &SessionState, profile: &Profile) -> ViewState {
        Self::compute_in(state, profile, Circumstances::default())
    }

    /// [`ViewState::compute`] for an agent of a group, at a time: what custom rules on the
    /// group or the time in state read.
    pub fn compute_in(
        state: &SessionState,
        profile: &Profile,
        around: Circumstances<'_>,
    ) -> ViewState {
        let options = profile.options();
        let mut targets = Vec::with_capacity(1 + state.channels.len() + state.interactions.len());
        targets.extend(rules::subjects(state, around).map(|subject| {
            let allowed =
                rules::evaluate(&subject, options).intersect(profile.defined(subject.kind));
            TargetView {
                enabled: profile.custom().narrow(allowed, &subject.facts),
                target: subject.target,
                kind: subject.kind,
                media: subject.media,
            }
        }));
        ViewState { targets }
    }

    /// Every target's view, in tree order.
    pub fn targets(&self) -> &[TargetView] {
        &self.targets
    }

    /// The view of `target`, if it exists.
    pub fn get(&self, target: &Target) -> Option<&TargetView> {
        self.targets.iter().find(|t| &t.target == target)
    }

    /// The targets whose view differs from `previous` (enabled set or kind), followed by the
    /// targets that are gone.
    /// A gone target's change carries an empty enabled set: its final all-disabled view.
    pub fn changes_since<'a>(
        &'a self,
        previous: &'a ViewState,
    ) -> impl Iterator<Item = Change<'a>> {
        let changed =
            self.targets
                .iter()
                .enumerate()
                .filter_map(
                    move |(index, now)| match previous.find_near(&now.target, index) {
                        // The kind decides the listed capabilities, so a channel id reused
                        // for another media by a snapshot changes the list even when the
                        // enabled set stays the same.
                        Some(before)
                            if before.enabled == now.enabled && before.kind == now.kind =>
                        {
                            None
                        }
                        _ => Some(Change {
                            view: now,
                            gone: false,
                        }),
                    },
                );
        let gone = previous
            .targets
            .iter()
            .enumerate()
            .filter_map(move |(index, before)| {
                self.find_near(&before.target, index)
                    .is_none()
                    .then_some(Change {
                        view: before,
                        gone: true,
                    })
            });
        changed.chain(gone)
    }

    /// Looks `target` up, trying `hint` first: most updates keep targets where they were.
    fn find_near(&self, target: &Target, hint: usize) -> Option<&TargetView> {
        match self.targets.get(hint) {
            Some(view) if &view.target == target => Some(view),
            _ => self.get(target),
        }
    }
}

/// One target whose view changed between two view states.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The target's view: the new one, or the last one for a gone target.
    pub view: &'a TargetView,
    /// The target no longer exists; its final view has everything disabled.
    pub gone: bool,
}

/// A small summary of a target for labels and debugging; never needed to know what is enabled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetContext {
    /// The media of a channel or interaction.
    pub media: Option<Media>,
    /// The agent, channel or interaction state, snake_case.
    pub state: &'static str,
    /// The not-ready reason code of a channel.
    pub reason: Option<String>,
    /// The pending state of a channel.
    pub pending: Option<Pending>,
    /// The direction of an interaction.
    pub direction: Option<Direction>,
    /// The reason codes the agent may pick, comma-separated: Not Ready codes on a channel,
    /// logout codes on the session, wrap-up codes (dispositions) on an interaction in
    /// wrap-up.
    pub reasons: Option<Arc<str>>,
    /// Whether the transition those codes are for needs one.
    pub reason_required: bool,
    /// The number of parties on an interaction, the agent included.
    pub participants: Option<&'static str>,
    /// How a supervisor takes part in a supervised agent's interaction.
    pub supervision: Option<&'static str>,
    /// A supervisor monitors this interaction, shown where the profile allows it.
    pub monitored: bool,
    /// The scheduled callback a call was placed for.
    pub callback_of: Option<Id>,
    /// The interaction is an outbound preview reservation.
    pub preview: bool,
    /// The other party of an interaction, as the platform names it.
    pub caller: Option<Arc<str>>,
    /// The queue an interaction was routed through.
    pub queue: Option<Arc<str>>,
    /// The attached data of an interaction, as of the event (shared with the state):
    /// `data.<key>` entries.
    pub data: Option<Arc<BTreeMap<String, String>>>,
}

impl TargetContext {
    /// The context as key/value pairs, in a stable order: the labels, then the attached
    /// data as `data.<key>`.
    pub fn entries(&self) -> impl Iterator<Item = (Cow<'static, str>, &str)> {
        let data = self
            .data
            .iter()
            .flat_map(|data| data.iter())
            .map(|(key, value)| (Cow::Owned(format!("data.{key}")), value.as_str()));
        self.labels()
            .map(|(key, value)| (Cow::Borrowed(key), value))
            .chain(data)
    }

    /// The fixed labels, in a stable order.
    fn labels(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            self.media.map(|m| ("media", m.as_str())),
            Some(("state", self.state)),
            self.reason.as_deref().map(|r| ("reason", r)),
            self.pending.map(|p| ("pending", p.as_str())),
            self.direction.map(|d| ("direction", d.as_str())),
            self.reasons.as_deref().map(|r| ("reasons", r)),
            self.reason_required.then_some(("reason_required", "true")),
            self.participants.map(|n| ("participants", n)),
            self.supervision.map(|s| ("supervision", s)),
            self.monitored.then_some(("monitored", "true")),
            self.callback_of
                .as_ref()
                .map(|c| ("callback_of", c.as_str())),
            self.preview.then_some(("preview", "true")),
            self.caller.as_deref().map(|c| ("caller", c)),
            self.queue.as_deref().map(|q| ("queue", q)),
        ]
        .into_iter()
        .flatten()
    }

    /// The context of a target that has just gone: its media, and state `ended`.
    pub(crate) fn gone(target: &TargetView) -> TargetContext {
        TargetContext {
            media: target.media,
            state: InteractionState::Ended.as_str(),
            ..TargetContext::default()
        }
    }

    /// The context of `target` in `state` under `profile`.
    pub(crate) fn of(
        target: &TargetView,
        state: &SessionState,
        profile: &Profile,
    ) -> TargetContext {
        let gone = TargetContext::gone(target);
        let reasons = profile.reasons();
        match &target.target {
            Target::Session => TargetContext {
                state: if state.channels.iter().any(|c| c.state.is_logged_in()) {
                    "logged_in"
                } else {
                    "logged_out"
                },
                reasons: reasons.logout_joined().cloned(),
                reason_required: reasons.logout_required(),
                ..TargetContext::default()
            },
            Target::Channel(id) => state.channel(id).map_or(gone, |c| TargetContext {
                media: Some(c.media),
                state: c.state.as_str(),
                reason: (!c.reason.is_empty()).then(|| c.reason.clone()),
                pending: c.pending,
                direction: None,
                reasons: reasons.not_ready_joined().cloned(),
                reason_required: reasons.not_ready_required(),
                participants: None,
                supervision: None,
                monitored: false,
                callback_of: None,
                preview: false,
                caller: None,
                queue: None,
                data: None,
            }),
            Target::Interaction { interaction, .. } => {
                state.interaction(interaction).map_or(gone, |i| {
                    let wrap_up = i.state == InteractionState::WrapUp;
                    TargetContext {
                        media: target.media,
                        state: i.state.as_str(),
                        reasons: reasons.wrap_up_joined().filter(|_| wrap_up).cloned(),
                        reason_required: wrap_up
                            && reasons.wrap_up_joined().is_some()
                            && profile.options().mandatory_disposition,
                        direction: Some(i.direction),
                        participants: Some(count_text(i.party_count())),
                        supervision: (i.supervision != Supervision::Own)
                            .then(|| i.supervision.as_str()),
                        monitored: i.monitored && profile.show_monitoring(),
                        callback_of: i.callback_of.clone(),
                        preview: i.preview,
                        caller: (!i.caller.is_empty()).then(|| i.caller.clone()),
                        queue: (!i.queue.is_empty()).then(|| i.queue.clone()),
                        data: (!i.data.is_empty()).then(|| Arc::clone(&i.data)),
                        ..TargetContext::default()
                    }
                })
            }
        }
    }
}

/// `n` as decimal text without allocating: party counts are bounded by
/// [`limits::MAX_PARTIES`], and anything above reads as the limit's text plus.
fn count_text(n: u32) -> &'static str {
    const COUNTS: [&str; 65] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
        "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46",
        "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61",
        "62", "63", "64",
    ];
    const _: () = assert!(COUNTS.len() == limits::MAX_PARTIES as usize + 1);
    COUNTS.get(n as usize).copied().unwrap_or("64+")
}

/// The `state.updated` event of one target: its entire view state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEvent {
    /// Dot-notation target name.
    pub target: String,
    /// Every capability the profile defines for the target.
    pub defined: CapSet,
    /// The enabled ones; empty in a gone target's final event.
    pub enabled: CapSet,
    /// Labels for display.
    pub context: TargetContext,
    /// The target has gone: this is its final event, and no other follows.
    pub gone: bool,
}

impl StateEvent {
    /// Builds the event for `view` in `state` under `profile`.
    pub(crate) fn new(
        session: &Id,
        view: &TargetView,
        gone: bool,
        state: &SessionState,
        profile: &Profile,
    ) -> Self {
        StateEvent {
            target: view.target.render(session),
            defined: profile.defined(view.kind),
            enabled: if gone { CapSet::EMPTY } else { view.enabled },
            // A gone target's id may live on elsewhere (a snapshot can move an interaction to
            // another channel), so its context must not be looked up in the new state.
            context: if gone {
                TargetContext::gone(view)
            } else {
                TargetContext::of(view, state, profile)
            },
            gone,
        }
    }

    /// The final event this target gets when it goes: everything disabled, state `ended`.
    /// A binder that missed the real one (its queue overflowed) is sent this instead.
    pub fn final_event(&self) -> StateEvent {
        StateEvent {
            target: self.target.clone(),
            defined: self.defined,
            enabled: CapSet::EMPTY,
            context: TargetContext {
                media: self.context.media,
                state: InteractionState::Ended.as_str(),
                ..TargetContext::default()
            },
            gone: true,
        }
    }

    /// Every defined capability with its enablement, in catalogue order.
    pub fn capabilities(&self) -> impl Iterator<Item = (Capability, bool)> + '_ {
        self.defined.iter().map(|c| (c, self.enabled.contains(c)))
    }
}

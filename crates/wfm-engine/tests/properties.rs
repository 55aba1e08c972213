//! Property tests: random update sequences, including malformed updates, repeats, gaps and
//! snapshots, applied to a session with a voice and a chat channel under a random profile.
//!
//! After every step the engine must not have panicked, a refused or repeated update must have
//! changed nothing, the stored view must be the view computed from the state, the events must
//! be exactly the targets whose list or enabled set changed plus the ones that went away, and
//! the view must keep its invariants (enabled within defined, mutually exclusive pairs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

use wfm_engine::testkit::{id, profile, session_with, two_channel_state};
use wfm_engine::{
    AgentState, Applied, CapSet, Capability, Channel, ChannelUpdate, ConsultIntent, CtiUpdate,
    Direction, Interaction, InteractionChange, InteractionState, Media, Options, Participant,
    ParticipantRole, Pending, Profile, Recording, Session, SessionState, StateEvent, Supervision,
    Switch, Target, TargetKind, UpdateError, ViewState,
};

// ---------------------------------------------------------------------------------------------
// Generators

/// Interaction ids; few, so that creations collide and changes find their target.
const IDS: [&str; 5] = ["c1", "c2", "x", "d", "e"];

fn agent_state() -> impl Strategy<Value = AgentState> {
    prop_oneof![
        Just(AgentState::LoggedOut),
        Just(AgentState::NotReady),
        Just(AgentState::Ready),
        Just(AgentState::Reserved),
        Just(AgentState::Busy),
        Just(AgentState::AfterCallWork),
    ]
}

fn voice_state() -> impl Strategy<Value = InteractionState> {
    prop_oneof![
        Just(InteractionState::Alerting),
        Just(InteractionState::Dialing),
        Just(InteractionState::Connected),
        Just(InteractionState::Held),
        Just(InteractionState::Failed),
        Just(InteractionState::WrapUp),
        Just(InteractionState::Ended),
    ]
}

fn other_state() -> impl Strategy<Value = InteractionState> {
    prop_oneof![
        Just(InteractionState::Offered),
        Just(InteractionState::Active),
        Just(InteractionState::Paused),
        Just(InteractionState::WrapUp),
        Just(InteractionState::Ended),
    ]
}

/// Any state; mostly one that fits `media`, sometimes one that does not (to be refused).
fn state_for(media: Media) -> BoxedStrategy<InteractionState> {
    let fitting = if media.is_voice() {
        voice_state().boxed()
    } else {
        other_state().boxed()
    };
    prop_oneof![6 => fitting, 1 => voice_state(), 1 => other_state()].boxed()
}

fn any_state() -> impl Strategy<Value = InteractionState> {
    prop_oneof![voice_state(), other_state()]
}

fn media() -> impl Strategy<Value = Media> {
    prop::sample::select(Media::ALL.to_vec())
}

fn pending() -> impl Strategy<Value = Option<Pending>> {
    prop::option::of(prop_oneof![Just(Pending::Ready), Just(Pending::NotReady)])
}

fn recording() -> impl Strategy<Value = Recording> {
    prop_oneof![
        Just(Recording::Off),
        Just(Recording::Active),
        Just(Recording::Paused)
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::Inbound),
        Just(Direction::Outbound),
        Just(Direction::Internal),
        Just(Direction::Consult),
    ]
}

fn interaction_id() -> impl Strategy<Value = &'static str> {
    prop::sample::select(IDS.to_vec())
}

fn reason() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "lunch", "training"]).prop_map(str::to_string)
}

/// A channel name: mostly the session's own, sometimes an unknown one.
fn channel_name() -> impl Strategy<Value = (&'static str, Media)> {
    prop_oneof![
        4 => Just(("voice", Media::Voice)),
        4 => Just(("chat", Media::Chat)),
        1 => Just(("fax", Media::Callback)),
    ]
}

fn new_interaction() -> impl Strategy<Value = Interaction> {
    channel_name().prop_flat_map(|(channel, media)| {
        (
            interaction_id(),
            direction(),
            state_for(media),
            prop::option::of(interaction_id()),
            0u32..8,
            recording(),
            any::<bool>(),
            prop::sample::select(vec!["", "sale"]),
            consult_intent(),
            prop::bool::weighted(0.2),
        )
            .prop_map(
                move |(
                    item,
                    dir,
                    st,
                    consult_of,
                    parties,
                    rec,
                    muted,
                    disposition,
                    intent,
                    preview,
                )| {
                    Interaction {
                        preview,
                        consult_of: consult_of.map(id),
                        consult_intent: intent,
                        parties,
                        recording: rec,
                        muted,
                        disposition: disposition.to_string(),
                        ..Interaction::new(id(item), id(channel), dir, st)
                    }
                },
            )
    })
}

fn change() -> impl Strategy<Value = InteractionChange> {
    (
        prop_oneof![9 => interaction_id(), 1 => Just("ghost")],
        prop::option::weighted(0.7, any_state()),
        prop::option::weighted(0.2, prop::option::of(interaction_id())),
        prop::option::weighted(0.2, 0u32..8),
        prop::option::weighted(0.2, recording()),
        prop::option::weighted(0.2, any::<bool>()),
        prop::option::weighted(0.2, prop::sample::select(vec!["", "sale"])),
        (
            prop::collection::vec(
                (
                    prop::sample::select(vec!["k", "tier"]),
                    prop::sample::select(vec!["", "1", "vip"]),
                ),
                0..2,
            ),
            prop::option::weighted(0.2, consult_intent()),
            prop::option::weighted(0.2, participants()),
            prop::option::weighted(0.2, supervision()),
            prop::option::weighted(0.1, any::<bool>()),
            prop::option::weighted(0.1, any::<bool>()),
            prop::option::weighted(0.1, prop::option::of(interaction_id())),
        ),
    )
        .prop_map(
            |(
                item,
                st,
                consult_of,
                parties,
                rec,
                muted,
                disposition,
                (data, intent, people, supervision, monitored, preview, callback_of),
            )| {
                InteractionChange {
                    preview,
                    callback_of: callback_of.map(|c| c.map(id)),
                    supervision,
                    monitored,
                    id: id(item),
                    state: st,
                    consult_of: consult_of.map(|c| c.map(id)),
                    consult_intent: intent,
                    parties,
                    participants: people,
                    recording: rec,
                    muted,
                    disposition: disposition.map(str::to_string),
                    data: data
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                }
            },
        )
}

fn channel_update() -> impl Strategy<Value = ChannelUpdate> {
    (
        channel_name(),
        prop::option::weighted(0.2, media()),
        agent_state(),
        reason(),
        pending(),
        reason(),
        // Now and then over the limit, to exercise the refusal.
        prop::option::weighted(0.3, prop_oneof![9 => 0u32..5, 1 => Just(65u32)]),
    )
        .prop_map(
            |((channel, _), claimed, st, reason, pending, pending_reason, capacity)| {
                ChannelUpdate {
                    id: id(channel),
                    media: claimed,
                    state: st,
                    reason,
                    pending,
                    pending_reason,
                    capacity,
                    wrap_up_extensions: u32::from(capacity == Some(2)),
                }
            },
        )
}

/// Up to five participants; now and then two of them claim to be this agent, which is refused.
fn participants() -> impl Strategy<Value = Vec<Participant>> {
    prop::collection::vec(
        (
            prop_oneof![
                Just(ParticipantRole::Agent),
                Just(ParticipantRole::Customer),
                Just(ParticipantRole::Consult),
                Just(ParticipantRole::Supervisor),
            ],
            prop::bool::weighted(0.3),
            any::<bool>(),
        ),
        0..5,
    )
    .prop_map(|people| {
        people
            .into_iter()
            .enumerate()
            .map(|(n, (role, is_self, controller))| Participant {
                id: format!("p{n}"),
                role,
                is_self,
                controller,
            })
            .collect()
    })
}

fn supervision() -> impl Strategy<Value = Supervision> {
    prop_oneof![
        Just(Supervision::Own),
        Just(Supervision::Supervised),
        Just(Supervision::Monitoring),
        Just(Supervision::Whispering),
        Just(Supervision::Barged),
    ]
}

fn consult_intent() -> impl Strategy<Value = ConsultIntent> {
    prop_oneof![
        Just(ConsultIntent::Unspecified),
        Just(ConsultIntent::Transfer),
        Just(ConsultIntent::Conference),
    ]
}

fn channel(name: &str, media: Media, state: AgentState, pending: Option<Pending>) -> Channel {
    Channel {
        pending,
        ..wfm_engine::testkit::channel(name, media, state)
    }
}

/// A snapshot that is valid by construction: the voice and chat channels, each interaction id
/// present or not, with a state that fits its channel. Sometimes `voice` is reported as
/// another media, to exercise a target whose kind changes.
fn valid_snapshot() -> impl Strategy<Value = SessionState> {
    let item = (
        any::<bool>(),
        voice_state(),
        other_state(),
        prop::option::of(interaction_id()),
        0u32..8,
        recording(),
        any::<bool>(),
    );
    (
        prop::option::weighted(0.1, Just(Media::Email)),
        agent_state(),
        agent_state(),
        pending(),
        prop::collection::vec(prop::option::of(item), IDS.len()),
        1u32..4,
    )
        .prop_map(
            |(voice_media, voice_state, chat_state, pending, items, capacity)| {
                let voice_media = voice_media.unwrap_or(Media::Voice);
                let channels = vec![
                    channel("voice", voice_media, voice_state, pending),
                    Channel {
                        capacity,
                        ..channel("chat", Media::Chat, chat_state, None)
                    },
                    // Empty, so that later creations on it are scheduled callbacks.
                    channel("fax", Media::Callback, chat_state, None),
                ];
                let interactions = IDS
                    .iter()
                    .zip(items)
                    .filter_map(|(name, item)| {
                        let (on_voice, vs, os, consult_of, parties, rec, muted) = item?;
                        let (ch, media) = if on_voice {
                            ("voice", voice_media)
                        } else {
                            ("chat", Media::Chat)
                        };
                        let st = if media.is_voice() { vs } else { os };
                        Some(Interaction {
                            consult_of: consult_of.filter(|c| c != name).map(id),
                            parties,
                            recording: rec,
                            muted,
                            ..Interaction::new(id(name), id(ch), Direction::Inbound, st)
                        })
                    })
                    .collect();
                SessionState {
                    channels,
                    interactions,
                }
            },
        )
}

/// Any snapshot, often malformed: no channels, duplicates, unknown channels, bad states.
fn raw_snapshot() -> impl Strategy<Value = SessionState> {
    (
        prop::collection::vec(
            (
                prop::sample::select(vec!["voice", "chat", "mail"]),
                media(),
                agent_state(),
                pending(),
            ),
            0..4,
        ),
        prop::collection::vec(new_interaction(), 0..4),
    )
        .prop_map(|(channels, interactions)| SessionState {
            channels: channels
                .into_iter()
                .map(|(name, m, st, p)| channel(name, m, st, p))
                .collect(),
            interactions,
        })
}

fn update() -> impl Strategy<Value = CtiUpdate> {
    prop_oneof![
        6 => change().prop_map(CtiUpdate::InteractionChanged),
        3 => new_interaction().prop_map(CtiUpdate::InteractionCreated),
        3 => channel_update().prop_map(CtiUpdate::Channel),
        1 => valid_snapshot().prop_map(CtiUpdate::Snapshot),
        1 => raw_snapshot().prop_map(CtiUpdate::Snapshot),
    ]
}

/// How a step picks its sequence number relative to the session's last one.
#[derive(Debug, Clone, Copy)]
enum Seq {
    Next,
    /// `last - k`: a repeat.
    Repeat(u64),
    /// `last + 1 + k`: a gap.
    Gap(u64),
    /// An absolute number, as a snapshot after an IP restart would carry.
    At(u64),
}

fn seq() -> impl Strategy<Value = Seq> {
    prop_oneof![
        12 => Just(Seq::Next),
        2 => (0u64..3).prop_map(Seq::Repeat),
        1 => (1u64..4).prop_map(Seq::Gap),
        1 => (0u64..60).prop_map(Seq::At),
    ]
}

fn random_profile() -> impl Strategy<Value = Profile> {
    (
        any::<[bool; 7]>(),
        0u32..8,
        prop::collection::vec(any::<bool>(), Switch::ALL.len()),
        prop_oneof![1u32..4, Just(64u32)],
    )
        .prop_map(|(flags, max, off, max_capacity)| {
            let options = Options {
                logout_requires_not_ready: flags[0],
                reject_alerting: flags[1],
                transfer_on_alerting: flags[2],
                max_conference_parties: max,
                mandatory_disposition: flags[3],
                dial_during_other_media: flags[4],
                single_step_transfer_in_consult: flags[5],
                drop_requires_controller: flags[6],
                acw_timeout_secs: u32::from(flags[4]) * 30,
                max_wrap_up_extensions: u32::from(flags[5]),
                max_channel_capacity: max_capacity,
            };
            // Mostly everything on, so that the switched capabilities get exercised too.
            let switches: Vec<Switch> = Switch::ALL
                .iter()
                .zip(off)
                .filter(|(_, off)| *off)
                .map(|(s, _)| *s)
                .collect();
            let switches = if switches.len() > 3 {
                Vec::new()
            } else {
                switches
            };
            profile(options, &switches)
        })
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Everything observable about a session.
fn observe(s: &Session) -> (SessionState, ViewState, u64, u64) {
    (
        s.state().clone(),
        s.view().clone(),
        s.last_sequence(),
        s.view_version(),
    )
}

/// The events `after` must have produced from `before`: changed targets (enabled set or kind)
/// in tree order, then the gone ones with an empty enabled set.
fn expected_events(
    before: &ViewState,
    after: &ViewState,
    profile: &Profile,
) -> Vec<(String, CapSet, CapSet, bool)> {
    let session = id(wfm_engine::testkit::SESSION);
    let changed = after
        .targets()
        .iter()
        .filter_map(|now| match before.get(&now.target) {
            Some(was) if was.enabled == now.enabled && was.kind == now.kind => None,
            _ => Some((
                now.target.render(&session),
                profile.defined(now.kind),
                now.enabled,
                false,
            )),
        });
    let gone = before
        .targets()
        .iter()
        .filter(|was| after.get(&was.target).is_none())
        .map(|was| {
            (
                was.target.render(&session),
                profile.defined(was.kind),
                CapSet::EMPTY,
                true,
            )
        });
    changed.chain(gone).collect()
}

fn context_state(state: &SessionState, target: &Target) -> Option<&'static str> {
    match target {
        Target::Session => Some(if state.channels.iter().any(|c| c.state.is_logged_in()) {
            "logged_in"
        } else {
            "logged_out"
        }),
        Target::Channel(c) => state.channel(c).map(|c| c.state.as_str()),
        Target::Interaction { interaction, .. } => {
            state.interaction(interaction).map(|i| i.state.as_str())
        }
    }
}

fn check_events(
    before: &ViewState,
    after: &Session,
    events: &[StateEvent],
) -> Result<(), TestCaseError> {
    let expected = expected_events(before, after.view(), after.profile());
    let actual: Vec<(String, CapSet, CapSet, bool)> = events
        .iter()
        .map(|e| {
            (
                e.target.clone(),
                e.defined,
                e.enabled,
                e.context.state == "ended" && e.enabled.is_empty(),
            )
        })
        .collect();
    prop_assert_eq!(actual.len(), expected.len(), "events {:?}", events);
    for ((target, defined, enabled, ended), (e_target, e_defined, e_enabled, gone)) in
        actual.iter().zip(&expected)
    {
        prop_assert_eq!(target, e_target);
        prop_assert_eq!(defined, e_defined, "{}", target);
        prop_assert_eq!(enabled, e_enabled, "{}", target);
        if *gone {
            prop_assert!(*ended, "{} should end with an all-disabled event", target);
        }
    }
    for event in events {
        // Live targets' context describes the state they are in now.
        let live = after
            .view()
            .targets()
            .iter()
            .find(|t| t.target.render(after.id()) == event.target);
        if let Some(live) = live {
            prop_assert_eq!(
                Some(event.context.state),
                context_state(after.state(), &live.target),
                "{}",
                event.target
            );
            prop_assert_eq!(event.context.media, live.media);
        }
    }
    Ok(())
}

/// Pairs of capabilities that no target may have enabled together, with why.
const EXCLUSIVE: [(Capability, Capability, &str); 10] = [
    (
        Capability::Answer,
        Capability::Hold,
        "alerting vs connected",
    ),
    (Capability::Hold, Capability::Retrieve, "connected vs held"),
    (Capability::Mute, Capability::Unmute, "muted flag"),
    (
        Capability::Accept,
        Capability::Release,
        "offered vs active/paused",
    ),
    (
        Capability::Answer,
        Capability::Release,
        "alerting is not releasable",
    ),
    (
        Capability::RecordingStart,
        Capability::RecordingStop,
        "recording off vs on",
    ),
    (
        Capability::RecordingPause,
        Capability::RecordingResume,
        "active vs paused",
    ),
    (
        Capability::Release,
        Capability::WrapUp,
        "a live leg vs wrap-up",
    ),
    (
        Capability::Consult,
        Capability::Alternate,
        "alone vs two legs",
    ),
    (
        Capability::SessionLogin,
        Capability::SessionLogout,
        "logged out vs in",
    ),
];

fn check_invariants(s: &Session) -> Result<(), TestCaseError> {
    let state = s.state();
    let view = s.view();
    prop_assert_eq!(view, &ViewState::compute(state, s.profile()));

    // The state the engine keeps is well formed.
    for (i, c) in state.channels.iter().enumerate() {
        prop_assert!(!state.channels[..i].iter().any(|o| o.id == c.id));
    }
    for (i, item) in state.interactions.iter().enumerate() {
        prop_assert!(!state.interactions[..i].iter().any(|o| o.id == item.id));
        prop_assert!(item.state != InteractionState::Ended);
        let channel = state.channel(&item.channel);
        prop_assert!(channel.is_some(), "{:?} on an unknown channel", item.id);
        if let Some(channel) = channel {
            prop_assert!(item.state.applies_to(channel.media));
        }
    }
    prop_assert_eq!(
        view.targets().len(),
        1 + state.channels.len() + state.interactions.len()
    );

    for t in view.targets() {
        let defined = s.profile().defined(t.kind);
        prop_assert_eq!(
            t.enabled.without(defined),
            CapSet::EMPTY,
            "{:?} enables undefined capabilities",
            t.target
        );
        for (a, b, why) in EXCLUSIVE {
            prop_assert!(
                !(t.enabled.contains(a) && t.enabled.contains(b)),
                "{:?}: {} and {} both enabled ({})",
                t.target,
                a,
                b,
                why
            );
        }
        prop_assert!(
            !t.enabled.contains(Capability::Complete) || t.enabled.contains(Capability::WrapUp),
            "complete without wrapUp"
        );
        // Alternate has no switch, and conference needs the same pair plus a party bound.
        prop_assert!(
            !t.enabled.contains(Capability::CompleteConference)
                || t.enabled.contains(Capability::Alternate),
            "completeConference without alternate"
        );
        if let Target::Channel(channel) = &t.target
            && t.enabled.contains(Capability::ChannelDial)
        {
            // Dial means no live call leg on the channel: nothing to answer, hold or retrieve.
            let blocked = CapSet::of(&[Capability::Answer, Capability::Hold, Capability::Retrieve]);
            for other in view.targets() {
                if let Target::Interaction { channel: c, .. } = &other.target
                    && c == channel
                {
                    prop_assert!(
                        other.enabled.intersect(blocked).is_empty(),
                        "{:?} can dial while {:?} has {:?}",
                        channel,
                        other.target,
                        other.enabled
                    );
                }
            }
        }
        // Logout, of the session or of one channel, never leaves pending or live work behind
        // (a supervised call the supervisor has not joined is not its work).
        let live_on = |channel: Option<&wfm_engine::Id>| {
            state
                .interactions
                .iter()
                .any(|i| i.is_work() && channel.is_none_or(|c| &i.channel == c))
                || state.channels.iter().any(|c| {
                    c.state == AgentState::Reserved && channel.is_none_or(|id| &c.id == id)
                })
        };
        if t.enabled.contains(Capability::SessionLogout) {
            prop_assert!(!live_on(None), "session.logout with live work: {:?}", state);
        }
        if let Target::Channel(channel) = &t.target
            && t.enabled.contains(Capability::ChannelLogout)
        {
            prop_assert!(
                !live_on(Some(channel)),
                "channel.logout of {:?} with live work",
                channel
            );
        }
        // Accept never takes a channel past its capacity, nor past the profile's cap.
        if let Target::Interaction { channel, .. } = &t.target
            && t.enabled.contains(Capability::Accept)
            && let Some(ch) = state.channel(channel)
        {
            let accepted = state
                .interactions
                .iter()
                .filter(|i| {
                    &i.channel == channel
                        && i.supervision == Supervision::Own
                        && matches!(i.state, InteractionState::Active | InteractionState::Paused)
                })
                .count() as u32;
            let max = s.profile().options().max_channel_capacity.max(1);
            let cap = if ch.capacity == 0 {
                max
            } else {
                ch.capacity.min(max)
            };
            prop_assert!(
                accepted < cap,
                "accept on {:?} with {} accepted of capacity {}",
                channel,
                accepted,
                cap
            );
        }
        // Once the call is over, only its wrap-up remains.
        if let Target::Interaction { interaction, .. } = &t.target
            && let Some(item) = state.interaction(interaction)
            && item.state == InteractionState::WrapUp
        {
            let wrap_up = CapSet::of(&[
                Capability::UpdateData,
                Capability::WrapUp,
                Capability::Complete,
            ]);
            prop_assert_eq!(t.enabled.without(wrap_up), CapSet::EMPTY);
        }
        let expected_kind = match (&t.target, t.media) {
            (Target::Session, None) => Some(TargetKind::Session),
            (Target::Channel(_), Some(m)) => Some(TargetKind::channel(m)),
            (Target::Interaction { .. }, Some(m)) => Some(TargetKind::interaction(m)),
            _ => None,
        };
        prop_assert_eq!(Some(t.kind), expected_kind);
    }
    Ok(())
}

/// What the generated cases exercised, so that a generator that stops reaching a case fails.
#[derive(Debug, Default)]
struct Coverage {
    enabled: CapSet,
    refused: u32,
    gaps: u32,
    duplicates: u32,
    silent: u32,
    with_events: u32,
    snapshots: u32,
    gone: u32,
}

fn run(
    profile: Profile,
    steps: Vec<(Seq, CtiUpdate)>,
    coverage: &RefCell<Coverage>,
) -> Result<(), TestCaseError> {
    let mut s = session_with(profile, two_channel_state());
    check_invariants(&s)?;
    for (seq, update) in steps {
        let last = s.last_sequence();
        let sequence = match seq {
            Seq::Next => last + 1,
            Seq::Repeat(k) => last.saturating_sub(k),
            Seq::Gap(k) => last + 1 + k,
            Seq::At(n) => n,
        };
        let is_snapshot = matches!(update, CtiUpdate::Snapshot(_));
        let before = s.clone();
        let observed = observe(&before);
        match s.apply(sequence, update.clone()) {
            Err(err) => {
                let mut c = coverage.borrow_mut();
                c.refused += 1;
                c.gaps += u32::from(matches!(err, UpdateError::SequenceGap { .. }));
                prop_assert_eq!(&observe(&s), &observed, "refused {:?}: {}", update, err);
                if !is_snapshot && sequence > last + 1 {
                    prop_assert_eq!(
                        err,
                        UpdateError::SequenceGap {
                            expected: last + 1,
                            got: sequence
                        }
                    );
                }
            }
            Ok(Applied::Duplicate) => {
                coverage.borrow_mut().duplicates += 1;
                prop_assert!(!is_snapshot, "a snapshot is never a duplicate");
                prop_assert!(sequence <= last);
                prop_assert_eq!(&observe(&s), &observed);
            }
            Ok(Applied::Changed(events)) => {
                {
                    let mut c = coverage.borrow_mut();
                    c.silent += u32::from(events.is_empty());
                    c.with_events += u32::from(!events.is_empty());
                    c.snapshots += u32::from(is_snapshot);
                    c.gone += events.iter().filter(|e| e.context.state == "ended").count() as u32;
                }
                // No capability is ever enabled on an ended interaction.
                for event in events.iter().filter(|e| e.context.state == "ended") {
                    prop_assert!(
                        event.enabled.is_empty(),
                        "{} ended with {:?}",
                        event.target,
                        event.enabled
                    );
                }
                prop_assert!(is_snapshot || sequence == last + 1);
                prop_assert_eq!(s.last_sequence(), sequence);
                check_events(before.view(), &s, &events)?;
                let bump = u64::from(!events.is_empty());
                prop_assert_eq!(s.view_version(), before.view_version() + bump);
                if before.view() == s.view() {
                    prop_assert!(events.is_empty(), "no visible effect, yet {:?}", events);
                }
            }
        }
        check_invariants(&s)?;
        let mut c = coverage.borrow_mut();
        c.enabled = s
            .view()
            .targets()
            .iter()
            .fold(c.enabled, |acc, t| acc.union(t.enabled));
    }
    Ok(())
}

#[test]
fn random_update_sequences_keep_the_engine_consistent() {
    let coverage = RefCell::new(Coverage::default());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    });
    let cases = (
        random_profile(),
        prop::collection::vec((seq(), update()), 1..40),
    );
    let result = runner.run(&cases, |(profile, steps)| run(profile, steps, &coverage));
    if let Err(err) = result {
        panic!("{err}");
    }
    let c = coverage.into_inner();
    let never: Vec<&str> = Capability::ALL
        .iter()
        .filter(|cap| !c.enabled.contains(**cap))
        .map(|cap| cap.name())
        .collect();
    assert!(never.is_empty(), "never enabled: {never:?}");
    for (what, count) in [
        ("refused", c.refused),
        ("gaps", c.gaps),
        ("duplicates", c.duplicates),
        ("silent", c.silent),
        ("with events", c.with_events),
        ("snapshots", c.snapshots),
        ("gone", c.gone),
    ] {
        assert!(count >= 20, "only {count} {what} steps: {c:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn full_view_always_matches_the_view(
        steps in prop::collection::vec((seq(), update()), 1..20),
    ) {
        let mut s = session_with(Profile::default(), two_channel_state());
        for (seq, update) in steps {
            let n = match seq {
                Seq::Next => s.last_sequence() + 1,
                Seq::Repeat(k) => s.last_sequence().saturating_sub(k),
                Seq::Gap(k) => s.last_sequence() + 1 + k,
                Seq::At(n) => n,
            };
            let _ = s.apply(n, update);
            let full = s.full_view();
            prop_assert_eq!(full.len(), s.view().targets().len());
            for (event, view) in full.iter().zip(s.view().targets()) {
                prop_assert_eq!(&event.target, &view.target.render(s.id()));
                prop_assert_eq!(event.enabled, view.enabled);
                prop_assert_eq!(event.defined, s.profile().defined(view.kind));
                let listed: Vec<Capability> = event.capabilities().map(|(c, _)| c).collect();
                let catalogue_order: Vec<Capability> = Capability::ALL
                    .iter()
                    .copied()
                    .filter(|c| event.defined.contains(*c))
                    .collect();
                prop_assert_eq!(listed, catalogue_order);
            }
        }
    }
}

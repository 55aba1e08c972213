//! Update application: sequencing, snapshots, refusals, the end of an interaction, and the
//! events a change produces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::capability::{Capability, TargetKind};
use crate::error::UpdateError;
use crate::model::{
    AgentState::*, Direction, Interaction, InteractionState::*, Media, Pending, SessionState,
};
use crate::profile::Options;
use crate::session::{Applied, Session};
use crate::testkit::{
    call, change, channel_update, chat, chat_channel, enabled, id, names, next, profile, session,
    session_with, state, target, to_state, two_channel_state, voice,
};
use crate::update::{CtiUpdate, InteractionChange};
use crate::view::{StateEvent, TargetContext, ViewState};

/// Everything observable about a session, to check that a refusal changed nothing.
fn observe(s: &Session) -> (SessionState, ViewState, u64, u64, Vec<StateEvent>) {
    (
        s.state().clone(),
        s.view().clone(),
        s.last_sequence(),
        s.view_version(),
        s.full_view(),
    )
}

fn events(applied: Applied) -> Vec<StateEvent> {
    match applied {
        Applied::Changed(events) => events,
        Applied::Duplicate => panic!("expected the update to be applied, got Duplicate"),
    }
}

fn targets(events: &[StateEvent]) -> Vec<&str> {
    events.iter().map(|e| e.target.as_str()).collect()
}

/// A voice channel with a connected call and a chat channel with an active chat.
fn busy() -> Session {
    session(state(
        vec![voice("voice", Busy), chat_channel("chat", Busy)],
        vec![call("c1", "voice", Connected), chat("x", "chat", Active)],
    ))
}

// ---------------------------------------------------------------------------------------------
// Sequencing

#[test]
fn a_new_session_expects_sequence_one() {
    let s = busy();
    assert_eq!(s.last_sequence(), 0);
    assert_eq!(s.view_version(), 1);
    assert_eq!(*s.view(), ViewState::compute(s.state(), s.profile()));
}

#[test]
fn the_next_sequence_number_is_applied() {
    let mut s = busy();
    let applied = s.apply(1, to_state("c1", Held)).unwrap();
    assert_eq!(targets(&events(applied)), ["s1.voice.c1"]);
    assert_eq!(s.last_sequence(), 1);
    assert_eq!(s.view_version(), 2);
    assert_eq!(s.state().interaction(&id("c1")).unwrap().state, Held);

    let applied = s.apply(2, to_state("c1", Connected)).unwrap();
    assert_eq!(targets(&events(applied)), ["s1.voice.c1"]);
    assert_eq!(s.last_sequence(), 2);
    assert_eq!(s.view_version(), 3);
}

#[test]
fn a_repeat_is_acknowledged_and_changes_nothing() {
    let mut s = busy();
    s.apply(1, to_state("c1", Held)).unwrap();
    s.apply(2, to_state("c1", Connected)).unwrap();
    let before = observe(&s);

    // The same number again, and an older one, whatever they carry.
    assert_eq!(s.apply(2, to_state("c1", Held)), Ok(Applied::Duplicate));
    assert_eq!(s.apply(1, to_state("c1", WrapUp)), Ok(Applied::Duplicate));
    // A retry is not validated again: the original was, when it was applied.
    assert_eq!(s.apply(2, to_state("ghost", Held)), Ok(Applied::Duplicate));
    assert_eq!(observe(&s), before);

    assert!(matches!(
        s.apply(3, to_state("c1", Held)),
        Ok(Applied::Changed(_))
    ));
}

#[test]
fn a_gap_is_refused_naming_the_expected_number() {
    let mut s = busy();
    s.apply(1, to_state("c1", Held)).unwrap();
    let before = observe(&s);
    assert_eq!(
        s.apply(3, to_state("c1", Connected)),
        Err(UpdateError::SequenceGap {
            expected: 2,
            got: 3
        })
    );
    assert_eq!(
        s.apply(u64::MAX - 1, to_state("c1", Connected)),
        Err(UpdateError::SequenceGap {
            expected: 2,
            got: u64::MAX - 1
        })
    );
    assert_eq!(observe(&s), before);
    // The refused update did not consume its number.
    assert!(matches!(
        s.apply(2, to_state("c1", Connected)),
        Ok(Applied::Changed(_))
    ));
}

#[test]
fn a_snapshot_replaces_the_state_and_resets_the_sequence_up_or_down() {
    let mut s = busy();
    for n in 1..=5 {
        let st = if n % 2 == 1 { Held } else { Connected };
        s.apply(n, to_state("c1", st)).unwrap();
    }
    assert_eq!(s.last_sequence(), 5);

    // Down: the IP restarted its numbering.
    let replacement = state(
        vec![voice("voice", NotReady), chat_channel("chat", Ready)],
        vec![],
    );
    let applied = s
        .apply(2, CtiUpdate::Snapshot(replacement.clone()))
        .unwrap();
    assert_eq!(s.state(), &replacement);
    assert_eq!(s.last_sequence(), 2);
    assert_eq!(*s.view(), ViewState::compute(&replacement, s.profile()));
    // Session (logout now possible), both channels, and the two interactions that are gone.
    assert_eq!(
        targets(&events(applied)),
        ["s1", "s1.voice", "s1.chat", "s1.voice.c1", "s1.chat.x"]
    );
    assert_eq!(
        s.apply(5, to_state("c1", Held)),
        Err(UpdateError::SequenceGap {
            expected: 3,
            got: 5
        })
    );
    assert_eq!(
        targets(&events(
            s.apply(3, CtiUpdate::Channel(channel_update("voice", Ready)))
                .unwrap()
        )),
        ["s1.voice"]
    );
    assert_eq!(s.last_sequence(), 3);

    // Up: a jump is fine for a snapshot.
    s.apply(100, CtiUpdate::Snapshot(two_channel_state()))
        .unwrap();
    assert_eq!(s.last_sequence(), 100);
    assert_eq!(s.state(), &two_channel_state());
    assert_eq!(s.apply(100, to_state("c1", Held)), Ok(Applied::Duplicate));
    assert!(matches!(
        s.apply(101, to_state("c1", Connected)),
        Ok(Applied::Changed(_))
    ));
}

#[test]
fn a_snapshot_is_applied_even_at_the_current_number() {
    let mut s = busy();
    s.apply(1, to_state("c1", Held)).unwrap();
    let applied = s.apply(1, CtiUpdate::Snapshot(two_channel_state()));
    assert!(matches!(applied, Ok(Applied::Changed(ref e)) if !e.is_empty()));
    assert_eq!(s.state(), &two_channel_state());
    // Repeating it changes nothing visible.
    let version = s.view_version();
    assert_eq!(
        s.apply(1, CtiUpdate::Snapshot(two_channel_state())),
        Ok(Applied::Changed(vec![]))
    );
    assert_eq!(s.view_version(), version);
}

#[test]
fn a_snapshot_drops_interactions_reported_as_ended() {
    let mut s = busy();
    let mut snapshot = state(
        vec![voice("voice", AfterCallWork), chat_channel("chat", Busy)],
        vec![call("c1", "voice", Ended), chat("x", "chat", Active)],
    );
    let applied = events(s.apply(1, CtiUpdate::Snapshot(snapshot.clone())).unwrap());
    snapshot.interactions.remove(0);
    assert_eq!(s.state(), &snapshot);
    let gone = applied.iter().find(|e| e.target == "s1.voice.c1").unwrap();
    assert!(gone.enabled.is_empty());
    assert_eq!(gone.context.state, "ended");
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// Applies `update` as the next number and checks it is refused with `expected`, changing
/// nothing; then checks the same number is still free.
fn assert_refused(s: &mut Session, update: CtiUpdate, expected: UpdateError) {
    let before = observe(s);
    let sequence = s.last_sequence() + 1;
    assert_eq!(s.apply(sequence, update), Err(expected));
    assert_eq!(observe(s), before);
    let ok = s.apply(sequence, CtiUpdate::InteractionChanged(change("c1")));
    assert_eq!(ok, Ok(Applied::Changed(vec![])));
}

#[test]
fn an_unknown_channel_is_refused() {
    let mut s = busy();
    assert_refused(
        &mut s,
        CtiUpdate::Channel(channel_update("fax", Ready)),
        UpdateError::UnknownChannel(id("fax")),
    );
    assert_refused(
        &mut s,
        CtiUpdate::InteractionCreated(call("c9", "fax", Alerting)),
        UpdateError::UnknownChannel(id("fax")),
    );
}

#[test]
fn an_unknown_interaction_is_refused() {
    let mut s = busy();
    assert_refused(
        &mut s,
        to_state("ghost", Held),
        UpdateError::UnknownInteraction(id("ghost")),
    );
    // Ending one that was never seen is no exception.
    assert_refused(
        &mut s,
        to_state("ghost", Ended),
        UpdateError::UnknownInteraction(id("ghost")),
    );
}

#[test]
fn a_duplicate_interaction_is_refused() {
    let mut s = busy();
    assert_refused(
        &mut s,
        CtiUpdate::InteractionCreated(call("c1", "voice", Alerting)),
        UpdateError::DuplicateInteraction(id("c1")),
    );
    // Also when the copy would be on another channel.
    assert_refused(
        &mut s,
        CtiUpdate::InteractionCreated(chat("c1", "chat", Offered)),
        UpdateError::DuplicateInteraction(id("c1")),
    );
}

#[test]
fn a_state_not_for_the_media_is_refused() {
    let mut s = busy();
    assert_refused(
        &mut s,
        CtiUpdate::InteractionCreated(chat("y", "chat", Connected)),
        UpdateError::StateNotForMedia {
            interaction: id("y"),
            state: Connected,
            media: Media::Chat,
        },
    );
    assert_refused(
        &mut s,
        CtiUpdate::InteractionCreated(call("c2", "voice", Offered)),
        UpdateError::StateNotForMedia {
            interaction: id("c2"),
            state: Offered,
            media: Media::Voice,
        },
    );
    assert_refused(
        &mut s,
        to_state("c1", Active),
        UpdateError::StateNotForMedia {
            interaction: id("c1"),
            state: Active,
            media: Media::Voice,
        },
    );
    assert_refused(
        &mut s,
        to_state("x", Held),
        UpdateError::StateNotForMedia {
            interaction: id("x"),
            state: Held,
            media: Media::Chat,
        },
    );
}

#[test]
fn consult_of_self_is_refused() {
    let mut s = busy();
    assert_refused(
        &mut s,
        CtiUpdate::InteractionCreated(Interaction {
            consult_of: Some(id("c2")),
            ..call("c2", "voice", Dialing)
        }),
        UpdateError::ConsultOfSelf(id("c2")),
    );
    // A change that would also mute is refused as a whole.
    assert_refused(
        &mut s,
        CtiUpdate::InteractionChanged(InteractionChange {
            consult_of: Some(Some(id("c1"))),
            muted: Some(true),
            ..change("c1")
        }),
        UpdateError::ConsultOfSelf(id("c1")),
    );
}

#[test]
fn a_channel_media_mismatch_is_refused() {
    let mut s = busy();
    let mut update = channel_update("voice", Ready);
    update.media = Some(Media::Email);
    assert_refused(
        &mut s,
        CtiUpdate::Channel(update),
        UpdateError::ChannelMediaMismatch {
            channel: id("voice"),
            actual: Media::Voice,
            claimed: Media::Email,
        },
    );
    // Claiming the right media is fine.
    let mut update = channel_update("voice", Ready);
    update.media = Some(Media::Voice);
    assert!(next(&mut s, CtiUpdate::Channel(update)).is_ok());
}

#[test]
fn malformed_snapshots_are_refused_and_keep_the_sequence() {
    let mut s = busy();
    s.apply(1, to_state("c1", Held)).unwrap();
    assert_refused(
        &mut s,
        CtiUpdate::Snapshot(state(vec![], vec![])),
        UpdateError::NoChannels,
    );
    assert_refused(
        &mut s,
        CtiUpdate::Snapshot(state(
            vec![voice("voice", Ready), chat_channel("voice", Ready)],
            vec![],
        )),
        UpdateError::DuplicateChannel(id("voice")),
    );
    assert_refused(
        &mut s,
        CtiUpdate::Snapshot(state(
            vec![voice("voice", Busy)],
            vec![call("a", "voice", Held), call("a", "voice", Connected)],
        )),
        UpdateError::DuplicateInteraction(id("a")),
    );
    // Listing an id twice is malformed even when one copy has ended.
    assert_refused(
        &mut s,
        CtiUpdate::Snapshot(state(
            vec![voice("voice", Busy)],
            vec![call("a", "voice", Ended), call("a", "voice", Connected)],
        )),
        UpdateError::DuplicateInteraction(id("a")),
    );
    assert_refused(
        &mut s,
        CtiUpdate::Snapshot(state(
            vec![voice("voice", Busy)],
            vec![call("a", "fax", Connected)],
        )),
        UpdateError::UnknownChannel(id("fax")),
    );
    assert_refused(
        &mut s,
        CtiUpdate::Snapshot(state(
            vec![voice("voice", Busy)],
            vec![chat("a", "voice", Active)],
        )),
        UpdateError::StateNotForMedia {
            interaction: id("a"),
            state: Active,
            media: Media::Voice,
        },
    );
    assert_refused(
        &mut s,
        CtiUpdate::Snapshot(state(
            vec![voice("voice", Busy)],
            vec![Interaction {
                consult_of: Some(id("a")),
                ..call("a", "voice", Dialing)
            }],
        )),
        UpdateError::ConsultOfSelf(id("a")),
    );
    // A refused snapshot keeps the old numbering: no reset to its number.
    let before = observe(&s);
    assert_eq!(
        s.apply(1000, CtiUpdate::Snapshot(state(vec![], vec![]))),
        Err(UpdateError::NoChannels)
    );
    assert_eq!(observe(&s), before);
}

#[test]
fn a_session_is_created_only_from_a_valid_state() {
    let p = std::sync::Arc::new(crate::profile::Profile::default());
    assert_eq!(
        Session::new(id("s1"), p.clone(), state(vec![], vec![])).err(),
        Some(UpdateError::NoChannels)
    );
    assert_eq!(
        Session::new(
            id("s1"),
            p,
            state(vec![voice("v", Ready), voice("v", Ready)], vec![])
        )
        .err(),
        Some(UpdateError::DuplicateChannel(id("v")))
    );
}

// ---------------------------------------------------------------------------------------------
// The end of an interaction

#[test]
fn an_ended_interaction_gets_one_final_all_disabled_event_and_is_dropped() {
    let mut s = session(state(
        vec![voice("voice", Busy), chat_channel("chat", Ready)],
        vec![call("c1", "voice", Connected)],
    ));
    let applied = events(next(&mut s, to_state("c1", Ended)).unwrap());
    // The session can now log out, the voice channel can dial, and c1 is gone.
    assert_eq!(targets(&applied), ["s1", "s1.voice", "s1.voice.c1"]);
    assert_eq!(names(applied[0].enabled), ["session.logout"]);
    assert_eq!(
        names(applied[1].enabled),
        [
            "channel.logout",
            "channel.ready",
            "channel.notReady",
            "channel.dial"
        ]
    );

    let last = &applied[2];
    assert_eq!(last.defined, TargetKind::VoiceInteraction.catalogue());
    assert!(last.enabled.is_empty());
    let listed: Vec<(Capability, bool)> = last.capabilities().collect();
    assert_eq!(listed.len(), 31);
    assert!(listed.iter().all(|(_, on)| !on));
    assert_eq!(
        last.context,
        TargetContext {
            media: Some(Media::Voice),
            state: "ended",
            reason: None,
            pending: None,
            direction: None,
            reasons: None,
            reason_required: false,
            participants: None,
            supervision: None,
            monitored: false,
            callback_of: None,
            preview: false,
            caller: None,
            queue: None,
            data: None,
        }
    );

    assert_eq!(s.state().interaction(&id("c1")), None);
    assert_eq!(s.view().get(&target("voice.c1")), None);
    assert_eq!(s.view_version(), 2);
    assert!(s.full_view().iter().all(|e| e.target != "s1.voice.c1"));

    // No second final event, however the session moves on.
    let applied = events(
        next(
            &mut s,
            CtiUpdate::Channel(channel_update("voice", AfterCallWork)),
        )
        .unwrap(),
    );
    assert!(applied.iter().all(|e| e.target != "s1.voice.c1"));
    assert_eq!(
        next(&mut s, to_state("c1", Connected)),
        Err(UpdateError::UnknownInteraction(id("c1")))
    );
}

#[test]
fn a_non_voice_interaction_ends_the_same_way() {
    let mut s = busy();
    let applied = events(next(&mut s, to_state("x", Ended)).unwrap());
    // With no work left on it, the chat channel can be logged out of.
    assert_eq!(targets(&applied), ["s1.chat", "s1.chat.x"]);
    assert!(applied[0].enabled.contains(Capability::ChannelLogout));
    let applied = &applied[1..];
    assert_eq!(applied[0].defined, TargetKind::OtherInteraction.catalogue());
    assert!(applied[0].enabled.is_empty());
    assert_eq!(applied[0].context.state, "ended");
    assert_eq!(applied[0].context.media, Some(Media::Chat));
}

#[test]
fn an_interaction_created_as_ended_is_never_tracked() {
    let mut s = busy();
    let before = observe(&s);
    assert_eq!(
        next(
            &mut s,
            CtiUpdate::InteractionCreated(call("c9", "voice", Ended))
        ),
        Ok(Applied::Changed(vec![]))
    );
    assert_eq!(s.state(), &before.0);
    assert_eq!(s.view_version(), before.3);
}

#[test]
fn an_interaction_moved_by_a_snapshot_ends_on_its_old_channel() {
    let mut s = session(state(
        vec![voice("v1", Busy), voice("v2", Ready)],
        vec![call("c1", "v1", WrapUp)],
    ));
    let applied = events(
        next(
            &mut s,
            CtiUpdate::Snapshot(state(
                vec![voice("v1", Busy), voice("v2", Busy)],
                vec![call("c1", "v2", WrapUp)],
            )),
        )
        .unwrap(),
    );
    // v2 can still dial, since wrap-up is no call leg: only the interaction moved.
    assert_eq!(targets(&applied), ["s1.v2", "s1.v2.c1", "s1.v1.c1"]);
    let old = &applied[2];
    assert!(old.enabled.is_empty());
    // The old target ended, even though an interaction of that id lives on elsewhere.
    assert_eq!(old.context.state, "ended");
    assert_eq!(old.context.direction, None);
    let new = &applied[1];
    assert_eq!(new.context.state, "wrap_up");
    assert_eq!(
        names(new.enabled),
        [
            "interaction.updateData",
            "interaction.wrapUp",
            "interaction.complete",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Events

#[test]
fn an_update_with_no_visible_effect_emits_nothing() {
    let mut s = busy();
    let no_effect = [
        // Attached data.
        CtiUpdate::InteractionChanged(InteractionChange {
            data: vec![("account".to_string(), "42".to_string())],
            ..change("c1")
        }),
        // A disposition while it is not mandatory.
        CtiUpdate::InteractionChanged(InteractionChange {
            disposition: Some("sale".to_string()),
            ..change("x")
        }),
        // The same state again.
        to_state("c1", Connected),
        // Parties, while no conference rule cares (alone and below three).
        CtiUpdate::InteractionChanged(InteractionChange {
            parties: Some(1),
            ..change("c1")
        }),
    ];
    for (n, update) in no_effect.into_iter().enumerate() {
        let version = s.view_version();
        let state_before = s.state().clone();
        assert_eq!(
            next(&mut s, update.clone()),
            Ok(Applied::Changed(vec![])),
            "{update:?}"
        );
        assert_eq!(s.view_version(), version, "{update:?}");
        assert_eq!(s.last_sequence(), n as u64 + 1);
        assert_eq!(*s.view(), ViewState::compute(s.state(), s.profile()));
        if n != 2 {
            assert_ne!(s.state(), &state_before, "the fact itself is recorded");
        }
    }
    assert_eq!(
        s.state()
            .interaction(&id("c1"))
            .unwrap()
            .data
            .get("account"),
        Some(&"42".to_string())
    );
}

#[test]
fn a_context_only_change_emits_no_event() {
    let mut s = session(state(vec![voice("voice", NotReady)], vec![]));
    let mut update = channel_update("voice", NotReady);
    update.reason = "lunch".to_string();
    assert_eq!(
        next(&mut s, CtiUpdate::Channel(update)),
        Ok(Applied::Changed(vec![]))
    );
    // The context carries the new reason the next time the channel is sent.
    let full = s.full_view();
    let voice_event = full.iter().find(|e| e.target == "s1.voice").unwrap();
    assert_eq!(voice_event.context.reason.as_deref(), Some("lunch"));
    assert_eq!(voice_event.context.state, "not_ready");
}

#[test]
fn events_list_only_changed_targets_each_with_its_entire_list() {
    let mut s = session(two_channel_state());
    let version = s.view_version();
    let applied = events(
        next(
            &mut s,
            CtiUpdate::InteractionChanged(InteractionChange {
                muted: Some(true),
                ..change("c2")
            }),
        )
        .unwrap(),
    );
    assert_eq!(targets(&applied), ["s1.voice.c2"]);
    assert_eq!(s.view_version(), version + 1);
    let listed: Vec<(&str, bool)> = applied[0]
        .capabilities()
        .map(|(c, on)| (c.name(), on))
        .collect();
    assert_eq!(
        listed,
        [
            ("interaction.answer", false),
            ("interaction.reject", false),
            ("interaction.redirect", false),
            ("interaction.release", true),
            ("interaction.hold", true),
            ("interaction.retrieve", false),
            ("interaction.consult", false),
            ("interaction.completeTransfer", false),
            ("interaction.completeConference", false),
            ("interaction.singleStepTransfer", false),
            ("interaction.singleStepConference", false),
            ("interaction.alternate", true),
            ("interaction.reconnect", true),
            ("interaction.sendDtmf", true),
            ("interaction.mute", false),
            ("interaction.unmute", true),
            ("interaction.dropParticipant", false),
            ("interaction.updateData", true),
            ("interaction.recording.start", true),
            ("interaction.recording.stop", false),
            ("interaction.recording.pause", false),
            ("interaction.recording.resume", false),
            ("interaction.monitor", false),
            ("interaction.whisper", false),
            ("interaction.barge", false),
            ("interaction.stopMonitoring", false),
            ("interaction.preview.accept", false),
            ("interaction.preview.skip", false),
            ("interaction.preview.reject", false),
            ("interaction.wrapUp", false),
            ("interaction.complete", false),
        ]
    );
    assert_eq!(
        applied[0].context,
        TargetContext {
            media: Some(Media::Voice),
            state: "connected",
            reason: None,
            pending: None,
            direction: Some(Direction::Consult),
            reasons: None,
            reason_required: false,
            participants: Some("2"),
            supervision: None,
            monitored: false,
            callback_of: None,
            preview: false,
            caller: None,
            queue: None,
            data: None,
        }
    );
}

#[test]
fn one_update_can_change_several_targets_in_tree_order() {
    let mut s = session(two_channel_state());
    // Retrieving the original ends the pair shape for both legs and keeps the chat as is.
    let applied = events(next(&mut s, to_state("c2", Failed)).unwrap());
    assert_eq!(targets(&applied), ["s1.voice.c1", "s1.voice.c2"]);
    assert_eq!(
        names(applied[0].enabled),
        [
            "interaction.release",
            "interaction.retrieve",
            "interaction.reconnect",
            "interaction.updateData",
        ]
    );
    assert_eq!(
        names(applied[1].enabled),
        ["interaction.release", "interaction.reconnect"]
    );
    for event in &applied {
        let path = event.target.trim_start_matches("s1.");
        assert_eq!(event.enabled, enabled(&s, path));
    }
}

#[test]
fn a_new_interaction_gets_its_first_event() {
    let mut s = busy();
    let applied = events(
        next(
            &mut s,
            CtiUpdate::InteractionCreated(chat("y", "chat", Offered)),
        )
        .unwrap(),
    );
    // The offer also holds back Not Ready on its channel.
    assert_eq!(targets(&applied), ["s1.chat", "s1.chat.y"]);
    assert_eq!(names(applied[0].enabled), ["channel.ready"]);
    let applied = &applied[1..];
    assert_eq!(
        names(applied[0].enabled),
        [
            "interaction.accept",
            "interaction.reject",
            "interaction.updateData",
        ]
    );
    assert_eq!(applied[0].defined, TargetKind::OtherInteraction.catalogue());
    assert_eq!(applied[0].context.direction, Some(Direction::Inbound));
}

#[test]
fn a_channel_reused_for_another_media_resends_its_list() {
    // Logged out, nothing is enabled as voice or as chat: only the listed capabilities differ.
    let mut s = session(state(vec![voice("c", LoggedOut)], vec![]));
    let applied = events(
        next(
            &mut s,
            CtiUpdate::Snapshot(state(vec![chat_channel("c", LoggedOut)], vec![])),
        )
        .unwrap(),
    );
    assert_eq!(targets(&applied), ["s1.c"]);
    assert_eq!(
        names(applied[0].defined),
        [
            "channel.login",
            "channel.logout",
            "channel.ready",
            "channel.notReady",
            "channel.cancelPending",
            "channel.extendWrapUp"
        ]
    );
    assert_eq!(names(applied[0].enabled), ["channel.login"]);
    assert_eq!(applied[0].context.media, Some(Media::Chat));
    assert_eq!(s.view_version(), 2);
}

#[test]
fn an_interaction_kept_across_a_media_change_resends_its_list() {
    // Same channel id, same interaction id, same enabled set in wrap-up: only the list differs.
    let mut s = session(state(vec![voice("c", Busy)], vec![call("i", "c", WrapUp)]));
    let applied = events(
        next(
            &mut s,
            CtiUpdate::Snapshot(state(
                vec![chat_channel("c", Busy)],
                vec![chat("i", "c", WrapUp)],
            )),
        )
        .unwrap(),
    );
    // The channel loses dial from its list and its enabled set; the interaction only its list.
    assert_eq!(targets(&applied), ["s1.c", "s1.c.i"]);
    assert_eq!(applied[1].defined, TargetKind::OtherInteraction.catalogue());
}

#[test]
fn full_view_lists_every_target_in_tree_order() {
    let s = session(state(
        vec![voice("voice", Busy), chat_channel("chat", Busy)],
        vec![
            chat("x", "chat", Active),
            call("c1", "voice", Connected),
            call("c2", "voice", Alerting),
        ],
    ));
    let full = s.full_view();
    assert_eq!(
        targets(&full),
        [
            "s1",
            "s1.voice",
            "s1.voice.c1",
            "s1.voice.c2",
            "s1.chat",
            "s1.chat.x"
        ]
    );
    for event in &full {
        let path = event
            .target
            .trim_start_matches("s1")
            .trim_start_matches('.');
        assert_eq!(event.enabled, enabled(&s, path), "{}", event.target);
        assert!(event.defined.intersect(event.enabled) == event.enabled);
    }
    assert_eq!(full[0].defined, TargetKind::Session.catalogue());
    assert_eq!(full[1].defined, TargetKind::VoiceChannel.catalogue());
    assert_eq!(full[4].defined, TargetKind::OtherChannel.catalogue());
    assert_eq!(full[0].context.state, "logged_in");
}

#[test]
fn options_change_what_an_update_emits() {
    let strict = Options {
        mandatory_disposition: true,
        ..Options::default()
    };
    let mut s = session_with(
        profile(strict, &[]),
        state(
            vec![chat_channel("chat", Busy)],
            vec![chat("x", "chat", WrapUp)],
        ),
    );
    assert_eq!(
        names(enabled(&s, "chat.x")),
        ["interaction.updateData", "interaction.wrapUp"]
    );
    let applied = events(
        next(
            &mut s,
            CtiUpdate::InteractionChanged(InteractionChange {
                disposition: Some("resolved".to_string()),
                ..change("x")
            }),
        )
        .unwrap(),
    );
    // The disposition also lets the agent log out.
    assert_eq!(targets(&applied), ["s1", "s1.chat", "s1.chat.x"]);
    assert!(applied[0].enabled.contains(Capability::SessionLogout));
    assert!(applied[1].enabled.contains(Capability::ChannelLogout));
    assert!(applied[2].enabled.contains(Capability::Complete));
}

#[test]
fn channel_updates_record_every_field() {
    let mut s = busy();
    let mut update = channel_update("voice", Busy);
    update.pending = Some(Pending::Ready);
    update.reason = "r".to_string();
    update.pending_reason = "p".to_string();
    let applied = events(next(&mut s, CtiUpdate::Channel(update)).unwrap());
    assert_eq!(targets(&applied), ["s1.voice"]);
    assert_eq!(
        names(applied[0].enabled),
        ["channel.notReady", "channel.cancelPending"]
    );
    assert_eq!(applied[0].context.pending, Some(Pending::Ready));
    let channel = s.state().channel(&id("voice")).unwrap();
    assert_eq!(
        (channel.reason.as_str(), channel.pending_reason.as_str()),
        ("r", "p")
    );
}

#[test]
fn data_updates_set_and_remove_keys() {
    let mut s = busy();
    next(
        &mut s,
        CtiUpdate::InteractionChanged(InteractionChange {
            data: vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string()),
            ],
            ..change("c1")
        }),
    )
    .unwrap();
    next(
        &mut s,
        CtiUpdate::InteractionChanged(InteractionChange {
            data: vec![("a".to_string(), String::new())],
            ..change("c1")
        }),
    )
    .unwrap();
    let data = &s.state().interaction(&id("c1")).unwrap().data;
    assert_eq!(
        data.iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("b", "2")]
    );
}

#[test]
fn a_restored_session_continues_where_its_original_stopped() {
    let mut original = busy();
    original.apply(1, to_state("c1", Held)).unwrap();
    original.apply(2, to_state("c1", Connected)).unwrap();
    let restored = Session::restore(
        original.id().clone(),
        std::sync::Arc::new(crate::profile::Profile::default()),
        original.state().clone(),
        crate::session::Persisted {
            last_sequence: original.last_sequence(),
            view_version: original.view_version(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(observe(&restored), observe(&original));

    let mut restored = restored;
    assert!(matches!(
        restored.apply(2, to_state("c1", Held)),
        Ok(Applied::Duplicate)
    ));
    assert_eq!(
        restored.apply(4, to_state("c1", Held)),
        Err(UpdateError::SequenceGap {
            expected: 3,
            got: 4
        })
    );
    assert_eq!(
        targets(&events(restored.apply(3, to_state("c1", Held)).unwrap())),
        ["s1.voice.c1"]
    );
}

#[test]
fn sequence_zero_and_the_largest_number_are_refused_whatever_the_update() {
    let mut s = busy();
    s.apply(1, to_state("c1", Held)).unwrap();
    let before = observe(&s);
    for sequence in [0, u64::MAX] {
        assert_eq!(
            s.apply(sequence, to_state("c1", Connected)),
            Err(UpdateError::InvalidSequence(sequence))
        );
        let snapshot = CtiUpdate::Snapshot(s.state().clone());
        assert_eq!(
            s.apply(sequence, snapshot),
            Err(UpdateError::InvalidSequence(sequence))
        );
        assert_eq!(observe(&s), before);
    }
    // The largest usable number still leaves room for nothing after it but a snapshot.
    let snapshot = CtiUpdate::Snapshot(s.state().clone());
    assert!(s.apply(u64::MAX - 1, snapshot).is_ok());
    assert_eq!(
        s.apply(u64::MAX, to_state("c1", Connected)),
        Err(UpdateError::InvalidSequence(u64::MAX))
    );
}

#[test]
fn every_size_a_peer_controls_is_capped() {
    use crate::limits::{MAX_CHANNELS, MAX_DATA_VALUE, MAX_INTERACTIONS, MAX_TEXT};
    let channels: Vec<_> = (0..=MAX_CHANNELS)
        .map(|n| voice(&format!("v{n}"), Busy))
        .collect();
    let too_many = Session::new(id("s1"), Default::default(), state(channels, vec![]));
    assert_eq!(
        too_many.err(),
        Some(UpdateError::TooMany {
            what: "channels",
            limit: MAX_CHANNELS
        })
    );
    let calls: Vec<_> = (0..=MAX_INTERACTIONS)
        .map(|n| call(&format!("c{n}"), "voice", Held))
        .collect();
    let too_many = Session::new(
        id("s1"),
        Default::default(),
        state(vec![voice("voice", Busy)], calls),
    );
    assert_eq!(
        too_many.err(),
        Some(UpdateError::TooMany {
            what: "interactions",
            limit: MAX_INTERACTIONS
        })
    );

    let mut s = busy();
    let mut big = change("c1");
    big.data = vec![("k".into(), "v".repeat(MAX_DATA_VALUE + 1))];
    assert_refused(
        &mut s,
        CtiUpdate::InteractionChanged(big),
        UpdateError::TooLong {
            what: "attached-data value",
            limit: MAX_DATA_VALUE,
        },
    );
    let mut long = change("c1");
    long.disposition = Some("d".repeat(MAX_TEXT + 1));
    assert_refused(
        &mut s,
        CtiUpdate::InteractionChanged(long),
        UpdateError::TooLong {
            what: "disposition",
            limit: MAX_TEXT,
        },
    );
}

#[test]
fn a_consult_for_an_interaction_the_session_does_not_have_is_refused() {
    let mut s = busy();
    let mut consult = call("c2", "voice", Connected);
    consult.consult_of = Some(id("ghost"));
    assert_refused(
        &mut s,
        CtiUpdate::InteractionCreated(consult),
        UpdateError::UnknownConsult {
            interaction: id("c2"),
            consult_of: id("ghost"),
        },
    );
    let mut pointing = change("c1");
    pointing.consult_of = Some(Some(id("ghost")));
    assert_refused(
        &mut s,
        CtiUpdate::InteractionChanged(pointing),
        UpdateError::UnknownConsult {
            interaction: id("c1"),
            consult_of: id("ghost"),
        },
    );
}

/// The state a session keeps after `updates`, restored as a cluster replica restores it
/// from the session's record.
fn restored(s: &Session) -> Session {
    Session::restore(
        s.id().clone(),
        std::sync::Arc::new(s.profile().clone()),
        s.state().clone(),
        crate::session::Persisted {
            last_sequence: s.last_sequence(),
            view_version: s.view_version(),
            ..Default::default()
        },
    )
    .expect("the kept state restores")
}

/// Found by the `apply_update` fuzz target: the original call of a live consult ended, and
/// the consult leg kept naming it, a state `Session::restore` (cluster takeover) refused.
#[test]
fn ending_the_original_of_a_consult_keeps_a_state_that_restores() {
    let mut s = session(two_channel_state());
    events(next(&mut s, to_state("c1", Ended)).unwrap());
    let consult = s
        .state()
        .interaction(&id("c2"))
        .expect("the consult leg stays");
    assert_eq!(consult.consult_of, None);
    let back = restored(&s);
    assert_eq!(back.state(), s.state());
    assert_eq!(back.view(), s.view());
}

/// The same through a snapshot that reports the original as ended.
#[test]
fn a_snapshot_with_an_ended_original_keeps_a_state_that_restores() {
    let mut s = session(two_channel_state());
    let mut snapshot = two_channel_state();
    snapshot.interactions[0].state = Ended;
    events(s.apply(5, CtiUpdate::Snapshot(snapshot)).unwrap());
    assert_eq!(s.state().interaction(&id("c1")), None);
    assert_eq!(s.state().interaction(&id("c2")).unwrap().consult_of, None);
    assert_eq!(restored(&s).state(), s.state());
}

#[test]
fn a_capacity_over_the_limit_is_refused_and_an_unset_one_keeps_the_last() {
    use crate::limits::MAX_CAPACITY;
    let over = state(
        vec![crate::model::Channel {
            capacity: MAX_CAPACITY + 1,
            ..chat_channel("chat", Ready)
        }],
        vec![],
    );
    let refused = Session::new(
        id("s1"),
        std::sync::Arc::new(crate::profile::Profile::default()),
        over,
    );
    assert!(matches!(
        refused,
        Err(UpdateError::TooMany {
            what: "concurrent interactions in a channel's capacity",
            ..
        })
    ));

    let mut s = session(state(vec![chat_channel("chat", Ready)], vec![]));
    let mut update = channel_update("chat", Ready);
    update.capacity = Some(3);
    next(&mut s, CtiUpdate::Channel(update)).unwrap();
    assert_eq!(s.state().channel(&id("chat")).unwrap().capacity, 3);
    // An update that does not report it keeps it.
    next(&mut s, CtiUpdate::Channel(channel_update("chat", Busy))).unwrap();
    assert_eq!(s.state().channel(&id("chat")).unwrap().capacity, 3);
    let before = s.state().clone();
    let mut update = channel_update("chat", NotReady);
    update.capacity = Some(MAX_CAPACITY + 1);
    assert!(matches!(
        next(&mut s, CtiUpdate::Channel(update)),
        Err(UpdateError::TooMany {
            what: "concurrent interactions in a channel's capacity",
            ..
        })
    ));
    assert_eq!(s.state(), &before, "a refused update changes nothing");
}

#[test]
fn participants_are_bounded_and_name_this_agent_at_most_once() {
    use crate::model::{Participant, ParticipantRole};
    let me = |id: &str| Participant {
        id: id.to_string(),
        role: ParticipantRole::Agent,
        is_self: true,
        controller: false,
    };
    let mut s = session(state(
        vec![voice("voice", Busy)],
        vec![call("c1", "voice", Connected)],
    ));
    let before = s.state().clone();
    let twice = CtiUpdate::InteractionChanged(InteractionChange {
        participants: Some(vec![me("a"), me("b")]),
        ..change("c1")
    });
    assert!(matches!(
        next(&mut s, twice),
        Err(UpdateError::TooMany {
            what: "participants marked as this agent",
            limit: 1
        })
    ));
    let crowd = CtiUpdate::InteractionChanged(InteractionChange {
        participants: Some(
            (0..=crate::limits::MAX_PARTIES)
                .map(|n| Participant {
                    is_self: false,
                    ..me(&format!("p{n}"))
                })
                .collect(),
        ),
        ..change("c1")
    });
    assert!(matches!(
        next(&mut s, crowd),
        Err(UpdateError::TooMany {
            what: "participants",
            ..
        })
    ));
    assert_eq!(s.state(), &before);
    let fine = CtiUpdate::InteractionChanged(InteractionChange {
        participants: Some(vec![me("a")]),
        ..change("c1")
    });
    next(&mut s, fine).unwrap();
    assert_eq!(
        s.state().interaction(&id("c1")).unwrap().participants.len(),
        1
    );
}

#[test]
fn time_boxed_after_call_work_expires_at_its_deadline_and_extensions_move_it() {
    let boxed = Options {
        acw_timeout_secs: 30,
        max_wrap_up_extensions: 1,
        ..Options::default()
    };
    let mut s = session_with(
        profile(boxed, &[]),
        state(vec![voice("voice", Busy)], vec![]),
    );
    assert_eq!(s.next_deadline(), None, "busy is not time-boxed");
    s.apply_at(
        1,
        CtiUpdate::Channel(channel_update("voice", AfterCallWork)),
        10_000,
    )
    .unwrap();
    assert_eq!(s.next_deadline(), Some(40_000));
    assert!(enabled(&s, "voice").contains(Capability::ChannelExtendWrapUp));
    // Not yet due: nothing happens.
    assert_eq!(s.expire(39_999), vec![]);
    // The platform grants one extension: another 30 s, and no more extensions.
    let mut extended = channel_update("voice", AfterCallWork);
    extended.wrap_up_extensions = 1;
    s.apply_at(2, CtiUpdate::Channel(extended), 20_000).unwrap();
    assert_eq!(s.next_deadline(), Some(70_000), "dated from entering ACW");
    assert!(!enabled(&s, "voice").contains(Capability::ChannelExtendWrapUp));
    assert_eq!(s.expire(69_999), vec![]);
    // Due: Finesse's wrap-up timer sends WORK to Not Ready.
    // Not Ready enables what after-call work with no extension left did: no event.
    let events = s.expire(70_000);
    assert_eq!(targets(&events), [] as [&str; 0]);
    let channel = s.state().channel(&id("voice")).unwrap();
    assert_eq!(channel.state, NotReady);
    assert_eq!(s.next_deadline(), None);
    assert_eq!(s.last_sequence(), 2, "an expiry is not an update");
}

#[test]
fn an_expiry_honours_a_pending_ready_and_no_box_means_no_deadline() {
    let boxed = Options {
        acw_timeout_secs: 5,
        ..Options::default()
    };
    let mut ready_after = channel_update("voice", AfterCallWork);
    ready_after.pending = Some(Pending::Ready);
    let mut s = session_with(
        profile(boxed, &[]),
        state(vec![voice("voice", Busy)], vec![]),
    );
    s.apply_at(1, CtiUpdate::Channel(ready_after.clone()), 0)
        .unwrap();
    let events = s.expire(5_000);
    // Ready: no more channel.ready, nor an extension.
    assert_eq!(targets(&events), ["s1.voice"]);
    assert!(!events[0].enabled.contains(Capability::ChannelReady));
    let channel = s.state().channel(&id("voice")).unwrap();
    assert_eq!((channel.state, channel.pending), (Ready, None));

    let mut s = session(state(vec![voice("voice", Busy)], vec![]));
    s.apply_at(1, CtiUpdate::Channel(ready_after), 0).unwrap();
    assert_eq!(s.next_deadline(), None);
    assert_eq!(s.expire(u64::MAX), vec![]);
    assert!(!enabled(&s, "voice").contains(Capability::ChannelExtendWrapUp));
}

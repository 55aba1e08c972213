//! Every rule of the capability catalogue, each option and each feature switch, driven
//! through the public `Session` / `ViewState` API.
//!
//! Expected sets are written out in catalogue order, so a failure shows both lists by name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::capability::{CapSet, Capability, TargetKind};
use crate::model::{
    AgentState::{self, *},
    Interaction,
    InteractionState::{self, *},
    Pending, Recording, SessionState,
};
use crate::profile::{Options, Profile, Switch};
use crate::session::Session;
use crate::testkit::{
    call, chat, chat_channel, consult, enabled, names, profile, session, session_with, state, voice,
};

/// The enabled capability names of the target at `path` (see `testkit::target`).
fn caps(session: &Session, path: &str) -> Vec<&'static str> {
    names(enabled(session, path))
}

/// The Ready, Not Ready and dial capabilities enabled on the channel at `path`: what the
/// agent-state rules decide. Login, logout and cancelling a pending state have their own tests.
fn agent_caps(session: &Session, path: &str) -> Vec<&'static str> {
    let agent = CapSet::of(&[
        Capability::ChannelReady,
        Capability::ChannelNotReady,
        Capability::ChannelDial,
    ]);
    names(enabled(session, path).intersect(agent))
}

/// A voice channel `voice` (busy) holding `calls`.
fn on_voice(calls: Vec<Interaction>) -> SessionState {
    state(vec![voice("voice", Busy)], calls)
}

/// A chat channel `chat` (busy) holding `chats`.
fn on_chat(chats: Vec<Interaction>) -> SessionState {
    state(vec![chat_channel("chat", Busy)], chats)
}

fn with_options(options: Options, state: SessionState) -> Session {
    session_with(profile(options, &[]), state)
}

// ---------------------------------------------------------------------------------------------
// Session target

#[test]
fn login_is_enabled_only_when_every_channel_is_logged_out() {
    let s = session(state(
        vec![voice("voice", LoggedOut), chat_channel("chat", LoggedOut)],
        vec![],
    ));
    assert_eq!(caps(&s, ""), ["session.login"]);

    let s = session(state(
        vec![voice("voice", LoggedOut), chat_channel("chat", NotReady)],
        vec![],
    ));
    assert_eq!(caps(&s, ""), ["session.logout"]);
}

#[test]
fn logout_needs_a_logged_in_channel_in_any_logged_in_state_but_reserved() {
    for agent in [NotReady, Ready, Busy, AfterCallWork] {
        let s = session(state(
            vec![voice("voice", agent), chat_channel("chat", LoggedOut)],
            vec![],
        ));
        assert_eq!(caps(&s, ""), ["session.logout"], "voice channel {agent:?}");
    }
}

#[test]
fn a_reservation_on_any_channel_blocks_logout() {
    // Anchors §3.1 row 4: no RESERVED → LOGOUT in Finesse; the work is already on its way.
    for (voice_state, chat_state) in [(Reserved, NotReady), (NotReady, Reserved)] {
        let s = session(state(
            vec![
                voice("voice", voice_state),
                chat_channel("chat", chat_state),
            ],
            vec![],
        ));
        assert_eq!(
            caps(&s, ""),
            [] as [&str; 0],
            "{voice_state:?}/{chat_state:?}"
        );
    }
}

#[test]
fn live_work_on_any_channel_blocks_logout() {
    for (live, blocks) in [
        (Alerting, true),
        (Dialing, true),
        (Connected, true),
        (Held, true),
        // Anchors §3.1 row 13: a failed call blocks logout until the switch clears it.
        (Failed, true),
        (WrapUp, false),
    ] {
        let s = session(state(
            vec![voice("voice", Busy), chat_channel("chat", Ready)],
            vec![call("c1", "voice", live)],
        ));
        let expected: &[&str] = if blocks { &[] } else { &["session.logout"] };
        assert_eq!(caps(&s, ""), expected, "call {live:?}");
    }
    for (live, blocks) in [
        (Offered, true),
        (Active, true),
        // Paused work is live work, as active work is.
        (Paused, true),
        (WrapUp, false),
    ] {
        let s = session(state(
            vec![voice("voice", Ready), chat_channel("chat", Busy)],
            vec![chat("x", "chat", live)],
        ));
        let expected: &[&str] = if blocks { &[] } else { &["session.logout"] };
        assert_eq!(caps(&s, ""), expected, "chat {live:?}");
    }
}

#[test]
fn option_logout_requires_not_ready() {
    let strict = Options {
        logout_requires_not_ready: true,
        ..Options::default()
    };
    let ready = state(
        vec![voice("voice", Ready), chat_channel("chat", NotReady)],
        vec![],
    );
    assert_eq!(caps(&session(ready.clone()), ""), ["session.logout"]);
    assert_eq!(
        caps(&with_options(strict.clone(), ready), ""),
        [] as [&str; 0]
    );

    for other in [Reserved, Busy, AfterCallWork] {
        let s = with_options(
            strict.clone(),
            state(
                vec![voice("voice", NotReady), chat_channel("chat", other)],
                vec![],
            ),
        );
        assert_eq!(caps(&s, ""), [] as [&str; 0], "chat channel {other:?}");
    }

    // A logged-out channel does not have to be not ready.
    let s = with_options(
        strict.clone(),
        state(
            vec![voice("voice", NotReady), chat_channel("chat", LoggedOut)],
            vec![],
        ),
    );
    assert_eq!(caps(&s, ""), ["session.logout"]);

    // The option narrows logout; it never enables it past live work.
    let s = with_options(
        strict,
        state(
            vec![voice("voice", NotReady)],
            vec![call("c1", "voice", Connected)],
        ),
    );
    assert_eq!(caps(&s, ""), [] as [&str; 0]);
}

// ---------------------------------------------------------------------------------------------
// Channel targets

#[test]
fn channel_ready_and_not_ready_follow_the_agent_state() {
    let cases: [(AgentState, Option<Pending>, &[&str]); 9] = [
        (LoggedOut, None, &[]),
        (NotReady, None, &["channel.ready", "channel.notReady"]),
        (Ready, None, &["channel.notReady"]),
        (Reserved, None, &[]),
        (Busy, None, &["channel.ready", "channel.notReady"]),
        (
            Busy,
            Some(Pending::NotReady),
            &["channel.ready", "channel.notReady"],
        ),
        (Busy, Some(Pending::Ready), &["channel.notReady"]),
        (AfterCallWork, None, &["channel.ready", "channel.notReady"]),
        (
            AfterCallWork,
            Some(Pending::Ready),
            &["channel.ready", "channel.notReady"],
        ),
    ];
    for (agent, pending, expected) in cases {
        let mut channel = chat_channel("chat", agent);
        channel.pending = pending;
        let s = session(state(vec![channel], vec![]));
        assert_eq!(
            agent_caps(&s, "chat"),
            expected,
            "{agent:?} pending {pending:?}"
        );
    }
}

#[test]
fn dial_needs_a_logged_in_voice_channel_without_a_live_call() {
    let idle: [(AgentState, &[&str]); 6] = [
        (LoggedOut, &[]),
        (
            NotReady,
            &["channel.ready", "channel.notReady", "channel.dial"],
        ),
        (Ready, &["channel.notReady", "channel.dial"]),
        // Anchors §3.1 row 4: a reservation is pending work; no call may be placed over it.
        (Reserved, &[]),
        (Busy, &["channel.ready", "channel.notReady", "channel.dial"]),
        (
            AfterCallWork,
            &["channel.ready", "channel.notReady", "channel.dial"],
        ),
    ];
    for (agent, expected) in idle {
        let s = session(state(vec![voice("voice", agent)], vec![]));
        assert_eq!(agent_caps(&s, "voice"), expected, "{agent:?}");
    }

    // Anchors §3.1 rows 4–13: every call leg, a failed one included, blocks a new call.
    for (leg, dial) in [
        (Dialing, false),
        (Connected, false),
        (Held, false),
        (Failed, false),
        (WrapUp, true),
    ] {
        let s = session(on_voice(vec![call("c1", "voice", leg)]));
        let expected: &[&str] = if dial {
            &["channel.ready", "channel.notReady", "channel.dial"]
        } else {
            &["channel.ready", "channel.notReady"]
        };
        assert_eq!(agent_caps(&s, "voice"), expected, "call {leg:?}");
    }
    // An alerting call also holds back Not Ready on its channel.
    let s = session(on_voice(vec![call("c1", "voice", Alerting)]));
    assert_eq!(agent_caps(&s, "voice"), ["channel.ready"]);
}

#[test]
fn dial_is_blocked_by_work_anywhere_on_the_session_unless_the_option_allows_other_media() {
    let work = |item: Interaction| {
        state(
            vec![
                voice("v1", Ready),
                voice("v2", Busy),
                chat_channel("chat", Busy),
            ],
            vec![item],
        )
    };
    let relaxed = Options {
        dial_during_other_media: true,
        ..Options::default()
    };
    for item in [
        call("c1", "v2", Connected),
        call("c1", "v2", Failed),
        chat("x", "chat", Active),
        chat("x", "chat", Paused),
        chat("x", "chat", Offered),
    ] {
        let what = format!("{:?} on {}", item.state, item.channel);
        let s = session(work(item.clone()));
        assert_eq!(agent_caps(&s, "v1"), ["channel.notReady"], "{what}");
        let s = with_options(relaxed.clone(), work(item));
        assert_eq!(
            agent_caps(&s, "v1"),
            ["channel.notReady", "channel.dial"],
            "{what}"
        );
    }
    // Work in wrap-up is no longer pending or live.
    let s = session(work(chat("x", "chat", WrapUp)));
    assert_eq!(agent_caps(&s, "v1"), ["channel.notReady", "channel.dial"]);
    // A reservation on another channel is pending work too.
    let s = session(state(
        vec![voice("v1", Ready), chat_channel("chat", Reserved)],
        vec![],
    ));
    assert_eq!(agent_caps(&s, "v1"), ["channel.notReady"]);
    let s = with_options(
        relaxed,
        state(
            vec![voice("v1", Ready), chat_channel("chat", Reserved)],
            vec![],
        ),
    );
    assert_eq!(agent_caps(&s, "v1"), ["channel.notReady", "channel.dial"]);
}

#[test]
fn non_voice_channels_do_not_list_dial() {
    let s = session(state(vec![chat_channel("chat", Ready)], vec![]));
    let events = s.full_view();
    let chat_event = events.iter().find(|e| e.target == "s1.chat").unwrap();
    assert_eq!(
        names(chat_event.defined),
        [
            "channel.login",
            "channel.logout",
            "channel.ready",
            "channel.notReady",
            "channel.cancelPending",
            "channel.extendWrapUp"
        ]
    );
    assert_eq!(caps(&s, "chat"), ["channel.logout", "channel.notReady"]);
}

// ---------------------------------------------------------------------------------------------
// Voice interaction targets: one call alone on its channel

#[test]
fn a_lone_call_in_each_state() {
    let cases: [(InteractionState, &[&str]); 6] = [
        (
            Alerting,
            &[
                "interaction.answer",
                "interaction.reject",
                "interaction.redirect",
                "interaction.updateData",
            ],
        ),
        (Dialing, &["interaction.release", "interaction.updateData"]),
        (
            Connected,
            &[
                "interaction.release",
                "interaction.hold",
                "interaction.consult",
                "interaction.singleStepTransfer",
                "interaction.singleStepConference",
                "interaction.sendDtmf",
                "interaction.mute",
                "interaction.updateData",
                "interaction.recording.start",
            ],
        ),
        (
            Held,
            &[
                "interaction.release",
                "interaction.retrieve",
                "interaction.updateData",
            ],
        ),
        // Anchors §3.2 row 13: Finesse FAILED allows DROP only.
        (Failed, &["interaction.release"]),
        (
            WrapUp,
            &[
                "interaction.updateData",
                "interaction.wrapUp",
                "interaction.complete",
            ],
        ),
    ];
    for (call_state, expected) in cases {
        let s = session(on_voice(vec![call("c1", "voice", call_state)]));
        assert_eq!(caps(&s, "voice.c1"), expected, "{call_state:?}");
    }
}

#[test]
fn mute_and_unmute_follow_the_mute_flag() {
    let muted = |st| Interaction {
        muted: true,
        ..call("c1", "voice", st)
    };
    let s = session(on_voice(vec![muted(Connected)]));
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.release",
            "interaction.hold",
            "interaction.consult",
            "interaction.singleStepTransfer",
            "interaction.singleStepConference",
            "interaction.sendDtmf",
            "interaction.unmute",
            "interaction.updateData",
            "interaction.recording.start",
        ]
    );
    // Unmute only needs the flag; mute needs a connected call.
    let s = session(on_voice(vec![muted(Held)]));
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.release",
            "interaction.retrieve",
            "interaction.unmute",
            "interaction.updateData",
        ]
    );
    let s = session(on_voice(vec![call("c1", "voice", Held)]));
    assert!(!enabled(&s, "voice.c1").contains(Capability::Mute));
}

#[test]
fn recording_capabilities_follow_the_recording_state() {
    let rec = |st, recording| Interaction {
        recording,
        ..call("c1", "voice", st)
    };
    let connected_base = [
        "interaction.release",
        "interaction.hold",
        "interaction.consult",
        "interaction.singleStepTransfer",
        "interaction.singleStepConference",
        "interaction.sendDtmf",
        "interaction.mute",
        "interaction.updateData",
    ];
    let with = |extra: &[&'static str]| {
        let mut all = connected_base.to_vec();
        all.extend_from_slice(extra);
        all
    };
    let cases = [
        (
            rec(Connected, Recording::Off),
            with(&["interaction.recording.start"]),
        ),
        (
            rec(Connected, Recording::Active),
            with(&["interaction.recording.stop", "interaction.recording.pause"]),
        ),
        (
            rec(Connected, Recording::Paused),
            with(&["interaction.recording.stop", "interaction.recording.resume"]),
        ),
        (
            rec(Held, Recording::Off),
            vec![
                "interaction.release",
                "interaction.retrieve",
                "interaction.updateData",
            ],
        ),
        (
            rec(Held, Recording::Active),
            vec![
                "interaction.release",
                "interaction.retrieve",
                "interaction.updateData",
                "interaction.recording.stop",
                "interaction.recording.pause",
            ],
        ),
        (
            rec(Held, Recording::Paused),
            vec![
                "interaction.release",
                "interaction.retrieve",
                "interaction.updateData",
                "interaction.recording.stop",
                "interaction.recording.resume",
            ],
        ),
    ];
    for (item, expected) in cases {
        let label = format!("{:?} {:?}", item.state, item.recording);
        let s = session(on_voice(vec![item]));
        assert_eq!(caps(&s, "voice.c1"), expected, "{label}");
    }
}

#[test]
fn live_call_flags_enable_nothing_once_the_call_is_failed_or_in_wrap_up() {
    // Anchors §3.2 rows 12 and 13: nothing to mute or record once the call is over,
    // whatever flags the Interaction Processor reported last.
    let flagged = |st| Interaction {
        muted: true,
        recording: Recording::Active,
        ..call("c1", "voice", st)
    };
    let s = session(on_voice(vec![flagged(Failed)]));
    assert_eq!(caps(&s, "voice.c1"), ["interaction.release"]);
    let s = session(on_voice(vec![flagged(WrapUp)]));
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.updateData",
            "interaction.wrapUp",
            "interaction.complete"
        ]
    );
    let paused = Interaction {
        recording: Recording::Paused,
        ..call("c1", "voice", WrapUp)
    };
    let s = session(on_voice(vec![paused]));
    assert!(!enabled(&s, "voice.c1").contains(Capability::RecordingResume));
    assert!(!enabled(&s, "voice.c1").contains(Capability::RecordingStop));
    // While dialing the flags still apply: the call is live.
    let s = session(on_voice(vec![flagged(Dialing)]));
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.release",
            "interaction.unmute",
            "interaction.updateData",
            "interaction.recording.stop",
            "interaction.recording.pause",
        ]
    );
}

#[test]
fn drop_participant_needs_a_connected_conference_of_three() {
    let conf = |st, parties| Interaction {
        parties,
        ..call("c1", "voice", st)
    };
    for (item, drop) in [
        (conf(Connected, 2), false),
        (conf(Connected, 3), true),
        (conf(Connected, 5), true),
        (conf(Held, 4), false),
    ] {
        let label = format!("{:?} with {} parties", item.state, item.parties);
        let s = session(on_voice(vec![item]));
        assert_eq!(
            enabled(&s, "voice.c1").contains(Capability::DropParticipant),
            drop,
            "{label}"
        );
    }
    let s = session(on_voice(vec![conf(Connected, 3)]));
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.release",
            "interaction.hold",
            "interaction.consult",
            "interaction.singleStepTransfer",
            "interaction.singleStepConference",
            "interaction.sendDtmf",
            "interaction.mute",
            "interaction.dropParticipant",
            "interaction.updateData",
            "interaction.recording.start",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Voice interaction targets: several calls on a channel

const HELD_OF_PAIR: [&str; 5] = [
    "interaction.release",
    "interaction.completeTransfer",
    "interaction.completeConference",
    "interaction.alternate",
    "interaction.updateData",
];

/// The held leg carries the completion (Finesse HELD: TRANSFER and CONFERENCE "if an active
/// call exists", anchors §2a); the connected leg only alternates.
const CONNECTED_OF_PAIR: [&str; 8] = [
    "interaction.release",
    "interaction.hold",
    "interaction.singleStepTransfer",
    "interaction.alternate",
    "interaction.sendDtmf",
    "interaction.mute",
    "interaction.updateData",
    "interaction.recording.start",
];

#[test]
fn two_independent_calls_one_held_one_connected_get_transfer_conference_and_alternate() {
    let s = session(on_voice(vec![
        call("a", "voice", Held),
        call("b", "voice", Connected),
    ]));
    // Retrieve waits for the connected call; consult needs the call alone; no consult pair,
    // so no reconnect.
    assert_eq!(caps(&s, "voice.a"), HELD_OF_PAIR);
    assert_eq!(caps(&s, "voice.b"), CONNECTED_OF_PAIR);
    assert_eq!(
        agent_caps(&s, "voice"),
        ["channel.ready", "channel.notReady"]
    );
}

#[test]
fn a_consult_pair_also_gets_reconnect_on_both_legs() {
    let s = session(on_voice(vec![
        call("c1", "voice", Held),
        consult("c2", "voice", Connected, "c1"),
    ]));
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.release",
            "interaction.completeTransfer",
            "interaction.completeConference",
            "interaction.alternate",
            "interaction.reconnect",
            "interaction.updateData",
        ]
    );
    // No single-step transfer on either leg of a consult pair (anchors §3.2 rows 8–9).
    assert_eq!(
        caps(&s, "voice.c2"),
        [
            "interaction.release",
            "interaction.hold",
            "interaction.alternate",
            "interaction.reconnect",
            "interaction.sendDtmf",
            "interaction.mute",
            "interaction.updateData",
            "interaction.recording.start",
        ]
    );
}

#[test]
fn option_single_step_transfer_in_consult_keeps_it_on_the_connected_consult_leg() {
    let pair = || {
        on_voice(vec![
            call("c1", "voice", Held),
            consult("c2", "voice", Connected, "c1"),
        ])
    };
    let s = session(pair());
    assert!(!enabled(&s, "voice.c2").contains(Capability::SingleStepTransfer));
    let s = with_options(
        Options {
            single_step_transfer_in_consult: true,
            ..Options::default()
        },
        pair(),
    );
    assert!(enabled(&s, "voice.c2").contains(Capability::SingleStepTransfer));
    // The held original still has none: a held call is not blind-transferred.
    assert!(!enabled(&s, "voice.c1").contains(Capability::SingleStepTransfer));
}

#[test]
fn reconnect_while_the_consult_leg_is_dialing_or_failed() {
    for leg in [Dialing, Failed] {
        let s = session(on_voice(vec![
            call("c1", "voice", Held),
            consult("c2", "voice", leg, "c1"),
        ]));
        // Nothing is connected, so the original can also be retrieved.
        assert_eq!(
            caps(&s, "voice.c1"),
            [
                "interaction.release",
                "interaction.retrieve",
                "interaction.reconnect",
                "interaction.updateData",
            ],
            "consult leg {leg:?}"
        );
        let expected: &[&str] = if leg == Failed {
            &["interaction.release", "interaction.reconnect"]
        } else {
            &[
                "interaction.release",
                "interaction.reconnect",
                "interaction.updateData",
            ]
        };
        assert_eq!(caps(&s, "voice.c2"), expected, "consult leg {leg:?}");
    }
}

#[test]
fn no_reconnect_outside_the_consult_pair_shape() {
    // The consult leg is still alerting (not dialing, connected or failed).
    let s = session(on_voice(vec![
        call("c1", "voice", Held),
        consult("c2", "voice", Alerting, "c1"),
    ]));
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.release",
            "interaction.retrieve",
            "interaction.updateData",
        ]
    );
    assert_eq!(
        caps(&s, "voice.c2"),
        [
            "interaction.answer",
            "interaction.reject",
            "interaction.redirect",
            "interaction.updateData",
        ]
    );

    // After alternating, the original is connected and the consult leg held.
    let s = session(on_voice(vec![
        call("c1", "voice", Connected),
        consult("c2", "voice", Held, "c1"),
    ]));
    assert_eq!(caps(&s, "voice.c1"), CONNECTED_OF_PAIR);
    assert_eq!(caps(&s, "voice.c2"), HELD_OF_PAIR);

    // The original is not held.
    let s = session(on_voice(vec![
        call("c1", "voice", Connected),
        consult("c2", "voice", Connected, "c1"),
    ]));
    for leg in ["voice.c1", "voice.c2"] {
        assert!(
            !enabled(&s, leg).contains(Capability::Reconnect),
            "{leg}: {:?}",
            caps(&s, leg)
        );
    }

    // The original is on another channel: a consult pair lives on one channel.
    let s = session(state(
        vec![voice("v1", Busy), voice("v2", Busy)],
        vec![call("c1", "v1", Held), consult("c2", "v2", Connected, "c1")],
    ));
    assert_eq!(
        caps(&s, "v1.c1"),
        [
            "interaction.release",
            "interaction.retrieve",
            "interaction.updateData",
        ]
    );
    assert_eq!(
        caps(&s, "v2.c2"),
        [
            "interaction.release",
            "interaction.hold",
            "interaction.consult",
            "interaction.singleStepTransfer",
            "interaction.singleStepConference",
            "interaction.sendDtmf",
            "interaction.mute",
            "interaction.updateData",
            "interaction.recording.start",
        ]
    );
}

#[test]
fn retrieve_waits_only_for_a_connected_call_on_the_same_channel() {
    let s = session(on_voice(vec![
        call("a", "voice", Held),
        call("b", "voice", Held),
    ]));
    for leg in ["voice.a", "voice.b"] {
        assert_eq!(
            caps(&s, leg),
            [
                "interaction.release",
                "interaction.retrieve",
                "interaction.updateData",
            ],
            "{leg}"
        );
    }
    let s = session(on_voice(vec![
        call("a", "voice", Held),
        call("b", "voice", Alerting),
    ]));
    assert!(enabled(&s, "voice.a").contains(Capability::Retrieve));
    let s = session(on_voice(vec![
        call("a", "voice", Held),
        call("b", "voice", Connected),
    ]));
    assert!(!enabled(&s, "voice.a").contains(Capability::Retrieve));
}

#[test]
fn consult_needs_the_call_alone_among_the_call_legs() {
    for (other, allowed) in [
        (Alerting, false),
        (Dialing, false),
        (Held, false),
        (Failed, false),
        (WrapUp, true),
    ] {
        let s = session(on_voice(vec![
            call("a", "voice", Connected),
            call("b", "voice", other),
        ]));
        assert_eq!(
            enabled(&s, "voice.a").contains(Capability::Consult),
            allowed,
            "other call {other:?}"
        );
    }
    // A call on another voice channel does not count.
    let s = session(state(
        vec![voice("v1", Busy), voice("v2", Busy)],
        vec![call("a", "v1", Connected), call("b", "v2", Held)],
    ));
    assert!(enabled(&s, "v1.a").contains(Capability::Consult));
}

fn s_with_alerting_third() -> Session {
    session(on_voice(vec![
        call("a", "voice", Held),
        call("b", "voice", Connected),
        call("c", "voice", Alerting),
    ]))
}

#[test]
fn a_third_call_beside_the_held_pair_does_not_disable_it() {
    // CSTA Transfer Call and Conference Call name the held and the active call; Finesse
    // offers TRANSFER on the held call "if an active call exists" (anchors §2a, §2d).
    for third in [Alerting, Dialing, Failed] {
        let s = session(on_voice(vec![
            call("a", "voice", Held),
            call("b", "voice", Connected),
            call("c", "voice", third),
        ]));
        assert_eq!(caps(&s, "voice.a"), HELD_OF_PAIR, "third call {third:?}");
        assert!(
            enabled(&s, "voice.b").contains(Capability::Alternate),
            "third call {third:?}"
        );
        let third_caps = enabled(&s, "voice.c");
        assert!(
            third_caps
                .intersect(CapSet::of(&[
                    Capability::CompleteTransfer,
                    Capability::CompleteConference,
                    Capability::Alternate,
                ]))
                .is_empty(),
            "the third call {third:?} joins nothing: {:?}",
            names(third_caps)
        );
    }
    assert_eq!(
        caps(&s_with_alerting_third(), "voice.c"),
        [
            "interaction.answer",
            "interaction.reject",
            "interaction.redirect",
            "interaction.updateData",
        ]
    );

    // Two held calls, or two connected ones, leave it ambiguous which to join.
    for third in [Held, Connected] {
        let s = session(on_voice(vec![
            call("a", "voice", Held),
            call("b", "voice", Connected),
            call("c", "voice", third),
        ]));
        for leg in ["voice.a", "voice.b", "voice.c"] {
            assert!(
                !enabled(&s, leg).contains(Capability::CompleteTransfer),
                "{leg}: {:?}",
                caps(&s, leg)
            );
        }
    }

    // A call in wrap-up is no longer a leg, so it neither breaks the pair nor joins it.
    let s = session(on_voice(vec![
        call("a", "voice", Held),
        call("b", "voice", Connected),
        call("w", "voice", WrapUp),
    ]));
    assert_eq!(caps(&s, "voice.a"), HELD_OF_PAIR);
    assert_eq!(caps(&s, "voice.b"), CONNECTED_OF_PAIR);
    assert_eq!(
        caps(&s, "voice.w"),
        [
            "interaction.updateData",
            "interaction.wrapUp",
            "interaction.complete",
        ]
    );

    // Held with held, or held with a failed leg, is not the shape.
    for other in [Held, Failed, Alerting] {
        let s = session(on_voice(vec![
            call("a", "voice", Held),
            call("b", "voice", other),
        ]));
        let pair_caps = CapSet::of(&[
            Capability::CompleteTransfer,
            Capability::CompleteConference,
            Capability::Alternate,
        ]);
        for leg in ["voice.a", "voice.b"] {
            assert!(
                enabled(&s, leg).intersect(pair_caps).is_empty(),
                "{leg} with the other leg {other:?}: {:?}",
                caps(&s, leg)
            );
        }
    }
}

#[test]
fn a_pair_on_another_channel_does_not_count() {
    let s = session(state(
        vec![voice("v1", Busy), voice("v2", Busy)],
        vec![call("a", "v1", Held), call("b", "v2", Connected)],
    ));
    assert_eq!(
        caps(&s, "v1.a"),
        [
            "interaction.release",
            "interaction.retrieve",
            "interaction.updateData",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Options on voice interactions

#[test]
fn option_reject_alerting() {
    let alerting = on_voice(vec![call("c1", "voice", Alerting)]);
    assert_eq!(
        caps(&session(alerting.clone()), "voice.c1"),
        [
            "interaction.answer",
            "interaction.reject",
            "interaction.redirect",
            "interaction.updateData",
        ]
    );
    let no_reject = Options {
        reject_alerting: false,
        ..Options::default()
    };
    let s = with_options(no_reject.clone(), alerting);
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.answer",
            "interaction.redirect",
            "interaction.updateData"
        ]
    );
    // The option only disables: reject stays defined (listed as disabled).
    let event = s
        .full_view()
        .into_iter()
        .find(|e| e.target == "s1.voice.c1")
        .unwrap();
    assert!(event.defined.contains(Capability::Reject));

    let s = with_options(no_reject, on_chat(vec![chat("x", "chat", Offered)]));
    assert_eq!(
        caps(&s, "chat.x"),
        ["interaction.accept", "interaction.updateData"]
    );
}

#[test]
fn option_transfer_on_alerting_lets_the_other_leg_still_be_dialing() {
    let held_and_dialing = on_voice(vec![
        call("c1", "voice", Held),
        consult("c2", "voice", Dialing, "c1"),
    ]);
    let s = session(held_and_dialing.clone());
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.release",
            "interaction.retrieve",
            "interaction.reconnect",
            "interaction.updateData",
        ]
    );
    assert_eq!(
        caps(&s, "voice.c2"),
        [
            "interaction.release",
            "interaction.reconnect",
            "interaction.updateData",
        ]
    );

    let early = Options {
        transfer_on_alerting: true,
        ..Options::default()
    };
    // Only completeTransfer appears, on the held leg: conference and alternate still need a
    // connected leg.
    let s = with_options(early.clone(), held_and_dialing);
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.release",
            "interaction.retrieve",
            "interaction.completeTransfer",
            "interaction.reconnect",
            "interaction.updateData",
        ]
    );
    assert_eq!(
        caps(&s, "voice.c2"),
        [
            "interaction.release",
            "interaction.reconnect",
            "interaction.updateData",
        ]
    );

    // Two independent calls, held and dialing: the same.
    let s = with_options(
        early.clone(),
        on_voice(vec![call("a", "voice", Held), call("b", "voice", Dialing)]),
    );
    assert_eq!(
        caps(&s, "voice.a"),
        [
            "interaction.release",
            "interaction.retrieve",
            "interaction.completeTransfer",
            "interaction.updateData",
        ]
    );

    // Alerting, failed or held is not dialing.
    for other in [Alerting, Failed, Held] {
        let s = with_options(
            early.clone(),
            on_voice(vec![call("a", "voice", Held), call("b", "voice", other)]),
        );
        assert!(
            !enabled(&s, "voice.a").contains(Capability::CompleteTransfer),
            "other leg {other:?}"
        );
    }

    // A held and connected pair keeps its transfer with the option on.
    let s = with_options(
        early,
        on_voice(vec![
            call("a", "voice", Held),
            call("b", "voice", Connected),
        ]),
    );
    assert_eq!(caps(&s, "voice.a"), HELD_OF_PAIR);
    assert_eq!(caps(&s, "voice.b"), CONNECTED_OF_PAIR);
}

#[test]
fn option_max_conference_parties_bounds_the_joined_call() {
    // (held parties, connected parties, max, conference enabled); joined = p1 + p2 - 1 with
    // each count taken as at least 2.
    let cases = [
        (2, 2, 6, true),
        (4, 3, 6, true),
        (4, 4, 6, false),
        (4, 4, 7, true),
        (0, 5, 6, true),
        (0, 6, 6, false),
        (1, 6, 6, false),
        (2, 2, 3, true),
        (2, 2, 2, false),
        (64, 64, 127, true),
        (64, 64, 126, false),
    ];
    for (held_parties, connected_parties, max, conference) in cases {
        let options = Options {
            max_conference_parties: max,
            ..Options::default()
        };
        let s = with_options(
            options,
            on_voice(vec![
                Interaction {
                    parties: held_parties,
                    ..call("a", "voice", Held)
                },
                Interaction {
                    parties: connected_parties,
                    ..call("b", "voice", Connected)
                },
            ]),
        );
        let label = format!("{held_parties} + {connected_parties} parties, max {max}");
        let caps_now = enabled(&s, "voice.a");
        assert_eq!(
            caps_now.contains(Capability::CompleteConference),
            conference,
            "{label}"
        );
        // Transfer and alternate do not depend on the party count.
        assert!(caps_now.contains(Capability::CompleteTransfer), "{label}");
        assert!(caps_now.contains(Capability::Alternate), "{label}");
        assert!(
            enabled(&s, "voice.b").contains(Capability::Alternate),
            "{label}"
        );
    }
}

#[test]
fn option_max_conference_parties_is_six_by_default() {
    assert_eq!(Options::default().max_conference_parties, 6);
    let pair = |p1, p2| {
        session(on_voice(vec![
            Interaction {
                parties: p1,
                ..call("a", "voice", Held)
            },
            Interaction {
                parties: p2,
                ..call("b", "voice", Connected)
            },
        ]))
    };
    assert!(enabled(&pair(4, 3), "voice.a").contains(Capability::CompleteConference));
    assert!(!enabled(&pair(5, 3), "voice.a").contains(Capability::CompleteConference));
}

#[test]
fn option_mandatory_disposition() {
    let strict = Options {
        mandatory_disposition: true,
        ..Options::default()
    };
    let with_disposition = |item: Interaction| Interaction {
        disposition: "sale".to_string(),
        ..item
    };
    let cases = [
        (on_voice(vec![call("i", "voice", WrapUp)]), "voice.i"),
        (on_chat(vec![chat("i", "chat", WrapUp)]), "chat.i"),
    ];
    for (plain, path) in cases {
        let mut disposed = plain.clone();
        disposed.interactions = disposed
            .interactions
            .into_iter()
            .map(with_disposition)
            .collect();

        let both = [
            "interaction.updateData",
            "interaction.wrapUp",
            "interaction.complete",
        ];
        assert_eq!(caps(&session(plain.clone()), path), both, "{path} default");
        assert_eq!(
            caps(&session(disposed.clone()), path),
            both,
            "{path} default, disposed"
        );
        assert_eq!(
            caps(&with_options(strict.clone(), plain), path),
            ["interaction.updateData", "interaction.wrapUp"],
            "{path} mandatory"
        );
        assert_eq!(
            caps(&with_options(strict.clone(), disposed), path),
            both,
            "{path} mandatory, disposed"
        );
    }
    // A disposition does not make complete available outside wrap-up.
    let s = with_options(
        strict,
        on_voice(vec![with_disposition(call("i", "voice", Connected))]),
    );
    assert!(!enabled(&s, "voice.i").contains(Capability::Complete));
}

// ---------------------------------------------------------------------------------------------
// Non-voice interaction targets

#[test]
fn a_non_voice_interaction_in_each_state() {
    let cases: [(InteractionState, &[&str]); 4] = [
        (
            Offered,
            &[
                "interaction.accept",
                "interaction.reject",
                "interaction.updateData",
            ],
        ),
        (
            Active,
            &[
                "interaction.release",
                "interaction.pause",
                "interaction.singleStepTransfer",
                "interaction.updateData",
            ],
        ),
        (
            Paused,
            &[
                "interaction.release",
                "interaction.resume",
                "interaction.updateData",
            ],
        ),
        (
            WrapUp,
            &[
                "interaction.updateData",
                "interaction.wrapUp",
                "interaction.complete",
            ],
        ),
    ];
    for media_channel in [
        chat_channel("ch", Busy),
        crate::testkit::channel("ch", crate::model::Media::Email, Busy),
        crate::testkit::channel("ch", crate::model::Media::Task, Busy),
        crate::testkit::channel("ch", crate::model::Media::Callback, Busy),
    ] {
        for (item_state, expected) in cases {
            let media = media_channel.media;
            let s = session(state(
                vec![media_channel.clone()],
                vec![chat("x", "ch", item_state)],
            ));
            // A callback's own choices have their test below.
            let callback = CapSet::of(&[
                Capability::CallbackCall,
                Capability::CallbackReschedule,
                Capability::CallbackCancel,
            ]);
            assert_eq!(
                names(enabled(&s, "ch.x").without(callback)),
                expected,
                "{media:?} {item_state:?}"
            );
        }
    }
}

#[test]
fn voice_flags_mean_nothing_on_non_voice_interactions() {
    let s = session(on_chat(vec![Interaction {
        muted: true,
        recording: Recording::Active,
        parties: 5,
        ..chat("x", "chat", Active)
    }]));
    assert_eq!(
        caps(&s, "chat.x"),
        [
            "interaction.release",
            "interaction.pause",
            "interaction.singleStepTransfer",
            "interaction.updateData",
        ]
    );
    let event = s
        .full_view()
        .into_iter()
        .find(|e| e.target == "s1.chat.x")
        .unwrap();
    assert_eq!(
        names(event.defined),
        [
            "interaction.accept",
            "interaction.reject",
            "interaction.release",
            "interaction.pause",
            "interaction.resume",
            "interaction.singleStepTransfer",
            "interaction.updateData",
            "interaction.callback.call",
            "interaction.callback.reschedule",
            "interaction.callback.cancel",
            "interaction.wrapUp",
            "interaction.complete",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Feature switches

/// A session state and target where `cap` is enabled under the default profile.
fn enabling(cap: Capability) -> (SessionState, &'static str) {
    use Capability::*;
    let one = |item: Interaction| (on_voice(vec![item]), "voice.c1");
    let connected = call("c1", "voice", Connected);
    let pair = || {
        (
            on_voice(vec![
                call("c1", "voice", Held),
                consult("c2", "voice", Connected, "c1"),
            ]),
            "voice.c1",
        )
    };
    match cap {
        RecordingStart | SendDtmf | Mute | Consult | SingleStepTransfer => one(connected),
        RecordingStop | RecordingPause => one(Interaction {
            recording: Recording::Active,
            ..connected
        }),
        RecordingResume => one(Interaction {
            recording: Recording::Paused,
            ..connected
        }),
        Unmute => one(Interaction {
            muted: true,
            ..connected
        }),
        DropParticipant => one(Interaction {
            parties: 3,
            ..connected
        }),
        CompleteTransfer | CompleteConference | Reconnect => pair(),
        Answer | Reject | Redirect => one(call("c1", "voice", Alerting)),
        SingleStepConference => one(connected),
        Pause => (on_chat(vec![chat("x", "chat", Active)]), "chat.x"),
        PreviewAccept | PreviewSkip | PreviewReject => one(Interaction {
            preview: true,
            ..call("c1", "voice", Alerting)
        }),
        CallbackCall | CallbackReschedule | CallbackCancel => (
            state(
                vec![crate::testkit::channel(
                    "cb",
                    crate::model::Media::Callback,
                    Busy,
                )],
                vec![chat("x", "cb", Offered)],
            ),
            "cb.x",
        ),
        Monitor => one(Interaction {
            supervision: crate::model::Supervision::Supervised,
            ..connected
        }),
        Whisper | Barge | StopMonitoring => one(Interaction {
            supervision: if cap == Whisper {
                crate::model::Supervision::Monitoring
            } else {
                crate::model::Supervision::Whispering
            },
            ..connected
        }),
        Resume => (on_chat(vec![chat("x", "chat", Paused)]), "chat.x"),
        other => panic!("no scenario for {other}"),
    }
}

#[test]
fn each_switch_removes_exactly_its_capabilities() {
    let expected: [(Switch, &[&str]); 14] = [
        (
            Switch::Recording,
            &[
                "interaction.recording.start",
                "interaction.recording.stop",
                "interaction.recording.pause",
                "interaction.recording.resume",
            ],
        ),
        (
            Switch::RecordingPause,
            &[
                "interaction.recording.pause",
                "interaction.recording.resume",
            ],
        ),
        (Switch::Mute, &["interaction.mute", "interaction.unmute"]),
        (Switch::Dtmf, &["interaction.sendDtmf"]),
        // Not completeTransfer: it also joins two independent calls, as completeConference
        // does, and the conference switch leaves that to the consult switch alike.
        (
            Switch::Consult,
            &["interaction.consult", "interaction.reconnect"],
        ),
        (
            Switch::Conference,
            &[
                "interaction.completeConference",
                "interaction.singleStepConference",
                "interaction.dropParticipant",
            ],
        ),
        (
            Switch::SingleStepTransfer,
            &["interaction.singleStepTransfer"],
        ),
        (Switch::Reject, &["interaction.reject"]),
        (Switch::Answer, &["interaction.answer"]),
        (Switch::Redirect, &["interaction.redirect"]),
        (Switch::Pause, &["interaction.pause", "interaction.resume"]),
        (
            Switch::Supervisor,
            &[
                "interaction.monitor",
                "interaction.whisper",
                "interaction.barge",
                "interaction.stopMonitoring",
            ],
        ),
        (
            Switch::Preview,
            &[
                "interaction.preview.accept",
                "interaction.preview.skip",
                "interaction.preview.reject",
            ],
        ),
        (
            Switch::Callback,
            &[
                "interaction.callback.call",
                "interaction.callback.reschedule",
                "interaction.callback.cancel",
            ],
        ),
    ];
    assert_eq!(expected.len(), Switch::ALL.len());
    for (switch, removed) in expected {
        assert_eq!(names(switch.capabilities()), removed, "{switch:?}");
        let off = profile(Options::default(), &[switch]);
        for kind in TargetKind::ALL {
            assert_eq!(
                off.defined(kind),
                kind.catalogue().without(switch.capabilities()),
                "{switch:?} on {kind:?}"
            );
        }
    }
}

#[test]
fn a_switched_off_capability_disappears_from_the_view_and_the_event() {
    for switch in Switch::ALL {
        for cap in switch.capabilities().iter() {
            let (scenario, path) = enabling(cap);
            let on = session(scenario.clone());
            let off = session_with(profile(Options::default(), &[switch]), scenario);
            let enabled_on = enabled(&on, path);
            assert!(
                enabled_on.contains(cap),
                "{cap} should be enabled in its scenario"
            );
            // Everything else stays as the state rules say.
            assert_eq!(
                enabled(&off, path),
                enabled_on.without(switch.capabilities()),
                "{switch:?} / {cap}"
            );
            let target = format!("s1.{path}");
            let event = off
                .full_view()
                .into_iter()
                .find(|e| e.target == target)
                .unwrap();
            assert!(!event.defined.contains(cap), "{switch:?} / {cap}");
            assert!(
                event.capabilities().all(|(c, _)| c != cap),
                "{switch:?} / {cap}"
            );
        }
    }
}

#[test]
fn reject_and_single_step_transfer_switches_apply_to_non_voice_too() {
    for (switch, item_state, cap) in [
        (Switch::Reject, Offered, Capability::Reject),
        (
            Switch::SingleStepTransfer,
            Active,
            Capability::SingleStepTransfer,
        ),
    ] {
        let scenario = on_chat(vec![chat("x", "chat", item_state)]);
        assert!(enabled(&session(scenario.clone()), "chat.x").contains(cap));
        let off = session_with(profile(Options::default(), &[switch]), scenario);
        assert!(!enabled(&off, "chat.x").contains(cap), "{switch:?}");
        assert!(
            !off.profile()
                .defined(TargetKind::OtherInteraction)
                .contains(cap)
        );
    }
}

#[test]
fn the_answer_switch_leaves_accept_alone() {
    let off = profile(Options::default(), &[Switch::Answer]);
    let s = session_with(off, on_chat(vec![chat("x", "chat", Offered)]));
    assert_eq!(
        caps(&s, "chat.x"),
        [
            "interaction.accept",
            "interaction.reject",
            "interaction.updateData",
        ]
    );
}

#[test]
fn recording_pause_off_keeps_start_and_stop() {
    let off = profile(Options::default(), &[Switch::RecordingPause]);
    let s = session_with(
        off,
        on_voice(vec![Interaction {
            recording: Recording::Paused,
            ..call("c1", "voice", Connected)
        }]),
    );
    let now = enabled(&s, "voice.c1");
    assert!(now.contains(Capability::RecordingStop));
    assert!(!now.contains(Capability::RecordingResume));
}

#[test]
fn all_switches_off_leave_the_unswitched_capabilities() {
    let off = profile(Options::default(), &Switch::ALL);
    assert_eq!(
        names(off.defined(TargetKind::VoiceInteraction)),
        [
            "interaction.release",
            "interaction.hold",
            "interaction.retrieve",
            "interaction.completeTransfer",
            "interaction.alternate",
            "interaction.updateData",
            "interaction.wrapUp",
            "interaction.complete",
        ]
    );
    assert_eq!(
        names(off.defined(TargetKind::OtherInteraction)),
        [
            "interaction.accept",
            "interaction.release",
            "interaction.updateData",
            "interaction.wrapUp",
            "interaction.complete",
        ]
    );
    assert_eq!(
        off.defined(TargetKind::Session),
        TargetKind::Session.catalogue()
    );
    assert_eq!(
        off.defined(TargetKind::VoiceChannel),
        TargetKind::VoiceChannel.catalogue()
    );
    let s = session_with(
        off,
        on_voice(vec![
            call("a", "voice", Held),
            call("b", "voice", Connected),
        ]),
    );
    assert_eq!(
        caps(&s, "voice.b"),
        [
            "interaction.release",
            "interaction.hold",
            "interaction.alternate",
            "interaction.updateData",
        ]
    );
}

#[test]
fn the_default_profile_defines_the_whole_catalogue() {
    let default = Profile::default();
    for kind in TargetKind::ALL {
        assert_eq!(default.defined(kind), kind.catalogue(), "{kind:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness

#[test]
fn as_many_legs_as_a_session_holds_on_one_channel_keep_the_tally_sound() {
    // As many legs as a session may hold, on one channel: the tally neither panics nor wraps.
    let half = crate::limits::MAX_INTERACTIONS / 2;
    let calls: Vec<Interaction> = (0..half)
        .map(|n| call(&format!("h{n}"), "voice", Held))
        .chain((0..half).map(|n| call(&format!("c{n}"), "voice", Connected)))
        .collect();
    assert_eq!(calls.len(), crate::limits::MAX_INTERACTIONS);
    let s = session(on_voice(calls));
    assert_eq!(
        caps(&s, "voice.h0"),
        ["interaction.release", "interaction.updateData"]
    );
    assert_eq!(
        caps(&s, "voice.c0"),
        [
            "interaction.release",
            "interaction.hold",
            "interaction.singleStepTransfer",
            "interaction.sendDtmf",
            "interaction.mute",
            "interaction.updateData",
            "interaction.recording.start",
        ]
    );
    assert_eq!(
        agent_caps(&s, "voice"),
        ["channel.ready", "channel.notReady"]
    );
}

#[test]
fn the_consult_switch_leaves_transfer_and_conference_of_independent_calls_alike() {
    let off = profile(Options::default(), &[Switch::Consult]);
    let s = session_with(
        off,
        on_voice(vec![
            call("a", "voice", Held),
            call("b", "voice", Connected),
        ]),
    );
    let held = enabled(&s, "voice.a");
    assert!(held.contains(Capability::CompleteTransfer));
    assert!(held.contains(Capability::CompleteConference));
    assert!(!enabled(&s, "voice.b").contains(Capability::Consult));
}

// ---------------------------------------------------------------------------------------------
// Pending work and after-call work on channels

#[test]
fn no_not_ready_while_work_is_offered_on_the_channel() {
    // Finesse non-voice: "An agent cannot change to NOT_READY state if the agent has a
    // pending incoming task" (anchors §2a, §3.1 rows 4 and 14).
    for agent in [Ready, Busy, NotReady, AfterCallWork] {
        let s = session(state(
            vec![chat_channel("chat", agent), voice("voice", Ready)],
            vec![chat("x", "chat", Offered)],
        ));
        assert!(
            !enabled(&s, "chat").contains(Capability::ChannelNotReady),
            "{agent:?}"
        );
        // The offer is on another channel: the voice channel may still go Not Ready.
        assert!(enabled(&s, "voice").contains(Capability::ChannelNotReady));
    }
    // Once accepted, Not Ready is back (as a pending request while busy).
    let s = session(on_chat(vec![chat("x", "chat", Active)]));
    assert!(enabled(&s, "chat").contains(Capability::ChannelNotReady));
    // Beside accepted chats, a new offer still holds it back.
    let s = session(on_chat(vec![
        chat("x", "chat", Active),
        chat("y", "chat", Offered),
    ]));
    assert_eq!(agent_caps(&s, "chat"), ["channel.ready"]);
}

#[test]
fn mandatory_disposition_keeps_the_agent_in_after_call_work() {
    let strict = Options {
        mandatory_disposition: true,
        ..Options::default()
    };
    let wrapped = |disposition: &str| {
        state(
            vec![voice("voice", AfterCallWork)],
            vec![Interaction {
                disposition: disposition.to_string(),
                ..call("c1", "voice", WrapUp)
            }],
        )
    };
    // Without the option the agent may leave after-call work at once (Finesse WORK → READY).
    let s = session(wrapped(""));
    assert_eq!(
        agent_caps(&s, "voice"),
        ["channel.ready", "channel.notReady", "channel.dial"]
    );
    assert_eq!(caps(&s, ""), ["session.logout"]);
    // With it, neither Ready, Not Ready nor logout until the disposition is set.
    let s = with_options(strict.clone(), wrapped(""));
    assert_eq!(agent_caps(&s, "voice"), ["channel.dial"]);
    assert_eq!(caps(&s, ""), [] as [&str; 0]);
    let s = with_options(strict.clone(), wrapped("sale"));
    assert_eq!(
        agent_caps(&s, "voice"),
        ["channel.ready", "channel.notReady", "channel.dial"]
    );
    assert_eq!(caps(&s, ""), ["session.logout"]);
    // Every wrapped-up interaction on the channel needs one.
    let s = with_options(
        strict,
        state(
            vec![voice("voice", AfterCallWork)],
            vec![
                Interaction {
                    disposition: "sale".into(),
                    ..call("c1", "voice", WrapUp)
                },
                call("c2", "voice", WrapUp),
            ],
        ),
    );
    assert_eq!(agent_caps(&s, "voice"), ["channel.dial"]);
}

// ---------------------------------------------------------------------------------------------
// Per-channel login and logout, pending state (issue 13, behaviours 1 and 8)

#[test]
fn channel_login_and_logout_act_on_one_channel() {
    // Finesse per-media sign-in: each channel logs in and out by itself.
    let s = session(state(
        vec![voice("voice", LoggedOut), chat_channel("chat", NotReady)],
        vec![],
    ));
    assert_eq!(caps(&s, "voice"), ["channel.login"]);
    assert_eq!(
        caps(&s, "chat"),
        ["channel.logout", "channel.ready", "channel.notReady"]
    );
    // The session actions stay all-channel: not every channel is logged out, so no login.
    assert_eq!(caps(&s, ""), ["session.logout"]);
}

#[test]
fn channel_logout_waits_for_the_channels_own_work_only() {
    let logout = |s: &Session, path: &str| enabled(s, path).contains(Capability::ChannelLogout);
    for (item, blocks) in [
        (chat("x", "chat", Offered), true),
        (chat("x", "chat", Active), true),
        (chat("x", "chat", Paused), true),
        (chat("x", "chat", WrapUp), false),
    ] {
        let what = format!("{:?}", item.state);
        let s = session(state(
            vec![voice("voice", Ready), chat_channel("chat", Busy)],
            vec![item],
        ));
        assert_eq!(logout(&s, "chat"), !blocks, "chat {what}");
        // The voice channel has no work of its own.
        assert!(logout(&s, "voice"), "voice beside a chat {what}");
    }
    let s = session(state(vec![chat_channel("chat", Reserved)], vec![]));
    assert!(!logout(&s, "chat"));
    let s = session(on_voice(vec![call("c1", "voice", Failed)]));
    assert!(!logout(&s, "voice"));
}

#[test]
fn channel_logout_follows_the_logout_options() {
    let strict = Options {
        logout_requires_not_ready: true,
        mandatory_disposition: true,
        ..Options::default()
    };
    let s = with_options(
        strict.clone(),
        state(
            vec![chat_channel("a", Ready), chat_channel("b", NotReady)],
            vec![],
        ),
    );
    assert!(!enabled(&s, "a").contains(Capability::ChannelLogout));
    assert!(enabled(&s, "b").contains(Capability::ChannelLogout));
    let s = with_options(
        strict,
        state(
            vec![chat_channel("b", NotReady)],
            vec![chat("x", "b", WrapUp)],
        ),
    );
    assert!(!enabled(&s, "b").contains(Capability::ChannelLogout));
}

#[test]
fn a_pending_state_can_be_cancelled() {
    // Finesse pending state, CSTA pendingAgentState, Amazon Connect next status: the agent
    // may take the request back before the work ends (anchors §3.1 #18).
    for pending in [None, Some(Pending::Ready), Some(Pending::NotReady)] {
        let mut channel = voice("voice", Busy);
        channel.pending = pending;
        let s = session(state(vec![channel], vec![call("c1", "voice", Connected)]));
        assert_eq!(
            enabled(&s, "voice").contains(Capability::ChannelCancelPending),
            pending.is_some(),
            "{pending:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Omnichannel capacity (behaviour 2)

#[test]
fn accept_waits_below_the_channel_capacity() {
    let chats = |capacity: u32, accepted: usize| {
        let mut items: Vec<Interaction> = (0..accepted)
            .map(|n| chat(["a", "b", "c", "d"][n], "chat", Active))
            .collect();
        items.push(chat("new", "chat", Offered));
        state(
            vec![crate::model::Channel {
                capacity,
                ..chat_channel("chat", Ready)
            }],
            items,
        )
    };
    for (capacity, accepted, accept) in [
        (3, 0, true),
        (3, 2, true),
        (3, 3, false),
        (1, 1, false),
        // Not reported: only the profile's cap (64 by default) applies.
        (0, 3, true),
    ] {
        let s = session(chats(capacity, accepted));
        assert_eq!(
            enabled(&s, "chat.new").contains(Capability::Accept),
            accept,
            "capacity {capacity}, {accepted} accepted"
        );
        // Reject stays: refusing never needs room.
        assert!(enabled(&s, "chat.new").contains(Capability::Reject));
    }
    // A paused chat still takes its place.
    let mut full = chats(2, 1);
    full.interactions.push(chat("p", "chat", Paused));
    assert!(!enabled(&session(full), "chat.new").contains(Capability::Accept));
}

#[test]
fn option_max_channel_capacity_caps_what_the_platform_reports() {
    let capped = Options {
        max_channel_capacity: 2,
        ..Options::default()
    };
    let chats = |capacity: u32| {
        state(
            vec![crate::model::Channel {
                capacity,
                ..chat_channel("chat", Ready)
            }],
            vec![
                chat("a", "chat", Active),
                chat("b", "chat", Active),
                chat("new", "chat", Offered),
            ],
        )
    };
    for capacity in [0, 3, 5] {
        let s = session(chats(capacity));
        assert_eq!(
            enabled(&s, "chat.new").contains(Capability::Accept),
            capacity == 0 || capacity > 2,
            "default cap, capacity {capacity}"
        );
        let s = with_options(capped.clone(), chats(capacity));
        assert!(
            !enabled(&s, "chat.new").contains(Capability::Accept),
            "cap 2, capacity {capacity}"
        );
    }
}

#[test]
fn capacity_does_not_apply_to_calls() {
    let s = session(state(
        vec![crate::model::Channel {
            capacity: 1,
            ..voice("voice", Busy)
        }],
        vec![
            call("c1", "voice", Connected),
            call("c2", "voice", Alerting),
        ],
    ));
    assert!(enabled(&s, "voice.c2").contains(Capability::Answer));
}

// ---------------------------------------------------------------------------------------------
// Pause and resume (behaviour 3)

#[test]
fn non_voice_work_pauses_and_resumes() {
    // Amazon Connect tasks and Finesse non-voice PAUSED (anchors §2a, §2c).
    let s = session(on_chat(vec![chat("x", "chat", Active)]));
    let active = enabled(&s, "chat.x");
    assert!(active.contains(Capability::Pause));
    assert!(!active.contains(Capability::Resume));
    let s = session(on_chat(vec![chat("x", "chat", Paused)]));
    let paused = enabled(&s, "chat.x");
    assert!(!paused.contains(Capability::Pause));
    assert!(paused.contains(Capability::Resume));
    // A paused task is still live work: no logout, no dialing.
    let s = session(state(
        vec![voice("voice", Ready), chat_channel("chat", Busy)],
        vec![chat("x", "chat", Paused)],
    ));
    assert_eq!(caps(&s, ""), [] as [&str; 0]);
    assert!(!enabled(&s, "voice").contains(Capability::ChannelDial));
    // Calls hold instead: no pause on a voice target.
    let events = session(on_voice(vec![call("c1", "voice", Connected)])).full_view();
    let call_event = events.iter().find(|e| e.target == "s1.voice.c1").unwrap();
    assert!(!call_event.defined.contains(Capability::Pause));
}

// ---------------------------------------------------------------------------------------------
// Consult intent, single-step conference and redirect (behaviour 4)

#[test]
fn the_consult_intent_decides_which_completion_is_offered() {
    // CSTA consultOptions (transferOnly, conferenceOnly, unrestricted) and Genesys
    // initiate-transfer versus initiate-conference (anchors §2b, §2d).
    use crate::model::ConsultIntent::*;
    for (intent, transfer, conference) in [
        (Unspecified, true, true),
        (Transfer, true, false),
        (Conference, false, true),
    ] {
        let s = session(on_voice(vec![
            call("c1", "voice", Held),
            Interaction {
                consult_intent: intent,
                ..consult("c2", "voice", Connected, "c1")
            },
        ]));
        let held = enabled(&s, "voice.c1");
        assert_eq!(
            held.contains(Capability::CompleteTransfer),
            transfer,
            "{intent:?}"
        );
        assert_eq!(
            held.contains(Capability::CompleteConference),
            conference,
            "{intent:?}"
        );
        // Alternate and reconnect do not depend on the intent.
        assert!(held.contains(Capability::Alternate), "{intent:?}");
        assert!(held.contains(Capability::Reconnect), "{intent:?}");
    }
    // After alternating, the held consult leg carries its own intent.
    let s = session(on_voice(vec![
        call("c1", "voice", Connected),
        Interaction {
            consult_intent: Transfer,
            ..consult("c2", "voice", Held, "c1")
        },
    ]));
    let held = enabled(&s, "voice.c2");
    assert!(held.contains(Capability::CompleteTransfer));
    assert!(!held.contains(Capability::CompleteConference));
}

#[test]
fn single_step_conference_needs_the_call_alone_and_room_for_one_more() {
    let with = |parties: u32, max: u32| {
        with_options(
            Options {
                max_conference_parties: max,
                ..Options::default()
            },
            on_voice(vec![Interaction {
                parties,
                ..call("c1", "voice", Connected)
            }]),
        )
    };
    for (parties, max, allowed) in [(2, 6, true), (5, 6, true), (6, 6, false), (2, 2, false)] {
        assert_eq!(
            enabled(&with(parties, max), "voice.c1").contains(Capability::SingleStepConference),
            allowed,
            "{parties} parties, max {max}"
        );
    }
    // Beside a held call it is a consultation's job.
    let s = session(on_voice(vec![
        call("a", "voice", Held),
        call("b", "voice", Connected),
    ]));
    assert!(!enabled(&s, "voice.b").contains(Capability::SingleStepConference));
    let s = session(on_voice(vec![call("c1", "voice", Held)]));
    assert!(!enabled(&s, "voice.c1").contains(Capability::SingleStepConference));
}

#[test]
fn redirect_deflects_only_an_alerting_call() {
    // CSTA Deflect Call and Genesys redirect (anchors §2b, §2d).
    for (call_state, allowed) in [
        (Alerting, true),
        (Dialing, false),
        (Connected, false),
        (Held, false),
        (Failed, false),
        (WrapUp, false),
    ] {
        let s = session(on_voice(vec![call("c1", "voice", call_state)]));
        assert_eq!(
            enabled(&s, "voice.c1").contains(Capability::Redirect),
            allowed,
            "{call_state:?}"
        );
    }
    let off = profile(Options::default(), &[Switch::Redirect]);
    let s = session_with(off, on_voice(vec![call("c1", "voice", Alerting)]));
    assert_eq!(
        caps(&s, "voice.c1"),
        [
            "interaction.answer",
            "interaction.reject",
            "interaction.updateData"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Participants (behaviour 5)

fn party(
    id: &str,
    role: crate::model::ParticipantRole,
    is_self: bool,
    controller: bool,
) -> crate::model::Participant {
    crate::model::Participant {
        id: id.to_string(),
        role,
        is_self,
        controller,
    }
}

fn conference(me_controls: bool, others: &[crate::model::ParticipantRole]) -> Interaction {
    use crate::model::ParticipantRole::*;
    let mut participants = vec![party("me", Agent, true, me_controls)];
    participants.extend(
        others
            .iter()
            .enumerate()
            .map(|(n, role)| party(&format!("p{n}"), *role, false, false)),
    );
    Interaction {
        participants,
        ..call("c1", "voice", Connected)
    }
}

#[test]
fn drop_participant_needs_someone_other_than_this_agent_to_drop() {
    use crate::model::ParticipantRole::*;
    for (others, allowed) in [
        (&[Customer, Consult][..], true),
        (&[Customer][..], false),
        // A supervisor listening in is not the agent's to drop.
        (&[Supervisor, Supervisor][..], false),
        (&[Customer, Supervisor][..], true),
    ] {
        let s = session(on_voice(vec![conference(false, others)]));
        assert_eq!(
            enabled(&s, "voice.c1").contains(Capability::DropParticipant),
            allowed,
            "{others:?}"
        );
    }
    // Listed participants win over the reported count.
    let listed = Interaction {
        parties: 5,
        ..conference(false, &[Customer])
    };
    let s = session(on_voice(vec![listed]));
    assert!(!enabled(&s, "voice.c1").contains(Capability::DropParticipant));
}

#[test]
fn option_drop_requires_controller() {
    use crate::model::ParticipantRole::*;
    let strict = Options {
        drop_requires_controller: true,
        ..Options::default()
    };
    let controller = with_options(
        strict.clone(),
        on_voice(vec![conference(true, &[Customer, Consult])]),
    );
    assert!(enabled(&controller, "voice.c1").contains(Capability::DropParticipant));
    let member = with_options(
        strict.clone(),
        on_voice(vec![conference(false, &[Customer, Consult])]),
    );
    assert!(!enabled(&member, "voice.c1").contains(Capability::DropParticipant));
    // A count alone does not say who controls the call.
    let counted = with_options(
        strict,
        on_voice(vec![Interaction {
            parties: 3,
            ..call("c1", "voice", Connected)
        }]),
    );
    assert!(!enabled(&counted, "voice.c1").contains(Capability::DropParticipant));
}

#[test]
fn the_context_names_the_participant_count() {
    use crate::model::ParticipantRole::*;
    let s = session(on_voice(vec![conference(true, &[Customer, Consult])]));
    let events = s.full_view();
    let call_event = events.iter().find(|e| e.target == "s1.voice.c1").unwrap();
    assert_eq!(call_event.context.participants, Some("3"));
    let s = session(on_voice(vec![call("c1", "voice", Connected)]));
    let events = s.full_view();
    let call_event = events.iter().find(|e| e.target == "s1.voice.c1").unwrap();
    assert_eq!(call_event.context.participants, Some("2"));
}

// ---------------------------------------------------------------------------------------------
// Supervisor functions (behaviour 6)

fn supervised(state: InteractionState, mode: crate::model::Supervision) -> Interaction {
    Interaction {
        supervision: mode,
        ..call("c1", "voice", state)
    }
}

#[test]
fn a_supervisor_moves_between_listen_in_coaching_and_barge_in() {
    // Genesys switch-to-listen-in / coaching / barge-in, Finesse SILENT_MONITOR and
    // BARGE_CALL, Amazon Connect silent_monitor and barge (anchors §2b, §2c, §4).
    use crate::model::Supervision::*;
    for (mode, expected) in [
        (Supervised, &["interaction.monitor"][..]),
        (
            Monitoring,
            &[
                "interaction.whisper",
                "interaction.barge",
                "interaction.stopMonitoring",
            ][..],
        ),
        (
            Whispering,
            &[
                "interaction.monitor",
                "interaction.barge",
                "interaction.stopMonitoring",
            ][..],
        ),
        (
            Barged,
            &[
                "interaction.monitor",
                "interaction.whisper",
                "interaction.stopMonitoring",
            ][..],
        ),
    ] {
        let s = session(on_voice(vec![supervised(Connected, mode)]));
        // Nothing of the agent's own call: the supervisor does not hold or transfer it.
        assert_eq!(caps(&s, "voice.c1"), expected, "{mode:?}");
    }
    // A call that is not up cannot be joined; a joined one can be left while it lasts.
    let s = session(on_voice(vec![supervised(Alerting, Supervised)]));
    assert_eq!(caps(&s, "voice.c1"), [] as [&str; 0]);
    let s = session(on_voice(vec![supervised(Dialing, Monitoring)]));
    assert_eq!(caps(&s, "voice.c1"), ["interaction.stopMonitoring"]);
    let s = session(on_voice(vec![supervised(WrapUp, Monitoring)]));
    assert_eq!(caps(&s, "voice.c1"), [] as [&str; 0]);
}

#[test]
fn a_watched_call_is_not_the_supervisors_work_and_a_joined_one_is() {
    use crate::model::Supervision::*;
    let s = session(state(
        vec![voice("voice", Ready)],
        vec![supervised(Connected, Supervised)],
    ));
    assert_eq!(caps(&s, ""), ["session.logout"]);
    assert!(enabled(&s, "voice").contains(Capability::ChannelDial));
    let s = session(state(
        vec![voice("voice", Ready)],
        vec![supervised(Connected, Monitoring)],
    ));
    assert_eq!(caps(&s, ""), [] as [&str; 0]);
    assert!(!enabled(&s, "voice").contains(Capability::ChannelDial));
    // A supervised call never forms a pair with the supervisor's own calls.
    let s = session(on_voice(vec![
        call("own", "voice", Held),
        Interaction {
            supervision: Supervised,
            ..call("watched", "voice", Connected)
        },
    ]));
    assert!(enabled(&s, "voice.own").contains(Capability::Retrieve));
    assert!(!enabled(&s, "voice.own").contains(Capability::CompleteTransfer));
}

#[test]
fn the_agent_sees_monitoring_only_where_the_profile_shows_it() {
    let monitored = || {
        on_voice(vec![Interaction {
            monitored: true,
            ..call("c1", "voice", Connected)
        }])
    };
    let flag = |s: &Session| {
        s.full_view()
            .into_iter()
            .find(|e| e.target == "s1.voice.c1")
            .unwrap()
            .context
            .monitored
    };
    assert!(!flag(&session(monitored())));
    let shown = Profile::new("shown", Options::default(), &[]).with_show_monitoring(true);
    assert!(flag(&session_with(shown, monitored())));
}

// ---------------------------------------------------------------------------------------------
// Outbound preview and callbacks (behaviour 7)

#[test]
fn a_preview_reservation_offers_accept_skip_and_reject_instead_of_answer() {
    // Finesse RESERVED_OUTBOUND_PREVIEW: the agent decides on the record before any call.
    let preview = Interaction {
        preview: true,
        direction: crate::model::Direction::Outbound,
        ..call("p1", "voice", Alerting)
    };
    let s = session(on_voice(vec![preview.clone()]));
    assert_eq!(
        caps(&s, "voice.p1"),
        [
            "interaction.updateData",
            "interaction.preview.accept",
            "interaction.preview.skip",
            "interaction.preview.reject"
        ]
    );
    // Accepted, the platform dials it: an ordinary outbound call from then on.
    let s = session(on_voice(vec![Interaction {
        state: Dialing,
        ..preview
    }]));
    assert_eq!(
        caps(&s, "voice.p1"),
        ["interaction.release", "interaction.updateData"]
    );
}

#[test]
fn a_scheduled_callback_is_called_rescheduled_or_cancelled_until_its_call_is_up() {
    use crate::model::Media;
    let choices = CapSet::of(&[
        Capability::CallbackCall,
        Capability::CallbackReschedule,
        Capability::CallbackCancel,
    ]);
    let with = |callback_state: InteractionState, call_state: Option<InteractionState>| {
        let mut items = vec![chat("cb1", "cb", callback_state)];
        if let Some(call_state) = call_state {
            items.push(Interaction {
                callback_of: Some(crate::testkit::id("cb1")),
                direction: crate::model::Direction::Outbound,
                ..call("c1", "voice", call_state)
            });
        }
        session(state(
            vec![
                voice("voice", Busy),
                crate::testkit::channel("cb", Media::Callback, Busy),
            ],
            items,
        ))
    };
    for (callback_state, call_state, open) in [
        (Offered, None, true),
        (Active, None, true),
        (Active, Some(Dialing), false),
        (Active, Some(Connected), false),
        (Active, Some(WrapUp), true),
        (Paused, None, false),
        (WrapUp, None, false),
    ] {
        let s = with(callback_state, call_state);
        assert_eq!(
            enabled(&s, "cb.cb1").intersect(choices),
            if open { choices } else { CapSet::EMPTY },
            "callback {callback_state:?}, call {call_state:?}"
        );
    }
    // A chat never has them, though its kind lists them.
    let s = session(on_chat(vec![chat("x", "chat", Active)]));
    assert!(enabled(&s, "chat.x").intersect(choices).is_empty());
    // The call names the callback it serves.
    let s = with(Active, Some(Connected));
    let events = s.full_view();
    let call_event = events.iter().find(|e| e.target == "s1.voice.c1").unwrap();
    assert_eq!(
        call_event.context.callback_of.as_ref().map(|c| c.as_str()),
        Some("cb1")
    );
}

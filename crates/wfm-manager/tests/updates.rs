//! CTI updates through a real manager: the inbound-call flow event by event, sequencing,
//! and every kind of bad input, over unary and streaming RPCs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use pb::AgentState as A;
use pb::InteractionState as I;
use tonic::Code;
use tonic_types::StatusExt as _;
use wfm_proto::v1 as pb;

#[tokio::test]
async fn an_inbound_call_through_answer_hold_consult_transfer_and_wrap_up() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let session = create(&mut client, "s1").await;
    let initial: Vec<String> = session.view_state.iter().map(render).collect();
    assert_eq!(initial, ["s1: session.login", "s1.voice: channel.login"]);
    assert_eq!(session.next_sequence, 1);

    let bind = pb::BindSessionRequest {
        resource_reference: session.resource_reference,
        takeover: false,
    };
    let mut events = client.bind_session(bind).await.unwrap().into_inner();
    assert_eq!(next_event(&mut events).await, "s1: session.login");
    assert_eq!(next_event(&mut events).await, "s1.voice: channel.login");

    let mut consult = call("c2", I::Dialing);
    consult.direction = pb::Direction::Consult.into();
    consult.consult_of = "c1".into();
    let steps: Vec<(pb::cti_update::Kind, Vec<&str>)> = vec![
        (
            agent(A::NotReady),
            vec![
                "s1: session.logout",
                "s1.voice: channel.logout channel.ready channel.notReady channel.dial",
            ],
        ),
        (
            agent(A::Ready),
            vec!["s1.voice: channel.logout channel.notReady channel.dial"],
        ),
        (
            created(call("c1", I::Alerting)),
            vec![
                "s1: ",
                // An offer holds back Not Ready (and dialing) on its channel.
                "s1.voice: ",
                "s1.voice.c1: interaction.answer interaction.reject interaction.redirect interaction.updateData",
            ],
        ),
        (agent(A::Busy), vec!["s1.voice: channel.ready"]),
        (
            changed("c1", I::Connected),
            vec![
                "s1.voice: channel.ready channel.notReady",
                "s1.voice.c1: interaction.release interaction.hold interaction.consult interaction.singleStepTransfer interaction.singleStepConference interaction.sendDtmf interaction.mute interaction.updateData interaction.recording.start",
            ],
        ),
        (
            changed("c1", I::Held),
            vec!["s1.voice.c1: interaction.release interaction.retrieve interaction.updateData"],
        ),
        (
            created(consult),
            vec![
                "s1.voice.c1: interaction.release interaction.retrieve interaction.reconnect interaction.updateData",
                "s1.voice.c2: interaction.release interaction.reconnect interaction.updateData",
            ],
        ),
        (
            changed("c2", I::Connected),
            vec![
                "s1.voice.c1: interaction.release interaction.completeTransfer interaction.completeConference interaction.alternate interaction.reconnect interaction.updateData",
                "s1.voice.c2: interaction.release interaction.hold interaction.alternate interaction.reconnect interaction.sendDtmf interaction.mute interaction.updateData interaction.recording.start",
            ],
        ),
        (
            changed("c2", I::Ended),
            vec![
                "s1.voice.c1: interaction.release interaction.retrieve interaction.updateData",
                "s1.voice.c2: ",
            ],
        ),
        (
            changed("c1", I::WrapUp),
            vec![
                "s1: session.logout",
                "s1.voice: channel.logout channel.ready channel.notReady channel.dial",
                "s1.voice.c1: interaction.updateData interaction.wrapUp interaction.complete",
            ],
        ),
        // after_call_work enables exactly what busy-without-calls did: no visible change.
        (agent(A::AfterCallWork), vec![]),
        (changed("c1", I::Ended), vec!["s1.voice.c1: "]),
    ];
    let mut view_version = 1;
    for (index, (kind, expected)) in steps.into_iter().enumerate() {
        let sequence = index as u64 + 1;
        let ack = client
            .apply_update(update("s1", sequence, kind))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (ack.sequence, ack.duplicate, ack.events as usize),
            (sequence, false, expected.len())
        );
        if !expected.is_empty() {
            view_version += 1;
        }
        assert_eq!(ack.view_version, view_version, "step {sequence}");
        for want in expected {
            assert_eq!(next_event(&mut events).await, want, "step {sequence}");
        }
    }
    assert_quiet(&mut events).await;

    let state = client
        .get_session(pb::GetSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.last_sequence, 12);
    assert!(state.bound);
    assert!(
        state.state.unwrap().interactions.is_empty(),
        "ended interactions are dropped"
    );
}

#[tokio::test]
async fn an_update_with_no_visible_effect_emits_nothing() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let session = create(&mut client, "quiet").await;
    let bind = pb::BindSessionRequest {
        resource_reference: session.resource_reference,
        takeover: false,
    };
    let mut events = client.bind_session(bind).await.unwrap().into_inner();
    next_event(&mut events).await;
    next_event(&mut events).await;

    client
        .apply_update(update("quiet", 1, agent(A::Ready)))
        .await
        .unwrap();
    client
        .apply_update(update("quiet", 2, created(call("c1", I::Connected))))
        .await
        .unwrap();
    for _ in 0..5 {
        next_event(&mut events).await;
    }
    let attach_data = pb::cti_update::Kind::InteractionChanged(pb::InteractionChange {
        interaction_id: "c1".into(),
        data: [("tier".to_string(), "gold".to_string())].into(),
        ..Default::default()
    });
    let ack = client
        .apply_update(update("quiet", 3, attach_data))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ack.events, ack.view_version), (0, 3));
    assert_quiet(&mut events).await;

    let state = client
        .get_session(pb::GetSessionRequest {
            session_id: "quiet".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state.state.unwrap().interactions[0]
            .data
            .get("tier")
            .map(String::as_str),
        Some("gold")
    );
}

#[tokio::test]
async fn sequencing_applies_the_next_acknowledges_repeats_and_refuses_gaps() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    create(&mut client, "seq").await;

    let ack = client
        .apply_update(update("seq", 1, agent(A::Ready)))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
    let repeat = client
        .apply_update(update("seq", 1, agent(A::NotReady)))
        .await
        .unwrap()
        .into_inner();
    assert!(repeat.duplicate, "a repeat is acknowledged");
    assert_eq!(repeat.view_version, ack.view_version, "and changes nothing");

    let gap = client
        .apply_update(update("seq", 5, agent(A::NotReady)))
        .await
        .unwrap_err();
    assert_eq!(gap.code(), Code::FailedPrecondition);
    assert_eq!(gap.message(), "sequence gap: expected 2, got 5");
    assert_eq!(gap.metadata().get("wfm-expected-sequence").unwrap(), "2");
    // The same number as a standard google.rpc.ErrorInfo detail, decoded by the client.
    let info = gap.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "SEQUENCE_GAP");
    assert_eq!(info.domain, "wfm.v1");
    assert_eq!(info.metadata["expected_sequence"], "2");

    // A snapshot resynchronises at any number and resets the sequence to it.
    let snapshot = pb::cti_update::Kind::Snapshot(pb::Snapshot {
        channels: vec![channel("voice", pb::Media::Voice, A::NotReady)],
        interactions: vec![],
    });
    client
        .apply_update(update("seq", 40, snapshot))
        .await
        .unwrap();
    client
        .apply_update(update("seq", 41, agent(A::Ready)))
        .await
        .unwrap();
    let state = client
        .get_session(pb::GetSessionRequest {
            session_id: "seq".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.last_sequence, 41);
    assert_eq!(state.state.unwrap().channels[0].state, i32::from(A::Ready));
}

fn changed_with(change: pb::InteractionChange) -> pb::cti_update::Kind {
    pb::cti_update::Kind::InteractionChanged(change)
}

#[tokio::test]
async fn every_bad_update_gets_a_precise_status_and_changes_nothing() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    create(&mut client, "bad").await;
    client
        .apply_update(update("bad", 1, created(call("c1", I::Alerting))))
        .await
        .unwrap();
    let before = client
        .get_session(pb::GetSessionRequest {
            session_id: "bad".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let mut dotted = call("c.2", I::Alerting);
    dotted.channel_id = "voice".into();
    let mut chat_state = call("c3", I::Offered);
    chat_state.channel_id = "voice".into();
    let mut unknown_channel = call("c4", I::Alerting);
    unknown_channel.channel_id = "fax".into();
    let mut no_direction = call("c5", I::Alerting);
    no_direction.direction = 0;
    let cases: Vec<(pb::ApplyUpdateRequest, Code, &str)> = vec![
        (
            update("nobody", 2, agent(A::Ready)),
            Code::NotFound,
            "unknown session nobody",
        ),
        (
            update("bad", 2, changed("ghost", I::Connected)),
            Code::NotFound,
            "unknown interaction ghost",
        ),
        (
            update("bad", 2, created(dotted)),
            Code::InvalidArgument,
            "invalid interaction id \"c.2\": contains '.', which separates target segments",
        ),
        (
            update("bad", 2, created(chat_state)),
            Code::InvalidArgument,
            "interaction c3: state offered does not apply to voice",
        ),
        (
            update("bad", 2, created(unknown_channel)),
            Code::NotFound,
            "unknown channel fax",
        ),
        (
            update("bad", 2, created(call("c1", I::Alerting))),
            Code::AlreadyExists,
            "interaction c1 already exists",
        ),
        (
            update("bad", 2, created(no_direction)),
            Code::InvalidArgument,
            "missing required field interaction.direction",
        ),
        (
            pb::ApplyUpdateRequest {
                session_id: "bad".into(),
                sequence: 2,
                update: None,
            },
            Code::InvalidArgument,
            "missing required field update",
        ),
        (
            update(
                "bad",
                2,
                pb::cti_update::Kind::Channel(channel("voice", pb::Media::Chat, A::Ready)),
            ),
            Code::InvalidArgument,
            "channel voice is voice, not chat",
        ),
        (
            update(
                "bad",
                2,
                pb::cti_update::Kind::Channel(pb::Channel {
                    capacity: 65,
                    ..channel("voice", pb::Media::Voice, A::Ready)
                }),
            ),
            Code::InvalidArgument,
            "too many concurrent interactions in a channel's capacity: at most 64",
        ),
        (
            update(
                "bad",
                2,
                changed_with(pb::InteractionChange {
                    interaction_id: "c1".into(),
                    consult_intent: Some(5),
                    ..Default::default()
                }),
            ),
            Code::InvalidArgument,
            "field interaction.consult_intent has unknown value 5",
        ),
    ];
    for (request, code, message) in cases {
        let status = client.apply_update(request).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (code, message));
    }
    let after = client
        .get_session(pb::GetSessionRequest {
            session_id: "bad".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before, "no refused update changed the session");
    // The refused sequence number is still free for a corrected update.
    client
        .apply_update(update("bad", 2, changed("c1", I::Connected)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_push_stream_survives_bad_updates_and_other_sessions_are_unaffected() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    create(&mut client, "p1").await;
    create(&mut client, "p2").await;

    let requests = vec![
        update("p1", 1, agent(A::Ready)),
        update("p1", 3, agent(A::NotReady)),
        update("p2", 1, changed("ghost", I::Held)),
        update("nobody", 1, agent(A::Ready)),
        update("p2", 1, agent(A::Ready)),
        update("p1", 2, agent(A::NotReady)),
        update("p1", 2, agent(A::NotReady)),
    ];
    let mut responses = client
        .push_updates(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut outcomes = Vec::new();
    while let Some(response) = next(&mut responses).await {
        outcomes.push(match response.result.unwrap() {
            pb::push_updates_response::Result::Ack(ack) => {
                format!(
                    "{} {} ack duplicate={}",
                    response.session_id, response.sequence, ack.duplicate
                )
            }
            pb::push_updates_response::Result::Error(e) => format!(
                "{} {} error {:?} expected={} {}",
                response.session_id,
                response.sequence,
                Code::from(e.code),
                e.expected_sequence,
                e.message
            ),
        });
    }
    assert_eq!(
        outcomes,
        [
            "p1 1 ack duplicate=false",
            "p1 3 error FailedPrecondition expected=2 sequence gap: expected 2, got 3",
            "p2 1 error NotFound expected=0 unknown interaction ghost",
            "nobody 1 error NotFound expected=0 unknown session nobody",
            "p2 1 ack duplicate=false",
            "p1 2 ack duplicate=false",
            "p1 2 ack duplicate=true",
        ]
    );
}

#[tokio::test]
async fn create_session_is_idempotent_per_agent_and_validates_its_input() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let first = create(&mut client, "dup").await;
    client
        .apply_update(update("dup", 1, agent(A::Ready)))
        .await
        .unwrap();
    let again = create(&mut client, "dup").await;
    assert_eq!(
        again.next_sequence, 2,
        "the existing session is returned, not reset"
    );
    assert!(!again.resource_reference.is_empty());
    assert_ne!(first.view_state, again.view_state);

    let other_agent = client
        .create_session(create_request("dup", "agent-2"))
        .await
        .unwrap_err();
    assert_eq!(other_agent.code(), Code::AlreadyExists);

    let mut no_channels = create_request("empty", "agent-1");
    no_channels.channels.clear();
    let mut bad_profile = create_request("prof", "agent-1");
    bad_profile.profile = "nope".into();
    let mut twice = create_request("twice", "agent-1");
    twice.channels.push(twice.channels[0].clone());
    for (request, code, message) in [
        (
            no_channels,
            Code::InvalidArgument,
            "a session needs at least one channel",
        ),
        (
            bad_profile,
            Code::InvalidArgument,
            "unknown profile \"nope\"",
        ),
        (
            twice,
            Code::InvalidArgument,
            "channel voice is listed twice",
        ),
        (
            create_request("", "agent-1"),
            Code::InvalidArgument,
            "invalid session id \"\": is empty",
        ),
    ] {
        let status = client.create_session(request).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (code, message));
    }
}

//! Every size a caller controls is capped with a clear INVALID_ARGUMENT (or OUT_OF_RANGE for
//! a message over the gRPC limit), quickly, and the session and the others keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Manager, agent, channel, create, create_request, update};
use tonic::Code;
use wfm_proto::v1 as pb;

#[tokio::test]
async fn an_oversized_id_is_refused_without_being_echoed() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let long = "x".repeat(10_000);
    let get = client
        .get_session(pb::GetSessionRequest {
            session_id: long.clone(),
        })
        .await
        .unwrap_err();
    let apply = client
        .apply_update(update(&long, 1, agent(pb::AgentState::Ready)))
        .await
        .unwrap_err();
    let end = client
        .end_session(pb::EndSessionRequest {
            session_id: long.clone(),
        })
        .await
        .unwrap_err();
    for status in [get, apply, end] {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("longer than 128 bytes"),
            "{status:?}"
        );
        assert!(status.message().len() < 400, "the id is not echoed whole");
    }
}

#[tokio::test]
async fn sequence_zero_and_the_largest_number_are_invalid_arguments() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    create(&mut client, "s1").await;
    for sequence in [0, u64::MAX] {
        let refused = client
            .apply_update(update("s1", sequence, agent(pb::AgentState::Ready)))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains("invalid sequence"),
            "{refused:?}"
        );
    }
    let ack = client
        .apply_update(update("s1", 1, agent(pb::AgentState::Ready)))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !ack.duplicate,
        "the refusals applied nothing, and 1 is still next"
    );
}

#[tokio::test]
async fn a_session_too_large_is_refused_and_the_others_keep_working() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    create(&mut client, "other").await;
    let mut huge = create_request("s1", "agent-1");
    huge.channels = (0..50_000)
        .map(|n| channel(&format!("c{n}"), pb::Media::Voice, pb::AgentState::Ready))
        .collect();
    let refused = client.create_session(huge).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(refused.message(), "too many channels: at most 32");

    client
        .apply_update(update(
            "other",
            1,
            common::created(common::call("c1", pb::InteractionState::Alerting)),
        ))
        .await
        .unwrap();
    let mut data = pb::InteractionChange {
        interaction_id: "c1".into(),
        ..Default::default()
    };
    data.data.insert("k".into(), "v".repeat(1_000_000));
    let refused = client
        .apply_update(update(
            "other",
            2,
            pb::cti_update::Kind::InteractionChanged(data),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    let ack = client
        .apply_update(update("other", 2, agent(pb::AgentState::Ready)))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
}

#[tokio::test]
async fn a_message_over_the_grpc_limit_is_refused_before_it_is_decoded() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let mut request = create_request("s1", "agent-1");
    request.profile = "p".repeat(wfm_manager::MAX_MESSAGE_BYTES + 1);
    let refused = client.create_session(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    create(&mut client, "s2").await;
    let metrics = manager.stats.registry().render();
    assert!(
        metrics.contains("wfm_manager_grpc_messages_too_large_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_oversized_message_ends_a_push_stream_with_out_of_range_not_ok() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    create(&mut client, "s1").await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut acks = client
        .push_updates(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(update("s1", 1, agent(pb::AgentState::Ready)))
        .unwrap();
    let first = acks.message().await.unwrap().expect("an ack");
    assert!(
        matches!(
            first.result,
            Some(pb::push_updates_response::Result::Ack(_))
        ),
        "{first:?}"
    );
    let mut oversized = update("s1", 2, agent(pb::AgentState::NotReady));
    oversized.session_id = "s".repeat(wfm_manager::MAX_MESSAGE_BYTES + 1);
    tx.send(oversized).unwrap();
    let ended = acks.message().await.unwrap_err();
    assert_eq!(ended.code(), Code::OutOfRange, "{ended:?}");
    let metrics = manager.stats.registry().render();
    assert!(
        metrics.contains("wfm_manager_grpc_messages_too_large_total 1"),
        "{metrics}"
    );
    // Nothing of the refused message was applied; the session goes on at sequence 2.
    let ack = client
        .apply_update(update("s1", 2, agent(pb::AgentState::NotReady)))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
}

#[tokio::test]
async fn calls_beyond_the_streams_per_connection_wait_for_a_free_stream() {
    let manager = Manager::start().await;
    let client = manager.client().await;
    let limit = wfm_manager::MAX_STREAMS_PER_CONNECTION as usize;
    // Every clone of a client shares its one HTTP/2 connection.
    let mut open = Vec::with_capacity(limit);
    for _ in 0..limit {
        open.push(common::attach(&mut client.clone()).await);
    }
    let metrics = manager.stats.registry().render();
    assert!(
        metrics.contains(&format!("wfm_manager_grpc_open_calls {limit}")),
        "{metrics}"
    );

    let mut waiting = client.clone();
    let mut call =
        Box::pin(async move { waiting.get_service_info(pb::GetServiceInfoRequest {}).await });
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut call).await;
    assert!(
        early.is_err(),
        "a call beyond the limit got a stream: {early:?}"
    );

    // Another connection is not held up by this one's limit.
    let mut other = manager.client().await;
    other
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .unwrap();

    drop(open.pop());
    let info = tokio::time::timeout(std::time::Duration::from_secs(10), call)
        .await
        .expect("the waiting call never got the freed stream");
    info.unwrap();
}

#[tokio::test]
async fn a_manager_creates_at_most_max_sessions_and_says_so() {
    let mut config = wfm_manager::ManagerConfig::new(
        wfm_reference::SigningKey::from_bytes(common::KEY).unwrap(),
    );
    config.max_sessions = 2;
    let manager = Manager::start_with(config).await;
    let mut client = manager.client().await;
    create(&mut client, "s1").await;
    create(&mut client, "s2").await;
    let refused = client
        .create_session(create_request("s3", "agent-1"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("maximum of 2 sessions"),
        "{refused:?}"
    );
    // Re-issuing an existing session is no new session.
    create(&mut client, "s1").await;
    client
        .end_session(pb::EndSessionRequest {
            session_id: "s2".into(),
        })
        .await
        .unwrap();
    create(&mut client, "s3").await;
    let metrics = manager.stats.registry().render();
    assert!(
        metrics.contains("wfm_manager_sessions_refused_total 1"),
        "{metrics}"
    );
}

//! Bindings through a real manager: the single binder, takeover, release on drop, the
//! multiplexed Attach stream, forged and expired references, health, reflection, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use pb::AgentState as A;
use tonic::Code;
use wfm_manager::ManagerConfig;
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;
use wfm_reference::SigningKey;

fn bind(reference: &str, takeover: bool) -> pb::BindSessionRequest {
    pb::BindSessionRequest {
        resource_reference: reference.into(),
        takeover,
    }
}

async fn unbound_reason(
    stream: &mut tonic::Streaming<pb::BindSessionResponse>,
) -> pb::UnboundReason {
    loop {
        match next(stream).await.and_then(|m| m.kind) {
            Some(pb::bind_session_response::Kind::Unbound(u)) => return u.reason(),
            Some(pb::bind_session_response::Kind::StateUpdated(_)) => continue,
            None => panic!("stream ended without an unbound notice"),
        }
    }
}

#[tokio::test]
async fn one_binder_at_a_time_and_takeover_replaces_it() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let reference = create(&mut client, "solo").await.resource_reference;

    let mut first = client
        .bind_session(bind(&reference, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut first).await, "solo: session.login");

    let refused = client
        .bind_session(bind(&reference, false))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "session is already bound to another client; bind with takeover to replace it"
    );

    let mut second = client
        .bind_session(bind(&reference, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unbound_reason(&mut first).await,
        pb::UnboundReason::TakenOver
    );
    assert!(next(&mut first).await.is_none(), "the replaced stream ends");
    assert_eq!(next_event(&mut second).await, "solo: session.login");
    assert_eq!(next_event(&mut second).await, "solo.voice: channel.login");

    client
        .apply_update(update("solo", 1, agent(A::Ready)))
        .await
        .unwrap();
    assert_eq!(next_event(&mut second).await, "solo: session.logout");
}

#[tokio::test]
async fn dropping_a_binding_stream_releases_the_session() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let reference = create(&mut client, "reload").await.resource_reference;
    let stream = client
        .bind_session(bind(&reference, false))
        .await
        .unwrap()
        .into_inner();
    drop(stream);

    // The server notices the reset asynchronously; a browser reload retries the same way.
    let mut rebound = None;
    for _ in 0..100 {
        match client.bind_session(bind(&reference, false)).await {
            Ok(stream) => {
                rebound = Some(stream.into_inner());
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rebound = rebound.expect("the binding was never released");
    assert_eq!(next_event(&mut rebound).await, "reload: session.login");
}

#[tokio::test]
async fn ending_a_session_unbinds_its_client() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let reference = create(&mut client, "bye").await.resource_reference;
    let mut stream = client
        .bind_session(bind(&reference, false))
        .await
        .unwrap()
        .into_inner();
    client
        .end_session(pb::EndSessionRequest {
            session_id: "bye".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        unbound_reason(&mut stream).await,
        pb::UnboundReason::SessionEnded
    );
    assert!(next(&mut stream).await.is_none());

    let gone = client
        .end_session(pb::EndSessionRequest {
            session_id: "bye".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let rebind = client
        .bind_session(bind(&reference, false))
        .await
        .unwrap_err();
    assert_eq!(
        (rebind.code(), rebind.message()),
        (Code::NotFound, "unknown session bye")
    );
}

#[tokio::test]
async fn forged_malformed_expired_and_other_session_references_bind_nothing() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let genuine = create(&mut client, "victim").await.resource_reference;

    let foreign_key = SigningKey::from_bytes(&[7u8; 32]).unwrap();
    let forged = foreign_key.issue("victim", "agent-1", 0, u64::MAX / 2);
    let tampered = genuine.replacen("v2.", "v2.x", 1);
    assert_ne!(tampered, genuine);
    for reference in [
        forged.as_str(),
        tampered.as_str(),
        "",
        "garbage",
        "v1.a.b.c.d",
    ] {
        let status = client
            .bind_session(bind(reference, false))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unauthenticated, "invalid session reference"),
            "{reference:?}"
        );
    }

    let expired = SigningKey::from_bytes(KEY)
        .unwrap()
        .issue("victim", "agent-1", 0, 1);
    let status = client
        .bind_session(bind(&expired, false))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "session reference has expired")
    );

    // The session id is reused by another agent: the old agent's reference must not bind it.
    client
        .end_session(pb::EndSessionRequest {
            session_id: "victim".into(),
        })
        .await
        .unwrap();
    client
        .create_session(create_request("victim", "agent-2"))
        .await
        .unwrap();
    let status = client
        .bind_session(bind(&genuine, false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let state = client
        .get_session(pb::GetSessionRequest {
            session_id: "victim".into(),
        })
        .await
        .unwrap();
    assert!(
        !state.into_inner().bound,
        "no refused reference left a binding behind"
    );
}

#[tokio::test]
async fn references_expire_after_the_configured_lifetime() {
    let mut config = ManagerConfig::new(SigningKey::from_bytes(KEY).unwrap());
    config.reference_ttl = Duration::ZERO;
    let manager = Manager::start_with(config).await;
    let mut client = manager.client().await;
    let reference = create(&mut client, "short").await.resource_reference;
    let status = client
        .bind_session(bind(&reference, false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn attach_next(stream: &mut tonic::Streaming<pb::AttachResponse>) -> (u64, Kind) {
    let message = next(stream).await.expect("attach stream ended");
    (
        message.binding_id,
        message.kind.expect("message without kind"),
    )
}

fn attach_bind(binding_id: u64, reference: &str, takeover: bool) -> pb::AttachRequest {
    pb::AttachRequest {
        kind: Some(pb::attach_request::Kind::Bind(pb::AttachBind {
            binding_id,
            resource_reference: reference.into(),
            takeover,
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn attach_multiplexes_bindings_and_shares_the_single_binder_rule() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let ref_a = create(&mut client, "a").await.resource_reference;
    let ref_b = create(&mut client, "b").await.resource_reference;

    let Attach {
        commands,
        mut stream,
        names,
    } = attach(&mut client).await;

    commands.send(attach_bind(1, &ref_a, false)).unwrap();
    let (id, kind) = attach_next(&mut stream).await;
    assert_eq!(id, 1);
    assert!(
        matches!(kind, Kind::BindResult(ref r) if r.code == 0 && r.session_id == "a"),
        "{kind:?}"
    );
    for want in ["a: session.login", "a.voice: channel.login"] {
        match attach_next(&mut stream).await {
            (1, Kind::State(state)) => assert_eq!(render_compact(&names, &state), want),
            other => panic!("{other:?}"),
        }
    }

    commands.send(attach_bind(2, &ref_b, false)).unwrap();
    commands.send(attach_bind(3, &ref_a, false)).unwrap();
    commands.send(attach_bind(4, "forged", false)).unwrap();
    let mut results = Vec::new();
    while results.len() < 3 {
        if let (id, Kind::BindResult(result)) = attach_next(&mut stream).await {
            results.push((id, Code::from(result.code)));
        }
    }
    assert_eq!(
        results,
        [
            (2, Code::Ok),
            (3, Code::FailedPrecondition),
            (4, Code::Unauthenticated)
        ]
    );

    client
        .apply_update(update("b", 1, agent(A::Ready)))
        .await
        .unwrap();
    let mut tagged = Vec::new();
    while tagged.len() < 2 {
        if let (id, Kind::State(state)) = attach_next(&mut stream).await {
            tagged.push((id, render_compact(&names, &state)));
        }
    }
    assert_eq!(
        tagged,
        [
            (2, "b: session.logout".to_string()),
            (
                2,
                "b.voice: channel.logout channel.notReady channel.dial".to_string()
            )
        ]
    );

    commands
        .send(pb::AttachRequest {
            kind: Some(pb::attach_request::Kind::Unbind(pb::AttachUnbind {
                binding_id: 2,
            })),
        })
        .unwrap();
    match attach_next(&mut stream).await {
        (2, Kind::Unbound(u)) => assert_eq!(u.reason(), pb::UnboundReason::Unbound),
        other => panic!("{other:?}"),
    }
    let state = client
        .get_session(pb::GetSessionRequest {
            session_id: "b".into(),
        })
        .await
        .unwrap();
    assert!(!state.into_inner().bound);

    // Closing the attach stream releases every binding it carried.
    drop(commands);
    drop(stream);
    let mut released = false;
    for _ in 0..100 {
        let state = client
            .get_session(pb::GetSessionRequest {
                session_id: "a".into(),
            })
            .await
            .unwrap();
        if !state.into_inner().bound {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        released,
        "closing the attach stream never released session a"
    );
}

#[tokio::test]
async fn shutdown_unbinds_clients_ends_streams_and_returns() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let reference = create(&mut client, "late").await.resource_reference;
    let mut stream = client
        .bind_session(bind(&reference, false))
        .await
        .unwrap()
        .into_inner();
    let Attach {
        commands: _commands,
        stream: mut attach,
        ..
    } = attach(&mut client).await;

    manager.shutdown.cancel();
    assert_eq!(
        unbound_reason(&mut stream).await,
        pb::UnboundReason::ShuttingDown
    );
    assert!(next(&mut stream).await.is_none());
    assert!(
        next(&mut attach).await.is_none(),
        "idle attach streams end too"
    );
    let served = tokio::time::timeout(Duration::from_secs(5), manager.task).await;
    assert!(
        matches!(served, Ok(Ok(Ok(())))),
        "serve did not return cleanly: {served:?}"
    );
}

#[tokio::test]
async fn service_info_health_and_reflection_answer() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let info = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.service_type, "WorkflowManager");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", manager.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "wfm.v1.WorkflowManager".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = next(&mut responses).await.unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"wfm.v1.WorkflowManager".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn an_attach_stream_of_another_wire_version_is_refused_with_the_versions_named() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let (_commands, rx) = tokio::sync::mpsc::unbounded_channel::<pb::AttachRequest>();
    let status = client
        .attach(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "this workflow manager speaks Attach wire version 2, the gateway sent no version \
         (wire 1, capabilities by name): upgrade the older of the two"
    );

    let (_commands, rx) = tokio::sync::mpsc::unbounded_channel::<pb::AttachRequest>();
    let mut request = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert(wfm_proto::ATTACH_WIRE_HEADER, "3".parse().unwrap());
    let status = client.attach(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains(r#"sent version "3""#),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_reference_to_an_ended_session_does_not_bind_its_successor() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let old = create(&mut client, "s1").await.resource_reference;
    client
        .end_session(pb::EndSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap();
    // The same id and the same agent again: a new session, with a new incarnation.
    let new = create(&mut client, "s1").await.resource_reference;
    assert_ne!(old, new);
    let refused = client.bind_session(bind(&old, false)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    assert_eq!(
        refused.message(),
        "session reference was issued for a session that has ended"
    );
    let mut stream = client
        .bind_session(bind(&new, false))
        .await
        .unwrap()
        .into_inner();
    assert!(next(&mut stream).await.is_some());
}

#[tokio::test]
async fn a_session_recreated_after_a_restart_resumes_its_references() {
    let first = Manager::start().await;
    let mut client = first.client().await;
    let created = create(&mut client, "s1").await;
    let ack = client
        .apply_update(update("s1", 1, agent(A::Ready)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.manager_instance, created.manager_instance);
    assert!(!created.manager_instance.is_empty());
    drop(client);
    first.shutdown.cancel();
    first.task.await.unwrap().unwrap();

    // Another process, same key: the IP sees another instance, so it knows the session is
    // lost and recreates it, resuming its reference.
    let second = Manager::start().await;
    let mut client = second.client().await;
    let mut other = create_request("s2", "agent-1");
    other.resume_reference = created.resource_reference.clone();
    let refused = client.create_session(other).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let mut again = create_request("s1", "agent-1");
    again.resume_reference = created.resource_reference.clone();
    let recreated = client.create_session(again).await.unwrap().into_inner();
    assert_ne!(recreated.manager_instance, created.manager_instance);
    let mut stream = client
        .bind_session(bind(&created.resource_reference, false))
        .await
        .unwrap()
        .into_inner();
    assert!(
        next(&mut stream).await.is_some(),
        "the old reference binds the recreated session"
    );
}

#[tokio::test]
async fn an_attach_stream_forgets_the_bindings_the_manager_ended() {
    let manager = Manager::start().await;
    let mut ip = manager.client().await;
    let mut gateway = manager.client().await;
    let Attach {
        commands,
        mut stream,
        ..
    } = attach(&mut gateway).await;
    const SESSIONS: u64 = 300;
    for n in 1..=SESSIONS {
        // One session after another through the same stream, each ended by the IP: the
        // gateway hears `Unbound(SESSION_ENDED)` and, rightly, sends no unbind back.
        let session = format!("s{n}");
        let reference = create(&mut ip, &session).await.resource_reference;
        commands
            .send(pb::AttachRequest {
                kind: Some(pb::attach_request::Kind::Bind(pb::AttachBind {
                    binding_id: n,
                    resource_reference: reference,
                    ..Default::default()
                })),
            })
            .unwrap();
        loop {
            let message = next(&mut stream).await.expect("attach stream ended");
            if message.binding_id == n && matches!(message.kind, Some(Kind::BindResult(_))) {
                break;
            }
        }
        ip.end_session(pb::EndSessionRequest {
            session_id: session,
        })
        .await
        .unwrap();
    }
    let held = wfm_telemetry::metrics::sample(
        &manager.stats.registry().render(),
        "wfm_manager_attach_bindings",
    )
    .expect("wfm_manager_attach_bindings on /metrics");
    assert!(
        (1.0..=64.0).contains(&held),
        "{held} bindings held for one live stream after {SESSIONS} ended sessions"
    );
    drop(commands);
    drop(stream);
}

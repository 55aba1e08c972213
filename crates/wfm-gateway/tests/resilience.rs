//! The gateway under stress and failure: a client that stops reading, a client that stops
//! answering pings, a manager restart, and the gateway's own graceful shutdown. Every frame
//! received is validated against the AsyncAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use pb::AgentState as A;
use pb::InteractionState as I;
use serde_json::Value;
use wfm_proto::v1 as pb;

#[tokio::test]
async fn a_client_that_stops_reading_gets_the_final_state_of_every_target() {
    let mut stack = Stack::start().await;
    let reference = stack.session("flood").await;
    // A small receive buffer makes the client a slow reader as soon as it stops reading.
    let mut ws = Ws::connect(stack.gateway.addr, Some(4096)).await;
    ws.bind("b", &reference, false).await;
    ws.events(2).await;

    let mut sequence = 0;
    let mut next = || {
        sequence += 1;
        sequence
    };
    stack.apply("flood", next(), agent(A::Ready)).await;
    let calls = ["c1", "c2", "c3"];
    for id in calls {
        stack
            .apply("flood", next(), created(call(id, I::Held)))
            .await;
    }
    // Thousands of updates while the client reads nothing: each call in turn is taken off
    // hold and put back, which changes its own buttons and those of its siblings.
    let mut produced = 0u64;
    for round in 0..3_000 {
        let id = calls[round % calls.len()];
        let state = if round % 2 == 0 {
            I::Connected
        } else {
            I::Held
        };
        let ack = stack
            .client
            .apply_update(update("flood", next(), changed(id, state)))
            .await
            .unwrap()
            .into_inner();
        produced += u64::from(ack.events);
    }
    stack
        .apply("flood", next(), changed("c2", I::Connected))
        .await;

    let view = stack
        .client
        .get_session(pb::GetSessionRequest {
            session_id: "flood".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .view_state;
    let expected: BTreeMap<String, Value> = view
        .iter()
        .map(|event| (event.target.clone(), expected_event(event)))
        .collect();
    assert_eq!(expected.len(), 5, "session, channel and three calls");

    // Now read everything: the last state seen for each target must be its final state.
    let mut latest = BTreeMap::new();
    let mut received = 0u64;
    while let Some(frame) = ws.frame_within(Duration::from_millis(500)).await {
        let Frame::Json(frame) = frame else {
            panic!("expected events, got {frame:?}");
        };
        let target = frame["event"]["target"].as_str().unwrap().to_string();
        latest.insert(target, frame);
        received += 1;
    }
    assert_eq!(latest, expected);
    // The kernel's socket buffers absorb some of the flood, the rest must have been
    // conflated while it waited.
    assert!(
        received < produced,
        "superseded states were not conflated: received {received} of {produced}"
    );
    eprintln!("conflation: {produced} events produced, {received} delivered");
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped_and_its_binding_released() {
    let mut stack = Stack::start_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.pong_timeout = Duration::from_millis(200);
    })
    .await;
    let reference = stack.session("zombie").await;
    let mut dead = stack.ws().await;
    dead.bind("b", &reference, false).await;
    dead.events(2).await;
    assert!(stack.is_bound("zombie").await);

    // `dead` reads nothing from here on, so it answers no ping.
    stack.wait_bound("zombie", false).await;
    let mut reloaded = stack.ws().await;
    assert_eq!(
        reloaded.bind("r", &reference, false).await,
        bound("r", "zombie")
    );
    assert_eq!(
        reloaded.events(2).await,
        ["zombie: session.login", "zombie.voice: channel.login"]
    );

    // A client that reads answers the pings and stays, across many ping intervals.
    assert!(
        reloaded
            .frame_within(Duration::from_millis(800))
            .await
            .is_none()
    );
    assert_eq!(
        reloaded.request("s", "getServices", None).await["result"],
        "success"
    );
    assert!(stack.is_bound("zombie").await);

    // The dropped client finds its connection gone, without a close handshake.
    match dead.frame_within(PATIENCE).await {
        Some(Frame::Ended) => {}
        other => panic!("expected the dropped connection to end, got {other:?}"),
    }
}

#[tokio::test]
async fn a_manager_restart_is_reported_and_the_gateway_rebinds_by_itself() {
    let Stack {
        manager,
        gateway,
        mut client,
    } = Stack::start().await;
    let reference = create(&mut client, "phoenix").await.resource_reference;
    client
        .apply_update(update("phoenix", 1, agent(A::Ready)))
        .await
        .unwrap();
    let mut ws = gateway.ws().await;
    ws.bind("b", &reference, false).await;
    assert_eq!(
        ws.events(2).await,
        [
            "phoenix: session.logout",
            "phoenix.voice: channel.logout channel.notReady channel.dial"
        ]
    );
    let mut idle = gateway.ws().await;

    let addr = manager.addr;
    manager.stop().await;
    assert_eq!(ws.recv().await, service_event(false));
    assert_eq!(idle.recv().await, service_event(false));
    gateway.wait_ready(503).await;

    // While it is down: binds fail, getServices says so.
    let mut late = gateway.ws().await;
    assert_eq!(
        late.bind("l", &reference, false).await,
        failure(
            "l",
            "bindResource",
            "serviceUnavailable",
            "the workflow manager is unavailable; retry after service.available"
        )
    );
    let services = late.request("s", "getServices", None).await;
    assert_eq!(services["data"]["services"][0]["status"], "unavailable");

    // The manager comes back on the same address; the Interaction Processor recreates the
    // session, in a state that differs from the one the client last saw.
    let manager = Manager::start_on(addr).await;
    let mut client = manager.client().await;
    let mut recreate = create_request("phoenix", "agent-1");
    recreate.channels[0].state = pb::AgentState::NotReady.into();
    // The IP tells the new manager which session this was, so that bound clients rebind.
    recreate.resume_reference = reference.clone();
    client.create_session(recreate).await.unwrap();

    assert_eq!(idle.recv().await, service_event(true));
    assert_eq!(late.recv().await, service_event(true));
    assert_eq!(ws.recv().await, service_event(true));
    assert_eq!(
        ws.events(2).await,
        [
            "phoenix: session.logout",
            "phoenix.voice: channel.logout channel.ready channel.notReady channel.dial"
        ]
    );
    gateway.wait_ready(200).await;

    // Events flow again on the new binding, and it is the session's only binder.
    client
        .apply_update(update("phoenix", 1, agent(A::Ready)))
        .await
        .unwrap();
    assert_eq!(
        ws.event().await,
        "phoenix.voice: channel.logout channel.notReady channel.dial"
    );
    assert_eq!(
        late.bind("l2", &reference, false).await["error"]["code"],
        "alreadyBound"
    );
}

#[tokio::test]
async fn a_rebind_that_finds_no_session_unbinds_the_client() {
    let Stack {
        manager,
        gateway,
        mut client,
    } = Stack::start_with(|c| c.rebind_grace = Duration::from_millis(300)).await;
    let reference = create(&mut client, "lost").await.resource_reference;
    let mut ws = gateway.ws().await;
    ws.bind("b", &reference, false).await;
    ws.events(2).await;

    let addr = manager.addr;
    manager.stop().await;
    assert_eq!(ws.recv().await, service_event(false));
    // Back, but nobody recreates the session within the grace period.
    let _manager = Manager::start_on(addr).await;
    assert_eq!(ws.recv().await, unbound_event("lost", "sessionEnded"));
    assert_eq!(ws.recv().await, service_event(true));
    assert_eq!(
        ws.request("u", "unbindResource", None).await["error"]["code"],
        "notBound"
    );
}

#[tokio::test]
async fn graceful_shutdown_tells_clients_and_closes_with_1001() {
    let Stack {
        manager: _manager,
        gateway,
        mut client,
    } = Stack::start().await;
    let reference = create(&mut client, "night").await.resource_reference;
    let mut bound_ws = gateway.ws().await;
    bound_ws.bind("b", &reference, false).await;
    bound_ws.events(2).await;
    let mut idle = gateway.ws().await;

    gateway.shutdown.cancel();
    assert_eq!(
        bound_ws.recv().await,
        unbound_event("night", "serverShutdown")
    );
    assert_eq!(
        bound_ws.expect_close().await,
        (1001, "server shutting down".to_string())
    );
    assert_eq!(
        idle.expect_close().await,
        (1001, "server shutting down".to_string())
    );
    tokio::time::timeout(PATIENCE, gateway.task)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
    wait_bound(&mut client, "night", false).await;
    assert_eq!(http_get(gateway.addr, "/healthz").await.0, 0);
}

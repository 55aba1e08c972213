//! The MediaBar protocol through a real gateway and a real manager: services, binding and the
//! initial state, an inbound call event by event, takeover, unbind, refused references, and
//! every kind of malformed input. Every frame received is validated against the AsyncAPI
//! document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use pb::AgentState as A;
use pb::InteractionState as I;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wfm_proto::v1 as pb;
use wfm_reference::SigningKey;

#[tokio::test]
async fn get_services_reports_the_workflow_manager_and_its_info() {
    let stack = Stack::start().await;
    let mut ws = stack.ws().await;
    let response = ws.request("1", "getServices", None).await;
    assert_eq!(
        response,
        success(
            "1",
            "getServices",
            json!({"services": [{
                "serviceId": "WorkflowManager",
                "serviceType": "WorkflowManager",
                "status": "available",
                "info": {"vendor": "wfm", "version": env!("CARGO_PKG_VERSION")},
            }]})
        )
    );
    assert_eq!(
        http_get(stack.gateway.addr, "/healthz").await,
        (200, "ok\n".into())
    );
    assert_eq!(
        http_get(stack.gateway.addr, "/readyz").await,
        (200, "ready\n".into())
    );
}

#[tokio::test]
async fn bind_answers_first_then_sends_the_full_view_state() {
    let mut stack = Stack::start().await;
    let created = create(&mut stack.client, "s1").await;
    let mut ws = stack.ws().await;
    assert_eq!(
        ws.bind("b", &created.resource_reference, false).await,
        bound("b", "s1")
    );
    // Exactly the spec's stateEvent, wrapped; catalogue order, every capability listed.
    assert_eq!(
        ws.recv().await,
        json!({"messageType": "resourceEvent", "serviceId": "WorkflowManager", "resourceId": "s1",
               "event": {"messageType": "stateEvent", "target": "s1", "name": "state.updated",
                         "context": {"state": "logged_out"},
                         "data": [{"name": "session.login", "type": "enabled"},
                                  {"name": "session.logout", "type": "disabled"}]}})
    );
    assert_eq!(
        ws.recv().await,
        json!({"messageType": "resourceEvent", "serviceId": "WorkflowManager", "resourceId": "s1",
               "event": {"messageType": "stateEvent", "target": "s1.voice", "name": "state.updated",
                         "context": {"media": "voice", "state": "logged_out"},
                         "data": [{"name": "channel.login", "type": "enabled"},
                                  {"name": "channel.logout", "type": "disabled"},
                                  {"name": "channel.ready", "type": "disabled"},
                                  {"name": "channel.notReady", "type": "disabled"},
                                  {"name": "channel.cancelPending", "type": "disabled"},
                                  {"name": "channel.extendWrapUp", "type": "disabled"},
                                  {"name": "channel.dial", "type": "disabled"}]}})
    );
    ws.assert_quiet().await;
    assert!(stack.is_bound("s1").await);

    // The same conversion holds for every target the manager reports.
    stack.apply("s1", 1, agent(A::Ready)).await;
    let view = stack
        .client
        .get_session(pb::GetSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .view_state;
    assert_eq!(ws.recv().await, expected_event(&view[0]));
    assert_eq!(ws.recv().await, expected_event(&view[1]));
}

#[tokio::test]
async fn an_inbound_call_through_answer_hold_consult_transfer_and_wrap_up() {
    let mut stack = Stack::start().await;
    let reference = stack.session("s1").await;
    let mut ws = stack.ws().await;
    ws.bind("b", &reference, false).await;
    assert_eq!(
        ws.events(2).await,
        ["s1: session.login", "s1.voice: channel.login"]
    );

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
        (changed("c1", I::Ended), vec!["s1.voice.c1: "]),
    ];
    for (index, (kind, expected)) in steps.into_iter().enumerate() {
        let sequence = index as u64 + 1;
        stack.apply("s1", sequence, kind).await;
        assert_eq!(ws.events(expected.len()).await, expected, "step {sequence}");
    }
    ws.assert_quiet().await;
}

#[tokio::test]
async fn a_change_with_no_visible_effect_sends_nothing() {
    let mut stack = Stack::start().await;
    let reference = stack.session("quiet").await;
    let mut ws = stack.ws().await;
    ws.bind("b", &reference, false).await;
    ws.events(2).await;
    stack.apply("quiet", 1, agent(A::Ready)).await;
    stack
        .apply("quiet", 2, created(call("c1", I::Connected)))
        .await;
    stack.apply("quiet", 3, agent(A::Busy)).await;
    stack.apply("quiet", 4, changed("c1", I::WrapUp)).await;
    assert_eq!(
        ws.events(6).await,
        [
            "quiet: session.logout",
            "quiet.voice: channel.logout channel.notReady channel.dial",
            "quiet: ",
            "quiet.voice: channel.notReady",
            "quiet.voice.c1: interaction.release interaction.hold interaction.consult interaction.singleStepTransfer interaction.singleStepConference interaction.sendDtmf interaction.mute interaction.updateData interaction.recording.start",
            "quiet.voice: channel.ready channel.notReady",
        ]
    );
    assert_eq!(
        ws.events(3).await,
        [
            "quiet: session.logout",
            "quiet.voice: channel.logout channel.ready channel.notReady channel.dial",
            "quiet.voice.c1: interaction.updateData interaction.wrapUp interaction.complete",
        ]
    );

    // After-call work enables exactly what busy-without-calls did.
    stack.apply("quiet", 5, agent(A::AfterCallWork)).await;
    ws.assert_quiet().await;
    // The next visible change is the next frame: nothing was sent in between.
    stack.apply("quiet", 6, changed("c1", I::Ended)).await;
    assert_eq!(ws.event().await, "quiet.voice.c1: ");
}

#[tokio::test]
async fn a_second_binder_is_refused_and_takeover_replaces_the_first() {
    let mut stack = Stack::start().await;
    let reference = stack.session("solo").await;
    let mut first = stack.ws().await;
    first.bind("1", &reference, false).await;
    first.events(2).await;

    let mut second = stack.ws().await;
    assert_eq!(
        second.bind("2", &reference, false).await,
        failure(
            "2",
            "bindResource",
            "alreadyBound",
            "session is bound to another client; bind with takeover to replace it"
        )
    );
    // The refused connection is still usable.
    let services = second.request("3", "getServices", None).await;
    assert_eq!(services["result"], "success");

    assert_eq!(second.bind("4", &reference, true).await, bound("4", "solo"));
    assert_eq!(first.recv().await, unbound_event("solo", "takenOver"));
    assert_eq!(
        second.events(2).await,
        ["solo: session.login", "solo.voice: channel.login"]
    );

    stack.apply("solo", 1, agent(A::Ready)).await;
    assert_eq!(
        second.events(2).await,
        [
            "solo: session.logout",
            "solo.voice: channel.logout channel.notReady channel.dial"
        ]
    );
    first.assert_quiet().await;
    assert_eq!(
        first.request("5", "unbindResource", None).await,
        failure(
            "5",
            "unbindResource",
            "notBound",
            "this connection is not bound to that resource"
        )
    );
}

#[tokio::test]
async fn unbind_releases_the_session_and_the_connection_can_bind_again() {
    let mut stack = Stack::start().await;
    let reference = stack.session("again").await;
    let mut ws = stack.ws().await;
    ws.bind("1", &reference, false).await;
    ws.events(2).await;

    assert_eq!(
        ws.bind("2", &reference, false).await,
        failure(
            "2",
            "bindResource",
            "alreadyBound",
            "this connection is already bound to a session; unbind it first"
        )
    );
    assert_eq!(
        ws.request(
            "3",
            "unbindResource",
            Some(json!({"serviceId": "WorkflowManager", "resourceId": "other"}))
        )
        .await,
        failure(
            "3",
            "unbindResource",
            "notBound",
            "this connection is not bound to that resource"
        )
    );
    assert_eq!(
        ws.request(
            "4",
            "unbindResource",
            Some(json!({"serviceId": "WorkflowManager", "resourceId": "again"}))
        )
        .await,
        success(
            "4",
            "unbindResource",
            json!({"serviceId": "WorkflowManager", "resourceId": "again"})
        )
    );
    stack.wait_bound("again", false).await;
    stack.apply("again", 1, agent(A::Ready)).await;
    ws.assert_quiet().await;

    assert_eq!(ws.bind("5", &reference, false).await, bound("5", "again"));
    assert_eq!(
        ws.events(2).await,
        [
            "again: session.logout",
            "again.voice: channel.logout channel.notReady channel.dial"
        ]
    );
    // Unbinding by the reference works as well as by the session id.
    let response = ws
        .request(
            "6",
            "unbindResource",
            Some(json!({"serviceId": "WorkflowManager", "resourceId": reference})),
        )
        .await;
    assert_eq!(response["result"], "success");
}

#[tokio::test]
async fn ending_the_session_unbinds_the_client() {
    let mut stack = Stack::start().await;
    let reference = stack.session("bye").await;
    let mut ws = stack.ws().await;
    ws.bind("1", &reference, false).await;
    ws.events(2).await;
    stack
        .client
        .end_session(pb::EndSessionRequest {
            session_id: "bye".into(),
        })
        .await
        .unwrap();
    assert_eq!(ws.recv().await, unbound_event("bye", "sessionEnded"));
    assert_eq!(
        ws.bind("2", &reference, false).await,
        failure("2", "bindResource", "sessionNotFound", "session not found")
    );
}

#[tokio::test]
async fn forged_expired_malformed_and_other_session_references_are_unauthorized() {
    let mut stack = Stack::start().await;
    let genuine = stack.session("victim").await;
    let mut ws = stack.ws().await;

    let forged =
        SigningKey::from_bytes(&[7u8; 32])
            .unwrap()
            .issue("victim", "agent-1", 0, u64::MAX / 2);
    let expired = SigningKey::from_bytes(KEY)
        .unwrap()
        .issue("victim", "agent-1", 0, 1);
    let tampered = genuine.replacen("v2.", "v2.x", 1);
    assert_ne!(tampered, genuine);
    let refused = failure(
        "r",
        "bindResource",
        "unauthorized",
        "invalid session reference",
    );
    for reference in [
        forged.as_str(),
        expired.as_str(),
        tampered.as_str(),
        "",
        "garbage",
    ] {
        assert_eq!(
            ws.bind("r", reference, false).await,
            refused,
            "{reference:?}"
        );
    }

    // The id is reused by another agent: the old agent's genuine reference must not bind it,
    // and the refusal reads exactly like a forgery.
    stack
        .client
        .end_session(pb::EndSessionRequest {
            session_id: "victim".into(),
        })
        .await
        .unwrap();
    stack
        .client
        .create_session(create_request("victim", "agent-2"))
        .await
        .unwrap();
    assert_eq!(ws.bind("r", &genuine, false).await, refused);
    assert!(!stack.is_bound("victim").await);
    // Still usable after all that.
    assert_eq!(
        ws.request("s", "getServices", None).await["result"],
        "success"
    );
}

/// Sends `input` and expects exactly `expected` back.
async fn exchange(ws: &mut Ws, input: &str, expected: Value) {
    ws.send_text(input).await;
    assert_eq!(ws.recv().await, expected, "for input {input:?}");
}

fn core_error(request_id: Option<&str>, code: &str, message: &str) -> Value {
    let mut error =
        json!({"messageType": "coreError", "error": {"code": code, "message": message}});
    if let Some(id) = request_id {
        error["requestId"] = json!(id);
    }
    error
}

#[tokio::test]
async fn malformed_input_gets_a_precise_error_and_the_connection_stays_open() {
    let mut stack = Stack::start().await;
    let reference = stack.session("calm").await;
    let mut bystander = stack.ws().await;
    bystander.bind("b", &reference, false).await;
    bystander.events(2).await;

    let mut ws = stack.ws().await;
    exchange(
        &mut ws,
        "hello",
        core_error(
            None,
            "invalidJson",
            "message is not valid JSON: expected value at line 1 column 1",
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest""#,
        core_error(
            None,
            "invalidJson",
            "message is not valid JSON: EOF while parsing an object at line 1 column 28",
        ),
    )
    .await;
    exchange(
        &mut ws,
        "[1,2]",
        core_error(None, "invalidMessage", "message must be a JSON object"),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"requestId":"1"}"#,
        core_error(None, "invalidMessage", "messageType is missing"),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":42}"#,
        core_error(None, "invalidMessage", "messageType must be a string"),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreShout","requestId":"1"}"#,
        core_error(
            None,
            "invalidMessage",
            r#"unknown messageType "coreShout"; clients send coreRequest or resourceRequest"#,
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","request":"getServices"}"#,
        core_error(None, "missingRequestId", "coreRequest needs a requestId"),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":7,"request":"getServices"}"#,
        core_error(
            None,
            "invalidMessage",
            "requestId must be a non-empty string of at most 128 characters",
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"8"}"#,
        core_error(
            Some("8"),
            "invalidMessage",
            "coreRequest needs a request name",
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"9","request":["getServices"]}"#,
        core_error(Some("9"), "invalidMessage", "request must be a string"),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"10","request":"makeCoffee"}"#,
        failure(
            "10",
            "makeCoffee",
            "unknownRequest",
            r#"unknown request "makeCoffee"; known requests are getServices, bindResource and unbindResource"#,
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"11","request":"bindResource","data":{"serviceId":"WorkflowManager"}}"#,
        failure(
            "11",
            "bindResource",
            "invalidRequest",
            "data.resourceId is required",
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"12","request":"bindResource","data":{"serviceId":"WorkflowManager","resourceId":42}}"#,
        failure(
            "12",
            "bindResource",
            "invalidRequest",
            "data.resourceId must be a string",
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"13","request":"bindResource","data":{"serviceId":"WorkflowManager","resourceId":"x","takeover":"yes"}}"#,
        failure(
            "13",
            "bindResource",
            "invalidRequest",
            "data.takeover must be a boolean",
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"14","request":"bindResource","data":"calm"}"#,
        failure(
            "14",
            "bindResource",
            "invalidRequest",
            "data must be an object",
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"15","request":"bindResource","data":{"resourceId":"x"}}"#,
        failure(
            "15",
            "bindResource",
            "invalidRequest",
            "data.serviceId is required",
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"16","request":"bindResource","data":{"serviceId":"Dialer","resourceId":"x"}}"#,
        failure(
            "16",
            "bindResource",
            "unknownService",
            r#"unknown service "Dialer"; this gateway serves WorkflowManager"#,
        ),
    )
    .await;
    exchange(
        &mut ws,
        r#"{"messageType":"coreRequest","requestId":"17","request":"unbindResource"}"#,
        failure(
            "17",
            "unbindResource",
            "notBound",
            "this connection is not bound to that resource",
        ),
    )
    .await;
    ws.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(
        ws.recv().await,
        core_error(
            None,
            "invalidMessage",
            "binary frames are not supported; send JSON in text frames"
        )
    );

    // Still open and working, and the other client never noticed.
    assert_eq!(
        ws.request("18", "getServices", None).await["result"],
        "success"
    );
    stack.apply("calm", 1, agent(A::Ready)).await;
    assert_eq!(
        bystander.events(2).await,
        [
            "calm: session.logout",
            "calm.voice: channel.logout channel.notReady channel.dial"
        ]
    );
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_an_oversized_frame_closes_with_1009() {
    let mut stack = Stack::start_with(|c| {
        c.max_message_size = 4096;
        c.max_frame_size = 8192;
    })
    .await;
    let reference = stack.session("big").await;
    let mut bystander = stack.ws().await;
    bystander.bind("b", &reference, false).await;
    bystander.events(2).await;

    let mut ws = stack.ws().await;
    // Just under the limit is only a request.
    let padded = format!(
        r#"{{"messageType":"coreRequest","requestId":"1","request":"getServices","data":{{"pad":"{}"}}}}"#,
        "x".repeat(3900)
    );
    ws.send_text(&padded).await;
    assert_eq!(ws.recv().await["result"], "success");

    // Over the message limit: refused, and the connection stays open.
    ws.send_text(&"x".repeat(5000)).await;
    assert_eq!(
        ws.recv().await,
        core_error(
            None,
            "messageTooLarge",
            "message exceeds the limit of 4096 bytes"
        )
    );
    assert_eq!(
        ws.request("2", "getServices", None).await["result"],
        "success"
    );

    // Over the frame limit: the reason, then a 1009 close.
    ws.send_text(&"x".repeat(10_000)).await;
    assert_eq!(
        ws.recv().await,
        core_error(
            None,
            "messageTooLarge",
            "frame exceeds the hard limit of 8192 bytes; closing the connection"
        )
    );
    assert_eq!(
        ws.expect_close().await,
        (
            1009,
            "messageTooLarge: frame exceeds the hard size limit".to_string()
        )
    );

    stack.apply("big", 1, agent(A::Ready)).await;
    assert_eq!(bystander.events(2).await[0], "big: session.logout");
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as RawFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let stack = Stack::start().await;
    let mut ws = stack.ws().await;
    let frame = RawFrame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(Data::Text), true);
    ws.send_raw(Message::Frame(frame)).await;
    assert_eq!(
        ws.expect_close().await,
        (1007, "text frame is not valid UTF-8".to_string())
    );
    // The gateway serves others as before.
    let mut other = stack.ws().await;
    assert_eq!(
        other.request("1", "getServices", None).await["result"],
        "success"
    );
}

#[tokio::test]
async fn requests_over_the_rate_limit_are_refused_and_the_connection_stays_open() {
    let stack = Stack::start_with(|c| {
        c.request_burst = 3;
        c.request_rate = 1;
    })
    .await;
    let mut ws = stack.ws().await;
    for id in ["1", "2", "3", "4"] {
        ws.send(json!({"messageType": "coreRequest", "requestId": id, "request": "getServices"}))
            .await;
    }
    for id in ["1", "2", "3"] {
        let response = ws.recv().await;
        assert_eq!(
            (response["requestId"].as_str(), response["result"].as_str()),
            (Some(id), Some("success"))
        );
    }
    assert_eq!(
        ws.recv().await,
        failure(
            "4",
            "getServices",
            "rateLimited",
            "request rate limit exceeded: 3 requests in a burst, then 1 per second"
        )
    );
    ws.send_text("not json").await;
    assert_eq!(
        ws.recv().await,
        core_error(
            None,
            "rateLimited",
            "request rate limit exceeded: 3 requests in a burst, then 1 per second"
        )
    );
    // The bucket refills; poll rather than assume how fast.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = ws.request("again", "getServices", None).await;
        if response["result"] == "success" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bucket never refilled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_idle_unbound_connection_is_closed_with_a_reason() {
    let stack = Stack::start_with(|c| c.idle_timeout = std::time::Duration::from_millis(200)).await;
    let mut ws = stack.ws().await;
    assert_eq!(
        ws.expect_close().await,
        (1008, "idle timeout: no binding and no request".to_string())
    );
}

#[test]
fn every_example_in_the_contract_matches_its_schema() {
    let document = contract_document();
    let messages = document["components"]["messages"].as_object().unwrap();
    let mut checked = 0;
    for (name, message) in messages {
        for example in message["examples"].as_array().unwrap() {
            let payload = &example["payload"];
            // What clients send; every other message is the gateway's.
            if name == "coreRequest" || name == "resourceRequest" {
                validate_client_message(payload);
            } else {
                validate_server_frame(payload);
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} examples");
}

//! MediaBar commands end to end: a WebSocket client's `resourceRequest` through the real
//! gateway and manager to a fake Interaction Processor on a real `ReceiveCommands` stream,
//! and every way a command can fail, each answered with its own code while the connection
//! and the session keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Client, Manager, PATIENCE, Ws, call, created, gateway_config, manager_config};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use wfm_proto::v1 as pb;

/// How the fake processor answers a command.
#[derive(Clone, Copy)]
enum Answer {
    Accept,
    Reject,
    Silent,
}

/// A fake Interaction Processor: one command stream, answering as told; every command it
/// receives is reported on `seen`.
struct Processor {
    answers: mpsc::Sender<pb::ProcessorMessage>,
    seen: mpsc::UnboundedReceiver<pb::Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Processor {
    async fn connect(client: &mut Client, id: &str, answer: Answer) -> Processor {
        let (tx, rx) = mpsc::channel(16);
        tx.send(hello(id)).await.unwrap();
        let mut commands = client
            .receive_commands(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let answers = tx.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(command)) = commands.next().await {
                let result = match answer {
                    Answer::Accept => Some(pb::CommandResult {
                        command_id: command.command_id,
                        accepted: true,
                        reason: String::new(),
                        data: HashMap::from([("platformId".into(), "op-7".into())]),
                    }),
                    Answer::Reject => Some(pb::CommandResult {
                        command_id: command.command_id,
                        accepted: false,
                        reason: "the switch is in night service".into(),
                        data: HashMap::new(),
                    }),
                    Answer::Silent => None,
                };
                let _ = seen_tx.send(command);
                if let Some(result) = result {
                    let message = pb::ProcessorMessage {
                        kind: Some(pb::processor_message::Kind::Result(result)),
                    };
                    if tx.send(message).await.is_err() {
                        break;
                    }
                }
            }
        });
        // The manager registers the stream once it has read the hello.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Processor {
            answers,
            seen,
            task,
        }
    }

    async fn next_command(&mut self) -> pb::Command {
        tokio::time::timeout(PATIENCE, self.seen.recv())
            .await
            .expect("the processor receives the command")
            .unwrap()
    }

    /// Drops the stream, as a processor that goes away does.
    fn disconnect(self) {
        self.task.abort();
        drop(self.answers);
    }
}

fn hello(id: &str) -> pb::ProcessorMessage {
    pb::ProcessorMessage {
        kind: Some(pb::processor_message::Kind::Hello(pb::ProcessorHello {
            processor_id: id.into(),
        })),
    }
}

/// A manager (commands time out after `timeout`), a gateway, and an alerting call in
/// session `s1` of processor `ip-1`, bound by a WebSocket client.
async fn stack(timeout: Duration) -> (Manager, common::Gateway, Client, Ws) {
    let mut config = manager_config();
    config.command_timeout = timeout;
    let manager = Manager::start_with(config).await;
    let mut client = manager.client().await;
    let gateway = common::Gateway::start(gateway_config(manager.addr)).await;
    gateway.wait_ready(200).await;
    let mut request = common::create_request("s1", "agent-1");
    request.processor_id = "ip-1".into();
    let reference = client
        .create_session(request)
        .await
        .unwrap()
        .into_inner()
        .resource_reference;
    client
        .apply_update(common::update(
            "s1",
            1,
            created(call("c1", pb::InteractionState::Alerting)),
        ))
        .await
        .unwrap();
    let mut ws = gateway.ws().await;
    ws.bind("b", &reference, false).await;
    drain_events(&mut ws).await;
    (manager, gateway, client, ws)
}

/// Reads state events until the connection is quiet.
async fn drain_events(ws: &mut Ws) {
    while let Some(common::Frame::Json(frame)) = ws.frame_within(Duration::from_millis(300)).await {
        assert_eq!(frame["messageType"], "resourceEvent", "{frame}");
    }
}

fn command(id: &str, resource: &str, request: &str, target: &str, arguments: Value) -> Value {
    json!({"messageType": "resourceRequest", "requestId": id, "serviceId": "InteractionProcessor",
           "resourceId": resource, "request": request,
           "data": {"target": target, "arguments": arguments}})
}

/// Sends `message` (unchecked against the contract: some are wrong on purpose) and
/// returns the answer to its request id, skipping state events.
async fn answer(ws: &mut Ws, message: Value) -> Value {
    let id = message["requestId"].clone();
    ws.send_text(&message.to_string()).await;
    loop {
        let frame = ws.recv().await;
        if frame["messageType"] == "resourceEvent" {
            continue;
        }
        assert_eq!(frame["requestId"], id, "{frame}");
        return frame;
    }
}

fn code(frame: &Value) -> &str {
    assert_eq!(frame["messageType"], "resourceError", "{frame}");
    frame["error"]["code"].as_str().unwrap()
}

#[tokio::test]
async fn an_enabled_command_reaches_the_processor_and_its_result_comes_back() {
    let (_manager, _gateway, mut client, mut ws) = stack(Duration::from_secs(5)).await;
    let mut processor = Processor::connect(&mut client, "ip-1", Answer::Accept).await;
    let reply = answer(
        &mut ws,
        command("1", "s1", "interaction.answer", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(reply["messageType"], "resourceResponse", "{reply}");
    assert_eq!(reply["serviceId"], "InteractionProcessor");
    assert_eq!(reply["resourceId"], "s1");
    assert_eq!(reply["request"], "interaction.answer");
    assert_eq!(reply["data"]["platformId"], "op-7");
    let sent = processor.next_command().await;
    assert_eq!(
        (
            sent.session_id.as_str(),
            sent.target.as_str(),
            sent.capability.as_str()
        ),
        ("s1", "s1.voice.c1", "interaction.answer")
    );
    assert_eq!(sent.deadline_ms, 5_000);

    // Arguments travel as given.
    let reply = answer(
        &mut ws,
        command(
            "2",
            "s1",
            "channel.login",
            "s1.voice",
            json!({"reason": "start of shift"}),
        ),
    )
    .await;
    assert_eq!(reply["messageType"], "resourceResponse", "{reply}");
    let sent = processor.next_command().await;
    assert_eq!(
        sent.arguments.get("reason").map(String::as_str),
        Some("start of shift")
    );
}

#[tokio::test]
async fn a_disabled_command_is_refused_with_the_view_state_and_never_reaches_the_processor() {
    let (_manager, _gateway, mut client, mut ws) = stack(Duration::from_secs(5)).await;
    let mut processor = Processor::connect(&mut client, "ip-1", Answer::Accept).await;
    let reply = answer(
        &mut ws,
        command("1", "s1", "interaction.hold", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(code(&reply), "capabilityDisabled");
    let view = &reply["data"];
    assert_eq!(view["target"], "s1.voice.c1");
    assert_eq!(view["context"]["state"], "alerting");
    let hold = view["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "interaction.hold")
        .expect("the view lists hold");
    assert_eq!(hold["type"], "disabled");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), processor.seen.recv())
            .await
            .is_err(),
        "a refused command must not reach the processor"
    );
}

#[tokio::test]
async fn bad_commands_get_their_own_codes_and_the_binding_keeps_working() {
    let (_manager, _gateway, mut client, mut ws) = stack(Duration::from_secs(5)).await;
    let _processor = Processor::connect(&mut client, "ip-1", Answer::Accept).await;
    let cases = [
        (
            command("1", "s1", "interaction.answer", "s1.voice.nope", json!({})),
            "unknownTarget",
        ),
        (
            command(
                "2",
                "s1",
                "interaction.makeCoffee",
                "s1.voice.c1",
                json!({}),
            ),
            "unknownCapability",
        ),
        (
            command("3", "s2", "interaction.answer", "s2.voice.c1", json!({})),
            "notBound",
        ),
        (
            command(
                "4",
                "s1",
                "interaction.answer",
                "s1.voice.c1",
                json!({"n": 1}),
            ),
            "invalidRequest",
        ),
        (
            json!({"messageType": "resourceRequest", "requestId": "5", "serviceId": "InteractionProcessor",
                   "resourceId": "s1", "request": "interaction.answer", "data": {}}),
            "invalidRequest",
        ),
        (
            json!({"messageType": "resourceRequest", "requestId": "6", "serviceId": "WorkflowManager",
                   "resourceId": "s1", "request": "interaction.answer", "data": {"target": "s1.voice.c1"}}),
            "unknownService",
        ),
        (
            command(
                "7",
                "s1",
                "interaction.answer",
                "s1.voice.c1",
                json!({"k": "x".repeat(1025)}),
            ),
            "invalidRequest",
        ),
    ];
    for (message, expected) in cases {
        let reply = answer(&mut ws, message.clone()).await;
        assert_eq!(code(&reply), expected, "{message} → {reply}");
        assert!(!reply["error"]["message"].as_str().unwrap().is_empty());
    }
    let reply = answer(
        &mut ws,
        command("8", "s1", "interaction.answer", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(reply["messageType"], "resourceResponse", "{reply}");
}

#[tokio::test]
async fn a_refusal_quotes_a_long_name_or_target_cut_and_never_grows_with_the_frame() {
    let (_manager, _gateway, _client, mut ws) = stack(Duration::from_secs(5)).await;
    let long = "x".repeat(8000);
    let reply = answer(&mut ws, command("1", "s1", &long, "s1.voice.c1", json!({}))).await;
    assert_eq!(code(&reply), "unknownCapability");
    assert_eq!(reply["request"].as_str().unwrap().len(), 64);
    assert!(
        reply.to_string().len() < 1024,
        "{} bytes",
        reply.to_string().len()
    );
    let reply = answer(
        &mut ws,
        command(
            "2",
            "s1",
            "interaction.hold",
            &format!("s1.{long}"),
            json!({}),
        ),
    )
    .await;
    assert_eq!(code(&reply), "unknownTarget");
    assert!(
        reply.to_string().len() < 1024,
        "{} bytes",
        reply.to_string().len()
    );
}

#[tokio::test]
async fn a_command_before_binding_is_not_bound() {
    let (_manager, gateway, _client, _ws) = stack(Duration::from_secs(5)).await;
    let mut other = gateway.ws().await;
    let reply = answer(
        &mut other,
        command("1", "s1", "interaction.answer", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(code(&reply), "notBound");
}

#[tokio::test]
async fn a_refusal_carries_the_processors_reason() {
    let (_manager, _gateway, mut client, mut ws) = stack(Duration::from_secs(5)).await;
    let _processor = Processor::connect(&mut client, "ip-1", Answer::Reject).await;
    let reply = answer(
        &mut ws,
        command("1", "s1", "interaction.answer", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(code(&reply), "rejected");
    assert_eq!(reply["error"]["message"], "the switch is in night service");
}

#[tokio::test]
async fn without_a_processor_or_an_answer_commands_fail_and_are_not_replayed() {
    let (_manager, _gateway, mut client, mut ws) = stack(Duration::from_millis(400)).await;
    let reply = answer(
        &mut ws,
        command("1", "s1", "interaction.answer", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(code(&reply), "processorUnavailable");

    let mut silent = Processor::connect(&mut client, "ip-1", Answer::Silent).await;
    let reply = answer(
        &mut ws,
        command("2", "s1", "interaction.answer", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(code(&reply), "timeout");
    silent.next_command().await;

    // A pending command fails when its processor's stream drops...
    ws.send(command(
        "3",
        "s1",
        "interaction.answer",
        "s1.voice.c1",
        json!({}),
    ))
    .await;
    silent.next_command().await;
    silent.disconnect();
    let reply = ws.recv().await;
    assert_eq!(reply["requestId"], "3");
    assert_eq!(code(&reply), "processorUnavailable");

    // ...and the next stream of the same processor is not sent it again.
    let mut next = Processor::connect(&mut client, "ip-1", Answer::Accept).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next.seen.recv())
            .await
            .is_err(),
        "a failed command must not be replayed"
    );
    let reply = answer(
        &mut ws,
        command("4", "s1", "interaction.answer", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(reply["messageType"], "resourceResponse", "{reply}");
}

#[tokio::test]
async fn a_command_stream_must_name_a_valid_processor_first() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let result = |message: Option<pb::ProcessorMessage>| {
        let mut client = client.clone();
        async move {
            let (tx, rx) = mpsc::channel(1);
            if let Some(message) = message {
                tx.send(message).await.unwrap();
            }
            drop(tx);
            client
                .receive_commands(ReceiverStream::new(rx))
                .await
                .map(|_| ())
        }
    };
    for bad in ["", "a.b", "ip 1", &"x".repeat(129)] {
        let status = result(Some(hello(bad))).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert!(status.message().contains("processor_id"), "{status}");
    }
    let answer_first = pb::ProcessorMessage {
        kind: Some(pb::processor_message::Kind::Result(
            pb::CommandResult::default(),
        )),
    };
    let status = result(Some(answer_first)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("hello"), "{status}");

    let mut request = common::create_request("s9", "agent-9");
    request.processor_id = "bad.id".into();
    let status = client.create_session(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn in_a_cluster_a_command_reaches_the_processor_connected_to_another_replica() {
    let nats = common::nats::Nats::start().await;
    let owner = Manager::start_clustered(&nats.url, "node-a").await;
    let other = Manager::start_clustered(&nats.url, "node-b").await;
    let mut at_owner = owner.client().await;
    let mut at_other = other.client().await;
    let mut request = common::create_request("s1", "agent-1");
    request.processor_id = "ip-1".into();
    let reference = at_owner
        .create_session(request)
        .await
        .unwrap()
        .into_inner()
        .resource_reference;
    at_owner
        .apply_update(common::update(
            "s1",
            1,
            created(call("c1", pb::InteractionState::Alerting)),
        ))
        .await
        .unwrap();
    // The processor's stream is at the replica that does not own its session.
    let mut processor = Processor::connect(&mut at_other, "ip-1", Answer::Accept).await;
    let gateway = common::Gateway::start(gateway_config(owner.addr)).await;
    gateway.wait_ready(200).await;
    let mut ws = gateway.ws().await;
    ws.bind("b", &reference, false).await;
    drain_events(&mut ws).await;

    let reply = answer(
        &mut ws,
        command("1", "s1", "interaction.answer", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(reply["messageType"], "resourceResponse", "{reply}");
    assert_eq!(reply["data"]["platformId"], "op-7");
    let sent = processor.next_command().await;
    assert_eq!(
        (sent.session_id.as_str(), sent.capability.as_str()),
        ("s1", "interaction.answer")
    );

    // The owner still checks the view first: a disabled command never crosses the cluster.
    let reply = answer(
        &mut ws,
        command("2", "s1", "interaction.retrieve", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(code(&reply), "capabilityDisabled");

    // With the processor gone from every replica, the owner says so.
    processor.disconnect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = answer(
        &mut ws,
        command("3", "s1", "interaction.answer", "s1.voice.c1", json!({})),
    )
    .await;
    assert_eq!(code(&reply), "processorUnavailable");
    drop(nats);
}

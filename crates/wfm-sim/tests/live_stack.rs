//! The simulator against a real in-process stack: a scenario that matches passes, one that
//! does not fails with a diff naming the file, line and capabilities; load mode counts every
//! update's frame.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_sim::load::{self, LoadOptions};
use wfm_sim::run::{self, RunError, Target};
use wfm_sim::scenario;
use wfm_sim::stack::{Stack, StackOptions};

async fn stack() -> Stack {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    Stack::start(StackOptions {
        manager: loopback,
        gateway: loopback,
        profiles: None,
        profile_text: None,
        demo: None,
    })
    .await
    .unwrap()
}

const SCENARIO: &str = r#"
[[channels]]
id = "voice"
media = "voice"
state = "ready"

[[steps]]
create = { id = "c1", channel = "voice", direction = "inbound", state = "alerting" }
expect = { "voice.c1" = ["interaction.answer", "interaction.reject", "interaction.redirect", "interaction.updateData"] }
"#;

#[tokio::test]
async fn a_matching_scenario_passes_and_a_wrong_expectation_fails_with_a_diff() {
    let stack = stack().await;
    let manager = WorkflowManagerClient::connect(stack.manager_url.clone())
        .await
        .unwrap();
    let gateway = stack.mediabar_url();
    let target = |session_id| Target {
        manager: manager.clone().into(),
        gateway: Some(&gateway),
        session_id,
        agent_id: "a",
        pace: 0.0,
        announce: false,
    };

    let good = scenario::parse("good.toml", SCENARIO).unwrap();
    let outcome = run::play(&good, target("good")).await.unwrap();
    assert_eq!((outcome.updates, outcome.checkpoints), (1, 1));

    let wrong = SCENARIO.replace("\"interaction.answer\", ", "\"interaction.hold\", ");
    let bad = scenario::parse("bad.toml", &wrong).unwrap();
    let error = run::play(&bad, target("bad")).await.unwrap_err();
    assert!(
        matches!(error, RunError::Mismatch { line: 7, .. }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "bad.toml:7: view state differs after the step\n  voice.c1:\n    - expected enabled, got disabled: interaction.hold\n    + enabled, expected disabled: interaction.answer"
    );
    stack.stop().await;
}

#[tokio::test]
async fn load_mode_receives_one_frame_per_update() {
    let stack = stack().await;
    let manager = WorkflowManagerClient::connect(stack.manager_url.clone())
        .await
        .unwrap();
    let options = LoadOptions {
        sessions: 20,
        rate: 200,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        push_streams: 2,
        progress: false,
    };
    let report = load::run(manager, &stack.mediabar_url(), &options)
        .await
        .unwrap();
    assert!(report.updates > 0);
    assert_eq!(report.errors, 0);
    assert_eq!(report.missing, 0, "{report:?}");
    assert!(report.latency_us.p50 > 0 && report.latency_us.p50 <= report.latency_us.p99);
    stack.stop().await;
}

#[tokio::test]
async fn load_mode_repairs_a_gap_with_a_snapshot_and_recreates_a_lost_session() {
    let stack = stack().await;
    let mut manager = WorkflowManagerClient::connect(stack.manager_url.clone())
        .await
        .unwrap();
    let pipeline = load::Pipeline::setup(manager.clone(), &stack.mediabar_url(), 4, 1, false)
        .await
        .unwrap();
    let generator = pipeline.generator();
    let (gapped, lost) = (
        generator.session_id(0).unwrap().to_string(),
        generator.session_id(1).unwrap().to_string(),
    );
    let schedule = load::Schedule {
        rate: 200,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(1500),
        progress: false,
    };
    let measuring = generator.measure(&schedule);
    let meddling = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Another party resets one session's sequence, as a replica restored from an older
        // persisted state would, and ends another, as a cluster that lost it would.
        let snapshot = manager
            .get_session(wfm_proto::v1::GetSessionRequest {
                session_id: gapped.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .state;
        manager
            .apply_update(wfm_proto::v1::ApplyUpdateRequest {
                session_id: gapped.clone(),
                sequence: 1,
                update: Some(wfm_proto::v1::CtiUpdate {
                    kind: Some(wfm_proto::v1::cti_update::Kind::Snapshot(
                        snapshot.unwrap_or_default(),
                    )),
                }),
            })
            .await
            .unwrap();
        manager
            .end_session(wfm_proto::v1::EndSessionRequest {
                session_id: lost.clone(),
            })
            .await
            .unwrap();
    };
    let (report, ()) = tokio::join!(measuring, meddling);
    assert!(report.resyncs >= 1, "{report:?}");
    assert_eq!(report.recreations, 1, "{report:?}");
    for session_id in [&gapped, &lost] {
        let session = manager
            .get_session(wfm_proto::v1::GetSessionRequest {
                session_id: session_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(session.last_sequence > 1, "{session_id}: {session:?}");
    }
    drop(pipeline);
    stack.stop().await;
}

/// A demo agent driven from a MediaBar: the platform carries out each command, and the ACD
/// offers the Ready agent a call it can answer. The replay is off, so every change seen is
/// the platform's.
#[tokio::test]
async fn a_driven_demo_agent_carries_out_commands_and_is_offered_a_call_when_ready() {
    use std::collections::BTreeMap;
    use wfm_sim::mediabar::{CommandAnswer, MediaBarClient};
    use wfm_sim::processor::{self, Routes};

    let stack = stack().await;
    let grpc = WorkflowManagerClient::connect(stack.manager_url.clone())
        .await
        .unwrap();
    let manager = wfm_sim::resilient::Manager::from(grpc);
    let (agent, session) = wfm_sim::demo::create(&manager, 1).await.unwrap();
    let routes = Routes::default();
    let commands = routes.add(&agent.session_id);
    let serving = tokio::spawn(processor::serve(
        manager.clone(),
        wfm_sim::demo::PROCESSOR_ID.into(),
        routes.clone(),
    ));
    let playing = tokio::spawn(wfm_sim::demo::play(session, &[], 0, false, commands));
    tokio::time::timeout(Duration::from_secs(10), routes.opened())
        .await
        .unwrap();
    let mut client = MediaBarClient::connect(&stack.mediabar_url())
        .await
        .unwrap();
    client.bind(&agent.reference, false).await.unwrap();
    let none = BTreeMap::new();
    let execute = async |client: &mut MediaBarClient, target: &str, capability: &str| {
        let answer = client.execute(target, capability, &none).await.unwrap();
        assert!(
            matches!(answer, CommandAnswer::Accepted(_)),
            "{capability}: {answer:?}"
        );
    };
    let expect = |target: &str, enabled: &[&str]| {
        BTreeMap::from([(
            target.to_string(),
            enabled.iter().map(ToString::to_string).collect::<Vec<_>>(),
        )])
    };
    let settled = async |client: &mut MediaBarClient, expected: BTreeMap<String, Vec<String>>| {
        let differences = client
            .settle(&expected, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(differences.is_empty(), "{differences:?}");
    };

    execute(&mut client, "", "session.login").await;
    settled(
        &mut client,
        expect(
            "voice",
            &[
                "channel.logout",
                "channel.ready",
                "channel.notReady",
                "channel.dial",
            ],
        ),
    )
    .await;
    execute(&mut client, "voice", "channel.ready").await;
    // The ACD routes a call to the idle Ready agent.
    settled(
        &mut client,
        expect(
            "voice.call1",
            &[
                "interaction.answer",
                "interaction.reject",
                "interaction.redirect",
                "interaction.updateData",
            ],
        ),
    )
    .await;
    execute(&mut client, "voice.call1", "interaction.answer").await;
    settled(
        &mut client,
        expect(
            "voice.call1",
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
    )
    .await;
    // What the platform cannot do comes back as rejected, with its reason.
    let answer = client
        .execute("voice.call1", "interaction.consult", &none)
        .await
        .unwrap();
    let CommandAnswer::Refused { code, message } = answer else {
        panic!("a consult without a destination is accepted: {answer:?}");
    };
    assert_eq!(code, "rejected");
    assert!(message.contains("needs a destination"), "{message}");
    serving.abort();
    playing.abort();
}

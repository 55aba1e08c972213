//! SIGTERM to a real `wfm manager` process: health turns NOT_SERVING first, then binders
//! are told SHUTTING_DOWN and their streams end, and the process exits within its grace.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The manager's own fixtures: one definition of the test key and the wire builders.
#[path = "../../wfm-manager/tests/common/mod.rs"]
mod common;
mod process;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use process::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

async fn health(endpoint: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: "wfm.v1.WorkflowManager".into(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_health_not_serving_then_unbinds_then_exits_within_grace() {
    let (port, metrics_port) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{port}");
    let drain = Duration::from_millis(1_500);
    let child = wfm("manager")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .args(["--drain-delay-ms", &drain.as_millis().to_string()])
        .args(["--shutdown-grace-secs", "5"])
        .env("WFM_SIGNING_KEY", std::str::from_utf8(KEY).unwrap())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start wfm manager");
    let mut child = Reaper(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&endpoint).await != Some(ServingStatus::Serving) {
        assert!(Instant::now() < deadline, "the manager never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = WorkflowManagerClient::connect(endpoint.clone())
        .await
        .unwrap();
    let reference = create(&mut client, "term").await.resource_reference;
    let mut stream = client
        .bind_session(pb::BindSessionRequest {
            resource_reference: reference,
            takeover: false,
        })
        .await
        .unwrap()
        .into_inner();
    next_event(&mut stream).await;
    next_event(&mut stream).await;

    let signalled = Instant::now();
    child.terminate();

    // 1. Readiness (gRPC health) goes false while the binder has been told nothing.
    let deadline = signalled + drain;
    while health(&endpoint).await != Some(ServingStatus::NotServing) {
        assert!(
            Instant::now() < deadline,
            "health did not turn NOT_SERVING before the drain delay ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 2. Then the binder is told, and its stream ends.
    let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an unbound notice")
        .unwrap();
    assert!(
        signalled.elapsed() >= drain,
        "the binder was told before the drain delay"
    );
    match message.and_then(|m| m.kind) {
        Some(pb::bind_session_response::Kind::Unbound(unbound)) => {
            assert_eq!(unbound.reason(), pb::UnboundReason::ShuttingDown);
        }
        other => panic!("expected an unbound notice, got {other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    // 3. The process exits within its grace period, successfully.
    let deadline = signalled + Duration::from_secs(5);
    let exit = child.exit_by(deadline, "manager").await;
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn a_bad_setting_stops_the_process_with_one_line_naming_it() {
    assert_eq!(
        refusal(wfm("manager").args(["--reference-ttl-secs", "5"])),
        "error: invalid setting --reference-ttl-secs (WFM_REFERENCE_TTL_SECS, \
         `reference_ttl_secs` in the config file) = \"5\": must be at least 60"
    );
    let config = std::env::temp_dir().join(format!("wfm-manager-{}.toml", std::process::id()));
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n").unwrap();
    let stderr = refusal(wfm("manager").arg("--config").arg(&config));
    let _ = std::fs::remove_file(&config);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("unknown setting `listen_adress`; allowed: listen, "),
        "{stderr}"
    );
}

#[test]
fn cluster_settings_that_cannot_work_are_refused_before_anything_starts() {
    let key = "0123456789abcdef0123456789abcdef-cluster";
    let cluster = |extra: &[&str]| {
        let mut command = wfm("manager");
        command
            .env_remove("WFM_SIGNING_KEY")
            .args(["--nats-url", "nats://127.0.0.1:1"])
            .args(extra);
        refusal(&mut command)
    };
    let ephemeral = cluster(&["--node-id", "a"]);
    assert!(
        ephemeral.contains("--signing-key")
            && ephemeral.contains("an ephemeral one is refused in cluster mode"),
        "{ephemeral}"
    );
    let wildcard = cluster(&[
        "--signing-key",
        key,
        "--node-id",
        "a",
        "--listen",
        "0.0.0.0:50051",
        "--insecure-plaintext",
    ]);
    assert!(
        wildcard.contains("--advertise-url") && wildcard.contains("is a wildcard"),
        "{wildcard}"
    );
    let dotted = cluster(&["--signing-key", key, "--node-id", "host.example.com"]);
    assert!(
        dotted.contains("--node-id") && dotted.contains("letters, digits"),
        "{dotted}"
    );
    let replicas = cluster(&[
        "--signing-key",
        key,
        "--node-id",
        "a",
        "--nats-replicas",
        "7",
    ]);
    assert!(replicas.contains("--nats-replicas"), "{replicas}");
}

#[test]
fn published_and_weak_signing_keys_are_refused_with_one_line() {
    let file = std::env::temp_dir().join(format!("wfm-placeholder-{}", std::process::id()));
    std::fs::write(&file, format!("{}\n", wfm_reference::PLACEHOLDER_KEYS[1])).unwrap();
    for service in ["manager", "gateway"] {
        let demo = refusal(
            wfm(service)
                .env_remove("WFM_SIGNING_KEY")
                .arg("--signing-key-file")
                .arg(&file),
        );
        assert_eq!(demo.lines().count(), 1, "{demo}");
        assert!(
            demo.contains("--signing-key-file")
                && demo.contains("placeholder published in this repository"),
            "{demo}"
        );
        let repetitive = refusal(
            wfm(service)
                .env_remove("WFM_SIGNING_KEY")
                .args(["--signing-key", &"ab".repeat(20)]),
        );
        assert!(repetitive.contains("too repetitive"), "{repetitive}");
        assert!(
            !repetitive.contains("abab"),
            "the key is not echoed: {repetitive}"
        );
    }
    let _ = std::fs::remove_file(&file);
}

//! Profiles in a running manager: selection by name and agent group, and hot reload of the
//! profile file, both a valid new version and a refused one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use pb::InteractionState as I;
use wfm_manager::ManagerConfig;
use wfm_profiles::ProfileSet;
use wfm_proto::v1 as pb;
use wfm_reference::SigningKey;

const BEFORE: &str = r#"
[groups]
vip-desk = "vip"
[profiles.vip]
options = { reject_alerting = true }
"#;

const AFTER: &str = r#"
[groups]
vip-desk = "vip"
[profiles.vip]
[[profiles.vip.rules]]
name = "no-vip-blind-transfer"
capability = "interaction.singleStepTransfer"
when = 'interaction.data.tier == "vip"'
"#;

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("wfm-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(path: &Path, poll: Duration) -> Manager {
    let mut config = ManagerConfig::new(SigningKey::from_bytes(KEY).unwrap());
    config.profiles = ProfileSet::load(path).unwrap();
    config.profiles_path = Some(path.to_path_buf());
    config.profiles_poll = poll;
    Manager::start_with(config).await
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..250 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A vip call, connected, in a session of the vip-desk group; returns its binding stream.
async fn vip_session(client: &mut Client) -> tonic::Streaming<pb::BindSessionResponse> {
    let mut request = create_request("s1", "agent-1");
    request.agent_group = "vip-desk".into();
    let mut vip = call("c1", I::Connected);
    vip.data.insert("tier".into(), "vip".into());
    request.interactions.push(vip);
    let reference = client
        .create_session(request)
        .await
        .unwrap()
        .into_inner()
        .resource_reference;
    let session = client
        .get_session(pb::GetSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        session.into_inner().profile,
        "vip",
        "chosen by the agent's group"
    );
    let bind = pb::BindSessionRequest {
        resource_reference: reference,
        takeover: false,
    };
    let mut events = client.bind_session(bind).await.unwrap().into_inner();
    for _ in 0..3 {
        next_event(&mut events).await;
    }
    events
}

#[tokio::test]
async fn a_valid_new_file_applies_to_live_sessions_and_an_invalid_one_is_refused() {
    let path = temp_file("reload", BEFORE);
    let manager = start(&path, Duration::from_millis(20)).await;
    let stats = std::sync::Arc::clone(&manager.stats);
    let mut client = manager.client().await;
    let mut events = vip_session(&mut client).await;

    std::fs::write(&path, AFTER).unwrap();
    assert_eq!(
        next_event(&mut events).await,
        "s1.voice.c1: interaction.release interaction.hold interaction.consult interaction.singleStepConference interaction.sendDtmf interaction.mute interaction.updateData interaction.recording.start",
        "only the vip call changes: blind transfer is gone"
    );
    assert_quiet(&mut events).await;
    assert_eq!(stats.profile_reloads(), 1);

    std::fs::write(&path, "[profiles.vip]\nswitches = { teleport = false }\n").unwrap();
    eventually("the refused reload to be counted", || {
        stats.profile_reload_failures() == 1
    })
    .await;
    assert_quiet(&mut events).await;
    let state = client
        .get_session(pb::GetSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let transfer = state.view_state[2]
        .capabilities
        .iter()
        .find(|c| c.name == "interaction.singleStepTransfer");
    assert_eq!(
        transfer.map(|c| c.enabled),
        Some(false),
        "the previous profiles stay in force"
    );

    let mut unknown = create_request("s2", "agent-2");
    unknown.profile = "nope".into();
    let status = client.create_session(unknown).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::InvalidArgument, "unknown profile \"nope\"")
    );
    std::fs::remove_file(&path).ok();
}

#[tokio::test]
async fn sighup_reloads_the_profile_file() {
    let path = temp_file("sighup", BEFORE);
    let manager = start(&path, Duration::from_secs(3600)).await;
    let stats = std::sync::Arc::clone(&manager.stats);
    let mut client = manager.client().await;
    let mut events = vip_session(&mut client).await;
    // Let the watcher take its first look and install its handler before the file changes.
    tokio::time::sleep(Duration::from_millis(200)).await;

    std::fs::write(&path, AFTER).unwrap();
    assert_quiet(&mut events).await;
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(next_event(&mut events).await.starts_with("s1.voice.c1: "));
    assert_eq!(stats.profile_reloads(), 1);
    std::fs::remove_file(&path).ok();
}

const TIMED: &str = r#"
default = "timed"
[profiles.timed]
[[profiles.timed.rules]]
name = "trainees-stay-logged-in"
capability = "session.logout"
when = 'session.agent_group == "trainees"'
[[profiles.timed.rules]]
name = "ready-a-second-stays-ready"
capability = "channel.notReady"
when = 'channel.state == "ready" && channel.state_secs >= 1'
"#;

#[tokio::test]
async fn rules_read_the_agents_group_and_the_time_in_state_and_the_clock_alone_fires_them() {
    let path = temp_file("timed", TIMED);
    let manager = start(&path, Duration::from_secs(3600)).await;
    let mut client = manager.client().await;
    let created = |session: &str, group: &str| {
        let mut request = create_request(session, "agent-1");
        request.channels[0].state = pb::AgentState::Ready.into();
        request.agent_group = group.into();
        request
    };
    let reference = client
        .create_session(created("s1", "trainees"))
        .await
        .unwrap()
        .into_inner()
        .resource_reference;
    let bind = pb::BindSessionRequest {
        resource_reference: reference,
        takeover: false,
    };
    let mut events = client.bind_session(bind).await.unwrap().into_inner();
    let session = next_event(&mut events).await;
    assert!(!session.contains("session.logout"), "{session}");
    let ready = next_event(&mut events).await;
    assert!(ready.contains("channel.notReady"), "{ready}");
    // No update is sent: the session's own deadline recomputes it after a second in Ready.
    let after = next_event(&mut events).await;
    assert!(after.starts_with("s1.voice:"), "{after}");
    assert!(!after.contains("channel.notReady"), "{after}");
    assert_quiet(&mut events).await;

    client
        .create_session(created("s3", "seniors"))
        .await
        .unwrap();
    let senior = client
        .get_session(pb::GetSessionRequest {
            session_id: "s3".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let logout = senior.view_state[0]
        .capabilities
        .iter()
        .find(|c| c.name == "session.logout");
    assert_eq!(
        logout.map(|c| c.enabled),
        Some(true),
        "only trainees are held"
    );

    let long = "g".repeat(129);
    let status = client
        .create_session(created("s2", &long))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("agent group"),
        "{}",
        status.message()
    );
    std::fs::remove_file(&path).ok();
}

//! The `wfm` binary as an administrator runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tokio_util::sync::CancellationToken;
use wfm_proto::v1 as pb;

fn wfm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wfm"))
        .args(args)
        .output()
        .unwrap()
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .display()
        .to_string()
}

fn temp(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("wfm-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_shipped_example() {
    let out = wfm(&["profile", "check", &repo("profiles/example.toml")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .ends_with("ok (8 profiles: acw-timeboxed, controller-drops, default, email-desk, no-recording, standard, vip, wrap-up-strict)\n")
    );
}

#[test]
fn check_prints_every_problem_and_fails() {
    let bad = temp(
        "bad.toml",
        "[profiles.a]\nextends = \"a\"\n[[profiles.b.rules]]\nname = \"r\"\ncapability = \"interaction.hold\"\nwhen = 'agent.skill == 1'\n",
    );
    let out = wfm(&["profile", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let origin = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{origin}:2:11: extends cycle: a -> a")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{origin}:6:9: in `when`: unknown variable `agent.skill`"
        )),
        "{stderr}"
    );
}

const VIP_CONNECTED: &str = r#"
session_id = "s9"
[[channels]]
id = "voice"
media = "voice"
state = "busy"
[[interactions]]
id = "c1"
channel = "voice"
direction = "inbound"
state = "connected"
data = { tier = "vip" }
[[channels]]
id = "chat"
media = "chat"
state = "reserved"
[[interactions]]
id = "x"
channel = "chat"
direction = "inbound"
state = "offered"
"#;

const PROFILES: &str = r#"
[profiles.strict]
options = { reject_alerting = false }
switches = { recording = false }
[[profiles.strict.rules]]
name = "no-vip-blind-transfer"
capability = "interaction.singleStepTransfer"
when = 'interaction.data.tier == "vip"'
"#;

fn line<'a>(output: &'a str, capability: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.contains(&format!(" {capability} ")))
        .unwrap_or_else(|| panic!("no {capability} in {output}"))
}

#[test]
fn explain_says_which_rule_switch_or_option_decided() {
    let snapshot = temp("vip.toml", VIP_CONNECTED);
    let profiles = temp("strict.toml", PROFILES);
    let out = wfm(&[
        "profile",
        "explain",
        "--profiles",
        profiles.to_str().unwrap(),
        "--profile",
        "strict",
        "--snapshot",
        snapshot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("profile strict\n"));
    assert!(
        stdout.contains("s9.voice.c1  (voice interaction: voice, connected, inbound, 2 parties)"),
        "{stdout}"
    );
    let transfer = line(&stdout, "interaction.singleStepTransfer");
    assert!(
        transfer.starts_with("  disabled interaction.singleStepTransfer"),
        "{transfer}"
    );
    assert!(
        transfer
            .ends_with("custom rule \"no-vip-blind-transfer\": interaction.data.tier == \"vip\""),
        "{transfer}"
    );
    let reject = stdout
        .lines()
        .filter(|l| l.contains(" interaction.reject "))
        .nth(1)
        .unwrap();
    assert!(
        reject.starts_with("  disabled") && reject.ends_with("option reject_alerting forbids it"),
        "{reject}"
    );
    assert!(
        line(&stdout, "interaction.recording.start")
            .starts_with("  absent   interaction.recording.start")
    );
    assert!(line(&stdout, "interaction.recording.start").ends_with("switch recording is off"));
    assert!(line(&stdout, "interaction.hold").contains("enabled  "));
    assert!(line(&stdout, "interaction.answer").contains("state rule needs: the call is alerting"));
}

#[test]
fn explain_refuses_a_bad_snapshot_with_the_reason() {
    let snapshot = temp(
        "badstate.toml",
        &VIP_CONNECTED.replace("state = \"connected\"", "state = \"chatting\""),
    );
    let out = wfm(&[
        "profile",
        "explain",
        "--snapshot",
        snapshot.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("state: unknown value \"chatting\""),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_reads_a_live_session_from_a_running_manager() {
    let profiles = temp("live.toml", PROFILES);
    let mut config =
        wfm_manager::ManagerConfig::new(wfm_reference::SigningKey::generate().unwrap());
    config.profiles = wfm_profiles::ProfileSet::load(&profiles).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(wfm_manager::serve(listener, config, shutdown.clone()));

    let mut client = pb::workflow_manager_client::WorkflowManagerClient::connect(url.clone())
        .await
        .unwrap();
    let mut call = pb::Interaction {
        interaction_id: "c1".into(),
        channel_id: "voice".into(),
        direction: pb::Direction::Inbound.into(),
        state: pb::InteractionState::Connected.into(),
        ..Default::default()
    };
    call.data.insert("tier".into(), "vip".into());
    client
        .create_session(pb::CreateSessionRequest {
            session_id: "live".into(),
            agent_id: "a".into(),
            profile: "strict".into(),
            channels: vec![pb::Channel {
                channel_id: "voice".into(),
                media: pb::Media::Voice.into(),
                state: pb::AgentState::Busy.into(),
                ..Default::default()
            }],
            interactions: vec![call],
            ..Default::default()
        })
        .await
        .unwrap();

    let args = [
        "profile",
        "explain",
        "--profiles",
        profiles.to_str().unwrap(),
        "--session",
        "live",
        "--manager",
        &url,
    ]
    .map(String::from);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wfm"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("profile strict\n"),
        "the live session's own profile: {stdout}"
    );
    assert!(line(&stdout, "interaction.singleStepTransfer").contains("custom rule"));

    let missing = tokio::task::spawn_blocking(move || {
        wfm(&[
            "profile",
            "explain",
            "--session",
            "nobody",
            "--manager",
            &url,
        ])
    })
    .await
    .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("GetSession nobody: unknown session nobody"));
    shutdown.cancel();
}

#[test]
fn every_role_is_a_subcommand_whose_help_names_it() {
    let out = wfm(&["--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    for role in ["up", "manager", "gateway", "sim", "bench", "profile"] {
        assert!(
            help.contains(&format!("\n  {role} ")),
            "{role} missing:\n{help}"
        );
    }
    // The services parse their own settings, so their help is theirs, under the wfm name.
    for (role, setting) in [
        ("manager", "--metrics-listen"),
        ("gateway", "--manager-url"),
    ] {
        let out = wfm(&[role, "--help"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(
            help.contains(&format!("Usage: wfm {role} [OPTIONS]")),
            "{help}"
        );
        assert!(help.contains(setting), "{help}");
    }
}

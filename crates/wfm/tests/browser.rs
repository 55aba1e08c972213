//! The MediaBar demo page in a real browser: `wfm up` on free ports, headless Chromium
//! driven over the DevTools protocol, buttons checked at known points of a call, and a
//! screenshot saved to `target/browser/mediabar.png`.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it), hence `#[ignore]`: run it with
//! `cargo test -p wfm --test browser -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wfm_proto::v1 as pb;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Kills the process when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `wfm up` on free ports and returns it with its demo page and manager URLs.
fn wfm_up() -> (Guard, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wfm"))
        .args([
            "up",
            "--manager-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--agents",
            "2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(child);
    let (mut page, mut manager) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_string);
        if line.trim_start().starts_with("demo page") {
            page = url;
        } else if line.trim_start().starts_with("manager gRPC") {
            manager = url;
        } else if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    (
        guard,
        page.expect("demo page URL printed"),
        manager.expect("manager URL printed"),
    )
}

/// The page's DevTools WebSocket URL, from the port Chromium wrote into its profile.
fn devtools_url(profile: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "chromium did not open its DevTools port"
        );
        if let Ok(text) = std::fs::read_to_string(profile.join("DevToolsActivePort")) {
            let port = text.lines().next().unwrap_or_default().trim().to_string();
            let targets = get_json(&format!("127.0.0.1:{port}"), "/json/list");
            let page = targets
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page");
            if let Some(url) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                return url.to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GETs `path` from Chromium's DevTools HTTP server, which keeps the connection open, so the
/// body is read by its Content-Length.
fn get_json(address: &str, path: &str) -> Value {
    let mut http = TcpStream::connect(address).unwrap();
    write!(http, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(http);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap_or(json!([]))
}

type Devtools =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one DevTools command and returns its result.
async fn cdp(ws: &mut Devtools, id: u64, method: &str, params: Value) -> Value {
    ws.send(Message::text(
        json!({"id": id, "method": method, "params": params}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("devtools closed")
        };
        let reply: Value = serde_json::from_str(&text).unwrap();
        if reply["id"] == id {
            return reply["result"].clone();
        }
    }
}

/// The buttons of the row of `target`: `capability=enabled|disabled`, in page order.
async fn buttons(ws: &mut Devtools, id: u64, target: &str) -> Vec<String> {
    let expression = format!(
        "JSON.stringify([...document.querySelectorAll('[data-target=\"{target}\"] button')].map(b => b.dataset.capability + '=' + (b.disabled ? 'disabled' : 'enabled')))"
    );
    let result = cdp(
        ws,
        id,
        "Runtime.evaluate",
        json!({"expression": expression, "returnByValue": true}),
    )
    .await;
    serde_json::from_str(result["result"]["value"].as_str().unwrap_or("[]")).unwrap_or_default()
}

/// Polls the page until `target`'s buttons are `expected`.
async fn until_buttons(ws: &mut Devtools, next_id: &mut u64, target: &str, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        *next_id += 1;
        let seen = buttons(ws, *next_id, target).await;
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "buttons of {target}: expected {expected:?}, saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The buttons of a call row with `enabled` (short names) enabled, in catalogue order.
fn voice_call(enabled: &[&str]) -> Vec<String> {
    let all = [
        "answer",
        "reject",
        "redirect",
        "release",
        "hold",
        "retrieve",
        "consult",
        "completeTransfer",
        "completeConference",
        "singleStepTransfer",
        "singleStepConference",
        "alternate",
        "reconnect",
        "sendDtmf",
        "mute",
        "unmute",
        "dropParticipant",
        "updateData",
        "recording.start",
        "recording.stop",
        "recording.pause",
        "recording.resume",
        "monitor",
        "whisper",
        "barge",
        "stopMonitoring",
        "preview.accept",
        "preview.skip",
        "preview.reject",
        "wrapUp",
        "complete",
    ];
    all.iter()
        .map(|c| {
            format!(
                "interaction.{c}={}",
                if enabled.contains(c) {
                    "enabled"
                } else {
                    "disabled"
                }
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium; .ci/run installs it and runs this with --ignored"]
async fn the_demo_page_shows_live_buttons_in_a_real_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install -y chromium"
    );
    let (_stack, page, manager) = wfm_up();

    // A session of the test's own, driven to known points while the demo agents run.
    let mut client = pb::workflow_manager_client::WorkflowManagerClient::connect(manager)
        .await
        .unwrap();
    let created = client
        .create_session(pb::CreateSessionRequest {
            session_id: "browser".into(),
            agent_id: "agent-browser".into(),
            channels: vec![pb::Channel {
                channel_id: "voice".into(),
                media: pb::Media::Voice.into(),
                state: pb::AgentState::Busy.into(),
                ..Default::default()
            }],
            interactions: vec![pb::Interaction {
                interaction_id: "c1".into(),
                channel_id: "voice".into(),
                direction: pb::Direction::Inbound.into(),
                state: pb::InteractionState::Alerting.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let profile =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let url = format!("{page}?ref={}", created.resource_reference);
    let chromium = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            "--window-size=1280,720",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _chromium = Guard(chromium);
    let (mut ws, _) = tokio_tungstenite::connect_async(devtools_url(&profile))
        .await
        .unwrap();
    let mut id = 0;

    until_buttons(
        &mut ws,
        &mut id,
        "browser.voice.c1",
        &as_strs(&voice_call(&["answer", "reject", "redirect", "updateData"])),
    )
    .await;
    until_buttons(
        &mut ws,
        &mut id,
        "browser.voice",
        // The ringing call holds back Not Ready, sign-out and dialing.
        &[
            "channel.login=disabled",
            "channel.logout=disabled",
            "channel.ready=enabled",
            "channel.notReady=disabled",
            "channel.cancelPending=disabled",
            "channel.extendWrapUp=disabled",
            "channel.dial=disabled",
        ],
    )
    .await;

    let update = |sequence, state: pb::InteractionState| pb::ApplyUpdateRequest {
        session_id: "browser".into(),
        sequence,
        update: Some(pb::CtiUpdate {
            kind: Some(pb::cti_update::Kind::InteractionChanged(
                pb::InteractionChange {
                    interaction_id: "c1".into(),
                    state: Some(state.into()),
                    ..Default::default()
                },
            )),
        }),
    };
    client
        .apply_update(update(1, pb::InteractionState::Connected))
        .await
        .unwrap();
    let connected = [
        "release",
        "hold",
        "consult",
        "singleStepTransfer",
        "singleStepConference",
        "sendDtmf",
        "mute",
        "updateData",
        "recording.start",
    ];
    until_buttons(
        &mut ws,
        &mut id,
        "browser.voice.c1",
        &as_strs(&voice_call(&connected)),
    )
    .await;
    client
        .apply_update(update(2, pb::InteractionState::Held))
        .await
        .unwrap();
    until_buttons(
        &mut ws,
        &mut id,
        "browser.voice.c1",
        &as_strs(&voice_call(&["release", "retrieve", "updateData"])),
    )
    .await;

    id += 1;
    let shot = cdp(
        &mut ws,
        id,
        "Page.captureScreenshot",
        json!({"format": "png"}),
    )
    .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../browser");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("mediabar.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
}

fn as_strs(items: &[String]) -> Vec<&str> {
    items.iter().map(String::as_str).collect()
}

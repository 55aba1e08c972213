//! The MediaBar demo page in a real browser: `wfm up` on free ports, headless Chromium
//! driven over the DevTools protocol. The page's buttons are checked at known points of a
//! call, a disabled capability forced through the client library is refused, an agent
//! clicks a whole call through on a demo agent (the simulated platform carries the commands
//! out), and screenshots at a side panel's and a desktop's width are saved under
//! `target/browser/`.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it), hence `#[ignore]`: run them with
//! `cargo test -p wfm --test browser -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
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
/// How long any awaited condition of the page may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// Kills the process when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `wfm up`: its demo page and manager URLs.
struct Stack {
    _process: Guard,
    page: String,
    manager: String,
}

/// Starts `wfm up` on free ports; `replay` off leaves the demo agents logged out until the
/// page drives them.
fn wfm_up(replay: bool) -> Stack {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wfm"));
    command.args([
        "up",
        "--manager-listen",
        "127.0.0.1:0",
        "--gateway-listen",
        "127.0.0.1:0",
        "--agents",
        "2",
    ]);
    if !replay {
        command.arg("--no-replay");
    }
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
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
    Stack {
        _process: guard,
        page: page.expect("demo page URL printed"),
        manager: manager.expect("manager URL printed"),
    }
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

/// Headless Chromium showing one page, driven over the DevTools protocol.
struct Browser {
    ws: Devtools,
    id: u64,
    /// The page's uncaught exceptions so far (`Runtime.exceptionThrown`).
    exceptions: Vec<Value>,
    _process: Guard,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.exceptions.is_empty(),
                "the page threw: {:#?}",
                self.exceptions
            );
        }
    }
}

impl Browser {
    /// Opens `url` in a fresh headless Chromium `width` pixels wide.
    async fn open(url: &str, width: u32) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: apt-get install -y chromium"
        );
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "chromium-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        let process = Command::new(CHROMIUM)
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
            ])
            .arg(format!("--window-size={width},900"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let process = Guard(process);
        let (ws, _) = tokio_tungstenite::connect_async(devtools_url(&profile))
            .await
            .unwrap();
        let mut browser = Browser {
            ws,
            id: 0,
            exceptions: Vec::new(),
            _process: process,
        };
        // Listening before the page loads, so that no exception goes unseen.
        browser.cdp("Runtime.enable", json!({})).await;
        browser.resize(width, 900).await;
        browser.cdp("Page.navigate", json!({"url": url})).await;
        browser
    }

    /// Sends one DevTools command and returns its result.
    async fn cdp(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let id = self.id;
        self.ws
            .send(Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .await
            .unwrap();
        loop {
            let Some(Ok(Message::Text(text))) = self.ws.next().await else {
                panic!("devtools closed")
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["method"] == "Runtime.exceptionThrown" {
                self.exceptions
                    .push(reply["params"]["exceptionDetails"].clone());
            }
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise): its value, or the exception.
    async fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let result = self
            .cdp(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        match result.get("exceptionDetails") {
            Some(details) => Err(details.clone()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        match self.try_eval(expression).await {
            Ok(value) => value,
            Err(details) => panic!("{expression}: {details}"),
        }
    }

    /// Polls `expression` until it is truthy (not false, null, 0 or ""; an exception, as
    /// before the page has loaded, counts as false); returns its value.
    async fn until(&mut self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.try_eval(expression).await.unwrap_or_else(|e| {
                assert!(Instant::now() < deadline, "waited in vain for {what}: {e}");
                Value::Null
            });
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(Instant::now() < deadline, "waited in vain for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The buttons of the row of `target`, `capability=enabled|disabled`, in the catalogue
    /// order of its view (the page shows enabled ones first and folds the rest away).
    async fn buttons(&mut self, target: &str) -> Vec<String> {
        let expression = format!(
            "(() => {{
               const view = window.mediabar && window.mediabar.views.get({target:?});
               const order = view ? view.order : [];
               const found = [...document.querySelectorAll('[data-target=\"' + {target:?} + '\"] button[data-capability]')];
               found.sort((a, b) => order.indexOf(a.dataset.capability) - order.indexOf(b.dataset.capability));
               return JSON.stringify(found.map(b => b.dataset.capability + '=' + (b.disabled ? 'disabled' : 'enabled')));
             }})()"
        );
        serde_json::from_str(self.eval(&expression).await.as_str().unwrap_or("[]"))
            .unwrap_or_default()
    }

    /// Polls the page until `target`'s buttons are `expected`.
    async fn until_buttons(&mut self, target: &str, expected: &[String]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.buttons(target).await;
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

    /// Waits until `capability` is an enabled button on `target`'s row, then clicks it.
    async fn click(&mut self, target: &str, capability: &str) {
        let selector =
            format!("[data-target=\"{target}\"] button[data-capability=\"{capability}\"]");
        self.until(
            &format!("(() => {{ const b = document.querySelector({selector:?}); return !!b && !b.disabled && !b.hasAttribute('aria-busy'); }})()"),
            &format!("{capability} enabled on {target}"),
        )
        .await;
        self.eval(&format!("document.querySelector({selector:?}).click()"))
            .await;
    }

    /// Waits until `target`'s row shows state `state`.
    async fn until_state(&mut self, target: &str, state: &str) {
        let deadline = Instant::now() + PATIENCE;
        let expression =
            format!("document.querySelector('[data-target=\"{target}\"]')?.dataset.state");
        loop {
            let seen = self.try_eval(&expression).await.unwrap_or(Value::Null);
            if seen == state {
                return;
            }
            if Instant::now() >= deadline {
                let log = self
                    .eval("[...document.querySelectorAll('#log li')].map(li => li.textContent).reverse().join('\\n')")
                    .await;
                panic!(
                    "waited in vain for {target} in state {state}: it is {seen}; the page's log:\n{}",
                    log.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the dialog `id` is open.
    async fn until_dialog(&mut self, id: &str) {
        self.until(
            &format!("document.getElementById({id:?}).open"),
            &format!("dialog #{id} open"),
        )
        .await;
    }

    /// Emulates a viewport of `width` × `height` CSS pixels.
    async fn resize(&mut self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
    }

    /// Saves a PNG of the viewport as `target/browser/<name>` and returns its path.
    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .cdp("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../browser");
        std::fs::create_dir_all(&out).unwrap();
        let path = out.join(name);
        std::fs::write(&path, &png).unwrap();
        path
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

/// The voice channel's buttons with `enabled` (short names) enabled, in catalogue order.
fn voice_channel(enabled: &[&str]) -> Vec<String> {
    [
        "login",
        "logout",
        "ready",
        "notReady",
        "cancelPending",
        "extendWrapUp",
        "dial",
    ]
    .iter()
    .map(|c| {
        let state = if enabled.contains(c) {
            "enabled"
        } else {
            "disabled"
        };
        format!("channel.{c}={state}")
    })
    .collect()
}

/// A session of the test's own, `browser`, with a voice channel and the alerting inbound
/// call `c1` from a named caller through a queue, with attached data. Its commands go to no
/// Interaction Processor. Returns the manager client and the session's reference.
async fn own_session(
    manager: &str,
) -> (
    pb::workflow_manager_client::WorkflowManagerClient<tonic::transport::Channel>,
    String,
) {
    let mut client =
        pb::workflow_manager_client::WorkflowManagerClient::connect(manager.to_string())
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
                caller: "+1 415 555 0134 · Dana Reyes".into(),
                queue: "Billing".into(),
                data: HashMap::from([
                    ("account".to_string(), "AC-77120".to_string()),
                    ("tier".to_string(), "gold".to_string()),
                ]),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (client, created.resource_reference)
}

/// Moves the test session's call `c1` to `state` as update `sequence`.
fn call_update(sequence: u64, state: pb::InteractionState) -> pb::ApplyUpdateRequest {
    pb::ApplyUpdateRequest {
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
    }
}

const CONNECTED: [&str; 9] = [
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

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium; .ci/run installs it and runs this with --ignored"]
async fn the_demo_page_shows_live_buttons_in_a_real_browser() {
    let stack = wfm_up(true);
    let (mut client, reference) = own_session(&stack.manager).await;
    let mut page = Browser::open(&format!("{}?ref={reference}", stack.page), 1280).await;

    page.until_buttons(
        "browser.voice.c1",
        &voice_call(&["answer", "reject", "redirect", "updateData"]),
    )
    .await;
    // The ringing call holds back Not Ready, sign-out and dialing.
    page.until_buttons("browser.voice", &voice_channel(&["ready"]))
        .await;

    // What the agent reads: the caller, the queue and direction, the attached data, a
    // running timer, and human labels; disabled actions folded away under "More".
    let call = page
        .eval(
            "(() => { const row = document.querySelector('[data-target=\"browser.voice.c1\"]');
               return { text: row.innerText,
                        timer: row.querySelector('[data-since]')?.textContent,
                        data: [...row.querySelectorAll('dl.data dt, dl.data dd')].map(e => e.textContent),
                        shown: [...row.querySelectorAll('.actions > button')].map(b => b.textContent),
                        unfolded_disabled: row.querySelectorAll('.actions > button:disabled').length,
                        folded: row.querySelectorAll('details.more button:disabled').length,
                        context: window.mediabar.views.get('browser.voice.c1').context }; })()",
        )
        .await;
    let text = call["text"].as_str().unwrap();
    for expected in ["Dana Reyes", "Billing", "Inbound", "Ringing"] {
        assert!(
            text.contains(expected),
            "{expected:?} in the call row: {text}"
        );
    }
    assert_eq!(
        call["data"],
        json!(["Account", "AC-77120", "Tier", "gold"]),
        "attached data, from the context {}",
        call["context"]
    );
    assert!(
        call["timer"].as_str().is_some_and(|t| t.contains(':')),
        "a timer: {call}"
    );
    // Answer first, Reject (a stray click loses the caller) last.
    assert_eq!(
        call["shown"],
        json!(["Answer", "Redirect", "Edit data", "Reject"])
    );
    assert_eq!(call["unfolded_disabled"], 0, "disabled buttons are folded");
    assert_eq!(call["folded"], 27, "the other capabilities, under More");
    let timer = call["timer"].as_str().unwrap().to_string();
    page.until(
        &format!(
            "document.querySelector('[data-target=\"browser.voice.c1\"] [data-since]').textContent !== {timer:?}"
        ),
        "the timer ticking",
    )
    .await;

    // A click goes to the Interaction Processor; this session has none, so the agent reads
    // why in a toast.
    page.click("browser.voice.c1", "interaction.answer").await;
    let toast = page
        .until(
            "document.querySelector('#toasts .toast.error')?.textContent",
            "a toast saying the answer failed",
        )
        .await;
    let toast = toast.as_str().unwrap();
    assert!(toast.starts_with("Answer"), "{toast}");
    assert!(toast.contains("Interaction Processor"), "{toast}");

    client
        .apply_update(call_update(1, pb::InteractionState::Connected))
        .await
        .unwrap();
    page.until_buttons("browser.voice.c1", &voice_call(&CONNECTED))
        .await;
    page.until_state("browser.voice.c1", "connected").await;
    client
        .apply_update(call_update(2, pb::InteractionState::Held))
        .await
        .unwrap();
    page.until_buttons(
        "browser.voice.c1",
        &voice_call(&["release", "retrieve", "updateData"]),
    )
    .await;
    let resume = page
        .eval("document.querySelector('[data-target=\"browser.voice.c1\"] [data-capability=\"interaction.retrieve\"]').textContent")
        .await;
    assert_eq!(resume, "Resume", "retrieve reads as Resume");
    page.screenshot("mediabar.png").await;

    // The page imports the client library from the gateway itself.
    let library = page
        .eval("fetch('/mediabar.js').then(r => r.status + ' ' + r.headers.get('content-type'))")
        .await;
    assert_eq!(library, "200 text/javascript; charset=utf-8");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium; .ci/run installs it and runs this with --ignored"]
async fn a_disabled_capability_forced_through_the_library_is_refused() {
    let stack = wfm_up(true);
    let (_client, reference) = own_session(&stack.manager).await;
    let mut page = Browser::open(&format!("{}?ref={reference}", stack.page), 1280).await;
    page.until_buttons(
        "browser.voice.c1",
        &voice_call(&["answer", "reject", "redirect", "updateData"]),
    )
    .await;
    // Hold is disabled on a ringing call; the page would never send it, the library can.
    let refused = page
        .eval(
            "window.mediabar.execute('browser.voice.c1', 'interaction.hold').then(
               () => ({ accepted: true }),
               e => ({ code: e.code, view: e.view && e.view.target,
                       hold: e.view && e.view.capabilities['interaction.hold'] }))",
        )
        .await;
    assert_eq!(
        refused,
        json!({"code": "capabilityDisabled", "view": "browser.voice.c1", "hold": "disabled"}),
        "the manager refuses a disabled capability and returns the view"
    );
    // The toolbar still shows the call as it is.
    page.until_buttons(
        "browser.voice.c1",
        &voice_call(&["answer", "reject", "redirect", "updateData"]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium; .ci/run installs it and runs this with --ignored"]
async fn the_page_fits_a_side_panel_and_a_desktop_with_a_live_call() {
    let stack = wfm_up(true);
    let (mut client, reference) = own_session(&stack.manager).await;
    client
        .apply_update(call_update(1, pb::InteractionState::Connected))
        .await
        .unwrap();
    let mut page = Browser::open(&format!("{}?ref={reference}", stack.page), 420).await;
    page.until_buttons("browser.voice.c1", &voice_call(&CONNECTED))
        .await;
    page.until_state("browser.voice.c1", "connected").await;

    for (width, name) in [(420, "mediabar-420.png"), (1400, "mediabar-1400.png")] {
        page.resize(width, 900).await;
        // Laid out for the width: nothing wider than the viewport, the log beside the
        // toolbar only where there is room.
        let layout = page
            .until(
                &format!(
                    "(() => {{ if (window.innerWidth !== {width}) return null;
                       const toolbar = document.getElementById('toolbar').getBoundingClientRect();
                       const log = document.querySelector('.log').getBoundingClientRect();
                       return {{ overflow: document.documentElement.scrollWidth > window.innerWidth,
                                 beside: log.left >= toolbar.right, below: log.top >= toolbar.bottom }}; }})()"
                ),
                &format!("the page laid out at {width} px"),
            )
            .await;
        assert_eq!(
            layout["overflow"], false,
            "no sideways scrolling at {width} px"
        );
        if width < 900 {
            assert_eq!(
                layout["below"], true,
                "single column at {width} px: {layout}"
            );
        } else {
            assert_eq!(
                layout["beside"], true,
                "log beside the toolbar at {width} px"
            );
        }
        let path = page.screenshot(name).await;
        assert!(path.exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium; .ci/run installs it and runs this with --ignored"]
async fn an_agent_clicks_a_call_through_on_a_demo_agent() {
    // No replay: demo-1 starts logged out, and the simulated platform carries out every
    // command; its ACD offers a call a few seconds after the agent goes Ready.
    let stack = wfm_up(false);
    let mut page = Browser::open(&format!("{}?session=demo-1", stack.page), 1280).await;
    page.until(
        "document.body.dataset.session === 'demo-1'",
        "the page bound to demo-1",
    )
    .await;

    page.click("demo-1", "session.login").await;
    page.until_state("demo-1.voice", "not_ready").await;
    // Not Ready asks for one of the profile's reason codes, in words.
    page.click("demo-1.voice", "channel.notReady").await;
    page.until_dialog("reason-dialog").await;
    let choices = page
        .eval("[...document.querySelectorAll('#reason-options button')].map(b => b.textContent)")
        .await;
    assert!(
        choices
            .as_array()
            .unwrap()
            .contains(&json!("Not Ready · Lunch")),
        "reason choices: {choices}"
    );
    page.eval("document.querySelector('#reason-options [data-reason=\"Lunch\"]').click()")
        .await;
    page.until(
        "[...document.querySelectorAll('#log li')].some(li => li.textContent.endsWith('Not Ready · Lunch: accepted'))",
        "Not Ready · Lunch accepted",
    )
    .await;
    page.click("demo-1.voice", "channel.ready").await;
    page.until_state("demo-1.voice", "ready").await;

    // The ACD's call rings.
    let call = page
        .until(
            "document.querySelector('[data-target^=\"demo-1.voice.\"][data-state=\"alerting\"]')?.dataset.target",
            "a call offered to demo-1",
        )
        .await;
    let call = call.as_str().unwrap().to_string();
    page.click(&call, "interaction.answer").await;
    page.until_state(&call, "connected").await;
    page.click(&call, "interaction.hold").await;
    page.until_state(&call, "held").await;
    page.click(&call, "interaction.retrieve").await;
    page.until_state(&call, "connected").await;

    // The platform refuses what it cannot do, and the agent reads its words. (The keypad
    // only takes DTMF digits; the test lifts that check to make the platform say no.)
    page.click(&call, "interaction.sendDtmf").await;
    page.until_dialog("input-dialog").await;
    page.eval(
        "document.getElementById('input-value').removeAttribute('pattern');
         document.getElementById('input-value').value = '12x';
         document.getElementById('input-ok').click()",
    )
    .await;
    let toast = page
        .until(
            "document.querySelector('#toasts .toast.error')?.textContent",
            "a toast saying the keypad was refused",
        )
        .await;
    assert!(
        toast
            .as_str()
            .unwrap()
            .starts_with("Keypad refused: the Interaction Processor said “"),
        "{toast}"
    );
    page.eval("document.querySelector('#toasts .toast.error').click()")
        .await;

    // Attached data: the dialog sends the keys the agent changes.
    page.click(&call, "interaction.updateData").await;
    page.until_dialog("data-dialog").await;
    page.eval(
        "document.getElementById('data-new-key').value = 'note';
         document.getElementById('data-new-value').value = 'asked for a refund';
         document.getElementById('data-ok').click()",
    )
    .await;
    page.until(
        "[...document.querySelectorAll('#log li')].some(li => li.textContent.endsWith('Edit data: accepted'))",
        "the attached data accepted",
    )
    .await;

    // Consult: the dialog asks for the destination and what the consultation is for.
    page.click(&call, "interaction.consult").await;
    page.until_dialog("destination-dialog").await;
    page.eval(
        "document.getElementById('destination-input').value = '2001';
         document.querySelector('#destination-dialog input[name=intent][value=transfer]').checked = true;
         document.getElementById('destination-ok').click()",
    )
    .await;
    page.until_state(&call, "held").await;
    let consult = page
        .until(
            &format!(
                "[...document.querySelectorAll('[data-target^=\"demo-1.voice.\"]')]
                   .map(r => r.dataset.target).find(t => t !== {call:?} && document.querySelector('[data-target=\"' + t + '\"]').dataset.state === 'connected')"
            ),
            "the consultation leg connected",
        )
        .await;
    let consult = consult.as_str().unwrap().to_string();
    let consult_text = page
        .eval(&format!(
            "document.querySelector('[data-target=\"{consult}\"]').innerText"
        ))
        .await;
    assert!(
        consult_text.as_str().unwrap().contains("2001"),
        "the consultation names whom it called: {consult_text}"
    );

    page.screenshot("mediabar-consult.png").await;

    // Transfer joins the caller and the consulted party; the consult leg ends and leaves the
    // screen, the call goes into wrap-up.
    page.click(&call, "interaction.completeTransfer").await;
    page.until_state(&call, "wrap_up").await;
    page.until(
        &format!("!document.querySelector('[data-target=\"{consult}\"]')"),
        "the ended consultation leg off the screen",
    )
    .await;
    // (The channel's own label may still read Busy: busy and after-call work with the call
    // in wrap-up enable the same channel buttons, and a context-only change sends no event.)

    // A disposition, then Ready closes the wrap-up.
    page.click(&call, "interaction.wrapUp").await;
    page.until_dialog("disposition-dialog").await;
    page.screenshot("mediabar-disposition.png").await;
    page.eval(
        "(() => { const choice = document.querySelector('#disposition-options [data-disposition]');
                  if (choice) { choice.click(); return; }
                  document.getElementById('disposition-input').value = 'resolved';
                  document.getElementById('disposition-ok').click(); })()",
    )
    .await;
    page.until(
        "[...document.querySelectorAll('#log li')].some(li => li.textContent.includes('Disposition · ') && li.textContent.endsWith('accepted'))",
        "the disposition accepted",
    )
    .await;
    page.click("demo-1.voice", "channel.ready").await;
    page.until_state("demo-1.voice", "ready").await;
    page.until(
        &format!("!document.querySelector('[data-target=\"{call}\"]')"),
        "the finished call off the screen",
    )
    .await;
    let errors = page
        .eval("document.querySelectorAll('#toasts .toast.error').length")
        .await;
    assert_eq!(errors, 0, "no command failed on the way");
}

/// Every target of the library's store has a row whose buttons are exactly its view, and no
/// row outlives its target: `{problems, states}`.
const CONSISTENT: &str = "(() => {
  const mb = window.mediabar, problems = [], states = [];
  for (const target of mb.views.targets()) {
    const view = mb.views.get(target);
    states.push(target + '=' + view.context.state);
    const row = [...document.querySelectorAll('[data-target]')].find(r => r.dataset.target === target);
    if (!row) { problems.push('no row for ' + target); continue; }
    const shown = {};
    for (const b of row.querySelectorAll('button[data-capability]')) shown[b.dataset.capability] = b.disabled ? 'disabled' : 'enabled';
    const same = Object.keys(shown).length === Object.keys(view.capabilities).length
      && Object.entries(view.capabilities).every(([c, s]) => shown[c] === s);
    if (!same) problems.push('buttons of ' + target + ': ' + JSON.stringify(shown) + ' for ' + JSON.stringify(view.capabilities));
  }
  for (const row of document.querySelectorAll('[data-target]'))
    if (!mb.views.get(row.dataset.target)) problems.push('a row for the gone ' + row.dataset.target);
  return { problems, states };
})()";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Debian's chromium; .ci/run installs it and runs this with --ignored"]
async fn the_page_keeps_up_with_the_scripted_replay() {
    let stack = wfm_up(true);
    let mut page = Browser::open(&format!("{}?session=demo-2", stack.page), 1280).await;
    page.until(
        "document.body.dataset.session === 'demo-2'",
        "the page bound to demo-2",
    )
    .await;
    // The replay walks demo-2 through calls, chats and more; at every look the toolbar is
    // exactly the library's view state, and the page throws nothing (checked on drop).
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(12);
    while Instant::now() < deadline {
        let look = page.eval(CONSISTENT).await;
        assert_eq!(look["problems"], json!([]), "{look}");
        for state in look["states"].as_array().unwrap() {
            seen.insert(state.as_str().unwrap().to_string());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(seen.len() >= 4, "the replay moved on: {seen:?}");
}

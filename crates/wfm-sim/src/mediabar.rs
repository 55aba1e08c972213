//! A MediaBar client over the gateway's WebSocket: it binds to a session and keeps the
//! latest view state of every target, as a toolbar would.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Why the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The gateway closed the connection.
    #[error("the gateway closed the connection")]
    Closed,
    /// The gateway refused a request.
    #[error("{request} refused: {code}: {message}")]
    Refused {
        /// The request.
        request: String,
        /// The MediaBar error code.
        code: String,
        /// The gateway's message.
        message: String,
    },
    /// Nothing arrived in time.
    #[error("no answer from the gateway within {0:?}")]
    Timeout(Duration),
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandAnswer {
    /// `resourceResponse`: the Interaction Processor accepted it; its data.
    Accepted(Value),
    /// `resourceError`: refused, with its MediaBar error code and message.
    Refused {
        /// The error code, for example `capabilityDisabled`.
        code: String,
        /// The message.
        message: String,
    },
}

/// A field of an answer's `error` object, empty when absent.
fn error_text(answer: &Value, key: &str) -> String {
    answer["error"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// One target's latest view state: capability names with their enablement, in catalogue order.
pub type TargetView = Vec<(String, bool)>;

/// A bound (or bindable) MediaBar connection.
pub struct MediaBarClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_request: u64,
    session_id: String,
    view: BTreeMap<String, TargetView>,
    events: u64,
}

const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

impl MediaBarClient {
    /// Connects to the gateway's MediaBar endpoint, e.g. `ws://127.0.0.1:8080/mediabar/v1`.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self::over(ws))
    }

    /// Connects like [`MediaBarClient::connect`] with small socket buffers (a 4 KiB read
    /// buffer, writes straight through), for load runs holding thousands of clients.
    pub async fn connect_lean(url: &str) -> Result<Self, ClientError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        Ok(Self::over(ws))
    }

    fn over(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            ws,
            next_request: 1,
            session_id: String::new(),
            view: BTreeMap::new(),
            events: 0,
        }
    }

    /// Binds to the session of `reference`; returns its session id once the gateway agrees.
    pub async fn bind(&mut self, reference: &str, takeover: bool) -> Result<String, ClientError> {
        let data =
            json!({"serviceId": "WorkflowManager", "resourceId": reference, "takeover": takeover});
        let response = self.request("bindResource", data).await?;
        // A new binding starts over with the full view state; what an earlier binding of
        // this connection showed is not this session's.
        self.view.clear();
        self.session_id = response["data"]["resourceId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(self.session_id.clone())
    }

    /// Sends `capability` for `path` (a target relative to the bound session: `""`,
    /// `"voice"`, `"voice.c1"`) to the Interaction Processor and reads until its answer,
    /// applying events on the way.
    pub async fn execute(
        &mut self,
        path: &str,
        capability: &str,
        arguments: &BTreeMap<String, String>,
    ) -> Result<CommandAnswer, ClientError> {
        let target = if path.is_empty() {
            self.session_id.clone()
        } else {
            format!("{}.{path}", self.session_id)
        };
        let frame = json!({"messageType": "resourceRequest",
            "serviceId": "InteractionProcessor", "resourceId": self.session_id,
            "request": capability, "data": {"target": target, "arguments": arguments}});
        let answer = self
            .exchange(frame, &["resourceResponse", "resourceError"])
            .await?;
        if answer["messageType"] == "resourceResponse" {
            return Ok(CommandAnswer::Accepted(answer["data"].clone()));
        }
        Ok(CommandAnswer::Refused {
            code: error_text(&answer, "code"),
            message: error_text(&answer, "message"),
        })
    }

    /// Sends a core request and reads until its response, applying events on the way.
    async fn request(&mut self, name: &str, data: Value) -> Result<Value, ClientError> {
        let frame = json!({"messageType": "coreRequest", "request": name, "data": data});
        let response = self.exchange(frame, &["coreResponse"]).await?;
        if response["result"] == "success" {
            return Ok(response);
        }
        Err(ClientError::Refused {
            request: name.to_string(),
            code: error_text(&response, "code"),
            message: error_text(&response, "message"),
        })
    }

    /// Sends `frame` under the next request id and reads until the message of one of
    /// `answers` that carries that id, applying events on the way.
    async fn exchange(&mut self, mut frame: Value, answers: &[&str]) -> Result<Value, ClientError> {
        let request_id = format!("r{}", self.next_request);
        self.next_request += 1;
        frame["requestId"] = json!(request_id);
        self.ws.send(Message::text(frame.to_string())).await?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let message = self
                .next(deadline)
                .await?
                .ok_or(ClientError::Timeout(ANSWER_TIMEOUT))?;
            let answered = message["messageType"]
                .as_str()
                .is_some_and(|kind| answers.contains(&kind));
            if answered && message["requestId"] == request_id.as_str() {
                return Ok(message);
            }
        }
    }

    /// Reads one JSON message before `deadline`, applying it if it is a state event;
    /// `None` when the deadline passes first.
    async fn next(&mut self, deadline: Instant) -> Result<Option<Value>, ClientError> {
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(frame)) => frame?,
            };
            let Message::Text(text) = frame else {
                if matches!(frame, Message::Close(_)) {
                    return Err(ClientError::Closed);
                }
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            self.apply(&message);
            return Ok(Some(message));
        }
    }

    fn apply(&mut self, message: &Value) {
        if message["messageType"] != "resourceEvent" || message["event"]["name"] != "state.updated"
        {
            return;
        }
        let target = message["event"]["target"].as_str().unwrap_or_default();
        // Only at a dot: session `s-1` must not take the events of session `s-10`.
        let path = match target.strip_prefix(self.session_id.as_str()) {
            Some("") => String::new(),
            Some(rest) if rest.starts_with('.') => rest[1..].to_string(),
            _ => return,
        };
        let view = message["event"]["data"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or_default().to_string(),
                            c["type"] == "enabled",
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.view.insert(path, view);
        self.events += 1;
    }

    /// Reads events until every target of `expect` has exactly the expected enabled
    /// capabilities, or `timeout` passes; then returns the differences, empty when it matches.
    pub async fn settle(
        &mut self,
        expect: &BTreeMap<String, Vec<String>>,
        timeout: Duration,
    ) -> Result<Vec<Difference>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let differences = self.differences(expect);
            if differences.is_empty() || self.next(deadline).await?.is_none() {
                return Ok(differences);
            }
        }
    }

    fn differences(&self, expect: &BTreeMap<String, Vec<String>>) -> Vec<Difference> {
        expect
            .iter()
            .filter_map(|(target, expected)| {
                let actual = self.enabled(target);
                (actual.as_ref() != Some(expected)).then(|| Difference {
                    target: target.clone(),
                    expected: expected.clone(),
                    actual,
                })
            })
            .collect()
    }

    /// The enabled capabilities of the target at `path` (`""` is the session), if seen.
    pub fn enabled(&self, path: &str) -> Option<Vec<String>> {
        self.view.get(path).map(|view| {
            view.iter()
                .filter(|(_, on)| *on)
                .map(|(name, _)| name.clone())
                .collect()
        })
    }

    /// Reads one message before `deadline`, applying it if it is a state event; `None` when
    /// the deadline passes first. Cancel-safe: a message is applied as soon as it is read.
    pub async fn pump(&mut self, deadline: Instant) -> Result<Option<Value>, ClientError> {
        self.next(deadline).await
    }

    /// Sends `text` as one text frame, as a misbehaving client would, and reads (applying
    /// events) until the gateway's `coreError`; returns its code.
    pub async fn send_raw(&mut self, text: String) -> Result<String, ClientError> {
        self.ws.send(Message::text(text)).await?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let message = self
                .next(deadline)
                .await?
                .ok_or(ClientError::Timeout(ANSWER_TIMEOUT))?;
            if message["messageType"] == "coreError" {
                return Ok(message["error"]["code"].as_str().unwrap_or("?").to_string());
            }
        }
    }

    /// Reads (applying events) until a `resourceUnbound` core event, and returns its reason;
    /// `None` when none arrives within `timeout`.
    pub async fn unbound(&mut self, timeout: Duration) -> Result<Option<String>, ClientError> {
        let deadline = Instant::now() + timeout;
        while let Some(message) = self.next(deadline).await? {
            if message["messageType"] == "coreEvent" && message["event"] == "resourceUnbound" {
                return Ok(Some(
                    message["data"]["reason"]
                        .as_str()
                        .unwrap_or("?")
                        .to_string(),
                ));
            }
        }
        Ok(None)
    }

    /// Closes the connection with a close frame, as a tab that goes away cleanly does.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The underlying WebSocket, for callers that read frames themselves (the load generator).
    pub fn into_stream(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.ws
    }

    /// State events received so far.
    pub fn events(&self) -> u64 {
        self.events
    }
}

/// A target whose view state differs from what the scenario expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Target path below the session.
    pub target: String,
    /// Expected enabled capabilities.
    pub expected: Vec<String>,
    /// Enabled capabilities seen, or `None` when the target never appeared.
    pub actual: Option<Vec<String>>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = if self.target.is_empty() {
            "(session)"
        } else {
            &self.target
        };
        let Some(actual) = &self.actual else {
            return write!(
                f,
                "  {label}: never received; expected [{}]",
                self.expected.join(" ")
            );
        };
        let missing: Vec<&str> = self
            .expected
            .iter()
            .filter(|c| !actual.contains(c))
            .map(String::as_str)
            .collect();
        let extra: Vec<&str> = actual
            .iter()
            .filter(|c| !self.expected.contains(c))
            .map(String::as_str)
            .collect();
        write!(f, "  {label}:")?;
        if !missing.is_empty() {
            write!(
                f,
                "\n    - expected enabled, got disabled: {}",
                missing.join(" ")
            )?;
        }
        if !extra.is_empty() {
            write!(f, "\n    + enabled, expected disabled: {}", extra.join(" "))?;
        }
        if missing.is_empty() && extra.is_empty() {
            write!(
                f,
                "\n    same capabilities, different order: [{}]",
                actual.join(" ")
            )?;
        }
        Ok(())
    }
}

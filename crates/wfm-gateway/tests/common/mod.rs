//! Shared fixtures: a real manager and a real gateway on 127.0.0.1:0, a tonic client, and a
//! WebSocket client that validates every frame it receives against the AsyncAPI contract.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod nats;

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wfm_gateway::GatewayConfig;
use wfm_manager::ManagerConfig;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_reference::SigningKey;

pub type Client = WorkflowManagerClient<Channel>;

/// The key the test manager signs with and the test gateway verifies with.
pub const KEY: &[u8] = b"0123456789abcdef0123456789abcdef-test-key";

/// How long any single expected frame may take.
pub const PATIENCE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// The contract

struct Contract {
    schemas: boon::Schemas,
    server: boon::SchemaIndex,
    client: boon::SchemaIndex,
    document: Value,
}

const CONTRACT_URL: &str = "http://contract.invalid/mediabar-asyncapi.json";

static CONTRACT: LazyLock<Contract> = LazyLock::new(|| {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/mediabar-asyncapi.yaml"
    );
    let text = std::fs::read_to_string(path).expect("read the AsyncAPI document");
    let document: Value = serde_yaml_ng::from_str(&text).expect("AsyncAPI document is YAML");
    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V7);
    compiler
        .add_resource(CONTRACT_URL, document.clone())
        .expect("add the document");
    let mut schemas = boon::Schemas::new();
    let mut compile = |name: &str| {
        compiler
            .compile(
                &format!("{CONTRACT_URL}#/components/schemas/{name}"),
                &mut schemas,
            )
            .unwrap_or_else(|e| panic!("schema {name} does not compile: {e:#}"))
    };
    let server = compile("ServerMessage");
    let client = compile("ClientMessage");
    Contract {
        schemas,
        server,
        client,
        document,
    }
});

/// Panics unless `frame` is a message the contract allows the gateway to send.
pub fn validate_server_frame(frame: &Value) {
    let contract = &*CONTRACT;
    if let Err(error) = contract.schemas.validate(frame, contract.server) {
        panic!("gateway frame violates docs/mediabar-asyncapi.yaml:\n{frame}\n{error:#}");
    }
}

/// Panics unless `message` is a request the contract allows a client to send.
pub fn validate_client_message(message: &Value) {
    let contract = &*CONTRACT;
    if let Err(error) = contract.schemas.validate(message, contract.client) {
        panic!("client message violates docs/mediabar-asyncapi.yaml:\n{message}\n{error:#}");
    }
}

/// The AsyncAPI document as JSON.
pub fn contract_document() -> &'static Value {
    &CONTRACT.document
}

// ---------------------------------------------------------------------------------------
// Servers

pub struct Manager {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), wfm_manager::ServeError>>,
}

impl Manager {
    pub async fn start() -> Manager {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    /// A manager on `addr`, as after a restart; retries while the old socket lingers.
    pub async fn start_on(addr: SocketAddr) -> Manager {
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(addr).await {
                return Self::serve(listener);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot listen on {addr} again");
    }

    fn serve(listener: TcpListener) -> Manager {
        Self::serve_with(listener, manager_config())
    }

    /// A manager with `config` on 127.0.0.1:0.
    pub async fn start_with(config: ManagerConfig) -> Manager {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_with(listener, config)
    }

    /// A cluster replica `node` on 127.0.0.1:0 sharing the JetStream of `nats_url`.
    pub async fn start_clustered(nats_url: &str, node: &str) -> Manager {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = manager_config();
        config.cluster = Some(wfm_manager::ClusterConfig {
            nats_url: nats_url.to_string(),
            node_id: node.to_string(),
            advertise_url: format!("http://{}", listener.local_addr().unwrap()),
            lease_ttl: Duration::from_millis(2000),
            replicas: 1,
            nats: Default::default(),
        });
        Self::serve_with(listener, config)
    }

    fn serve_with(listener: TcpListener, config: ManagerConfig) -> Manager {
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(wfm_manager::serve(listener, config, shutdown.clone()));
        Manager {
            addr,
            shutdown,
            task,
        }
    }

    pub async fn client(&self) -> Client {
        let endpoint = format!("http://{}", self.addr);
        for _ in 0..50 {
            if let Ok(client) = WorkflowManagerClient::connect(endpoint.clone()).await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("manager at {endpoint} never accepted a connection");
    }

    /// Stops the manager and waits until it has released its port.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("manager stops")
            .unwrap()
            .unwrap();
    }
}

/// Manager settings for tests: the test key.
pub fn manager_config() -> ManagerConfig {
    ManagerConfig::new(SigningKey::from_bytes(KEY).unwrap())
}

/// Gateway settings for tests: the test key and fast reconnects.
pub fn gateway_config(manager: SocketAddr) -> GatewayConfig {
    let mut config = GatewayConfig::new(
        format!("http://{manager}"),
        SigningKey::from_bytes(KEY).unwrap(),
    );
    config.reconnect_initial = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config.rebind_retry = Duration::from_millis(50);
    config.shutdown_grace = Duration::from_secs(2);
    config
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), wfm_gateway::ServeError>>,
}

impl Gateway {
    pub async fn start(config: GatewayConfig) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(wfm_gateway::serve(listener, config, shutdown.clone()));
        Gateway {
            addr,
            shutdown,
            task,
        }
    }

    /// Waits until `/readyz` reports `expected`.
    pub async fn wait_ready(&self, expected: u16) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if http_get(self.addr, "/readyz").await.0 == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz never answered {expected}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn ws(&self) -> Ws {
        Ws::connect(self.addr, None).await
    }
}

/// A manager, a gateway in front of it, and a client for the Interaction Processor's side.
pub struct Stack {
    pub manager: Manager,
    pub gateway: Gateway,
    pub client: Client,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut GatewayConfig)) -> Stack {
        let manager = Manager::start().await;
        let client = manager.client().await;
        let mut config = gateway_config(manager.addr);
        tweak(&mut config);
        let gateway = Gateway::start(config).await;
        gateway.wait_ready(200).await;
        Stack {
            manager,
            gateway,
            client,
        }
    }

    /// Creates a session with one logged-out voice channel; returns its reference.
    pub async fn session(&mut self, session: &str) -> String {
        create(&mut self.client, session).await.resource_reference
    }

    pub async fn ws(&self) -> Ws {
        self.gateway.ws().await
    }

    pub async fn apply(&mut self, session: &str, sequence: u64, kind: pb::cti_update::Kind) {
        self.client
            .apply_update(update(session, sequence, kind))
            .await
            .unwrap();
    }

    pub async fn is_bound(&mut self, session: &str) -> bool {
        is_bound(&mut self.client, session).await
    }

    pub async fn wait_bound(&mut self, session: &str, bound: bool) {
        wait_bound(&mut self.client, session, bound).await;
    }
}

/// Whether the manager has a binder for `session`.
pub async fn is_bound(client: &mut Client, session: &str) -> bool {
    client
        .get_session(pb::GetSessionRequest {
            session_id: session.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .bound
}

/// Polls the manager until the session's bound flag is `bound`.
pub async fn wait_bound(client: &mut Client, session: &str, bound: bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while is_bound(client, session).await != bound {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session {session} never became bound={bound}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP/1.1 GET; returns the status and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// ---------------------------------------------------------------------------------------
// The WebSocket client

/// One frame as the client sees it.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Close(u16, String),
    Ended,
}

/// A MediaBar client, over TCP or (for `wss://`) TLS.
pub struct Ws<S = TcpStream> {
    stream: WebSocketStream<S>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Ws<S> {
    /// A client over an already upgraded WebSocket.
    pub fn over(stream: WebSocketStream<S>) -> Self {
        Ws { stream }
    }
}

impl Ws {
    /// Connects to the gateway's MediaBar endpoint; `recv_buffer` shrinks the client's
    /// socket receive buffer, to make it a slow reader.
    pub async fn connect(addr: SocketAddr, recv_buffer: Option<u32>) -> Ws {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let tcp = socket.connect(addr).await.unwrap();
        let (stream, _) = tokio_tungstenite::client_async(format!("ws://{addr}/mediabar/v1"), tcp)
            .await
            .unwrap();
        Ws { stream }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Ws<S> {
    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(Message::text(text)).await;
    }

    /// Sends a message the contract allows, after checking that it does.
    pub async fn send(&mut self, message: Value) {
        validate_client_message(&message);
        self.send_text(&message.to_string()).await;
    }

    /// The next frame within `timeout`, `None` on silence. Text frames are validated.
    pub async fn frame_within(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            return Some(match next {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("gateway sent non-JSON {text:?}: {e}"));
                    validate_server_frame(&value);
                    Frame::Json(value)
                }
                Some(Ok(Message::Close(frame))) => match frame {
                    Some(f) => Frame::Close(f.code.into(), f.reason.to_string()),
                    None => Frame::Close(1005, String::new()),
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(b))) => panic!("gateway sent a binary frame {b:?}"),
                Some(Err(_)) | None => Frame::Ended,
            });
        }
    }

    /// The next JSON frame; fails the test on anything else.
    pub async fn recv(&mut self) -> Value {
        match self.frame_within(PATIENCE).await {
            Some(Frame::Json(value)) => value,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// The close frame the gateway sends; fails on anything else. Reads on until the
    /// connection ends, which sends the client's half of the close handshake.
    pub async fn expect_close(&mut self) -> (u16, String) {
        let close = match self.frame_within(PATIENCE).await {
            Some(Frame::Close(code, reason)) => (code, reason),
            other => panic!("expected a close frame, got {other:?}"),
        };
        match self.frame_within(PATIENCE).await {
            Some(Frame::Ended) | None => {}
            Some(other) => panic!("expected the end after the close frame, got {other:?}"),
        }
        close
    }

    /// Asserts that nothing arrives for a short while.
    pub async fn assert_quiet(&mut self) {
        if let Some(frame) = self.frame_within(Duration::from_millis(200)).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// Sends a request and returns the next frame, which must be its response.
    pub async fn request(&mut self, id: &str, request: &str, data: Option<Value>) -> Value {
        let mut message =
            json!({"messageType": "coreRequest", "requestId": id, "request": request});
        if let Some(data) = data {
            message["data"] = data;
        }
        self.send(message).await;
        let response = self.recv().await;
        assert_eq!(
            (
                response["messageType"].as_str(),
                response["requestId"].as_str()
            ),
            (Some("coreResponse"), Some(id)),
            "expected the response to {id}, got {response}"
        );
        response
    }

    pub async fn bind(&mut self, id: &str, reference: &str, takeover: bool) -> Value {
        self.request(
            id,
            "bindResource",
            Some(json!({"serviceId": "WorkflowManager", "resourceId": reference, "takeover": takeover})),
        )
        .await
    }

    /// The next frame, which must be a state event; rendered as `target: enabled...`.
    pub async fn event(&mut self) -> String {
        let frame = self.recv().await;
        render(&frame).unwrap_or_else(|| panic!("expected a resourceEvent, got {frame}"))
    }

    /// The next `count` state events, rendered.
    pub async fn events(&mut self, count: usize) -> Vec<String> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.event().await);
        }
        events
    }
}

/// A `resourceEvent` as `target: enabled capabilities`; `None` for other messages.
pub fn render(frame: &Value) -> Option<String> {
    if frame["messageType"] != "resourceEvent" {
        return None;
    }
    let event = &frame["event"];
    let enabled: Vec<&str> = event["data"]
        .as_array()?
        .iter()
        .filter(|c| c["type"] == "enabled")
        .filter_map(|c| c["name"].as_str())
        .collect();
    Some(format!(
        "{}: {}",
        event["target"].as_str()?,
        enabled.join(" ")
    ))
}

/// The `resourceEvent` the gateway must send for `event`, built independently of it.
pub fn expected_event(event: &pb::StateUpdated) -> Value {
    let data: Vec<Value> = event
        .capabilities
        .iter()
        .map(|c| json!({"name": c.name, "type": if c.enabled { "enabled" } else { "disabled" }}))
        .collect();
    json!({
        "messageType": "resourceEvent",
        "serviceId": "WorkflowManager",
        "resourceId": event.session_id,
        "event": {
            "messageType": "stateEvent",
            "target": event.target,
            "name": "state.updated",
            "context": event.context,
            "data": data,
        }
    })
}

pub fn success(id: &str, response: &str, data: Value) -> Value {
    json!({"messageType": "coreResponse", "requestId": id, "response": response,
           "result": "success", "data": data})
}

pub fn failure(id: &str, response: &str, code: &str, message: &str) -> Value {
    json!({"messageType": "coreResponse", "requestId": id, "response": response,
           "result": "failure", "error": {"code": code, "message": message}})
}

pub fn bound(id: &str, session: &str) -> Value {
    success(
        id,
        "bindResource",
        json!({"serviceId": "WorkflowManager", "resourceId": session}),
    )
}

pub fn unbound_event(session: &str, reason: &str) -> Value {
    json!({"messageType": "coreEvent", "event": "resourceUnbound",
           "data": {"serviceId": "WorkflowManager", "resourceId": session, "reason": reason}})
}

pub fn service_event(available: bool) -> Value {
    if available {
        json!({"messageType": "serviceEvent", "serviceId": "WorkflowManager",
               "event": "service.available",
               "data": {"serviceType": "WorkflowManager",
                        "info": {"vendor": "wfm", "version": env!("CARGO_PKG_VERSION")}}})
    } else {
        json!({"messageType": "serviceEvent", "serviceId": "WorkflowManager",
               "event": "service.unavailable", "data": {"serviceType": "WorkflowManager"}})
    }
}

// ---------------------------------------------------------------------------------------
// The Interaction Processor's side

pub fn channel(id: &str, media: pb::Media, state: pb::AgentState) -> pb::Channel {
    pb::Channel {
        channel_id: id.into(),
        media: media.into(),
        state: state.into(),
        ..Default::default()
    }
}

pub fn call(id: &str, state: pb::InteractionState) -> pb::Interaction {
    pb::Interaction {
        interaction_id: id.into(),
        channel_id: "voice".into(),
        direction: pb::Direction::Inbound.into(),
        state: state.into(),
        ..Default::default()
    }
}

pub fn create_request(session: &str, agent: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session_id: session.into(),
        agent_id: agent.into(),
        channels: vec![channel(
            "voice",
            pb::Media::Voice,
            pb::AgentState::LoggedOut,
        )],
        ..Default::default()
    }
}

pub async fn create(client: &mut Client, session: &str) -> pb::CreateSessionResponse {
    client
        .create_session(create_request(session, "agent-1"))
        .await
        .unwrap()
        .into_inner()
}

pub fn update(session: &str, sequence: u64, kind: pb::cti_update::Kind) -> pb::ApplyUpdateRequest {
    pb::ApplyUpdateRequest {
        session_id: session.into(),
        sequence,
        update: Some(pb::CtiUpdate { kind: Some(kind) }),
    }
}

pub fn agent(state: pb::AgentState) -> pb::cti_update::Kind {
    pb::cti_update::Kind::Channel(channel("voice", pb::Media::Voice, state))
}

pub fn created(interaction: pb::Interaction) -> pb::cti_update::Kind {
    pb::cti_update::Kind::InteractionCreated(interaction)
}

pub fn changed(id: &str, state: pb::InteractionState) -> pb::cti_update::Kind {
    pb::cti_update::Kind::InteractionChanged(pb::InteractionChange {
        interaction_id: id.into(),
        state: Some(state.into()),
        ..Default::default()
    })
}

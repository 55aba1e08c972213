//! Shared fixtures: a real manager on 127.0.0.1:0, a tonic client, and wire builders.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wfm_manager::{ManagerConfig, ServeError};
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_reference::SigningKey;

pub mod nats;

pub type Client = WorkflowManagerClient<Channel>;

/// The key every test manager signs with, so tests can forge and re-sign references.
pub const KEY: &[u8] = b"0123456789abcdef0123456789abcdef-test-key";

pub struct Manager {
    pub addr: SocketAddr,
    pub stats: std::sync::Arc<wfm_manager::ManagerStats>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), ServeError>>,
}

impl Manager {
    pub async fn start() -> Manager {
        Self::start_with(ManagerConfig::new(SigningKey::from_bytes(KEY).unwrap())).await
    }

    pub async fn start_with(config: ManagerConfig) -> Manager {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, config).await
    }

    pub async fn start_on(listener: TcpListener, config: ManagerConfig) -> Manager {
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let stats = std::sync::Arc::clone(&config.stats);
        let task = tokio::spawn(wfm_manager::serve(listener, config, shutdown.clone()));
        Manager {
            addr,
            stats,
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
}

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

/// `target: enabled capabilities`, the compact form the assertions compare.
pub fn render(event: &pb::StateUpdated) -> String {
    let enabled: Vec<&str> = event
        .capabilities
        .iter()
        .filter(|c| c.enabled)
        .map(|c| c.name.as_str())
        .collect();
    format!("{}: {}", event.target, enabled.join(" "))
}

/// The next message of a binding stream, failing the test after a second of silence.
pub async fn next<T>(stream: &mut tonic::Streaming<T>) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("no message within 5s")
        .unwrap()
}

/// The next `state.updated` of a BindSession stream, rendered.
pub async fn next_event(stream: &mut tonic::Streaming<pb::BindSessionResponse>) -> String {
    match next(stream).await.and_then(|m| m.kind) {
        Some(pb::bind_session_response::Kind::StateUpdated(event)) => render(&event),
        other => panic!("expected state.updated, got {other:?}"),
    }
}

/// Asserts nothing arrives on `stream` for a short while.
pub async fn assert_quiet<T: std::fmt::Debug>(stream: &mut tonic::Streaming<T>) {
    if let Ok(message) = tokio::time::timeout(Duration::from_millis(150), stream.message()).await {
        panic!("expected silence, got {message:?}");
    }
}

/// An open `Attach` stream (wire version 2): its command sender, its responses, and the
/// capability names of its catalogue (read off the first message).
pub struct Attach {
    pub commands: tokio::sync::mpsc::UnboundedSender<pb::AttachRequest>,
    pub stream: tonic::Streaming<pb::AttachResponse>,
    pub names: Vec<String>,
}

/// Opens an `Attach` stream as a gateway does, and reads its catalogue.
pub async fn attach(client: &mut Client) -> Attach {
    let (commands, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut request = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    request.metadata_mut().insert(
        wfm_proto::ATTACH_WIRE_HEADER,
        wfm_proto::ATTACH_WIRE_VERSION.into(),
    );
    let mut stream = client.attach(request).await.unwrap().into_inner();
    let first = next(&mut stream).await.expect("attach stream ended");
    let Some(pb::attach_response::Kind::Catalogue(catalogue)) = first.kind else {
        panic!("the first attach message is not the catalogue: {first:?}");
    };
    assert_eq!(catalogue.wire_version, wfm_proto::ATTACH_WIRE_VERSION);
    Attach {
        commands,
        stream,
        names: catalogue.names,
    }
}

/// A compact state as `target: enabled names`, like [`render`].
pub fn render_compact(names: &[String], state: &pb::CompactState) -> String {
    let enabled: Vec<&str> = (0..names.len())
        .filter(|bit| state.enabled & (1 << bit) != 0)
        .map(|bit| names[bit].as_str())
        .collect();
    format!("{}: {}", state.target, enabled.join(" "))
}

//! The raw ceilings: what the machine does with the same transports and no workflow logic.
//!
//! - **Raw tonic**: a gRPC server implementing only `PushUpdates`, which answers each pushed
//!   update straight back on the response stream. The generator pushes exactly what it
//!   pushes to the manager, and an answer is the ack.
//! - **Raw WebSocket**: an axum WebSocket server, the gateway's own stack, holding as many
//!   client connections as the pipeline does. The generator's updates reach it over one
//!   plain TCP connection (four bytes per update: the client's index), and it sends the same
//!   pre-serialized `state.updated` JSON frame to that client.
//!
//! Both servers run in child processes like the manager and the gateway, and are measured
//! by the very same generator ([`wfm_sim::load::Generator`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response as GrpcResponse, Status, Streaming};
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_proto::v1::workflow_manager_server::{WorkflowManager, WorkflowManagerServer};
use wfm_sim::load::{AgentSpec, Generator, tokio_stream_from};

/// Responses a raw push stream may queue, as the manager allows.
const PUSH_QUEUE: usize = 64;

/// The raw tonic server: `PushUpdates` answers each update at once; nothing else exists.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoService;

type Boxed<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented(
        "the raw ceiling serves PushUpdates only",
    ))
}

#[tonic::async_trait]
impl WorkflowManager for EchoService {
    async fn create_session(
        &self,
        _: Request<pb::CreateSessionRequest>,
    ) -> Result<GrpcResponse<pb::CreateSessionResponse>, Status> {
        unimplemented()
    }

    async fn apply_update(
        &self,
        _: Request<pb::ApplyUpdateRequest>,
    ) -> Result<GrpcResponse<pb::UpdateAck>, Status> {
        unimplemented()
    }

    type PushUpdatesStream = ReceiverStream<Result<pb::PushUpdatesResponse, Status>>;

    async fn push_updates(
        &self,
        request: Request<Streaming<pb::ApplyUpdateRequest>>,
    ) -> Result<GrpcResponse<Self::PushUpdatesStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                let ack = pb::UpdateAck {
                    session_id: request.session_id.clone(),
                    sequence: request.sequence,
                    duplicate: false,
                    view_version: request.sequence,
                    events: 1,
                    // As long as the manager's, so that both build the same ack.
                    manager_instance: "0123456789abcdef".to_string(),
                };
                let response = pb::PushUpdatesResponse {
                    session_id: request.session_id,
                    sequence: request.sequence,
                    result: Some(pb::push_updates_response::Result::Ack(ack)),
                };
                if tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(GrpcResponse::new(ReceiverStream::new(rx)))
    }

    async fn end_session(
        &self,
        _: Request<pb::EndSessionRequest>,
    ) -> Result<GrpcResponse<pb::EndSessionResponse>, Status> {
        unimplemented()
    }

    async fn get_session(
        &self,
        _: Request<pb::GetSessionRequest>,
    ) -> Result<GrpcResponse<pb::GetSessionResponse>, Status> {
        unimplemented()
    }

    type BindSessionStream = Boxed<pb::BindSessionResponse>;

    async fn bind_session(
        &self,
        _: Request<pb::BindSessionRequest>,
    ) -> Result<GrpcResponse<Self::BindSessionStream>, Status> {
        unimplemented()
    }

    type AttachStream = Boxed<pb::AttachResponse>;

    async fn attach(
        &self,
        _: Request<Streaming<pb::AttachRequest>>,
    ) -> Result<GrpcResponse<Self::AttachStream>, Status> {
        unimplemented()
    }

    type ReceiveCommandsStream = Boxed<pb::Command>;

    async fn receive_commands(
        &self,
        _: Request<Streaming<pb::ProcessorMessage>>,
    ) -> Result<GrpcResponse<Self::ReceiveCommandsStream>, Status> {
        unimplemented()
    }

    async fn get_service_info(
        &self,
        _: Request<pb::GetServiceInfoRequest>,
    ) -> Result<GrpcResponse<pb::ServiceInfo>, Status> {
        unimplemented()
    }
}

/// Serves [`EchoService`] on `listener` (with TCP_NODELAY, as the manager does).
pub async fn serve_echo(listener: TcpListener) -> anyhow::Result<()> {
    Server::builder()
        .add_service(WorkflowManagerServer::new(EchoService))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await?;
    Ok(())
}

/// The raw WebSocket server's clients, by index.
type Clients = Arc<Mutex<HashMap<u32, mpsc::UnboundedSender<AxMessage>>>>;

/// Serves raw WebSocket clients on `ws` and takes fan-out orders on `trigger`: each order is
/// a little-endian `u32` client index, answered by sending `frame` to that client. A client
/// names its index in its first text frame.
pub async fn serve_fanout(
    ws: TcpListener,
    trigger: TcpListener,
    frame: String,
) -> anyhow::Result<()> {
    let clients: Clients = Arc::default();
    let app = Router::new()
        .route("/", get(upgrade))
        .with_state(Arc::clone(&clients));
    let frame = AxMessage::text(frame);
    tokio::spawn(async move {
        while let Ok((stream, _)) = trigger.accept().await {
            let _ = stream.set_nodelay(true);
            let clients = Arc::clone(&clients);
            let frame = frame.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                while let Ok(index) = reader.read_u32_le().await {
                    let client = clients
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&index)
                        .cloned();
                    if let Some(client) = client {
                        let _ = client.send(frame.clone());
                    }
                }
            });
        }
    });
    use axum::serve::ListenerExt as _;
    let listener = ws.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn upgrade(State(clients): State<Clients>, upgrade: WebSocketUpgrade) -> Response {
    // The same buffer settings as the gateway's defaults.
    upgrade
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| client(socket, clients))
}

/// One raw client: registers under the index it names, then forwards its frames.
async fn client(mut socket: WebSocket, clients: Clients) {
    let index = match socket.recv().await {
        Some(Ok(AxMessage::Text(text))) => match text.as_str().parse::<u32>() {
            Ok(index) => index,
            Err(_) => return,
        },
        _ => return,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(index, tx);
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                if socket.send(frame).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                if !matches!(incoming, Some(Ok(_))) {
                    break;
                }
            }
        }
    }
    clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&index);
}

/// A generator wired to a raw target, with the tasks that read its answers; dropping it
/// closes every connection.
pub struct RawTarget {
    generator: Generator,
    tasks: Vec<JoinHandle<()>>,
}

impl RawTarget {
    /// The generator.
    pub fn generator(&self) -> &Generator {
        &self.generator
    }
}

impl Drop for RawTarget {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The agent index in a raw session id (`r<index>`).
fn index_of(session_id: &str) -> Option<usize> {
    session_id.strip_prefix('r')?.parse().ok()
}

fn raw_agents(agents: usize) -> Vec<AgentSpec> {
    (0..agents)
        .map(|index| AgentSpec {
            session_id: format!("r{index}"),
            next_sequence: 1,
        })
        .collect()
}

/// `agents` agents pushing to the echo server at `url` over `push_streams` streams.
pub async fn echo_target(
    url: &str,
    agents: usize,
    push_streams: usize,
) -> anyhow::Result<RawTarget> {
    let mut client = WorkflowManagerClient::connect(url.to_string())
        .await
        .with_context(|| format!("cannot reach the raw tonic server at {url}"))?;
    let mut outlets = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..push_streams.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        streams.push(
            client
                .push_updates(tokio_stream_from(rx))
                .await?
                .into_inner(),
        );
        outlets.push(tx);
    }
    let generator = Generator::new(raw_agents(agents), outlets)?;
    let mut tasks = Vec::new();
    for mut responses in streams {
        let probe = generator.probe();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(response)) = responses.message().await {
                if let Some(index) = index_of(&response.session_id) {
                    probe.received(index, 0);
                }
            }
        }));
    }
    Ok(RawTarget { generator, tasks })
}

/// Raw WebSocket clients opened at once.
const CONNECT_CONCURRENCY: usize = 64;

/// `agents` WebSocket clients of the fan-out server at `ws`, driven through `trigger`.
pub async fn fanout_target(
    ws: SocketAddr,
    trigger: SocketAddr,
    agents: usize,
) -> anyhow::Result<RawTarget> {
    let mut sockets = Vec::with_capacity(agents);
    let mut pending = JoinSet::new();
    let mut next = 0usize;
    while sockets.len() < agents {
        while next < agents && pending.len() < CONNECT_CONCURRENCY {
            let index = next;
            pending.spawn(async move {
                let config = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0);
                let (mut socket, _) = tokio_tungstenite::connect_async_with_config(
                    format!("ws://{ws}/"),
                    Some(config),
                    true,
                )
                .await?;
                socket.send(Message::text(index.to_string())).await?;
                Ok::<_, anyhow::Error>((index, socket))
            });
            next += 1;
        }
        if let Some(done) = pending.join_next().await {
            sockets.push(done??);
        }
    }
    sockets.sort_by_key(|(index, _)| *index);

    let trigger = TcpStream::connect(trigger).await?;
    trigger.set_nodelay(true)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<pb::ApplyUpdateRequest>();
    let generator = Generator::new(raw_agents(agents), vec![tx])?;
    let mut tasks = Vec::with_capacity(agents + 1);
    tasks.push(tokio::spawn(async move {
        let mut writer = BufWriter::new(trigger);
        while let Some(request) = rx.recv().await {
            let order = |request: pb::ApplyUpdateRequest| {
                index_of(&request.session_id).and_then(|i| u32::try_from(i).ok())
            };
            if let Some(index) = order(request)
                && writer.write_u32_le(index).await.is_err()
            {
                return;
            }
            // Everything already queued goes out in the same write.
            while let Ok(request) = rx.try_recv() {
                if let Some(index) = order(request)
                    && writer.write_u32_le(index).await.is_err()
                {
                    return;
                }
            }
            if writer.flush().await.is_err() {
                return;
            }
        }
    }));
    for (index, mut socket) in sockets {
        let probe = generator.probe();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                if let Message::Text(text) = frame {
                    probe.received(index, text.len());
                }
            }
        }));
    }
    // Give the server a moment to register the last clients' indices.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(RawTarget { generator, tasks })
}

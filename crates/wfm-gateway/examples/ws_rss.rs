//! Measures the gateway's memory per idle WebSocket connection and per idle bound one.
//!
//! ```text
//! ulimit -n 30000   # each process holds one socket per connection
//! cargo run --release -p wfm-gateway --example ws_rss -- [CONNECTIONS] [READ_BUFFER_BYTES]
//! ```
//!
//! The gateway runs in a child process (this example re-executed with `serve`) so that its
//! resident set holds only gateway state. The parent runs the workflow manager in-process and
//! plays the Interaction Processor (one session per connection) and the MediaBar clients:
//! it opens the connections, measures, binds each to its own session, reads the bind response
//! and the initial state, and measures again. Figures are RSS deltas of the gateway process
//! divided by the connection count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use wfm_gateway::GatewayConfig;
use wfm_manager::ManagerConfig;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_reference::SigningKey;

const KEY: &[u8] = b"ws-rss-example-signing-key-0123456789";

/// Connections opened or bound at once.
const CONCURRENCY: usize = 64;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve(&args[2], args[3].parse()?).await;
    }
    let connections: usize = args.get(1).map_or(Ok(10_000), |a| a.parse())?;
    let read_buffer: usize = args.get(2).map_or(Ok(2 * 1024), |a| a.parse())?;
    let limit = open_files_limit()?;
    anyhow::ensure!(
        limit > connections as u64 + 100,
        "the open-files limit is {limit}; run `ulimit -n {}` first",
        connections + 1000
    );

    let manager_listener = TcpListener::bind("127.0.0.1:0").await?;
    let manager_addr = manager_listener.local_addr()?;
    let config = ManagerConfig::new(SigningKey::from_bytes(KEY)?);
    tokio::spawn(wfm_manager::serve(
        manager_listener,
        config,
        CancellationToken::new(),
    ));

    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", &manager_addr.to_string(), &read_buffer.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
    let gateway: SocketAddr = line.trim().parse()?;
    let pid = child.id();
    wait_ready(gateway).await?;

    let started = std::time::Instant::now();
    let mut client = WorkflowManagerClient::connect(format!("http://{manager_addr}")).await?;
    let mut references = Vec::with_capacity(connections);
    for index in 0..connections {
        let created = client
            .create_session(pb::CreateSessionRequest {
                session_id: format!("s{index}"),
                agent_id: format!("agent{index}"),
                channels: vec![pb::Channel {
                    channel_id: "voice".into(),
                    media: pb::Media::Voice.into(),
                    state: pb::AgentState::Ready.into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await?
            .into_inner();
        references.push(created.resource_reference);
    }
    eprintln!("created {connections} sessions in {:?}", started.elapsed());
    settle().await;
    let base = rss_kib(pid)?;
    let started = std::time::Instant::now();

    let mut sockets = Vec::with_capacity(connections);
    while sockets.len() < connections {
        let mut batch = JoinSet::new();
        for _ in 0..CONCURRENCY.min(connections - sockets.len()) {
            batch.spawn(connect(gateway));
        }
        while let Some(opened) = batch.join_next().await {
            sockets.push(opened??);
        }
    }
    eprintln!(
        "opened {connections} connections in {:?}",
        started.elapsed()
    );
    settle().await;
    let connected = rss_kib(pid)?;
    let started = std::time::Instant::now();

    let mut bound_sockets = Vec::with_capacity(connections);
    let mut pending = sockets.into_iter().zip(references);
    loop {
        let mut batch = JoinSet::new();
        for (socket, reference) in pending.by_ref().take(CONCURRENCY) {
            batch.spawn(bind(socket, reference));
        }
        if batch.is_empty() {
            break;
        }
        while let Some(bound) = batch.join_next().await {
            bound_sockets.push(bound??);
        }
    }
    let bound = bound_sockets.len();
    eprintln!("bound {bound} connections in {:?}", started.elapsed());
    settle().await;
    let bound_rss = rss_kib(pid)?;
    child.kill()?;

    let per = |delta_kib: u64| delta_kib as f64 * 1024.0 / connections as f64;
    println!("connections {connections}, bound {bound}, gateway read buffer {read_buffer} B");
    println!("gateway RSS: base {base} KiB, connected {connected} KiB, bound {bound_rss} KiB");
    println!(
        "per idle connection (unbound): {:.0} B",
        per(connected.saturating_sub(base))
    );
    println!(
        "per binding:                   {:.0} B",
        per(bound_rss.saturating_sub(connected))
    );
    println!(
        "per idle bound connection:     {:.0} B",
        per(bound_rss.saturating_sub(base))
    );
    drop(bound_sockets);
    Ok(())
}

/// The child: a gateway with its defaults (and the given read buffer) in front of the
/// parent's manager.
async fn serve(manager: &str, read_buffer: usize) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let mut config = GatewayConfig::new(format!("http://{manager}"), SigningKey::from_bytes(KEY)?);
    config.read_buffer_size = read_buffer;
    config.max_connections = 1_000_000;
    wfm_gateway::serve(listener, config, CancellationToken::new()).await?;
    Ok(())
}

type Ws = WebSocketStream<TcpStream>;

async fn connect(gateway: SocketAddr) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(gateway).await?;
    // The clients live in this process; keep their buffers small too.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{gateway}/mediabar/v1"),
        tcp,
        Some(config),
    )
    .await?;
    Ok(ws)
}

/// Binds and reads the response and the two initial state events.
async fn bind(mut ws: Ws, reference: String) -> anyhow::Result<Ws> {
    let request = json!({"messageType": "coreRequest", "requestId": "b", "request": "bindResource",
                         "data": {"serviceId": "WorkflowManager", "resourceId": reference}});
    ws.send(Message::text(request.to_string())).await?;
    let mut frames = 0;
    while frames < 3 {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                anyhow::ensure!(
                    frames > 0 || text.contains(r#""result":"success""#),
                    "bind refused: {text}"
                );
                frames += 1;
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => anyhow::bail!("the gateway closed the connection"),
        }
    }
    Ok(ws)
}

async fn wait_ready(gateway: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..500 {
        if let Ok(mut stream) = TcpStream::connect(gateway).await {
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            if response.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the gateway never became ready")
}

async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

fn open_files_limit() -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| anyhow::anyhow!("no open-files limit in /proc/self/limits"))?;
    Ok(line
        .split_whitespace()
        .nth(3)
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(u64::MAX))
}

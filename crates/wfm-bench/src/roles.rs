//! The child roles: each server the harness measures, as `wfm bench <role>` runs it in a
//! child process (see [`crate::proc`]), and the callgrind targets.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use wfm_gateway::GatewayConfig;
use wfm_manager::ManagerConfig;
use wfm_reference::SigningKey;

use crate::micro::{self, Shape};
use crate::proc::exit_with_parent;
use crate::raw;

/// The key both pipeline children share, so that the gateway verifies what the manager
/// signs. A benchmark key, never a real one.
const KEY: &[u8] = b"wfm-bench-signing-key-0123456789abcdef";

fn announce(addresses: &[SocketAddr]) -> anyhow::Result<()> {
    let line: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", line.join(" "))?;
    stdout.flush()?;
    Ok(())
}

fn logging() {
    // Warnings only, to stderr: stdout carries the addresses.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_ansi(wfm_telemetry::init::ansi())
        .with_writer(std::io::stderr)
        .try_init();
}

async fn loopback() -> anyhow::Result<TcpListener> {
    Ok(TcpListener::bind("127.0.0.1:0").await?)
}

/// `serve-manager [--acw-timeout-secs N]`: the workflow manager with its defaults, its
/// default profile's after-call work time-boxed to N seconds when N is not 0.
pub async fn serve_manager(acw_timeout_secs: u32) -> anyhow::Result<()> {
    exit_with_parent();
    logging();
    let listener = loopback().await?;
    announce(&[listener.local_addr()?])?;
    let mut config = ManagerConfig::new(SigningKey::from_bytes(KEY)?);
    if acw_timeout_secs > 0 {
        let text = format!(
            "default = \"boxed\"\n[profiles.boxed]\noptions = {{ acw_timeout_secs = {acw_timeout_secs} }}\n"
        );
        config.profiles = wfm_profiles::ProfileSet::parse("bench-timers.toml", &text)?;
    }
    wfm_manager::serve(listener, config, CancellationToken::new()).await?;
    Ok(())
}

/// `serve-gateway MANAGER_ADDR`: the gateway with its defaults (connection cap lifted) in
/// front of that manager; announces itself once ready.
pub async fn serve_gateway(manager: &str) -> anyhow::Result<()> {
    exit_with_parent();
    logging();
    let listener = loopback().await?;
    let address = listener.local_addr()?;
    let mut config = GatewayConfig::new(format!("http://{manager}"), SigningKey::from_bytes(KEY)?);
    bench_limits(&mut config);
    let server = tokio::spawn(wfm_gateway::serve(
        listener,
        config,
        CancellationToken::new(),
    ));
    wait_ready(address).await?;
    announce(&[address])?;
    server.await??;
    Ok(())
}

/// `serve-cluster-manager NODE_ID NATS_URLS LEASE_MS REPLICAS`: one manager replica in
/// cluster mode, advertising its own loopback address; announces its gRPC address and the
/// address of its `/metrics` (which tells how many sessions it holds).
pub async fn serve_cluster_manager(
    node_id: &str,
    nats_url: &str,
    lease_ms: u64,
    replicas: usize,
) -> anyhow::Result<()> {
    exit_with_parent();
    logging();
    let listener = loopback().await?;
    let metrics = loopback().await?;
    let address = listener.local_addr()?;
    let registry = wfm_telemetry::Registry::new();
    let mut config = ManagerConfig::new(SigningKey::from_bytes(KEY)?);
    config.stats = std::sync::Arc::new(wfm_manager::ManagerStats::new(&registry));
    config.cluster = Some(wfm_manager::ClusterConfig {
        nats_url: nats_url.to_string(),
        node_id: node_id.to_string(),
        advertise_url: format!("http://{address}"),
        lease_ttl: Duration::from_millis(lease_ms),
        replicas,
        nats: Default::default(),
    });
    announce(&[address, metrics.local_addr()?])?;
    tokio::spawn(wfm_telemetry::http::serve_metrics(
        metrics,
        registry,
        None,
        CancellationToken::new(),
    ));
    wfm_manager::serve(listener, config, CancellationToken::new()).await?;
    Ok(())
}

/// `serve-cluster-gateway NATS_URLS MANAGER_URLS`: the gateway in front of a cluster's
/// replicas (found in NATS, starting from the comma-separated URLs); announces itself once
/// ready.
pub async fn serve_cluster_gateway(nats_url: &str, manager_urls: &str) -> anyhow::Result<()> {
    exit_with_parent();
    logging();
    let listener = loopback().await?;
    let address = listener.local_addr()?;
    let mut config = GatewayConfig::new(manager_urls.to_string(), SigningKey::from_bytes(KEY)?);
    config.nats_url = Some(nats_url.to_string());
    bench_limits(&mut config);
    let server = tokio::spawn(wfm_gateway::serve(
        listener,
        config,
        CancellationToken::new(),
    ));
    wait_ready(address).await?;
    announce(&[address])?;
    server.await??;
    Ok(())
}

/// `serve-raw-tonic`: the raw gRPC ceiling.
pub async fn serve_raw_tonic() -> anyhow::Result<()> {
    exit_with_parent();
    let listener = loopback().await?;
    announce(&[listener.local_addr()?])?;
    raw::serve_echo(listener).await
}

/// `serve-raw-ws`: the raw WebSocket fan-out ceiling; announces the WebSocket address and
/// the trigger address.
pub async fn serve_raw_ws() -> anyhow::Result<()> {
    exit_with_parent();
    let ws = loopback().await?;
    let trigger = loopback().await?;
    announce(&[ws.local_addr()?, trigger.local_addr()?])?;
    raw::serve_fanout(ws, trigger, micro::encode_json(&micro::state_event_30())).await
}

/// Waits until the gateway at `address` answers `/readyz` with 200.
pub async fn wait_ready(address: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..500 {
        if let Ok(mut stream) = TcpStream::connect(address).await {
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
    anyhow::bail!("the gateway at {address} never became ready")
}

/// Encodes `event` to JSON `count` times. Not inlined, so that callgrind can count exactly
/// this function.
#[inline(never)]
pub fn wfm_bench_encode_json_n(event: &micro::StateEvent30, count: u64) -> usize {
    let mut bytes = 0;
    for _ in 0..count {
        bytes += std::hint::black_box(micro::encode_json(std::hint::black_box(event))).len();
    }
    bytes
}

/// Encodes `event` to protobuf `count` times, into one reused buffer, as a server
/// encoder does.
#[inline(never)]
pub fn wfm_bench_encode_protobuf_n(event: &micro::StateEvent30, count: u64) -> usize {
    let mut bytes = 0;
    let mut buffer = Vec::with_capacity(2048);
    for _ in 0..count {
        micro::encode_protobuf_into(std::hint::black_box(event), &mut buffer);
        bytes += std::hint::black_box(&buffer).len();
    }
    bytes
}

/// `callgrind WHAT COUNT`: the work callgrind counts. `WHAT` is `apply-1`, `apply-3`,
/// `apply-10`, `snapshot-3`, `json` or `protobuf`; the counted function does `COUNT` of
/// them, and everything else (building sessions and updates) is outside it.
pub fn callgrind_target(what: &str, count: u64) -> anyhow::Result<()> {
    let shape = |n: &str| match n {
        "1" => Ok(Shape::One),
        "3" => Ok(Shape::Three),
        "10" => Ok(Shape::Ten),
        other => anyhow::bail!("no session shape {other}"),
    };
    match what.split_once('-') {
        Some(("apply", n)) => {
            let shape = shape(n)?;
            let mut session = shape.session()?;
            let updates = shape.updates(0, count)?;
            micro::wfm_bench_apply_all(&mut session, updates);
        }
        Some(("snapshot", n)) => {
            let shape = shape(n)?;
            let mut session = shape.session()?;
            let updates = shape.snapshots(0, count)?;
            micro::wfm_bench_apply_all(&mut session, updates);
        }
        _ if what == "json" => {
            wfm_bench_encode_json_n(&micro::state_event_30(), count);
        }
        _ if what == "protobuf" => {
            wfm_bench_encode_protobuf_n(&micro::state_event_30(), count);
        }
        _ => anyhow::bail!("unknown callgrind target {what}"),
    }
    Ok(())
}

/// Counts the instructions per operation of callgrind target `what` (see
/// [`callgrind_target`]) under `valgrind --tool=callgrind`; `None` when valgrind is not
/// installed.
pub fn callgrind_instructions(what: &str, count: u64) -> anyhow::Result<Option<f64>> {
    let function = match what.split_once('-') {
        Some(("apply" | "snapshot", _)) => "*wfm_bench_apply_all*",
        _ if what == "json" => "*wfm_bench_encode_json_n*",
        _ => "*wfm_bench_encode_protobuf_n*",
    };
    let exe = std::env::current_exe()?;
    let output = match std::process::Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--callgrind-out-file=/dev/null")
        .arg(format!("--toggle-collect={function}"))
        .arg(exe)
        .args([crate::cli::COMMAND, "callgrind", what, &count.to_string()])
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "callgrind {what} failed:\n{stderr}"
    );
    let collected = stderr
        .lines()
        .find_map(|line| line.split_once("Collected :").map(|(_, n)| n.trim()))
        .context("no instruction count in callgrind's output")?;
    let total: f64 = collected.parse()?;
    Ok(Some(total / count as f64))
}

/// The gateway's connection caps lifted: the generator's clients are tens of thousands of
/// connections from one loopback address.
fn bench_limits(config: &mut GatewayConfig) {
    config.max_connections = 1_000_000;
    config.max_connections_per_address = 0;
}

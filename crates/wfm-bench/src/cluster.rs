//! The cluster part: three manager replicas, one gateway and a three-node JetStream cluster
//! (buckets replicated three times), against one manager process, in the same invocation.
//!
//! Three phases, one after the other, because each holds one socket per session per side:
//! 1. **Single process**: the suite's own pipeline (one manager, one gateway) at the same
//!    session count and rates, the baseline of every ratio.
//! 2. **Cluster load**: the sessions are created round robin over the replicas (a replica
//!    owns what is created at it, so each owns a third), each bound through the gateway by
//!    its own WebSocket, and driven by `wfm-sim`'s resilient generator, whose `PushUpdates`
//!    streams go to the first replica, which forwards what it does not own (as an IP behind
//!    a plain load balancer does). Memory is read around the binding: each replica's RSS
//!    and session gauge, and the bytes of the JetStream streams behind the buckets.
//! 3. **Failover**, on a fresh cluster: sessions created round robin and bound by clients
//!    that watch their frames; one replica is SIGKILLed, and each of its clients is timed
//!    from the kill to `service.available` and to the full view state it had before.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_sim::load::Pipeline;
use wfm_sim::mediabar::MediaBarClient;
use wfm_sim::resilient::{Manager, ManagerUrls, RetryPolicy};

use crate::nats::NatsCluster;
use crate::proc::{self, ServerChild};
use crate::suite::{self, Memory, Plan, Runs, WARM_SESSIONS, address, say};

/// The replicas' node ids.
pub const NODE_IDS: [&str; 3] = ["a", "b", "c"];

/// The lease TTL of the replicas, as the brief's command line runs them.
pub const LEASE_TTL_MS: u64 = 5000;

/// What the cluster part runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterPlan {
    /// The short mode.
    pub quick: bool,
    /// Sessions of the load phases.
    pub sessions: usize,
    /// Fixed rates, updates/s (closed loop is always measured too).
    pub rates: Vec<u64>,
    /// Runs of every figure.
    pub reps: usize,
    /// Warm-up before each measured run.
    pub warmup: Duration,
    /// Length of each measured run.
    pub duration: Duration,
    /// `PushUpdates` streams of the generator.
    pub push_streams: usize,
    /// Sessions of the failover phase, a third of them on the replica killed.
    pub failover_sessions: usize,
    /// How long the failover phase waits for every affected client.
    pub failover_timeout: Duration,
    /// Lease TTL of the replicas, ms.
    pub lease_ttl_ms: u64,
}

impl ClusterPlan {
    /// The full plan (10,000 sessions, 9,000 in failover: 3,000 on the victim) or the quick
    /// one (1,000 and 900); both fit `open_files`.
    pub fn new(quick: bool, open_files: u64) -> ClusterPlan {
        let fit = |n: usize| {
            n.min(usize::try_from(open_files.saturating_sub(1000)).unwrap_or(n))
                .max(60)
        };
        if quick {
            ClusterPlan {
                quick,
                sessions: fit(1000),
                rates: vec![1000, 5000],
                reps: 1,
                warmup: Duration::from_millis(300),
                duration: Duration::from_millis(1000),
                push_streams: 4,
                failover_sessions: fit(900),
                failover_timeout: Duration::from_secs(30),
                lease_ttl_ms: LEASE_TTL_MS,
            }
        } else {
            ClusterPlan {
                quick,
                sessions: fit(10_000),
                rates: vec![1000, 5000],
                reps: 3,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(4),
                push_streams: 4,
                failover_sessions: fit(9000),
                failover_timeout: Duration::from_secs(60),
                lease_ttl_ms: LEASE_TTL_MS,
            }
        }
    }

    /// Every rate measured, closed loop (0) first.
    pub fn all_rates(&self) -> Vec<u64> {
        let mut rates = vec![0];
        rates.extend(&self.rates);
        rates
    }

    /// The suite's plan with this plan's schedule, for the shared measurement loop.
    fn suite_plan(&self) -> Plan {
        let mut plan = Plan::new(self.quick, proc::open_files_limit());
        plan.main_sessions = self.sessions;
        plan.scale = vec![self.sessions];
        plan.rates.clone_from(&self.rates);
        plan.reps = self.reps;
        plan.warmup = self.warmup;
        plan.duration = self.duration;
        plan.push_streams = self.push_streams;
        plan
    }
}

/// One manager replica's memory around the binding of the load sessions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicaMemory {
    /// Its node id.
    pub node_id: String,
    /// Sessions it held (its `wfm_manager_sessions` gauge) at the baseline.
    pub base_sessions: u64,
    /// Sessions it held with every session bound.
    pub sessions: u64,
    /// RSS at the baseline, KiB.
    pub base_kib: u64,
    /// RSS with every session bound, idle, KiB.
    pub kib: u64,
}

impl ReplicaMemory {
    /// Bytes per session it gained.
    pub fn per_session(&self) -> f64 {
        per(
            self.kib,
            self.base_kib,
            self.sessions.saturating_sub(self.base_sessions),
        )
    }
}

fn per(kib: u64, base_kib: u64, count: u64) -> f64 {
    kib.saturating_sub(base_kib) as f64 * 1024.0 / count.max(1) as f64
}

/// One JetStream stream's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamState {
    /// The stream (`KV_<bucket>`).
    pub name: String,
    /// Bytes it holds (one copy; the cluster stores three).
    pub bytes: u64,
    /// Messages it holds.
    pub messages: u64,
}

/// Memory of the cluster phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterMemory {
    /// Sessions bound after the baseline.
    pub sessions: usize,
    /// Every replica.
    pub replicas: Vec<ReplicaMemory>,
    /// The gateway's RSS at the baseline and with every session bound, KiB.
    pub gateway_base_kib: u64,
    /// See `gateway_base_kib`.
    pub gateway_kib: u64,
    /// Each NATS node's RSS at the baseline and with every session bound, KiB.
    pub nats_kib: Vec<(String, u64, u64)>,
    /// The buckets' streams with every session bound.
    pub streams: Vec<StreamState>,
    /// Sessions alive in the cluster then (the replicas' gauges summed, warm-up included).
    pub live_sessions: u64,
    /// Seconds to create and bind the sessions.
    pub setup_seconds: f64,
}

impl ClusterMemory {
    /// Bytes per live session of stream `name`, one copy.
    pub fn stream_per_session(&self, name: &str) -> Option<f64> {
        self.streams
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.bytes as f64 / self.live_sessions.max(1) as f64)
    }
}

/// Milliseconds, by percentile.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Distribution {
    /// Samples.
    pub count: usize,
    /// Median, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Largest, ms.
    pub max: f64,
}

impl Distribution {
    /// The distribution of `samples` (ms), nearest rank.
    pub fn of(mut samples: Vec<f64>) -> Distribution {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Distribution {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or(0.0),
        }
    }
}

/// What the failover phase measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Failover {
    /// Sessions bound in the phase.
    pub sessions: usize,
    /// The replica killed.
    pub victim: String,
    /// Sessions it held when killed (its clients are the affected ones).
    pub affected: usize,
    /// Affected clients that got `service.available` and their full state again in time.
    pub recovered: usize,
    /// Kill → `service.available`, over the affected clients that got it.
    pub to_available_ms: Distribution,
    /// Kill → the full view state again, over the recovered clients.
    pub to_full_state_ms: Distribution,
    /// Kill → `service.unavailable`, over the affected clients that got it.
    pub to_unavailable_ms: Distribution,
    /// Clients of the surviving replicas told `service.unavailable` (should be 0).
    pub disturbed: usize,
    /// Clients unbound or closed during the phase, with the first reason seen.
    pub unbound: usize,
    /// The first unbound notice or close seen, if any.
    pub first_unbound: Option<String>,
    /// Affected clients still waiting at the end that never got `service.unavailable`.
    pub stuck_never_told: usize,
    /// Affected clients still waiting that got `service.unavailable` but never
    /// `service.available`.
    pub stuck_unavailable: usize,
    /// Affected clients still waiting that got `service.available` but not every target.
    pub stuck_partial: usize,
    /// Sessions the survivors took over (their `takeovers_total` counters, summed).
    pub takeovers: u64,
    /// How long the phase waited at most, s.
    pub timeout_seconds: f64,
}

/// Everything the cluster part measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterResults {
    /// The command that measured it.
    pub command: String,
    /// UTC start, `YYYY-MM-DD HH:MM`.
    pub date: String,
    /// 1-minute load average at the start and the end.
    pub load_before: f64,
    /// See `load_before`.
    pub load_after: f64,
    /// Seconds the part took.
    pub seconds: f64,
    /// What ran.
    pub plan: ClusterPlan,
    /// The `nats-server --version` line.
    pub nats_version: String,
    /// The single-process baseline: processes `generator`, `manager`, `gateway`.
    pub single: Runs,
    /// Its memory.
    pub single_memory: Memory,
    /// The cluster: processes `generator`, `manager a|b|c`, `gateway`, `nats n0|n1|n2`.
    pub cluster: Runs,
    /// Its memory.
    pub memory: ClusterMemory,
    /// The failover phase, unless it could not run (see `problems`).
    pub failover: Option<Failover>,
    /// Faults seen, spelled out: refused or missing updates, repairs, lost sessions.
    pub problems: Vec<String>,
}

/// The cluster part in a report: measured, skipped (and why), or failed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum ClusterPart {
    /// Not part of this run (results written before the cluster part existed).
    #[default]
    NotRun,
    /// Skipped, with the reason.
    Skipped(String),
    /// It started and failed, with the error.
    Failed(String),
    /// Measured.
    Measured(Box<ClusterResults>),
}

impl ClusterPart {
    /// The results, when measured.
    pub fn measured(&self) -> Option<&ClusterResults> {
        match self {
            ClusterPart::Measured(results) => Some(results),
            _ => None,
        }
    }
}

/// The processes of a running cluster: NATS, the replicas and the gateway, every one
/// killed on drop (the gateway and the replicas first, then NATS).
pub struct ClusterStack {
    /// The gateway.
    pub gateway: ServerChild,
    /// The replicas, in [`NODE_IDS`] order; `None` once killed.
    pub replicas: Vec<Option<ServerChild>>,
    /// The NATS cluster.
    pub nats: NatsCluster,
    /// The replicas' gRPC URLs, in [`NODE_IDS`] order.
    pub urls: Vec<String>,
    /// The replicas' metrics addresses.
    pub metrics: Vec<SocketAddr>,
    /// Replicas that exited or never served at their first start, with the error.
    pub start_failures: Vec<String>,
}

/// Starts of one replica before the stack gives up.
const START_ATTEMPTS: usize = 3;

impl ClusterStack {
    /// Starts NATS, three replicas on it and a gateway in front of them.
    pub async fn start(binary: &Path, lease_ttl_ms: u64) -> anyhow::Result<ClusterStack> {
        let nats = NatsCluster::start(binary).await?;
        let nats_urls = nats.urls();
        let mut replicas = Vec::new();
        let (mut urls, mut metrics, mut start_failures) = (Vec::new(), Vec::new(), Vec::new());
        // One after the other: each waits until the previous one serves, so that only the
        // first creates the buckets.
        for node in NODE_IDS {
            let mut attempt = 1;
            let child = loop {
                let mut child = ServerChild::spawn(&[
                    "serve-cluster-manager",
                    node,
                    &nats_urls,
                    &lease_ttl_ms.to_string(),
                    "3",
                ])?;
                let url = format!("http://{}", address(&child, 0)?);
                match wait_serving(&url, &mut child).await {
                    Ok(()) => break child,
                    Err(error) if attempt < START_ATTEMPTS => {
                        // Reported with the figures: a replica that fails to start is a
                        // fault of cluster mode, not of the harness.
                        say(format!(
                            "replica {node} did not start (attempt {attempt}): {error:#}; starting it again"
                        ));
                        start_failures
                            .push(format!("replica {node}, attempt {attempt}: {error:#}"));
                        attempt += 1;
                    }
                    Err(error) => return Err(error),
                }
            };
            urls.push(format!("http://{}", address(&child, 0)?));
            metrics.push(address(&child, 1)?);
            replicas.push(Some(child));
        }
        let gateway = ServerChild::spawn(&["serve-cluster-gateway", &nats_urls, &urls.join(",")])?;
        Ok(ClusterStack {
            gateway,
            replicas,
            nats,
            urls,
            metrics,
            start_failures,
        })
    }

    /// The MediaBar URL of the gateway.
    pub fn mediabar_url(&self) -> anyhow::Result<String> {
        Ok(format!(
            "ws://{}{}",
            address(&self.gateway, 0)?,
            wfm_gateway::MEDIABAR_PATH
        ))
    }

    /// The replicas as the simulator's Interaction Processor sees them, creations spread.
    pub fn manager(&self) -> anyhow::Result<Manager> {
        let urls: ManagerUrls = self.urls.join(",").parse()?;
        Ok(Manager::new(&urls, RetryPolicy::default())?.spreading_creates())
    }

    /// A metric of replica `index` (summed over its label sets), if it is alive.
    pub async fn metric(&self, index: usize, name: &str) -> Option<f64> {
        self.replicas.get(index)?.as_ref()?;
        let text = http_get(*self.metrics.get(index)?, "/metrics").await.ok()?;
        metric_value(&text, name)
    }

    /// The processes whose CPU is sampled: name and pid.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut out = vec![("generator".to_string(), std::process::id())];
        for (node, child) in NODE_IDS.iter().zip(&self.replicas) {
            if let Some(child) = child {
                out.push((format!("manager {node}"), child.pid()));
            }
        }
        out.push(("gateway".to_string(), self.gateway.pid()));
        for node in &self.nats.nodes {
            out.push((format!("nats {}", node.name), node.pid()));
        }
        out
    }
}

/// Waits until the replica at `url` serves gRPC, which it does only once it joined the
/// cluster; fails at once if its process exits.
async fn wait_serving(url: &str, child: &mut ServerChild) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.exit_status() {
            anyhow::bail!(
                "the replica exited ({status}) before serving; its error is on stderr above"
            );
        }
        let attempt = async {
            let mut client = WorkflowManagerClient::connect(url.to_string()).await?;
            client
                .get_service_info(pb::GetServiceInfoRequest::default())
                .await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(())) => return Ok(()),
            _ if Instant::now() > deadline => anyhow::bail!("replica {url} never served"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A plain HTTP/1.1 GET of `path` at `address`; the body.
async fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body)
        .to_string())
}

/// The value of metric `name` in Prometheus text, summed over its label sets.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// The version line of `binary`.
fn nats_version(binary: &Path) -> String {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Runs the cluster part with the `nats-server` at `binary`; `command` is what invoked it.
pub async fn run(
    plan: ClusterPlan,
    binary: &Path,
    command: &str,
) -> anyhow::Result<ClusterResults> {
    let started = Instant::now();
    let load_before = suite::load_average();
    let date = suite::utc_now();
    say(format!(
        "cluster part ({}): {} sessions, rates {:?} and closed loop, {} run(s) of {:?}; failover with {} sessions",
        if plan.quick { "quick" } else { "full" },
        plan.sessions,
        plan.rates,
        plan.reps,
        plan.duration,
        plan.failover_sessions
    ));
    let suite_plan = plan.suite_plan();
    let rates = plan.all_rates();
    let mut problems = Vec::new();

    // 1. The single-process baseline.
    let (single, single_memory) = {
        let bound = suite::bind_pipeline(plan.sessions, plan.push_streams, plan.quick).await?;
        let processes = [
            ("generator", std::process::id()),
            ("manager", bound.manager.pid()),
            ("gateway", bound.gateway.pid()),
        ];
        let runs = suite::measure_all(
            &suite_plan,
            "single process",
            bound.pipeline.generator(),
            &rates,
            &processes,
        )
        .await;
        (runs, bound.memory.clone())
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. The cluster under load.
    let (cluster, memory) = cluster_load(&plan, binary, &suite_plan, &rates, &mut problems).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. Failover, on a fresh cluster.
    let failover = match failover(&plan, binary, &mut problems).await {
        Ok(failover) => {
            if failover.recovered < failover.affected {
                problems.push(format!(
                    "failover: {} of {} affected clients did not get their full state back within {:.0} s: {} were never told service.unavailable, {} got service.unavailable but never service.available, {} got service.available but not every target",
                    failover.affected - failover.recovered,
                    failover.affected,
                    failover.timeout_seconds,
                    failover.stuck_never_told,
                    failover.stuck_unavailable,
                    failover.stuck_partial
                ));
            }
            if failover.disturbed > 0 {
                problems.push(format!(
                    "failover: {} clients of surviving replicas were told service.unavailable",
                    failover.disturbed
                ));
            }
            if failover.unbound > 0 {
                problems.push(format!(
                    "failover: {} clients unbound or closed; first: {}",
                    failover.unbound,
                    failover.first_unbound.as_deref().unwrap_or("?")
                ));
            }
            Some(failover)
        }
        Err(error) => {
            problems.push(format!("failover phase failed: {error:#}"));
            None
        }
    };
    for problem in &problems {
        say(format!("cluster problem: {problem}"));
    }
    Ok(ClusterResults {
        command: command.to_string(),
        date,
        load_before,
        load_after: suite::load_average(),
        seconds: started.elapsed().as_secs_f64(),
        nats_version: nats_version(binary),
        plan,
        single,
        single_memory,
        cluster,
        memory,
        failover,
        problems,
    })
}

/// Phase 2: binds the sessions on a cluster, reads memory, and measures every rate.
async fn cluster_load(
    plan: &ClusterPlan,
    binary: &Path,
    suite_plan: &Plan,
    rates: &[u64],
    problems: &mut Vec<String>,
) -> anyhow::Result<(Runs, ClusterMemory)> {
    let stack = ClusterStack::start(binary, plan.lease_ttl_ms).await?;
    problems.extend(
        stack
            .start_failures
            .iter()
            .map(|f| format!("start-up: {f}")),
    );
    let manager = stack.manager()?;
    let url = stack.mediabar_url()?;
    // As in the suite: a few sessions first, so that the baseline holds what any traffic
    // sets up once (Attach streams, forwarding channels, JetStream consumers).
    let warm = Pipeline::setup(
        manager.clone(),
        &url,
        WARM_SESSIONS,
        plan.push_streams,
        false,
    )
    .await
    .context("cannot bind the warm-up sessions on the cluster")?;
    proc::settle(plan.quick).await;
    let mut memory = ClusterMemory {
        sessions: plan.sessions,
        gateway_base_kib: stack.gateway.rss_kib()?,
        ..ClusterMemory::default()
    };
    for (index, node) in NODE_IDS.iter().enumerate() {
        let child = stack.replicas[index].as_ref().context("replica gone")?;
        memory.replicas.push(ReplicaMemory {
            node_id: (*node).to_string(),
            base_sessions: stack
                .metric(index, "wfm_manager_sessions")
                .await
                .unwrap_or(0.0) as u64,
            base_kib: child.rss_kib()?,
            ..ReplicaMemory::default()
        });
    }
    let nats_base: Vec<u64> = stack
        .nats
        .nodes
        .iter()
        .map(|n| proc::rss_kib(n.pid()).unwrap_or(0))
        .collect();
    let setup = Instant::now();
    let mut stack = stack;
    let pipeline = match Pipeline::setup(
        manager.clone(),
        &url,
        plan.sessions,
        plan.push_streams,
        false,
    )
    .await
    {
        Ok(pipeline) => pipeline,
        Err(error) => {
            // Which processes were still alive says whether a replica crashed.
            let alive: Vec<String> = NODE_IDS
                .iter()
                .zip(&mut stack.replicas)
                .map(
                    |(node, child)| match child.as_mut().and_then(ServerChild::exit_status) {
                        Some(status) => format!("replica {node} exited ({status})"),
                        None => format!("replica {node} running"),
                    },
                )
                .collect();
            anyhow::bail!(
                "cannot bind the {} sessions on the cluster, {:.1} s into the setup: {error} ({})",
                plan.sessions,
                setup.elapsed().as_secs_f64(),
                alive.join(", ")
            );
        }
    };
    memory.setup_seconds = setup.elapsed().as_secs_f64();
    proc::settle(plan.quick).await;
    // Write-behind: let the persister drain before the stream sizes are read.
    wait_persisted(&stack).await;
    memory.gateway_kib = stack.gateway.rss_kib()?;
    for (index, replica) in memory.replicas.iter_mut().enumerate() {
        let child = stack.replicas[index].as_ref().context("replica gone")?;
        replica.kib = child.rss_kib()?;
        replica.sessions = stack
            .metric(index, "wfm_manager_sessions")
            .await
            .unwrap_or(0.0) as u64;
    }
    memory.live_sessions = memory.replicas.iter().map(|r| r.sessions).sum();
    memory.nats_kib = stack
        .nats
        .nodes
        .iter()
        .zip(nats_base)
        .map(|(n, base)| (n.name.clone(), base, proc::rss_kib(n.pid()).unwrap_or(0)))
        .collect();
    for name in ["KV_wfm_sessions", "KV_wfm_owned", "KV_wfm_nodes"] {
        match stack.nats.stream_state(name).await {
            Ok((bytes, messages)) => memory.streams.push(StreamState {
                name: name.to_string(),
                bytes,
                messages,
            }),
            Err(error) => problems.push(format!("cannot read stream {name}: {error}")),
        }
    }
    let expected = (plan.sessions + WARM_SESSIONS) as u64;
    if memory.live_sessions != expected {
        problems.push(format!(
            "after binding, the replicas held {} sessions, not {expected}",
            memory.live_sessions
        ));
    }
    say(format!(
        "cluster {} sessions bound in {:.1} s: {}; KV_wfm_sessions {:.0} B/session",
        plan.sessions,
        memory.setup_seconds,
        memory
            .replicas
            .iter()
            .map(|r| format!(
                "{} {} sessions {:.0} B/session",
                r.node_id,
                r.sessions,
                r.per_session()
            ))
            .collect::<Vec<_>>()
            .join(", "),
        memory.stream_per_session("KV_wfm_sessions").unwrap_or(0.0)
    ));
    let processes = stack.processes();
    let processes: Vec<(&str, u32)> = processes.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let runs = suite::measure_all(
        suite_plan,
        "cluster",
        pipeline.generator(),
        rates,
        &processes,
    )
    .await;
    for &rate in rates {
        for (i, report) in runs.at(rate).iter().enumerate() {
            let label = if rate == 0 {
                "closed loop".to_string()
            } else {
                format!("{rate}/s")
            };
            if report.errors + report.missing > 0 {
                problems.push(format!(
                    "cluster load {label} run {}: {} refused or unexpected, {} missing",
                    i + 1,
                    report.errors,
                    report.missing
                ));
            }
            if report.retries + report.resyncs + report.recreations > 0 {
                problems.push(format!(
                    "cluster load {label} run {}: {} retries, {} resyncs, {} recreations",
                    i + 1,
                    report.retries,
                    report.resyncs,
                    report.recreations
                ));
            }
        }
    }
    let mut after = 0;
    for index in 0..NODE_IDS.len() {
        after += stack
            .metric(index, "wfm_manager_sessions")
            .await
            .unwrap_or(0.0) as u64;
    }
    if after != expected {
        problems.push(format!(
            "after the load runs, the replicas held {after} sessions, not {expected}"
        ));
    }
    // Clients first, then the servers: no client should see its gateway vanish.
    drop(pipeline);
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stack);
    Ok((runs, memory))
}

/// Waits (a bounded while) until no replica has a session waiting to be persisted.
async fn wait_persisted(stack: &ClusterStack) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut pending = 0.0;
        for index in 0..stack.replicas.len() {
            pending += stack
                .metric(index, "wfm_manager_cluster_persist_pending")
                .await
                .unwrap_or(0.0);
        }
        if pending == 0.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one failover client saw, with the instants of the notices.
#[derive(Debug, Default)]
struct Watch {
    /// Targets of the view state before any notice.
    initial: HashSet<String>,
    /// Targets received since the latest `service.available`.
    again: HashSet<String>,
    unavailable: Option<Instant>,
    available: Option<Instant>,
    full: Option<Instant>,
    unbound: Option<String>,
}

fn lock(watch: &Mutex<Watch>) -> std::sync::MutexGuard<'_, Watch> {
    watch.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Applies one frame to `watch`.
fn observe(watch: &Mutex<Watch>, text: &str) {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let mut watch = lock(watch);
    match message["messageType"].as_str() {
        Some("resourceEvent") => {
            let target = message["event"]["target"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if watch.available.is_some() {
                watch.again.insert(target);
                if watch.full.is_none() && watch.initial.is_subset(&watch.again) {
                    watch.full = Some(Instant::now());
                }
            } else if watch.unavailable.is_none() {
                watch.initial.insert(target);
            }
        }
        Some("serviceEvent") => match message["event"].as_str() {
            Some("service.unavailable") => {
                watch.unavailable.get_or_insert_with(Instant::now);
            }
            Some("service.available") => {
                // The full state that counts is the one after the latest notice.
                watch.available = Some(Instant::now());
                watch.again.clear();
                watch.full = None;
            }
            _ => {}
        },
        Some("coreEvent") => {
            watch.unbound.get_or_insert_with(|| text.to_string());
        }
        _ => {}
    }
}

/// The shape of every failover session: a busy voice channel with one connected call, as
/// the load generator's.
fn session_request(session_id: String, agent_id: String) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session_id,
        agent_id,
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
            state: pb::InteractionState::Connected.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Phase 3: sessions round robin on a fresh cluster, each bound by a watching client; the
/// first replica is SIGKILLed and its clients are timed back to their full state.
async fn failover(
    plan: &ClusterPlan,
    binary: &Path,
    problems: &mut Vec<String>,
) -> anyhow::Result<Failover> {
    let mut stack = ClusterStack::start(binary, plan.lease_ttl_ms).await?;
    problems.extend(
        stack
            .start_failures
            .iter()
            .map(|f| format!("start-up (failover cluster): {f}")),
    );
    let url = stack.mediabar_url()?;
    let mut clients = Vec::new();
    for replica in &stack.urls {
        clients.push(WorkflowManagerClient::connect(replica.clone()).await?);
    }
    let run_id = std::process::id();
    let mut pending = JoinSet::new();
    let mut bound = Vec::with_capacity(plan.failover_sessions);
    let mut next = 0;
    while bound.len() < plan.failover_sessions {
        while next < plan.failover_sessions && pending.len() < 64 {
            let owner = next % clients.len();
            let mut client = clients[owner].clone();
            let url = url.clone();
            let request = session_request(
                format!("failover-{run_id}-{next}"),
                format!("agent-f{next}"),
            );
            pending.spawn(async move {
                let created = client.create_session(request).await?.into_inner();
                let mut mediabar = MediaBarClient::connect_lean(&url).await?;
                mediabar.bind(&created.resource_reference, false).await?;
                anyhow::Ok((owner, mediabar))
            });
            next += 1;
        }
        if let Some(done) = pending.join_next().await {
            bound.push(done??);
        }
    }
    let mut readers = Vec::with_capacity(bound.len());
    let mut watches = Vec::with_capacity(bound.len());
    for (owner, mediabar) in bound {
        let watch = Arc::new(Mutex::new(Watch::default()));
        let mut ws = mediabar.into_stream();
        let seen = Arc::clone(&watch);
        readers.push(tokio::spawn(async move {
            while let Some(frame) = ws.next().await {
                match frame {
                    Ok(Message::Text(text)) => observe(&seen, &text),
                    Ok(Message::Close(frame)) => {
                        lock(&seen)
                            .unbound
                            .get_or_insert_with(|| format!("closed: {frame:?}"));
                        break;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        lock(&seen)
                            .unbound
                            .get_or_insert_with(|| format!("failed: {error}"));
                        break;
                    }
                }
            }
        }));
        watches.push((owner, watch));
    }
    // Every client has its initial state, and every record is persisted, before the kill.
    let deadline = Instant::now() + Duration::from_secs(30);
    while watches.iter().any(|(_, w)| lock(w).initial.is_empty()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_persisted(&stack).await;
    let victim = 0;
    let affected = watches.iter().filter(|(o, _)| *o == victim).count();
    let held = stack.metric(victim, "wfm_manager_sessions").await;
    say(format!(
        "failover: {} sessions bound; killing replica {} (holding {} sessions)",
        watches.len(),
        NODE_IDS[victim],
        held.map_or_else(|| "?".to_string(), |h| format!("{h:.0}"))
    ));
    let killed = Instant::now();
    if let Some(mut child) = stack.replicas[victim].take() {
        child.kill();
    }
    let deadline = killed + plan.failover_timeout;
    loop {
        let waiting = watches
            .iter()
            .filter(|(o, w)| *o == victim && lock(w).full.is_none())
            .count();
        if waiting == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A moment more, so that a late notice to an unaffected client is seen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let since = |at: Option<Instant>| {
        at.map(|t| t.saturating_duration_since(killed).as_secs_f64() * 1000.0)
    };
    let (mut to_unavailable, mut to_available, mut to_full) = (Vec::new(), Vec::new(), Vec::new());
    let (mut disturbed, mut unbound, mut first_unbound) = (0, 0, None);
    let mut stuck = [0usize; 3];
    for (owner, watch) in &watches {
        let watch = lock(watch);
        if let Some(reason) = &watch.unbound {
            unbound += 1;
            first_unbound.get_or_insert_with(|| reason.clone());
        }
        if *owner != victim {
            if watch.unavailable.is_some() {
                disturbed += 1;
            }
            continue;
        }
        if watch.full.is_none() {
            match (watch.unavailable, watch.available) {
                (None, None) => stuck[0] += 1,
                (Some(_), None) => stuck[1] += 1,
                _ => stuck[2] += 1,
            }
        }
        to_unavailable.extend(since(watch.unavailable));
        to_available.extend(since(watch.available));
        to_full.extend(since(watch.full));
    }
    let mut takeovers = 0.0;
    for index in 0..stack.replicas.len() {
        takeovers += stack
            .metric(index, "wfm_manager_cluster_takeovers_total")
            .await
            .unwrap_or(0.0);
    }
    for reader in &readers {
        reader.abort();
    }
    drop(stack);
    let failover = Failover {
        sessions: watches.len(),
        victim: NODE_IDS[victim].to_string(),
        affected,
        recovered: to_full.len(),
        to_available_ms: Distribution::of(to_available),
        to_full_state_ms: Distribution::of(to_full),
        to_unavailable_ms: Distribution::of(to_unavailable),
        disturbed,
        unbound,
        first_unbound,
        stuck_never_told: stuck[0],
        stuck_unavailable: stuck[1],
        stuck_partial: stuck[2],
        takeovers: takeovers as u64,
        timeout_seconds: plan.failover_timeout.as_secs_f64(),
    };
    say(format!(
        "failover: {}/{} recovered; full state p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} takeovers",
        failover.recovered,
        failover.affected,
        failover.to_full_state_ms.p50,
        failover.to_full_state_ms.p90,
        failover.to_full_state_ms.p99,
        failover.to_full_state_ms.max,
        failover.takeovers
    ));
    Ok(failover)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_sum_over_labels_and_skip_longer_names() {
        let text = "# HELP wfm_manager_sessions Live sessions.\n\
                    wfm_manager_sessions 12\n\
                    wfm_manager_sessions_other 99\n\
                    wfm_x_total{reason=\"a\"} 2\n\
                    wfm_x_total{reason=\"b\"} 3\n";
        assert_eq!(metric_value(text, "wfm_manager_sessions"), Some(12.0));
        assert_eq!(metric_value(text, "wfm_x_total"), Some(5.0));
        assert_eq!(metric_value(text, "wfm_missing"), None);
    }

    #[test]
    fn distribution_is_nearest_rank() {
        let d = Distribution::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (d.p50, d.p90, d.p99, d.max, d.count),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(Distribution::of(vec![]).count, 0);
    }

    #[test]
    fn a_client_is_full_again_only_after_available_and_every_target() {
        let watch = Mutex::new(Watch::default());
        let event = |target: &str| {
            format!(
                r#"{{"messageType":"resourceEvent","event":{{"name":"state.updated","target":"{target}"}}}}"#
            )
        };
        for target in ["s", "s.voice", "s.voice.c1"] {
            observe(&watch, &event(target));
        }
        observe(
            &watch,
            r#"{"messageType":"serviceEvent","event":"service.unavailable"}"#,
        );
        observe(&watch, &event("s"));
        observe(
            &watch,
            r#"{"messageType":"serviceEvent","event":"service.available"}"#,
        );
        observe(&watch, &event("s"));
        observe(&watch, &event("s.voice"));
        assert!(lock(&watch).full.is_none());
        observe(&watch, &event("s.voice.c1"));
        let watch = lock(&watch);
        assert_eq!(watch.initial.len(), 3);
        assert!(watch.unavailable.is_some() && watch.available.is_some() && watch.full.is_some());
    }
}

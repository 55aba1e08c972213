//! The suite: what `wfm bench all` runs, in what order, and the figures it collects.
//!
//! For each session count it measures the raw tonic ceiling, the raw WebSocket ceiling and
//! the real pipeline, one after the other (each holds one socket per session, and a process
//! may hold about 20,000), every rate `reps` times, interleaved so that a slow moment of the
//! shared machine hits all rates alike. Memory is read from the servers' children before
//! any load runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_sim::load::{Generator, LoadReport, Pipeline, Schedule};

use crate::micro::{self, Shape};
use crate::proc::{self, ServerChild};
use crate::raw;
use crate::roles;
use crate::stats::Spread;

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The short mode (`--quick`).
    pub quick: bool,
    /// Sessions of the latency and throughput figures.
    pub main_sessions: usize,
    /// Session counts of the scale curve (includes `main_sessions`).
    pub scale: Vec<usize>,
    /// Fixed rates measured at `main_sessions`, updates/s.
    pub rates: Vec<u64>,
    /// The fixed rate of the scale curve's p99, updates/s.
    pub scale_rate: u64,
    /// Runs of every figure.
    pub reps: usize,
    /// Warm-up before each measured run.
    pub warmup: Duration,
    /// Length of each measured run.
    pub duration: Duration,
    /// gRPC push streams of the generator.
    pub push_streams: usize,
    /// Batches of each micro figure.
    pub micro_batches: usize,
    /// Length of each micro batch.
    pub micro_batch: Duration,
    /// Operations counted under callgrind.
    pub callgrind_ops: u64,
}

impl Plan {
    /// The full suite, or the quick one; the largest session count fits `open_files`.
    pub fn new(quick: bool, open_files: u64) -> Plan {
        // Each side of a session holds one socket; leave room for everything else.
        let largest = usize::try_from(open_files.saturating_sub(1000) / 1000 * 1000)
            .unwrap_or(19_000)
            .clamp(1000, 19_000);
        if quick {
            // Small enough for any sane limit; smaller still where the limit is tiny.
            let fit = |n: usize| {
                n.min(usize::try_from(open_files.saturating_sub(200)).unwrap_or(n))
                    .max(50)
            };
            let mut scale = vec![fit(1000), fit(2000)];
            scale.dedup();
            Plan {
                quick,
                main_sessions: fit(1000),
                scale,
                rates: vec![1000, 5000, 10_000],
                scale_rate: 5000,
                reps: 3,
                warmup: Duration::from_millis(300),
                duration: Duration::from_millis(1000),
                push_streams: 4,
                micro_batches: 5,
                micro_batch: Duration::from_millis(20),
                callgrind_ops: 2000,
            }
        } else {
            let mut scale = vec![1000, 5000, 10_000, largest];
            scale.dedup();
            Plan {
                quick,
                main_sessions: 10_000.min(largest),
                scale,
                rates: vec![1000, 5000, 10_000],
                scale_rate: 5000,
                reps: 3,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(4),
                push_streams: 4,
                micro_batches: 9,
                micro_batch: Duration::from_millis(100),
                callgrind_ops: 20_000,
            }
        }
    }

    /// The rates measured at `sessions` (0 is closed loop).
    pub fn rates_at(&self, sessions: usize) -> Vec<u64> {
        let mut rates = vec![0];
        if sessions == self.main_sessions {
            rates.extend(&self.rates);
        } else {
            rates.push(self.scale_rate);
        }
        rates
    }

    pub(crate) fn schedule(&self, rate: u64) -> Schedule {
        Schedule {
            rate,
            warmup: self.warmup,
            duration: self.duration,
            progress: false,
        }
    }
}

/// The runs of one target at one session count, by rate (0 is closed loop).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Runs {
    /// Every run, by rate.
    pub by_rate: BTreeMap<u64, Vec<LoadReport>>,
    /// CPU time per update sent (warm-up included) of each process, µs, by process and
    /// rate, one value per run.
    pub cpu_us: BTreeMap<String, BTreeMap<u64, Vec<f64>>>,
}

impl Runs {
    /// The runs at `rate`.
    pub fn at(&self, rate: u64) -> &[LoadReport] {
        self.by_rate.get(&rate).map_or(&[], Vec::as_slice)
    }

    /// A figure of the runs at `rate`, as a spread.
    pub fn spread(&self, rate: u64, figure: impl Fn(&LoadReport) -> f64) -> Spread {
        let values: Vec<f64> = self.at(rate).iter().map(figure).collect();
        Spread::of(&values)
    }

    /// Answers per second at `rate`.
    pub fn throughput(&self, rate: u64) -> Spread {
        self.spread(rate, |r| r.events_per_sec)
    }

    /// A latency percentile at `rate`, ms.
    pub fn latency_ms(&self, rate: u64, percentile: Percentile) -> Spread {
        self.spread(rate, |r| percentile.of(r) as f64 / 1000.0)
    }

    /// CPU µs per update of `process` at `rate`.
    pub fn cpu(&self, process: &str, rate: u64) -> Spread {
        Spread::of(
            self.cpu_us
                .get(process)
                .and_then(|by_rate| by_rate.get(&rate))
                .map_or(&[], Vec::as_slice),
        )
    }

    /// Updates refused or unexpected, plus answers missing, over every run at `rate`.
    pub fn faults(&self, rate: u64) -> u64 {
        self.at(rate).iter().map(|r| r.errors + r.missing).sum()
    }
}

/// A latency percentile of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    /// p50.
    P50,
    /// p90.
    P90,
    /// p99.
    P99,
    /// p99.9.
    P999,
}

impl Percentile {
    /// Every percentile reported.
    pub const ALL: [Percentile; 4] = [
        Percentile::P50,
        Percentile::P90,
        Percentile::P99,
        Percentile::P999,
    ];

    /// Its value in `report`, µs.
    pub fn of(self, report: &LoadReport) -> u64 {
        match self {
            Percentile::P50 => report.latency_us.p50,
            Percentile::P90 => report.latency_us.p90,
            Percentile::P99 => report.latency_us.p99,
            Percentile::P999 => report.latency_us.p999,
        }
    }

    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            Percentile::P50 => "p50",
            Percentile::P90 => "p90",
            Percentile::P99 => "p99",
            Percentile::P999 => "p99.9",
        }
    }
}

/// Resident sets of the pipeline's servers around the setup of the sessions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Sessions created and bound.
    pub sessions: usize,
    /// Manager RSS before any session, KiB.
    pub manager_base_kib: u64,
    /// Manager RSS with every session created and bound, idle, KiB.
    pub manager_kib: u64,
    /// Gateway RSS before any connection, KiB.
    pub gateway_base_kib: u64,
    /// Gateway RSS with every connection open and bound, idle, KiB.
    pub gateway_kib: u64,
    /// Seconds to create and bind every session.
    pub setup_seconds: f64,
}

impl Memory {
    /// Manager bytes per idle bound session.
    pub fn manager_per_session(&self) -> f64 {
        per(self.manager_kib, self.manager_base_kib, self.sessions)
    }

    /// Gateway bytes per idle bound connection.
    pub fn gateway_per_connection(&self) -> f64 {
        per(self.gateway_kib, self.gateway_base_kib, self.sessions)
    }
}

fn per(kib: u64, base_kib: u64, count: usize) -> f64 {
    kib.saturating_sub(base_kib) as f64 * 1024.0 / count.max(1) as f64
}

/// Everything measured at one session count.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Point {
    /// Sessions (and WebSocket clients, and agents).
    pub sessions: usize,
    /// The raw tonic ceiling.
    pub raw_tonic: Runs,
    /// The raw WebSocket ceiling.
    pub raw_ws: Runs,
    /// The real pipeline.
    pub pipeline: Runs,
    /// The pipeline's memory.
    pub memory: Memory,
}

/// The micro figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Micro {
    /// ns per update by interactions in the session.
    pub apply_ns: Vec<(usize, Spread)>,
    /// ns per snapshot of the typical session.
    pub snapshot_ns: Option<Spread>,
    /// ns per `full_view` of the typical session.
    pub full_view_ns: Option<Spread>,
    /// ns per JSON encoding of the 30-capability event.
    pub json_ns: Option<Spread>,
    /// ns per protobuf encoding of it.
    pub protobuf_ns: Option<Spread>,
    /// Its JSON size, bytes.
    pub json_bytes: usize,
    /// Its protobuf size, bytes.
    pub protobuf_bytes: usize,
    /// Instructions per operation under callgrind, by target (`apply-3`, `json`, ...);
    /// empty when valgrind is missing.
    pub instructions: Vec<(String, f64)>,
}

/// The machine and the moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// `rustc --version`, if rustc is on the path.
    pub rustc: String,
    /// Open-files limit of the harness.
    pub open_files: u64,
    /// UTC start time, `YYYY-MM-DD HH:MM`.
    pub date: String,
    /// 1-minute load average when the suite started and when it ended: other work on the
    /// machine shows here.
    pub load_before: f64,
    /// See `load_before`.
    pub load_after: f64,
}

impl Machine {
    /// Reads what `/proc` says about this machine.
    pub fn probe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let rustc = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            rustc,
            open_files: proc::open_files_limit(),
            date: utc_now(),
            load_before: load_average(),
            load_after: 0.0,
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Now, UTC, as `YYYY-MM-DD HH:MM`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// The machine and the moment.
    pub machine: Machine,
    /// What ran.
    pub plan: Plan,
    /// The micro figures.
    pub micro: Micro,
    /// The macro figures by session count, ascending.
    pub points: Vec<Point>,
    /// Seconds the suite took.
    pub seconds: f64,
    /// The cluster part: measured, skipped or failed (absent in results older than it).
    #[serde(default)]
    pub cluster: crate::cluster::ClusterPart,
    /// MediaBar commands beside CTI updates (absent in results older than it).
    #[serde(default)]
    pub commands: Option<crate::commands::CommandFigures>,
    /// Sessions with a pending deadline against the same without (absent in results older
    /// than it).
    #[serde(default)]
    pub timers: Option<crate::timers::TimerFigures>,
}

impl Results {
    /// The point at `sessions`.
    pub fn point(&self, sessions: usize) -> Option<&Point> {
        self.points.iter().find(|p| p.sessions == sessions)
    }
}

pub(crate) fn say(message: impl AsRef<str>) {
    eprintln!("[wfm-bench] {}", message.as_ref());
}

/// Runs the micro figures in this process, and the callgrind counts in children.
pub fn micro(plan: &Plan) -> anyhow::Result<Micro> {
    let (batches, batch) = (plan.micro_batches, plan.micro_batch);
    let mut out = Micro::default();
    for shape in Shape::ALL {
        let spread = micro::time_apply(shape, batches, batch).map_err(anyhow::Error::msg)?;
        say(format!(
            "engine apply, {} interactions: {} ns",
            shape.interactions(),
            spread.show(0)
        ));
        out.apply_ns.push((shape.interactions(), spread));
    }
    out.snapshot_ns =
        Some(micro::time_snapshot(Shape::Three, batches, batch).map_err(anyhow::Error::msg)?);
    let session = Shape::Three.session()?;
    out.full_view_ns = Some(micro::time_per_op(batches, batch, |count| {
        micro::timed(count, || session.full_view())
    }));
    let event = micro::state_event_30();
    out.json_bytes = micro::encode_json(&event).len();
    out.protobuf_bytes = micro::encode_protobuf(&event).len();
    out.json_ns = Some(micro::time_per_op(batches, batch, |count| {
        micro::timed(count, || micro::encode_json(&event))
    }));
    let mut buffer = Vec::with_capacity(2048);
    out.protobuf_ns = Some(micro::time_per_op(batches, batch, |count| {
        micro::timed(count, || {
            micro::encode_protobuf_into(&event, &mut buffer);
            buffer.len()
        })
    }));
    say(format!(
        "encode 30 capabilities: JSON {} ns ({} B), protobuf {} ns ({} B)",
        out.json_ns.map(|s| s.show(0)).unwrap_or_default(),
        out.json_bytes,
        out.protobuf_ns.map(|s| s.show(0)).unwrap_or_default(),
        out.protobuf_bytes
    ));
    for what in [
        "apply-1",
        "apply-3",
        "apply-10",
        "snapshot-3",
        "json",
        "protobuf",
    ] {
        match roles::callgrind_instructions(what, plan.callgrind_ops)? {
            Some(per_op) => {
                say(format!("callgrind {what}: {per_op:.0} instructions per op"));
                out.instructions.push((what.to_string(), per_op));
            }
            None => {
                say("valgrind not found: no instruction counts");
                break;
            }
        }
    }
    Ok(out)
}

/// Measures `generator` at every rate of `rates`, `reps` times, rates interleaved; samples
/// the CPU time of `processes` (name, pid) around each run.
pub(crate) async fn measure_all(
    plan: &Plan,
    label: &str,
    generator: &Generator,
    rates: &[u64],
    processes: &[(&str, u32)],
) -> Runs {
    let mut runs = Runs::default();
    let cpu = || -> Vec<f64> {
        processes
            .iter()
            .map(|(_, pid)| proc::cpu_seconds(*pid).unwrap_or(0.0))
            .collect()
    };
    for rep in 0..plan.reps {
        for &rate in rates {
            let (cpu_before, sent_before) = (cpu(), generator.sent());
            let report = generator.measure(&plan.schedule(rate)).await;
            let sent = generator.sent().saturating_sub(sent_before).max(1) as f64;
            for (((name, _), after), before) in processes.iter().zip(cpu()).zip(cpu_before) {
                runs.cpu_us
                    .entry((*name).to_string())
                    .or_default()
                    .entry(rate)
                    .or_default()
                    .push((after - before) * 1e6 / sent);
            }
            say(format!(
                "{label} {} sessions, {}, run {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms{}",
                generator.agents(),
                if rate == 0 {
                    "closed loop".to_string()
                } else {
                    format!("{rate}/s")
                },
                rep + 1,
                report.events_per_sec,
                report.latency_us.p50 as f64 / 1000.0,
                report.latency_us.p99 as f64 / 1000.0,
                if report.errors + report.missing > 0 {
                    format!(", {} errors, {} missing", report.errors, report.missing)
                } else {
                    String::new()
                }
            ));
            runs.by_rate.entry(rate).or_default().push(report);
        }
    }
    runs
}

pub(crate) fn address(child: &ServerChild, index: usize) -> anyhow::Result<SocketAddr> {
    child
        .addresses
        .get(index)
        .context("the child did not print enough addresses")?
        .parse()
        .context("the child printed a malformed address")
}

/// Runs the raw tonic ceiling at `sessions`.
async fn raw_tonic(plan: &Plan, sessions: usize) -> anyhow::Result<Runs> {
    let child = ServerChild::spawn(&["serve-raw-tonic"])?;
    let url = format!("http://{}", address(&child, 0)?);
    let target = raw::echo_target(&url, sessions, plan.push_streams).await?;
    let processes = [("generator", std::process::id()), ("server", child.pid())];
    Ok(measure_all(
        plan,
        "raw tonic",
        target.generator(),
        &plan.rates_at(sessions),
        &processes,
    )
    .await)
}

/// Runs the raw WebSocket ceiling at `sessions`.
async fn raw_ws(plan: &Plan, sessions: usize) -> anyhow::Result<Runs> {
    let child = ServerChild::spawn(&["serve-raw-ws"])?;
    let target = raw::fanout_target(address(&child, 0)?, address(&child, 1)?, sessions).await?;
    let processes = [("generator", std::process::id()), ("server", child.pid())];
    let runs = measure_all(
        plan,
        "raw ws",
        target.generator(),
        &plan.rates_at(sessions),
        &processes,
    )
    .await;
    drop(target);
    // Let the sockets close before the next phase opens as many.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(runs)
}

/// A manager and a gateway in child processes, with `sessions` sessions bound through
/// them; the resident sets before and after.
pub struct BoundPipeline {
    /// The sessions, their clients and the generator.
    pub pipeline: Pipeline,
    /// The warm-up sessions, bound before the baseline was read; idle.
    _warm: Pipeline,
    /// The manager's process.
    pub manager: ServerChild,
    /// The gateway's process.
    pub gateway: ServerChild,
    /// Memory before and after binding.
    pub memory: Memory,
}

/// Sessions bound before the memory baseline is read.
pub const WARM_SESSIONS: usize = 100;

/// Starts a manager and a gateway, binds [`WARM_SESSIONS`] sessions, reads their RSS,
/// creates and binds `sessions` more over `push_streams` streams, and reads their RSS again
/// once idle.
pub async fn bind_pipeline(
    sessions: usize,
    push_streams: usize,
    quick: bool,
) -> anyhow::Result<BoundPipeline> {
    let manager = ServerChild::spawn(&["serve-manager"])?;
    let manager_addr = address(&manager, 0)?;
    let gateway = ServerChild::spawn(&["serve-gateway", &manager_addr.to_string()])?;
    let gateway_addr = address(&gateway, 0)?;
    let client = WorkflowManagerClient::connect(format!("http://{manager_addr}")).await?;
    let url = format!("ws://{gateway_addr}{}", wfm_gateway::MEDIABAR_PATH);
    // A few sessions first, so that the baseline already holds what any traffic sets up
    // once (the gateway's Attach streams, HTTP/2 and allocator buffers): the figures are the
    // cost of each further session.
    let warm = Pipeline::setup(client.clone(), &url, WARM_SESSIONS, push_streams, false).await?;
    proc::settle(quick).await;
    let mut memory = Memory {
        sessions,
        manager_base_kib: manager.rss_kib()?,
        gateway_base_kib: gateway.rss_kib()?,
        ..Memory::default()
    };
    let started = Instant::now();
    let pipeline = Pipeline::setup(client, &url, sessions, push_streams, false).await?;
    memory.setup_seconds = started.elapsed().as_secs_f64();
    proc::settle(quick).await;
    memory.manager_kib = manager.rss_kib()?;
    memory.gateway_kib = gateway.rss_kib()?;
    Ok(BoundPipeline {
        pipeline,
        _warm: warm,
        manager,
        gateway,
        memory,
    })
}

/// Runs the pipeline at `sessions`: memory first, then load.
async fn pipeline(plan: &Plan, sessions: usize) -> anyhow::Result<(Runs, Memory)> {
    let bound = bind_pipeline(sessions, plan.push_streams, plan.quick).await?;
    let memory = bound.memory.clone();
    say(format!(
        "pipeline {sessions} sessions bound in {:.1} s: manager {:.0} B/session, gateway {:.0} B/connection",
        memory.setup_seconds,
        memory.manager_per_session(),
        memory.gateway_per_connection()
    ));
    let processes = [
        ("generator", std::process::id()),
        ("manager", bound.manager.pid()),
        ("gateway", bound.gateway.pid()),
    ];
    let runs = measure_all(
        plan,
        "pipeline",
        bound.pipeline.generator(),
        &plan.rates_at(sessions),
        &processes,
    )
    .await;
    drop(bound);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((runs, memory))
}

/// Runs the whole suite.
pub async fn run(plan: Plan) -> anyhow::Result<Results> {
    let started = Instant::now();
    let mut machine = Machine::probe();
    say(format!(
        "{} suite: sessions {:?}, {} runs of {:?} after {:?} warm-up",
        if plan.quick { "quick" } else { "full" },
        plan.scale,
        plan.reps,
        plan.duration,
        plan.warmup
    ));
    let micro = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || micro(&plan)).await??
    };
    let mut points = Vec::new();
    for &sessions in &plan.scale {
        let raw_tonic = raw_tonic(&plan, sessions).await?;
        let raw_ws = raw_ws(&plan, sessions).await?;
        let (pipeline, memory) = pipeline(&plan, sessions).await?;
        points.push(Point {
            sessions,
            raw_tonic,
            raw_ws,
            pipeline,
            memory,
        });
    }
    // One command a second per session, as an agent clicking quickly would.
    let commands = crate::commands::run(crate::commands::CommandPlan {
        sessions: plan.main_sessions,
        rate: plan.main_sessions as u64,
        duration: plan.duration * if plan.quick { 3 } else { 4 },
    })
    .await?;
    let timers = crate::timers::run(crate::timers::TimerPlan {
        sessions: plan.main_sessions,
        acw_secs: if plan.quick { 10 } else { 20 },
    })
    .await?;
    machine.load_after = load_average();
    Ok(Results {
        machine,
        plan,
        micro,
        points,
        seconds: started.elapsed().as_secs_f64(),
        cluster: crate::cluster::ClusterPart::NotRun,
        commands: Some(commands),
        timers: Some(timers),
    })
}

/// Holds a pipeline of `sessions` under load for `seconds` at `rate` (0: closed loop),
/// printing the servers' process ids first, so that a profiler can attach to them
/// (`perf record -e cpu-clock -g -p PID`). Prints the report at the end.
pub async fn profile(sessions: usize, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let BoundPipeline {
        pipeline,
        _warm,
        manager,
        gateway,
        memory,
    } = bind_pipeline(sessions, 4, false).await?;
    println!(
        "generator {} manager {} gateway {}",
        std::process::id(),
        manager.pid(),
        gateway.pid()
    );
    print_memory(&memory);
    let schedule = Schedule {
        rate,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(seconds),
        progress: true,
    };
    let cpu = |pid: u32| proc::cpu_seconds(pid).unwrap_or(0.0);
    let before = [
        cpu(std::process::id()),
        cpu(manager.pid()),
        cpu(gateway.pid()),
    ];
    let sent = pipeline.generator().sent();
    let report = pipeline.generator().measure(&schedule).await;
    let sent = pipeline.generator().sent().saturating_sub(sent).max(1) as f64;
    let after = [
        cpu(std::process::id()),
        cpu(manager.pid()),
        cpu(gateway.pid()),
    ];
    // Clients first, then the servers: no client should see its gateway vanish.
    drop(pipeline);
    tokio::time::sleep(Duration::from_millis(200)).await;
    print!("{}", report.table());
    println!(
        "CPU µs per update: generator {:.1}, manager {:.1}, gateway {:.1}",
        (after[0] - before[0]) * 1e6 / sent,
        (after[1] - before[1]) * 1e6 / sent,
        (after[2] - before[2]) * 1e6 / sent
    );
    Ok(())
}

fn print_memory(memory: &Memory) {
    println!(
        "{} sessions bound in {:.1} s\n  manager RSS {} → {} KiB: {:.0} B per idle bound session\n  gateway RSS {} → {} KiB: {:.0} B per idle bound connection",
        memory.sessions,
        memory.setup_seconds,
        memory.manager_base_kib,
        memory.manager_kib,
        memory.manager_per_session(),
        memory.gateway_base_kib,
        memory.gateway_kib,
        memory.gateway_per_connection()
    );
}

/// Measures only memory: `sessions` sessions bound through a manager and a gateway in child
/// processes, idle.
pub async fn memory(sessions: usize) -> anyhow::Result<()> {
    let bound = bind_pipeline(sessions, 4, false).await?;
    print_memory(&bound.memory);
    Ok(())
}

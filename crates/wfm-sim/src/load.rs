//! Load mode: many agent sessions, each bound through the gateway by a real WebSocket
//! client, driven with call-flow updates at a fixed rate (open loop) or as fast as the
//! pipeline answers (closed loop).
//!
//! Latency is measured from the moment an update was *scheduled* to the arrival of the
//! MediaBar frame it causes, so queueing anywhere, including in this generator, counts
//! (no coordinated omission). Every update toggles one call between held and connected,
//! which changes exactly one target, so each update is answered by exactly one frame.
//!
//! The parts are reusable, so that a benchmark harness can drive other targets with the
//! very same generator:
//! - [`Generator`]: the schedule and the measurement. It sends numbered
//!   `ApplyUpdateRequest`s into [`Outlet`]s and is told of answers through a [`Probe`].
//!   Open loop, a dedicated thread sleeps until each update is due and stamps it with its
//!   scheduled time; closed loop, each answer sends the agent's next update.
//! - [`Pipeline`]: sessions on a real manager, each bound through a real gateway by its own
//!   WebSocket, wired to a generator; measured again and again on the same bindings.
//! - [`run`]: one pipeline, one measurement, as `wfm-sim load` does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tonic::transport::Channel;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

use crate::mediabar::MediaBarClient;

/// What to drive.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Concurrent agent sessions, each with its own WebSocket.
    pub sessions: usize,
    /// Updates per second across all sessions; 0 runs closed loop.
    pub rate: u64,
    /// How long to measure.
    pub duration: Duration,
    /// Updates sent before measuring starts are not counted.
    pub warmup: Duration,
    /// gRPC streams the updates are spread over.
    pub push_streams: usize,
    /// Prints progress every second to stderr.
    pub progress: bool,
}

impl LoadOptions {
    /// The schedule of one measurement with these options.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            rate: self.rate,
            warmup: self.warmup,
            duration: self.duration,
            progress: self.progress,
        }
    }
}

/// One measurement: the rate, and how long to warm up and to measure.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Updates per second across all agents; 0 runs closed loop.
    pub rate: u64,
    /// Updates sent before measuring starts are not counted.
    pub warmup: Duration,
    /// How long to measure.
    pub duration: Duration,
    /// Prints progress every second to stderr.
    pub progress: bool,
}

/// The measured figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// Sessions driven.
    pub sessions: usize,
    /// Target rate, updates/s (0: closed loop).
    pub target_rate: u64,
    /// Measured seconds.
    pub seconds: f64,
    /// Updates sent while measuring.
    pub updates: u64,
    /// Updates per second achieved.
    pub updates_per_sec: f64,
    /// MediaBar state events received while measuring.
    pub events: u64,
    /// Events per second.
    pub events_per_sec: f64,
    /// Updates the manager refused, and frames that were not expected.
    pub errors: u64,
    /// Updates sent while measuring whose event never arrived (within a grace period).
    pub missing: u64,
    /// Bytes of WebSocket frames received while measuring.
    pub bytes_received: u64,
    /// Latency percentiles in microseconds.
    pub latency_us: Percentiles,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

/// Why load could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A gRPC call failed.
    #[error("manager: {0}")]
    Manager(#[from] tonic::Status),
    /// A MediaBar client failed to connect or bind.
    #[error("mediabar: {0}")]
    MediaBar(#[from] crate::mediabar::ClientError),
    /// The histogram could not be created.
    #[error("histogram: {0}")]
    Histogram(String),
    /// A setup task failed to run to completion.
    #[error("setup task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The identity of one agent the generator drives.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Its session id, put in every update.
    pub session_id: String,
    /// The sequence number of its next update.
    pub next_sequence: u64,
}

/// Where the generator's updates go: agent `i` always uses outlet `i % outlets`, so the
/// updates of one agent stay in order.
pub type Outlet = mpsc::UnboundedSender<pb::ApplyUpdateRequest>;

/// An update sent: when it was scheduled, and whether it falls in the measured window.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    counted: bool,
}

/// One simulated agent.
struct Agent {
    session_id: String,
    sequence: AtomicU64,
    held: AtomicBool,
    /// Updates whose frame has not arrived yet, oldest first.
    in_flight: Mutex<VecDeque<Sent>>,
}

/// State shared by the scheduler, the readers and the measurement.
struct Shared {
    agents: Vec<Agent>,
    outlets: Vec<Outlet>,
    /// When the generator was made; the window below is in nanoseconds since then.
    origin: Instant,
    window_start: AtomicU64,
    window_end: AtomicU64,
    /// Updates sent since the generator was made, warm-ups included.
    sent: AtomicU64,
    /// Cleared at the end of a measurement, so that closed-loop readers stop sending.
    running: AtomicBool,
    closed_loop: AtomicBool,
    updates: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    /// Whether an update scheduled at `at` is measured.
    fn counted(&self, at: Instant) -> bool {
        let offset = nanos(at.saturating_duration_since(self.origin));
        offset >= self.window_start.load(Ordering::Relaxed)
            && offset < self.window_end.load(Ordering::Relaxed)
    }

    /// Sends the next update of agent `index`, scheduled at `at`.
    fn send(&self, index: usize, at: Instant) {
        let Some(agent) = self.agents.get(index) else {
            return;
        };
        if !self.running.load(Ordering::Relaxed) || self.outlets.is_empty() {
            return;
        }
        let held = !agent.held.fetch_xor(true, Ordering::Relaxed);
        let state = if held {
            pb::InteractionState::Held
        } else {
            pb::InteractionState::Connected
        };
        let sequence = agent.sequence.fetch_add(1, Ordering::Relaxed);
        let counted = self.counted(at);
        agent
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(Sent { at, counted });
        let request = pb::ApplyUpdateRequest {
            session_id: agent.session_id.clone(),
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
        if counted {
            self.updates.fetch_add(1, Ordering::Relaxed);
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let _ = self.outlets[index % self.outlets.len()].send(request);
    }

    /// Records the frame answering agent `index`'s oldest update.
    fn received(&self, index: usize, bytes: usize) {
        let Some(agent) = self.agents.get(index) else {
            return;
        };
        let sent = agent
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        match sent {
            Some(Sent { at, counted: true }) => {
                let micros = u64::try_from(at.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let _ = self
                    .latency
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(micros);
                self.events.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Some(_) => {}
            None => {
                // A frame nothing asked for; those that arrive before the window (the
                // initial view state of a fresh binding) are not errors.
                if self.running.load(Ordering::Relaxed) && self.counted(Instant::now()) {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        }
        if self.closed_loop.load(Ordering::Relaxed) {
            self.send(index, Instant::now());
        }
    }

    /// Clears the counters and the in-flight queues before a measurement.
    fn reset(&self) {
        for agent in &self.agents {
            agent
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        for counter in [&self.updates, &self.events, &self.errors, &self.bytes] {
            counter.store(0, Ordering::Relaxed);
        }
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reset();
    }
}

/// The answering side of a generator, handed to whatever reads the answers.
#[derive(Clone)]
pub struct Probe(Arc<Shared>);

impl Probe {
    /// Records the answer to agent `index`'s oldest outstanding update: a frame of `bytes`.
    /// In closed loop, this sends the agent's next update.
    pub fn received(&self, index: usize, bytes: usize) {
        self.0.received(index, bytes);
    }

    /// Counts an update the target refused.
    pub fn refused(&self) {
        self.0.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The load generator: agents, their outlets, and the measurement.
pub struct Generator {
    shared: Arc<Shared>,
}

/// How long a measurement waits, after its window, for the answers still in flight.
const GRACE: Duration = Duration::from_secs(2);

impl Generator {
    /// A generator driving `agents` through `outlets`.
    pub fn new(agents: Vec<AgentSpec>, outlets: Vec<Outlet>) -> Result<Self, LoadError> {
        let histogram = Histogram::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| LoadError::Histogram(e.to_string()))?;
        let agents = agents
            .into_iter()
            .map(|spec| Agent {
                session_id: spec.session_id,
                sequence: AtomicU64::new(spec.next_sequence),
                held: AtomicBool::new(false),
                in_flight: Mutex::new(VecDeque::new()),
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                agents,
                outlets,
                origin: Instant::now(),
                window_start: AtomicU64::new(0),
                window_end: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                running: AtomicBool::new(false),
                closed_loop: AtomicBool::new(false),
                updates: AtomicU64::new(0),
                events: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                latency: Mutex::new(histogram),
            }),
        })
    }

    /// The handle that readers of answers report to.
    pub fn probe(&self) -> Probe {
        Probe(Arc::clone(&self.shared))
    }

    /// Agents driven.
    pub fn agents(&self) -> usize {
        self.shared.agents.len()
    }

    /// Updates sent since the generator was made, warm-ups included.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Runs one measurement and reports it. May be called again on the same agents.
    pub async fn measure(&self, schedule: &Schedule) -> LoadReport {
        let shared = &self.shared;
        shared.reset();
        let started = Instant::now();
        let measure_from = started + schedule.warmup;
        let end = measure_from + schedule.duration;
        let offset = |at: Instant| nanos(at.saturating_duration_since(shared.origin));
        shared
            .window_start
            .store(offset(measure_from), Ordering::Relaxed);
        shared.window_end.store(offset(end), Ordering::Relaxed);
        shared
            .closed_loop
            .store(schedule.rate == 0, Ordering::Relaxed);
        shared.running.store(true, Ordering::Relaxed);

        let scheduler = if schedule.rate == 0 {
            for index in 0..shared.agents.len() {
                shared.send(index, Instant::now());
            }
            None
        } else {
            let shared = Arc::clone(shared);
            let rate = schedule.rate;
            Some(std::thread::spawn(move || {
                open_loop(&shared, rate, started, end);
            }))
        };
        progress(shared, schedule, started, end).await;
        shared.running.store(false, Ordering::Relaxed);
        shared.closed_loop.store(false, Ordering::Relaxed);
        if let Some(thread) = scheduler {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Let the answers in flight land before counting what is missing.
        let grace = Instant::now() + GRACE;
        while shared.events.load(Ordering::Relaxed) + shared.errors.load(Ordering::Relaxed)
            < shared.updates.load(Ordering::Relaxed)
            && Instant::now() < grace
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.report(schedule)
    }

    fn report(&self, schedule: &Schedule) -> LoadReport {
        let shared = &self.shared;
        let seconds = schedule.duration.as_secs_f64().max(1e-9);
        let updates = shared.updates.load(Ordering::Relaxed);
        let events = shared.events.load(Ordering::Relaxed);
        let histogram = shared
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        LoadReport {
            sessions: shared.agents.len(),
            target_rate: schedule.rate,
            seconds,
            updates,
            updates_per_sec: updates as f64 / seconds,
            events,
            events_per_sec: events as f64 / seconds,
            errors: shared.errors.load(Ordering::Relaxed),
            missing: updates.saturating_sub(events),
            bytes_received: shared.bytes.load(Ordering::Relaxed),
            latency_us: Percentiles {
                p50: histogram.value_at_quantile(0.50),
                p90: histogram.value_at_quantile(0.90),
                p99: histogram.value_at_quantile(0.99),
                p999: histogram.value_at_quantile(0.999),
                max: histogram.max(),
            },
        }
    }
}

/// The open-loop scheduler, on its own thread: sleeps until the next update is due, sends
/// everything due by then round-robin over the agents, each stamped with its own scheduled
/// time, until `end`. A thread's sleep is precise to tens of microseconds, where the async
/// timer rounds to milliseconds and would send in bursts.
fn open_loop(shared: &Shared, rate: u64, started: Instant, end: Instant) {
    let agents = shared.agents.len() as u64;
    if agents == 0 {
        return;
    }
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut sent: u64 = 0;
    loop {
        let now = Instant::now();
        let mut due = started + interval.mul_f64(sent as f64);
        while due <= now && due < end {
            shared.send(usize::try_from(sent % agents).unwrap_or(0), due);
            sent += 1;
            due = started + interval.mul_f64(sent as f64);
        }
        if due >= end {
            return;
        }
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

/// Waits until `end`, printing progress once a second if asked.
async fn progress(shared: &Shared, schedule: &Schedule, started: Instant, end: Instant) {
    let mut next = started + Duration::from_secs(1);
    loop {
        let wake = if schedule.progress {
            next.min(end)
        } else {
            end
        };
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        if now >= end {
            return;
        }
        next += Duration::from_secs(1);
        let p99 = shared
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .value_at_quantile(0.99);
        eprintln!(
            "  t={:>3.0}s  updates {:>9}  events {:>9}  errors {}  p99 {:.2} ms",
            (now - started).as_secs_f64(),
            shared.updates.load(Ordering::Relaxed),
            shared.events.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
            p99 as f64 / 1000.0
        );
    }
}

/// The number of the next session this process creates.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(0);

/// Sessions created on a manager and bound through a gateway, at most this many at once.
const SETUP_CONCURRENCY: usize = 64;

/// The real pipeline: sessions on a manager, each bound by its own MediaBar WebSocket
/// through the gateway, driven over `PushUpdates` streams. Dropping it closes every
/// WebSocket and stream.
pub struct Pipeline {
    generator: Generator,
    tasks: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Creates `sessions` sessions (each a busy voice channel with one connected inbound
    /// call), binds a lean MediaBar client to each, and opens `push_streams` streams.
    pub async fn setup(
        manager: WorkflowManagerClient<Channel>,
        mediabar_url: &str,
        sessions: usize,
        push_streams: usize,
        progress: bool,
    ) -> Result<Self, LoadError> {
        let run_id = std::process::id();
        let mut bound = Vec::with_capacity(sessions);
        let mut pending = JoinSet::new();
        let mut next = 0;
        while bound.len() < sessions {
            while next < sessions && pending.len() < SETUP_CONCURRENCY {
                let manager = manager.clone();
                let url = mediabar_url.to_string();
                // Numbered across the process, so that pipelines set up side by side never
                // name the same session.
                let number = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
                let session_id = format!("load-{run_id}-{number}");
                let index = next;
                pending
                    .spawn(async move { bind_one(manager, &url, session_id, number, index).await });
                next += 1;
            }
            if let Some(done) = pending.join_next().await {
                bound.push(done??);
                if progress && bound.len() % 1000 == 0 {
                    eprintln!("  {} sessions bound", bound.len());
                }
            }
        }
        bound.sort_by_key(|(index, _, _)| *index);

        let mut manager = manager;
        let mut outlets = Vec::new();
        let mut acks = Vec::new();
        for _ in 0..push_streams.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let responses = manager
                .push_updates(tokio_stream_from(rx))
                .await?
                .into_inner();
            outlets.push(tx);
            acks.push(responses);
        }
        let mut agents = Vec::with_capacity(sessions);
        let mut clients = Vec::with_capacity(sessions);
        for (_, spec, client) in bound {
            agents.push(spec);
            clients.push(client);
        }
        let generator = Generator::new(agents, outlets)?;
        let mut tasks = Vec::with_capacity(sessions + acks.len());
        for mut responses in acks {
            let probe = generator.probe();
            tasks.push(tokio::spawn(async move {
                loop {
                    match responses.message().await {
                        Ok(Some(response)) => {
                            if matches!(
                                response.result,
                                Some(pb::push_updates_response::Result::Error(_))
                            ) {
                                probe.refused();
                            }
                        }
                        Ok(None) => {
                            eprintln!("wfm-sim load: a PushUpdates stream ended");
                            break;
                        }
                        Err(status) => {
                            eprintln!("wfm-sim load: a PushUpdates stream failed: {status}");
                            break;
                        }
                    }
                }
            }));
        }
        // Unusual frames and lost clients: the first is reported, the rest only counted, so
        // that a gateway going away does not print thousands of lines.
        let lost = Arc::new(AtomicU64::new(0));
        for (index, client) in clients.into_iter().enumerate() {
            let probe = generator.probe();
            let lost = Arc::clone(&lost);
            let mut ws = client.into_stream();
            tasks.push(tokio::spawn(async move {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(text))) => {
                            if text.contains("\"resourceEvent\"") {
                                probe.received(index, text.len());
                            } else if (text.contains("\"serviceEvent\"")
                                || text.contains("\"coreEvent\""))
                                && lost.fetch_add(1, Ordering::Relaxed) == 0
                            {
                                eprintln!("wfm-sim load: client {index}: {text}");
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            eprintln!(
                                "wfm-sim load: client {index} closed by the gateway: {frame:?}"
                            );
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            if lost.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("wfm-sim load: client {index} failed: {error}");
                            }
                            break;
                        }
                        None => break,
                    }
                }
            }));
        }
        Ok(Self { generator, tasks })
    }

    /// The generator driving these sessions.
    pub fn generator(&self) -> &Generator {
        &self.generator
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Creates session `session_id` (agent number `number`) and binds a MediaBar client to it;
/// `index` is its place in the pipeline.
async fn bind_one(
    mut manager: WorkflowManagerClient<Channel>,
    mediabar_url: &str,
    session_id: String,
    number: u64,
    index: usize,
) -> Result<(usize, AgentSpec, MediaBarClient), LoadError> {
    let created = manager
        .create_session(pb::CreateSessionRequest {
            session_id: session_id.clone(),
            agent_id: format!("agent-{number}"),
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
        })
        .await?
        .into_inner();
    let mut client = MediaBarClient::connect_lean(mediabar_url).await?;
    client.bind(&created.resource_reference, false).await?;
    let spec = AgentSpec {
        session_id,
        next_sequence: created.next_sequence,
    };
    Ok((index, spec, client))
}

/// Creates the sessions, binds a MediaBar to each, drives them once, and reports.
pub async fn run(
    manager: WorkflowManagerClient<Channel>,
    mediabar_url: &str,
    options: &LoadOptions,
) -> Result<LoadReport, LoadError> {
    let pipeline = Pipeline::setup(
        manager,
        mediabar_url,
        options.sessions,
        options.push_streams,
        options.progress,
    )
    .await?;
    Ok(pipeline.generator().measure(&options.schedule()).await)
}

/// A stream of what `rx` receives, for a gRPC client stream.
pub fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

impl LoadReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let target = if self.target_rate == 0 {
            "closed loop".to_string()
        } else {
            format!("{} updates/s", self.target_rate)
        };
        format!(
            "wfm-sim load: {} sessions, {target}, {:.0} s measured\n\
             \x20 updates sent      {:>10}  ({:.0}/s)\n\
             \x20 events received   {:>10}  ({:.0}/s)\n\
             \x20 errors            {:>10}\n\
             \x20 missing events    {:>10}\n\
             \x20 bytes received    {:>10}\n\
             \x20 latency (ms)      p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
            self.sessions,
            self.seconds,
            self.updates,
            self.updates_per_sec,
            self.events,
            self.events_per_sec,
            self.errors,
            self.missing,
            self.bytes_received,
            ms(self.latency_us.p50),
            ms(self.latency_us.p90),
            ms(self.latency_us.p99),
            ms(self.latency_us.p999),
            ms(self.latency_us.max),
        )
    }
}

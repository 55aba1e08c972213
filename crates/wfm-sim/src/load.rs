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
//!
//! The pipeline is an Interaction Processor as a cluster expects one: its streams move to the
//! next replica when theirs fails and send again what was not answered (see `lane`), a
//! sequence gap is repaired with a snapshot of the agent's state at the expected sequence,
//! and a session the manager lost is created again. The report counts each repair.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tonic::{Code, Status, Streaming};
use wfm_proto::v1 as pb;

use crate::mediabar::MediaBarClient;
use crate::resilient::{self, Manager, Recovery, RecoveryCounts};

mod lane;

use lane::{Entry, Inbox, Lane, Update};

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
    /// Calls and streams retried at another replica (after `UNAVAILABLE` or a transport
    /// error) since the previous report; setup included in the first.
    #[serde(default)]
    pub retries: u64,
    /// Sequence gaps repaired with a snapshot, likewise.
    #[serde(default)]
    pub resyncs: u64,
    /// Sessions the manager lost, created again with their state, likewise.
    #[serde(default)]
    pub recreations: u64,
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
    Manager(#[from] Status),
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
    state: Mutex<AgentState>,
}

/// What an agent has sent, under one lock so that a repair renumbers it atomically.
struct AgentState {
    /// The sequence number of its next update.
    sequence: u64,
    /// Whether its call is on hold, after its latest update.
    held: bool,
    /// Updates whose frame has not arrived yet, oldest first.
    in_flight: VecDeque<Sent>,
    repair: Repair,
    /// After a repair, the one frame its snapshot may cause, which nothing asked for.
    spare_frame: bool,
}

/// A repair under way for one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    None,
    /// A snapshot at this sequence is on its way; answers to what was sent before it are
    /// stale.
    Resync {
        snapshot: u64,
    },
    /// The session is being created again; the agent sends nothing meanwhile.
    Recreate,
}

impl Repair {
    /// Whether the answer to `entry` concerns an update that an ongoing repair replaces.
    fn supersedes(self, entry: &Entry) -> bool {
        match self {
            Repair::None => false,
            Repair::Resync { snapshot } => {
                !(matches!(entry.update, Update::Snapshot { .. }) && entry.sequence == snapshot)
            }
            Repair::Recreate => true,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The voice channel of a load agent: busy on its one call.
fn load_channels() -> Vec<pb::Channel> {
    vec![pb::Channel {
        channel_id: "voice".into(),
        media: pb::Media::Voice.into(),
        state: pb::AgentState::Busy.into(),
        ..Default::default()
    }]
}

/// The one call of a load agent.
fn load_call(held: bool) -> pb::Interaction {
    pb::Interaction {
        interaction_id: "c1".into(),
        channel_id: "voice".into(),
        direction: pb::Direction::Inbound.into(),
        state: call_state(held).into(),
        ..Default::default()
    }
}

fn call_state(held: bool) -> pb::InteractionState {
    if held {
        pb::InteractionState::Held
    } else {
        pb::InteractionState::Connected
    }
}

/// State shared by the scheduler, the readers and the measurement.
struct Shared {
    agents: Vec<Agent>,
    lanes: Vec<Lane>,
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
    recovery: Arc<Recovery>,
    /// The recovery counts at the previous report.
    reported: Mutex<RecoveryCounts>,
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
        if !self.running.load(Ordering::Relaxed) || self.lanes.is_empty() {
            return;
        }
        let counted = self.counted(at);
        let mut state = lock(&agent.state);
        if state.repair == Repair::Recreate {
            return;
        }
        state.held = !state.held;
        let entry = Entry {
            agent: index,
            sequence: state.sequence,
            update: Update::Toggle { held: state.held },
        };
        state.sequence += 1;
        state.in_flight.push_back(Sent { at, counted });
        // Queued under the agent's lock, so that a repair's snapshot cannot overtake it.
        self.lanes[index % self.lanes.len()].send(entry, self.request(&entry));
        drop(state);
        if counted {
            self.updates.fetch_add(1, Ordering::Relaxed);
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The request `entry` describes.
    fn request(&self, entry: &Entry) -> pb::ApplyUpdateRequest {
        let kind = match entry.update {
            Update::Toggle { held } => {
                pb::cti_update::Kind::InteractionChanged(pb::InteractionChange {
                    interaction_id: "c1".into(),
                    state: Some(call_state(held).into()),
                    ..Default::default()
                })
            }
            Update::Snapshot { held } => pb::cti_update::Kind::Snapshot(pb::Snapshot {
                channels: load_channels(),
                interactions: vec![load_call(held)],
            }),
        };
        pb::ApplyUpdateRequest {
            session_id: self
                .agents
                .get(entry.agent)
                .map(|agent| agent.session_id.clone())
                .unwrap_or_default(),
            sequence: entry.sequence,
            update: Some(pb::CtiUpdate { kind: Some(kind) }),
        }
    }

    /// An update was applied: a repair's snapshot ends the repair.
    fn applied(&self, entry: &Entry) {
        // Only a snapshot ends a repair; the common answer takes no lock.
        if !matches!(entry.update, Update::Snapshot { .. }) {
            return;
        }
        let Some(agent) = self.agents.get(entry.agent) else {
            return;
        };
        let mut state = lock(&agent.state);
        if state.repair
            == (Repair::Resync {
                snapshot: entry.sequence,
            })
        {
            state.repair = Repair::None;
        }
    }

    /// The manager expects `expected` instead of `entry`: the agent's current state goes as
    /// a snapshot at `expected`, and its numbering continues after it. `false` when an
    /// ongoing repair already covers `entry`.
    fn gap(&self, entry: &Entry, expected: u64) -> bool {
        let Some(agent) = self.agents.get(entry.agent) else {
            return false;
        };
        let mut state = lock(&agent.state);
        if state.repair.supersedes(entry) {
            return false;
        }
        let snapshot = Entry {
            agent: entry.agent,
            sequence: expected,
            update: Update::Snapshot { held: state.held },
        };
        state.sequence = expected + 1;
        state.repair = Repair::Resync { snapshot: expected };
        // What was in flight is refused or replaced; its frames will not come.
        state.in_flight.clear();
        state.spare_frame = true;
        self.lanes[entry.agent % self.lanes.len()].send(snapshot, self.request(&snapshot));
        drop(state);
        self.recovery.resynced();
        self.kick(entry.agent);
        true
    }

    /// The manager no longer knows `entry`'s session: the agent stops sending, and the call's
    /// current state is returned for the new session. `None` when a repair covers `entry`.
    fn lost(&self, entry: &Entry) -> Option<bool> {
        let agent = self.agents.get(entry.agent)?;
        let mut state = lock(&agent.state);
        if state.repair.supersedes(entry) {
            return None;
        }
        state.repair = Repair::Recreate;
        state.in_flight.clear();
        Some(state.held)
    }

    /// The agent's session exists again (or could not be made, `None`): it resumes.
    fn recreated(&self, index: usize, next_sequence: Option<u64>) {
        let Some(agent) = self.agents.get(index) else {
            return;
        };
        let mut state = lock(&agent.state);
        state.repair = Repair::None;
        match next_sequence {
            Some(next) => {
                state.sequence = next;
                state.spare_frame = true;
                drop(state);
                self.recovery.recreated();
            }
            None => {
                drop(state);
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.kick(index);
    }

    /// In closed loop, restarts an agent whose chain of answers a repair cut.
    fn kick(&self, index: usize) {
        if self.closed_loop.load(Ordering::Relaxed) {
            self.send(index, Instant::now());
        }
    }

    /// Records the frame answering agent `index`'s oldest update.
    fn received(&self, index: usize, bytes: usize) {
        let Some(agent) = self.agents.get(index) else {
            return;
        };
        let mut state = lock(&agent.state);
        let sent = state.in_flight.pop_front();
        if sent.is_none() && state.spare_frame {
            state.spare_frame = false;
            return;
        }
        drop(state);
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
            lock(&agent.state).in_flight.clear();
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
        let lanes = outlets.into_iter().map(Lane::plain).collect();
        Self::with_lanes(agents, lanes, Arc::default())
    }

    fn with_lanes(
        agents: Vec<AgentSpec>,
        lanes: Vec<Lane>,
        recovery: Arc<Recovery>,
    ) -> Result<Self, LoadError> {
        let histogram = Histogram::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| LoadError::Histogram(e.to_string()))?;
        let agents = agents
            .into_iter()
            .map(|spec| Agent {
                session_id: spec.session_id,
                state: Mutex::new(AgentState {
                    sequence: spec.next_sequence,
                    held: false,
                    in_flight: VecDeque::new(),
                    repair: Repair::None,
                    spare_frame: false,
                }),
            })
            .collect();
        let reported = Mutex::new(recovery.counts());
        Ok(Self {
            shared: Arc::new(Shared {
                agents,
                lanes,
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
                recovery,
                reported,
            }),
        })
    }

    /// The handle that readers of answers report to.
    pub fn probe(&self) -> Probe {
        Probe(Arc::clone(&self.shared))
    }

    /// The session id of agent `index`.
    pub fn session_id(&self, index: usize) -> Option<&str> {
        self.shared.agents.get(index).map(|a| a.session_id.as_str())
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
        let recovery = {
            let now = shared.recovery.counts();
            let mut reported = lock(&shared.reported);
            let since = now.since(*reported);
            *reported = now;
            since
        };
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
            retries: recovery.retries,
            resyncs: recovery.resyncs,
            recreations: recovery.recreations,
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
        manager: impl Into<Manager>,
        mediabar_url: &str,
        sessions: usize,
        push_streams: usize,
        progress: bool,
    ) -> Result<Self, LoadError> {
        let manager = manager.into();
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
                pending.spawn(
                    async move { bind_one(&manager, &url, session_id, number, index).await },
                );
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

        let mut lanes = Vec::new();
        let mut inboxes = Vec::new();
        for _ in 0..push_streams.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            lanes.push(Lane::logged(tx));
            inboxes.push(Inbox::new(rx));
        }
        let mut agents = Vec::with_capacity(sessions);
        let mut clients = Vec::with_capacity(sessions);
        let mut identities = Vec::with_capacity(sessions);
        for (_, (spec, identity), client) in bound {
            agents.push(spec);
            identities.push(identity);
            clients.push(client);
        }
        let generator = Generator::with_lanes(agents, lanes, Arc::clone(manager.recovery()))?;
        let identities: Arc<[Identity]> = identities.into();
        let mut tasks = Vec::with_capacity(sessions + inboxes.len());
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let stream = LaneStream {
                shared: Arc::clone(&generator.shared),
                index,
                inbox,
                manager: manager.clone(),
                identities: Arc::clone(&identities),
            };
            let (replica, responses) = stream.open().await?;
            tasks.push(tokio::spawn(stream.drive(replica, responses)));
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

/// What to do after an answer.
enum Next {
    Read,
    /// The replica refused with `UNAVAILABLE`: move to the next one.
    MoveOn,
}

/// One lane's `PushUpdates` stream and the repairs of its agents.
struct LaneStream {
    shared: Arc<Shared>,
    index: usize,
    inbox: Arc<Inbox>,
    manager: Manager,
    identities: Arc<[Identity]>,
}

/// Who a load agent is, for recreating its session as the same one.
struct Identity {
    agent_id: String,
    /// Its session's reference: a recreation resumes it, so the bound client rebinds.
    reference: String,
}

impl LaneStream {
    fn lane(&self) -> &Lane {
        &self.shared.lanes[self.index]
    }

    /// Opens the stream at the current replica, moving on while replicas are unavailable:
    /// it first sends what earlier streams sent and got no answer for.
    async fn open(&self) -> Result<(usize, Streaming<pb::PushUpdatesResponse>), Status> {
        let mut delays = self.manager.policy().delays();
        loop {
            let (replica, mut client) = self.manager.client();
            let (replay, feed) = self.lane().replay(&self.inbox);
            let replay: Vec<_> = replay
                .iter()
                .map(|entry| self.shared.request(entry))
                .collect();
            let requests = futures_util::stream::iter(replay).chain(feed);
            let status = match client.push_updates(requests).await {
                Ok(response) => return Ok((replica, response.into_inner())),
                Err(status) if resilient::retryable(&status) => status,
                Err(status) => return Err(status),
            };
            let Some(delay) = delays.next() else {
                return Err(status);
            };
            self.manager.failed(replica);
            self.manager.recovery().retried();
            tokio::time::sleep(delay).await;
        }
    }

    /// Reads answers until the pipeline is dropped, reopening the stream when it fails.
    async fn drive(self, mut replica: usize, mut responses: Streaming<pb::PushUpdatesResponse>) {
        loop {
            let failure = match responses.message().await {
                Ok(Some(response)) => match self.answer(response).await {
                    Next::Read => continue,
                    Next::MoveOn => "the replica is unavailable".to_string(),
                },
                Ok(None) => "the stream ended".to_string(),
                Err(status) => status.to_string(),
            };
            tracing::warn!(lane = self.index, replica, %failure, "push stream lost; moving to the next replica");
            self.manager.failed(replica);
            self.manager.recovery().retried();
            let first = self.manager.policy().min_delay;
            tokio::time::sleep(first).await;
            (replica, responses) = loop {
                match self.open().await {
                    Ok(opened) => break opened,
                    Err(status) => {
                        tracing::warn!(lane = self.index, %status, "no replica takes the push stream; still trying");
                        tokio::time::sleep(self.manager.policy().max_delay).await;
                    }
                }
            };
        }
    }

    /// Handles the answer to the lane's oldest unanswered update.
    async fn answer(&self, response: pb::PushUpdatesResponse) -> Next {
        let Some(entry) = self.lane().answered() else {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
            return Next::Read;
        };
        let error = match response.result {
            Some(pb::push_updates_response::Result::Ack(_)) => {
                self.shared.applied(&entry);
                return Next::Read;
            }
            Some(pb::push_updates_response::Result::Error(error)) => error,
            None => pb::UpdateError::default(),
        };
        match Code::from(error.code) {
            Code::FailedPrecondition if error.expected_sequence > 0 => {
                self.shared.gap(&entry, error.expected_sequence);
            }
            Code::NotFound => self.recreate(&entry).await,
            Code::Unavailable => {
                self.lane().unanswered(entry);
                return Next::MoveOn;
            }
            _ => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Next::Read
    }

    /// Creates `entry`'s session again with the agent's current state.
    async fn recreate(&self, entry: &Entry) {
        let Some(held) = self.shared.lost(entry) else {
            return;
        };
        let identity = self.identities.get(entry.agent);
        let request = pb::CreateSessionRequest {
            session_id: self.shared.agents[entry.agent].session_id.clone(),
            agent_id: identity.map(|i| i.agent_id.clone()).unwrap_or_default(),
            resume_reference: identity.map(|i| i.reference.clone()).unwrap_or_default(),
            channels: load_channels(),
            interactions: vec![load_call(held)],
            ..Default::default()
        };
        let created = self.manager.create_session(&request).await;
        if let Err(status) = &created {
            tracing::warn!(session_id = %request.session_id, %status, "cannot create a lost session again");
        }
        self.shared
            .recreated(entry.agent, created.ok().map(|c| c.next_sequence));
    }
}

/// Creates session `session_id` (agent number `number`) and binds a MediaBar client to it;
/// `index` is its place in the pipeline.
async fn bind_one(
    manager: &Manager,
    mediabar_url: &str,
    session_id: String,
    number: u64,
    index: usize,
) -> Result<(usize, (AgentSpec, Identity), MediaBarClient), LoadError> {
    let agent_id = format!("agent-{number}");
    let created = manager
        .create_session(&pb::CreateSessionRequest {
            session_id: session_id.clone(),
            agent_id: agent_id.clone(),
            channels: load_channels(),
            interactions: vec![load_call(false)],
            ..Default::default()
        })
        .await?;
    let mut client = MediaBarClient::connect_lean(mediabar_url).await?;
    client.bind(&created.resource_reference, false).await?;
    let spec = AgentSpec {
        session_id,
        next_sequence: created.next_sequence,
    };
    let identity = Identity {
        agent_id,
        reference: created.resource_reference,
    };
    Ok((index, (spec, identity), client))
}

/// Creates the sessions, binds a MediaBar to each, drives them once, and reports.
pub async fn run(
    manager: impl Into<Manager>,
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
             \x20 recovery          retries {}  resyncs {}  recreations {}\n\
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
            self.retries,
            self.resyncs,
            self.recreations,
            ms(self.latency_us.p50),
            ms(self.latency_us.p90),
            ms(self.latency_us.p99),
            ms(self.latency_us.p999),
            ms(self.latency_us.max),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_written_before_the_recovery_counters_still_reads() {
        let old = r#"{"sessions":1,"target_rate":0,"seconds":1.0,"updates":2,"updates_per_sec":2.0,
            "events":2,"events_per_sec":2.0,"errors":0,"missing":0,"bytes_received":10,
            "latency_us":{"p50":1,"p90":1,"p99":1,"p999":1,"max":1}}"#;
        let report: LoadReport = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (report.retries, report.resyncs, report.recreations),
            (0, 0, 0)
        );
    }
}

//! Load mode: many agent sessions, each bound through the gateway by a real WebSocket
//! client, driven with call-flow updates at a fixed rate (open loop) or as fast as the
//! pipeline answers (closed loop).
//!
//! Latency is measured from the moment an update was *scheduled* to the arrival of the
//! MediaBar frame it causes, so queueing anywhere, including in this generator, counts
//! (no coordinated omission). Every update toggles one call between held and connected,
//! which changes exactly one target, so each update is answered by exactly one frame.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
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

/// The measured figures.
#[derive(Debug, Clone, Serialize)]
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
    /// Updates sent whose event never arrived.
    pub missing: u64,
    /// Bytes of WebSocket frames received while measuring.
    pub bytes_received: u64,
    /// Latency percentiles in microseconds.
    pub latency_us: Percentiles,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Serialize)]
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
}

/// One simulated agent.
struct Agent {
    session_id: String,
    sequence: AtomicU64,
    held: AtomicBool,
    /// Scheduled send times of updates whose frame has not arrived yet.
    in_flight: Mutex<VecDeque<Instant>>,
}

/// Counters shared by the scheduler and the readers.
struct Shared {
    agents: Vec<Agent>,
    /// Cleared at the end, so that closed-loop readers stop sending.
    running: AtomicBool,
    measuring: AtomicBool,
    updates: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    closed_loop: bool,
    push: Vec<mpsc::UnboundedSender<pb::ApplyUpdateRequest>>,
}

impl Shared {
    /// Schedules the next update of agent `index` at `at`.
    fn send(&self, index: usize, at: Instant) {
        let Some(agent) = self.agents.get(index) else {
            return;
        };
        if !self.running.load(Ordering::Relaxed) {
            return;
        }
        let held = !agent.held.fetch_xor(true, Ordering::Relaxed);
        let state = if held {
            pb::InteractionState::Held
        } else {
            pb::InteractionState::Connected
        };
        let sequence = agent.sequence.fetch_add(1, Ordering::Relaxed);
        agent
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(at);
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
        if self.measuring.load(Ordering::Relaxed) {
            self.updates.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.push[index % self.push.len()].send(request);
    }

    /// Records the frame of agent `index`.
    fn received(&self, index: usize, bytes: usize) {
        let Some(agent) = self.agents.get(index) else {
            return;
        };
        let scheduled = agent
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        let measuring = self.measuring.load(Ordering::Relaxed);
        match scheduled {
            Some(at) if measuring => {
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
            None if measuring => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
        if self.closed_loop {
            self.send(index, Instant::now());
        }
    }
}

/// Creates the sessions, binds a MediaBar to each, drives them, and reports.
pub async fn run(
    mut manager: WorkflowManagerClient<Channel>,
    mediabar_url: &str,
    options: &LoadOptions,
) -> Result<LoadReport, LoadError> {
    let run_id = std::process::id();
    let mut agents = Vec::with_capacity(options.sessions);
    let mut clients = Vec::with_capacity(options.sessions);
    for index in 0..options.sessions {
        let session_id = format!("load-{run_id}-{index}");
        let created = manager
            .create_session(pb::CreateSessionRequest {
                session_id: session_id.clone(),
                agent_id: format!("agent-{index}"),
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
        let mut client = MediaBarClient::connect(mediabar_url).await?;
        client.bind(&created.resource_reference, false).await?;
        clients.push(client);
        agents.push(Agent {
            session_id,
            sequence: AtomicU64::new(created.next_sequence),
            held: AtomicBool::new(false),
            in_flight: Mutex::new(VecDeque::new()),
        });
        if options.progress && (index + 1) % 1000 == 0 {
            eprintln!("  {} sessions bound", index + 1);
        }
    }

    let mut push = Vec::new();
    let mut acks = Vec::new();
    for _ in 0..options.push_streams.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        let responses = manager
            .push_updates(tokio_stream_from(rx))
            .await?
            .into_inner();
        push.push(tx);
        acks.push(responses);
    }
    let histogram = Histogram::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| LoadError::Histogram(e.to_string()))?;
    let shared = Arc::new(Shared {
        agents,
        running: AtomicBool::new(true),
        measuring: AtomicBool::new(false),
        updates: AtomicU64::new(0),
        events: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        latency: Mutex::new(histogram),
        closed_loop: options.rate == 0,
        push,
    });

    for mut responses in acks {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok(Some(response)) = responses.message().await {
                if matches!(
                    response.result,
                    Some(pb::push_updates_response::Result::Error(_))
                ) {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    for (index, client) in clients.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let mut ws = client.into_stream();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Text(text) = frame
                    && text.contains("\"resourceEvent\"")
                {
                    shared.received(index, text.len());
                }
            }
        });
    }

    let started = Instant::now();
    let measure_from = started + options.warmup;
    let end = measure_from + options.duration;
    let progress = drive(&shared, options, started, measure_from, end);
    progress.await;
    shared.running.store(false, Ordering::Relaxed);
    // Give frames in flight a moment to land before counting what is missing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shared.measuring.store(false, Ordering::Relaxed);

    let seconds = options.duration.as_secs_f64();
    let updates = shared.updates.load(Ordering::Relaxed);
    let events = shared.events.load(Ordering::Relaxed);
    let histogram = shared
        .latency
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok(LoadReport {
        sessions: options.sessions,
        target_rate: options.rate,
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
    })
}

/// Sends updates on schedule until `end` (open loop), or kicks every agent once and lets
/// the readers keep them busy (closed loop); prints progress once a second.
async fn drive(
    shared: &Arc<Shared>,
    options: &LoadOptions,
    started: Instant,
    measure_from: Instant,
    end: Instant,
) {
    let agents = shared.agents.len();
    if agents == 0 {
        return;
    }
    if options.rate == 0 {
        for index in 0..agents {
            shared.send(index, Instant::now());
        }
    }
    let interval = Duration::from_secs_f64(1.0 / options.rate.max(1) as f64);
    let mut sent: u64 = 0;
    let mut next_progress = started + Duration::from_secs(1);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= measure_from {
            shared.measuring.store(true, Ordering::Relaxed);
        }
        if options.rate > 0 {
            // Everything due by now goes out, each stamped with its own scheduled time.
            loop {
                let due = started + interval.mul_f64(sent as f64);
                if due > now {
                    break;
                }
                shared.send(usize::try_from(sent % agents as u64).unwrap_or(0), due);
                sent += 1;
            }
        }
        if options.progress && now >= next_progress {
            next_progress += Duration::from_secs(1);
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
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn tokio_stream_from<T: Send + 'static>(
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

//! `wfm bench commands`: a MediaBar command's round trip (client → gateway → manager →
//! Interaction Processor → result back to the client) beside a CTI update's one-way latency
//! (Interaction Processor → manager → gateway → client), in the same run, on the same
//! sessions.
//!
//! The manager and the gateway run in child processes; the processor (which accepts every
//! command at once, so that the figure is the stack's and not a platform's) and the clients
//! run here. Every session sends one `interaction.sendDtmf` (enabled, and it changes no
//! state) and receives one mute toggle per period, the two half a period apart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_sim::mediabar::{CommandAnswer, MediaBarClient};
use wfm_sim::processor::{self, Routes};
use wfm_sim::resilient::Manager;

use crate::proc::ServerChild;
use crate::suite::{address, say};

/// The processor name the bench sessions are created with.
const PROCESSOR: &str = "bench";

/// What to run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CommandPlan {
    /// Sessions, each with its own bound client.
    pub sessions: usize,
    /// Commands per second across all sessions (as many updates per second too).
    pub rate: u64,
    /// How long to measure, after a warm-up of a tenth of it.
    pub duration: Duration,
}

/// The figures of one run, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandFigures {
    /// What ran.
    pub plan: CommandPlan,
    /// Command round trips measured.
    pub commands: u64,
    /// Round-trip p50.
    pub command_p50: f64,
    /// Round-trip p99.
    pub command_p99: f64,
    /// Updates measured.
    pub updates: u64,
    /// One-way update p50.
    pub update_p50: f64,
    /// One-way update p99.
    pub update_p99: f64,
    /// Commands or updates that failed.
    pub errors: u64,
}

impl CommandFigures {
    /// The goal: a command's round trip p99 under this many milliseconds.
    pub const GOAL_P99_MS: f64 = 5.0;

    /// The report's table, as BENCHMARKS.md quotes it.
    pub fn table(&self) -> String {
        let plan = &self.plan;
        format!(
            "| path | measured | p50 ms | p99 ms |\n| --- | --- | --- | --- |\n\
             | command round trip | {} | {:.2} | {:.2} |\n\
             | CTI update one way | {} | {:.2} | {:.2} |\n\
             | ratio (command / update) | | {:.2} | {:.2} |\n\n\
             {} sessions, {} commands/s and {} updates/s for {:?}; {} errors.\n",
            self.commands,
            self.command_p50,
            self.command_p99,
            self.updates,
            self.update_p50,
            self.update_p99,
            self.command_p50 / self.update_p50,
            self.command_p99 / self.update_p99,
            plan.sessions,
            plan.rate,
            plan.rate,
            plan.duration,
            self.errors,
        )
    }
}

/// One session's latencies, in microseconds.
struct Samples {
    commands: Histogram<u64>,
    updates: Histogram<u64>,
    errors: u64,
}

impl Samples {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            commands: Histogram::new(3)?,
            updates: Histogram::new(3)?,
            errors: 0,
        })
    }
}

/// Runs the measurement.
pub async fn run(plan: CommandPlan) -> anyhow::Result<CommandFigures> {
    let manager = ServerChild::spawn(&["serve-manager"])?;
    let manager_addr = address(&manager, 0)?;
    let gateway = ServerChild::spawn(&["serve-gateway", &manager_addr.to_string()])?;
    let gateway_addr = address(&gateway, 0)?;
    let url = format!("ws://{gateway_addr}{}", wfm_gateway::MEDIABAR_PATH);
    let client = WorkflowManagerClient::connect(format!("http://{manager_addr}")).await?;

    // The processor: accepts every command at once.
    let routes = Routes::default();
    let mut receivers = Vec::with_capacity(plan.sessions);
    for index in 0..plan.sessions {
        receivers.push(ReceiverStream::new(routes.add(&session_id(index))));
    }
    let mut background = JoinSet::new();
    background.spawn(processor::serve(
        Manager::from(client.clone()),
        PROCESSOR.to_string(),
        routes.clone(),
    ));
    background.spawn(async move {
        let mut all = futures_util::stream::select_all(receivers);
        while let Some(incoming) = all.next().await {
            incoming.answer(Ok(Default::default()));
        }
    });
    tokio::time::timeout(Duration::from_secs(10), routes.opened())
        .await
        .context("the bench processor's command stream did not open")?;

    say(format!("commands: binding {} sessions", plan.sessions));
    let period = Duration::from_secs_f64(plan.sessions as f64 / plan.rate.max(1) as f64);
    let warmup = plan.duration / 10;
    let start = Instant::now() + Duration::from_secs(1);
    let mut sessions = JoinSet::new();
    for index in 0..plan.sessions {
        let mut grpc = client.clone();
        let (mut mediabar, mut sequence) = bind(&mut grpc, &url, index).await?;
        // Spread the sessions evenly over the period.
        let offset = period.mul_f64(index as f64 / plan.sessions as f64);
        sessions.spawn(async move {
            let mut samples = Samples::new()?;
            let first = start + offset;
            let end = start + warmup + plan.duration;
            let mut muted = false;
            let mut tick = first;
            while tick < end {
                let measured = tick >= start + warmup;
                tokio::time::sleep_until(tick.into()).await;
                match command(&mut mediabar).await {
                    Ok(took) if measured => record(&mut samples.commands, took),
                    Ok(_) => {}
                    Err(_) => samples.errors += 1,
                }
                tokio::time::sleep_until((tick + period / 2).into()).await;
                muted = !muted;
                match update(&mut grpc, &mut mediabar, index, sequence, muted).await {
                    Ok(took) if measured => record(&mut samples.updates, took),
                    Ok(_) => {}
                    Err(_) => samples.errors += 1,
                }
                sequence += 1;
                tick += period;
            }
            anyhow::Ok(samples)
        });
    }
    say(format!(
        "commands: {} commands/s and as many updates/s for {:?}",
        plan.rate, plan.duration
    ));
    let mut commands = Histogram::<u64>::new(3)?;
    let mut updates = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    while let Some(samples) = sessions.join_next().await {
        let samples = samples??;
        commands.add(&samples.commands)?;
        updates.add(&samples.updates)?;
        errors += samples.errors;
    }
    background.shutdown().await;
    // The gateway first, so that it does not log the manager's exit as an outage.
    drop(gateway);
    drop(manager);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(CommandFigures {
        plan,
        commands: commands.len(),
        command_p50: ms(&commands, 0.5),
        command_p99: ms(&commands, 0.99),
        updates: updates.len(),
        update_p50: ms(&updates, 0.5),
        update_p99: ms(&updates, 0.99),
        errors,
    })
}

fn session_id(index: usize) -> String {
    format!("bench-command-{index}")
}

fn record(histogram: &mut Histogram<u64>, took: Duration) {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    // Out of range only past an hour; such a sample is an error anyway.
    let _ = histogram.record(micros.max(1));
}

/// Creates session `index` (one connected call, commands to [`PROCESSOR`]) and binds a
/// client to it; returns the client and the session's next update sequence.
async fn bind(
    grpc: &mut WorkflowManagerClient<tonic::transport::Channel>,
    url: &str,
    index: usize,
) -> anyhow::Result<(MediaBarClient, u64)> {
    let created = grpc
        .create_session(pb::CreateSessionRequest {
            session_id: session_id(index),
            agent_id: format!("bench-agent-{index}"),
            processor_id: PROCESSOR.into(),
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
                parties: 2,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut client = MediaBarClient::connect_lean(url).await?;
    client.bind(&created.resource_reference, false).await?;
    Ok((client, created.next_sequence))
}

/// One `interaction.sendDtmf`: the time until its `resourceResponse`.
async fn command(client: &mut MediaBarClient) -> anyhow::Result<Duration> {
    let arguments = BTreeMap::from([("digits".to_string(), "1".to_string())]);
    let sent = Instant::now();
    match client
        .execute("voice.c1", "interaction.sendDtmf", &arguments)
        .await?
    {
        CommandAnswer::Accepted(_) => Ok(sent.elapsed()),
        CommandAnswer::Refused { code, message } => anyhow::bail!("{code}: {message}"),
    }
}

/// One mute toggle: the time from sending it until the client has the call's new view.
async fn update(
    grpc: &mut WorkflowManagerClient<tonic::transport::Channel>,
    client: &mut MediaBarClient,
    index: usize,
    sequence: u64,
    muted: bool,
) -> anyhow::Result<Duration> {
    let events = client.events();
    let sent = Instant::now();
    let change = pb::cti_update::Kind::InteractionChanged(pb::InteractionChange {
        interaction_id: "c1".into(),
        muted: Some(muted),
        ..Default::default()
    });
    let applied = grpc.apply_update(pb::ApplyUpdateRequest {
        session_id: session_id(index),
        sequence,
        update: Some(pb::CtiUpdate { kind: Some(change) }),
    });
    // The event may reach the client before the manager's answer reaches the processor.
    let delivered = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while client.events() == events {
            if client.pump(deadline).await?.is_none() {
                anyhow::bail!("no state event within 5 s");
            }
        }
        anyhow::Ok(sent.elapsed())
    };
    let (applied, delivered) = tokio::join!(applied, delivered);
    applied?;
    delivered
}

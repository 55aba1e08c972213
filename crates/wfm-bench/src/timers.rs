//! `wfm bench timers`: what sessions with a pending deadline cost the manager. Two manager
//! children hold the same sessions, every one in after-call work: one with time-boxed
//! after-call work (`acw_timeout_secs`), so that every session has a deadline filed, and
//! one without. The difference in resident set is the timers' memory; the CPU of the first
//! while its deadlines are pending is what waiting costs, and its CPU while they fall due
//! is what an expiry costs. Every session is then read back to prove that its after-call
//! work did end.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

use crate::proc::ServerChild;
use crate::suite::{address, say};

type Client = WorkflowManagerClient<tonic::transport::Channel>;

/// Concurrent gRPC callers creating and reading the sessions.
const CALLERS: usize = 8;

/// What to run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TimerPlan {
    /// Sessions in each manager.
    pub sessions: usize,
    /// The after-call work time box, seconds; the idle window is most of it.
    pub acw_secs: u32,
}

/// One manager child's figures.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Child {
    base_kib: u64,
    held_kib: u64,
    create_cpu: f64,
    idle_cpu: f64,
    idle_secs: f64,
}

/// The figures of a run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TimerFigures {
    plan: TimerPlan,
    plain: Child,
    timed: Child,
    wave_cpu: f64,
    wave_secs: f64,
    expired: usize,
}

impl TimerFigures {
    /// Whether every session's after-call work ended at its deadline.
    pub fn all_expired(&self) -> bool {
        self.expired == self.plan.sessions
    }

    /// The report, as BENCHMARKS.md quotes it.
    pub fn table(&self) -> String {
        let n = self.plan.sessions as f64;
        let per =
            |child: &Child| (child.held_kib.saturating_sub(child.base_kib)) as f64 * 1024.0 / n;
        let idle = |child: &Child| child.idle_cpu / child.idle_secs * 1000.0;
        format!(
            "| {n} sessions in after-call work | without timers | with timers |\n\
             | --- | --- | --- |\n\
             | manager RSS per session | {:.0} B | {:.0} B |\n\
             | CPU to create a session | {:.1} µs | {:.1} µs |\n\
             | CPU while waiting (ms per s) | {:.2} | {:.2} |\n\n\
             The expiry wave: {} of {} after-call works ended by their deadline, {:.1} µs of \
             manager CPU each ({:.2} s of CPU over {:.1} s).\n",
            per(&self.plain),
            per(&self.timed),
            self.plain.create_cpu * 1e6 / n,
            self.timed.create_cpu * 1e6 / n,
            idle(&self.plain),
            idle(&self.timed),
            self.expired,
            self.plan.sessions,
            self.wave_cpu * 1e6 / n,
            self.wave_cpu,
            self.wave_secs,
            n = self.plan.sessions,
        )
    }
}

/// Runs both children, one after the other.
pub async fn run(plan: TimerPlan) -> anyhow::Result<TimerFigures> {
    say(format!(
        "timers: {} sessions without a time box",
        plan.sessions
    ));
    let plain = ServerChild::spawn(&["serve-manager"])?;
    let (plain, _) = hold(&plain, plan).await?;
    say(format!(
        "timers: {} sessions with after-call work boxed to {} s",
        plan.sessions, plan.acw_secs
    ));
    let timed_child = ServerChild::spawn(&[
        "serve-manager",
        "--acw-timeout-secs",
        &plan.acw_secs.to_string(),
    ])?;
    let (timed, last_deadline) = hold(&timed_child, plan).await?;

    // The wave: from just before the first deadline until a second after the last.
    let cpu = timed_child.cpu_seconds()?;
    let wave_start = Instant::now();
    tokio::time::sleep_until((last_deadline + Duration::from_secs(1)).into()).await;
    let wave_cpu = timed_child.cpu_seconds()? - cpu;
    let wave_secs = wave_start.elapsed().as_secs_f64();
    let expired = count_expired(&address(&timed_child, 0)?.to_string(), plan.sessions).await?;
    Ok(TimerFigures {
        plan,
        plain,
        timed,
        wave_cpu,
        wave_secs,
        expired,
    })
}

/// Creates the sessions in `child`, measures it, and waits idle until a second before the
/// first session's time box would end; returns the figures and when the last one ends.
async fn hold(child: &ServerChild, plan: TimerPlan) -> anyhow::Result<(Child, Instant)> {
    let url = format!("http://{}", address(child, 0)?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_kib = child.rss_kib()?;
    let cpu = child.cpu_seconds()?;
    let first = Instant::now();
    per_caller(&url, plan.sessions, create).await?;
    let last = Instant::now();
    let create_cpu = child.cpu_seconds()? - cpu;
    let held_kib = child.rss_kib()?;

    let box_len = Duration::from_secs(u64::from(plan.acw_secs));
    let idle_until = (first + box_len - Duration::from_secs(1)).max(Instant::now());
    let cpu = child.cpu_seconds()?;
    let idle_start = Instant::now();
    tokio::time::sleep_until(idle_until.into()).await;
    let idle_cpu = child.cpu_seconds()? - cpu;
    let idle_secs = idle_start.elapsed().as_secs_f64();
    anyhow::ensure!(
        idle_secs > 1.0,
        "creating {} sessions took longer than the {} s time box: raise --acw-secs",
        plan.sessions,
        plan.acw_secs
    );
    let figures = Child {
        base_kib,
        held_kib,
        create_cpu,
        idle_cpu,
        idle_secs,
    };
    Ok((figures, last + box_len))
}

/// Runs `call` for every session index, spread over [`CALLERS`] connections.
async fn per_caller<F, Fut>(url: &str, sessions: usize, call: F) -> anyhow::Result<usize>
where
    F: Fn(Client, usize) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send,
{
    let mut callers = JoinSet::new();
    for caller in 0..CALLERS {
        let client = WorkflowManagerClient::connect(url.to_string()).await?;
        callers.spawn(async move {
            let mut yes = 0;
            for index in (caller..sessions).step_by(CALLERS) {
                yes += usize::from(call(client.clone(), index).await?);
            }
            anyhow::Ok(yes)
        });
    }
    let mut yes = 0;
    while let Some(done) = callers.join_next().await {
        yes += done??;
    }
    Ok(yes)
}

fn session_id(index: usize) -> String {
    format!("bench-timer-{index}")
}

/// Creates session `index`: a voice channel in after-call work, with a Ready pending.
async fn create(mut client: Client, index: usize) -> anyhow::Result<bool> {
    client
        .create_session(pb::CreateSessionRequest {
            session_id: session_id(index),
            agent_id: format!("bench-agent-{index}"),
            channels: vec![pb::Channel {
                channel_id: "voice".into(),
                media: pb::Media::Voice.into(),
                state: pb::AgentState::AfterCallWork.into(),
                pending: pb::PendingState::Ready.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating {}", session_id(index)))?;
    Ok(true)
}

/// Whether session `index`'s after-call work has ended (to the pending Ready).
async fn expired(mut client: Client, index: usize) -> anyhow::Result<bool> {
    let session = client
        .get_session(pb::GetSessionRequest {
            session_id: session_id(index),
        })
        .await?
        .into_inner();
    let channels = session.state.map(|s| s.channels).unwrap_or_default();
    Ok(channels
        .iter()
        .all(|c| c.state == i32::from(pb::AgentState::Ready)))
}

async fn count_expired(address: &str, sessions: usize) -> anyhow::Result<usize> {
    per_caller(&format!("http://{address}"), sessions, expired).await
}

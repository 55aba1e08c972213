//! Demo agents for `wfm up`. Each has one long-lived session, created for the demo
//! processor, and replays the scenario library in a loop (a snapshot resets the session
//! before each scenario, so that a bound MediaBar stays bound and sees live traffic).
//!
//! The first command from the page makes the agent *driven*: the replay stops and the
//! simulated platform ([`crate::platform`]) carries out each command, with an ACD that
//! offers a Ready agent a call now and then. A minute without commands hands the agent back
//! to the replay.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use wfm_proto::v1 as pb;

use crate::cti::CtiState;
use crate::processor::Incoming;
use crate::resilient::{Manager, Session};
use crate::scenario::Scenario;

/// The Interaction Processor name the demo sessions are created with.
pub const PROCESSOR_ID: &str = "wfm-demo";
/// How long a driven agent waits for another command before the replay resumes.
pub const DRIVEN_FOR: Duration = Duration::from_secs(60);
/// Pause between two scenarios of an agent.
const BETWEEN_SCENARIOS: Duration = Duration::from_secs(2);
/// Updates the platform may still have to report for one agent; past it, commands are
/// refused until it catches up.
const MAX_QUEUED_EFFECTS: usize = 64;
/// How long the ACD lets a Ready, idle agent wait before it offers a call.
const ROUTING_DELAY: Duration = Duration::from_secs(3);

/// One demo agent's session, as the demo page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoAgent {
    /// The agent id.
    pub agent_id: String,
    /// The session id.
    pub session_id: String,
    /// The session resource reference to bind with.
    pub reference: String,
}

/// Creates the session of demo agent `index`: one voice channel, logged out, whose
/// commands go to [`PROCESSOR_ID`].
pub async fn create(
    manager: &Manager,
    index: usize,
) -> Result<(DemoAgent, Session), tonic::Status> {
    let agent_id = format!("agent-{index}");
    let session_id = format!("demo-{index}");
    let session = Session::create(
        manager.clone(),
        pb::CreateSessionRequest {
            session_id: session_id.clone(),
            agent_id: agent_id.clone(),
            channels: vec![pb::Channel {
                channel_id: "voice".into(),
                media: pb::Media::Voice.into(),
                state: pb::AgentState::LoggedOut.into(),
                ..Default::default()
            }],
            processor_id: PROCESSOR_ID.into(),
            ..Default::default()
        },
    )
    .await?;
    let agent = DemoAgent {
        agent_id,
        session_id,
        reference: session.reference().to_string(),
    };
    Ok((agent, session))
}

/// Plays one demo agent until the manager refuses an update: the replay of `scenarios`
/// from scenario `offset` (none when `replay` is off; scenarios that send commands need a
/// MediaBar and are left out) and the commands from `commands`.
pub async fn play(
    session: Session,
    scenarios: &[Scenario],
    offset: usize,
    replay: bool,
    commands: mpsc::Receiver<Incoming>,
) -> Result<(), tonic::Status> {
    let script = (replay && !scenarios.is_empty()).then(|| Script {
        scenarios,
        scenario: offset % scenarios.len(),
        step: 0,
    });
    let mut agent = Agent {
        session,
        script,
        next_step: Some(Instant::now()),
        driven_until: None,
        effects: VecDeque::new(),
        offer_at: None,
        calls: 0,
    };
    agent.run(commands).await
}

/// Where the replay is: the next step of which scenario (step 0 is the reset snapshot).
struct Script<'a> {
    scenarios: &'a [Scenario],
    scenario: usize,
    step: usize,
}

impl Script<'_> {
    /// The update at the cursor (none for a step that only checks); moves on.
    fn next(&mut self) -> Option<pb::cti_update::Kind> {
        let scenario = &self.scenarios[self.scenario];
        let update = match self.step.checked_sub(1) {
            None => Some(pb::cti_update::Kind::Snapshot(pb::Snapshot {
                channels: scenario.channels.clone(),
                interactions: vec![],
            })),
            Some(i) => scenario.steps.get(i).and_then(|s| s.update.clone()),
        };
        self.step += 1;
        if self.step > scenario.steps.len() {
            self.next_scenario();
        }
        update
    }

    /// The pause before the step at the cursor.
    fn delay(&self) -> Duration {
        match self.step.checked_sub(1) {
            None => BETWEEN_SCENARIOS,
            Some(i) => self.scenarios[self.scenario]
                .steps
                .get(i)
                .map_or(Duration::ZERO, |s| s.delay),
        }
    }

    fn next_scenario(&mut self) {
        self.scenario = (self.scenario + 1) % self.scenarios.len();
        self.step = 0;
    }
}

struct Agent<'a> {
    session: Session,
    script: Option<Script<'a>>,
    /// When the replay's next step is due (while not driven).
    next_step: Option<Instant>,
    /// Driven by commands until then.
    driven_until: Option<Instant>,
    /// Updates the platform still has to report, each at its time.
    effects: VecDeque<(Instant, pb::cti_update::Kind)>,
    /// When the ACD offers the idle Ready agent a call.
    offer_at: Option<Instant>,
    calls: u32,
}

impl Agent<'_> {
    async fn run(&mut self, mut commands: mpsc::Receiver<Incoming>) -> Result<(), tonic::Status> {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                incoming = commands.recv() => match incoming {
                    Some(incoming) => self.command(incoming),
                    None => return Ok(()),
                },
                () = sleep_until(wake) => self.due().await?,
            }
        }
    }

    fn driven(&self) -> bool {
        self.driven_until.is_some()
    }

    fn next_wake(&mut self) -> Option<Instant> {
        self.offer_at = self.offer_at.or_else(|| {
            (self.script.is_none() || self.driven())
                .then(|| self.effects.is_empty() && idle_ready_voice(self.session.state()))
                .filter(|idle| *idle)
                .map(|_| Instant::now() + ROUTING_DELAY)
        });
        let scripted = self
            .next_step
            .filter(|_| !self.driven() && self.script.is_some());
        [
            self.effects.front().map(|(at, _)| *at),
            scripted,
            self.driven_until,
            self.offer_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Carries out whatever is due now.
    async fn due(&mut self) -> Result<(), tonic::Status> {
        let now = Instant::now();
        while let Some((at, _)) = self.effects.front() {
            if *at > now {
                break;
            }
            if let Some((_, update)) = self.effects.pop_front() {
                self.session.push(&update).await?;
            }
        }
        if self.driven_until.is_some_and(|until| until <= now) {
            self.driven_until = None;
            tracing::info!(session = %self.session.session_id(), "no commands for a while: the replay resumes");
            if let Some(script) = &mut self.script {
                script.next_scenario();
            }
            self.next_step = Some(now);
        }
        if self.offer_at.is_some_and(|at| at <= now) {
            self.offer_at = None;
            self.offer_call().await?;
        }
        if !self.driven()
            && self.next_step.is_some_and(|at| at <= now)
            && let Some(script) = &mut self.script
        {
            let update = script.next();
            let delay = script.delay();
            if let Some(update) = update {
                self.session.push(&update).await?;
            }
            self.next_step = Some(Instant::now() + delay);
        }
        Ok(())
    }

    /// The ACD routes a call to the idle Ready agent, if it still is.
    async fn offer_call(&mut self) -> Result<(), tonic::Status> {
        let Some(channel) = self
            .session
            .state()
            .channels()
            .iter()
            .find(|c| is_ready_voice(c))
            .map(|c| c.channel_id.clone())
        else {
            return Ok(());
        };
        if !idle_ready_voice(self.session.state()) || !self.effects.is_empty() {
            return Ok(());
        }
        self.calls += 1;
        let (caller, queue, tier) = CALLERS[self.calls as usize % CALLERS.len()];
        let call = pb::Interaction {
            interaction_id: format!("call{}", self.calls),
            channel_id: channel,
            direction: pb::Direction::Inbound.into(),
            state: pb::InteractionState::Alerting.into(),
            parties: 2,
            caller: caller.into(),
            queue: queue.into(),
            data: HashMap::from([("tier".to_string(), tier.to_string())]),
            ..Default::default()
        };
        self.session
            .push(&pb::cti_update::Kind::InteractionCreated(call))
            .await
    }

    /// Checks `incoming` against the platform and queues what it causes.
    fn command(&mut self, incoming: Incoming) {
        let now = Instant::now();
        if !self.driven() {
            tracing::info!(session = %self.session.session_id(), "driven from the page: the replay stops");
        }
        self.driven_until = Some(now + DRIVEN_FOR);
        self.offer_at = None;
        if self.effects.len() >= MAX_QUEUED_EFFECTS {
            return incoming.answer(Err(
                "the platform is still carrying out earlier commands".into()
            ));
        }
        let effects = incoming.carry_out(self.session.session_id(), &self.projected());
        let mut at = self.effects.back().map_or(now, |(at, _)| (*at).max(now));
        for effect in effects {
            at += effect.after;
            self.effects.push_back((at, effect.update));
        }
    }

    /// The state once every queued effect is reported: what the next command acts on.
    fn projected(&self) -> CtiState {
        let mut state = self.session.state().clone();
        for (_, update) in &self.effects {
            state.apply(update);
        }
        state
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn is_ready_voice(channel: &pb::Channel) -> bool {
    channel.media == i32::from(pb::Media::Voice)
        && channel.state == i32::from(pb::AgentState::Ready)
}

/// A Ready voice channel with nothing on it.
fn idle_ready_voice(state: &CtiState) -> bool {
    state
        .channels()
        .iter()
        .filter(|c| is_ready_voice(c))
        .any(|c| {
            !state
                .interactions()
                .iter()
                .any(|i| i.channel_id == c.channel_id)
        })
}

/// Who calls a driven demo agent: caller, queue, customer tier.
const CALLERS: &[(&str, &str, &str)] = &[
    ("+1 415 555 0134 · Dana Reyes", "Billing", "gold"),
    ("+44 20 7946 0321 · Sam Okafor", "Support", "standard"),
    ("+49 30 901820 · Jo Weber", "Sales", "vip"),
];

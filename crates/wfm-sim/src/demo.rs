//! Demo agents for `wfm up`: each has one long-lived session and replays the scenario
//! library in a loop, resetting the session with a snapshot before each scenario, so that
//! a MediaBar bound to it stays bound and sees live traffic.

use std::time::Duration;

use wfm_proto::v1 as pb;

use crate::resilient::{Manager, Session};
use crate::run::{Outcome, Player, RunError};
use crate::scenario::Scenario;

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

/// Pause between two scenarios of an agent.
const BETWEEN_SCENARIOS: Duration = Duration::from_secs(2);

/// Creates the session of demo agent `index` with every media channel the library uses.
pub async fn create(
    manager: &Manager,
    index: usize,
) -> Result<(DemoAgent, Session), tonic::Status> {
    let agent_id = format!("agent-{index}");
    let session_id = format!("demo-{index}");
    let channel = |id: &str, media: pb::Media| pb::Channel {
        channel_id: id.into(),
        media: media.into(),
        state: pb::AgentState::LoggedOut.into(),
        ..Default::default()
    };
    let session = Session::create(
        manager.clone(),
        pb::CreateSessionRequest {
            session_id: session_id.clone(),
            agent_id: agent_id.clone(),
            channels: vec![channel("voice", pb::Media::Voice)],
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

/// Replays `scenarios` in `agent`'s session forever, starting at scenario `offset` so that
/// agents are not in lockstep. Returns only when the manager refuses an update.
pub async fn replay_forever(
    session: Session,
    agent: &DemoAgent,
    scenarios: &[Scenario],
    offset: usize,
) -> Result<(), RunError> {
    let mut player = Player::new(session, 1.0);
    for scenario in scenarios.iter().cycle().skip(offset) {
        player.reset(scenario).await?;
        let mut outcome = Outcome {
            reference: agent.reference.clone(),
            updates: 0,
            checkpoints: 0,
        };
        player.steps(scenario, None, &mut outcome).await?;
        tokio::time::sleep(BETWEEN_SCENARIOS).await;
    }
    Ok(())
}

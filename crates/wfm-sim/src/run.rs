//! Plays a scenario against a live stack: the Interaction Processor's side over gRPC, and,
//! when checking, a MediaBar bound through the gateway that compares every checkpoint.

use std::time::Duration;

use wfm_proto::v1 as pb;

use crate::mediabar::{ClientError, Difference, MediaBarClient};
use crate::resilient::{Manager, Session};
use crate::scenario::Scenario;

/// How long a checkpoint waits for the view state to arrive before it reports a difference.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The manager refused a call.
    #[error("{origin}:{line}: {call} failed: {status}")]
    Manager {
        /// The scenario file.
        origin: String,
        /// The step's line (1 for session creation).
        line: usize,
        /// The RPC.
        call: &'static str,
        /// The status message.
        status: String,
    },
    /// The MediaBar side failed.
    #[error("{origin}: mediabar: {source}")]
    MediaBar {
        /// The scenario file.
        origin: String,
        /// What failed.
        source: ClientError,
    },
    /// The view state differed at a checkpoint.
    #[error("{origin}:{line}: view state differs after the step\n{}", .differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Mismatch {
        /// The scenario file.
        origin: String,
        /// The step's line.
        line: usize,
        /// What differs.
        differences: Vec<Difference>,
    },
}

/// Where the stack is and who plays.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The manager's replicas.
    pub manager: Manager,
    /// The gateway's MediaBar WebSocket URL; `None` plays without checking.
    pub gateway: Option<&'a str>,
    /// Session id to create.
    pub session_id: &'a str,
    /// Agent id.
    pub agent_id: &'a str,
    /// Multiplies every step delay (0 plays as fast as possible).
    pub pace: f64,
    /// Print the session and its reference as soon as it exists, so that a MediaBar (the
    /// demo page's `?ref=`) can bind while the scenario plays.
    pub announce: bool,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The session resource reference (the latest, if the session had to be created again).
    pub reference: String,
    /// Updates pushed.
    pub updates: usize,
    /// Checkpoints compared.
    pub checkpoints: usize,
}

/// Pushes a scenario's steps into one session, numbering the updates.
pub struct Player {
    session: Session,
    pace: f64,
}

impl Player {
    /// A player of `session`.
    pub fn new(session: Session, pace: f64) -> Self {
        Self { session, pace }
    }

    /// The session played.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Pushes one update as the next sequence number, repairing gaps and lost sessions.
    pub async fn push(&mut self, kind: &pb::cti_update::Kind) -> Result<(), tonic::Status> {
        self.session.push(kind).await
    }

    /// Resets the session to the scenario's initial channels, with no interactions: a
    /// snapshot, as an Interaction Processor resynchronises.
    pub async fn reset(&mut self, scenario: &Scenario) -> Result<(), RunError> {
        let snapshot = pb::Snapshot {
            channels: scenario.channels.clone(),
            interactions: vec![],
        };
        self.push(&pb::cti_update::Kind::Snapshot(snapshot))
            .await
            .map_err(|status| manager_error(&scenario.origin, 1, "ApplyUpdate", &status))
    }

    /// Plays every step; with a `client`, compares each checkpoint with what it received.
    pub async fn steps(
        &mut self,
        scenario: &Scenario,
        mut client: Option<&mut MediaBarClient>,
        outcome: &mut Outcome,
    ) -> Result<(), RunError> {
        for step in &scenario.steps {
            if !step.delay.is_zero() && self.pace > 0.0 {
                tokio::time::sleep(step.delay.mul_f64(self.pace)).await;
            }
            if let Some(update) = &step.update {
                self.push(update).await.map_err(|status| {
                    manager_error(&scenario.origin, step.line, "ApplyUpdate", &status)
                })?;
                outcome.updates += 1;
            }
            if let (Some(client), false) = (client.as_deref_mut(), step.expect.is_empty()) {
                let differences =
                    client
                        .settle(&step.expect, SETTLE_TIMEOUT)
                        .await
                        .map_err(|source| RunError::MediaBar {
                            origin: scenario.origin.clone(),
                            source,
                        })?;
                if !differences.is_empty() {
                    return Err(RunError::Mismatch {
                        origin: scenario.origin.clone(),
                        line: step.line,
                        differences,
                    });
                }
                outcome.checkpoints += 1;
            }
        }
        Ok(())
    }
}

fn manager_error(
    origin: &str,
    line: usize,
    call: &'static str,
    status: &tonic::Status,
) -> RunError {
    RunError::Manager {
        origin: origin.to_string(),
        line,
        call,
        status: format!("{:?}: {}", status.code(), status.message()),
    }
}

/// Plays `scenario`: creates the session, binds a MediaBar if checking, pushes each step,
/// compares checkpoints, and ends the session.
pub async fn play(scenario: &Scenario, target: Target<'_>) -> Result<Outcome, RunError> {
    let origin = scenario.origin.as_str();
    let session = Session::create(
        target.manager.clone(),
        pb::CreateSessionRequest {
            session_id: target.session_id.to_string(),
            agent_id: target.agent_id.to_string(),
            channels: scenario.channels.clone(),
            profile: scenario.profile.clone(),
            ..Default::default()
        },
    )
    .await
    .map_err(|status| manager_error(origin, 1, "CreateSession", &status))?;
    if target.announce {
        println!(
            "  session {}  reference {}",
            target.session_id,
            session.reference()
        );
    }
    let mut client = match target.gateway {
        Some(url) => {
            let bound = async {
                let mut client = MediaBarClient::connect(url).await?;
                client.bind(session.reference(), false).await?;
                Ok(client)
            };
            Some(bound.await.map_err(|source| RunError::MediaBar {
                origin: origin.to_string(),
                source,
            })?)
        }
        None => None,
    };
    let mut outcome = Outcome {
        reference: String::new(),
        updates: 0,
        checkpoints: 0,
    };
    let mut player = Player::new(session, target.pace);
    let result = player.steps(scenario, client.as_mut(), &mut outcome).await;
    outcome.reference = player.session().reference().to_string();
    let ended = player.session().end().await;
    result?;
    ended.map_err(|status| manager_error(origin, 1, "EndSession", &status))?;
    Ok(outcome)
}

//! Plays a scenario against a live stack: the Interaction Processor's side over gRPC, and,
//! when checking, a MediaBar bound through the gateway that compares every checkpoint.

use std::time::Duration;

use tonic::transport::Channel;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

use crate::mediabar::{ClientError, Difference, MediaBarClient};
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
    /// The manager's gRPC client.
    pub manager: WorkflowManagerClient<Channel>,
    /// The gateway's MediaBar WebSocket URL; `None` plays without checking.
    pub gateway: Option<&'a str>,
    /// Session id to create.
    pub session_id: &'a str,
    /// Agent id.
    pub agent_id: &'a str,
    /// Multiplies every step delay (0 plays as fast as possible).
    pub pace: f64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The session resource reference.
    pub reference: String,
    /// Updates pushed.
    pub updates: usize,
    /// Checkpoints compared.
    pub checkpoints: usize,
}

/// Plays `scenario`: creates the session, binds a MediaBar if checking, pushes each step,
/// compares checkpoints, and ends the session.
pub async fn play(scenario: &Scenario, mut target: Target<'_>) -> Result<Outcome, RunError> {
    let origin = scenario.origin.clone();
    let manager_error = |line, call, status: tonic::Status| RunError::Manager {
        origin: origin.clone(),
        line,
        call,
        status: format!("{:?}: {}", status.code(), status.message()),
    };
    let created = target
        .manager
        .create_session(pb::CreateSessionRequest {
            session_id: target.session_id.to_string(),
            agent_id: target.agent_id.to_string(),
            channels: scenario.channels.clone(),
            profile: scenario.profile.clone(),
            ..Default::default()
        })
        .await
        .map_err(|s| manager_error(1, "CreateSession", s))?
        .into_inner();
    let mediabar_error = |source| RunError::MediaBar {
        origin: origin.clone(),
        source,
    };
    let mut client = match target.gateway {
        Some(url) => {
            let mut client = MediaBarClient::connect(url).await.map_err(mediabar_error)?;
            client
                .bind(&created.resource_reference, false)
                .await
                .map_err(mediabar_error)?;
            Some(client)
        }
        None => None,
    };

    let mut sequence = created.next_sequence;
    let mut outcome = Outcome {
        reference: created.resource_reference,
        updates: 0,
        checkpoints: 0,
    };
    let result = async {
        for step in &scenario.steps {
            if !step.delay.is_zero() && target.pace > 0.0 {
                tokio::time::sleep(step.delay.mul_f64(target.pace)).await;
            }
            if let Some(update) = &step.update {
                let request = pb::ApplyUpdateRequest {
                    session_id: target.session_id.to_string(),
                    sequence,
                    update: Some(pb::CtiUpdate {
                        kind: Some(update.clone()),
                    }),
                };
                target
                    .manager
                    .apply_update(request)
                    .await
                    .map_err(|s| manager_error(step.line, "ApplyUpdate", s))?;
                sequence += 1;
                outcome.updates += 1;
            }
            if let (Some(client), false) = (client.as_mut(), step.expect.is_empty()) {
                let differences = client
                    .settle(&step.expect, SETTLE_TIMEOUT)
                    .await
                    .map_err(mediabar_error)?;
                if !differences.is_empty() {
                    return Err(RunError::Mismatch {
                        origin: origin.clone(),
                        line: step.line,
                        differences,
                    });
                }
                outcome.checkpoints += 1;
            }
        }
        Ok(())
    }
    .await;
    let ended = target
        .manager
        .end_session(pb::EndSessionRequest {
            session_id: target.session_id.to_string(),
        })
        .await;
    result?;
    ended.map_err(|s| manager_error(1, "EndSession", s))?;
    Ok(outcome)
}

//! Plays a scenario against a live stack: the Interaction Processor's side over gRPC, and,
//! when checking, a MediaBar bound through the gateway that compares every checkpoint.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use wfm_proto::v1 as pb;

use crate::mediabar::{ClientError, CommandAnswer, Difference, MediaBarClient};
use crate::platform::{self, Effect, Order};
use crate::processor::{self, Incoming, Routes};
use crate::resilient::{Manager, Session};
use crate::scenario::{self, CommandStep, Scenario};

/// How long a scenario with commands waits for its command stream to open.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// A command got another answer than the step expects.
    #[error(
        "{origin}:{line}: {capability} on {target:?} answered {got} ({message}), expected {expected}"
    )]
    Command {
        /// The scenario file.
        origin: String,
        /// The step's line.
        line: usize,
        /// The command.
        capability: String,
        /// Its target.
        target: String,
        /// What the step expects.
        expected: String,
        /// What the client got.
        got: String,
        /// The error message, if refused.
        message: String,
    },
    /// The scenario's command stream did not open.
    #[error(
        "{origin}: the command stream to the manager did not open within {STREAM_OPEN_TIMEOUT:?}"
    )]
    NoCommandStream {
        /// The scenario file.
        origin: String,
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

/// Pushes a scenario's steps into one session, numbering the updates, and carries out
/// the commands its MediaBar sends as the simulated platform.
pub struct Player {
    session: Session,
    pace: f64,
    commands: Option<mpsc::Receiver<Incoming>>,
}

impl Player {
    /// A player of `session`.
    pub fn new(session: Session, pace: f64) -> Self {
        Self {
            session,
            pace,
            commands: None,
        }
    }

    /// A player that also answers the commands arriving on `commands`.
    pub fn with_commands(mut self, commands: mpsc::Receiver<Incoming>) -> Self {
        self.commands = Some(commands);
        self
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
            if let Some(command) = &step.command {
                outcome.updates += self
                    .command(scenario, step.line, command, client.as_deref_mut())
                    .await?;
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

impl Player {
    /// Sends `command` through `client` and answers it as the platform when it reaches the
    /// processor; checks the answer, then reports what the platform did. Without a client
    /// (`run`), the platform carries out an accepted command directly. Returns the updates
    /// pushed.
    async fn command(
        &mut self,
        scenario: &Scenario,
        line: usize,
        command: &CommandStep,
        client: Option<&mut MediaBarClient>,
    ) -> Result<usize, RunError> {
        let session_id = self.session.session_id().to_string();
        let target = match command.target.as_str() {
            "" => session_id.clone(),
            path => format!("{session_id}.{path}"),
        };
        let arguments: HashMap<String, String> = command.arguments.clone().into_iter().collect();
        let mut effects = Vec::new();
        match client {
            None if command.expect_result != scenario::ACCEPTED => return Ok(0),
            None => {
                if let Some(order) =
                    Order::parse(&session_id, &target, &command.capability, &arguments)
                {
                    effects = platform::plan(self.session.state(), &order).unwrap_or_default();
                }
            }
            Some(client) => {
                let execute =
                    client.execute(&command.target, &command.capability, &command.arguments);
                tokio::pin!(execute);
                let answer = loop {
                    let incoming = async {
                        match self.commands.as_mut() {
                            Some(commands) => commands.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        answer = &mut execute => break answer,
                        Some(incoming) = incoming => {
                            effects = incoming.carry_out(&session_id, self.session.state());
                        }
                    }
                };
                let (got, message) = match answer.map_err(|source| RunError::MediaBar {
                    origin: scenario.origin.clone(),
                    source,
                })? {
                    CommandAnswer::Accepted(_) => (scenario::ACCEPTED.to_string(), String::new()),
                    CommandAnswer::Refused { code, message } => (code, message),
                };
                if got != command.expect_result {
                    return Err(RunError::Command {
                        origin: scenario.origin.clone(),
                        line,
                        capability: command.capability.clone(),
                        target: command.target.clone(),
                        expected: command.expect_result.clone(),
                        got,
                        message,
                    });
                }
            }
        }
        let pushed = effects.len();
        for Effect { after, update } in effects {
            if !after.is_zero() && self.pace > 0.0 {
                tokio::time::sleep(after.mul_f64(self.pace)).await;
            }
            self.push(&update)
                .await
                .map_err(|status| manager_error(&scenario.origin, line, "ApplyUpdate", &status))?;
        }
        Ok(pushed)
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
    // A scenario that sends commands plays its own Interaction Processor, named after the
    // session, so that two scenarios never answer each other's commands.
    let processor_id = if scenario.sends_commands() && target.gateway.is_some() {
        format!("wfm-sim-{}", target.session_id)
    } else {
        String::new()
    };
    let session = Session::create(
        target.manager.clone(),
        pb::CreateSessionRequest {
            session_id: target.session_id.to_string(),
            agent_id: target.agent_id.to_string(),
            channels: scenario.channels.clone(),
            profile: scenario.profile.clone(),
            processor_id: processor_id.clone(),
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
    let mut stream = None;
    if !processor_id.is_empty() {
        let routes = Routes::default();
        player = player.with_commands(routes.add(target.session_id));
        let serving = tokio::spawn(processor::serve(
            target.manager.clone(),
            processor_id,
            routes.clone(),
        ));
        stream = Some(AbortOnDrop(serving));
        tokio::time::timeout(STREAM_OPEN_TIMEOUT, routes.opened())
            .await
            .map_err(|_| RunError::NoCommandStream {
                origin: origin.to_string(),
            })?;
    }
    let result = player.steps(scenario, client.as_mut(), &mut outcome).await;
    drop(stream);
    outcome.reference = player.session().reference().to_string();
    let ended = player.session().end().await;
    result?;
    ended.map_err(|status| manager_error(origin, 1, "EndSession", &status))?;
    Ok(outcome)
}

/// Stops the task when the run ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

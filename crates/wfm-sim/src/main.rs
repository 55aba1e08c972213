//! The `wfm-sim` command: play scenarios against a stack, check them, or generate load.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_sim::run::{self, Target};
use wfm_sim::scenario::{self, Scenario};
use wfm_sim::stack::{Stack, StackOptions};

/// Interaction Processor simulator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Play scenarios against a running stack, at their pace, printing each session's reference.
    Run {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The manager's gRPC URL.
        #[arg(
            long,
            env = "WFM_MANAGER_URL",
            default_value = "http://127.0.0.1:50051"
        )]
        manager: String,
        /// Multiplies every step delay.
        #[arg(long, default_value_t = 1.0)]
        pace: f64,
    },
    /// Check scenarios: play each one and compare its checkpoints with what a MediaBar bound
    /// through the gateway receives. Without --manager, starts its own stack in-process.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A running manager's gRPC URL (needs --gateway too).
        #[arg(long, requires = "gateway")]
        manager: Option<String>,
        /// A running gateway's MediaBar WebSocket URL.
        #[arg(long, requires = "manager")]
        gateway: Option<String>,
        /// Profile file for the in-process stack.
        #[arg(long, conflicts_with = "manager")]
        profiles: Option<PathBuf>,
    },
}

fn load(files: &[PathBuf]) -> Result<Vec<Scenario>, String> {
    files
        .iter()
        .map(|path| {
            let origin = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
            scenario::parse(&origin, &text).map_err(|e| e.to_string())
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match run_command(cli.command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; `Ok(false)` when some scenario failed.
async fn run_command(command: Command) -> Result<bool, String> {
    match command {
        Command::Run {
            files,
            manager,
            pace,
        } => {
            let scenarios = load(&files)?;
            let client = WorkflowManagerClient::connect(manager.clone())
                .await
                .map_err(|e| format!("cannot reach the manager at {manager}: {e}"))?;
            for (index, scenario) in scenarios.iter().enumerate() {
                let session_id = format!("sim-{}-{index}", std::process::id());
                println!("{}: {}", scenario.origin, scenario.description);
                let target = Target {
                    manager: client.clone(),
                    gateway: None,
                    session_id: &session_id,
                    agent_id: "sim-agent",
                    pace,
                };
                let outcome = run::play(scenario, target)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "  session {session_id}, reference {}\n  {} updates",
                    outcome.reference, outcome.updates
                );
            }
            Ok(true)
        }
        Command::Check {
            files,
            manager,
            gateway,
            profiles,
        } => {
            let scenarios = load(&files)?;
            let local = match (&manager, &gateway) {
                (Some(_), Some(_)) => None,
                _ => {
                    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                    let options = StackOptions {
                        manager: loopback,
                        gateway: loopback,
                        profiles: profiles.as_deref(),
                    };
                    Some(Stack::start(options).await.map_err(|e| e.to_string())?)
                }
            };
            let (manager_url, gateway_url) = match (&local, manager, gateway) {
                (Some(stack), _, _) => (stack.manager_url.clone(), stack.mediabar_url()),
                (None, Some(m), Some(g)) => (m, g),
                _ => unreachable!("clap requires --manager and --gateway together"),
            };
            let client = WorkflowManagerClient::connect(manager_url.clone())
                .await
                .map_err(|e| format!("cannot reach the manager at {manager_url}: {e}"))?;
            let mut failed = 0;
            for (index, scenario) in scenarios.iter().enumerate() {
                let session_id = format!("check-{}-{index}", std::process::id());
                let target = Target {
                    manager: client.clone(),
                    gateway: Some(&gateway_url),
                    session_id: &session_id,
                    agent_id: "sim-agent",
                    pace: 0.0,
                };
                match run::play(scenario, target).await {
                    Ok(outcome) => println!(
                        "ok    {} ({} updates, {} checkpoints)",
                        scenario.origin, outcome.updates, outcome.checkpoints
                    ),
                    Err(error) => {
                        failed += 1;
                        println!("FAIL  {error}");
                    }
                }
            }
            println!(
                "{} scenarios, {} passed, {failed} failed",
                scenarios.len(),
                scenarios.len() - failed
            );
            if let Some(stack) = local {
                stack.stop().await;
            }
            Ok(failed == 0)
        }
    }
}

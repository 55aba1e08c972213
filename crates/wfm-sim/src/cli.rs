//! The `wfm sim` command: play scenarios against a stack, check them, generate load, or soak.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::load::LoadOptions;
use crate::resilient::{Manager, ManagerUrls, RetryPolicy};
use crate::run::{self, Target};
use crate::scenario::{self, Scenario};
use crate::soak::SoakOptions;
use crate::soak::proc::Watched;
use crate::stack::{Stack, StackOptions};
use clap::{Parser, Subcommand};

/// The subcommand of the `wfm` binary that runs the simulator.
pub const COMMAND: &str = "sim";

/// Interaction Processor simulator.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
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
        /// The manager's gRPC URL, or a comma-separated list of a cluster's replicas: a call
        /// the replica cannot serve is retried at the next one.
        #[arg(
            long,
            visible_alias = "manager-url",
            env = "WFM_MANAGER_URL",
            default_value = "http://127.0.0.1:50051"
        )]
        manager: ManagerUrls,
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
        /// A running manager's gRPC URL, or a comma-separated list of replicas (needs
        /// --gateway too).
        #[arg(long, visible_alias = "manager-url", requires = "gateway")]
        manager: Option<ManagerUrls>,
        /// A running gateway's MediaBar WebSocket URL.
        #[arg(long, requires = "manager")]
        gateway: Option<String>,
        /// Profile file for the in-process stack.
        #[arg(long, conflicts_with = "manager")]
        profiles: Option<PathBuf>,
    },
    /// Drive many sessions, each bound through the gateway by its own WebSocket, and report
    /// throughput and end-to-end latency. Without --manager, starts its own stack in-process.
    /// Each session holds a file descriptor on both sides: raise `ulimit -n` for thousands.
    Load {
        /// Concurrent agent sessions.
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        /// Updates per second across all sessions; 0 runs closed loop (as fast as answered).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds to measure.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seconds to run before measuring.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// gRPC PushUpdates streams to spread the updates over.
        #[arg(long, default_value_t = 4)]
        push_streams: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// A running manager's gRPC URL, or a comma-separated list of replicas (needs
        /// --gateway too).
        #[arg(long, visible_alias = "manager-url", requires = "gateway")]
        manager: Option<ManagerUrls>,
        /// A running gateway's MediaBar WebSocket URL.
        #[arg(long, requires = "manager")]
        gateway: Option<String>,
    },
    /// Run the stack for a long time with churn (sessions ending and starting, clients
    /// reconnecting and taking over, malformed frames), then check every session's final
    /// state and report errors and the memory and descriptor trend. Exits 1 on any error or
    /// lost or stale state. Without --manager, starts its own stack in-process.
    Soak {
        /// Live sessions, each with its bound MediaBar client.
        #[arg(long, default_value_t = 200)]
        sessions: usize,
        /// Actions per second across all sessions (about 95% CTI updates, the rest churn).
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Seconds to churn; the first 20% are the warm-up.
        #[arg(long, default_value_t = 60)]
        duration_secs: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// A running manager's gRPC URL, or a comma-separated list of replicas (needs
        /// --mediabar too).
        #[arg(long, visible_alias = "manager-url", requires = "mediabar")]
        manager: Option<ManagerUrls>,
        /// A running gateway's MediaBar WebSocket URL.
        #[arg(long, visible_alias = "gateway", requires = "manager")]
        mediabar: Option<String>,
        /// Processes to sample (with --manager: the manager's and the gateway's pids);
        /// comma-separated. The in-process stack samples this process.
        #[arg(long, value_delimiter = ',')]
        pid: Vec<u32>,
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

/// Runs the command `cli` names: exits 1 when a scenario or the load run failed.
#[tokio::main]
pub async fn run(cli: Cli) -> ExitCode {
    // Logs go to stderr, so that `--json` output on stdout stays parseable.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(wfm_telemetry::init::ansi())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run_command(cli.command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// The given stack's URLs, or an in-process stack's when none is given.
async fn stack_or(
    manager: Option<ManagerUrls>,
    gateway: Option<String>,
    profiles: Option<&Path>,
) -> Result<(Option<Stack>, ManagerUrls, String), String> {
    if let (Some(manager), Some(gateway)) = (manager, gateway) {
        return Ok((None, manager, gateway));
    }
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let options = StackOptions {
        manager: loopback,
        gateway: loopback,
        profiles,
        profile_text: None,
        demo: None,
    };
    let stack = Stack::start(options).await.map_err(|e| e.to_string())?;
    let manager = stack
        .manager_url
        .parse()
        .map_err(|e: crate::resilient::UrlsError| e.to_string())?;
    let gateway = stack.mediabar_url();
    Ok((Some(stack), manager, gateway))
}

/// The replicas at `urls`, connected lazily: one that is down is skipped on first use.
fn connect(urls: &ManagerUrls) -> Result<Manager, String> {
    Manager::new(urls, RetryPolicy::default()).map_err(|e| e.to_string())
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
            let client = connect(&manager)?;
            for (index, scenario) in scenarios.iter().enumerate() {
                let session_id = format!("sim-{}-{index}", std::process::id());
                println!("{}: {}", scenario.origin, scenario.description);
                let target = Target {
                    manager: client.clone(),
                    gateway: None,
                    session_id: &session_id,
                    agent_id: "sim-agent",
                    pace,
                    announce: true,
                };
                let outcome = run::play(scenario, target)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("  done: {} updates", outcome.updates);
            }
            Ok(true)
        }
        Command::Load {
            sessions,
            rate,
            duration,
            warmup,
            push_streams,
            json,
            manager,
            gateway,
        } => {
            let (local, manager_url, gateway_url) = stack_or(manager, gateway, None).await?;
            let client = connect(&manager_url)?;
            let options = LoadOptions {
                sessions,
                rate,
                duration: Duration::from_secs(duration),
                warmup: Duration::from_secs(warmup),
                push_streams,
                progress: true,
            };
            eprintln!("binding {sessions} sessions through {gateway_url}");
            let report = crate::load::run(client, &gateway_url, &options)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", report.table());
            }
            if let Some(stack) = local {
                stack.stop().await;
            }
            Ok(report.errors == 0)
        }
        Command::Soak {
            sessions,
            rate,
            duration_secs,
            json,
            manager,
            mediabar,
            pid,
        } => {
            let external = manager.is_some();
            let (local, manager_url, gateway_url) = stack_or(manager, mediabar, None).await?;
            let watch = if external {
                pid.into_iter().map(Watched::Pid).collect()
            } else {
                vec![Watched::Myself]
            };
            let options = SoakOptions {
                sessions,
                rate,
                duration: Duration::from_secs(duration_secs),
                watch,
                progress: true,
            };
            eprintln!("soak: binding {sessions} sessions through {gateway_url}");
            let report = crate::soak::run(connect(&manager_url)?, &gateway_url, &options)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", report.table());
            }
            if let Some(stack) = local {
                stack.stop().await;
            }
            Ok(report.correct())
        }
        Command::Check {
            files,
            manager,
            gateway,
            profiles,
        } => {
            let scenarios = load(&files)?;
            let (local, manager_url, gateway_url) =
                stack_or(manager, gateway, profiles.as_deref()).await?;
            let client = connect(&manager_url)?;
            let mut failed = 0;
            for (index, scenario) in scenarios.iter().enumerate() {
                let session_id = format!("check-{}-{index}", std::process::id());
                let target = Target {
                    manager: client.clone(),
                    gateway: Some(&gateway_url),
                    session_id: &session_id,
                    agent_id: "sim-agent",
                    pace: 0.0,
                    announce: false,
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

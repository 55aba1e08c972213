//! The `wfm` command, the one binary of the stack: one build serves every role.
//!
//! - `wfm up`: the whole stack in one process, with demo agents and the demo page.
//! - `wfm manager`: the workflow-manager gRPC service, as containers run it.
//! - `wfm gateway`: the edge gateway, as containers run it.
//! - `wfm sim`: the Interaction Processor simulator (run, check, load).
//! - `wfm bench`: the benchmark suite, and the child roles it re-executes itself as.
//! - `wfm profile check FILE`: validate a profile file; exits non-zero on any problem.
//! - `wfm profile explain`: why each capability of a session is enabled or disabled.

mod profile_cmd;
mod snapshot;
mod up;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Workflow Manager tools.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the manager, the gateway and demo agents in one process, on embedded defaults.
    Up(up::UpArgs),
    /// Run the workflow-manager gRPC service; `wfm manager --help` lists its settings.
    #[command(name = wfm_manager::cli::COMMAND, disable_help_flag = true)]
    Manager(Forwarded),
    /// Run the edge gateway; `wfm gateway --help` lists its settings.
    #[command(name = wfm_gateway::cli::COMMAND, disable_help_flag = true)]
    Gateway(Forwarded),
    /// Play the Interaction Processor: scenarios against a stack, checks, load.
    #[command(name = wfm_sim::cli::COMMAND)]
    Sim(wfm_sim::cli::Cli),
    /// Run the benchmark suite and write `BENCHMARKS.md` and the scale plot.
    #[command(name = wfm_bench::cli::COMMAND)]
    Bench(wfm_bench::cli::Cli),
    /// Workflow profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
}

/// A service's arguments, parsed by the service itself: its settings come in layers (a
/// `--config` file under the environment and the flags), which only its own parser applies.
#[derive(Debug, clap::Args)]
struct Forwarded {
    /// The service's settings.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

impl Forwarded {
    /// The arguments as the service parses them: named `wfm <command>` in help and errors.
    fn argv(self, command: &str) -> Vec<OsString> {
        std::iter::once(OsString::from(format!("wfm {command}")))
            .chain(self.args)
            .collect()
    }
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Validate a profile file; prints every problem as file:line:col: message.
    Check {
        /// The profile file (TOML).
        file: PathBuf,
    },
    /// Print, for each target and capability, enabled or disabled and why.
    Explain {
        /// The profile file; without it only the built-in default profile exists.
        #[arg(long, env = "WFM_PROFILES")]
        profiles: Option<PathBuf>,
        /// The profile to apply; by default the live session's own, else the file's default.
        #[arg(long)]
        profile: Option<String>,
        /// A session-state file (TOML) to explain.
        #[arg(long, conflicts_with = "session", required_unless_present = "session")]
        snapshot: Option<PathBuf>,
        /// A live session of a running manager to explain.
        #[arg(long)]
        session: Option<String>,
        /// The manager's gRPC address, for --session.
        #[arg(
            long,
            env = "WFM_MANAGER_URL",
            default_value = "http://127.0.0.1:50051"
        )]
        manager: String,
    },
}

fn main() -> ExitCode {
    // Each role starts the runtime it needs: the services a multi-threaded one for the OTLP
    // exporters, the benchmark's callgrind targets none at all.
    match Cli::parse().command {
        Command::Up(args) => report(up(args)),
        Command::Profile(command) => report(profile(command)),
        Command::Manager(args) => wfm_manager::cli::run(args.argv(wfm_manager::cli::COMMAND)),
        Command::Gateway(args) => wfm_gateway::cli::run(args.argv(wfm_gateway::cli::COMMAND)),
        Command::Sim(cli) => wfm_sim::cli::run(cli),
        Command::Bench(cli) => wfm_bench::cli::run(cli),
    }
}

#[tokio::main]
async fn up(args: up::UpArgs) -> anyhow::Result<String> {
    tracing_subscriber::fmt()
        .with_ansi(wfm_telemetry::init::ansi())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    up::run(args).await.map(|()| String::new())
}

#[tokio::main]
async fn profile(command: ProfileCommand) -> anyhow::Result<String> {
    match command {
        ProfileCommand::Check { file } => profile_cmd::check(&file),
        ProfileCommand::Explain {
            profiles,
            profile,
            snapshot,
            session,
            manager,
        } => {
            let source = match (&snapshot, &session) {
                (Some(path), _) => profile_cmd::Source::Snapshot(path),
                (None, Some(id)) => profile_cmd::Source::Session {
                    id,
                    manager: &manager,
                },
                (None, None) => unreachable!("clap requires --snapshot or --session"),
            };
            profile_cmd::run_explain(profiles.as_deref(), profile.as_deref(), source).await
        }
    }
}

/// Prints a tool's output, or its error and fails.
fn report(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

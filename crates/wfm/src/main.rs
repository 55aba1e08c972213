//! The `wfm` command.
//!
//! - `wfm up`: the whole stack in one process, with demo agents and the demo page.
//! - `wfm profile check FILE`: validate a profile file; exits non-zero on any problem.
//! - `wfm profile explain`: why each capability of a session is enabled or disabled.

mod profile_cmd;
mod snapshot;
mod up;

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
    /// Workflow profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .init();
            up::run(args).await.map(|()| String::new())
        }
        Command::Profile(ProfileCommand::Check { file }) => profile_cmd::check(&file),
        Command::Profile(ProfileCommand::Explain {
            profiles,
            profile,
            snapshot,
            session,
            manager,
        }) => {
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
    };
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

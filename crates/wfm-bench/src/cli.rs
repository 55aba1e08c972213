//! `wfm bench`: runs the benchmark suite and writes `BENCHMARKS.md` and the scale plot.
//! Also the child roles it re-executes itself as (servers, callgrind targets).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::suite::{self, Plan};
use crate::{plot, proc, report, roles};
use clap::{Parser, Subcommand};

/// The subcommand of the `wfm` binary that runs the suite; its child roles are
/// `wfm bench <role>` too, so that they run the very code that was built.
pub const COMMAND: &str = "bench";

/// The Workflow Manager benchmark suite.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole suite and write the report and the plot.
    All {
        /// The short suite (under two minutes): fewer sessions, shorter runs.
        #[arg(long)]
        quick: bool,
        /// Where to write the report.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Where to write the scale-curve plot.
        #[arg(long, default_value = "docs/bench/scale.png")]
        plot: PathBuf,
        /// Only this session count (for investigation; the report is then partial).
        #[arg(long, hide = true)]
        only: Option<usize>,
        /// Where to write every run as JSON (`wfm bench report` redraws from it).
        #[arg(long, default_value = "docs/bench/results.json")]
        json: PathBuf,
    },
    /// Write the report and the plot again from a JSON file of results.
    Report {
        /// The results, as `all` wrote them.
        #[arg(long, default_value = "docs/bench/results.json")]
        json: PathBuf,
        /// Where to write the report.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Where to write the scale-curve plot.
        #[arg(long, default_value = "docs/bench/scale.png")]
        plot: PathBuf,
        /// The command to name as the one that measured.
        #[arg(long, default_value = "cargo run --release -p wfm -- bench all")]
        command: String,
    },
    /// Measure memory only: manager and gateway RSS per idle bound session.
    Memory {
        /// Sessions (each side holds one socket per session: mind `ulimit -n`).
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
    },
    /// Hold a pipeline under load and print its process ids, for a profiler to attach.
    Profile {
        /// Sessions.
        #[arg(long, default_value_t = 2000)]
        sessions: usize,
        /// Updates/s; 0 runs closed loop.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Seconds to measure.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Child role: a workflow manager.
    #[command(hide = true)]
    ServeManager,
    /// Child role: a gateway in front of the manager at MANAGER.
    #[command(hide = true)]
    ServeGateway {
        /// The manager's address.
        manager: String,
    },
    /// Child role: the raw tonic ceiling.
    #[command(hide = true)]
    ServeRawTonic,
    /// Child role: the raw WebSocket ceiling.
    #[command(hide = true)]
    ServeRawWs,
    /// The work counted under callgrind: WHAT (apply-1, apply-3, apply-10, snapshot-3, json,
    /// protobuf) done COUNT times in one function.
    Callgrind {
        /// What to do.
        what: String,
        /// How many times.
        count: u64,
    },
}

/// Runs the command `cli` names: a suite, a report, or a child role.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Callgrind { what, count } => roles::callgrind_target(&what, count),
        command => runtime().and_then(|rt| rt.block_on(run_command(command))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wfm bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    Ok(())
}

/// Writes the plot and the report (which links the plot relative to the report).
fn write(results: &suite::Results, command: &str, out: &Path, plot: &Path) -> anyhow::Result<()> {
    create_parent(plot)?;
    plot::scale(results, plot)?;
    let base = out.parent().unwrap_or(Path::new(""));
    let link = plot.strip_prefix(base).unwrap_or(plot);
    create_parent(out)?;
    std::fs::write(out, report::markdown(results, command, link))?;
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::ServeManager => roles::serve_manager().await,
        Command::Memory { sessions } => {
            proc::raise_open_files_limit();
            suite::memory(sessions).await
        }
        Command::Profile {
            sessions,
            rate,
            seconds,
        } => {
            proc::raise_open_files_limit();
            suite::profile(sessions, rate, seconds).await
        }
        Command::ServeGateway { manager } => roles::serve_gateway(&manager).await,
        Command::ServeRawTonic => roles::serve_raw_tonic().await,
        Command::ServeRawWs => roles::serve_raw_ws().await,
        Command::Callgrind { what, count } => roles::callgrind_target(&what, count),
        Command::All {
            quick,
            only,
            out,
            plot,
            json,
        } => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            // `bench all ...`: the arguments after the binary, as `cargo run -p wfm --` takes them.
            let command = format!("cargo run --release -p wfm -- {}", args.join(" "));
            let mut plan = Plan::new(quick, proc::raise_open_files_limit());
            if let Some(sessions) = only {
                plan.scale = vec![sessions];
                plan.main_sessions = sessions;
            }
            let results = suite::run(plan).await?;
            create_parent(&json)?;
            std::fs::write(&json, serde_json::to_string_pretty(&results)?)?;
            write(&results, &command, &out, &plot)?;
            eprintln!(
                "[wfm-bench] wrote {}, {} and {} in {:.0} s",
                out.display(),
                plot.display(),
                json.display(),
                results.seconds
            );
            Ok(())
        }
        Command::Report {
            json,
            out,
            plot,
            command,
        } => {
            let results: suite::Results = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
            write(&results, &command, &out, &plot)
        }
    }
}

//! `wfm bench`: runs the benchmark suite and writes `BENCHMARKS.md` and the scale plot.
//! Also the child roles it re-executes itself as (servers, callgrind targets).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::cluster::{self, ClusterPart, ClusterPlan};
use crate::suite::{self, Plan};
use crate::{commands, nats, plot, proc, report, roles, timers};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

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

/// Where a part run on its own merges its figures (`--merge`), and what it writes then.
#[derive(Debug, Args)]
struct Merge {
    /// Merge the figures into this results JSON (as `all` wrote it) and write the report
    /// and the plot from it again.
    #[arg(long = "merge")]
    json: Option<PathBuf>,
    /// Where to write the report, with --merge.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Where to write the scale-curve plot, with --merge.
    #[arg(long, default_value = "docs/bench/scale.png")]
    plot: PathBuf,
    /// The command to name for the suite in the report, with --merge.
    #[arg(long, default_value = "cargo run --release -p wfm -- bench all")]
    suite_command: String,
}

impl Merge {
    /// With --merge: merges one part's figures (`apply`) into the results JSON, and writes
    /// the report and the plot from it again.
    fn apply(&self, apply: impl FnOnce(&mut suite::Results)) -> anyhow::Result<()> {
        let Some(json) = &self.json else {
            return Ok(());
        };
        let text = std::fs::read_to_string(json)
            .with_context(|| format!("cannot read {}", json.display()))?;
        let mut results: suite::Results = serde_json::from_str(&text)?;
        apply(&mut results);
        std::fs::write(json, serde_json::to_string_pretty(&results)?)?;
        write(&results, &self.suite_command, &self.out, &self.plot)?;
        eprintln!(
            "[wfm-bench] merged the figures into {} and wrote {}",
            json.display(),
            self.out.display()
        );
        Ok(())
    }
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
    /// Run only the cluster part (needs `WFM_NATS_SERVER`) and merge it into the results
    /// JSON and the report written from it.
    Cluster {
        /// The short cluster part (under two minutes).
        #[arg(long)]
        quick: bool,
        /// Where to write the report.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Where to write the scale-curve plot (redrawn from the results JSON).
        #[arg(long, default_value = "docs/bench/scale.png")]
        plot: PathBuf,
        /// The results JSON to merge into (its single-process suite is kept as it is).
        #[arg(long, default_value = "docs/bench/results.json")]
        json: PathBuf,
        /// The command to name for the suite in the results JSON, which this does not rerun.
        #[arg(long, default_value = "cargo run --release -p wfm -- bench all")]
        suite_command: String,
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
    /// Measure a MediaBar command's round trip beside a CTI update's one-way latency.
    Commands {
        /// Sessions, each with its own bound client.
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Commands/s across all sessions (and as many updates/s).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds to measure.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[command(flatten)]
        merge: Merge,
    },
    /// Measure what sessions with a pending deadline (time-boxed after-call work) cost the
    /// manager in memory and CPU, against the same sessions without one.
    Timers {
        /// Sessions in each manager.
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        /// The after-call work time box, seconds (the creation must fit in it).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(2..))]
        acw_secs: u32,
        #[command(flatten)]
        merge: Merge,
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
    ServeManager {
        /// Time-box after-call work to this many seconds (0: the default profile's none).
        #[arg(long, default_value_t = 0)]
        acw_timeout_secs: u32,
    },
    /// Child role: a gateway in front of the manager at MANAGER.
    #[command(hide = true)]
    ServeGateway {
        /// The manager's address.
        manager: String,
    },
    /// Child role: a manager replica in cluster mode.
    #[command(hide = true)]
    ServeClusterManager {
        /// Its node id.
        node_id: String,
        /// NATS URLs, comma-separated.
        nats_url: String,
        /// Lease TTL, ms.
        lease_ms: u64,
        /// JetStream copies of each bucket.
        replicas: usize,
    },
    /// Child role: a gateway in front of a cluster.
    #[command(hide = true)]
    ServeClusterGateway {
        /// NATS URLs, comma-separated.
        nats_url: String,
        /// The replicas' gRPC URLs, comma-separated.
        manager_urls: String,
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
    let soak = crate::report_soak::load(Path::new(crate::report_soak::SOAK_JSON))?;
    std::fs::write(out, report::markdown(results, command, link, soak.as_ref()))?;
    Ok(())
}

/// This invocation as `cargo run` takes it: the arguments after the binary.
fn invocation() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p wfm -- {}", args.join(" "))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::ServeManager { acw_timeout_secs } => roles::serve_manager(acw_timeout_secs).await,
        Command::Timers {
            sessions,
            acw_secs,
            merge,
        } => {
            proc::raise_open_files_limit();
            let figures = timers::run(timers::TimerPlan { sessions, acw_secs }).await?;
            print!("{}", figures.table());
            anyhow::ensure!(
                figures.all_expired(),
                "not every session's after-call work ended at its deadline"
            );
            merge.apply(|results| results.timers = Some(figures))
        }
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
        Command::Commands {
            sessions,
            rate,
            seconds,
            merge,
        } => {
            proc::raise_open_files_limit();
            let plan = commands::CommandPlan {
                sessions,
                rate,
                duration: Duration::from_secs(seconds),
            };
            let figures = commands::run(plan).await?;
            print!("{}", figures.table());
            anyhow::ensure!(
                figures.errors == 0,
                "{} commands or updates failed",
                figures.errors
            );
            merge.apply(|results| results.commands = Some(figures))
        }
        Command::ServeGateway { manager } => roles::serve_gateway(&manager).await,
        Command::ServeClusterManager {
            node_id,
            nats_url,
            lease_ms,
            replicas,
        } => roles::serve_cluster_manager(&node_id, &nats_url, lease_ms, replicas).await,
        Command::ServeClusterGateway {
            nats_url,
            manager_urls,
        } => roles::serve_cluster_gateway(&nats_url, &manager_urls).await,
        Command::Cluster {
            quick,
            out,
            plot,
            json,
            suite_command,
        } => {
            let command = invocation();
            let Some(binary) = nats::configured_binary() else {
                anyhow::bail!(
                    "{} is not set: the cluster part needs a nats-server binary (2.11 or later)",
                    nats::SERVER_ENV
                );
            };
            let plan = ClusterPlan::new(quick, proc::raise_open_files_limit());
            let text = std::fs::read_to_string(&json).with_context(|| {
                format!(
                    "cannot read {}: run `bench all` first, which the cluster part is merged into",
                    json.display()
                )
            })?;
            let mut results: suite::Results = serde_json::from_str(&text)?;
            results.cluster = match cluster::run(plan, &binary, &command).await {
                Ok(measured) => ClusterPart::Measured(Box::new(measured)),
                Err(error) => {
                    // Written into the report, not hidden: it says the part failed and why.
                    eprintln!("[wfm-bench] cluster part FAILED: {error:#}");
                    ClusterPart::Failed(format!("{command}: {error:#}"))
                }
            };
            std::fs::write(&json, serde_json::to_string_pretty(&results)?)?;
            write(&results, &suite_command, &out, &plot)?;
            eprintln!(
                "[wfm-bench] merged the cluster part into {} and wrote {}",
                json.display(),
                out.display()
            );
            Ok(())
        }
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
            let command = invocation();
            let open_files = proc::raise_open_files_limit();
            let mut plan = Plan::new(quick, open_files);
            if let Some(sessions) = only {
                plan.scale = vec![sessions];
                plan.main_sessions = sessions;
            }
            let mut results = suite::run(plan).await?;
            results.cluster = match nats::configured_binary() {
                None => {
                    let reason = format!(
                        "{} is not set, so no nats-server was available",
                        nats::SERVER_ENV
                    );
                    eprintln!("[wfm-bench] cluster part SKIPPED: {reason}");
                    ClusterPart::Skipped(reason)
                }
                Some(binary) => {
                    let plan = ClusterPlan::new(quick, open_files);
                    match cluster::run(plan, &binary, &command).await {
                        Ok(measured) => ClusterPart::Measured(Box::new(measured)),
                        Err(error) => {
                            // Reported, not hidden: the single-process figures still stand.
                            eprintln!("[wfm-bench] cluster part FAILED: {error:#}");
                            ClusterPart::Failed(format!("{error:#}"))
                        }
                    }
                }
            };
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

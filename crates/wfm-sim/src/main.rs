//! The `wfm-sim` binary.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    wfm_sim::cli::run(wfm_sim::cli::Cli::parse())
}

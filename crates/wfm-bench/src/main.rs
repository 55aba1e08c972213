//! The `wfm-bench` binary.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    wfm_bench::cli::run(wfm_bench::cli::Cli::parse())
}

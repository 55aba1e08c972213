//! The `wfm-gateway` binary.

fn main() -> std::process::ExitCode {
    wfm_gateway::cli::run(std::env::args_os().collect())
}

//! The `wfm-manager` binary.

fn main() -> std::process::ExitCode {
    wfm_manager::cli::run(std::env::args_os().collect())
}

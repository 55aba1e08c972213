//! The entry of a service command (`wfm manager`, `wfm gateway`): settings first, then the
//! service on a runtime, with the same exits for both.

use std::ffi::OsString;
use std::fmt::Debug;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// Parses `args` (the program name first) into `S`, exiting 2 with the settings' one-line
/// error, then runs `service` on a multi-threaded runtime until it returns. A failure is
/// printed as `main` returning it would print it, and exits 1.
pub fn run_service<S, F, E>(args: Vec<OsString>, service: impl FnOnce(S) -> F) -> ExitCode
where
    S: CommandFactory + FromArgMatches,
    F: Future<Output = Result<(), E>>,
    E: Debug + From<std::io::Error>,
{
    let settings: S = match crate::settings::parse_from(args) {
        Ok((settings, _)) => settings,
        Err(error) => error.exit(),
    };
    // Multi-threaded: the OTLP exporters flush from a blocking thread through the runtime.
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(E::from)
        .and_then(|runtime| runtime.block_on(service(settings)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:?}");
            ExitCode::FAILURE
        }
    }
}

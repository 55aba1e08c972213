//! Fixtures for tests that run the real `wfm` binary as a child process.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod nats;

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A free loopback port: bound, read and released.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `wfm` with its subcommand, ready for more arguments.
pub fn wfm(subcommand: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wfm"));
    command.arg(subcommand);
    command
}

/// Runs `command`, which must refuse to start with exit code 2; returns what it printed
/// on stderr, trimmed.
pub fn refusal(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_string()
}

/// A child that is killed if the test fails before it exits.
pub struct Reaper(pub Child);

impl Reaper {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit until `deadline`, failing the test after it; `what` names the
    /// process in the failure.
    pub async fn exit_by(&mut self, deadline: Instant, what: &str) -> ExitStatus {
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the {what} did not exit within its grace period"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! Servers in child processes, and their memory.
//!
//! Every server the harness measures runs in a child process: this same executable started
//! again with a role (`wfm bench serve-manager`, ...). That keeps each server's resident set
//! its own, and splits the file descriptors: a process may hold about 20,000 here, and a
//! run of 19,000 sessions needs one socket per session on each side.
//!
//! A child prints its listening addresses on its first stdout line, and exits when its
//! stdin closes, so that no server outlives the harness even if the harness is killed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

/// A server running in a child process; killed when dropped.
pub struct ServerChild {
    child: Child,
    /// Kept open: the child exits when it closes.
    _stdin: Option<ChildStdin>,
    _stdout: BufReader<ChildStdout>,
    /// The addresses the child printed.
    pub addresses: Vec<String>,
}

impl ServerChild {
    /// Starts this executable as `wfm bench` with `args` and reads the addresses it listens on.
    pub fn spawn(args: &[&str]) -> anyhow::Result<ServerChild> {
        let exe = std::env::current_exe().context("cannot find the harness executable")?;
        let mut command = Command::new(exe);
        // An experiment knob: the servers' tokio worker threads (default: one per core).
        if let Ok(threads) = std::env::var("WFM_BENCH_SERVER_THREADS")
            && !threads.is_empty()
        {
            command.env("TOKIO_WORKER_THREADS", threads);
        }
        let mut child = command
            .arg(crate::cli::COMMAND)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start the {} child", args.join(" ")))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("the child has no stdout"))?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addresses: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if addresses.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the {} child printed no address", args.join(" "));
        }
        Ok(ServerChild {
            child,
            _stdin: stdin,
            _stdout: stdout,
            addresses,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the child exited, if it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILLs the child (a crash: no handoff, no clean leave) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The child's resident set, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid())
    }

    /// The child's CPU time so far (user + system), seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(self.pid())
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a child: exits the process once stdin reaches end of file (the harness is gone).
pub fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

/// The resident set of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// User plus system CPU time of process `pid`, seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    // Clock ticks are 100 Hz on every Linux this runs on.
    Ok((ticks(11) + ticks(12)) as f64 / 100.0)
}

/// Raises this process's soft limit of open files to its hard limit (children inherit it),
/// and returns the limit in force.
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(_) => open_files_limit(),
    }
}

/// The soft limit of open files of this process.
pub fn open_files_limit() -> u64 {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return 1024;
    };
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Waits for RSS to settle after a burst of allocations.
pub async fn settle(quick: bool) {
    tokio::time::sleep(if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(1)
    })
    .await;
}

//! Resident memory and open file descriptors of a process, from `/proc`, and their trend
//! over a run.

use serde::{Deserialize, Serialize};

/// Which process to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// This process (`/proc/self`): with the in-process stack, manager, gateway and driver.
    Myself,
    /// Another process, by id.
    Pid(u32),
}

impl Watched {
    fn dir(self) -> String {
        match self {
            Watched::Myself => "/proc/self".to_string(),
            Watched::Pid(pid) => format!("/proc/{pid}"),
        }
    }

    /// A label for the report.
    pub fn label(self) -> String {
        match self {
            Watched::Myself => format!("this process (pid {})", std::process::id()),
            Watched::Pid(pid) => format!("pid {pid}"),
        }
    }

    /// Reads the process's resident set and descriptor count now; `None` when `/proc` has
    /// no such process (it exited) or is not readable.
    pub fn sample(self, at_secs: f64) -> Option<Sample> {
        let dir = self.dir();
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let rss_kb = status.lines().find_map(|line| {
            line.strip_prefix("VmRSS:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })?;
        let fds = std::fs::read_dir(format!("{dir}/fd")).ok()?.count() as u64;
        Some(Sample {
            at_secs,
            rss_kb,
            fds,
        })
    }
}

/// One reading.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the churn started.
    pub at_secs: f64,
    /// `VmRSS`, KiB.
    pub rss_kb: u64,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: u64,
}

/// One process's readings and what they show after the warm-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trend {
    /// Which process.
    pub label: String,
    /// At the end of the warm-up (the first reading at or after it).
    pub baseline: Option<Sample>,
    /// The last reading of the run.
    pub last: Option<Sample>,
    /// The largest resident set seen after the warm-up, KiB.
    pub peak_rss_kb: u64,
    /// `last` over `baseline`, percent; 0 without both.
    pub rss_growth_pct: f64,
    /// `last` minus `baseline` descriptors.
    pub fd_growth: i64,
    /// Every reading.
    pub samples: Vec<Sample>,
}

impl Trend {
    /// The trend of `samples`, with the warm-up ending at `warmup_secs`.
    pub fn of(label: String, samples: Vec<Sample>, warmup_secs: f64) -> Self {
        let after: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at_secs >= warmup_secs)
            .collect();
        let baseline = after.first().copied().copied();
        let last = after.last().copied().copied();
        let (rss_growth_pct, fd_growth) = match (baseline, last) {
            (Some(b), Some(l)) if b.rss_kb > 0 => (
                (l.rss_kb as f64 - b.rss_kb as f64) * 100.0 / b.rss_kb as f64,
                l.fds as i64 - b.fds as i64,
            ),
            _ => (0.0, 0),
        };
        Self {
            label,
            baseline,
            last,
            peak_rss_kb: after.iter().map(|s| s.rss_kb).max().unwrap_or(0),
            rss_growth_pct,
            fd_growth,
            samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_secs: f64, rss_kb: u64, fds: u64) -> Sample {
        Sample {
            at_secs,
            rss_kb,
            fds,
        }
    }

    #[test]
    fn growth_is_measured_from_the_end_of_the_warm_up() {
        let samples = vec![at(0.0, 10, 5), at(2.0, 100, 50), at(9.0, 101, 52)];
        let trend = Trend::of("p".into(), samples, 2.0);
        assert_eq!(trend.baseline.map(|s| s.rss_kb), Some(100));
        assert!((trend.rss_growth_pct - 1.0).abs() < 1e-9);
        assert_eq!(trend.fd_growth, 2);
        assert_eq!(trend.peak_rss_kb, 101);
    }

    #[test]
    fn this_process_can_be_read() {
        let sample = Watched::Myself.sample(0.0);
        assert!(sample.is_some_and(|s| s.rss_kb > 0 && s.fds > 0));
    }
}

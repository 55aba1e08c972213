//! The standard `process_*` series, read from `/proc/self` at every scrape, as the
//! official Prometheus clients expose them. Elsewhere than on Linux there are none.

use std::fmt::Error;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/self/stat` times: `USER_HZ`, fixed at 100 on Linux for
/// every architecture (the Go client's procfs assumes the same).
const TICKS_PER_SECOND: f64 = 100.0;

/// Registered once per registry; reads everything when scraped.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

/// What `/proc` says about this process.
#[derive(Debug, Default, PartialEq)]
struct Process {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    start_time_seconds: Option<f64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

/// The fields of `/proc/self/stat` after the command name, which may hold spaces.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// A `Name:   1234 kB` line of `/proc/self/status`, in bytes.
fn status_kib(status: &str, name: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: i64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seconds since the epoch at boot, the `btime` line of `/proc/stat`.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

impl Process {
    /// Parses the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/self/limits` and
    /// `/proc/stat`; what cannot be read stays `None`.
    fn parse(stat: &str, status: &str, limits: &str, system: &str, open_fds: Option<i64>) -> Self {
        let fields = stat_fields(stat);
        // Numbered as in proc(5), which counts the pid as 1 and the name as 2.
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        let cpu_seconds = field(14)
            .zip(field(15))
            .map(|(user, system)| (user + system) / TICKS_PER_SECOND);
        let start_time_seconds = field(22)
            .zip(boot_time(system))
            .map(|(ticks, boot)| boot + ticks / TICKS_PER_SECOND);
        Self {
            cpu_seconds,
            resident_bytes: status_kib(status, "VmRSS:"),
            virtual_bytes: status_kib(status, "VmSize:"),
            start_time_seconds,
            open_fds,
            max_fds: max_open_files(limits),
        }
    }

    fn read() -> Self {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .and_then(|entries| i64::try_from(entries.count()).ok());
        Self::parse(
            &read("/proc/self/stat"),
            &read("/proc/self/status"),
            &read("/proc/self/limits"),
            &read("/proc/stat"),
            open_fds,
        )
    }
}

fn gauge<T>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: Option<T>,
) -> Result<(), Error>
where
    ConstGauge<T>: prometheus_client::encoding::EncodeMetric,
{
    let Some(value) = value else { return Ok(()) };
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), Error> {
        let process = Process::read();
        if let Some(seconds) = process.cpu_seconds {
            ConstCounter::new(seconds).encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?)?;
        }
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            process.resident_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            process.virtual_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            process.start_time_seconds,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors.",
            process.open_fds,
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            process.max_fds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_proc_says() {
        let stat = "4242 (wfm gate) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 \
                    9 0 12300 73728000 3000 18446744073709551615";
        let status = "Name:\twfm-gateway\nVmSize:\t   72000 kB\nVmRSS:\t    12000 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let system = "cpu  1 2 3\nbtime 1700000000\n";
        let process = Process::parse(stat, status, limits, system, Some(7));
        assert_eq!(
            process,
            Process {
                cpu_seconds: Some(3.0),
                resident_bytes: Some(12_000 * 1024),
                virtual_bytes: Some(72_000 * 1024),
                start_time_seconds: Some(1_700_000_123.0),
                open_fds: Some(7),
                max_fds: Some(1024),
            }
        );
        assert_eq!(Process::parse("", "", "", "", None), Process::default());
    }
}

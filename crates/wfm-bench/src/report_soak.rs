//! The "Soak" section of `BENCHMARKS.md`, from `docs/bench/soak.json`: a long `wfm sim soak`
//! run recorded by hand (it takes longer than the suite), kept apart from the suite's
//! results so that regenerating the report keeps it.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use wfm_sim::soak::{RSS_GOAL_PCT, SoakReport};

/// Where the recorded soak run lives, relative to the workspace root (where `wfm bench`
/// runs).
pub const SOAK_JSON: &str = "docs/bench/soak.json";

/// One recorded soak run: how it was run, and its report (`wfm sim soak --json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakRecord {
    /// The exact command.
    pub command: String,
    /// When it ran (UTC).
    pub date: String,
    /// How the stack was run and why the rate, in a sentence or two.
    pub setup: String,
    /// What `wfm sim soak --json` printed.
    pub report: SoakReport,
}

/// Why the recorded soak run could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SoakRecordError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a soak record.
    #[error("{path} is not a soak record: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// The record at `path`; `None` when there is none.
pub fn load(path: &Path) -> Result<Option<SoakRecord>, SoakRecordError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SoakRecordError::Read {
                path: shown,
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| SoakRecordError::Parse {
            path: shown,
            source,
        })
}

/// Appends the section; nothing without a record.
pub fn section(out: &mut String, record: Option<&SoakRecord>) {
    let Some(record) = record else { return };
    let r = &record.report;
    let a = &r.actions;
    let verdict = crate::report::verdict;
    let _ = writeln!(
        out,
        "## Soak\n\n\
         Recorded by hand from `{}` ({} UTC), kept in `{SOAK_JSON}` and included whenever the \
         report is written. {}\n\n\
         | goal | measured | verdict |\n| --- | --- | --- |\n\
         | 0 unexpected errors | {} | {} |\n\
         | 0 lost or stale final states ({} sessions checked against `GetSession`) | {} lost, {} stale | {} |",
        record.command,
        record.date,
        record.setup,
        r.errors,
        verdict(r.errors == 0),
        r.checked,
        r.lost,
        r.stale,
        verdict(r.lost == 0 && r.stale == 0),
    );
    for p in &r.processes {
        let _ = writeln!(
            out,
            "| {} RSS growth < {RSS_GOAL_PCT}% after the {:.0} s warm-up | {:+.2}% | {} |",
            p.label,
            r.warmup_secs,
            p.rss_growth_pct,
            verdict(p.rss_growth_pct < RSS_GOAL_PCT),
        );
    }
    let _ = writeln!(
        out,
        "\n| churn | count |\n| --- | --- |\n\
         | live sessions (each with its bound client) | {} |\n\
         | actions/s (target {}) | {:.0} over {:.0} s |\n\
         | CTI updates | {} |\n\
         | sessions ended and replaced | {} |\n\
         | clients reconnected (reload races taken over) | {} ({}) |\n\
         | bindings taken over by a second client | {} |\n\
         | malformed frames (invalid JSON, unknown type, oversized) | {} |\n\
         | actions skipped (their slot busy) | {} |",
        r.sessions,
        r.target_rate,
        r.actions_per_sec,
        r.seconds,
        a.updates,
        a.ends,
        a.reconnects,
        a.reload_races,
        a.takeovers,
        a.malformed,
        a.skipped,
    );
    for (kind, count) in &r.errors_by_kind {
        let _ = writeln!(out, "| error: {kind} | {count} |");
    }
    let _ = writeln!(
        out,
        "\n| process | RSS at warm-up end | RSS at the end | peak | growth | fds at warm-up end → end |\n\
         | --- | --- | --- | --- | --- | --- |"
    );
    let mib = |kb: u64| format!("{:.1} MiB", kb as f64 / 1024.0);
    for p in &r.processes {
        let (Some(b), Some(l)) = (p.baseline, p.last) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:+.2}% | {} → {} |",
            p.label,
            mib(b.rss_kb),
            mib(l.rss_kb),
            mib(p.peak_rss_kb),
            p.rss_growth_pct,
            b.fds,
            l.fds,
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_renders_its_goals_and_no_record_renders_nothing() {
        let report: SoakReport = serde_json::from_value(serde_json::json!({
            "sessions": 10, "target_rate": 5, "seconds": 60.0, "actions_per_sec": 5.0,
            "actions": {"updates": 280, "ends": 3, "reconnects": 3, "takeovers": 3,
                        "malformed": 5, "reload_races": 1, "skipped": 0},
            "errors": 0, "errors_by_kind": {}, "checked": 10, "lost": 0, "stale": 1,
            "examples": [], "warmup_secs": 12.0,
            "processes": [{"label": "pid 7", "baseline": {"at_secs": 12.0, "rss_kb": 1000, "fds": 9},
                           "last": {"at_secs": 60.0, "rss_kb": 1010, "fds": 9},
                           "peak_rss_kb": 1010, "rss_growth_pct": 1.0, "fd_growth": 0, "samples": []}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let record = SoakRecord {
            command: "cargo run --release -p wfm -- sim soak".into(),
            date: "2026-12-02 15:00".into(),
            setup: "In-process.".into(),
            report,
        };
        let mut out = String::new();
        section(&mut out, Some(&record));
        assert!(out.starts_with("## Soak\n"), "{out}");
        assert!(out.contains("| 0 lost, 1 stale | **missed** |"), "{out}");
        assert!(
            out.contains("| pid 7 RSS growth < 2% after the 12 s warm-up | +1.00% | **met** |"),
            "{out}"
        );
        let mut none = String::new();
        section(&mut none, None);
        assert!(none.is_empty());
    }
}

//! The cluster part of `BENCHMARKS.md`: its goal row and its section, measured, skipped or
//! failed, always said as such.

use std::fmt::Write as _;

use crate::cluster::{ClusterPart, ClusterResults, Distribution, NODE_IDS};
use crate::report::{ms, rate_label, verdict};
use crate::stats::ratio;
use crate::suite::{Percentile, Runs};

/// The cluster goal's rate, updates/s.
const GOAL_RATE: u64 = 5000;

/// The cluster goal's p99 bound, ms.
const GOAL_P99_MS: f64 = 10.0;

const GOAL: &str = "cluster mode: ≥ 5,000 updates/s sustained with p99 < 10 ms";

/// The goal row of the cluster part.
pub(crate) fn goal(out: &mut String, part: &ClusterPart) {
    match part {
        ClusterPart::Measured(r) => {
            let n = r.plan.sessions;
            if r.cluster.at(GOAL_RATE).is_empty() {
                let _ = writeln!(out, "| {GOAL} | not measured at {GOAL_RATE}/s | – |");
                return;
            }
            let achieved = r.cluster.throughput(GOAL_RATE);
            let p99 = r.cluster.latency_ms(GOAL_RATE, Percentile::P99);
            let faults = r.cluster.faults(GOAL_RATE);
            let met =
                achieved.min >= GOAL_RATE as f64 * 0.99 && p99.median < GOAL_P99_MS && faults == 0;
            let _ = writeln!(
                out,
                "| {GOAL} ({n} sessions; 3 replicas, the gateway, 3 NATS nodes and the generator all on this machine) | {} answered/s, p99 {} ms, {faults} missing or refused | {} |",
                achieved.show(0),
                ms(p99),
                verdict(met)
            );
        }
        ClusterPart::Skipped(reason) => {
            let _ = writeln!(out, "| {GOAL} | skipped: {reason} | **not measured** |");
        }
        ClusterPart::Failed(error) => {
            let first = error.lines().next().unwrap_or_default();
            let _ = writeln!(
                out,
                "| {GOAL} | the cluster part failed: {first} | **not measured** |"
            );
        }
        ClusterPart::NotRun => {
            let _ = writeln!(out, "| {GOAL} | not part of this run | **not measured** |");
        }
    }
}

/// The cluster section.
pub(crate) fn section(out: &mut String, part: &ClusterPart) {
    out.push_str("## Cluster mode\n\n");
    let r = match part {
        ClusterPart::Measured(r) => r,
        ClusterPart::Skipped(reason) => {
            let _ = writeln!(
                out,
                "**Skipped** in this run: {reason}. Set `WFM_NATS_SERVER` to a `nats-server` \
                 (2.11 or later) to include it, or run `bench cluster` to merge it in.\n"
            );
            return;
        }
        ClusterPart::Failed(error) => {
            let _ = writeln!(
                out,
                "**The cluster part failed** in this run; no cluster figure was measured:\n\n\
                 ```text\n{error}\n```\n"
            );
            return;
        }
        ClusterPart::NotRun => {
            out.push_str("Not part of this run.\n\n");
            return;
        }
    };
    intro(out, r);
    throughput(out, r);
    cpu(out, r);
    memory(out, r);
    failover(out, r);
    problems(out, r);
}

fn intro(out: &mut String, r: &ClusterResults) {
    let p = &r.plan;
    let _ = writeln!(
        out,
        "| | |\n| --- | --- |\n\
         | command | `{}` |\n\
         | date (UTC) | {} |\n\
         | part | {} — {} run(s) per figure, {:.1} s measured after {:.1} s warm-up, took {:.0} s |\n\
         | load average | {:.2} at the start, {:.2} at the end |\n\
         | NATS | {}, three routed nodes, JetStream file storage, every bucket R3 |\n",
        r.command,
        r.date,
        if p.quick { "`--quick`" } else { "full" },
        p.reps,
        p.duration.as_secs_f64(),
        p.warmup.as_secs_f64(),
        r.seconds,
        r.load_before,
        r.load_after,
        if r.nats_version.is_empty() {
            "nats-server"
        } else {
            &r.nats_version
        },
    );
    let _ = writeln!(
        out,
        "Three manager replicas (lease TTL {} ms), one gateway in front of them, and a \
         three-node NATS JetStream cluster, against the single-process pipeline (one manager, \
         one gateway) measured in the same invocation right before, with the same {} sessions, \
         the same generator and the same rates. Every process, the generator and its {} \
         WebSocket clients included, shares this machine's cores. The sessions are created \
         round robin over the replicas, so each owns a third; the generator's `PushUpdates` \
         streams go to the first replica, which forwards the updates of the sessions it does \
         not own (as an Interaction Processor behind a plain load balancer does). Ratios are \
         cluster ÷ single process, medians of this invocation; no figure is asserted.\n",
        p.lease_ttl_ms, p.sessions, p.sessions
    );
}

fn throughput(out: &mut String, r: &ClusterResults) {
    let _ = writeln!(
        out,
        "### Throughput and latency ({} sessions)\n\n\
         Latency in ms from the update's scheduled send time to the MediaBar frame.\n\n\
         | rate | mode | answered/s | p50 | p90 | p99 | p99.9 | missing or refused | retries / resyncs / recreations | answered ÷ single | p99 ÷ single |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        r.plan.sessions
    );
    for rate in r.plan.all_rates() {
        let single_t = r.single.throughput(rate).median;
        let single_p99 = r.single.latency_ms(rate, Percentile::P99).median;
        for (mode, runs) in [("single process", &r.single), ("cluster", &r.cluster)] {
            let mut row = format!(
                "| {} | {mode} | {} |",
                rate_label(rate),
                runs.throughput(rate).show(0)
            );
            for percentile in Percentile::ALL {
                let _ = write!(row, " {} |", ms(runs.latency_ms(rate, percentile)));
            }
            let repairs = runs.at(rate).iter().fold((0, 0, 0), |acc, report| {
                (
                    acc.0 + report.retries,
                    acc.1 + report.resyncs,
                    acc.2 + report.recreations,
                )
            });
            let _ = writeln!(
                out,
                "{row} {} | {} / {} / {} | {:.2}× | {:.2}× |",
                runs.faults(rate),
                repairs.0,
                repairs.1,
                repairs.2,
                ratio(runs.throughput(rate).median, single_t),
                ratio(runs.latency_ms(rate, Percentile::P99).median, single_p99),
            );
        }
    }
    out.push('\n');
}

/// `runs`' processes: the generator first, then managers, the gateway, NATS nodes.
fn processes(runs: &Runs) -> Vec<&str> {
    let mut names: Vec<&str> = runs.cpu_us.keys().map(String::as_str).collect();
    let rank = |name: &str| match name {
        "generator" => 0,
        n if n.starts_with("manager") => 1,
        "gateway" => 2,
        _ => 3,
    };
    names.sort_by_key(|name| (rank(name), name.to_string()));
    names
}

fn cpu(out: &mut String, r: &ClusterResults) {
    let rates = r.plan.all_rates();
    let _ = write!(
        out,
        "### CPU per update\n\n\
         CPU time (user + system, `/proc/PID/stat`) of each process over a run, warm-up \
         included, divided by the updates sent in it: µs per update, median of the runs.\n\n\
         | mode | process |"
    );
    for &rate in &rates {
        let _ = write!(out, " {} |", rate_label(rate));
    }
    out.push_str("\n| --- | --- |");
    for _ in &rates {
        out.push_str(" --- |");
    }
    out.push('\n');
    for (mode, runs) in [("single process", &r.single), ("cluster", &r.cluster)] {
        let names = processes(runs);
        for name in &names {
            let _ = write!(out, "| {mode} | {name} |");
            for &rate in &rates {
                let _ = write!(out, " {} |", runs.cpu(name, rate).show(1));
            }
            out.push('\n');
        }
        let _ = write!(out, "| {mode} | **sum** |");
        for &rate in &rates {
            let sum: f64 = names.iter().map(|n| runs.cpu(n, rate).median).sum();
            let _ = write!(out, " **{sum:.1}** |");
        }
        out.push('\n');
    }
    let single_sum: f64 = processes(&r.single)
        .iter()
        .map(|n| r.single.cpu(n, 0).median)
        .sum();
    let cluster_sum: f64 = processes(&r.cluster)
        .iter()
        .map(|n| r.cluster.cpu(n, 0).median)
        .sum();
    let _ = writeln!(
        out,
        "\nClosed loop, the cluster spends **{:.2}×** the CPU per update of one process.\n",
        ratio(cluster_sum, single_sum)
    );
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn memory(out: &mut String, r: &ClusterResults) {
    let m = &r.memory;
    let _ = writeln!(
        out,
        "### Memory per session\n\n\
         Resident-set growth while {} sessions were created and bound (after {} warm-up \
         sessions), read idle, divided by the sessions each process gained (a replica's own \
         `wfm_manager_sessions` gauge). Create + bind took {:.1} s in the cluster, {:.1} s \
         in one process.\n\n\
         | process | sessions | RSS MiB | B per session |\n| --- | --- | --- | --- |",
        m.sessions,
        crate::suite::WARM_SESSIONS,
        m.setup_seconds,
        r.single_memory.setup_seconds
    );
    for replica in &m.replicas {
        let _ = writeln!(
            out,
            "| manager {} | {} → {} | {:.1} → {:.1} | {:.0} |",
            replica.node_id,
            replica.base_sessions,
            replica.sessions,
            mib(replica.base_kib),
            mib(replica.kib),
            replica.per_session()
        );
    }
    let s = &r.single_memory;
    let _ = writeln!(
        out,
        "| manager, single process | +{} | {:.1} → {:.1} | {:.0} |",
        s.sessions,
        mib(s.manager_base_kib),
        mib(s.manager_kib),
        s.manager_per_session()
    );
    let gateway = (m.gateway_kib.saturating_sub(m.gateway_base_kib)) as f64 * 1024.0
        / m.sessions.max(1) as f64;
    let _ = writeln!(
        out,
        "| gateway (cluster), per connection | +{} | {:.1} → {:.1} | {gateway:.0} |",
        m.sessions,
        mib(m.gateway_base_kib),
        mib(m.gateway_kib)
    );
    let _ = writeln!(
        out,
        "| gateway, single process, per connection | +{} | {:.1} → {:.1} | {:.0} |",
        s.sessions,
        mib(s.gateway_base_kib),
        mib(s.gateway_kib),
        s.gateway_per_connection()
    );
    for (name, base, after) in &m.nats_kib {
        let _ = writeln!(
            out,
            "| NATS node {name} | +{} | {:.1} → {:.1} | {:.0} |",
            m.sessions,
            mib(*base),
            mib(*after),
            after.saturating_sub(*base) as f64 * 1024.0 / m.sessions.max(1) as f64
        );
    }
    let _ = writeln!(
        out,
        "\nWhat NATS stores, with {} sessions alive (warm-up included), read from JetStream's \
         stream info once the replicas' write-behind queues were empty. The bytes are one \
         copy: with R3 each of the three nodes holds one, on disk.\n\n\
         | stream | messages | bytes (one copy) | B per session |\n| --- | --- | --- | --- |",
        m.live_sessions
    );
    for stream in &m.streams {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {:.0} |",
            stream.name,
            stream.messages,
            stream.bytes,
            stream.bytes as f64 / m.live_sessions.max(1) as f64
        );
    }
    let both: f64 = ["KV_wfm_sessions", "KV_wfm_owned"]
        .iter()
        .filter_map(|name| m.stream_per_session(name))
        .sum();
    let _ = writeln!(
        out,
        "\n`KV_wfm_sessions` + `KV_wfm_owned`: **{both:.0} B per session** per copy, {:.0} B \
         across the three copies.\n",
        both * 3.0
    );
}

fn row(out: &mut String, what: &str, d: &Distribution) {
    let _ = writeln!(
        out,
        "| {what} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
        d.count, d.p50, d.p90, d.p99, d.max
    );
}

fn failover(out: &mut String, r: &ClusterResults) {
    out.push_str("### Failover after `kill -9` of an owner\n\n");
    let Some(f) = &r.failover else {
        out.push_str("Not measured: the phase failed (see the faults below).\n\n");
        return;
    };
    let _ = writeln!(
        out,
        "A fresh cluster; {} sessions created round robin over replicas {}, each bound by \
         its own MediaBar client through the gateway, idle (no update in flight), every \
         record persisted. Replica `{}`, owner of {} of them, is SIGKILLed; each of its \
         clients is timed from the kill to `service.available` and to having received again \
         every target of the view state it had before. The survivors take a dead replica's \
         sessions once its lease ({} ms) expires; the gateway rebinds with backoff.\n\n\
         | from the kill to | clients | p50 ms | p90 ms | p99 ms | max ms |\n\
         | --- | --- | --- | --- | --- | --- |",
        f.sessions,
        NODE_IDS.join(", "),
        f.victim,
        f.affected,
        r.plan.lease_ttl_ms
    );
    row(out, "`service.unavailable`", &f.to_unavailable_ms);
    row(out, "`service.available`", &f.to_available_ms);
    row(out, "**full state again**", &f.to_full_state_ms);
    let _ = writeln!(
        out,
        "\n{} of {} affected clients had their full state again within {:.0} s; {} \
         sessions taken over by the survivors; {} clients of the survivors were told \
         `service.unavailable`; {} clients were unbound or closed{}.\n",
        f.recovered,
        f.affected,
        f.timeout_seconds,
        f.takeovers,
        f.disturbed,
        f.unbound,
        f.first_unbound
            .as_ref()
            .map(|u| format!(" (first: `{}`)", u.replace('`', "'")))
            .unwrap_or_default()
    );
}

fn problems(out: &mut String, r: &ClusterResults) {
    out.push_str("### Faults seen\n\n");
    if r.problems.is_empty() {
        out.push_str(
            "None: no update refused or missing, no retry, resync or recreation, no session \
             lost, every failover client recovered.\n\n",
        );
        return;
    }
    for problem in &r.problems {
        let _ = writeln!(out, "- {problem}");
    }
    out.push('\n');
}

//! The benchmark suite: the whole pipeline (Interaction Processor → workflow manager →
//! gateway → MediaBar WebSockets) measured against raw ceilings built into the harness and
//! measured in the same invocation, plus the engine and encoding micro figures and their
//! instruction counts.
//!
//! `cargo run --release -p wfm -- bench all` runs everything and writes `BENCHMARKS.md` and
//! `docs/bench/scale.png`; `--quick` is the two-minute version. `cargo bench -p wfm-bench`
//! runs the criterion micro benches.
//!
//! # Layout
//! - [`cli`]: the `wfm bench` command and its hidden child roles.
//! - [`cluster`]: the cluster part (three replicas, a gateway, three NATS nodes) against one
//!   process, and the failover timing; runs when `WFM_NATS_SERVER` names a `nats-server`.
//! - [`commands`]: a MediaBar command's round trip beside a CTI update's one-way latency.
//! - [`nats`]: the three-node JetStream cluster the cluster part runs on.
//! - [`suite`]: the plan, the order of the runs, and the figures collected.
//! - [`raw`]: the raw tonic and raw WebSocket ceilings (servers and their drivers).
//! - [`roles`]: the child roles the harness re-executes itself as, and callgrind targets.
//! - [`timers`]: what sessions with a pending deadline cost the manager.
//! - [`proc`]: child processes, RSS and CPU time.
//! - [`micro`]: engine and encoding workloads, shared with the criterion benches.
//! - [`stats`]: medians with spread.
//! - [`report`]: writes `BENCHMARKS.md`.
//! - [`report_soak`]: the "Soak" section, from a recorded `wfm sim soak` run.
//! - [`plot`]: the scale-curve PNG.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod micro;
pub mod nats;
pub mod plot;
pub mod proc;
pub mod raw;
pub mod report;
mod report_cluster;
pub mod report_soak;
pub mod roles;
pub mod stats;
pub mod suite;
pub mod timers;

//! The Interaction Processor simulator: it plays an IP against a real workflow manager,
//! and a MediaBar against a real gateway.
//!
//! # Layout
//! - [`cli`]: the `wfm sim` command: run, check, load and soak.
//! - [`scenario`]: scenario files (scripted call flows with expected view states).
//! - [`mediabar`]: a MediaBar WebSocket client that keeps the latest view state.
//! - [`run`]: plays a scenario against a live stack and checks its checkpoints.
//! - [`stack`]: the manager and the gateway in one process, on loopback.
//! - [`load`]: the load generator and its latency report.
//! - [`soak`]: long runs with churn: errors, final states, memory and descriptor trends.
//! - [`library`]: the scenario library, embedded.
//! - [`demo`]: demo agents for `wfm up`: the library replayed in a loop until someone
//!   drives the agent from the page, then the platform carries out their commands.
//! - [`platform`]: a simulated CTI platform: what a command does to a session's state.
//! - [`processor`]: the Interaction Processor's command stream to the manager.
//! - [`resilient`]: the manager as a list of replicas: retries at the next one, gap →
//!   snapshot resync, lost session → recreation, and their counters.
//! - [`cti`]: the CTI state a session has reported, for snapshots and recreation.

pub mod cli;
pub mod cti;
pub mod demo;
pub mod library;
pub mod load;
pub mod mediabar;
pub mod platform;
pub mod processor;
pub mod resilient;
pub mod run;
pub mod scenario;
pub mod soak;
pub mod stack;

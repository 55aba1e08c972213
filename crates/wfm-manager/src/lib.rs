//! The workflow-manager service: Interaction Processors create sessions and push CTI
//! updates; gateways bind to sessions and receive `state.updated` events.
//!
//! # Layout
//! - [`cluster`]: cluster mode, replicas over NATS JetStream: ownership, fencing,
//!   persistence, forwarding, handoff and takeover.
//! - `commands`: MediaBar commands, checked against the view state and carried to the
//!   session's Interaction Processor over its `ReceiveCommands` stream.
//! - `auth`: the role each call needs, checked in one layer from the client certificate.
//! - `calls`: the open calls and the size refusals, counted in one layer.
//! - [`cli`]: the `wfm manager` command: settings, telemetry, serve until SIGTERM.
//! - [`serve`]: the gRPC server (with health and reflection) and its graceful shutdown.
//! - [`ManagerConfig`]: its settings.
//! - [`error`]: every refusal and its gRPC status, in one table.
//! - `service`: the `wfm.v1.WorkflowManager` implementation, a thin shell.
//! - `registry`: live sessions, their single binder, and event delivery.
//! - `timers`: one task that wakes sessions at their deadlines (time-boxed after-call work).
//! - `outbox`: the bounded queue of each binding stream, in engine types, and its overflow
//!   policy (drop and resynchronise).
//! - `streams`: the binding streams' writers, which build the protobuf outside any lock and
//!   release their bindings when dropped.
//! - [`convert`]: wire ↔ engine conversions.
//! - `profile_watch`: hot reload of the profile file.
//! - [`ManagerStats`]: the metrics (sessions, bindings, updates, events, connections,
//!   update-to-event latency), rendered on `/metrics` by the binary.
//! - [`settings`]: the binary's settings (flags, `WFM_*` environment, TOML file) and their
//!   validation.

mod auth;
mod calls;
pub mod cli;
pub mod cluster;
mod commands;
mod config;
pub mod convert;
pub mod error;
mod outbox;
mod profile_watch;
mod registry;
mod server;
mod service;
pub mod settings;
mod stats;
mod streams;
mod timers;

pub use cluster::ClusterConfig;
pub use config::ManagerConfig;
pub use server::{MAX_MESSAGE_BYTES, MAX_STREAMS_PER_CONNECTION, ServeError, serve};
pub use stats::ManagerStats;

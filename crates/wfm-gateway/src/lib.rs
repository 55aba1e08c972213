//! The edge gateway: MediaBar clients (agent toolbars in a browser) connect here over a
//! WebSocket, bind to their workflow session with its resource reference, and receive the
//! session's `state.updated` events as MediaBar JSON. The gateway reaches the workflow
//! manager through a few multiplexed `Attach` gRPC streams shared by all its connections.
//!
//! The protocol is documented for MediaBar developers in `docs/mediabar-protocol.md` and
//! specified in `docs/mediabar-asyncapi.yaml`.
//!
//! # Layout
//! - [`cli`]: the `wfm gateway` command: settings, telemetry, serve until SIGTERM.
//! - [`serve`]: the server and its graceful shutdown (`server`).
//! - [`GatewayConfig`]: its settings and their defaults (`config`).
//! - [`errors`]: every error and its MediaBar code, close codes and unbound reasons, in one
//!   table each.
//! - `protocol`: parsing client messages and the serde DTOs of everything sent.
//! - `http`: the routes, `/mediabar/v1`, `/healthz`, `/readyz`, and the demo page at `/`.
//! - [`DemoDirectory`]: the demo sessions the page lists, in demo mode only (`demo`).
//! - `connection`: one WebSocket session, one task for both directions.
//! - `outbound`: a connection's queue, with state events conflated per target.
//! - `upstream`: the `Attach` stream pool, the routing table, the Service Monitor, reconnect
//!   and rebind.
//! - `limits`: the per-connection request budget.
//! - [`GatewayStats`]: the metrics (connections, bindings, upstream streams, events
//!   received, sent and conflated, event-to-write latency), served on `/metrics`.
//! - [`settings`]: the binary's settings (flags, `WFM_*` environment, TOML file) and their
//!   validation.

pub mod cli;
mod config;
mod connection;
mod demo;
pub mod errors;
mod http;
mod limits;
mod outbound;
mod protocol;
mod server;
pub mod settings;
mod stats;
mod upstream;

pub use config::{ConfigError, GatewayConfig};
pub use demo::{DemoDirectory, DemoSession};
pub use http::{HEALTHZ_PATH, MEDIABAR_PATH, READYZ_PATH};
pub use protocol::WORKFLOW_MANAGER;
pub use server::{ServeError, serve};
pub use stats::GatewayStats;
pub use wfm_telemetry::http::METRICS_PATH;

/// The MediaBar JSON text of one `state.updated` event: the `resourceEvent` frame the
/// gateway sends for it. Exposed for the encoding benchmarks (`wfm-bench`), not an API.
#[doc(hidden)]
pub fn encode_state_event(event: &wfm_proto::v1::StateUpdated) -> String {
    protocol::state_event(event)
}

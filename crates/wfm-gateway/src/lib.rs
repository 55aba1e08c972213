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
//! - [`GatewayConfig`]: what `serve` runs with, its defaults and its checks ([`settings`]).
//! - [`errors`]: every error and its MediaBar code, close codes and unbound reasons, in one
//!   table each.
//! - `protocol`: parsing client messages and the serde DTOs of everything sent.
//! - `http1`: the HTTP/1 accept loop, with the header read deadline and graceful shutdown.
//! - `http`: the routes, `/mediabar/v1`, `/healthz`, `/readyz`, and the demo page at `/`.
//! - [`DemoDirectory`]: the demo sessions the page lists, in demo mode only (`demo`).
//! - `connection`: one WebSocket session, one task for both directions, its lifecycle and
//!   its requests.
//! - `client`: what a connection's client has been told (binding, service availability,
//!   outbound queue); applies upstream deliveries and renders them as MediaBar JSON.
//! - `delivery`: the typed messages the upstream hands a connection.
//! - `catalogue`: an `Attach` stream's capability catalogue, with each capability's JSON
//!   rendered once.
//! - `outbound`: a connection's queue, with state events conflated per target.
//! - `upstream`: the `Attach` stream pools, the routing table, the Service Monitor, reconnect,
//!   redirects to a session's owner replica and rebind; it renders no JSON.
//! - `endpoints`: the manager endpoints (the `manager_url` seeds, replicas found in NATS),
//!   the per-session owner cache, and the discovery of replicas from the `wfm_nodes` bucket.
//! - `limits`: the per-connection request budget.
//! - `timers`: a connection's clocks (pings, pong, idle, bind), with time as an argument.
//! - [`GatewayStats`]: the metrics (connections, bindings, upstream streams, events
//!   received, sent and conflated, event-to-write latency), served on `/metrics`.
//! - [`settings`]: every setting defined once: flag, `WFM_*` environment variable and TOML
//!   key, default, and check.

mod addresses;
mod catalogue;
pub mod cli;
mod client;
mod connection;
mod delivery;
mod demo;
mod endpoints;
pub mod errors;
mod http;
mod http1;
mod limits;
mod outbound;
mod protocol;
mod server;
pub mod settings;
mod stats;
mod timers;
mod upstream;

pub use demo::{DemoDirectory, DemoSession};
pub use http::{HEALTHZ_PATH, MEDIABAR_PATH, READYZ_PATH};
pub use protocol::{INTERACTION_PROCESSOR, WORKFLOW_MANAGER};
#[doc(hidden)]
pub use protocol::{Request, parse_request};
pub use server::{ServeError, serve};
pub use settings::GatewayConfig;
pub use stats::GatewayStats;
pub use wfm_telemetry::http::METRICS_PATH;
pub use wfm_telemetry::settings::SettingsError;

/// Renders `state.updated` frames the way the gateway does, for the encoding benchmarks
/// (`wfm-bench`); not an API.
#[doc(hidden)]
pub struct StateEventEncoder {
    session: client::BoundSession,
    catalogue: std::sync::Arc<catalogue::Catalogue>,
}

#[doc(hidden)]
impl StateEventEncoder {
    /// An encoder for the events of `session_id` on a stream that opened with `catalogue`.
    pub fn new(session_id: &str, catalogue: wfm_proto::v1::Catalogue) -> Option<Self> {
        Some(Self {
            session: client::BoundSession {
                id: session_id.to_string(),
                event_prefix: protocol::state_event_prefix(session_id),
            },
            catalogue: std::sync::Arc::new(catalogue::Catalogue::from_wire(catalogue).ok()?),
        })
    }

    /// The `resourceEvent` frame of one compact state, as the gateway writes it.
    pub fn encode(&self, state: &wfm_proto::v1::CompactState) -> String {
        let state = delivery::StateDelivery {
            target: state.target.clone(),
            context: state
                .context
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect(),
            defined: state.defined,
            enabled: state.enabled,
            catalogue: std::sync::Arc::clone(&self.catalogue),
            trace: std::collections::HashMap::new(),
            received: std::time::Instant::now(),
            gone: false,
        };
        protocol::state_event(&self.session, &state)
    }
}

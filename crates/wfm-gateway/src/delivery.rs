//! What the upstream (the manager side) hands a client connection, in typed form. The
//! upstream decides *what* happened to a binding or to the manager; the connection decides
//! what its client is told, and renders it as MediaBar JSON. Nothing here is JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::catalogue::Catalogue;
use crate::errors::{GatewayError, UnboundReason};
use crate::protocol::ResourceAddress;

/// Whom a command's answer goes to: the client's request, as it named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandReply {
    /// `requestId`.
    pub(crate) request_id: String,
    /// `serviceId` and `resourceId`.
    pub(crate) address: ResourceAddress,
    /// `request`: the capability.
    pub(crate) request: String,
}

/// Why a command failed: the error, and with `capabilityDisabled` the target's view state.
#[derive(Debug)]
pub(crate) struct CommandFailed {
    /// The error for the client.
    pub(crate) error: GatewayError,
    /// The target's current view state, for `capabilityDisabled`.
    pub(crate) view: Option<Box<StateDelivery>>,
}

/// The spec's service-specific information of the workflow manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ServiceInfo {
    /// Vendor name.
    pub(crate) vendor: String,
    /// Current version.
    pub(crate) version: String,
}

/// Whether the manager is reachable, and what it last said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Availability {
    /// At least one stream to the manager is connected.
    pub(crate) available: bool,
    /// The last service information fetched.
    pub(crate) info: Option<ServiceInfo>,
}

/// One target's entire view state, as the manager sent it.
#[derive(Debug)]
pub(crate) struct StateDelivery {
    /// Dot-notation target.
    pub(crate) target: String,
    /// Context labels, in the manager's order.
    pub(crate) context: Vec<(String, String)>,
    /// Defined capabilities, as bits of `catalogue`.
    pub(crate) defined: u64,
    /// Enabled capabilities, as bits of `catalogue`.
    pub(crate) enabled: u64,
    /// The catalogue of the stream it came on.
    pub(crate) catalogue: Arc<Catalogue>,
    /// W3C trace context of the update that caused it; empty when not traced.
    pub(crate) trace: HashMap<String, String>,
    /// When the gateway received it, for the event-to-write metric.
    pub(crate) received: Instant,
    /// The target's final event: it is gone.
    pub(crate) gone: bool,
}

/// What happened, for one connection.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The manager answered the connection's bind: the bound session id, or why not.
    BindResult {
        /// The binding the answer is for.
        binding_id: u64,
        /// The session bound, or the error for the client.
        result: Result<String, GatewayError>,
    },
    /// A state event of a bound session.
    State {
        /// The binding it is for.
        binding_id: u64,
        /// The event.
        state: StateDelivery,
    },
    /// The binding ended for good; afterwards the client follows the Service Monitor.
    Unbound {
        /// The binding that ended.
        binding_id: u64,
        /// Why, for the client.
        reason: UnboundReason,
        /// The manager's availability now.
        now: Availability,
    },
    /// The manager became unreachable, or reachable again. `binding_id` is set when this
    /// concerns one binding (lost with its stream, or rebound), and `None` for a broadcast,
    /// which a bound connection ignores: it hears through its binding.
    Service {
        /// The binding concerned, if any.
        binding_id: Option<u64>,
        /// Reachable or not, with the service information.
        now: Availability,
    },
    /// The answer to a command: the Interaction Processor's result data, or why it failed.
    CommandAnswer {
        /// The request answered.
        reply: CommandReply,
        /// Accepted with its data, or failed.
        result: Result<HashMap<String, String>, CommandFailed>,
    },
    /// What the client may assume when it connects, without being told.
    Assume {
        /// Whether the manager is reachable.
        available: bool,
    },
}

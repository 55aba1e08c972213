//! The MediaBar JSON messages: parsing what clients send, with a precise error for every
//! way it can be wrong, and serde DTOs for everything the gateway sends.
//!
//! `docs/mediabar-asyncapi.yaml` is the contract; the tests validate real traffic against it.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::client::BoundSession;
use crate::delivery::{ServiceInfo, StateDelivery};
use crate::errors::{GatewayError, MAX_REQUEST_ID_LEN, UnboundReason};

/// The only service this gateway fronts, as named in `serviceId` and `serviceType`.
pub const WORKFLOW_MANAGER: &str = "WorkflowManager";
/// The service that `resourceRequest`s (commands) address, through the manager.
pub const INTERACTION_PROCESSOR: &str = "InteractionProcessor";

/// A valid client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `getServices`.
    GetServices,
    /// `bindResource`.
    Bind {
        /// The session resource reference.
        reference: String,
        /// Replace another binder.
        takeover: bool,
    },
    /// `unbindResource`; `resource` is the optional `resourceId` to check against.
    Unbind {
        /// The session id or reference the client names, if any.
        resource: Option<String>,
    },
    /// A `resourceRequest`: a command for the Interaction Processor.
    Command {
        /// The capability name (`request`).
        capability: String,
        /// Dot-notation target (`data.target`).
        target: String,
        /// `data.arguments`, every value a string.
        arguments: HashMap<String, String>,
    },
}

impl Request {
    /// The request name, echoed as `response`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Request::GetServices => "getServices",
            Request::Bind { .. } => "bindResource",
            Request::Unbind { .. } => "unbindResource",
            Request::Command { .. } => "resourceRequest",
        }
    }
}

/// Where a `resourceRequest` goes: its `serviceId` and `resourceId`, echoed in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceAddress {
    /// `serviceId`.
    pub(crate) service_id: String,
    /// `resourceId`: the bound session's id.
    pub(crate) resource_id: String,
}

/// A parsed `coreRequest` or `resourceRequest`: its id and name, and the request or why it
/// is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// `requestId`.
    pub(crate) request_id: String,
    /// `request`, as sent.
    pub(crate) name: String,
    /// A `resourceRequest`'s address: it is answered with `resourceResponse` or
    /// `resourceError`. `None` for a `coreRequest`.
    pub(crate) resource: Option<ResourceAddress>,
    /// The request, or the failure to answer with.
    pub(crate) request: Result<Request, GatewayError>,
}

impl Envelope {
    /// The reply refusing this request with `error`, in its kind's shape.
    pub(crate) fn refusal(&self, error: &GatewayError) -> String {
        refusal(&self.request_id, &self.name, self.resource.as_ref(), error)
    }
}

/// The reply refusing request `request_id` named `name` with `error`: a `resourceError`
/// for a `resourceRequest` (one with an address), else a failed `coreResponse`.
pub(crate) fn refusal(
    request_id: &str,
    name: &str,
    resource: Option<&ResourceAddress>,
    error: &GatewayError,
) -> String {
    match resource {
        None => failure(request_id, name, error),
        Some(address) => resource_error(request_id, address, name, error, None),
    }
}

/// A client frame that is not even a well-formed `coreRequest`: answered with `coreError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// The `requestId`, when one could be read.
    pub(crate) request_id: Option<String>,
    /// What is wrong.
    pub(crate) error: GatewayError,
}

impl Malformed {
    fn new(error: GatewayError) -> Self {
        Self {
            request_id: None,
            error,
        }
    }
}

/// Parses one text frame.
pub(crate) fn parse(text: &str) -> Result<Envelope, Malformed> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Malformed::new(GatewayError::InvalidJson(e.to_string())))?;
    let Value::Object(mut message) = value else {
        return Err(Malformed::new(GatewayError::NotAnObject));
    };
    let resource_request = match message.get("messageType") {
        None => return Err(Malformed::new(GatewayError::MissingMessageType)),
        Some(Value::String(kind)) if kind == "coreRequest" => false,
        Some(Value::String(kind)) if kind == "resourceRequest" => true,
        Some(Value::String(kind)) => {
            return Err(Malformed::new(GatewayError::UnknownMessageType(
                kind.chars().take(64).collect(),
            )));
        }
        Some(_) => return Err(Malformed::new(GatewayError::MessageTypeNotString)),
    };
    let request_id = match message.remove("requestId") {
        None => return Err(Malformed::new(GatewayError::MissingRequestId)),
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= MAX_REQUEST_ID_LEN => id,
        Some(_) => return Err(Malformed::new(GatewayError::InvalidRequestId)),
    };
    let name = match message.remove("request") {
        Some(Value::String(name)) => name,
        other => {
            return Err(Malformed {
                request_id: Some(request_id),
                error: if other.is_none() {
                    GatewayError::MissingRequestName
                } else {
                    GatewayError::RequestNameNotString
                },
            });
        }
    };
    // Echoed back in `response`; an absurdly long unknown name is cut.
    let echoed = name.chars().take(64).collect();
    if resource_request {
        let address = address(&mut message).map_err(|error| Malformed {
            request_id: Some(request_id.clone()),
            error,
        })?;
        let request = command(&address, name, message.remove("data"));
        return Ok(Envelope {
            request_id,
            name: echoed,
            resource: Some(address),
            request,
        });
    }
    let request = request(&name, message.remove("data"));
    Ok(Envelope {
        request_id,
        name: echoed,
        resource: None,
        request,
    })
}

/// The `serviceId` and `resourceId` of a `resourceRequest`, without which it cannot be
/// answered in its own shape.
fn address(message: &mut Map<String, Value>) -> Result<ResourceAddress, GatewayError> {
    let mut field = |name: &'static str| match message.remove(name) {
        Some(Value::String(value)) => Ok(value.chars().take(MAX_REQUEST_ID_LEN).collect()),
        None => Err(GatewayError::MissingField(name)),
        Some(_) => Err(GatewayError::InvalidField {
            field: name,
            expected: "a string",
        }),
    };
    Ok(ResourceAddress {
        service_id: field("serviceId")?,
        resource_id: field("resourceId")?,
    })
}

/// A `resourceRequest`'s command: `name` on `data.target` with `data.arguments`.
fn command(
    address: &ResourceAddress,
    name: String,
    data: Option<Value>,
) -> Result<Request, GatewayError> {
    if address.service_id != INTERACTION_PROCESSOR {
        return Err(GatewayError::UnknownResourceService(
            address.service_id.chars().take(64).collect(),
        ));
    }
    let Some(Value::Object(mut data)) = data else {
        return Err(match data {
            None => GatewayError::MissingField("data"),
            Some(_) => GatewayError::InvalidField {
                field: "data",
                expected: "an object",
            },
        });
    };
    let target = match data.remove("target") {
        Some(Value::String(target)) => target,
        None => return Err(GatewayError::MissingField("data.target")),
        Some(_) => {
            return Err(GatewayError::InvalidField {
                field: "data.target",
                expected: "a string",
            });
        }
    };
    let not_strings = GatewayError::InvalidField {
        field: "data.arguments",
        expected: "an object whose values are strings",
    };
    let arguments = match data.remove("arguments") {
        None | Some(Value::Null) => HashMap::new(),
        Some(Value::Object(arguments)) => arguments
            .into_iter()
            .map(|(key, value)| match value {
                Value::String(value) => Ok((key, value)),
                _ => Err(not_strings.clone()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(not_strings),
    };
    Ok(Request::Command {
        capability: name,
        target,
        arguments,
    })
}

/// Parses one text frame as the gateway does: its `requestId` and the valid request, or the
/// `requestId` (when one could be read) and the reply that refuses the frame. For the fuzz
/// targets in `fuzz/`; not an API.
pub fn parse_request(text: &str) -> Result<(String, Request), (Option<String>, String)> {
    match parse(text) {
        Err(malformed) => {
            let reply = core_error(malformed.request_id.as_deref(), &malformed.error);
            Err((malformed.request_id, reply))
        }
        Ok(envelope) => match &envelope.request {
            Ok(request) => Ok((envelope.request_id.clone(), request.clone())),
            Err(error) => {
                let reply = envelope.refusal(error);
                Err((Some(envelope.request_id), reply))
            }
        },
    }
}

fn request(name: &str, data: Option<Value>) -> Result<Request, GatewayError> {
    let known = matches!(name, "getServices" | "bindResource" | "unbindResource");
    if !known {
        return Err(GatewayError::UnknownRequest(
            name.chars().take(64).collect(),
        ));
    }
    let data = match data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data,
        Some(_) => {
            return Err(GatewayError::InvalidField {
                field: "data",
                expected: "an object",
            });
        }
    };
    match name {
        "getServices" => Ok(Request::GetServices),
        "bindResource" => {
            service_id(&data, true)?;
            let reference = match data.get("resourceId") {
                None => return Err(GatewayError::MissingField("data.resourceId")),
                Some(Value::String(reference)) => reference.clone(),
                Some(_) => {
                    return Err(GatewayError::InvalidField {
                        field: "data.resourceId",
                        expected: "a string",
                    });
                }
            };
            let takeover = match data.get("takeover") {
                None => false,
                Some(Value::Bool(takeover)) => *takeover,
                Some(_) => {
                    return Err(GatewayError::InvalidField {
                        field: "data.takeover",
                        expected: "a boolean",
                    });
                }
            };
            Ok(Request::Bind {
                reference,
                takeover,
            })
        }
        _ => {
            service_id(&data, false)?;
            let resource = match data.get("resourceId") {
                None => None,
                Some(Value::String(resource)) => Some(resource.clone()),
                Some(_) => {
                    return Err(GatewayError::InvalidField {
                        field: "data.resourceId",
                        expected: "a string",
                    });
                }
            };
            Ok(Request::Unbind { resource })
        }
    }
}

fn service_id(data: &Map<String, Value>, required: bool) -> Result<(), GatewayError> {
    match data.get("serviceId") {
        None if required => Err(GatewayError::MissingField("data.serviceId")),
        None => Ok(()),
        Some(Value::String(id)) if id == WORKFLOW_MANAGER => Ok(()),
        Some(Value::String(id)) => Err(GatewayError::UnknownService(id.chars().take(64).collect())),
        Some(_) => Err(GatewayError::InvalidField {
            field: "data.serviceId",
            expected: "a string",
        }),
    }
}

/// `error` of a failure or `coreError`.
#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    message: String,
}

impl From<&GatewayError> for ErrorBody {
    fn from(error: &GatewayError) -> Self {
        Self {
            code: error.code().as_str(),
            message: error.to_string(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CoreResponse<'a, D> {
    message_type: &'static str,
    request_id: &'a str,
    response: &'a str,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

fn to_json(message: &impl Serialize) -> String {
    // Our DTOs hold only strings, numbers and maps with string keys, which always serialize.
    serde_json::to_string(message).unwrap_or_else(|_| unreachable!("DTOs always serialize"))
}

/// A `coreResponse` with `result: success`.
pub(crate) fn success(request_id: &str, response: &str, data: &impl Serialize) -> String {
    to_json(&CoreResponse {
        message_type: "coreResponse",
        request_id,
        response,
        result: "success",
        data: Some(data),
        error: None,
    })
}

/// A `coreResponse` with `result: failure`.
pub(crate) fn failure(request_id: &str, response: &str, error: &GatewayError) -> String {
    to_json(&CoreResponse::<()> {
        message_type: "coreResponse",
        request_id,
        response,
        result: "failure",
        data: None,
        error: Some(error.into()),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceReply<'a> {
    message_type: &'static str,
    request_id: &'a str,
    service_id: &'a str,
    resource_id: &'a str,
    request: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a HashMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

/// A `resourceResponse`: the Interaction Processor accepted the command.
pub(crate) fn resource_response(
    request_id: &str,
    address: &ResourceAddress,
    request: &str,
    data: &HashMap<String, String>,
) -> String {
    to_json(&ResourceReply {
        message_type: "resourceResponse",
        request_id,
        service_id: &address.service_id,
        resource_id: &address.resource_id,
        request,
        data: Some(data),
        error: None,
    })
}

/// A `resourceError`; a `capabilityDisabled` one carries the target's view state.
pub(crate) fn resource_error(
    request_id: &str,
    address: &ResourceAddress,
    request: &str,
    error: &GatewayError,
    view: Option<&StateDelivery>,
) -> String {
    let mut out = to_json(&ResourceReply {
        message_type: "resourceError",
        request_id,
        service_id: &address.service_id,
        resource_id: &address.resource_id,
        request,
        data: None,
        error: Some(error.into()),
    });
    if let Some(view) = view {
        // The event is written by the same writer as every resourceEvent, so it is
        // spliced in rather than modelled twice.
        out.pop();
        out.push_str(r#","data":"#);
        out.push_str(&state_event_object(view));
        out.push('}');
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CoreError<'a> {
    message_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    error: ErrorBody,
}

/// A `coreError`, for a message that cannot be answered as a request.
pub(crate) fn core_error(request_id: Option<&str>, error: &GatewayError) -> String {
    to_json(&CoreError {
        message_type: "coreError",
        request_id,
        error: error.into(),
    })
}

/// `data` of a bind or unbind success: the bound resource.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceData<'a> {
    /// Always `WorkflowManager`.
    pub(crate) service_id: &'static str,
    /// The session id, as `resourceEvent`s carry it.
    pub(crate) resource_id: &'a str,
}

impl<'a> ResourceData<'a> {
    /// The workflow session `session_id`.
    pub(crate) fn session(session_id: &'a str) -> Self {
        Self {
            service_id: WORKFLOW_MANAGER,
            resource_id: session_id,
        }
    }
}

/// One entry of `getServices`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceEntry<'a> {
    service_id: &'static str,
    service_type: &'static str,
    status: &'static str,
    info: &'a ServiceInfo,
}

#[derive(Serialize)]
struct Services<'a> {
    services: [ServiceEntry<'a>; 1],
}

fn status(available: bool) -> &'static str {
    if available {
        "available"
    } else {
        "unavailable"
    }
}

/// The `getServices` success.
pub(crate) fn services(request_id: &str, info: &ServiceInfo, available: bool) -> String {
    success(
        request_id,
        "getServices",
        &Services {
            services: [ServiceEntry {
                service_id: WORKFLOW_MANAGER,
                service_type: WORKFLOW_MANAGER,
                status: status(available),
                info,
            }],
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UnboundData<'a> {
    service_id: &'static str,
    resource_id: &'a str,
    reason: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CoreEvent<D> {
    message_type: &'static str,
    event: &'static str,
    data: D,
}

/// The `resourceUnbound` core event.
pub(crate) fn resource_unbound(session_id: &str, reason: UnboundReason) -> String {
    to_json(&CoreEvent {
        message_type: "coreEvent",
        event: "resourceUnbound",
        data: UnboundData {
            service_id: WORKFLOW_MANAGER,
            resource_id: session_id,
            reason: reason.as_str(),
        },
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceEventData<'a> {
    service_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a ServiceInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceEvent<'a> {
    message_type: &'static str,
    service_id: &'static str,
    event: &'static str,
    data: ServiceEventData<'a>,
}

/// The Service Monitor's `service.available` (with the fresh info) or `service.unavailable`.
pub(crate) fn service_event(available: bool, info: Option<&ServiceInfo>) -> String {
    to_json(&ServiceEvent {
        message_type: "serviceEvent",
        service_id: WORKFLOW_MANAGER,
        event: if available {
            "service.available"
        } else {
            "service.unavailable"
        },
        data: ServiceEventData {
            service_type: WORKFLOW_MANAGER,
            info: if available { info } else { None },
        },
    })
}

/// Appends `value` as a JSON string. Strings with nothing to escape (every capability name,
/// target and session id in practice) are copied as they are; the rest go through
/// `serde_json`, so the output is byte for byte what `serde_json` would write.
pub(crate) fn push_json_str(out: &mut String, value: &str) {
    // No early exit, so that the scan vectorizes.
    let plain = value.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20 && b != b'"' && b != b'\\')
    });
    if plain {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        out.push_str(&to_json(&value));
    }
}

/// The start of every `resourceEvent` of one session, up to its target: rendered once
/// per binding rather than once per event.
pub(crate) fn state_event_prefix(session_id: &str) -> Box<str> {
    let mut out = String::from(r#"{"messageType":"resourceEvent","serviceId":"#);
    push_json_str(&mut out, WORKFLOW_MANAGER);
    out.push_str(r#","resourceId":"#);
    push_json_str(&mut out, session_id);
    out.push_str(r#","event":{"messageType":"stateEvent","target":"#);
    out.into_boxed_str()
}

/// A `resourceEvent` wrapping the spec's `stateEvent`; `context` keeps the manager's order,
/// and `data` the catalogue's.
///
/// Written directly rather than through serde DTOs: this runs once per event per client.
/// It makes one allocation of the right size: the session's prefix and each capability's
/// JSON were rendered before (per binding, and per stream's catalogue), and the escape
/// check of the rest vectorizes. A test checks it against the serde rendering, escapes
/// included.
pub(crate) fn state_event(session: &BoundSession, state: &StateDelivery) -> String {
    let catalogue = &state.catalogue;
    let size = 48
        + session.event_prefix.len()
        + state.target.len()
        + state
            .context
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>()
        + catalogue.entries_len(state.defined);
    let mut out = String::with_capacity(size);
    out.push_str(&session.event_prefix);
    push_state_rest(&mut out, state);
    out.push('}');
    out
}

/// The spec's `stateEvent` object alone, as a `capabilityDisabled` error carries it.
pub(crate) fn state_event_object(state: &StateDelivery) -> String {
    let mut out = String::from(r#"{"messageType":"stateEvent","target":"#);
    push_state_rest(&mut out, state);
    out
}

/// A `stateEvent` from its target's value on, up to and including its closing brace.
fn push_state_rest(out: &mut String, state: &StateDelivery) {
    let catalogue = &state.catalogue;
    push_json_str(out, &state.target);
    out.push_str(r#","name":"state.updated","context":{"#);
    for (index, (key, value)) in state.context.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_str(out, key);
        out.push(':');
        push_json_str(out, value);
    }
    out.push_str(r#"},"data":["#);
    for (index, entry) in catalogue.entries(state.defined, state.enabled).enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(entry);
    }
    out.push_str("]}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::catalogue::Catalogue;

    use super::*;

    fn malformed(text: &str) -> (Option<String>, &'static str) {
        let m = parse(text).expect_err("should be malformed");
        (m.request_id, m.error.code().as_str())
    }

    #[test]
    fn envelopes_that_cannot_be_answered_as_requests() {
        assert_eq!(malformed("nope"), (None, "invalidJson"));
        assert_eq!(malformed("[1]"), (None, "invalidMessage"));
        assert_eq!(malformed("{}"), (None, "invalidMessage"));
        assert_eq!(malformed(r#"{"messageType":7}"#), (None, "invalidMessage"));
        assert_eq!(
            malformed(r#"{"messageType":"coreResponse"}"#),
            (None, "invalidMessage")
        );
        assert_eq!(
            malformed(r#"{"messageType":"coreRequest","request":"getServices"}"#),
            (None, "missingRequestId")
        );
        assert_eq!(
            malformed(r#"{"messageType":"coreRequest","requestId":5}"#),
            (None, "invalidMessage")
        );
        assert_eq!(
            malformed(r#"{"messageType":"coreRequest","requestId":"r"}"#),
            (Some("r".into()), "invalidMessage")
        );
    }

    fn refused(text: &str) -> &'static str {
        parse(text)
            .expect("an envelope")
            .request
            .expect_err("should be refused")
            .code()
            .as_str()
    }

    #[test]
    fn requests_with_bad_names_or_data() {
        let base = r#"{"messageType":"coreRequest","requestId":"1","#;
        assert_eq!(
            refused(&format!(r#"{base}"request":"fly"}}"#)),
            "unknownRequest"
        );
        assert_eq!(
            refused(&format!(r#"{base}"request":"getServices","data":3}}"#)),
            "invalidRequest"
        );
        assert_eq!(
            refused(&format!(
                r#"{base}"request":"bindResource","data":{{"serviceId":"WorkflowManager"}}}}"#
            )),
            "invalidRequest"
        );
        assert_eq!(
            refused(&format!(
                r#"{base}"request":"bindResource","data":{{"serviceId":"Other","resourceId":"x"}}}}"#
            )),
            "unknownService"
        );
        assert_eq!(
            refused(&format!(
                r#"{base}"request":"bindResource","data":{{"serviceId":"WorkflowManager","resourceId":"x","takeover":"yes"}}}}"#
            )),
            "invalidRequest"
        );
    }

    #[test]
    fn a_bind_request_parses() {
        let envelope = parse(
            r#"{"messageType":"coreRequest","requestId":"b","request":"bindResource",
                "data":{"serviceId":"WorkflowManager","resourceId":"ref","takeover":true}}"#,
        )
        .expect("valid");
        assert_eq!(envelope.request_id, "b");
        assert_eq!(
            envelope.request,
            Ok(Request::Bind {
                reference: "ref".into(),
                takeover: true
            })
        );
    }

    /// The serde rendering `state_event` must match byte for byte.
    fn state_event_by_serde(session_id: &str, names: &[String], state: &StateDelivery) -> String {
        /// The context in its own order, as a JSON object.
        struct Ordered<'a>(&'a [(String, String)]);
        impl Serialize for Ordered<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }
        #[derive(Serialize)]
        struct Capability<'a> {
            name: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct StateEvent<'a> {
            message_type: &'static str,
            target: &'a str,
            name: &'static str,
            context: Ordered<'a>,
            data: Vec<Capability<'a>>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ResourceEvent<'a> {
            message_type: &'static str,
            service_id: &'static str,
            resource_id: &'a str,
            event: StateEvent<'a>,
        }
        to_json(&ResourceEvent {
            message_type: "resourceEvent",
            service_id: WORKFLOW_MANAGER,
            resource_id: session_id,
            event: StateEvent {
                message_type: "stateEvent",
                target: &state.target,
                name: "state.updated",
                context: Ordered(&state.context),
                data: (0..names.len())
                    .filter(|bit| state.defined & (1 << bit) != 0)
                    .map(|bit| Capability {
                        name: &names[bit],
                        kind: if state.enabled & (1 << bit) != 0 {
                            "enabled"
                        } else {
                            "disabled"
                        },
                    })
                    .collect(),
            },
        })
    }

    fn delivery(
        names: &[String],
        target: String,
        context: Vec<(String, String)>,
        defined: u64,
        enabled: u64,
    ) -> StateDelivery {
        let catalogue = Catalogue::from_wire(wfm_proto::v1::Catalogue {
            wire_version: wfm_proto::ATTACH_WIRE_VERSION,
            names: names.to_vec(),
        })
        .unwrap();
        StateDelivery {
            target,
            context,
            defined,
            enabled,
            catalogue: std::sync::Arc::new(catalogue),
            trace: Default::default(),
            received: std::time::Instant::now(),
            gone: false,
        }
    }

    fn session(id: &str) -> BoundSession {
        BoundSession {
            id: id.to_string(),
            event_prefix: state_event_prefix(id),
        }
    }

    #[test]
    fn the_direct_state_event_writer_matches_serde_escapes_included() {
        let awkward = [
            "",
            "plain",
            "quote\"inside",
            "back\\slash",
            "new\nline\ttab\r",
            "\u{0}\u{1f}\u{7f}",
            "ünïcödé ✓ 📞",
            "</script>",
        ];
        for (i, text) in awkward.iter().enumerate() {
            let names: Vec<String> = (0..=i).map(|n| format!("interaction.{text}{n}")).collect();
            let state = delivery(
                &names,
                format!("{text}.voice"),
                vec![
                    ("media".to_string(), text.to_string()),
                    (format!("k{text}"), "v".to_string()),
                    ("a".to_string(), String::new()),
                ],
                // Every other capability defined, every third of those enabled.
                0x5555_5555_5555_5555,
                0x1111_1111_1111_1111,
            );
            let session_id = format!("s{text}");
            let direct = state_event(&session(&session_id), &state);
            assert_eq!(
                direct,
                state_event_by_serde(&session_id, &names, &state),
                "for {text:?}"
            );
            serde_json::from_str::<Value>(&direct).expect("valid JSON");
        }
        let empty = delivery(&[], String::new(), Vec::new(), 0, 0);
        assert_eq!(
            state_event(&session(""), &empty),
            state_event_by_serde("", &[], &empty)
        );
    }

    #[test]
    fn a_state_event_wraps_the_spec_event_exactly_with_the_context_in_order() {
        let names = vec!["channel.ready".to_string(), "channel.dial".to_string()];
        let state = delivery(
            &names,
            "s1.voice".into(),
            vec![
                ("media".to_string(), "voice".to_string()),
                ("state".to_string(), "ready".to_string()),
            ],
            0b11,
            0b01,
        );
        assert_eq!(
            state_event(&session("s1"), &state),
            r#"{"messageType":"resourceEvent","serviceId":"WorkflowManager","resourceId":"s1","event":{"messageType":"stateEvent","target":"s1.voice","name":"state.updated","context":{"media":"voice","state":"ready"},"data":[{"name":"channel.ready","type":"enabled"},{"name":"channel.dial","type":"disabled"}]}}"#
        );
    }
}

//! The MediaBar JSON messages: parsing what clients send, with a precise error for every
//! way it can be wrong, and serde DTOs for everything the gateway sends.
//!
//! `docs/mediabar-asyncapi.yaml` is the contract; the tests validate real traffic against it.

use serde::Serialize;
use serde_json::{Map, Value};
use wfm_proto::v1 as pb;

use crate::errors::{GatewayError, MAX_REQUEST_ID_LEN, UnboundReason};

/// The only service this gateway fronts, as named in `serviceId` and `serviceType`.
pub const WORKFLOW_MANAGER: &str = "WorkflowManager";

/// A valid client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
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
}

impl Request {
    /// The request name, echoed as `response`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Request::GetServices => "getServices",
            Request::Bind { .. } => "bindResource",
            Request::Unbind { .. } => "unbindResource",
        }
    }
}

/// A parsed `coreRequest`: its id and name, and the request or why it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// `requestId`.
    pub(crate) request_id: String,
    /// `request`, as sent.
    pub(crate) name: String,
    /// The request, or the failure to answer with.
    pub(crate) request: Result<Request, GatewayError>,
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
    match message.get("messageType") {
        None => return Err(Malformed::new(GatewayError::MissingMessageType)),
        Some(Value::String(kind)) if kind == "coreRequest" => {}
        Some(Value::String(kind)) => {
            return Err(Malformed::new(GatewayError::UnknownMessageType(
                kind.chars().take(64).collect(),
            )));
        }
        Some(_) => return Err(Malformed::new(GatewayError::MessageTypeNotString)),
    }
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
    let request = request(&name, message.remove("data"));
    Ok(Envelope {
        request_id,
        // Echoed back in `response`; an absurdly long unknown name is cut.
        name: name.chars().take(64).collect(),
        request,
    })
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

/// The spec's service-specific information of the workflow manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ServiceInfo {
    /// Vendor name.
    pub(crate) vendor: String,
    /// Current version.
    pub(crate) version: String,
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
fn push_json_str(out: &mut String, value: &str) {
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

/// A `resourceEvent` wrapping the spec's `stateEvent`; `context` keys are sorted so that the
/// same state always reads the same, and `data` keeps the manager's catalogue order.
///
/// Written directly rather than through serde DTOs: this runs once per event per client, and
/// the direct writer costs a third of the instructions (one allocation of the right size, a
/// vectorized escape check, no intermediate map or vector of DTOs). A test checks it against
/// the serde rendering, escapes included.
pub(crate) fn state_event(event: &pb::StateUpdated) -> String {
    let mut context: Vec<(&str, &str)> = event
        .context
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Map keys are unique, so this is the order of a `BTreeMap`.
    context.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let size = 160
        + event.session_id.len()
        + event.target.len()
        + context
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>()
        + event
            .capabilities
            .iter()
            .map(|c| c.name.len() + 30)
            .sum::<usize>();
    let mut out = String::with_capacity(size);
    out.push_str(r#"{"messageType":"resourceEvent","serviceId":"#);
    push_json_str(&mut out, WORKFLOW_MANAGER);
    out.push_str(r#","resourceId":"#);
    push_json_str(&mut out, &event.session_id);
    out.push_str(r#","event":{"messageType":"stateEvent","target":"#);
    push_json_str(&mut out, &event.target);
    out.push_str(r#","name":"state.updated","context":{"#);
    for (index, (key, value)) in context.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_str(&mut out, key);
        out.push(':');
        push_json_str(&mut out, value);
    }
    out.push_str(r#"},"data":["#);
    for (index, capability) in event.capabilities.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(r#"{"name":"#);
        push_json_str(&mut out, &capability.name);
        out.push_str(if capability.enabled {
            r#","type":"enabled"}"#
        } else {
            r#","type":"disabled"}"#
        });
    }
    out.push_str("]}}");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;

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
    fn state_event_by_serde(event: &pb::StateUpdated) -> String {
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
            context: BTreeMap<&'a str, &'a str>,
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
            resource_id: &event.session_id,
            event: StateEvent {
                message_type: "stateEvent",
                target: &event.target,
                name: "state.updated",
                context: event
                    .context
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                data: event
                    .capabilities
                    .iter()
                    .map(|c| Capability {
                        name: &c.name,
                        kind: if c.enabled { "enabled" } else { "disabled" },
                    })
                    .collect(),
            },
        })
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
            let event = pb::StateUpdated {
                session_id: format!("s{text}"),
                target: format!("{text}.voice"),
                context: [
                    ("media".to_string(), text.to_string()),
                    (format!("k{text}"), "v".to_string()),
                    ("a".to_string(), String::new()),
                ]
                .into(),
                capabilities: (0..=i)
                    .map(|n| pb::Capability {
                        name: format!("interaction.{text}{n}"),
                        enabled: n % 2 == 0,
                    })
                    .collect(),
                ..Default::default()
            };
            let direct = state_event(&event);
            assert_eq!(direct, state_event_by_serde(&event), "for {text:?}");
            serde_json::from_str::<Value>(&direct).expect("valid JSON");
        }
        let empty = pb::StateUpdated::default();
        assert_eq!(state_event(&empty), state_event_by_serde(&empty));
    }

    #[test]
    fn a_state_event_wraps_the_spec_event_exactly() {
        let event = pb::StateUpdated {
            session_id: "s1".into(),
            target: "s1.voice".into(),
            context: [("media".to_string(), "voice".to_string())].into(),
            capabilities: vec![
                pb::Capability {
                    name: "channel.ready".into(),
                    enabled: true,
                },
                pb::Capability {
                    name: "channel.dial".into(),
                    enabled: false,
                },
            ],
            trace_context: Default::default(),
        };
        assert_eq!(
            state_event(&event),
            r#"{"messageType":"resourceEvent","serviceId":"WorkflowManager","resourceId":"s1","event":{"messageType":"stateEvent","target":"s1.voice","name":"state.updated","context":{"media":"voice"},"data":[{"name":"channel.ready","type":"enabled"},{"name":"channel.dial","type":"disabled"}]}}"#
        );
    }
}

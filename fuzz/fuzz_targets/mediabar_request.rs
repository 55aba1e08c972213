//! The gateway's reading of one MediaBar text frame (`wfm_gateway::parse_request`).
//!
//! Beyond "no panic": a request accepted is exactly what the JSON says (checked against an
//! independent `serde_json::Value` reading of the same frame), and a refusal is answered
//! with a well-formed, small reply that echoes the frame's `requestId`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wfm_gateway::Request;
use wfm_gateway::errors::MAX_REQUEST_ID_LEN;

/// The codes that parsing alone can produce; anything else would be a state-dependent
/// answer leaking into the parser.
const PARSE_CODES: &[&str] = &[
    "invalidJson",
    "invalidMessage",
    "missingRequestId",
    "unknownRequest",
    "invalidRequest",
    "unknownService",
];

/// Longest reply to a refused frame: `requestId` (128 characters), a `resourceRequest`'s
/// echoed `serviceId` and `resourceId` (128 each), the echoed request name and any quoted
/// value (64 each), all possibly escaped as a six-byte `\u` escape per character, plus the
/// envelope and message. A reply must not grow with the frame.
const MAX_REPLY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8; the server refuses anything else before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let value: Option<Value> = serde_json::from_str(text).ok();
    let field = |name: &str| value.as_ref().and_then(|v| v.get(name));
    match wfm_gateway::parse_request(text) {
        Ok((request_id, request)) => {
            let kind = if matches!(request, Request::Command { .. }) {
                "resourceRequest"
            } else {
                "coreRequest"
            };
            assert_eq!(field("messageType"), Some(&Value::from(kind)));
            assert_eq!(field("requestId"), Some(&Value::from(request_id.as_str())));
            assert!(!request_id.is_empty() && request_id.chars().count() <= MAX_REQUEST_ID_LEN);
            let data = field("data").filter(|d| !d.is_null());
            let data_field = |name: &str| data.and_then(|d| d.get(name));
            let name = field("request").and_then(Value::as_str);
            match request {
                Request::GetServices => assert_eq!(name, Some("getServices")),
                Request::Bind {
                    reference,
                    takeover,
                } => {
                    assert_eq!(name, Some("bindResource"));
                    assert_eq!(
                        data_field("serviceId").and_then(Value::as_str),
                        Some(wfm_gateway::WORKFLOW_MANAGER)
                    );
                    assert_eq!(
                        data_field("resourceId").and_then(Value::as_str),
                        Some(reference.as_str())
                    );
                    let sent = data_field("takeover").map(|t| t.as_bool().expect("a boolean"));
                    assert_eq!(sent.unwrap_or(false), takeover);
                }
                Request::Unbind { resource } => {
                    assert_eq!(name, Some("unbindResource"));
                    assert_eq!(
                        data_field("resourceId").map(|r| r.as_str().expect("a string")),
                        resource.as_deref()
                    );
                }
                Request::Command {
                    capability,
                    target,
                    arguments,
                } => {
                    assert_eq!(name, Some(capability.as_str()));
                    assert_eq!(
                        field("serviceId").and_then(Value::as_str),
                        Some(wfm_gateway::INTERACTION_PROCESSOR)
                    );
                    assert_eq!(
                        data_field("target").and_then(Value::as_str),
                        Some(target.as_str())
                    );
                    let sent = data_field("arguments").filter(|a| !a.is_null());
                    let sent_count = sent.map_or(0, |a| a.as_object().expect("an object").len());
                    assert_eq!(sent_count, arguments.len());
                    for (key, value) in &arguments {
                        let sent = sent.and_then(|a| a.get(key)).and_then(Value::as_str);
                        assert_eq!(sent, Some(value.as_str()));
                    }
                }
            }
        }
        Err((request_id, reply)) => {
            assert!(reply.len() <= MAX_REPLY, "reply of {} bytes", reply.len());
            let reply: Value = serde_json::from_str(&reply).expect("the reply is JSON");
            let echoed = reply
                .get("requestId")
                .map(|r| r.as_str().expect("a string"));
            assert_eq!(echoed, request_id.as_deref());
            if let Some(request_id) = &request_id {
                assert_eq!(field("requestId"), Some(&Value::from(request_id.as_str())));
            }
            match reply.get("messageType").and_then(Value::as_str) {
                Some("coreError") => {}
                Some("coreResponse") => {
                    assert!(request_id.is_some(), "a coreResponse answers a request id");
                    assert_eq!(reply.get("result"), Some(&Value::from("failure")));
                    let sent: Option<String> = field("request")
                        .and_then(Value::as_str)
                        .map(|n| n.chars().take(64).collect());
                    assert_eq!(
                        reply.get("response").and_then(Value::as_str),
                        sent.as_deref()
                    );
                }
                Some("resourceError") => {
                    assert!(request_id.is_some(), "a resourceError answers a request id");
                    let echo = |name: &str, cap: usize| {
                        let sent: Option<String> = field(name)
                            .and_then(Value::as_str)
                            .map(|n| n.chars().take(cap).collect());
                        assert_eq!(reply.get(name).and_then(Value::as_str), sent.as_deref());
                    };
                    echo("request", 64);
                    echo("serviceId", MAX_REQUEST_ID_LEN);
                    echo("resourceId", MAX_REQUEST_ID_LEN);
                }
                other => panic!("reply of type {other:?}"),
            }
            let code = reply
                .pointer("/error/code")
                .and_then(Value::as_str)
                .expect("an error code");
            assert!(PARSE_CODES.contains(&code), "code {code}");
        }
    }
});

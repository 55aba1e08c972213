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

/// Longest reply to a refused frame: `requestId` (128 characters), the echoed request name
/// and any quoted value (64 each), all possibly escaped as a six-byte `\u` escape per character,
/// plus the envelope and message. A reply must not grow with the frame.
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
            assert_eq!(field("messageType"), Some(&Value::from("coreRequest")));
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

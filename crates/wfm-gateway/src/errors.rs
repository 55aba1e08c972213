//! Every error the gateway reports to a MediaBar, and the one table that maps each to its
//! MediaBar error code; also the close codes and the `resourceUnbound` reasons.
//!
//! `docs/mediabar-protocol.md` documents each code; keep the two in step.

use tonic::Code;
use wfm_proto::v1 as pb;

/// Longest `requestId` echoed back; longer ones are refused so replies stay small.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A MediaBar error code, as sent in `error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame is not JSON.
    InvalidJson,
    /// JSON, but not a message this protocol knows (not an object, bad `messageType`, ...).
    InvalidMessage,
    /// A `coreRequest` without a `requestId`.
    MissingRequestId,
    /// A `coreRequest` whose `request` names no known request.
    UnknownRequest,
    /// A known request with bad or missing `data`.
    InvalidRequest,
    /// A request for a service other than `WorkflowManager`.
    UnknownService,
    /// The session resource reference is forged, expired, malformed or for another session.
    Unauthorized,
    /// The session (or this connection) is already bound.
    AlreadyBound,
    /// `unbindResource` on a connection that is not bound.
    NotBound,
    /// The reference is genuine but its session no longer exists.
    SessionNotFound,
    /// The workflow manager cannot be reached.
    ServiceUnavailable,
    /// The connection sent requests faster than its rate limit.
    RateLimited,
    /// A message exceeded the size limit (the connection stays open), or a frame exceeded
    /// the hard limit (the connection is closed with 1009).
    MessageTooLarge,
    /// Something unexpected went wrong; the message says what.
    Internal,
    /// A command's target does not exist in the session.
    UnknownTarget,
    /// A command names no capability of the catalogue.
    UnknownCapability,
    /// A command's capability is disabled on its target right now.
    CapabilityDisabled,
    /// No Interaction Processor can take the session's commands.
    ProcessorUnavailable,
    /// The Interaction Processor refused the command.
    Rejected,
    /// The command was not answered in time.
    Timeout,
}

impl ErrorCode {
    /// The code of a command the manager did not carry out; `None` for an accepted one.
    pub fn of_command(status: pb::CommandStatus) -> Option<ErrorCode> {
        use pb::CommandStatus as S;
        Some(match status {
            S::Accepted => return None,
            S::NotBound => ErrorCode::NotBound,
            S::UnknownTarget => ErrorCode::UnknownTarget,
            S::UnknownCapability => ErrorCode::UnknownCapability,
            S::CapabilityDisabled => ErrorCode::CapabilityDisabled,
            S::ProcessorUnavailable => ErrorCode::ProcessorUnavailable,
            S::Rejected => ErrorCode::Rejected,
            S::Timeout => ErrorCode::Timeout,
            S::InvalidArguments => ErrorCode::InvalidRequest,
            S::Unspecified => ErrorCode::Internal,
        })
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalidJson",
            ErrorCode::InvalidMessage => "invalidMessage",
            ErrorCode::MissingRequestId => "missingRequestId",
            ErrorCode::UnknownRequest => "unknownRequest",
            ErrorCode::InvalidRequest => "invalidRequest",
            ErrorCode::UnknownService => "unknownService",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::AlreadyBound => "alreadyBound",
            ErrorCode::NotBound => "notBound",
            ErrorCode::SessionNotFound => "sessionNotFound",
            ErrorCode::ServiceUnavailable => "serviceUnavailable",
            ErrorCode::RateLimited => "rateLimited",
            ErrorCode::MessageTooLarge => "messageTooLarge",
            ErrorCode::Internal => "internal",
            ErrorCode::UnknownTarget => "unknownTarget",
            ErrorCode::UnknownCapability => "unknownCapability",
            ErrorCode::CapabilityDisabled => "capabilityDisabled",
            ErrorCode::ProcessorUnavailable => "processorUnavailable",
            ErrorCode::Rejected => "rejected",
            ErrorCode::Timeout => "timeout",
        }
    }
}

/// Why a client message was refused or a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The frame does not parse as JSON.
    #[error("message is not valid JSON: {0}")]
    InvalidJson(String),
    /// The frame is JSON but not an object.
    #[error("message must be a JSON object")]
    NotAnObject,
    /// A binary frame; the protocol is JSON text.
    #[error("binary frames are not supported; send JSON in text frames")]
    BinaryFrame,
    /// No `messageType`.
    #[error("messageType is missing")]
    MissingMessageType,
    /// `messageType` is not a string.
    #[error("messageType must be a string")]
    MessageTypeNotString,
    /// A `messageType` clients may not send.
    #[error("unknown messageType {0:?}; clients send coreRequest or resourceRequest")]
    UnknownMessageType(String),
    /// A `coreRequest` without `requestId`.
    #[error("coreRequest needs a requestId")]
    MissingRequestId,
    /// `requestId` is not a usable string.
    #[error("requestId must be a non-empty string of at most {MAX_REQUEST_ID_LEN} characters")]
    InvalidRequestId,
    /// A `coreRequest` without a `request` name.
    #[error("coreRequest needs a request name")]
    MissingRequestName,
    /// `request` is not a string.
    #[error("request must be a string")]
    RequestNameNotString,
    /// `request` names no known request.
    #[error(
        "unknown request {0:?}; known requests are getServices, bindResource and unbindResource"
    )]
    UnknownRequest(String),
    /// A required field of `data` is missing.
    #[error("{0} is required")]
    MissingField(&'static str),
    /// A field of `data` has the wrong type.
    #[error("{field} must be {expected}")]
    InvalidField {
        /// The field, as a path from the message root.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `serviceId` names a service this gateway does not front.
    #[error("unknown service {0:?}; this gateway serves WorkflowManager")]
    UnknownService(String),
    /// Forged, expired, malformed or other-session reference: one message for all, so a
    /// caller learns nothing about which.
    #[error("invalid session reference")]
    Unauthorized,
    /// A second `bindResource` on a bound connection.
    #[error("this connection is already bound to a session; unbind it first")]
    ConnectionAlreadyBound,
    /// Another client holds the session.
    #[error("session is bound to another client; bind with takeover to replace it")]
    SessionAlreadyBound,
    /// `unbindResource` on an unbound connection, or for another resource.
    #[error("this connection is not bound to that resource")]
    NotBound,
    /// The session no longer exists.
    #[error("session not found")]
    SessionNotFound,
    /// No upstream stream to the workflow manager is connected.
    #[error("the workflow manager is unavailable; retry after service.available")]
    ServiceUnavailable,
    /// The workflow manager did not answer a bind in time.
    #[error("the workflow manager did not answer in time")]
    UpstreamTimeout,
    /// The per-connection request budget is spent.
    #[error("request rate limit exceeded: {burst} requests in a burst, then {rate} per second")]
    RateLimited {
        /// Bucket size.
        burst: u32,
        /// Refill per second.
        rate: u32,
    },
    /// Too many bind attempts on one connection.
    #[error("bind attempts are limited to {0} a minute on one connection")]
    BindsLimited(u32),
    /// A message over the size limit; the connection stays open.
    #[error("message exceeds the limit of {0} bytes")]
    MessageTooLarge(usize),
    /// A frame over the hard limit; the connection is closed.
    #[error("frame exceeds the hard limit of {0} bytes; closing the connection")]
    FrameTooLarge(usize),
    /// The manager answered with a code the gateway does not expect.
    #[error("unexpected workflow manager error")]
    Internal,
    /// A command refused or failed on the manager's side, with its code and message.
    #[error("{message}")]
    Command {
        /// The MediaBar code.
        code: ErrorCode,
        /// The manager's (or the Interaction Processor's) words.
        message: String,
    },
    /// A command the manager did not answer within the gateway's command timeout.
    #[error("the command was not answered within {0} ms")]
    CommandTimeout(u64),
    /// The stream that carried a command to the manager was lost before the answer.
    #[error(
        "the connection to the workflow manager was lost before the command was answered; whether it was carried out is unknown"
    )]
    CommandLost,
    /// A resourceRequest for a service other than the Interaction Processor.
    #[error(
        "unknown service {0:?}; resource requests go to InteractionProcessor (the WorkflowManager takes none)"
    )]
    UnknownResourceService(String),
}

impl GatewayError {
    /// The MediaBar error code of this error: the one table.
    pub fn code(&self) -> ErrorCode {
        match self {
            GatewayError::InvalidJson(_) => ErrorCode::InvalidJson,
            GatewayError::NotAnObject
            | GatewayError::BinaryFrame
            | GatewayError::MissingMessageType
            | GatewayError::MessageTypeNotString
            | GatewayError::UnknownMessageType(_)
            | GatewayError::InvalidRequestId
            | GatewayError::MissingRequestName
            | GatewayError::RequestNameNotString => ErrorCode::InvalidMessage,
            GatewayError::MissingRequestId => ErrorCode::MissingRequestId,
            GatewayError::UnknownRequest(_) => ErrorCode::UnknownRequest,
            GatewayError::MissingField(_) | GatewayError::InvalidField { .. } => {
                ErrorCode::InvalidRequest
            }
            GatewayError::UnknownService(_) => ErrorCode::UnknownService,
            GatewayError::Unauthorized => ErrorCode::Unauthorized,
            GatewayError::ConnectionAlreadyBound | GatewayError::SessionAlreadyBound => {
                ErrorCode::AlreadyBound
            }
            GatewayError::NotBound => ErrorCode::NotBound,
            GatewayError::SessionNotFound => ErrorCode::SessionNotFound,
            GatewayError::ServiceUnavailable | GatewayError::UpstreamTimeout => {
                ErrorCode::ServiceUnavailable
            }
            GatewayError::RateLimited { .. } | GatewayError::BindsLimited(_) => {
                ErrorCode::RateLimited
            }
            GatewayError::MessageTooLarge(_) | GatewayError::FrameTooLarge(_) => {
                ErrorCode::MessageTooLarge
            }
            GatewayError::Internal => ErrorCode::Internal,
            GatewayError::Command { code, .. } => *code,
            GatewayError::CommandTimeout(_) => ErrorCode::Timeout,
            GatewayError::CommandLost => ErrorCode::ServiceUnavailable,
            GatewayError::UnknownResourceService(_) => ErrorCode::UnknownService,
        }
    }

    /// The error a refused `Attach` bind becomes (the manager's codes are in its `error.rs`).
    pub fn from_bind_code(code: Code) -> Self {
        match code {
            Code::FailedPrecondition => GatewayError::SessionAlreadyBound,
            Code::Unauthenticated | Code::PermissionDenied => GatewayError::Unauthorized,
            Code::NotFound => GatewayError::SessionNotFound,
            Code::Unavailable => GatewayError::ServiceUnavailable,
            _ => GatewayError::Internal,
        }
    }
}

/// Why a binding ended, as sent in the `resourceUnbound` core event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnboundReason {
    /// The Interaction Processor ended the session, or it vanished across a manager restart.
    SessionEnded,
    /// Another client bound the session with `takeover`.
    TakenOver,
    /// The gateway is shutting down.
    ServerShutdown,
    /// The reference expired, or the restarted manager no longer accepts it.
    Expired,
}

impl UnboundReason {
    /// The reason as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            UnboundReason::SessionEnded => "sessionEnded",
            UnboundReason::TakenOver => "takenOver",
            UnboundReason::ServerShutdown => "serverShutdown",
            UnboundReason::Expired => "expired",
        }
    }

    /// What a manager's unbound notice means for the client's binding: the one table of
    /// the manager's reasons.
    pub fn from_manager(reason: pb::UnboundReason) -> ManagerUnbound {
        match reason {
            pb::UnboundReason::SessionEnded | pb::UnboundReason::Unspecified => {
                ManagerUnbound::Ends(UnboundReason::SessionEnded)
            }
            pb::UnboundReason::TakenOver => ManagerUnbound::Ends(UnboundReason::TakenOver),
            pb::UnboundReason::ShuttingDown => ManagerUnbound::RebindLater,
            pb::UnboundReason::Moved => ManagerUnbound::RebindNow,
            pb::UnboundReason::Unbound => ManagerUnbound::Released,
        }
    }

    /// Why a rebind after an upstream reconnect ended the binding, given the manager's code.
    pub fn from_rebind_code(code: Code) -> Self {
        match code {
            Code::FailedPrecondition => UnboundReason::TakenOver,
            Code::Unauthenticated => UnboundReason::Expired,
            _ => UnboundReason::SessionEnded,
        }
    }
}

/// What the gateway does with a binding the manager says has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerUnbound {
    /// The binding is over; the client is told `resourceUnbound` with this reason.
    Ends(UnboundReason),
    /// The manager is restarting: the client hears `service.unavailable`, and the gateway
    /// rebinds once a manager answers, no sooner than the rebind retry delay, since this
    /// one refuses binds.
    RebindLater,
    /// The session moved to another replica: the client hears `service.unavailable`, and
    /// the gateway rebinds at once, at the new owner when the notice names it.
    RebindNow,
    /// The client's own unbind, confirmed; nothing to tell.
    Released,
}

/// Why the gateway closes a WebSocket, with its close code (RFC 6455 section 7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The gateway is shutting down: 1001 going away.
    ServerShutdown,
    /// No binding and no request for the idle timeout: 1008 policy violation.
    IdleTimeout,
    /// A frame over the hard limit: 1009 message too big.
    MessageTooLarge,
    /// The client let too many replies pile up: 1008 policy violation.
    TooSlow,
    /// A text frame that is not UTF-8: 1007 invalid frame payload data.
    InvalidUtf8,
    /// The client broke the WebSocket protocol (an unmasked frame...): 1002.
    ProtocolError,
}

impl CloseReason {
    /// The close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::ServerShutdown => 1001,
            CloseReason::IdleTimeout | CloseReason::TooSlow => 1008,
            CloseReason::MessageTooLarge => 1009,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::ProtocolError => 1002,
        }
    }

    /// The close reason text (at most 123 bytes, as the protocol requires).
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::IdleTimeout => "idle timeout: no binding and no request",
            CloseReason::MessageTooLarge => "messageTooLarge: frame exceeds the hard size limit",
            CloseReason::TooSlow => "client too slow: too many unread replies",
            CloseReason::InvalidUtf8 => "text frame is not valid UTF-8",
            CloseReason::ProtocolError => "websocket protocol error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_bind_codes_map_to_mediabar_codes() {
        let cases = [
            (Code::FailedPrecondition, "alreadyBound"),
            (Code::Unauthenticated, "unauthorized"),
            (Code::PermissionDenied, "unauthorized"),
            (Code::NotFound, "sessionNotFound"),
            (Code::Unavailable, "serviceUnavailable"),
            (Code::Internal, "internal"),
        ];
        for (code, expected) in cases {
            assert_eq!(
                GatewayError::from_bind_code(code).code().as_str(),
                expected,
                "{code:?}"
            );
        }
    }

    #[test]
    fn only_the_end_of_a_session_or_a_takeover_ends_a_binding() {
        use pb::UnboundReason as R;
        let cases = [
            (
                R::Unspecified,
                ManagerUnbound::Ends(UnboundReason::SessionEnded),
            ),
            (
                R::SessionEnded,
                ManagerUnbound::Ends(UnboundReason::SessionEnded),
            ),
            (R::TakenOver, ManagerUnbound::Ends(UnboundReason::TakenOver)),
            (R::ShuttingDown, ManagerUnbound::RebindLater),
            (R::Moved, ManagerUnbound::RebindNow),
            (R::Unbound, ManagerUnbound::Released),
        ];
        for (reason, expected) in cases {
            assert_eq!(UnboundReason::from_manager(reason), expected, "{reason:?}");
        }
    }

    #[test]
    fn refused_references_all_read_the_same() {
        assert_eq!(
            GatewayError::from_bind_code(Code::PermissionDenied).to_string(),
            GatewayError::from_bind_code(Code::Unauthenticated).to_string()
        );
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        for reason in [
            CloseReason::ServerShutdown,
            CloseReason::IdleTimeout,
            CloseReason::MessageTooLarge,
            CloseReason::TooSlow,
            CloseReason::InvalidUtf8,
            CloseReason::ProtocolError,
        ] {
            assert!(reason.text().len() <= 123);
        }
    }
}

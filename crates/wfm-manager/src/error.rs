//! Every error the manager returns, and the one table that maps each to its gRPC status.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use wfm_engine::UpdateError;
use wfm_reference::ReferenceError;

/// Metadata key carrying the expected sequence number of a refused update.
pub const EXPECTED_SEQUENCE_KEY: &str = "wfm-expected-sequence";
/// The `google.rpc.ErrorInfo` domain of the manager's rich error details.
pub const ERROR_DOMAIN: &str = "wfm.v1";
/// The `google.rpc.ErrorInfo` reason of a sequence gap.
pub const SEQUENCE_GAP_REASON: &str = "SEQUENCE_GAP";
/// The `google.rpc.ErrorInfo` metadata key carrying the expected sequence of a gap.
pub const EXPECTED_SEQUENCE_DETAIL: &str = "expected_sequence";

/// Every value of [`ManagerError::reason`], the `reason` label of the rejected-updates metric.
pub const REJECT_REASONS: &[&str] = &[
    "unknown_session",
    "sequence_gap",
    "unknown_target",
    "duplicate_interaction",
    "invalid_update",
    "invalid_reference",
    "cluster",
    "other",
];

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The engine refused the update or session state.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// A required field is missing or unspecified on the wire.
    #[error("missing required field {0}")]
    MissingField(&'static str),
    /// An enum field carries a number the contract does not define.
    #[error("field {field} has unknown value {value}")]
    UnknownEnumValue {
        /// The field.
        field: &'static str,
        /// The number sent.
        value: i32,
    },
    /// No session has this id.
    #[error("unknown session {0}")]
    UnknownSession(String),
    /// `CreateSession` for an id that belongs to another agent.
    #[error("session {0} belongs to another agent")]
    SessionOwnedByOtherAgent(String),
    /// The profile named in `CreateSession` does not exist.
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    /// The reference is forged, malformed or expired.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The reference is genuine but names a session now owned by another agent.
    #[error("session reference belongs to another session")]
    ReferenceForOtherSession,
    /// The reference was issued for an earlier session with this id, which has ended.
    #[error("session reference was issued for a session that has ended")]
    ReferenceForEndedSession,
    /// `CreateSession`'s `resume_reference` names another session or agent.
    #[error("resume_reference was issued for another session or agent")]
    ResumeOtherSession,
    /// `processor_id` (of `CreateSession` or a command stream's hello) cannot name a processor.
    #[error("processor_id must be 1 to 128 characters of A-Z a-z 0-9 - _")]
    InvalidProcessorId,
    /// The manager holds as many sessions as it may create.
    #[error(
        "this workflow manager holds its maximum of {0} sessions; create the session at another replica, or raise --max-sessions"
    )]
    TooManySessions(usize),
    /// The session has a live binder and takeover was not asked for.
    #[error("session is already bound to another client; bind with takeover to replace it")]
    AlreadyBound,
    /// The manager is shutting down and accepts no new bindings.
    #[error("workflow manager is shutting down")]
    ShuttingDown,
    /// An `Attach` stream from a gateway that speaks another Attach wire version.
    #[error("this workflow manager speaks Attach wire version {}, the gateway sent {}: upgrade the older of the two", wfm_proto::ATTACH_WIRE_VERSION, match .0 { Some(v) => format!("version {v:?}"), None => "no version (wire 1, capabilities by name)".to_string() })]
    AttachWireVersion(Option<String>),
    /// Cluster mode: another replica owns the session; bind (or call) there.
    #[error("session is owned by the replica at {0}; bind there")]
    NotOwner(String),
    /// Cluster mode: this replica lost the session to another while handling the call
    /// (its lease lapsed, or the session moved); the caller retries, at any replica.
    #[error("session {0} moved to another replica while this one handled the call; retry")]
    Moved(String),
    /// Cluster mode: this replica's lease lapsed, and the session must be re-acquired
    /// before anything more is applied to it.
    #[error(
        "ownership of session {0} is being re-verified after this replica's lease lapsed; retry"
    )]
    Unverified(String),
    /// A call forwarded to the session's owner was answered with this status, passed on.
    #[error("{}", .0.message())]
    Peer(Status),
    /// Cluster mode: the shared store (NATS JetStream) refused or could not be reached.
    #[error("cluster store unavailable: {0}")]
    Store(String),
}

impl ManagerError {
    /// The gRPC status code of this error.
    pub fn code(&self) -> Code {
        match self {
            ManagerError::Update(e) => match e {
                UpdateError::UnknownChannel(_) | UpdateError::UnknownInteraction(_) => {
                    Code::NotFound
                }
                UpdateError::DuplicateInteraction(_) => Code::AlreadyExists,
                UpdateError::SequenceGap { .. } => Code::FailedPrecondition,
                UpdateError::InvalidId { .. }
                | UpdateError::NoChannels
                | UpdateError::DuplicateChannel(_)
                | UpdateError::ChannelMediaMismatch { .. }
                | UpdateError::StateNotForMedia { .. }
                | UpdateError::ConsultOfSelf(_)
                | UpdateError::UnknownConsult { .. }
                | UpdateError::InvalidSequence(_)
                | UpdateError::TooMany { .. }
                | UpdateError::TooLong { .. } => Code::InvalidArgument,
            },
            ManagerError::MissingField(_)
            | ManagerError::UnknownEnumValue { .. }
            | ManagerError::UnknownProfile(_)
            | ManagerError::InvalidProcessorId => Code::InvalidArgument,
            ManagerError::UnknownSession(_) => Code::NotFound,
            ManagerError::SessionOwnedByOtherAgent(_) => Code::AlreadyExists,
            ManagerError::Reference(
                ReferenceError::KeyTooShort(_) | ReferenceError::Entropy(_),
            ) => Code::Internal,
            ManagerError::Reference(ReferenceError::Invalid | ReferenceError::Expired) => {
                Code::Unauthenticated
            }
            ManagerError::ReferenceForOtherSession => Code::PermissionDenied,
            ManagerError::ReferenceForEndedSession => Code::NotFound,
            ManagerError::ResumeOtherSession => Code::InvalidArgument,
            ManagerError::TooManySessions(_) => Code::ResourceExhausted,
            ManagerError::AlreadyBound => Code::FailedPrecondition,
            ManagerError::ShuttingDown
            | ManagerError::NotOwner(_)
            | ManagerError::Moved(_)
            | ManagerError::Unverified(_)
            | ManagerError::Store(_) => Code::Unavailable,
            ManagerError::Peer(status) => status.code(),
            ManagerError::AttachWireVersion(_) => Code::FailedPrecondition,
        }
    }

    /// A short, stable name for metrics: one of [`REJECT_REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            ManagerError::UnknownSession(_) => "unknown_session",
            ManagerError::Update(UpdateError::SequenceGap { .. }) => "sequence_gap",
            ManagerError::Update(
                UpdateError::UnknownChannel(_) | UpdateError::UnknownInteraction(_),
            ) => "unknown_target",
            ManagerError::Update(UpdateError::DuplicateInteraction(_)) => "duplicate_interaction",
            ManagerError::Update(_)
            | ManagerError::MissingField(_)
            | ManagerError::UnknownEnumValue { .. } => "invalid_update",
            ManagerError::Reference(_)
            | ManagerError::ReferenceForOtherSession
            | ManagerError::ReferenceForEndedSession
            | ManagerError::ResumeOtherSession => "invalid_reference",
            ManagerError::TooManySessions(_) => "other",
            ManagerError::SessionOwnedByOtherAgent(_)
            | ManagerError::UnknownProfile(_)
            | ManagerError::InvalidProcessorId
            | ManagerError::AlreadyBound
            | ManagerError::ShuttingDown
            | ManagerError::AttachWireVersion(_) => "other",
            ManagerError::NotOwner(_)
            | ManagerError::Moved(_)
            | ManagerError::Unverified(_)
            | ManagerError::Store(_) => "cluster",
            ManagerError::Peer(status) => match status.code() {
                Code::FailedPrecondition if peer_expected(status).is_some() => "sequence_gap",
                Code::NotFound => "unknown_target",
                Code::InvalidArgument => "invalid_update",
                Code::Unavailable => "cluster",
                _ => "other",
            },
        }
    }

    /// For a redirect, the address of the replica that owns the session.
    pub fn owner_url(&self) -> Option<&str> {
        match self {
            ManagerError::NotOwner(url) => Some(url),
            _ => None,
        }
    }

    /// For a sequence gap, the number the session expects.
    pub fn expected_sequence(&self) -> Option<u64> {
        match self {
            ManagerError::Update(UpdateError::SequenceGap { expected, .. }) => Some(*expected),
            ManagerError::Peer(status) => peer_expected(status),
            _ => None,
        }
    }
}

/// The expected sequence a peer's gap status carries in its metadata.
fn peer_expected(status: &Status) -> Option<u64> {
    status
        .metadata()
        .get(EXPECTED_SEQUENCE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl From<ManagerError> for Status {
    fn from(error: ManagerError) -> Status {
        if let ManagerError::Peer(status) = error {
            return status;
        }
        let (code, message) = (error.code(), error.to_string());
        let Some(expected) = error.expected_sequence() else {
            return Status::new(code, message);
        };
        // Twice: as a standard `google.rpc.ErrorInfo` detail for clients that decode rich
        // errors, and as plain metadata for those that only read trailers.
        let details = ErrorDetails::with_error_info(
            SEQUENCE_GAP_REASON,
            ERROR_DOMAIN,
            HashMap::from([(EXPECTED_SEQUENCE_DETAIL.to_string(), expected.to_string())]),
        );
        let mut status = Status::with_error_details(code, message, details);
        status
            .metadata_mut()
            .insert(EXPECTED_SEQUENCE_KEY, expected.into());
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_carries_the_expected_sequence_in_metadata() {
        let status = Status::from(ManagerError::from(UpdateError::SequenceGap {
            expected: 5,
            got: 9,
        }));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "sequence gap: expected 5, got 9");
        let value = status
            .metadata()
            .get(EXPECTED_SEQUENCE_KEY)
            .and_then(|v| v.to_str().ok());
        assert_eq!(value, Some("5"));
        let details = status.get_error_details();
        let info = details.error_info();
        assert_eq!(
            info.map(|i| (i.reason.as_str(), i.domain.as_str())),
            Some((SEQUENCE_GAP_REASON, ERROR_DOMAIN))
        );
        let expected = info.and_then(|i| i.metadata.get(EXPECTED_SEQUENCE_DETAIL));
        assert_eq!(expected.map(String::as_str), Some("5"));
    }

    #[test]
    fn other_errors_carry_no_details() {
        let status = Status::from(ManagerError::from(ReferenceError::Invalid));
        assert!(status.details().is_empty());
        assert!(status.metadata().get(EXPECTED_SEQUENCE_KEY).is_none());
    }

    #[test]
    fn forged_and_expired_references_are_unauthenticated_and_say_nothing_more() {
        let forged = Status::from(ManagerError::from(ReferenceError::Invalid));
        assert_eq!(forged.code(), Code::Unauthenticated);
        assert_eq!(forged.message(), "invalid session reference");
        let other = Status::from(ManagerError::ReferenceForOtherSession);
        assert_eq!(other.code(), Code::PermissionDenied);
    }
}

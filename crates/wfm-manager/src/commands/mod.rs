//! MediaBar commands. The manager checks each one against its session's view state (its
//! word is final) and hands it to the session's Interaction Processor over that
//! processor's `ReceiveCommands` stream: held here (`processors`), or, in cluster mode, by
//! whichever replica the processor is connected to (`cluster::relay`).
//!
//! - `processors`: the command streams connected here, and their pending commands.
//! - `stream`: serving one `ReceiveCommands` stream.

pub(crate) mod processors;
mod stream;

use std::collections::HashMap;

use wfm_engine::CommandRefusal;
use wfm_proto::v1 as pb;

pub(crate) use processors::Processors;
pub(crate) use stream::{CommandStream, serve};

/// Most arguments a command carries.
pub(crate) const MAX_ARGUMENTS: usize = 16;
/// Longest argument name, in bytes.
pub(crate) const MAX_ARGUMENT_KEY: usize = 64;
/// Longest argument value, and longest rejection reason, in bytes.
pub(crate) const MAX_ARGUMENT_VALUE: usize = 1024;
/// Longest processor id.
const MAX_PROCESSOR_ID: usize = 128;

/// Whether `id` can name an Interaction Processor: 1 to 128 of `A-Z a-z 0-9 - _`, so that
/// it is also a NATS subject token.
pub(crate) fn valid_processor_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PROCESSOR_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a command did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CommandFailure {
    /// The binding is not (or no longer) its session's binder here.
    #[error("this connection is not bound to the session")]
    NotBound,
    /// The view-state check refused it.
    #[error(transparent)]
    Refused(#[from] CommandRefusal),
    /// The arguments break a limit.
    #[error("{0}")]
    InvalidArguments(String),
    /// No processor could be reached, or its stream ended before it answered.
    #[error("{0}")]
    ProcessorUnavailable(String),
    /// The processor refused, with its reason.
    #[error("{0}")]
    Rejected(String),
    /// No answer within the deadline.
    #[error("the Interaction Processor did not answer within {0} ms")]
    Timeout(u64),
}

impl CommandFailure {
    /// The wire status of this failure.
    pub(crate) fn status(&self) -> pb::CommandStatus {
        use pb::CommandStatus as S;
        match self {
            CommandFailure::NotBound => S::NotBound,
            CommandFailure::Refused(CommandRefusal::UnknownTarget(_)) => S::UnknownTarget,
            CommandFailure::Refused(CommandRefusal::UnknownCapability(_)) => S::UnknownCapability,
            CommandFailure::Refused(CommandRefusal::Disabled { .. }) => S::CapabilityDisabled,
            CommandFailure::InvalidArguments(_) => S::InvalidArguments,
            CommandFailure::ProcessorUnavailable(_) => S::ProcessorUnavailable,
            CommandFailure::Rejected(_) => S::Rejected,
            CommandFailure::Timeout(_) => S::Timeout,
        }
    }

    /// The result an outcome relayed by another replica carries; `timeout_ms` is the
    /// deadline that replica waited for.
    pub(crate) fn from_outcome(outcome: pb::CommandOutcome, timeout_ms: u64) -> CommandResult {
        use pb::CommandStatus as S;
        let message = outcome.message;
        Err(
            match S::try_from(outcome.status).unwrap_or(S::Unspecified) {
                S::Accepted => return Ok(outcome.data),
                S::Rejected => CommandFailure::Rejected(message),
                S::Timeout => CommandFailure::Timeout(timeout_ms),
                S::InvalidArguments => CommandFailure::InvalidArguments(message),
                // A relay answers only with the statuses above; anything else is a replica
                // this one does not understand.
                _ => CommandFailure::ProcessorUnavailable(message),
            },
        )
    }
}

/// The answer to one command: the processor's result data, or why it failed.
pub(crate) type CommandResult = Result<HashMap<String, String>, CommandFailure>;

/// The Attach outcome of `result` for the gateway's `request_id`.
pub(crate) fn outcome(request_id: u64, result: CommandResult) -> pb::CommandOutcome {
    match result {
        Ok(data) => pb::CommandOutcome {
            request_id,
            status: pb::CommandStatus::Accepted.into(),
            message: String::new(),
            data,
            view: None,
        },
        Err(failure) => pb::CommandOutcome {
            request_id,
            status: failure.status().into(),
            message: failure.to_string(),
            data: HashMap::new(),
            view: match failure {
                CommandFailure::Refused(CommandRefusal::Disabled { view, .. }) => {
                    Some(crate::convert::compact_state(*view, None))
                }
                _ => None,
            },
        },
    }
}

/// Checks the limits of a command's arguments (and of an accepted command's result data).
pub(crate) fn check_arguments(arguments: &HashMap<String, String>) -> Result<(), CommandFailure> {
    if arguments.len() > MAX_ARGUMENTS {
        return Err(CommandFailure::InvalidArguments(format!(
            "a command carries at most {MAX_ARGUMENTS} arguments, this one {}",
            arguments.len()
        )));
    }
    for (key, value) in arguments {
        if key.is_empty() || key.len() > MAX_ARGUMENT_KEY {
            return Err(CommandFailure::InvalidArguments(format!(
                "argument names are 1 to {MAX_ARGUMENT_KEY} bytes; {key:?} is not"
            )));
        }
        if value.len() > MAX_ARGUMENT_VALUE {
            return Err(CommandFailure::InvalidArguments(format!(
                "argument {key:?} is over {MAX_ARGUMENT_VALUE} bytes"
            )));
        }
    }
    Ok(())
}

/// A processor's answer as the result of its command.
pub(crate) fn result_of(answer: pb::CommandResult) -> CommandResult {
    if answer.accepted {
        // The processor controls the data, and it reaches a browser: past the limits a
        // command's arguments have, the command still counts as carried out, without it.
        if let Err(error) = check_arguments(&answer.data) {
            tracing::warn!(%error, command_id = answer.command_id, "result data over the limits dropped");
            return Ok(HashMap::new());
        }
        return Ok(answer.data);
    }
    let mut reason = answer.reason;
    if reason.is_empty() {
        reason = "the Interaction Processor refused the command without a reason".to_string();
    }
    // A peer controls the reason's length; it reaches a browser, so it is cut.
    if reason.len() > MAX_ARGUMENT_VALUE {
        let mut end = MAX_ARGUMENT_VALUE;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    Err(CommandFailure::Rejected(reason))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn processor_ids_are_subject_tokens() {
        assert!(valid_processor_id("ip-1_A"));
        assert!(valid_processor_id(&"a".repeat(128)));
        for bad in ["", "a.b", "a b", "a*", "a>", "é", &"a".repeat(129)] {
            assert!(!valid_processor_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn argument_limits_are_named() {
        let many: HashMap<String, String> =
            (0..17).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(
            check_arguments(&many)
                .unwrap_err()
                .to_string()
                .contains("at most 16")
        );
        let long = HashMap::from([("reason".to_string(), "x".repeat(1025))]);
        assert!(
            check_arguments(&long)
                .unwrap_err()
                .to_string()
                .contains("\"reason\"")
        );
        let empty_key = HashMap::from([(String::new(), "x".to_string())]);
        assert!(check_arguments(&empty_key).is_err());
        let fine = HashMap::from([("destination".to_string(), "2001".to_string())]);
        assert!(check_arguments(&fine).is_ok());
    }

    #[test]
    fn a_rejection_keeps_its_reason_cut_to_the_limit() {
        let answer = |reason: String| pb::CommandResult {
            command_id: 1,
            accepted: false,
            reason,
            data: HashMap::new(),
        };
        let Err(CommandFailure::Rejected(reason)) = result_of(answer("busy".into())) else {
            panic!("a refusal is a rejection");
        };
        assert_eq!(reason, "busy");
        let Err(CommandFailure::Rejected(reason)) = result_of(answer("é".repeat(600))) else {
            panic!("a refusal is a rejection");
        };
        assert!(reason.len() <= MAX_ARGUMENT_VALUE);
        let Err(CommandFailure::Rejected(reason)) = result_of(answer(String::new())) else {
            panic!("a refusal is a rejection");
        };
        assert!(reason.contains("without a reason"));
    }

    #[test]
    fn accepted_data_over_the_limits_is_dropped_and_the_command_still_accepted() {
        let answer = |data: HashMap<String, String>| pb::CommandResult {
            command_id: 1,
            accepted: true,
            reason: String::new(),
            data,
        };
        let fine = HashMap::from([("platformId".to_string(), "op-7".to_string())]);
        assert_eq!(result_of(answer(fine.clone())).unwrap(), fine);
        let huge = HashMap::from([("blob".to_string(), "x".repeat(MAX_ARGUMENT_VALUE + 1))]);
        assert!(result_of(answer(huge)).unwrap().is_empty());
        let many: HashMap<String, String> = (0..=MAX_ARGUMENTS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(result_of(answer(many)).unwrap().is_empty());
    }

    #[test]
    fn a_disabled_refusal_carries_the_view_on_the_wire() {
        use wfm_engine::testkit::{call, session, state, voice};
        use wfm_engine::{AgentState, InteractionState};
        let s = session(state(
            vec![voice("voice", AgentState::Busy)],
            vec![call("c1", "voice", InteractionState::Alerting)],
        ));
        let refusal = s
            .check_command("s1.voice.c1", "interaction.hold")
            .unwrap_err();
        let wire = outcome(7, Err(refusal.into()));
        assert_eq!(wire.request_id, 7);
        assert_eq!(wire.status(), pb::CommandStatus::CapabilityDisabled);
        let view = wire.view.expect("the view state travels with the refusal");
        assert_eq!(view.target, "s1.voice.c1");
        assert_ne!(view.enabled, 0);
    }
}

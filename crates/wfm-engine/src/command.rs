//! The check a MediaBar command passes before it reaches the Interaction Processor: the
//! target exists and its current view state enables the capability. The view state is the
//! manager's, so this check is final, whatever the client believed it saw.

use crate::capability::Capability;
use crate::session::Session;
use crate::view::StateEvent;

/// Why a command is refused before it is sent to the Interaction Processor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefusal {
    /// The session has no target of that name.
    #[error("the session has no target {0:?}")]
    UnknownTarget(String),
    /// The name is not in the capability catalogue.
    #[error("{0:?} is not a capability of the catalogue")]
    UnknownCapability(String),
    /// The target's current view state does not enable the capability; it is carried.
    #[error("{capability} is disabled on {}", view.target)]
    Disabled {
        /// The refused capability.
        capability: Capability,
        /// The target's entire current view state.
        view: Box<StateEvent>,
    },
}

impl Session {
    /// Checks `capability` on `target` (dot notation) against the current view state.
    pub fn check_command(
        &self,
        target: &str,
        capability: &str,
    ) -> Result<Capability, CommandRefusal> {
        let id = self.id().as_str();
        let view = self
            .view()
            .targets()
            .iter()
            .find(|view| renders_as(&view.target, id, target))
            .ok_or_else(|| CommandRefusal::UnknownTarget(quoted(target)))?;
        let capability = Capability::from_name(capability)
            .ok_or_else(|| CommandRefusal::UnknownCapability(quoted(capability)))?;
        if view.enabled.contains(capability) {
            return Ok(capability);
        }
        Err(CommandRefusal::Disabled {
            capability,
            view: Box::new(self.event_of(view)),
        })
    }
}

/// Longest part of a client's text that a refusal quotes: the client chose its length.
const MAX_QUOTED: usize = 256;

/// `text` as a refusal quotes it, cut to [`MAX_QUOTED`] characters.
fn quoted(text: &str) -> String {
    text.chars().take(MAX_QUOTED).collect()
}

/// Whether `target` rendered for session `session` is `name`, without rendering it.
fn renders_as(target: &crate::view::Target, session: &str, name: &str) -> bool {
    use crate::view::Target;
    let Some(rest) = name.strip_prefix(session) else {
        return false;
    };
    match target {
        Target::Session => rest.is_empty(),
        Target::Channel(channel) => rest.strip_prefix('.') == Some(channel.as_str()),
        Target::Interaction {
            channel,
            interaction,
        } => {
            rest.strip_prefix('.')
                .and_then(|r| r.strip_prefix(channel.as_str()))
                .and_then(|r| r.strip_prefix('.'))
                == Some(interaction.as_str())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::{AgentState, InteractionState};
    use crate::testkit::{call, session, state, voice};

    fn ready_with(calls: Vec<crate::model::Interaction>) -> Session {
        session(state(vec![voice("voice", AgentState::Busy)], calls))
    }

    #[test]
    fn an_enabled_capability_passes_and_a_disabled_one_carries_the_view() {
        let s = ready_with(vec![call("c1", "voice", InteractionState::Alerting)]);
        assert_eq!(
            s.check_command("s1.voice.c1", "interaction.answer"),
            Ok(Capability::Answer)
        );
        let Err(CommandRefusal::Disabled { capability, view }) =
            s.check_command("s1.voice.c1", "interaction.hold")
        else {
            panic!("hold on an alerting call must be refused");
        };
        assert_eq!(capability, Capability::Hold);
        assert_eq!(view.target, "s1.voice.c1");
        assert!(view.enabled.contains(Capability::Answer));
        assert!(!view.enabled.contains(Capability::Hold));
        assert!(view.defined.contains(Capability::Hold));
    }

    #[test]
    fn unknown_targets_and_names_are_told_apart() {
        let s = session(state(vec![voice("voice", AgentState::Ready)], vec![]));
        for target in [
            "s1.voice.nope",
            "s2.voice",
            "s1.voic",
            "s1.voice.",
            "s1x",
            "",
        ] {
            assert_eq!(
                s.check_command(target, "channel.notReady"),
                Err(CommandRefusal::UnknownTarget(target.into())),
                "{target}"
            );
        }
        assert_eq!(
            s.check_command("s1.voice", "channel.makeCoffee"),
            Err(CommandRefusal::UnknownCapability(
                "channel.makeCoffee".into()
            ))
        );
        assert_eq!(
            s.check_command("s1.voice", "channel.notReady"),
            Ok(Capability::ChannelNotReady)
        );
        // A capability of another kind of target is defined nowhere on this one: disabled.
        assert!(matches!(
            s.check_command("s1", "interaction.hold"),
            Err(CommandRefusal::Disabled { .. })
        ));
    }
}

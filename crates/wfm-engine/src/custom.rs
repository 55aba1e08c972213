//! Custom rules: administrator-written conditions that disable a capability the built-in
//! state rules would enable. They can only narrow, never enable.
//!
//! The engine does not know the rule language; a profile loader compiles rules into
//! [`Condition`]s once, and the engine only asks them whether they hold.

use std::fmt;
use std::sync::Arc;

use crate::capability::{CapSet, Capability};
use crate::model::{Channel, Interaction, SessionState};

/// What a session knows besides its CTI state: whose it is, and what time it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Circumstances<'a> {
    /// The agent's group, `""` when the Interaction Processor named none.
    pub agent_group: &'a str,
    /// The caller's time, in its milliseconds.
    pub now_ms: u64,
    /// When each channel (by position) entered its agent state; `None` when not known.
    pub since_ms: &'a [Option<u64>],
}

impl Circumstances<'_> {
    /// Whole seconds the channel at `index` has spent in its agent state (0 when undated).
    pub(crate) fn state_secs(&self, index: usize) -> u64 {
        self.since_ms
            .get(index)
            .copied()
            .flatten()
            .map_or(0, |since| self.now_ms.saturating_sub(since) / 1000)
    }
}

/// What a condition may look at: the session, and the channel and interaction of the target.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The whole session state.
    pub state: &'a SessionState,
    /// The target's channel (the channel itself, or the interaction's channel).
    pub channel: Option<&'a Channel>,
    /// The target interaction.
    pub interaction: Option<&'a Interaction>,
    /// The agent's group, `""` when none.
    pub agent_group: &'a str,
    /// Whole seconds the target's channel has been in its agent state; 0 for the session.
    pub state_secs: u64,
}

impl<'a> Facts<'a> {
    /// The facts of the session target of `state`, with no group and no time.
    pub fn of(state: &'a SessionState) -> Self {
        Facts {
            state,
            channel: None,
            interaction: None,
            agent_group: "",
            state_secs: 0,
        }
    }
}

/// A compiled condition; when it holds, its rule disables its capability.
pub trait Condition: Send + Sync + fmt::Debug {
    /// Whether the condition holds for `facts`.
    fn holds(&self, facts: &Facts<'_>) -> bool;

    /// The times in state, in whole seconds, at which the answer may change with nothing
    /// but the clock moving; the engine wakes the session at each. Empty for a condition
    /// that does not read the time.
    fn time_marks(&self) -> Vec<u64> {
        Vec::new()
    }
}

/// One custom rule of a profile.
#[derive(Debug, Clone)]
pub struct CustomRule {
    /// The rule's name, shown by explanations.
    pub name: String,
    /// The capability it disables.
    pub capability: Capability,
    /// The source text of the condition, shown by explanations.
    pub expression: String,
    /// The compiled condition.
    pub condition: Arc<dyn Condition>,
}

impl PartialEq for CustomRule {
    fn eq(&self, other: &Self) -> bool {
        // Conditions are compiled from the expression, so equal source means equal rule.
        self.name == other.name
            && self.capability == other.capability
            && self.expression == other.expression
    }
}

impl Eq for CustomRule {}

/// The custom rules of a profile, with the set of capabilities they touch precomputed so
/// that a target none of them concerns pays nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CustomRules {
    rules: Vec<CustomRule>,
    touched: CapSet,
    /// Every rule's time marks in milliseconds, ascending and distinct.
    marks_ms: Vec<u64>,
}

impl CustomRules {
    /// Rules in the order they are evaluated.
    pub(crate) fn new(rules: Vec<CustomRule>) -> Self {
        let touched = rules.iter().map(|r| r.capability).collect();
        let mut marks_ms: Vec<u64> = rules
            .iter()
            .flat_map(|r| r.condition.time_marks())
            .map(|secs| secs.saturating_mul(1000))
            .collect();
        marks_ms.sort_unstable();
        marks_ms.dedup();
        Self {
            rules,
            touched,
            marks_ms,
        }
    }

    /// The times in state, in milliseconds, at which some rule's answer may change.
    pub(crate) fn marks_ms(&self) -> &[u64] {
        &self.marks_ms
    }

    /// All rules.
    pub(crate) fn all(&self) -> &[CustomRule] {
        &self.rules
    }

    /// `enabled` minus every capability whose rule holds.
    pub(crate) fn narrow(&self, mut enabled: CapSet, facts: &Facts<'_>) -> CapSet {
        if enabled.intersect(self.touched).is_empty() {
            return enabled;
        }
        for rule in &self.rules {
            if enabled.contains(rule.capability) && rule.condition.holds(facts) {
                enabled = enabled.without(CapSet::of(&[rule.capability]));
            }
        }
        enabled
    }

    /// The first rule that disables `capability` for `facts`.
    pub(crate) fn deciding(
        &self,
        capability: Capability,
        facts: &Facts<'_>,
    ) -> Option<&CustomRule> {
        self.rules
            .iter()
            .find(|r| r.capability == capability && r.condition.holds(facts))
    }
}

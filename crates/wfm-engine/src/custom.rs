//! Custom rules: administrator-written conditions that disable a capability the built-in
//! state rules would enable. They can only narrow, never enable.
//!
//! The engine does not know the rule language; a profile loader compiles rules into
//! [`Condition`]s once, and the engine only asks them whether they hold.

use std::fmt;
use std::sync::Arc;

use crate::capability::{CapSet, Capability};
use crate::model::{Channel, Interaction, SessionState};

/// What a condition may look at: the session, and the channel and interaction of the target.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The whole session state.
    pub state: &'a SessionState,
    /// The target's channel (the channel itself, or the interaction's channel).
    pub channel: Option<&'a Channel>,
    /// The target interaction.
    pub interaction: Option<&'a Interaction>,
}

/// A compiled condition; when it holds, its rule disables its capability.
pub trait Condition: Send + Sync + fmt::Debug {
    /// Whether the condition holds for `facts`.
    fn holds(&self, facts: &Facts<'_>) -> bool;
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
}

impl CustomRules {
    /// Rules in the order they are evaluated.
    pub(crate) fn new(rules: Vec<CustomRule>) -> Self {
        let touched = rules.iter().map(|r| r.capability).collect();
        Self { rules, touched }
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

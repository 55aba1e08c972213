//! Custom rules narrow the built-in rules, never widen them; profile changes emit only what
//! changed; explanations name what decided each capability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use wfm_engine::testkit::*;
use wfm_engine::{
    AgentState, Capability, Condition, CustomRule, Facts, Interaction, InteractionState, Options,
    Profile, Switch, Verdict, explain,
};

/// Holds when the target interaction's attached data has `key` = `value`.
#[derive(Debug)]
struct DataEquals(&'static str, &'static str);

impl Condition for DataEquals {
    fn holds(&self, facts: &Facts<'_>) -> bool {
        facts
            .interaction
            .is_some_and(|i| i.data.get(self.0).map(String::as_str) == Some(self.1))
    }
}

/// Always holds.
#[derive(Debug)]
struct Always;

impl Condition for Always {
    fn holds(&self, _: &Facts<'_>) -> bool {
        true
    }
}

fn rule(name: &str, capability: Capability, condition: impl Condition + 'static) -> CustomRule {
    CustomRule {
        name: name.into(),
        capability,
        expression: format!("{condition:?}"),
        condition: Arc::new(condition),
    }
}

fn vip_call(tier: &str) -> Interaction {
    let mut c = call("c1", "voice", InteractionState::Connected);
    std::sync::Arc::make_mut(&mut c.data).insert("tier".into(), tier.into());
    c
}

fn no_vip_blind_transfer() -> Profile {
    Profile::default().with_rules(vec![rule(
        "no-vip-blind-transfer",
        Capability::SingleStepTransfer,
        DataEquals("tier", "vip"),
    )])
}

#[test]
fn a_rule_disables_its_capability_only_where_its_condition_holds() {
    let vip = session_with(
        no_vip_blind_transfer(),
        state(
            vec![voice("voice", AgentState::Busy)],
            vec![vip_call("vip")],
        ),
    );
    let gold = session_with(
        no_vip_blind_transfer(),
        state(
            vec![voice("voice", AgentState::Busy)],
            vec![vip_call("gold")],
        ),
    );
    assert!(!enabled(&vip, "voice.c1").contains(Capability::SingleStepTransfer));
    assert!(enabled(&vip, "voice.c1").contains(Capability::Hold));
    assert!(enabled(&gold, "voice.c1").contains(Capability::SingleStepTransfer));
}

#[test]
fn a_rule_never_enables_what_the_state_forbids() {
    let profile = Profile::default().with_rules(vec![rule("noop", Capability::Answer, Always)]);
    let plain = session(state(
        vec![voice("voice", AgentState::Busy)],
        vec![vip_call("vip")],
    ));
    let ruled = session_with(
        profile,
        state(
            vec![voice("voice", AgentState::Busy)],
            vec![vip_call("vip")],
        ),
    );
    // Answer is disabled on a connected call with or without a rule that "holds".
    assert_eq!(enabled(&plain, "voice.c1"), enabled(&ruled, "voice.c1"));
}

#[test]
fn a_new_profile_emits_events_only_for_targets_that_change() {
    let mut s = session(state(
        vec![
            voice("voice", AgentState::Busy),
            chat_channel("chat", AgentState::Ready),
        ],
        vec![vip_call("vip")],
    ));
    let version = s.view_version();
    let events = s.set_profile(Arc::new(no_vip_blind_transfer()));
    let targets: Vec<&str> = events.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["s1.voice.c1"]);
    assert!(!events[0].enabled.contains(Capability::SingleStepTransfer));
    assert_eq!(s.view_version(), version + 1);
    assert!(
        s.set_profile(Arc::new(no_vip_blind_transfer())).is_empty(),
        "same rules again: nothing"
    );
}

#[test]
fn explain_names_the_switch_option_state_rule_or_custom_rule_that_decided() {
    let options = Options {
        reject_alerting: false,
        ..Options::default()
    };
    let profile = Profile::new("site", options, &[Switch::Recording]).with_rules(vec![rule(
        "no-vip-blind-transfer",
        Capability::SingleStepTransfer,
        DataEquals("tier", "vip"),
    )]);
    let mut alerting = vip_call("vip");
    alerting.id = id("c2");
    alerting.state = InteractionState::Alerting;
    let st = state(
        vec![voice("voice", AgentState::Busy)],
        vec![vip_call("vip"), alerting],
    );
    let explained = explain(&st, &profile);
    let verdict = |target: &str, cap: Capability| {
        let t = explained
            .iter()
            .find(|t| t.target == wfm_engine::testkit::target(target))
            .unwrap();
        t.capabilities
            .iter()
            .find(|c| c.capability == cap)
            .unwrap()
            .verdict
            .clone()
    };
    assert_eq!(verdict("voice.c1", Capability::Hold), Verdict::Enabled);
    assert_eq!(
        verdict("voice.c1", Capability::Retrieve),
        Verdict::StateRule
    );
    assert_eq!(
        verdict("voice.c1", Capability::RecordingStart),
        Verdict::SwitchedOff(Switch::Recording)
    );
    assert_eq!(
        verdict("voice.c2", Capability::Reject),
        Verdict::Option("reject_alerting")
    );
    assert!(matches!(
        verdict("voice.c1", Capability::SingleStepTransfer),
        Verdict::CustomRule(r) if r.name == "no-vip-blind-transfer"
    ));
    let session_target = &explained[0];
    assert_eq!(session_target.capabilities.len(), 2);
    assert_eq!(explained.len(), 4, "session, channel, two calls");
}

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

/// Holds on a channel in `state` for at least `secs` seconds: a rule on time in state.
#[derive(Debug)]
struct InStateFor(AgentState, u64);

impl Condition for InStateFor {
    fn holds(&self, facts: &Facts<'_>) -> bool {
        facts.channel.is_some_and(|c| c.state == self.0) && facts.state_secs >= self.1
    }

    fn time_marks(&self) -> Vec<u64> {
        vec![self.1]
    }
}

/// Holds for agents of `group`.
#[derive(Debug)]
struct GroupIs(&'static str);

impl Condition for GroupIs {
    fn holds(&self, facts: &Facts<'_>) -> bool {
        facts.agent_group == self.0
    }
}

#[test]
fn a_rule_on_the_time_in_state_fires_at_the_deadline_the_session_names() {
    // Ready for 60 s or more: the agent may no longer go Not Ready without a supervisor.
    let profile = Profile::default().with_rules(vec![rule(
        "ready-a-minute",
        Capability::ChannelNotReady,
        InStateFor(AgentState::Ready, 60),
    )]);
    let mut s = session_with(
        profile,
        state(vec![voice("voice", AgentState::NotReady)], vec![]),
    );
    s.set_clock(1_000);
    assert_eq!(
        s.next_deadline(),
        Some(61_000),
        "dated from the first clock"
    );
    s.apply_at(
        1,
        wfm_engine::CtiUpdate::Channel(channel_update("voice", AgentState::Ready)),
        5_000,
    )
    .unwrap();
    assert_eq!(s.next_deadline(), Some(65_000), "dated from entering Ready");
    assert!(enabled(&s, "voice").contains(Capability::ChannelNotReady));
    assert_eq!(s.expire(64_999), vec![], "not yet");
    let events = s.expire(65_000);
    assert_eq!(events.len(), 1);
    assert!(!events[0].enabled.contains(Capability::ChannelNotReady));
    assert_eq!(s.next_deadline(), None, "past its last mark");
    assert_eq!(s.last_sequence(), 1, "the clock is not an update");
}

#[test]
fn a_rule_can_read_the_agents_group() {
    let profile = || {
        Profile::default().with_rules(vec![rule(
            "trainees-do-not-blind-transfer",
            Capability::SingleStepTransfer,
            GroupIs("trainees"),
        )])
    };
    let busy = || {
        state(
            vec![voice("voice", AgentState::Busy)],
            vec![call("c1", "voice", InteractionState::Connected)],
        )
    };
    let trainee = session_with(profile(), busy())
        .with_agent_group("trainees")
        .unwrap();
    let senior = session_with(profile(), busy())
        .with_agent_group("senior agents.east")
        .unwrap();
    assert!(!enabled(&trainee, "voice.c1").contains(Capability::SingleStepTransfer));
    assert!(enabled(&senior, "voice.c1").contains(Capability::SingleStepTransfer));
    let refused = session_with(profile(), busy()).with_agent_group("bad\ngroup");
    assert!(refused.unwrap_err().to_string().contains("agent group"));
    let long = "g".repeat(129);
    assert!(
        session_with(profile(), busy())
            .with_agent_group(&long)
            .is_err()
    );
}

#[test]
fn a_restored_session_keeps_its_group_and_the_dates_of_its_states() {
    let profile = Arc::new(Profile::default().with_rules(vec![
        rule(
            "ready-a-minute",
            Capability::ChannelNotReady,
            InStateFor(AgentState::Ready, 60),
        ),
        rule(
            "trainees",
            Capability::SingleStepTransfer,
            GroupIs("trainees"),
        ),
    ]));
    let mut s = wfm_engine::Session::new(
        wfm_engine::Id::parse("session id", "s1").unwrap(),
        Arc::clone(&profile),
        state(vec![voice("voice", AgentState::Ready)], vec![]),
    )
    .unwrap()
    .with_agent_group("trainees")
    .unwrap();
    s.set_clock(10_000);
    let dates: Vec<u64> = s.state_since_ms().collect();
    assert_eq!(dates, [10_000]);
    // Another replica restores it 55 s later: 5 s are left before the rule fires.
    let restored = wfm_engine::Session::restore(
        s.id().clone(),
        profile,
        s.state().clone(),
        wfm_engine::Persisted {
            last_sequence: 7,
            view_version: 3,
            agent_group: s.agent_group(),
            state_since_ms: &dates,
            now_ms: 65_000,
        },
    )
    .unwrap();
    assert_eq!(restored.agent_group(), "trainees");
    assert_eq!(restored.next_deadline(), Some(70_000));
    assert_eq!((restored.last_sequence(), restored.view_version()), (7, 3));
    // Restored past the mark, the view already has the rule applied.
    let late = wfm_engine::Session::restore(
        s.id().clone(),
        Arc::new(s.profile().clone()),
        s.state().clone(),
        wfm_engine::Persisted {
            state_since_ms: &dates,
            now_ms: 80_000,
            ..wfm_engine::Persisted::default()
        },
    )
    .unwrap();
    assert!(!enabled(&late, "voice").contains(Capability::ChannelNotReady));
}

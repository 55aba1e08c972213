use super::*;

fn voice(state: Agent) -> pb::Channel {
    pb::Channel {
        channel_id: "voice".into(),
        media: pb::Media::Voice.into(),
        state: state.into(),
        ..Default::default()
    }
}

fn call(id: &str, state: State) -> pb::Interaction {
    pb::Interaction {
        interaction_id: id.into(),
        channel_id: "voice".into(),
        direction: pb::Direction::Inbound.into(),
        state: state.into(),
        parties: 2,
        ..Default::default()
    }
}

/// Carries out `capability` on `target` and returns the state the effects leave.
fn run(
    state: &CtiState,
    target: &str,
    capability: &str,
    arguments: &[(&str, &str)],
) -> Result<CtiState, Refusal> {
    let arguments: HashMap<String, String> = arguments
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let order = Order::parse("s", target, capability, &arguments).expect("a target of s");
    let effects = plan(state, &order)?;
    let mut after = state.clone();
    for effect in &effects {
        after.apply(&effect.update);
    }
    Ok(after)
}

fn state_of(state: &CtiState, id: &str) -> Option<State> {
    state
        .interactions()
        .iter()
        .find(|i| i.interaction_id == id)
        .map(|i| State::try_from(i.state).unwrap())
}

fn agent(state: &CtiState) -> Agent {
    Agent::try_from(state.channels()[0].state).unwrap()
}

#[test]
fn targets_split_into_channel_and_interaction_of_the_session_only() {
    let none = HashMap::new();
    let order = Order::parse("s", "s.voice.c1", "interaction.hold", &none).unwrap();
    assert_eq!(
        (order.channel, order.interaction),
        (Some("voice"), Some("c1"))
    );
    let order = Order::parse("s", "s.voice", "channel.ready", &none).unwrap();
    assert_eq!((order.channel, order.interaction), (Some("voice"), None));
    let order = Order::parse("s", "s", "session.login", &none).unwrap();
    assert_eq!((order.channel, order.interaction), (None, None));
    assert!(Order::parse("s", "s2.voice", "channel.ready", &none).is_none());
    assert!(Order::parse("s", "other", "session.login", &none).is_none());
}

#[test]
fn a_call_answered_held_retrieved_and_released_goes_to_after_call_work() {
    let start = CtiState::new(vec![voice(Agent::Ready)], vec![call("c1", State::Alerting)]);
    let answered = run(&start, "s.voice.c1", "interaction.answer", &[]).unwrap();
    assert_eq!(state_of(&answered, "c1"), Some(State::Connected));
    assert_eq!(agent(&answered), Agent::Busy);
    let held = run(&answered, "s.voice.c1", "interaction.hold", &[]).unwrap();
    assert_eq!(state_of(&held, "c1"), Some(State::Held));
    let back = run(&held, "s.voice.c1", "interaction.retrieve", &[]).unwrap();
    assert_eq!(state_of(&back, "c1"), Some(State::Connected));
    let released = run(&back, "s.voice.c1", "interaction.release", &[]).unwrap();
    assert_eq!(state_of(&released, "c1"), Some(State::WrapUp));
    assert_eq!(agent(&released), Agent::AfterCallWork);
}

#[test]
fn a_consult_dials_then_connects_and_a_transfer_clears_both_legs() {
    let start = CtiState::new(vec![voice(Agent::Busy)], vec![call("c1", State::Connected)]);
    let arguments = HashMap::from([("destination".to_string(), "2001".to_string())]);
    let order = Order::parse("s", "s.voice.c1", "interaction.consult", &arguments).unwrap();
    let effects = plan(&start, &order).unwrap();
    // The original is held at once; the leg rings before it connects.
    let mut midway = start.clone();
    for effect in effects.iter().take_while(|e| e.after < RINGING) {
        midway.apply(&effect.update);
    }
    assert_eq!(state_of(&midway, "c1"), Some(State::Held));
    assert_eq!(state_of(&midway, "consult1"), Some(State::Dialing));
    let consulted = run(
        &start,
        "s.voice.c1",
        "interaction.consult",
        &[("destination", "2001")],
    )
    .unwrap();
    assert_eq!(state_of(&consulted, "consult1"), Some(State::Connected));
    let leg = &consulted.interactions()[1];
    assert_eq!(
        (leg.consult_of.as_str(), leg.caller.as_str()),
        ("c1", "2001")
    );

    let transferred = run(
        &consulted,
        "s.voice.c1",
        "interaction.completeTransfer",
        &[],
    )
    .unwrap();
    assert_eq!(state_of(&transferred, "consult1"), None);
    assert_eq!(state_of(&transferred, "c1"), Some(State::WrapUp));
    assert_eq!(agent(&transferred), Agent::AfterCallWork);

    let disposed = run(
        &transferred,
        "s.voice.c1",
        "interaction.wrapUp",
        &[("disposition", "sale")],
    )
    .unwrap();
    assert_eq!(disposed.interactions()[0].disposition, "sale");
    let ready = run(&disposed, "s.voice", "channel.ready", &[]).unwrap();
    assert_eq!(agent(&ready), Agent::Ready);
    assert!(ready.interactions().is_empty(), "Ready closes the wrap-up");
}

#[test]
fn ready_or_not_ready_while_busy_is_pending_and_applies_when_the_work_ends() {
    let start = CtiState::new(vec![voice(Agent::Busy)], vec![call("c1", State::Connected)]);
    let pending = run(
        &start,
        "s.voice",
        "channel.notReady",
        &[("reason", "lunch")],
    )
    .unwrap();
    assert_eq!(agent(&pending), Agent::Busy);
    assert_eq!(
        pending.channels()[0].pending,
        i32::from(pb::PendingState::NotReady)
    );
    let wrapped = run(&pending, "s.voice.c1", "interaction.release", &[]).unwrap();
    assert_eq!(agent(&wrapped), Agent::AfterCallWork);
    let done = run(&wrapped, "s.voice.c1", "interaction.complete", &[]).unwrap();
    assert_eq!(agent(&done), Agent::NotReady);
    assert_eq!(done.channels()[0].reason, "lunch");
}

#[test]
fn a_dial_places_an_outbound_call_to_the_destination() {
    let start = CtiState::new(vec![voice(Agent::NotReady)], vec![]);
    let dialed = run(
        &start,
        "s.voice",
        "channel.dial",
        &[("destination", "+15550100")],
    )
    .unwrap();
    let placed = &dialed.interactions()[0];
    assert_eq!(placed.direction, i32::from(pb::Direction::Outbound));
    assert_eq!(placed.caller, "+15550100");
    assert_eq!(
        state_of(&dialed, &placed.interaction_id),
        Some(State::Connected)
    );
    assert_eq!(agent(&dialed), Agent::Busy);
}

#[test]
fn login_and_logout_move_every_channel() {
    let start = CtiState::new(vec![voice(Agent::LoggedOut)], vec![]);
    let logged_in = run(&start, "s", "session.login", &[]).unwrap();
    assert_eq!(agent(&logged_in), Agent::NotReady);
    let out = run(
        &logged_in,
        "s",
        "session.logout",
        &[("reason", "end_of_shift")],
    )
    .unwrap();
    assert_eq!(agent(&out), Agent::LoggedOut);
    assert_eq!(out.channels()[0].reason, "end_of_shift");
}

#[test]
fn what_the_platform_cannot_do_is_refused_with_a_reason_and_changes_nothing() {
    let start = CtiState::new(vec![voice(Agent::Busy)], vec![call("c1", State::Connected)]);
    // Target, capability, arguments, and what the refusal says.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (
            "s.voice.c1",
            "interaction.answer",
            &[],
            "cannot interaction.answer c1 while it is INTERACTION_STATE_CONNECTED",
        ),
        (
            "s.voice.c1",
            "interaction.consult",
            &[],
            "needs a destination",
        ),
        (
            "s.voice.c1",
            "interaction.consult",
            &[("destination", "1"), ("intent", "sideways")],
            "neither transfer nor conference",
        ),
        (
            "s.voice.c1",
            "interaction.sendDtmf",
            &[("digits", "12x")],
            "are not DTMF digits",
        ),
        (
            "s.voice.c1",
            "interaction.completeTransfer",
            &[],
            "cannot interaction.completeTransfer",
        ),
        (
            "s.voice.c9",
            "interaction.hold",
            &[],
            "no interaction c9 on voice",
        ),
        ("s.chat", "channel.ready", &[], "no channel chat"),
        (
            "s.voice.c1",
            "interaction.fly",
            &[],
            "not something the platform does",
        ),
        ("s.voice", "channel.logout", &[], "still has work on it"),
    ];
    for (target, capability, arguments, expected) in cases {
        let refusal = run(&start, target, capability, arguments).unwrap_err();
        assert!(
            refusal.0.contains(expected),
            "{capability} on {target}: {refusal}"
        );
    }
}

#[test]
fn the_platform_knows_every_capability_of_the_catalogue() {
    let state = CtiState::new(vec![voice(Agent::Busy)], vec![call("c1", State::Connected)]);
    for capability in wfm_engine::Capability::ALL {
        let name = capability.name();
        let target = match name.split('.').next() {
            Some("session") => "s",
            Some("channel") => "s.voice",
            _ => "s.voice.c1",
        };
        if let Err(refusal) = run(&state, target, name, &[]) {
            assert!(
                !refusal.0.contains("not something the platform does"),
                "{name}: {refusal}"
            );
        }
    }
}

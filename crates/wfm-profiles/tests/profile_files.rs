//! Profile files: inheritance, selection, and every validation error with its position.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wfm_engine::testkit::*;
use wfm_engine::{AgentState, Capability, InteractionState, Profile, Switch};
use wfm_profiles::ProfileSet;

const SITE: &str = r#"
default = "site"

[groups]
vip-desk = "vip"

[profiles.site]
description = "forces Not Ready before logout, no recording licence"
options = { logout_requires_not_ready = true }
switches = { recording = false }

[profiles.vip]
extends = "site"
switches = { recording = true, mute = false }

[[profiles.vip.rules]]
name = "no-vip-blind-transfer"
capability = "interaction.singleStepTransfer"
when = 'interaction.data.tier == "vip"'

[profiles.email]
options = { mandatory_disposition = true, max_conference_parties = 3 }
"#;

#[test]
fn profiles_extend_each_other_and_are_chosen_by_name_group_or_default() {
    let set = ProfileSet::parse("site.toml", SITE).unwrap();
    let site = set.select("", "").unwrap();
    assert_eq!(site.name(), "site");
    assert!(site.options().logout_requires_not_ready);
    assert!(!site.is_on(Switch::Recording));

    let vip = set.select("", "vip-desk").unwrap();
    assert_eq!(vip.name(), "vip");
    assert!(
        vip.options().logout_requires_not_ready,
        "inherited from site"
    );
    assert!(vip.is_on(Switch::Recording), "switched back on");
    assert!(!vip.is_on(Switch::Mute));
    assert_eq!(vip.rules().len(), 1);

    let email = set.select("email", "vip-desk").unwrap();
    assert_eq!(
        email.name(),
        "email",
        "an explicit name wins over the group"
    );
    assert!(
        !email.options().logout_requires_not_ready,
        "extends the built-in default"
    );
    assert_eq!(email.options().max_conference_parties, 3);
    assert_eq!(
        set.select("nope", "").unwrap_err().to_string(),
        "unknown profile \"nope\""
    );
    assert!(
        set.get("default").is_some(),
        "the built-in profile is always there"
    );
}

#[test]
fn a_compiled_rule_narrows_the_view_state() {
    let set = ProfileSet::parse("site.toml", SITE).unwrap();
    let mut vip_call = call("c1", "voice", InteractionState::Connected);
    std::sync::Arc::make_mut(&mut vip_call.data).insert("tier".into(), "vip".into());
    let s = session_with(
        (**set.get("vip").unwrap()).clone(),
        state(vec![voice("voice", AgentState::Busy)], vec![vip_call]),
    );
    let caps = enabled(&s, "voice.c1");
    assert!(!caps.contains(Capability::SingleStepTransfer));
    assert!(caps.contains(Capability::Hold));
}

fn errors(text: &str) -> Vec<String> {
    ProfileSet::parse("p.toml", text)
        .unwrap_err()
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn unknown_keys_and_wrong_types_are_reported_where_they_are() {
    let unknown = errors("[profiles.a]\nextends = \"default\"\ncolour = \"red\"\n");
    assert_eq!(unknown.len(), 1);
    assert!(
        unknown[0].starts_with("p.toml:3:1: unknown field `colour`"),
        "{unknown:?}"
    );

    let wrong_type = errors("[profiles.a]\noptions = { reject_alerting = \"yes\" }\n");
    assert!(
        wrong_type[0].starts_with("p.toml:2:31: invalid type: string \"yes\", expected a boolean"),
        "{wrong_type:?}"
    );

    let unknown_option = errors("[profiles.a.options]\nreject_alerts = true\n");
    assert!(
        unknown_option[0].starts_with("p.toml:2:1: unknown field `reject_alerts`"),
        "{unknown_option:?}"
    );
}

#[test]
fn every_semantic_error_is_reported_at_once_with_its_position() {
    let text = r#"default = "ghost"
[groups]
desk = "nowhere"
[profiles.a]
extends = "b"
[profiles.b]
extends = "a"
[profiles.c]
options = { max_conference_parties = 1 }
switches = { teleport = true }
[[profiles.c.rules]]
name = "r1"
capability = "interaction.teleport"
when = 'true'
[[profiles.c.rules]]
name = "r1"
capability = "interaction.hold"
when = 'interaction.data.tier == '
[[profiles.c.rules]]
name = "r3"
capability = "channel.ready"
when = 'channel.reason == "training" && agent.skill == "x"'
[[profiles.c.rules]]
name = "r4"
capability = "channel.ready"
when = 'interaction.muted'
[profiles.d]
extends = "missing"
[profiles.default]
"#;
    let found = errors(text);
    let expected = [
        "p.toml:1:11: default names unknown profile \"ghost\"",
        "p.toml:3:8: group \"desk\" maps to unknown profile \"nowhere\"",
        "p.toml:5:11: extends cycle: a -> b -> a",
        "p.toml:9:38: max_conference_parties must be between 2 and 64, got 1",
        "p.toml:10:25: unknown switch \"teleport\"; known: recording, recording_pause, mute, dtmf, consult, conference, single_step_transfer, reject, answer",
        "p.toml:13:14: unknown capability \"interaction.teleport\"",
        "p.toml:16:8: rule name \"r1\" is used twice",
        "p.toml:22:41: in `when`: unknown variable `agent.skill`",
        "p.toml:26:9: in `when`: `interaction.muted` is not available to rules on channel capabilities",
        "p.toml:28:11: profile \"d\" extends unknown profile \"missing\"",
        "p.toml:29:1: the profile name \"default\" is reserved for the built-in profile",
    ];
    for want in expected {
        assert!(
            found.iter().any(|f| f.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }
    let syntax = found
        .iter()
        .find(|f| f.starts_with("p.toml:18:"))
        .expect("the CEL syntax error");
    assert!(syntax.contains("in `when`:"), "{syntax}");
    assert_eq!(found.len(), expected.len() + 1, "{found:#?}");
}

#[test]
fn a_file_that_cannot_be_read_says_so() {
    let error = ProfileSet::load(std::path::Path::new("/nonexistent/profiles.toml")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/profiles.toml:1:1: cannot read:"),
        "{error}"
    );
}

#[test]
fn every_engine_option_can_be_set_by_its_name() {
    let options = wfm_engine::Options::default().describe();
    let body: Vec<String> = options
        .iter()
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    let text = format!("[profiles.all.options]\n{}\n", body.join("\n"));
    let set = ProfileSet::parse("all.toml", &text).unwrap();
    assert_eq!(
        set.get("all").unwrap().options(),
        &wfm_engine::Options::default()
    );
}

#[test]
fn reason_codes_and_monitoring_are_listed_inherited_and_checked() {
    let text = r#"
[profiles.site]
reasons = { not_ready = ["break", "lunch"], not_ready_required = true, logout = ["end_of_shift"], wrap_up = ["resolved", "sale"] }
options = { max_channel_capacity = 3, mandatory_disposition = true }
show_monitoring = true

[profiles.desk]
extends = "site"
"#;
    let set = ProfileSet::parse("r.toml", text).unwrap();
    for name in ["site", "desk"] {
        let profile = set.get(name).unwrap();
        let reasons = profile.reasons();
        assert_eq!(reasons.not_ready(), ["break", "lunch"], "{name}");
        assert!(reasons.not_ready_required(), "{name}");
        assert_eq!(reasons.logout(), ["end_of_shift"], "{name}");
        assert!(!reasons.logout_required(), "{name}");
        assert_eq!(reasons.wrap_up(), ["resolved", "sale"], "{name}");
        assert_eq!(profile.options().max_channel_capacity, 3, "{name}");
        assert!(profile.show_monitoring(), "{name}");
    }
    // The channel context carries the Not Ready codes, the session context the logout ones,
    // an interaction in wrap-up the dispositions (required with mandatory_disposition).
    let s = session_with(
        Profile::clone(set.get("site").unwrap()),
        state(
            vec![voice("voice", AgentState::AfterCallWork)],
            vec![
                call("c1", "voice", InteractionState::WrapUp),
                call("c2", "voice", InteractionState::Held),
            ],
        ),
    );
    let view = s.full_view();
    let context = |target: &str| {
        view.iter()
            .find(|e| e.target == target)
            .unwrap()
            .context
            .entries()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    assert!(context("s1.voice").contains(&"reasons=break,lunch".to_string()));
    assert!(context("s1.voice").contains(&"reason_required=true".to_string()));
    assert!(context("s1").contains(&"reasons=end_of_shift".to_string()));
    assert!(context("s1.voice.c1").contains(&"reasons=resolved,sale".to_string()));
    assert!(context("s1.voice.c1").contains(&"reason_required=true".to_string()));
    assert!(
        !context("s1.voice.c2")
            .iter()
            .any(|e| e.starts_with("reason")),
        "only wrap-up offers dispositions"
    );
    assert!(
        !context("s1")
            .iter()
            .any(|e| e.starts_with("reason_required"))
    );

    let bad = errors(
        r#"
[profiles.p]
reasons = { not_ready = ["", "a,b", "x", "x"] }
options = { max_channel_capacity = 0 }
"#,
    );
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert!(
        bad.iter()
            .any(|e| e.contains("\"\" must be 1 to 256 bytes")),
        "{bad:?}"
    );
    assert!(bad.iter().any(|e| e.contains("\"a,b\"")), "{bad:?}");
    assert!(
        bad.iter().any(|e| e.contains("\"x\" is listed twice")),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|e| e.contains("max_channel_capacity must be between 1 and 64, got 0")),
        "{bad:?}"
    );
}

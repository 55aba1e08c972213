//! Writes the seed inputs of every target into `corpus/<target>/seed-*`: the MediaBar frames
//! of docs/mediabar-protocol.md, real `PushUpdates` streams for the fixture session, the
//! profile files of profiles/ and the conditions of docs/profiles.md, and references signed
//! with the target's keys. Run from fuzz/: `cargo run --bin seeds`.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use wfm_proto::v1 as pb;

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)
}

fn mediabar() -> std::io::Result<()> {
    let reference = wfm_fuzz::reference_key(1).issue("s1", "agent-1", 1, 1_767_225_600);
    let frames = [
        ("get-services", r#"{"messageType":"coreRequest","requestId":"1","request":"getServices"}"#.to_string()),
        ("bind", format!(r#"{{"messageType":"coreRequest","requestId":"2","request":"bindResource","data":{{"serviceId":"WorkflowManager","resourceId":"{reference}","takeover":false}}}}"#)),
        ("bind-takeover", format!(r#"{{"messageType":"coreRequest","requestId":"2b","request":"bindResource","data":{{"serviceId":"WorkflowManager","resourceId":"{reference}","takeover":true}}}}"#)),
        ("unbind", r#"{"messageType":"coreRequest","requestId":"3","request":"unbindResource","data":{"serviceId":"WorkflowManager","resourceId":"s1"}}"#.to_string()),
        ("unbind-bare", r#"{"messageType":"coreRequest","requestId":"4","request":"unbindResource","data":null}"#.to_string()),
        ("no-name", r#"{"messageType":"coreRequest","requestId":"8"}"#.to_string()),
        ("unknown-request", r#"{"messageType":"coreRequest","requestId":"9","request":"makeCoffee"}"#.to_string()),
        ("other-service", r#"{"messageType":"coreRequest","requestId":"5","request":"bindResource","data":{"serviceId":"Other","resourceId":"x"}}"#.to_string()),
        ("escapes", r#"{"messageType":"coreRequest","requestId":"\u00e9\n\"","request":"getServices\u0000"}"#.to_string()),
        ("not-json", "nope".to_string()),
    ];
    for (name, frame) in frames {
        write("mediabar_request", name, frame.as_bytes())?;
    }
    Ok(())
}

fn stream(updates: &[(u64, pb::cti_update::Kind)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (sequence, kind) in updates {
        let request = pb::ApplyUpdateRequest {
            session_id: "s1".into(),
            sequence: *sequence,
            update: Some(pb::CtiUpdate {
                kind: Some(kind.clone()),
            }),
        };
        out.extend(request.encode_length_delimited_to_vec());
    }
    out
}

fn channel(id: &str, media: pb::Media, state: pb::AgentState) -> pb::Channel {
    pb::Channel {
        channel_id: id.into(),
        media: media as i32,
        state: state as i32,
        ..Default::default()
    }
}

fn interaction(id: &str, channel: &str, state: pb::InteractionState) -> pb::Interaction {
    pb::Interaction {
        interaction_id: id.into(),
        channel_id: channel.into(),
        direction: pb::Direction::Inbound as i32,
        state: state as i32,
        parties: 2,
        ..Default::default()
    }
}

fn change(id: &str, state: Option<pb::InteractionState>) -> pb::InteractionChange {
    pb::InteractionChange {
        interaction_id: id.into(),
        state: state.map(|s| s as i32),
        ..Default::default()
    }
}

fn updates() -> std::io::Result<()> {
    use pb::cti_update::Kind;
    use pb::{AgentState, InteractionState as S, Media};
    let vip = pb::Interaction {
        data: HashMap::from([("tier".to_string(), "vip".to_string())]),
        ..interaction("c3", "voice", S::Alerting)
    };
    let streams = [
        // The chat channel goes not ready with a reason, then ready.
        (
            "channel",
            vec![
                (
                    1,
                    Kind::Channel(pb::Channel {
                        reason: "training".into(),
                        ..channel("chat", Media::Chat, AgentState::NotReady)
                    }),
                ),
                (
                    2,
                    Kind::Channel(channel("chat", Media::Chat, AgentState::Ready)),
                ),
            ],
        ),
        // The consult completes: the consult leg ends, the original call is retrieved, wraps up, ends.
        (
            "consult-completes",
            vec![
                (1, Kind::InteractionChanged(change("c2", Some(S::Ended)))),
                (
                    2,
                    Kind::InteractionChanged(change("c1", Some(S::Connected))),
                ),
                (
                    3,
                    Kind::InteractionChanged(pb::InteractionChange {
                        disposition: Some("sold".into()),
                        ..change("c1", Some(S::WrapUp))
                    }),
                ),
                (4, Kind::InteractionChanged(change("c1", Some(S::Ended)))),
            ],
        ),
        // A new VIP call alerts on the voice channel, is answered, muted, recorded.
        (
            "vip-call",
            vec![
                (1, Kind::InteractionCreated(vip)),
                (
                    2,
                    Kind::InteractionChanged(change("c3", Some(S::Connected))),
                ),
                (
                    3,
                    Kind::InteractionChanged(pb::InteractionChange {
                        muted: Some(true),
                        recording: Some(pb::Recording::Active as i32),
                        parties: Some(3),
                        ..change("c3", None)
                    }),
                ),
            ],
        ),
        // A snapshot replaces everything and resets the sequence; then a repeat and a gap.
        (
            "snapshot",
            vec![
                (
                    7,
                    Kind::Snapshot(pb::Snapshot {
                        channels: vec![
                            channel("voice", Media::Voice, AgentState::Busy),
                            channel("mail", Media::Email, AgentState::Busy),
                        ],
                        interactions: vec![
                            interaction("m1", "mail", S::Active),
                            interaction("v1", "voice", S::Connected),
                        ],
                    }),
                ),
                (7, Kind::InteractionChanged(change("m1", Some(S::Paused)))),
                (9, Kind::InteractionChanged(change("m1", Some(S::Paused)))),
                (8, Kind::InteractionChanged(change("v1", Some(S::Held)))),
            ],
        ),
        // Refused: an unknown channel, a state not for the media, attached data to remove.
        (
            "refused",
            vec![
                (
                    1,
                    Kind::Channel(channel("ghost", Media::Voice, AgentState::Ready)),
                ),
                (1, Kind::InteractionChanged(change("x", Some(S::Connected)))),
                (
                    1,
                    Kind::InteractionChanged(pb::InteractionChange {
                        data: HashMap::from([("tier".to_string(), String::new())]),
                        ..change("x", None)
                    }),
                ),
            ],
        ),
    ];
    for (name, updates) in streams {
        write("apply_update", name, &stream(&updates))?;
    }
    Ok(())
}

fn profiles() -> std::io::Result<()> {
    write(
        "profile_file",
        "example.toml",
        include_bytes!("../../profiles/example.toml"),
    )?;
    let conditions = [
        ("vip", r#"interaction.data.tier == "vip""#),
        ("training", r#"channel.reason == "training""#),
        (
            "email",
            r#"interaction.media == "email" && interaction.disposition == """#,
        ),
        (
            "functions",
            r#"size(interaction.id) > 1 || interaction.id.startsWith("c") && !("tier" in interaction.data) || has(interaction.data.x) || session.interactions >= 2 && channel.state in ["busy", "ready"]"#,
        ),
        ("unicode", "interaction.data[\"é\"] == \"✓\" && ünknown"),
    ];
    for (name, condition) in conditions {
        write(
            "profile_file",
            &format!("when-{name}"),
            condition.as_bytes(),
        )?;
    }
    let broken = "default = \"nope\"\n[profiles.a]\nextends = \"a\"\nswitches = { x = true }\n[[profiles.a.rules]]\nname = \"r\"\ncapability = \"interaction.answer\"\nwhen = 'interaction.data.é == 1'\n";
    write("profile_file", "broken.toml", broken.as_bytes())?;
    Ok(())
}

fn references() -> std::io::Result<()> {
    let header = |now: u64, incarnation: u64, expires_at: u64, tamper: u8| {
        let mut bytes = Vec::new();
        bytes.extend(now.to_le_bytes());
        bytes.extend(incarnation.to_le_bytes());
        bytes.extend(expires_at.to_le_bytes());
        bytes.push(tamper);
        bytes
    };
    let current = wfm_fuzz::reference_key(1).issue("s1", "agent-1", 1, 2_000_000_000);
    let previous = wfm_fuzz::reference_key(2).issue("s-2", "agent 7", 42, 1_000);
    let seeds = [
        (
            "current",
            header(1_767_225_600, 1, 2_000_000_000, 0),
            current,
        ),
        ("previous-expired", header(5_000, 42, 1_000, 200), previous),
        (
            "ids",
            header(0, u64::MAX, u64::MAX, 77),
            "s1\nagent-1".to_string(),
        ),
    ];
    for (name, mut bytes, text) in seeds {
        bytes.extend(text.as_bytes());
        write("session_reference", name, &bytes)?;
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    mediabar()?;
    updates()?;
    profiles()?;
    references()
}

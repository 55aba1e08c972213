//! Profile files and their CEL conditions, from text: the input is read both as a whole
//! file (`ProfileSet::parse`) and as one `when` condition (`cel::compile`, every scope).
//!
//! Properties: a refused file has diagnostics at positions inside the text, in order; a
//! loaded one has its default, rules whose expressions compile again on their own, and
//! profiles that evaluate on a live session. A condition's error offset is a character
//! boundary of it (the file reporter slices the text there), a condition valid in a
//! narrower scope is valid in every wider one, and it means the same in each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wfm_engine::{Facts, Session, SessionState, testkit};
use wfm_profiles::ProfileSet;
use wfm_profiles::cel::{self, Scope};

/// The fixture session, with something for conditions to read: VIP attached data, a
/// not-ready reason, a disposition.
fn state() -> SessionState {
    let mut state = testkit::two_channel_state();
    std::sync::Arc::make_mut(&mut state.interactions[0].data)
        .insert("tier".to_string(), "vip".to_string());
    state.interactions[2].disposition = "sold".to_string();
    state.channels[1].reason = "training".to_string();
    state
}

fn scope_of(capability: wfm_engine::Capability) -> Scope {
    // As the file loader decides it.
    match capability.name().split('.').next() {
        Some("session") => Scope::Session,
        Some("channel") => Scope::Channel,
        _ => Scope::Interaction,
    }
}

fn profile_file(text: &str) {
    match ProfileSet::parse("fuzz.toml", text) {
        Err(error) => {
            assert!(
                !error.diagnostics.is_empty(),
                "refused without a diagnostic"
            );
            let lines: Vec<&str> = text.split('\n').collect();
            for d in &error.diagnostics {
                assert!(d.line >= 1 && d.line <= lines.len(), "{d}");
                let width = lines[d.line - 1].chars().count();
                assert!(d.column >= 1 && d.column <= width + 1, "{d}");
            }
            assert!(
                error
                    .diagnostics
                    .windows(2)
                    .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)),
                "diagnostics out of order: {error}"
            );
        }
        Ok(set) => {
            set.select("", "").expect("the default profile exists");
            for profile in set.profiles() {
                for rule in profile.rules() {
                    if let Err(e) = cel::compile(&rule.expression, scope_of(rule.capability)) {
                        panic!("rule {:?} loaded but does not compile: {e:?}", rule.name);
                    }
                }
                let session = Session::new(testkit::id("s1"), profile.clone(), state())
                    .expect("the fixture state is valid");
                assert!(!session.full_view().is_empty());
            }
        }
    }
}

/// What a condition compiled in `scope` says of each interaction of `state` (restricted to
/// what that scope sees).
fn verdicts(condition: &cel::CelCondition, scope: Scope, state: &SessionState) -> Vec<bool> {
    use wfm_engine::Condition as _;
    state
        .interactions
        .iter()
        .map(|item| {
            let channel = state.channel(&item.channel);
            let facts = Facts {
                channel: channel.filter(|_| scope >= Scope::Channel),
                interaction: Some(item).filter(|_| scope >= Scope::Interaction),
                ..Facts::of(state)
            };
            condition.holds(&facts)
        })
        .collect()
}

fn condition(text: &str) {
    let state = state();
    let mut narrower: Option<(Scope, Vec<bool>)> = None;
    for scope in [Scope::Session, Scope::Channel, Scope::Interaction] {
        match cel::compile(text, scope) {
            Ok(condition) => {
                let here = verdicts(&condition, scope, &state);
                if let Some((narrow, verdicts)) = &narrower {
                    assert_eq!(verdicts, &here, "{text:?} in {narrow:?} and in {scope:?}");
                }
                narrower.get_or_insert((scope, here));
            }
            Err(error) => {
                assert!(
                    narrower.is_none(),
                    "{text:?} compiles in a narrower scope but not in {scope:?}: {error:?}"
                );
                assert!(
                    text.is_char_boundary(error.offset),
                    "offset {} in {text:?}",
                    error.offset
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    profile_file(text);
    condition(text);
});

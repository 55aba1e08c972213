//! `wfm.v1` updates as `PushUpdates` streams them: length-delimited `ApplyUpdateRequest`s,
//! each converted by `wfm_manager::convert::update` and applied to one session (two
//! channels, a consult pair and a chat, under the `vip` profile of profiles/example.toml,
//! whose custom rules are evaluated on every view).
//!
//! Properties, after every step: a refused update (or a duplicate) leaves the session
//! exactly as it was (state, view, sequence, view version); an applied one moves the
//! sequence to its own and bumps the view version once if and only if it produced events;
//! and the state kept is one the engine accepts back through the wire, as a cluster
//! replica restores a session from its record, with the same view.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use wfm_engine::{Applied, CtiUpdate, Persisted, Profile, Session, testkit};
use wfm_proto::v1::ApplyUpdateRequest;

/// Enough steps to build up and tear down interactions; longer inputs add little.
const MAX_STEPS: usize = 32;

static PROFILE: LazyLock<Arc<Profile>> = LazyLock::new(|| {
    let set = wfm_profiles::ProfileSet::parse(
        "profiles/example.toml",
        include_str!("../../profiles/example.toml"),
    )
    .expect("the example profiles load");
    set.get("vip").expect("a vip profile").clone()
});

fn observe(session: &Session) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        session.state(),
        session.view(),
        session.last_sequence(),
        session.view_version(),
    )
}

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(
        testkit::id(testkit::SESSION),
        PROFILE.clone(),
        testkit::two_channel_state(),
    )
    .expect("the fixture state is valid");
    let mut input = data;
    for _ in 0..MAX_STEPS {
        let Ok(request) = ApplyUpdateRequest::decode_length_delimited(&mut input) else {
            break;
        };
        // A message the conversion refuses never reaches the engine.
        let Ok(update) = wfm_manager::convert::update(request.update) else {
            continue;
        };
        let is_snapshot = matches!(update, CtiUpdate::Snapshot(_));
        let sequence = request.sequence;
        let before = session.clone();
        match session.apply(sequence, update) {
            Err(error) => {
                assert_eq!(observe(&session), observe(&before), "refused: {error}");
            }
            Ok(Applied::Duplicate) => {
                assert!(!is_snapshot && sequence <= before.last_sequence());
                assert_eq!(observe(&session), observe(&before));
            }
            Ok(Applied::Changed(events)) => {
                assert!(is_snapshot || sequence == before.last_sequence() + 1);
                assert_eq!(session.last_sequence(), sequence);
                assert_eq!(
                    session.view_version(),
                    before.view_version() + u64::from(!events.is_empty())
                );
                let wire = wfm_manager::convert::state_to_wire(session.state());
                let state = wfm_manager::convert::state(wire.channels, wire.interactions)
                    .unwrap_or_else(|e| panic!("kept state refused on the wire: {e}"));
                let restored = Session::restore(
                    session.id().clone(),
                    PROFILE.clone(),
                    state,
                    Persisted {
                        last_sequence: session.last_sequence(),
                        view_version: session.view_version(),
                        ..Persisted::default()
                    },
                )
                .unwrap_or_else(|e| panic!("kept state refused by restore: {e}"));
                assert_eq!(observe(&restored), observe(&session));
            }
        }
    }
});

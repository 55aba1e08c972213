//! A session as its JetStream record, and back.

use std::time::Instant;

use wfm_engine::{Id, Persisted, Session};
use wfm_proto::cluster::v1::{Owner, SessionRecord};

use crate::convert;
use crate::error::ManagerError;
use crate::registry::{Entry, Owned, Registry};

/// The record of `session` (of `agent_id`, bound by `binder_id`) as owned by `owner`.
pub(crate) fn encode(
    session: &Session,
    agent_id: &str,
    incarnation: u64,
    processor_id: &str,
    binder_id: &str,
    owner: Owner,
) -> SessionRecord {
    SessionRecord {
        owner: Some(owner),
        session_id: session.id().to_string(),
        agent_id: agent_id.to_string(),
        profile: session.profile().name().to_string(),
        last_sequence: session.last_sequence(),
        view_version: session.view_version(),
        state: Some(convert::state_to_wire(session.state())),
        binder_id: binder_id.to_string(),
        incarnation,
        processor_id: processor_id.to_string(),
        agent_group: session.agent_group().to_string(),
        state_since_ms: session.state_since_ms().collect(),
    }
}

/// The record of a live entry, as owned by `owner`.
pub(crate) fn of_entry(entry: &Entry, owner: Owner) -> SessionRecord {
    encode(
        &entry.session,
        &entry.agent_id,
        entry.incarnation,
        &entry.processor_id,
        entry.binder_id(),
        owner,
    )
}

/// The entry a record restores, owned here at `revision` under `incarnation`.
pub(crate) fn restore(
    record: SessionRecord,
    registry: &Registry,
    revision: u64,
    incarnation: u64,
) -> Result<Entry, ManagerError> {
    let id = Id::parse("session id", &record.session_id)?;
    let snapshot = record.state.unwrap_or_default();
    let state = convert::state(snapshot.channels, snapshot.interactions)?;
    let session = Session::restore(
        id,
        registry.profile(&record.profile),
        state,
        Persisted {
            last_sequence: record.last_sequence,
            view_version: record.view_version,
            agent_group: &record.agent_group,
            state_since_ms: &record.state_since_ms,
            now_ms: registry.timers().now_ms(),
        },
    )?;
    Ok(Entry::new(
        session,
        record.agent_id,
        record.incarnation,
        record.processor_id,
        record.binder_id,
        Some(Owned::new(revision, incarnation)),
        Instant::now(),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use wfm_engine::testkit::{channel_update, state, voice};
    use wfm_engine::{AgentState, CtiUpdate};
    use wfm_profiles::ProfileSet;

    use super::*;
    use crate::registry::{NewSession, lock};
    use crate::stats::ManagerStats;

    fn registry() -> Registry {
        let profiles = ProfileSet::parse(
            "test",
            "default = \"boxed\"\n[profiles.boxed]\noptions = { acw_timeout_secs = 30 }\n",
        )
        .unwrap();
        Registry::new(profiles, Arc::new(ManagerStats::default()))
    }

    #[test]
    fn a_taken_over_session_keeps_its_group_and_its_wrap_up_timer_runs_on() {
        let owner = registry();
        let who = NewSession {
            session_id: "s1",
            agent_id: "agent-1",
            profile: "",
            agent_group: "trainees",
            incarnation: None,
            processor_id: "",
        };
        owner
            .create(&who, || {
                Ok(state(vec![voice("voice", AgentState::Busy)], vec![]))
            })
            .unwrap();
        let acw = CtiUpdate::Channel(channel_update("voice", AgentState::AfterCallWork));
        owner.apply("s1", 1, acw, None).unwrap();
        let entered = owner.timers().earliest().unwrap() - 30_000;
        let record = of_entry(&lock(&owner.lookup("s1").unwrap()), Owner::default());
        assert_eq!(record.agent_group, "trainees");
        assert_eq!(record.state_since_ms, [entered]);

        let peer = registry();
        let restored = restore(record, &peer, 2, 7).unwrap();
        let adopted = peer.adopt(restored);
        assert_eq!(lock(&adopted).session.agent_group(), "trainees");
        assert_eq!(
            peer.timers().earliest(),
            Some(entered + 30_000),
            "the new owner ends the wrap-up when the old one would have"
        );
    }
}

//! A session as its JetStream record, and back.

use std::time::Instant;

use wfm_engine::{Id, Session};
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
        record.last_sequence,
        record.view_version,
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

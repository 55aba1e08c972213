//! The live sessions of one manager, their single binders, and the delivery of their events.
//!
//! Each session sits behind its own mutex, so updates to different sessions never contend,
//! and the events of one session are queued to its binder in the order updates were applied.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use tokio::sync::mpsc;
use wfm_engine::{Applied, CtiUpdate, Id, Session, SessionState, StateEvent};
use wfm_profiles::ProfileSet;
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;
use wfm_reference::Claims;

use crate::convert;
use crate::error::ManagerError;
use crate::stats::ManagerStats;

/// Where a binding's events go: a stream's queue, tagged with the binding id on that stream.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    tx: mpsc::UnboundedSender<pb::AttachResponse>,
    binding_id: u64,
}

impl Sink {
    /// A sink for binding `binding_id` of the stream fed by `tx`.
    pub(crate) fn new(tx: mpsc::UnboundedSender<pb::AttachResponse>, binding_id: u64) -> Self {
        Self { tx, binding_id }
    }

    /// Queues one message; a stream that is gone just drops it, its guard releases the binding.
    pub(crate) fn send(&self, kind: Kind) {
        let _ = self.tx.send(pb::AttachResponse {
            binding_id: self.binding_id,
            kind: Some(kind),
        });
    }

    fn unbound(&self, session_id: &Id, reason: pb::UnboundReason) {
        self.send(Kind::Unbound(pb::Unbound {
            session_id: session_id.to_string(),
            reason: reason.into(),
        }));
    }
}

/// Proof of a binding, used to release exactly that binding and not a later one.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    session_id: Id,
    token: u64,
}

struct Binder {
    token: u64,
    sink: Sink,
}

struct Entry {
    session: Session,
    agent_id: String,
    binder: Option<Binder>,
}

impl Entry {
    /// Queues `events` to the binder, each carrying `trace` (the W3C context of the update
    /// that caused them) so that the gateway's send joins the same trace.
    fn deliver(
        &self,
        events: &[StateEvent],
        trace: Option<&HashMap<String, String>>,
        stats: &ManagerStats,
    ) {
        if let Some(binder) = &self.binder {
            for event in events {
                let mut event = convert::state_updated(self.session.id(), event);
                if let Some(trace) = trace {
                    event.trace_context = trace.clone();
                }
                binder.sink.send(Kind::StateUpdated(event));
            }
            stats.events_emitted.add(events.len() as u64);
        }
    }

    fn view_state(&self) -> Vec<pb::StateUpdated> {
        let id = self.session.id();
        self.session
            .full_view()
            .iter()
            .map(|e| convert::state_updated(id, e))
            .collect()
    }
}

/// A session as created or re-issued.
pub(crate) struct Created {
    /// The session id.
    pub(crate) session_id: Id,
    /// Its agent.
    pub(crate) agent_id: String,
    /// The full current view state.
    pub(crate) view_state: Vec<pb::StateUpdated>,
    /// The next sequence the session accepts.
    pub(crate) next_sequence: u64,
}

/// Who a new session is for, and which profile it asks for.
pub(crate) struct NewSession<'a> {
    /// The session id.
    pub(crate) session_id: &'a str,
    /// Its agent.
    pub(crate) agent_id: &'a str,
    /// The profile named by the IP, or empty.
    pub(crate) profile: &'a str,
    /// The agent's group, mapped to a profile when none is named.
    pub(crate) agent_group: &'a str,
}

/// All live sessions.
pub(crate) struct Registry {
    sessions: RwLock<HashMap<Id, Arc<Mutex<Entry>>>>,
    profiles: RwLock<Arc<ProfileSet>>,
    next_token: AtomicU64,
    closing: AtomicBool,
    stats: Arc<ManagerStats>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Entries are only written after validation succeeds, so a panicking writer cannot
    // leave a half-applied update behind; recovering the guard is safe.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    /// An empty registry choosing session profiles from `profiles`, counting in `stats`.
    pub(crate) fn new(profiles: ProfileSet, stats: Arc<ManagerStats>) -> Self {
        Self {
            sessions: RwLock::default(),
            profiles: RwLock::new(Arc::new(profiles)),
            next_token: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            stats,
        }
    }

    fn entry(&self, session_id: &str) -> Result<Arc<Mutex<Entry>>, ManagerError> {
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        sessions
            .get(session_id)
            .cloned()
            .ok_or_else(|| ManagerError::UnknownSession(session_id.to_string()))
    }

    /// Creates a session, or returns the existing one when the same agent asks again.
    pub(crate) fn create(
        &self,
        who: &NewSession<'_>,
        state: impl FnOnce() -> Result<SessionState, ManagerError>,
    ) -> Result<Created, ManagerError> {
        let (session_id, agent_id) = (who.session_id, who.agent_id);
        let id = Id::parse("session id", session_id)?;
        Id::parse("agent id", agent_id)?;
        let profile = self
            .profiles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .select(who.profile, who.agent_group)
            .map_err(|unknown| ManagerError::UnknownProfile(unknown.0))?;
        if let Ok(existing) = self.entry(session_id) {
            return Self::reissue(&existing, agent_id);
        }
        let session = Session::new(id.clone(), profile, state()?)?;
        let entry = Entry {
            session,
            agent_id: agent_id.to_string(),
            binder: None,
        };
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Another CreateSession may have won the race since the lookup above.
        let entry = match sessions.entry(id) {
            MapEntry::Occupied(existing) => existing.get().clone(),
            MapEntry::Vacant(vacant) => {
                self.stats.sessions.inc();
                vacant.insert(Arc::new(Mutex::new(entry))).clone()
            }
        };
        drop(sessions);
        Self::reissue(&entry, agent_id)
    }

    fn reissue(entry: &Mutex<Entry>, agent_id: &str) -> Result<Created, ManagerError> {
        let entry = lock(entry);
        if entry.agent_id != agent_id {
            return Err(ManagerError::SessionOwnedByOtherAgent(
                entry.session.id().to_string(),
            ));
        }
        Ok(Created {
            session_id: entry.session.id().clone(),
            agent_id: entry.agent_id.clone(),
            view_state: entry.view_state(),
            next_sequence: entry.session.last_sequence() + 1,
        })
    }

    /// Applies one update and queues its events to the binder, tagged with `trace`.
    pub(crate) fn apply(
        &self,
        session_id: &str,
        sequence: u64,
        update: Result<CtiUpdate, ManagerError>,
        trace: Option<&HashMap<String, String>>,
    ) -> Result<pb::UpdateAck, ManagerError> {
        let entry = self.entry(session_id)?;
        let mut entry = lock(&entry);
        let applied = entry.session.apply(sequence, update?)?;
        let (duplicate, events) = match &applied {
            Applied::Duplicate => (true, 0),
            Applied::Changed(events) => {
                entry.deliver(events, trace, &self.stats);
                (false, events.len())
            }
        };
        Ok(pb::UpdateAck {
            session_id: session_id.to_string(),
            sequence,
            duplicate,
            view_version: entry.session.view_version(),
            events: u32::try_from(events).unwrap_or(u32::MAX),
        })
    }

    /// Ends a session and tells its binder.
    pub(crate) fn end(&self, session_id: &str) -> Result<(), ManagerError> {
        let removed = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session_id)
            .ok_or_else(|| ManagerError::UnknownSession(session_id.to_string()))?;
        self.stats.sessions.dec();
        let mut entry = lock(&removed);
        if let Some(binder) = entry.binder.take() {
            self.stats.bindings.dec();
            binder
                .sink
                .unbound(entry.session.id(), pb::UnboundReason::SessionEnded);
        }
        Ok(())
    }

    /// The tracked state and view of a session.
    pub(crate) fn get(&self, session_id: &str) -> Result<pb::GetSessionResponse, ManagerError> {
        let entry = self.entry(session_id)?;
        let entry = lock(&entry);
        Ok(pb::GetSessionResponse {
            session_id: session_id.to_string(),
            agent_id: entry.agent_id.clone(),
            profile: entry.session.profile().name().to_string(),
            state: Some(convert::state_to_wire(entry.session.state())),
            last_sequence: entry.session.last_sequence(),
            view_version: entry.session.view_version(),
            view_state: entry.view_state(),
            bound: entry.binder.is_some(),
        })
    }

    /// Binds `sink` to the session named by verified `claims`: the bind result and the full
    /// view state are queued at once, under the session lock, so no change can slip between.
    pub(crate) fn bind(
        &self,
        claims: &Claims,
        takeover: bool,
        sink: Sink,
    ) -> Result<Bound, ManagerError> {
        let entry = self.entry(&claims.session_id)?;
        let mut entry = lock(&entry);
        // Checked under the session lock: `shutdown` takes every lock after raising the flag,
        // so a binding either sees the flag or is released by `shutdown`.
        if self.closing.load(Ordering::SeqCst) {
            return Err(ManagerError::ShuttingDown);
        }
        if entry.agent_id != claims.agent_id {
            return Err(ManagerError::ReferenceForOtherSession);
        }
        if let Some(old) = entry.binder.take() {
            if !takeover {
                entry.binder = Some(old);
                return Err(ManagerError::AlreadyBound);
            }
            old.sink
                .unbound(entry.session.id(), pb::UnboundReason::TakenOver);
        } else {
            self.stats.bindings.inc();
        }
        let session_id = entry.session.id().clone();
        sink.send(Kind::BindResult(pb::BindResult {
            code: 0,
            message: String::new(),
            session_id: session_id.to_string(),
        }));
        let view = entry.view_state();
        self.stats.events_emitted.add(view.len() as u64);
        for event in view {
            sink.send(Kind::StateUpdated(event));
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        entry.binder = Some(Binder { token, sink });
        Ok(Bound { session_id, token })
    }

    /// Releases `bound` if it is still the session's binder; `notify` tells the binder why.
    pub(crate) fn release(&self, bound: &Bound, notify: Option<pb::UnboundReason>) {
        let Ok(entry) = self.entry(bound.session_id.as_str()) else {
            return;
        };
        let mut entry = lock(&entry);
        if entry.binder.as_ref().is_none_or(|b| b.token != bound.token) {
            return;
        }
        let binder = entry.binder.take();
        if binder.is_some() {
            self.stats.bindings.dec();
        }
        if let (Some(binder), Some(reason)) = (binder, notify) {
            binder.sink.unbound(&bound.session_id, reason);
        }
    }

    /// Puts reloaded `profiles` in force: every live session whose profile still exists
    /// switches to its new version, and its binder gets the events of what changed.
    /// Sessions whose profile is gone keep the version they have until they end.
    pub(crate) fn reload(&self, profiles: ProfileSet) {
        let profiles = Arc::new(profiles);
        *self
            .profiles
            .write()
            .unwrap_or_else(PoisonError::into_inner) = profiles.clone();
        for entry in self.entries() {
            let mut entry = lock(&entry);
            let Some(profile) = profiles.get(entry.session.profile().name()).cloned() else {
                tracing::warn!(session_id = %entry.session.id(), profile = entry.session.profile().name(),
                    "profile no longer defined; the session keeps its current version");
                continue;
            };
            let events = entry.session.set_profile(profile);
            entry.deliver(&events, None, &self.stats);
        }
    }

    fn entries(&self) -> Vec<Arc<Mutex<Entry>>> {
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        sessions.values().cloned().collect()
    }

    /// Refuses new bindings and unbinds every binder with "shutting down", which drops the
    /// last senders of every binding stream so that the streams can end.
    pub(crate) fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for entry in self.entries() {
            let mut entry = lock(&entry);
            if let Some(binder) = entry.binder.take() {
                self.stats.bindings.dec();
                binder
                    .sink
                    .unbound(entry.session.id(), pb::UnboundReason::ShuttingDown);
            }
        }
    }
}

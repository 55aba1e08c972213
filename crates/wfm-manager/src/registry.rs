//! The live sessions of one manager, their single binders, and the delivery of their events.
//!
//! Each session sits behind its own mutex, so updates to different sessions never contend,
//! and the events of one session are queued to its binder in the order updates were applied.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use wfm_engine::{Applied, CtiUpdate, Id, Session, SessionState, StateEvent};
use wfm_profiles::ProfileSet;
use wfm_reference::Claims;

use crate::cluster::Fence;
use crate::commands::CommandFailure;
use crate::error::ManagerError;
use crate::outbox::{self, Bound, Outgoing, Trace, UnboundReason};
use crate::stats::ManagerStats;
use crate::timers::Timers;

/// Where a binding's events go: a stream's queue, tagged with the binding id on that stream.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    tx: outbox::Sender,
    binding_id: u64,
}

impl Sink {
    /// A sink for binding `binding_id` of the stream fed by `tx`.
    pub(crate) fn new(tx: outbox::Sender, binding_id: u64) -> Self {
        Self { tx, binding_id }
    }

    fn unbound(&self, session_id: &Id, reason: UnboundReason) {
        self.tx.control(Outgoing::Unbound {
            binding_id: self.binding_id,
            session_id: session_id.clone(),
            reason,
        });
    }
}

struct Binder {
    token: u64,
    sink: Sink,
    /// Who bound (`AttachBind.binder_id`), kept with the session in cluster mode.
    binder_id: String,
    /// Set while the binder's queue has dropped its events: the final events of the
    /// targets it may have seen, sent when it is resynchronised if they have gone by then.
    stale: Option<Vec<StateEvent>>,
}

/// How long a moved session keeps its binder's place: the gateway's rebind grace.
const RESERVATION: Duration = Duration::from_secs(30);

/// A session that moved here keeps its last binder's place for [`RESERVATION`]: only that
/// binder may bind again without takeover.
struct Reservation {
    binder_id: String,
    until: Instant,
}

/// Cluster mode: what this replica knows of its ownership of a session.
#[derive(Debug)]
pub(crate) struct Owned {
    /// The record's revision this replica last wrote or read; the next write must match.
    pub(crate) revision: u64,
    /// The incarnation that holds it; another than the lease's means it must be re-acquired.
    pub(crate) incarnation: u64,
    /// Since when its changes wait to be persisted, if they do.
    pub(crate) dirty_since: Option<Instant>,
    /// A write of its record is in flight (at most one is).
    pub(crate) in_flight: bool,
    /// It waits in the persister's queue.
    pub(crate) queued: bool,
    /// It is being handed to another replica: nothing more is applied here.
    pub(crate) moving: bool,
}

impl Owned {
    /// Ownership at `revision` under `incarnation`, with nothing to persist.
    pub(crate) fn new(revision: u64, incarnation: u64) -> Self {
        Self {
            revision,
            incarnation,
            dirty_since: None,
            in_flight: false,
            queued: false,
            moving: false,
        }
    }
}

/// A live session and everything the manager tracks with it.
pub(crate) struct Entry {
    /// The state machine.
    pub(crate) session: Session,
    /// Its agent.
    pub(crate) agent_id: String,
    /// Random per created session, and named by its references.
    pub(crate) incarnation: u64,
    /// The Interaction Processor that carries out its commands; empty for none.
    pub(crate) processor_id: String,
    binder: Option<Binder>,
    reservation: Option<Reservation>,
    /// Cluster mode only.
    pub(crate) owned: Option<Owned>,
    /// The deadline it waits for in the registry's timers, if any.
    deadline: Option<u64>,
}

impl Entry {
    /// A session with no binder, owned as `owned` in cluster mode; `binder_id` is the binder
    /// its record names, whose place it keeps for a while.
    pub(crate) fn new(
        session: Session,
        agent_id: String,
        incarnation: u64,
        processor_id: String,
        binder_id: String,
        owned: Option<Owned>,
        now: Instant,
    ) -> Self {
        let reservation = (!binder_id.is_empty()).then(|| Reservation {
            binder_id,
            until: now + RESERVATION,
        });
        Self {
            session,
            agent_id,
            incarnation,
            processor_id,
            binder: None,
            reservation,
            owned,
            deadline: None,
        }
    }

    /// The identity of the binder, or of the one whose place is kept; empty for none.
    pub(crate) fn binder_id(&self) -> &str {
        match (&self.binder, &self.reservation) {
            (Some(binder), _) => &binder.binder_id,
            (None, Some(reservation)) => &reservation.binder_id,
            (None, None) => "",
        }
    }

    /// Tells the binder, if any, that its binding ended for `reason`.
    fn release_binder(&mut self, reason: UnboundReason, stats: &ManagerStats) {
        if let Some(binder) = self.binder.take() {
            stats.bindings.dec();
            binder.sink.unbound(self.session.id(), reason);
        }
    }

    /// Queues `events` to the binder, each carrying `trace` (the W3C context of the update
    /// that caused them) so that the gateway's send joins the same trace. A full queue makes
    /// the binder stale instead (see [`outbox`]).
    fn deliver(&mut self, events: Vec<StateEvent>, trace: Option<&Trace>, stats: &ManagerStats) {
        let Entry {
            session, binder, ..
        } = self;
        let Some(binder) = binder else {
            return;
        };
        if binder.stale.is_some() {
            stats.stream_overflows.add(events.len() as u64);
            return;
        }
        let mut queued = events.len();
        if let Err(overflow) = binder.sink.tx.states(binder.sink.binding_id, events, trace) {
            let (dropped, rest) = *overflow;
            let lost = 1 + rest.len();
            queued -= lost;
            stats.stream_overflows.add(lost as u64);
            // Every target the binder may know of: those in view now, and those this update
            // just took away.
            let mut seen: Vec<StateEvent> = session
                .full_view()
                .iter()
                .map(StateEvent::final_event)
                .collect();
            let taken: Vec<StateEvent> = std::iter::once(dropped)
                .chain(rest)
                .filter(|e| e.gone && !seen.iter().any(|s| s.target == e.target))
                .collect();
            seen.extend(taken);
            binder.stale = Some(seen);
            binder.sink.tx.mark_stale(Bound {
                session_id: session.id().clone(),
                token: binder.token,
            });
        }
        stats.events_emitted.add(queued as u64);
    }

    /// Queues the entire view state to a new binder, whatever the fill: it is one
    /// session's targets, once per bind.
    fn send_view(&self, sink: &Sink, stats: &ManagerStats) {
        let view = self.session.full_view();
        stats.events_emitted.add(view.len() as u64);
        for event in view {
            sink.tx.resync_state(sink.binding_id, event);
        }
    }
}

/// A session as created or re-issued.
pub(crate) struct Created {
    /// The session id.
    pub(crate) session_id: Id,
    /// Its agent.
    pub(crate) agent_id: String,
    /// Its incarnation, for its references.
    pub(crate) incarnation: u64,
    /// The full current view state.
    pub(crate) view_state: Vec<StateEvent>,
    /// The next sequence the session accepts.
    pub(crate) next_sequence: u64,
}

/// The outcome of an applied (or repeated) update.
pub(crate) struct Ack {
    /// The update repeated an applied sequence and was ignored.
    pub(crate) duplicate: bool,
    /// The session's view version after it.
    pub(crate) view_version: u64,
    /// The events it produced.
    pub(crate) events: usize,
}

/// A copy of a session's tracked state, for `GetSession`.
pub(crate) struct SessionView {
    /// The session id.
    pub(crate) session_id: Id,
    /// Its agent.
    pub(crate) agent_id: String,
    /// The name of its profile.
    pub(crate) profile: String,
    /// Its CTI state.
    pub(crate) state: SessionState,
    /// The last applied sequence.
    pub(crate) last_sequence: u64,
    /// Its view version.
    pub(crate) view_version: u64,
    /// Its entire view state.
    pub(crate) view_state: Vec<StateEvent>,
    /// Whether a client is bound.
    pub(crate) bound: bool,
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
    /// The incarnation of a lost session being recreated (from its `resume_reference`).
    pub(crate) incarnation: Option<u64>,
    /// The Interaction Processor that carries out its commands, or empty.
    pub(crate) processor_id: &'a str,
}

/// The session map: foldhash, seeded per process, is several times cheaper than SipHash on
/// short ids and already in the tree, and every update looks its session up.
type Sessions = HashMap<Id, Arc<Mutex<Entry>>, foldhash::fast::RandomState>;

/// A validated new session, not yet in the registry (cluster mode writes its record first).
pub(crate) struct Prepared {
    session: Session,
    agent_id: String,
    incarnation: u64,
    processor_id: String,
}

impl Prepared {
    /// The session.
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// Its agent.
    pub(crate) fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// Its incarnation.
    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Its Interaction Processor.
    pub(crate) fn processor_id(&self) -> &str {
        &self.processor_id
    }
}

/// All live sessions.
pub(crate) struct Registry {
    sessions: RwLock<Sessions>,
    profiles: RwLock<Arc<ProfileSet>>,
    next_token: AtomicU64,
    closing: AtomicBool,
    stats: Arc<ManagerStats>,
    /// Cluster mode: the lease that admits updates, and the persister they feed.
    fence: Option<Arc<Fence>>,
    /// Most sessions created here; sessions taken over or handed here are not refused.
    max_sessions: usize,
    /// The sessions' deadlines, and the clock they are counted in.
    timers: Arc<Timers>,
}

/// A random incarnation for a new session (the clock, should the OS have no randomness).
fn new_incarnation() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(bytes)
}

/// Refuses a session id longer than any session's: no session has it, and refusing it
/// keeps every error that names the id short.
fn check_length(session_id: &str) -> Result<(), ManagerError> {
    if session_id.len() > wfm_engine::id::MAX_ID_LEN {
        Id::parse("session id", session_id)?;
    }
    Ok(())
}

/// Locks a session entry.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
            fence: None,
            max_sessions: usize::MAX,
            timers: Arc::new(Timers::new()),
        }
    }

    /// The sessions' deadlines, for the task that wakes them.
    pub(crate) fn timers(&self) -> Arc<Timers> {
        Arc::clone(&self.timers)
    }

    /// Files `entry`'s next deadline with the timers.
    fn reschedule(&self, entry: &mut Entry) {
        let next = entry.session.next_deadline();
        self.timers
            .reschedule(entry.session.id(), entry.deadline, next);
        entry.deadline = next;
    }

    /// Applies the expiries due by `now_ms` in session `session_id` (woken by its timer)
    /// and sends their events, as an update's are sent.
    pub(crate) fn expire(&self, session_id: &Id, now_ms: u64) {
        let Some(shared) = self.lookup(session_id.as_str()) else {
            return;
        };
        let mut entry = lock(&shared);
        // Its deadline came out of the timers with the wake-up.
        entry.deadline = None;
        if let Some(fence) = &self.fence
            && fence.admit(&entry).is_err()
        {
            return;
        }
        let events = entry.session.expire(now_ms);
        if !events.is_empty() {
            entry.deliver(events, None, &self.stats);
            if let Some(fence) = &self.fence {
                fence.changed(&shared, &mut entry);
            }
        }
        self.reschedule(&mut entry);
    }

    /// Refuses to create more than `max_sessions` sessions here.
    pub(crate) fn with_max_sessions(mut self, max_sessions: usize) -> Self {
        self.max_sessions = max_sessions;
        self
    }

    /// Cluster mode: every update must be admitted by `fence`, which persists its changes.
    pub(crate) fn with_fence(mut self, fence: Arc<Fence>) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The entry of a live session, if this replica has it.
    pub(crate) fn lookup(&self, session_id: &str) -> Option<Arc<Mutex<Entry>>> {
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        sessions.get(session_id).cloned()
    }

    /// The profile a session named `name` runs under here: its own, or the default when
    /// this replica's profile file does not define it.
    pub(crate) fn profile(&self, name: &str) -> Arc<wfm_engine::Profile> {
        let profiles = self.profiles.read().unwrap_or_else(PoisonError::into_inner);
        match profiles.get(name) {
            Some(profile) => Arc::clone(profile),
            None => profiles
                .select("", "")
                .unwrap_or_else(|_| Arc::new(wfm_engine::Profile::default())),
        }
    }

    /// Adds a new session, or one restored from the cluster, unless it is here already;
    /// returns the entry in force. An added session's clock starts and its deadline is
    /// filed, so that a restored session's timers run on here.
    pub(crate) fn adopt(&self, entry: Entry) -> Arc<Mutex<Entry>> {
        let id = entry.session.id().clone();
        let added = {
            let mut sessions = self
                .sessions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            match sessions.entry(id) {
                MapEntry::Occupied(existing) => return existing.get().clone(),
                MapEntry::Vacant(vacant) => {
                    self.stats.sessions.inc();
                    vacant.insert(Arc::new(Mutex::new(entry))).clone()
                }
            }
        };
        {
            let mut entry = lock(&added);
            entry.session.set_clock(self.timers.now_ms());
            self.reschedule(&mut entry);
        }
        added
    }

    /// Removes `entry` if it is still the one in force, telling its binder `reason`.
    pub(crate) fn evict(&self, entry: &Arc<Mutex<Entry>>, reason: UnboundReason) {
        {
            let mut sessions = self
                .sessions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let id = lock(entry).session.id().clone();
            if sessions.get(&id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
                sessions.remove(&id);
                self.stats.sessions.dec();
            }
        }
        lock(entry).release_binder(reason, &self.stats);
    }

    /// Validates a new session without adding it.
    pub(crate) fn prepare(
        &self,
        who: &NewSession<'_>,
        state: impl FnOnce() -> Result<SessionState, ManagerError>,
    ) -> Result<Prepared, ManagerError> {
        let id = Id::parse("session id", who.session_id)?;
        Id::parse("agent id", who.agent_id)?;
        if !who.processor_id.is_empty() && !crate::commands::valid_processor_id(who.processor_id) {
            return Err(ManagerError::InvalidProcessorId);
        }
        let held = self
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if held >= self.max_sessions {
            self.stats.sessions_refused.inc();
            return Err(ManagerError::TooManySessions(self.max_sessions));
        }
        let profile = self
            .profiles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .select(who.profile, who.agent_group)
            .map_err(|unknown| ManagerError::UnknownProfile(unknown.0))?;
        let mut session = Session::new(id, profile, state()?)?.with_agent_group(who.agent_group)?;
        // Dated now, so that the record a cluster writes at creation carries the dates: a
        // session taken over before its first update keeps its after-call work's deadline.
        session.set_clock(self.timers.now_ms());
        Ok(Prepared {
            session,
            agent_id: who.agent_id.to_string(),
            incarnation: who.incarnation.unwrap_or_else(new_incarnation),
            processor_id: who.processor_id.to_string(),
        })
    }

    /// Adds a prepared session (owned as `owned` in cluster mode), or re-issues the one
    /// that won a race to be added.
    pub(crate) fn insert(
        &self,
        prepared: Prepared,
        owned: Option<Owned>,
    ) -> Result<Created, ManagerError> {
        let agent_id = prepared.agent_id.clone();
        let entry = Entry::new(
            prepared.session,
            prepared.agent_id,
            prepared.incarnation,
            prepared.processor_id,
            String::new(),
            owned,
            Instant::now(),
        );
        let entry = self.adopt(entry);
        Self::reissue(&entry, &agent_id)
    }

    /// Re-issues a session this replica has, for `agent_id`; `None` if it has not.
    pub(crate) fn existing(
        &self,
        session_id: &str,
        agent_id: &str,
    ) -> Option<Result<Created, ManagerError>> {
        self.lookup(session_id)
            .map(|entry| Self::reissue(&entry, agent_id))
    }

    fn entry(&self, session_id: &str) -> Result<Arc<Mutex<Entry>>, ManagerError> {
        check_length(session_id)?;
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
        Id::parse("session id", who.session_id)?;
        Id::parse("agent id", who.agent_id)?;
        if let Some(existing) = self.existing(who.session_id, who.agent_id) {
            return existing;
        }
        // Another CreateSession may win the race to insert; `insert` re-issues its session.
        self.insert(self.prepare(who, state)?, None)
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
            incarnation: entry.incarnation,
            view_state: entry.session.full_view(),
            next_sequence: entry.session.last_sequence() + 1,
        })
    }

    /// Applies one update and queues its events to the binder, tagged with `trace`.
    pub(crate) fn apply(
        &self,
        session_id: &str,
        sequence: u64,
        update: CtiUpdate,
        trace: Option<&Trace>,
    ) -> Result<Ack, ManagerError> {
        let shared = self.entry(session_id)?;
        let mut entry = lock(&shared);
        if let Some(fence) = &self.fence {
            fence.admit(&entry)?;
        }
        let now = self.timers.now_ms();
        let (duplicate, events) = match entry.session.apply_at(sequence, update, now)? {
            Applied::Duplicate => (true, 0),
            Applied::Changed(events) => {
                let count = events.len();
                entry.deliver(events, trace, &self.stats);
                if let Some(fence) = &self.fence {
                    fence.changed(&shared, &mut entry);
                }
                (false, count)
            }
        };
        self.reschedule(&mut entry);
        Ok(Ack {
            duplicate,
            view_version: entry.session.view_version(),
            events,
        })
    }

    /// Ends a session and tells its binder; returns its entry, whose record cluster mode
    /// then deletes.
    pub(crate) fn end(&self, session_id: &str) -> Result<Arc<Mutex<Entry>>, ManagerError> {
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        check_length(session_id)?;
        let unknown = || ManagerError::UnknownSession(session_id.to_string());
        let found = sessions.get(session_id).ok_or_else(unknown)?;
        if let Some(fence) = &self.fence {
            fence.admit(&lock(found))?;
        }
        let removed = sessions.remove(session_id).ok_or_else(unknown)?;
        drop(sessions);
        self.stats.sessions.dec();
        lock(&removed).release_binder(UnboundReason::SessionEnded, &self.stats);
        Ok(removed)
    }

    /// A copy of the tracked state and view of a session.
    pub(crate) fn get(&self, session_id: &str) -> Result<SessionView, ManagerError> {
        let entry = self.entry(session_id)?;
        let entry = lock(&entry);
        Ok(SessionView {
            session_id: entry.session.id().clone(),
            agent_id: entry.agent_id.clone(),
            profile: entry.session.profile().name().to_string(),
            state: entry.session.state().clone(),
            last_sequence: entry.session.last_sequence(),
            view_version: entry.session.view_version(),
            view_state: entry.session.full_view(),
            bound: entry.binder.is_some(),
        })
    }

    /// Binds `sink` to the session named by verified `claims`: the bind outcome (when
    /// `announce`, for `Attach`) and the full view state are queued at once, under the
    /// session lock, so no change can slip between.
    pub(crate) fn bind(
        &self,
        claims: &Claims,
        takeover: bool,
        binder_id: &str,
        sink: Sink,
        announce: bool,
    ) -> Result<Bound, ManagerError> {
        let shared = self.entry(&claims.session_id)?;
        let mut entry = lock(&shared);
        if let Some(fence) = &self.fence {
            fence.admit(&entry)?;
        }
        // Checked under the session lock: `shutdown` takes every lock after raising the flag,
        // so a binding either sees the flag or is released by `shutdown`.
        if self.closing.load(Ordering::SeqCst) {
            return Err(ManagerError::ShuttingDown);
        }
        if entry.agent_id != claims.agent_id {
            return Err(ManagerError::ReferenceForOtherSession);
        }
        if entry.incarnation != claims.incarnation {
            return Err(ManagerError::ReferenceForEndedSession);
        }
        if let Some(reservation) = entry.reservation.take() {
            let kept = reservation.until > Instant::now() && reservation.binder_id != binder_id;
            if kept && !takeover {
                entry.reservation = Some(reservation);
                return Err(ManagerError::AlreadyBound);
            }
        }
        if let Some(old) = entry.binder.take() {
            if !takeover {
                entry.binder = Some(old);
                return Err(ManagerError::AlreadyBound);
            }
            old.sink
                .unbound(entry.session.id(), UnboundReason::TakenOver);
        } else {
            self.stats.bindings.inc();
        }
        let session_id = entry.session.id().clone();
        if announce {
            sink.tx.control(Outgoing::Bound {
                binding_id: sink.binding_id,
                session_id: session_id.clone(),
            });
        }
        entry.send_view(&sink, &self.stats);
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        entry.binder = Some(Binder {
            token,
            sink,
            binder_id: binder_id.to_string(),
            stale: None,
        });
        if let Some(fence) = &self.fence {
            fence.changed(&shared, &mut entry);
        }
        Ok(Bound { session_id, token })
    }

    /// Resends a stale binder the final events of the targets it missed going, then its
    /// entire view state; nothing when `bound` is no longer the binder or is not stale.
    pub(crate) fn resync(&self, bound: &Bound) {
        let Ok(entry) = self.entry(bound.session_id.as_str()) else {
            return;
        };
        let mut entry = lock(&entry);
        let Entry {
            session, binder, ..
        } = &mut *entry;
        let Some(binder) = binder.as_mut().filter(|b| b.token == bound.token) else {
            return;
        };
        let Some(seen) = binder.stale.take() else {
            return;
        };
        self.stats.resyncs.inc();
        let view = session.full_view();
        let gone: Vec<StateEvent> = seen
            .into_iter()
            .filter(|old| !view.iter().any(|e| e.target == old.target))
            .collect();
        self.stats
            .events_emitted
            .add((gone.len() + view.len()) as u64);
        for event in gone.into_iter().chain(view) {
            binder.sink.tx.resync_state(binder.sink.binding_id, event);
        }
    }

    /// Checks a command of `bound`'s binder against the session's current view state, and
    /// names the Interaction Processor that is to carry it out (empty for none).
    pub(crate) fn check_command(
        &self,
        bound: &Bound,
        target: &str,
        capability: &str,
    ) -> Result<String, CommandFailure> {
        let shared = self
            .entry(bound.session_id.as_str())
            .map_err(|_| CommandFailure::NotBound)?;
        let entry = lock(&shared);
        if entry.binder.as_ref().is_none_or(|b| b.token != bound.token) {
            return Err(CommandFailure::NotBound);
        }
        entry.session.check_command(target, capability)?;
        Ok(entry.processor_id.clone())
    }

    /// Whether `bound` is still its session's binder (not ended, taken over or released).
    pub(crate) fn is_current(&self, bound: &Bound) -> bool {
        self.entry(bound.session_id.as_str()).is_ok_and(|shared| {
            lock(&shared)
                .binder
                .as_ref()
                .is_some_and(|b| b.token == bound.token)
        })
    }

    /// Releases `bound` if it is still the session's binder; `notify` tells the binder why.
    pub(crate) fn release(&self, bound: &Bound, notify: Option<UnboundReason>) {
        let Ok(shared) = self.entry(bound.session_id.as_str()) else {
            return;
        };
        let mut entry = lock(&shared);
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
        if let Some(fence) = &self.fence {
            fence.changed(&shared, &mut entry);
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
            entry.deliver(events, None, &self.stats);
            self.reschedule(&mut entry);
        }
    }

    /// Every live session's entry.
    pub(crate) fn entries(&self) -> Vec<Arc<Mutex<Entry>>> {
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        sessions.values().cloned().collect()
    }

    /// Refuses new bindings and unbinds every binder with "shutting down", which drops the
    /// last senders of every binding stream so that the streams can end.
    pub(crate) fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for entry in self.entries() {
            lock(&entry).release_binder(UnboundReason::ShuttingDown, &self.stats);
        }
    }
}

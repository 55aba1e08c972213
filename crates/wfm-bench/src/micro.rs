//! Micro workloads shared by the criterion benches (`cargo bench -p wfm-bench`), the
//! harness's own timing of them, and the callgrind instruction counts: applying one update
//! to sessions of 1, 3 and 10 interactions (recompute, diff and event generation included),
//! a snapshot, and encoding one `state.updated` event of a 30-capability target to the
//! MediaBar JSON and to protobuf.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use wfm_engine::{
    AgentState, Applied, Capability, Channel, CtiUpdate, Direction, Id, Interaction,
    InteractionChange, InteractionState, Media, Profile, Session, SessionState, UpdateError,
};
use wfm_proto::v1 as pb;

use crate::stats::Spread;

/// A session shape the engine benchmarks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A voice channel with one connected call; the update holds and retrieves it.
    One,
    /// The typical session: a voice channel with a held call and its connected consult leg,
    /// and a chat channel with an active chat; the update swaps the consult leg between
    /// connected and held, which changes the view of both calls.
    Three,
    /// The three of [`Shape::Three`] plus seven more active chats.
    Ten,
}

impl Shape {
    /// Every shape, smallest first.
    pub const ALL: [Shape; 3] = [Shape::One, Shape::Three, Shape::Ten];

    /// Interactions in the session.
    pub fn interactions(self) -> usize {
        match self {
            Shape::One => 1,
            Shape::Three => 3,
            Shape::Ten => 10,
        }
    }

    /// The session state.
    pub fn state(self) -> Result<SessionState, UpdateError> {
        use InteractionState::{Active, Connected, Held};
        let voice = channel("voice", Media::Voice)?;
        if self == Shape::One {
            return Ok(SessionState {
                channels: vec![voice],
                interactions: vec![interaction("c1", "voice", Connected)?],
            });
        }
        let mut consult_leg = interaction("c2", "voice", Connected)?;
        consult_leg.direction = Direction::Consult;
        consult_leg.consult_of = Some(Id::parse("interaction id", "c1")?);
        let mut interactions = vec![
            interaction("c1", "voice", Held)?,
            consult_leg,
            interaction("x", "chat", Active)?,
        ];
        if self == Shape::Ten {
            for n in 1..=7 {
                interactions.push(interaction(&format!("x{n}"), "chat", Active)?);
            }
        }
        Ok(SessionState {
            channels: vec![voice, channel("chat", Media::Chat)?],
            interactions,
        })
    }

    /// A fresh session of this shape under the default profile.
    pub fn session(self) -> Result<Session, UpdateError> {
        Session::new(
            Id::parse("session id", "s1")?,
            Arc::new(Profile::default()),
            self.state()?,
        )
    }

    /// The `n`th update of the toggle this shape benchmarks (alternating, so that every
    /// update changes the view).
    pub fn update(self, n: u64) -> Result<CtiUpdate, UpdateError> {
        let leg = if self == Shape::One { "c1" } else { "c2" };
        let mut change = InteractionChange::new(Id::parse("interaction id", leg)?);
        change.state = Some(if n.is_multiple_of(2) {
            InteractionState::Held
        } else {
            InteractionState::Connected
        });
        Ok(CtiUpdate::InteractionChanged(change))
    }

    /// The `n`th snapshot: the shape's state with the toggled leg held or connected in turn.
    pub fn snapshot(self, n: u64) -> Result<CtiUpdate, UpdateError> {
        let mut snapshot = self.state()?;
        let index = if self == Shape::One { 0 } else { 1 };
        if n.is_multiple_of(2)
            && let Some(leg) = snapshot.interactions.get_mut(index)
        {
            leg.state = InteractionState::Held;
        }
        Ok(CtiUpdate::Snapshot(snapshot))
    }

    /// `count` updates from the `first`th on.
    pub fn updates(self, first: u64, count: u64) -> Result<Vec<CtiUpdate>, UpdateError> {
        (first..first + count).map(|n| self.update(n)).collect()
    }

    /// `count` snapshots from the `first`th on.
    pub fn snapshots(self, first: u64, count: u64) -> Result<Vec<CtiUpdate>, UpdateError> {
        (first..first + count).map(|n| self.snapshot(n)).collect()
    }
}

/// A busy channel of `media`.
fn channel(id: &str, media: Media) -> Result<Channel, UpdateError> {
    Ok(Channel {
        id: Id::parse("channel id", id)?,
        media,
        state: AgentState::Busy,
        reason: String::new(),
        pending: None,
        pending_reason: String::new(),
        capacity: 0,
        wrap_up_extensions: 0,
    })
}

/// An inbound interaction on `channel` in `state`.
fn interaction(
    id: &str,
    channel: &str,
    state: InteractionState,
) -> Result<Interaction, UpdateError> {
    Ok(Interaction::new(
        Id::parse("interaction id", id)?,
        Id::parse("channel id", channel)?,
        Direction::Inbound,
        state,
    ))
}

/// Applies `updates` in order as the next numbers of `session`; returns the events emitted.
/// Not inlined, so that callgrind can count exactly this function (`--toggle-collect`).
#[inline(never)]
pub fn wfm_bench_apply_all(session: &mut Session, updates: Vec<CtiUpdate>) -> usize {
    let mut events = 0;
    for update in updates {
        let sequence = session.last_sequence() + 1;
        if let Ok(Applied::Changed(changed)) = session.apply(sequence, black_box(update)) {
            events += changed.len();
        }
    }
    events
}

/// A `state.updated` event as the gateway receives it on an `Attach` stream, with the
/// encoder of the stream's catalogue.
pub struct StateEvent30 {
    /// The event: 30 capabilities defined, a third of them enabled.
    pub state: pb::CompactState,
    encoder: wfm_gateway::StateEventEncoder,
}

/// A `state.updated` event of an interaction target with 30 capabilities (the 28 of the
/// catalogue and two more, as a newer manager's catalogue could have).
pub fn state_event_30() -> StateEvent30 {
    let mut names: Vec<String> = Capability::ALL
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    names.extend(["interaction.custom.survey", "interaction.custom.escalate"].map(String::from));
    let defined = (1u64 << names.len()) - 1;
    let enabled = (0..names.len())
        .filter(|i| i % 3 == 0)
        .fold(0u64, |bits, i| bits | 1 << i);
    let catalogue = pb::Catalogue {
        wire_version: wfm_proto::ATTACH_WIRE_VERSION,
        names,
    };
    let context = [
        ("media", "voice"),
        ("state", "connected"),
        ("direction", "inbound"),
    ]
    .map(|(key, value)| pb::ContextEntry {
        key: key.to_string(),
        value: value.to_string(),
    });
    StateEvent30 {
        state: pb::CompactState {
            target: "load-4242-1234.voice.c1".into(),
            context: context.into(),
            defined,
            enabled,
            ..Default::default()
        },
        // A catalogue of 30 distinct, short names is always accepted.
        encoder: wfm_gateway::StateEventEncoder::new("load-4242-1234", catalogue)
            .unwrap_or_else(|| unreachable!("the benchmark catalogue is valid")),
    }
}

/// The event encoded the way the manager sends it to the gateway: an `AttachResponse`.
pub fn encode_protobuf(event: &StateEvent30) -> Vec<u8> {
    pb::AttachResponse {
        binding_id: 7,
        kind: Some(pb::attach_response::Kind::State(event.state.clone())),
    }
    .encode_to_vec()
}

/// Encodes the event into `buffer` (cleared first) as the manager does, without the clone
/// [`encode_protobuf`] needs to build the envelope: the message is borrowed, encoded as
/// field 6 of `AttachResponse` after the binding id.
pub fn encode_protobuf_into(event: &StateEvent30, buffer: &mut Vec<u8>) {
    buffer.clear();
    prost::encoding::uint64::encode(1, &7, buffer);
    prost::encoding::message::encode(6, &event.state, buffer);
}

/// The MediaBar JSON of the event, by the gateway's own serializer.
pub fn encode_json(event: &StateEvent30) -> String {
    event.encoder.encode(&event.state)
}

/// Nanoseconds per operation: `run(count)` does `count` operations and returns how long
/// the part worth timing took. After calibrating `count` so that a batch lasts about
/// `batch_time`, runs `batches` batches: median and range.
pub fn time_per_op(
    batches: usize,
    batch_time: Duration,
    mut run: impl FnMut(u64) -> Duration,
) -> Spread {
    // Calibrate: double the count until a batch lasts a tenth of the target.
    let mut count: u64 = 16;
    loop {
        let took = run(count);
        if took >= batch_time / 10 || count >= 1 << 30 {
            let scale = batch_time.as_secs_f64() / took.as_secs_f64().max(1e-9);
            count = ((count as f64 * scale) as u64).max(1);
            break;
        }
        count *= 2;
    }
    let samples: Vec<f64> = (0..batches)
        .map(|_| run(count).as_nanos() as f64 / count as f64)
        .collect();
    Spread::of(&samples)
}

/// Times `op` alone, `count` times.
pub fn timed<T>(count: u64, mut op: impl FnMut() -> T) -> Duration {
    let started = Instant::now();
    for _ in 0..count {
        black_box(op());
    }
    started.elapsed()
}

/// ns per update applied to a session of `shape`; building the updates is not timed.
pub fn time_apply(shape: Shape, batches: usize, batch_time: Duration) -> Result<Spread, String> {
    let mut session = shape.session().map_err(|e| e.to_string())?;
    let mut n = 0u64;
    Ok(time_per_op(batches, batch_time, |count| {
        let updates = shape.updates(n, count).unwrap_or_default();
        n += count;
        let started = Instant::now();
        black_box(wfm_bench_apply_all(&mut session, updates));
        started.elapsed()
    }))
}

/// ns per snapshot applied to a session of `shape`; building the snapshots is not timed.
pub fn time_snapshot(shape: Shape, batches: usize, batch_time: Duration) -> Result<Spread, String> {
    let mut session = shape.session().map_err(|e| e.to_string())?;
    let mut n = 0u64;
    Ok(time_per_op(batches, batch_time, |count| {
        let updates = shape.snapshots(n, count).unwrap_or_default();
        n += count;
        let started = Instant::now();
        black_box(wfm_bench_apply_all(&mut session, updates));
        started.elapsed()
    }))
}

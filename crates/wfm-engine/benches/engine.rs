//! Engine benchmarks: applying one update to a typical session (a voice and a chat channel,
//! three interactions) including the view-state recomputation and diff, the full view a newly
//! bound client gets, and a snapshot.
//!
//! Run with `cargo bench -p wfm-engine --bench engine`. The goal for `apply` is under 1 µs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use wfm_engine::testkit::{change, session, to_state, two_channel_state};
use wfm_engine::{Applied, CtiUpdate, InteractionChange, InteractionState, Session};

/// Applies `update` as the session's next number and returns how many events it produced;
/// the count is asserted by the callers, so that a benchmark cannot silently measure a
/// refusal or a duplicate.
fn apply(s: &mut Session, update: CtiUpdate) -> usize {
    match s.apply(s.last_sequence() + 1, update) {
        Ok(Applied::Changed(events)) => events.len(),
        other => panic!("update not applied: {other:?}"),
    }
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");

    // The consult leg alternates between connected and held; each swap changes the view of
    // both legs (transfer, conference, alternate and reconnect come and go).
    let mut s = session(two_channel_state());
    let mut hold = true;
    group.bench_function("toggle_hold_2_events", |b| {
        b.iter_batched(
            || {
                let next = if hold {
                    InteractionState::Held
                } else {
                    InteractionState::Connected
                };
                hold = !hold;
                to_state("c2", next)
            },
            |update| {
                let events = apply(&mut s, black_box(update));
                assert_eq!(events, 2);
            },
            BatchSize::SmallInput,
        );
    });

    // Muting flips mute/unmute on one target: one event.
    let mut s = session(two_channel_state());
    let mut muted = false;
    group.bench_function("toggle_mute_1_event", |b| {
        b.iter_batched(
            || {
                muted = !muted;
                CtiUpdate::InteractionChanged(InteractionChange {
                    muted: Some(muted),
                    ..change("c2")
                })
            },
            |update| {
                let events = apply(&mut s, black_box(update));
                assert_eq!(events, 1);
            },
            BatchSize::SmallInput,
        );
    });

    // Attached data on the chat: recorded, recomputed, and nothing to emit.
    let mut s = session(two_channel_state());
    let mut n = 0u64;
    group.bench_function("data_no_visible_effect", |b| {
        b.iter_batched(
            || {
                n += 1;
                CtiUpdate::InteractionChanged(InteractionChange {
                    data: vec![("k".to_string(), (n % 2).to_string())],
                    ..change("x")
                })
            },
            |update| {
                let events = apply(&mut s, black_box(update));
                assert_eq!(events, 0);
            },
            BatchSize::SmallInput,
        );
    });

    // A snapshot replacing the state with one whose consult leg is held or connected in turn.
    let mut s = session(two_channel_state());
    let mut hold = true;
    group.bench_function("snapshot", |b| {
        b.iter_batched(
            || {
                let mut snapshot = two_channel_state();
                if hold {
                    snapshot.interactions[1].state = InteractionState::Held;
                }
                hold = !hold;
                CtiUpdate::Snapshot(snapshot)
            },
            |update| {
                let events = apply(&mut s, black_box(update));
                assert_eq!(events, 2);
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn bench_full_view(c: &mut Criterion) {
    let s = session(two_channel_state());
    c.bench_function("full_view", |b| {
        b.iter(|| {
            let events = black_box(&s).full_view();
            assert_eq!(events.len(), 6);
            events
        });
    });
}

// `criterion_group!` generates a `pub fn` that cannot carry a doc comment; a private module
// keeps it out of the lints meant for real public items.
#[allow(unreachable_pub)]
mod group {
    use super::*;

    criterion_group!(benches, bench_apply, bench_full_view);
}

criterion_main!(group::benches);

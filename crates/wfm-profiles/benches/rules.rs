//! Custom-rule cost: recomputing the view state of a typical session (a voice and a chat
//! channel, three interactions) under the default profile and under a profile with ten CEL
//! rules, all on capabilities that the session has enabled so every rule is evaluated.
//!
//! Run with `cargo bench -p wfm-profiles --bench rules`. The goal with ten rules is under 2 µs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use wfm_engine::testkit::{session_with, to_state, two_channel_state};
use wfm_engine::{Applied, InteractionState, Profile, ViewState};
use wfm_profiles::ProfileSet;

const TEN_RULES: &str = r#"
[profiles.ten]
rules = [
  { name = "r1", capability = "interaction.singleStepTransfer", when = 'interaction.data.tier == "vip"' },
  { name = "r2", capability = "interaction.release", when = 'interaction.data.queue in ["fraud", "legal"]' },
  { name = "r3", capability = "interaction.updateData", when = 'has(interaction.data.locked)' },
  { name = "r4", capability = "interaction.completeTransfer", when = 'interaction.parties > 4 && !interaction.muted' },
  { name = "r5", capability = "interaction.alternate", when = 'interaction.direction == "internal"' },
  { name = "r6", capability = "interaction.reconnect", when = 'interaction.state == "failed" || interaction.disposition != ""' },
  { name = "r7", capability = "interaction.hold", when = 'interaction.data.segment.startsWith("gov")' },
  { name = "r8", capability = "channel.notReady", when = 'channel.reason == "training"' },
  { name = "r9", capability = "channel.ready", when = 'channel.pending == "not_ready" && size(channel.pending_reason) > 0' },
  { name = "r10", capability = "interaction.completeConference", when = 'session.interactions > 8' },
]
"#;

fn profiles() -> [(&'static str, Profile); 2] {
    let set = ProfileSet::parse("bench.toml", TEN_RULES).unwrap();
    let ten = (**set.get("ten").unwrap()).clone();
    assert_eq!(ten.rules().len(), 10);
    [("default", Profile::default()), ("ten_rules", ten)]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("recompute");
    for (name, profile) in profiles() {
        let state = two_channel_state();
        group.bench_function(name, |b| {
            b.iter(|| ViewState::compute(black_box(&state), black_box(&profile)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("apply_toggle_hold");
    for (name, profile) in profiles() {
        let mut s = session_with(profile, two_channel_state());
        let mut hold = true;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    hold = !hold;
                    to_state(
                        "c2",
                        if hold {
                            InteractionState::Connected
                        } else {
                            InteractionState::Held
                        },
                    )
                },
                |update| match s.apply(s.last_sequence() + 1, black_box(update)) {
                    Ok(Applied::Changed(events)) => assert_eq!(events.len(), 2),
                    other => panic!("not applied: {other:?}"),
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

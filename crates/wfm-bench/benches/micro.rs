//! Criterion micro benches: engine apply for sessions of 1, 3 and 10 interactions and a
//! snapshot; one `state.updated` event of a 30-capability target to JSON and to protobuf.
//!
//! `cargo bench -p wfm-bench --bench micro`. Goals: apply under 1 µs, JSON under 1 µs.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use wfm_bench::micro::{self, Shape};

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    for shape in Shape::ALL {
        let Ok(mut session) = shape.session() else {
            panic!("the {shape:?} session is refused");
        };
        let mut n = 0u64;
        group.bench_function(format!("{}_interactions", shape.interactions()), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    shape.updates(n, 1).unwrap_or_default()
                },
                |updates| micro::wfm_bench_apply_all(&mut session, updates),
                BatchSize::SmallInput,
            );
        });
    }
    let Ok(mut session) = Shape::Three.session() else {
        panic!("the typical session is refused");
    };
    let mut n = 0u64;
    group.bench_function("snapshot_3_interactions", |b| {
        b.iter_batched(
            || {
                n += 1;
                Shape::Three.snapshots(n, 1).unwrap_or_default()
            },
            |updates| micro::wfm_bench_apply_all(&mut session, updates),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let event = micro::state_event_30();
    let mut group = c.benchmark_group("encode_30_capabilities");
    group.bench_function("json", |b| b.iter(|| micro::encode_json(black_box(&event))));
    let mut buffer = Vec::with_capacity(2048);
    group.bench_function("protobuf", |b| {
        b.iter(|| {
            micro::encode_protobuf_into(black_box(&event), &mut buffer);
            buffer.len()
        })
    });
    group.finish();
}

// `criterion_group!` generates a `pub fn` that cannot carry a doc comment.
#[allow(unreachable_pub, missing_docs)]
mod group {
    use super::*;

    criterion_group!(benches, bench_apply, bench_encode);
}

criterion_main!(group::benches);

//! Task groups against what Rust users write without them: spawn + completion per task.
//!
//! `cargo bench -p ctxkit --bench groups [-- FILTER]`. Each benchmark spawns a batch of
//! trivial tasks and waits for them all; criterion reports the time per batch, and the
//! figures in BENCHMARKS.md divide it by the batch size.
//!
//! - `tokio/*`: `ctxkit::tokio::Group` (new + spawn + `wait`) against tokio's `JoinSet`
//!   (spawn + `join_next` until empty), on the same runtime, with the same trivial future
//!   (it returns `Ok(())` at once). On a current-thread runtime and on a two-worker one.
//! - `threads/*`: `ctxkit::Group` (new + spawn + `wait`) against `std::thread::scope`
//!   (spawn + join), with a trivial closure: both are dominated by starting a thread.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ctxkit::Context;
use tokio::task::JoinSet;

/// Tasks per batch for tokio, threads per batch for threads.
const TOKIO_BATCH: usize = 1_000;
const THREAD_BATCH: usize = 16;

#[derive(Debug)]
struct Never;

fn tokio_groups(c: &mut Criterion) {
    let runtimes = [
        (
            "current_thread",
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        ),
        (
            "multi_thread_2",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("tokio");
    group.throughput(Throughput::Elements(TOKIO_BATCH as u64));
    for (flavor, rt) in &runtimes {
        group.bench_function(BenchmarkId::new("ctxkit_group", flavor), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let (g, _ctx) = ctxkit::tokio::Group::<Never>::new(&Context::background());
                    for _ in 0..TOKIO_BATCH {
                        g.spawn(async { Ok(()) });
                    }
                    black_box(g.wait().await).unwrap();
                })
            })
        });
        group.bench_function(BenchmarkId::new("joinset", flavor), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut set = JoinSet::new();
                    for _ in 0..TOKIO_BATCH {
                        set.spawn(async { Ok::<(), Never>(()) });
                    }
                    while let Some(done) = set.join_next().await {
                        black_box(done.unwrap()).unwrap();
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("ctxkit_group_values", flavor), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let (g, _ctx) = ctxkit::tokio::Group::<Never>::new(&Context::background());
                    let handles: Vec<_> = (0..TOKIO_BATCH)
                        .map(|i| g.spawn_value(async move { Ok(i) }))
                        .collect();
                    for h in handles {
                        black_box(h.await.unwrap());
                    }
                    g.wait().await.unwrap();
                })
            })
        });
    }
    group.finish();
}

fn thread_groups(c: &mut Criterion) {
    let mut group = c.benchmark_group("threads");
    group.throughput(Throughput::Elements(THREAD_BATCH as u64));
    group.bench_function("ctxkit_group", |b| {
        b.iter(|| {
            let (g, _ctx) = ctxkit::Group::<Never>::new(&Context::background());
            for i in 0..THREAD_BATCH {
                g.spawn(move || {
                    black_box(i);
                    Ok(())
                });
            }
            g.wait().unwrap();
        })
    });
    group.bench_function("std_thread_scope", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..THREAD_BATCH)
                    .map(|i| {
                        s.spawn(move || {
                            black_box(i);
                            Ok::<(), Never>(())
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().unwrap().unwrap();
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, tokio_groups, thread_groups);
criterion_main!(benches);

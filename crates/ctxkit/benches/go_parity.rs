//! Go's own context benchmarks (src/context/benchmark_test.go of the Go toolchain), re-made
//! for ctxkit with the same IDs and the same work per op, plus the same shapes on
//! tokio-util's `CancellationToken` (IDs prefixed `tokio_util/`) and a few ctxkit-only
//! operations (prefixed `ctxkit/`).
//!
//! `cargo bench -p ctxkit --bench go_parity [-- FILTER]`. `benches/compare.sh` at the
//! workspace root sets the results beside Go's.
//!
//! How Go's shapes map:
//! - `b.RunParallel` runs the op on GOMAXPROCS goroutines (2 on the 2-core machines these
//!   figures are taken on) and reports wall time / total ops. [`run_parallel`] does the
//!   same with 2 threads started before the clock starts.
//! - Go's `x /= x + 1` spin in CommonParentCancel compiles to an empty loop (see [`spin`]).
//! - Go's `select { case <-ctx.Done(): default: }` is a non-blocking check of the done
//!   channel: here [`Done::err`] on a `Done` made once.
//! - Go's `ctx.Value(-1)` misses after `depth` layers of distinct keys: here `depth`
//!   distinct `static` keys (the elements of one static array have distinct addresses, and
//!   a key's identity is its address) and a lookup of a key that was never set.
//! - Go's discarded contexts are collected by its GC, whose cost is spread over the ops;
//!   here what an op builds is dropped inside the op, so the freeing is measured too.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ctxkit::{CancelHandle, Context, Key};
use tokio_util::sync::CancellationToken;

/// GOMAXPROCS of the machine the Go figures are taken on.
const THREADS: usize = 2;
const HOUR: Duration = Duration::from_secs(3600);

/// Runs `body(n)` on [`THREADS`] threads, splitting `iters` ops between them, and returns
/// the wall time from the moment all threads are ready to the moment the last one finishes
/// (Go's `RunParallel`: ns/op is wall time over the ops of all goroutines).
fn run_parallel<F: Fn(u64) + Sync>(iters: u64, body: F) -> Duration {
    let barrier = Barrier::new(THREADS + 1);
    let start = std::thread::scope(|s| {
        for t in 0..THREADS as u64 {
            let n = iters / THREADS as u64 + u64::from(t < iters % THREADS as u64);
            let (barrier, body) = (&barrier, &body);
            s.spawn(move || {
                barrier.wait();
                body(n);
            });
        }
        barrier.wait();
        Instant::now()
    });
    start.elapsed()
}

/// Go's `for i := 0; i < 100; i++ { x /= x + 1 }`, as Go 1.23 compiles it: `x` starts at 0,
/// Go's prove pass shows it stays 0 and deletes the division, and what runs is 100 empty
/// iterations (`go tool objdump` of the test binary shows only INCQ/CMPQ/JL). Real 64-bit
/// divisions would cost about 8x Go's spin on this machine and bury the context work, so
/// the same work here is 100 iterations the compiler cannot delete.
#[inline(always)]
fn spin() {
    for i in 0..100u32 {
        black_box(i);
    }
}

fn noop_cx() -> TaskContext<'static> {
    TaskContext::from_waker(futures::task::noop_waker_ref())
}

// ---------------------------------------------------------------------------------------
// CommonParentCancel
// ---------------------------------------------------------------------------------------

static KEY: Key<&str> = Key::new("key");

fn common_parent_cancel(c: &mut Criterion) {
    // root := WithValue(Background(), "key", "value"); shared, sharedcancel := WithCancel(root)
    let root = Context::background().with_value(&KEY, "value");
    let (shared, shared_cancel) = root.with_cancel();
    c.bench_function("CommonParentCancel", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    let (ctx, cancel) = shared.with_cancel();
                    if ctx.value(&KEY) != Some(&"value") {
                        panic!("should not be reached");
                    }
                    spin();
                    cancel.cancel();
                    spin();
                }
            })
        })
    });
    // The floor of the op: the two spins alone, on the same two threads (benches/go has
    // the same benchmark for Go).
    c.bench_function("ctxkit/CommonParentCancelSpinOnly", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    spin();
                    spin();
                }
            })
        })
    });
    shared_cancel.cancel();

    // The floor of any design in which a child registers with a parent both threads share
    // and leaves it again: the spin plus two read-modify-writes of one shared cache line
    // (`two_rmw`), or plus two lock/unlock pairs of one shared mutex (`two_locks`: what Go,
    // tokio-util and ctxkit do). No context work at all.
    let line = std::sync::atomic::AtomicU64::new(0);
    c.bench_function("floor/CommonParentCancel/two_rmw", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    line.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    spin();
                    line.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                    spin();
                }
            })
        })
    });
    let mutex = std::sync::Mutex::new(0u64);
    c.bench_function("floor/CommonParentCancel/two_locks", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    *mutex.lock().unwrap() += 1;
                    spin();
                    *mutex.lock().unwrap() -= 1;
                    spin();
                }
            })
        })
    });

    lanes_floor(c);

    // tokio-util has no values: the same op without the lookup.
    let shared = CancellationToken::new();
    c.bench_function("tokio_util/CommonParentCancel", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    let token = shared.child_token();
                    spin();
                    token.cancel();
                    spin();
                }
            })
        })
    });
    shared.cancel();
}

/// The floor of `CommonParentCancel` for a parent with one child list per thread, with no
/// context: what any design has to do when a child holds its parent by a reference count (as
/// every context of a Rust library without a collector does) and registers where the
/// parent's cancellation finds it, with the shared lock of the parent's list taken out. Per
/// op: the parent's count up (the child holds its parent), one load of the parent's state
/// (a child of a done parent is born done), a child of 32 bytes allocated (a state and
/// links, less than any context's node), a weak reference to it put into the calling
/// thread's own list under that list's lock (its line is the thread's alone: the lists are
/// a cache line apart) and taken out again when it is cancelled, the child freed and the
/// parent's count down. No value lookup.
fn lanes_floor(c: &mut Criterion) {
    #[repr(align(128))]
    struct Lane(Mutex<Vec<Option<Weak<[u64; 4]>>>>);
    struct Parent {
        done: std::sync::atomic::AtomicBool,
        lanes: [Lane; THREADS],
    }
    static NEXT_LANE: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static LANE: usize = NEXT_LANE.fetch_add(1, Ordering::Relaxed) % THREADS;
    }
    let parent = Arc::new(Parent {
        done: std::sync::atomic::AtomicBool::new(false),
        // Room for 64 entries each: the two lists' buffers, allocated one after the other,
        // then never share a cache line where they are used (their first entries). ctxkit's
        // lanes do not either: each keeps its first child inside the lane, on its own line.
        lanes: std::array::from_fn(|_| Lane(Mutex::new(Vec::with_capacity(64)))),
    });
    c.bench_function("floor/CommonParentCancel/lanes", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                let lane = LANE.with(|l| *l);
                for _ in 0..n {
                    let held = Arc::clone(&parent);
                    if held.done.load(Ordering::Acquire) {
                        panic!("should not be reached");
                    }
                    let child = Arc::new([0u64; 4]);
                    let list = &held.lanes[lane].0;
                    let slot = {
                        let mut list = list.lock().unwrap();
                        list.push(Some(Arc::downgrade(&child)));
                        list.len() - 1
                    };
                    spin();
                    let weak = list.lock().unwrap().swap_remove(slot);
                    drop((weak, child, held));
                    spin();
                }
            })
        })
    });
}

// ---------------------------------------------------------------------------------------
// WithTimeout/concurrency=N
// ---------------------------------------------------------------------------------------

fn with_timeout(c: &mut Criterion) {
    let mut g = c.benchmark_group("WithTimeout");
    for concurrency in [40usize, 4000, 400_000] {
        // N live contexts with a 1h timeout, made on THREADS threads as Go does; made when
        // the benchmark first runs (not at all when a filter skips it).
        let live: std::cell::OnceCell<Vec<Vec<CancelHandle>>> = std::cell::OnceCell::new();
        let make_live = || {
            let per_thread = concurrency / THREADS;
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..THREADS)
                    .map(|_| {
                        s.spawn(move || {
                            (0..per_thread)
                                .map(|_| Context::background().with_timeout(HOUR).1)
                                .collect()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            })
        };
        g.bench_function(format!("concurrency={concurrency}"), |b| {
            live.get_or_init(make_live);
            b.iter_custom(|iters| {
                run_parallel(iters, |n| {
                    let root = Context::background();
                    for _ in 0..n {
                        let wcf: [CancelHandle; 10] =
                            std::array::from_fn(|_| root.with_timeout(HOUR).1);
                        for f in &wcf {
                            f.cancel();
                        }
                    }
                })
            })
        });
        for f in live.get().into_iter().flatten().flatten() {
            f.cancel();
        }
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// CancelTree/depth=D/Root=R
// ---------------------------------------------------------------------------------------

/// Go's buildContextTree: a chain of `depth` WithCancel children. The leaf is returned so
/// that the chain stays alive until the caller is done with the op: a ctxkit parent holds
/// its children weakly, and Go's cancel() walks the chain, so ours must too.
fn build_context_tree(root: &Context, depth: usize) -> Context {
    let mut ctx = root.clone();
    for _ in 0..depth {
        ctx = ctx.with_cancel().0;
    }
    ctx
}

fn build_token_tree(root: &CancellationToken, depth: usize) -> CancellationToken {
    let mut token = root.clone();
    for _ in 0..depth {
        token = token.child_token();
    }
    token
}

/// Each shape on ctxkit and at once the same shape on tokio-util: the two figures a verdict
/// compares are taken a second or two apart, not the minute it takes to run every shape of
/// one contender, so a change of the machine's load in between falls on both alike.
fn cancel_tree(c: &mut Criterion) {
    for depth in [1usize, 10, 100, 1000] {
        c.bench_function(&format!("CancelTree/depth={depth}/Root=Background"), |b| {
            b.iter(|| build_context_tree(&Context::background(), depth))
        });
        // A token has no never-cancelled root: Root=Background is a chain of `depth` tokens
        // whose first has no parent, as Go's first WithCancel(Background()) has none.
        c.bench_function(
            &format!("tokio_util/CancelTree/depth={depth}/Root=Background"),
            |b| b.iter(|| build_token_tree(&CancellationToken::new(), depth - 1)),
        );
        c.bench_function(
            &format!("CancelTree/depth={depth}/Root=OpenCanceler"),
            |b| {
                b.iter(|| {
                    let (ctx, cancel) = Context::background().with_cancel();
                    let leaf = build_context_tree(&ctx, depth);
                    cancel.cancel();
                    leaf
                })
            },
        );
        c.bench_function(
            &format!("tokio_util/CancelTree/depth={depth}/Root=OpenCanceler"),
            |b| {
                b.iter(|| {
                    let root = CancellationToken::new();
                    let leaf = build_token_tree(&root, depth);
                    root.cancel();
                    leaf
                })
            },
        );
        c.bench_function(
            &format!("CancelTree/depth={depth}/Root=ClosedCanceler"),
            |b| {
                b.iter(|| {
                    let (ctx, cancel) = Context::background().with_cancel();
                    cancel.cancel();
                    build_context_tree(&ctx, depth)
                })
            },
        );
        c.bench_function(
            &format!("tokio_util/CancelTree/depth={depth}/Root=ClosedCanceler"),
            |b| {
                b.iter(|| {
                    let root = CancellationToken::new();
                    root.cancel();
                    build_token_tree(&root, depth)
                })
            },
        );
    }

    // Go's shape drops each level's cancel function and context as it goes. A ctxkit level
    // stays in the tree while a descendant lives (as a Go level does: Display and the live
    // tree show it); a tokio-util token whose handles are all gone is taken out of the tree
    // and freed at once, so its chain is one level long whatever the depth. Here every
    // level's context and handle (token) are kept until the op ends, so that both keep
    // every level: the same work on both sides.
    let mut g = c.benchmark_group("LevelsKept");
    for depth in [10usize, 1000] {
        g.bench_function(format!("ctxkit/depth={depth}/Root=OpenCanceler"), |b| {
            b.iter(|| {
                let (root, cancel) = Context::background().with_cancel();
                let mut levels = Vec::with_capacity(depth);
                let mut ctx = root;
                for _ in 0..depth {
                    let (child, handle) = ctx.with_cancel();
                    levels.push((ctx, handle));
                    ctx = child;
                }
                cancel.cancel();
                (ctx, levels)
            })
        });
        g.bench_function(format!("tokio_util/depth={depth}/Root=OpenCanceler"), |b| {
            b.iter(|| {
                let root = CancellationToken::new();
                let mut levels = Vec::with_capacity(depth);
                let mut token = root.clone();
                for _ in 0..depth {
                    let child = token.child_token();
                    levels.push(token);
                    token = child;
                }
                root.cancel();
                (token, levels)
            })
        });
    }
    g.finish();

    // The floor of Root=Background: the least any tree with Go's semantics does per level
    // when reference counts, not a collector, free it. No context work at all.
    c.bench_function("floor/CancelTree/depth=1000/Root=Background", |b| {
        b.iter(|| floor_chain(1000))
    });
    // The floor of Root=OpenCanceler with Go's semantics: every level kept while its child
    // lives, and each made done by the root's cancellation before it returns.
    for depth in [10usize, 100, 1000] {
        c.bench_function(
            &format!("floor/CancelTree/depth={depth}/Root=OpenCanceler"),
            |b| b.iter(|| floor_open_chain(depth)),
        );
    }
}

/// One level of the floor's chain.
struct FloorLevel {
    /// A level keeps its ancestors (their values, their deadlines).
    _parent: Option<Arc<FloorLevel>>,
    /// A cancellation reaches a level's child; the child goes when its last owner does.
    child: Mutex<Option<Weak<FloorLevel>>>,
}

/// Per level: one allocation, freed with the chain; the parent's reference count up (and
/// down, with the chain); the child put in the parent under its lock, weakly; and the
/// second owner `WithCancel` hands back (Go's cancel function), dropped at once as the
/// benchmark drops it. Each count goes up and down once, as the context's do.
fn floor_chain(depth: usize) -> Arc<FloorLevel> {
    let mut leaf: Option<Arc<FloorLevel>> = None;
    for _ in 0..depth {
        let level = Arc::new(FloorLevel {
            _parent: leaf.clone(),
            child: Mutex::new(None),
        });
        if let Some(parent) = &leaf {
            *parent.child.lock().unwrap() = Some(Arc::downgrade(&level));
        }
        drop(black_box(Arc::clone(&level)));
        leaf = Some(level);
    }
    leaf.expect("a chain of one level or more")
}

/// One level of the floor of a chain under an open root: a [`FloorLevel`] that can be done.
struct OpenLevel {
    _parent: Option<Arc<OpenLevel>>,
    child: Mutex<Option<Weak<OpenLevel>>>,
    done: std::sync::atomic::AtomicBool,
}

/// The least a chain with Go's semantics does under a root that is cancelled once it is
/// built, with no context work at all: [`floor_chain`]'s work a level (the root a level too),
/// then the root's cancellation, which goes down the chain and makes each level done: a
/// level's lock taken to take its child out of its list, the child's `Weak` upgraded, its
/// state stored. The chain is freed when the caller drops the leaf.
fn floor_open_chain(depth: usize) -> Arc<OpenLevel> {
    let level = |parent: Option<Arc<OpenLevel>>| {
        Arc::new(OpenLevel {
            _parent: parent,
            child: Mutex::new(None),
            done: std::sync::atomic::AtomicBool::new(false),
        })
    };
    let root = level(None);
    let mut leaf = Arc::clone(&root);
    for _ in 0..depth {
        let child = level(Some(Arc::clone(&leaf)));
        *leaf.child.lock().unwrap() = Some(Arc::downgrade(&child));
        drop(black_box(Arc::clone(&child)));
        leaf = child;
    }
    // The root's cancel.
    root.done.store(true, Ordering::Release);
    let mut next = root.child.lock().unwrap().take();
    while let Some(level) = next.and_then(|weak| weak.upgrade()) {
        level.done.store(true, Ordering::Release);
        next = level.child.lock().unwrap().take();
    }
    leaf
}

// ---------------------------------------------------------------------------------------
// CheckCanceled/{Err,Done}, ContextCancelDone
// ---------------------------------------------------------------------------------------

fn check_canceled(c: &mut Criterion) {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let mut g = c.benchmark_group("CheckCanceled");
    g.bench_function("Err", |b| b.iter(|| black_box(&ctx).err()));
    let done = ctx.done();
    g.bench_function("Done", |b| b.iter(|| black_box(&done).err().is_some()));
    g.finish();

    // The floor of a done check in this harness: one load of a flag behind a pointer, as
    // a context's err is one load behind its node's pointer. No context work at all.
    let flag = Arc::new(std::sync::atomic::AtomicU8::new(1));
    c.bench_function("floor/CheckCanceled/one_load", |b| {
        b.iter(|| black_box(&flag).load(Ordering::Acquire) != 0)
    });

    let token = CancellationToken::new();
    token.cancel();
    c.bench_function("tokio_util/CheckCanceled/Err", |b| {
        b.iter(|| black_box(&token).is_cancelled())
    });
}

fn context_cancel_done(c: &mut Criterion) {
    let (ctx, _cancel) = Context::background().with_cancel();
    c.bench_function("ContextCancelDone", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                let done = ctx.done();
                for _ in 0..n {
                    black_box(black_box(&done).err().is_some());
                }
            })
        })
    });
    let token = CancellationToken::new();
    c.bench_function("tokio_util/ContextCancelDone", |b| {
        b.iter_custom(|iters| {
            run_parallel(iters, |n| {
                for _ in 0..n {
                    black_box(black_box(&token).is_cancelled());
                }
            })
        })
    });
}

// ---------------------------------------------------------------------------------------
// DeepValueSameGoRoutine/depth=D
// ---------------------------------------------------------------------------------------

/// One distinct key per layer (Go: `WithValue(ctx, i, i)` for i in 0..depth).
static KEYS: [Key<usize>; 100] = [const { Key::new("i") }; 100];
/// Go's `ctx.Value(-1)`: a key no layer set.
static MISSING: Key<usize> = Key::new("-1");

fn deep_value(c: &mut Criterion) {
    let mut g = c.benchmark_group("DeepValueSameGoRoutine");
    for depth in [10usize, 20, 30, 50, 100] {
        let mut ctx = Context::background();
        for (i, key) in KEYS.iter().enumerate().take(depth) {
            ctx = ctx.with_value(key, i);
        }
        assert_eq!(ctx.value(&KEYS[0]), Some(&0), "the first layer is found");
        assert_eq!(ctx.value(&KEYS[depth - 1]), Some(&(depth - 1)));
        assert_eq!(ctx.value(&MISSING), None, "the lookup misses");
        g.bench_function(format!("depth={depth}"), |b| {
            b.iter(|| black_box(&ctx).value(black_box(&MISSING)).is_some())
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Shapes shared with tokio-util, and ctxkit-only operations
// ---------------------------------------------------------------------------------------

fn shared_shapes(c: &mut Criterion) {
    // A child of a live cancellable parent, dropped without cancelling.
    let (parent, _p) = Context::background().with_cancel();
    c.bench_function("ctxkit/ChildDrop", |b| b.iter(|| parent.with_cancel()));
    let token = CancellationToken::new();
    c.bench_function("tokio_util/ChildDrop", |b| b.iter(|| token.child_token()));
    // The same under a context that carries a value, as a request's context carries its
    // trace id: the child shares the parent's values (N12 in `tree/mod.rs`).
    let request = parent.with_value(&KEY, "4bf92f35");
    c.bench_function("ctxkit/ChildDropUnderValue", |b| {
        b.iter(|| request.with_cancel())
    });

    // A context cancelled after its one child was dropped: a request's context at the end
    // of the request, its calls gone.
    c.bench_function("ctxkit/CancelAfterChild", |b| {
        b.iter(|| {
            let (ctx, cancel) = Context::background().with_cancel();
            drop(ctx.with_cancel());
            cancel.cancel();
        })
    });
    c.bench_function("tokio_util/CancelAfterChild", |b| {
        b.iter(|| {
            let token = CancellationToken::new();
            drop(token.child_token());
            token.cancel();
        })
    });

    // Awaiting done on a context that is already done: make the future, poll it once.
    let (done_ctx, h) = Context::background().with_cancel();
    h.cancel();
    c.bench_function("ctxkit/DoneAwaitReady", |b| {
        let mut cx = noop_cx();
        b.iter(|| {
            let fut = pin!(black_box(&done_ctx).done());
            matches!(fut.poll(&mut cx), Poll::Ready(_))
        })
    });
    let done_token = CancellationToken::new();
    done_token.cancel();
    c.bench_function("tokio_util/DoneAwaitReady", |b| {
        let mut cx = noop_cx();
        b.iter(|| {
            let fut = pin!(black_box(&done_token).cancelled());
            matches!(fut.poll(&mut cx), Poll::Ready(_))
        })
    });

    // ctxkit only.
    let (a, _ha) = Context::background().with_cancel();
    let (other, _hb) = Context::background().with_cancel();
    c.bench_function("ctxkit/Merge", |b| b.iter(|| a.merge(&other)));
    // What ctxkit-tower makes per outgoing call: a named child of the request's context,
    // listed in the live tree, made and dropped.
    c.bench_function("ctxkit/NamedChild", |b| {
        b.iter(|| parent.named_child(black_box("GET /orders")))
    });
    // An idle timeout touched on every message (S33): moving a live context's deadline
    // later. The floor is the clock read `set_timeout` needs.
    let (_idle_ctx, idle) = Context::background().with_cancel();
    idle.set_timeout(Duration::from_secs(30));
    c.bench_function("ctxkit/SetTimeout", |b| {
        b.iter(|| idle.set_timeout(black_box(Duration::from_secs(30))))
    });
    c.bench_function("floor/SetTimeout/clock_read", |b| {
        b.iter(std::time::Instant::now)
    });
    c.bench_function("ctxkit/AfterFuncStop", |b| {
        b.iter(|| parent.after_func(|| {}).stop())
    });
    let ran = Arc::new(AtomicUsize::new(0));
    c.bench_function("ctxkit/OnCancel", |b| {
        b.iter(|| {
            let (ctx, cancel) = parent.with_cancel();
            let ran = Arc::clone(&ran);
            let reg = ctx.on_cancel(move || {
                ran.fetch_add(1, Ordering::Relaxed);
            });
            cancel.cancel();
            reg
        })
    });
}

fn config() -> Criterion {
    // Short: the whole suite (about 50 benchmarks) runs in a few minutes.
    Criterion::default()
        .warm_up_time(Duration::from_millis(400))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = common_parent_cancel, with_timeout, cancel_tree, check_canceled,
        context_cancel_done, deep_value, shared_shapes
}
criterion_main!(benches);

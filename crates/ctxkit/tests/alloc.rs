//! Allocation counts in steady state, measured with a counting global allocator. Counts are
//! kept per thread, so tests running in parallel do not disturb each other, and the work of
//! the library's own threads (timer, callbacks) is not counted.

use std::hint::black_box;
use std::time::Duration;

use ctxkit::{Context, Key};

mod common;
use common::{REQUEST, USER};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{live_bytes, thread_allocs, total_allocs, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARMUP: usize = 1_000;
const ROUNDS: usize = 10_000;

/// Runs `op` `WARMUP` times, then `ROUNDS` times while counting this thread's allocations.
/// Returns (average per op, most in one op).
fn measure(mut op: impl FnMut()) -> (f64, u64) {
    for _ in 0..WARMUP {
        op();
    }
    let start = thread_allocs();
    let mut most = 0;
    for _ in 0..ROUNDS {
        let before = thread_allocs();
        op();
        most = most.max(thread_allocs() - before);
    }
    let total = thread_allocs() - start;
    (total as f64 / ROUNDS as f64, most)
}

fn check(what: &str, target: u64, (avg, most): (f64, u64)) {
    eprintln!("{what}: {avg:.3} allocations per op on average, at most {most}");
    assert!(
        avg <= target as f64,
        "{what}: {avg:.3} allocations per op on average (at most {most} in one op), target {target}"
    );
}

// API S1
#[test]
fn background_and_todo_do_not_allocate() {
    check(
        "background()",
        0,
        measure(|| {
            black_box(Context::background());
        }),
    );
    check(
        "todo()",
        0,
        measure(|| {
            black_box(Context::todo());
        }),
    );
    let (avg, most) = measure(|| {
        black_box(Context::background());
        black_box(Context::todo());
    });
    assert_eq!((avg, most), (0.0, 0), "roots must never allocate");
}

#[test]
fn with_cancel_and_cancel_allocate_at_most_once() {
    let bg = Context::background();
    check(
        "with_cancel+cancel under background",
        1,
        measure(|| {
            let (ctx, h) = bg.with_cancel();
            h.cancel();
            black_box(ctx);
        }),
    );
    let (parent, _hp) = Context::background().with_cancel();
    check(
        "with_cancel+cancel under a cancellable parent",
        1,
        measure(|| {
            let (ctx, h) = parent.with_cancel();
            h.cancel();
            black_box(ctx);
        }),
    );
}

/// A level of a chain holds its one child in the node itself: building a chain of live
/// levels allocates once a level, the level's child list included, and cancelling it
/// allocates nothing.
#[test]
fn a_live_chain_allocates_once_a_level() {
    const DEPTH: usize = 64;
    let (avg, most) = measure(|| {
        let (root, h) = Context::background().with_cancel();
        let mut leaf = root;
        for _ in 0..DEPTH {
            leaf = leaf.with_cancel().0;
        }
        h.cancel();
        black_box(leaf);
    });
    let per_level = avg / (DEPTH + 1) as f64;
    eprintln!("live chain: {per_level:.3} allocations a level (at most {most} a chain)");
    assert!(
        most as usize <= DEPTH + 1,
        "a chain of {DEPTH} levels under a root: {most} allocations, more than one a level"
    );
}

/// A parent of a few children at a time (a request's calls in flight) keeps the ones beyond
/// the first in one box, made with the second: a parent and five children, then its cancel,
/// make seven allocations (eight with the vector the test keeps the children in).
#[test]
fn a_parent_of_a_few_children_keeps_them_in_one_box() {
    const CHILDREN: usize = 5;
    let (_, most) = measure(|| {
        let (root, h) = Context::background().with_cancel();
        let children: Vec<Context> = (0..CHILDREN).map(|_| root.with_cancel().0).collect();
        h.cancel();
        black_box(children);
    });
    // The parent, its children, their box and the vector the test keeps them in.
    assert!(
        most as usize <= CHILDREN + 3,
        "a parent of {CHILDREN} children: {most} allocations, more than {}",
        CHILDREN + 3
    );
}

/// The walk of a cancellation keeps its bookkeeping in buffers the thread reuses, up to a
/// subtree of about a thousand contexts: cancelling a chain of a thousand levels again and
/// again allocates once a level (the levels themselves), nothing for the walk.
#[test]
fn the_walk_of_a_thousand_levels_reuses_its_buffers() {
    const DEPTH: usize = 1000;
    let chain = || {
        let (root, h) = Context::background().with_cancel();
        let mut leaf = root;
        for _ in 0..DEPTH {
            leaf = leaf.with_cancel().0;
        }
        (h, leaf)
    };
    for _ in 0..3 {
        let (h, leaf) = chain();
        h.cancel();
        black_box(leaf);
    }
    let mut most = 0;
    for _ in 0..20 {
        let (h, leaf) = chain();
        let before = thread_allocs();
        h.cancel();
        most = most.max(thread_allocs() - before);
        assert!(leaf.is_done());
    }
    assert_eq!(
        most, 0,
        "cancelling a chain of {DEPTH} levels allocated {most} times for its walk"
    );
}

#[test]
fn with_timeout_and_cancel_allocate_at_most_twice() {
    let bg = Context::background();
    check(
        "with_timeout(1h)+cancel under background",
        2,
        measure(|| {
            let (ctx, h) = bg.with_timeout(Duration::from_secs(3600));
            h.cancel();
            black_box(ctx);
        }),
    );
    let (parent, _hp) = Context::background().with_cancel();
    check(
        "with_timeout(1h)+cancel under a cancellable parent",
        2,
        measure(|| {
            let (ctx, h) = parent.with_timeout(Duration::from_secs(3600));
            h.cancel();
            black_box(ctx);
        }),
    );
}

/// `with_value` allocates the layer, the value (unless it is zero-sized) and the layer's
/// table of the values above it (unless there are none), each at its exact size: at most
/// three allocations. In the order below the counts are 2, 1, 3, 2, 3 and 3. Before `Context`
/// became two words, the value was stored inside the layer (a trait object) and the table
/// was shrunk after shadowing: 1, 1, 2, 2, 3 (one a shrinking `realloc`) and 2.
// API S28
// API S33
#[test]
fn moving_a_deadline_later_allocates_nothing_in_the_steady_state() {
    let (ctx, idle) = Context::background().with_cancel();
    let (_child, _c) = ctx.with_cancel();
    idle.set_timeout(Duration::from_secs(30)); // the first move: the timer entry
    let (avg, most) = measure(|| {
        idle.set_timeout(Duration::from_secs(30));
    });
    eprintln!("set_timeout later: {avg:.3} allocations per op on average, at most {most}");
    assert_eq!(
        most, 0,
        "an idle timeout touched on every message allocates nothing"
    );
}

#[test]
fn with_name_allocates_at_most_once() {
    let (parent, _h) = Context::background().with_cancel();
    let parent = parent.with_value(&USER, "u").with_value(&REQUEST, 7);
    check(
        "with_name(&'static str) under values",
        1, // the layer alone: no table, the name in the layer
        measure(|| {
            black_box(parent.with_name("GET /orders"));
        }),
    );
    let name = String::from("GET /orders");
    check(
        "with_name(String) under values",
        2, // the clone this test makes, then the layer
        measure(|| {
            black_box(parent.with_name(name.clone()));
        }),
    );
}

/// A short owned name is copied into the layer and its `String` freed at once: a named
/// context holds no allocation of its own besides its layer. A long one is kept as given.
#[test]
fn a_short_owned_name_lives_in_its_layer() {
    let short = String::from("GET /orders/7");
    let given = short.as_ptr();
    let ctx = Context::background().with_name(short);
    assert_eq!(ctx.name(), Some("GET /orders/7"));
    assert_ne!(ctx.name().unwrap().as_ptr(), given, "the String was kept");

    let long = "/a.very.long.package.Service/ItsMethodWithAVeryLongName".repeat(2);
    let given = long.as_ptr();
    let ctx = Context::background().with_name(long);
    assert_eq!(
        ctx.name().unwrap().as_ptr(),
        given,
        "a long name is kept as given"
    );
}

#[test]
fn with_value_allocates_at_most_three_times() {
    let bg = Context::background();
    check(
        "with_value on background",
        2, // the layer and the value; no table
        measure(|| {
            black_box(bg.with_value(&REQUEST, 7));
        }),
    );
    struct Marker;
    check(
        "with (a zero-sized value) on background",
        1, // the layer alone
        measure(|| {
            black_box(bg.with(Marker));
        }),
    );
    let one = bg.with_value(&USER, "u");
    check(
        "with_value on a context with one value",
        3, // the layer, the value, a table of one row
        measure(|| {
            black_box(one.with_value(&REQUEST, 7));
        }),
    );
    check(
        "with_value shadowing the same key",
        2, // the layer and the value; the only row is shadowed, so no table
        measure(|| {
            black_box(one.with_value(&USER, "v"));
        }),
    );
    let two = one.with_value(&REQUEST, 1);
    check(
        "with_value shadowing one of two keys",
        3, // the layer, the value, a table of one row (no shrinking of a bigger one)
        measure(|| {
            black_box(two.with_value(&USER, "v"));
        }),
    );
    let (under_node, _h) = one.with_cancel();
    check(
        "with_value on a cancellable context",
        3, // as on its parent: the node is not a value layer
        measure(|| {
            black_box(under_node.with_value(&REQUEST, 7));
        }),
    );
}

/// A `Context` is two thin pointers (its nearest node and its nearest value layer): a program
/// holding many children of one parent pays 16 B per child for the `Context` itself.
#[test]
#[cfg(target_pointer_width = "64")]
fn context_is_two_words() {
    assert_eq!(std::mem::size_of::<Context>(), 16);
    assert_eq!(std::mem::size_of::<Option<Context>>(), 24);
}

#[test]
fn observing_and_cloning_do_not_allocate() {
    let (parent, _hp) = Context::background().with_timeout(Duration::from_secs(3600));
    let ctx = parent.with_value(&USER, "u").with_value(&REQUEST, 1);
    let (done_ctx, h) = ctx.with_cancel();
    h.cancel();
    for c in [
        &Context::background(),
        &Context::todo(),
        &parent,
        &ctx,
        &done_ctx,
    ] {
        check(
            "err()",
            0,
            measure(|| {
                black_box(black_box(c).err());
            }),
        );
        check(
            "is_done()",
            0,
            measure(|| {
                black_box(black_box(c).is_done());
            }),
        );
        check(
            "value()",
            0,
            measure(|| {
                black_box(black_box(c).value(&USER));
                black_box(black_box(c).value(&REQUEST));
            }),
        );
        check(
            "clone()",
            0,
            measure(|| {
                black_box(black_box(c).clone());
            }),
        );
    }
}

/// The counting allocator itself: an allocation shows in the count of the thread that made
/// it, once, and in the count of the whole process.
#[test]
fn the_counting_allocator_counts_each_allocation_once_for_its_thread_and_the_process() {
    let (mine, all) = (thread_allocs(), total_allocs());
    let boxed = black_box(Box::new([7u8; 64]));
    assert_eq!(thread_allocs() - mine, 1);
    assert!(total_allocs() - all >= 1);
    let on_other_thread = std::thread::spawn(|| {
        let before = thread_allocs();
        black_box(vec![1u8; 4096]);
        thread_allocs() - before
    })
    .join()
    .unwrap();
    assert_eq!(on_other_thread, 1);
    drop(boxed);
}

/// Ten thousand distinct keys: each element of a `static` array is a key of its own.
static KEYS: [Key<usize>; 10_000] = [const { Key::new("many") }; 10_000];

#[test]
fn a_chain_of_many_distinct_keys_costs_memory_far_below_the_square_of_the_keys() {
    let before = live_bytes();
    let ctx = KEYS
        .iter()
        .enumerate()
        .fold(Context::background(), |ctx, (i, key)| {
            ctx.with_value(key, i)
        });
    let used = live_bytes() - before;
    for (i, key) in KEYS.iter().enumerate().step_by(97) {
        assert_eq!(ctx.value(key), Some(&i));
    }
    drop(ctx);
    // Copying every table would hold 10,000² / 2 rows of 16 B: 800 MB.
    assert!(used < 32 << 20, "{used} bytes for a chain of 10,000 keys");
}

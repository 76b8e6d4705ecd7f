//! One operation of the core, repeated: the program `tools/bench/instructions.sh` counts the
//! instructions of under callgrind, to compare two versions of the core without the noise of
//! wall time on a shared machine.
//!
//! `cargo bench -p ctxkit --bench ops -- MODE [N]`, MODE one of:
//! - `drop`: `with_cancel` of `Background`, dropped (CancelTree/depth=1/Root=Background);
//! - `child`: `with_cancel` of a live context, dropped (ctxkit/ChildDrop);
//! - `vchild`: the same under a value (ctxkit/ChildDropUnderValue);
//! - `cancel`: `with_cancel`, then `cancel`;
//! - `common`: CommonParentCancel's op on one thread, without its spins: `with_cancel` of a
//!   live context over a value, the value looked up, the child cancelled and dropped;
//! - `timeout`: `with_timeout(60 s)`, then `cancel`;
//! - `after`: `with_cancel` of `Background`, a child of it dropped, then the first cancelled
//!   (ctxkit/CancelAfterChild: a cancellation with no child left to walk);
//! - `tree1`: `with_cancel` of `Background`, a child of it, then the first cancelled
//!   (CancelTree/depth=1/Root=OpenCanceler: one cancellation that walks a child);
//! - `tree1g`: the same in Go's order, as the benchmark does it: the first context and its
//!   handle dropped before the child, whose drop then frees the first (`tu_tree1g` on
//!   tokio-util);
//! - `few`: `with_cancel` of `Background`, three children of it, then the first cancelled (a
//!   request's few calls in flight: a parent of a few children at a time);
//! - `tree1c`: `with_cancel` of `Background`, cancelled, then a child of it
//!   (CancelTree/depth=1/Root=ClosedCanceler);
//! - `open`: a chain of 100 `with_cancel` under a live root, then the root cancelled
//!   (CancelTree/depth=100/Root=OpenCanceler; N counts levels);
//! - `closed`: a chain of 100 `with_cancel` under a cancelled root (.../Root=ClosedCanceler);
//! - `chain`: a chain of 100 `with_cancel` under `Background`, released live
//!   (.../Root=Background);
//! - `wide`: N children of one live context, all kept, then dropped (wide fan-out);
//! - `call`: what ctxkit-tower does per outgoing call: a named child of a live context
//!   (`with_name` of a `String`, then `with_cancel`, its handle dropped), 16 alive at a time
//!   as 16 calls in flight are.
//!
//! And the same shapes on tokio-util's `CancellationToken`, to set ctxkit's counts beside
//! (not part of `instructions.sh`): `tu_child` (`child_token`, dropped), `tu_after`,
//! `tu_tree1`, `tu_tree1g`, `tu_few`, `tu_tree1c`, `tu_wide`, and the chains `tu_open` and `tu_closed`.

use std::hint::black_box;
use std::time::Duration;

use ctxkit::Context;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let mode = args.next().unwrap_or_else(|| "drop".into());
    let n: usize = args
        .next()
        .map_or(200_000, |n| n.parse().expect("N: a number"));
    let bg = Context::background();
    let (parent, _parent) = bg.with_cancel();
    static TRACE_ID: ctxkit::Key<&str> = ctxkit::Key::new("trace_id");
    let request = parent.with_value(&TRACE_ID, "4bf92f35");
    // CommonParentCancel's parent: a cancellable context over a value.
    let (shared, _shared) = bg.with_value(&TRACE_ID, "4bf92f35").with_cancel();
    let tu_parent = tokio_util::sync::CancellationToken::new();
    let mut done = 0usize;
    if mode == "wide" || mode == "tu_wide" {
        if mode == "wide" {
            let kids: Vec<Context> = (0..n).map(|_| parent.with_cancel().0).collect();
            done += black_box(&kids).len();
        } else {
            let root = tokio_util::sync::CancellationToken::new();
            let kids: Vec<_> = (0..n).map(|_| root.child_token()).collect();
            done += black_box(&kids).len();
        }
        println!("{mode}: {n} children, {done} made");
        return;
    }
    if mode == "chain" {
        // Go's CancelTree with Root=Background: a chain of live levels, released at once.
        const DEPTH: usize = 100;
        for _ in 0..n / DEPTH {
            let mut leaf = bg.clone();
            for _ in 0..DEPTH {
                leaf = leaf.with_cancel().0;
            }
            done += black_box(&leaf).is_done() as usize;
        }
        println!("{mode}: {n} levels, {done} chains done");
        return;
    }
    if mode == "open" || mode == "closed" {
        const DEPTH: usize = 100;
        for _ in 0..n / DEPTH {
            let (root, cancel) = bg.with_cancel();
            if mode == "closed" {
                cancel.cancel();
            }
            let mut leaf = root;
            for _ in 0..DEPTH {
                leaf = leaf.with_cancel().0;
            }
            cancel.cancel();
            done += black_box(&leaf).is_done() as usize;
        }
        println!("{mode}: {n} levels, {done} chains done");
        return;
    }
    if mode == "tu_open" || mode == "tu_closed" {
        const DEPTH: usize = 100;
        for _ in 0..n / DEPTH {
            let root = tokio_util::sync::CancellationToken::new();
            if mode == "tu_closed" {
                root.cancel();
            }
            let mut leaf = root.clone();
            for _ in 0..DEPTH {
                leaf = leaf.child_token();
            }
            root.cancel();
            done += black_box(&leaf).is_cancelled() as usize;
        }
        println!("{mode}: {n} levels, {done} chains done");
        return;
    }
    if mode == "call" {
        let mut in_flight: Vec<Context> = (0..16).map(|_| parent.clone()).collect();
        for i in 0..n {
            let name = String::from("GET /orders");
            in_flight[i % 16] = parent.with_name(name).with_cancel().0;
            done += black_box(&in_flight[i % 16]).is_done() as usize;
        }
        println!("{mode}: {n} ops, {done} done");
        return;
    }
    for _ in 0..n {
        match mode.as_str() {
            "drop" => {
                let (ctx, _h) = bg.with_cancel();
                done += black_box(&ctx).is_done() as usize;
            }
            "child" => {
                let (ctx, _h) = parent.with_cancel();
                done += black_box(&ctx).is_done() as usize;
            }
            "vchild" => {
                let (ctx, _h) = request.with_cancel();
                done += black_box(&ctx).is_done() as usize;
            }
            "common" => {
                let (ctx, h) = shared.with_cancel();
                assert_eq!(ctx.value(&TRACE_ID), Some(&"4bf92f35"));
                h.cancel();
                done += black_box(&ctx).is_done() as usize;
            }
            "cancel" => {
                let (ctx, h) = bg.with_cancel();
                h.cancel();
                done += black_box(&ctx).is_done() as usize;
            }
            "tu_child" => {
                let token = tu_parent.child_token();
                done += black_box(&token).is_cancelled() as usize;
            }
            "tree1c" => {
                let (root, cancel) = bg.with_cancel();
                cancel.cancel();
                let (child, _c) = root.with_cancel();
                done += black_box(&child).is_done() as usize;
            }
            "tu_tree1c" => {
                let root = tokio_util::sync::CancellationToken::new();
                root.cancel();
                let child = root.child_token();
                done += black_box(&child).is_cancelled() as usize;
            }
            "after" => {
                let (root, cancel) = bg.with_cancel();
                drop(root.with_cancel());
                cancel.cancel();
                done += black_box(&root).is_done() as usize;
            }
            "tu_after" => {
                let root = tokio_util::sync::CancellationToken::new();
                drop(root.child_token());
                root.cancel();
                done += black_box(&root).is_cancelled() as usize;
            }
            "tree1" => {
                let (root, cancel) = bg.with_cancel();
                let (child, _c) = root.with_cancel();
                cancel.cancel();
                done += black_box(&child).is_done() as usize;
            }
            "tree1g" => {
                let leaf = {
                    let (root, cancel) = bg.with_cancel();
                    let leaf = root.clone().with_cancel().0;
                    cancel.cancel();
                    leaf
                };
                done += black_box(&leaf).is_done() as usize;
            }
            "tu_tree1g" => {
                let leaf = {
                    let root = tokio_util::sync::CancellationToken::new();
                    let leaf = root.clone().child_token();
                    root.cancel();
                    leaf
                };
                done += black_box(&leaf).is_cancelled() as usize;
            }
            "few" => {
                let (root, cancel) = bg.with_cancel();
                let children = [
                    root.with_cancel().0,
                    root.with_cancel().0,
                    root.with_cancel().0,
                ];
                cancel.cancel();
                done += black_box(&children).iter().filter(|c| c.is_done()).count();
            }
            "tu_few" => {
                let root = tokio_util::sync::CancellationToken::new();
                let children = [root.child_token(), root.child_token(), root.child_token()];
                root.cancel();
                done += black_box(&children)
                    .iter()
                    .filter(|c| c.is_cancelled())
                    .count();
            }
            "tu_tree1" => {
                let root = tokio_util::sync::CancellationToken::new();
                let child = root.child_token();
                root.cancel();
                done += black_box(&child).is_cancelled() as usize;
            }
            "timeout" => {
                let (ctx, h) = bg.with_timeout(Duration::from_secs(60));
                h.cancel();
                done += black_box(&ctx).is_done() as usize;
            }
            other => {
                panic!("MODE: drop, child, vchild, cancel, after, tree1, tree1g, few, tree1c, timeout, open, closed, chain, wide, call, tu_child, tu_after, tu_tree1, tu_tree1g, tu_few, tu_tree1c, tu_wide, tu_open or tu_closed, not {other}")
            }
        }
    }
    println!("{mode}: {n} ops, {done} done");
}

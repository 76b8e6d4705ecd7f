//! `ctxkit::tokio_util`: a context and a `CancellationToken` cancelling each other, without
//! threads, tasks, polling or leaks.
#![cfg(feature = "tokio-util")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ctxkit::tokio_util::{cancel_on_done, child_token, with_token};
use ctxkit::{Context, Error};
use tokio_util::sync::CancellationToken;

mod common;
use common::{DropFlag, LONG};

/// A context holding a `DropFlag`, and its flag: set once the context is freed.
fn detected() -> (Context, Arc<AtomicBool>) {
    let freed = Arc::new(AtomicBool::new(false));
    let ctx = Context::background().with(DropFlag(freed.clone()));
    (ctx, freed)
}

// --- context -> token -----------------------------------------------------------------

#[test]
fn child_token_is_cancelled_before_the_context_cancel_returns() {
    let (ctx, handle) = Context::background().with_cancel();
    let token = child_token(&ctx);
    assert!(!token.is_cancelled());
    handle.cancel();
    assert!(token.is_cancelled());
}

#[test]
fn child_token_of_a_done_context_is_cancelled_at_once() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    assert!(child_token(&ctx).is_cancelled());
}

#[test]
fn child_token_follows_a_deadline() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let token = child_token(&ctx);
    // The timer thread cancels the token; waiters of the context may wake first.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let waited = rt.block_on(async { tokio::time::timeout(LONG, token.cancelled()).await });
    assert!(waited.is_ok() && ctx.is_done());
}

#[test]
fn child_token_wakes_tasks_waiting_on_it() {
    let (ctx, handle) = Context::background().with_cancel();
    let token = child_token(&ctx);
    let waiter = thread::spawn(move || futures::executor::block_on(token.cancelled()));
    thread::sleep(Duration::from_millis(10));
    handle.cancel();
    waiter.join().unwrap();
}

#[test]
fn cancel_on_done_stopped_leaves_the_token_alone() {
    let (ctx, handle) = Context::background().with_cancel();
    let token = CancellationToken::new();
    let link = cancel_on_done(&ctx, &token);
    assert!(link.stop());
    handle.cancel();
    assert!(!token.is_cancelled());
}

#[test]
fn a_token_does_not_keep_its_context_alive() {
    let (parent, freed) = detected();
    let (ctx, handle) = parent.with_cancel();
    drop(parent);
    let token = child_token(&ctx);
    drop(ctx);
    drop(handle);
    assert!(
        freed.load(Ordering::SeqCst),
        "the context was freed, token alive"
    );
    assert!(!token.is_cancelled(), "nothing cancelled it");
}

// --- token -> context -----------------------------------------------------------------

#[test]
fn with_token_is_cancelled_before_the_token_cancel_returns() {
    let token = CancellationToken::new();
    let (ctx, _h) = with_token(&Context::background(), &token);
    assert!(!ctx.is_done());
    token.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx.cause().unwrap().is::<Error>());
}

#[test]
fn with_token_of_a_cancelled_token_is_done_at_once() {
    let token = CancellationToken::new();
    token.cancel();
    let (ctx, _h) = with_token(&Context::background(), &token);
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn with_token_follows_a_parent_token_cancelling_a_child_token() {
    let parent = CancellationToken::new();
    let child = parent.child_token();
    let (ctx, _h) = with_token(&Context::background(), &child);
    parent.cancel();
    assert!(ctx.is_done());
}

#[test]
fn with_token_is_still_a_child_of_its_parent_context() {
    let token = CancellationToken::new();
    let (parent, handle) = Context::background().with(5u8).with_cancel();
    let (ctx, _h) = with_token(&parent, &token);
    assert_eq!(ctx.get::<u8>(), Some(&5));
    handle.cancel();
    assert!(ctx.is_done());
    assert!(!token.is_cancelled(), "the bridge goes one way");
}

#[test]
fn with_token_wakes_a_thread_blocked_on_the_context() {
    let token = CancellationToken::new();
    let (ctx, _h) = with_token(&Context::background(), &token);
    let waiter = thread::spawn(move || ctx.wait());
    thread::sleep(Duration::from_millis(10));
    token.cancel();
    assert_eq!(waiter.join().unwrap(), Error::Canceled);
}

#[test]
fn on_cancel_callbacks_of_the_context_run_inside_the_token_cancel() {
    let token = CancellationToken::new();
    let (ctx, _h) = with_token(&Context::background(), &token);
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let _reg = ctx.on_cancel(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    token.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn a_context_does_not_keep_itself_alive_through_its_token() {
    let token = CancellationToken::new();
    let (parent, freed) = detected();
    let (ctx, handle) = with_token(&parent, &token);
    let grandchild = ctx.with_cancel();
    drop((parent, ctx, handle));
    assert!(!freed.load(Ordering::SeqCst), "a descendant still uses it");
    drop(grandchild);
    assert!(freed.load(Ordering::SeqCst), "freed while the token lives");
    token.cancel(); // finds nothing to cancel
}

#[test]
fn everything_is_freed_after_the_token_fires() {
    let token = CancellationToken::new();
    let (parent, freed) = detected();
    let (ctx, handle) = with_token(&parent, &token);
    drop(parent);
    token.cancel();
    assert!(ctx.is_done());
    drop((ctx, handle));
    assert!(freed.load(Ordering::SeqCst));
    drop(token);
}

#[test]
fn many_contexts_on_one_token_all_follow_it_and_are_freed() {
    let token = CancellationToken::new();
    let (parent, freed) = detected();
    let contexts: Vec<_> = (0..100).map(|_| with_token(&parent, &token)).collect();
    drop(parent);
    token.cancel();
    assert!(contexts.iter().all(|(ctx, _)| ctx.is_done()));
    drop(contexts);
    assert!(freed.load(Ordering::SeqCst));
}

#[test]
fn both_directions_together_do_not_loop_or_leak() {
    // token A -> context -> token B, and B is A's child: cancelling A reaches everything.
    let a = CancellationToken::new();
    let (parent, freed) = detected();
    let (ctx, handle) = with_token(&parent, &a);
    let b = child_token(&ctx);
    a.cancel();
    assert!(ctx.is_done());
    assert!(b.is_cancelled());
    drop((parent, ctx, handle));
    assert!(freed.load(Ordering::SeqCst));
}

#[test]
fn concurrent_token_cancel_and_context_drop_are_safe() {
    for _ in 0..200 {
        let token = CancellationToken::new();
        let (parent, freed) = detected();
        let (ctx, handle) = with_token(&parent, &token);
        drop(parent);
        let t = token.clone();
        let canceller = thread::spawn(move || t.cancel());
        drop((ctx, handle));
        canceller.join().unwrap();
        assert!(freed.load(Ordering::SeqCst));
    }
}

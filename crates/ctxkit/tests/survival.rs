//! Survival on the paths production hits: dropping contexts during thread-local teardown,
//! user code that misbehaves on ctxkit's own threads, storms of deadlines, cancels that
//! overlap. Each test is a scenario that once broke the core.

use std::cell::RefCell;
use std::time::Duration;

use ctxkit::Context;

thread_local! {
    /// A user's own thread-local that holds contexts until its thread exits.
    static HELD: RefCell<Vec<Context>> = const { RefCell::new(Vec::new()) };
}

/// Touches everything of ctxkit that keeps per-thread state: cancelling, waiting, timers.
fn use_ctxkit_on_this_thread() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _child_handle) = ctx.with_timeout(Duration::from_secs(3600));
    assert_eq!(child.wait_timeout(Duration::from_millis(1)), None);
    handle.cancel();
    drop((ctx, child));
}

/// Two levels and a deep chain (S23: dropped without recursion, even then).
fn contexts_to_hold() -> Vec<Context> {
    let (a, ha) = Context::background().with_cancel();
    let (b, hb) = a.with_cancel();
    let deep = (0..100_000).fold(b.clone(), |ctx, _| ctx.with_cancel().0);
    std::mem::forget((ha, hb)); // nobody cancels: the contexts are dropped live
    vec![b, deep]
}

#[test]
fn contexts_in_a_users_thread_local_drop_at_thread_exit() {
    // The user's thread-local made first, then ctxkit's (so ctxkit's go first at exit)...
    std::thread::spawn(|| {
        HELD.with(|_| ());
        use_ctxkit_on_this_thread();
        HELD.with(|held| held.borrow_mut().extend(contexts_to_hold()));
    })
    .join()
    .expect("the thread exits cleanly");
    // ...and the other way round.
    std::thread::spawn(|| {
        use_ctxkit_on_this_thread();
        HELD.with(|held| held.borrow_mut().extend(contexts_to_hold()));
    })
    .join()
    .expect("the thread exits cleanly");
}

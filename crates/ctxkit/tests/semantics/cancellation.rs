//! API S3–S6: `err` and `is_done` (S3), cancelling a context and its descendants (S4),
//! children of done parents (S5), and the `Error` sentinels (S6).

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{Context, Error, ManualClock};

use crate::common::{env_or, oops, sentinel, within, Oops, Tenant, HOUR, USER};

// ---------------------------------------------------------------------------------------
// S3: err
// ---------------------------------------------------------------------------------------

// API S3
#[test]
fn err_is_none_until_done_then_never_changes() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);

    let (ctx, h) = root.with_timeout(Duration::from_secs(1));
    assert_eq!(ctx.err(), None);
    assert!(!ctx.is_done());
    h.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    clock.advance(Duration::from_secs(2)); // the deadline passing later changes nothing
    assert_eq!(ctx.err(), Some(Error::Canceled));

    let (ctx, h) = root.with_timeout(Duration::from_secs(1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    h.cancel(); // a cancel later changes nothing
    h.cancel_with_cause(Oops("late"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

// API S3
#[test]
fn is_done_is_err_is_some() {
    let (ctx, h) = Context::background().with_cancel();
    assert_eq!(ctx.is_done(), ctx.err().is_some());
    h.cancel();
    assert_eq!(ctx.is_done(), ctx.err().is_some());
    assert!(ctx.is_done());
}

// ---------------------------------------------------------------------------------------
// S4: cancellation
// ---------------------------------------------------------------------------------------

// API S4
#[test]
fn cancel_is_idempotent() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    h.cancel();
    h.clone().cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(sentinel(&ctx.cause().unwrap()), Some(Error::Canceled));
}

// API S4
#[test]
fn cancel_works_from_another_thread() {
    let (ctx, h) = Context::background().with_cancel();
    thread::spawn(move || h.cancel()).join().unwrap();
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

// API S4
#[test]
fn cancel_reaches_grandchildren_before_returning() {
    let clock = ManualClock::new();
    let (root, h) = Context::background().with_cancel();
    let (c1, _h1) = root.with_cancel();
    let (c2, _h2) = c1.with_timeout(HOUR);
    let (c3, _h3) = c2.with_deadline(Instant::now() + HOUR);
    let v4 = c3.with_value(&USER, "x");
    let v5 = v4.with(Tenant(1));
    let (m6, _h6) = v5.merge(&Context::background());
    let (other, _o) = Context::background().with_cancel();
    let (m7, _h7) = other.merge(&m6); // reached as the second parent
    let k8 = m7.with_clock(&clock);
    let (c9, _h9) = k8.with_timeout(HOUR);
    let (c10, _h10) = c9.with_timeout_cause(HOUR, Oops("t"));
    let (c11, _h11) = c10.with_deadline_cause(Instant::now() + HOUR, Oops("d"));
    let all = [
        &root, &c1, &c2, &c3, &v4, &v5, &m6, &m7, &k8, &c9, &c10, &c11,
    ];
    for c in all {
        assert!(!c.is_done(), "{c}");
    }
    h.cancel();
    for c in all {
        assert_eq!(c.err(), Some(Error::Canceled), "{c}");
        assert_eq!(sentinel(&c.cause().unwrap()), Some(Error::Canceled), "{c}");
    }
    assert!(
        !other.is_done(),
        "the other parent of a merge is not cancelled"
    );
}

// API S4
#[test]
fn cancel_reaches_descendants_when_called_from_another_thread() {
    let (root, h) = Context::background().with_cancel();
    let mut leaves = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..50 {
        let (c, hc) = root.with_cancel();
        let (g, hg) = c.with_timeout(HOUR);
        leaves.push(c);
        leaves.push(g);
        handles.push((hc, hg));
    }
    thread::spawn(move || h.cancel()).join().unwrap();
    assert!(leaves.iter().all(|c| c.err() == Some(Error::Canceled)));
}

// API S4
#[test]
fn cancelling_a_child_never_affects_its_parent_or_siblings() {
    let (parent, _hp) = Context::background().with_cancel();
    let (a, ha) = parent.with_cancel();
    let (b, _hb) = parent.with_cancel();
    let (a1, _ha1) = a.with_cancel();
    let (b1, _hb1) = b.with_timeout(HOUR);
    ha.cancel();
    assert!(a.is_done() && a1.is_done());
    assert!(!parent.is_done());
    assert!(!b.is_done());
    assert!(!b1.is_done());
}

// API S4, S16
#[test]
fn cancel_does_not_reach_through_without_cancel() {
    let (root, h) = Context::background().with_cancel();
    let detached = root.without_cancel();
    let (below, _hb) = detached.with_cancel();
    let (below_t, _ht) = detached.with_timeout(HOUR);
    h.cancel();
    assert!(root.is_done());
    assert!(!detached.is_done());
    assert!(!below.is_done());
    assert!(!below_t.is_done());
}

// API S4
#[test]
fn a_second_concurrent_cancel_returns_only_after_the_whole_subtree_is_done() {
    // Thread A cancels `c`; this thread sees `c` done and calls cancel again (on `c` itself,
    // then on its parent). Each call must return only once every descendant reports done.
    for round in 0..10 {
        let (parent, hp) = Context::background().with_cancel();
        let (c, hc) = parent.with_cancel();
        let kids: Vec<_> = (0..20_000).map(|_| c.with_cancel()).collect();
        let hc2 = hc.clone();
        let barrier = Arc::new(Barrier::new(2));
        let b2 = Arc::clone(&barrier);
        let t = thread::spawn(move || {
            b2.wait();
            hc2.cancel();
        });
        barrier.wait();
        while !c.is_done() {
            std::hint::spin_loop();
        }
        hc.cancel();
        let live_after_child_cancel = kids.iter().filter(|(k, _)| !k.is_done()).count();
        hp.cancel();
        let live_after_parent_cancel = kids.iter().filter(|(k, _)| !k.is_done()).count();
        t.join().unwrap();
        assert_eq!(
            (live_after_child_cancel, live_after_parent_cancel),
            (0, 0),
            "round {round}: cancel() returned while descendants were still live"
        );
    }
}

// API S4
/// The smallest tree whose cancellation walks more than one level below the cancelled node.
#[test]
fn cancel_of_a_three_level_chain_returns_with_every_level_done() {
    within("cancel of parent -> child -> grandchild", || {
        let (parent, h) = Context::background().with_cancel();
        let (child, _hc) = parent.with_cancel();
        let (grandchild, _hg) = child.with_cancel();
        h.cancel();
        assert!(child.is_done() && grandchild.is_done());
    });
}

// API S4, S24
/// A merge under two parents, both cancelled: `a`'s walk reaches the merge first and, before
/// walking the merge's subtree, takes the merge out of `b`'s children. `b`'s cancel must
/// still return only once the merge's subtree is done (API S4: it is `b`'s descendant).
/// Found by the loom model `merge_with_both_parents_cancelling_at_once`.
#[test]
fn second_parent_cancel_waits_for_the_merge_subtree() {
    let fan = merge_fan();
    within("merge under two cancelling parents", move || {
        for round in 0..20 {
            let (a, ha) = Context::background().with_cancel();
            let (b, hb) = Context::background().with_cancel();
            let (m, _hm) = a.merge(&b);
            let kids: Vec<_> = (0..fan).map(|_| m.with_cancel()).collect();
            let t = thread::spawn(move || ha.cancel());
            while !m.is_done() {
                std::hint::spin_loop();
            }
            hb.cancel();
            let missing = kids.iter().filter(|(k, _)| !k.is_done()).count();
            t.join().unwrap();
            assert_eq!(
                missing, 0,
                "round {round}: b's cancel returned before {missing} descendants of b were done"
            );
        }
    });
}

/// The children of the merge above: 20,000, so that `a`'s walk is still under way when `b`'s
/// cancel comes; fewer (down to 2,000) when `CTXKIT_TEST_SCALE` makes the big trees smaller,
/// as under valgrind, where everything runs tens of times slower.
fn merge_fan() -> usize {
    (env_or("CTXKIT_TEST_SCALE", 1_000_000) as usize / 50).clamp(2_000, 20_000)
}

// API S4, S7, S8, S26. A context whose children have all been dropped (a request's context
// once its calls are done) has nothing left to walk; its cancellation still does all of it:
// err, cause and origin, its own timer forgotten, its waiters and callbacks reached, and
// later children born done.
#[test]
fn a_context_whose_children_are_all_gone_cancels_fully() {
    let clock = ManualClock::new();
    let (ctx, h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(1));
    for _ in 0..3 {
        let (child, hc) = ctx.with_cancel();
        let (grandchild, _hg) = child.with_timeout(HOUR);
        drop((child, hc, grandchild));
    }
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let _on = ctx.on_cancel(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
    let waiter = {
        let ctx = ctx.clone();
        thread::spawn(move || ctx.wait())
    };
    let line = line!() + 1;
    h.cancel_with_cause(Oops("done"));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(oops(&ctx.cause().unwrap()), Some("done"));
    let origin = ctx.origin().expect("an origin once done");
    assert_eq!(origin.kind(), ctxkit::OriginKind::Cancel);
    assert_eq!(origin.location().map(|l| l.line()), Some(line));
    assert!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        "on_cancel ran"
    );
    assert_eq!(
        within("the waiter wakes", move || waiter.join().unwrap()),
        Error::Canceled
    );
    // Its own deadline passing changes nothing (S8).
    clock.advance(Duration::from_secs(2));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let (late, _hl) = ctx.with_cancel();
    assert_eq!(late.err(), Some(Error::Canceled));
    assert_eq!(oops(&late.cause().unwrap()), Some("done"));
}

// ---------------------------------------------------------------------------------------
// S5: children of done parents
// ---------------------------------------------------------------------------------------

// API S5
#[test]
fn child_of_cancelled_parent_is_done_at_creation_with_parents_err_and_cause() {
    let (parent, h) = Context::background().with_cancel();
    h.cancel_with_cause(Oops("parent"));
    let (c1, _h1) = parent.with_cancel();
    let (c2, _h2) = parent.with_timeout(HOUR);
    let (c3, _h3) = parent.with_deadline(Instant::now() + HOUR);
    let (c4, _h4) = parent.with_timeout_cause(HOUR, Oops("own"));
    let c5 = parent.with_value(&USER, "u");
    let (c6, _h6) = parent.merge(&Context::background());
    let (c7, _h7) = Context::background().merge(&parent);
    let (c8, _h8) = parent.with_clock(&ManualClock::new()).with_cancel();
    for c in [&c1, &c2, &c3, &c4, &c5, &c6, &c7, &c8] {
        assert_eq!(c.err(), Some(Error::Canceled), "{c}");
        assert_eq!(oops(&c.cause().unwrap()), Some("parent"), "{c}");
    }
}

// API S5, S26. A parent cancelled plainly while it had no child is made done without its
// lock; its children are born done without locking it, and must still see all of it.
#[test]
fn children_of_a_parent_done_without_a_cause_are_born_done_with_its_err_and_origin() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (parent, h) = root.with_timeout(HOUR);
    h.cancel();
    let (expiring, _he) = root.with_timeout(Duration::from_secs(1));
    clock.advance(Duration::from_secs(1));
    for (parent, err) in [
        (&parent, Error::Canceled),
        (&expiring, Error::DeadlineExceeded),
    ] {
        let (c1, _h1) = parent.with_cancel();
        let (c2, _h2) = c1.with_timeout(HOUR);
        let c3 = c2.with_value(&USER, "u").with_name("leaf");
        let (c4, _h4) = c3.with_cancel();
        for c in [&c1, &c2, &c3, &c4] {
            assert_eq!(c.err(), Some(err), "{c}");
            assert_eq!(sentinel(&c.cause().unwrap()), Some(err), "{c}");
            assert_eq!(c.origin(), parent.origin(), "{c}");
            assert_eq!(c.deadline(), parent.deadline(), "{c}");
        }
        assert_eq!(c4.value(&USER), Some(&"u"));
        let (tx, rx) = std::sync::mpsc::channel();
        let _after = c4.after_func(move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(10))
            .expect("after_func ran");
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let _on = c4.on_cancel(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        assert!(
            ran.load(std::sync::atomic::Ordering::SeqCst),
            "on_cancel ran at once"
        );
        assert_eq!(c4.done().err(), Some(err));
    }
}

// API S5
#[test]
fn child_of_expired_parent_keeps_deadline_exceeded_and_its_cause() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (parent, _h) = root.with_timeout_cause(Duration::from_secs(1), Oops("slow"));
    clock.advance(Duration::from_secs(1));
    let (c, _hc) = parent.with_cancel();
    let (t, _ht) = parent.with_timeout(HOUR);
    for c in [&c, &t] {
        assert_eq!(c.err(), Some(Error::DeadlineExceeded));
        assert_eq!(oops(&c.cause().unwrap()), Some("slow"));
    }
}

// API S5, S13
#[test]
fn past_deadline_under_cancelled_parent_keeps_parent_error() {
    let (parent, h) = Context::background().with_cancel();
    h.cancel_with_cause(Oops("parent"));
    let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
    let (a, _a) = parent.with_deadline(past);
    let (b, _b) = parent.with_deadline_cause(past, Oops("deadline"));
    let (c, _c) = parent.with_timeout(Duration::ZERO);
    let (d, _d) = parent.with_timeout_cause(Duration::ZERO, Oops("deadline"));
    for x in [&a, &b, &c, &d] {
        assert_eq!(x.err(), Some(Error::Canceled), "{x}");
        assert_eq!(oops(&x.cause().unwrap()), Some("parent"), "{x}");
    }
}

// API S5, S7. Found by tests/model.rs: the sentinel cause of a plainly cancelled parent
// must replace the child's own deadline cause, not only a custom one.
#[test]
fn deadline_cause_under_a_plainly_cancelled_parent_is_the_parents_sentinel() {
    let (parent, h) = Context::background().with_cancel();
    h.cancel();
    let (child, _c) = parent.with_timeout_cause(Duration::ZERO, Oops("deadline"));
    assert_eq!(child.err(), Some(Error::Canceled));
    let cause = child.cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<Error>(),
        Some(&Error::Canceled),
        "{cause}"
    );
}

// ---------------------------------------------------------------------------------------
// S6: Error
// ---------------------------------------------------------------------------------------

// API S6
#[test]
fn error_displays_exactly_as_go() {
    assert_eq!(Error::Canceled.to_string(), "context canceled");
    assert_eq!(
        Error::DeadlineExceeded.to_string(),
        "context deadline exceeded"
    );
}

// API S6
#[test]
fn only_deadline_exceeded_is_a_timeout() {
    assert!(Error::DeadlineExceeded.is_timeout());
    assert!(!Error::Canceled.is_timeout());
}

// API S6
#[test]
fn error_converts_to_io_error_with_timed_out_and_never_interrupted() {
    let e: std::io::Error = Error::DeadlineExceeded.into();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    let e: std::io::Error = Error::Canceled.into();
    assert_ne!(e.kind(), std::io::ErrorKind::Interrupted);
    assert_ne!(e.kind(), std::io::ErrorKind::TimedOut);
    // Usable with `?` in io code.
    fn io_op(ctx: &Context) -> std::io::Result<()> {
        if let Some(err) = ctx.err() {
            return Err(err.into());
        }
        Ok(())
    }
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    assert_eq!(
        io_op(&ctx).unwrap_err().kind(),
        std::io::ErrorKind::TimedOut
    );
}

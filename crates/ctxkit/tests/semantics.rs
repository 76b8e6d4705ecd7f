//! One group of tests per numbered rule of the API contract (S1–S25). Each test is named after
//! the promise it checks and cites its rule.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{AfterFunc, CancelGuard, CancelHandle, Cause, Context, Done, Error, Key, ManualClock};

mod common;
use common::{
    drop_flag, eventually, oops, poll_once, sentinel, within, Oops, Tenant, HOUR, LONG, PAYLOAD,
    REQUEST, USER,
};

// Two keys with the same name and type: still two different keys (S15).
static ID_A: Key<u32> = Key::new("id");
static ID_B: Key<u32> = Key::new("id");

// ---------------------------------------------------------------------------------------
// Types (compile-time checks of the trait promises)
// ---------------------------------------------------------------------------------------

#[test]
fn public_types_have_the_promised_traits() {
    fn clone_send_sync_static_debug_display<
        T: Clone + Send + Sync + 'static + fmt::Debug + fmt::Display,
    >() {
    }
    fn clone_send_sync_debug<T: Clone + Send + Sync + fmt::Debug>() {}
    fn send_sync<T: Send + Sync>() {}
    fn error_like<T: Clone + Send + Sync + fmt::Debug + fmt::Display + std::error::Error>() {}
    fn done_like<T: Future<Output = Error> + Send + Unpin + 'static>() {}
    clone_send_sync_static_debug_display::<Context>();
    clone_send_sync_debug::<CancelHandle>();
    send_sync::<CancelGuard>();
    send_sync::<AfterFunc>();
    send_sync::<Key<u8>>();
    send_sync::<ManualClock>();
    let _ = ManualClock::new().clone();
    error_like::<Cause>();
    done_like::<Done>();
    fn copy_eq_hash<T: Copy + fmt::Debug + PartialEq + Eq + std::hash::Hash>() {}
    copy_eq_hash::<Error>();
}

// ---------------------------------------------------------------------------------------
// S1: roots
// ---------------------------------------------------------------------------------------

// API S1
#[test]
fn background_and_todo_are_never_done() {
    for root in [Context::background(), Context::todo()] {
        assert_eq!(root.err(), None);
        assert!(root.cause().is_none());
        assert_eq!(root.deadline(), None);
        assert_eq!(root.remaining(), None);
        assert!(!root.is_done());
    }
}

// API S1
#[test]
fn root_done_future_never_completes() {
    for root in [Context::background(), Context::todo()] {
        let mut done = root.done();
        for _ in 0..3 {
            assert!(poll_once(&mut done).is_pending());
        }
    }
}

// API S1
#[test]
fn root_wait_timeout_returns_none_after_the_timeout() {
    for root in [Context::background(), Context::todo()] {
        let d = Duration::from_millis(30);
        let start = Instant::now();
        assert_eq!(root.wait_timeout(d), None);
        assert!(
            start.elapsed() >= d,
            "returned early: {:?}",
            start.elapsed()
        );
    }
}

// API S1
#[test]
fn roots_cannot_be_cancelled_by_their_children() {
    let (_c, h) = Context::background().with_cancel();
    let (_t, ht) = Context::todo().with_cancel();
    h.cancel();
    ht.cancel();
    assert!(!Context::background().is_done());
    assert!(!Context::todo().is_done());
}

// ---------------------------------------------------------------------------------------
// S2: Display
// ---------------------------------------------------------------------------------------

// API S2
#[test]
fn roots_display_as_go_does() {
    assert_eq!(Context::background().to_string(), "context.Background");
    assert_eq!(Context::todo().to_string(), "context.TODO");
}

// API S2
#[test]
fn display_is_the_chain_of_derivations() {
    let bg = Context::background();
    let (c, _h) = bg.with_cancel();
    assert_eq!(c.to_string(), "context.Background.WithCancel");
    let (t, _ht) = Context::todo().with_cancel();
    assert_eq!(t.to_string(), "context.TODO.WithCancel");

    let v = c.with_value(&USER, "gopher");
    let s = v.to_string();
    assert!(
        s.starts_with("context.Background.WithCancel.WithValue(user, "),
        "{s}"
    );
    assert!(s.ends_with(')'), "{s}");

    let w = v.without_cancel();
    let s = w.to_string();
    assert!(
        s.starts_with("context.Background.WithCancel.WithValue(user"),
        "{s}"
    );
    assert!(s.ends_with(").WithoutCancel"), "{s}");

    let (c2, _h2) = w.with_cancel();
    assert!(
        c2.to_string().ends_with(".WithoutCancel.WithCancel"),
        "{c2}"
    );

    // A node derived from a value context prints after the value.
    let (vc, _hv) = bg.with_value(&REQUEST, 7).with_cancel();
    let s = vc.to_string();
    assert!(
        s.starts_with("context.Background.WithValue(request, "),
        "{s}"
    );
    assert!(s.ends_with(").WithCancel"), "{s}");
}

// API S2
#[test]
fn with_displays_the_type_name() {
    let ctx = Context::background().with(Tenant(3));
    let s = ctx.to_string();
    assert!(s.starts_with("context.Background.WithValue("), "{s}");
    assert!(s.contains("Tenant"), "{s}");
}

// API S2
#[test]
fn deadline_display_contains_the_time_left() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (ctx, _h) = root.with_timeout(Duration::from_secs(90));
    let s = ctx.to_string();
    assert!(s.starts_with("context.Background"), "{s}");
    assert!(s.contains(".WithDeadline("), "{s}");
    assert!(s.contains("90s"), "{s}");
    clock.advance(Duration::from_secs(30));
    let s = ctx.to_string();
    assert!(s.contains("60s"), "{s}");

    // Real time too: the text mentions some time left below one hour.
    let (real, _hr) = Context::background().with_timeout(HOUR);
    let s = real.to_string();
    assert!(s.starts_with("context.Background.WithDeadline("), "{s}");
    assert!(s.ends_with(')'), "{s}");
}

// API S2
#[test]
fn merge_display_contains_both_chains() {
    let (a, _ha) = Context::background().with_cancel();
    let (b, _hb) = Context::todo().with_cancel();
    let (m, _hm) = a.merge(&b);
    let s = m.to_string();
    assert!(s.starts_with("context.Background.WithCancel.Merge("), "{s}");
    assert!(s.contains("context.TODO.WithCancel"), "{s}");
    assert!(s.ends_with(')'), "{s}");
}

// API S2
#[test]
fn deep_chain_displays_every_link() {
    let mut ctx = Context::background();
    let mut handles = Vec::new();
    for _ in 0..1000 {
        let (c, h) = ctx.with_cancel();
        ctx = c;
        handles.push(h);
    }
    let s = ctx.to_string();
    assert_eq!(s.matches(".WithCancel").count(), 1000);
    assert!(s.starts_with("context.Background.WithCancel"));
}

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

// ---------------------------------------------------------------------------------------
// S7–S9: causes
// ---------------------------------------------------------------------------------------

// API S7
#[test]
fn cause_is_none_while_not_done() {
    let (a, _ha) = Context::background().with_cancel();
    let (b, _hb) = a.with_timeout_cause(HOUR, Oops("t"));
    assert!(a.cause().is_none());
    assert!(b.cause().is_none());
}

// API S7
#[test]
fn cancel_with_cause_gives_that_cause() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel_with_cause(Oops("backend down"));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    assert!(cause.is::<Oops>());
    assert!(!cause.is::<Error>());
    assert_eq!(cause.downcast_ref::<Oops>(), Some(&Oops("backend down")));
    assert_eq!(cause.to_string(), "oops: backend down");

    let (ctx, h) = Context::background().with_cancel();
    h.cancel_with_cause("plain text");
    assert_eq!(ctx.cause().unwrap().to_string(), "plain text");
}

// API S7, S9
#[test]
fn plain_cancel_gives_the_canceled_sentinel_as_cause() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let cause = ctx.cause().unwrap();
    assert!(cause.is::<Error>());
    assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled));
    assert_eq!(cause.to_string(), "context canceled");
}

// API S7, S9
#[test]
fn deadline_gives_deadline_cause_else_the_sentinel() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (plain, _a) = root.with_timeout(Duration::from_secs(1));
    let (caused, _b) = root.with_timeout_cause(Duration::from_secs(1), Oops("too slow"));
    let (dl_caused, _c) =
        root.with_deadline_cause(clock.now() + Duration::from_secs(1), Oops("dl"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(plain.err(), Some(Error::DeadlineExceeded));
    let cause = plain.cause().unwrap();
    assert!(cause.is::<Error>());
    assert_eq!(sentinel(&cause), Some(Error::DeadlineExceeded));
    assert_eq!(caused.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&caused.cause().unwrap()), Some("too slow"));
    assert_eq!(dl_caused.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&dl_caused.cause().unwrap()), Some("dl"));
}

// API S7, S14
#[test]
fn handle_cancel_of_deadline_with_cause_gives_canceled_not_the_deadline_cause() {
    let (ctx, h) = Context::background().with_timeout_cause(HOUR, Oops("deadline"));
    h.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(sentinel(&ctx.cause().unwrap()), Some(Error::Canceled));

    let (ctx, h) = Context::background().with_deadline_cause(Instant::now() + HOUR, Oops("dl"));
    h.cancel_with_cause(Oops("mine"));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(oops(&ctx.cause().unwrap()), Some("mine"));
}

// API S8
#[test]
fn first_cause_wins_on_repeated_cancels() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel_with_cause(Oops("first"));
    h.cancel_with_cause(Oops("second"));
    h.cancel();
    assert_eq!(oops(&ctx.cause().unwrap()), Some("first"));

    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    h.cancel_with_cause(Oops("late"));
    assert_eq!(sentinel(&ctx.cause().unwrap()), Some(Error::Canceled));
}

// API S8
#[test]
fn descendants_take_ancestor_cause_unless_already_done() {
    let (root, h) = Context::background().with_cancel();
    let (early, he) = root.with_cancel();
    let (early_kid, _k) = early.with_cancel();
    let (late, _hl) = root.with_cancel();
    let (late_kid, _lk) = late.with_timeout_cause(HOUR, Oops("own deadline"));
    he.cancel_with_cause(Oops("early"));
    h.cancel_with_cause(Oops("root"));
    assert_eq!(oops(&early.cause().unwrap()), Some("early"));
    assert_eq!(oops(&early_kid.cause().unwrap()), Some("early"));
    assert_eq!(oops(&root.cause().unwrap()), Some("root"));
    assert_eq!(oops(&late.cause().unwrap()), Some("root"));
    assert_eq!(late_kid.err(), Some(Error::Canceled));
    assert_eq!(oops(&late_kid.cause().unwrap()), Some("root"));
}

// API S8
#[test]
fn cancel_with_cause_after_deadline_changes_nothing() {
    let (ctx, h) = Context::background().with_timeout(Duration::ZERO);
    h.cancel_with_cause(Oops("late"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(
        sentinel(&ctx.cause().unwrap()),
        Some(Error::DeadlineExceeded)
    );
}

// API S9
#[test]
fn without_cancel_cause_is_none() {
    let (parent, h) = Context::background().with_cancel();
    let detached = parent.without_cancel();
    assert!(detached.cause().is_none());
    h.cancel_with_cause(Oops("x"));
    assert!(detached.cause().is_none());
    assert!(parent.without_cancel().cause().is_none());
}

// API S9
#[test]
fn sentinel_given_as_cause_stays_an_error() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel_with_cause(Error::DeadlineExceeded);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    assert!(cause.is::<Error>());
    assert_eq!(sentinel(&cause), Some(Error::DeadlineExceeded));
}

// ---------------------------------------------------------------------------------------
// S10–S14: deadlines
// ---------------------------------------------------------------------------------------

// API S10
#[test]
fn deadline_is_the_earliest_of_the_context_and_its_ancestors() {
    let now = Instant::now();
    let early = now + Duration::from_secs(100);
    let late = now + Duration::from_secs(200);
    let (p, _hp) = Context::background().with_deadline(early);
    assert_eq!(p.deadline(), Some(early));
    let (c, _hc) = p.with_deadline(late);
    assert_eq!(c.deadline(), Some(early));
    let v = c.with_value(&USER, "v");
    assert_eq!(v.deadline(), Some(early));
    let (c2, _h2) = v.with_cancel();
    assert_eq!(c2.deadline(), Some(early));
    let earlier = now + Duration::from_secs(50);
    let (c3, _h3) = c2.with_deadline(earlier);
    assert_eq!(c3.deadline(), Some(earlier));
    assert_eq!(
        c2.deadline(),
        Some(early),
        "a child does not change its parent"
    );
}

// API S10, S16
#[test]
fn without_cancel_has_no_deadline_and_resets_inheritance() {
    let (p, _hp) = Context::background().with_timeout(Duration::from_secs(100));
    let detached = p.without_cancel();
    assert_eq!(detached.deadline(), None);
    assert_eq!(detached.remaining(), None);
    let (c, _hc) = detached.with_cancel();
    assert_eq!(c.deadline(), None);
    let at = Instant::now() + Duration::from_secs(500);
    let (t, _ht) = detached.with_deadline(at);
    assert_eq!(t.deadline(), Some(at));
}

// API S10
#[test]
fn with_timeout_deadline_is_now_plus_timeout() {
    let d = Duration::from_secs(100);
    let before = Instant::now();
    let (ctx, _h) = Context::background().with_timeout(d);
    let after = Instant::now();
    let dl = ctx.deadline().unwrap();
    assert!(dl >= before + d && dl <= after + d);
    let rem = ctx.remaining().unwrap();
    assert!(rem <= d && rem > d - Duration::from_secs(30));
}

// API S10, S25
#[test]
fn remaining_is_deadline_minus_now_saturating_at_zero() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (ctx, _h) = root.with_timeout(Duration::from_secs(30));
    assert_eq!(ctx.remaining(), Some(Duration::from_secs(30)));
    clock.advance(Duration::from_secs(10));
    assert_eq!(ctx.remaining(), Some(Duration::from_secs(20)));
    clock.advance(Duration::from_secs(100));
    assert_eq!(ctx.remaining(), Some(Duration::ZERO));

    // Real clock: a past deadline under a parent cancelled first still saturates.
    let (p, hp) = Context::background().with_cancel();
    hp.cancel();
    let past = Instant::now().checked_sub(Duration::from_secs(5)).unwrap();
    let (c, _hc) = p.with_deadline(past);
    assert_eq!(c.remaining(), Some(Duration::ZERO));
}

// API S11
#[test]
fn deadline_fires_by_itself_and_never_early() {
    let mut ctxs = Vec::new();
    for i in 0..40u64 {
        let (ctx, h) = Context::background().with_timeout(Duration::from_millis(1 + i % 20));
        let fired_at = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&fired_at);
        let reg = ctx.on_cancel(move || *slot.lock().unwrap() = Some(Instant::now()));
        ctxs.push((ctx, h, fired_at, reg));
    }
    // Nobody polls the contexts: only the timer can cancel them.
    for (ctx, _h, fired_at, _reg) in &ctxs {
        assert!(eventually(|| fired_at.lock().unwrap().is_some()), "{ctx}");
        let at = fired_at.lock().unwrap().unwrap();
        assert!(at >= ctx.deadline().unwrap(), "fired before its deadline");
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    }
}

// API S11
#[test]
fn an_earlier_deadline_wakes_a_timer_waiting_for_a_later_one() {
    let (_late, _hl) = Context::background().with_timeout(HOUR);
    thread::sleep(Duration::from_millis(5)); // the timer now sleeps towards the late one
    let (early, _he) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(early.wait_timeout(LONG), Some(Error::DeadlineExceeded));
    assert!(Instant::now() >= early.deadline().unwrap());
}

// API S11
#[test]
fn deadline_is_observed_done_no_earlier_than_the_deadline() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(30));
    let dl = ctx.deadline().unwrap();
    loop {
        let done = ctx.is_done();
        let now = Instant::now();
        if done {
            assert!(now >= dl);
            break;
        }
        assert!(now < dl + LONG, "deadline did not fire");
        thread::yield_now();
    }
    assert_eq!(ctx.wait(), Error::DeadlineExceeded);
}

// API S12
#[test]
fn later_deadline_under_earlier_parent_makes_a_plain_cancellable_child() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (parent, _hp) = root.with_timeout(Duration::from_secs(10));
    let (child, hc) = parent.with_deadline_cause(clock.now() + HOUR, Oops("unused"));
    assert_eq!(child.deadline(), parent.deadline());
    let s = child.to_string();
    assert!(s.ends_with(".WithCancel"), "{s}");
    let (child2, _h2) = parent.with_timeout_cause(HOUR, Oops("unused"));
    assert_eq!(child2.deadline(), parent.deadline());
    clock.advance(Duration::from_secs(10));
    for c in [&child, &child2] {
        assert_eq!(c.err(), Some(Error::DeadlineExceeded));
        assert_eq!(sentinel(&c.cause().unwrap()), Some(Error::DeadlineExceeded));
    }
    drop(hc);
    // Its handle still cancels it (and only it).
    let (parent, _hp) = root.with_timeout(Duration::from_secs(10));
    let (child, hc) = parent.with_timeout(HOUR);
    hc.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert!(!parent.is_done());
}

// API S13
#[test]
fn zero_timeout_is_done_at_creation() {
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(
        sentinel(&ctx.cause().unwrap()),
        Some(Error::DeadlineExceeded)
    );
    let (ctx, _h) = Context::background().with_timeout_cause(Duration::ZERO, Oops("z"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&ctx.cause().unwrap()), Some("z"));
    let clock = ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::ZERO);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

// API S13
#[test]
fn past_deadline_is_done_at_creation() {
    let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
    let (ctx, _h) = Context::background().with_deadline(past);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    let (ctx, _h) = Context::background().with_deadline_cause(past, Oops("past"));
    assert_eq!(oops(&ctx.cause().unwrap()), Some("past"));
    let (ctx, _h) = Context::background().with_deadline(Instant::now());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    // As far in the past as the platform allows.
    let mut far = Instant::now();
    for secs in [1u64 << 40, 1 << 30, 1 << 20, 1 << 10, 1] {
        while let Some(t) = far.checked_sub(Duration::from_secs(secs)) {
            far = t;
        }
    }
    let (ctx, _h) = Context::background().with_deadline(far);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    let clock = ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_deadline(clock.now() - Duration::from_millis(1));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

// API S13
#[test]
fn duration_max_timeout_neither_panics_nor_fires() {
    let (ctx, h) = Context::background().with_timeout(Duration::MAX);
    let (ctx2, _h2) = Context::background().with_timeout_cause(Duration::MAX, Oops("never"));
    let (ctx3, _h3) = Context::background().with_timeout(Duration::new(u64::MAX / 2, 0));
    for c in [&ctx, &ctx2, &ctx3] {
        assert!(!c.is_done());
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(c.deadline().map_or(true, |d| d >= far), "{c:?}");
        assert!(c
            .remaining()
            .map_or(true, |r| r >= Duration::from_secs(100 * 365 * 24 * 3600)));
        let _ = c.to_string();
    }
    assert_eq!(ctx.wait_timeout(Duration::from_millis(20)), None);
    h.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));

    // Under a deadline parent it keeps the parent's deadline.
    let (p, _hp) = Context::background().with_timeout(HOUR);
    let (c, _hc) = p.with_timeout(Duration::MAX);
    assert_eq!(c.deadline(), p.deadline());
}

// API S13, S25
#[test]
fn duration_max_timeout_on_a_manual_clock_never_fires() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    clock.advance(Duration::from_secs(3600 * 24 * 365));
    let (ctx, _h) = root.with_timeout(Duration::MAX);
    assert!(!ctx.is_done());
    clock.advance(Duration::from_secs(100 * 3600 * 24 * 365));
    assert!(!ctx.is_done());
    clock.advance(Duration::MAX);
    let (late, _hl) = root.with_timeout(Duration::MAX);
    assert!(!late.is_done());
    let _ = ctx.remaining();
    let _ = ctx.to_string();
}

// API S13
#[test]
fn far_future_instant_neither_panics_nor_fires() {
    let mut far = Instant::now();
    for secs in [1u64 << 40, 1 << 30, 1 << 20, 1 << 10, 1] {
        while let Some(t) = far.checked_add(Duration::from_secs(secs)) {
            far = t;
        }
    }
    let hundred_years = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    for at in [
        far,
        hundred_years + Duration::from_secs(200 * 365 * 24 * 3600),
    ] {
        let (ctx, h) = Context::background().with_deadline(at);
        let (ctx2, _h2) = Context::background().with_deadline_cause(at, Oops("never"));
        for c in [&ctx, &ctx2] {
            assert!(!c.is_done());
            assert!(c.deadline().map_or(true, |d| d >= hundred_years));
            let _ = c.remaining();
            let _ = c.to_string();
        }
        h.cancel();
        assert_eq!(ctx.err(), Some(Error::Canceled));
    }
    // A deadline inside the representable range is kept exactly.
    let (ctx, _h) = Context::background().with_deadline(hundred_years);
    assert_eq!(ctx.deadline(), Some(hundred_years));
    assert!(!ctx.is_done());
}

// API S14
#[test]
fn deadline_handle_cancels_with_canceled_and_stops_its_timer() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (ctx, h) = root.with_timeout(Duration::from_secs(1));
    let fired = Arc::new(AtomicUsize::new(0));
    let f2 = Arc::clone(&fired);
    let _r = ctx.on_cancel(move || {
        f2.fetch_add(1, Ordering::SeqCst);
    });
    h.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    clock.advance(Duration::from_secs(5));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(fired.load(Ordering::SeqCst), 1);

    let (parent, _hp) = Context::background().with_cancel();
    let (flag, dropped) = drop_flag();
    let (child, hc) = parent.with_value(&PAYLOAD, flag).with_timeout(HOUR);
    hc.cancel();
    drop((child, hc));
    assert!(
        dropped.load(Ordering::SeqCst),
        "a cancelled deadline child is released"
    );
}

// ---------------------------------------------------------------------------------------
// S15–S16: values
// ---------------------------------------------------------------------------------------

// API S15
#[test]
fn value_finds_the_nearest_with_value_above() {
    let bg = Context::background();
    assert_eq!(bg.value(&USER), None);
    let a = bg.with_value(&USER, "a");
    let b = a.with_value(&REQUEST, 1);
    let c = b.with_value(&USER, "c");
    assert_eq!(a.value(&USER), Some(&"a"));
    assert_eq!(b.value(&USER), Some(&"a"));
    assert_eq!(c.value(&USER), Some(&"c"));
    assert_eq!(c.value(&REQUEST), Some(&1));
    assert_eq!(a.value(&REQUEST), None);
}

// API S15
#[test]
fn two_keys_with_the_same_name_are_different_keys() {
    assert_eq!(ID_A.name(), ID_B.name());
    let ctx = Context::background().with_value(&ID_A, 1);
    assert_eq!(ctx.value(&ID_A), Some(&1));
    assert_eq!(ctx.value(&ID_B), None);
    let ctx = ctx.with_value(&ID_B, 2);
    assert_eq!(ctx.value(&ID_A), Some(&1));
    assert_eq!(ctx.value(&ID_B), Some(&2));
}

// API S15
#[test]
fn get_finds_the_nearest_with_of_that_type() {
    let ctx = Context::background()
        .with(Tenant(1))
        .with(5u8)
        .with(Tenant(2));
    assert_eq!(ctx.get::<Tenant>(), Some(&Tenant(2)));
    assert_eq!(ctx.get::<u8>(), Some(&5));
    assert_eq!(ctx.get::<u16>(), None);
    assert_eq!(Context::background().get::<Tenant>(), None);
}

// API S15
#[test]
fn key_and_type_namespaces_are_separate() {
    let ctx = Context::background().with_value(&REQUEST, 1);
    assert_eq!(ctx.get::<u64>(), None);
    let ctx = Context::background().with(2u64);
    assert_eq!(ctx.value(&REQUEST), None);
    let both = Context::background().with_value(&REQUEST, 1).with(2u64);
    assert_eq!(both.value(&REQUEST), Some(&1));
    assert_eq!(both.get::<u64>(), Some(&2));
}

// API S15, S16
#[test]
fn values_stay_readable_after_cancel_and_through_every_derivation() {
    let clock = ManualClock::new();
    let base = Context::background().with_value(&USER, "u").with(Tenant(9));
    let (c, h) = base.with_cancel();
    let (t, _ht) = c.with_timeout(HOUR);
    let (m, _hm) = t.merge(&Context::background());
    let k = m.with_clock(&clock);
    let w = k.without_cancel();
    let (after_w, _ha) = w.with_cancel();
    h.cancel();
    for ctx in [&c, &t, &m, &k, &w, &after_w] {
        assert_eq!(ctx.value(&USER), Some(&"u"), "{ctx}");
        assert_eq!(ctx.get::<Tenant>(), Some(&Tenant(9)), "{ctx}");
    }
    assert!(c.is_done() && m.is_done() && k.is_done());
    assert!(!w.is_done() && !after_w.is_done());
}

// API S15
#[test]
fn values_with_many_keys_shadow_independently() {
    static K: [Key<usize>; 8] = [
        Key::new("k0"),
        Key::new("k1"),
        Key::new("k2"),
        Key::new("k3"),
        Key::new("k4"),
        Key::new("k5"),
        Key::new("k6"),
        Key::new("k7"),
    ];
    let mut model = [None; 8];
    let mut ctx = Context::background();
    let mut seed = 12345u64;
    for step in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = (seed % 8) as usize;
        ctx = ctx.with_value(&K[i], step);
        model[i] = Some(step);
        if step % 3 == 0 {
            ctx = ctx.with_cancel().0;
        }
        for j in 0..8 {
            assert_eq!(ctx.value(&K[j]).copied(), model[j]);
        }
    }
}

// API S16
#[test]
fn without_cancel_keeps_values_but_is_never_done() {
    let (parent, h) = Context::background()
        .with_value(&USER, "kept")
        .with_timeout(Duration::from_millis(5));
    let detached = parent.without_cancel();
    h.cancel();
    assert!(parent.is_done());
    assert_eq!(detached.err(), None);
    assert!(!detached.is_done());
    assert_eq!(detached.deadline(), None);
    assert_eq!(detached.value(&USER), Some(&"kept"));
    assert!(poll_once(&mut detached.done()).is_pending());
    assert_eq!(detached.wait_timeout(Duration::from_millis(20)), None);
}

// ---------------------------------------------------------------------------------------
// S17–S18: waiting
// ---------------------------------------------------------------------------------------

// API S17
#[test]
fn done_completes_at_once_when_already_done() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let mut done = ctx.done();
    assert_eq!(poll_once(&mut done), Poll::Ready(Error::Canceled));
    assert_eq!(futures::executor::block_on(ctx.done()), Error::Canceled);
    assert_eq!(ctx.wait(), Error::Canceled);
    assert_eq!(ctx.done().wait(), Error::Canceled);
    assert_eq!(ctx.wait_timeout(Duration::ZERO), Some(Error::Canceled));
}

// API S17
#[test]
fn done_completes_after_cancel_from_another_thread() {
    let (ctx, h) = Context::background().with_cancel();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        h.cancel();
    });
    let err = futures::executor::block_on(ctx.done());
    assert_eq!(err, Error::Canceled);
    assert!(ctx.err().is_some());
    t.join().unwrap();
}

// API S17
#[test]
fn done_completes_when_the_deadline_passes_without_a_runtime() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let err = futures::executor::block_on(ctx.done());
    assert_eq!(err, Error::DeadlineExceeded);
    assert!(Instant::now() >= ctx.deadline().unwrap());
}

// API S17
#[test]
fn wait_and_done_wait_block_until_cancelled() {
    for use_done in [false, true] {
        let (ctx, h) = Context::background().with_cancel();
        let c2 = ctx.clone();
        let waiter = thread::spawn(move || {
            let err = if use_done {
                c2.done().wait()
            } else {
                c2.wait()
            };
            (err, c2.err())
        });
        thread::sleep(Duration::from_millis(10));
        h.cancel_with_cause(Oops("stop"));
        let (err, after) = waiter.join().unwrap();
        assert_eq!(err, Error::Canceled);
        assert_eq!(after, Some(Error::Canceled));
    }
}

// API S17
#[test]
fn wait_timeout_returns_the_error_when_done_first_and_none_after_timeout() {
    let (ctx, h) = Context::background().with_cancel();
    let start = Instant::now();
    assert_eq!(ctx.wait_timeout(Duration::from_millis(20)), None);
    assert!(start.elapsed() >= Duration::from_millis(20));
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        h.cancel();
    });
    assert_eq!(ctx.wait_timeout(LONG), Some(Error::Canceled));
    t.join().unwrap();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(5));
    assert_eq!(ctx.wait_timeout(LONG), Some(Error::DeadlineExceeded));
}

// API S17
#[test]
fn many_waiters_are_all_woken() {
    let (ctx, h) = Context::background().with_cancel();
    let (child, _hc) = ctx.with_cancel();
    let mut waiters = Vec::new();
    for i in 0..16 {
        let c = if i % 2 == 0 {
            ctx.clone()
        } else {
            child.clone()
        };
        waiters.push(thread::spawn(move || c.wait()));
    }
    // Some futures that are dropped before completion must not disturb the rest.
    for _ in 0..10 {
        let mut d = ctx.done();
        assert!(poll_once(&mut d).is_pending());
    }
    thread::sleep(Duration::from_millis(10));
    h.cancel();
    for w in waiters {
        assert_eq!(w.join().unwrap(), Error::Canceled);
    }
}

// API S18
#[test]
fn run_returns_the_output_when_the_future_finishes_first() {
    let (ctx, _h) = Context::background().with_cancel();
    assert_eq!(futures::executor::block_on(ctx.run(async { 42 })), Ok(42));
    let bg = Context::background();
    assert_eq!(futures::executor::block_on(bg.run(async { "x" })), Ok("x"));
}

// API S18
#[test]
fn run_returns_the_error_and_drops_the_future_when_done_first() {
    let (ctx, h) = Context::background().with_cancel();
    let (flag, dropped) = drop_flag();
    let fut = async move {
        let _keep = flag;
        std::future::pending::<()>().await;
    };
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        h.cancel();
    });
    let res = futures::executor::block_on(ctx.run(fut));
    assert_eq!(res, Err(Error::Canceled));
    assert!(dropped.load(Ordering::SeqCst), "the future was dropped");
    t.join().unwrap();

    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(5));
    let res = futures::executor::block_on(ctx.run(std::future::pending::<u8>()));
    assert_eq!(res, Err(Error::DeadlineExceeded));
}

// API S18
#[test]
fn run_on_a_done_context_returns_the_error() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let polled = Arc::new(AtomicBool::new(false));
    let p2 = Arc::clone(&polled);
    let fut = std::future::poll_fn(move |_| {
        p2.store(true, Ordering::SeqCst);
        Poll::<u8>::Pending
    });
    assert_eq!(
        futures::executor::block_on(ctx.run(fut)),
        Err(Error::Canceled)
    );
}

// ---------------------------------------------------------------------------------------
// S19: after_func
// ---------------------------------------------------------------------------------------

// API S19
#[test]
fn after_func_runs_once_on_another_thread_after_cancel() {
    let (ctx, h) = Context::background().with_cancel();
    let (tx, rx) = mpsc::channel();
    let ctx2 = ctx.clone();
    let _r = ctx.after_func(move || {
        tx.send((thread::current().id(), ctx2.err())).unwrap();
    });
    thread::sleep(Duration::from_millis(5));
    assert!(rx.try_recv().is_err(), "ran before the context was done");
    h.cancel();
    h.cancel();
    let (id, err) = rx.recv_timeout(LONG).expect("after_func did not run");
    assert_ne!(id, thread::current().id(), "ran on the cancelling thread");
    assert_eq!(err, Some(Error::Canceled));
    assert!(
        rx.recv_timeout(Duration::from_millis(20)).is_err(),
        "ran twice"
    );
}

// API S19
#[test]
fn cancel_does_not_wait_for_after_func() {
    let (ctx, h) = Context::background().with_cancel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (ran_tx, ran_rx) = mpsc::channel();
    let _r = ctx.after_func(move || {
        release_rx.recv().unwrap(); // blocks until the test says so
        ran_tx.send(()).unwrap();
    });
    within("cancel while an after_func blocks", move || h.cancel());
    release_tx.send(()).unwrap();
    ran_rx.recv_timeout(LONG).expect("after_func did not run");
}

// API S19
#[test]
fn blocked_after_funcs_do_not_hold_up_each_other() {
    let (ctx, h) = Context::background().with_cancel();
    // The second callback waits for the first; both must complete.
    let (tx1, rx1) = mpsc::channel();
    let (tx2, rx2) = mpsc::channel();
    let _a = ctx.after_func(move || {
        let v: u32 = rx1.recv_timeout(LONG).unwrap();
        tx2.send(v + 1).unwrap();
    });
    let _b = ctx.after_func(move || tx1.send(1).unwrap());
    h.cancel();
    assert_eq!(rx2.recv_timeout(LONG), Ok(2));
}

// API S19
#[test]
fn after_func_on_a_done_context_starts_at_once() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let (tx, rx) = mpsc::channel();
    let r = ctx.after_func(move || tx.send(thread::current().id()).unwrap());
    let id = rx.recv_timeout(LONG).expect("did not run");
    assert_ne!(id, thread::current().id());
    assert!(!r.stop());
}

// API S19, S21
#[test]
fn after_func_on_a_context_that_can_never_be_done_never_runs() {
    let (p, hp) = Context::background().with_cancel();
    for ctx in [
        Context::background(),
        Context::todo(),
        p.without_cancel(),
        Context::background().with_value(&USER, "v"),
    ] {
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = Arc::clone(&ran);
        let reg = ctx.after_func(move || r2.store(true, Ordering::SeqCst));
        let r3 = Arc::clone(&ran);
        let reg2 = ctx.on_cancel(move || r3.store(true, Ordering::SeqCst));
        hp.cancel();
        thread::sleep(Duration::from_millis(10));
        assert!(!ran.load(Ordering::SeqCst), "{ctx}");
        assert!(reg.stop(), "first stop on a never-done context is true");
        assert!(!reg.stop(), "second stop is false");
        assert!(reg2.stop());
    }
}

// API S19
#[test]
fn after_func_registration_survives_drop_of_the_after_func_and_all_context_clones() {
    let (parent, hp) = Context::background().with_cancel();
    let (ctx, h) = parent.with_cancel();
    let (tx, rx) = mpsc::channel();
    let reg = ctx
        .with_value(&USER, "x")
        .after_func(move || tx.send(()).unwrap());
    drop(reg);
    drop(ctx);
    drop(h);
    // An ancestor can still cancel: f must run then.
    hp.cancel();
    rx.recv_timeout(LONG)
        .expect("registration lost when the context was dropped");
}

// API S19
#[test]
fn on_cancel_registration_survives_drop_of_all_context_clones() {
    let (grand, hg) = Context::background().with_cancel();
    let (parent, hp) = grand.with_cancel();
    let (ctx, h) = parent.with_cancel();
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = Arc::clone(&ran);
    drop(ctx.on_cancel(move || r2.store(true, Ordering::SeqCst)));
    drop((ctx, h));
    drop((parent, hp)); // two levels dropped: handed down twice
    hg.cancel();
    assert!(ran.load(Ordering::SeqCst), "on_cancel lost");
}

// API S19
#[test]
fn after_func_survives_drop_while_its_own_deadline_can_still_fire() {
    let clock = ManualClock::new();
    let (ctx, h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(1));
    let (tx, rx) = mpsc::channel();
    drop(ctx.after_func(move || tx.send(()).unwrap()));
    drop((ctx, h));
    clock.advance(Duration::from_secs(1));
    rx.recv_timeout(LONG)
        .expect("manual-clock deadline did not run f");

    let (ctx, h) = Context::background().with_timeout(Duration::from_millis(10));
    let (tx, rx) = mpsc::channel();
    drop(ctx.after_func(move || tx.send(()).unwrap()));
    drop((ctx, h));
    rx.recv_timeout(LONG).expect("real deadline did not run f");
}

// API S19
#[test]
fn after_func_is_dropped_unrun_when_nothing_can_cancel_any_more() {
    // A child of background: dropping its handle and clones leaves nothing to cancel it.
    let (ctx, h) = Context::background().with_cancel();
    let (flag, dropped) = drop_flag();
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = Arc::clone(&ran);
    let reg = ctx.after_func(move || {
        let _f = &flag;
        r2.store(true, Ordering::SeqCst);
    });
    drop(reg);
    assert!(!dropped.load(Ordering::SeqCst));
    drop(ctx);
    assert!(
        !dropped.load(Ordering::SeqCst),
        "the handle can still cancel"
    );
    drop(h);
    assert!(dropped.load(Ordering::SeqCst), "f leaked");
    assert!(!ran.load(Ordering::SeqCst));

    // Nested: dropping the child hands f to the parent; dropping the parent drops it.
    let (parent, hp) = Context::background().with_cancel();
    let (child, hc) = parent.with_cancel();
    let (flag, dropped) = drop_flag();
    let reg = child.on_cancel(move || drop(flag));
    drop((reg, child, hc));
    assert!(
        !dropped.load(Ordering::SeqCst),
        "the parent can still cancel"
    );
    drop((parent, hp));
    assert!(dropped.load(Ordering::SeqCst), "f leaked");

    // Stopping a handed-down registration still works and drops f.
    let (parent, _hp) = Context::background().with_cancel();
    let (child, hc) = parent.with_cancel();
    let (flag, dropped) = drop_flag();
    let reg = child.after_func(move || drop(flag));
    drop((child, hc));
    assert!(reg.stop());
    assert!(dropped.load(Ordering::SeqCst));
}

// API S19
#[test]
fn after_func_on_dropped_merge_runs_when_the_second_parent_cancels_after_the_first_is_gone() {
    let (a, ha) = Context::background().with_cancel();
    let (b, hb) = Context::background().with_cancel();
    let (m, hm) = a.merge(&b);
    let (tx, rx) = mpsc::channel();
    drop(m.after_func(move || tx.send(()).unwrap()));
    drop((m, hm));
    // `a` can never be done any more, but `b` still can cancel the merged context.
    drop((a, ha));
    hb.cancel();
    assert!(
        rx.recv_timeout(LONG).is_ok(),
        "f was dropped although the second parent could still cancel"
    );
}

// API S19
#[test]
fn after_func_on_dropped_merge_runs_when_either_parent_cancels() {
    for first in [true, false] {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = Context::background().with_cancel();
        let (m, hm) = a.merge(&b);
        let (tx, rx) = mpsc::channel();
        drop(m.after_func(move || tx.send(()).unwrap()));
        drop((m, hm));
        if first {
            ha.cancel();
        } else {
            hb.cancel();
        }
        rx.recv_timeout(LONG).expect("f did not run");
        ha.cancel();
        hb.cancel();
        assert!(
            rx.recv_timeout(Duration::from_millis(20)).is_err(),
            "ran twice"
        );
        drop((a, b));
    }
}

// API S19
#[test]
fn after_func_handed_to_a_deadline_parent_runs_when_that_deadline_passes() {
    let clock = ManualClock::new();
    let (parent, hp) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(1));
    let (child, hc) = parent.with_cancel();
    let (tx, rx) = mpsc::channel();
    drop(child.after_func(move || tx.send(()).unwrap()));
    drop((child, hc, parent, hp));
    clock.advance(Duration::from_secs(1));
    rx.recv_timeout(LONG)
        .expect("the parent's deadline can still cancel: f must run");
}

// API S19, S25
#[test]
fn after_func_is_dropped_unrun_when_its_manual_clock_and_handles_are_gone() {
    let (flag, dropped) = drop_flag();
    let clock = ManualClock::new();
    let (ctx, h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(1));
    let reg = ctx.after_func(move || drop(flag));
    drop((reg, ctx, h));
    // Nobody can advance the clock any more and there is no handle: nothing can make the
    // context done, so f must be dropped rather than leaked.
    drop(clock);
    assert!(
        dropped.load(Ordering::SeqCst),
        "f (and the context) leaked: its deadline can never fire"
    );
}

// API S19
#[test]
fn after_func_handed_down_while_the_parent_cancels_runs_exactly_once() {
    for i in 0..300 {
        let (parent, hp) = Context::background().with_cancel();
        let (child, hc) = parent.with_cancel();
        let count = Arc::new(AtomicUsize::new(0));
        let c2 = Arc::clone(&count);
        let inline = i % 2 == 0;
        let f = move || {
            c2.fetch_add(1, Ordering::SeqCst);
        };
        drop(if inline {
            child.on_cancel(f)
        } else {
            child.after_func(f)
        });
        let barrier = Barrier::new(2);
        let slot = Mutex::new(Some((child, hc)));
        thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                drop(slot.lock().unwrap().take());
            });
            barrier.wait();
            hp.cancel();
        });
        assert!(
            eventually(|| count.load(Ordering::SeqCst) == 1),
            "#{i}: f did not run although the parent cancelled"
        );
        if inline {
            assert_eq!(count.load(Ordering::SeqCst), 1);
        }
    }
}

// API S19, S20
#[test]
fn callbacks_run_exactly_once_under_concurrent_cancels() {
    for _ in 0..100 {
        let (ctx, h) = Context::background().with_cancel();
        let (child, _hc) = ctx.with_cancel();
        let count = Arc::new(AtomicUsize::new(0));
        let mut regs = Vec::new();
        for c in [&ctx, &child] {
            let (a, b) = (Arc::clone(&count), Arc::clone(&count));
            regs.push(c.on_cancel(move || {
                a.fetch_add(1, Ordering::SeqCst);
            }));
            regs.push(c.after_func(move || {
                b.fetch_add(1, Ordering::SeqCst);
            }));
        }
        let barrier = Barrier::new(4);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    barrier.wait();
                    h.cancel();
                });
            }
        });
        assert!(eventually(|| count.load(Ordering::SeqCst) >= 4));
        thread::sleep(Duration::from_millis(2));
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }
}

// API S19, S20
#[test]
fn registering_while_another_thread_cancels_runs_f_exactly_once() {
    for i in 0..300 {
        let (ctx, h) = Context::background().with_cancel();
        let count = Arc::new(AtomicUsize::new(0));
        let c2 = Arc::clone(&count);
        let f = move || {
            c2.fetch_add(1, Ordering::SeqCst);
        };
        let barrier = Barrier::new(2);
        let inline = i % 2 == 0;
        let reg = thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                h.cancel();
            });
            barrier.wait();
            if inline {
                ctx.on_cancel(f)
            } else {
                ctx.after_func(f)
            }
        });
        if inline {
            // Both the canceller and the registering call have returned: f has run.
            assert_eq!(count.load(Ordering::SeqCst), 1, "#{i}");
        } else {
            assert!(eventually(|| count.load(Ordering::SeqCst) == 1), "#{i}");
        }
        assert!(!reg.stop());
    }
}

// API S19
#[test]
fn after_func_below_without_cancel_is_dropped_when_its_own_handle_goes() {
    let (p, hp) = Context::background().with_cancel();
    let detached = p.without_cancel();
    let (ctx, h) = detached.with_cancel();
    let (flag, dropped) = drop_flag();
    drop(ctx.after_func(move || drop(flag)));
    drop((ctx, h));
    assert!(
        dropped.load(Ordering::SeqCst),
        "p cannot cancel through without_cancel: f must be dropped"
    );
    hp.cancel();
}

// ---------------------------------------------------------------------------------------
// S20: on_cancel
// ---------------------------------------------------------------------------------------

// API S20
#[test]
fn on_cancel_runs_inline_before_cancel_returns_and_sees_the_context_done() {
    let (ctx, h) = Context::background().with_cancel();
    let (child, _hc) = ctx.with_timeout(HOUR);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for c in [&ctx, &child] {
        let seen = Arc::clone(&seen);
        let me = c.clone();
        drop(c.on_cancel(move || {
            seen.lock()
                .unwrap()
                .push((thread::current().id(), me.err(), me.cause().is_some()));
        }));
    }
    let canceller = thread::spawn(move || {
        h.cancel();
        thread::current().id()
    });
    let id = canceller.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "not all ran before cancel returned");
    for (tid, err, has_cause) in seen.iter() {
        assert_eq!(*tid, id, "ran on another thread");
        assert_eq!(*err, Some(Error::Canceled));
        assert!(has_cause);
    }
}

// API S20
#[test]
fn on_cancel_on_a_done_context_runs_immediately_on_the_caller() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let ran = Arc::new(Mutex::new(None));
    let r2 = Arc::clone(&ran);
    let reg = ctx.on_cancel(move || *r2.lock().unwrap() = Some(thread::current().id()));
    assert_eq!(*ran.lock().unwrap(), Some(thread::current().id()));
    assert!(!reg.stop());
}

// API S20
#[test]
fn on_cancel_runs_once_when_a_deadline_passes_and_sees_done() {
    let clock = ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(1));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let me = ctx.clone();
    drop(ctx.on_cancel(move || s2.lock().unwrap().push(me.err())));
    clock.advance(Duration::from_secs(1));
    assert_eq!(*seen.lock().unwrap(), vec![Some(Error::DeadlineExceeded)]);
    clock.advance(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

// API S20
#[test]
fn re_entrant_on_cancel_may_cancel_derive_drop_and_wait() {
    within("re-entrant on_cancel", || {
        let (root, h) = Context::background().with_cancel();
        let (a, _ha) = root.with_cancel();
        let (sibling, _hs) = root.with_timeout(HOUR);
        let (other, ho) = Context::background().with_cancel();
        let (dropped_ctx, dropped_h) = root.with_cancel();
        let (flag, dropped) = drop_flag();
        let dropped_ctx = dropped_ctx.with_value(&PAYLOAD, flag);
        let log = Arc::new(Mutex::new(Vec::<String>::new()));

        let (a2, s2, o2, l2) = (a.clone(), sibling.clone(), other.clone(), Arc::clone(&log));
        let ho2 = ho.clone();
        let h2 = h.clone();
        let _r = a.on_cancel(move || {
            // Cancel an unrelated context (and run its own callbacks) from here.
            ho2.cancel();
            assert!(o2.is_done());
            // Cancel the context being cancelled again: no effect, no deadlock.
            h2.cancel();
            // Derive from the done context (done at birth) and from a live one.
            let (c, _) = a2.with_cancel();
            assert!(c.is_done());
            let (live, hl) = Context::background().with_timeout(HOUR);
            assert!(!live.is_done());
            hl.cancel();
            // Wait on a sibling reached by the same cancellation.
            assert_eq!(s2.wait(), Error::Canceled);
            // Drop the last clone and handle of another context of the tree.
            drop((dropped_ctx, dropped_h));
            // Register another callback on the (done) context: runs at once.
            let l3 = Arc::clone(&l2);
            drop(a2.on_cancel(move || l3.lock().unwrap().push("nested".into())));
            l2.lock().unwrap().push("outer".into());
        });
        let l4 = Arc::clone(&log);
        let _o = other.on_cancel(move || l4.lock().unwrap().push("other".into()));
        h.cancel();
        let log = log.lock().unwrap().clone();
        assert!(log.contains(&"outer".to_string()), "{log:?}");
        assert!(log.contains(&"nested".to_string()), "{log:?}");
        assert!(log.contains(&"other".to_string()), "{log:?}");
        assert!(dropped.load(Ordering::SeqCst));
        assert!(other.is_done());
    });
}

// API S4, S20
#[test]
fn on_cancel_that_cancels_an_ancestor_does_not_deadlock() {
    within("on_cancel cancelling an ancestor", || {
        let (p, hp) = Context::background().with_cancel();
        let (sibling, _hs) = p.with_timeout(HOUR);
        let (c, hc) = p.with_cancel();
        let (g, _hg) = c.with_cancel();
        let _r = g.on_cancel(move || hp.cancel_with_cause(Oops("from grandchild")));
        hc.cancel();
        assert_eq!(p.err(), Some(Error::Canceled));
        assert_eq!(oops(&sibling.cause().unwrap()), Some("from grandchild"));
        assert_eq!(sentinel(&g.cause().unwrap()), Some(Error::Canceled));
    });
}

// API S4, S20
#[test]
fn on_cancels_that_cancel_each_other_from_two_threads_do_not_deadlock() {
    within("cross-cancelling on_cancel callbacks", || {
        for _ in 0..200 {
            let (x, hx) = Context::background().with_cancel();
            let (y, hy) = Context::background().with_cancel();
            let xs: Vec<_> = (0..50).map(|_| x.with_cancel()).collect();
            let ys: Vec<_> = (0..50).map(|_| y.with_cancel()).collect();
            let (hx2, hy2) = (hx.clone(), hy.clone());
            let _rx = xs[7].0.on_cancel(move || hy2.cancel());
            let _ry = ys[7].0.on_cancel(move || hx2.cancel());
            let barrier = Barrier::new(2);
            thread::scope(|s| {
                s.spawn(|| {
                    barrier.wait();
                    hx.cancel();
                });
                barrier.wait();
                hy.cancel();
            });
            assert!(xs.iter().chain(&ys).all(|(c, _)| c.is_done()));
        }
    });
}

// API S4, S17, S20
#[test]
fn on_cancel_blocking_on_the_parent_while_another_thread_cancels_it() {
    within("on_cancel waiting for the parent", || {
        for _ in 0..50 {
            let (p, hp) = Context::background().with_cancel();
            let (c, hc) = p.with_cancel();
            let (_g, _hg) = c.with_cancel();
            let (entered_tx, entered_rx) = mpsc::channel();
            let p2 = p.clone();
            let _r = c.on_cancel(move || {
                entered_tx.send(()).unwrap();
                p2.wait(); // blocks until the other thread cancels p
            });
            let a = thread::spawn(move || hc.cancel());
            entered_rx.recv().unwrap();
            hp.cancel(); // reaches c, whose own cancel is still running its callback
            a.join().unwrap();
            assert!(p.is_done() && c.is_done());
        }
    });
}

// API S19, S20
#[test]
fn re_entrant_after_func_may_cancel_derive_and_wait() {
    let (root, h) = Context::background().with_cancel();
    let (other, ho) = Context::background().with_cancel();
    let (tx, rx) = mpsc::channel();
    let (r2, o2) = (root.clone(), other.clone());
    let _r = root.after_func(move || {
        let (c, _) = r2.with_cancel();
        assert!(c.is_done());
        ho.cancel();
        assert_eq!(o2.wait(), Error::Canceled);
        let (t, _ht) = Context::background().with_timeout(Duration::from_millis(1));
        assert_eq!(t.wait(), Error::DeadlineExceeded);
        tx.send(()).unwrap();
    });
    h.cancel();
    rx.recv_timeout(LONG).expect("after_func did not complete");
    assert!(other.is_done());
}

// ---------------------------------------------------------------------------------------
// S21: stop and panics
// ---------------------------------------------------------------------------------------

// API S21
#[test]
fn stop_before_done_returns_true_and_drops_f() {
    for inline in [false, true] {
        let (ctx, h) = Context::background().with_cancel();
        let (flag, dropped) = drop_flag();
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = Arc::clone(&ran);
        let f = move || {
            let _f = &flag;
            r2.store(true, Ordering::SeqCst);
        };
        let reg = if inline {
            ctx.on_cancel(f)
        } else {
            ctx.after_func(f)
        };
        assert!(reg.stop());
        assert!(dropped.load(Ordering::SeqCst), "stop did not drop f");
        assert!(!reg.stop(), "second stop");
        h.cancel();
        thread::sleep(Duration::from_millis(10));
        assert!(!ran.load(Ordering::SeqCst));
    }
}

// API S21
#[test]
fn stop_after_f_started_returns_false() {
    let (ctx, h) = Context::background().with_cancel();
    let reg = ctx.on_cancel(|| {});
    h.cancel();
    assert!(!reg.stop());
    assert!(!reg.stop());

    let (ctx, h) = Context::background().with_cancel();
    let (tx, rx) = mpsc::channel();
    let reg = ctx.after_func(move || tx.send(()).unwrap());
    h.cancel();
    rx.recv_timeout(LONG).unwrap();
    assert!(!reg.stop());
}

// API S21
#[test]
fn panic_in_on_cancel_does_not_stop_other_callbacks_or_descendants() {
    let (root, h) = Context::background().with_cancel();
    let (child, _hc) = root.with_cancel();
    let (grandchild, _hg) = child.with_timeout(HOUR);
    let count = Arc::new(AtomicUsize::new(0));
    let mut regs = Vec::new();
    for (i, c) in [&root, &root, &child, &grandchild, &grandchild]
        .into_iter()
        .enumerate()
    {
        let count = Arc::clone(&count);
        regs.push(c.on_cancel(move || {
            if i % 2 == 0 {
                panic!("deliberate panic in on_cancel #{i}");
            }
            count.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let (tx, rx) = mpsc::channel();
    regs.push(grandchild.after_func(move || tx.send(()).unwrap()));
    let result = catch_unwind(AssertUnwindSafe(|| h.cancel()));
    assert!(
        result.is_err(),
        "the panic is expected to reach the canceller"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "other on_cancel callbacks ran"
    );
    for c in [&root, &child, &grandchild] {
        assert_eq!(c.err(), Some(Error::Canceled));
    }
    rx.recv_timeout(LONG).expect("after_func did not run");
}

// API S21
#[test]
fn panic_in_after_func_does_not_stop_others() {
    let (ctx, h) = Context::background().with_cancel();
    let (tx, rx) = mpsc::channel();
    let mut regs = Vec::new();
    for i in 0..6 {
        let tx = tx.clone();
        regs.push(ctx.after_func(move || {
            if i % 2 == 0 {
                panic!("deliberate panic in after_func #{i}");
            }
            tx.send(i).unwrap();
        }));
    }
    h.cancel();
    let mut got: Vec<i32> = (0..3).map(|_| rx.recv_timeout(LONG).unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![1, 3, 5]);
    // Later callbacks still run.
    let (ctx, h) = Context::background().with_cancel();
    let _r = ctx.after_func(move || tx.send(99).unwrap());
    h.cancel();
    assert_eq!(rx.recv_timeout(LONG), Ok(99));
}

// API S21, S25
#[test]
fn panic_in_on_cancel_during_advance_does_not_lose_other_due_deadlines() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (first, _h1) = root.with_timeout(Duration::from_secs(1));
    let _p = first.on_cancel(|| panic!("deliberate panic in on_cancel fired by advance"));
    let (second, _h2) = root.with_timeout(Duration::from_secs(2));
    let _ = catch_unwind(AssertUnwindSafe(|| clock.advance(Duration::from_secs(3))));
    clock.advance(Duration::ZERO);
    assert!(first.is_done());
    assert_eq!(
        second.err(),
        Some(Error::DeadlineExceeded),
        "a deadline that became due was lost after another context's on_cancel panicked"
    );
}

const CHILD_ENV: &str = "CTXKIT_SEMANTICS_TIMER_PANIC_CHILD";

/// Runs only inside the child process started by the next test: it may kill the process's
/// timer thread, which would disturb every other test of this binary.
#[test]
fn timer_panic_child_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let _p = ctx.on_cancel(|| panic!("deliberate panic in on_cancel fired by the timer"));
    let (same_time, _h2) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(
        ctx.wait_timeout(Duration::from_secs(5)),
        Some(Error::DeadlineExceeded)
    );
    assert_eq!(
        same_time.wait_timeout(Duration::from_secs(5)),
        Some(Error::DeadlineExceeded),
        "deadline due with the panicking one never fired"
    );
    let (later, _h3) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(
        later.wait_timeout(Duration::from_secs(5)),
        Some(Error::DeadlineExceeded),
        "deadline created after the panic never fired"
    );
}

// API S11, S21
#[test]
fn panic_in_on_cancel_fired_by_a_deadline_does_not_stop_the_timer() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "timer_panic_child_process",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child process failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// S22: resources
// ---------------------------------------------------------------------------------------

// API S22
#[test]
fn dropping_a_child_without_cancel_frees_it_and_the_parent_lets_go() {
    let (parent, hp) = Context::background().with_cancel();
    // Cancellable, deadline (real and manual), merge and value-then-cancel children.
    let clock = ManualClock::new();
    type Maker = Box<dyn Fn(&Context) -> (Context, CancelHandle)>;
    let makers: Vec<Maker> = vec![
        Box::new(|p| p.with_cancel()),
        Box::new(|p| p.with_timeout(HOUR)),
        Box::new(|p| p.with_deadline(Instant::now() + HOUR)),
        Box::new(move |p| p.with_clock(&clock).with_timeout(HOUR)),
        Box::new(|p| p.merge(&Context::todo())),
        Box::new(|p| Context::background().merge(p)),
    ];
    for (i, make) in makers.iter().enumerate() {
        let (flag, dropped) = drop_flag();
        let (child, h) = make(&parent.with_value(&PAYLOAD, flag));
        let (grandchild, hg) = child.with_cancel();
        let clone = grandchild.clone();
        drop((child, h, grandchild, hg));
        assert!(
            !dropped.load(Ordering::SeqCst),
            "#{i}: a clone is still alive"
        );
        drop(clone);
        assert!(dropped.load(Ordering::SeqCst), "#{i}: child kept alive");
    }
    // The parent still works after its children left.
    hp.cancel();
    assert!(parent.is_done());
}

// API S22
#[test]
fn dropping_a_cancelled_child_frees_it() {
    let (parent, _hp) = Context::background().with_timeout(HOUR);
    let (flag, dropped) = drop_flag();
    let (child, h) = parent.with_value(&PAYLOAD, flag).with_cancel();
    h.cancel();
    drop((child, h));
    assert!(dropped.load(Ordering::SeqCst));
}

// API S22
#[test]
fn many_children_created_and_dropped_under_a_long_lived_parent() {
    let (parent, hp) = Context::background().with_timeout(HOUR);
    let flags: Vec<_> = (0..2000)
        .map(|i| {
            let (flag, dropped) = drop_flag();
            let (c, h) = if i % 2 == 0 {
                parent.with_value(&PAYLOAD, flag).with_cancel()
            } else {
                parent.with_value(&PAYLOAD, flag).with_timeout(HOUR)
            };
            drop((c, h));
            dropped
        })
        .collect();
    assert!(flags.iter().all(|f| f.load(Ordering::SeqCst)));
    hp.cancel();
}

// API S22
#[test]
fn stopped_after_func_does_not_keep_a_dropped_timeout_context_alive() {
    for inline in [false, true] {
        let (flag, dropped) = drop_flag();
        let (ctx, h) = Context::background()
            .with_value(&PAYLOAD, flag)
            .with_timeout(HOUR);
        let reg = if inline {
            ctx.on_cancel(|| {})
        } else {
            ctx.after_func(|| {})
        };
        assert!(reg.stop());
        drop((reg, ctx, h));
        assert!(
            dropped.load(Ordering::SeqCst),
            "inline={inline}: context kept alive until its deadline after its only callback was stopped"
        );
    }
}

// API S22
#[test]
fn cancel_guard_cancels_when_dropped_and_disarm_gives_the_handle_back() {
    let (ctx, h) = Context::background().with_cancel();
    {
        let _g = h.drop_guard();
        assert!(!ctx.is_done());
    }
    assert_eq!(ctx.err(), Some(Error::Canceled));

    let (ctx, h) = Context::background().with_timeout(HOUR);
    let guard = h.drop_guard();
    let h = guard.disarm();
    assert!(!ctx.is_done());
    h.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));

    // A guard moved to another thread cancels there.
    let (ctx, h) = Context::background().with_cancel();
    let g = h.drop_guard();
    thread::spawn(move || drop(g)).join().unwrap();
    assert!(ctx.is_done());

    // A guard dropped during a panic still cancels.
    let (ctx, h) = Context::background().with_cancel();
    let g = h.drop_guard();
    let _ = catch_unwind(AssertUnwindSafe(move || {
        let _g = g;
        panic!("deliberate panic with a guard alive");
    }));
    assert!(ctx.is_done());
}

// ---------------------------------------------------------------------------------------
// S23: depth and breadth
// ---------------------------------------------------------------------------------------

const MILLION: usize = 1_000_000;

const DEEP_ENV: &str = "CTXKIT_SEMANTICS_DEEP_CHILD";

/// Runs `f` on a thread with the default stack size (no `stack_size` set). The test runs
/// in a child process (this test binary, filtered to `test_name`), so that a stack overflow,
/// which aborts the process, fails this test alone instead of the whole binary.
fn on_default_stack(test_name: &str, f: fn()) {
    if std::env::var_os(DEEP_ENV).is_some() {
        thread::spawn(f).join().expect("thread failed");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--test-threads=1", "--nocapture"])
        .env(DEEP_ENV, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{test_name} failed in its child process ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// API S23
#[test]
fn million_level_cancel_chain_is_built_cancelled_and_dropped() {
    on_default_stack(
        "million_level_cancel_chain_is_built_cancelled_and_dropped",
        || {
            let (root, h) = Context::background().with_cancel();
            let mut ctx = root.clone();
            let mut handles = Vec::with_capacity(MILLION);
            for _ in 0..MILLION {
                let (c, hc) = ctx.with_cancel();
                ctx = c;
                handles.push(hc);
            }
            h.cancel();
            assert_eq!(ctx.err(), Some(Error::Canceled));
            drop(handles);
            drop(root);
            drop(ctx); // the last reference to the whole chain
        },
    );
}

// API S23, S22
#[test]
fn million_level_chain_is_dropped_without_cancel() {
    on_default_stack("million_level_chain_is_dropped_without_cancel", || {
        let mut ctx = Context::background();
        for _ in 0..MILLION {
            let (c, _h) = ctx.with_cancel(); // handles dropped at once
            ctx = c;
        }
        drop(ctx);
    });
}

// API S23
#[test]
fn million_level_mixed_chain_is_built_cancelled_and_dropped() {
    on_default_stack(
        "million_level_mixed_chain_is_built_cancelled_and_dropped",
        || {
            let clock = ManualClock::new();
            let (root, h) = Context::background().with_clock(&clock).with_cancel();
            let mut ctx = root.clone();
            let mut handles = Vec::new();
            for i in 0..MILLION {
                ctx = match i % 6 {
                    0 => ctx.with_value(&REQUEST, i as u64),
                    1 => ctx.with(i as u32),
                    2 => {
                        let (c, hc) = ctx.with_timeout(Duration::from_secs(3600 + i as u64));
                        handles.push(hc);
                        c
                    }
                    3 => ctx.merge(&Context::background()).0,
                    4 => ctx.with_cancel().0,
                    _ => {
                        let (c, hc) = ctx.with_cancel();
                        handles.push(hc);
                        c
                    }
                };
            }
            let last = (0..MILLION).rev().find(|i| i % 6 == 0).unwrap() as u64;
            assert_eq!(ctx.value(&REQUEST), Some(&last));
            let detached = ctx.without_cancel();
            h.cancel();
            assert_eq!(ctx.err(), Some(Error::Canceled));
            assert!(!detached.is_done());
            drop(handles);
            drop(root);
            drop(ctx);
            drop(detached);
        },
    );
}

// API S23
#[test]
fn million_level_value_and_without_cancel_chains_are_dropped() {
    on_default_stack(
        "million_level_value_and_without_cancel_chains_are_dropped",
        || {
            let mut ctx = Context::background();
            for i in 0..MILLION {
                ctx = ctx.with_value(&REQUEST, i as u64);
            }
            assert_eq!(ctx.value(&REQUEST), Some(&(MILLION as u64 - 1)));
            drop(ctx);
            let mut ctx = Context::background();
            for _ in 0..MILLION {
                ctx = ctx.without_cancel();
            }
            drop(ctx);
        },
    );
}

// API S23
#[test]
fn million_child_fan_is_built_cancelled_and_dropped() {
    on_default_stack("million_child_fan_is_built_cancelled_and_dropped", || {
        let (root, h) = Context::background().with_cancel();
        let kids: Vec<_> = (0..MILLION).map(|_| root.with_cancel()).collect();
        h.cancel();
        assert!(kids.iter().all(|(k, _)| k.err() == Some(Error::Canceled)));
        drop(kids);
        drop(root);
    });
}

// API S23, S22
#[test]
fn million_child_fan_is_dropped_without_cancel_in_any_order() {
    on_default_stack(
        "million_child_fan_is_dropped_without_cancel_in_any_order",
        || {
            let (root, h) = Context::background().with_cancel();
            let mut kids: Vec<_> = (0..MILLION).map(|_| root.with_cancel()).collect();
            // Drop half, the parent, then the rest.
            kids.truncate(MILLION / 2);
            drop((root, h));
            drop(kids);
        },
    );
}

// API S23, S24
// API S2, S23
#[test]
fn display_of_merges_nested_through_second_parents_does_not_recurse() {
    on_default_stack(
        "display_of_merges_nested_through_second_parents_does_not_recurse",
        || {
            const N: usize = 200_000;
            let mut ctx = Context::background();
            for _ in 0..N {
                ctx = Context::todo().merge(&ctx).0;
            }
            let text = ctx.to_string();
            assert!(text.starts_with("context.TODO.Merge(context.TODO.Merge("));
            assert!(text.ends_with(&format!("context.Background{}", ")".repeat(N))));
            assert_eq!(text.matches(".Merge(").count(), N);
            assert_eq!(text.matches(')').count(), N);
        },
    );
}

#[test]
fn million_level_chain_through_second_parents_of_merges() {
    on_default_stack(
        "million_level_chain_through_second_parents_of_merges",
        || {
            let (root, h) = Context::background().with_cancel();
            let mut ctx = root.clone();
            for _ in 0..MILLION {
                ctx = Context::background().merge(&ctx).0;
            }
            h.cancel();
            assert_eq!(ctx.err(), Some(Error::Canceled));
            drop(root);
            drop(ctx);
            let mut ctx = Context::background();
            for _ in 0..MILLION {
                ctx = Context::todo().merge(&ctx).0;
            }
            drop(ctx); // never cancelled
        },
    );
}

// ---------------------------------------------------------------------------------------
// S24: merge
// ---------------------------------------------------------------------------------------

// API S24
#[test]
fn merge_is_done_when_either_parent_or_its_own_handle_is() {
    for which in 0..3 {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = Context::background().with_cancel();
        let (m, hm) = a.merge(&b);
        assert!(!m.is_done());
        match which {
            0 => ha.cancel_with_cause(Oops("a")),
            1 => hb.cancel_with_cause(Oops("b")),
            _ => hm.cancel_with_cause(Oops("m")),
        }
        assert_eq!(m.err(), Some(Error::Canceled));
        assert_eq!(
            oops(&m.cause().unwrap()),
            Some(["a", "b", "m"][which]),
            "case {which}"
        );
        if which == 2 {
            assert!(!a.is_done() && !b.is_done(), "own handle reaches no parent");
        }
    }
}

// API S24
#[test]
fn merge_takes_err_and_cause_from_whichever_finished_first() {
    let clock = ManualClock::new();
    let (a, ha) = Context::background().with_clock(&clock).with_cancel();
    let (b, _hb) = Context::background()
        .with_clock(&clock)
        .with_timeout_cause(Duration::from_secs(1), Oops("b slow"));
    let (m, _hm) = a.merge(&b);
    clock.advance(Duration::from_secs(1));
    ha.cancel_with_cause(Oops("a"));
    assert_eq!(m.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&m.cause().unwrap()), Some("b slow"));
}

// API S24
#[test]
fn merge_of_two_done_contexts_takes_a() {
    let (a, ha) = Context::background().with_timeout_cause(Duration::ZERO, Oops("a"));
    let (b, hb) = Context::background().with_cancel();
    hb.cancel_with_cause(Oops("b"));
    let (m, _hm) = a.merge(&b);
    assert_eq!(m.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&m.cause().unwrap()), Some("a"));
    let (m2, _h2) = b.merge(&a);
    assert_eq!(m2.err(), Some(Error::Canceled));
    assert_eq!(oops(&m2.cause().unwrap()), Some("b"));
    drop(ha);
    // Only b done: b's.
    let (a, _ha) = Context::background().with_cancel();
    let (m3, _h3) = a.merge(&b);
    assert_eq!(oops(&m3.cause().unwrap()), Some("b"));
}

// API S24, S10
#[test]
fn merge_deadline_is_the_earlier_of_the_two() {
    let now = Instant::now();
    let (a, _ha) = Context::background().with_deadline(now + Duration::from_secs(200));
    let (b, _hb) = Context::background().with_deadline(now + Duration::from_secs(100));
    assert_eq!(a.merge(&b).0.deadline(), b.deadline());
    assert_eq!(b.merge(&a).0.deadline(), b.deadline());
    let (c, _hc) = Context::background().with_cancel();
    assert_eq!(c.merge(&a).0.deadline(), a.deadline());
    assert_eq!(c.merge(&Context::background()).0.deadline(), None);
}

// API S24
#[test]
fn merge_fires_when_the_second_parents_deadline_passes() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (a, _ha) = root.with_cancel();
    let (b, _hb) = root.with_timeout(Duration::from_secs(5));
    let (m, _hm) = a.merge(&b);
    assert_eq!(m.remaining(), Some(Duration::from_secs(5)));
    clock.advance(Duration::from_secs(5));
    assert_eq!(m.err(), Some(Error::DeadlineExceeded));
    assert!(!a.is_done());
}

// API S24
#[test]
fn merge_values_are_looked_up_in_a_then_b() {
    let a = Context::background().with_value(&USER, "a").with(Tenant(1));
    let b = Context::background()
        .with_value(&USER, "b")
        .with_value(&REQUEST, 7)
        .with(5u8);
    let (m, _h) = a.merge(&b);
    assert_eq!(m.value(&USER), Some(&"a"));
    assert_eq!(m.value(&REQUEST), Some(&7));
    assert_eq!(m.get::<Tenant>(), Some(&Tenant(1)));
    assert_eq!(m.get::<u8>(), Some(&5));
    let (m, _h) = Context::background().merge(&b);
    assert_eq!(m.value(&USER), Some(&"b"));
    let (m, _h) = a.merge(&Context::background());
    assert_eq!(m.value(&USER), Some(&"a"));
    assert_eq!(m.value(&REQUEST), None);
}

// API S24
#[test]
fn merge_with_itself_and_with_its_own_descendant() {
    let (a, ha) = Context::background().with_cancel();
    let (m, hm) = a.merge(&a);
    let (c, _hc) = a.with_cancel();
    let (m2, _h2) = a.merge(&c);
    assert!(!m.is_done());
    drop((m, hm));
    ha.cancel();
    assert!(m2.is_done());
    let (a, _ha) = Context::background().with_cancel();
    let (m, hm) = a.merge(&a);
    hm.cancel();
    assert!(m.is_done() && !a.is_done());
}

// ---------------------------------------------------------------------------------------
// S25: ManualClock
// ---------------------------------------------------------------------------------------

// API S25
#[test]
fn with_timeout_on_a_manual_clock_uses_clock_now() {
    let clock = ManualClock::new();
    clock.advance(HOUR); // now far from real time
    let root = Context::background().with_clock(&clock);
    let (ctx, _h) = root.with_timeout(Duration::from_secs(5));
    assert_eq!(ctx.deadline(), Some(clock.now() + Duration::from_secs(5)));
    assert_eq!(ctx.remaining(), Some(Duration::from_secs(5)));
    assert_eq!(root.now(), clock.now());
}

// API S25
#[test]
fn advance_fires_every_due_deadline_before_returning() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let ctxs: Vec<_> = (1..=10)
        .map(|s| root.with_timeout(Duration::from_secs(s)))
        .collect();
    clock.advance(Duration::from_millis(4500));
    for (i, (c, _)) in ctxs.iter().enumerate() {
        assert_eq!(c.is_done(), i < 4, "#{i}");
    }
    clock.advance(Duration::from_millis(500));
    assert!(ctxs[4].0.is_done());
    assert!(!ctxs[5].0.is_done());
    clock.advance(HOUR);
    assert!(ctxs
        .iter()
        .all(|(c, _)| c.err() == Some(Error::DeadlineExceeded)));
}

// API S25
#[test]
fn a_deadline_made_while_another_thread_advances_is_never_left_behind() {
    // A context whose deadline is due by the time it is made is done, or the next advance
    // fires it: with one thread advancing the clock in 1 ms steps and another making 1 ms
    // timeouts, every context whose deadline the clock has passed is done once both stop,
    // without another advance.
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let stop = Arc::new(AtomicBool::new(false));
    let advancer = {
        let (clock, stop) = (clock.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                clock.advance(Duration::from_millis(1));
            }
        })
    };
    let made: Vec<_> = (0..20_000)
        .map(|_| root.with_timeout(Duration::from_millis(1)))
        .collect();
    stop.store(true, Ordering::SeqCst);
    advancer.join().unwrap();
    let now = clock.now();
    for (ctx, _h) in &made {
        if ctx.deadline().unwrap() <= now {
            assert_eq!(ctx.err(), Some(Error::DeadlineExceeded), "left behind");
        }
    }
}

// API S25
#[test]
fn real_time_passing_does_not_fire_manual_deadlines() {
    let clock = ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_millis(1));
    let before = clock.now();
    thread::sleep(Duration::from_millis(30));
    assert_eq!(clock.now(), before);
    assert!(!ctx.is_done());
    assert_eq!(ctx.remaining(), Some(Duration::from_millis(1)));
    clock.advance(Duration::from_millis(1));
    assert!(ctx.is_done());
}

// API S25
#[test]
fn clock_reaches_every_derivation_including_without_cancel() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (c, _h1) = root.with_cancel();
    let v = c.with_value(&USER, "v");
    let w = v.without_cancel();
    let (m, _h2) = w.merge(&Context::background());
    let mut timed = Vec::new();
    for base in [&root, &c, &v, &w, &m] {
        let (t, h) = base.with_timeout(Duration::from_secs(10));
        assert_eq!(t.remaining(), Some(Duration::from_secs(10)), "{base}");
        let (d, hd) = base.with_deadline(clock.now() + Duration::from_secs(10));
        timed.push((t, h, d, hd));
    }
    clock.advance(Duration::from_secs(10));
    for (t, _, d, _) in &timed {
        assert_eq!(t.err(), Some(Error::DeadlineExceeded), "{t}");
        assert_eq!(d.err(), Some(Error::DeadlineExceeded), "{d}");
    }
}

// API S25, S24
#[test]
fn merge_measures_time_on_a_clock_not_b() {
    let clock = ManualClock::new();
    clock.advance(HOUR);
    let manual = Context::background().with_clock(&clock);
    let real = Context::background();

    // a manual, b real: manual time.
    let (m, _h) = manual.merge(&real);
    let (t, _ht) = m.with_timeout(Duration::from_secs(10));
    assert_eq!(t.remaining(), Some(Duration::from_secs(10)));
    clock.advance(Duration::from_secs(10));
    assert!(t.is_done(), "a's manual clock did not fire the deadline");

    // a real, b manual: real time.
    let (m, _h) = real.merge(&manual);
    let before = Instant::now();
    let (t, _ht) = m.with_timeout(Duration::from_secs(100));
    let dl = t.deadline().unwrap();
    assert!(
        dl >= before + Duration::from_secs(100) && dl <= Instant::now() + Duration::from_secs(100),
        "deadline measured on b's clock"
    );
    clock.advance(Duration::from_secs(200));
    assert!(
        !t.is_done(),
        "b's manual clock fired a deadline of a real-time merge"
    );
}

// API S25
#[test]
fn on_cancel_of_manual_deadlines_runs_before_advance_returns() {
    let clock = ManualClock::new();
    let (outer, _ho) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(2));
    let (inner, _hi) = outer.with_timeout(Duration::from_secs(1));
    let (below, _hb) = inner.with_cancel();
    let count = Arc::new(AtomicUsize::new(0));
    let mut regs = Vec::new();
    for c in [&outer, &inner, &below] {
        let count = Arc::clone(&count);
        regs.push(c.on_cancel(move || {
            count.fetch_add(1, Ordering::SeqCst);
        }));
    }
    clock.advance(Duration::from_secs(1));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(below.is_done() && !outer.is_done());
    clock.advance(Duration::from_secs(1));
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

// API S25
#[test]
fn clones_of_a_manual_clock_share_one_clock() {
    let clock = ManualClock::new();
    let other = clock.clone();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(3));
    other.advance(Duration::from_secs(3));
    assert_eq!(clock.now(), other.now());
    assert!(ctx.is_done());
}

//! API S19–S21: callbacks: `after_func` (S19), `on_cancel`, including callbacks that call
//! back into ctxkit (S20), and `stop` (S21). Panics in callbacks are in `tests/faults.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use ctxkit::{Context, Error, ManualClock};

use crate::common::{
    drop_flag, eventually, oops, sentinel, within, Oops, HOUR, LONG, PAYLOAD, USER,
};

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
fn on_cancel_blocking_on_the_parent_while_another_thread_cancels_it_does_not_deadlock() {
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

// API S20, S22
/// An `on_cancel` that owns the last clone and handle of its own context drops them when
/// it runs: the context is freed by the time cancel returns.
#[test]
fn on_cancel_dropping_its_own_context_frees_it_before_cancel_returns() {
    within("on_cancel dropping its context", || {
        let (parent, h) = Context::background().with_cancel();
        let (flag, freed) = drop_flag();
        let (child, hc) = parent.with_value(&PAYLOAD, flag).with_timeout(HOUR);
        let own = child.clone();
        drop(child.on_cancel(move || drop((own, hc))));
        drop(child);
        assert!(!freed.load(Ordering::SeqCst), "kept alive by its callback");
        h.cancel();
        assert!(freed.load(Ordering::SeqCst), "freed once its callback ran");
    });
}

// API S4, S8, S20
/// An `on_cancel` that cancels an ancestor of its context (upwards), whose walk reaches
/// the siblings and meets the subtree already done.
#[test]
fn on_cancel_cancelling_an_ancestor_gives_its_cause_to_the_other_branches_only() {
    within("on_cancel cancelling upwards", || {
        let (root, hr) = Context::background().with_cancel();
        let (a, ha) = root.with_cancel();
        let (a1, _) = a.with_cancel();
        let (b, _) = root.with_cancel();
        let (b1, _) = b.with_timeout(HOUR);
        let _r = a1.on_cancel(move || {
            hr.cancel_with_cause(std::io::Error::other("from below"));
        });
        ha.cancel();
        for c in [&root, &b, &b1] {
            assert_eq!(c.cause().unwrap().to_string(), "from below");
        }
        for c in [&a, &a1] {
            assert!(c.cause().unwrap().is::<Error>(), "keeps its own cause (S8)");
        }
    });
}

// API S5, S20, S21
/// An `on_cancel` that derives from the context being cancelled, registers on the new
/// child, stops a registration that has not run yet, and stops itself.
#[test]
fn on_cancel_may_derive_register_and_stop_registrations_not_yet_run() {
    within("on_cancel deriving and stopping", || {
        let (ctx, h) = Context::background().with_cancel();
        let log = Arc::new(Mutex::new(Vec::<&'static str>::new()));
        let later_ran = Arc::new(AtomicBool::new(false));
        let slot: Arc<Mutex<Option<ctxkit::AfterFunc>>> = Arc::new(Mutex::new(None));
        let own: Arc<Mutex<Option<ctxkit::AfterFunc>>> = Arc::new(Mutex::new(None));
        let (c2, l2, s2, o2) = (
            ctx.clone(),
            Arc::clone(&log),
            Arc::clone(&slot),
            Arc::clone(&own),
        );
        let first = ctx.on_cancel(move || {
            let (child, _) = c2.with_cancel();
            assert!(child.is_done());
            let l3 = Arc::clone(&l2);
            drop(child.on_cancel(move || l3.lock().unwrap().push("nested")));
            let stopped = s2.lock().unwrap().as_ref().unwrap().stop();
            assert!(stopped, "a registration not yet run can be stopped");
            assert!(
                !o2.lock().unwrap().as_ref().unwrap().stop(),
                "stop of a running f"
            );
            l2.lock().unwrap().push("first");
        });
        *own.lock().unwrap() = Some(first);
        let lr = Arc::clone(&later_ran);
        *slot.lock().unwrap() = Some(ctx.on_cancel(move || lr.store(true, Ordering::SeqCst)));
        h.cancel();
        assert_eq!(*log.lock().unwrap(), vec!["nested", "first"]);
        assert!(
            !later_ran.load(Ordering::SeqCst),
            "stopped during the walk, yet ran"
        );
    });
}

// API S11, S20
/// An `on_cancel` fired by the real-time timer thread that waits on another context whose
/// deadline only that thread can fire: S20 allows callbacks to wait on other contexts.
#[test]
fn on_cancel_fired_by_the_timer_may_wait_for_another_deadline() {
    within("timer callback waiting on a timer", || {
        let (first, _h1) = Context::background().with_timeout(Duration::from_millis(5));
        let (second, _h2) = Context::background().with_timeout(Duration::from_millis(50));
        let (tx, rx) = mpsc::channel();
        let s2 = second.clone();
        let _r = first.on_cancel(move || {
            tx.send(s2.wait_timeout(Duration::from_secs(5))).unwrap();
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Some(Error::DeadlineExceeded),
            "the second deadline never fired while the timer thread ran a callback"
        );
        assert_eq!(second.err(), Some(Error::DeadlineExceeded));
    });
}

// API S20, S25
/// `on_cancel` callbacks fired by `advance` that advance the same clock again.
#[test]
fn on_cancel_advancing_its_own_clock_fires_every_deadline_it_reaches() {
    within("re-entrant advance", || {
        let clock = ManualClock::new();
        let root = Context::background().with_clock(&clock);
        let fired = Arc::new(AtomicUsize::new(0));
        let mut keep = Vec::new();
        for i in 1..=10u64 {
            let (ctx, h) = root.with_timeout(Duration::from_secs(i));
            let (c2, f2) = (clock.clone(), Arc::clone(&fired));
            drop(ctx.on_cancel(move || {
                f2.fetch_add(1, Ordering::SeqCst);
                c2.advance(Duration::from_secs(1)); // fires the next one from here
            }));
            keep.push((ctx, h));
        }
        clock.advance(Duration::from_secs(1));
        assert_eq!(fired.load(Ordering::SeqCst), 10);
        assert!(keep
            .iter()
            .all(|(c, _)| c.err() == Some(Error::DeadlineExceeded)));
    });
}

// ---------------------------------------------------------------------------------------
// S21: stop
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

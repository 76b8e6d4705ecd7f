//! `ctxkit::Group`: errgroup for threads. Each test is named after the promise it checks.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{Context, Error, Group, Panicked};

mod common;
use common::{Concurrency, DropFlag, Failed, LONG};

#[test]
fn wait_on_an_empty_group_returns_ok_at_once_and_cancels_the_context() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    let start = Instant::now();
    assert_eq!(group.wait(), Ok(()));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx.cause().unwrap().is::<Error>());
}

#[test]
fn the_group_context_is_a_child_of_the_parent() {
    let (parent, cancel_parent) = Context::background().with(7u32).with_cancel();
    let (group, ctx) = Group::<Failed>::new(&parent);
    assert_eq!(ctx.get::<u32>(), Some(&7));
    assert!(!ctx.is_done());
    cancel_parent.cancel_with_cause(Failed(0));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    // The parent's cause reaches the group, and wait (with no failing task) returns Ok.
    assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&Failed(0)));
    assert_eq!(group.wait(), Ok(()));
    assert!(!ctx.to_string().is_empty());
}

#[test]
fn wait_returns_ok_and_cancels_the_context_when_every_task_succeeds() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let ran = ran.clone();
        let ctx = ctx.clone();
        group.spawn(move || {
            assert!(
                !ctx.is_done(),
                "no task failed: the context is live while tasks run"
            );
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    }
    assert_eq!(group.wait(), Ok(()));
    assert_eq!(
        ran.load(Ordering::SeqCst),
        8,
        "wait returns after every task"
    );
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn first_error_wins_and_its_cause_is_visible_to_siblings() {
    let (group, ctx) = Group::with_cause(&Context::background(), Failed::clone);
    let seen = Arc::new(Mutex::new(None));
    // The sibling waits for the cancellation and records the cause it sees.
    {
        let ctx = ctx.clone();
        let seen = seen.clone();
        group.spawn(move || {
            ctx.wait();
            *seen.lock().unwrap() = ctx.cause().unwrap().downcast_ref::<Failed>().cloned();
            Ok(())
        });
    }
    group.spawn(|| Err(Failed(1)));
    // A later failure, after the context is done, does not replace the first.
    {
        let ctx = ctx.clone();
        group.spawn(move || {
            ctx.wait();
            Err(Failed(2))
        });
    }
    assert_eq!(group.wait(), Err(Failed(1)));
    assert_eq!(*seen.lock().unwrap(), Some(Failed(1)));
    assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&Failed(1)));
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn the_error_wait_returns_is_the_cause_when_many_fail_at_once() {
    for _ in 0..20 {
        let (group, ctx) = Group::with_cause(&Context::background(), Failed::clone);
        let barrier = Arc::new(Barrier::new(4));
        for i in 0..4 {
            let barrier = barrier.clone();
            group.spawn(move || {
                barrier.wait();
                Err(Failed(i))
            });
        }
        let err = group.wait().unwrap_err();
        assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&err));
    }
}

#[test]
fn siblings_observe_cancellation_and_stop() {
    let (group, ctx) = Group::new(&Context::background());
    let stopped = Arc::new(AtomicUsize::new(0));
    for _ in 0..4 {
        let ctx = ctx.clone();
        let stopped = stopped.clone();
        group.spawn(move || {
            // Long work in small steps, checking the context between them.
            let deadline = Instant::now() + LONG;
            while Instant::now() < deadline {
                if ctx.is_done() {
                    stopped.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        });
    }
    group.spawn(|| {
        thread::sleep(Duration::from_millis(20));
        Err(Failed(9))
    });
    let start = Instant::now();
    assert_eq!(group.wait(), Err(Failed(9)));
    assert!(start.elapsed() < LONG / 2, "siblings stopped early");
    assert_eq!(stopped.load(Ordering::SeqCst), 4);
}

#[test]
fn the_limit_is_never_exceeded() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(3);
    let c = Arc::new(Concurrency::default());
    for _ in 0..24 {
        let c = c.clone();
        group.spawn(move || {
            c.run(Duration::from_millis(3));
            Ok(())
        });
    }
    group.wait().unwrap();
    let max = c.max.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "max concurrency {max}");
}

#[test]
fn spawn_blocks_while_the_group_is_at_its_limit() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(1);
    let (release, gate) = mpsc::channel::<()>();
    group.spawn(move || {
        let _ = gate.recv();
        Ok(())
    });
    let second_started = Arc::new(AtomicBool::new(false));
    let group = Arc::new(group);
    let spawner = {
        let group = group.clone();
        let flag = second_started.clone();
        thread::spawn(move || {
            group.spawn(|| Ok(()));
            flag.store(true, Ordering::SeqCst);
        })
    };
    thread::sleep(Duration::from_millis(50));
    assert!(
        !second_started.load(Ordering::SeqCst),
        "spawn returned while the group was full"
    );
    drop(release);
    spawner.join().unwrap();
    assert!(second_started.load(Ordering::SeqCst));
    Arc::try_unwrap(group).unwrap().wait().unwrap();
}

#[test]
fn try_spawn_at_the_limit_returns_false_and_drops_the_closure() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(2);
    let (release, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    for _ in 0..2 {
        let gate = gate.clone();
        assert!(group.try_spawn(move || {
            let _ = gate.lock().unwrap().recv();
            Ok(())
        }));
    }
    let dropped = Arc::new(());
    let token = dropped.clone();
    assert!(!group.try_spawn(move || {
        drop(token);
        Ok(())
    }));
    assert_eq!(
        Arc::strong_count(&dropped),
        1,
        "the declined closure is dropped"
    );
    drop(release);
    group.wait().unwrap();
}

#[test]
fn try_spawn_succeeds_again_once_a_slot_frees() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(1);
    let (done_tx, done_rx) = mpsc::channel();
    assert!(group.try_spawn(move || {
        done_tx.send(()).unwrap();
        Ok(())
    }));
    done_rx.recv().unwrap();
    // The task has sent; it uncounts itself right after. Give it a moment.
    let deadline = Instant::now() + LONG;
    while !group.try_spawn(|| Ok(())) {
        assert!(Instant::now() < deadline, "the slot never freed");
        thread::sleep(Duration::from_millis(1));
    }
    group.wait().unwrap();
}

#[test]
fn raising_the_limit_wakes_a_blocked_spawner() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(1);
    let (release, gate) = mpsc::channel::<()>();
    group.spawn(move || {
        let _ = gate.recv();
        Ok(())
    });
    let group = Arc::new(group);
    let spawner = {
        let group = group.clone();
        thread::spawn(move || group.spawn(|| Ok(())))
    };
    thread::sleep(Duration::from_millis(20));
    group.clear_limit();
    spawner.join().unwrap(); // returns although the first task still runs
    drop(release);
    Arc::try_unwrap(group).unwrap().wait().unwrap();
}

#[test]
#[should_panic(expected = "at least 1")]
fn a_limit_of_zero_panics() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(0);
}

#[test]
fn a_panic_cancels_the_context_and_is_resumed_by_wait() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    let sibling_saw = Arc::new(Mutex::new(None));
    {
        let ctx = ctx.clone();
        let saw = sibling_saw.clone();
        group.spawn(move || {
            ctx.wait();
            *saw.lock().unwrap() = ctx.cause().unwrap().downcast_ref::<Panicked>().cloned();
            Ok(())
        });
    }
    group.spawn(|| panic!("boom"));
    let payload = catch_unwind(AssertUnwindSafe(|| group.wait())).unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    let seen = sibling_saw.lock().unwrap().clone().unwrap();
    assert_eq!(seen.message(), "boom");
    assert_eq!(seen.to_string(), "a task panicked: boom");
    assert!(ctx.is_done());
}

#[test]
fn a_panic_wins_over_an_error_in_wait() {
    let (group, ctx) = Group::with_cause(&Context::background(), Failed::clone);
    let sibling = ctx.clone();
    group.spawn(move || {
        sibling.wait(); // the error is first
        panic!("later panic")
    });
    group.spawn(|| Err(Failed(1)));
    let payload = catch_unwind(AssertUnwindSafe(|| group.wait())).unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"later panic"));
    // The context keeps the first cause.
    assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&Failed(1)));
}

#[test]
fn dropping_a_group_without_waiting_cancels_its_context() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    let (tx, rx) = mpsc::channel();
    {
        let ctx = ctx.clone();
        group.spawn(move || {
            tx.send(ctx.wait()).unwrap();
            Ok(())
        });
    }
    drop(group);
    assert_eq!(rx.recv_timeout(LONG), Ok(Error::Canceled));
}

#[test]
fn tasks_may_be_spawned_while_others_fail_and_wait_sees_them_all() {
    /// Counts a closure as consumed when it is dropped, run or not.
    struct Consumed(Arc<AtomicUsize>);
    impl Drop for Consumed {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (group, ctx) = Group::new(&Context::background());
    let finished = Arc::new(AtomicUsize::new(0));
    let consumed = Arc::new(AtomicUsize::new(0));
    for i in 0..16 {
        let finished = finished.clone();
        let token = Consumed(consumed.clone());
        let ctx = ctx.clone();
        group.spawn(move || {
            let _token = token;
            if i == 5 {
                return Err(Failed(i));
            }
            ctx.wait_timeout(Duration::from_millis(5));
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    }
    assert_eq!(group.wait(), Err(Failed(5)));
    // Every closure was run or, spawned after the failure, dropped unrun: none is left.
    assert_eq!(consumed.load(Ordering::SeqCst), 16);
    // The five spawned before the failing one ran to the end.
    assert!(finished.load(Ordering::SeqCst) >= 5);
}

#[test]
fn scoped_tasks_borrow_from_the_stack_and_the_first_error_wins() {
    // The failing task last: a spawn after the failure would not run its task (G3).
    let inputs = vec![1u32, 2, 4, 3];
    let seen = Mutex::new(Vec::new());
    let (group, ctx) = Group::new(&Context::background());
    thread::scope(|s| {
        for x in &inputs {
            group.spawn_scoped(s, || {
                if *x == 3 {
                    return Err(Failed(*x));
                }
                ctx.wait_timeout(LONG); // stops once task 3 fails
                seen.lock().unwrap().push(*x);
                Ok(())
            });
        }
    });
    assert_eq!(group.wait(), Err(Failed(3)));
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    assert_eq!(seen, [1, 2, 4]);
}

#[test]
fn scoped_tasks_can_spawn_siblings_and_respect_the_limit() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(2);
    let c = Concurrency::default();
    let spawned = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..4 {
            let (group, c, spawned) = (&group, &c, &spawned);
            group.spawn_scoped(s, move || {
                c.run(Duration::from_millis(2));
                // A task may add work; over the limit it cannot block itself, so try.
                if group.try_spawn_scoped(s, move || {
                    c.run(Duration::from_millis(1));
                    Ok(())
                }) {
                    spawned.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            });
        }
    });
    group.wait().unwrap();
    assert!(c.max.load(Ordering::SeqCst) <= 2);
}

#[test]
fn a_scoped_panic_is_resumed_by_wait_not_by_the_scope() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    thread::scope(|s| {
        group.spawn_scoped(s, || panic!("scoped boom"));
    }); // std's scope does not panic: the group caught it
    assert!(ctx.is_done());
    let payload = catch_unwind(AssertUnwindSafe(|| group.wait())).unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"scoped boom"));
}

#[test]
fn an_arc_error_with_a_typed_cause_is_shared_with_the_cause() {
    let (group, ctx) = Group::with_cause(&Context::background(), Arc::clone);
    group.spawn(|| {
        let read = || {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ))
        };
        read().map_err(Arc::new)
    });
    let err = group.wait().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let cause = ctx.cause().unwrap();
    let cause = cause.downcast_ref::<Arc<std::io::Error>>().unwrap();
    assert!(
        Arc::ptr_eq(cause, &err),
        "the cause is the same error, shared"
    );
}

#[test]
fn group_values_and_deadlines_come_from_the_parent() {
    let (parent, _h) = Context::background().with_timeout(Duration::from_millis(20));
    let (group, ctx) = Group::<Failed>::new(&parent);
    {
        let ctx = ctx.clone();
        group.spawn(move || {
            assert_eq!(ctx.wait(), Error::DeadlineExceeded);
            Ok(())
        });
    }
    assert_eq!(group.wait(), Ok(()));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn a_group_and_its_contexts_are_freed_after_wait() {
    let freed = Arc::new(AtomicBool::new(false));
    let parent = Context::background().with(DropFlag(freed.clone()));
    let (group, ctx) = Group::new(&parent);
    drop(parent);
    for i in 0..4 {
        let ctx = ctx.clone();
        group.spawn(move || {
            ctx.wait_timeout(Duration::from_millis(1));
            if i == 2 {
                Err(Failed(i))
            } else {
                Ok(())
            }
        });
    }
    drop(ctx);
    assert_eq!(group.wait(), Err(Failed(2)));
    drop(group);
    // The task threads may still be exiting: their captures are gone, but give the last
    // reference (the thread's share of the group) a moment.
    let deadline = Instant::now() + LONG;
    while !freed.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the group's context leaked");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn group_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Group<Failed>>();
    send_sync::<Panicked>();
}

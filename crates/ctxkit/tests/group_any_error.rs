//! Both groups with any error type, cloned handles, nothing started once done, values back
//! and every error (API Part 3, G1-G4). Each test is named after the promise it checks.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use ctxkit::{Context, Error, Group, TaskError};

mod common;
use common::{Failed, LONG};

type BoxError = Box<dyn StdError + Send + Sync>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A task that fails because its context is done, through `?` on `ctx.run(..)`.
async fn stopped_by<E: From<Error>>(ctx: Context) -> Result<(), E> {
    ctx.run(std::future::pending::<()>()).await?;
    Ok(())
}

// G1: std::io::Error, moved out by wait; `?` on ctxkit::Error through io's From impl.
#[test]
fn a_tokio_group_takes_io_errors_and_returns_the_first_itself() {
    runtime().block_on(async {
        let (group, ctx) = ctxkit::tokio::Group::<std::io::Error>::new(&Context::background());
        group.spawn(stopped_by(ctx.clone()));
        group.spawn(async {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ))
        });
        let err = group.wait().await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(err.to_string(), "no such file");
        let cause = ctx.cause().unwrap();
        let text = cause.downcast_ref::<TaskError>().unwrap().message();
        assert!(
            text.contains("no such file") && text.contains("NotFound"),
            "{text}"
        );
    });
}

#[test]
fn a_thread_group_takes_io_errors_with_their_display_text_as_cause() {
    let (group, ctx) =
        Group::with_cause(&Context::background(), |e: &std::io::Error| e.to_string());
    let sibling = ctx.clone();
    group.spawn(move || {
        sibling.wait();
        Err(std::io::Error::from(sibling.err().unwrap()))
    });
    group.spawn(|| Err(std::io::Error::other("disk on fire")));
    let err = group.wait().unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
    assert_eq!(ctx.cause().unwrap().to_string(), "disk on fire");
}

// G1: Box<dyn Error + Send + Sync>; `?` through the std blanket From.
#[test]
fn a_tokio_group_takes_boxed_errors_and_the_question_mark_converts_into_them() {
    runtime().block_on(async {
        let (group, ctx) =
            ctxkit::tokio::Group::<BoxError>::with_cause(&Context::background(), |e: &BoxError| {
                e.to_string()
            });
        group.spawn(stopped_by(ctx.clone()));
        group.spawn(async { Err("bad gateway".into()) });
        let errors = group.wait_errors().await;
        assert_eq!(errors[0].to_string(), "bad gateway");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[1].downcast_ref::<Error>(), Some(&Error::Canceled));
        assert_eq!(ctx.cause().unwrap().to_string(), "bad gateway");
    });
}

#[test]
fn a_thread_group_takes_boxed_errors() {
    let (group, ctx) = Group::<BoxError>::new(&Context::background());
    group.spawn(|| Err(Box::new(Failed(9))));
    let err = group.wait().unwrap_err();
    assert_eq!(err.downcast_ref::<Failed>(), Some(&Failed(9)));
    assert_eq!(
        ctx.cause()
            .unwrap()
            .downcast_ref::<TaskError>()
            .unwrap()
            .message(),
        "Failed(9)"
    );
}

// G1: anyhow::Error; `?` through anyhow's blanket From.
#[test]
fn a_tokio_group_takes_anyhow_errors() {
    runtime().block_on(async {
        let (group, ctx) =
            ctxkit::tokio::Group::with_cause(&Context::background(), |e: &anyhow::Error| {
                format!("{e:#}")
            });
        group.spawn(stopped_by::<anyhow::Error>(ctx.clone()));
        group.spawn(async { Err(anyhow::anyhow!("connection reset").context("fetching user 7")) });
        let err = group.wait().await.unwrap_err();
        assert_eq!(format!("{err:#}"), "fetching user 7: connection reset");
        assert_eq!(
            ctx.cause().unwrap().to_string(),
            "fetching user 7: connection reset"
        );
    });
}

#[test]
fn a_thread_group_takes_anyhow_errors() {
    let (group, ctx) = Group::<anyhow::Error>::new(&Context::background());
    group.spawn(|| {
        let _n: u32 = "x".parse()?;
        Ok(())
    });
    let err = group.wait().unwrap_err();
    assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
    assert!(ctx.cause().unwrap().is::<TaskError>());
}

// G1: String, which has no From<ctxkit::Error>: the task maps the error.
#[test]
fn both_groups_take_string_errors() {
    let (group, ctx) = Group::<String>::new(&Context::background());
    group.spawn(|| Err("quota exceeded".to_string()));
    assert_eq!(group.wait(), Err("quota exceeded".to_string()));
    assert_eq!(ctx.cause().unwrap().to_string(), r#""quota exceeded""#);

    runtime().block_on(async {
        let (group, ctx) = ctxkit::tokio::Group::with_cause(&Context::background(), String::clone);
        let sibling = ctx.clone();
        group.spawn(async move {
            sibling
                .run(std::future::pending::<()>())
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        });
        group.spawn(async { Err("quota exceeded".to_string()) });
        assert_eq!(
            group.wait_errors().await,
            ["quota exceeded".to_string(), "context canceled".to_string()]
        );
        // A typed cause: String is Clone (and boxes into an error).
        assert_eq!(ctx.cause().unwrap().to_string(), "quota exceeded");
    });
}

// G1: a Clone error with a typed cause, in both groups.
#[test]
fn with_cause_clone_gives_a_typed_cause_and_wait_the_original() {
    let (group, ctx) = Group::with_cause(&Context::background(), Failed::clone);
    group.spawn(|| Err(Failed(3)));
    assert_eq!(group.wait(), Err(Failed(3)));
    assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&Failed(3)));

    runtime().block_on(async {
        let (group, ctx) = ctxkit::tokio::Group::with_cause(&Context::background(), Failed::clone);
        group.spawn(async { Err(Failed(4)) });
        assert_eq!(group.wait().await, Err(Failed(4)));
        assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&Failed(4)));
    });
}

// G1: the error is moved, never cloned: a type that is neither Clone nor Sync works.
#[test]
fn an_error_that_is_neither_clone_nor_sync_is_moved_out() {
    #[derive(Debug)]
    struct NotSync(std::cell::Cell<u32>);
    let (group, _ctx) = Group::<NotSync>::new(&Context::background());
    group.spawn(|| Err(NotSync(std::cell::Cell::new(5))));
    assert_eq!(group.wait().unwrap_err().0.get(), 5);
}

// G3, G2: the scenario of a limit of 1 and a first task that fails at once.
#[test]
fn a_tokio_group_never_starts_tasks_queued_behind_a_failed_one() {
    runtime().block_on(async {
        let (group, ctx) = ctxkit::tokio::Group::<Failed>::new(&Context::background());
        group.set_limit(1);
        let started = Arc::new(AtomicUsize::new(0));
        group.spawn(async { Err(Failed(0)) });
        for _ in 0..4 {
            let started = started.clone();
            group.spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(())
            });
        }
        assert_eq!(group.wait().await, Err(Failed(0)));
        assert_eq!(started.load(Ordering::SeqCst), 0, "a queued task ran");
        assert!(ctx.is_done());
    });
}

#[test]
fn a_thread_group_never_starts_tasks_queued_behind_a_failed_one() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(1);
    let started = Arc::new(AtomicUsize::new(0));
    let (go, gate) = mpsc::channel::<()>();
    group.spawn(move || {
        let _ = gate.recv();
        Err(Failed(0))
    });
    // Four spawners wait in line on their own threads while the first task holds the slot.
    let spawners: Vec<_> = (0..4)
        .map(|_| {
            let (group, started) = (group.clone(), started.clone());
            std::thread::spawn(move || {
                group.spawn(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20)); // let them queue
    drop(go);
    for s in spawners {
        s.join().unwrap();
    }
    assert_eq!(group.wait(), Err(Failed(0)));
    assert_eq!(started.load(Ordering::SeqCst), 0, "a queued task ran");
}

// G3: spawn and try_spawn on a done group.
#[test]
fn spawn_and_try_spawn_on_a_done_group_do_not_run_the_task() {
    let (parent, cancel) = Context::background().with_cancel();
    let (group, _ctx) = Group::<Failed>::new(&parent);
    cancel.cancel();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    group.spawn(move || {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let r = ran.clone();
    assert!(!group.try_spawn(move || {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }));
    assert_eq!(group.wait(), Ok(()));
    assert_eq!(ran.load(Ordering::SeqCst), 0);

    runtime().block_on(async {
        let (group, _ctx) = ctxkit::tokio::Group::<Failed>::new(&Context::background());
        group.spawn(async { Err(Failed(1)) });
        assert_eq!(group.wait().await, Err(Failed(1)));
        let r = ran.clone();
        group.spawn(async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        assert!(!group.try_spawn(async { Ok(()) }));
        group.spawn_wait(async { Ok(()) }).await;
        let value = group.spawn_value(async { Ok(1) }).await.unwrap();
        assert_eq!(value, None);
        assert_eq!(group.wait().await, Ok(()));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    });
}

// G2: waiting tasks get their slots in spawn order.
#[test]
fn queued_tokio_tasks_start_in_spawn_order() {
    runtime().block_on(async {
        let (group, _ctx) = ctxkit::tokio::Group::<Failed>::new(&Context::background());
        group.set_limit(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..20 {
            let order = order.clone();
            group.spawn(async move {
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                Ok(())
            });
        }
        group.wait().await.unwrap();
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    });
}

// G4: tasks spawn siblings through clones while wait is already waiting.
#[test]
fn tokio_wait_sees_siblings_spawned_by_tasks_while_it_waits() {
    runtime().block_on(async {
        let (group, _ctx) = ctxkit::tokio::Group::<Failed>::new(&Context::background());
        let done = Arc::new(AtomicUsize::new(0));
        fn tree(group: ctxkit::tokio::Group<Failed>, depth: u32, done: Arc<AtomicUsize>) {
            let g = group.clone();
            group.spawn(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if depth > 0 {
                    tree(g.clone(), depth - 1, done.clone());
                    tree(g, depth - 1, done.clone());
                }
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
        }
        tree(group.clone(), 6, done.clone());
        let waiter = group.clone();
        tokio::time::timeout(LONG, waiter.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 127); // 2^7 - 1 tasks
    });
}

#[test]
fn thread_wait_sees_siblings_spawned_by_tasks_while_it_waits() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    let done = Arc::new(AtomicUsize::new(0));
    fn tree(group: &Group<Failed>, depth: u32, done: Arc<AtomicUsize>) {
        let g = group.clone();
        group.spawn(move || {
            std::thread::sleep(Duration::from_millis(1));
            if depth > 0 {
                tree(&g, depth - 1, done.clone());
                tree(&g, depth - 1, done.clone());
            }
            done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    }
    // A root task holds the group open until the waiter is waiting; the tree grows after.
    let (go, gate) = mpsc::channel::<()>();
    let (g, d) = (group.clone(), done.clone());
    group.spawn(move || {
        let _ = gate.recv();
        tree(&g, 5, d);
        Ok(())
    });
    let waiter = {
        let (group, done) = (group.clone(), done.clone());
        std::thread::spawn(move || (group.wait(), done.load(Ordering::SeqCst)))
    };
    std::thread::sleep(Duration::from_millis(10));
    drop(go);
    assert_eq!(waiter.join().unwrap(), (Ok(()), 63)); // 2^6 - 1 tasks, all finished
}

// G4: dropping one clone does not cancel; dropping the last does.
#[test]
fn the_context_is_cancelled_when_the_last_handle_drops() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    let other = group.clone();
    drop(group);
    assert!(!ctx.is_done());
    drop(other);
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

// Values back, with the first-error rule unchanged.
#[test]
fn spawn_value_yields_each_value_and_none_for_a_failed_task() {
    runtime().block_on(async {
        let (group, _ctx) = ctxkit::tokio::Group::<Failed>::new(&Context::background());
        group.set_limit(2);
        let handles: Vec<_> = (0..6u32)
            .map(|i| {
                group.spawn_value(async move {
                    if i == 5 {
                        Err(Failed(i))
                    } else {
                        Ok(i * i)
                    }
                })
            })
            .collect();
        let mut values = Vec::new();
        for h in handles {
            values.push(h.await.unwrap());
        }
        // The first two hold slots from their spawn and always run. A task given a slot
        // but not yet polled when task 5 fails is never started (G3): it yields `None`.
        assert_eq!(values[..2], [Some(0), Some(1)]);
        for (i, v) in values.iter().enumerate().take(5).skip(2) {
            let i = i as u32;
            assert!(*v == Some(i * i) || v.is_none(), "task {i}: {v:?}");
        }
        assert_eq!(values[5], None, "the failed task has no value");
        assert_eq!(group.wait().await, Err(Failed(5)));
    });
}

// Every error, in the order the tasks failed.
#[test]
fn wait_errors_lists_every_error_in_the_order_they_happened() {
    runtime().block_on(async {
        let (group, _ctx) = ctxkit::tokio::Group::<Failed>::new(&Context::background());
        let mut gates = Vec::new();
        let mut handles = Vec::new();
        for i in 0..3 {
            let (go, gate) = tokio::sync::oneshot::channel::<()>();
            gates.push(Some(go));
            handles.push(Some(group.spawn_value(async move {
                let _ = gate.await;
                Err::<(), _>(Failed(i))
            })));
        }
        // Let them fail one at a time, 2, then 0, then 1: a task's handle completes once
        // its error is recorded.
        for i in [2, 0, 1] {
            gates[i].take().unwrap().send(()).unwrap();
            assert_eq!(handles[i].take().unwrap().await.unwrap(), None);
        }
        assert_eq!(group.wait_errors().await, [Failed(2), Failed(0), Failed(1)]);
        assert!(group.wait_errors().await.is_empty(), "handed out once");
    });
}

#[test]
fn a_thread_groups_wait_errors_has_the_first_error_first_and_every_other() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    let all_started = Arc::new(std::sync::Barrier::new(4));
    for i in 0..4 {
        let (ctx, all_started) = (ctx.clone(), all_started.clone());
        group.spawn(move || {
            all_started.wait();
            if i != 2 {
                ctx.wait(); // fail after task 2, because of it
            }
            Err(Failed(i))
        });
    }
    let errors = group.wait_errors();
    assert_eq!(errors[0], Failed(2));
    let mut rest: Vec<_> = errors[1..].iter().map(|f| f.0).collect();
    rest.sort();
    assert_eq!(rest, [0, 1, 3]);
    assert!(group.wait_errors().is_empty(), "handed out once");
}

// A cause function that panics does not break the group.
#[test]
fn a_panicking_cause_function_gives_a_panicked_cause_and_wait_still_returns() {
    let (group, ctx) = Group::with_cause(&Context::background(), |_: &Failed| -> String {
        panic!("no text for this error")
    });
    group.spawn(|| Err(Failed(1)));
    group.spawn(|| Ok(()));
    assert_eq!(group.wait(), Err(Failed(1)));
    let cause = ctx.cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<ctxkit::Panicked>().unwrap().message(),
        "no text for this error"
    );
}

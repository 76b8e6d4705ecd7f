//! `ctxkit::futures`: `with_context`, `until_done`, and `JoinGroup`, on several executors.
#![cfg(feature = "futures")]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctxkit::futures::{ContextFutureExt, ContextStreamExt, JoinGroup};
use ctxkit::{Context, Error};
use futures::executor::block_on;
use futures::{FutureExt, Stream, StreamExt};

mod common;
use common::{DropFlag, Failed};

// --- with_context -----------------------------------------------------------------------

#[test]
fn with_context_returns_the_output_when_the_future_finishes_first() {
    let (ctx, _h) = Context::background().with_cancel();
    assert_eq!(block_on(async { 3 }.with_context(&ctx)), Ok(3));
}

#[test]
fn with_context_ends_with_the_error_and_drops_the_future_when_the_context_is_done() {
    let (ctx, handle) = Context::background().with_cancel();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let fut = async move {
        let _flag = flag;
        std::future::pending::<()>().await
    }
    .with_context(&ctx);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        handle.cancel();
    });
    assert_eq!(block_on(fut), Err(Error::Canceled));
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn with_context_on_a_done_context_does_not_poll_the_future() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    let polled = Arc::new(AtomicBool::new(false));
    let flag = polled.clone();
    let out = block_on(async move { flag.store(true, Ordering::SeqCst) }.with_context(&ctx));
    assert_eq!(out, Err(Error::Canceled));
    assert!(!polled.load(Ordering::SeqCst));
}

#[test]
fn with_context_follows_a_deadline_under_smol() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let out = smol::block_on(std::future::pending::<()>().with_context(&ctx));
    assert_eq!(out, Err(Error::DeadlineExceeded));
}

#[test]
fn with_context_is_unpin_when_the_future_is() {
    fn assert_unpin<T: Unpin>(_: &T) {}
    let ctx = Context::background();
    let fut = std::future::ready(1).with_context(&ctx);
    assert_unpin(&fut);
}

// --- until_done -------------------------------------------------------------------------

#[test]
fn until_done_yields_every_item_of_a_stream_that_ends_first() {
    let ctx = Context::background();
    let s = futures::stream::iter(0..5).until_done(&ctx);
    let items: Vec<_> = block_on(s.collect());
    assert_eq!(items, [0, 1, 2, 3, 4]);
}

#[test]
fn until_done_ends_the_stream_when_the_context_is_done() {
    let (ctx, handle) = Context::background().with_cancel();
    let mut s = futures::stream::iter(0..).until_done(&ctx);
    block_on(async {
        assert_eq!(s.next().await, Some(0));
        assert_eq!(s.next().await, Some(1));
        handle.cancel();
        assert_eq!(s.next().await, None);
        assert_eq!(s.next().await, None, "stays ended");
    });
    assert_eq!(s.err(), Some(Error::Canceled));
    assert_eq!(s.size_hint(), (0, Some(0)));
}

#[test]
fn until_done_wakes_a_stream_that_waits_for_ever() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let s = futures::stream::pending::<u32>().until_done(&ctx);
    let items: Vec<_> = block_on(s.collect());
    assert!(items.is_empty());
}

#[test]
fn until_done_does_not_report_an_error_for_a_stream_that_ended_by_itself() {
    let (ctx, handle) = Context::background().with_cancel();
    let mut s = futures::stream::iter([1]).until_done(&ctx);
    block_on(async {
        assert_eq!(s.next().await, Some(1));
        assert_eq!(s.next().await, None);
    });
    assert_eq!(s.err(), None);
    drop(handle);
}

// --- JoinGroup --------------------------------------------------------------------------

type BoxFut<'a> = Pin<Box<dyn Future<Output = Result<(), Failed>> + 'a>>;

#[test]
fn join_group_wait_on_an_empty_group_completes_and_cancels_the_context() {
    let (group, ctx) = JoinGroup::<BoxFut<'_>>::new(&Context::background());
    assert_eq!(block_on(group.wait()), Ok(()));
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn join_group_first_error_wins_and_siblings_see_it_and_stop() {
    let seen = Mutex::new(Vec::new()); // declared first: it outlives the group
    let (mut group, ctx) = JoinGroup::<BoxFut<'_>>::new(&Context::background());
    for i in 0..3 {
        let (ctx, seen) = (ctx.clone(), &seen);
        group.push(Box::pin(async move {
            // Borrowing `seen` from the stack: no spawning, no 'static.
            let _ = std::future::pending::<()>().with_context(&ctx).await;
            seen.lock()
                .unwrap()
                .push((i, ctx.cause().unwrap().downcast_ref::<Failed>().cloned()));
            Ok(())
        }));
    }
    group.push(Box::pin(async { Err(Failed(7)) }));
    {
        let ctx = ctx.clone();
        group.push(Box::pin(async move {
            ctx.done().await;
            Err(Failed(8)) // later: not the one returned
        }));
    }
    assert_eq!(block_on(group.wait()), Err(Failed(7)));
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 3, "every sibling was driven to its end");
    assert!(seen.iter().all(|(_, cause)| cause == &Some(Failed(7))));
    assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&Failed(7)));
}

#[test]
fn join_group_runs_futures_concurrently_in_one_task() {
    // Two futures that each wait for the other: only concurrent polling finishes them.
    let (mut group, _ctx) = JoinGroup::<BoxFut<'_>>::new(&Context::background());
    let (a_tx, a_rx) = futures::channel::oneshot::channel::<()>();
    let (b_tx, b_rx) = futures::channel::oneshot::channel::<()>();
    group.push(Box::pin(async move {
        a_tx.send(()).unwrap();
        b_rx.await.unwrap();
        Ok(())
    }));
    group.push(Box::pin(async move {
        b_tx.send(()).unwrap();
        a_rx.await.unwrap();
        Ok(())
    }));
    assert_eq!(block_on(group.wait()), Ok(()));
}

#[test]
fn join_group_works_under_tokio_and_smol() {
    let make = || {
        let (mut group, ctx) = JoinGroup::new(&Context::background());
        for i in 0..4u32 {
            let ctx = ctx.clone();
            group.push(async move {
                if i == 2 {
                    return Err(Failed(i));
                }
                ctx.done().await;
                Ok(())
            });
        }
        group
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(make().wait()), Err(Failed(2)));
    assert_eq!(smol::block_on(make().wait()), Err(Failed(2)));
}

#[test]
fn join_group_a_panic_propagates_through_wait_and_cancels_the_context() {
    let (mut group, ctx) = JoinGroup::<BoxFut<'static>>::new(&Context::background());
    let finished = Arc::new(AtomicUsize::new(0));
    {
        let ctx = ctx.clone();
        let finished = finished.clone();
        group.push(Box::pin(async move {
            ctx.done().await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
    }
    group.push(Box::pin(async { panic!("future boom") }));
    let payload = block_on(AssertUnwindSafe(group.wait()).catch_unwind()).unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"future boom"));
    assert!(ctx.is_done());
}

#[test]
fn join_group_dropped_cancels_its_context() {
    let (mut group, ctx) = JoinGroup::<BoxFut<'static>>::new(&Context::background());
    group.push(Box::pin(async { Ok(()) }));
    assert_eq!(group.len(), 1);
    drop(group);
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn join_group_extend_adds_every_future() {
    let ran = AtomicUsize::new(0);
    let (mut group, _ctx) = JoinGroup::new(&Context::background());
    let ran_ref = &ran;
    group.extend((0..5).map(|_| async move {
        ran_ref.fetch_add(1, Ordering::SeqCst);
        Ok::<(), Failed>(())
    }));
    assert_eq!(block_on(group.wait()), Ok(()));
    assert_eq!(ran.load(Ordering::SeqCst), 5);
}

#[test]
fn until_done_is_terminated_once_the_context_ends_it() {
    use futures::stream::FusedStream;
    let (ctx, handle) = Context::background().with_cancel();
    let mut s = futures::stream::iter(0..).fuse().until_done(&ctx);
    assert!(!s.is_terminated());
    handle.cancel();
    assert_eq!(block_on(s.next()), None);
    assert!(s.is_terminated());
}

#[test]
fn the_adapters_and_the_group_are_send_and_sync_when_their_parts_are() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ctxkit::futures::WithContext<std::future::Ready<u8>>>();
    send_sync::<ctxkit::futures::UntilDone<futures::stream::Iter<std::ops::Range<u8>>>>();
    send_sync::<JoinGroup<std::future::Ready<Result<(), Failed>>>>();
}

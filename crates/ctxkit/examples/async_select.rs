//! Async use: `ctx.done()` in `tokio::select!`, and `ctx.run(fut)`.
//!
//! Run with `cargo run --example async_select`.

use std::time::Duration;

use ctxkit::{Context, Error};
use tokio::sync::mpsc;
use tokio::time::sleep;

/// Produces a job every 100 ms until the context is done.
async fn producer(ctx: Context, jobs: mpsc::Sender<u32>) -> Error {
    let mut n = 0;
    loop {
        tokio::select! {
            err = ctx.done() => return err,
            _ = sleep(Duration::from_millis(100)) => {
                n += 1;
                if jobs.send(n).await.is_err() {
                    return Error::Canceled;
                }
            }
        }
    }
}

/// A slow call that knows nothing about contexts.
async fn fetch(id: u32) -> String {
    sleep(Duration::from_millis(50 * u64::from(id))).await;
    format!("record {id}")
}

#[tokio::main]
async fn main() {
    // select!: a producer stopped by a 550 ms timeout.
    let (ctx, _handle) = Context::background().with_timeout(Duration::from_millis(550));
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(producer(ctx.clone(), tx));
    while let Some(job) = rx.recv().await {
        println!("got job {job}");
    }
    println!("producer stopped: {}", task.await.unwrap());

    // run(): a future bounded by the context; it is dropped if the context ends first.
    let (ctx, _handle) = Context::background().with_timeout(Duration::from_millis(200));
    for id in [1, 2, 8] {
        match ctx.run(fetch(id)).await {
            Ok(record) => println!("fetched {record}"),
            Err(err) => println!("fetch {id} abandoned: {err}"),
        }
    }

    // Cancelling from another task wakes every waiter at once.
    let (ctx, handle) = Context::background().with_cancel();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let ctx = ctx.clone();
            tokio::spawn(async move { format!("waiter {i}: {}", ctx.done().await) })
        })
        .collect();
    tokio::spawn(async move {
        sleep(Duration::from_millis(50)).await;
        handle.cancel();
    });
    for w in waiters {
        println!("{}", w.await.unwrap());
    }
}

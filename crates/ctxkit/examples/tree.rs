//! A cancellation tree: cancelling a context cancels everything derived from it, never its
//! parent or siblings; a cause says why.
//!
//! Run with `cargo run --example tree`.

use std::fmt;

use ctxkit::{Context, Error};

/// A cause: why the batch was stopped.
#[derive(Debug)]
struct QuotaExceeded {
    used: u32,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quota exceeded after {} requests", self.used)
    }
}

impl std::error::Error for QuotaExceeded {}

fn report(name: &str, ctx: &Context) {
    match (ctx.err(), ctx.cause()) {
        (Some(err), Some(cause)) => println!("  {name:<8} {err} (cause: {cause})"),
        _ => println!("  {name:<8} running"),
    }
}

fn main() {
    //            root
    //           /    \
    //       batch    health
    //      /     \
    //  fetch     store
    let (root, root_handle) = Context::background().with_cancel();
    let (batch, batch_handle) = root.with_cancel();
    let (health, _health_handle) = root.with_cancel();
    let (fetch, _fetch_handle) = batch.with_cancel();
    let (store, store_handle) = batch.with_cancel();
    let tree = [
        ("root", &root),
        ("batch", &batch),
        ("health", &health),
        ("fetch", &fetch),
        ("store", &store),
    ];
    println!("fetch is {fetch}");

    println!("cancel store: only store is done");
    store_handle.cancel();
    tree.iter().for_each(|(name, ctx)| report(name, ctx));

    println!("cancel batch with a cause: batch and fetch take it, store keeps its own");
    batch_handle.cancel_with_cause(QuotaExceeded { used: 1000 });
    tree.iter().for_each(|(name, ctx)| report(name, ctx));
    let cause = fetch.cause().expect("fetch is done");
    assert!(cause.is::<QuotaExceeded>());
    println!(
        "  fetch's cause downcasts: used = {}",
        cause.downcast_ref::<QuotaExceeded>().unwrap().used
    );

    println!("cancel root: health follows; the first cause wins everywhere else");
    root_handle.cancel();
    tree.iter().for_each(|(name, ctx)| report(name, ctx));
    assert_eq!(health.err(), Some(Error::Canceled));
    assert!(fetch.cause().unwrap().is::<QuotaExceeded>());

    println!("a child of a done context is done at birth:");
    let (late, _late_handle) = batch.with_cancel();
    report("late", &late);
}
